//! The I/O half of a SOCKS5 tunnel: writes what [`crate::socks5`] says to write, buffers the
//! server's answers until its parsers have a value, and bounds the whole exchange by one deadline.
//!
//! Unlike CONNECT there is no second round and no reconnection: SOCKS5 authenticates once, before
//! the request, so a rejected password is final (`PROXY_AUTH_FAILED`) and a refused destination
//! is an answer (`PROXY_CONNECT_DENIED`) that the route must not go around.

use std::time::Duration;

use secrecy::ExposeSecret;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::socks5::{self, Parsed, Socks5Error, Target};
use crate::{Credentials, Tunnel, TunnelError};

/// The name `uplink sensor status` shows for SOCKS5 username/password authentication (RFC 1929).
pub const USER_PASS_SCHEME: &str = "username/password";

/// What to tunnel to through a SOCKS5 proxy, as whom.
#[derive(Debug, Clone)]
pub struct Socks5Exchange<'a> {
    /// The proxy's label for messages (`host:port`).
    pub proxy: &'a str,
    pub target: Target,
    pub port: u16,
    pub credentials: Option<&'a Credentials>,
    /// Bound on the whole exchange.
    pub timeout: Duration,
}

/// Asks the SOCKS5 proxy on `stream` for a tunnel; see the module docs.
pub async fn establish_socks5<S>(
    stream: S,
    x: &Socks5Exchange<'_>,
) -> Result<Tunnel<S>, TunnelError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    tokio::time::timeout(x.timeout, exchange(stream, x))
        .await
        .map_err(|_| TunnelError::Timeout {
            proxy: x.proxy.to_owned(),
            after: x.timeout,
        })?
}

async fn exchange<S>(mut stream: S, x: &Socks5Exchange<'_>) -> Result<Tunnel<S>, TunnelError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let proxy = x.proxy;
    let protocol = |e: Socks5Error| TunnelError::Protocol {
        proxy: proxy.to_owned(),
        reason: e.to_string(),
    };
    let mut buf = Vec::with_capacity(512);
    send(
        &mut stream,
        &socks5::greeting(x.credentials.is_some()),
        proxy,
    )
    .await?;
    let method = read_until(&mut stream, &mut buf, proxy, socks5::parse_method).await?;
    let mut scheme = None;
    match (method, x.credentials) {
        (socks5::NO_AUTH, _) => {}
        (socks5::USER_PASS, Some(c)) => {
            let request =
                socks5::auth_request(&c.user, c.password.expose_secret()).map_err(|e| {
                    TunnelError::Config {
                        proxy: proxy.to_owned(),
                        reason: e.to_string(),
                    }
                })?;
            send(&mut stream, &request, proxy).await?;
            drop(request);
            let accepted =
                read_until(&mut stream, &mut buf, proxy, socks5::parse_auth_reply).await?;
            if !accepted {
                return Err(TunnelError::SocksRejected {
                    proxy: proxy.to_owned(),
                    user: c.user.clone(),
                });
            }
            scheme = Some(USER_PASS_SCHEME);
        }
        (socks5::USER_PASS, None) | (socks5::NO_ACCEPTABLE, None) => {
            return Err(TunnelError::SocksAuthRequired {
                proxy: proxy.to_owned(),
                offered: "username/password".into(),
            })
        }
        (socks5::NO_ACCEPTABLE, Some(_)) => {
            return Err(TunnelError::SocksAuthRequired {
                proxy: proxy.to_owned(),
                offered: "neither no authentication nor username/password (GSSAPI only?)".into(),
            })
        }
        (socks5::GSSAPI, _) => {
            return Err(TunnelError::SocksAuthRequired {
                proxy: proxy.to_owned(),
                offered: "GSSAPI, which uplink does not speak over SOCKS5".into(),
            })
        }
        (other, _) => {
            return Err(TunnelError::Protocol {
                proxy: proxy.to_owned(),
                reason: format!(
                    "it chose the authentication method {other:#04x}, which uplink did not offer"
                ),
            })
        }
    }
    let request = socks5::connect_request(&x.target, x.port).map_err(protocol)?;
    send(&mut stream, &request, proxy).await?;
    let reply = read_until(&mut stream, &mut buf, proxy, socks5::parse_reply).await?;
    let target = match &x.target {
        Target::Domain(d) => format!("{d}:{}", x.port),
        Target::Ip(ip) if ip.is_ipv6() => format!("[{ip}]:{}", x.port),
        Target::Ip(ip) => format!("{ip}:{}", x.port),
    };
    if reply.rep != 0 {
        return Err(TunnelError::SocksDenied {
            proxy: proxy.to_owned(),
            target,
            rep: reply.rep,
            meaning: reply.meaning(),
        });
    }
    if !buf.is_empty() {
        // A TLS server never speaks first: bytes here mean the proxy is not tunnelling.
        return Err(TunnelError::Protocol {
            proxy: proxy.to_owned(),
            reason: format!(
                "it sent {} bytes after its SOCKS5 reply, before the tunnel was used",
                buf.len()
            ),
        });
    }
    tracing::debug!(proxy, bound = ?reply.bound, "SOCKS5 tunnel to {target}");
    Ok(Tunnel {
        stream,
        scheme,
        rounds: u32::from(scheme.is_some()),
        reconnected: None,
    })
}

async fn send<S: AsyncWrite + Unpin>(
    stream: &mut S,
    bytes: &[u8],
    proxy: &str,
) -> Result<(), TunnelError> {
    async {
        stream.write_all(bytes).await?;
        stream.flush().await
    }
    .await
    .map_err(|source| TunnelError::Io {
        proxy: proxy.to_owned(),
        source,
    })
}

/// Reads until `parse` has a value; removes the bytes it used from `buf`.
async fn read_until<S, T>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    proxy: &str,
    parse: fn(&[u8]) -> Result<Parsed<T>, Socks5Error>,
) -> Result<T, TunnelError>
where
    S: AsyncRead + Unpin,
{
    let mut chunk = [0u8; 512];
    loop {
        match parse(buf) {
            Ok(Parsed::Done(value, used)) => {
                buf.drain(..used);
                return Ok(value);
            }
            Ok(Parsed::Incomplete) => {}
            Err(e) => {
                return Err(TunnelError::Protocol {
                    proxy: proxy.to_owned(),
                    reason: e.to_string(),
                })
            }
        }
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|source| TunnelError::Io {
                proxy: proxy.to_owned(),
                source,
            })?;
        if n == 0 {
            return Err(TunnelError::Io {
                proxy: proxy.to_owned(),
                source: std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    if buf.is_empty() {
                        "it closed the connection without a SOCKS5 answer"
                    } else {
                        "it closed the connection in the middle of a SOCKS5 answer"
                    },
                ),
            });
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}
