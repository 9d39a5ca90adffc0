//! A DNS server that never asks the public resolvers: dnsmasq inside a network namespace of its
//! own (support::netns), authoritative for `.test` (`--local=/test/`: unknown names there are
//! NXDOMAIN), with the namespace's resolv.conf pointing at it. Commands run in the namespace
//! resolve through it. Killed on drop (the namespace goes with the Netns).

use std::time::Duration;

use crate::support::daemon::Daemon;
use crate::support::netns::Netns;
use crate::support::require;

pub struct Dns {
    // Declared first so it is dropped (killed) before the namespace is deleted.
    _daemon: Daemon,
    pub ns: Netns,
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
        let daemon = Daemon::spawn("dnsmasq", cmd);
        daemon.expect("started, version", Duration::from_secs(20));
        Dns {
            _daemon: daemon,
            ns,
        }
    }
}
