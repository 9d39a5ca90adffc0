//! Following files: globs expanded at every poll, each file tracked by its identity (device,
//! inode) with the offset up to which its lines are durably queued.
//!
//! Rotation:
//! - **By rename** (`app.log` → `app.log.1`, a new `app.log`): the old file stays open and is read
//!   to its end — also after its new name stops matching the globs — and is let go only after it
//!   has been idle for `rotate_wait` (a writer may still append to it for a moment); its partial
//!   last line, if any, is then sent as a line. The new file is read from its beginning.
//!   The checkpoint keeps the old file (by inode) until then, so a restart in between — or a
//!   rotation while the sensor is stopped — does not forget it: a checkpointed file the globs no
//!   longer find is looked for by inode in the directory it was in ([`Tailer::new`]'s first
//!   poll), and read to its end under the name its lines were logged under, when it is the file
//!   ([`found_again`]: same birth time, or same first bytes read). One that is not there any more
//!   (deleted, or moved to another directory) with bytes unread when last looked at
//!   ([`unread_when_gone`]) is reported: a warning, and the checkpoint's `lost` list, which
//!   `sensor status` shows. A directory that cannot be listed keeps its files' marks (tried again
//!   at every poll), and so does a file whose reading fails: neither is taken for deleted.
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
//! Checkpoints are written inside each append, before its events ([`crate::checkpoint`]), and the
//! one a crash left is settled against the sink in [`Tailer::new`]: no line twice, none skipped.
//!
//! **Inode reuse.** A file is known by (device, inode), but once a file is deleted while the
//! sensor is stopped, a new file can get its inode. So each checkpointed file also carries a
//! fingerprint: a hash of its first `min(offset, 1 KiB)` bytes. At start, a file with the right
//! inode but another fingerprint — or shorter than the fingerprinted bytes — is a new file and is
//! read from 0 ([`start_offset`]). What this cannot tell apart: a new file whose first bytes are
//! the same as the old one's (say, both begin with the same long banner line) *and* is at least as
//! long as the old offset; it is taken for the old file and its start is skipped. Below 1 KiB the
//! whole read part is compared, so small files are told apart by any differing byte. The same
//! check catches a file truncated and refilled while the sensor was stopped, when its new first
//! bytes differ.
//!
//! The decisions are pure functions ([`start_offset`], [`decide`], [`retire`]) tested by tables.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::checkpoint::{self, FileMark, FilesCheckpoint, Fingerprint, Next};
use crate::config::{FilesConfig, Format};
use crate::lines::{Line, Splitter};
use crate::{io_err, Event, Sink, SourceError};

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

/// How many of a file's first bytes its fingerprint covers (at most).
pub const FINGERPRINT_BYTES: u64 = 1024;

/// Where to start reading a file found at a scan, given its checkpoint `mark` (matched by inode),
/// its length and its first `min(len, FINGERPRINT_BYTES)` bytes `head`: at the mark if the file is
/// still at least that long and (when the mark has a fingerprint, format 2) its first bytes are
/// the fingerprinted ones; else from the beginning — it was truncated while the sensor was
/// stopped, or it is another file on a reused inode. A file never seen is read from 0.
pub fn start_offset(mark: Option<&FileMark>, len: u64, head: &[u8]) -> u64 {
    let Some(m) = mark else {
        return 0;
    };
    if m.offset > len {
        return 0;
    }
    match m.fingerprint {
        None => m.offset,
        Some(fp) => {
            let same = usize::try_from(fp.len)
                .ok()
                .and_then(|n| head.get(..n))
                .is_some_and(|h| Fingerprint::of(h) == fp);
            if same {
                m.offset
            } else {
                0
            }
        }
    }
}

/// The fingerprint of `file` at `offset`: of its first `min(offset, FINGERPRINT_BYTES)` bytes.
/// `known` is reused when it covers the same bytes (always, once past the first KiB).
fn fingerprint_at(file: &File, offset: u64, known: Fingerprint) -> std::io::Result<Fingerprint> {
    let want = offset.min(FINGERPRINT_BYTES);
    if known.len == want {
        return Ok(known);
    }
    Ok(Fingerprint::of(&read_head(file, want)?))
}

/// Up to `n` first bytes of `file` (fewer if it is shorter).
fn read_head(file: &File, n: u64) -> std::io::Result<Vec<u8>> {
    let mut head = vec![0u8; n as usize];
    let mut got = 0;
    while got < head.len() {
        match file.read_at(&mut head[got..], got as u64) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    head.truncate(got);
    Ok(head)
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

/// Whether a checkpointed file the globs no longer find, `found` again by its inode (its length,
/// first bytes and birth time), is the file the checkpoint `mark` names, to be read on from its
/// offset: not found (deleted) or another file on a reused inode (another birth time, other
/// first bytes, or shorter) is not. Without a birth time on both sides only bytes already read
/// tell the file from another that got its inode (say `app.log.2.gz` after compression), so a
/// mark with none (format 1, or nothing read yet) is never found again: it is gone.
pub fn found_again(mark: &FileMark, found: Option<(u64, &[u8], Option<u64>)>) -> bool {
    let Some((len, head, born)) = found else {
        return false;
    };
    let same_birth = match (mark.born, born) {
        (Some(a), Some(b)) if a != b => return false,
        (Some(_), Some(_)) => true,
        _ => false,
    };
    let read_bytes = mark.fingerprint.is_some_and(|fp| fp.len > 0);
    (same_birth || read_bytes) && start_offset(Some(mark), len, head) == mark.offset
}

/// Whether a checkpointed file that is gone (not found again: deleted, moved away, or another
/// file on its inode) had lines not read yet when it was last looked at: its length then was
/// beyond its offset, or is not known (older checkpoints). Only then is it reported lost; one
/// read to its end is just forgotten. (Lines written after the sensor last looked, while it was
/// stopped, cannot be known about.)
pub fn unread_when_gone(mark: &FileMark) -> bool {
    !matches!(mark.length, Some(len) if len <= mark.offset)
}

/// A file's birth time in nanoseconds since the epoch, when its filesystem keeps one.
fn born_of(meta: &std::fs::Metadata) -> Option<u64> {
    let d = meta
        .created()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    u64::try_from(d.as_nanos()).ok()
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
    /// The fingerprint at `durable`.
    fp: Fingerprint,
    /// Lines before `durable` of a JSON file shipped as text (see [`FileMark::not_json`]).
    not_json: u64,
    matched: bool,
    idle_since: Option<Instant>,
    /// Events read but refused by a full sink, each with the offset it commits.
    pending: Option<Pending>,
    /// Paused by a full sink (logged once per pause).
    paused: bool,
    /// The name a rotated-away file was found under at a restart ([`FileMark::renamed_to`]).
    renamed_to: Option<PathBuf>,
    /// Its length when last looked at ([`FileMark::length`]).
    length: u64,
    /// [`FileMark::born`].
    born: Option<u64>,
}

/// Lines a full sink refused (each knows the file offset just past it).
#[derive(Debug)]
struct Pending {
    lines: Vec<Line>,
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
    /// Checkpointed marks of files not found yet: consumed by the first scan, but for those in a
    /// directory that could not be listed, or that could not be opened (tried again at every
    /// scan until then; they stay in the checkpoint).
    marks: HashMap<FileId, FileMark>,
    /// Directories and files [`Tailer::find_again`] warned about (once each).
    warned: HashSet<PathBuf>,
    /// Files the first scan could not find again ([`FilesCheckpoint::lost`]).
    lost: Vec<FileMark>,
    /// [`FilesCheckpoint::not_json_let_go`].
    not_json_let_go: u64,
    checkpoint_path: PathBuf,
    /// The checkpoint on disk still names the last batch as pending (it is in): rewrite it clean
    /// when idle.
    unsettled: bool,
    opts: TailOptions,
    buf: Vec<u8>,
}

impl Tailer {
    /// A tailer for `groups`, resuming from the checkpoint at `checkpoint_path` after settling a
    /// batch a crash left pending against `sink` ([`checkpoint::reconcile`]). Call it before
    /// anything else in the process appends to the sink or acknowledges from it.
    pub fn new(
        groups: Vec<FilesConfig>,
        checkpoint_path: PathBuf,
        opts: TailOptions,
        sink: &mut dyn Sink,
    ) -> Result<Tailer, SourceError> {
        let mut ck: FilesCheckpoint = checkpoint::reconcile(&checkpoint_path, sink)?;
        let marks = std::mem::take(&mut ck.files)
            .into_iter()
            .map(|m| {
                (
                    FileId {
                        dev: m.dev,
                        ino: m.ino,
                    },
                    m,
                )
            })
            .collect();
        Ok(Tailer {
            groups,
            files: Vec::new(),
            marks,
            warned: HashSet::new(),
            lost: ck.lost,
            not_json_let_go: ck.not_json_let_go,
            checkpoint_path,
            unsettled: false,
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
        let mut changed = false;
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
                    let mark = self.marks.remove(&FileId::of(&meta));
                    let w = match follow(group, g, path, file, &meta, mark.as_ref()) {
                        Ok(w) => w,
                        Err(e) => {
                            // Not lost: the next scan tries it again.
                            if let Some(m) = mark {
                                self.marks.insert(FileId::of(&meta), m);
                            }
                            return Err(e);
                        }
                    };
                    if let Some(m) = mark.filter(|m| m.offset != w.durable) {
                        // Another file on its inode (or the file, truncated): it is gone.
                        let_go_of_gone(&mut self.lost, &mut self.not_json_let_go, m);
                        changed = true;
                    }
                    self.files.push(w);
                }
            }
        }
        if !self.marks.is_empty() {
            self.find_again()?;
        } else if changed {
            self.store()?;
        }
        Ok(())
    }

    /// The first scan's checkpointed files that no glob found: rotated away (before or while the
    /// sensor was stopped) and not read to their end, or deleted. Each is looked for by its inode
    /// in the directory it was in, and followed to its end if it is there ([`found_again`]; not
    /// matched, so let go once finished); else it is gone ([`let_go_of_gone`]). A file whose name
    /// no glob matches any more was dropped from the configuration: it is forgotten. A mark whose
    /// directory cannot be listed (a mount not there yet, no permission, out of descriptors) or
    /// whose file cannot be opened stays, and is tried again at the next scan: taking it for
    /// deleted would report a live file lost and read it again from its beginning once its
    /// directory is back. Other marks left after this would only ever match a reused inode.
    fn find_again(&mut self) -> Result<(), SourceError> {
        let mut marks: Vec<FileMark> = std::mem::take(&mut self.marks).into_values().collect();
        marks.sort_by(|a, b| a.path.cmp(&b.path));
        let mut listings: HashMap<PathBuf, Option<Listing>> = HashMap::new();
        let mut changed = false;

        for m in marks {
            let logged_as = PathBuf::from(&m.path);
            let Some(g) = self.groups.iter().position(|g| {
                g.paths
                    .iter()
                    .any(|p| crate::glob::matches_path(p, &logged_as))
            }) else {
                tracing::info!(path = %m.path, offset = m.offset, "no configured glob matches this checkpointed file any more: forgetting it");
                self.not_json_let_go += m.not_json;
                changed = true;
                continue;
            };
            let id = FileId {
                dev: m.dev,
                ino: m.ino,
            };
            let dir = logged_as.parent().unwrap_or(Path::new("/")).to_path_buf();
            let warned = &mut self.warned;
            let listing = listings
                .entry(dir.clone())
                .or_insert_with(|| match files_in(&dir) {
                    Ok(listing) => Some(listing),
                    Err(e) => {
                        if warned.insert(dir.clone()) {
                            tracing::warn!(dir = %dir.display(), error = %e, "cannot list the directory of checkpointed files the globs did not find (not mounted yet? permissions?): keeping their checkpoints and trying again at every poll");
                        }
                        None
                    }
                });
            let Some((dir_dev, listing)) = listing else {
                self.marks.insert(id, m);
                continue;
            };
            if !may_hold(*dir_dev, listing, m.dev) {
                if self.warned.insert(dir.clone()) {
                    tracing::warn!(dir = %dir.display(), path = %m.path, "the directory of a checkpointed file the globs did not find is on another filesystem than the file (not mounted yet?): keeping its checkpoint and trying again at every poll");
                }
                self.marks.insert(id, m);
                continue;
            }
            let Some(now_at) = listing
                .iter()
                .find(|(i, _)| *i == id)
                .map(|(_, p)| p.clone())
            else {
                let_go_of_gone(&mut self.lost, &mut self.not_json_let_go, m);
                changed = true;
                continue;
            };
            let opened = File::open(&now_at).and_then(|file| {
                let meta = file.metadata()?;
                let head = read_head(&file, meta.len().min(FINGERPRINT_BYTES))?;
                Ok((file, meta, head))
            });
            let (file, meta, head) = match opened {
                Ok(o) => o,
                Err(e) => {
                    if self.warned.insert(now_at.clone()) {
                        tracing::warn!(path = %m.path, now = %now_at.display(), error = %e, "cannot open a checkpointed file found again by its inode: keeping its checkpoint and trying again at every poll");
                    }
                    self.marks.insert(id, m);
                    continue;
                }
            };
            let found = (FileId::of(&meta) == id).then(|| (meta.len(), &head[..], born_of(&meta)));
            if !found_again(&m, found) {
                // Another file on its inode (or renamed over since the listing).
                let_go_of_gone(&mut self.lost, &mut self.not_json_let_go, m);
                changed = true;
                continue;
            }
            match follow(&self.groups[g], g, logged_as, file, &meta, Some(&m)) {
                Ok(mut w) => {
                    tracing::info!(path = %m.path, now = %now_at.display(), offset = m.offset, "found a rotated-away file again by its inode: reading it to its end");
                    self.warned.remove(&now_at);
                    w.matched = false;
                    w.renamed_to = (now_at != w.path).then_some(now_at);
                    self.files.push(w);
                    changed = true;
                }
                Err(e) => {
                    if self.warned.insert(now_at.clone()) {
                        tracing::warn!(path = %m.path, now = %now_at.display(), error = %e, "cannot read a checkpointed file found again by its inode: keeping its checkpoint and trying again at every poll");
                    }
                    self.marks.insert(id, m);
                }
            }
        }
        // What was forgotten, lost or found leaves the marks (and a file lost at the glob scan
        // is in `lost` already).
        if changed {
            self.store()?;
        }
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
        // A clean checkpoint for changes no append carried (a truncation, a file let go), and
        // when idle, so that the file at rest names no pending batch.
        if dirty || (self.unsettled && result.is_ok() && outcome == Poll::Idle) {
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
                    let kind = self.groups[w.group].kind.clone();
                    match self.append_for(i, &kind, std::slice::from_ref(&line), sink) {
                        Ok(()) => {}
                        Err(e) if e.is_full() => return Ok(false),
                        Err(e) => return Err(e),
                    }
                }
                let w = self.files.remove(i);
                tracing::info!(path = %w.path.display(), not_json = w.not_json, "finished rotated file");
                self.not_json_let_go += w.not_json;
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
            self.offer(i, &kind, p, sink)?;
            if self.files[i].pending.is_some() {
                return Ok(Poll::Paused);
            }
        }
        let w = &mut self.files[i];
        let len = w.file.metadata().map_err(io_err(&w.path))?.len();
        w.length = len;
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
        self.offer(i, &kind, Pending { lines }, sink)?;
        Ok(if self.files[i].pending.is_some() {
            Poll::Paused
        } else {
            Poll::More
        })
    }
    fn mark(w: &Watched) -> FileMark {
        FileMark {
            dev: w.id.dev,
            ino: w.id.ino,
            offset: w.durable,
            path: w.path.to_string_lossy().into_owned(),
            fingerprint: Some(w.fp),
            not_json: w.not_json,
            renamed_to: w
                .renamed_to
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned()),
            length: Some(w.length),
            born: w.born,
        }
    }

    /// The marks a checkpoint holds: every followed file's, and the checkpointed ones not found
    /// yet (the `marks` field).
    fn marks(&self) -> Vec<FileMark> {
        let mut waiting: Vec<&FileMark> = self.marks.values().collect();
        waiting.sort_by(|a, b| a.path.cmp(&b.path));
        self.files
            .iter()
            .map(Self::mark)
            .chain(waiting.into_iter().cloned())
            .collect()
    }

    /// Writes a clean checkpoint: every file at its durable offset, nothing pending.
    fn store(&mut self) -> Result<(), SourceError> {
        let ck = FilesCheckpoint {
            format: checkpoint::FORMAT,
            files: self.marks(),
            next: None,
            lost: self.lost.clone(),
            not_json_let_go: self.not_json_let_go,
        };
        checkpoint::store(&self.checkpoint_path, &ck)?;
        self.unsettled = false;
        Ok(())
    }

    /// The checkpoint file.
    pub fn checkpoint_path(&self) -> &Path {
        &self.checkpoint_path
    }

    /// Appends the events of `lines` of file `i` (not empty): the checkpoint written inside the
    /// append names every file at its durable offset and this batch as pending.
    fn append_for(
        &mut self,
        i: usize,
        kind: &str,
        lines: &[Line],
        sink: &mut dyn Sink,
    ) -> Result<(), SourceError> {
        let end = lines.last().map_or(self.files[i].durable, |l| l.end);
        let w = &self.files[i];
        let fp = fingerprint_at(&w.file, end, w.fp).map_err(io_err(&w.path))?;
        let not_json = w.not_json + text_lines(self.groups[w.group].format, lines);
        let position = FileMark {
            offset: end,
            fingerprint: Some(fp),
            not_json,
            ..Self::mark(w)
        };
        let mut ck = FilesCheckpoint {
            format: checkpoint::FORMAT,
            files: self.marks(),
            next: None,
            lost: self.lost.clone(),
            not_json_let_go: self.not_json_let_go,
        };
        let path = &self.checkpoint_path;
        let batch = LineBatch {
            kind,
            path: &w.path,
            lines,
        };
        sink.append_lines(&batch, &mut |intent| {
            ck.next = Some(Next {
                position: position.clone(),
                last_seq: intent.last_seq,
                digest: intent.last_digest,
            });
            checkpoint::store(path, &ck)
        })?;
        let w = &mut self.files[i];
        w.durable = end;
        w.fp = fp;
        w.not_json = not_json;
        self.unsettled = true;
        Ok(())
    }

    /// Offers pending events of file `i` to the sink: all, or on `Full` ever smaller prefixes.
    /// What the sink does not take stays pending (paused).
    fn offer(
        &mut self,
        i: usize,
        kind: &str,
        mut p: Pending,
        sink: &mut dyn Sink,
    ) -> Result<(), SourceError> {
        let mut n = p.lines.len();
        while !p.lines.is_empty() {
            match self.append_for(i, kind, &p.lines[..n], sink) {
                Ok(()) => {
                    p.lines.drain(..n);
                    n = p.lines.len();
                }
                Err(e) if e.is_full() => {
                    if n > 1 {
                        n = retry_prefix(n);
                        continue;
                    }
                    let w = &mut self.files[i];
                    if !w.paused {
                        tracing::info!(path = %w.path.display(), offset = w.durable, "{e}; reading paused, the lines wait in the file");
                        w.paused = true;
                    }
                    w.pending = Some(p);
                    return Ok(());
                }
                Err(e) => {
                    self.files[i].pending = Some(p);
                    return Err(e);
                }
            }
        }
        let w = &mut self.files[i];
        if w.paused {
            tracing::info!(path = %w.path.display(), offset = w.durable, "the queue has room again; reading resumes");
            w.paused = false;
        }
        Ok(())
    }
}

/// Starts following `file` (opened from `path`, of group `g`), from its checkpoint `mark` if the
/// file is the one it names ([`start_offset`]), else from its beginning.
fn follow(
    group: &FilesConfig,
    g: usize,
    path: PathBuf,
    file: File,
    meta: &std::fs::Metadata,
    mark: Option<&FileMark>,
) -> Result<Watched, SourceError> {
    #[cfg(test)]
    if tests::FAIL_FOLLOW.with(|f| f.borrow().as_deref() == Some(path.as_path())) {
        return Err(io_err(&path)(std::io::Error::other("injected by the test")));
    }
    let head = match mark {
        Some(_) => read_head(&file, meta.len().min(FINGERPRINT_BYTES)).map_err(io_err(&path))?,
        None => Vec::new(),
    };
    let start = start_offset(mark, meta.len(), &head);
    if let Some(m) = mark.filter(|m| start != m.offset) {
        tracing::info!(path = %path.display(), checkpointed = m.offset, length = meta.len(), "not the file checkpointed on this inode (shorter, or other first bytes): reading it from its beginning");
    }
    let fp = Fingerprint::of(&head[..head.len().min(start as usize)]);
    // The count goes on from the checkpoint, unless the file is read again.
    let not_json = mark.filter(|m| start == m.offset).map_or(0, |m| m.not_json);
    // A checkpoint is at the end of a line or of a piece of an over-long one: after a piece (the
    // byte before is not a newline) the rest is a piece too.
    let inside = match start.checked_sub(1) {
        Some(before) => {
            let mut b = [0u8; 1];
            file.read_exact_at(&mut b, before).map_err(io_err(&path))?;
            b[0] != b'\n'
        }
        None => false,
    };
    tracing::info!(path = %path.display(), offset = start, "following file");
    Ok(Watched {
        id: FileId::of(meta),
        path,
        file,
        group: g,
        splitter: Splitter::new(start, group.max_line_bytes)
            .json(group.format == Format::Json)
            .inside_a_line(inside),
        durable: start,
        fp,
        not_json,
        matched: true,
        idle_since: None,
        pending: None,
        paused: false,
        renamed_to: None,
        length: meta.len(),
        born: born_of(meta),
    })
}

/// A checkpointed file that is gone (not found again, or another file on its inode): reported
/// lost — a warning and the checkpoint's `lost` list, the last [`checkpoint::MAX_LOST`] — when it
/// had lines not read yet ([`unread_when_gone`]), else just forgotten. Its count of lines shipped
/// as text stays counted (`not_json_let_go`).
fn let_go_of_gone(lost: &mut Vec<FileMark>, not_json_let_go: &mut u64, m: FileMark) {
    *not_json_let_go += m.not_json;
    if !unread_when_gone(&m) {
        tracing::info!(path = %m.path, offset = m.offset, "a followed file is gone, read to its end: forgetting it");
        return;
    }
    tracing::warn!(path = %m.path, offset = m.offset, length = ?m.length, "a followed file is gone (deleted, moved out of its directory or truncated while the sensor was stopped) before it was known to be read to its end: its lines after byte {}, if any, are lost", m.offset);
    if lost.len() >= checkpoint::MAX_LOST {
        lost.remove(0);
    }
    lost.push(m);
}

/// A directory's device and its regular files by identity ([`files_in`]).
type Listing = (u64, Vec<(FileId, PathBuf)>);

/// The device of `dir` and the regular files in it by identity; an error when it cannot be
/// listed. An entry that vanishes or cannot be looked at while listing is left out.
fn files_in(dir: &Path) -> std::io::Result<Listing> {
    let dev = std::fs::metadata(dir)?.dev();
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if let Some(md) = e.metadata().ok().filter(|md| md.is_file()) {
            files.push((FileId::of(&md), e.path()));
        }
    }
    Ok((dev, files))
}

/// Whether a directory on device `dir_dev` holding `listing` may be the one a file of device
/// `dev` was checkpointed in. Not when it is on another device and so is every file in it: the
/// filesystem the file was on is not mounted there (yet), and the file cannot be told deleted.
/// (A file on another device than its directory's is rare — overlayfs may report so — and
/// then its sibling files are too.)
pub fn may_hold(dir_dev: u64, listing: &[(FileId, PathBuf)], dev: u64) -> bool {
    dir_dev == dev || listing.iter().any(|(id, _)| id.dev == dev)
}

/// The lines of one file appended together, as [`Sink::append_lines`] takes them.
#[derive(Debug, Clone, Copy)]
pub struct LineBatch<'a> {
    pub kind: &'a str,
    pub path: &'a Path,
    pub lines: &'a [Line],
}

impl<'a> LineBatch<'a> {
    /// Their events ([`line_event`]).
    pub fn events(&self) -> impl Iterator<Item = Event> + 'a {
        let (kind, path) = (self.kind, self.path);
        self.lines.iter().map(move |l| line_event(kind, path, l))
    }

    /// Writes the `i`th line's event with `seq`, as [`encode_line_event`] does.
    pub fn encode(&self, i: usize, seq: u64, out: &mut Vec<u8>) {
        encode_line_event(out, seq, self.kind, self.path, &self.lines[i]);
    }
}

/// How many of `lines` of a file in `format` go as text though they should be JSON objects (the
/// count [`FileMark::not_json`] keeps): none in a text file.
pub fn text_lines(format: Format, lines: &[Line]) -> u64 {
    match format {
        Format::Text => 0,
        Format::Json => lines.iter().filter(|l| !l.object).count() as u64,
    }
}

/// Writes the event of `line` (without a newline) exactly as
/// `uplink_protocol::batch::encode_line(out, seq, kind, &line_event(kind, path, line).fields)`
/// does (then pops its newline), without building the event: its fields in their map's order
/// (`continued`, `line`, `offset`, `path`), strings escaped as serde_json escapes them ([`crate::json::write_str_lossy`]).
///
/// A line that is a JSON object ([`Line::object`]) is written as `"data"` (in place of
/// `"line"`): its bytes as read, without surrounding whitespace — the same JSON value as
/// `line_event`'s, not necessarily the same bytes (serde_json would write it again, its keys
/// sorted).
pub fn encode_line_event(out: &mut Vec<u8>, seq: u64, kind: &str, path: &Path, line: &Line) {
    // Numbers through itoa, not `fmt` (its machinery was ~3 % of the sources thread per event):
    // the same digits.
    let mut digits = itoa::Buffer::new();
    out.extend_from_slice(b"{\"seq\":");
    out.extend_from_slice(digits.format(seq).as_bytes());
    out.extend_from_slice(b",\"kind\":");
    crate::json::write_str_lossy(out, kind.as_bytes());
    if line.continued {
        out.extend_from_slice(b",\"continued\":true");
    }
    if line.object {
        // Checked when the line was read (the splitter): one JSON object the service takes.
        out.extend_from_slice(b",\"data\":");
        out.extend_from_slice(crate::json::trim(&line.bytes));
    } else {
        out.extend_from_slice(b",\"line\":");
        // std's UTF-8 check, then the escaping 64 bytes at a time (json::write_str_lossy).
        crate::json::write_str_lossy(out, &line.bytes);
    }
    out.extend_from_slice(b",\"offset\":");
    out.extend_from_slice(digits.format(line.start).as_bytes());
    out.extend_from_slice(b",\"path\":");
    crate::json::write_str_lossy(out, path.as_os_str().as_bytes());
    out.push(b'}');
}

/// The event for one line of a file: `{"path", "offset", "line"}` (+ `"continued": true` for a
/// piece of an over-long line that goes on in the next event); for a line that is a JSON object
/// ([`Line::object`]), `"data"`, the object, in place of `"line"`.
pub fn line_event(kind: &str, path: &Path, line: &Line) -> Event {
    let mut fields = serde_json::Map::new();
    fields.insert("path".into(), path.to_string_lossy().into_owned().into());
    fields.insert("offset".into(), line.start.into());
    let data = line
        .object
        .then(|| serde_json::from_slice::<serde_json::Value>(&line.bytes).ok())
        .flatten();
    match data {
        Some(data) => fields.insert("data".into(), data),
        None => fields.insert("line".into(), line.text().into()),
    };
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
    use crate::Stored;

    fn mark(offset: u64, fingerprint: Option<Fingerprint>) -> FileMark {
        FileMark {
            dev: 1,
            ino: 2,
            offset,
            path: "/log/a.log".into(),
            fingerprint,
            not_json: 0,
            renamed_to: None,
            length: None,
            born: None,
        }
    }

    #[test]
    fn start_offsets_and_inode_reuse() {
        let head = b"2026-01-01 first line\nsecond line\n";
        let fp = |bytes: &[u8]| Some(Fingerprint::of(bytes));
        for (name, m, len, head, want) in [
            ("never seen", None, 100, &head[..], 0),
            (
                "format 1: offset only",
                Some(mark(40, None)),
                100,
                &head[..],
                40,
            ),
            ("at its end", Some(mark(100, None)), 100, &head[..], 100),
            (
                "truncated while stopped",
                Some(mark(101, None)),
                100,
                &head[..],
                0,
            ),
            ("empty", Some(mark(0, None)), 0, &b""[..], 0),
            (
                "same first bytes",
                Some(mark(22, fp(&head[..22]))),
                100,
                &head[..],
                22,
            ),
            (
                "same, past the fingerprint",
                Some(mark(5000, fp(&head[..]))),
                9000,
                &head[..],
                5000,
            ),
            // Another file on the reused inode: other first bytes.
            (
                "other first bytes",
                Some(mark(22, fp(b"2026-01-02 first line\n"))),
                100,
                &head[..],
                0,
            ),
            // Shorter than the fingerprinted bytes (and, here, than the offset too).
            (
                "shorter than the fingerprint",
                Some(mark(22, fp(&head[..22]))),
                10,
                &head[..10],
                0,
            ),
            // Long enough, but the bytes the fingerprint covers are not all there.
            (
                "head shorter than the fingerprint",
                Some(mark(22, fp(&head[..22]))),
                100,
                &head[..5],
                0,
            ),
            // What it cannot tell: same first bytes, long enough. Taken for the old file.
            (
                "identical header",
                Some(mark(30, fp(&head[..30]))),
                100,
                &head[..],
                30,
            ),
        ] {
            assert_eq!(start_offset(m.as_ref(), len, head), want, "{name}");
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
        let read = mark(22, fp(&head[..22]));
        let born = |m: FileMark, t| FileMark { born: t, ..m };
        let gz = &b"\x1f\x8b\x08\x00 compressed"[..];
        for (name, m, found, want) in [
            ("deleted", read.clone(), None, false),
            (
                "the file, grown",
                read.clone(),
                Some((100, &head[..], None)),
                true,
            ),
            (
                "the file, at its offset",
                read.clone(),
                Some((22, &head[..22], None)),
                true,
            ),
            (
                "another file on the inode",
                read.clone(),
                Some((100, &b"x"[..], None)),
                false,
            ),
            (
                "shorter than the offset",
                read.clone(),
                Some((10, &head[..10], None)),
                false,
            ),
            // Nothing read from it: no bytes to compare, so any file on the inode would do.
            (
                "nothing read, another file on the inode",
                mark(0, fp(b"")),
                Some((100, gz, None)),
                false,
            ),
            (
                "format 1, another file on the inode",
                mark(10, None),
                Some((100, gz, None)),
                false,
            ),
            // Its birth time tells.
            (
                "nothing read, born then",
                born(mark(0, fp(b"")), Some(7)),
                Some((100, &head[..], Some(7))),
                true,
            ),
            (
                "nothing read, born later",
                born(mark(0, fp(b"")), Some(7)),
                Some((100, gz, Some(8))),
                false,
            ),
            (
                "same first bytes, born later",
                born(read.clone(), Some(7)),
                Some((100, &head[..], Some(8))),
                false,
            ),
            (
                "same first bytes, birth unknown now",
                born(read.clone(), Some(7)),
                Some((100, &head[..], None)),
                true,
            ),
        ] {
            assert_eq!(found_again(&m, found), want, "{name}");
        }
        let file = |dev| (FileId { dev, ino: 9 }, PathBuf::from("/log/x"));
        for (name, dir_dev, listing, want) in [
            ("same device", 1, vec![], true),
            ("another device, empty (not mounted)", 2, vec![], false),
            ("another device, its files too", 2, vec![file(2)], false),
            (
                "another device, a file on the mark's",
                2,
                vec![file(2), file(1)],
                true,
            ),
        ] {
            assert_eq!(may_hold(dir_dev, &listing, 1), want, "{name}");
        }
        let seen = |offset, length| FileMark {
            length,
            ..mark(offset, None)
        };
        for (name, m, want) in [
            ("read to its end", seen(50, Some(50)), false),
            ("empty", seen(0, Some(0)), false),
            ("truncated since", seen(50, Some(10)), false),
            ("lines unread", seen(50, Some(51)), true),
            ("length unknown", seen(50, None), true),
        ] {
            assert_eq!(unread_when_gone(&m), want, "{name}");
        }
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

    /// The queue gets a line's event straight from its bytes: exactly what encoding the event
    /// gives, for any line (short, long, escaped, non-ASCII, invalid UTF-8, a piece) and path;
    /// a JSON object line (in a JSON file) as the same JSON, its object's bytes as read.
    #[test]
    fn a_line_event_is_encoded_as_the_event_would_be() {
        let long = "x".repeat(70_000);
        let texts: Vec<&[u8]> = vec![
            b"",
            b"plain text",
            b"{\"json\":\"inside\",\"n\":[1,2]}",
            concat!(
                " ",
                r#"{"z": 1.50, "a":"\u00e9 é \\\"","n":{"y":[true,null]}}"#,
                "\t"
            )
            .as_bytes(),
            b"tab\there \"quoted\" back\\slash \x01 \x7f",
            "non-ASCII: é 日本 😀 \u{2028}".as_bytes(),
            b"invalid \xff\xfe UTF-8 \xe6\x97",
            long.as_bytes(),
        ];
        let paths = [
            Path::new("/var/log/app.log"),
            Path::new("/tmp/with \"quote\" and \\ é.log"),
        ];
        for text in &texts {
            let is_object = crate::json::object(text).is_ok();
            for path in paths {
                for (continued, object) in [(false, false), (true, false), (false, is_object)] {
                    for (seq, start) in [
                        (0u64, 0u64),
                        (9, 10),
                        (99, 100),
                        (1_000_001, 4_294_967_296),
                        (9_007_199_254_740_993, u64::MAX / 3),
                    ] {
                        let line = Line {
                            start,
                            end: start + text.len() as u64 + 1,
                            bytes: text.to_vec(),
                            continued,
                            object,
                        };
                        let event = line_event("log", path, &line);
                        assert_eq!(event.fields.contains_key("data"), object);
                        let mut want = Vec::new();
                        uplink_protocol::batch::encode_line(
                            &mut want,
                            seq,
                            &event.kind,
                            &event.fields,
                        );
                        want.pop();
                        let mut got = b"left alone".to_vec();
                        encode_line_event(&mut got, seq, "log", path, &line);
                        assert_eq!(&got[..10], b"left alone");
                        let got = &got[10..];
                        if !object {
                            assert_eq!(
                                String::from_utf8_lossy(got),
                                String::from_utf8_lossy(&want)
                            );
                            continue;
                        }
                        // The object's bytes as read, the same JSON as the event's.
                        let raw = crate::json::trim(text);
                        assert!(got.windows(raw.len()).any(|w| w == raw));
                        let value =
                            |b: &[u8]| serde_json::from_slice::<serde_json::Value>(b).unwrap();
                        assert_eq!(value(got), value(&want));
                        assert!(uplink_protocol::batch::parse_line(
                            std::str::from_utf8(got).unwrap()
                        )
                        .is_ok());
                    }
                }
            }
        }
    }

    /// What the in-memory sink does at its next append, to play a crash.
    #[derive(Debug, Default, Clone, Copy, PartialEq)]
    enum Crash {
        #[default]
        None,
        /// The checkpoint is written, then the process dies before the records.
        BeforeRecords,
        /// The records are in, then the process dies before `append` returns.
        AfterRecords,
    }

    /// A sink that holds events in memory, can be made full, and can play crashes.
    #[derive(Default)]
    struct Mem {
        events: Vec<(u64, Event)>,
        next_seq: u64,
        acked_through: Option<u64>,
        full: bool,
        /// Most events one append may carry.
        room: Option<usize>,
        crash: Crash,
    }

    fn digest(seq: u64, e: &Event) -> u64 {
        checkpoint::hash(format!("{seq} {} {:?}", e.kind, e.fields).as_bytes())
    }

    impl Sink for Mem {
        fn append(
            &mut self,
            events: &[Event],
            commit: &mut dyn FnMut(&crate::Intent) -> Result<(), SourceError>,
        ) -> Result<(), SourceError> {
            if self.full || self.room.is_some_and(|r| events.len() > r) {
                return Err(crate::SinkError::Full("test".into()).into());
            }
            let Some(last) = events.last() else {
                return Ok(());
            };
            let first = self.next_seq;
            let last_seq = first + events.len() as u64 - 1;
            commit(&crate::Intent {
                first_seq: first,
                last_seq,
                last_digest: digest(last_seq, last),
            })?;
            let crash = std::mem::take(&mut self.crash);
            if crash == Crash::BeforeRecords {
                return Err(crate::SinkError::Failed("killed".into()).into());
            }
            for (i, e) in events.iter().enumerate() {
                self.events.push((first + i as u64, e.clone()));
            }
            self.next_seq = last_seq + 1;
            if crash == Crash::AfterRecords {
                return Err(crate::SinkError::Failed("killed".into()).into());
            }
            Ok(())
        }

        fn lookup(
            &mut self,
            seq: u64,
            then: &mut dyn FnMut(Stored) -> Result<(), SourceError>,
        ) -> Result<(), SourceError> {
            let stored = match self.events.iter().find(|(s, _)| *s == seq) {
                Some((s, e)) => Stored::Present {
                    digest: digest(*s, e),
                },
                None if self.acked_through.is_some_and(|a| seq <= a) => Stored::Acked,
                None => Stored::Absent,
            };
            then(stored)
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
            .filter(|(_, e)| e.kind == "log")
            .map(|(_, e)| e.fields["line"].as_str().unwrap().to_owned())
            .collect()
    }

    fn group(pattern: String) -> Vec<FilesConfig> {
        vec![FilesConfig {
            paths: vec![pattern],
            kind: "log".into(),
            max_line_bytes: 1024,
            rotate_wait_secs: 5,
            format: Format::Text,
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
        let mut sink = Mem {
            room: Some(3),
            ..Default::default()
        };
        let mut t = Tailer::new(
            group(log.display().to_string()),
            d.path().join("ck"),
            opts,
            &mut sink,
        )
        .unwrap();
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
        let mut sink = Mem::default();
        let mut t = Tailer::new(
            group(format!("{}/app.log", d.path().display())),
            ck.clone(),
            opts,
            &mut sink,
        )
        .unwrap();
        drain(&mut t, &mut sink);
        assert_eq!(texts(&sink), ["a1", "a2", "a3", "a4"]);
        // Restart: the checkpoint is before the partial line, which is completed later.
        drop(t);
        let mut t = Tailer::new(
            group(format!("{}/app.log", d.path().display())),
            ck.clone(),
            opts,
            &mut sink,
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

    #[test]
    fn a_json_file_restarted_inside_an_over_long_line_goes_on_with_text_pieces() {
        use std::io::Write;
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("app.json");
        let ck = d.path().join("ck.json");
        let groups = vec![FilesConfig {
            paths: vec![log.display().to_string()],
            kind: "log".into(),
            max_line_bytes: 16,
            rotate_wait_secs: 5,
            format: Format::Json,
        }];
        let append = |s: &str| {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .unwrap();
            f.write_all(s.as_bytes()).unwrap();
        };
        // (restart inside the line, what is shipped): the same either way.
        for restart in [false, true] {
            let _ = std::fs::remove_file(&log);
            let _ = std::fs::remove_file(&ck);
            let mut sink = Mem::default();
            let mut t =
                Tailer::new(groups.clone(), ck.clone(), Default::default(), &mut sink).unwrap();
            // 17 bytes of the long line: a piece of 16 goes, the checkpoint is after it.
            append("{\"a\":1}\n0123456789abcdef{");
            drain(&mut t, &mut sink);
            if restart {
                drop(t);
                t = Tailer::new(groups.clone(), ck.clone(), Default::default(), &mut sink).unwrap();
            }
            // The rest of the over-long line is a JSON object on its own: still a piece.
            append("\"b\":2}\n{\"c\":3}\n");
            drain(&mut t, &mut sink);
            let got: Vec<(String, bool)> = sink
                .events
                .iter()
                .map(|(_, e)| match e.fields.get("line") {
                    Some(l) => (l.as_str().unwrap().to_owned(), false),
                    None => (e.fields["data"].to_string(), true),
                })
                .collect();
            let want = [
                ("{\"a\":1}", true),
                ("0123456789abcdef", false),
                ("{\"b\":2}", false),
                ("{\"c\":3}", true),
            ]
            .map(|(l, o)| (l.to_owned(), o));
            assert_eq!(got, want, "restart: {restart}");
            let ck: FilesCheckpoint = checkpoint::load(&ck).unwrap();
            assert_eq!(ck.files[0].not_json, 2, "restart: {restart}");
        }
    }

    /// Lines `l{from}..l{to}` appended to `path`.
    fn lines(path: &Path, range: std::ops::Range<u32>) {
        use std::io::Write;
        let text: String = range.map(|i| format!("l{i}\n")).collect();
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }

    /// What happens to the sink between the crash and the restart.
    #[derive(Debug, Clone, Copy)]
    enum Meanwhile {
        Nothing,
        /// The queue's recovery dropped the batch, torn by the crash.
        BatchTorn,
        /// The batch was dropped and another appender (`send`) got its sequence numbers.
        SeqReused,
        /// The batch went up and was acknowledged and deleted.
        Acked,
    }

    #[test]
    fn a_crash_anywhere_in_an_append_neither_repeats_nor_skips() {
        for (crash, meanwhile, settled_after) in [
            (Crash::BeforeRecords, Meanwhile::Nothing, false),
            (Crash::AfterRecords, Meanwhile::Nothing, true),
            (Crash::AfterRecords, Meanwhile::BatchTorn, false),
            (Crash::AfterRecords, Meanwhile::SeqReused, false),
            (Crash::BeforeRecords, Meanwhile::SeqReused, false),
            (Crash::AfterRecords, Meanwhile::Acked, true),
        ] {
            let case = format!("{crash:?} then {meanwhile:?}");
            let d = tempfile::tempdir().unwrap();
            let log = d.path().join("a.log");
            let ck = d.path().join("files.json");
            let cfg = || group(log.display().to_string());
            let mut sink = Mem::default();
            lines(&log, 0..10);
            let mut t = Tailer::new(cfg(), ck.clone(), TailOptions::default(), &mut sink).unwrap();
            drain(&mut t, &mut sink);
            let batch_start = std::fs::metadata(&log).unwrap().len();
            // The crash, in the append of l10..l20.
            lines(&log, 10..20);
            sink.crash = crash;
            assert!(t.poll(&mut sink).is_err(), "{case}");
            drop(t);
            let on_disk: FilesCheckpoint = checkpoint::load(&ck).unwrap();
            assert_eq!(on_disk.files[0].offset, batch_start, "{case}");
            let next = on_disk.next.expect("the batch is pending");
            assert_eq!(next.position.offset, std::fs::metadata(&log).unwrap().len());
            assert_eq!(next.last_seq, 19, "{case}");
            let in_sink = sink.events.len();
            match meanwhile {
                Meanwhile::Nothing => {}
                Meanwhile::BatchTorn => {
                    sink.events.truncate(10);
                    sink.next_seq = 10;
                }
                Meanwhile::SeqReused => {
                    sink.events.truncate(10);
                    sink.next_seq = 10;
                    let other = Event {
                        kind: "sent".into(),
                        fields: Default::default(),
                    };
                    sink.append_unchecked(&vec![other; 15]).unwrap();
                }
                Meanwhile::Acked => {
                    assert_eq!(in_sink, 20, "{case}");
                    sink.acked_through = Some(19);
                    sink.events.clear();
                }
            }
            let mut t = Tailer::new(cfg(), ck.clone(), TailOptions::default(), &mut sink).unwrap();
            let settled: FilesCheckpoint = checkpoint::load(&ck).unwrap();
            assert_eq!(settled.next, None, "{case}");
            let at = if settled_after {
                next.position.offset
            } else {
                batch_start
            };
            assert_eq!(settled.files[0].offset, at, "{case}");
            drain(&mut t, &mut sink);
            let mut want: Vec<String> = (0..20).map(|i| format!("l{i}")).collect();
            if matches!(meanwhile, Meanwhile::Acked) {
                want.drain(..); // everything went up before the restart
            }
            assert_eq!(texts(&sink), want, "{case}");
        }
    }

    #[test]
    fn a_checkpointed_inode_with_other_first_bytes_is_read_from_its_beginning() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("a.log");
        let ck = d.path().join("files.json");
        lines(&log, 0..100);
        let meta = std::fs::metadata(&log).unwrap();
        // A checkpoint for this inode, but fingerprinted from another file's first bytes: what
        // a deleted file leaves behind when its inode goes to a new one.
        let stale = |first: &[u8]| FilesCheckpoint {
            format: checkpoint::FORMAT,
            files: vec![FileMark {
                dev: meta.dev(),
                ino: meta.ino(),
                offset: 50,
                path: log.display().to_string(),
                fingerprint: Some(Fingerprint::of(first)),
                not_json: 0,
                renamed_to: None,
                length: None,
                born: None,
            }],
            next: None,
            lost: Vec::new(),
            not_json_let_go: 0,
        };
        let mut other = Vec::new();
        lines(&d.path().join("old"), 1000..1020);
        other.extend_from_slice(&std::fs::read(d.path().join("old")).unwrap()[..50]);
        let mine = std::fs::read(&log).unwrap()[..50].to_vec();
        for (first, want_from) in [(&other[..], 0), (&mine[..], 50)] {
            checkpoint::store(&ck, &stale(first)).unwrap();
            let mut sink = Mem::default();
            let cfg = group(log.display().to_string());
            let mut t = Tailer::new(cfg, ck.clone(), TailOptions::default(), &mut sink).unwrap();
            drain(&mut t, &mut sink);
            let got = sink.events.first().map(|(_, e)| e.fields["offset"].clone());
            assert_eq!(got, Some(want_from.into()));
        }
    }

    /// How a checkpointed file leaves its glob before the restart that must finish it.
    #[derive(Debug, Clone, Copy)]
    enum Away {
        /// Renamed while the sensor ran (part of it read after), then the sensor stopped.
        RotatedRunning,
        /// Renamed while the sensor was stopped.
        RotatedStopped,
        /// Deleted while the sensor was stopped, part of it unread.
        Deleted,
        /// The configuration no longer names it.
        Unconfigured,
    }

    #[test]
    fn a_file_rotated_away_is_read_to_its_end_after_a_restart() {
        for away in [
            Away::RotatedRunning,
            Away::RotatedStopped,
            Away::Deleted,
            Away::Unconfigured,
        ] {
            let d = tempfile::tempdir().unwrap();
            let log = d.path().join("app.log");
            let old = d.path().join("app.log.1");
            let ck = d.path().join("files.json");
            // Reads of two lines, polls of four.
            let opts = TailOptions {
                chunk_bytes: 6,
                batch_lines: 3,
                rotate_wait: Some(Duration::ZERO),
                ..Default::default()
            };
            let mut sink = Mem::default();
            lines(&log, 0..10);
            let mut t = Tailer::new(
                group(log.display().to_string()),
                ck.clone(),
                opts,
                &mut sink,
            )
            .unwrap();
            assert_eq!(t.poll(&mut sink).unwrap(), Poll::More);
            assert_eq!(texts(&sink), ["l0", "l1", "l2", "l3"], "{away:?}");
            match away {
                Away::RotatedRunning => {
                    std::fs::rename(&log, &old).unwrap();
                    lines(&log, 100..103);
                    assert_eq!(t.poll(&mut sink).unwrap(), Poll::More);
                    drop(t);
                }
                Away::RotatedStopped => {
                    drop(t);
                    std::fs::rename(&log, &old).unwrap();
                    lines(&log, 100..103);
                }
                Away::Deleted => {
                    drop(t);
                    std::fs::remove_file(&log).unwrap();
                    lines(&log, 100..103);
                }
                Away::Unconfigured => drop(t),
            }
            let cfg = match away {
                Away::Unconfigured => group(d.path().join("other.log").display().to_string()),
                _ => group(log.display().to_string()),
            };
            let mut t = Tailer::new(cfg, ck.clone(), opts, &mut sink).unwrap();
            drain(&mut t, &mut sink);
            let mut got = texts(&sink);
            got.sort_by_key(|l| l[1..].parse::<u32>().unwrap());
            let (old_lines, new_lines) = match away {
                Away::RotatedRunning | Away::RotatedStopped => (0..10, 100..103),
                Away::Deleted => (0..4, 100..103),
                Away::Unconfigured => (0..4, 0..0),
            };
            let want: Vec<String> = old_lines
                .chain(new_lines)
                .map(|i| format!("l{i}"))
                .collect();
            assert_eq!(got, want, "{away:?}");
            // The rotated file was let go once read; the one deleted is reported lost.
            let on_disk: FilesCheckpoint = checkpoint::load(&ck).unwrap();
            let live = match away {
                Away::Unconfigured => 0,
                _ => 1,
            };
            assert_eq!(on_disk.files.len(), live, "{away:?}");
            let lost: Vec<(String, u64)> = on_disk
                .lost
                .iter()
                .map(|m| (m.path.clone(), m.offset))
                .collect();
            let want_lost = match away {
                Away::Deleted => vec![(log.display().to_string(), 12)],
                _ => vec![],
            };
            assert_eq!(lost, want_lost, "{away:?}");
            // A second restart changes nothing.
            drop(t);
            let before = sink.events.len();
            let mut t = Tailer::new(
                group(log.display().to_string()),
                ck.clone(),
                opts,
                &mut sink,
            )
            .unwrap();
            drain(&mut t, &mut sink);
            if !matches!(away, Away::Unconfigured) {
                assert_eq!(sink.events.len(), before, "{away:?}");
            }
        }
    }

    #[test]
    fn the_not_json_count_of_a_rotated_file_stays_after_it_is_let_go() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("app.json");
        let ck = d.path().join("files.json");
        let groups = vec![FilesConfig {
            paths: vec![log.display().to_string()],
            kind: "log".into(),
            max_line_bytes: 1024,
            rotate_wait_secs: 5,
            format: Format::Json,
        }];
        let opts = TailOptions {
            rotate_wait: Some(Duration::ZERO),
            ..Default::default()
        };
        std::fs::write(&log, "{\"a\":1}\nnot json\n[1]\n").unwrap();
        let mut sink = Mem::default();
        let mut t = Tailer::new(groups.clone(), ck.clone(), opts, &mut sink).unwrap();
        drain(&mut t, &mut sink);
        std::fs::rename(&log, d.path().join("app.json.1")).unwrap();
        std::fs::write(&log, "also not\n").unwrap();
        drain(&mut t, &mut sink);
        let on_disk: FilesCheckpoint = checkpoint::load(&ck).unwrap();
        assert_eq!(on_disk.files.len(), 1);
        assert_eq!((on_disk.files[0].not_json, on_disk.not_json_let_go), (1, 2));
        // And across a restart.
        drop(t);
        let mut t = Tailer::new(groups, ck.clone(), opts, &mut sink).unwrap();
        drain(&mut t, &mut sink);
        let on_disk: FilesCheckpoint = checkpoint::load(&ck).unwrap();
        assert_eq!(on_disk.not_json_let_go, 2);
    }

    /// A checkpoint with one mark (`offset`, first bytes `first`, `length`) for the inode of `at`,
    /// logged under `path`.
    fn checkpoint_for(
        at: &Path,
        path: &Path,
        offset: u64,
        first: Option<&[u8]>,
        length: Option<u64>,
    ) -> FilesCheckpoint {
        let meta = std::fs::metadata(at).unwrap();
        FilesCheckpoint {
            format: checkpoint::FORMAT,
            files: vec![FileMark {
                dev: meta.dev(),
                ino: meta.ino(),
                offset,
                path: path.display().to_string(),
                fingerprint: first.map(Fingerprint::of),
                not_json: 0,
                renamed_to: None,
                length,
                born: None,
            }],
            next: None,
            lost: Vec::new(),
            not_json_let_go: 0,
        }
    }

    /// T1: a mark with nothing to compare (nothing read yet, or format 1) is not taken for
    /// whatever file has its inode now (here a compressed rotation): nothing of it is shipped
    /// under the mark's name. Gone with nothing unread, it is forgotten; of format 1 (length
    /// unknown), reported lost.
    #[test]
    fn a_mark_with_nothing_to_compare_is_not_found_again_in_another_file() {
        for (name, offset, first, length, want_lost) in [
            ("nothing read yet", 0, Some(&b""[..]), Some(0), false),
            ("format 1", 3, None, None, true),
        ] {
            let d = tempfile::tempdir().unwrap();
            let log = d.path().join("app.log");
            let gz = d.path().join("app.log.2.gz");
            let ck = d.path().join("files.json");
            std::fs::write(&gz, b"\x1f\x8b\x08\x00binary\nnot lines\n").unwrap();
            checkpoint::store(&ck, &checkpoint_for(&gz, &log, offset, first, length)).unwrap();
            lines(&log, 100..102);
            let mut sink = Mem::default();
            let mut t = Tailer::new(
                group(log.display().to_string()),
                ck.clone(),
                TailOptions::default(),
                &mut sink,
            )
            .unwrap();
            drain(&mut t, &mut sink);
            assert_eq!(texts(&sink), ["l100", "l101"], "{name}");
            let on_disk: FilesCheckpoint = checkpoint::load(&ck).unwrap();
            assert_eq!(on_disk.files.len(), 1, "{name}");
            assert_eq!(on_disk.lost.len(), usize::from(want_lost), "{name}");
        }
    }

    /// T1: logrotate's `create` leaves an empty app.log, checkpointed with nothing read; lines
    /// written to it while the sensor is stopped, then rotated away, are read after the restart
    /// when the filesystem keeps birth times (it is told from another file by its birth time).
    #[test]
    fn an_empty_file_rotated_away_while_stopped_is_found_again_by_its_birth_time() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("app.log");
        let ck = d.path().join("files.json");
        std::fs::write(&log, b"").unwrap();
        // Checkpointed with the other file's lines.
        lines(&d.path().join("other.log"), 50..51);
        let cfg = group(d.path().join("*.log").display().to_string());
        let opts = TailOptions {
            rotate_wait: Some(Duration::ZERO),
            ..Default::default()
        };
        let mut sink = Mem::default();
        let mut t = Tailer::new(cfg.clone(), ck.clone(), opts, &mut sink).unwrap();
        drain(&mut t, &mut sink);
        let on_disk: FilesCheckpoint = checkpoint::load(&ck).unwrap();
        assert!(on_disk
            .files
            .iter()
            .any(|m| m.path == log.display().to_string()));
        drop(t);
        lines(&log, 0..3);
        std::fs::rename(&log, d.path().join("app.log.1")).unwrap();
        lines(&log, 100..101);
        let mut t = Tailer::new(cfg.clone(), ck.clone(), opts, &mut sink).unwrap();
        drain(&mut t, &mut sink);
        let mut got = texts(&sink);
        got.sort();
        let has_btime = born_of(&std::fs::metadata(&log).unwrap()).is_some();
        if has_btime {
            assert_eq!(got, ["l0", "l1", "l100", "l2", "l50"]);
        } else {
            assert_eq!(got, ["l100", "l50"]);
        }
        let on_disk: FilesCheckpoint = checkpoint::load(&ck).unwrap();
        assert!(on_disk.lost.is_empty());
    }

    /// T2: a file read to its end, then deleted while the sensor was stopped, lost nothing.
    #[test]
    fn a_file_read_to_its_end_then_deleted_is_not_reported_lost() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("app.log");
        let ck = d.path().join("files.json");
        lines(&log, 0..10);
        let mut sink = Mem::default();
        let cfg = group(log.display().to_string());
        let mut t =
            Tailer::new(cfg.clone(), ck.clone(), TailOptions::default(), &mut sink).unwrap();
        drain(&mut t, &mut sink);
        drop(t);
        std::fs::remove_file(&log).unwrap();
        lines(&log, 100..102);
        let mut t = Tailer::new(cfg, ck.clone(), TailOptions::default(), &mut sink).unwrap();
        drain(&mut t, &mut sink);
        assert_eq!(texts(&sink).len(), 12);
        let on_disk: FilesCheckpoint = checkpoint::load(&ck).unwrap();
        assert_eq!(on_disk.files.len(), 1);
        assert!(on_disk.lost.is_empty(), "{:?}", on_disk.lost);
    }

    /// T3: a directory that cannot be listed at a restart (here: not there, as a mount not
    /// mounted yet) is not "every file deleted": its marks stay, nothing is reported lost, and
    /// once it is back its files go on from their checkpoints (nothing read twice).
    #[test]
    fn a_directory_that_cannot_be_listed_keeps_its_files_checkpoints() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("logs");
        let aside = d.path().join("aside");
        std::fs::create_dir(&dir).unwrap();
        let log = dir.join("app.log");
        let ck = d.path().join("files.json");
        lines(&log, 0..10);
        let mut sink = Mem::default();
        let cfg = group(log.display().to_string());
        let mut t =
            Tailer::new(cfg.clone(), ck.clone(), TailOptions::default(), &mut sink).unwrap();
        drain(&mut t, &mut sink);
        drop(t);
        std::fs::rename(&dir, &aside).unwrap();
        let mut t = Tailer::new(cfg, ck.clone(), TailOptions::default(), &mut sink).unwrap();
        drain(&mut t, &mut sink);
        drain(&mut t, &mut sink);
        let on_disk: FilesCheckpoint = checkpoint::load(&ck).unwrap();
        assert_eq!(on_disk.files.len(), 1, "the mark is kept");
        assert!(on_disk.lost.is_empty(), "{:?}", on_disk.lost);
        std::fs::rename(&aside, &dir).unwrap();
        lines(&log, 10..12);
        drain(&mut t, &mut sink);
        let got = texts(&sink);
        let want: Vec<String> = (0..12).map(|i| format!("l{i}")).collect();
        assert_eq!(got, want);
    }

    thread_local! {
        /// A path [`follow`] fails on (an I/O error the tests cannot cause for real).
        pub(super) static FAIL_FOLLOW: std::cell::RefCell<Option<PathBuf>> =
            const { std::cell::RefCell::new(None) };
    }

    /// T4: an error on one file at a scan loses no mark: the file that failed keeps its mark
    /// (tried again at the next scan), and one found gone before it is recorded, not dropped.
    /// Same for a file found again by its inode.
    #[test]
    fn an_error_on_one_file_drops_no_mark() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a.log");
        let b = d.path().join("b.log");
        let c = d.path().join("c.log");
        let ck = d.path().join("files.json");
        lines(&a, 0..10);
        lines(&b, 0..10);
        lines(&c, 0..10);
        // a.log: another file on the inode; b.log: 2 lines read; c.log: rotated away, 2 read.
        let mut marks = checkpoint_for(&a, &a, 5, Some(b"other"), Some(20));
        marks
            .files
            .extend(checkpoint_for(&b, &b, 6, Some(b"l0\nl1\n"), Some(20)).files);
        marks
            .files
            .extend(checkpoint_for(&c, &c, 6, Some(b"l0\nl1\n"), Some(20)).files);
        checkpoint::store(&ck, &marks).unwrap();
        std::fs::rename(&c, d.path().join("c.log.1")).unwrap();
        let groups = vec![FilesConfig {
            paths: vec![
                a.display().to_string(),
                b.display().to_string(),
                c.display().to_string(),
            ],
            ..group(String::new()).remove(0)
        }];
        let opts = TailOptions {
            rotate_wait: Some(Duration::ZERO),
            ..Default::default()
        };
        let mut sink = Mem::default();
        let mut t = Tailer::new(groups, ck.clone(), opts, &mut sink).unwrap();
        let id = |m: &FileMark| FileId {
            dev: m.dev,
            ino: m.ino,
        };
        FAIL_FOLLOW.with(|f| *f.borrow_mut() = Some(b.clone()));
        assert!(t.poll(&mut sink).is_err());
        assert!(
            t.marks.contains_key(&id(&marks.files[1])),
            "b.log's mark kept"
        );
        let lost: Vec<&str> = t.lost.iter().map(|m| m.path.as_str()).collect();
        assert_eq!(lost, [a.display().to_string()], "a.log's old mark recorded");
        FAIL_FOLLOW.with(|f| *f.borrow_mut() = Some(c.clone()));
        t.poll(&mut sink).unwrap();
        assert!(
            t.marks.contains_key(&id(&marks.files[2])),
            "c.log's mark kept"
        );
        let on_disk: FilesCheckpoint = checkpoint::load(&ck).unwrap();
        assert!(on_disk
            .files
            .iter()
            .any(|m| m.path == c.display().to_string()));
        FAIL_FOLLOW.with(|f| *f.borrow_mut() = None);
        drain(&mut t, &mut sink);
        let from = |p: &Path| -> Vec<u64> {
            sink.events
                .iter()
                .filter(|(_, e)| e.fields["path"] == p.display().to_string())
                .map(|(_, e)| e.fields["offset"].as_u64().unwrap())
                .collect()
        };
        assert_eq!(from(&a).len(), 10, "a.log: another file, read from 0");
        assert_eq!(from(&b).first(), Some(&6), "b.log goes on from its mark");
        assert_eq!(from(&b).len(), 8);
        assert_eq!(from(&c).first(), Some(&6), "c.log.1 goes on from its mark");
        assert_eq!(from(&c).len(), 8);
        assert!(t.marks.is_empty());
    }

    /// The count of lines shipped as text of a file gone (lost) or forgotten (no longer
    /// configured) stays in `not_json_let_go`.
    #[test]
    fn the_not_json_count_of_a_file_gone_or_forgotten_stays() {
        let d = tempfile::tempdir().unwrap();
        let gone = d.path().join("gone.json");
        let unconfigured = d.path().join("old").join("x.json");
        let ck = d.path().join("state").join("files.json");
        std::fs::write(&gone, "{}\n").unwrap();
        let mut marks = checkpoint_for(&gone, &gone, 3, Some(b"{}\n"), Some(9));
        marks
            .files
            .extend(checkpoint_for(&gone, &unconfigured, 3, Some(b"{}\n"), Some(3)).files);
        marks.files[0].not_json = 2;
        marks.files[1].not_json = 3;
        marks.files[1].ino += 1;
        checkpoint::store(&ck, &marks).unwrap();
        std::fs::remove_file(&gone).unwrap();
        let mut sink = Mem::default();
        let cfg = group(d.path().join("*.json").display().to_string());
        let mut t = Tailer::new(cfg, ck.clone(), TailOptions::default(), &mut sink).unwrap();
        drain(&mut t, &mut sink);
        let on_disk: FilesCheckpoint = checkpoint::load(&ck).unwrap();
        assert!(on_disk.files.is_empty());
        assert_eq!(on_disk.lost.len(), 1);
        assert_eq!(on_disk.not_json_let_go, 5);
    }
}
