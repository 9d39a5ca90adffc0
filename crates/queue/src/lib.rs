//! The sensor's durable queue.
//!
//! An event counts as accepted only once it is on disk: [`Queue::append`] writes framed records
//! (length, CRC-32, sequence number, payload; see [`record`]) to append-only segment files and
//! fsyncs before returning. Each event gets the next per-sensor sequence number as it enters the
//! queue; that number travels with it to the service, which stores each `(sensor, seq)` once. So
//! a batch re-sent after any crash — of the sensor, the network or the service — is harmless.
//!
//! Events leave the queue only through [`Queue::ack`], which the uploader calls after the
//! service's 200. Until then [`Queue::read_batch`] returns the same events again.
//!
//! Several processes share one queue (`uplink sensor send` appends while `uplink sensor run`
//! uploads): every operation holds an exclusive `flock` on `queue.lock` and re-reads the small
//! amount of state it needs. Appenders fsync before they release the lock, so a reader only ever
//! sees durable records.
//!
//! **Appends are atomic batches.** The records of one append are marked as one batch in the
//! framing (format 2, [`record`]). Recovery — by the next *writer* to take the lock — cuts the
//! last segment back to the end of its last *complete* batch; a batch cut short anywhere (SIGKILL
//! in the middle of a large `write(2)`, power loss) is gone whole. Readers only see validated,
//! complete batches.
//!
//! **Damage is skipped, never spread.** Every record carries its seq and a CRC-32, so reading
//! resynchronises at the next valid record after bytes that do not decode (a flipped bit, a lost
//! page), in any segment: every intact record is delivered, and what was lost — how many records,
//! which seqs — is reported ([`Queue::take_recoveries`], [`Recovery::damaged`]). Intact data is
//! never cut off. Sequence numbers are never handed out twice: when the writer cuts a torn end, it
//! starts a new (empty) segment named above every seq the cut bytes could have held, so the gap
//! persists on disk. The acknowledged high-water mark is kept in `meta.bin`.
//!
//! **Memory does not grow with the backlog.** Opening a queue validates its tail segment in
//! windows of about 2 MiB (the rest in one read only when a window finds damage, or a batch
//! longer than a window); [`Queue::read_batch`] reads in 256 KiB chunks (more only for a larger
//! record) and holds only the batch it returns. So the sensor's memory does not depend on how
//! much is queued. What another handle of this process appended to the tail (the sensor's
//! sources, for its uploader) is trusted as that handle checked and fsynced it, not read again
//! (`APPENDED`); damage in it would be found when its records are read (each has its CRC).
//!
//! **Only the writer repairs.** [`Queue::open_read_only`] (for `sensor status`) never creates,
//! truncates or rewrites a file; it reads what a writer would keep.
//!
//! **Acknowledging needs no new disk space.** `meta.bin` is two fixed-size slots
//! ([`record::meta`]) overwritten in place, so an acknowledgement works on a full disk; and a
//! segment whose records are all acknowledged is deleted at once, the active one included, so a
//! drained queue gives its space back.
//!
//! **Exactly-once for sources.** A source that checkpoints its own position (a file offset, a
//! journal cursor) must not re-send a batch after a crash between the queue's fsync and its
//! checkpoint. So it writes the checkpoint *before* the records, inside the append, with the lock
//! held: [`Queue::append_committing`] calls back with the [`Intent`] (the seqs the batch gets and
//! a digest of its last payload) after the batch is known to fit and before any byte is written.
//! The checkpoint names both positions — before and after the batch — and the intent. At the
//! next start, the source asks [`Queue::lookup`] for the batch's last seq: present with the same
//! digest means the batch is in (batches are atomic, so all of it is); absent (or, in a queue an
//! older build wrote, present with another payload: that build handed a dropped batch's seqs out
//! again) means it is not. What this does not cover: a source's own decision to re-read (a
//! truncated file).
//!
//! Formats: segments of format 1 (older builds; no batch flags, every record its own batch) are
//! read; appends never go into one (a new format-2 segment is started). An older build refuses a
//! format-2 segment ("written by a newer uplink") instead of truncating it as damage, and refuses
//! the queue once `meta.json` says format 2 (written with `meta.bin`).
//!
//! Layout of the queue directory:
//! - `queue.lock`: the lock file (empty)
//! - `meta.bin`: the acknowledgement record (format 2, [`record::meta`]: two slots, in place)
//! - `meta.json`: format 1 (older builds) `{"format":1,"acked_through":N,"acked_segment":S,
//!   "acked_offset":O}`, read when there is no `meta.bin`; once `meta.bin` is written it says
//!   `"format":2`, so an older build refuses the queue ("written by a newer uplink") instead of
//!   re-reading stale acknowledgements
//! - `SSSSSSSSSSSSSSSSSSSS.seg`: segments named by their first sequence number; header and
//!   records as in [`record`] (format 2: `len|MORE`, CRC-32 over length word, seq and payload)

pub mod record;

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use record::{Decoded, HEADER_LEN, RECORD_OVERHEAD};

/// How much of a tail segment is scanned at a time, at first (when a queue is opened, and by
/// the uploader's handle validating what the sources appended since it last looked): this
/// bounds memory. A window that holds no whole batch is doubled.
const SCAN_WINDOW: usize = 256 * 1024;
/// The largest window [`SCAN_WINDOW`] doubles to before the rest of the tail is read whole
/// (two of the largest records).
const SCAN_WINDOW_MAX: usize = 2 * (record::MAX_PAYLOAD + RECORD_OVERHEAD);
/// How much of a segment [`Queue::read_batch`] reads at a time (more only for a larger record).
const READ_CHUNK: usize = 256 * 1024;
/// A batch's body starts with room for this much (and grows up to its limit).
const BODY_CAPACITY: usize = 256 * 1024;

/// The format of the acknowledgement record (`meta.bin`; `meta.json` says it) this build writes.
pub const META_FORMAT: u32 = record::meta::FORMAT;

/// Size bounds.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Most bytes of unacknowledged records; appends beyond it fail with [`QueueError::Full`].
    pub max_bytes: u64,
    /// A segment is closed (and a new one started) once it reaches this size.
    pub segment_bytes: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_bytes: 512 << 20,
            segment_bytes: 32 << 20,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error(
        "the queue is full ({pending} of {max} bytes waiting to be uploaded; {needed} more needed): fix connectivity (uplink check) or raise the queue size"
    )]
    Full { pending: u64, max: u64, needed: u64 },
    #[error("an event of {0} bytes is larger than the largest allowed ({max} bytes)", max = record::MAX_PAYLOAD)]
    EventTooLarge(usize),
    #[error("queue file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("queue file {path}: {reason}")]
    Format { path: PathBuf, reason: String },
}

impl QueueError {
    /// The file system holding the queue has no room (ENOSPC, or the user's quota).
    pub fn is_disk_full(&self) -> bool {
        matches!(self, QueueError::Io { source, .. } if is_disk_full(source))
    }
}

/// Whether an I/O error means "no space left" (ENOSPC) or "quota exceeded" (EDQUOT).
pub fn is_disk_full(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::StorageFull || matches!(e.raw_os_error(), Some(28 | 122))
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> QueueError + '_ {
    move |source| QueueError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Something recovery or reading skipped: a torn end cut by the writer, or damage on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    pub segment: PathBuf,
    /// Offset of the first byte skipped.
    pub offset: u64,
    pub dropped_bytes: u64,
    pub reason: String,
    /// The seqs that cannot be delivered (first, last), if any. For a torn end: the seqs its bytes
    /// could have held, which are never handed out again.
    pub lost: Option<(u64, u64)>,
    /// Damage on disk (bytes that were once a complete record no longer decode), as opposed to a
    /// write cut short by a crash (whose batch was never accepted).
    pub damaged: bool,
}

impl Recovery {
    /// How many seqs were lost.
    pub fn lost_count(&self) -> u64 {
        self.lost.map_or(0, |(a, b)| b - a + 1)
    }
}

impl std::fmt::Display for Recovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = if self.damaged {
            "damaged on disk"
        } else {
            "a write cut short"
        };
        write!(
            f,
            "{} bytes at offset {} of {} skipped ({}: {})",
            self.dropped_bytes,
            self.offset,
            self.segment.display(),
            what,
            self.reason
        )?;
        match self.lost {
            Some((a, b)) if self.damaged => write!(
                f,
                "; {} records lost (seq {a} to {b}); every intact record was kept",
                b - a + 1
            ),
            Some((a, b)) => write!(
                f,
                "; that batch was never accepted; seq {a} to {b} will not be used; every complete record before it was kept"
            ),
            None => write!(f, "; no record lost; every complete record before it was kept"),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Meta {
    format: u32,
    acked_through: Option<u64>,
    /// Where reading resumes: the segment (by first seq) and offset just past the last acked record.
    acked_segment: Option<u64>,
    acked_offset: u64,
    /// `meta.bin`'s write counter (not in `meta.json`).
    #[serde(skip)]
    generation: u64,
}

impl Meta {
    fn ack(&self) -> record::meta::Ack {
        record::meta::Ack {
            generation: self.generation,
            acked_through: self.acked_through,
            acked_segment: self.acked_segment,
            acked_offset: self.acked_offset,
        }
    }
}

#[derive(Debug, Clone)]
struct Segment {
    first_seq: u64,
    path: PathBuf,
    len: u64,
}

/// A position in the queue: a segment (by first seq) and a byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    segment: u64,
    offset: u64,
}

/// Events read for upload, not yet acknowledged.
#[derive(Debug, Clone)]
pub struct Batch {
    pub first_seq: u64,
    pub last_seq: u64,
    pub count: usize,
    /// The events' payloads, each followed by `\n` (empty when read with
    /// [`Queue::read_batch_each`], which hands them out instead).
    pub body: Vec<u8>,
    /// The length of that text (payloads and newlines), whether or not `body` holds it.
    pub text_len: usize,
    end: Position,
    /// It ended at a limit (`max_events`, `max_bytes`, or the next event would not have fit),
    /// not at the end of what was queued.
    full: bool,
}

impl Batch {
    /// The same batch without its text (for [`Queue::ack`] once the text has been sent or
    /// copied): its memory is freed.
    pub fn without_body(self) -> Batch {
        Batch {
            body: Vec::new(),
            ..self
        }
    }

    /// Whether it ended at a limit of the read (events, bytes) rather than at the end of what
    /// was queued: more is waiting after it.
    pub fn is_full(&self) -> bool {
        self.full
    }
}

/// The capacity a batch's body grows to so that `need` bytes fit: doubling (from
/// [`BODY_CAPACITY`]) as a `Vec` does, but never past what the batch can hold — `max_bytes`, or
/// `need` when a single event is larger — so a body near its limit is not allocated twice its
/// size.
fn body_capacity(capacity: usize, need: usize, max_bytes: usize) -> usize {
    if need <= capacity {
        return capacity;
    }
    capacity
        .saturating_mul(2)
        .max(BODY_CAPACITY)
        .min(max_bytes)
        .max(need)
}

/// What an append is about to write, as its `commit` callback learns it
/// ([`Queue::append_committing`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intent {
    pub first_seq: u64,
    pub last_seq: u64,
    /// [`record::digest`] of the last event's payload.
    pub last_digest: u64,
}

/// What the queue holds at a sequence number ([`Queue::lookup`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// A record, with the [`record::digest`] of its payload.
    Present { digest: u64 },
    /// Acknowledged (uploaded and committed by the service) and no longer on disk.
    Acked,
    /// No such record: never written, dropped by recovery as part of a torn batch, or damaged.
    Absent,
}

/// Depth of the queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Depth {
    pub events: u64,
    pub bytes: u64,
}

/// A queue directory, opened by one process. Not `Sync`: wrap it in a mutex to share.
#[derive(Debug)]
pub struct Queue {
    dir: PathBuf,
    /// `None`: a read-only handle on a queue that does not exist (yet).
    lock: Option<File>,
    read_only: bool,
    opts: Options,
    segments: Vec<Segment>,
    meta: Meta,
    next_seq: u64,
    /// Segments whose records up to `len` were checked: first_seq -> (len, last seq or None if empty).
    validated: HashMap<u64, (u64, Option<u64>)>,
    /// Segments' formats (from their headers) by first seq: 1 (older builds) or [`record::FORMAT`].
    formats: HashMap<u64, u32>,
    /// Damaged stretches found so far, by segment: (start, end) offsets; reading jumps over them.
    holes: HashMap<u64, Vec<(u64, u64)>>,
    recoveries: Vec<Recovery>,
    /// Every recovery reported so far, so that each is reported once.
    reported: std::collections::HashSet<(PathBuf, u64)>,
    /// The window the next tail scan starts with: [`SCAN_WINDOW`], or the larger one the last
    /// scans needed (appends of long lines larger than it), so that each check of a new append
    /// does not read and check it again at every size from 256 KiB up.
    scan_window: usize,
    /// This handle among the process's (see `APPENDED`).
    handle: u64,
}

const META_BIN: &str = "meta.bin";
const META_JSON: &str = "meta.json";

/// The tail segment as the appends of this process left it, by queue directory: (the appending
/// handle, the segment's first seq, its length, its last seq). A sensor's sources and its
/// uploader hold two handles on one queue; each append is written and fsynced whole by the
/// handle that validated the tail before it, so the other handle need not read and check those
/// bytes again (with long lines that was one more copy of every append in the uploader's memory,
/// and a second CRC of every byte). Only what another process appended after them is scanned. An
/// append records itself here only when its handle knows of no damage in that segment, and the
/// record goes with its handle (dropped), so damage is still found by each handle. The record
/// names the segment's file too (device, inode): a queue directory moved aside and made again
/// under the same path (or a tail file replaced) has a tail of the same name, whose bytes this
/// process did not write, and is scanned as any other (found in review).
type Appended = (u64, u64, u64, Option<u64>, (u64, u64));
static APPENDED: std::sync::Mutex<Option<HashMap<PathBuf, Appended>>> = std::sync::Mutex::new(None);
static HANDLES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn appended_get(dir: &Path) -> Option<Appended> {
    let map = APPENDED.lock().unwrap_or_else(|p| p.into_inner());
    map.as_ref().and_then(|m| m.get(dir).copied())
}

/// A file's identity: (device, inode).
fn file_id(meta: &fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

/// Records `entry` (this handle's last append: first seq, length, last seq, file) for `dir`, or
/// forgets what `handle` recorded.
#[allow(clippy::type_complexity)]
fn appended_set(dir: &Path, handle: u64, entry: Option<(u64, u64, Option<u64>, (u64, u64))>) {
    let mut map = APPENDED.lock().unwrap_or_else(|p| p.into_inner());
    let map = map.get_or_insert_with(HashMap::new);
    match entry {
        Some((first, len, last, file)) => {
            map.insert(dir.to_path_buf(), (handle, first, len, last, file));
        }
        None => {
            if map.get(dir).is_some_and(|e| e.0 == handle) {
                map.remove(dir);
            }
        }
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        appended_set(&self.dir, self.handle, None);
    }
}

impl Queue {
    /// Opens (creating if needed) the queue in `dir` as a writer: recovers from any torn write.
    pub fn open(dir: &Path, opts: Options) -> Result<Queue, QueueError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let lock_path = dir.join("queue.lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        let mut q = Queue::new(dir, Some(lock), false, opts);
        // Under the lock: another process may be writing the queue's first records.
        q.locked(|q| q.check_meta_json())?;
        Ok(q)
    }

    /// Opens the queue in `dir` for reading only (`sensor status`): no file is created, cut or
    /// rewritten. A torn end is read as a writer would keep it; a missing queue reads as empty.
    pub fn open_read_only(dir: &Path, opts: Options) -> Result<Queue, QueueError> {
        let lock_path = dir.join("queue.lock");
        let lock = match File::open(&lock_path) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(&lock_path)(e)),
        };
        let mut q = Queue::new(dir, lock, true, opts);
        if q.lock.is_some() {
            q.locked(|q| q.check_meta_json())?;
        }
        Ok(q)
    }

    fn new(dir: &Path, lock: Option<File>, read_only: bool, opts: Options) -> Queue {
        Queue {
            dir: dir.to_path_buf(),
            lock,
            read_only,
            opts,
            segments: Vec::new(),
            meta: Meta {
                format: META_FORMAT,
                ..Meta::default()
            },
            next_seq: 0,
            validated: HashMap::new(),
            formats: HashMap::new(),
            holes: HashMap::new(),
            recoveries: Vec::new(),
            reported: Default::default(),
            scan_window: SCAN_WINDOW,
            handle: HANDLES.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What recovery and reading skipped since the last call (each once per handle).
    pub fn take_recoveries(&mut self) -> Vec<Recovery> {
        std::mem::take(&mut self.recoveries)
    }

    fn report(&mut self, r: Recovery) {
        if self.reported.insert((r.segment.clone(), r.offset)) {
            self.recoveries.push(r);
        }
    }

    fn locked<T, E: From<QueueError>>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, E>,
    ) -> Result<T, E> {
        let lock_path = self.dir.join("queue.lock");
        let Some(lock) = &self.lock else {
            // A read-only handle on a queue that does not exist: empty.
            return f(self);
        };
        lock.lock().map_err(io_err(&lock_path))?;
        let result = self.refresh().map_err(E::from).and_then(|()| f(self));
        if let Some(lock) = &self.lock {
            let _ = lock.unlock();
        }
        result
    }

    fn meta_path(&self) -> PathBuf {
        self.dir.join(META_BIN)
    }

    fn segment_path(&self, first_seq: u64) -> PathBuf {
        self.dir.join(format!("{first_seq:020}.seg"))
    }

    /// `meta.json`: format 1 (older builds) is read when there is no `meta.bin`; a newer format
    /// than this build's means a newer uplink owns the queue.
    fn read_meta_json(&self) -> Result<Option<Meta>, QueueError> {
        let path = self.dir.join(META_JSON);
        match fs::read(&path) {
            // An empty marker next to a meta.bin: an older build was killed between creating
            // meta.json and writing it (it wrote meta.bin, the record, first). The marker says
            // what meta.bin's presence says already.
            Ok(bytes) if bytes.is_empty() && self.meta_path().exists() => Ok(Some(Meta {
                format: META_FORMAT,
                ..Meta::default()
            })),
            Ok(bytes) => {
                let meta: Meta =
                    serde_json::from_slice(&bytes).map_err(|e| QueueError::Format {
                        path: path.clone(),
                        reason: format!("not valid queue metadata: {e}"),
                    })?;
                if meta.format > META_FORMAT {
                    return Err(QueueError::Format {
                        path,
                        reason: format!("written by a newer uplink (format {}); this build reads format {META_FORMAT}: upgrade uplink", meta.format),
                    });
                }
                Ok(Some(meta))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    fn check_meta_json(&mut self) -> Result<(), QueueError> {
        self.read_meta_json().map(|_| ())
    }

    /// Reads the acknowledgement state: `meta.bin`, else an older build's `meta.json` (which a
    /// writer then moves into a new `meta.bin`).
    fn load_meta(&mut self) -> Result<Meta, QueueError> {
        let path = self.meta_path();
        match fs::read(&path) {
            Ok(bytes) => {
                let ack = record::meta::decode(&bytes).map_err(|e| QueueError::Format {
                    path: path.clone(),
                    reason: format!("{e}: restore it from a backup, or move the queue directory aside (its events are then not sent)"),
                })?;
                return Ok(Meta {
                    format: META_FORMAT,
                    acked_through: ack.acked_through,
                    acked_segment: ack.acked_segment,
                    acked_offset: ack.acked_offset,
                    generation: ack.generation,
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&path)(e)),
        }
        let meta = match self.read_meta_json()? {
            Some(m) if m.format >= 2 => {
                return Err(QueueError::Format {
                    path,
                    reason: "missing (meta.json says it was written): restore it from a backup, or move the queue directory aside".into(),
                })
            }
            Some(m) => Meta {
                format: META_FORMAT,
                ..m
            },
            None => Meta {
                format: META_FORMAT,
                ..Meta::default()
            },
        };
        Ok(meta)
    }

    /// Writes a pre-sized `meta.bin` (both slots), then marks `meta.json` as format 2.
    fn create_meta_bin(&self, meta: &Meta) -> Result<(), QueueError> {
        let mut bytes = vec![0u8; record::meta::FILE_LEN];
        for generation in [meta.generation, meta.generation + 1] {
            let (at, slot) = record::meta::encode(&record::meta::Ack {
                generation,
                ..meta.ack()
            });
            bytes[at..at + record::meta::SLOT_LEN].copy_from_slice(&slot);
        }
        write_atomic(&self.dir, &self.meta_path(), &bytes)?;
        let marker = Meta {
            format: META_FORMAT,
            ..Meta::default()
        };
        // Renamed into place like meta.bin: a reader (another process opening the queue, or
        // this one after a crash) sees no marker or a whole one, never an empty file.
        let path = self.dir.join(META_JSON);
        write_atomic(
            &self.dir,
            &path,
            &serde_json::to_vec(&marker).expect("meta serialises"),
        )
    }

    /// Records `meta` durably: one slot of `meta.bin` overwritten in place (no new block).
    fn store_meta(&mut self, mut meta: Meta) -> Result<(), QueueError> {
        meta.generation = self.meta.generation + 1;
        let path = self.meta_path();
        match OpenOptions::new().write(true).open(&path) {
            Ok(file) => {
                use std::os::unix::fs::FileExt;
                let (at, slot) = record::meta::encode(&meta.ack());
                file.write_all_at(&slot, at as u64)
                    .and_then(|()| file.sync_data())
                    .map_err(io_err(&path))?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => self.create_meta_bin(&meta)?,
            Err(e) => return Err(io_err(&path)(e)),
        }
        self.meta = meta;
        Ok(())
    }

    /// Re-reads the state other processes may have changed. Called with the lock held.
    fn refresh(&mut self) -> Result<(), QueueError> {
        self.meta = self.load_meta()?;
        let mut segments = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io_err(&self.dir))? {
            let entry = entry.map_err(io_err(&self.dir))?;
            let name = entry.file_name();
            let Some(first) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".seg"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            let len = entry.metadata().map_err(io_err(&entry.path()))?.len();
            segments.push(Segment {
                first_seq: first,
                path: entry.path(),
                len,
            });
        }
        segments.sort_by_key(|s| s.first_seq);
        self.validated
            .retain(|k, _| segments.iter().any(|s| s.first_seq == *k));
        self.formats
            .retain(|k, _| segments.iter().any(|s| s.first_seq == *k));
        self.holes
            .retain(|k, _| segments.iter().any(|s| s.first_seq == *k));
        self.segments = segments;
        // The tail is where appends go and where a torn write can be: validate what is new in it.
        if let Some(tail) = self.segments.last().cloned() {
            let mut validated = self.validated.get(&tail.first_seq).copied();
            // What this process appended to the tail since (see `APPENDED`).
            if let Some((_, first, len, last, file)) =
                appended_get(&self.dir).filter(|e| e.0 != self.handle && !self.read_only)
            {
                if first == tail.first_seq
                    && len <= tail.len
                    && validated.is_none_or(|(checked, _)| checked < len)
                    && !self.holes.contains_key(&first)
                    && fs::metadata(&tail.path).is_ok_and(|m| file_id(&m) == file)
                {
                    validated = Some((len, last));
                    self.validated.insert(first, (len, last));
                }
            }
            if validated.is_none_or(|(checked, _)| checked != tail.len) {
                let (end, last_seq, skip_to) = self.scan_tail(&tail, validated)?;
                self.validated.insert(tail.first_seq, (end, last_seq));
                if let Some(s) = self.segments.last_mut() {
                    s.len = end;
                }
                if !self.read_only && !tail.path.exists() {
                    // An empty segment without a header that could not be repaired (full disk).
                    self.segments.pop();
                    self.validated.remove(&tail.first_seq);
                    self.formats.remove(&tail.first_seq);
                }
                if let Some(first) = skip_to {
                    self.new_segment(first)?;
                }
            }
        }
        let acked_next = self.meta.acked_through.map_or(0, |a| a + 1);
        let tail_next =
            self.segments
                .last()
                .map_or(0, |t| match self.validated.get(&t.first_seq) {
                    Some((_, Some(last))) => last + 1,
                    _ => t.first_seq,
                });
        self.next_seq = acked_next.max(tail_next);
        Ok(())
    }

    /// Scans the tail segment from `resume` (or its header) to the end. Damage followed by valid
    /// records is remembered as a hole (and reported); a torn or damaged end is cut back to the
    /// end of the last complete batch — by a writer only, which also returns the seq the next
    /// segment must start at so that no seq the cut bytes held is handed out again. Returns the
    /// valid end, the last sequence number and that seq.
    fn scan_tail(
        &mut self,
        seg: &Segment,
        resume: Option<(u64, Option<u64>)>,
    ) -> Result<(u64, Option<u64>, Option<u64>), QueueError> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(!self.read_only)
            .open(&seg.path)
            .map_err(io_err(&seg.path))?;
        let mut header = [0u8; HEADER_LEN];
        let n = read_up_to(&mut file, &mut header).map_err(io_err(&seg.path))?;
        let format = match record::decode_header(&header[..n]) {
            Ok(h) if h.first_seq == seg.first_seq => h.format,
            Ok(_) => {
                return Err(QueueError::Format {
                    path: seg.path.clone(),
                    reason: "header sequence does not match the file name".into(),
                })
            }
            // A segment torn before its header was complete holds no records: start over.
            // (An empty file is a segment created just before a crash: nothing to report.)
            Err(record::HeaderError::Truncated) => {
                if self.read_only {
                    return Ok((n as u64, None, None));
                }
                if n > 0 {
                    self.report(Recovery {
                        segment: seg.path.clone(),
                        offset: 0,
                        dropped_bytes: n as u64,
                        reason: "segment header incomplete".into(),
                        lost: None,
                        damaged: false,
                    });
                }
                let rewritten = file
                    .set_len(0)
                    .and_then(|()| file.seek(SeekFrom::Start(0)).map(drop))
                    .and_then(|()| file.write_all(&record::encode_header(seg.first_seq)))
                    .and_then(|()| file.sync_data())
                    .map_err(io_err(&seg.path));
                if let Err(e) = rewritten {
                    if !e.is_disk_full() {
                        return Err(e);
                    }
                    // It holds no record: without room to repair it, it goes (its name's seq is
                    // not above any record's, as it was the tail).
                    let _ = file.set_len(0);
                    fs::remove_file(&seg.path).map_err(io_err(&seg.path))?;
                    return Ok((0, None, None));
                }
                self.formats.insert(seg.first_seq, record::FORMAT);
                return Ok((HEADER_LEN as u64, None, None));
            }
            Err(e) => {
                return Err(QueueError::Format {
                    path: seg.path.clone(),
                    reason: e.to_string(),
                })
            }
        };
        self.formats.insert(seg.first_seq, format);
        // Resuming is only ever at the end of a batch: `validated` records ends of scans and
        // appends, both of which end batches.
        let (mut offset, mut last) = resume.unwrap_or((HEADER_LEN as u64, None));
        // In windows, so that opening a queue with a full 32 MiB tail does not hold the whole
        // segment in memory (the sensor's peak RSS): a window that scans clean up to the end
        // of its last complete batch moves the start there; only the last window — the rest of
        // the file, or the rest after a window that found damage or no complete batch — is
        // judged as before, so holes and a torn end are found exactly as in one read.
        let file_len = file.metadata().map_err(io_err(&seg.path))?.len();
        let mut buf = Vec::new();
        let mut window_size = self.scan_window;
        let scanned = loop {
            let rest = file_len.saturating_sub(offset);
            let window = if rest > window_size as u64 {
                window_size
            } else {
                usize::MAX
            };
            file.seek(SeekFrom::Start(offset))
                .map_err(io_err(&seg.path))?;
            buf.clear();
            if window == usize::MAX {
                file.read_to_end(&mut buf).map_err(io_err(&seg.path))?;
            } else {
                buf.resize(window, 0);
                let n = read_up_to(&mut file, &mut buf).map_err(io_err(&seg.path))?;
                buf.truncate(n);
            }
            let expected = last.map_or(seg.first_seq, |l| l + 1);
            let scanned = record::scan(&buf, format, expected, last);
            let whole = window == usize::MAX || buf.len() < window;
            if whole || !scanned.holes.is_empty() || scanned.valid == 0 {
                if whole {
                    // Caught up with a rest the first window holds: appends are small (again).
                    if buf.len() <= SCAN_WINDOW {
                        self.scan_window = SCAN_WINDOW;
                    }
                    break scanned;
                }
                if scanned.holes.is_empty() && window_size < SCAN_WINDOW_MAX {
                    // No whole batch in the window (a batch larger than it, or damage): a
                    // window twice as large, from the same place.
                    window_size *= 2;
                    self.scan_window = window_size;
                    continue;
                }
                // Damage, or a batch longer than the largest window: the rest in one read, as
                // before.
                file.seek(SeekFrom::Start(offset))
                    .map_err(io_err(&seg.path))?;
                buf = Vec::new();
                file.read_to_end(&mut buf).map_err(io_err(&seg.path))?;
                break record::scan(&buf, format, expected, last);
            }
            offset += scanned.valid as u64;
            last = scanned.last;
        };
        for h in &scanned.holes {
            let (start, end) = (offset + h.start as u64, offset + h.end as u64);
            let first = h.after.map_or(seg.first_seq, |a| a + 1);
            let lost = h.next.filter(|n| *n > first).map(|n| (first, n - 1));
            self.add_hole(seg.first_seq, start, end);
            self.report(Recovery {
                segment: seg.path.clone(),
                offset: start,
                dropped_bytes: end - start,
                reason: h.reason.clone(),
                lost,
                damaged: true,
            });
        }
        let end = offset + scanned.valid as u64;
        let mut skip_to = None;
        if let Some(reason) = scanned.problem {
            let dropped = (buf.len() - scanned.valid) as u64;
            if self.read_only {
                return Ok((end, scanned.last, None));
            }
            // Every record takes at least RECORD_OVERHEAD bytes: the cut bytes held at most this
            // many seqs. They are skipped, never handed out again.
            let first = scanned.last.map_or(seg.first_seq, |l| l + 1);
            let next = first + dropped.div_ceil(RECORD_OVERHEAD as u64);
            let torn = reason.starts_with("incomplete");
            file.set_len(end).map_err(io_err(&seg.path))?;
            file.sync_data().map_err(io_err(&seg.path))?;
            self.report(Recovery {
                segment: seg.path.clone(),
                offset: end,
                dropped_bytes: dropped,
                reason,
                lost: (next > first).then(|| (first, next - 1)),
                damaged: !torn,
            });
            skip_to = (next > first).then_some(next);
        }
        Ok((end, scanned.last, skip_to))
    }

    fn add_hole(&mut self, segment: u64, start: u64, end: u64) {
        let holes = self.holes.entry(segment).or_default();
        if !holes.contains(&(start, end)) {
            holes.push((start, end));
        }
    }

    /// Where the hole starting at `offset` of `segment` ends, if one is known there.
    fn hole_at(&self, segment: u64, offset: u64) -> Option<u64> {
        self.holes
            .get(&segment)?
            .iter()
            .find(|(s, e)| *s == offset && *e > *s)
            .map(|(_, e)| *e)
    }

    /// The bytes at `offset` of `seg` do not decode: finds the next valid record (seq above
    /// `seen`), remembers the hole and reports what was lost. Returns where reading goes on.
    fn find_hole(
        &mut self,
        seg: &Segment,
        format: u32,
        offset: u64,
        seen: Option<u64>,
        next_segment: Option<u64>,
        reason: &str,
    ) -> Result<u64, QueueError> {
        let mut file = File::open(&seg.path).map_err(io_err(&seg.path))?;
        file.seek(SeekFrom::Start(offset))
            .map_err(io_err(&seg.path))?;
        let mut buf = vec![0u8; seg.len.saturating_sub(offset) as usize];
        let n = read_up_to(&mut file, &mut buf).map_err(io_err(&seg.path))?;
        buf.truncate(n);
        let (end, next) = match record::resync(&buf, format, seen) {
            Some((skip, next)) => (offset + skip as u64, Some(next)),
            None => (seg.len, next_segment.or(Some(self.next_seq))),
        };
        let acked_next = self.meta.acked_through.map_or(0, |a| a + 1);
        let first = seen
            .map_or(seg.first_seq, |s| s + 1)
            .max(seg.first_seq)
            .max(acked_next);
        let lost = next.filter(|n| *n > first).map(|n| (first, n - 1));
        self.add_hole(seg.first_seq, offset, end);
        self.report(Recovery {
            segment: seg.path.clone(),
            offset,
            dropped_bytes: end - offset,
            reason: reason.into(),
            lost,
            damaged: lost.is_some(),
        });
        Ok(end)
    }

    /// The format of a segment, from its header (cached). `Ok(Err(why))`: the header is damaged.
    fn segment_format(&mut self, seg: &Segment) -> Result<Result<u32, String>, QueueError> {
        if let Some(f) = self.formats.get(&seg.first_seq) {
            return Ok(Ok(*f));
        }
        let mut file = File::open(&seg.path).map_err(io_err(&seg.path))?;
        let mut header = [0u8; HEADER_LEN];
        let n = read_up_to(&mut file, &mut header).map_err(io_err(&seg.path))?;
        match record::decode_header(&header[..n]) {
            Ok(h) => {
                self.formats.insert(seg.first_seq, h.format);
                Ok(Ok(h.format))
            }
            Err(e @ record::HeaderError::NewerFormat(_)) => Err(QueueError::Format {
                path: seg.path.clone(),
                reason: e.to_string(),
            }),
            Err(e) => Ok(Err(e.to_string())),
        }
    }

    fn pending_bytes(&self) -> u64 {
        let total: u64 = self
            .segments
            .iter()
            .map(|s| s.len.saturating_sub(HEADER_LEN as u64))
            .sum();
        let acked_in_first = match (self.segments.first(), self.meta.acked_segment) {
            (Some(first), Some(seg)) if first.first_seq == seg => {
                self.meta.acked_offset.saturating_sub(HEADER_LEN as u64)
            }
            _ => 0,
        };
        total.saturating_sub(acked_in_first)
    }

    /// Appends `count` events, durably. `encode(i, seq, out)` writes the payload of the `i`th event,
    /// given the sequence number it was assigned. Returns the sequence numbers assigned.
    /// All or nothing: on error no event of this call is in the queue, and after a crash either
    /// all of them are or none (the records form one batch).
    pub fn append(
        &mut self,
        count: usize,
        encode: impl FnMut(usize, u64, &mut Vec<u8>),
    ) -> Result<std::ops::Range<u64>, QueueError> {
        self.append_committing(count, encode, |_| Ok::<(), QueueError>(()))
    }

    /// [`Queue::append`], calling `commit` with the lock held after the events are encoded and
    /// found to fit, and before any of their bytes is written. `commit` learns the sequence
    /// numbers the events get and the digest of the last one's payload ([`Intent`]); a source
    /// writes its checkpoint there, naming both where it was and where it will be once this batch
    /// is in. If `commit` fails nothing is written. After a crash, [`Queue::lookup`] of
    /// `intent.last_seq` tells which of the two is true. With `count == 0` nothing happens and
    /// `commit` is not called.
    pub fn append_committing<E: From<QueueError>>(
        &mut self,
        count: usize,
        mut encode: impl FnMut(usize, u64, &mut Vec<u8>),
        commit: impl FnOnce(&Intent) -> Result<(), E>,
    ) -> Result<std::ops::Range<u64>, E> {
        self.locked(|q| {
            if q.read_only {
                return Err(QueueError::Format {
                    path: q.dir.clone(),
                    reason: "opened read-only: cannot append".into(),
                }
                .into());
            }
            let first = q.next_seq;
            if count == 0 {
                return Ok(first..first);
            }
            let mut buf = Vec::with_capacity(count * 320);
            let mut payload = Vec::with_capacity(512);
            for i in 0..count {
                payload.clear();
                encode(i, first + i as u64, &mut payload);
                if payload.len() > record::MAX_PAYLOAD {
                    return Err(QueueError::EventTooLarge(payload.len()).into());
                }
                record::encode_record(&mut buf, first + i as u64, &payload, i + 1 < count);
            }
            let last = first + count as u64 - 1;
            let intent = Intent {
                first_seq: first,
                last_seq: last,
                last_digest: record::digest(&payload),
            };
            let pending = q.pending_bytes();
            if pending + buf.len() as u64 > q.opts.max_bytes {
                return Err(QueueError::Full {
                    pending,
                    max: q.opts.max_bytes,
                    needed: buf.len() as u64,
                }
                .into());
            }
            if !q.meta_path().exists() {
                // Pre-size the acknowledgement record while there is room: acknowledging these
                // events must work even once the disk is full.
                let meta = q.meta;
                q.create_meta_bin(&meta)?;
            }
            let tail = q.tail_for_append(first)?;
            commit(&intent)?;
            let mut file = OpenOptions::new()
                .append(true)
                .open(&tail.path)
                .map_err(io_err(&tail.path))?;
            let written = file
                .write_all(&buf)
                .and_then(|()| file.sync_data())
                .map_err(io_err(&tail.path));
            if let Err(e) = written {
                // Take back whatever part of the batch reached the file, so that this process
                // too sees none of it (the next locker would truncate it anyway). Best effort:
                // the error that matters is the write's.
                let _ = file.set_len(tail.len).and_then(|()| file.sync_data());
                return Err(e.into());
            }
            let len = tail.len + buf.len() as u64;
            q.validated.insert(tail.first_seq, (len, Some(last)));
            // Not recorded when the file cannot be identified: the others then scan it.
            let file_id = file.metadata().ok().map(|m| file_id(&m));
            appended_set(
                &q.dir,
                q.handle,
                file_id
                    .filter(|_| !q.holes.contains_key(&tail.first_seq))
                    .map(|id| (tail.first_seq, len, Some(last), id)),
            );
            if let Some(s) = q.segments.last_mut() {
                s.len = len;
            }
            q.next_seq = last + 1;
            Ok(first..last + 1)
        })
    }

    /// The segment the next batch goes into: the tail if it has room and is of this build's
    /// format; else a new one. Flagged records never go into a format-1 segment (whose readers
    /// would take the flag for damage).
    fn tail_for_append(&mut self, first: u64) -> Result<Segment, QueueError> {
        let Some(tail) = self.segments.last().cloned() else {
            return self.new_segment(first);
        };
        let format = self
            .segment_format(&tail)?
            .map_err(|reason| QueueError::Format {
                path: tail.path.clone(),
                reason,
            })?;
        if format == record::FORMAT && tail.len < self.opts.segment_bytes {
            return Ok(tail);
        }
        if format != record::FORMAT && tail.len <= HEADER_LEN as u64 && tail.first_seq == first {
            // An empty older-format tail would have the new segment's name: it holds no record.
            fs::remove_file(&tail.path).map_err(io_err(&tail.path))?;
            self.segments.pop();
            self.validated.remove(&tail.first_seq);
            self.formats.remove(&tail.first_seq);
        }
        self.new_segment(first)
    }

    fn new_segment(&mut self, first_seq: u64) -> Result<Segment, QueueError> {
        let path = self.segment_path(first_seq);
        let mut file = OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let written = file
            .write_all(&record::encode_header(first_seq))
            .and_then(|()| file.sync_all())
            .map_err(io_err(&path));
        if let Err(e) = written {
            // No segment without a header (on a full disk the next writer could not repair it).
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        sync_dir(&self.dir)?;
        let seg = Segment {
            first_seq,
            path,
            len: HEADER_LEN as u64,
        };
        self.validated.insert(first_seq, (seg.len, None));
        self.formats.insert(first_seq, record::FORMAT);
        self.segments.push(seg.clone());
        Ok(seg)
    }

    /// Reads up to `max_events` events (and about `max_bytes`) after the last acknowledged one.
    /// Returns `None` when nothing is waiting. Reading does not remove: see [`Queue::ack`].
    /// Damaged bytes are skipped (resynchronising at the next valid record) and reported through
    /// [`Queue::take_recoveries`].
    pub fn read_batch(
        &mut self,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<Option<Batch>, QueueError> {
        self.read_batch_after(None, max_events, max_bytes)
    }

    /// Like [`Queue::read_batch`], but the events after `after` — a batch this handle read and
    /// has not acknowledged yet (one still in flight) — when it is given: an uploader with
    /// several batches in flight reads each after the previous one, and acknowledges them in
    /// order (an acknowledgement covers everything before). Nothing is skipped as unreadable
    /// here (that would acknowledge the batches in flight): only a read from the acknowledged
    /// position does that. `after` at or below the acknowledged position is the same as `None`.
    pub fn read_batch_after(
        &mut self,
        after: Option<&Batch>,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<Option<Batch>, QueueError> {
        let mut body: Vec<u8> = Vec::new();
        let batch = self.read_batch_each(after, max_events, max_bytes, &mut |payload| {
            let need = body.len() + payload.len() + 1;
            let want = body_capacity(body.capacity(), need, max_bytes);
            if want > body.capacity() {
                body.reserve_exact(want - body.len());
            }
            body.extend_from_slice(payload);
            body.push(b'\n');
            true
        })?;
        Ok(batch.map(|b| Batch { body, ..b }))
    }

    /// Whether [`Queue::read_batch_after`] with the same arguments could return a full batch
    /// ([`Batch::is_full`]): `false` when, after `after` (or the acknowledged position), fewer
    /// than `max_events` events wait and their records, framing included, are fewer than
    /// `max_bytes` bytes — then the batch would end at the end of the queue. A cheap look at the
    /// segments' lengths and the next seq (no record is read), so an uploader with batches in
    /// flight, which sends only a full batch beside them, does not read and compress one it
    /// would drop. `true` may still read a batch that is not full (a hole, a torn end).
    pub fn full_batch_possible(
        &mut self,
        after: Option<&Batch>,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<bool, QueueError> {
        self.locked(|q| {
            let cursor = after
                .filter(|b| q.meta.acked_through.is_none_or(|a| b.last_seq > a))
                .map(|b| (b.last_seq, b.end));
            let (through, segment, offset) = match cursor {
                Some((last, end)) => (Some(last), Some(end.segment), end.offset),
                None => (
                    q.meta.acked_through,
                    q.meta.acked_segment,
                    q.meta.acked_offset,
                ),
            };
            let events = q.next_seq.saturating_sub(through.map_or(0, |t| t + 1));
            // What is after the position: the rest of its segment and every later one (a
            // segment all acknowledged may be gone: then only later ones).
            let bytes: u64 = q
                .segments
                .iter()
                .filter_map(|seg| match segment {
                    Some(s) if seg.first_seq < s => None,
                    Some(s) if seg.first_seq == s => {
                        Some(seg.len.saturating_sub(offset.max(HEADER_LEN as u64)))
                    }
                    _ => Some(seg.len.saturating_sub(HEADER_LEN as u64)),
                })
                .sum();
            Ok(events >= max_events as u64 || bytes >= max_bytes as u64)
        })
    }

    /// [`Queue::read_batch_after`], handing each event's payload (without its newline) to
    /// `each`, in order, instead of collecting them: the batch returned has an empty `body`
    /// (its `text_len` is what the body would have been). So an uploader can compress the batch
    /// as it is read, and never hold its whole text (up to `max_bytes`) at once.
    ///
    /// `each` answers whether the batch has room for more: `false` ends it after that event,
    /// full (the uploader's bound on a batch's compressed bytes, which only it knows).
    /// [`Queue::full_batch_possible`] does not foresee such an end.
    pub fn read_batch_each(
        &mut self,
        after: Option<&Batch>,
        max_events: usize,
        max_bytes: usize,
        each: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<Option<Batch>, QueueError> {
        self.locked(|q| {
            let cursor = after
                .filter(|b| q.meta.acked_through.is_none_or(|a| b.last_seq > a))
                .map(|b| (b.last_seq, b.end));
            // Records at or below this seq are not read again; reading starts at this position.
            let (acked, start_segment, start_offset) = match cursor {
                Some((last, end)) => (Some(last), Some(end.segment), end.offset),
                None => (
                    q.meta.acked_through,
                    q.meta.acked_segment,
                    q.meta.acked_offset,
                ),
            };
            let start_index = match start_segment {
                Some(seg) => q
                    .segments
                    .iter()
                    .position(|s| s.first_seq == seg)
                    .unwrap_or(0),
                None => 0,
            };
            let mut batch: Option<Batch> = None;
            let tail_first = q.segments.last().map(|s| s.first_seq);
            let segments: Vec<Segment> = q.segments[start_index.min(q.segments.len())..].to_vec();
            // Full: `max_events` events, or `max_bytes` of text, or the next event would not fit
            // in what is left of `max_bytes` (a batch holds at least one event).
            let mut no_room = false;
            let is_full = |b: &Option<Batch>, no_room: bool| {
                no_room
                    || b.as_ref()
                        .is_some_and(|b| b.count >= max_events || b.text_len >= max_bytes)
            };
            let mut read_through = true;
            // Records are read in chunks of this size (one buffer for the whole batch), not the
            // batch's size at once: the sensor's memory stays small whatever the batch limits.
            let mut chunk = READ_CHUNK;
            let mut buf = Vec::new();
            'segments: for (i, seg) in segments.iter().enumerate() {
                let next_segment = segments.get(i + 1).map(|s| s.first_seq);
                let in_acked = Some(seg.first_seq) == start_segment;
                let mut off = if in_acked {
                    start_offset.max(HEADER_LEN as u64)
                } else {
                    HEADER_LEN as u64
                };
                // The seq of the last record passed: a record must go above it.
                let mut seen = if in_acked && off > HEADER_LEN as u64 {
                    acked
                } else {
                    seg.first_seq.checked_sub(1)
                };
                if off >= seg.len {
                    continue;
                }
                // A damaged header: the records may still be intact (each carries its own CRC);
                // read them as this build's format, and any that do not decode are a hole.
                let format = q.segment_format(seg)?.unwrap_or(record::FORMAT);
                let mut file = File::open(&seg.path).map_err(io_err(&seg.path))?;
                if Some(seg.first_seq) == tail_first {
                    // Make sure what we are about to send is durable, even if its appender died
                    // between write and fsync.
                    file.sync_data().map_err(io_err(&seg.path))?;
                }
                while off < seg.len {
                    if is_full(&batch, no_room) {
                        read_through = false;
                        break 'segments;
                    }
                    if let Some(end) = q.hole_at(seg.first_seq, off) {
                        off = end;
                        continue;
                    }
                    file.seek(SeekFrom::Start(off)).map_err(io_err(&seg.path))?;
                    let want = (seg.len - off).min(chunk as u64);
                    buf.clear();
                    buf.resize(want as usize, 0);
                    let n = read_up_to(&mut file, &mut buf).map_err(io_err(&seg.path))?;
                    buf.truncate(n);
                    let read_all = off + n as u64 >= seg.len;
                    let mut pos = 0usize;
                    let mut damage = None;
                    while !is_full(&batch, no_room) && pos < buf.len() {
                        match record::decode_record(&buf[pos..], format) {
                            Decoded::Complete {
                                seq, payload, len, ..
                            } if seen.is_none_or(|s| seq > s) => {
                                if acked.is_none_or(|a| seq > a)
                                    && batch
                                        .as_ref()
                                        .is_some_and(|b| b.text_len + payload.len() + 1 > max_bytes)
                                {
                                    // It goes first in the next batch.
                                    no_room = true;
                                    break;
                                }
                                pos += len;
                                seen = Some(seq);
                                if acked.is_some_and(|a| seq <= a) {
                                    continue;
                                }
                                let end = Position {
                                    segment: seg.first_seq,
                                    offset: off + pos as u64,
                                };
                                let b = batch.get_or_insert_with(|| Batch {
                                    first_seq: seq,
                                    last_seq: seq,
                                    count: 0,
                                    body: Vec::new(),
                                    text_len: 0,
                                    end,
                                    full: false,
                                });
                                if !each(payload) {
                                    no_room = true;
                                }
                                b.text_len += payload.len() + 1;
                                b.last_seq = seq;
                                b.count += 1;
                                b.end = end;
                            }
                            // The buffer ended inside a record: read on from there (with
                            // room for the largest record when not even one fit).
                            Decoded::Incomplete if !read_all => {
                                if pos == 0 {
                                    chunk = record::MAX_PAYLOAD + RECORD_OVERHEAD;
                                }
                                break;
                            }
                            Decoded::Complete { .. } => {
                                damage = Some("a record's seq goes backwards");
                                break;
                            }
                            Decoded::Incomplete => {
                                damage = Some("incomplete record");
                                break;
                            }
                            Decoded::Corrupt(why) => {
                                damage = Some(why);
                                break;
                            }
                        }
                    }
                    off += pos as u64;
                    if let Some(why) = damage {
                        off = match q.hole_at(seg.first_seq, off) {
                            Some(end) => end,
                            None => q.find_hole(seg, format, off, seen, next_segment, why)?,
                        };
                    }
                }
            }
            if batch.is_none() && read_through && !q.read_only && cursor.is_none() {
                q.skip_unreadable()?;
            }
            let full = is_full(&batch, no_room);
            Ok(batch.map(|b| Batch { full, ..b }))
        })
    }

    /// Nothing readable is left, yet seqs below `next_seq` are not acknowledged: they were lost
    /// (reported when found) or skipped. Acknowledge through `next_seq - 1` so that the queue
    /// counts as empty and the segments holding only damage are freed.
    fn skip_unreadable(&mut self) -> Result<(), QueueError> {
        let Some(through) = self.next_seq.checked_sub(1) else {
            return Ok(());
        };
        if self.meta.acked_through.is_some_and(|a| a >= through) {
            return Ok(());
        }
        let Some(tail) = self.segments.last().cloned() else {
            return Ok(());
        };
        self.commit_ack(
            through,
            Position {
                segment: tail.first_seq,
                offset: tail.len,
            },
        )
    }

    /// Removes `batch` (and everything before it) from the queue, durably.
    pub fn ack(&mut self, batch: &Batch) -> Result<(), QueueError> {
        self.locked(|q| {
            if q.meta.acked_through.is_some_and(|a| a >= batch.last_seq) {
                return Ok(());
            }
            q.commit_ack(batch.last_seq, batch.end)
        })
    }

    /// Records "acknowledged through `last`, reading resumes at `end`" (in place, no new disk
    /// space) and deletes every segment that holds only acknowledged records — the active one
    /// too, so a drained queue gives its space back at once.
    fn commit_ack(&mut self, last: u64, end: Position) -> Result<(), QueueError> {
        self.store_meta(Meta {
            format: META_FORMAT,
            acked_through: Some(last),
            acked_segment: Some(end.segment),
            acked_offset: end.offset,
            generation: 0,
        })?;
        let mut keep = Vec::new();
        for seg in std::mem::take(&mut self.segments) {
            let before = seg.first_seq < end.segment;
            let done = seg.first_seq == end.segment && end.offset >= seg.len;
            if before || done {
                fs::remove_file(&seg.path).map_err(io_err(&seg.path))?;
                self.validated.remove(&seg.first_seq);
                self.formats.remove(&seg.first_seq);
                self.holes.remove(&seg.first_seq);
            } else {
                keep.push(seg);
            }
        }
        self.segments = keep;
        Ok(())
    }

    /// Events and bytes waiting to be uploaded. (Seqs lost to damage count until reading has
    /// passed them.)
    pub fn depth(&mut self) -> Result<Depth, QueueError> {
        self.locked(|q| {
            let first = q
                .meta
                .acked_through
                .map_or(0, |a| a + 1)
                .max(q.segments.first().map_or(q.next_seq, |s| s.first_seq));
            let bytes = q.pending_bytes();
            Ok(Depth {
                events: if bytes == 0 {
                    0
                } else {
                    q.next_seq.saturating_sub(first)
                },
                bytes,
            })
        })
    }

    /// Calls `then` with what the queue holds at `seq`, with the lock held (so no other process
    /// appends or acknowledges meanwhile; a source settles its checkpoint there).
    pub fn lookup<T, E: From<QueueError>>(
        &mut self,
        seq: u64,
        then: impl FnOnce(Stored) -> Result<T, E>,
    ) -> Result<T, E> {
        self.locked(|q| {
            let stored = match q.find_digest(seq)? {
                Some(digest) => Stored::Present { digest },
                None if q.meta.acked_through.is_some_and(|a| seq <= a) => Stored::Acked,
                None => Stored::Absent,
            };
            then(stored)
        })
    }

    /// The digest of the payload of record `seq`, if the queue still holds it intact. Reads the
    /// one segment that can hold it, record header by record header, skipping payloads; only
    /// when the headers stop making sense (damage) does it read the segment whole and
    /// resynchronise.
    fn find_digest(&mut self, seq: u64) -> Result<Option<u64>, QueueError> {
        if seq >= self.next_seq {
            return Ok(None);
        }
        let Some(seg) = self
            .segments
            .iter()
            .rev()
            .find(|s| s.first_seq <= seq)
            .cloned()
        else {
            return Ok(None);
        };
        let format = self.segment_format(&seg)?.unwrap_or(record::FORMAT);
        let file = File::open(&seg.path).map_err(io_err(&seg.path))?;
        let mut r = io::BufReader::with_capacity(64 * 1024, file);
        r.seek(SeekFrom::Start(HEADER_LEN as u64))
            .map_err(io_err(&seg.path))?;
        let mut pos = HEADER_LEN as u64;
        let mut head = [0u8; RECORD_OVERHEAD];
        let mut expected = seg.first_seq;
        while pos + RECORD_OVERHEAD as u64 <= seg.len {
            r.read_exact(&mut head).map_err(io_err(&seg.path))?;
            let word = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
            let len = if format >= 2 {
                word & !record::MORE
            } else {
                word
            } as usize;
            let mut seq_bytes = [0u8; 8];
            seq_bytes.copy_from_slice(&head[8..16]);
            let at = u64::from_le_bytes(seq_bytes);
            if len > record::MAX_PAYLOAD
                || at != expected
                || pos + (RECORD_OVERHEAD + len) as u64 > seg.len
            {
                return self.find_digest_resyncing(&seg, format, seq);
            }
            if at == seq {
                let mut rec = Vec::with_capacity(RECORD_OVERHEAD + len);
                rec.extend_from_slice(&head);
                rec.resize(RECORD_OVERHEAD + len, 0);
                r.read_exact(&mut rec[RECORD_OVERHEAD..])
                    .map_err(io_err(&seg.path))?;
                return match record::decode_record(&rec, format) {
                    Decoded::Complete { payload, .. } => Ok(Some(record::digest(payload))),
                    _ => self.find_digest_resyncing(&seg, format, seq),
                };
            }
            r.seek_relative(len as i64).map_err(io_err(&seg.path))?;
            pos += (RECORD_OVERHEAD + len) as u64;
            expected = at + 1;
        }
        Ok(None)
    }

    /// [`Queue::find_digest`] through damage: the whole segment, every record checked.
    fn find_digest_resyncing(
        &mut self,
        seg: &Segment,
        format: u32,
        seq: u64,
    ) -> Result<Option<u64>, QueueError> {
        let mut file = File::open(&seg.path).map_err(io_err(&seg.path))?;
        file.seek(SeekFrom::Start(HEADER_LEN as u64))
            .map_err(io_err(&seg.path))?;
        let mut buf = vec![0u8; seg.len.saturating_sub(HEADER_LEN as u64) as usize];
        let n = read_up_to(&mut file, &mut buf).map_err(io_err(&seg.path))?;
        buf.truncate(n);
        let mut pos = 0;
        let mut seen = seg.first_seq.checked_sub(1);
        while pos < buf.len() {
            match record::decode_record(&buf[pos..], format) {
                Decoded::Complete {
                    seq: at,
                    payload,
                    len,
                    ..
                } if seen.is_none_or(|s| at > s) => {
                    if at == seq {
                        return Ok(Some(record::digest(payload)));
                    }
                    if at > seq {
                        return Ok(None);
                    }
                    seen = Some(at);
                    pos += len;
                }
                _ => match record::resync(&buf[pos..], format, seen) {
                    Some((skip, _)) => pos += skip,
                    None => return Ok(None),
                },
            }
        }
        Ok(None)
    }

    /// The sequence number the next appended event will get.
    pub fn next_seq(&mut self) -> Result<u64, QueueError> {
        self.locked(|q| Ok(q.next_seq))
    }
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn sync_dir(dir: &Path) -> Result<(), QueueError> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))?;
    Ok(())
}

/// Replaces `path` atomically: write a temporary file, fsync, rename, fsync the directory.
fn write_atomic(dir: &Path, path: &Path, contents: &[u8]) -> Result<(), QueueError> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
    let written = f
        .write_all(contents)
        .and_then(|()| f.sync_all())
        .map_err(io_err(&tmp));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::rename(&tmp, path).map_err(io_err(path))?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_grows_by_doubling_but_never_past_its_limit() {
        const K: usize = 1024;
        // (capacity, need, max_bytes, expected)
        let table = [
            (0, 300, 4096 * K, BODY_CAPACITY),
            (0, 300, 1000, 1000),
            (0, 5000, 1000, 5000), // one event larger than the limit
            (BODY_CAPACITY, BODY_CAPACITY, 4096 * K, BODY_CAPACITY),
            (
                BODY_CAPACITY,
                BODY_CAPACITY + 1,
                4096 * K,
                2 * BODY_CAPACITY,
            ),
            (2048 * K, 2048 * K + 10, 4096 * K, 4096 * K),
            // Near the limit: to the limit, not twice it.
            (2048 * K, 2048 * K + 10, 3000 * K, 3000 * K),
            (4096 * K, 4096 * K + 10, 4096 * K, 4096 * K + 10),
        ];
        for (capacity, need, max, expected) in table {
            assert_eq!(
                body_capacity(capacity, need, max),
                expected,
                "capacity {capacity}, need {need}, max {max}"
            );
        }
    }
}
