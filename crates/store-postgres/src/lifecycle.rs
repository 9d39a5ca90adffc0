//! Sensor lifecycle in the PostgreSQL store (migration 0007, table `revocations`): revoking and
//! decommissioning a sensor, one transaction each with its change-log entry.

use tokio_postgres::Row;
use uplink_store::lifecycle::MAX_REASON;
use uplink_store::*;

use crate::{record_change, PostgresStore};

const COLUMNS: &str = "workspace, sensor_id, reason, revoked_at, decommissioned, cert_sha256";

fn row_to_revocation(r: &Row) -> Revocation {
    Revocation {
        workspace: r.get(0),
        sensor_id: r.get(1),
        reason: r.get(2),
        revoked_at: r.get(3),
        decommissioned: r.get(4),
        cert_sha256: r.get(5),
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
