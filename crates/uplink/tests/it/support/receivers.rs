//! What the service's deliveries reach (issue #23): a webhook receiver over HTTP or HTTPS that
//! keeps every request and answers 200, the signature a receiver expects (computed by openssl,
//! independently of uplink), and a real rsyslogd receiving syslog over TCP or TLS (the `ossl`
//! stream driver, Debian's rsyslog-openssl) that writes each message in RFC 5424 form.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::{poll_until, require, stdout};

/// One request a [`Receiver`] got: its headers (lower-cased names) and body.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A webhook receiver on 127.0.0.1: answers 200 to every request and keeps what it got.
pub struct Receiver {
    pub port: u16,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    /// Plain HTTP on `port` (chosen beforehand, so that a test can start it late).
    pub fn http_on(port: u16) -> Receiver {
        Self::start(TcpListener::bind(("127.0.0.1", port)).unwrap(), None)
    }

    /// HTTPS on a free port, presenting `cert_pem` (leaf first) with `key_pem`.
    pub fn https(cert_pem: &str, key_pem: &str) -> Receiver {
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .unwrap();
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        Self::start(
            TcpListener::bind("127.0.0.1:0").unwrap(),
            Some(Arc::new(config)),
        )
    }

    fn start(listener: TcpListener, tls: Option<Arc<rustls::ServerConfig>>) -> Receiver {
        let port = listener.local_addr().unwrap().port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let keep = got.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(30)));
                let received = match &tls {
                    Some(cfg) => {
                        let Ok(sc) = rustls::ServerConnection::new(cfg.clone()) else {
                            continue;
                        };
                        answer(&mut rustls::StreamOwned::new(sc, conn))
                    }
                    None => answer(&mut { conn }),
                };
                if let Some(r) = received {
                    keep.lock().unwrap().push(r);
                }
            }
        });
        Receiver { port, got }
    }

    /// Every request received so far.
    pub fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

/// Reads one request and answers 200; `None` when no whole request came (a failed handshake).
fn answer<S: Read + Write>(s: &mut S) -> Option<Received> {
    let mut reader = BufReader::new(&mut *s);
    let mut headers = Vec::new();
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return None;
    }
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((n, v)) = line.trim_end().split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    drop(reader);
    let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    let _ = s.flush();
    Some(Received {
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// HMAC-SHA256 of `TIMESTAMP.BODY`, computed by openssl (independently of uplink).
pub fn expected_signature(secret: &str, ts: &str, body: &str) -> String {
    require("openssl");
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-hmac", secret])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{ts}.{body}").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = stdout(&out);
    format!("sha256={}", text.trim().rsplit(' ').next().unwrap())
}

/// The files of an rsyslogd's TLS listener (PEM): its CA, certificate and key.
pub struct SyslogTls<'a> {
    pub ca: &'a Path,
    pub cert: &'a Path,
    pub key: &'a Path,
}

/// A real rsyslogd receiving syslog on 127.0.0.1:`port` (octet counting), over TCP or TLS,
/// writing each message in RFC 5424 form to a file; stopped on drop.
pub struct Rsyslog {
    child: Child,
    out: PathBuf,
    conf: PathBuf,
}

impl Rsyslog {
    /// Plain TCP.
    pub fn start(dir: &Path, port: u16) -> Rsyslog {
        Self::launch(dir, port, None)
    }

    /// TLS (RFC 5425) through rsyslog's OpenSSL stream driver, no client authentication.
    pub fn start_tls(dir: &Path, port: u16, tls: SyslogTls<'_>) -> Rsyslog {
        Self::launch(dir, port, Some(tls))
    }

    fn launch(dir: &Path, port: u16, tls: Option<SyslogTls<'_>>) -> Rsyslog {
        require("rsyslogd");
        let out = dir.join(format!("syslog-{port}.out"));
        let conf = dir.join(format!("rsyslog-{port}.conf"));
        let work = dir.join(format!("rsyslog-{port}.work"));
        std::fs::create_dir_all(&work).unwrap();
        let (global, module) = match &tls {
            None => (String::new(), String::new()),
            Some(t) => {
                // The OpenSSL driver is a separate Debian package: fail loudly, never skip.
                let driver = Path::new("/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_ossl.so");
                assert!(
                    driver.exists(),
                    "rsyslog's OpenSSL driver is missing: apt-get install rsyslog-openssl"
                );
                (
                    format!(
                        " defaultNetstreamDriver=\"ossl\" defaultNetstreamDriverCAFile=\"{}\" defaultNetstreamDriverCertFile=\"{}\" defaultNetstreamDriverKeyFile=\"{}\"",
                        t.ca.display(),
                        t.cert.display(),
                        t.key.display()
                    ),
                    " streamDriver.name=\"ossl\" streamDriver.mode=\"1\" streamDriver.authMode=\"anon\""
                        .to_owned(),
                )
            }
        };
        std::fs::write(
            &conf,
            format!(
                "global(workDirectory=\"{w}\"{global})\nmodule(load=\"imtcp\"{module})\ninput(type=\"imtcp\" port=\"{port}\" address=\"127.0.0.1\")\n*.* action(type=\"omfile\" file=\"{o}\" template=\"RSYSLOG_SyslogProtocol23Format\")\n",
                w = work.display(),
                o = out.display()
            ),
        )
        .unwrap();
        let mut child = Command::new("rsyslogd")
            .args(["-n", "-f"])
            .arg(&conf)
            .arg("-i")
            .arg(dir.join(format!("rsyslog-{port}.pid")))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join(format!("rsyslog-{port}.err"))).unwrap())
            .spawn()
            .expect("start rsyslogd");
        let context = || context_of(&conf);
        poll_until(
            "rsyslogd listens",
            60,
            || {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("rsyslogd exited ({status}):\n{}", context());
                }
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            },
            context,
        );
        Rsyslog { child, out, conf }
    }

    /// Every message written so far, one per line.
    pub fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Its configuration and what it printed, for failure messages.
    pub fn context(&self) -> String {
        context_of(&self.conf)
    }
}

/// An rsyslogd's configuration file and its standard error.
fn context_of(conf: &Path) -> String {
    let err = conf.with_extension("err");
    format!(
        "{}:\n{}\n{}:\n{}",
        conf.display(),
        std::fs::read_to_string(conf).unwrap_or_default(),
        err.display(),
        std::fs::read_to_string(&err).unwrap_or_default()
    )
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
