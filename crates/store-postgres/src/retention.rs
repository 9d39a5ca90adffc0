//! Day partitions of `events`, retention, workspace settings and deletion, in PostgreSQL.
//!
//! Partitions: `events_pDAY` holds the events received on UTC day DAY (days since the epoch);
//! `events_legacy` holds those stored before schema version 3, up to `events_legacy_until`
//! (in `uplink_meta`). A process creates the partition of a day the first time it stores an
//! event of that day (and tomorrow's ahead, at connect and at each prune), remembering which
//! exist; an insert that finds none (another process dropped it) forgets and tries again.
//!
//! Prune, under a session advisory lock ([`RETENTION_LOCK`]) so that one replica at a time
//! works and the others return at once:
//! 1. every partition wholly older than every workspace's cutoff is dropped whole: its counts
//!    and highest seqs are read under a SHARE lock on that partition only (ingest, which writes
//!    today's, goes on), then, under a short ACCESS EXCLUSIVE lock on `events`, the counters go
//!    down, the watermarks up, and the partition is dropped;
//! 2. for each workspace, what is still older than its own cutoff (a shorter retention than
//!    another workspace's, or the rest of a partition) is deleted in chunks, one transaction
//!    each, the sensor's row locked FOR UPDATE so the watermark and the deletion are seen
//!    together by ingest (which reads the watermark FOR KEY SHARE);
//! 3. `seen` rows at or below a sensor's watermark are no longer needed and are deleted in
//!    chunks, except inside a hole the watermark passed; before that, the seqs that arrived into
//!    holes are taken out of them (`shrink_holes`), so their `seen` rows go too.
//!
//! Whenever a watermark rises, the seqs it passes that `seen` does not hold (never stored: a
//! batch that failed while a later one was committed, records the sensor's queue lost) are
//! recorded as ranges in `pruned_holes` (migrations/0014), in the same transaction
//! ([`RECORD_HOLES`]). Ingest stores a seq inside one (its `seen` row then makes a retry a
//! duplicate, without changing the hole: ingest stays one statement), and retention removes it
//! by its age like any event. The next prune takes such seqs out of their holes (a seq at or
//! below the watermark outside every hole is a duplicate by the watermark alone) and deletes
//! their `seen` rows like the others: a late arrival costs a `seen` row until then, not forever.
//! A replica of schema 13 (before holes) deletes `seen` rows inside holes too: docs/scale-out.md
//! says to prune only from upgraded replicas during a rollout.

use std::collections::BTreeMap;

use tokio_postgres::error::SqlState;
use uplink_store::retention::{cutoff, DAY_MS};
use uplink_store::*;

use crate::{lock, PostgresStore};

/// The advisory lock retention runs under ("uplink" in ASCII, then 3).
pub const RETENTION_LOCK: i64 = 0x75_70_6c_69_6e_6b_00_03;

/// Records the holes the watermarks of sensors $1 are about to pass as they rise to $2 (the
/// highest seqs removed, one per sensor, or several: the highest counts): each range of seqs
/// above the current watermark and below the new one that `seen` does not hold. Run after
/// the events' removal and before the watermark's update, in their transaction, with the
/// sensors' rows locked (ingest of them waits: `seen` does not change under it).
pub(crate) const RECORD_HOLES: &str = "INSERT INTO pruned_holes (sensor, lo, hi)
    SELECT sensor, prev + 1, seq - 1 FROM (
        SELECT s.sensor, s.seq, lag(s.seq, 1, n.through) OVER (PARTITION BY s.sensor ORDER BY s.seq) AS prev
        FROM (
            SELECT u.sensor, COALESCE(x.pruned_through, -1) AS through, max(u.top) AS top
            FROM UNNEST($1::bigint[], $2::bigint[]) AS u (sensor, top)
            JOIN sensors x ON x.id = u.sensor
            GROUP BY u.sensor, x.pruned_through
        ) n
        JOIN seen s ON s.sensor = n.sensor AND s.seq > n.through AND s.seq <= n.top
    ) g
    WHERE seq > prev + 1
    ON CONFLICT DO NOTHING";

/// Longest wait for a lock on all of `events` (making or dropping a partition): ingest queued
/// behind such a lock request waits at most this long.
const LOCK_TIMEOUT: &str = "2s";

/// The name of a day's partition.
pub fn partition_name(day: i64) -> String {
    format!("events_p{day}")
}

/// The end (exclusive, Unix milliseconds) of a partition named by this module: `None` for a
/// name it did not make. `legacy_until` is where `events_legacy` ends. Pure.
pub fn partition_end(name: &str, legacy_until: Option<i64>) -> Option<i64> {
    if name == "events_legacy" {
        return legacy_until;
    }
    let day: i64 = name.strip_prefix("events_p")?.parse().ok()?;
    day.checked_add(1)?.checked_mul(DAY_MS)
}

/// Whether an insert failed because no partition takes its row.
pub fn no_partition(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::CHECK_VIOLATION)
        && e.as_db_error()
            .is_some_and(|d| d.message().contains("no partition"))
}

impl PostgresStore {
    /// Makes today's and tomorrow's partitions (ahead of need, so ingest rarely waits for one).
    pub(crate) async fn load_partitions(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        let today = retention::day_of(now_ms());
        self.ensure_days(&client, [today, today + 1]).await
    }

    /// Where the legacy partition ends (`None`: there is none), read once from the database.
    async fn legacy_until(
        &self,
        client: &deadpool_postgres::Object,
    ) -> Result<Option<i64>, StoreError> {
        if let Some(known) = *lock(&self.inner.legacy_until) {
            return Ok(known);
        }
        let until = client
            .query_opt(
                "SELECT value FROM uplink_meta WHERE key = 'events_legacy_until'",
                &[],
            )
            .await
            .map_err(self.err())?
            .and_then(|r| r.get::<_, String>(0).parse::<i64>().ok());
        *lock(&self.inner.legacy_until) = Some(until);
        Ok(until)
    }

    /// Forgets which partitions exist (another process dropped one): read again when next needed.
    pub(crate) fn forget_partitions(&self) {
        lock(&self.inner.days).clear();
        *lock(&self.inner.legacy_until) = None;
    }

    /// Makes sure a partition takes events of each of these days.
    pub(crate) async fn ensure_days(
        &self,
        client: &deadpool_postgres::Object,
        days: impl IntoIterator<Item = i64>,
    ) -> Result<(), StoreError> {
        let legacy = self.legacy_until(client).await?;
        let missing: Vec<i64> = {
            let known = lock(&self.inner.days);
            let mut v: Vec<i64> = days
                .into_iter()
                .filter(|d| !known.contains(d))
                .filter(|d| legacy.is_none_or(|until| d.saturating_mul(DAY_MS) >= until))
                .collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        for day in missing {
            let sql = format!(
                "CREATE TABLE IF NOT EXISTS {} PARTITION OF events FOR VALUES FROM ({}) TO ({})",
                partition_name(day),
                day * DAY_MS,
                (day + 1) * DAY_MS
            );
            // Making a partition locks `events` whole for a moment; behind a long reader (an
            // export) that moment could stall every ingest queued after it. Give up instead:
            // the caller answers 503 and the sensor retries.
            client
                .batch_execute(&format!("SET lock_timeout = '{LOCK_TIMEOUT}'"))
                .await
                .map_err(self.err())?;
            let made = client.batch_execute(&sql).await;
            let reset = client.batch_execute("RESET lock_timeout").await;
            match made {
                Ok(()) => {}
                // Another process made it at the same moment.
                Err(e)
                    if e.code() == Some(&SqlState::DUPLICATE_TABLE)
                        || e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {}
                Err(e) => return Err(self.err()(e)),
            }
            reset.map_err(self.err())?;
            lock(&self.inner.days).insert(day);
        }
        Ok(())
    }

    pub(crate) async fn workspace_settings_pg(
        &self,
        workspace: &str,
    ) -> Result<WorkspaceSettings, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT retention_days, disconnected_after_secs FROM workspaces WHERE name = $1",
                &[&workspace],
            )
            .await
            .map_err(self.err())?
            .ok_or_else(|| StoreError::NoSuchWorkspace(workspace.to_owned()))?;
        Ok(WorkspaceSettings {
            retention_days: row.get::<_, i32>(0) as u32,
            disconnected_after_secs: row.get::<_, i64>(1) as u64,
        })
    }

    pub(crate) async fn set_workspace_settings_pg(
        &self,
        workspace: &str,
        change: SettingsChange,
    ) -> Result<WorkspaceSettings, StoreError> {
        change.validate()?;
        let mut client = self.client().await?;
        let days = change.retention_days.map(|d| d as i32);
        let secs = change.disconnected_after_secs.map(|s| s as i64);
        let tx = client.transaction().await.map_err(self.err())?;
        let n = tx
            .execute(
                "UPDATE workspaces SET retention_days = COALESCE($2, retention_days),
                 disconnected_after_secs = COALESCE($3, disconnected_after_secs) WHERE name = $1",
                &[&workspace, &days, &secs],
            )
            .await
            .map_err(self.err())?;
        if n == 0 {
            return Err(StoreError::NoSuchWorkspace(workspace.to_owned()));
        }
        crate::record_change(&tx, workspace, &ChangeKind::Settings)
            .await
            .map_err(self.err())?;
        tx.commit().await.map_err(self.err())?;
        drop(client);
        self.workspace_settings_pg(workspace).await
    }

    /// One transaction: the workspace, its sensors, their events, `seen` rows and counters.
    pub(crate) async fn delete_workspace_pg(
        &self,
        workspace: &str,
    ) -> Result<DeletedWorkspace, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.err())?;
        self.lock_workspace(&tx, workspace).await?;
        // FOR UPDATE: ingest of these sensors (FOR KEY SHARE) finishes first, or waits and then
        // finds them gone.
        let ids: Vec<i64> = tx
            .query(
                "SELECT id FROM sensors WHERE workspace = $1 ORDER BY id FOR UPDATE",
                &[&workspace],
            )
            .await
            .map_err(self.err())?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let events = tx
            .execute("DELETE FROM events WHERE sensor = ANY($1)", &[&ids])
            .await
            .map_err(self.err())?;
        // Its fleet view (docs/fleet.md), while its sensors still name the outages' rows.
        for sql in [
            "DELETE FROM fleet_outages WHERE sensor_id IN (SELECT sensor_id FROM sensors WHERE workspace = $1)",
            "DELETE FROM fleet_sensors WHERE workspace = $1",
            "DELETE FROM fleet_issues WHERE workspace = $1",
        ] {
            tx.execute(sql, &[&workspace]).await.map_err(self.err())?;
        }
        for sql in [
            "DELETE FROM seen WHERE sensor = ANY($1)",
            "DELETE FROM kind_counts WHERE sensor = ANY($1)",
            "DELETE FROM sensors WHERE id = ANY($1)",
        ] {
            tx.execute(sql, &[&ids]).await.map_err(self.err())?;
        }
        tx.execute("DELETE FROM workspaces WHERE name = $1", &[&workspace])
            .await
            .map_err(self.err())?;
        // Every replica stops serving its hosts (the registry follows the log).
        crate::record_change(&tx, workspace, &ChangeKind::Deleted)
            .await
            .map_err(self.err())?;
        tx.commit().await.map_err(self.err())?;
        lock(&self.inner.sensors).retain(|_, id| !ids.contains(id));
        lock(&self.inner.seen).retain(|id, _| !ids.contains(id));
        Ok(DeletedWorkspace {
            sensors: ids.len() as u64,
            events,
        })
    }

    pub(crate) async fn prune_pg(&self, options: PruneOptions) -> Result<PruneReport, StoreError> {
        let mut client = self.client().await?;
        let got: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&RETENTION_LOCK])
            .await
            .map_err(self.err())?
            .get(0);
        if !got {
            return Ok(PruneReport {
                skipped: Some(
                    "another process is pruning this database right now (advisory lock held)"
                        .into(),
                ),
                ..PruneReport::default()
            });
        }
        let result = self.prune_locked(&mut client, options).await;
        if client
            .execute("SELECT pg_advisory_unlock($1)", &[&RETENTION_LOCK])
            .await
            .is_err()
        {
            // Never hand a connection that may still hold the lock back to the pool.
            drop(deadpool_postgres::Object::take(client));
        }
        result
    }

    async fn prune_locked(
        &self,
        client: &mut deadpool_postgres::Object,
        options: PruneOptions,
    ) -> Result<PruneReport, StoreError> {
        let today = retention::day_of(options.now_ms);
        self.ensure_days(client, [today, today + 1]).await?;
        let workspaces: Vec<(String, u32)> = client
            .query(
                "SELECT name, retention_days FROM workspaces ORDER BY name",
                &[],
            )
            .await
            .map_err(self.err())?
            .iter()
            .map(|r| (r.get(0), r.get::<_, i32>(1) as u32))
            .collect();
        let mut removed: BTreeMap<String, u64> = BTreeMap::new();
        let mut report = PruneReport::default();
        // 1. Whole partitions, once they are past every workspace's retention.
        let oldest_cutoff = workspaces
            .iter()
            .map(|(_, d)| cutoff(options.now_ms, *d))
            .min()
            .unwrap_or(options.now_ms);
        let names: Vec<String> = client
            .query(
                "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                 WHERE i.inhparent = 'events'::regclass ORDER BY 1",
                &[],
            )
            .await
            .map_err(self.err())?
            .iter()
            .map(|r| r.get(0))
            .collect();
        // Under the lock this process is the one that drops partitions: read it afresh.
        *lock(&self.inner.legacy_until) = None;
        let legacy = self.legacy_until(client).await?;
        for name in names {
            let Some(end) = partition_end(&name, legacy) else {
                continue;
            };
            if end > oldest_cutoff {
                continue;
            }
            match self.drop_partition(client, &name).await {
                Ok(per_ws) => {
                    for (ws, n) in per_ws {
                        *removed.entry(ws).or_default() += n;
                    }
                    report.partitions_dropped.push(name);
                }
                // A long reader (an export) holds it: the chunked deletes below remove its
                // events instead, and the next run drops what is left.
                Err(Dropped::LockTimeout) => {
                    tracing::info!(partition = %name, "a reader holds the partition; deleting its events in chunks instead");
                }
                Err(Dropped::Failed(e)) => return Err(e),
            }
        }
        // 2. Chunks of what is older than each workspace's own cutoff.
        for (ws, days) in &workspaces {
            let before = cutoff(options.now_ms, *days);
            let ids: Vec<i64> = client
                .query(
                    "SELECT id FROM sensors WHERE workspace = $1 ORDER BY id",
                    &[ws],
                )
                .await
                .map_err(self.err())?
                .iter()
                .map(|r| r.get(0))
                .collect();
            for id in ids {
                *removed.entry(ws.clone()).or_default() +=
                    self.prune_sensor(client, id, before, options.chunk).await?;
            }
        }
        // 3. `seen` rows below the watermarks.
        self.clear_seen(client, options.chunk).await?;
        report.workspaces = workspaces
            .into_iter()
            .map(|(workspace, days)| PrunedWorkspace {
                events: removed.get(&workspace).copied().unwrap_or(0),
                cutoff_ms: cutoff(options.now_ms, days),
                retention_days: days,
                workspace,
            })
            .collect();
        Ok(report)
    }

    /// Drops one partition whole; returns the events it held per workspace.
    async fn drop_partition(
        &self,
        client: &mut deadpool_postgres::Object,
        name: &str,
    ) -> Result<Vec<(String, u64)>, Dropped> {
        let err = |e: tokio_postgres::Error| {
            if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) {
                Dropped::LockTimeout
            } else {
                Dropped::Failed(self.err()(e))
            }
        };
        let tx = client.transaction().await.map_err(err)?;
        tx.batch_execute(&format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
            .await
            .map_err(err)?;
        // Writes to this (old) partition wait; ingest writes today's and goes on.
        tx.batch_execute(&format!("LOCK TABLE {name} IN SHARE MODE"))
            .await
            .map_err(err)?;
        let rows = tx
            .query(
                &format!(
                    "SELECT e.sensor, s.workspace, e.kind, count(*)::bigint, max(e.seq)
                     FROM {name} e JOIN sensors s ON s.id = e.sensor GROUP BY 1, 2, 3"
                ),
                &[],
            )
            .await
            .map_err(err)?;
        let mut sensors = Vec::new();
        let mut kinds = Vec::new();
        let mut counts = Vec::new();
        let mut highest = Vec::new();
        let mut per_ws: BTreeMap<String, u64> = BTreeMap::new();
        for r in &rows {
            sensors.push(r.get::<_, i64>(0));
            kinds.push(r.get::<_, String>(2));
            counts.push(r.get::<_, i64>(3));
            highest.push(r.get::<_, i64>(4));
            *per_ws.entry(r.get(1)).or_default() += r.get::<_, i64>(3) as u64;
        }
        // From here ingest waits (briefly): nothing is in flight that holds counters or rows
        // this transaction updates, so no deadlock.
        tx.batch_execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
            .await
            .map_err(err)?;
        tx.execute(
            "UPDATE kind_counts k SET n = k.n - v.n
             FROM UNNEST($1::bigint[], $2::text[], $3::bigint[]) AS v (sensor, kind, n)
             WHERE k.sensor = v.sensor AND k.kind = v.kind",
            &[&sensors, &kinds, &counts],
        )
        .await
        .map_err(err)?;
        tx.execute(RECORD_HOLES, &[&sensors, &highest])
            .await
            .map_err(err)?;
        tx.execute(
            "UPDATE sensors s SET pruned_through = GREATEST(COALESCE(s.pruned_through, -1), v.top)
             FROM (SELECT sensor, max(top) AS top FROM UNNEST($1::bigint[], $2::bigint[]) AS u (sensor, top) GROUP BY sensor) v
             WHERE s.id = v.sensor",
            &[&sensors, &highest],
        )
        .await
        .map_err(err)?;
        tx.batch_execute(&format!("DROP TABLE {name}"))
            .await
            .map_err(err)?;
        if name == "events_legacy" {
            tx.execute(
                "DELETE FROM uplink_meta WHERE key = 'events_legacy_until'",
                &[],
            )
            .await
            .map_err(err)?;
        }
        tx.commit().await.map_err(err)?;
        if name == "events_legacy" {
            *lock(&self.inner.legacy_until) = Some(None);
        } else if let Some(day) = name
            .strip_prefix("events_p")
            .and_then(|d| d.parse::<i64>().ok())
        {
            lock(&self.inner.days).remove(&day);
        }
        Ok(per_ws.into_iter().collect())
    }

    /// Deletes a sensor's events received before `before`, `chunk` per transaction.
    async fn prune_sensor(
        &self,
        client: &mut deadpool_postgres::Object,
        sensor: i64,
        before: i64,
        chunk: usize,
    ) -> Result<u64, StoreError> {
        let chunk = chunk.max(1);
        let mut total = 0u64;
        loop {
            let tx = client.transaction().await.map_err(self.err())?;
            // Ingest of this sensor waits for this chunk, or this chunk for it (see INSERT_EVENTS).
            tx.execute("SELECT 1 FROM sensors WHERE id = $1 FOR UPDATE", &[&sensor])
                .await
                .map_err(self.err())?;
            let row = tx
                .query_one(
                    "WITH doomed AS (
                        SELECT seq, received_at FROM events WHERE sensor = $1 AND received_at < $2
                        ORDER BY received_at LIMIT $3
                    ), del AS (
                        DELETE FROM events e USING doomed d
                        WHERE e.sensor = $1 AND e.seq = d.seq AND e.received_at = d.received_at
                        RETURNING e.kind, e.seq
                    ), counted AS (
                        UPDATE kind_counts k SET n = k.n - c.n
                        FROM (SELECT kind, count(*) AS n FROM del GROUP BY kind) c
                        WHERE k.sensor = $1 AND k.kind = c.kind
                    )
                    SELECT count(*), max(seq) FROM del",
                    &[&sensor, &before, &(chunk as i64)],
                )
                .await
                .map_err(self.err())?;
            let (n, top): (i64, Option<i64>) = (row.get(0), row.get(1));
            // Under the sensor's lock (ingest of it waits): `seen` still holds every seq stored.
            if let Some(top) = top {
                tx.execute(RECORD_HOLES, &[&vec![sensor], &vec![top]])
                    .await
                    .map_err(self.err())?;
                tx.execute(
                    "UPDATE sensors SET pruned_through = GREATEST(COALESCE(pruned_through, -1), $2) WHERE id = $1",
                    &[&sensor, &top],
                )
                .await
                .map_err(self.err())?;
            }
            tx.commit().await.map_err(self.err())?;
            total += n as u64;
            if (n as usize) < chunk {
                return Ok(total);
            }
        }
    }

    /// Deletes the `seen` rows at or below each sensor's watermark, `chunk` per transaction;
    /// first the holes late arrivals filled give up those seqs ([`Self::shrink_holes`]), so
    /// their `seen` rows go too.
    async fn clear_seen(
        &self,
        client: &mut deadpool_postgres::Object,
        chunk: usize,
    ) -> Result<(), StoreError> {
        self.shrink_holes(client, chunk).await?;
        let chunk = chunk.max(1) as i64;
        let marks: Vec<(i64, i64)> = client
            .query(
                "SELECT id, pruned_through FROM sensors WHERE pruned_through IS NOT NULL",
                &[],
            )
            .await
            .map_err(self.err())?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        for (sensor, through) in marks {
            loop {
                // Under the sensor's row lock, as every prune step: an ingest transaction holds
                // the row FOR KEY SHARE from before the snapshot its statements decide by until
                // it commits (group.rs), so no `seen` row it could race with goes meanwhile.
                let tx = client.transaction().await.map_err(self.err())?;
                tx.execute("SELECT 1 FROM sensors WHERE id = $1 FOR UPDATE", &[&sensor])
                    .await
                    .map_err(self.err())?;
                let n = tx
                    .execute(
                        "DELETE FROM seen WHERE sensor = $1 AND seq IN
                           (SELECT seq FROM seen s WHERE sensor = $1 AND seq <= $2
                              AND NOT EXISTS (SELECT 1 FROM pruned_holes h
                                              WHERE h.sensor = $1 AND h.lo <= s.seq AND h.hi >= s.seq)
                            ORDER BY seq LIMIT $3)",
                        &[&sensor, &through, &chunk],
                    )
                    .await
                    .map_err(self.err())?;
                tx.commit().await.map_err(self.err())?;
                if (n as i64) < chunk {
                    break;
                }
            }
        }
        Ok(())
    }
}

impl PostgresStore {
    /// Takes the seqs that arrived into holes (their `seen` rows) out of the holes, at most
    /// `chunk` holes per transaction, each sensor's row locked FOR UPDATE (its ingest waits:
    /// `seen` and the holes do not change under it). A seq out of every hole and at or below the
    /// watermark is a duplicate by the watermark alone, as it was by its `seen` row inside the
    /// hole, so its `seen` row can go like any other below the watermark: without this, each late
    /// arrival into a hole kept a `seen` row forever. An ingest transaction takes the sensor's
    /// row FOR KEY SHARE before the snapshot its statement decides by and keeps it to its commit
    /// (group.rs), so neither this nor `clear_seen`'s deletions (FOR UPDATE too) commit between
    /// that snapshot and its insert into `seen`: a retried seq whose first arrival commits after
    /// the snapshot is still refused by that arrival's `seen` row (see INSERT_EVENTS).
    async fn shrink_holes(
        &self,
        client: &mut deadpool_postgres::Object,
        chunk: usize,
    ) -> Result<(), StoreError> {
        let chunk = chunk.max(1) as i64;
        let sensors: Vec<i64> = client
            .query(
                "SELECT DISTINCT h.sensor FROM pruned_holes h
                 WHERE EXISTS (SELECT 1 FROM seen n WHERE n.sensor = h.sensor AND n.seq BETWEEN h.lo AND h.hi)",
                &[],
            )
            .await
            .map_err(self.err())?
            .iter()
            .map(|r| r.get(0))
            .collect();
        for sensor in sensors {
            loop {
                let tx = client.transaction().await.map_err(self.err())?;
                tx.execute("SELECT 1 FROM sensors WHERE id = $1 FOR UPDATE", &[&sensor])
                    .await
                    .map_err(self.err())?;
                let rows = tx
                    .query(
                        "SELECT h.lo, h.hi,
                            ARRAY(SELECT n.seq FROM seen n WHERE n.sensor = h.sensor AND n.seq BETWEEN h.lo AND h.hi ORDER BY n.seq)
                         FROM pruned_holes h
                         WHERE h.sensor = $1
                           AND EXISTS (SELECT 1 FROM seen n WHERE n.sensor = h.sensor AND n.seq BETWEEN h.lo AND h.hi)
                         ORDER BY h.lo LIMIT $2",
                        &[&sensor, &chunk],
                    )
                    .await
                    .map_err(self.err())?;
                let (mut gone, mut los, mut his) = (Vec::new(), Vec::new(), Vec::new());
                for r in &rows {
                    let (lo, hi, arrived): (i64, i64, Vec<i64>) = (r.get(0), r.get(1), r.get(2));
                    gone.push(lo);
                    for (a, b) in unfilled(lo, hi, &arrived) {
                        los.push(a);
                        his.push(b);
                    }
                }
                tx.execute(
                    "DELETE FROM pruned_holes WHERE sensor = $1 AND lo = ANY($2)",
                    &[&sensor, &gone],
                )
                .await
                .map_err(self.err())?;
                tx.execute(
                    "INSERT INTO pruned_holes (sensor, lo, hi)
                     SELECT $1, u.lo, u.hi FROM UNNEST($2::bigint[], $3::bigint[]) AS u (lo, hi)",
                    &[&sensor, &los, &his],
                )
                .await
                .map_err(self.err())?;
                tx.commit().await.map_err(self.err())?;
                if (rows.len() as i64) < chunk {
                    break;
                }
            }
        }
        Ok(())
    }
}

// Copies (`store backup`, `store migrate`).
impl PostgresStore {
    /// Each sensor's holes as they are now: the recorded ranges (never split here) less the
    /// seqs that arrived into them since (their `seen` rows).
    pub(crate) async fn pruned_holes_pg(
        &self,
        workspace: &str,
    ) -> Result<BTreeMap<String, Vec<(u64, u64)>>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT s.sensor_id, h.lo, h.hi,
                    ARRAY(SELECT n.seq FROM seen n WHERE n.sensor = h.sensor AND n.seq BETWEEN h.lo AND h.hi ORDER BY n.seq)
                 FROM pruned_holes h JOIN sensors s ON s.id = h.sensor
                 WHERE s.workspace = $1 ORDER BY s.sensor_id, h.lo",
                &[&workspace],
            )
            .await
            .map_err(self.err())?;
        let mut out: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
        for r in &rows {
            let (lo, hi, arrived): (i64, i64, Vec<i64>) = (r.get(1), r.get(2), r.get(3));
            let left = unfilled(lo, hi, &arrived);
            if !left.is_empty() {
                out.entry(r.get(0))
                    .or_default()
                    .extend(left.into_iter().map(|(a, b)| (a as u64, b as u64)));
            }
        }
        Ok(out)
    }

    /// Like SQLite's: only what is still a hole here is recorded — at or below the watermark,
    /// less the seqs `seen` holds and the holes recorded already (holes never overlap, and since
    /// prunes take arrived seqs out of holes, a range re-added whole could cover a seq stored
    /// and pruned since). Copies use [`Store::import_watermark`], which also stops at the
    /// watermark the store had.
    pub(crate) async fn add_pruned_holes_pg(
        &self,
        sensor_id: &str,
        holes: &[(u64, u64)],
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.err())?;
        let found = tx
            .query_opt(
                "SELECT id, COALESCE(pruned_through, -1) FROM sensors WHERE sensor_id = $1 FOR UPDATE",
                &[&sensor_id],
            )
            .await
            .map_err(self.err())?;
        let Some(found) = found else {
            return Err(StoreError::NoSuchSensor(sensor_id.to_owned()));
        };
        let (id, through): (i64, i64) = (found.get(0), found.get(1));
        self.record_uncovered_holes(&tx, id, holes, -1, through)
            .await?;
        tx.commit().await.map_err(self.err())?;
        Ok(())
    }

    /// Records, in `tx` (the sensor's row locked), the parts of `holes` between the
    /// watermarks `old` (exclusive) and `new` that are still holes here: less the seqs `seen`
    /// holds and the holes recorded already (ingest decides a seq in a hole by `seen`, so a
    /// hole may hold stored seqs, but holes never overlap). Shared by [`Self::add_pruned_holes_pg`]
    /// and the copies' `import_watermark`.
    pub(crate) async fn record_uncovered_holes(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        id: i64,
        holes: &[(u64, u64)],
        old: i64,
        new: i64,
    ) -> Result<(), StoreError> {
        let (mut los, mut his) = (Vec::new(), Vec::new());
        for &(lo, hi) in holes {
            let Some((lo, hi)) = backup::between_watermarks(lo, hi, old, new) else {
                continue;
            };
            let taken: Vec<(u64, u64)> = tx
                .query(
                    "SELECT lo, hi FROM pruned_holes WHERE sensor = $1 AND hi >= $2 AND lo <= $3
                     UNION ALL
                     SELECT seq, seq FROM seen WHERE sensor = $1 AND seq BETWEEN $2 AND $3
                     ORDER BY 1",
                    &[&id, &(lo as i64), &(hi as i64)],
                )
                .await
                .map_err(self.err())?
                .iter()
                .map(|r| (r.get::<_, i64>(0) as u64, r.get::<_, i64>(1) as u64))
                .collect();
            for (a, b) in backup::uncovered(lo, hi, &taken) {
                los.push(a as i64);
                his.push(b as i64);
            }
        }
        if !los.is_empty() {
            tx.execute(
                "INSERT INTO pruned_holes (sensor, lo, hi)
                 SELECT $1, u.lo, u.hi FROM UNNEST($2::bigint[], $3::bigint[]) AS u (lo, hi)
                 ON CONFLICT DO NOTHING",
                &[&id, &los, &his],
            )
            .await
            .map_err(self.err())?;
        }
        Ok(())
    }
}

/// What is left of the hole `lo..=hi` once the seqs `arrived` (ascending, inside it) came. Pure.
pub fn unfilled(lo: i64, hi: i64, arrived: &[i64]) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut next = lo;
    for &seq in arrived.iter().chain(std::iter::once(&(hi + 1))) {
        if seq > next {
            out.push((next, seq - 1));
        }
        next = next.max(seq + 1);
    }
    out
}

/// Why a partition was not dropped.
enum Dropped {
    /// Its lock could not be had in [`LOCK_TIMEOUT`].
    LockTimeout,
    Failed(StoreError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_ends() {
        let cases: &[(&str, Option<i64>, Option<i64>)] = &[
            ("events_p0", None, Some(DAY_MS)),
            ("events_p20427", None, Some(20_428 * DAY_MS)),
            ("events_legacy", Some(5), Some(5)),
            ("events_legacy", None, None),
            ("events_pX", None, None),
            ("events_p", None, None),
            ("other", None, None),
            ("events_p99999999999999999", None, None),
        ];
        for (name, legacy, want) in cases {
            assert_eq!(partition_end(name, *legacy), *want, "{name}");
        }
        assert_eq!(partition_name(20_427), "events_p20427");
    }

    #[test]
    fn holes_less_what_arrived() {
        type Ranges = &'static [(i64, i64)];
        let cases: &[(i64, i64, &[i64], Ranges)] = &[
            (10, 19, &[], &[(10, 19)]),
            (10, 19, &[10], &[(11, 19)]),
            (10, 19, &[19], &[(10, 18)]),
            (10, 19, &[12, 13, 14], &[(10, 11), (15, 19)]),
            (10, 19, &[10, 11, 12, 13, 14, 15, 16, 17, 18, 19], &[]),
            (5, 5, &[5], &[]),
            (5, 5, &[], &[(5, 5)]),
        ];
        for (lo, hi, arrived, want) in cases {
            assert_eq!(
                unfilled(*lo, *hi, arrived),
                *want,
                "{lo}..={hi} {arrived:?}"
            );
        }
    }
}
