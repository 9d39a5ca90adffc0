//! NO_PROXY lists, with curl's current semantics.
//!
//! The list is comma-separated; blanks around entries are ignored, but a blank followed by
//! anything other than a comma ends the list (curl's tokenizer: `"a .b"` is just `a`). Entries:
//! - `*` alone: every host bypasses the proxy;
//! - a name (`example.com`, `.example.com`, `*.example.com`): matches the name itself and every
//!   name under it, case-insensitively, ignoring a final dot; IDN names compare in punycode;
//! - an IP address, or a CIDR block (`10.0.0.0/8`, `2001:db8::/32`): matches hosts given as
//!   addresses inside it (no DNS lookups);
//! - any of the above with `:port` (`[v6]:port` for IPv6): matches only that port (Go supports
//!   this, curl does not; uplink follows Go here, which only ever narrows a match).
//!
//! Where Go's `httpproxy` differs from curl, uplink follows curl; the differences are listed in
//! the tests with the reason.

use std::net::IpAddr;

/// A parsed NO_PROXY list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NoProxy {
    all: bool,
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    /// A domain (ASCII/punycode, lowercase, no leading or trailing dot).
    Name(String),
    Net(IpAddr, u8),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    pattern: Pattern,
    port: Option<u16>,
}

/// Lowercase ASCII (punycode) form of a host name, without a final dot or IPv6 brackets.
pub fn normalize_host(host: &str) -> String {
    let h = host.trim().trim_start_matches('[').trim_end_matches(']');
    let h = h.strip_suffix('.').unwrap_or(h);
    if h.is_ascii() {
        h.to_ascii_lowercase()
    } else {
        idna::domain_to_ascii(h).unwrap_or_else(|_| h.to_lowercase())
    }
}

impl NoProxy {
    /// Parses a NO_PROXY value. Never fails: entries that cannot match anything are dropped.
    pub fn parse(list: &str) -> NoProxy {
        let mut out = NoProxy::default();
        let bytes = list.as_bytes();
        let mut i = 0;
        let blank = |b: u8| b == b' ' || b == b'\t';
        while i < bytes.len() {
            while i < bytes.len() && blank(bytes[i]) {
                i += 1;
            }
            let start = i;
            while i < bytes.len() && !blank(bytes[i]) && bytes[i] != b',' {
                i += 1;
            }
            let token = &list[start..i];
            if token == "*" {
                out.all = true;
            } else if !token.is_empty() {
                if let Some(e) = parse_entry(token) {
                    out.entries.push(e);
                }
            }
            while i < bytes.len() && blank(bytes[i]) {
                i += 1;
            }
            if i < bytes.len() && bytes[i] != b',' {
                break;
            }
            while i < bytes.len() && bytes[i] == b',' {
                i += 1;
            }
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        !self.all && self.entries.is_empty()
    }

    /// True when `host` (a name or an address) on `port` bypasses the proxy.
    pub fn matches(&self, host: &str, port: Option<u16>) -> bool {
        if self.all {
            return true;
        }
        let host = normalize_host(host);
        let ip = host.parse::<IpAddr>().ok();
        self.entries.iter().any(|e| {
            if let (Some(want), Some(got)) = (e.port, port) {
                if want != got {
                    return false;
                }
            } else if e.port.is_some() && port.is_none() {
                return false;
            }
            match (&e.pattern, ip) {
                (Pattern::Net(net, bits), Some(addr)) => cidr_match(addr, *net, *bits),
                (Pattern::Name(name), None) => {
                    host == *name
                        || (host.len() > name.len()
                            && host.ends_with(name.as_str())
                            && host.as_bytes()[host.len() - name.len() - 1] == b'.')
                }
                _ => false,
            }
        })
    }
}

fn parse_entry(token: &str) -> Option<Entry> {
    // [v6]:port or [v6]
    if let Some(rest) = token.strip_prefix('[') {
        let (addr, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None if after.is_empty() => None,
            None => return None,
        };
        let (pattern, _) = parse_addr_or_cidr(addr)?;
        return Some(Entry { pattern, port });
    }
    if let Some((pattern, _)) = parse_addr_or_cidr(token) {
        return Some(Entry {
            pattern,
            port: None,
        });
    }
    // name:port or v4:port (a bare IPv6 address has several colons and was handled above).
    let (host, port) = match token.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, Some(p.parse::<u16>().ok()?)),
        Some(_) => return None,
        None => (token, None),
    };
    if let Some((pattern, _)) = parse_addr_or_cidr(host) {
        return Some(Entry { pattern, port });
    }
    let name = host
        .strip_prefix("*.")
        .or_else(|| host.strip_prefix('.'))
        .unwrap_or(host);
    let name = normalize_host(name);
    if name.is_empty() || name.contains('*') || name.contains('/') {
        return None;
    }
    Some(Entry {
        pattern: Pattern::Name(name),
        port,
    })
}

/// An address (`/32` or `/128` implied) or a CIDR block. Bits beyond the family's width: `None`.
fn parse_addr_or_cidr(s: &str) -> Option<(Pattern, ())> {
    let (addr, bits) = match s.split_once('/') {
        Some((a, b)) => (a, Some(b.parse::<u8>().ok()?)),
        None => (s, None),
    };
    let addr: IpAddr = addr.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let bits = bits.unwrap_or(max);
    if bits > max {
        return None;
    }
    Some((Pattern::Net(addr, bits), ()))
}

/// True when `addr` is inside `net/bits` (families must agree). As in curl, a prefix length of 0
/// means the whole address must match (curl's `Curl_cidr4_match` treats `/0` like `/32`), so
/// `0.0.0.0/0` in NO_PROXY does not bypass everything: `*` does that.
pub fn cidr_match(addr: IpAddr, net: IpAddr, bits: u8) -> bool {
    let bits = match (bits, addr) {
        (0, IpAddr::V4(_)) => 32,
        (0, IpAddr::V6(_)) => 128,
        (b, _) => b,
    };
    match (addr, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) if bits <= 32 => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) if bits <= 128 => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn fixtures(name: &str) -> Value {
        let path = format!(
            "{}/../../../shared/fixtures/noproxy/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_slice(&std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
            .unwrap()
    }

    /// curl's current table (unit1614.c, later version): every row, no exception.
    #[test]
    fn curl_current_noproxy_table() {
        let t = fixtures("curl_noproxy_cases.json");
        let rows = t["check_noproxy_later"].as_array().unwrap();
        assert!(rows.len() > 40);
        for row in rows {
            let (host, list, want) = (
                row["host"].as_str().unwrap(),
                row["no_proxy"].as_str().unwrap(),
                row["match"].as_bool().unwrap(),
            );
            assert_eq!(
                NoProxy::parse(list).matches(host, None),
                want,
                "host {host:?} no_proxy {list:?}"
            );
        }
    }

    /// The 2022 table differs from today's curl in exactly one row: a bare domain did not yet
    /// match its subdomains. uplink follows today's curl.
    #[test]
    fn curl_2022_table_differs_only_where_curl_changed() {
        let t = fixtures("curl_noproxy_cases.json");
        for row in t["check_noproxy_v2022"].as_array().unwrap() {
            let (host, list, want) = (
                row["host"].as_str().unwrap(),
                row["no_proxy"].as_str().unwrap(),
                row["match"].as_bool().unwrap(),
            );
            let got = NoProxy::parse(list).matches(host, None);
            if host == "www.example.com" && list == "localhost,example.com,.example.de" {
                assert!(got && !want, "the one row curl changed after 2022");
            } else {
                assert_eq!(got, want, "host {host:?} no_proxy {list:?}");
            }
        }
    }

    #[test]
    fn curl_cidr_tables() {
        let t = fixtures("curl_noproxy_cases.json");
        for key in ["cidr4_match", "cidr6_match"] {
            for row in t[key].as_array().unwrap() {
                let addr: IpAddr = row["addr"].as_str().unwrap().parse().unwrap();
                let net: IpAddr = row["net"].as_str().unwrap().parse().unwrap();
                let bits = row["bits"].as_u64().unwrap();
                let want = row["match"].as_bool().unwrap();
                let got = u8::try_from(bits).is_ok_and(|b| cidr_match(addr, net, b));
                assert_eq!(got, want, "{addr} in {net}/{bits}");
            }
        }
    }

    /// Go's httpproxy table (every host with port 80), where Go agrees with curl. The rows where
    /// it does not, and why uplink follows curl:
    /// - loopback (`localhost`, `127.0.0.1`, `127.0.0.2`, `[::1]`): Go never proxies loopback
    ///   whatever NO_PROXY says; curl proxies it unless listed. A sensor told to use a proxy
    ///   uses it.
    /// - `barbaz.net` vs `.barbaz.net`, `wildcard.io` vs `*.wildcard.io`: Go's leading dot (and
    ///   `*.`) means subdomains only; in curl a leading dot is ignored, so the domain itself
    ///   matches too.
    #[test]
    fn go_use_proxy_table_where_go_agrees_with_curl() {
        let t = fixtures("go_httpproxy_cases.json");
        let list = NoProxy::parse(t["use_proxy"]["no_proxy"].as_str().unwrap());
        let differs = [
            "localhost",
            "127.0.0.1",
            "127.0.0.2",
            "[::1]",
            "barbaz.net",
            "wildcard.io",
        ];
        let mut checked = 0;
        for row in t["use_proxy"]["cases"].as_array().unwrap() {
            let host = row["host"].as_str().unwrap();
            let want_proxy = row["use_proxy"].as_bool().unwrap();
            let bypass = list.matches(host, Some(80));
            if differs.contains(&host) {
                assert_eq!(
                    bypass, want_proxy,
                    "{host}: expected to differ from Go (see the doc comment)"
                );
            } else {
                assert_eq!(
                    !bypass,
                    want_proxy,
                    "{host}: {}",
                    row.get("comment").and_then(Value::as_str).unwrap_or("")
                );
                checked += 1;
            }
        }
        assert!(checked >= 20, "{checked}");
        // NO_PROXY=* bypasses every host.
        let all = NoProxy::parse(t["all_no_proxy"]["no_proxy"].as_str().unwrap());
        for row in t["use_proxy"]["cases"].as_array().unwrap() {
            assert!(all.matches(row["host"].as_str().unwrap(), Some(80)));
        }
        // An invalid list must not panic, and matches nothing.
        let invalid = NoProxy::parse(t["invalid_no_proxy"]["no_proxy"].as_str().unwrap());
        assert!(!invalid.matches("example.com", Some(80)));
    }

    #[test]
    fn idn_and_ports() {
        let cases = [
            (".示例.com", "www.示例.com", None, true),
            ("xn--fsq092h.com", "www.示例.com", None, true),
            ("示例.com", "www.xn--fsq092h.com", None, true),
            ("example.com:443", "example.com", Some(443), true),
            ("example.com:443", "example.com", Some(8443), false),
            ("example.com:443", "example.com", None, false),
            ("[2001:db8::1]:443", "[2001:db8::1]", Some(443), true),
            ("10.0.0.0/8:443", "10.1.2.3", Some(443), true),
            ("10.0.0.0/8:443", "10.1.2.3", Some(80), false),
            ("EXAMPLE.com.", "www.Example.COM.", None, true),
            ("*.corp.example", "corp.example", None, true),
            // IPv6: addresses and blocks, bracketed or not, with ports; hosts as URLs give them.
            ("::1", "::1", None, true),
            ("::1", "[::1]", Some(443), true),
            ("[::1]", "::1", None, true),
            ("[::1]:443", "::1", Some(443), true),
            ("[::1]:443", "::1", Some(80), false),
            ("2001:db8::/32", "2001:db8::5", None, true),
            ("2001:db8::/32", "[2001:DB8:0:1::1]", Some(443), true),
            ("2001:db8::/32", "2001:db9::1", None, false),
            ("fd00::/8,10.0.0.0/8", "fd12::1", None, true),
            ("2001:db8::1", "2001:0db8:0:0:0:0:0:1", None, true),
        ];
        for (list, host, port, want) in cases {
            assert_eq!(
                NoProxy::parse(list).matches(host, port),
                want,
                "{list} / {host} / {port:?}"
            );
        }
    }
}
