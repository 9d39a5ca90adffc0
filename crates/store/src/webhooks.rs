//! Webhooks (issue #23): what crosses the [`crate::Store`] trait, and the pure decisions.
//!
//! A workspace has any number of webhooks (`uplink workspace set NAME --webhook URL
//! --webhook-secret-file F`). When a fleet evaluation opens, closes or reopens an issue, the
//! backend records one delivery per webhook **in the evaluation's transaction** (so an event is
//! recorded exactly once however many replicas evaluate). Replicas then claim due deliveries
//! with a lease (one claimer at a time), POST them, and record the outcome: delivered, retried
//! with backoff, or failed once it has been retried for [`GIVE_UP_AFTER_MS`]. The delivery log is
//! `uplink workspace deliveries NAME --json`.
//!
//! A webhook's secret is sealed under the service's master key at rest, bound to its workspace
//! and URL ([`seal_secret`], [`open_secret`]; `master.rs`): a copy of the store, a backup or a
//! `pg_dump` does not give it away. Both backends seal it on write, open it on read, seal
//! secrets stored plain by an earlier build when they open, and re-seal them in a master-key
//! rotation.

use uplink_fleet::{Issue, IssueState};

use crate::master::{webhook_secret_context, MasterKey};
use crate::StoreError;

/// A webhook secret as a backend stores it: sealed under `key` for `workspace` and `url`.
pub fn seal_secret(key: &MasterKey, workspace: &str, url: &str, secret: &str) -> String {
    key.seal(secret, &webhook_secret_context(workspace, url))
}

/// A stored webhook secret opened (one stored plain by an earlier build reads as it is). An
/// error names the master key file: the value was sealed under another key, or moved.
pub fn open_secret(
    key: &MasterKey,
    workspace: &str,
    url: &str,
    stored: &str,
) -> Result<String, StoreError> {
    key.open(stored, &webhook_secret_context(workspace, url))
}

/// How long a delivery is retried before it is given up.
pub const GIVE_UP_AFTER_MS: i64 = 60 * 60 * 1000;

/// A webhook of a workspace. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Webhook {
    pub url: String,
    /// The HMAC-SHA256 key of `X-Uplink-Signature`.
    pub secret: String,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.url)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// What happened to an issue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IssueEvent {
    Opened,
    Closed,
    Reopened,
}

impl IssueEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            IssueEvent::Opened => "issue.opened",
            IssueEvent::Closed => "issue.closed",
            IssueEvent::Reopened => "issue.reopened",
        }
    }
}

/// The events a fleet evaluation's issue writes make, given the issues as they were. Pure.
pub fn issue_events<'a>(before: &[Issue], writes: &'a [Issue]) -> Vec<(IssueEvent, &'a Issue)> {
    writes
        .iter()
        .filter_map(|w| {
            let was = before.iter().find(|b| b.issue_id == w.issue_id);
            let event = match (was.map(|b| b.state), w.state) {
                (None, IssueState::Open) => IssueEvent::Opened,
                (Some(IssueState::Closed), IssueState::Open) => IssueEvent::Reopened,
                (Some(IssueState::Open | IssueState::Suppressed), IssueState::Closed) => {
                    IssueEvent::Closed
                }
                _ => return None,
            };
            Some((event, w))
        })
        .collect()
}

/// The body POSTed for an event.
pub fn body(event: IssueEvent, workspace: &str, issue: &Issue) -> String {
    serde_json::json!({
        "event": event.as_str(),
        "workspace": workspace,
        "issue": crate::fleet::issue_json(issue),
    })
    .to_string()
}

/// One delivery, as the log shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub id: i64,
    pub workspace: String,
    pub url: String,
    pub event: String,
    pub issue_id: String,
    pub body: String,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    pub attempts: u32,
    pub created_at: i64,
    pub next_attempt_at: i64,
    pub delivered_at: Option<i64>,
    pub last_error: Option<String>,
}

impl Delivery {
    /// The JSON of `workspace deliveries --json` (no body: it is the issue's JSON).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "url": self.url,
            "event": self.event,
            "issue_id": self.issue_id,
            "state": self.state,
            "attempts": self.attempts,
            "created_at": crate::rfc3339_ms(self.created_at),
            "delivered_at": self.delivered_at.map(crate::rfc3339_ms),
            "last_error": self.last_error,
        })
    }
}

/// How an attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Delivered {
        at: i64,
    },
    /// Try again at `next_at`.
    Retry {
        next_at: i64,
        error: String,
    },
    Failed {
        error: String,
    },
}

/// What to record after a failed attempt number `attempts` (1 for the first) at `now`:
/// backoff 1 s, 2 s, 4 s … up to 60 s, until [`GIVE_UP_AFTER_MS`] after `created_at`. Pure.
pub fn after_failure(created_at: i64, attempts: u32, now: i64, error: String) -> Outcome {
    let delay = 1000i64
        .saturating_mul(1 << attempts.saturating_sub(1).min(6))
        .min(60_000);
    if now + delay - created_at > GIVE_UP_AFTER_MS {
        Outcome::Failed { error }
    } else {
        Outcome::Retry {
            next_at: now + delay,
            error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issue(id: &str, state: IssueState) -> Issue {
        Issue {
            issue_id: id.into(),
            workspace: "w".into(),
            sensor_id: Some("s".into()),
            kind: "disconnected".into(),
            severity: uplink_fleet::Severity::High,
            state,
            opened_at: 0,
            closed_at: None,
            occurrences: 1,
            description: "d".into(),
            fix: "f".into(),
            suppressed_until: None,
            suppress_reason: None,
            suppressed_by: None,
        }
    }

    #[test]
    fn events_of_issue_writes() {
        use IssueState::*;
        let cases: &[(Option<IssueState>, IssueState, Option<IssueEvent>)] = &[
            (None, Open, Some(IssueEvent::Opened)),
            (Some(Closed), Open, Some(IssueEvent::Reopened)),
            (Some(Open), Closed, Some(IssueEvent::Closed)),
            (Some(Suppressed), Closed, Some(IssueEvent::Closed)),
            (Some(Open), Open, None),
            (Some(Open), Suppressed, None),
            (Some(Suppressed), Open, None),
            (None, Closed, None),
        ];
        for (was, now, want) in cases {
            let before: Vec<Issue> = was.iter().map(|s| issue("i", *s)).collect();
            let writes = vec![issue("i", *now)];
            let got = issue_events(&before, &writes).first().map(|(e, _)| *e);
            assert_eq!(got, *want, "{was:?} -> {now:?}");
        }
    }

    #[test]
    fn backoff_doubles_to_a_minute_then_gives_up() {
        let t = |a, now| after_failure(0, a, now, "e".into());
        assert_eq!(
            t(1, 0),
            Outcome::Retry {
                next_at: 1000,
                error: "e".into()
            }
        );
        assert_eq!(
            t(2, 0),
            Outcome::Retry {
                next_at: 2000,
                error: "e".into()
            }
        );
        assert_eq!(
            t(30, 0),
            Outcome::Retry {
                next_at: 60_000,
                error: "e".into()
            }
        );
        assert_eq!(
            t(3, GIVE_UP_AFTER_MS),
            Outcome::Failed { error: "e".into() }
        );
        assert!(!format!(
            "{:?}",
            Webhook {
                url: "u".into(),
                secret: "s3cr3t".into()
            }
        )
        .contains("s3cr3t"));
    }
}
