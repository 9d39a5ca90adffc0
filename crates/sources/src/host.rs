//! Heartbeat and inventory events: what the service learns about a sensor besides its data.
//!
//! - `heartbeat` (every 60 s by default, ±10 %): the sensor's report, heartbeat format 2
//!   (`uplink_protocol::heartbeat`: version, route and how it was chosen, the queue's depth, the
//!   last error, skipped heartbeats, the outage log…), built by the sensor.
//!   A heartbeat is never waited for: when the queue is full it is skipped and counted, so the
//!   next one that gets through says how long the sensor was stuck.
//! - `inventory` (at start and daily by default): hostname, OS (from `/etc/os-release`), kernel
//!   (what `uname -srvm` shows, read from `/proc/sys/kernel`), addresses (from `/proc/net`) and
//!   uptime.
//!
//! The builders and the parsers are pure; [`Inventory::collect`] is the only I/O, and reads
//! files only (no subprocess, no `unsafe`).

use std::net::{Ipv4Addr, Ipv6Addr};

use serde_json::{json, Map, Value};

pub use uplink_protocol::heartbeat::Heartbeat;

use crate::Event;

/// A heartbeat event: the report (`uplink_protocol::heartbeat`, format 2, built by the sensor
/// which knows the route, the queue and the outage log) as a queued event of kind `heartbeat`.
pub fn heartbeat_event(h: &Heartbeat) -> Event {
    event("heartbeat", serde_json::to_value(h).unwrap_or(Value::Null))
}

/// What an inventory reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    pub hostname: String,
    pub os: OsRelease,
    pub kernel: Kernel,
    pub addresses: Vec<String>,
    pub uptime_secs: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OsRelease {
    pub id: Option<String>,
    pub version_id: Option<String>,
    pub pretty_name: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Kernel {
    /// `uname -s`
    pub name: String,
    /// `uname -r`
    pub release: String,
    /// `uname -v`
    pub version: String,
    /// `uname -m` (the architecture this sensor was built for)
    pub machine: String,
}

pub fn inventory_event(i: &Inventory) -> Event {
    let v = json!({
        "hostname": i.hostname,
        "os": {"id": i.os.id, "version_id": i.os.version_id, "pretty_name": i.os.pretty_name},
        "kernel": {"name": i.kernel.name, "release": i.kernel.release, "version": i.kernel.version, "machine": i.kernel.machine},
        "addresses": i.addresses,
        "uptime_secs": i.uptime_secs,
    });
    event("inventory", v)
}

fn event(kind: &str, v: Value) -> Event {
    let fields: Map<String, Value> = match v {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    Event {
        kind: kind.to_owned(),
        fields,
    }
}

impl Inventory {
    /// Reads this host's inventory. Whatever cannot be read is left empty: an inventory with a
    /// gap beats none.
    pub fn collect() -> Inventory {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let os_text = std::fs::read_to_string("/etc/os-release")
            .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
            .unwrap_or_default();
        let mut addresses: Vec<String> = parse_fib_trie_local(&read("/proc/net/fib_trie"))
            .into_iter()
            .map(|a| a.to_string())
            .collect();
        addresses.extend(
            parse_if_inet6(&read("/proc/net/if_inet6"))
                .into_iter()
                .map(|a| a.to_string()),
        );
        Inventory {
            hostname: read("/proc/sys/kernel/hostname").trim().to_owned(),
            os: parse_os_release(&os_text),
            kernel: Kernel {
                name: read("/proc/sys/kernel/ostype").trim().to_owned(),
                release: read("/proc/sys/kernel/osrelease").trim().to_owned(),
                version: read("/proc/sys/kernel/version").trim().to_owned(),
                machine: std::env::consts::ARCH.to_owned(),
            },
            addresses,
            uptime_secs: parse_uptime(&read("/proc/uptime")),
        }
    }
}

/// `/etc/os-release` (os-release(5)): `KEY=value` lines, values optionally quoted with `"` or `'`
/// and backslash escapes inside double quotes.
pub fn parse_os_release(text: &str) -> OsRelease {
    let mut os = OsRelease::default();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let Some((key, raw)) = line.split_once('=') else {
            continue;
        };
        let value = unquote(raw.trim());
        match key.trim() {
            "ID" => os.id = Some(value),
            "VERSION_ID" => os.version_id = Some(value),
            "PRETTY_NAME" => os.pretty_name = Some(value),
            _ => {}
        }
    }
    os
}

fn unquote(v: &str) -> String {
    if v.len() >= 2 && v.starts_with('\'') && v.ends_with('\'') {
        return v[1..v.len() - 1].to_owned();
    }
    if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
        let mut out = String::new();
        let mut chars = v[1..v.len() - 1].chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            } else {
                out.push(c);
            }
        }
        return out;
    }
    v.to_owned()
}

/// The local IPv4 addresses in `/proc/net/fib_trie`: each `|-- A.B.C.D` followed by
/// `/32 host LOCAL`. Loopback excluded; sorted, once each.
pub fn parse_fib_trie_local(text: &str) -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    let mut last: Option<Ipv4Addr> = None;
    for line in text.lines() {
        let t = line.trim();
        if let Some(a) = t.strip_prefix("|-- ") {
            last = a.parse().ok();
        } else if t.starts_with("/32 host LOCAL") {
            if let Some(a) = last.take() {
                if !a.is_loopback() {
                    out.push(a);
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The IPv6 addresses in `/proc/net/if_inet6` (32 hex digits, index, prefix, scope, flags, name).
/// Loopback excluded.
pub fn parse_if_inet6(text: &str) -> Vec<Ipv6Addr> {
    let mut out: Vec<Ipv6Addr> = text
        .lines()
        .filter_map(|l| {
            let hex = l.split_whitespace().next()?;
            let n = u128::from_str_radix(hex, 16)
                .ok()
                .filter(|_| hex.len() == 32)?;
            Some(Ipv6Addr::from(n))
        })
        .filter(|a| !a.is_loopback())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// `/proc/uptime`: seconds since boot (first field), whole seconds.
pub fn parse_uptime(text: &str) -> Option<u64> {
    let f: f64 = text.split_whitespace().next()?.parse().ok()?;
    (f.is_finite() && f >= 0.0).then_some(f as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release() {
        for (text, id, ver, pretty) in [
            (
                "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n",
                Some("debian"),
                Some("12"),
                Some("Debian GNU/Linux 12 (bookworm)"),
            ),
            (
                "ID='ubuntu'\n# ID=no\nPRETTY_NAME=\"a \\\"b\\\"\"",
                Some("ubuntu"),
                None,
                Some("a \"b\""),
            ),
            ("garbage\n=\n", None, None, None),
            ("", None, None, None),
        ] {
            let os = parse_os_release(text);
            assert_eq!(os.id.as_deref(), id, "{text}");
            assert_eq!(os.version_id.as_deref(), ver, "{text}");
            assert_eq!(os.pretty_name.as_deref(), pretty, "{text}");
        }
    }

    #[test]
    fn addresses_and_uptime() {
        let trie = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 127.0.0.1\n        /32 host LOCAL\n     |-- 192.0.2.2\n        /32 host LOCAL\n     |-- 192.0.2.255\n        /32 link BROADCAST\nLocal:\n     |-- 192.0.2.2\n        /32 host LOCAL\n";
        assert_eq!(
            parse_fib_trie_local(trie),
            vec![Ipv4Addr::new(192, 0, 2, 2)]
        );
        assert!(parse_fib_trie_local("|-- nonsense\n/32 host LOCAL").is_empty());
        let v6 = "fd000000000000000000000000000002 04 40 00 82     eth0\n00000000000000000000000000000001 01 80 10 80       lo\nzz\n";
        assert_eq!(
            parse_if_inet6(v6),
            vec!["fd00::2".parse::<Ipv6Addr>().unwrap()]
        );
        for (t, want) in [
            ("12345.67 999.0\n", Some(12345)),
            ("", None),
            ("-1 2", None),
            ("x", None),
        ] {
            assert_eq!(parse_uptime(t), want, "{t}");
        }
    }

    #[test]
    fn events_have_their_fields() {
        let h = heartbeat_event(&Heartbeat {
            format: 2,
            version: "0.1.0".into(),
            route: Some("PROXY p:3128".into()),
            proxy_auth: Some("NTLM".into()),
            queue: uplink_protocol::heartbeat::QueueDepth {
                events: 3,
                ..Default::default()
            },
            skipped_heartbeats: 2,
            ..Default::default()
        });
        assert_eq!(h.kind, "heartbeat");
        assert_eq!(h.fields["format"], 2);
        assert_eq!(h.fields["route"], "PROXY p:3128");
        assert_eq!(h.fields["proxy_auth"], "NTLM");
        assert_eq!(h.fields["queue"]["events"], 3);
        assert_eq!(h.fields["skipped_heartbeats"], 2);
        assert!(h.fields["last_error_code"].is_null());
        let i = inventory_event(&Inventory::collect());
        assert_eq!(i.kind, "inventory");
        for k in ["hostname", "os", "kernel", "addresses", "uptime_secs"] {
            assert!(i.fields.contains_key(k), "{k}");
        }
        assert_eq!(i.fields["kernel"]["name"], "Linux");
    }
}
