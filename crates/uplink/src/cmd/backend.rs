//! Choosing the store from `--data-dir` or `--database`: wiring only. Commands open an
//! [`AnyStore`] here and use it through the `Store` trait.

use std::path::PathBuf;

use uplink_store::*;
use uplink_store_postgres::{PostgresStore, Settings};
use uplink_store_sqlite::SqliteStore;

use super::DataDir;

/// The store a command was given.
#[derive(Clone, Debug)]
pub enum AnyStore {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl DataDir {
    /// The data directory, when the store is the embedded one.
    pub fn dir(&self) -> Option<&PathBuf> {
        self.data_dir.as_ref()
    }

    /// Opens the store (with `create`, a new data directory is made; PostgreSQL's schema is
    /// always created or migrated). Needs a Tokio runtime.
    pub async fn open(&self, create: bool) -> Result<AnyStore, StoreError> {
        self.open_with_key(create, None).await
    }

    /// The master key file in force: `--master-key-file`, else `DIR/master.key` with a data
    /// directory (`None` with --database and no --master-key-file).
    pub fn key_file(&self) -> Option<MasterKeyFile> {
        self.master_key_file.clone().map(MasterKeyFile).or_else(|| {
            self.data_dir
                .as_ref()
                .map(|d| MasterKeyFile(d.join(uplink_store_sqlite::MASTER_KEY_FILE)))
        })
    }

    /// [`DataDir::open`] with another master key file than the flags say.
    pub async fn open_with_key(
        &self,
        create: bool,
        key: Option<MasterKeyFile>,
    ) -> Result<AnyStore, StoreError> {
        let key_file = key.or_else(|| self.master_key_file.clone().map(MasterKeyFile));
        match (&self.data_dir, &self.database) {
            (Some(dir), None) => {
                let dir = dir.clone();
                let key_file = key_file.unwrap_or_else(|| {
                    MasterKeyFile(dir.join(uplink_store_sqlite::MASTER_KEY_FILE))
                });
                tokio::task::spawn_blocking(move || {
                    SqliteStore::open_with_key(&dir, create, &key_file)
                })
                .await
                .map_err(|_| StoreError::WriterGone)?
                .map(AnyStore::Sqlite)
            }
            (None, Some(url)) => {
                let url = DatabaseUrl::new(url)?;
                let key_file = key_file.ok_or_else(|| {
                    StoreError::Settings(
                        "--database needs --master-key-file FILE (or UPLINK_MASTER_KEY_FILE): the key that seals the CA keys in the database".into(),
                    )
                })?;
                PostgresStore::connect(Settings::new(url, key_file))
                    .await
                    .map(AnyStore::Postgres)
            }
            // clap's group makes these unreachable; said plainly all the same.
            _ => Err(StoreError::Settings(
                "give either --data-dir DIR or --database URL (exactly one)".into(),
            )),
        }
    }

    /// What to name in logs: the directory, or the URL with its password redacted.
    pub fn describe(&self) -> String {
        match (&self.data_dir, &self.database) {
            (Some(dir), _) => dir.display().to_string(),
            (None, Some(url)) => DatabaseUrl::new(url)
                .map(|u| u.redacted())
                .unwrap_or_else(|_| "<invalid database URL>".into()),
            (None, None) => String::new(),
        }
    }
}

/// A runtime for the one-shot admin commands.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            AnyStore::Sqlite($s) => $e,
            AnyStore::Postgres($s) => $e,
        }
    };
}

impl Store for AnyStore {
    async fn workspaces(&self) -> Result<Vec<WorkspaceRecord>, StoreError> {
        each!(self, s => s.workspaces().await)
    }
    async fn workspace(&self, name: &str) -> Result<Option<WorkspaceRecord>, StoreError> {
        each!(self, s => s.workspace(name).await)
    }
    async fn create_workspace(&self, workspace: WorkspaceRecord) -> Result<(), StoreError> {
        each!(self, s => s.create_workspace(workspace).await)
    }
    async fn add_sensor(&self, sensor: SensorRecord) -> Result<(), StoreError> {
        each!(self, s => s.add_sensor(sensor).await)
    }
    async fn renew_sensor(
        &self,
        workspace: &str,
        sensor_id: &str,
        cert_sha256: &str,
        key_sha256: &str,
    ) -> Result<(), StoreError> {
        each!(self, s => s.renew_sensor(workspace, sensor_id, cert_sha256, key_sha256).await)
    }
    async fn health(&self) -> Result<(), StoreError> {
        each!(self, s => s.health().await)
    }
    async fn check(&self) -> Result<(), StoreError> {
        each!(self, s => s.check().await)
    }
    async fn flush(&self) -> Result<(), StoreError> {
        each!(self, s => s.flush().await)
    }
    async fn change_version(&self) -> Result<u64, StoreError> {
        each!(self, s => s.change_version().await)
    }
    async fn changes_since(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<uplink_store::Change>, StoreError> {
        each!(self, s => s.changes_since(after, limit).await)
    }
    async fn ingest(
        &self,
        sensor_id: &str,
        events: Vec<NewEvent>,
    ) -> Result<IngestOutcome, StoreError> {
        each!(self, s => s.ingest(sensor_id, events).await)
    }
    async fn rotate_master_key(&self, new: MasterKey) -> Result<u64, StoreError> {
        each!(self, s => s.rotate_master_key(new).await)
    }
    async fn import_sensor(&self, sensor: SensorRecord) -> Result<bool, StoreError> {
        each!(self, s => s.import_sensor(sensor).await)
    }
    async fn import_events(
        &self,
        sensor_id: &str,
        events: Vec<StoredEvent>,
    ) -> Result<IngestOutcome, StoreError> {
        each!(self, s => s.import_events(sensor_id, events).await)
    }
    async fn sensor_counts(
        &self,
        workspace: &str,
    ) -> Result<std::collections::BTreeMap<String, u64>, StoreError> {
        each!(self, s => s.sensor_counts(workspace).await)
    }
    async fn stats(&self, workspace: &str) -> Result<WorkspaceStats, StoreError> {
        each!(self, s => s.stats(workspace).await)
    }
    async fn export(
        &self,
        workspace: &str,
        filter: ExportFilter,
        out: tokio::sync::mpsc::Sender<StoredEvent>,
    ) -> Result<u64, StoreError> {
        each!(self, s => s.export(workspace, filter, out).await)
    }

    // Fleet health.
    async fn record_report(
        &self,
        workspace: &str,
        report: uplink_store::FleetReport,
    ) -> Result<bool, StoreError> {
        each!(self, s => s.record_report(workspace, report).await)
    }
    async fn evaluate_fleet(
        &self,
        now_ms: i64,
        policy: &uplink_store::FleetPolicy,
        only: Option<(&str, &str)>,
    ) -> Result<uplink_store::FleetEvaluation, StoreError> {
        each!(self, s => s.evaluate_fleet(now_ms, policy, only).await)
    }
    async fn fleet_sensors(
        &self,
        workspace: &str,
    ) -> Result<Vec<uplink_store::FleetSensor>, StoreError> {
        each!(self, s => s.fleet_sensors(workspace).await)
    }
    async fn fleet_issues(&self, workspace: &str) -> Result<Vec<uplink_store::Issue>, StoreError> {
        each!(self, s => s.fleet_issues(workspace).await)
    }
    async fn suppress_issue(
        &self,
        workspace: &str,
        issue_id: &str,
        suppression: Option<(i64, String, String)>,
    ) -> Result<Option<uplink_store::Issue>, StoreError> {
        each!(self, s => s.suppress_issue(workspace, issue_id, suppression).await)
    }

    async fn workspace_settings(&self, workspace: &str) -> Result<WorkspaceSettings, StoreError> {
        each!(self, s => s.workspace_settings(workspace).await)
    }
    async fn set_workspace_settings(
        &self,
        workspace: &str,
        change: SettingsChange,
    ) -> Result<WorkspaceSettings, StoreError> {
        each!(self, s => s.set_workspace_settings(workspace, change).await)
    }
    async fn delete_workspace(&self, workspace: &str) -> Result<DeletedWorkspace, StoreError> {
        each!(self, s => s.delete_workspace(workspace).await)
    }
    async fn prune(&self, options: PruneOptions) -> Result<PruneReport, StoreError> {
        each!(self, s => s.prune(options).await)
    }
    async fn watermarks(
        &self,
        workspace: &str,
    ) -> Result<std::collections::BTreeMap<String, u64>, StoreError> {
        each!(self, s => s.watermarks(workspace).await)
    }
    async fn raise_watermark(&self, sensor_id: &str, through: u64) -> Result<(), StoreError> {
        each!(self, s => s.raise_watermark(sensor_id, through).await)
    }
    async fn revoke_sensor(
        &self,
        workspace: &str,
        sensor_id: &str,
        reason: &str,
        decommission: bool,
    ) -> Result<Revocation, StoreError> {
        each!(self, s => s.revoke_sensor(workspace, sensor_id, reason, decommission).await)
    }
    async fn revocations(&self, workspace: &str) -> Result<Vec<Revocation>, StoreError> {
        each!(self, s => s.revocations(workspace).await)
    }
    async fn record_certificate(
        &self,
        sensor_id: &str,
        serial_hex: &str,
        cert_sha256: &str,
    ) -> Result<(), StoreError> {
        each!(self, s => s.record_certificate(sensor_id, serial_hex, cert_sha256).await)
    }
    async fn revoked_serials(&self, workspace: &str) -> Result<Vec<RevokedSerial>, StoreError> {
        each!(self, s => s.revoked_serials(workspace).await)
    }
    async fn set_access_key(
        &self,
        workspace: &str,
        access_key: &str,
        access_key_sha256: &str,
    ) -> Result<(), StoreError> {
        each!(self, s => s.set_access_key(workspace, access_key, access_key_sha256).await)
    }
    async fn record_audit(&self, entry: AuditEntry) -> Result<(), StoreError> {
        each!(self, s => s.record_audit(entry).await)
    }
    async fn audit(&self, workspace: &str, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        each!(self, s => s.audit(workspace, limit).await)
    }

    // Admin API tokens.
    async fn create_token(
        &self,
        token: uplink_store::AdminToken,
        secret_sha256: String,
    ) -> Result<(), StoreError> {
        each!(self, s => s.create_token(token, secret_sha256).await)
    }
    async fn tokens(&self, workspace: &str) -> Result<Vec<uplink_store::AdminToken>, StoreError> {
        each!(self, s => s.tokens(workspace).await)
    }
    async fn revoke_token(
        &self,
        workspace: &str,
        name_or_id: &str,
    ) -> Result<Option<uplink_store::AdminToken>, StoreError> {
        each!(self, s => s.revoke_token(workspace, name_or_id).await)
    }
    async fn token_by_hash(
        &self,
        secret_sha256: &str,
    ) -> Result<Option<uplink_store::AdminToken>, StoreError> {
        each!(self, s => s.token_by_hash(secret_sha256).await)
    }

    // Webhooks.
    async fn set_webhooks(
        &self,
        workspace: &str,
        hooks: Vec<uplink_store::Webhook>,
    ) -> Result<(), StoreError> {
        each!(self, s => s.set_webhooks(workspace, hooks).await)
    }
    async fn webhooks(&self, workspace: &str) -> Result<Vec<uplink_store::Webhook>, StoreError> {
        each!(self, s => s.webhooks(workspace).await)
    }
    async fn claim_deliveries(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<(uplink_store::Delivery, Option<String>)>, StoreError> {
        each!(self, s => s.claim_deliveries(now_ms, lease_ms, limit).await)
    }
    async fn finish_delivery(
        &self,
        id: i64,
        outcome: uplink_store::webhooks::Outcome,
    ) -> Result<(), StoreError> {
        each!(self, s => s.finish_delivery(id, outcome).await)
    }
    async fn deliveries(&self, workspace: &str) -> Result<Vec<uplink_store::Delivery>, StoreError> {
        each!(self, s => s.deliveries(workspace).await)
    }

    // Sensor lifecycle, part 2 (issue #24): settings and rate-limit windows.
    async fn lifecycle_settings(
        &self,
        workspace: &str,
    ) -> Result<uplink_store::LifecycleSettings, StoreError> {
        each!(self, s => s.lifecycle_settings(workspace).await)
    }
    async fn set_lifecycle_settings(
        &self,
        workspace: &str,
        change: uplink_store::LifecycleChange,
    ) -> Result<uplink_store::LifecycleSettings, StoreError> {
        each!(self, s => s.set_lifecycle_settings(workspace, change).await)
    }
    async fn rate_hit(
        &self,
        scope: &str,
        now_ms: i64,
        window_ms: i64,
        limit: u64,
    ) -> Result<uplink_store::RateHit, StoreError> {
        each!(self, s => s.rate_hit(scope, now_ms, window_ms, limit).await)
    }
    async fn rate_count(
        &self,
        scope: &str,
        now_ms: i64,
        window_ms: i64,
    ) -> Result<u64, StoreError> {
        each!(self, s => s.rate_count(scope, now_ms, window_ms).await)
    }

    async fn mark_uninstalled(
        &self,
        workspace: &str,
        sensor_id: &str,
    ) -> Result<Revocation, StoreError> {
        each!(self, s => s.mark_uninstalled(workspace, sensor_id).await)
    }

    // The web console (issue #25).
    async fn create_console_user(
        &self,
        user: uplink_store::ConsoleUser,
    ) -> Result<bool, StoreError> {
        each!(self, s => s.create_console_user(user).await)
    }
    async fn console_users(
        &self,
        workspace: &str,
    ) -> Result<Vec<uplink_store::ConsoleUser>, StoreError> {
        each!(self, s => s.console_users(workspace).await)
    }
    async fn console_user(
        &self,
        workspace: &str,
        name: &str,
    ) -> Result<Option<uplink_store::ConsoleUser>, StoreError> {
        each!(self, s => s.console_user(workspace, name).await)
    }
    async fn remove_console_user(&self, workspace: &str, name: &str) -> Result<bool, StoreError> {
        each!(self, s => s.remove_console_user(workspace, name).await)
    }
    async fn put_console_session(
        &self,
        session: uplink_store::ConsoleSession,
    ) -> Result<(), StoreError> {
        each!(self, s => s.put_console_session(session).await)
    }
    async fn console_session(
        &self,
        id_sha256: &str,
    ) -> Result<Option<uplink_store::ConsoleSession>, StoreError> {
        each!(self, s => s.console_session(id_sha256).await)
    }
    async fn delete_console_session(&self, id_sha256: &str) -> Result<(), StoreError> {
        each!(self, s => s.delete_console_session(id_sha256).await)
    }
    async fn login_failures(
        &self,
        workspace: &str,
        name: &str,
    ) -> Result<uplink_store::LoginFailures, StoreError> {
        each!(self, s => s.login_failures(workspace, name).await)
    }
    async fn record_login(
        &self,
        workspace: &str,
        name: &str,
        failed: bool,
        now_ms: i64,
    ) -> Result<uplink_store::LoginFailures, StoreError> {
        each!(self, s => s.record_login(workspace, name, failed, now_ms).await)
    }

    // Central policy (issue #26).
    async fn set_policy(
        &self,
        workspace: &str,
        policy: uplink_policy::Policy,
    ) -> Result<uplink_policy::Policy, StoreError> {
        each!(self, s => s.set_policy(workspace, policy).await)
    }
    async fn clear_policy(&self, workspace: &str) -> Result<u64, StoreError> {
        each!(self, s => s.clear_policy(workspace).await)
    }
    async fn current_policy(
        &self,
        workspace: &str,
    ) -> Result<(u64, Option<uplink_policy::Policy>), StoreError> {
        each!(self, s => s.current_policy(workspace).await)
    }
    async fn policy_versions(
        &self,
        workspace: &str,
    ) -> Result<Vec<uplink_store::PolicyVersion>, StoreError> {
        each!(self, s => s.policy_versions(workspace).await)
    }

    // CA rotation (issue #24).

    async fn rotate_ca(
        &self,
        workspace: &str,
        cert_pem: &str,
        key_pem: &str,
        sha256: &str,
    ) -> Result<(), StoreError> {
        each!(self, s => s.rotate_ca(workspace, cert_pem, key_pem, sha256).await)
    }

    async fn previous_cas(
        &self,
        workspace: &str,
    ) -> Result<Vec<uplink_store::PreviousCa>, StoreError> {
        each!(self, s => s.previous_cas(workspace).await)
    }

    async fn record_issuer(&self, cert_sha256: &str, ca_sha256: &str) -> Result<(), StoreError> {
        each!(self, s => s.record_issuer(cert_sha256, ca_sha256).await)
    }

    async fn sensors_not_on_ca(
        &self,
        workspace: &str,
        ca_sha256: &str,
    ) -> Result<Vec<String>, StoreError> {
        each!(self, s => s.sensors_not_on_ca(workspace, ca_sha256).await)
    }

    async fn retire_previous_cas(&self, workspace: &str) -> Result<Vec<String>, StoreError> {
        each!(self, s => s.retire_previous_cas(workspace).await)
    }

    // Report history for the console's charts (issue #25).

    async fn record_report_point(
        &self,
        workspace: &str,
        point: uplink_store::ReportPoint,
        prune_before_ms: i64,
    ) -> Result<(), StoreError> {
        each!(self, s => s.record_report_point(workspace, point, prune_before_ms).await)
    }

    async fn report_points(
        &self,
        workspace: &str,
        sensor_id: &str,
        since_ms: i64,
    ) -> Result<Vec<uplink_store::ReportPoint>, StoreError> {
        each!(self, s => s.report_points(workspace, sensor_id, since_ms).await)
    }

    // Retention holes (issue #28).

    async fn pruned_holes(
        &self,
        workspace: &str,
    ) -> Result<std::collections::BTreeMap<String, Vec<(u64, u64)>>, StoreError> {
        each!(self, s => s.pruned_holes(workspace).await)
    }

    async fn add_pruned_holes(
        &self,
        sensor_id: &str,
        holes: Vec<(u64, u64)>,
    ) -> Result<(), StoreError> {
        each!(self, s => s.add_pruned_holes(sensor_id, holes).await)
    }

    // backup fleet state.

    async fn import_revocation(&self, revocation: Revocation) -> Result<Revocation, StoreError> {
        each!(self, s => s.import_revocation(revocation).await)
    }

    async fn import_watermark(
        &self,
        sensor_id: &str,
        through: Option<u64>,
        holes: Vec<(u64, u64)>,
    ) -> Result<(), StoreError> {
        each!(self, s => s.import_watermark(sensor_id, through, holes).await)
    }

    async fn issued_certificates(
        &self,
        workspace: &str,
    ) -> Result<Vec<uplink_store::backup::IssuedCertificate>, StoreError> {
        each!(self, s => s.issued_certificates(workspace).await)
    }

    async fn import_policy(
        &self,
        workspace: &str,
        version: u64,
        set_at: i64,
        policy: Option<uplink_policy::Policy>,
    ) -> Result<bool, StoreError> {
        each!(self, s => s.import_policy(workspace, version, set_at, policy).await)
    }

    async fn import_previous_ca(
        &self,
        workspace: &str,
        ca: PreviousCa,
    ) -> Result<bool, StoreError> {
        each!(self, s => s.import_previous_ca(workspace, ca).await)
    }

    async fn sensor_cert_issuers(
        &self,
        workspace: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        each!(self, s => s.sensor_cert_issuers(workspace).await)
    }

    // Retired CAs (fix3).
    async fn retired_cas(&self, workspace: &str) -> Result<Vec<RetiredCa>, StoreError> {
        each!(self, s => s.retired_cas(workspace).await)
    }
    async fn import_retired_ca(&self, workspace: &str, ca: RetiredCa) -> Result<bool, StoreError> {
        each!(self, s => s.import_retired_ca(workspace, ca).await)
    }
    // Ingest of a batch in one buffer (issue #28).
    fn keeps_batches_as_sent(&self) -> bool {
        each!(self, s => s.keeps_batches_as_sent())
    }
    async fn ingest_batch(
        &self,
        sensor_id: &str,
        batch: EventBatch,
    ) -> Result<IngestOutcome, StoreError> {
        each!(self, s => s.ingest_batch(sensor_id, batch).await)
    }
}
