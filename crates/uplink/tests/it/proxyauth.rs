//! Proxy authentication end to end: a sensor installs, enrolls and uploads through a real Squid
//! on loopback that demands Digest (digest_file_auth) or NTLM (ntlm_fake_auth), and a wrong
//! Digest password is reported as PROXY_AUTH_FAILED. A hostile proxy that
//! answers 407 forever ends the run with a code, in bounded time, with every event kept.
//!
//! ntlm_fake_auth accepts any password, so this proves the handshake and the connection handling;
//! the NTLMv2 arithmetic is checked against MS-NLMP's vectors in uplink-proxyauth.
//!
//! Proxy kinds: an HTTPS proxy (Squid's `https_port`, its certificate from a test CA given with
//! `--proxy-ca`; untrusted without it), SOCKS5 with username/password (microsocks on loopback;
//! a wrong password is PROXY_AUTH_FAILED), and `socks5h://` through microsocks in a network
//! namespace that alone can resolve the service's name.
//!
//! Negotiate: a real MIT KDC on loopback (`support::kdc`) and Squid with negotiate_kerberos_auth;
//! the sensor gets its ticket from the KDC with a password, or from a client keytab.
// Without the kerberos feature the Negotiate test and its fixtures are not compiled in.
#![cfg_attr(not(feature = "kerberos"), allow(unused_imports, dead_code))]

use crate::support;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use support::kdc::{Kdc, PROXY_HOST, REALM};
use support::netns::Netns;
use support::sensor::Sensor as Installed;
use support::socks::Socks;
use support::squid::{Squid, SquidOptions};
use support::tlsproxy::TlsProxy;
use support::*;

const PROXY_USER: &str = "CONTOSO\\proxyuser";
const PROXY_PASSWORD: &str = "D1gest-Pr0xy-Pa55!";
/// For Digest through Squid: see `a_sensor_uploads_through_squid_with_digest`.
const UPN: &str = "proxyuser@contoso.com";

enum Auth<'a> {
    /// digest_file_auth with a plaintext `user:password` file.
    Digest { user: &'a str, password: &'a str },
    /// ntlm_fake_auth: any user, any password.
    Ntlm,
}

/// A Squid on loopback requiring `auth`, resolving the workspace host to 127.0.0.1.
fn squid_for(auth: Auth<'_>, host: &str) -> Squid {
    let mut opts = SquidOptions {
        hosts: vec![host.to_owned()],
        ..Default::default()
    };
    match auth {
        Auth::Digest { user, password } => opts.digest = Some((user, password)),
        Auth::Ntlm => opts.ntlm = true,
    }
    Squid::start(opts)
}

/// `sensor install` through `proxy_url` with a user and password.
fn install_through(dir: &Path, ws: &Ws, proxy_url: &str, user: &str, password: &str) -> Output {
    Installed::install(
        dir,
        ws,
        &[
            "--proxy-url",
            proxy_url,
            "--proxy-user",
            user,
            "--proxy-password",
            password,
        ],
    )
}

use support::service_with_workspace as setup;

use support::sensor::assert_logons_exactly_once as assert_exactly_once;

fn secret_nowhere(cfg: &Path, texts: &[&str], password: &str) {
    for t in texts {
        assert!(!t.contains(password), "password leaked: {t}");
    }
    fn walk(dir: &Path, password: &[u8]) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                walk(&p, password);
            } else {
                let bytes = std::fs::read(&p).unwrap();
                assert!(
                    !bytes.windows(password.len()).any(|w| w == password),
                    "password in clear in {}",
                    p.display()
                );
            }
        }
    }
    walk(cfg, password.as_bytes());
}

/// Installs through a Squid demanding `auth`, uploads 1000 events, and checks they all arrived
/// and Squid tunnelled every CONNECT as the user.
fn upload_through(auth: Auth<'_>, name: &str, user: &str, password: &str, log_user: &str) {
    let auth_name = name;
    let (dir, svc, ws) = setup(name);
    let mut squid = squid_for(auth, &ws.sensor_host);
    let cfg = dir.path().join("sensor");
    let install = install_through(&cfg, &ws, &squid.url(), user, password);
    let install_out = format!("{}{}", stdout(&install), stderr(&install));
    assert!(
        install.status.success(),
        "install:\n{install_out}\n{}",
        squid.logs()
    );
    let sensor = Installed { dir: cfg.clone() };
    ok(sensor.send(&events(0..1000)), "send");
    let run = sensor.run_once(60);
    let run_log = format!("{}{}", stdout(&run), stderr(&run));
    assert!(
        run.status.success(),
        "run --once:\n{run_log}\n{}\n{}",
        squid.logs(),
        svc.log()
    );
    let status = sensor.status();
    let sensor_id = status["sensor_id"].as_str().unwrap().to_owned();
    assert_exactly_once(&dir.path().join("service"), name, &sensor_id, 1000);
    assert_eq!(
        status["route"],
        format!("PROXY 127.0.0.1:{}", squid.port),
        "{status}"
    );
    assert!(status["last_error"].is_null(), "{status}");
    let scheme = match auth_name {
        "digest" => "Digest",
        _ => "NTLM",
    };
    assert_eq!(
        status["proxy_auth"], scheme,
        "status names the scheme in use: {status}"
    );
    // Heartbeats name them too: the next run's heartbeat reports the route and scheme in use.
    let again = sensor.run_once(60);
    assert!(again.status.success(), "{}", stderr(&again));
    let beats: Vec<serde_json::Value> = exported(&dir.path().join("service"), name)
        .into_iter()
        .filter(|(_, _, v)| v["kind"] == "heartbeat")
        .map(|(_, _, v)| v["event"].clone())
        .collect();
    let last = beats.last().expect("heartbeats");
    assert_eq!(
        last["route"],
        format!("PROXY 127.0.0.1:{}", squid.port),
        "{last}"
    );
    assert_eq!(last["proxy_auth"], scheme, "{last}");

    let log = squid.stop();
    let tunnelled = support::squid::tunnels(&log, &ws.sensor_host);
    assert!(
        tunnelled.len() >= 2,
        "enrollment and upload tunnelled:\n{log}"
    );
    assert!(
        tunnelled.iter().all(|l| l.contains(log_user)),
        "every tunnel as {log_user}:\n{log}"
    );
    secret_nowhere(
        &cfg,
        &[&install_out, &run_log, &status.to_string()],
        password,
    );
}

/// Digest with a UPN user: Squid 5.7 unescapes a Digest username's quoted-string twice, so a
/// `DOMAIN\user` sent correctly escaped (`DOMAIN\\user`, RFC 7616 §3.4) arrives as
/// `DOMAINuser` and no Squid password file can match it. uplink keeps the RFC's escaping.
#[test]
fn a_sensor_uploads_through_squid_with_digest() {
    let auth = Auth::Digest {
        user: UPN,
        password: PROXY_PASSWORD,
    };
    upload_through(auth, "digest", UPN, PROXY_PASSWORD, UPN);
}

#[test]
fn a_sensor_uploads_through_squid_with_ntlm() {
    let password = "any-Pa55-ntlm_fake_auth-takes";
    upload_through(Auth::Ntlm, "ntlm", PROXY_USER, password, "proxyuser");
}

#[test]
fn a_wrong_digest_password_is_proxy_auth_failed_naming_the_scheme_and_user() {
    let (dir, _svc, ws) = setup("digestwrong");
    let squid = squid_for(
        Auth::Digest {
            user: UPN,
            password: PROXY_PASSWORD,
        },
        &ws.sensor_host,
    );
    const WRONG: &str = "Wr0ng-D1gest-Pa55";
    let cfg = dir.path().join("sensor");
    let install = install_through(&cfg, &ws, &squid.url(), UPN, WRONG);
    let text = format!("{}{}", stdout(&install), stderr(&install));
    assert!(!install.status.success(), "{text}");
    assert!(
        text.contains("PROXY_AUTH_FAILED"),
        "{text}\n{}",
        squid.logs()
    );
    assert!(text.contains("Digest") && text.contains(UPN), "{text}");
    assert!(!text.contains(WRONG), "{text}");
}

/// A proxy that answers every CONNECT with a fresh stale Digest nonce, forever.
#[test]
fn an_endless_407_loop_ends_with_a_code_and_keeps_every_event() {
    let (dir, svc, ws) = setup("loop");
    // Install through a real Squid (with Digest) so the sensor is enrolled, then point it at the
    // hostile proxy for the upload.
    let mut squid = squid_for(
        Auth::Digest {
            user: UPN,
            password: PROXY_PASSWORD,
        },
        &ws.sensor_host,
    );
    let cfg = dir.path().join("sensor");
    let install = install_through(&cfg, &ws, &squid.url(), UPN, PROXY_PASSWORD);
    assert!(
        install.status.success(),
        "{}\n{}",
        stderr(&install),
        squid.logs()
    );
    squid.stop();
    let sensor = Installed { dir: cfg.clone() };
    ok(sensor.send(&events(0..200)), "send");

    let hostile_url = format!("http://{}", support::http::stale_digest_proxy());
    let set = support::sensor::proxy_set_with_password(
        sensor.cfg(),
        &hostile_url,
        PROXY_USER,
        PROXY_PASSWORD,
    );
    ok(set, "proxy set (hostile)");
    let start = Instant::now();
    let (text, status) = sensor.run_once_failing(10, "PROXY_AUTH_FAILED");
    let took = start.elapsed();
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert_eq!(
        status["queue"]["events"], 202,
        "nothing may leave the queue (200 sent, the run's heartbeat and inventory): {status}"
    );
    assert!(exported(&dir.path().join("service"), "loop").is_empty());
    assert!(!text.contains(PROXY_PASSWORD));
    drop(svc);
}

fn events(range: std::ops::Range<u64>) -> String {
    range
        .map(|i| format!("{{\"kind\":\"logon\",\"n\":{i}}}\n"))
        .collect()
}

/// A sensor installed without a proxy (the service is on loopback; the test scrubs the proxy
/// environment), then pointed at one.
fn installed_direct(dir: &Path, ws: &Ws) -> Installed {
    Installed::installed(&dir.join("sensor"), ws, &[])
}

/// Runs the sensor once and asserts it uploaded; returns what it printed.
#[track_caller]
fn run_ok(sensor: &Installed, context: &dyn Fn() -> String) -> String {
    let run = sensor.run_once(60);
    let log = format!("{}{}", stdout(&run), stderr(&run));
    assert!(run.status.success(), "run --once:\n{log}\n{}", context());
    log
}

/// `sensor proxy set ARGS` with the password in UPLINK_PROXY_PASSWORD (never on a command line).
fn proxy_set(sensor: &Installed, args: &[&str], password: Option<&str>) -> Output {
    let mut cmd = uplink_cmd(&["sensor", "proxy", "set", "--config-dir", sensor.cfg()]);
    cmd.args(args);
    if let Some(p) = password {
        cmd.env("UPLINK_PROXY_PASSWORD", p);
    }
    cmd.stdin(std::process::Stdio::null()).output().unwrap()
}

const SOCKS_USER: &str = "socksuser";
const SOCKS_PASSWORD: &str = "S0cks-Pa55-w0rd";

#[test]
fn a_sensor_uploads_through_socks5_with_username_password_and_a_wrong_one_is_auth_failed() {
    let (dir, svc, ws) = setup("socks");
    let socks = Socks::start(Some((SOCKS_USER, SOCKS_PASSWORD)));
    // Install (enrollment included) through the SOCKS5 proxy.
    let cfg = dir.path().join("sensor");
    let install = install_through(&cfg, &ws, &socks.url(false), SOCKS_USER, SOCKS_PASSWORD);
    let install_out = format!("{}{}", stdout(&install), stderr(&install));
    assert!(
        install.status.success(),
        "install:\n{install_out}\n{}",
        socks.logs()
    );
    let sensor = Installed { dir: cfg.clone() };
    ok(sensor.send(&events(0..500)), "send");
    let run_log = run_ok(&sensor, &|| format!("{}\n{}", socks.logs(), svc.log()));
    let status = sensor.status();
    assert_eq!(
        status["route"],
        format!("SOCKS5 127.0.0.1:{}", socks.port),
        "{status}"
    );
    assert_eq!(status["proxy_auth"], "username/password", "{status}");
    assert!(status["last_error"].is_null(), "{status}");
    let id = status["sensor_id"].as_str().unwrap().to_owned();
    assert_exactly_once(&dir.path().join("service"), "socks", &id, 500);
    let show = ok(sensor.proxy(&["show"]), "proxy show");
    assert!(show.contains(&socks.url(false)), "{show}");

    // A wrong password: PROXY_AUTH_FAILED, naming the user, and every event stays queued.
    const WRONG: &str = "Wr0ng-S0cks-Pa55";
    ok(
        proxy_set(
            &sensor,
            &["--url", &socks.url(false), "--user", SOCKS_USER],
            Some(WRONG),
        ),
        "proxy set (wrong password)",
    );
    ok(sensor.send(&events(500..600)), "send");
    let start = Instant::now();
    let (text, failed) = sensor.run_once_failing(10, "PROXY_AUTH_FAILED");
    assert!(start.elapsed() < Duration::from_secs(30));
    assert!(text.contains(SOCKS_USER), "{text}");
    // The events sent, plus the failed run's own heartbeat and inventory.
    assert_eq!(failed["queue"]["events"], 100 + 2, "{failed}");

    // No proxy user at all: PROXY_AUTH_REQUIRED.
    ok(
        proxy_set(&sensor, &["--url", &socks.url(false)], None),
        "proxy set (no user)",
    );
    let run = sensor.run_once(10);
    let text = format!("{}{}", stdout(&run), stderr(&run));
    assert!(text.contains("PROXY_AUTH_REQUIRED"), "{text}");

    let texts = [
        install_out.as_str(),
        run_log.as_str(),
        &status.to_string(),
        &failed.to_string(),
        &show,
        &text,
    ];
    secret_nowhere(&cfg, &texts, SOCKS_PASSWORD);
    secret_nowhere(&cfg, &texts, WRONG);
}

/// socks5h://: the proxy resolves the service's name. microsocks runs in a namespace whose hosts
/// file alone knows `sockshsensorapi.uplink.test`, mapped to the namespace link's root side;
/// the sensor never resolves it (no DNS query leaves the machine), and an address it might have
/// sent instead (loopback) would not reach the service from inside the namespace.
#[test]
fn socks5h_lets_the_proxy_resolve_the_service_name() {
    let ns = Netns::new();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    let svc = ServiceProc::start_at(&data, &format!("{}:0", ns.host_ip));
    let ws = create_workspace_in(&data, "socksh", svc.port, "uplink.test");
    let host = ws.sensor_host.as_str();
    ns.hosts(&[(ns.host_ip.as_str(), host)]);
    let socks = Socks::start_in(&ns, None);
    let cfg = dir.path().join("sensor");
    let bundle = ws.bundle_path.to_str().unwrap();
    let install = uplink(&[
        "sensor",
        "install",
        "--bundle",
        bundle,
        "--config-dir",
        cfg.to_str().unwrap(),
        "--proxy-url",
        &socks.url(true),
        "--quiet",
    ]);
    assert!(
        install.status.success(),
        "install through socks5h:\n{}{}\n{}",
        stdout(&install),
        stderr(&install),
        socks.logs()
    );
    let sensor = Installed { dir: cfg.clone() };
    ok(sensor.send(&events(0..50)), "send");
    run_ok(&sensor, &|| format!("{}\n{}", socks.logs(), svc.log()));
    let status = sensor.status();
    assert_eq!(
        status["route"],
        format!("SOCKS5 {}:{}", ns.ns_ip, socks.port),
        "{status}"
    );
    assert!(
        status["proxy_auth"].is_null(),
        "no authentication: {status}"
    );
    let id = status["sensor_id"].as_str().unwrap().to_owned();
    assert_exactly_once(&data, "socksh", &id, 50);
}

const HTTPS_USER: &str = "httpsuser";
const HTTPS_PASSWORD: &str = "Https-Pr0xy-Pa55";

#[test]
fn a_sensor_uploads_through_an_https_proxy_trusting_its_ca_and_refuses_it_otherwise() {
    let (dir, svc, ws) = setup("tlsproxy");
    let mut proxy = TlsProxy::start(SquidOptions {
        basic: Some((HTTPS_USER, HTTPS_PASSWORD)),
        hosts: vec![ws.sensor_host.clone()],
        ..Default::default()
    });
    let sensor = installed_direct(dir.path(), &ws);
    let ca = proxy.ca_file.to_str().unwrap().to_owned();
    let set = ok(
        proxy_set(
            &sensor,
            &[
                "--url",
                &proxy.url(),
                "--proxy-ca",
                &ca,
                "--user",
                HTTPS_USER,
            ],
            Some(HTTPS_PASSWORD),
        ),
        "proxy set https",
    );
    assert!(
        set.contains(&format!("HTTPS 127.0.0.1:{}", proxy.port)),
        "{set}"
    );
    let show = ok(sensor.proxy(&["show"]), "proxy show");
    assert!(show.contains(&format!("proxy CA  {ca}")), "{show}");
    let show_json = sensor.proxy_show();
    assert_eq!(show_json["proxy_ca"], ca.as_str(), "{show_json}");

    ok(sensor.send(&events(0..300)), "send");
    let run_log = run_ok(&sensor, &|| {
        format!("{}\n{}", proxy.squid.logs(), svc.log())
    });
    let status = sensor.status();
    assert_eq!(
        status["route"],
        format!("HTTPS 127.0.0.1:{}", proxy.port),
        "{status}"
    );
    assert_eq!(status["proxy_auth"], "Basic", "{status}");
    let id = status["sensor_id"].as_str().unwrap().to_owned();
    assert_exactly_once(&dir.path().join("service"), "tlsproxy", &id, 300);

    // A PAC script's HTTPS entry uses the same CA.
    let pac = dir.path().join("proxy.pac");
    std::fs::write(
        &pac,
        format!(
            "function FindProxyForURL(url, host) {{ return \"HTTPS 127.0.0.1:{}\"; }}",
            proxy.port
        ),
    )
    .unwrap();
    ok(
        proxy_set(
            &sensor,
            &[
                "--pac",
                pac.to_str().unwrap(),
                "--proxy-ca",
                &ca,
                "--user",
                HTTPS_USER,
            ],
            Some(HTTPS_PASSWORD),
        ),
        "proxy set --pac",
    );
    ok(sensor.send(&events(300..400)), "send");
    run_ok(&sensor, &|| proxy.squid.logs());
    assert_exactly_once(&dir.path().join("service"), "tlsproxy", &id, 400);

    // Without --proxy-ca the system roots decide, and they do not know the test CA.
    ok(
        proxy_set(
            &sensor,
            &["--url", &proxy.url(), "--user", HTTPS_USER],
            Some(HTTPS_PASSWORD),
        ),
        "proxy set https without CA",
    );
    ok(sensor.send(&events(400..450)), "send");
    let (text, failed) = sensor.run_once_failing(10, "PROXY_TLS_UNTRUSTED");
    assert!(
        text.contains(&format!("TLS to the proxy 127.0.0.1:{}", proxy.port))
            && text.contains("--proxy-ca"),
        "names the proxy and the fix: {text}"
    );
    // The events sent, plus the failed run's own heartbeat and inventory.
    assert_eq!(failed["queue"]["events"], 50 + 2, "{failed}");

    // A CA file that is not one is refused when set.
    let bad = ok_err(proxy_set(
        &sensor,
        &["--url", &proxy.url(), "--proxy-ca", "/etc/hostname"],
        None,
    ));
    assert!(
        bad.contains("--proxy-ca") && bad.contains("no PEM certificate"),
        "{bad}"
    );

    // `sensor install` takes the same switch, and checks the route through the proxy before it
    // writes anything: refused without the CA, installed with it.
    let url = proxy.url();
    let through_https = |name: &str, with_ca: bool| {
        let mut extra = vec![
            "--proxy-url",
            &url,
            "--proxy-user",
            HTTPS_USER,
            "--proxy-password",
            HTTPS_PASSWORD,
            "--json",
        ];
        if with_ca {
            extra.extend(["--proxy-ca", &ca]);
        }
        Installed::install(&dir.path().join(name), &ws, &extra)
    };
    let refused = ok_err(through_https("https-no-ca", false));
    assert!(refused.contains("PROXY_TLS_UNTRUSTED"), "{refused}");
    assert!(!dir.path().join("https-no-ca/sensor.toml").exists());
    let installed_text = ok(through_https("https-ca", true), "install with --proxy-ca");
    let installed: serde_json::Value = serde_json::from_str(&installed_text).unwrap();
    secret_nowhere(
        &dir.path().join("https-ca"),
        &[&installed_text, &refused],
        HTTPS_PASSWORD,
    );
    assert_eq!(
        installed["route"],
        format!("HTTPS 127.0.0.1:{}", proxy.port),
        "{installed}"
    );
    let no_url = ok_err(Installed::install(
        &dir.path().join("ca-no-url"),
        &ws,
        &["--proxy-ca", &ca],
    ));
    assert!(no_url.contains("--proxy-ca needs --proxy-url"), "{no_url}");

    let log = proxy.squid.stop();
    let tunnelled = support::squid::tunnels(&log, &ws.sensor_host);
    assert!(
        tunnelled.len() >= 2 && tunnelled.iter().all(|l| l.contains(HTTPS_USER)),
        "tunnelled as {HTTPS_USER} through the TLS port:\n{log}"
    );
    secret_nowhere(
        &sensor.dir,
        &[
            &run_log,
            &status.to_string(),
            &failed.to_string(),
            &text,
            &show,
        ],
        HTTPS_PASSWORD,
    );
}

/// Fails unless the command failed; returns what it printed.
#[track_caller]
fn ok_err(out: Output) -> String {
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!out.status.success(), "expected a failure: {text}");
    text
}

const KRB_USER: &str = "alice";
const KRB_PASSWORD: &str = "Kerb-Pa55-w0rd";

/// `uplink ARGS` as a Kerberos client of `kdc`: its krb5.conf, and a ticket cache of its own.
fn krb_cmd(kdc: &Kdc, args: &[&str]) -> std::process::Command {
    let mut cmd = uplink_cmd(args);
    cmd.env("KRB5_CONFIG", &kdc.krb5_conf)
        .env(
            "KRB5CCNAME",
            format!("FILE:{}/client.cc", kdc.dir.path().display()),
        )
        .stdin(std::process::Stdio::null());
    cmd
}

/// Negotiate needs the binary's `kerberos` feature (test.sh builds with every feature). Under CI
/// its absence is a failure, not a silently skipped test.
#[cfg(not(feature = "kerberos"))]
#[test]
fn negotiate_tests_need_the_kerberos_feature() {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "built without the kerberos feature: run the suite with --all-features (test.sh does)"
    );
    eprintln!("note: the Negotiate/Kerberos test needs --features kerberos; not run");
}

#[cfg(feature = "kerberos")]
#[test]
fn a_sensor_uploads_through_squid_with_negotiate_kerberos_from_a_real_kdc() {
    let (dir, svc, ws) = setup("kerberos");
    let kdc = Kdc::start(&[(KRB_USER, KRB_PASSWORD)]);
    let mut squid = Squid::start(SquidOptions {
        hosts: vec![ws.sensor_host.clone()],
        extra_conf: kdc.squid_conf(),
        ..Default::default()
    });
    let proxy = format!("http://{PROXY_HOST}:{}", squid.port);
    let principal = format!("{KRB_USER}@{REALM}");
    let cfg = dir.path().join("sensor");
    let c = cfg.to_str().unwrap();
    // Install (enrollment included) through the Kerberos proxy, with a password.
    let install = krb_cmd(
        &kdc,
        &[
            "sensor",
            "install",
            "--bundle",
            ws.bundle_path.to_str().unwrap(),
            "--config-dir",
            c,
            "--proxy-url",
            &proxy,
            "--proxy-user",
            &principal,
            "--proxy-password",
            KRB_PASSWORD,
        ],
    )
    .output()
    .unwrap();
    let install_out = format!("{}{}", stdout(&install), stderr(&install));
    assert!(
        install.status.success(),
        "install:\n{install_out}\n{}\n{}",
        squid.logs(),
        kdc.logs()
    );
    let sensor = Installed { dir: cfg.clone() };
    ok(sensor.send(&events(0..300)), "send");
    let run = krb_cmd(&kdc, &support::sensor::run_once_args(c, "60"))
        .output()
        .unwrap();
    let run_log = format!("{}{}", stdout(&run), stderr(&run));
    assert!(
        run.status.success(),
        "run:\n{run_log}\n{}\n{}\n{}",
        squid.logs(),
        kdc.logs(),
        svc.log()
    );
    let status = sensor.status();
    assert_eq!(status["proxy_auth"], "Negotiate", "{status}");
    assert_eq!(
        status["route"],
        format!("PROXY {PROXY_HOST}:{}", squid.port),
        "{status}"
    );
    let id = status["sensor_id"].as_str().unwrap().to_owned();
    assert_exactly_once(&dir.path().join("service"), "kerberos", &id, 300);
    assert!(
        kdc.logs()
            .contains(&format!("for HTTP/{PROXY_HOST}@{REALM}")),
        "the KDC issued the proxy's ticket:\n{}",
        kdc.logs()
    );

    // A wrong password: the KDC refuses the login; PROXY_AUTH_FAILED, events stay queued.
    const WRONG: &str = "Wr0ng-Kerb-Pa55";
    let set = krb_cmd(
        &kdc,
        &[
            "sensor",
            "proxy",
            "set",
            "--config-dir",
            c,
            "--url",
            &proxy,
            "--user",
            &principal,
        ],
    )
    .env("UPLINK_PROXY_PASSWORD", WRONG)
    .output()
    .unwrap();
    ok(set, "proxy set (wrong password)");
    ok(sensor.send(&events(300..320)), "send");
    let start = Instant::now();
    let failed_run = krb_cmd(&kdc, &support::sensor::run_once_args(c, "10"))
        .output()
        .unwrap();
    let failed_log = format!("{}{}", stdout(&failed_run), stderr(&failed_run));
    assert_eq!(failed_run.status.code(), Some(1), "{failed_log}");
    assert!(start.elapsed() < Duration::from_secs(30));
    assert!(
        failed_log.contains("PROXY_AUTH_FAILED")
            && failed_log.contains("KDC refused")
            && failed_log.contains(&principal),
        "{failed_log}"
    );
    let failed = sensor.status();
    // The events sent, plus the failed run's own heartbeat and inventory.
    assert_eq!(failed["queue"]["events"], 20 + 2, "{failed}");

    // A client keytab instead of a password (KRB5_CLIENT_KTNAME, as a service would have it):
    // the principal as the user, and an empty password.
    let keytab = kdc.client_keytab("svc-sensor");
    let svc_principal = format!("svc-sensor@{REALM}");
    ok(
        krb_cmd(
            &kdc,
            &[
                "sensor",
                "proxy",
                "set",
                "--config-dir",
                c,
                "--url",
                &proxy,
                "--user",
                &svc_principal,
                "--password",
                "",
            ],
        )
        .output()
        .unwrap(),
        "proxy set (keytab user)",
    );
    let keytab_run = krb_cmd(&kdc, &support::sensor::run_once_args(c, "60"))
        .env("KRB5_CLIENT_KTNAME", &keytab)
        .output()
        .unwrap();
    let keytab_log = format!("{}{}", stdout(&keytab_run), stderr(&keytab_run));
    assert!(
        keytab_run.status.success(),
        "keytab run:\n{keytab_log}\n{}\n{}",
        squid.logs(),
        kdc.logs()
    );
    assert_eq!(sensor.status()["proxy_auth"], "Negotiate");
    assert_exactly_once(&dir.path().join("service"), "kerberos", &id, 320);

    let log = squid.stop();
    let tunnelled = support::squid::tunnels(&log, &ws.sensor_host);
    assert!(
        tunnelled.iter().any(|l| l.contains(&principal))
            && tunnelled.iter().any(|l| l.contains(&svc_principal)),
        "Squid tunnelled as {principal} and as {svc_principal}:\n{log}"
    );
    let texts = [
        install_out.as_str(),
        run_log.as_str(),
        &status.to_string(),
        &failed_log,
        &keytab_log,
    ];
    secret_nowhere(&cfg, &texts, KRB_PASSWORD);
    secret_nowhere(&cfg, &texts, WRONG);
}
