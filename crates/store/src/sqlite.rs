//! The embedded store: one SQLite file, `uplink.db`, in the data directory.
//!
//! Durability: WAL with `synchronous=FULL`, so a commit is on disk (the WAL fsynced) before
//! [`SqliteStore::ingest`] returns. Throughput: ingest requests go to one writer thread that
//! commits whatever is waiting in a single transaction (group commit), so many concurrent
//! sensors share one fsync. Reads use their own connection and never wait for the writer (WAL).
//!
//! Other processes (`uplink workspace create`, `stats`, `export`) open the same file while the
//! service runs; SQLite's locking plus a busy timeout serialises their writes with the writer's.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use crate::*;

/// The database file inside the data directory.
pub const DB_FILE: &str = "uplink.db";
/// Upper bound of events committed in one group transaction.
const GROUP_EVENTS: usize = 50_000;
const BUSY_TIMEOUT: Duration = Duration::from_secs(15);

const SCHEMA: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE workspaces (
    name TEXT PRIMARY KEY,
    domain TEXT NOT NULL,
    public_port INTEGER NOT NULL,
    ca_cert_pem TEXT NOT NULL,
    ca_key_pem TEXT NOT NULL,
    ca_sha256 TEXT NOT NULL,
    access_key_sha256 TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE sensors (
    id INTEGER PRIMARY KEY,
    sensor_id TEXT NOT NULL UNIQUE,
    workspace TEXT NOT NULL REFERENCES workspaces(name),
    name TEXT NOT NULL,
    cert_sha256 TEXT NOT NULL,
    enrolled_at INTEGER NOT NULL,
    last_seen INTEGER
);
CREATE INDEX sensors_by_workspace ON sensors(workspace);
CREATE TABLE events (
    sensor INTEGER NOT NULL REFERENCES sensors(id),
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (sensor, seq)
);
CREATE TABLE kind_counts (
    workspace TEXT NOT NULL,
    kind TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (workspace, kind)
);
";

fn sql_err(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |source| StoreError::Sqlite {
        path: path.display().to_string(),
        source,
    }
}

/// Opens a connection and brings the schema to this build's format (creating it if new).
fn open_connection(path: &Path, create: bool) -> Result<Connection, StoreError> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(path, flags).map_err(|e| match e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::CannotOpen => {
            StoreError::Io {
                path: path.display().to_string(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no uplink store here (create a workspace first)",
                ),
            }
        }
        e => sql_err(path)(e),
    })?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sql_err(path))?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .map_err(|e| match e {
            rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::NotADatabase => {
                StoreError::NotAStore {
                    path: path.display().to_string(),
                    reason: "the file is not a SQLite database".into(),
                }
            }
            e => sql_err(path)(e),
        })?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::NotAStore {
            path: path.display().to_string(),
            reason: format!("journal mode {mode}"),
        });
    }
    conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")
        .map_err(sql_err(path))?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(sql_err(path))?;
    if version > FORMAT_VERSION {
        return Err(StoreError::NewerFormat {
            path: path.display().to_string(),
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    if version == 0 {
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type='table'",
                [],
                |r| r.get(0),
            )
            .map_err(sql_err(path))?;
        if tables > 0 {
            return Err(StoreError::NotAStore {
                path: path.display().to_string(),
                reason: "it holds tables but no uplink format version".into(),
            });
        }
        // BEGIN IMMEDIATE: two processes creating the store at once must not both run the schema.
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {SCHEMA} INSERT INTO meta VALUES ('format', '{FORMAT_VERSION}'), ('created_by', 'uplink {}'); PRAGMA user_version={FORMAT_VERSION}; COMMIT;",
            env!("CARGO_PKG_VERSION")
        ))
        .or_else(|e| {
            // Lost the race: the other process created it. Re-check.
            let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(sql_err(path))?;
            if v == FORMAT_VERSION { Ok(()) } else { Err(sql_err(path)(e)) }
        })?;
    }
    Ok(conn)
}

enum WriteOp {
    Ingest {
        sensor_id: String,
        events: Vec<NewEvent>,
        reply: tokio::sync::oneshot::Sender<Result<IngestOutcome, StoreError>>,
    },
}

/// The embedded SQLite store.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    reader: Mutex<Connection>,
    writer: Mutex<Option<mpsc::Sender<WriteOp>>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .finish()
    }
}

impl SqliteStore {
    /// Opens (or, with `create`, creates) the store in `data_dir`.
    pub fn open(data_dir: &Path, create: bool) -> Result<Self, StoreError> {
        if create {
            let existed = data_dir.is_dir();
            std::fs::create_dir_all(data_dir).map_err(|source| StoreError::Io {
                path: data_dir.display().to_string(),
                source,
            })?;
            if !existed {
                restrict_dir(data_dir);
            }
        } else if !data_dir.is_dir() {
            return Err(StoreError::Io {
                path: data_dir.display().to_string(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such directory"),
            });
        }
        let path = data_dir.join(DB_FILE);
        let reader = open_connection(&path, create)?;
        restrict_file(&path);
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path,
                reader: Mutex::new(reader),
                writer: Mutex::new(None),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let conn = self.inner.reader.lock().unwrap_or_else(|p| p.into_inner());
        f(&conn).map_err(sql_err(&self.inner.path))
    }

    /// Stores a new workspace. Fails if the name exists.
    pub fn create_workspace(&self, ws: &WorkspaceRecord) -> Result<(), StoreError> {
        let res = self.read(|c| {
            c.execute(
                "INSERT INTO workspaces (name, domain, public_port, ca_cert_pem, ca_key_pem, ca_sha256, access_key_sha256, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![ws.name, ws.domain, ws.public_port, ws.ca_cert_pem, ws.ca_key_pem, ws.ca_sha256, ws.access_key_sha256, ws.created_at],
            )
        });
        match res {
            Err(StoreError::Sqlite {
                source: rusqlite::Error::SqliteFailure(f, _),
                ..
            }) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
                Err(StoreError::WorkspaceExists(ws.name.clone()))
            }
            other => other.map(|_| ()),
        }
    }

    pub fn workspaces_sync(&self) -> Result<Vec<WorkspaceRecord>, StoreError> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT name, domain, public_port, ca_cert_pem, ca_key_pem, ca_sha256, access_key_sha256, created_at FROM workspaces ORDER BY name",
            )?;
            let rows = st.query_map([], row_to_workspace)?;
            rows.collect()
        })
    }

    pub fn workspace_sync(&self, name: &str) -> Result<Option<WorkspaceRecord>, StoreError> {
        self.read(|c| {
            c.query_row(
                "SELECT name, domain, public_port, ca_cert_pem, ca_key_pem, ca_sha256, access_key_sha256, created_at FROM workspaces WHERE name = ?1",
                [name],
                row_to_workspace,
            )
            .optional()
        })
    }

    pub fn add_sensor_sync(&self, s: &SensorRecord) -> Result<(), StoreError> {
        self.read(|c| {
            c.execute(
                "INSERT INTO sensors (sensor_id, workspace, name, cert_sha256, enrolled_at, last_seen) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![s.sensor_id, s.workspace, s.name, s.cert_sha256, s.enrolled_at, s.last_seen],
            )
        })
        .map(|_| ())
    }

    pub fn renew_sensor_sync(
        &self,
        workspace: &str,
        sensor_id: &str,
        cert_sha256: &str,
    ) -> Result<(), StoreError> {
        let n = self.read(|c| {
            c.execute(
                "UPDATE sensors SET cert_sha256 = ?1 WHERE sensor_id = ?2 AND workspace = ?3",
                params![cert_sha256, sensor_id, workspace],
            )
        })?;
        if n == 0 {
            return Err(StoreError::NoSuchSensor(sensor_id.into()));
        }
        Ok(())
    }

    /// Counts for one workspace; works while the service writes.
    pub fn stats(&self, workspace: &str) -> Result<WorkspaceStats, StoreError> {
        if self.workspace_sync(workspace)?.is_none() {
            return Err(StoreError::NoSuchWorkspace(workspace.into()));
        }
        self.read(|c| {
            let mut st = c.prepare(
                "SELECT sensor_id, workspace, name, cert_sha256, enrolled_at, last_seen FROM sensors WHERE workspace = ?1 ORDER BY enrolled_at, sensor_id",
            )?;
            let sensors = st.query_map([workspace], row_to_sensor)?.collect::<rusqlite::Result<Vec<_>>>()?;
            let mut st = c.prepare("SELECT kind, n FROM kind_counts WHERE workspace = ?1 AND n > 0 ORDER BY kind")?;
            let mut by_kind = BTreeMap::new();
            let mut total = 0;
            for row in st.query_map([workspace], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
                let (kind, n) = row?;
                total += n as u64;
                by_kind.insert(kind, n as u64);
            }
            Ok(WorkspaceStats { sensors, total, by_kind })
        })
    }

    /// Streams a workspace's events, ordered by sensor id then sequence number.
    pub fn export(
        &self,
        workspace: &str,
        filter: &ExportFilter,
        mut each: impl FnMut(StoredEvent) -> std::io::Result<()>,
    ) -> Result<u64, StoreError> {
        if self.workspace_sync(workspace)?.is_none() {
            return Err(StoreError::NoSuchWorkspace(workspace.into()));
        }
        // A separate connection: exports can be long and must not hold the shared reader.
        let conn = open_connection(&self.inner.path, false)?;
        let mut st = conn
            .prepare(
                "SELECT s.sensor_id, e.seq, e.kind, e.received_at, e.body FROM events e JOIN sensors s ON s.id = e.sensor
                 WHERE s.workspace = ?1 AND (?2 IS NULL OR e.kind = ?2) AND (?3 IS NULL OR s.sensor_id = ?3)
                 ORDER BY s.sensor_id, e.seq",
            )
            .map_err(sql_err(&self.inner.path))?;
        let mut rows = st
            .query(params![workspace, filter.kind, filter.sensor_id])
            .map_err(sql_err(&self.inner.path))?;
        let mut n = 0;
        while let Some(r) = rows.next().map_err(sql_err(&self.inner.path))? {
            let ev = StoredEvent {
                sensor_id: r.get(0).map_err(sql_err(&self.inner.path))?,
                seq: r.get::<_, i64>(1).map_err(sql_err(&self.inner.path))? as u64,
                kind: r.get(2).map_err(sql_err(&self.inner.path))?,
                received_at: r.get(3).map_err(sql_err(&self.inner.path))?,
                body: r.get(4).map_err(sql_err(&self.inner.path))?,
            };
            each(ev).map_err(|source| StoreError::Io {
                path: "<output>".into(),
                source,
            })?;
            n += 1;
        }
        Ok(n)
    }

    fn writer(&self) -> Result<mpsc::Sender<WriteOp>, StoreError> {
        let mut guard = self.inner.writer.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = guard.as_ref() {
            return Ok(tx.clone());
        }
        let conn = open_connection(&self.inner.path, false)?;
        let (tx, rx) = mpsc::channel();
        let path = self.inner.path.clone();
        std::thread::Builder::new()
            .name("uplink-store-writer".into())
            .spawn(move || writer_loop(conn, path, rx))
            .map_err(|source| StoreError::Io {
                path: self.inner.path.display().to_string(),
                source,
            })?;
        *guard = Some(tx.clone());
        Ok(tx)
    }

    /// Ingests through the group-commit writer (see the module docs).
    pub async fn ingest_async(
        &self,
        sensor_id: &str,
        events: Vec<NewEvent>,
    ) -> Result<IngestOutcome, StoreError> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.writer()?
            .send(WriteOp::Ingest {
                sensor_id: sensor_id.to_owned(),
                events,
                reply,
            })
            .map_err(|_| StoreError::WriterGone)?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }
}

fn row_to_workspace(r: &rusqlite::Row<'_>) -> rusqlite::Result<WorkspaceRecord> {
    Ok(WorkspaceRecord {
        name: r.get(0)?,
        domain: r.get(1)?,
        public_port: r.get(2)?,
        ca_cert_pem: r.get(3)?,
        ca_key_pem: r.get(4)?,
        ca_sha256: r.get(5)?,
        access_key_sha256: r.get(6)?,
        created_at: r.get(7)?,
    })
}

fn row_to_sensor(r: &rusqlite::Row<'_>) -> rusqlite::Result<SensorRecord> {
    Ok(SensorRecord {
        sensor_id: r.get(0)?,
        workspace: r.get(1)?,
        name: r.get(2)?,
        cert_sha256: r.get(3)?,
        enrolled_at: r.get(4)?,
        last_seen: r.get(5)?,
    })
}

struct Pending {
    sensor_id: String,
    events: Vec<NewEvent>,
    reply: tokio::sync::oneshot::Sender<Result<IngestOutcome, StoreError>>,
}

fn writer_loop(mut conn: Connection, path: PathBuf, rx: mpsc::Receiver<WriteOp>) {
    // sensor_id -> (row id, workspace); sensors are never deleted while the service runs.
    let mut sensors: HashMap<String, (i64, String)> = HashMap::new();
    while let Ok(first) = rx.recv() {
        let mut group = Vec::new();
        let mut n = 0;
        let WriteOp::Ingest {
            sensor_id,
            events,
            reply,
        } = first;
        n += events.len();
        group.push(Pending {
            sensor_id,
            events,
            reply,
        });
        while n < GROUP_EVENTS {
            match rx.try_recv() {
                Ok(WriteOp::Ingest {
                    sensor_id,
                    events,
                    reply,
                }) => {
                    n += events.len();
                    group.push(Pending {
                        sensor_id,
                        events,
                        reply,
                    });
                }
                Err(_) => break,
            }
        }
        // Resolve sensors first; a batch for an unknown sensor fails alone, not the group.
        let mut ready = Vec::with_capacity(group.len());
        for p in group {
            match resolve_sensor(&conn, &mut sensors, &p.sensor_id) {
                Ok(Some(s)) => ready.push((p, s)),
                Ok(None) => {
                    let _ = p
                        .reply
                        .send(Err(StoreError::NoSuchSensor(p.sensor_id.clone())));
                }
                Err(e) => {
                    let _ = p.reply.send(Err(sql_err(&path)(e)));
                }
            }
        }
        if ready.is_empty() {
            continue;
        }
        match commit_group(&mut conn, &ready) {
            Ok(outcomes) => {
                for ((p, _), outcome) in ready.into_iter().zip(outcomes) {
                    let _ = p.reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                let msg = e.to_string();
                for (p, _) in ready {
                    let _ = p.reply.send(Err(StoreError::Commit {
                        path: path.display().to_string(),
                        message: msg.clone(),
                    }));
                }
            }
        }
    }
}

fn resolve_sensor(
    conn: &Connection,
    cache: &mut HashMap<String, (i64, String)>,
    sensor_id: &str,
) -> rusqlite::Result<Option<(i64, String)>> {
    if let Some(s) = cache.get(sensor_id) {
        return Ok(Some(s.clone()));
    }
    let found = conn
        .query_row(
            "SELECT id, workspace FROM sensors WHERE sensor_id = ?1",
            [sensor_id],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
        )
        .optional()?;
    if let Some(s) = &found {
        cache.insert(sensor_id.to_owned(), s.clone());
    }
    Ok(found)
}

fn commit_group(
    conn: &mut Connection,
    group: &[(Pending, (i64, String))],
) -> rusqlite::Result<Vec<IngestOutcome>> {
    let now = now_ms();
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut outcomes = Vec::with_capacity(group.len());
    let mut counts: HashMap<(&str, &str), i64> = HashMap::new();
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO events (sensor, seq, kind, received_at, body) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
        )?;
        let mut touch = tx.prepare_cached("UPDATE sensors SET last_seen = ?2 WHERE id = ?1")?;
        for (p, (rowid, workspace)) in group {
            let mut outcome = IngestOutcome::default();
            for ev in &p.events {
                let changed =
                    insert.execute(params![rowid, ev.seq as i64, ev.kind, now, ev.body])?;
                if changed == 1 {
                    outcome.accepted += 1;
                    *counts
                        .entry((workspace.as_str(), ev.kind.as_str()))
                        .or_default() += 1;
                } else {
                    outcome.duplicates += 1;
                }
            }
            touch.execute(params![rowid, now])?;
            outcomes.push(outcome);
        }
        let mut count = tx.prepare_cached(
            "INSERT INTO kind_counts (workspace, kind, n) VALUES (?1, ?2, ?3) ON CONFLICT (workspace, kind) DO UPDATE SET n = n + excluded.n",
        )?;
        for ((ws, kind), n) in &counts {
            count.execute(params![ws, kind, n])?;
        }
    }
    tx.commit()?;
    Ok(outcomes)
}

impl Store for SqliteStore {
    async fn workspaces(&self) -> Result<Vec<WorkspaceRecord>, StoreError> {
        let this = self.clone();
        blocking(move || this.workspaces_sync()).await
    }

    async fn workspace(&self, name: &str) -> Result<Option<WorkspaceRecord>, StoreError> {
        let (this, name) = (self.clone(), name.to_owned());
        blocking(move || this.workspace_sync(&name)).await
    }

    async fn add_sensor(&self, sensor: SensorRecord) -> Result<(), StoreError> {
        let this = self.clone();
        blocking(move || this.add_sensor_sync(&sensor)).await
    }

    async fn renew_sensor(
        &self,
        workspace: &str,
        sensor_id: &str,
        cert_sha256: &str,
    ) -> Result<(), StoreError> {
        let this = self.clone();
        let (w, s, c) = (
            workspace.to_owned(),
            sensor_id.to_owned(),
            cert_sha256.to_owned(),
        );
        blocking(move || this.renew_sensor_sync(&w, &s, &c)).await
    }

    async fn ingest(
        &self,
        sensor_id: &str,
        events: Vec<NewEvent>,
    ) -> Result<IngestOutcome, StoreError> {
        self.ingest_async(sensor_id, events).await
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| StoreError::WriterGone)?
}

#[cfg(unix)]
fn restrict_dir(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700));
}
#[cfg(unix)]
fn restrict_file(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    // The database holds workspace CA keys.
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
}
#[cfg(not(unix))]
fn restrict_dir(_: &Path) {}
#[cfg(not(unix))]
fn restrict_file(_: &Path) {}
