//! The web console's accounts, sessions and login failures in the SQLite store (format 9,
//! issue #25). A workspace's deletion removes them (`ON DELETE CASCADE`); removing a user
//! removes its sessions and failure count.

use rusqlite::{params, OptionalExtension};
use uplink_store::*;

use crate::SqliteStore;

/// Everything format 9 adds (also in a new store's schema, through this constant).
pub(crate) const FORMAT_9: &str = "
CREATE TABLE IF NOT EXISTS console_users (
    workspace TEXT NOT NULL REFERENCES workspaces(name) ON DELETE CASCADE,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (workspace, name)
);
CREATE TABLE IF NOT EXISTS console_sessions (
    id_sha256 TEXT PRIMARY KEY,
    workspace TEXT NOT NULL,
    user TEXT NOT NULL,
    role TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    FOREIGN KEY (workspace, user) REFERENCES console_users(workspace, name) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS console_login_failures (
    workspace TEXT NOT NULL REFERENCES workspaces(name) ON DELETE CASCADE,
    name TEXT NOT NULL,
    count INTEGER NOT NULL,
    last_at INTEGER NOT NULL,
    PRIMARY KEY (workspace, name)
);
";

const USER_COLUMNS: &str = "workspace, name, role, password_hash, created_at";
const SESSION_COLUMNS: &str = "id_sha256, workspace, user, role, csrf, created_at, last_seen_at";

// A role written by a newer build reads as the least privilege.
fn role(s: &str) -> TokenRole {
    TokenRole::parse(s).unwrap_or(TokenRole::Viewer)
}

fn row_to_user(r: &rusqlite::Row<'_>) -> rusqlite::Result<ConsoleUser> {
    Ok(ConsoleUser {
        workspace: r.get(0)?,
        name: r.get(1)?,
        role: role(&r.get::<_, String>(2)?),
        password_hash: r.get(3)?,
        created_at: r.get(4)?,
    })
}

fn row_to_session(r: &rusqlite::Row<'_>) -> rusqlite::Result<ConsoleSession> {
    Ok(ConsoleSession {
        id_sha256: r.get(0)?,
        workspace: r.get(1)?,
        user: r.get(2)?,
        role: role(&r.get::<_, String>(3)?),
        csrf: r.get(4)?,
        created_at: r.get(5)?,
        last_seen_at: r.get(6)?,
    })
}

impl SqliteStore {
    pub(crate) fn create_console_user_sync(&self, u: &ConsoleUser) -> Result<bool, StoreError> {
        if self.workspace_sync(&u.workspace)?.is_none() {
            return Err(StoreError::NoSuchWorkspace(u.workspace.clone()));
        }
        self.write(|c| {
            let n = c.execute(
                "INSERT INTO console_users (workspace, name, role, password_hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
                params![u.workspace, u.name, u.role.as_str(), u.password_hash, u.created_at],
            )?;
            Ok(n == 1)
        })
    }

    pub(crate) fn console_users_sync(&self, ws: &str) -> Result<Vec<ConsoleUser>, StoreError> {
        self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {USER_COLUMNS} FROM console_users WHERE workspace = ?1 ORDER BY name"
            ))?;
            let rows = st.query_map([ws], row_to_user)?;
            rows.collect()
        })
    }

    pub(crate) fn console_user_sync(
        &self,
        ws: &str,
        name: &str,
    ) -> Result<Option<ConsoleUser>, StoreError> {
        self.read(|c| {
            c.query_row(
                &format!(
                    "SELECT {USER_COLUMNS} FROM console_users WHERE workspace = ?1 AND name = ?2"
                ),
                params![ws, name],
                row_to_user,
            )
            .optional()
        })
    }

    pub(crate) fn remove_console_user_sync(
        &self,
        ws: &str,
        name: &str,
    ) -> Result<bool, StoreError> {
        self.write(|c| {
            c.execute(
                "DELETE FROM console_sessions WHERE workspace = ?1 AND user = ?2",
                params![ws, name],
            )?;
            c.execute(
                "DELETE FROM console_login_failures WHERE workspace = ?1 AND name = ?2",
                params![ws, name],
            )?;
            let n = c.execute(
                "DELETE FROM console_users WHERE workspace = ?1 AND name = ?2",
                params![ws, name],
            )?;
            Ok(n == 1)
        })
    }

    pub(crate) fn put_console_session_sync(&self, s: &ConsoleSession) -> Result<(), StoreError> {
        self.write(|c| {
            c.execute(
                "INSERT INTO console_sessions (id_sha256, workspace, user, role, csrf, created_at, last_seen_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (id_sha256) DO UPDATE SET last_seen_at = max(last_seen_at, excluded.last_seen_at)",
                params![s.id_sha256, s.workspace, s.user, s.role.as_str(), s.csrf, s.created_at, s.last_seen_at],
            )?;
            Ok(())
        })
    }

    pub(crate) fn console_session_sync(
        &self,
        id_sha256: &str,
    ) -> Result<Option<ConsoleSession>, StoreError> {
        self.read(|c| {
            c.query_row(
                &format!("SELECT {SESSION_COLUMNS} FROM console_sessions WHERE id_sha256 = ?1"),
                [id_sha256],
                row_to_session,
            )
            .optional()
        })
    }

    pub(crate) fn delete_console_session_sync(&self, id_sha256: &str) -> Result<(), StoreError> {
        self.write(|c| {
            c.execute(
                "DELETE FROM console_sessions WHERE id_sha256 = ?1",
                [id_sha256],
            )?;
            Ok(())
        })
    }

    pub(crate) fn login_failures_sync(
        &self,
        ws: &str,
        name: &str,
    ) -> Result<LoginFailures, StoreError> {
        self.read(|c| {
            c.query_row(
                "SELECT count, last_at FROM console_login_failures WHERE workspace = ?1 AND name = ?2",
                params![ws, name],
                |r| {
                    Ok(LoginFailures {
                        count: r.get(0)?,
                        last_at: Some(r.get(1)?),
                    })
                },
            )
            .optional()
            .map(Option::unwrap_or_default)
        })
    }

    pub(crate) fn record_login_sync(
        &self,
        ws: &str,
        name: &str,
        failed: bool,
        now_ms: i64,
    ) -> Result<LoginFailures, StoreError> {
        if !failed {
            self.write(|c| {
                c.execute(
                    "DELETE FROM console_login_failures WHERE workspace = ?1 AND name = ?2",
                    params![ws, name],
                )
            })?;
            return Ok(LoginFailures::default());
        }
        // Failures of names in unknown workspaces are not recorded (nothing to throttle).
        if self.workspace_sync(ws)?.is_none() {
            return Err(StoreError::NoSuchWorkspace(ws.into()));
        }
        self.write(|c| {
            c.query_row(
                "INSERT INTO console_login_failures (workspace, name, count, last_at) VALUES (?1, ?2, 1, ?3)
                 ON CONFLICT (workspace, name) DO UPDATE SET count = count + 1, last_at = excluded.last_at
                 RETURNING count, last_at",
                params![ws, name, now_ms],
                |r| {
                    Ok(LoginFailures {
                        count: r.get(0)?,
                        last_at: Some(r.get(1)?),
                    })
                },
            )
        })
    }
}
