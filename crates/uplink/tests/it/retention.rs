//! Workspace settings, deletion and retention through the binary, on both backends: `uplink
//! workspace set/show/delete`, `uplink store prune`, and the service's periodic retention
//! (`--retention-interval`, short here). Events are aged without waiting days: a backup is
//! rewritten with old `received_at` times and restored (the backup format keeps each event's
//! time), then pruned; a sensor retrying the removed events gets them counted as duplicates.

use std::path::Path;
use std::process::Command;

use crate::support::postgres::Cluster;
use crate::support::*;

const DAY_MS: i64 = 86_400_000;

/// The flags that name a store: `--data-dir DIR`, or `--database URL --master-key-file FILE`.
#[derive(Clone)]
pub(crate) struct Target(Vec<String>);

impl Target {
    /// A data directory (made first, as an administrator would before starting a service).
    pub(crate) fn dir(dir: &Path) -> Target {
        std::fs::create_dir_all(dir).unwrap();
        Target(vec!["--data-dir".into(), dir.to_str().unwrap().into()])
    }

    pub(crate) fn pg(cluster: &Cluster, database: &str, key: &Path) -> Target {
        Target(vec![
            "--database".into(),
            cluster.url(database),
            "--master-key-file".into(),
            key.to_str().unwrap().into(),
        ])
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = uplink_cmd(args);
        c.args(&self.0)
            .env_remove("UPLINK_DATA_DIR")
            .env_remove("UPLINK_DATABASE_URL")
            .env_remove("UPLINK_MASTER_KEY_FILE");
        c
    }

    pub(crate) fn run(&self, args: &[&str]) -> std::process::Output {
        self.cmd(args).output().expect("run uplink")
    }

    pub(crate) fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = ok(self.run(args), &args.join(" "));
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
    }

    pub(crate) fn total(&self, ws: &str) -> u64 {
        self.json(&["workspace", "stats", ws, "--json"])["events"]["total"]
            .as_u64()
            .unwrap()
    }

    pub(crate) fn seqs(&self, ws: &str) -> Vec<u64> {
        let out = ok(self.run(&["events", "export", ws]), "events export");
        out.lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    }

    /// `uplink service` on this store, with extra flags.
    pub(crate) fn service(&self, extra: &[&str]) -> Service {
        let mut cmd = self.cmd(&["service", "--listen", "127.0.0.1:0", "--log-level", "debug"]);
        cmd.args(extra);
        let (child, port, log) = spawn_service(cmd);
        Service { child, port, log }
    }

    /// `uplink workspace create NAME --json`, as a [`Ws`] (bundle and CA file in `dir`).
    pub(crate) fn create(&self, dir: &Path, name: &str, port: u16) -> Ws {
        let bundle = dir.join(format!("{name}.json"));
        let v = self.json(&[
            "workspace",
            "create",
            name,
            "--public-port",
            &port.to_string(),
            "--bundle-out",
            bundle.to_str().unwrap(),
            "--json",
        ]);
        let b: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&bundle).unwrap()).unwrap();
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
}

pub(crate) struct Service {
    child: std::process::Child,
    pub(crate) port: u16,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Service {
    pub(crate) fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Backs `from` up, makes the events with `seq < old_below` `days_old` days old, and restores
/// the result into `to` (which uses the same master key). Returns the time given to them.
pub(crate) fn aged_copy(
    from: &Target,
    to: &Target,
    dir: &Path,
    old_below: u64,
    days_old: i64,
) -> i64 {
    let (then, aged) = aged_copy_where(from, to, dir, |seq| seq < old_below, days_old);
    assert_eq!(aged, old_below, "every old event is in the backup");
    then
}

/// [`aged_copy`] of the events whose seq `old` picks; returns the time given to them and how
/// many there were.
pub(crate) fn aged_copy_where(
    from: &Target,
    to: &Target,
    dir: &Path,
    old: impl Fn(u64) -> bool,
    days_old: i64,
) -> (i64, u64) {
    let backup = dir.join("backup.ndjson");
    ok(
        from.run(&["store", "backup", "--to", backup.to_str().unwrap()]),
        "store backup",
    );
    let then = uplink_store_now_ms() - days_old * DAY_MS;
    let mut aged = 0;
    let rewritten: String = std::fs::read_to_string(&backup)
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            if let Some(e) = v.get_mut("event") {
                if old(e["seq"].as_u64().unwrap()) {
                    e["received_at"] = then.into();
                    aged += 1;
                }
            }
            format!("{v}\n")
        })
        .collect();
    let aged_file = dir.join("aged.ndjson");
    std::fs::write(&aged_file, rewritten).unwrap();
    ok(
        to.run(&["store", "restore", "--from", aged_file.to_str().unwrap()]),
        "store restore",
    );
    (then, aged)
}

fn uplink_store_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A service on `target`, a workspace, a sensor enrolled with openssl, and events 0..30 posted.
fn workspace_with_events(target: &Target, dir: &Path, name: &str) -> (Ws, Enrolled) {
    let svc = target.service(&[]);
    let ws = target.create(dir, name, svc.port);
    let sensor = enroll_with_openssl(dir, &ws, svc.port, "s1");
    let batch = dir.join("first.ndjson");
    std::fs::write(&batch, ndjson(0..30, "event")).unwrap();
    let (status, body) = post_events(&ws, svc.port, Some(&sensor), &batch, &[]);
    assert_eq!(status, 200, "{body}\n{}", svc.log());
    (ws, sensor)
}

/// The sensor retries its first 20 events (its answer was lost, say): nothing stored again.
fn retry_is_a_duplicate(ws: &Ws, port: u16, sensor: &Enrolled, dir: &Path, log: &str) {
    let batch = dir.join("retry.ndjson");
    std::fs::write(&batch, ndjson(0..20, "event")).unwrap();
    let (status, body) = post_events(ws, port, Some(sensor), &batch, &[]);
    assert_eq!(status, 200, "{body}\n{log}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"accepted": 0, "duplicates": 20}),
        "{log}"
    );
}

#[test]
fn settings_are_set_and_shown_and_bad_values_are_usage_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let t = Target::dir(&tmp.path().join("data"));
    let ws = t.create(tmp.path(), "tuned", 443);
    let shown = t.json(&["workspace", "show", "tuned", "--json"]);
    assert_eq!(shown["retention_days"], 30);
    assert_eq!(shown["disconnected_after_secs"], 600);
    assert_eq!(shown["ca_key_set"], true);
    assert_eq!(shown["access_key_set"], true);
    assert_eq!(shown["ca_sha256"], ws.ca_sha256.as_str());
    let text = ok(t.run(&["workspace", "show", "tuned"]), "workspace show");
    for out in [shown.to_string(), text.clone()] {
        assert!(
            !out.contains(&ws.access_key) && !out.contains("PRIVATE KEY"),
            "a secret is shown: {out}"
        );
    }
    assert!(text.contains("retention               30 days"), "{text}");

    let set = t.json(&[
        "workspace",
        "set",
        "tuned",
        "--retention-days",
        "7",
        "--disconnected-after",
        "2h",
        "--json",
    ]);
    assert_eq!(
        (&set["retention_days"], &set["disconnected_after_secs"]),
        (&7.into(), &7200.into())
    );
    // One setting alone keeps the other.
    t.json(&[
        "workspace",
        "set",
        "tuned",
        "--disconnected-after",
        "90s",
        "--json",
    ]);
    let shown = t.json(&["workspace", "show", "tuned", "--json"]);
    assert_eq!(
        (&shown["retention_days"], &shown["disconnected_after_secs"]),
        (&7.into(), &90.into())
    );

    // Bad usage: exit 2, saying what was wrong; nothing changed.
    let cases: &[(&[&str], &str)] = &[
        (&["--disconnected-after", "5x"], "\"5x\" is not a duration"),
        (&["--disconnected-after", "90"], "is not a duration"),
        (&["--disconnected-after", "5s"], "out of range"),
        (
            &["--retention-days", "0"],
            "retention of 0 days is out of range",
        ),
        (&["--retention-days", "many"], "invalid value 'many'"),
        (&[], "nothing to change"),
    ];
    for (flags, words) in cases {
        let mut args = vec!["workspace", "set", "tuned"];
        args.extend_from_slice(flags);
        let out = t.run(&args);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(words), "{flags:?}: {}", stderr(&out));
    }
    let shown = t.json(&["workspace", "show", "tuned", "--json"]);
    assert_eq!(
        (&shown["retention_days"], &shown["disconnected_after_secs"]),
        (&7.into(), &90.into())
    );
    // An unknown workspace: the operation failed (1), naming it.
    let out = t.run(&["workspace", "set", "nope", "--retention-days", "3"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no workspace named \"nope\""),
        "{}",
        stderr(&out)
    );
    let out = t.run(&["workspace", "show", "nope"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn postgres_settings_are_shared_by_every_command() {
    let cluster = Cluster::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let t = Target::pg(&cluster, "uplink", &tmp.path().join("master.key"));
    t.create(tmp.path(), "pgtuned", 443);
    t.json(&[
        "workspace",
        "set",
        "pgtuned",
        "--retention-days",
        "90",
        "--json",
    ]);
    let shown = t.json(&["workspace", "show", "pgtuned", "--json"]);
    assert_eq!(
        (&shown["retention_days"], &shown["disconnected_after_secs"]),
        (&90.into(), &600.into())
    );
    assert_eq!(
        cluster.psql(
            "uplink",
            "SELECT retention_days FROM workspaces WHERE name = 'pgtuned'"
        ),
        "90"
    );
}

#[test]
fn delete_needs_yes_and_a_service_started_after_does_not_serve_the_workspace() {
    let tmp = tempfile::tempdir().unwrap();
    let t = Target::dir(&tmp.path().join("data"));
    let (ws, _sensor) = workspace_with_events(&t, tmp.path(), "doomed");
    t.create(tmp.path(), "kept", 443);

    let out = t.run(&["workspace", "delete", "doomed"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("add --yes"), "{}", stderr(&out));
    assert_eq!(t.total("doomed"), 30, "nothing deleted without --yes");

    let v = t.json(&["workspace", "delete", "doomed", "--yes", "--json"]);
    assert_eq!(
        v,
        serde_json::json!({"workspace": "doomed", "sensors": 1, "events": 30})
    );
    let list = t.json(&["workspace", "list", "--json"]);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["workspace"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["kept"]);
    let out = t.run(&["workspace", "stats", "doomed"]);
    assert_eq!(out.status.code(), Some(1));

    let svc = t.service(&[]);
    let (status, body) = Curl::new(&ws.sensor_host, svc.port, "/tri/sensor/api/ping")
        .arg("-k")
        .run();
    assert_eq!(status, 404, "{body}\n{}", svc.log());
    assert!(body.contains("no workspace is served at"), "{body}");
    // And the CA of the deleted workspace is not presented: verifying with it fails.
    let (code, err) = Curl::new(&ws.sensor_host, svc.port, "/tri/sensor/api/ping")
        .arg("--cacert")
        .arg(&ws.ca_file)
        .run_fail();
    assert_ne!(code, 0, "{err}");
}

#[test]
fn postgres_delete_removes_the_workspace_for_every_replica_started_after() {
    let cluster = Cluster::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let t = Target::pg(&cluster, "uplink", &tmp.path().join("master.key"));
    let (ws, _sensor) = workspace_with_events(&t, tmp.path(), "pgdoomed");
    let v = t.json(&["workspace", "delete", "pgdoomed", "--yes", "--json"]);
    assert_eq!(
        v,
        serde_json::json!({"workspace": "pgdoomed", "sensors": 1, "events": 30})
    );
    assert_eq!(
        cluster.psql(
            "uplink",
            "SELECT (SELECT count(*) FROM events) + (SELECT count(*) FROM seen) + (SELECT count(*) FROM sensors) + (SELECT count(*) FROM kind_counts) + (SELECT count(*) FROM workspaces)"
        ),
        "0"
    );
    let svc = t.service(&[]);
    let (status, body) = Curl::new(&ws.sensor_host, svc.port, "/tri/sensor/api/ping")
        .arg("-k")
        .run();
    assert_eq!(status, 404, "{body}\n{}", svc.log());
}

#[test]
fn store_prune_removes_old_events_and_prints_what_it_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let t = Target::dir(&tmp.path().join("data"));
    let (ws, sensor) = workspace_with_events(&t, tmp.path(), "aging");
    // The copy, with events 0..20 forty days old.
    let copy_dir = tmp.path().join("copy");
    std::fs::create_dir_all(&copy_dir).unwrap();
    std::fs::copy(
        tmp.path().join("data").join("master.key"),
        copy_dir.join("master.key"),
    )
    .unwrap();
    let copy = Target::dir(&copy_dir);
    aged_copy(&t, &copy, tmp.path(), 20, 40);
    assert_eq!(copy.total("aging"), 30);

    // Within retention (60 days): nothing removed.
    copy.json(&[
        "workspace",
        "set",
        "aging",
        "--retention-days",
        "60",
        "--json",
    ]);
    let r = copy.json(&["store", "prune", "--json"]);
    assert_eq!(r["total"], 0, "{r}");
    // 30 days: the 20 old events go, in chunks of 7.
    copy.json(&[
        "workspace",
        "set",
        "aging",
        "--retention-days",
        "30",
        "--json",
    ]);
    let r = copy.json(&["store", "prune", "--json", "--chunk", "7"]);
    assert_eq!(r["total"], 20, "{r}");
    assert_eq!(r["workspaces"][0]["workspace"], "aging");
    assert_eq!(r["workspaces"][0]["events"], 20);
    assert_eq!(r["skipped"], serde_json::Value::Null);
    assert_eq!(copy.total("aging"), 10);
    assert_eq!(copy.seqs("aging"), (20..30).collect::<Vec<_>>());
    let text = ok(copy.run(&["store", "prune"]), "store prune");
    assert!(text.contains("0 events removed"), "{text}");

    // A service on the copy: the sensor's retry of the removed events is not stored again.
    let svc = copy.service(&[]);
    retry_is_a_duplicate(&ws, svc.port, &sensor, tmp.path(), &svc.log());
    assert_eq!(copy.seqs("aging"), (20..30).collect::<Vec<_>>());
    drop(svc);

    // Backed up and restored elsewhere, the store still knows what retention removed.
    let again_dir = tmp.path().join("again");
    std::fs::create_dir_all(&again_dir).unwrap();
    std::fs::copy(copy_dir.join("master.key"), again_dir.join("master.key")).unwrap();
    let again = Target::dir(&again_dir);
    let backup = tmp.path().join("pruned.ndjson");
    ok(
        copy.run(&["store", "backup", "--to", backup.to_str().unwrap()]),
        "store backup",
    );
    ok(
        again.run(&["store", "restore", "--from", backup.to_str().unwrap()]),
        "store restore",
    );
    let svc = again.service(&[]);
    retry_is_a_duplicate(&ws, svc.port, &sensor, tmp.path(), &svc.log());
    assert_eq!(again.seqs("aging"), (20..30).collect::<Vec<_>>());
}

#[test]
fn the_service_prunes_periodically_and_retries_stay_duplicates() {
    let tmp = tempfile::tempdir().unwrap();
    let t = Target::dir(&tmp.path().join("data"));
    let (ws, sensor) = workspace_with_events(&t, tmp.path(), "periodic");
    let copy_dir = tmp.path().join("copy");
    std::fs::create_dir_all(&copy_dir).unwrap();
    std::fs::copy(
        tmp.path().join("data").join("master.key"),
        copy_dir.join("master.key"),
    )
    .unwrap();
    let copy = Target::dir(&copy_dir);
    aged_copy(&t, &copy, tmp.path(), 20, 31);
    let svc = copy.service(&["--retention-interval", "200ms"]);
    poll_until(
        "the service's retention removed the old events",
        60,
        || copy.total("periodic") == 10,
        || svc.log(),
    );
    assert_eq!(copy.seqs("periodic"), (20..30).collect::<Vec<_>>());
    retry_is_a_duplicate(&ws, svc.port, &sensor, tmp.path(), &svc.log());
    // New events are still stored.
    let batch = tmp.path().join("new.ndjson");
    std::fs::write(&batch, ndjson(30..35, "event")).unwrap();
    let (status, body) = post_events(&ws, svc.port, Some(&sensor), &batch, &[]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        serde_json::json!({"accepted": 5, "duplicates": 0})
    );
    assert_eq!(copy.seqs("periodic"), (20..35).collect::<Vec<_>>());
}

#[test]
fn postgres_the_service_drops_old_day_partitions_and_retries_stay_duplicates() {
    let cluster = Cluster::start().unwrap();
    cluster.psql("uplink", "CREATE DATABASE aged");
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("master.key");
    let t = Target::pg(&cluster, "uplink", &key);
    let (ws, sensor) = workspace_with_events(&t, tmp.path(), "pgaging");
    let copy = Target::pg(&cluster, "aged", &key);
    let then = aged_copy(&t, &copy, tmp.path(), 20, 40);
    let old_day = then.div_euclid(DAY_MS);
    let partition = format!("events_p{old_day}");
    let exists = |name: &str| {
        cluster.psql(
            "aged",
            &format!("SELECT count(*) FROM pg_class WHERE relname = '{name}'"),
        ) == "1"
    };
    assert!(
        exists(&partition),
        "the restore made the old day's partition"
    );
    assert_eq!(
        cluster.psql("aged", &format!("SELECT count(*) FROM {partition}")),
        "20"
    );

    let svc = copy.service(&["--retention-interval", "200ms"]);
    poll_until(
        "the service's retention dropped the old partition",
        60,
        || !exists(&partition),
        || format!("{}\n{}", svc.log(), cluster.log_text()),
    );
    assert_eq!(copy.total("pgaging"), 10);
    assert_eq!(copy.seqs("pgaging"), (20..30).collect::<Vec<_>>());
    retry_is_a_duplicate(&ws, svc.port, &sensor, tmp.path(), &svc.log());
    assert_eq!(copy.seqs("pgaging"), (20..30).collect::<Vec<_>>());
    // The watermark keeps them out; their `seen` rows are no longer needed and were removed.
    poll_until(
        "the seen rows below the watermark cleared",
        60,
        || {
            cluster.psql(
                "aged",
                "SELECT count(*) FROM seen s JOIN sensors n ON n.id = s.sensor WHERE s.seq <= n.pruned_through",
            ) == "0"
        },
        || svc.log(),
    );
    assert_eq!(
        cluster.psql("aged", "SELECT pruned_through FROM sensors"),
        "19"
    );
}

/// `store migrate` whose target dies mid-copy ends with an error instead of waiting forever for
/// room in its copy channel (it used to: the export kept the channel's receiver alive).
#[test]
fn store_migrate_fails_instead_of_hanging_when_postgresql_dies_mid_copy() {
    let tmp = tempfile::tempdir().unwrap();
    let src = Target::dir(&tmp.path().join("data"));
    workspace_with_events(&src, tmp.path(), "moving");
    let cluster = Cluster::start().unwrap();
    let key = tmp.path().join("pg.key");
    let dst = Target::pg(&cluster, "uplink", &key);
    ok(dst.run(&["workspace", "list"]), "schema created");
    // Another session holds a table the copy writes, so the copy waits in its first import.
    let mut locker = Command::new("psql")
        .args(["-X", "-q", "-h"])
        .arg(&cluster.socket_dir)
        .args(["-U", "uplink", "-d", "uplink"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("run psql");
    {
        use std::io::Write;
        let stdin = locker.stdin.as_mut().unwrap();
        stdin
            .write_all(b"BEGIN;\nLOCK TABLE kind_counts IN EXCLUSIVE MODE;\n")
            .unwrap();
        stdin.flush().unwrap();
    }
    poll_until(
        "psql holds the lock",
        60,
        || {
            cluster.psql(
                "uplink",
                "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = 'kind_counts' AND l.mode = 'ExclusiveLock' AND l.granted",
            ) == "1"
        },
        || cluster.log_text(),
    );
    let child = uplink_cmd(&["store", "migrate", "--batch", "5", "--from"])
        .arg(tmp.path().join("data"))
        .args(["--to", &cluster.url("uplink"), "--master-key-file"])
        .arg(&key)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    poll_until(
        "the copy waits for the lock",
        60,
        || {
            cluster.psql(
                "uplink",
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'uplink' AND wait_event_type = 'Lock'",
            ) == "1"
        },
        || cluster.log_text(),
    );
    cluster.crash();
    let _ = locker.kill();
    let _ = locker.wait();
    let status = wait_exit(child, std::time::Duration::from_secs(120))
        .expect("store migrate ended after PostgreSQL went away (it waited forever)");
    assert!(!status.success());
}
