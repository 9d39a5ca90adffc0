//! Checkpoints: where each source stopped, in small files replaced atomically (temporary file,
//! fsync, rename, fsync of the directory).
//!
//! A checkpoint is written only after the events up to it are durably in the queue, so after any
//! stop the source resumes exactly after the last queued line. The one window left is a crash
//! (SIGKILL, power loss) between the queue's fsync and the checkpoint's rename: the lines of that
//! last chunk are queued again (at least once; never a gap). A clean stop has no such window.
//!
//! Formats (JSON, versioned):
//! - `files.json`: `{"format":1,"files":[{"dev":D,"ino":I,"offset":O,"path":"…"}]}` — files by
//!   identity (device, inode), so a renamed file keeps its place; `path` is for people.
//! - `journal.json`: `{"format":1,"cursor":"…"}`.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::SourceError;

/// The format this build writes (and the newest it reads).
pub const FORMAT: u32 = 1;

/// Where one file stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMark {
    pub dev: u64,
    pub ino: u64,
    /// Every byte before this offset is in the queue.
    pub offset: u64,
    pub path: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilesCheckpoint {
    pub format: u32,
    pub files: Vec<FileMark>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalCheckpoint {
    pub format: u32,
    pub cursor: Option<String>,
}

/// Parses a checkpoint file's bytes; empty means "no checkpoint yet".
pub fn parse<T: for<'de> Deserialize<'de> + Default + HasFormat>(
    bytes: &[u8],
) -> Result<T, String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    let v: T = serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))?;
    if v.format() > FORMAT {
        return Err(format!(
            "written by a newer uplink (format {}; this build reads {FORMAT})",
            v.format()
        ));
    }
    Ok(v)
}

pub trait HasFormat {
    fn format(&self) -> u32;
}
impl HasFormat for FilesCheckpoint {
    fn format(&self) -> u32 {
        self.format
    }
}
impl HasFormat for JournalCheckpoint {
    fn format(&self) -> u32 {
        self.format
    }
}

/// Reads a checkpoint; a missing file is an empty checkpoint.
pub fn load<T: for<'de> Deserialize<'de> + Default + HasFormat>(
    path: &Path,
) -> Result<T, SourceError> {
    match std::fs::read(path) {
        Ok(b) => parse(&b).map_err(|reason| SourceError::Checkpoint {
            path: path.to_path_buf(),
            reason,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(crate::io_err(path)(e)),
    }
}

/// Replaces the checkpoint at `path` atomically and durably.
pub fn store<T: Serialize>(path: &Path, value: &T) -> Result<(), SourceError> {
    let bytes = serde_json::to_vec(value).map_err(|e| SourceError::Checkpoint {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    write_atomic(path, &bytes).map_err(crate::io_err(path))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing() {
        let c: FilesCheckpoint = parse(b"").unwrap();
        assert!(c.files.is_empty());
        let c: FilesCheckpoint = parse(
            br#"{"format":1,"files":[{"dev":1,"ino":2,"offset":300,"path":"/var/log/a.log"}]}"#,
        )
        .unwrap();
        assert_eq!(c.files[0].offset, 300);
        let j: JournalCheckpoint = parse(br#"{"format":1,"cursor":"s=abc;i=1"}"#).unwrap();
        assert_eq!(j.cursor.as_deref(), Some("s=abc;i=1"));
        for (bad, why) in [
            (
                &br#"{"format":1,"files":[{"dev":1}]}"#[..],
                "not valid JSON",
            ),
            (b"{", "not valid JSON"),
            (b"\x00\x01", "not valid JSON"),
            (br#"{"format":9,"files":[]}"#, "newer uplink"),
        ] {
            let e = parse::<FilesCheckpoint>(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn store_and_load() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub/files.json");
        assert_eq!(load::<FilesCheckpoint>(&p).unwrap(), Default::default());
        let c = FilesCheckpoint {
            format: FORMAT,
            files: vec![FileMark {
                dev: 1,
                ino: 2,
                offset: 3,
                path: "/x".into(),
            }],
        };
        store(&p, &c).unwrap();
        assert_eq!(load::<FilesCheckpoint>(&p).unwrap(), c);
        std::fs::write(&p, "garbage").unwrap();
        assert!(matches!(
            load::<FilesCheckpoint>(&p),
            Err(SourceError::Checkpoint { .. })
        ));
    }
}
