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
//! framing (format 2, [`record`]). Recovery — by the next process to take the lock — truncates the
//! last segment back to the end of its last *complete* batch, keeping every complete batch and
//! reporting what it dropped ([`Queue::take_recoveries`]); a batch cut short anywhere (SIGKILL in
//! the middle of a large `write(2)`, power loss) is gone whole. Readers only see validated,
//! complete batches. The numbers of a dropped batch are handed out again (they were never
//! visible); numbers of acknowledged events never are: the acknowledged high-water mark is kept
//! in `meta.json`.
//!
//! **Exactly-once for sources.** A source that checkpoints its own position (a file offset, a
//! journal cursor) must not re-send a batch after a crash between the queue's fsync and its
//! checkpoint. So it writes the checkpoint *before* the records, inside the append, with the lock
//! held: [`Queue::append_committing`] calls back with the [`Intent`] (the seqs the batch gets and
//! a digest of its last payload) after the batch is known to fit and before any byte is written.
//! The checkpoint names both positions — before and after the batch — and the intent. At the
//! next start, the source asks [`Queue::lookup`] for the batch's last seq: present with the same
//! digest means the batch is in (batches are atomic, so all of it is); absent, or present with
//! another payload (the seq was handed out again to `send` after the batch was dropped), means
//! it is not. What this does not cover: a source's own decision to re-read (a truncated file).
//!
//! Formats: segments of format 1 (older builds; no batch flags, every record its own batch) are
//! read; appends never go into one (a new format-2 segment is started). An older build refuses a
//! format-2 segment ("written by a newer uplink") instead of truncating it as damage.
//!
//! Layout of the queue directory:
//! - `queue.lock`: the lock file (empty)
//! - `meta.json`: `{"format":1,"acked_through":N,"acked_segment":S,"acked_offset":O}`
//! - `SSSSSSSSSSSSSSSSSSSS.seg`: segments named by their first sequence number; header and
//!   records as in [`record`] (format 2: `len|MORE`, CRC-32 over length word, seq and payload)

pub mod record;

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use record::{Decoded, HEADER_LEN, RECORD_OVERHEAD};

/// The format of `meta.json` this build writes.
pub const META_FORMAT: u32 = 1;

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

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> QueueError + '_ {
    move |source| QueueError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What recovery dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    pub segment: PathBuf,
    /// Offset of the first byte dropped.
    pub offset: u64,
    pub dropped_bytes: u64,
    pub reason: String,
}

impl std::fmt::Display for Recovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "dropped {} bytes at offset {} of {} ({}); every complete record before it was kept",
            self.dropped_bytes,
            self.offset,
            self.segment.display(),
            self.reason
        )
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Meta {
    format: u32,
    acked_through: Option<u64>,
    /// Where reading resumes: the segment (by first seq) and offset just past the last acked record.
    acked_segment: Option<u64>,
    acked_offset: u64,
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
    /// The events' payloads, each followed by `\n`.
    pub body: Vec<u8>,
    end: Position,
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
    lock: File,
    opts: Options,
    segments: Vec<Segment>,
    meta: Meta,
    next_seq: u64,
    /// Segments whose records up to `len` were checked: first_seq -> (len, last seq or None if empty).
    validated: HashMap<u64, (u64, Option<u64>)>,
    /// Segments' formats (from their headers) by first seq: 1 (older builds) or [`record::FORMAT`].
    formats: HashMap<u64, u32>,
    recoveries: Vec<Recovery>,
}

impl Queue {
    /// Opens (creating if needed) the queue in `dir`, recovering from any torn write.
    pub fn open(dir: &Path, opts: Options) -> Result<Queue, QueueError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let lock_path = dir.join("queue.lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        let mut q = Queue {
            dir: dir.to_path_buf(),
            lock,
            opts,
            segments: Vec::new(),
            meta: Meta {
                format: META_FORMAT,
                ..Meta::default()
            },
            next_seq: 0,
            validated: HashMap::new(),
            formats: HashMap::new(),
            recoveries: Vec::new(),
        };
        q.locked(|_| Ok::<(), QueueError>(()))?;
        Ok(q)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What recovery dropped since the last call.
    pub fn take_recoveries(&mut self) -> Vec<Recovery> {
        std::mem::take(&mut self.recoveries)
    }

    fn locked<T, E: From<QueueError>>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, E>,
    ) -> Result<T, E> {
        let lock_path = self.dir.join("queue.lock");
        self.lock.lock().map_err(io_err(&lock_path))?;
        let result = self.refresh().map_err(E::from).and_then(|()| f(self));
        let _ = self.lock.unlock();
        result
    }

    fn meta_path(&self) -> PathBuf {
        self.dir.join("meta.json")
    }

    fn segment_path(&self, first_seq: u64) -> PathBuf {
        self.dir.join(format!("{first_seq:020}.seg"))
    }

    /// Re-reads the state other processes may have changed. Called with the lock held.
    fn refresh(&mut self) -> Result<(), QueueError> {
        let meta_path = self.meta_path();
        self.meta = match fs::read(&meta_path) {
            Ok(bytes) => {
                let meta: Meta =
                    serde_json::from_slice(&bytes).map_err(|e| QueueError::Format {
                        path: meta_path.clone(),
                        reason: format!("not valid queue metadata: {e}"),
                    })?;
                if meta.format > META_FORMAT {
                    return Err(QueueError::Format {
                        path: meta_path,
                        reason: format!("written by a newer uplink (format {}); this build reads format {META_FORMAT}: upgrade uplink", meta.format),
                    });
                }
                meta
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Meta {
                format: META_FORMAT,
                ..Meta::default()
            },
            Err(e) => return Err(io_err(&meta_path)(e)),
        };
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
        self.segments = segments;
        // The tail is where appends go and where a torn write can be: validate what is new in it.
        if let Some(tail) = self.segments.last().cloned() {
            let validated = self.validated.get(&tail.first_seq).copied();
            if validated.is_none_or(|(checked, _)| checked != tail.len) {
                let (end, last_seq) = self.scan_tail(&tail, validated)?;
                self.validated.insert(tail.first_seq, (end, last_seq));
                if let Some(s) = self.segments.last_mut() {
                    s.len = end;
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

    /// Scans the tail segment from `resume` (or its header) to the end, truncating it back to the
    /// end of its last complete batch. Returns the valid end and the last sequence number.
    fn scan_tail(
        &mut self,
        seg: &Segment,
        resume: Option<(u64, Option<u64>)>,
    ) -> Result<(u64, Option<u64>), QueueError> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
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
                if n > 0 {
                    self.recoveries.push(Recovery {
                        segment: seg.path.clone(),
                        offset: 0,
                        dropped_bytes: n as u64,
                        reason: "segment header incomplete".into(),
                    });
                }
                file.set_len(0).map_err(io_err(&seg.path))?;
                file.seek(SeekFrom::Start(0)).map_err(io_err(&seg.path))?;
                file.write_all(&record::encode_header(seg.first_seq))
                    .map_err(io_err(&seg.path))?;
                file.sync_data().map_err(io_err(&seg.path))?;
                self.formats.insert(seg.first_seq, record::FORMAT);
                return Ok((HEADER_LEN as u64, None));
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
        let (offset, last) = resume.unwrap_or((HEADER_LEN as u64, None));
        file.seek(SeekFrom::Start(offset))
            .map_err(io_err(&seg.path))?;
        let mut buf = Vec::new();
        file.read_to_end(&mut buf).map_err(io_err(&seg.path))?;
        let scanned = record::scan(&buf, format, last.map_or(seg.first_seq, |l| l + 1), last);
        let end = offset + scanned.valid as u64;
        if let Some(reason) = scanned.problem {
            let dropped = (buf.len() - scanned.valid) as u64;
            file.set_len(end).map_err(io_err(&seg.path))?;
            file.sync_data().map_err(io_err(&seg.path))?;
            self.recoveries.push(Recovery {
                segment: seg.path.clone(),
                offset: end,
                dropped_bytes: dropped,
                reason,
            });
        }
        Ok((end, scanned.last))
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
        file.write_all(&record::encode_header(first_seq))
            .map_err(io_err(&path))?;
        file.sync_all().map_err(io_err(&path))?;
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
    pub fn read_batch(
        &mut self,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<Option<Batch>, QueueError> {
        self.locked(|q| {
            let acked = q.meta.acked_through;
            let start_index = match q.meta.acked_segment {
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
            for seg in segments {
                let start = if Some(seg.first_seq) == q.meta.acked_segment {
                    q.meta.acked_offset.max(HEADER_LEN as u64)
                } else {
                    HEADER_LEN as u64
                };
                if start >= seg.len {
                    continue;
                }
                let format = match q.segment_format(&seg)? {
                    Ok(f) => f,
                    Err(why) => {
                        // A sealed segment whose header is damaged: report once, go on.
                        let recovery = Recovery {
                            segment: seg.path.clone(),
                            offset: 0,
                            dropped_bytes: seg.len,
                            reason: format!("damaged segment header ({why})"),
                        };
                        if !q.recoveries.contains(&recovery) {
                            q.recoveries.push(recovery);
                        }
                        continue;
                    }
                };
                let mut file = File::open(&seg.path).map_err(io_err(&seg.path))?;
                if Some(seg.first_seq) == tail_first {
                    // Make sure what we are about to send is durable, even if its appender died
                    // between write and fsync.
                    file.sync_data().map_err(io_err(&seg.path))?;
                }
                file.seek(SeekFrom::Start(start))
                    .map_err(io_err(&seg.path))?;
                let want = (seg.len - start)
                    .min(max_bytes as u64 + record::MAX_PAYLOAD as u64 + RECORD_OVERHEAD as u64);
                let mut buf = vec![0u8; want as usize];
                let n = read_up_to(&mut file, &mut buf).map_err(io_err(&seg.path))?;
                buf.truncate(n);
                let read_all = start + n as u64 >= seg.len;
                let is_full = |b: &Option<Batch>| {
                    b.as_ref()
                        .is_some_and(|b| b.count >= max_events || b.body.len() >= max_bytes)
                };
                let mut pos = 0usize;
                // True when everything unacknowledged in this segment is in the batch (or was
                // dropped as damaged), so reading may go on to the next segment.
                let mut finished = false;
                while !is_full(&batch) {
                    if pos >= buf.len() {
                        finished = read_all;
                        break;
                    }
                    match record::decode_record(&buf[pos..], format) {
                        Decoded::Complete {
                            seq, payload, len, ..
                        } => {
                            pos += len;
                            if acked.is_some_and(|a| seq <= a) {
                                continue;
                            }
                            let end = Position {
                                segment: seg.first_seq,
                                offset: start + pos as u64,
                            };
                            let b = batch.get_or_insert_with(|| Batch {
                                first_seq: seq,
                                last_seq: seq,
                                count: 0,
                                body: Vec::with_capacity(max_bytes.min(1 << 22)),
                                end,
                            });
                            b.body.extend_from_slice(payload);
                            b.body.push(b'\n');
                            b.last_seq = seq;
                            b.count += 1;
                            b.end = end;
                        }
                        // The buffer ended inside a record: the rest is read by the next call.
                        Decoded::Incomplete if !read_all => break,
                        _ if Some(seg.first_seq) != tail_first => {
                            // A sealed segment damaged on disk: report once, go on to the next.
                            let offset = start + pos as u64;
                            let recovery = Recovery {
                                segment: seg.path.clone(),
                                offset,
                                dropped_bytes: seg.len - offset,
                                reason: "damaged record in a sealed segment".into(),
                            };
                            if !q.recoveries.contains(&recovery) {
                                q.recoveries.push(recovery);
                            }
                            finished = true;
                            break;
                        }
                        // The tail was validated (and any torn end truncated) by `refresh`.
                        _ => break,
                    }
                }
                if !finished || is_full(&batch) {
                    break;
                }
            }
            Ok(batch)
        })
    }

    /// Removes `batch` (and everything before it) from the queue, durably.
    pub fn ack(&mut self, batch: &Batch) -> Result<(), QueueError> {
        self.locked(|q| {
            if q.meta.acked_through.is_some_and(|a| a >= batch.last_seq) {
                return Ok(());
            }
            let meta = Meta {
                format: META_FORMAT,
                acked_through: Some(batch.last_seq),
                acked_segment: Some(batch.end.segment),
                acked_offset: batch.end.offset,
            };
            write_atomic(
                &q.dir,
                &q.meta_path(),
                &serde_json::to_vec(&meta).expect("meta serialises"),
            )?;
            q.meta = meta;
            // Delete segments that hold only acknowledged records: every segment before the one
            // reading resumes in, and that one too if it is sealed (full) and read to its end.
            let tail_first = q.segments.last().map(|s| s.first_seq);
            let mut keep = Vec::new();
            for seg in std::mem::take(&mut q.segments) {
                let before = seg.first_seq < batch.end.segment;
                let done = seg.first_seq == batch.end.segment
                    && batch.end.offset >= seg.len
                    && (Some(seg.first_seq) != tail_first || seg.len >= q.opts.segment_bytes);
                if before || done {
                    fs::remove_file(&seg.path).map_err(io_err(&seg.path))?;
                    q.validated.remove(&seg.first_seq);
                } else {
                    keep.push(seg);
                }
            }
            q.segments = keep;
            Ok(())
        })
    }

    /// Events and bytes waiting to be uploaded.
    pub fn depth(&mut self) -> Result<Depth, QueueError> {
        self.locked(|q| {
            let first = q
                .meta
                .acked_through
                .map_or(0, |a| a + 1)
                .max(q.segments.first().map_or(q.next_seq, |s| s.first_seq));
            Ok(Depth {
                events: q.next_seq.saturating_sub(first),
                bytes: q.pending_bytes(),
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

    /// The digest of the payload of record `seq`, if the queue still holds it. Reads the one
    /// segment that can hold it, record header by record header, skipping payloads.
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
        let Ok(format) = self.segment_format(&seg)? else {
            return Ok(None);
        };
        let file = File::open(&seg.path).map_err(io_err(&seg.path))?;
        let mut r = io::BufReader::with_capacity(64 * 1024, file);
        r.seek(SeekFrom::Start(HEADER_LEN as u64))
            .map_err(io_err(&seg.path))?;
        let mut pos = HEADER_LEN as u64;
        let mut head = [0u8; RECORD_OVERHEAD];
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
                || at > seq
                || pos + (RECORD_OVERHEAD + len) as u64 > seg.len
            {
                return Ok(None);
            }
            if at == seq {
                let mut rec = Vec::with_capacity(RECORD_OVERHEAD + len);
                rec.extend_from_slice(&head);
                rec.resize(RECORD_OVERHEAD + len, 0);
                r.read_exact(&mut rec[RECORD_OVERHEAD..])
                    .map_err(io_err(&seg.path))?;
                return Ok(match record::decode_record(&rec, format) {
                    Decoded::Complete { payload, .. } => Some(record::digest(payload)),
                    _ => None,
                });
            }
            r.seek_relative(len as i64).map_err(io_err(&seg.path))?;
            pos += (RECORD_OVERHEAD + len) as u64;
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
    f.write_all(contents).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))?;
    sync_dir(dir)
}
