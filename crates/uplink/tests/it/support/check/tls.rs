//! Test web servers on loopback: a test CA (rcgen) and an HTTPS server whose certificate is
//! issued per SNI name by that CA — a stand-in for public services (MDE, MDI hosts mapped to it
//! with `--connect-to`) — or a fixed certificate (expired, wrong host). Each request is answered
//! with a status chosen by a function of the host and path. Plain HTTP too. Threads, port 0,
//! stopped when dropped.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// A CA for tests, written to `dir/<name>-ca.pem`.
pub struct TestCa {
    pub name: String,
    pub pem_file: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new(dir: &Path, name: &str) -> TestCa {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let pem_file = dir.join(format!("{}-ca.pem", name.replace(' ', "-")));
        std::fs::write(&pem_file, cert.pem()).unwrap();
        TestCa {
            name: name.into(),
            pem_file,
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf for `names`; `expired` makes one that ended yesterday.
    pub fn leaf(&self, names: &[&str], expired: bool) -> (String, String) {
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, names[0]);
        params.distinguished_name = dn;
        if expired {
            let now = time::OffsetDateTime::now_utc();
            params.not_before = now - time::Duration::days(30);
            params.not_after = now - time::Duration::days(1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn certified(&self, names: &[&str], expired: bool) -> Arc<CertifiedKey> {
        let (cert_pem, key_pem) = self.leaf(names, expired);
        certified_key(&cert_pem, &key_pem)
    }
}

fn certified_key(cert_pem: &str, key_pem: &str) -> Arc<CertifiedKey> {
    use rustls::pki_types::pem::PemObject;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from_pem_slice(key_pem.as_bytes()).unwrap());
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    Arc::new(CertifiedKey::from_der(chain, key, &provider).unwrap())
}

/// Which certificate the server presents.
pub enum CertMode {
    /// Issued per SNI name by the CA.
    PerName,
    /// One certificate for these names.
    Fixed(Vec<String>),
    /// One expired certificate for these names.
    Expired(Vec<String>),
}

struct Resolver {
    ca: Arc<TestCa>,
    mode: CertMode,
    cache: Mutex<HashMap<String, Arc<CertifiedKey>>>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resolver")
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let sni = hello.server_name().unwrap_or("localhost").to_owned();
        let mut cache = self.cache.lock().unwrap();
        let key = match &self.mode {
            CertMode::PerName => sni.clone(),
            CertMode::Fixed(_) | CertMode::Expired(_) => "fixed".into(),
        };
        let ck = cache.entry(key).or_insert_with(|| match &self.mode {
            CertMode::PerName => self.ca.certified(&[&sni], false),
            CertMode::Fixed(n) => self
                .ca
                .certified(&n.iter().map(String::as_str).collect::<Vec<_>>(), false),
            CertMode::Expired(n) => self
                .ca
                .certified(&n.iter().map(String::as_str).collect::<Vec<_>>(), true),
        });
        Some(ck.clone())
    }
}

type StatusFn = dyn Fn(&str, &str) -> u16 + Send + Sync;

/// A web server on 127.0.0.1:port; answers every request with `status(host, path)`.
pub struct WebServer {
    pub port: u16,
    stop: Arc<AtomicBool>,
    /// Request lines seen (`Host path`), for assertions.
    pub seen: Arc<Mutex<Vec<String>>>,
}

impl WebServer {
    /// HTTPS with certificates from `ca`.
    pub fn https(ca: Arc<TestCa>, mode: CertMode, status: Arc<StatusFn>) -> WebServer {
        let resolver = Arc::new(Resolver {
            ca,
            mode,
            cache: Mutex::new(HashMap::new()),
        });
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(resolver);
        Self::start(Some(Arc::new(config)), status)
    }

    /// Plain HTTP.
    pub fn http(status: Arc<StatusFn>) -> WebServer {
        Self::start(None, status)
    }

    fn start(tls: Option<Arc<rustls::ServerConfig>>, status: Arc<StatusFn>) -> WebServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (stop2, seen2) = (stop.clone(), seen.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (tls, status, seen) = (tls.clone(), status.clone(), seen2.clone());
                std::thread::spawn(move || {
                    let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(10)));
                    match tls {
                        Some(cfg) => {
                            let Ok(sc) = rustls::ServerConnection::new(cfg) else {
                                return;
                            };
                            let mut s = rustls::StreamOwned::new(sc, conn);
                            serve(&mut s, &*status, &seen);
                        }
                        None => {
                            let mut conn = conn;
                            serve(&mut conn, &*status, &seen);
                        }
                    }
                });
            }
        });
        WebServer { port, stop, seen }
    }
}

fn serve(s: &mut impl ReadWrite, status: &StatusFn, seen: &Mutex<Vec<String>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if buf.len() > 65536 {
            return;
        }
    }
    let text = String::from_utf8_lossy(&buf);
    let path = text
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("/")
        .to_owned();
    let host = text
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("host"))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_default();
    let host = host.split(':').next().unwrap_or_default().to_owned();
    seen.lock().unwrap().push(format!("{host} {path}"));
    let code = status(&host, &path);
    let resp = format!("HTTP/1.1 {code} Test\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
    let _ = s.write_all(resp.as_bytes());
    let _ = s.flush();
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

impl Drop for WebServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}
