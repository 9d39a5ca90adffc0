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
