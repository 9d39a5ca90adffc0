//! Fleet health: what the service derives about each sensor, pure.
//!
//! Inputs are what the store holds — when a sensor was last in contact, its last report (a
//! heartbeat, `uplink_protocol::heartbeat`), its outage log, the workspace's thresholds — and
//! the time now. Outputs are the sensor's `state` ([`state`]: `online`, `late`, `disconnected`,
//! `inactive`), the conditions its report shows ([`assess`]), and the health issues to open,
//! update, close or let out of suppression ([`reconcile`]), from which its `health` follows
//! ([`health`]). No clock, no I/O: both store backends run these functions inside the
//! transaction that reads their inputs and writes their outputs, so every replica derives the
//! same answer.
//!
//! An issue is one row per (sensor, kind) for the sensor's life: it opens, closes when the
//! condition clears, and reopens on recurrence (its `occurrences` counts the openings); while it
//! is suppressed it stays suppressed whatever the condition does, until the suppression ends.
//! Its `issue_id` is derived from (workspace, sensor, kind), so both backends name it the same.
//!
//! Timestamps are Unix milliseconds here, RFC 3339 UTC ([`rfc3339`]) wherever a person or a
//! script reads them.

use uplink_diag::Code;
use uplink_protocol::heartbeat::Heartbeat;

/// The interval assumed for a sensor that never sent a format-2 report.
pub const DEFAULT_INTERVAL_SECS: u64 = 60;
/// The workspace's default `disconnected_after`.
pub const DEFAULT_DISCONNECTED_AFTER_SECS: u64 = 600;
/// Not seen for this long: `inactive`.
pub const INACTIVE_AFTER_SECS: u64 = 14 * 86_400;
/// Suppressions last this long unless told otherwise.
pub const DEFAULT_SUPPRESS_DAYS: u64 = 7;

/// The thresholds of a derivation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Added to a sensor's own interval before it is `late` (as Fleet does: a heartbeat may be
    /// delayed by jitter, a reconnection, a busy service).
    pub online_buffer_secs: u64,
    /// Not seen for this long: `disconnected` (the workspace's `disconnected_after`).
    pub disconnected_after_secs: u64,
    /// Not seen for this long: `inactive`.
    pub inactive_after_secs: u64,
    /// The sensor's clock and the service's differ by more than this: `clock_skew`.
    pub clock_skew_secs: u64,
    /// The oldest queued event is older than this many intervals (and at least
    /// `backlog_min_secs`): `backlog_growing`.
    pub backlog_intervals: u64,
    pub backlog_min_secs: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            online_buffer_secs: 60,
            disconnected_after_secs: DEFAULT_DISCONNECTED_AFTER_SECS,
            inactive_after_secs: INACTIVE_AFTER_SECS,
            clock_skew_secs: 120,
            backlog_intervals: 10,
            backlog_min_secs: 600,
        }
    }
}

macro_rules! tokens {
    ($(#[$m:meta])* $name:ident { $($v:ident = $s:literal),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name { $($v),* }
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$v),*];
            /// The stable token (JSON, the store, the CLI).
            pub fn as_str(self) -> &'static str {
                match self { $($name::$v => $s),* }
            }
            pub fn parse(s: &str) -> Option<$name> {
                match s { $($s => Some($name::$v),)* _ => None }
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

tokens!(
    /// How recently a sensor was in contact.
    State { Online = "online", Late = "late", Disconnected = "disconnected", Inactive = "inactive" }
);
tokens!(
    /// An issue's severity (ordered: `High` is the worst).
    Severity { Low = "low", Medium = "medium", High = "high" }
);
tokens!(
    /// A sensor's health: `healthy`, or the severity of its worst open issue.
    Health { Healthy = "healthy", Low = "low", Medium = "medium", High = "high" }
);
tokens!(
    /// Where an issue stands.
    IssueState { Open = "open", Closed = "closed", Suppressed = "suppressed" }
);
tokens!(
    /// The kinds of issue this build opens (the token is the contract).
    Kind {
        Disconnected = "disconnected",
        ProxyAuthFailing = "proxy_auth_failing",
        ProxyFallback = "proxy_fallback",
        TlsIntercepted = "tls_intercepted",
        BacklogGrowing = "backlog_growing",
        CertExpiring = "cert_expiring",
        ClockSkew = "clock_skew",
        QueueDamaged = "queue_damaged",
        DiskFull = "disk_full",
        PolicyRejected = "policy_rejected",
    }
);

impl Kind {
    pub fn severity(self) -> Severity {
        match self {
            Kind::Disconnected
            | Kind::ProxyAuthFailing
            | Kind::TlsIntercepted
            | Kind::QueueDamaged
            | Kind::DiskFull => Severity::High,
            Kind::ProxyFallback
            | Kind::BacklogGrowing
            | Kind::CertExpiring
            | Kind::PolicyRejected => Severity::Medium,
            Kind::ClockSkew => Severity::Low,
        }
    }
}

/// An outage interval as stored (from a report's outage log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outage {
    pub start_ms: i64,
    pub end_ms: Option<i64>,
    pub codes: Vec<String>,
    pub proxy: Option<String>,
    pub failures: u64,
}

impl Outage {
    /// A report's interval; `None` when its start is not RFC 3339.
    pub fn from_report(o: &uplink_protocol::heartbeat::Outage) -> Option<Outage> {
        Some(Outage {
            start_ms: parse_rfc3339(&o.start)?,
            end_ms: o.end.as_deref().and_then(parse_rfc3339),
            codes: o.codes.clone(),
            proxy: o.proxy.clone(),
            failures: o.failures,
        })
    }

    /// One line: when, which codes, through which proxy.
    pub fn describe(&self) -> String {
        let end = self.end_ms.map_or_else(
            || "still failing".to_owned(),
            |e| format!("to {}", rfc3339(e)),
        );
        let via = self
            .proxy
            .as_deref()
            .map_or_else(|| " (direct)".to_owned(), |p| format!(" through proxy {p}"));
        format!(
            "uploads failed from {} {end} with {}{via} ({} failed attempts)",
            rfc3339(self.start_ms),
            self.codes.join(", "),
            self.failures
        )
    }
}

/// What the store knows of one sensor.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    pub workspace: &'a str,
    pub sensor_id: &'a str,
    pub enrolled_ms: i64,
    /// The last contact: an ingested batch or a report, whichever is later.
    pub seen_ms: Option<i64>,
    pub report: Option<&'a Heartbeat>,
    /// When the service received `report`.
    pub report_received_ms: Option<i64>,
    /// The sensor's stored outage log, oldest first.
    pub outages: &'a [Outage],
}

impl Observation<'_> {
    /// The sensor's heartbeat period: its report's, else the default.
    pub fn interval_secs(&self) -> u64 {
        self.report
            .and_then(|r| r.interval_secs)
            .filter(|i| *i > 0)
            .unwrap_or(DEFAULT_INTERVAL_SECS)
    }
}

/// A sensor's state from its last contact (`None`: never; its enrollment counts). Pure.
pub fn state(now_ms: i64, last_ms: i64, interval_secs: u64, p: &Policy) -> State {
    let age = now_ms.saturating_sub(last_ms).max(0) as u64;
    if age > p.inactive_after_secs * 1000 {
        State::Inactive
    } else if age > p.disconnected_after_secs * 1000 {
        State::Disconnected
    } else if age > (interval_secs + p.online_buffer_secs) * 1000 {
        State::Late
    } else {
        State::Online
    }
}

/// A condition an issue stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub kind: Kind,
    pub description: String,
    pub fix: String,
}

/// The state of a sensor and the conditions that hold now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    pub state: State,
    pub conditions: Vec<Condition>,
}

fn fix_of(code: &str, otherwise: &str) -> String {
    code.parse::<Code>()
        .map(|c| c.fix().to_owned())
        .unwrap_or_else(|_| otherwise.to_owned())
}

/// The sensor's state and the conditions its last contact and report show. Pure.
pub fn assess(now_ms: i64, o: &Observation<'_>, p: &Policy) -> Assessment {
    let interval = o.interval_secs();
    let last = o.seen_ms.unwrap_or(o.enrolled_ms);
    let state = state(now_ms, last, interval, p);
    let mut conditions = Vec::new();
    if matches!(state, State::Disconnected | State::Inactive) {
        let before = o
            .report
            .and_then(|r| {
                let code = r.last_error_code.as_deref()?;
                Some(format!(
                    "; its last report before said: last error {code}{}",
                    r.last_error_at
                        .as_deref()
                        .map(|t| format!(" at {t}"))
                        .unwrap_or_default()
                ))
            })
            .unwrap_or_default();
        let fix = o
            .report
            .and_then(|r| r.last_error_code.as_deref())
            .map(|c| fix_of(c, ""))
            .filter(|f| !f.is_empty())
            .unwrap_or_else(|| {
                "Check that the host is up and the sensor runs (systemctl status uplink-sensor; uplink sensor status); once it is back, its outage log says where the path broke".to_owned()
            });
        conditions.push(Condition {
            kind: Kind::Disconnected,
            description: format!(
                "not seen since {} (more than {} s){before}",
                o.seen_ms.map_or_else(|| "enrollment".to_owned(), rfc3339),
                p.disconnected_after_secs
            ),
            fix,
        });
    }
    let Some(r) = o.report else {
        return Assessment { state, conditions };
    };
    // An error is current when nothing was delivered after it.
    let current_error = r.last_error_code.as_deref().filter(|_| {
        match (
            r.last_error_at.as_deref().and_then(parse_rfc3339),
            r.last_success_at.as_deref().and_then(parse_rfc3339),
        ) {
            (Some(e), Some(s)) => e > s,
            (_, None) => true,
            (None, Some(_)) => false,
        }
    });
    let open_codes: Vec<&str> = r
        .outages
        .iter()
        .filter(|o| o.end.is_none())
        .flat_map(|o| o.codes.iter().map(String::as_str))
        .collect();
    let failing = |codes: &[&str]| -> Option<String> {
        current_error
            .filter(|c| codes.contains(c))
            .or_else(|| open_codes.iter().copied().find(|c| codes.contains(c)))
            .map(str::to_owned)
    };
    if let Some(code) = failing(&[
        "PROXY_AUTH_FAILED",
        "PROXY_AUTH_REQUIRED",
        "PROXY_CREDENTIALS_WITHHELD",
    ]) {
        conditions.push(Condition {
            kind: Kind::ProxyAuthFailing,
            description: format!(
                "the proxy {} refuses the sensor's credentials ({code})",
                r.route.as_deref().unwrap_or("in use")
            ),
            fix: fix_of(&code, ""),
        });
    }
    if r.fallback {
        conditions.push(Condition {
            kind: Kind::ProxyFallback,
            description: format!(
                "the sensor uploads through a fallback route ({}): {}",
                r.route.as_deref().unwrap_or("?"),
                r.fallback_reason.as_deref().unwrap_or("its first route failed")
            ),
            fix: "Repair the first route (the reason names the proxy and its code; uplink check on the sensor's host shows each step), or make the fallback the configured route".to_owned(),
        });
    }
    if let Some(code) = failing(&["TLS_INTERCEPTED"]) {
        conditions.push(Condition {
            kind: Kind::TlsIntercepted,
            description: "a TLS-inspecting proxy or firewall replaces the service's certificate"
                .to_owned(),
            fix: fix_of(&code, ""),
        });
    }
    if let Some(age) = r.queue.oldest_secs {
        let bound = (p.backlog_intervals * interval).max(p.backlog_min_secs);
        if r.queue.events > 0 && age > bound {
            conditions.push(Condition {
                kind: Kind::BacklogGrowing,
                description: format!(
                    "{} events ({} bytes) are queued, the oldest for up to {age} s (more than {bound} s)",
                    r.queue.events, r.queue.bytes
                ),
                fix: "The sensor cannot upload as fast as it collects: check its route (uplink check) and the service's load; fewer or smaller sources help".to_owned(),
            });
        }
    }
    let not_after = r.cert_not_after.as_deref().and_then(parse_rfc3339);
    let not_before = r.cert_not_before.as_deref().and_then(parse_rfc3339);
    let expiring = match (not_before, not_after) {
        (Some(b), Some(a)) if a > b => (a - now_ms) < (a - b) / 6,
        (None, Some(a)) => a < now_ms,
        _ => false,
    };
    if expiring || r.cert_renewal_failed {
        conditions.push(Condition {
            kind: Kind::CertExpiring,
            description: format!(
                "the client certificate expires at {}{}",
                r.cert_not_after.as_deref().unwrap_or("?"),
                if r.cert_renewal_failed { " and its renewal failed" } else { "" }
            ),
            fix: "The sensor renews its certificate by itself over its route: fix the route if it is failing; an expired sensor must be enrolled again (uplink sensor install)".to_owned(),
        });
    }
    if let (Some(sensor), Some(received)) = (
        r.sensor_time.as_deref().and_then(parse_rfc3339),
        o.report_received_ms,
    ) {
        let skew = (sensor - received).abs() / 1000;
        if skew as u64 > p.clock_skew_secs {
            conditions.push(Condition {
                kind: Kind::ClockSkew,
                description: format!(
                    "the sensor's clock is {skew} s {} the service's",
                    if sensor > received { "ahead of" } else { "behind" }
                ),
                fix: "Synchronise the host's clock (chrony or systemd-timesyncd); certificates and event times depend on it".to_owned(),
            });
        }
    }
    if r.queue_damaged {
        conditions.push(Condition {
            kind: Kind::QueueDamaged,
            description: "records of the sensor's queue were damaged on disk and lost".to_owned(),
            fix: Code::QUEUE_DAMAGED.fix().to_owned(),
        });
    }
    if r.disk_full {
        conditions.push(Condition {
            kind: Kind::DiskFull,
            description: "the sensor's file system is full: its sources wait".to_owned(),
            fix: Code::DISK_FULL.fix().to_owned(),
        });
    }
    // Central policy (issue #26): the sensor kept its working route rather than the policy's.
    if let Some(rej) = r.policy.as_ref().and_then(|p| p.rejected.as_ref()) {
        let fix = fix_of(&rej.code, "");
        conditions.push(Condition {
            kind: Kind::PolicyRejected,
            description: format!(
                "the sensor did not switch to policy v{}: its route did not reach the service ({}{}); it keeps its working route and tries again later",
                rej.version,
                rej.code,
                if rej.detail.is_empty() { String::new() } else { format!(": {}", rej.detail) },
            ),
            fix: format!(
                "Fix the policy's route from this sensor's network{}, or set another policy (`uplink fleet policy set`) or clear it (`uplink fleet policy clear`)",
                if fix.is_empty() { String::new() } else { format!(" ({fix})") }
            ),
        });
    }
    Assessment { state, conditions }
}

/// A health issue as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub issue_id: String,
    pub workspace: String,
    /// `None` for an issue of the workspace as a whole.
    pub sensor_id: Option<String>,
    pub kind: String,
    pub severity: Severity,
    pub state: IssueState,
    pub opened_at: i64,
    pub closed_at: Option<i64>,
    pub occurrences: u64,
    pub description: String,
    pub fix: String,
    pub suppressed_until: Option<i64>,
    pub suppress_reason: Option<String>,
    pub suppressed_by: Option<String>,
}

/// The stable id of the issue of `kind` for a sensor: the same in every backend and replica.
pub fn issue_id(workspace: &str, sensor_id: Option<&str>, kind: &str) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for part in [workspace, sensor_id.unwrap_or(""), kind] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    format!("iss-{}", &hex::encode(h.finalize())[..12])
}

/// The issue rows to write for one sensor (new or changed; unchanged ones are left out), given
/// its assessment and its issues as stored. Pure.
pub fn reconcile(
    now_ms: i64,
    o: &Observation<'_>,
    a: &Assessment,
    existing: &[Issue],
    p: &Policy,
) -> Vec<Issue> {
    let mut out = Vec::new();
    for kind in Kind::ALL {
        let row = existing.iter().find(|i| i.kind == kind.as_str());
        let cond = a.conditions.iter().find(|c| c.kind == *kind);
        let suppressed = |i: &Issue| {
            i.state == IssueState::Suppressed && i.suppressed_until.is_some_and(|u| u > now_ms)
        };
        let next = match (row, cond) {
            (None, None) => None,
            (None, Some(c)) => Some(Issue {
                issue_id: issue_id(o.workspace, Some(o.sensor_id), kind.as_str()),
                workspace: o.workspace.to_owned(),
                sensor_id: Some(o.sensor_id.to_owned()),
                kind: kind.as_str().to_owned(),
                severity: kind.severity(),
                state: IssueState::Open,
                opened_at: now_ms,
                closed_at: None,
                occurrences: 1,
                description: c.description.clone(),
                fix: c.fix.clone(),
                suppressed_until: None,
                suppress_reason: None,
                suppressed_by: None,
            }),
            (Some(i), Some(c)) => {
                let mut n = i.clone();
                n.description = c.description.clone();
                n.fix = c.fix.clone();
                match i.state {
                    IssueState::Open => {}
                    IssueState::Suppressed if suppressed(i) => {}
                    // Suppression over, or a recurrence: open (again).
                    IssueState::Suppressed | IssueState::Closed => {
                        if i.state == IssueState::Closed {
                            n.occurrences += 1;
                            n.opened_at = now_ms;
                        }
                        n.state = IssueState::Open;
                        n.closed_at = None;
                        n.suppressed_until = None;
                    }
                }
                (n != *i).then_some(n)
            }
            (Some(i), None) => match i.state {
                IssueState::Closed => None,
                IssueState::Suppressed if suppressed(i) => None,
                IssueState::Open | IssueState::Suppressed => {
                    let mut n = i.clone();
                    n.state = IssueState::Closed;
                    n.closed_at = Some(now_ms);
                    n.suppressed_until = None;
                    if *kind == Kind::Disconnected {
                        let (d, f) = disconnected_cause(now_ms, o, i.opened_at, p);
                        n.description = d;
                        n.fix = f;
                    }
                    Some(n)
                }
            },
        };
        out.extend(next);
    }
    out
}

/// A disconnected sensor is back: what its outage log says of the time it was away (the
/// intervals that overlap it), and the fix of the first code it saw.
fn disconnected_cause(
    now_ms: i64,
    o: &Observation<'_>,
    opened_ms: i64,
    p: &Policy,
) -> (String, String) {
    // It was last seen about `disconnected_after` before the issue opened.
    let from = opened_ms - (p.disconnected_after_secs + o.interval_secs()) as i64 * 1000;
    let during: Vec<&Outage> = o
        .outages
        .iter()
        .filter(|x| x.start_ms <= now_ms && x.end_ms.is_none_or(|e| e >= from))
        .collect();
    let back = format!(
        "back at {} (disconnected since {})",
        rfc3339(now_ms),
        rfc3339(opened_ms)
    );
    if during.is_empty() {
        return (
            format!("{back}; its outage log shows no failed upload: the sensor was stopped or its host was down"),
            "Nothing to do if the host was down on purpose; otherwise see why the sensor stopped (journalctl -u uplink-sensor)".to_owned(),
        );
    }
    let causes: Vec<String> = during.iter().map(|x| x.describe()).collect();
    let fix = during
        .iter()
        .flat_map(|x| x.codes.iter())
        .find_map(|c| c.parse::<Code>().ok())
        .map_or_else(
            || "See the codes in the description (docs/check.md lists each)".to_owned(),
            |c| c.fix().to_owned(),
        );
    (format!("{back}; cause: {}", causes.join("; ")), fix)
}

/// A sensor's health from its issues: the worst severity of the open ones. Pure.
pub fn health<'a>(issues: impl IntoIterator<Item = &'a Issue>) -> Health {
    match issues
        .into_iter()
        .filter(|i| i.state == IssueState::Open)
        .map(|i| i.severity)
        .max()
    {
        None => Health::Healthy,
        Some(Severity::Low) => Health::Low,
        Some(Severity::Medium) => Health::Medium,
        Some(Severity::High) => Health::High,
    }
}

/// Applies a suppression to an issue: suppressed until `until_ms`, with why and who. Pure.
pub fn suppress(i: &Issue, until_ms: i64, reason: &str, by: &str) -> Issue {
    Issue {
        state: IssueState::Suppressed,
        suppressed_until: Some(until_ms),
        suppress_reason: Some(reason.to_owned()),
        suppressed_by: Some(by.to_owned()),
        ..i.clone()
    }
}

/// Ends a suppression: the issue is open again (the next evaluation closes it if its condition
/// is gone). Pure.
pub fn unsuppress(i: &Issue) -> Issue {
    Issue {
        state: if i.state == IssueState::Suppressed {
            IssueState::Open
        } else {
            i.state
        },
        suppressed_until: None,
        ..i.clone()
    }
}

/// RFC 3339 UTC, whole seconds (`2026-01-02T03:04:05Z`).
pub fn rfc3339(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let f = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    t.format(&f).unwrap_or_default()
}

/// Unix milliseconds of an RFC 3339 time.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
}

#[cfg(test)]
mod tests;
