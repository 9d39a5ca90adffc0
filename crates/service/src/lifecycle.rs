//! The audit trail of enrollments and renewals (issue #24): each answer of the enrollment and
//! renewal endpoints, accepted or refused, is recorded with who asked, from which address, and
//! the result. The handlers mark their answers with an [`Outcome`] (a response extension: the
//! refusal's code and message, or the sensor a certificate was issued to); [`audit`] turns it
//! into an entry. What it does not do: record the access key, a CSR or a certificate — only
//! ids, codes and messages the client was shown anyway.

use std::net::IpAddr;

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use uplink_diag::Code;
use uplink_store::{AuditEntry, Store};

/// What an enrollment or renewal answer meant, put on the response by the handler.
#[derive(Clone, Debug)]
pub(crate) enum Outcome {
    Issued { sensor_id: String },
    Refused { code: Code, message: String },
}

/// The entry for an answer, pure: `None` when the answer carries no [`Outcome`].
pub(crate) fn entry(
    workspace: &str,
    actor: String,
    peer: IpAddr,
    action: &str,
    status: u16,
    outcome: Option<&Outcome>,
    now_ms: i64,
) -> Option<AuditEntry> {
    let (sensor_id, result, detail) = match outcome? {
        Outcome::Issued { sensor_id } => (Some(sensor_id.clone()), "ok".to_owned(), String::new()),
        Outcome::Refused { code, message } => (
            None,
            "refused".to_owned(),
            format!("{status} {code}: {message}"),
        ),
    };
    Some(AuditEntry {
        workspace: workspace.to_owned(),
        at: now_ms,
        actor,
        source: peer.to_string(),
        action: action.to_owned(),
        sensor_id,
        result,
        detail,
    })
}

/// Records the audit entry of an enrollment or renewal answer. A failure to record is logged:
/// the answer stands (a store that cannot record could not have enrolled either).
pub(crate) async fn audit<S: Store>(
    shared: &crate::Shared<S>,
    workspace: &str,
    actor: String,
    peer: IpAddr,
    action: &str,
    resp: &Response<Full<Bytes>>,
) {
    let Some(e) = entry(
        workspace,
        actor,
        peer,
        action,
        resp.status().as_u16(),
        resp.extensions().get::<Outcome>(),
        uplink_store::now_ms(),
    ) else {
        return;
    };
    if let Err(err) = shared.store.record_audit(e).await {
        tracing::warn!(error = %err, action, "recording the audit entry failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_become_entries() {
        let peer: IpAddr = "192.0.2.7".parse().unwrap();
        let issued = Outcome::Issued {
            sensor_id: "s1".into(),
        };
        let refused = Outcome::Refused {
            code: Code::ENROLL_DENIED,
            message: "wrong access key".into(),
        };
        // (outcome, sensor_id, result, detail)
        for (outcome, sensor, result, detail) in [
            (Some(&issued), Some("s1"), "ok", ""),
            (
                Some(&refused),
                None,
                "refused",
                "403 ENROLL_DENIED: wrong access key",
            ),
        ] {
            let e = entry("w", "a".into(), peer, "enroll", 403, outcome, 7).unwrap();
            assert_eq!(e.sensor_id.as_deref(), sensor);
            assert_eq!((e.result.as_str(), e.detail.as_str()), (result, detail));
            assert_eq!((e.source.as_str(), e.at), ("192.0.2.7", 7));
        }
        assert!(entry("w", "a".into(), peer, "enroll", 200, None, 7).is_none());
    }
}
