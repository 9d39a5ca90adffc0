//! What to test: targets, methods, and the plan (targets × methods → probes). Pure.
//!
//! A [`Target`] is one URL with what to expect of it: the HTTP statuses that mean "reached", the
//! trust anchor its certificate must chain to, the issuers a public service is known to use, and
//! for an uplink workspace the sensor's client certificate. A [`Method`] is one way to reach it;
//! the binary's [`Routes`] says which route each method gives for each target (the proxy engine
//! for `default`, the sensor's proxy for `named`, `--proxy` for `cli`, a PAC answer for `pac`,
//! WPAD discovery for `wpad`), or why the method has nothing to test.

use std::sync::Arc;

use rustls::RootCertStore;
use serde::{Deserialize, Serialize};
use uplink_proxy::Candidate;

/// One way to reach a URL: the seeds' analyzer's five, plus PAC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// The route the sensor would really use (the proxy engine's answer).
    Default,
    /// WPAD auto-discovery.
    Wpad,
    /// No proxy.
    Direct,
    /// The proxy in the sensor's configuration.
    Named,
    /// `--proxy URL` on the command line.
    Cli,
    /// `--pac FILE-OR-URL`.
    Pac,
}

impl Method {
    pub const ALL: [Method; 6] = [
        Method::Default,
        Method::Wpad,
        Method::Direct,
        Method::Named,
        Method::Cli,
        Method::Pac,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Default => "default",
            Method::Wpad => "wpad",
            Method::Direct => "direct",
            Method::Named => "named",
            Method::Cli => "cli",
            Method::Pac => "pac",
        }
    }

    /// The label of the classic report (the seeds' analyzer's wording where it has one).
    pub fn label(self) -> &'static str {
        match self {
            Method::Default => "Default proxy",
            Method::Wpad => "Proxy auto discovery (WPAD)",
            Method::Direct => "Proxy disabled",
            Method::Named => "Named proxy",
            Method::Cli => "Command line proxy",
            Method::Pac => "PAC script",
        }
    }
}

impl std::str::FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Method::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| {
                format!("unknown method {s:?}: use one of default, wpad, direct, named, cli, pac")
            })
    }
}

/// Which HTTP statuses mean the URL was reached as it should be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Any HTTP answer (allow-list verification: the host was reached).
    Any,
    /// One of these.
    Status(Vec<u16>),
}

impl Expect {
    pub fn accepts(&self, status: u16) -> bool {
        match self {
            Expect::Any => true,
            Expect::Status(s) => s.contains(&status),
        }
    }

    /// For messages: `200`, `200 or 503`, `any status`.
    pub fn describe(&self) -> String {
        match self {
            Expect::Any => "any status".into(),
            Expect::Status(s) => s
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(" or "),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpMethod {
    Get,
    Head,
}

impl HttpMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Head => "HEAD",
        }
    }
}

/// The trust anchor a certificate must chain to.
#[derive(Clone)]
pub enum Anchor {
    /// A given CA (the workspace CA, `--ca FILE`): anything else is interception or a wrong
    /// server. `names` are the CA certificates' subjects, for messages.
    Ca {
        roots: Arc<RootCertStore>,
        names: Vec<String>,
    },
    /// This machine's trust store.
    System(Arc<RootCertStore>),
}

impl std::fmt::Debug for Anchor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Anchor::Ca { names, .. } => write!(f, "Ca({names:?})"),
            Anchor::System(r) => write!(f, "System({} roots)", r.len()),
        }
    }
}

impl Anchor {
    pub fn roots(&self) -> Arc<RootCertStore> {
        match self {
            Anchor::Ca { roots, .. } | Anchor::System(roots) => roots.clone(),
        }
    }
}

/// A client certificate and key, PEM. The key is never printed.
pub struct Identity {
    pub chain_pem: String,
    pub key_pem: secrecy::SecretString,
    /// A path that needs the certificate and changes nothing when POSTed an empty body (the
    /// uplink service's events endpoint): its 401/403 means the certificate was refused.
    pub probe_path: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Identity { key: <redacted> }")
    }
}

/// One URL to test and what to expect of it.
#[derive(Clone, Debug)]
pub struct Target {
    /// The URL as shown in reports.
    pub url: String,
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
    pub http_method: HttpMethod,
    pub expect: Expect,
    /// For `https` targets.
    pub anchor: Anchor,
    /// Issuers a public service is known to use (name fragments, case-insensitive): a chain
    /// with none of them was re-signed by an inspecting proxy even when this machine trusts it.
    pub issuers: Vec<String>,
    /// The sensor's client certificate, for uplink workspaces: enables the `client_cert` step.
    pub identity: Option<Arc<Identity>>,
}

/// The parts of a URL a probe needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UrlParts {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub path: String,
}

/// Parses `https://host[:port][/path]` or `http://…` (an IPv6 literal in brackets) with the
/// project's one URL type ([`uplink_url::HttpUrl`]). Never panics; the error names the URL.
pub fn parse_url(url: &str) -> Result<UrlParts, String> {
    let parsed = uplink_url::HttpUrl::parse(url).map_err(|e| e.to_string())?;
    if parsed.host.contains('*') {
        return Err(format!(
            "{url:?} has no usable host (a wildcard): give it as https://HOST[:PORT][/PATH]"
        ));
    }
    Ok(UrlParts {
        tls: parsed.is_tls(),
        host: parsed.host,
        port: parsed.port,
        path: parsed.path,
    })
}

/// A method's route for a target.
#[derive(Clone, Debug)]
pub enum RouteSpec {
    /// Candidates in order; like the sensor, the probe moves on only when a proxy is unreachable.
    Route(Vec<Candidate>),
    /// A route whose source skipped something on the way (a PAC answer's `PROXIE host:port`,
    /// an unsupported entry): walked as [`RouteSpec::Route`], the note shown in the first step.
    Noted { route: Vec<Candidate>, note: String },
    /// Nothing to test: why (reported as `NOT_CONFIGURED`).
    NotConfigured(String),
    /// The settings are broken (reported as `CONFIG_INVALID` with the reason).
    Invalid(String),
    /// The route could not be computed: its source failed (`PAC_FETCH_FAILED`, `PAC_SCRIPT_ERROR`,
    /// `PAC_TIMEOUT`, `WPAD_NOT_FOUND`, `CONFIG_INVALID`), with why.
    Failed {
        code: uplink_diag::Code,
        why: String,
    },
}

/// Where each method's route comes from (the binary implements it; tests use tables).
pub trait Routes {
    fn route(&self, target: &Target, method: Method) -> RouteSpec;
}

/// One probe to run: a target, a method, and its route.
#[derive(Clone, Debug)]
pub struct Probe {
    /// Index into the targets.
    pub target: usize,
    pub method: Method,
    pub route: RouteSpec,
}

/// Every target × every method, in order (targets first, then methods as given).
pub fn plan(targets: &[Target], methods: &[Method], routes: &dyn Routes) -> Vec<Probe> {
    let mut out = Vec::with_capacity(targets.len() * methods.len());
    for (i, t) in targets.iter().enumerate() {
        for &m in methods {
            out.push(Probe {
                target: i,
                method: m,
                route: routes.route(t, m),
            });
        }
    }
    out
}

/// `--resolve HOST:PORT:ADDR` (curl's syntax; `*` as HOST matches any host) and
/// `--connect-to HOST:PORT:HOST2:PORT2` (curl's; empty HOST or PORT match any): where to connect
/// instead of what DNS says. Used for tests, and by administrators to test a specific front end.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    pub resolve: Vec<(String, u16, std::net::IpAddr)>,
    pub connect_to: Vec<ConnectTo>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectTo {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub to_host: String,
    pub to_port: u16,
}

impl Overrides {
    /// Parses one `--resolve` value.
    pub fn add_resolve(&mut self, spec: &str) -> Result<(), String> {
        let bad = || {
            format!("--resolve {spec:?}: expected HOST:PORT:ADDRESS, e.g. example.com:443:127.0.0.1 (HOST may be *)")
        };
        // HOST may be a bracketed IPv6 literal; ADDRESS an IPv6 address, bracketed or not.
        let (host, rest) = uplink_url::first_field(spec).ok_or_else(bad)?;
        let (port, addr) = rest.split_once(':').ok_or_else(bad)?;
        let port = port.parse().map_err(|_| bad())?;
        let addr = addr
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| bad())?;
        if host.is_empty() {
            return Err(bad());
        }
        self.resolve.push((host.to_ascii_lowercase(), port, addr));
        Ok(())
    }

    /// Parses one `--connect-to` value.
    pub fn add_connect_to(&mut self, spec: &str) -> Result<(), String> {
        let bad = || {
            format!("--connect-to {spec:?}: expected HOST:PORT:HOST2:PORT2 (HOST and PORT may be empty for any), e.g. ::127.0.0.1:8443")
        };
        // Either host may be a bracketed IPv6 literal.
        let (host, rest) = uplink_url::first_field(spec).ok_or_else(bad)?;
        let (port, to) = rest.split_once(':').ok_or_else(bad)?;
        let (to_host, to_port) = match uplink_url::split_host_port(to) {
            Some((h, Some(p))) => (h, p),
            _ => return Err(bad()),
        };
        self.connect_to.push(ConnectTo {
            host: (!host.is_empty()).then(|| host.to_ascii_lowercase()),
            port: if port.is_empty() {
                None
            } else {
                Some(port.parse().map_err(|_| bad())?)
            },
            to_host,
            to_port,
        });
        Ok(())
    }

    /// Where to connect for `host:port`: the `--connect-to` match first, then the name.
    pub fn connect_target(&self, host: &str, port: u16) -> (String, u16) {
        for c in &self.connect_to {
            if c.host.as_deref().is_none_or(|h| h == host) && c.port.is_none_or(|p| p == port) {
                return (c.to_host.clone(), c.to_port);
            }
        }
        (host.to_owned(), port)
    }

    /// The `--resolve` address for `host:port`, if any.
    pub fn resolved(&self, host: &str, port: u16) -> Option<std::net::IpAddr> {
        self.resolve
            .iter()
            .find(|(h, p, _)| (h == host || h == "*") && *p == port)
            .map(|(_, _, a)| *a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let ok = [
            (
                "https://a.example/x?y=1",
                (true, "a.example", 443, "/x?y=1"),
            ),
            ("HTTPS://A.example:8443", (true, "a.example", 8443, "/")),
            (
                "http://crl.microsoft.com/pki/",
                (false, "crl.microsoft.com", 80, "/pki/"),
            ),
            ("https://[::1]:9/", (true, "::1", 9, "/")),
            ("https://[::1]/", (true, "::1", 443, "/")),
            (
                "http://[2001:DB8::1]:8080/p",
                (false, "2001:db8::1", 8080, "/p"),
            ),
            (
                "https://[::ffff:127.0.0.1]:8443",
                (true, "::ffff:127.0.0.1", 8443, "/"),
            ),
            ("https://h?q", (true, "h", 443, "/?q")),
        ];
        for (url, (tls, host, port, path)) in ok {
            let p = parse_url(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(
                (p.tls, p.host.as_str(), p.port, p.path.as_str()),
                (tls, host, port, path),
                "{url}"
            );
        }
        // User info is refused without repeating it (it may hold a password).
        assert!(parse_url("https://u:p@h/")
            .unwrap_err()
            .contains("user info"));
        for bad in [
            "ftp://x",
            "https://",
            "https://h:99999/",
            "https://[::1:9/",
            "https://[fe80::zz]/",
            "https://*.x.com/",
            "x",
        ] {
            let e = parse_url(bad).unwrap_err();
            assert!(e.contains(bad), "error names the input: {e}");
        }
    }

    #[test]
    fn overrides() {
        let mut o = Overrides::default();
        o.add_resolve("a.example:443:127.0.0.2").unwrap();
        o.add_resolve("*:443:127.0.0.3").unwrap();
        o.add_connect_to("::127.0.0.1:8443").unwrap();
        assert_eq!(
            o.resolved("a.example", 443),
            Some("127.0.0.2".parse().unwrap())
        );
        assert_eq!(
            o.resolved("b.example", 443),
            Some("127.0.0.3".parse().unwrap())
        );
        assert_eq!(o.resolved("b.example", 80), None);
        assert_eq!(o.connect_target("x", 443), ("127.0.0.1".into(), 8443));
        for bad in ["a:443", "a:x:1.2.3.4", ":443:1.2.3.4", "a:443:notanip"] {
            assert!(o.add_resolve(bad).is_err(), "{bad}");
        }
        for bad in ["a:443", "a:443:", "::x:"] {
            assert!(o.add_connect_to(bad).is_err(), "{bad}");
        }
        // IPv6, curl's way: bracketed hosts, addresses bracketed or not.
        let mut o = Overrides::default();
        o.add_resolve("[::1]:443:[::1]").unwrap();
        o.add_resolve("v6.example:443:2001:db8::1").unwrap();
        o.add_connect_to("[2001:db8::5]:443:[::1]:8443").unwrap();
        o.add_connect_to("v6.example::[::1]:9443").unwrap();
        assert_eq!(o.resolved("::1", 443), Some("::1".parse().unwrap()));
        assert_eq!(
            o.resolved("v6.example", 443),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(o.connect_target("2001:db8::5", 443), ("::1".into(), 8443));
        assert_eq!(o.connect_target("v6.example", 1), ("::1".into(), 9443));
        for bad in ["[::1:443:::1", "[::1]443:::1"] {
            assert!(o.add_resolve(bad).is_err(), "{bad}");
        }
        assert!(o.add_connect_to("::[::1]").is_err());
    }

    #[test]
    fn methods_parse_and_expectations() {
        for m in Method::ALL {
            assert_eq!(m.as_str().parse::<Method>().unwrap(), m);
        }
        assert!("proxy".parse::<Method>().is_err());
        assert!(Expect::Status(vec![200, 503]).accepts(503));
        assert!(!Expect::Status(vec![200]).accepts(404));
        assert!(Expect::Any.accepts(404));
        assert_eq!(Expect::Status(vec![200, 503]).describe(), "200 or 503");
    }
}
