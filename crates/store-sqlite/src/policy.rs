//! Central policy in the SQLite store (format 10, table `policies`; see `uplink_store::policy`):
//! each version one row, the password sealed under the master key, a change-log entry in the
//! same transaction.

use rusqlite::{params, Connection, OptionalExtension};
use uplink_policy::Policy;
use uplink_store::policy::{self as at_rest, PolicyVersion};
use uplink_store::*;

use crate::{record_change, SqliteStore};

/// Format 10 (format 9 is another piece of work's; IF NOT EXISTS: a step may be re-run).
pub(crate) const FORMAT_10: &str = "
CREATE TABLE IF NOT EXISTS policies (
    workspace TEXT NOT NULL,
    version INTEGER NOT NULL,
    set_at INTEGER NOT NULL,
    doc TEXT,
    password TEXT,
    PRIMARY KEY (workspace, version)
);";

fn workspace_exists(c: &Connection, workspace: &str) -> rusqlite::Result<bool> {
    c.query_row(
        "SELECT 1 FROM workspaces WHERE name = ?1",
        [workspace],
        |_| Ok(()),
    )
    .optional()
    .map(|r| r.is_some())
}

/// A version appended: its number and policy (`None`: cleared).
type Appended = (u64, Option<Policy>);

impl SqliteStore {
    /// Appends a version (`policy` `None`: cleared); returns it.
    fn append_policy_sync(
        &self,
        workspace: &str,
        policy: Option<Policy>,
    ) -> Result<(u64, Option<Policy>), StoreError> {
        if let Some(p) = &policy {
            at_rest::check(p)?;
        }
        let key = self.key();
        // BEGIN IMMEDIATE: a deferred transaction could fail to upgrade to a write when the
        // service's writer commits in between (SQLITE_BUSY at once, no busy wait).
        let done = self.write(|c| {
            crate::immediate(c, |tx| self.append_policy_tx(tx, &key, workspace, policy))
        })??;
        done.ok_or_else(|| StoreError::NoSuchWorkspace(workspace.into()))
    }

    /// [`Self::append_policy_sync`] inside its transaction.
    fn append_policy_tx(
        &self,
        tx: &Connection,
        key: &MasterKey,
        workspace: &str,
        policy: Option<Policy>,
    ) -> rusqlite::Result<Result<Option<Appended>, StoreError>> {
        {
            if !workspace_exists(tx, workspace)? {
                return Ok(Ok(None));
            }
            let version: i64 = tx.query_row(
                "SELECT COALESCE(MAX(version), 0) + 1 FROM policies WHERE workspace = ?1",
                [workspace],
                |r| r.get(0),
            )?;
            let version = version as u64;
            let mut policy = policy;
            let (doc, sealed) = match policy.as_mut() {
                Some(p) => {
                    p.version = version;
                    match at_rest::encode(key, workspace, p) {
                        Ok((d, s)) => (Some(d), s),
                        Err(e) => return Ok(Err(e)),
                    }
                }
                None => (None, None),
            };
            tx.execute(
                "INSERT INTO policies (workspace, version, set_at, doc, password) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![workspace, version as i64, now_ms(), doc, sealed],
            )?;
            record_change(tx, workspace, &ChangeKind::Policy)?;
            Ok(Ok(Some((version, policy))))
        }
    }

    pub(crate) fn set_policy_sync(
        &self,
        workspace: &str,
        policy: Policy,
    ) -> Result<Policy, StoreError> {
        let (_, p) = self.append_policy_sync(workspace, Some(policy))?;
        Ok(p.expect("a policy was given"))
    }

    pub(crate) fn clear_policy_sync(&self, workspace: &str) -> Result<u64, StoreError> {
        Ok(self.append_policy_sync(workspace, None)?.0)
    }

    pub(crate) fn current_policy_sync(
        &self,
        workspace: &str,
    ) -> Result<(u64, Option<Policy>), StoreError> {
        let row: Option<(i64, Option<String>, Option<String>)> = self.read(|c| {
            c.prepare_cached(
                "SELECT version, doc, password FROM policies WHERE workspace = ?1 ORDER BY version DESC LIMIT 1",
            )?
            .query_row([workspace], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()
        })?;
        let Some((version, doc, sealed)) = row else {
            return Ok((0, None));
        };
        let version = version as u64;
        let policy = at_rest::decode(
            &self.key(),
            workspace,
            version,
            doc.as_deref(),
            sealed.as_deref(),
        )?;
        Ok((version, policy))
    }

    pub(crate) fn policy_versions_sync(
        &self,
        workspace: &str,
    ) -> Result<Vec<PolicyVersion>, StoreError> {
        let rows: Vec<(i64, i64, Option<String>)> = self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT version, set_at, doc FROM policies WHERE workspace = ?1 ORDER BY version DESC",
            )?;
            let rows = st.query_map([workspace], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            rows.collect()
        })?;
        rows.into_iter()
            .map(|(version, set_at, doc)| {
                let version = version as u64;
                Ok(PolicyVersion {
                    workspace: workspace.to_owned(),
                    version,
                    set_at,
                    policy: doc
                        .map(|d| at_rest::decode_redacted(workspace, version, &d))
                        .transpose()?,
                })
            })
            .collect()
    }
}

/// Re-seals every policy password under `new` (master-key rotation, inside its transaction).
/// Returns how many were re-sealed, or the error opening one.
pub(crate) fn reseal(
    tx: &Connection,
    old: &MasterKey,
    new: &MasterKey,
) -> rusqlite::Result<Result<u64, StoreError>> {
    let rows: Vec<(String, i64, String)> = {
        let mut st = tx.prepare(
            "SELECT workspace, version, password FROM policies WHERE password IS NOT NULL",
        )?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let mut n = 0;
    for (ws, version, sealed) in rows {
        let ctx = at_rest::password_context(&ws, version as u64);
        let resealed = match old.open(&sealed, &ctx) {
            Ok(p) => new.seal(&p, &ctx),
            Err(e) => return Ok(Err(e)),
        };
        tx.execute(
            "UPDATE policies SET password = ?3 WHERE workspace = ?1 AND version = ?2",
            params![ws, version, resealed],
        )?;
        n += 1;
    }
    Ok(Ok(n))
}
