//! Several batches in flight at once (`upload.inflight`): each on its own connection through
//! Squid, acknowledged in the queue only as a contiguous prefix of committed batches. A sensor
//! killed (SIGKILL) with batches in flight, and a service refusing some of them (503: its decode
//! budget is full), lose nothing and store nothing twice: every event is counted by export.

use crate::support;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::sensor::{acked_through, logon_lines as lines, Sensor};
use support::squid::{Squid, SquidOptions};
use support::*;

const PROXY_USER: &str = "CONTOSO\\pipeuser";
const PROXY_PASSWORD: &str = "Pipe-Pa55-w0rd";

/// What the sensor logs when it opens an extra connection for the batches in flight.
const LANE_OPENED: &str = "another connection opened for the batches in flight";

/// A sensor behind Squid (Basic auth), with `batch_events` per batch and 4 batches in flight.
fn sensor_behind_squid(dir: &Path, ws: &Ws, squid: &Squid, batch_events: usize) -> Sensor {
    let sensor = Sensor::installed(
        &dir.join("sensor"),
        ws,
        &[
            "--proxy-url",
            &squid.url(),
            "--proxy-user",
            PROXY_USER,
            "--proxy-password",
            PROXY_PASSWORD,
        ],
    );
    sensor.set_upload_lines(&format!("batch_events = {batch_events}\ninflight = 4"));
    sensor
}

fn run_cmd(sensor: &Sensor, extra: &[&str], log: &Path) -> std::process::Command {
    let mut c = uplink_cmd(&["sensor", "run", "--config-dir", sensor.cfg()]);
    c.args(extra)
        .args(["--log-level", "debug"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    c
}

#[test]
fn sigkill_with_batches_in_flight_loses_and_doubles_nothing() {
    let (dir, svc, ws) = service_with_workspace("pipekill");
    let squid = Squid::start(SquidOptions {
        basic: Some((PROXY_USER, PROXY_PASSWORD)),
        hosts: vec![ws.sensor_host.clone()],
        ..Default::default()
    });
    let sensor = sensor_behind_squid(dir.path(), &ws, &squid, 200);
    let cfg = dir.path().join("sensor");
    let total = 40_000u64;
    ok(sensor.send(&lines(0..total)), "send");

    let mut rng_state = 0x2545f4914f6cdd1du64 ^ u64::from(std::process::id());
    let mut next = || {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        rng_state
    };
    let (mut kills_mid_upload, mut rounds_with_lanes) = (0, 0);
    let mut sent = total;
    for round in 0..10 {
        let before = sensor.status()["queue"]["events"].as_u64().unwrap();
        let log = dir.path().join(format!("run{round}.log"));
        let child = run_cmd(&sensor, &[], &log).spawn().unwrap();
        // Once this run has acknowledged a batch (other batches are in flight then), a random
        // 0-30 ms more, then SIGKILL.
        let acked_at_start = acked_through(&cfg);
        let deadline = Instant::now() + Duration::from_secs(60);
        while acked_through(&cfg) == acked_at_start {
            assert!(
                Instant::now() < deadline,
                "round {round}: the sensor made no progress in 60 s\n{}",
                sensor.context(&log)
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(next() % 30));
        signal(child.id(), "KILL");
        let _ = wait_exit(child, Duration::from_secs(10));
        let after = sensor.status()["queue"]["events"].as_u64().unwrap();
        if after < before && after > 0 {
            kills_mid_upload += 1;
        }
        if std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains(LANE_OPENED)
        {
            rounds_with_lanes += 1;
        }
        // Events keep coming between kills, as from a live source.
        if round % 3 == 2 {
            ok(sensor.send(&lines(sent..sent + 300)), "send more");
            sent += 300;
        }
    }
    assert!(
        kills_mid_upload >= 6,
        "too few kills landed mid-upload ({kills_mid_upload} of 10); the test proves little"
    );
    assert!(
        rounds_with_lanes >= 3,
        "batches were in flight on several connections in only {rounds_with_lanes} of 10 runs"
    );
    let log = dir.path().join("last.log");
    let run = run_cmd(&sensor, &["--once", "--timeout", "120"], &log)
        .status()
        .unwrap();
    assert!(run.success(), "{}\n{}", sensor.context(&log), svc.log());
    let sensor_id = sensor.status()["sensor_id"].as_str().unwrap().to_owned();
    support::sensor::assert_logons_exactly_once(
        &dir.path().join("service"),
        "pipekill",
        &sensor_id,
        sent,
    );
    assert_eq!(sensor.status()["queue"]["events"].as_u64(), Some(0));
}

#[test]
fn batches_the_service_refuses_while_others_are_in_flight_are_sent_again_once() {
    // A decode budget of 1 MiB: one batch of 1,500 events (~390 KB decoded, costing twice that)
    // fits; two at once do not, so the service answers 503 to batches in flight beside another.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    let svc = ServiceProc::start_with(&data, &["--decode-budget-mib", "1"]);
    let ws = create_workspace(&data, "piperefused", svc.port);
    let squid = Squid::start(SquidOptions {
        basic: Some((PROXY_USER, PROXY_PASSWORD)),
        hosts: vec![ws.sensor_host.clone()],
        ..Default::default()
    });
    let sensor = sensor_behind_squid(dir.path(), &ws, &squid, 1_500);
    let total = 45_000u64;
    ok(sensor.send(&lines(0..total)), "send");
    let log = dir.path().join("run.log");
    let run = run_cmd(&sensor, &["--once", "--timeout", "180"], &log)
        .status()
        .unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(run.success(), "{}\n{}", sensor.context(&log), svc.log());
    assert!(
        text.contains(LANE_OPENED),
        "no batch went on a second connection\n{}",
        sensor.context(&log)
    );
    assert!(
        text.contains("SERVICE_UNAVAILABLE"),
        "the service refused no batch: the test proves little\n{}",
        sensor.context(&log)
    );
    let sensor_id = sensor.status()["sensor_id"].as_str().unwrap().to_owned();
    support::sensor::assert_logons_exactly_once(&data, "piperefused", &sensor_id, total);
    assert_eq!(sensor.status()["queue"]["events"].as_u64(), Some(0));
}
