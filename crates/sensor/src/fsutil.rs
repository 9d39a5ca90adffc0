//! Small file-system helpers: private files, atomic replacement.

use std::io::Write;
use std::path::Path;

/// Writes a file only its owner can read (0600), replacing any previous one, and syncs it.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    write_mode(path, contents, 0o600)
}

/// Writes a world-readable file (0644): certificates, non-secret configuration.
pub fn write_public(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    write_mode(path, contents, 0o644)
}

fn write_mode(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    // Write beside, then rename: a crash never leaves a half-written file under the real name.
    let tmp = path.with_extension(format!(
        "{}.tmp",
        path.extension().and_then(|e| e.to_str()).unwrap_or("new")
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    let mut file = options.open(&tmp)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    file.write_all(contents)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Creates a directory (and parents) with mode 0700 for the last component if it is new.
pub fn create_private_dir(path: &Path) -> std::io::Result<bool> {
    if path.is_dir() {
        return Ok(false);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)?;
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(path)?;
    Ok(true)
}
