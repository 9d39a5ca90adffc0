//! Proxy routes against real proxies: Squid and tinyproxy, on loopback and in network namespaces
//! (test hosts whose only way out is the proxy).

use crate::support;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::netns::Netns;
use support::sensor::Sensor;
use support::squid::{free_port, Squid, SquidOptions};
use support::*;

fn lines(range: std::ops::Range<u64>) -> String {
    range
        .map(|i| format!("{{\"kind\":\"probe\",\"n\":{i}}}\n"))
        .collect()
}

fn status(cfg: &Path) -> serde_json::Value {
    let out = uplink_cmd(&[
        "sensor",
        "status",
        "--json",
        "--config-dir",
        cfg.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    serde_json::from_str(&ok(out, "status")).unwrap()
}

/// Exactly the probes n = 0..n from one sensor, each once and in the order sent; besides them
/// only the heartbeats and inventories `sensor run` adds.
#[track_caller]
fn assert_exactly_once(data: &Path, ws: &str, n: u64) {
    let rows = exported(data, ws);
    support::sensor::assert_n_exactly_once(&rows, "probe", n);
}

#[test]
fn explain_without_a_sensor_follows_the_environment() {
    let run = |env: &[(&str, &str)], url: &str| -> serde_json::Value {
        let mut c = uplink_cmd(&["proxy", "explain", url, "--json"]);
        c.env_remove("UPLINK_CONFIG_DIR");
        for (k, v) in env {
            c.env(k, v);
        }
        serde_json::from_str(&ok(c.output().unwrap(), "proxy explain")).unwrap()
    };
    let v = run(
        &[
            ("HTTPS_PROXY", "http://proxy.corp.test:3128"),
            ("NO_PROXY", ".internal.test"),
        ],
        "https://api.example.test/x",
    );
    assert_eq!(
        v["route"],
        serde_json::json!(["PROXY proxy.corp.test:3128", "DIRECT"]),
        "{v}"
    );
    assert_eq!(v["mode"], "env");
    let env_source = v["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["source"] == "env")
        .unwrap();
    assert_eq!(env_source["used"], true);
    let v = run(
        &[
            ("HTTPS_PROXY", "http://proxy.corp.test:3128"),
            ("NO_PROXY", ".internal.test"),
        ],
        "https://svc.internal.test/",
    );
    assert_eq!(v["route"], serde_json::json!(["DIRECT"]), "{v}");
    let v = run(&[("http_proxy", "http://p:1")], "https://api.example.test/");
    assert_eq!(v["route"], serde_json::json!(["DIRECT"]), "{v}");
    assert!(v.to_string().contains("applies to http:// URLs"), "{v}");
    // A password in the environment is used but never printed.
    let v = run(
        &[("https_proxy", "http://CONTOSO%5Cu:Env-S3cret@p:8080")],
        "https://a.example.test/",
    );
    assert!(!v.to_string().contains("Env-S3cret"), "{v}");
    assert!(v.to_string().contains("as CONTOSO"), "{v}");
}

#[test]
fn an_unreachable_proxy_falls_back_to_direct_only_when_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    let svc = ServiceProc::start(&data);
    let ws = create_workspace(&data, "fallback", svc.port);
    let cfg = dir.path().join("sensor");
    let c = cfg.to_str().unwrap();
    let sensor = Sensor::installed(&cfg, &ws, &["--quiet"]);
    let dead = format!("http://127.0.0.1:{}", free_port());

    // Explicit proxy, default fallback (never): nothing leaves, nothing is lost.
    ok(
        uplink_cmd(&["sensor", "proxy", "set", "--config-dir", c, "--url", &dead])
            .output()
            .unwrap(),
        "proxy set",
    );
    ok(sensor.send(&lines(0..300)), "send");
    let run = sensor.run_once(2);
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    assert!(stderr(&run).contains("TCP_REFUSED"), "{}", stderr(&run));
    let st = status(&cfg);
    assert_eq!(
        st["queue"]["events"], 302,
        "300 sent, the run's heartbeat and inventory"
    );
    assert_eq!(st["last_error"]["code"], "TCP_REFUSED");
    assert!(
        exported(&data, "fallback").is_empty(),
        "the proxy was bypassed although fallback is never"
    );

    // Allow fallback: the same dead proxy, then DIRECT.
    ok(
        sensor.proxy(&["set", "--url", &dead, "--fallback", "direct"]),
        "proxy set",
    );
    let show = sensor.proxy_show();
    assert_eq!(
        show["route"],
        serde_json::json!([
            format!("PROXY {}", dead.trim_start_matches("http://")),
            "DIRECT"
        ])
    );
    let run = sensor.run_once(30);
    assert!(run.status.success(), "{}", stderr(&run));
    let st = status(&cfg);
    assert_eq!(st["route"], "DIRECT", "{st}");
    assert!(
        st["route_note"].as_str().unwrap().contains("TCP_REFUSED"),
        "{st}"
    );
    assert_exactly_once(&data, "fallback", 300);
}

#[test]
fn proxy_set_on_a_running_sensor_applies_at_the_next_connection() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    let svc = ServiceProc::start(&data);
    let ws = create_workspace(&data, "liveset", svc.port);
    let cfg = dir.path().join("sensor");
    let c = cfg.to_str().unwrap();
    let dead = format!("http://127.0.0.1:{}", free_port());
    let sensor = Sensor::installed(&cfg, &ws, &["--quiet"]);
    ok(
        uplink_cmd(&["sensor", "proxy", "set", "--config-dir", c, "--url", &dead])
            .output()
            .unwrap(),
        "set dead proxy",
    );
    let child = uplink_cmd(&["sensor", "run", "--config-dir", c, "--log-level", "warn"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    ok(sensor.send(&lines(0..400)), "send");
    // The running sensor reports the dead proxy...
    let deadline = Instant::now() + Duration::from_secs(20);
    while status(&cfg)["last_error"]["code"] != "TCP_REFUSED" {
        assert!(
            Instant::now() < deadline,
            "no TCP_REFUSED in {}",
            status(&cfg)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // ...and picks up a working proxy without a restart.
    let squid = Squid::start(SquidOptions {
        hosts: vec![ws.sensor_host.clone()],
        ..Default::default()
    });
    ok(sensor.proxy(&["set", "--url", &squid.url()]), "set squid");
    let deadline = Instant::now() + Duration::from_secs(60);
    while status(&cfg)["queue"]["events"] != 0 {
        assert!(
            Instant::now() < deadline,
            "queue not drained: {}\n{}",
            status(&cfg),
            squid.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    signal(child.id(), "TERM");
    assert!(
        wait_exit(child, Duration::from_secs(15)).is_some_and(|s| s.success()),
        "the sensor did not stop cleanly on SIGTERM"
    );
    assert_eq!(
        status(&cfg)["route"],
        format!("PROXY 127.0.0.1:{}", squid.port)
    );
    assert_exactly_once(&data, "liveset", 400);
}

/// `sensor proxy set` while batches keep flowing over a kept-alive connection through one Squid:
/// within seconds the running sensor drops that connection and uses the other Squid, `proxy
/// show` says the settings are in use, and every event arrives once.
#[test]
fn proxy_set_applies_within_seconds_even_to_a_kept_alive_connection() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    let svc = ServiceProc::start(&data);
    let ws = create_workspace(&data, "livekeep", svc.port);
    let opts = || SquidOptions {
        hosts: vec![ws.sensor_host.clone()],
        ..Default::default()
    };
    let (a, b) = (Squid::start(opts()), Squid::start(opts()));
    let cfg = dir.path().join("sensor");
    let sensor = Sensor::installed(&cfg, &ws, &["--quiet", "--proxy-url", &a.url()]);
    let child = uplink_cmd(&[
        "sensor",
        "run",
        "--config-dir",
        cfg.to_str().unwrap(),
        "--log-level",
        "warn",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    // Batches all the time: the connection through A never idles long enough to be closed.
    let mut sent = 0u64;
    let mut send = |n: u64| {
        ok(sensor.send(&lines(sent..sent + n)), "send");
        sent += n;
    };
    let route_a = format!("PROXY 127.0.0.1:{}", a.port);
    let route_b = format!("PROXY 127.0.0.1:{}", b.port);
    let deadline = Instant::now() + Duration::from_secs(30);
    // (Before the first connection, `sensor status` shows the planned route: wait for a batch
    // delivered through A.)
    while status(&cfg)["route"] != route_a.as_str() || status(&cfg)["last_success"].is_null() {
        assert!(
            Instant::now() < deadline,
            "never through A: {}",
            status(&cfg)
        );
        send(20);
        std::thread::sleep(Duration::from_millis(100));
    }
    ok(sensor.proxy(&["set", "--proxy-url", &b.url()]), "set B");
    let show: serde_json::Value =
        serde_json::from_str(&ok(sensor.proxy(&["show", "--json"]), "show")).unwrap();
    assert_eq!(
        show["route_in_use"],
        route_a.as_str(),
        "{show}\nstatus.json: {:?}",
        std::fs::read_to_string(cfg.join("status.json"))
    );
    let switched = Instant::now();
    while status(&cfg)["route"] != route_b.as_str() {
        assert!(
            switched.elapsed() < Duration::from_secs(5),
            "still {} after 5 s of batches on the kept-alive connection",
            status(&cfg)["route"]
        );
        send(20);
        std::thread::sleep(Duration::from_millis(100));
    }
    let show: serde_json::Value =
        serde_json::from_str(&ok(sensor.proxy(&["show", "--json"]), "show")).unwrap();
    assert_eq!(show["applied"], true, "{show}");
    assert_eq!(show["route_in_use"], route_b.as_str(), "{show}");
    // Everything sent arrives, once.
    let deadline = Instant::now() + Duration::from_secs(60);
    while status(&cfg)["queue"]["events"] != 0 {
        assert!(Instant::now() < deadline, "not drained: {}", status(&cfg));
        std::thread::sleep(Duration::from_millis(100));
    }
    signal(child.id(), "TERM");
    assert!(
        wait_exit(child, Duration::from_secs(15)).is_some_and(|s| s.success()),
        "the sensor did not stop cleanly on SIGTERM"
    );
    assert_exactly_once(&data, "livekeep", sent);
}

/// The sensor lives in a namespace whose only way out is the proxy: the service's name resolves
/// to the namespace's own loopback there, where nothing listens. Delivery proves the proxy path.
#[test]
fn in_a_namespace_whose_only_way_out_is_squid_nothing_is_lost_when_the_proxy_dies() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    let svc = ServiceProc::start(&data);
    let ws = create_workspace_in(&data, "nsproxy", svc.port, "uplink.test");
    let bundle = ws.bundle_path.to_str().unwrap().to_owned();
    let host = ws.sensor_host.as_str();
    let ns = Netns::new();
    ns.hosts(&[("127.0.0.1", host)]);
    let squid_opts = || SquidOptions {
        hosts: vec![host.into()],
        listen: Some(ns.host_ip.clone()),
        ..Default::default()
    };
    let squid = Squid::start(squid_opts());
    let cfg = dir.path().join("sensor");
    let c = cfg.to_str().unwrap();
    let in_ns = |args: &[&str]| {
        let mut cmd = ns.command(UPLINK);
        cmd.args(args);
        scrub_proxy_env(&mut cmd);
        cmd
    };
    let url = squid.url();
    ok(
        in_ns(&[
            "sensor",
            "install",
            "--bundle",
            &bundle,
            "--config-dir",
            c,
            "--proxy-url",
            &url,
            "--fallback",
            "direct",
            "--quiet",
        ])
        .output()
        .unwrap(),
        "install in ns",
    );
    ok(
        with_stdin(
            in_ns(&["sensor", "send", "--config-dir", c]),
            &lines(0..1000),
        ),
        "send",
    );
    let run = in_ns(&support::sensor::run_once_args(c, "30"))
        .output()
        .unwrap();
    assert!(run.status.success(), "{}\n{}", stderr(&run), squid.logs());
    assert_eq!(
        status(&cfg)["route"],
        format!("PROXY {}:{}", ns.host_ip, squid.port)
    );

    // Direct really is impossible from here.
    ok(
        in_ns(&["sensor", "proxy", "set", "--config-dir", c, "--direct"])
            .output()
            .unwrap(),
        "set direct",
    );
    ok(
        with_stdin(
            in_ns(&["sensor", "send", "--config-dir", c]),
            &lines(1000..1200),
        ),
        "send",
    );
    let run = in_ns(&support::sensor::run_once_args(c, "2"))
        .output()
        .unwrap();
    assert!(
        !run.status.success() && stderr(&run).contains("TCP_REFUSED"),
        "{}",
        stderr(&run)
    );

    // The proxy dies: the sensor tries it, then DIRECT (allowed), fails both, keeps everything.
    ok(
        in_ns(&[
            "sensor",
            "proxy",
            "set",
            "--config-dir",
            c,
            "--url",
            &url,
            "--fallback",
            "direct",
        ])
        .output()
        .unwrap(),
        "set squid",
    );
    drop(squid);
    let run = in_ns(&support::sensor::run_once_args(c, "2"))
        .output()
        .unwrap();
    assert!(!run.status.success(), "{}", stderr(&run));
    // 200 sent, and a heartbeat and an inventory from each of the two failed runs.
    assert_eq!(status(&cfg)["queue"]["events"], 204);

    // A proxy comes back: everything arrives, once.
    let squid = Squid::start(squid_opts());
    ok(
        in_ns(&[
            "sensor",
            "proxy",
            "set",
            "--config-dir",
            c,
            "--url",
            &squid.url(),
            "--fallback",
            "direct",
        ])
        .output()
        .unwrap(),
        "set new squid",
    );
    let run = in_ns(&support::sensor::run_once_args(c, "30"))
        .output()
        .unwrap();
    assert!(run.status.success(), "{}\n{}", stderr(&run), squid.logs());
    assert_exactly_once(&data, "nsproxy", 1200);
}

/// tinyproxy on another "host" (a namespace) that resolves the service's name itself.
#[test]
fn through_tinyproxy_on_another_host() {
    require("tinyproxy");
    let ns = Netns::new();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    // The service listens on the root side of the link, where the proxy host can reach it.
    let svc = ServiceProc::start_at(&data, &format!("{}:0", ns.host_ip));
    let ws = create_workspace_in(&data, "tiny", svc.port, "uplink.test");
    let host = ws.sensor_host.as_str();
    ns.hosts(&[(ns.host_ip.as_str(), host)]);
    let tp_dir = tempfile::tempdir().unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tp_dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let log = tp_dir.path().join("tinyproxy.log");
    let conf = tp_dir.path().join("tinyproxy.conf");
    let text = format!(
        "User nobody\nGroup nogroup\nPort 8888\nListen {}\nTimeout 60\nLogFile \"{}\"\nLogLevel Connect\nMaxClients 20\nAllow {}\n",
        ns.ns_ip,
        log.display(),
        ns.host_ip
    );
    std::fs::write(&conf, text).unwrap();
    let tinyproxy = ns
        .command("tinyproxy")
        .args(["-d", "-c", conf.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect((ns.ns_ip.as_str(), 8888)).is_err() {
        assert!(
            Instant::now() < deadline,
            "tinyproxy did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let cfg = dir.path().join("sensor");
    let c = cfg.to_str().unwrap();
    let proxy = format!("http://{}:8888", ns.ns_ip);
    let bundle = ws.bundle_path.to_str().unwrap();
    ok(
        uplink_cmd(&[
            "sensor",
            "install",
            "--bundle",
            bundle,
            "--config-dir",
            c,
            "--proxy-url",
            &proxy,
            "--quiet",
        ])
        .output()
        .unwrap(),
        "install through tinyproxy",
    );
    let sensor = Sensor { dir: cfg.clone() };
    ok(sensor.send(&lines(0..2000)), "send");
    let run = sensor.run_once(30);
    assert!(
        run.status.success(),
        "{}\n{}",
        stderr(&run),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert_exactly_once(&data, "tiny", 2000);
    signal(tinyproxy.id(), "TERM");
    let _ = wait_exit(tinyproxy, Duration::from_secs(10));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("CONNECT") && text.contains(host),
        "tinyproxy log shows no CONNECT to {host}:\n{text}"
    );
}

/// A real Windows export (Internet Settings strings with a proxy and a WinINet bypass list)
/// becomes an explicit proxy with WinINet's bypass rules; one with a PAC URL is refused, saying
/// why. No host named in the files is contacted: `proxy show` and `explain` are pure.
#[test]
fn windows_reg_exports_become_explicit_routes_with_wininet_bypass_rules() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    let svc = ServiceProc::start(&data);
    let ws = create_workspace(&data, "winreg", svc.port);
    let cfg = dir.path().join("sensor");
    let c = cfg.to_str().unwrap();
    let sensor = Sensor::installed(&cfg, &ws, &["--quiet"]);
    let fixtures = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/fixtures/winproxy/reg"
    );
    let export = format!("{fixtures}/marcvanandel_local-dev-env_proxy.reg");
    // The proxy account set before (as the installer's ProxyUserName would be) stays: a
    // Windows export names proxies, never their credentials.
    ok(
        sensor.proxy(&[
            "set",
            "--proxy-url",
            "http://old-proxy.test:3128",
            "--proxy-user",
            "KADASTER\\svc-sensor",
            "--proxy-password",
            "pw-kept-sealed",
        ]),
        "set an explicit proxy with an account",
    );
    ok(
        sensor.proxy(&["set", "--from-windows-reg", &export]),
        "import",
    );
    let show = sensor.proxy_show();
    assert_eq!(show["mode"], "explicit", "{show}");
    assert_eq!(show["user"], "KADASTER\\svc-sensor", "{show}");
    assert!(!show.to_string().contains("pw-kept-sealed"), "{show}");
    assert_eq!(show["bypass_syntax"], "wininet", "{show}");
    assert!(
        show["bypass"]
            .as_str()
            .is_some_and(|b| b.contains("*.cs.kadaster.nl") && b.contains("<local>")),
        "the WinINet bypass list is shown: {show}"
    );
    assert_eq!(
        show["url"], "http://www-proxy.cs.kadaster.nl:8082",
        "{show}"
    );
    assert_eq!(show["fallback"], "never");
    assert!(
        show["origin"]
            .as_str()
            .unwrap()
            .contains("internet-settings"),
        "{show}"
    );
    let explain = |url: &str| -> serde_json::Value {
        serde_json::from_str(&ok(
            uplink_cmd(&["proxy", "explain", url, "--json", "--config-dir", c])
                .output()
                .unwrap(),
            "explain",
        ))
        .unwrap()
    };
    for (url, route) in [
        (
            "https://api.example.test/",
            "PROXY www-proxy.cs.kadaster.nl:8082",
        ),
        ("https://build.cs.kadaster.nl/", "DIRECT"),
        ("https://intranet/", "DIRECT"),
        ("https://kadaster.local/", "DIRECT"),
    ] {
        assert_eq!(explain(url)["route"], serde_json::json!([route]), "{url}");
    }
}

/// `uplink winproxy encode` writes what regedit would; the sensor imports it and uploads
/// through the proxy it names.
#[test]
fn a_sensor_uploads_through_the_proxy_a_windows_export_names() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    let svc = ServiceProc::start(&data);
    let ws = create_workspace(&data, "winlive", svc.port);
    let squid = Squid::start(SquidOptions {
        hosts: vec![ws.sensor_host.clone()],
        ..Default::default()
    });
    let reg = dir.path().join("proxy.reg");
    let encoded = uplink_cmd(&[
        "winproxy",
        "encode",
        "--proxy",
        &format!("127.0.0.1:{}", squid.port),
        "--bypass",
        "<local>",
        "--format",
        "reg",
    ])
    .output()
    .unwrap();
    assert!(encoded.status.success(), "{}", stderr(&encoded));
    std::fs::write(&reg, &encoded.stdout).unwrap();
    let cfg = dir.path().join("sensor");
    let sensor = Sensor::installed(&cfg, &ws, &["--quiet"]);
    ok(
        sensor.proxy(&["set", "--from-windows-reg", reg.to_str().unwrap()]),
        "import",
    );
    ok(sensor.send(&lines(0..250)), "send");
    let run = sensor.run_once(30);
    assert!(run.status.success(), "{}\n{}", stderr(&run), squid.logs());
    assert_eq!(
        status(&cfg)["route"],
        format!("PROXY 127.0.0.1:{}", squid.port)
    );
    assert_exactly_once(&data, "winlive", 250);
}

/// Serves `body` to every HTTP request on a loopback port (for PAC-over-HTTP tests).
fn serve_http(body: String) -> u16 {
    support::http::serve(
        body,
        &[
            "Content-Type: application/x-ns-proxy-autoconfig",
            "Connection: close",
        ],
        usize::MAX,
    )
    .port()
}

/// A PAC script that sends the service through `proxy` only when it is given the URL the way
/// browsers give https URLs (scheme, host and port, no path), and to a dead proxy otherwise.
fn pac_script(service_host: &str, service_port: u16, proxy: &str, dead: u16) -> String {
    format!(
        "function FindProxyForURL(url, host) {{\n\
           if (url === 'https://{service_host}:{service_port}/' && dnsDomainIs(host, 'uplink.localhost'))\n\
             return 'PROXY {proxy}; DIRECT';\n\
           return 'PROXY 127.0.0.1:{dead}';\n\
         }}\n"
    )
}

#[test]
fn a_pac_file_routes_the_sensor_and_sees_only_scheme_host_and_port() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    let svc = ServiceProc::start(&data);
    let ws = create_workspace(&data, "pacfile", svc.port);
    let squid = Squid::start(SquidOptions {
        hosts: vec![ws.sensor_host.clone()],
        ..Default::default()
    });
    let pac = dir.path().join("corp.pac");
    std::fs::write(
        &pac,
        pac_script(
            &ws.sensor_host,
            svc.port,
            &format!("127.0.0.1:{}", squid.port),
            free_port(),
        ),
    )
    .unwrap();
    let cfg = dir.path().join("sensor");
    let c = cfg.to_str().unwrap();
    let sensor = Sensor::installed(&cfg, &ws, &["--quiet"]);
    ok(
        sensor.proxy(&["set", "--pac", pac.to_str().unwrap()]),
        "proxy set --pac",
    );
    let show = sensor.proxy_show();
    assert_eq!(show["mode"], "pac");
    assert_eq!(
        show["route"],
        serde_json::json!([format!("PROXY 127.0.0.1:{}", squid.port), "DIRECT"]),
        "{show}"
    );
    ok(sensor.send(&lines(0..300)), "send");
    let run = sensor.run_once(30);
    assert!(run.status.success(), "{}\n{}", stderr(&run), squid.logs());
    assert_eq!(
        status(&cfg)["route"],
        format!("PROXY 127.0.0.1:{}", squid.port),
        "the PAC's first choice was used"
    );
    assert_exactly_once(&data, "pacfile", 300);

    // A broken script is refused when it is set, with the JavaScript error.
    let broken = dir.path().join("broken.pac");
    std::fs::write(
        &broken,
        "function FindProxyForURL(url, host) {\n  return 'DIRECT'\n  }}\n",
    )
    .unwrap();
    let out = uplink_cmd(&[
        "sensor",
        "proxy",
        "set",
        "--config-dir",
        c,
        "--pac",
        broken.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("PAC script cannot be used"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_pac_served_over_http_and_named_by_a_windows_export_routes_the_sensor() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    let svc = ServiceProc::start(&data);
    let ws = create_workspace(&data, "pachttp", svc.port);
    let squid = Squid::start(SquidOptions {
        hosts: vec![ws.sensor_host.clone()],
        ..Default::default()
    });
    let http_port = serve_http(pac_script(
        &ws.sensor_host,
        svc.port,
        &format!("127.0.0.1:{}", squid.port),
        free_port(),
    ));
    let pac_url = format!("http://127.0.0.1:{http_port}/proxy.pac");
    // The Windows settings say: use this setup script (a manual proxy, too, which WinINet would
    // use only without the script).
    let dead = free_port();
    let encoded = uplink_cmd(&[
        "winproxy",
        "encode",
        "--pac-url",
        &pac_url,
        "--proxy",
        &format!("127.0.0.1:{dead}"),
        "--format",
        "reg",
    ])
    .output()
    .unwrap();
    assert!(encoded.status.success(), "{}", stderr(&encoded));
    let reg = dir.path().join("with-pac.reg");
    std::fs::write(&reg, &encoded.stdout).unwrap();
    let cfg = dir.path().join("sensor");
    let sensor = Sensor::installed(&cfg, &ws, &["--quiet"]);
    ok(
        sensor.proxy(&["set", "--from-windows-reg", reg.to_str().unwrap()]),
        "import",
    );
    let show = sensor.proxy_show();
    assert_eq!(show["mode"], "pac", "{show}");
    ok(sensor.send(&lines(0..200)), "send");
    let run = sensor.run_once(30);
    assert!(run.status.success(), "{}\n{}", stderr(&run), squid.logs());
    assert_eq!(
        status(&cfg)["route"],
        format!("PROXY 127.0.0.1:{}", squid.port)
    );
    assert_exactly_once(&data, "pachttp", 200);
}
