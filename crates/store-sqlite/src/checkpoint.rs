//! Checkpoints off the commit path (issue #28).
//!
//! In WAL mode every commit appends pages to `uplink.db-wal`; a checkpoint copies them back
//! into `uplink.db` so that the WAL can start over from its beginning. SQLite's default runs
//! that checkpoint inside the commit that crosses 1,000 pages, so every few dozen groups one
//! commit (and every batch waiting on it) took 40–70 ms instead of ~16. Here the writer's
//! connection does not checkpoint at all (`wal_autocheckpoint=0`, then our own WAL hook, which
//! only records how many frames the WAL holds); after each commit the writer tells this
//! checkpointer that number when it is past [`CheckpointBounds::passive_frames`], and the
//! checkpointer, on its own thread and connection:
//! - runs a `PASSIVE` checkpoint: it copies what is committed while the writer keeps
//!   appending, never waits for the writer or for readers;
//! - past [`CheckpointBounds::restart_frames`] (passive passes could not catch up, e.g. a
//!   reader holds an old snapshot, or the writer never pauses), runs a `RESTART` checkpoint:
//!   that one waits (the busy timeout) for the commit in progress and for readers of the old
//!   frames, so the next commit writes the WAL from its beginning again. The passive passes
//!   before it have already copied most frames, so the writer waits for little.
//!
//! The WAL file is bounded too: `journal_size_limit` truncates it back to the restart bound
//! when the WAL starts over after it grew past it. What this does not do: a reader that holds
//! one snapshot for longer than the busy timeout (a long export) still keeps the WAL from
//! starting over while it reads; the restart is tried again at the next commit.
//!
//! Durability is unchanged: commits are on disk (the WAL fsynced, `synchronous=FULL`) before
//! they are answered; a checkpoint only moves committed pages and fsyncs the database file.
//! The thread stops when the writer that feeds it stops (with the store, or after a failed
//! commit; the next writer starts a new one).

use std::cell::Cell;
use std::os::raw::c_int;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use rusqlite::Connection;

/// When the checkpointer copies the WAL back, in WAL frames (one frame per page written; the
/// store's pages are 16 KiB, 4 KiB in stores created before format 14).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointBounds {
    /// A passive checkpoint starts once the WAL holds this many frames after a commit.
    pub passive_frames: u32,
    /// Past this many frames, the checkpointer restarts the WAL (waiting for the writer and
    /// readers); also the size, in pages, the WAL file is truncated back to.
    pub restart_frames: u32,
}

impl Default for CheckpointBounds {
    /// SQLite's own auto-checkpoint bound (16 MiB of WAL with 16 KiB pages), and four times
    /// that before the writer is made to wait.
    fn default() -> Self {
        CheckpointBounds {
            passive_frames: 1000,
            restart_frames: 4000,
        }
    }
}

/// What the checkpointer does for a WAL of `frames` frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Nothing,
    Passive,
    /// A passive pass first (it copies without blocking anyone), then a restart.
    Restart,
}

pub(crate) fn action(frames: u32, bounds: CheckpointBounds) -> Action {
    if frames >= bounds.restart_frames.max(bounds.passive_frames) {
        Action::Restart
    } else if frames >= bounds.passive_frames {
        Action::Passive
    } else {
        Action::Nothing
    }
}

/// How many checkpoints ran, for tests and diagnostics.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub passive: AtomicU64,
    pub restart: AtomicU64,
    pub failed: AtomicU64,
}

/// How many checkpoints the store's checkpointer ran since the store was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CheckpointStats {
    pub passive: u64,
    pub restart: u64,
    /// Checkpoints that returned an error (logged nowhere else: the next commit tries again).
    pub failed: u64,
}

impl Counters {
    pub(crate) fn stats(&self) -> CheckpointStats {
        CheckpointStats {
            passive: self.passive.load(Ordering::Relaxed),
            restart: self.restart.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }
}

thread_local! {
    /// The WAL's size in frames after the last commit on this thread's connection (the hook
    /// runs on the committing thread, inside the commit).
    static WAL_FRAMES: Cell<u32> = const { Cell::new(0) };
}

fn note_frames(_: &rusqlite::hooks::Wal, frames: c_int) -> rusqlite::Result<()> {
    WAL_FRAMES.with(|f| f.set(u32::try_from(frames).unwrap_or(0)));
    Ok(())
}

/// Makes `conn` (the writer's) stop checkpointing in its commits and record the WAL's size
/// instead; bounds the WAL file's size once it starts over.
pub(crate) fn take_over(
    conn: &Connection,
    bounds: CheckpointBounds,
    page_size: u32,
) -> rusqlite::Result<()> {
    // The pragma first: it replaces the WAL hook (SQLite's auto-checkpoint is a WAL hook), so
    // ours, set after it, is the one that stays.
    conn.execute_batch(&format!(
        "PRAGMA wal_autocheckpoint=0; PRAGMA journal_size_limit={};",
        u64::from(bounds.restart_frames) * u64::from(page_size.max(512))
    ))?;
    conn.wal_hook(Some(note_frames));
    Ok(())
}

/// The writer's side: after each commit, wakes the checkpointer if the WAL needs one.
pub(crate) struct Trigger {
    tx: mpsc::SyncSender<u32>,
    bounds: CheckpointBounds,
}

impl Trigger {
    /// Called by the writer thread after a commit (not in a loop: once per group).
    pub(crate) fn after_commit(&self) {
        let frames = WAL_FRAMES.with(|f| f.replace(0));
        if action(frames, self.bounds) != Action::Nothing {
            // At most one wake-up waits: a checkpoint in progress covers the commits made
            // meanwhile at its next pass.
            let _ = self.tx.try_send(frames);
        }
    }
}

/// Starts the checkpointer thread on its own connection (from `open`); it ends when the
/// returned [`Trigger`] is dropped.
pub(crate) fn start(
    path: &Path,
    conn: Connection,
    bounds: CheckpointBounds,
    counters: Arc<Counters>,
) -> std::io::Result<(Trigger, std::thread::JoinHandle<()>)> {
    let (tx, rx) = mpsc::sync_channel::<u32>(1);
    let path: PathBuf = path.to_path_buf();
    let handle = std::thread::Builder::new()
        .name("uplink-store-ckpt".into())
        .spawn(move || run(conn, path, bounds, rx, counters))?;
    Ok((Trigger { tx, bounds }, handle))
}

fn run(
    conn: Connection,
    path: PathBuf,
    bounds: CheckpointBounds,
    rx: mpsc::Receiver<u32>,
    counters: Arc<Counters>,
) {
    // This connection only checkpoints; it never writes, so it has nothing to checkpoint in
    // its own commits either.
    let _ = conn.execute_batch("PRAGMA wal_autocheckpoint=0");
    let checkpoint = |mode: &str| -> rusqlite::Result<(i64, i64, i64)> {
        conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
    };
    while let Ok(frames) = rx.recv() {
        let todo = action(frames, bounds);
        if todo == Action::Nothing {
            continue;
        }
        match checkpoint("PASSIVE") {
            Ok(_) => {
                counters.passive.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                eprintln!(
                    "uplink: store {}: a passive checkpoint failed ({e}); the next commit tries again",
                    path.display()
                );
                continue;
            }
        }
        if todo == Action::Restart {
            // (busy, frames in the WAL, frames copied): busy when the busy timeout passed
            // with a reader still on old frames; the next commit past the bound tries again.
            match checkpoint("RESTART") {
                Ok((0, _, _)) => {
                    counters.restart.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {
                    counters.failed.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    counters.failed.fetch_add(1, Ordering::Relaxed);
                    eprintln!(
                        "uplink: store {}: the WAL holds {frames} frames and could not be restarted ({e}); the next commit tries again",
                        path.display()
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_by_wal_size() {
        let b = CheckpointBounds {
            passive_frames: 10,
            restart_frames: 40,
        };
        let inverted = CheckpointBounds {
            passive_frames: 10,
            restart_frames: 5,
        };
        for (frames, bounds, want) in [
            (0, b, Action::Nothing),
            (9, b, Action::Nothing),
            (10, b, Action::Passive),
            (39, b, Action::Passive),
            (40, b, Action::Restart),
            (u32::MAX, b, Action::Restart),
            // A restart bound below the passive one: restart from the passive bound.
            (9, inverted, Action::Nothing),
            (10, inverted, Action::Restart),
        ] {
            assert_eq!(action(frames, bounds), want, "{frames} frames, {bounds:?}");
        }
    }
}
