//! Route hardening (issue 15, items 5 and 6): proxies that came from discovery.
//!
//! - A WPAD script (DHCP option 252 in a lease, pointing at a PAC on a loopback HTTP server) names
//!   a real Squid that asks for Basic: the sensor sends it neither the user nor the password —
//!   Squid's own log of every `Proxy-Authorization` it received proves it — fails with
//!   `PROXY_CREDENTIALS_WITHHELD`, and `proxy explain` says why; allowing the host does not make
//!   Basic acceptable. The same log shows the credentials when an administrator names the proxy,
//!   so the log would have caught a leak.
//! - An allowed discovered proxy asking for Digest, or NTLM, still works.
//! - In `auto` mode, a WPAD proxy that answers 407 does not hold the events back: they go over
//!   DIRECT, and status (and the next heartbeat) says `DISCOVERED_PROXY_REFUSED`.

use crate::support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Output;

use support::sensor::{assert_n_exactly_once, Sensor};
use support::squid::{Squid, SquidOptions};
use support::{exported, ok, stderr, stdout, uplink_cmd};

const PROXY_USER: &str = "CONTOSO\\proxyuser";
const PROXY_PASSWORD: &str = "Wpad-Le4k-Pa55!";
/// Digest through Squid 5.7 needs a user without a backslash (see tests/proxyauth.rs).
const UPN: &str = "proxyuser@contoso.com";

/// Serves `body` to every HTTP request (cacheable for an hour). Returns the URL.
fn serve_pac(body: String) -> String {
    support::http::serve_pac(body, &["Cache-Control: max-age=3600"], usize::MAX)
}

/// A systemd-networkd lease in `dir` whose DHCP option 252 names a PAC that sends everything to
/// `proxy` (`host:port`). Returns the lease file, for `UPLINK_WPAD_LEASES`.
fn wpad_lease(dir: &Path, proxy: &str) -> PathBuf {
    let url = serve_pac(format!(
        "function FindProxyForURL(url, host) {{ return 'PROXY {proxy}'; }}\n"
    ));
    let hex: String = format!("{url}\0")
        .bytes()
        .map(|b| format!("{b:02X}"))
        .collect();
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("2");
    std::fs::write(&path, format!("ADDRESS=10.0.0.5\nOPTION_252={hex}\n")).unwrap();
    path
}

/// `uplink ARGS` with WPAD discovery reading `lease`.
fn with_lease(lease: &Path, args: &[&str]) -> Output {
    let mut cmd = uplink_cmd(args);
    cmd.env("UPLINK_WPAD_LEASES", lease)
        .stdin(std::process::Stdio::null());
    cmd.output().unwrap()
}

/// `uplink sensor proxy set ARGS` with WPAD discovery reading `lease`, and the proxy password in
/// the environment, as an administrator would pass it.
fn proxy_set(lease: &Path, args: &[&str]) -> Output {
    let mut cmd = uplink_cmd(&["sensor", "proxy", "set"]);
    cmd.args(args)
        .env("UPLINK_WPAD_LEASES", lease)
        .env("UPLINK_PROXY_PASSWORD", PROXY_PASSWORD)
        .stdin(std::process::Stdio::null());
    cmd.output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", stdout(o), stderr(o))
}

/// Squid configuration lines that log, for every request, the `Proxy-Authorization` header it
/// received and the user it authenticated, into `headers.log` in `dir` (made writable for
/// Squid's `proxy` user).
fn header_log(dir: &Path) -> (Vec<String>, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let log = dir.join("headers.log");
    (
        vec![
            "logformat authhdr %>rm %ru %>Hs user=%un auth=\"%>h{Proxy-Authorization}\"".into(),
            format!("access_log stdio:{} authhdr", log.display()),
        ],
        log,
    )
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn events(kind: &str, range: std::ops::Range<u64>) -> String {
    range
        .map(|i| format!("{{\"kind\":\"{kind}\",\"n\":{i}}}\n"))
        .collect()
}

fn base64(s: &str) -> String {
    use std::process::{Command, Stdio};
    let mut child = Command::new("base64")
        .args(["-w", "0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("base64");
    child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap()
}

/// Nothing that identifies the user or carries the password: not the user name (as given, or
/// as NTLM would send it, UTF-16 inside base64), not the password, not a Basic token.
#[track_caller]
fn no_credentials_in(what: &str, log: &str) {
    let basic = base64(&format!("{PROXY_USER}:{PROXY_PASSWORD}"));
    for needle in [
        "proxyuser",
        "CONTOSO",
        PROXY_PASSWORD,
        &basic,
        "Basic ",
        "NTLM ",
        "Digest ",
    ] {
        assert!(!log.contains(needle), "{needle:?} reached {what}:\n{log}");
    }
}

use support::service_with_workspace as setup;

/// `sensor run --once` with the lease, that must fail with `code` (exit 1, in its output and as
/// status's last error). Returns its output.
#[track_caller]
fn run_failing(sensor: &Sensor, lease: &Path, code: &str, squid: &Squid) -> String {
    let run = with_lease(lease, &support::sensor::run_once_args(sensor.cfg(), "5"));
    let out = text(&run);
    assert_eq!(run.status.code(), Some(1), "{out}\n{}", squid.logs());
    assert!(out.contains(code), "{code} not in:\n{out}");
    let status = sensor.status();
    assert_eq!(status["last_error"]["code"], code, "{status}");
    out
}

/// Item 5: a proxy named by WPAD gets no credentials (and Basic never), whatever it asks.
#[test]
fn a_wpad_proxy_asking_for_basic_gets_neither_user_nor_password() {
    let (dir, svc, ws) = setup("wpadcreds");
    let (extra_conf, headers) = header_log(&dir.path().join("squidlog"));
    let squid = Squid::start(SquidOptions {
        basic: Some((PROXY_USER, PROXY_PASSWORD)),
        hosts: vec![ws.sensor_host.clone()],
        extra_conf,
        ..Default::default()
    });
    let lease = wpad_lease(
        &dir.path().join("leases"),
        &format!("127.0.0.1:{}", squid.port),
    );
    let cfg = dir.path().join("sensor");
    let sensor = Sensor::installed(&cfg, &ws, &["--quiet"]);
    let c = sensor.cfg();
    let proxy = format!("PROXY 127.0.0.1:{}", squid.port);

    // The administrator configures WPAD with credentials (the password from the environment),
    // and no allow-list: the route names the proxy, and says the credentials are withheld.
    let set = proxy_set(
        &lease,
        &[
            "--wpad",
            "--user",
            PROXY_USER,
            "--fallback",
            "never",
            "--config-dir",
            c,
        ],
    );
    let set = ok(set, "proxy set --wpad");
    assert!(set.contains(&proxy), "{set}");
    assert!(set.contains("credentials withheld"), "{set}");
    let url = format!("https://{}:{}/", ws.sensor_host, svc.port);
    let explain = with_lease(
        &lease,
        &["proxy", "explain", &url, "--config-dir", c, "--json"],
    );
    let v: serde_json::Value = serde_json::from_str(&ok(explain, "proxy explain")).unwrap();
    assert_eq!(v["route"][0], proxy, "{v}");
    assert_eq!(v["credentials"][0]["proxy"], proxy, "{v}");
    let note = v["credentials"][0]["note"].as_str().unwrap_or_default();
    assert!(
        note.contains("withheld")
            && note.contains("WPAD")
            && note.contains("no credential allow-list"),
        "{v}"
    );
    let explain = ok(
        with_lease(&lease, &["proxy", "explain", &url, "--config-dir", c]),
        "proxy explain",
    );
    assert!(
        explain.contains(&format!("credentials {proxy}: credentials withheld")),
        "{explain}"
    );

    ok(sensor.send(&events("logon", 0..50)), "send");
    let out = run_failing(&sensor, &lease, "PROXY_CREDENTIALS_WITHHELD", &squid);
    assert!(out.contains("--credential-hosts"), "{out}");
    let log = read(&headers);
    assert!(
        log.contains(&format!("CONNECT {}:{} 407", ws.sensor_host, svc.port)),
        "Squid was asked, and asked for credentials:\n{log}\n{}",
        squid.logs()
    );
    no_credentials_in("Squid (no allow-list)", &log);
    no_credentials_in("Squid's access log", &squid.access_log());

    // Allowed: still never Basic. The allow-list alone changes nothing else.
    let set = proxy_set(
        &lease,
        &["--credential-hosts", "127.0.0.1", "--config-dir", c],
    );
    let set = ok(set, "proxy set --credential-hosts");
    assert!(set.contains("never Basic"), "{set}");
    let show = serde_json::from_str::<serde_json::Value>(&ok(
        with_lease(
            &lease,
            &["sensor", "proxy", "show", "--json", "--config-dir", c],
        ),
        "proxy show",
    ))
    .unwrap();
    assert_eq!(show["mode"], "wpad", "{show}");
    assert_eq!(show["fallback"], "never", "{show}");
    assert_eq!(show["user"], PROXY_USER, "{show}");
    assert_eq!(show["credential_hosts"], serde_json::json!(["127.0.0.1"]));
    let out = run_failing(&sensor, &lease, "PROXY_CREDENTIALS_WITHHELD", &squid);
    assert!(out.contains("Basic"), "{out}");
    let log = read(&headers);
    no_credentials_in("Squid (allowed, Basic only)", &log);
    assert!(!out.contains(PROXY_PASSWORD) && !set.contains(PROXY_PASSWORD));

    // The control: named by the administrator, the same proxy gets Basic, and the same log shows
    // it — so the log above would have shown a leak. Every event then arrives once.
    let before = log.len();
    let set = proxy_set(
        &lease,
        &[
            "--url",
            &squid.url(),
            "--user",
            PROXY_USER,
            "--config-dir",
            c,
        ],
    );
    ok(set, "proxy set --url");
    let run = sensor.run_once(30);
    assert!(run.status.success(), "{}\n{}", text(&run), squid.logs());
    assert_eq!(sensor.status()["proxy_auth"], "Basic");
    let after = read(&headers);
    let basic = base64(&format!("{PROXY_USER}:{PROXY_PASSWORD}"));
    assert!(
        after[before..].contains(&format!("auth=\"Basic {basic}\"")),
        "the header log records Basic credentials:\n{after}"
    );
    assert_n_exactly_once(
        &exported(&dir.path().join("service"), "wpadcreds"),
        "logon",
        50,
    );
}

/// Item 5: an allowed discovered proxy gets the credentials by Digest, or by NTLM; the allow-list
/// is kept when the source changes.
#[test]
fn an_allowed_wpad_proxy_gets_digest_or_ntlm_and_the_events_arrive() {
    let (dir, _svc, ws) = setup("wpadallowed");
    let (extra_conf, headers) = header_log(&dir.path().join("squidlog"));
    let digest = Squid::start(SquidOptions {
        digest: Some((UPN, PROXY_PASSWORD)),
        hosts: vec![ws.sensor_host.clone()],
        extra_conf,
        ..Default::default()
    });
    let lease = wpad_lease(
        &dir.path().join("leases"),
        &format!("127.0.0.1:{}", digest.port),
    );
    let cfg = dir.path().join("sensor");
    let sensor = Sensor::installed(&cfg, &ws, &["--quiet"]);
    let c = sensor.cfg();
    ok(
        proxy_set(
            &lease,
            &[
                "--wpad",
                "--user",
                UPN,
                "--fallback",
                "never",
                "--config-dir",
                c,
            ],
        ),
        "proxy set --wpad",
    );
    ok(sensor.send(&events("logon", 0..100)), "send");

    // Not allowed yet: nothing reaches Squid but the bare CONNECT.
    run_failing(&sensor, &lease, "PROXY_CREDENTIALS_WITHHELD", &digest);
    let log = read(&headers);
    assert!(log.contains("CONNECT"), "{log}");
    assert!(
        !log.contains("Digest") && !log.contains("proxyuser"),
        "{log}"
    );

    // Allowed (a wildcard that does not match, and the address that does).
    let bad = proxy_set(
        &lease,
        &["--credential-hosts", "proxy:3128", "--config-dir", c],
    );
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));
    assert!(text(&bad).contains("without a port"), "{}", text(&bad));
    ok(
        proxy_set(
            &lease,
            &[
                "--credential-hosts",
                "*.proxies.example,127.0.0.1",
                "--config-dir",
                c,
            ],
        ),
        "proxy set --credential-hosts",
    );
    let run = with_lease(&lease, &support::sensor::run_once_args(c, "30"));
    assert!(run.status.success(), "{}\n{}", text(&run), digest.logs());
    let status = sensor.status();
    assert_eq!(status["proxy_auth"], "Digest", "{status}");
    assert_eq!(
        status["route"],
        format!("PROXY 127.0.0.1:{}", digest.port),
        "{status}"
    );
    let log = read(&headers);
    assert!(
        log.contains(&format!("user={UPN}")) && log.contains("Digest username="),
        "{log}"
    );
    assert!(
        !log.contains(PROXY_PASSWORD),
        "Digest never sends the password: {log}"
    );
    let data = dir.path().join("service");
    assert_n_exactly_once(&exported(&data, "wpadallowed"), "logon", 100);

    // Another network names an NTLM proxy: `proxy set --wpad` again keeps the allow-list.
    let ntlm = Squid::start(SquidOptions {
        ntlm: true,
        hosts: vec![ws.sensor_host.clone()],
        ..Default::default()
    });
    let lease2 = wpad_lease(
        &dir.path().join("leases2"),
        &format!("127.0.0.1:{}", ntlm.port),
    );
    ok(
        proxy_set(
            &lease2,
            &[
                "--wpad",
                "--user",
                PROXY_USER,
                "--fallback",
                "never",
                "--config-dir",
                c,
            ],
        ),
        "proxy set --wpad (NTLM)",
    );
    let show: serde_json::Value = serde_json::from_str(&ok(
        with_lease(
            &lease2,
            &["sensor", "proxy", "show", "--json", "--config-dir", c],
        ),
        "proxy show",
    ))
    .unwrap();
    assert_eq!(
        show["credential_hosts"],
        serde_json::json!(["*.proxies.example", "127.0.0.1"]),
        "{show}"
    );
    ok(sensor.send(&events("logon", 100..200)), "send");
    let run = with_lease(&lease2, &support::sensor::run_once_args(c, "30"));
    assert!(run.status.success(), "{}\n{}", text(&run), ntlm.logs());
    assert_eq!(sensor.status()["proxy_auth"], "NTLM");
    assert!(
        ntlm.access_log().contains("proxyuser"),
        "{}",
        ntlm.access_log()
    );
    assert_n_exactly_once(&exported(&data, "wpadallowed"), "logon", 200);
}

/// Item 6: a default sensor (auto mode, fallback direct) whose network names, by WPAD, a proxy
/// that answers 407 delivers every event over DIRECT, and says why in status and heartbeats.
#[test]
fn a_refusing_wpad_proxy_does_not_hold_back_a_default_sensor() {
    let (dir, _svc, ws) = setup("wpadrefused");
    let squid = Squid::start(SquidOptions {
        basic: Some((PROXY_USER, PROXY_PASSWORD)),
        hosts: vec![ws.sensor_host.clone()],
        ..Default::default()
    });
    let lease = wpad_lease(
        &dir.path().join("leases"),
        &format!("127.0.0.1:{}", squid.port),
    );
    let cfg = dir.path().join("sensor");
    // Installed on that network: its connection check goes the same way.
    let install = with_lease(
        &lease,
        &[
            "sensor",
            "install",
            "--bundle",
            ws.bundle_path.to_str().unwrap(),
            "--config-dir",
            cfg.to_str().unwrap(),
            "--quiet",
        ],
    );
    ok(install, "sensor install");
    let sensor = Sensor { dir: cfg.clone() };
    let show: serde_json::Value = serde_json::from_str(&ok(
        with_lease(
            &lease,
            &[
                "sensor",
                "proxy",
                "show",
                "--json",
                "--config-dir",
                sensor.cfg(),
            ],
        ),
        "proxy show",
    ))
    .unwrap();
    assert_eq!(show["mode"], "auto", "{show}");
    assert_eq!(
        show["route"],
        serde_json::json!([format!("PROXY 127.0.0.1:{}", squid.port), "DIRECT"]),
        "{show}"
    );

    ok(sensor.send(&events("logon", 0..300)), "send");
    let run = with_lease(&lease, &support::sensor::run_once_args(sensor.cfg(), "30"));
    assert!(run.status.success(), "{}\n{}", text(&run), squid.logs());
    let status = sensor.status();
    assert_eq!(status["route"], "DIRECT", "{status}");
    assert_eq!(
        status["last_error"]["code"], "DISCOVERED_PROXY_REFUSED",
        "{status}"
    );
    let message = status["last_error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("127.0.0.1:{}", squid.port))
            && message.contains("PROXY_AUTH_REQUIRED")
            && message.contains("WPAD")
            && message.contains("DIRECT"),
        "{status}"
    );
    assert!(
        status["route_note"]
            .as_str()
            .is_some_and(|n| n.contains("refused") && n.ends_with("using DIRECT")),
        "{status}"
    );
    assert!(
        squid.access_log().contains("TCP_DENIED/407 "),
        "the proxy was asked, and refused:\n{}",
        squid.access_log()
    );
    let data = dir.path().join("service");
    assert_n_exactly_once(&exported(&data, "wpadrefused"), "logon", 300);

    // The next run's heartbeat carries the code (and the run goes around the proxy again).
    ok(sensor.send(&events("logon", 300..310)), "send");
    let run = with_lease(&lease, &support::sensor::run_once_args(sensor.cfg(), "30"));
    assert!(run.status.success(), "{}\n{}", text(&run), squid.logs());
    let rows = exported(&data, "wpadrefused");
    assert_n_exactly_once(&rows, "logon", 310);
    let last_heartbeat = rows
        .iter()
        .filter(|(_, _, v)| v["kind"] == "heartbeat")
        .max_by_key(|(_, seq, _)| *seq)
        .map(|(_, _, v)| v["event"].clone())
        .expect("a heartbeat");
    assert_eq!(
        last_heartbeat["last_error_code"], "DISCOVERED_PROXY_REFUSED",
        "{last_heartbeat}"
    );
    assert_eq!(last_heartbeat["route"], "DIRECT", "{last_heartbeat}");
    assert_eq!(
        sensor.status()["last_error"]["code"],
        "DISCOVERED_PROXY_REFUSED"
    );
}
