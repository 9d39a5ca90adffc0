//! Central policy (issue #26, docs/policy.md) with the real service, real sensors and real
//! Squids: sensors behind Squid A get a policy naming Squid B with Basic credentials and move
//! to B within their heartbeat interval, every event stored once; a policy naming a dead proxy
//! is rejected (the sensors keep delivering through A and `policy_rejected` opens); the
//! password is in clear in no file of the service's data directory, no pg_dump, nothing the
//! sensor writes; `--allow-local` keeps a sensor's own proxy; with two replicas on PostgreSQL a
//! policy set through the CLI reaches a sensor connected to the other one.
//!
//! Heartbeats every second; every wait is a poll of the CLI's answer with a generous bound.

use std::path::Path;
use std::process::Child;
use std::time::Duration;

use serde_json::Value;

use crate::postgres::{create_workspace_pg, Db, PgService};
use crate::support::postgres::Cluster;
use crate::support::sensor::{assert_n_exactly_once, Sensor};
use crate::support::squid::{free_port, tunnels, Squid, SquidOptions};
use crate::support::*;

const FLEET_FLAGS: [&str; 4] = [
    "--fleet-evaluate-every",
    "200ms",
    "--fleet-online-buffer",
    "1s",
];
const USER_A: &str = "polusera";
const PASSWORD_A: &str = "Pol-A-Pa55";
const USER_B: &str = "poluserb";
/// Unusual enough that finding it anywhere means it leaked.
const PASSWORD_B: &str = "Pol1cy-B-S3cret-7f3a";
/// Bound of every wait (a loaded CI machine).
const WAIT: u64 = 90;

fn json_of(args: &[&str]) -> Value {
    let out = ok(uplink(args), &args.join(" "));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"))
}

/// `uplink fleet policy show WS STORE… --json`.
fn policy_show(ws: &str, store: &[&str]) -> Value {
    let mut args = vec!["fleet", "policy", "show", ws];
    args.extend_from_slice(store);
    args.push("--json");
    json_of(&args)
}

/// The sensor's row of `policy show`.
fn policy_of(ws: &str, store: &[&str], id: &str) -> Value {
    policy_show(ws, store)["sensors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["sensor_id"] == id)
        .cloned()
        .unwrap_or(Value::Null)
}

fn fleet_json(args: &[&str], store: &[&str]) -> Value {
    let mut all = vec!["fleet"];
    all.extend_from_slice(args);
    all.extend_from_slice(store);
    all.push("--json");
    json_of(&all)
}

fn sensor_row(ws: &str, store: &[&str], id: &str) -> Value {
    fleet_json(&["list", ws], store)["sensors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["sensor_id"] == id)
        .cloned()
        .unwrap_or(Value::Null)
}

/// `fleet policy set WS STORE… ARGS`.
fn set_policy(ws: &str, store: &[&str], args: &[&str]) -> String {
    let mut all = vec!["fleet", "policy", "set", ws];
    all.extend_from_slice(store);
    all.extend_from_slice(args);
    ok(uplink(&all), "fleet policy set")
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

fn events(kind: &str, from: u64, to: u64) -> String {
    (from..to)
        .map(|n| format!("{{\"kind\":\"{kind}\",\"n\":{n}}}\n"))
        .collect()
}

fn stop(child: Child) {
    signal(child.id(), "TERM");
    assert!(
        wait_exit(child, Duration::from_secs(30)).is_some(),
        "sensor run did not stop on SIGTERM"
    );
}

/// Every file under `dir` (recursively) whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    found.push(p.display().to_string());
                }
            }
        }
    }
    found
}

fn squid(user: &str, password: &str, ws: &Ws) -> Squid {
    Squid::start(SquidOptions {
        basic: Some((user, password)),
        hosts: vec![ws.sensor_host.clone()],
        ..Default::default()
    })
}

#[test]
fn sensors_behind_squid_a_move_to_squid_b_by_policy_and_every_event_arrives_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    let svc = ServiceProc::start_with(&data, &FLEET_FLAGS);
    let ws = create_workspace(&data, "pola", svc.port);
    let store = ["--data-dir", data.to_str().unwrap()];
    let a = squid(USER_A, PASSWORD_A, &ws);
    let mut b = squid(USER_B, PASSWORD_B, &ws);
    let via_a = [
        "--proxy-url",
        &a.url(),
        "--proxy-user",
        USER_A,
        "--proxy-password",
        PASSWORD_A,
    ];
    let sensors: Vec<Sensor> = (0..2)
        .map(|i| fast_sensor(&dir.path().join(format!("sensor{i}")), &ws, &via_a))
        .collect();
    let ids: Vec<String> = sensors.iter().map(sensor_id).collect();
    const N: u64 = 400;
    for s in &sensors {
        ok(s.send(&events("p", 0, N / 2)), "sensor send");
    }
    let logs: Vec<_> = (0..2)
        .map(|i| dir.path().join(format!("run{i}.log")))
        .collect();
    let runs: Vec<Child> = sensors
        .iter()
        .zip(&logs)
        .map(|(s, l)| s.spawn_run(l))
        .collect();
    let context = || {
        let mut text = format!(
            "policy {}\nlist {}\n",
            policy_show("pola", &store),
            fleet_json(&["list", "pola"], &store)
        );
        for (s, l) in sensors.iter().zip(&logs) {
            text.push_str(&s.context(l));
        }
        format!(
            "{text}\nservice log:\n{}\nsquid A:\n{}\nsquid B:\n{}",
            svc.log(),
            a.logs(),
            b.logs()
        )
    };
    for id in &ids {
        poll_until(
            "reporting through A",
            WAIT,
            || sensor_row("pola", &store, id)["route"] == format!("PROXY 127.0.0.1:{}", a.port),
            context,
        );
    }

    let pw = dir.path().join("proxy-password");
    std::fs::write(&pw, format!("{PASSWORD_B}\n")).unwrap();
    let said = set_policy(
        "pola",
        &store,
        &[
            "--all",
            "--proxy-url",
            &b.url(),
            "--proxy-user",
            USER_B,
            "--proxy-password-file",
            pw.to_str().unwrap(),
        ],
    );
    assert!(said.contains("policy v1 of workspace pola"), "{said}");
    assert!(!said.contains(PASSWORD_B), "{said}");
    // Within the interval (1 s heartbeats; the bound is for a loaded machine).
    for id in &ids {
        poll_until(
            "policy v1 applied and reported",
            WAIT,
            || {
                let row = sensor_row("pola", &store, id);
                row["policy"] == 1 && row["route"] == format!("PROXY 127.0.0.1:{}", b.port)
            },
            context,
        );
    }
    let shown = policy_show("pola", &store);
    assert_eq!(shown["version"], 1, "{shown}");
    assert_eq!(shown["policy"]["route"]["password"], "set", "{shown}");
    assert!(!shown.to_string().contains(PASSWORD_B), "{shown}");
    for s in &sensors {
        ok(s.send(&events("p", N / 2, N)), "sensor send");
    }
    poll_until(
        "every event stored",
        WAIT,
        || {
            let rows = exported(&data, "pola");
            rows.iter().filter(|(_, _, v)| v["kind"] == "p").count() as u64 == 2 * N
        },
        context,
    );
    let rows = exported(&data, "pola");
    for id in &ids {
        let mine: Vec<_> = rows.iter().filter(|(s, _, _)| s == id).cloned().collect();
        assert_n_exactly_once(&mine, "p", N);
    }

    // Named as the source, with what it overrode; the status shows the version.
    for s in &sensors {
        let shown = s.proxy_show();
        assert_eq!(shown["source"], "policy v1 from the service", "{shown}");
        assert!(
            shown["overrode"]
                .as_str()
                .is_some_and(|o| o.contains(&format!("explicit {}", a.url()))),
            "{shown}"
        );
        assert_eq!(shown["user"], USER_B, "{shown}");
        assert_eq!(s.status()["policy"]["applied"], 1);
        let explain = ok(
            uplink(&["proxy", "explain", &ws.sensor_url, "--config-dir", s.cfg()]),
            "proxy explain",
        );
        assert!(explain.contains("policy v1 from the service"), "{explain}");
    }
    for run in runs {
        stop(run);
    }
    // B's access log (flushed as Squid stops) shows the tunnels of the uploads.
    let log_b = b.stop();
    assert!(
        tunnels(&log_b, &ws.sensor_host).len() >= 2,
        "no tunnels through B:\n{log_b}"
    );
    assert!(log_b.contains(USER_B), "{log_b}");

    // The password in clear: nowhere in the service's data directory, nor in anything the
    // sensors wrote (their directories and logs).
    assert_eq!(files_containing(&data, PASSWORD_B), Vec::<String>::new());
    assert_eq!(
        files_containing(dir.path(), PASSWORD_B),
        vec![pw.display().to_string()]
    );
}

#[test]
fn a_policy_naming_a_dead_proxy_is_rejected_and_sensors_keep_delivering_through_a() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    let svc = ServiceProc::start_with(&data, &FLEET_FLAGS);
    let ws = create_workspace(&data, "polb", svc.port);
    let store = ["--data-dir", data.to_str().unwrap()];
    let a = squid(USER_A, PASSWORD_A, &ws);
    let sensor = fast_sensor(
        &dir.path().join("sensor"),
        &ws,
        &[
            "--proxy-url",
            &a.url(),
            "--proxy-user",
            USER_A,
            "--proxy-password",
            PASSWORD_A,
        ],
    );
    let id = sensor_id(&sensor);
    let log = dir.path().join("run.log");
    let run = sensor.spawn_run(&log);
    let context = || {
        format!(
            "policy {}\nissues {}\n{}\nservice log:\n{}\nsquid A:\n{}",
            policy_show("polb", &store),
            fleet_json(&["issues", "polb", "--all"], &store),
            sensor.context(&log),
            svc.log(),
            a.logs()
        )
    };
    poll_until(
        "reporting through A",
        WAIT,
        || sensor_row("polb", &store, &id)["route"] == format!("PROXY 127.0.0.1:{}", a.port),
        context,
    );
    // Nothing listens there.
    let dead = format!("http://127.0.0.1:{}", free_port());
    set_policy("polb", &store, &["--all", "--proxy-url", &dead]);
    poll_until(
        "policy v1 rejected",
        WAIT,
        || policy_of("polb", &store, &id)["rejected"]["version"] == 1,
        context,
    );
    let row = policy_of("polb", &store, &id);
    assert_eq!(row["rejected"]["code"], "TCP_REFUSED", "{row}");
    assert!(row["applied"].is_null(), "{row}");
    poll_until(
        "policy_rejected issue open",
        WAIT,
        || {
            fleet_json(&["issues", "polb"], &store)["issues"]
                .as_array()
                .unwrap()
                .iter()
                .any(|i| i["kind"] == "policy_rejected" && i["state"] == "open")
        },
        context,
    );
    let issue = fleet_json(&["issues", "polb"], &store)["issues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["kind"] == "policy_rejected")
        .cloned()
        .unwrap();
    assert_eq!(issue["severity"], "medium", "{issue}");
    assert!(
        issue["description"].as_str().unwrap().contains("policy v1"),
        "{issue}"
    );
    let listed = sensor_row("polb", &store, &id);
    assert_eq!(listed["policy_rejected"], 1, "{listed}");
    assert_eq!(sensor.status()["policy"]["rejected"]["version"], 1);
    // Still delivering through A: every event.
    const N: u64 = 200;
    ok(sensor.send(&events("d", 0, N)), "sensor send");
    poll_until(
        "every event stored through A",
        WAIT,
        || {
            exported(&data, "polb")
                .iter()
                .filter(|(_, _, v)| v["kind"] == "d")
                .count() as u64
                == N
        },
        context,
    );
    assert_n_exactly_once(&exported(&data, "polb"), "d", N);
    assert_eq!(
        sensor_row("polb", &store, &id)["route"],
        format!("PROXY 127.0.0.1:{}", a.port)
    );
    // Cleared: the rejection goes, and so does the issue.
    ok(
        uplink(&["fleet", "policy", "clear", "polb", store[0], store[1]]),
        "fleet policy clear",
    );
    poll_until(
        "the issue closes once the policy is cleared",
        WAIT,
        || {
            fleet_json(&["issues", "polb", "--all"], &store)["issues"]
                .as_array()
                .unwrap()
                .iter()
                .any(|i| i["kind"] == "policy_rejected" && i["state"] == "closed")
        },
        context,
    );
    stop(run);
}

#[test]
fn allow_local_keeps_a_sensors_own_proxy_and_applies_to_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    let svc = ServiceProc::start_with(&data, &FLEET_FLAGS);
    let ws = create_workspace(&data, "polc", svc.port);
    let store = ["--data-dir", data.to_str().unwrap()];
    let a = squid(USER_A, PASSWORD_A, &ws);
    let b = squid(USER_B, PASSWORD_B, &ws);
    // One sensor with its own proxy (A), one with none of its own.
    let own = fast_sensor(
        &dir.path().join("own"),
        &ws,
        &[
            "--proxy-url",
            &a.url(),
            "--proxy-user",
            USER_A,
            "--proxy-password",
            PASSWORD_A,
        ],
    );
    let plain = fast_sensor(&dir.path().join("plain"), &ws, &[]);
    let (own_id, plain_id) = (sensor_id(&own), sensor_id(&plain));
    let (log_own, log_plain) = (dir.path().join("own.log"), dir.path().join("plain.log"));
    let runs = [own.spawn_run(&log_own), plain.spawn_run(&log_plain)];
    let context = || {
        format!(
            "policy {}\nlist {}\n{}\n{}\nservice log:\n{}",
            policy_show("polc", &store),
            fleet_json(&["list", "polc"], &store),
            own.context(&log_own),
            plain.context(&log_plain),
            svc.log()
        )
    };
    let pw = dir.path().join("pw");
    std::fs::write(&pw, PASSWORD_B).unwrap();
    set_policy(
        "polc",
        &store,
        &[
            "--all",
            "--allow-local",
            "--proxy-url",
            &b.url(),
            "--proxy-user",
            USER_B,
            "--proxy-password-file",
            pw.to_str().unwrap(),
        ],
    );
    poll_until(
        "both sensors applied v1: the plain one through B",
        WAIT,
        || {
            policy_of("polc", &store, &own_id)["applied"] == 1
                && sensor_row("polc", &store, &plain_id)["route"]
                    == format!("PROXY 127.0.0.1:{}", b.port)
        },
        context,
    );
    // The sensor with its own proxy keeps it, and says why.
    let row = sensor_row("polc", &store, &own_id);
    assert_eq!(row["route"], format!("PROXY 127.0.0.1:{}", a.port), "{row}");
    let shown = own.proxy_show();
    assert_eq!(shown["source"], "local settings (sensor.toml)", "{shown}");
    assert!(
        shown["overrode"].as_str().is_some_and(
            |o| o.contains("policy v1 from the service") && o.contains("allows local settings")
        ),
        "{shown}"
    );
    assert_eq!(shown["url"], a.url(), "{shown}");
    let shown = plain.proxy_show();
    assert_eq!(shown["source"], "policy v1 from the service", "{shown}");
    assert!(shown["overrode"].is_null(), "{shown}");
    for run in runs {
        stop(run);
    }
}

#[test]
fn a_policy_set_through_the_cli_reaches_a_sensor_on_the_other_replica_and_no_dump_holds_its_password(
) {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let db = Db::new(&cluster, tmp.path());
    let r1 = PgService::start_with(&db, "127.0.0.1:0", &FLEET_FLAGS);
    let r2 = PgService::start_with(&db, "127.0.0.1:0", &FLEET_FLAGS);
    // The sensor talks to replica 2 only.
    let ws = create_workspace_pg(&db, tmp.path(), "pold", r2.port);
    let store = db.args();
    let b = squid(USER_B, PASSWORD_B, &ws);
    let sensor = fast_sensor(&tmp.path().join("sensor"), &ws, &[]);
    let id = sensor_id(&sensor);
    let log = tmp.path().join("run.log");
    let run = sensor.spawn_run(&log);
    let context = || {
        format!(
            "policy {}\n{}\nr1:\n{}\nr2:\n{}\nsquid B:\n{}",
            policy_show("pold", &store),
            sensor.context(&log),
            r1.log(),
            r2.log(),
            b.logs()
        )
    };
    poll_until(
        "reporting to replica 2",
        WAIT,
        || sensor_row("pold", &store, &id)["route"] == "DIRECT",
        context,
    );
    let pw = tmp.path().join("pw");
    std::fs::write(&pw, PASSWORD_B).unwrap();
    set_policy(
        "pold",
        &store,
        &[
            "--all",
            "--proxy-url",
            &b.url(),
            "--proxy-user",
            USER_B,
            "--proxy-password-file",
            pw.to_str().unwrap(),
        ],
    );
    poll_until(
        "the sensor on replica 2 applied v1",
        WAIT,
        || {
            let row = sensor_row("pold", &store, &id);
            row["policy"] == 1 && row["route"] == format!("PROXY 127.0.0.1:{}", b.port)
        },
        context,
    );
    assert!(
        !r2.log().contains(PASSWORD_B) && !r1.log().contains(PASSWORD_B),
        "a replica logged the password"
    );
    let dump = cluster.dump("uplink");
    assert!(
        !dump
            .windows(PASSWORD_B.len())
            .any(|w| w == PASSWORD_B.as_bytes()),
        "the password is in clear in a pg_dump"
    );
    assert!(
        String::from_utf8_lossy(&dump).contains("sealed:v1:"),
        "the dump holds the sealed password"
    );
    stop(run);
    assert_eq!(
        files_containing(&sensor.dir, PASSWORD_B),
        Vec::<String>::new()
    );
}

#[test]
fn an_applied_policy_whose_proxy_dies_is_set_aside_for_the_sensors_own_route() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    let svc = ServiceProc::start_with(&data, &FLEET_FLAGS);
    let ws = create_workspace(&data, "pole", svc.port);
    let store = ["--data-dir", data.to_str().unwrap()];
    let a = squid(USER_A, PASSWORD_A, &ws);
    let mut b = squid(USER_B, PASSWORD_B, &ws);
    let sensor = fast_sensor(
        &dir.path().join("sensor"),
        &ws,
        &[
            "--proxy-url",
            &a.url(),
            "--proxy-user",
            USER_A,
            "--proxy-password",
            PASSWORD_A,
        ],
    );
    let id = sensor_id(&sensor);
    let log = dir.path().join("run.log");
    let run = sensor.spawn_run(&log);
    let context = || {
        format!(
            "policy {}\nlist {}\n{}\nservice log:\n{}",
            policy_show("pole", &store),
            fleet_json(&["list", "pole"], &store),
            sensor.context(&log),
            svc.log()
        )
    };
    let pw = dir.path().join("pw");
    std::fs::write(&pw, PASSWORD_B).unwrap();
    set_policy(
        "pole",
        &store,
        &[
            "--all",
            "--proxy-url",
            &b.url(),
            "--proxy-user",
            USER_B,
            "--proxy-password-file",
            pw.to_str().unwrap(),
        ],
    );
    let on = |port: u16| format!("PROXY 127.0.0.1:{port}");
    poll_until(
        "through B by policy",
        WAIT,
        || {
            let row = sensor_row("pole", &store, &id);
            row["policy"] == 1 && row["route"] == on(b.port)
        },
        context,
    );
    // B goes away for good: the sensor is not cut off, it goes back to A and says why.
    b.stop();
    const N: u64 = 100;
    ok(sensor.send(&events("f", 0, N)), "sensor send");
    poll_until(
        "every event stored through A",
        WAIT,
        || {
            exported(&data, "pole")
                .iter()
                .filter(|(_, _, v)| v["kind"] == "f")
                .count() as u64
                == N
        },
        context,
    );
    assert_n_exactly_once(&exported(&data, "pole"), "f", N);
    poll_until(
        "reported: v1 rejected, back on A",
        WAIT,
        || {
            let row = sensor_row("pole", &store, &id);
            row["policy_rejected"] == 1 && row["policy"].is_null() && row["route"] == on(a.port)
        },
        context,
    );
    assert_eq!(
        policy_of("pole", &store, &id)["rejected"]["code"],
        "TCP_REFUSED"
    );
    stop(run);
}

#[test]
fn the_admin_api_sets_shows_and_clears_the_policy_and_never_answers_the_password() {
    use crate::adminapi::{token, Api, Validator};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    let svc = ServiceProc::start(&data);
    let ws = create_workspace(&data, "polf", svc.port);
    let store = ["--data-dir", data.to_str().unwrap()];
    let admin = token("polf", "ops", "admin", &store);
    let viewer = token("polf", "look", "viewer", &store);
    let api = Api {
        ws: &ws,
        port: svc.port,
    };
    let schema = Validator::fetch(&api);
    let body = serde_json::json!({
        "route": {"kind": "proxy", "url": "http://proxy.corp:3128", "user": "CORP\\svc", "password": PASSWORD_B},
        "target": "all",
        "rollout_percent": 20,
    });
    let (status, v) = api.call("PUT", "policy", Some(&viewer), Some(body.clone()));
    assert_eq!(status, 403, "{v}");
    let (status, v) = api.call("PUT", "policy", Some(&admin), Some(body));
    assert_eq!(status, 200, "{v}");
    schema.check("PUT", "/policy", 200, &v);
    assert_eq!(v["version"], 1, "{v}");
    assert_eq!(v["route"]["password"], "set", "{v}");
    assert!(!v.to_string().contains(PASSWORD_B), "{v}");
    let bad =
        serde_json::json!({"route": {"kind": "proxy", "url": "proxy.corp:3128"}, "target": "all"});
    let (status, v) = api.call("PUT", "policy", Some(&admin), Some(bad));
    assert_eq!(status, 400, "{v}");
    assert!(v["message"].as_str().unwrap().contains("no scheme"), "{v}");
    let (status, v) = api.call("GET", "policy", Some(&viewer), None);
    assert_eq!(status, 200, "{v}");
    schema.check("GET", "/policy", 200, &v);
    assert_eq!(
        v,
        policy_show("polf", &store),
        "the API answers as the CLI does"
    );
    assert_eq!(v["policy"]["rollout_percent"], 20, "{v}");
    assert!(!v.to_string().contains(PASSWORD_B), "{v}");
    let (status, v) = api.call("DELETE", "policy", Some(&admin), None);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v, serde_json::json!({"version": 2, "cleared": true}));
    assert!(policy_show("polf", &store)["policy"].is_null());
    assert_eq!(files_containing(&data, PASSWORD_B), Vec::<String>::new());
    assert!(!svc.log().contains(PASSWORD_B));
}
