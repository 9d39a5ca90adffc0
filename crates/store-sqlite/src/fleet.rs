//! Fleet health in the SQLite store: the last report per sensor, the outage log, the issues
//! (tables `fleet_sensors`, `fleet_outages`, `fleet_issues`, format 4). Every evaluation is one
//! `BEGIN IMMEDIATE` transaction: SQLite's write lock makes it once at a time across processes.

use rusqlite::{params, Connection, OptionalExtension};
use uplink_fleet::{Issue, IssueState, Outage, Severity};
use uplink_store::fleet::{join_codes, plan, split_codes, FleetInputs, MAX_STORED_OUTAGES};
use uplink_store::*;

use crate::SqliteStore;

/// The fleet tables (also in `SCHEMA` for new stores, through this constant).
pub(crate) const FLEET_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS fleet_sensors (
    sensor_id TEXT PRIMARY KEY,
    workspace TEXT NOT NULL,
    body TEXT,
    sensor_time INTEGER,
    received_at INTEGER,
    state TEXT,
    health TEXT,
    evaluated_at INTEGER
);
CREATE TABLE IF NOT EXISTS fleet_outages (
    sensor_id TEXT NOT NULL,
    start_ms INTEGER NOT NULL,
    end_ms INTEGER,
    codes TEXT NOT NULL,
    proxy TEXT,
    failures INTEGER NOT NULL,
    PRIMARY KEY (sensor_id, start_ms)
);
CREATE TABLE IF NOT EXISTS fleet_issues (
    issue_id TEXT PRIMARY KEY,
    workspace TEXT NOT NULL,
    sensor_id TEXT,
    kind TEXT NOT NULL,
    severity TEXT NOT NULL,
    state TEXT NOT NULL,
    opened_at INTEGER NOT NULL,
    closed_at INTEGER,
    occurrences INTEGER NOT NULL,
    description TEXT NOT NULL,
    fix TEXT NOT NULL,
    suppressed_until INTEGER,
    suppress_reason TEXT,
    suppressed_by TEXT
);
CREATE INDEX IF NOT EXISTS fleet_issues_by_workspace ON fleet_issues (workspace, sensor_id);
";

const ISSUE_COLUMNS: &str = "issue_id, workspace, sensor_id, kind, severity, state, opened_at, closed_at, occurrences, description, fix, suppressed_until, suppress_reason, suppressed_by";

fn row_to_issue(r: &rusqlite::Row<'_>) -> rusqlite::Result<Issue> {
    Ok(Issue {
        issue_id: r.get(0)?,
        workspace: r.get(1)?,
        sensor_id: r.get(2)?,
        kind: r.get(3)?,
        severity: Severity::parse(&r.get::<_, String>(4)?).unwrap_or(Severity::Medium),
        state: IssueState::parse(&r.get::<_, String>(5)?).unwrap_or(IssueState::Open),
        opened_at: r.get(6)?,
        closed_at: r.get(7)?,
        occurrences: r.get::<_, i64>(8)? as u64,
        description: r.get(9)?,
        fix: r.get(10)?,
        suppressed_until: r.get(11)?,
        suppress_reason: r.get(12)?,
        suppressed_by: r.get(13)?,
    })
}

fn write_issue(c: &Connection, i: &Issue) -> rusqlite::Result<()> {
    c.prepare_cached(&format!(
        "INSERT OR REPLACE INTO fleet_issues ({ISSUE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
    ))?
    .execute(params![
        i.issue_id,
        i.workspace,
        i.sensor_id,
        i.kind,
        i.severity.as_str(),
        i.state.as_str(),
        i.opened_at,
        i.closed_at,
        i.occurrences as i64,
        i.description,
        i.fix,
        i.suppressed_until,
        i.suppress_reason,
        i.suppressed_by
    ])?;
    Ok(())
}

fn outages_of(c: &Connection, sensor_id: &str) -> rusqlite::Result<Vec<Outage>> {
    let mut st = c.prepare_cached(
        "SELECT start_ms, end_ms, codes, proxy, failures FROM fleet_outages WHERE sensor_id = ?1 ORDER BY start_ms",
    )?;
    let rows = st.query_map([sensor_id], |r| {
        Ok(Outage {
            start_ms: r.get(0)?,
            end_ms: r.get(1)?,
            codes: split_codes(&r.get::<_, String>(2)?),
            proxy: r.get(3)?,
            failures: r.get::<_, i64>(4)? as u64,
        })
    })?;
    rows.collect()
}

impl SqliteStore {
    pub(crate) fn record_report_sync(
        &self,
        workspace: &str,
        report: &FleetReport,
    ) -> Result<bool, StoreError> {
        let newest = self.write(|c| {
            let tx = rusqlite::Transaction::new_unchecked(c, rusqlite::TransactionBehavior::Immediate)?;
            let known: Option<i64> = tx
                .query_row(
                    "SELECT 1 FROM sensors WHERE sensor_id = ?1 AND workspace = ?2",
                    params![report.sensor_id, workspace],
                    |r| r.get(0),
                )
                .optional()?;
            if known.is_none() {
                return Ok(None);
            }
            let stored: Option<Option<i64>> = tx
                .query_row(
                    "SELECT sensor_time FROM fleet_sensors WHERE sensor_id = ?1 AND body IS NOT NULL",
                    [&report.sensor_id],
                    |r| r.get(0),
                )
                .optional()?;
            let newest = match (stored, report.sensor_time) {
                (None, _) => true,
                (Some(Some(old)), Some(new)) => new >= old,
                (Some(_), _) => true,
            };
            if newest {
                tx.execute(
                    "INSERT INTO fleet_sensors (sensor_id, workspace, body, sensor_time, received_at) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (sensor_id) DO UPDATE SET body = excluded.body, sensor_time = excluded.sensor_time, received_at = excluded.received_at",
                    params![report.sensor_id, workspace, report.body, report.sensor_time, report.received_at],
                )?;
            }
            for o in &report.outages {
                tx.execute(
                    "INSERT INTO fleet_outages (sensor_id, start_ms, end_ms, codes, proxy, failures) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (sensor_id, start_ms) DO UPDATE SET end_ms = COALESCE(excluded.end_ms, end_ms),
                       codes = excluded.codes, proxy = COALESCE(excluded.proxy, proxy), failures = max(failures, excluded.failures)",
                    params![report.sensor_id, o.start_ms, o.end_ms, join_codes(&o.codes), o.proxy, o.failures as i64],
                )?;
            }
            tx.execute(
                "DELETE FROM fleet_outages WHERE sensor_id = ?1 AND start_ms NOT IN
                   (SELECT start_ms FROM fleet_outages WHERE sensor_id = ?1 ORDER BY start_ms DESC LIMIT ?2)",
                params![report.sensor_id, MAX_STORED_OUTAGES as i64],
            )?;
            tx.commit()?;
            Ok(Some(newest))
        })?;
        newest.ok_or_else(|| StoreError::NoSuchSensor(report.sensor_id.clone()))
    }

    pub(crate) fn evaluate_fleet_sync(
        &self,
        now_ms: i64,
        policy: &FleetPolicy,
        only: Option<(&str, &str)>,
    ) -> Result<FleetEvaluation, StoreError> {
        self.write(|c| {
            let tx = rusqlite::Transaction::new_unchecked(c, rusqlite::TransactionBehavior::Immediate)?;
            let (ws, id) = only.unzip();
            let mut inputs = Vec::new();
            {
                let mut st = tx.prepare_cached(
                    "SELECT s.workspace, s.sensor_id, s.enrolled_at, s.last_seen, f.body, f.received_at, f.state, f.health, w.disconnected_after_secs
                     FROM sensors s JOIN workspaces w ON w.name = s.workspace LEFT JOIN fleet_sensors f ON f.sensor_id = s.sensor_id
                     WHERE (?1 IS NULL OR s.workspace = ?1) AND (?2 IS NULL OR s.sensor_id = ?2)
                     ORDER BY s.workspace, s.sensor_id",
                )?;
                let rows = st.query_map(params![ws, id], |r| {
                    Ok(FleetInputs {
                        workspace: r.get(0)?,
                        sensor_id: r.get(1)?,
                        enrolled_at: r.get(2)?,
                        last_seen: r.get(3)?,
                        report: r.get(4)?,
                        report_received_at: r.get(5)?,
                        state: r.get(6)?,
                        health: r.get(7)?,
                        disconnected_after_secs: r.get::<_, Option<i64>>(8)?.map(|s| s.max(0) as u64),
                        outages: Vec::new(),
                        issues: Vec::new(),
                    })
                })?;
                for row in rows {
                    inputs.push(row?);
                }
                let mut issues = tx.prepare_cached(&format!(
                    "SELECT {ISSUE_COLUMNS} FROM fleet_issues WHERE sensor_id = ?1"
                ))?;
                for i in &mut inputs {
                    i.outages = outages_of(&tx, &i.sensor_id)?;
                    i.issues = issues
                        .query_map([&i.sensor_id], row_to_issue)?
                        .collect::<rusqlite::Result<_>>()?;
                }
            }
            let updates = plan(now_ms, policy, &inputs);
            let mut written = 0;
            // Webhook deliveries of the issues opened, closed or reopened, in this transaction:
            // recorded once however many replicas evaluate (`uplink_store::webhooks`).
            for (i, u) in inputs.iter().zip(&updates) {
                crate::tokens::record_deliveries(&tx, now_ms, &u.workspace, &i.issues, &u.issues)?;
            }
            for u in &updates {
                if u.changed {
                    tx.execute(
                        "INSERT INTO fleet_sensors (sensor_id, workspace, state, health, evaluated_at) VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT (sensor_id) DO UPDATE SET state = excluded.state, health = excluded.health, evaluated_at = excluded.evaluated_at",
                        params![u.sensor_id, u.workspace, u.state, u.health, now_ms],
                    )?;
                }
                for i in &u.issues {
                    write_issue(&tx, i)?;
                    written += 1;
                }
            }
            tx.commit()?;
            Ok(FleetEvaluation {
                ran: true,
                sensors: updates.len() as u64,
                issues_written: written,
            })
        })
    }

    pub(crate) fn fleet_sensors_sync(
        &self,
        workspace: &str,
    ) -> Result<Vec<FleetSensor>, StoreError> {
        if self.workspace_sync(workspace)?.is_none() {
            return Err(StoreError::NoSuchWorkspace(workspace.into()));
        }
        self.read(|c| {
            let mut st = c.prepare(
                "SELECT s.sensor_id, s.workspace, s.name, s.enrolled_at, s.last_seen, f.body, f.received_at, f.state, f.health
                 FROM sensors s LEFT JOIN fleet_sensors f ON f.sensor_id = s.sensor_id
                 WHERE s.workspace = ?1 ORDER BY s.name, s.sensor_id",
            )?;
            let mut out: Vec<FleetSensor> = st
                .query_map([workspace], |r| {
                    let last_seen: Option<i64> = r.get(4)?;
                    let received: Option<i64> = r.get(6)?;
                    Ok(FleetSensor {
                        sensor_id: r.get(0)?,
                        workspace: r.get(1)?,
                        name: r.get(2)?,
                        enrolled_at: r.get(3)?,
                        last_seen: last_seen.max(received),
                        report: r.get(5)?,
                        report_received_at: received,
                        state: r.get(7)?,
                        health: r.get(8)?,
                        outages: Vec::new(),
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            for s in &mut out {
                s.outages = outages_of(c, &s.sensor_id)?;
            }
            Ok(out)
        })
    }

    pub(crate) fn fleet_issues_sync(&self, workspace: &str) -> Result<Vec<Issue>, StoreError> {
        if self.workspace_sync(workspace)?.is_none() {
            return Err(StoreError::NoSuchWorkspace(workspace.into()));
        }
        self.read(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {ISSUE_COLUMNS} FROM fleet_issues WHERE workspace = ?1 ORDER BY opened_at DESC, issue_id"
            ))?;
            let rows = st.query_map([workspace], row_to_issue)?;
            rows.collect()
        })
    }

    pub(crate) fn suppress_issue_sync(
        &self,
        workspace: &str,
        issue_id: &str,
        suppression: Option<(i64, String, String)>,
    ) -> Result<Option<Issue>, StoreError> {
        if self.workspace_sync(workspace)?.is_none() {
            return Err(StoreError::NoSuchWorkspace(workspace.into()));
        }
        self.write(|c| {
            let tx = rusqlite::Transaction::new_unchecked(c, rusqlite::TransactionBehavior::Immediate)?;
            let found = tx
                .query_row(
                    &format!("SELECT {ISSUE_COLUMNS} FROM fleet_issues WHERE workspace = ?1 AND issue_id = ?2"),
                    params![workspace, issue_id],
                    row_to_issue,
                )
                .optional()?;
            let Some(issue) = found else {
                return Ok(None);
            };
            let next = match &suppression {
                Some((until, reason, by)) => uplink_fleet::suppress(&issue, *until, reason, by),
                None => uplink_fleet::unsuppress(&issue),
            };
            write_issue(&tx, &next)?;
            tx.commit()?;
            Ok(Some(next))
        })
    }
}
