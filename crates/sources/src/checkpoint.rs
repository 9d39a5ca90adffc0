//! Checkpoints: where each source stopped, in small files replaced atomically (temporary file,
//! fsync, rename, fsync of the directory), so that a restart — also after SIGKILL or power loss —
//! neither re-sends nor skips.
//!
//! **Intent, then records.** A checkpoint written after the batch's records leaves a window (a
//! crash after the queue's fsync and before the rename) in which the batch is queued but the
//! checkpoint does not say so: the batch would be queued again, under new sequence numbers the
//! service cannot recognise as duplicates. So the checkpoint is written *before* the records,
//! inside the sink's append and under its lock ([`crate::Sink::append`]): it holds the committed
//! positions (everything before them is queued) and `next`, the batch about to be written — its
//! end position, the sequence number of its last event and a digest of that event as queued.
//!
//! **Reconcile at start** ([`reconcile`]): before anything else in the process appends or
//! uploads, a checkpoint with `next` is settled by asking the sink what it holds at `next`'s last
//! seq ([`crate::Sink::lookup`], under the sink's lock), decided by [`batch_made_it`]:
//! - present with the same digest: the batch is in (the queue's appends are atomic, so all of
//!   it), and the source resumes at `next`'s position;
//! - absent (the crash came before or during the write; recovery dropped the torn batch), or
//!   present with another digest (after the batch was dropped its numbers were handed out again,
//!   e.g. to `uplink sensor send`): it is not, and the source resumes at the committed position;
//! - acknowledged and gone: treated as in. Only `sensor run` acknowledges, and it reconciles both
//!   checkpoints before its uploader starts, so a pending seq cannot normally have been
//!   acknowledged yet. If it was anyway (a checkpoint left by a sensor run that never reconciled
//!   it, say after `[sources]` was removed and put back), the acknowledged record was visible to
//!   the uploader, and only complete batches are visible, so a batch did complete at that seq.
//!   It could be another appender's batch that reused the seq after ours was dropped; then
//!   resuming at `next` would skip our lines, and resuming before would repeat them. Nothing on
//!   disk tells the two apart any more; a complete batch at that seq is by far the likelier
//!   (reuse needs a crash mid-write *and* a `send` before the restart), so `next` wins.
//!
//! The settled checkpoint (without `next`) is written back at once. While running, the file on
//! disk keeps the `next` of the last batch until the source is idle, when it is rewritten clean.
//!
//! Formats (JSON, versioned; format 1, without `next` and fingerprints, is still read):
//! - `files.json`: `{"format":2,"files":[{"dev":D,"ino":I,"offset":O,"path":"…",
//!   "fingerprint":{"len":N,"hash":H},"not_json":T}],"next":{"position":{…a file…},"last_seq":L,"digest":G}}`
//!   — files by identity (device, inode), so a renamed file keeps its place; `path` is for
//!   people; `fingerprint` tells a reused inode from the file (see [`crate::tail::start_offset`]);
//!   `not_json` counts a JSON file's lines shipped as text (absent when 0; older builds ignore it).
//!   A file renamed away from its glob stays in `files` until it is read to its end (also across
//!   a restart: it is looked for by inode in its directory; `renamed_to` is the name it was found
//!   under; `born`, its birth time, and `length`, its length when last looked at, tell a file
//!   found again from another on its inode and one gone with unread bytes from one read to its
//!   end); one a restart cannot find any more, with unread bytes, goes to `"lost":[…a file…]` (see
//!   [`crate::tail`]); `not_json_let_go` sums the `not_json` of the files let go. Older builds
//!   ignore these fields.
//! - `journal.json`: `{"format":2,"cursor":"…","next":{"position":"…","last_seq":L,"digest":G}}`.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Sink, SourceError, Stored};

/// The format this build writes (and the newest it reads).
pub const FORMAT: u32 = 2;

/// The first bytes of a file, identifying it beyond its inode number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// How many of the file's first bytes were hashed.
    pub len: u64,
    /// [`hash`] of those bytes.
    pub hash: u64,
}

impl Fingerprint {
    pub fn of(head: &[u8]) -> Fingerprint {
        Fingerprint {
            len: head.len() as u64,
            hash: hash(head),
        }
    }
}

/// 64-bit FNV-1a: stable across builds and platforms (unlike std's hasher), which a checkpoint
/// read by the next version needs.
pub fn hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Where one file stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMark {
    pub dev: u64,
    pub ino: u64,
    /// Every byte before this offset is in the queue.
    pub offset: u64,
    pub path: String,
    /// The file's first `min(offset, 1 KiB)` bytes (absent in format 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<Fingerprint>,
    /// In a `format = "json"` file: how many of the lines before `offset` were not one JSON
    /// object and went as text (since the file was first followed). Written with the offset, so
    /// the count always matches what is in the queue; absent when 0 (and in older checkpoints).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub not_json: u64,
    /// Where a file that left its glob (rotated away) was found again at a restart, when its name
    /// changed; `path` stays the name its lines were logged under (their events carry it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renamed_to: Option<String>,
    /// The file's length when last looked at (absent in older checkpoints): a file not found
    /// again at a restart is reported lost only when this was beyond `offset` (or is unknown);
    /// one read to its end and then deleted is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<u64>,
    /// The file's birth time (statx `btime`, nanoseconds since the epoch), when the filesystem
    /// keeps one (absent otherwise, and in older checkpoints): a file found again by inode must
    /// have the same, so another file that got the inode is not taken for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub born: Option<u64>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A batch written after the checkpoint: where the source will be once it is in the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Next<P> {
    pub position: P,
    /// The sequence number of the batch's last event.
    pub last_seq: u64,
    /// The sink's digest of that event.
    pub digest: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilesCheckpoint {
    pub format: u32,
    pub files: Vec<FileMark>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<Next<FileMark>>,
    /// Files a restart could not find again before they were known to be read to their end:
    /// deleted, or moved out of their directory, while the sensor was stopped. Lines after each
    /// one's `offset`, if it had any, were lost. The last [`MAX_LOST`] (absent when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lost: Vec<FileMark>,
    /// The `not_json` counts of the files let go (rotated away and read to their end), summed:
    /// what was queued as text stays counted after its file is gone (absent when 0).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub not_json_let_go: u64,
}

/// How many lost files a checkpoint keeps (the oldest go first).
pub const MAX_LOST: usize = 32;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalCheckpoint {
    pub format: u32,
    pub cursor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<Next<String>>,
}

/// Whether the batch a checkpoint's `next` names is in the sink, from what the sink holds at its
/// last seq. See the module docs for why an acknowledged seq counts as in.
pub fn batch_made_it(digest: u64, stored: Stored) -> bool {
    match stored {
        Stored::Present { digest: d } => d == digest,
        Stored::Acked => true,
        Stored::Absent => false,
    }
}

/// A checkpoint that can carry a pending batch.
pub trait Settle: Sized {
    /// `(last_seq, digest)` of the pending batch, if any.
    fn pending(&self) -> Option<(u64, u64)>;
    /// The checkpoint without its pending batch: moved to the batch's end if `made_it`.
    fn settle(self, made_it: bool) -> Self;
}

impl Settle for FilesCheckpoint {
    fn pending(&self) -> Option<(u64, u64)> {
        self.next.as_ref().map(|n| (n.last_seq, n.digest))
    }

    fn settle(mut self, made_it: bool) -> Self {
        if let (Some(next), true) = (self.next.take(), made_it) {
            let p = next.position;
            match self
                .files
                .iter_mut()
                .find(|m| (m.dev, m.ino) == (p.dev, p.ino))
            {
                Some(m) => *m = p,
                None => self.files.push(p),
            }
        }
        self.format = FORMAT;
        self
    }
}

impl Settle for JournalCheckpoint {
    fn pending(&self) -> Option<(u64, u64)> {
        self.next.as_ref().map(|n| (n.last_seq, n.digest))
    }

    fn settle(mut self, made_it: bool) -> Self {
        if let (Some(next), true) = (self.next.take(), made_it) {
            self.cursor = Some(next.position);
        }
        self.format = FORMAT;
        self
    }
}

/// Loads the checkpoint at `path` and, if it names a pending batch, settles it against `sink`
/// (under the sink's lock) and writes the settled checkpoint back. Call before anything in this
/// process appends to the sink or acknowledges from it.
pub fn reconcile<T>(path: &Path, sink: &mut dyn Sink) -> Result<T, SourceError>
where
    T: for<'de> Deserialize<'de> + Default + HasFormat + Settle + Serialize,
{
    let ck: T = load(path)?;
    let Some((last_seq, digest)) = ck.pending() else {
        return Ok(ck);
    };
    let mut ck = Some(ck);
    let mut settled = None;
    sink.lookup(last_seq, &mut |stored| {
        let made_it = batch_made_it(digest, stored);
        let Some(c) = ck.take() else {
            return Ok(());
        };
        let s = c.settle(made_it);
        store(path, &s)?;
        tracing::info!(
            checkpoint = %path.display(),
            last_seq,
            ?stored,
            "settled the batch pending at the last stop: {}",
            if made_it {
                "it is in the queue; resuming after it"
            } else {
                "it is not in the queue; resuming before it"
            }
        );
        settled = Some(s);
        Ok(())
    })?;
    settled.ok_or_else(|| SourceError::Checkpoint {
        path: path.to_path_buf(),
        reason: "the queue did not answer the lookup of the pending batch".into(),
    })
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

    fn mark(ino: u64, offset: u64) -> FileMark {
        FileMark {
            dev: 1,
            ino,
            offset,
            path: format!("/log/{ino}"),
            fingerprint: Some(Fingerprint { len: 3, hash: 9 }),
            not_json: ino % 2,
            renamed_to: None,
            length: None,
            born: None,
        }
    }

    #[test]
    fn parsing() {
        let c: FilesCheckpoint = parse(b"").unwrap();
        assert!(c.files.is_empty());
        // Format 1: no fingerprint, no next.
        let c: FilesCheckpoint = parse(
            br#"{"format":1,"files":[{"dev":1,"ino":2,"offset":300,"path":"/var/log/a.log"}]}"#,
        )
        .unwrap();
        assert_eq!(c.files[0].offset, 300);
        assert_eq!((c.files[0].fingerprint, c.next.as_ref()), (None, None));
        let j: JournalCheckpoint = parse(br#"{"format":1,"cursor":"s=abc;i=1"}"#).unwrap();
        assert_eq!(j.cursor.as_deref(), Some("s=abc;i=1"));
        let j: JournalCheckpoint = parse(
            br#"{"format":2,"cursor":"a","next":{"position":"b","last_seq":7,"digest":18446744073709551615}}"#,
        )
        .unwrap();
        assert_eq!(j.pending(), Some((7, u64::MAX)));
        for (bad, why) in [
            (
                &br#"{"format":1,"files":[{"dev":1}]}"#[..],
                "not valid JSON",
            ),
            (b"{", "not valid JSON"),
            (b"\x00\x01", "not valid JSON"),
            (br#"{"format":9,"files":[]}"#, "newer uplink"),
            (
                br#"{"format":2,"cursor":"a","next":{"position":"b"}}"#,
                "not valid JSON",
            ),
        ] {
            let e = parse::<FilesCheckpoint>(bad)
                .err()
                .or_else(|| parse::<JournalCheckpoint>(bad).err())
                .unwrap_or_else(|| panic!("{bad:?} parsed"));
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
            files: vec![mark(2, 3)],
            next: Some(Next {
                position: mark(2, 10),
                last_seq: 5,
                digest: 6,
            }),
            lost: vec![mark(7, 8)],
            not_json_let_go: 4,
        };
        store(&p, &c).unwrap();
        assert_eq!(load::<FilesCheckpoint>(&p).unwrap(), c);
        std::fs::write(&p, "garbage").unwrap();
        assert!(matches!(
            load::<FilesCheckpoint>(&p),
            Err(SourceError::Checkpoint { .. })
        ));
    }

    #[test]
    fn made_it_or_not() {
        for (stored, want) in [
            (Stored::Present { digest: 42 }, true),
            (Stored::Present { digest: 43 }, false), // the seq went to another appender
            (Stored::Absent, false),                 // never written, or a torn batch dropped
            (Stored::Acked, true),                   // it was visible, so it was complete
        ] {
            assert_eq!(batch_made_it(42, stored), want, "{stored:?}");
        }
    }

    #[test]
    fn settling() {
        let files = |next_ino: u64| FilesCheckpoint {
            format: 1,
            files: vec![mark(1, 100), mark(2, 200)],
            next: Some(Next {
                position: mark(next_ino, 999),
                last_seq: 5,
                digest: 6,
            }),
            lost: Vec::new(),
            not_json_let_go: 0,
        };
        for (ck, made_it, want) in [
            (files(2), true, vec![mark(1, 100), mark(2, 999)]),
            (files(2), false, vec![mark(1, 100), mark(2, 200)]),
            // A file first read in the pending batch.
            (
                files(3),
                true,
                vec![mark(1, 100), mark(2, 200), mark(3, 999)],
            ),
            (files(3), false, vec![mark(1, 100), mark(2, 200)]),
        ] {
            let s = ck.settle(made_it);
            assert_eq!((s.format, s.files, s.next), (FORMAT, want, None));
        }
        let j = JournalCheckpoint {
            format: 2,
            cursor: None,
            next: Some(Next {
                position: "c2".into(),
                last_seq: 1,
                digest: 2,
            }),
        };
        assert_eq!(j.clone().settle(true).cursor.as_deref(), Some("c2"));
        assert_eq!(j.clone().settle(false).cursor, None);
        assert_eq!(j.settle(false).next, None);
    }
}
