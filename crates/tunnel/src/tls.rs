//! TLS to an HTTPS proxy (`https://proxy:port`, PAC `HTTPS host:port`): the CONNECT exchange
//! and then the sensor's own TLS to the service run inside this TLS session (TLS in TLS), so the
//! proxy credentials and the CONNECT target are never in clear on the wire.
//!
//! Trust: with a proxy CA file (`--proxy-ca FILE`), exactly the certificates in it — an
//! administrator who names a CA means that one; without, the system's roots (the store
//! `ca-certificates` keeps, where a corporate CA is installed), or Mozilla's roots
//! (webpki-roots) when the system has none. This trust is for the proxy only: the service is
//! still verified against the workspace CA alone, inside the tunnel.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::client::TlsStream;
use uplink_diag::Code;

use crate::TunnelError;

/// The TLS client configuration for one HTTPS proxy.
#[derive(Clone)]
pub struct ProxyTls {
    config: Arc<ClientConfig>,
    /// Where the trust came from, for messages: the CA file, or `the system roots`.
    trust: String,
}

impl std::fmt::Debug for ProxyTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyTls")
            .field("trust", &self.trust)
            .finish_non_exhaustive()
    }
}

impl ProxyTls {
    /// Trusts the certificates in `ca_file`, or the system roots when `None`. `proxy` labels
    /// errors.
    pub fn new(ca_file: Option<&Path>, proxy: &str) -> Result<ProxyTls, TunnelError> {
        let config_error = |reason: String| TunnelError::Config {
            proxy: proxy.to_owned(),
            reason,
        };
        let mut roots = RootCertStore::empty();
        let trust = match ca_file {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| {
                    config_error(format!(
                        "cannot read the proxy CA file {}: {e}",
                        path.display()
                    ))
                })?;
                for cert in CertificateDer::pem_slice_iter(&pem) {
                    let cert = cert.map_err(|e| {
                        config_error(format!("the proxy CA file {}: {e}", path.display()))
                    })?;
                    roots.add(cert).map_err(|e| {
                        config_error(format!("the proxy CA file {}: {e}", path.display()))
                    })?;
                }
                if roots.is_empty() {
                    return Err(config_error(format!(
                        "the proxy CA file {} holds no PEM certificate",
                        path.display()
                    )));
                }
                format!("the proxy CA file {}", path.display())
            }
            None => {
                // Unreadable entries in the system store are skipped, as browsers do.
                let native = rustls_native_certs::load_native_certs();
                let (added, _) = roots.add_parsable_certificates(native.certs);
                if added == 0 {
                    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                    "Mozilla's roots (the system has none)".to_owned()
                } else {
                    "the system roots".to_owned()
                }
            }
        };
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| config_error(format!("TLS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(ProxyTls {
            config: Arc::new(config),
            trust,
        })
    }

    /// The TLS handshake with the proxy `host` (its certificate must name it) over `stream`.
    pub async fn connect<S>(
        &self,
        stream: S,
        host: &str,
        proxy: &str,
    ) -> Result<TlsStream<S>, TunnelError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let name = ServerName::try_from(host.to_owned()).map_err(|_| TunnelError::Config {
            proxy: proxy.to_owned(),
            reason: format!("{host:?} is not a valid TLS server name"),
        })?;
        tokio_rustls::TlsConnector::from(self.config.clone())
            .connect(name, stream)
            .await
            .map_err(|e| {
                let code = classify(&e, host);
                let advice = match code {
                    Code::PROXY_TLS_UNTRUSTED => format!(
                        "; its certificate does not chain to {}: give the proxy's CA with --proxy-ca FILE",
                        self.trust
                    ),
                    Code::TLS_HOSTNAME_MISMATCH => {
                        format!("; its certificate does not name {host}: use the name it has in the proxy URL")
                    }
                    _ => String::new(),
                };
                TunnelError::ProxyTls {
                    proxy: proxy.to_owned(),
                    reason: format!("{e}{advice}"),
                    code,
                }
            })
    }
}

/// The code of a failed TLS handshake with the proxy `host`, by the one classifier
/// ([`uplink_diag::classify`], as the proxy's peer: an unknown issuer is `PROXY_TLS_UNTRUSTED`).
fn classify(e: &std::io::Error, host: &str) -> Code {
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(err) => {
            let cx = uplink_diag::classify::TlsContext {
                host,
                peer: uplink_diag::classify::Peer::Proxy,
                ..Default::default()
            };
            uplink_diag::classify::tls_error(err, &cx).0
        }
        None => Code::TLS_HANDSHAKE_FAILED,
    }
}
