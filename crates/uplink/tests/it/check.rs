//! `uplink check` against real components: the test web servers with a test CA (healthy,
//! expired, wrong host), a closed port, Squid (open, Basic auth: missing and wrong credentials,
//! a refused upstream), mitmproxy intercepting TLS, dnsmasq in a network namespace for
//! NXDOMAIN, the uplink service (healthy workspace, foreign client certificate), and the MDE and
//! MDI profiles with every host mapped to loopback (`--connect-to`): nothing public is contacted.

use crate::support;

use std::path::Path;
use std::process::{Output, Stdio};
use std::sync::Arc;

use serde_json::Value;
use support::check::dns::Dns;
use support::check::mitm::Mitm;
use support::check::tls::{CertMode, TestCa, WebServer};
use support::sensor::Sensor;
use support::squid::{free_port, Squid, SquidOptions};
use support::*;

fn check_cmd(args: &[&str]) -> std::process::Command {
    let mut c = uplink_cmd(&["check"]);
    c.args(args);
    c.env_remove("UPLINK_CONFIG_DIR")
        .env_remove("UPLINK_PROXY_PASSWORD");
    c
}

fn run(args: &[&str]) -> (i32, Value, Output) {
    let out = check_cmd(args)
        .args(["--format", "json"])
        .stdin(Stdio::null())
        .output()
        .expect("run uplink check");
    let code = out.status.code().unwrap_or(-1);
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| {
        panic!(
            "uplink check {args:?} printed no JSON ({e}); exit {code}\nstdout:\n{}\nstderr:\n{}",
            stdout(&out),
            stderr(&out)
        )
    });
    (code, v, out)
}

/// `uplink check --url URL --ca CA --method cli --proxy PROXY EXTRA…` with JSON output.
fn run_cli(url: &str, ca: &str, proxy: &str, extra: &[&str]) -> (i32, Value, Output) {
    let mut args = vec![
        "--url", url, "--ca", ca, "--method", "cli", "--proxy", proxy,
    ];
    args.extend_from_slice(extra);
    run(&args)
}

/// The steps a method result walked, by name.
fn step_names(m: &Value) -> Vec<&str> {
    m["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect()
}

/// The one method result of the first URL for `method`.
#[track_caller]
fn method<'a>(v: &'a Value, method: &str) -> &'a Value {
    v["urls"][0]["methods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["method"] == method)
        .unwrap_or_else(|| panic!("no {method} in {v:#}"))
}

/// The failing step of a method result.
#[track_caller]
fn failing_step(m: &Value) -> &Value {
    m["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["ok"] == false)
        .unwrap_or_else(|| panic!("no failing step in {m:#}"))
}

#[track_caller]
fn assert_code(m: &Value, code: &str, step: &str, detail: &str) {
    assert_eq!(m["code"], code, "{m:#}");
    assert_eq!(m["ok"], false, "{m:#}");
    let s = failing_step(m);
    assert_eq!(s["step"], step, "{m:#}");
    assert!(
        s["detail"].as_str().unwrap().contains(detail),
        "detail lacks {detail:?}: {m:#}"
    );
    assert!(m["fix"].as_str().is_some_and(|f| f.len() > 20), "{m:#}");
}

fn ok_server(ca: &Arc<TestCa>) -> WebServer {
    WebServer::https(ca.clone(), CertMode::PerName, Arc::new(|_, _| 200))
}

#[test]
fn a_healthy_url_passes_and_a_closed_port_is_tcp_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Arc::new(TestCa::new(dir.path(), "uplink test CA"));
    let web = ok_server(&ca);
    let url = format!("https://web.uplink.localhost:{}/hello", web.port);
    let (code, v, _) = run(&[
        "--url",
        &url,
        "--ca",
        ca.pem_file.to_str().unwrap(),
        "--method",
        "direct,cli,wpad",
    ]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["ok"], true);
    let direct = method(&v, "direct");
    assert_eq!(direct["ok"], true, "{direct:#}");
    assert_eq!(direct["status"], 200);
    assert_eq!(direct["route"], "DIRECT");
    assert_eq!(direct["code"], Value::Null);
    let steps = step_names(direct);
    assert_eq!(steps, ["dns", "tcp", "tls", "http"]);
    assert_eq!(method(&v, "cli")["code"], "NOT_CONFIGURED");
    assert_eq!(method(&v, "wpad")["code"], "NOT_CONFIGURED");
    assert_eq!(method(&v, "wpad")["route"], Value::Null);

    let closed = free_port();
    let (code, v, _) = run(&[
        "--url",
        &format!("https://127.0.0.1:{closed}/"),
        "--method",
        "direct",
    ]);
    assert_eq!(code, 1, "{v:#}");
    assert_code(method(&v, "direct"), "TCP_REFUSED", "tcp", "refused");

    // The human table: OK or the code, and the failures with their fix.
    let out = check_cmd(&[
        "--url",
        &url,
        "--url",
        &format!("https://127.0.0.1:{closed}/"),
        "--ca",
        ca.pem_file.to_str().unwrap(),
        "--method",
        "direct",
    ])
    .output()
    .unwrap();
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with(&url) && l.contains("OK")),
        "{text}"
    );
    assert!(text.contains("TCP_REFUSED at tcp"), "{text}");
    assert!(text.contains("Result: FAIL"), "{text}");
}

#[test]
fn expired_and_wrong_host_certificates_and_an_unexpected_status() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Arc::new(TestCa::new(dir.path(), "uplink test CA"));
    let expired = WebServer::https(
        ca.clone(),
        CertMode::Expired(vec!["old.uplink.localhost".into()]),
        Arc::new(|_, _| 200),
    );
    let wrong = WebServer::https(
        ca.clone(),
        CertMode::Fixed(vec!["other.uplink.localhost".into()]),
        Arc::new(|_, _| 200),
    );
    let notfound = WebServer::https(ca.clone(), CertMode::PerName, Arc::new(|_, _| 404));
    let cafile = ca.pem_file.to_str().unwrap();
    let (code, v, _) = run(&[
        "--url",
        &format!("https://old.uplink.localhost:{}/", expired.port),
        "--ca",
        cafile,
        "--method",
        "direct",
    ]);
    assert_eq!(code, 1);
    assert_code(method(&v, "direct"), "TLS_EXPIRED", "tls", "expired");

    let (code, v, _) = run(&[
        "--url",
        &format!("https://web.uplink.localhost:{}/", wrong.port),
        "--ca",
        cafile,
        "--method",
        "direct",
    ]);
    assert_eq!(code, 1);
    assert_code(
        method(&v, "direct"),
        "TLS_HOSTNAME_MISMATCH",
        "tls",
        "does not name web.uplink.localhost",
    );

    let url = format!("https://web.uplink.localhost:{}/x", notfound.port);
    let (code, v, _) = run(&["--url", &url, "--ca", cafile, "--method", "direct"]);
    assert_eq!(code, 1);
    let m = method(&v, "direct");
    assert_code(m, "HTTP_UNEXPECTED_STATUS", "http", "got 404");
    assert_eq!(m["status"], 404);
    // --expect makes 404 the success.
    let (code, v, _) = run(&[
        "--url", &url, "--ca", cafile, "--method", "direct", "--expect", "404",
    ]);
    assert_eq!(code, 0, "{v:#}");
}

#[test]
fn squid_open_basic_auth_missing_and_wrong_credentials_and_a_refused_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Arc::new(TestCa::new(dir.path(), "uplink test CA"));
    let web = ok_server(&ca);
    let host = "web.check.test";
    let url = format!("https://{host}:{}/", web.port);
    let cafile = ca.pem_file.to_str().unwrap();

    let open = Squid::start(SquidOptions {
        hosts: vec![host.into()],
        ..Default::default()
    });
    let (code, v, _) = run_cli(&url, cafile, &open.url(), &[]);
    assert_eq!(code, 0, "{v:#}\n{}", open.logs());
    let m = method(&v, "cli");
    assert_eq!(m["route"], format!("PROXY 127.0.0.1:{}", open.port));
    let steps = step_names(m);
    assert_eq!(steps, ["dns", "tcp", "proxy_connect", "tls", "http"]);

    // Squid connects upstream and is refused: it answers CONNECT with an error status.
    let closed = free_port();
    let (_, v, _) = run_cli(
        &format!("https://{host}:{closed}/"),
        cafile,
        &open.url(),
        &[],
    );
    assert_code(
        method(&v, "cli"),
        "PROXY_UPSTREAM_FAILED",
        "proxy_connect",
        "503",
    );

    let password = "Sq1d-Pa55word!";
    let authed = Squid::start(SquidOptions {
        basic: Some(("bob", password)),
        hosts: vec![host.into()],
        ..Default::default()
    });
    let (code, v, _) = run_cli(&url, cafile, &authed.url(), &[]);
    assert_eq!(code, 1);
    assert_code(
        method(&v, "cli"),
        "PROXY_AUTH_REQUIRED",
        "proxy_auth",
        "Basic",
    );

    let (code, v, out) = run_cli(
        &url,
        cafile,
        &authed.url(),
        &[
            "--proxy-user",
            "bob",
            "--proxy-password",
            "not-the-password",
        ],
    );
    assert_eq!(code, 1);
    assert_code(method(&v, "cli"), "PROXY_AUTH_FAILED", "proxy_auth", "bob");
    assert!(
        !stdout(&out).contains("not-the-password") && !stderr(&out).contains("not-the-password")
    );

    let (code, v, _) = run_cli(
        &url,
        cafile,
        &authed.url(),
        &["--proxy-user", "bob", "--proxy-password", password],
    );
    assert_eq!(code, 0, "{v:#}\n{}", authed.logs());
    let m = method(&v, "cli");
    assert!(m["steps"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["step"] == "proxy_auth"
            && s["ok"] == true
            && s["detail"].as_str().unwrap().contains("Basic")));

    // The bundle: report, JSON, environment; the password appears nowhere in it.
    let bundle = dir.path().join("b.zip");
    let report = dir.path().join("r.txt");
    let out = check_cmd(&[
        "--url",
        &url,
        "--ca",
        cafile,
        "--method",
        "cli,direct",
        "--proxy",
        &format!("http://bob:{password}@127.0.0.1:{}", authed.port),
        "--report",
        report.to_str().unwrap(),
        "--bundle",
        bundle.to_str().unwrap(),
    ])
    .env(
        "https_proxy",
        format!("http://bob:{password}@127.0.0.1:{}", authed.port),
    )
    .output()
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let r = std::fs::read_to_string(&report).unwrap();
    assert!(r.contains(&format!("Testing URL : {url}")), "{r}");
    assert!(
        r.contains("- Command line proxy") && r.contains("Succeeded (200)"),
        "{r}"
    );
    assert!(!r.contains(password));
    let unzip = std::process::Command::new("unzip")
        .args(["-p"])
        .arg(&bundle)
        .output();
    let contents = match unzip {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        _ => {
            // No unzip: read the stored (uncompressed) entries' bytes directly.
            String::from_utf8_lossy(&std::fs::read(&bundle).unwrap()).into_owned()
        }
    };
    assert!(contents.contains("Testing URL"), "bundle has the report");
    assert!(contents.contains("\"urls\""), "bundle has the JSON");
    assert!(
        contents.contains("# /etc/resolv.conf"),
        "bundle has the environment"
    );
    assert!(
        contents.contains("https_proxy=http://bob:<redacted>@"),
        "{contents}"
    );
    assert!(
        !contents.contains(password),
        "the password leaked into the bundle"
    );
    let raw = std::fs::read(&bundle).unwrap();
    assert!(!raw
        .windows(password.len())
        .any(|w| w == password.as_bytes()));
}

#[test]
fn mitmproxy_interception_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Arc::new(TestCa::new(dir.path(), "uplink test CA"));
    let web = ok_server(&ca);
    let mitm = Mitm::start();
    let url = format!("https://web.uplink.localhost:{}/", web.port);
    let (code, v, _) = run(&[
        "--url",
        &url,
        "--ca",
        ca.pem_file.to_str().unwrap(),
        "--method",
        "direct,cli",
        "--proxy",
        &mitm.url(),
    ]);
    // Direct passes, so the URL passes; the proxy's route is intercepted.
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(method(&v, "direct")["ok"], true);
    let m = method(&v, "cli");
    assert_code(m, "TLS_INTERCEPTED", "tls", "mitmproxy");
    let detail = failing_step(m)["detail"].as_str().unwrap();
    assert!(
        detail.contains("exclude this host from SSL inspection"),
        "{detail}"
    );
    assert!(
        detail.contains("uplink test CA"),
        "names what was expected: {detail}"
    );

    // A profile-style expectation: the machine trusts mitmproxy's CA, but the issuer is not the
    // one expected: still interception.
    let (code, v, _) = run(&[
        "--url",
        &url,
        "--ca",
        mitm.ca_pem.to_str().unwrap(),
        "--expect-issuer",
        "uplink test CA",
        "--method",
        "cli",
        "--proxy",
        &mitm.url(),
    ]);
    assert_eq!(code, 1);
    assert_code(method(&v, "cli"), "TLS_INTERCEPTED", "tls", "mitmproxy");
}

#[test]
fn a_name_that_does_not_resolve_is_nxdomain() {
    let dns = Dns::start(&[("known.check.test", "127.0.0.1")]);
    let out = dns
        .ns
        .command(UPLINK)
        .args([
            "check",
            "--format",
            "json",
            "--method",
            "direct",
            "--timeout",
            "3",
            "--url",
            "https://missing.check.test/",
            "--url",
            "https://known.check.test:1/",
        ])
        .env_remove("UPLINK_CONFIG_DIR")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let v: Value = serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("{e}: {}{}", stdout(&out), stderr(&out)));
    assert_eq!(out.status.code(), Some(1));
    let m = &v["urls"][0]["methods"][0];
    assert_code(m, "DNS_NXDOMAIN", "dns", "missing.check.test");
    // The known name resolves through the same server (proving it answers), then is refused.
    let m = &v["urls"][1]["methods"][0];
    assert_eq!(m["steps"][0]["ok"], true, "{m:#}");
    assert_eq!(m["code"], "TCP_REFUSED", "{m:#}");
}

#[test]
fn the_uplink_service_healthy_workspace_and_a_foreign_client_certificate() {
    let data = tempfile::tempdir().unwrap();
    let svc = ServiceProc::start(data.path());
    let ws = create_workspace(data.path(), "contoso", svc.port);
    // By URL and CA.
    let (code, v, _) = run(&[
        "--workspace-url",
        &ws.sensor_url,
        "--ca",
        ws.ca_file.to_str().unwrap(),
        "--method",
        "direct",
    ]);
    assert_eq!(code, 0, "{v:#}\n{}", svc.log());
    assert_eq!(method(&v, "direct")["status"], 200);

    // From an installed sensor: its route, CA and client certificate.
    let sdir = tempfile::tempdir().unwrap();
    let sensor = Sensor::installed(sdir.path(), &ws, &[]);
    let (code, v, _) = run(&[
        "--config-dir",
        sensor.cfg(),
        "--method",
        "default,direct,named",
    ]);
    assert_eq!(code, 0, "{v:#}\n{}", svc.log());
    let m = method(&v, "default");
    assert_eq!(m["ok"], true, "{m:#}");
    assert!(m["steps"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["step"] == "client_cert" && s["ok"] == true));
    assert_eq!(method(&v, "named")["code"], "NOT_CONFIGURED");

    // A certificate from a CA the service does not know.
    let foreign = TestCa::new(sdir.path(), "foreign CA");
    let (cert, key) = foreign.leaf(&["sensor-x"], false);
    let cfg = Path::new(sensor.cfg());
    std::fs::write(cfg.join("client.pem"), cert).unwrap();
    std::fs::write(cfg.join("client.key"), key).unwrap();
    let (code, v, _) = run(&["--config-dir", sensor.cfg(), "--method", "direct"]);
    assert_eq!(code, 1, "{v:#}");
    assert_code(method(&v, "direct"), "MTLS_REJECTED", "client_cert", "");
}

/// The MDE table's status for each path, so a healthy stand-in answers what Microsoft's does.
fn mde_statuses() -> Vec<(String, String, u16)> {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../check/data/mde_urls.json"),
    )
    .unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let url = r["url"].as_str().unwrap();
            let rest = url.strip_prefix("https://").unwrap();
            let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
            (
                host.to_owned(),
                format!("/{path}"),
                r["expected_status_code"].as_u64().unwrap() as u16,
            )
        })
        .collect()
}

#[test]
fn mde_profile_on_loopback_stand_ins_passes_and_flags_a_wrong_issuer() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Arc::new(TestCa::new(dir.path(), "uplink test CA"));
    let table = mde_statuses();
    let web = WebServer::https(
        ca.clone(),
        CertMode::PerName,
        Arc::new(move |host, path| {
            table
                .iter()
                .find(|(h, p, _)| h == host && p == path)
                .map(|(_, _, s)| *s)
                .unwrap_or(599)
        }),
    );
    let connect_to = format!(":443:127.0.0.1:{}", web.port);
    let cafile = ca.pem_file.to_str().unwrap();
    let (code, v, _) = run(&[
        "--profile",
        "mde",
        "--region",
        "eu",
        "--ca",
        cafile,
        "--expect-issuer",
        "uplink test CA",
        "--connect-to",
        &connect_to,
        "--method",
        "direct,default,wpad",
    ]);
    assert_eq!(code, 0, "{v:#}");
    let urls = v["urls"].as_array().unwrap();
    assert!(urls.len() >= 9, "{}", urls.len());
    for u in urls {
        assert!(
            u["url"].as_str().unwrap().contains(".microsoft.com")
                || u["url"].as_str().unwrap().contains("windows"),
            "{u}"
        );
        let d = u["methods"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["method"] == "direct")
            .unwrap();
        assert_eq!(d["ok"], true, "{d:#}");
    }
    assert!(
        web.seen
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.starts_with("edr-weu.eu.endpoint.security.microsoft.com"))
            || !web.seen.lock().unwrap().is_empty()
    );

    // The profile's own issuers (Microsoft's): the test CA is "trusted" but not expected.
    let (code, v, _) = run(&[
        "--profile",
        "mde",
        "--region",
        "eu",
        "--ca",
        cafile,
        "--connect-to",
        &connect_to,
        "--method",
        "direct",
    ]);
    assert_eq!(code, 1, "{v:#}");
    let pinned = v["urls"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|u| u["methods"].as_array().unwrap())
        .find(|m| m["code"] == "TLS_INTERCEPTED")
        .unwrap_or_else(|| panic!("no TLS_INTERCEPTED in {v:#}"));
    assert!(failing_step(pinned)["detail"]
        .as_str()
        .unwrap()
        .contains("Microsoft Secure Server CA 2011"));
}

#[test]
fn mdi_profile_and_allowlist_verify_on_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Arc::new(TestCa::new(dir.path(), "uplink test CA"));
    let tls = WebServer::https(
        ca.clone(),
        CertMode::PerName,
        Arc::new(|_, path| {
            if path == "/tri/sensor/api/ping" {
                200
            } else {
                302
            }
        }),
    );
    let plain = WebServer::http(Arc::new(|_, _| 404));
    let a = format!(":443:127.0.0.1:{}", tls.port);
    let b = format!(":80:127.0.0.1:{}", plain.port);
    let cafile = ca.pem_file.to_str().unwrap();
    let (code, v, _) = run(&[
        "--profile",
        "mdi",
        "--workspace",
        "contoso",
        "--ca",
        cafile,
        "--connect-to",
        &a,
        "--connect-to",
        &b,
        "--method",
        "direct",
    ]);
    assert_eq!(code, 0, "{v:#}");
    let urls: Vec<&str> = v["urls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["url"].as_str().unwrap())
        .collect();
    assert!(
        urls.contains(&"https://contososensorapi.atp.azure.com/tri/sensor/api/ping"),
        "{urls:?}"
    );
    assert!(
        urls.iter()
            .any(|u| u.starts_with("http://crl.microsoft.com")),
        "{urls:?}"
    );

    // Missing --workspace is bad usage.
    let out = check_cmd(&["--profile", "mdi"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--workspace"));

    // allowlist verify: every host, direct and through the proxy (here: none configured).
    let out = uplink_cmd(&[
        "allowlist",
        "verify",
        "--profile",
        "mdi",
        "--workspace",
        "contoso",
        "--ca",
        cafile,
        "--connect-to",
        &a,
        "--connect-to",
        &b,
        "--format",
        "json",
    ])
    .env_remove("UPLINK_CONFIG_DIR")
    .output()
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let first = &v["urls"][0];
    let methods: Vec<&str> = first["methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["method"].as_str().unwrap())
        .collect();
    assert_eq!(methods, ["direct", "named", "cli"]);
}

#[test]
fn bad_usage_exits_2_and_help_documents_exit_codes() {
    for args in [
        &["--url", "ftp://x/"][..],
        &["--method", "teleport", "--url", "https://x.test/"],
        &["--workspace-url", "https://x.test"],
        &["--url", "https://x.test/", "--resolve", "nonsense"],
        &["--url", "https://x.test/", "--proxy-user", "bob"],
        &["--url", "https://x.test/", "--timeout", "0"],
        &[],
    ] {
        let out = check_cmd(args).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        assert!(stderr(&out).contains("error"), "{args:?}");
    }
    let out = check_cmd(&["--help"]).output().unwrap();
    let help = stdout(&out);
    assert!(
        help.contains("Exit codes: 0 every URL passed by at least one method"),
        "{help}"
    );
}

/// Squid with an ACL that denies CONNECT to one host: the harness's Squid, its configuration
/// given one `http_access deny` line, then `squid -k reconfigure`; ready when cache.log says it
/// accepts connections again.
#[test]
fn a_squid_acl_denying_the_host_is_proxy_connect_denied() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Arc::new(TestCa::new(dir.path(), "uplink test CA"));
    let web = ok_server(&ca);
    let (allowed, blocked) = ("web.check.test", "blocked.check.test");
    let squid = Squid::start(SquidOptions {
        hosts: vec![allowed.into(), blocked.into()],
        ..Default::default()
    });
    let conf = squid.dir().join("squid.conf");
    let text = std::fs::read_to_string(&conf).unwrap();
    let text = text.replacen(
        "http_access allow CONNECT",
        &format!("acl blocked dstdomain {blocked}\nhttp_access deny CONNECT blocked\nhttp_access allow CONNECT"),
        1,
    );
    std::fs::write(&conf, text).unwrap();
    let accepting = || {
        std::fs::read_to_string(squid.dir().join("cache.log"))
            .unwrap_or_default()
            .matches("Accepting HTTP Socket connections")
            .count()
    };
    let before = accepting();
    let out = std::process::Command::new("squid")
        .args(["-k", "reconfigure", "-f"])
        .arg(&conf)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "squid -k reconfigure: {}",
        stderr(&out)
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while accepting() <= before {
        assert!(
            std::time::Instant::now() < deadline,
            "squid did not reconfigure:\n{}",
            squid.logs()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let cafile = ca.pem_file.to_str().unwrap();
    let (code, v, _) = run(&[
        "--url",
        &format!("https://{blocked}:{}/", web.port),
        "--url",
        &format!("https://{allowed}:{}/", web.port),
        "--ca",
        cafile,
        "--method",
        "cli",
        "--proxy",
        &squid.url(),
    ]);
    assert_eq!(code, 1, "{v:#}");
    let m = &v["urls"][0]["methods"][0];
    assert_code(m, "PROXY_CONNECT_DENIED", "proxy_connect", "403");
    assert_eq!(v["urls"][1]["ok"], true, "{v:#}\n{}", squid.logs());
}

/// The `wpad` method probes the route of the script discovery finds now: option 252 in a lease
/// file names a PAC (served once on loopback) that sends the host through a real Squid.
#[test]
fn the_wpad_method_probes_through_the_proxy_the_discovered_script_names() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let ca = Arc::new(TestCa::new(dir.path(), "uplink test CA"));
    let web = ok_server(&ca);
    let host = "wpadweb.uplink.localhost";
    let squid = Squid::start(SquidOptions {
        hosts: vec![host.to_string()],
        ..Default::default()
    });
    let pac = format!(
        "function FindProxyForURL(url, host) {{ return host == '{host}' ? 'PROXY 127.0.0.1:{}' : 'DIRECT'; }}",
        squid.port
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let pac_url = format!("http://{}/wpad.dat", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        if let Some(Ok(mut c)) = listener.incoming().next() {
            let mut buf = [0u8; 4096];
            let _ = c.read(&mut buf);
            let _ = write!(
                c,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{pac}",
                pac.len()
            );
        }
    });
    let lease = dir.path().join("7");
    let hex: String = format!("{pac_url}\0")
        .bytes()
        .map(|b| format!("{b:02X}"))
        .collect();
    std::fs::write(&lease, format!("OPTION_252={hex}\n")).unwrap();
    let out = check_cmd(&[
        "--url",
        &format!("https://{host}:{}/", web.port),
        "--ca",
        ca.pem_file.to_str().unwrap(),
        "--method",
        "wpad",
        "--format",
        "json",
    ])
    .env("UPLINK_WPAD_LEASES", &lease)
    .stdin(Stdio::null())
    .output()
    .unwrap();
    let v: Value = serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(&out), stderr(&out)));
    let m = method(&v, "wpad");
    assert_eq!(m["ok"], true, "{v:#}\n{}", squid.logs());
    assert_eq!(
        m["route"],
        format!("PROXY 127.0.0.1:{}", squid.port),
        "{m:#}"
    );
    // The probe went through Squid (waited for: CI once read the log before Squid wrote it).
    squid.access_log_with(&format!("CONNECT {host}:{}", web.port), 30);
    assert_eq!(out.status.code(), Some(0));
}

/// `--proxy socks5://…`: the probe tunnels through a real SOCKS5 server (microsocks) with
/// username/password; a wrong password is PROXY_AUTH_FAILED at the proxy_auth step.
#[test]
fn a_socks5_proxy_on_the_command_line_is_probed_with_its_authentication() {
    use support::socks::Socks;
    let dir = tempfile::tempdir().unwrap();
    let ca = Arc::new(TestCa::new(dir.path(), "uplink test CA"));
    let web = ok_server(&ca);
    let socks = Socks::start(Some(("checker", "s0cks-pass")));
    // socks5:// (curl's meaning): the analyzer resolves the name (*.localhost is loopback).
    let url = format!("https://web.uplink.localhost:{}/", web.port);
    let proxy = |password: &str| format!("socks5://checker:{password}@127.0.0.1:{}", socks.port);
    let (code, v, _) = run_cli(
        &url,
        ca.pem_file.to_str().unwrap(),
        &proxy("s0cks-pass"),
        &[],
    );
    let m = method(&v, "cli");
    assert_eq!(code, 0, "{v:#}\n{}", socks.logs());
    assert_eq!(
        m["route"],
        format!("SOCKS5 127.0.0.1:{}", socks.port),
        "{m:#}"
    );
    let steps = step_names(m);
    assert!(
        steps.contains(&"proxy_connect") && steps.contains(&"proxy_auth"),
        "{m:#}"
    );

    let (code, v, out) = run_cli(&url, ca.pem_file.to_str().unwrap(), &proxy("wrong"), &[]);
    assert_eq!(code, 1, "{v:#}");
    assert_code(
        method(&v, "cli"),
        "PROXY_AUTH_FAILED",
        "proxy_auth",
        "rejected",
    );
    assert!(!stdout(&out).contains("wrong@") && !stderr(&out).contains("s0cks-pass"));
}

/// An HTTPS proxy (Squid's `https_port`, certificate from its own test CA): without
/// `--proxy-ca` its certificate is PROXY_TLS_UNTRUSTED at the proxy_connect step; with it the
/// probe goes through.
#[test]
fn an_https_proxy_is_trusted_through_proxy_ca_only() {
    use support::squid::SquidOptions;
    use support::tlsproxy::TlsProxy;
    let dir = tempfile::tempdir().unwrap();
    let ca = Arc::new(TestCa::new(dir.path(), "uplink test CA"));
    let web = ok_server(&ca);
    let proxy = TlsProxy::start(SquidOptions {
        hosts: vec!["web.uplink.localhost".into()],
        ..Default::default()
    });
    let url = format!("https://web.uplink.localhost:{}/", web.port);
    let proxy_url = proxy.url();
    let probe = |extra: &[&str]| run_cli(&url, ca.pem_file.to_str().unwrap(), &proxy_url, extra);
    let (code, v, _) = probe(&[]);
    assert_eq!(code, 1, "{v:#}");
    assert_code(
        method(&v, "cli"),
        "PROXY_TLS_UNTRUSTED",
        "proxy_connect",
        "--proxy-ca",
    );
    let (code, v, _) = probe(&["--proxy-ca", proxy.ca_file.to_str().unwrap()]);
    assert_eq!(code, 0, "{v:#}\n{}", proxy.squid.logs());
    assert_eq!(
        method(&v, "cli")["route"],
        format!("HTTPS 127.0.0.1:{}", proxy.port),
        "{v:#}"
    );
    let out = check_cmd(&[
        "--url",
        &url,
        "--method",
        "cli",
        "--proxy",
        &proxy.url(),
        "--proxy-ca",
        "/etc/hostname",
    ])
    .output()
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "a CA file that is none is a usage error"
    );
    assert!(stderr(&out).contains("--proxy-ca"), "{}", stderr(&out));
}

/// A proxy that answers every request with a fresh Digest 407 (`stale=true`, a new nonce): the
/// probe gives up after its bounded rounds with PROXY_AUTH_FAILED at the proxy_auth step, well
/// within its timeout.
#[test]
fn a_proxy_407_loop_ends_with_proxy_auth_failed() {
    let addr = support::http::stale_digest_proxy();
    let started = std::time::Instant::now();
    let (code, v, _) = run(&[
        "--url",
        "https://loop.uplink.localhost/",
        "--method",
        "cli",
        "--proxy",
        &format!("http://{addr}"),
        "--proxy-user",
        "alice",
        "--proxy-password",
        "l00p-pass",
        "--timeout",
        "10",
    ]);
    assert_eq!(code, 1, "{v:#}");
    assert_code(method(&v, "cli"), "PROXY_AUTH_FAILED", "proxy_auth", "");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

/// On a host of its own (a network namespace) whose packets to port 53 and 9 are dropped and
/// which has no route to 192.0.2.0/24: DNS_TIMEOUT, TCP_TIMEOUT and TCP_UNREACHABLE, each at its
/// step, within the probe timeout.
#[test]
fn timeouts_and_no_route_are_named_on_a_host_of_their_own() {
    support::require("nft");
    let ns = support::netns::Netns::new();
    ns.hosts(&[]);
    ns.resolver_at_host(5, 1);
    ns.nft("add table inet uplinktest; add chain inet uplinktest out { type filter hook output priority 0; }; \
             add rule inet uplinktest out udp dport 53 drop; add rule inet uplinktest out tcp dport 9 drop");
    let probe = |url: &str| -> Value {
        let mut cmd = ns.command(support::UPLINK);
        support::scrub_proxy_env(&mut cmd);
        let out = cmd
            .args([
                "check",
                "--url",
                url,
                "--method",
                "direct",
                "--timeout",
                "1",
                "--format",
                "json",
            ])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}\n{}",
            stdout(&out),
            stderr(&out)
        );
        serde_json::from_str(&stdout(&out)).unwrap()
    };
    let v = probe("https://nowhere.uplink.test/");
    assert_code(method(&v, "direct"), "DNS_TIMEOUT", "dns", "");
    let v = probe(&format!("https://{}:9/", ns.host_ip));
    assert_code(method(&v, "direct"), "TCP_TIMEOUT", "tcp", "");
    let v = probe("https://192.0.2.1/");
    assert_code(method(&v, "direct"), "TCP_UNREACHABLE", "tcp", "");
}
