//! WPAD (Web Proxy Auto-Discovery): where a network publishes its PAC file.
//!
//! Two sources, tried in this order by the discovery step: DHCP option 252 (a PAC URL handed out
//! with the lease) and DNS, fetching `http://wpad.<domain>/wpad.dat` for the host's search domains
//! and their parents. The DNS walk is where WPAD is dangerous: walking up to `wpad.com` or
//! `wpad.co.uk` would fetch a PAC from whoever registered that name, so the walk stops before any
//! public suffix (the Public Suffix List, compiled in by the `psl` crate).
//!
//! The pure parts are here: lease-file parsers and the candidate list. [`discover`] reads the
//! files and asks NetworkManager, with fetching (and checking) a script left to the caller;
//! [`cache`] keeps a result for its lifetime.

#![forbid(unsafe_code)]

pub mod cache;
pub mod discover;

pub use discover::{discover, Discovery, Fetch, Fetched, Found, Sources, Step};

/// What a DHCP lease says about WPAD.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseInfo {
    /// Option 252, the PAC URL, if the server sent one.
    pub wpad_url: Option<String>,
    /// The lease's domain name (option 15), a starting point for the DNS walk.
    pub domain: Option<String>,
}

/// Parses a systemd-networkd lease file (`/run/systemd/netif/leases/<ifindex>`): `KEY=value`
/// lines; networkd stores private options (224–254, so 252 too) as `OPTION_252=<hex>`.
pub fn parse_networkd_lease(text: &str) -> LeaseInfo {
    let mut info = LeaseInfo::default();
    for line in text.lines() {
        let Some((key, value)) = line.trim().split_once('=') else {
            continue;
        };
        match key {
            "OPTION_252" => info.wpad_url = decode_hex(value).and_then(clean_url),
            "DOMAINNAME" => info.domain = clean_domain(value),
            _ => {}
        }
    }
    info
}

/// Parses a dhclient lease file (`/var/lib/dhcp/dhclient*.leases`) and returns what its last
/// lease says (dhclient appends; the last lease is the current one). Option 252 appears as
/// `option wpad "…";` when dhclient.conf names it, else as `option unknown-252 "…";` or with
/// colon-separated hex bytes.
pub fn parse_dhclient_leases(text: &str) -> LeaseInfo {
    let mut current = LeaseInfo::default();
    let mut last = LeaseInfo::default();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with("lease") && line.ends_with('{') {
            current = LeaseInfo::default();
        } else if line == "}" {
            last = std::mem::take(&mut current);
        } else if let Some(rest) = line.strip_prefix("option ") {
            let rest = rest.trim_end_matches(';').trim();
            let Some((name, value)) = rest.split_once(char::is_whitespace) else {
                continue;
            };
            let value = value.trim();
            match name {
                "wpad" | "unknown-252" | "wpad-url" | "proxy-auto-config" => {
                    current.wpad_url = unquote(value)
                        .or_else(|| decode_hex(&value.replace(':', "")))
                        .and_then(clean_url);
                }
                "domain-name" => {
                    current.domain = unquote(value)
                        .and_then(|v| clean_domain(v.split_whitespace().next().unwrap_or("")));
                }
                _ => {}
            }
        }
    }
    last
}

fn unquote(v: &str) -> Option<String> {
    let inner = v.strip_prefix('"')?.strip_suffix('"')?;
    Some(inner.replace("\\\"", "\"").replace("\\\\", "\\"))
}

/// Hex digits (networkd's `OPTION_252=`, dhclient's colon-separated bytes with the colons
/// removed) as UTF-8 text; `None` for anything else.
fn decode_hex(v: &str) -> Option<String> {
    String::from_utf8(hex::decode(v.trim()).ok()?).ok()
}

/// Servers often send the URL NUL-terminated or with spaces; only http(s) URLs are accepted.
fn clean_url(s: String) -> Option<String> {
    let s = s
        .trim_matches(|c: char| c == '\0' || c.is_whitespace())
        .to_string();
    let lower = s.to_ascii_lowercase();
    (lower.starts_with("http://") || lower.starts_with("https://")).then_some(s)
}

fn clean_domain(s: &str) -> Option<String> {
    let d = s
        .trim()
        .trim_matches('"')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let ok = !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    ok.then_some(d)
}

/// The WPAD URLs to try for the given search domains, in order: for each domain, itself and each
/// parent, stopping before a public suffix (`corp.example.co.uk` yields `wpad.corp.example.co.uk`
/// and `wpad.example.co.uk`, never `wpad.co.uk`). Duplicates and invalid domains are dropped.
pub fn dns_candidates<S: AsRef<str>>(search_domains: &[S]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for domain in search_domains {
        let Some(mut d) = clean_domain(domain.as_ref()) else {
            continue;
        };
        loop {
            if is_public_suffix(&d) {
                break;
            }
            let url = format!("http://wpad.{d}/wpad.dat");
            if !out.contains(&url) {
                out.push(url);
            }
            match d.split_once('.') {
                Some((_, parent)) => d = parent.to_string(),
                None => break,
            }
        }
    }
    out
}

/// `true` if `domain` is a public suffix (`com`, `co.uk`, or any single label: the list's
/// implicit `*` rule makes unknown top-level names like `corp` suffixes too).
pub fn is_public_suffix(domain: &str) -> bool {
    !domain.contains('.') || psl::suffix_str(domain).is_some_and(|s| s.eq_ignore_ascii_case(domain))
}

/// The search domains of a resolv.conf (`search` and `domain` lines; the last such line wins, as
/// in glibc).
pub fn parse_resolv_conf(text: &str) -> Vec<String> {
    let mut domains = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("search") | Some("domain") => {
                domains = words
                    .filter(|w| !w.starts_with('#') && *w != ".")
                    .map(str::to_string)
                    .collect();
            }
            _ => {}
        }
    }
    domains
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_stop_before_public_suffixes() {
        let cases: &[(&[&str], &[&str])] = &[
            (
                &["a.b.corp.example.com"],
                &[
                    "a.b.corp.example.com",
                    "b.corp.example.com",
                    "corp.example.com",
                    "example.com",
                ],
            ),
            (
                &["corp.example.co.uk"],
                &["corp.example.co.uk", "example.co.uk"],
            ),
            (&["co.uk", "com", "corp"], &[]),
            (&["lab.corp"], &["lab.corp"]),
            (
                &["x.example.com", "example.com."],
                &["x.example.com", "example.com"],
            ),
            (&["bad domain", "", "a..b"], &[]),
            (&["Sub.Example.ORG"], &["sub.example.org", "example.org"]),
        ];
        for (input, want) in cases {
            let want: Vec<String> = want
                .iter()
                .map(|d| format!("http://wpad.{d}/wpad.dat"))
                .collect();
            assert_eq!(dns_candidates(input), want, "{input:?}");
        }
    }

    #[test]
    fn networkd_lease() {
        // "http://wpad.corp.example/proxy.pac" hex-encoded, NUL-terminated, as networkd stores it.
        let hex = hex::encode_upper(b"http://wpad.corp.example/proxy.pac\0");
        let text = format!("# This is private data.\nADDRESS=10.0.0.5\nDOMAINNAME=corp.example\nOPTION_252={hex}\n");
        assert_eq!(
            parse_networkd_lease(&text),
            LeaseInfo {
                wpad_url: Some("http://wpad.corp.example/proxy.pac".into()),
                domain: Some("corp.example".into())
            }
        );
        assert_eq!(
            parse_networkd_lease("OPTION_252=zz\nDOMAINNAME=bad domain"),
            LeaseInfo::default()
        );
        assert_eq!(
            parse_networkd_lease("OPTION_252=66696c653a2f2f78").wpad_url,
            None,
            "file:// is refused"
        );
    }

    #[test]
    fn dhclient_leases_last_wins() {
        let text = r#"
lease {
  interface "eth0";
  option domain-name "old.example";
  option unknown-252 "http://old.example/wpad.dat";
}
lease {
  interface "eth0";
  fixed-address 10.0.0.5;
  option domain-name "corp.example lab.example";
  option wpad "http://wpad.corp.example/wpad.dat";
  renew 2 2024/01/02 00:00:00;
}
"#;
        assert_eq!(
            parse_dhclient_leases(text),
            LeaseInfo {
                wpad_url: Some("http://wpad.corp.example/wpad.dat".into()),
                domain: Some("corp.example".into())
            }
        );
        let hex = "lease {\n  option unknown-252 68:74:74:70:3a:2f:2f:78:2f:70:2e:70:61:63;\n}\n";
        assert_eq!(
            parse_dhclient_leases(hex).wpad_url.as_deref(),
            Some("http://x/p.pac")
        );
        assert_eq!(
            parse_dhclient_leases("garbage {\n}\n}"),
            LeaseInfo::default()
        );
    }

    /// Leases as dhclient 4.4.3 wrote them after a real exchange with dnsmasq (crates/uplink/tests/it/wpad_dhcp.rs):
    /// with `option wpad code 252 = text;` in dhclient.conf, and without (a NUL-terminated URL,
    /// which dhclient records without its NUL).
    #[test]
    fn dhclient_leases_as_dhclient_writes_them() {
        let named = r#"lease {
  interface "upl-dhcpc";
  fixed-address 10.79.200.14;
  option wpad "http://127.0.0.1:8/wpad.dat";
  option subnet-mask 255.255.255.0;
  option routers 10.79.200.1;
  option dhcp-lease-time 3600;
  option dhcp-message-type 5;
  option dhcp-server-identifier 10.79.200.1;
  option dhcp-renewal-time 1800;
  option broadcast-address 10.79.200.255;
  option dhcp-rebinding-time 3150;
  option domain-name "corp.uplink.test";
  renew 0 2026/11/22 06:28:55;
  rebind 0 2026/11/22 06:53:56;
  expire 0 2026/11/22 07:01:26;
}
"#;
        assert_eq!(
            parse_dhclient_leases(named),
            LeaseInfo {
                wpad_url: Some("http://127.0.0.1:8/wpad.dat".into()),
                domain: Some("corp.uplink.test".into())
            }
        );
        let unnamed = "lease {\n  interface \"upl-dhcpc\";\n  fixed-address 10.79.200.14;\n  option subnet-mask 255.255.255.0;\n  option unknown-252 \"http://127.0.0.1:8/wpad.dat\";\n}\n";
        assert_eq!(
            parse_dhclient_leases(unnamed).wpad_url.as_deref(),
            Some("http://127.0.0.1:8/wpad.dat")
        );
    }

    #[test]
    fn resolv_conf() {
        let text = "nameserver 10.0.0.1\ndomain old.example\nsearch corp.example lab.example\n";
        assert_eq!(parse_resolv_conf(text), vec!["corp.example", "lab.example"]);
        assert!(parse_resolv_conf("nameserver 1.1.1.1\n").is_empty());
    }
}
