//! Client certificate renewal against the real service: certificates issued for 20 seconds, a
//! sensor running continuously renews before expiry over mutual TLS, and keeps uploading after
//! its first certificate has expired, with every event delivered exactly once.

use crate::support;

use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use support::sensor::Sensor;
use support::*;

fn events(kind: &str, range: std::ops::Range<u64>) -> String {
    range
        .map(|i| format!("{{\"kind\":\"{kind}\",\"n\":{i}}}\n"))
        .collect()
}

fn delivered(data: &std::path::Path, ws: &str, kind: &str) -> Vec<u64> {
    let mut n: Vec<u64> = exported(data, ws)
        .iter()
        .filter(|(_, _, v)| v["event"]["kind"] == kind)
        .map(|(_, _, v)| v["event"]["n"].as_u64().unwrap())
        .collect();
    n.sort_unstable();
    n
}

/// Polls `f` until it returns Some, or fails after `limit` with `what`.
fn wait_for<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn expiry(sensor: &Sensor) -> String {
    sensor.status()["certificate_expires"]
        .as_str()
        .expect("status shows the certificate's expiry")
        .to_string()
}

#[test]
fn a_running_sensor_renews_before_expiry_and_keeps_uploading_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    let svc = ServiceProc::start_with(&data, &["--client-cert-validity", "20s"]);
    let ws = create_workspace(&data, "renewal", svc.port);
    let cfg = dir.path().join("sensor");
    let sensor = Sensor::installed(&cfg, &ws, &["--quiet"]);
    let first = expiry(&sensor);
    let first_at = SystemTime::from(
        time::OffsetDateTime::parse(&first, &time::format_description::well_known::Rfc3339)
            .unwrap(),
    );
    let run = uplink_cmd(&["sensor", "run", "--config-dir", sensor.cfg()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    ok(sensor.send(&events("before", 0..100)), "send");
    wait_for(Duration::from_secs(20), "the first events", || {
        (delivered(&data, "renewal", "before").len() == 100).then_some(())
    });

    // Renewal: the status shows a later expiry (two thirds into the 20 s lifetime).
    let second = wait_for(Duration::from_secs(30), "a renewed certificate", || {
        let now = expiry(&sensor);
        (now != first).then_some(now)
    });
    assert!(second > first, "{second} after {first}");
    // Then the first certificate's end passes: uploads must go on with the new one.
    wait_for(
        Duration::from_secs(30),
        "the first certificate to expire",
        || (SystemTime::now() > first_at + Duration::from_secs(1)).then_some(()),
    );
    ok(sensor.send(&events("after", 0..100)), "send after expiry");
    wait_for(Duration::from_secs(20), "events after the expiry", || {
        (delivered(&data, "renewal", "after").len() >= 100).then_some(())
    });
    signal(run.id(), "TERM");
    let status = wait_exit(run, Duration::from_secs(15));
    assert!(
        status.is_some_and(|s| s.success()),
        "the sensor exits cleanly on SIGTERM"
    );

    assert_eq!(
        delivered(&data, "renewal", "before"),
        (0..100).collect::<Vec<_>>()
    );
    assert_eq!(
        delivered(&data, "renewal", "after"),
        (0..100).collect::<Vec<_>>()
    );
    // The key stays private, nothing half-switched is left, and the service logged the renewal.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(cfg.join("client.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(!cfg.join("client.key.next").exists() && !cfg.join("client.pem.next").exists());
    assert!(
        svc.log().contains("sensor certificate renewed"),
        "{}",
        svc.log()
    );
}

#[test]
fn renewal_without_a_client_certificate_is_refused_with_a_code() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    let svc = ServiceProc::start(&data);
    let ws = create_workspace(&data, "norenew", svc.port);
    let (code, body) = Curl::new(&ws.sensor_host, svc.port, "/api/v1/renew")
        .arg("--cacert")
        .arg(&ws.ca_file)
        .args(["-X", "POST", "--data", "{\"csr_pem\":\"x\"}"])
        .run();
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("MTLS_REJECTED"), "{body}");
}
