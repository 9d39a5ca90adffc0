//! Admin API tokens in the SQLite store (table `admin_tokens`, format 7): only the SHA-256 of
//! each secret; the workspace's deletion removes its tokens (`ON DELETE CASCADE`).

use rusqlite::{params, OptionalExtension};
use uplink_store::*;

use crate::SqliteStore;

/// The tokens table (also in `SCHEMA` for new stores, through this constant).
pub(crate) const TOKENS_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS admin_tokens (
    id TEXT PRIMARY KEY,
    workspace TEXT NOT NULL REFERENCES workspaces(name) ON DELETE CASCADE,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    UNIQUE (workspace, name)
);
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
