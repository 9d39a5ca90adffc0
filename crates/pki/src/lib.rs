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
//!
//! One key policy for CSRs ([`csr_key_policy`], docs/protocol.md): ECDSA P-256 or P-384,
//! Ed25519, or RSA of 2048 to 8192 bits, signed with SHA-256 or better (PKCS#1 v1.5 for RSA) —
//! what the service's mutual TLS accepts. Anything else is refused before the signature is
//! checked, with a message naming the key type and size.

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
/// Default validity of a sensor's client certificate (the workspace setting's default,
/// `uplink_store::lifecycle::DEFAULT_CLIENT_CERT_VALIDITY_SECS`).
pub const CLIENT_VALIDITY_DAYS: i64 = 30;
/// Longest validity a client certificate may be given.
pub const MAX_CLIENT_VALIDITY_DAYS: i64 = 825;
/// The shortest client certificate validity (short lifetimes are for renewal tests and drills).
pub const MIN_CLIENT_VALIDITY: Duration = Duration::seconds(10);
/// Back-dating of `notBefore`, to tolerate clock skew between service and sensor.
const BACKDATE: Duration = Duration::minutes(5);
/// A CRL's validity: `nextUpdate` is `thisUpdate` plus this. The service re-signs its CRLs
/// every [`CRL_RESIGN`], well before.
pub const CRL_VALIDITY: Duration = Duration::hours(24);
/// How old a CRL may get before the service signs a fresh one.
pub const CRL_RESIGN: Duration = Duration::hours(1);

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("the certificate signing request is not valid PEM or DER: {0}")]
    CsrEncoding(String),
    #[error("the certificate signing request could not be parsed: {0}")]
    CsrParse(String),
    #[error("the certificate signing request's signature does not verify (the CSR was altered or not signed by its key)")]
    CsrSignature,
    #[error("the certificate signing request is refused: {problem}. uplink accepts ECDSA P-256 or P-384, Ed25519, or RSA of 2048 to 8192 bits, signed with SHA-256 or better (see docs/protocol.md)")]
    CsrKeyPolicy {
        /// The key as found, e.g. "RSA 1024-bit", "ECDSA P-521".
        key: String,
        /// What is wrong with it, naming the key (and the signature algorithm when that is it).
        problem: String,
    },
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
    /// SHA-256 (hex) of the CSR's public key (SubjectPublicKeyInfo DER): one key, one sensor.
    pub key_sha256: String,
    /// The key as named in messages and logs, e.g. "ECDSA P-256".
    pub key_type: String,
    /// The certificate's serial number, lowercase hex (what a CRL lists).
    pub serial_hex: String,
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
        let (public_key, key_sha256, key_type) = verified_csr_key(csr_pem_or_der)?;
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
        let serial = random_serial();
        let serial_hex = hex::encode(serial.as_ref());
        params.serial_number = Some(serial);
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&public_key, &self.issuer)?;
        Ok(SignedClient {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            not_after: params.not_after,
            key_sha256,
            key_type,
            serial_hex,
        })
    }

    /// A CRL signed by this CA (DER) listing `revoked` (serial in hex, time of revocation),
    /// valid from `this_update` for [`CRL_VALIDITY`]. `crl_number` must grow with each CRL
    /// issued (the service uses the time in seconds). A serial that is not hex is an error.
    pub fn crl(
        &self,
        revoked: &[(String, OffsetDateTime)],
        this_update: OffsetDateTime,
        crl_number: u64,
    ) -> Result<Vec<u8>, PkiError> {
        let revoked_certs = revoked
            .iter()
            .map(|(serial, at)| {
                let bytes = hex::decode(serial).map_err(|e| {
                    PkiError::Generate(format!("revoked serial {serial:?} is not hex: {e}"))
                })?;
                Ok(rcgen::RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&bytes),
                    revocation_time: *at,
                    reason_code: None,
                    invalidity_date: None,
                })
            })
            .collect::<Result<Vec<_>, PkiError>>()?;
        let params = rcgen::CertificateRevocationListParams {
            this_update,
            next_update: this_update + CRL_VALIDITY,
            crl_number: SerialNumber::from(crl_number),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(&self.issuer)?.der().to_vec())
    }
}

/// Parses a CSR (PEM or DER), applies the key policy, checks its signature, and returns its
/// public key with the key's SHA-256 and name.
fn verified_csr_key(
    input: &[u8],
) -> Result<(rcgen::SubjectPublicKeyInfo, String, String), PkiError> {
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
    let spki = &csr.certification_request_info.subject_pki;
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .map(|o| o.to_id_string());
    let rsa_bits = match spki.parsed() {
        Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => Some(modulus_bits(rsa.modulus)),
        _ => None,
    };
    let key_type = csr_key_policy(
        &spki.algorithm.algorithm.to_id_string(),
        curve.as_deref(),
        rsa_bits,
        &csr.signature_algorithm.algorithm.to_id_string(),
    )?;
    csr.verify_signature().map_err(|_| PkiError::CsrSignature)?;
    let key = rcgen::SubjectPublicKeyInfo::from_der(spki.raw).map_err(|e| {
        PkiError::CsrParse(format!("the public key ({key_type}) cannot be used: {e}"))
    })?;
    Ok((key, sha256_hex(spki.raw), key_type))
}

/// Bits of an RSA modulus (big-endian, possibly with leading zero bytes).
fn modulus_bits(modulus: &[u8]) -> usize {
    let m: &[u8] = match modulus.iter().position(|&b| b != 0) {
        Some(i) => &modulus[i..],
        None => return 0,
    };
    m.len() * 8 - m[0].leading_zeros() as usize
}

const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_EC: &str = "1.2.840.10045.2.1";
const OID_ED25519: &str = "1.3.101.112";

/// The CSR key policy, on the OIDs of the key, its curve (EC), its size (RSA) and the CSR's
/// signature algorithm. Returns the key's name ("ECDSA P-256") when accepted.
pub fn csr_key_policy(
    key_alg: &str,
    curve: Option<&str>,
    rsa_bits: Option<usize>,
    sig_alg: &str,
) -> Result<String, PkiError> {
    let refuse = |key: String, problem: String| Err(PkiError::CsrKeyPolicy { key, problem });
    let key = match (key_alg, curve) {
        (OID_EC, Some("1.2.840.10045.3.1.7")) => "ECDSA P-256".to_owned(),
        (OID_EC, Some("1.3.132.0.34")) => "ECDSA P-384".to_owned(),
        (OID_ED25519, _) => "Ed25519".to_owned(),
        (OID_RSA, _) => format!("RSA {}-bit", rsa_bits.unwrap_or(0)),
        (OID_EC, curve) => {
            let name = match curve {
                Some("1.3.132.0.35") => "ECDSA P-521".to_owned(),
                Some("1.3.132.0.10") => "ECDSA secp256k1".to_owned(),
                Some("1.2.840.10045.3.1.1") => "ECDSA P-192".to_owned(),
                Some("1.3.132.0.33") => "ECDSA P-224".to_owned(),
                Some("1.3.36.3.3.2.8.1.1.7") => "ECDSA brainpoolP256r1".to_owned(),
                Some(other) => format!("ECDSA on curve {other}"),
                None => "ECDSA with explicit curve parameters".to_owned(),
            };
            return refuse(
                name.clone(),
                format!("its key is {name}, a curve uplink does not accept"),
            );
        }
        (other, _) => {
            let name = match other {
                "1.3.101.113" => "Ed448".to_owned(),
                "1.2.840.10040.4.1" => "DSA".to_owned(),
                "1.2.840.113549.1.1.10" => "RSASSA-PSS (a PSS-only RSA key)".to_owned(),
                "1.3.101.110" | "1.3.101.111" => "X25519/X448 (a key-agreement key)".to_owned(),
                other => format!("of algorithm {other}"),
            };
            return refuse(
                name.clone(),
                format!("its key is {name}, a type uplink does not accept"),
            );
        }
    };
    if key_alg == OID_RSA {
        let bits = rsa_bits.unwrap_or(0);
        if !(2048..=8192).contains(&bits) {
            return refuse(
                key.clone(),
                format!("its key is {key}: RSA keys must have 2048 to 8192 bits"),
            );
        }
    }
    let sig_ok = match key_alg {
        // sha256/384/512WithRSAEncryption
        OID_RSA => matches!(
            sig_alg,
            "1.2.840.113549.1.1.11" | "1.2.840.113549.1.1.12" | "1.2.840.113549.1.1.13"
        ),
        // ecdsa-with-SHA256/384/512
        OID_EC => matches!(
            sig_alg,
            "1.2.840.10045.4.3.2" | "1.2.840.10045.4.3.3" | "1.2.840.10045.4.3.4"
        ),
        _ => sig_alg == OID_ED25519,
    };
    if !sig_ok {
        let sig = match sig_alg {
            "1.2.840.113549.1.1.5" => "sha1WithRSAEncryption (SHA-1)",
            "1.2.840.113549.1.1.4" => "md5WithRSAEncryption (MD5)",
            "1.2.840.113549.1.1.14" => "sha224WithRSAEncryption (SHA-224)",
            "1.2.840.113549.1.1.10" => "RSASSA-PSS (use PKCS#1 v1.5 with SHA-256)",
            "1.2.840.10045.4.1" => "ecdsa-with-SHA1 (SHA-1)",
            "1.2.840.10045.4.3.1" => "ecdsa-with-SHA224 (SHA-224)",
            other => other,
        };
        return refuse(
            key.clone(),
            format!("its key is {key} but it is signed with {sig}"),
        );
    }
    Ok(key)
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

// CA rotation (issue #24).
mod rotation;
pub use rotation::trust_digest;

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

    /// Key algorithm, curve, RSA bits, signature algorithm, and Ok(name) or Err(words in the
    /// message).
    type Row<'a> = (
        &'a str,
        Option<&'a str>,
        Option<usize>,
        &'a str,
        Result<&'a str, &'a [&'a str]>,
    );

    #[test]
    fn csr_key_policy_accepts_what_mutual_tls_accepts_and_names_the_rest() {
        const P256: Option<&str> = Some("1.2.840.10045.3.1.7");
        const P384: Option<&str> = Some("1.3.132.0.34");
        const RSA_SHA256: &str = "1.2.840.113549.1.1.11";
        const ECDSA_SHA256: &str = "1.2.840.10045.4.3.2";
        // (key algorithm, curve, RSA bits, signature algorithm, Ok(name) or Err(words in the message))
        let table: &[Row] = &[
            (OID_EC, P256, None, ECDSA_SHA256, Ok("ECDSA P-256")),
            (OID_EC, P256, None, "1.2.840.10045.4.3.3", Ok("ECDSA P-256")),
            (OID_EC, P384, None, "1.2.840.10045.4.3.3", Ok("ECDSA P-384")),
            (OID_ED25519, None, None, OID_ED25519, Ok("Ed25519")),
            (OID_RSA, None, Some(2048), RSA_SHA256, Ok("RSA 2048-bit")),
            (
                OID_RSA,
                None,
                Some(4096),
                "1.2.840.113549.1.1.13",
                Ok("RSA 4096-bit"),
            ),
            (
                OID_RSA,
                None,
                Some(8192),
                "1.2.840.113549.1.1.12",
                Ok("RSA 8192-bit"),
            ),
            (
                OID_RSA,
                None,
                Some(1024),
                "1.2.840.113549.1.1.5",
                Err(&["RSA 1024-bit", "2048 to 8192"]),
            ),
            (
                OID_RSA,
                None,
                Some(1024),
                RSA_SHA256,
                Err(&["RSA 1024-bit"]),
            ),
            (OID_RSA, None, Some(512), RSA_SHA256, Err(&["RSA 512-bit"])),
            (
                OID_RSA,
                None,
                Some(16384),
                RSA_SHA256,
                Err(&["RSA 16384-bit"]),
            ),
            (
                OID_RSA,
                None,
                Some(2048),
                "1.2.840.113549.1.1.5",
                Err(&["RSA 2048-bit", "SHA-1"]),
            ),
            (
                OID_RSA,
                None,
                Some(2048),
                "1.2.840.113549.1.1.4",
                Err(&["MD5"]),
            ),
            (
                OID_RSA,
                None,
                Some(2048),
                "1.2.840.113549.1.1.10",
                Err(&["RSASSA-PSS"]),
            ),
            (
                OID_EC,
                P256,
                None,
                "1.2.840.10045.4.1",
                Err(&["ECDSA P-256", "SHA-1"]),
            ),
            (
                OID_EC,
                Some("1.3.132.0.35"),
                None,
                "1.2.840.10045.4.3.4",
                Err(&["ECDSA P-521"]),
            ),
            (
                OID_EC,
                Some("1.3.132.0.10"),
                None,
                ECDSA_SHA256,
                Err(&["secp256k1"]),
            ),
            (OID_EC, None, None, ECDSA_SHA256, Err(&["explicit curve"])),
            ("1.3.101.113", None, None, "1.3.101.113", Err(&["Ed448"])),
            (
                "1.2.840.10040.4.1",
                None,
                None,
                "2.16.840.1.101.3.4.3.2",
                Err(&["DSA"]),
            ),
            (
                OID_ED25519,
                None,
                None,
                ECDSA_SHA256,
                Err(&["Ed25519", "signed with"]),
            ),
        ];
        for (alg, curve, bits, sig, want) in table {
            let got = csr_key_policy(alg, *curve, *bits, sig);
            match (want, got) {
                (Ok(name), Ok(got)) => assert_eq!(got, *name),
                (Err(words), Err(e)) => {
                    let text = e.to_string();
                    for w in *words {
                        assert!(
                            text.contains(w),
                            "{alg} {curve:?} {bits:?} {sig}: {w:?} not in {text}"
                        );
                    }
                    assert!(
                        text.contains("uplink accepts ECDSA P-256 or P-384"),
                        "{text}"
                    );
                }
                (want, got) => panic!("{alg} {curve:?} {bits:?} {sig}: want {want:?}, got {got:?}"),
            }
        }
        assert_eq!(modulus_bits(&[0, 0x80, 0, 0]), 24);
        assert_eq!(modulus_bits(&[0x01, 0xff]), 9);
        assert_eq!(modulus_bits(&[0, 0]), 0);
    }

    #[test]
    fn signing_reports_the_key_and_its_fingerprint() {
        let ca = ca();
        let (_, csr) = generate_key_and_csr("x").unwrap();
        let a = ca
            .sign_client_csr(csr.as_bytes(), "s1", "w", Duration::days(1))
            .unwrap();
        let b = ca
            .sign_client_csr(csr.as_bytes(), "s2", "w", Duration::days(1))
            .unwrap();
        assert_eq!(a.key_type, "ECDSA P-256");
        assert_eq!(a.key_sha256, b.key_sha256, "same CSR, same key");
        assert_eq!(a.key_sha256.len(), 64);
        let (_, other) = generate_key_and_csr("x").unwrap();
        let c = ca
            .sign_client_csr(other.as_bytes(), "s3", "w", Duration::days(1))
            .unwrap();
        assert_ne!(a.key_sha256, c.key_sha256);
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
