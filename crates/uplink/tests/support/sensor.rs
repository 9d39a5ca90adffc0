//! A sensor under test: installed in its own `--config-dir`, driven through the real binary.

use std::path::{Path, PathBuf};
use std::process::Output;

use super::{ok, uplink, uplink_cmd, with_stdin, Ws};

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
        uplink(&[
            "sensor",
            "run",
            "--once",
            "--timeout",
            &timeout.to_string(),
            "--config-dir",
            self.cfg(),
            "--log-level",
            "debug",
        ])
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

    /// Makes batches smaller (so that more uploads are in flight during a run).
    pub fn set_upload(&self, batch_events: usize) {
        let path = self.dir.join("sensor.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let text = text.replace(
            "batch_events = 5000",
            &format!("batch_events = {batch_events}"),
        );
        std::fs::write(path, text).unwrap();
    }
}
