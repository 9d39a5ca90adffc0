//! A DNS server that never asks the public resolvers: dnsmasq inside a network namespace of its
//! own (support::netns), authoritative for `.test` (`--local=/test/`: unknown names there are
//! NXDOMAIN), with the namespace's resolv.conf pointing at it. Commands run in the namespace
//! resolve through it. Killed on drop (the namespace goes with the Netns).

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::support::netns::Netns;
use crate::support::require;

pub struct Dns {
    pub ns: Netns,
    child: Child,
}

impl Dns {
    /// `records`: (name, IPv4) pairs the server answers.
    pub fn start(records: &[(&str, &str)]) -> Dns {
        require("dnsmasq");
        let ns = Netns::new();
        let dir = format!("/etc/netns/{}", ns.name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            format!("{dir}/resolv.conf"),
            "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
        )
        .unwrap();
        ns.hosts(&[]);
        let mut cmd = ns.command("dnsmasq");
        cmd.args([
            "--keep-in-foreground",
            "--log-facility=-",
            "--no-resolv",
            "--no-hosts",
            "--no-poll",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--local=/test/",
            "--pid-file",
            "--user=root",
        ]);
        for (name, ip) in records {
            cmd.arg(format!("--address=/{name}/{ip}"));
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start dnsmasq");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = String::new();
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(l) => {
                    seen.push_str(&l);
                    seen.push('\n');
                    if l.contains("started, version") {
                        break;
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!("dnsmasq did not start in the namespace; output:\n{seen}");
                }
            }
        }
        Dns { ns, child }
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
