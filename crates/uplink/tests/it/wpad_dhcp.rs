//! DHCP option 252 over a real DHCP exchange: dnsmasq as the DHCP server on one end of a veth
//! between two network namespaces, and on the other end dhclient (its lease file, read by
//! `uplink proxy wpad --leases`) or a confined NetworkManager (asked through nmcli, as
//! `uplink proxy wpad` does by default). Nothing runs on the host's interfaces; every daemon and
//! namespace goes away on drop, also when a test fails.

use crate::support;

use std::path::Path;
use std::time::Duration;

use support::dhcp::{Daemon, DhcpLink, CLIENT_IF};
use support::{require, stderr, stdout};

const PAC: &str = "function FindProxyForURL(u, h) { return 'DIRECT'; }";

/// Serves the PAC on the root namespace's loopback; returns its URL.
fn serve_pac() -> String {
    support::http::serve_pac(PAC, &[], usize::MAX)
}

/// dhclient on the client end, in the foreground, asking once, with `conf` as its dhclient.conf.
/// `-sf /bin/true`: its script configures nothing (no address, route or resolv.conf is set
/// anywhere). Returns once it says it is bound, i.e. once the lease is written.
fn dhclient(link: &DhcpLink, dir: &Path, conf: &str) -> Daemon {
    require("dhclient");
    link.client_up();
    let cf = dir.join("dhclient.conf");
    std::fs::write(&cf, conf).unwrap();
    let mut cmd = link.client_cmd("dhclient");
    cmd.args(["-d", "-1", "-v", "-sf", "/bin/true", "-cf"])
        .arg(&cf)
        .arg("-lf")
        .arg(dir.join("dhclient.upl.leases"))
        .arg("-pf")
        .arg(dir.join("dhclient.pid"))
        .arg(CLIENT_IF);
    let d = Daemon::spawn("dhclient", cmd);
    d.expect("bound to ", Duration::from_secs(60));
    d
}

fn wpad_json(mut cmd: std::process::Command) -> serde_json::Value {
    let o = cmd.output().expect("run uplink proxy wpad");
    let text = stdout(&o);
    assert_eq!(
        o.status.code(),
        Some(0),
        "uplink proxy wpad found nothing:\n{text}\n{}",
        stderr(&o)
    );
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// `uplink proxy wpad --json` on dhclient's lease file: option 252 is found there and its script
/// fetched.
fn wpad_from_lease(lease: &Path, url: &str) {
    let mut cmd = support::uplink_cmd(&["proxy", "wpad", "--json", "--leases"]);
    cmd.arg(lease)
        .args(["--no-networkmanager", "--resolv-conf", "/dev/null"]);
    let v = wpad_json(cmd);
    assert_eq!(v["pac_url"], url, "{v}");
    let steps = v["steps"].as_array().unwrap();
    assert_eq!(steps[0]["step"], "dhcp (dhclient lease)", "{v}");
    assert_eq!(steps[0]["outcome"], format!("option 252: {url}"), "{v}");
    let last = steps.last().unwrap();
    assert_eq!(last["step"], "dhcp (dhclient lease)", "{v}");
    assert_eq!(last["pac_url"], url, "{v}");
}

/// dhclient told that option 252 is `wpad` (as distributions' dhclient.conf do) asks for it;
/// dnsmasq sends the URL as text; the lease says `option wpad "URL";` and uplink finds it.
#[test]
fn dhclient_lease_from_a_real_dhcp_exchange_gives_option_252() {
    let url = serve_pac();
    let dir = tempfile::tempdir().unwrap();
    let link = DhcpLink::new();
    let server = link.dnsmasq(dir.path(), &url);
    let client = dhclient(
        &link,
        dir.path(),
        "option wpad code 252 = text;\nrequest subnet-mask, routers, domain-name, wpad;\n",
    );
    let lease = dir.path().join("dhclient.upl.leases");
    let text = std::fs::read_to_string(&lease).unwrap();
    assert!(
        text.contains(&format!("option wpad \"{url}\";")),
        "lease file:\n{text}\ndnsmasq:\n{}\ndhclient:\n{}",
        server.log(),
        client.log()
    );
    wpad_from_lease(&lease, &url);
}

/// A dhclient.conf that does not name option 252 still records it when the server sends it
/// unasked, as `option unknown-252 …`; the server here NUL-terminates the URL, as Windows DHCP
/// servers do. uplink finds it all the same.
#[test]
fn dhclient_lease_records_an_unnamed_nul_terminated_option_252() {
    let url = serve_pac();
    let hex: Vec<String> = format!("{url}\0")
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let link = DhcpLink::new();
    let server = link.dnsmasq(dir.path(), &hex.join(":"));
    let client = dhclient(&link, dir.path(), "request subnet-mask, routers;\n");
    let lease = dir.path().join("dhclient.upl.leases");
    let text = std::fs::read_to_string(&lease).unwrap();
    assert!(
        text.contains("option unknown-252 "),
        "lease file:\n{text}\ndnsmasq:\n{}\ndhclient:\n{}",
        server.log(),
        client.log()
    );
    wpad_from_lease(&lease, &url);
}

/// A real NetworkManager (confined: see support/networkmanager.rs) takes a DHCP lease from
/// dnsmasq on its only device; `nmcli -t -f DHCP4 device show` lists option 252 as `wpad`, and
/// `uplink proxy wpad` with only NetworkManager to ask finds it and fetches the script from the
/// DHCP server's side of the link, over the address NetworkManager configured.
#[test]
fn networkmanager_gives_option_252_through_nmcli() {
    use support::dhcp::networkmanager::{NetworkManager, PrivateBus};
    require("nmcli");
    require("python3");
    let dir = tempfile::tempdir().unwrap();
    let link = DhcpLink::new();
    let url = format!("http://{}/wpad.dat", link.server_ip);
    let www = dir.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("wpad.dat"), PAC).unwrap();
    let mut http = link.server_cmd("python3");
    http.args(["-u", "-m", "http.server", "80", "--bind", &link.server_ip])
        .arg("--directory")
        .arg(&www);
    let http = Daemon::spawn("http.server", http);
    http.expect("Serving HTTP", Duration::from_secs(20));
    let server = link.dnsmasq(dir.path(), &url);
    let bus = PrivateBus::start(dir.path());
    let nm = NetworkManager::start(&link, &bus, dir.path());

    let nmcli = std::process::Command::new("nmcli")
        .args(["-t", "-f", "DHCP4", "device", "show", CLIENT_IF])
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)
        .output()
        .expect("run nmcli");
    let shown = stdout(&nmcli);
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("DHCP4.OPTION[") && l.ends_with(&format!("]:wpad = {url}"))),
        "nmcli:\n{shown}{}\ndnsmasq:\n{}\nNetworkManager:\n{}",
        stderr(&nmcli),
        server.log(),
        nm.daemon.log()
    );

    // uplink in the client namespace, NetworkManager its only source.
    let mut cmd = link.client_cmd(support::UPLINK);
    support::scrub_proxy_env(&mut cmd);
    cmd.args(["proxy", "wpad", "--json"])
        .env("UPLINK_WPAD_LEASES", "")
        .env("UPLINK_WPAD_RESOLV_CONF", "")
        .env("UPLINK_WPAD_NETWORKMANAGER", "1")
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address);
    let v = wpad_json(cmd);
    assert_eq!(v["pac_url"], url.as_str(), "{v}");
    let steps = v["steps"].as_array().unwrap();
    assert_eq!(steps[0]["step"], "networkmanager", "{v}");
    assert_eq!(steps[0]["outcome"], format!("option 252: {url}"), "{v}");
    let last = steps.last().unwrap();
    assert_eq!(last["step"], "networkmanager", "{v}");
    assert_eq!(last["pac_url"], url.as_str(), "{v}");
}
