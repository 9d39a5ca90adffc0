//! Service storage: the [`Store`] trait and what crosses it.
//!
//! [`Store`] is everything the service and the admin commands need from storage; they never see
//! SQL. One crate per backend implements it: `uplink-store-sqlite` (embedded, one file under the
//! data directory; the default) and `uplink-store-postgres` (shared by replicas). Both run the
//! same conformance tests (`tests/conformance.rs` in this crate, once per backend). This crate
//! knows no backend: errors name the backend as data ([`Backend`]), never carry a driver's type.
//!
//! All durable state lives here — workspaces with their CAs and access-key hashes, sensors, events
//! — and nothing in a replica's memory is authoritative: a replica that misses a host or a sensor
//! asks the store again. That is what lets several replicas share one PostgreSQL later.
//!
//! Ingest is idempotent: each `(sensor, seq)` is stored at most once, and a batch is committed
//! whole or not at all before the caller is answered.

pub mod backup;
// One buffer per ingested batch (issue #28).
pub mod batch;
pub mod console;
pub mod fleet;
pub mod history;
pub mod lifecycle;
pub mod master;
pub mod policy;
pub mod retention;
pub mod syslog;
pub mod tokens;
mod url;
pub mod webhooks;

use std::collections::BTreeMap;
use std::future::Future;

pub use batch::{BatchEvent, EventBatch};
pub use console::{ConsoleSession, ConsoleUser, LoginFailures};
pub use fleet::{FleetEvaluation, FleetReport, FleetSensor};
pub use history::ReportPoint;
pub use lifecycle::{
    AuditEntry, Lifecycle, LifecycleChange, LifecycleSettings, RateHit, Revocation, RevokedSerial,
};
// CA rotation.
pub use lifecycle::PreviousCa;
pub use master::{MasterKey, MasterKeyFile};
pub use policy::PolicyVersion;
pub use retention::{
    DeletedWorkspace, PruneOptions, PruneReport, PrunedWorkspace, SettingsChange, WorkspaceSettings,
};
pub use tokens::{AdminToken, TokenRole, TokenSecret};
pub use uplink_fleet::{Issue, IssueState, Policy as FleetPolicy};
pub use url::DatabaseUrl;
pub use webhooks::{Delivery, Webhook};

/// A workspace as stored.
#[derive(Clone)]
pub struct WorkspaceRecord {
    pub name: String,
    pub domain: String,
    pub public_port: u16,
    pub ca_cert_pem: String,
    /// The CA's private key in PEM. Never printed: see the `Debug` impl.
    pub ca_key_pem: String,
    pub ca_sha256: String,
    /// SHA-256 (hex) of the access key: what enrollment compares with.
    pub access_key_sha256: String,
    /// The access key itself, to remake the enrollment bundle (`uplink workspace bundle`);
    /// sealed at rest like the CA key, never in `Debug`. `None` for workspaces created before
    /// uplink stored it.
    pub access_key: Option<String>,
    /// Unix milliseconds.
    pub created_at: i64,
}

impl std::fmt::Debug for WorkspaceRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkspaceRecord")
            .field("name", &self.name)
            .field("domain", &self.domain)
            .field("public_port", &self.public_port)
            .field("ca_sha256", &self.ca_sha256)
            .field("ca_key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// A sensor as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SensorRecord {
    pub sensor_id: String,
    pub workspace: String,
    pub name: String,
    /// SHA-256 (hex) of the client certificate's DER.
    pub cert_sha256: String,
    /// SHA-256 (hex) of the certificate's public key (SubjectPublicKeyInfo DER). Unique within a
    /// workspace; `None` for sensors enrolled before store format 2.
    pub key_sha256: Option<String>,
    /// Unix milliseconds.
    pub enrolled_at: i64,
    pub last_seen: Option<i64>,
}

/// One event to store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEvent {
    pub seq: u64,
    pub kind: String,
    /// The event line as received: a JSON object.
    pub body: String,
}

/// What an ingest stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IngestOutcome {
    pub accepted: u64,
    pub duplicates: u64,
}

/// One stored event, as exported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEvent {
    pub sensor_id: String,
    pub seq: u64,
    pub kind: String,
    /// Unix milliseconds.
    pub received_at: i64,
    pub body: String,
}

/// Counts for `uplink workspace stats`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkspaceStats {
    pub sensors: Vec<SensorRecord>,
    pub total: u64,
    pub by_kind: BTreeMap<String, u64>,
}

/// Which events to export.
#[derive(Clone, Debug, Default)]
pub struct ExportFilter {
    pub kind: Option<String>,
    pub sensor_id: Option<String>,
}

/// What changed about a workspace, as the change log records it ([`Store::changes_since`]).
/// Replicas read the log to drop or reload exactly the workspaces that changed. Recorded as a
/// short word in the store ([`ChangeKind::as_str`]), so a kind added by a newer build reads as
/// [`ChangeKind::Other`] in an older one, which reloads the workspace (always safe).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// The workspace was created.
    Created,
    /// Its settings changed.
    Settings,
    /// Its CA or access key was replaced.
    Rekeyed,
    /// The master key its secrets are sealed with was rotated (its CA and keys are unchanged).
    MasterKeyRotated,
    /// The workspace and its data were deleted.
    Deleted,
    /// A sensor of the workspace was revoked.
    Revoked,
    /// A policy of the workspace changed.
    Policy,
    /// A kind this build does not know (written by a newer one).
    Other(String),
}

impl ChangeKind {
    /// The word stored in the change log.
    pub fn as_str(&self) -> &str {
        match self {
            ChangeKind::Created => "created",
            ChangeKind::Settings => "settings",
            ChangeKind::Rekeyed => "rekeyed",
            ChangeKind::MasterKeyRotated => "master_key_rotated",
            ChangeKind::Deleted => "deleted",
            ChangeKind::Revoked => "revoked",
            ChangeKind::Policy => "policy",
            ChangeKind::Other(s) => s,
        }
    }

    /// The kind a stored word names.
    pub fn parse(s: &str) -> ChangeKind {
        match s {
            "created" => ChangeKind::Created,
            "settings" => ChangeKind::Settings,
            "rekeyed" => ChangeKind::Rekeyed,
            "master_key_rotated" => ChangeKind::MasterKeyRotated,
            "deleted" => ChangeKind::Deleted,
            "revoked" => ChangeKind::Revoked,
            "policy" => ChangeKind::Policy,
            other => ChangeKind::Other(other.to_owned()),
        }
    }
}

/// One entry of the change log: `version` grows with each entry, in commit order (a reader that
/// saw version `v` has seen every entry up to `v`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub version: u64,
    pub workspace: String,
    pub kind: ChangeKind,
}

/// Which backend a store (or an error) is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// What an administrator should do when a statement of this backend fails.
    fn advice(self) -> &'static str {
        match self {
            Backend::Sqlite => {
                "Check the data directory's disk space and permissions; a running service answers 503 and sensors retry"
            }
            Backend::Postgres => {
                "Check the PostgreSQL server's log and that the database user owns uplink's tables; a running service answers 503 and sensors retry"
            }
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        })
    }
}

/// Why a store operation failed. `at` and `path` name the store: a SQLite file, or a PostgreSQL
/// URL with its password redacted ([`DatabaseUrl::redacted`]).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("workspace {0:?} already exists: choose another name, or use the existing workspace")]
    WorkspaceExists(String),
    #[error("no workspace named {0:?}: list workspaces with `uplink workspace list`")]
    NoSuchWorkspace(String),
    #[error("no sensor with id {0:?} in this store")]
    NoSuchSensor(String),
    /// `admin token create` with a name the workspace's tokens already use.
    #[error("workspace {workspace:?} already has a token named {name:?}: choose another name, or revoke that one first (`uplink admin token revoke {workspace} {name}`)")]
    TokenExists { workspace: String, name: String },
    #[error(
        "the store {path} was written by a newer uplink (format {found}); this build reads format {supported}: upgrade uplink"
    )]
    NewerFormat {
        path: String,
        found: i64,
        supported: i64,
    },
    #[error("the data directory {path} is not an uplink store: {reason}")]
    NotAStore { path: String, reason: String },
    /// A statement failed in the backend (the backend's own words in `detail`).
    #[error("the {backend} store at {at} failed: {detail}. {}", backend.advice())]
    Backend {
        backend: Backend,
        at: String,
        detail: String,
    },
    /// The backend cannot be reached (PostgreSQL down, refusing, or its credentials refused).
    #[error("cannot reach the {backend} store at {at}: {detail}. Check that the server runs and that the URL's host, port, user, password and database are right; a running service answers 503 and sensors retry until it is back")]
    Unreachable {
        backend: Backend,
        at: String,
        detail: String,
    },
    /// The store's location or settings are not usable as given.
    #[error("{0}")]
    Settings(String),
    #[error("the data directory {path} does not exist: check the path, or create a workspace there first (`uplink workspace create NAME --data-dir {path}`)")]
    NoDataDir { path: String },
    #[error("cannot use the data directory {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("storage commit failed at {path}: {message} (nothing of the batch was stored; the sensor will retry)")]
    Commit { path: String, message: String },
    #[error("the store's writer has stopped; restart the service")]
    WriterGone,
    /// A file of the store was deleted, or replaced by another file, under the running process:
    /// committing would write into a file nobody will read again.
    #[error("the store file {path} was {what} while the service was running: nothing more is stored (sensors keep their events and retry). Put the files back or restore uplink.db and uplink.db-wal from a backup, then restart the service{rescue}")]
    FilesGone {
        path: String,
        what: String,
        /// Where the deleted files can still be copied from while this process runs.
        rescue: String,
    },
    /// The store is damaged (SQLite's integrity check failed, or pages could not be read; an
    /// export read fewer events than the store counts).
    #[error("the store {path} is damaged: {detail}. Restore it from a backup (keep this copy for analysis); the service will not run on it")]
    Damaged { path: String, detail: String },
    /// A store file others than its owner can read or write, and its mode could not be fixed.
    #[error("the store file {path} has mode {mode:o} and could not be restricted to 0600 ({reason}): it holds the workspace CA keys; make its owner the service's user and chmod 600 it")]
    Mode {
        path: String,
        mode: u32,
        reason: String,
    },
    /// The store can be read but not written (file, directory or file system read-only).
    #[error("the store {path} is read-only: make the directory and its uplink.db* files writable by the service's user (a running service retries by itself)")]
    ReadOnly { path: String },
    /// The store's secrets were sealed with a master key, and its file is gone.
    #[error("the master key file {path} does not exist, but this store's CA keys are sealed with a master key: restore the file from your backup and point --master-key-file (or UPLINK_MASTER_KEY_FILE) at it; without it the store cannot be used")]
    MasterKeyMissing { path: String },
    /// The master key given is not the one the store's secrets were sealed with.
    #[error("the master key {path} is not the one this store's CA keys were sealed with: give the right file with --master-key-file (or UPLINK_MASTER_KEY_FILE)")]
    MasterKeyWrong { path: String },
    /// The master key file cannot be read, written or understood.
    #[error("cannot use the master key file {path}: {detail}")]
    MasterKeyFile { path: String, detail: String },
    /// The sensor's certificate was revoked (`uplink fleet revoke`): it cannot renew or upload.
    #[error("sensor {sensor_id} of workspace {workspace:?} is revoked: enroll the machine again with the workspace's access key (it becomes a new sensor)")]
    Revoked {
        workspace: String,
        sensor_id: String,
    },
    /// The public key is already enrolled in the workspace (as `sensor_id`).
    #[error("this public key is already enrolled in workspace {workspace:?} (sensor {sensor_id})")]
    KeyAlreadyEnrolled {
        workspace: String,
        sensor_id: String,
    },
}

impl StoreError {
    /// Whether the error is the store being unusable right now (answer 503, retry later), as
    /// opposed to a refusal of this request.
    pub fn is_unavailable(&self) -> bool {
        !matches!(
            self,
            StoreError::WorkspaceExists(_)
                | StoreError::NoSuchWorkspace(_)
                | StoreError::NoSuchSensor(_)
                | StoreError::TokenExists { .. }
                | StoreError::KeyAlreadyEnrolled { .. }
                | StoreError::Revoked { .. }
        )
    }

    /// The diagnostic code a sensor sees for this error, when it has one: the store being
    /// unusable is `SERVICE_UNAVAILABLE` (whatever the backend), a replayed key
    /// `KEY_ALREADY_ENROLLED`. Refusals of an administrator's command have none.
    pub fn code(&self) -> Option<uplink_diag::Code> {
        match self {
            StoreError::KeyAlreadyEnrolled { .. } => Some(uplink_diag::Code::KEY_ALREADY_ENROLLED),
            StoreError::Revoked { .. } => Some(uplink_diag::Code::CERT_REVOKED),
            e if e.is_unavailable() => Some(uplink_diag::Code::SERVICE_UNAVAILABLE),
            _ => None,
        }
    }

    /// The error an export reports when whoever reads it stopped (a closed pipe).
    pub fn output_closed() -> StoreError {
        StoreError::Io {
            path: "<output>".into(),
            source: std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the reader of the export stopped",
            ),
        }
    }
}

/// What the service and the admin commands need from storage. Implementations must be safe to
/// share across tasks; every operation of `uplink` that touches stored state goes through here.
pub trait Store: Send + Sync + 'static {
    /// Every workspace (used to build the host table).
    fn workspaces(&self) -> impl Future<Output = Result<Vec<WorkspaceRecord>, StoreError>> + Send;
    /// One workspace by name.
    fn workspace(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<WorkspaceRecord>, StoreError>> + Send;
    /// Stores a new workspace ([`StoreError::WorkspaceExists`] when the name is taken, also when
    /// another process creates it at the same moment).
    fn create_workspace(
        &self,
        workspace: WorkspaceRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Registers an enrolled sensor ([`StoreError::KeyAlreadyEnrolled`] when another sensor of
    /// the workspace has the same `key_sha256`).
    fn add_sensor(
        &self,
        sensor: SensorRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Records a renewed certificate and its key for an enrolled sensor of `workspace`
    /// ([`StoreError::NoSuchSensor`] when it is not, or no longer, enrolled there;
    /// [`StoreError::KeyAlreadyEnrolled`] when the key is another sensor's).
    fn renew_sensor(
        &self,
        workspace: &str,
        sensor_id: &str,
        cert_sha256: &str,
        key_sha256: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Whether this store can ingest right now (reachable, writer healthy, files in place).
    /// `GET /healthz` reports it so a load balancer stops sending to a replica that cannot store.
    fn health(&self) -> impl Future<Output = Result<(), StoreError>> + Send {
        std::future::ready(Ok(()))
    }
    /// Verifies the store's integrity (the service runs it once at start and refuses a damaged
    /// store). May cost time proportional to the store's size.
    fn check(&self) -> impl Future<Output = Result<(), StoreError>> + Send {
        std::future::ready(Ok(()))
    }
    /// Writes bookkeeping the store coalesces in memory (sensors' `last_seen`) now. Called at
    /// shutdown; a store writes it by itself every few seconds otherwise.
    fn flush(&self) -> impl Future<Output = Result<(), StoreError>> + Send {
        std::future::ready(Ok(()))
    }
    /// Re-seals every secret (CA keys, access keys) under `new` and records `new` as the store's
    /// key, in one transaction: an interrupted rotation leaves the store whole under its old key.
    /// This store uses `new` from then on; other processes still holding the old key must be
    /// restarted with the new one. Returns how many secrets were re-sealed.
    fn rotate_master_key(
        &self,
        new: MasterKey,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// Copies a sensor as stored elsewhere (`store migrate`): inserted when its id is new,
    /// `Ok(false)` when that sensor is already here in the same workspace (a re-run).
    fn import_sensor(
        &self,
        sensor: SensorRecord,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Stores events as stored elsewhere (`store migrate`), their `received_at` kept: all or
    /// nothing, each `(sensor, seq)` at most once, counted like ingested ones.
    fn import_events(
        &self,
        sensor_id: &str,
        events: Vec<StoredEvent>,
    ) -> impl Future<Output = Result<IngestOutcome, StoreError>> + Send;
    /// The events stored for each sensor of a workspace, counted row by row (to verify a copy;
    /// costs a scan of the workspace's events).
    fn sensor_counts(
        &self,
        workspace: &str,
    ) -> impl Future<Output = Result<BTreeMap<String, u64>, StoreError>> + Send;
    // --- The change log (replicas' cache invalidation). Every workspace mutation appends one
    // entry per workspace it changes, in the mutation's own transaction, after taking the
    // backend's change-log lock so versions become visible in order (see each backend's
    // `record_change`).

    /// The version of the newest entry of the change log (0 when it is empty).
    fn change_version(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// The entries after version `after`, oldest first, at most `limit` of them.
    fn changes_since(
        &self,
        after: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Change>, StoreError>> + Send;
    /// Stores a batch for a sensor, all or nothing, durably, each `(sensor, seq)` at most once.
    fn ingest(
        &self,
        sensor_id: &str,
        events: Vec<NewEvent>,
    ) -> impl Future<Output = Result<IngestOutcome, StoreError>> + Send;
    /// Counts for one workspace ([`StoreError::NoSuchWorkspace`]), at a cost that does not grow
    /// with the number of events; readable while the service writes.
    fn stats(
        &self,
        workspace: &str,
    ) -> impl Future<Output = Result<WorkspaceStats, StoreError>> + Send;
    /// Sends a workspace's events to `out`, ordered by sensor id then sequence number, from one
    /// snapshot, and returns how many were sent. Unless filtered by sensor, the number read is
    /// compared with the store's counters of that snapshot: events lost to damage fail the
    /// export ([`StoreError::Damaged`]) after sending what could be read. When `out` is closed
    /// the export stops with [`StoreError::output_closed`]. See [`export_each`].
    fn export(
        &self,
        workspace: &str,
        filter: ExportFilter,
        out: tokio::sync::mpsc::Sender<StoredEvent>,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    // Fleet health (issue #22, `fleet.rs`, docs/fleet.md).

    /// Stores a sensor's report: it becomes the sensor's last report unless a newer one (by the
    /// sensor's clock) is stored; its outage intervals are merged into the stored log either
    /// way. Returns whether it became the last report ([`StoreError::NoSuchSensor`] when the
    /// sensor is not enrolled in `workspace`).
    fn record_report(
        &self,
        workspace: &str,
        report: FleetReport,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Derives every sensor's state and health and opens/closes their issues (`fleet::plan`),
    /// in one transaction. `only`: one sensor (`(workspace, sensor_id)`, after its report),
    /// waiting for a running evaluation; otherwise all, skipped (`ran: false`) while another
    /// process evaluates. Each workspace's `disconnected_after_secs` setting replaces the
    /// policy's.
    fn evaluate_fleet(
        &self,
        now_ms: i64,
        policy: &FleetPolicy,
        only: Option<(&str, &str)>,
    ) -> impl Future<Output = Result<FleetEvaluation, StoreError>> + Send;
    /// Every sensor of a workspace with its fleet view ([`StoreError::NoSuchWorkspace`]).
    fn fleet_sensors(
        &self,
        workspace: &str,
    ) -> impl Future<Output = Result<Vec<FleetSensor>, StoreError>> + Send;
    /// Every issue of a workspace, open, suppressed and closed, newest first.
    fn fleet_issues(
        &self,
        workspace: &str,
    ) -> impl Future<Output = Result<Vec<Issue>, StoreError>> + Send;
    /// Suppresses an issue until `until_ms` (why, who), or with `None` ends its suppression.
    /// Returns the issue as stored, `None` when the workspace has no such issue.
    fn suppress_issue(
        &self,
        workspace: &str,
        issue_id: &str,
        suppression: Option<(i64, String, String)>,
    ) -> impl Future<Output = Result<Option<Issue>, StoreError>> + Send;
    // Workspace settings, deletion and retention (see `retention.rs` and docs/storage.md).

    /// A workspace's settings ([`StoreError::NoSuchWorkspace`]).
    fn workspace_settings(
        &self,
        workspace: &str,
    ) -> impl Future<Output = Result<WorkspaceSettings, StoreError>> + Send;
    /// Changes some of a workspace's settings (validated first: [`SettingsChange::validate`])
    /// and returns them all as stored.
    fn set_workspace_settings(
        &self,
        workspace: &str,
        change: SettingsChange,
    ) -> impl Future<Output = Result<WorkspaceSettings, StoreError>> + Send;
    /// Removes a workspace and everything of it: sensors, events, counters, settings
    /// ([`StoreError::NoSuchWorkspace`]). A process that cached it serves it until it asks the
    /// store again.
    fn delete_workspace(
        &self,
        workspace: &str,
    ) -> impl Future<Output = Result<DeletedWorkspace, StoreError>> + Send;
    /// Removes the events older than each workspace's retention, at most `chunk` per
    /// transaction, and raises each sensor's watermark so that a retried copy of a removed event
    /// is a duplicate. With PostgreSQL, one process at a time (an advisory lock; the others
    /// return at once with [`PruneReport::skipped`]).
    fn prune(
        &self,
        options: PruneOptions,
    ) -> impl Future<Output = Result<PruneReport, StoreError>> + Send;
    /// Each sensor's retention watermark in a workspace (the highest seq retention removed;
    /// sensors never pruned are absent), for copies (`store backup`, `store migrate`).
    fn watermarks(
        &self,
        workspace: &str,
    ) -> impl Future<Output = Result<BTreeMap<String, u64>, StoreError>> + Send;
    /// Raises a sensor's watermark to at least `through` (a copy, once the sensor's events are
    /// in: events below it that were kept stay) ([`StoreError::NoSuchSensor`]).
    fn raise_watermark(
        &self,
        sensor_id: &str,
        through: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    // Sensor lifecycle (issue #24, `lifecycle.rs`, docs/lifecycle.md).

    /// Revokes a sensor of `workspace` (and with `decommission` marks it decommissioned), in one
    /// transaction that appends [`ChangeKind::Revoked`] to the change log. Revoking again keeps
    /// the first time and reason, and can only add decommissioning. Returns the revocation as
    /// stored ([`StoreError::NoSuchSensor`] when the sensor is not enrolled in `workspace`).
    fn revoke_sensor(
        &self,
        workspace: &str,
        sensor_id: &str,
        reason: &str,
        decommission: bool,
    ) -> impl Future<Output = Result<Revocation, StoreError>> + Send;
    /// Every revoked sensor of a workspace, oldest first (empty for an unknown workspace).
    fn revocations(
        &self,
        workspace: &str,
    ) -> impl Future<Output = Result<Vec<Revocation>, StoreError>> + Send;
    /// Records a certificate issued to a sensor (its serial in lowercase hex), so that a CRL
    /// can list every certificate of a revoked sensor ([`StoreError::NoSuchSensor`] when the
    /// sensor is not enrolled). Recording the same serial again changes nothing.
    fn record_certificate(
        &self,
        sensor_id: &str,
        serial_hex: &str,
        cert_sha256: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The serials of every recorded certificate of the workspace's revoked sensors, with the
    /// time of the revocation, ordered by serial (what the workspace's CRL lists).
    fn revoked_serials(
        &self,
        workspace: &str,
    ) -> impl Future<Output = Result<Vec<RevokedSerial>, StoreError>> + Send;
    /// Replaces a workspace's access key (sealed like at creation; `access_key_sha256`, its SHA-256
    /// in lowercase hex, is what enrollment compares with)
    /// and appends [`ChangeKind::Rekeyed`] to the change log, in one transaction: every replica
    /// refuses the old key for new enrollments from its next poll. Enrolled sensors are not
    /// affected ([`StoreError::NoSuchWorkspace`]).
    fn set_access_key(
        &self,
        workspace: &str,
        access_key: &str,
        access_key_sha256: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Appends an entry to a workspace's audit trail (its `detail` bounded by
    /// [`lifecycle::audit_detail`]).
    fn record_audit(
        &self,
        entry: AuditEntry,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// A workspace's audit trail, oldest first: the last `limit` entries.
    fn audit(
        &self,
        workspace: &str,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<AuditEntry>, StoreError>> + Send;

    // Admin API tokens (issue #23, `tokens.rs`, docs/admin-api.md). Only their SHA-256 is
    // stored; a workspace's deletion removes its tokens.

    /// Stores a new token with the SHA-256 of its secret ([`StoreError::NoSuchWorkspace`],
    /// [`StoreError::TokenExists`] when the workspace has a token of that name).
    fn create_token(
        &self,
        token: AdminToken,
        secret_sha256: String,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// A workspace's tokens, oldest first ([`StoreError::NoSuchWorkspace`]).
    fn tokens(
        &self,
        workspace: &str,
    ) -> impl Future<Output = Result<Vec<AdminToken>, StoreError>> + Send;
    /// Deletes the workspace's token with this name or id; returns it, `None` when there is none.
    fn revoke_token(
        &self,
        workspace: &str,
        name_or_id: &str,
    ) -> impl Future<Output = Result<Option<AdminToken>, StoreError>> + Send;
    /// The token whose secret has this SHA-256, of whatever workspace (the caller compares).
    fn token_by_hash(
        &self,
        secret_sha256: &str,
    ) -> impl Future<Output = Result<Option<AdminToken>, StoreError>> + Send;

    // Webhooks (issue #23, `webhooks.rs`): `evaluate_fleet` records a delivery per webhook for
    // each issue opened, closed or reopened, in its transaction.

    /// Replaces a workspace's webhooks ([`StoreError::NoSuchWorkspace`]).
    fn set_webhooks(
        &self,
        workspace: &str,
        hooks: Vec<Webhook>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// A workspace's webhooks.
    fn webhooks(
        &self,
        workspace: &str,
    ) -> impl Future<Output = Result<Vec<Webhook>, StoreError>> + Send;
    /// Claims up to `limit` pending deliveries due at `now_ms` (of any workspace) for `lease_ms`
    /// (counting an attempt): no other claimer gets them until the lease ends. Each comes with its
    /// webhook's secret (`None`: the webhook was removed since).
    fn claim_deliveries(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<(Delivery, Option<String>)>, StoreError>> + Send;
    /// Records how a claimed delivery's attempt ended.
    fn finish_delivery(
        &self,
        id: i64,
        outcome: webhooks::Outcome,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// A workspace's delivery log, newest first.
    fn deliveries(
        &self,
        workspace: &str,
    ) -> impl Future<Output = Result<Vec<Delivery>, StoreError>> + Send;

    // Sensor lifecycle, part 2 (issue #24, `lifecycle.rs`, docs/lifecycle.md): enrollment
    // limits and certificate validity as workspace settings, and the rate-limit windows every
    // replica shares.

    /// A workspace's lifecycle settings (the defaults until set; [`StoreError::NoSuchWorkspace`]).
    fn lifecycle_settings(
        &self,
        workspace: &str,
    ) -> impl Future<Output = Result<LifecycleSettings, StoreError>> + Send;
    /// Changes some of them (validated first: [`LifecycleChange::validate`]) and appends
    /// [`ChangeKind::Settings`] to the change log in the same transaction, so every replica
    /// applies them from its next poll. Returns them all as stored.
    fn set_lifecycle_settings(
        &self,
        workspace: &str,
        change: LifecycleChange,
    ) -> impl Future<Output = Result<LifecycleSettings, StoreError>> + Send;
    /// Counts one hit for `scope` in the fixed window of `window_ms` holding `now_ms`
    /// ([`lifecycle::rate_window`]) unless the window holds `limit` already, atomically (two
    /// replicas never both take the last slot). Windows that ended are removed on the way.
    fn rate_hit(
        &self,
        scope: &str,
        now_ms: i64,
        window_ms: i64,
        limit: u64,
    ) -> impl Future<Output = Result<RateHit, StoreError>> + Send;
    /// The hits counted for `scope` in the window holding `now_ms` (0 when none).
    fn rate_count(
        &self,
        scope: &str,
        now_ms: i64,
        window_ms: i64,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// Records that a sensor of `workspace` uninstalled itself: revoked (its key is gone) and
    /// marked uninstalled, with [`lifecycle::UNINSTALLED_REASON`], in one transaction that
    /// appends [`ChangeKind::Revoked`]. An earlier revocation keeps its time and reason and only
    /// gains the mark ([`StoreError::NoSuchSensor`] when the sensor is not enrolled there).
    fn mark_uninstalled(
        &self,
        workspace: &str,
        sensor_id: &str,
    ) -> impl Future<Output = Result<Revocation, StoreError>> + Send;
    // The web console (issue #25, `console.rs`, docs/console.md): accounts, sessions and login
    // throttling, shared by every replica. A workspace's deletion removes them all.

    /// Adds a console user; `false` when the workspace already has a user of that name
    /// ([`StoreError::NoSuchWorkspace`]).
    fn create_console_user(
        &self,
        user: ConsoleUser,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// A workspace's console users, by name.
    fn console_users(
        &self,
        workspace: &str,
    ) -> impl Future<Output = Result<Vec<ConsoleUser>, StoreError>> + Send;
    /// One console user.
    fn console_user(
        &self,
        workspace: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<ConsoleUser>, StoreError>> + Send;
    /// Removes a console user with its sessions and failure count; `false` when there was none.
    fn remove_console_user(
        &self,
        workspace: &str,
        name: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Stores a new session, or updates the `last_seen_at` of an existing one (same id).
    fn put_console_session(
        &self,
        session: ConsoleSession,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The session with this id hash, of whatever workspace (the caller compares).
    fn console_session(
        &self,
        id_sha256: &str,
    ) -> impl Future<Output = Result<Option<ConsoleSession>, StoreError>> + Send;
    /// Ends a session (logout, expiry). Ending one that is gone is not an error.
    fn delete_console_session(
        &self,
        id_sha256: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The consecutive failed logins of a name in a workspace.
    fn login_failures(
        &self,
        workspace: &str,
        name: &str,
    ) -> impl Future<Output = Result<LoginFailures, StoreError>> + Send;
    /// Records a login's outcome: a failure adds one (at `now_ms`) and returns the new count; a
    /// success clears the count.
    fn record_login(
        &self,
        workspace: &str,
        name: &str,
        failed: bool,
        now_ms: i64,
    ) -> impl Future<Output = Result<LoginFailures, StoreError>> + Send;
    // Central policy (issue #26, `policy.rs`, docs/policy.md). Each set or clear is a new
    // version, kept; the proxy password is sealed under the master key; each appends
    // [`ChangeKind::Policy`] to the change log in its transaction.

    /// Stores `policy` (validated first) as the workspace's next version and returns it with its
    /// version ([`StoreError::NoSuchWorkspace`]).
    fn set_policy(
        &self,
        workspace: &str,
        policy: uplink_policy::Policy,
    ) -> impl Future<Output = Result<uplink_policy::Policy, StoreError>> + Send;
    /// Clears the workspace's policy (a new version without a policy: sensors go back to their
    /// local settings) and returns that version ([`StoreError::NoSuchWorkspace`]).
    fn clear_policy(&self, workspace: &str)
        -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// The workspace's newest version (0: none ever) and its policy with the password opened
    /// (`None`: none, or cleared).
    fn current_policy(
        &self,
        workspace: &str,
    ) -> impl Future<Output = Result<(u64, Option<uplink_policy::Policy>), StoreError>> + Send;
    /// Every version of the workspace's policy, newest first, without passwords.
    fn policy_versions(
        &self,
        workspace: &str,
    ) -> impl Future<Output = Result<Vec<PolicyVersion>, StoreError>> + Send;

    // CA rotation (issue #24, `lifecycle.rs`, docs/lifecycle.md): `uplink workspace rotate-ca`.

    /// Makes `new` the workspace's CA and keeps the current one as a [`PreviousCa`] (its key
    /// sealed under the master key), appending [`ChangeKind::Rekeyed`] in the same transaction.
    /// Refused ([`StoreError::Settings`]) while a previous CA is still there: retire it first.
    fn rotate_ca(
        &self,
        workspace: &str,
        cert_pem: &str,
        key_pem: &str,
        sha256: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The workspace's previous CAs, not retired yet, oldest first (keys opened).
    fn previous_cas(
        &self,
        workspace: &str,
    ) -> impl Future<Output = Result<Vec<PreviousCa>, StoreError>> + Send;
    /// Records which CA (`ca_sha256`) issued the certificate whose SHA-256 is `cert_sha256`.
    fn record_issuer(
        &self,
        cert_sha256: &str,
        ca_sha256: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// The ids of the workspace's sensors, neither revoked nor decommissioned, whose current
    /// certificate was not recorded as issued by `ca_sha256`, ordered.
    fn sensors_not_on_ca(
        &self,
        workspace: &str,
        ca_sha256: &str,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;
    /// Drops the workspace's previous CAs (their client certificates are refused from then on),
    /// appending [`ChangeKind::Rekeyed`] in the same transaction; returns their digests.
    fn retire_previous_cas(
        &self,
        workspace: &str,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    // Report history for the console's charts (issue #25, `history.rs`, docs/console.md).

    /// Upserts `point` (keyed by sensor and bucket: the newest report of a bucket wins, a route
    /// different from the stored one counts a change) and removes every point of a bucket
    /// before `prune_before_ms`, in one write. A sensor not enrolled in `workspace`: nothing.
    fn record_report_point(
        &self,
        workspace: &str,
        point: ReportPoint,
        prune_before_ms: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// A sensor's points of the buckets from `since_ms` on, oldest first.
    fn report_points(
        &self,
        workspace: &str,
        sensor_id: &str,
        since_ms: i64,
    ) -> impl Future<Output = Result<Vec<ReportPoint>, StoreError>> + Send;

    // Retention holes (issue #28, docs/storage.md): the seqs below a watermark never stored.

    /// Each sensor's holes in a workspace: the ranges `(lo, hi)` (inclusive, ascending) of seqs
    /// at or below its watermark that were never stored, so that their late arrival is stored
    /// (sensors without any are absent), for copies (`store backup`, `store migrate`).
    fn pruned_holes(
        &self,
        workspace: &str,
    ) -> impl Future<Output = Result<BTreeMap<String, Vec<(u64, u64)>>, StoreError>> + Send;
    /// Records holes of a sensor (a copy, once its events are in and its watermark raised);
    /// ranges already recorded are kept ([`StoreError::NoSuchSensor`]).
    fn add_pruned_holes(
        &self,
        sensor_id: &str,
        holes: Vec<(u64, u64)>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    // backup fleet state (`store backup`/`restore`/`migrate`, `backup.rs`, docs/storage.md):
    // what a copy brings besides workspaces, sensors and events, stored as it was.

    /// Records a revocation as stored elsewhere: its reason, time, certificate and marks
    /// (decommissioned, uninstalled) kept, with [`ChangeKind::Revoked`] appended in the same
    /// transaction. A sensor revoked here already keeps its revocation and only gains the marks
    /// the copy has. Returns the revocation as stored ([`StoreError::NoSuchSensor`] when the
    /// sensor is not enrolled in `revocation.workspace`).
    fn import_revocation(
        &self,
        revocation: Revocation,
    ) -> impl Future<Output = Result<Revocation, StoreError>> + Send;
    /// Raises a sensor's watermark to at least `through` and records the holes below it, in one
    /// transaction (a copy, once the sensor's events are in): a late seq in a hole is never
    /// answered "duplicate" between the two. Only the parts of `holes` between the watermark
    /// this store had and the new one are recorded, less the seqs stored here and the holes
    /// recorded already (what this store decided below its own watermark stays decided; a copy
    /// run again adds nothing) ([`StoreError::NoSuchSensor`]).
    fn import_watermark(
        &self,
        sensor_id: &str,
        through: Option<u64>,
        holes: Vec<(u64, u64)>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Every certificate recorded for the workspace's sensors ([`Store::record_certificate`]),
    /// by sensor then serial: what a copy records again, so that the CRL of the copy lists the
    /// certificates of its revoked sensors.
    fn issued_certificates(
        &self,
        workspace: &str,
    ) -> impl Future<Output = Result<Vec<backup::IssuedCertificate>, StoreError>> + Send;
    /// Records a workspace's current policy version as stored elsewhere: its number and time
    /// kept (sensors compare the number with the one they fetched), `policy` `None` for a
    /// version that cleared it, the password sealed here, with [`ChangeKind::Policy`] appended
    /// in the same transaction. Nothing is recorded (`Ok(false)`) when the workspace has that
    /// version or a later one already (a copy run again; policies set here are kept)
    /// ([`StoreError::NoSuchWorkspace`]).
    fn import_policy(
        &self,
        workspace: &str,
        version: u64,
        set_at: i64,
        policy: Option<uplink_policy::Policy>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Records a previous CA of a rotation in progress as stored elsewhere (its key sealed
    /// here), with [`ChangeKind::Rekeyed`] appended in the same transaction, so that the
    /// certificates it issued are still accepted until it is retired. `Ok(false)` when it is
    /// there already, is the workspace's current CA, or was retired here
    /// ([`Store::retired_cas`]: a copy made during a rotation this store has finished since)
    /// ([`StoreError::NoSuchWorkspace`]).
    fn import_previous_ca(
        &self,
        workspace: &str,
        ca: PreviousCa,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Which CA issued the current certificate of each of the workspace's sensors, as recorded
    /// ([`Store::record_issuer`]): `(cert_sha256, ca_sha256)`, ordered.
    fn sensor_cert_issuers(
        &self,
        workspace: &str,
    ) -> impl Future<Output = Result<Vec<(String, String)>, StoreError>> + Send;

    // Retired CAs (fix3, docs/storage.md's backup section): `retire_previous_cas` records the
    // CAs it drops, so that a copy made during the rotation (`store restore`, `store migrate`)
    // cannot make them trusted again: `import_previous_ca` refuses a retired CA.

    /// The workspace's retired CAs (`rotate-ca --retire-old`), ordered by digest.
    fn retired_cas(
        &self,
        workspace: &str,
    ) -> impl Future<Output = Result<Vec<RetiredCa>, StoreError>> + Send;
    /// Records a CA as retired, as a copy of a store that retired it says (`store restore`,
    /// `store migrate`): [`Store::import_previous_ca`] refuses it from now on, and a previous CA
    /// with that digest is dropped (no longer trusted; [`ChangeKind::Rekeyed`] appended in the
    /// same transaction). `Ok(false)` when it was recorded already
    /// ([`StoreError::NoSuchWorkspace`]).
    fn import_retired_ca(
        &self,
        workspace: &str,
        ca: RetiredCa,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    // Ingest of a batch in one buffer (issue #28, the service's ingest path).
    /// Whether [`Store::ingest_batch`] stores a batch that came compressed as it was sent
    /// (SQLite): the service then gives it batches without their decoded text
    /// ([`EventBatch::sent`]), which this store decodes again only for events it cannot store
    /// so. A store that keeps every event's text says `false` and gets the text.
    fn keeps_batches_as_sent(&self) -> bool {
        false
    }

    /// [`Store::ingest`] of an [`EventBatch`]: the same outcome and guarantees. A backend
    /// without its own reads it as [`NewEvent`]s, made on a blocking thread (a copy of every
    /// event of a batch of up to tens of MB: not on an async worker).
    fn ingest_batch(
        &self,
        sensor_id: &str,
        batch: EventBatch,
    ) -> impl Future<Output = Result<IngestOutcome, StoreError>> + Send {
        async move {
            let events = tokio::task::spawn_blocking(move || match batch.has_text() {
                true => Ok(batch.into_events()),
                // A batch as sent, without its text: decoded again.
                false => batch.with_text().map(|b| b.into_owned().into_events()),
            })
            .await
            // Blocking tasks are not cancelled; a panic there goes on here.
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
            .map_err(|message| StoreError::Commit {
                path: "the batch received".into(),
                message,
            })?;
            self.ingest(sensor_id, events).await
        }
    }
}

/// A CA a rotation retired ([`Store::retired_cas`]).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RetiredCa {
    /// The CA certificate's SHA-256, lowercase hex.
    pub sha256: String,
    /// When it was retired (Unix milliseconds).
    pub retired_at: i64,
}

/// Runs [`Store::export`] and hands each event to `each` on the calling task (which may write to
/// a locked stdout). An error from `each` stops the export and is returned as
/// [`StoreError::Io`] with path `<output>`.
pub async fn export_each<S: Store>(
    store: &S,
    workspace: &str,
    filter: ExportFilter,
    mut each: impl FnMut(StoredEvent) -> std::io::Result<()>,
) -> Result<u64, StoreError> {
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let consume = async move {
        while let Some(event) = rx.recv().await {
            if let Err(e) = each(event) {
                rx.close();
                return Err(e);
            }
        }
        Ok(())
    };
    let (exported, consumed) = tokio::join!(store.export(workspace, filter, tx), consume);
    if let Err(source) = consumed {
        return Err(StoreError::Io {
            path: "<output>".into(),
            source,
        });
    }
    exported
}

/// `HOST:PORT` (an IPv6 literal in brackets) split, for [`syslog::target`].
fn syslog_split(text: &str) -> Option<(String, Option<u16>)> {
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = after
            .strip_prefix(':')
            .map(|p| p.parse().ok())
            .unwrap_or(None);
        return Some((host.to_owned(), port));
    }
    let (host, port) = text.rsplit_once(':')?;
    if host.contains(':') {
        return None;
    }
    Some((host.to_owned(), port.parse().ok()))
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// RFC 3339 (UTC, milliseconds) for a Unix-milliseconds timestamp.
pub fn rfc3339_ms(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let f = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&f).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use uplink_diag::Code;

    #[test]
    fn change_kinds_round_trip_and_unknown_words_are_kept() {
        for kind in [
            ChangeKind::Created,
            ChangeKind::Settings,
            ChangeKind::Rekeyed,
            ChangeKind::MasterKeyRotated,
            ChangeKind::Deleted,
            ChangeKind::Revoked,
            ChangeKind::Policy,
            ChangeKind::Other("from-a-newer-build".into()),
        ] {
            assert_eq!(ChangeKind::parse(kind.as_str()), kind);
        }
        assert_eq!(
            ChangeKind::parse("renamed"),
            ChangeKind::Other("renamed".into())
        );
    }

    #[test]
    fn errors_classify_and_name_the_backend_and_the_fix() {
        let cases: Vec<(StoreError, Option<Code>, &[&str])> = vec![
            (
                StoreError::Backend {
                    backend: Backend::Postgres,
                    at: "postgres://u:****@db/x".into(),
                    detail: "permission denied for table events (SQLSTATE 42501)".into(),
                },
                Some(Code::SERVICE_UNAVAILABLE),
                &[
                    "PostgreSQL store at postgres://u:****@db/x",
                    "42501",
                    "server's log",
                ],
            ),
            (
                StoreError::Unreachable {
                    backend: Backend::Postgres,
                    at: "postgres://db/x".into(),
                    detail: "connection refused".into(),
                },
                Some(Code::SERVICE_UNAVAILABLE),
                &[
                    "cannot reach the PostgreSQL store",
                    "Check that the server runs",
                ],
            ),
            (
                StoreError::Backend {
                    backend: Backend::Sqlite,
                    at: "/var/lib/uplink/uplink.db".into(),
                    detail: "disk I/O error".into(),
                },
                Some(Code::SERVICE_UNAVAILABLE),
                &["SQLite store at /var/lib/uplink/uplink.db", "disk space"],
            ),
            (
                StoreError::KeyAlreadyEnrolled {
                    workspace: "w".into(),
                    sensor_id: "s".into(),
                },
                Some(Code::KEY_ALREADY_ENROLLED),
                &["already enrolled"],
            ),
            (
                StoreError::WorkspaceExists("w".into()),
                None,
                &["already exists", "choose another name"],
            ),
        ];
        for (e, code, words) in cases {
            assert_eq!(e.code(), code, "{e}");
            let text = e.to_string();
            for w in words {
                assert!(text.contains(w), "{w:?} not in {text}");
            }
        }
    }
}
