//! The idle sensor gives memory back (crates/memtrim, `sensor run --idle-trim`): once idle it
//! returns free heap and unmaps the read-only pages of its binary and libraries, says so with the
//! figures, and keeps working afterwards (the pages are mapped again when used).

use std::time::Duration;

use super::support::daemon::Daemon;
use super::support::sensor::with_logs;
use super::support::{exported, ndjson, ok, poll_until, uplink_cmd};

/// `name=N` of a tracing line, as a number.
fn field(line: &str, name: &str) -> u64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name}=N in {line:?}"))
}

#[test]
fn idle_sensor_gives_memory_back_and_keeps_delivering() {
    let (dir, _svc, sensor, _logs) = with_logs("memtrim");
    let run = Daemon::spawn(
        "sensor run",
        uplink_cmd(&[
            "sensor",
            "run",
            "--config-dir",
            sensor.cfg(),
            "--log-level",
            "info",
            "--idle-trim",
            "1s",
        ]),
    );
    // Generous: the first idle second comes after the start's events, on a loaded machine.
    run.expect(
        "idle: memory given back to the system",
        Duration::from_secs(120),
    );
    let log = run.log();
    let line = log
        .lines()
        .find(|l| l.contains("idle: memory given back"))
        .unwrap();
    let (before, after) = (field(line, "rss_before_kib"), field(line, "rss_after_kib"));
    assert!(
        after < before && field(line, "read_only_unmapped_kib") > 0,
        "the trim gave nothing back: {line}"
    );

    // Still working after its code pages were unmapped: events queued now are delivered, once.
    ok(sensor.send(&ndjson(0..5000, "after-trim")), "sensor send");
    let data = dir.path().join("service");
    let stored = || {
        exported(&data, "memtrim")
            .iter()
            .filter(|(_, _, v)| v["kind"] == "after-trim")
            .count()
    };
    poll_until(
        "5000 events delivered after the trim",
        120,
        || stored() >= 5000,
        || run.log(),
    );
    assert_eq!(stored(), 5000, "{}", run.log());
    // Busy (5000 events are well over 10 ms of CPU), then idle again: it trims a second time.
    poll_until(
        "a second trim after the upload",
        120,
        || run.log().matches("idle: memory given back").count() >= 2,
        || run.log(),
    );
}
