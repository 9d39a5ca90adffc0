//! Sessions and CSRF, pure.
//!
//! A session is a random 256-bit secret in a cookie (`Secure; HttpOnly; SameSite=Strict`, no
//! `Domain`: it goes back only to the console host it came from, so one workspace's cookie never
//! reaches another's host); the store keeps its SHA-256 with the user, role, a CSRF token and
//! two times. A request's session is valid while it is younger than [`Expiry::absolute`] and
//! was used within [`Expiry::idle`]. Every form carries the session's CSRF token in a hidden
//! field `csrf`; a state-changing request whose token does not match is refused (403). The
//! login form, before any session, uses a double-submit cookie ([`LOGIN_CSRF_COOKIE`]).

use rand::RngCore;
use sha2::Digest;
use subtle::ConstantTimeEq;

/// The session cookie's name.
pub const COOKIE: &str = "uplink_session";
/// The login form's CSRF cookie (double submit: the form's hidden field must equal it).
pub const LOGIN_CSRF_COOKIE: &str = "uplink_login_csrf";
/// The hidden field of every form.
pub const CSRF_FIELD: &str = "csrf";

/// When sessions end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    /// Unused this long: signed out.
    pub idle_ms: i64,
    /// This long after sign-in: signed out, however busy.
    pub absolute_ms: i64,
}

impl Default for Expiry {
    fn default() -> Self {
        Expiry {
            idle_ms: 30 * 60 * 1000,
            absolute_ms: 12 * 3600 * 1000,
        }
    }
}

/// What a stored session is worth at a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// Valid; `touch` says whether to store the new `last_seen_at` (at most once a minute: a
    /// page's assets do not each write).
    Valid {
        touch: bool,
    },
    Idle,
    Expired,
}

/// How long a `last_seen_at` may lag before a request stores a new one.
pub const TOUCH_EVERY_MS: i64 = 60 * 1000;

/// A session signed in at `created_at` and last used at `last_seen_at`, at `now_ms`. Pure.
pub fn validity(created_at: i64, last_seen_at: i64, now_ms: i64, e: Expiry) -> Validity {
    if now_ms >= created_at.saturating_add(e.absolute_ms) {
        Validity::Expired
    } else if now_ms >= last_seen_at.saturating_add(e.idle_ms) {
        Validity::Idle
    } else {
        Validity::Valid {
            touch: now_ms - last_seen_at >= TOUCH_EVERY_MS.min(e.idle_ms / 2),
        }
    }
}

/// A new random secret (256 bits, hex): a session's or a CSRF token.
pub fn new_secret() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// SHA-256 of a session secret, lowercase hex: what the store keeps.
pub fn id_hash(secret: &str) -> String {
    hex::encode(sha2::Sha256::digest(secret.as_bytes()))
}

/// Whether `s` has the shape of a secret (64 hex digits); anything else is not looked up.
pub fn well_formed(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The value of cookie `name` in a `Cookie` header's value.
pub fn cookie<'a>(header: Option<&'a str>, name: &str) -> Option<&'a str> {
    header?
        .split(';')
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// The `Set-Cookie` value for cookie `name`: host-only, `Secure; HttpOnly; SameSite=Strict`.
pub fn set_cookie(name: &str, value: &str, max_age_secs: i64) -> String {
    format!("{name}={value}; Path=/; Max-Age={max_age_secs}; Secure; HttpOnly; SameSite=Strict")
}

/// The `Set-Cookie` value that removes cookie `name`.
pub fn clear_cookie(name: &str) -> String {
    set_cookie(name, "", 0)
}

/// Whether a presented CSRF token matches the expected one, in constant time (an empty or
/// missing token never matches).
pub fn csrf_ok(expected: &str, presented: Option<&str>) -> bool {
    match presented {
        Some(p) if !p.is_empty() && !expected.is_empty() => {
            bool::from(expected.as_bytes().ct_eq(p.as_bytes()))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_when_idle_or_old() {
        let e = Expiry {
            idle_ms: 1000,
            absolute_ms: 5000,
        };
        // (created, last seen, now, validity)
        let cases = [
            (0, 0, 0, Validity::Valid { touch: false }),
            (0, 0, 499, Validity::Valid { touch: false }),
            (0, 0, 500, Validity::Valid { touch: true }),
            (0, 0, 999, Validity::Valid { touch: true }),
            (0, 0, 1000, Validity::Idle),
            (0, 4500, 4999, Validity::Valid { touch: false }),
            (0, 4500, 5000, Validity::Expired),
            (0, 4999, 5000, Validity::Expired),
        ];
        for (c, l, n, want) in cases {
            assert_eq!(validity(c, l, n, e), want, "{c} {l} {n}");
        }
        let d = Expiry::default();
        assert_eq!((d.idle_ms, d.absolute_ms), (1_800_000, 43_200_000));
        assert_eq!(
            validity(0, 0, 61_000, d),
            Validity::Valid { touch: true },
            "touched at most once a minute"
        );
    }

    #[test]
    fn cookies_and_tokens() {
        let h = Some("a=1; uplink_session=abc ; b=2");
        assert_eq!(cookie(h, COOKIE), Some("abc"));
        assert_eq!(cookie(h, "b"), Some("2"));
        assert_eq!(cookie(h, "c"), None);
        assert_eq!(cookie(None, COOKIE), None);
        assert_eq!(cookie(Some("uplink_session_x=1"), COOKIE), None);
        let set = set_cookie(COOKIE, "v", 60);
        for part in [
            "Secure",
            "HttpOnly",
            "SameSite=Strict",
            "Path=/",
            "Max-Age=60",
        ] {
            assert!(set.contains(part), "{set}");
        }
        assert!(!set.contains("Domain"), "host-only: {set}");
        assert!(clear_cookie(COOKIE).contains("Max-Age=0"));
        let s = new_secret();
        assert!(well_formed(&s) && s != new_secret());
        assert!(!well_formed("zz") && !well_formed(&"g".repeat(64)));
        assert_eq!(id_hash(&s).len(), 64);
        assert_ne!(id_hash(&s), s);
        for (presented, ok) in [
            (Some("tok"), true),
            (Some("tok2"), false),
            (Some(""), false),
            (None, false),
        ] {
            assert_eq!(csrf_ok("tok", presented), ok, "{presented:?}");
        }
        assert!(!csrf_ok("", Some("")));
    }
}
