//! Report history in the PostgreSQL store (migration 0012, table `report_points`; see
//! `uplink_store::history`): one row per sensor per bucket, upserted with each report, old
//! buckets removed in the same transaction.

use uplink_store::*;

use crate::PostgresStore;

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl PostgresStore {
    pub(crate) async fn record_report_point_pg(
        &self,
        workspace: &str,
        p: &ReportPoint,
        prune_before_ms: i64,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.err())?;
        // The newest report of a bucket wins; one arriving late (an older `at`) changes nothing.
        tx.execute(
            "INSERT INTO report_points (sensor_id, workspace, bucket, at, backlog, delivered, latency_secs, first_route, route, route_changes)
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $8, 0
             WHERE EXISTS (SELECT 1 FROM sensors WHERE sensor_id = $1 AND workspace = $2)
             ON CONFLICT (sensor_id, bucket) DO UPDATE SET
               route_changes = report_points.route_changes + (CASE WHEN excluded.route <> report_points.route THEN 1 ELSE 0 END),
               at = excluded.at, backlog = excluded.backlog, delivered = excluded.delivered,
               latency_secs = excluded.latency_secs, route = excluded.route
             WHERE excluded.at >= report_points.at",
            &[
                &p.sensor_id,
                &workspace,
                &p.bucket,
                &p.at,
                &to_i64(p.backlog),
                &p.delivered.map(to_i64),
                &p.latency_secs.map(to_i64),
                &p.route,
            ],
        )
        .await
        .map_err(self.err())?;
        tx.execute(
            "DELETE FROM report_points WHERE bucket < $1",
            &[&prune_before_ms],
        )
        .await
        .map_err(self.err())?;
        tx.commit().await.map_err(self.err())
    }

    pub(crate) async fn report_points_pg(
        &self,
        workspace: &str,
        sensor_id: &str,
        since_ms: i64,
    ) -> Result<Vec<ReportPoint>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT sensor_id, bucket, at, backlog, delivered, latency_secs, first_route, route, route_changes
                 FROM report_points WHERE workspace = $1 AND sensor_id = $2 AND bucket >= $3 ORDER BY bucket",
                &[&workspace, &sensor_id, &since_ms],
            )
            .await
            .map_err(self.err())?;
        Ok(rows
            .iter()
            .map(|r| ReportPoint {
                sensor_id: r.get(0),
                bucket: r.get(1),
                at: r.get(2),
                backlog: r.get::<_, i64>(3).max(0) as u64,
                delivered: r.get::<_, Option<i64>>(4).map(|v| v.max(0) as u64),
                latency_secs: r.get::<_, Option<i64>>(5).map(|v| v.max(0) as u64),
                first_route: r.get(6),
                route: r.get(7),
                route_changes: r.get::<_, i64>(8).max(0) as u64,
            })
            .collect())
    }
}
