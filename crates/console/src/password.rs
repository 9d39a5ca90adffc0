//! Console passwords: Argon2id (RFC 9106, the `argon2` crate's defaults: 19 MiB, 2 passes) in
//! PHC string format, with a random 128-bit salt. The store keeps only the PHC string.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::RngCore;

/// The shortest password `admin user add` accepts.
pub const MIN_LEN: usize = 12;

/// Why a password is refused at `admin user add`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Weak {
    TooShort { len: usize },
    TooLong,
}

impl std::fmt::Display for Weak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Weak::TooShort { len } => write!(
                f,
                "the password has {len} characters: use at least {MIN_LEN} (a passphrase of a few words is fine)"
            ),
            Weak::TooLong => f.write_str("the password is longer than 1024 bytes: use a shorter one"),
        }
    }
}

/// Whether `password` may be set. Pure.
pub fn check_strength(password: &str) -> Result<(), Weak> {
    let len = password.chars().count();
    if len < MIN_LEN {
        return Err(Weak::TooShort { len });
    }
    if password.len() > 1024 {
        return Err(Weak::TooLong);
    }
    Ok(())
}

/// The PHC string of `password` under a new random salt.
pub fn hash(password: &str) -> String {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    // Encoding 16 bytes as a salt cannot fail (4 to 64 bytes are accepted), nor can hashing with
    // the default parameters; the fallback only keeps this total.
    let Ok(salt) = SaltString::encode_b64(&salt) else {
        return String::new();
    };
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .unwrap_or_default()
}

/// Whether `password` matches the PHC string `phc` (a malformed one matches nothing).
pub fn verify(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(h) => Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok(),
        Err(_) => false,
    }
}

/// A hash to verify against when the user does not exist, so that an unknown name takes as
/// long to refuse as a wrong password.
pub fn decoy() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash("uplink-console-decoy-password"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_are_salted() {
        let h = hash("correct horse battery");
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify("correct horse battery", &h));
        assert!(!verify("correct horse batterY", &h));
        assert_ne!(h, hash("correct horse battery"), "a new salt each time");
        assert!(!verify("x", "not a phc string"));
        assert!(!verify("", ""));
        assert!(!verify("uplink-console-decoy-passwor", decoy()));
    }

    #[test]
    fn strength() {
        assert_eq!(check_strength("short"), Err(Weak::TooShort { len: 5 }));
        assert_eq!(check_strength("twelve chars"), Ok(()));
        assert_eq!(check_strength(&"x".repeat(1025)), Err(Weak::TooLong));
        assert!(Weak::TooShort { len: 3 }
            .to_string()
            .contains("at least 12"));
    }
}
