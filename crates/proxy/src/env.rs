//! Proxy settings from environment variables, as curl reads them for an `https://` URL:
//! `https_proxy`, then `HTTPS_PROXY`, then `all_proxy`, then `ALL_PROXY`; `no_proxy` or
//! `NO_PROXY` for the bypass list. `http_proxy`/`HTTP_PROXY` apply to `http://` URLs only (curl
//! and Go agree), so they are recorded but never used for the service, which is always https.
//!
//! A system service does not inherit a login shell's environment, so the sensor *captures* these
//! at install (or with `uplink sensor proxy set --from-env`) — the Linux counterpart of copying
//! the user's proxy settings to LocalSystem/LocalService in the seeds. This module only reads a
//! map it is given; it never reads the process environment itself.

use serde::{Deserialize, Serialize};

/// The proxy variables of one environment, credentials removed (they are stored sealed).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvCapture {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https_proxy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_proxy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all_proxy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_proxy: Option<String>,
    /// From `user:password@` in the chosen proxy URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Sealed (`enc:v1:...`) by the caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// The variables this module reads, in the order they are looked up.
pub const VARIABLES: &[&str] = &[
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "http_proxy",
    "HTTP_PROXY",
    "no_proxy",
    "NO_PROXY",
];

/// What the environment says, with credentials split out (not yet sealed).
#[derive(Debug, Clone, Default)]
pub struct FromEnv {
    pub capture: EnvCapture,
    pub credentials: Option<uplink_url::Credentials>,
}

/// Reads the proxy variables from `get` (e.g. `|k| std::env::var(k).ok()`).
pub fn capture(get: impl Fn(&str) -> Option<String>) -> FromEnv {
    let first = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| get(n).filter(|v| !v.trim().is_empty()))
    };
    let mut out = FromEnv::default();
    let mut strip = |v: Option<String>| -> Option<String> {
        let v = v?;
        let with_scheme = if v.contains("://") {
            v.clone()
        } else {
            format!("http://{v}")
        };
        match with_scheme.rsplit_once('@') {
            Some((prefix, host)) => {
                let (scheme, userinfo) = prefix.split_once("://").unwrap_or(("http", prefix));
                if out.credentials.is_none() {
                    if let Ok((_, Some(c))) =
                        uplink_url::ProxyUrl::parse(&format!("{scheme}://{userinfo}@{host}"))
                    {
                        out.credentials = Some(c);
                    } else {
                        let (u, p) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                        out.credentials = Some(uplink_url::Credentials::new(u, p));
                    }
                }
                Some(format!("{scheme}://{host}"))
            }
            None => Some(v),
        }
    };
    out.capture.https_proxy = strip(first(&["https_proxy", "HTTPS_PROXY"]));
    out.capture.all_proxy = strip(first(&["all_proxy", "ALL_PROXY"]));
    out.capture.http_proxy = strip(first(&["http_proxy", "HTTP_PROXY"]));
    out.capture.no_proxy = first(&["no_proxy", "NO_PROXY"]);
    if let Some(c) = &out.credentials {
        out.capture.user = Some(c.user.clone());
    }
    out
}

impl EnvCapture {
    pub fn is_empty(&self) -> bool {
        self.https_proxy.is_none()
            && self.all_proxy.is_none()
            && self.http_proxy.is_none()
            && self.no_proxy.is_none()
    }

    /// The proxy for an https URL and the variable it came from.
    pub fn https_choice(&self) -> Option<(&'static str, &str)> {
        self.https_proxy
            .as_deref()
            .map(|v| ("https_proxy", v))
            .or_else(|| self.all_proxy.as_deref().map(|v| ("all_proxy", v)))
    }
}

/// Parses a proxy value from the environment leniently, as curl does: no scheme means
/// `http://`, no port means 1080 (curl's default proxy port).
pub fn parse_env_proxy(value: &str) -> Result<(uplink_url::ProxyUrl, bool), uplink_url::UrlError> {
    let v = value.trim();
    let (scheme, rest) = v.split_once("://").unwrap_or(("http", v));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    // The project's host:port reader: `[v6]:port`, `name:port`, `v4:port`.
    let has_port = uplink_url::split_host_port(hostport).is_some_and(|(_, p)| p.is_some());
    // curl's defaults: 443 for an HTTPS proxy, 1080 for the others.
    let default = if scheme.eq_ignore_ascii_case("https") {
        443
    } else {
        1080
    };
    let hostport = if has_port {
        hostport.to_owned()
    } else {
        format!("{hostport}:{default}")
    };
    let userinfo = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
    uplink_url::ProxyUrl::parse(&format!("{scheme}://{userinfo}{hostport}"))
        .map(|(u, _)| (u, !has_port))
}

impl FromEnv {
    /// The route to `host:port` this environment alone gives (`uplink proxy explain` with no
    /// sensor installed): mode `env`, its credentials used as they are — nothing is sealed or
    /// stored.
    pub fn explain(&self, host: &str, port: u16) -> crate::Explanation {
        let mut capture = self.capture.clone();
        if capture.user.is_some() {
            // A stand-in for the sealed password the settings would hold; `unseal` below
            // answers it with the environment's own.
            capture.password = Some("from-environment".into());
        }
        let settings = crate::ProxySettings {
            mode: Some(crate::Mode::Env),
            env: Some(capture),
            ..Default::default()
        };
        let unseal = |_: &str| -> Result<secrecy::SecretString, String> {
            self.credentials
                .as_ref()
                .map(|c| c.password.clone())
                .ok_or_else(|| "no password".to_owned())
        };
        crate::explain(&settings, host, port, &unseal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn precedence_and_credentials() {
        let e = capture(env(&[
            ("HTTPS_PROXY", "http://upper:1"),
            ("https_proxy", "http://lower:2"),
            ("ALL_PROXY", "all:3"),
        ]));
        assert_eq!(
            e.capture.https_choice(),
            Some(("https_proxy", "http://lower:2"))
        );
        let e = capture(env(&[
            ("ALL_PROXY", "all:3"),
            ("HTTP_PROXY", "http://h:4"),
            ("no_proxy", ".corp"),
        ]));
        assert_eq!(e.capture.https_choice(), Some(("all_proxy", "all:3")));
        assert_eq!(e.capture.http_proxy.as_deref(), Some("http://h:4"));
        assert_eq!(e.capture.no_proxy.as_deref(), Some(".corp"));
        let e = capture(env(&[("HTTP_PROXY", "http://h:4")]));
        assert_eq!(
            e.capture.https_choice(),
            None,
            "HTTP_PROXY is not used for https"
        );

        let e = capture(env(&[(
            "HTTPS_PROXY",
            "http://CONTOSO%5Cu:p%40ss@proxy:8080",
        )]));
        assert_eq!(
            e.capture.https_proxy.as_deref(),
            Some("http://proxy:8080"),
            "credentials stripped"
        );
        let c = e.credentials.unwrap();
        assert_eq!(c.user, "CONTOSO\\u");
        use secrecy::ExposeSecret;
        assert_eq!(c.password.expose_secret(), "p@ss");
        assert!(capture(env(&[("HTTPS_PROXY", "  ")])).capture.is_empty());
    }

    /// Go's from_environment table, for the variables uplink reads (REQUEST_METHOD/CGI is a Go
    /// server concern and does not apply to a sensor).
    #[test]
    fn go_from_environment_table() {
        let path = format!(
            "{}/../../../shared/fixtures/noproxy/go_httpproxy_cases.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let t: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        for case in t["from_environment"].as_array().unwrap() {
            let pairs: Vec<(String, String)> = case["env"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect();
            let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            let e = capture(get);
            let want = &case["want"];
            assert_eq!(
                e.capture.https_proxy.as_deref(),
                want["HTTPSProxy"].as_str().filter(|s| !s.is_empty()),
                "{case}"
            );
            assert_eq!(
                e.capture.http_proxy.as_deref(),
                want["HTTPProxy"].as_str().filter(|s| !s.is_empty()),
                "{case}"
            );
            assert_eq!(
                e.capture.no_proxy.as_deref(),
                want["NoProxy"].as_str().filter(|s| !s.is_empty()),
                "{case}"
            );
        }
    }

    #[test]
    fn lenient_env_values() {
        let (u, defaulted) = parse_env_proxy("proxy.corp:3128").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, defaulted),
            ("proxy.corp", 3128, false)
        );
        let (u, defaulted) = parse_env_proxy("http://proxy.corp").unwrap();
        assert_eq!((u.port, defaulted), (1080, true));
        let (u, _) = parse_env_proxy("http://[::1]:3128/").unwrap();
        assert_eq!(u.host_port(), "[::1]:3128");
        // IPv6 literals: bracketed, with and without a port; a bare one is refused (curl too).
        let v6 = [
            ("[::1]", Some(("http://[::1]:1080", true))),
            (
                "[2001:DB8::1]:8080",
                Some(("http://[2001:db8::1]:8080", false)),
            ),
            ("https://[::1]", Some(("https://[::1]:443", true))),
            ("u:p@[::1]:3128", Some(("http://[::1]:3128", false))),
            (
                "socks5h://[::1]:1080",
                Some(("socks5h://[::1]:1080", false)),
            ),
            ("::1", None),
            ("http://[::1", None),
        ];
        for (value, want) in v6 {
            let got = parse_env_proxy(value).ok().map(|(u, d)| (u.to_string(), d));
            let want = want.map(|(u, d)| (u.to_owned(), d));
            assert_eq!(got, want, "{value}");
        }
        let (u, _) = parse_env_proxy("socks5h://s").unwrap();
        assert_eq!((u.scheme.as_str(), u.port), ("socks5h", 1080));
        let (u, _) = parse_env_proxy("https://p.corp").unwrap();
        assert_eq!((u.scheme.as_str(), u.port), ("https", 443));
        assert!(
            parse_env_proxy("socks4://s:1080").is_err(),
            "SOCKS4 is not spoken, and said so"
        );
    }

    #[test]
    fn an_environment_alone_gives_its_route_with_its_credentials() {
        use secrecy::ExposeSecret;
        let env = |vars: &'static [(&'static str, &'static str)]| {
            capture(move |k| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            })
        };
        let with_user = env(&[
            ("https_proxy", "http://alice:s3cret@proxy.corp:3128"),
            ("no_proxy", ".internal"),
        ]);
        let ex = with_user.explain("svc.example", 443);
        assert_eq!(ex.mode, crate::Mode::Env);
        let route: Vec<String> = ex.route.iter().map(ToString::to_string).collect();
        assert_eq!(route[0], "PROXY proxy.corp:3128", "{route:?}");
        match &ex.route[0] {
            crate::Candidate::Proxy {
                credentials: Some(c),
                ..
            } => {
                assert_eq!(c.user, "alice");
                assert_eq!(c.password.expose_secret(), "s3cret");
            }
            other => panic!("the environment's credentials go with its proxy: {other:?}"),
        }
        // no_proxy applies.
        let inside = with_user.explain("db.internal", 443);
        assert_eq!(
            inside
                .route
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["DIRECT"]
        );
        // Without a user, no credentials; without a proxy, DIRECT.
        let anonymous = env(&[("HTTPS_PROXY", "proxy.corp:8080")]).explain("svc.example", 443);
        assert!(matches!(
            &anonymous.route[0],
            crate::Candidate::Proxy {
                credentials: None,
                ..
            }
        ));
        let none = env(&[]).explain("svc.example", 443);
        assert_eq!(
            none.route
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["DIRECT"]
        );
    }
}
