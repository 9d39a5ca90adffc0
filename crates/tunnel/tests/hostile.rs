//! `establish` against tiny proxies written here (std threads on loopback, port 0): hostile ones
//! must end with a precise code within a bound, and well-behaved multi-round ones must succeed on
//! the connection they were meant to.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use uplink_diag::{Code, Diagnose};
use uplink_tunnel::{establish, establish_with, AuthOptions, Credentials, Exchange, TunnelError};

const PASSWORD: &str = "Hunter2-Pr0xy";
const USER: &str = "CONTOSO\\proxyuser";

/// What a fake proxy saw.
#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    requests: Mutex<Vec<String>>,
}

/// A proxy on a free port; `handle(seen, connection number, stream)` runs per connection.
fn fake<H>(handle: H) -> (SocketAddr, Arc<Seen>)
where
    H: Fn(&Seen, usize, TcpStream) + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let handle = Arc::new(handle);
    let s = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let n = s.connections.fetch_add(1, Ordering::SeqCst);
            let (s, handle) = (s.clone(), handle.clone());
            std::thread::spawn(move || handle(&s, n, conn));
        }
    });
    (addr, seen)
}

/// Reads one request head; None if the client went away.
fn read_head(seen: &Seen, s: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    let head = String::from_utf8(head).unwrap();
    seen.requests.lock().unwrap().push(head.clone());
    Some(head)
}

fn authorization(head: &str) -> Option<String> {
    head.lines()
        .find_map(|l| l.strip_prefix("Proxy-Authorization: "))
        .map(str::to_owned)
}

fn creds() -> Credentials {
    Credentials::new(USER, PASSWORD)
}

type Outcome = (
    Result<uplink_tunnel::Tunnel<tokio::net::TcpStream>, TunnelError>,
    Duration,
);

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// Runs the exchange with preemptive Basic (the first CONNECT carries Basic credentials) against
/// `addr`; returns the outcome and how long it took. [`run_lazy`] uses the default (not
/// preemptive) options, through `establish`.
fn run(addr: SocketAddr, credentials: Option<&Credentials>, timeout: Duration) -> Outcome {
    let preemptive = AuthOptions {
        preemptive_basic: true,
        ..AuthOptions::default()
    };
    run_with(addr, credentials, timeout, preemptive)
}

/// The default: `establish`, where the first CONNECT goes without credentials.
fn run_lazy(addr: SocketAddr, credentials: Option<&Credentials>, timeout: Duration) -> Outcome {
    let start = Instant::now();
    let out = block_on(async {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        establish(
            tcp,
            || tokio::net::TcpStream::connect(addr),
            "fake",
            "sensor.example",
            443,
            credentials,
            timeout,
        )
        .await
    });
    (out, start.elapsed())
}

fn run_with(
    addr: SocketAddr,
    credentials: Option<&Credentials>,
    timeout: Duration,
    auth: AuthOptions,
) -> Outcome {
    let start = Instant::now();
    let out = block_on(async {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let x = Exchange {
            proxy: "fake",
            host: "sensor.example",
            port: 443,
            credentials,
            auth,
            timeout,
        };
        establish_with(tcp, || tokio::net::TcpStream::connect(addr), &x).await
    });
    (out, start.elapsed())
}

#[track_caller]
fn assert_error(out: Outcome, code: Code, bound: Duration) -> TunnelError {
    let (result, took) = out;
    let err = match result {
        Ok(t) => panic!("expected {code}, got a tunnel (scheme {:?})", t.scheme),
        Err(e) => e,
    };
    assert_eq!(err.code(), code, "{err}");
    assert!(took < bound, "took {took:?}, bound {bound:?}: {err}");
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(PASSWORD), "password leaked: {shown}");
    err
}

const T: Duration = Duration::from_secs(5);
/// Hostile cases that do not depend on the timeout must end well before it.
const FAST: Duration = Duration::from_secs(2);

#[test]
fn garbage_status_line() {
    let (addr, _) = fake(|seen, _, mut s| {
        read_head(seen, &mut s);
        let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2\r\n\r\n");
    });
    let err = assert_error(run(addr, None, T), Code::PROXY_PROTOCOL_ERROR, FAST);
    assert!(err.to_string().contains("not HTTP"), "{err}");
}

#[test]
fn endless_headers() {
    let (addr, _) = fake(|seen, _, mut s| {
        read_head(seen, &mut s);
        let _ = s.write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\n");
        // Until the client hangs up: the client must not wait for the end.
        while s
            .write_all(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n")
            .is_ok()
        {}
    });
    assert_error(
        run(addr, Some(&creds()), T),
        Code::PROXY_PROTOCOL_ERROR,
        FAST,
    );
}

#[test]
fn one_endless_header_line() {
    let (addr, _) = fake(|seen, _, mut s| {
        read_head(seen, &mut s);
        let _ = s.write_all(b"HTTP/1.1 407 X\r\nProxy-Authenticate: Basic realm=\"");
        while s.write_all(&[b'a'; 4096]).is_ok() {}
    });
    let err = assert_error(
        run(addr, Some(&creds()), T),
        Code::PROXY_PROTOCOL_ERROR,
        FAST,
    );
    assert!(err.to_string().contains("larger than"), "{err}");
}

#[test]
fn endless_407_loop_with_basic() {
    let (addr, seen) = fake(|seen, _, mut s| {
        while read_head(seen, &mut s).is_some() {
            let _ = s.write_all(b"HTTP/1.1 407 X\r\nProxy-Authenticate: Basic realm=\"r\"\r\nContent-Length: 5\r\n\r\nnope!");
        }
    });
    let err = assert_error(
        run_lazy(addr, Some(&creds()), T),
        Code::PROXY_AUTH_FAILED,
        FAST,
    );
    assert!(err.to_string().contains("CONTOSO\\proxyuser"), "{err}");
    // Without credentials, then with; on one connection, the 407 bodies read off it.
    let reqs = seen.requests.lock().unwrap();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!(seen.connections.load(Ordering::SeqCst), 1);
    assert!(authorization(&reqs[0]).is_none());
    assert!(authorization(&reqs[1]).unwrap().starts_with("Basic "));
}

#[test]
fn endless_407_loop_with_fresh_stale_digest_nonces() {
    let (addr, seen) = fake(|seen, _, mut s| {
        let mut n = 0;
        while read_head(seen, &mut s).is_some() {
            n += 1;
            let _ = s.write_all(format!("HTTP/1.1 407 X\r\nProxy-Authenticate: Digest realm=\"r\", nonce=\"n{n}\", qop=\"auth\", stale=true\r\nContent-Length: 0\r\n\r\n").as_bytes());
        }
    });
    assert_error(run(addr, Some(&creds()), T), Code::PROXY_AUTH_FAILED, FAST);
    let rounds = seen.requests.lock().unwrap().len();
    assert!(
        rounds <= 1 + AuthOptions::default().max_rounds as usize,
        "{rounds} CONNECTs"
    );
}

#[test]
fn a_proxy_that_never_answers_times_out() {
    let (addr, _) = fake(|seen, _, mut s| {
        read_head(seen, &mut s);
        // Hold the connection open, silent, until the client leaves.
        let _ = s.read(&mut [0u8; 1]);
    });
    let timeout = Duration::from_millis(500);
    let err = assert_error(
        run(addr, None, timeout),
        Code::PROXY_TIMEOUT,
        Duration::from_millis(1500),
    );
    assert!(err.to_string().contains("within"), "{err}");
}

#[test]
fn a_proxy_that_trickles_its_reply_times_out() {
    let (addr, _) = fake(|seen, _, mut s| {
        read_head(seen, &mut s);
        for b in b"HTTP/1.1 200 OK\r\n".iter().cycle() {
            if s.write_all(&[*b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    assert_error(
        run(addr, None, Duration::from_millis(500)),
        Code::PROXY_TIMEOUT,
        Duration::from_millis(1500),
    );
}

/// A MS-NLMP 4.2.4.3 CHALLENGE message.
const NTLM_CHALLENGE: &str = "TlRMTVNTUAACAAAADAAMADgAAAAzgoriASNFZ4mrze8AAAAAAAAAACQAJABEAAAABgBwFwAAAA9TAGUAcgB2AGUAcgACAAwARABvAG0AYQBpAG4AAQAMAFMAZQByAHYAZQByAAAAAAA=";

#[test]
fn reset_in_the_middle_of_the_ntlm_handshake() {
    let (addr, seen) = fake(|seen, _, mut s| {
        read_head(seen, &mut s);
        let _ =
            s.write_all(b"HTTP/1.1 407 X\r\nProxy-Authenticate: NTLM\r\nContent-Length: 0\r\n\r\n");
        read_head(seen, &mut s);
        let _ = s.write_all(format!("HTTP/1.1 407 X\r\nProxy-Authenticate: NTLM {NTLM_CHALLENGE}\r\nContent-Length: 0\r\n\r\n").as_bytes());
        // Gone before the AUTHENTICATE message is answered.
    });
    let err = assert_error(
        run(addr, Some(&creds()), T),
        Code::PROXY_PROTOCOL_ERROR,
        FAST,
    );
    // NTLM cannot continue on a new connection, so none was opened.
    assert_eq!(seen.connections.load(Ordering::SeqCst), 1, "{err}");
}

#[test]
fn connection_close_after_the_ntlm_challenge_is_explained() {
    let (addr, seen) = fake(|seen, _, mut s| {
        read_head(seen, &mut s);
        let _ =
            s.write_all(b"HTTP/1.1 407 X\r\nProxy-Authenticate: NTLM\r\nContent-Length: 0\r\n\r\n");
        read_head(seen, &mut s);
        let _ = s.write_all(format!("HTTP/1.1 407 X\r\nProxy-Authenticate: NTLM {NTLM_CHALLENGE}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").as_bytes());
    });
    let err = assert_error(
        run(addr, Some(&creds()), T),
        Code::PROXY_PROTOCOL_ERROR,
        FAST,
    );
    assert!(err.to_string().contains("keep it open"), "{err}");
    assert_eq!(seen.connections.load(Ordering::SeqCst), 1);
}

#[test]
fn reset_in_the_middle_of_a_reply_head() {
    let (addr, _) = fake(|seen, _, mut s| {
        read_head(seen, &mut s);
        let _ = s.write_all(b"HTTP/1.1 407 Proxy Auth");
    });
    let err = assert_error(
        run(addr, Some(&creds()), T),
        Code::PROXY_PROTOCOL_ERROR,
        FAST,
    );
    assert!(err.to_string().contains("middle of its reply"), "{err}");
}

#[test]
fn basic_reconnects_once_when_the_proxy_closes_after_its_407() {
    let expected = uplink_tunnel::basic(&creds());
    let want = secrecy::ExposeSecret::expose_secret(&expected).to_owned();
    let (addr, seen) = fake(move |seen, n, mut s| {
        let head = read_head(seen, &mut s).unwrap();
        if n == 0 {
            let _ = s.write_all(b"HTTP/1.1 407 X\r\nProxy-Authenticate: Basic realm=\"r\"\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbye");
        } else if authorization(&head).as_deref() == Some(want.as_str()) {
            let _ = s.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
            let _ = s.read(&mut [0u8; 1]);
        }
    });
    let (result, _) = run_lazy(addr, Some(&creds()), T);
    let tunnel = result.unwrap();
    assert_eq!(tunnel.scheme, Some("Basic"));
    assert!(tunnel
        .reconnected
        .unwrap()
        .contains("closed the connection"));
    assert_eq!(seen.connections.load(Ordering::SeqCst), 2);
}

#[test]
fn basic_reconnects_only_once() {
    // The first connection ends after its 407; every later one as soon as the request arrives.
    let (addr, seen) = fake(|seen, n, mut s| {
        read_head(seen, &mut s);
        if n == 0 {
            let _ = s.write_all(b"HTTP/1.1 407 X\r\nProxy-Authenticate: Basic realm=\"r\"\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
        }
    });
    let err = assert_error(
        run_lazy(addr, Some(&creds()), T),
        Code::PROXY_PROTOCOL_ERROR,
        FAST,
    );
    assert!(err.to_string().contains("without a reply"), "{err}");
    assert_eq!(seen.connections.load(Ordering::SeqCst), 2);
}

#[test]
fn chunked_407_body_is_read_and_the_next_round_uses_the_same_connection() {
    let (addr, seen) = fake(|seen, _, mut s| {
        read_head(seen, &mut s);
        let _ = s.write_all(b"HTTP/1.1 407 X\r\nProxy-Authenticate: Digest realm=\"r\", nonce=\"abc\", qop=\"auth\", algorithm=SHA-256\r\nTransfer-Encoding: chunked\r\n\r\n");
        // The body in pieces, slower than the client reads.
        for piece in [
            &b"5\r\nhel"[..],
            b"lo\r\n1",
            b"0\r\n0123456789abcdef\r\n0\r\n\r\n",
        ] {
            let _ = s.write_all(piece);
            let _ = s.flush();
            std::thread::sleep(Duration::from_millis(20));
        }
        let head = read_head(seen, &mut s).unwrap();
        if authorization(&head)
            .is_some_and(|a| a.starts_with("Digest ") && a.contains("uri=\"sensor.example:443\""))
        {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\n\r\n");
            let _ = s.read(&mut [0u8; 1]);
        }
    });
    let (result, _) = run(addr, Some(&creds()), T);
    let tunnel = result.unwrap();
    assert_eq!((tunnel.scheme, tunnel.rounds), (Some("Digest"), 1));
    assert!(tunnel.reconnected.is_none());
    assert_eq!(seen.connections.load(Ordering::SeqCst), 1);
}

#[test]
fn no_credentials_names_the_schemes() {
    let (addr, _) = fake(|seen, _, mut s| {
        read_head(seen, &mut s);
        let _ = s.write_all(b"HTTP/1.1 407 X\r\nProxy-Authenticate: Negotiate\r\nProxy-Authenticate: NTLM\r\nContent-Length: 0\r\n\r\n");
    });
    let err = assert_error(run(addr, None, T), Code::PROXY_AUTH_REQUIRED, FAST);
    assert!(err.to_string().contains("Negotiate, NTLM"), "{err}");
}

#[test]
fn a_huge_407_body_is_refused() {
    let (addr, _) = fake(|seen, _, mut s| {
        read_head(seen, &mut s);
        let _ = s.write_all(b"HTTP/1.1 407 X\r\nProxy-Authenticate: Basic realm=r\r\nContent-Length: 999999999999\r\n\r\n");
        while s.write_all(&[b'x'; 4096]).is_ok() {}
    });
    assert_error(
        run_lazy(addr, Some(&creds()), T),
        Code::PROXY_PROTOCOL_ERROR,
        FAST,
    );
}

#[test]
fn the_preference_is_honoured() {
    let (addr, seen) = fake(|seen, _, mut s| {
        while read_head(seen, &mut s).is_some() {
            let _ = s.write_all(b"HTTP/1.1 407 X\r\nProxy-Authenticate: NTLM\r\nProxy-Authenticate: Basic realm=r\r\nContent-Length: 0\r\n\r\n");
        }
    });
    let basic_only = AuthOptions {
        preference: vec![uplink_tunnel::Scheme::Basic],
        preemptive_basic: false,
        ..AuthOptions::default()
    };
    let out = run_with(addr, Some(&creds()), T, basic_only);
    assert_error(out, Code::PROXY_AUTH_FAILED, FAST);
    let reqs = seen.requests.lock().unwrap();
    assert!(authorization(&reqs[0]).is_none(), "{reqs:?}");
    assert!(
        authorization(&reqs[1]).unwrap().starts_with("Basic "),
        "{reqs:?}"
    );
}

#[test]
fn preemptive_basic_is_sent_first_and_an_ntlm_proxy_still_gets_ntlm() {
    let (addr, seen) = fake(|seen, _, mut s| {
        let head = read_head(seen, &mut s).unwrap();
        if !authorization(&head).is_some_and(|a| a.starts_with("Basic ")) {
            return;
        }
        let _ =
            s.write_all(b"HTTP/1.1 407 X\r\nProxy-Authenticate: NTLM\r\nContent-Length: 0\r\n\r\n");
        let head = read_head(seen, &mut s).unwrap();
        if authorization(&head).is_some_and(|a| a.starts_with("NTLM ")) {
            let _ = s.write_all(format!("HTTP/1.1 407 X\r\nProxy-Authenticate: NTLM {NTLM_CHALLENGE}\r\nContent-Length: 0\r\n\r\n").as_bytes());
        }
        let head = read_head(seen, &mut s).unwrap();
        if authorization(&head).is_some_and(|a| a.starts_with("NTLM TlRMTVNTUAADAAAA")) {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\n\r\n");
            let _ = s.read(&mut [0u8; 1]);
        }
    });
    let tunnel = run(addr, Some(&creds()), T).0.unwrap();
    assert_eq!((tunnel.scheme, tunnel.rounds), (Some("NTLM"), 2));
    assert_eq!(seen.requests.lock().unwrap().len(), 3);
    assert_eq!(seen.connections.load(Ordering::SeqCst), 1);
}

#[test]
fn preemptive_basic_rejected_is_auth_failed_in_one_round() {
    let (addr, seen) = fake(|seen, _, mut s| {
        while read_head(seen, &mut s).is_some() {
            let _ = s.write_all(
                b"HTTP/1.1 407 X\r\nProxy-Authenticate: Basic realm=r\r\nContent-Length: 0\r\n\r\n",
            );
        }
    });
    assert_error(run(addr, Some(&creds()), T), Code::PROXY_AUTH_FAILED, FAST);
    assert_eq!(seen.requests.lock().unwrap().len(), 1);
}
