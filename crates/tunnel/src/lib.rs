//! Tunnels through HTTP proxies.
//!
//! [`connect`] holds the pure half: the CONNECT request's bytes and a parser for the proxy's
//! reply that returns `Incomplete`, a reply, or an error. [`establish`] is the thin I/O half: it
//! writes the request, buffers the reply (bounded in size and time) and calls the parser.
//!
//! Proxy authentication here is Basic, sent with the first request (as curl does when given a
//! user). The multi-round schemes (Digest, NTLM, Negotiate) plug in as a state machine over the
//! same parser; see the proxy-authentication issue.

pub mod connect;
pub mod url;

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use uplink_diag::{Code, Diagnose};

pub use url::{ProxyUrl, UrlError};

/// A proxy user and password. The password is zeroed on drop and never printed.
#[derive(Clone)]
pub struct Credentials {
    /// As given: `DOMAIN\user`, `user@domain` or `user`.
    pub user: String,
    pub password: SecretString,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials {
            user: user.into(),
            password: SecretString::from(password.into()),
        }
    }

    /// The `Proxy-Authorization` value for Basic (RFC 7617): base64 of `user:password`, UTF-8.
    pub fn basic(&self) -> SecretString {
        use base64::Engine;
        let raw = format!("{}:{}", self.user, self.password.expose_secret());
        SecretString::from(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        ))
    }
}

/// Why a tunnel could not be set up. Never contains a credential.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    #[error("the proxy {proxy} requires authentication (it offers: {offered}); configure a proxy user and password")]
    AuthRequired { proxy: String, offered: String },
    #[error("the proxy {proxy} rejected the credentials for user {user} (it offers: {offered}); check the user name (DOMAIN\\user) and password")]
    AuthFailed {
        proxy: String,
        user: String,
        offered: String,
    },
    #[error("the proxy {proxy} refused to tunnel to {target}: {status} {reason}")]
    Denied {
        proxy: String,
        target: String,
        status: u16,
        reason: String,
    },
    #[error("the proxy {proxy} sent an invalid reply: {reason}")]
    Protocol { proxy: String, reason: String },
    #[error("the proxy {proxy} did not answer CONNECT within {after:?}")]
    Timeout { proxy: String, after: Duration },
    #[error("the connection to the proxy {proxy} failed during CONNECT: {source}")]
    Io {
        proxy: String,
        source: std::io::Error,
    },
}

impl Diagnose for TunnelError {
    fn code(&self) -> Code {
        match self {
            TunnelError::AuthRequired { .. } => Code::PROXY_AUTH_REQUIRED,
            TunnelError::AuthFailed { .. } => Code::PROXY_AUTH_FAILED,
            TunnelError::Denied { .. } => Code::PROXY_CONNECT_DENIED,
            TunnelError::Protocol { .. } => Code::PROXY_PROTOCOL_ERROR,
            TunnelError::Timeout { .. } => Code::TIMEOUT,
            TunnelError::Io { .. } => Code::PROXY_PROTOCOL_ERROR,
        }
    }
}

/// Asks the proxy on `stream` to tunnel to `host:port`; returns the stream, now a tunnel.
pub async fn establish<S>(
    mut stream: S,
    proxy: &str,
    host: &str,
    port: u16,
    credentials: Option<&Credentials>,
    timeout: Duration,
) -> Result<S, TunnelError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let auth = credentials.map(Credentials::basic);
    let request = connect::request(host, port, auth.as_ref().map(|a| a.expose_secret()));
    let io = |source| TunnelError::Io {
        proxy: proxy.to_owned(),
        source,
    };
    let exchange = async {
        stream.write_all(&request).await.map_err(io)?;
        stream.flush().await.map_err(io)?;
        let mut buf = Vec::with_capacity(1024);
        loop {
            let mut chunk = [0u8; 2048];
            let n = stream.read(&mut chunk).await.map_err(io)?;
            if n == 0 {
                return Err(TunnelError::Protocol {
                    proxy: proxy.to_owned(),
                    reason: if buf.is_empty() {
                        "it closed the connection without a reply".into()
                    } else {
                        "it closed the connection in the middle of its reply".into()
                    },
                });
            }
            buf.extend_from_slice(&chunk[..n]);
            match connect::parse_reply(&buf) {
                Ok(connect::Parsed::Incomplete) => continue,
                Ok(connect::Parsed::Reply(reply)) => return Ok(reply),
                Err(e) => {
                    return Err(TunnelError::Protocol {
                        proxy: proxy.to_owned(),
                        reason: e.to_string(),
                    })
                }
            }
        }
    };
    let reply = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| TunnelError::Timeout {
            proxy: proxy.to_owned(),
            after: timeout,
        })??;
    match reply.status {
        200..=299 => Ok(stream),
        407 => {
            let offered = if reply.auth_schemes.is_empty() {
                "no scheme".to_owned()
            } else {
                reply.auth_schemes.join(", ")
            };
            match credentials {
                None => Err(TunnelError::AuthRequired {
                    proxy: proxy.to_owned(),
                    offered,
                }),
                Some(c) => Err(TunnelError::AuthFailed {
                    proxy: proxy.to_owned(),
                    user: c.user.clone(),
                    offered,
                }),
            }
        }
        status => Err(TunnelError::Denied {
            proxy: proxy.to_owned(),
            target: format!("{host}:{port}"),
            status,
            reason: reply.reason,
        }),
    }
}
