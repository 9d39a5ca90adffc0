//! CA rotation (issue #24, docs/lifecycle.md): what a workspace with two CAs needs from the PKI.
//!
//! - A **cross-certificate**: the new CA's subject and public key, signed by the old CA. The
//!   service presents it in its chain, so a sensor that trusts only the old CA still verifies a
//!   server certificate issued by the new one, until it learns the new CA.
//! - The **trust set's digest**: one value naming a set of CA certificates whatever their order,
//!   which the service announces on every answer to a sensor and the sensor compares with the
//!   CAs it trusts (`X-Uplink-Trust`).
//!
//! Pure: no I/O.

use rcgen::{CertificateParams, DistinguishedName, DnType, IsCa};
use rustls_pki_types::CertificateDer;
use sha2::Digest;
use time::OffsetDateTime;

use crate::{cert_info, random_serial, sha256_hex, CertificateAuthority, PkiError, BACKDATE};

impl CertificateAuthority {
    /// A certificate for `other` (a CA certificate made by [`crate::generate_ca`]: subject
    /// `O=uplink, CN=…`) with its subject and public key, issued by this CA: a chain through it
    /// leads from `other`'s certificates to this CA.
    pub fn cross_sign(
        &self,
        other: &CertificateDer<'_>,
    ) -> Result<CertificateDer<'static>, PkiError> {
        use x509_parser::prelude::*;
        let (_, cert) =
            X509Certificate::from_der(other).map_err(|e| PkiError::CertParse(e.to_string()))?;
        let info = cert_info(other)?;
        let mut dn = DistinguishedName::new();
        // The same attributes in the same order as `ca_params`: rcgen encodes them alike, so the
        // subject is byte for byte the one the other CA's certificates name as their issuer.
        dn.push(
            DnType::OrganizationName,
            info.subject_o.clone().unwrap_or_default(),
        );
        dn.push(
            DnType::CommonName,
            info.subject_cn.clone().unwrap_or_default(),
        );
        let mut params = CertificateParams::default();
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = OffsetDateTime::now_utc() - BACKDATE;
        params.not_after = info.not_after;
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = false;
        let spki = rcgen::SubjectPublicKeyInfo::from_der(cert.public_key().raw)
            .map_err(|e| PkiError::CertParse(format!("the CA's public key: {e}")))?;
        let signed = params.signed_by(&spki, &self.issuer)?;
        let der = signed.der().clone();
        if cert_info(&der)?.subject_raw != info.subject_raw {
            return Err(PkiError::Generate(
                "the cross-certificate's subject differs from the CA's: the CA was not made by uplink".into(),
            ));
        }
        Ok(der)
    }
}

/// The digest naming a set of CA certificates: SHA-256 over their SHA-256s (lowercase hex),
/// sorted and each followed by a newline; lowercase hex. The order of the set does not matter,
/// nor does a certificate listed twice.
pub fn trust_digest(cas: &[CertificateDer<'_>]) -> String {
    let mut each: Vec<String> = cas.iter().map(|c| sha256_hex(c)).collect();
    each.sort();
    each.dedup();
    let mut h = sha2::Sha256::new();
    for d in each {
        h.update(d.as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate_ca;

    fn ca(name: &str) -> CertificateAuthority {
        let new = generate_ca(name).unwrap();
        CertificateAuthority::from_pem(&new.cert_pem, &new.key_pem).unwrap()
    }

    #[test]
    fn a_cross_certificate_names_the_new_ca_and_is_issued_by_the_old() {
        let (old, new) = (ca("contoso"), ca("contoso"));
        let cross = old.cross_sign(new.cert_der()).unwrap();
        let info = cert_info(&cross).unwrap();
        assert_eq!(
            info.subject_raw,
            cert_info(new.cert_der()).unwrap().subject_raw
        );
        assert_eq!(
            info.issuer_raw,
            cert_info(old.cert_der()).unwrap().subject_raw
        );
        assert!(info.is_ca);
        // The old CA trusts a server certificate of the new one through it (what a sensor that
        // knows only the old CA does).
        let leaf = new
            .issue_server(&["contososensorapi.example".into()])
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(old.cert_der().clone()).unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        )
        .build()
        .unwrap();
        use rustls::client::danger::ServerCertVerifier;
        let name = rustls_pki_types::ServerName::try_from("contososensorapi.example").unwrap();
        verifier
            .verify_server_cert(
                &leaf.cert_der,
                &[new.cert_der().clone(), cross],
                &name,
                &[],
                rustls_pki_types::UnixTime::now(),
            )
            .unwrap();
        // Without it, it does not.
        assert!(verifier
            .verify_server_cert(
                &leaf.cert_der,
                &[new.cert_der().clone()],
                &name,
                &[],
                rustls_pki_types::UnixTime::now(),
            )
            .is_err());
    }

    #[test]
    fn the_trust_digest_ignores_order_and_repeats_and_names_the_set() {
        let (a, b) = (ca("a"), ca("b"));
        let (a, b) = (a.cert_der().clone(), b.cert_der().clone());
        let ab = trust_digest(&[a.clone(), b.clone()]);
        for (set, same) in [
            (vec![b.clone(), a.clone()], true),
            (vec![a.clone(), b.clone(), a.clone()], true),
            (vec![a.clone()], false),
            (vec![b.clone()], false),
            (vec![], false),
        ] {
            assert_eq!(trust_digest(&set) == ab, same, "{}", set.len());
        }
        assert_eq!(ab.len(), 64);
    }
}
