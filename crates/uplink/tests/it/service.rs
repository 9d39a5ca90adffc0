//! The service against real clients (curl, openssl) on loopback.

use crate::support;

use std::time::Duration;

use support::*;

#[test]
fn ping_answers_ok_with_and_without_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let svc = ServiceProc::start(dir.path());
    let ws = create_workspace(dir.path(), "contoso", svc.port);

    let (status, body) = Curl::new(&ws.sensor_host, svc.port, "/tri/sensor/api/ping")
        .arg("--cacert")
        .arg(&ws.ca_file)
        .run();
    assert_eq!((status, body.as_str()), (200, "Ok"));

    let sensor = enroll_with_openssl(dir.path(), &ws, svc.port, "pinger");
    let (status, body) = Curl::new(&ws.sensor_host, svc.port, "/tri/sensor/api/ping")
        .arg("--cacert")
        .arg(&ws.ca_file)
        .arg("--cert")
        .arg(&sensor.cert_file)
        .arg("--key")
        .arg(&sensor.key_file)
        .run();
    assert_eq!((status, body.as_str()), (200, "Ok"));

    // The server certificate chains to the workspace CA and names the workspace's hosts:
    // curl verified both above (no -k). A client trusting only the system roots refuses it.
    let (code, err) = Curl::new(&ws.sensor_host, svc.port, "/tri/sensor/api/ping").run_fail();
    assert_eq!(
        code, 60,
        "curl exit 60 is 'peer certificate cannot be authenticated': {err}"
    );
}

#[test]
fn enrollment_issues_a_client_only_certificate_from_the_workspace_ca() {
    let dir = tempfile::tempdir().unwrap();
    let svc = ServiceProc::start(dir.path());
    let ws = create_workspace(dir.path(), "fabrikam", svc.port);
    let sensor = enroll_with_openssl(dir.path(), &ws, svc.port, "dc01");
    assert_eq!(sensor.sensor_id.len(), 32);

    let verify = openssl(&[
        "verify",
        "-CAfile",
        ws.ca_file.to_str().unwrap(),
        "-purpose",
        "sslclient",
        sensor.cert_file.to_str().unwrap(),
    ]);
    assert!(verify.contains(": OK"), "{verify}");
    let text = openssl(&[
        "x509",
        "-in",
        sensor.cert_file.to_str().unwrap(),
        "-noout",
        "-text",
    ]);
    assert!(text.contains("CA:FALSE"), "{text}");
    assert!(text.contains("TLS Web Client Authentication"), "{text}");
    assert!(!text.contains("TLS Web Server Authentication"), "{text}");
    assert!(
        text.contains(&format!("CN = {}", sensor.sensor_id))
            || text.contains(&format!("CN={}", sensor.sensor_id)),
        "{text}"
    );
    // The CSR asked for CN=dc01; the service decides the subject.
    assert!(
        !text.contains("CN = dc01") && !text.contains("CN=dc01"),
        "{text}"
    );

    // The sensor is registered.
    let stats = ok(
        uplink(&[
            "workspace",
            "stats",
            "fabrikam",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--json",
        ]),
        "stats",
    );
    let v: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(v["sensors"][0]["id"], sensor.sensor_id.as_str());
    assert_eq!(v["sensors"][0]["name"], "dc01");
}

#[test]
fn enrollment_refuses_a_wrong_access_key_and_a_malformed_csr() {
    let dir = tempfile::tempdir().unwrap();
    let svc = ServiceProc::start(dir.path());
    let ws = create_workspace(dir.path(), "w", svc.port);
    let enroll = |body: &str| {
        Curl::new(&ws.sensor_host, svc.port, "/api/v1/enroll")
            .arg("--cacert")
            .arg(&ws.ca_file)
            .args([
                "-H",
                "content-type: application/json",
                "--data-binary",
                body,
            ])
            .run()
    };
    let (_, csr_file) = support::key_and_csr(dir.path(), "x", "/CN=x");
    let csr = std::fs::read_to_string(csr_file).unwrap();
    let (status, body) =
        enroll(&serde_json::json!({"access_key": "wrong", "csr_pem": csr}).to_string());
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("ENROLL_DENIED"), "{body}");

    let (status, body) = enroll(&serde_json::json!({"access_key": ws.access_key, "csr_pem": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"}).to_string());
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("CSR was refused"), "{body}");

    // Flip one byte inside the signed request info (in the public key): the signature no longer
    // verifies, so the service must refuse it.
    let tampered = {
        use base64::Engine;
        let b64: String = csr.lines().filter(|l| !l.starts_with("-----")).collect();
        let mut der = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        let i = der.len() - 80;
        der[i] ^= 0x01;
        format!(
            "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
            base64::engine::general_purpose::STANDARD.encode(der)
        )
    };
    let (status, body) =
        enroll(&serde_json::json!({"access_key": ws.access_key, "csr_pem": tampered}).to_string());
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("CSR was refused"), "{body}");

    let (status, body) = enroll("{not json");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not valid JSON"), "{body}");
    // The access key never appears in the service's log.
    assert!(
        !svc.log().contains(&ws.access_key),
        "access key leaked into the log"
    );
}

#[test]
fn ingest_stores_every_event_once_across_replays_and_reshaped_batches() {
    let dir = tempfile::tempdir().unwrap();
    let svc = ServiceProc::start(dir.path());
    let ws = create_workspace(dir.path(), "acme", svc.port);
    let a = enroll_with_openssl(dir.path(), &ws, svc.port, "a");
    let b = enroll_with_openssl(dir.path(), &ws, svc.port, "b");
    let file = |name: &str, text: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };

    let first = file("first.ndjson", ndjson(0..100, "event"));
    let (status, body) = post_events(&ws, svc.port, Some(&a), &first, &[]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        serde_json::json!({"accepted": 100, "duplicates": 0})
    );

    // The same batch again (a retry after a lost response).
    let (status, body) = post_events(&ws, svc.port, Some(&a), &first, &[]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        serde_json::json!({"accepted": 0, "duplicates": 100})
    );

    // Re-shaped: 50..150, zstd-compressed this time.
    let reshaped = file("reshaped.ndjson", ndjson(50..150, "event"));
    let packed = dir.path().join("reshaped.zst");
    std::fs::write(
        &packed,
        zstd::encode_all(std::fs::read(&reshaped).unwrap().as_slice(), 3).unwrap(),
    )
    .unwrap();
    let (status, body) = post_events(
        &ws,
        svc.port,
        Some(&a),
        &packed,
        &["-H", "content-encoding: zstd"],
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        serde_json::json!({"accepted": 50, "duplicates": 50})
    );

    // Another sensor's sequence numbers are its own.
    let hb = file("hb.ndjson", ndjson(0..10, "heartbeat"));
    let (status, _) = post_events(&ws, svc.port, Some(&b), &hb, &[]);
    assert_eq!(status, 200);

    // Event by event: sensor a has 0..150 once each, sensor b 0..10, with the sent payloads.
    let rows = exported(dir.path(), "acme");
    let mut want: Vec<(String, u64)> = (0..150)
        .map(|s| (a.sensor_id.clone(), s))
        .chain((0..10).map(|s| (b.sensor_id.clone(), s)))
        .collect();
    want.sort();
    let got: Vec<(String, u64)> = rows.iter().map(|(id, seq, _)| (id.clone(), *seq)).collect();
    assert_eq!(got, want);
    for (id, seq, v) in &rows {
        assert_eq!(v["event"]["payload"], format!("event {seq}"), "{id}/{seq}");
    }
    let stats: serde_json::Value = serde_json::from_str(&ok(
        uplink(&[
            "workspace",
            "stats",
            "acme",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--json",
        ]),
        "stats",
    ))
    .unwrap();
    assert_eq!(
        stats["events"],
        serde_json::json!({"total": 160, "by_kind": {"event": 150, "heartbeat": 10}})
    );
    assert!(stats["sensors"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["last_seen"].is_string()));
    let only_b = ok(
        uplink(&[
            "events",
            "export",
            "acme",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--sensor",
            &b.sensor_id,
            "--kind",
            "heartbeat",
        ]),
        "export",
    );
    assert_eq!(only_b.lines().count(), 10);
}

#[test]
fn ingest_refuses_foreign_missing_and_bad_requests_without_storing_anything() {
    let dir = tempfile::tempdir().unwrap();
    let svc = ServiceProc::start(dir.path());
    let a = create_workspace(dir.path(), "alpha", svc.port);
    let b = create_workspace(dir.path(), "beta", svc.port);
    let sa = enroll_with_openssl(dir.path(), &a, svc.port, "sa");
    let good = dir.path().join("good.ndjson");
    std::fs::write(&good, ndjson(0..5, "event")).unwrap();

    // A certificate of workspace alpha on beta's host: 403.
    let (status, body) = post_events(&b, svc.port, Some(&sa), &good, &[]);
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("MTLS_REJECTED") && body.contains("alpha"),
        "{body}"
    );
    // No certificate: 401.
    let (status, body) = post_events(&a, svc.port, None, &good, &[]);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("MTLS_REJECTED"), "{body}");

    /// (name, body, extra curl args, expected status, expected text in the answer)
    type Case<'a> = (&'a str, Vec<u8>, &'a [&'a str], u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "garbage",
            b"\x00\x01garbage\xff".to_vec(),
            &[],
            400,
            "not UTF-8",
        ),
        (
            "half-good",
            format!("{}{{\"seq\":99", ndjson(10..20, "event")).into_bytes(),
            &[],
            400,
            "line 11",
        ),
        (
            "no-seq",
            b"{\"kind\":\"event\"}\n".to_vec(),
            &[],
            400,
            "missing \\\"seq\\\"",
        ),
        (
            "truncated-zstd",
            {
                let z = zstd::encode_all(ndjson(0..1000, "e").as_bytes(), 3).unwrap();
                z[..z.len() / 2].to_vec()
            },
            &["-H", "content-encoding: zstd"],
            400,
            "zstd",
        ),
        (
            "gzip",
            b"{}".to_vec(),
            &["-H", "content-encoding: gzip"],
            415,
            "gzip",
        ),
        ("too-big-raw", vec![b' '; 17 << 20], &[], 413, "larger than"),
        (
            "too-big-decoded",
            zstd::encode_all(vec![b' '; 65 << 20].as_slice(), 19).unwrap(),
            &["-H", "content-encoding: zstd"],
            413,
            "after decompression",
        ),
    ];
    for (name, bytes, extra, want_status, want_text) in cases {
        let p = dir.path().join(format!("{name}.body"));
        std::fs::write(&p, &bytes).unwrap();
        let (status, body) = post_events(&a, svc.port, Some(&sa), &p, extra);
        assert_eq!(status, want_status, "{name}: {body}");
        assert!(body.contains(want_text), "{name}: {body}");
    }
    // Nothing of any refused batch was stored (not even the ten valid lines of "half-good").
    assert!(exported(dir.path(), "alpha").is_empty());
    assert!(exported(dir.path(), "beta").is_empty());
    // And the service is still healthy.
    let (status, _) = post_events(&a, svc.port, Some(&sa), &good, &[]);
    assert_eq!(status, 200);
    assert_eq!(exported(dir.path(), "alpha").len(), 5);
}

#[test]
fn hosts_route_by_workspace_and_unknown_hosts_get_clear_answers() {
    let dir = tempfile::tempdir().unwrap();
    let svc = ServiceProc::start(dir.path());
    let ws = create_workspace(dir.path(), "routes", svc.port);

    // The console face: the web console, which sends a stranger to its sign-in page
    // (docs/console.md).
    let (status, body) = Curl::new("routes.uplink.localhost", svc.port, "/")
        .arg("--cacert")
        .arg(&ws.ca_file)
        .arg("-i")
        .run();
    assert_eq!(status, 303, "{body}");
    assert!(
        body.to_ascii_lowercase().contains("location: /login"),
        "{body}"
    );

    // A host no workspace serves: a readable 404 (the client must skip verification to read it).
    let (status, body) = Curl::new(
        "nobodysensorapi.uplink.localhost",
        svc.port,
        "/tri/sensor/api/ping",
    )
    .arg("-k")
    .run();
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("no workspace is served at"), "{body}");

    // SNI for one host, Host header for another: 421.
    let (status, body) = Curl::new(&ws.sensor_host, svc.port, "/tri/sensor/api/ping")
        .arg("--cacert")
        .arg(&ws.ca_file)
        .args(["-H", "Host: othersensorapi.uplink.localhost"])
        .run();
    assert_eq!(status, 421, "{body}");

    // Unknown path and wrong method.
    let (status, _) = Curl::new(&ws.sensor_host, svc.port, "/nope")
        .arg("--cacert")
        .arg(&ws.ca_file)
        .run();
    assert_eq!(status, 404);
    let (status, _) = Curl::new(&ws.sensor_host, svc.port, "/api/v1/events")
        .arg("--cacert")
        .arg(&ws.ca_file)
        .run();
    assert_eq!(status, 405);
}

#[test]
fn a_workspace_created_while_the_service_runs_is_served_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let svc = ServiceProc::start(dir.path());
    // Make the service look the name up (a miss) just before it exists.
    let (status, _) = Curl::new(
        "latesensorapi.uplink.localhost",
        svc.port,
        "/tri/sensor/api/ping",
    )
    .arg("-k")
    .run();
    assert_eq!(status, 404);
    let ws = create_workspace(dir.path(), "late", svc.port);
    // The negative cache lasts one second; the service must still serve the new workspace
    // within that bound. Retry until it does, bounded.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let out = std::process::Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
            .arg(&ws.ca_file)
            .arg("--resolve")
            .arg(format!("{}:{}:127.0.0.1", ws.sensor_host, svc.port))
            .arg(format!(
                "https://{}:{}/tri/sensor/api/ping",
                ws.sensor_host, svc.port
            ))
            .output()
            .unwrap();
        if stdout(&out) == "200" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "new workspace not served: {}\n{}",
            stderr(&out),
            svc.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // And it can enroll and ingest.
    let s = enroll_with_openssl(dir.path(), &ws, svc.port, "late");
    let p = dir.path().join("b.ndjson");
    std::fs::write(&p, ndjson(0..3, "event")).unwrap();
    assert_eq!(post_events(&ws, svc.port, Some(&s), &p, &[]).0, 200);
}

#[test]
fn sigterm_stops_the_service_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut svc = ServiceProc::start(dir.path());
    signal(svc.pid(), "TERM");
    let status = wait_exit(svc.take(), Duration::from_secs(15))
        .expect("service did not stop within 15 s of SIGTERM");
    assert!(status.success(), "exit status {status}: {}", svc.log());
    // The reader thread takes the last line off the pipe after the process has ended.
    poll_until(
        "the service's last log line",
        10,
        || svc.log().contains("service stopped"),
        || svc.log(),
    );
}

#[test]
fn cli_errors_say_what_failed_and_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (
            &["workspace", "create", "bad_name", "--data-dir", d],
            "has the character '_'",
        ),
        (
            &["workspace", "create", "xsensorapi", "--data-dir", d],
            "may not end in 'sensorapi'",
        ),
        (
            &["workspace", "create", &"a".repeat(55), "--data-dir", d],
            "the limit is 54",
        ),
        (
            &[
                "workspace",
                "create",
                "ok",
                "--data-dir",
                d,
                "--domain",
                "bad..domain",
            ],
            "not a valid DNS name",
        ),
        (
            &["workspace", "stats", "ghost", "--data-dir", d],
            "no workspace named \"ghost\"",
        ),
        (
            &[
                "events",
                "export",
                "ghost",
                "--data-dir",
                "/nonexistent/dir",
            ],
            "the data directory /nonexistent/dir does not exist: check the path",
        ),
    ];
    ok(
        uplink(&["workspace", "create", "dup", "--data-dir", d]),
        "create dup",
    );
    let out = uplink(&["workspace", "create", "dup", "--data-dir", d]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
    for (args, want) in cases {
        let out = uplink(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(want), "{args:?}: {}", stderr(&out));
    }
    // Usage errors are exit 2 (clap).
    assert_eq!(uplink(&["workspace", "create"]).status.code(), Some(2));
}

#[test]
fn a_store_from_a_newer_uplink_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    ok(
        uplink(&[
            "workspace",
            "create",
            "w",
            "--data-dir",
            dir.path().to_str().unwrap(),
        ]),
        "create",
    );
    rusqlite::Connection::open(dir.path().join("uplink.db"))
        .unwrap()
        // Far beyond any format this build knows (7 and 8 are taken by the admin API and the
        // sensor lifecycle: a fixed near number becomes "older" as formats are added).
        .execute_batch("PRAGMA user_version = 99")
        .unwrap();
    let out = std::process::Command::new(UPLINK)
        .args([
            "service",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("newer uplink (format 99)")
            && stderr(&out).contains("upgrade uplink"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn quickstart_runs_the_whole_system() {
    // More events than two of the sensor's default batches hold: three batches.
    let events = 2 * uplink_sensor::config::DEFAULT_BATCH_EVENTS + 5_000;
    let out = uplink(&["quickstart", "--events", &events.to_string()]);
    let text = ok(out, "quickstart");
    for want in [
        "(route DIRECT)".to_owned(),
        format!("queued           {events} events durably"),
        format!("uploaded         {events} events in 3 batches"),
        format!("stored           {events} events, sequence 0..{events} complete: yes"),
    ] {
        assert!(text.contains(&want), "missing {want:?} in:\n{text}");
    }
}

/// The quickstart through a real proxy, as the README's "Through a proxy" shows: with the
/// workspace's host in Squid's hosts file every event goes through Squid's tunnel; without it,
/// Squid cannot resolve the name and the quickstart says what the proxy needs.
#[test]
fn quickstart_through_squid_needs_the_proxy_to_resolve_the_workspace_host() {
    let host = "qsproxysensorapi.uplink.localhost";
    let mut squid = support::squid::Squid::start(support::squid::SquidOptions {
        hosts: vec![host.into()],
        ..Default::default()
    });
    let out = uplink(&[
        "quickstart",
        "--workspace",
        "qsproxy",
        "--events",
        "3000",
        "--proxy-url",
        &squid.url(),
    ]);
    let text = ok(out, "quickstart through squid");
    for want in [
        format!("(route PROXY 127.0.0.1:{})", squid.port),
        "uploaded         3000 events in 1 batch in".to_owned(),
        "stored           3000 events, sequence 0..3000 complete: yes".to_owned(),
    ] {
        assert!(text.contains(&want), "missing {want:?} in:\n{text}");
    }
    let log = squid.stop();
    assert!(
        !support::squid::tunnels(&log, host).is_empty(),
        "no tunnel to {host} in Squid's log:\n{log}"
    );

    // The same through a Squid that cannot resolve the name.
    let blind = support::squid::Squid::start(support::squid::SquidOptions::default());
    let out = uplink(&[
        "quickstart",
        "--workspace",
        "qsblind",
        "--events",
        "10",
        "--proxy-url",
        &blind.url(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("hosts entry \"127.0.0.1 qsblindsensorapi.uplink.localhost\""),
        "{}",
        stderr(&out)
    );
}

/// A mistyped `--data-dir` does not become an empty service that serves nothing: refused, exit
/// 1, nothing created, and the message says how to start a new one.
#[test]
fn the_service_refuses_a_data_dir_that_does_not_exist() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("uplnk-service");
    let out = uplink(&[
        "service",
        "--data-dir",
        typo.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("does not exist") && err.contains("uplink workspace create NAME --data-dir"),
        "{err}"
    );
    assert!(!typo.exists(), "nothing is created");
}
