//! The sensor against the real service and a real Squid, on loopback.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use support::sensor::{acked_through, logon_lines as lines, Sensor};
use support::squid::{Squid, SquidOptions};
use support::*;

const PROXY_USER: &str = "CONTOSO\\proxyuser";
const PROXY_PASSWORD: &str = "S3cret-Pr0xy-Pa55!";

use support::sensor::assert_logons_exactly_once as assert_exactly_once;

use support::service_with_workspace as setup;

fn all_file_bytes(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            out.extend(all_file_bytes(&p));
        } else {
            out.push((p.clone(), std::fs::read(&p).unwrap()));
        }
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn events_arrive_exactly_once_through_squid_with_basic_auth_and_the_password_stays_secret() {
    let (dir, svc, ws) = setup("contoso");
    let mut squid = Squid::start(SquidOptions {
        basic: Some((PROXY_USER, PROXY_PASSWORD)),
        hosts: vec![ws.sensor_host.clone()],
        ..Default::default()
    });
    let cfg = dir.path().join("sensor");
    let install = Sensor::install(
        &cfg,
        &ws,
        &[
            "--proxy-url",
            &squid.url(),
            "--proxy-user",
            PROXY_USER,
            "--proxy-password",
            PROXY_PASSWORD,
        ],
    );
    let install_out = ok(install, "install through squid");
    let sensor = Sensor { dir: cfg.clone() };
    assert!(
        install_out.contains(&format!("PROXY 127.0.0.1:{}", squid.port)),
        "{install_out}"
    );

    let sent = sensor.send(&lines(0..3000));
    assert_eq!(sent.status.code(), Some(0), "{}", stderr(&sent));
    assert_eq!(sensor.status()["queue"]["events"], 3000);
    let run = sensor.run_once(60);
    let run_log = format!("{}{}", stdout(&run), stderr(&run));
    assert!(
        run.status.success(),
        "run --once failed:\n{run_log}\n{}\n{}",
        squid.logs(),
        svc.log()
    );

    let sensor_id = sensor.status()["sensor_id"].as_str().unwrap().to_owned();
    assert_exactly_once(&dir.path().join("service"), "contoso", &sensor_id, 3000);

    let status = sensor.status();
    assert_eq!(status["route"], format!("PROXY 127.0.0.1:{}", squid.port));
    assert_eq!(
        status["queue"],
        serde_json::json!({"events": 0, "bytes": 0})
    );
    assert!(status["last_error"].is_null());
    assert!(status["last_success"].is_string());
    assert_eq!(status["proxy_auth"], "Basic", "{status}");

    // Squid tunnelled it, as the authenticated user. Each connection's first CONNECT goes
    // without credentials (407: the proxy names its schemes), the second with Basic (200).
    let log = squid.stop();
    let connects = support::squid::connects(&log, &ws.sensor_host);
    let tunnels = support::squid::tunnels(&log, &ws.sensor_host);
    assert!(
        tunnels.len() >= 2,
        "expected CONNECT tunnels for enrollment and upload in:\n{log}"
    );
    assert!(tunnels.iter().all(|l| l.contains("proxyuser")), "{log}");
    assert!(
        connects
            .iter()
            .all(|l| l.contains("/200 ") || l.contains("/407 ")),
        "{log}"
    );

    // The password is nowhere: not in any file under the config dir (queue included), not in
    // install or run output, not in status.
    for (path, bytes) in all_file_bytes(&cfg) {
        assert!(
            !contains(&bytes, PROXY_PASSWORD),
            "password in clear in {}",
            path.display()
        );
    }
    let config = std::fs::read_to_string(cfg.join("sensor.toml")).unwrap();
    assert!(config.contains("password = \"enc:v1:"), "{config}");
    assert!(!install_out.contains(PROXY_PASSWORD) && !run_log.contains(PROXY_PASSWORD));
    assert!(!status.to_string().contains(PROXY_PASSWORD));
    let show = ok(
        uplink(&[
            "sensor",
            "proxy",
            "show",
            "--config-dir",
            cfg.to_str().unwrap(),
        ]),
        "proxy show",
    );
    assert!(
        !show.contains(PROXY_PASSWORD) && show.contains("CONTOSO\\proxyuser"),
        "{show}"
    );
    for (mode_file, want) in [
        ("sensor.toml", 0o600),
        ("client.key", 0o600),
        ("secret.key", 0o600),
    ] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(cfg.join(mode_file))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, want, "{mode_file}");
    }
}

#[test]
fn a_wrong_proxy_password_is_reported_nothing_is_lost_and_all_arrives_once_fixed() {
    let (dir, svc, ws) = setup("rotated");
    let squid = Squid::start(SquidOptions {
        basic: Some((PROXY_USER, PROXY_PASSWORD)),
        hosts: vec![ws.sensor_host.clone()],
        ..Default::default()
    });
    let cfg = dir.path().join("sensor");
    let sensor = Sensor::installed(
        &cfg,
        &ws,
        &[
            "--proxy-url",
            &squid.url(),
            "--proxy-user",
            PROXY_USER,
            "--proxy-password",
            PROXY_PASSWORD,
        ],
    );
    ok(sensor.send(&lines(0..500)), "send");

    // The administrator mistypes the password when updating the sensor.
    const WRONG_PASSWORD: &str = "Wr0ng-Typed-Pa55";
    let set = support::sensor::proxy_set_with_password(
        sensor.cfg(),
        &squid.url(),
        PROXY_USER,
        WRONG_PASSWORD,
    );
    ok(set, "proxy set (wrong password)");
    let (text, status) = sensor.run_once_failing(3, "PROXY_AUTH_FAILED");
    assert!(
        status["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("CONTOSO\\proxyuser"),
        "{status}"
    );
    assert_eq!(
        status["queue"]["events"], 502,
        "nothing may leave the queue (500 sent, the run's heartbeat and inventory): {status}"
    );
    assert!(!text.contains(WRONG_PASSWORD) && !status.to_string().contains(WRONG_PASSWORD));

    // The administrator fixes the sensor's password — no reinstall.
    let set = uplink_cmd(&[])
        .args([
            "sensor",
            "proxy",
            "set",
            "--config-dir",
            sensor.cfg(),
            "--url",
            &squid.url(),
            "--user",
            PROXY_USER,
        ])
        .env("UPLINK_PROXY_PASSWORD", PROXY_PASSWORD)
        .output()
        .unwrap();
    ok(set, "proxy set");
    let run = sensor.run_once(30);
    assert!(
        run.status.success(),
        "{}\n{}\n{}",
        stderr(&run),
        squid.logs(),
        svc.log()
    );
    let sensor_id = sensor.status()["sensor_id"].as_str().unwrap().to_owned();
    assert_exactly_once(&dir.path().join("service"), "rotated", &sensor_id, 500);
    assert!(sensor.status()["last_error"].is_null());
    for (path, bytes) in all_file_bytes(&cfg) {
        for pw in [PROXY_PASSWORD, WRONG_PASSWORD] {
            assert!(
                !contains(&bytes, pw),
                "a password in clear in {}",
                path.display()
            );
        }
    }
}

#[test]
fn kill_9_of_the_sensor_during_upload_loses_and_duplicates_nothing() {
    let (dir, svc, ws) = setup("killsensor");
    let squid = Squid::start(SquidOptions {
        basic: Some((PROXY_USER, PROXY_PASSWORD)),
        hosts: vec![ws.sensor_host.clone()],
        ..Default::default()
    });
    let cfg = dir.path().join("sensor");
    let sensor = Sensor::installed(
        &cfg,
        &ws,
        &[
            "--proxy-url",
            &squid.url(),
            "--proxy-user",
            PROXY_USER,
            "--proxy-password",
            PROXY_PASSWORD,
        ],
    );
    // Small batches so that many uploads are in flight during the run, and kills land mid-upload.
    sensor.set_upload(100);
    let total = 30_000u64;
    ok(sensor.send(&lines(0..total)), "send");

    let mut rng_state = 0x9e3779b97f4a7c15u64 ^ u64::from(std::process::id());
    let mut next = || {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        rng_state
    };
    let mut kills_mid_upload = 0;
    for round in 0..20 {
        let before = sensor.status()["queue"]["events"].as_u64().unwrap();
        let child = uplink_cmd(&[])
            .args([
                "sensor",
                "run",
                "--config-dir",
                sensor.cfg(),
                "--log-level",
                "warn",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // A random moment while it uploads: once the queue has acknowledged a batch of this run
        // (the service committed it), wait a random 0-30 ms more, then kill.
        let acked_at_start = acked_through(&cfg);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while acked_through(&cfg) == acked_at_start {
            assert!(
                std::time::Instant::now() < deadline,
                "round {round}: the sensor made no progress in 30 s"
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
        // Keep feeding events between some kills, as a live source would.
        if round % 5 == 4 {
            let start = total + (round / 5) * 100;
            ok(sensor.send(&lines(start..start + 100)), "send more");
        }
    }
    assert!(
        kills_mid_upload >= 15,
        "too few kills landed mid-upload ({kills_mid_upload}); the test proves little"
    );
    let run = sensor.run_once(120);
    assert!(run.status.success(), "{}\n{}", stderr(&run), svc.log());
    let sensor_id = sensor.status()["sensor_id"].as_str().unwrap().to_owned();
    assert_exactly_once(
        &dir.path().join("service"),
        "killsensor",
        &sensor_id,
        total + 400,
    );
}

#[test]
fn kill_9_of_the_service_during_ingest_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    let mut svc = ServiceProc::start(&data);
    let port = svc.port;
    let ws = create_workspace(&data, "killservice", port);
    let cfg = dir.path().join("sensor");
    let sensor = Sensor::installed(&cfg, &ws, &[]);
    sensor.set_upload(200);
    let total = 40_000u64;
    ok(sensor.send(&lines(0..total)), "send");

    let uploader = uplink_cmd(&[])
        .args([
            "sensor",
            "run",
            "--config-dir",
            sensor.cfg(),
            "--log-level",
            "warn",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut kills = 0;
    for i in 0..5u64 {
        // Kill while ingest is going on: after the sensor saw a batch committed by this
        // incarnation of the service, plus a few milliseconds.
        let acked_at_start = acked_through(&cfg);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while acked_through(&cfg) == acked_at_start {
            assert!(
                std::time::Instant::now() < deadline,
                "kill {i}: no batch was committed within 60 s\n{}",
                svc.log()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(7 * i));
        let remaining = sensor.status()["queue"]["events"].as_u64().unwrap();
        assert!(
            remaining > 0,
            "kill {i}: the queue drained before the kill; the test proves little"
        );
        let pid = svc.pid();
        signal(pid, "KILL");
        let _ = wait_exit(svc.take(), Duration::from_secs(10));
        kills += 1;
        // Same port: the sensor's URL names it.
        svc = ServiceProc::start_at(&data, &format!("127.0.0.1:{port}"));
    }
    assert_eq!(kills, 5);
    // Let the uploader finish on its own, then stop it.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while sensor.status()["queue"]["events"].as_u64().unwrap() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "queue did not drain: {}\n{}",
            sensor.status(),
            svc.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    signal(uploader.id(), "TERM");
    let _ = wait_exit(uploader, Duration::from_secs(15));
    let sensor_id = sensor.status()["sensor_id"].as_str().unwrap().to_owned();
    assert_exactly_once(&data, "killservice", &sensor_id, total);
}

#[test]
fn bad_switches_and_failures_leave_nothing_installed() {
    let (dir, svc, ws) = setup("bad");
    let cfg = dir.path().join("sensor");
    let closed = support::squid::free_port();
    let tampered = dir.path().join("tampered.json");
    let mut bundle: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&ws.bundle_path).unwrap()).unwrap();
    bundle["ca_sha256"] = serde_json::Value::String("00".repeat(32));
    std::fs::write(&tampered, bundle.to_string()).unwrap();
    let unreachable = dir.path().join("unreachable.json");
    let mut b2: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&ws.bundle_path).unwrap()).unwrap();
    b2["sensor_url"] = serde_json::Value::String(format!("https://{}:{closed}", ws.sensor_host));
    std::fs::write(&unreachable, b2.to_string()).unwrap();
    let bundle_arg = ws.bundle_path.to_str().unwrap();
    let closed_proxy = format!("http://127.0.0.1:{closed}");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "--bundle",
                bundle_arg,
                "--proxy-url",
                "proxy.contoso.com:8080",
            ],
            "has no scheme",
        ),
        (
            vec![
                "--bundle",
                bundle_arg,
                "--proxy-url",
                "http://proxy.contoso.com",
            ],
            "has no port",
        ),
        (
            vec![
                "--bundle",
                bundle_arg,
                "--proxy-url",
                "http://127.0.0.1:3128",
                "--proxy-user",
                "CONTOSO\\u",
            ],
            "needs a password",
        ),
        (
            vec!["--bundle", tampered.to_str().unwrap()],
            "does not match its pin",
        ),
        (
            vec!["--bundle", unreachable.to_str().unwrap()],
            "the bundle names port",
        ),
        (
            vec!["--bundle", bundle_arg, "--proxy-url", &closed_proxy],
            "TCP_REFUSED",
        ),
        (
            vec!["--bundle", "/nonexistent/bundle.json"],
            "cannot use the bundle",
        ),
    ];
    for (args, want) in &cases {
        let mut full = vec!["sensor", "install", "--config-dir", cfg.to_str().unwrap()];
        full.extend_from_slice(args);
        let out = uplink(&full);
        // A malformed or incomplete flag is bad usage (2); a failure the message explains, 1.
        let usage = ["has no scheme", "has no port", "needs a password"].contains(want);
        let code = if usage { 2 } else { 1 };
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(want), "{args:?}: {}", stderr(&out));
        assert!(!cfg.exists(), "{args:?} left {} behind", cfg.display());
    }
    // A wrong access key: the service refuses enrollment.
    let wrong_key = dir.path().join("wrongkey.json");
    let mut b3: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&ws.bundle_path).unwrap()).unwrap();
    b3["access_key"] = serde_json::Value::String("nope".into());
    std::fs::write(&wrong_key, b3.to_string()).unwrap();
    let out = uplink(&[
        "sensor",
        "install",
        "--config-dir",
        cfg.to_str().unwrap(),
        "--bundle",
        wrong_key.to_str().unwrap(),
    ]);
    assert!(stderr(&out).contains("ENROLL_DENIED"), "{}", stderr(&out));
    assert!(!cfg.exists());
    // A proxy that requires credentials nobody gave.
    let squid = Squid::start(SquidOptions {
        basic: Some((PROXY_USER, PROXY_PASSWORD)),
        hosts: vec![ws.sensor_host.clone()],
        ..Default::default()
    });
    let out = uplink(&[
        "sensor",
        "install",
        "--config-dir",
        cfg.to_str().unwrap(),
        "--bundle",
        bundle_arg,
        "--proxy-url",
        &squid.url(),
    ]);
    assert!(
        stderr(&out).contains("PROXY_AUTH_REQUIRED") && stderr(&out).contains("Basic"),
        "{}",
        stderr(&out)
    );
    assert!(!cfg.exists());
    drop(svc);
}

#[test]
fn send_reports_bad_lines_and_refuses_when_the_queue_is_full() {
    let (dir, _svc, ws) = setup("sendcheck");
    let cfg = dir.path().join("sensor");
    let sensor = Sensor::installed(&cfg, &ws, &["--quiet"]);
    let out =
        sensor.send("{\"kind\":\"a\"}\nnot json\n\n[1,2]\n{\"kind\":\"b c\"}\n{\"ok\":true}\n");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    for want in [
        "line 2: not valid JSON",
        "line 4: not a JSON object",
        "line 5: \"kind\"",
        "2 events queued, 3 lines rejected",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    assert_eq!(sensor.status()["queue"]["events"], 2);

    // Shrink the queue: the next big send is refused with exit 3, and says what was not queued.
    let path = cfg.join("sensor.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("max_bytes = 536870912", "max_bytes = 200000");
    std::fs::write(&path, text).unwrap();
    let out = sensor.send(&lines(0..5000));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("queue is full") && stderr(&out).contains("were NOT queued"),
        "{}",
        stderr(&out)
    );
    let queued = sensor.status()["queue"]["events"].as_u64().unwrap();
    assert!(queued < 5002, "{queued}");
    assert!(sensor.run_once(30).status.success());
    // Everything that was accepted is delivered — and nothing else but the run's own inventory
    // (its heartbeat is skipped, and counted, when the queue is full as the run starts).
    let rows = exported(&dir.path().join("service"), "sendcheck");
    let count = |k: &str| rows.iter().filter(|(_, _, v)| v["kind"] == k).count() as u64;
    assert_eq!(
        (count("a"), count("event"), count("logon")),
        (1, 1, queued - 2),
        "{rows:?}"
    );
    assert_eq!(count("inventory"), 1);
    assert!(count("heartbeat") <= 1);
    assert_eq!(
        rows.len() as u64,
        queued + count("inventory") + count("heartbeat")
    );
}

#[test]
fn uninstall_refuses_while_events_wait_and_removes_everything_with_force() {
    let (dir, _svc, ws) = setup("remove");
    let cfg = dir.path().join("sensor");
    let sensor = Sensor::installed(&cfg, &ws, &["--quiet"]);
    ok(sensor.send(&lines(0..3)), "send");
    let out = uplink(&["sensor", "uninstall", "--config-dir", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("3 events have not been delivered"),
        "{}",
        stderr(&out)
    );
    assert!(cfg.join("sensor.toml").exists());
    ok(
        uplink(&[
            "sensor",
            "uninstall",
            "--config-dir",
            cfg.to_str().unwrap(),
            "--force",
        ]),
        "uninstall --force",
    );
    assert!(
        !cfg.exists(),
        "config dir still there: {:?}",
        std::fs::read_dir(&cfg).map(|d| d.count())
    );
    // Installing again works.
    Sensor::installed(&cfg, &ws, &["--quiet"]);
    let out = Sensor::install(&cfg, &ws, &[]);
    assert!(
        stderr(&out).contains("already installed"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn sighup_moves_a_running_sensor_to_a_new_proxy_and_sigterm_stops_it_without_loss() {
    let (dir, _svc, ws) = setup("reload");
    let a = Squid::start(SquidOptions {
        hosts: vec![ws.sensor_host.clone()],
        ..Default::default()
    });
    let mut b = Squid::start(SquidOptions {
        hosts: vec![ws.sensor_host.clone()],
        ..Default::default()
    });
    let cfg = dir.path().join("sensor");
    let sensor = Sensor::installed(&cfg, &ws, &["--proxy-url", &a.url(), "--quiet"]);
    let expires = sensor.status()["certificate_expires"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        expires.starts_with(&(time_year() + 1).to_string()),
        "client certificate expiry {expires}"
    );

    let child = uplink_cmd(&[])
        .args([
            "sensor",
            "run",
            "--config-dir",
            sensor.cfg(),
            "--log-level",
            "info",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let wait_drained = |what: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while sensor.status()["queue"]["events"].as_u64() != Some(0) {
            assert!(
                std::time::Instant::now() < deadline,
                "{what}: queue not drained: {}",
                sensor.status()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    ok(sensor.send(&lines(0..100)), "send");
    wait_drained("through proxy A");
    assert_eq!(
        sensor.status()["route"],
        format!("PROXY 127.0.0.1:{}", a.port)
    );

    // The connection through A is healthy; SIGHUP makes the sensor take the new route now.
    ok(
        uplink(&[
            "sensor",
            "proxy",
            "set",
            "--config-dir",
            sensor.cfg(),
            "--url",
            &b.url(),
        ]),
        "proxy set B",
    );
    signal(child.id(), "HUP");
    ok(sensor.send(&lines(100..200)), "send");
    wait_drained("through proxy B");
    assert_eq!(
        sensor.status()["route"],
        format!("PROXY 127.0.0.1:{}", b.port)
    );

    // SIGTERM: stops within the drain bound, cleanly, with everything queued still deliverable.
    ok(sensor.send(&lines(200..5200)), "send");
    let started = std::time::Instant::now();
    signal(child.id(), "TERM");
    let status = wait_exit(child, Duration::from_secs(20))
        .expect("the sensor did not stop within 20 s of SIGTERM");
    assert!(status.success(), "exit status {status}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    assert!(sensor.run_once(30).status.success());
    let sensor_id = sensor.status()["sensor_id"].as_str().unwrap().to_owned();
    assert_exactly_once(&dir.path().join("service"), "reload", &sensor_id, 5200);
    let log = b.stop();
    assert!(
        !support::squid::connects(&log, &ws.sensor_host).is_empty(),
        "proxy B tunnelled nothing:\n{log}"
    );
}

fn time_year() -> i32 {
    // Years since 1970 from the system clock, without a date crate: good enough for "next year".
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    1970 + (secs / 31_556_952) as i32
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_without_a_warning() {
    require("systemd-analyze");
    let dir = tempfile::tempdir().unwrap();
    for (name, args) in [
        ("uplink-sensor.service", vec!["sensor", "systemd-unit"]),
        (
            "uplink-sensor-user.service",
            vec!["sensor", "systemd-unit", "--user", "daemon"],
        ),
        // A user whose primary group has another name (Debian's _apt, in nogroup): the unit
        // names no Group=, so systemd takes the user's own (a Group=_apt would not start).
        (
            "uplink-sensor-apt.service",
            vec!["sensor", "systemd-unit", "--user", "_apt"],
        ),
    ] {
        let unit = ok(uplink(&args), "systemd-unit");
        assert!(!unit.contains("\nGroup="), "{unit}");
        assert!(
            unit.contains(&format!("ExecStart={UPLINK} sensor run")),
            "{unit}"
        );
        assert!(
            unit.contains("ProtectSystem=strict")
                && unit.contains("NoNewPrivileges=true")
                && unit.contains("PrivateTmp=true")
        );
        let path = dir.path().join(name);
        std::fs::write(&path, &unit).unwrap();
        let out = std::process::Command::new("systemd-analyze")
            .args(["verify"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(
            stderr(&out).trim(),
            "",
            "systemd-analyze warns about the unit:\n{unit}"
        );
    }
}

/// A unit for a user this machine does not have would not start (217/USER): refused, naming
/// the user and what to do.
#[test]
fn a_systemd_unit_for_a_missing_user_is_refused() {
    let out = uplink(&[
        "sensor",
        "systemd-unit",
        "--user",
        "no-such-user-for-uplink",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stdout(&out).is_empty(),
        "no unit is printed: {}",
        stdout(&out)
    );
    let err = stderr(&out);
    assert!(
        err.contains("no-such-user-for-uplink")
            && err.contains("no such user")
            && err.contains("useradd"),
        "{err}"
    );
}

/// What scripts read: `run --once --json` says what it delivered, `uninstall --json` what it
/// removed.
#[test]
fn run_once_and_uninstall_print_json_for_scripts() {
    let (dir, _svc, ws) = setup("jsonout");
    let cfg = dir.path().join("sensor");
    let c = cfg.to_str().unwrap();
    let sensor = Sensor::installed(&cfg, &ws, &["--quiet"]);
    ok(sensor.send(&lines(0..3)), "send");
    let out = ok(
        uplink(&["sensor", "run", "--once", "--json", "--config-dir", c]),
        "run --once --json",
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    // The three lines, plus the run's own heartbeat and inventory.
    assert!(v["delivered"].as_u64().unwrap() >= 3, "{v}");
    assert_eq!(
        (v["stopped"].clone(), v["remaining"].clone()),
        (false.into(), 0.into()),
        "{v}"
    );
    assert!(v["batches"].as_u64().unwrap() >= 1, "{v}");
    // --json needs --once: bad usage.
    let bad = uplink(&["sensor", "run", "--json", "--config-dir", c]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    let out = ok(
        uplink(&["sensor", "uninstall", "--json", "--config-dir", c]),
        "uninstall --json",
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["undelivered_events"], 0, "{v}");
    let removed: Vec<&str> = v["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(
        removed.iter().any(|p| p.ends_with("sensor.toml")),
        "{removed:?}"
    );
    assert!(!cfg.join("sensor.toml").exists());
}

/// A batch ends once its compressed frames reach 2 MiB (`frames::MAX_COMPRESSED`), whatever
/// `upload.batch_bytes` (8 MiB by default) allows of text: text that does not compress goes
/// in several batches, none much over 2 MiB as sent (the sensor holds each compressed until it
/// is answered) yet each holding more than 2 MiB of text (the cut is by compressed bytes), and
/// every event arrives once.
#[test]
fn text_that_does_not_compress_goes_in_batches_of_about_2_mib_compressed() {
    let (dir, _svc, ws) = setup("incompressible");
    let cfg = dir.path().join("sensor");
    let sensor = Sensor::installed(&cfg, &ws, &["--quiet"]);
    // 2,400 lines of 4,000 pseudo-random characters of a 64-letter alphabet (~6 bits each):
    // 9.6 MB of text, over 7 MB compressed. Two batches by the text limit (8 MiB), the first
    // ~6 MB compressed; four or so by 2 MiB compressed (the size bound below fails without it).
    const LINES: u64 = 2_400;
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut input = String::new();
    for i in 0..LINES {
        input.push_str(&format!("{{\"kind\":\"noise\",\"n\":{i},\"pad\":\""));
        for _ in 0..4_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            input.push(alphabet[(x & 63) as usize] as char);
        }
        input.push_str("\"}\n");
    }
    ok(sensor.send(&input), "send");
    ok(
        uplink(&[
            "sensor",
            "run",
            "--once",
            "--json",
            "--config-dir",
            cfg.to_str().unwrap(),
        ]),
        "run --once",
    );
    let db = rusqlite::Connection::open(dir.path().join("service").join("uplink.db")).unwrap();
    // Each batch of the sensor's is stored as sent: one row of event_blobs, its zstd body.
    // (id, compressed bytes, noise events, text bytes) of each.
    let batches: Vec<(i64, i64, i64, i64)> = db
        .prepare(
            "SELECT b.id, length(b.zstd), (SELECT count(*) FROM events e WHERE e.blob = b.id AND e.kind = 'noise'), b.text_len
             FROM event_blobs b ORDER BY b.id",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let noise: Vec<&(i64, i64, i64, i64)> = batches.iter().filter(|b| b.2 > 0).collect();
    assert!(noise.len() >= 2, "one batch held it all: {batches:?}");
    // Cut by compressed bytes, not text: every batch but the last holds more than 2 MiB of it.
    assert!(
        noise[..noise.len() - 1].iter().all(|b| b.3 > 2 << 20),
        "a batch cut before 2 MiB of text: {batches:?}"
    );
    // At most 2 MiB, the stage staged then (256 KiB of text, as large compressed) and the event
    // that crossed it (~4 KB).
    let most = (2 << 20) + (256 << 10) + (8 << 10);
    assert!(
        batches.iter().all(|b| b.1 <= most),
        "a batch over 4 MiB compressed: {batches:?}"
    );
    // Every line once (a seq is stored once), and each in a batch stored as sent.
    let all: i64 = db
        .query_row(
            "SELECT count(*) FROM events WHERE kind = 'noise'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let stored: i64 = noise.iter().map(|b| b.2).sum();
    assert_eq!((all, stored), (LINES as i64, LINES as i64), "{batches:?}");
}
