//! Administrative operations that run with or without a live service: creating a workspace and
//! writing its enrollment bundle. They work on any [`Store`] (SQLite or PostgreSQL); only the
//! data-directory check is about the embedded store's files.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::Digest;
use uplink_protocol::names;
use uplink_store::{Store, StoreError, WorkspaceRecord};

/// Format of the enrollment bundle file.
pub const BUNDLE_FORMAT: u32 = 1;

/// The enrollment bundle: everything a sensor needs to enroll. Holds the access key: 0600.
#[derive(Clone, Serialize, Deserialize)]
pub struct Bundle {
    pub format: u32,
    pub workspace: String,
    pub sensor_url: String,
    pub access_key: String,
    pub ca_pem: String,
    pub ca_sha256: String,
}

impl std::fmt::Debug for Bundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bundle")
            .field("workspace", &self.workspace)
            .field("sensor_url", &self.sensor_url)
            .field("access_key", &"<redacted>")
            .field("ca_sha256", &self.ca_sha256)
            .finish()
    }
}

/// What `workspace create` made.
#[derive(Clone, Serialize)]
pub struct Created {
    pub workspace: String,
    pub domain: String,
    pub sensor_url: String,
    pub console_url: String,
    pub access_key: String,
    pub bundle_path: PathBuf,
    pub ca_sha256: String,
}

impl std::fmt::Debug for Created {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Created")
            .field("workspace", &self.workspace)
            .field("bundle_path", &self.bundle_path)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Name(#[from] names::NameError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("creating the workspace CA failed: {0}")]
    Pki(#[from] uplink_pki::PkiError),
    #[error("public port 0 is not valid: give the port sensors will connect to (default 443)")]
    BadPort,
    #[error("cannot write the bundle {path}: {source}")]
    Bundle {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("workspace {0:?} was created before uplink kept access keys in the store, so its bundle cannot be remade: use the bundle written when it was created (DIR/bundles/NAME.json with --data-dir)")]
    NoAccessKey(String),
    #[error("the data directory {dir} holds enrollment bundles ({bundles}) but no store ({db} is missing): the store was deleted or moved. Starting would create an empty store, and every sensor enrolled from those bundles would then fail with TLS_UNTRUSTED_ROOT. Restore uplink.db (and uplink.db-wal if there is one) from a backup; to really start over, move the bundles directory away first")]
    StoreMissing {
        dir: PathBuf,
        bundles: String,
        db: PathBuf,
    },
    #[error("workspace {0:?} has no previous CA to retire: rotate first (`uplink workspace rotate-ca {0}`)")]
    NoPreviousCa(String),
    #[error("{count} of workspace {ws:?} still {verb} a certificate of the previous CA: {list}. Running sensors renew onto the new CA by themselves at their next connection; wait for them, or revoke or decommission the machines that are gone (`uplink fleet decommission {ws} ID`), then retire again. Nothing was changed", count = sensors_count(.sensors), verb = if .sensors.len() == 1 { "has" } else { "have" }, list = .sensors.join(", "))]
    CaNotRetired { ws: String, sensors: Vec<String> },
    #[error("the data directory {0} does not exist: check the path (a mistyped one would start an empty service that serves nothing). To start a new service there, create a workspace first (`uplink workspace create NAME --data-dir {0} --public-port PORT`, which makes the directory), or make the directory (`mkdir -p {0}`) to start with no workspace yet")]
    NoDataDir(PathBuf),
    #[error("the data directory {dir} holds other files ({found}) but no uplink store ({db_file}): check the path; a new service needs an empty or new directory")]
    ForeignDataDir {
        dir: PathBuf,
        found: String,
        db_file: String,
    },
}

/// Refuses a data directory the service should not start on: one that does not exist (a mistyped
/// path would silently become an empty service), one that holds other files but no store, and one
/// that has enrollment bundles but no store (a store deleted, or a data directory half restored,
/// must not silently become a new, empty one). An existing empty directory is fine: a new
/// service (systemd's `StateDirectory=` makes it) starts there with no workspace yet.
/// `db_file` is the store's file name inside the directory (`uplink.db`).
pub fn check_data_dir(data_dir: &Path, db_file: &str) -> Result<(), AdminError> {
    let db = data_dir.join(db_file);
    if db.exists() {
        return Ok(());
    }
    if !data_dir.is_dir() {
        return Err(AdminError::NoDataDir(data_dir.to_path_buf()));
    }
    let bundles: Vec<String> = std::fs::read_dir(data_dir.join("bundles"))
        .map(|dir| {
            dir.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".json") && !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    if bundles.is_empty() {
        // What uplink itself may leave before its store exists: the master key, SQLite's side
        // files, an empty bundles directory.
        let foreign: Vec<String> = std::fs::read_dir(data_dir)
            .map(|dir| {
                dir.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n != "bundles" && n != "master.key" && !n.starts_with(db_file))
                    .collect()
            })
            .unwrap_or_default();
        if !foreign.is_empty() {
            return Err(AdminError::ForeignDataDir {
                dir: data_dir.to_path_buf(),
                found: some_of(foreign),
                db_file: db_file.to_owned(),
            });
        }
        return Ok(());
    }
    Err(AdminError::StoreMissing {
        dir: data_dir.to_path_buf(),
        bundles: some_of(bundles.iter().map(|b| format!("bundles/{b}")).collect()),
        db,
    })
}

/// The first three names in order, and how many more: for messages.
fn some_of(mut names: Vec<String>) -> String {
    names.sort();
    let more = names.len().saturating_sub(3);
    names.truncate(3);
    let mut list = names.join(", ");
    if more > 0 {
        list.push_str(&format!(" and {more} more"));
    }
    list
}

/// The URL sensors use for a workspace.
pub fn url_for(host: &str, port: u16) -> String {
    if port == 443 {
        format!("https://{host}")
    } else {
        format!("https://{host}:{port}")
    }
}

/// Where `create_workspace` writes the enrollment bundle.
#[derive(Debug, Clone)]
pub enum BundleAt {
    /// `DIR/bundles/NAME.json` (the directory made 0700): what scripts expect with `--data-dir`.
    DataDir(PathBuf),
    /// This file.
    File(PathBuf),
    /// `./NAME.json`.
    CurrentDir,
}

/// Creates a workspace in `store`: its CA, access key and bundle (0600, where `bundle_at` says).
/// Nothing is left behind when it fails.
pub async fn create_workspace<S: Store>(
    store: &S,
    name: &str,
    domain: &str,
    public_port: u16,
    bundle_at: BundleAt,
) -> Result<Created, AdminError> {
    let name = names::workspace_name(name)?;
    let domain = names::domain(domain)?;
    if public_port == 0 {
        return Err(AdminError::BadPort);
    }
    if store.workspace(&name).await?.is_some() {
        return Err(StoreError::WorkspaceExists(name).into());
    }
    let ca = uplink_pki::generate_ca(&name)?;
    let access_key =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let sensor_url = url_for(&names::sensor_host(&name, &domain), public_port);
    let bundle = Bundle {
        format: BUNDLE_FORMAT,
        workspace: name.clone(),
        sensor_url: sensor_url.clone(),
        access_key: access_key.clone(),
        ca_pem: ca.cert_pem.clone(),
        ca_sha256: ca.sha256.clone(),
    };
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| AdminError::Bundle { path, source }
    };
    let file_name = format!("{name}.json");
    let bundle_path = match bundle_at {
        BundleAt::DataDir(dir) => {
            let bundles = dir.join("bundles");
            create_private_dir(&bundles).map_err(io(&bundles))?;
            bundles.join(file_name)
        }
        BundleAt::File(path) => path,
        BundleAt::CurrentDir => PathBuf::from(file_name),
    };
    let tmp_name = format!(
        ".{}.tmp",
        bundle_path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
    );
    let tmp = bundle_path.with_file_name(tmp_name);
    // Write beside the final name, then store, then rename: a failure at any step leaves neither
    // a bundle without a workspace nor a workspace without a bundle.
    let json = serde_json::to_vec_pretty(&bundle).expect("a bundle serialises");
    write_private(&tmp, &json).map_err(io(&tmp))?;
    let record = WorkspaceRecord {
        name: name.clone(),
        domain: domain.clone(),
        public_port,
        ca_cert_pem: ca.cert_pem,
        ca_key_pem: ca.key_pem,
        ca_sha256: ca.sha256.clone(),
        access_key_sha256: hex::encode(sha2::Sha256::digest(access_key.as_bytes())),
        access_key: Some(access_key.clone()),
        created_at: uplink_store::now_ms(),
    };
    if let Err(e) = store.create_workspace(record).await {
        let _ = std::fs::remove_file(&tmp);
        return Err(e.into());
    }
    std::fs::rename(&tmp, &bundle_path).map_err(io(&bundle_path))?;
    Ok(Created {
        console_url: url_for(&names::console_host(&name, &domain), public_port),
        workspace: name,
        domain,
        sensor_url,
        access_key,
        bundle_path,
        ca_sha256: ca.sha256,
    })
}

/// Writes a workspace's enrollment bundle again, from the store (0600 at `out`): any replica can,
/// since the access key is kept sealed in the store.
pub async fn write_bundle<S: Store>(store: &S, name: &str, out: &Path) -> Result<(), AdminError> {
    let json = bundle_json(store, name).await?;
    let tmp = out.with_file_name(format!(
        ".{}.tmp",
        out.file_name().unwrap_or_default().to_string_lossy()
    ));
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| AdminError::Bundle { path, source }
    };
    write_private(&tmp, &json).map_err(io(&tmp))?;
    std::fs::rename(&tmp, out).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(out)(e)
    })
}

/// A workspace's enrollment bundle (JSON), from the store: what `write_bundle` writes and the
/// console's Deploy page downloads.
pub async fn bundle_json<S: Store>(store: &S, name: &str) -> Result<Vec<u8>, AdminError> {
    let name = names::workspace_name(name)?;
    let ws = store
        .workspace(&name)
        .await?
        .ok_or_else(|| StoreError::NoSuchWorkspace(name.clone()))?;
    let access_key = ws
        .access_key
        .clone()
        .ok_or_else(|| AdminError::NoAccessKey(name.clone()))?;
    let bundle = Bundle {
        format: BUNDLE_FORMAT,
        sensor_url: url_for(&names::sensor_host(&ws.name, &ws.domain), ws.public_port),
        workspace: ws.name,
        access_key,
        ca_pem: ws.ca_cert_pem,
        ca_sha256: ws.ca_sha256,
    };
    Ok(serde_json::to_vec_pretty(&bundle).expect("a bundle serialises"))
}

fn sensors_count(sensors: &[String]) -> String {
    match sensors.len() {
        1 => "1 sensor".to_owned(),
        n => format!("{n} sensors"),
    }
}

/// A CA rotation's outcome: the new CA and the one still trusted beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotatedCa {
    pub ca_sha256: String,
    pub previous_ca_sha256: String,
}

/// Introduces a new CA for workspace `name` (docs/lifecycle.md): the current one stays trusted
/// as the previous CA until [`retire_previous_ca`]. Shared by `uplink workspace rotate-ca` and the
/// admin API; the caller audits and rewrites a bundle file if it keeps one.
pub async fn rotate_ca<S: Store>(store: &S, name: &str) -> Result<RotatedCa, AdminError> {
    let record = store
        .workspace(name)
        .await?
        .ok_or_else(|| StoreError::NoSuchWorkspace(name.to_owned()))?;
    let new = uplink_pki::generate_ca(name)?;
    store
        .rotate_ca(name, &new.cert_pem, &new.key_pem, &new.sha256)
        .await?;
    Ok(RotatedCa {
        ca_sha256: new.sha256,
        previous_ca_sha256: record.ca_sha256,
    })
}

/// Retires workspace `name`'s previous CA once no sensor (neither revoked nor decommissioned)
/// holds a certificate of it: [`AdminError::CaNotRetired`] names those that do, and nothing
/// changes. Returns the current CA and the retired ones. Shared by the CLI and the admin API.
pub async fn retire_previous_ca<S: Store>(
    store: &S,
    name: &str,
) -> Result<(String, Vec<String>), AdminError> {
    let record = store
        .workspace(name)
        .await?
        .ok_or_else(|| StoreError::NoSuchWorkspace(name.to_owned()))?;
    if store.previous_cas(name).await?.is_empty() {
        return Err(AdminError::NoPreviousCa(name.to_owned()));
    }
    let pending = store.sensors_not_on_ca(name, &record.ca_sha256).await?;
    if !pending.is_empty() {
        return Err(AdminError::CaNotRetired {
            ws: name.to_owned(),
            sensors: pending,
        });
    }
    let gone = store.retire_previous_cas(name).await?;
    Ok((record.ca_sha256, gone))
}

/// Replaces a workspace's access key with a new random one (256 bits, hex) in the store: the
/// old key no longer enrolls sensors on any replica from its next change-log poll. Shared by
/// `uplink workspace rotate-access-key` and the console's Deploy page; the caller audits.
pub async fn rotate_access_key<S: Store>(store: &S, name: &str) -> Result<(), StoreError> {
    let key = hex::encode(rand::random::<[u8; 32]>());
    let hash = uplink_pki::sha256_hex(key.as_bytes());
    store.set_access_key(name, &key, &hash).await
}

/// Creates a directory readable only by its owner (if it does not exist).
pub fn create_private_dir(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        match std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
        {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(e),
        }
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(path)
}

/// Writes a file that only its owner can read (0600), replacing any previous one, and syncs it.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    #[cfg(unix)]
    {
        // `mode` applies only when the file is created; tighten a pre-existing one too.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    use uplink_store_sqlite::{SqliteStore, DB_FILE};

    async fn create(
        dir: &Path,
        name: &str,
        domain: &str,
        port: u16,
    ) -> Result<Created, AdminError> {
        let store = SqliteStore::open(dir, true)?;
        create_workspace(
            &store,
            name,
            domain,
            port,
            BundleAt::DataDir(dir.to_path_buf()),
        )
        .await
    }

    #[tokio::test]
    async fn a_data_dir_with_bundles_but_no_store_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        // Empty, or with only what uplink leaves before its store: a new service may start.
        check_data_dir(dir.path(), DB_FILE).unwrap();
        std::fs::write(dir.path().join("master.key"), "k").unwrap();
        check_data_dir(dir.path(), DB_FILE).unwrap();
        std::fs::remove_file(dir.path().join("master.key")).unwrap();
        // A path that does not exist (mistyped?) is refused, and how to start one is said.
        let err = check_data_dir(&dir.path().join("new"), DB_FILE)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("does not exist")
                && err.contains("uplink workspace create NAME --data-dir"),
            "{err}"
        );
        // A directory of something else (`--data-dir /etc`) is refused, naming what is there.
        let other = tempfile::tempdir().unwrap();
        std::fs::write(other.path().join("passwd"), "x").unwrap();
        let err = check_data_dir(other.path(), DB_FILE)
            .unwrap_err()
            .to_string();
        assert!(err.contains("holds other files (passwd)"), "{err}");
        create(dir.path(), "contoso", "uplink.localhost", 443)
            .await
            .unwrap();
        check_data_dir(dir.path(), DB_FILE).unwrap();
        std::fs::remove_file(dir.path().join("uplink.db")).unwrap();
        let err = check_data_dir(dir.path(), DB_FILE).unwrap_err().to_string();
        assert!(
            err.contains("bundles/contoso.json")
                && err.contains("no store")
                && err.contains("backup")
                && err.contains("TLS_UNTRUSTED_ROOT"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn create_writes_a_private_bundle_and_refuses_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let created = create(dir.path(), "Contoso", "uplink.localhost", 8443)
            .await
            .unwrap();
        assert_eq!(created.workspace, "contoso");
        assert_eq!(
            created.sensor_url,
            "https://contososensorapi.uplink.localhost:8443"
        );
        let bundle: Bundle =
            serde_json::from_slice(&std::fs::read(&created.bundle_path).unwrap()).unwrap();
        assert_eq!(bundle.access_key, created.access_key);
        assert_eq!(
            bundle.ca_sha256,
            uplink_pki::sha256_hex(&uplink_pki::certs_from_pem(&bundle.ca_pem).unwrap()[0])
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&created.bundle_path)
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o600);
        }
        assert!(!format!("{bundle:?}").contains(&bundle.access_key));
        let err = create(dir.path(), "contoso", "uplink.localhost", 443)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");
        // The failed attempt left no temporary file behind.
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("bundles"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("contoso.json")]);
        assert!(create(dir.path(), "bad_name", "uplink.localhost", 443)
            .await
            .is_err());
        assert!(create(dir.path(), "ok", "uplink.localhost", 0)
            .await
            .is_err());
        assert_eq!(
            create(dir.path(), "b", "example.test", 443)
                .await
                .unwrap()
                .sensor_url,
            "https://bsensorapi.example.test"
        );
    }
}
