//! The sensor API client.
//!
//! It speaks HTTP/1.1 over TLS on *any* byte stream: a direct TCP connection today, a tunnel
//! through a proxy from the proxy crates tomorrow. The TLS configuration trusts exactly one root —
//! the workspace CA from the enrollment bundle — never the system roots, so a TLS-inspecting
//! middlebox cannot read or alter sensor traffic, and is reported as such.
//!
//! Every failure maps to a stable [`Code`] (see [`ClientError::code`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

pub mod verifier;
use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use uplink_diag::{Code, Diagnose};
use uplink_protocol::{EnrollRequest, EnrollResponse, ErrorBody, EventsResponse};

/// The crypto provider, chosen explicitly (see the service's `tls` module for why).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot resolve {host}: {reason}")]
    Dns {
        host: String,
        reason: String,
        timeout: bool,
    },
    #[error("TCP connection to {addr} failed: {source}")]
    Tcp {
        addr: String,
        source: std::io::Error,
    },
    #[error("TCP connection to {addr} timed out after {after:?}")]
    TcpTimeout { addr: String, after: Duration },
    #[error("TLS handshake with {host} failed: {reason}")]
    Tls {
        host: String,
        reason: String,
        code: Code,
    },
    #[error("HTTP exchange with {host} failed: {reason}")]
    Http { host: String, reason: String },
    #[error("{host} answered {status}: {message}")]
    Status {
        host: String,
        status: u16,
        code: Code,
        message: String,
    },
    #[error("the response from {host} could not be read: {reason}")]
    BadResponse { host: String, reason: String },
    #[error("invalid client configuration: {0}")]
    Config(String),
    #[error("{what} timed out after {after:?}")]
    Timeout { what: String, after: Duration },
}

impl Diagnose for ClientError {
    fn code(&self) -> Code {
        match self {
            ClientError::Dns { timeout: true, .. } => Code::DNS_TIMEOUT,
            ClientError::Dns { .. } => Code::DNS_NXDOMAIN,
            ClientError::Tcp { source, .. } => match source.kind() {
                std::io::ErrorKind::ConnectionRefused => Code::TCP_REFUSED,
                std::io::ErrorKind::TimedOut => Code::TCP_TIMEOUT,
                _ => Code::TCP_UNREACHABLE,
            },
            ClientError::TcpTimeout { .. } => Code::TCP_TIMEOUT,
            ClientError::Tls { code, .. } => *code,
            ClientError::Http { .. } | ClientError::BadResponse { .. } => {
                Code::HTTP_UNEXPECTED_STATUS
            }
            ClientError::Status { code, .. } => *code,
            ClientError::Config(_) => Code::CONFIG_INVALID,
            ClientError::Timeout { .. } => Code::TIMEOUT,
        }
    }
}

impl ClientError {
    /// True when retrying later may succeed (network, 5xx); false when a person must act first.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Status { status, .. } => {
                *status >= 500 || *status == 429 || *status == 408
            }
            ClientError::Config(_) => false,
            _ => true,
        }
    }
}

/// The sensor's TLS identity and trust. Clones share them (and the recorder): the uploader opens
/// its extra connections with a clone.
#[derive(Clone)]
pub struct TlsSettings {
    config: Arc<ClientConfig>,
    /// The chain presented in the latest handshake (of any clone: a failed handshake's chain is
    /// what diagnosing it reads, right after it).
    recorder: Arc<verifier::Recording>,
    /// The subjects of the trusted (workspace) CA certificates, for naming a failed chain.
    anchor_names: Vec<String>,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings").finish_non_exhaustive()
    }
}

impl TlsSettings {
    /// Trusts only `ca_pem`; presents `identity` (certificate chain PEM, private key PEM) if given.
    pub fn new(ca_pem: &str, identity: Option<(&str, &str)>) -> Result<Self, ClientError> {
        let mut roots = RootCertStore::empty();
        let mut anchor_names = Vec::new();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            let cert = cert.map_err(|e| ClientError::Config(format!("workspace CA: {e}")))?;
            anchor_names.push(uplink_diag::classify::CertSummary::from_der(&cert).subject);
            roots
                .add(cert)
                .map_err(|e| ClientError::Config(format!("workspace CA: {e}")))?;
        }
        if roots.is_empty() {
            return Err(ClientError::Config(
                "the workspace CA PEM holds no certificate".into(),
            ));
        }
        let recorder = verifier::Recording::new(Arc::new(roots)).map_err(ClientError::Config)?;
        let builder = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(rustls::ALL_VERSIONS)
            .map_err(|e| ClientError::Config(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(recorder.clone());
        let mut config = match identity {
            Some((chain_pem, key_pem)) => {
                let chain: Result<Vec<_>, _> =
                    CertificateDer::pem_slice_iter(chain_pem.as_bytes()).collect();
                let chain =
                    chain.map_err(|e| ClientError::Config(format!("client certificate: {e}")))?;
                let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|_| {
                    ClientError::Config("client key is not a valid PEM private key".into())
                })?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| ClientError::Config(format!("client certificate: {e}")))?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsSettings {
            config: Arc::new(config),
            recorder,
            anchor_names,
        })
    }
}

/// Where the sensor API is: `https://<host>:<port>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    /// Parses `https://host[:port][/]` (an IPv6 literal in brackets: `https://[::1]:8443`).
    pub fn parse(url: &str) -> Result<Self, ClientError> {
        let bad = |why: String| {
            ClientError::Config(format!(
                "sensor URL {why}: expected https://<workspace>sensorapi.<domain>[:port]"
            ))
        };
        let parsed = uplink_url::HttpUrl::parse(url).map_err(|e| bad(e.to_string()))?;
        if !parsed.is_tls() {
            return Err(bad(format!("{url:?} does not start with https://")));
        }
        Ok(Endpoint {
            host: parsed.host,
            port: parsed.port,
        })
    }

    /// `host[:port]` for the `Host` header: the port when it is not 443, an IPv6 literal in
    /// brackets.
    pub fn authority(&self) -> String {
        if self.port == 443 && !self.host.contains(':') {
            self.host.clone()
        } else if self.port == 443 {
            format!("[{}]", self.host)
        } else {
            uplink_url::host_port(&self.host, self.port)
        }
    }
}

/// Resolves a host: `localhost` and `*.localhost` go to loopback without DNS (RFC 6761).
pub async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, ClientError> {
    if uplink_protocol::names::is_localhost(host) {
        return Ok(vec![
            SocketAddr::from(([127, 0, 0, 1], port)),
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)),
        ]);
    }
    if let Ok(ip) = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
    {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let lookup = tokio::net::lookup_host((host, port));
    match tokio::time::timeout(Duration::from_secs(10), lookup).await {
        Err(_) => Err(ClientError::Dns {
            host: host.into(),
            reason: "no answer within 10 s".into(),
            timeout: true,
        }),
        Ok(Err(e)) => Err(ClientError::Dns {
            host: host.into(),
            reason: e.to_string(),
            timeout: false,
        }),
        Ok(Ok(addrs)) => {
            let addrs: Vec<_> = addrs.collect();
            if addrs.is_empty() {
                Err(ClientError::Dns {
                    host: host.into(),
                    reason: "no addresses".into(),
                    timeout: false,
                })
            } else {
                Ok(addrs)
            }
        }
    }
}

/// Opens a TCP connection to the first address of `host` that answers.
pub async fn dial_direct(
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<TcpStream, ClientError> {
    let addrs = resolve(host, port).await?;
    let mut last = None;
    for addr in addrs {
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Ok(Err(source)) => {
                last = Some(ClientError::Tcp {
                    addr: addr.to_string(),
                    source,
                })
            }
            Err(_) => {
                last = Some(ClientError::TcpTimeout {
                    addr: addr.to_string(),
                    after: timeout,
                })
            }
        }
    }
    Err(last.unwrap_or_else(|| ClientError::Dns {
        host: host.into(),
        reason: "no addresses".into(),
        timeout: false,
    }))
}

/// An HTTP/1.1 connection to the sensor API over TLS.
pub struct Connection {
    host: String,
    authority: String,
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    /// Whether the handshake presented a client certificate.
    pub authenticated: bool,
    /// The `Retry-After` (in seconds) of the last answer, when it had one (a 429 or 503).
    retry_after: Option<Duration>,
    /// The workspace's central policy version the service named in its last response
    /// ([`uplink_policy::VERSION_HEADER`], issue #26), if any response named one.
    pub policy_version: Option<u64>,
    /// CA rotation: the trust set's digest the last answer named (`X-Uplink-Trust`).
    trust: Option<String>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// TLS handshake (SNI = the endpoint's host) and HTTP/1.1 setup over `stream`.
    pub async fn handshake<IO>(
        stream: IO,
        endpoint: &Endpoint,
        tls: &TlsSettings,
    ) -> Result<Self, ClientError>
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let name = ServerName::try_from(endpoint.host.clone()).map_err(|_| {
            ClientError::Config(format!(
                "{:?} is not a valid TLS server name",
                endpoint.host
            ))
        })?;
        let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
        let authenticated = tls.config.client_auth_cert_resolver.has_certs();
        let tls_stream = connector
            .connect(name, stream)
            .await
            .map_err(|e| tls_error(&endpoint.host, e, tls, authenticated))?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls_stream))
            .await
            .map_err(|e| ClientError::Http {
                host: endpoint.host.clone(),
                reason: e.to_string(),
            })?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Connection {
            host: endpoint.host.clone(),
            authority: endpoint.authority(),
            sender,
            authenticated,
            retry_after: None,
            policy_version: None,
            trust: None,
        })
    }

    /// How long the last answer asked to wait before trying again (`Retry-After` in seconds;
    /// an HTTP date is not understood and reads as none).
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// True while the connection can carry another request.
    pub fn is_open(&self) -> bool {
        !self.sender.is_closed()
    }

    async fn request(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, &self.authority);
        req = req.header(uplink_protocol::VERSION_HEADER, uplink_protocol::VERSION);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| ClientError::Config(e.to_string()))?;
        self.sender.ready().await.map_err(|e| ClientError::Http {
            host: self.host.clone(),
            reason: e.to_string(),
        })?;
        let resp = self
            .sender
            .send_request(req)
            .await
            .map_err(|e| ClientError::Http {
                host: self.host.clone(),
                reason: e.to_string(),
            })?;
        let status = resp.status();
        self.retry_after = retry_after(resp.headers());
        if let Some(v) = resp
            .headers()
            .get(uplink_policy::VERSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
        {
            self.policy_version = Some(v);
        }
        if let Some(t) = resp
            .headers()
            .get(uplink_protocol::TRUST_HEADER)
            .and_then(|v| v.to_str().ok())
        {
            self.trust = Some(t.to_owned());
        }
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Http {
                host: self.host.clone(),
                reason: e.to_string(),
            })?
            .to_bytes();
        Ok((status, body))
    }

    fn status_error(&self, status: StatusCode, body: &[u8], default: Code) -> ClientError {
        status_error(&self.host, status, body, default)
    }

    /// `GET /tri/sensor/api/ping`: returns the status and body.
    pub async fn ping(&mut self) -> Result<(u16, String), ClientError> {
        let (status, body) = self
            .request(Method::GET, uplink_protocol::PING_PATH, &[], Bytes::new())
            .await?;
        Ok((status.as_u16(), String::from_utf8_lossy(&body).into_owned()))
    }

    /// `POST /api/v1/enroll`.
    pub async fn enroll(&mut self, request: &EnrollRequest) -> Result<EnrollResponse, ClientError> {
        self.post_certificate_request(uplink_protocol::ENROLL_PATH, request, Code::ENROLL_DENIED)
            .await
    }

    /// POSTs a JSON request whose answer is an [`EnrollResponse`]; 401/403 map to `denied`.
    async fn post_certificate_request<T: serde::Serialize>(
        &mut self,
        path: &str,
        request: &T,
        denied: Code,
    ) -> Result<EnrollResponse, ClientError> {
        let body = serde_json::to_vec(request).map_err(|e| ClientError::Config(e.to_string()))?;
        let (status, body) = self
            .request(
                Method::POST,
                path,
                &[("content-type", "application/json")],
                body.into(),
            )
            .await?;
        if status != StatusCode::OK {
            let default = certificate_refusal(status, denied);
            return Err(self.status_error(status, &body, default));
        }
        serde_json::from_slice(&body).map_err(|e| ClientError::BadResponse {
            host: self.host.clone(),
            reason: e.to_string(),
        })
    }

    /// `POST /api/v1/renew`: a new certificate for this sensor's new key (the connection must
    /// present the current certificate).
    pub async fn renew(
        &mut self,
        request: &uplink_protocol::RenewRequest,
    ) -> Result<EnrollResponse, ClientError> {
        self.post_certificate_request(uplink_protocol::RENEW_PATH, request, Code::MTLS_REJECTED)
            .await
    }

    /// `POST /api/v1/events` with an NDJSON batch (`zstd`: the body is zstd-compressed).
    pub async fn post_events(
        &mut self,
        batch: Bytes,
        zstd: bool,
    ) -> Result<EventsResponse, ClientError> {
        let mut headers = vec![("content-type", "application/x-ndjson")];
        if zstd {
            headers.push(("content-encoding", "zstd"));
        }
        let (status, body) = self
            .request(Method::POST, uplink_protocol::EVENTS_PATH, &headers, batch)
            .await?;
        if status != StatusCode::OK {
            return Err(self.status_error(status, &body, events_refusal(status)));
        }
        serde_json::from_slice(&body).map_err(|e| ClientError::BadResponse {
            host: self.host.clone(),
            reason: e.to_string(),
        })
    }
}

impl Connection {
    /// `POST /api/v1/heartbeat`: the sensor's report (a heartbeat body), stored by the service
    /// before it answers `204`. A service older than reports answers `404`
    /// ([`ClientError::Status`] with status 404).
    pub async fn post_heartbeat(
        &mut self,
        report: &uplink_protocol::heartbeat::Heartbeat,
    ) -> Result<(), ClientError> {
        let body = serde_json::to_vec(report).map_err(|e| ClientError::Config(e.to_string()))?;
        let (status, body) = self
            .request(
                Method::POST,
                uplink_protocol::HEARTBEAT_PATH,
                &[("content-type", "application/json")],
                body.into(),
            )
            .await?;
        if !status.is_success() {
            return Err(self.status_error(status, &body, events_refusal(status)));
        }
        Ok(())
    }
}

/// `Retry-After` as a number of seconds. Pure.
fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let secs: u64 = headers
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs))
}

// CA rotation (issue #24).
impl Connection {
    /// The digest of the workspace's trust set named by the last answer that carried one
    /// (`X-Uplink-Trust`; `None` from a service older than CA rotation).
    pub fn announced_trust(&self) -> Option<&str> {
        self.trust.as_deref()
    }

    /// `GET /api/v1/trust`: the workspace's CA certificates, PEM, the current CA first (the
    /// connection must present the sensor's certificate).
    pub async fn trust_set(&mut self) -> Result<String, ClientError> {
        let (status, body) = self
            .request(Method::GET, uplink_protocol::TRUST_PATH, &[], Bytes::new())
            .await?;
        if status != StatusCode::OK {
            return Err(self.status_error(status, &body, events_refusal(status)));
        }
        String::from_utf8(body.to_vec()).map_err(|e| ClientError::BadResponse {
            host: self.host.clone(),
            reason: format!("the trust set is not text: {e}"),
        })
    }
}

impl Connection {
    /// `POST /api/v1/uninstall`: tells the service this sensor is being uninstalled (the
    /// connection must present its certificate). `204` is success.
    pub async fn uninstall(&mut self) -> Result<(), ClientError> {
        let (status, body) = self
            .request(
                Method::POST,
                uplink_protocol::UNINSTALL_PATH,
                &[],
                Bytes::new(),
            )
            .await?;
        if !status.is_success() {
            return Err(self.status_error(status, &body, events_refusal(status)));
        }
        Ok(())
    }
}

// Central policy (issue #26).
impl Connection {
    /// `GET /api/v1/policy`: the workspace's current policy version and the policy for this
    /// sensor, if one selects it (the connection must present the sensor's certificate).
    pub async fn get_policy(&mut self) -> Result<uplink_policy::Answer, ClientError> {
        let (status, body) = self
            .request(Method::GET, uplink_policy::POLICY_PATH, &[], Bytes::new())
            .await?;
        if status != StatusCode::OK {
            return Err(self.status_error(status, &body, events_refusal(status)));
        }
        serde_json::from_slice(&body).map_err(|e| ClientError::BadResponse {
            host: self.host.clone(),
            reason: e.to_string(),
        })
    }
}

/// The code of a refused enrollment or renewal whose body names none: 401/403 are `denied`.
fn certificate_refusal(status: StatusCode, denied: Code) -> Code {
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => denied,
        _ => Code::HTTP_UNEXPECTED_STATUS,
    }
}

/// The code of a refused batch whose body names none.
fn events_refusal(status: StatusCode) -> Code {
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Code::MTLS_REJECTED,
        StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE => Code::REQUEST_REJECTED,
        _ => Code::HTTP_UNEXPECTED_STATUS,
    }
}

/// A non-200 answer as an error: the code and message of its `ErrorBody` (a code this build does
/// not know reads as `default`), else `default` and the body's first 300 bytes as text.
fn status_error(host: &str, status: StatusCode, body: &[u8], default: Code) -> ClientError {
    let (code, message) = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => (e.code.parse().unwrap_or(default), e.message),
        Err(_) => (
            default,
            String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
        ),
    };
    ClientError::Status {
        host: host.to_owned(),
        status: status.as_u16(),
        code,
        message,
    }
}

/// Classifies a TLS handshake failure with the one classifier ([`uplink_diag::classify`]).
/// The presented chain and the workspace CA's names go in, so a re-created workspace's CA
/// (`TLS_UNTRUSTED_ROOT`), the service's placeholder (`WORKSPACE_UNKNOWN`) and an interceptor
/// (`TLS_INTERCEPTED`) get the names `uplink check` gives them.
fn tls_error(host: &str, e: std::io::Error, tls: &TlsSettings, client_cert: bool) -> ClientError {
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    let presented = tls.recorder.presented();
    let (code, detail) = match inner {
        Some(err) => {
            let cx = uplink_diag::classify::TlsContext {
                host,
                client_cert,
                presented: presented.as_deref(),
                anchor_names: &tls.anchor_names,
                ..Default::default()
            };
            uplink_diag::classify::tls_error(err, &cx)
        }
        None => (Code::TLS_HANDSHAKE_FAILED, e.to_string()),
    };
    ClientError::Tls {
        host: host.into(),
        reason: detail,
        code,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let ok = [
            (
                "https://wsensorapi.uplink.localhost",
                "wsensorapi.uplink.localhost",
                443,
            ),
            (
                "https://WSensorAPI.example.com:8443/",
                "wsensorapi.example.com",
                8443,
            ),
            ("https://h:1/x/y", "h", 1),
            ("https://[::1]:8443", "::1", 8443),
            ("https://[::1]", "::1", 443),
            ("https://[2001:DB8::1]:1/", "2001:db8::1", 1),
        ];
        for (url, host, port) in ok {
            assert_eq!(
                Endpoint::parse(url).unwrap(),
                Endpoint {
                    host: host.into(),
                    port
                },
                "{url}"
            );
        }
        for bad in [
            "http://h",
            "h:443",
            "https://",
            "https://u:p@h",
            "https://h:99999",
            "https://h:x",
            "https://[::1:8443",
            "https://::1:8443",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Endpoint::parse("https://h:443").unwrap().authority(), "h");
        assert_eq!(
            Endpoint::parse("https://h:8443").unwrap().authority(),
            "h:8443"
        );
        assert_eq!(
            Endpoint::parse("https://[::1]:8443").unwrap().authority(),
            "[::1]:8443"
        );
        assert_eq!(
            Endpoint::parse("https://[::1]").unwrap().authority(),
            "[::1]"
        );
    }

    #[tokio::test]
    async fn localhost_names_resolve_without_dns() {
        let addrs = resolve("abcsensorapi.uplink.localhost", 9).await.unwrap();
        assert!(addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 9));
    }

    #[test]
    fn tls_settings_reject_garbage() {
        assert!(matches!(
            TlsSettings::new("not pem", None),
            Err(ClientError::Config(_))
        ));
    }

    #[test]
    fn refusals_map_to_codes_by_endpoint() {
        // (status, enroll's default, renew's default, events' default)
        let cases = [
            (
                401,
                Code::ENROLL_DENIED,
                Code::MTLS_REJECTED,
                Code::MTLS_REJECTED,
            ),
            (
                403,
                Code::ENROLL_DENIED,
                Code::MTLS_REJECTED,
                Code::MTLS_REJECTED,
            ),
            (
                400,
                Code::HTTP_UNEXPECTED_STATUS,
                Code::HTTP_UNEXPECTED_STATUS,
                Code::REQUEST_REJECTED,
            ),
            (
                413,
                Code::HTTP_UNEXPECTED_STATUS,
                Code::HTTP_UNEXPECTED_STATUS,
                Code::REQUEST_REJECTED,
            ),
            (
                404,
                Code::HTTP_UNEXPECTED_STATUS,
                Code::HTTP_UNEXPECTED_STATUS,
                Code::HTTP_UNEXPECTED_STATUS,
            ),
            (
                503,
                Code::HTTP_UNEXPECTED_STATUS,
                Code::HTTP_UNEXPECTED_STATUS,
                Code::HTTP_UNEXPECTED_STATUS,
            ),
            (
                302,
                Code::HTTP_UNEXPECTED_STATUS,
                Code::HTTP_UNEXPECTED_STATUS,
                Code::HTTP_UNEXPECTED_STATUS,
            ),
        ];
        for (status, enroll, renew, events) in cases {
            let s = StatusCode::from_u16(status).unwrap();
            assert_eq!(
                certificate_refusal(s, Code::ENROLL_DENIED),
                enroll,
                "{status}"
            );
            assert_eq!(
                certificate_refusal(s, Code::MTLS_REJECTED),
                renew,
                "{status}"
            );
            assert_eq!(events_refusal(s), events, "{status}");
        }
    }

    #[test]
    fn the_service_error_body_decides_the_code_and_message() {
        let long = "x".repeat(1000);
        // (body, default, expected code, expected message)
        let cases: &[(&[u8], Code, Code, &str)] = &[
            (
                br#"{"code":"SERVICE_UNAVAILABLE","message":"busy"}"#,
                Code::HTTP_UNEXPECTED_STATUS,
                Code::SERVICE_UNAVAILABLE,
                "busy",
            ),
            // A code this build does not know: the endpoint's default, the service's words.
            (
                br#"{"code":"FROM_A_NEWER_SERVICE","message":"m"}"#,
                Code::REQUEST_REJECTED,
                Code::REQUEST_REJECTED,
                "m",
            ),
            // Not our JSON (a proxy's page): the default and the text.
            (
                b"<html>blocked</html>",
                Code::MTLS_REJECTED,
                Code::MTLS_REJECTED,
                "<html>blocked</html>",
            ),
            (
                b"",
                Code::HTTP_UNEXPECTED_STATUS,
                Code::HTTP_UNEXPECTED_STATUS,
                "",
            ),
            // At most 300 bytes of a foreign body.
            (
                long.as_bytes(),
                Code::HTTP_UNEXPECTED_STATUS,
                Code::HTTP_UNEXPECTED_STATUS,
                &long[..300],
            ),
            // Bytes that are not UTF-8 are replaced, not an error.
            (
                b"\xffbad",
                Code::HTTP_UNEXPECTED_STATUS,
                Code::HTTP_UNEXPECTED_STATUS,
                "\u{fffd}bad",
            ),
        ];
        for (body, default, code, message) in cases {
            let e = status_error("h.example", StatusCode::BAD_GATEWAY, body, *default);
            assert_eq!(e.code(), *code, "{e}");
            match &e {
                ClientError::Status {
                    host,
                    status,
                    message: m,
                    ..
                } => {
                    assert_eq!(
                        (host.as_str(), *status, m.as_str()),
                        ("h.example", 502, *message)
                    );
                }
                other => panic!("not a status error: {other:?}"),
            }
            assert!(e.to_string().starts_with("h.example answered 502: "), "{e}");
        }
    }

    #[test]
    fn retry_after_in_seconds_only() {
        for (value, want) in [
            (Some("7"), Some(7)),
            (Some(" 30 "), Some(30)),
            (Some("Wed, 21 Oct 2015 07:28:00 GMT"), None),
            (Some("-1"), None),
            (None, None),
        ] {
            let mut h = http::HeaderMap::new();
            if let Some(v) = value {
                h.insert(header::RETRY_AFTER, v.parse().unwrap());
            }
            assert_eq!(retry_after(&h), want.map(Duration::from_secs), "{value:?}");
        }
    }

    #[test]
    fn what_is_worth_retrying() {
        let status = |s: u16| ClientError::Status {
            host: "h".into(),
            status: s,
            code: Code::HTTP_UNEXPECTED_STATUS,
            message: String::new(),
        };
        // Service trouble and timeouts: retried. A person must act on the others.
        for (s, retry) in [
            (500, true),
            (502, true),
            (503, true),
            (429, true),
            (408, true),
            (400, false),
            (401, false),
            (403, false),
            (404, false),
            (413, false),
            (421, false),
        ] {
            assert_eq!(status(s).is_retryable(), retry, "{s}");
        }
        assert!(!ClientError::Config("bad".into()).is_retryable());
        let io = |kind| ClientError::Tcp {
            addr: "a:1".into(),
            source: std::io::Error::from(kind),
        };
        for (e, code, retry) in [
            (
                io(std::io::ErrorKind::ConnectionRefused),
                Code::TCP_REFUSED,
                true,
            ),
            (io(std::io::ErrorKind::TimedOut), Code::TCP_TIMEOUT, true),
            (
                io(std::io::ErrorKind::HostUnreachable),
                Code::TCP_UNREACHABLE,
                true,
            ),
            (
                ClientError::TcpTimeout {
                    addr: "a:1".into(),
                    after: Duration::from_secs(1),
                },
                Code::TCP_TIMEOUT,
                true,
            ),
            (
                ClientError::Http {
                    host: "h".into(),
                    reason: "reset".into(),
                },
                Code::HTTP_UNEXPECTED_STATUS,
                true,
            ),
            (
                ClientError::BadResponse {
                    host: "h".into(),
                    reason: "not JSON".into(),
                },
                Code::HTTP_UNEXPECTED_STATUS,
                true,
            ),
            (
                ClientError::Timeout {
                    what: "upload".into(),
                    after: Duration::from_secs(1),
                },
                Code::TIMEOUT,
                true,
            ),
            (ClientError::Config("x".into()), Code::CONFIG_INVALID, false),
        ] {
            assert_eq!((e.code(), e.is_retryable()), (code, retry), "{e}");
        }
    }
}
