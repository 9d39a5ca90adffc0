//! Proxy URLs: `SCHEME://[user[:password]@]host:port`, where SCHEME is `http` (CONNECT over
//! TCP), `https` (CONNECT inside TLS to the proxy), `socks5` (SOCKS5; the sensor resolves the
//! service's name, as curl does) or `socks5h` (SOCKS5; the proxy resolves it).
//!
//! The seeds' installer takes `ProxyUrl="http://proxy.contoso.com:8080"`. uplink requires the
//! scheme and the port to be explicit at install time — a proxy URL without them is the most
//! common typo, and guessing a port (80? 8080? 3128?) hides it until the first upload fails.

use percent_encoding::percent_decode_str;

use crate::Credentials;

/// A parsed proxy URL. Credentials found in it are returned separately by [`ProxyUrl::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for ProxyUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}://[{}]:{}", self.scheme, self.host, self.port)
        } else {
            write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("proxy URL {0:?} has no scheme: write it as http://HOST:PORT, e.g. http://proxy.contoso.com:8080")]
    NoScheme(String),
    #[error("proxy URL {url:?} uses the scheme {scheme:?}, which uplink does not speak: use http://, https://, socks5:// or socks5h://HOST:PORT")]
    Scheme { url: String, scheme: String },
    #[error("proxy URL {0:?} has no port: write it as http://HOST:PORT, e.g. http://proxy.contoso.com:8080")]
    NoPort(String),
    #[error("proxy URL {0:?} has an invalid port: use a number from 1 to 65535")]
    BadPort(String),
    #[error("proxy URL {0:?} has no host")]
    NoHost(String),
    #[error("proxy URL {0:?} has a path, query or fragment; a proxy URL is only http://HOST:PORT")]
    HasPath(String),
    #[error("proxy URL {0:?} has a `/`, `?` or `#` in its user name or password: percent-encode them (%2F, %3F, %23; `@` is %40, `:` %3A), or give them with --proxy-user and --proxy-password (or UPLINK_PROXY_PASSWORD)")]
    RawUserinfo(String),
    #[error("proxy URL {url:?} is not a URL ({reason}): write it as http://HOST:PORT, an IPv6 address in brackets (http://[2001:db8::1]:3128)")]
    Invalid { url: String, reason: String },
}

/// Whether `host[:port]` gives a port: after the closing bracket of an IPv6 literal, or after
/// the one colon of a name or IPv4 address.
fn has_port(hostport: &str) -> bool {
    if hostport.starts_with('[') {
        hostport.contains("]:")
    } else {
        hostport.contains(':')
    }
}

/// How the sensor talks to a proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyKind {
    /// CONNECT over TCP.
    Http,
    /// CONNECT inside TLS to the proxy.
    Https,
    /// SOCKS5; `remote_dns`: the proxy resolves the service's name (`socks5h`).
    Socks5 { remote_dns: bool },
}

impl ProxyKind {
    /// PAC notation's keyword for this kind: `PROXY`, `HTTPS`, `SOCKS5`.
    pub fn pac_keyword(self) -> &'static str {
        match self {
            ProxyKind::Http => "PROXY",
            ProxyKind::Https => "HTTPS",
            ProxyKind::Socks5 { .. } => "SOCKS5",
        }
    }
}

impl ProxyUrl {
    /// How to talk to this proxy (the scheme was checked by [`ProxyUrl::parse`]).
    pub fn kind(&self) -> ProxyKind {
        match self.scheme.as_str() {
            "https" => ProxyKind::Https,
            "socks5" => ProxyKind::Socks5 { remote_dns: false },
            "socks5h" => ProxyKind::Socks5 { remote_dns: true },
            _ => ProxyKind::Http,
        }
    }

    /// Parses a proxy URL. Credentials in it (`user:password@`, percent-decoded) are returned too;
    /// they must go to the encrypted store, never back into a configuration file.
    pub fn parse(input: &str) -> Result<(ProxyUrl, Option<Credentials>), UrlError> {
        let url = input.trim();
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(UrlError::NoScheme(redact(input)));
        };
        let scheme = scheme.to_ascii_lowercase();
        if !matches!(scheme.as_str(), "http" | "https" | "socks5" | "socks5h") {
            return Err(UrlError::Scheme {
                url: redact(input),
                scheme,
            });
        }
        let (authority, tail) = match rest.find(['/', '?', '#']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if tail.contains('@') {
            // `http://user:pa/ss@proxy:8080`: the `/` ended the authority early, so the `@`
            // that introduces the host sits in the "path": a raw password, not a path.
            return Err(UrlError::RawUserinfo(redact(input)));
        }
        if !(tail.is_empty() || tail == "/") {
            return Err(UrlError::HasPath(redact(input)));
        }
        // User info is split off here, at the last `@` (a user may be `user@domain`), and never
        // handed to the URI parser: a password may hold any character.
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        if !hostport.starts_with('[') && hostport.matches(':').count() > 1 {
            return Err(UrlError::Invalid {
                url: redact(input),
                reason: "an IPv6 address must be in brackets".into(),
            });
        }
        if hostport.is_empty() || hostport.starts_with(':') {
            return Err(UrlError::NoHost(redact(input)));
        }
        if hostport.starts_with('[') && !hostport.contains(']') {
            return Err(UrlError::Invalid {
                url: redact(input),
                reason: "the IPv6 address's bracket is not closed".into(),
            });
        }
        if hostport.ends_with(':') || !has_port(hostport) {
            return Err(UrlError::NoPort(redact(input)));
        }
        let parsed: http::uri::Authority =
            hostport.parse().map_err(|e: http::uri::InvalidUri| {
                if e.to_string().contains("port") {
                    UrlError::BadPort(redact(input))
                } else {
                    UrlError::Invalid {
                        url: redact(input),
                        reason: e.to_string(),
                    }
                }
            })?;
        let host = parsed.host();
        let host = match host.strip_prefix('[') {
            Some(v6) => {
                let v6 = v6.strip_suffix(']').unwrap_or(v6);
                if v6.parse::<std::net::Ipv6Addr>().is_err() {
                    return Err(UrlError::Invalid {
                        url: redact(input),
                        reason: format!("[{v6}] is not an IPv6 address"),
                    });
                }
                v6
            }
            None => host,
        };
        if host.is_empty() {
            return Err(UrlError::NoHost(redact(input)));
        }
        let port = parsed
            .port_u16()
            .filter(|p| *p != 0)
            .ok_or_else(|| UrlError::BadPort(redact(input)))?;
        let credentials = userinfo.map(|u| {
            let (user, password) = u.split_once(':').unwrap_or((u, ""));
            Credentials::new(
                percent_decode_str(user).decode_utf8_lossy().into_owned(),
                percent_decode_str(password)
                    .decode_utf8_lossy()
                    .into_owned(),
            )
        });
        Ok((
            ProxyUrl {
                scheme,
                host: host.to_ascii_lowercase(),
                port,
            },
            credentials,
        ))
    }

    /// `host:port` as PAC notation writes it after `PROXY`.
    pub fn host_port(&self) -> String {
        crate::host_port(&self.host, self.port)
    }
}

/// A URL with any password replaced, for error messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn valid() {
        let cases = [
            ("http://proxy.contoso.com:8080", "proxy.contoso.com", 8080),
            ("HTTP://Proxy:3128/", "proxy", 3128),
            ("http://10.0.0.6:8080", "10.0.0.6", 8080),
            ("http://[::1]:3128", "::1", 3128),
            ("http://[2001:DB8::1]:8080/", "2001:db8::1", 8080),
            ("socks5h://u:p@[::1]:1080", "::1", 1080),
            ("http://CONTOSO%5Cu@corp.example:p@[::1]:3128", "::1", 3128),
            ("https://proxy.contoso.com:443", "proxy.contoso.com", 443),
            ("socks5://127.0.0.1:1080", "127.0.0.1", 1080),
            ("SOCKS5H://socks:1080", "socks", 1080),
        ];
        for (url, host, port) in cases {
            let (p, c) = ProxyUrl::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!((p.host.as_str(), p.port), (host, port), "{url}");
            assert_eq!(c.is_some(), url.contains('@'), "{url}");
        }
        let kinds = [
            ("http://p:1", ProxyKind::Http),
            ("https://p:1", ProxyKind::Https),
            ("socks5://p:1", ProxyKind::Socks5 { remote_dns: false }),
            ("socks5h://p:1", ProxyKind::Socks5 { remote_dns: true }),
        ];
        for (url, kind) in kinds {
            assert_eq!(ProxyUrl::parse(url).unwrap().0.kind(), kind, "{url}");
        }
        let (p, c) = ProxyUrl::parse("socks5h://alice:pw@socks:1080").unwrap();
        assert_eq!(
            (p.to_string(), c.unwrap().user),
            ("socks5h://socks:1080".into(), "alice".into())
        );
        assert_eq!(
            ProxyUrl::parse("http://[::1]:3128").unwrap().0.host_port(),
            "[::1]:3128"
        );
        assert_eq!(
            ProxyUrl::parse("http://[::1]:3128").unwrap().0.to_string(),
            "http://[::1]:3128"
        );
    }

    #[test]
    fn credentials_in_the_url_are_split_out_and_decoded() {
        let (p, c) =
            ProxyUrl::parse("http://CONTOSO%5Cproxyuser:P%40ss%3Aw0rd@proxy:8080").unwrap();
        let c = c.unwrap();
        assert_eq!(c.user, "CONTOSO\\proxyuser");
        assert_eq!(c.password.expose_secret(), "P@ss:w0rd");
        assert_eq!(p.to_string(), "http://proxy:8080");
        assert!(!format!("{c:?}").contains("P@ss"));
    }

    #[test]
    fn invalid_with_reasons_and_no_password_in_them() {
        let cases = [
            ("proxy.contoso.com:8080", "has no scheme"),
            ("http://u:s3/cret@proxy:8080", "percent-encode"),
            ("http://u:s3#cret@proxy:8080", "percent-encode"),
            ("http://u:s3?cret@proxy:8080", "percent-encode"),
            ("http://proxy.contoso.com", "has no port"),
            ("http://proxy:", "has no port"),
            ("http://proxy:99999", "invalid port"),
            ("http://proxy:0", "invalid port"),
            ("http://:8080", "has no host"),
            ("socks4://proxy:1080", "does not speak"),
            ("ftp://u:s3cret@proxy:21", "does not speak"),
            ("http://proxy:8080/path", "has a path"),
            ("http://u:s3cret@proxy", "has no port"),
            ("http://[::1]", "has no port"),
            ("http://[::1:3128", "not a URL"),
            ("http://[fe80::zz]:3128", "not an IPv6 address"),
            ("http://::1:3128", "not a URL"),
            ("http://pro xy:3128", "not a URL"),
        ];
        for (url, want) in cases {
            let err = ProxyUrl::parse(url).unwrap_err().to_string();
            assert!(err.contains(want), "{url}: {err}");
            assert!(!err.contains("s3cret"), "{url}: password leaked: {err}");
        }
    }
}
