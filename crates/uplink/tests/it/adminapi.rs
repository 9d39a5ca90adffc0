//! The admin API (docs/admin-api.md) against the real service: tokens from the CLI (shown once,
//! stored hashed, scoped to one workspace), the same fleet answers from the API on two replicas
//! of one PostgreSQL as from `uplink fleet … --json`, pagination that walks every sensor once,
//! a viewer token that cannot act, another workspace's token that sees nothing, a revoked token
//! refused at once, and every live answer validated against the served OpenAPI document
//! (`jsonschema`, in process: no tool to install, and the same JSON Schema dialect as OpenAPI 3.1).

use std::path::Path;
use std::process::Child;
use std::time::Duration;

use serde_json::{json, Value};

use crate::postgres::{create_workspace_pg, Db, PgService};
use crate::support::postgres::Cluster;
use crate::support::receivers::{expected_signature, Receiver, Rsyslog};
use crate::support::sensor::Sensor;
use crate::support::*;

/// Evaluate often; late 1 s after a missed heartbeat.
pub(crate) const FLEET_FLAGS: [&str; 4] = [
    "--fleet-evaluate-every",
    "200ms",
    "--fleet-online-buffer",
    "1s",
];
/// Bound of every wait (a loaded CI machine).
pub(crate) const WAIT: u64 = 60;

/// `uplink ARGS STORE...`, its stdout.
pub(crate) fn cli(args: &[&str], store: &[&str]) -> String {
    let mut all = args.to_vec();
    all.extend_from_slice(store);
    ok(uplink(&all), &args.join(" "))
}

pub(crate) fn cli_json(args: &[&str], store: &[&str]) -> Value {
    let out = cli(&[args, &["--json"]].concat(), store);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"))
}

/// Creates a token with the CLI; returns its secret.
pub(crate) fn token(ws: &str, name: &str, role: &str, store: &[&str]) -> String {
    let v = cli_json(
        &[
            "admin", "token", "create", ws, "--name", name, "--role", role,
        ],
        store,
    );
    assert_eq!(v["name"], name, "{v}");
    assert_eq!(v["role"], role, "{v}");
    v["token"].as_str().unwrap().to_owned()
}

/// The admin API of workspace `ws` at `port`: a request, its status and JSON body.
pub(crate) struct Api<'a> {
    pub(crate) ws: &'a Ws,
    pub(crate) port: u16,
}

impl Api<'_> {
    pub(crate) fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let host = format!("{}.uplink.localhost", self.ws.name);
        let mut c = Curl::new(&host, self.port, &format!("/api/v1/admin/{path}"))
            .arg("--cacert")
            .arg(&self.ws.ca_file)
            .args(["-X", method]);
        if let Some(t) = token {
            c = c.arg("-H").arg(format!("Authorization: Bearer {t}"));
        }
        if let Some(b) = body {
            c = c
                .args(["-H", "Content-Type: application/json", "--data-binary"])
                .arg(b.to_string());
        }
        let (status, text) = c.run();
        let v = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {path}: {status}, not JSON ({e}): {text:?}"));
        (status, v)
    }

    fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.call("GET", path, Some(token), None)
    }
}

/// Validates live answers against the response schemas of the served OpenAPI document.
pub(crate) struct Validator {
    doc: Value,
}

impl Validator {
    pub(crate) fn fetch(api: &Api<'_>) -> Validator {
        let (status, doc) = api.call("GET", "openapi.json", None, None);
        assert_eq!(status, 200, "{doc}");
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{doc}");
        Validator { doc }
    }

    /// Checks `body` against the schema of `METHOD PATH`'s `status` answer (PATH as in the
    /// document, e.g. `/sensors/{id}`).
    pub(crate) fn check(&self, method: &str, path: &str, status: u16, body: &Value) {
        let op = &self.doc["paths"][path][method.to_ascii_lowercase()];
        assert!(
            op.is_object(),
            "{method} {path} is not in the OpenAPI document"
        );
        let schema = &op["responses"][status.to_string()]["content"]["application/json"]["schema"];
        assert!(
            schema.is_object(),
            "{method} {path} answered {status}, which the OpenAPI document does not list"
        );
        // The response schema, with the document's components beside it so `$ref`s resolve.
        let mut root = schema.clone();
        root["components"] = self.doc["components"].clone();
        let validator = jsonschema::validator_for(&root)
            .unwrap_or_else(|e| panic!("{method} {path}: schema does not compile: {e}"));
        let errors: Vec<String> = validator
            .iter_errors(body)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{method} {path} {status}: the answer does not match the OpenAPI document: {errors:?}\n{body:#}"
        );
    }
}

pub(crate) fn fast_sensor(dir: &Path, ws: &Ws) -> Sensor {
    let sensor = Sensor::installed(dir, ws, &["--quiet"]);
    sensor.edit_config("heartbeat_secs = 60", "heartbeat_secs = 1");
    sensor
}

pub(crate) fn stop(child: Child) {
    signal(child.id(), "TERM");
    assert!(
        wait_exit(child, Duration::from_secs(30)).is_some(),
        "sensor run did not stop on SIGTERM"
    );
}

#[test]
fn tokens_are_shown_once_listed_without_secrets_and_revoked_by_name_or_id() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    let svc = ServiceProc::start(&data);
    let ws = create_workspace(&data, "tokws", svc.port);
    let store = ["--data-dir", data.to_str().unwrap()];
    let ci = token("tokws", "ci", "admin", &store);
    let soc = token("tokws", "soc", "viewer", &store);
    assert_ne!(ci, soc);
    // Plain output: the secret alone on stdout.
    let plain = cli(
        &["admin", "token", "create", "tokws", "--name", "plain"],
        &store,
    );
    assert!(
        plain.trim().starts_with("upk_") && plain.trim().len() == 68,
        "{plain}"
    );

    let list = cli_json(&["admin", "token", "list", "tokws"], &store);
    let rows = list["tokens"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["ci", "soc", "plain"], "{list}");
    let text = list.to_string() + &cli(&["admin", "token", "list", "tokws"], &store);
    for secret in [&ci, &soc, plain.trim()] {
        assert!(!text.contains(&secret[4..]), "a secret is listed: {text}");
    }
    // Stored hashed: the secret is nowhere in the store's files.
    for entry in std::fs::read_dir(&data).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap_or_default();
        let hay = String::from_utf8_lossy(&bytes);
        assert!(!hay.contains(&ci[4..]), "the secret is stored in clear");
    }
    // A duplicate name, a bad name, a bad role, an unknown workspace: refused, saying why.
    let dup = uplink(
        &[
            &["admin", "token", "create", "tokws", "--name", "ci"][..],
            &store,
        ]
        .concat(),
    );
    assert!(
        !dup.status.success() && stderr(&dup).contains("already has a token named \"ci\""),
        "{}",
        stderr(&dup)
    );
    let bad = uplink(
        &[
            &["admin", "token", "create", "tokws", "--name", "a b"][..],
            &store,
        ]
        .concat(),
    );
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    let role = uplink(
        &[
            &[
                "admin", "token", "create", "tokws", "--name", "r", "--role", "root",
            ][..],
            &store,
        ]
        .concat(),
    );
    assert_eq!(role.status.code(), Some(2), "{}", stderr(&role));
    let nows = uplink(
        &[
            &["admin", "token", "create", "nows", "--name", "x"][..],
            &store,
        ]
        .concat(),
    );
    assert!(
        !nows.status.success() && stderr(&nows).contains("no workspace named"),
        "{}",
        stderr(&nows)
    );

    let api = Api {
        ws: &ws,
        port: svc.port,
    };
    assert_eq!(api.get("settings", &ci).0, 200);
    // Revoked by name, then by id: refused from the next request.
    cli(&["admin", "token", "revoke", "tokws", "ci"], &store);
    let (status, body) = api.get("settings", &ci);
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("ADMIN_TOKEN_INVALID")),
        "{body}"
    );
    let soc_id = rows[1]["id"].as_str().unwrap();
    cli(&["admin", "token", "revoke", "tokws", soc_id], &store);
    assert_eq!(api.get("settings", &soc).0, 401);
    let again = uplink(&[&["admin", "token", "revoke", "tokws", "ci"][..], &store].concat());
    assert!(
        !again.status.success() && stderr(&again).contains("no token \"ci\""),
        "{}",
        stderr(&again)
    );
    let left = cli_json(&["admin", "token", "list", "tokws"], &store);
    assert_eq!(left["tokens"].as_array().unwrap().len(), 1, "{left}");
}

#[test]
fn two_replicas_answer_the_fleet_as_the_cli_does_viewers_cannot_act_and_other_workspaces_see_nothing(
) {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = Cluster::start().unwrap();
    let db = Db::new(&cluster, tmp.path());
    let store = db.args();
    let r1 = PgService::start_with(&db, "127.0.0.1:0", &FLEET_FLAGS);
    let r2 = PgService::start_with(&db, "127.0.0.1:0", &FLEET_FLAGS);
    let ws = create_workspace_pg(&db, tmp.path(), "adm", r1.port);
    let other = create_workspace_pg(&db, tmp.path(), "admother", r1.port);
    let context = || {
        format!(
            "r1:\n{}\nr2:\n{}\npostgres:\n{}",
            r1.log(),
            r2.log(),
            cluster.log_text()
        )
    };
    let admin = token("adm", "ci", "admin", &store);
    let viewer = token("adm", "soc", "viewer", &store);
    let foreign = token("admother", "ci", "admin", &store);
    let a1 = Api {
        ws: &ws,
        port: r1.port,
    };
    let a2 = Api {
        ws: &ws,
        port: r2.port,
    };
    let schema = Validator::fetch(&a1);

    // Settings through the API (the shortest disconnection allowed), seen by the CLI.
    let (status, set) = a2.call(
        "PATCH",
        "settings",
        Some(&admin),
        Some(json!({"disconnected_after_secs": 10})),
    );
    assert_eq!(status, 200, "{set}");
    schema.check("PATCH", "/settings", 200, &set);
    let shown = cli_json(&["workspace", "show", "adm"], &store);
    assert_eq!(shown["disconnected_after_secs"], 10, "{shown}");
    let (status, got) = a1.get("settings", &viewer);
    assert_eq!((status, &got), (200, &set));
    schema.check("GET", "/settings", 200, &got);

    // Two sensors report, then stop: each goes disconnected and its issue opens.
    let s1 = fast_sensor(&tmp.path().join("s1"), &ws);
    let s2 = fast_sensor(&tmp.path().join("s2"), &ws);
    for (i, s) in [&s1, &s2].into_iter().enumerate() {
        let log = tmp.path().join(format!("run{i}.log"));
        let run = s.spawn_run(&log);
        poll_until(
            "the sensor is online",
            WAIT,
            || {
                let id = s.status()["sensor_id"].as_str().unwrap_or("").to_owned();
                cli_json(&["fleet", "list", "adm"], &store)["sensors"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|r| r["sensor_id"] == id.as_str() && r["state"] == "online")
            },
            || format!("{}\n{}", s.context(&log), context()),
        );
        stop(run);
    }
    poll_until(
        "both sensors disconnected with an open issue",
        WAIT,
        || {
            let issues = cli_json(&["fleet", "issues", "adm"], &store);
            issues["issues"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|i| i["kind"] == "disconnected" && i["state"] == "open")
                .count()
                == 2
        },
        context,
    );

    // The same answers from the CLI and from the API on each replica (read until one moment
    // sees all three alike: an evaluation may land between two reads).
    let last = std::cell::RefCell::new((Value::Null, Value::Null, Value::Null));
    poll_until(
        "the API on both replicas answers as the CLI",
        WAIT,
        || {
            let cli_list = cli_json(&["fleet", "list", "adm"], &store);
            let cli_issues = cli_json(&["fleet", "issues", "adm", "--all"], &store);
            let mut answers =
                vec![json!({"sensors": cli_list["sensors"], "issues": cli_issues["issues"]})];
            for api in [&a1, &a2] {
                let (s1, list) = api.get("sensors", &viewer);
                let (s2, issues) = api.get("issues?all=true", &viewer);
                assert_eq!((s1, s2), (200, 200), "{list} {issues}");
                assert_eq!(list["next_cursor"], Value::Null, "{list}");
                let mut sensors = list["sensors"].as_array().unwrap().clone();
                // The CLI lists by name, the API by id.
                let mut by_cli: Vec<String> = cli_list["sensors"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r["sensor_id"].as_str().unwrap().to_owned())
                    .collect();
                by_cli.sort();
                let ids: Vec<String> = sensors
                    .iter()
                    .map(|r| r["sensor_id"].as_str().unwrap().to_owned())
                    .collect();
                if ids != by_cli {
                    return false;
                }
                let order: Vec<&str> = cli_list["sensors"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r["sensor_id"].as_str().unwrap())
                    .collect();
                sensors.sort_by_key(|r| {
                    order
                        .iter()
                        .position(|id| r["sensor_id"] == *id)
                        .unwrap_or(usize::MAX)
                });
                answers.push(json!({"sensors": sensors, "issues": issues["issues"]}));
            }
            let same = answers[0] == answers[1] && answers[1] == answers[2];
            *last.borrow_mut() = (answers[0].clone(), answers[1].clone(), answers[2].clone());
            same
        },
        || {
            let l = last.borrow();
            format!(
                "cli: {:#}\nr1: {:#}\nr2: {:#}\n{}",
                l.0,
                l.1,
                l.2,
                context()
            )
        },
    );
    let cli_answer = last.borrow().0.clone();
    assert_eq!(
        cli_answer["sensors"].as_array().unwrap().len(),
        2,
        "{cli_answer}"
    );

    // Pages of one walk every sensor once.
    let (status, p1) = a1.get("sensors?limit=1", &admin);
    assert_eq!(status, 200, "{p1}");
    schema.check("GET", "/sensors", 200, &p1);
    let cursor = p1["next_cursor"].as_str().expect("a next page").to_owned();
    let (_, p2) = a2.get(&format!("sensors?limit=1&cursor={cursor}"), &admin);
    schema.check("GET", "/sensors", 200, &p2);
    assert_eq!(p2["next_cursor"], Value::Null, "{p2}");
    let mut paged: Vec<&str> = [&p1, &p2]
        .iter()
        .map(|p| p["sensors"][0]["sensor_id"].as_str().unwrap())
        .collect();
    paged.sort_unstable();
    paged.dedup();
    assert_eq!(paged.len(), 2, "{p1} {p2}");
    let (status, bad) = a1.get("sensors?limit=0", &admin);
    assert_eq!(
        (status, bad["code"].as_str()),
        (400, Some("REQUEST_REJECTED")),
        "{bad}"
    );
    schema.check("GET", "/sensors", 400, &bad);

    // One sensor, as `fleet show --json`.
    let id = paged[0].to_owned();
    let (status, one) = a2.get(&format!("sensors/{id}"), &viewer);
    assert_eq!(status, 200, "{one}");
    schema.check("GET", "/sensors/{id}", 200, &one);
    let shown = cli_json(&["fleet", "show", "adm", &id], &store);
    assert_eq!(one["issues"], shown["issues"], "{one:#}\n{shown:#}");
    assert_eq!(one["outages"], shown["outages"]);
    let (status, missing) = a1.get("sensors/nosuch", &viewer);
    assert_eq!(status, 404, "{missing}");
    schema.check("GET", "/sensors/{id}", 404, &missing);

    // A viewer cannot act: 403 with its code, and nothing changed.
    let issue_id = cli_json(&["fleet", "issues", "adm"], &store)["issues"][0]["issue_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let suppress = format!("issues/{issue_id}/suppress");
    let body = json!({"days": 2, "reason": "maintenance window"});
    for (method, path, body) in [
        ("POST", suppress.as_str(), Some(body.clone())),
        ("PATCH", "settings", Some(json!({"retention_days": 1}))),
        ("POST", "tokens", Some(json!({"name": "sneaky"}))),
        ("DELETE", "tokens/ci", None),
    ] {
        let (status, refused) = a1.call(method, path, Some(&viewer), body);
        assert_eq!(
            (status, refused["code"].as_str()),
            (403, Some("ADMIN_FORBIDDEN")),
            "{method} {path}: {refused}"
        );
    }
    let (status, refused) = a1.call("POST", &suppress, Some(&viewer), Some(body.clone()));
    schema.check("POST", "/issues/{id}/suppress", status, &refused);
    let issue = |id: &str| {
        cli_json(&["fleet", "issues", "adm", "--all"], &store)["issues"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["issue_id"] == id)
            .cloned()
            .unwrap()
    };
    assert_eq!(issue(&issue_id)["state"], "open");
    assert_eq!(
        cli_json(&["workspace", "show", "adm"], &store)["retention_days"],
        30
    );
    assert_eq!(
        cli_json(&["admin", "token", "list", "adm"], &store)["tokens"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Another workspace's token sees nothing: the same 401 as no token at all.
    let (status, no_token) = a1.call("GET", "sensors", None, None);
    assert_eq!(status, 401, "{no_token}");
    schema.check("GET", "/sensors", 401, &no_token);
    for path in [
        "sensors",
        &format!("sensors/{id}"),
        "issues?all=true",
        "settings",
        "tokens",
    ] {
        for api in [&a1, &a2] {
            let (status, body) = api.get(path, &foreign);
            assert_eq!((status, &body), (401, &no_token), "{path}");
            assert!(!body.to_string().contains(&id), "{body}");
        }
    }
    let (status, _) = a1.call("POST", &suppress, Some(&foreign), Some(body.clone()));
    assert_eq!(status, 401);
    assert_eq!(issue(&issue_id)["state"], "open");
    // Its own workspace's API answers it (on the other host).
    let own = Api {
        ws: &other,
        port: r2.port,
    };
    let (status, empty) = own.get("sensors", &foreign);
    assert_eq!(
        (status, empty["sensors"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{empty}"
    );

    // An admin acts: suppress on one replica, seen by the CLI and the other replica.
    let (status, suppressed) = a1.call("POST", &suppress, Some(&admin), Some(body));
    assert_eq!(status, 200, "{suppressed}");
    schema.check("POST", "/issues/{id}/suppress", 200, &suppressed);
    assert_eq!(suppressed["state"], "suppressed");
    assert_eq!(suppressed["suppressed_by"], "token:ci");
    assert_eq!(issue(&issue_id), suppressed);
    let (_, open) = a2.get("issues", &viewer);
    schema.check("GET", "/issues", 200, &open);
    assert!(
        open["issues"].as_array().unwrap().contains(&suppressed),
        "{open}"
    );
    let (status, back) = a2.call(
        "POST",
        &format!("issues/{issue_id}/unsuppress"),
        Some(&admin),
        None,
    );
    assert_eq!(
        (status, back["state"].as_str()),
        (200, Some("open")),
        "{back}"
    );
    schema.check("POST", "/issues/{id}/unsuppress", 200, &back);
    let (status, none) = a2.call("POST", "issues/iss-nosuch/unsuppress", Some(&admin), None);
    assert_eq!(status, 404, "{none}");

    // Tokens through the API: created (its secret once), listed, usable, revoked.
    let (status, created) = a1.call(
        "POST",
        "tokens",
        Some(&admin),
        Some(json!({"name": "made-by-api", "role": "viewer"})),
    );
    assert_eq!(status, 201, "{created}");
    schema.check("POST", "/tokens", 201, &created);
    let secret = created["token"].as_str().unwrap().to_owned();
    let (status, list) = a2.get("tokens", &secret);
    assert_eq!(status, 200, "{list}");
    schema.check("GET", "/tokens", 200, &list);
    assert!(!list.to_string().contains(&secret[4..]), "{list}");
    let (status, dup) = a1.call(
        "POST",
        "tokens",
        Some(&admin),
        Some(json!({"name": "made-by-api"})),
    );
    assert_eq!(status, 409, "{dup}");
    schema.check("POST", "/tokens", 409, &dup);
    let (status, revoked) = a2.call(
        "DELETE",
        &format!("tokens/{}", created["id"].as_str().unwrap()),
        Some(&admin),
        None,
    );
    assert_eq!(status, 200, "{revoked}");
    schema.check("DELETE", "/tokens/{id}", 200, &revoked);
    assert_eq!(a1.get("tokens", &secret).0, 401);

    // Errors are JSON with a code; unknown paths and wrong methods too.
    let (status, nf) = a1.get("nowhere", &admin);
    assert_eq!((status, nf["code"].is_string()), (404, true), "{nf}");
    let (status, wm) = a1.call("DELETE", "sensors", Some(&admin), None);
    assert_eq!((status, wm["code"].is_string()), (405, true), "{wm}");
}

/// `GET http://127.0.0.1:PORT/metrics`: the body.
fn scrape(port: u16) -> String {
    require("curl");
    let out = std::process::Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "20"])
        .arg(format!("http://127.0.0.1:{port}/metrics"))
        .output()
        .expect("run curl");
    assert!(out.status.success(), "scrape: {}", stderr(&out));
    stdout(&out)
}

/// The value of the sample named exactly `series` (name and labels as printed).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn metrics_count_ingest_and_enrollment_and_pass_promtool() {
    require("promtool");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    let port = crate::support::squid::free_port();
    let listen = format!("127.0.0.1:{port}");
    let svc = ServiceProc::start_with(&data, &["--metrics-listen", &listen]);
    let ws = create_workspace(&data, "metricsws", svc.port);
    let before = scrape(port);
    assert_eq!(
        sample(&before, "uplink_enrollments_total"),
        Some(0.0),
        "{before}"
    );

    const N: u64 = 500;
    let sensor = Sensor::installed(&dir.path().join("sensor"), &ws, &["--quiet"]);
    let lines: String = (0..N)
        .map(|n| format!("{{\"kind\":\"m\",\"n\":{n}}}\n"))
        .collect();
    ok(sensor.send(&lines), "sensor send");
    ok(sensor.run_once(60), "sensor run --once");
    let stored: u64 = cli_json(
        &["workspace", "stats", "metricsws"],
        &["--data-dir", data.to_str().unwrap()],
    )["events"]["by_kind"]["m"]
        .as_u64()
        .unwrap();
    assert_eq!(stored, N);

    let text = scrape(port);
    let context = || format!("{text}\nservice log:\n{}", svc.log());
    assert_eq!(
        sample(&text, "uplink_enrollments_total"),
        Some(1.0),
        "{}",
        context()
    );
    // Every stored event was counted (the sensor's own heartbeats and inventory too).
    let events = sample(&text, "uplink_ingest_events_total").unwrap();
    assert!(events >= N as f64, "{events} < {N}\n{}", context());
    assert!(
        sample(&text, "uplink_ingest_bytes_total").unwrap() > 0.0,
        "{}",
        context()
    );
    assert!(
        sample(&text, "uplink_batch_duration_seconds_count").unwrap() >= 1.0,
        "{}",
        context()
    );
    assert_eq!(
        sample(&text, "uplink_store_errors_total"),
        Some(0.0),
        "{}",
        context()
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("uplink_sensors{workspace=\"metricsws\"")),
        "no sensors gauge for the workspace\n{}",
        context()
    );

    promtool_check(&text);

    // The sensor's side: a node_exporter textfile from `sensor status --prometheus`.
    let prom = dir.path().join("uplink.prom");
    ok(
        uplink(&[
            "sensor",
            "status",
            "--config-dir",
            sensor.cfg(),
            "--prometheus",
            prom.to_str().unwrap(),
        ]),
        "sensor status --prometheus",
    );
    let textfile = std::fs::read_to_string(&prom).unwrap();
    let id = sensor.status()["sensor_id"].as_str().unwrap().to_owned();
    let series = format!("{{workspace=\"metricsws\",sensor_id=\"{id}\"}}");
    assert_eq!(
        sample(&textfile, &format!("uplink_sensor_queue_events{series}")),
        Some(0.0),
        "{textfile}"
    );
    assert!(
        sample(
            &textfile,
            &format!("uplink_sensor_last_success_timestamp_seconds{series}")
        )
        .is_some_and(|t| t > 1.7e9),
        "{textfile}"
    );
    promtool_check(&textfile);
}

/// `promtool check metrics` on `text`: no error and no lint finding.
fn promtool_check(text: &str) {
    let mut check = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run promtool");
    use std::io::Write;
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{text}",
        stdout(&out),
        stderr(&out)
    );
}

#[test]
fn webhooks_reach_a_receiver_that_was_down_once_per_event_with_two_replicas_and_a_valid_signature()
{
    let tmp = tempfile::tempdir().unwrap();
    let cluster = Cluster::start().unwrap();
    let db = Db::new(&cluster, tmp.path());
    let store = db.args();
    let r1 = PgService::start_with(&db, "127.0.0.1:0", &FLEET_FLAGS);
    let r2 = PgService::start_with(&db, "127.0.0.1:0", &FLEET_FLAGS);
    let ws = create_workspace_pg(&db, tmp.path(), "hooks", r1.port);
    let context = || {
        format!(
            "r1:\n{}\nr2:\n{}\npostgres:\n{}",
            r1.log(),
            r2.log(),
            cluster.log_text()
        )
    };
    // The receiver's port, nothing listening on it yet: the first attempts are refused.
    let port = crate::support::squid::free_port();
    let secret = "s3cret-for-the-webhook-test-0123456789";
    let secret_file = tmp.path().join("hook.secret");
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    let url = format!("http://127.0.0.1:{port}/hook");
    cli(
        &[
            "workspace",
            "set",
            "hooks",
            "--disconnected-after",
            "10s",
            "--webhook",
            &url,
            "--webhook-secret-file",
            secret_file.to_str().unwrap(),
        ],
        &store,
    );
    let shown = cli_json(&["workspace", "show", "hooks"], &store);
    assert_eq!(shown["webhooks"], json!([url]), "{shown}");
    assert!(!shown.to_string().contains(secret), "{shown}");
    // Sealed under the master key at rest: a pg_dump holds the webhook's row, not its secret.
    let dump = cluster.pg_dump("uplink");
    let row = dump
        .lines()
        .find(|l| l.starts_with("hooks\t") && l.contains(&url))
        .unwrap_or_else(|| panic!("no webhook row in the dump:\n{dump}"));
    assert!(row.contains("\tsealed:v1:"), "{row}");
    assert!(!dump.contains(secret), "the secret is in the pg_dump");

    let sensor = fast_sensor(&tmp.path().join("s"), &ws);
    let online = |log: &Path| {
        poll_until(
            "the sensor is online",
            WAIT,
            || cli_json(&["fleet", "list", "hooks"], &store)["sensors"][0]["state"] == "online",
            || format!("{}\n{}", sensor.context(log), context()),
        )
    };
    let log = tmp.path().join("run1.log");
    let run = sensor.spawn_run(&log);
    online(&log);
    stop(run);
    let deliveries =
        || cli_json(&["workspace", "deliveries", "hooks"], &store)["deliveries"].clone();
    // Opened, and tried while the receiver is down.
    poll_until(
        "a failed attempt of issue.opened",
        WAIT,
        || {
            deliveries().as_array().unwrap().iter().any(|d| {
                d["event"] == "issue.opened"
                    && d["state"] == "pending"
                    && d["attempts"].as_u64() >= Some(1)
                    && d["last_error"].is_string()
            })
        },
        || format!("{:#}\n{}", deliveries(), context()),
    );
    let receiver = Receiver::http_on(port);
    poll_until(
        "issue.opened delivered",
        WAIT,
        || {
            deliveries()
                .as_array()
                .unwrap()
                .iter()
                .any(|d| d["event"] == "issue.opened" && d["state"] == "delivered")
        },
        || format!("{:#}\n{}", deliveries(), context()),
    );
    // The sensor comes back: the issue closes, and that is delivered too.
    let log = tmp.path().join("run2.log");
    let run = sensor.spawn_run(&log);
    poll_until(
        "issue.closed delivered",
        WAIT,
        || {
            deliveries()
                .as_array()
                .unwrap()
                .iter()
                .any(|d| d["event"] == "issue.closed" && d["state"] == "delivered")
        },
        || {
            format!(
                "{:#}\n{}\n{}",
                deliveries(),
                sensor.context(&log),
                context()
            )
        },
    );
    stop(run);

    // Each event reached the receiver once (two replicas send), signed as documented.
    let all = deliveries();
    let rows = all.as_array().unwrap();
    assert!(rows.iter().all(|d| d["state"] == "delivered"), "{all:#}");
    let received = receiver.received();
    assert_eq!(received.len(), rows.len(), "{received:#?}\n{all:#}");
    let mut events = Vec::new();
    for r in &received {
        let ts = r.header("x-uplink-timestamp").expect("a timestamp");
        let sig = r.header("x-uplink-signature").expect("a signature");
        assert_eq!(sig, expected_signature(secret, ts, &r.body), "{r:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!((now - ts.parse::<i64>().unwrap()).abs() < 600, "{ts}");
        let v: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["workspace"], "hooks", "{v}");
        assert_eq!(v["issue"]["kind"], "disconnected", "{v}");
        events.push(v["event"].as_str().unwrap().to_owned());
    }
    events.sort();
    assert_eq!(events, ["issue.closed", "issue.opened"], "{received:#?}");
}

#[test]
fn rsyslog_receives_one_rfc5424_message_per_issue_event() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    let svc = ServiceProc::start_with(&data, &FLEET_FLAGS);
    let ws = create_workspace(&data, "syslogws", svc.port);
    let store = ["--data-dir", data.to_str().unwrap()];
    let port = crate::support::squid::free_port();
    let rsyslog = Rsyslog::start(dir.path(), port);
    let target = format!("tcp://127.0.0.1:{port}");
    cli(
        &[
            "workspace",
            "set",
            "syslogws",
            "--disconnected-after",
            "10s",
            "--syslog",
            &target,
        ],
        &store,
    );
    assert_eq!(
        cli_json(&["workspace", "show", "syslogws"], &store)["syslog"],
        json!([target])
    );
    let bad = uplink(
        &[
            &["workspace", "set", "syslogws", "--syslog", "udp://h:514"][..],
            &store,
        ]
        .concat(),
    );
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));

    let sensor = fast_sensor(&dir.path().join("s"), &ws);
    let id = sensor.status()["sensor_id"].as_str().unwrap().to_owned();
    let context = |log: &Path| {
        format!(
            "syslog: {:#?}\ndeliveries: {}\n{}\nservice:\n{}",
            rsyslog.lines(),
            cli(&["workspace", "deliveries", "syslogws"], &store),
            sensor.context(log),
            svc.log()
        )
    };
    let log = dir.path().join("run1.log");
    let run = sensor.spawn_run(&log);
    poll_until(
        "the sensor is online",
        WAIT,
        || cli_json(&["fleet", "list", "syslogws"], &store)["sensors"][0]["state"] == "online",
        || context(&log),
    );
    stop(run);
    poll_until(
        "rsyslog has the issue.opened message",
        WAIT,
        || rsyslog.lines().iter().any(|l| l.contains(" issue.opened ")),
        || context(&log),
    );
    let log = dir.path().join("run2.log");
    let run = sensor.spawn_run(&log);
    poll_until(
        "rsyslog has the issue.closed message",
        WAIT,
        || rsyslog.lines().iter().any(|l| l.contains(" issue.closed ")),
        || context(&log),
    );
    stop(run);

    let lines = rsyslog.lines();
    assert_eq!(lines.len(), 2, "one message per event: {lines:#?}");
    let issue = uplink_fleet::issue_id("syslogws", Some(&id), "disconnected");
    for (line, event, pri) in [
        (&lines[0], "issue.opened", "<131>1 "),
        (&lines[1], "issue.closed", "<134>1 "),
    ] {
        assert!(line.starts_with(pri), "{line}");
        assert!(line.contains(&format!(" uplink - {event} [uplink@32473 workspace=\"syslogws\" issue_id=\"{issue}\" kind=\"disconnected\"")), "{line}");
        assert!(line.contains(&format!("sensor_id=\"{id}\"")), "{line}");
    }
    let log = cli_json(&["workspace", "deliveries", "syslogws"], &store);
    let rows = log["deliveries"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{log:#}");
    assert!(
        rows.iter()
            .all(|d| d["state"] == "delivered" && d["url"] == target.as_str()),
        "{log:#}"
    );
}

/// The lifecycle through the admin API (issues #23, #24): revoke and decommission a sensor, rotate
/// the access key and read the audit trail, each answer checked against the OpenAPI document; a
/// viewer's attempt is refused and audited; every administrator's action (the API's, the CLI's
/// policy change) is in the trail with who and from where.
#[test]
fn the_api_revokes_decommissions_rotates_the_key_and_every_action_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    let svc = ServiceProc::start(&data);
    let ws = create_workspace(&data, "lcapi", svc.port);
    let store = ["--data-dir", data.to_str().unwrap()];
    let admin = token("lcapi", "ci", "admin", &store);
    let viewer = token("lcapi", "soc", "viewer", &store);
    let a = Sensor::installed(&dir.path().join("a"), &ws, &["--quiet"]);
    let b = Sensor::installed(&dir.path().join("b"), &ws, &["--quiet"]);
    let a_id = a.status()["sensor_id"].as_str().unwrap().to_owned();
    let b_id = b.status()["sensor_id"].as_str().unwrap().to_owned();
    let api = Api {
        ws: &ws,
        port: svc.port,
    };
    let schema = Validator::fetch(&api);
    let reason = json!({ "reason": "laptop stolen" });

    // A viewer may not act: 403, and the attempt is in the trail.
    let (status, body) = api.call(
        "POST",
        &format!("sensors/{a_id}/revoke"),
        Some(&viewer),
        Some(reason.clone()),
    );
    assert_eq!(status, 403, "{body}");
    schema.check("POST", "/sensors/{id}/revoke", status, &body);
    // No reason: 400, nothing revoked.
    let (status, body) = api.call(
        "POST",
        &format!("sensors/{a_id}/revoke"),
        Some(&admin),
        Some(json!({})),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("reason"),
        "{body}"
    );
    // Revoked: the sensor's detail says so, and the sensor itself is refused.
    let (status, body) = api.call(
        "POST",
        &format!("sensors/{a_id}/revoke"),
        Some(&admin),
        Some(reason.clone()),
    );
    assert_eq!(status, 200, "{body}");
    schema.check("POST", "/sensors/{id}/revoke", status, &body);
    assert_eq!(body["lifecycle"], "revoked", "{body}");
    poll_until(
        "the revoked sensor refused with CERT_REVOKED",
        20,
        || {
            ok(a.send("{\"kind\":\"logon\"}\n"), "send");
            let out = a.run_once(10);
            format!("{}{}", stdout(&out), stderr(&out)).contains("CERT_REVOKED")
        },
        || svc.log(),
    );
    // Decommissioned: hidden from the default list.
    let (status, body) = api.call(
        "POST",
        &format!("sensors/{b_id}/decommission"),
        Some(&admin),
        Some(json!({ "reason": "machine retired" })),
    );
    assert_eq!(status, 200, "{body}");
    schema.check("POST", "/sensors/{id}/decommission", status, &body);
    assert_eq!(body["lifecycle"], "decommissioned", "{body}");
    let (status, body) = api.call("POST", "sensors/nope/revoke", Some(&admin), Some(reason));
    assert_eq!(status, 404, "{body}");
    schema.check("POST", "/sensors/{id}/revoke", status, &body);

    // The access key rotated: the old bundle enrolls nothing more.
    let (status, body) = api.call("POST", "access-key/rotate", Some(&admin), None);
    assert_eq!(status, 200, "{body}");
    schema.check("POST", "/access-key/rotate", status, &body);
    let mut n = 0;
    poll_until(
        "the old access key refused",
        20,
        || {
            n += 1;
            let out = Sensor::install(&dir.path().join(format!("old-{n}")), &ws, &[]);
            !out.status.success()
                && format!("{}{}", stdout(&out), stderr(&out)).contains("ENROLL_DENIED")
        },
        || svc.log(),
    );

    // The CLI's policy change and settings are audited too (as were its token creations above).
    cli(
        &["fleet", "policy", "set", "lcapi", "--all", "--direct"],
        &store,
    );
    cli(
        &["workspace", "set", "lcapi", "--retention-days", "30"],
        &store,
    );

    let (status, body) = api.call("GET", "audit?limit=50", Some(&viewer), None);
    assert_eq!(status, 200, "{body}");
    schema.check("GET", "/audit", status, &body);
    let entries = body["entries"].as_array().unwrap();
    let find = |action: &str, actor: &str, result: &str| {
        entries
            .iter()
            .find(|e| e["action"] == action && e["actor"] == actor && e["result"] == result)
    };
    let refused = find("revoke", "token:soc", "refused").unwrap_or_else(|| panic!("{body:#}"));
    assert_eq!(refused["sensor_id"], a_id.as_str());
    assert_eq!(refused["source"], "127.0.0.1", "{refused}");
    let revoked = find("revoke", "token:ci", "ok").unwrap_or_else(|| panic!("{body:#}"));
    assert_eq!(revoked["detail"], "laptop stolen", "{revoked}");
    assert!(
        find("revoke", "token:ci", "refused").is_some(),
        "the 400: {body:#}"
    );
    let dec = find("decommission", "token:ci", "ok").unwrap_or_else(|| panic!("{body:#}"));
    assert_eq!(dec["sensor_id"], b_id.as_str());
    assert!(
        find("rotate_access_key", "token:ci", "ok").is_some(),
        "{body:#}"
    );
    let policy = entries
        .iter()
        .find(|e| e["action"] == "policy_set" && e["result"] == "ok")
        .unwrap_or_else(|| panic!("{body:#}"));
    assert!(
        policy["source"].as_str().unwrap().starts_with("cli@"),
        "{policy}"
    );
    for (action, detail) in [("settings", "retention_days"), ("token_create", "soc (")] {
        let e = entries
            .iter()
            .find(|e| {
                e["action"] == action
                    && e["result"] == "ok"
                    && e["detail"].as_str().unwrap().contains(detail)
            })
            .unwrap_or_else(|| panic!("no {action}: {body:#}"));
        assert!(e["source"].as_str().unwrap().starts_with("cli@"), "{e}");
        assert!(e["detail"].as_str().unwrap().contains(detail), "{e}");
    }
    // The same trail as the CLI's.
    let cli_trail = cli_json(&["fleet", "audit", "lcapi", "--limit", "50"], &store);
    assert_eq!(cli_trail["entries"], body["entries"]);
}

/// CA rotation through the admin API (issue #24): rotate (a second rotation is 409 while the
/// previous CA is trusted), retire refused with 409 naming a sensor still on the old CA, retired
/// once that machine is decommissioned; answers checked against the OpenAPI document, audited.
#[test]
fn the_api_rotates_and_retires_the_ca_refusing_while_a_sensor_has_not_moved() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    let svc = ServiceProc::start(&data);
    let ws = create_workspace(&data, "caapi", svc.port);
    let store = ["--data-dir", data.to_str().unwrap()];
    let admin = token("caapi", "ci", "admin", &store);
    // Enrolled, never run again: it cannot learn the new CA.
    let idle = Sensor::installed(&dir.path().join("idle"), &ws, &["--quiet"]);
    let idle_id = idle.status()["sensor_id"].as_str().unwrap().to_owned();
    let api = Api {
        ws: &ws,
        port: svc.port,
    };
    let schema = Validator::fetch(&api);
    let before = cli_json(&["workspace", "show", "caapi"], &store);

    let (status, body) = api.call("POST", "ca/rotate", Some(&admin), None);
    assert_eq!(status, 200, "{body}");
    schema.check("POST", "/ca/rotate", status, &body);
    assert_eq!(
        body["previous_ca_sha256"], before["ca_sha256"],
        "{body} {before}"
    );
    assert_ne!(body["ca_sha256"], before["ca_sha256"]);
    // The console host now presents a certificate of the new CA: the API's client trusts both
    // (as an administrator's would, from the new bundle).
    let bundle = dir.path().join("new-bundle.json");
    cli(
        &[
            "workspace",
            "bundle",
            "caapi",
            "--out",
            bundle.to_str().unwrap(),
        ],
        &store,
    );
    let b: Value = serde_json::from_slice(&std::fs::read(&bundle).unwrap()).unwrap();
    let both = dir.path().join("both-cas.pem");
    std::fs::write(
        &both,
        format!(
            "{}\n{}",
            std::fs::read_to_string(&ws.ca_file).unwrap(),
            b["ca_pem"].as_str().unwrap()
        ),
    )
    .unwrap();
    let ws2 = Ws {
        ca_file: both,
        ..ws.clone()
    };
    let api = Api {
        ws: &ws2,
        port: svc.port,
    };
    let (status, again) = api.call("POST", "ca/rotate", Some(&admin), None);
    assert_eq!(status, 409, "{again}");
    schema.check("POST", "/ca/rotate", status, &again);

    let (status, refused) = api.call("POST", "ca/retire", Some(&admin), None);
    assert_eq!(status, 409, "{refused}");
    schema.check("POST", "/ca/retire", status, &refused);
    assert!(
        refused["message"].as_str().unwrap().contains(&idle_id),
        "the refusal names the sensor: {refused}"
    );
    let (status, _) = api.call(
        "POST",
        &format!("sensors/{idle_id}/decommission"),
        Some(&admin),
        Some(json!({ "reason": "never came back" })),
    );
    assert_eq!(status, 200);
    let (status, retired) = api.call("POST", "ca/retire", Some(&admin), None);
    assert_eq!(status, 200, "{retired}");
    schema.check("POST", "/ca/retire", status, &retired);
    assert_eq!(retired["ca_sha256"], body["ca_sha256"], "{retired}");
    assert_eq!(
        retired["retired"],
        json!([before["ca_sha256"]]),
        "{retired}"
    );

    let trail = cli_json(&["fleet", "audit", "caapi"], &store);
    let results: Vec<(String, String)> = trail["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor"] == "token:ci" && e["action"].as_str().unwrap().ends_with("_ca"))
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["result"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = [
        ("rotate_ca", "ok"),
        ("rotate_ca", "refused"),
        ("retire_ca", "refused"),
        ("retire_ca", "ok"),
    ]
    .iter()
    .map(|(a, r)| (a.to_string(), r.to_string()))
    .collect();
    assert_eq!(results, want, "{trail:#}");
}
