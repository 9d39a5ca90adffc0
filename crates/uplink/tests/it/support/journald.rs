//! A live systemd journal for tests: the real `systemd-journald`, confined to a private mount
//! namespace so that it never reads or writes the host's journal.
//!
//! Why a namespace rather than a journal file: the sensor's journal source follows the *system*
//! journal (`journalctl -f` with no `--file`), and only a running journald shows what that means
//! — entries arriving while followed, files rotated under the follower, the daemon restarted, a
//! cursor resumed across all of that. journald has no option to put its sockets and files
//! elsewhere (its positional argument is a journal *namespace*, which still lives under the
//! host's /run/systemd and /var/log/journal), so the test gives it its own view of those paths:
//!
//! - a holder process (`unshare --mount --propagation private`, then `sleep infinity`) owns the
//!   namespace, with tmpfs over /run/systemd, /run/log and /var/log/journal and a journald.conf
//!   bind-mounted over /etc/systemd/journald.conf (no kernel log, no forwarding, no rate limit);
//! - journald, the writers (`systemd-cat`), `journalctl` and the sensor under test all enter it
//!   with `nsenter --mount=/proc/HOLDER/ns/mnt` — which execs, so a pid is the program's own
//!   pid and signals reach it. Because the holder owns the namespace, journald can be stopped
//!   and started again in it;
//! - everything else (the network, /tmp with the sensor's `--config-dir`, the binary) is shared
//!   with the host, so the sensor reaches the service on loopback as in every other test.
//!
//! Readiness is journald's own log line (`running as PID`, printed to stderr with
//! `SYSTEMD_LOG_TARGET=console`); a stop waits for `stopped as PID`. Files inside the namespace
//! are read from the host through `/proc/HOLDER/root`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::daemon::Daemon;
use super::{ok, require, scrub_proxy_env, signal, with_stdin, UPLINK};

/// How long journald may take to start or stop.
const READY: Duration = Duration::from_secs(20);

/// journald's configuration in the namespace: nothing from the kernel or the host, no forwarding
/// to a syslog or console that is not ours, and no rate limit (the tests write thousands of
/// entries from one "service", the root cgroup).
const CONF: &str = "[Journal]
Storage=persistent
RateLimitBurst=0
ReadKMsg=no
Audit=no
ForwardToSyslog=no
ForwardToKMsg=no
ForwardToConsole=no
ForwardToWall=no
";

/// The systemd-journald binary (Debian's `systemd` package).
pub fn journald_binary() -> PathBuf {
    [
        "/lib/systemd/systemd-journald",
        "/usr/lib/systemd/systemd-journald",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
    .expect("systemd-journald is not installed: run ./test.sh, or apt-get install systemd")
}

/// A journald in its own mount namespace. Dropping it kills journald and the holder (the
/// namespace goes when the last process in it ends).
pub struct Journald {
    holder: Daemon,
    journald: Option<Daemon>,
    /// Times journald was started (for failure messages).
    starts: u32,
    _conf: tempfile::TempDir,
}

impl Journald {
    /// Makes the namespace and starts journald in it.
    pub fn start() -> Journald {
        for p in ["unshare", "nsenter", "systemd-cat", "journalctl", "mount"] {
            require(p);
        }
        journald_binary();
        let conf = tempfile::tempdir().unwrap();
        let conf_file = conf.path().join("journald.conf");
        std::fs::write(&conf_file, CONF).unwrap();
        // The journal directories are root:systemd-journal and setgid, as systemd's tmpfiles
        // makes them, so journal files are readable by that group (and only by it and root).
        let script = format!(
            "set -e
mount -t tmpfs -o mode=0755 uplink-test /run/systemd
mount -t tmpfs -o mode=0755 uplink-test /run/log
mount -t tmpfs -o mode=2755 uplink-test /var/log/journal
mkdir -p /run/log/journal
chgrp systemd-journal /run/log/journal /var/log/journal
chmod 2755 /run/log/journal /var/log/journal
mount --bind {conf} /etc/systemd/journald.conf
echo namespace ready
exec sleep infinity
",
            conf = conf_file.display()
        );
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "sh", "-c", &script]);
        let holder = Daemon::spawn("the journal namespace (unshare)", cmd);
        holder.expect("namespace ready", READY);
        let mut j = Journald {
            holder,
            journald: None,
            starts: 0,
            _conf: conf,
        };
        j.start_journald();
        j
    }

    fn start_journald(&mut self) {
        let mut cmd = self.command(journald_binary());
        cmd.env("SYSTEMD_LOG_TARGET", "console")
            .env("SYSTEMD_LOG_LEVEL", "debug");
        self.starts += 1;
        let d = Daemon::spawn(&format!("systemd-journald (start {})", self.starts), cmd);
        d.expect("running as PID", READY);
        self.journald = Some(d);
    }

    /// Stops journald with SIGTERM (it writes "Journal stopped" and closes its files) and
    /// starts a new one in the same namespace.
    pub fn restart(&mut self) {
        let old = self.journald.take().expect("journald running");
        signal(old.pid(), "TERM");
        old.expect("stopped as PID", READY);
        drop(old);
        self.start_journald();
    }

    /// The holder's pid: `/proc/PID/ns/mnt` is the namespace.
    pub fn ns_pid(&self) -> u32 {
        self.holder.pid()
    }

    /// journald's pid.
    pub fn journald_pid(&self) -> u32 {
        self.journald.as_ref().expect("journald running").pid()
    }

    /// `program` to be run inside the namespace (not yet started).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--mount=/proc/{}/ns/mnt", self.ns_pid()))
            .arg("--")
            .arg(program);
        c
    }

    /// `uplink ARGS` inside the namespace, without the environment's proxy variables (as
    /// [`super::uplink_cmd`]).
    pub fn uplink(&self, args: &[&str]) -> Command {
        let mut c = self.command(UPLINK);
        c.args(args);
        scrub_proxy_env(&mut c);
        c
    }

    /// A path inside the namespace, as seen from the host.
    pub fn path(&self, inside: &str) -> PathBuf {
        Path::new(&format!("/proc/{}/root", self.ns_pid())).join(inside.trim_start_matches('/'))
    }

    /// Writes each message as one entry with `SYSLOG_IDENTIFIER=identifier`, in order, through
    /// journald's stdout stream (`systemd-cat`). journald stores them asynchronously: wait for
    /// them with [`Journald::follow`].
    pub fn write(&self, identifier: &str, messages: &[String]) {
        let mut input = messages.join("\n");
        input.push('\n');
        let mut cmd = self.command("systemd-cat");
        cmd.args(["-t", identifier]);
        ok(with_stdin(cmd, &input), "systemd-cat");
    }

    /// `journalctl -f` for `identifier`'s messages (one per line) inside the namespace: a witness
    /// that an entry is in the journal ([`Daemon::expect`] on its message).
    pub fn follow(&self, identifier: &str) -> Daemon {
        let mut cmd = self.command("journalctl");
        cmd.args(["-f", "--no-tail", "-o", "cat", "-t", identifier]);
        Daemon::spawn(&format!("journalctl -f -t {identifier}"), cmd)
    }

    /// Every entry in the journal now, as `journalctl -o json` objects.
    pub fn entries(&self) -> Vec<serde_json::Value> {
        let mut cmd = self.command("journalctl");
        cmd.args(["-o", "json", "--no-pager", "--no-tail"]);
        let out = ok(cmd.output().expect("run journalctl"), "journalctl -o json");
        out.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("journalctl {l:?}: {e}")))
            .collect()
    }

    /// Asks journald to rotate its files (`journalctl --rotate`): the followed file is archived
    /// and a new one started.
    pub fn rotate(&self) {
        let mut cmd = self.command("journalctl");
        cmd.arg("--rotate");
        ok(
            cmd.output().expect("run journalctl --rotate"),
            "journalctl --rotate",
        );
    }

    /// The journal files in the namespace (archived ones have an `@` in their name).
    pub fn files(&self) -> Vec<String> {
        let mut out = Vec::new();
        for top in ["/run/log/journal", "/var/log/journal"] {
            let Ok(machines) = std::fs::read_dir(self.path(top)) else {
                continue;
            };
            for m in machines.flatten() {
                for f in std::fs::read_dir(m.path()).into_iter().flatten().flatten() {
                    out.push(f.file_name().to_string_lossy().into_owned());
                }
            }
        }
        out.sort();
        out
    }

    /// journald's output so far (every start), for failure messages.
    pub fn log(&self) -> String {
        let mut s = self.holder.log();
        if let Some(j) = &self.journald {
            s.push_str(&j.log());
        }
        s
    }
}

impl Drop for Journald {
    fn drop(&mut self) {
        // journald first (killed by its Daemon), then the holder: the namespace ends with them.
        self.journald.take();
    }
}
