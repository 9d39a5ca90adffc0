//! Sensor lifecycle (issue #24, docs/lifecycle.md): revocation and decommissioning.
//!
//! - Two replicas on one private PostgreSQL: a sensor uploads through one while it is revoked
//!   through the CLI; both replicas refuse its certificate (403 `CERT_REVOKED`) within 2 s of the
//!   revocation, the running sensor is refused on its connection and keeps what it has queued,
//!   nothing it sent after the revocation is stored, every event before it is stored once, its
//!   renewal is refused, and `uplink fleet` shows it `revoked`.
//! - Decommissioning (SQLite): the sensor is hidden from `fleet list` (shown with --all), and the
//!   same machine enrolled again is a new sensor, served, while the old one stays decommissioned;
//!   the audit trail shows the enrollments (a refused one too) and the decommission.
//! - The CRL at `/pki/crl.der` on both hosts: openssl reads it, and `verify -crl_check` refuses
//!   the revoked sensor's certificate with it (and accepts it before).
//! - Enrollment limits: a flood beyond the workspace's enrollments per window is answered 429
//!   with Retry-After, `sensor install` waits it out and enrolls, audited once per window;
//!   failed enrollments limit their address (even with the right key then), and an install
//!   whose `--enroll-wait` is too short fails with `ENROLL_RATE_LIMITED`, nothing installed.
//! - `sensor uninstall` tells the service through the sensor's proxy (Squid's log shows the
//!   tunnel): the sensor shows `uninstalled`, audited; without a route it is removed all the
//!   same, within its bound, and stays `active`.
//! - CA rotation: a sensor running through Squid across `workspace rotate-ca` and
//!   `--retire-old` learns the new CA over its connection, renews onto it by itself (no
//!   reinstall), and every event arrives once; the retirement is refused while a sensor has not
//!   moved (naming it); afterwards the old CA's certificates are refused.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::postgres::{create_workspace_pg, export, kind_count, Db, PgService};
use crate::support::postgres::Cluster;
use crate::support::sensor::{assert_n_exactly_once, Sensor};
use crate::support::*;

/// Lines `{"kind":"ev","n":i}` for `range`.
fn lines(range: std::ops::Range<u64>) -> String {
    range
        .map(|i| format!("{{\"kind\":\"ev\",\"n\":{i}}}\n"))
        .collect()
}

/// POSTs `body` to `path` with the sensor's own certificate and key (curl, a new connection
/// each time): the status and the error body's code ("" when none).
fn with_sensor_cert(ws: &Ws, port: u16, sensor: &Sensor, path: &str, body: &str) -> (u16, String) {
    let file = sensor.dir.join("probe-body.json");
    std::fs::write(&file, body).unwrap();
    let (status, text) = Curl::new(&ws.sensor_host, port, path)
        .arg("--cacert")
        .arg(&ws.ca_file)
        .arg("--cert")
        .arg(sensor.dir.join("client.pem"))
        .arg("--key")
        .arg(sensor.dir.join("client.key"))
        .args(["-H", "content-type: application/json", "--data-binary"])
        .arg(format!("@{}", file.display()))
        .run();
    let code = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["code"].as_str().map(str::to_owned))
        .unwrap_or_default();
    (status, code)
}

fn fleet_json(args: &[&str]) -> serde_json::Value {
    let out = ok(uplink(args), &format!("uplink {}", args.join(" ")));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn row<'a>(list: &'a serde_json::Value, id: &str) -> Option<&'a serde_json::Value> {
    list["sensors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["sensor_id"] == id)
}

#[test]
fn a_sensor_revoked_through_the_cli_is_refused_by_both_replicas_within_2_s_and_keeps_its_queue() {
    const BEFORE: u64 = 500;
    const AFTER: u64 = 200;
    let cluster = Cluster::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let db = Db::new(&cluster, tmp.path());
    let r1 = PgService::start_with(&db, "127.0.0.1:0", &[]);
    let r2 = PgService::start_with(&db, "127.0.0.1:0", &[]);
    // The sensor uploads through r2; the revocation is written to the database by the CLI and
    // must reach both replicas through the change log.
    let ws = create_workspace_pg(&db, tmp.path(), "life", r2.port);
    let sensor = Sensor::installed(&tmp.path().join("sensor"), &ws, &[]);
    sensor.set_upload(50);
    let id = sensor.status()["sensor_id"].as_str().unwrap().to_owned();
    let run_log = tmp.path().join("run.log");
    let context = || {
        format!(
            "{}\nr1:\n{}\nr2:\n{}\npostgres:\n{}",
            sensor.context(&run_log),
            r1.log(),
            r2.log(),
            cluster.log_text()
        )
    };
    let mut run = sensor.spawn_run(&run_log);
    ok(sensor.send(&lines(0..BEFORE)), "sensor send");
    poll_until(
        "the first events stored",
        60,
        || kind_count(&db, "life", "ev") == BEFORE,
        context,
    );
    // The certificate is accepted by both before (a malformed report: 400, not 403).
    let probe = |port| {
        with_sensor_cert(
            &ws,
            port,
            &sensor,
            uplink_protocol::HEARTBEAT_PATH,
            "not a report",
        )
    };
    for port in [r1.port, r2.port] {
        let (status, code) = probe(port);
        assert_eq!(status, 400, "{code}\n{}", context());
    }

    let [a, b, c, d] = db.args();
    ok(
        uplink(&[
            "fleet",
            "revoke",
            "life",
            &id,
            a,
            b,
            c,
            d,
            "--reason",
            "laptop stolen",
        ]),
        "fleet revoke",
    );
    let revoked = Instant::now();
    poll_until(
        "both replicas refuse the revoked certificate",
        10,
        || {
            [r1.port, r2.port]
                .iter()
                .all(|&p| probe(p) == (403, "CERT_REVOKED".to_owned()))
        },
        context,
    );
    let took = revoked.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "took {took:?}\n{}",
        context()
    );

    // The running sensor is refused and keeps what it queues from now on.
    ok(sensor.send(&lines(BEFORE..BEFORE + AFTER)), "sensor send");
    poll_until(
        "the sensor reports CERT_REVOKED",
        60,
        || sensor.status()["last_error"]["code"] == "CERT_REVOKED",
        context,
    );
    let status = sensor.status();
    assert!(
        status["queue"]["events"].as_u64().unwrap() >= AFTER,
        "the events sent after the revocation stay queued: {status}"
    );
    let fix = format!(
        "{} {}",
        status["last_error"]["fix"], status["last_error"]["message"]
    );
    assert!(fix.contains("access key"), "{status}");
    let _ = run.kill();
    let _ = run.wait();
    assert!(
        r2.log().contains("request of a revoked sensor refused"),
        "{}",
        context()
    );
    // Nothing half-stored: exactly the events from before, once each.
    let rows = export(&db, "life");
    assert_n_exactly_once(&rows, "ev", BEFORE);
    assert!(sensor.status()["queue"]["events"].as_u64().unwrap() >= AFTER);

    // Renewal is refused.
    let (_, csr) = key_and_csr(tmp.path(), "renew", "/CN=renew");
    let body = serde_json::json!({ "csr_pem": std::fs::read_to_string(csr).unwrap() });
    let (status, code) = with_sensor_cert(
        &ws,
        r1.port,
        &sensor,
        uplink_protocol::RENEW_PATH,
        &body.to_string(),
    );
    assert_eq!(
        (status, code.as_str()),
        (403, "CERT_REVOKED"),
        "{}",
        context()
    );

    // `uplink fleet` shows it revoked (still listed: revoked is not decommissioned).
    let list = fleet_json(&["fleet", "list", "life", a, b, c, d, "--json"]);
    let r = row(&list, &id).unwrap_or_else(|| panic!("{list}"));
    assert_eq!(r["lifecycle"], "revoked", "{r}");
    let show = fleet_json(&["fleet", "show", "life", &id, a, b, c, d, "--json"]);
    assert_eq!(show["revoke_reason"], "laptop stolen", "{show}");
}

#[test]
fn a_decommissioned_machine_enrolled_again_is_a_new_sensor() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let svc = ServiceProc::start(&data);
    run_decommission(tmp.path(), &data, &svc);
}

fn run_decommission(dir: &Path, data: &Path, svc: &ServiceProc) {
    let ws = create_workspace(data, "gone", svc.port);
    let dd = data.to_str().unwrap();
    let first = Sensor::installed(&dir.join("machine"), &ws, &[]);
    let old_id = first.status()["sensor_id"].as_str().unwrap().to_owned();
    let context = || svc.log();
    ok(
        uplink(&["fleet", "decommission", "gone", &old_id, "--data-dir", dd]),
        "fleet decommission",
    );
    // Hidden from the default list, shown with --all.
    let list = fleet_json(&["fleet", "list", "gone", "--data-dir", dd, "--json"]);
    assert!(row(&list, &old_id).is_none(), "{list}");
    let all = fleet_json(&["fleet", "list", "gone", "--data-dir", dd, "--json", "--all"]);
    assert_eq!(
        row(&all, &old_id).unwrap_or_else(|| panic!("{all}"))["lifecycle"],
        "decommissioned"
    );
    poll_until(
        "the service refuses the decommissioned sensor",
        10,
        || {
            with_sensor_cert(
                &ws,
                svc.port,
                &first,
                uplink_protocol::HEARTBEAT_PATH,
                "not a report",
            ) == (403, "CERT_REVOKED".to_owned())
        },
        context,
    );

    // The same machine enrolled again (a new key, the workspace's access key): a new sensor.
    let again = Sensor::installed(&dir.join("machine-again"), &ws, &[]);
    let new_id = again.status()["sensor_id"].as_str().unwrap().to_owned();
    assert_ne!(new_id, old_id);
    ok(again.send(&lines(0..10)), "sensor send");
    ok(again.run_once(60), "sensor run --once");
    let all = fleet_json(&["fleet", "list", "gone", "--data-dir", dd, "--json", "--all"]);
    assert_eq!(row(&all, &new_id).unwrap()["lifecycle"], "active", "{all}");
    assert_eq!(
        row(&all, &old_id).unwrap()["lifecycle"],
        "decommissioned",
        "{all}"
    );
    let events: Vec<_> = exported(data, "gone")
        .into_iter()
        .filter(|(s, _, _)| *s == new_id)
        .collect();
    assert!(events.len() >= 10, "{events:?}\n{}", context());

    // A refused enrollment (a wrong access key), then the audit trail of all of it.
    let (_, csr) = key_and_csr(dir, "intruder", "/CN=intruder");
    let req = serde_json::json!({
        "access_key": "not-the-key",
        "csr_pem": std::fs::read_to_string(csr).unwrap(),
        "name": "intruder",
    });
    let req_file = dir.join("intruder.json");
    std::fs::write(&req_file, req.to_string()).unwrap();
    let (status, _) = Curl::new(&ws.sensor_host, svc.port, uplink_protocol::ENROLL_PATH)
        .arg("--cacert")
        .arg(&ws.ca_file)
        .args(["-H", "content-type: application/json", "--data-binary"])
        .arg(format!("@{}", req_file.display()))
        .run();
    assert_eq!(status, 401);
    let audit = fleet_json(&["fleet", "audit", "gone", "--data-dir", dd, "--json"]);
    let entries = audit["entries"].as_array().unwrap();
    let summary: Vec<(String, String, String)> = entries
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["sensor_id"].as_str().unwrap_or("-").to_owned(),
                e["result"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let s = |a: &str, b: &str, c: &str| (a.to_owned(), b.to_owned(), c.to_owned());
    assert_eq!(
        summary,
        [
            s("enroll", &old_id, "ok"),
            s("decommission", &old_id, "ok"),
            s("enroll", &new_id, "ok"),
            s("enroll", "-", "refused"),
        ],
        "{audit}"
    );
    for e in entries {
        for k in [
            "at",
            "actor",
            "source",
            "action",
            "sensor_id",
            "result",
            "detail",
        ] {
            assert!(e.get(k).is_some(), "{k} missing: {e}");
        }
    }
    assert_eq!(entries[0]["source"], "127.0.0.1", "{audit}");
    assert!(
        entries[1]["source"].as_str().unwrap().starts_with("cli@"),
        "{audit}"
    );
    assert!(
        entries[3]["detail"]
            .as_str()
            .unwrap()
            .contains("ENROLL_DENIED"),
        "{audit}"
    );
    assert!(!audit.to_string().contains("not-the-key"), "{audit}");
}

/// `GET /pki/crl.der` on `host` without a client certificate, saved to `out`.
fn fetch_crl(ws: &Ws, host: &str, port: u16, out: &Path) {
    fetch_crl_at(ws, host, port, "/pki/crl.der", out)
}

fn fetch_crl_at(ws: &Ws, host: &str, port: u16, path: &str, out: &Path) {
    let status = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "20", "-o"])
        .arg(out)
        .args(["-w", "%{http_code}", "--cacert"])
        .arg(&ws.ca_file)
        .arg("--resolve")
        .arg(format!("{host}:{port}:127.0.0.1"))
        .arg(format!("https://{host}:{port}{path}"))
        .output()
        .expect("run curl");
    assert_eq!(stdout(&status).trim(), "200", "{}", stderr(&status));
}

#[test]
fn the_crl_lists_a_revoked_sensor_and_openssl_refuses_its_certificate_with_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let svc = ServiceProc::start(&data);
    let ws = create_workspace(&data, "crl", svc.port);
    let dd = data.to_str().unwrap();
    let sensor = Sensor::installed(&tmp.path().join("sensor"), &ws, &[]);
    let id = sensor.status()["sensor_id"].as_str().unwrap().to_owned();
    let cert = sensor.dir.join("client.pem");
    let cert = cert.to_str().unwrap();
    let ca = ws.ca_file.to_str().unwrap();
    let serial = openssl(&["x509", "-in", cert, "-noout", "-serial"]);
    let serial = serial
        .trim()
        .trim_start_matches("serial=")
        .to_ascii_uppercase();
    let der = tmp.path().join("crl.der");
    let pem = tmp.path().join("crl.pem");
    let (der_s, pem_s) = (der.to_str().unwrap(), pem.to_str().unwrap());
    let verify = || {
        openssl(&["crl", "-inform", "DER", "-in", der_s, "-out", pem_s]);
        std::process::Command::new("openssl")
            .args([
                "verify",
                "-crl_check",
                "-CAfile",
                ca,
                "-CRLfile",
                pem_s,
                cert,
            ])
            .output()
            .expect("run openssl")
    };

    // Before: an empty CRL, signed by the workspace CA, that openssl accepts the certificate with.
    fetch_crl(&ws, &ws.sensor_host, svc.port, &der);
    let text = openssl(&["crl", "-inform", "DER", "-in", der_s, "-noout", "-text"]);
    assert!(text.contains("No Revoked Certificates"), "{text}");
    let out = verify();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));

    ok(
        uplink(&[
            "fleet",
            "revoke",
            "crl",
            &id,
            "--data-dir",
            dd,
            "--reason",
            "test",
        ]),
        "fleet revoke",
    );
    // After (once the service has followed the change log): the serial is listed, on both
    // workspace hosts, and openssl refuses the certificate.
    poll_until(
        "the CRL lists the revoked certificate",
        10,
        || {
            fetch_crl(&ws, &ws.sensor_host, svc.port, &der);
            openssl(&["crl", "-inform", "DER", "-in", der_s, "-noout", "-text"]).contains(&serial)
        },
        || svc.log(),
    );
    let text = openssl(&["crl", "-inform", "DER", "-in", der_s, "-noout", "-text"]);
    assert!(text.contains("Last Update"), "{text}");
    assert!(text.contains("Next Update"), "{text}");
    let next_minus_last = {
        let field = |name: &str| {
            let line = text.lines().find(|l| l.contains(name)).unwrap();
            let date = line.split_once(": ").unwrap().1.trim().to_owned();
            let out = std::process::Command::new("date")
                .args(["-u", "-d", &date, "+%s"])
                .output()
                .unwrap();
            stdout(&out).trim().parse::<i64>().unwrap()
        };
        field("Next Update") - field("Last Update")
    };
    assert_eq!(next_minus_last, 24 * 3600, "{text}");
    let out = verify();
    assert!(
        !out.status.success(),
        "openssl accepted a revoked certificate"
    );
    assert!(
        format!("{}{}", stdout(&out), stderr(&out)).contains("certificate revoked"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let console = "crl.uplink.localhost";
    let der2 = tmp.path().join("crl2.der");
    fetch_crl(&ws, console, svc.port, &der2);
    let text2 = openssl(&[
        "crl",
        "-inform",
        "DER",
        "-in",
        der2.to_str().unwrap(),
        "-noout",
        "-text",
    ]);
    assert!(text2.contains(&serial), "{text2}");
    // The same CRL under its CA's digest (the name it keeps while CAs rotate).
    let der3 = tmp.path().join("crl3.der");
    let by_ca = format!("/pki/crl-{}.der", ws.ca_sha256);
    fetch_crl_at(&ws, &ws.sensor_host, svc.port, &by_ca, &der3);
    assert_eq!(std::fs::read(&der3).unwrap(), std::fs::read(&der2).unwrap());
}

#[test]
fn a_rotated_access_key_refuses_the_old_key_at_once_and_enrolled_sensors_keep_working() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let svc = ServiceProc::start(&data);
    let ws = create_workspace(&data, "rot", svc.port);
    let dd = data.to_str().unwrap();
    let enrolled = Sensor::installed(&tmp.path().join("enrolled"), &ws, &[]);
    // The old bundle, kept aside (the rotation rewrites the data directory's copy).
    let old_bundle = tmp.path().join("old-bundle.json");
    std::fs::copy(&ws.bundle_path, &old_bundle).unwrap();
    let old = Ws {
        bundle_path: old_bundle,
        ..ws.clone()
    };

    let out = ok(
        uplink(&[
            "workspace",
            "rotate-access-key",
            "rot",
            "--data-dir",
            dd,
            "--json",
        ]),
        "workspace rotate-access-key",
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let bundle_path = data.join("bundles").join("rot.json");
    assert_eq!(v["bundle_path"], bundle_path.to_str().unwrap(), "{v}");
    let bundle: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&bundle_path).unwrap()).unwrap();
    assert_ne!(bundle["access_key"], ws.access_key.as_str());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&bundle_path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "the bundle holds the access key");

    // The old key: refused (once the service has followed the change log, within a second).
    let mut n = 0;
    poll_until(
        "the old access key refused",
        10,
        || {
            n += 1;
            let out = Sensor::install(&tmp.path().join(format!("old-{n}")), &old, &[]);
            !out.status.success()
                && format!("{}{}", stdout(&out), stderr(&out)).contains("ENROLL_DENIED")
        },
        || svc.log(),
    );
    // The new bundle enrolls; the sensor enrolled before still uploads.
    let new = Ws {
        bundle_path: bundle_path.clone(),
        access_key: bundle["access_key"].as_str().unwrap().into(),
        ..ws.clone()
    };
    Sensor::installed(&tmp.path().join("new"), &new, &[]);
    ok(enrolled.send(&lines(0..5)), "sensor send");
    ok(enrolled.run_once(60), "sensor run --once");
    let id = enrolled.status()["sensor_id"].as_str().unwrap().to_owned();
    assert_eq!(
        exported(&data, "rot")
            .iter()
            .filter(|(s, _, e)| *s == id && e["kind"] == "ev")
            .count(),
        5
    );
    let audit = fleet_json(&["fleet", "audit", "rot", "--data-dir", dd, "--json"]);
    assert!(
        audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "rotate_access_key" && e["result"] == "ok"),
        "{audit}"
    );
    assert!(!audit
        .to_string()
        .contains(bundle["access_key"].as_str().unwrap()));
}

// ---------------------------------------------------------------------------------------------
// Enrollment limits and lifecycle settings (issue #24, part 2).

/// `uplink workspace set NAME ARGS… --data-dir` while `svc` runs, then waits until the service
/// logs the workspace loaded with the settings `expect` (`field=value`: it logs once the
/// workspace is installed, so requests from then on get them).
pub(crate) fn set_workspace(
    data: &Path,
    svc: &ServiceProc,
    name: &str,
    args: &[&str],
    expect: &[&str],
) -> serde_json::Value {
    let mut all = vec![
        "workspace",
        "set",
        name,
        "--data-dir",
        data.to_str().unwrap(),
        "--json",
    ];
    all.extend_from_slice(args);
    let v = fleet_json(&all);
    let ws_field = format!("workspace={name} ");
    poll_until(
        "the service to load the changed settings",
        20,
        || {
            svc.log().lines().any(|l| {
                l.contains("loaded")
                    && l.contains(&ws_field)
                    && expect.iter().all(|f| l.contains(f))
            })
        },
        || svc.log(),
    );
    v
}

fn audit_entries(data: &Path, ws: &str) -> Vec<serde_json::Value> {
    let audit = fleet_json(&[
        "fleet",
        "audit",
        ws,
        "--data-dir",
        data.to_str().unwrap(),
        "--json",
    ]);
    audit["entries"].as_array().unwrap().clone()
}

/// Waits (on the clock, the one condition that decides it) until at most `into_ms` of a fixed
/// window of `window_ms` has passed, so what follows happens early in one window (the service
/// counts in the same windows: `uplink_store::lifecycle::rate_window`, from the same clock).
fn early_in_a_window(window_ms: u64, into_ms: u64) {
    loop {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let into = now % window_ms;
        if into <= into_ms {
            return;
        }
        std::thread::sleep(Duration::from_millis((window_ms - into).min(200)));
    }
}

/// An enrollment request for a new openssl key, made ahead (openssl is slow under load), to be
/// POSTed by [`post_enroll`].
fn enroll_request(dir: &Path, label: &str, access_key: &str) -> std::path::PathBuf {
    let (_, csr) = key_and_csr(dir, label, &format!("/CN={label}"));
    let req = serde_json::json!({
        "access_key": access_key,
        "csr_pem": std::fs::read_to_string(csr).unwrap(),
        "name": label,
    });
    let body = dir.join(format!("{label}-enroll.json"));
    std::fs::write(&body, req.to_string()).unwrap();
    body
}

/// POSTs an enrollment request: the status, the body's code and Retry-After ("" when none).
fn post_enroll(ws: &Ws, port: u16, body: &Path) -> (u16, String, String) {
    let headers = body.with_extension("headers");
    let (status, text) = Curl::new(&ws.sensor_host, port, uplink_protocol::ENROLL_PATH)
        .arg("--cacert")
        .arg(&ws.ca_file)
        .arg("-D")
        .arg(&headers)
        .args(["-H", "content-type: application/json", "--data-binary"])
        .arg(format!("@{}", body.display()))
        .run();
    let code = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["code"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let retry_after = std::fs::read_to_string(&headers)
        .unwrap()
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("retry-after")
                .then(|| v.trim().to_owned())
        })
        .unwrap_or_default();
    (status, code, retry_after)
}

#[test]
fn an_enrollment_flood_is_answered_429_and_sensor_install_waits_then_succeeds() {
    const WINDOW_S: u64 = 15;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let svc = ServiceProc::start(&data);
    let ws = create_workspace(&data, "flood", svc.port);
    let set = set_workspace(
        &data,
        &svc,
        "flood",
        &[
            "--enroll-limit",
            "2",
            "--enroll-window",
            &format!("{WINDOW_S}s"),
        ],
        &["enroll_limit=2 ", &format!("enroll_window_secs={WINDOW_S}")],
    );
    assert_eq!(
        (
            set["enroll_limit"].as_u64(),
            set["enroll_window_secs"].as_u64()
        ),
        (Some(2), Some(WINDOW_S)),
        "{set}"
    );

    // The flood, early in a window: the workspace's two enrollments pass, the rest wait.
    let requests: Vec<_> = (0..4)
        .map(|i| enroll_request(tmp.path(), &format!("flood{i}"), &ws.access_key))
        .collect();
    early_in_a_window(WINDOW_S * 1000, 1500);
    let flood: Vec<(u16, String, String)> = requests
        .iter()
        .map(|r| post_enroll(&ws, svc.port, r))
        .collect();

    let statuses: Vec<u16> = flood.iter().map(|f| f.0).collect();
    assert_eq!(statuses, [200, 200, 429, 429], "{flood:?}\n{}", svc.log());
    for (_, code, retry_after) in &flood[2..] {
        assert_eq!(code, "ENROLL_RATE_LIMITED");
        let secs: u64 = retry_after
            .parse()
            .unwrap_or_else(|_| panic!("Retry-After {retry_after:?}"));
        assert!((1..=WINDOW_S).contains(&secs), "{secs}");
    }

    // `sensor install` in the same window: answered 429, waits as told, then enrolls.
    let started = Instant::now();
    let out = Sensor::install(&tmp.path().join("sensor"), &ws, &["--enroll-wait", "60s"]);
    let (o, e) = (stdout(&out), stderr(&out));
    assert!(out.status.success(), "{o}\n{e}\n{}", svc.log());
    assert!(
        e.contains("enrollment rate limited"),
        "the install says it waited: {e}"
    );
    assert!(started.elapsed() < Duration::from_secs(WINDOW_S + 20));
    let sensor = Sensor {
        dir: tmp.path().join("sensor"),
    };
    let id = sensor.status()["sensor_id"].as_str().unwrap().to_owned();

    // Audited: three enrollments, and the 429s of that window once (not one entry per request).
    let entries = audit_entries(&data, "flood");
    let enrolled: Vec<&serde_json::Value> = entries
        .iter()
        .filter(|e| e["action"] == "enroll" && e["result"] == "ok")
        .collect();
    assert_eq!(enrolled.len(), 3, "{entries:?}");
    assert!(
        enrolled.iter().any(|e| e["sensor_id"] == id.as_str()),
        "{entries:?}"
    );
    let limited: Vec<&serde_json::Value> = entries
        .iter()
        .filter(|e| {
            e["detail"]
                .as_str()
                .unwrap_or("")
                .contains("ENROLL_RATE_LIMITED")
        })
        .collect();
    assert_eq!(limited.len(), 1, "{entries:?}");
    assert_eq!(limited[0]["result"], "refused");
    assert!(
        limited[0]["detail"].as_str().unwrap().starts_with("429 "),
        "{entries:?}"
    );
}

#[test]
fn failed_enrollments_are_limited_per_address_and_a_bounded_install_fails_with_a_code() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let svc = ServiceProc::start(&data);
    let ws = create_workspace(&data, "guess", svc.port);
    // A window of a day, not in its last five minutes: everything below happens in one window.
    set_workspace(
        &data,
        &svc,
        "guess",
        &["--failed-enroll-limit", "3", "--enroll-window", "1d"],
        &["failed_enroll_limit=3 ", "enroll_window_secs=86400"],
    );
    let wrong = "not-the-access-key-0123456789abcdef";
    let requests: Vec<_> = (0..4)
        .map(|i| enroll_request(tmp.path(), &format!("guess{i}"), wrong))
        .collect();
    let right = enroll_request(tmp.path(), "right", &ws.access_key);
    early_in_a_window(86_400_000, 86_400_000 - 300_000);
    let tries: Vec<(u16, String, String)> = requests
        .iter()
        .map(|r| post_enroll(&ws, svc.port, r))
        .collect();
    let got: Vec<(u16, &str)> = tries.iter().map(|t| (t.0, t.1.as_str())).collect();
    assert_eq!(
        got,
        [
            (401, "ENROLL_DENIED"),
            (401, "ENROLL_DENIED"),
            (401, "ENROLL_DENIED"),
            (429, "ENROLL_RATE_LIMITED")
        ],
        "{}",
        svc.log()
    );
    // The address is limited, whatever key it brings now: even the right one waits.
    let (status, code, retry_after) = post_enroll(&ws, svc.port, &right);
    assert_eq!((status, code.as_str()), (429, "ENROLL_RATE_LIMITED"));
    assert!(retry_after.parse::<u64>().unwrap() <= 86_400);
    // `sensor install` waits at most --enroll-wait, then fails with the code and nothing installed.
    let dir = tmp.path().join("sensor");
    let out = Sensor::install(&dir, &ws, &["--enroll-wait", "2s"]);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("ENROLL_RATE_LIMITED"), "{text}");
    assert!(text.contains("--enroll-wait"), "{text}");
    assert!(!dir.join("sensor.toml").exists());

    let entries = audit_entries(&data, "guess");
    let denied = entries
        .iter()
        .filter(|e| e["detail"].as_str().unwrap_or("").contains("ENROLL_DENIED"))
        .count();
    let limited = entries
        .iter()
        .filter(|e| {
            e["detail"]
                .as_str()
                .unwrap_or("")
                .contains("ENROLL_RATE_LIMITED")
        })
        .count();
    assert_eq!((denied, limited), (3, 1), "{entries:?}");
}

#[test]
fn an_uninstalled_sensor_tells_the_service_through_its_proxy_and_shows_uninstalled() {
    use crate::support::squid::{Squid, SquidOptions};
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let dd = data.to_str().unwrap();
    let svc = ServiceProc::start(&data);
    let ws = create_workspace(&data, "bye", svc.port);
    let mut squid = Squid::start(SquidOptions {
        hosts: vec![ws.sensor_host.clone()],
        ..Default::default()
    });
    let proxied = |name: &str| {
        Sensor::installed(
            &tmp.path().join(name),
            &ws,
            &["--quiet", "--proxy-url", &squid.url()],
        )
    };
    let (leaving, offline) = (proxied("leaving"), proxied("offline"));
    let id = leaving.status()["sensor_id"].as_str().unwrap().to_owned();
    let offline_id = offline.status()["sensor_id"].as_str().unwrap().to_owned();

    let out = ok(
        uplink(&[
            "sensor",
            "uninstall",
            "--config-dir",
            leaving.cfg(),
            "--json",
        ]),
        "sensor uninstall",
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["service_told"], true, "{v}\n{}", svc.log());
    assert!(!leaving.dir.join("sensor.toml").exists());
    // The service knows.
    let list = fleet_json(&["fleet", "list", "bye", "--data-dir", dd, "--json"]);
    let r = row(&list, &id).unwrap_or_else(|| panic!("{list}"));
    assert_eq!(r["lifecycle"], "uninstalled", "{r}");
    assert_eq!(
        row(&list, &offline_id).unwrap()["lifecycle"],
        "active",
        "{list}"
    );
    let entries = audit_entries(&data, "bye");
    assert!(
        entries.iter().any(|e| e["action"] == "uninstall"
            && e["result"] == "ok"
            && e["sensor_id"] == id.as_str()
            && e["actor"] == format!("sensor {id}")),
        "{entries:?}"
    );

    // It went through Squid, the sensor's only route: two installs and one uninstall tunnelled
    // (Squid writes its access log out when it stops).
    let access = squid.stop();
    let tunnels = access
        .lines()
        .filter(|l| l.contains("CONNECT") && l.contains(&ws.sensor_host))
        .count();
    assert_eq!(tunnels, 3, "{access}");

    // Best effort: with its only route gone, the uninstall still removes the sensor, within
    // the bound, says the service was not told, and the sensor stays `active` there.
    let started = Instant::now();
    let out = uplink(&[
        "sensor",
        "uninstall",
        "--config-dir",
        offline.cfg(),
        "--tell-timeout",
        "2s",
        "--json",
    ]);
    let text = ok(out.clone(), "sensor uninstall without a route");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["service_told"], false, "{v}");
    assert!(stderr(&out).contains("was not told"), "{}", stderr(&out));
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(!offline.dir.join("sensor.toml").exists());
    let list = fleet_json(&["fleet", "list", "bye", "--data-dir", dd, "--json"]);
    assert_eq!(
        row(&list, &offline_id).unwrap()["lifecycle"],
        "active",
        "{list}"
    );
}

// ---------------------------------------------------------------------------------------------
// CA rotation (issue #24, the last part).

/// curl to `path` with a client certificate, trusting `cacert`: `Some(status)`, or `None` when
/// the connection failed (a TLS refusal).
fn curl_with_cert(
    ws: &Ws,
    port: u16,
    path: &str,
    cacert: &Path,
    cert: &Path,
    key: &Path,
) -> (Option<u16>, String) {
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "20",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            "--resolve",
        ])
        .arg(format!("{}:{port}:127.0.0.1", ws.sensor_host))
        .arg("--cacert")
        .arg(cacert)
        .arg("--cert")
        .arg(cert)
        .arg("--key")
        .arg(key)
        .arg(format!("https://{}:{port}{path}", ws.sensor_host))
        .output()
        .expect("run curl");
    let text = stdout(&out);
    if !out.status.success() {
        return (None, format!("{}{}", text, stderr(&out)));
    }
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().ok(), body.to_owned())
}

/// The subject (DER) of the first certificate in a PEM file, and the issuer of the first.
fn subject_and_issuer(pem: &str) -> (Vec<u8>, Vec<u8>) {
    let certs = uplink_pki::certs_from_pem(pem).unwrap();
    let info = uplink_pki::cert_info(&certs[0]).unwrap();
    (info.subject_raw, info.issuer_raw)
}

fn pem_count(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.matches("BEGIN CERTIFICATE").count())
        .unwrap_or(0)
}

#[test]
fn a_sensor_behind_squid_moves_to_a_rotated_ca_without_reinstall_and_the_retired_ca_is_refused() {
    use crate::support::squid::{Squid, SquidOptions};
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let dd = data.to_str().unwrap();
    let svc = ServiceProc::start(&data);
    let ws = create_workspace(&data, "carot", svc.port);
    let mut squid = Squid::start(SquidOptions {
        hosts: vec![ws.sensor_host.clone()],
        ..Default::default()
    });
    let sensor = Sensor::installed(
        &tmp.path().join("sensor"),
        &ws,
        &["--quiet", "--proxy-url", &squid.url()],
    );
    let id = sensor.status()["sensor_id"].as_str().unwrap().to_owned();
    // A second machine, enrolled but not running: it cannot move by itself.
    let idle = Sensor::installed(&tmp.path().join("idle"), &ws, &["--quiet"]);
    let idle_id = idle.status()["sensor_id"].as_str().unwrap().to_owned();
    // The running sensor's first key and certificate (of the old CA), kept aside.
    let (old_cert, old_key) = (tmp.path().join("old.pem"), tmp.path().join("old.key"));
    std::fs::copy(sensor.dir.join("client.pem"), &old_cert).unwrap();
    std::fs::copy(sensor.dir.join("client.key"), &old_key).unwrap();
    let run_log = tmp.path().join("run.log");
    let context = || {
        format!(
            "{}\nsquid:\n{}\nservice:\n{}",
            sensor.context(&run_log),
            squid.logs(),
            svc.log()
        )
    };
    let run = sensor.spawn_run(&run_log);
    let stored = || {
        exported(&data, "carot")
            .into_iter()
            .filter(|(s, _, v)| *s == id && v["kind"] == "ev")
            .count()
    };
    ok(sensor.send(&lines(0..100)), "sensor send");
    poll_until("the first events stored", 60, || stored() == 100, context);

    // Rotation.
    let rotated = fleet_json(&[
        "workspace",
        "rotate-ca",
        "carot",
        "--data-dir",
        dd,
        "--json",
    ]);
    let new_sha = rotated["ca_sha256"].as_str().unwrap().to_owned();
    assert_eq!(
        rotated["previous_ca_sha256"],
        ws.ca_sha256.as_str(),
        "{rotated}"
    );
    assert_ne!(new_sha, ws.ca_sha256);
    // The bundle carries the new CA.
    let bundle: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("bundles").join("carot.json")).unwrap())
            .unwrap();
    assert_eq!(bundle["ca_sha256"], new_sha.as_str(), "{bundle}");
    let new_ca_pem = bundle["ca_pem"].as_str().unwrap().to_owned();
    let (new_subject, _) = subject_and_issuer(&new_ca_pem);
    let both = tmp.path().join("both-cas.pem");
    std::fs::write(
        &both,
        format!(
            "{new_ca_pem}{}",
            std::fs::read_to_string(&ws.ca_file).unwrap()
        ),
    )
    .unwrap();
    // Every replica follows within a poll: the old certificate is still accepted, the trust set
    // holds both CAs, and each CA's CRL is at its digest's name.
    let mut trust_body = String::new();
    poll_until(
        "the service to serve the new trust set",
        30,
        || {
            let (status, body) = curl_with_cert(
                &ws,
                svc.port,
                uplink_protocol::TRUST_PATH,
                &both,
                &old_cert,
                &old_key,
            );
            trust_body = body;
            status == Some(200) && trust_body.matches("BEGIN CERTIFICATE").count() == 2
        },
        context,
    );
    assert!(
        trust_body.starts_with(new_ca_pem.trim_end()),
        "the current CA first: {trust_body}"
    );
    for sha in [&ws.ca_sha256, &new_sha] {
        fetch_crl_at(
            &Ws {
                ca_file: both.clone(),
                ..ws.clone()
            },
            &ws.sensor_host,
            svc.port,
            &format!("/pki/crl-{sha}.der"),
            &tmp.path().join(format!("crl-{sha}.der")),
        );
    }

    // The sensor learns the new CA from its next answer and renews onto it.
    ok(sensor.send(&lines(100..200)), "sensor send");
    poll_until(
        "the events sent during the rotation",
        60,
        || stored() == 200,
        context,
    );
    poll_until(
        "the sensor to trust both CAs and hold a certificate of the new one",
        60,
        || {
            let cert = std::fs::read_to_string(sensor.dir.join("client.pem")).unwrap_or_default();
            pem_count(&sensor.dir.join("ca.pem")) == 2
                && !cert.is_empty()
                && subject_and_issuer(&cert).1 == new_subject
        },
        context,
    );

    // Retiring is refused while a sensor has not moved, naming it.
    let refused = uplink(&[
        "workspace",
        "rotate-ca",
        "carot",
        "--retire-old",
        "--data-dir",
        dd,
    ]);
    assert!(!refused.status.success(), "{}", stdout(&refused));
    assert!(stderr(&refused).contains(&idle_id), "{}", stderr(&refused));
    assert!(
        !stderr(&refused).contains(&id),
        "the moved sensor is not named: {}",
        stderr(&refused)
    );
    ok(
        uplink(&["fleet", "decommission", "carot", &idle_id, "--data-dir", dd]),
        "fleet decommission",
    );
    let retired = fleet_json(&[
        "workspace",
        "rotate-ca",
        "carot",
        "--retire-old",
        "--data-dir",
        dd,
        "--json",
    ]);
    assert_eq!(
        retired["retired"],
        serde_json::json!([ws.ca_sha256]),
        "{retired}"
    );

    // The old CA's certificates are refused once the service followed; its CRL is gone.
    poll_until(
        "the service to refuse the old CA's certificate",
        30,
        || {
            curl_with_cert(
                &ws,
                svc.port,
                uplink_protocol::TRUST_PATH,
                &both,
                &old_cert,
                &old_key,
            )
            .0 != Some(200)
        },
        context,
    );
    let (status, _) = curl_with_cert(
        &ws,
        svc.port,
        &format!("/pki/crl-{}.der", ws.ca_sha256),
        &both,
        &sensor.dir.join("client.pem"),
        &sensor.dir.join("client.key"),
    );
    assert_eq!(status, Some(404), "{}", context());

    // The sensor goes on, on the new CA alone.
    ok(sensor.send(&lines(200..300)), "sensor send");
    poll_until(
        "the events sent after the retirement",
        60,
        || stored() == 300,
        context,
    );
    poll_until(
        "the sensor to trust the new CA alone",
        30,
        || {
            std::fs::read_to_string(sensor.dir.join("ca.pem")).is_ok_and(|t| {
                t.matches("BEGIN CERTIFICATE").count() == 1
                    && subject_and_issuer(&t).0 == new_subject
            })
        },
        context,
    );
    signal(run.id(), "TERM");
    assert!(
        wait_exit(run, Duration::from_secs(15)).is_some_and(|s| s.success()),
        "{}",
        context()
    );

    // Every event once, from the same sensor (no reinstall).
    let rows: Vec<_> = exported(&data, "carot")
        .into_iter()
        .filter(|(s, _, _)| *s == id)
        .collect();
    assert_n_exactly_once(&rows, "ev", 300);
    assert_eq!(sensor.status()["sensor_id"], id.as_str());
    let run_text = std::fs::read_to_string(&run_log).unwrap();
    assert!(run_text.contains("renewing now"), "{}", context());
    // Audited, and it all went through Squid (the only route).
    let entries = audit_entries(&data, "carot");
    for (action, result) in [
        ("rotate_ca", "ok"),
        ("retire_ca", "failed"),
        ("retire_ca", "ok"),
    ] {
        assert!(
            entries
                .iter()
                .any(|e| e["action"] == action && e["result"] == result),
            "{action} {result}: {entries:?}"
        );
    }
    assert!(
        entries.iter().any(|e| e["action"] == "renew"
            && e["result"] == "ok"
            && e["actor"] == format!("sensor {id}")),
        "{entries:?}"
    );
    let access = squid.stop();
    assert!(
        access
            .lines()
            .filter(|l| l.contains("CONNECT") && l.contains(&ws.sensor_host))
            .count()
            >= 2,
        "{access}"
    );
}
