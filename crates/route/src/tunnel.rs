//! One candidate's tunnel, the same for the sensor's walk ([`crate::walk`]) and the analyzer's
//! probe (`uplink-check`): over a TCP connection to the proxy, CONNECT for an HTTP proxy, TLS
//! to the proxy then CONNECT inside it for an HTTPS proxy (authentication rounds by
//! `uplink-tunnel`, redialling the same address once where the scheme needs it), or the SOCKS5
//! exchange. Credentials go only by the schemes [`ProxyAuth`] allows. Bounded by the caller's
//! timeout, every round and redial included. What comes after (TLS to the service) is the
//! caller's: the sensor trusts only its workspace CA, the analyzer records the presented chain.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use uplink_proxy::trust::ProxyAuth;
use uplink_tunnel::socks5::Target;
use uplink_tunnel::{Credentials, Exchange, ProxyKind, ProxyTls, ProxyUrl, TunnelError};

/// A byte stream the tunnel hands back (TCP, or TLS to an HTTPS proxy).
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A tunnel to the target, and how the proxy let it through.
pub struct Opened {
    pub stream: Box<dyn Io>,
    /// The authentication scheme that succeeded, if the proxy asked for one.
    pub scheme: Option<&'static str>,
    /// Authentication rounds answered.
    pub rounds: u32,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("scheme", &self.scheme)
            .field("rounds", &self.rounds)
            .finish_non_exhaustive()
    }
}

/// What to tunnel to, through which proxy, as whom.
#[derive(Debug, Clone, Copy)]
pub struct Through<'a> {
    pub url: &'a ProxyUrl,
    pub credentials: Option<&'a Credentials>,
    /// Which schemes the credentials may go by (a discovered proxy never gets Basic).
    pub auth: &'a ProxyAuth,
    /// The CA file trusted for an HTTPS proxy's certificate (None: the system roots).
    pub proxy_ca: Option<&'a str>,
    pub host: &'a str,
    pub port: u16,
    /// For `socks5://` (this machine resolves the target): the target's address, resolved by
    /// the caller. `socks5h://` and CONNECT pass the name.
    pub resolved: Option<IpAddr>,
    /// Bound on the whole exchange.
    pub timeout: Duration,
}

/// Opens the tunnel over `tcp`, a connection to `t.url`'s proxy.
pub async fn open(tcp: TcpStream, t: &Through<'_>) -> Result<Opened, TunnelError> {
    let label = t.url.host_port();
    let addr = tcp.peer_addr().map_err(|source| TunnelError::Io {
        proxy: label.clone(),
        source,
    })?;
    let exchange = Exchange {
        proxy: &label,
        host: t.host,
        port: t.port,
        credentials: t.credentials,
        auth: t.auth.auth_options(),
        timeout: t.timeout,
    };
    let opened = |stream: Box<dyn Io>, scheme, rounds| Opened {
        stream,
        scheme,
        rounds,
    };
    match t.url.kind() {
        ProxyKind::Http => {
            let redial = move || TcpStream::connect(addr);
            let tunnel = uplink_tunnel::establish_with(tcp, redial, &exchange).await?;
            Ok(opened(
                Box::new(tunnel.stream),
                tunnel.scheme,
                tunnel.rounds,
            ))
        }
        ProxyKind::Https => {
            let proxy_tls = ProxyTls::new(t.proxy_ca.map(Path::new), &label)?;
            let tls_host = t.url.host.as_str();
            let stream = tokio::time::timeout(t.timeout, proxy_tls.connect(tcp, tls_host, &label))
                .await
                .map_err(|_| TunnelError::Timeout {
                    proxy: label.clone(),
                    after: t.timeout,
                })??;
            let redial = || async {
                let tcp = TcpStream::connect(addr).await?;
                let s = proxy_tls.connect(tcp, tls_host, &label).await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(s)
            };
            let tunnel = uplink_tunnel::establish_with(stream, redial, &exchange).await?;
            Ok(opened(
                Box::new(tunnel.stream),
                tunnel.scheme,
                tunnel.rounds,
            ))
        }
        ProxyKind::Socks5 { remote_dns } => {
            let target = match (remote_dns, t.resolved) {
                (false, Some(ip)) => Target::Ip(ip),
                _ => Target::Domain(t.host.to_owned()),
            };
            let x = uplink_tunnel::Socks5Exchange {
                proxy: &label,
                target,
                port: t.port,
                credentials: t.credentials,
                timeout: t.timeout,
            };
            let tunnel = uplink_tunnel::establish_socks5(tcp, &x).await?;
            Ok(opened(
                Box::new(tunnel.stream),
                tunnel.scheme,
                tunnel.rounds,
            ))
        }
    }
}
