//! CA rotation (issue #24, docs/lifecycle.md): a workspace with a new CA and the previous ones
//! not retired yet.
//!
//! While a previous CA is there, the service accepts client certificates of every CA of the
//! set (`registry`: the shared roots and the issuer → workspace map include them), presents a
//! server certificate of the new CA with a cross-certificate per previous CA (a sensor that
//! trusts only the old CA still verifies it), serves each previous CA's CRL at
//! `/pki/crl-<ca_sha256>.der`, and tells sensors about the set: every sensor API answer carries
//! [`uplink_protocol::TRUST_HEADER`] with the set's digest, and
//! [`uplink_protocol::TRUST_PATH`] answers the set (PEM, the current CA first) to a sensor's
//! client certificate. New certificates (enrollment, renewal) come from the new CA. What a
//! sensor does with it is `uplink_sensor::trust`.

use bytes::Bytes;
use http::{header, Method, Response};
use http_body_util::Full;
use rustls::pki_types::CertificateDer;
use uplink_pki::CertificateAuthority;

use crate::registry::Workspace;

/// A previous CA, loaded.
pub(crate) struct Previous {
    pub ca: CertificateAuthority,
    pub subject_raw: Vec<u8>,
    pub crl: crate::crl::Cache,
}

/// A workspace's trust set.
pub(crate) struct Trust {
    /// The previous CAs, oldest first.
    pub previous: Vec<Previous>,
    /// The current CA signed by each previous one (for the server chain).
    pub cross: Vec<CertificateDer<'static>>,
    /// The set in PEM, the current CA first.
    pub pem: String,
    /// [`uplink_pki::trust_digest`] of the set.
    pub digest: String,
}

impl Trust {
    /// The trust set of a workspace whose CA is `current` and whose previous CAs are `previous`.
    pub(crate) fn load(
        current: &CertificateAuthority,
        previous: &[uplink_store::PreviousCa],
    ) -> Result<Trust, uplink_pki::PkiError> {
        let mut loaded = Vec::new();
        let mut cross = Vec::new();
        let mut pem = current.cert_pem().trim_end().to_owned();
        pem.push('\n');
        let mut ders = vec![current.cert_der().clone()];
        for p in previous {
            let ca = CertificateAuthority::from_pem(&p.cert_pem, &p.key_pem)?;
            cross.push(ca.cross_sign(current.cert_der())?);
            pem.push_str(ca.cert_pem().trim_end());
            pem.push('\n');
            ders.push(ca.cert_der().clone());
            loaded.push(Previous {
                subject_raw: uplink_pki::cert_info(ca.cert_der())?.subject_raw,
                ca,
                crl: Default::default(),
            });
        }
        Ok(Trust {
            previous: loaded,
            cross,
            pem,
            digest: uplink_pki::trust_digest(&ders),
        })
    }
}

/// Whether a client certificate issued by `issuer_raw` (its issuer's DER name) is from one of
/// the workspace's CAs: the current one or a previous one not retired yet. Pure.
pub(crate) fn trusts(ws: &Workspace, issuer_raw: &[u8]) -> bool {
    ws.ca_subject_raw == issuer_raw
        || ws
            .rotation
            .previous
            .iter()
            .any(|p| p.subject_raw == issuer_raw)
}

/// Adds the trust set's digest to an answer of the sensor API.
pub(crate) fn announce(ws: &Workspace, resp: &mut Response<Full<Bytes>>) {
    if let Ok(v) = header::HeaderValue::from_str(&ws.rotation.digest) {
        resp.headers_mut().insert(uplink_protocol::TRUST_HEADER, v);
    }
}

/// `GET /api/v1/trust`: the trust set, PEM, the current CA first.
pub(crate) fn trust(ws: &Workspace, method: &Method) -> Response<Full<Bytes>> {
    if method != Method::GET {
        return crate::routes::method_not_allowed("GET");
    }
    let mut resp = Response::new(Full::new(Bytes::from(ws.rotation.pem.clone())));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/x-pem-file"),
    );
    resp
}

/// The CRL of a previous CA when `path` is `/pki/crl-<its sha256>.der`.
pub(crate) fn previous_crl(
    ws: &Workspace,
    path: &str,
    method: &Method,
) -> Option<Response<Full<Bytes>>> {
    let prev =
        ws.rotation.previous.iter().find(|p| {
            path != crate::crl::CRL_PATH && crate::crl::is_crl_path(path, &p.ca.sha256())
        })?;
    if method != Method::GET && method != Method::HEAD {
        return Some(crate::routes::method_not_allowed("GET, HEAD"));
    }
    Some(
        match crate::crl::signed_by(&prev.ca, &prev.crl, &ws.revoked_serials) {
            Ok(der) => {
                let mut resp = Response::new(Full::new(Bytes::from(der.as_ref().clone())));
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("application/pkix-crl"),
                );
                resp
            }
            Err(e) => {
                tracing::error!(workspace = %ws.name, error = %e, "signing a previous CA's CRL failed");
                crate::routes::unavailable()
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca(name: &str) -> (CertificateAuthority, uplink_store::PreviousCa) {
        let new = uplink_pki::generate_ca(name).unwrap();
        let ca = CertificateAuthority::from_pem(&new.cert_pem, &new.key_pem).unwrap();
        let prev = uplink_store::PreviousCa {
            sha256: new.sha256,
            cert_pem: new.cert_pem,
            key_pem: new.key_pem,
            replaced_at: 0,
        };
        (ca, prev)
    }

    #[test]
    fn the_trust_set_names_the_current_ca_first_and_cross_signs_it_by_each_previous() {
        let (current, _) = ca("w");
        let (old, old_record) = ca("w");
        let alone = Trust::load(&current, &[]).unwrap();
        assert!(alone.previous.is_empty() && alone.cross.is_empty());
        assert_eq!(alone.pem.matches("BEGIN CERTIFICATE").count(), 1);
        assert_eq!(
            alone.digest,
            uplink_pki::trust_digest(&[current.cert_der().clone()])
        );

        let both = Trust::load(&current, std::slice::from_ref(&old_record)).unwrap();
        assert!(both.pem.starts_with(current.cert_pem().trim_end()));
        assert_eq!(both.pem.matches("BEGIN CERTIFICATE").count(), 2);
        assert_eq!(
            both.digest,
            uplink_pki::trust_digest(&[old.cert_der().clone(), current.cert_der().clone()])
        );
        assert_ne!(both.digest, alone.digest);
        let cross = uplink_pki::cert_info(&both.cross[0]).unwrap();
        assert_eq!(
            cross.issuer_raw,
            uplink_pki::cert_info(old.cert_der()).unwrap().subject_raw
        );
        assert_eq!(
            cross.subject_raw,
            uplink_pki::cert_info(current.cert_der())
                .unwrap()
                .subject_raw
        );
        assert_eq!(both.previous[0].subject_raw, cross.issuer_raw);
    }
}
