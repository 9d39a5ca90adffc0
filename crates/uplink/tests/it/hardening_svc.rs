//! The service under a hostile network (issue 15, items 1, 7 and 14): stalled and slow request
//! bodies, connection floods beyond the caps, concurrent decompression beyond the memory budget,
//! and events that break JSON readers. The real `uplink service` on loopback, with small limits
//! so that each test runs in seconds; clients are raw TLS streams (rustls) so that a test can
//! stall wherever it likes, and curl for the well-behaved ones.

use crate::support;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::pem::PemObject;
use support::*;

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TCP connection to the service from a chosen loopback address (Linux answers on all of
/// 127.0.0.0/8), so that one test can be several source addresses.
fn connect_from(from: IpAddr, port: u16) -> std::io::Result<TcpStream> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let tcp = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(from, 0))?;
        socket
            .connect(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
            .await
    })?;
    let std = tcp.into_std()?;
    std.set_nonblocking(false)?;
    Ok(std)
}

/// A TLS connection to the workspace's sensor host, with the sensor's certificate if given; the
/// handshake is done when this returns.
fn tls_from(from: IpAddr, ws: &Ws, port: u16, cert: Option<&Enrolled>) -> std::io::Result<Tls> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_file_iter(&ws.ca_file).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let config = match cert {
        Some(e) => builder
            .with_client_auth_cert(
                vec![rustls_pki_types::CertificateDer::from_pem_file(&e.cert_file).unwrap()],
                rustls_pki_types::PrivateKeyDer::from_pem_file(&e.key_file).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let name = rustls_pki_types::ServerName::try_from(ws.sensor_host.clone()).unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = connect_from(from, port)?;
    tcp.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(tls)
}

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn addr(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// The head of a request whose body is announced (`Content-Length: 60000`) and never sent.
fn stalled_enroll_head(host: &str) -> String {
    format!("POST /api/v1/enroll HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: 60000\r\n\r\n{{\"access_key\":")
}

/// Reads what the server sends until it closes the connection; returns it and when it closed.
fn read_until_closed(tls: &mut Tls) -> (String, Instant) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                panic!(
                    "the server kept the connection open for 20 s; got so far: {}",
                    String::from_utf8_lossy(&got)
                )
            }
            // A close without close_notify, or a reset: closed all the same.
            Err(_) => break,
        }
    }
    (String::from_utf8_lossy(&got).into_owned(), Instant::now())
}

/// True if the server has closed this connection (checked without waiting long).
fn closed_by_server(tls: &mut Tls) -> bool {
    tls.sock
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match tls.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // a 408 or the like before the close
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

/// One request on a kept-alive connection; returns (status, body).
fn exchange(tls: &mut Tls, request: &[u8]) -> (u16, String) {
    tls.write_all(request).unwrap();
    tls.flush().unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tls.read_exact(&mut byte).unwrap_or_else(|e| {
            panic!(
                "reading the response head: {e}; got {}",
                String::from_utf8_lossy(&head)
            )
        });
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let status: u16 = head[9..12].parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no content-length in {head}"));
    let mut body = vec![0u8; length];
    tls.read_exact(&mut body).unwrap();
    (status, String::from_utf8(body).unwrap())
}

fn events_request(host: &str, body: &str) -> Vec<u8> {
    format!(
        "POST /api/v1/events HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-ndjson\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Number of descriptors the process holds.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

fn ping_from(ws: &Ws, port: u16, from: IpAddr) -> (u16, String, Duration) {
    let started = Instant::now();
    let (status, body) = Curl::new(&ws.sensor_host, port, "/tri/sensor/api/ping")
        .arg("--cacert")
        .arg(&ws.ca_file)
        .args(["--interface", &from.to_string()])
        .run();
    (status, body, started.elapsed())
}

#[test]
fn stalled_and_slow_request_bodies_are_answered_408_and_closed() {
    let dir = tempfile::tempdir().unwrap();
    let svc = ServiceProc::start_with(
        dir.path(),
        &["--body-idle-timeout", "1s", "--request-timeout", "3s"],
    );
    let ws = create_workspace(dir.path(), "stalls", svc.port);
    let sensor = enroll_with_openssl(dir.path(), &ws, svc.port, "stalled");

    // Enrollments without a certificate: Content-Length 60000, a few bytes, then nothing.
    let mut enrolls: Vec<(Tls, Instant)> = (0..3)
        .map(|_| {
            let mut tls = tls_from(LOCAL, &ws, svc.port, None).unwrap();
            tls.write_all(stalled_enroll_head(&ws.sensor_host).as_bytes())
                .unwrap();
            tls.flush().unwrap();
            (tls, Instant::now())
        })
        .collect();
    // A chunked events body with the sensor's certificate: one chunk, then nothing.
    let mut events = tls_from(LOCAL, &ws, svc.port, Some(&sensor)).unwrap();
    let chunk = "{\"seq\":1,\"kind\":\"stall\"}\n";
    events
        .write_all(
            format!(
                "POST /api/v1/events HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n",
                ws.sensor_host,
                chunk.len()
            )
            .as_bytes(),
        )
        .unwrap();
    events.flush().unwrap();
    let events_sent = Instant::now();

    for (tls, sent) in &mut enrolls {
        let (answer, closed) = read_until_closed(tls);
        let after = closed - *sent;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(
            answer.contains("REQUEST_REJECTED") && answer.contains("stalled: no byte for 1 s"),
            "{answer}"
        );
        assert!(
            after >= Duration::from_millis(900) && after < Duration::from_secs(5),
            "closed after {after:?}, want about 1 s\n{}",
            svc.log()
        );
    }
    let (answer, closed) = read_until_closed(&mut events);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("stalled"), "{answer}");
    assert!(
        closed - events_sent < Duration::from_secs(5),
        "{:?}",
        closed - events_sent
    );

    // A body that trickles a byte every 400 ms is never idle for 1 s, but the whole request must
    // arrive within 3 s.
    let mut slow = tls_from(LOCAL, &ws, svc.port, Some(&sensor)).unwrap();
    slow.write_all(
        format!(
            "POST /api/v1/events HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-ndjson\r\nContent-Length: 1000\r\n\r\n{{",
            ws.sensor_host
        )
        .as_bytes(),
    )
    .unwrap();
    slow.flush().unwrap();
    let began = Instant::now();
    let mut wrote = 0;
    let trickle_closed = loop {
        // The server's answer and close are the signal this loop waits for; the pause is the
        // client's own pacing.
        std::thread::sleep(Duration::from_millis(400));
        if slow.write_all(b" ").and_then(|()| slow.flush()).is_err() || closed_by_server(&mut slow)
        {
            break Instant::now();
        }
        wrote += 1;
        assert!(
            began.elapsed() < Duration::from_secs(10),
            "a trickling body was never cut off ({wrote} bytes)\n{}",
            svc.log()
        );
    };
    let after = trickle_closed - began;
    assert!(
        after >= Duration::from_millis(2900) && after < Duration::from_secs(6),
        "trickle closed after {after:?}, want about 3 s"
    );
    assert!(
        wrote >= 5,
        "the body kept flowing for {wrote} writes before the cut"
    );

    // Nothing of any of these was stored, and the service still answers.
    assert!(exported(dir.path(), &ws.name).is_empty());
    let (status, body, _) = ping_from(&ws, svc.port, LOCAL);
    assert_eq!((status, body.as_str()), (200, "Ok"));
}

#[test]
fn stalled_unauthenticated_connections_beyond_the_caps_are_closed_and_ping_answers() {
    let dir = tempfile::tempdir().unwrap();
    let svc = ServiceProc::start_with(
        dir.path(),
        &[
            "--max-connections",
            "20",
            "--max-unauthenticated-per-address",
            "5",
            "--stall-grace",
            "200ms",
            // Long enough that only the caps close the attackers' connections here.
            "--body-idle-timeout",
            "120s",
            "--request-timeout",
            "240s",
        ],
    );
    let ws = create_workspace(dir.path(), "flood", svc.port);
    let fds_before = open_fds(svc.pid());
    // The service raised its soft descriptor limit to the hard one at start.
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", svc.pid())).unwrap();
    let nofile: Vec<&str> = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .split_whitespace()
        .skip(3)
        .take(2)
        .collect();
    assert_eq!(
        nofile[0], nofile[1],
        "soft and hard open-file limits differ:\n{limits}"
    );

    // One address opens 30 stalled enrollments; ten other addresses 6 each: 90 in all, against
    // caps of 5 per address and 20 in total.
    let mut attackers: Vec<Tls> = Vec::new();
    let mut refused = 0;
    for from in std::iter::repeat_n(addr(2), 30)
        .chain((10..20).flat_map(|a| std::iter::repeat_n(addr(a), 6)))
    {
        match tls_from(from, &ws, svc.port, None).and_then(|mut tls| {
            tls.write_all(stalled_enroll_head(&ws.sensor_host).as_bytes())?;
            tls.flush()?;
            Ok(tls)
        }) {
            Ok(tls) => attackers.push(tls),
            Err(_) => refused += 1,
        }
    }
    // Let every attacker connection become stalled (quiet for the 200 ms grace): the caps close
    // stalled connections, and there is no event for "time has passed".
    std::thread::sleep(Duration::from_millis(400));

    // Pings from a fresh address and from the flooding one are answered promptly, each making
    // room by closing a stalled attacker connection.
    for from in [LOCAL, addr(2), LOCAL, addr(15), LOCAL, addr(2)] {
        let (status, body, took) = ping_from(&ws, svc.port, from);
        assert_eq!(
            (status, body.as_str()),
            (200, "Ok"),
            "ping from {from}\n{}",
            svc.log()
        );
        assert!(
            took < Duration::from_secs(3),
            "ping from {from} took {took:?}"
        );
    }

    let still_open: Vec<IpAddr> = attackers
        .iter_mut()
        .filter_map(|t| (!closed_by_server(t)).then(|| t.sock.local_addr().unwrap().ip()))
        .collect();
    assert!(
        still_open.len() <= 20,
        "{} attacker connections still open (refused at connect: {refused}); the total cap is 20\n{}",
        still_open.len(),
        svc.log()
    );
    for a in std::iter::once(2).chain(10..20).map(addr) {
        let n = still_open.iter().filter(|ip| **ip == a).count();
        assert!(
            n <= 5,
            "{n} stalled connections from {a} still open; the cap per address is 5"
        );
    }
    assert!(
        still_open.len() >= 5,
        "the caps closed more than needed: {still_open:?}"
    );
    let fds = open_fds(svc.pid());
    assert!(
        fds <= fds_before + 20 + 2,
        "the service holds {fds} descriptors ({fds_before} at rest): the caps did not hold"
    );
}

#[test]
fn a_sites_sensors_from_one_address_are_not_limited_per_address() {
    let dir = tempfile::tempdir().unwrap();
    let svc = ServiceProc::start_with(
        dir.path(),
        &[
            "--max-unauthenticated-per-address",
            "2",
            "--stall-grace",
            "100ms",
        ],
    );
    let ws = create_workspace(dir.path(), "site", svc.port);
    let sensors: Vec<Enrolled> = (0..8)
        .map(|i| enroll_with_openssl(dir.path(), &ws, svc.port, &format!("s{i}")))
        .collect();

    // The site's proxy address: eight sensors with their certificates, all connected at once.
    let proxy = addr(5);
    let mut conns: Vec<Tls> = sensors
        .iter()
        .map(|s| tls_from(proxy, &ws, svc.port, Some(s)).unwrap())
        .collect();
    for (i, c) in conns.iter_mut().enumerate() {
        let (status, body) = exchange(
            c,
            &events_request(&ws.sensor_host, &ndjson([1], &format!("first{i}"))),
        );
        assert_eq!(status, 200, "sensor {i}: {body}");
    }
    // Strangers from the same address beyond its cap of 2 ...
    let mut strangers = Vec::new();
    for _ in 0..6 {
        if let Ok(mut tls) = tls_from(proxy, &ws, svc.port, None) {
            if tls
                .write_all(stalled_enroll_head(&ws.sensor_host).as_bytes())
                .is_ok()
            {
                strangers.push(tls);
            }
        }
    }
    // ... are what the cap closes; every sensor connection is still open and answered.
    for (i, c) in conns.iter_mut().enumerate() {
        let (status, body) = exchange(
            c,
            &events_request(&ws.sensor_host, &ndjson([2], &format!("second{i}"))),
        );
        assert_eq!(
            status,
            200,
            "sensor {i} on its kept-alive connection: {body}\n{}",
            svc.log()
        );
    }
    let open_strangers = strangers
        .iter_mut()
        .map(closed_by_server)
        .filter(|closed| !closed)
        .count();
    assert!(
        open_strangers <= 2,
        "{open_strangers} unauthenticated connections from one address, cap 2"
    );
    let rows = exported(dir.path(), &ws.name);
    assert_eq!(rows.len(), 16, "two events from each of 8 sensors");
}

#[test]
fn concurrent_large_zstd_uploads_beyond_the_decode_budget_get_503_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // Each batch below decodes to about 9 MB and costs about 19 MB of budget: one at a time.
    let svc = ServiceProc::start_with(dir.path(), &["--decode-budget-mib", "24"]);
    let ws = create_workspace(dir.path(), "budget", svc.port);
    let sensor = Arc::new(enroll_with_openssl(dir.path(), &ws, svc.port, "bulk"));
    const BATCHES: u64 = 8;
    const PER_BATCH: u64 = 30_000;
    let files: Vec<std::path::PathBuf> = (0..BATCHES)
        .map(|b| {
            let plain: String = (b * PER_BATCH..(b + 1) * PER_BATCH)
                .map(|s| {
                    format!(
                        "{{\"seq\":{s},\"kind\":\"bulk\",\"pad\":\"{}\"}}\n",
                        "x".repeat(260)
                    )
                })
                .collect();
            let path = dir.path().join(format!("batch{b}.zst"));
            std::fs::write(&path, zstd::bulk::compress(plain.as_bytes(), 3).unwrap()).unwrap();
            path
        })
        .collect();

    let ws = Arc::new(ws);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pinger = {
        let (ws, stop, port) = (ws.clone(), stop.clone(), svc.port);
        std::thread::spawn(move || {
            let mut slowest = Duration::ZERO;
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || n == 0 {
                let (status, body, took) = ping_from(&ws, port, LOCAL);
                assert_eq!((status, body.as_str()), (200, "Ok"));
                slowest = slowest.max(took);
                n += 1;
            }
            (n, slowest)
        })
    };
    let post = |file: &std::path::Path| {
        post_events(
            &ws,
            svc.port,
            Some(&sensor),
            file,
            &["-H", "content-encoding: zstd", "-D", "-"],
        )
    };
    let first: Vec<(u16, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = files.iter().map(|f| s.spawn(|| post(f))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (pings, slowest) = pinger.join().unwrap();

    let busy: Vec<usize> = (0..first.len()).filter(|&i| first[i].0 == 503).collect();
    let ok = first.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(
        busy.len() + ok,
        first.len(),
        "only 200 and 503 expected: {first:?}"
    );
    assert!(
        ok >= 1 && !busy.is_empty(),
        "{ok} batches stored and {} refused at once; want some of each\n{}",
        busy.len(),
        svc.log()
    );
    for i in &busy {
        let (_, text) = &first[*i];
        let lower = text.to_ascii_lowercase();
        assert!(lower.contains("retry-after: 1"), "{text}");
        assert!(
            text.contains("SERVICE_UNAVAILABLE") && text.contains("nothing was stored"),
            "{text}"
        );
    }
    assert!(
        pings >= 1 && slowest < Duration::from_secs(2),
        "{pings} pings during the uploads, the slowest took {slowest:?}"
    );

    // The sensor's way: keep the batch and send it again until it is taken.
    for i in busy {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, text) = post(&files[i]);
            if status == 200 {
                break;
            }
            assert_eq!(status, 503, "{text}");
            assert!(Instant::now() < deadline, "batch {i} never taken");
            std::thread::sleep(Duration::from_secs(1)); // what Retry-After asked for
        }
    }
    let seqs: Vec<u64> = exported(dir.path(), &ws.name)
        .into_iter()
        .map(|(_, s, _)| s)
        .collect();
    sensor::assert_each_once(seqs, BATCHES * PER_BATCH, "seq");
}

#[test]
fn events_that_break_readers_are_refused_naming_the_line_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let svc = ServiceProc::start(dir.path());
    let ws = create_workspace(dir.path(), "readers", svc.port);
    let sensor = enroll_with_openssl(dir.path(), &ws, svc.port, "odd");
    let deep = format!(
        "{{\"seq\":3,\"x\":{}1{}}}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let cases = [
        (
            format!("{}{{\"seq\":4,\"s\":\"\\ud800\"}}\n", ndjson(1..=3, "ok")),
            "line 4: the escape \\ud800 at byte 15 is a lone UTF-16 surrogate",
        ),
        (
            format!(
                "{}{{\"seq\":5,\"s\":\"ok \\udc00\"}}\n",
                ndjson(1..=4, "ok")
            ),
            "line 5: the escape \\udc00",
        ),
        (
            format!("{}{deep}", ndjson(1..=2, "ok")),
            "line 3: arrays and objects nest deeper than 64 levels",
        ),
    ];
    for (i, (body, want)) in cases.iter().enumerate() {
        let file = dir.path().join(format!("bad{i}.ndjson"));
        std::fs::write(&file, body).unwrap();
        let (status, text) = post_events(&ws, svc.port, Some(&sensor), &file, &[]);
        assert_eq!(status, 400, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["code"], "REQUEST_REJECTED", "{text}");
        let message = v["message"].as_str().unwrap();
        assert!(
            message.contains("the batch was refused, nothing stored: "),
            "{message}"
        );
        assert!(message.contains(want), "case {i}: {message}\nwant {want}");
    }
    assert!(
        exported(dir.path(), &ws.name).is_empty(),
        "nothing of a refused batch is stored"
    );

    // At the limit, and a valid surrogate pair, are stored and read back.
    let at_limit = format!(
        "{{\"seq\":9,\"x\":{}1{}}}\n",
        "[".repeat(63),
        "]".repeat(63)
    );
    let file = dir.path().join("good.ndjson");
    std::fs::write(
        &file,
        format!("{at_limit}{{\"seq\":10,\"s\":\"\\ud83d\\ude00\"}}\n"),
    )
    .unwrap();
    let (status, text) = post_events(&ws, svc.port, Some(&sensor), &file, &[]);
    assert_eq!(status, 200, "{text}");
    let rows = exported(dir.path(), &ws.name);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1].2["event"]["s"], "\u{1F600}");
}

#[test]
fn sensors_uploading_at_once_beyond_the_decode_budget_retry_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    // Each batch of 2,000 events costs about the whole 1 MiB budget: one decodes at a time, and
    // four sensors uploading together are turned away with 503 until their turn.
    let svc = ServiceProc::start_with(&data, &["--decode-budget-mib", "1"]);
    let ws = create_workspace(&data, "fleet", svc.port);
    const SENSORS: usize = 4;
    const EVENTS: u64 = 12_000;
    let pad = "p".repeat(240);
    let sensors: Vec<sensor::Sensor> = (0..SENSORS)
        .map(|i| {
            let s = sensor::Sensor::installed(&dir.path().join(format!("s{i}")), &ws, &["--quiet"]);
            s.set_upload(2000);
            let input: String = (0..EVENTS)
                .map(|n| format!("{{\"kind\":\"s{i}\",\"n\":{n},\"pad\":\"{pad}\"}}\n"))
                .collect();
            ok(s.send(&input), "sensor send");
            s
        })
        .collect();
    let runs: Vec<std::process::Output> = std::thread::scope(|scope| {
        let handles: Vec<_> = sensors
            .iter()
            .map(|s| scope.spawn(|| s.run_once(120)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, run) in runs.iter().enumerate() {
        assert!(
            run.status.success(),
            "sensor {i}: {}{}\n{}",
            stdout(run),
            stderr(run),
            svc.log()
        );
    }
    let refused = svc.log().matches("decode budget exhausted").count();
    assert!(
        refused > 0,
        "no upload was turned away: the test did not exercise the budget\n{}",
        svc.log()
    );
    let rows = exported(&data, &ws.name);
    for i in 0..SENSORS {
        let kind = format!("s{i}");
        let ns: Vec<u64> = rows
            .iter()
            .filter(|(_, _, v)| v["kind"] == kind.as_str())
            .map(|(_, _, v)| v["event"]["n"].as_u64().unwrap())
            .collect();
        sensor::assert_each_once(
            ns,
            EVENTS,
            &format!("sensor {i}'s events ({refused} uploads turned away)"),
        );
    }
}
