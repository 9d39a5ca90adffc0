//! `status.json`: what the uploader last did, for `uplink sensor status` (and, later, heartbeats).
//!
//! Written atomically (temporary file + rename) by the uploader; read by anyone. It never holds a
//! secret: errors come from typed errors that carry none.

use std::path::Path;

use serde::{Deserialize, Serialize};
use uplink_diag::Code;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Status {
    /// The route last used: `DIRECT` or `PROXY host:port`.
    pub route: Option<String>,
    /// Why the route is not the first candidate (a proxy could not be reached), if it is not.
    #[serde(default)]
    pub route_note: Option<String>,
    /// The proxy authentication scheme in use (`Basic`, `Digest`, `NTLM`), if any.
    #[serde(default)]
    pub proxy_auth: Option<String>,
    /// RFC 3339 time of the last batch the service committed.
    pub last_success: Option<String>,
    pub last_error: Option<LastError>,
    /// Events the uploader has delivered since it started.
    #[serde(default)]
    pub delivered: u64,
    pub updated_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LastError {
    pub code: String,
    pub message: String,
    pub at: String,
}

impl LastError {
    pub fn new(code: Code, message: String) -> Self {
        LastError {
            code: code.as_str().to_owned(),
            message,
            at: now_rfc3339(),
        }
    }
}

pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl Status {
    pub fn load(path: &Path) -> Status {
        std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    pub fn store(&mut self, path: &Path) -> std::io::Result<()> {
        self.updated_at = Some(now_rfc3339());
        crate::fsutil::write_public(
            path,
            &serde_json::to_vec_pretty(self).expect("status serialises"),
        )
    }
}

/// How the heartbeats went, kept by the sources thread in `sources/heartbeats.json` so that
/// `sensor status` (another process) can show skipped heartbeats. Counts are since the sensor
/// last started.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct HeartbeatRecord {
    /// Heartbeats queued.
    pub queued: u64,
    /// Heartbeats skipped because the queue was full.
    pub skipped: u64,
    /// RFC 3339 time of the last heartbeat queued.
    pub last_queued: Option<String>,
    /// RFC 3339 time of the last heartbeat skipped.
    pub last_skipped: Option<String>,
}

impl HeartbeatRecord {
    pub fn path(paths: &crate::Paths) -> std::path::PathBuf {
        paths.sources_dir().join("heartbeats.json")
    }

    pub fn load(paths: &crate::Paths) -> HeartbeatRecord {
        std::fs::read(Self::path(paths))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    pub fn store(&self, paths: &crate::Paths) -> std::io::Result<()> {
        let path = Self::path(paths);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        crate::fsutil::write_public(
            &path,
            &serde_json::to_vec_pretty(self).expect("record serialises"),
        )
    }
}

/// One followed file as `sensor status` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FileStatus {
    pub path: String,
    /// Every byte before it is in the queue.
    pub offset: u64,
    /// The file's length now, when the path still names the file that was followed (`None`: it
    /// was rotated away or deleted).
    pub length: Option<u64>,
    /// Bytes written but not yet queued (`length - offset`).
    pub behind: Option<u64>,
}

/// Where the sources stand, read from their checkpoints (see `uplink_sources::checkpoint`).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SourcesStatus {
    pub files: Vec<FileStatus>,
    /// The cursor of the last journal entry queued.
    pub journal_cursor: Option<String>,
    pub heartbeats: HeartbeatRecord,
}

impl SourcesStatus {
    /// Reads the checkpoints; an unreadable one reads as empty (status never fails on them).
    pub fn load(paths: &crate::Paths) -> SourcesStatus {
        use std::os::unix::fs::MetadataExt;
        use uplink_sources::checkpoint::{self, FilesCheckpoint, JournalCheckpoint};
        let dir = paths.sources_dir();
        let files: FilesCheckpoint = checkpoint::load(&dir.join("files.json")).unwrap_or_default();
        let journal: JournalCheckpoint =
            checkpoint::load(&dir.join("journal.json")).unwrap_or_default();
        // While a source is busy its checkpoint names the batch being written as `next`: that
        // batch is in the queue unless the sensor crashed writing it, so show where it ends.
        let mut marks = files.files;
        if let Some(n) = files.next {
            let p = n.position;
            match marks.iter_mut().find(|m| (m.dev, m.ino) == (p.dev, p.ino)) {
                Some(m) => *m = p,
                None => marks.push(p),
            }
        }
        SourcesStatus {
            files: marks
                .into_iter()
                .map(|m| {
                    let length = std::fs::metadata(&m.path)
                        .ok()
                        .filter(|md| md.dev() == m.dev && md.ino() == m.ino)
                        .map(|md| md.len());
                    FileStatus {
                        path: m.path.clone(),
                        offset: m.offset,
                        length,
                        behind: length.map(|l| l.saturating_sub(m.offset)),
                    }
                })
                .collect(),
            journal_cursor: journal.next.map(|n| n.position).or(journal.cursor),
            heartbeats: HeartbeatRecord::load(paths),
        }
    }
}
