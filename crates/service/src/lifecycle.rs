//! The audit trail of enrollments and renewals (issue #24): each answer of the enrollment and
//! renewal endpoints, accepted or refused, is recorded with who asked, from which address, and
//! the result. The handlers mark their answers with an [`Outcome`] (a response extension: the
//! refusal's code and message, or the sensor a certificate was issued to); [`audit`] turns it
//! into an entry. What it does not do: record the access key, a CSR or a certificate — only
//! ids, codes and messages the client was shown anyway.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Mutex;

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use uplink_diag::Code;
use uplink_store::{now_ms, AuditEntry, RateHit, Store};

use crate::registry::Workspace;

/// What an enrollment or renewal answer meant, put on the response by the handler (`Issued`
/// also stands for an uninstall recorded: `ok` for that sensor).
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

// ---------------------------------------------------------------------------------------------
// Enrollment limits (issue #24). Two fixed-window counters in the store, shared by every replica
// (`Store::rate_hit`): failed enrollments per workspace and source address (checked before an
// enrollment is read, counted after a refusal), and successful ones per workspace (a slot taken
// once the access key is right, before the certificate is signed: sites behind one proxy share
// an address, so success cannot be limited per address). Both answer 429 with Retry-After.

/// The counter of failed enrollments from `peer` into `workspace`.
pub(crate) fn failed_scope(workspace: &str, peer: IpAddr) -> String {
    format!("enroll-failed:{workspace}:{peer}")
}

/// The counter of successful enrollments into `workspace`.
pub(crate) fn enrolled_scope(workspace: &str) -> String {
    format!("enrolled:{workspace}")
}

/// Whether an enrollment answer counts as a failed enrollment: the client's fault (4xx), not a
/// 429 (already limited) and not the service's trouble (5xx). Pure.
pub(crate) fn counts_as_failure(status: u16) -> bool {
    (400..500).contains(&status) && status != 429
}

/// Retry-After in whole seconds for a window ending in `ms`: rounded up, at least 1. Pure.
pub(crate) fn retry_after_secs(ms: i64) -> u64 {
    (ms.max(0) as u64).div_ceil(1000).max(1)
}

/// The rate-limit windows a replica recorded a 429 of, so a flood adds one audit entry per
/// counter and window rather than one per request. Bounded (forgotten whole when full).
#[derive(Default)]
pub struct Limited(Mutex<HashSet<(String, i64)>>);

impl Limited {
    const MAX: usize = 10_000;

    /// Whether this is the first 429 of `scope`'s window ending at `window_end` on this replica.
    fn first(&self, scope: &str, window_end: i64) -> bool {
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= Self::MAX {
            seen.clear();
        }
        seen.insert((scope.to_owned(), window_end))
    }
}

/// A 429 answer: `Retry-After`, the code `ENROLL_RATE_LIMITED`, and (the first time in the
/// window on this replica) the [`Outcome`] that puts it in the audit trail.
fn too_many(
    ws: &Workspace,
    scope: &str,
    now: i64,
    window_end: i64,
    message: String,
) -> Response<Full<Bytes>> {
    let secs = retry_after_secs(window_end - now);
    let message = format!("{message}; try again in {secs} s (Retry-After)");
    tracing::warn!(workspace = %ws.name, scope, retry_after = secs, "enrollment refused: rate limited");
    let mut resp = crate::routes::error(
        http::StatusCode::TOO_MANY_REQUESTS,
        Code::ENROLL_RATE_LIMITED,
        message.clone(),
    );
    resp.headers_mut()
        .insert(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
    // `error` marks every refusal for the audit trail: keep the mark on the first 429 only.
    if ws.limited.first(scope, window_end) {
        resp.extensions_mut().insert(Outcome::Refused {
            code: Code::ENROLL_RATE_LIMITED,
            message: format!("{message} (further 429s of this window are not recorded one by one)"),
        });
    } else {
        resp.extensions_mut().remove::<Outcome>();
    }
    resp
}

/// The 429 for an address whose failed enrollments reached the workspace's limit in this
/// window, checked before the request is read. A store that cannot count lets the enrollment
/// through (it needs the store anyway, and says so if it fails).
pub(crate) async fn failed_too_often<S: Store>(
    shared: &crate::Shared<S>,
    ws: &Workspace,
    peer: IpAddr,
) -> Option<Response<Full<Bytes>>> {
    let limits = ws.lifecycle;
    let window_ms = limits.enroll_window_secs as i64 * 1000;
    let scope = failed_scope(&ws.name, peer);
    let now = now_ms();
    match shared.store.rate_count(&scope, now, window_ms).await {
        Ok(n) if n >= u64::from(limits.failed_enroll_limit) => {
            let (_, end) = uplink_store::lifecycle::rate_window(now, window_ms);
            Some(too_many(
                ws,
                &scope,
                now,
                end,
                format!(
                    "{n} failed enrollments from {peer} into workspace {:?} in {} s (the limit): check the access key in the bundle",
                    ws.name, limits.enroll_window_secs
                ),
            ))
        }
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(workspace = %ws.name, error = %e, "cannot read the failed-enrollment counter; not limiting");
            None
        }
    }
}

/// Counts an enrollment answer that was a failure (see [`counts_as_failure`]).
pub(crate) async fn count_failure<S: Store>(
    shared: &crate::Shared<S>,
    ws: &Workspace,
    peer: IpAddr,
    resp: &Response<Full<Bytes>>,
) {
    if !counts_as_failure(resp.status().as_u16()) {
        return;
    }
    let window_ms = ws.lifecycle.enroll_window_secs as i64 * 1000;
    let scope = failed_scope(&ws.name, peer);
    if let Err(e) = shared
        .store
        .rate_hit(&scope, now_ms(), window_ms, u64::MAX)
        .await
    {
        tracing::warn!(workspace = %ws.name, error = %e, "cannot count a failed enrollment");
    }
}

/// Takes one of the workspace's enrollment slots of this window, or answers 429. A store that
/// cannot count answers 503 (the enrollment could not be stored either).
pub(crate) async fn enrollment_slot<S: Store>(
    shared: &crate::Shared<S>,
    ws: &Workspace,
) -> Result<(), Response<Full<Bytes>>> {
    let limits = ws.lifecycle;
    let window_ms = limits.enroll_window_secs as i64 * 1000;
    let scope = enrolled_scope(&ws.name);
    let now = now_ms();
    match shared
        .store
        .rate_hit(&scope, now, window_ms, u64::from(limits.enroll_limit))
        .await
    {
        Ok(RateHit::Counted { .. }) => Ok(()),
        Ok(RateHit::Limited { retry_after_ms }) => Err(too_many(
            ws,
            &scope,
            now,
            now + retry_after_ms,
            format!(
                "workspace {:?} took its {} enrollments of this {} s window (its limit)",
                ws.name, limits.enroll_limit, limits.enroll_window_secs
            ),
        )),
        Err(e) => {
            tracing::error!(workspace = %ws.name, error = %e, "cannot take an enrollment slot");
            Err(crate::routes::unavailable())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// `POST /api/v1/uninstall` (issue #24): the sensor says it is being uninstalled. Its certificate
// is revoked (the key is deleted with the sensor) and it shows `uninstalled` in the fleet.

/// Marks the sensor uninstalled: `204`, or `503` when the store cannot record it (the sensor
/// uninstalls all the same; the administrator can decommission it).
pub(crate) async fn uninstalled<S: Store>(
    shared: &crate::Shared<S>,
    ws: &Workspace,
    sensor_id: &str,
) -> Response<Full<Bytes>> {
    match shared.store.mark_uninstalled(&ws.name, sensor_id).await {
        Ok(_) => {
            tracing::info!(workspace = %ws.name, sensor = %sensor_id, "sensor uninstalled: its certificate is revoked");
            let mut resp = Response::new(Full::new(Bytes::new()));
            *resp.status_mut() = http::StatusCode::NO_CONTENT;
            resp.extensions_mut().insert(Outcome::Issued {
                sensor_id: sensor_id.to_owned(),
            });
            resp
        }
        Err(uplink_store::StoreError::NoSuchSensor(id)) => crate::routes::error(
            http::StatusCode::FORBIDDEN,
            Code::MTLS_REJECTED,
            format!(
                "sensor {id} is not enrolled in workspace {:?}: nothing to uninstall there",
                ws.name
            ),
        ),
        Err(e) => {
            tracing::error!(workspace = %ws.name, sensor = %sensor_id, error = %e, "recording an uninstall failed");
            crate::routes::unavailable()
        }
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

    #[test]
    fn what_counts_as_a_failed_enrollment_and_how_long_to_wait() {
        for (status, counts) in [
            (200, false),
            (400, true),
            (401, true),
            (409, true),
            (413, true),
            (429, false),
            (503, false),
        ] {
            assert_eq!(counts_as_failure(status), counts, "{status}");
        }
        for (ms, secs) in [
            (-5, 1),
            (0, 1),
            (1, 1),
            (999, 1),
            (1000, 1),
            (1001, 2),
            (59_999, 60),
        ] {
            assert_eq!(retry_after_secs(ms), secs, "{ms}");
        }
    }

    #[test]
    fn a_window_is_audited_once_per_scope() {
        let l = Limited::default();
        assert!(l.first("a", 10));
        assert!(!l.first("a", 10));
        assert!(l.first("b", 10));
        assert!(l.first("a", 20));
    }
}
