//! `http://` and `https://` URLs: the service's URL (`https://<workspace>sensorapi.<domain>[:port]`),
//! `uplink check --url`, PAC URLs. [`http::Uri`] under strict checks: the scheme is http or
//! https, there is a host, no user info (a password in a service URL would end up in logs), an
//! IPv6 literal is an address, the port is explicit or the scheme's.

/// A parsed `http://` or `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// `http` or `https`, lower-cased.
    pub scheme: String,
    /// Lower-cased; an IPv6 literal without its brackets (`::1`).
    pub host: String,
    /// The port given, or the scheme's (80, 443).
    pub port: u16,
    /// True when the URL gave the port.
    pub explicit_port: bool,
    /// Path and query (`/` when the URL has none); the fragment is dropped.
    pub path: String,
}

/// Why a URL is not a usable http(s) URL. Carries the input (it holds no secret: user info is
/// refused, and not repeated).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpUrlError {
    #[error("{url:?} is not a URL ({reason}): write it as https://HOST[:PORT]/PATH")]
    Invalid { url: String, reason: String },
    #[error("{url:?} has no scheme: write it as https://HOST[:PORT]/PATH")]
    NoScheme { url: String },
    #[error("{url:?} is not an http:// or https:// URL (its scheme is {scheme:?}); only those are accepted here")]
    Scheme { url: String, scheme: String },
    #[error("{url:?} has no host")]
    NoHost { url: String },
    #[error("{url:?} has an invalid port: use a number from 1 to 65535")]
    BadPort { url: String },
    #[error("the URL has user info (user:password@): it is not accepted here, so no password ends up in a configuration file or a log")]
    UserInfo,
    #[error("{url:?} has an invalid IPv6 address: write it in brackets, e.g. https://[2001:db8::1]:443/")]
    BadIpv6 { url: String },
}

impl HttpUrl {
    /// Parses an `http://` or `https://` URL.
    pub fn parse(input: &str) -> Result<HttpUrl, HttpUrlError> {
        let text = input.trim();
        if text.contains('@') && !text.contains("://") {
            return Err(HttpUrlError::NoScheme { url: text.into() });
        }
        let Some((scheme, rest)) = text.split_once("://") else {
            return Err(HttpUrlError::NoScheme { url: text.into() });
        };
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(HttpUrlError::Scheme {
                url: text.into(),
                scheme,
            });
        }
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        if rest[..end].contains('@') {
            return Err(HttpUrlError::UserInfo);
        }
        if rest[..end].is_empty() {
            return Err(HttpUrlError::NoHost { url: text.into() });
        }
        let without_fragment = text.split('#').next().unwrap_or(text);
        let uri: http::Uri = without_fragment
            .parse()
            .map_err(|e: http::uri::InvalidUri| {
                let reason = e.to_string();
                if reason.contains("port") {
                    HttpUrlError::BadPort { url: text.into() }
                } else {
                    HttpUrlError::Invalid {
                        url: text.into(),
                        reason,
                    }
                }
            })?;
        let authority = uri
            .authority()
            .ok_or_else(|| HttpUrlError::NoHost { url: text.into() })?;
        let raw_host = authority.host();
        let host = match raw_host.strip_prefix('[') {
            Some(v6) => {
                let v6 = v6.strip_suffix(']').unwrap_or(v6);
                if v6.parse::<std::net::Ipv6Addr>().is_err() {
                    return Err(HttpUrlError::BadIpv6 { url: text.into() });
                }
                v6
            }
            None => raw_host,
        };
        if host.is_empty() {
            return Err(HttpUrlError::NoHost { url: text.into() });
        }
        // `host:` (an empty port) is the default port, as for browsers and curl.
        let a = authority.as_str();
        let port_text = if a.starts_with('[') {
            a.split_once("]:").map(|x| x.1)
        } else {
            a.rsplit_once(':').map(|x| x.1)
        };
        let port = match port_text {
            None | Some("") => None,
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p != 0 => Some(p),
                _ => return Err(HttpUrlError::BadPort { url: text.into() }),
            },
        };
        let default = if scheme == "https" { 443 } else { 80 };
        let path = uri
            .path_and_query()
            .map(|p| p.as_str())
            .filter(|p| !p.is_empty())
            .unwrap_or("/");
        let path = if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("/{path}")
        };
        Ok(HttpUrl {
            scheme,
            host: host.to_ascii_lowercase(),
            port: port.unwrap_or(default),
            explicit_port: port.is_some(),
            path,
        })
    }

    /// True for `https`.
    pub fn is_tls(&self) -> bool {
        self.scheme == "https"
    }

    /// The scheme's default port.
    pub fn default_port(&self) -> u16 {
        if self.is_tls() {
            443
        } else {
            80
        }
    }

    /// `host[:port]` as a `Host` header writes it: the port only when it is not the scheme's,
    /// an IPv6 literal in brackets.
    pub fn authority(&self) -> String {
        if self.port == self.default_port() {
            if self.host.contains(':') {
                format!("[{}]", self.host)
            } else {
                self.host.clone()
            }
        } else {
            crate::host_port(&self.host, self.port)
        }
    }

    /// `host:port`, always with the port.
    pub fn host_port(&self) -> String {
        crate::host_port(&self.host, self.port)
    }
}

impl std::fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority(), self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid() {
        // (input, host, port, explicit, path, authority)
        let cases = [
            ("https://h", "h", 443, false, "/", "h"),
            (
                "https://WSensorAPI.example.com:8443/",
                "wsensorapi.example.com",
                8443,
                true,
                "/",
                "wsensorapi.example.com:8443",
            ),
            ("https://h:1/x/y?q=1#frag", "h", 1, true, "/x/y?q=1", "h:1"),
            ("http://h:/", "h", 80, false, "/", "h"),
            ("HTTP://10.0.0.1", "10.0.0.1", 80, false, "/", "10.0.0.1"),
            ("https://[::1]:8443", "::1", 8443, true, "/", "[::1]:8443"),
            ("https://[::1]", "::1", 443, false, "/", "[::1]"),
            (
                "https://[2001:DB8::1]:443/p",
                "2001:db8::1",
                443,
                true,
                "/p",
                "[2001:db8::1]",
            ),
            (
                "http://[::ffff:127.0.0.1]:81/",
                "::ffff:127.0.0.1",
                81,
                true,
                "/",
                "[::ffff:127.0.0.1]:81",
            ),
            ("https://h?x", "h", 443, false, "/?x", "h"),
        ];
        for (input, host, port, explicit, path, authority) in cases {
            let u = HttpUrl::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(
                (
                    u.host.as_str(),
                    u.port,
                    u.explicit_port,
                    u.path.as_str(),
                    u.authority()
                ),
                (host, port, explicit, path, authority.to_owned()),
                "{input}"
            );
        }
    }

    #[test]
    fn invalid() {
        let cases = [
            ("h:443", "no scheme"),
            ("ftp://h/", "scheme"),
            ("https://", "no host"),
            ("https:///p", "no host"),
            ("https://u:s3cret@h", "user info"),
            ("https://h:99999", "invalid port"),
            ("https://h:0", "invalid port"),
            ("https://h:x", "invalid port"),
            ("https://[::1/", "not a URL"),
            ("https://[fe80::zz]/", "IPv6"),
            ("https://h h/", "not a URL"),
        ];
        for (input, want) in cases {
            let e = HttpUrl::parse(input).unwrap_err().to_string();
            assert!(e.contains(want), "{input}: {e}");
            assert!(!e.contains("s3cret"), "{input}: {e}");
        }
    }
}
