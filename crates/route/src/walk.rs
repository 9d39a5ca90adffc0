//! The sensor's walk: opening a connection to the service along a route: TCP (to the service or to a proxy), then
//! the proxy's tunnel — CONNECT for an HTTP proxy, TLS to the proxy then CONNECT inside it for an
//! HTTPS proxy, the SOCKS5 exchange for a SOCKS5 proxy — then TLS trusting only the workspace CA.
//!
//! [`connect_route`] walks the route's candidates in order (proxies the bad-proxy cache is
//! skipping go last). It moves on to the next candidate when a *proxy could not be reached*
//! — refused, unreachable, timed out, not speaking HTTP. A proxy an administrator named that
//! answers and refuses (wrong password, host denied) is an answer: falling back to DIRECT then
//! would hide the problem, and browsers do not do it either. A proxy that came from discovery
//! (WPAD, a PAC over plain http://) is different: anyone on the network can name one, so its
//! refusal moves on too, and the connection says so ([`Connected::refused`]; the uploader reports
//! `DISCOVERED_PROXY_REFUSED`). Such a proxy gets the configured credentials only as
//! [`uplink_proxy::trust`] allows; a demand for credentials withheld from it is
//! `PROXY_CREDENTIALS_WITHHELD`.

use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};
use uplink_client::{dial_direct, ClientError, Connection, Endpoint, TlsSettings};
use uplink_diag::{Code, Diagnose};
use uplink_proxy::badcache::BadProxies;
use uplink_proxy::trust::{self, Failure, Origin, ProxyAuth};

use crate::decide::Attempt;
use uplink_proxy::{Candidate, Explanation};
use uplink_tunnel::{Credentials, ProxyKind, ProxyUrl, TunnelError};

/// Any failure on the way to the service. Carries no secret.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("{0}")]
    Client(#[from] ClientError),
    #[error("{0}")]
    Tunnel(#[from] TunnelError),
    #[error("cannot reach the proxy {proxy}: {source}")]
    ProxyDial { proxy: String, source: ClientError },
    #[error("through the proxy {proxy}, the service's certificate does not chain to the workspace CA: a TLS-inspecting proxy is probably replacing it ({detail})")]
    Intercepted { proxy: String, detail: String },
    #[error("the proxy settings give no route to the service: {reason}")]
    NoRoute { code: Code, reason: String },
    #[error("{what} timed out after {after:?}")]
    Timeout { what: &'static str, after: Duration },
    #[error("the proxy {proxy} asks for credentials, and they are withheld from it: {reason}. If it is your proxy, allow its host with `uplink sensor proxy set --credential-hosts HOST` (Digest, NTLM or Negotiate only, never Basic), or name it with --proxy-url")]
    CredentialsWithheld { proxy: String, reason: String },
}

impl Diagnose for LinkError {
    fn code(&self) -> Code {
        match self {
            LinkError::Client(e) => e.code(),
            LinkError::Tunnel(e) => e.code(),
            LinkError::ProxyDial { source, .. } => source.code(),
            LinkError::Intercepted { .. } => Code::TLS_INTERCEPTED,
            LinkError::NoRoute { code, .. } => *code,
            LinkError::Timeout { .. } => Code::TIMEOUT,
            LinkError::CredentialsWithheld { .. } => Code::PROXY_CREDENTIALS_WITHHELD,
        }
    }
}

impl LinkError {
    /// The failure as the administrator sees it: its code, step and context (the proxy, the
    /// service's host and port, the status, the proxy's own words and schemes), so the sensor's
    /// status gets the fix `uplink check` gives for the same failure.
    pub fn diagnosis(&self, endpoint: &Endpoint) -> uplink_diag::Diagnosis {
        use uplink_proxyauth::AuthError;
        let proxy = match self {
            LinkError::ProxyDial { proxy, .. }
            | LinkError::Intercepted { proxy, .. }
            | LinkError::CredentialsWithheld { proxy, .. } => Some(proxy.clone()),
            LinkError::Tunnel(
                TunnelError::Auth { proxy, .. }
                | TunnelError::Denied { proxy, .. }
                | TunnelError::Protocol { proxy, .. }
                | TunnelError::Timeout { proxy, .. }
                | TunnelError::Io { proxy, .. }
                | TunnelError::ProxyTls { proxy, .. }
                | TunnelError::Config { proxy, .. }
                | TunnelError::SocksAuthRequired { proxy, .. }
                | TunnelError::SocksRejected { proxy, .. }
                | TunnelError::SocksDenied { proxy, .. },
            ) => Some(proxy.clone()),
            _ => None,
        };
        let status = match self {
            LinkError::Client(ClientError::Status { status, .. }) => Some(*status),
            LinkError::Tunnel(TunnelError::Denied { status, .. }) => Some(*status),
            _ => None,
        };
        let (schemes, credentials) = match self {
            LinkError::Tunnel(TunnelError::Auth { source, .. }) => match source {
                AuthError::NoCredentials { offered } => (offered.0.clone(), false),
                AuthError::Unsupported { offered, .. } | AuthError::Rejected { offered, .. } => {
                    (offered.0.clone(), true)
                }
                _ => (Vec::new(), true),
            },
            _ => (Vec::new(), false),
        };
        let context = uplink_diag::Context {
            who: uplink_diag::Who::Sensor,
            route: proxy.map(|p| format!("PROXY {p}")),
            host: Some(endpoint.host.clone()),
            port: Some(endpoint.port),
            status,
            schemes,
            credentials,
            reason: match self {
                LinkError::Tunnel(t) => t.proxy_reason(),
                _ => None,
            },
            workspace_ca: true,
        };
        uplink_diag::Diagnosis::new(self.code(), context)
    }

    /// True when the proxy itself could not be reached or spoke no HTTP: the next candidate of
    /// the route may be tried.
    pub fn proxy_unreachable(&self) -> bool {
        matches!(
            self,
            LinkError::ProxyDial { .. }
                | LinkError::Tunnel(
                    TunnelError::Io { .. }
                        | TunnelError::Timeout { .. }
                        | TunnelError::Protocol { .. }
                        | TunnelError::ProxyTls {
                            code: Code::TLS_HANDSHAKE_FAILED | Code::PROXY_PROTOCOL_ERROR,
                            ..
                        }
                )
        )
    }

    /// How an attempt through a candidate failed, for [`trust::try_next`]: unreachable, refused
    /// by the proxy (`via_proxy`: anything that went wrong past the proxy's door, including the
    /// service's TLS inside its tunnel), or something else.
    pub fn failure(&self, via_proxy: bool) -> Failure {
        if self.proxy_unreachable() {
            return Failure::Unreachable;
        }
        match self {
            LinkError::Tunnel(TunnelError::Config { .. }) | LinkError::NoRoute { .. } => {
                Failure::Other
            }
            LinkError::Tunnel(_)
            | LinkError::Intercepted { .. }
            | LinkError::CredentialsWithheld { .. } => Failure::Refused,
            LinkError::Client(_) | LinkError::Timeout { .. } | LinkError::ProxyDial { .. } => {
                if via_proxy {
                    Failure::Refused
                } else {
                    Failure::Other
                }
            }
        }
    }
}

/// A demand for authentication that went unanswered because `auth` withholds the credentials
/// becomes `PROXY_CREDENTIALS_WITHHELD`; anything else is returned as it was.
fn withheld(e: TunnelError, auth: &ProxyAuth) -> LinkError {
    use uplink_proxyauth::AuthError;
    let (proxy, offered) = match &e {
        TunnelError::Auth {
            proxy,
            source: AuthError::NoCredentials { offered } | AuthError::Unsupported { offered, .. },
        } => (proxy, offered.0.clone()),
        TunnelError::SocksAuthRequired { proxy, offered } => (proxy, vec![offered.clone()]),
        _ => return e.into(),
    };
    match trust::withheld(auth, &offered) {
        Some(reason) => LinkError::CredentialsWithheld {
            proxy: proxy.clone(),
            reason,
        },
        None => e.into(),
    }
}

/// Opens a TLS connection to `endpoint` through one candidate. Also returns the proxy
/// authentication scheme that was used, if any.
pub async fn open(
    endpoint: &Endpoint,
    candidate: &Candidate,
    tls: &TlsSettings,
    timeout: Duration,
) -> Result<(Connection, Option<&'static str>), LinkError> {
    let attempt = async {
        match candidate {
            Candidate::Direct => {
                let tcp = dial_direct(&endpoint.host, endpoint.port, timeout).await?;
                Ok((Connection::handshake(tcp, endpoint, tls).await?, None))
            }
            Candidate::Proxy {
                url,
                credentials,
                proxy_ca,
                auth,
                ..
            } => {
                through_proxy(
                    endpoint,
                    url,
                    (credentials.as_ref(), auth),
                    proxy_ca.as_deref(),
                    tls,
                    timeout,
                )
                .await
            }
        }
    };
    tokio::time::timeout(timeout * 2, attempt)
        .await
        .map_err(|_| LinkError::Timeout {
            what: "connecting to the service",
            after: timeout * 2,
        })?
}

/// Dials the proxy `url`, opens its tunnel to the endpoint ([`crate::tunnel`]), and does the
/// workspace TLS inside, sending `credentials` only by the schemes `auth` allows.
async fn through_proxy(
    endpoint: &Endpoint,
    url: &ProxyUrl,
    (credentials, auth): (Option<&Credentials>, &ProxyAuth),
    proxy_ca: Option<&str>,
    tls: &TlsSettings,
    timeout: Duration,
) -> Result<(Connection, Option<&'static str>), LinkError> {
    let proxy = url.host_port();
    // socks5:// (curl's meaning): this machine resolves the service's name.
    let resolved = match url.kind() {
        ProxyKind::Socks5 { remote_dns: false } => {
            Some(uplink_client::resolve(&endpoint.host, endpoint.port).await?[0].ip())
        }
        _ => None,
    };
    let tcp = dial_direct(&url.host, url.port, timeout)
        .await
        .map_err(|source| LinkError::ProxyDial {
            proxy: proxy.clone(),
            source,
        })?;
    let through = crate::tunnel::Through {
        url,
        credentials,
        auth,
        proxy_ca,
        host: &endpoint.host,
        port: endpoint.port,
        resolved,
        timeout,
    };
    let tunnel = crate::tunnel::open(tcp, &through)
        .await
        .map_err(|e| withheld(e, auth))?;
    service_tls(tunnel.stream, tunnel.scheme, endpoint, tls, &proxy).await
}

/// The workspace TLS over a tunnel through `proxy`.
async fn service_tls<S>(
    stream: S,
    scheme: Option<&'static str>,
    endpoint: &Endpoint,
    tls: &TlsSettings,
    proxy: &str,
) -> Result<(Connection, Option<&'static str>), LinkError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    match Connection::handshake(stream, endpoint, tls).await {
        Ok(c) => Ok((c, scheme)),
        // Only the workspace CA is trusted; through a proxy, a certificate from an issuer
        // that is neither a workspace CA (a stale bundle: TLS_UNTRUSTED_ROOT) nor the
        // service's placeholder (WORKSPACE_UNKNOWN) means the proxy terminated TLS itself: the
        // one classifier (uplink_diag::classify) decided which.
        Err(e) if e.code() == Code::TLS_INTERCEPTED => Err(LinkError::Intercepted {
            proxy: proxy.to_owned(),
            detail: e.to_string(),
        }),
        Err(e) => Err(e.into()),
    }
}

/// A connection and the candidate that gave it.
#[derive(Debug)]
pub struct Connected {
    pub conn: Connection,
    /// `DIRECT` or `PROXY host:port`.
    pub route: String,
    /// Set when earlier candidates were skipped: which, and why.
    pub note: Option<String>,
    /// The proxy authentication scheme in use (`Basic`, `Digest`, `NTLM`, `Negotiate`, SOCKS5's
    /// `username/password`), if any.
    pub proxy_auth: Option<&'static str>,
    /// Set when a proxy that came from discovery, ahead of this candidate in the route, refused
    /// (now, or recently enough that the bad-proxy cache still skips it): which, and why.
    pub refused: Option<String>,
    /// Every candidate tried, in order; the last one worked.
    pub attempts: Vec<Attempt>,
}

/// Connects along `explanation`'s route; see the module docs.
pub async fn connect_route(
    endpoint: &Endpoint,
    explanation: &Explanation,
    tls: &TlsSettings,
    timeout: Duration,
    bad: &mut BadProxies,
) -> Result<Connected, LinkError> {
    if let Some(problem) = &explanation.problem {
        return Err(LinkError::NoRoute {
            code: explanation.problem_code.unwrap_or(Code::CONFIG_INVALID),
            reason: problem.clone(),
        });
    }
    let ordered = bad.order(
        explanation.route.clone(),
        Candidate::proxy_key,
        Instant::now(),
    );
    let mut unreachable: Vec<String> = Vec::new();
    let mut refusals: Vec<String> = Vec::new();
    // The first refusal by a discovered proxy: when nothing else works either, it is the error
    // that says what to do.
    let mut refusal_error: Option<LinkError> = None;
    let mut last = None;
    let mut attempts: Vec<Attempt> = Vec::new();
    for candidate in ordered {
        match open(endpoint, &candidate, tls, timeout).await {
            Ok((conn, proxy_auth)) => {
                attempts.push(Attempt {
                    route: candidate.to_string(),
                    code: None,
                    detail: String::new(),
                });
                if let Some(key) = candidate.proxy_key() {
                    bad.mark_good(&key);
                }
                let refused = refusals
                    .first()
                    .cloned()
                    .or_else(|| remembered_refusal(explanation, &candidate, bad));
                let mut parts = Vec::new();
                if !unreachable.is_empty() {
                    parts.push(format!("{} could not be reached", unreachable.join(", ")));
                }
                if refusals.is_empty() {
                    parts.extend(refused.clone());
                } else {
                    parts.extend(refusals.iter().cloned());
                }
                let note =
                    (!parts.is_empty()).then(|| format!("{}; using {candidate}", parts.join("; ")));
                let refused = refused.map(|r| {
                    format!("{r}; using {candidate} instead, as the fallback policy allows")
                });
                return Ok(Connected {
                    conn,
                    route: candidate.to_string(),
                    note,
                    proxy_auth,
                    refused,
                    attempts,
                });
            }
            Err(e) => {
                attempts.push(Attempt {
                    route: candidate.to_string(),
                    code: Some(e.code()),
                    detail: e.to_string(),
                });
                let origin = candidate.origin();
                let failure = e.failure(candidate.proxy_key().is_some());
                // (Past the last candidate the loop ends anyway: the error below is the same.)
                if !crate::decide::move_on(origin, failure, true, true) {
                    return Err(match refusal_error {
                        Some(refused) => {
                            tracing::warn!(code = %e.code(), error = %e, "{candidate} failed too, after a discovered proxy refused");
                            refused
                        }
                        None => e,
                    });
                }
                let key = candidate.proxy_key().unwrap_or_default();
                match (failure, origin) {
                    (Failure::Refused, Origin::Discovered(how)) => {
                        let why = format!(
                            "{candidate}, named by {}, refused ({}: {e})",
                            how.describe(),
                            e.code()
                        );
                        let wait = bad.mark_refused(&key, Instant::now(), why.clone());
                        tracing::warn!(proxy = %key, code = %e.code(), skip_for = ?wait, "a proxy that came from discovery refused; trying the next route candidate");
                        refusals.push(why);
                        refusal_error.get_or_insert(e);
                    }
                    _ => {
                        if candidate.proxy_key().is_some() {
                            let wait = bad.mark_bad(&key, Instant::now());
                            tracing::warn!(proxy = %key, code = %e.code(), skip_for = ?wait, "proxy unreachable; trying the next route candidate");
                        }
                        unreachable.push(format!("{candidate} ({})", e.code()));
                        last = Some(e);
                    }
                }
            }
        }
    }
    Err(refusal_error
        .or(last)
        .unwrap_or_else(|| LinkError::NoRoute {
            code: Code::CONFIG_INVALID,
            reason: "the route is empty".into(),
        }))
}

/// A refusal the bad-proxy cache still remembers, of a proxy ahead of `used` in the route as
/// configured (the cache moved it behind `used`, so it was not tried this time).
fn remembered_refusal(
    explanation: &Explanation,
    used: &Candidate,
    bad: &BadProxies,
) -> Option<String> {
    let now = Instant::now();
    let used_key = (used.proxy_key(), used.to_string());
    explanation
        .route
        .iter()
        .take_while(|c| (c.proxy_key(), c.to_string()) != used_key)
        .filter_map(|c| c.proxy_key())
        .find_map(|k| bad.refusal(&k, now).map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;
    use uplink_proxyauth::{AuthError, Offered};

    fn proxy() -> String {
        "w:3128".into()
    }

    fn auth(source: AuthError) -> LinkError {
        LinkError::Tunnel(TunnelError::Auth {
            proxy: proxy(),
            source,
        })
    }

    /// Which failures are the proxy's refusal (a discovered proxy's moves the route on).
    #[test]
    fn failures_are_classified() {
        let io = || std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        let tls = || ClientError::Tls {
            host: "s".into(),
            reason: "x".into(),
            code: Code::TLS_HANDSHAKE_FAILED,
        };
        let offered = || Offered(vec!["Basic".into()]);
        let cases: Vec<(&str, LinkError, bool, Failure)> = vec![
            (
                "proxy port closed",
                LinkError::ProxyDial {
                    proxy: proxy(),
                    source: ClientError::Tcp {
                        addr: "w".into(),
                        source: io(),
                    },
                },
                true,
                Failure::Unreachable,
            ),
            (
                "reset during CONNECT",
                LinkError::Tunnel(TunnelError::Io {
                    proxy: proxy(),
                    source: io(),
                }),
                true,
                Failure::Unreachable,
            ),
            (
                "407, no credentials",
                auth(AuthError::NoCredentials { offered: offered() }),
                true,
                Failure::Refused,
            ),
            (
                "403 denied",
                LinkError::Tunnel(TunnelError::Denied {
                    proxy: proxy(),
                    target: "s:443".into(),
                    status: 403,
                    reason: "Forbidden".into(),
                    proxy_error: None,
                }),
                true,
                Failure::Refused,
            ),
            (
                "credentials withheld",
                LinkError::CredentialsWithheld {
                    proxy: proxy(),
                    reason: "r".into(),
                },
                true,
                Failure::Refused,
            ),
            (
                "TLS intercepted",
                LinkError::Intercepted {
                    proxy: proxy(),
                    detail: "d".into(),
                },
                true,
                Failure::Refused,
            ),
            (
                "SOCKS5 denied",
                LinkError::Tunnel(TunnelError::SocksDenied {
                    proxy: proxy(),
                    target: "s".into(),
                    rep: 2,
                    meaning: "not allowed",
                }),
                true,
                Failure::Refused,
            ),
            (
                "TLS inside a proxy's tunnel",
                LinkError::Client(tls()),
                true,
                Failure::Refused,
            ),
            (
                "TLS over DIRECT",
                LinkError::Client(tls()),
                false,
                Failure::Other,
            ),
            (
                "a proxy CA file that cannot be read",
                LinkError::Tunnel(TunnelError::Config {
                    proxy: proxy(),
                    reason: "r".into(),
                }),
                true,
                Failure::Other,
            ),
        ];
        for (name, e, via_proxy, want) in cases {
            assert_eq!(e.failure(via_proxy), want, "{name}");
        }
    }

    /// An unanswered demand becomes PROXY_CREDENTIALS_WITHHELD only when the policy withheld.
    #[test]
    fn withheld_demands_have_their_code() {
        let basic_only = || Offered(vec!["Basic".into()]);
        let unsupported = || AuthError::Unsupported {
            offered: basic_only(),
            preference: "Negotiate, NTLM, Digest".into(),
            note: String::new(),
        };
        let tunnel = |source| TunnelError::Auth {
            proxy: proxy(),
            source,
        };
        let cases: Vec<(TunnelError, ProxyAuth, Code)> = vec![
            (
                tunnel(AuthError::NoCredentials {
                    offered: basic_only(),
                }),
                ProxyAuth::Withheld("not allowed".into()),
                Code::PROXY_CREDENTIALS_WITHHELD,
            ),
            (
                tunnel(AuthError::NoCredentials {
                    offered: basic_only(),
                }),
                ProxyAuth::Any,
                Code::PROXY_AUTH_REQUIRED,
            ),
            (
                tunnel(unsupported()),
                ProxyAuth::ChallengeResponse,
                Code::PROXY_CREDENTIALS_WITHHELD,
            ),
            (
                TunnelError::SocksAuthRequired {
                    proxy: proxy(),
                    offered: "username/password".into(),
                },
                ProxyAuth::Withheld("socks".into()),
                Code::PROXY_CREDENTIALS_WITHHELD,
            ),
            (
                TunnelError::Denied {
                    proxy: proxy(),
                    target: "s:443".into(),
                    status: 403,
                    reason: "Forbidden".into(),
                    proxy_error: None,
                },
                ProxyAuth::Withheld("not allowed".into()),
                Code::PROXY_CONNECT_DENIED,
            ),
        ];
        for (e, policy, want) in cases {
            let what = e.to_string();
            let got = withheld(e, &policy);
            assert_eq!(got.code(), want, "{what} under {policy:?}: {got}");
            if want == Code::PROXY_CREDENTIALS_WITHHELD {
                assert!(got.to_string().contains("--credential-hosts"), "{got}");
            }
        }
    }

    #[test]
    fn the_sensor_status_fix_fits_the_failure() {
        let endpoint = Endpoint::parse("https://contososensorapi.example:18443").unwrap();
        let table: Vec<(LinkError, Code, &[&str])> = vec![
            (
                LinkError::Tunnel(TunnelError::Denied {
                    proxy: proxy(),
                    target: "contososensorapi.example:18443".into(),
                    status: 503,
                    reason: "Service Unavailable".into(),
                    proxy_error: Some("ERR_CONNECT_FAIL 111".into()),
                }),
                Code::PROXY_UPSTREAM_FAILED,
                &["ERR_CONNECT_FAIL 111", "port 18443", "w:3128"],
            ),
            (
                LinkError::Tunnel(TunnelError::Denied {
                    proxy: proxy(),
                    target: "contososensorapi.example:18443".into(),
                    status: 403,
                    reason: "Forbidden".into(),
                    proxy_error: None,
                }),
                Code::PROXY_CONNECT_DENIED,
                &["on port 18443"],
            ),
            (
                LinkError::Tunnel(TunnelError::Auth {
                    proxy: proxy(),
                    source: AuthError::NoCredentials {
                        offered: Offered(vec!["Basic".into()]),
                    },
                }),
                Code::PROXY_AUTH_REQUIRED,
                &["uplink sensor proxy set"],
            ),
            (
                LinkError::Client(ClientError::Status {
                    host: "contososensorapi.example".into(),
                    status: 503,
                    code: Code::HTTP_UNEXPECTED_STATUS,
                    message: "m".into(),
                }),
                Code::HTTP_UNEXPECTED_STATUS,
                &["up but cannot take data"],
            ),
            (
                LinkError::Client(ClientError::Tls {
                    host: "contososensorapi.example".into(),
                    reason: "r".into(),
                    code: Code::TLS_UNTRUSTED_ROOT,
                }),
                Code::TLS_UNTRUSTED_ROOT,
                &["re-install from the current bundle"],
            ),
        ];
        for (e, code, words) in table {
            let d = e.diagnosis(&endpoint);
            assert_eq!(d.code, code, "{e}");
            let fix = d.fix();
            for w in words {
                assert!(fix.contains(w), "{e}: {fix:?} lacks {w:?}");
            }
        }
    }
}
