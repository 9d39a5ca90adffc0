//! Checkpoints off the commit path (issue #28).
//!
//! In WAL mode every commit appends pages to `uplink.db-wal`; a checkpoint copies them back
//! into `uplink.db` so that the WAL can start over from its beginning. SQLite's default runs
//! that checkpoint inside the commit that crosses 1,000 pages, so every few dozen groups one
//! commit (and every batch waiting on it) took 40–70 ms instead of ~16. Here the writer's
//! connection does not checkpoint at all (`wal_autocheckpoint=0`, then our own WAL hook, which
//! only records how many frames the WAL holds); after each commit the writer tells this
//! checkpointer that number when it is past [`CheckpointBounds::passive_frames`], and the
//! checkpointer, on its own thread and connection, runs a `PASSIVE` checkpoint: it copies what
//! is committed while the writer keeps appending, and never waits for the writer or readers.
//!
//! Passive passes alone do not bound the WAL under a steady load: the WAL starts over from its
//! beginning only when a write transaction starts with every frame copied back, and a writer
//! that keeps committing always has a few frames ahead of the last pass (measured: the WAL grew
//! to 130 MB). So past [`CheckpointBounds::restart_frames`], the writer itself, after its
//! commit, runs a `RESTART` checkpoint: it copies the frames the passes have not copied yet (a
//! commit or two, as the passes follow each commit) and waits at most [`RESTART_WAIT`] for
//! readers of old frames; then its next commit writes the WAL from the start. A `RESTART` run
//! by the checkpointer instead was measured worse: it waits for the writer's lock, and the
//! writer then waits for it, each in SQLite's busy handler's sleeps (ingests of 300–750 ms).
//!
//! The WAL file is bounded too: `journal_size_limit` truncates it back to the restart bound
//! when the WAL starts over after it grew past it. What this does not do: a reader that holds
//! one snapshot for longer (a long export) keeps the WAL from starting over while it reads;
//! the restart is tried again once the WAL grew by another quarter of the bound.
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
use std::time::Duration;

use rusqlite::Connection;

/// When the checkpointer copies the WAL back, in WAL frames (one frame per page written; the
/// pages of a new store are 32 KiB; older stores keep theirs: 16 KiB if created at format 14
/// to 17 before issue #28's 32 KiB change, 4 KiB before format 14; `PRAGMA page_size` tells).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointBounds {
    /// A passive checkpoint starts once the WAL holds this many frames after a commit.
    pub passive_frames: u32,
    /// Past this many frames, the writer restarts the WAL after its commit (copying what the
    /// passive passes have not, waiting briefly for readers); also the size, in pages, the WAL
    /// file is truncated back to.
    pub restart_frames: u32,
}

impl Default for CheckpointBounds {
    /// SQLite's own auto-checkpoint bound (32 MiB of WAL with 32 KiB pages), and twice that
    /// before the writer restarts the WAL.
    fn default() -> Self {
        CheckpointBounds {
            passive_frames: 1000,
            restart_frames: 2000,
        }
    }
}

/// What the checkpointer does for a WAL of `frames` frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Nothing,
    Passive,
    /// A passive pass (the checkpointer) and a restart (the writer, after its commit).
    Restart,
}

/// `restart_at`: the WAL size the next restart waits for (the restart bound, or more after a
/// restart that found readers on old frames).
pub(crate) fn action(frames: u32, bounds: CheckpointBounds, restart_at: u32) -> Action {
    if frames >= bounds.restart_frames.max(restart_at) {
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
    pub busy: AtomicU64,
    pub failed: AtomicU64,
}

/// How many checkpoints the store's checkpointer ran since the store was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CheckpointStats {
    pub passive: u64,
    pub restart: u64,
    /// Restarts that found a pass running or a reader on old frames (tried again later).
    pub busy: u64,
    /// Checkpoints that returned an error (the next commit tries again).
    pub failed: u64,
}

impl Counters {
    pub(crate) fn stats(&self) -> CheckpointStats {
        CheckpointStats {
            passive: self.passive.load(Ordering::Relaxed),
            restart: self.restart.load(Ordering::Relaxed),
            busy: self.busy.load(Ordering::Relaxed),
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

/// How long the writer's restart waits for readers still on old frames (SQLite's busy
/// handler); then the next commit past the bound tries again.
pub(crate) const RESTART_WAIT: Duration = Duration::from_millis(20);

/// The writer's side: after each commit, wakes the checkpointer if the WAL needs a pass, and
/// restarts the WAL past the restart bound.
pub(crate) struct Trigger {
    tx: mpsc::SyncSender<u32>,
    bounds: CheckpointBounds,
    counters: Arc<Counters>,
    /// After a busy restart, the next one waits for the WAL to grow by a quarter of the bound:
    /// a reader that holds a snapshot (an export) would otherwise cost every commit the
    /// restart's wait.
    restart_at: std::cell::Cell<u32>,
}

impl Trigger {
    /// Called by the writer thread after a commit (once per group), on the writer's
    /// connection, outside any transaction. `busy_timeout` is the connection's usual one.
    pub(crate) fn after_commit(&self, conn: &Connection, busy_timeout: Duration) {
        let frames = WAL_FRAMES.with(|f| f.replace(0));
        let todo = action(frames, self.bounds, self.restart_at.get());
        if todo == Action::Nothing {
            return;
        }
        if todo == Action::Passive {
            // At most one wake-up waits: a pass in progress covers the commits made meanwhile
            // at its next pass.
            let _ = self.tx.try_send(frames);
            return;
        }
        // Past the restart bound, no pass is asked for: one still running makes this restart
        // busy (the checkpointer holds the checkpoint lock), and the next commit's succeeds.
        let restart = || -> rusqlite::Result<(i64, i64)> {
            conn.busy_timeout(RESTART_WAIT)?;
            let result = conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            });
            conn.busy_timeout(busy_timeout)?;
            result
        };
        let counter = match restart() {
            Ok((0, _)) => {
                self.restart_at.set(self.bounds.restart_frames);
                &self.counters.restart
            }
            // Busy without a WAL size (-1): the checkpointer's pass held the checkpoint lock
            // (SQLite gives up at once, without the busy wait). No back-off: this commit asked
            // for no pass, so the next commit's restart finds the lock free. Backing off here
            // let every retry meet the pass the commits in between asked for, and the WAL grew
            // under steady load.
            Ok((_, log)) if log < 0 => &self.counters.busy,
            // Busy with the WAL checkpointed as far as readers allow: a reader holds an old
            // snapshot (an export); wait for the WAL to grow by a quarter of the bound before
            // costing a commit the restart's wait again.
            Ok(_) => {
                let later = frames.saturating_add((self.bounds.restart_frames / 4).max(1));
                self.restart_at.set(later);
                &self.counters.busy
            }
            Err(_) => &self.counters.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
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
    let trigger = Trigger {
        tx,
        bounds,
        counters: counters.clone(),
        restart_at: std::cell::Cell::new(bounds.restart_frames),
    };
    let handle = std::thread::Builder::new()
        .name("uplink-store-ckpt".into())
        .spawn(move || run(conn, path, rx, counters))?;
    Ok((trigger, handle))
}

fn run(conn: Connection, path: PathBuf, rx: mpsc::Receiver<u32>, counters: Arc<Counters>) {
    // This connection only checkpoints; it never writes, so it has nothing to checkpoint in
    // its own commits either.
    let _ = conn.execute_batch("PRAGMA wal_autocheckpoint=0");
    while rx.recv().is_ok() {
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(0)) {
            Ok(_) => {
                counters.passive.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                eprintln!(
                    "uplink: store {}: a passive checkpoint failed ({e}); the next commit past the bound tries again",
                    path.display()
                );
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
        // No passive passes: the writer restarts the WAL alone (SQLite's own way, for
        // comparison).
        let inverted = CheckpointBounds {
            passive_frames: u32::MAX,
            restart_frames: 5,
        };
        for (frames, bounds, restart_at, want) in [
            (0, b, 40, Action::Nothing),
            (9, b, 40, Action::Nothing),
            (10, b, 40, Action::Passive),
            (39, b, 40, Action::Passive),
            (40, b, 40, Action::Restart),
            (u32::MAX, b, 40, Action::Restart),
            // After a busy restart at 40: passes until 50.
            (45, b, 50, Action::Passive),
            (50, b, 50, Action::Restart),
            // Never below the bound, whatever restart_at says.
            (39, b, 0, Action::Passive),
            (4, inverted, 5, Action::Nothing),
            (5, inverted, 5, Action::Restart),
        ] {
            assert_eq!(
                action(frames, bounds, restart_at),
                want,
                "{frames} frames, {bounds:?}, restart at {restart_at}"
            );
        }
    }
}
