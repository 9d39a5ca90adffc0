//! Real DHCP on a link of its own: two network namespaces joined by a veth, a server side
//! (10.79.N.1/24) where dnsmasq answers DHCP, and a client side with no address where dhclient or
//! NetworkManager asks. The link is created inside the namespaces, so no interface of it ever
//! exists in the root namespace, and nothing listens on the host's interfaces. Daemons are
//! killed on drop ([`Daemon`]), the namespaces deleted on drop ([`DhcpLink`]).

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

pub use super::daemon::Daemon;
use super::require;

pub mod networkmanager;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// The server side's interface (in the server namespace).
pub const SERVER_IF: &str = "upl-dhcps";
/// The client side's interface (in the client namespace).
pub const CLIENT_IF: &str = "upl-dhcpc";

pub struct DhcpLink {
    pub server_ns: String,
    pub client_ns: String,
    /// The server side's address; the DHCP range is .10 to .20 of its /24.
    pub server_ip: String,
    net: String,
}

use super::netns::ip;

impl DhcpLink {
    pub fn new() -> DhcpLink {
        require("ip");
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let octet = (std::process::id() * 7 + n * 13) % 250 + 1;
        let base = format!("upd-{}-{n}", std::process::id());
        let link = DhcpLink {
            server_ns: format!("{base}-s"),
            client_ns: format!("{base}-c"),
            server_ip: format!("10.79.{octet}.1"),
            net: format!("10.79.{octet}"),
        };
        ip(&["netns", "add", &link.server_ns]);
        ip(&["netns", "add", &link.client_ns]);
        // Both ends are born in their namespaces: `ip -n S link add A type veth peer B netns C`.
        ip(&[
            "-n",
            &link.server_ns,
            "link",
            "add",
            SERVER_IF,
            "type",
            "veth",
            "peer",
            "name",
            CLIENT_IF,
            "netns",
            &link.client_ns,
        ]);
        ip(&[
            "-n",
            &link.server_ns,
            "addr",
            "add",
            &format!("{}/24", link.server_ip),
            "dev",
            SERVER_IF,
        ]);
        for ns in [&link.server_ns, &link.client_ns] {
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        ip(&["-n", &link.server_ns, "link", "set", SERVER_IF, "up"]);
        link
    }

    /// Brings the client's end up (dhclient needs it up; NetworkManager does it itself).
    pub fn client_up(&self) {
        ip(&["-n", &self.client_ns, "link", "set", CLIENT_IF, "up"]);
    }

    /// `--dhcp-range` for dnsmasq: .10 to .20 of the server's /24, one-hour leases.
    pub fn dhcp_range(&self) -> String {
        format!("{0}.10,{0}.20,255.255.255.0,1h", self.net)
    }

    pub fn server_cmd(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.server_ns, program]);
        c
    }

    pub fn client_cmd(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.client_ns, program]);
        c
    }

    /// dnsmasq as a DHCP server only (`--port=0`: no DNS) on the server's end of the link,
    /// sending option 252 as `option_252` (dnsmasq's syntax: text, or `xx:xx:…` bytes) whether
    /// asked or not, and a domain name. Returns once its DHCP socket is bound.
    pub fn dnsmasq(&self, dir: &Path, option_252: &str) -> Daemon {
        require("dnsmasq");
        let mut cmd = self.server_cmd("dnsmasq");
        cmd.args([
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--port=0",
            &format!("--interface={SERVER_IF}"),
            "--bind-interfaces",
            &format!("--dhcp-range={}", self.dhcp_range()),
            &format!("--dhcp-option-force=252,{option_252}"),
            "--dhcp-option=option:domain-name,corp.uplink.test",
            "--pid-file=",
            "--log-dhcp",
            "--log-facility=-",
        ])
        .arg(format!(
            "--dhcp-leasefile={}",
            dir.join("dnsmasq.leases").display()
        ));
        let d = Daemon::spawn("dnsmasq", cmd);
        d.expect(
            &format!("sockets bound exclusively to interface {SERVER_IF}"),
            Duration::from_secs(20),
        );
        d
    }
}

impl Drop for DhcpLink {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth end in it, and so the pair.
        for ns in [&self.client_ns, &self.server_ns] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}
