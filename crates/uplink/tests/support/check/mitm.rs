//! mitmproxy (Debian's `mitmproxy` package) as a TLS-intercepting proxy on loopback, with its own
//! CA in a temporary confdir. `connection_strategy=lazy` makes it intercept before connecting
//! upstream, as inspecting proxies do. Killed on drop.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::require;
use crate::support::squid::free_port;

pub struct Mitm {
    pub port: u16,
    pub ca_pem: PathBuf,
    pub dir: tempfile::TempDir,
    child: Child,
}

impl Mitm {
    pub fn start() -> Mitm {
        require("mitmdump");
        let dir = tempfile::Builder::new()
            .prefix("uplink-mitm-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let mut child = Command::new("mitmdump")
            .args([
                "--mode",
                "regular",
                "--listen-host",
                "127.0.0.1",
                "--listen-port",
            ])
            .arg(port.to_string())
            .arg("--set")
            .arg(format!("confdir={}", dir.path().display()))
            .args([
                "--set",
                "connection_strategy=lazy",
                "--set",
                "ssl_insecure=true",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start mitmdump");
        // Signal: its "listening at" line, then the port accepting.
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = String::new();
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(l) => {
                    seen.push_str(&l);
                    seen.push('\n');
                    if l.contains("listening at") {
                        break;
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!("mitmdump did not start listening within 60 s; output:\n{seen}");
                }
            }
        }
        assert!(
            TcpStream::connect(("127.0.0.1", port)).is_ok(),
            "mitmdump is not accepting on {port}"
        );
        let ca_pem = dir.path().join("mitmproxy-ca-cert.pem");
        assert!(
            ca_pem.exists(),
            "mitmdump wrote no CA in {}",
            dir.path().display()
        );
        Mitm {
            port,
            ca_pem,
            dir,
            child,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Mitm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
