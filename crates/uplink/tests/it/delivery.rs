//! Deliveries over TLS and their secrets at rest (issue #23, docs/admin-api.md): an https
//! webhook whose receiver has its own CA, trusted through `uplink service --webhook-ca FILE`
//! (and one whose CA is not given, refused with a log entry that says what to do); syslog over
//! `tls://` to a real rsyslogd with TLS (rsyslog's OpenSSL driver); certificates made by the
//! test. The webhook secret is sealed in the store: not in clear in the SQLite files (here) nor
//! in a pg_dump (`adminapi.rs`), and still signs every delivery.

use std::path::Path;

use serde_json::Value;

use crate::adminapi::{cli, cli_json, fast_sensor, stop, FLEET_FLAGS, WAIT};
use crate::support::check::tls::TestCa;
use crate::support::receivers::{expected_signature, Receiver, Rsyslog, SyslogTls};
use crate::support::*;

/// Whether any file of the SQLite store (`uplink.db*`) holds `needle`.
fn in_store_files(data: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(data).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("uplink.db") {
            continue;
        }
        let bytes = std::fs::read(entry.path()).unwrap();
        if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
            found.push(name);
        }
    }
    found
}

#[test]
fn https_webhooks_and_tls_syslog_trust_the_given_ca_and_the_secret_stays_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path();
    // The receivers' own CA (given to the service) and a CA the service is not told about.
    let ca = TestCa::new(tmp, "receivers CA");
    let stranger = TestCa::new(tmp, "stranger CA");
    let names = ["localhost", "127.0.0.1"];
    let (cert, key) = ca.leaf(&names, false);
    let trusted = Receiver::https(&cert, &key);
    let (other_cert, other_key) = stranger.leaf(&names, false);
    let untrusted = Receiver::https(&other_cert, &other_key);
    let (cert_file, key_file) = (tmp.join("syslog.crt"), tmp.join("syslog.key"));
    std::fs::write(&cert_file, &cert).unwrap();
    std::fs::write(&key_file, &key).unwrap();
    let syslog_port = crate::support::squid::free_port();
    let rsyslog = Rsyslog::start_tls(
        tmp,
        syslog_port,
        SyslogTls {
            ca: &ca.pem_file,
            cert: &cert_file,
            key: &key_file,
        },
    );

    let data = tmp.join("service");
    let ca_arg = ca.pem_file.to_str().unwrap();
    let svc = ServiceProc::start_with(
        &data,
        &[&FLEET_FLAGS[..], &["--webhook-ca", ca_arg]].concat(),
    );
    let ws = create_workspace(&data, "tlsws", svc.port);
    let store = ["--data-dir", data.to_str().unwrap()];
    let secret = "sealed-webhook-secret-5f0c2a7e9d41";
    let secret_file = tmp.join("hook.secret");
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();
    let hook = format!("https://127.0.0.1:{}/hook", trusted.port);
    let stray = format!("https://127.0.0.1:{}/hook", untrusted.port);
    let target = format!("tls://127.0.0.1:{syslog_port}");
    cli(
        &[
            "workspace",
            "set",
            "tlsws",
            "--disconnected-after",
            "10s",
            "--webhook",
            &hook,
            "--webhook",
            &stray,
            "--webhook-secret-file",
            secret_file.to_str().unwrap(),
            "--syslog",
            &target,
        ],
        &store,
    );
    // At rest the secret is sealed: no file of the store holds it in clear (the database, its
    // WAL), while the row is there (the URL is).
    let found = in_store_files(&data, secret);
    assert!(
        found.is_empty(),
        "the webhook secret is in clear in {found:?}"
    );
    assert!(
        !in_store_files(&data, &hook).is_empty(),
        "the webhook's row is not in the store's files"
    );

    let sensor = fast_sensor(&tmp.join("s"), &ws);
    let deliveries =
        || cli_json(&["workspace", "deliveries", "tlsws"], &store)["deliveries"].clone();
    let context = |log: &Path| {
        format!(
            "deliveries: {:#}\nsyslog: {:#?}\n{}\n{}\nservice:\n{}",
            deliveries(),
            rsyslog.lines(),
            rsyslog.context(),
            sensor.context(log),
            svc.log()
        )
    };
    let log = tmp.join("run.log");
    let run = sensor.spawn_run(&log);
    poll_until(
        "the sensor is online",
        WAIT,
        || cli_json(&["fleet", "list", "tlsws"], &store)["sensors"][0]["state"] == "online",
        || context(&log),
    );
    stop(run);
    // Disconnected: issue.opened goes to both webhooks and the syslog target.
    let row = |url: &str| -> Value {
        deliveries()
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["url"] == url && d["event"] == "issue.opened")
            .cloned()
            .unwrap_or(Value::Null)
    };
    poll_until(
        "issue.opened delivered over https and tls://, refused by the untrusted receiver",
        WAIT * 2,
        || {
            row(&hook)["state"] == "delivered"
                && row(&target)["state"] == "delivered"
                && row(&stray)["attempts"].as_u64() >= Some(1)
                && row(&stray)["last_error"].is_string()
        },
        || context(&log),
    );

    // The trusted receiver got it once, signed with the secret the store sealed.
    let received = trusted.received();
    assert_eq!(received.len(), 1, "{received:#?}\n{}", context(&log));
    let r = &received[0];
    let ts = r.header("x-uplink-timestamp").expect("a timestamp");
    let sig = r.header("x-uplink-signature").expect("a signature");
    assert_eq!(sig, expected_signature(secret, ts, &r.body), "{r:?}");
    let body: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(body["event"], "issue.opened", "{body}");
    assert_eq!(body["workspace"], "tlsws", "{body}");
    assert_eq!(body["issue"]["kind"], "disconnected", "{body}");

    // The receiver whose CA was not given: no request reached it, the log says why and what to
    // do, and it stays pending (retried) rather than delivered.
    assert!(
        untrusted.received().is_empty(),
        "{:#?}",
        untrusted.received()
    );
    let refused = row(&stray);
    assert_ne!(refused["state"], "delivered", "{refused:#}");
    let why = refused["last_error"].as_str().unwrap();
    assert!(
        why.contains("certificate") && why.contains("--webhook-ca"),
        "{refused:#}"
    );

    // rsyslog got one RFC 5424 message over TLS (its own messages, e.g. about the readiness
    // probe's bare TCP connection, are not ours).
    let lines: Vec<String> = rsyslog
        .lines()
        .into_iter()
        .filter(|l| l.contains(" uplink - "))
        .collect();
    assert_eq!(lines.len(), 1, "{lines:#?}\n{}", context(&log));
    assert!(lines[0].starts_with("<131>1 "), "{}", lines[0]);
    assert!(
        lines[0].contains(" uplink - issue.opened [uplink@32473 workspace=\"tlsws\""),
        "{}",
        lines[0]
    );
    // Still sealed after the deliveries.
    let found = in_store_files(&data, secret);
    assert!(
        found.is_empty(),
        "the webhook secret is in clear in {found:?}"
    );
}

/// A `--webhook-ca` file that holds no certificate is refused at start, naming the file.
#[test]
fn a_webhook_ca_file_without_a_certificate_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("not-a-ca.pem");
    std::fs::write(&bad, "hello\n").unwrap();
    let data = dir.path().join("service");
    std::fs::create_dir_all(&data).unwrap();
    let out = uplink(&[
        "service",
        "--data-dir",
        data.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--webhook-ca",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("--webhook-ca")
            && err.contains("not-a-ca.pem")
            && err.contains("no certificate"),
        "{err}"
    );
    // Refused before the store is opened: nothing was created.
    assert!(std::fs::read_dir(&data).unwrap().next().is_none());
}
