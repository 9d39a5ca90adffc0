//! What backups and `store migrate` carry besides events (docs/storage.md, "Backups").
//!
//! - A sensor revoked (`uplink fleet revoke`) before a backup stays revoked after the backup is
//!   restored into a fresh SQLite store, and after that store is copied into PostgreSQL with
//!   `store migrate`: a service on either refuses it (403 `CERT_REVOKED`) while the other sensor
//!   delivers; its reason and time come along, the CRL lists its certificate, and the workspace's
//!   lifecycle settings and current policy (its version number kept) come along; a backup taken
//!   during a CA rotation keeps the previous CA (its retirement still refused until the active
//!   sensor moved).
//! - A backup in format 1 (written before revocations were carried) still restores.

use std::path::Path;

use crate::postgres::{export, Db, PgService};
use crate::support::postgres::Cluster;
use crate::support::*;

/// POSTs seqs `seqs` as `who`: the status and the body.
fn post(
    dir: &Path,
    ws: &Ws,
    port: u16,
    who: &Enrolled,
    seqs: std::ops::Range<u64>,
) -> (u16, String) {
    let file = dir.join(format!("batch-{}-{}.ndjson", who.sensor_id, seqs.start));
    std::fs::write(&file, ndjson(seqs, "ev")).unwrap();
    post_events(ws, port, Some(who), &file, &[])
}

/// The error code of an error body ("" when none).
fn code(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["code"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The CRL the service on `port` serves for `ws`, as `openssl crl -text` prints it.
fn crl_text(dir: &Path, ws: &Ws, port: u16) -> String {
    let der = dir.join("crl.der");
    require("curl");
    let host = &ws.sensor_host;
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "20", "-o"])
        .arg(&der)
        .args(["-w", "%{http_code}", "--cacert"])
        .arg(&ws.ca_file)
        .arg("--resolve")
        .arg(format!("{host}:{port}:127.0.0.1"))
        .arg(format!("https://{host}:{port}/pki/crl.der"))
        .output()
        .expect("run curl");
    assert_eq!(stdout(&out).trim(), "200", "{}", stderr(&out));
    openssl(&[
        "crl",
        "-inform",
        "DER",
        "-in",
        der.to_str().unwrap(),
        "-noout",
        "-text",
    ])
}

fn json(args: &[&str]) -> serde_json::Value {
    let out = ok(uplink(args), &format!("uplink {}", args.join(" ")));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// (sensor_id, lifecycle) of each sensor, as `fleet list --all --json` shows them.
fn lifecycles(store: &[&str]) -> Vec<(String, String)> {
    let mut args = vec!["fleet", "list", "fs", "--all", "--json"];
    args.extend_from_slice(store);
    let v = json(&args);
    let mut out: Vec<(String, String)> = v["sensors"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|s| {
            (
                s["sensor_id"].as_str().unwrap().to_owned(),
                s["lifecycle"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn a_sensor_revoked_before_a_backup_stays_refused_after_restore_and_migrate() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let data = t.join("data");
    let d = data.to_str().unwrap();
    let svc = ServiceProc::start(&data);
    let ws = create_workspace(&data, "fs", svc.port);
    let thief = enroll_with_openssl(t, &ws, svc.port, "stolen");
    let good = enroll_with_openssl(t, &ws, svc.port, "good");
    for who in [&thief, &good] {
        let (status, body) = post(t, &ws, svc.port, who, 0..5);
        assert_eq!(status, 200, "{body}\n{}", svc.log());
    }
    ok(
        uplink(&[
            "fleet",
            "revoke",
            "fs",
            &thief.sensor_id,
            "--data-dir",
            d,
            "--reason",
            "laptop stolen",
        ]),
        "fleet revoke",
    );
    ok(
        uplink(&[
            "workspace",
            "set",
            "fs",
            "--data-dir",
            d,
            "--enroll-limit",
            "7",
            "--client-cert-validity",
            "2d",
        ]),
        "workspace set",
    );
    let want = {
        let mut w = vec![
            (thief.sensor_id.clone(), "revoked".to_owned()),
            (good.sensor_id.clone(), "active".to_owned()),
        ];
        w.sort();
        w
    };
    assert_eq!(lifecycles(&["--data-dir", d]), want);

    // A policy, at version 2, with a proxy password.
    let password = t.join("proxy-password");
    std::fs::write(&password, "policy-pw-not-in-the-backup\n").unwrap();
    for extra in [
        &["--direct"][..],
        &[
            "--proxy-url",
            "http://proxy.example:3128",
            "--proxy-user",
            "CORP\\svc",
            "--proxy-password-file",
            password.to_str().unwrap(),
        ][..],
    ] {
        let mut args = vec!["fleet", "policy", "set", "fs", "--data-dir", d, "--all"];
        args.extend_from_slice(extra);
        ok(uplink(&args), "fleet policy set");
    }
    // Its certificate's serial, as the CRL lists it.
    let serial = openssl(&[
        "x509",
        "-in",
        thief.cert_file.to_str().unwrap(),
        "-noout",
        "-serial",
    ]);
    let serial = serial
        .trim()
        .trim_start_matches("serial=")
        .to_ascii_uppercase();
    let file = t.join("fs.backup");
    let f = file.to_str().unwrap();
    ok(
        uplink(&["store", "backup", "--data-dir", d, "--to", f]),
        "store backup",
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains("policy-pw"), "the proxy password is sealed");
    drop(svc);
    let key = data.join("master.key");
    let k = key.to_str().unwrap();

    // Restored into a fresh SQLite store: the thief is refused, the other delivers.
    let restored = t.join("restored");
    let r = restored.to_str().unwrap();
    let out = ok(
        uplink(&[
            "store",
            "restore",
            "--data-dir",
            r,
            "--master-key-file",
            k,
            "--from",
            f,
        ]),
        "store restore",
    );
    assert!(
        out.contains("restored 1 workspace, 2 sensors, 10 events"),
        "{out}"
    );
    let sqlite = ["--data-dir", r, "--master-key-file", k];
    assert_eq!(lifecycles(&sqlite), want);
    // When and why it was revoked, as `fleet show` tells it.
    let revocation = |store: &[&str]| {
        let mut args = vec!["fleet", "show", "fs", &thief.sensor_id, "--json"];
        args.extend_from_slice(store);
        let v = json(&args);
        (v["revoked_at"].clone(), v["revoke_reason"].clone())
    };
    let revoked_as = revocation(&["--data-dir", d]);
    assert_eq!(revoked_as.1, "laptop stolen");
    let check_store = |store: &[&str]| {
        assert_eq!(revocation(store), revoked_as);
        let mut show = vec!["workspace", "show", "fs", "--json"];
        show.extend_from_slice(store);
        let shown = json(&show);
        assert_eq!(shown["enroll_limit"], 7, "{shown}");
        assert_eq!(shown["client_cert_validity_secs"], 2 * 86_400, "{shown}");
        let mut policy = vec!["fleet", "policy", "show", "fs", "--json"];
        policy.extend_from_slice(store);
        let policy = json(&policy);
        assert_eq!(policy["version"], 2, "{policy}");
        assert!(
            policy["policy"].to_string().contains("proxy.example:3128"),
            "{policy}"
        );
    };
    check_store(&sqlite);
    let svc2 = ServiceProc::start_with(&restored, &["--master-key-file", k]);
    let (status, body) = post(t, &ws, svc2.port, &thief, 5..10);
    assert_eq!(
        (status, code(&body).as_str()),
        (403, "CERT_REVOKED"),
        "{body}\n{}",
        svc2.log()
    );
    let (status, body) = post(t, &ws, svc2.port, &good, 5..10);
    assert_eq!(status, 200, "{body}\n{}", svc2.log());
    let crl = crl_text(t, &ws, svc2.port);
    assert!(crl.contains(&serial), "{serial} not in {crl}");
    drop(svc2);
    // The restored directory's own key: the backed-up store's (as its administrator puts it).
    std::fs::copy(&key, restored.join("master.key")).unwrap();
    let rows = exported(&restored, "fs");
    let count = |id: &str| rows.iter().filter(|(s, _, _)| s == id).count();
    assert_eq!((count(&thief.sensor_id), count(&good.sensor_id)), (5, 10));

    // Copied into PostgreSQL: the same.
    let cluster = Cluster::start().unwrap();
    let db = Db::new(&cluster, t);
    let out = ok(
        uplink(&[
            "store",
            "migrate",
            "--from",
            r,
            "--from-master-key-file",
            k,
            "--to",
            &db.url,
            "--master-key-file",
            &db.key,
        ]),
        "store migrate",
    );
    assert!(out.contains("1 revocation"), "{out}");
    assert!(out.contains("verified fs: 2 sensors, 15 events"), "{out}");
    assert_eq!(lifecycles(&db.args()), want);
    check_store(&db.args());
    let pg = PgService::start_with(&db, "127.0.0.1:0", &[]);
    let (status, body) = post(t, &ws, pg.port, &thief, 10..15);
    assert_eq!(
        (status, code(&body).as_str()),
        (403, "CERT_REVOKED"),
        "{body}\n{}",
        pg.log()
    );
    let (status, body) = post(t, &ws, pg.port, &good, 10..15);
    assert_eq!(status, 200, "{body}\n{}", pg.log());
    let crl = crl_text(t, &ws, pg.port);
    assert!(crl.contains(&serial), "{serial} not in {crl}");
    let rows = export(&db, "fs");
    assert_eq!(rows.len(), 5 + 15, "{rows:?}");

    // A CA rotation in progress: the previous CA comes along, so the retirement is still refused
    // while the active sensor has not moved (without it: "no previous CA", and the sensors on
    // the old CA refused).
    ok(
        uplink(&["workspace", "rotate-ca", "fs", "--data-dir", d]),
        "workspace rotate-ca",
    );
    let file2 = t.join("rotating.backup");
    ok(
        uplink(&[
            "store",
            "backup",
            "--data-dir",
            d,
            "--to",
            file2.to_str().unwrap(),
        ]),
        "store backup during a rotation",
    );
    let rotating = t.join("rotating");
    ok(
        uplink(&[
            "store",
            "restore",
            "--data-dir",
            rotating.to_str().unwrap(),
            "--master-key-file",
            k,
            "--from",
            file2.to_str().unwrap(),
        ]),
        "store restore during a rotation",
    );
    let out = uplink(&[
        "workspace",
        "rotate-ca",
        "fs",
        "--retire-old",
        "--json",
        "--data-dir",
        rotating.to_str().unwrap(),
        "--master-key-file",
        k,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("{e}: {}{}", stdout(&out), stderr(&out)));
    assert_eq!(
        v["sensors_not_moved"],
        serde_json::json!([good.sensor_id]),
        "{v}"
    );

    // A backup written in format 1 (no revocations, no lifecycle settings) still restores.
    let old: Vec<String> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            if v.get("uplink_backup").is_some() {
                v["uplink_backup"] = 1.into();
            }
            if let Some(w) = v.get_mut("workspace") {
                w.as_object_mut().unwrap().remove("lifecycle");
            }
            if let Some(s) = v.get_mut("sensor") {
                s.as_object_mut().unwrap().remove("revocation");
            }
            v.to_string()
        })
        .collect();
    let old_file = t.join("format1.backup");
    std::fs::write(&old_file, old.join("\n") + "\n").unwrap();
    let out = ok(
        uplink(&[
            "store",
            "restore",
            "--data-dir",
            t.join("from-format-1").to_str().unwrap(),
            "--master-key-file",
            k,
            "--from",
            old_file.to_str().unwrap(),
        ]),
        "store restore of a format 1 backup",
    );
    assert!(
        out.contains("restored 1 workspace, 2 sensors, 10 events"),
        "{out}"
    );
}
