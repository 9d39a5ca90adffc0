//! `status.json`: what the uploader last did, for `uplink sensor status` (and, later, heartbeats).
//!
//! Written atomically (temporary file + rename) by the uploader; read by anyone. It never holds a
//! secret: errors come from typed errors that carry none.
//!
//! On a full disk the rename cannot happen (the temporary file needs a block), yet that is when
//! status matters most. So the file is kept padded to [`STATUS_FILE_LEN`] bytes (JSON allows
//! trailing whitespace) and, when the atomic write fails, rewritten in place within that size —
//! no new block needed. `sensor send` records `DISK_FULL` there the same way.

use std::path::Path;

pub mod prometheus;
pub mod report;
pub use report::Report;

use serde::{Deserialize, Serialize};
use uplink_diag::Code;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Status {
    /// The route last used: `DIRECT` or `PROXY host:port`.
    pub route: Option<String>,
    /// How the route was chosen (`explicit`, `pac`, `wpad`, `env`, `direct`, `policy`).
    #[serde(default)]
    pub route_source: Option<String>,
    /// Why the route is not the first candidate (a proxy could not be reached), if it is not.
    #[serde(default)]
    pub route_note: Option<String>,
    /// The proxy authentication scheme in use (`Basic`, `Digest`, `NTLM`), if any.
    #[serde(default)]
    pub proxy_auth: Option<String>,
    /// [`crate::config::proxy_fingerprint`] of the settings the route in use was chosen under.
    #[serde(default)]
    pub proxy_settings: Option<String>,
    /// RFC 3339 time of the last batch the service committed.
    pub last_success: Option<String>,
    pub last_error: Option<LastError>,
    /// Damage found in the queue files since the uploader started: records lost for good.
    #[serde(default)]
    pub queue_damage: Option<QueueDamage>,
    /// While a running sensor's sources cannot queue for want of disk space (`DISK_FULL`, since
    /// when): apart from `last_error`, which keeps what uploading last met.
    #[serde(default)]
    pub disk_full: Option<LastError>,
    /// Events the uploader has delivered since it started.
    #[serde(default)]
    pub delivered: u64,
    /// The central policy as this sensor follows it (issue #26, [`crate::policy`]): the version
    /// applied, the one last fetched, a rejection. Never its route's password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<uplink_protocol::heartbeat::PolicyState>,
    pub updated_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LastError {
    pub code: String,
    pub message: String,
    pub at: String,
    /// The fix fitted to this failure (`uplink_diag::Diagnosis::fix`), when the uploader knew
    /// its context; otherwise the code's generic fix applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl LastError {
    pub fn new(code: Code, message: String) -> Self {
        LastError {
            code: code.as_str().to_owned(),
            message,
            at: now_rfc3339(),
            fix: None,
        }
    }

    /// The error of a diagnosis, with its fitted fix.
    pub fn diagnosed(d: &uplink_diag::Diagnosis, message: String) -> Self {
        LastError {
            fix: Some(d.fix()),
            ..LastError::new(d.code, message)
        }
    }
}

/// What damage in the queue files cost (see `uplink_queue::Recovery`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct QueueDamage {
    /// Records lost (their bytes no longer decode); every intact record was delivered.
    pub lost_records: u64,
    /// The lost seqs, as `[first, last]` ranges (the first [`MAX_RANGES`]).
    pub lost_seqs: Vec<[u64; 2]>,
    /// RFC 3339 time it was last found.
    pub at: String,
}

/// Ranges of lost seqs kept in status (the count covers them all).
pub const MAX_RANGES: usize = 16;

impl QueueDamage {
    /// Adds a lost range.
    pub fn add(&mut self, first: u64, last: u64) {
        self.lost_records += last - first + 1;
        if self.lost_seqs.len() < MAX_RANGES {
            self.lost_seqs.push([first, last]);
        }
        self.at = now_rfc3339();
    }

    /// One line for `last_error` and logs.
    pub fn message(&self) -> String {
        let ranges: Vec<String> = self
            .lost_seqs
            .iter()
            .map(|[a, b]| {
                if a == b {
                    a.to_string()
                } else {
                    format!("{a}-{b}")
                }
            })
            .collect();
        format!(
            "{} queued records were damaged on disk and could not be delivered (seq {}{}); every intact record was delivered",
            self.lost_records,
            ranges.join(", "),
            if self.lost_seqs.len() == MAX_RANGES { ", …" } else { "" }
        )
    }
}

/// `status.json` is padded to this size, so that it can be rewritten in place on a full disk.
pub const STATUS_FILE_LEN: usize = 8192;

/// Writes `contents` (JSON) to `path`: atomically, padded to [`STATUS_FILE_LEN`]; when that fails
/// (a full disk), in place over the existing padded file if it fits.
pub fn write_padded(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut padded = contents.to_vec();
    if padded.len() < STATUS_FILE_LEN {
        padded.resize(STATUS_FILE_LEN - 1, b' ');
        padded.push(b'\n');
    }
    let atomic = crate::fsutil::write_public(path, &padded);
    let Err(e) = atomic else {
        return Ok(());
    };
    // The temporary file is of no use now; do not leave it holding space.
    if let Some(name) = path.file_name() {
        let mut tmp = name.to_os_string();
        tmp.push(".tmp");
        let _ = std::fs::remove_file(path.with_file_name(tmp));
    }
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().write(true).open(path)?;
    let len = file.metadata()?.len() as usize;
    if contents.len() >= len {
        return Err(e);
    }
    let mut in_place = contents.to_vec();
    in_place.resize(len - 1, b' ');
    in_place.push(b'\n');
    file.write_all(&in_place)?;
    file.sync_data()
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
        write_padded(
            path,
            &serde_json::to_vec_pretty(self).expect("status serialises"),
        )
    }

    /// Records `DISK_FULL` as the last error (from `sensor send`, which cannot queue).
    pub fn record_disk_full(path: &Path, message: String) -> std::io::Result<()> {
        let mut status = Status::load(path);
        status.last_error = Some(LastError::new(Code::DISK_FULL, message));
        status.store(path)
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
    /// In a `format = "json"` file: lines queued as text because they were not one JSON object
    /// (`uplink_sources::checkpoint::FileMark::not_json`); 0 otherwise.
    pub not_json: u64,
}

/// A followed file gone before it was read to its end (see [`SourcesStatus::lost_files`]).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LostFile {
    pub path: String,
    /// Every byte before it was queued.
    pub offset: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Where the sources stand, read from their checkpoints (see `uplink_sources::checkpoint`).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SourcesStatus {
    pub files: Vec<FileStatus>,
    /// Followed files a restart could not find again before they were known to be read to their
    /// end (`uplink_sources::checkpoint::FilesCheckpoint::lost`): `(path, offset)`, lines after
    /// the offset, if any, lost. Absent when none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lost_files: Vec<LostFile>,
    /// Lines not JSON objects, queued as text, of the files let go after rotation
    /// (`uplink_sources::checkpoint::FilesCheckpoint::not_json_let_go`). Absent when 0.
    #[serde(skip_serializing_if = "is_zero")]
    pub not_json_let_go: u64,
    /// The cursor of the last journal entry queued.
    pub journal_cursor: Option<String>,
    pub heartbeats: HeartbeatRecord,
}

impl SourcesStatus {
    /// Reads the checkpoints; an unreadable one reads as empty (status never fails on them).
    pub fn load(paths: &crate::Paths) -> SourcesStatus {
        use uplink_sources::checkpoint::{self, FilesCheckpoint, JournalCheckpoint};
        let dir = paths.sources_dir();
        let files: FilesCheckpoint = checkpoint::load(&dir.join("files.json")).unwrap_or_default();
        let journal: JournalCheckpoint =
            checkpoint::load(&dir.join("journal.json")).unwrap_or_default();
        // While a source is busy its checkpoint names the batch being written as `next`: that
        // batch is in the queue unless the sensor crashed writing it, so show where it ends.
        let lost_files = files
            .lost
            .iter()
            .map(|m| LostFile {
                path: m.path.clone(),
                offset: m.offset,
            })
            .collect();
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
                    let length = length_now(&m);
                    FileStatus {
                        path: m.path.clone(),
                        offset: m.offset,
                        length,
                        behind: length.map(|l| l.saturating_sub(m.offset)),
                        not_json: m.not_json,
                    }
                })
                .collect(),
            lost_files,
            not_json_let_go: files.not_json_let_go,
            journal_cursor: journal.next.map(|n| n.position).or(journal.cursor),
            heartbeats: HeartbeatRecord::load(paths),
        }
    }
}

/// The length now of the file `m` names: under its name, or, for a rotated-away file found again
/// at a restart, under the name it was found under (`renamed_to`); `None` when that name no
/// longer names the file followed.
fn length_now(m: &uplink_sources::checkpoint::FileMark) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(m.renamed_to.as_deref().unwrap_or(&m.path))
        .ok()
        .filter(|md| md.dev() == m.dev && md.ino() == m.ino)
        .map(|md| md.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_found_again_file_has_its_length_under_its_new_name() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("app.log.1");
        std::fs::write(&old, b"0123456789").unwrap();
        let md = std::fs::metadata(&old).unwrap();
        let m = uplink_sources::checkpoint::FileMark {
            dev: md.dev(),
            ino: md.ino(),
            offset: 4,
            path: dir.path().join("app.log").display().to_string(),
            fingerprint: None,
            not_json: 0,
            renamed_to: Some(old.display().to_string()),
            length: None,
            born: None,
        };
        assert_eq!(length_now(&m), Some(10));
        // Not the file any more under that name.
        let other = dir.path().join("other");
        std::fs::write(&other, b"x").unwrap();
        std::fs::rename(&other, &old).unwrap();
        assert_eq!(length_now(&m), None);
    }

    #[test]
    fn status_is_rewritten_in_place_when_no_new_file_can_be_made() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status.json");
        let mut st = Status {
            delivered: 5,
            ..Status::default()
        };
        st.store(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().len() as usize,
            STATUS_FILE_LEN
        );
        assert_eq!(Status::load(&path).delivered, 5);
        // The temporary file cannot be made (a directory in its way, as a full disk would).
        std::fs::create_dir(dir.path().join("status.json.tmp")).unwrap();
        Status::record_disk_full(&path, "no space".into()).unwrap();
        let back = Status::load(&path);
        assert_eq!(back.last_error.unwrap().code, "DISK_FULL");
        assert_eq!(back.delivered, 5);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len() as usize,
            STATUS_FILE_LEN
        );
    }

    #[test]
    fn damage_messages() {
        let mut d = QueueDamage::default();
        d.add(7, 7);
        d.add(100, 104);
        assert_eq!(d.lost_records, 6);
        assert!(d
            .message()
            .starts_with("6 queued records were damaged on disk"));
        assert!(d.message().contains("(seq 7, 100-104)"), "{}", d.message());
        for i in 0..40 {
            d.add(1000 + 2 * i, 1000 + 2 * i);
        }
        assert_eq!(d.lost_seqs.len(), MAX_RANGES);
        assert_eq!(d.lost_records, 46);
        assert!(d.message().contains(", …)"));
    }
}
