//! A real MIT Kerberos KDC on loopback for tests (Debian's krb5-kdc, krb5-admin-server).
//!
//! `Kdc::start` makes a realm in a temporary directory — `kdb5_util create -s` under a
//! `KRB5_CONFIG`/`KRB5_KDC_PROFILE` of its own, principals with `kadmin.local` — and runs
//! `krb5kdc -n` (foreground) on a free loopback port. Nothing touches /etc/krb5.conf: clients
//! get `krb5_conf` through `KRB5_CONFIG`, which names this KDC (TCP only) and turns off every
//! DNS lookup (no KDC discovery, no host name canonicalisation), so no query leaves the machine.
//!
//! The proxy's service principal is `HTTP/localhost@UPLINK.TEST`: the proxy is reached as
//! `http://localhost:PORT`, which resolves to loopback without DNS, and with
//! `dns_canonicalize_hostname = false` GSSAPI asks for exactly that principal. Its key goes to
//! `http_keytab` (ktadd) for Squid's negotiate_kerberos_auth.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::require;
use super::squid::free_port;

pub const REALM: &str = "UPLINK.TEST";
/// The proxy host name clients use, and the host part of its service principal.
pub const PROXY_HOST: &str = "localhost";

pub struct Kdc {
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// The client's krb5.conf (set `KRB5_CONFIG` to it).
    pub krb5_conf: PathBuf,
    /// `HTTP/localhost@UPLINK.TEST`'s keys, readable by Squid's `proxy` user.
    pub http_keytab: PathBuf,
    child: Option<Child>,
}

impl Kdc {
    /// A realm with `users` (principal name without realm, password), running.
    pub fn start(users: &[(&str, &str)]) -> Kdc {
        for p in ["kdb5_util", "kadmin.local", "krb5kdc"] {
            require(p);
        }
        let mut last = String::new();
        // The free port may be taken before krb5kdc binds it (a race with other tests): thrice.
        for _ in 0..3 {
            match Self::try_start(users) {
                Ok(k) => return k,
                Err(e) => last = e,
            }
        }
        panic!("krb5kdc did not start, three times:\n{last}");
    }

    fn try_start(users: &[(&str, &str)]) -> Result<Kdc, String> {
        let dir = tempfile::Builder::new()
            .prefix("uplink-kdc-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        let port = free_port();
        let krb5_conf = d.join("krb5.conf");
        std::fs::write(
            &krb5_conf,
            format!(
                "[libdefaults]\n  default_realm = {REALM}\n  dns_lookup_kdc = false\n  dns_lookup_realm = false\n  dns_canonicalize_hostname = false\n  rdns = false\n  udp_preference_limit = 1\n  kdc_timeout = 3s\n  max_retries = 1\n\n[realms]\n  {REALM} = {{\n    kdc = 127.0.0.1:{port}\n  }}\n\n[domain_realm]\n  {PROXY_HOST} = {REALM}\n"
            ),
        )
        .unwrap();
        std::fs::write(
            d.join("kdc.conf"),
            format!(
                "[kdcdefaults]\n  kdc_listen = 127.0.0.1:{port}\n  kdc_tcp_listen = 127.0.0.1:{port}\n\n[realms]\n  {REALM} = {{\n    database_name = {0}/principal\n    key_stash_file = {0}/stash\n    acl_file = {0}/kadm5.acl\n    kdc_listen = 127.0.0.1:{port}\n    kdc_tcp_listen = 127.0.0.1:{port}\n  }}\n\n[logging]\n  kdc = FILE:{0}/kdc.log\n",
                d.display()
            ),
        )
        .unwrap();
        let mut kdc = Kdc {
            port,
            krb5_conf,
            http_keytab: d.join("http.keytab"),
            dir,
            child: None,
        };
        kdc.admin_cmd(
            "kdb5_util",
            &["create", "-s", "-r", REALM, "-P", "uplink-test-master"],
        );
        for (user, password) in users {
            kdc.kadmin(&format!("addprinc -pw {password} {user}@{REALM}"));
        }
        kdc.kadmin(&format!("addprinc -randkey HTTP/{PROXY_HOST}@{REALM}"));
        let keytab = kdc.http_keytab.display().to_string();
        kdc.kadmin(&format!("ktadd -k {keytab} HTTP/{PROXY_HOST}@{REALM}"));
        {
            use std::os::unix::fs::PermissionsExt;
            let set = |p: &Path, m| {
                std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
            };
            set(kdc.dir.path(), 0o755);
            set(&kdc.http_keytab, 0o644);
        }
        let mut krb5kdc = Command::new("krb5kdc");
        let child = kdc
            .env(&mut krb5kdc)
            .args(["-n", "-r", REALM, "-P"])
            .arg(kdc.dir.path().join("kdc.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(kdc.dir.path().join("krb5kdc.err")).unwrap(),
            ))
            .spawn()
            .expect("start krb5kdc");
        kdc.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(st) = kdc.child.as_mut().unwrap().try_wait().unwrap() {
                kdc.child = None;
                return Err(format!("krb5kdc exited ({st}):\n{}", kdc.logs()));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "krb5kdc did not listen within 20 s:\n{}",
                    kdc.logs()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(kdc)
    }

    /// A keytab holding `user`'s keys (a principal made for it here, with a random key), for
    /// clients that log in without a password.
    pub fn client_keytab(&self, user: &str) -> PathBuf {
        let path = self.dir.path().join(format!("{user}.keytab"));
        self.kadmin(&format!("addprinc -randkey {user}@{REALM}"));
        self.kadmin(&format!("ktadd -k {} {user}@{REALM}", path.display()));
        path
    }

    fn env<'c>(&self, c: &'c mut Command) -> &'c mut Command {
        c.env("KRB5_CONFIG", &self.krb5_conf)
            .env("KRB5_KDC_PROFILE", self.dir.path().join("kdc.conf"))
    }

    fn admin_cmd(&self, program: &str, args: &[&str]) {
        let out = self
            .env(&mut Command::new(program))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run {program}: {e}"));
        assert!(
            out.status.success(),
            "{program} {} failed:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn kadmin(&self, query: &str) {
        self.admin_cmd("kadmin.local", &["-r", REALM, "-q", query]);
    }

    pub fn logs(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
        format!(
            "--- kdc.log\n{}\n--- krb5kdc stderr\n{}",
            read("kdc.log"),
            read("krb5kdc.err")
        )
    }

    /// Squid configuration lines that require Negotiate (negotiate_kerberos_auth with this
    /// realm's HTTP keytab) for every CONNECT.
    pub fn squid_conf(&self) -> Vec<String> {
        vec![
            format!(
                "auth_param negotiate program /usr/lib/squid/negotiate_kerberos_auth -k {} -s HTTP/{PROXY_HOST}@{REALM}",
                self.http_keytab.display()
            ),
            "auth_param negotiate children 2".into(),
            "auth_param negotiate keep_alive on".into(),
            "acl kerberos proxy_auth REQUIRED".into(),
            "http_access allow CONNECT kerberos".into(),
            "http_access deny all".into(),
        ]
    }
}

impl Drop for Kdc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
