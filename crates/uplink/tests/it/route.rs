//! The route layer (`crates/route`) seen from the binary: `uplink check` walks a route as the
//! sensor does — a blackholed proxy first in a PAC's answer costs that candidate's share of the
//! timeout and the next candidate (DIRECT) is tried, each attempt reported; a PAC that cannot be
//! fetched is the pac method's own code while the other methods still run.

use crate::support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::daemon::Daemon;
use support::*;

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

/// The routes and codes of a method's attempts.
fn attempts(m: &Value) -> Vec<(String, Value)> {
    m["attempts"]
        .as_array()
        .unwrap_or_else(|| panic!("no attempts in {m:#}"))
        .iter()
        .map(|a| (a["route"].as_str().unwrap().to_owned(), a["code"].clone()))
        .collect()
}

/// A plain HTTP server on the namespace's own loopback (python's http.server on port 0).
fn http_server_in(ns: &support::netns::Netns) -> (Daemon, u16) {
    support::require("python3");
    let mut cmd = ns.command("python3");
    cmd.args(["-u", "-m", "http.server", "0", "--bind", "127.0.0.1"]);
    let server = Daemon::spawn("python3 -m http.server", cmd);
    server.expect("Serving HTTP on", Duration::from_secs(10));
    let log = server.log();
    let port = log
        .split(" port ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {log:?}"));
    (server, port)
}

/// python's http.server on `[::1]`, port 0.
fn http_server_on_ipv6_loopback() -> (Daemon, u16) {
    support::require("python3");
    let mut cmd = std::process::Command::new("python3");
    cmd.args(["-u", "-m", "http.server", "0", "--bind", "::1"]);
    let server = Daemon::spawn("python3 -m http.server --bind ::1", cmd);
    server.expect("Serving HTTP on", Duration::from_secs(10));
    let log = server.log();
    let port = log
        .split(" port ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {log:?}"));
    (server, port)
}

/// IPv6 literals end to end: `check --url http://[::1]:PORT/` directly, through
/// `--proxy-url socks5h://[::1]:PORT` (microsocks on ::1), and through a PAC naming
/// `PROXY [::1]:<closed>; SOCKS5 [::1]:PORT` — the closed one refused, the SOCKS proxy used.
#[test]
fn ipv6_literals_in_urls_proxies_and_pac_answers() {
    let (_server, port) = http_server_on_ipv6_loopback();
    let socks = support::socks::Socks::start_on("::1", None);
    let closed = support::squid::free_port_on("::1");
    let dir = tempfile::tempdir().unwrap();
    let pac = dir.path().join("v6.pac");
    std::fs::write(
        &pac,
        format!(
            "function FindProxyForURL(url, host) {{ return host == '::1' ? 'PROXY [::1]:{closed}; SOCKS5 [::1]:{}' : 'DIRECT'; }}\n",
            socks.port
        ),
    )
    .unwrap();
    let url = format!("http://[::1]:{port}/");
    let proxy = format!("socks5h://[::1]:{}", socks.port);
    let out = uplink_cmd(&[
        "check",
        "--url",
        &url,
        "--method",
        "direct,cli,pac",
        "--proxy-url",
        &proxy,
        "--pac",
        pac.to_str().unwrap(),
        "--timeout",
        "5",
        "--format",
        "json",
    ])
    .env_remove("UPLINK_CONFIG_DIR")
    .stdin(Stdio::null())
    .output()
    .unwrap();
    let v: Value = serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("no JSON ({e}): {}\n{}", stdout(&out), stderr(&out)));
    assert_eq!(out.status.code(), Some(0), "{v:#}\n{}", stderr(&out));
    assert_eq!(v["urls"][0]["url"], url, "{v:#}");
    for name in ["direct", "cli", "pac"] {
        let m = method(&v, name);
        assert_eq!(m["ok"], true, "{name}: {m:#}");
        assert_eq!(m["status"], 200, "{name}: {m:#}");
    }
    let direct = method(&v, "direct");
    assert!(
        direct["steps"][1]["detail"]
            .as_str()
            .unwrap()
            .contains("[::1]"),
        "{direct:#}"
    );
    let via_socks = format!("[::1]:{}", socks.port);
    assert!(
        method(&v, "cli")["route"]
            .as_str()
            .unwrap()
            .ends_with(&via_socks),
        "{v:#}"
    );
    let pac_result = method(&v, "pac");
    let tried = attempts(pac_result);
    assert_eq!(tried.len(), 2, "{pac_result:#}");
    assert_eq!(
        tried[0],
        (format!("PROXY [::1]:{closed}"), Value::from("TCP_REFUSED"))
    );
    assert!(tried[1].0.ends_with(&via_socks), "{pac_result:#}");
}

/// A PAC answering `PROXY <blackholed>; DIRECT` (issue 17, item 1): `check --method pac` and
/// `default` (a sensor in pac mode) try the proxy for their share of the timeout, then reach the
/// service over DIRECT; both attempts are in the JSON and the route that worked is named.
#[test]
fn a_blackholed_pac_proxy_falls_back_to_direct() {
    support::require("nft");
    let ns = support::netns::Netns::new();
    ns.hosts(&[]);
    ns.nft("add table inet uplinkroute; add chain inet uplinkroute out { type filter hook output priority 0; }; \
             add rule inet uplinkroute out tcp dport 9 drop");
    let (_server, port) = http_server_in(&ns);

    let dir = tempfile::tempdir().unwrap();
    let pac = dir.path().join("blackhole.pac");
    std::fs::write(
        &pac,
        format!(
            "function FindProxyForURL(url, host) {{ return 'PROXY {}:9; DIRECT'; }}\n",
            ns.host_ip
        ),
    )
    .unwrap();
    // A sensor's configuration in pac mode, for the `default` method (no service needed: the
    // target is --url, the sensor only lends its route).
    let config_dir = dir.path().join("sensor");
    std::fs::create_dir_all(&config_dir).unwrap();
    std::fs::write(
        config_dir.join("sensor.toml"),
        format!(
            "format = 1\nworkspace = \"w\"\nsensor_id = \"s\"\nsensor_url = \"https://wsensorapi.uplink.test\"\n\n[proxy]\nmode = \"pac\"\npac = \"{}\"\n",
            pac.display()
        ),
    )
    .unwrap();

    let url = format!("http://127.0.0.1:{port}/");
    let mut cmd = ns.command(support::UPLINK);
    support::scrub_proxy_env(&mut cmd);
    let started = Instant::now();
    let out = cmd
        .args([
            "check",
            "--config-dir",
            config_dir.to_str().unwrap(),
            "--url",
            &url,
            "--method",
            "pac,default",
            "--pac",
            pac.to_str().unwrap(),
            "--timeout",
            "4",
            "--format",
            "json",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let took = started.elapsed();
    let v: Value = serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("no JSON ({e}): {}\n{}", stdout(&out), stderr(&out)));
    assert_eq!(out.status.code(), Some(0), "{v:#}\n{}", stderr(&out));
    let proxy = format!("PROXY {}:9", ns.host_ip);
    for name in ["pac", "default"] {
        let m = method(&v, name);
        assert_eq!(m["ok"], true, "{name}: {m:#}");
        assert_eq!(m["route"], "DIRECT", "{name}: {m:#}");
        assert_eq!(
            attempts(m),
            vec![
                (proxy.clone(), Value::from("TCP_TIMEOUT")),
                ("DIRECT".to_owned(), Value::Null)
            ],
            "{name}: {m:#}"
        );
        assert_eq!(m["status"], 200, "{name}: {m:#}");
    }
    // Both probes ran concurrently, each under its 4 s.
    assert!(took < Duration::from_secs(6), "took {took:?}");
}

/// A --pac URL nothing answers at is the pac method's PAC_FETCH_FAILED (not a usage error):
/// the other methods still run, and the run exits 1 only because no method passed.
#[test]
fn an_unreachable_pac_is_the_pac_methods_own_code() {
    let closed = support::squid::free_port();
    let pac = format!("http://127.0.0.1:{closed}/proxy.pac");
    let out = uplink_cmd(&[
        "check",
        "--url",
        &format!("http://127.0.0.1:{closed}/"),
        "--method",
        "pac,direct",
        "--pac",
        &pac,
        "--timeout",
        "2",
        "--format",
        "json",
    ])
    .env_remove("UPLINK_CONFIG_DIR")
    .stdin(Stdio::null())
    .output()
    .unwrap();
    let v: Value = serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("no JSON ({e}): {}\n{}", stdout(&out), stderr(&out)));
    assert_eq!(out.status.code(), Some(1), "{v:#}");
    let m = method(&v, "pac");
    assert_eq!(m["code"], "PAC_FETCH_FAILED", "{m:#}");
    assert!(m["fix"].as_str().unwrap().contains(&pac), "{m:#}");
    assert_eq!(method(&v, "direct")["code"], "TCP_REFUSED", "{v:#}");
}

/// A sensor whose PAC script breaks, then disappears: `run --once` fails with the script's own
/// code — PAC_SCRIPT_ERROR, then PAC_FETCH_FAILED — in what it prints and in `sensor status`, and
/// `check --method default` reports the same code; a good script again delivers the event, and
/// the heartbeats queued meanwhile carry both codes to the service.
#[test]
fn a_sensors_pac_failures_have_their_own_codes_in_status_and_check() {
    let (dir, _svc, sensor, _logs) = support::sensor::with_logs("routepac");
    let pac = dir.path().join("route.pac");
    let good = "function FindProxyForURL(url, host) { return 'DIRECT'; }\n";
    std::fs::write(&pac, good).unwrap();
    ok(
        sensor.proxy(&["set", "--pac", pac.to_str().unwrap()]),
        "proxy set --pac",
    );
    ok(sensor.send("{\"n\":1}\n"), "sensor send");

    std::fs::write(&pac, "function FindProxyForURL(url, host) { return ").unwrap();
    sensor.run_once_failing(5, "PAC_SCRIPT_ERROR");
    let check = |code: &str| {
        let out = uplink_cmd(&[
            "check",
            "--config-dir",
            sensor.cfg(),
            "--method",
            "default",
            "--timeout",
            "3",
            "--format",
            "json",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
        let v: Value = serde_json::from_str(&stdout(&out))
            .unwrap_or_else(|e| panic!("no JSON ({e}): {}\n{}", stdout(&out), stderr(&out)));
        assert_eq!(out.status.code(), Some(1), "{v:#}");
        let m = method(&v, "default");
        assert_eq!(m["code"], code, "{m:#}");
        assert!(m["fix"].as_str().unwrap().contains("route.pac"), "{m:#}");
    };
    check("PAC_SCRIPT_ERROR");

    std::fs::remove_file(&pac).unwrap();
    sensor.run_once_failing(5, "PAC_FETCH_FAILED");
    check("PAC_FETCH_FAILED");

    std::fs::write(&pac, good).unwrap();
    ok(sensor.run_once(10), "run --once with the script back");
    let status = sensor.status();
    assert_eq!(status["route"], "DIRECT", "{status}");
    // The heartbeats queued during the outage reached the service with the same codes (issue
    // 16: shown in status, check and heartbeats), and the outage log names both.
    let mut rows = support::exported(&dir.path().join("service"), "routepac");
    rows.sort_by_key(|(_, seq, _)| *seq);
    let heartbeats: Vec<&Value> = rows
        .iter()
        .filter(|(_, _, v)| v["kind"] == "heartbeat")
        .map(|(_, _, v)| &v["event"])
        .collect();
    let codes: Vec<&str> = heartbeats
        .iter()
        .filter_map(|h| h["last_error_code"].as_str())
        .collect();
    assert_eq!(
        codes,
        ["PAC_SCRIPT_ERROR", "PAC_FETCH_FAILED"],
        "{heartbeats:#?}"
    );
    let last = heartbeats.last().unwrap();
    assert_eq!(
        last["outages"][0]["codes"],
        serde_json::json!(["PAC_SCRIPT_ERROR", "PAC_FETCH_FAILED"]),
        "{last:#}"
    );
}

/// A PAC URL whose name the DNS server never answers (nothing listens where the queries go and
/// the "port unreachable" replies are dropped, so the resolver waits its 5 s timeout):
/// the fetch's DNS lookup runs inside its deadline, so `check --timeout 2` reports the pac
/// method's PAC_TIMEOUT within about 2 s, not after the resolver gives up.
#[test]
fn a_pac_fetchs_dns_lookup_is_inside_its_deadline() {
    support::require("nft");
    let ns = support::netns::Netns::new();
    ns.hosts(&[]);
    ns.resolver_at_host(5, 2);
    ns.nft("add table inet uplinkpacdns; add chain inet uplinkpacdns in { type filter hook input priority 0; }; \
             add rule inet uplinkpacdns in ip protocol icmp drop; add rule inet uplinkpacdns in tcp sport 53 drop");
    let mut cmd = ns.command(support::UPLINK);
    support::scrub_proxy_env(&mut cmd);
    let started = Instant::now();
    let out = cmd
        .args([
            "check",
            "--url",
            "http://127.0.0.1:9/",
            "--method",
            "pac",
            "--pac",
            "http://pac.nowhere.uplink.test/proxy.pac",
            "--timeout",
            "2",
            "--format",
            "json",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let took = started.elapsed();
    let v: Value = serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("no JSON ({e}): {}\n{}", stdout(&out), stderr(&out)));
    assert_eq!(out.status.code(), Some(1), "{v:#}");
    let m = method(&v, "pac");
    assert_eq!(m["code"], "PAC_TIMEOUT", "{m:#}");
    assert!(took < Duration::from_secs(5), "took {took:?}: {m:#}");
}

/// A sensor in `wpad` mode with fallback `never` on a network where discovery finds nothing (the
/// harness points WPAD at nothing): WPAD_NOT_FOUND, not CONFIG_INVALID, in `run --once`,
/// `sensor status` and check's `default` method.
#[test]
fn wpad_finding_nothing_is_wpad_not_found() {
    let (_dir, _svc, sensor, _logs) = support::sensor::with_logs("routewpad");
    ok(
        sensor.proxy(&["set", "--wpad", "--fallback", "never"]),
        "proxy set --wpad --fallback never",
    );
    ok(sensor.send("{\"n\":1}\n"), "sensor send");
    let (_, status) = sensor.run_once_failing(5, "WPAD_NOT_FOUND");
    assert!(
        status["last_error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("no route")),
        "{status}"
    );
    let out = uplink_cmd(&[
        "check",
        "--config-dir",
        sensor.cfg(),
        "--method",
        "default",
        "--timeout",
        "3",
        "--format",
        "json",
    ])
    .stdin(Stdio::null())
    .output()
    .unwrap();
    let v: Value = serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("no JSON ({e}): {}\n{}", stdout(&out), stderr(&out)));
    assert_eq!(method(&v, "default")["code"], "WPAD_NOT_FOUND", "{v:#}");
}
