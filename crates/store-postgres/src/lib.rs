//! The PostgreSQL store: uplink's [`Store`] trait over a database that several service replicas
//! share (`uplink service --database URL`).
//!
//! - Schema: versioned migrations applied at [`PostgresStore::connect`] under an advisory lock
//!   (`migrate.rs`).
//! - Ingest: one statement per batch — `INSERT … SELECT FROM UNNEST(arrays) ON CONFLICT DO
//!   NOTHING` on `(sensor, seq)`, with the per-sensor kind counters updated by the same
//!   statement — so a batch is stored whole or not at all, each `(sensor, seq)` once, and the call
//!   returns only after PostgreSQL committed it (`synchronous_commit` as the server has it; on by
//!   default). Concurrent batches of this process are coalesced by writer tasks into one
//!   transaction, one commit for many batches (group commit, `group.rs`). No row is updated by
//!   every ingest: counters are per sensor and kind.
//! - `last_seen`: remembered per process and written for all sensors at once every
//!   [`Settings::last_seen_flush`] (and at [`Store::flush`]), never one UPDATE per request.
//! - `health`: a pooled connection answers `SELECT 1`.
//!
//! - TLS: `sslmode=require|verify-ca|verify-full` (with `sslrootcert=FILE`, or the system's trust
//!   store) always verifies the server's certificate and name (`tls.rs`).
//!
//! - Retention and exactly-once across days (`retention.rs`): events are partitioned by day,
//!   `(sensor, seq)` is kept unique by the unpartitioned `seen` table plus each sensor's
//!   retention watermark; see migrations/0003_retention.sql and docs/storage.md.

mod console;
mod fleet;
mod history;
// backup fleet state.
mod imports;
pub use fleet::FLEET_LOCK;
mod group;
mod lifecycle;
pub mod migrate;
mod policy;
pub mod retention;
pub mod tls;
mod tokens;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::error::SqlState;
use tokio_postgres::NoTls;
use uplink_store::*;

/// Connection settings. `Debug` shows the URL with its password redacted.
#[derive(Debug, Clone)]
pub struct Settings {
    pub url: DatabaseUrl,
    /// The key the CA keys are sealed with (created when missing and the database has none yet).
    pub master_key: MasterKeyFile,
    /// Most connections this process holds.
    pub max_connections: usize,
    /// How often coalesced `last_seen` times are written.
    pub last_seen_flush: Duration,
    /// How long to wait for a connection (new or from the pool) before answering unavailable.
    pub connect_timeout: Duration,
    /// Writer tasks committing groups of concurrent ingest calls (`group.rs`).
    pub ingest_writers: usize,
    /// A writer's group takes waiting batches until it holds this many events (the batch that
    /// crosses it is the last, so a group can hold up to one batch more).
    pub group_events: usize,
}

impl Settings {
    pub fn new(url: DatabaseUrl, master_key: MasterKeyFile) -> Settings {
        Settings {
            url,
            master_key,
            max_connections: 16,
            last_seen_flush: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            ingest_writers: 4,
            group_events: 50_000,
        }
    }
}

/// The PostgreSQL store. Cheap to clone (one pool).
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    /// The URL, redacted: what errors and logs name.
    at: String,
    /// sensor_id → row id. A sensor deleted since (with its workspace) is noticed by the ingest
    /// statement and forgotten.
    sensors: Mutex<HashMap<String, i64>>,
    /// row id → last time seen, not yet written.
    seen: Mutex<HashMap<i64, i64>>,
    /// Seals and opens the secrets (set at connect, replaced by a rotation).
    key: std::sync::RwLock<Option<MasterKey>>,
    /// Days whose event partition this process knows exists (`retention.rs`).
    days: Mutex<HashSet<i64>>,
    /// The end of the partition that holds the events from before version 3 (`Some(None)`: there
    /// is none), once read from the database (`None`: to be read).
    legacy_until: Mutex<Option<Option<i64>>>,
    /// Ingest calls waiting for a writer (`group.rs`), how many, and groups committed.
    jobs: tokio::sync::mpsc::UnboundedSender<group::Job>,
    queued: std::sync::atomic::AtomicUsize,
    groups: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("at", &self.inner.at)
            .finish_non_exhaustive()
    }
}

const WORKSPACE_COLUMNS: &str =
    "name, domain, public_port, ca_cert_pem, ca_key_pem, ca_sha256, access_key_sha256, created_at, access_key";
const SENSOR_COLUMNS: &str =
    "sensor_id, workspace, name, cert_sha256, enrolled_at, last_seen, key_sha256";

/// Rows an export fetches from its portal at a time.
const EXPORT_CHUNK: i32 = 1000;

/// Locks the rows of the sensors ($1, ids) a transaction is about to store events of, in id
/// order (the order of every lock of several sensor rows: no deadlock), in a statement of its own before
/// [`INSERT_EVENTS`]: see there why. The transaction must be READ COMMITTED.
const LOCK_SENSORS: &str = "SELECT 1 FROM sensors WHERE id = ANY($1) ORDER BY id FOR KEY SHARE";

/// Stores a batch of one sensor ($1) — seqs, kinds, times, bodies ($2..$5) — each `(sensor, seq)`
/// once: seqs at or below the sensor's retention watermark are duplicates (except in a hole
/// the watermark passed, `pruned_holes`, migrations/0014: never stored, so new), and so are
/// those `seen` (unique, unpartitioned) already holds; the others are inserted into `seen` and
/// `events`, the first of a seq repeated within the batch winning. The sensor's row is read with
/// FOR KEY SHARE, so a prune raising the watermark (FOR UPDATE) waits for this batch or is seen
/// by it, and a workspace deletion (FOR UPDATE) waits for it or leaves it nothing to store
/// (`events` and `seen` have no foreign key: migrations/0013).
///
/// `seen` is written by a plain INSERT, not `ON CONFLICT DO NOTHING` (whose speculative insertion
/// and the join back to the claimed rows cost ~1.5 µs of the database's CPU per event): the
/// unique key still refuses a `(sensor, seq)` twice. When a concurrent transaction (another
/// replica given the same batch again) stored some of these seqs after this statement's snapshot,
/// the statement fails with a unique violation on `seen_pkey` and nothing of it is stored; run
/// again ([`unique_race`]), it sees them and counts them as duplicates.
/// Returns the events stored, and whether the sensor exists.
///
/// **The caller first locks the sensor's row FOR KEY SHARE in a statement of its own**
/// (group.rs), so this statement's snapshot is taken with the lock held. Without that (found in
/// review), the snapshot could predate both a first arrival of a seq into a hole (replica A,
/// committed just after) and a prune that then took the seq out of its hole (`shrink_holes`) and
/// deleted A's `seen` row (`clear_seen`): this statement, waiting for the prune's lock, saw the
/// hole and not A's row, and its insert into `seen` met no row any more: the seq stored twice.
/// With the lock held from before the snapshot until commit, no prune step of the sensor (each
/// FOR UPDATE, `clear_seen`'s deletions too) commits in between: what the snapshot shows of the
/// prune stays true, and a `seen` row committed after the snapshot stays to refuse the insert.
///
/// The watermark the statement decides by is `w0`, read without a lock, as of the statement's
/// snapshot, like `pruned_holes` and `seen`; `w` only takes the lock (again: a no-op now). When a prune holding the
/// row commits while this statement waits for it, the locked read returns the prune's new
/// watermark, but the snapshot does not see the holes that prune recorded below it: deciding by
/// the new watermark would answer a never-stored seq between the two "duplicate" (found in
/// review). By the snapshot's watermark such a seq is decided by `seen` as of the same snapshot,
/// which still holds every seq that prune removed (`clear_seen` runs after it commits).
const INSERT_EVENTS: &str = "WITH w AS (
        SELECT 1 FROM sensors WHERE id = $1 FOR KEY SHARE
    ), w0 AS (
        SELECT COALESCE(pruned_through, -1) AS through FROM sensors WHERE id = $1
    ), batch AS MATERIALIZED (
        SELECT DISTINCT ON (t.seq) t.seq, t.kind, t.received_at, t.body
        FROM UNNEST($2::bigint[], $3::text[], $4::bigint[], $5::text[]) WITH ORDINALITY
            AS t (seq, kind, received_at, body, ord), w, w0
        WHERE (t.seq > w0.through OR EXISTS (
                SELECT 1 FROM pruned_holes h WHERE h.sensor = $1 AND h.lo <= t.seq AND h.hi >= t.seq))
            AND NOT EXISTS (SELECT 1 FROM seen s WHERE s.sensor = $1 AND s.seq = t.seq)
        ORDER BY t.seq, t.ord
    ), claimed AS (
        INSERT INTO seen (sensor, seq) SELECT $1, seq FROM batch
    ), ins AS (
        INSERT INTO events (sensor, seq, kind, received_at, body)
        SELECT $1, b.seq, b.kind, b.received_at, b.body FROM batch b
        RETURNING kind
    ), counted AS (
        INSERT INTO kind_counts (sensor, kind, n)
        SELECT $1, kind, count(*) FROM ins GROUP BY kind ORDER BY kind
        ON CONFLICT (sensor, kind) DO UPDATE SET n = kind_counts.n + excluded.n
    )
    SELECT (SELECT count(*) FROM ins), EXISTS (SELECT 1 FROM w)";

/// Whether INSERT_EVENTS failed because a concurrent transaction stored some of the same
/// `(sensor, seq)` after its snapshot: nothing of it was stored, and running it again counts them
/// as duplicates.
pub(crate) fn unique_race(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_some_and(|db| {
        db.code() == &SqlState::UNIQUE_VIOLATION && db.constraint() == Some("seen_pkey")
    })
}

fn retention_day(ms: i64) -> i64 {
    uplink_store::retention::day_of(ms)
}

impl PostgresStore {
    /// Connects, applies pending migrations (under the advisory lock), and starts the task that
    /// writes coalesced `last_seen` times; it ends when the last clone of the store is dropped.
    /// Needs a Tokio runtime.
    pub async fn connect(settings: Settings) -> Result<PostgresStore, StoreError> {
        let at = settings.url.redacted();
        let bad_url = |e: String| {
            StoreError::Settings(format!(
                "the --database URL {at} cannot be used: {e}. Write postgres://USER@HOST:PORT/DB?sslmode=verify-full, or postgres://USER@/DB?host=/run/postgresql for a Unix socket"
            ))
        };
        let (url, tls) = tls::split(settings.url.expose()).map_err(bad_url)?;
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e: tokio_postgres::Error| bad_url(e.to_string()))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(settings.connect_timeout);
        }
        config.application_name("uplink");
        let manager_config = || ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match tls {
            tls::TlsMode::Off => {
                config.ssl_mode(tokio_postgres::config::SslMode::Disable);
                Manager::from_config(config, NoTls, manager_config())
            }
            tls::TlsMode::Verify { root_file } => {
                let unix = config
                    .get_hosts()
                    .iter()
                    .any(|h| !matches!(h, tokio_postgres::config::Host::Tcp(_)));
                if unix {
                    return Err(bad_url(
                        "PostgreSQL does not speak TLS on a Unix socket: drop sslmode, or give a host name".into(),
                    ));
                }
                let client = tls::client_config(root_file.as_deref()).map_err(bad_url)?;
                config.ssl_mode(tokio_postgres::config::SslMode::Require);
                Manager::from_config(
                    config,
                    tokio_postgres_rustls::MakeRustlsConnect::new(client),
                    manager_config(),
                )
            }
        };
        let pool = Pool::builder(manager)
            .max_size(settings.max_connections.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(settings.connect_timeout))
            .create_timeout(Some(settings.connect_timeout))
            .recycle_timeout(Some(settings.connect_timeout))
            .build()
            .map_err(|e| StoreError::Settings(format!("cannot set up a pool for {at}: {e}")))?;
        let (jobs, queue) = tokio::sync::mpsc::unbounded_channel();
        let store = PostgresStore {
            inner: Arc::new(Inner {
                pool,
                at,
                sensors: Mutex::new(HashMap::new()),
                seen: Mutex::new(HashMap::new()),
                key: std::sync::RwLock::new(None),
                days: Mutex::new(HashSet::new()),
                legacy_until: Mutex::new(None),
                jobs,
                queued: Default::default(),
                groups: Default::default(),
            }),
        };
        store.migrate().await?;
        store.load_partitions().await?;
        let key = store.settle_master_key(&settings.master_key).await?;
        *store.inner.key.write().unwrap_or_else(|p| p.into_inner()) = Some(key);
        tokio::spawn(flush_loop(
            Arc::downgrade(&store.inner),
            settings.last_seen_flush,
        ));
        let queue: group::Queue = Arc::new(tokio::sync::Mutex::new(queue));
        for _ in 0..settings.ingest_writers.max(1) {
            tokio::spawn(group::writer(
                queue.clone(),
                Arc::downgrade(&store.inner),
                settings.group_events.max(1),
            ));
        }
        Ok(store)
    }

    /// The URL, password redacted.
    pub fn location(&self) -> &str {
        &self.inner.at
    }

    /// Ingest calls waiting for a writer now.
    pub fn queued_batches(&self) -> usize {
        self.inner.queued.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Group transactions committed by this process so far.
    pub fn ingest_groups(&self) -> u64 {
        self.inner.groups.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.inner
            .pool
            .get()
            .await
            .map_err(|e| pool_err(&self.inner.at, e))
    }

    fn err(&self) -> impl Fn(tokio_postgres::Error) -> StoreError + '_ {
        move |e| pg_err(&self.inner.at, e)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.err())?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&migrate::LOCK_KEY])
            .await
            .map_err(self.err())?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS uplink_schema (
                version INTEGER PRIMARY KEY,
                name TEXT NOT NULL,
                compatible_back_to INTEGER NOT NULL,
                applied_at BIGINT NOT NULL
            )",
        )
        .await
        .map_err(self.err())?;
        let applied: Vec<(i32, i32)> = tx
            .query("SELECT version, compatible_back_to FROM uplink_schema", &[])
            .await
            .map_err(self.err())?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        for m in migrate::plan(&applied, &self.inner.at)? {
            tracing::info!(
                version = m.version,
                name = m.name,
                "applying a schema migration"
            );
            tx.batch_execute(m.sql).await.map_err(self.err())?;
            tx.execute(
                "INSERT INTO uplink_schema (version, name, compatible_back_to, applied_at) VALUES ($1, $2, $3, $4)",
                &[&m.version, &m.name, &m.compatible_back_to, &now_ms()],
            )
            .await
            .map_err(self.err())?;
        }
        tx.commit().await.map_err(self.err())
    }

    /// The row id of a sensor (cached), or `None` when it is not enrolled.
    async fn sensor_row(
        &self,
        client: &deadpool_postgres::Object,
        sensor_id: &str,
    ) -> Result<Option<i64>, StoreError> {
        if let Some(id) = lock(&self.inner.sensors).get(sensor_id) {
            return Ok(Some(*id));
        }
        let row = client
            .query_opt("SELECT id FROM sensors WHERE sensor_id = $1", &[&sensor_id])
            .await
            .map_err(self.err())?;
        let id = row.map(|r| r.get::<_, i64>(0));
        if let Some(id) = id {
            lock(&self.inner.sensors).insert(sensor_id.to_owned(), id);
        }
        Ok(id)
    }

    /// As the SQLite store does: the key verified against the database's check value (or the
    /// check recorded now, the key file created first if missing), then any plain CA key sealed.
    async fn settle_master_key(&self, file: &MasterKeyFile) -> Result<MasterKey, StoreError> {
        let client = self.client().await?;
        let read_check = || async {
            client
                .query_opt(
                    "SELECT value FROM uplink_meta WHERE key = 'master_key_check'",
                    &[],
                )
                .await
                .map(|r| r.map(|r| r.get::<_, String>(0)))
                .map_err(self.err())
        };
        let check = read_check().await?;
        let key = file.resolve(check.is_some())?;
        let check = match check {
            Some(c) => c,
            None => {
                client
                    .execute(
                        "INSERT INTO uplink_meta (key, value) VALUES ('master_key_check', $1) ON CONFLICT (key) DO NOTHING",
                        &[&key.check_value()],
                    )
                    .await
                    .map_err(self.err())?;
                read_check().await?.unwrap_or_default()
            }
        };
        key.verify_check(&check)?;
        let plain = client
            .query(
                "SELECT name, ca_key_pem FROM workspaces WHERE ca_key_pem NOT LIKE 'sealed:v1:%'",
                &[],
            )
            .await
            .map_err(self.err())?;
        for r in &plain {
            let (name, pem): (String, String) = (r.get(0), r.get(1));
            client
                .execute(
                    "UPDATE workspaces SET ca_key_pem = $2 WHERE name = $1 AND ca_key_pem = $3",
                    &[&name, &key.seal(&pem, &master::ca_key_context(&name)), &pem],
                )
                .await
                .map_err(self.err())?;
        }
        self.seal_plain_webhook_secrets(&client, &key).await?;
        Ok(key)
    }

    pub(crate) fn key(&self) -> Result<MasterKey, StoreError> {
        self.inner
            .key
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| StoreError::Settings("the store's master key is not loaded".into()))
    }

    /// A stored workspace with its CA key opened.
    fn unseal(&self, r: &tokio_postgres::Row) -> Result<WorkspaceRecord, StoreError> {
        let mut w = row_to_workspace(r);
        let key = self.key()?;
        w.ca_key_pem = key.open(&w.ca_key_pem, &master::ca_key_context(&w.name))?;
        if let Some(k) = &w.access_key {
            w.access_key = Some(key.open(k, &master::access_key_context(&w.name))?);
        }
        Ok(w)
    }

    /// The sensor of `workspace` (other than `except`) that holds `key`.
    /// A read-only snapshot (repeatable read) in which `workspace` exists: what `stats` and
    /// `export` read agrees with itself.
    ///
    /// With `events_too`, the events' partitions are locked (ACCESS SHARE) before the snapshot
    /// is taken: a partition dropped by retention after the snapshot but before the rows are
    /// read would otherwise be missing from what the snapshot's counters still count.
    async fn snapshot_of<'c>(
        &self,
        client: &'c mut deadpool_postgres::Object,
        workspace: &str,
        events_too: bool,
    ) -> Result<deadpool_postgres::Transaction<'c>, StoreError> {
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(self.err())?;
        if events_too {
            // LOCK is not a query: the snapshot is taken at the next statement, after it.
            tx.batch_execute("LOCK TABLE events IN ACCESS SHARE MODE")
                .await
                .map_err(self.err())?;
        }
        let exists = tx
            .query_opt("SELECT 1 FROM workspaces WHERE name = $1", &[&workspace])
            .await
            .map_err(self.err())?;
        if exists.is_none() {
            return Err(StoreError::NoSuchWorkspace(workspace.to_owned()));
        }
        Ok(tx)
    }

    /// What a failed sensor insert means: a unique violation on (workspace, key_sha256) — the
    /// index decides, also between replicas — is the key already enrolled by the sensor holding
    /// it; anything else is the database's error.
    async fn insert_error(
        &self,
        client: &deadpool_postgres::Object,
        s: &SensorRecord,
        e: tokio_postgres::Error,
    ) -> StoreError {
        if let (Some(&SqlState::UNIQUE_VIOLATION), Some(key)) = (e.code(), s.key_sha256.as_deref())
        {
            match self.key_holder(client, &s.workspace, key, None).await {
                Ok(Some(sensor_id)) => {
                    return StoreError::KeyAlreadyEnrolled {
                        workspace: s.workspace.clone(),
                        sensor_id,
                    }
                }
                Ok(None) => {}
                Err(other) => return other,
            }
        }
        self.err()(e)
    }

    async fn key_holder(
        &self,
        client: &deadpool_postgres::Object,
        workspace: &str,
        key: &str,
        except: Option<&str>,
    ) -> Result<Option<String>, StoreError> {
        let row = client
            .query_opt(
                "SELECT sensor_id FROM sensors WHERE workspace = $1 AND key_sha256 = $2 AND ($3::text IS NULL OR sensor_id <> $3)",
                &[&workspace, &key, &except],
            )
            .await
            .map_err(self.err())?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn flush_seen(&self) -> Result<(), StoreError> {
        let pending: Vec<(i64, i64)> = std::mem::take(&mut *lock(&self.inner.seen))
            .into_iter()
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        let result = async {
            let client = self.client().await?;
            let ids: Vec<i64> = pending.iter().map(|p| p.0).collect();
            let times: Vec<i64> = pending.iter().map(|p| p.1).collect();
            client
                .execute(
                    "UPDATE sensors s SET last_seen = GREATEST(COALESCE(s.last_seen, 0), v.t)
                     FROM UNNEST($1::bigint[], $2::bigint[]) AS v (id, t) WHERE s.id = v.id",
                    &[&ids, &times],
                )
                .await
                .map_err(self.err())
        }
        .await;
        if let Err(e) = result {
            // Keep them for the next try (newer times seen meanwhile win).
            let mut seen = lock(&self.inner.seen);
            for (id, t) in pending {
                let slot = seen.entry(id).or_insert(t);
                *slot = (*slot).max(t);
            }
            return Err(e);
        }
        Ok(())
    }
}

async fn flush_loop(store: Weak<Inner>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(inner) = store.upgrade() else { return };
        let store = PostgresStore { inner };
        if let Err(e) = store.flush_seen().await {
            tracing::warn!(error = %e, "writing sensors' last-seen times failed; retrying later");
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether a failed statement is worth running again at once (a deadlock or serialization
/// failure between concurrent batches: PostgreSQL rolled it back whole).
fn retryable(state: Option<&SqlState>) -> bool {
    matches!(
        state,
        Some(s) if *s == SqlState::T_R_DEADLOCK_DETECTED || *s == SqlState::T_R_SERIALIZATION_FAILURE
    )
}

fn pg_err(at: &str, e: tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) if db.code() == &SqlState::UNDEFINED_TABLE => StoreError::NotAStore {
            path: at.to_owned(),
            reason: format!(
                "{} (SQLSTATE {}): uplink's tables are missing; any uplink command given this --database creates them (it needs the right to CREATE in the database)",
                db.message(),
                db.code().code()
            ),
        },
        Some(db) => StoreError::Backend {
            backend: Backend::Postgres,
            at: at.to_owned(),
            detail: format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        },
        None => {
            let mut detail = e.to_string();
            let source = std::error::Error::source(&e).map(|s| s.to_string());
            if let Some(source) = source.filter(|s| !detail.contains(s.as_str())) {
                detail = format!("{detail}: {source}");
            }
            if detail.contains("certificate") {
                detail.push_str(" (the server's certificate must chain to sslrootcert=FILE, or to this machine's trust store, and name the URL's host)");
            }
            StoreError::Unreachable {
                backend: Backend::Postgres,
                at: at.to_owned(),
                detail,
            }
        }
    }
}

fn pool_err(at: &str, e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => pg_err(at, e),
        deadpool_postgres::PoolError::Timeout(_) => StoreError::Unreachable {
            backend: Backend::Postgres,
            at: at.to_owned(),
            detail: "no connection could be had in time".into(),
        },
        e => StoreError::Unreachable {
            backend: Backend::Postgres,
            at: at.to_owned(),
            detail: e.to_string(),
        },
    }
}

/// The advisory lock the change log is appended under ("uplink" in ASCII, then 4).
pub const CHANGES_LOCK_KEY: i64 = 0x75_70_6c_69_6e_6b_00_04;

/// Appends an entry to the change log inside the caller's transaction `tx`. It first takes
/// [`CHANGES_LOCK_KEY`] (held until `tx` ends), so entries are numbered and committed one
/// transaction at a time: an identity taken by a transaction that commits after a later one would
/// otherwise be skipped by a replica that already read past it. Call it last in the transaction,
/// just before committing, so the lock is held briefly (and always after any row lock: no
/// deadlock). Every workspace mutation calls it, once per workspace it changes.
pub(crate) async fn record_change(
    tx: &tokio_postgres::Transaction<'_>,
    workspace: &str,
    kind: &ChangeKind,
) -> Result<(), tokio_postgres::Error> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&CHANGES_LOCK_KEY])
        .await?;
    tx.execute(
        "INSERT INTO changes (workspace, kind, at) VALUES ($1, $2, $3)",
        &[&workspace, &kind.as_str(), &now_ms()],
    )
    .await?;
    Ok(())
}

fn row_to_workspace(r: &tokio_postgres::Row) -> WorkspaceRecord {
    WorkspaceRecord {
        name: r.get(0),
        domain: r.get(1),
        public_port: r.get::<_, i32>(2) as u16,
        ca_cert_pem: r.get(3),
        ca_key_pem: r.get(4),
        ca_sha256: r.get(5),
        access_key_sha256: r.get(6),
        created_at: r.get(7),
        access_key: r.get(8),
    }
}

fn row_to_sensor(r: &tokio_postgres::Row) -> SensorRecord {
    SensorRecord {
        sensor_id: r.get(0),
        workspace: r.get(1),
        name: r.get(2),
        cert_sha256: r.get(3),
        enrolled_at: r.get(4),
        last_seen: r.get(5),
        key_sha256: r.get(6),
    }
}

impl Store for PostgresStore {
    async fn import_sensor(&self, s: SensorRecord) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let res = client
            .execute(
                &format!("INSERT INTO sensors ({SENSOR_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (sensor_id) DO NOTHING"),
                &[&s.sensor_id, &s.workspace, &s.name, &s.cert_sha256, &s.enrolled_at, &s.last_seen, &s.key_sha256],
            )
            .await;
        match res {
            Ok(1) => Ok(true),
            Ok(_) => {
                let ws: String = client
                    .query_one(
                        "SELECT workspace FROM sensors WHERE sensor_id = $1",
                        &[&s.sensor_id],
                    )
                    .await
                    .map_err(self.err())?
                    .get(0);
                if ws == s.workspace {
                    Ok(false)
                } else {
                    Err(StoreError::KeyAlreadyEnrolled {
                        workspace: ws,
                        sensor_id: s.sensor_id,
                    })
                }
            }
            Err(e) => Err(self.insert_error(&client, &s, e).await),
        }
    }

    async fn import_events(
        &self,
        sensor_id: &str,
        events: Vec<StoredEvent>,
    ) -> Result<IngestOutcome, StoreError> {
        let mut client = self.client().await?;
        let Some(row) = self.sensor_row(&client, sensor_id).await? else {
            return Err(StoreError::NoSuchSensor(sensor_id.to_owned()));
        };
        self.ensure_days(&client, events.iter().map(|e| retention_day(e.received_at)))
            .await?;
        let seqs: Vec<i64> = events.iter().map(|e| e.seq as i64).collect();
        let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
        let bodies: Vec<&str> = events.iter().map(|e| e.body.as_str()).collect();
        let times: Vec<i64> = events.iter().map(|e| e.received_at).collect();
        let mut tries = 0;
        let r = loop {
            tries += 1;
            // The sensor's row locked before the statement's snapshot, as group.rs does (see
            // INSERT_EVENTS).
            let r = async {
                let tx = client
                    .build_transaction()
                    .isolation_level(tokio_postgres::IsolationLevel::ReadCommitted)
                    .start()
                    .await?;
                let lock = tx.prepare_cached(LOCK_SENSORS).await?;
                tx.execute(&lock, &[&vec![row]]).await?;
                let insert = tx.prepare_cached(INSERT_EVENTS).await?;
                let r = tx
                    .query_one(&insert, &[&row, &seqs, &kinds, &times, &bodies])
                    .await?;
                tx.commit().await?;
                Ok::<_, tokio_postgres::Error>(r)
            }
            .await;
            match r {
                Err(e) if retention::no_partition(&e) && tries < 3 => {
                    // Another process dropped a partition this one thought was there: once more.
                    self.forget_partitions();
                    self.ensure_days(&client, events.iter().map(|e| retention_day(e.received_at)))
                        .await?;
                }
                // The same events stored concurrently by another process: once more, they are
                // duplicates then.
                Err(e) if unique_race(&e) && tries < 3 => {}
                r => break r,
            }
        }
        .map_err(self.err())?;
        if !r.get::<_, bool>(1) {
            lock(&self.inner.sensors).remove(sensor_id);
            return Err(StoreError::NoSuchSensor(sensor_id.to_owned()));
        }
        let accepted = r.get::<_, i64>(0) as u64;
        Ok(IngestOutcome {
            accepted,
            duplicates: events.len() as u64 - accepted,
        })
    }

    async fn sensor_counts(&self, workspace: &str) -> Result<BTreeMap<String, u64>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT s.sensor_id, (SELECT count(*) FROM events e WHERE e.sensor = s.id) FROM sensors s WHERE s.workspace = $1",
                &[&workspace],
            )
            .await
            .map_err(self.err())?;
        Ok(rows
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1) as u64))
            .collect())
    }

    async fn rotate_master_key(&self, new: MasterKey) -> Result<u64, StoreError> {
        let old = self.key()?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.err())?;
        // Rows locked: a workspace created meanwhile waits, then is sealed under the new key
        // by a process that has it, or refused by one that has not (the check changed).
        let rows = tx
            .query(
                "SELECT name, ca_key_pem, access_key FROM workspaces FOR UPDATE",
                &[],
            )
            .await
            .map_err(self.err())?;
        tx.execute(
            "SELECT value FROM uplink_meta WHERE key = 'master_key_check' FOR UPDATE",
            &[],
        )
        .await
        .map_err(self.err())?;
        let mut n = 0u64;
        for r in &rows {
            let (name, ca, access): (String, String, Option<String>) =
                (r.get(0), r.get(1), r.get(2));
            let reseal = |v: &str, ctx: &str| old.open(v, ctx).map(|p| new.seal(&p, ctx));
            let ca = reseal(&ca, &master::ca_key_context(&name))?;
            let access = access
                .map(|a| reseal(&a, &master::access_key_context(&name)))
                .transpose()?;
            n += 1 + u64::from(access.is_some());
            tx.execute(
                "UPDATE workspaces SET ca_key_pem = $2, access_key = $3 WHERE name = $1",
                &[&name, &ca, &access],
            )
            .await
            .map_err(self.err())?;
        }
        n += self.reseal_webhook_secrets(&tx, &old, &new).await?;
        // Central policy passwords (issue #26).
        n += policy::reseal(&tx, &old, &new)
            .await
            .map_err(self.err())??;
        // CA rotation: the previous CAs' keys.
        n += self.reseal_previous_cas(&tx, &old, &new).await?;
        tx.execute(
            "UPDATE uplink_meta SET value = $1 WHERE key = 'master_key_check'",
            &[&new.check_value()],
        )
        .await
        .map_err(self.err())?;
        for r in &rows {
            record_change(&tx, r.get(0), &ChangeKind::MasterKeyRotated)
                .await
                .map_err(self.err())?;
        }
        tx.commit().await.map_err(self.err())?;
        *self.inner.key.write().unwrap_or_else(|p| p.into_inner()) = Some(new);
        Ok(n)
    }

    async fn workspaces(&self) -> Result<Vec<WorkspaceRecord>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!("SELECT {WORKSPACE_COLUMNS} FROM workspaces ORDER BY name"),
                &[],
            )
            .await
            .map_err(self.err())?;
        rows.iter().map(|r| self.unseal(r)).collect()
    }

    async fn workspace(&self, name: &str) -> Result<Option<WorkspaceRecord>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!("SELECT {WORKSPACE_COLUMNS} FROM workspaces WHERE name = $1"),
                &[&name],
            )
            .await
            .map_err(self.err())?;
        row.as_ref().map(|r| self.unseal(r)).transpose()
    }

    async fn create_workspace(&self, ws: WorkspaceRecord) -> Result<(), StoreError> {
        let sealed_key = self
            .key()?
            .seal(&ws.ca_key_pem, &master::ca_key_context(&ws.name));
        let sealed_access = match &ws.access_key {
            Some(k) => Some(self.key()?.seal(k, &master::access_key_context(&ws.name))),
            None => None,
        };
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.err())?;
        let n = tx
            .execute(
                &format!("INSERT INTO workspaces ({WORKSPACE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (name) DO NOTHING"),
                &[&ws.name, &ws.domain, &i32::from(ws.public_port), &ws.ca_cert_pem, &sealed_key, &ws.ca_sha256, &ws.access_key_sha256, &ws.created_at, &sealed_access],
            )
            .await
            .map_err(self.err())?;
        if n == 0 {
            return Err(StoreError::WorkspaceExists(ws.name));
        }
        record_change(&tx, &ws.name, &ChangeKind::Created)
            .await
            .map_err(self.err())?;
        tx.commit().await.map_err(self.err())
    }

    async fn add_sensor(&self, s: SensorRecord) -> Result<(), StoreError> {
        let client = self.client().await?;
        let res = client
            .execute(
                &format!(
                    "INSERT INTO sensors ({SENSOR_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
                ),
                &[
                    &s.sensor_id,
                    &s.workspace,
                    &s.name,
                    &s.cert_sha256,
                    &s.enrolled_at,
                    &s.last_seen,
                    &s.key_sha256,
                ],
            )
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) => Err(self.insert_error(&client, &s, e).await),
        }
    }

    async fn renew_sensor(
        &self,
        workspace: &str,
        sensor_id: &str,
        cert_sha256: &str,
        key_sha256: &str,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        // One statement: a revoked sensor's row is not updated (and the revocation's row lock on
        // the sensor makes a racing renewal wait for it).
        let res = client
            .execute(
                "UPDATE sensors SET cert_sha256 = $1, key_sha256 = $4 WHERE sensor_id = $2 AND workspace = $3
                 AND NOT EXISTS (SELECT 1 FROM revocations r WHERE r.sensor_id = $2)",
                &[&cert_sha256, &sensor_id, &workspace, &key_sha256],
            )
            .await;
        match res {
            Ok(0) => {
                let revoked = client
                    .query_opt(
                        "SELECT 1 FROM revocations WHERE sensor_id = $1",
                        &[&sensor_id],
                    )
                    .await
                    .map_err(self.err())?;
                Err(match revoked {
                    Some(_) => StoreError::Revoked {
                        workspace: workspace.to_owned(),
                        sensor_id: sensor_id.to_owned(),
                    },
                    None => StoreError::NoSuchSensor(sensor_id.to_owned()),
                })
            }
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                match self
                    .key_holder(&client, workspace, key_sha256, Some(sensor_id))
                    .await?
                {
                    Some(holder) => Err(StoreError::KeyAlreadyEnrolled {
                        workspace: workspace.to_owned(),
                        sensor_id: holder,
                    }),
                    None => Err(self.err()(e)),
                }
            }
            Err(e) => Err(self.err()(e)),
        }
    }

    async fn health(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .query_one("SELECT 1", &[])
            .await
            .map_err(self.err())?;
        Ok(())
    }

    async fn flush(&self) -> Result<(), StoreError> {
        self.flush_seen().await
    }

    async fn change_version(&self) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let v: i64 = client
            .query_one("SELECT COALESCE(MAX(version), 0)::BIGINT FROM changes", &[])
            .await
            .map_err(self.err())?
            .get(0);
        Ok(v.max(0) as u64)
    }

    async fn changes_since(&self, after: u64, limit: usize) -> Result<Vec<Change>, StoreError> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT version, workspace, kind FROM changes WHERE version > $1 ORDER BY version LIMIT $2",
                &[&after, &limit],
            )
            .await
            .map_err(self.err())?;
        Ok(rows
            .iter()
            .map(|r| Change {
                version: r.get::<_, i64>(0).max(0) as u64,
                workspace: r.get(1),
                kind: ChangeKind::parse(r.get(2)),
            })
            .collect())
    }

    async fn ingest(
        &self,
        sensor_id: &str,
        events: Vec<NewEvent>,
    ) -> Result<IngestOutcome, StoreError> {
        let cached = lock(&self.inner.sensors).get(sensor_id).copied();
        let row = match cached {
            Some(row) => row,
            None => {
                let client = self.client().await?;
                self.sensor_row(&client, sensor_id)
                    .await?
                    .ok_or_else(|| StoreError::NoSuchSensor(sensor_id.to_owned()))?
            }
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.inner
            .queued
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let job = group::Job {
            row,
            sensor_id: sensor_id.to_owned(),
            events,
            reply,
        };
        if self.inner.jobs.send(job).is_err() {
            return Err(StoreError::WriterGone);
        }
        answer.await.map_err(|_| StoreError::WriterGone)?
    }

    async fn stats(&self, workspace: &str) -> Result<WorkspaceStats, StoreError> {
        let mut client = self.client().await?;
        // One snapshot: the sensors and the counts agree.
        let tx = self.snapshot_of(&mut client, workspace, false).await?;
        let mut sensors: Vec<SensorRecord> = tx
            .query(
                &format!("SELECT {SENSOR_COLUMNS} FROM sensors WHERE workspace = $1 ORDER BY enrolled_at, sensor_id"),
                &[&workspace],
            )
            .await
            .map_err(self.err())?
            .iter()
            .map(row_to_sensor)
            .collect();
        let counts = tx
            .query(
                "SELECT k.kind, SUM(k.n)::bigint FROM kind_counts k JOIN sensors s ON s.id = k.sensor
                 WHERE s.workspace = $1 GROUP BY k.kind HAVING SUM(k.n) > 0 ORDER BY k.kind",
                &[&workspace],
            )
            .await
            .map_err(self.err())?;
        tx.commit().await.map_err(self.err())?;
        let mut by_kind = BTreeMap::new();
        let mut total = 0;
        for r in &counts {
            let n = r.get::<_, i64>(1) as u64;
            total += n;
            by_kind.insert(r.get::<_, String>(0), n);
        }
        // What this process saw but has not written yet.
        {
            let ids = lock(&self.inner.sensors);
            let seen = lock(&self.inner.seen);
            for s in &mut sensors {
                if let Some(t) = ids.get(&s.sensor_id).and_then(|id| seen.get(id)) {
                    s.last_seen = Some(s.last_seen.map_or(*t, |l| l.max(*t)));
                }
            }
        }
        Ok(WorkspaceStats {
            sensors,
            total,
            by_kind,
        })
    }

    async fn export(
        &self,
        workspace: &str,
        filter: ExportFilter,
        out: tokio::sync::mpsc::Sender<StoredEvent>,
    ) -> Result<u64, StoreError> {
        let mut client = self.client().await?;
        let tx = self.snapshot_of(&mut client, workspace, true).await?;
        let expected: Option<u64> = match filter.sensor_id {
            Some(_) => None,
            None => Some(
                tx.query_one(
                    "SELECT COALESCE(SUM(k.n), 0)::bigint FROM kind_counts k JOIN sensors s ON s.id = k.sensor
                     WHERE s.workspace = $1 AND ($2::text IS NULL OR k.kind = $2)",
                    &[&workspace, &filter.kind],
                )
                .await
                .map_err(self.err())?
                .get::<_, i64>(0) as u64,
            ),
        };
        let statement = tx
            .prepare(
                "SELECT s.sensor_id, e.seq, e.kind, e.received_at, e.body FROM events e JOIN sensors s ON s.id = e.sensor
                 WHERE s.workspace = $1 AND ($2::text IS NULL OR e.kind = $2) AND ($3::text IS NULL OR s.sensor_id = $3)
                 ORDER BY s.sensor_id, e.seq",
            )
            .await
            .map_err(self.err())?;
        let portal = tx
            .bind(&statement, &[&workspace, &filter.kind, &filter.sensor_id])
            .await
            .map_err(self.err())?;
        let mut n = 0u64;
        loop {
            let rows = tx
                .query_portal(&portal, EXPORT_CHUNK)
                .await
                .map_err(self.err())?;
            if rows.is_empty() {
                break;
            }
            for r in &rows {
                let event = StoredEvent {
                    sensor_id: r.get(0),
                    seq: r.get::<_, i64>(1) as u64,
                    kind: r.get(2),
                    received_at: r.get(3),
                    body: r.get(4),
                };
                out.send(event)
                    .await
                    .map_err(|_| StoreError::output_closed())?;
                n += 1;
            }
        }
        if let Some(expected) = expected.filter(|&e| e != n) {
            return Err(StoreError::Damaged {
                path: self.inner.at.clone(),
                detail: format!(
                    "the export read {n} events but the store counts {expected} for this workspace{}: the export is incomplete",
                    filter.kind.as_ref().map(|k| format!(" and kind {k:?}")).unwrap_or_default()
                ),
            });
        }
        Ok(n)
    }

    async fn record_report(
        &self,
        workspace: &str,
        report: FleetReport,
    ) -> Result<bool, StoreError> {
        self.record_report_pg(workspace, &report).await
    }

    async fn evaluate_fleet(
        &self,
        now_ms: i64,
        policy: &FleetPolicy,
        only: Option<(&str, &str)>,
    ) -> Result<FleetEvaluation, StoreError> {
        self.evaluate_fleet_pg(now_ms, policy, only).await
    }

    async fn fleet_sensors(&self, workspace: &str) -> Result<Vec<FleetSensor>, StoreError> {
        self.fleet_sensors_pg(workspace).await
    }

    async fn fleet_issues(&self, workspace: &str) -> Result<Vec<Issue>, StoreError> {
        self.fleet_issues_pg(workspace).await
    }

    async fn suppress_issue(
        &self,
        workspace: &str,
        issue_id: &str,
        suppression: Option<(i64, String, String)>,
    ) -> Result<Option<Issue>, StoreError> {
        self.suppress_issue_pg(workspace, issue_id, suppression)
            .await
    }

    async fn workspace_settings(&self, workspace: &str) -> Result<WorkspaceSettings, StoreError> {
        self.workspace_settings_pg(workspace).await
    }

    async fn set_workspace_settings(
        &self,
        workspace: &str,
        change: SettingsChange,
    ) -> Result<WorkspaceSettings, StoreError> {
        self.set_workspace_settings_pg(workspace, change).await
    }

    async fn delete_workspace(&self, workspace: &str) -> Result<DeletedWorkspace, StoreError> {
        self.delete_workspace_pg(workspace).await
    }

    async fn revoke_sensor(
        &self,
        workspace: &str,
        sensor_id: &str,
        reason: &str,
        decommission: bool,
    ) -> Result<Revocation, StoreError> {
        self.revoke_sensor_pg(workspace, sensor_id, reason, decommission)
            .await
    }

    async fn revocations(&self, workspace: &str) -> Result<Vec<Revocation>, StoreError> {
        self.revocations_pg(workspace).await
    }

    async fn record_certificate(
        &self,
        sensor_id: &str,
        serial_hex: &str,
        cert_sha256: &str,
    ) -> Result<(), StoreError> {
        self.record_certificate_pg(sensor_id, serial_hex, cert_sha256)
            .await
    }

    async fn revoked_serials(&self, workspace: &str) -> Result<Vec<RevokedSerial>, StoreError> {
        self.revoked_serials_pg(workspace).await
    }

    async fn set_access_key(
        &self,
        workspace: &str,
        access_key: &str,
        access_key_sha256: &str,
    ) -> Result<(), StoreError> {
        self.set_access_key_pg(workspace, access_key, access_key_sha256)
            .await
    }

    async fn record_audit(&self, entry: AuditEntry) -> Result<(), StoreError> {
        self.record_audit_pg(&entry).await
    }

    async fn audit(&self, workspace: &str, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        self.audit_pg(workspace, limit).await
    }

    async fn prune(&self, options: PruneOptions) -> Result<PruneReport, StoreError> {
        self.prune_pg(options).await
    }

    async fn watermarks(&self, workspace: &str) -> Result<BTreeMap<String, u64>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT sensor_id, pruned_through FROM sensors WHERE workspace = $1 AND pruned_through IS NOT NULL",
                &[&workspace],
            )
            .await
            .map_err(self.err())?;
        Ok(rows
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1) as u64))
            .collect())
    }

    async fn raise_watermark(&self, sensor_id: &str, through: u64) -> Result<(), StoreError> {
        let client = self.client().await?;
        // The row locked FOR UPDATE, as a prune does: ingest of the sensor (FOR KEY SHARE) is
        // ordered with it.
        let n = client
            .execute(
                "WITH l AS (SELECT id FROM sensors WHERE sensor_id = $1 FOR UPDATE)
                 UPDATE sensors s SET pruned_through = GREATEST(COALESCE(s.pruned_through, -1), $2) FROM l WHERE s.id = l.id",
                &[&sensor_id, &(through as i64)],
            )
            .await
            .map_err(self.err())?;
        if n == 0 {
            return Err(StoreError::NoSuchSensor(sensor_id.to_owned()));
        }
        Ok(())
    }

    async fn create_token(
        &self,
        token: AdminToken,
        secret_sha256: String,
    ) -> Result<(), StoreError> {
        self.create_token_pg(&token, &secret_sha256).await
    }

    async fn tokens(&self, workspace: &str) -> Result<Vec<AdminToken>, StoreError> {
        self.tokens_pg(workspace).await
    }

    async fn revoke_token(
        &self,
        workspace: &str,
        name_or_id: &str,
    ) -> Result<Option<AdminToken>, StoreError> {
        self.revoke_token_pg(workspace, name_or_id).await
    }

    async fn token_by_hash(&self, secret_sha256: &str) -> Result<Option<AdminToken>, StoreError> {
        self.token_by_hash_pg(secret_sha256).await
    }

    async fn set_webhooks(&self, workspace: &str, hooks: Vec<Webhook>) -> Result<(), StoreError> {
        self.set_webhooks_pg(workspace, &hooks).await
    }

    async fn webhooks(&self, workspace: &str) -> Result<Vec<Webhook>, StoreError> {
        self.webhooks_pg(workspace).await
    }

    async fn claim_deliveries(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<(Delivery, Option<String>)>, StoreError> {
        self.claim_deliveries_pg(now_ms, lease_ms, limit).await
    }

    async fn finish_delivery(
        &self,
        id: i64,
        outcome: uplink_store::webhooks::Outcome,
    ) -> Result<(), StoreError> {
        self.finish_delivery_pg(id, &outcome).await
    }

    async fn deliveries(&self, workspace: &str) -> Result<Vec<Delivery>, StoreError> {
        self.deliveries_pg(workspace).await
    }

    // Sensor lifecycle, part 2 (issue #24, `lifecycle.rs`): settings and rate-limit windows.
    async fn lifecycle_settings(&self, workspace: &str) -> Result<LifecycleSettings, StoreError> {
        self.lifecycle_settings_pg(workspace).await
    }

    async fn set_lifecycle_settings(
        &self,
        workspace: &str,
        change: LifecycleChange,
    ) -> Result<LifecycleSettings, StoreError> {
        self.set_lifecycle_settings_pg(workspace, change).await
    }

    async fn rate_hit(
        &self,
        scope: &str,
        now_ms: i64,
        window_ms: i64,
        limit: u64,
    ) -> Result<RateHit, StoreError> {
        self.rate_hit_pg(scope, now_ms, window_ms, limit).await
    }

    async fn rate_count(
        &self,
        scope: &str,
        now_ms: i64,
        window_ms: i64,
    ) -> Result<u64, StoreError> {
        self.rate_count_pg(scope, now_ms, window_ms).await
    }

    async fn mark_uninstalled(
        &self,
        workspace: &str,
        sensor_id: &str,
    ) -> Result<Revocation, StoreError> {
        self.mark_uninstalled_pg(workspace, sensor_id).await
    }

    // The web console (issue #25, `console.rs`).
    async fn create_console_user(&self, user: ConsoleUser) -> Result<bool, StoreError> {
        self.create_console_user_pg(&user).await
    }

    async fn console_users(&self, workspace: &str) -> Result<Vec<ConsoleUser>, StoreError> {
        self.console_users_pg(workspace).await
    }

    async fn console_user(
        &self,
        workspace: &str,
        name: &str,
    ) -> Result<Option<ConsoleUser>, StoreError> {
        self.console_user_pg(workspace, name).await
    }

    async fn remove_console_user(&self, workspace: &str, name: &str) -> Result<bool, StoreError> {
        self.remove_console_user_pg(workspace, name).await
    }

    async fn put_console_session(&self, session: ConsoleSession) -> Result<(), StoreError> {
        self.put_console_session_pg(&session).await
    }

    async fn console_session(&self, id_sha256: &str) -> Result<Option<ConsoleSession>, StoreError> {
        self.console_session_pg(id_sha256).await
    }

    async fn delete_console_session(&self, id_sha256: &str) -> Result<(), StoreError> {
        self.delete_console_session_pg(id_sha256).await
    }

    async fn login_failures(
        &self,
        workspace: &str,
        name: &str,
    ) -> Result<LoginFailures, StoreError> {
        self.login_failures_pg(workspace, name).await
    }

    async fn record_login(
        &self,
        workspace: &str,
        name: &str,
        failed: bool,
        now_ms: i64,
    ) -> Result<LoginFailures, StoreError> {
        self.record_login_pg(workspace, name, failed, now_ms).await
    }

    // Central policy (issue #26, `policy.rs`).

    async fn set_policy(
        &self,
        workspace: &str,
        policy: uplink_policy::Policy,
    ) -> Result<uplink_policy::Policy, StoreError> {
        self.set_policy_pg(workspace, policy).await
    }

    async fn clear_policy(&self, workspace: &str) -> Result<u64, StoreError> {
        self.clear_policy_pg(workspace).await
    }

    async fn current_policy(
        &self,
        workspace: &str,
    ) -> Result<(u64, Option<uplink_policy::Policy>), StoreError> {
        self.current_policy_pg(workspace).await
    }

    async fn policy_versions(&self, workspace: &str) -> Result<Vec<PolicyVersion>, StoreError> {
        self.policy_versions_pg(workspace).await
    }

    // CA rotation (issue #24, `lifecycle.rs`).

    async fn rotate_ca(
        &self,
        workspace: &str,
        cert_pem: &str,
        key_pem: &str,
        sha256: &str,
    ) -> Result<(), StoreError> {
        self.rotate_ca_pg(workspace, cert_pem, key_pem, sha256)
            .await
    }

    async fn previous_cas(&self, workspace: &str) -> Result<Vec<PreviousCa>, StoreError> {
        self.previous_cas_pg(workspace).await
    }

    async fn record_issuer(&self, cert_sha256: &str, ca_sha256: &str) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO cert_issuers (cert_sha256, ca_sha256) VALUES ($1, $2)
                 ON CONFLICT (cert_sha256) DO UPDATE SET ca_sha256 = EXCLUDED.ca_sha256",
                &[&cert_sha256, &ca_sha256],
            )
            .await
            .map_err(self.err())?;
        Ok(())
    }

    async fn sensors_not_on_ca(
        &self,
        workspace: &str,
        ca_sha256: &str,
    ) -> Result<Vec<String>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT s.sensor_id FROM sensors s
                 WHERE s.workspace = $1
                   AND NOT EXISTS (SELECT 1 FROM revocations r WHERE r.sensor_id = s.sensor_id)
                   AND NOT EXISTS (SELECT 1 FROM cert_issuers i WHERE i.cert_sha256 = s.cert_sha256 AND i.ca_sha256 = $2)
                 ORDER BY s.sensor_id",
                &[&workspace, &ca_sha256],
            )
            .await
            .map_err(self.err())?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn retire_previous_cas(&self, workspace: &str) -> Result<Vec<String>, StoreError> {
        self.retire_previous_cas_pg(workspace).await
    }

    // Report history for the console's charts (issue #25, `history.rs`).

    async fn record_report_point(
        &self,
        workspace: &str,
        point: ReportPoint,
        prune_before_ms: i64,
    ) -> Result<(), StoreError> {
        self.record_report_point_pg(workspace, &point, prune_before_ms)
            .await
    }

    async fn report_points(
        &self,
        workspace: &str,
        sensor_id: &str,
        since_ms: i64,
    ) -> Result<Vec<ReportPoint>, StoreError> {
        self.report_points_pg(workspace, sensor_id, since_ms).await
    }

    // Retention holes (issue #28, `retention.rs`).

    async fn pruned_holes(
        &self,
        workspace: &str,
    ) -> Result<BTreeMap<String, Vec<(u64, u64)>>, StoreError> {
        self.pruned_holes_pg(workspace).await
    }

    async fn add_pruned_holes(
        &self,
        sensor_id: &str,
        holes: Vec<(u64, u64)>,
    ) -> Result<(), StoreError> {
        self.add_pruned_holes_pg(sensor_id, &holes).await
    }

    // backup fleet state (`imports.rs`).

    async fn import_revocation(&self, revocation: Revocation) -> Result<Revocation, StoreError> {
        self.import_revocation_pg(&revocation).await
    }

    async fn import_watermark(
        &self,
        sensor_id: &str,
        through: Option<u64>,
        holes: Vec<(u64, u64)>,
    ) -> Result<(), StoreError> {
        self.import_watermark_pg(sensor_id, through, &holes).await
    }

    async fn issued_certificates(
        &self,
        workspace: &str,
    ) -> Result<Vec<uplink_store::backup::IssuedCertificate>, StoreError> {
        self.issued_certificates_pg(workspace).await
    }

    async fn import_policy(
        &self,
        workspace: &str,
        version: u64,
        set_at: i64,
        policy: Option<uplink_policy::Policy>,
    ) -> Result<bool, StoreError> {
        self.import_policy_pg(workspace, version, set_at, policy)
            .await
    }

    async fn import_previous_ca(
        &self,
        workspace: &str,
        ca: PreviousCa,
    ) -> Result<bool, StoreError> {
        self.import_previous_ca_pg(workspace, &ca).await
    }

    async fn sensor_cert_issuers(
        &self,
        workspace: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        self.sensor_cert_issuers_pg(workspace).await
    }

    // Retired CAs (fix3, `imports.rs`).
    async fn retired_cas(&self, workspace: &str) -> Result<Vec<RetiredCa>, StoreError> {
        self.retired_cas_pg(workspace).await
    }
    async fn import_retired_ca(&self, workspace: &str, ca: RetiredCa) -> Result<bool, StoreError> {
        self.import_retired_ca_pg(workspace, &ca).await
    }
}
