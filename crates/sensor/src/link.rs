//! Opening a connection to the service along a route: TCP (to the service or to the proxy), then
//! CONNECT through the proxy, then TLS trusting only the workspace CA.

use std::time::Duration;

use uplink_client::{dial_direct, ClientError, Connection, Endpoint, TlsSettings};
use uplink_diag::{Code, Diagnose};
use uplink_tunnel::TunnelError;

use crate::config::Route;

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

/// Opens a TLS connection to `endpoint` along `route`.
pub async fn open(
    endpoint: &Endpoint,
    route: &Route,
    tls: &TlsSettings,
    timeout: Duration,
) -> Result<Connection, LinkError> {
    let attempt = async {
        match route {
            Route::Direct => {
                let tcp = dial_direct(&endpoint.host, endpoint.port, timeout).await?;
                Ok(Connection::handshake(tcp, endpoint, tls).await?)
            }
            Route::Proxy { url, credentials } => {
                let proxy = url.host_port();
                let tcp = dial_direct(&url.host, url.port, timeout)
                    .await
                    .map_err(|source| LinkError::ProxyDial {
                        proxy: proxy.clone(),
                        source,
                    })?;
                let tunnel = uplink_tunnel::establish(
                    tcp,
                    &proxy,
                    &endpoint.host,
                    endpoint.port,
                    credentials.as_ref(),
                    timeout,
                )
                .await?;
                match Connection::handshake(tunnel, endpoint, tls).await {
                    Ok(c) => Ok(c),
                    // Only the workspace CA is trusted; through a proxy, a certificate from another
                    // issuer means the proxy terminated TLS itself.
                    Err(e) if e.code() == Code::TLS_UNTRUSTED_ROOT => Err(LinkError::Intercepted {
                        proxy,
                        detail: e.to_string(),
                    }),
                    Err(e) => Err(e.into()),
                }
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
