//! A sensor under test: installed in its own `--config-dir`, driven through the real binary.

use std::path::{Path, PathBuf};
use std::process::Output;

use super::{ok, uplink, uplink_cmd, with_stdin, Ws};

/// `uplink sensor proxy set --config-dir CFG --url URL --user USER`, the password given the way
/// an installer would (`UPLINK_PROXY_PASSWORD`, never on the command line).
pub fn proxy_set_with_password(cfg: &str, url: &str, user: &str, password: &str) -> Output {
    super::uplink_cmd(&[])
        .args([
            "sensor",
            "proxy",
            "set",
            "--config-dir",
            cfg,
            "--url",
            url,
            "--user",
            user,
        ])
        .env("UPLINK_PROXY_PASSWORD", password)
        .output()
        .unwrap()
}

/// `sensor run --once --timeout SECS --config-dir DIR`, for the commands that wrap it (in a
/// namespace, with a lease, under Kerberos).
pub fn run_once_args<'a>(cfg: &'a str, timeout: &'a str) -> [&'a str; 7] {
    [
        "sensor",
        "run",
        "--once",
        "--timeout",
        timeout,
        "--config-dir",
        cfg,
    ]
}

/// A sensor installed in its own --config-dir.
pub struct Sensor {
    pub dir: PathBuf,
}

impl Sensor {
    pub fn install(dir: &Path, ws: &Ws, extra: &[&str]) -> Output {
        let mut args = vec![
            "sensor",
            "install",
            "--bundle",
            ws.bundle_path.to_str().unwrap(),
            "--config-dir",
            dir.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        uplink(&args)
    }

    pub fn installed(dir: &Path, ws: &Ws, extra: &[&str]) -> Sensor {
        ok(Self::install(dir, ws, extra), "sensor install");
        Sensor {
            dir: dir.to_path_buf(),
        }
    }

    pub fn cfg(&self) -> &str {
        self.dir.to_str().unwrap()
    }

    pub fn send(&self, input: &str) -> Output {
        with_stdin(
            uplink_cmd(&["sensor", "send", "--config-dir", self.cfg()]),
            input,
        )
    }

    pub fn run_once(&self, timeout: u64) -> Output {
        let timeout = timeout.to_string();
        let mut args = run_once_args(self.cfg(), &timeout).to_vec();
        args.extend(["--log-level", "debug"]);
        uplink(&args)
    }

    pub fn status(&self) -> serde_json::Value {
        serde_json::from_str(&ok(
            uplink(&["sensor", "status", "--config-dir", self.cfg(), "--json"]),
            "sensor status",
        ))
        .unwrap()
    }

    /// `uplink sensor proxy ARGS --config-dir DIR`.
    pub fn proxy(&self, args: &[&str]) -> Output {
        let mut all = vec!["sensor", "proxy"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--config-dir", self.cfg()]);
        uplink(&all)
    }

    /// `run --once` that must fail (exit 1) with `code`: named in what it printed and as the last
    /// error in `sensor status`. Returns what it printed (stdout and stderr) and the status.
    #[track_caller]
    pub fn run_once_failing(&self, timeout: u64, code: &str) -> (String, serde_json::Value) {
        let run = self.run_once(timeout);
        let text = format!("{}{}", super::stdout(&run), super::stderr(&run));
        assert_eq!(run.status.code(), Some(1), "{text}");
        assert!(text.contains(code), "{code} not in: {text}");
        let status = self.status();
        assert_eq!(status["last_error"]["code"], code, "{status}");
        (text, status)
    }

    /// For failure messages: the status (or why there is none), the file checkpoint as stored,
    /// and the log of a `spawn_run` written to `run_log`.
    pub fn context(&self, run_log: &Path) -> String {
        let status = uplink(&["sensor", "status", "--json", "--config-dir", self.cfg()]);
        format!(
            "status {}{}\ncheckpoint {}\nsensor log:\n{}",
            super::stdout(&status),
            super::stderr(&status),
            std::fs::read_to_string(self.dir.join("sources/files.json")).unwrap_or_default(),
            std::fs::read_to_string(run_log).unwrap_or_default()
        )
    }

    /// `sensor proxy show --json`, parsed.
    pub fn proxy_show(&self) -> serde_json::Value {
        let text = ok(self.proxy(&["show", "--json"]), "sensor proxy show --json");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("proxy show: not JSON ({e}): {text}"))
    }

    /// Makes batches smaller (so that more uploads are in flight during a run).
    pub fn set_upload(&self, batch_events: usize) {
        self.set_upload_lines(&format!("batch_events = {batch_events}"));
    }

    /// Replaces the installed `upload.batch_events` line (the default) with `lines`: its own and
    /// any other `[upload]` settings.
    pub fn set_upload_lines(&self, lines: &str) {
        let default = format!(
            "batch_events = {}",
            uplink_sensor::config::DEFAULT_BATCH_EVENTS
        );
        self.edit_config(&default, lines);
    }
}

/// An exported row: (sensor id, seq, the whole export line).
pub type Row = (String, u64, serde_json::Value);

/// The kinds `sensor run` adds on its own (one heartbeat and one inventory per `--once`).
pub const OWN_KINDS: [&str; 2] = ["heartbeat", "inventory"];

/// Appends lines `line n=N some text to make it a log line` to `path` (created if missing), one
/// per N of `range`, in one write: what [`log_line_numbers`] reads back.
pub fn write_log_lines(path: &Path, range: std::ops::Range<u64>) {
    use std::io::Write;
    let text: String = range
        .map(|n| format!("line n={n} some text to make it a log line\n"))
        .collect();
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}

/// The length of the file at `p`, 0 when there is none.
pub fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// The N of every `log` event among `rows` whose line reads `line n=N ...` (the file sources'
/// tests write such lines), checked as [`rows_of_kind`] checks them; any other line fails.
pub fn log_line_numbers(rows: &[Row]) -> Vec<u64> {
    rows_of_kind(rows, "log")
        .iter()
        .map(|(_, _, v)| {
            v["event"]["line"]
                .as_str()
                .and_then(|l| l.strip_prefix("line n="))
                .and_then(|r| r.split(' ').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("unexpected line {v}"))
        })
        .collect()
}

/// The rows of `kind`, in seq order, after checking that every other row is one the sensor adds
/// itself (heartbeat, inventory) and that no seq of a sensor appears twice.
#[track_caller]
pub fn rows_of_kind(rows: &[Row], kind: &str) -> Vec<Row> {
    let mut seen = std::collections::HashSet::new();
    for (id, seq, v) in rows {
        assert!(
            seen.insert((id.clone(), *seq)),
            "seq {seq} of {id} stored twice"
        );
        let k = v["kind"].as_str().unwrap_or("");
        assert!(
            k == kind || OWN_KINDS.contains(&k),
            "unexpected event kind {k:?}: {v}"
        );
    }
    let mut out: Vec<Row> = rows
        .iter()
        .filter(|(_, _, v)| v["kind"] == kind)
        .cloned()
        .collect();
    out.sort_by_key(|(_, s, _)| *s);
    out
}

/// Events `{"n": 0..n}` of `kind` arrived exactly once each, in the order they were queued (seq
/// order), interleaved with nothing but the sensor's own heartbeats and inventories.
#[track_caller]
pub fn assert_n_exactly_once(rows: &[Row], kind: &str, n: u64) {
    let ns: Vec<u64> = rows_of_kind(rows, kind)
        .iter()
        .map(|(_, _, v)| {
            v["event"]["n"]
                .as_u64()
                .unwrap_or_else(|| panic!("no n: {v}"))
        })
        .collect();
    if ns != (0..n).collect::<Vec<_>>() {
        let missing: Vec<u64> = (0..n).filter(|i| !ns.contains(i)).take(10).collect();
        panic!(
            "expected n 0..{n} exactly once in seq order; got {} events, first missing {missing:?}",
            ns.len()
        );
    }
}

impl Sensor {
    /// Appends TOML (e.g. `[[sources.files]]` tables) to sensor.toml.
    pub fn add_config(&self, toml: &str) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.join("sensor.toml"))
            .unwrap();
        writeln!(f, "\n{toml}").unwrap();
    }

    /// Replaces text in sensor.toml (panics if it is not there).
    pub fn edit_config(&self, from: &str, to: &str) {
        let path = self.dir.join("sensor.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{from:?} not in sensor.toml:\n{text}");
        std::fs::write(path, text.replace(from, to)).unwrap();
    }

    /// `uplink sensor run` in the background, its stderr to `log` (a file, for failure messages).
    pub fn spawn_run(&self, log: &Path) -> std::process::Child {
        uplink_cmd(&[
            "sensor",
            "run",
            "--config-dir",
            self.cfg(),
            "--log-level",
            "info",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("start sensor run")
    }

    /// The file tailer's checkpoint: (path, offset) of each file followed.
    pub fn file_checkpoint(&self) -> Vec<(String, u64)> {
        let Ok(bytes) = std::fs::read(self.dir.join("sources").join("files.json")) else {
            return Vec::new();
        };
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        v["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["path"].as_str().unwrap().to_owned(),
                    f["offset"].as_u64().unwrap(),
                )
            })
            .collect()
    }
}

/// A service on loopback with workspace `name`, a sensor installed in `DIR/sensor`, and an empty
/// `DIR/logs` for files to tail. (The service's data is in `DIR/service`.)
pub fn with_logs(name: &str) -> (tempfile::TempDir, super::ServiceProc, Sensor, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    let svc = super::ServiceProc::start(&data);
    let ws = super::create_workspace(&data, name, svc.port);
    let sensor = Sensor::installed(&dir.path().join("sensor"), &ws, &["--quiet"]);
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    (dir, svc, sensor, logs)
}

/// Every number of 0..n exactly once in `ns` (in any order): names the first duplicates and the
/// first missing ones when not.
#[track_caller]
pub fn assert_each_once(mut ns: Vec<u64>, n: u64, what: &str) {
    ns.sort_unstable();
    let dups: Vec<u64> = ns
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| w[0])
        .take(10)
        .collect();
    let missing: Vec<u64> = (0..n)
        .filter(|i| ns.binary_search(i).is_err())
        .take(10)
        .collect();
    assert!(
        dups.is_empty() && missing.is_empty() && ns.len() as u64 == n,
        "expected {what} 0..{n} once each: got {}, duplicates {dups:?}, missing {missing:?}",
        ns.len()
    );
}

/// Asserts the workspace holds exactly `n` `logon` events from `sensor_id`, n = 0..n, each once
/// and in the order sent; besides them only the heartbeats and inventories `sensor run` adds.
#[track_caller]
pub fn assert_logons_exactly_once(data_dir: &Path, ws: &str, sensor_id: &str, n: u64) {
    let rows = super::exported(data_dir, ws);
    for (id, _, _) in &rows {
        assert_eq!(id, sensor_id);
    }
    assert_n_exactly_once(&rows, "logon", n);
}

/// `logon` events n = `range`, one JSON line each (~250 B), as `sensor send` reads them and
/// [`assert_logons_exactly_once`] counts them.
pub fn logon_lines(range: std::ops::Range<u64>) -> String {
    range
        .map(|i| {
            format!(
                "{{\"kind\":\"logon\",\"user\":\"user{i}\",\"n\":{i},\"pad\":\"{}\"}}\n",
                "p".repeat(200)
            )
        })
        .collect()
}

/// The sensor's queue's acknowledged high-water mark (from its meta.bin), if any.
pub fn acked_through(cfg: &Path) -> Option<u64> {
    let bytes = std::fs::read(cfg.join("queue").join("meta.bin")).ok()?;
    uplink_queue::record::meta::decode(&bytes)
        .ok()?
        .acked_through
}
