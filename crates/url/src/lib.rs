//! URLs and addresses as uplink accepts them, parsed once, here: proxy URLs
//! ([`ProxyUrl`]: `http`, `https`, `socks5`, `socks5h`, with credentials split out), the
//! service's and `uplink check`'s target URLs ([`HttpUrl`]), and `host:port` text
//! ([`host_port`], [`split_host_port`]). Syntax comes from [`http::Uri`]; on top of it the
//! project's strict checks: a scheme that uplink speaks, a host, a port where one is required,
//! no user info where a secret must not go, IPv6 literals that are addresses.
//!
//! Hosts are kept lower-cased and *without* the brackets of an IPv6 literal (`::1`, as a socket
//! address wants it); [`host_port`] and the `authority` methods add the brackets back
//! (`[::1]:8443`). Pure: no I/O, no DNS.

#![forbid(unsafe_code)]

mod http_url;
mod proxy;

pub use http_url::{HttpUrl, HttpUrlError};
pub use proxy::{ProxyKind, ProxyUrl, UrlError};

use secrecy::SecretString;

/// A proxy user and password. The password is zeroed on drop and never printed.
#[derive(Clone)]
pub struct Credentials {
    /// As given: `DOMAIN\user`, `user@domain` or `user`.
    pub user: String,
    pub password: SecretString,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials {
            user: user.into(),
            password: SecretString::from(password.into()),
        }
    }
}

/// The parts of a URL of any scheme (`ftp://`, `wss://`: what a PAC script may be asked about),
/// read leniently as browsers hand them to PAC scripts: the scheme as written, the host
/// (lower-cased, unbracketed, user info dropped) and the port text if any (not checked: callers
/// decide what an invalid port means).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlParts<'a> {
    pub scheme: &'a str,
    pub host: String,
    pub port: Option<&'a str>,
}

/// Splits `scheme://[userinfo@]host[:port][/…]`. `None` without a valid scheme, or with an empty
/// host or an unclosed IPv6 bracket.
pub fn url_parts(url: &str) -> Option<UrlParts<'_>> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
    {
        return None;
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        (h, after.strip_prefix(':'))
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    Some(UrlParts {
        scheme,
        host: host.to_ascii_lowercase(),
        port: port.filter(|p| !p.is_empty()),
    })
}

/// The first field of a curl-style colon-separated spec (`--resolve HOST:PORT:ADDR`,
/// `--connect-to HOST:PORT:HOST2:PORT2`) and the rest after its colon: a bracketed IPv6 literal
/// is one field, returned without its brackets. `None` when a bracket is unclosed or is not
/// followed by a colon.
pub fn first_field(spec: &str) -> Option<(&str, &str)> {
    if let Some(v6) = spec.strip_prefix('[') {
        let (field, after) = v6.split_once(']')?;
        return Some((field, after.strip_prefix(':')?));
    }
    spec.split_once(':')
}

/// `host:port`, with the brackets an IPv6 literal needs (`[::1]:3128`).
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Splits `host[:port]` (`h`, `h:80`, `[::1]`, `[::1]:80`, and a bare IPv6 literal `::1`, which
/// has no port) into the host (lower-cased, unbracketed) and the port if one is given. `None`
/// when the host is empty, a bracket is unclosed, a bracketed host is not an IPv6 address, or
/// the port is not a number from 0 to 65535.
pub fn split_host_port(text: &str) -> Option<(String, Option<u16>)> {
    let text = text.trim();
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        h.parse::<std::net::Ipv6Addr>().ok()?;
        match after {
            "" => (h, None),
            p => (h, Some(p.strip_prefix(':')?)),
        }
    } else if text.matches(':').count() > 1 {
        // A bare IPv6 literal: every colon is the address's.
        text.parse::<std::net::Ipv6Addr>().ok()?;
        (text, None)
    } else {
        match text.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    let port = match port {
        None => None,
        Some(p) => Some(p.parse::<u16>().ok()?),
    };
    Some((host.to_ascii_lowercase(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The host and port `split_host_port` should give, or None for an error.
    type Split<'a> = Option<(&'a str, Option<u16>)>;

    #[test]
    fn host_ports() {
        let cases: &[(&str, Split)] = &[
            ("h", Some(("h", None))),
            ("H.Example:80", Some(("h.example", Some(80)))),
            ("10.0.0.1:3128", Some(("10.0.0.1", Some(3128)))),
            ("[::1]", Some(("::1", None))),
            ("[::1]:8443", Some(("::1", Some(8443)))),
            ("[2001:DB8::1]:1", Some(("2001:db8::1", Some(1)))),
            ("::1", Some(("::1", None))),
            ("::ffff:10.0.0.1", Some(("::ffff:10.0.0.1", None))),
            ("", None),
            (":80", None),
            ("[::1", None),
            ("[::1]x", None),
            ("[not-v6]:80", None),
            ("h:99999", None),
            ("h:x", None),
            ("a:b:c", None),
        ];
        for (text, want) in cases {
            let got = split_host_port(text);
            let got = got.as_ref().map(|(h, p)| (h.as_str(), *p));
            assert_eq!(got, *want, "{text}");
        }
        assert_eq!(host_port("::1", 3128), "[::1]:3128");
        assert_eq!(host_port("[::1]", 3128), "[::1]:3128");
        assert_eq!(host_port("h", 1), "h:1");
    }

    #[test]
    fn first_fields() {
        let cases = [
            (
                "a.example:443:127.0.0.1",
                Some(("a.example", "443:127.0.0.1")),
            ),
            ("[::1]:443:[::1]:8443", Some(("::1", "443:[::1]:8443"))),
            ("::127.0.0.1:8443", Some(("", ":127.0.0.1:8443"))),
            ("[::1]443", None),
            ("[::1", None),
            ("nocolon", None),
        ];
        for (spec, want) in cases {
            assert_eq!(first_field(spec), want, "{spec}");
        }
    }

    #[test]
    fn url_parts_of_any_scheme() {
        let parts = |u| url_parts(u).map(|p| (p.scheme, p.host, p.port));
        type Parts<'a> = Option<(&'a str, &'a str, Option<&'a str>)>;
        let cases: &[(&str, Parts)] = &[
            (
                "wss://U:p@H.example:8443/x",
                Some(("wss", "h.example", Some("8443"))),
            ),
            ("ftp://[2001:DB8::1]/f", Some(("ftp", "2001:db8::1", None))),
            ("https://[::1]:/", Some(("https", "::1", None))),
            ("http://h:99999/", Some(("http", "h", Some("99999")))),
            ("http:///p", None),
            ("http://[::1/", None),
            ("nonsense", None),
            ("h t://x/", None),
        ];
        for (url, want) in cases {
            let want = want.map(|(s, h, p)| (s, h.to_owned(), p));
            assert_eq!(parts(url), want, "{url}");
        }
    }

    #[test]
    fn credentials_never_print_the_password() {
        let c = Credentials::new("CONTOSO\\u", "s3cret");
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
