//! Following files: globs expanded at every poll, each file tracked by its identity (device,
//! inode) with the offset up to which its lines are durably queued.
//!
//! Rotation:
//! - **By rename** (`app.log` → `app.log.1`, a new `app.log`): the old file stays open and is read
//!   to its end — also after its new name stops matching the globs — and is let go only after it
//!   has been idle for `rotate_wait` (a writer may still append to it for a moment); its partial
//!   last line, if any, is then sent as a line. The new file is read from its beginning.
//! - **By truncation** (`copytruncate`, `> app.log`): a file shorter than the offset already read
//!   was truncated; reading restarts at 0. Lines written between the copy and the truncation are
//!   only in the copy: copytruncate itself loses them unless the copy matches a glob (and then
//!   they are read from it, with everything else in it). A file truncated and refilled past the old
//!   offset between two polls cannot be told from one that grew: prefer rename rotation.
//!
//! Reading is in chunks of `chunk_bytes` at the current offset (`pread`), at most `batch_bytes`
//! per append, so a multi-GB file is never in memory whole. When the sink is full, the batch read
//! is kept, the checkpoint stays where it is and nothing more is read until the sink takes it.
//!
//! The decisions are pure functions ([`start_offset`], [`decide`], [`retire`]) tested by tables.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::checkpoint::{self, FileMark, FilesCheckpoint};
use crate::config::FilesConfig;
use crate::lines::{Line, Splitter};
use crate::{io_err, Event, Sink, SinkError, SourceError};

/// A file's identity: it survives renames, not copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl FileId {
    fn of(m: &std::fs::Metadata) -> FileId {
        FileId {
            dev: m.dev(),
            ino: m.ino(),
        }
    }
}

/// Where to start reading a file found at a scan, given its checkpointed offset: there if the
/// file is still at least that long, else from the beginning (it was truncated while the sensor
/// was stopped). A file never seen is read from its beginning.
pub fn start_offset(checkpointed: Option<u64>, len: u64) -> u64 {
    match checkpointed {
        Some(o) if o <= len => o,
        _ => 0,
    }
}

/// What a poll finds for an open file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// New bytes after the read position.
    Read,
    /// Nothing new.
    AtEnd,
    /// Shorter than what was read: truncated; restart at 0.
    Truncated,
}

/// Decides from the read position and the file's current length.
pub fn decide(read_pos: u64, len: u64) -> Decision {
    if len < read_pos {
        Decision::Truncated
    } else if len == read_pos {
        Decision::AtEnd
    } else {
        Decision::Read
    }
}

/// Whether a file is done for good: no longer matched by any glob (renamed away or deleted), read
/// to its end, and idle for at least `rotate_wait`.
pub fn retire(matched: bool, at_end: bool, idle: Duration, rotate_wait: Duration) -> bool {
    !matched && at_end && idle >= rotate_wait
}

/// Bounds and timing.
#[derive(Debug, Clone, Copy)]
pub struct TailOptions {
    /// Bytes per read.
    pub chunk_bytes: usize,
    /// About the most bytes of lines per append (one fsync each).
    pub batch_bytes: usize,
    /// Most lines per append.
    pub batch_lines: usize,
    /// How long a rotated-away file is kept open after it stops growing, when its group does not
    /// say (`rotate_wait_secs`); `Some(ZERO)` overrides every group (`--once`).
    pub rotate_wait: Option<Duration>,
}

impl Default for TailOptions {
    fn default() -> Self {
        TailOptions {
            chunk_bytes: 128 * 1024,
            batch_bytes: 1 << 20,
            batch_lines: 5_000,
            rotate_wait: None,
        }
    }
}

/// What a poll did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poll {
    /// Every file is read to its current end.
    Idle,
    /// Lines were queued and there may be more: poll again now.
    More,
    /// The sink is full: nothing more was read; poll again later.
    Paused,
}

#[derive(Debug)]
struct Watched {
    id: FileId,
    path: PathBuf,
    file: File,
    group: usize,
    splitter: Splitter,
    /// Every byte before it is in the sink.
    durable: u64,
    matched: bool,
    idle_since: Option<Instant>,
    /// Events read but refused by a full sink, each with the offset it commits.
    pending: Option<Pending>,
    /// Paused by a full sink (logged once per pause).
    paused: bool,
}

/// Events a full sink refused, each with the file offset just past its line.
#[derive(Debug)]
struct Pending {
    events: Vec<Event>,
    ends: Vec<u64>,
}

/// How many of the first events to offer next after `Full` for all `n`: half, so a sink with room
/// for fewer events than a batch still makes progress (down to one event at a time).
pub fn retry_prefix(n: usize) -> usize {
    (n / 2).max(1)
}

/// The file tailer of a sensor.
#[derive(Debug)]
pub struct Tailer {
    groups: Vec<FilesConfig>,
    files: Vec<Watched>,
    /// Checkpointed offsets of files not found yet (consumed by the first scan).
    marks: HashMap<FileId, u64>,
    checkpoint_path: PathBuf,
    opts: TailOptions,
    buf: Vec<u8>,
}

impl Tailer {
    /// A tailer for `groups`, resuming from the checkpoint at `checkpoint_path`.
    pub fn new(
        groups: Vec<FilesConfig>,
        checkpoint_path: PathBuf,
        opts: TailOptions,
    ) -> Result<Tailer, SourceError> {
        let ck: FilesCheckpoint = checkpoint::load(&checkpoint_path)?;
        let marks = ck
            .files
            .iter()
            .map(|m| {
                (
                    FileId {
                        dev: m.dev,
                        ino: m.ino,
                    },
                    m.offset,
                )
            })
            .collect();
        Ok(Tailer {
            groups,
            files: Vec::new(),
            marks,
            checkpoint_path,
            opts,
            // Allocated at the first read: an idle sensor with no files keeps no buffer.
            buf: Vec::new(),
        })
    }

    /// Files currently followed (path, offset queued through).
    pub fn positions(&self) -> Vec<(PathBuf, u64)> {
        self.files
            .iter()
            .map(|w| (w.path.clone(), w.durable))
            .collect()
    }

    fn scan(&mut self) -> Result<(), SourceError> {
        for w in &mut self.files {
            w.matched = false;
        }
        for (g, group) in self.groups.iter().enumerate() {
            for pattern in &group.paths {
                for path in crate::glob::expand(pattern) {
                    let Ok(meta) = std::fs::metadata(&path) else {
                        continue;
                    };
                    let id = FileId::of(&meta);
                    if let Some(w) = self.files.iter_mut().find(|w| w.id == id) {
                        if !w.matched {
                            w.path = path;
                            w.matched = true;
                        }
                        continue;
                    }
                    let Ok(file) = File::open(&path) else {
                        continue; // gone since the listing, or unreadable: next scan
                    };
                    let meta = file.metadata().map_err(io_err(&path))?;
                    let id = FileId::of(&meta);
                    let start = start_offset(self.marks.remove(&id), meta.len());
                    tracing::info!(path = %path.display(), offset = start, "following file");
                    self.files.push(Watched {
                        id,
                        path,
                        file,
                        group: g,
                        splitter: Splitter::new(start, group.max_line_bytes),
                        durable: start,
                        matched: true,
                        idle_since: None,
                        pending: None,
                        paused: false,
                    });
                }
            }
        }
        // Marks of files that no longer exist would only ever match a reused inode.
        self.marks.clear();
        Ok(())
    }

    /// Reads what is new in every file into `sink`, one batch per file at most.
    pub fn poll(&mut self, sink: &mut dyn Sink) -> Result<Poll, SourceError> {
        self.scan()?;
        let mut outcome = Poll::Idle;
        let mut dirty = false;
        let mut result = Ok(());
        for i in 0..self.files.len() {
            match self.pump(i, sink, &mut dirty) {
                Ok(Poll::Idle) => {}
                Ok(Poll::More) => outcome = Poll::More,
                Ok(Poll::Paused) => {
                    outcome = Poll::Paused;
                    break;
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        if result.is_ok() && outcome != Poll::Paused {
            match self.retire_done(sink, &mut dirty) {
                Ok(true) => {}
                Ok(false) => outcome = Poll::Paused,
                Err(e) => result = Err(e),
            }
        }
        if dirty {
            self.store()?;
        }
        result.map(|()| outcome)
    }

    /// Lets go of rotated-away files that are finished. `Ok(false)` when the sink was full.
    fn retire_done(&mut self, sink: &mut dyn Sink, dirty: &mut bool) -> Result<bool, SourceError> {
        let mut i = 0;
        while i < self.files.len() {
            let w = &mut self.files[i];
            let wait = self
                .opts
                .rotate_wait
                .unwrap_or(Duration::from_secs(self.groups[w.group].rotate_wait_secs));
            let at_end = w.pending.is_none()
                && w.idle_since.is_some()
                && w.file
                    .metadata()
                    .is_ok_and(|m| m.len() <= w.splitter.next_offset());
            let idle = w.idle_since.map_or(Duration::ZERO, |t| t.elapsed());
            if retire(w.matched, at_end, idle, wait) {
                if let Some(line) = w.splitter.clone().finish() {
                    let kind = &self.groups[w.group].kind;
                    let event = line_event(kind, &w.path, &line);
                    match sink.append(std::slice::from_ref(&event)) {
                        Ok(()) => {}
                        Err(SinkError::Full(_)) => return Ok(false),
                        Err(e) => return Err(e.into()),
                    }
                }
                tracing::info!(path = %w.path.display(), "finished rotated file");
                self.files.remove(i);
                *dirty = true;
            } else {
                i += 1;
            }
        }
        Ok(true)
    }

    fn pump(
        &mut self,
        i: usize,
        sink: &mut dyn Sink,
        dirty: &mut bool,
    ) -> Result<Poll, SourceError> {
        let opts = self.opts;
        let kind = self.groups[self.files[i].group].kind.clone();
        let w = &mut self.files[i];
        if let Some(p) = w.pending.take() {
            offer(w, p, sink, dirty)?;
            if w.pending.is_some() {
                return Ok(Poll::Paused);
            }
        }
        let len = w.file.metadata().map_err(io_err(&w.path))?.len();
        match decide(w.splitter.next_offset(), len) {
            Decision::AtEnd => {
                w.idle_since.get_or_insert_with(Instant::now);
                return Ok(Poll::Idle);
            }
            Decision::Truncated => {
                tracing::info!(path = %w.path.display(), length = len, offset = w.splitter.next_offset(), "file truncated; reading again from its beginning");
                w.splitter.reset(0);
                w.durable = 0;
                *dirty = true;
                if len == 0 {
                    w.idle_since.get_or_insert_with(Instant::now);
                    return Ok(Poll::Idle);
                }
            }
            Decision::Read => {}
        }
        w.idle_since = None;
        if self.buf.len() != opts.chunk_bytes {
            self.buf = vec![0; opts.chunk_bytes];
        }
        let mut lines: Vec<Line> = Vec::new();
        let mut bytes = 0usize;
        while lines.len() < opts.batch_lines && bytes < opts.batch_bytes {
            let at = w.splitter.next_offset();
            if at >= len {
                break;
            }
            let want = ((len - at) as usize).min(self.buf.len());
            let n = w
                .file
                .read_at(&mut self.buf[..want], at)
                .map_err(io_err(&w.path))?;
            if n == 0 {
                break;
            }
            let before = lines.len();
            w.splitter.feed(&self.buf[..n], &mut lines);
            // What the events will weigh in the queue: the line plus its path, offset and framing.
            let overhead = w.path.as_os_str().len() + 64;
            bytes += lines[before..]
                .iter()
                .map(|l| l.bytes.len() + overhead)
                .sum::<usize>();
        }
        let more = w.splitter.next_offset() < len;
        if lines.is_empty() {
            // Only part of a line so far: it waits for its newline.
            return Ok(if more { Poll::More } else { Poll::Idle });
        }
        let events: Vec<Event> = lines
            .iter()
            .map(|l| line_event(&kind, &w.path, l))
            .collect();
        let ends: Vec<u64> = lines.iter().map(|l| l.end).collect();
        drop(lines);
        offer(w, Pending { events, ends }, sink, dirty)?;
        Ok(if w.pending.is_some() {
            Poll::Paused
        } else {
            Poll::More
        })
    }
    fn store(&self) -> Result<(), SourceError> {
        let ck = FilesCheckpoint {
            format: checkpoint::FORMAT,
            files: self
                .files
                .iter()
                .map(|w| FileMark {
                    dev: w.id.dev,
                    ino: w.id.ino,
                    offset: w.durable,
                    path: w.path.to_string_lossy().into_owned(),
                })
                .collect(),
        };
        checkpoint::store(&self.checkpoint_path, &ck)
    }

    /// The checkpoint file.
    pub fn checkpoint_path(&self) -> &Path {
        &self.checkpoint_path
    }
}

/// Offers pending events to the sink: all, or on `Full` ever smaller prefixes. `Ok(false)` when
/// the sink took none (paused; the rest stays pending).
fn offer(
    w: &mut Watched,
    mut p: Pending,
    sink: &mut dyn Sink,
    dirty: &mut bool,
) -> Result<bool, SourceError> {
    let mut took_any = false;
    let mut n = p.events.len();
    while !p.events.is_empty() {
        match sink.append(&p.events[..n]) {
            Ok(()) => {
                w.durable = p.ends[n - 1];
                *dirty = true;
                p.events.drain(..n);
                p.ends.drain(..n);
                took_any = true;
                n = p.events.len();
            }
            Err(SinkError::Full(why)) => {
                if n > 1 {
                    n = retry_prefix(n);
                    continue;
                }
                if !w.paused {
                    tracing::info!(path = %w.path.display(), offset = w.durable, "{why}; reading paused, the lines wait in the file");
                    w.paused = true;
                }
                w.pending = Some(p);
                return Ok(took_any);
            }
            Err(e) => {
                w.pending = Some(p);
                return Err(e.into());
            }
        }
    }
    if w.paused {
        tracing::info!(path = %w.path.display(), offset = w.durable, "the queue has room again; reading resumes");
        w.paused = false;
    }
    Ok(true)
}

/// The event for one line of a file: `{"path", "offset", "line"}` (+ `"continued": true` for a
/// piece of an over-long line that goes on in the next event).
pub fn line_event(kind: &str, path: &Path, line: &Line) -> Event {
    let mut fields = serde_json::Map::new();
    fields.insert("path".into(), path.to_string_lossy().into_owned().into());
    fields.insert("offset".into(), line.start.into());
    fields.insert("line".into(), line.text().into());
    if line.continued {
        fields.insert("continued".into(), true.into());
    }
    Event {
        kind: kind.to_owned(),
        fields,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions() {
        for (ck, len, want) in [
            (None, 100, 0),
            (Some(40), 100, 40),
            (Some(100), 100, 100),
            (Some(101), 100, 0), // truncated while stopped
            (Some(0), 0, 0),
        ] {
            assert_eq!(start_offset(ck, len), want, "{ck:?} {len}");
        }
        for (pos, len, want) in [
            (0, 0, Decision::AtEnd),
            (10, 10, Decision::AtEnd),
            (10, 11, Decision::Read),
            (10, 0, Decision::Truncated),
            (10, 9, Decision::Truncated),
        ] {
            assert_eq!(decide(pos, len), want, "{pos} {len}");
        }
        let s = Duration::from_secs;
        for (matched, at_end, idle, wait, want) in [
            (true, true, s(100), s(5), false),   // still the live file
            (false, false, s(100), s(5), false), // rotated away, not finished
            (false, true, s(1), s(5), false),    // a writer may still append
            (false, true, s(5), s(5), true),
            (false, true, s(0), s(0), true), // --once
        ] {
            assert_eq!(retire(matched, at_end, idle, wait), want);
        }
    }

    /// A sink that holds events in memory and can be made full.
    #[derive(Default)]
    struct Mem {
        events: Vec<Event>,
        full: bool,
        /// Most events one append may carry.
        room: Option<usize>,
    }
    impl Sink for Mem {
        fn append(&mut self, events: &[Event]) -> Result<(), SinkError> {
            if self.full || self.room.is_some_and(|r| events.len() > r) {
                return Err(SinkError::Full("test".into()));
            }
            self.events.extend_from_slice(events);
            Ok(())
        }
    }

    fn drain(t: &mut Tailer, sink: &mut Mem) {
        for _ in 0..1000 {
            if t.poll(sink).unwrap() == Poll::Idle {
                return;
            }
        }
        panic!("never idle");
    }

    fn texts(sink: &Mem) -> Vec<String> {
        sink.events
            .iter()
            .map(|e| e.fields["line"].as_str().unwrap().to_owned())
            .collect()
    }

    fn group(pattern: String) -> Vec<FilesConfig> {
        vec![FilesConfig {
            paths: vec![pattern],
            kind: "log".into(),
            max_line_bytes: 1024,
            rotate_wait_secs: 5,
        }]
    }

    #[test]
    fn retry_prefixes() {
        for (n, want) in [(1, 1), (2, 1), (3, 1), (4, 2), (5000, 2500)] {
            assert_eq!(retry_prefix(n), want);
        }
    }

    #[test]
    fn a_sink_with_room_for_less_than_a_batch_still_takes_every_line() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("a.log");
        let text: String = (0..100).map(|i| format!("l{i}\n")).collect();
        std::fs::write(&log, text).unwrap();
        let opts = TailOptions {
            batch_lines: 64,
            ..Default::default()
        };
        let mut t =
            Tailer::new(group(log.display().to_string()), d.path().join("ck"), opts).unwrap();
        let mut sink = Mem {
            room: Some(3),
            ..Default::default()
        };
        drain(&mut t, &mut sink);
        let want: Vec<String> = (0..100).map(|i| format!("l{i}")).collect();
        assert_eq!(texts(&sink), want);
    }

    #[test]
    fn rename_truncate_restart_and_pause() {
        use std::io::Write;
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("app.log");
        let ck = d.path().join("ck.json");
        let opts = TailOptions {
            chunk_bytes: 7,
            batch_lines: 3,
            rotate_wait: Some(Duration::ZERO),
            ..Default::default()
        };
        let append = |p: &Path, s: &str| {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .unwrap();
            f.write_all(s.as_bytes()).unwrap();
        };
        append(&log, "a1\na2\na3\na4\npart");
        let mut t = Tailer::new(
            group(format!("{}/app.log", d.path().display())),
            ck.clone(),
            opts,
        )
        .unwrap();
        let mut sink = Mem::default();
        drain(&mut t, &mut sink);
        assert_eq!(texts(&sink), ["a1", "a2", "a3", "a4"]);
        // Restart: the checkpoint is before the partial line, which is completed later.
        drop(t);
        let mut t = Tailer::new(
            group(format!("{}/app.log", d.path().display())),
            ck.clone(),
            opts,
        )
        .unwrap();
        append(&log, "ial\n");
        drain(&mut t, &mut sink);
        assert_eq!(texts(&sink)[4..], ["partial"]);
        // Rename rotation: the old file is finished (its partial line too), the new one read.
        append(&log, "a5\na6");
        std::fs::rename(&log, d.path().join("app.log.1")).unwrap();
        append(&log, "b1\n");
        drain(&mut t, &mut sink);
        let mut rotated = texts(&sink)[5..].to_vec();
        rotated.sort(); // two files: no order between them
        assert_eq!(rotated, ["a5", "a6", "b1"]);
        assert_eq!(t.positions().len(), 1);
        // Truncation: starts again at 0.
        std::fs::write(&log, "").unwrap();
        drain(&mut t, &mut sink);
        append(&log, "c1\n");
        drain(&mut t, &mut sink);
        assert_eq!(texts(&sink)[8..], ["c1"]);
        // Full sink: paused, nothing lost, nothing twice.
        sink.full = true;
        append(&log, "c2\nc3\nc4\nc5\n");
        assert_eq!(t.poll(&mut sink).unwrap(), Poll::Paused);
        assert_eq!(t.poll(&mut sink).unwrap(), Poll::Paused);
        sink.full = false;
        drain(&mut t, &mut sink);
        assert_eq!(texts(&sink)[9..], ["c2", "c3", "c4", "c5"]);
        // The checkpoint says where: the end of the file.
        let ck: FilesCheckpoint = checkpoint::load(&ck).unwrap();
        assert_eq!(ck.files.len(), 1);
        assert_eq!(ck.files[0].offset, std::fs::metadata(&log).unwrap().len());
    }
}
