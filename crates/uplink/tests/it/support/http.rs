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
