//! The service's store and enrollment against a careless administrator, a damaged disk and a
//! replaying client (issue 15, items 3, 4, 9, 12, 13, 15): the real binary on loopback, the real
//! sensor, curl and openssl.

use crate::support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::daemon::Daemon;
use support::sensor::{assert_n_exactly_once, Sensor};
use support::*;

const STORE_FILES: [&str; 3] = ["uplink.db", "uplink.db-wal", "uplink.db-shm"];

fn lines(range: std::ops::Range<u64>) -> String {
    range
        .map(|i| {
            format!(
                "{{\"kind\":\"logon\",\"n\":{i},\"pad\":\"{}\"}}\n",
                "p".repeat(100)
            )
        })
        .collect()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `uplink service` started through `prefix` (e.g. `sh -c 'umask 022; exec "$@"'` or
/// `setpriv` to another user), on a free port; returns it and its port.
fn service_via(prefix: &[&str], data: &Path, listen: &str) -> (Daemon, u16) {
    std::fs::create_dir_all(data).unwrap();
    let mut cmd = Command::new(prefix[0]);
    cmd.args(&prefix[1..])
        .arg(UPLINK)
        .args(["service", "--data-dir"])
        .arg(data)
        .args(["--listen", listen, "--log-level", "debug"]);
    scrub_proxy_env(&mut cmd);
    let svc = Daemon::spawn("uplink service", cmd);
    svc.expect("listening on https://", Duration::from_secs(20));
    let log = svc.log();
    let port = log
        .lines()
        .find_map(|l| l.strip_prefix("listening on https://"))
        .and_then(|a| a.rsplit_once(':'))
        .and_then(|(_, p)| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no port in {log}"));
    (svc, port)
}

/// As the unprivileged user `nobody`, so that file modes bind (the tests run as root).
const AS_NOBODY: [&str; 4] = [
    "setpriv",
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
];

/// `GET /healthz` as a load balancer sends it: to the IP address (no SNI), no client
/// certificate, not verifying the placeholder certificate.
fn healthz(port: u16) -> (u16, String) {
    support::healthz(port).unwrap_or_else(|e| panic!("{e}"))
}

/// Copies the files a process still holds open although they were deleted (`NAME (deleted)`
/// in /proc/PID/fd) into `to`, under their names: what an administrator can rescue.
fn rescue_deleted(pid: u32, data: &Path, to: &Path) -> Vec<String> {
    std::fs::create_dir_all(to).unwrap();
    let mut saved = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap() {
        let entry = entry.unwrap();
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        let target = target.to_string_lossy().into_owned();
        for name in ["uplink.db", "uplink.db-wal"] {
            let deleted = format!("{} (deleted)", data.join(name).display());
            if target == deleted && !saved.contains(&name.to_owned()) {
                std::fs::copy(entry.path(), to.join(name)).unwrap();
                saved.push(name.to_owned());
            }
        }
    }
    saved.sort();
    saved
}

#[test]
fn a_store_deleted_under_a_running_service_answers_503_and_sensors_keep_their_events() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    let mut svc = ServiceProc::start(&data);
    let port = svc.port;
    let ws = create_workspace(&data, "gone", port);
    let sensor = Sensor::installed(&dir.path().join("sensor"), &ws, &["--quiet"]);
    sensor.set_upload(500);
    let run_log = dir.path().join("run.log");
    let run = sensor.spawn_run(&run_log);
    let context = || format!("{}\nservice log:\n{}", sensor.context(&run_log), svc.log());

    // Uploading: 3,000 events delivered while the store is in place.
    ok(sensor.send(&lines(0..3000)), "send");
    poll_until(
        "the first 3,000 events delivered",
        60,
        || sensor.status()["queue"]["events"] == 0,
        context,
    );
    assert_eq!(healthz(port).0, 200);

    // The administrator deletes the store while the sensor keeps uploading.
    for f in STORE_FILES {
        std::fs::remove_file(data.join(f)).unwrap();
    }
    ok(sensor.send(&lines(3000..6000)), "send");
    poll_until(
        "the sensor told SERVICE_UNAVAILABLE",
        60,
        || sensor.status()["last_error"]["code"] == "SERVICE_UNAVAILABLE",
        context,
    );
    let (status, body) = healthz(port);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("SERVICE_UNAVAILABLE"), "{body}");
    signal(run.id(), "TERM");
    assert!(
        wait_exit(run, Duration::from_secs(30)).is_some(),
        "sensor did not stop"
    );
    // Every event sent after the deletion is still queued (plus the sensor's own heartbeats
    // and inventories, which were refused too).
    let queued = sensor.status()["queue"]["events"].as_u64().unwrap();
    assert!(queued >= 3000, "only {queued} events queued\n{}", context());
    // The log is read from the service's stderr by another thread: wait for the line.
    poll_until(
        "the service to log the deleted store",
        10,
        || {
            let log = svc.log();
            log.contains("was deleted") || log.contains("deleted or moved away")
        },
        || svc.log(),
    );

    // What the service acknowledged is in the deleted files it still holds: rescue them.
    let rescue = dir.path().join("rescue");
    assert_eq!(
        rescue_deleted(svc.pid(), &data, &rescue),
        vec!["uplink.db", "uplink.db-wal"]
    );
    let child = svc.take();
    signal(child.id(), "TERM");
    assert!(wait_exit(child, Duration::from_secs(20)).is_some());

    // A restart on the directory with bundles but no store is refused, and creates nothing.
    let out = uplink(&[
        "service",
        "--data-dir",
        data.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("bundles/gone.json") && err.contains("no store") && err.contains("backup"),
        "{err}"
    );
    assert!(
        !data.join("uplink.db").exists(),
        "an empty store was created"
    );

    // Restored from the rescued copy, the service takes the rest: every event exactly once.
    for f in ["uplink.db", "uplink.db-wal"] {
        std::fs::copy(rescue.join(f), data.join(f)).unwrap();
    }
    let svc = ServiceProc::start_at(&data, &format!("127.0.0.1:{port}"));
    let out = sensor.run_once(30);
    assert!(
        out.status.success(),
        "{}{}\n{}",
        stdout(&out),
        stderr(&out),
        svc.log()
    );
    assert_eq!(sensor.status()["queue"]["events"], 0);
    let rows = exported(&data, "gone");
    assert_n_exactly_once(&rows, "logon", 6000);
}

#[test]
fn store_files_are_0600_under_umask_022_in_a_preexisting_0755_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("state");
    std::fs::create_dir(&data).unwrap();
    chmod(&data, 0o755);
    let (svc, port) = service_via(
        &["sh", "-c", "umask 022 && exec \"$0\" \"$@\""],
        &data,
        "127.0.0.1:0",
    );
    let ws = create_workspace(&data, "modes", port);
    let sensor = Sensor::installed(&dir.path().join("sensor"), &ws, &["--quiet"]);
    ok(sensor.send(&lines(0..100)), "send");
    let out = sensor.run_once(30);
    assert!(out.status.success(), "{}{}", stderr(&out), svc.log());
    for f in STORE_FILES {
        assert_eq!(mode(&data.join(f)), 0o600, "{f}");
    }
    assert_eq!(mode(&data.join("bundles")), 0o700);
    assert_eq!(mode(&ws.bundle_path), 0o600);
    assert_eq!(mode(&data), 0o755, "the directory is the administrator's");
    drop(svc);

    // Files left readable by others (a copy restored carelessly) are tightened at start.
    for f in STORE_FILES {
        if data.join(f).exists() {
            chmod(&data.join(f), 0o644);
        }
    }
    let (_svc, _) = service_via(
        &["sh", "-c", "umask 022 && exec \"$0\" \"$@\""],
        &data,
        "127.0.0.1:0",
    );
    for f in STORE_FILES {
        assert_eq!(mode(&data.join(f)), 0o600, "{f} after a restart");
    }
}

/// Overwrites two pages in the middle of the file, as a failing disk would.
fn damage(db: &Path) {
    use std::io::{Seek, SeekFrom, Write};
    let len = std::fs::metadata(db).unwrap().len();
    let mut f = std::fs::OpenOptions::new().write(true).open(db).unwrap();
    for at in [len / 2 / 4096 * 4096, len * 3 / 4 / 4096 * 4096] {
        f.seek(SeekFrom::Start(at)).unwrap();
        let junk: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 3) as u8).collect();
        f.write_all(&junk).unwrap();
    }
    f.sync_all().unwrap();
}

#[test]
fn a_store_with_damaged_pages_is_refused_at_start_and_its_export_fails_loudly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    let mut svc = ServiceProc::start(&data);
    let ws = create_workspace(&data, "damaged", svc.port);
    let sensor = Sensor::installed(&dir.path().join("sensor"), &ws, &["--quiet"]);
    ok(sensor.send(&lines(0..20_000)), "send");
    let out = sensor.run_once(60);
    assert!(out.status.success(), "{}{}", stderr(&out), svc.log());
    let child = svc.take();
    signal(child.id(), "TERM");
    assert!(wait_exit(child, Duration::from_secs(20)).is_some());
    // The last process to close the store checkpoints its WAL into the database file.
    let stats = ok(
        uplink(&[
            "workspace",
            "stats",
            "damaged",
            "--data-dir",
            data.to_str().unwrap(),
            "--json",
        ]),
        "workspace stats",
    );
    assert!(!data.join("uplink.db-wal").exists(), "{stats}");
    let total = serde_json::from_str::<serde_json::Value>(&stats).unwrap()["events"]["total"]
        .as_u64()
        .unwrap();
    assert!(total >= 20_000, "{stats}");

    damage(&data.join("uplink.db"));

    let out = uplink(&[
        "service",
        "--data-dir",
        data.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("damaged") && err.contains("backup"), "{err}");

    let out = uplink(&[
        "events",
        "export",
        "damaged",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("damaged") && err.contains("incomplete"),
        "{err}"
    );
    let written = stdout(&out).lines().count() as u64;
    assert!(written < total, "{written} of {total} written, yet: {err}");
}

/// A key and CSR made by openssl: `newkey` is openssl's `-newkey` argument (with `pkeyopt`s),
/// `digest` its signing digest (None: openssl's default).
fn openssl_csr(
    dir: &Path,
    label: &str,
    newkey: &[&str],
    digest: Option<&str>,
) -> (PathBuf, String) {
    let key = dir.join(format!("{label}.key"));
    let csr = dir.join(format!("{label}.csr"));
    let mut args = vec!["req", "-new", "-nodes", "-subj", "/CN=x", "-keyout"];
    args.push(key.to_str().unwrap());
    args.extend(["-out", csr.to_str().unwrap()]);
    args.extend(newkey);
    if let Some(d) = digest {
        args.push(d);
    }
    openssl(&args);
    (key, std::fs::read_to_string(&csr).unwrap())
}

fn post_json(
    ws: &Ws,
    port: u16,
    path: &str,
    body: &serde_json::Value,
    client: Option<(&Path, &Path)>,
) -> (u16, serde_json::Value) {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), body.to_string()).unwrap();
    let mut c = Curl::new(&ws.sensor_host, port, path)
        .arg("--cacert")
        .arg(&ws.ca_file)
        .args(["-H", "content-type: application/json", "--data-binary"])
        .arg(format!("@{}", file.path().display()));
    if let Some((cert, key)) = client {
        c = c.arg("--cert").arg(cert).arg("--key").arg(key);
    }
    let (status, text) = c.run();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| serde_json::json!({"raw": text})),
    )
}

fn enroll(ws: &Ws, port: u16, access_key: &str, csr: &str) -> (u16, serde_json::Value) {
    post_json(
        ws,
        port,
        "/api/v1/enroll",
        &serde_json::json!({"access_key": access_key, "csr_pem": csr, "name": "dc01"}),
        None,
    )
}

#[test]
fn enrollment_refuses_a_replayed_key_and_logs_every_refusal_without_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    let svc = ServiceProc::start(&data);
    let ws = create_workspace(&data, "replay", svc.port);
    let (key, csr) = openssl_csr(
        dir.path(),
        "a",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        None,
    );

    let (status, first) = enroll(&ws, svc.port, &ws.access_key, &csr);
    assert_eq!(status, 200, "{first}");
    // The same CSR again (a replay, or a cloned machine): refused, nothing enrolled.
    for _ in 0..3 {
        let (status, again) = enroll(&ws, svc.port, &ws.access_key, &csr);
        assert_eq!(status, 409, "{again}");
        assert_eq!(again["code"], "KEY_ALREADY_ENROLLED", "{again}");
        assert!(
            again["message"].as_str().unwrap().contains("ECDSA P-256"),
            "{again}"
        );
    }
    let wrong_key = "not-the-access-key-0123456789abcdef";
    let (status, denied) = enroll(&ws, svc.port, wrong_key, &csr);
    assert_eq!(status, 401, "{denied}");
    assert_eq!(denied["code"], "ENROLL_DENIED");
    let stats = ok(
        uplink(&[
            "workspace",
            "stats",
            "replay",
            "--data-dir",
            data.to_str().unwrap(),
            "--json",
        ]),
        "stats",
    );
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["sensors"].as_array().unwrap().len(), 1, "{stats}");

    // Renewal may keep the sensor's own key; another sensor's key is refused.
    let cert = dir.path().join("a.crt");
    std::fs::write(&cert, first["certificate_pem"].as_str().unwrap()).unwrap();
    let (status, renewed) = post_json(
        &ws,
        svc.port,
        "/api/v1/renew",
        &serde_json::json!({"csr_pem": csr}),
        Some((&cert, &key)),
    );
    assert_eq!(status, 200, "{renewed}");
    let (bkey, bcsr) = openssl_csr(dir.path(), "b", &["-newkey", "ed25519"], None);
    let (status, b) = enroll(&ws, svc.port, &ws.access_key, &bcsr);
    assert_eq!(status, 200, "{b}");
    let bcert = dir.path().join("b.crt");
    std::fs::write(&bcert, b["certificate_pem"].as_str().unwrap()).unwrap();
    let (status, stolen) = post_json(
        &ws,
        svc.port,
        "/api/v1/renew",
        &serde_json::json!({"csr_pem": csr}),
        Some((&bcert, &bkey)),
    );
    assert_eq!(status, 409, "{stolen}");
    assert_eq!(stolen["code"], "KEY_ALREADY_ENROLLED");

    // Every refusal is in the log, with its code; neither key ever is. (The log is read from
    // the service's stderr by another thread: wait for the last refusal's line first.)
    poll_until(
        "the service to log every refusal",
        10,
        || {
            svc.log()
                .lines()
                .filter(|l| l.contains("refused") && l.contains("KEY_ALREADY_ENROLLED"))
                .count()
                >= 4
        },
        || svc.log(),
    );
    let log = svc.log();
    let refusals: Vec<&str> = log.lines().filter(|l| l.contains("refused")).collect();
    // Each names the address it came from.
    assert!(
        refusals.iter().all(|l| l.contains("peer=127.0.0.1")),
        "{log}"
    );
    assert_eq!(
        refusals
            .iter()
            .filter(|l| l.contains("KEY_ALREADY_ENROLLED"))
            .count(),
        4,
        "{log}"
    );
    assert!(
        refusals.iter().any(|l| l.contains("ENROLL_DENIED")
            && l.contains("wrong access key")
            && l.contains("replay")),
        "{log}"
    );
    assert!(
        !log.contains(wrong_key) && !log.contains(&ws.access_key),
        "{log}"
    );
}

/// A CSR to refuse: label, openssl's -newkey and options, digest, words the refusal must contain.
type Refused<'a> = (&'a str, Vec<&'a str>, Option<&'a str>, Vec<&'a str>);

#[test]
fn one_csr_key_policy_refuses_weak_and_unsupported_keys_by_name_and_what_it_accepts_works() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    let svc = ServiceProc::start(&data);
    let ws = create_workspace(&data, "keys", svc.port);
    let dsa_params = dir.path().join("dsa.pem");
    openssl(&[
        "genpkey",
        "-genparam",
        "-algorithm",
        "DSA",
        "-pkeyopt",
        "dsa_paramgen_bits:1024",
        "-out",
        dsa_params.to_str().unwrap(),
    ]);
    let dsa = format!("dsa:{}", dsa_params.display());
    // (label, -newkey and options, digest, words the refusal must contain)
    let refused: Vec<Refused> = vec![
        (
            "rsa1024-sha1",
            vec!["-newkey", "rsa:1024"],
            Some("-sha1"),
            vec!["RSA 1024-bit"],
        ),
        (
            "rsa1024-sha256",
            vec!["-newkey", "rsa:1024"],
            Some("-sha256"),
            vec!["RSA 1024-bit"],
        ),
        (
            "rsa512",
            vec!["-newkey", "rsa:512"],
            Some("-sha256"),
            vec!["RSA 512-bit"],
        ),
        (
            "rsa2048-sha1",
            vec!["-newkey", "rsa:2048"],
            Some("-sha1"),
            vec!["RSA 2048-bit", "SHA-1"],
        ),
        (
            "p521",
            vec!["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-521"],
            None,
            vec!["ECDSA P-521"],
        ),
        (
            "secp256k1",
            vec!["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp256k1"],
            None,
            vec!["secp256k1"],
        ),
        ("ed448", vec!["-newkey", "ed448"], None, vec!["Ed448"]),
        ("dsa", vec!["-newkey", &dsa], Some("-sha256"), vec!["DSA"]),
    ];
    for (label, newkey, digest, words) in &refused {
        let (_, csr) = openssl_csr(dir.path(), label, newkey, *digest);
        let (status, body) = enroll(&ws, svc.port, &ws.access_key, &csr);
        assert_eq!(status, 400, "{label}: {body}");
        assert_eq!(body["code"], "REQUEST_REJECTED", "{label}: {body}");
        let message = body["message"].as_str().unwrap();
        for w in words {
            assert!(message.contains(w), "{label}: {w:?} not in {message}");
        }
        assert!(message.contains("uplink accepts"), "{label}: {message}");
        assert!(!message.contains("does not verify"), "{label}: {message}");
    }
    // What the policy accepts also passes mutual TLS: each posts a batch.
    let accepted: Vec<(&str, Vec<&str>, Option<&str>)> = vec![
        (
            "p256",
            vec!["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
            None,
        ),
        (
            "p384",
            vec!["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"],
            Some("-sha384"),
        ),
        ("ed25519", vec!["-newkey", "ed25519"], None),
        ("rsa2048", vec!["-newkey", "rsa:2048"], Some("-sha256")),
        (
            "rsa3072-sha512",
            vec!["-newkey", "rsa:3072"],
            Some("-sha512"),
        ),
    ];
    let batch = dir.path().join("batch.ndjson");
    std::fs::write(&batch, ndjson(0..3, "probe")).unwrap();
    for (label, newkey, digest) in &accepted {
        let (key, csr) = openssl_csr(dir.path(), label, newkey, *digest);
        let (status, body) = enroll(&ws, svc.port, &ws.access_key, &csr);
        assert_eq!(status, 200, "{label}: {body}");
        let cert = dir.path().join(format!("{label}.crt"));
        std::fs::write(&cert, body["certificate_pem"].as_str().unwrap()).unwrap();
        let who = Enrolled {
            sensor_id: body["sensor_id"].as_str().unwrap().into(),
            cert_file: cert,
            key_file: key,
        };
        let (status, resp) = post_events(&ws, svc.port, Some(&who), &batch, &[]);
        assert_eq!(status, 200, "{label}: {resp}");
        assert!(resp.contains("\"accepted\":3"), "{label}: {resp}");
    }
    let count = |log: &str| {
        log.lines()
            .filter(|l| l.contains("enrollment refused"))
            .count()
    };
    poll_until(
        "the service to log every refusal",
        10,
        || count(&svc.log()) >= refused.len(),
        || svc.log(),
    );
    let log = svc.log();
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("enrollment refused"))
            .count(),
        refused.len(),
        "{log}"
    );
}

#[test]
fn healthz_is_503_while_the_store_is_read_only_and_ingest_recovers_without_a_restart() {
    require("setpriv");
    let dir = tempfile::tempdir().unwrap();
    chmod(dir.path(), 0o755);
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let chown = |p: &Path| {
        let st = Command::new("chown")
            .args(["-R", "65534:65534"])
            .arg(p)
            .status()
            .unwrap();
        assert!(st.success());
    };
    chown(&data);
    let (svc, port) = service_via(&AS_NOBODY, &data, "127.0.0.1:0");
    let ws = create_workspace(&data, "ro", port);
    chown(&data);
    let sensor = Sensor::installed(&dir.path().join("sensor"), &ws, &["--quiet"]);
    ok(sensor.send(&lines(0..500)), "send");

    // The store becomes read-only before the writer first opens it.
    chmod(&data.join("uplink.db"), 0o400);
    chmod(&data, 0o500);
    let (status, body) = healthz(port);
    assert_eq!(status, 503, "{body}\n{}", svc.log());
    assert!(body.contains("SERVICE_UNAVAILABLE"), "{body}");
    // The log is read from the service's stderr by another thread: wait for the line.
    poll_until(
        "the service to log why the store is unavailable",
        10,
        || svc.log().contains("read-only"),
        || svc.log(),
    );
    // Any host, HEAD too; ping still answers (it proves the route, not the store).
    let (status, _) = Curl::new(&ws.sensor_host, port, "/healthz")
        .arg("--cacert")
        .arg(&ws.ca_file)
        .run();
    assert_eq!(status, 503);
    let (status, body) = Curl::new(&ws.sensor_host, port, "/tri/sensor/api/ping")
        .arg("--cacert")
        .arg(&ws.ca_file)
        .run();
    assert_eq!((status, body.as_str()), (200, "Ok"));
    sensor.run_once_failing(10, "SERVICE_UNAVAILABLE");

    // Writable again: healthy and ingesting, no restart.
    chmod(&data, 0o700);
    chmod(&data.join("uplink.db"), 0o600);
    let (status, body) = healthz(port);
    assert_eq!(status, 200, "{body}\n{}", svc.log());
    assert_eq!(body, "ok");
    let (status, _) = Curl::new(&ws.sensor_host, port, "/healthz")
        .arg("--cacert")
        .arg(&ws.ca_file)
        .args(["-I"])
        .run();
    assert_eq!(status, 200);
    let out = sensor.run_once(30);
    assert!(
        out.status.success(),
        "{}{}\n{}",
        stdout(&out),
        stderr(&out),
        svc.log()
    );
    assert_n_exactly_once(&exported(&data, "ro"), "logon", 500);
}
