//! Test hosts as network namespaces: `ip netns` with a veth pair to the root namespace
//! (10.77.N.1 on the root side, 10.77.N.2 inside), no default route, and a hosts file of its own
//! (/etc/netns/NAME/hosts, which `ip netns exec` mounts over /etc/hosts). Removed on drop.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use super::require;

static NEXT: AtomicU32 = AtomicU32::new(0);

pub struct Netns {
    pub name: String,
    veth: String,
    /// The root namespace's end of the link.
    pub host_ip: String,
    /// The namespace's own address.
    pub ns_ip: String,
}

/// `ip ARGS`, failing the test with ip's message if it fails.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run ip");
    assert!(
        out.status.success(),
        "ip {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Netns {
    pub fn new() -> Netns {
        require("ip");
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let octet = (std::process::id() * 7 + n * 13) % 250 + 1;
        let name = format!("uplk-{}-{n}", std::process::id());
        let veth = format!("uv{octet}h{n}");
        let peer = format!("uv{octet}n{n}");
        let (host_ip, ns_ip) = (format!("10.77.{octet}.1"), format!("10.77.{octet}.2"));
        ip(&["netns", "add", &name]);
        let ns = Netns {
            name: name.clone(),
            veth: veth.clone(),
            host_ip: host_ip.clone(),
            ns_ip: ns_ip.clone(),
        };
        ip(&["link", "add", &veth, "type", "veth", "peer", "name", &peer]);
        ip(&["link", "set", &peer, "netns", &name]);
        ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &veth]);
        ip(&["link", "set", &veth, "up"]);
        ip(&[
            "-n",
            &name,
            "addr",
            "add",
            &format!("{ns_ip}/30"),
            "dev",
            &peer,
        ]);
        ip(&["-n", &name, "link", "set", &peer, "up"]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        ns
    }

    /// Sets the namespace's /etc/hosts.
    pub fn hosts(&self, entries: &[(&str, &str)]) {
        let dir = format!("/etc/netns/{}", self.name);
        std::fs::create_dir_all(&dir).unwrap();
        let text: String = entries
            .iter()
            .map(|(ip, host)| format!("{ip} {host}\n"))
            .collect();
        std::fs::write(
            format!("{dir}/hosts"),
            format!("127.0.0.1 localhost\n{text}"),
        )
        .unwrap();
    }

    /// Sets the namespace's /etc/resolv.conf (which `ip netns exec` mounts over the host's).
    pub fn resolv_conf(&self, text: &str) {
        let dir = format!("/etc/netns/{}", self.name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(format!("{dir}/resolv.conf"), text).unwrap();
    }

    /// A command run inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Points the namespace's resolver at the root side's address (where the test decides what
    /// answers), with the resolver's own `timeout` seconds and `attempts`.
    pub fn resolver_at_host(&self, timeout: u32, attempts: u32) {
        self.resolv_conf(&format!(
            "nameserver {}\noptions timeout:{timeout} attempts:{attempts}\n",
            self.host_ip
        ));
    }

    /// Loads nftables `rules` (one `nft` command line, e.g. drop rules) inside the namespace;
    /// fails loudly when `nft` is missing or refuses them.
    #[track_caller]
    pub fn nft(&self, rules: &str) {
        super::require("nft");
        let out = self.command("nft").arg(rules).output().unwrap();
        assert!(
            out.status.success(),
            "nft {rules}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        let _ = Command::new("ip")
            .args(["link", "del", &self.veth])
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", self.name));
    }
}
