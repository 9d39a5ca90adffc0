//! mitmproxy (Debian's `mitmproxy` package) as a TLS-intercepting proxy on loopback, with its own
//! CA in a temporary confdir. `connection_strategy=lazy` makes it intercept before connecting
//! upstream, as inspecting proxies do. Killed on drop.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::support::daemon::Daemon;
use crate::support::require;
use crate::support::squid::free_port;

pub struct Mitm {
    pub port: u16,
    pub ca_pem: PathBuf,
    pub dir: tempfile::TempDir,
    _daemon: Daemon,
}

impl Mitm {
    pub fn start() -> Mitm {
        require("mitmdump");
        let dir = tempfile::Builder::new()
            .prefix("uplink-mitm-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let mut cmd = Command::new("mitmdump");
        cmd.args([
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
        ]);
        // Signal: its "listening at" line, then the port accepting.
        let daemon = Daemon::spawn("mitmdump", cmd);
        daemon.expect("listening at", Duration::from_secs(60));
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
            _daemon: daemon,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}
