//! A real HAProxy (Debian's `haproxy`) in front of service replicas, as docs/scale-out.md
//! configures it: TCP mode (mutual TLS ends at uplink), `send-proxy-v2`, and a health check
//! `GET /healthz` over TLS to each replica (`check-ssl verify none`: the check proves the replica
//! can ingest, not who it is). Its admin socket answers `show stat`, which is how tests see a
//! replica leave and rejoin the rotation.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::daemon::Daemon;
use super::squid::free_port;

/// HAProxy's program: in PATH, or in /usr/sbin where Debian puts it (not in a user's PATH).
/// Missing, the test fails with the package to install (never a skip).
fn program() -> PathBuf {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("haproxy"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("required program \"haproxy\" is not installed: run ./test.sh (it installs every test dependency), or apt-get install haproxy")
        })
}

/// A running HAProxy, killed on drop.
pub struct Haproxy {
    /// The frontend's port (what sensors connect to).
    pub port: u16,
    pub config: String,
    socket: PathBuf,
    daemon: Daemon,
    _dir: tempfile::TempDir,
}

/// How the backend picks a replica.
#[derive(Clone, Copy, Debug)]
pub enum Balance {
    /// Every new connection to the first replica in rotation: a test knows which replica a
    /// sensor is on (and kills that one).
    First,
    RoundRobin,
}

impl Haproxy {
    /// Starts HAProxy balancing over the replicas on these loopback ports. Checks every 200 ms;
    /// two failures take a replica out, two successes bring it back. Retries on another frontend
    /// port when the probed one was taken meanwhile.
    pub fn start(replicas: &[u16], balance: Balance) -> Haproxy {
        let mut last = String::new();
        for _ in 0..3 {
            match Self::try_start(replicas, balance) {
                Ok(h) => return h,
                Err(log) => last = log,
            }
        }
        panic!("haproxy did not start, three times:\n{last}");
    }

    fn try_start(replicas: &[u16], balance: Balance) -> Result<Haproxy, String> {
        let dir = tempfile::Builder::new()
            .prefix("uplink-haproxy-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let socket = dir.path().join("admin.sock");
        let servers: String = replicas
            .iter()
            .enumerate()
            .map(|(i, p)| format!("    server r{} 127.0.0.1:{p}\n", i + 1))
            .collect();
        let balance = match balance {
            Balance::First => "first",
            Balance::RoundRobin => "roundrobin",
        };
        let config = format!(
            "global
    stats socket {socket} mode 600 level admin
    log stderr format raw local0 info

defaults
    mode tcp
    log global
    option tcplog
    timeout connect 2s
    timeout client 120s
    timeout server 120s
    timeout check 2s
    retries 3
    option redispatch 1

frontend sensors
    bind 127.0.0.1:{port}
    default_backend replicas

backend replicas
    balance {balance}
    option httpchk GET /healthz
    http-check expect status 200
    default-server send-proxy-v2 check check-ssl verify none inter 200ms fall 2 rise 2
{servers}",
            socket = socket.display()
        );
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, &config).unwrap();
        let check = Command::new(program())
            .args(["-c", "-f"])
            .arg(&path)
            .output()
            .expect("run haproxy -c");
        assert!(
            check.status.success(),
            "haproxy refuses the configuration:\n{config}\n{}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        let mut cmd = Command::new(program());
        cmd.args(["-db", "-f"]).arg(&path);
        let daemon = Daemon::spawn("haproxy", cmd);
        let h = Haproxy {
            port,
            config,
            socket,
            daemon,
            _dir: dir,
        };
        // Up once its admin socket answers; a bind failure ends the process first.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if h.stat().is_ok() && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(h);
            }
            // An ALERT (a port taken meanwhile) ends the process.
            if std::time::Instant::now() > deadline || h.daemon.log().contains("[ALERT]") {
                return Err(format!("{}\n{}", h.config, h.daemon.log()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends one command to the admin socket and returns its answer.
    pub fn admin(&self, command: &str) -> std::io::Result<String> {
        let mut s = std::os::unix::net::UnixStream::connect(&self.socket)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(format!("{command}\n").as_bytes())?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    }

    /// `show stat` as `(server, status)` for the backend's servers (`UP`, `DOWN`, `UP 1/2`, …).
    pub fn stat(&self) -> std::io::Result<Vec<(String, String)>> {
        let csv = self.admin("show stat")?;
        let mut lines = csv.lines();
        let header = lines.next().unwrap_or_default().trim_start_matches("# ");
        let col = |name: &str| header.split(',').position(|c| c == name);
        let (Some(px), Some(sv), Some(st)) = (col("pxname"), col("svname"), col("status")) else {
            return Err(std::io::Error::other(format!(
                "unexpected show stat: {csv}"
            )));
        };
        Ok(lines
            .map(|l| l.split(',').collect::<Vec<_>>())
            .filter(|f| f.len() > st && f[px] == "replicas" && f[sv].starts_with('r'))
            .map(|f| (f[sv].to_owned(), f[st].to_owned()))
            .collect())
    }

    /// Whether the replica `server` (`r1`, `r2`, …) is in rotation (`UP`, not going down).
    pub fn is_up(&self, server: &str) -> bool {
        self.stat()
            .unwrap_or_default()
            .iter()
            .any(|(s, st)| s == server && st == "UP")
    }

    /// Whether the replica is out of rotation.
    pub fn is_down(&self, server: &str) -> bool {
        self.stat()
            .unwrap_or_default()
            .iter()
            .any(|(s, st)| s == server && st.starts_with("DOWN"))
    }

    /// HAProxy's log (server state changes, one line per connection), for failure messages.
    pub fn log(&self) -> String {
        self.daemon.log()
    }
}
