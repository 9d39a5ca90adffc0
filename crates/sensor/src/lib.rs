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

pub mod account;
pub mod config;
pub mod frames;
pub mod fsutil;
pub mod input;
pub mod install;
pub mod policy;
pub mod proxyshow;
mod render;
pub mod renew;
pub mod report;
pub mod secrets;
pub mod sources;
pub mod status;
pub mod systemd;
// CA rotation (issue #24).
pub mod trust;
pub mod unitfile;
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
    #[error("a sensor is already installed in {}: remove it first with `uplink sensor uninstall{}`, or install into another --config-dir", .0.display(), config::config_dir_flag(.0))]
    AlreadyInstalled(PathBuf),
    /// A malformed or contradictory flag (bad usage: the binary exits 2).
    #[error("{0}")]
    Switch(String),
    /// A failure the message explains in full (a file that is not what it must be, an
    /// environment without what was asked of it, an answer that makes no sense).
    #[error("{0}")]
    Failed(String),
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
    /// Nothing answered at the bundle's port: the commonest cause is a workspace created
    /// without `--public-port` for a service on another port, so the message names the port.
    #[error("enrollment failed, nothing was installed: {error}; the bundle names port {port}")]
    EnrollUnreachable { error: link::LinkError, port: u16 },
    /// The service still limited enrollments (429) when the install's wait ran out.
    #[error("enrollment failed, nothing was installed: the service limited enrollments {attempts} times over {:.0} s (the install waits at most {} s, --enroll-wait): {message}", waited.as_secs_f64(), bound.as_secs())]
    EnrollRateLimited {
        attempts: u32,
        waited: Duration,
        bound: Duration,
        message: String,
    },
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
    #[error("{events} events have not been delivered yet: deliver them with `uplink sensor run --once{}` first, or pass --force to discard them", config::config_dir_flag(.dir))]
    PendingEvents { events: u64, dir: PathBuf },
    #[error("a source failed: {0}")]
    Source(uplink_sources::SourceError),
    #[error("{0}: check the disk (dmesg, smartctl) and the file system")]
    QueueDamaged(String),
    /// `run --once` could not finish within `--timeout`: `spent` is the time actually spent
    /// (it stops early when the next retry would come after the deadline).
    #[error("gave up after {:.1} s of --timeout {} s{}: {code}: {message}", spent.as_secs_f64(), limit.as_secs(), if spent < limit { " (the next retry would have come after it)" } else { "" })]
    GaveUp {
        code: Code,
        message: String,
        spent: Duration,
        limit: Duration,
    },
}

impl SensorError {
    /// What to do about it: the fix for this case where the message's code covers several
    /// (a missing sensor, one already there, a bad bundle, a flag), else the code's fix.
    pub fn fix(&self) -> String {
        match self {
            SensorError::Config(config::ConfigError::NotInstalled(_)) => "if the sensor was installed with --config-dir DIR, give that DIR; FILE in `uplink sensor install --bundle FILE` is the workspace's enrollment bundle".into(),
            SensorError::Config(config::ConfigError::Invalid { path, .. }) => format!(
                "correct {} as the message says, or reinstall the sensor",
                path.display()
            ),
            SensorError::AlreadyInstalled(dir) => format!(
                "run `uplink sensor uninstall{}` and install again, or use `uplink sensor proxy set` to change only the proxy",
                config::config_dir_flag(dir)
            ),
            SensorError::Bundle { .. } => "give the workspace's enrollment bundle: the service writes it as DATA_DIR/bundles/NAME.json, and `uplink workspace bundle NAME --out FILE` writes it again".into(),
            SensorError::BundlePin { .. } => "get a fresh bundle from the service: `uplink workspace bundle NAME --out FILE`".into(),
            SensorError::Switch(_) => "run the command again with the flags corrected as the message says (its --help lists them, with examples)".into(),
            SensorError::Failed(_) => "correct what the message names and run the command again".into(),
            SensorError::EnrollUnreachable { port, .. } => format!(
                "check that the service runs and listens on port {port} (`uplink service --listen ADDR:{port}`); a service on another port needs a bundle naming it: recreate the workspace with `uplink workspace create NAME --public-port PORT`"
            ),
            SensorError::PendingEvents { dir, .. } => format!(
                "`uplink sensor run --once{}` delivers them; check `uplink sensor status{}` if it cannot",
                config::config_dir_flag(dir),
                config::config_dir_flag(dir)
            ),
            _ => self.code().fix().to_owned(),
        }
    }
}

impl Diagnose for SensorError {
    fn code(&self) -> Code {
        match self {
            SensorError::Enroll(e) => e.code(),
            SensorError::EnrollUnreachable { error, .. } => error.code(),
            SensorError::GaveUp { code, .. } => *code,
            SensorError::EnrollRateLimited { .. } => Code::ENROLL_RATE_LIMITED,
            SensorError::Queue(QueueError::Full { .. }) => Code::QUEUE_FULL,
            SensorError::Queue(e) if e.is_disk_full() => Code::DISK_FULL,
            SensorError::Io { source, .. } if uplink_queue::is_disk_full(source) => Code::DISK_FULL,
            SensorError::Queue(_) | SensorError::Io { .. } => Code::LOCAL_IO,
            SensorError::QueueDamaged(_) => Code::QUEUE_DAMAGED,
            SensorError::Client(e) => e.code(),
            SensorError::Source(e) => e.code(),
            _ => Code::CONFIG_INVALID,
        }
    }
}

/// Opens the sensor's queue with the configured bounds.
pub fn open_queue(paths: &Paths, config: &Config) -> Result<Queue, SensorError> {
    Ok(Queue::open(&paths.queue_dir(), queue_options(config))?)
}

/// Opens the sensor's queue for reading only (`sensor status`): no file is created or changed.
pub fn open_queue_read_only(paths: &Paths, config: &Config) -> Result<Queue, SensorError> {
    Ok(Queue::open_read_only(
        &paths.queue_dir(),
        queue_options(config),
    )?)
}

fn queue_options(config: &Config) -> uplink_queue::Options {
    let defaults = uplink_queue::Options::default();
    uplink_queue::Options {
        max_bytes: config.queue.max_bytes,
        segment_bytes: config
            .queue
            .segment_bytes
            .unwrap_or(defaults.segment_bytes)
            .max(4096),
    }
}

/// What `send` did.
#[derive(Debug, Default)]
pub struct SendReport {
    pub accepted: u64,
    pub rejected: u64,
    /// Set when the queue or its disk filled up: the first input line that was not queued, and
    /// why (`QueueError::Full`, or an I/O error for which `is_disk_full()`).
    pub full: Option<(usize, QueueError)>,
}

impl SendReport {
    /// Why lines were left unqueued, as a code: `DISK_FULL` when the disk (or the user's quota)
    /// is full, `QUEUE_FULL` when the queue reached its own bound; `None` when nothing was left.
    pub fn full_code(&self) -> Option<Code> {
        self.full.as_ref().map(|(_, e)| {
            if e.is_disk_full() {
                Code::DISK_FULL
            } else {
                Code::QUEUE_FULL
            }
        })
    }
}

/// Events queued per append (one fsync each).
const SEND_CHUNK: usize = 2_000;
/// Bytes of events queued per append, at most (about): the tailer's bound. An append is one batch
/// in the queue, which a handle opening the queue checks whole (its tail scan holds a batch at
/// once): 2,000 long lines were a 4 MiB read in the uploader's memory at every start.
const SEND_CHUNK_BYTES: usize = 1 << 20;

/// The longest input line `send` reads (longer ones are skipped whole, like invalid JSON).
pub const MAX_LINE: usize = uplink_queue::record::MAX_PAYLOAD;

/// One input line, read with a bound: its bytes, or how long it was when over [`MAX_LINE`].
enum Line {
    Bytes,
    TooLong(u64),
    End,
}

/// Reads the next line into `buf` (without its `\n`), never holding more than [`MAX_LINE`] + 1
/// bytes: a longer line is consumed to its end and reported as `TooLong`.
fn read_line(input: &mut impl BufRead, buf: &mut Vec<u8>) -> std::io::Result<Line> {
    buf.clear();
    let mut total: u64 = 0;
    let mut any = false;
    loop {
        let chunk = input.fill_buf()?;
        if chunk.is_empty() {
            return Ok(if !any {
                Line::End
            } else if total > MAX_LINE as u64 {
                Line::TooLong(total)
            } else {
                Line::Bytes
            });
        }
        any = true;
        let (take, done) = match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => (i, true),
            None => (chunk.len(), false),
        };
        total += take as u64;
        if total <= MAX_LINE as u64 {
            buf.extend_from_slice(&chunk[..take]);
        } else {
            buf.clear();
        }
        input.consume(take + usize::from(done));
        if done {
            return Ok(if total > MAX_LINE as u64 {
                Line::TooLong(total)
            } else {
                Line::Bytes
            });
        }
    }
}

/// An event ready for the queue: its line without the leading `{"seq":N,` (the queue assigns
/// N) and the trailing newline.
struct Encoded(Vec<u8>);

/// Bytes `{"seq":N,` can take (N up to 20 digits).
const SEQ_PREFIX_MAX: usize = 28;

/// Reads NDJSON from `input` into the queue. Lines that cannot be an event — not valid JSON, not
/// an object, not UTF-8, over [`MAX_LINE`] bytes, or over the largest event once encoded — are
/// reported through `reject` (line number, reason) and skipped; every other line is queued. So a
/// bad line never stops the lines after it, and nothing needs to be sent again. Stops at the
/// first chunk the queue (or its disk) cannot take; `SendReport::full` names its first line.
pub fn send(
    paths: &Paths,
    mut input: impl BufRead,
    mut reject: impl FnMut(usize, &str),
) -> Result<SendReport, SensorError> {
    let config = Config::load(paths)?;
    let mut queue = open_queue(paths, &config)?;
    // Make sure status.json exists at its padded size while there is room, so that a full disk
    // can still be recorded there.
    let status_path = paths.status_file();
    if !status_path.exists() {
        let _ = status::Status::load(&status_path).store(&status_path);
    }
    let mut report = SendReport::default();
    let mut chunk: Vec<Encoded> = Vec::with_capacity(SEND_CHUNK);
    let mut chunk_first_line = 1;
    let mut chunk_bytes = 0usize;
    let mut line_no = 0;
    let flush = |queue: &mut Queue, chunk: &mut Vec<Encoded>| -> Result<u64, QueueError> {
        if chunk.is_empty() {
            return Ok(0);
        }
        let n = chunk.len();
        queue.append(n, |i, seq, out| {
            use std::io::Write;
            let _ = write!(out, "{{\"seq\":{seq},");
            out.extend_from_slice(&chunk[i].0);
        })?;
        chunk.clear();
        Ok(n as u64)
    };
    let mut buf = Vec::with_capacity(4096);
    let mut encoded = Vec::with_capacity(4096);
    let queued = |queue: &mut Queue,
                  chunk: &mut Vec<Encoded>,
                  first_line: usize,
                  report: &mut SendReport|
     -> Result<bool, SensorError> {
        match flush(queue, chunk) {
            Ok(n) => {
                report.accepted += n;
                Ok(true)
            }
            Err(e) if matches!(e, QueueError::Full { .. }) || e.is_disk_full() => {
                if e.is_disk_full() {
                    let _ = status::Status::record_disk_full(
                        &status_path,
                        format!("`sensor send` could not queue events: {e}"),
                    );
                }
                report.full = Some((first_line, e));
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    };
    loop {
        let line = read_line(&mut input, &mut buf).map_err(|source| SensorError::Io {
            path: "<stdin>".into(),
            source,
        })?;
        let bytes = match line {
            Line::End => break,
            Line::TooLong(n) => {
                line_no += 1;
                report.rejected += 1;
                reject(
                    line_no,
                    &format!(
                        "the line is {n} bytes, over the limit of {MAX_LINE} bytes for one event"
                    ),
                );
                continue;
            }
            Line::Bytes => {
                line_no += 1;
                &buf
            }
        };
        let text = match std::str::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                report.rejected += 1;
                reject(
                    line_no,
                    &format!(
                        "not UTF-8 (invalid byte at column {}): each line must be JSON text",
                        e.valid_up_to() + 1
                    ),
                );
                continue;
            }
        };
        match input::prepare(text) {
            Ok(Some(p)) => {
                encoded.clear();
                uplink_protocol::batch::encode_line(&mut encoded, 0, &p.kind, &p.fields);
                // `{"seq":0,` and the trailing newline go; the queue writes the real seq.
                let body = &encoded[9..encoded.len() - 1];
                if body.len() + SEQ_PREFIX_MAX > uplink_queue::record::MAX_PAYLOAD {
                    report.rejected += 1;
                    reject(
                        line_no,
                        &format!(
                            "the event is {} bytes once encoded, over the limit of {} bytes",
                            body.len() + SEQ_PREFIX_MAX,
                            uplink_queue::record::MAX_PAYLOAD
                        ),
                    );
                    continue;
                }
                // An append stays within SEND_CHUNK_BYTES unless one event alone is larger: the
                // chunk goes before the event that would pass it.
                if !chunk.is_empty()
                    && chunk_bytes + body.len() > SEND_CHUNK_BYTES
                    && !queued(&mut queue, &mut chunk, chunk_first_line, &mut report)?
                {
                    return Ok(report);
                }
                if chunk.is_empty() {
                    chunk_first_line = line_no;
                    chunk_bytes = 0;
                }
                chunk_bytes += body.len();
                chunk.push(Encoded(body.to_vec()));
            }
            Ok(None) => {}
            Err(reason) => {
                report.rejected += 1;
                reject(line_no, &reason);
            }
        }
        if (chunk.len() == SEND_CHUNK || chunk_bytes >= SEND_CHUNK_BYTES)
            && !queued(&mut queue, &mut chunk, chunk_first_line, &mut report)?
        {
            return Ok(report);
        }
    }
    queued(&mut queue, &mut chunk, chunk_first_line, &mut report)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_send_names_which_limit() {
        let io = |errno| QueueError::Io {
            path: PathBuf::from("/q/seg"),
            source: std::io::Error::from_raw_os_error(errno),
        };
        // (what stopped it, code)
        for (full, want) in [
            (None, None),
            (
                Some(QueueError::Full {
                    pending: 10,
                    max: 10,
                    needed: 1,
                }),
                Some(Code::QUEUE_FULL),
            ),
            (Some(io(28)), Some(Code::DISK_FULL)),  // ENOSPC
            (Some(io(122)), Some(Code::DISK_FULL)), // EDQUOT
            // Another I/O error stopping the send is no "disk full" (QUEUE_FULL, as before).
            (Some(io(5)), Some(Code::QUEUE_FULL)),
        ] {
            let report = SendReport {
                full: full.map(|e| (3, e)),
                ..SendReport::default()
            };
            assert_eq!(report.full_code(), want, "{:?}", report.full);
        }
    }

    #[test]
    fn lines_are_read_with_a_bound() {
        let long = "x".repeat(MAX_LINE + 10);
        let input = format!("a\n\n{long}\nb\r\n{long}");
        let mut r = std::io::BufReader::with_capacity(1000, input.as_bytes());
        let mut buf = Vec::new();
        let mut got = Vec::new();
        loop {
            match read_line(&mut r, &mut buf).unwrap() {
                Line::End => break,
                Line::TooLong(n) => got.push(format!("long {n}")),
                Line::Bytes => got.push(String::from_utf8(buf.clone()).unwrap()),
            }
            assert!(buf.capacity() <= 2 * MAX_LINE + 2000);
        }
        let n = MAX_LINE + 10;
        assert_eq!(
            got,
            vec![
                "a".to_string(),
                String::new(),
                format!("long {n}"),
                "b\r".into(),
                format!("long {n}")
            ]
        );
    }
}
