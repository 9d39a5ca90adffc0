//! Replicas: several `uplink service` processes on one private PostgreSQL
//! (`support/postgres.rs`), behind a real HAProxy in TCP mode with `send-proxy-v2` and a
//! `/healthz` check (`support/haproxy.rs`, configured as docs/scale-out.md says).
//!
//! - A sensor behind Squid uploads 100,000 events through HAProxy while the replica serving it
//!   is SIGKILLed twice (and restarted) and PostgreSQL is restarted once: every event is stored
//!   exactly once (counted by export).
//! - A workspace created through the CLI is served by both replicas within 2 s, and one deleted
//!   stops being served within 2 s (the change log); `/healthz` says why it is 503.
//! - A replica that loses its database leaves HAProxy's rotation and comes back; connections
//!   without a PROXY header are refused; logs show the client's real address, and the
//!   per-address cap counts each client behind the balancer, not the balancer.

use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::postgres::{create_workspace_pg, export, kind_count, stats, Db};
use crate::support::haproxy::{Balance, Haproxy};
use crate::support::postgres::Cluster;
use crate::support::sensor::{assert_n_exactly_once, Sensor};
use crate::support::squid::{Squid, SquidOptions};
use crate::support::*;

/// One `uplink service --database URL` replica, killed on drop; restartable on its port.
struct Replica {
    child: Option<Child>,
    port: u16,
    url: String,
    key: String,
    extra: Vec<String>,
    /// Logs of this replica's earlier lives, then the current one.
    earlier: String,
    log: Arc<Mutex<String>>,
}

impl Replica {
    fn start(url: &str, db: &Db, extra: &[&str]) -> Replica {
        let mut r = Replica {
            child: None,
            port: 0,
            url: url.to_owned(),
            key: db.key.clone(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            earlier: String::new(),
            log: Default::default(),
        };
        r.launch("127.0.0.1:0");
        r
    }

    fn launch(&mut self, listen: &str) {
        let mut cmd = uplink_cmd(&["service", "--listen", listen, "--log-level", "info"]);
        cmd.args(["--database", &self.url, "--master-key-file", &self.key])
            .args(&self.extra)
            .env_remove("UPLINK_DATA_DIR")
            .env_remove("UPLINK_DATABASE_URL");
        let (child, port, log) = spawn_service(cmd);
        self.child = Some(child);
        self.port = port;
        self.log = log;
    }

    /// SIGKILL, as a crash or the OOM killer would.
    fn kill_9(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
        self.earlier.push_str(&self.log.lock().unwrap());
        self.earlier.push_str("--- killed with SIGKILL ---\n");
    }

    /// Starts again on the same port (the one HAProxy's configuration names).
    fn restart(&mut self) {
        assert!(self.child.is_none(), "still running");
        self.launch(&format!("127.0.0.1:{}", self.port));
    }

    fn log(&self) -> String {
        format!("{}{}", self.earlier, self.log.lock().unwrap())
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Lines `{"kind":"ev","n":i,...}` for `range`.
fn lines(range: std::ops::Range<u64>) -> String {
    range
        .map(|i| {
            format!(
                "{{\"kind\":\"ev\",\"n\":{i},\"pad\":\"{}\"}}\n",
                "r".repeat(40)
            )
        })
        .collect()
}

/// The status of `GET ping` for `ws` at `port` (verified against the workspace's CA), 0 when
/// no HTTP answer came (the TLS handshake failed: the host is not served there).
fn ping(ws: &Ws, port: u16) -> u16 {
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
        ])
        .arg("--cacert")
        .arg(&ws.ca_file)
        .arg("--resolve")
        .arg(format!("{}:{port}:127.0.0.1", ws.sensor_host))
        .arg(format!(
            "https://{}:{port}{}",
            ws.sensor_host,
            uplink_protocol::PING_PATH
        ))
        .output()
        .expect("run curl");
    stdout(&out).trim().parse().unwrap_or(0)
}

fn wait_in_rotation(lb: &Haproxy, server: &str, context: impl Fn() -> String) {
    poll_until(
        &format!("HAProxy puts {server} in rotation"),
        30,
        || lb.is_up(server),
        || format!("{:?}\n{}\n{}", lb.stat(), lb.log(), context()),
    );
}

#[test]
fn a_sensor_behind_squid_and_haproxy_loses_nothing_while_its_replica_dies_twice_and_postgresql_restarts(
) {
    const N: u64 = 100_000;
    const PHASE: u64 = N / 4;
    let cluster = Cluster::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let db = Db::new(&cluster, tmp.path());
    let mut r1 = Replica::start(&db.url, &db, &["--proxy-protocol"]);
    let r2 = Replica::start(&db.url, &db, &["--proxy-protocol"]);
    // `first`: every new connection goes to r1 while it is in rotation, so the test knows which
    // replica holds the sensor's connection (and kills that one).
    let lb = Haproxy::start(&[r1.port, r2.port], Balance::First);
    let ws = create_workspace_pg(&db, tmp.path(), "scale", lb.port);
    let squid = Squid::start(SquidOptions {
        hosts: vec![ws.sensor_host.clone()],
        ..Default::default()
    });
    let sensor = Sensor::installed(
        &tmp.path().join("sensor"),
        &ws,
        &["--proxy-url", &squid.url()],
    );
    // Small batches: hundreds of uploads, so the faults land in the middle of them.
    sensor.set_upload(250);
    let run_log = tmp.path().join("run.log");
    let context = |r1: &Replica| {
        format!(
            "{}\nr1:\n{}\nr2:\n{}\nhaproxy:\n{}\nsquid:\n{}\npostgres:\n{}",
            sensor.context(&run_log),
            r1.log(),
            r2.log(),
            lb.log(),
            squid.logs(),
            cluster.log_text()
        )
    };
    wait_in_rotation(&lb, "r1", || context(&r1));
    wait_in_rotation(&lb, "r2", || context(&r1));
    let mut run = sensor.spawn_run(&run_log);
    let stored = || kind_count(&db, "scale", "ev");
    let mut at_fault = Vec::new();

    // Two SIGKILLs of the replica the sensor is on, each followed by a restart.
    for phase in 0..2 {
        let from = phase * PHASE;
        ok(sensor.send(&lines(from..from + PHASE)), "sensor send");
        poll_until(
            "uploads under way",
            60,
            || stored() > from + PHASE / 10,
            || context(&r1),
        );
        r1.kill_9();
        at_fault.push(("r1 SIGKILL", stored()));
        r1.restart();
        wait_in_rotation(&lb, "r1", || context(&r1));
        // Back on r1 for the next kill, as a balancer draining r2 would move it.
        lb.admin("shutdown sessions server replicas/r2").unwrap();
    }
    // PostgreSQL restarts (an immediate stop: no checkpoint) under both replicas.
    ok(sensor.send(&lines(2 * PHASE..3 * PHASE)), "sensor send");
    poll_until(
        "uploads under way",
        60,
        || stored() > 2 * PHASE + PHASE / 10,
        || context(&r1),
    );
    at_fault.push(("PostgreSQL stop", stored()));
    cluster.crash();
    cluster.start_server();
    ok(sensor.send(&lines(3 * PHASE..N)), "sensor send");

    poll_until("every event stored", 180, || stored() >= N, || context(&r1));
    let _ = run.kill();
    let _ = run.wait();
    eprintln!("events stored at each fault (of {N}): {at_fault:?}");
    // The faults reached the sensor: each kill broke its connection (an upload failed) and it
    // connected again. Not necessarily twice per kill: when r1 is back in rotation before the
    // sensor's next attempt, that attempt goes straight to r1 (CI once saw 4 connections in all).
    let run_text = std::fs::read_to_string(&run_log).unwrap();
    let connects = run_text.matches("connected to the service").count();
    let failures = run_text.matches("upload failed; will retry").count();
    assert!(
        connects >= 3 && failures >= 2,
        "{connects} connections, {failures} failed uploads:
{run_text}"
    );
    let rows = export(&db, "scale");
    assert_n_exactly_once(&rows, "ev", N);
    let st = stats(&db, "scale");
    assert_eq!(
        st["events"]["total"].as_u64().unwrap(),
        rows.len() as u64,
        "the counters agree with the rows: {st}"
    );
    // The sensor's uploads went through Squid, then HAProxy.
    assert!(
        squid.access_log().contains(&ws.sensor_host),
        "{}",
        squid.access_log()
    );
}

/// `uplink workspace delete NAME --yes` against the database, as an administrator runs it.
fn delete_workspace(db: &Db, name: &str) {
    let mut args = vec!["workspace", "delete", name, "--yes"];
    args.extend(db.args());
    ok(uplink_cmd(&args).output().unwrap(), "workspace delete");
}

#[test]
fn workspaces_created_or_deleted_anywhere_reach_both_replicas_within_2_s() {
    let cluster = Cluster::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let db = Db::new(&cluster, tmp.path());
    let r1 = Replica::start(&db.url, &db, &[]);
    let r2 = Replica::start(&db.url, &db, &[]);
    let context = || format!("r1:\n{}\nr2:\n{}", r1.log(), r2.log());
    let both = |ws: &Ws| [ping(ws, r1.port), ping(ws, r2.port)];

    // Created through the CLI while both run.
    let ws = create_workspace_pg(&db, tmp.path(), "late", r1.port);
    let created = Instant::now();
    poll_until(
        "the new workspace served by both replicas",
        10,
        || both(&ws) == [200, 200],
        context,
    );
    let took = created.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "took {took:?}\n{}",
        context()
    );

    // Deleted: both stop serving it (it was cached: only the change log can tell them).
    delete_workspace(&db, "late");
    let deleted = Instant::now();
    poll_until(
        "the deleted workspace no longer served",
        10,
        || both(&ws) == [0, 0],
        context,
    );
    let took = deleted.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "took {took:?}\n{}",
        context()
    );
    for r in [&r1, &r2] {
        assert!(
            r.log().contains("workspace deleted: no longer served"),
            "{}",
            r.log()
        );
    }

    // A second workspace is unaffected, and loading one did not reload the others.
    let other = create_workspace_pg(&db, tmp.path(), "other", r1.port);
    poll_until("other served", 10, || both(&other) == [200, 200], context);
    for r in [&r1, &r2] {
        // Every workspace was read once, at start; after that, one at a time.
        assert_eq!(
            r.log().matches("workspaces loaded").count(),
            1,
            "a full reload happened:\n{}",
            r.log()
        );
    }

    // /healthz says why it cannot ingest, without naming the database.
    cluster.crash();
    poll_until(
        "healthz 503 while PostgreSQL is down",
        30,
        || healthz(r1.port).is_ok_and(|(status, _)| status == 503),
        context,
    );
    let (_, body) = healthz(r1.port).unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(v["status"], "unavailable", "{body}");
    assert_eq!(v["code"], "SERVICE_UNAVAILABLE", "{body}");
    assert!(
        v["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("store ")),
        "{body}"
    );
    assert!(!body.contains(&tmp.path().display().to_string()), "{body}");
    cluster.start_server();
    poll_until(
        "healthz 200 once PostgreSQL is back",
        30,
        || healthz(r1.port).is_ok_and(|(status, _)| status == 200),
        context,
    );
}

#[test]
fn a_replica_that_loses_its_database_leaves_the_rotation_and_returns() {
    let cluster = Cluster::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let db = Db::new(&cluster, tmp.path());
    // r2 logs in as its own role, which the test can lock out while r1 keeps working.
    cluster.psql("uplink", "CREATE ROLE r2 LOGIN SUPERUSER");
    let r2_url = db.url.replacen("postgres://uplink@", "postgres://r2@", 1);
    let r1 = Replica::start(&db.url, &db, &["--proxy-protocol"]);
    let r2 = Replica::start(&r2_url, &db, &["--proxy-protocol"]);
    let lb = Haproxy::start(&[r1.port, r2.port], Balance::RoundRobin);
    let context = || {
        format!(
            "{:?}\nr1:\n{}\nr2:\n{}\nhaproxy:\n{}\npostgres:\n{}",
            lb.stat(),
            r1.log(),
            r2.log(),
            lb.log(),
            cluster.log_text()
        )
    };
    wait_in_rotation(&lb, "r1", context);
    wait_in_rotation(&lb, "r2", context);

    // Without a PROXY header a replica refuses the connection.
    assert!(healthz(r1.port).is_err(), "{}", context());
    poll_until(
        "r1 logs the refusal",
        10,
        || r1.log().contains("no valid PROXY protocol header"),
        context,
    );

    // Through HAProxy, the replica sees the client's own address (127.0.0.2 here).
    let ws = create_workspace_pg(&db, tmp.path(), "rot", lb.port);
    for _ in 0..2 {
        // Round robin: both replicas get one.
        let out = std::process::Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "10",
            ])
            .args([
                "--interface",
                "127.0.0.2",
                "-X",
                "POST",
                "--data",
                "not json",
            ])
            .arg("--cacert")
            .arg(&ws.ca_file)
            .arg("--resolve")
            .arg(format!("{}:{}:127.0.0.1", ws.sensor_host, lb.port))
            .arg(format!(
                "https://{}:{}{}",
                ws.sensor_host,
                lb.port,
                uplink_protocol::ENROLL_PATH
            ))
            .output()
            .unwrap();
        assert_eq!(stdout(&out), "400", "{}\n{}", stderr(&out), context());
    }
    let refusal_from = |log: &str| {
        log.lines()
            .any(|l| l.contains("enrollment refused") && l.contains("peer=127.0.0.2"))
    };
    assert!(
        refusal_from(&r1.log()) || refusal_from(&r2.log()),
        "{}",
        context()
    );

    // r2 loses its database: locked out, its connections ended.
    cluster.psql(
        "uplink",
        "ALTER ROLE r2 NOLOGIN; SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'r2';",
    );
    poll_until(
        "HAProxy takes r2 out of rotation",
        30,
        || lb.is_down("r2"),
        context,
    );
    assert!(lb.is_up("r1"), "{}", context());
    // Every connection now reaches r1, which can ingest.
    for _ in 0..6 {
        let (status, body) = healthz(lb.port).unwrap_or_else(|e| panic!("{e}\n{}", context()));
        assert_eq!(status, 200, "{body}\n{}", context());
    }
    assert!(
        r2.log().contains("health check: the store cannot ingest"),
        "{}",
        r2.log()
    );

    // Its database back: r2 returns to the rotation by itself.
    cluster.psql("uplink", "ALTER ROLE r2 LOGIN");
    wait_in_rotation(&lb, "r2", context);
}

/// A connection from `source` (a loopback address) to `port` that sends nothing: a stranger
/// holding a connection. Ends when the child is killed.
fn idle_connection(source: &str, port: u16) -> Child {
    std::process::Command::new("python3")
        .args([
            "-c",
            &format!(
                "import socket, sys\ns = socket.socket()\ns.bind(('{source}', 0))\ns.connect(('127.0.0.1', {port}))\nprint('connected', flush=True)\nsys.stdin.read()"
            ),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run python3")
}

/// `GET /healthz` through `port` from `source`: the status, 0 without an HTTP answer.
fn healthz_from(source: &str, port: u16) -> u16 {
    let out = std::process::Command::new("curl")
        .args([
            "-sk",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
        ])
        .args(["--interface", source])
        .arg(format!("https://127.0.0.1:{port}/healthz"))
        .output()
        .expect("run curl");
    stdout(&out).trim().parse().unwrap_or(0)
}

#[test]
fn behind_haproxy_the_per_address_cap_counts_each_client_not_the_balancer() {
    require("python3");
    let dir = tempfile::tempdir().unwrap();
    // One unauthenticated connection per address, never closed to make room (60 s grace).
    let svc = ServiceProc::start_with(
        &dir.path().join("data"),
        &[
            "--proxy-protocol",
            "--max-unauthenticated-per-address",
            "1",
            "--stall-grace",
            "60s",
        ],
    );
    let lb = Haproxy::start(&[svc.port], Balance::First);
    let context = || {
        format!(
            "{:?}\nservice:\n{}\nhaproxy:\n{}",
            lb.stat(),
            svc.log(),
            lb.log()
        )
    };
    wait_in_rotation(&lb, "r1", context);
    assert_eq!(healthz_from("127.0.0.2", lb.port), 200, "{}", context());

    // A stranger at 127.0.0.2 holds its one connection...
    let mut stranger = idle_connection("127.0.0.2", lb.port);
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(stranger.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "connected");
    // ...so a second one from 127.0.0.2 is refused once the service has counted it,
    poll_until(
        "a second connection from 127.0.0.2 refused",
        10,
        || healthz_from("127.0.0.2", lb.port) == 0,
        context,
    );
    // while another client, behind the same balancer, is not affected.
    assert_eq!(healthz_from("127.0.0.3", lb.port), 200, "{}", context());
    let _ = stranger.kill();
    let _ = stranger.wait();
}
