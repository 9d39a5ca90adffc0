//! Running the sources (`uplink-sources`) beside the uploader.
//!
//! Sources write into the durable queue through [`QueueSink`] — the same encoding as `send`, and
//! their own queue handle (the queue's `flock` orders them with the uploader and with `send`). A
//! full queue answers `Full`: files and the journal pause (their data stays where it is) and
//! heartbeats are skipped and counted; inventory waits for room.
//!
//! They run on their own threads because file reads and `journalctl`'s pipe are blocking I/O and
//! the uploader's runtime is single-threaded: one thread for files, heartbeats and inventory, one
//! for the journal when it is configured. With `once`, each reads to its current end and says so
//! ([`SourcesHandle::done`]); the uploader drains after that.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use uplink_queue::{Queue, QueueError};
use uplink_sources::host::{self, Inventory};
use uplink_sources::journal::{Journal, JournalStopper};
use uplink_sources::tail::{Poll, TailOptions, Tailer};
use uplink_sources::{Event, Intent, Sink, SinkError, SourceError, Stored};

use crate::config::{Config, Paths};
use crate::status::{now_rfc3339, HeartbeatRecord, Status};

/// How often idle sources look for new lines.
const POLL: Duration = Duration::from_millis(250);
/// How long a paused source waits before offering its batch again.
const PAUSED: Duration = Duration::from_millis(100);
/// After an error (a file that cannot be read, journalctl failing), wait before trying again.
const ERROR_WAIT: Duration = Duration::from_secs(5);

/// The queue as a [`Sink`].
#[derive(Debug)]
pub struct QueueSink {
    pub queue: Queue,
    /// Set while an append fails for want of disk space, cleared by the next append that fits:
    /// the uploader reports it (`DISK_FULL` in status) while the sources wait.
    pub disk_full: Arc<AtomicBool>,
}

/// A queue error or the source's own (from its checkpoint callback), through the queue's calls.
enum Failure {
    Queue(QueueError),
    Source(SourceError),
}

impl From<QueueError> for Failure {
    fn from(e: QueueError) -> Failure {
        Failure::Queue(e)
    }
}

impl From<Failure> for SourceError {
    fn from(f: Failure) -> SourceError {
        match f {
            // The source's checkpoint (written under the queue's lock, before the records) found
            // no room: the batch was not queued; like a full queue, the source waits.
            Failure::Source(SourceError::Io { source, path })
                if uplink_queue::is_disk_full(&source) =>
            {
                SinkError::Full(format!("{}: {source}", path.display())).into()
            }
            Failure::Source(e) => e,
            Failure::Queue(e @ QueueError::Full { .. }) => SinkError::Full(e.to_string()).into(),
            // No room on the disk: like a full queue, the sources wait for uploads to free some.
            Failure::Queue(e) if e.is_disk_full() => SinkError::Full(e.to_string()).into(),
            Failure::Queue(e) => SinkError::Failed(e.to_string()).into(),
        }
    }
}

impl Sink for QueueSink {
    /// The queue's [`Queue::append_committing`]: the source's checkpoint is written under the
    /// queue's lock, after the batch is known to fit and before its records.
    fn append(
        &mut self,
        events: &[Event],
        commit: &mut dyn FnMut(&Intent) -> Result<(), SourceError>,
    ) -> Result<(), SourceError> {
        self.append_encoded(
            events.len(),
            |i, seq, out| {
                uplink_protocol::batch::encode_line(out, seq, &events[i].kind, &events[i].fields);
                out.pop(); // the queue stores lines without their newline
            },
            commit,
        )
    }

    /// Lines go into the queue's records straight from the file's bytes: no batch of events
    /// is built (the same bytes as `append` of their events).
    fn append_lines(
        &mut self,
        lines: &uplink_sources::tail::LineBatch<'_>,
        commit: &mut dyn FnMut(&Intent) -> Result<(), SourceError>,
    ) -> Result<(), SourceError> {
        self.append_encoded(
            lines.lines.len(),
            |i, seq, out| lines.encode(i, seq, out),
            commit,
        )
    }

    fn lookup(
        &mut self,
        seq: u64,
        then: &mut dyn FnMut(Stored) -> Result<(), SourceError>,
    ) -> Result<(), SourceError> {
        self.lookup_in_queue(seq, then)
    }
}

impl QueueSink {
    /// `count` events, the `i`th written by `encode(i, seq, out)` without its newline.
    fn append_encoded(
        &mut self,
        count: usize,
        encode: impl FnMut(usize, u64, &mut Vec<u8>),
        commit: &mut dyn FnMut(&Intent) -> Result<(), SourceError>,
    ) -> Result<(), SourceError> {
        let result = self.queue.append_committing(count, encode, |intent| {
            commit(&Intent {
                first_seq: intent.first_seq,
                last_seq: intent.last_seq,
                last_digest: intent.last_digest,
            })
            .map_err(Failure::Source)
        });
        match &result {
            Ok(_) => self.disk_full.store(false, Ordering::SeqCst),
            Err(Failure::Queue(e)) if e.is_disk_full() => {
                self.disk_full.store(true, Ordering::SeqCst)
            }
            // The checkpoint, written first, is on the same file system.
            Err(Failure::Source(SourceError::Io { source, .. }))
                if uplink_queue::is_disk_full(source) =>
            {
                self.disk_full.store(true, Ordering::SeqCst)
            }
            Err(_) => {}
        }
        result.map(|_| ()).map_err(SourceError::from)
    }

    fn lookup_in_queue(
        &mut self,
        seq: u64,
        then: &mut dyn FnMut(Stored) -> Result<(), SourceError>,
    ) -> Result<(), SourceError> {
        self.queue
            .lookup(seq, |stored| {
                then(match stored {
                    uplink_queue::Stored::Present { digest } => Stored::Present { digest },
                    uplink_queue::Stored::Acked => Stored::Acked,
                    uplink_queue::Stored::Absent => Stored::Absent,
                })
                .map_err(Failure::Source)
            })
            .map_err(SourceError::from)
    }
}

/// Running sources.
#[derive(Debug)]
pub struct SourcesHandle {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    threads: Vec<JoinHandle<()>>,
    journal: Arc<Mutex<Option<JournalStopper>>>,
    error: Arc<Mutex<Option<SourceError>>>,
    /// Heartbeats skipped because the queue was full.
    pub skipped_heartbeats: Arc<AtomicU64>,
    /// A source cannot queue for want of disk space (see [`QueueSink::disk_full`]).
    pub disk_full: Arc<AtomicBool>,
}

impl SourcesHandle {
    /// With `once`: every source has read to its end (or failed: see [`SourcesHandle::take_error`]).
    pub fn done(&self) -> bool {
        self.done.load(Ordering::SeqCst) == self.threads.len() as u64
    }

    /// The error that ended a source in `once` mode, if any.
    pub fn take_error(&self) -> Option<SourceError> {
        self.error.lock().ok().and_then(|mut e| e.take())
    }

    /// A handle with nothing running (what is left while sources restart).
    pub fn stopped() -> SourcesHandle {
        SourcesHandle {
            stop: Arc::new(AtomicBool::new(true)),
            done: Arc::new(AtomicU64::new(0)),
            threads: Vec::new(),
            journal: Arc::new(Mutex::new(None)),
            error: Arc::new(Mutex::new(None)),
            skipped_heartbeats: Arc::new(AtomicU64::new(0)),
            disk_full: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Stops every source (killing journalctl) and waits for the threads, which stop between
    /// batches: every checkpoint on disk matches what is in the queue.
    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(j) = self.journal.lock().ok().and_then(|mut j| j.take()) {
            j.stop();
        }
        for t in &self.threads {
            t.thread().unpark();
        }
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Sleeps up to `d`, waking early when `stop` is set: [`SourcesHandle::stop`] sets it and then
/// unparks every source thread, so an idle sensor wakes only when it has something to do (a poll,
/// a heartbeat), not every few milliseconds to look at the flag.
fn nap(stop: &AtomicBool, d: Duration) {
    let end = Instant::now() + d;
    while !stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        if now >= end {
            return;
        }
        // Spurious wake-ups are possible: the loop checks the flag and the time again.
        std::thread::park_timeout(end - now);
    }
}

/// Starts the configured sources.
pub fn spawn(
    paths: &Paths,
    config: &Config,
    once: bool,
) -> Result<SourcesHandle, crate::SensorError> {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let error: Arc<Mutex<Option<SourceError>>> = Arc::new(Mutex::new(None));
    // Counted over the sensor's life in this state directory (a restart or a reload goes on).
    let record = HeartbeatRecord::load(paths);
    let skipped = Arc::new(AtomicU64::new(record.skipped));
    let journal_stopper = Arc::new(Mutex::new(None));
    let mut threads = Vec::new();
    let dir = paths.sources_dir();
    let cfg = config.sources.clone();
    // A batch must fit in the queue with room to spare, or a small queue would never take one.
    let batch_bytes = ((config.queue.max_bytes / 4) as usize).clamp(4096, 1 << 20);
    let opts = TailOptions {
        batch_bytes,
        rotate_wait: once.then_some(Duration::ZERO),
        ..Default::default()
    };
    let disk_full = Arc::new(AtomicBool::new(false));
    let mut sink = QueueSink {
        queue: crate::open_queue(paths, config)?,
        disk_full: disk_full.clone(),
    };
    // Checkpoints a crash left are settled here, before the uploader starts (it starts after
    // `spawn` returns): a batch pending in them cannot have been acknowledged meanwhile. The
    // journal's too when it is not configured, so that a later run finds it settled.
    let tailer = Tailer::new(cfg.files.clone(), dir.join("files.json"), opts, &mut sink)
        .map_err(crate::SensorError::Source)?;
    uplink_sources::journal::reconcile(&dir.join("journal.json"), &mut sink)
        .map_err(crate::SensorError::Source)?;
    {
        let (stop, done, error, skipped) =
            (stop.clone(), done.clone(), error.clone(), skipped.clone());
        let paths = paths.clone();
        let heartbeat = (cfg.heartbeat_secs > 0).then(|| Duration::from_secs(cfg.heartbeat_secs));
        let inventory = (cfg.inventory_secs > 0).then(|| Duration::from_secs(cfg.inventory_secs));
        threads.push(
            std::thread::Builder::new()
                .name("sources".into())
                .stack_size(256 * 1024)
                .spawn(move || {
                    let mut w = FilesWorker {
                        sink,
                        tailer,
                        stop,
                        skipped,
                        paths,
                        record,
                        heartbeat,
                        inventory,
                        started: Instant::now(),
                    };
                    if let Err(e) = w.run(once) {
                        tracing::error!(code = %uplink_diag::Diagnose::code(&e), error = %e, "sources stopped");
                        if let Ok(mut slot) = error.lock() {
                            slot.get_or_insert(e);
                        }
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                })
                .map_err(|source| crate::SensorError::Io {
                    path: "<thread>".into(),
                    source,
                })?,
        );
    }
    if let Some(jcfg) = cfg.journal.clone() {
        let mut sink = QueueSink {
            queue: crate::open_queue(paths, config)?,
            disk_full: disk_full.clone(),
        };
        let (stop, done, error, js) = (
            stop.clone(),
            done.clone(),
            error.clone(),
            journal_stopper.clone(),
        );
        let ck = dir.join("journal.json");
        threads.push(
            std::thread::Builder::new()
                .name("journal".into())
                .stack_size(256 * 1024)
                .spawn(move || {
                    let result = (|| -> Result<(), SourceError> {
                        loop {
                            if stop.load(Ordering::SeqCst) {
                                return Ok(());
                            }
                            let mut j = Journal::start(&jcfg, ck.clone(), !once, &mut sink)?;
                            if let Ok(mut slot) = js.lock() {
                                *slot = Some(j.stopper());
                            }
                            loop {
                                if stop.load(Ordering::SeqCst) {
                                    return Ok(());
                                }
                                match j.pump(&mut sink)? {
                                    Poll::More => {}
                                    Poll::Paused => nap(&stop, PAUSED),
                                    Poll::Idle if j.ended() => break,
                                    Poll::Idle => {}
                                }
                            }
                            if let (true, Some(why)) = (once, j.failure()) {
                                return Err(SourceError::Journal(why.to_owned()));
                            }
                            if once {
                                return Ok(());
                            }
                            // journalctl -f ended by itself (journal rotated away, killed): again.
                            tracing::warn!("journalctl ended; starting it again after the last cursor");
                            nap(&stop, ERROR_WAIT);
                        }
                    })();
                    if let Err(e) = result {
                        tracing::error!(code = %uplink_diag::Diagnose::code(&e), error = %e, "journal source stopped");
                        if let Ok(mut slot) = error.lock() {
                            slot.get_or_insert(e);
                        }
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                })
                .map_err(|source| crate::SensorError::Io {
                    path: "<thread>".into(),
                    source,
                })?,
        );
    }
    Ok(SourcesHandle {
        stop,
        done,
        threads,
        journal: journal_stopper,
        error,
        skipped_heartbeats: skipped,
        disk_full,
    })
}

struct FilesWorker {
    sink: QueueSink,
    tailer: Tailer,
    stop: Arc<AtomicBool>,
    skipped: Arc<AtomicU64>,
    paths: Paths,
    record: HeartbeatRecord,
    heartbeat: Option<Duration>,
    inventory: Option<Duration>,
    started: Instant,
}

impl FilesWorker {
    fn heartbeat(&mut self) {
        let status = Status::load(&self.paths.status_file());
        let depth = self.sink.queue.depth().unwrap_or_default();
        let hb = crate::report::collect(
            &self.paths,
            &status,
            &crate::report::ReportState::load(&self.paths),
            (depth.events, depth.bytes),
            crate::report::Live {
                interval_secs: self.heartbeat.map_or(0, |d| d.as_secs()),
                skipped: self.skipped.load(Ordering::SeqCst),
                running_secs: self.started.elapsed().as_secs(),
                cert_renewal_failed: false,
            },
        );
        match self.sink.append_unchecked(&[host::heartbeat_event(&hb)]) {
            Ok(()) => {
                tracing::debug!("heartbeat queued");
                self.record.queued += 1;
                self.record.last_queued = Some(now_rfc3339());
            }
            Err(e) => {
                let n = self.skipped.fetch_add(1, Ordering::SeqCst) + 1;
                tracing::warn!(skipped = n, "heartbeat skipped: {e}");
                self.record.skipped = n;
                self.record.last_skipped = Some(now_rfc3339());
            }
        }
        // For `sensor status`; once a heartbeat interval, so the cost (one small fsync) is nil.
        if let Err(e) = self.record.store(&self.paths) {
            tracing::warn!(error = %e, "cannot record the heartbeat for `sensor status`");
        }
    }

    /// `Ok(false)` while the queue has no room (inventory is retried, not skipped).
    fn inventory(&mut self) -> Result<bool, SourceError> {
        match self
            .sink
            .append_unchecked(&[host::inventory_event(&Inventory::collect())])
        {
            Ok(()) => Ok(true),
            Err(e) if e.is_full() => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn run(&mut self, once: bool) -> Result<(), SourceError> {
        let now = Instant::now();
        let mut next_heartbeat = self.heartbeat.map(|_| now);
        let mut next_inventory = self.inventory.map(|_| now);
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            let now = Instant::now();
            if let (Some(due), Some(every)) = (next_heartbeat, self.heartbeat) {
                if now >= due {
                    self.heartbeat();
                    // ±10 %: sensors started together spread their heartbeats.
                    let every = uplink_protocol::heartbeat::jittered(every, rand::random::<f64>());
                    next_heartbeat = if once { None } else { Some(due + every) };
                }
            }
            if let (Some(due), Some(every)) = (next_inventory, self.inventory) {
                if now >= due {
                    if self.inventory()? {
                        next_inventory = if once { None } else { Some(due + every) };
                    } else {
                        nap(&self.stop, PAUSED);
                        continue;
                    }
                }
            }
            let poll = if once {
                self.tailer.poll(&mut self.sink)?
            } else {
                match self.tailer.poll(&mut self.sink) {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::warn!(code = %uplink_diag::Diagnose::code(&e), error = %e, "file source failed; trying again");
                        nap(&self.stop, ERROR_WAIT);
                        continue;
                    }
                }
            };
            match poll {
                Poll::More => {}
                Poll::Paused => nap(&self.stop, PAUSED),
                Poll::Idle if once => return Ok(()),
                Poll::Idle => nap(&self.stop, POLL),
            }
        }
    }
}
