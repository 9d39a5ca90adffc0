//! The service's master key, and secrets sealed under it at rest.
//!
//! Workspace CA private keys, access keys and webhook secrets are never stored as plain columns:
//! each backend seals them with [`MasterKey::seal`] (XChaCha20-Poly1305, a random 192-bit nonce
//! per value, the row's identity as associated data so a sealed value cannot be moved to another
//! workspace or webhook) and opens them when it reads them. The key is 32 random bytes, hex, in a 0600 file
//! ([`MasterKeyFile`]): `DIR/master.key` beside a SQLite store by default, given explicitly with
//! PostgreSQL. A store records a sealed check value the first time it is given a key, so a wrong
//! key is refused at open, and a store whose key file is gone is not handed a new one.
//!
//! This protects the keys in the store's files, its backups and the database's disks; whoever
//! can read both the store and the key file can decrypt them, as the service itself must.

use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

use crate::StoreError;

/// How a sealed value starts.
pub const SEALED_PREFIX: &str = "sealed:v1:";
const CHECK_PLAINTEXT: &str = "uplink master key check";
const CHECK_CONTEXT: &str = "uplink:master-key-check";

/// The associated data binding a workspace's sealed CA key to that workspace.
pub fn ca_key_context(workspace: &str) -> String {
    format!("uplink:workspace:{workspace}:ca_key")
}

/// The associated data binding a workspace's sealed access key to that workspace.
pub fn access_key_context(workspace: &str) -> String {
    format!("uplink:workspace:{workspace}:access_key")
}

/// The associated data binding a webhook's sealed secret to its workspace and URL (issue #23): a
/// sealed secret copied onto another webhook's row does not open.
pub fn webhook_secret_context(workspace: &str, url: &str) -> String {
    format!("uplink:workspace:{workspace}:webhook:{url}:secret")
}

/// Where the master key lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MasterKeyFile(pub PathBuf);

impl MasterKeyFile {
    /// The key for a store. `store_has_key` says whether the store already recorded a check
    /// value (it was given a key before): then the file must exist; otherwise a missing file is
    /// created (0600, synced) with a new random key.
    pub fn resolve(&self, store_has_key: bool) -> Result<MasterKey, StoreError> {
        let path = &self.0;
        match std::fs::read(path) {
            Ok(text) => MasterKey::parse(&Zeroizing::new(text), path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if store_has_key {
                    return Err(StoreError::MasterKeyMissing {
                        path: path.display().to_string(),
                    });
                }
                let key = Zeroizing::new(rand::random::<[u8; 32]>());
                let text = Zeroizing::new(format!("{}\n", hex::encode(*key)));
                match write_new_private(path, text.as_bytes()) {
                    Ok(()) => MasterKey::parse(text.as_bytes(), path),
                    // Another process starting at the same moment made it first: use theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        self.resolve(store_has_key)
                    }
                    Err(e) => Err(StoreError::MasterKeyFile {
                        path: path.display().to_string(),
                        detail: format!("cannot create it: {e}"),
                    }),
                }
            }
            Err(e) => Err(StoreError::MasterKeyFile {
                path: path.display().to_string(),
                detail: format!("cannot read it: {e}"),
            }),
        }
    }
}

/// The key that seals secrets at rest. `Debug` shows only its file.
#[derive(Clone)]
pub struct MasterKey {
    cipher: XChaCha20Poly1305,
    path: String,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl MasterKey {
    fn parse(text: &[u8], path: &Path) -> Result<MasterKey, StoreError> {
        let bad = || StoreError::MasterKeyFile {
            path: path.display().to_string(),
            detail:
                "it is not a master key (64 hex digits): restore the right file from your backup"
                    .into(),
        };
        let text = std::str::from_utf8(text).map_err(|_| bad())?.trim();
        let bytes = Zeroizing::new(hex::decode(text).map_err(|_| bad())?);
        if bytes.len() != 32 {
            return Err(bad());
        }
        let cipher = XChaCha20Poly1305::new_from_slice(&bytes).map_err(|_| bad())?;
        Ok(MasterKey {
            cipher,
            path: path.display().to_string(),
        })
    }

    /// The file the key came from.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Whether a stored value is sealed (rather than a plain value from before sealing).
    pub fn is_sealed(stored: &str) -> bool {
        stored.starts_with(SEALED_PREFIX)
    }

    /// Seals `secret`, bound to `context` (what the value is and whose).
    pub fn seal(&self, secret: &str, context: &str) -> String {
        let nonce: [u8; 24] = rand::random();
        let ct = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: secret.as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 encryption of a short value cannot fail");
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&ct);
        format!("{SEALED_PREFIX}{}", hex::encode(blob))
    }

    /// Opens a value sealed under this key for `context`. A plain (never sealed) value is
    /// returned as it is: stores seal those at open.
    pub fn open(&self, stored: &str, context: &str) -> Result<String, StoreError> {
        let Some(hex_blob) = stored.strip_prefix(SEALED_PREFIX) else {
            return Ok(stored.to_owned());
        };
        let wrong = || StoreError::MasterKeyWrong {
            path: self.path.clone(),
        };
        let blob = hex::decode(hex_blob).map_err(|_| wrong())?;
        if blob.len() < 24 + 16 {
            return Err(wrong());
        }
        let (nonce, ct) = blob.split_at(24);
        let plain = Zeroizing::new(
            self.cipher
                .decrypt(
                    XNonce::from_slice(nonce),
                    Payload {
                        msg: ct,
                        aad: context.as_bytes(),
                    },
                )
                .map_err(|_| wrong())?,
        );
        String::from_utf8(plain.to_vec()).map_err(|_| wrong())
    }

    /// The value a store records to recognise this key later.
    pub fn check_value(&self) -> String {
        self.seal(CHECK_PLAINTEXT, CHECK_CONTEXT)
    }

    /// Whether `stored` (a store's check value) was made with this key.
    pub fn verify_check(&self, stored: &str) -> Result<(), StoreError> {
        match self.open(stored, CHECK_CONTEXT) {
            Ok(v) if v == CHECK_PLAINTEXT => Ok(()),
            _ => Err(StoreError::MasterKeyWrong {
                path: self.path.clone(),
            }),
        }
    }
}

/// Creates `path` 0600 with `contents` whole (never replacing a file, never seen half written:
/// written beside it, then linked into place), synced with its directory.
fn write_new_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_file_name(format!(
        ".{}.{}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy(),
        hex::encode(rand::random::<[u8; 8]>())
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = (|| {
        let mut file = options.open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::hard_link(&tmp, path)
    })();
    let _ = std::fs::remove_file(&tmp);
    written?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_context() {
        let dir = tempfile::tempdir().unwrap();
        let file = MasterKeyFile(dir.path().join("master.key"));
        // A store that was given a key before: a missing file is an error, nothing is created.
        let err = file.resolve(true).unwrap_err();
        assert!(matches!(err, StoreError::MasterKeyMissing { .. }), "{err}");
        assert!(!file.0.exists());
        let key = file.resolve(false).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file.0).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let sealed = key.seal("-----BEGIN PRIVATE KEY-----x", &ca_key_context("a"));
        assert!(MasterKey::is_sealed(&sealed) && !sealed.contains("PRIVATE"));
        assert_eq!(
            key.open(&sealed, &ca_key_context("a")).unwrap(),
            "-----BEGIN PRIVATE KEY-----x"
        );
        // Moved to another workspace's row: refused.
        assert!(key.open(&sealed, &ca_key_context("b")).is_err());
        // The same file again: the same key.
        let again = file.resolve(true).unwrap();
        again.verify_check(&key.check_value()).unwrap();
        assert!(!format!("{again:?}").contains(&std::fs::read_to_string(&file.0).unwrap()[..16]));
        // Another key: refused, naming the flag.
        let other = MasterKeyFile(dir.path().join("other.key"))
            .resolve(false)
            .unwrap();
        let err = other
            .verify_check(&key.check_value())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--master-key-file") && err.contains("other.key"),
            "{err}"
        );
        assert!(other.open(&sealed, &ca_key_context("a")).is_err());
        // A damaged file.
        std::fs::write(dir.path().join("bad.key"), "not hex").unwrap();
        let err = MasterKeyFile(dir.path().join("bad.key"))
            .resolve(true)
            .unwrap_err();
        assert!(err.to_string().contains("64 hex digits"), "{err}");
        // Plain values (from before sealing) read as they are.
        assert_eq!(key.open("plain", "x").unwrap(), "plain");
    }
}
