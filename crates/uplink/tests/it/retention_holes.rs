//! Retention that never passes a hole (issue #28), through the binary on both backends.
//!
//! A sensor with several batches in flight can have a later batch committed while an earlier
//! one failed. If it then stays away longer than the retention period, retention removes the
//! later batch and its watermark passes the earlier batch's seqs; when that batch finally
//! arrives it must be stored (once), not answered "duplicate" and deleted from the sensor. Here
//! a sensor-like uploader (curl with the sensor's certificate) commits batches out of order, the
//! events are aged through a backup (as `retention::` does), the service's periodic retention
//! prunes them, and the missing batch arrives. Counted by export.
//!
//! Also here (the same issue's uploader item): a 503's `Retry-After` is honoured.

use std::path::Path;

use crate::retention::{aged_copy_where, Target};
use crate::support::postgres::Cluster;
use crate::support::*;

/// Posts events `seqs` as sensor `who`; the service's answer.
fn post(
    ws: &Ws,
    port: u16,
    who: &Enrolled,
    dir: &Path,
    seqs: std::ops::Range<u64>,
    log: &dyn Fn() -> String,
) -> serde_json::Value {
    let batch = dir.join(format!("batch-{}-{}.ndjson", seqs.start, seqs.end));
    std::fs::write(&batch, ndjson(seqs, "event")).unwrap();
    let (status, body) = post_events(ws, port, Some(who), &batch, &[]);
    assert_eq!(status, 200, "{body}\n{}", log());
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn answer(accepted: u64, duplicates: u64) -> serde_json::Value {
    serde_json::json!({"accepted": accepted, "duplicates": duplicates})
}

/// The scenario on `first`'s store, aged into `aged` (which `before_copy` gives the same
/// master key); `extra` is what else to show when something fails (the PostgreSQL log).
fn late_batch_is_stored_once(
    first: &Target,
    aged: &Target,
    dir: &Path,
    name: &str,
    before_copy: &dyn Fn(),
    extra: &dyn Fn() -> String,
) {
    let (ws, sensor) = {
        let svc = first.service(&[]);
        let ws = first.create(dir, name, svc.port);
        let sensor = enroll_with_openssl(dir, &ws, svc.port, "s1");
        let log = || format!("{}\n{}", svc.log(), extra());
        // Batches 0..10, then 20..30 and 30..35: 10..20 was in flight and failed.
        assert_eq!(
            post(&ws, svc.port, &sensor, dir, 0..10, &log),
            answer(10, 0)
        );
        assert_eq!(
            post(&ws, svc.port, &sensor, dir, 20..30, &log),
            answer(10, 0)
        );
        assert_eq!(
            post(&ws, svc.port, &sensor, dir, 30..35, &log),
            answer(5, 0)
        );
        (ws, sensor)
    };
    // The sensor stays away 31 days: its first batches are past the 30 days' retention.
    before_copy();
    let (_, n) = aged_copy_where(first, aged, dir, |seq| seq < 30, 31);
    assert_eq!(n, 20);
    let svc = aged.service(&["--retention-interval", "200ms"]);
    let log = || format!("{}\n{}", svc.log(), extra());
    poll_until(
        "the service's retention removed the old events",
        60,
        || aged.total(name) == 5,
        log,
    );
    assert_eq!(aged.seqs(name), (30..35).collect::<Vec<_>>());
    // A backup carries the hole with the watermark (a restore adds it back after the watermark).
    assert_eq!(
        backed_up_sensor(aged, dir),
        (Some(29), serde_json::json!([[10, 19]])),
        "{}",
        log()
    );
    // Retried copies of what retention removed stay duplicates...
    assert_eq!(
        post(&ws, svc.port, &sensor, dir, 0..10, &log),
        answer(0, 10)
    );
    assert_eq!(
        post(&ws, svc.port, &sensor, dir, 20..30, &log),
        answer(0, 10)
    );
    // ...the batch that never arrived is stored, once.
    assert_eq!(
        post(&ws, svc.port, &sensor, dir, 10..20, &log),
        answer(10, 0)
    );
    assert_eq!(
        post(&ws, svc.port, &sensor, dir, 10..20, &log),
        answer(0, 10)
    );
    assert_eq!(
        post(&ws, svc.port, &sensor, dir, 35..40, &log),
        answer(5, 0)
    );
    let mut seqs = aged.seqs(name);
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (10..20).chain(30..40).collect::<Vec<_>>(),
        "each seq exactly once\n{}",
        log()
    );
    assert_eq!(aged.total(name), 20, "{}", log());
    // Filled: no hole left to copy.
    assert_eq!(
        backed_up_sensor(aged, dir).1,
        serde_json::Value::Null,
        "{}",
        log()
    );
}

/// `store backup` of `target`'s only sensor: its watermark and holes as written.
fn backed_up_sensor(target: &Target, dir: &Path) -> (Option<u64>, serde_json::Value) {
    let file = dir.join("holes-backup.ndjson");
    crate::support::ok(
        target.run(&["store", "backup", "--to", file.to_str().unwrap()]),
        "store backup",
    );
    let text = std::fs::read_to_string(&file).unwrap();
    let sensors: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter_map(|v| v.get("sensor").cloned())
        .collect();
    assert_eq!(sensors.len(), 1, "{text}");
    (
        sensors[0]["pruned_through"].as_u64(),
        sensors[0]["pruned_holes"].clone(),
    )
}

#[test]
fn a_batch_committed_after_a_later_one_survives_retention_and_is_stored_once() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let copy_dir = tmp.path().join("copy");
    let first = Target::dir(&data);
    let aged = Target::dir(&copy_dir);
    // The copy opens with the first store's master key, made with it.
    let copy_key = || {
        std::fs::copy(data.join("master.key"), copy_dir.join("master.key")).unwrap();
    };
    late_batch_is_stored_once(&first, &aged, tmp.path(), "holes", &copy_key, &String::new);
}

#[test]
fn postgres_a_batch_committed_after_a_later_one_survives_retention_and_is_stored_once() {
    let cluster = Cluster::start().unwrap();
    cluster.psql("uplink", "CREATE DATABASE aged");
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("master.key");
    let first = Target::pg(&cluster, "uplink", &key);
    let aged = Target::pg(&cluster, "aged", &key);
    late_batch_is_stored_once(&first, &aged, tmp.path(), "pgholes", &|| {}, &|| {
        cluster.log_text()
    });
    // The next prune (the service's ran or not before it stopped) takes the seqs that arrived
    // out of the hole, then deletes their `seen` rows like any other below the watermark (the
    // watermark makes their retries duplicates): nothing of the hole is left, the events stay.
    crate::support::ok(aged.run(&["store", "prune"]), "store prune");
    assert_eq!(
        cluster.psql("aged", "SELECT count(*) FROM pruned_holes"),
        "0"
    );
    assert_eq!(
        cluster.psql(
            "aged",
            "SELECT count(*) FROM seen n JOIN sensors s ON s.id = n.sensor WHERE n.seq <= s.pruned_through"
        ),
        "0"
    );
    assert_eq!(aged.total("pgholes"), 20);
}

/// A service whose store is gone answers every request 503 with `Retry-After: 5`: the sensor
/// waits at least that long between attempts (its own backoff alone would start at 250 ms and
/// try six times or more in the run's 15 s), says so once, and keeps every event queued.
#[test]
fn a_503_retry_after_is_honoured_and_said_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    let svc = ServiceProc::start(&data);
    let ws = create_workspace(&data, "busy", svc.port);
    let sensor =
        crate::support::sensor::Sensor::installed(&dir.path().join("sensor"), &ws, &["--quiet"]);
    ok(
        sensor.send(&crate::support::sensor::logon_lines(0..200)),
        "send",
    );
    for f in ["uplink.db", "uplink.db-wal", "uplink.db-shm"] {
        let _ = std::fs::remove_file(data.join(f));
    }
    let started = std::time::Instant::now();
    let (text, status) = sensor.run_once_failing(15, "SERVICE_UNAVAILABLE");
    let context = || format!("{text}\nservice log:\n{}", svc.log());
    let attempts = text.matches("upload failed; will retry").count();
    assert!(
        (2..=3).contains(&attempts),
        "{attempts} attempts in {:?}: the Retry-After was not honoured\n{}",
        started.elapsed(),
        context()
    );
    assert_eq!(
        text.matches("asked to be retried later (Retry-After)")
            .count(),
        1,
        "said once\n{}",
        context()
    );
    // Two attempts at least 5 s apart.
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(5),
        "{}",
        context()
    );
    // Every event still queued (with the sensor's own heartbeat and inventory, refused too).
    let queued = status["queue"]["events"].as_u64().unwrap();
    assert!(queued >= 200, "{status}");
}
