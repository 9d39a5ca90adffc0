//! A real SOCKS5 server for tests: microsocks (Debian's `microsocks`), with or without
//! username/password authentication (RFC 1929), on loopback or inside a network namespace where
//! it resolves names with that namespace's hosts file (for `socks5h://`).

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::netns::Netns;
use super::require;
use super::squid::free_port_on;

pub struct Socks {
    pub listen: String,
    pub port: u16,
    child: Option<Child>,
    log: tempfile::NamedTempFile,
}

impl Socks {
    /// microsocks on 127.0.0.1, requiring `auth` (user, password) if given.
    pub fn start(auth: Option<(&str, &str)>) -> Socks {
        Self::start_with(None, "127.0.0.1", auth)
    }

    /// microsocks on `listen` (e.g. `::1`), requiring `auth` (user, password) if given.
    pub fn start_on(listen: &str, auth: Option<(&str, &str)>) -> Socks {
        Self::start_with(None, listen, auth)
    }

    /// microsocks inside `ns`, listening on its address (reachable from the root namespace).
    pub fn start_in(ns: &Netns, auth: Option<(&str, &str)>) -> Socks {
        Self::start_with(Some(ns), &ns.ns_ip, auth)
    }

    fn start_with(ns: Option<&Netns>, listen: &str, auth: Option<(&str, &str)>) -> Socks {
        require("microsocks");
        let mut last = String::new();
        // A free port can be taken between probing and binding: try again on another, thrice.
        for _ in 0..3 {
            let port = match ns {
                // The namespace's address is not bound in the root namespace: any port is free
                // there, but pick one the root namespace does not use either, for clarity.
                Some(_) => free_port_on("127.0.0.1"),
                None => free_port_on(listen),
            };
            let log = tempfile::NamedTempFile::new().unwrap();
            let mut cmd = match ns {
                Some(ns) => ns.command("microsocks"),
                None => Command::new("microsocks"),
            };
            cmd.args(["-i", listen, "-p", &port.to_string()]);
            if let Some((user, password)) = auth {
                cmd.args(["-u", user, "-P", password]);
            }
            let child = cmd
                .stdin(Stdio::null())
                .stdout(Stdio::from(log.reopen().unwrap()))
                .stderr(Stdio::from(log.reopen().unwrap()))
                .spawn()
                .expect("start microsocks");
            let mut socks = Socks {
                listen: listen.to_owned(),
                port,
                child: Some(child),
                log,
            };
            match socks.wait_ready() {
                Ok(()) => return socks,
                Err(e) => last = e,
            }
        }
        panic!("microsocks did not start, three times:\n{last}");
    }

    /// Waits (bounded) until microsocks accepts connections.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect((self.listen.as_str(), self.port)).is_err() {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Err(format!("microsocks exited ({st}):\n{}", self.logs()));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "microsocks did not accept connections within 20 s:\n{}",
                    self.logs()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// `socks5://HOST:PORT` (or `socks5h://` with `remote_dns`).
    pub fn url(&self, remote_dns: bool) -> String {
        let scheme = if remote_dns { "socks5h" } else { "socks5" };
        format!("{scheme}://{}:{}", self.listen, self.port)
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

impl Drop for Socks {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
