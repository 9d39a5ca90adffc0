//! Central policy in the PostgreSQL store (migration 0009, table `policies`; see
//! `uplink_store::policy`): each version one row, the password sealed under the master key, a
//! change-log entry in the same transaction. The workspace's row is locked while a version is
//! numbered, so two administrators setting a policy at once get two versions, in order.

use uplink_policy::Policy;
use uplink_store::policy::{self as at_rest, PolicyVersion};
use uplink_store::*;

use crate::{record_change, PostgresStore};

impl PostgresStore {
    /// Locks the workspace's row (FOR UPDATE) for the rest of `tx`: rotations, retirements,
    /// policy versions, imports and deletion of one workspace come one after the other.
    /// [`StoreError::NoSuchWorkspace`] when there is none.
    pub(crate) async fn lock_workspace(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        workspace: &str,
    ) -> Result<(), StoreError> {
        let found = tx
            .query_opt(
                "SELECT 1 FROM workspaces WHERE name = $1 FOR UPDATE",
                &[&workspace],
            )
            .await
            .map_err(self.err())?;
        if found.is_none() {
            return Err(StoreError::NoSuchWorkspace(workspace.into()));
        }
        Ok(())
    }

    /// Locks the workspace's row (policy versions are numbered in order: a second writer
    /// waits) and returns its highest policy version, 0 when none.
    pub(crate) async fn lock_policies(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        workspace: &str,
    ) -> Result<i64, StoreError> {
        self.lock_workspace(tx, workspace).await?;
        Ok(tx
            .query_one(
                "SELECT COALESCE(MAX(version), 0) FROM policies WHERE workspace = $1",
                &[&workspace],
            )
            .await
            .map_err(self.err())?
            .get(0))
    }

    async fn append_policy_pg(
        &self,
        workspace: &str,
        mut policy: Option<Policy>,
    ) -> Result<(u64, Option<Policy>), StoreError> {
        if let Some(p) = &policy {
            at_rest::check(p)?;
        }
        let key = self.key()?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.err())?;
        let version = self.lock_policies(&tx, workspace).await? + 1;
        let (doc, sealed) = match policy.as_mut() {
            Some(p) => {
                p.version = version as u64;
                let (d, s) = at_rest::encode(&key, workspace, p)?;
                (Some(d), s)
            }
            None => (None, None),
        };
        tx.execute(
            "INSERT INTO policies (workspace, version, set_at, doc, password) VALUES ($1, $2, $3, $4, $5)",
            &[&workspace, &version, &now_ms(), &doc, &sealed],
        )
        .await
        .map_err(self.err())?;
        record_change(&tx, workspace, &ChangeKind::Policy)
            .await
            .map_err(self.err())?;
        tx.commit().await.map_err(self.err())?;
        Ok((version as u64, policy))
    }

    pub(crate) async fn set_policy_pg(
        &self,
        workspace: &str,
        policy: Policy,
    ) -> Result<Policy, StoreError> {
        let (_, p) = self.append_policy_pg(workspace, Some(policy)).await?;
        Ok(p.expect("a policy was given"))
    }

    pub(crate) async fn clear_policy_pg(&self, workspace: &str) -> Result<u64, StoreError> {
        Ok(self.append_policy_pg(workspace, None).await?.0)
    }

    pub(crate) async fn current_policy_pg(
        &self,
        workspace: &str,
    ) -> Result<(u64, Option<Policy>), StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT version, doc, password FROM policies WHERE workspace = $1 ORDER BY version DESC LIMIT 1",
                &[&workspace],
            )
            .await
            .map_err(self.err())?;
        let Some(row) = row else {
            return Ok((0, None));
        };
        let version = row.get::<_, i64>(0) as u64;
        let doc: Option<String> = row.get(1);
        let sealed: Option<String> = row.get(2);
        let policy = at_rest::decode(
            &self.key()?,
            workspace,
            version,
            doc.as_deref(),
            sealed.as_deref(),
        )?;
        Ok((version, policy))
    }

    pub(crate) async fn policy_versions_pg(
        &self,
        workspace: &str,
    ) -> Result<Vec<PolicyVersion>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT version, set_at, doc FROM policies WHERE workspace = $1 ORDER BY version DESC",
                &[&workspace],
            )
            .await
            .map_err(self.err())?;
        rows.iter()
            .map(|r| {
                let version = r.get::<_, i64>(0) as u64;
                let doc: Option<String> = r.get(2);
                Ok(PolicyVersion {
                    workspace: workspace.to_owned(),
                    version,
                    set_at: r.get(1),
                    policy: doc
                        .map(|d| at_rest::decode_redacted(workspace, version, &d))
                        .transpose()?,
                })
            })
            .collect()
    }
}

/// Re-seals every policy password under `new` (master-key rotation, inside its transaction);
/// returns how many.
pub(crate) async fn reseal(
    tx: &tokio_postgres::Transaction<'_>,
    old: &MasterKey,
    new: &MasterKey,
) -> Result<Result<u64, StoreError>, tokio_postgres::Error> {
    let rows = tx
        .query(
            "SELECT workspace, version, password FROM policies WHERE password IS NOT NULL FOR UPDATE",
            &[],
        )
        .await?;
    let mut n = 0;
    for r in &rows {
        let (ws, version, sealed): (String, i64, String) = (r.get(0), r.get(1), r.get(2));
        let ctx = at_rest::password_context(&ws, version as u64);
        let resealed = match old.open(&sealed, &ctx) {
            Ok(p) => new.seal(&p, &ctx),
            Err(e) => return Ok(Err(e)),
        };
        tx.execute(
            "UPDATE policies SET password = $3 WHERE workspace = $1 AND version = $2",
            &[&ws, &version, &resealed],
        )
        .await?;
        n += 1;
    }
    Ok(Ok(n))
}
