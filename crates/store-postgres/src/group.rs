//! Group commit: concurrent ingest calls of this process coalesced into one transaction.
//!
//! Each [`Store::ingest`] call becomes a job on a queue; a few writer tasks
//! ([`Settings::ingest_writers`]) each take whatever is waiting (up to
//! [`Settings::group_events`] events), run one `INSERT_EVENTS` statement per batch inside one
//! transaction, commit, and only then answer every caller of the group. Many concurrent
//! sensors thus share one commit (one WAL flush) instead of one each, while each batch keeps its
//! own statement, so exactly-once per `(sensor, seq)` is the statement's (the `seen` claim and
//! the watermark: see `INSERT_EVENTS`), whatever the grouping. A group whose statement met the
//! same events stored concurrently by another transaction (a unique violation on `seen`) is run
//! again like a deadlocked one: then they are duplicates.
//!
//! Batches run in sensor row order, so two groups (of this process or of two replicas) take
//! the `seen` and counter rows of shared sensors in the same order. A group PostgreSQL rolls
//! back for a deadlock or serialization failure is run again (up to three times); a group that
//! fails for another reason is split, each batch run alone, so one bad batch fails alone. When
//! the database cannot be reached every caller of the group gets that error at once.
//!
//! The writers hold only a weak reference to the store between groups: they end when the last
//! clone of the store is dropped (its queue closes).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use tokio::sync::{mpsc, oneshot, Mutex as AsyncMutex};
use uplink_store::*;

use crate::{lock, retention, retryable, Inner, PostgresStore, INSERT_EVENTS, LOCK_SENSORS};

/// One ingest call waiting for its group.
pub(crate) struct Job {
    pub row: i64,
    pub sensor_id: String,
    pub events: Vec<NewEvent>,
    pub reply: oneshot::Sender<Result<IngestOutcome, StoreError>>,
}

pub(crate) type Queue = Arc<AsyncMutex<mpsc::UnboundedReceiver<Job>>>;

/// Why a group did not commit.
enum Failed {
    /// Rolled back for a reason worth running the same group again at once.
    Retry,
    /// A statement failed: run the batches alone to find which.
    Statement(StoreError),
    /// The database cannot be used now: every caller gets this.
    Unavailable(StoreError),
}

/// What one batch's statement returned: events stored, and whether the sensor still exists.
type Stored = (u64, bool);

/// Takes groups off the queue until it closes.
pub(crate) async fn writer(queue: Queue, store: Weak<Inner>, group_events: usize) {
    loop {
        let group = {
            let mut rx = queue.lock().await;
            let Some(first) = rx.recv().await else { return };
            let mut n = first.events.len();
            let mut group = vec![first];
            while n < group_events {
                match rx.try_recv() {
                    Ok(job) => {
                        n += job.events.len();
                        group.push(job);
                    }
                    Err(_) => break,
                }
            }
            group
        };
        let Some(inner) = store.upgrade() else {
            for job in group {
                let _ = job.reply.send(Err(StoreError::WriterGone));
            }
            return;
        };
        inner.queued.fetch_sub(group.len(), Ordering::Relaxed);
        PostgresStore { inner }.commit(group).await;
    }
}

impl PostgresStore {
    /// Commits a group and answers its callers.
    async fn commit(&self, mut group: Vec<Job>) {
        group.sort_by_key(|j| j.row);
        let mut result = Err(Failed::Retry);
        for _ in 0..3 {
            result = self.run(&group).await;
            if !matches!(result, Err(Failed::Retry)) {
                break;
            }
        }
        match result {
            Ok(stored) => {
                self.inner.groups.fetch_add(1, Ordering::Relaxed);
                let now = now_ms();
                for (job, stored) in group.into_iter().zip(stored) {
                    self.answer(job, Ok(stored), now);
                }
            }
            Err(Failed::Unavailable(e)) => {
                let text = e.to_string();
                for job in group {
                    let _ = job.reply.send(Err(copy_error(&e, &text)));
                }
            }
            Err(Failed::Retry) if group.len() == 1 => {
                let job = group.pop().expect("one job");
                let e = StoreError::Backend {
                    backend: Backend::Postgres,
                    at: self.inner.at.clone(),
                    detail: "the batch was rolled back three times in a row (deadlock, serialization failure, or the same events stored concurrently by another replica); nothing of it was stored: send it again".into(),
                };
                let _ = job.reply.send(Err(e));
            }
            Err(Failed::Statement(e)) if group.len() == 1 => {
                let job = group.pop().expect("one job");
                let _ = job.reply.send(Err(e));
            }
            // Find the batch at fault: each alone.
            Err(_) => {
                for job in group {
                    Box::pin(self.commit(vec![job])).await;
                }
            }
        }
    }

    fn answer(&self, job: Job, stored: Result<Stored, StoreError>, now: i64) {
        let reply = match stored {
            Ok((_, false)) => {
                // Deleted with its workspace since it was cached.
                lock(&self.inner.sensors).remove(&job.sensor_id);
                Err(StoreError::NoSuchSensor(job.sensor_id.clone()))
            }
            Ok((accepted, true)) => {
                lock(&self.inner.seen).insert(job.row, now);
                Ok(IngestOutcome {
                    accepted,
                    duplicates: job.events.len() as u64 - accepted,
                })
            }
            Err(e) => Err(e),
        };
        let _ = job.reply.send(reply);
    }

    /// One try: every batch of the group in one transaction.
    async fn run(&self, group: &[Job]) -> Result<Vec<Stored>, Failed> {
        let mut client = self.client().await.map_err(Failed::Unavailable)?;
        let now = now_ms();
        self.ensure_days(&client, [uplink_store::retention::day_of(now)])
            .await
            .map_err(Failed::Unavailable)?;
        let failed = |e: tokio_postgres::Error| -> Failed {
            if retryable(e.code()) || crate::unique_race(&e) {
                Failed::Retry
            } else if retention::no_partition(&e) {
                self.forget_partitions();
                Failed::Retry
            } else if e.as_db_error().is_none() {
                Failed::Unavailable(self.err()(e))
            } else {
                Failed::Statement(self.err()(e))
            }
        };
        // READ COMMITTED whatever the database's default: each statement takes its own snapshot,
        // so INSERT_EVENTS's is taken after the lock below is held (under REPEATABLE READ the
        // lock statement's own snapshot, taken before it waits, would be the transaction's).
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::ReadCommitted)
            .start()
            .await
            .map_err(failed)?;
        // The group's sensor rows locked first, in their order, in a statement of their own: each
        // INSERT_EVENTS then takes its snapshot with the lock held, so no prune step of these
        // sensors (`shrink_holes`, `clear_seen`, a watermark's rise: FOR UPDATE) commits between
        // the snapshot by which it decides "new or duplicate" and its insert into `seen`. See
        // INSERT_EVENTS for the interleaving this closes.
        let mut rows: Vec<i64> = group.iter().map(|j| j.row).collect();
        rows.sort_unstable();
        rows.dedup();
        // Prepared once per connection: one round trip per group, not two.
        let lock = tx.prepare_cached(LOCK_SENSORS).await.map_err(failed)?;
        tx.execute(&lock, &[&rows]).await.map_err(failed)?;
        let statement = tx.prepare_cached(INSERT_EVENTS).await.map_err(failed)?;
        let mut stored = Vec::with_capacity(group.len());
        for job in group {
            let seqs: Vec<i64> = job.events.iter().map(|e| e.seq as i64).collect();
            let kinds: Vec<&str> = job.events.iter().map(|e| e.kind.as_str()).collect();
            let bodies: Vec<&str> = job.events.iter().map(|e| e.body.as_str()).collect();
            let times: Vec<i64> = vec![now; job.events.len()];
            let r = tx
                .query_one(&statement, &[&job.row, &seqs, &kinds, &times, &bodies])
                .await
                .map_err(failed)?;
            stored.push((r.get::<_, i64>(0) as u64, r.get::<_, bool>(1)));
        }
        tx.commit().await.map_err(failed)?;
        Ok(stored)
    }
}

/// The same error for every caller of a group.
fn copy_error(e: &StoreError, text: &str) -> StoreError {
    match e {
        StoreError::Unreachable {
            backend,
            at,
            detail,
        } => StoreError::Unreachable {
            backend: *backend,
            at: at.clone(),
            detail: detail.clone(),
        },
        StoreError::Backend {
            backend,
            at,
            detail,
        } => StoreError::Backend {
            backend: *backend,
            at: at.clone(),
            detail: detail.clone(),
        },
        _ => StoreError::Backend {
            backend: Backend::Postgres,
            at: String::new(),
            detail: text.to_owned(),
        },
    }
}
