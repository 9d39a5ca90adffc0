//! Opening a connection to the service along a route: TCP (to the service or to a proxy), then
//! the proxy's tunnel — CONNECT for an HTTP proxy, TLS to the proxy then CONNECT inside it for an
//! HTTPS proxy, the SOCKS5 exchange for a SOCKS5 proxy — then TLS trusting only the workspace CA.
//!
//! [`connect_route`] walks the route's candidates in order (proxies the bad-proxy cache is
//! skipping go last). It moves on to the next candidate only when a *proxy could not be reached*
//! — refused, unreachable, timed out, not speaking HTTP. A proxy that answers and refuses (wrong
//! password, host denied) is an answer: falling back to DIRECT then would hide the problem, and
//! browsers do not do it either.

use std::path::Path;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};
use uplink_client::{dial_direct, ClientError, Connection, Endpoint, TlsSettings};
use uplink_diag::{Code, Diagnose};
use uplink_proxy::badcache::BadProxies;
use uplink_proxy::{Candidate, Explanation};
use uplink_tunnel::socks5::Target;
use uplink_tunnel::{Credentials, ProxyKind, ProxyTls, ProxyUrl, TunnelError};

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
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("{what} timed out after {after:?}")]
    Timeout { what: &'static str, after: Duration },
}

impl Diagnose for LinkError {
    fn code(&self) -> Code {
        match self {
            LinkError::Client(e) => e.code(),
            LinkError::Tunnel(e) => e.code(),
            LinkError::ProxyDial { source, .. } => source.code(),
            LinkError::Intercepted { .. } => Code::TLS_INTERCEPTED,
            LinkError::Config(_) => Code::CONFIG_INVALID,
            LinkError::Timeout { .. } => Code::TIMEOUT,
        }
    }
}

impl LinkError {
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
                            code: Code::TLS_HANDSHAKE_FAILED,
                            ..
                        }
                )
        )
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
            } => {
                through_proxy(
                    endpoint,
                    url,
                    credentials.as_ref(),
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

/// Dials the proxy `url`, opens its tunnel to the endpoint, and does the workspace TLS inside.
async fn through_proxy(
    endpoint: &Endpoint,
    url: &ProxyUrl,
    credentials: Option<&Credentials>,
    proxy_ca: Option<&str>,
    tls: &TlsSettings,
    timeout: Duration,
) -> Result<(Connection, Option<&'static str>), LinkError> {
    let proxy = url.host_port();
    let dial = || async {
        dial_direct(&url.host, url.port, timeout)
            .await
            .map_err(|source| LinkError::ProxyDial {
                proxy: proxy.clone(),
                source,
            })
    };
    match url.kind() {
        ProxyKind::Http => {
            let tcp = dial().await?;
            let redial = || dial_direct(&url.host, url.port, timeout);
            let tunnel = uplink_tunnel::establish(
                tcp,
                redial,
                &proxy,
                &endpoint.host,
                endpoint.port,
                credentials,
                timeout,
            )
            .await?;
            service_tls(tunnel.stream, tunnel.scheme, endpoint, tls, &proxy).await
        }
        ProxyKind::Https => {
            let proxy_tls = ProxyTls::new(proxy_ca.map(Path::new), &proxy)?;
            let tcp = dial().await?;
            let stream = proxy_tls.connect(tcp, &url.host, &proxy).await?;
            let redial = || async {
                let tcp = dial_direct(&url.host, url.port, timeout).await?;
                let s = proxy_tls.connect(tcp, &url.host, &proxy).await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(s)
            };
            let tunnel = uplink_tunnel::establish(
                stream,
                redial,
                &proxy,
                &endpoint.host,
                endpoint.port,
                credentials,
                timeout,
            )
            .await?;
            service_tls(tunnel.stream, tunnel.scheme, endpoint, tls, &proxy).await
        }
        ProxyKind::Socks5 { remote_dns } => {
            let target = if remote_dns {
                Target::Domain(endpoint.host.clone())
            } else {
                // socks5:// (curl's meaning): this machine resolves the name.
                let addrs = uplink_client::resolve(&endpoint.host, endpoint.port).await?;
                Target::Ip(addrs[0].ip())
            };
            let tcp = dial().await?;
            let exchange = uplink_tunnel::Socks5Exchange {
                proxy: &proxy,
                target,
                port: endpoint.port,
                credentials,
                timeout,
            };
            let tunnel = uplink_tunnel::establish_socks5(tcp, &exchange).await?;
            service_tls(tunnel.stream, tunnel.scheme, endpoint, tls, &proxy).await
        }
    }
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
        // Only the workspace CA is trusted; through a proxy, a certificate from another
        // issuer means the proxy terminated TLS itself.
        Err(e) if e.code() == Code::TLS_UNTRUSTED_ROOT => Err(LinkError::Intercepted {
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
        return Err(crate::config::ConfigError::NoRoute(problem.clone()).into());
    }
    let ordered = bad.order(
        explanation.route.clone(),
        Candidate::proxy_key,
        Instant::now(),
    );
    let mut skipped: Vec<String> = Vec::new();
    let mut last = None;
    for candidate in ordered {
        match open(endpoint, &candidate, tls, timeout).await {
            Ok((conn, proxy_auth)) => {
                if let Some(key) = candidate.proxy_key() {
                    bad.mark_good(&key);
                }
                let note = (!skipped.is_empty()).then(|| {
                    format!(
                        "{} could not be reached; using {candidate}",
                        skipped.join(", ")
                    )
                });
                return Ok(Connected {
                    conn,
                    route: candidate.to_string(),
                    note,
                    proxy_auth,
                });
            }
            Err(e) if e.proxy_unreachable() => {
                if let Some(key) = candidate.proxy_key() {
                    let wait = bad.mark_bad(&key, Instant::now());
                    tracing::warn!(proxy = %key, code = %e.code(), skip_for = ?wait, "proxy unreachable; trying the next route candidate");
                }
                skipped.push(format!("{candidate} ({})", e.code()));
                last = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last
        .unwrap_or_else(|| crate::config::ConfigError::NoRoute("the route is empty".into()).into()))
}
