//! CA rotation, the sensor's side (issue #24, docs/lifecycle.md).
//!
//! Every answer of the sensor API names the digest of the workspace's trust set
//! (`X-Uplink-Trust`, [`uplink_pki::trust_digest`]). When it differs from the CAs in the
//! sensor's `ca.pem`, the sensor fetches the set (`GET /api/v1/trust`) over the connection it
//! has — authenticated both ways, verified against the CAs it trusts already — and replaces
//! `ca.pem` atomically: both CAs during a rotation, the new one alone after the old one is
//! retired. When its certificate is not from the set's current CA (the first), renewal is due
//! at once, so the sensor moves to the new CA without reinstalling and without touching its
//! queue.
//!
//! The decisions are pure ([`digest_of`], [`issued_by_current`], [`checked_set`]); [`refresh`]
//! does the I/O.

use uplink_client::{Connection, TlsSettings};

use crate::config::Paths;
use crate::SensorError;

/// The trust digest of PEM text (`None` when it holds no certificate).
pub fn digest_of(pem: &str) -> Option<String> {
    let certs = uplink_pki::certs_from_pem(pem).ok()?;
    Some(uplink_pki::trust_digest(&certs))
}

/// Whether the client certificate `cert_pem` was issued by the first CA of `set_pem` (the
/// current one). Unreadable input reads as "yes": nothing to do on a guess.
pub fn issued_by_current(set_pem: &str, cert_pem: &str) -> bool {
    let first = |pem: &str| {
        uplink_pki::certs_from_pem(pem)
            .ok()
            .and_then(|c| c.into_iter().next())
            .and_then(|c| uplink_pki::cert_info(&c).ok())
    };
    match (first(set_pem), first(cert_pem)) {
        (Some(ca), Some(cert)) => cert.issuer_raw == ca.subject_raw,
        _ => true,
    }
}

/// Checks a trust set as the service answered it: CA certificates only, and the digest the
/// service announced. Returns it as it is to be written.
pub fn checked_set(set_pem: &str, announced: &str) -> Result<String, SensorError> {
    let certs = uplink_pki::certs_from_pem(set_pem)?;
    for c in &certs {
        if !uplink_pki::cert_info(c)?.is_ca {
            return Err(SensorError::Failed(
                "the service's trust set holds a certificate that is not a CA; keeping the CAs trusted now".into(),
            ));
        }
    }
    let digest = uplink_pki::trust_digest(&certs);
    if digest != announced {
        return Err(SensorError::Failed(format!(
            "the service's trust set has digest {digest}, not the {announced} it announced; keeping the CAs trusted now"
        )));
    }
    Ok(set_pem.to_owned())
}

/// Fetches the trust set over `conn`, checks it against `announced`, writes `ca.pem` (atomic
/// replacement), and returns the TLS settings that trust it with the sensor's current
/// certificate.
pub async fn refresh(
    paths: &Paths,
    conn: &mut Connection,
    announced: &str,
) -> Result<TlsSettings, SensorError> {
    let set = checked_set(&conn.trust_set().await?, announced)?;
    let read = |p: std::path::PathBuf| {
        std::fs::read_to_string(&p).map_err(|source| SensorError::Io { path: p, source })
    };
    let cert = read(paths.cert_file())?;
    let key = zeroize::Zeroizing::new(read(paths.key_file())?);
    // Refuse a set we could not use before touching the file.
    let tls = TlsSettings::new(&set, Some((&cert, &key)))?;
    let path = paths.ca_file();
    crate::fsutil::write_public(&path, set.as_bytes())
        .map_err(|source| SensorError::Io { path, source })?;
    Ok(tls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_set_is_checked_and_the_current_ca_named_first() {
        let old = uplink_pki::generate_ca("w").unwrap();
        let new = uplink_pki::generate_ca("w").unwrap();
        let old_ca =
            uplink_pki::CertificateAuthority::from_pem(&old.cert_pem, &old.key_pem).unwrap();
        let (_, csr) = uplink_pki::generate_key_and_csr("s1").unwrap();
        let cert = old_ca
            .sign_client_csr(csr.as_bytes(), "s1", "w", time::Duration::days(1))
            .unwrap()
            .cert_pem;
        let set = format!("{}{}", new.cert_pem, old.cert_pem);
        let digest = digest_of(&set).unwrap();
        // (set, its current CA issued the certificate)
        for (pem, current) in [
            (old.cert_pem.clone(), true),
            (set.clone(), false),
            (new.cert_pem.clone(), false),
            (format!("{}{}", old.cert_pem, new.cert_pem), true),
            ("garbage".to_owned(), true),
        ] {
            assert_eq!(issued_by_current(&pem, &cert), current, "{pem:.40}");
        }
        assert_eq!(checked_set(&set, &digest).unwrap(), set);
        assert!(checked_set(&set, &digest_of(&old.cert_pem).unwrap()).is_err());
        // A leaf in the set is refused.
        let with_leaf = format!("{set}{cert}");
        let d = digest_of(&with_leaf).unwrap();
        assert!(checked_set(&with_leaf, &d).is_err());
        assert!(checked_set("nothing", &digest).is_err());
        assert_eq!(digest_of("nothing"), None);
    }
}
