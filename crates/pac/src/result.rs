//! The PAC result string: what `FindProxyForURL` returns, e.g.
//! `"PROXY a:8080; HTTPS b:443; SOCKS5 c:1080; DIRECT"`.
//!
//! Parsed with Chromium's rules (`ProxyList::SetFromPacString`), because PAC files are written and
//! tested against browsers: entries are separated by `;`, the scheme word is case-insensitive,
//! missing ports take the scheme's default (PROXY 80, HTTPS 443, SOCKS/SOCKS4/SOCKS5 1080), entries
//! that do not parse are skipped silently, and a string with no usable entry at all means DIRECT.
//! This module is pure: it never resolves names or touches sockets; choosing among the entries and
//! retrying bad proxies belongs to the proxy engine.

use std::fmt;
use std::net::Ipv6Addr;

/// A proxy server's host and port, as named by a PAC result entry.
///
/// `host` is lower-cased (host names are case-insensitive, as Chromium canonicalizes them); an
/// IPv6 literal is stored without its brackets.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// One entry of a PAC result, in the order the PAC listed it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PacProxy {
    /// Connect without a proxy.
    Direct,
    /// An HTTP proxy (`PROXY host:port`), reached over plain TCP; default port 80.
    Proxy(HostPort),
    /// An HTTP proxy reached over TLS (`HTTPS host:port`); default port 443.
    Https(HostPort),
    /// A SOCKS v4 proxy (`SOCKS host:port` or `SOCKS4 host:port`); default port 1080.
    Socks4(HostPort),
    /// A SOCKS v5 proxy (`SOCKS5 host:port`); default port 1080.
    Socks5(HostPort),
}

impl PacProxy {
    /// The proxy server, or `None` for DIRECT.
    pub fn server(&self) -> Option<&HostPort> {
        match self {
            PacProxy::Direct => None,
            PacProxy::Proxy(hp)
            | PacProxy::Https(hp)
            | PacProxy::Socks4(hp)
            | PacProxy::Socks5(hp) => Some(hp),
        }
    }
}

/// Formats as a PAC result entry, the way Chromium's `ToPacString` does (`SOCKS` for SOCKS v4).
impl fmt::Display for PacProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PacProxy::Direct => f.write_str("DIRECT"),
            PacProxy::Proxy(hp) => write!(f, "PROXY {hp}"),
            PacProxy::Https(hp) => write!(f, "HTTPS {hp}"),
            PacProxy::Socks4(hp) => write!(f, "SOCKS {hp}"),
            PacProxy::Socks5(hp) => write!(f, "SOCKS5 {hp}"),
        }
    }
}

/// Parses a PAC result string into its entries, in order.
///
/// Never fails: junk entries are skipped and a result with no valid entry (including an empty
/// string) yields `[Direct]`, as in Chromium. Use [`parse_pac_result_strict`] to learn what was
/// skipped.
pub fn parse_pac_result(result: &str) -> Vec<PacProxy> {
    parse_pac_result_strict(result).proxies
}

/// What [`parse_pac_result_strict`] found: the usable entries and the ones it skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedPacResult {
    /// The usable entries; `[Direct]` if none parsed.
    pub proxies: Vec<PacProxy>,
    /// Non-empty entries that did not parse, trimmed, in order (for warnings and `--json`).
    pub skipped: Vec<String>,
}

/// Like [`parse_pac_result`], but also returns the entries that were skipped, so callers can warn
/// that the PAC returned something a browser would ignore.
pub fn parse_pac_result_strict(result: &str) -> ParsedPacResult {
    let mut proxies = Vec::new();
    let mut skipped = Vec::new();
    for element in result.split(';') {
        let element = element.trim_matches(is_pac_space);
        if element.is_empty() {
            continue;
        }
        match parse_element(element) {
            Some(p) => proxies.push(p),
            None => skipped.push(element.to_string()),
        }
    }
    if proxies.is_empty() {
        proxies.push(PacProxy::Direct);
    }
    ParsedPacResult { proxies, skipped }
}

/// Formats entries back into a canonical PAC string (`"PROXY a:80;DIRECT"`), as Chromium's
/// `ProxyList::ToPacString` does.
pub fn to_pac_string(proxies: &[PacProxy]) -> String {
    let parts: Vec<String> = proxies.iter().map(ToString::to_string).collect();
    parts.join(";")
}

fn is_pac_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n' | '\x0b' | '\x0c')
}

fn parse_element(element: &str) -> Option<PacProxy> {
    let mut words = element.split(is_pac_space).filter(|w| !w.is_empty());
    let scheme = words.next()?;
    let rest = words.next();
    if words.next().is_some() {
        return None;
    }
    let scheme = scheme.to_ascii_uppercase();
    if scheme == "DIRECT" {
        // Chromium accepts "DIRECT" only on its own.
        return rest.is_none().then_some(PacProxy::Direct);
    }
    let (make, default_port): (fn(HostPort) -> PacProxy, u16) = match scheme.as_str() {
        "PROXY" => (PacProxy::Proxy, 80),
        "HTTPS" => (PacProxy::Https, 443),
        "SOCKS" | "SOCKS4" => (PacProxy::Socks4, 1080),
        "SOCKS5" => (PacProxy::Socks5, 1080),
        _ => return None,
    };
    parse_host_port(rest?, default_port).map(make)
}

/// Parses `host`, `host:port`, `[v6]` or `[v6]:port`.
fn parse_host_port(s: &str, default_port: u16) -> Option<HostPort> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        inside.parse::<Ipv6Addr>().ok()?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (inside.to_ascii_lowercase(), port)
    } else {
        let (host, port) = match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        };
        if !valid_host_name(host) {
            return None;
        }
        (host.to_ascii_lowercase(), port)
    };
    let port = match port {
        None => default_port,
        Some(p) => parse_port(p)?,
    };
    Some(HostPort { host, port })
}

fn parse_port(p: &str) -> Option<u16> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    p.parse::<u16>().ok().filter(|&n| n != 0)
}

/// Host names as URL parsers accept them in an authority: letters, digits, `-`, `_`, `.`, with no
/// empty label in the middle. Anything else (spaces, `/`, `@`, …) makes the entry junk.
fn valid_host_name(h: &str) -> bool {
    if h.is_empty() || h.len() > 253 || h.starts_with('.') || h.contains("..") {
        return false;
    }
    h.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hp(host: &str, port: u16) -> HostPort {
        HostPort {
            host: host.into(),
            port,
        }
    }

    /// Chromium's `ProxyListTest.SetFromPacString` table, read from the shared fixture: parse,
    /// re-serialize, compare. Every row applies and none differs.
    #[test]
    fn chromium_set_from_pac_string_table() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/fixtures/pac/chromium/proxy_list_pac_string_cases.json"
        );
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).expect("read fixture"))
                .expect("json");
        let cases = json["set_from_pac_string"].as_array().expect("cases");
        assert!(cases.len() >= 9);
        for case in cases {
            let input = case["pac_input"].as_str().expect("input");
            let want = case["pac_output"].as_str().expect("output");
            assert_eq!(
                to_pac_string(&parse_pac_result(input)),
                want,
                "input {input:?}"
            );
        }
        // Not applied: `remove_proxies_without_scheme` and `deprioritize_bad_proxies` test
        // Chromium's retry bookkeeping (which proxies failed recently), not the string syntax;
        // that policy lives in the proxy engine, which consumes `Vec<PacProxy>`.
    }

    #[test]
    fn table() {
        let cases: &[(&str, Vec<PacProxy>, usize)] = &[
            ("", vec![PacProxy::Direct], 0),
            ("DIRECT", vec![PacProxy::Direct], 0),
            ("direct", vec![PacProxy::Direct], 0),
            ("DIRECT foo", vec![PacProxy::Direct], 1),
            (
                "PROXY a:8080; HTTPS b:443; SOCKS5 c:1080; DIRECT",
                vec![
                    PacProxy::Proxy(hp("a", 8080)),
                    PacProxy::Https(hp("b", 443)),
                    PacProxy::Socks5(hp("c", 1080)),
                    PacProxy::Direct,
                ],
                0,
            ),
            (
                "https B.Example",
                vec![PacProxy::Https(hp("b.example", 443))],
                0,
            ),
            (
                "SOCKS4 s; socks s2:99",
                vec![
                    PacProxy::Socks4(hp("s", 1080)),
                    PacProxy::Socks4(hp("s2", 99)),
                ],
                0,
            ),
            (
                "PROXY [::1]:3128",
                vec![PacProxy::Proxy(hp("::1", 3128))],
                0,
            ),
            ("PROXY [::1]", vec![PacProxy::Proxy(hp("::1", 80))], 0),
            ("PROXY ::1", vec![PacProxy::Direct], 1),
            ("PROXY [zz]:1", vec![PacProxy::Direct], 1),
            ("PROXY a:0", vec![PacProxy::Direct], 1),
            ("PROXY a:65536", vec![PacProxy::Direct], 1),
            ("PROXY a:", vec![PacProxy::Direct], 1),
            ("PROXY a:+80", vec![PacProxy::Direct], 1),
            ("PROXY a b", vec![PacProxy::Direct], 1),
            ("PROXY a/b:1", vec![PacProxy::Direct], 1),
            ("PROXY user@a:1", vec![PacProxy::Direct], 1),
            ("QUIC a:443; PROXY b", vec![PacProxy::Proxy(hp("b", 80))], 1),
            ("\tPROXY\ta:1\t", vec![PacProxy::Proxy(hp("a", 1))], 0),
            ("PROXY a..b", vec![PacProxy::Direct], 1),
        ];
        for (input, want, skipped) in cases {
            let got = parse_pac_result_strict(input);
            assert_eq!(&got.proxies, want, "input {input:?}");
            assert_eq!(
                got.skipped.len(),
                *skipped,
                "skipped for {input:?}: {:?}",
                got.skipped
            );
        }
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "PROXY a:1;HTTPS b:2;SOCKS c:3;SOCKS5 d:4;DIRECT",
            "PROXY [2001:db8::1]:8080",
        ] {
            assert_eq!(to_pac_string(&parse_pac_result(s)), s);
        }
        assert_eq!(parse_pac_result("HTTPS h")[0].server(), Some(&hp("h", 443)));
        assert_eq!(PacProxy::Direct.server(), None);
    }
}
