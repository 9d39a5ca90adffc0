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

/// The CA certificates of every workspace loaded, shared by all workspaces' client verifiers: a
/// sensor's certificate is accepted at the TLS layer when it chains to any of them (the handler
/// answers 403 when it belongs to another workspace than the host's), and loading or dropping one
/// workspace replaces this set without rebuilding the others' TLS configurations.
#[derive(Default)]
pub(crate) struct SharedRoots {
    current: std::sync::RwLock<Option<Arc<dyn ClientCertVerifier>>>,
}

impl std::fmt::Debug for SharedRoots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedRoots").finish_non_exhaustive()
    }
}

impl SharedRoots {
    /// Trusts exactly `cas` from now on (connections already verified are not affected).
    pub(crate) fn replace(&self, cas: &[CertificateDer<'static>]) -> Result<(), ServiceError> {
        // A certificate rustls refuses as a root is left out, not fatal for the others (that
        // workspace failed to load anyway).
        let usable: Vec<_> = cas
            .iter()
            .filter(|c| RootCertStore::empty().add((*c).clone()).is_ok())
            .cloned()
            .collect();
        let verifier = match usable.first() {
            Some(first) => client_verifier(&usable, first)?,
            None => None,
        };
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = verifier;
        Ok(())
    }

    fn current(&self) -> Option<Arc<dyn ClientCertVerifier>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// One workspace's client verifier: the shared roots, advertising only its own CA as the
/// acceptable issuer. A client certificate is optional (ping works from a browser).
#[derive(Debug)]
pub(crate) struct WorkspaceVerifier {
    roots: Arc<SharedRoots>,
    hint: Vec<rustls::DistinguishedName>,
}

impl WorkspaceVerifier {
    /// The verifier for the workspace whose CA is `own_ca`.
    pub(crate) fn for_workspace(
        roots: Arc<SharedRoots>,
        own_ca: &CertificateDer<'static>,
    ) -> Result<Arc<dyn ClientCertVerifier>, ServiceError> {
        let mut one = RootCertStore::empty();
        one.add(own_ca.clone())
            .map_err(|e| ServiceError::Tls(format!("workspace CA: {e}")))?;
        Ok(Arc::new(WorkspaceVerifier {
            roots,
            hint: one.subjects(),
        }))
    }
}

impl ClientCertVerifier for WorkspaceVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &self.hint
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        match self.roots.current() {
            Some(v) => v.verify_client_cert(end_entity, intermediates, now),
            None => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The TLS configuration of console hosts from an admin-provided certificate (e.g. a wildcard
/// for `*.<domain>` from the company's CA, so browsers do not warn): `cert_pem` is the chain,
/// leaf first; no client certificates are asked for (`uplink service --console-cert/--console-key`).
pub fn console_config(cert_pem: &str, key_pem: &str) -> Result<Arc<ServerConfig>, ServiceError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| ServiceError::Tls(format!("the console certificate: {e}")))?;
    if chain.is_empty() {
        return Err(ServiceError::Tls(
            "the console certificate file holds no PEM certificate".into(),
        ));
    }
    server_config(chain, key_pem, None)
}
