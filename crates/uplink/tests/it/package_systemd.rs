//! The package's upgrade under a real systemd: a container booted with `systemd-nspawn -b`, in
//! which the lower version is installed, the sensor configured and started by systemd against
//! the service on the host, events queued, and the current package installed over it. The
//! upgrade must restart the running unit (a new main process, running the installed binary, not
//! the replaced one), and every event queued before it must arrive once.
//!
//! The container's tree is the host's own system (package.rs explains why not debootstrap):
//! /usr, /etc and /var are overlays on the host's (nspawn's `--overlay`, upper layers in the
//! test's temporary directory), so nothing it installs reaches the host. It boots to a target of
//! its own (basic.target: journald, tmpfiles, no host services), with NetworkManager and the
//! wait-online services masked: it shares the host's network namespace (the service listens on
//! the host's loopback), which NetworkManager must never manage from inside.
//!
//! Where nspawn cannot boot a container (no systemd-nspawn privileges: an unprivileged CI
//! runner, a kernel without the namespaces), the test says why (nspawn's output) and passes
//! without checking: that is the machine's limit, not the package's. A missing
//! `systemd-nspawn` (package systemd-container, installed by test.sh) fails it, as any missing
//! tool does.

use crate::package::{packages, LOWER};
use crate::support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::daemon::Daemon;
use support::*;

/// A booted container; its systemd (and everything under it) is killed on drop.
struct Booted {
    nspawn: Option<Daemon>,
    /// The container's PID 1, as the host sees it.
    leader: u32,
}

/// The host PIDs whose parent is `parent`.
fn children(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) {
            out.push(pid);
        }
    }
    out
}

impl Booted {
    /// Boots the container, or says why it cannot (nspawn's own words).
    fn boot(dir: &Path, binds: &[(PathBuf, &str)]) -> Result<Booted, String> {
        let root = dir.join("root");
        for d in [
            "usr", "etc", "var", "proc", "sys", "dev", "run", "tmp", "root", "mnt",
        ] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        for l in ["bin", "lib", "lib64", "sbin"] {
            std::os::unix::fs::symlink(format!("usr/{l}"), root.join(l)).unwrap();
        }
        // nspawn checks that the directory is an OS tree before it mounts the overlays.
        std::fs::copy("/usr/lib/os-release", root.join("etc/os-release")).unwrap();
        // The container's own settings, in the upper layer of its /etc.
        let system = dir.join("etc-upper/systemd/system");
        std::fs::create_dir_all(&system).unwrap();
        std::fs::write(
            system.join("uplink-test.target"),
            "[Unit]\nDescription=uplink package test\nRequires=basic.target\nAfter=basic.target\nAllowIsolate=yes\n",
        )
        .unwrap();
        for masked in [
            "NetworkManager.service",
            "NetworkManager-wait-online.service",
            "systemd-networkd.service",
            "systemd-networkd-wait-online.service",
            "systemd-resolved.service",
        ] {
            std::os::unix::fs::symlink("/dev/null", system.join(masked)).unwrap();
        }
        for upper in ["usr-upper", "var-upper"] {
            std::fs::create_dir_all(dir.join(upper)).unwrap();
        }
        let name = format!(
            "uplink-test-{}-{}",
            std::process::id(),
            dir.file_name().unwrap().to_string_lossy().replace('.', "")
        );
        let mut cmd = Command::new("systemd-nspawn");
        cmd.args(["--quiet", "--register=no", "--keep-unit", "--console=pipe"])
            .arg(format!("--machine={name}"))
            .arg("--directory")
            .arg(&root);
        for (target, upper) in [
            ("/usr", "usr-upper"),
            ("/etc", "etc-upper"),
            ("/var", "var-upper"),
        ] {
            cmd.arg(format!(
                "--overlay={target}:{}:{target}",
                dir.join(upper).display()
            ));
        }
        for (host, inside) in binds {
            cmd.arg(format!("--bind-ro={}:{inside}", host.display()));
        }
        cmd.args(["--boot", "systemd.unit=uplink-test.target"]);
        let nspawn = Daemon::spawn("systemd-nspawn", cmd);
        // The container's systemd: nspawn's child once it runs /usr/lib/systemd/systemd.
        let deadline = Instant::now() + Duration::from_secs(60);
        let leader = loop {
            let found = children(nspawn.pid()).into_iter().find(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|c| c.trim() == "systemd")
            });
            if let Some(pid) = found {
                break pid;
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "no container systemd within 60 s; nspawn said:\n{}",
                    nspawn.log()
                ));
            }
            // nspawn exits at once when it cannot make the container: its output says why.
            if std::fs::read_to_string(format!("/proc/{}/stat", nspawn.pid()))
                .map_or(true, |s| s.contains(") Z "))
            {
                return Err(format!("systemd-nspawn exited:\n{}", nspawn.log()));
            }
            // A process appearing is no event one can wait on: look again shortly.
            std::thread::sleep(Duration::from_millis(100));
        };
        let booted = Booted {
            nspawn: Some(nspawn),
            leader,
        };
        // Booted: systemd says so (running, or degraded when a host unit fails in here) once its
        // start-up jobs are done; before its bus is up the command fails, so ask again.
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let out = booted
                .command(
                    "timeout",
                    &["60", "systemctl", "is-system-running", "--wait"],
                )
                .output()
                .unwrap();
            let state = stdout(&out).trim().to_owned();
            if state == "running" || state == "degraded" {
                return Ok(booted);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the container's systemd did not finish starting (is-system-running: {state:?}, {}); nspawn said:\n{}",
                    stderr(&out),
                    booted.nspawn.as_ref().unwrap().log()
                ));
            }
            // Its bus socket is not there yet: nothing to wait on but time.
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `program ARGS` inside the container (its mount, PID, IPC and UTS namespaces).
    fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--target={}", self.leader))
            .args(["--mount", "--pid", "--ipc", "--uts", "--"])
            .arg(program)
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null());
        scrub_proxy_env(&mut c);
        c
    }

    #[track_caller]
    fn run(&self, program: &str, args: &[&str]) -> String {
        let out = self.command(program, args).output().unwrap();
        if !out.status.success() {
            let journal = self
                .command(
                    "journalctl",
                    &["--no-pager", "-n", "80", "-u", "uplink-sensor"],
                )
                .output()
                .map(|o| stdout(&o))
                .unwrap_or_default();
            panic!(
                "{program} {args:?} in the container failed ({}):\n{}\n{}\njournal:\n{journal}",
                out.status,
                stdout(&out),
                stderr(&out)
            );
        }
        stdout(&out)
    }

    /// The sensor unit's main process (0: none).
    fn main_pid(&self) -> u32 {
        self.run(
            "systemctl",
            &[
                "show",
                "--property=MainPID",
                "--value",
                "uplink-sensor.service",
            ],
        )
        .trim()
        .parse()
        .unwrap()
    }
}

impl Drop for Booted {
    fn drop(&mut self) {
        // Killing a PID namespace's init kills everything in it; then nspawn exits by itself.
        let _ = Command::new("kill")
            .args(["-KILL", &self.leader.to_string()])
            .status();
        drop(self.nspawn.take());
    }
}

#[test]
fn an_upgrade_under_systemd_restarts_the_running_sensor_and_every_queued_event_arrives_once() {
    let p = packages();
    require("systemd-nspawn");
    require("nsenter");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    let svc = ServiceProc::start(&data);
    let ws = create_workspace(&data, "booted", svc.port);
    let debs = p.current.parent().unwrap().to_path_buf();
    let bundles = ws.bundle_path.parent().unwrap().to_path_buf();
    let booted = match Booted::boot(
        dir.path(),
        &[(debs, "/mnt/uplink-debs"), (bundles, "/mnt/uplink-bundles")],
    ) {
        Ok(b) => b,
        Err(why) => {
            eprintln!(
                "note: systemd-nspawn cannot boot a container on this machine; the upgrade's restart is not checked here:\n{why}"
            );
            return;
        }
    };
    let deb = |path: &Path| {
        format!(
            "/mnt/uplink-debs/{}",
            path.file_name().unwrap().to_string_lossy()
        )
    };
    // man-db's trigger would re-index every man page of the host at each dpkg call. A container
    // image's policy-rc.d (Docker's, "exit 101") forbids maintainer scripts to start or restart
    // anything: a booted system has none (the container's overlay loses it, not the host).
    booted.run(
        "rm",
        &["-f", "/var/lib/man-db/auto-update", "/usr/sbin/policy-rc.d"],
    );

    // The lower version, configured and started by systemd.
    booted.run("dpkg", &["-i", &deb(&p.lower)]);
    let bundle = format!(
        "/mnt/uplink-bundles/{}",
        ws.bundle_path.file_name().unwrap().to_string_lossy()
    );
    booted.run(
        "/usr/bin/uplink",
        &["sensor", "install", "--bundle", &bundle],
    );
    booted.run("systemctl", &["daemon-reload"]);
    booted.run("systemctl", &["start", "uplink-sensor.service"]);
    let before = booted.main_pid();
    assert_ne!(before, 0, "the sensor unit has no main process");
    let journal = || {
        booted
            .command(
                "journalctl",
                &["--no-pager", "-n", "60", "-u", "uplink-sensor"],
            )
            .output()
            .map(|o| stdout(&o))
            .unwrap_or_default()
    };
    // It reaches the service: its start's heartbeat is stored.
    poll_until(
        "the packaged sensor's heartbeat stored",
        60,
        || {
            exported(&data, &ws.name)
                .iter()
                .any(|(_, _, v)| v["kind"] == "heartbeat")
        },
        journal,
    );
    // Running with no Negotiate proxy, it has loaded none of MIT Kerberos (crates/gssapi loads
    // it at first use): 0.6 MiB of an idle sensor's resident memory (docs/benchmarks.md).
    let maps = booted.run("cat", &[&format!("/proc/{before}/maps")]);
    for lib in ["libgssapi_krb5", "libkrb5", "libk5crypto"] {
        assert!(!maps.contains(lib), "the idle sensor maps {lib}:\n{maps}");
    }
    // Events queued while it runs, as its user, then the upgrade at once: some are in flight
    // when the unit restarts.
    let input: String = (0..40)
        .map(|n| format!("{{\"kind\":\"upgrade\",\"n\":{n}}}\n"))
        .collect();
    ok(
        with_stdin(
            booted.command(
                "setpriv",
                &[
                    "--reuid=uplink",
                    "--regid=uplink",
                    "--init-groups",
                    "/usr/bin/uplink",
                    "sensor",
                    "send",
                ],
            ),
            &input,
        ),
        "sensor send in the container",
    );
    booted.run("dpkg", &["-i", &deb(&p.current)]);
    let status = booted.run("dpkg-query", &["-W", "-f=${Version}", "uplink"]);
    assert_ne!(status, format!("{LOWER}-1"), "the upgrade did not happen");

    // Restarted: a new main process, running the installed binary (the replaced one shows as
    // "(deleted)"), and active.
    let after = booted.main_pid();
    assert!(
        after != 0 && after != before,
        "MainPID {before} → {after}: not restarted\n{}",
        journal()
    );
    let exe = booted.run("readlink", &[&format!("/proc/{after}/exe")]);
    assert_eq!(exe.trim(), "/usr/bin/uplink", "the unit runs {exe:?}");
    assert_eq!(
        booted
            .run("systemctl", &["is-active", "uplink-sensor.service"])
            .trim(),
        "active"
    );
    let version = booted.run("/usr/bin/uplink", &["--version"]);
    assert!(
        status.starts_with(version.trim().trim_start_matches("uplink ")),
        "{status} vs {version}"
    );

    // Every queued event, once.
    poll_until(
        "the 40 events queued before the upgrade stored",
        90,
        || {
            exported(&data, &ws.name)
                .iter()
                .filter(|(_, _, v)| v["kind"] == "upgrade")
                .count()
                >= 40
        },
        journal,
    );
    support::sensor::assert_n_exactly_once(&exported(&data, &ws.name), "upgrade", 40);
    drop(booted);
}
