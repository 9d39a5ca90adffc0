//! Sensor lifecycle in the PostgreSQL store (migration 0007, table `revocations`): revoking and
//! decommissioning a sensor, one transaction each with its change-log entry.

use tokio_postgres::Row;
use uplink_store::lifecycle::MAX_REASON;
use uplink_store::*;

use crate::{record_change, PostgresStore};

const COLUMNS: &str =
    "workspace, sensor_id, reason, revoked_at, decommissioned, cert_sha256, uninstalled";

fn row_to_revocation(r: &Row) -> Revocation {
    Revocation {
        workspace: r.get(0),
        sensor_id: r.get(1),
        reason: r.get(2),
        revoked_at: r.get(3),
        decommissioned: r.get(4),
        cert_sha256: r.get(5),
        uninstalled: r.get(6),
    }
}

impl PostgresStore {
    pub(crate) async fn revoke_sensor_pg(
        &self,
        workspace: &str,
        sensor_id: &str,
        reason: &str,
        decommission: bool,
    ) -> Result<Revocation, StoreError> {
        if reason.len() > MAX_REASON {
            return Err(StoreError::Settings(format!(
                "the reason is {} bytes long; give at most {MAX_REASON}",
                reason.len()
            )));
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.err())?;
        // The sensor's row locked: a renewal racing the revocation waits, then sees it.
        let cert = tx
            .query_opt(
                "SELECT cert_sha256 FROM sensors WHERE sensor_id = $1 AND workspace = $2 FOR UPDATE",
                &[&sensor_id, &workspace],
            )
            .await
            .map_err(self.err())?;
        let Some(cert) = cert else {
            return Err(StoreError::NoSuchSensor(sensor_id.into()));
        };
        let cert: String = cert.get(0);
        let row = tx
            .query_one(
                &format!(
                    "INSERT INTO revocations (workspace, sensor_id, reason, revoked_at, decommissioned, cert_sha256)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (sensor_id) DO UPDATE SET decommissioned = revocations.decommissioned OR excluded.decommissioned
                     RETURNING {COLUMNS}"
                ),
                &[&workspace, &sensor_id, &reason, &now_ms(), &decommission, &cert],
            )
            .await
            .map_err(self.err())?;
        record_change(&tx, workspace, &ChangeKind::Revoked)
            .await
            .map_err(self.err())?;
        tx.commit().await.map_err(self.err())?;
        Ok(row_to_revocation(&row))
    }

    pub(crate) async fn revocations_pg(
        &self,
        workspace: &str,
    ) -> Result<Vec<Revocation>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!("SELECT {COLUMNS} FROM revocations WHERE workspace = $1 ORDER BY revoked_at, sensor_id"),
                &[&workspace],
            )
            .await
            .map_err(self.err())?;
        Ok(rows.iter().map(row_to_revocation).collect())
    }

    pub(crate) async fn record_certificate_pg(
        &self,
        sensor_id: &str,
        serial_hex: &str,
        cert_sha256: &str,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        let res = client
            .execute(
                "INSERT INTO certificates (serial, sensor_id, cert_sha256, issued_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (serial) DO NOTHING",
                &[&serial_hex, &sensor_id, &cert_sha256, &now_ms()],
            )
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::FOREIGN_KEY_VIOLATION) => {
                Err(StoreError::NoSuchSensor(sensor_id.into()))
            }
            Err(e) => Err(self.err()(e)),
        }
    }

    pub(crate) async fn revoked_serials_pg(
        &self,
        workspace: &str,
    ) -> Result<Vec<RevokedSerial>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT c.serial, r.revoked_at FROM revocations r JOIN certificates c ON c.sensor_id = r.sensor_id
                 WHERE r.workspace = $1 ORDER BY c.serial",
                &[&workspace],
            )
            .await
            .map_err(self.err())?;
        Ok(rows
            .iter()
            .map(|r| RevokedSerial {
                serial_hex: r.get(0),
                revoked_at: r.get(1),
            })
            .collect())
    }

    pub(crate) async fn record_audit_pg(&self, e: &AuditEntry) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO audit (workspace, at, actor, source, action, sensor_id, result, detail)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[
                    &e.workspace,
                    &e.at,
                    &e.actor,
                    &e.source,
                    &e.action,
                    &e.sensor_id,
                    &e.result,
                    &uplink_store::lifecycle::audit_detail(&e.detail),
                ],
            )
            .await
            .map_err(self.err())?;
        Ok(())
    }

    pub(crate) async fn audit_pg(
        &self,
        workspace: &str,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT workspace, at, actor, source, action, sensor_id, result, detail FROM
                 (SELECT * FROM audit WHERE workspace = $1 ORDER BY id DESC LIMIT $2) a ORDER BY id",
                &[&workspace, &limit],
            )
            .await
            .map_err(self.err())?;
        Ok(rows
            .iter()
            .map(|r| AuditEntry {
                workspace: r.get(0),
                at: r.get(1),
                actor: r.get(2),
                source: r.get(3),
                action: r.get(4),
                sensor_id: r.get(5),
                result: r.get(6),
                detail: r.get(7),
            })
            .collect())
    }

    pub(crate) async fn set_access_key_pg(
        &self,
        workspace: &str,
        access_key: &str,
        hash: &str,
    ) -> Result<(), StoreError> {
        let sealed = self
            .key()?
            .seal(access_key, &master::access_key_context(workspace));
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.err())?;
        let n = tx
            .execute(
                "UPDATE workspaces SET access_key_sha256 = $1, access_key = $2 WHERE name = $3",
                &[&hash, &sealed, &workspace],
            )
            .await
            .map_err(self.err())?;
        if n == 0 {
            return Err(StoreError::NoSuchWorkspace(workspace.into()));
        }
        record_change(&tx, workspace, &ChangeKind::Rekeyed)
            .await
            .map_err(self.err())?;
        tx.commit().await.map_err(self.err())?;
        Ok(())
    }
}

// Enrollment limits and certificate validity (migration 0010: `lifecycle_settings`,
// `rate_windows`).

async fn settings_of<C: deadpool_postgres::GenericClient>(
    c: &C,
    workspace: &str,
) -> Result<Option<LifecycleSettings>, tokio_postgres::Error> {
    let row = c
        .query_opt(
            "SELECT s.client_cert_validity_secs, s.enroll_limit, s.failed_enroll_limit, s.enroll_window_secs
             FROM workspaces w LEFT JOIN lifecycle_settings s ON s.workspace = w.name WHERE w.name = $1",
            &[&workspace],
        )
        .await?;
    Ok(row.map(|r| {
        LifecycleChange {
            client_cert_validity_secs: r.get::<_, Option<i64>>(0).map(|v| v as u64),
            enroll_limit: r.get::<_, Option<i64>>(1).map(|v| v as u32),
            failed_enroll_limit: r.get::<_, Option<i64>>(2).map(|v| v as u32),
            enroll_window_secs: r.get::<_, Option<i64>>(3).map(|v| v as u64),
        }
        .apply(LifecycleSettings::default())
    }))
}

impl PostgresStore {
    pub(crate) async fn lifecycle_settings_pg(
        &self,
        workspace: &str,
    ) -> Result<LifecycleSettings, StoreError> {
        let client = self.client().await?;
        settings_of(&client, workspace)
            .await
            .map_err(self.err())?
            .ok_or_else(|| StoreError::NoSuchWorkspace(workspace.into()))
    }

    pub(crate) async fn set_lifecycle_settings_pg(
        &self,
        workspace: &str,
        change: LifecycleChange,
    ) -> Result<LifecycleSettings, StoreError> {
        change.validate()?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.err())?;
        if settings_of(&tx, workspace)
            .await
            .map_err(self.err())?
            .is_none()
        {
            return Err(StoreError::NoSuchWorkspace(workspace.into()));
        }
        tx.execute(
            "INSERT INTO lifecycle_settings (workspace, client_cert_validity_secs, enroll_limit, failed_enroll_limit, enroll_window_secs)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (workspace) DO UPDATE SET
               client_cert_validity_secs = COALESCE(excluded.client_cert_validity_secs, lifecycle_settings.client_cert_validity_secs),
               enroll_limit = COALESCE(excluded.enroll_limit, lifecycle_settings.enroll_limit),
               failed_enroll_limit = COALESCE(excluded.failed_enroll_limit, lifecycle_settings.failed_enroll_limit),
               enroll_window_secs = COALESCE(excluded.enroll_window_secs, lifecycle_settings.enroll_window_secs)",
            &[
                &workspace,
                &change.client_cert_validity_secs.map(|v| v as i64),
                &change.enroll_limit.map(i64::from),
                &change.failed_enroll_limit.map(i64::from),
                &change.enroll_window_secs.map(|v| v as i64),
            ],
        )
        .await
        .map_err(self.err())?;
        record_change(&tx, workspace, &ChangeKind::Settings)
            .await
            .map_err(self.err())?;
        let stored = settings_of(&tx, workspace).await.map_err(self.err())?;
        tx.commit().await.map_err(self.err())?;
        stored.ok_or_else(|| StoreError::NoSuchWorkspace(workspace.into()))
    }

    pub(crate) async fn rate_hit_pg(
        &self,
        scope: &str,
        now_ms: i64,
        window_ms: i64,
        limit: u64,
    ) -> Result<RateHit, StoreError> {
        let (start, end) = lifecycle::rate_window(now_ms, window_ms);
        if limit == 0 {
            return Ok(RateHit::Limited {
                retry_after_ms: end - now_ms,
            });
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let client = self.client().await?;
        client
            .execute(
                "DELETE FROM rate_windows WHERE window_end <= $1",
                &[&now_ms],
            )
            .await
            .map_err(self.err())?;
        // One statement: the row lock of the conflict makes concurrent replicas count in turn,
        // and the WHERE leaves a full window as it is (no row returned).
        let row = client
            .query_opt(
                "INSERT INTO rate_windows (scope, window_start, window_end, hits) VALUES ($1, $2, $3, 1)
                 ON CONFLICT (scope, window_start) DO UPDATE SET hits = rate_windows.hits + 1
                 WHERE rate_windows.hits < $4
                 RETURNING hits",
                &[&scope, &start, &end, &limit],
            )
            .await
            .map_err(self.err())?;
        Ok(match row {
            Some(r) => RateHit::Counted {
                count: r.get::<_, i64>(0) as u64,
            },
            None => RateHit::Limited {
                retry_after_ms: end - now_ms,
            },
        })
    }

    pub(crate) async fn rate_count_pg(
        &self,
        scope: &str,
        now_ms: i64,
        window_ms: i64,
    ) -> Result<u64, StoreError> {
        let (start, _) = lifecycle::rate_window(now_ms, window_ms);
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT hits FROM rate_windows WHERE scope = $1 AND window_start = $2",
                &[&scope, &start],
            )
            .await
            .map_err(self.err())?;
        Ok(row.map_or(0, |r| r.get::<_, i64>(0) as u64))
    }
}

impl PostgresStore {
    pub(crate) async fn mark_uninstalled_pg(
        &self,
        workspace: &str,
        sensor_id: &str,
    ) -> Result<Revocation, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.err())?;
        // The sensor's row locked, as for a revocation: a renewal racing it waits, then sees it.
        let cert = tx
            .query_opt(
                "SELECT cert_sha256 FROM sensors WHERE sensor_id = $1 AND workspace = $2 FOR UPDATE",
                &[&sensor_id, &workspace],
            )
            .await
            .map_err(self.err())?;
        let Some(cert) = cert else {
            return Err(StoreError::NoSuchSensor(sensor_id.into()));
        };
        let cert: String = cert.get(0);
        let row = tx
            .query_one(
                &format!(
                    "INSERT INTO revocations (workspace, sensor_id, reason, revoked_at, decommissioned, cert_sha256, uninstalled)
                     VALUES ($1, $2, $3, $4, FALSE, $5, TRUE)
                     ON CONFLICT (sensor_id) DO UPDATE SET uninstalled = TRUE
                     RETURNING {COLUMNS}"
                ),
                &[
                    &workspace,
                    &sensor_id,
                    &uplink_store::lifecycle::UNINSTALLED_REASON,
                    &now_ms(),
                    &cert,
                ],
            )
            .await
            .map_err(self.err())?;
        record_change(&tx, workspace, &ChangeKind::Revoked)
            .await
            .map_err(self.err())?;
        tx.commit().await.map_err(self.err())?;
        Ok(row_to_revocation(&row))
    }
}

// CA rotation (migration 0011: `previous_cas`, `cert_issuers`).

impl PostgresStore {
    pub(crate) async fn rotate_ca_pg(
        &self,
        workspace: &str,
        cert_pem: &str,
        key_pem: &str,
        sha256: &str,
    ) -> Result<(), StoreError> {
        let key = self.key()?;
        let new_sealed = key.seal(key_pem, &master::ca_key_context(workspace));
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.err())?;
        let row = tx
            .query_opt(
                "SELECT ca_cert_pem, ca_key_pem, ca_sha256 FROM workspaces WHERE name = $1 FOR UPDATE",
                &[&workspace],
            )
            .await
            .map_err(self.err())?;
        let Some(row) = row else {
            return Err(StoreError::NoSuchWorkspace(workspace.into()));
        };
        let (old_cert, old_sealed, old_sha): (String, String, String) =
            (row.get(0), row.get(1), row.get(2));
        let pending: Vec<String> = tx
            .query(
                "SELECT ca_sha256 FROM previous_cas WHERE workspace = $1",
                &[&workspace],
            )
            .await
            .map_err(self.err())?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if !pending.is_empty() {
            return Err(StoreError::Settings(format!(
                "workspace {workspace:?} still has the CA it replaced last time ({}): retire it first (`uplink workspace rotate-ca {workspace} --retire-old`)",
                pending.join(", ")
            )));
        }
        // The old key moves to a context naming its CA.
        let old_key = key.open(&old_sealed, &master::ca_key_context(workspace))?;
        let old_resealed = key.seal(
            &old_key,
            &lifecycle::previous_ca_key_context(workspace, &old_sha),
        );
        tx.execute(
            "INSERT INTO previous_cas (workspace, ca_sha256, ca_cert_pem, ca_key_pem, replaced_at) VALUES ($1, $2, $3, $4, $5)",
            &[&workspace, &old_sha, &old_cert, &old_resealed, &now_ms()],
        )
        .await
        .map_err(self.err())?;
        tx.execute(
            "UPDATE workspaces SET ca_cert_pem = $1, ca_key_pem = $2, ca_sha256 = $3 WHERE name = $4",
            &[&cert_pem, &new_sealed, &sha256, &workspace],
        )
        .await
        .map_err(self.err())?;
        record_change(&tx, workspace, &ChangeKind::Rekeyed)
            .await
            .map_err(self.err())?;
        tx.commit().await.map_err(self.err())?;
        Ok(())
    }

    pub(crate) async fn previous_cas_pg(
        &self,
        workspace: &str,
    ) -> Result<Vec<PreviousCa>, StoreError> {
        let key = self.key()?;
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT ca_sha256, ca_cert_pem, ca_key_pem, replaced_at FROM previous_cas WHERE workspace = $1 ORDER BY replaced_at, ca_sha256",
                &[&workspace],
            )
            .await
            .map_err(self.err())?;
        rows.iter()
            .map(|r| {
                let sha256: String = r.get(0);
                let sealed: String = r.get(2);
                Ok(PreviousCa {
                    key_pem: key.open(
                        &sealed,
                        &lifecycle::previous_ca_key_context(workspace, &sha256),
                    )?,
                    sha256,
                    cert_pem: r.get(1),
                    replaced_at: r.get(3),
                })
            })
            .collect()
    }

    /// Re-seals the previous CAs' keys under `new` (inside a master key rotation's transaction).
    pub(crate) async fn reseal_previous_cas(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        old: &MasterKey,
        new: &MasterKey,
    ) -> Result<u64, StoreError> {
        let rows = tx
            .query(
                "SELECT workspace, ca_sha256, ca_key_pem FROM previous_cas FOR UPDATE",
                &[],
            )
            .await
            .map_err(self.err())?;
        for r in &rows {
            let (ws, sha, stored): (String, String, String) = (r.get(0), r.get(1), r.get(2));
            let ctx = lifecycle::previous_ca_key_context(&ws, &sha);
            let sealed = new.seal(&old.open(&stored, &ctx)?, &ctx);
            tx.execute(
                "UPDATE previous_cas SET ca_key_pem = $3 WHERE workspace = $1 AND ca_sha256 = $2",
                &[&ws, &sha, &sealed],
            )
            .await
            .map_err(self.err())?;
        }
        Ok(rows.len() as u64)
    }

    pub(crate) async fn retire_previous_cas_pg(
        &self,
        workspace: &str,
    ) -> Result<Vec<String>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.err())?;
        self.lock_workspace(&tx, workspace).await?;
        let gone: Vec<String> = tx
            .query(
                // Remembered: a copy made during the rotation must not trust them again.
                "WITH gone AS (DELETE FROM previous_cas WHERE workspace = $1 RETURNING ca_sha256),
                 kept AS (
                     INSERT INTO retired_cas (workspace, ca_sha256, retired_at)
                     SELECT $1, ca_sha256, $2 FROM gone ON CONFLICT DO NOTHING
                 )
                 SELECT ca_sha256 FROM gone",
                &[&workspace, &now_ms()],
            )
            .await
            .map_err(self.err())?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if !gone.is_empty() {
            record_change(&tx, workspace, &ChangeKind::Rekeyed)
                .await
                .map_err(self.err())?;
        }
        tx.commit().await.map_err(self.err())?;
        Ok(gone)
    }
}
