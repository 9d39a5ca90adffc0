//! An HTTPS proxy for tests: a real Squid with an `https_port` (Debian's Squid is built with
//! GnuTLS, which serves it), its certificate issued by a test CA made here with openssl, for
//! `127.0.0.1` and `localhost`. Clients reach it as `https://127.0.0.1:PORT` and must trust
//! `ca_file` (`--proxy-ca`); the system roots do not know this CA.

use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::openssl;
use super::squid::{free_port, Squid, SquidOptions};

pub struct TlsProxy {
    pub squid: Squid,
    /// The TLS port (Squid's plain `http_port` is `squid.port`).
    pub port: u16,
    /// The test CA's certificate (PEM): what `--proxy-ca` takes.
    pub ca_file: PathBuf,
    _certs: tempfile::TempDir,
}

impl TlsProxy {
    /// Squid with `https_port` on 127.0.0.1, with `opts` (auth, hosts) for both of its ports.
    pub fn start(mut opts: SquidOptions<'_>) -> TlsProxy {
        let certs = tempfile::Builder::new()
            .prefix("uplink-tlsproxy-")
            .tempdir()
            .unwrap();
        let d = certs.path();
        let p = |f: &str| d.join(f).to_str().unwrap().to_owned();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        let mut ca = vec!["req", "-x509"];
        ca.extend_from_slice(&ec);
        let (ca_key, ca_pem) = (p("ca.key"), p("ca.pem"));
        ca.extend_from_slice(&[
            "-keyout",
            &ca_key,
            "-out",
            &ca_pem,
            "-days",
            "2",
            "-subj",
            "/CN=uplink test proxy CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        openssl(&ca);
        let (key, csr, cert, ext) = (p("proxy.key"), p("proxy.csr"), p("proxy.pem"), p("ext"));
        let mut req = vec!["req"];
        req.extend_from_slice(&ec);
        req.extend_from_slice(&["-keyout", &key, "-out", &csr, "-subj", "/CN=127.0.0.1"]);
        openssl(&req);
        std::fs::write(
            &ext,
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &cert,
            "-days",
            "2",
            "-extfile",
            &ext,
        ]);
        // Squid runs as the `proxy` user: it must read the key.
        {
            use std::os::unix::fs::PermissionsExt;
            for f in [d.to_path_buf(), d.join("proxy.key"), d.join("proxy.pem")] {
                let mode = if f.is_dir() { 0o755 } else { 0o644 };
                std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode)).unwrap();
            }
        }
        let port = free_port();
        opts.extra_conf.push(format!(
            "https_port 127.0.0.1:{port} tls-cert={cert} tls-key={key}"
        ));
        let squid = Squid::start(opts);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "Squid's https_port {port} did not accept connections:\n{}",
                squid.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        TlsProxy {
            squid,
            port,
            ca_file: d.join("ca.pem"),
            _certs: certs,
        }
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }
}
