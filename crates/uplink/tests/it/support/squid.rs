//! A real Squid on loopback for tests: free port, its own directory, optional Basic auth
//! (basic_ncsa_auth), a hosts_file that maps workspace host names to 127.0.0.1.

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{openssl, require, wait_exit};

pub const BASIC_HELPER: &str = "/usr/lib/squid/basic_ncsa_auth";

pub struct Squid {
    pub port: u16,
    pub listen: String,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
}

#[derive(Default)]
pub struct SquidOptions<'a> {
    /// Require Basic authentication for this user and password (basic_ncsa_auth).
    pub basic: Option<(&'a str, &'a str)>,
    /// Require Digest authentication for this user and password (digest_file_auth).
    pub digest: Option<(&'a str, &'a str)>,
    /// Require NTLM (ntlm_fake_auth: it accepts any user and password).
    pub ntlm: bool,
    /// Host names to resolve to 127.0.0.1.
    pub hosts: Vec<String>,
    /// Address to listen on (default 127.0.0.1).
    pub listen: Option<String>,
    /// More configuration lines (e.g. an `https_port`, see `tlsproxy.rs`).
    pub extra_conf: Vec<String>,
}

pub fn free_port() -> u16 {
    free_port_on("127.0.0.1")
}

pub fn free_port_on(addr: &str) -> u16 {
    std::net::TcpListener::bind((addr, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Squid {
    /// Starts Squid; if it exits at once (its free port was taken between probing and binding,
    /// a race with other tests), tries again on another port, up to three times.
    pub fn start(opts: SquidOptions<'_>) -> Squid {
        let mut last = String::new();
        for _ in 0..3 {
            match Self::try_start(&opts) {
                Ok(s) => return s,
                Err(logs) => last = logs,
            }
        }
        panic!("squid exited before accepting connections, three times:\n{last}");
    }

    fn try_start(opts: &SquidOptions<'_>) -> Result<Squid, String> {
        require("squid");
        let dir = tempfile::Builder::new()
            .prefix("uplink-squid-")
            .tempdir()
            .unwrap();
        // Squid drops to the `proxy` user: it must be able to write its logs and pid file here.
        chmod(dir.path(), 0o777);
        let listen = opts.listen.clone().unwrap_or_else(|| "127.0.0.1".into());
        let port = free_port_on(&listen);
        let d = dir.path().display();
        let mut conf = format!(
            "http_port {listen}:{port}\n\
             pid_filename {d}/squid.pid\n\
             cache_log {d}/cache.log\n\
             access_log stdio:{d}/access.log\n\
             cache deny all\n\
             cache_mem 8 MB\n\
             coredump_dir {d}\n\
             hosts_file {d}/hosts\n\
             shutdown_lifetime 0 seconds\n\
             dns_nameservers 127.0.0.1\n\
             acl CONNECT method CONNECT\n"
        );
        for line in &opts.extra_conf {
            conf.push_str(line);
            conf.push('\n');
        }
        let mut authenticated = false;
        if let Some((user, password)) = opts.basic {
            write_passwd(dir.path(), user, password);
            conf.push_str(&format!(
                "auth_param basic program {BASIC_HELPER} {d}/passwd\n\
                 auth_param basic casesensitive on\n\
                 auth_param basic realm uplink-test\n\
                 auth_param basic credentialsttl 1 second\n"
            ));
            authenticated = true;
        }
        if let Some((user, password)) = opts.digest {
            let f = dir.path().join("digest_passwd");
            std::fs::write(&f, format!("{user}:{password}\n")).unwrap();
            chmod(&f, 0o644);
            conf.push_str(&format!(
                "auth_param digest program /usr/lib/squid/digest_file_auth {d}/digest_passwd\n\
                 auth_param digest children 2\n\
                 auth_param digest realm uplink-test\n\
                 auth_param digest nonce_garbage_interval 1 minutes\n"
            ));
            authenticated = true;
        }
        if opts.ntlm {
            conf.push_str(
                "auth_param ntlm program /usr/lib/squid/ntlm_fake_auth\n\
                 auth_param ntlm children 2\n\
                 auth_param ntlm keep_alive on\n",
            );
            authenticated = true;
        }
        if authenticated {
            conf.push_str("acl authed proxy_auth REQUIRED\nhttp_access allow CONNECT authed\n");
        } else {
            conf.push_str("http_access allow CONNECT\n");
        }
        conf.push_str("http_access deny all\n");
        let hosts: String = opts
            .hosts
            .iter()
            .map(|h| format!("127.0.0.1 {h}\n"))
            .collect();
        std::fs::write(dir.path().join("hosts"), hosts).unwrap();
        std::fs::write(dir.path().join("squid.conf"), conf).unwrap();
        // Segments a killed Squid of the same name (same port, earlier test) may have left.
        remove_shm(port);
        let child = Command::new("squid")
            // A service name of its own: Squid names its shared-memory segments after it, so
            // two Squids started at once by parallel tests would otherwise collide.
            .args(["-N", "-n", &format!("uplink{port}"), "-f"])
            .arg(dir.path().join("squid.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("stderr.log")).unwrap(),
            ))
            .spawn()
            .expect("start squid");
        let mut squid = Squid {
            port,
            listen,
            dir,
            child: Some(child),
        };
        squid.wait_ready()?;
        Ok(squid)
    }

    /// Waits (bounded) until Squid accepts connections; on failure dumps its logs.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect((self.listen.as_str(), self.port)).is_err() {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Err(format!(
                    "squid exited ({st}) before accepting connections:\n{}",
                    self.logs()
                ));
            }
            assert!(
                Instant::now() < deadline,
                "squid did not accept connections within 30 s:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    pub fn url(&self) -> String {
        format!("http://{}:{}", self.listen, self.port)
    }

    /// Replaces the password file (basic_ncsa_auth re-reads it when it changes).
    pub fn set_password(&self, user: &str, password: &str) {
        write_passwd(self.dir.path(), user, password);
    }

    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    /// The access log once it holds `needle`, waiting up to `secs`: Squid writes a CONNECT's
    /// line when the tunnel ends, which can be after the client has its answer and has exited.
    pub fn access_log_with(&self, needle: &str, secs: u64) -> String {
        super::poll_until(
            &format!("Squid's access log to show {needle:?}"),
            secs,
            || self.access_log().contains(needle),
            || self.logs(),
        );
        self.access_log()
    }

    pub fn logs(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
        format!(
            "--- cache.log\n{}\n--- stderr\n{}\n--- access.log\n{}",
            read("cache.log"),
            read("stderr.log"),
            read("access.log")
        )
    }

    /// Stops Squid (which flushes its access log) and returns the log.
    pub fn stop(&mut self) -> String {
        if let Some(child) = self.child.take() {
            let pid = child.id();
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
            if wait_exit(child, Duration::from_secs(20)).is_none() {
                eprintln!("squid did not stop on SIGTERM; killed");
            }
        }
        self.access_log()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Squid {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        remove_shm(self.port);
    }
}

/// The lines of a Squid access log about CONNECTs to `host` (any outcome: `/407 ` asks for
/// credentials, `/200 ` opened the tunnel).
pub fn connects<'a>(log: &'a str, host: &str) -> Vec<&'a str> {
    log.lines()
        .filter(|l| l.contains("CONNECT") && l.contains(host))
        .collect()
}

/// The CONNECTs to `host` that opened a tunnel (`/200 `).
pub fn tunnels<'a>(log: &'a str, host: &str) -> Vec<&'a str> {
    connects(log, host)
        .into_iter()
        .filter(|l| l.contains("/200 "))
        .collect()
}

/// Removes the shared-memory segments of the Squid whose service name is `uplink{port}` (a killed
/// Squid leaves them; the next one with that name would refuse to start).
pub fn remove_shm(port: u16) {
    let prefix = format!("uplink{port}-");
    if let Ok(entries) = std::fs::read_dir("/dev/shm") {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// Writes the password file, its mtime a whole second past the one it replaces:
/// basic_ncsa_auth re-reads the file only when `st_mtime` (whole seconds) changes, so two
/// changes within one second would leave it checking the first.
fn write_passwd(dir: &Path, user: &str, password: &str) {
    let hash = openssl(&["passwd", "-apr1", password]);
    let path: PathBuf = dir.join("passwd");
    let tmp = dir.join("passwd.tmp");
    let mut f = std::fs::File::create(&tmp).unwrap();
    writeln!(f, "{user}:{}", hash.trim()).unwrap();
    let secs =
        |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let now = secs(std::time::SystemTime::now());
    let before = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .map(secs);
    let mtime = before.map_or(now, |b| now.max(b + 1));
    f.set_modified(std::time::UNIX_EPOCH + Duration::from_secs(mtime))
        .unwrap();
    drop(f);
    chmod(&tmp, 0o644);
    std::fs::rename(tmp, path).unwrap();
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}
