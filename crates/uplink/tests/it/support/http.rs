//! A fixed HTTP answer on a loopback port: PAC and WPAD scripts for the sensor, `check` and
//! `proxy pac` to fetch. Each connection's request is read (up to 4 KiB) and answered with the
//! same response, then closed.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};

/// Serves `body` with `headers` (`Name: value` each, `Content-Length` added) to at most `times`
/// connections (`usize::MAX`: until the test ends), then closes the port, so a later success
/// proves a cached copy was used. Returns the address.
pub fn serve(body: impl Into<String>, headers: &[&str], times: usize) -> SocketAddr {
    let body = body.into();
    let mut head = String::from("HTTP/1.1 200 OK\r\n");
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming().take(times) {
            let Ok(mut conn) = conn else { continue };
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(head.as_bytes());
            let _ = conn.write_all(body.as_bytes());
        }
    });
    addr
}

/// [`serve`] as a WPAD-style PAC URL: `http://ADDR/wpad.dat`.
pub fn serve_pac(body: impl Into<String>, headers: &[&str], times: usize) -> String {
    format!("http://{}/wpad.dat", serve(body, headers, times))
}

/// A hostile proxy on loopback that answers every request on every connection with a fresh
/// Digest 407 (`stale=true`, a new nonce each time), so a client that keeps answering loops
/// until its own bound stops it. Returns its address.
pub fn stale_digest_proxy() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { return };
            std::thread::spawn(move || {
                let (mut n, mut buf, mut pending) = (0u64, [0u8; 4096], Vec::new());
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(k) => pending.extend_from_slice(&buf[..k]),
                    }
                    while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                        pending.drain(..end + 4);
                        n += 1;
                        let reply = format!("HTTP/1.1 407 X\r\nProxy-Authenticate: Digest realm=\"r\", nonce=\"n{n}\", qop=\"auth\", stale=true\r\nContent-Length: 0\r\n\r\n");
                        if s.write_all(reply.as_bytes()).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}
