//! Tunnels through HTTP proxies.
//!
//! [`connect`] holds the pure half: the CONNECT request's bytes, a parser for the proxy's reply
//! that returns `Incomplete`, a reply, or an error, and the framing of a 407's body.
//! Authentication is `uplink-proxyauth`'s sans-IO [`Authenticator`]: on each 407 it is handed
//! the challenges and says what to send next. [`establish`] is the thin I/O half: it writes each
//! CONNECT, buffers each reply (bounded in size), reads a 407's body off the connection so the
//! next round can use it, and bounds the whole exchange by one deadline.
//!
//! Connections: the rounds run on one TCP connection, which NTLM and Negotiate require (they
//! authenticate the connection, not the request). When the proxy closes the connection after a
//! 407, [`establish`] dials again — once — only if the next message does not depend on the
//! closed connection: Basic and Digest credentials, or the first message of an NTLM handshake.
//! Mid-NTLM it stops with a protocol error that says the proxy must keep the connection open.
//!
//! Proxy kinds ([`url::ProxyKind`]): an HTTP proxy (CONNECT over TCP); an HTTPS proxy (the same
//! CONNECT inside TLS to the proxy, [`tls`]); SOCKS5 ([`socks5`], the pure codec, and
//! [`socks`], its I/O half). The caller dials and picks; every path ends in a [`Tunnel`].

pub mod connect;
pub mod socks;
pub mod socks5;
#[cfg(feature = "tls")]
pub mod tls;

use std::future::Future;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use uplink_diag::{Code, Diagnose};
use uplink_proxyauth::{AuthError, Authenticator};

pub use socks::{establish_socks5, Socks5Exchange};
#[cfg(feature = "tls")]
pub use tls::ProxyTls;
pub use uplink_proxyauth::{Options as AuthOptions, Scheme};
/// The URL types' module, under its old path.
pub use uplink_url as url;
/// Proxy URLs and credentials live in `uplink-url` (pure); re-exported for the tunnel's callers.
pub use uplink_url::{Credentials, ProxyKind, ProxyUrl, UrlError};

/// The `Proxy-Authorization` value for Basic (RFC 7617): base64 of `user:password`, UTF-8.
pub fn basic(credentials: &Credentials) -> SecretString {
    uplink_proxyauth::basic(&credentials.user, &credentials.password)
}

/// Why a tunnel could not be set up. Never contains a credential.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    /// Authentication ended without success: required, unsupported, rejected, or endless.
    #[error("the proxy {proxy} {source}")]
    Auth {
        proxy: String,
        #[source]
        source: AuthError,
    },
    /// The proxy answered CONNECT with an error status: a 4xx is its policy (denied), a 5xx
    /// says it could not reach the target itself (`PROXY_UPSTREAM_FAILED`).
    #[error("the proxy {proxy} {} {target}: {status} {reason}{}", denied_verb(*.status), quoted(.proxy_error))]
    Denied {
        proxy: String,
        target: String,
        status: u16,
        reason: String,
        /// The proxy's own name for the error (Squid's `X-Squid-Error`), when it sent one.
        proxy_error: Option<String>,
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
    /// The TLS handshake with an HTTPS proxy failed (untrusted, expired or misnamed certificate,
    /// or no TLS there).
    #[error("TLS to the proxy {proxy} failed: {reason}")]
    ProxyTls {
        proxy: String,
        reason: String,
        code: Code,
    },
    /// The proxy settings cannot be used as they are (a CA file that cannot be read, a user name
    /// SOCKS5 cannot carry).
    #[error("the proxy {proxy} cannot be used: {reason}")]
    Config { proxy: String, reason: String },
    #[error("the SOCKS5 proxy {proxy} requires authentication (it accepts {offered}); configure a proxy user and password")]
    SocksAuthRequired { proxy: String, offered: String },
    #[error("the SOCKS5 proxy {proxy} rejected the username/password credentials for user {user}; check the user name and password")]
    SocksRejected { proxy: String, user: String },
    #[error("the SOCKS5 proxy {proxy} refused to tunnel to {target}: {meaning} (reply {rep})")]
    SocksDenied {
        proxy: String,
        target: String,
        rep: u8,
        meaning: &'static str,
    },
}

fn denied_verb(status: u16) -> &'static str {
    if status >= 500 {
        "could not reach"
    } else {
        "refused to tunnel to"
    }
}

fn quoted(proxy_error: &Option<String>) -> String {
    proxy_error
        .as_ref()
        .map(|e| format!(" (the proxy says: {e})"))
        .unwrap_or_default()
}

/// RFC 1928 replies that say the SOCKS server could not reach the target (network or host
/// unreachable, connection refused), as opposed to a refusal by its rules.
pub fn socks_upstream_failure(rep: u8) -> bool {
    matches!(rep, 3..=5)
}

impl TunnelError {
    /// The peer's own words for a refusal, for the fix: Squid's `X-Squid-Error`, the SOCKS
    /// reply's meaning.
    pub fn proxy_reason(&self) -> Option<String> {
        match self {
            TunnelError::Denied {
                proxy_error,
                status,
                reason,
                ..
            } => Some(match proxy_error {
                Some(e) => format!("{status} {reason}, {e}"),
                None => format!("{status} {reason}"),
            }),
            TunnelError::SocksDenied { rep, meaning, .. } => {
                Some(format!("SOCKS reply {rep}: {meaning}"))
            }
            _ => None,
        }
    }
}

impl Diagnose for TunnelError {
    fn code(&self) -> Code {
        match self {
            TunnelError::Auth { source, .. } => source.code(),
            TunnelError::Denied { status, .. } if *status >= 500 => Code::PROXY_UPSTREAM_FAILED,
            TunnelError::Denied { .. } => Code::PROXY_CONNECT_DENIED,
            TunnelError::Protocol { .. } => Code::PROXY_PROTOCOL_ERROR,
            TunnelError::Timeout { .. } => Code::PROXY_TIMEOUT,
            TunnelError::Io { .. } => Code::PROXY_PROTOCOL_ERROR,
            TunnelError::ProxyTls { code, .. } => *code,
            TunnelError::Config { .. } => Code::CONFIG_INVALID,
            TunnelError::SocksAuthRequired { .. } => Code::PROXY_AUTH_REQUIRED,
            TunnelError::SocksRejected { .. } => Code::PROXY_AUTH_FAILED,
            TunnelError::SocksDenied { rep, .. } if socks_upstream_failure(*rep) => {
                Code::PROXY_UPSTREAM_FAILED
            }
            TunnelError::SocksDenied { .. } => Code::PROXY_CONNECT_DENIED,
        }
    }
}

/// A tunnel, and how it was authenticated.
#[derive(Debug)]
pub struct Tunnel<S> {
    /// The connection, now a tunnel to the target.
    pub stream: S,
    /// The authentication scheme that succeeded (`Basic`, `Digest`, `NTLM`, `Negotiate`, SOCKS5's
    /// `username/password`), or None when the proxy asked for none. This is what `uplink sensor status` and heartbeats show.
    pub scheme: Option<&'static str>,
    /// 407 replies answered.
    pub rounds: u32,
    /// Set when the proxy closed the connection after a 407 and a new one was dialled: why.
    pub reconnected: Option<String>,
}

/// What to tunnel to, through which proxy, as whom.
#[derive(Debug, Clone)]
pub struct Exchange<'a> {
    /// The proxy's label for messages (`host:port`).
    pub proxy: &'a str,
    pub host: &'a str,
    pub port: u16,
    pub credentials: Option<&'a Credentials>,
    pub auth: AuthOptions,
    /// Bound on the whole exchange: every round, every body read, any reconnection.
    pub timeout: Duration,
}

/// Asks the proxy on `stream` to tunnel to `host:port`, authenticating as the proxy asks with
/// the default [`AuthOptions`]. `redial` opens a new connection to the same proxy; it is called
/// at most once (see the module docs).
pub async fn establish<S, D, F, E>(
    stream: S,
    redial: D,
    proxy: &str,
    host: &str,
    port: u16,
    credentials: Option<&Credentials>,
    timeout: Duration,
) -> Result<Tunnel<S>, TunnelError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    D: FnMut() -> F,
    F: Future<Output = Result<S, E>>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let exchange = Exchange {
        proxy,
        host,
        port,
        credentials,
        auth: AuthOptions::default(),
        timeout,
    };
    establish_with(stream, redial, &exchange).await
}

/// [`establish`] with explicit options.
pub async fn establish_with<S, D, F, E>(
    stream: S,
    redial: D,
    x: &Exchange<'_>,
) -> Result<Tunnel<S>, TunnelError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    D: FnMut() -> F,
    F: Future<Output = Result<S, E>>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    tokio::time::timeout(x.timeout, rounds(stream, redial, x))
        .await
        .map_err(|_| TunnelError::Timeout {
            proxy: x.proxy.to_owned(),
            after: x.timeout,
        })?
}

/// How one CONNECT round ended, when it did not end the exchange.
enum Round {
    Reply(connect::Reply),
    /// The connection was closed or reset before any byte of a reply.
    ClosedBeforeReply(std::io::Error),
}

async fn rounds<S, D, F, E>(
    mut stream: S,
    mut redial: D,
    x: &Exchange<'_>,
) -> Result<Tunnel<S>, TunnelError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    D: FnMut() -> F,
    F: Future<Output = Result<S, E>>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let proxy = x.proxy;
    let io = |source| TunnelError::Io {
        proxy: proxy.to_owned(),
        source,
    };
    let protocol = |reason: String| TunnelError::Protocol {
        proxy: proxy.to_owned(),
        reason,
    };
    let target = uplink_url::host_port(x.host, x.port);
    let mut auth = Authenticator::new(
        x.credentials.map(|c| (c.user.clone(), c.password.clone())),
        target.clone(),
        x.auth.clone(),
    );
    auth.set_proxy_host(uplink_proxyauth::negotiate::proxy_host(proxy));
    let mut authorization: Option<SecretString> = auth.initial();
    // Whether `authorization` may be re-sent on a new connection.
    let mut fresh_ok = true;
    let mut reconnected: Option<String> = None;
    let mut buf: Vec<u8> = Vec::with_capacity(2048);
    loop {
        let request = connect::request(
            x.host,
            x.port,
            authorization.as_ref().map(|a| a.expose_secret()),
        );
        let round = match send_and_read(&mut stream, &request, &mut buf, proxy).await? {
            Round::Reply(r) => r,
            Round::ClosedBeforeReply(e) => {
                // The proxy closed the connection after its 407 without saying so.
                if auth.rounds() == 0 || !fresh_ok || reconnected.is_some() {
                    return Err(io(e));
                }
                let why = format!(
                    "the proxy closed the connection after its 407 ({e}); dialled again to send the {} credentials",
                    auth.scheme().map_or("", Scheme::name)
                );
                stream = redial_once(&mut redial, proxy).await?;
                buf.clear();
                reconnected = Some(why);
                match send_and_read(&mut stream, &request, &mut buf, proxy).await? {
                    Round::Reply(r) => r,
                    Round::ClosedBeforeReply(e) => return Err(io(e)),
                }
            }
        };
        match round.status {
            200..=299 => {
                if !buf.is_empty() {
                    // A TLS server never speaks first: bytes here mean the proxy is not tunnelling.
                    return Err(protocol(format!(
                        "it sent {} bytes after its {} reply, before the tunnel was used",
                        buf.len(),
                        round.status
                    )));
                }
                return Ok(Tunnel {
                    stream,
                    scheme: auth.scheme().map(Scheme::name),
                    rounds: auth.rounds(),
                    reconnected,
                });
            }
            407 => {
                // Negotiate may ask the KDC for a ticket (blocking I/O in GSSAPI): off the
                // async thread, and still under the exchange's deadline.
                let challenges = round.challenges.clone();
                let (back, answer) = tokio::task::spawn_blocking(move || {
                    let answer = auth.respond(&challenges);
                    (auth, answer)
                })
                .await
                .map_err(|e| protocol(format!("the authentication step failed: {e}")))?;
                auth = back;
                let answer = answer.map_err(|source| TunnelError::Auth {
                    proxy: proxy.to_owned(),
                    source,
                })?;
                let reusable = round.keep_alive
                    && discard_body(&mut stream, &mut buf, round.body, proxy).await?;
                fresh_ok = answer.fresh_connection_ok;
                if !reusable {
                    if !answer.fresh_connection_ok {
                        return Err(protocol(format!(
                            "it closed the connection in the middle of the {0} handshake; {0} authenticates one connection, so the proxy must keep it open after a 407 (check its persistent-connection settings)",
                            answer.scheme
                        )));
                    }
                    if reconnected.is_some() {
                        return Err(protocol(
                            "it closed the connection after a 407 again, after a reconnection"
                                .into(),
                        ));
                    }
                    let why = format!(
                        "the proxy closed the connection after its 407; dialled again to send the {} credentials",
                        answer.scheme
                    );
                    tracing::debug!(proxy, scheme = answer.scheme.name(), "{why}");
                    stream = redial_once(&mut redial, proxy).await?;
                    buf.clear();
                    reconnected = Some(why);
                }
                authorization = Some(answer.authorization);
            }
            status => {
                return Err(TunnelError::Denied {
                    proxy: proxy.to_owned(),
                    target,
                    status,
                    reason: round.reason,
                    proxy_error: round.proxy_error,
                })
            }
        }
    }
}

async fn redial_once<S, D, F, E>(redial: &mut D, proxy: &str) -> Result<S, TunnelError>
where
    D: FnMut() -> F,
    F: Future<Output = Result<S, E>>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    redial().await.map_err(|e| TunnelError::Io {
        proxy: proxy.to_owned(),
        source: std::io::Error::other(e),
    })
}

fn is_closed(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
    )
}

/// Writes `request` and reads one reply head; the head is removed from `buf`, anything after
/// it stays there.
async fn send_and_read<S>(
    stream: &mut S,
    request: &[u8],
    buf: &mut Vec<u8>,
    proxy: &str,
) -> Result<Round, TunnelError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let io = |source| TunnelError::Io {
        proxy: proxy.to_owned(),
        source,
    };
    let protocol = |reason: String| TunnelError::Protocol {
        proxy: proxy.to_owned(),
        reason,
    };
    if let Err(e) = async {
        stream.write_all(request).await?;
        stream.flush().await
    }
    .await
    {
        return if is_closed(&e) && buf.is_empty() {
            Ok(Round::ClosedBeforeReply(e))
        } else {
            Err(io(e))
        };
    }
    let mut chunk = [0u8; 4096];
    loop {
        match connect::parse_reply(buf) {
            Ok(connect::Parsed::Reply(reply)) => {
                buf.drain(..reply.head_len);
                return Ok(Round::Reply(reply));
            }
            Ok(connect::Parsed::Incomplete) => {}
            Err(e) => return Err(protocol(e.to_string())),
        }
        let n = match stream.read(&mut chunk).await {
            Ok(n) => n,
            Err(e) if is_closed(&e) && buf.is_empty() => return Ok(Round::ClosedBeforeReply(e)),
            Err(e) => return Err(io(e)),
        };
        if n == 0 {
            if buf.is_empty() {
                return Ok(Round::ClosedBeforeReply(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "it closed the connection without a reply",
                )));
            }
            return Err(protocol(
                "it closed the connection in the middle of its reply".into(),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Reads a 407's body off the connection. True if the connection can carry the next round;
/// false if the body runs until the proxy closes, or the proxy closed it.
async fn discard_body<S>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    body: connect::Body,
    proxy: &str,
) -> Result<bool, TunnelError>
where
    S: AsyncRead + Unpin,
{
    let protocol = |e: connect::ReplyError| TunnelError::Protocol {
        proxy: proxy.to_owned(),
        reason: e.to_string(),
    };
    let mut chunk = [0u8; 4096];
    match body {
        connect::Body::None => Ok(true),
        connect::Body::UntilClose => Ok(false),
        connect::Body::Length(n) => {
            if n > connect::MAX_BODY {
                return Err(protocol(connect::ReplyError::BodyTooLarge));
            }
            let n = n as usize;
            if buf.len() >= n {
                buf.drain(..n);
                return Ok(true);
            }
            let mut remaining = n - buf.len();
            buf.clear();
            while remaining > 0 {
                let want = remaining.min(chunk.len());
                match stream.read(&mut chunk[..want]).await {
                    Ok(0) => return Ok(false),
                    Ok(got) => remaining -= got,
                    Err(e) if is_closed(&e) => return Ok(false),
                    Err(e) => {
                        return Err(TunnelError::Io {
                            proxy: proxy.to_owned(),
                            source: e,
                        })
                    }
                }
            }
            Ok(true)
        }
        connect::Body::Chunked => loop {
            match connect::chunked_len(buf).map_err(protocol)? {
                Some(len) => {
                    buf.drain(..len);
                    return Ok(true);
                }
                None => match stream.read(&mut chunk).await {
                    Ok(0) => return Ok(false),
                    Ok(got) => buf.extend_from_slice(&chunk[..got]),
                    Err(e) if is_closed(&e) => return Ok(false),
                    Err(e) => {
                        return Err(TunnelError::Io {
                            proxy: proxy.to_owned(),
                            source: e,
                        })
                    }
                },
            }
        },
    }
}

#[cfg(test)]
mod code_tests {
    use super::*;

    #[test]
    fn refusals_and_upstream_failures_have_their_own_codes() {
        let denied = |status: u16, proxy_error: Option<&str>| TunnelError::Denied {
            proxy: "p:3128".into(),
            target: "ws:18443".into(),
            status,
            reason: "R".into(),
            proxy_error: proxy_error.map(str::to_owned),
        };
        let socks = |rep: u8| TunnelError::SocksDenied {
            proxy: "p:1080".into(),
            target: "ws:18443".into(),
            rep,
            meaning: socks5::reply_meaning(rep),
        };
        let table = [
            (
                denied(403, Some("ERR_ACCESS_DENIED 0")),
                Code::PROXY_CONNECT_DENIED,
                "refused to tunnel to ws:18443",
            ),
            (
                denied(503, Some("ERR_CONNECT_FAIL 111")),
                Code::PROXY_UPSTREAM_FAILED,
                "ERR_CONNECT_FAIL 111",
            ),
            (
                denied(500, Some("ERR_CANNOT_FORWARD 0")),
                Code::PROXY_UPSTREAM_FAILED,
                "could not reach ws:18443",
            ),
            (denied(502, None), Code::PROXY_UPSTREAM_FAILED, "502"),
            (socks(2), Code::PROXY_CONNECT_DENIED, "ruleset"),
            (socks(3), Code::PROXY_UPSTREAM_FAILED, "network unreachable"),
            (socks(4), Code::PROXY_UPSTREAM_FAILED, "host unreachable"),
            (socks(5), Code::PROXY_UPSTREAM_FAILED, "connection refused"),
        ];
        for (e, code, words) in table {
            assert_eq!(e.code(), code, "{e}");
            assert!(e.to_string().contains(words), "{e} lacks {words:?}");
            assert!(e.proxy_reason().is_some_and(|r| !r.is_empty()), "{e}");
        }
    }
}
