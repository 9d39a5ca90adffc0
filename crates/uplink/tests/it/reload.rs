//! A running sensor and its configuration: SIGHUP restarts the sources whose settings changed
//! (nothing queued lost, no line twice), and `sensor status` shows where each source stands and
//! how many heartbeats a full queue made it skip. Against the real service on loopback.

use crate::support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::sensor::Sensor;
use support::*;

/// `sensor status --json` shows `path` queued to its end, and the queue empty.
fn drained(sensor: &Sensor, paths: &[&Path]) -> bool {
    let st = sensor.status();
    let files = st["sources"]["files"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    st["queue"]["events"] == 0
        && paths.iter().all(|p| {
            files.iter().any(|f| {
                f["path"] == p.display().to_string()
                    && f["behind"] == 0
                    && f["offset"] == std::fs::metadata(p).unwrap().len()
            })
        })
}

fn count(log: &Path, needle: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches(needle)
        .count()
}

/// Every `line n=N` for N in 0..n stored exactly once, and the events of each kind.
#[track_caller]
fn assert_stored(data: &Path, ws: &str, n: u64, heartbeats: usize, inventories: usize) {
    let rows = exported(data, ws);
    let ns = support::sensor::log_line_numbers(&rows);
    support::sensor::assert_each_once(ns, n, "lines");
    let of = |k: &str| rows.iter().filter(|(_, _, v)| v["kind"] == k).count();
    assert_eq!(
        (of("heartbeat"), of("inventory")),
        (heartbeats, inventories),
        "heartbeats and inventories"
    );
}

fn setup(name: &str) -> (tempfile::TempDir, ServiceProc, Sensor, PathBuf) {
    support::sensor::with_logs(name)
}

#[test]
fn sighup_restarts_changed_sources_and_loses_or_repeats_no_line() {
    let (dir, svc, sensor, logs) = setup("hupsrc");
    let data = dir.path().join("service");
    let (a, b) = (logs.join("a.log"), logs.join("b.log"));
    // One heartbeat and one inventory per start of the sources: the counts below are exact.
    sensor.edit_config("heartbeat_secs = 60", "heartbeat_secs = 3600");
    sensor.add_config(&format!(
        "[[sources.files]]\npaths = [{:?}]\n",
        a.display().to_string()
    ));
    support::sensor::write_log_lines(&a, 0..1000);
    let log = dir.path().join("run.log");
    let child = sensor.spawn_run(&log);
    let context = || sensor.context(&log);
    let logged = |needle: &str, n: usize| {
        poll_until(needle, 30, || count(&log, needle) == n, context);
    };
    let delivered = |files: &[&Path]| {
        poll_until("files delivered", 60, || drained(&sensor, files), context);
    };
    delivered(&[&a]);

    // A second file group, and more lines in both files, then SIGHUP.
    sensor.add_config(&format!(
        "[[sources.files]]\npaths = [{:?}]\n",
        b.display().to_string()
    ));
    support::sensor::write_log_lines(&b, 1000..2000);
    support::sensor::write_log_lines(&a, 2000..3000);
    signal(child.id(), "HUP");
    logged("sources restarted with the reloaded settings", 1);
    delivered(&[&a, &b]);
    assert!(
        count(&log, "following file") >= 3,
        "a.log twice (before and after the reload) and b.log once:\n{}",
        context()
    );

    // A reload that changes nothing in [sources] leaves them running.
    support::sensor::write_log_lines(&a, 3000..3100);
    signal(child.id(), "HUP");
    logged("configuration reloaded", 2);
    delivered(&[&a, &b]);
    assert_eq!(count(&log, "sources restarted"), 1, "{}", context());

    // A reload with a broken [sources] keeps the running sources.
    sensor.add_config("[[sources.files]]\npaths = [\"relative.log\"]\n");
    signal(child.id(), "HUP");
    logged("configuration reload failed", 1);
    support::sensor::write_log_lines(&a, 3100..3200);
    // (`sensor status` refuses the broken file too: mend it, without a reload.)
    sensor.edit_config("[[sources.files]]\npaths = [\"relative.log\"]\n", "");
    delivered(&[&a, &b]);
    assert_eq!(count(&log, "sources restarted"), 1, "{}", context());

    signal(child.id(), "TERM");
    let status = wait_exit(child, Duration::from_secs(20)).expect("stopped within 20 s of SIGTERM");
    assert!(status.success(), "{status}\n{}", context());
    assert_stored(&data, "hupsrc", 3200, 2, 2);

    // `sensor status` in words: the files, their positions, the heartbeats.
    let text = ok(
        uplink(&["sensor", "status", "--config-dir", sensor.cfg()]),
        "status",
    );
    for want in [
        format!(
            "{}: queued through byte {}, 0 bytes behind",
            a.display(),
            std::fs::metadata(&a).unwrap().len()
        ),
        format!(
            "{}: queued through byte {}, 0 bytes behind",
            b.display(),
            std::fs::metadata(&b).unwrap().len()
        ),
        "heartbeats    2 queued, none skipped".to_owned(),
        "certificate   valid until ".to_owned(),
    ] {
        assert!(text.contains(&want), "missing {want:?} in:\n{text}");
    }
    drop(svc);
}

#[test]
fn heartbeats_skipped_on_a_full_queue_are_counted_shown_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    let mut svc = ServiceProc::start(&data);
    let port = svc.port;
    let ws = create_workspace(&data, "skip", port);
    let sensor = Sensor::installed(&dir.path().join("sensor"), &ws, &["--quiet"]);
    sensor.edit_config("max_bytes = 536870912", "max_bytes = 20000");
    sensor.edit_config("heartbeat_secs = 60", "heartbeat_secs = 1");
    // The service goes away: nothing can drain the queue, which `send` then fills.
    let mut gone = svc.take();
    gone.kill().unwrap();
    gone.wait().unwrap();
    let mut sent = 0u64;
    loop {
        let line = format!(
            "{{\"kind\":\"logon\",\"n\":{sent},\"pad\":\"{}\"}}\n",
            "p".repeat(300)
        );
        let out = sensor.send(&line);
        if out.status.code() == Some(3) {
            break;
        }
        ok(out, "send");
        sent += 1;
        assert!(sent < 1000, "a 20 kB queue never filled");
    }
    let log = dir.path().join("run.log");
    let child = sensor.spawn_run(&log);
    let context = || sensor.context(&log);
    poll_until(
        "three heartbeats skipped",
        30,
        || sensor.status()["sources"]["heartbeats"]["skipped"].as_u64() >= Some(3),
        context,
    );
    let st = sensor.status();
    assert_eq!(st["sources"]["heartbeats"]["queued"], 0, "{st}");
    assert!(
        st["sources"]["heartbeats"]["last_skipped"].is_string(),
        "{st}"
    );
    let text = ok(
        uplink(&["sensor", "status", "--config-dir", sensor.cfg()]),
        "status",
    );
    assert!(text.contains("0 queued, "), "{text}");
    assert!(text.contains(" skipped (queue full)"), "{text}");

    // The service is back: the queue drains, and the next heartbeat says how many were skipped.
    let _svc = ServiceProc::start_at(&data, &format!("127.0.0.1:{port}"));
    let skipped_reported = || {
        exported(&data, "skip").iter().any(|(_, _, v)| {
            v["kind"] == "heartbeat" && v["event"]["skipped_heartbeats"].as_u64() >= Some(3)
        })
    };
    poll_until(
        "a heartbeat reporting the skipped ones",
        60,
        skipped_reported,
        context,
    );
    signal(child.id(), "TERM");
    let status = wait_exit(child, Duration::from_secs(20)).expect("stopped within 20 s of SIGTERM");
    assert!(status.success(), "{status}\n{}", context());
    let rows = exported(&data, "skip");
    support::sensor::assert_n_exactly_once(&rows, "logon", sent);
    // The inventory waited for room rather than being skipped.
    assert_eq!(
        rows.iter()
            .filter(|(_, _, v)| v["kind"] == "inventory")
            .count(),
        1
    );
}

/// `sensor status` reflects every delivered batch as soon as the queue is empty, not at the next
/// heartbeat: status is written at most once a second while batches flow, and once more when
/// they stop. (A newcomer saw `last success never` and a full queue for a minute after delivery.)
#[test]
fn status_shows_every_delivered_batch_once_the_queue_is_empty() {
    let (dir, svc, sensor, _logs) = support::sensor::with_logs("fresh");
    // Small batches: many uploads within the one-second status interval.
    sensor.set_upload(100);
    let run_log = dir.path().join("run.log");
    let run = sensor.spawn_run(&run_log);
    const N: u64 = 3000;
    ok(sensor.send(&ndjson(0..N, "probe")), "send");
    let data = dir.path().join("service");
    poll_until(
        "every event at the service",
        60,
        || support::sensor::rows_of_kind(&exported(&data, "fresh"), "probe").len() as u64 == N,
        || sensor.context(&run_log),
    );
    // The service has them all: status follows within moments (the heartbeat is 60 s away).
    poll_until(
        "sensor status to show the delivered events and an empty queue",
        5,
        || {
            let st = sensor.status();
            st["delivered"].as_u64().unwrap_or(0) >= N
                && st["queue"]["events"].as_u64() == Some(0)
                && st["last_success"].is_string()
        },
        || format!("{}\n{}", sensor.status(), sensor.context(&run_log)),
    );
    signal(run.id(), "TERM");
    assert!(
        wait_exit(run, Duration::from_secs(20)).is_some(),
        "{}\n{}",
        sensor.context(&run_log),
        svc.log()
    );
}
