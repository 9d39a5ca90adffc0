//! A private view of /etc and /var/lib (and optionally a network of its own) for tests that run
//! uplink with its default paths — /etc/uplink, /var/lib/uplink, the systemd unit — or as the
//! README writes it, without touching the build machine: a holder process (`unshare`) owns a
//! mount namespace whose /etc and /var/lib are overlays on the host's (reads see the host's
//! files, writes land in the test's temporary upper directories). With [`Confined::with_network`]
//! it also owns a network namespace with only a loopback interface, where fixed ports are fine.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::daemon::Daemon;
use super::{require, scrub_proxy_env, UPLINK};

pub struct Confined {
    holder: Daemon,
    net: bool,
}

impl Confined {
    /// /etc and /var/lib as overlays whose upper layers are in `dir`.
    pub fn new(dir: &Path) -> Confined {
        Self::make(dir, false)
    }

    /// The same, in a network namespace of its own (loopback only, up).
    pub fn with_network(dir: &Path) -> Confined {
        Self::make(dir, true)
    }

    fn make(dir: &Path, net: bool) -> Confined {
        for p in ["unshare", "nsenter", "mount", "setpriv", "ip"] {
            require(p);
        }
        let mut mounts = String::from("set -e\n");
        if net {
            mounts.push_str("ip link set lo up\n");
        }
        for (name, target) in [("etc", "/etc"), ("varlib", "/var/lib")] {
            let upper = dir.join(format!("{name}-upper"));
            let work = dir.join(format!("{name}-work"));
            std::fs::create_dir_all(&upper).unwrap();
            std::fs::create_dir_all(&work).unwrap();
            mounts.push_str(&format!(
                "mount -t overlay uplink-test -o lowerdir={target},upperdir={},workdir={} {target}\n",
                upper.display(),
                work.display()
            ));
        }
        mounts.push_str("echo namespace ready\nexec sleep infinity\n");
        let mut cmd = Command::new("unshare");
        if net {
            cmd.arg("--net");
        }
        cmd.args(["--mount", "--propagation", "private", "sh", "-c", &mounts]);
        let holder = Daemon::spawn("the confined namespace (unshare)", cmd);
        holder.expect("namespace ready", Duration::from_secs(20));
        Confined { holder, net }
    }

    /// `program ARGS` inside the namespace(s), without the environment's proxy variables.
    pub fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--mount=/proc/{}/ns/mnt", self.holder.pid()));
        if self.net {
            c.arg(format!("--net=/proc/{}/ns/net", self.holder.pid()));
        }
        c.arg("--").arg(program).args(args);
        scrub_proxy_env(&mut c);
        c
    }

    /// `uplink ARGS` inside, as root or (`as_user`) as the `uplink` user with its groups, as
    /// systemd would start it.
    pub fn uplink(&self, args: &[&str], as_user: bool) -> Command {
        if as_user {
            let mut all = vec!["--reuid=uplink", "--regid=uplink", "--init-groups", UPLINK];
            all.extend_from_slice(args);
            self.command("setpriv", &all)
        } else {
            self.command(UPLINK, args)
        }
    }

    /// A path inside the namespace, seen from the host.
    pub fn path(&self, inside: &str) -> PathBuf {
        Path::new(&format!("/proc/{}/root", self.holder.pid())).join(inside.trim_start_matches('/'))
    }
}
