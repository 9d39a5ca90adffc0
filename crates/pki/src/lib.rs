//! Workspace certificate authorities.
//!
//! Each workspace has its own CA (ECDSA P-256). The CA signs:
//! - the service's server certificate for the workspace's hosts, issued in memory when the
//!   service loads the workspace (so every replica has its own and none is ever stored), and
//! - each sensor's client certificate, from the sensor's CSR at enrollment.
//!
//! When signing a CSR the CA uses only the CSR's public key (after checking the CSR's signature,
//! which proves the sensor holds the private key); everything else is the CA's decision: not a
//! CA, client authentication only, bounded validity, the sensor id as the subject CN. A sensor
//! cannot ask for more than it is given.
//!
//! The bundle pin `ca_sha256` is the SHA-256 of the CA certificate's DER, lowercase hex.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateSigningRequestDer};
use sha2::Digest;
use time::{Duration, OffsetDateTime};

/// How long a workspace CA is valid.
pub const CA_VALIDITY_DAYS: i64 = 3650;
/// How long a server certificate issued at load time is valid.
pub const SERVER_VALIDITY_DAYS: i64 = 397;
/// Default validity of a sensor's client certificate.
pub const CLIENT_VALIDITY_DAYS: i64 = 365;
/// Longest validity a client certificate may be given.
pub const MAX_CLIENT_VALIDITY_DAYS: i64 = 825;
/// The shortest client certificate validity (short lifetimes are for renewal tests and drills).
pub const MIN_CLIENT_VALIDITY: Duration = Duration::seconds(10);
/// Back-dating of `notBefore`, to tolerate clock skew between service and sensor.
const BACKDATE: Duration = Duration::minutes(5);

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("the certificate signing request is not valid PEM or DER: {0}")]
    CsrEncoding(String),
    #[error("the certificate signing request could not be parsed: {0}")]
    CsrParse(String),
    #[error("the certificate signing request's signature does not verify (the CSR was altered or not signed by its key)")]
    CsrSignature,
    #[error("the certificate signing request uses an unsupported key type: use ECDSA P-256/P-384, Ed25519 or RSA")]
    CsrKeyType,
    #[error("the workspace CA could not be loaded: {0}")]
    CaLoad(String),
    #[error("the certificate could not be parsed: {0}")]
    CertParse(String),
    #[error("certificate generation failed: {0}")]
    Generate(String),
}

impl From<rcgen::Error> for PkiError {
    fn from(e: rcgen::Error) -> Self {
        PkiError::Generate(e.to_string())
    }
}

/// A workspace CA: its certificate and signing key, ready to issue.
pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("sha256", &sha256_hex(&self.cert_der))
            .field("key", &"<redacted>")
            .finish()
    }
}

/// A new CA in PEM, for storage.
pub struct NewCa {
    pub cert_pem: String,
    pub key_pem: String,
    pub sha256: String,
}

impl std::fmt::Debug for NewCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewCa")
            .field("sha256", &self.sha256)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// A certificate with its private key, both PEM.
pub struct Issued {
    pub cert_pem: String,
    pub cert_der: CertificateDer<'static>,
    pub key_pem: String,
    pub not_after: OffsetDateTime,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("not_after", &self.not_after)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// A client certificate signed from a CSR.
#[derive(Debug)]
pub struct SignedClient {
    pub cert_pem: String,
    pub cert_der: CertificateDer<'static>,
    pub not_after: OffsetDateTime,
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f; // positive
    bytes[0] |= 0x01; // and never a leading zero byte, so the length is stable
    SerialNumber::from_slice(&bytes)
}

fn ca_params(workspace: &str, now: OffsetDateTime) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "uplink");
    // A random suffix keeps the subject unique even if a workspace is deleted and re-created
    // with the same name: the service identifies a client certificate's workspace by issuer.
    let tag: [u8; 4] = rand::random();
    dn.push(
        DnType::CommonName,
        format!("uplink workspace CA {workspace} {}", hex::encode(tag)),
    );
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = now - BACKDATE;
    params.not_after = now + Duration::days(CA_VALIDITY_DAYS);
    params.serial_number = Some(random_serial());
    params.use_authority_key_identifier_extension = false;
    params
}

/// Creates a new CA for `workspace`.
pub fn generate_ca(workspace: &str) -> Result<NewCa, PkiError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let cert = ca_params(workspace, OffsetDateTime::now_utc()).self_signed(&key)?;
    Ok(NewCa {
        sha256: sha256_hex(cert.der()),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

impl CertificateAuthority {
    /// Loads a CA from its stored PEM.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| PkiError::CaLoad(format!("key: {e}")))?;
        let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| PkiError::CaLoad(format!("certificate: {e}")))?;
        let issuer = Issuer::from_ca_cert_der(&cert_der, key)
            .map_err(|e| PkiError::CaLoad(e.to_string()))?;
        Ok(CertificateAuthority {
            issuer,
            cert_pem: cert_pem.to_owned(),
            cert_der,
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The pin sensors check: SHA-256 of the CA certificate's DER, lowercase hex.
    pub fn sha256(&self) -> String {
        sha256_hex(&self.cert_der)
    }

    /// Issues a server certificate (with a fresh P-256 key) naming `hosts`.
    pub fn issue_server(&self, hosts: &[String]) -> Result<Issued, PkiError> {
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::new(hosts.to_vec())?;
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            hosts.first().cloned().unwrap_or_default(),
        );
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = now - BACKDATE;
        params.not_after = now + Duration::days(SERVER_VALIDITY_DAYS);
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            key_pem: key.serialize_pem(),
            not_after: params.not_after,
        })
    }

    /// Signs a sensor's CSR. Only the CSR's public key is used; see the module docs.
    pub fn sign_client_csr(
        &self,
        csr_pem_or_der: &[u8],
        sensor_id: &str,
        workspace: &str,
        validity: Duration,
    ) -> Result<SignedClient, PkiError> {
        let public_key = verified_csr_key(csr_pem_or_der)?;
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, workspace);
        dn.push(DnType::CommonName, sensor_id);
        params.distinguished_name = dn;
        params.subject_alt_names = vec![];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.not_before = now - BACKDATE;
        params.not_after = now
            + validity.clamp(
                MIN_CLIENT_VALIDITY,
                Duration::days(MAX_CLIENT_VALIDITY_DAYS),
            );
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&public_key, &self.issuer)?;
        Ok(SignedClient {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            not_after: params.not_after,
        })
    }
}

/// Parses a CSR (PEM or DER), checks its signature, and returns its public key.
fn verified_csr_key(input: &[u8]) -> Result<rcgen::SubjectPublicKeyInfo, PkiError> {
    use x509_parser::prelude::FromDer;
    let der: Vec<u8> = if input.trim_ascii_start().starts_with(b"-----BEGIN") {
        CertificateSigningRequestDer::from_pem_slice(input)
            .map_err(|e| PkiError::CsrEncoding(e.to_string()))?
            .as_ref()
            .to_vec()
    } else {
        input.to_vec()
    };
    let (rest, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(&der)
        .map_err(|e| PkiError::CsrParse(e.to_string()))?;
    if !rest.is_empty() {
        return Err(PkiError::CsrParse(format!(
            "{} trailing bytes after the request",
            rest.len()
        )));
    }
    csr.verify_signature().map_err(|_| PkiError::CsrSignature)?;
    let spki = csr.certification_request_info.subject_pki.raw;
    rcgen::SubjectPublicKeyInfo::from_der(spki).map_err(|_| PkiError::CsrKeyType)
}

/// A new private key and a CSR for it, both PEM. The sensor keeps the key; only the CSR leaves.
pub fn generate_key_and_csr(common_name: &str) -> Result<(String, String), PkiError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    let csr = params.serialize_request(&key)?;
    Ok((key.serialize_pem(), csr.pem()?))
}

/// SHA-256 of DER bytes, lowercase hex.
pub fn sha256_hex(der: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(der))
}

/// Reads every certificate from PEM text.
pub fn certs_from_pem(pem: &str) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(pem.as_bytes()).collect();
    let certs = certs.map_err(|e| PkiError::CertParse(e.to_string()))?;
    if certs.is_empty() {
        return Err(PkiError::CertParse("no CERTIFICATE block found".into()));
    }
    Ok(certs)
}

/// Facts read from a certificate, for status output and for the service's workspace check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub subject_cn: Option<String>,
    pub subject_o: Option<String>,
    /// The issuer's distinguished name, DER-encoded (compared byte for byte with a CA's subject).
    pub issuer_raw: Vec<u8>,
    pub subject_raw: Vec<u8>,
    pub not_after: OffsetDateTime,
    pub is_ca: bool,
}

/// Parses the facts uplink needs from a DER certificate.
pub fn cert_info(der: &[u8]) -> Result<CertInfo, PkiError> {
    use x509_parser::prelude::*;
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| PkiError::CertParse(e.to_string()))?;
    let first = |attrs: Option<&AttributeTypeAndValue>| {
        attrs.and_then(|a| a.as_str().ok()).map(str::to_owned)
    };
    let subject_cn = first(cert.subject().iter_common_name().next());
    let subject_o = first(cert.subject().iter_organization().next());
    Ok(CertInfo {
        subject_cn,
        subject_o,
        issuer_raw: cert.issuer().as_raw().to_vec(),
        subject_raw: cert.subject().as_raw().to_vec(),
        not_after: cert.validity().not_after.to_datetime(),
        is_ca: cert.is_ca(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca() -> CertificateAuthority {
        let new = generate_ca("contoso").unwrap();
        CertificateAuthority::from_pem(&new.cert_pem, &new.key_pem).unwrap()
    }

    #[test]
    fn ca_is_a_ca_and_pin_matches() {
        let new = generate_ca("contoso").unwrap();
        let ca = CertificateAuthority::from_pem(&new.cert_pem, &new.key_pem).unwrap();
        assert_eq!(ca.sha256(), new.sha256);
        assert_eq!(new.sha256.len(), 64);
        let info = cert_info(ca.cert_der()).unwrap();
        assert!(info.is_ca);
        assert_eq!(info.issuer_raw, info.subject_raw, "self-signed");
        assert!(format!("{new:?}").contains("redacted") && !format!("{new:?}").contains("PRIVATE"));
    }

    #[test]
    fn client_certificate_overrides_the_csr() {
        let ca = ca();
        // A CSR asking to be a CA for a server name: the CA ignores all of it.
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(vec!["evil.example".into()]).unwrap();
        params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.distinguished_name.push(DnType::CommonName, "root");
        let csr = params.serialize_request(&key).unwrap().pem().unwrap();
        let signed = ca
            .sign_client_csr(csr.as_bytes(), "s-123", "contoso", Duration::days(10_000))
            .unwrap();
        let info = cert_info(&signed.cert_der).unwrap();
        assert_eq!(info.subject_cn.as_deref(), Some("s-123"));
        assert_eq!(info.subject_o.as_deref(), Some("contoso"));
        assert!(!info.is_ca);
        assert_eq!(
            info.issuer_raw,
            cert_info(ca.cert_der()).unwrap().subject_raw
        );
        let days = (signed.not_after - OffsetDateTime::now_utc()).whole_days();
        assert!(
            days <= MAX_CLIENT_VALIDITY_DAYS,
            "validity clamped, got {days}"
        );
        use x509_parser::prelude::*;
        let (_, cert) = X509Certificate::from_der(&signed.cert_der).unwrap();
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        assert!(cert.subject_alternative_name().unwrap().is_none());
    }

    #[test]
    fn bad_csrs_are_refused_with_reasons() {
        let ca = ca();
        let (_, csr) = generate_key_and_csr("x").unwrap();
        assert!(matches!(
            ca.sign_client_csr(b"hello", "s", "w", Duration::days(1)),
            Err(PkiError::CsrParse(_))
        ));
        assert!(matches!(
            ca.sign_client_csr(
                b"-----BEGIN CERTIFICATE REQUEST-----\n!!!\n-----END CERTIFICATE REQUEST-----\n",
                "s",
                "w",
                Duration::days(1)
            ),
            Err(PkiError::CsrEncoding(_))
        ));
        // Flip one byte inside the signed part: the signature no longer verifies.
        let mut der = CertificateSigningRequestDer::from_pem_slice(csr.as_bytes())
            .unwrap()
            .as_ref()
            .to_vec();
        let n = der.len();
        der[n / 3] ^= 0x01;
        let err = ca
            .sign_client_csr(&der, "s", "w", Duration::days(1))
            .unwrap_err();
        assert!(
            matches!(err, PkiError::CsrSignature | PkiError::CsrParse(_)),
            "{err}"
        );
        assert!(ca
            .sign_client_csr(csr.as_bytes(), "s", "w", Duration::days(1))
            .is_ok());
    }

    #[test]
    fn server_certificate_names_hosts() {
        let ca = ca();
        let hosts = vec![
            "wsensorapi.uplink.localhost".to_string(),
            "w.uplink.localhost".to_string(),
        ];
        let issued = ca.issue_server(&hosts).unwrap();
        use x509_parser::prelude::*;
        let (_, cert) = X509Certificate::from_der(&issued.cert_der).unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap().value;
        let names: Vec<String> = san.general_names.iter().map(|g| g.to_string()).collect();
        assert_eq!(
            names,
            vec![
                "DNSName(wsensorapi.uplink.localhost)",
                "DNSName(w.uplink.localhost)"
            ]
        );
        assert_eq!(
            certs_from_pem(&issued.cert_pem).unwrap()[0],
            issued.cert_der
        );
    }
}
