//! The workspace CA's certificate revocation list at `GET /pki/crl.der` (issue #24).
//!
//! Served on both hosts of a workspace without a client certificate, so anything that checks
//! uplink's client certificates itself (a TLS-terminating proxy, `openssl verify -crl_check`) can
//! refuse a revoked sensor. It lists the serial of every certificate issued to a revoked sensor
//! (enrollment and each renewal), is valid for [`uplink_pki::CRL_VALIDITY`] (24 h) and is signed
//! again once it is [`uplink_pki::CRL_RESIGN`] old (1 h), or at once after a revocation (which
//! reloads the workspace, and with it an empty cache). The service itself does not need it: it
//! refuses revoked sensors by their id on every request (`registry`).

use std::sync::{Arc, Mutex};

use time::OffsetDateTime;

use crate::registry::Workspace;

/// The path of the CRL on every workspace host.
pub const CRL_PATH: &str = "/pki/crl.der";

/// Whether `path` asks for the CRL of the CA whose certificate has SHA-256 `ca_sha256`:
/// [`CRL_PATH`], or `/pki/crl-<ca_sha256>.der` (lowercase hex), the name each CA's CRL keeps
/// while CAs rotate. Pure.
pub(crate) fn is_crl_path(path: &str, ca_sha256: &str) -> bool {
    path == CRL_PATH
        || path
            .strip_prefix("/pki/crl-")
            .and_then(|rest| rest.strip_suffix(".der"))
            .is_some_and(|sha| sha == ca_sha256)
}

/// The CRL last signed for a workspace, with when.
#[derive(Default)]
pub struct Cache(Mutex<Option<(OffsetDateTime, Arc<Vec<u8>>)>>);

/// Whether a CRL signed at `signed` must be signed again at `now`. Pure.
pub(crate) fn stale(signed: OffsetDateTime, now: OffsetDateTime) -> bool {
    now - signed >= uplink_pki::CRL_RESIGN || now < signed
}

/// The workspace's CRL (DER), signed now when the cached one is stale.
pub(crate) fn current(ws: &Workspace) -> Result<Arc<Vec<u8>>, uplink_pki::PkiError> {
    signed_by(&ws.ca, &ws.crl, &ws.revoked_serials)
}

/// The CRL of `ca` (the workspace's current CA, or a previous one during a rotation) listing
/// `serials`, from `cache` unless stale.
pub(crate) fn signed_by(
    ca: &uplink_pki::CertificateAuthority,
    crl_cache: &Cache,
    serials: &[uplink_store::RevokedSerial],
) -> Result<Arc<Vec<u8>>, uplink_pki::PkiError> {
    let now = OffsetDateTime::now_utc();
    let mut cache = crl_cache.0.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((signed, der)) = cache.as_ref() {
        if !stale(*signed, now) {
            return Ok(der.clone());
        }
    }
    let revoked: Vec<(String, OffsetDateTime)> = serials
        .iter()
        .map(|r| {
            let at = OffsetDateTime::from_unix_timestamp_nanos(r.revoked_at as i128 * 1_000_000)
                .unwrap_or(now);
            (r.serial_hex.clone(), at)
        })
        .collect();
    // A few minutes back, as certificates are: a verifier whose clock is slightly behind must
    // not find the CRL "not yet valid".
    let this_update = now - time::Duration::minutes(5);
    let der = Arc::new(ca.crl(&revoked, this_update, now.unix_timestamp().max(1) as u64)?);
    *cache = Some((now, der.clone()));
    Ok(der)
}

/// Records a certificate just issued, so the CRL can list it once its sensor is revoked. A
/// failure is logged, not answered: the sensor is enrolled (or renewed) already, and the service
/// refuses a revoked sensor by its id whatever the CRL lists.
pub(crate) async fn record<S: uplink_store::Store>(
    shared: &crate::Shared<S>,
    sensor_id: &str,
    signed: &uplink_pki::SignedClient,
    ca_sha256: &str,
) {
    let fingerprint = uplink_pki::sha256_hex(&signed.cert_der);
    // CA rotation: which CA issued it, so `rotate-ca --retire-old` knows who has moved.
    if let Err(e) = shared.store.record_issuer(&fingerprint, ca_sha256).await {
        tracing::warn!(sensor = %sensor_id, error = %e, "recording the certificate's issuer failed: `rotate-ca --retire-old` will count this sensor as not moved until it renews again");
    }
    if let Err(e) = shared
        .store
        .record_certificate(sensor_id, &signed.serial_hex, &fingerprint)
        .await
    {
        tracing::warn!(sensor = %sensor_id, serial = %signed.serial_hex, error = %e, "recording the certificate for the CRL failed: the CRL will not list it if this sensor is revoked");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;

    #[test]
    fn the_crl_is_at_its_own_path_and_at_its_ca_s_digest() {
        let sha = "ab".repeat(32);
        for (path, ok) in [
            ("/pki/crl.der".to_owned(), true),
            (format!("/pki/crl-{sha}.der"), true),
            (format!("/pki/crl-{}.der", "cd".repeat(32)), false),
            (format!("/pki/crl-{}.der", sha.to_uppercase()), false),
            (format!("/pki/crl-{sha}"), false),
            ("/pki/crl-.der".to_owned(), false),
        ] {
            assert_eq!(is_crl_path(&path, &sha), ok, "{path}");
        }
    }

    #[test]
    fn a_crl_is_signed_again_well_before_it_expires() {
        let t0 = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        // (age of the cached CRL, sign again)
        for (age, again) in [
            (Duration::ZERO, false),
            (Duration::minutes(59), false),
            (Duration::hours(1), true),
            (Duration::hours(23), true),
            // The clock went back: sign again rather than serve a CRL from the future.
            (Duration::minutes(-1), true),
        ] {
            assert_eq!(stale(t0, t0 + age), again, "{age}");
        }
        assert!(uplink_pki::CRL_RESIGN * 10 <= uplink_pki::CRL_VALIDITY);
    }
}
