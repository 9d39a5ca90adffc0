//! The sensor's sources: what produces events besides `uplink sensor send`.
//!
//! - [`tail`]: files named by globs, followed across rotation (rename and copytruncate), read in
//!   bounded chunks, with a checkpoint ([`checkpoint`]) so a restart neither re-sends nor skips.
//!   The decisions (rotated? truncated? where does a line end?) are pure ([`lines`],
//!   [`tail::decide`]); the I/O around them is thin.
//! - [`journal`]: the systemd journal through `journalctl -o json`, its cursor checkpointed.
//! - [`host`]: heartbeat and inventory events (pure builders, plus readers of `/proc` and
//!   `/etc/os-release`).
//!
//! Sources hand events to a [`Sink`] — in the sensor, the durable queue, through the same encoding
//! `send` uses. A sink that is full answers [`SinkError::Full`]; sources then *pause*: they keep
//! the chunk they hold, do not advance their checkpoint and read nothing more until the sink takes
//! it. The data waits in the file or the journal, not in memory.
//!
//! Exactly once across crashes: each append carries the source's checkpoint, written inside the
//! append before the events ([`Sink::append`]'s `commit`), and a source settles a checkpoint left
//! by a crash against the sink before it reads anything ([`checkpoint::reconcile`]).
//!
//! What this crate deliberately does not do: decide when to run (the sensor's run loop does),
//! upload, or read files other than those configured.

pub mod checkpoint;
pub mod config;
pub mod glob;
pub mod host;
pub mod journal;
pub mod json;
pub mod lines;
pub mod tail;

use std::path::PathBuf;

use uplink_diag::{Code, Diagnose};

pub use config::SourcesConfig;

/// One event as a source produces it: a kind and its fields (the sink adds `seq`).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub kind: String,
    pub fields: serde_json::Map<String, serde_json::Value>,
}

/// What a sink is about to write, as [`Sink::append`]'s `commit` learns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intent {
    pub first_seq: u64,
    pub last_seq: u64,
    /// The sink's digest of the last event as it will be stored.
    pub last_digest: u64,
}

/// What a sink holds at a sequence number ([`Sink::lookup`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// An event, with the sink's digest of it.
    Present { digest: u64 },
    /// Delivered and removed.
    Acked,
    /// Nothing (never written, or dropped whole by the sink's crash recovery).
    Absent,
}

/// Where sources put events: in the sensor, the durable queue.
pub trait Sink {
    /// Appends `events`, all or nothing (also across a crash), durably when it returns `Ok`.
    /// Once the events are known to fit, and before any of them is written, calls `commit` once
    /// with the [`Intent`], holding whatever keeps other writers out; the source writes its
    /// checkpoint there ([`checkpoint`]). If `commit` fails nothing is appended and its error is
    /// returned. No room: `Err(SourceError::Sink(SinkError::Full))`, without calling `commit`.
    /// No events: `Ok` without calling `commit`.
    fn append(
        &mut self,
        events: &[Event],
        commit: &mut dyn FnMut(&Intent) -> Result<(), SourceError>,
    ) -> Result<(), SourceError>;

    /// Calls `then` with what the sink holds at `seq`, keeping other writers out meanwhile.
    fn lookup(
        &mut self,
        seq: u64,
        then: &mut dyn FnMut(Stored) -> Result<(), SourceError>,
    ) -> Result<(), SourceError>;

    /// Appends events no checkpoint follows (heartbeats, inventory).
    fn append_unchecked(&mut self, events: &[Event]) -> Result<(), SourceError> {
        self.append(events, &mut |_| Ok(()))
    }

    /// [`Sink::append`] of the events of `lines` ([`tail::line_event`]). A sink that encodes
    /// events itself writes them straight from the lines ([`tail::encode_line_event`]: the same
    /// bytes as `uplink_protocol::batch::encode_line` of the event), never holding a batch of
    /// [`Event`]s — which weigh several times their lines (the sensor's peak RSS).
    fn append_lines(
        &mut self,
        lines: &tail::LineBatch<'_>,
        commit: &mut dyn FnMut(&Intent) -> Result<(), SourceError>,
    ) -> Result<(), SourceError> {
        let events: Vec<Event> = lines.events().collect();
        self.append(&events, commit)
    }
}

/// Why a sink did not take events.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// No room now; the caller keeps the events and tries again later.
    #[error("the queue is full: {0}")]
    Full(String),
    /// Anything else (disk errors); the caller keeps the events too.
    #[error("the queue failed: {0}")]
    Failed(String),
}

/// Everything that can go wrong in a source. None of it carries a secret (sources read logs,
/// never credentials).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("checkpoint {path} is damaged ({reason}); move it aside to start over (files are then read again from their beginning)")]
    Checkpoint { path: PathBuf, reason: String },
    #[error("invalid source configuration: {0}")]
    Config(String),
    #[error("journalctl: {0}")]
    Journal(String),
    #[error(transparent)]
    Sink(#[from] SinkError),
}

impl Diagnose for SourceError {
    fn code(&self) -> Code {
        match self {
            SourceError::Io { .. } | SourceError::Journal(_) => Code::LOCAL_IO,
            SourceError::Sink(SinkError::Full(_)) => Code::QUEUE_FULL,
            SourceError::Sink(SinkError::Failed(_)) => Code::LOCAL_IO,
            SourceError::Checkpoint { .. } | SourceError::Config(_) => Code::CONFIG_INVALID,
        }
    }
}

impl SourceError {
    /// The sink had no room (the caller keeps its events and pauses).
    pub fn is_full(&self) -> bool {
        matches!(self, SourceError::Sink(SinkError::Full(_)))
    }
}

pub(crate) fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> SourceError + '_ {
    move |source| SourceError::Io {
        path: path.to_path_buf(),
        source,
    }
}
