//! Admin API tokens in the PostgreSQL store (table `admin_tokens`, migration 6): only the
//! SHA-256 of each secret; the workspace's deletion removes its tokens (`ON DELETE CASCADE`).

use tokio_postgres::error::SqlState;
use uplink_store::*;

use crate::PostgresStore;

const COLUMNS: &str = "id, workspace, name, role, created_at";

fn row_to_token(r: &tokio_postgres::Row) -> AdminToken {
    let role: String = r.get(3);
    AdminToken {
        id: r.get(0),
        workspace: r.get(1),
        name: r.get(2),
        // A role written by a newer build reads as the least privilege.
        role: TokenRole::parse(&role).unwrap_or(TokenRole::Viewer),
        created_at: r.get(4),
    }
}

impl PostgresStore {
    async fn require_workspace(
        &self,
        client: &deadpool_postgres::Object,
        workspace: &str,
    ) -> Result<(), StoreError> {
        let found = client
            .query_opt("SELECT 1 FROM workspaces WHERE name = $1", &[&workspace])
            .await
            .map_err(self.err())?;
        match found {
            Some(_) => Ok(()),
            None => Err(StoreError::NoSuchWorkspace(workspace.to_owned())),
        }
    }

    pub(crate) async fn create_token_pg(
        &self,
        token: &AdminToken,
        secret_sha256: &str,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        let res = client
            .execute(
                "INSERT INTO admin_tokens (id, workspace, name, role, secret_sha256, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
                &[&token.id, &token.workspace, &token.name, &token.role.as_str(), &secret_sha256, &token.created_at],
            )
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                Err(StoreError::TokenExists {
                    workspace: token.workspace.clone(),
                    name: token.name.clone(),
                })
            }
            Err(e) if e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) => {
                Err(StoreError::NoSuchWorkspace(token.workspace.clone()))
            }
            Err(e) => Err(self.err()(e)),
        }
    }

    pub(crate) async fn tokens_pg(&self, workspace: &str) -> Result<Vec<AdminToken>, StoreError> {
        let client = self.client().await?;
        self.require_workspace(&client, workspace).await?;
        let rows = client
            .query(
                &format!("SELECT {COLUMNS} FROM admin_tokens WHERE workspace = $1 ORDER BY created_at, id"),
                &[&workspace],
            )
            .await
            .map_err(self.err())?;
        Ok(rows.iter().map(row_to_token).collect())
    }

    pub(crate) async fn revoke_token_pg(
        &self,
        workspace: &str,
        name_or_id: &str,
    ) -> Result<Option<AdminToken>, StoreError> {
        let client = self.client().await?;
        self.require_workspace(&client, workspace).await?;
        let row = client
            .query_opt(
                &format!("DELETE FROM admin_tokens WHERE workspace = $1 AND (name = $2 OR id = $2) RETURNING {COLUMNS}"),
                &[&workspace, &name_or_id],
            )
            .await
            .map_err(self.err())?;
        Ok(row.as_ref().map(row_to_token))
    }

    pub(crate) async fn token_by_hash_pg(
        &self,
        secret_sha256: &str,
    ) -> Result<Option<AdminToken>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!("SELECT {COLUMNS} FROM admin_tokens WHERE secret_sha256 = $1"),
                &[&secret_sha256],
            )
            .await
            .map_err(self.err())?;
        Ok(row.as_ref().map(row_to_token))
    }
}

const DELIVERY_COLUMNS: &str = "id, workspace, url, event, issue_id, body, state, attempts, created_at, next_attempt_at, delivered_at, last_error";

fn row_to_delivery(r: &tokio_postgres::Row) -> Delivery {
    Delivery {
        id: r.get(0),
        workspace: r.get(1),
        url: r.get(2),
        event: r.get(3),
        issue_id: r.get(4),
        body: r.get(5),
        state: r.get(6),
        attempts: r.get::<_, i32>(7).max(0) as u32,
        created_at: r.get(8),
        next_attempt_at: r.get(9),
        delivered_at: r.get(10),
        last_error: r.get(11),
    }
}

/// Records the deliveries of one sensor's issue writes, inside the fleet evaluation's
/// transaction.
pub(crate) async fn record_deliveries(
    tx: &tokio_postgres::Transaction<'_>,
    now_ms: i64,
    workspace: &str,
    before: &[uplink_store::Issue],
    writes: &[uplink_store::Issue],
) -> Result<(), tokio_postgres::Error> {
    let events = uplink_store::webhooks::issue_events(before, writes);
    if events.is_empty() {
        return Ok(());
    }
    let urls: Vec<String> = tx
        .query(
            "SELECT url FROM webhooks WHERE workspace = $1 ORDER BY url",
            &[&workspace],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for (event, issue) in events {
        let body = uplink_store::webhooks::body(event, workspace, issue);
        for url in &urls {
            tx.execute(
                "INSERT INTO webhook_deliveries (workspace, url, event, issue_id, body, state, created_at, next_attempt_at) VALUES ($1, $2, $3, $4, $5, 'pending', $6, $6)",
                &[&workspace, url, &event.as_str(), &issue.issue_id, &body, &now_ms],
            )
            .await?;
        }
    }
    Ok(())
}

impl PostgresStore {
    pub(crate) async fn set_webhooks_pg(
        &self,
        workspace: &str,
        hooks: &[Webhook],
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        self.require_workspace(&client, workspace).await?;
        // Secrets are sealed under the master key before they reach the database (issue #23).
        let key = self.key()?;
        let tx = client.transaction().await.map_err(self.err())?;
        tx.execute("DELETE FROM webhooks WHERE workspace = $1", &[&workspace])
            .await
            .map_err(self.err())?;
        for h in hooks {
            let sealed = uplink_store::webhooks::seal_secret(&key, workspace, &h.url, &h.secret);
            tx.execute(
                "INSERT INTO webhooks (workspace, url, secret) VALUES ($1, $2, $3) ON CONFLICT (workspace, url) DO UPDATE SET secret = excluded.secret",
                &[&workspace, &h.url, &sealed],
            )
            .await
            .map_err(self.err())?;
        }
        tx.commit().await.map_err(self.err())
    }

    pub(crate) async fn webhooks_pg(&self, workspace: &str) -> Result<Vec<Webhook>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT url, secret FROM webhooks WHERE workspace = $1 ORDER BY url",
                &[&workspace],
            )
            .await
            .map_err(self.err())?;
        let key = self.key()?;
        rows.iter()
            .map(|r| {
                let url: String = r.get(0);
                let stored: String = r.get(1);
                let secret = uplink_store::webhooks::open_secret(&key, workspace, &url, &stored)?;
                Ok(Webhook { url, secret })
            })
            .collect()
    }

    pub(crate) async fn claim_deliveries_pg(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<(Delivery, Option<String>)>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "UPDATE webhook_deliveries SET claimed_until = $2, attempts = attempts + 1
                     WHERE id IN (SELECT id FROM webhook_deliveries WHERE state = 'pending' AND next_attempt_at <= $1
                                  AND (claimed_until IS NULL OR claimed_until < $1) ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED)
                     RETURNING {DELIVERY_COLUMNS}"
                ),
                &[&now_ms, &(now_ms + lease_ms), &(limit as i64)],
            )
            .await
            .map_err(self.err())?;
        let key = self.key()?;
        let mut out = Vec::new();
        for r in &rows {
            let d = row_to_delivery(r);
            let stored: Option<String> = client
                .query_opt(
                    "SELECT secret FROM webhooks WHERE workspace = $1 AND url = $2",
                    &[&d.workspace, &d.url],
                )
                .await
                .map_err(self.err())?
                .map(|r| r.get(0));
            let secret = stored
                .map(|s| uplink_store::webhooks::open_secret(&key, &d.workspace, &d.url, &s))
                .transpose()?;
            out.push((d, secret));
        }
        out.sort_by_key(|(d, _)| d.id);
        Ok(out)
    }

    pub(crate) async fn finish_delivery_pg(
        &self,
        id: i64,
        outcome: &uplink_store::webhooks::Outcome,
    ) -> Result<(), StoreError> {
        use uplink_store::webhooks::Outcome;
        let client = self.client().await?;
        let res = match outcome {
            Outcome::Delivered { at } => {
                client.execute(
                    "UPDATE webhook_deliveries SET state = 'delivered', delivered_at = $2, claimed_until = NULL, last_error = NULL WHERE id = $1",
                    &[&id, at],
                )
                .await
            }
            Outcome::Retry { next_at, error } => {
                client.execute(
                    "UPDATE webhook_deliveries SET next_attempt_at = $2, last_error = $3, claimed_until = NULL WHERE id = $1",
                    &[&id, next_at, error],
                )
                .await
            }
            Outcome::Failed { error } => {
                client.execute(
                    "UPDATE webhook_deliveries SET state = 'failed', last_error = $2, claimed_until = NULL WHERE id = $1",
                    &[&id, error],
                )
                .await
            }
        };
        res.map_err(self.err())?;
        Ok(())
    }

    pub(crate) async fn deliveries_pg(&self, workspace: &str) -> Result<Vec<Delivery>, StoreError> {
        let client = self.client().await?;
        self.require_workspace(&client, workspace).await?;
        let rows = client
            .query(
                &format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE workspace = $1 ORDER BY id DESC"),
                &[&workspace],
            )
            .await
            .map_err(self.err())?;
        Ok(rows.iter().map(row_to_delivery).collect())
    }
}

impl PostgresStore {
    /// Seals the webhook secrets an earlier build stored plain (at connect, until none is left).
    pub(crate) async fn seal_plain_webhook_secrets(
        &self,
        client: &tokio_postgres::Client,
        key: &uplink_store::MasterKey,
    ) -> Result<(), StoreError> {
        let plain = client
            .query(
                "SELECT workspace, url, secret FROM webhooks WHERE secret NOT LIKE 'sealed:v1:%'",
                &[],
            )
            .await
            .map_err(self.err())?;
        for r in &plain {
            let (ws, url, secret): (String, String, String) = (r.get(0), r.get(1), r.get(2));
            let sealed = uplink_store::webhooks::seal_secret(key, &ws, &url, &secret);
            client
                .execute(
                    "UPDATE webhooks SET secret = $4 WHERE workspace = $1 AND url = $2 AND secret = $3",
                    &[&ws, &url, &secret, &sealed],
                )
                .await
                .map_err(self.err())?;
        }
        Ok(())
    }

    /// A master-key rotation's part for webhook secrets, inside its transaction: each opened
    /// with `old` and sealed with `new`; how many.
    pub(crate) async fn reseal_webhook_secrets(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        old: &uplink_store::MasterKey,
        new: &uplink_store::MasterKey,
    ) -> Result<u64, StoreError> {
        let rows = tx
            .query(
                "SELECT workspace, url, secret FROM webhooks FOR UPDATE",
                &[],
            )
            .await
            .map_err(self.err())?;
        for r in &rows {
            let (ws, url, stored): (String, String, String) = (r.get(0), r.get(1), r.get(2));
            let secret = uplink_store::webhooks::open_secret(old, &ws, &url, &stored)?;
            let sealed = uplink_store::webhooks::seal_secret(new, &ws, &url, &secret);
            tx.execute(
                "UPDATE webhooks SET secret = $3 WHERE workspace = $1 AND url = $2",
                &[&ws, &url, &sealed],
            )
            .await
            .map_err(self.err())?;
        }
        Ok(rows.len() as u64)
    }
}
