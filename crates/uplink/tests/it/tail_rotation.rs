//! A file rotated away (renamed to a name the glob does not match) or deleted while the sensor
//! is stopped with part of it unread: the restarted sensor finds the renamed file again by its
//! inode and reads it to its end (every line at the service exactly once), and reports a deleted
//! one as lost (`sensor status`) instead of forgetting it silently.

use crate::support;

use std::path::PathBuf;
use std::time::Duration;

use support::sensor::Sensor;
use support::*;

struct Stopped {
    dir: tempfile::TempDir,
    svc: ServiceProc,
    sensor: Sensor,
    logs: PathBuf,
    app: PathBuf,
    /// The checkpoint's offset in `app` at the stop (inside the file).
    stopped_at: u64,
}

/// A sensor following `logs/app.log` (100,000 lines), stopped (SIGTERM) in the middle of it.
fn stopped_mid_file(ws: &str) -> Stopped {
    let (dir, svc, sensor, logs) = support::sensor::with_logs(ws);
    let app = logs.join("app.log");
    // A small queue and small batches: the tailer pauses often, so the stop lands mid-file.
    sensor.edit_config("max_bytes = 536870912", "max_bytes = 1000000");
    sensor.set_upload(300);
    sensor.add_config(&format!(
        "[[sources.files]]\npaths = [{:?}]\n",
        app.display().to_string()
    ));
    support::sensor::write_log_lines(&app, 0..100_000);
    let run_log = dir.path().join("run.log");
    let child = sensor.spawn_run(&run_log);
    let ctx = || format!("{}\nservice log:\n{}", sensor.context(&run_log), svc.log());
    poll_until(
        "some of the file queued",
        60,
        || sensor.file_checkpoint().iter().any(|(_, o)| *o > 0),
        ctx,
    );
    signal(child.id(), "TERM");
    assert!(
        wait_exit(child, Duration::from_secs(60)).is_some_and(|s| s.success()),
        "{}",
        ctx()
    );
    let stopped_at = queued_through(&sensor);
    assert!(
        stopped_at > 0 && stopped_at < support::sensor::file_len(&app),
        "stopped at {stopped_at} of {}: not in the middle, the test proves little",
        support::sensor::file_len(&app)
    );
    Stopped {
        dir,
        svc,
        sensor,
        logs,
        app,
        stopped_at,
    }
}

/// Where the checkpoint says the file is queued through: the pending batch's end if it names
/// one (a stop leaves the last batch's `next` in place; it is in the queue, the restart settles
/// it so).
fn queued_through(sensor: &Sensor) -> u64 {
    let bytes = std::fs::read(sensor.dir.join("sources").join("files.json")).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    v["next"]["position"]["offset"]
        .as_u64()
        .or_else(|| v["files"][0]["offset"].as_u64())
        .unwrap()
}

fn log_ns(s: &Stopped, ws: &str) -> Vec<u64> {
    support::sensor::log_line_numbers(&exported(&s.dir.path().join("service"), ws))
}

#[test]
fn a_file_rotated_away_while_the_sensor_was_stopped_is_read_to_its_end() {
    let s = stopped_mid_file("rotstop");
    assert!(log_ns(&s, "rotstop").len() < 100_000);
    // logrotate's rename while the sensor is stopped, and a new app.log.
    std::fs::rename(&s.app, s.logs.join("app.log.1")).unwrap();
    support::sensor::write_log_lines(&s.app, 100_000..110_000);
    let run = s.sensor.run_once(180);
    assert!(run.status.success(), "{}\n{}", stderr(&run), s.svc.log());
    assert!(
        stderr(&run).contains("found a rotated-away file again by its inode"),
        "{}",
        stderr(&run)
    );
    support::sensor::assert_each_once(log_ns(&s, "rotstop"), 110_000, "lines");
    // Read to its end, the old file is let go: only the new app.log is checkpointed; none lost.
    assert_eq!(
        s.sensor.file_checkpoint(),
        vec![(
            s.app.display().to_string(),
            support::sensor::file_len(&s.app)
        )]
    );
    let st = s.sensor.status();
    assert!(st["sources"].get("lost_files").is_none(), "{st:#}");
}

#[test]
fn a_file_deleted_while_the_sensor_was_stopped_is_reported_lost() {
    let s = stopped_mid_file("rotdel");
    // The lines before the checkpoint's offset were queued; the rest dies with the file.
    let bytes = std::fs::read(&s.app).unwrap();
    let queued = bytes[..s.stopped_at as usize]
        .iter()
        .filter(|b| **b == b'\n')
        .count() as u64;
    std::fs::remove_file(&s.app).unwrap();
    support::sensor::write_log_lines(&s.app, 100_000..110_000);
    let run = s.sensor.run_once(180);
    assert!(run.status.success(), "{}\n{}", stderr(&run), s.svc.log());
    assert!(
        stderr(&run).contains("a followed file is gone"),
        "{}",
        stderr(&run)
    );
    let mut got = log_ns(&s, "rotdel");
    got.sort_unstable();
    let want: Vec<u64> = (0..queued).chain(100_000..110_000).collect();
    assert!(got == want, "got {} lines, want {}", got.len(), want.len());
    let st = s.sensor.status();
    assert_eq!(
        st["sources"]["lost_files"],
        serde_json::json!([{"path": s.app.display().to_string(), "offset": s.stopped_at}]),
        "{st:#}"
    );
}

/// A sensor following `logs/app.log`, which has lines 0..n, read to its end (`--once`).
fn read_to_its_end(ws: &str, n: u64) -> (tempfile::TempDir, ServiceProc, Sensor, PathBuf) {
    let (dir, svc, sensor, logs) = support::sensor::with_logs(ws);
    let app = logs.join("app.log");
    sensor.add_config(&format!(
        "[[sources.files]]\npaths = [{:?}]\n",
        app.display().to_string()
    ));
    support::sensor::write_log_lines(&app, 0..n);
    let run = sensor.run_once(180);
    assert!(run.status.success(), "{}\n{}", stderr(&run), svc.log());
    assert_eq!(
        sensor.file_checkpoint(),
        vec![(app.display().to_string(), support::sensor::file_len(&app))]
    );
    (dir, svc, sensor, logs)
}

#[test]
fn a_file_read_to_its_end_then_deleted_while_stopped_is_not_reported_lost() {
    let (dir, svc, sensor, logs) = read_to_its_end("rotgone", 1_000);
    let app = logs.join("app.log");
    std::fs::remove_file(&app).unwrap();
    support::sensor::write_log_lines(&app, 1_000..1_100);
    let run = sensor.run_once(180);
    assert!(run.status.success(), "{}\n{}", stderr(&run), svc.log());
    assert!(
        stderr(&run).contains("gone, read to its end"),
        "{}",
        stderr(&run)
    );
    let ns = support::sensor::log_line_numbers(&exported(&dir.path().join("service"), "rotgone"));
    support::sensor::assert_each_once(ns, 1_100, "lines");
    let st = sensor.status();
    assert!(st["sources"].get("lost_files").is_none(), "{st:#}");
}

/// A log directory that cannot be listed at a restart (here: not there, as a mount not mounted
/// yet) is not "every file deleted": nothing reported lost, and once it is back app.log goes on
/// from its checkpoint (every line at the service exactly once).
#[test]
fn a_log_directory_not_there_at_a_restart_keeps_its_files_checkpoints() {
    let (dir, svc, sensor, logs) = read_to_its_end("rotdir", 1_000);
    let app = logs.join("app.log");
    let aside = dir.path().join("aside");
    std::fs::rename(&logs, &aside).unwrap();
    let run = sensor.run_once(180);
    assert!(run.status.success(), "{}\n{}", stderr(&run), svc.log());
    assert!(
        stderr(&run).contains("cannot list the directory"),
        "{}",
        stderr(&run)
    );
    let st = sensor.status();
    assert!(st["sources"].get("lost_files").is_none(), "{st:#}");
    assert_eq!(sensor.file_checkpoint().len(), 1, "the checkpoint is kept");
    std::fs::rename(&aside, &logs).unwrap();
    support::sensor::write_log_lines(&app, 1_000..1_100);
    let run = sensor.run_once(180);
    assert!(run.status.success(), "{}\n{}", stderr(&run), svc.log());
    let ns = support::sensor::log_line_numbers(&exported(&dir.path().join("service"), "rotdir"));
    support::sensor::assert_each_once(ns, 1_100, "lines");
    let st = sensor.status();
    assert!(st["sources"].get("lost_files").is_none(), "{st:#}");
}
