//! Proxy authentication end to end: a sensor installs, enrolls and uploads through a real Squid
//! on loopback that demands Digest (digest_file_auth) or NTLM (ntlm_fake_auth), and a wrong
//! Digest password is reported as PROXY_AUTH_FAILED. A hostile proxy that
//! answers 407 forever ends the run with a code, in bounded time, with every event kept.
//!
//! ntlm_fake_auth accepts any password, so this proves the handshake and the connection handling;
//! the NTLMv2 arithmetic is checked against MS-NLMP's vectors in uplink-proxyauth.

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use support::squid::{Squid, SquidOptions};
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

struct Sensor {
    dir: PathBuf,
}

impl Sensor {
    fn install(dir: &Path, ws: &Ws, proxy_url: &str, user: &str, password: &str) -> Output {
        uplink(&[
            "sensor",
            "install",
            "--bundle",
            ws.bundle_path.to_str().unwrap(),
            "--config-dir",
            dir.to_str().unwrap(),
            "--proxy-url",
            proxy_url,
            "--proxy-user",
            user,
            "--proxy-password",
            password,
        ])
    }

    fn cfg(&self) -> &str {
        self.dir.to_str().unwrap()
    }

    fn send(&self, n: u64) {
        let input: String = (0..n)
            .map(|i| format!("{{\"kind\":\"logon\",\"n\":{i}}}\n"))
            .collect();
        let out = with_stdin(
            uplink_cmd(&["sensor", "send", "--config-dir", self.cfg()]),
            &input,
        );
        assert!(out.status.success(), "send: {}", stderr(&out));
    }

    fn run_once(&self, timeout: u64) -> Output {
        uplink(&[
            "sensor",
            "run",
            "--once",
            "--timeout",
            &timeout.to_string(),
            "--config-dir",
            self.cfg(),
            "--log-level",
            "debug",
        ])
    }

    fn status(&self) -> serde_json::Value {
        serde_json::from_str(&ok(
            uplink(&["sensor", "status", "--config-dir", self.cfg(), "--json"]),
            "sensor status",
        ))
        .unwrap()
    }
}

fn setup(name: &str) -> (tempfile::TempDir, ServiceProc, Ws) {
    let dir = tempfile::tempdir().unwrap();
    let svc = ServiceProc::start(&dir.path().join("service"));
    let ws = create_workspace(&dir.path().join("service"), name, svc.port);
    (dir, svc, ws)
}

/// Every event 0..n arrived exactly once, from this sensor, with its own payload, in the order
/// sent; besides them only the heartbeats and inventories `sensor run` adds.
#[track_caller]
fn assert_exactly_once(data_dir: &Path, ws: &str, sensor_id: &str, n: u64) {
    let rows = exported(data_dir, ws);
    for (id, _, _) in &rows {
        assert_eq!(id, sensor_id);
    }
    support::sensor::assert_n_exactly_once(&rows, "logon", n);
}

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
    let install = Sensor::install(&cfg, &ws, &squid.url(), user, password);
    let install_out = format!("{}{}", stdout(&install), stderr(&install));
    assert!(
        install.status.success(),
        "install:\n{install_out}\n{}",
        squid.logs()
    );
    let sensor = Sensor { dir: cfg.clone() };
    sensor.send(1000);
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

    let log = squid.stop();
    let connects: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("CONNECT") && l.contains(&ws.sensor_host))
        .collect();
    let tunnelled: Vec<&&str> = connects.iter().filter(|l| l.contains("/200 ")).collect();
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
    let install = Sensor::install(&cfg, &ws, &squid.url(), UPN, WRONG);
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
    let install = Sensor::install(&cfg, &ws, &squid.url(), UPN, PROXY_PASSWORD);
    assert!(
        install.status.success(),
        "{}\n{}",
        stderr(&install),
        squid.logs()
    );
    squid.stop();
    let sensor = Sensor { dir: cfg.clone() };
    sensor.send(200);

    let hostile = TcpListener::bind("127.0.0.1:0").unwrap();
    let hostile_url = format!("http://{}", hostile.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in hostile.incoming() {
            let Ok(mut s) = conn else { return };
            std::thread::spawn(move || {
                let mut n = 0u64;
                let mut buf = [0u8; 4096];
                let mut pending = Vec::new();
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(k) => pending.extend_from_slice(&buf[..k]),
                    }
                    while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                        pending.drain(..end + 4);
                        n += 1;
                        let reply = format!("HTTP/1.1 407 X\r\nProxy-Authenticate: Digest realm=\"r\", nonce=\"n{n}\", qop=\"auth\", stale=true\r\nContent-Length: 0\r\n\r\n");
                        if s.write_all(reply.as_bytes()).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    let set = uplink_cmd(&[])
        .args([
            "sensor",
            "proxy",
            "set",
            "--config-dir",
            sensor.cfg(),
            "--url",
            &hostile_url,
            "--user",
            PROXY_USER,
        ])
        .env("UPLINK_PROXY_PASSWORD", PROXY_PASSWORD)
        .output()
        .unwrap();
    ok(set, "proxy set (hostile)");
    let start = Instant::now();
    let run = sensor.run_once(10);
    let took = start.elapsed();
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert!(
        stderr(&run).contains("PROXY_AUTH_FAILED"),
        "{}",
        stderr(&run)
    );
    let status = sensor.status();
    assert_eq!(
        status["last_error"]["code"], "PROXY_AUTH_FAILED",
        "{status}"
    );
    assert_eq!(
        status["queue"]["events"], 202,
        "nothing may leave the queue (200 sent, the run's heartbeat and inventory): {status}"
    );
    assert!(exported(&dir.path().join("service"), "loop").is_empty());
    assert!(!stderr(&run).contains(PROXY_PASSWORD));
    drop(svc);
}
