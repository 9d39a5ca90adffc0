//! The service and the admin commands on PostgreSQL (`--database`, `UPLINK_DATABASE_URL`), on a
//! private cluster per test (`support/postgres.rs`): a real sensor uploading through a
//! `kill -9` of the service and a crash and restart of PostgreSQL, every event stored once;
//! the CLI's choice between `--data-dir` and `--database`, and its errors.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};

use crate::support::postgres::Cluster;
use crate::support::sensor::{assert_n_exactly_once, Row, Sensor};
use crate::support::*;

/// A database for the commands: its URL and the master key file.
pub(crate) struct Db {
    pub(crate) url: String,
    pub(crate) key: String,
}

impl Db {
    pub(crate) fn new(cluster: &Cluster, dir: &Path) -> Db {
        Db {
            url: cluster.url("uplink"),
            key: dir.join("master.key").to_str().unwrap().to_owned(),
        }
    }

    /// `--database URL --master-key-file FILE`.
    pub(crate) fn args(&self) -> [&str; 4] {
        ["--database", &self.url, "--master-key-file", &self.key]
    }
}

/// `uplink service` on PostgreSQL (the URL in `UPLINK_DATABASE_URL`), killed on drop.
pub(crate) struct PgService {
    child: Option<Child>,
    pub(crate) port: u16,
    log: Arc<Mutex<String>>,
}

impl PgService {
    fn start(db: &Db, listen: &str) -> PgService {
        Self::start_with(db, listen, &[])
    }

    /// With more service flags.
    pub(crate) fn start_with(db: &Db, listen: &str, extra: &[&str]) -> PgService {
        let mut cmd = uplink_cmd(&["service", "--listen", listen, "--log-level", "debug"]);
        cmd.args(extra);
        cmd.env("UPLINK_DATABASE_URL", &db.url)
            .env("UPLINK_MASTER_KEY_FILE", &db.key)
            .env_remove("UPLINK_DATA_DIR");
        let (child, port, log) = spawn_service(cmd);
        PgService {
            child: Some(child),
            port,
            log,
        }
    }

    /// SIGKILL, as a crash or the OOM killer would.
    fn kill_9(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    pub(crate) fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for PgService {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `uplink workspace create NAME --database URL --bundle-out DIR/NAME.json --json`, as a [`Ws`].
pub(crate) fn create_workspace_pg(db: &Db, dir: &Path, name: &str, port: u16) -> Ws {
    let bundle = dir.join(format!("{name}.json"));
    let [a, b, c, d] = db.args();
    let out = ok(
        uplink(&[
            "workspace",
            "create",
            name,
            a,
            b,
            c,
            d,
            "--public-port",
            &port.to_string(),
            "--bundle-out",
            bundle.to_str().unwrap(),
            "--json",
        ]),
        "workspace create --database",
    );
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["bundle_path"], bundle.to_str().unwrap());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&bundle).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the bundle holds the access key");
    let b: serde_json::Value = serde_json::from_slice(&std::fs::read(&bundle).unwrap()).unwrap();
    let ca_file = dir.join(format!("{name}-ca.pem"));
    std::fs::write(&ca_file, b["ca_pem"].as_str().unwrap()).unwrap();
    Ws {
        name: name.into(),
        sensor_host: format!("{name}sensorapi.uplink.localhost"),
        sensor_url: v["sensor_url"].as_str().unwrap().into(),
        bundle_path: bundle,
        access_key: v["access_key"].as_str().unwrap().into(),
        ca_sha256: v["ca_sha256"].as_str().unwrap().into(),
        ca_file,
    }
}

pub(crate) fn stats(db: &Db, ws: &str) -> serde_json::Value {
    let [a, b, c, d] = db.args();
    let out = ok(
        uplink(&["workspace", "stats", ws, a, b, c, d, "--json"]),
        "workspace stats --database",
    );
    serde_json::from_str(&out).unwrap()
}

pub(crate) fn kind_count(db: &Db, ws: &str, kind: &str) -> u64 {
    stats(db, ws)["events"]["by_kind"][kind]
        .as_u64()
        .unwrap_or(0)
}

pub(crate) fn export(db: &Db, ws: &str) -> Vec<Row> {
    let [a, b, c, d] = db.args();
    let out = ok(
        uplink(&["events", "export", ws, a, b, c, d]),
        "events export --database",
    );
    out.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["sensor_id"].as_str().unwrap().to_owned(),
                v["seq"].as_u64().unwrap(),
                serde_json::json!({"kind": v["kind"], "event": v["event"]}),
            )
        })
        .collect()
}

/// `GET /healthz` to the address (no SNI, no client certificate), as a load balancer asks.
fn healthz(port: u16) -> u16 {
    // No answer at all (the service restarting) reads as 0, as curl's %{http_code} did.
    crate::support::healthz(port).map_or(0, |(status, _)| status)
}

fn lines(range: std::ops::Range<u64>) -> String {
    range
        .map(|i| {
            format!(
                "{{\"kind\":\"pg\",\"n\":{i},\"pad\":\"{}\"}}\n",
                "p".repeat(100)
            )
        })
        .collect()
}

#[test]
fn a_sensor_loses_nothing_to_a_kill_9_of_the_service_or_a_postgresql_crash() {
    const N: u64 = 30_000;
    let cluster = Cluster::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let db = Db::new(&cluster, tmp.path());
    let mut service = PgService::start(&db, "127.0.0.1:0");
    let port = service.port;
    let ws = create_workspace_pg(&db, tmp.path(), "pgws", port);
    let sensor = Sensor::installed(&tmp.path().join("sensor"), &ws, &[]);
    // Small batches: hundreds of uploads, so the crashes land in the middle of them.
    sensor.set_upload(100);
    ok(sensor.send(&lines(0..N)), "sensor send");
    let run_log = tmp.path().join("run.log");
    let mut run = sensor.spawn_run(&run_log);
    let context = |service: &PgService| {
        format!(
            "{}\nservice log:\n{}\npostgres log:\n{}",
            sensor.context(&run_log),
            service.log(),
            cluster.log_text()
        )
    };

    // 1. kill -9 of the service mid-upload, then a new one on the same port.
    poll_until(
        "the first events stored",
        60,
        || kind_count(&db, "pgws", "pg") > 0,
        || context(&service),
    );
    service.kill_9();
    let at_kill = kind_count(&db, "pgws", "pg");
    assert!(at_kill < N, "the upload had finished before the kill");
    let service = PgService::start(&db, &format!("127.0.0.1:{port}"));

    // 2. PostgreSQL crashes (immediate stop: no checkpoint) mid-upload and comes back; the
    //    running service answers 503 meanwhile and recovers without a restart.
    poll_until(
        "the upload resumed after the restart",
        60,
        || kind_count(&db, "pgws", "pg") > at_kill,
        || context(&service),
    );
    let before_crash = kind_count(&db, "pgws", "pg");
    cluster.crash();
    eprintln!("stored at the kill: {at_kill}; before the crash: {before_crash}; of {N}");
    assert!(before_crash < N, "the upload had finished before the crash");
    poll_until(
        "healthz 503 while PostgreSQL is down",
        30,
        || healthz(port) == 503,
        || context(&service),
    );
    cluster.start_server();
    poll_until(
        "healthz 200 once PostgreSQL is back",
        30,
        || healthz(port) == 200,
        || context(&service),
    );

    // 3. Everything arrives, each event once.
    poll_until(
        "every event stored",
        120,
        || kind_count(&db, "pgws", "pg") >= N,
        || context(&service),
    );
    let _ = run.kill();
    let _ = run.wait();
    let rows = export(&db, "pgws");
    assert_n_exactly_once(&rows, "pg", N);
    let st = stats(&db, "pgws");
    assert_eq!(st["events"]["by_kind"]["pg"], N, "{st}");
    assert_eq!(
        st["events"]["total"].as_u64().unwrap(),
        rows.len() as u64,
        "the counters agree with the rows: {st}"
    );
    assert_eq!(st["sensors"].as_array().unwrap().len(), 1, "{st}");
    let log = service.log();
    assert!(
        log.contains("the PostgreSQL store"),
        "the outage is logged, naming the backend:\n{log}"
    );
}

#[test]
fn data_dir_or_database_one_of_them_and_errors_name_the_fix_never_the_password() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    // Both: a usage error (exit 2), for every command that takes them.
    for args in [
        vec!["workspace", "list"],
        vec!["workspace", "stats", "w"],
        vec!["workspace", "create", "w"],
        vec!["events", "export", "w"],
        vec!["service"],
    ] {
        let mut all = args.clone();
        all.extend([
            "--data-dir",
            dir,
            "--database",
            "postgres://u@/x?host=/tmp",
            "--master-key-file",
            "k",
        ]);
        let out = uplink(&all);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("cannot be used with"),
            "{}",
            stderr(&out)
        );
    }
    // Neither: a usage error naming both.
    let out = uplink_cmd(&["workspace", "list"])
        .env_remove("UPLINK_DATA_DIR")
        .env_remove("UPLINK_DATABASE_URL")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--data-dir") && stderr(&out).contains("--database"),
        "{}",
        stderr(&out)
    );
    // --database without the master key: a usage error naming it.
    let out = uplink(&[
        "workspace",
        "list",
        "--database",
        "postgres://u@/x?host=/tmp",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--master-key-file"),
        "{}",
        stderr(&out)
    );
    // Not a PostgreSQL URL, or nothing listening: the fix, and never the password.
    let key = tmp.path().join("master.key");
    let key = key.to_str().unwrap();
    let out = uplink(&[
        "workspace",
        "list",
        "--database",
        "mysql://u:s3cret@db/x",
        "--master-key-file",
        key,
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("not a PostgreSQL URL") && !err.contains("s3cret"),
        "{err}"
    );
    let gone = tmp.path().join("no-postgres-here");
    let url = format!("postgres://u:s3cret@/x?host={}", gone.display());
    let out = uplink_cmd(&["workspace", "list"])
        .env("UPLINK_DATABASE_URL", &url)
        .env("UPLINK_MASTER_KEY_FILE", key)
        .env_remove("UPLINK_DATA_DIR")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("cannot reach the PostgreSQL store at postgres://u:****@/x")
            && err.contains("Check that the server runs")
            && !err.contains("s3cret"),
        "{err}"
    );
    // The URL in the environment is not shown by --help either.
    let out = uplink_cmd(&["workspace", "list", "--help"])
        .env("UPLINK_DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(!stdout(&out).contains("s3cret"), "{}", stdout(&out));
}

#[test]
fn workspaces_created_with_database_are_listed_served_and_refused_twice() {
    let cluster = Cluster::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let db = Db::new(&cluster, tmp.path());
    let url = db.url.clone();
    let service = PgService::start(&db, "127.0.0.1:0");
    // Created by another process while the service runs: served at once.
    let ws = create_workspace_pg(&db, tmp.path(), "contoso", service.port);
    let (status, body) = Curl::new(&ws.sensor_host, service.port, "/tri/sensor/api/ping")
        .arg("--cacert")
        .arg(&ws.ca_file)
        .run();
    assert_eq!(status, 200, "{body}\n{}", service.log());
    // Without --bundle-out: ./NAME.json in the current directory.
    let out = uplink_cmd(&[
        "workspace",
        "create",
        "fabrikam",
        "--database",
        &url,
        "--json",
    ])
    .env("UPLINK_MASTER_KEY_FILE", &db.key)
    .current_dir(tmp.path())
    .output()
    .unwrap();
    let text = ok(out, "workspace create --database (default bundle path)");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["bundle_path"], "fabrikam.json");
    assert!(tmp.path().join("fabrikam.json").is_file());
    let [a, b, c, d] = db.args();
    let out = uplink(&["workspace", "list", a, b, c, d, "--json"]);
    let list: serde_json::Value = serde_json::from_str(&ok(out, "workspace list")).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["workspace"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["contoso", "fabrikam"]);
    let again = uplink(&[
        "workspace",
        "create",
        "contoso",
        a,
        b,
        c,
        d,
        "--bundle-out",
        tmp.path().join("again.json").to_str().unwrap(),
    ]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );
    assert!(!tmp.path().join("again.json").exists());
    assert!(!tmp.path().join(".again.json.tmp").exists());
    // Any host with the database and the master key can write the bundle again.
    let remade = tmp.path().join("remade.json");
    ok(
        uplink(&[
            "workspace",
            "bundle",
            "contoso",
            a,
            b,
            c,
            d,
            "--out",
            remade.to_str().unwrap(),
        ]),
        "workspace bundle --database",
    );
    assert_eq!(
        std::fs::read(&remade).unwrap(),
        std::fs::read(&ws.bundle_path).unwrap()
    );
    // A wrong master key: refused, naming the flag.
    let wrong = tmp.path().join("wrong.key");
    std::fs::write(&wrong, format!("{}\n", "ef".repeat(32))).unwrap();
    let out = uplink(&[
        "workspace",
        "list",
        "--database",
        &url,
        "--master-key-file",
        wrong.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is not the one this store's CA keys were sealed with")
            && stderr(&out).contains("--master-key-file"),
        "{}",
        stderr(&out)
    );
    let st = stats(&db, "contoso");
    assert_eq!(st["events"]["total"], 0, "{st}");
}

#[test]
fn rotating_the_master_key_reseals_everything_and_a_rerun_finishes_an_interrupted_rotation() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let d = dir.to_str().unwrap();
    let ws = create_workspace(&dir, "rot", 443);
    let key = dir.join("master.key");
    let old_key = std::fs::read(&key).unwrap();
    let new = tmp.path().join("new.key");
    let n = new.to_str().unwrap();
    let out = ok(
        uplink(&[
            "store",
            "rotate-master-key",
            "--data-dir",
            d,
            "--new-key-file",
            n,
        ]),
        "store rotate-master-key",
    );
    assert!(out.contains("re-sealed 2 secrets"), "{out}");
    assert_eq!(std::fs::read(&key).unwrap(), std::fs::read(&new).unwrap());
    assert_ne!(std::fs::read(&key).unwrap(), old_key);
    use std::os::unix::fs::PermissionsExt;
    for f in [&key, &new] {
        let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", f.display());
    }
    // Everything still opens: the bundle remade from the store is the one `create` wrote.
    let remade = tmp.path().join("remade.json");
    let r = remade.to_str().unwrap();
    ok(
        uplink(&["workspace", "bundle", "rot", "--data-dir", d, "--out", r]),
        "workspace bundle after the rotation",
    );
    assert_eq!(
        std::fs::read(&remade).unwrap(),
        std::fs::read(&ws.bundle_path).unwrap()
    );
    // Stopped after the commit, before DIR/master.key was replaced: the old key opens nothing…
    std::fs::write(&key, &old_key).unwrap();
    let out = uplink(&["workspace", "list", "--data-dir", d]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("--master-key-file"),
        "{}",
        stderr(&out)
    );
    // …and running the command again finishes the job.
    let out = ok(
        uplink(&[
            "store",
            "rotate-master-key",
            "--data-dir",
            d,
            "--new-key-file",
            n,
        ]),
        "store rotate-master-key, again",
    );
    assert!(out.contains("already under"), "{out}");
    assert_eq!(std::fs::read(&key).unwrap(), std::fs::read(&new).unwrap());
    ok(
        uplink(&["workspace", "list", "--data-dir", d]),
        "workspace list",
    );

    // PostgreSQL: the services are pointed at the new file.
    let cluster = Cluster::start().unwrap();
    let db = Db::new(&cluster, tmp.path());
    create_workspace_pg(&db, tmp.path(), "pgrot", 443);
    let new_pg = tmp.path().join("new-pg.key");
    let [a, b, c, dd] = db.args();
    let out = ok(
        uplink(&[
            "store",
            "rotate-master-key",
            a,
            b,
            c,
            dd,
            "--new-key-file",
            new_pg.to_str().unwrap(),
        ]),
        "store rotate-master-key --database",
    );
    assert!(
        out.contains("re-sealed 2 secrets") && out.contains("--master-key-file"),
        "{out}"
    );
    let out = uplink(&["workspace", "list", a, b, c, dd]);
    assert_eq!(out.status.code(), Some(1), "the old key opens nothing");
    ok(
        uplink(&[
            "workspace",
            "list",
            "--database",
            &db.url,
            "--master-key-file",
            new_pg.to_str().unwrap(),
        ]),
        "workspace list with the new key",
    );
}

/// Fills a data directory's store with `per_sensor` events for each of `sensors` (straight into
/// SQLite: a million events through the service would take minutes).
fn fill_sqlite(dir: &Path, workspace: &str, sensors: &[(&str, u64)]) {
    let mut c = rusqlite::Connection::open(dir.join("uplink.db")).unwrap();
    let tx = c.transaction().unwrap();
    let mut kinds = std::collections::BTreeMap::<&str, i64>::new();
    for (i, (id, n)) in sensors.iter().enumerate() {
        tx.execute(
            "INSERT INTO sensors (sensor_id, workspace, name, cert_sha256, enrolled_at, last_seen, key_sha256) VALUES (?1, ?2, ?3, 'c', 1, 2, ?4)",
            rusqlite::params![id, workspace, format!("host{i}"), format!("key-{id}")],
        )
        .unwrap();
        let row = tx.last_insert_rowid();
        let mut st = tx
            .prepare("INSERT INTO events (sensor, seq, kind, received_at, body) VALUES (?1, ?2, ?3, ?4, ?5)")
            .unwrap();
        for seq in 0..*n {
            let kind = if seq % 3 == 0 { "logon" } else { "file" };
            *kinds.entry(kind).or_default() += 1;
            st.execute(rusqlite::params![
                row,
                seq as i64,
                kind,
                1_700_000_000_000i64 + seq as i64,
                format!("{{\"n\":{seq}}}")
            ])
            .unwrap();
        }
    }
    for (kind, n) in kinds {
        tx.execute(
            "INSERT INTO kind_counts (workspace, kind, n) VALUES (?1, ?2, ?3)",
            rusqlite::params![workspace, kind, n],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

#[test]
fn store_migrate_copies_a_million_events_once_through_an_interruption() {
    const A: u64 = 600_000;
    const B: u64 = 400_000;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let ws = create_workspace(&dir, "big", 443);
    fill_sqlite(&dir, "big", &[("sensor-a", A), ("sensor-b", B)]);
    let secret_file = tmp.path().join("hook.secret");
    std::fs::write(&secret_file, "migrated-webhook-secret-0123\n").unwrap();
    let hook = "https://hooks.example/big";
    ok(
        uplink(&[
            "workspace",
            "set",
            "big",
            "--data-dir",
            dir.to_str().unwrap(),
            "--webhook",
            hook,
            "--webhook-secret-file",
            secret_file.to_str().unwrap(),
        ]),
        "workspace set --webhook",
    );
    let cluster = Cluster::start().unwrap();
    let db = Db::new(&cluster, tmp.path());
    let migrate = || {
        let mut c = uplink_cmd(&["store", "migrate", "--from"]);
        c.arg(&dir)
            .args(["--to", &db.url, "--master-key-file", &db.key]);
        c
    };

    // Stopped hard in the middle of the first sensor.
    let mut child = migrate()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("migrate ended early: {seen:?}"))
            .unwrap();
        seen.push(line.clone());
        if line.contains("sensor-a: 200000/") {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let partial: u64 = cluster
        .psql("uplink", "SELECT count(*) FROM events")
        .parse()
        .unwrap();
    assert!((200_000..A + B).contains(&partial), "{partial}");

    // Run again: it finishes, and verifies.
    let out = migrate().output().unwrap();
    let text = ok(out, "store migrate, again");
    assert!(text.contains("workspace big: already there"), "{text}");
    assert!(
        text.contains("verified big: 2 sensors, 1000000 events"),
        "{text}"
    );
    // Every event once, with its time and body; the counters agree; the secrets came along.
    assert_eq!(
        cluster.psql(
            "uplink",
            "SELECT s.sensor_id, count(*), count(DISTINCT e.seq), min(e.seq), max(e.seq), sum(e.received_at - 1700000000000 - e.seq), sum(length(e.body)) FROM events e JOIN sensors s ON s.id = e.sensor GROUP BY s.sensor_id ORDER BY 1"
        ),
        format!(
            "sensor-a|{A}|{A}|0|{}|0|{}\nsensor-b|{B}|{B}|0|{}|0|{}",
            A - 1,
            body_bytes(A),
            B - 1,
            body_bytes(B)
        )
    );
    let st = stats(&db, "big");
    assert_eq!(st["events"]["total"], A + B, "{st}");
    assert_eq!(
        st["events"]["by_kind"]["logon"],
        A.div_ceil(3) + B.div_ceil(3),
        "{st}"
    );
    let remade = tmp.path().join("remade.json");
    let [a, b, c, d] = db.args();
    ok(
        uplink(&[
            "workspace",
            "bundle",
            "big",
            a,
            b,
            c,
            d,
            "--out",
            remade.to_str().unwrap(),
        ]),
        "workspace bundle from the copy",
    );
    assert_eq!(
        std::fs::read(&remade).unwrap(),
        std::fs::read(&ws.bundle_path).unwrap()
    );
    // The webhook came along, its secret sealed in PostgreSQL too.
    let shown = ok(
        uplink(&["workspace", "show", "big", a, b, c, d, "--json"]),
        "workspace show on the copy",
    );
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["webhooks"], serde_json::json!([hook]), "{shown}");
    let raw = cluster.psql("uplink", "SELECT secret FROM webhooks");
    assert!(
        raw.starts_with("sealed:v1:") && !raw.contains("migrated-webhook-secret"),
        "{raw}"
    );
}

/// Bytes of the bodies `{"n":0}` … `{"n":N-1}`.
fn body_bytes(n: u64) -> u64 {
    (0..n).map(|i| 6 + i.to_string().len() as u64).sum()
}

#[test]
fn backup_and_restore_into_empty_stores_of_either_backend_give_back_the_same_store() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let d = dir.to_str().unwrap();
    let ws = create_workspace(&dir, "bk", 443);
    fill_sqlite(&dir, "bk", &[("sensor-a", 12_000), ("sensor-b", 3_000)]);
    let key = dir.join("master.key");
    let k = key.to_str().unwrap();
    let file = tmp.path().join("uplink.backup");
    let f = file.to_str().unwrap();
    let out = ok(
        uplink(&["store", "backup", "--data-dir", d, "--to", f]),
        "store backup",
    );
    assert!(
        out.contains("backed up 1 workspace, 2 sensors, 15000 events"),
        "{out}"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        !text.contains("PRIVATE KEY"),
        "the CA key is sealed in the backup"
    );
    let export = |args: &[&str]| {
        let mut all = vec!["events", "export", "bk"];
        all.extend_from_slice(args);
        ok(uplink(&all), "events export")
    };
    let stats_of = |args: &[&str]| {
        let mut all = vec!["workspace", "stats", "bk", "--json"];
        all.extend_from_slice(args);
        ok(uplink(&all), "workspace stats")
    };
    let want_events = export(&["--data-dir", d]);
    let want_stats = stats_of(&["--data-dir", d]);
    assert_eq!(want_events.lines().count(), 15_000);

    // Into an empty SQLite data directory, with the key of the store backed up.
    let dir2 = tmp.path().join("restored");
    let d2 = dir2.to_str().unwrap();
    let out = ok(
        uplink(&[
            "store",
            "restore",
            "--data-dir",
            d2,
            "--master-key-file",
            k,
            "--from",
            f,
        ]),
        "store restore into SQLite",
    );
    assert!(
        out.contains("restored 1 workspace, 2 sensors, 15000 events"),
        "{out}"
    );
    let sqlite2 = ["--data-dir", d2, "--master-key-file", k];
    assert_eq!(export(&sqlite2), want_events);
    assert_eq!(stats_of(&sqlite2), want_stats);

    // Into an empty PostgreSQL database, twice (an interrupted restore is run again).
    let cluster = Cluster::start().unwrap();
    let url = cluster.url("uplink");
    let pg = ["--database", url.as_str(), "--master-key-file", k];
    for _ in 0..2 {
        let mut args = vec!["store", "restore", "--from", f];
        args.extend_from_slice(&pg);
        ok(uplink(&args), "store restore into PostgreSQL");
    }
    assert_eq!(export(&pg), want_events);
    assert_eq!(stats_of(&pg), want_stats);
    let remade = tmp.path().join("remade.json");
    let mut args = vec![
        "workspace",
        "bundle",
        "bk",
        "--out",
        remade.to_str().unwrap(),
    ];
    args.extend_from_slice(&pg);
    ok(uplink(&args), "workspace bundle from the restored database");
    assert_eq!(
        std::fs::read(&remade).unwrap(),
        std::fs::read(&ws.bundle_path).unwrap()
    );
    // And back out of PostgreSQL: the same backup, line for line but its time and check.
    let file2 = tmp.path().join("pg.backup");
    let mut args = vec!["store", "backup", "--to", file2.to_str().unwrap()];
    args.extend_from_slice(&pg);
    ok(uplink(&args), "store backup --database");
    let body = |t: &str| t.lines().skip(1).map(str::to_owned).collect::<Vec<_>>();
    let strip = |lines: Vec<String>| {
        // Sealed values differ (fresh nonces); everything else is the same.
        lines
            .into_iter()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(&l).unwrap();
                if let Some(w) = v.get_mut("workspace") {
                    w["ca_key_sealed"] = serde_json::Value::Null;
                    w["access_key_sealed"] = serde_json::Value::Null;
                }
                v
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        strip(body(&std::fs::read_to_string(&file2).unwrap())),
        strip(body(&text))
    );

    // Refused: a wrong key (before anything is written), and a backup cut short.
    let other = tmp.path().join("other.key");
    std::fs::write(&other, format!("{}\n", "12".repeat(32))).unwrap();
    let dir3 = tmp.path().join("wrong");
    let out = uplink(&[
        "store",
        "restore",
        "--data-dir",
        dir3.to_str().unwrap(),
        "--master-key-file",
        other.to_str().unwrap(),
        "--from",
        f,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("sealed under another master key") && !dir3.exists(),
        "{}",
        stderr(&out)
    );
    let cut = tmp.path().join("cut.backup");
    let lines: Vec<&str> = text.lines().collect();
    std::fs::write(&cut, lines[..lines.len() - 1].join("\n")).unwrap();
    let out = uplink(&[
        "store",
        "restore",
        "--data-dir",
        tmp.path().join("cut").to_str().unwrap(),
        "--master-key-file",
        k,
        "--from",
        cut.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("incomplete"), "{}", stderr(&out));
}
