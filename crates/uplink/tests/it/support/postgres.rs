//! A private PostgreSQL cluster for one test: `initdb` into a temporary directory, the server
//! listening only on a Unix socket in that directory (no TCP), stopped and removed on drop.
//!
//! Self-contained (std and tempfile only) so that the store crates' tests include it too
//! (`#[path = "…/support/postgres.rs"]`). PostgreSQL refuses to run as root: when the tests run
//! as root, the cluster belongs to the `postgres` system user (Debian's `postgresql` package
//! makes it) and its programs run through `setpriv`; the directory is that user's.
//!
//! A missing PostgreSQL fails the test with the install hint (under CI=true as everywhere): it is
//! never a silent skip.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A running cluster; the superuser is `uplink` (trust authentication on the socket only).
pub struct Cluster {
    dir: Option<tempfile::TempDir>,
    bin: PathBuf,
    /// The cluster's data directory.
    pub data: PathBuf,
    /// The directory holding the socket (`.s.PGSQL.PORT`).
    pub socket_dir: PathBuf,
    pub log: PathBuf,
    /// The loopback TCP port, for a cluster started with TLS ([`Cluster::start_tls`]).
    pub tcp_port: Option<u16>,
    as_postgres: bool,
}

const PORT: u16 = 5432;

impl Cluster {
    /// Makes and starts a cluster with a database named `uplink`. Returns `Option` for callers
    /// that may skip; today it always returns `Some` or panics with what is missing.
    pub fn start() -> Option<Cluster> {
        Self::start_with(None)
    }

    /// Like [`Cluster::start`], and also listening on 127.0.0.1 (a free port) with TLS, presenting
    /// `cert_pem` (its chain) and `key_pem`.
    pub fn start_tls(cert_pem: &str, key_pem: &str) -> Cluster {
        Self::start_with(Some((cert_pem, key_pem))).unwrap()
    }

    fn start_with(tls: Option<(&str, &str)>) -> Option<Cluster> {
        let bin = find_bindir().unwrap_or_else(|| {
            panic!(
                "PostgreSQL is not installed (no initdb in PATH or /usr/lib/postgresql/*/bin): run ./test.sh, or apt-get install postgresql{}",
                if std::env::var("CI").as_deref() == Ok("true") { " (CI=true: a missing PostgreSQL is an error, never a skip)" } else { "" }
            )
        });
        let as_postgres = is_root();
        let dir = tempfile::Builder::new()
            .prefix("uplink-pg-")
            .tempdir()
            .expect("temporary directory");
        let data = dir.path().join("data");
        let socket_dir = dir.path().to_path_buf();
        if as_postgres {
            let out = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(dir.path())
                .output()
                .expect("run chown");
            assert!(
                out.status.success(),
                "chown postgres {} failed (is there a `postgres` system user? apt-get install postgresql makes one): {}",
                dir.path().display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let tcp_port = tls.map(|_| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port()
        });
        let cluster = Cluster {
            tcp_port,
            log: dir.path().join("postgres.log"),
            dir: Some(dir),
            bin,
            data,
            socket_dir,
            as_postgres,
        };
        let data = cluster.data.display().to_string();
        cluster.run_ok(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "uplink",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ],
        );
        // The socket in our directory; TCP only on loopback, and only for a TLS cluster.
        let mut conf = format!(
            "listen_addresses = ''\nunix_socket_directories = '{}'\nport = {}\nfsync = on\nmax_connections = 100\n",
            cluster.socket_dir.display(),
            cluster.tcp_port.unwrap_or(PORT)
        );
        if let Some((cert, key)) = tls {
            for (name, pem) in [("server.crt", cert), ("server.key", key)] {
                let path = cluster.data.join(name);
                std::fs::write(&path, pem).expect("write the server's certificate and key");
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
                if as_postgres {
                    let out = Command::new("chown")
                        .arg("postgres:postgres")
                        .arg(&path)
                        .output()
                        .unwrap();
                    assert!(out.status.success(), "chown {}", path.display());
                }
            }
            conf.push_str("listen_addresses = '127.0.0.1'\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        }
        let conf_path = cluster.data.join("postgresql.conf");
        let mut all = std::fs::read_to_string(&conf_path).expect("postgresql.conf");
        all.push_str(&conf);
        std::fs::write(&conf_path, all).expect("write postgresql.conf");
        cluster.start_server();
        let sock = cluster.socket_dir.display().to_string();
        cluster.run_ok(
            "createdb",
            &[
                "-h",
                &sock,
                "-p",
                &cluster.port().to_string(),
                "-U",
                "uplink",
                "uplink",
            ],
        );
        Some(cluster)
    }

    /// A URL for `database` on this cluster's socket.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://uplink@/{database}?host={}&port={}",
            self.socket_dir.display(),
            self.port()
        )
    }

    /// A URL for `database` over TCP to `host` (which must resolve to 127.0.0.1), with `query`.
    pub fn tcp_url(&self, host: &str, database: &str, query: &str) -> String {
        let port = self.tcp_port.expect("a cluster started with start_tls");
        format!("postgres://uplink@{host}:{port}/{database}?{query}")
    }

    fn port(&self) -> u16 {
        self.tcp_port.unwrap_or(PORT)
    }

    /// Starts the server (after [`Cluster::stop`] or [`Cluster::crash`]) and waits until it
    /// accepts connections.
    pub fn start_server(&self) {
        let data = self.data.display().to_string();
        let log = self.log.display().to_string();
        self.run_ok(
            "pg_ctl",
            &["start", "-w", "-t", "60", "-D", &data, "-l", &log],
        );
    }

    /// Stops the server the way a crash or `kill -9` of the postmaster would leave it: no
    /// checkpoint (`immediate`); the next start replays the WAL.
    pub fn crash(&self) {
        let data = self.data.display().to_string();
        self.run_ok("pg_ctl", &["stop", "-w", "-m", "immediate", "-D", &data]);
    }

    /// Stops the server cleanly.
    pub fn stop(&self) {
        let data = self.data.display().to_string();
        self.run_ok("pg_ctl", &["stop", "-w", "-m", "fast", "-D", &data]);
    }

    /// `pg_dump` of `database` (plain SQL, data included), as text.
    pub fn pg_dump(&self, database: &str) -> String {
        let sock = self.socket_dir.display().to_string();
        let port = self.port().to_string();
        let args = ["-h", &sock, "-p", &port, "-U", "uplink", "-d", database];
        let out = self.run_ok("pg_dump", &args);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `psql -c SQL` on `database` and returns its unaligned, tuples-only output.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let sock = self.socket_dir.display().to_string();
        let out = self.run_ok(
            "psql",
            &[
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                &sock,
                "-p",
                &self.port().to_string(),
                "-U",
                "uplink",
                "-d",
                database,
                "-c",
                sql,
            ],
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// `pg_dump` of `database` (plain SQL), as an administrator's backup would hold it.
    pub fn dump(&self, database: &str) -> Vec<u8> {
        let sock = self.socket_dir.display().to_string();
        self.run_ok(
            "pg_dump",
            &[
                "-h",
                &sock,
                "-p",
                &self.port().to_string(),
                "-U",
                "uplink",
                database,
            ],
        )
        .stdout
    }

    /// The server's log, for failure messages.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut c = Command::new("setpriv");
            c.args([
                "--reuid=postgres",
                "--regid=postgres",
                "--init-groups",
                "--",
            ])
            .arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn run_ok(&self, program: &str, args: &[&str]) -> Output {
        let out = self
            .command(program)
            .args(args)
            .current_dir(self.dir.as_ref().map_or(Path::new("/"), |d| d.path()))
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}\nserver log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log_text()
        );
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.data.display().to_string();
        let _ = self
            .command("pg_ctl")
            .args(["stop", "-w", "-m", "immediate", "-D", &data])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Some(dir) = self.dir.take() {
            let _ = dir.close();
        }
    }
}

/// `initdb`'s directory: from PATH, else Debian's versioned directories (newest first).
fn find_bindir() -> Option<PathBuf> {
    let has_all = |d: &Path| {
        ["initdb", "pg_ctl", "createdb", "psql"]
            .iter()
            .all(|p| d.join(p).is_file())
    };
    let mut versioned: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    versioned.sort();
    versioned.reverse();
    if let Some(d) = versioned.into_iter().find(|d| has_all(d)) {
        return Some(d);
    }
    std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).find(|p| has_all(p)))
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}
