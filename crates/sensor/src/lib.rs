//! The uplink sensor.
//!
//! - [`install`]: enrollment from a bundle, the configuration and secrets (`install.rs`)
//! - [`send`]: events from NDJSON into the durable queue (`uplink-queue`)
//! - [`upload::run`]: the uploader, along the route `uplink-route` computes for the configuration
//!   (`config.rs`) and walks (CONNECT with Basic, Digest, NTLM or Negotiate, SOCKS5, TLS)
//! - [`status`]: what the uploader last did; [`systemd`]: the unit that runs it as a service
//! - [`sources`]: files, the journal, heartbeats and inventory (`uplink-sources`) feeding the
//!   queue beside the uploader
//!
//! What it deliberately does not do yet: WPAD discovery, certificate renewal. Those are their
//! own issues.

pub mod config;
pub mod fsutil;
pub mod input;
pub mod install;
pub mod renew;
pub mod secrets;
pub mod sources;
pub mod status;
pub mod systemd;
pub mod upload;
pub mod wpadsource;

/// The route layer's walk, under the name the sensor's modules use.
pub use uplink_route::walk as link;

use std::io::BufRead;
use std::path::PathBuf;
use std::time::Duration;

use uplink_diag::{Code, Diagnose};
use uplink_queue::{Queue, QueueError};

pub use config::{Config, Paths};

/// Everything that can go wrong in the sensor. Messages carry no secret.
#[derive(Debug, thiserror::Error)]
pub enum SensorError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("a sensor is already installed in {0}: run `uplink sensor uninstall` first")]
    AlreadyInstalled(PathBuf),
    #[error("{0}")]
    Switch(String),
    #[error("cannot use the bundle {path}: {reason}")]
    Bundle { path: PathBuf, reason: String },
    #[error(
        "the bundle {path} does not match its pin: its CA has SHA-256 {actual} but the bundle says {expected}; it was altered or damaged: get a fresh bundle from the service"
    )]
    BundlePin {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("enrollment failed, nothing was installed: {0}")]
    Enroll(link::LinkError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Client(#[from] uplink_client::ClientError),
    #[error(transparent)]
    Pki(#[from] uplink_pki::PkiError),
    #[error(transparent)]
    Secret(#[from] secrets::SecretError),
    #[error("{events} events have not been delivered yet: run `uplink sensor run --once` first, or pass --force to discard them")]
    PendingEvents { events: u64 },
    #[error("a source failed: {0}")]
    Source(uplink_sources::SourceError),
    #[error("gave up after {after:?}: {code}: {message}")]
    GaveUp {
        code: Code,
        message: String,
        after: Duration,
    },
}

impl Diagnose for SensorError {
    fn code(&self) -> Code {
        match self {
            SensorError::Enroll(e) => e.code(),
            SensorError::GaveUp { code, .. } => *code,
            SensorError::Queue(QueueError::Full { .. }) => Code::QUEUE_FULL,
            SensorError::Queue(_) | SensorError::Io { .. } => Code::LOCAL_IO,
            SensorError::Client(e) => e.code(),
            SensorError::Source(e) => e.code(),
            _ => Code::CONFIG_INVALID,
        }
    }
}

/// Opens the sensor's queue with the configured bounds.
pub fn open_queue(paths: &Paths, config: &Config) -> Result<Queue, SensorError> {
    let opts = uplink_queue::Options {
        max_bytes: config.queue.max_bytes,
        ..Default::default()
    };
    Ok(Queue::open(&paths.queue_dir(), opts)?)
}

/// What `send` did.
#[derive(Debug, Default)]
pub struct SendReport {
    pub accepted: u64,
    pub rejected: u64,
    /// Set when the queue filled up: the first input line that was not queued, and why.
    pub full: Option<(usize, QueueError)>,
}

/// Events queued per append (one fsync each).
const SEND_CHUNK: usize = 2_000;

/// Reads NDJSON from `input` into the queue. Invalid lines are reported through `reject`
/// (line number, reason) and skipped. Stops at the first chunk the queue cannot take.
pub fn send(
    paths: &Paths,
    input: impl BufRead,
    mut reject: impl FnMut(usize, &str),
) -> Result<SendReport, SensorError> {
    let config = Config::load(paths)?;
    let mut queue = open_queue(paths, &config)?;
    let mut report = SendReport::default();
    let mut chunk: Vec<input::Prepared> = Vec::with_capacity(SEND_CHUNK);
    let mut chunk_first_line = 1;
    let mut line_no = 0;
    let flush = |queue: &mut Queue, chunk: &mut Vec<input::Prepared>| -> Result<u64, QueueError> {
        if chunk.is_empty() {
            return Ok(0);
        }
        let n = chunk.len();
        queue.append(n, |i, seq, out| {
            uplink_protocol::batch::encode_line(out, seq, &chunk[i].kind, &chunk[i].fields);
            out.pop(); // the queue stores lines without their newline
        })?;
        chunk.clear();
        Ok(n as u64)
    };
    for line in input.lines() {
        line_no += 1;
        let line = line.map_err(|source| SensorError::Io {
            path: "<stdin>".into(),
            source,
        })?;
        match input::prepare(&line) {
            Ok(Some(p)) => {
                if chunk.is_empty() {
                    chunk_first_line = line_no;
                }
                chunk.push(p);
            }
            Ok(None) => {}
            Err(reason) => {
                report.rejected += 1;
                reject(line_no, &reason);
            }
        }
        if chunk.len() == SEND_CHUNK {
            match flush(&mut queue, &mut chunk) {
                Ok(n) => report.accepted += n,
                Err(e @ QueueError::Full { .. }) => {
                    report.full = Some((chunk_first_line, e));
                    return Ok(report);
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    match flush(&mut queue, &mut chunk) {
        Ok(n) => report.accepted += n,
        Err(e @ QueueError::Full { .. }) => report.full = Some((chunk_first_line, e)),
        Err(e) => return Err(e.into()),
    }
    Ok(report)
}
