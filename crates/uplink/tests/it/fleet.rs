//! Fleet health with the real service and real sensors (docs/fleet.md): a stopped sensor goes
//! `late` then `disconnected` and its issue opens; it closes when the sensor is back, carrying
//! the cause the sensor saw (`PROXY_AUTH_FAILED` while the test changed Squid's password); two
//! outages give two intervals; a suppressed issue stays suppressed; a dead proxy with
//! `fallback = direct` raises `proxy_fallback`; a sensor with a backlog reports before it; the
//! same answers from the CLI on SQLite and on PostgreSQL.
//!
//! Thresholds are short (the service's `--fleet-*` flags, heartbeats every second); every wait is
//! a poll of the CLI's answer with a generous bound, never a sleep.

use std::path::Path;
use std::process::Child;
use std::time::Duration;

use serde_json::Value;

use crate::postgres::{create_workspace_pg, Db, PgService};
use crate::support::postgres::Cluster;
use crate::support::sensor::Sensor;
use crate::support::squid::{free_port, Squid, SquidOptions};
use crate::support::*;

/// Evaluate often; late 1 s after a missed heartbeat (disconnected: [`DISCONNECTED_AFTER`]).
const FLEET_FLAGS: [&str; 4] = [
    "--fleet-evaluate-every",
    "200ms",
    "--fleet-online-buffer",
    "1s",
];
/// The workspaces' `disconnected_after` (the shortest allowed).
const DISCONNECTED_AFTER: &str = "10s";
const USER: &str = "fleetuser";
const PASSWORD: &str = "Fl33t-Pa55";
/// Bound of every wait (a loaded CI machine).
const WAIT: u64 = 60;

/// `uplink fleet ARGS STORE... --json`, parsed.
fn fleet(args: &[&str], store: &[&str]) -> Value {
    let mut all = vec!["fleet"];
    all.extend_from_slice(args);
    all.extend_from_slice(store);
    all.push("--json");
    let out = ok(uplink(&all), &format!("fleet {}", args.join(" ")));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("fleet {args:?}: not JSON ({e}): {out}"))
}

fn sensor_row(ws: &str, store: &[&str], id: &str) -> Value {
    let list = fleet(&["list", ws], store);
    list["sensors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["sensor_id"] == id)
        .cloned()
        .unwrap_or(Value::Null)
}

fn issues(ws: &str, store: &[&str], all: bool) -> Vec<Value> {
    let mut args = vec!["issues", ws];
    if all {
        args.push("--all");
    }
    fleet(&args, store)["issues"].as_array().unwrap().clone()
}

fn issue_of(ws: &str, store: &[&str], kind: &str) -> Value {
    issues(ws, store, true)
        .into_iter()
        .find(|i| i["kind"] == kind)
        .unwrap_or(Value::Null)
}

/// `uplink workspace set NAME --disconnected-after` [`DISCONNECTED_AFTER`].
fn short_disconnect(ws: &str, store: &[&str]) {
    let mut args = vec![
        "workspace",
        "set",
        ws,
        "--disconnected-after",
        DISCONNECTED_AFTER,
    ];
    args.extend_from_slice(store);
    ok(uplink(&args), "workspace set --disconnected-after");
}

/// A sensor with 1-second heartbeats.
fn fast_sensor(dir: &Path, ws: &Ws, extra: &[&str]) -> Sensor {
    let mut args = vec!["--quiet"];
    args.extend_from_slice(extra);
    let sensor = Sensor::installed(dir, ws, &args);
    sensor.edit_config("heartbeat_secs = 60", "heartbeat_secs = 1");
    sensor
}

fn sensor_id(sensor: &Sensor) -> String {
    sensor.status()["sensor_id"].as_str().unwrap().to_owned()
}

/// Stops a running sensor with SIGTERM and waits for it.
fn stop(child: Child) {
    signal(child.id(), "TERM");
    assert!(
        wait_exit(child, Duration::from_secs(30)).is_some(),
        "sensor run did not stop on SIGTERM"
    );
}

fn rfc3339_utc(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.ends_with('Z') && s.len() == 20 && s.as_bytes()[10] == b'T')
}

#[test]
fn a_stopped_sensor_goes_late_then_disconnected_and_comes_back_with_its_outage_log() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    let svc = ServiceProc::start_with(&data, &FLEET_FLAGS);
    let ws = create_workspace(&data, "fleeta", svc.port);
    let store = ["--data-dir", data.to_str().unwrap()];
    short_disconnect("fleeta", &store);
    let squid = Squid::start(SquidOptions {
        basic: Some((USER, PASSWORD)),
        hosts: vec![ws.sensor_host.clone()],
        ..Default::default()
    });
    let sensor = fast_sensor(
        &dir.path().join("sensor"),
        &ws,
        &[
            "--proxy-url",
            &squid.url(),
            "--proxy-user",
            USER,
            "--proxy-password",
            PASSWORD,
        ],
    );
    let id = sensor_id(&sensor);
    let log = dir.path().join("run.log");
    let context = || {
        format!(
            "list {}\nissues {:?}\n{}\nservice log:\n{}\nsquid:\n{}",
            fleet(&["list", "fleeta"], &store),
            issues("fleeta", &store, true),
            sensor.context(&log),
            svc.log(),
            squid.logs()
        )
    };
    let state = || sensor_row("fleeta", &store, &id)["state"].clone();

    // Running: online, with what its report says.
    let run = sensor.spawn_run(&log);
    // (Enrolled just now, it counts as online before its first report: wait for that report.)
    poll_until(
        "online",
        WAIT,
        || {
            let row = sensor_row("fleeta", &store, &id);
            row["state"] == "online" && row["route"].is_string()
        },
        context,
    );
    let row = sensor_row("fleeta", &store, &id);
    assert_eq!(
        row["route"],
        format!("PROXY 127.0.0.1:{}", squid.port),
        "{row}"
    );
    assert_eq!(row["health"], "healthy", "{row}");
    assert_eq!(row["version"], env!("CARGO_PKG_VERSION"), "{row}");
    assert!(
        row["hostname"].as_str().is_some_and(|h| !h.is_empty()),
        "{row}"
    );
    assert!(rfc3339_utc(&row["last_seen"]), "{row}");
    assert_eq!(
        (row["lifecycle"].clone(), row["software"].clone()),
        ("active".into(), "current".into())
    );

    // Stopped: late, then disconnected; the issue opens.
    stop(run);
    let mut seen: Vec<Value> = Vec::new();
    poll_until(
        "disconnected",
        WAIT,
        || {
            let s = state();
            if seen.last() != Some(&s) {
                seen.push(s.clone());
            }
            s == "disconnected"
        },
        context,
    );
    assert!(
        seen.iter().position(|s| s == "late") < seen.iter().position(|s| s == "disconnected")
            && seen.contains(&"late".into()),
        "states seen: {seen:?}"
    );
    let issue = issue_of("fleeta", &store, "disconnected");
    assert_eq!(issue["state"], "open", "{issue}");
    assert_eq!(issue["severity"], "high", "{issue}");
    assert_eq!(issue["sensor_id"], id.as_str(), "{issue}");
    assert_eq!(issue["occurrences"], 1, "{issue}");
    assert!(
        rfc3339_utc(&issue["opened_at"]) && issue["closed_at"].is_null(),
        "{issue}"
    );
    assert_eq!(sensor_row("fleeta", &store, &id)["health"], "high");
    assert_eq!(sensor_row("fleeta", &store, &id)["open_issues"], 1);

    // Squid's password changes: the sensor, started again, cannot get through.
    squid.set_password(USER, "Changed-Pa55");
    sensor.run_once_failing(3, "PROXY_AUTH_FAILED");
    assert_eq!(state(), "disconnected", "nothing reached the service");
    // Put back: the sensor is back, and its issue closes with the cause from its outage log.
    squid.set_password(USER, PASSWORD);
    let run = sensor.spawn_run(&log);
    poll_until(
        "disconnected closed",
        WAIT,
        || issue_of("fleeta", &store, "disconnected")["state"] == "closed",
        context,
    );
    let issue = issue_of("fleeta", &store, "disconnected");
    let text = issue["description"].as_str().unwrap();
    assert!(
        text.contains("PROXY_AUTH_FAILED")
            && text.contains(&format!("through proxy 127.0.0.1:{}", squid.port)),
        "{issue}"
    );
    assert_eq!(
        issue["fix"],
        uplink_diag::Code::PROXY_AUTH_FAILED.fix(),
        "{issue}"
    );
    assert!(rfc3339_utc(&issue["closed_at"]), "{issue}");
    poll_until("online again", WAIT, || state() == "online", context);
    // Closed issues are listed with --all only.
    assert!(issues("fleeta", &store, false).is_empty());

    // A second outage (the password again), then back: two intervals in the stored log. Late
    // first: Squid's memory of the accepted password (one second) has expired by then.
    stop(run);
    poll_until("late", WAIT, || state() == "late", context);
    squid.set_password(USER, "Changed-Again-Pa55");
    sensor.run_once_failing(3, "PROXY_AUTH_FAILED");
    squid.set_password(USER, PASSWORD);
    let run = sensor.spawn_run(&log);
    poll_until(
        "the second interval reported",
        WAIT,
        || {
            fleet(&["show", "fleeta", &id], &store)["outages"]
                .as_array()
                .unwrap()
                .len()
                == 2
        },
        context,
    );
    let show = fleet(&["show", "fleeta", &id], &store);
    let outages = show["outages"].as_array().unwrap();
    for o in outages {
        assert_eq!(
            o["codes"],
            serde_json::json!(["PROXY_AUTH_FAILED"]),
            "{show}"
        );
        assert_eq!(o["proxy"], format!("127.0.0.1:{}", squid.port), "{show}");
        assert!(rfc3339_utc(&o["start"]) && rfc3339_utc(&o["end"]), "{show}");
        assert!(o["start"].as_str() <= o["end"].as_str(), "{show}");
    }
    assert!(
        outages[0]["end"].as_str() <= outages[1]["start"].as_str(),
        "{show}"
    );
    assert_eq!(show["report"]["format"], 2, "{show}");
    assert_eq!(show["report"]["interval_secs"], 1, "{show}");
    assert_eq!(show["issues"].as_array().unwrap().len(), 1, "{show}");

    // Stopped again: the same issue reopens (a recurrence), is suppressed, and stays suppressed
    // while the sensor comes back and leaves again.
    stop(run);
    poll_until(
        "reopened",
        WAIT,
        || issue_of("fleeta", &store, "disconnected")["state"] == "open",
        context,
    );
    let issue = issue_of("fleeta", &store, "disconnected");
    assert_eq!(issue["occurrences"], 2, "{issue}");
    let issue_id = issue["issue_id"].as_str().unwrap().to_owned();
    let out = ok(
        uplink(&[
            "fleet",
            "suppress",
            "fleeta",
            &issue_id,
            "--days",
            "2",
            "--reason",
            "host moves racks",
            "--by",
            "ops",
            "--data-dir",
            store[1],
        ]),
        "fleet suppress",
    );
    assert!(out.contains(&issue_id), "{out}");
    poll_until(
        "healthy while suppressed",
        WAIT,
        || sensor_row("fleeta", &store, &id)["health"] == "healthy",
        context,
    );
    let run = sensor.spawn_run(&log);
    poll_until(
        "back while suppressed",
        WAIT,
        || state() == "online",
        context,
    );
    stop(run);
    poll_until(
        "gone while suppressed",
        WAIT,
        || state() == "disconnected",
        context,
    );
    let issue = issue_of("fleeta", &store, "disconnected");
    assert_eq!(issue["state"], "suppressed", "{issue}");
    assert_eq!(issue["suppress_reason"], "host moves racks", "{issue}");
    assert_eq!(issue["suppressed_by"], "ops", "{issue}");
    assert!(rfc3339_utc(&issue["suppressed_until"]), "{issue}");
    assert_eq!(sensor_row("fleeta", &store, &id)["health"], "healthy");
    // Suppressed issues are listed without --all.
    assert_eq!(issues("fleeta", &store, false).len(), 1);
    ok(
        uplink(&[
            "fleet",
            "unsuppress",
            "fleeta",
            &issue_id,
            "--data-dir",
            store[1],
        ]),
        "fleet unsuppress",
    );
    assert_eq!(issue_of("fleeta", &store, "disconnected")["state"], "open");
    poll_until(
        "counted again",
        WAIT,
        || sensor_row("fleeta", &store, &id)["health"] == "high",
        context,
    );
    // Unknown ids are refused with what to do.
    let out = uplink(&[
        "fleet",
        "unsuppress",
        "fleeta",
        "iss-000000000000",
        "--data-dir",
        store[1],
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("fleet issues fleeta"),
        "{}",
        stderr(&out)
    );
}

/// The scenario both backends run: a sensor whose proxy is dead uploads DIRECT (fallback
/// allowed): `proxy_fallback` opens; the sensor stops: `disconnected` opens. Returns the CLI's
/// answers with what differs between runs (ids, times) taken out.
fn fallback_scenario(
    dir: &Path,
    ws: &Ws,
    store: &[&str],
    log: impl Fn() -> String,
) -> (Value, Value) {
    short_disconnect(&ws.name, store);
    let dead = format!("http://127.0.0.1:{}", free_port());
    let sensor = fast_sensor(&dir.join("sensor"), ws, &[]);
    ok(
        sensor.proxy(&["set", "--url", &dead, "--fallback", "direct"]),
        "proxy set",
    );
    let id = sensor_id(&sensor);
    let run_log = dir.join("run.log");
    let context = || {
        format!(
            "{:?}\n{}\nservice log:\n{}",
            issues(&ws.name, store, true),
            sensor.context(&run_log),
            log()
        )
    };
    let run = sensor.spawn_run(&run_log);
    poll_until(
        "proxy_fallback opens",
        WAIT,
        || issue_of(&ws.name, store, "proxy_fallback")["state"] == "open",
        context,
    );
    let issue = issue_of(&ws.name, store, "proxy_fallback");
    assert_eq!(issue["severity"], "medium", "{issue}");
    let text = issue["description"].as_str().unwrap();
    assert!(
        text.contains("DIRECT") && text.contains("TCP_REFUSED"),
        "{issue}"
    );
    assert_eq!(sensor_row(&ws.name, store, &id)["route"], "DIRECT");
    stop(run);
    poll_until(
        "disconnected",
        WAIT,
        || sensor_row(&ws.name, store, &id)["state"] == "disconnected",
        context,
    );
    poll_until(
        "its issue",
        WAIT,
        || issue_of(&ws.name, store, "disconnected")["state"] == "open",
        context,
    );
    let normalise = |mut v: Value, keys: &[&str]| {
        let rows = v.as_array_mut().unwrap();
        for r in rows.iter_mut() {
            for k in keys {
                let present = !r[*k].is_null();
                r[*k] = Value::Bool(present);
            }
        }
        for r in rows.iter_mut() {
            // How many events were queued, and how old, depends on the moment of the report.
            if r["queue"].is_object() {
                for k in ["events", "oldest_secs"] {
                    let present = r["queue"][k].is_u64();
                    r["queue"][k] = Value::Bool(present);
                }
            }
        }
        rows.sort_by_key(|r| r["kind"].as_str().unwrap_or("").to_owned());
        v
    };
    let list = normalise(
        fleet(&["list", &ws.name], store)["sensors"].clone(),
        &["sensor_id", "last_seen", "hostname"],
    );
    let issues = normalise(
        fleet(&["issues", &ws.name, "--all"], store)["issues"].clone(),
        &["issue_id", "sensor_id", "opened_at", "description"],
    );
    (list, issues)
}

#[test]
fn a_dead_proxy_with_fallback_direct_raises_proxy_fallback_and_both_backends_answer_alike() {
    // SQLite.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    let svc = ServiceProc::start_with(&data, &FLEET_FLAGS);
    let ws = create_workspace(&data, "fleetb", svc.port);
    let sqlite = fallback_scenario(
        dir.path(),
        &ws,
        &["--data-dir", data.to_str().unwrap()],
        || svc.log(),
    );
    drop(svc);

    // PostgreSQL.
    let pg_dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start().unwrap();
    let db = Db::new(&cluster, pg_dir.path());
    let svc = PgService::start_with(&db, "127.0.0.1:0", &FLEET_FLAGS);
    let ws = create_workspace_pg(&db, pg_dir.path(), "fleetb", svc.port);
    let postgres = fallback_scenario(pg_dir.path(), &ws, &db.args(), || svc.log());

    assert_eq!(sqlite.0, postgres.0, "fleet list");
    assert_eq!(sqlite.1, postgres.1, "fleet issues --all");
    let kinds: Vec<&Value> = sqlite
        .1
        .as_array()
        .unwrap()
        .iter()
        .map(|i| &i["kind"])
        .collect();
    assert_eq!(kinds, ["disconnected", "proxy_fallback"], "{}", sqlite.1);
}

#[test]
fn a_sensor_with_a_backlog_reports_before_uploading_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    let svc = ServiceProc::start_with(&data, &FLEET_FLAGS);
    let ws = create_workspace(&data, "fleetc", svc.port);
    let store = ["--data-dir", data.to_str().unwrap()];
    let sensor = Sensor::installed(&dir.path().join("sensor"), &ws, &["--quiet"]);
    // One report in the test's time: the one sent first on the connection.
    const INTERVAL: u64 = 30;
    sensor.edit_config(
        "heartbeat_secs = 60",
        &format!("heartbeat_secs = {INTERVAL}"),
    );
    let id = sensor_id(&sensor);
    const N: u64 = 100_000;
    let lines: String = (0..N).map(|n| format!("{{\"n\":{n}}}\n")).collect();
    ok(sensor.send(&lines), "send");
    let log = dir.path().join("run.log");
    let started = std::time::Instant::now();
    let run = sensor.spawn_run(&log);
    let context = || {
        format!(
            "{}\n{}\nservice log:\n{}",
            fleet(&["show", "fleetc", &id], &store),
            sensor.context(&log),
            svc.log()
        )
    };
    poll_until(
        "reported",
        WAIT,
        || !fleet(&["show", "fleetc", &id], &store)["report"].is_null(),
        context,
    );
    assert!(
        started.elapsed() < Duration::from_secs(INTERVAL),
        "reported only after {:?}",
        started.elapsed()
    );
    // Online with its backlog: the report went first on the connection, so it counts all of it
    // (the sensor's own heartbeat and inventory too).
    let row = sensor_row("fleetc", &store, &id);
    assert_eq!(row["state"], "online", "{row}");
    assert!(row["queue"]["events"].as_u64().unwrap() >= N, "{row}");
    assert!(row["queue"]["oldest_secs"].is_u64(), "{row}");
    stop(run);
}
