//! Admin API tokens in the SQLite store (table `admin_tokens`, format 7): only the SHA-256 of
//! each secret; the workspace's deletion removes its tokens (`ON DELETE CASCADE`).

use rusqlite::{params, OptionalExtension};
use uplink_store::*;

use crate::SqliteStore;

/// Everything format 7 adds: the tokens, the webhooks and their delivery log (also in a new
/// store's schema, through this constant).
pub(crate) const FORMAT_7: &str = "
CREATE TABLE IF NOT EXISTS admin_tokens (
    id TEXT PRIMARY KEY,
    workspace TEXT NOT NULL REFERENCES workspaces(name) ON DELETE CASCADE,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    UNIQUE (workspace, name)
);
CREATE TABLE IF NOT EXISTS webhooks (
    workspace TEXT NOT NULL REFERENCES workspaces(name) ON DELETE CASCADE,
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    PRIMARY KEY (workspace, url)
);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace TEXT NOT NULL REFERENCES workspaces(name) ON DELETE CASCADE,
    url TEXT NOT NULL,
    event TEXT NOT NULL,
    issue_id TEXT NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    claimed_until INTEGER,
    delivered_at INTEGER,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries(state, next_attempt_at);
";

const COLUMNS: &str = "id, workspace, name, role, created_at";

fn row_to_token(r: &rusqlite::Row<'_>) -> rusqlite::Result<AdminToken> {
    let role: String = r.get(3)?;
    Ok(AdminToken {
        id: r.get(0)?,
        workspace: r.get(1)?,
        name: r.get(2)?,
        // A role written by a newer build reads as the least privilege.
        role: TokenRole::parse(&role).unwrap_or(TokenRole::Viewer),
        created_at: r.get(4)?,
    })
}

impl SqliteStore {
    pub(crate) fn create_token_sync(
        &self,
        token: &AdminToken,
        secret_sha256: &str,
    ) -> Result<(), StoreError> {
        if self.workspace_sync(&token.workspace)?.is_none() {
            return Err(StoreError::NoSuchWorkspace(token.workspace.clone()));
        }
        let inserted = self.write(|c| {
            let res = c.execute(
                "INSERT INTO admin_tokens (id, workspace, name, role, secret_sha256, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![token.id, token.workspace, token.name, token.role.as_str(), secret_sha256, token.created_at],
            );
            match res {
                Ok(_) => Ok(true),
                Err(rusqlite::Error::SqliteFailure(f, _))
                    if f.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    Ok(false)
                }
                Err(e) => Err(e),
            }
        })?;
        if inserted {
            Ok(())
        } else {
            Err(StoreError::TokenExists {
                workspace: token.workspace.clone(),
                name: token.name.clone(),
            })
        }
    }

    pub(crate) fn tokens_sync(&self, workspace: &str) -> Result<Vec<AdminToken>, StoreError> {
        if self.workspace_sync(workspace)?.is_none() {
            return Err(StoreError::NoSuchWorkspace(workspace.into()));
        }
        self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM admin_tokens WHERE workspace = ?1 ORDER BY created_at, id"
            ))?;
            let rows = st.query_map([workspace], row_to_token)?;
            rows.collect()
        })
    }

    pub(crate) fn revoke_token_sync(
        &self,
        workspace: &str,
        name_or_id: &str,
    ) -> Result<Option<AdminToken>, StoreError> {
        if self.workspace_sync(workspace)?.is_none() {
            return Err(StoreError::NoSuchWorkspace(workspace.into()));
        }
        self.write(|c| {
            c.query_row(
                &format!(
                    "DELETE FROM admin_tokens WHERE workspace = ?1 AND (name = ?2 OR id = ?2) RETURNING {COLUMNS}"
                ),
                params![workspace, name_or_id],
                row_to_token,
            )
            .optional()
        })
    }

    pub(crate) fn token_by_hash_sync(
        &self,
        secret_sha256: &str,
    ) -> Result<Option<AdminToken>, StoreError> {
        self.read(|c| {
            c.query_row(
                &format!("SELECT {COLUMNS} FROM admin_tokens WHERE secret_sha256 = ?1"),
                [secret_sha256],
                row_to_token,
            )
            .optional()
        })
    }
}

const DELIVERY_COLUMNS: &str = "id, workspace, url, event, issue_id, body, state, attempts, created_at, next_attempt_at, delivered_at, last_error";

fn row_to_delivery(r: &rusqlite::Row<'_>) -> rusqlite::Result<Delivery> {
    Ok(Delivery {
        id: r.get(0)?,
        workspace: r.get(1)?,
        url: r.get(2)?,
        event: r.get(3)?,
        issue_id: r.get(4)?,
        body: r.get(5)?,
        state: r.get(6)?,
        attempts: r.get::<_, i64>(7)? as u32,
        created_at: r.get(8)?,
        next_attempt_at: r.get(9)?,
        delivered_at: r.get(10)?,
        last_error: r.get(11)?,
    })
}

/// Records the deliveries of one sensor's issue writes, inside the fleet evaluation's
/// transaction.
pub(crate) fn record_deliveries(
    tx: &rusqlite::Connection,
    now_ms: i64,
    workspace: &str,
    before: &[uplink_store::Issue],
    writes: &[uplink_store::Issue],
) -> rusqlite::Result<()> {
    let events = uplink_store::webhooks::issue_events(before, writes);
    if events.is_empty() {
        return Ok(());
    }
    let urls: Vec<String> = {
        let mut st =
            tx.prepare_cached("SELECT url FROM webhooks WHERE workspace = ?1 ORDER BY url")?;
        let rows = st.query_map([workspace], |r| r.get(0))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let mut insert = tx.prepare_cached(
        "INSERT INTO webhook_deliveries (workspace, url, event, issue_id, body, state, created_at, next_attempt_at) VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?6)",
    )?;
    for (event, issue) in events {
        let body = uplink_store::webhooks::body(event, workspace, issue);
        for url in &urls {
            insert.execute(params![
                workspace,
                url,
                event.as_str(),
                issue.issue_id,
                body,
                now_ms
            ])?;
        }
    }
    Ok(())
}

impl SqliteStore {
    pub(crate) fn set_webhooks_sync(
        &self,
        workspace: &str,
        hooks: &[Webhook],
    ) -> Result<(), StoreError> {
        if self.workspace_sync(workspace)?.is_none() {
            return Err(StoreError::NoSuchWorkspace(workspace.into()));
        }
        // Secrets are sealed under the master key before they reach the file (issue #23).
        let key = self.key();
        let sealed: Vec<(&str, String)> = hooks
            .iter()
            .map(|h| {
                let sealed =
                    uplink_store::webhooks::seal_secret(&key, workspace, &h.url, &h.secret);
                (h.url.as_str(), sealed)
            })
            .collect();
        self.write(|c| {
            let tx = rusqlite::Transaction::new_unchecked(c, rusqlite::TransactionBehavior::Immediate)?;
            tx.execute("DELETE FROM webhooks WHERE workspace = ?1", [workspace])?;
            for (url, secret) in &sealed {
                tx.execute(
                    "INSERT INTO webhooks (workspace, url, secret) VALUES (?1, ?2, ?3) ON CONFLICT (workspace, url) DO UPDATE SET secret = excluded.secret",
                    params![workspace, url, secret],
                )?;
            }
            tx.commit()
        })
    }

    pub(crate) fn webhooks_sync(&self, workspace: &str) -> Result<Vec<Webhook>, StoreError> {
        let stored: Vec<Webhook> = self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT url, secret FROM webhooks WHERE workspace = ?1 ORDER BY url",
            )?;
            let rows = st.query_map([workspace], |r| {
                Ok(Webhook {
                    url: r.get(0)?,
                    secret: r.get(1)?,
                })
            })?;
            rows.collect()
        })?;
        let key = self.key();
        stored
            .into_iter()
            .map(|mut h| {
                h.secret = uplink_store::webhooks::open_secret(&key, workspace, &h.url, &h.secret)?;
                Ok(h)
            })
            .collect()
    }

    pub(crate) fn claim_deliveries_sync(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<(Delivery, Option<String>)>, StoreError> {
        let claimed = self.write(|c| {
            let tx = rusqlite::Transaction::new_unchecked(c, rusqlite::TransactionBehavior::Immediate)?;
            let claimed: Vec<(Delivery, Option<String>)> = {
                let mut st = tx.prepare_cached(&format!(
                    "UPDATE webhook_deliveries SET claimed_until = ?2, attempts = attempts + 1
                     WHERE id IN (SELECT id FROM webhook_deliveries WHERE state = 'pending' AND next_attempt_at <= ?1
                                  AND (claimed_until IS NULL OR claimed_until < ?1) ORDER BY id LIMIT ?3)
                     RETURNING {DELIVERY_COLUMNS}"
                ))?;
                let rows = st.query_map(params![now_ms, now_ms + lease_ms, limit as i64], row_to_delivery)?;
                let deliveries = rows.collect::<rusqlite::Result<Vec<_>>>()?;
                let mut secret = tx.prepare_cached("SELECT secret FROM webhooks WHERE workspace = ?1 AND url = ?2")?;
                let mut out = Vec::new();
                for d in deliveries {
                    let s: Option<String> = secret
                        .query_row(params![d.workspace, d.url], |r| r.get(0))
                        .optional()?;
                    out.push((d, s));
                }
                out
            };
            tx.commit()?;
            Ok(claimed)
        })?;
        let key = self.key();
        claimed
            .into_iter()
            .map(|(d, secret)| {
                let secret = secret
                    .map(|s| uplink_store::webhooks::open_secret(&key, &d.workspace, &d.url, &s))
                    .transpose()?;
                Ok((d, secret))
            })
            .collect()
    }

    pub(crate) fn finish_delivery_sync(
        &self,
        id: i64,
        outcome: &uplink_store::webhooks::Outcome,
    ) -> Result<(), StoreError> {
        use uplink_store::webhooks::Outcome;
        self.write(|c| {
            match outcome {
                Outcome::Delivered { at } => c.execute(
                    "UPDATE webhook_deliveries SET state = 'delivered', delivered_at = ?2, claimed_until = NULL, last_error = NULL WHERE id = ?1",
                    params![id, at],
                ),
                Outcome::Retry { next_at, error } => c.execute(
                    "UPDATE webhook_deliveries SET next_attempt_at = ?2, last_error = ?3, claimed_until = NULL WHERE id = ?1",
                    params![id, next_at, error],
                ),
                Outcome::Failed { error } => c.execute(
                    "UPDATE webhook_deliveries SET state = 'failed', last_error = ?2, claimed_until = NULL WHERE id = ?1",
                    params![id, error],
                ),
            }
            .map(|_| ())
        })
    }

    pub(crate) fn deliveries_sync(&self, workspace: &str) -> Result<Vec<Delivery>, StoreError> {
        if self.workspace_sync(workspace)?.is_none() {
            return Err(StoreError::NoSuchWorkspace(workspace.into()));
        }
        self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE workspace = ?1 ORDER BY id DESC"
            ))?;
            let rows = st.query_map([workspace], row_to_delivery)?;
            rows.collect()
        })
    }
}

/// Seals the webhook secrets an earlier build stored plain (at every open, until none is left).
pub(crate) fn seal_plain_webhook_secrets(
    conn: &rusqlite::Connection,
    key: &uplink_store::MasterKey,
) -> rusqlite::Result<()> {
    let plain: Vec<(String, String, String)> = {
        let mut st = conn.prepare(
            "SELECT workspace, url, secret FROM webhooks WHERE secret NOT LIKE 'sealed:v1:%'",
        )?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    if plain.is_empty() {
        return Ok(());
    }
    let tx = conn.unchecked_transaction()?;
    for (ws, url, secret) in &plain {
        tx.execute(
            "UPDATE webhooks SET secret = ?4 WHERE workspace = ?1 AND url = ?2 AND secret = ?3",
            params![
                ws,
                url,
                secret,
                uplink_store::webhooks::seal_secret(key, ws, url, secret)
            ],
        )?;
    }
    tx.commit()
}

/// A master-key rotation's part for webhook secrets, inside its transaction: each opened with
/// `old` and sealed with `new`. How many, or the secret that `old` does not open.
pub(crate) fn reseal_webhook_secrets(
    tx: &rusqlite::Connection,
    old: &uplink_store::MasterKey,
    new: &uplink_store::MasterKey,
) -> rusqlite::Result<Result<u64, StoreError>> {
    let rows: Vec<(String, String, String)> = {
        let mut st = tx.prepare("SELECT workspace, url, secret FROM webhooks")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let mut n = 0;
    for (ws, url, stored) in rows {
        let secret = match uplink_store::webhooks::open_secret(old, &ws, &url, &stored) {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        };
        tx.execute(
            "UPDATE webhooks SET secret = ?3 WHERE workspace = ?1 AND url = ?2",
            params![
                ws,
                url,
                uplink_store::webhooks::seal_secret(new, &ws, &url, &secret)
            ],
        )?;
        n += 1;
    }
    Ok(Ok(n))
}
