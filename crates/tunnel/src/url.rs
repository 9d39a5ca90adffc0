//! Proxy URLs: `http://[user[:password]@]host:port`.
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
    #[error("proxy URL {url:?} uses the scheme {scheme:?}, which is not supported yet: use http://HOST:PORT")]
    Scheme { url: String, scheme: String },
    #[error("proxy URL {0:?} has no port: write it as http://HOST:PORT, e.g. http://proxy.contoso.com:8080")]
    NoPort(String),
    #[error("proxy URL {0:?} has an invalid port: use a number from 1 to 65535")]
    BadPort(String),
    #[error("proxy URL {0:?} has no host")]
    NoHost(String),
    #[error("proxy URL {0:?} has a path, query or fragment; a proxy URL is only http://HOST:PORT")]
    HasPath(String),
}

impl ProxyUrl {
    /// Parses a proxy URL. Credentials in it (`user:password@`, percent-decoded) are returned too;
    /// they must go to the encrypted store, never back into a configuration file.
    pub fn parse(input: &str) -> Result<(ProxyUrl, Option<Credentials>), UrlError> {
        let url = input.trim();
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(UrlError::NoScheme(redact(input)));
        };
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" {
            return Err(UrlError::Scheme {
                url: redact(input),
                scheme,
            });
        }
        let (authority, tail) = match rest.find(['/', '?', '#']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if !(tail.is_empty() || tail == "/") {
            return Err(UrlError::HasPath(redact(input)));
        }
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| UrlError::NoHost(redact(input)))?;
            (h, after.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(UrlError::NoHost(redact(input)));
        }
        let port = match port {
            None | Some("") => return Err(UrlError::NoPort(redact(input))),
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| UrlError::BadPort(redact(input)))?,
        };
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
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
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
        ];
        for (url, host, port) in cases {
            let (p, c) = ProxyUrl::parse(url).unwrap();
            assert_eq!((p.host.as_str(), p.port), (host, port), "{url}");
            assert!(c.is_none());
        }
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
            ("http://proxy.contoso.com", "has no port"),
            ("http://proxy:", "has no port"),
            ("http://proxy:99999", "invalid port"),
            ("http://proxy:0", "invalid port"),
            ("http://:8080", "has no host"),
            ("socks5://proxy:1080", "not supported yet"),
            ("http://proxy:8080/path", "has a path"),
            ("http://u:s3cret@proxy", "has no port"),
        ];
        for (url, want) in cases {
            let err = ProxyUrl::parse(url).unwrap_err().to_string();
            assert!(err.contains(want), "{url}: {err}");
            assert!(!err.contains("s3cret"), "{url}: password leaked: {err}");
        }
    }
}
