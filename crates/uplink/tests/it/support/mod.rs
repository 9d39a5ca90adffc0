//! Test harness: real processes on loopback (the `uplink` binary, curl, openssl, and later Squid
//! and friends), free ports, and failure messages that dump everything a reader needs.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub mod browser;
pub mod check;
pub mod confined;
pub mod daemon;
pub mod dhcp;
pub mod haproxy;
pub mod http;
pub mod journald;
pub mod kdc;
pub mod netns;
pub mod postgres;
pub mod receivers;
pub mod sensor;
pub mod socks;
pub mod squid;
pub mod tlsproxy;

pub const UPLINK: &str = env!("CARGO_BIN_EXE_uplink");

/// Fails loudly if a required external program is missing. Under CI (CI=true) a missing
/// component is an error, never a skip; locally too, with the install hint.
pub fn require(program: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|p| p.join(program).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "required program {program:?} is not installed: run ./test.sh (it installs every test dependency), or apt-get install the package providing it"
    );
}

/// `uplink ARGS`, not yet run, without the proxy variables of the environment: each test decides
/// the route itself (a CI machine with `https_proxy` set must not change what a test proves).
pub fn uplink_cmd(args: &[&str]) -> Command {
    let mut c = Command::new(UPLINK);
    c.args(args);
    scrub_proxy_env(&mut c);
    c
}

/// Removes the proxy variables from a command's environment, and points WPAD discovery at
/// nothing: a sensor in `auto` mode must never walk this machine's search domains and fetch
/// `wpad.<domain>` from the real network. WPAD tests set these variables to their own files.
pub fn scrub_proxy_env(c: &mut Command) {
    c.env("UPLINK_WPAD_RESOLV_CONF", "")
        .env("UPLINK_WPAD_LEASES", "")
        .env("UPLINK_WPAD_NETWORKMANAGER", "0");
    for v in [
        "https_proxy",
        "HTTPS_PROXY",
        "http_proxy",
        "HTTP_PROXY",
        "all_proxy",
        "ALL_PROXY",
        "no_proxy",
        "NO_PROXY",
    ] {
        c.env_remove(v);
    }
}

/// Runs `uplink ARGS` to completion.
pub fn uplink(args: &[&str]) -> Output {
    uplink_cmd(args)
        .stdin(Stdio::null())
        .output()
        .expect("run uplink")
}

/// Runs `cmd` with `input` on its standard input. A command that stops reading early (`sensor
/// send` with a full queue) is its own answer, not a test failure.
pub fn with_stdin(mut cmd: Command, input: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_owned();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let _ = stdin.write_all(input.as_bytes());
    });
    let out = child.wait_with_output().expect("wait");
    writer.join().expect("writer thread");
    out
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts success and returns stdout, dumping the command's output otherwise.
#[track_caller]
pub fn ok(o: Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        o.status,
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// Starts `uplink service ...` (`cmd`, its arguments given): the child, the port it printed on
/// its first line of standard output, and its standard error as it comes (debug logs). A
/// service that prints no address is killed and the test fails with its log.
pub fn spawn_service(mut cmd: Command) -> (Child, u16, Arc<Mutex<String>>) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start uplink service");
    let log = Arc::new(Mutex::new(String::new()));
    let stderr = child.stderr.take().unwrap();
    let log2 = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let mut l = log2.lock().unwrap();
            l.push_str(&line);
            l.push('\n');
        }
    });
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .expect("read service stdout");
    let port = first
        .trim()
        .strip_prefix("listening on https://")
        .and_then(|a| a.rsplit_once(':'))
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "service did not print its address; first line {first:?}\nlog:\n{}",
                log.lock().unwrap()
            )
        });
    (child, port, log)
}

/// A running `uplink service`, killed on drop; its stderr is kept for failure messages.
pub struct ServiceProc {
    child: Option<Child>,
    pub port: u16,
    pub data_dir: PathBuf,
    pub log: Arc<Mutex<String>>,
}

impl ServiceProc {
    pub fn start(data_dir: &Path) -> ServiceProc {
        Self::start_with(data_dir, &[])
    }

    pub fn start_with(data_dir: &Path, extra: &[&str]) -> ServiceProc {
        Self::launch(data_dir, "127.0.0.1:0", extra)
    }

    /// Starts on a given address (to restart a service on the port its sensors know).
    pub fn start_at(data_dir: &Path, listen: &str) -> ServiceProc {
        Self::launch(data_dir, listen, &[])
    }

    fn launch(data_dir: &Path, listen: &str, extra: &[&str]) -> ServiceProc {
        // The service refuses a data directory that does not exist (a mistyped path): a new one
        // is made first, as an administrator (or systemd's StateDirectory=) would.
        std::fs::create_dir_all(data_dir).unwrap();
        let mut cmd = uplink_cmd(&["service", "--data-dir"]);
        cmd.arg(data_dir)
            .args(["--listen", listen, "--log-level", "debug"])
            .args(extra);
        let (child, port, log) = spawn_service(cmd);
        ServiceProc {
            child: Some(child),
            port,
            data_dir: data_dir.to_path_buf(),
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("service still owned").id()
    }

    /// Takes the process out of the guard (the caller now ends it).
    pub fn take(&mut self) -> Child {
        self.child.take().expect("service still owned")
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for ServiceProc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A workspace made with `uplink workspace create --json`.
#[derive(Debug, Clone)]
pub struct Ws {
    pub name: String,
    pub sensor_host: String,
    pub sensor_url: String,
    pub bundle_path: PathBuf,
    pub access_key: String,
    pub ca_sha256: String,
    /// The CA certificate, written to a file for curl and openssl.
    pub ca_file: PathBuf,
}

pub fn create_workspace(data_dir: &Path, name: &str, port: u16) -> Ws {
    create_workspace_in(data_dir, name, port, "uplink.localhost")
}

/// A workspace whose host names are under `domain` (map them in a namespace's hosts file: names
/// under .localhost resolve to this host's loopback everywhere).
pub fn create_workspace_in(data_dir: &Path, name: &str, port: u16, domain: &str) -> Ws {
    let mut args = vec![
        "workspace".to_owned(),
        "create".into(),
        name.into(),
        "--data-dir".into(),
        data_dir.to_str().unwrap().into(),
        "--public-port".into(),
        port.to_string(),
        "--json".into(),
    ];
    if domain != "uplink.localhost" {
        args.extend(["--domain".into(), domain.into()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = ok(uplink(&args), "workspace create");
    let v: serde_json::Value =
        serde_json::from_str(&out).expect("workspace create --json prints JSON");
    let bundle_path = PathBuf::from(v["bundle_path"].as_str().unwrap());
    let bundle: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&bundle_path).unwrap()).unwrap();
    let ca_file = data_dir.join(format!("{name}-ca.pem"));
    std::fs::write(&ca_file, bundle["ca_pem"].as_str().unwrap()).unwrap();
    Ws {
        name: v["workspace"].as_str().unwrap().into(),
        sensor_host: format!("{}sensorapi.{domain}", v["workspace"].as_str().unwrap()),
        sensor_url: v["sensor_url"].as_str().unwrap().into(),
        bundle_path,
        access_key: v["access_key"].as_str().unwrap().into(),
        ca_sha256: v["ca_sha256"].as_str().unwrap().into(),
        ca_file,
    }
}

/// `GET /healthz` as a load balancer sends it: to the address (no SNI), no client certificate,
/// the placeholder certificate not verified. The status and body; `Err` with curl's message when
/// no answer came at all (nothing listening, a reset).
pub fn healthz(port: u16) -> Result<(u16, String), String> {
    require("curl");
    let out = Command::new("curl")
        .args([
            "-sS",
            "-k",
            "--max-time",
            "20",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
        ])
        .arg(format!("https://127.0.0.1:{port}/healthz"))
        .output()
        .expect("run curl");
    let text = stdout(&out);
    if !out.status.success() {
        return Err(format!("curl: {}{text}", stderr(&out)));
    }
    let (body, code) = text.rsplit_once('\n').unwrap();
    Ok((code.trim().parse().unwrap(), body.to_owned()))
}

/// A curl invocation against the service at `host` (mapped to 127.0.0.1 with --resolve).
pub struct Curl {
    cmd: Command,
}

impl Curl {
    pub fn new(host: &str, port: u16, path: &str) -> Curl {
        require("curl");
        let mut cmd = Command::new("curl");
        cmd.args([
            "-sS",
            "--max-time",
            "20",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            "--resolve",
        ])
        .arg(format!("{host}:{port}:127.0.0.1"))
        .arg(format!("https://{host}:{port}{path}"));
        Curl { cmd }
    }
    pub fn arg(mut self, a: impl AsRef<std::ffi::OsStr>) -> Self {
        self.cmd.arg(a);
        self
    }
    pub fn args<I: IntoIterator<Item = S>, S: AsRef<std::ffi::OsStr>>(mut self, a: I) -> Self {
        self.cmd.args(a);
        self
    }
    /// Runs curl; returns (HTTP status, body). Panics with curl's stderr if curl itself failed.
    pub fn run(mut self) -> (u16, String) {
        let out = self.cmd.output().expect("run curl");
        let text = stdout(&out);
        assert!(
            out.status.success(),
            "curl failed ({}): {}\n{}",
            out.status,
            stderr(&out),
            text
        );
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        (code.trim().parse().unwrap_or(0), body.to_owned())
    }
    /// Runs curl expecting it to fail (e.g. a TLS error); returns its exit code and stderr.
    pub fn run_fail(mut self) -> (i32, String) {
        let out = self.cmd.output().expect("run curl");
        assert!(
            !out.status.success(),
            "curl unexpectedly succeeded: {}",
            stdout(&out)
        );
        (out.status.code().unwrap_or(-1), stderr(&out))
    }
}

/// Runs openssl with args; panics with its output on failure.
pub fn openssl(args: &[&str]) -> String {
    require("openssl");
    let out = Command::new("openssl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl");
    ok(out, &format!("openssl {}", args.join(" ")))
}

/// A sensor identity enrolled with openssl (key + CSR) and curl: real third-party clients.
pub struct Enrolled {
    pub sensor_id: String,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// A P-256 key and a CSR for `subject` (e.g. `/CN=name`), made by openssl in `dir`: the files
/// `{label}.key` and `{label}.csr`.
pub fn key_and_csr(dir: &Path, label: &str, subject: &str) -> (PathBuf, PathBuf) {
    let key_file = dir.join(format!("{label}.key"));
    let csr_file = dir.join(format!("{label}.csr"));
    openssl(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        key_file.to_str().unwrap(),
    ]);
    openssl(&[
        "req",
        "-new",
        "-key",
        key_file.to_str().unwrap(),
        "-subj",
        subject,
        "-out",
        csr_file.to_str().unwrap(),
    ]);
    (key_file, csr_file)
}

pub fn enroll_with_openssl(dir: &Path, ws: &Ws, port: u16, label: &str) -> Enrolled {
    let (key_file, csr_file) = key_and_csr(dir, label, &format!("/CN={label}"));
    let csr = std::fs::read_to_string(&csr_file).unwrap();
    let req = serde_json::json!({"access_key": ws.access_key, "csr_pem": csr, "name": label});
    let req_file = dir.join(format!("{label}-enroll.json"));
    std::fs::write(&req_file, req.to_string()).unwrap();
    let (status, body) = Curl::new(&ws.sensor_host, port, "/api/v1/enroll")
        .arg("--cacert")
        .arg(&ws.ca_file)
        .args(["-H", "content-type: application/json", "--data-binary"])
        .arg(format!("@{}", req_file.display()))
        .run();
    assert_eq!(status, 200, "enroll: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let cert_file = dir.join(format!("{label}.crt"));
    std::fs::write(&cert_file, v["certificate_pem"].as_str().unwrap()).unwrap();
    Enrolled {
        sensor_id: v["sensor_id"].as_str().unwrap().into(),
        cert_file,
        key_file,
    }
}

/// NDJSON lines `{"seq":N,"kind":K,"n":N}` for each seq.
pub fn ndjson(seqs: impl IntoIterator<Item = u64>, kind: &str) -> String {
    seqs.into_iter()
        .map(|s| format!("{{\"seq\":{s},\"kind\":\"{kind}\",\"payload\":\"event {s}\"}}\n"))
        .collect()
}

/// POSTs a batch from a file with the sensor's client certificate; returns (status, body).
pub fn post_events(
    ws: &Ws,
    port: u16,
    who: Option<&Enrolled>,
    body_file: &Path,
    extra: &[&str],
) -> (u16, String) {
    let mut c = Curl::new(&ws.sensor_host, port, "/api/v1/events")
        .arg("--cacert")
        .arg(&ws.ca_file);
    if let Some(e) = who {
        c = c
            .arg("--cert")
            .arg(&e.cert_file)
            .arg("--key")
            .arg(&e.key_file);
    }
    c.args(["-H", "content-type: application/x-ndjson"])
        .args(extra)
        .arg("--data-binary")
        .arg(format!("@{}", body_file.display()))
        .run()
}

/// Exported (sensor_id, seq) pairs of a workspace.
pub fn exported(data_dir: &Path, ws: &str) -> Vec<(String, u64, serde_json::Value)> {
    let out = ok(
        uplink(&[
            "events",
            "export",
            ws,
            "--data-dir",
            data_dir.to_str().unwrap(),
        ]),
        "events export",
    );
    out.lines()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("export line {l:?}: {e}"));
            (
                v["sensor_id"].as_str().unwrap().to_owned(),
                v["seq"].as_u64().unwrap(),
                v,
            )
        })
        .collect()
}

/// Waits for a child to exit, up to `limit` (a waiting thread signals; no polling). On timeout
/// the child is killed and `None` returned.
pub fn wait_exit(mut child: Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    match rx.recv_timeout(limit) {
        Ok(status) => status.ok(),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            None
        }
    }
}

/// Sends a signal (e.g. "TERM", "KILL") to a process.
pub fn signal(pid: u32, sig: &str) {
    let st = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(st.success(), "kill -{sig} {pid} failed");
}

pub fn read_all(mut r: impl Read) -> String {
    let mut s = String::new();
    let _ = r.read_to_string(&mut s);
    s
}

/// Polls `cond` (a status file, an export, a log) every 50 ms until it holds, failing with
/// `context()` after `secs`. For conditions no process announces; prefer a line read from a
/// pipe ([`daemon::Daemon::expect`]) where there is one.
#[track_caller]
pub fn poll_until(
    what: &str,
    secs: u64,
    mut cond: impl FnMut() -> bool,
    context: impl Fn() -> String,
) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within {secs} s\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A service on loopback with one workspace `name` (its data directory in the returned temporary
/// directory, under `service/`).
pub fn service_with_workspace(name: &str) -> (tempfile::TempDir, ServiceProc, Ws) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    let svc = ServiceProc::start(&data);
    let ws = create_workspace(&data, name, svc.port);
    (dir, svc, ws)
}
