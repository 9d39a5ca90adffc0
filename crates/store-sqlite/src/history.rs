//! Report history in the SQLite store (format 13, table `report_points`; see
//! `uplink_store::history`): one row per sensor per bucket, upserted with each report, old
//! buckets removed in the same write.

use rusqlite::params;
use uplink_store::*;

use crate::{immediate, SqliteStore};

/// Format 13 (11 and 12 are other pieces of work's; IF NOT EXISTS: a step may be re-run). A
/// workspace's deletion removes its points; a decommissioned sensor's age out with the rest.
pub(crate) const FORMAT_13: &str = "
CREATE TABLE IF NOT EXISTS report_points (
    sensor_id TEXT NOT NULL,
    workspace TEXT NOT NULL REFERENCES workspaces(name) ON DELETE CASCADE,
    bucket INTEGER NOT NULL,
    at INTEGER NOT NULL,
    backlog INTEGER NOT NULL,
    delivered INTEGER,
    latency_secs INTEGER,
    first_route TEXT NOT NULL,
    route TEXT NOT NULL,
    route_changes INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (sensor_id, bucket)
);
CREATE INDEX IF NOT EXISTS report_points_by_bucket ON report_points(bucket);
";

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl SqliteStore {
    pub(crate) fn record_report_point_sync(
        &self,
        workspace: &str,
        p: &ReportPoint,
        prune_before_ms: i64,
    ) -> Result<(), StoreError> {
        self.write(|c| {
            immediate(c, |c| {
                // The newest report of a bucket wins; one arriving late (an older `at`) changes
                // nothing.
                c.execute(
                    "INSERT INTO report_points (sensor_id, workspace, bucket, at, backlog, delivered, latency_secs, first_route, route, route_changes)
                     SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, 0
                     WHERE EXISTS (SELECT 1 FROM sensors WHERE sensor_id = ?1 AND workspace = ?2)
                     ON CONFLICT (sensor_id, bucket) DO UPDATE SET
                       route_changes = route_changes + (excluded.route <> route),
                       at = excluded.at, backlog = excluded.backlog, delivered = excluded.delivered,
                       latency_secs = excluded.latency_secs, route = excluded.route
                     WHERE excluded.at >= report_points.at",
                    params![
                        p.sensor_id,
                        workspace,
                        p.bucket,
                        p.at,
                        to_i64(p.backlog),
                        p.delivered.map(to_i64),
                        p.latency_secs.map(to_i64),
                        p.route
                    ],
                )?;
                c.execute(
                    "DELETE FROM report_points WHERE bucket < ?1",
                    [prune_before_ms],
                )?;
                Ok(())
            })
        })
    }

    pub(crate) fn report_points_sync(
        &self,
        workspace: &str,
        sensor_id: &str,
        since_ms: i64,
    ) -> Result<Vec<ReportPoint>, StoreError> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT sensor_id, bucket, at, backlog, delivered, latency_secs, first_route, route, route_changes
                 FROM report_points WHERE workspace = ?1 AND sensor_id = ?2 AND bucket >= ?3 ORDER BY bucket",
            )?;
            let rows = st.query_map(params![workspace, sensor_id, since_ms], |r| {
                Ok(ReportPoint {
                    sensor_id: r.get(0)?,
                    bucket: r.get(1)?,
                    at: r.get(2)?,
                    backlog: r.get::<_, i64>(3)?.max(0) as u64,
                    delivered: r.get::<_, Option<i64>>(4)?.map(|v| v.max(0) as u64),
                    latency_secs: r.get::<_, Option<i64>>(5)?.map(|v| v.max(0) as u64),
                    first_route: r.get(6)?,
                    route: r.get(7)?,
                    route_changes: r.get::<_, i64>(8)?.max(0) as u64,
                })
            })?;
            rows.collect()
        })
    }
}
