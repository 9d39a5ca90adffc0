//! Admin API tokens (issue #23): what crosses the [`crate::Store`] trait, and how a token is made
//! and checked.
//!
//! A token is 256 random bits, shown once (`uplink admin token create`) and stored only as its
//! SHA-256. A plain hash is enough, and a slow password hash would buy nothing: the secret has
//! full entropy, so a stolen hash cannot be reversed by guessing, and a lookup by hash (one
//! indexed read) reveals nothing an attacker could not compute. Each token is scoped to one
//! workspace and has a role: `admin` (every call) or `viewer` (reads only).
//!
//! This module holds no I/O: the backends store [`AdminToken`] rows, the service's admin API
//! ([`TokenSecret::parse`], [`sha256_hex`]) looks the hash up.

use rand::RngCore;
use sha2::Digest;

/// The prefix of every token's secret, so that secret scanners and people recognise one.
pub const SECRET_PREFIX: &str = "upk_";

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenRole {
    /// Every call of the admin API.
    Admin,
    /// Reads (`GET`) only.
    Viewer,
}

impl TokenRole {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenRole::Admin => "admin",
            TokenRole::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Option<TokenRole> {
        match s {
            "admin" => Some(TokenRole::Admin),
            "viewer" => Some(TokenRole::Viewer),
            _ => None,
        }
    }
}

impl std::fmt::Display for TokenRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A token as stored and listed (never its secret; its hash stays in the store).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminToken {
    /// `tok-` and 16 hex digits: how a token is named in lists and logs.
    pub id: String,
    pub workspace: String,
    /// Unique within the workspace.
    pub name: String,
    pub role: TokenRole,
    /// Unix milliseconds.
    pub created_at: i64,
}

impl AdminToken {
    /// The JSON `admin token list --json` and `GET tokens` print for it.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "name": self.name,
            "role": self.role.as_str(),
            "created_at": crate::rfc3339_ms(self.created_at),
        })
    }
}

/// A token's secret, as the holder presents it. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenSecret(String);

impl std::fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSecret(<redacted>)")
    }
}

impl TokenSecret {
    /// A new random secret (256 bits, hex) and the id of its token.
    pub fn generate() -> (TokenSecret, String) {
        let mut secret = [0u8; 32];
        let mut id = [0u8; 8];
        rand::rng().fill_bytes(&mut secret);
        rand::rng().fill_bytes(&mut id);
        (
            TokenSecret(format!("{SECRET_PREFIX}{}", hex::encode(secret))),
            format!("tok-{}", hex::encode(id)),
        )
    }

    /// A presented secret, when it has the shape of one (anything else is refused unread).
    pub fn parse(s: &str) -> Option<TokenSecret> {
        let hex_part = s.strip_prefix(SECRET_PREFIX)?;
        (hex_part.len() == 64 && hex_part.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| TokenSecret(s.to_owned()))
    }

    /// The secret itself, to show once.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What the store keeps.
    pub fn sha256(&self) -> String {
        sha256_hex(&self.0)
    }
}

/// SHA-256 of `s`, lowercase hex.
pub fn sha256_hex(s: &str) -> String {
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

/// Whether `name` can name a token: 1 to 64 of letters, digits, `-`, `_`, `.`, not starting
/// with `tok-` (ids start so, and `revoke` takes either).
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && !name.starts_with("tok-")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_256_bits_parse_back_and_never_show_in_debug() {
        let (s, id) = TokenSecret::generate();
        assert!(id.starts_with("tok-") && id.len() == 20, "{id}");
        assert_eq!(s.expose().len(), SECRET_PREFIX.len() + 64);
        assert_eq!(TokenSecret::parse(s.expose()), Some(s.clone()));
        assert!(!format!("{s:?}").contains(&s.expose()[4..]));
        assert_eq!(s.sha256(), sha256_hex(s.expose()));
        assert_ne!(TokenSecret::generate().0, s);
    }

    #[test]
    fn presented_secrets_of_the_wrong_shape_are_refused() {
        let good = format!("upk_{}", "a".repeat(64));
        for (input, ok) in [
            (good.as_str(), true),
            ("", false),
            ("upk_", false),
            ("upk_zz", false),
            (&good[..good.len() - 1], false),
            (
                "tok_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                false,
            ),
        ] {
            assert_eq!(TokenSecret::parse(input).is_some(), ok, "{input:?}");
        }
    }

    #[test]
    fn names_and_roles() {
        for (name, ok) in [
            ("ci", true),
            ("soc-reader_1.x", true),
            ("", false),
            ("tok-1", false),
            ("with space", false),
            (&"x".repeat(65), false),
        ] {
            assert_eq!(valid_name(name), ok, "{name:?}");
        }
        for r in [TokenRole::Admin, TokenRole::Viewer] {
            assert_eq!(TokenRole::parse(r.as_str()), Some(r));
        }
        assert_eq!(TokenRole::parse("root"), None);
    }
}
