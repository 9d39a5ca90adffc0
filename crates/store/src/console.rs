//! The web console's state (issue #25): local accounts, sessions and login throttling, as they
//! cross the [`crate::Store`] trait. Everything lives in the store (both backends), never in one
//! replica's memory, so any replica serves any browser.
//!
//! What is stored: a user's Argon2id hash (a PHC string, never the password), a session's
//! SHA-256 (the cookie's secret stays in the browser), the session's CSRF token, and per
//! (workspace, name) the count of consecutive failed logins. The decisions (expiry, throttling,
//! hashing) are the console crate's (`uplink-console`); this module holds no I/O.

use crate::TokenRole;

/// A console account of one workspace. `Debug` never shows the password hash.
#[derive(Clone, PartialEq, Eq)]
pub struct ConsoleUser {
    pub workspace: String,
    /// Unique within the workspace.
    pub name: String,
    /// `admin` acts; `viewer` only looks (the same roles as admin API tokens).
    pub role: TokenRole,
    /// Argon2id in PHC string format.
    pub password_hash: String,
    /// Unix milliseconds.
    pub created_at: i64,
}

impl std::fmt::Debug for ConsoleUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleUser")
            .field("workspace", &self.workspace)
            .field("name", &self.name)
            .field("role", &self.role)
            .field("password_hash", &"<redacted>")
            .field("created_at", &self.created_at)
            .finish()
    }
}

impl ConsoleUser {
    /// The JSON `admin user list --json` prints (never the hash).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "role": self.role.as_str(),
            "created_at": crate::rfc3339_ms(self.created_at),
        })
    }
}

/// A signed-in browser. Stored under the SHA-256 of the cookie's secret. `Debug` never shows
/// the CSRF token.
#[derive(Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    /// SHA-256 (hex) of the session cookie's secret.
    pub id_sha256: String,
    pub workspace: String,
    pub user: String,
    pub role: TokenRole,
    /// The token every form of this session carries (compared in constant time).
    pub csrf: String,
    /// Unix milliseconds: sign-in, and the last request (idle expiry counts from it).
    pub created_at: i64,
    pub last_seen_at: i64,
}

impl std::fmt::Debug for ConsoleSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleSession")
            .field("workspace", &self.workspace)
            .field("user", &self.user)
            .field("role", &self.role)
            .field("created_at", &self.created_at)
            .field("last_seen_at", &self.last_seen_at)
            .finish_non_exhaustive()
    }
}

/// Consecutive failed logins of one (workspace, name), for throttling.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoginFailures {
    pub count: u32,
    /// Unix milliseconds of the last failure (`None`: none since the last success).
    pub last_at: Option<i64>,
}

/// Whether `name` is a console user name: 1 to 64 letters, digits, `-`, `_`, `.` or `@`. Pure.
pub fn valid_user_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_and_redaction() {
        for (n, ok) in [
            ("alice", true),
            ("a.b-c_d@e", true),
            ("", false),
            ("a b", false),
            ("é", false),
            (&"x".repeat(65), false),
        ] {
            assert_eq!(valid_user_name(n), ok, "{n:?}");
        }
        let u = ConsoleUser {
            workspace: "w".into(),
            name: "alice".into(),
            role: TokenRole::Admin,
            password_hash: "$argon2id$secret".into(),
            created_at: 0,
        };
        assert!(!format!("{u:?}").contains("secret"));
        let s = ConsoleSession {
            id_sha256: "idhash".into(),
            workspace: "w".into(),
            user: "alice".into(),
            role: TokenRole::Admin,
            csrf: "csrftoken".into(),
            created_at: 0,
            last_seen_at: 0,
        };
        let d = format!("{s:?}");
        assert!(!d.contains("csrftoken") && !d.contains("idhash"), "{d}");
        assert!(!u.to_json().to_string().contains("argon2"));
    }
}
