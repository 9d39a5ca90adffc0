//! Client certificate renewal against the real service: a workspace whose certificates are
//! issued for 20 seconds (`uplink workspace set --client-cert-validity 20s`), a sensor running
//! continuously renews at two thirds of their life over mutual TLS on its own route (straight,
//! and through Squid), and keeps uploading after its first certificate has expired, with every
//! event delivered exactly once.

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

/// Sets the workspace's certificate validity to 20 s and waits until the service issues such.
fn short_validity(data: &std::path::Path, svc: &ServiceProc, name: &str) {
    let set = crate::lifecycle::set_workspace(
        data,
        svc,
        name,
        &["--client-cert-validity", "20s"],
        &["client_cert_validity_secs=20 "],
    );
    assert_eq!(set["client_cert_validity_secs"], 20, "{set}");
}

#[test]
fn a_running_sensor_renews_before_expiry_and_keeps_uploading_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    let svc = ServiceProc::start(&data);
    let ws = create_workspace(&data, "renewal", svc.port);
    short_validity(&data, &svc, "renewal");
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

/// The renewal goes the sensor's own way: installed with an explicit proxy (never DIRECT), the
/// sensor renews through Squid (the tunnel is in Squid's log), keeps uploading through it after
/// its first certificate expired, and every event arrives once.
#[test]
fn a_sensor_behind_squid_renews_through_the_proxy() {
    use support::squid::{Squid, SquidOptions};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    let svc = ServiceProc::start(&data);
    let ws = create_workspace(&data, "renewsquid", svc.port);
    short_validity(&data, &svc, "renewsquid");
    let mut squid = Squid::start(SquidOptions {
        hosts: vec![ws.sensor_host.clone()],
        ..Default::default()
    });
    let cfg = dir.path().join("sensor");
    let sensor = Sensor::installed(&cfg, &ws, &["--quiet", "--proxy-url", &squid.url()]);
    let first = expiry(&sensor);
    let first_at = SystemTime::from(
        time::OffsetDateTime::parse(&first, &time::format_description::well_known::Rfc3339)
            .unwrap(),
    );
    let log = dir.path().join("run.log");
    let run = uplink_cmd(&["sensor", "run", "--config-dir", sensor.cfg()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let context = || {
        format!(
            "{}\nsquid:\n{}\nservice:\n{}",
            sensor.context(&log),
            squid.logs(),
            svc.log()
        )
    };
    ok(sensor.send(&events("before", 0..100)), "send");
    poll_until(
        "the first events through Squid",
        30,
        || delivered(&data, "renewsquid", "before").len() == 100,
        context,
    );
    let tunnels = |s: &Squid| {
        s.access_log()
            .lines()
            .filter(|l| l.contains("CONNECT") && l.contains(&ws.sensor_host))
            .count()
    };
    // The install's enrollment went through Squid too (logged once its tunnel closed).
    poll_until(
        "Squid to log a tunnel to the service",
        20,
        || tunnels(&squid) >= 1,
        context,
    );
    poll_until(
        "a renewed certificate",
        40,
        || expiry(&sensor) != first,
        context,
    );
    poll_until(
        "the first certificate to expire",
        30,
        || SystemTime::now() > first_at + Duration::from_secs(1),
        context,
    );
    ok(sensor.send(&events("after", 0..100)), "send after expiry");
    poll_until(
        "events after the expiry, through Squid",
        30,
        || delivered(&data, "renewsquid", "after").len() >= 100,
        context,
    );
    signal(run.id(), "TERM");
    assert!(
        wait_exit(run, Duration::from_secs(15)).is_some_and(|s| s.success()),
        "{}",
        context()
    );
    assert_eq!(
        delivered(&data, "renewsquid", "before"),
        (0..100).collect::<Vec<_>>()
    );
    assert_eq!(
        delivered(&data, "renewsquid", "after"),
        (0..100).collect::<Vec<_>>()
    );
    // The only route is the proxy: the status says so, and the service renewed the sensor.
    assert_eq!(
        sensor.status()["route"],
        format!("PROXY 127.0.0.1:{}", squid.port),
        "{}",
        context()
    );
    assert!(
        svc.log().contains("sensor certificate renewed"),
        "{}",
        context()
    );
    let run_log = std::fs::read_to_string(&log).unwrap();
    assert!(
        run_log.contains("client certificate renewed"),
        "{}",
        context()
    );
    // Squid tunnelled the install and the running sensor (it writes its log out when it stops).
    let access = squid.stop();
    let tunnels = access
        .lines()
        .filter(|l| l.contains("CONNECT") && l.contains(&ws.sensor_host))
        .count();
    assert!(tunnels >= 2, "{access}");
}
