//! Versioned schema migrations, applied at start under an advisory lock.
//!
//! Migrations are data: SQL files in `migrations/`, compiled in, applied in order, each once, all
//! in one transaction that first takes [`LOCK_KEY`] (`pg_advisory_xact_lock`), so replicas
//! starting together apply them once and wait for each other. `uplink_schema` records each
//! applied version with the oldest build version that can still run on the schema it leaves
//! (`compatible_back_to`). Migrations are written expand-then-contract: a new one only adds
//! (columns with defaults, tables, indexes), so a replica of the previous version keeps working
//! beside a new one during a rolling upgrade; a step that removes what an older build reads is
//! a later migration that raises `compatible_back_to`. A schema newer than this build is
//! accepted while this build is at least its `compatible_back_to`, and refused otherwise.

use uplink_store::StoreError;

/// One schema version.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
    /// The oldest schema version (of this list) whose code can still run on this one.
    pub compatible_back_to: i32,
}

/// Every migration, in order. Append; never edit one that shipped.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sql: include_str!("../migrations/0001_initial.sql"),
        compatible_back_to: 1,
    },
    Migration {
        version: 2,
        name: "meta (sealed CA keys)",
        sql: include_str!("../migrations/0002_meta.sql"),
        compatible_back_to: 2,
    },
    Migration {
        version: 3,
        name: "retention (settings, events by day, seen)",
        sql: include_str!("../migrations/0003_retention.sql"),
        compatible_back_to: 3,
    },
    Migration {
        version: 4,
        name: "change log",
        sql: include_str!("../migrations/0004_changes.sql"),
        compatible_back_to: 3,
    },
    Migration {
        version: 5,
        name: "fleet health",
        sql: include_str!("../migrations/0005_fleet.sql"),
        compatible_back_to: 3,
    },
    Migration {
        version: 6,
        name: "admin API tokens, webhooks",
        sql: include_str!("../migrations/0006_admin_tokens.sql"),
        compatible_back_to: 3,
    },
    Migration {
        version: 7,
        name: "sensor lifecycle (revocations)",
        sql: include_str!("../migrations/0007_lifecycle.sql"),
        compatible_back_to: 3,
    },
    Migration {
        version: 8,
        name: "web console (users, sessions, login failures)",
        sql: include_str!("../migrations/0008_console.sql"),
        compatible_back_to: 3,
    },
    Migration {
        version: 9,
        name: "central policy",
        sql: include_str!("../migrations/0009_policy.sql"),
        compatible_back_to: 3,
    },
    Migration {
        version: 10,
        name: "sensor lifecycle (settings, enrollment limits)",
        sql: include_str!("../migrations/0010_lifecycle_limits.sql"),
        compatible_back_to: 3,
    },
    Migration {
        version: 11,
        name: "CA rotation (previous CAs, certificate issuers)",
        sql: include_str!("../migrations/0011_ca_rotation.sql"),
        compatible_back_to: 3,
    },
    Migration {
        version: 12,
        name: "report history (console charts)",
        sql: include_str!("../migrations/0012_report_history.sql"),
        compatible_back_to: 3,
    },
    Migration {
        version: 13,
        name: "ingest without per-row foreign-key triggers on events and seen",
        sql: include_str!("../migrations/0013_ingest_without_fk_triggers.sql"),
        compatible_back_to: 3,
    },
    Migration {
        version: 14,
        name: "the holes retention's watermark passed",
        sql: include_str!("../migrations/0014_pruned_holes.sql"),
        compatible_back_to: 3,
    },
    Migration {
        version: 15,
        name: "the CAs a rotation retired",
        sql: include_str!("../migrations/0015_retired_cas.sql"),
        compatible_back_to: 3,
    },
];

/// The schema version this build writes.
pub fn latest() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// The advisory lock key migrations run under ("uplink" in ASCII, then 1).
pub const LOCK_KEY: i64 = 0x75_70_6c_69_6e_6b_00_01;

/// What to do given the versions already applied (`(version, compatible_back_to)`): the
/// migrations to run, or the refusal of a schema too new for this build. Pure.
pub fn plan(applied: &[(i32, i32)], at: &str) -> Result<Vec<Migration>, StoreError> {
    let ours = latest();
    if let Some(&(newest, back_to)) = applied.iter().max_by_key(|(v, _)| *v) {
        if newest > ours && back_to > ours {
            return Err(StoreError::NewerFormat {
                path: at.to_owned(),
                found: newest.into(),
                supported: ours.into(),
            });
        }
    }
    Ok(MIGRATIONS
        .iter()
        .filter(|m| !applied.iter().any(|(v, _)| *v == m.version))
        .copied()
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Applied `(version, compatible_back_to)` rows, and the versions to apply (`Err`: refused).
    type Case = (&'static [(i32, i32)], Result<Vec<i32>, ()>);

    #[test]
    fn plans() {
        let all: Vec<i32> = MIGRATIONS.iter().map(|m| m.version).collect();
        // Every migration applied, as this build records them (derived, so that a migration
        // added by another piece of work does not need this table edited).
        let current: Vec<(i32, i32)> = MIGRATIONS
            .iter()
            .map(|m| (m.version, m.compatible_back_to))
            .collect();
        let with = |extra: (i32, i32)| -> &'static [(i32, i32)] {
            let mut v = current.clone();
            v.push(extra);
            Box::leak(v.into_boxed_slice())
        };
        let up_to_date: &'static [(i32, i32)] = Box::leak(current.clone().into_boxed_slice());
        let cases: &[Case] = &[
            // A new database: everything.
            (&[], Ok(all.clone())),
            // Up to date: nothing.
            (up_to_date, Ok(vec![])),
            // Behind: the rest.
            (&[(1, 1)], Ok(all[1..].to_vec())),
            (&[(1, 1), (2, 2), (3, 3)], Ok(all[3..].to_vec())),
            // A newer schema an older build can still run on (expand only): nothing, no refusal.
            (with((99, 3)), Ok(vec![])),
            // A newer schema that contracted past this build: refused.
            (with((99, 99)), Err(())),
        ];
        for (applied, want) in cases {
            let got = plan(applied, "postgres://db/x")
                .map(|ms| ms.iter().map(|m| m.version).collect::<Vec<_>>())
                .map_err(|e| {
                    let text = e.to_string();
                    assert!(text.contains("upgrade uplink"), "{text}");
                });
            assert_eq!(&got, want, "{applied:?}");
        }
    }

    #[test]
    fn versions_are_in_order_and_each_can_run_on_itself() {
        // Numbers were assigned per piece of work (3: retention, 4: the change log, 5: fleet, 6: admin tokens);
        // on main they are 1, 2, 3, … with no gap.
        let mut last = 0;
        for m in MIGRATIONS {
            assert_eq!(m.version, last + 1, "{}", m.name);
            assert!(m.compatible_back_to <= m.version, "{}", m.name);
            last = m.version;
        }
    }
}
