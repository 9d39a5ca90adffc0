//! Per-workspace settings and retention: what is kept, for how long, and what a prune removed.
//!
//! The settings ([`WorkspaceSettings`]) live in the store beside each workspace, so every replica
//! reads the same values. Retention removes events older than a workspace's `retention_days` in
//! bounded steps (each backend decides how: chunked deletes in SQLite, whole day partitions and
//! chunked deletes in PostgreSQL; see docs/storage.md) so ingest never waits long for it.
//!
//! Removing an event must not let a retried copy of it be stored again: each sensor keeps a
//! watermark, the highest sequence number retention removed (`pruned_through`), and ingest counts
//! any event at or below it as a duplicate. Sensors upload their queue in sequence order and
//! delete a batch only once it was stored, so an event below an expired one can only be a retry
//! of one already stored (or lost to queue damage on the sensor, never to be sent).
//!
//! Pure parts here (durations, days, the bounds of settings) are table-tested; the I/O is the
//! backends' `Store::prune`, and [`retention_loop`] runs it periodically in the service.

use std::time::Duration;

use crate::{Store, StoreError};

/// One day in milliseconds.
pub const DAY_MS: i64 = 86_400_000;
/// Events removed per transaction by default: small enough that a chunk commits in well under a
/// second, so ingest waiting for the write lock waits at most that long.
pub const DEFAULT_CHUNK: usize = 5_000;

/// A workspace's settings, as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WorkspaceSettings {
    /// Events older than this many days are removed.
    pub retention_days: u32,
    /// A sensor not heard from for this many seconds is disconnected (for the fleet's health).
    pub disconnected_after_secs: u64,
}

impl Default for WorkspaceSettings {
    fn default() -> Self {
        WorkspaceSettings {
            retention_days: 30,
            disconnected_after_secs: 600,
        }
    }
}

/// Bounds of the settings (checked by [`SettingsChange::validate`]).
pub const RETENTION_DAYS: std::ops::RangeInclusive<u32> = 1..=36_500;
/// 10 seconds to 30 days.
pub const DISCONNECTED_AFTER_SECS: std::ops::RangeInclusive<u64> = 10..=30 * 86_400;

/// What `uplink workspace set` changes; `None` keeps the stored value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SettingsChange {
    pub retention_days: Option<u32>,
    pub disconnected_after_secs: Option<u64>,
}

impl SettingsChange {
    /// Refuses values out of bounds, saying which and what is allowed.
    pub fn validate(&self) -> Result<(), StoreError> {
        if let Some(d) = self.retention_days.filter(|d| !RETENTION_DAYS.contains(d)) {
            return Err(StoreError::Settings(format!(
                "retention of {d} days is out of range: give {} to {} days",
                RETENTION_DAYS.start(),
                RETENTION_DAYS.end()
            )));
        }
        if let Some(s) = self
            .disconnected_after_secs
            .filter(|s| !DISCONNECTED_AFTER_SECS.contains(s))
        {
            return Err(StoreError::Settings(format!(
                "disconnected-after of {s}s is out of range: give 10s to 30d"
            )));
        }
        Ok(())
    }

    /// The settings after this change.
    pub fn apply(&self, to: WorkspaceSettings) -> WorkspaceSettings {
        WorkspaceSettings {
            retention_days: self.retention_days.unwrap_or(to.retention_days),
            disconnected_after_secs: self
                .disconnected_after_secs
                .unwrap_or(to.disconnected_after_secs),
        }
    }
}

/// `90s`, `10m`, `2h`, `1d` as seconds. Pure.
pub fn parse_duration_secs(s: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "{s:?} is not a duration: write a number and a unit (s, m, h, d), e.g. 90s, 10m, 2h"
        )
    };
    let unit_at = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    if unit_at == 0 {
        return Err(bad());
    }
    let n: u64 = s[..unit_at].parse().map_err(|_| bad())?;
    let per = match &s[unit_at..] {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(per)
        .ok_or_else(|| format!("{s:?} is too long"))
}

/// The day (days since the Unix epoch, UTC) of a Unix-milliseconds time.
pub fn day_of(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS)
}

/// Events received before this time are older than `retention_days` at `now_ms`.
pub fn cutoff(now_ms: i64, retention_days: u32) -> i64 {
    now_ms - i64::from(retention_days) * DAY_MS
}

/// How a prune runs.
#[derive(Clone, Copy, Debug)]
pub struct PruneOptions {
    /// The time the retention is measured from (Unix milliseconds): now, except in tests.
    pub now_ms: i64,
    /// Most events removed per transaction.
    pub chunk: usize,
}

impl PruneOptions {
    pub fn now() -> PruneOptions {
        PruneOptions {
            now_ms: crate::now_ms(),
            chunk: DEFAULT_CHUNK,
        }
    }
}

/// What a prune removed in one workspace.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PrunedWorkspace {
    pub workspace: String,
    pub retention_days: u32,
    /// Events received before this (Unix milliseconds) were removed.
    pub cutoff_ms: i64,
    pub events: u64,
}

/// What a prune did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PruneReport {
    /// Every workspace, with what was removed from it (0 when nothing was old enough).
    pub workspaces: Vec<PrunedWorkspace>,
    /// Whole day partitions dropped (PostgreSQL).
    pub partitions_dropped: Vec<String>,
    /// Set when nothing was done because another process is pruning the same store right now
    /// (PostgreSQL's advisory lock): that one does the work.
    pub skipped: Option<String>,
}

impl PruneReport {
    pub fn total(&self) -> u64 {
        self.workspaces.iter().map(|w| w.events).sum()
    }
}

/// What `delete_workspace` removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DeletedWorkspace {
    pub sensors: u64,
    pub events: u64,
}

/// Prunes `store` every `every` until `stop` completes (the service runs it; with PostgreSQL,
/// one replica at a time does the work). A failed run is logged and tried again next time.
pub async fn retention_loop<S: Store>(
    store: S,
    every: Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(every) => {}
        }
        match store.prune(PruneOptions::now()).await {
            Ok(r) if r.skipped.is_some() => {
                tracing::debug!(reason = ?r.skipped, "retention skipped");
            }
            Ok(r) => {
                tracing::info!(
                    events = r.total(),
                    partitions = r.partitions_dropped.len(),
                    "retention removed old events"
                );
            }
            Err(e) => tracing::warn!(error = %e, "retention failed; trying again at the next run"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let cases: &[(&str, Result<u64, &str>)] = &[
            ("90s", Ok(90)),
            ("10m", Ok(600)),
            ("2h", Ok(7_200)),
            ("1d", Ok(86_400)),
            ("0s", Ok(0)),
            ("10", Err("not a duration")),
            ("m", Err("not a duration")),
            ("10 m", Err("not a duration")),
            ("10ms", Err("not a duration")),
            ("-5s", Err("not a duration")),
            ("", Err("not a duration")),
            ("99999999999999999999s", Err("not a duration")),
            ("9999999999999999999d", Err("too long")),
        ];
        for (input, want) in cases {
            let got = parse_duration_secs(input);
            match want {
                Ok(v) => assert_eq!(got, Ok(*v), "{input}"),
                Err(w) => {
                    let e = got.expect_err(input);
                    assert!(e.contains(w), "{input}: {e}");
                }
            }
        }
    }

    #[test]
    fn settings_change_bounds_and_apply() {
        let cases: &[(SettingsChange, Result<WorkspaceSettings, &str>)] = &[
            (SettingsChange::default(), Ok(WorkspaceSettings::default())),
            (
                SettingsChange {
                    retention_days: Some(7),
                    disconnected_after_secs: None,
                },
                Ok(WorkspaceSettings {
                    retention_days: 7,
                    disconnected_after_secs: 600,
                }),
            ),
            (
                SettingsChange {
                    retention_days: None,
                    disconnected_after_secs: Some(90),
                },
                Ok(WorkspaceSettings {
                    retention_days: 30,
                    disconnected_after_secs: 90,
                }),
            ),
            (
                SettingsChange {
                    retention_days: Some(0),
                    disconnected_after_secs: None,
                },
                Err("retention of 0 days is out of range"),
            ),
            (
                SettingsChange {
                    retention_days: Some(36_501),
                    disconnected_after_secs: None,
                },
                Err("out of range"),
            ),
            (
                SettingsChange {
                    retention_days: None,
                    disconnected_after_secs: Some(5),
                },
                Err("disconnected-after of 5s is out of range"),
            ),
        ];
        for (change, want) in cases {
            match (change.validate(), want) {
                (Ok(()), Ok(s)) => assert_eq!(change.apply(WorkspaceSettings::default()), *s),
                (Err(e), Err(w)) => assert!(e.to_string().contains(w), "{e}"),
                (got, want) => panic!("{change:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn days_and_cutoffs() {
        let cases: &[(i64, i64)] = &[
            (0, 0),
            (DAY_MS - 1, 0),
            (DAY_MS, 1),
            (-1, -1),
            (1_764_892_800_000, 20_427),
        ];
        for (ms, day) in cases {
            assert_eq!(day_of(*ms), *day, "{ms}");
        }
        assert_eq!(cutoff(10 * DAY_MS, 3), 7 * DAY_MS);
    }
}
