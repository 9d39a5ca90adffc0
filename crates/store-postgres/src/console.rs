//! The web console's accounts, sessions and login failures in the PostgreSQL store (migration 8,
//! issue #25), shared by every replica. A workspace's deletion removes them
//! (`ON DELETE CASCADE`); removing a user removes its sessions.

use tokio_postgres::error::SqlState;
use uplink_store::*;

use crate::PostgresStore;

const USER_COLUMNS: &str = "workspace, name, role, password_hash, created_at";
const SESSION_COLUMNS: &str =
    "id_sha256, workspace, username, role, csrf, created_at, last_seen_at";

// A role written by a newer build reads as the least privilege.
fn role(s: &str) -> TokenRole {
    TokenRole::parse(s).unwrap_or(TokenRole::Viewer)
}

fn row_to_user(r: &tokio_postgres::Row) -> ConsoleUser {
    ConsoleUser {
        workspace: r.get(0),
        name: r.get(1),
        role: role(r.get(2)),
        password_hash: r.get(3),
        created_at: r.get(4),
    }
}

fn row_to_session(r: &tokio_postgres::Row) -> ConsoleSession {
    ConsoleSession {
        id_sha256: r.get(0),
        workspace: r.get(1),
        user: r.get(2),
        role: role(r.get(3)),
        csrf: r.get(4),
        created_at: r.get(5),
        last_seen_at: r.get(6),
    }
}

fn failures(r: &tokio_postgres::Row) -> LoginFailures {
    LoginFailures {
        count: u32::try_from(r.get::<_, i32>(0)).unwrap_or(0),
        last_at: Some(r.get(1)),
    }
}

impl PostgresStore {
    pub(crate) async fn create_console_user_pg(&self, u: &ConsoleUser) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let res = client
            .execute(
                "INSERT INTO console_users (workspace, name, role, password_hash, created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                &[&u.workspace, &u.name, &u.role.as_str(), &u.password_hash, &u.created_at],
            )
            .await;
        match res {
            Ok(n) => Ok(n == 1),
            Err(e) if e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) => {
                Err(StoreError::NoSuchWorkspace(u.workspace.clone()))
            }
            Err(e) => Err(self.err()(e)),
        }
    }

    pub(crate) async fn console_users_pg(&self, ws: &str) -> Result<Vec<ConsoleUser>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {USER_COLUMNS} FROM console_users WHERE workspace = $1 ORDER BY name"
                ),
                &[&ws],
            )
            .await
            .map_err(self.err())?;
        Ok(rows.iter().map(row_to_user).collect())
    }

    pub(crate) async fn console_user_pg(
        &self,
        ws: &str,
        name: &str,
    ) -> Result<Option<ConsoleUser>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!(
                    "SELECT {USER_COLUMNS} FROM console_users WHERE workspace = $1 AND name = $2"
                ),
                &[&ws, &name],
            )
            .await
            .map_err(self.err())?;
        Ok(row.as_ref().map(row_to_user))
    }

    pub(crate) async fn remove_console_user_pg(
        &self,
        ws: &str,
        name: &str,
    ) -> Result<bool, StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "DELETE FROM console_login_failures WHERE workspace = $1 AND name = $2",
                &[&ws, &name],
            )
            .await
            .map_err(self.err())?;
        // The sessions go with the user (ON DELETE CASCADE).
        let n = client
            .execute(
                "DELETE FROM console_users WHERE workspace = $1 AND name = $2",
                &[&ws, &name],
            )
            .await
            .map_err(self.err())?;
        Ok(n == 1)
    }

    pub(crate) async fn put_console_session_pg(
        &self,
        s: &ConsoleSession,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO console_sessions (id_sha256, workspace, username, role, csrf, created_at, last_seen_at) VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (id_sha256) DO UPDATE SET last_seen_at = GREATEST(console_sessions.last_seen_at, EXCLUDED.last_seen_at)",
                &[&s.id_sha256, &s.workspace, &s.user, &s.role.as_str(), &s.csrf, &s.created_at, &s.last_seen_at],
            )
            .await
            .map_err(self.err())?;
        Ok(())
    }

    pub(crate) async fn console_session_pg(
        &self,
        id_sha256: &str,
    ) -> Result<Option<ConsoleSession>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!("SELECT {SESSION_COLUMNS} FROM console_sessions WHERE id_sha256 = $1"),
                &[&id_sha256],
            )
            .await
            .map_err(self.err())?;
        Ok(row.as_ref().map(row_to_session))
    }

    pub(crate) async fn delete_console_session_pg(
        &self,
        id_sha256: &str,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "DELETE FROM console_sessions WHERE id_sha256 = $1",
                &[&id_sha256],
            )
            .await
            .map_err(self.err())?;
        Ok(())
    }

    pub(crate) async fn login_failures_pg(
        &self,
        ws: &str,
        name: &str,
    ) -> Result<LoginFailures, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT count, last_at FROM console_login_failures WHERE workspace = $1 AND name = $2",
                &[&ws, &name],
            )
            .await
            .map_err(self.err())?;
        Ok(row.as_ref().map(failures).unwrap_or_default())
    }

    pub(crate) async fn record_login_pg(
        &self,
        ws: &str,
        name: &str,
        failed: bool,
        now_ms: i64,
    ) -> Result<LoginFailures, StoreError> {
        let client = self.client().await?;
        if !failed {
            client
                .execute(
                    "DELETE FROM console_login_failures WHERE workspace = $1 AND name = $2",
                    &[&ws, &name],
                )
                .await
                .map_err(self.err())?;
            return Ok(LoginFailures::default());
        }
        let res = client
            .query_one(
                "INSERT INTO console_login_failures (workspace, name, count, last_at) VALUES ($1, $2, 1, $3)
                 ON CONFLICT (workspace, name) DO UPDATE SET count = console_login_failures.count + 1, last_at = EXCLUDED.last_at
                 RETURNING count, last_at",
                &[&ws, &name, &now_ms],
            )
            .await;
        match res {
            Ok(r) => Ok(failures(&r)),
            Err(e) if e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) => {
                Err(StoreError::NoSuchWorkspace(ws.to_owned()))
            }
            Err(e) => Err(self.err()(e)),
        }
    }
}
