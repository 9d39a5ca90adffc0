//! backup fleet state: what `store restore` and `store migrate` record as it was elsewhere
//! (the [`uplink_store::Store`] methods `import_revocation` and `import_watermark`).

use rusqlite::{params, OptionalExtension};
use uplink_store::lifecycle::MAX_REASON;
use uplink_store::*;

use crate::lifecycle::revocation_of;

/// Format 17 (IF NOT EXISTS: a step may be re-run): the CAs `retire_previous_cas` dropped, so
/// that a copy made during the rotation cannot trust them again (`import_previous_ca_sync`).
/// Format 16 is another piece of work.
pub(crate) const FORMAT_17: &str = "
CREATE TABLE IF NOT EXISTS retired_cas (
    workspace TEXT NOT NULL REFERENCES workspaces(name) ON DELETE CASCADE,
    ca_sha256 TEXT NOT NULL,
    retired_at INTEGER NOT NULL,
    PRIMARY KEY (workspace, ca_sha256)
) WITHOUT ROWID;
";
use crate::{immediate, record_change, SqliteStore};

impl SqliteStore {
    pub(crate) fn import_revocation_sync(&self, r: &Revocation) -> Result<Revocation, StoreError> {
        if r.reason.len() > MAX_REASON {
            return Err(StoreError::Settings(format!(
                "the revocation of sensor {} has a reason {} bytes long; at most {MAX_REASON} are kept",
                r.sensor_id,
                r.reason.len()
            )));
        }
        let stored = self.write(|c| {
            immediate(c, |tx| {
                let enrolled = tx
                    .query_row(
                        "SELECT 1 FROM sensors WHERE sensor_id = ?1 AND workspace = ?2",
                        params![r.sensor_id, r.workspace],
                        |_| Ok(()),
                    )
                    .optional()?;
                if enrolled.is_none() {
                    return Ok(None);
                }
                tx.execute(
                    "INSERT INTO revocations (workspace, sensor_id, reason, revoked_at, decommissioned, cert_sha256)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (sensor_id) DO UPDATE SET decommissioned = MAX(decommissioned, excluded.decommissioned)",
                    params![
                        r.workspace,
                        r.sensor_id,
                        r.reason,
                        r.revoked_at,
                        r.decommissioned as i64,
                        r.cert_sha256
                    ],
                )?;
                if r.uninstalled {
                    tx.execute(
                        "INSERT INTO uninstalls (sensor_id, at) VALUES (?1, ?2)
                         ON CONFLICT (sensor_id) DO NOTHING",
                        params![r.sensor_id, r.revoked_at],
                    )?;
                }
                record_change(tx, &r.workspace, &ChangeKind::Revoked)?;
                revocation_of(tx, &r.sensor_id)
            })
        })?;
        stored.ok_or_else(|| StoreError::NoSuchSensor(r.sensor_id.clone()))
    }

    pub(crate) fn import_policy_sync(
        &self,
        workspace: &str,
        version: u64,
        set_at: i64,
        policy: Option<uplink_policy::Policy>,
    ) -> Result<bool, StoreError> {
        let (doc, sealed) = encode_policy(&self.key(), workspace, version, policy)?;
        let done = self.write(|c| {
            immediate(c, |tx| {
                let exists = tx
                    .query_row(
                        "SELECT 1 FROM workspaces WHERE name = ?1",
                        [workspace],
                        |_| Ok(()),
                    )
                    .optional()?;
                if exists.is_none() {
                    return Ok(None);
                }
                let top: i64 = tx.query_row(
                    "SELECT COALESCE(MAX(version), 0) FROM policies WHERE workspace = ?1",
                    [workspace],
                    |r| r.get(0),
                )?;
                if top as u64 >= version {
                    return Ok(Some(false));
                }
                tx.execute(
                    "INSERT INTO policies (workspace, version, set_at, doc, password) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![workspace, version as i64, set_at, doc, sealed],
                )?;
                record_change(tx, workspace, &ChangeKind::Policy)?;
                Ok(Some(true))
            })
        })?;
        done.ok_or_else(|| StoreError::NoSuchWorkspace(workspace.into()))
    }

    pub(crate) fn import_previous_ca_sync(
        &self,
        workspace: &str,
        ca: &PreviousCa,
    ) -> Result<bool, StoreError> {
        let sealed = self.key().seal(
            &ca.key_pem,
            &lifecycle::previous_ca_key_context(workspace, &ca.sha256),
        );
        let done = self.write(|c| {
            immediate(c, |tx| {
                let current: Option<String> = tx
                    .query_row(
                        "SELECT ca_sha256 FROM workspaces WHERE name = ?1",
                        [workspace],
                        |r| r.get(0),
                    )
                    .optional()?;
                let Some(current) = current else {
                    return Ok(None);
                };
                let retired = tx
                    .query_row(
                        "SELECT 1 FROM retired_cas WHERE workspace = ?1 AND ca_sha256 = ?2",
                        params![workspace, ca.sha256],
                        |_| Ok(()),
                    )
                    .optional()?
                    .is_some();
                if current == ca.sha256 || retired {
                    return Ok(Some(false));
                }
                let n = tx.execute(
                    "INSERT INTO previous_cas (workspace, ca_sha256, ca_cert_pem, ca_key_pem, replaced_at)
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
                    params![workspace, ca.sha256, ca.cert_pem, sealed, ca.replaced_at],
                )?;
                if n > 0 {
                    record_change(tx, workspace, &ChangeKind::Rekeyed)?;
                }
                Ok(Some(n > 0))
            })
        })?;
        done.ok_or_else(|| StoreError::NoSuchWorkspace(workspace.into()))
    }

    pub(crate) fn retired_cas_sync(&self, workspace: &str) -> Result<Vec<RetiredCa>, StoreError> {
        self.read(|c| {
            let mut st = c.prepare(
                "SELECT ca_sha256, retired_at FROM retired_cas WHERE workspace = ?1 ORDER BY ca_sha256",
            )?;
            let rows = st.query_map([workspace], |r| {
                Ok(RetiredCa {
                    sha256: r.get(0)?,
                    retired_at: r.get(1)?,
                })
            })?;
            rows.collect()
        })
    }

    pub(crate) fn import_retired_ca_sync(
        &self,
        workspace: &str,
        ca: &RetiredCa,
    ) -> Result<bool, StoreError> {
        let done = self.write(|c| {
            immediate(c, |tx| {
                let exists: bool = tx.query_row(
                    "SELECT EXISTS (SELECT 1 FROM workspaces WHERE name = ?1)",
                    [workspace],
                    |r| r.get(0),
                )?;
                if !exists {
                    return Ok(None);
                }
                let n = tx.execute(
                    "INSERT INTO retired_cas (workspace, ca_sha256, retired_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT DO NOTHING",
                    params![workspace, ca.sha256, ca.retired_at],
                )?;
                let dropped = tx.execute(
                    "DELETE FROM previous_cas WHERE workspace = ?1 AND ca_sha256 = ?2",
                    params![workspace, ca.sha256],
                )?;
                if dropped > 0 {
                    record_change(tx, workspace, &ChangeKind::Rekeyed)?;
                }
                Ok(Some(n > 0))
            })
        })?;
        done.ok_or_else(|| StoreError::NoSuchWorkspace(workspace.into()))
    }

    pub(crate) fn sensor_cert_issuers_sync(
        &self,
        workspace: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        self.read(|c| {
            let mut st = c.prepare(
                "SELECT i.cert_sha256, i.ca_sha256 FROM cert_issuers i
                 JOIN sensors s ON s.cert_sha256 = i.cert_sha256
                 WHERE s.workspace = ?1 ORDER BY i.cert_sha256",
            )?;
            let rows = st.query_map([workspace], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
    }

    pub(crate) fn issued_certificates_sync(
        &self,
        workspace: &str,
    ) -> Result<Vec<backup::IssuedCertificate>, StoreError> {
        self.read(|c| {
            let mut st = c.prepare(
                "SELECT c.sensor_id, c.serial, c.cert_sha256 FROM certificates c
                 JOIN sensors s ON s.sensor_id = c.sensor_id
                 WHERE s.workspace = ?1 ORDER BY c.sensor_id, c.serial",
            )?;
            let rows = st.query_map([workspace], |r| {
                Ok(backup::IssuedCertificate {
                    sensor_id: r.get(0)?,
                    serial_hex: r.get(1)?,
                    cert_sha256: r.get(2)?,
                })
            })?;
            rows.collect()
        })
    }

    pub(crate) fn import_watermark_sync(
        &self,
        sensor_id: &str,
        through: Option<u64>,
        brought: &[(u64, u64)],
    ) -> Result<(), StoreError> {
        let through = through.map(|t| t.min(i64::MAX as u64) as i64);
        let found = self.write(|c| {
            immediate(c, |tx| {
                let Some((row, old)) = tx
                    .query_row(
                        "SELECT id, COALESCE(pruned_through, -1) FROM sensors WHERE sensor_id = ?1",
                        [sensor_id],
                        |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
                    )
                    .optional()?
                else {
                    return Ok(false);
                };
                let new = through.map_or(old, |t| t.max(old));
                if new > old {
                    tx.execute(
                        "UPDATE sensors SET pruned_through = ?2 WHERE id = ?1",
                        params![row, new],
                    )?;
                }
                // Only between the old watermark and the new one (below the old one this store
                // decided already).
                crate::holes::record_uncovered(tx, row, brought, old, new)?;
                Ok(true)
            })
        })?;
        if !found {
            return Err(StoreError::NoSuchSensor(sensor_id.to_owned()));
        }
        Ok(())
    }
}

/// A policy version's row (`doc`, sealed password) as this store keeps it, checked first.
fn encode_policy(
    key: &MasterKey,
    workspace: &str,
    version: u64,
    policy: Option<uplink_policy::Policy>,
) -> Result<(Option<String>, Option<String>), StoreError> {
    let Some(mut p) = policy else {
        return Ok((None, None));
    };
    uplink_store::policy::check(&p)?;
    p.version = version;
    let (doc, sealed) = uplink_store::policy::encode(key, workspace, &p)?;
    Ok((Some(doc), sealed))
}
