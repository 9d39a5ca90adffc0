//! Secrets at rest: the proxy password, encrypted.
//!
//! XChaCha20-Poly1305 with a random 192-bit nonce per value, under a 256-bit key kept in a 0600
//! file beside the configuration (`secret.key`). The configuration holds only
//! `enc:v1:<base64(nonce ‖ ciphertext)>`, so the file can be read, shown, backed up or sent to
//! support without revealing the password. (Like the seeds' installer, this protects against the
//! password being read from the configuration; an attacker who can read the 0600 key file as
//! root can decrypt it, as the sensor itself must.)

use std::path::Path;

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

const PREFIX: &str = "enc:v1:";

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read or write the secret key {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("the secret key {path} is damaged (it must be 32 bytes): reinstall the sensor or set the proxy password again")]
    BadKey { path: String },
    #[error("the stored secret is not in the expected format (enc:v1:...): set it again with `uplink sensor proxy set`")]
    BadFormat,
    #[error("the stored secret cannot be decrypted with {path} (the key file was replaced?): set the proxy password again")]
    Decrypt { path: String },
}

/// The key that seals this sensor's secrets.
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
    path: String,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretBox")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SecretBox {
    /// Loads the key at `path`, creating it (0600) if it does not exist.
    pub fn open_or_create(path: &Path) -> Result<Self, SecretError> {
        let io = |source| SecretError::Io {
            path: path.display().to_string(),
            source,
        };
        let key: Zeroizing<Vec<u8>> = match std::fs::read(path) {
            Ok(k) => Zeroizing::new(k),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let k = Zeroizing::new(rand::random::<[u8; 32]>().to_vec());
                crate::fsutil::write_private(path, &k).map_err(io)?;
                k
            }
            Err(e) => return Err(io(e)),
        };
        Self::from_key(&key, path)
    }

    /// Loads an existing key.
    pub fn open(path: &Path) -> Result<Self, SecretError> {
        let key = Zeroizing::new(std::fs::read(path).map_err(|source| SecretError::Io {
            path: path.display().to_string(),
            source,
        })?);
        Self::from_key(&key, path)
    }

    fn from_key(key: &[u8], path: &Path) -> Result<Self, SecretError> {
        let cipher = XChaCha20Poly1305::new_from_slice(key).map_err(|_| SecretError::BadKey {
            path: path.display().to_string(),
        })?;
        Ok(SecretBox {
            cipher,
            path: path.display().to_string(),
        })
    }

    /// Encrypts a secret into its stored form.
    pub fn seal(&self, secret: &SecretString) -> String {
        let nonce_bytes: [u8; 24] = rand::random();
        let ct = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce_bytes),
                secret.expose_secret().as_bytes(),
            )
            .expect("XChaCha20-Poly1305 encryption of a short string cannot fail");
        let mut blob = nonce_bytes.to_vec();
        blob.extend_from_slice(&ct);
        format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::STANDARD.encode(blob)
        )
    }

    /// Decrypts a stored secret.
    pub fn open_sealed(&self, stored: &str) -> Result<SecretString, SecretError> {
        let b64 = stored.strip_prefix(PREFIX).ok_or(SecretError::BadFormat)?;
        let blob = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| SecretError::BadFormat)?;
        if blob.len() < 24 + 16 {
            return Err(SecretError::BadFormat);
        }
        let (nonce, ct) = blob.split_at(24);
        let plain = Zeroizing::new(self.cipher.decrypt(XNonce::from_slice(nonce), ct).map_err(
            |_| SecretError::Decrypt {
                path: self.path.clone(),
            },
        )?);
        let text = String::from_utf8(plain.to_vec()).map_err(|_| SecretError::BadFormat)?;
        Ok(SecretString::from(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_tamper_detection() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("secret.key");
        let sb = SecretBox::open_or_create(&key).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let secret = SecretString::from("P@ssw0rd-ünïcode".to_string());
        let sealed = sb.seal(&secret);
        assert!(sealed.starts_with("enc:v1:") && !sealed.contains("P@ss"));
        assert_ne!(sealed, sb.seal(&secret), "a fresh nonce each time");
        let again = SecretBox::open(&key).unwrap();
        assert_eq!(
            again.open_sealed(&sealed).unwrap().expose_secret(),
            "P@ssw0rd-ünïcode"
        );

        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 3;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert!(again
            .open_sealed(std::str::from_utf8(&tampered).unwrap())
            .is_err());
        assert!(matches!(
            again.open_sealed("plain"),
            Err(SecretError::BadFormat)
        ));

        let other = SecretBox::open_or_create(&dir.path().join("other.key")).unwrap();
        assert!(matches!(
            other.open_sealed(&sealed),
            Err(SecretError::Decrypt { .. })
        ));
        std::fs::write(&key, b"short").unwrap();
        assert!(matches!(
            SecretBox::open(&key),
            Err(SecretError::BadKey { .. })
        ));
    }
}
