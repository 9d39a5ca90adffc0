//! backup fleet state: what `store restore` and `store migrate` record as it was elsewhere
//! (the [`uplink_store::Store`] methods `import_revocation` and `import_watermark`).

use uplink_store::lifecycle::MAX_REASON;
use uplink_store::*;

use crate::{record_change, PostgresStore};

impl PostgresStore {
    pub(crate) async fn import_revocation_pg(
        &self,
        r: &Revocation,
    ) -> Result<Revocation, StoreError> {
        if r.reason.len() > MAX_REASON {
            return Err(StoreError::Settings(format!(
                "the revocation of sensor {} has a reason {} bytes long; at most {MAX_REASON} are kept",
                r.sensor_id,
                r.reason.len()
            )));
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.err())?;
        // The sensor's row locked, as `revoke_sensor` does: a renewal racing it waits.
        let enrolled = tx
            .query_opt(
                "SELECT 1 FROM sensors WHERE sensor_id = $1 AND workspace = $2 FOR UPDATE",
                &[&r.sensor_id, &r.workspace],
            )
            .await
            .map_err(self.err())?;
        if enrolled.is_none() {
            return Err(StoreError::NoSuchSensor(r.sensor_id.clone()));
        }
        let row = tx
            .query_one(
                "INSERT INTO revocations (workspace, sensor_id, reason, revoked_at, decommissioned, cert_sha256, uninstalled)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (sensor_id) DO UPDATE SET
                    decommissioned = revocations.decommissioned OR excluded.decommissioned,
                    uninstalled = revocations.uninstalled OR excluded.uninstalled
                 RETURNING workspace, sensor_id, reason, revoked_at, decommissioned, cert_sha256, uninstalled",
                &[
                    &r.workspace,
                    &r.sensor_id,
                    &r.reason,
                    &r.revoked_at,
                    &r.decommissioned,
                    &r.cert_sha256,
                    &r.uninstalled,
                ],
            )
            .await
            .map_err(self.err())?;
        record_change(&tx, &r.workspace, &ChangeKind::Revoked)
            .await
            .map_err(self.err())?;
        tx.commit().await.map_err(self.err())?;
        Ok(Revocation {
            workspace: row.get(0),
            sensor_id: row.get(1),
            reason: row.get(2),
            revoked_at: row.get(3),
            decommissioned: row.get(4),
            cert_sha256: row.get(5),
            uninstalled: row.get(6),
        })
    }

    pub(crate) async fn import_policy_pg(
        &self,
        workspace: &str,
        version: u64,
        set_at: i64,
        policy: Option<uplink_policy::Policy>,
    ) -> Result<bool, StoreError> {
        let (doc, sealed) = match policy {
            Some(mut p) => {
                policy::check(&p)?;
                p.version = version;
                let (d, s) = policy::encode(&self.key()?, workspace, &p)?;
                (Some(d), s)
            }
            None => (None, None),
        };
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.err())?;
        // The workspace's row locked, as `set_policy` does: versions are numbered in order.
        let top = self.lock_policies(&tx, workspace).await?;
        if top as u64 >= version {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO policies (workspace, version, set_at, doc, password) VALUES ($1, $2, $3, $4, $5)",
            &[&workspace, &(version as i64), &set_at, &doc, &sealed],
        )
        .await
        .map_err(self.err())?;
        record_change(&tx, workspace, &ChangeKind::Policy)
            .await
            .map_err(self.err())?;
        tx.commit().await.map_err(self.err())?;
        Ok(true)
    }

    pub(crate) async fn import_previous_ca_pg(
        &self,
        workspace: &str,
        ca: &PreviousCa,
    ) -> Result<bool, StoreError> {
        let sealed = self.key()?.seal(
            &ca.key_pem,
            &lifecycle::previous_ca_key_context(workspace, &ca.sha256),
        );
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.err())?;
        let current = tx
            .query_opt(
                "SELECT ca_sha256 FROM workspaces WHERE name = $1 FOR UPDATE",
                &[&workspace],
            )
            .await
            .map_err(self.err())?;
        let Some(current) = current else {
            return Err(StoreError::NoSuchWorkspace(workspace.into()));
        };
        let retired = tx
            .query_opt(
                "SELECT 1 FROM retired_cas WHERE workspace = $1 AND ca_sha256 = $2",
                &[&workspace, &ca.sha256],
            )
            .await
            .map_err(self.err())?
            .is_some();
        if current.get::<_, String>(0) == ca.sha256 || retired {
            return Ok(false);
        }
        let n = tx
            .execute(
                "INSERT INTO previous_cas (workspace, ca_sha256, ca_cert_pem, ca_key_pem, replaced_at)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                &[&workspace, &ca.sha256, &ca.cert_pem, &sealed, &ca.replaced_at],
            )
            .await
            .map_err(self.err())?;
        if n > 0 {
            record_change(&tx, workspace, &ChangeKind::Rekeyed)
                .await
                .map_err(self.err())?;
        }
        tx.commit().await.map_err(self.err())?;
        Ok(n > 0)
    }

    pub(crate) async fn retired_cas_pg(
        &self,
        workspace: &str,
    ) -> Result<Vec<RetiredCa>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT ca_sha256, retired_at FROM retired_cas WHERE workspace = $1 ORDER BY ca_sha256",
                &[&workspace],
            )
            .await
            .map_err(self.err())?;
        Ok(rows
            .iter()
            .map(|r| RetiredCa {
                sha256: r.get(0),
                retired_at: r.get(1),
            })
            .collect())
    }

    pub(crate) async fn import_retired_ca_pg(
        &self,
        workspace: &str,
        ca: &RetiredCa,
    ) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.err())?;
        // The workspace's row locked as `rotate_ca` and `retire_previous_cas` lock it: a
        // rotation running meanwhile comes before or after, not in between.
        self.lock_workspace(&tx, workspace).await?;
        let n = tx
            .execute(
                "INSERT INTO retired_cas (workspace, ca_sha256, retired_at) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
                &[&workspace, &ca.sha256, &ca.retired_at],
            )
            .await
            .map_err(self.err())?;
        let dropped = tx
            .execute(
                "DELETE FROM previous_cas WHERE workspace = $1 AND ca_sha256 = $2",
                &[&workspace, &ca.sha256],
            )
            .await
            .map_err(self.err())?;
        if dropped > 0 {
            record_change(&tx, workspace, &ChangeKind::Rekeyed)
                .await
                .map_err(self.err())?;
        }
        tx.commit().await.map_err(self.err())?;
        Ok(n > 0)
    }

    pub(crate) async fn sensor_cert_issuers_pg(
        &self,
        workspace: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT i.cert_sha256, i.ca_sha256 FROM cert_issuers i
                 JOIN sensors s ON s.cert_sha256 = i.cert_sha256
                 WHERE s.workspace = $1 ORDER BY i.cert_sha256",
                &[&workspace],
            )
            .await
            .map_err(self.err())?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    pub(crate) async fn issued_certificates_pg(
        &self,
        workspace: &str,
    ) -> Result<Vec<backup::IssuedCertificate>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT c.sensor_id, c.serial, c.cert_sha256 FROM certificates c
                 JOIN sensors s ON s.sensor_id = c.sensor_id
                 WHERE s.workspace = $1 ORDER BY c.sensor_id, c.serial",
                &[&workspace],
            )
            .await
            .map_err(self.err())?;
        Ok(rows
            .iter()
            .map(|r| backup::IssuedCertificate {
                sensor_id: r.get(0),
                serial_hex: r.get(1),
                cert_sha256: r.get(2),
            })
            .collect())
    }

    pub(crate) async fn import_watermark_pg(
        &self,
        sensor_id: &str,
        through: Option<u64>,
        brought: &[(u64, u64)],
    ) -> Result<(), StoreError> {
        let through = through.map(|t| t.min(i64::MAX as u64) as i64);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.err())?;
        // FOR UPDATE, as a prune does: ingest of the sensor (FOR KEY SHARE) waits, and sees the
        // watermark and the holes together.
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
        let (id, old): (i64, i64) = (found.get(0), found.get(1));
        let new = through.map_or(old, |t| t.max(old));
        if new > old {
            tx.execute(
                "UPDATE sensors SET pruned_through = $2 WHERE id = $1",
                &[&id, &new],
            )
            .await
            .map_err(self.err())?;
        }
        // Only between the old watermark and the new one, less the seqs stored (`seen`, whole
        // above the old watermark) and the holes recorded already.
        self.record_uncovered_holes(&tx, id, brought, old, new)
            .await?;
        tx.commit().await.map_err(self.err())?;
        Ok(())
    }
}
