//! Fleet health in the PostgreSQL store (migration 0005): the last report per sensor, the outage
//! log, the issues. An evaluation of the whole fleet runs in one transaction that first takes
//! [`FLEET_LOCK`] with `pg_try_advisory_xact_lock`: one replica evaluates, the others skip that
//! round. The evaluation of one sensor after its report waits for the lock instead, so the two
//! never write the same issue rows at once.

use tokio_postgres::Row;
use uplink_fleet::{Issue, IssueState, Outage, Severity};
use uplink_store::fleet::{join_codes, plan, split_codes, FleetInputs, MAX_STORED_OUTAGES};
use uplink_store::*;

use crate::PostgresStore;

/// The advisory lock key of fleet evaluation ("uplink" in ASCII, then 5).
pub const FLEET_LOCK: i64 = 0x75_70_6c_69_6e_6b_00_05;

const ISSUE_COLUMNS: &str = "issue_id, workspace, sensor_id, kind, severity, state, opened_at, closed_at, occurrences, description, fix, suppressed_until, suppress_reason, suppressed_by";

fn row_to_issue(r: &Row) -> Issue {
    Issue {
        issue_id: r.get(0),
        workspace: r.get(1),
        sensor_id: r.get(2),
        kind: r.get(3),
        severity: Severity::parse(r.get(4)).unwrap_or(Severity::Medium),
        state: IssueState::parse(r.get(5)).unwrap_or(IssueState::Open),
        opened_at: r.get(6),
        closed_at: r.get(7),
        occurrences: r.get::<_, i64>(8) as u64,
        description: r.get(9),
        fix: r.get(10),
        suppressed_until: r.get(11),
        suppress_reason: r.get(12),
        suppressed_by: r.get(13),
    }
}

fn row_to_outage(r: &Row) -> (String, Outage) {
    (
        r.get(0),
        Outage {
            start_ms: r.get(1),
            end_ms: r.get(2),
            codes: split_codes(r.get(3)),
            proxy: r.get(4),
            failures: r.get::<_, i64>(5) as u64,
        },
    )
}

async fn write_issue(
    tx: &deadpool_postgres::Transaction<'_>,
    i: &Issue,
) -> Result<u64, tokio_postgres::Error> {
    tx.execute(
        &format!(
            "INSERT INTO fleet_issues ({ISSUE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
             ON CONFLICT (issue_id) DO UPDATE SET severity = excluded.severity, state = excluded.state,
               opened_at = excluded.opened_at, closed_at = excluded.closed_at, occurrences = excluded.occurrences,
               description = excluded.description, fix = excluded.fix, suppressed_until = excluded.suppressed_until,
               suppress_reason = excluded.suppress_reason, suppressed_by = excluded.suppressed_by"
        ),
        &[
            &i.issue_id,
            &i.workspace,
            &i.sensor_id,
            &i.kind,
            &i.severity.as_str(),
            &i.state.as_str(),
            &i.opened_at,
            &i.closed_at,
            &(i.occurrences as i64),
            &i.description,
            &i.fix,
            &i.suppressed_until,
            &i.suppress_reason,
            &i.suppressed_by,
        ],
    )
    .await
}

impl PostgresStore {
    async fn workspace_exists(&self, workspace: &str) -> Result<(), StoreError> {
        let client = self.client().await?;
        let found = client
            .query_opt("SELECT 1 FROM workspaces WHERE name = $1", &[&workspace])
            .await
            .map_err(self.err())?;
        match found {
            Some(_) => Ok(()),
            None => Err(StoreError::NoSuchWorkspace(workspace.to_owned())),
        }
    }

    pub(crate) async fn record_report_pg(
        &self,
        workspace: &str,
        report: &FleetReport,
    ) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.err())?;
        let known = tx
            .query_opt(
                "SELECT 1 FROM sensors WHERE sensor_id = $1 AND workspace = $2",
                &[&report.sensor_id, &workspace],
            )
            .await
            .map_err(self.err())?;
        if known.is_none() {
            return Err(StoreError::NoSuchSensor(report.sensor_id.clone()));
        }
        // Newest by the sensor's clock; the row is locked (FOR UPDATE through the upsert's
        // WHERE) so two replicas storing reports of one sensor keep the newer.
        let stored = tx
            .execute(
                "INSERT INTO fleet_sensors (sensor_id, workspace, body, sensor_time, received_at) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (sensor_id) DO UPDATE SET body = excluded.body, sensor_time = excluded.sensor_time, received_at = excluded.received_at
                 WHERE fleet_sensors.body IS NULL OR fleet_sensors.sensor_time IS NULL OR excluded.sensor_time IS NULL
                    OR excluded.sensor_time >= fleet_sensors.sensor_time",
                &[&report.sensor_id, &workspace, &report.body, &report.sensor_time, &report.received_at],
            )
            .await
            .map_err(self.err())?;
        for o in &report.outages {
            tx.execute(
                "INSERT INTO fleet_outages (sensor_id, start_ms, end_ms, codes, proxy, failures) VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (sensor_id, start_ms) DO UPDATE SET end_ms = COALESCE(excluded.end_ms, fleet_outages.end_ms),
                   codes = excluded.codes, proxy = COALESCE(excluded.proxy, fleet_outages.proxy),
                   failures = GREATEST(fleet_outages.failures, excluded.failures)",
                &[&report.sensor_id, &o.start_ms, &o.end_ms, &join_codes(&o.codes), &o.proxy, &(o.failures as i64)],
            )
            .await
            .map_err(self.err())?;
        }
        if !report.outages.is_empty() {
            tx.execute(
                "DELETE FROM fleet_outages WHERE sensor_id = $1 AND start_ms NOT IN
                   (SELECT start_ms FROM fleet_outages WHERE sensor_id = $1 ORDER BY start_ms DESC LIMIT $2)",
                &[&report.sensor_id, &(MAX_STORED_OUTAGES as i64)],
            )
            .await
            .map_err(self.err())?;
        }
        tx.commit().await.map_err(self.err())?;
        Ok(stored == 1)
    }

    pub(crate) async fn evaluate_fleet_pg(
        &self,
        now_ms: i64,
        policy: &FleetPolicy,
        only: Option<(&str, &str)>,
    ) -> Result<FleetEvaluation, StoreError> {
        // Last-seen times are coalesced in memory: write ours first, so that this evaluation
        // sees the batches this process took (other replicas flush every few seconds).
        self.flush_seen().await?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.err())?;
        if only.is_some() {
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&FLEET_LOCK])
                .await
                .map_err(self.err())?;
        } else {
            let won: bool = tx
                .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&FLEET_LOCK])
                .await
                .map_err(self.err())?
                .get(0);
            if !won {
                return Ok(FleetEvaluation::default());
            }
        }
        let (ws, id) = only.unzip();
        let rows = tx
            .query(
                "SELECT s.workspace, s.sensor_id, s.enrolled_at, s.last_seen, f.body, f.received_at, f.state, f.health, w.disconnected_after_secs
                 FROM sensors s JOIN workspaces w ON w.name = s.workspace LEFT JOIN fleet_sensors f ON f.sensor_id = s.sensor_id
                 WHERE ($1::text IS NULL OR s.workspace = $1) AND ($2::text IS NULL OR s.sensor_id = $2)
                 ORDER BY s.workspace, s.sensor_id",
                &[&ws, &id],
            )
            .await
            .map_err(self.err())?;
        let mut inputs: Vec<FleetInputs> = rows
            .iter()
            .map(|r| FleetInputs {
                workspace: r.get(0),
                sensor_id: r.get(1),
                enrolled_at: r.get(2),
                last_seen: r.get(3),
                report: r.get(4),
                report_received_at: r.get(5),
                state: r.get(6),
                health: r.get(7),
                disconnected_after_secs: r.get::<_, Option<i64>>(8).map(|s| s.max(0) as u64),
                outages: Vec::new(),
                issues: Vec::new(),
            })
            .collect();
        let outages = tx
            .query(
                "SELECT sensor_id, start_ms, end_ms, codes, proxy, failures FROM fleet_outages
                 WHERE ($1::text IS NULL OR sensor_id = $1) ORDER BY sensor_id, start_ms",
                &[&id],
            )
            .await
            .map_err(self.err())?;
        let issues = tx
            .query(
                &format!(
                    "SELECT {ISSUE_COLUMNS} FROM fleet_issues WHERE sensor_id IS NOT NULL AND ($1::text IS NULL OR sensor_id = $1)"
                ),
                &[&id],
            )
            .await
            .map_err(self.err())?;
        let index: std::collections::HashMap<String, usize> = inputs
            .iter()
            .enumerate()
            .map(|(n, i)| (i.sensor_id.clone(), n))
            .collect();
        for r in &outages {
            let (sensor, o) = row_to_outage(r);
            if let Some(n) = index.get(&sensor) {
                inputs[*n].outages.push(o);
            }
        }
        for r in &issues {
            let issue = row_to_issue(r);
            if let Some(n) = issue.sensor_id.as_ref().and_then(|s| index.get(s)) {
                inputs[*n].issues.push(issue);
            }
        }
        let updates = plan(now_ms, policy, &inputs);
        let mut written = 0;
        // Webhook deliveries of the issues opened, closed or reopened, in this transaction:
        // recorded once however many replicas evaluate (`uplink_store::webhooks`).
        for (i, u) in inputs.iter().zip(&updates) {
            crate::tokens::record_deliveries(&tx, now_ms, &u.workspace, &i.issues, &u.issues)
                .await
                .map_err(self.err())?;
        }
        for u in &updates {
            if u.changed {
                tx.execute(
                    "INSERT INTO fleet_sensors (sensor_id, workspace, state, health, evaluated_at) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (sensor_id) DO UPDATE SET state = excluded.state, health = excluded.health, evaluated_at = excluded.evaluated_at",
                    &[&u.sensor_id, &u.workspace, &u.state, &u.health, &now_ms],
                )
                .await
                .map_err(self.err())?;
            }
            for i in &u.issues {
                write_issue(&tx, i).await.map_err(self.err())?;
                written += 1;
            }
        }
        tx.commit().await.map_err(self.err())?;
        Ok(FleetEvaluation {
            ran: true,
            sensors: updates.len() as u64,
            issues_written: written,
        })
    }

    pub(crate) async fn fleet_sensors_pg(
        &self,
        workspace: &str,
    ) -> Result<Vec<FleetSensor>, StoreError> {
        self.workspace_exists(workspace).await?;
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT s.sensor_id, s.workspace, s.name, s.enrolled_at, s.last_seen, f.body, f.received_at, f.state, f.health
                 FROM sensors s LEFT JOIN fleet_sensors f ON f.sensor_id = s.sensor_id
                 WHERE s.workspace = $1 ORDER BY s.name, s.sensor_id",
                &[&workspace],
            )
            .await
            .map_err(self.err())?;
        let outages = client
            .query(
                "SELECT o.sensor_id, o.start_ms, o.end_ms, o.codes, o.proxy, o.failures FROM fleet_outages o
                 JOIN sensors s ON s.sensor_id = o.sensor_id WHERE s.workspace = $1 ORDER BY o.sensor_id, o.start_ms",
                &[&workspace],
            )
            .await
            .map_err(self.err())?;
        let outages: Vec<(String, Outage)> = outages.iter().map(row_to_outage).collect();
        Ok(rows
            .iter()
            .map(|r| {
                let sensor_id: String = r.get(0);
                let last_seen: Option<i64> = r.get(4);
                let received: Option<i64> = r.get(6);
                FleetSensor {
                    outages: outages
                        .iter()
                        .filter(|(s, _)| *s == sensor_id)
                        .map(|(_, o)| o.clone())
                        .collect(),
                    sensor_id,
                    workspace: r.get(1),
                    name: r.get(2),
                    enrolled_at: r.get(3),
                    last_seen: last_seen.max(received),
                    report: r.get(5),
                    report_received_at: received,
                    state: r.get(7),
                    health: r.get(8),
                }
            })
            .collect())
    }

    pub(crate) async fn fleet_issues_pg(&self, workspace: &str) -> Result<Vec<Issue>, StoreError> {
        self.workspace_exists(workspace).await?;
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {ISSUE_COLUMNS} FROM fleet_issues WHERE workspace = $1 ORDER BY opened_at DESC, issue_id"
                ),
                &[&workspace],
            )
            .await
            .map_err(self.err())?;
        Ok(rows.iter().map(row_to_issue).collect())
    }

    pub(crate) async fn suppress_issue_pg(
        &self,
        workspace: &str,
        issue_id: &str,
        suppression: Option<(i64, String, String)>,
    ) -> Result<Option<Issue>, StoreError> {
        self.workspace_exists(workspace).await?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.err())?;
        // The evaluation's lock: a suppression never interleaves with an evaluation's writes.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&FLEET_LOCK])
            .await
            .map_err(self.err())?;
        let row = tx
            .query_opt(
                &format!(
                    "SELECT {ISSUE_COLUMNS} FROM fleet_issues WHERE workspace = $1 AND issue_id = $2"
                ),
                &[&workspace, &issue_id],
            )
            .await
            .map_err(self.err())?;
        let Some(issue) = row.as_ref().map(row_to_issue) else {
            return Ok(None);
        };
        let next = match &suppression {
            Some((until, reason, by)) => uplink_fleet::suppress(&issue, *until, reason, by),
            None => uplink_fleet::unsuppress(&issue),
        };
        write_issue(&tx, &next).await.map_err(self.err())?;
        tx.commit().await.map_err(self.err())?;
        Ok(Some(next))
    }
}
