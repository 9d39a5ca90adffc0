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
//! What this crate deliberately does not do: decide when to run (the sensor's run loop does),
//! upload, or read files other than those configured.

pub mod checkpoint;
pub mod config;
pub mod glob;
pub mod host;
pub mod journal;
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

/// Where sources put events. `append` is all or nothing and durable when it returns `Ok`.
pub trait Sink {
    fn append(&mut self, events: &[Event]) -> Result<(), SinkError>;
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

pub(crate) fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> SourceError + '_ {
    move |source| SourceError::Io {
        path: path.to_path_buf(),
        source,
    }
}
