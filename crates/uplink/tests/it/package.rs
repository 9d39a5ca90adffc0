//! The Debian package (packaging/build-deb.sh) built, inspected, and installed, upgraded, removed
//! and purged on a clean root, for real, without touching the build machine.
//!
//! The packages are built once per test run (release profile, the quick CI package): the current
//! version, and the same build labelled with a lower version (`--version 0.0.1`) to upgrade from.
//! Both carry the same binary: what an upgrade exercises is dpkg and the maintainer scripts, and
//! that files written by the old install (queue, checkpoints, store) survive them.
//!
//! The clean root: a private mount namespace whose /etc, /usr and /var are overlays on the host's
//! (writes land in the test's temporary upper directories, so dpkg's database, the users adduser
//! makes and the installed files vanish with the test) and whose /run is an empty tmpfs — so
//! systemd is not PID 1 there, whatever the host runs, as in a container or a chroot: the
//! maintainer scripts must succeed without it, and cannot reach the host's systemd. Chosen over
//! a debootstrap chroot, which downloads a Debian system on every CI run (minutes, and a mirror).
//! What needs systemd as PID 1 — the upgrade restarting a running unit — is package_systemd.rs,
//! in a container booted with systemd-nspawn. The host must not have the uplink
//! package installed, and after each test its paths must be as they were.

use crate::support;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use support::daemon::Daemon;
use support::*;

const SENSOR_UNIT: &str = "/lib/systemd/system/uplink-sensor.service";
const SERVICE_UNIT: &str = "/lib/systemd/system/uplink-service.service";
const WANTS: &str = "/etc/systemd/system/multi-user.target.wants/uplink-sensor.service";
/// The version of the package the upgrade starts from.
pub(crate) const LOWER: &str = "0.0.1";

pub(crate) struct Packages {
    pub(crate) current: PathBuf,
    pub(crate) lower: PathBuf,
    tarball: PathBuf,
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Builds the packages once for the whole test run; every test of this module (and
/// package_systemd.rs) shares them.
pub(crate) fn packages() -> &'static Packages {
    static BUILT: OnceLock<Result<Packages, String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        for p in [
            "dpkg-deb",
            "dpkg-shlibdeps",
            "python3",
            "strip",
            "cargo",
            "nice",
        ] {
            require(p);
        }
        let build = |args: &[&str]| -> Result<Vec<PathBuf>, String> {
            // At the lowest priority: the suite's other tests run beside this release build,
            // on the same two cores, and their bounds must hold.
            let mut cmd = Command::new("nice");
            cmd.args(["-n", "19"])
                .arg(repo().join("packaging/build-deb.sh"));
            // As from a shell, not as from `cargo test`: cargo adds its own directories to
            // LD_LIBRARY_PATH, which clang-sys's build script watches, so the release build
            // would be redone here and again at the next build outside the tests.
            cmd.env_remove("LD_LIBRARY_PATH");
            for (k, _) in std::env::vars_os() {
                let k = k.to_string_lossy();
                if k.starts_with("CARGO_")
                    && !matches!(
                        &*k,
                        "CARGO_HOME"
                            | "CARGO_TARGET_DIR"
                            | "CARGO_INCREMENTAL"
                            | "CARGO_BUILD_JOBS"
                    )
                {
                    cmd.env_remove(&*k);
                }
            }
            let out = cmd
                .args(["--profile", "release"])
                .args(args)
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("cannot run packaging/build-deb.sh: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "packaging/build-deb.sh --profile release {args:?} failed ({}):\n{}\n{}",
                    out.status,
                    stdout(&out),
                    stderr(&out)
                ));
            }
            Ok(stdout(&out).lines().map(PathBuf::from).collect())
        };
        let current = build(&["--tarball"])?;
        let lower = build(&["--version", LOWER])?;
        Ok(Packages {
            current: current[0].clone(),
            tarball: current[1].clone(),
            lower: lower[0].clone(),
        })
    });
    match built {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

fn the_version() -> String {
    // `uplink --version` prints "uplink X.Y.Z".
    let v = ok(uplink(&["--version"]), "uplink --version");
    v.trim().trim_start_matches("uplink ").to_owned()
}

/// `dpkg-deb ARGS DEB`'s output.
fn dpkg_deb(args: &[&str], deb: &Path) -> String {
    ok(
        Command::new("dpkg-deb")
            .args(args)
            .arg(deb)
            .stdin(Stdio::null())
            .output()
            .unwrap(),
        &format!("dpkg-deb {args:?}"),
    )
}

#[test]
fn the_package_holds_the_binary_hardened_units_docs_and_the_service_settings() {
    let p = packages();
    let version = the_version();
    assert_eq!(
        p.current.file_name().unwrap().to_str().unwrap(),
        format!("uplink_{version}-1_amd64.deb")
    );
    assert_eq!(
        dpkg_deb(&["-f"], &p.current)
            .lines()
            .find_map(|l| l.strip_prefix("Version: "))
            .unwrap(),
        format!("{version}-1")
    );
    let control = dpkg_deb(&["-f"], &p.current);
    let depends = control
        .lines()
        .find_map(|l| l.strip_prefix("Depends: "))
        .unwrap_or_else(|| panic!("no Depends:\n{control}"));
    for want in ["adduser", "libc6", "libgssapi-krb5-2"] {
        assert!(depends.contains(want), "Depends lacks {want}: {depends}");
    }

    // Every file: (path, mode, owner "root/root"), from the package's own listing.
    let listing = dpkg_deb(&["-c"], &p.current);
    let mut files: BTreeMap<String, (String, String)> = BTreeMap::new();
    for line in listing.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let path = cols[5].trim_start_matches('.').to_owned();
        files.insert(path, (cols[0].to_owned(), cols[1].to_owned()));
    }
    for (path, mode) in [
        ("/usr/bin/uplink", "-rwxr-xr-x"),
        (SENSOR_UNIT, "-rw-r--r--"),
        (SERVICE_UNIT, "-rw-r--r--"),
        // The service's settings may hold a database password.
        ("/etc/default/uplink-service", "-rw-------"),
        ("/usr/share/doc/uplink/copyright", "-rw-r--r--"),
        ("/usr/share/doc/uplink/changelog.Debian.gz", "-rw-r--r--"),
        ("/usr/share/man/man1/uplink.1.gz", "-rw-r--r--"),
        (
            "/usr/share/man/man1/uplink-sensor-install.1.gz",
            "-rw-r--r--",
        ),
        ("/usr/share/man/man1/uplink-service.1.gz", "-rw-r--r--"),
        (
            "/usr/share/bash-completion/completions/uplink",
            "-rw-r--r--",
        ),
        ("/usr/share/zsh/vendor-completions/_uplink", "-rw-r--r--"),
        (
            "/usr/share/fish/vendor_completions.d/uplink.fish",
            "-rw-r--r--",
        ),
    ] {
        let (m, owner) = files
            .get(path)
            .unwrap_or_else(|| panic!("{path} is not in the package:\n{listing}"));
        assert_eq!((m.as_str(), owner.as_str()), (mode, "root/root"), "{path}");
    }
    for (path, (_, owner)) in &files {
        assert_eq!(owner, "root/root", "{path}");
    }
    // The hidden generator documents itself nowhere.
    assert!(!files.keys().any(|f| f.contains("generate")), "{listing}");

    let info = tempfile::tempdir().unwrap();
    let root = info.path().join("root");
    ok(
        Command::new("dpkg-deb")
            .arg("-x")
            .arg(&p.current)
            .arg(&root)
            .output()
            .unwrap(),
        "dpkg-deb -x",
    );
    let conffiles = dpkg_deb(&["-I"], &p.current);
    assert!(conffiles.contains("conffiles"), "{conffiles}");
    let settings = std::fs::read_to_string(root.join("etc/default/uplink-service")).unwrap();
    for want in [
        "\nUPLINK_LISTEN=",
        "\nUPLINK_DATA_DIR=/var/lib/uplink-service\n",
        "\n#UPLINK_DATABASE_URL=",
        "\nUPLINK_MASTER_KEY_FILE=",
    ] {
        assert!(settings.contains(want), "missing {want:?}:\n{settings}");
    }
    // The copyright names every crate the binary links, with a license: spot-check a few.
    let copyright = std::fs::read_to_string(root.join("usr/share/doc/uplink/copyright")).unwrap();
    for krate in [
        "- tokio ",
        "- rustls ",
        "- clap ",
        "- aws-lc-rs ",
        "- rquickjs ",
    ] {
        assert!(copyright.contains(krate), "copyright lacks {krate}");
    }
    assert!(!copyright.contains(": UNKNOWN\n"));
    assert!(
        !copyright.contains("- clap_derive "),
        "proc-macros are not bundled"
    );

    // Both units: hardened (exposure at most 2.0, as systemd-analyze measures it offline: no
    // systemd as PID 1 is needed for that).
    require("systemd-analyze");
    for unit in [SENSOR_UNIT, SERVICE_UNIT] {
        let path = root.join(unit.trim_start_matches('/'));
        let out = Command::new("systemd-analyze")
            .args(["security", "--offline=true", "--threshold=20", "--no-pager"])
            .arg(&path)
            .output()
            .unwrap();
        let text = stdout(&out);
        let exposure: f64 = text
            .lines()
            .find_map(|l| l.split("Overall exposure level for ").nth(1))
            .and_then(|l| l.split(": ").nth(1))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no exposure for {unit}:\n{text}\n{}", stderr(&out)));
        assert!(exposure <= 2.0, "{unit}: exposure {exposure}\n{text}");
        assert!(out.status.success(), "{unit}: {text}\n{}", stderr(&out));
    }

    // The man pages and completions come from this binary's CLI.
    let bash =
        std::fs::read_to_string(root.join("usr/share/bash-completion/completions/uplink")).unwrap();
    assert!(
        bash.contains("--bundle"),
        "bash completion lacks sensor install's flags"
    );
    assert!(
        !bash.contains("generate"),
        "the hidden generator is offered by the completions"
    );

    // The tarball: binary, units, settings, man pages, completions, install notes.
    let tar = ok(
        Command::new("tar")
            .arg("-tzf")
            .arg(&p.tarball)
            .output()
            .unwrap(),
        "tar -t",
    );
    let top = format!("uplink-{version}-x86_64-linux-gnu/");
    for f in [
        "bin/uplink",
        "systemd/uplink-sensor.service",
        "systemd/uplink-service.service",
        "systemd/uplink-service.default",
        "man/man1/uplink.1.gz",
        "completions/uplink",
        "INSTALL.md",
        "COPYRIGHT",
    ] {
        assert!(
            tar.lines().any(|l| l == format!("{top}{f}")),
            "{f} not in the tarball:\n{tar}"
        );
    }
}

/// lintian finds no error in the package.
#[test]
fn lintian_reports_no_errors() {
    let p = packages();
    require("lintian");
    let out = Command::new("lintian")
        .args(["--fail-on", "error", "--no-tag-display-limit"])
        .arg(&p.current)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(
        out.status.success() && !text.lines().any(|l| l.starts_with("E: ")),
        "lintian ({}):\n{text}\n{}",
        out.status,
        stderr(&out)
    );
}

/// A clean root: /etc, /usr and /var overlaid (upper layers in `dir`), an empty /run.
struct CleanRoot {
    holder: Daemon,
}

impl CleanRoot {
    fn new(dir: &Path) -> CleanRoot {
        for p in ["unshare", "nsenter", "mount", "setpriv", "dpkg", "adduser"] {
            require(p);
        }
        let mut script = String::from("set -e\n");
        for (name, target) in [("etc", "/etc"), ("usr", "/usr"), ("var", "/var")] {
            let upper = dir.join(format!("{name}-upper"));
            let work = dir.join(format!("{name}-work"));
            std::fs::create_dir_all(&upper).unwrap();
            std::fs::create_dir_all(&work).unwrap();
            script.push_str(&format!(
                "mount -t overlay uplink-pkg-test -o lowerdir={target},upperdir={},workdir={} {target}\n",
                upper.display(),
                work.display()
            ));
        }
        // No systemd as PID 1 here, whatever the host runs (its /run/systemd/system is hidden).
        script.push_str("mount -t tmpfs -o mode=0755 uplink-pkg-run /run\n");
        // man-db's trigger would re-index every man page of the host at each dpkg call.
        script.push_str("rm -f /var/lib/man-db/auto-update\n");
        script.push_str("echo namespace ready\nexec sleep infinity\n");
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "sh", "-c", &script]);
        let holder = Daemon::spawn("the package's clean root (unshare)", cmd);
        holder.expect("namespace ready", Duration::from_secs(20));
        CleanRoot { holder }
    }

    fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--mount=/proc/{}/ns/mnt", self.holder.pid()))
            .arg("--")
            .arg(program)
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null());
        scrub_proxy_env(&mut c);
        c
    }

    #[track_caller]
    fn run(&self, program: &str, args: &[&str]) -> String {
        ok(
            self.command(program, args).output().unwrap(),
            &format!("{program} {args:?} in the clean root"),
        )
    }

    /// `/usr/bin/uplink ARGS` as the `uplink` user, as the packaged unit runs it.
    fn sensor(&self, args: &[&str]) -> Command {
        let mut all = vec![
            "--reuid=uplink",
            "--regid=uplink",
            "--init-groups",
            "/usr/bin/uplink",
        ];
        all.extend_from_slice(args);
        self.command("setpriv", &all)
    }

    fn path(&self, inside: &str) -> PathBuf {
        Path::new(&format!("/proc/{}/root", self.holder.pid())).join(inside.trim_start_matches('/'))
    }

    fn exists(&self, inside: &str) -> bool {
        self.path(inside).symlink_metadata().is_ok()
    }

    /// The passwd entry of `user` in the clean root, if any.
    fn user(&self, user: &str) -> Option<String> {
        std::fs::read_to_string(self.path("/etc/passwd"))
            .unwrap()
            .lines()
            .find(|l| l.split(':').next() == Some(user))
            .map(str::to_owned)
    }

    fn group(&self, group: &str) -> bool {
        std::fs::read_to_string(self.path("/etc/group"))
            .unwrap()
            .lines()
            .any(|l| l.split(':').next() == Some(group))
    }

    /// Every file under `dirs` with its content, mode and owner.
    fn snapshot(&self, dirs: &[&str]) -> BTreeMap<String, (Vec<u8>, u32, u32)> {
        fn walk(path: &Path, name: String, out: &mut BTreeMap<String, (Vec<u8>, u32, u32)>) {
            let meta = std::fs::symlink_metadata(path).unwrap();
            let content = if meta.is_file() {
                std::fs::read(path).unwrap()
            } else {
                Vec::new()
            };
            out.insert(name.clone(), (content, meta.mode(), meta.uid()));
            if meta.is_dir() {
                for e in std::fs::read_dir(path).unwrap() {
                    let e = e.unwrap();
                    walk(
                        &e.path(),
                        format!("{name}/{}", e.file_name().to_string_lossy()),
                        out,
                    );
                }
            }
        }
        let mut out = BTreeMap::new();
        for d in dirs {
            walk(&self.path(d), (*d).to_owned(), &mut out);
        }
        out
    }

    fn dpkg_status(&self) -> String {
        let out = self
            .command("dpkg-query", &["-W", "-f=${Status} ${Version}", "uplink"])
            .output()
            .unwrap();
        stdout(&out)
    }
}

/// The host must not have the package: the test compares a clean root against the host's.
fn host_paths() -> Vec<(&'static str, bool)> {
    [
        "/usr/bin/uplink",
        SENSOR_UNIT,
        SERVICE_UNIT,
        "/etc/default/uplink-service",
        "/etc/uplink",
        "/var/lib/uplink",
        "/var/lib/uplink-service",
    ]
    .into_iter()
    .map(|p| (p, Path::new(p).symlink_metadata().is_ok()))
    .collect()
}

#[test]
fn install_upgrade_remove_and_purge_on_a_clean_root_keep_and_deliver_every_queued_event() {
    let p = packages();
    let before = host_paths();
    assert!(
        before.iter().all(|(_, e)| !e),
        "this machine has uplink installed ({before:?}); the test compares against a clean host"
    );
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    let svc = ServiceProc::start(&data);
    let ws = create_workspace(&data, "packaged", svc.port);
    let root = CleanRoot::new(dir.path());
    assert!(root.user("uplink").is_none() && root.user("uplink-service").is_none());

    // Install the lower version: users made, files in place, nothing enabled or started.
    root.run("dpkg", &["-i", p.lower.to_str().unwrap()]);
    assert_eq!(
        root.dpkg_status(),
        format!("install ok installed {LOWER}-1")
    );
    for user in ["uplink", "uplink-service"] {
        let entry = root.user(user).unwrap_or_else(|| panic!("no user {user}"));
        assert!(entry.ends_with(":/usr/sbin/nologin"), "{entry}");
        assert!(root.group(user), "no group {user}");
    }
    for (path, mode) in [
        ("/usr/bin/uplink", 0o755),
        (SENSOR_UNIT, 0o644),
        (SERVICE_UNIT, 0o644),
        ("/etc/default/uplink-service", 0o600),
    ] {
        let meta = std::fs::metadata(root.path(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(meta.permissions().mode() & 0o7777, mode, "{path}");
        assert_eq!((meta.uid(), meta.gid()), (0, 0), "{path}");
    }
    let version = root.run("/usr/bin/uplink", &["--version"]);
    assert_eq!(version.trim(), format!("uplink {}", the_version()));
    let enabled: Vec<_> = std::fs::read_dir(root.path("/etc/systemd/system"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".wants"))
        .flat_map(|d| std::fs::read_dir(d.path()).unwrap().flatten())
        .filter(|e| e.file_name().to_string_lossy().starts_with("uplink"))
        .map(|e| e.path())
        .collect();
    assert!(enabled.is_empty(), "installing enabled {enabled:?}");
    // The units as installed, with their users present.
    require("systemd-analyze");
    for unit in [SENSOR_UNIT, SERVICE_UNIT] {
        let out = root
            .command("systemd-analyze", &["verify", unit])
            .output()
            .unwrap();
        assert!(
            out.status.success() && stderr(&out).trim().is_empty(),
            "systemd-analyze verify {unit}: {}",
            stderr(&out)
        );
    }

    // Configure the sensor with the default paths: the packaged unit is enabled, none written.
    let out = root.run(
        "/usr/bin/uplink",
        &[
            "sensor",
            "install",
            "--bundle",
            ws.bundle_path.to_str().unwrap(),
        ],
    );
    assert!(
        out.contains(&format!("enabled the packaged {SENSOR_UNIT}")),
        "{out}"
    );
    assert_eq!(
        std::fs::read_link(root.path(WANTS)).unwrap(),
        Path::new(SENSOR_UNIT)
    );
    assert!(!root.exists("/etc/systemd/system/uplink-sensor.service"));
    let uplink_uid = root
        .user("uplink")
        .unwrap()
        .split(':')
        .nth(2)
        .unwrap()
        .parse::<u32>()
        .unwrap();
    assert_eq!(
        std::fs::metadata(root.path("/etc/uplink/sensor.toml"))
            .unwrap()
            .uid(),
        uplink_uid,
        "the sensor's files are the uplink user's"
    );
    // Events queued before the upgrade, as the packaged sensor's user.
    let input: String = (0..25)
        .map(|n| format!("{{\"kind\":\"upgrade\",\"n\":{n}}}\n"))
        .collect();
    ok(
        with_stdin(root.sensor(&["sensor", "send"]), &input),
        "sensor send",
    );
    // A store for the service, as an administrator makes it, as its user.
    ok(
        root.command(
            "setpriv",
            &[
                "--reuid=uplink-service",
                "--regid=uplink-service",
                "--init-groups",
                "/usr/bin/uplink",
                "workspace",
                "create",
                "kept",
                "--data-dir",
                "/var/lib/uplink-service",
            ],
        )
        .output()
        .unwrap(),
        "workspace create in /var/lib/uplink-service",
    );
    let kept = ["/etc/uplink", "/var/lib/uplink", "/var/lib/uplink-service"];
    let state = root.snapshot(&kept);
    assert!(
        state
            .keys()
            .any(|k| k.starts_with("/var/lib/uplink/queue/")),
        "{:?}",
        state.keys()
    );
    assert!(
        state.contains_key("/var/lib/uplink-service/master.key"),
        "{:?}",
        state.keys()
    );
    assert!(
        exported(&data, &ws.name).is_empty(),
        "nothing delivered before the upgrade"
    );

    // Upgrade: every queue, checkpoint and store file as it was.
    root.run("dpkg", &["-i", p.current.to_str().unwrap()]);
    assert_eq!(
        root.dpkg_status(),
        format!("install ok installed {}-1", the_version())
    );
    assert!(
        root.snapshot(&kept) == state,
        "the upgrade changed the sensor's or the service's files"
    );
    assert_eq!(
        std::fs::read_link(root.path(WANTS)).unwrap(),
        Path::new(SENSOR_UNIT),
        "the upgrade kept the sensor enabled"
    );
    // The queued events are delivered after it, each once.
    ok(
        root.sensor(&["sensor", "run", "--once", "--timeout", "60s"])
            .output()
            .unwrap(),
        "sensor run --once after the upgrade",
    );
    support::sensor::assert_n_exactly_once(&exported(&data, &ws.name), "upgrade", 25);

    // Remove: the program and units go; data, settings and users stay.
    let state = root.snapshot(&kept);
    root.run("dpkg", &["-r", "uplink"]);
    for gone in ["/usr/bin/uplink", SENSOR_UNIT, SERVICE_UNIT] {
        assert!(!root.exists(gone), "{gone} stayed after remove");
    }
    assert!(
        root.snapshot(&kept) == state,
        "remove changed the kept files"
    );
    assert!(
        root.exists("/etc/default/uplink-service"),
        "remove keeps the settings"
    );
    assert!(root.user("uplink").is_some() && root.user("uplink-service").is_some());
    assert!(root.dpkg_status().starts_with("deinstall ok config-files"));

    // Purge: data, settings, the enable link and the users go.
    root.run("dpkg", &["-P", "uplink"]);
    for gone in [
        "/etc/uplink",
        "/var/lib/uplink",
        "/var/lib/uplink-service",
        "/etc/default/uplink-service",
        WANTS,
    ] {
        assert!(!root.exists(gone), "{gone} stayed after purge");
    }
    for user in ["uplink", "uplink-service"] {
        assert!(root.user(user).is_none(), "user {user} stayed after purge");
        assert!(!root.group(user), "group {user} stayed after purge");
    }
    assert_eq!(root.dpkg_status(), "");

    drop(root);
    assert_eq!(
        host_paths(),
        before,
        "the host changed: the test was not confined"
    );
}
