//! TLS configuration: one crypto provider (aws-lc-rs), chosen explicitly, so that another provider
//! compiled in by some dependency can never make rustls pick one at random or panic.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;

use crate::ServiceError;

/// The process's crypto provider.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Builds a server configuration for one certificate and an optional client verifier.
pub fn server_config(
    cert_chain: Vec<CertificateDer<'static>>,
    key_pem: &str,
    verifier: Option<Arc<dyn ClientCertVerifier>>,
) -> Result<Arc<ServerConfig>, ServiceError> {
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| ServiceError::Tls(e.to_string()))?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(rustls::ALL_VERSIONS)
        .map_err(|e| ServiceError::Tls(e.to_string()))?;
    let builder = match verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(cert_chain, key)
        .map_err(|e| ServiceError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A client verifier accepting certificates from any of `cas` (optional: ping needs none),
/// advertising only `hint` as the acceptable issuer.
pub fn client_verifier(
    cas: &[CertificateDer<'static>],
    hint: &CertificateDer<'static>,
) -> Result<Option<Arc<dyn ClientCertVerifier>>, ServiceError> {
    if cas.is_empty() {
        return Ok(None);
    }
    let mut roots = RootCertStore::empty();
    for ca in cas {
        roots
            .add(ca.clone())
            .map_err(|e| ServiceError::Tls(format!("workspace CA: {e}")))?;
    }
    let hint_subject = {
        let mut one = RootCertStore::empty();
        one.add(hint.clone())
            .map_err(|e| ServiceError::Tls(format!("workspace CA: {e}")))?;
        one.subjects()
    };
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .allow_unauthenticated()
        .clear_root_hint_subjects()
        .add_root_hint_subjects(hint_subject)
        .build()
        .map_err(|e| ServiceError::Tls(e.to_string()))?;
    Ok(Some(verifier))
}
