//! Sensor lifecycle in the SQLite store (format 8, table `revocations`): revoking and
//! decommissioning a sensor, one transaction each with its change-log entry.

use rusqlite::{params, Connection, OptionalExtension};
use uplink_store::lifecycle::MAX_REASON;
use uplink_store::*;

use crate::{record_change, SqliteStore};

// `uninstalled` from a table of its own (format 11): a step that only creates tables can be
// re-run on a store rewound by hand, where adding a column could not.
const COLUMNS: &str = "workspace, sensor_id, reason, revoked_at, decommissioned, cert_sha256,
    EXISTS (SELECT 1 FROM uninstalls u WHERE u.sensor_id = revocations.sensor_id)";

fn row_to_revocation(r: &rusqlite::Row<'_>) -> rusqlite::Result<Revocation> {
    Ok(Revocation {
        workspace: r.get(0)?,
        sensor_id: r.get(1)?,
        reason: r.get(2)?,
        revoked_at: r.get(3)?,
        decommissioned: r.get::<_, i64>(4)? != 0,
        cert_sha256: r.get(5)?,
        uninstalled: r.get::<_, bool>(6)?,
    })
}

/// The revocation of `sensor_id`, if it is revoked (inside the caller's transaction).
pub(crate) fn revocation_of(
    c: &Connection,
    sensor_id: &str,
) -> rusqlite::Result<Option<Revocation>> {
    c.query_row(
        &format!("SELECT {COLUMNS} FROM revocations WHERE sensor_id = ?1"),
        [sensor_id],
        row_to_revocation,
    )
    .optional()
}

impl SqliteStore {
    pub(crate) fn revoke_sensor_sync(
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
        let stored = self.write(|c| {
            let tx = c.unchecked_transaction()?;
            let cert: Option<String> = tx
                .query_row(
                    "SELECT cert_sha256 FROM sensors WHERE sensor_id = ?1 AND workspace = ?2",
                    params![sensor_id, workspace],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(cert) = cert else {
                return Ok(None);
            };
            tx.execute(
                "INSERT INTO revocations (workspace, sensor_id, reason, revoked_at, decommissioned, cert_sha256)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (sensor_id) DO UPDATE SET decommissioned = MAX(decommissioned, excluded.decommissioned)",
                params![workspace, sensor_id, reason, now_ms(), decommission as i64, cert],
            )?;
            record_change(&tx, workspace, &ChangeKind::Revoked)?;
            let stored = revocation_of(&tx, sensor_id)?;
            tx.commit()?;
            Ok(stored)
        })?;
        stored.ok_or_else(|| StoreError::NoSuchSensor(sensor_id.into()))
    }

    pub(crate) fn revocations_sync(&self, workspace: &str) -> Result<Vec<Revocation>, StoreError> {
        self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM revocations WHERE workspace = ?1 ORDER BY revoked_at, sensor_id"
            ))?;
            let rows = st.query_map([workspace], row_to_revocation)?;
            rows.collect()
        })
    }

    pub(crate) fn record_certificate_sync(
        &self,
        sensor_id: &str,
        serial_hex: &str,
        cert_sha256: &str,
    ) -> Result<(), StoreError> {
        let res = self.write(|c| {
            c.execute(
                "INSERT INTO certificates (serial, sensor_id, cert_sha256, issued_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (serial) DO NOTHING",
                params![serial_hex, sensor_id, cert_sha256, now_ms()],
            )
        });
        match res {
            Ok(_) => Ok(()),
            // The sensor is not (or no longer) enrolled: the foreign key refused the row.
            Err(StoreError::Backend { ref detail, .. }) if detail.contains("FOREIGN KEY") => {
                Err(StoreError::NoSuchSensor(sensor_id.into()))
            }
            Err(e) => Err(e),
        }
    }

    pub(crate) fn revoked_serials_sync(
        &self,
        workspace: &str,
    ) -> Result<Vec<RevokedSerial>, StoreError> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT c.serial, r.revoked_at FROM revocations r JOIN certificates c ON c.sensor_id = r.sensor_id
                 WHERE r.workspace = ?1 ORDER BY c.serial",
            )?;
            let rows = st.query_map([workspace], |r| {
                Ok(RevokedSerial {
                    serial_hex: r.get(0)?,
                    revoked_at: r.get(1)?,
                })
            })?;
            rows.collect()
        })
    }

    pub(crate) fn record_audit_sync(&self, e: &AuditEntry) -> Result<(), StoreError> {
        self.write(|c| {
            c.execute(
                "INSERT INTO audit (workspace, at, actor, source, action, sensor_id, result, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    e.workspace,
                    e.at,
                    e.actor,
                    e.source,
                    e.action,
                    e.sensor_id,
                    e.result,
                    uplink_store::lifecycle::audit_detail(&e.detail)
                ],
            )
        })
        .map(|_| ())
    }

    pub(crate) fn audit_sync(
        &self,
        workspace: &str,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT workspace, at, actor, source, action, sensor_id, result, detail FROM
                 (SELECT * FROM audit WHERE workspace = ?1 ORDER BY id DESC LIMIT ?2) ORDER BY id",
            )?;
            let rows = st.query_map(params![workspace, limit], |r| {
                Ok(AuditEntry {
                    workspace: r.get(0)?,
                    at: r.get(1)?,
                    actor: r.get(2)?,
                    source: r.get(3)?,
                    action: r.get(4)?,
                    sensor_id: r.get(5)?,
                    result: r.get(6)?,
                    detail: r.get(7)?,
                })
            })?;
            rows.collect()
        })
    }

    pub(crate) fn set_access_key_sync(
        &self,
        workspace: &str,
        access_key: &str,
        hash: &str,
    ) -> Result<(), StoreError> {
        let sealed = self
            .key()
            .seal(access_key, &master::access_key_context(workspace));
        let n = self.write(|c| {
            let tx = c.unchecked_transaction()?;
            let n = tx.execute(
                "UPDATE workspaces SET access_key_sha256 = ?1, access_key = ?2 WHERE name = ?3",
                params![hash, sealed, workspace],
            )?;
            if n > 0 {
                record_change(&tx, workspace, &ChangeKind::Rekeyed)?;
            }
            tx.commit()?;
            Ok(n)
        })?;
        if n == 0 {
            return Err(StoreError::NoSuchWorkspace(workspace.into()));
        }
        Ok(())
    }
}

// Enrollment limits, certificate validity, uninstalls (format 11: `lifecycle_settings`,
// `rate_windows`, `uninstalls`).

/// Format 11's tables (the migration step and the schema of a new store).
pub(crate) const FORMAT_11: &str = "
CREATE TABLE IF NOT EXISTS lifecycle_settings (
    workspace TEXT PRIMARY KEY REFERENCES workspaces(name) ON DELETE CASCADE,
    client_cert_validity_secs INTEGER,
    enroll_limit INTEGER,
    failed_enroll_limit INTEGER,
    enroll_window_secs INTEGER
);
CREATE TABLE IF NOT EXISTS rate_windows (
    scope TEXT NOT NULL,
    window_start INTEGER NOT NULL,
    window_end INTEGER NOT NULL,
    hits INTEGER NOT NULL,
    PRIMARY KEY (scope, window_start)
);
CREATE INDEX IF NOT EXISTS rate_windows_by_end ON rate_windows(window_end);
CREATE TABLE IF NOT EXISTS uninstalls (
    sensor_id TEXT PRIMARY KEY REFERENCES sensors(sensor_id) ON DELETE CASCADE,
    at INTEGER NOT NULL
);";

fn settings_of(c: &Connection, workspace: &str) -> rusqlite::Result<Option<LifecycleSettings>> {
    let exists: Option<i64> = c
        .query_row(
            "SELECT 1 FROM workspaces WHERE name = ?1",
            [workspace],
            |r| r.get(0),
        )
        .optional()?;
    if exists.is_none() {
        return Ok(None);
    }
    let d = LifecycleSettings::default();
    let row = c
        .query_row(
            "SELECT client_cert_validity_secs, enroll_limit, failed_enroll_limit, enroll_window_secs
             FROM lifecycle_settings WHERE workspace = ?1",
            [workspace],
            |r| {
                Ok(LifecycleChange {
                    client_cert_validity_secs: r.get::<_, Option<i64>>(0)?.map(|v| v as u64),
                    enroll_limit: r.get::<_, Option<i64>>(1)?.map(|v| v as u32),
                    failed_enroll_limit: r.get::<_, Option<i64>>(2)?.map(|v| v as u32),
                    enroll_window_secs: r.get::<_, Option<i64>>(3)?.map(|v| v as u64),
                })
            },
        )
        .optional()?;
    Ok(Some(row.map_or(d, |stored| stored.apply(d))))
}

impl SqliteStore {
    pub(crate) fn lifecycle_settings_sync(
        &self,
        workspace: &str,
    ) -> Result<LifecycleSettings, StoreError> {
        self.read(|c| settings_of(c, workspace))?
            .ok_or_else(|| StoreError::NoSuchWorkspace(workspace.into()))
    }

    pub(crate) fn set_lifecycle_settings_sync(
        &self,
        workspace: &str,
        change: LifecycleChange,
    ) -> Result<LifecycleSettings, StoreError> {
        change.validate()?;
        let stored = self.write(|c| {
            crate::immediate(c, |c| {
                if settings_of(c, workspace)?.is_none() {
                    return Ok(None);
                }
                c.execute(
                    "INSERT INTO lifecycle_settings (workspace, client_cert_validity_secs, enroll_limit, failed_enroll_limit, enroll_window_secs)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (workspace) DO UPDATE SET
                       client_cert_validity_secs = COALESCE(excluded.client_cert_validity_secs, client_cert_validity_secs),
                       enroll_limit = COALESCE(excluded.enroll_limit, enroll_limit),
                       failed_enroll_limit = COALESCE(excluded.failed_enroll_limit, failed_enroll_limit),
                       enroll_window_secs = COALESCE(excluded.enroll_window_secs, enroll_window_secs)",
                    params![
                        workspace,
                        change.client_cert_validity_secs.map(|v| v as i64),
                        change.enroll_limit.map(i64::from),
                        change.failed_enroll_limit.map(i64::from),
                        change.enroll_window_secs.map(|v| v as i64),
                    ],
                )?;
                record_change(c, workspace, &ChangeKind::Settings)?;
                settings_of(c, workspace)
            })
        })?;
        stored.ok_or_else(|| StoreError::NoSuchWorkspace(workspace.into()))
    }

    pub(crate) fn rate_hit_sync(
        &self,
        scope: &str,
        now_ms: i64,
        window_ms: i64,
        limit: u64,
    ) -> Result<RateHit, StoreError> {
        let (start, end) = lifecycle::rate_window(now_ms, window_ms);
        self.write(|c| {
            crate::immediate(c, |c| {
                c.execute("DELETE FROM rate_windows WHERE window_end <= ?1", [now_ms])?;
                let hits: i64 = c
                    .query_row(
                        "SELECT hits FROM rate_windows WHERE scope = ?1 AND window_start = ?2",
                        params![scope, start],
                        |r| r.get(0),
                    )
                    .optional()?
                    .unwrap_or(0);
                if hits as u64 >= limit {
                    return Ok(RateHit::Limited {
                        retry_after_ms: end - now_ms,
                    });
                }
                c.execute(
                    "INSERT INTO rate_windows (scope, window_start, window_end, hits) VALUES (?1, ?2, ?3, 1)
                     ON CONFLICT (scope, window_start) DO UPDATE SET hits = hits + 1",
                    params![scope, start, end],
                )?;
                Ok(RateHit::Counted {
                    count: hits as u64 + 1,
                })
            })
        })
    }

    pub(crate) fn rate_count_sync(
        &self,
        scope: &str,
        now_ms: i64,
        window_ms: i64,
    ) -> Result<u64, StoreError> {
        let (start, _) = lifecycle::rate_window(now_ms, window_ms);
        self.read(|c| {
            c.query_row(
                "SELECT hits FROM rate_windows WHERE scope = ?1 AND window_start = ?2",
                params![scope, start],
                |r| r.get::<_, i64>(0),
            )
            .optional()
        })
        .map(|n| n.unwrap_or(0) as u64)
    }
}

impl SqliteStore {
    pub(crate) fn mark_uninstalled_sync(
        &self,
        workspace: &str,
        sensor_id: &str,
    ) -> Result<Revocation, StoreError> {
        let stored = self.write(|c| {
            crate::immediate(c, |tx| {
                let cert: Option<String> = tx
                    .query_row(
                        "SELECT cert_sha256 FROM sensors WHERE sensor_id = ?1 AND workspace = ?2",
                        params![sensor_id, workspace],
                        |r| r.get(0),
                    )
                    .optional()?;
                let Some(cert) = cert else {
                    return Ok(None);
                };
                let now = now_ms();
                tx.execute(
                    "INSERT INTO revocations (workspace, sensor_id, reason, revoked_at, decommissioned, cert_sha256)
                     VALUES (?1, ?2, ?3, ?4, 0, ?5)
                     ON CONFLICT (sensor_id) DO NOTHING",
                    params![
                        workspace,
                        sensor_id,
                        uplink_store::lifecycle::UNINSTALLED_REASON,
                        now,
                        cert
                    ],
                )?;
                tx.execute(
                    "INSERT INTO uninstalls (sensor_id, at) VALUES (?1, ?2)
                     ON CONFLICT (sensor_id) DO NOTHING",
                    params![sensor_id, now],
                )?;
                record_change(tx, workspace, &ChangeKind::Revoked)?;
                revocation_of(tx, sensor_id)
            })
        })?;
        stored.ok_or_else(|| StoreError::NoSuchSensor(sensor_id.into()))
    }
}

// CA rotation (format 12: `previous_cas`, `cert_issuers`).

/// Format 12's tables (the migration step and the schema of a new store).
pub(crate) const FORMAT_12: &str = "
CREATE TABLE IF NOT EXISTS previous_cas (
    workspace TEXT NOT NULL REFERENCES workspaces(name) ON DELETE CASCADE,
    ca_sha256 TEXT NOT NULL,
    ca_cert_pem TEXT NOT NULL,
    ca_key_pem TEXT NOT NULL,
    replaced_at INTEGER NOT NULL,
    PRIMARY KEY (workspace, ca_sha256)
);
CREATE TABLE IF NOT EXISTS cert_issuers (
    cert_sha256 TEXT PRIMARY KEY,
    ca_sha256 TEXT NOT NULL
);
";

/// Re-seals the previous CAs' keys under `new` (inside a master key rotation's transaction).
pub(crate) fn reseal_previous_cas(
    tx: &Connection,
    old: &MasterKey,
    new: &MasterKey,
) -> rusqlite::Result<Result<u64, StoreError>> {
    let rows: Vec<(String, String, String)> = {
        let mut st = tx.prepare("SELECT workspace, ca_sha256, ca_key_pem FROM previous_cas")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    for (ws, sha, stored) in &rows {
        let ctx = lifecycle::previous_ca_key_context(ws, sha);
        let plain = match old.open(stored, &ctx) {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        tx.execute(
            "UPDATE previous_cas SET ca_key_pem = ?3 WHERE workspace = ?1 AND ca_sha256 = ?2",
            params![ws, sha, new.seal(&plain, &ctx)],
        )?;
    }
    Ok(Ok(rows.len() as u64))
}

impl SqliteStore {
    pub(crate) fn rotate_ca_sync(
        &self,
        workspace: &str,
        cert_pem: &str,
        key_pem: &str,
        sha256: &str,
    ) -> Result<(), StoreError> {
        let key = self.key();
        let new_sealed = key.seal(key_pem, &master::ca_key_context(workspace));
        enum Outcome {
            Done,
            NoWorkspace,
            Pending(Vec<String>),
            Raced,
        }
        // The old key moves to a context naming its CA: opened here, sealed again; the
        // transaction checks that the CA did not change in between.
        let current: Option<(String, String, String)> = self.read(|c| {
            c.query_row(
                "SELECT ca_cert_pem, ca_key_pem, ca_sha256 FROM workspaces WHERE name = ?1",
                [workspace],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
        })?;
        let Some((old_cert, old_sealed, old_sha)) = current else {
            return Err(StoreError::NoSuchWorkspace(workspace.into()));
        };
        let old_key = key.open(&old_sealed, &master::ca_key_context(workspace))?;
        let old_resealed = key.seal(
            &old_key,
            &lifecycle::previous_ca_key_context(workspace, &old_sha),
        );
        let outcome = self.write(|c| {
            let tx = c.unchecked_transaction()?;
            let now: Option<String> = tx
                .query_row(
                    "SELECT ca_sha256 FROM workspaces WHERE name = ?1",
                    [workspace],
                    |r| r.get(0),
                )
                .optional()?;
            match now {
                None => return Ok(Outcome::NoWorkspace),
                Some(sha) if sha != old_sha => return Ok(Outcome::Raced),
                Some(_) => {}
            }
            let pending: Vec<String> = {
                let mut st =
                    tx.prepare("SELECT ca_sha256 FROM previous_cas WHERE workspace = ?1")?;
                let rows = st.query_map([workspace], |r| r.get(0))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            if !pending.is_empty() {
                return Ok(Outcome::Pending(pending));
            }
            tx.execute(
                "INSERT INTO previous_cas (workspace, ca_sha256, ca_cert_pem, ca_key_pem, replaced_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![workspace, old_sha, old_cert, old_resealed, now_ms()],
            )?;
            tx.execute(
                "UPDATE workspaces SET ca_cert_pem = ?1, ca_key_pem = ?2, ca_sha256 = ?3 WHERE name = ?4",
                params![cert_pem, new_sealed, sha256, workspace],
            )?;
            record_change(&tx, workspace, &ChangeKind::Rekeyed)?;
            tx.commit()?;
            Ok(Outcome::Done)
        })?;
        match outcome {
            Outcome::Done => Ok(()),
            Outcome::NoWorkspace => Err(StoreError::NoSuchWorkspace(workspace.into())),
            Outcome::Pending(p) => Err(StoreError::Settings(format!(
                "workspace {workspace:?} still has the CA it replaced last time ({}): retire it first (`uplink workspace rotate-ca {workspace} --retire-old`)",
                p.join(", ")
            ))),
            Outcome::Raced => Err(StoreError::Settings(format!(
                "the CA of workspace {workspace:?} changed while rotating it: run the command again"
            ))),
        }
    }

    pub(crate) fn previous_cas_sync(&self, workspace: &str) -> Result<Vec<PreviousCa>, StoreError> {
        let rows: Vec<PreviousCa> = self.read(|c| {
            let mut st = c.prepare(
                "SELECT ca_sha256, ca_cert_pem, ca_key_pem, replaced_at FROM previous_cas WHERE workspace = ?1 ORDER BY replaced_at, ca_sha256",
            )?;
            let rows = st.query_map([workspace], |r| {
                Ok(PreviousCa {
                    sha256: r.get(0)?,
                    cert_pem: r.get(1)?,
                    key_pem: r.get(2)?,
                    replaced_at: r.get(3)?,
                })
            })?;
            rows.collect()
        })?;
        let key = self.key();
        rows.into_iter()
            .map(|mut p| {
                p.key_pem = key.open(
                    &p.key_pem,
                    &lifecycle::previous_ca_key_context(workspace, &p.sha256),
                )?;
                Ok(p)
            })
            .collect()
    }

    pub(crate) fn retire_previous_cas_sync(
        &self,
        workspace: &str,
    ) -> Result<Vec<String>, StoreError> {
        let (exists, gone) = self.write(|c| {
            let tx = c.unchecked_transaction()?;
            let exists: bool = tx
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM workspaces WHERE name = ?1)",
                    [workspace],
                    |r| r.get(0),
                )?;
            let gone: Vec<String> = {
                let mut st = tx.prepare(
                    "SELECT ca_sha256 FROM previous_cas WHERE workspace = ?1 ORDER BY replaced_at, ca_sha256",
                )?;
                let rows = st.query_map([workspace], |r| r.get(0))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            if !gone.is_empty() {
                // Remembered: a copy made during the rotation must not trust them again.
                tx.execute(
                    "INSERT INTO retired_cas (workspace, ca_sha256, retired_at)
                     SELECT workspace, ca_sha256, ?2 FROM previous_cas WHERE workspace = ?1
                     ON CONFLICT DO NOTHING",
                    params![workspace, now_ms()],
                )?;
                tx.execute("DELETE FROM previous_cas WHERE workspace = ?1", [workspace])?;
                record_change(&tx, workspace, &ChangeKind::Rekeyed)?;
            }
            tx.commit()?;
            Ok((exists, gone))
        })?;
        if !exists {
            return Err(StoreError::NoSuchWorkspace(workspace.into()));
        }
        Ok(gone)
    }
}
