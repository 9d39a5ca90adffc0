//! A certificate verifier that records the chain the server presented, then delegates to
//! rustls's WebPki verifier (so it verifies exactly as `with_root_certificates` would). The
//! record is what lets the analyzer and the sensor say *who* issued a certificate that failed
//! (an interceptor's CA, a re-created workspace's CA, the service's placeholder) instead of a
//! bare "unknown issuer": the one classifier, `uplink_diag::classify`, reads it.

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, Error, RootCertStore, SignatureScheme};

use uplink_diag::classify::CertSummary;

/// Records the presented chain (leaf first) and verifies it against `roots`.
#[derive(Debug)]
pub struct Recording {
    inner: Arc<WebPkiServerVerifier>,
    seen: Mutex<Option<Vec<CertSummary>>>,
}

impl Recording {
    pub fn new(roots: Arc<RootCertStore>) -> Result<Arc<Self>, String> {
        let inner = WebPkiServerVerifier::builder_with_provider(roots, crate::provider())
            .build()
            .map_err(|e| format!("cannot build a verifier from the trust anchors: {e}"))?;
        Ok(Arc::new(Recording {
            inner,
            seen: Mutex::new(None),
        }))
    }

    /// The chain presented in the last handshake, if one got that far.
    pub fn presented(&self) -> Option<Vec<CertSummary>> {
        self.seen.lock().ok().and_then(|s| s.clone())
    }
}

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let chain: Vec<CertSummary> = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| CertSummary::from_der(c))
            .collect();
        if let Ok(mut s) = self.seen.lock() {
            *s = Some(chain);
        }
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
