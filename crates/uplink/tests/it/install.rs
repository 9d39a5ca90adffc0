//! `uplink sensor install` with the default paths — /etc/uplink, /var/lib/uplink and the systemd
//! unit in /etc/systemd/system — for real, without touching the build machine's /etc.
//!
//! Every other test installs into a `--config-dir`; the default paths are a different code path
//! (the unit is written, the files are handed to the `uplink` user when it exists). Here the
//! sensor's commands run in a private mount namespace whose /etc and /var/lib are overlays on
//! the host's: reads see the host's files (the CA bundle, /etc/group), writes land in the test's
//! temporary upper directories. The namespace's passwd/group can then be given an `uplink` user
//! too, so the dedicated-user path runs without adding a user to the host. After each test the
//! host's /etc/uplink, /var/lib/uplink and unit must still be absent: the proof of confinement.

use crate::support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};

use support::confined::Confined;
use support::*;

const UNIT: &str = "/etc/systemd/system/uplink-sensor.service";
const WANTS: &str = "/etc/systemd/system/multi-user.target.wants/uplink-sensor.service";
/// The dedicated user given to the namespace (uid and gid; no such id needs to exist on the host).
const UPLINK_ID: u32 = 4242;

/// Adds the `uplink` user and group to the namespace's /etc/passwd and /etc/group (the
/// overlay takes the write), and `uplink` to the `systemd-journal` group when it exists.
fn add_uplink_user(ns: &Confined) {
    let passwd = ns.path("/etc/passwd");
    let mut text = std::fs::read_to_string(&passwd).unwrap();
    text.push_str(&format!(
        "uplink:x:{UPLINK_ID}:{UPLINK_ID}:uplink sensor:/nonexistent:/usr/sbin/nologin\n"
    ));
    std::fs::write(&passwd, text).unwrap();
    let group = ns.path("/etc/group");
    let text = std::fs::read_to_string(&group).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        out.push_str(line);
        if line.starts_with("systemd-journal:") {
            out.push_str(if line.ends_with(':') {
                "uplink"
            } else {
                ",uplink"
            });
        }
        out.push('\n');
    }
    out.push_str(&format!("uplink:x:{UPLINK_ID}:\n"));
    std::fs::write(&group, out).unwrap();
}

fn run(mut cmd: Command, what: &str) -> String {
    ok(
        cmd.stdin(std::process::Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{what}: {e}")),
        what,
    )
}

fn send(c: &Confined, input: &str, as_user: bool) -> Output {
    with_stdin(c.uplink(&["sensor", "send"], as_user), input)
}

/// The host's own default paths are untouched.
#[track_caller]
fn assert_host_untouched(before: &[(&str, bool)]) {
    for (p, existed) in before {
        assert_eq!(
            Path::new(p).exists(),
            *existed,
            "{p} on the host changed: the test was not confined"
        );
    }
}

fn install_with_default_paths(dedicated_user: bool) {
    let host_paths = [UNIT, "/etc/uplink", "/var/lib/uplink"];
    let before: Vec<(&str, bool)> = host_paths
        .iter()
        .map(|p| (*p, Path::new(p).exists()))
        .collect();
    assert!(
        before.iter().all(|(_, e)| !e),
        "this machine has a sensor installed with the default paths ({before:?}); the test compares against a clean host"
    );
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    let svc = ServiceProc::start(&data);
    let ws = create_workspace(&data, "defaultpaths", svc.port);
    let ns = Confined::new(dir.path());
    if dedicated_user {
        add_uplink_user(&ns);
    }
    let journal_group = std::fs::read_to_string(ns.path("/etc/group"))
        .unwrap()
        .lines()
        .any(|l| l.starts_with("systemd-journal:"));

    // Install, with no --config-dir.
    let out = run(
        ns.uplink(
            &[
                "sensor",
                "install",
                "--bundle",
                ws.bundle_path.to_str().unwrap(),
                "--json",
            ],
            false,
        ),
        "sensor install",
    );
    let installed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(installed["config_dir"], "/etc/uplink");
    assert_eq!(installed["state_dir"], "/var/lib/uplink");
    let sensor_id = installed["sensor_id"].as_str().unwrap().to_owned();

    // The files, their modes and their owner.
    let owner = if dedicated_user { UPLINK_ID } else { 0 };
    for (path, mode) in [
        ("/etc/uplink", 0o700),
        ("/var/lib/uplink", 0o700),
        ("/etc/uplink/sensor.toml", 0o600),
        ("/etc/uplink/client.key", 0o600),
        ("/etc/uplink/client.pem", 0o644),
        ("/etc/uplink/ca.pem", 0o644),
    ] {
        let meta = std::fs::metadata(ns.path(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(
            meta.permissions().mode() & 0o7777,
            mode,
            "{path} has mode {:o}",
            meta.permissions().mode() & 0o7777
        );
        assert_eq!((meta.uid(), meta.gid()), (owner, owner), "{path}'s owner");
    }
    // The key is the one the certificate was issued for, and never printed.
    let key = std::fs::read_to_string(ns.path("/etc/uplink/client.key")).unwrap();
    assert!(key.contains("PRIVATE KEY"));
    assert!(!out.contains("PRIVATE KEY"));

    // The unit: written, for this binary, as the dedicated user with the journal group when
    // there is one, and accepted by systemd-analyze as it is on disk.
    let unit = std::fs::read_to_string(ns.path(UNIT)).expect("install wrote the unit");
    assert!(
        unit.contains(&format!("ExecStart={UPLINK} sensor run")),
        "{unit}"
    );
    if dedicated_user {
        assert!(unit.contains("User=uplink\n"), "{unit}");
        assert_eq!(
            unit.contains("SupplementaryGroups=systemd-journal\n"),
            journal_group,
            "{unit}"
        );
    } else {
        assert!(
            !unit.contains("User=") && !unit.contains("SupplementaryGroups="),
            "{unit}"
        );
    }
    require("systemd-analyze");
    let verify = ns
        .command("systemd-analyze", &["verify", UNIT])
        .output()
        .unwrap();
    assert!(
        verify.status.success() && stderr(&verify).trim().is_empty(),
        "systemd-analyze verify {UNIT}: {}\n{unit}",
        stderr(&verify)
    );

    // status finds it without --config-dir.
    let status: serde_json::Value = serde_json::from_str(&run(
        ns.uplink(&["sensor", "status", "--json"], dedicated_user),
        "sensor status",
    ))
    .unwrap();
    assert_eq!(status["workspace"], ws.name, "{status}");
    assert_eq!(status["sensor_id"], sensor_id.as_str(), "{status}");

    // send and run --once with the default paths (as the service would run them) upload to the
    // service on loopback.
    let input: String = (0..20)
        .map(|n| format!("{{\"kind\":\"install\",\"n\":{n}}}\n"))
        .collect();
    ok(send(&ns, &input, dedicated_user), "sensor send");
    run(
        ns.uplink(
            &["sensor", "run", "--once", "--timeout", "60"],
            dedicated_user,
        ),
        "sensor run --once",
    );
    let rows = exported(&data, &ws.name);
    assert!(rows.iter().all(|(id, _, _)| *id == sensor_id));
    support::sensor::assert_n_exactly_once(&rows, "install", 20);
    if dedicated_user {
        // What the sensor created while running is the dedicated user's too.
        let queue = std::fs::metadata(ns.path("/var/lib/uplink/queue")).unwrap();
        assert_eq!(queue.uid(), UPLINK_ID);
    }

    // As `systemctl enable` would (there is no systemd here to ask).
    std::fs::create_dir_all(ns.path(WANTS).parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(UNIT, ns.path(WANTS)).unwrap();

    // uninstall removes everything install wrote (the queue is empty: no --force).
    run(
        ns.uplink(&["sensor", "uninstall"], false),
        "sensor uninstall",
    );
    for path in ["/etc/uplink", "/var/lib/uplink", UNIT, WANTS] {
        let left: Vec<String> = std::fs::read_dir(ns.path(path))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            !ns.path(path).exists(),
            "{path} is still there after uninstall, holding {left:?}"
        );
    }
    if !dedicated_user {
        // A unit the administrator wrote is neither overwritten by install nor removed by
        // uninstall.
        let theirs = "[Unit]\nDescription=our own uplink unit\n";
        std::fs::write(ns.path(UNIT), theirs).unwrap();
        let out = run(
            ns.uplink(
                &[
                    "sensor",
                    "install",
                    "--bundle",
                    ws.bundle_path.to_str().unwrap(),
                ],
                false,
            ),
            "sensor install (again)",
        );
        assert!(out.contains(&format!("kept the existing {UNIT}")), "{out}");
        run(
            ns.uplink(&["sensor", "uninstall"], false),
            "sensor uninstall (again)",
        );
        assert_eq!(std::fs::read_to_string(ns.path(UNIT)).unwrap(), theirs);
        assert!(!ns.path("/etc/uplink").exists());
    }
    drop(ns);
    assert_host_untouched(&before);
}

#[test]
fn install_with_the_default_paths_as_root_writes_the_unit_and_uninstall_removes_it() {
    install_with_default_paths(false);
}

#[test]
fn install_with_the_default_paths_hands_the_sensor_to_the_uplink_user() {
    install_with_default_paths(true);
}

/// All or nothing: with /etc/systemd/system read-only, install fails before it enrolls and
/// leaves nothing behind; once the directory is writable, the same command installs (no
/// "already installed" from a half-done first try).
#[test]
fn a_read_only_unit_directory_installs_nothing() {
    let before: Vec<(&str, bool)> = [UNIT, "/etc/uplink", "/var/lib/uplink"]
        .iter()
        .map(|p| (*p, Path::new(p).exists()))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    let svc = ServiceProc::start(&data);
    let ws = create_workspace(&data, "readonlyunit", svc.port);
    let ns = Confined::new(dir.path());
    run(
        ns.command(
            "sh",
            &[
                "-c",
                "mount --bind /etc/systemd/system /etc/systemd/system && mount -o remount,bind,ro /etc/systemd/system",
            ],
        ),
        "make /etc/systemd/system read-only in the namespace",
    );
    let install = || {
        ns.uplink(
            &[
                "sensor",
                "install",
                "--bundle",
                ws.bundle_path.to_str().unwrap(),
            ],
            false,
        )
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
    };
    let out = install();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("nothing was installed")
            && stderr(&out).contains("/etc/systemd/system"),
        "{}",
        stderr(&out)
    );
    for p in ["/etc/uplink/sensor.toml", "/etc/uplink", "/var/lib/uplink"] {
        assert!(!ns.path(p).exists(), "{p} was left behind");
    }
    run(
        ns.command("umount", &["/etc/systemd/system"]),
        "make it writable again",
    );
    let out = install();
    assert!(out.status.success(), "the retry: {}", stderr(&out));
    assert!(ns.path("/etc/uplink/sensor.toml").exists());
    assert!(ns.path(UNIT).exists(), "the unit was written");
    drop(ns);
    assert_host_untouched(&before);
}
