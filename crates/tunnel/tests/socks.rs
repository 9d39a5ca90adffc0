//! `establish_socks5` against tiny SOCKS5 servers written here (std threads on loopback, port 0):
//! exact bytes on the wire for a good exchange, and a precise code within a bound for each
//! hostile or refusing one.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use uplink_diag::{Code, Diagnose};
use uplink_tunnel::socks5::Target;
use uplink_tunnel::{establish_socks5, Credentials, Socks5Exchange, TunnelError};

const PASSWORD: &str = "S0cks-Hunter2";

/// A server on a free port running `handle` for its one connection; returns what it read.
fn fake<H>(handle: H) -> (SocketAddr, Arc<Mutex<Vec<u8>>>)
where
    H: FnOnce(&mut TcpStream, &Mutex<Vec<u8>>) + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    std::thread::spawn(move || {
        if let Ok((mut conn, _)) = listener.accept() {
            handle(&mut conn, &s);
        }
    });
    (addr, seen)
}

/// Reads exactly `n` bytes (recording them); false if the client went away.
fn take(s: &mut TcpStream, seen: &Mutex<Vec<u8>>, n: usize) -> bool {
    let mut buf = vec![0u8; n];
    if s.read_exact(&mut buf).is_err() {
        return false;
    }
    seen.lock().unwrap().extend_from_slice(&buf);
    true
}

fn run(
    addr: SocketAddr,
    target: Target,
    credentials: Option<&Credentials>,
    timeout: Duration,
) -> (
    Result<uplink_tunnel::Tunnel<tokio::net::TcpStream>, TunnelError>,
    Duration,
) {
    let start = Instant::now();
    let out = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let x = Socks5Exchange {
                proxy: "fake",
                target,
                port: 443,
                credentials,
                timeout,
            };
            establish_socks5(tcp, &x).await
        });
    (out, start.elapsed())
}

#[track_caller]
fn assert_error(
    out: (
        Result<uplink_tunnel::Tunnel<tokio::net::TcpStream>, TunnelError>,
        Duration,
    ),
    code: Code,
    bound: Duration,
) -> String {
    let (result, took) = out;
    let err = match result {
        Ok(_) => panic!("expected {code}, got a tunnel"),
        Err(e) => e,
    };
    assert_eq!(err.code(), code, "{err}");
    assert!(took < bound, "took {took:?}: {err}");
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(PASSWORD), "password leaked: {shown}");
    shown
}

fn creds() -> Credentials {
    Credentials::new("alice", PASSWORD)
}

fn domain() -> Target {
    Target::Domain("wsensorapi.example".into())
}

const T: Duration = Duration::from_secs(5);
const QUICK: Duration = Duration::from_secs(2);

#[test]
fn username_password_and_a_domain_target_byte_for_byte() {
    let (addr, seen) = fake(|s, seen| {
        assert!(take(s, seen, 4));
        s.write_all(&[5, 2]).unwrap();
        assert!(take(s, seen, 3 + 5 + PASSWORD.len()));
        s.write_all(&[1, 0]).unwrap();
        assert!(take(s, seen, 7 + "wsensorapi.example".len()));
        s.write_all(&[5, 0, 0, 1, 10, 0, 0, 1, 0x04, 0x38]).unwrap();
        let mut hold = [0u8; 1];
        let _ = s.read(&mut hold);
    });
    let c = creds();
    let (result, _) = run(addr, domain(), Some(&c), T);
    let tunnel = result.unwrap();
    assert_eq!(tunnel.scheme, Some("username/password"));
    let want = [
        &[5u8, 2, 0, 2][..],
        &[1, 5],
        b"alice",
        &[PASSWORD.len() as u8],
        PASSWORD.as_bytes(),
        &[5, 1, 0, 3, 18],
        b"wsensorapi.example",
        &[1, 0xbb],
    ]
    .concat();
    assert_eq!(*seen.lock().unwrap(), want);
}

#[test]
fn no_authentication_and_an_address_target() {
    let (addr, seen) = fake(|s, seen| {
        assert!(take(s, seen, 3));
        s.write_all(&[5, 0]).unwrap();
        assert!(take(s, seen, 10));
        s.write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0]).unwrap();
        let mut hold = [0u8; 1];
        let _ = s.read(&mut hold);
    });
    let (result, _) = run(addr, Target::Ip([192, 0, 2, 7].into()), None, T);
    assert_eq!(result.unwrap().scheme, None);
    assert_eq!(
        *seen.lock().unwrap(),
        [5, 1, 0, 5, 1, 0, 1, 192, 0, 2, 7, 1, 0xbb]
    );
}

#[test]
fn rejected_password_is_auth_failed_naming_the_user() {
    let (addr, _) = fake(|s, seen| {
        take(s, seen, 4);
        s.write_all(&[5, 2]).unwrap();
        take(s, seen, 3 + 5 + PASSWORD.len());
        let _ = s.write_all(&[1, 1]);
    });
    let c = creds();
    let shown = assert_error(
        run(addr, domain(), Some(&c), T),
        Code::PROXY_AUTH_FAILED,
        QUICK,
    );
    assert!(shown.contains("alice"), "{shown}");
}

#[test]
fn a_server_demanding_a_password_without_one_is_auth_required() {
    let (addr, _) = fake(|s, seen| {
        take(s, seen, 3);
        let _ = s.write_all(&[5, 0xff]);
    });
    assert_error(
        run(addr, domain(), None, T),
        Code::PROXY_AUTH_REQUIRED,
        QUICK,
    );
}

#[test]
fn a_gssapi_only_server_is_auth_required_and_says_so() {
    let (addr, _) = fake(|s, seen| {
        take(s, seen, 4);
        let _ = s.write_all(&[5, 1]);
    });
    let c = creds();
    let shown = assert_error(
        run(addr, domain(), Some(&c), T),
        Code::PROXY_AUTH_REQUIRED,
        QUICK,
    );
    assert!(shown.contains("GSSAPI"), "{shown}");
}

#[test]
fn a_refused_destination_is_connect_denied_with_the_rfc_meaning() {
    let (addr, _) = fake(|s, seen| {
        take(s, seen, 3);
        s.write_all(&[5, 0]).unwrap();
        take(s, seen, 7 + 18);
        // Only the first two bytes, then close: many servers do that on failure.
        let _ = s.write_all(&[5, 2]);
    });
    let shown = assert_error(
        run(addr, domain(), None, T),
        Code::PROXY_CONNECT_DENIED,
        QUICK,
    );
    assert!(shown.contains("not allowed by ruleset"), "{shown}");
}

#[test]
fn an_http_proxy_is_a_protocol_error_with_a_hint() {
    let (addr, _) = fake(|s, seen| {
        take(s, seen, 3);
        let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
    });
    let shown = assert_error(
        run(addr, domain(), None, T),
        Code::PROXY_PROTOCOL_ERROR,
        QUICK,
    );
    assert!(shown.contains("HTTP proxy"), "{shown}");
}

#[test]
fn garbage_is_a_protocol_error() {
    let (addr, _) = fake(|s, seen| {
        take(s, seen, 3);
        s.write_all(&[5, 0]).unwrap();
        take(s, seen, 25);
        let _ = s.write_all(&[5, 0, 0, 0x7f, 1, 2, 3, 4, 5, 6]);
    });
    assert_error(
        run(addr, domain(), None, T),
        Code::PROXY_PROTOCOL_ERROR,
        QUICK,
    );
}

#[test]
fn a_server_that_never_answers_times_out() {
    let (addr, _) = fake(|s, seen| {
        take(s, seen, 3);
        // Hold the connection open, silent, until the client gives up.
        let mut hold = [0u8; 1];
        let _ = s.read(&mut hold);
    });
    let timeout = Duration::from_millis(500);
    assert_error(
        run(addr, domain(), None, timeout),
        Code::PROXY_TIMEOUT,
        timeout + QUICK,
    );
}

#[test]
fn a_connection_closed_in_the_middle_of_the_handshake_is_a_protocol_error() {
    let (addr, _) = fake(|s, seen| {
        take(s, seen, 4);
        s.write_all(&[5, 2]).unwrap();
        take(s, seen, 3 + 5 + PASSWORD.len());
        // Half an answer, then gone.
        let _ = s.write_all(&[1]);
        let _ = s.shutdown(std::net::Shutdown::Both);
    });
    let c = creds();
    let shown = assert_error(
        run(addr, domain(), Some(&c), T),
        Code::PROXY_PROTOCOL_ERROR,
        QUICK,
    );
    assert!(shown.contains("middle of a SOCKS5 answer"), "{shown}");
}

#[test]
fn bytes_after_the_reply_are_refused() {
    let (addr, _) = fake(|s, seen| {
        take(s, seen, 3);
        s.write_all(&[5, 0]).unwrap();
        take(s, seen, 25);
        let _ = s.write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0, b'X']);
        let mut hold = [0u8; 1];
        let _ = s.read(&mut hold);
    });
    let shown = assert_error(
        run(addr, domain(), None, T),
        Code::PROXY_PROTOCOL_ERROR,
        QUICK,
    );
    assert!(shown.contains("after its SOCKS5 reply"), "{shown}");
}
