//! What crosses the [`crate::Store`] trait for fleet health (issue #22), and the one plan both
//! backends apply.
//!
//! A backend reads each sensor's [`FleetInputs`] inside one transaction, hands them to [`plan`]
//! (which runs the pure derivation of `uplink-fleet`), and writes the [`FleetUpdate`]s in the same
//! transaction: the SQL differs per backend, the decisions do not.

use uplink_fleet::{Issue, Observation, Outage, Policy};

/// A report (heartbeat) a sensor sent, ready to store.
#[derive(Debug, Clone)]
pub struct FleetReport {
    pub sensor_id: String,
    /// Unix milliseconds, the service's clock.
    pub received_at: i64,
    /// The heartbeat as JSON (what `fleet show` prints as the last report).
    pub body: String,
    /// The sensor's clock in the report (the newest report by this clock is kept).
    pub sensor_time: Option<i64>,
    /// Its outage log (merged into the stored one by start time).
    pub outages: Vec<Outage>,
}

impl FleetReport {
    /// From a parsed heartbeat.
    pub fn new(
        sensor_id: &str,
        received_at: i64,
        h: &uplink_protocol::heartbeat::Heartbeat,
    ) -> Self {
        FleetReport {
            sensor_id: sensor_id.to_owned(),
            received_at,
            body: serde_json::to_string(h).unwrap_or_else(|_| "{}".into()),
            sensor_time: h
                .sensor_time
                .as_deref()
                .and_then(uplink_fleet::parse_rfc3339),
            outages: h.outages.iter().filter_map(Outage::from_report).collect(),
        }
    }
}

/// Most outage intervals kept per sensor (the newest).
pub const MAX_STORED_OUTAGES: usize = 64;

/// One sensor as the fleet commands show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetSensor {
    pub sensor_id: String,
    pub workspace: String,
    pub name: String,
    pub enrolled_at: i64,
    /// The last contact (batch or report).
    pub last_seen: Option<i64>,
    /// The last report (heartbeat JSON) and when it was received.
    pub report: Option<String>,
    pub report_received_at: Option<i64>,
    /// As of the last evaluation (`None`: never evaluated yet).
    pub state: Option<String>,
    pub health: Option<String>,
    pub outages: Vec<Outage>,
}

/// Everything the plan needs of one sensor.
#[derive(Debug, Clone)]
pub struct FleetInputs {
    pub workspace: String,
    pub sensor_id: String,
    pub enrolled_at: i64,
    pub last_seen: Option<i64>,
    pub report: Option<String>,
    pub report_received_at: Option<i64>,
    pub outages: Vec<Outage>,
    pub issues: Vec<Issue>,
    /// The state and health stored by the previous evaluation.
    pub state: Option<String>,
    pub health: Option<String>,
    /// The workspace's `disconnected_after` setting (`None`: the policy's).
    pub disconnected_after_secs: Option<u64>,
}

/// What to write for one sensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetUpdate {
    pub workspace: String,
    pub sensor_id: String,
    pub state: String,
    pub health: String,
    /// Whether state or health differ from what was stored.
    pub changed: bool,
    /// Issue rows to insert or replace.
    pub issues: Vec<Issue>,
}

/// What an evaluation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetEvaluation {
    /// False when another replica holds the evaluation lock (it evaluates; this one skipped).
    pub ran: bool,
    pub sensors: u64,
    pub issues_written: u64,
}

/// The updates for `inputs`, at `now`, under `policy` (its `disconnected_after` is the
/// workspace's). Pure.
pub fn plan(now_ms: i64, policy: &Policy, inputs: &[FleetInputs]) -> Vec<FleetUpdate> {
    inputs
        .iter()
        .map(|i| {
            let report = i
                .report
                .as_deref()
                .and_then(|b| uplink_protocol::heartbeat::parse(b.as_bytes()).ok());
            let seen = match (i.last_seen, i.report_received_at) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            let o = Observation {
                workspace: &i.workspace,
                sensor_id: &i.sensor_id,
                enrolled_ms: i.enrolled_at,
                seen_ms: seen,
                report: report.as_ref(),
                report_received_ms: i.report_received_at,
                outages: &i.outages,
            };
            let ws_policy = Policy {
                disconnected_after_secs: i
                    .disconnected_after_secs
                    .filter(|s| *s > 0)
                    .unwrap_or(policy.disconnected_after_secs),
                ..policy.clone()
            };
            let a = uplink_fleet::assess(now_ms, &o, &ws_policy);
            let writes = uplink_fleet::reconcile(now_ms, &o, &a, &i.issues, &ws_policy);
            let after: Vec<&Issue> = i
                .issues
                .iter()
                .filter(|x| !writes.iter().any(|w| w.issue_id == x.issue_id))
                .chain(writes.iter())
                .collect();
            let health = uplink_fleet::health(after).as_str().to_owned();
            let state = a.state.as_str().to_owned();
            FleetUpdate {
                workspace: i.workspace.clone(),
                sensor_id: i.sensor_id.clone(),
                changed: i.state.as_deref() != Some(&state) || i.health.as_deref() != Some(&health),
                state,
                health,
                issues: writes,
            }
        })
        .collect()
}

/// The codes of an outage as stored (comma-separated: codes are `[A-Z_]+`).
pub fn join_codes(codes: &[String]) -> String {
    codes.join(",")
}

pub fn split_codes(s: &str) -> Vec<String> {
    s.split(',')
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect()
}

// The JSON shapes of the fleet, one definition for `uplink fleet … --json` and the admin API
// (docs/fleet.md, docs/admin-api.md).

fn json_time(ms: Option<i64>) -> serde_json::Value {
    ms.map_or(serde_json::Value::Null, |t| {
        serde_json::Value::String(uplink_fleet::rfc3339(t))
    })
}

/// A sensor as `fleet list --json` prints it (`issues`: the workspace's, or the sensor's;
/// `revocation`: the sensor's, if it was revoked, which gives its `lifecycle`).
pub fn sensor_json(
    s: &FleetSensor,
    issues: &[Issue],
    revocation: Option<&crate::Revocation>,
) -> serde_json::Value {
    use serde_json::Value;
    let report: Value = s
        .report
        .as_deref()
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    let open = issues
        .iter()
        .filter(|i| {
            i.sensor_id.as_deref() == Some(&s.sensor_id)
                && i.state == uplink_fleet::IssueState::Open
        })
        .count();
    serde_json::json!({
        "sensor_id": s.sensor_id,
        "name": s.name,
        "hostname": report.get("hostname").cloned().unwrap_or(Value::Null),
        "version": report.get("version").cloned().unwrap_or(Value::Null),
        "state": s.state,
        "lifecycle": crate::Lifecycle::of(revocation).as_str(),
        // Filled in by the updater issue.
        "software": "current",
        "health": s.health,
        "last_seen": json_time(s.last_seen),
        "route": report.get("route").cloned().unwrap_or(Value::Null),
        "queue": {
            "events": report.pointer("/queue/events").cloned().unwrap_or(Value::Null),
            "oldest_secs": report.pointer("/queue/oldest_secs").cloned().unwrap_or(Value::Null),
        },
        "open_issues": open,
        // Central policy (issue #26): the version the sensor applied (null: its own settings).
        "policy": report.pointer("/policy/applied").cloned().unwrap_or(Value::Null),
        "policy_rejected": report.pointer("/policy/rejected/version").cloned().unwrap_or(Value::Null),
    })
}

/// A sensor as `fleet show --json` prints it: [`sensor_json`]'s fields, its last report, its
/// outage log and its issues (`issues`: the sensor's), and when revoked, when and why.
pub fn sensor_detail_json(
    s: &FleetSensor,
    issues: &[Issue],
    revocation: Option<&crate::Revocation>,
) -> serde_json::Value {
    use serde_json::Value;
    let mut v = sensor_json(s, issues, revocation);
    if let Some(r) = revocation {
        v["revoked_at"] = Value::String(uplink_fleet::rfc3339(r.revoked_at));
        v["revoke_reason"] = Value::String(r.reason.clone());
    }
    v["report"] = s
        .report
        .as_deref()
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    v["report_received_at"] = json_time(s.report_received_at);
    v["outages"] = s
        .outages
        .iter()
        .map(|o| {
            serde_json::json!({
                "start": uplink_fleet::rfc3339(o.start_ms),
                "end": json_time(o.end_ms),
                "codes": o.codes,
                "proxy": o.proxy,
                "failures": o.failures,
            })
        })
        .collect();
    v["issues"] = issues.iter().map(issue_json).collect();
    v
}

/// An issue as `fleet issues --json` prints it.
pub fn issue_json(i: &Issue) -> serde_json::Value {
    serde_json::json!({
        "issue_id": i.issue_id,
        "kind": i.kind,
        "severity": i.severity,
        "sensor_id": i.sensor_id,
        "state": i.state,
        "opened_at": uplink_fleet::rfc3339(i.opened_at),
        "closed_at": json_time(i.closed_at),
        "occurrences": i.occurrences,
        "description": i.description,
        "fix": i.fix,
        "suppressed_until": json_time(i.suppressed_until),
        "suppress_reason": i.suppress_reason,
        "suppressed_by": i.suppressed_by,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(last_seen_ago: i64, report: Option<&str>) -> FleetInputs {
        FleetInputs {
            workspace: "w".into(),
            sensor_id: "s".into(),
            enrolled_at: 0,
            last_seen: Some(1_000_000 - last_seen_ago * 1000),
            report: report.map(str::to_owned),
            report_received_at: None,
            outages: vec![],
            issues: vec![],
            state: Some("online".into()),
            health: Some("healthy".into()),
            disconnected_after_secs: None,
        }
    }

    #[test]
    fn plans_state_health_and_issues() {
        let p = Policy {
            online_buffer_secs: 5,
            disconnected_after_secs: 60,
            ..Policy::default()
        };
        let hb = r#"{"format":2,"interval_secs":10,"fallback":true,"route":"DIRECT"}"#;
        // (seconds since seen, report, state, health, issue kinds written, changed)
        type Case<'a> = (i64, Option<&'a str>, &'a str, &'a str, Vec<&'a str>, bool);
        let cases: Vec<Case> = vec![
            (0, None, "online", "healthy", vec![], false),
            (
                16,
                Some(r#"{"format":2,"interval_secs":10}"#),
                "late",
                "healthy",
                vec![],
                true,
            ),
            (
                61,
                Some(hb),
                "disconnected",
                "high",
                vec!["disconnected", "proxy_fallback"],
                true,
            ),
            (
                0,
                Some(hb),
                "online",
                "medium",
                vec!["proxy_fallback"],
                true,
            ),
            // A report that does not parse counts as none.
            (0, Some("[]"), "online", "healthy", vec![], false),
        ];
        for (ago, report, state, health, kinds, changed) in cases {
            let u = &plan(1_000_000, &p, &[inputs(ago, report)])[0];
            let got: Vec<&str> = u.issues.iter().map(|i| i.kind.as_str()).collect();
            assert_eq!(
                (u.state.as_str(), u.health.as_str(), got, u.changed),
                (state, health, kinds, changed),
                "{ago} {report:?}"
            );
        }
        // The workspace's own setting wins over the policy's.
        let mut own = inputs(61, None);
        own.disconnected_after_secs = Some(3600);
        assert_eq!(plan(1_000_000, &p, &[own])[0].state, "online");
        assert_eq!(
            split_codes(&join_codes(&["A".into(), "B_C".into()])),
            vec!["A", "B_C"]
        );
        assert!(split_codes("").is_empty());
    }
}
