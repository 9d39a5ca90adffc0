//! The web console (docs/console.md) against the real service: accounts from the CLI (Argon2id,
//! never listed), sign-in through the form with its CSRF cookie, the session cookie's
//! attributes and the Content-Security-Policy, forms refused without their CSRF token, a viewer
//! who cannot act, another workspace's admin who sees nothing, throttling after five failures
//! (in the audit trail), logout ending the session for good. Plain HTTP (curl with a cookie
//! jar); the browser tests (chromium over WebDriver) are in `browser` below.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::*;

/// The password of every test account.
pub const PASSWORD: &str = "correct horse battery staple";

/// `uplink admin user add WS NAME --role ROLE`, the password on stdin.
pub fn add_user(
    data: &Path,
    ws: &str,
    name: &str,
    role: &str,
    password: &str,
) -> std::process::Output {
    let cmd = uplink_cmd(&[
        "admin",
        "user",
        "add",
        ws,
        name,
        "--role",
        role,
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    with_stdin(cmd, &format!("{password}\n"))
}

/// A curl "browser" for one console host: a cookie jar of its own.
struct Client {
    host: String,
    port: u16,
    ca: PathBuf,
    jar: PathBuf,
}

impl Client {
    fn new(dir: &Path, label: &str, ws: &Ws, port: u16) -> Client {
        Client {
            host: format!("{}.uplink.localhost", ws.name),
            port,
            ca: ws.ca_file.clone(),
            jar: dir.join(format!("{label}.cookies")),
        }
    }

    fn curl(&self, path: &str) -> Curl {
        Curl::new(&self.host, self.port, path)
            .arg("--cacert")
            .arg(&self.ca)
            .arg("-b")
            .arg(&self.jar)
            .arg("-c")
            .arg(&self.jar)
    }

    /// GET, with the response headers before the body.
    fn get(&self, path: &str) -> (u16, String) {
        self.curl(path).arg("-i").run()
    }

    /// POST a form (`fields` URL-encoded by curl), headers included.
    fn post(&self, path: &str, fields: &[(&str, &str)]) -> (u16, String) {
        let mut c = self.curl(path).arg("-i").args(["-X", "POST"]);
        if fields.is_empty() {
            c = c.args(["--data", ""]);
        }
        for (k, v) in fields {
            c = c.arg("--data-urlencode").arg(format!("{k}={v}"));
        }
        c.run()
    }

    /// The CSRF token of the page at `path` (its first form).
    fn csrf(&self, path: &str) -> String {
        let (status, page) = self.get(path);
        assert_eq!(status, 200, "{path}: {page}");
        csrf_of(&page).unwrap_or_else(|| panic!("{path} has no CSRF field: {page}"))
    }

    /// Signs in through the form; the status and answer.
    fn login(&self, user: &str, password: &str) -> (u16, String) {
        let csrf = self.csrf("/login");
        self.post(
            "/login",
            &[("csrf", &csrf), ("username", user), ("password", password)],
        )
    }

    /// The session cookie's value in the jar.
    fn session(&self) -> Option<String> {
        let jar = std::fs::read_to_string(&self.jar).unwrap_or_default();
        jar.lines()
            .filter(|l| l.contains("\tuplink_session\t"))
            .filter_map(|l| l.rsplit('\t').next())
            .find(|v| !v.is_empty())
            .map(str::to_owned)
    }
}

fn csrf_of(page: &str) -> Option<String> {
    let at = page.find(r#"name="csrf" value=""#)? + r#"name="csrf" value=""#.len();
    Some(page[at..].split('"').next()?.to_owned())
}

fn header<'a>(resp: &'a str, name: &str) -> Vec<&'a str> {
    resp.lines()
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .collect()
}

fn audit(data: &Path, ws: &str) -> Vec<Value> {
    let out = ok(
        uplink(&[
            "fleet",
            "audit",
            ws,
            "--data-dir",
            data.to_str().unwrap(),
            "--json",
        ]),
        "fleet audit",
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    v["entries"].as_array().unwrap().clone()
}

#[test]
fn accounts_are_added_listed_without_hashes_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    let svc = ServiceProc::start(&data);
    let _ws = create_workspace(&data, "usersws", svc.port);
    let store = ["--data-dir", data.to_str().unwrap()];
    let out = add_user(&data, "usersws", "alice", "admin", PASSWORD);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = add_user(&data, "usersws", "victor", "viewer", PASSWORD);
    assert!(out.status.success(), "{}", stderr(&out));
    // Refused, each saying why: a duplicate, a short password, a bad name, a bad role, no such
    // workspace.
    let dup = add_user(&data, "usersws", "alice", "viewer", PASSWORD);
    assert!(
        !dup.status.success() && stderr(&dup).contains("already has a console user \"alice\""),
        "{}",
        stderr(&dup)
    );
    let short = add_user(&data, "usersws", "carol", "admin", "short");
    assert!(
        !short.status.success() && stderr(&short).contains("at least 12"),
        "{}",
        stderr(&short)
    );
    let bad = add_user(&data, "usersws", "a b", "admin", PASSWORD);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    let role = add_user(&data, "usersws", "carol", "root", PASSWORD);
    assert_eq!(role.status.code(), Some(2), "{}", stderr(&role));
    let nows = add_user(&data, "nows", "carol", "admin", PASSWORD);
    assert!(
        !nows.status.success() && stderr(&nows).contains("nows"),
        "{}",
        stderr(&nows)
    );

    let list = ok(
        uplink(&[&["admin", "user", "list", "usersws", "--json"][..], &store].concat()),
        "user list",
    );
    let v: Value = serde_json::from_str(&list).unwrap();
    let names: Vec<(&str, &str)> = v["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["name"].as_str().unwrap(), u["role"].as_str().unwrap()))
        .collect();
    assert_eq!(names, [("alice", "admin"), ("victor", "viewer")], "{v}");
    let text = list
        + &ok(
            uplink(&[&["admin", "user", "list", "usersws"][..], &store].concat()),
            "user list",
        );
    assert!(
        !text.contains("argon2") && !text.contains(PASSWORD),
        "{text}"
    );
    // Stored as an Argon2id hash: the password is nowhere in the store's files.
    for entry in std::fs::read_dir(&data).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(PASSWORD),
            "the password is stored in clear"
        );
    }

    // Removing an account ends its sessions at once.
    let c = Client::new(dir.path(), "victor", &_ws, svc.port);
    assert_eq!(c.login("victor", PASSWORD).0, 303);
    assert_eq!(c.get("/sensors").0, 200);
    ok(
        uplink(
            &[
                &["admin", "user", "remove", "usersws", "victor"][..],
                &store,
            ]
            .concat(),
        ),
        "user remove",
    );
    let (status, resp) = c.get("/sensors");
    assert_eq!(
        (status, header(&resp, "location")),
        (303, vec!["/login"]),
        "{resp}"
    );
    let again = uplink(
        &[
            &["admin", "user", "remove", "usersws", "victor"][..],
            &store,
        ]
        .concat(),
    );
    assert!(
        !again.status.success() && stderr(&again).contains("no console user \"victor\""),
        "{}",
        stderr(&again)
    );
}

#[test]
fn sign_in_sessions_csrf_roles_workspaces_throttling_and_logout() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    // A long wait after five failures: the sixth attempt is refused however slow the machine.
    let svc = ServiceProc::start_with(&data, &["--console-login-wait", "10m"]);
    let a = create_workspace(&data, "conza", svc.port);
    let b = create_workspace(&data, "conzb", svc.port);
    for (ws, name, role) in [
        ("conza", "alice", "admin"),
        ("conza", "victor", "viewer"),
        ("conza", "mallory", "admin"),
        ("conzb", "bob", "admin"),
    ] {
        let out = add_user(&data, ws, name, role, PASSWORD);
        assert!(out.status.success(), "{}", stderr(&out));
    }

    // Not signed in: every page leads to the sign-in form; a form post is refused.
    let alice = Client::new(dir.path(), "alice", &a, svc.port);
    let (status, resp) = alice.get("/sensors");
    assert_eq!(
        (status, header(&resp, "location")),
        (303, vec!["/login"]),
        "{resp}"
    );
    assert_eq!(
        alice
            .post("/issues/iss-1/suppress", &[("reason", "x"), ("days", "1")])
            .0,
        403
    );

    // The sign-in form: its CSRF cookie and field, the policy on every answer.
    let (status, form) = alice.get("/login");
    assert_eq!(status, 200, "{form}");
    let csp = header(&form, "content-security-policy").join(" ");
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(
        form.contains(r#"name="username""#) && form.contains(r#"name="password""#),
        "{form}"
    );
    // Without the CSRF field, even the right password is refused.
    let (status, _) = alice.post("/login", &[("username", "alice"), ("password", PASSWORD)]);
    assert_eq!(status, 403);
    let (status, resp) = alice.login("alice", PASSWORD);
    assert_eq!(
        (status, header(&resp, "location")),
        (303, vec!["/sensors"]),
        "{resp}"
    );
    let cookie = header(&resp, "set-cookie")
        .into_iter()
        .find(|c| c.starts_with("uplink_session="))
        .unwrap_or_else(|| panic!("no session cookie: {resp}"))
        .to_owned();
    for attr in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{attr} in {cookie}");
    }
    assert!(!cookie.contains("Domain"), "host-only: {cookie}");
    let (status, page) = alice.get("/sensors");
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("alice") && page.contains(r#"id="sensors""#),
        "{page}"
    );
    let (status, css) = alice.get("/static/console.css");
    assert!(
        status == 200 && header(&css, "content-type")[0].starts_with("text/css"),
        "{css}"
    );

    // A state-changing form without its token, or with another's: 403, nothing done.
    let token = alice.csrf("/sensors");
    for fields in [
        vec![("reason", "x"), ("days", "1")],
        vec![("reason", "x"), ("days", "1"), ("csrf", "0000")],
    ] {
        let (status, resp) = alice.post("/issues/iss-1/suppress", &fields);
        assert_eq!(status, 403, "{resp}");
        assert!(resp.contains("security token"), "{resp}");
    }
    assert_eq!(
        alice.post("/logout", &[]).0,
        403,
        "logout needs its token too"
    );
    // With it, the request goes through (to "no such issue").
    assert_eq!(
        alice
            .post(
                "/issues/iss-1/suppress",
                &[("reason", "x"), ("days", "1"), ("csrf", &token)]
            )
            .0,
        404
    );

    // A viewer looks but cannot act.
    let victor = Client::new(dir.path(), "victor", &a, svc.port);
    assert_eq!(victor.login("victor", PASSWORD).0, 303);
    let (status, page) = victor.get("/sensors");
    assert!(status == 200 && page.contains("viewer"), "{page}");
    let vt = victor.csrf("/sensors");
    let (status, resp) = victor.post("/sensors/any/revoke", &[("reason", "x"), ("csrf", &vt)]);
    assert_eq!(status, 403, "{resp}");
    assert!(resp.contains("viewer"), "{resp}");

    // Another workspace's admin: not an account here, and their session is nothing here.
    let bob_here = Client::new(dir.path(), "bob-a", &a, svc.port);
    assert_eq!(bob_here.login("bob", PASSWORD).0, 401);
    let bob = Client::new(dir.path(), "bob", &b, svc.port);
    assert_eq!(bob.login("bob", PASSWORD).0, 303);
    let bob_secret = bob.session().expect("bob's session cookie");
    let (status, resp) = Curl::new(
        &format!("{}.uplink.localhost", a.name),
        svc.port,
        "/sensors",
    )
    .arg("--cacert")
    .arg(&a.ca_file)
    .arg("-i")
    .arg("-H")
    .arg(format!("Cookie: uplink_session={bob_secret}"))
    .run();
    assert_eq!(
        (status, header(&resp, "location")),
        (303, vec!["/login"]),
        "{resp}"
    );
    assert!(!resp.contains("conzb"), "{resp}");

    // Five failures for a name, then even the right password waits; the audit trail has it all.
    let m = Client::new(dir.path(), "mallory", &a, svc.port);
    for i in 1..=5 {
        let (status, resp) = m.login("mallory", "wrong password!");
        assert_eq!(status, 401, "attempt {i}: {resp}");
        assert!(resp.contains("Wrong user name or password"), "{resp}");
    }
    let (status, resp) = m.login("mallory", PASSWORD);
    assert_eq!(status, 429, "{resp}");
    assert!(
        resp.contains("Too many failed sign-ins") && !header(&resp, "retry-after").is_empty(),
        "{resp}"
    );
    let entries = audit(&data, "conza");
    let logins: Vec<(&str, &str)> = entries
        .iter()
        .filter(|e| e["action"] == "console_login" && e["actor"] == "mallory")
        .map(|e| (e["result"].as_str().unwrap(), e["detail"].as_str().unwrap()))
        .collect();
    assert_eq!(logins.len(), 6, "{entries:#?}");
    assert!(
        logins[..5].iter().all(|(r, _)| *r == "refused"),
        "{logins:?}"
    );
    assert!(logins[4].1.contains("5 failed in a row"), "{logins:?}");
    assert!(logins[5].1.starts_with("throttled"), "{logins:?}");
    assert!(
        entries.iter().any(|e| e["action"] == "console_login"
            && e["actor"] == "alice"
            && e["result"] == "ok"),
        "{entries:#?}"
    );
    // Another name is not throttled by mallory's failures.
    assert_eq!(
        Client::new(dir.path(), "alice2", &a, svc.port)
            .login("alice", PASSWORD)
            .0,
        303
    );

    // Logout ends the session in the store: the old cookie is refused afterwards.
    let secret = alice.session().expect("alice's session cookie");
    let (status, resp) = alice.post("/logout", &[("csrf", &token)]);
    assert_eq!(
        (status, header(&resp, "location")),
        (303, vec!["/login"]),
        "{resp}"
    );
    let (status, _) = Curl::new(
        &format!("{}.uplink.localhost", a.name),
        svc.port,
        "/sensors",
    )
    .arg("--cacert")
    .arg(&a.ca_file)
    .arg("-H")
    .arg(format!("Cookie: uplink_session={secret}"))
    .run();
    assert_eq!(status, 303, "a logged-out session is refused");
}

/// The browser tests: chromium over WebDriver against the real service and real sensors.
mod browser {
    use std::path::Path;
    use std::process::Child;
    use std::time::Duration;

    use fantoccini::Locator;
    use serde_json::Value;

    use super::{add_user, PASSWORD};
    use crate::support::browser::Browser;
    use crate::support::sensor::Sensor;
    use crate::support::squid::{Squid, SquidOptions};
    use crate::support::*;

    /// Evaluate often; a running sensor (1 s heartbeats) stays online however loaded the machine
    /// (late only after 31 s without contact), a stopped one is disconnected after the
    /// workspace's 10 s.
    /// 2 s buckets of report history: the charts have lines by the time the page is opened.
    const FLEET_FLAGS: [&str; 6] = [
        "--fleet-evaluate-every",
        "200ms",
        "--fleet-online-buffer",
        "30s",
        "--fleet-history-bucket",
        "2s",
    ];
    const SQUID_USER: &str = "consoleuser";
    const SQUID_PASSWORD: &str = "C0ns0le-Pa55";
    /// Bound of every wait (a loaded CI machine).
    const WAIT: u64 = 90;

    fn fleet_list(ws: &str, data: &Path) -> Vec<Value> {
        let out = ok(
            uplink(&[
                "fleet",
                "list",
                ws,
                "--data-dir",
                data.to_str().unwrap(),
                "--json",
            ]),
            "fleet list",
        );
        serde_json::from_str::<Value>(&out).unwrap()["sensors"]
            .as_array()
            .unwrap()
            .clone()
    }

    fn state_of(ws: &str, data: &Path, id: &str) -> String {
        fleet_list(ws, data)
            .iter()
            .find(|s| s["sensor_id"] == id)
            .and_then(|s| s["state"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    fn fast_sensor(dir: &Path, ws: &Ws, extra: &[&str]) -> Sensor {
        let mut args = vec!["--quiet"];
        args.extend_from_slice(extra);
        let sensor = Sensor::installed(dir, ws, &args);
        sensor.edit_config("heartbeat_secs = 60", "heartbeat_secs = 1");
        sensor
    }

    fn stop(child: Child) {
        signal(child.id(), "TERM");
        assert!(
            wait_exit(child, Duration::from_secs(30)).is_some(),
            "sensor run did not stop on SIGTERM"
        );
    }

    /// Kills a running sensor when the test ends, however it ends.
    struct Running(Option<Child>);
    impl Drop for Running {
        fn drop(&mut self) {
            if let Some(mut c) = self.0.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }

    #[test]
    fn sign_in_see_three_real_sensors_open_one_suppress_its_issue_and_sign_out() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("service");
        let svc = ServiceProc::start_with(&data, &FLEET_FLAGS);
        let ws = create_workspace(&data, "conbr", svc.port);
        let d = data.to_str().unwrap();
        ok(
            uplink(&[
                "workspace",
                "set",
                "conbr",
                "--disconnected-after",
                "10s",
                "--data-dir",
                d,
            ]),
            "workspace set",
        );
        let out = add_user(&data, "conbr", "alice", "admin", PASSWORD);
        assert!(out.status.success(), "{}", stderr(&out));

        // Three sensors in real states: one running (online), one stopped, one behind a Squid
        // whose password was changed under it.
        let squid = Squid::start(SquidOptions {
            basic: Some((SQUID_USER, SQUID_PASSWORD)),
            hosts: vec![ws.sensor_host.clone()],
            ..Default::default()
        });
        let healthy = fast_sensor(&dir.path().join("healthy"), &ws, &[]);
        let stopped = fast_sensor(&dir.path().join("stopped"), &ws, &[]);
        let proxied = fast_sensor(
            &dir.path().join("proxied"),
            &ws,
            &[
                "--proxy-url",
                &squid.url(),
                "--proxy-user",
                SQUID_USER,
                "--proxy-password",
                SQUID_PASSWORD,
            ],
        );
        let id = |s: &Sensor| s.status()["sensor_id"].as_str().unwrap().to_owned();
        let (hid, sid, pid) = (id(&healthy), id(&stopped), id(&proxied));
        let log = |n: &str| dir.path().join(format!("{n}.log"));
        let context = || {
            format!(
                "{:#?}\nservice log:\n{}\nsquid:\n{}",
                fleet_list("conbr", &data),
                svc.log(),
                squid.logs()
            )
        };
        let _h = Running(Some(healthy.spawn_run(&log("healthy"))));
        let s_run = stopped.spawn_run(&log("stopped"));
        let p_run = proxied.spawn_run(&log("proxied"));
        poll_until(
            "all three online",
            WAIT,
            || {
                fleet_list("conbr", &data)
                    .iter()
                    .filter(|s| s["state"] == "online" && s["route"].is_string())
                    .count()
                    == 3
            },
            context,
        );
        stop(s_run);
        // The proxy's password changes while the proxied sensor is away (a kept-alive tunnel
        // would outlive it): from then on it cannot get through, and keeps trying.
        stop(p_run);
        // Away first (disconnected after 10 s): Squid's memory of the accepted password (one
        // second) has expired by then.
        poll_until(
            "the proxied sensor away",
            WAIT,
            || state_of("conbr", &data, &pid) != "online",
            context,
        );
        squid.set_password(SQUID_USER, "Changed-Pa55");
        proxied.run_once_failing(3, "PROXY_AUTH_FAILED");
        let _p = Running(Some(proxied.spawn_run(&log("proxied"))));
        poll_until(
            "the stopped and the proxied sensor disconnected",
            WAIT,
            || {
                state_of("conbr", &data, &sid) == "disconnected"
                    && state_of("conbr", &data, &pid) == "disconnected"
            },
            context,
        );
        assert_eq!(state_of("conbr", &data, &hid), "online", "{}", context());

        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let b = Browser::start(1280).await;
            let base = format!("https://conbr.uplink.localhost:{}", svc.port);
            let c = &b.client;

            // Sign in.
            c.goto(&format!("{base}/sensors")).await.unwrap();
            b.wait_for("form.login").await;
            assert!(c.current_url().await.unwrap().path() == "/login");
            b.screenshot("login").await;
            b.sign_in("alice", PASSWORD).await;
            b.wait_for("table#sensors").await;

            // The three sensors, each in its real state.
            let rows = c
                .find_all(Locator::Css("#sensors tbody tr[data-sensor-id]"))
                .await
                .unwrap();
            let mut seen = Vec::new();
            for r in &rows {
                let id = r.attr("data-sensor-id").await.unwrap().unwrap_or_default();
                let state = r.attr("data-state").await.unwrap().unwrap_or_default();
                seen.push((id, state));
            }
            seen.sort();
            let mut want = vec![
                (hid.clone(), "online".to_owned()),
                (sid.clone(), "disconnected".to_owned()),
                (pid.clone(), "disconnected".to_owned()),
            ];
            want.sort();
            assert_eq!(seen, want, "{}", b.source().await);
            b.screenshot("sensors").await;

            // Filter by state: only the online one.
            c.goto(&format!("{base}/sensors?state=online"))
                .await
                .unwrap();
            b.wait_for("table#sensors").await;
            let rows = c
                .find_all(Locator::Css("#sensors tbody tr[data-sensor-id]"))
                .await
                .unwrap();
            assert_eq!(rows.len(), 1, "{}", b.source().await);

            // Open the proxied sensor: its route, its check command, its open issue.
            c.goto(&format!("{base}/sensors")).await.unwrap();
            b.wait_for("table#sensors").await;
            c.find(Locator::Css(&format!("tr[data-sensor-id='{pid}'] th a")))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
            let details = b.wait_for("dl#details").await;
            assert_eq!(
                details.attr("data-sensor-id").await.unwrap().as_deref(),
                Some(pid.as_str())
            );
            let cmd = c
                .find(Locator::Id("check-command"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            assert!(
                cmd.contains(&format!("--proxy-url http://127.0.0.1:{}", squid.port)),
                "{cmd}"
            );
            let issue = b
                .wait_for("li.issue[data-kind=disconnected][data-state=open]")
                .await;
            let issue_id = issue.attr("data-issue-id").await.unwrap().unwrap();
            // The four charts of its report history, over 24 hours and 7 days (in the screenshot).
            for key in ["backlog", "events_per_sec", "latency", "route_changes"] {
                for range in ["24h", "7d"] {
                    b.wait_for(&format!("svg[data-chart={key}][data-range=\"{range}\"]"))
                        .await;
                }
            }
            b.screenshot("sensor").await;
            c.execute("document.getElementById('charts').scrollIntoView()", vec![])
                .await
                .unwrap();
            b.screenshot("sensor-charts").await;

            // Suppress it, with a reason.
            let reason = c
                .find(Locator::Id(&format!("reason-{issue_id}")))
                .await
                .unwrap();
            reason
                .send_keys("proxy password rotation, ticket 42")
                .await
                .unwrap();
            issue
                .find(Locator::Css("button[type=submit]"))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
            b.wait_for(&format!(
                "li.issue[data-issue-id='{issue_id}'][data-state=suppressed]"
            ))
            .await;
            b.screenshot("sensor-suppressed").await;
            let out = ok(
                uplink(&[
                    "fleet",
                    "issues",
                    "conbr",
                    "--all",
                    "--data-dir",
                    d,
                    "--json",
                ]),
                "fleet issues",
            );
            let issues: Value = serde_json::from_str(&out).unwrap();
            let it = issues["issues"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| i["issue_id"] == issue_id.as_str())
                .cloned()
                .unwrap();
            assert_eq!(
                (
                    it["state"].as_str(),
                    it["suppress_reason"].as_str(),
                    it["suppressed_by"].as_str()
                ),
                (
                    Some("suppressed"),
                    Some("proxy password rotation, ticket 42"),
                    Some("console:alice")
                ),
                "{it}"
            );

            // Sign out: back to the form, and the pages are closed again.
            c.find(Locator::Css("header form[action='/logout'] button"))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
            b.wait_for("form.login").await;
            c.goto(&format!("{base}/sensors")).await.unwrap();
            b.wait_for("form.login").await;
            assert_eq!(c.current_url().await.unwrap().path(), "/login");
            b.close().await;
        });
    }

    #[test]
    fn download_the_bundle_install_from_it_regenerate_the_key_and_see_the_old_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("service");
        let svc = ServiceProc::start(&data);
        let ws = create_workspace(&data, "condep", svc.port);
        let out = add_user(&data, "condep", "alice", "admin", PASSWORD);
        assert!(out.status.success(), "{}", stderr(&out));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let b = Browser::start(1280).await;
            let base = format!("https://condep.uplink.localhost:{}", svc.port);
            let c = &b.client;
            c.goto(&format!("{base}/login")).await.unwrap();
            b.wait_for("form.login").await;
            b.sign_in("alice", PASSWORD).await;
            b.wait_for("table#sensors").await;

            // The Deploy page: download the bundle.
            c.find(Locator::Css("header nav a[href='/deploy']"))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
            b.wait_for("a#bundle").await;
            let ping = c
                .find(Locator::Id("ping-url"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            assert_eq!(
                ping,
                format!("{}/tri/sensor/api/ping", ws.sensor_url),
                "{}",
                b.source().await
            );
            c.find(Locator::Id("bundle"))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
            let bundle = b.downloads.join("condep.json");
            poll_until(
                "the bundle downloaded",
                WAIT,
                || {
                    std::fs::read(&bundle)
                        .is_ok_and(|j| serde_json::from_slice::<Value>(&j).is_ok())
                },
                || {
                    format!(
                        "{:?}",
                        std::fs::read_dir(&b.downloads)
                            .map(|d| d.map(|e| e.unwrap().path()).collect::<Vec<_>>())
                    )
                },
            );
            let downloaded: Value =
                serde_json::from_slice(&std::fs::read(&bundle).unwrap()).unwrap();
            assert_eq!(downloaded["access_key"], ws.access_key.as_str());
            // A sensor installs from it.
            let from_console = Ws {
                bundle_path: bundle.clone(),
                ..ws.clone()
            };
            let sensor = Sensor::installed(&dir.path().join("first"), &from_console, &[]);
            assert!(sensor.status()["sensor_id"].is_string());

            // The install command, built from the form: the password never in it.
            c.find(Locator::Id("d-proxy"))
                .await
                .unwrap()
                .send_keys("http://proxy.corp:3128")
                .await
                .unwrap();
            c.find(Locator::Id("d-user"))
                .await
                .unwrap()
                .send_keys(r"CORP\bob")
                .await
                .unwrap();
            c.find(Locator::Css("form[action='/deploy'] button"))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
            b.wait_for("a#bundle").await;
            let cmd = c
                .find(Locator::Id("install-command"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            assert!(
                cmd.contains("--proxy-url http://proxy.corp:3128")
                    && cmd.contains(r"--proxy-user 'CORP\bob'"),
                "{cmd}"
            );
            assert!(
                cmd.contains("UPLINK_PROXY_PASSWORD") && !cmd.contains("--proxy-password"),
                "{cmd}"
            );
            b.screenshot("deploy").await;

            // Regenerate the key: confirmed, then the old bundle no longer enrolls.
            c.find(Locator::Id("confirm-regenerate"))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
            c.find(Locator::Id("regenerate"))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
            b.wait_for("#regenerated").await;
            b.screenshot("deploy-regenerated").await;
            let mut n = 0;
            poll_until(
                "the old access key refused",
                WAIT,
                || {
                    n += 1;
                    let out =
                        Sensor::install(&dir.path().join(format!("old-{n}")), &from_console, &[]);
                    !out.status.success()
                        && format!("{}{}", stdout(&out), stderr(&out)).contains("ENROLL_DENIED")
                },
                || svc.log(),
            );
            let entries = ok(
                uplink(&[
                    "fleet",
                    "audit",
                    "condep",
                    "--data-dir",
                    data.to_str().unwrap(),
                    "--json",
                ]),
                "fleet audit",
            );
            assert!(
                entries.contains("rotate_access_key") && entries.contains("console:alice"),
                "{entries}"
            );
            // The new bundle, downloaded again, enrolls.
            std::fs::remove_file(&bundle).unwrap();
            c.find(Locator::Id("bundle"))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
            poll_until(
                "the new bundle downloaded",
                WAIT,
                || {
                    std::fs::read(&bundle)
                        .is_ok_and(|j| serde_json::from_slice::<Value>(&j).is_ok())
                },
                String::new,
            );
            let fresh: Value = serde_json::from_slice(&std::fs::read(&bundle).unwrap()).unwrap();
            assert_ne!(fresh["access_key"], ws.access_key.as_str());
            Sensor::installed(&dir.path().join("second"), &from_console, &[]);

            // The issues page answers (no issues yet).
            c.goto(&format!("{base}/issues")).await.unwrap();
            let count = b.wait_for("#count").await.text().await.unwrap();
            assert_eq!(count, "0 of 0 issues");
            b.close().await;
        });
    }

    #[test]
    fn every_page_passes_axe_the_main_flow_works_by_keyboard_and_at_a_phone_width() {
        use fantoccini::key::Key;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("service");
        let svc = ServiceProc::start_with(&data, &FLEET_FLAGS);
        let ws = create_workspace(&data, "conax", svc.port);
        let out = add_user(&data, "conax", "alice", "admin", PASSWORD);
        assert!(out.status.success(), "{}", stderr(&out));
        let sensor = fast_sensor(&dir.path().join("s"), &ws, &[]);
        ok(sensor.send("{\"kind\":\"login\"}\n"), "sensor send");
        ok(sensor.run_once(60), "sensor run --once");
        let sid = sensor.status()["sensor_id"].as_str().unwrap().to_owned();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let b = Browser::start(1280).await;
            let base = format!("https://conax.uplink.localhost:{}", svc.port);
            let c = &b.client;
            let mut found = Vec::new();
            c.goto(&format!("{base}/login")).await.unwrap();
            b.wait_for("form.login").await;
            found.extend(b.axe().await.into_iter().map(|v| format!("/login {v}")));

            // Keyboard only: the user name field has the focus; type, Tab, type, Enter.
            b.press("alice").await;
            b.press(&Key::Tab.to_string()).await;
            b.press(PASSWORD).await;
            b.press(&Key::Enter.to_string()).await;
            b.wait_for("table#sensors").await;
            // Tab through the page to the sensor's link, and open it with Enter.
            let mut reached = false;
            for _ in 0..80 {
                b.press(&Key::Tab.to_string()).await;
                let el = c.active_element().await.unwrap();
                if el
                    .attr("href")
                    .await
                    .unwrap()
                    .is_some_and(|h| h.starts_with("/sensors/"))
                {
                    reached = true;
                    break;
                }
            }
            assert!(
                reached,
                "no sensor link reached by Tab: {}",
                b.source().await
            );
            b.press(&Key::Enter.to_string()).await;
            let details = b.wait_for("dl#details").await;
            assert_eq!(
                details.attr("data-sensor-id").await.unwrap().as_deref(),
                Some(sid.as_str())
            );

            for path in [
                "/sensors",
                &format!("/sensors/{sid}"),
                "/issues",
                "/events",
                "/deploy",
                "/settings",
            ] {
                c.goto(&format!("{base}{path}")).await.unwrap();
                b.wait_for("main h1").await;
                found.extend(b.axe().await.into_iter().map(|v| format!("{path} {v}")));
            }
            assert!(
                found.is_empty(),
                "serious or critical accessibility violations:\n{}",
                found.join("\n")
            );

            // A phone's width: nothing wider than the screen but the table's own scroller.
            c.set_window_size(375, 800).await.unwrap();
            for path in ["/sensors", &format!("/sensors/{sid}"), "/deploy"] {
                c.goto(&format!("{base}{path}")).await.unwrap();
                b.wait_for("main h1").await;
                let fits = c
                    .execute(
                        "return document.documentElement.scrollWidth <= window.innerWidth + 1;",
                        vec![],
                    )
                    .await
                    .unwrap();
                assert_eq!(fits, Value::Bool(true), "{path} is wider than 375 px");
            }
            c.goto(&format!("{base}/sensors")).await.unwrap();
            b.wait_for("table#sensors").await;
            b.screenshot("sensors-narrow").await;
            b.close().await;
        });
    }
}

#[test]
fn events_page_ndjson_export_and_settings() {
    use crate::support::sensor::Sensor;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    let svc = ServiceProc::start(&data);
    let ws = create_workspace(&data, "conev", svc.port);
    let d = data.to_str().unwrap();
    for (name, role) in [("alice", "admin"), ("victor", "viewer")] {
        let out = add_user(&data, "conev", name, role, PASSWORD);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let sensor = Sensor::installed(&dir.path().join("sensor"), &ws, &["--quiet"]);
    let lines: String = (0..7)
        .map(|i| format!("{{\"kind\":\"login\",\"n\":{i}}}\n"))
        .collect();
    ok(sensor.send(&lines), "sensor send");
    ok(sensor.run_once(60), "sensor run --once");
    let id = sensor.status()["sensor_id"].as_str().unwrap().to_owned();

    let alice = Client::new(dir.path(), "alice", &ws, svc.port);
    assert_eq!(alice.login("alice", PASSWORD).0, 303);
    let (status, page) = alice.get(&format!("/events?sensor={id}&limit=5"));
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        page.matches("<tr data-sensor-id=").count(),
        5,
        "the 5 latest: {page}"
    );
    // The NDJSON download is `uplink events export`'s output, line for line.
    let (status, body) = alice.curl("/events.ndjson").run();
    assert_eq!(status, 200, "{body}");
    let cli = ok(
        uplink(&["events", "export", "conev", "--data-dir", d]),
        "events export",
    );
    let mut a: Vec<&str> = body.lines().collect();
    let mut b: Vec<&str> = cli.lines().collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);
    assert!(a.len() >= 7, "{body}");
    let (_, none) = alice.curl("/events.ndjson?since=2999-01-01T00:00").run();
    assert!(none.is_empty(), "{none}");

    // Settings: shown, changed by an admin through the admin API's rule, refused otherwise.
    let token = alice.csrf("/settings");
    let (status, resp) = alice.post(
        "/settings",
        &[
            ("csrf", &token),
            ("retention_days", "9"),
            ("disconnected_after_secs", "120"),
        ],
    );
    assert_eq!(
        (status, header(&resp, "location")),
        (303, vec!["/settings?saved=1"]),
        "{resp}"
    );
    let show = ok(
        uplink(&["workspace", "show", "conev", "--data-dir", d, "--json"]),
        "workspace show",
    );
    let v: Value = serde_json::from_str(&show).unwrap();
    assert_eq!(
        (
            v["retention_days"].as_u64(),
            v["disconnected_after_secs"].as_u64()
        ),
        (Some(9), Some(120)),
        "{v}"
    );
    // Audited: who, what changed.
    let trail: Value = serde_json::from_str(&ok(
        uplink(&["fleet", "audit", "conev", "--data-dir", d, "--json"]),
        "fleet audit",
    ))
    .unwrap();
    let e = trail["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "settings")
        .unwrap_or_else(|| panic!("{trail:#}"));
    assert_eq!(
        (e["actor"].as_str(), e["result"].as_str()),
        (Some("console:alice"), Some("ok")),
        "{e}"
    );
    assert!(
        e["detail"].as_str().unwrap().contains("retention_days=9"),
        "{e}"
    );
    let (status, resp) = alice.post("/settings", &[("csrf", &token), ("retention_days", "0")]);
    assert_eq!(status, 400, "{resp}");
    assert_eq!(alice.post("/settings", &[("retention_days", "3")]).0, 403);
    let (_, page) = alice.get("/settings");
    assert!(
        page.contains("alice") && page.contains("victor") && page.contains(r#"value="9""#),
        "{page}"
    );
    let victor = Client::new(dir.path(), "victor", &ws, svc.port);
    assert_eq!(victor.login("victor", PASSWORD).0, 303);
    let vt = victor.csrf("/settings");
    assert_eq!(
        victor
            .post("/settings", &[("csrf", &vt), ("retention_days", "3")])
            .0,
        403
    );
}

#[test]
fn console_hosts_serve_the_admins_certificate_and_sensor_hosts_the_workspace_ca() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_owned();
    // A company CA and a wildcard certificate for the console hosts.
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &p("corp.key"),
        "-out",
        &p("corp.pem"),
        "-days",
        "2",
        "-subj",
        "/CN=Corp Test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &p("console.key"),
        "-out",
        &p("console.csr"),
        "-subj",
        "/CN=*.uplink.localhost",
    ]);
    std::fs::write(p("ext.cnf"), "subjectAltName=DNS:*.uplink.localhost\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &p("console.csr"),
        "-CA",
        &p("corp.pem"),
        "-CAkey",
        &p("corp.key"),
        "-CAcreateserial",
        "-out",
        &p("console.pem"),
        "-days",
        "2",
        "-extfile",
        &p("ext.cnf"),
    ]);
    let data = dir.path().join("service");
    let svc = ServiceProc::start_with(
        &data,
        &[
            "--console-cert",
            &p("console.pem"),
            "--console-key",
            &p("console.key"),
        ],
    );
    let ws = create_workspace(&data, "conct", svc.port);
    let console = "conct.uplink.localhost";
    let (status, page) = Curl::new(console, svc.port, "/login")
        .arg("--cacert")
        .arg(p("corp.pem"))
        .run();
    assert_eq!(status, 200, "{page}");
    assert!(page.contains(r#"name="username""#), "{page}");
    // The workspace CA does not vouch for the console host any more…
    let (_, err) = Curl::new(console, svc.port, "/login")
        .arg("--cacert")
        .arg(&ws.ca_file)
        .run_fail();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    // …and the sensor host still answers with the workspace CA's certificate only.
    let (status, body) = Curl::new(&ws.sensor_host, svc.port, "/tri/sensor/api/ping")
        .arg("--cacert")
        .arg(&ws.ca_file)
        .run();
    assert_eq!((status, body.as_str()), (200, "Ok"));
    let (_, err) = Curl::new(&ws.sensor_host, svc.port, "/tri/sensor/api/ping")
        .arg("--cacert")
        .arg(p("corp.pem"))
        .run_fail();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    // A key that does not parse: refused at start, saying which flag.
    let bad = uplink(&[
        "service",
        "--data-dir",
        data.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--console-cert",
        &p("console.pem"),
        "--console-key",
        &p("ext.cnf"),
    ]);
    assert!(
        !bad.status.success() && stderr(&bad).contains("--console-cert"),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn sessions_end_at_their_lifetime_however_busy() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    let svc = ServiceProc::start_with(&data, &["--console-session-lifetime", "8s"]);
    let ws = create_workspace(&data, "conlt", svc.port);
    let out = add_user(&data, "conlt", "alice", "admin", PASSWORD);
    assert!(out.status.success(), "{}", stderr(&out));
    let alice = Client::new(dir.path(), "alice", &ws, svc.port);
    let (status, resp) = alice.login("alice", PASSWORD);
    assert_eq!(status, 303, "{resp}");
    let cookie = header(&resp, "set-cookie").join("\n");
    assert!(
        cookie.contains("uplink_session=") && cookie.contains("Max-Age=8;"),
        "{cookie}"
    );
    let secret = alice.session().expect("a session cookie");
    // Busy all along (a request every 50 ms), and still signed out once 8 s have passed (long
    // enough for the first request to come before, however loaded the machine): the
    // store's session is refused, not only the browser's cookie.
    let replay = || {
        Curl::new("conlt.uplink.localhost", svc.port, "/sensors")
            .arg("--cacert")
            .arg(&ws.ca_file)
            .arg("-H")
            .arg(format!("Cookie: uplink_session={secret}"))
            .run()
            .0
    };
    assert_eq!(replay(), 200);
    poll_until("the session ended", 60, || replay() == 303, || svc.log());
}

/// Two replicas on one PostgreSQL: an account made with `--database`, a sign-in on one replica
/// whose cookie works on the other, a CSRF token from one accepted by the other, failures counted
/// across both, and a logout on one that ends the session on both.
#[test]
fn replicas_on_postgresql_share_accounts_sessions_and_throttling() {
    use crate::postgres::{create_workspace_pg, Db, PgService};
    use crate::support::postgres::Cluster;
    let tmp = tempfile::tempdir().unwrap();
    let cluster = Cluster::start().unwrap();
    let db = Db::new(&cluster, tmp.path());
    let flags = ["--console-login-wait", "10m"];
    let r1 = PgService::start_with(&db, "127.0.0.1:0", &flags);
    let r2 = PgService::start_with(&db, "127.0.0.1:0", &flags);
    let ws = create_workspace_pg(&db, tmp.path(), "conpg", r1.port);
    let [a, b, c, d] = db.args();
    let out = with_stdin(
        uplink_cmd(&[
            "admin", "user", "add", "conpg", "alice", "--role", "admin", a, b, c, d,
        ]),
        &format!("{PASSWORD}\n"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let on1 = Client::new(tmp.path(), "r1", &ws, r1.port);
    assert_eq!(on1.login("alice", PASSWORD).0, 303);
    // The same cookie jar against the other replica.
    let on2 = Client {
        port: r2.port,
        ..Client::new(tmp.path(), "r1", &ws, r1.port)
    };
    let (status, page) = on2.get("/sensors");
    assert!(status == 200 && page.contains("alice"), "{status} {page}");
    let token = on1.csrf("/sensors");
    assert_eq!(
        on2.post(
            "/issues/none/suppress",
            &[("csrf", &token), ("reason", "x"), ("days", "1")]
        )
        .0,
        404,
        "replica 2 accepts replica 1's token (and finds no such issue)"
    );
    // Failures on either replica count together.
    let m1 = Client::new(tmp.path(), "m1", &ws, r1.port);
    let m2 = Client::new(tmp.path(), "m2", &ws, r2.port);
    for i in 0..5 {
        let m = if i % 2 == 0 { &m1 } else { &m2 };
        assert_eq!(m.login("alice", "wrong password!").0, 401);
    }
    assert_eq!(m2.login("alice", PASSWORD).0, 429);
    assert_eq!(m1.login("alice", PASSWORD).0, 429);
    // Logout on replica 2 ends the session on replica 1 (the old cookie replayed there).
    let secret = on1.session().expect("a session cookie");
    let replay = || {
        Curl::new("conpg.uplink.localhost", r1.port, "/sensors")
            .arg("--cacert")
            .arg(&ws.ca_file)
            .arg("-H")
            .arg(format!("Cookie: uplink_session={secret}"))
            .run()
            .0
    };
    assert_eq!(replay(), 200);
    assert_eq!(on2.post("/logout", &[("csrf", &token)]).0, 303);
    assert_eq!(replay(), 303);
}

/// `data-points` of the chart `key` over `range` on a sensor page (`None`: no such chart).
fn chart_points(page: &str, key: &str, range: &str) -> Option<usize> {
    let at = page.find(&format!(r#"id="chart-{key}-{range}""#))?;
    let rest = &page[at..];
    let tag = &rest[..rest.find('>')?];
    let n = tag.split("data-points=\"").nth(1)?;
    n[..n.find('"')?].parse().ok()
}

#[test]
fn the_sensor_page_charts_its_report_history() {
    use crate::support::sensor::Sensor;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    // 3 s buckets: a sensor reporting every second fills each (the newest report wins) and
    // adjacent buckets give events/s.
    let svc = ServiceProc::start_with(&data, &["--fleet-history-bucket", "3s"]);
    let ws = create_workspace(&data, "conch", svc.port);
    let out = add_user(&data, "conch", "alice", "admin", PASSWORD);
    assert!(out.status.success(), "{}", stderr(&out));
    let sensor = Sensor::installed(&dir.path().join("sensor"), &ws, &["--quiet"]);
    sensor.edit_config("heartbeat_secs = 60", "heartbeat_secs = 1");
    let log = dir.path().join("sensor.log");
    /// Kills the sensor when the test ends, however it ends.
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let run = Kill(sensor.spawn_run(&log));
    let alice = Client::new(dir.path(), "alice", &ws, svc.port);
    assert_eq!(alice.login("alice", PASSWORD).0, 303);
    let id = {
        let mut id = None;
        poll_until(
            "the sensor's id",
            90,
            || {
                id = sensor.status()["sensor_id"].as_str().map(str::to_owned);
                id.is_some()
            },
            || std::fs::read_to_string(&log).unwrap_or_default(),
        );
        id.unwrap()
    };
    // Heartbeats are queued events too: each delivered one raises the delivered counter, so
    // two adjacent buckets give a rate above zero.
    let page = std::cell::RefCell::new(String::new());
    poll_until(
        "two buckets of history and a rate",
        90,
        || {
            let (status, p) = alice.get(&format!("/sensors/{id}"));
            let ok = status == 200
                && chart_points(&p, "backlog", "24h").unwrap_or(0) >= 2
                && chart_points(&p, "events_per_sec", "24h").unwrap_or(0) >= 1;
            *page.borrow_mut() = p;
            ok
        },
        || {
            format!(
                "{}\n--- sensor log:\n{}",
                page.borrow(),
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        },
    );
    let page = page.into_inner();
    drop(run);
    for key in ["backlog", "events_per_sec", "latency", "route_changes"] {
        for range in ["24h", "7d"] {
            let n = chart_points(&page, key, range)
                .unwrap_or_else(|| panic!("no {key} chart over {range}: {page}"));
            assert!(n >= 1, "{key} over {range} has no point: {page}");
            assert!(
                page.contains(&format!(r#"data-chart="{key}" data-range="{range}""#)),
                "{page}"
            );
        }
    }
    assert!(
        page.contains("<polyline"),
        "a line joins adjacent buckets: {page}"
    );
    // The CSP still holds: no inline style or script came with the charts.
    assert!(
        !page.contains("<style") && !page.contains("style=\""),
        "{page}"
    );
    // An unknown sensor: no page, no chart.
    assert_eq!(alice.get("/sensors/no-such-sensor").0, 404);
}

#[test]
fn send_a_test_to_each_webhook_and_syslog_target() {
    use crate::support::receivers::{expected_signature, Receiver, Rsyslog};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    let svc = ServiceProc::start(&data);
    let ws = create_workspace(&data, "contest", svc.port);
    let d = data.to_str().unwrap();
    for (name, role) in [("alice", "admin"), ("victor", "viewer")] {
        let out = add_user(&data, "contest", name, role, PASSWORD);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let receiver = Receiver::http_on(crate::support::squid::free_port());
    let syslog_port = crate::support::squid::free_port();
    let rsyslog = Rsyslog::start(dir.path(), syslog_port);
    // A third target where nothing listens: its failure is shown, the others still go.
    let dead = format!(
        "http://127.0.0.1:{}/hook",
        crate::support::squid::free_port()
    );
    let secret = "s3cret-for-the-console-test-0123456789";
    let secret_file = dir.path().join("hook.secret");
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    let url = format!("http://127.0.0.1:{}/hook", receiver.port);
    let target = format!("tcp://127.0.0.1:{syslog_port}");
    ok(
        uplink(&[
            "workspace",
            "set",
            "contest",
            "--webhook",
            &url,
            "--webhook",
            &dead,
            "--webhook-secret-file",
            secret_file.to_str().unwrap(),
            "--syslog",
            &target,
            "--data-dir",
            d,
        ]),
        "workspace set",
    );

    let alice = Client::new(dir.path(), "alice", &ws, svc.port);
    assert_eq!(alice.login("alice", PASSWORD).0, 303);
    let (_, settings) = alice.get("/settings");
    assert!(settings.contains(r#"id="send-test""#), "{settings}");
    // Without its CSRF token: refused, nothing sent.
    assert_eq!(alice.post("/settings/test", &[]).0, 403);
    assert!(receiver.received().is_empty());
    let token = alice.csrf("/settings");
    let (status, page) = alice.post("/settings/test", &[("csrf", &token)]);
    assert_eq!(status, 200, "{page}");
    for (t, result) in [(&url, "ok"), (&target, "ok"), (&dead, "failed")] {
        assert!(
            page.contains(&format!(r#"data-target="{t}" data-result="{result}""#)),
            "{t} {result}: {page}"
        );
    }
    // The receiver got the test body, signed like every delivery (checked with openssl).
    let got = receiver.received();
    assert_eq!(got.len(), 1, "{got:?}");
    let body: Value = serde_json::from_str(&got[0].body).unwrap();
    assert_eq!(
        (body["event"].as_str(), body["workspace"].as_str()),
        (Some("test"), Some("contest")),
        "{body}"
    );
    let ts = got[0].header("x-uplink-timestamp").unwrap();
    assert_eq!(
        got[0].header("x-uplink-signature"),
        Some(expected_signature(secret, ts, &got[0].body).as_str())
    );
    // One RFC 5424 message to the syslog target (written to its file as it arrives).
    poll_until(
        "the syslog test message",
        60,
        || rsyslog.lines().iter().any(|l| l.contains("uplink - test ")),
        || format!("{:?}\n{}", rsyslog.lines(), rsyslog.context()),
    );
    // Audited, with each target's outcome.
    let entries = audit(&data, "contest");
    let e = entries
        .iter()
        .find(|e| e["action"] == "webhook_test")
        .unwrap_or_else(|| panic!("no webhook_test entry: {entries:?}"));
    assert_eq!(e["actor"], "console:alice", "{e}");
    assert_eq!(e["result"], "refused", "one target failed: {e}");
    assert!(!e.to_string().contains(secret), "{e}");
    // A viewer sees no button and cannot send.
    let victor = Client::new(dir.path(), "victor", &ws, svc.port);
    assert_eq!(victor.login("victor", PASSWORD).0, 303);
    let vt = victor.csrf("/settings");
    let (_, vs) = victor.get("/settings");
    assert!(!vs.contains(r#"id="send-test""#), "{vs}");
    assert_eq!(victor.post("/settings/test", &[("csrf", &vt)]).0, 403);
    assert_eq!(receiver.received().len(), 1);
}
