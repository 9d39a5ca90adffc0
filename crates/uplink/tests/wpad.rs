//! `uplink proxy wpad` through lease files: option 252 pointing at a PAC on a loopback HTTP
//! server is found; a lease without it and an empty resolv.conf find nothing, and say so.
//! (The dnsmasq-in-a-namespace DNS test of the issue is not written yet.)

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;

use support::{stdout, uplink};

fn serve_pac(body: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{addr}/wpad.dat")
}

#[test]
fn option_252_in_a_networkd_lease_is_found() {
    let url = serve_pac("function FindProxyForURL(u, h) { return 'DIRECT'; }");
    let dir = tempfile::tempdir().unwrap();
    let hex: String = format!("{url}\0")
        .bytes()
        .map(|b| format!("{b:02X}"))
        .collect();
    std::fs::write(
        dir.path().join("2"),
        format!("ADDRESS=10.0.0.5\nOPTION_252={hex}\n"),
    )
    .unwrap();
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(&resolv, "nameserver 127.0.0.1\n").unwrap();
    let o = uplink(&[
        "proxy",
        "wpad",
        "--json",
        "--leases",
        dir.path().join("2").to_str().unwrap(),
        "--resolv-conf",
        resolv.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert_eq!(v["pac_url"], url.as_str());
    let steps = v["steps"].as_array().unwrap();
    assert_eq!(steps[0]["step"], "dhcp (networkd lease)");
    assert_eq!(steps[0]["outcome"], format!("option 252: {url}"));
    assert!(
        steps.last().unwrap()["outcome"]
            .as_str()
            .unwrap()
            .starts_with("found a PAC"),
        "{v}"
    );
}

#[test]
fn nothing_found_is_exit_1_with_the_steps() {
    let dir = tempfile::tempdir().unwrap();
    let lease = dir.path().join("dhclient.eth0.leases");
    std::fs::write(&lease, "lease {\n  option domain-name \"com\";\n}\n").unwrap();
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(&resolv, "search co.uk\n").unwrap();
    let o = uplink(&[
        "proxy",
        "wpad",
        "--leases",
        lease.to_str().unwrap(),
        "--resolv-conf",
        resolv.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    // Public suffixes are never tried: no wpad.com, no wpad.co.uk.
    assert!(
        !out.contains("wpad.com") && !out.contains("wpad.co.uk"),
        "{out}"
    );
    assert!(
        out.contains("no option 252") && out.ends_with("PAC: none found\n"),
        "{out}"
    );
}
