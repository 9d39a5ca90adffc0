//! The sensor's configuration: where things are, what it reports to, and how it gets there.
//!
//! `sensor.toml` holds no secret in clear: proxy passwords are sealed (see [`crate::secrets`]).
//! The uploader reads the file again before every new connection, so a changed proxy setting
//! (`uplink sensor proxy set`) takes effect on the next connection without a restart or a
//! reinstall.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use uplink_proxy::{Explanation, ProxySettings};

use crate::secrets::SecretBox;

/// The configuration format this build writes.
pub const CONFIG_FORMAT: u32 = 1;
/// Default configuration directory.
pub const DEFAULT_CONFIG_DIR: &str = "/etc/uplink";
/// Default state directory (queue, status).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/uplink";

/// ` --config-dir DIR` for a command this sensor's messages suggest, or nothing for the default
/// directory: a suggestion pasted as printed acts on the same sensor.
pub fn config_dir_flag(dir: &Path) -> String {
    if dir == Path::new(DEFAULT_CONFIG_DIR) {
        return String::new();
    }
    let d = dir.display().to_string();
    let plain = d
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+,:@".contains(c));
    if plain && !d.is_empty() {
        format!(" --config-dir {d}")
    } else {
        format!(" --config-dir '{}'", d.replace('\'', "'\\''"))
    }
}

/// Where a sensor's files live. With `--config-dir DIR`, everything is in DIR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    pub config_dir: PathBuf,
    pub state_dir: PathBuf,
    /// Where WPAD discovery looks (the system's usual places unless the caller says otherwise).
    pub wpad: uplink_wpad::Sources,
}

impl Paths {
    /// `--config-dir DIR` (everything in DIR), or the system defaults.
    pub fn new(config_dir: Option<&Path>) -> Paths {
        match config_dir {
            Some(d) => Paths {
                config_dir: d.to_path_buf(),
                state_dir: d.to_path_buf(),
                wpad: uplink_wpad::Sources::system(),
            },
            None => Paths {
                config_dir: DEFAULT_CONFIG_DIR.into(),
                state_dir: DEFAULT_STATE_DIR.into(),
                wpad: uplink_wpad::Sources::system(),
            },
        }
    }

    /// The same paths, with WPAD discovery looking at `sources`.
    pub fn with_wpad(mut self, sources: uplink_wpad::Sources) -> Paths {
        self.wpad = sources;
        self
    }
    pub fn config_file(&self) -> PathBuf {
        self.config_dir.join("sensor.toml")
    }
    pub fn ca_file(&self) -> PathBuf {
        self.config_dir.join("ca.pem")
    }
    pub fn cert_file(&self) -> PathBuf {
        self.config_dir.join("client.pem")
    }
    pub fn key_file(&self) -> PathBuf {
        self.config_dir.join("client.key")
    }
    pub fn secret_key_file(&self) -> PathBuf {
        self.config_dir.join("secret.key")
    }
    pub fn queue_dir(&self) -> PathBuf {
        self.state_dir.join("queue")
    }
    pub fn status_file(&self) -> PathBuf {
        self.state_dir.join("status.json")
    }
    /// The sources' checkpoints (`files.json`, `journal.json`).
    pub fn sources_dir(&self) -> PathBuf {
        self.state_dir.join("sources")
    }
    /// Every file `install` writes (uninstall removes exactly these, plus the state).
    pub fn installed_files(&self) -> Vec<PathBuf> {
        vec![
            self.config_file(),
            self.ca_file(),
            self.cert_file(),
            self.key_file(),
            self.secret_key_file(),
        ]
    }
}

/// `sensor.toml`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Config {
    pub format: u32,
    pub workspace: String,
    pub sensor_id: String,
    pub sensor_url: String,
    /// How to reach the service (see `uplink_proxy::settings` for modes and precedence).
    #[serde(default, skip_serializing_if = "is_default")]
    pub proxy: ProxySettings,
    #[serde(default)]
    pub queue: QueueConfig,
    #[serde(default)]
    pub upload: UploadConfig,
    /// Files, the journal, heartbeats, inventory (docs/sources.md). Absent in configurations
    /// written before sources existed: they load with the defaults.
    #[serde(default)]
    pub sources: uplink_sources::SourcesConfig,
}

fn is_default(p: &ProxySettings) -> bool {
    *p == ProxySettings::default()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct QueueConfig {
    /// Most bytes of events waiting for upload; beyond it `send` refuses (exit 3).
    pub max_bytes: u64,
    /// A segment file is closed (and a new one started) at this size. Absent: 32 MiB. Smaller
    /// segments give space back sooner as they are delivered (and make tests quick).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_bytes: Option<u64>,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            max_bytes: uplink_queue::Options::default().max_bytes,
            segment_bytes: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UploadConfig {
    /// Most events per batch.
    pub batch_events: usize,
    /// About the most bytes of text per batch (before compression; a batch also ends once
    /// its compressed frames reach [`crate::frames::MAX_COMPRESSED`]). Absent from an older
    /// sensor.toml: that file's value stays. Default [`DEFAULT_BATCH_BYTES`].
    pub batch_bytes: usize,
    /// Most batches in flight at once, each on its own connection along the same route (the
    /// first one carries the reports; the others are opened while a backlog lasts). Batches
    /// leave the queue in order, each once the service has committed it and every batch before
    /// it. 1: one at a time. Absent: [`DEFAULT_INFLIGHT`].
    #[serde(
        default = "default_inflight",
        skip_serializing_if = "is_default_inflight"
    )]
    pub inflight: usize,
    /// Milliseconds a lane back from its answer (none left in flight, events waiting) waits for
    /// a full batch (one that is full goes at once; a lane idle for longer than this sends what
    /// is there at once). 0: never waits; at most [`MAX_LINGER_MS`]. Absent:
    /// [`DEFAULT_LINGER_MS`].
    #[serde(
        default = "default_linger_ms",
        skip_serializing_if = "is_default_linger_ms"
    )]
    pub linger_ms: u64,
}

/// How long a lane waits for a full batch unless `upload.linger_ms` says otherwise.
///
/// The service's cost of a batch is mostly fixed (a commit: WAL frames written and synced; a
/// request; the threads it wakes), about half a millisecond of CPU on the 2-core bench machine,
/// whatever the batch holds. Sending whatever waits the moment a lane is free made a steady
/// flow of ~2,000 B lines at ~150,000 events/s into batches of ~1,200 events, so that fixed
/// cost came to a third of the service's CPU per event (`BATCH_EVENTS=500 SHAPE=long
/// bench/vs-fluentbit.sh`: 2,000 batches, 1.99–2.20 µs/event; 837 batches, 1.37–1.52). Waiting
/// up to this long for a full batch when a lane comes back with events waiting makes full
/// batches of such a flow, at the price of at most this much latency: a lane idle for longer
/// sends at once, and a backlog is full batches anyway. (Kafka's producer calls this `linger.ms`; Fluent
/// Bit flushes once a second.)
pub const DEFAULT_LINGER_MS: u64 = 25;

/// The longest `upload.linger_ms` accepted: a wait for a full batch is a matter of
/// milliseconds; seconds of it would hold back reports and `--once`.
pub const MAX_LINGER_MS: u64 = 1_000;

fn default_linger_ms() -> u64 {
    DEFAULT_LINGER_MS
}

fn is_default_linger_ms(n: &u64) -> bool {
    *n == DEFAULT_LINGER_MS
}

/// Batches in flight unless `upload.inflight` says otherwise: two. A later batch committed
/// before an earlier one is safe since the stores record the holes their retention watermark
/// passes (docs/storage.md), so this is a speed/memory trade. With 1 (2026-12-05, lead's
/// `bench/vs-fluentbit.sh`): 201k–237k events/s end to end, 2: 244k–278k (+~20 %). Memory with
/// 2, once a batch's text stopped at its byte limit and the tail was validated in 256 KiB windows
/// (`bench/sensor-mem.sh`, `INFLIGHT=2`, release builds alternated, 2026-12-06 03:08–03:15,
/// anonymous peak, sampled; the shipped binary adds ~9.3 MiB of its own pages): tailing
/// 1,000,000 × 298 B 8.5 MiB (9.4 before), draining them 4.0 MiB (6.4), tailing 300,000 ×
/// 2,000 B 8.9 MiB (12.6–12.7): within the 20 MiB target for both shapes. 1: one at a time.
pub const DEFAULT_INFLIGHT: usize = 2;

fn default_inflight() -> usize {
    DEFAULT_INFLIGHT
}

fn is_default_inflight(n: &usize) -> bool {
    *n == DEFAULT_INFLIGHT
}

/// Most events per batch unless `upload.batch_events` says otherwise. `batch_bytes` bounds a
/// batch's bytes whatever this is; this bounds the count of small events. With 5,000,
/// lines of 81 B (events of ~182 B) went in batches of ~0.9 MB and the sensor waited on the
/// service's commits: `SHAPE=short bench/vs-fluentbit.sh` (2026-12-06, the shipped build)
/// 745k–781k events/s with 5,000, 774k–801k with 10,000, 830k–882k with 20,000 (~3.6 MB); the
/// sensor's peak RSS the same (docs/benchmarks.md, "Batches of up to 20,000 events"). Events
/// of ~414 B (298 B lines) reached the old 4 MiB `batch_bytes` at ~10,100. Beside a batch in flight only a full one goes,
/// so the second connection opens once ~20,000 small events wait (and not at all with a queue
/// `max_bytes` smaller than a full batch).
pub const DEFAULT_BATCH_EVENTS: usize = 20_000;

/// Most bytes of text per batch unless `upload.batch_bytes` says otherwise: 8 MiB.
///
/// With 4 MiB (until 2026-12-06), a batch of ~2,000 B lines held ~2,000 events, so the
/// service's fixed cost per batch (a commit, a request: ~0.5 ms of CPU on the 2-core bench
/// machine, `DEFAULT_LINGER_MS`) was a third of its cost per event. With 16 MiB and the linger,
/// `SHAPE=long bench/vs-fluentbit.sh 1000000` made 127 batches instead of 505–846 and the service
/// took 0.98–1.06 µs/event instead of 1.25–1.52 (docs/benchmarks.md, "Fewer, fuller batches").
/// The sensor holds a batch compressed ([`crate::frames`]), and at most about
/// [`crate::frames::MAX_COMPRESSED`] (2 MiB) of it, so its memory for a batch is bounded by that,
/// not by this. The service's `max_decoded` is 64 MiB. Its decode budget (256 MiB) charges a
/// batch twice its text whatever the store (SQLite checks it frame by frame and holds far less),
/// so about 15 batches of 8 MiB decode at once where 28 of 4 MiB did; more wait (503,
/// `Retry-After`, a second each). With 16 MiB that was 7: four sensors draining ~2,000 B events
/// with two lanes each (`CASES=sqlite PAD=1900 bench/ingest.sh 600000 4`) were refused often
/// enough to drop from 536,459 to 360,825 events/s, though the service's CPU per event fell
/// (1.18 to 0.97 µs). Hence 8 MiB, until the budget charges a batch checked as sent what it
/// holds.
pub const DEFAULT_BATCH_BYTES: usize = 8 << 20;

impl UploadConfig {
    /// What sensor.toml's `[upload]` must hold beyond its types.
    pub fn validate(&self) -> Result<(), String> {
        if self.linger_ms > MAX_LINGER_MS {
            return Err(format!(
                "upload.linger_ms = {} is more than {MAX_LINGER_MS}: set it to 0..={MAX_LINGER_MS} (the milliseconds a lane waits for a full batch; {DEFAULT_LINGER_MS} when absent)",
                self.linger_ms
            ));
        }
        Ok(())
    }
}

impl Default for UploadConfig {
    fn default() -> Self {
        UploadConfig {
            batch_events: DEFAULT_BATCH_EVENTS,
            batch_bytes: DEFAULT_BATCH_BYTES,
            inflight: DEFAULT_INFLIGHT,
            linger_ms: DEFAULT_LINGER_MS,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("no sensor is installed in {}: install one with `uplink sensor install --bundle FILE{}`, or pass the --config-dir it was installed with", .0.display(), config_dir_flag(.0))]
    NotInstalled(PathBuf),
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid sensor configuration: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("the proxy settings give no route to the service: {0}")]
    NoRoute(String),
    #[error(transparent)]
    Secret(#[from] crate::secrets::SecretError),
}

/// A short fingerprint of proxy settings (SHA-256 of their JSON, first 16 hex digits; sealed
/// passwords are part of it, so a changed password counts, yet nothing secret is revealed): the
/// running uploader records the one its connection was chosen under in `status.json`, and
/// `sensor proxy show` compares it with sensor.toml's.
pub fn proxy_fingerprint(p: &ProxySettings) -> String {
    use sha2::Digest;
    let json = serde_json::to_vec(p).unwrap_or_default();
    hex::encode(&sha2::Sha256::digest(&json)[..8])
}

impl Config {
    pub fn load(paths: &Paths) -> Result<Config, ConfigError> {
        let path = paths.config_file();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ConfigError::NotInstalled(paths.config_dir.clone()))
            }
            Err(source) => return Err(ConfigError::Io { path, source }),
        };
        let config: Config = toml::from_str(&text).map_err(|e| ConfigError::Invalid {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if let Err(reason) = config.sources.validate() {
            return Err(ConfigError::Invalid { path, reason });
        }
        if let Err(reason) = config.upload.validate() {
            return Err(ConfigError::Invalid { path, reason });
        }
        if config.format > CONFIG_FORMAT {
            return Err(ConfigError::Invalid {
                path,
                reason: format!("written by a newer uplink (format {}); this build reads format {CONFIG_FORMAT}: upgrade uplink", config.format),
            });
        }
        Ok(config)
    }

    pub fn to_toml(&self) -> String {
        let mut text = String::from(
            "# uplink sensor configuration. Proxy passwords are encrypted (key: secret.key).\n",
        );
        text.push_str(&toml::to_string_pretty(self).expect("the configuration serialises"));
        if !text.ends_with('\n') {
            text.push('\n');
        }
        text
    }

    /// Writes the configuration (0600, atomically).
    pub fn save(&self, paths: &Paths) -> Result<(), ConfigError> {
        let path = paths.config_file();
        crate::fsutil::write_private(&path, self.to_toml().as_bytes())
            .map_err(|source| ConfigError::Io { path, source })
    }

    /// The route to the service under the configured proxy settings, explained, with sealed
    /// passwords unsealed, in `pac` mode the script evaluated, and in `wpad` and `auto` modes
    /// WPAD discovery run (or its cached result used) and its script evaluated (see
    /// [`uplink_route::sources::explain`]). Blocking: call it off the async runtime's threads.
    pub fn explain(&self, paths: &Paths, host: &str, port: u16) -> Explanation {
        let unseal = |sealed: &str| unseal(paths, sealed);
        let cache = crate::wpadsource::cache_file(paths);
        let wpad = uplink_route::sources::WpadPlace {
            sources: &paths.wpad,
            cache_file: Some(&cache),
        };
        uplink_route::sources::explain(&self.proxy, &unseal, wpad, host, port)
    }
}

/// Opens a password sealed in `sensor.toml` with the sensor's key (`secret.key`). The one place
/// outside `secrets.rs` that turns a sealed value into a secret: the route engine and
/// `uplink check` both come here.
pub fn unseal(paths: &Paths, sealed: &str) -> Result<secrecy::SecretString, String> {
    let sb = SecretBox::open(&paths.secret_key_file()).map_err(|e| e.to_string())?;
    sb.open_sealed(sealed).map_err(|e| e.to_string())
}

#[cfg(test)]
mod upload_tests {
    use super::*;

    #[test]
    fn upload_settings_absent_from_sensor_toml_take_the_defaults_and_present_ones_stay() {
        // An older sensor.toml: its batch_bytes stays; inflight and linger_ms, absent, are the
        // defaults.
        let old: UploadConfig =
            toml::from_str("batch_events = 5000\nbatch_bytes = 4194304\n").unwrap();
        assert_eq!(
            (
                old.batch_events,
                old.batch_bytes,
                old.inflight,
                old.linger_ms
            ),
            (5000, 4 << 20, DEFAULT_INFLIGHT, DEFAULT_LINGER_MS)
        );
        // linger_ms = 0 turns the wait off.
        let off: UploadConfig =
            toml::from_str("batch_events = 20000\nbatch_bytes = 8388608\nlinger_ms = 0\n").unwrap();
        assert_eq!(off.linger_ms, 0);
        // What a new install writes: the batch limits, and no default that may change later.
        let written = toml::to_string(&UploadConfig::default()).unwrap();
        assert_eq!(written, "batch_events = 20000\nbatch_bytes = 8388608\n");
        let back: UploadConfig = toml::from_str(&written).unwrap();
        assert_eq!(back, UploadConfig::default());
        // A set value is written.
        let set = UploadConfig {
            linger_ms: 5,
            ..UploadConfig::default()
        };
        assert!(toml::to_string(&set).unwrap().contains("linger_ms = 5\n"));
        // A linger of seconds is refused, saying what is allowed.
        assert_eq!(set.validate(), Ok(()));
        let long = UploadConfig {
            linger_ms: MAX_LINGER_MS + 1,
            ..UploadConfig::default()
        };
        let err = long.validate().unwrap_err();
        assert!(
            err.contains("upload.linger_ms = 1001") && err.contains("0..=1000"),
            "{err}"
        );
        let most = UploadConfig {
            linger_ms: MAX_LINGER_MS,
            ..UploadConfig::default()
        };
        assert_eq!(most.validate(), Ok(()));
    }
}
