//! The two strings inside every proxy value: the proxy server list and the bypass list.
//!
//! The proxy server string is either one proxy for every protocol (`proxy:8080`, sometimes with a
//! scheme, `http://127.20.20.20:3128`) or one per protocol, as the Internet Options dialog writes
//! when "Use the same proxy server for all protocols" is off: `http=a:80;https=b:443;socks=c:1080`.
//! Entries are separated by `;` (WinINet also accepts white space).
//!
//! The bypass list names hosts that go direct: `;`-separated (the Internet Settings string form
//! is also seen with `, `), with `<local>` meaning every host name without a dot.
//!
//! This module parses and checks them; it does not match host names against a bypass list (that
//! is the proxy engine's job) and does not resolve anything.

use std::fmt;

use uplink_diag::{Code, Diagnose};

/// One proxy in a proxy server string.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct ProxyEntry {
    /// The protocol this proxy is for (`http`, `https`, `ftp`, `socks`), lower-case; `None` when
    /// the entry applies to every protocol.
    pub protocol: Option<String>,
    /// A scheme written in front of the address (`http://`), lower-case; rarely present.
    pub scheme: Option<String>,
    /// Host name or IP address; IPv6 without brackets.
    pub host: String,
    /// `None` when the entry has no port (WinINet then uses the protocol's default).
    pub port: Option<u16>,
}

impl fmt::Display for ProxyEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(p) = &self.protocol {
            write!(f, "{p}=")?;
        }
        if let Some(s) = &self.scheme {
            write!(f, "{s}://")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

/// Why a proxy server string is not usable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProxyListError {
    #[error(
        "the proxy server string is empty: give a proxy as HOST:PORT (e.g. proxy.contoso.com:8080)"
    )]
    Empty,
    #[error(
        "the proxy entry {entry:?} has no host: give it as HOST:PORT (e.g. proxy.contoso.com:8080) \
         or per protocol as http=HOST:PORT;https=HOST:PORT"
    )]
    NoHost { entry: String },
    #[error(
        "the proxy entry {entry:?} has an invalid host {host:?}: use a host name (letters, digits, \
         '-', '.') or an IP address, IPv6 in brackets ([2001:db8::1]:8080)"
    )]
    BadHost { entry: String, host: String },
    #[error(
        "the proxy entry {entry:?} has an invalid port {port:?}: use a number from 1 to 65535"
    )]
    BadPort { entry: String, port: String },
    #[error(
        "the proxy entry {entry:?} names the protocol {protocol:?}: use http, https, ftp or socks"
    )]
    BadProtocol { entry: String, protocol: String },
    #[error(
        "the proxy entry {entry:?} has no port: give it as HOST:PORT (e.g. proxy.contoso.com:8080)"
    )]
    NoPort { entry: String },
}

impl Diagnose for ProxyListError {
    fn code(&self) -> Code {
        Code::CONFIG_INVALID
    }
}

/// Parses a proxy server string into its entries. Empty entries (`a:80;;`) are skipped.
pub fn parse_proxy_server(s: &str) -> Result<Vec<ProxyEntry>, ProxyListError> {
    let entries = s
        .split(|c: char| c == ';' || c.is_ascii_whitespace())
        .filter(|e| !e.is_empty())
        .map(parse_entry)
        .collect::<Result<Vec<_>, _>>()?;
    if entries.is_empty() {
        return Err(ProxyListError::Empty);
    }
    Ok(entries)
}

/// Parses a proxy given on the command line: the WinINet syntax, with a port on every entry
/// (Windows would silently pick a default; an administrator writing a setting means one).
pub fn parse_proxy_arg(s: &str) -> Result<Vec<ProxyEntry>, ProxyListError> {
    let entries = parse_proxy_server(s)?;
    if let Some(e) = entries.iter().find(|e| e.port.is_none()) {
        return Err(ProxyListError::NoPort {
            entry: e.to_string(),
        });
    }
    Ok(entries)
}

fn parse_entry(entry: &str) -> Result<ProxyEntry, ProxyListError> {
    let mut rest = entry;
    let mut protocol = None;
    // `http=host:port`; an `=` after `://` would belong to a URL, which a proxy never has.
    if let Some(eq) = rest.find('=') {
        if rest.find("://").is_none_or(|s| eq < s) {
            let p = rest[..eq].to_ascii_lowercase();
            if p.is_empty() || !p.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(ProxyListError::BadProtocol {
                    entry: entry.to_owned(),
                    protocol: p,
                });
            }
            protocol = Some(p);
            rest = &rest[eq + 1..];
        }
    }
    let mut scheme = None;
    if let Some(i) = rest.find("://") {
        let s = rest[..i].to_ascii_lowercase();
        if s.is_empty() || !s.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(ProxyListError::BadHost {
                entry: entry.to_owned(),
                host: rest.to_owned(),
            });
        }
        scheme = Some(s);
        rest = &rest[i + 3..];
    }
    // A trailing slash is sometimes typed after the port (`http://proxy:8080/`).
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() {
        return Err(ProxyListError::NoHost {
            entry: entry.to_owned(),
        });
    }
    let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
        let Some(close) = inner.find(']') else {
            return Err(ProxyListError::BadHost {
                entry: entry.to_owned(),
                host: rest.to_owned(),
            });
        };
        let host = &inner[..close];
        let after = &inner[close + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => {
                return Err(ProxyListError::BadHost {
                    entry: entry.to_owned(),
                    host: rest.to_owned(),
                })
            }
        };
        if host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_hexdigit() || matches!(c, ':' | '.'))
        {
            return Err(ProxyListError::BadHost {
                entry: entry.to_owned(),
                host: host.to_owned(),
            });
        }
        (host, port)
    } else {
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        };
        if host.is_empty() {
            return Err(ProxyListError::NoHost {
                entry: entry.to_owned(),
            });
        }
        if !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        {
            return Err(ProxyListError::BadHost {
                entry: entry.to_owned(),
                host: host.to_owned(),
            });
        }
        (host, port)
    };
    let port = match port {
        None => None,
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|n| *n != 0 && p.chars().all(|c| c.is_ascii_digit()))
                .ok_or_else(|| ProxyListError::BadPort {
                    entry: entry.to_owned(),
                    port: p.to_owned(),
                })?,
        ),
    };
    Ok(ProxyEntry {
        protocol,
        scheme,
        host: host.to_owned(),
        port,
    })
}

/// The proxy WinINet uses for a URL scheme (`"https"` for uplink's traffic): the entry for that
/// protocol, else an entry for every protocol, else a `socks=` entry (WinINet sends protocols
/// without their own proxy through SOCKS), else none: direct.
pub fn proxy_for<'a>(entries: &'a [ProxyEntry], scheme: &str) -> Option<&'a ProxyEntry> {
    let scheme = scheme.to_ascii_lowercase();
    entries
        .iter()
        .find(|e| e.protocol.as_deref() == Some(scheme.as_str()))
        .or_else(|| entries.iter().find(|e| e.protocol.is_none()))
        .or_else(|| {
            entries
                .iter()
                .find(|e| e.protocol.as_deref() == Some("socks"))
        })
}

/// Splits a bypass list on `;`, `,` and white space, dropping empty entries. Entries are kept as
/// written (`<local>`, `*.contoso.com`, `10.*`).
pub fn parse_bypass(s: &str) -> Vec<String> {
    s.split(|c: char| c == ';' || c == ',' || c.is_ascii_whitespace())
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Why a bypass list given on the command line is not usable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the bypass entry {entry:?} is not a host pattern: use host names, IP addresses, '*' \
     wildcards and <local>, separated by ';' (e.g. \"*.contoso.com;10.*;<local>\")"
)]
pub struct BypassError {
    pub entry: String,
}

impl Diagnose for BypassError {
    fn code(&self) -> Code {
        Code::CONFIG_INVALID
    }
}

/// Parses a bypass list given on the command line, refusing characters no host pattern has.
pub fn parse_bypass_arg(s: &str) -> Result<Vec<String>, BypassError> {
    let entries = parse_bypass(s);
    for e in &entries {
        let ok = e.eq_ignore_ascii_case("<local>")
            || e.chars().all(|c| {
                c.is_ascii_alphanumeric()
                    || matches!(c, '-' | '.' | '_' | '*' | ':' | '[' | ']' | '/')
            });
        if !ok {
            return Err(BypassError { entry: e.clone() });
        }
    }
    Ok(entries)
}

/// A setup-script URL that cannot be one: it has no scheme, is not ASCII, or holds whitespace.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{url:?} is not a URL: give it as http://HOST/PATH (ASCII, no spaces)")]
pub struct PacUrlError {
    pub url: String,
}

impl Diagnose for PacUrlError {
    fn code(&self) -> Code {
        Code::CONFIG_INVALID
    }
}

/// Checks a PAC (setup script) URL given on the command line before it is stored in a value
/// Windows reads as is: a scheme, ASCII, no whitespace.
pub fn check_pac_url_arg(url: &str) -> Result<(), PacUrlError> {
    if url.contains("://") && url.is_ascii() && !url.chars().any(char::is_whitespace) {
        Ok(())
    } else {
        Err(PacUrlError {
            url: url.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pac_url_args() {
        for ok in [
            "http://wpad.contoso.com/wpad.dat",
            "https://p/x.pac",
            "file://c:/proxy.pac",
        ] {
            assert_eq!(check_pac_url_arg(ok), Ok(()), "{ok}");
        }
        for bad in [
            "wpad.contoso.com/wpad.dat",
            "http://a b/p",
            "http://ü.example/p",
            "",
            "http://p/\t",
        ] {
            let e = check_pac_url_arg(bad).unwrap_err();
            assert!(
                e.to_string()
                    .contains("is not a URL: give it as http://HOST/PATH"),
                "{e}"
            );
        }
    }

    fn e(
        protocol: Option<&str>,
        scheme: Option<&str>,
        host: &str,
        port: Option<u16>,
    ) -> ProxyEntry {
        ProxyEntry {
            protocol: protocol.map(str::to_owned),
            scheme: scheme.map(str::to_owned),
            host: host.to_owned(),
            port,
        }
    }

    #[test]
    fn proxy_server_strings() {
        let cases: Vec<(&str, Vec<ProxyEntry>)> = vec![
            ("proxy:8080", vec![e(None, None, "proxy", Some(8080))]),
            ("127.0.0.1:80", vec![e(None, None, "127.0.0.1", Some(80))]),
            (
                "http://127.20.20.20:3128",
                vec![e(None, Some("http"), "127.20.20.20", Some(3128))],
            ),
            (
                "HTTP://Proxy:3128/",
                vec![e(None, Some("http"), "Proxy", Some(3128))],
            ),
            ("proxy", vec![e(None, None, "proxy", None)]),
            (
                "[2001:db8::1]:8080",
                vec![e(None, None, "2001:db8::1", Some(8080))],
            ),
            ("[::1]", vec![e(None, None, "::1", None)]),
            (
                "http=a:80;https=b:443;socks=c:1080",
                vec![
                    e(Some("http"), None, "a", Some(80)),
                    e(Some("https"), None, "b", Some(443)),
                    e(Some("socks"), None, "c", Some(1080)),
                ],
            ),
            (
                "HTTP=http://a:80 ftp=b:21;;",
                vec![
                    e(Some("http"), Some("http"), "a", Some(80)),
                    e(Some("ftp"), None, "b", Some(21)),
                ],
            ),
        ];
        for (input, want) in cases {
            assert_eq!(parse_proxy_server(input).unwrap(), want, "{input}");
        }
    }

    #[test]
    fn proxy_server_errors() {
        let cases = [
            ("", "empty"),
            (" ; ", "empty"),
            (":8080", "has no host"),
            ("http=", "has no host"),
            ("proxy:0", "invalid port \"0\""),
            ("proxy:65536", "invalid port \"65536\""),
            ("proxy:+80", "invalid port \"+80\""),
            ("proxy:", "invalid port \"\""),
            ("pr@xy:80", "invalid host \"pr@xy\""),
            ("[::1:80", "invalid host"),
            ("[zz]:80", "invalid host \"zz\""),
            ("h-t=a:80", "names the protocol \"h-t\""),
            ("=a:80", "names the protocol \"\""),
        ];
        for (input, text) in cases {
            let err = parse_proxy_server(input).unwrap_err().to_string();
            assert!(err.contains(text), "{input:?}: {err}");
        }
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "proxy:8080",
            "http=a:80",
            "https=http://b:443",
            "[2001:db8::1]:3128",
            "socks=c",
        ] {
            let entries = parse_proxy_server(s).unwrap();
            assert_eq!(entries[0].to_string(), s);
        }
    }

    #[test]
    fn arg_needs_ports() {
        assert!(parse_proxy_arg("proxy:8080").is_ok());
        let err = parse_proxy_arg("http=a:80;https=b")
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"https=b\" has no port"), "{err}");
    }

    #[test]
    fn proxy_for_schemes() {
        let per = parse_proxy_server("http=a:80;https=b:443;socks=c:1080").unwrap();
        let all = parse_proxy_server("p:3128").unwrap();
        let http_only = parse_proxy_server("http=a:80").unwrap();
        let socks = parse_proxy_server("http=a:80;socks=c:1080").unwrap();
        let cases = [
            (&per, "https", Some("b")),
            (&per, "HTTP", Some("a")),
            (&per, "ftp", Some("c")),
            (&all, "https", Some("p")),
            (&http_only, "https", None),
            (&socks, "https", Some("c")),
        ];
        for (entries, scheme, want) in cases {
            assert_eq!(
                proxy_for(entries, scheme).map(|e| e.host.as_str()),
                want,
                "{entries:?} {scheme}"
            );
        }
    }

    #[test]
    fn bypass_lists() {
        let cases: &[(&str, &[&str])] = &[
            (
                "home.crash.co.nz;fh.local;<local>",
                &["home.crash.co.nz", "fh.local", "<local>"],
            ),
            (
                "*.cs.kadaster.nl, *.so.kadaster.nl, kadaster.local, localhost, <local>",
                &[
                    "*.cs.kadaster.nl",
                    "*.so.kadaster.nl",
                    "kadaster.local",
                    "localhost",
                    "<local>",
                ],
            ),
            ("", &[]),
            (" ; ;", &[]),
            ("a b\tc", &["a", "b", "c"]),
        ];
        for (input, want) in cases {
            assert_eq!(parse_bypass(input), *want, "{input}");
        }
        assert!(parse_bypass_arg("*.contoso.com;10.*;<LOCAL>;[::1]").is_ok());
        let err = parse_bypass_arg("a;b\"c").unwrap_err().to_string();
        assert!(err.contains("\"b\\\"c\""), "{err}");
    }
}
