//! The embedded store: one SQLite file, `uplink.db`, in the data directory; uplink's default
//! backend of the [`Store`] trait (`uplink-store`). Callers open it ([`SqliteStore::open`]) and
//! then use it only through the trait.
//!
//! Durability: WAL with `synchronous=FULL`, so a commit is on disk (the WAL fsynced) before
//! [`SqliteStore::ingest`] returns. Throughput: ingest requests go to one writer thread that
//! commits whatever is waiting in a single transaction (group commit), so many concurrent
//! sensors share one fsync. Reads use their own connection and never wait for the writer (WAL).
//!
//! Other processes (`uplink workspace create`, `stats`, `export`) open the same file while the
//! service runs; SQLite's locking plus a busy timeout serialises their writes with the writer's.
//!
//! Guarding the files (docs/security.md):
//! - every `uplink.db*` file is 0600 (it holds the workspace CA keys): the database is created
//!   0600 before SQLite sees it, so the `-wal` and `-shm` SQLite creates inherit that mode, and
//!   looser modes found at open are tightened or refused;
//! - the store remembers which files (device, inode) it opened; before each commit it checks
//!   that they are still the files at their paths, so a store deleted or replaced under the
//!   service answers an error (503) instead of acknowledging events into an unlinked file;
//! - a connection SQLite could only open read-only is never used for writing: the writer and the
//!   shared connection are reopened once the files are writable again, without a restart;
//! - [`SqliteStore::quick_check`] runs SQLite's integrity check (at service start), and an
//!   export compares what it read with the store's own counts.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, MAIN_DB};

use uplink_store::*;

pub use checkpoint::{CheckpointBounds, CheckpointStats};

mod blobs;
mod checkpoint;
mod console;
mod fleet;
mod history;
mod holes;
// backup fleet state.
mod imports;
mod lifecycle;
mod policy;
mod tokens;

/// The on-disk format this build writes. A store written by a newer format is refused; an older
/// one is migrated when opened. 2: sensors carry the SHA-256 of their public key (one key, one
/// sensor per workspace). 3: CA keys are sealed under the master key (an older build would read
/// them as PEM), and the access key is kept, sealed, to remake bundles. 4: workspace settings
/// (retention, disconnected-after), each sensor's retention watermark, events indexed by age.
/// 5: fleet health (the last report per sensor, outage logs, issues: `fleet.rs`). 6: the change
/// log (`changes`), which replicas poll to invalidate their caches (an older build ignores it).
/// 7: admin API tokens (`admin_tokens`: the SHA-256 of each secret), webhooks and their
/// delivery log (`tokens.rs`). 8: revocations and decommissioning (`revocations`, issue #24).
/// 9: the web console's users, sessions and login failures (`console.rs`, issue #25).
/// 10: central policy (`policies`, issue #26, `policy.rs`).
/// 11: the lifecycle's workspace settings and shared rate-limit windows (`lifecycle_settings`,
/// `rate_windows`, issue #24). 12: CA rotation (`previous_cas`, `cert_issuers`, issue #24).
/// 13: report history for the console's charts (`report_points`, issue #25, `history.rs`).
/// 14: no age index on `events` (retention goes in seq order, issue #28).
/// 15: the holes retention's watermark passed (`pruned_holes`, issue #28, `holes.rs`).
/// 17: the CAs a rotation retired (`retired_cas`, `imports.rs`).
/// 18: batches stored as sent, events pointing into them (`event_blobs`, issue #28, `blobs.rs`).
pub const FORMAT_VERSION: i64 = 18;
/// The master key's default file in the data directory.
pub const MASTER_KEY_FILE: &str = "master.key";

/// The database file inside the data directory.
pub const DB_FILE: &str = "uplink.db";
/// The page size of a new store. 32 KiB against 16 KiB, the store alone (`--example
/// ingest_cpu`, 50 sensors, batches of 5,000, alternated): 200 B events 3-14% less CPU per
/// event (median 9%, five pairs), 2,000 B events 10-16% less; batches of 10 events 0-5% more,
/// as a commit writes whole pages (twice the WAL bytes for a commit of a few events). 64 KiB
/// saved a little more on large batches and doubled that again for small commits (an idle
/// fleet's heartbeats).
const PAGE_SIZE: u32 = 32 * 1024;
/// A group transaction takes waiting batches until it holds this many events: the batch that
/// crosses it is the last (a group can hold up to one batch more).
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
    created_at INTEGER NOT NULL,
    access_key TEXT,
    retention_days INTEGER NOT NULL DEFAULT 30,
    disconnected_after_secs INTEGER NOT NULL DEFAULT 600
);
CREATE TABLE sensors (
    id INTEGER PRIMARY KEY,
    sensor_id TEXT NOT NULL UNIQUE,
    workspace TEXT NOT NULL REFERENCES workspaces(name),
    name TEXT NOT NULL,
    cert_sha256 TEXT NOT NULL,
    enrolled_at INTEGER NOT NULL,
    last_seen INTEGER,
    key_sha256 TEXT,
    pruned_through INTEGER
);
CREATE INDEX sensors_by_workspace ON sensors(workspace);
CREATE UNIQUE INDEX sensors_by_key ON sensors(workspace, key_sha256);
CREATE TABLE events (
    sensor INTEGER NOT NULL REFERENCES sensors(id),
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    body TEXT NOT NULL,
    blob INTEGER,
    span INTEGER,
    PRIMARY KEY (sensor, seq)
) WITHOUT ROWID;
CREATE TABLE kind_counts (
    workspace TEXT NOT NULL,
    kind TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (workspace, kind)
);
CREATE TABLE changes (
    version INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace TEXT NOT NULL,
    kind TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE TABLE revocations (
    sensor_id TEXT PRIMARY KEY REFERENCES sensors(sensor_id) ON DELETE CASCADE,
    workspace TEXT NOT NULL,
    reason TEXT NOT NULL,
    revoked_at INTEGER NOT NULL,
    decommissioned INTEGER NOT NULL DEFAULT 0,
    cert_sha256 TEXT NOT NULL
);
CREATE INDEX revocations_by_workspace ON revocations(workspace);
CREATE TABLE certificates (
    serial TEXT PRIMARY KEY,
    sensor_id TEXT NOT NULL REFERENCES sensors(sensor_id) ON DELETE CASCADE,
    cert_sha256 TEXT NOT NULL,
    issued_at INTEGER NOT NULL
);
CREATE INDEX certificates_by_sensor ON certificates(sensor_id);
CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace TEXT NOT NULL,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    source TEXT NOT NULL,
    action TEXT NOT NULL,
    sensor_id TEXT,
    result TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX audit_by_workspace ON audit(workspace, id);
";

/// Migrations from each older format to the next, applied in order at open. `SCHEMA` is the
/// current format whole; a store made by format N runs every step after N.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        2,
        "ALTER TABLE sensors ADD COLUMN key_sha256 TEXT;
     CREATE UNIQUE INDEX sensors_by_key ON sensors(workspace, key_sha256);",
    ),
    // The CA keys are sealed in Rust right after (`settle_master_key`), at every open until none
    // is left plain.
    (3, "ALTER TABLE workspaces ADD COLUMN access_key TEXT;"),
    // Settings and retention. Building the index reads every event once, at the first open by
    // this version.
    (
        4,
        "ALTER TABLE workspaces ADD COLUMN retention_days INTEGER NOT NULL DEFAULT 30;
     ALTER TABLE workspaces ADD COLUMN disconnected_after_secs INTEGER NOT NULL DEFAULT 600;
     ALTER TABLE sensors ADD COLUMN pruned_through INTEGER;
     CREATE INDEX events_by_age ON events(sensor, received_at);",
    ),
    (5, fleet::FLEET_SCHEMA),
    (
        6,
        "CREATE TABLE IF NOT EXISTS changes (
        version INTEGER PRIMARY KEY AUTOINCREMENT,
        workspace TEXT NOT NULL,
        kind TEXT NOT NULL,
        at INTEGER NOT NULL
    );",
    ),
    (7, tokens::FORMAT_7),
    // Sensor lifecycle (issue #24): revocations and the certificates issued (for the CRL), removed
    // with their sensor; the audit trail. (IF NOT EXISTS: a step may be re-run on a store rewound
    // by hand, as the format tests do.)
    (
        8,
        "CREATE TABLE IF NOT EXISTS revocations (
        sensor_id TEXT PRIMARY KEY REFERENCES sensors(sensor_id) ON DELETE CASCADE,
        workspace TEXT NOT NULL,
        reason TEXT NOT NULL,
        revoked_at INTEGER NOT NULL,
        decommissioned INTEGER NOT NULL DEFAULT 0,
        cert_sha256 TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS revocations_by_workspace ON revocations(workspace);
    CREATE TABLE IF NOT EXISTS certificates (
        serial TEXT PRIMARY KEY,
        sensor_id TEXT NOT NULL REFERENCES sensors(sensor_id) ON DELETE CASCADE,
        cert_sha256 TEXT NOT NULL,
        issued_at INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS certificates_by_sensor ON certificates(sensor_id);
    CREATE TABLE IF NOT EXISTS audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        workspace TEXT NOT NULL,
        at INTEGER NOT NULL,
        actor TEXT NOT NULL,
        source TEXT NOT NULL,
        action TEXT NOT NULL,
        sensor_id TEXT,
        result TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS audit_by_workspace ON audit(workspace, id);",
    ),
    // The web console (issue #25): users, sessions, login failures.
    (9, console::FORMAT_9),
    // Central policy (issue #26): every version of each workspace's policy.
    (10, policy::FORMAT_10),
    // Sensor lifecycle, part 2 (issue #24): certificate validity and enrollment limits as
    // workspace settings, and the rate-limit windows replicas share.
    (11, lifecycle::FORMAT_11),
    // CA rotation (issue #24): previous CAs and which CA issued each certificate.
    (12, lifecycle::FORMAT_12),
    // Report history for the console's charts (issue #25). 12 is another piece of work's.
    (13, history::FORMAT_13),
    // Ingest speed (issue #28): no age index. Retention removes each sensor's oldest seqs in
    // order (the primary key), so each event costs two B-tree inserts instead of three.
    // Dropping an index rewrites nothing: instant whatever the store's size.
    (14, "DROP INDEX IF EXISTS events_by_age;"),
    // Retention that never passes a hole (issue #28): the never-stored seqs below each
    // watermark, so that their late arrival is stored (`holes.rs`).
    (15, holes::FORMAT_15),
    // The CAs a rotation retired, never trusted again by a copy (`imports.rs`).
    (17, imports::FORMAT_17),
    // Batches stored as sent (issue #28): adding the two columns rewrites nothing, rows
    // written before keep their text. Not re-runnable (a column cannot be added twice): a
    // test that rewinds a store past it drops them first.
    (18, blobs::FORMAT_18),
];

/// The store's files besides the database (SQLite's write-ahead log and its shared-memory index).
const SIDE_FILES: [&str; 2] = ["-wal", "-shm"];

fn sql_err(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |source| match source {
        rusqlite::Error::SqliteFailure(f, ref msg)
            if f.code == rusqlite::ErrorCode::DatabaseCorrupt =>
        {
            StoreError::Damaged {
                path: path.display().to_string(),
                detail: msg.clone().unwrap_or_else(|| f.to_string()),
            }
        }
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ReadOnly => {
            StoreError::ReadOnly {
                path: path.display().to_string(),
            }
        }
        source => StoreError::Backend {
            backend: Backend::Sqlite,
            at: path.display().to_string(),
            detail: source.to_string(),
        },
    }
}

fn side_path(db: &Path, suffix: &str) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
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
    // Larger pages for a new store (set before WAL mode writes the header; a no-op on an
    // existing one, which keeps its page size): an event row is a few hundred bytes, and fewer,
    // larger pages cut the B-tree work, WAL frames and checkpoint copies per event (issue #28).
    // Only a speed setting: if it fails, the statements below report what is wrong with the file.
    if create {
        let _ = conn.execute_batch(&format!("PRAGMA page_size={PAGE_SIZE};"));
    }
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
    // FULL, not NORMAL: in WAL mode NORMAL fsyncs only at checkpoints, so a power loss could
    // take back a commit already answered 200, whose events the sensor then deleted. FULL
    // fsyncs the WAL at every commit (one per group of batches, not per event).
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
            "BEGIN IMMEDIATE; {SCHEMA} {} {} {} {} {} {} {} {} {} {} INSERT INTO meta VALUES ('format', '{FORMAT_VERSION}'), ('created_by', 'uplink {}'); PRAGMA user_version={FORMAT_VERSION}; COMMIT;",
            fleet::FLEET_SCHEMA,
            tokens::FORMAT_7,
            console::FORMAT_9,
            policy::FORMAT_10,
            lifecycle::FORMAT_11,
            lifecycle::FORMAT_12,
            history::FORMAT_13,
            holes::FORMAT_15,
            imports::FORMAT_17,
            blobs::BLOBS_TABLE,
            env!("CARGO_PKG_VERSION")
        ))
        .or_else(|e| {
            // Lost the race: the other process created it. Re-check.
            let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(sql_err(path))?;
            if v == FORMAT_VERSION { Ok(()) } else { Err(sql_err(path)(e)) }
        })?;
    } else if version < FORMAT_VERSION {
        migrate(&conn, path)?;
    }
    Ok(conn)
}

/// Brings a store of an older format to [`FORMAT_VERSION`], one step per transaction, each
/// re-checking the version under the write lock (another process may have migrated first).
fn migrate(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    // A step applies to a store at the previous step's format (numbers are assigned per piece
    // of work, so a branch may lack the steps between: it goes from the last one it has).
    let mut from = 1;
    for (to, sql) in MIGRATIONS {
        conn.execute_batch("BEGIN IMMEDIATE")
            .map_err(sql_err(path))?;
        let step = (|| {
            let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            if v == from {
                conn.execute_batch(sql)?;
                conn.execute(
                    "INSERT INTO meta VALUES ('format', ?1) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    [to.to_string()],
                )?;
                conn.execute_batch(&format!("PRAGMA user_version={to}"))?;
            }
            conn.execute_batch("COMMIT")
        })();
        if let Err(e) = step {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(sql_err(path)(e));
        }
        from = *to;
    }
    // A format no step starts from (a development build's, numbered for work not in this one)
    // would otherwise open as it is, lacking this format's tables.
    let v: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(sql_err(path))?;
    if v != FORMAT_VERSION {
        return Err(StoreError::NotAStore {
            path: path.display().to_string(),
            reason: format!(
                "it is at format {v}, which this build (format {FORMAT_VERSION}) cannot migrate from: it was written by a development build; open it with that build and `uplink store backup` it, then `uplink store restore` the backup with this one"
            ),
        });
    }
    Ok(())
}

/// What a file of the store is, as opened: to notice it deleted or replaced later.
#[derive(Debug)]
struct Held {
    path: PathBuf,
    file: File,
}

/// The files this store opened. The database is held from the start; the `-wal` and `-shm`
/// as soon as they exist (SQLite creates them at the first read-write access).
#[derive(Debug)]
struct Files {
    held: Mutex<Vec<Held>>,
    db: PathBuf,
}

impl Files {
    fn new(db: &Path) -> Result<Files, StoreError> {
        let file = File::open(db).map_err(|source| StoreError::Io {
            path: db.display().to_string(),
            source,
        })?;
        let files = Files {
            held: Mutex::new(vec![Held {
                path: db.to_path_buf(),
                file,
            }]),
            db: db.to_path_buf(),
        };
        files.hold_side_files();
        Ok(files)
    }

    /// Starts holding the side files that exist now and are not held yet.
    fn hold_side_files(&self) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        for suffix in SIDE_FILES {
            let path = side_path(&self.db, suffix);
            if held.iter().any(|h| h.path == path) {
                continue;
            }
            if let Ok(file) = File::open(&path) {
                held.push(Held { path, file });
            }
        }
    }

    /// Fails when any file the store opened is no longer the file at its path: deleted
    /// (no link left, or nothing at the path) or replaced (another device/inode there).
    /// Costs one fstat and one stat per file.
    fn check(&self) -> Result<(), StoreError> {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        for h in held.iter() {
            if let Err(what) = same_file(&h.file, &h.path) {
                return Err(StoreError::FilesGone {
                    path: h.path.display().to_string(),
                    what,
                    rescue: rescue_hint(&held),
                });
            }
        }
        drop(held);
        self.hold_side_files();
        Ok(())
    }
}

#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let open = file
        .metadata()
        .map_err(|e| format!("unreadable (fstat: {e})"))?;
    match std::fs::metadata(path) {
        Ok(now) if (now.dev(), now.ino()) != (open.dev(), open.ino()) => {
            Err("replaced by another file".into())
        }
        // Same inode at the path yet no link left cannot happen; checked all the same.
        Ok(_) if open.nlink() == 0 => Err("deleted".into()),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err("deleted or moved away".into()),
        Err(e) => Err(format!("unreadable (stat: {e})")),
    }
}
#[cfg(not(unix))]
fn same_file(_: &File, path: &Path) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(_) => Ok(()),
        Err(_) => Err("deleted or moved away".into()),
    }
}

/// Where this process's open copies of the files can be read (Linux), to save them.
fn rescue_hint(held: &[Held]) -> String {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let pid = std::process::id();
        let fds: Vec<String> = held
            .iter()
            .map(|h| {
                format!(
                    "{} = /proc/{pid}/fd/{}",
                    h.path.file_name().unwrap_or_default().to_string_lossy(),
                    h.file.as_raw_fd()
                )
            })
            .collect();
        format!(
            ". Until this process stops, its open copies can be saved: {}",
            fds.join(", ")
        )
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = held;
        String::new()
    }
}

/// Makes the store's files private before SQLite opens them: an existing file with group or
/// other bits is tightened to 0600, and a new database is created 0600 (SQLite gives the
/// `-wal` and `-shm` it creates the database's mode). With `strict`, a file that stays open to
/// others is an error; otherwise (read-only tools run by another user) it is left as it is.
fn restrict_files(db: &Path, create: bool, strict: bool) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        if create {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(db)
            {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(source) => {
                    return Err(StoreError::Io {
                        path: db.display().to_string(),
                        source,
                    })
                }
            }
        }
        let paths =
            std::iter::once(db.to_path_buf()).chain(SIDE_FILES.iter().map(|s| side_path(db, s)));
        for path in paths {
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let mode = meta.permissions().mode() & 0o7777;
            if mode & 0o077 == 0 {
                continue;
            }
            let fixed = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
            if let Err(e) = fixed {
                if strict {
                    return Err(StoreError::Mode {
                        path: path.display().to_string(),
                        mode,
                        reason: e.to_string(),
                    });
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (db, create, strict);
    Ok(())
}

/// The store's master key: verified against the check value the store recorded, or, for a
/// store never given one, the check recorded now (the key file created first if missing). Then
/// any CA key still plain (a store from before format 3) is sealed.
fn settle_master_key(
    conn: &Connection,
    path: &Path,
    key_file: &MasterKeyFile,
) -> Result<MasterKey, StoreError> {
    let read_check = || {
        conn.query_row(
            "SELECT value FROM meta WHERE key = 'master_key_check'",
            [],
            |r| r.get::<_, String>(0),
        )
        .optional()
        .map_err(sql_err(path))
    };
    let check = read_check()?;
    let key = key_file.resolve(check.is_some())?;
    let check = match check {
        Some(c) => c,
        None => {
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('master_key_check', ?1) ON CONFLICT (key) DO NOTHING",
                [key.check_value()],
            )
            .map_err(sql_err(path))?;
            // Another process may have recorded its key first.
            read_check()?.unwrap_or_default()
        }
    };
    key.verify_check(&check)?;
    let plain: Vec<(String, String)> = (|| {
        let mut st = conn.prepare(
            "SELECT name, ca_key_pem FROM workspaces WHERE ca_key_pem NOT LIKE 'sealed:v1:%'",
        )?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
    })()
    .map_err(sql_err(path))?;
    if !plain.is_empty() {
        let tx = conn.unchecked_transaction().map_err(sql_err(path))?;
        for (name, pem) in &plain {
            tx.execute(
                "UPDATE workspaces SET ca_key_pem = ?2 WHERE name = ?1 AND ca_key_pem = ?3",
                params![name, key.seal(pem, &master::ca_key_context(name)), pem],
            )
            .map_err(sql_err(path))?;
        }
        tx.commit().map_err(sql_err(path))?;
    }
    tokens::seal_plain_webhook_secrets(conn, &key).map_err(sql_err(path))?;
    Ok(key)
}

enum WriteOp {
    Ingest {
        sensor_id: String,
        events: EventBatch,
        reply: tokio::sync::oneshot::Sender<Result<IngestOutcome, StoreError>>,
    },
    /// Health: take the write lock and release it.
    Probe {
        reply: tokio::sync::oneshot::Sender<Result<(), StoreError>>,
    },
}

/// The embedded SQLite store.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    /// The shared connection for reads and the rare writes outside ingest (workspaces, sensors).
    reader: Mutex<Connection>,
    /// Seals and opens the CA keys (replaced by a rotation).
    key: std::sync::RwLock<MasterKey>,
    writer: Mutex<Option<mpsc::Sender<WriteOp>>>,
    files: Arc<Files>,
    /// When the writer's checkpointer runs (`checkpoint.rs`); read when a writer starts.
    checkpoint_bounds: Mutex<CheckpointBounds>,
    checkpoints: Arc<checkpoint::Counters>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .finish()
    }
}

impl SqliteStore {
    /// Opens (or, with `create`, creates) the store in `data_dir`, its master key in
    /// `data_dir/master.key` (created on first use).
    pub fn open(data_dir: &Path, create: bool) -> Result<Self, StoreError> {
        Self::open_with_key(
            data_dir,
            create,
            &MasterKeyFile(data_dir.join(MASTER_KEY_FILE)),
        )
    }

    /// Opens (or creates) the store in `data_dir` with the master key in `key_file`.
    pub fn open_with_key(
        data_dir: &Path,
        create: bool,
        key_file: &MasterKeyFile,
    ) -> Result<Self, StoreError> {
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
            return Err(StoreError::NoDataDir {
                path: data_dir.display().to_string(),
            });
        }
        let path = data_dir.join(DB_FILE);
        restrict_files(&path, create, create)?;
        let reader = open_connection(&path, create)?;
        // SQLite made the -wal and -shm with the database's mode; check them too.
        restrict_files(&path, false, create)?;
        let files = Arc::new(Files::new(&path)?);
        let key = settle_master_key(&reader, &path, key_file)?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path,
                reader: Mutex::new(reader),
                key: std::sync::RwLock::new(key),
                writer: Mutex::new(None),
                files,
                checkpoint_bounds: Mutex::new(CheckpointBounds::default()),
                checkpoints: Arc::default(),
            }),
        })
    }

    /// Runs SQLite's `quick_check` (every page and record is well formed; O(size of the store)).
    /// The service runs it at start and refuses a damaged store.
    pub fn quick_check(&self) -> Result<(), StoreError> {
        let problems: Vec<String> = self
            .read(|c| {
                let mut st = c.prepare("PRAGMA quick_check(5)")?;
                let rows = st.query_map([], |r| r.get::<_, String>(0))?;
                rows.collect()
            })
            .map_err(|e| match e {
                StoreError::Damaged { path, detail } => StoreError::Damaged {
                    path,
                    detail: format!("SQLite's quick_check could not finish: {detail}"),
                },
                e => e,
            })?;
        if problems.len() == 1 && problems[0] == "ok" {
            return Ok(());
        }
        Err(StoreError::Damaged {
            path: self.inner.path.display().to_string(),
            detail: format!("SQLite's quick_check reports: {}", problems.join("; ")),
        })
    }

    /// Fails when a file of the store was deleted or replaced since it was opened.
    pub fn check_files(&self) -> Result<(), StoreError> {
        self.inner.files.check()
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Sets when the writer's checkpointer copies the WAL back (small bounds in tests); takes
    /// effect for the writer started next (at the first ingest).
    pub fn set_checkpoint_bounds(&self, bounds: CheckpointBounds) {
        *self
            .inner
            .checkpoint_bounds
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = bounds;
    }

    /// How many checkpoints the checkpointer ran since the store was opened.
    pub fn checkpoint_stats(&self) -> CheckpointStats {
        self.inner.checkpoints.stats()
    }

    fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let mut conn = self.inner.reader.lock().unwrap_or_else(|p| p.into_inner());
        // Opened read-only (the files were not writable then): try again, so that the store
        // recovers without a restart once they are.
        if conn.is_readonly(MAIN_DB).unwrap_or(false) {
            if let Ok(fresh) = open_connection(&self.inner.path, false) {
                if !fresh.is_readonly(MAIN_DB).unwrap_or(true) {
                    *conn = fresh;
                }
            }
        }
        f(&conn).map_err(sql_err(&self.inner.path))
    }

    /// A write on the shared connection, after checking that the files are still in place.
    fn write<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        self.check_files()?;
        self.read(f)
    }

    /// Stores a new workspace. Fails if the name exists.
    fn create_workspace_sync(&self, ws: &WorkspaceRecord) -> Result<(), StoreError> {
        let key = self.key();
        let sealed_key = key.seal(&ws.ca_key_pem, &master::ca_key_context(&ws.name));
        let sealed_access = ws
            .access_key
            .as_ref()
            .map(|k| key.seal(k, &master::access_key_context(&ws.name)));
        let inserted = self.write(|c| {
            let tx = c.unchecked_transaction()?;
            let res = tx.execute(
                "INSERT INTO workspaces (name, domain, public_port, ca_cert_pem, ca_key_pem, ca_sha256, access_key_sha256, created_at, access_key)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![ws.name, ws.domain, ws.public_port, ws.ca_cert_pem, sealed_key, ws.ca_sha256, ws.access_key_sha256, ws.created_at, sealed_access],
            );
            match res {
                Ok(_) => {
                    record_change(&tx, &ws.name, &ChangeKind::Created)?;
                    tx.commit()?;
                    Ok(true)
                }
                Err(rusqlite::Error::SqliteFailure(f, _))
                    if f.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    Ok(false)
                }
                Err(e) => Err(e),
            }
        })?;
        if inserted {
            Ok(())
        } else {
            Err(StoreError::WorkspaceExists(ws.name.clone()))
        }
    }

    fn workspaces_sync(&self) -> Result<Vec<WorkspaceRecord>, StoreError> {
        let rows: Vec<WorkspaceRecord> = self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT name, domain, public_port, ca_cert_pem, ca_key_pem, ca_sha256, access_key_sha256, created_at, access_key FROM workspaces ORDER BY name",
            )?;
            let rows = st.query_map([], row_to_workspace)?;
            rows.collect()
        })?;
        rows.into_iter().map(|w| self.unseal(w)).collect()
    }

    pub(crate) fn key(&self) -> MasterKey {
        self.inner
            .key
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The record with its CA key opened.
    fn unseal(&self, mut w: WorkspaceRecord) -> Result<WorkspaceRecord, StoreError> {
        let key = self.key();
        w.ca_key_pem = key.open(&w.ca_key_pem, &master::ca_key_context(&w.name))?;
        if let Some(k) = &w.access_key {
            w.access_key = Some(key.open(k, &master::access_key_context(&w.name))?);
        }
        Ok(w)
    }

    /// [`Store::rotate_master_key`]: one write transaction.
    fn rotate_sync(&self, new: MasterKey) -> Result<u64, StoreError> {
        let old = self.key();
        let done = self.write(|c| {
            let tx = c.unchecked_transaction()?;
            let rows: Vec<(String, String, Option<String>)> = {
                let mut st = tx.prepare("SELECT name, ca_key_pem, access_key FROM workspaces")?;
                let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            let mut n = 0u64;
            for (name, ca, access) in rows {
                let reseal = |v: &str, ctx: &str| old.open(v, ctx).map(|p| new.seal(&p, ctx));
                let ca = match reseal(&ca, &master::ca_key_context(&name)) {
                    Ok(v) => v,
                    Err(e) => return Ok(Err(e)),
                };
                let access = match access
                    .map(|a| reseal(&a, &master::access_key_context(&name)))
                    .transpose()
                {
                    Ok(v) => v,
                    Err(e) => return Ok(Err(e)),
                };
                n += 1 + u64::from(access.is_some());
                tx.execute(
                    "UPDATE workspaces SET ca_key_pem = ?2, access_key = ?3 WHERE name = ?1",
                    params![name, ca, access],
                )?;
                record_change(&tx, &name, &ChangeKind::MasterKeyRotated)?;
            }
            match tokens::reseal_webhook_secrets(&tx, &old, &new)? {
                Ok(resealed) => n += resealed,
                Err(e) => return Ok(Err(e)),
            }
            // Central policy passwords (issue #26).
            match policy::reseal(&tx, &old, &new)? {
                Ok(p) => n += p,
                Err(e) => return Ok(Err(e)),
            }
            // CA rotation: the previous CAs' keys.
            match lifecycle::reseal_previous_cas(&tx, &old, &new)? {
                Ok(resealed) => n += resealed,
                Err(e) => return Ok(Err(e)),
            }
            tx.execute(
                "UPDATE meta SET value = ?1 WHERE key = 'master_key_check'",
                [new.check_value()],
            )?;
            tx.commit()?;
            Ok(Ok(n))
        })??;
        *self.inner.key.write().unwrap_or_else(|p| p.into_inner()) = new;
        Ok(done)
    }

    fn workspace_sync(&self, name: &str) -> Result<Option<WorkspaceRecord>, StoreError> {
        self.read(|c| {
            c.query_row(
                "SELECT name, domain, public_port, ca_cert_pem, ca_key_pem, ca_sha256, access_key_sha256, created_at, access_key FROM workspaces WHERE name = ?1",
                [name],
                row_to_workspace,
            )
            .optional()
        })?
        .map(|w| self.unseal(w))
        .transpose()
    }

    /// Registers a sensor, unless another sensor of the workspace has its key (checked and
    /// inserted in one transaction; a unique index backs it).
    fn add_sensor_sync(&self, s: &SensorRecord) -> Result<(), StoreError> {
        let holder = self.write(|c| {
            let tx = c.unchecked_transaction()?;
            let holder = key_holder(&tx, &s.workspace, s.key_sha256.as_deref(), None)?;
            if holder.is_none() {
                tx.execute(
                    "INSERT INTO sensors (sensor_id, workspace, name, cert_sha256, enrolled_at, last_seen, key_sha256) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![s.sensor_id, s.workspace, s.name, s.cert_sha256, s.enrolled_at, s.last_seen, s.key_sha256],
                )?;
            }
            tx.commit()?;
            Ok(holder)
        })?;
        match holder {
            None => Ok(()),
            Some(sensor_id) => Err(StoreError::KeyAlreadyEnrolled {
                workspace: s.workspace.clone(),
                sensor_id,
            }),
        }
    }

    fn import_sensor_sync(&self, s: &SensorRecord) -> Result<bool, StoreError> {
        let (existing, holder) = self.write(|c| {
            let tx = c.unchecked_transaction()?;
            let existing: Option<String> = tx
                .query_row(
                    "SELECT workspace FROM sensors WHERE sensor_id = ?1",
                    [&s.sensor_id],
                    |r| r.get(0),
                )
                .optional()?;
            let mut holder = None;
            if existing.is_none() {
                holder = key_holder(&tx, &s.workspace, s.key_sha256.as_deref(), None)?;
                if holder.is_none() {
                    tx.execute(
                        "INSERT INTO sensors (sensor_id, workspace, name, cert_sha256, enrolled_at, last_seen, key_sha256) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                        params![s.sensor_id, s.workspace, s.name, s.cert_sha256, s.enrolled_at, s.last_seen, s.key_sha256],
                    )?;
                }
            }
            tx.commit()?;
            Ok((existing, holder))
        })?;
        match (existing, holder) {
            (Some(ws), _) if ws == s.workspace => Ok(false),
            (Some(ws), _) => Err(StoreError::KeyAlreadyEnrolled {
                workspace: ws,
                sensor_id: s.sensor_id.clone(),
            }),
            (None, Some(sensor_id)) => Err(StoreError::KeyAlreadyEnrolled {
                workspace: s.workspace.clone(),
                sensor_id,
            }),
            (None, None) => Ok(true),
        }
    }

    fn import_events_sync(
        &self,
        sensor_id: &str,
        events: &[StoredEvent],
    ) -> Result<Option<IngestOutcome>, StoreError> {
        self.write(|c| {
            let tx = c.unchecked_transaction()?;
            let Some((row, workspace, pruned_through)) = tx
                .query_row(
                    "SELECT id, workspace, COALESCE(pruned_through, -1) FROM sensors WHERE sensor_id = ?1",
                    [sensor_id],
                    |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)),
                )
                .optional()?
            else {
                return Ok(None);
            };
            let mut outcome = IngestOutcome::default();
            let mut counts: HashMap<&str, i64> = HashMap::new();
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO events (sensor, seq, kind, received_at, body) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
                )?;
                for e in events {
                    if (e.seq as i64) <= pruned_through && !holes::fill(&tx, row, e.seq as i64)? {
                        outcome.duplicates += 1;
                        continue;
                    }
                    if insert.execute(params![row, e.seq as i64, e.kind, e.received_at, e.body])? == 1 {
                        outcome.accepted += 1;
                        *counts.entry(e.kind.as_str()).or_default() += 1;
                    } else {
                        outcome.duplicates += 1;
                    }
                }
                let mut count = tx.prepare_cached(
                    "INSERT INTO kind_counts (workspace, kind, n) VALUES (?1, ?2, ?3) ON CONFLICT (workspace, kind) DO UPDATE SET n = n + excluded.n",
                )?;
                for (kind, n) in &counts {
                    count.execute(params![workspace, kind, n])?;
                }
            }
            tx.commit()?;
            Ok(Some(outcome))
        })
    }

    fn sensor_counts_sync(&self, workspace: &str) -> Result<BTreeMap<String, u64>, StoreError> {
        self.read(|c| {
            let mut st = c.prepare(
                "SELECT s.sensor_id, (SELECT count(*) FROM events e WHERE e.sensor = s.id) FROM sensors s WHERE s.workspace = ?1",
            )?;
            let rows = st.query_map([workspace], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
            })?;
            rows.collect()
        })
    }

    fn renew_sensor_sync(
        &self,
        workspace: &str,
        sensor_id: &str,
        cert_sha256: &str,
        key_sha256: &str,
    ) -> Result<(), StoreError> {
        let (holder, n) = self.write(|c| {
            let tx = c.unchecked_transaction()?;
            if lifecycle::revocation_of(&tx, sensor_id)?.is_some() {
                return Ok((None, usize::MAX));
            }
            let holder = key_holder(&tx, workspace, Some(key_sha256), Some(sensor_id))?;
            let n = if holder.is_none() {
                tx.execute(
                    "UPDATE sensors SET cert_sha256 = ?1, key_sha256 = ?4 WHERE sensor_id = ?2 AND workspace = ?3",
                    params![cert_sha256, sensor_id, workspace, key_sha256],
                )?
            } else {
                0
            };
            tx.commit()?;
            Ok((holder, n))
        })?;
        if let Some(holder) = holder {
            return Err(StoreError::KeyAlreadyEnrolled {
                workspace: workspace.into(),
                sensor_id: holder,
            });
        }
        if n == 0 {
            return Err(StoreError::NoSuchSensor(sensor_id.into()));
        }
        if n == usize::MAX {
            return Err(StoreError::Revoked {
                workspace: workspace.into(),
                sensor_id: sensor_id.into(),
            });
        }
        Ok(())
    }

    /// Counts for one workspace; works while the service writes.
    fn stats_sync(&self, workspace: &str) -> Result<WorkspaceStats, StoreError> {
        if self.workspace_sync(workspace)?.is_none() {
            return Err(StoreError::NoSuchWorkspace(workspace.into()));
        }
        self.read(|c| {
            let mut st = c.prepare(
                "SELECT sensor_id, workspace, name, cert_sha256, enrolled_at, last_seen, key_sha256 FROM sensors WHERE workspace = ?1 ORDER BY enrolled_at, sensor_id",
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

    /// [`Store::export`] on a blocking thread: one snapshot, counted against `kind_counts`.
    fn export_sync(
        &self,
        workspace: &str,
        filter: &ExportFilter,
        out: &tokio::sync::mpsc::Sender<StoredEvent>,
    ) -> Result<u64, StoreError> {
        if self.workspace_sync(workspace)?.is_none() {
            return Err(StoreError::NoSuchWorkspace(workspace.into()));
        }
        let path = &self.inner.path;
        // A separate connection: exports can be long and must not hold the shared reader.
        let conn = open_connection(path, false)?;
        // One read transaction: the counters and the rows come from the same snapshot.
        let tx = conn.unchecked_transaction().map_err(sql_err(path))?;
        let expected: Option<u64> = match filter.sensor_id {
            Some(_) => None,
            None => Some(
                tx.query_row(
                    "SELECT COALESCE(SUM(n), 0) FROM kind_counts WHERE workspace = ?1 AND (?2 IS NULL OR kind = ?2)",
                    params![workspace, filter.kind],
                    |r| r.get::<_, i64>(0),
                )
                .map_err(sql_err(path))? as u64,
            ),
        };
        let mut st = tx
            .prepare(
                "SELECT s.sensor_id, e.seq, e.kind, e.received_at, e.body, e.blob, e.span, e.sensor FROM events e JOIN sensors s ON s.id = e.sensor
                 WHERE s.workspace = ?1 AND (?2 IS NULL OR e.kind = ?2) AND (?3 IS NULL OR s.sensor_id = ?3)
                 ORDER BY s.sensor_id, e.seq",
            )
            .map_err(sql_err(path))?;
        let mut rows = st
            .query(params![workspace, filter.kind, filter.sensor_id])
            .map_err(sql_err(path))?;
        let mut n = 0;
        let damaged = |n: u64, e: StoreError| match e {
            StoreError::Damaged { path, detail } => StoreError::Damaged {
                path,
                detail: format!(
                    "{detail} (after {n} events were exported; the export is incomplete)"
                ),
            },
            e => e,
        };
        // An event whose text lies in its batch's stored body (`blobs.rs`) is read from it.
        let mut batches = blobs::Reader::default();
        while let Some(r) = rows.next().map_err(|e| damaged(n, sql_err(path)(e)))? {
            // The row's own text, or where it lies in a batch (`blob` and `span` both set, or
            // neither: one alone is damage).
            let read = || -> rusqlite::Result<(StoredEvent, [Option<i64>; 2])> {
                let ev = StoredEvent {
                    sensor_id: r.get(0)?,
                    seq: r.get::<_, i64>(1)? as u64,
                    kind: r.get(2)?,
                    received_at: r.get(3)?,
                    body: r.get(4)?,
                };
                Ok((ev, [r.get(5)?, r.get(6)?]))
            };
            let row_damaged = |detail: String| {
                damaged(
                    n,
                    StoreError::Damaged {
                        path: path.display().to_string(),
                        detail,
                    },
                )
            };
            let (mut ev, pointer) =
                read().map_err(|e| row_damaged(format!("an event row could not be read ({e})")))?;
            let at = match pointer {
                [Some(blob), Some(span)] => Some((blob, span)),
                [None, None] => None,
                _ => {
                    return Err(row_damaged(format!(
                        "event {} of sensor {} has half a pointer into a stored batch",
                        ev.seq, ev.sensor_id
                    )))
                }
            };
            if let Some((blob, span)) = at {
                let sensor: i64 = r
                    .get(7)
                    .map_err(|e| row_damaged(format!("an event row could not be read ({e})")))?;
                ev.body = batches
                    .text(&tx, (sensor, ev.seq as i64), blob, span)
                    .map_err(|e| {
                        row_damaged(format!(
                            "the text of event {} of sensor {} could not be read: {e}",
                            ev.seq, ev.sensor_id
                        ))
                    })?
                    .to_owned();
            }
            out.blocking_send(ev)
                .map_err(|_| StoreError::output_closed())?;
            n += 1;
        }
        if let Some(expected) = expected.filter(|&e| e != n) {
            return Err(StoreError::Damaged {
                path: path.display().to_string(),
                detail: format!(
                    "the export read {n} events but the store counts {expected} for this workspace{}: pages are missing or unreadable, the export is incomplete",
                    filter.kind.as_ref().map(|k| format!(" and kind {k:?}")).unwrap_or_default()
                ),
            });
        }
        Ok(n)
    }

    /// The writer thread, started (or restarted after it stopped on a failed commit) when
    /// needed. A connection SQLite opened read-only is refused, so a store that was not
    /// writable is tried again at the next request rather than failing until a restart.
    fn writer(&self) -> Result<mpsc::Sender<WriteOp>, StoreError> {
        let mut guard = self.inner.writer.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = guard.as_ref() {
            return Ok(tx.clone());
        }
        self.check_files()?;
        let conn = open_connection(&self.inner.path, false)?;
        if conn.is_readonly(MAIN_DB).unwrap_or(true) {
            return Err(StoreError::ReadOnly {
                path: self.inner.path.display().to_string(),
            });
        }
        // This connection only ingests (`commit_group`), which reads the sensor's row in its
        // write transaction once per batch and stores nothing when it is gone; deleting a
        // workspace deletes the events before the sensors, in one transaction, on another
        // connection, with the foreign key on. Checking the key here too would cost a lookup
        // of the sensor's row per event, and, as a constraint that aborts a statement, it
        // would make SQLite copy every page a multi-row insert touches to a statement journal
        // (issue #28; PostgreSQL's format 13 dropped its key for the same reason).
        conn.execute_batch("PRAGMA foreign_keys=OFF")
            .map_err(sql_err(&self.inner.path))?;
        // Checkpoints run on their own thread and connection, not inside this connection's
        // commits (`checkpoint.rs`).
        let bounds = *self
            .inner
            .checkpoint_bounds
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let page_size: u32 = conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .map_err(sql_err(&self.inner.path))?;
        checkpoint::take_over(&conn, bounds, page_size).map_err(sql_err(&self.inner.path))?;
        let io_err = |source| StoreError::Io {
            path: self.inner.path.display().to_string(),
            source,
        };
        let (trigger, checkpointer) = checkpoint::start(
            &self.inner.path,
            open_connection(&self.inner.path, false)?,
            bounds,
            self.inner.checkpoints.clone(),
        )
        .map_err(io_err)?;
        let (tx, rx) = mpsc::channel();
        let path = self.inner.path.clone();
        let files = self.inner.files.clone();
        std::thread::Builder::new()
            .name("uplink-store-writer".into())
            .spawn(move || {
                writer_loop(conn, path, files, rx, &trigger);
                // The checkpointer ends with the writer that feeds it.
                drop(trigger);
                let _ = checkpointer.join();
            })
            .map_err(io_err)?;
        *guard = Some(tx.clone());
        Ok(tx)
    }

    /// Ingests through the group-commit writer (see the module docs).
    async fn ingest_async(
        &self,
        sensor_id: &str,
        events: EventBatch,
    ) -> Result<IngestOutcome, StoreError> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.send(WriteOp::Ingest {
            sensor_id: sensor_id.to_owned(),
            events,
            reply,
        })?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Hands an operation to the writer, restarting it once if it had stopped.
    // The error is the op itself, handed back to retry; boxing it would buy nothing.
    #[allow(clippy::result_large_err)]
    fn send(&self, op: WriteOp) -> Result<(), StoreError> {
        let op = match self.writer()?.send(op) {
            Ok(()) => return Ok(()),
            Err(mpsc::SendError(op)) => op,
        };
        // The writer stopped after a failed commit: forget it and open a fresh one.
        *self.inner.writer.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.writer()?.send(op).map_err(|_| StoreError::WriterGone)
    }

    /// Whether ingest works now: the files are the ones opened, and the writer (reopened if
    /// needed) can take the write lock.
    async fn health_async(&self) -> Result<(), StoreError> {
        let this = self.clone();
        blocking(move || this.check_files()).await?;
        let (reply, rx) = tokio::sync::oneshot::channel();
        let this = self.clone();
        blocking(move || this.send(WriteOp::Probe { reply })).await?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }
}

/// Appends an entry to the change log, inside the caller's write transaction. SQLite runs one
/// write transaction at a time, so versions (AUTOINCREMENT: never reused) commit in order and a
/// reader that saw version `v` has seen everything before it. Every workspace mutation calls
/// this, once per workspace it changes.
pub(crate) fn record_change(
    c: &Connection,
    workspace: &str,
    kind: &ChangeKind,
) -> rusqlite::Result<()> {
    c.execute(
        "INSERT INTO changes (workspace, kind, at) VALUES (?1, ?2, ?3)",
        params![workspace, kind.as_str(), now_ms()],
    )?;
    Ok(())
}

impl SqliteStore {
    fn change_version_sync(&self) -> Result<u64, StoreError> {
        self.read(|c| {
            c.prepare_cached("SELECT COALESCE(MAX(version), 0) FROM changes")?
                .query_row([], |r| r.get::<_, i64>(0))
        })
        .map(|v| v.max(0) as u64)
    }

    fn changes_since_sync(&self, after: u64, limit: usize) -> Result<Vec<Change>, StoreError> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT version, workspace, kind FROM changes WHERE version > ?1 ORDER BY version LIMIT ?2",
            )?;
            let rows = st.query_map(params![after, limit], |r| {
                Ok(Change {
                    version: r.get::<_, i64>(0)?.max(0) as u64,
                    workspace: r.get(1)?,
                    kind: ChangeKind::parse(&r.get::<_, String>(2)?),
                })
            })?;
            rows.collect()
        })
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
        access_key: r.get(8)?,
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
        key_sha256: r.get(6)?,
    })
}

/// The sensor of `workspace` (other than `except`) that holds `key`, if any.
fn key_holder(
    c: &Connection,
    workspace: &str,
    key: Option<&str>,
    except: Option<&str>,
) -> rusqlite::Result<Option<String>> {
    let Some(key) = key else { return Ok(None) };
    c.query_row(
        "SELECT sensor_id FROM sensors WHERE workspace = ?1 AND key_sha256 = ?2 AND (?3 IS NULL OR sensor_id != ?3)",
        params![workspace, key, except],
        |r| r.get(0),
    )
    .optional()
}

struct Pending {
    sensor_id: String,
    events: EventBatch,
    reply: tokio::sync::oneshot::Sender<Result<IngestOutcome, StoreError>>,
}

fn writer_loop(
    mut conn: Connection,
    path: PathBuf,
    files: Arc<Files>,
    rx: mpsc::Receiver<WriteOp>,
    checkpoint: &checkpoint::Trigger,
) {
    // sensor_id -> (row id, workspace). A sensor deleted since (with its workspace) is noticed
    // in the commit (its row is gone) and forgotten.
    let mut sensors: HashMap<String, (i64, String)> = HashMap::new();
    while let Ok(first) = rx.recv() {
        let mut group = Vec::new();
        let mut probes = Vec::new();
        let mut n = 0;
        let mut next = Some(first);
        while let Some(op) = next.take() {
            match op {
                WriteOp::Ingest {
                    sensor_id,
                    events,
                    reply,
                } => {
                    n += events.len();
                    group.push(Pending {
                        sensor_id,
                        events,
                        reply,
                    });
                }
                WriteOp::Probe { reply } => probes.push(reply),
            }
            if n < GROUP_EVENTS {
                next = rx.try_recv().ok();
            }
        }
        // Before committing: are the files still the store's? A deleted or replaced store
        // would take the commit into a file nobody reads again (and the sensor would delete
        // the events on our 200).
        if let Err(e) = files.check() {
            let msg = e.to_string();
            for p in group {
                let _ = p.reply.send(Err(clone_gone(&e, &msg)));
            }
            for p in probes {
                let _ = p.send(Err(clone_gone(&e, &msg)));
            }
            continue;
        }
        let mut failed = false;
        if !probes.is_empty() {
            // One probe answers every health check waiting in this group (a flood of
            // unauthenticated /healthz requests costs one lock round trip per group).
            let probe = conn.execute_batch("BEGIN IMMEDIATE; ROLLBACK;");
            failed |= probe.is_err();
            let err = probe.err().map(|e| sql_err(&path)(e).to_string());
            for p in probes {
                let _ = p.send(match &err {
                    None => Ok(()),
                    Some(message) => Err(StoreError::Commit {
                        path: path.display().to_string(),
                        message: message.clone(),
                    }),
                });
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
        let ready_empty = ready.is_empty();
        if !ready_empty {
            match commit_group(&mut conn, &ready) {
                Ok(outcomes) => {
                    for ((p, _), outcome) in ready.into_iter().zip(outcomes) {
                        let _ = p.reply.send(match outcome {
                            Some(outcome) => Ok(outcome),
                            // Deleted with its workspace since it was cached.
                            None => {
                                sensors.remove(&p.sensor_id);
                                Err(StoreError::NoSuchSensor(p.sensor_id.clone()))
                            }
                        });
                    }
                }
                Err(e) => {
                    failed = true;
                    let e = sql_err(&path)(e);
                    let msg = e.to_string();
                    for (p, _) in ready {
                        let _ = p.reply.send(Err(match &e {
                            StoreError::ReadOnly { path } => {
                                StoreError::ReadOnly { path: path.clone() }
                            }
                            _ => StoreError::Commit {
                                path: path.display().to_string(),
                                message: msg.clone(),
                            },
                        }));
                    }
                }
            }
        }
        if !failed && !ready_empty {
            checkpoint.after_commit(&conn, BUSY_TIMEOUT);
        }
        if failed {
            // Stop: the next request opens a fresh connection (a store made read-only, or a
            // connection left in a bad state, recovers without a restart). Requests already
            // queued get `WriterGone` and are retried by their sensors.
            return;
        }
    }
}

/// The same [`StoreError::FilesGone`] for every waiter of a group.
fn clone_gone(e: &StoreError, msg: &str) -> StoreError {
    match e {
        StoreError::FilesGone { path, what, rescue } => StoreError::FilesGone {
            path: path.clone(),
            what: what.clone(),
            rescue: rescue.clone(),
        },
        _ => StoreError::Commit {
            path: String::new(),
            message: msg.to_owned(),
        },
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

/// Events per multi-row `INSERT` of the ingest path, largest first (issue #28). One statement
/// for many rows pays SQLite's per-statement work (reset, cursor open, the first seek from the
/// root) once per chunk instead of once per event; the sensor and the time are bound once per
/// statement. A run shorter than the smallest size goes row by row.
const INSERT_CHUNKS: [usize; 2] = [64, 8];

/// `INSERT` of `rows` events of one sensor at one time: `?1` the sensor, `?2` the time, `?3`
/// the batch their texts lie in (NULL: each row holds its text, `blobs.rs`), then seq, kind,
/// body and span for each row.
///
/// `OR IGNORE`, not `ON CONFLICT DO NOTHING`: a statement writing many rows that could stop
/// half-way (a `NOT NULL` column's default conflict action is to abort the statement) makes
/// SQLite copy every page it touches to a statement journal first, so it can undo that part;
/// perf showed it at a fifth of the writer's time. With `OR IGNORE` no constraint aborts, so no
/// statement journal. Nothing is ignored in practice: every value bound to a `NOT NULL` column
/// is non-null (`blob` and `span` may be NULL), and the caller checks that the chunk's range is
/// unstored and that every row went in.
fn insert_chunk_sql(rows: usize) -> String {
    let mut sql = String::from(
        "INSERT OR IGNORE INTO events (sensor, seq, kind, received_at, body, blob, span) VALUES ",
    );
    for i in 0..rows {
        let p = 4 + 4 * i;
        if i > 0 {
            sql.push(',');
        }
        sql.push_str(&format!(
            "(?1, ?{p}, ?{}, ?2, ?{}, ?3, ?{})",
            p + 1,
            p + 2,
            p + 3
        ));
    }
    sql
}

/// How many events from the start of `seqs` can go in one multi-row statement: the longest
/// prefix (at most the largest of [`INSERT_CHUNKS`]) whose seqs are all above the watermark and
/// strictly increasing, rounded down to a size of [`INSERT_CHUNKS`]; 0 for row by row. Strictly
/// increasing means no seq twice in the chunk, so once its range is found empty in the store,
/// every row of it is new: the outcome of each event is known without a statement per event.
fn chunk_len(seqs: impl Iterator<Item = u64>, pruned_through: i64) -> usize {
    let mut n = 0;
    let mut last: Option<u64> = None;
    for seq in seqs.take(INSERT_CHUNKS[0]) {
        // Above i64::MAX (the protocol refuses it) the column's value would wrap: row by row.
        if seq > i64::MAX as u64 || (seq as i64) <= pruned_through || last.is_some_and(|l| seq <= l)
        {
            break;
        }
        last = Some(seq);
        n += 1;
    }
    INSERT_CHUNKS
        .into_iter()
        .find(|&size| size <= n)
        .unwrap_or(0)
}

/// Whether a batch of these seqs is all new as far as its seqs tell: at least one, strictly
/// increasing, all above the watermark (and within the column's range). Whether none of its
/// range is stored is the caller's one query.
fn all_new(mut seqs: impl Iterator<Item = u64>, pruned_through: i64) -> bool {
    let Some(mut last) = seqs.next() else {
        return false;
    };
    if last > i64::MAX as u64 || (last as i64) <= pruned_through {
        return false;
    }
    seqs.all(|seq| {
        let up = seq > last && seq <= i64::MAX as u64;
        last = seq;
        up
    })
}

/// Accepted events per kind, counted in runs of one kind (most of a batch), each run added to
/// the group's counters once: no hashing per event.
struct KindRuns<'a> {
    run: Option<(&'a str, i64)>,
}

impl<'a> KindRuns<'a> {
    fn add(&mut self, kind: &'a str, counts: &mut HashMap<(&'a str, &'a str), i64>, ws: &'a str) {
        match &mut self.run {
            Some((k, n)) if *k == kind => *n += 1,
            _ => {
                if let Some((k, n)) = self.run.replace((kind, 1)) {
                    *counts.entry((ws, k)).or_default() += n;
                }
            }
        }
    }

    fn finish(self, counts: &mut HashMap<(&'a str, &'a str), i64>, ws: &'a str) {
        if let Some((k, n)) = self.run {
            *counts.entry((ws, k)).or_default() += n;
        }
    }
}

/// Sensor `row`'s retention watermark (-1: nothing removed yet).
fn watermark_of(tx: &Connection, row: i64) -> rusqlite::Result<i64> {
    tx.prepare_cached("SELECT COALESCE(pruned_through, -1) FROM sensors WHERE id = ?1")?
        .query_row([row], |r| r.get(0))
}

/// Takes removed events off the workspace's per-kind counters.
fn uncount<'a>(
    tx: &Connection,
    workspace: &str,
    kinds: impl Iterator<Item = &'a str>,
) -> rusqlite::Result<()> {
    let mut by_kind: HashMap<&str, i64> = HashMap::new();
    for kind in kinds {
        *by_kind.entry(kind).or_default() += 1;
    }
    for (kind, n) in &by_kind {
        tx.execute(
            "UPDATE kind_counts SET n = n - ?3 WHERE workspace = ?1 AND kind = ?2",
            params![workspace, kind, n],
        )?;
    }
    Ok(())
}

/// Commits a group; `None` for a batch whose sensor is gone (its workspace deleted).
fn commit_group(
    conn: &mut Connection,
    group: &[(Pending, (i64, String))],
) -> rusqlite::Result<Vec<Option<IngestOutcome>>> {
    let now = now_ms();
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut outcomes = Vec::with_capacity(group.len());
    let mut counts: HashMap<(&str, &str), i64> = HashMap::new();
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO events (sensor, seq, kind, received_at, body) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
        )?;
        let mut insert_pointer = tx.prepare_cached(
            "INSERT INTO events (sensor, seq, kind, received_at, body, blob, span) VALUES (?1, ?2, ?3, ?4, '', ?5, ?6) ON CONFLICT DO NOTHING",
        )?;
        // One statement per chunk size, prepared once per group (the SQL is built once per
        // process).
        static CHUNK_SQL: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        let chunk_sql = CHUNK_SQL.get_or_init(|| INSERT_CHUNKS.map(insert_chunk_sql).to_vec());
        let mut chunk_inserts = chunk_sql
            .iter()
            .map(|sql| tx.prepare_cached(sql))
            .collect::<rusqlite::Result<Vec<_>>>()?;
        // Is any seq of a range stored already (an earlier batch, or one earlier in this
        // transaction)? One seek per chunk; usually not, and the chunk goes in one statement.
        let mut stored_in = tx.prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM events WHERE sensor = ?1 AND seq BETWEEN ?2 AND ?3)",
        )?;
        let mut touch = tx.prepare_cached("UPDATE sensors SET last_seen = ?2 WHERE id = ?1")?;
        // Read in the write transaction: a prune (another process, too) raises it only under
        // the same write lock.
        let mut watermark = tx.prepare_cached(
            "SELECT COALESCE(pruned_through, -1) FROM sensors WHERE id = ?1 AND sensor_id = ?2",
        )?;
        for (p, (rowid, workspace)) in group {
            let Some(pruned_through) = watermark
                .query_row(params![rowid, p.sensor_id], |r| r.get::<_, i64>(0))
                .optional()?
            else {
                outcomes.push(None);
                continue;
            };
            let mut outcome = IngestOutcome::default();
            let mut runs = KindRuns { run: None };
            // The batch's seqs and kinds (one vector per batch); a body is read only for a row
            // that holds its text.
            let events: Vec<(u64, &str)> = p.events.heads().collect();
            // A batch stored as sent (`blobs.rs`): one that kept its zstd body, every event's
            // text a piece of the decoded text, and every event new (seqs strictly increasing
            // above the watermark, none of their range stored). Its body is stored once, first,
            // and every row of it points into it, so the batch holds exactly its rows' texts
            // and goes with them. Anything else keeps each event's text in its row.
            let kept: Option<(i64, Vec<i64>)> = match p.events.zstd() {
                Some(zstd) if all_new(events.iter().map(|e| e.0), pruned_through) => {
                    let spans = p
                        .events
                        .body_ranges()
                        .map(|r| r.as_ref().and_then(blobs::span))
                        .collect::<Option<Vec<i64>>>();
                    let (first, last) = match (events.first(), events.last()) {
                        (Some(a), Some(z)) => (a.0 as i64, z.0 as i64),
                        _ => (0, -1),
                    };
                    match spans {
                        Some(spans)
                            if !stored_in.query_row(params![rowid, first, last], |r| {
                                r.get::<_, bool>(0)
                            })? =>
                        {
                            let blob = blobs::insert(
                                &tx,
                                *rowid,
                                (first, last),
                                p.events.text_len(),
                                zstd,
                            )?;
                            Some((blob, spans))
                        }
                        _ => None,
                    }
                }
                _ => None,
            };
            // A batch as sent, without its text (the service's way with this store), that cannot
            // be stored so (a retry, an overlap): its texts decoded again for the rows.
            let texts = match kept {
                None => p.events.with_text().map_err(|e| {
                    rusqlite::Error::SqliteFailure(
                        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_INTERNAL),
                        Some(e),
                    )
                })?,
                Some(_) => std::borrow::Cow::Borrowed(&p.events),
            };
            let blob = kept.as_ref().map(|(id, _)| *id);
            let mut rest = &events[..];
            // Events left to go row by row after a chunk's range held stored events (a retried
            // batch): one range check per chunk, not one per event.
            let mut row_by_row = 0usize;
            while let Some(&(seq, kind)) = rest.first() {
                let n = match row_by_row {
                    0 => chunk_len(rest.iter().map(|e| e.0), pruned_through),
                    _ => 0,
                };
                if n > 0 {
                    let chunk = &rest[..n];
                    let (lo, hi) = (chunk[0].0 as i64, chunk[n - 1].0 as i64);
                    // A batch stored as sent had its whole range checked once already.
                    if kept.is_none()
                        && stored_in.query_row(params![rowid, lo, hi], |r| r.get::<_, bool>(0))?
                    {
                        row_by_row = n;
                    } else {
                        let size = INSERT_CHUNKS.iter().position(|&s| s == n).unwrap_or(0);
                        let at = events.len() - rest.len();
                        let st = &mut chunk_inserts[size];
                        st.raw_bind_parameter(1, rowid)?;
                        st.raw_bind_parameter(2, now)?;
                        st.raw_bind_parameter(3, blob)?;
                        for (i, &(seq, kind)) in chunk.iter().enumerate() {
                            st.raw_bind_parameter(4 + 4 * i, seq as i64)?;
                            st.raw_bind_parameter(5 + 4 * i, kind)?;
                            match &kept {
                                Some((_, spans)) => {
                                    st.raw_bind_parameter(6 + 4 * i, "")?;
                                    st.raw_bind_parameter(7 + 4 * i, spans[at + i])?;
                                }
                                None => {
                                    st.raw_bind_parameter(6 + 4 * i, texts.body(at + i))?;
                                    st.raw_bind_parameter(7 + 4 * i, None::<i64>)?;
                                }
                            }
                        }
                        let changed = st.raw_execute()?;
                        if changed != n {
                            // Cannot happen (the range was empty under the write lock, the
                            // seqs distinct); refuse the group rather than miscount.
                            return Err(rusqlite::Error::SqliteFailure(
                                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_INTERNAL),
                                Some(format!(
                                    "a chunk of {n} new events of seqs {lo}..={hi} stored {changed}"
                                )),
                            ));
                        }
                        outcome.accepted += n as u64;
                        for &(_, kind) in chunk {
                            runs.add(kind, &mut counts, workspace);
                        }
                        rest = &rest[n..];
                        continue;
                    }
                }
                // Row by row: at or below the watermark, a seq repeated or out of order, a
                // range with stored events, or a short tail.
                rest = &rest[1..];
                row_by_row = row_by_row.saturating_sub(1);
                if (seq as i64) <= pruned_through && !holes::fill(&tx, *rowid, seq as i64)? {
                    // Removed by retention: a retried copy, not a new event (a seq in a hole
                    // the watermark passed was never stored: it is new).
                    outcome.duplicates += 1;
                    continue;
                }
                let changed = match &kept {
                    // A short tail of a batch stored as sent points into it too.
                    Some((blob, spans)) => insert_pointer.execute(params![
                        rowid,
                        seq as i64,
                        kind,
                        now,
                        blob,
                        spans[events.len() - rest.len() - 1]
                    ])?,
                    None => insert.execute(params![
                        rowid,
                        seq as i64,
                        kind,
                        now,
                        texts.body(events.len() - rest.len() - 1)
                    ])?,
                };
                if changed == 1 {
                    outcome.accepted += 1;
                    runs.add(kind, &mut counts, workspace);
                } else {
                    outcome.duplicates += 1;
                }
            }
            runs.finish(&mut counts, workspace);
            touch.execute(params![rowid, now])?;
            outcomes.push(Some(outcome));
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

// Workspace settings, deletion and retention (`uplink_store::retention`, docs/storage.md).
impl SqliteStore {
    fn workspace_settings_sync(&self, workspace: &str) -> Result<WorkspaceSettings, StoreError> {
        self.read(|c| {
            c.query_row(
                "SELECT retention_days, disconnected_after_secs FROM workspaces WHERE name = ?1",
                [workspace],
                |r| {
                    Ok(WorkspaceSettings {
                        retention_days: r.get(0)?,
                        disconnected_after_secs: r.get::<_, i64>(1)? as u64,
                    })
                },
            )
            .optional()
        })?
        .ok_or_else(|| StoreError::NoSuchWorkspace(workspace.into()))
    }

    fn set_workspace_settings_sync(
        &self,
        workspace: &str,
        change: SettingsChange,
    ) -> Result<WorkspaceSettings, StoreError> {
        change.validate()?;
        let n = self.write(|c| {
            let n = c.execute(
                "UPDATE workspaces SET retention_days = COALESCE(?2, retention_days),
                 disconnected_after_secs = COALESCE(?3, disconnected_after_secs) WHERE name = ?1",
                params![
                    workspace,
                    change.retention_days,
                    change.disconnected_after_secs.map(|s| s as i64)
                ],
            )?;
            if n > 0 {
                record_change(c, workspace, &ChangeKind::Settings)?;
            }
            Ok(n)
        })?;
        if n == 0 {
            return Err(StoreError::NoSuchWorkspace(workspace.into()));
        }
        self.workspace_settings_sync(workspace)
    }

    /// A connection of its own for long maintenance work, so that the shared reader stays free.
    fn maintenance_connection(&self) -> Result<Connection, StoreError> {
        self.check_files()?;
        open_connection(&self.inner.path, false)
    }

    /// Removes at most `chunk` of sensor `row`'s oldest events, in seq order, up to the first one
    /// received at or after `before`, in one write transaction: the workspace's counters go down
    /// by what was removed and the sensor's watermark up to the highest seq removed, recording
    /// the seqs it passes that were never stored (`holes.rs`). Returns how many were removed.
    ///
    /// In seq order rather than by an index on `received_at`: a sensor uploads in seq order, so
    /// its oldest events are its lowest seqs, and the primary key finds them without a third
    /// B-tree on every insert (issue #28). An event received before the cutoff but after a
    /// newer one in seq order (only an import of out-of-order times makes one) stays until
    /// the newer one goes: retention never removes an event early. An event stamped after
    /// `now` (an import, or a clock stepped back since) does not stop the walk: it is passed
    /// and kept, below the watermark, and goes by its own time like the events stored below
    /// the watermark (late arrivals into its holes), which are [`Self::prune_late_chunk`]'s.
    /// Returns how many were removed, and whether the walk read a whole chunk (more may follow).
    fn prune_chunk(
        &self,
        conn: &Connection,
        row: i64,
        workspace: &str,
        (before, now): (i64, i64),
        chunk: usize,
    ) -> Result<(u64, bool), StoreError> {
        let path = &self.inner.path;
        self.check_files()?;
        // "In the future" as of this chunk, not the run's start: an event ingested while the run
        // goes on is not stamped in the future, and passing it would leave it below the
        // watermark for `prune_late_chunk`'s scans (found in review). A run given a later time
        // (the conformance tests) keeps it.
        let now = now.max(now_ms());
        immediate(conn, |tx| {
            let through = watermark_of(tx, row)?;
            let oldest: Vec<(i64, String, i64)> = {
                let mut st = tx.prepare_cached(
                    "SELECT seq, kind, received_at FROM events WHERE sensor = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
                )?;
                let rows = st.query_map(params![row, through, chunk as i64], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?;
                rows.collect::<rusqlite::Result<Vec<_>>>()?
            };
            let walked = oldest
                .iter()
                .take_while(|(_, _, at)| *at < before || *at > now)
                .count();
            let more = walked == chunk;
            let Some(&(highest, _, _)) = walked.checked_sub(1).and_then(|i| oldest.get(i)) else {
                return Ok((0, more));
            };
            // Exactly the old rows read above: the sensor's lowest seqs above the watermark
            // through `highest` but those stamped in the future, under the same write lock.
            tx.prepare_cached(
                "DELETE FROM events WHERE sensor = ?1 AND seq > ?2 AND seq <= ?3 AND received_at < ?4",
            )?
            .execute(params![row, through, highest, before])?;
            let removed = || oldest[..walked].iter().filter(|(_, _, at)| *at < before);
            uncount(tx, workspace, removed().map(|(_, k, _)| k.as_str()))?;
            holes::record(tx, row, through, oldest[..walked].iter().map(|(s, _, _)| *s))?;
            // The batches no row points into any more.
            blobs::collect(tx, row, highest)?;
            tx.execute(
                "UPDATE sensors SET pruned_through = MAX(COALESCE(pruned_through, -1), ?2) WHERE id = ?1",
                params![row, highest],
            )?;
            Ok((removed().count() as u64, more))
        })
        .map_err(sql_err(path))
    }

    /// Removes at most `chunk` of sensor `row`'s events stored at or below its watermark and
    /// received before `before`: seqs that arrived late into a hole the watermark had passed
    /// (`holes.rs`), removed by their own age, so that one of them, young, never holds back the
    /// older events above it. They are few (one per never-stored seq that came back).
    fn prune_late_chunk(
        &self,
        conn: &Connection,
        row: i64,
        workspace: &str,
        before: i64,
        chunk: usize,
    ) -> Result<u64, StoreError> {
        let path = &self.inner.path;
        self.check_files()?;
        immediate(conn, |tx| {
            let through = watermark_of(tx, row)?;
            let late: Vec<(i64, String)> = {
                let mut st = tx.prepare_cached(
                    "SELECT seq, kind FROM events WHERE sensor = ?1 AND seq <= ?2 AND received_at < ?3 ORDER BY seq LIMIT ?4",
                )?;
                let rows = st.query_map(params![row, through, before, chunk as i64], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
                rows.collect::<rusqlite::Result<Vec<_>>>()?
            };
            let mut delete =
                tx.prepare_cached("DELETE FROM events WHERE sensor = ?1 AND seq = ?2")?;
            for (seq, _) in &late {
                delete.execute(params![row, seq])?;
            }
            if !late.is_empty() {
                blobs::collect(tx, row, through)?;
            }
            uncount(tx, workspace, late.iter().map(|(_, k)| k.as_str()))?;
            Ok(late.len() as u64)
        })
        .map_err(sql_err(path))
    }

    /// Removes every event of `workspace`'s sensors received before `before`, chunk by chunk,
    /// letting the ingest writer in between chunks.
    fn prune_workspace(
        &self,
        conn: &Connection,
        workspace: &str,
        (before, now): (i64, i64),
        chunk: usize,
    ) -> Result<u64, StoreError> {
        let rows: Vec<i64> = (|| {
            let mut st = conn.prepare("SELECT id FROM sensors WHERE workspace = ?1 ORDER BY id")?;
            let rows = st.query_map([workspace], |r| r.get(0))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })()
        .map_err(sql_err(&self.inner.path))?;
        let chunk = chunk.max(1);
        let mut total = 0;
        for row in rows {
            loop {
                let n = self.prune_late_chunk(conn, row, workspace, before, chunk)?;
                total += n;
                if (n as usize) < chunk {
                    break;
                }
            }
            loop {
                let (n, more) = self.prune_chunk(conn, row, workspace, (before, now), chunk)?;
                total += n;
                if !more {
                    break;
                }
                // Between chunks the write lock is free: give a waiting writer (ingest) the
                // chance to take it before the next chunk does.
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        Ok(total)
    }

    fn prune_sync(&self, options: PruneOptions) -> Result<PruneReport, StoreError> {
        let conn = self.maintenance_connection()?;
        let workspaces: Vec<(String, u32)> = (|| {
            let mut st =
                conn.prepare("SELECT name, retention_days FROM workspaces ORDER BY name")?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })()
        .map_err(sql_err(&self.inner.path))?;
        let mut report = PruneReport::default();
        for (workspace, days) in workspaces {
            let cutoff_ms = retention::cutoff(options.now_ms, days);
            let events = self.prune_workspace(
                &conn,
                &workspace,
                (cutoff_ms, options.now_ms),
                options.chunk,
            )?;
            report.workspaces.push(PrunedWorkspace {
                workspace,
                retention_days: days,
                cutoff_ms,
                events,
            });
        }
        Ok(report)
    }

    /// Removes the events in chunks (ingest keeps going), then the rest in one transaction.
    fn delete_workspace_sync(&self, workspace: &str) -> Result<DeletedWorkspace, StoreError> {
        if self.workspace_sync(workspace)?.is_none() {
            return Err(StoreError::NoSuchWorkspace(workspace.into()));
        }
        let conn = self.maintenance_connection()?;
        let mut events = self.prune_workspace(
            &conn,
            workspace,
            (i64::MAX, i64::MAX),
            retention::DEFAULT_CHUNK,
        )?;
        let path = &self.inner.path;
        self.check_files()?;
        let (found, late, sensors) = immediate(&conn, |tx| {
            let late = tx.execute(
                "DELETE FROM events WHERE sensor IN (SELECT id FROM sensors WHERE workspace = ?1)",
                [workspace],
            )?;
            // The batches their texts lay in (`blobs.rs`), before the sensors they refer to.
            tx.execute(
                "DELETE FROM event_blobs WHERE sensor IN (SELECT id FROM sensors WHERE workspace = ?1)",
                [workspace],
            )?;
            tx.execute("DELETE FROM kind_counts WHERE workspace = ?1", [workspace])?;
            // Its fleet view (docs/fleet.md).
            for sql in [
                "DELETE FROM fleet_outages WHERE sensor_id IN (SELECT sensor_id FROM sensors WHERE workspace = ?1)",
                "DELETE FROM fleet_sensors WHERE workspace = ?1",
                "DELETE FROM fleet_issues WHERE workspace = ?1",
                // Its central policy's versions (issue #26).
                "DELETE FROM policies WHERE workspace = ?1",
            ] {
                tx.execute(sql, [workspace])?;
            }
            let sensors = tx.execute("DELETE FROM sensors WHERE workspace = ?1", [workspace])?;
            let found = tx.execute("DELETE FROM workspaces WHERE name = ?1", [workspace])?;
            if found > 0 {
                // Every replica stops serving its hosts (the registry follows the log).
                record_change(tx, workspace, &ChangeKind::Deleted)?;
            }
            Ok((found, late, sensors))
        })
        .map_err(sql_err(path))?;
        if found == 0 {
            return Err(StoreError::NoSuchWorkspace(workspace.into()));
        }
        events += late as u64;
        Ok(DeletedWorkspace {
            sensors: sensors as u64,
            events,
        })
    }
}

impl Store for SqliteStore {
    async fn import_sensor(&self, sensor: SensorRecord) -> Result<bool, StoreError> {
        let this = self.clone();
        blocking(move || this.import_sensor_sync(&sensor)).await
    }

    async fn import_events(
        &self,
        sensor_id: &str,
        events: Vec<StoredEvent>,
    ) -> Result<IngestOutcome, StoreError> {
        let (this, id) = (self.clone(), sensor_id.to_owned());
        blocking(move || {
            this.import_events_sync(&id, &events)?
                .ok_or(StoreError::NoSuchSensor(id))
        })
        .await
    }

    async fn sensor_counts(&self, workspace: &str) -> Result<BTreeMap<String, u64>, StoreError> {
        let (this, name) = (self.clone(), workspace.to_owned());
        blocking(move || this.sensor_counts_sync(&name)).await
    }

    async fn rotate_master_key(&self, new: MasterKey) -> Result<u64, StoreError> {
        let this = self.clone();
        blocking(move || this.rotate_sync(new)).await
    }

    async fn create_workspace(&self, workspace: WorkspaceRecord) -> Result<(), StoreError> {
        let this = self.clone();
        blocking(move || this.create_workspace_sync(&workspace)).await
    }

    async fn stats(&self, workspace: &str) -> Result<WorkspaceStats, StoreError> {
        let (this, name) = (self.clone(), workspace.to_owned());
        blocking(move || this.stats_sync(&name)).await
    }

    async fn export(
        &self,
        workspace: &str,
        filter: ExportFilter,
        out: tokio::sync::mpsc::Sender<StoredEvent>,
    ) -> Result<u64, StoreError> {
        let (this, name) = (self.clone(), workspace.to_owned());
        blocking(move || this.export_sync(&name, &filter, &out)).await
    }

    async fn check(&self) -> Result<(), StoreError> {
        let this = self.clone();
        blocking(move || this.quick_check()).await
    }

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
        key_sha256: &str,
    ) -> Result<(), StoreError> {
        let this = self.clone();
        let (w, s, c, k) = (
            workspace.to_owned(),
            sensor_id.to_owned(),
            cert_sha256.to_owned(),
            key_sha256.to_owned(),
        );
        blocking(move || this.renew_sensor_sync(&w, &s, &c, &k)).await
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.health_async().await
    }

    async fn change_version(&self) -> Result<u64, StoreError> {
        let this = self.clone();
        blocking(move || this.change_version_sync()).await
    }

    async fn changes_since(&self, after: u64, limit: usize) -> Result<Vec<Change>, StoreError> {
        let this = self.clone();
        blocking(move || this.changes_since_sync(after, limit)).await
    }

    async fn ingest(
        &self,
        sensor_id: &str,
        events: Vec<NewEvent>,
    ) -> Result<IngestOutcome, StoreError> {
        self.ingest_async(sensor_id, EventBatch::from_events(&events))
            .await
    }

    async fn record_report(
        &self,
        workspace: &str,
        report: FleetReport,
    ) -> Result<bool, StoreError> {
        let (this, ws) = (self.clone(), workspace.to_owned());
        blocking(move || this.record_report_sync(&ws, &report)).await
    }

    async fn evaluate_fleet(
        &self,
        now_ms: i64,
        policy: &FleetPolicy,
        only: Option<(&str, &str)>,
    ) -> Result<FleetEvaluation, StoreError> {
        let (this, policy) = (self.clone(), policy.clone());
        let only = only.map(|(w, s)| (w.to_owned(), s.to_owned()));
        blocking(move || {
            this.evaluate_fleet_sync(
                now_ms,
                &policy,
                only.as_ref().map(|(w, s)| (w.as_str(), s.as_str())),
            )
        })
        .await
    }

    async fn fleet_sensors(&self, workspace: &str) -> Result<Vec<FleetSensor>, StoreError> {
        let (this, ws) = (self.clone(), workspace.to_owned());
        blocking(move || this.fleet_sensors_sync(&ws)).await
    }

    async fn fleet_issues(&self, workspace: &str) -> Result<Vec<Issue>, StoreError> {
        let (this, ws) = (self.clone(), workspace.to_owned());
        blocking(move || this.fleet_issues_sync(&ws)).await
    }

    async fn suppress_issue(
        &self,
        workspace: &str,
        issue_id: &str,
        suppression: Option<(i64, String, String)>,
    ) -> Result<Option<Issue>, StoreError> {
        let (this, ws, id) = (self.clone(), workspace.to_owned(), issue_id.to_owned());
        blocking(move || this.suppress_issue_sync(&ws, &id, suppression)).await
    }

    async fn workspace_settings(&self, workspace: &str) -> Result<WorkspaceSettings, StoreError> {
        let (this, name) = (self.clone(), workspace.to_owned());
        blocking(move || this.workspace_settings_sync(&name)).await
    }

    async fn set_workspace_settings(
        &self,
        workspace: &str,
        change: SettingsChange,
    ) -> Result<WorkspaceSettings, StoreError> {
        let (this, name) = (self.clone(), workspace.to_owned());
        blocking(move || this.set_workspace_settings_sync(&name, change)).await
    }

    async fn delete_workspace(&self, workspace: &str) -> Result<DeletedWorkspace, StoreError> {
        let (this, name) = (self.clone(), workspace.to_owned());
        blocking(move || this.delete_workspace_sync(&name)).await
    }

    async fn revoke_sensor(
        &self,
        workspace: &str,
        sensor_id: &str,
        reason: &str,
        decommission: bool,
    ) -> Result<Revocation, StoreError> {
        let this = self.clone();
        let (w, s, r) = (
            workspace.to_owned(),
            sensor_id.to_owned(),
            reason.to_owned(),
        );
        blocking(move || this.revoke_sensor_sync(&w, &s, &r, decommission)).await
    }

    async fn revocations(&self, workspace: &str) -> Result<Vec<Revocation>, StoreError> {
        let (this, w) = (self.clone(), workspace.to_owned());
        blocking(move || this.revocations_sync(&w)).await
    }

    async fn record_certificate(
        &self,
        sensor_id: &str,
        serial_hex: &str,
        cert_sha256: &str,
    ) -> Result<(), StoreError> {
        let this = self.clone();
        let (s, n, c) = (
            sensor_id.to_owned(),
            serial_hex.to_owned(),
            cert_sha256.to_owned(),
        );
        blocking(move || this.record_certificate_sync(&s, &n, &c)).await
    }

    async fn revoked_serials(&self, workspace: &str) -> Result<Vec<RevokedSerial>, StoreError> {
        let (this, w) = (self.clone(), workspace.to_owned());
        blocking(move || this.revoked_serials_sync(&w)).await
    }

    async fn set_access_key(
        &self,
        workspace: &str,
        access_key: &str,
        access_key_sha256: &str,
    ) -> Result<(), StoreError> {
        let this = self.clone();
        let (w, k, h) = (
            workspace.to_owned(),
            access_key.to_owned(),
            access_key_sha256.to_owned(),
        );
        blocking(move || this.set_access_key_sync(&w, &k, &h)).await
    }

    async fn record_audit(&self, entry: AuditEntry) -> Result<(), StoreError> {
        let this = self.clone();
        blocking(move || this.record_audit_sync(&entry)).await
    }

    async fn audit(&self, workspace: &str, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let (this, w) = (self.clone(), workspace.to_owned());
        blocking(move || this.audit_sync(&w, limit)).await
    }

    async fn prune(&self, options: PruneOptions) -> Result<PruneReport, StoreError> {
        let this = self.clone();
        blocking(move || this.prune_sync(options)).await
    }

    async fn watermarks(&self, workspace: &str) -> Result<BTreeMap<String, u64>, StoreError> {
        let (this, name) = (self.clone(), workspace.to_owned());
        blocking(move || {
            this.read(|c| {
                let mut st = c.prepare(
                    "SELECT sensor_id, pruned_through FROM sensors WHERE workspace = ?1 AND pruned_through IS NOT NULL",
                )?;
                let rows = st.query_map([&name], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
                })?;
                rows.collect()
            })
        })
        .await
    }

    async fn raise_watermark(&self, sensor_id: &str, through: u64) -> Result<(), StoreError> {
        let (this, id) = (self.clone(), sensor_id.to_owned());
        blocking(move || {
            let n = this.write(|c| {
                c.execute(
                    "UPDATE sensors SET pruned_through = MAX(COALESCE(pruned_through, -1), ?2) WHERE sensor_id = ?1",
                    params![id, through as i64],
                )
            })?;
            if n == 0 {
                return Err(StoreError::NoSuchSensor(id));
            }
            Ok(())
        })
        .await
    }

    async fn create_token(
        &self,
        token: AdminToken,
        secret_sha256: String,
    ) -> Result<(), StoreError> {
        let this = self.clone();
        blocking(move || this.create_token_sync(&token, &secret_sha256)).await
    }

    async fn tokens(&self, workspace: &str) -> Result<Vec<AdminToken>, StoreError> {
        let (this, ws) = (self.clone(), workspace.to_owned());
        blocking(move || this.tokens_sync(&ws)).await
    }

    async fn revoke_token(
        &self,
        workspace: &str,
        name_or_id: &str,
    ) -> Result<Option<AdminToken>, StoreError> {
        let (this, ws, key) = (self.clone(), workspace.to_owned(), name_or_id.to_owned());
        blocking(move || this.revoke_token_sync(&ws, &key)).await
    }

    async fn token_by_hash(&self, secret_sha256: &str) -> Result<Option<AdminToken>, StoreError> {
        let (this, h) = (self.clone(), secret_sha256.to_owned());
        blocking(move || this.token_by_hash_sync(&h)).await
    }

    async fn set_webhooks(&self, workspace: &str, hooks: Vec<Webhook>) -> Result<(), StoreError> {
        let (this, ws) = (self.clone(), workspace.to_owned());
        blocking(move || this.set_webhooks_sync(&ws, &hooks)).await
    }

    async fn webhooks(&self, workspace: &str) -> Result<Vec<Webhook>, StoreError> {
        let (this, ws) = (self.clone(), workspace.to_owned());
        blocking(move || this.webhooks_sync(&ws)).await
    }

    async fn claim_deliveries(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<(Delivery, Option<String>)>, StoreError> {
        let this = self.clone();
        blocking(move || this.claim_deliveries_sync(now_ms, lease_ms, limit)).await
    }

    async fn finish_delivery(
        &self,
        id: i64,
        outcome: uplink_store::webhooks::Outcome,
    ) -> Result<(), StoreError> {
        let this = self.clone();
        blocking(move || this.finish_delivery_sync(id, &outcome)).await
    }

    async fn deliveries(&self, workspace: &str) -> Result<Vec<Delivery>, StoreError> {
        let (this, ws) = (self.clone(), workspace.to_owned());
        blocking(move || this.deliveries_sync(&ws)).await
    }

    // Sensor lifecycle, part 2 (issue #24, `lifecycle.rs`): settings and rate-limit windows.
    async fn lifecycle_settings(&self, workspace: &str) -> Result<LifecycleSettings, StoreError> {
        let (this, ws) = (self.clone(), workspace.to_owned());
        blocking(move || this.lifecycle_settings_sync(&ws)).await
    }

    async fn set_lifecycle_settings(
        &self,
        workspace: &str,
        change: LifecycleChange,
    ) -> Result<LifecycleSettings, StoreError> {
        let (this, ws) = (self.clone(), workspace.to_owned());
        blocking(move || this.set_lifecycle_settings_sync(&ws, change)).await
    }

    async fn rate_hit(
        &self,
        scope: &str,
        now_ms: i64,
        window_ms: i64,
        limit: u64,
    ) -> Result<RateHit, StoreError> {
        let (this, scope) = (self.clone(), scope.to_owned());
        blocking(move || this.rate_hit_sync(&scope, now_ms, window_ms, limit)).await
    }

    async fn rate_count(
        &self,
        scope: &str,
        now_ms: i64,
        window_ms: i64,
    ) -> Result<u64, StoreError> {
        let (this, scope) = (self.clone(), scope.to_owned());
        blocking(move || this.rate_count_sync(&scope, now_ms, window_ms)).await
    }

    async fn mark_uninstalled(
        &self,
        workspace: &str,
        sensor_id: &str,
    ) -> Result<Revocation, StoreError> {
        let (this, ws, id) = (self.clone(), workspace.to_owned(), sensor_id.to_owned());
        blocking(move || this.mark_uninstalled_sync(&ws, &id)).await
    }

    // The web console (issue #25, `console.rs`).
    async fn create_console_user(&self, user: ConsoleUser) -> Result<bool, StoreError> {
        let this = self.clone();
        blocking(move || this.create_console_user_sync(&user)).await
    }

    async fn console_users(&self, workspace: &str) -> Result<Vec<ConsoleUser>, StoreError> {
        let (this, ws) = (self.clone(), workspace.to_owned());
        blocking(move || this.console_users_sync(&ws)).await
    }

    async fn console_user(
        &self,
        workspace: &str,
        name: &str,
    ) -> Result<Option<ConsoleUser>, StoreError> {
        let (this, ws, n) = (self.clone(), workspace.to_owned(), name.to_owned());
        blocking(move || this.console_user_sync(&ws, &n)).await
    }

    async fn remove_console_user(&self, workspace: &str, name: &str) -> Result<bool, StoreError> {
        let (this, ws, n) = (self.clone(), workspace.to_owned(), name.to_owned());
        blocking(move || this.remove_console_user_sync(&ws, &n)).await
    }

    async fn put_console_session(&self, session: ConsoleSession) -> Result<(), StoreError> {
        let this = self.clone();
        blocking(move || this.put_console_session_sync(&session)).await
    }

    async fn console_session(&self, id_sha256: &str) -> Result<Option<ConsoleSession>, StoreError> {
        let (this, id) = (self.clone(), id_sha256.to_owned());
        blocking(move || this.console_session_sync(&id)).await
    }

    async fn delete_console_session(&self, id_sha256: &str) -> Result<(), StoreError> {
        let (this, id) = (self.clone(), id_sha256.to_owned());
        blocking(move || this.delete_console_session_sync(&id)).await
    }

    async fn login_failures(
        &self,
        workspace: &str,
        name: &str,
    ) -> Result<LoginFailures, StoreError> {
        let (this, ws, n) = (self.clone(), workspace.to_owned(), name.to_owned());
        blocking(move || this.login_failures_sync(&ws, &n)).await
    }

    async fn record_login(
        &self,
        workspace: &str,
        name: &str,
        failed: bool,
        now_ms: i64,
    ) -> Result<LoginFailures, StoreError> {
        let (this, ws, n) = (self.clone(), workspace.to_owned(), name.to_owned());
        blocking(move || this.record_login_sync(&ws, &n, failed, now_ms)).await
    }

    // Central policy (issue #26, `policy.rs`).

    async fn set_policy(
        &self,
        workspace: &str,
        policy: uplink_policy::Policy,
    ) -> Result<uplink_policy::Policy, StoreError> {
        let (this, ws) = (self.clone(), workspace.to_owned());
        blocking(move || this.set_policy_sync(&ws, policy)).await
    }

    async fn clear_policy(&self, workspace: &str) -> Result<u64, StoreError> {
        let (this, ws) = (self.clone(), workspace.to_owned());
        blocking(move || this.clear_policy_sync(&ws)).await
    }

    async fn current_policy(
        &self,
        workspace: &str,
    ) -> Result<(u64, Option<uplink_policy::Policy>), StoreError> {
        let (this, ws) = (self.clone(), workspace.to_owned());
        blocking(move || this.current_policy_sync(&ws)).await
    }

    async fn policy_versions(&self, workspace: &str) -> Result<Vec<PolicyVersion>, StoreError> {
        let (this, ws) = (self.clone(), workspace.to_owned());
        blocking(move || this.policy_versions_sync(&ws)).await
    }

    // CA rotation (issue #24, `lifecycle.rs`).

    async fn rotate_ca(
        &self,
        workspace: &str,
        cert_pem: &str,
        key_pem: &str,
        sha256: &str,
    ) -> Result<(), StoreError> {
        let this = self.clone();
        let (w, c, k, h) = (
            workspace.to_owned(),
            cert_pem.to_owned(),
            key_pem.to_owned(),
            sha256.to_owned(),
        );
        blocking(move || this.rotate_ca_sync(&w, &c, &k, &h)).await
    }

    async fn previous_cas(&self, workspace: &str) -> Result<Vec<PreviousCa>, StoreError> {
        let (this, w) = (self.clone(), workspace.to_owned());
        blocking(move || this.previous_cas_sync(&w)).await
    }

    async fn record_issuer(&self, cert_sha256: &str, ca_sha256: &str) -> Result<(), StoreError> {
        let (this, c, a) = (self.clone(), cert_sha256.to_owned(), ca_sha256.to_owned());
        blocking(move || {
            this.write(|conn| {
                conn.execute(
                    "INSERT INTO cert_issuers (cert_sha256, ca_sha256) VALUES (?1, ?2)
                     ON CONFLICT (cert_sha256) DO UPDATE SET ca_sha256 = excluded.ca_sha256",
                    rusqlite::params![c, a],
                )
            })
            .map(|_| ())
        })
        .await
    }

    async fn sensors_not_on_ca(
        &self,
        workspace: &str,
        ca_sha256: &str,
    ) -> Result<Vec<String>, StoreError> {
        let (this, w, a) = (self.clone(), workspace.to_owned(), ca_sha256.to_owned());
        blocking(move || {
            this.read(|c| {
                let mut st = c.prepare(
                    "SELECT s.sensor_id FROM sensors s
                     WHERE s.workspace = ?1
                       AND NOT EXISTS (SELECT 1 FROM revocations r WHERE r.sensor_id = s.sensor_id)
                       AND NOT EXISTS (SELECT 1 FROM cert_issuers i WHERE i.cert_sha256 = s.cert_sha256 AND i.ca_sha256 = ?2)
                     ORDER BY s.sensor_id",
                )?;
                let rows = st.query_map(rusqlite::params![w, a], |r| r.get(0))?;
                rows.collect()
            })
        })
        .await
    }

    async fn retire_previous_cas(&self, workspace: &str) -> Result<Vec<String>, StoreError> {
        let (this, w) = (self.clone(), workspace.to_owned());
        blocking(move || this.retire_previous_cas_sync(&w)).await
    }

    // Report history for the console's charts (issue #25, `history.rs`).

    async fn record_report_point(
        &self,
        workspace: &str,
        point: ReportPoint,
        prune_before_ms: i64,
    ) -> Result<(), StoreError> {
        let (this, ws) = (self.clone(), workspace.to_owned());
        blocking(move || this.record_report_point_sync(&ws, &point, prune_before_ms)).await
    }

    async fn report_points(
        &self,
        workspace: &str,
        sensor_id: &str,
        since_ms: i64,
    ) -> Result<Vec<ReportPoint>, StoreError> {
        let (this, ws, id) = (self.clone(), workspace.to_owned(), sensor_id.to_owned());
        blocking(move || this.report_points_sync(&ws, &id, since_ms)).await
    }

    // Retention holes (issue #28, `holes.rs`).

    async fn pruned_holes(
        &self,
        workspace: &str,
    ) -> Result<BTreeMap<String, Vec<(u64, u64)>>, StoreError> {
        let (this, ws) = (self.clone(), workspace.to_owned());
        blocking(move || this.pruned_holes_sync(&ws)).await
    }

    async fn add_pruned_holes(
        &self,
        sensor_id: &str,
        holes: Vec<(u64, u64)>,
    ) -> Result<(), StoreError> {
        let (this, id) = (self.clone(), sensor_id.to_owned());
        blocking(move || this.add_pruned_holes_sync(&id, &holes)).await
    }

    // backup fleet state (`imports.rs`).

    async fn import_revocation(&self, revocation: Revocation) -> Result<Revocation, StoreError> {
        let this = self.clone();
        blocking(move || this.import_revocation_sync(&revocation)).await
    }

    async fn import_watermark(
        &self,
        sensor_id: &str,
        through: Option<u64>,
        holes: Vec<(u64, u64)>,
    ) -> Result<(), StoreError> {
        let (this, id) = (self.clone(), sensor_id.to_owned());
        blocking(move || this.import_watermark_sync(&id, through, &holes)).await
    }

    async fn issued_certificates(
        &self,
        workspace: &str,
    ) -> Result<Vec<uplink_store::backup::IssuedCertificate>, StoreError> {
        let (this, ws) = (self.clone(), workspace.to_owned());
        blocking(move || this.issued_certificates_sync(&ws)).await
    }

    async fn import_policy(
        &self,
        workspace: &str,
        version: u64,
        set_at: i64,
        policy: Option<uplink_policy::Policy>,
    ) -> Result<bool, StoreError> {
        let (this, ws) = (self.clone(), workspace.to_owned());
        blocking(move || this.import_policy_sync(&ws, version, set_at, policy)).await
    }

    async fn import_previous_ca(
        &self,
        workspace: &str,
        ca: PreviousCa,
    ) -> Result<bool, StoreError> {
        let (this, ws) = (self.clone(), workspace.to_owned());
        blocking(move || this.import_previous_ca_sync(&ws, &ca)).await
    }

    async fn sensor_cert_issuers(
        &self,
        workspace: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let (this, ws) = (self.clone(), workspace.to_owned());
        blocking(move || this.sensor_cert_issuers_sync(&ws)).await
    }

    // Retired CAs (fix3, `imports.rs`).
    async fn retired_cas(&self, workspace: &str) -> Result<Vec<RetiredCa>, StoreError> {
        let (this, ws) = (self.clone(), workspace.to_owned());
        blocking(move || this.retired_cas_sync(&ws)).await
    }
    async fn import_retired_ca(&self, workspace: &str, ca: RetiredCa) -> Result<bool, StoreError> {
        let (this, ws) = (self.clone(), workspace.to_owned());
        blocking(move || this.import_retired_ca_sync(&ws, &ca)).await
    }

    // A compressed batch is stored as sent (`blobs.rs`).
    fn keeps_batches_as_sent(&self) -> bool {
        true
    }

    // Ingest of a batch in one buffer (issue #28): the writer binds from it as it is.
    async fn ingest_batch(
        &self,
        sensor_id: &str,
        batch: EventBatch,
    ) -> Result<IngestOutcome, StoreError> {
        self.ingest_async(sensor_id, batch).await
    }
}

/// Runs `f` in a write transaction that takes the write lock at its start (`BEGIN IMMEDIATE`: a
/// deferred one could fail to upgrade when the ingest writer commits in between), committed when
/// `f` succeeds, rolled back otherwise.
pub(crate) fn immediate<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    match f(conn).and_then(|v| conn.execute_batch("COMMIT").map(|()| v)) {
        Ok(v) => Ok(v),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
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
#[cfg(not(unix))]
fn restrict_dir(_: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_len_takes_the_longest_run_of_new_increasing_seqs_that_fits_a_size() {
        let up = |from: u64, n: u64| (from..from + n).collect::<Vec<_>>();
        let cases: Vec<(&str, Vec<u64>, i64, usize)> = vec![
            ("empty", vec![], -1, 0),
            ("a short tail goes row by row", up(0, 7), -1, 0),
            ("eight", up(0, 8), -1, 8),
            ("between sizes rounds down", up(0, 63), -1, 8),
            ("a full chunk", up(0, 64), -1, 64),
            ("longer is capped", up(0, 500), -1, 64),
            ("gaps are fine", (0..64).map(|i| i * 3).collect(), -1, 64),
            ("the first at the watermark", up(10, 64), 10, 0),
            ("the first above the watermark", up(11, 64), 10, 64),
            (
                "a seq repeated ends the run",
                [up(0, 10), vec![9], up(10, 60)].concat(),
                -1,
                8,
            ),
            (
                "past the column's range ends the run",
                [up(i64::MAX as u64 - 9, 10), vec![i64::MAX as u64 + 1]].concat(),
                -1,
                8,
            ),
            (
                "out of order ends the run",
                [up(5, 3), vec![0], up(8, 60)].concat(),
                -1,
                0,
            ),
            (
                "one at or below the watermark inside ends the run",
                [up(20, 9), vec![3], up(29, 60)].concat(),
                10,
                8,
            ),
        ];
        for (name, seqs, watermark, want) in cases {
            assert_eq!(chunk_len(seqs.into_iter(), watermark), want, "{name}");
        }
    }

    #[test]
    fn a_batch_is_all_new_only_with_strictly_increasing_seqs_above_the_watermark() {
        let cases: [(&str, &[u64], i64, bool); 8] = [
            ("empty", &[], -1, false),
            ("one", &[0], -1, true),
            ("a run", &[3, 4, 5, 9], 2, true),
            ("the first at the watermark", &[2, 3], 2, false),
            ("a repeat", &[3, 4, 4], -1, false),
            ("a step back", &[3, 5, 4], -1, false),
            (
                "past the column's range",
                &[1, i64::MAX as u64 + 1],
                -1,
                false,
            ),
            ("the column's last value", &[1, i64::MAX as u64], -1, true),
        ];
        for (name, seqs, watermark, want) in cases {
            assert_eq!(all_new(seqs.iter().copied(), watermark), want, "{name}");
        }
    }

    #[test]
    fn chunk_sql_binds_the_sensor_time_and_batch_once_and_four_values_per_row() {
        assert_eq!(
            insert_chunk_sql(2),
            "INSERT OR IGNORE INTO events (sensor, seq, kind, received_at, body, blob, span) VALUES (?1, ?4, ?5, ?2, ?6, ?3, ?7),(?1, ?8, ?9, ?2, ?10, ?3, ?11)"
        );
        let sql = insert_chunk_sql(INSERT_CHUNKS[0]);
        assert!(sql.ends_with(&format!("?{})", 3 + 4 * INSERT_CHUNKS[0])));
    }
}
