//! The fault matrix (issue 17): `uplink check` never misnames a failure. One table of faults
//! ([`FAULTS`]), one runner ([`fault_matrix`]): each row is a real fault injected on loopback or
//! in a network namespace — real Squid (an ACL, an upstream refused, its DNS failing, Basic
//! auth), mitmproxy, microsocks, dnsmasq, nft drop rules, small TLS servers with crafted
//! certificates, hanging peers, the real uplink service — and asserts the code, the failing step
//! and the key words of the fix. Adding a fault is adding a row.
//!
//! The peers are started once and shared by every row; the rows run concurrently, each bounded
//! by a small `--timeout`.

use crate::support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::check::dns::Dns;
use support::check::mitm::Mitm;
use support::check::tls::{CertMode, TestCa, WebServer};
use support::netns::Netns;
use support::sensor::Sensor;
use support::socks::Socks;
use support::squid::{free_port, Squid, SquidOptions};
use support::*;

/// Where a row's `uplink check` runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Net {
    /// The root namespace (loopback peers).
    Root,
    /// The namespace whose DNS is dnsmasq (`*.fault.test`: NXDOMAIN but for `known`).
    Dns,
    /// The namespace with nft drop rules: DNS (udp 53), tcp port 9 and 3128 to the root side's
    /// address are dropped; no default route (192.0.2.1 is unreachable).
    Blackhole,
}

/// One fault. Strings may hold `{placeholders}` that [`Env::expand`] fills in.
struct Fault {
    name: &'static str,
    net: Net,
    /// `uplink check` arguments (`--format json` and `--timeout` are added).
    args: &'static [&'static str],
    timeout: u32,
    method: &'static str,
    /// The code, or "" for a method that passes.
    code: &'static str,
    /// The failing step; `local` when the route itself failed (no step was walked).
    step: &'static str,
    /// Words the fix must contain.
    fix: &'static [&'static str],
    /// Words the fix must not contain (the misnamings of the issue).
    never: &'static [&'static str],
    /// Other methods of the same run and their codes ("" = passes): they still ran.
    others: &'static [(&'static str, &'static str)],
    /// The codes of the route candidates tried, in order, when more than one was.
    attempts: &'static [&'static str],
    /// The steps walked, in order, when the row says (empty: not checked).
    walked: &'static [&'static str],
    /// Words the failing step's detail contains.
    detail: &'static [&'static str],
}

const F: Fault = Fault {
    name: "",
    net: Net::Root,
    args: &[],
    timeout: 3,
    method: "direct",
    code: "",
    step: "",
    fix: &[],
    never: &[],
    others: &[],
    attempts: &[],
    walked: &[],
    detail: &[],
};

const WEB: &str = "https://web.uplink.localhost:{web}/";

/// The faults. Every row of issue 17 and the ones that already worked.
const FAULTS: &[Fault] = &[
    Fault {
        name: "healthy HTTPS server (control)",
        args: &["--url", WEB, "--ca", "{ca}"],
        ..F
    },
    Fault {
        name: "DNS NXDOMAIN",
        net: Net::Dns,
        args: &["--url", "https://missing.fault.test/"],
        code: "DNS_NXDOMAIN",
        step: "dns",
        fix: &["host name"],
        ..F
    },
    // Item 5: the resolver waits 10 s per try; --timeout 2 bounds the run (checked by the runner).
    Fault {
        name: "DNS timeout within --timeout",
        net: Net::Blackhole,
        args: &["--url", "https://nowhere.fault.test/"],
        timeout: 2,
        code: "DNS_TIMEOUT",
        step: "dns",
        fix: &["DNS servers"],
        ..F
    },
    Fault {
        name: "TCP refused",
        args: &[
            "--url",
            "https://web.uplink.localhost:{closed}/",
            "--ca",
            "{ca}",
        ],
        code: "TCP_REFUSED",
        step: "tcp",
        fix: &["Nothing listens on web.uplink.localhost:{closed}"],
        ..F
    },
    Fault {
        name: "TCP blackholed (nft drop)",
        net: Net::Blackhole,
        args: &["--url", "https://{host_ip}:9/"],
        timeout: 2,
        code: "TCP_TIMEOUT",
        step: "tcp",
        fix: &["allow {host_ip} on port 9"],
        ..F
    },
    Fault {
        name: "no route to the host",
        net: Net::Blackhole,
        args: &["--url", "https://192.0.2.1/"],
        timeout: 2,
        code: "TCP_UNREACHABLE",
        step: "tcp",
        fix: &["no route"],
        ..F
    },
    // Item 3: a 403 is a denial, naming the real port.
    Fault {
        name: "proxy ACL denies the host (403)",
        args: &[
            "--url",
            "https://denied.uplink.localhost:{web}/",
            "--ca",
            "{ca}",
            "--proxy",
            "{squid}",
        ],
        method: "cli",
        code: "PROXY_CONNECT_DENIED",
        step: "proxy_connect",
        fix: &[
            "allow CONNECT to denied.uplink.localhost on port {web}",
            "403",
        ],
        never: &["port 443"],
        ..F
    },
    // Item 3: Squid's 503 ERR_CONNECT_FAIL is not a denial; its reason is quoted.
    Fault {
        name: "proxy cannot connect upstream (503)",
        args: &[
            "--url",
            "https://web.uplink.localhost:{closed}/",
            "--ca",
            "{ca}",
            "--proxy",
            "{squid}",
        ],
        method: "cli",
        code: "PROXY_UPSTREAM_FAILED",
        step: "proxy_connect",
        fix: &["ERR_CONNECT_FAIL", "port {closed}", "not a policy denial"],
        never: &["allow CONNECT"],
        ..F
    },
    // Item 3: Squid's own DNS fails (5xx, ERR_DNS_FAIL or ERR_CANNOT_FORWARD).
    Fault {
        name: "proxy's DNS fails (5xx)",
        args: &[
            "--url",
            "https://nosuch.fault.test:{web}/",
            "--proxy",
            "{squid}",
        ],
        timeout: 5,
        method: "cli",
        code: "PROXY_UPSTREAM_FAILED",
        step: "proxy_connect",
        fix: &["ERR_", "nosuch.fault.test"],
        never: &["allow CONNECT"],
        ..F
    },
    // Item 6: the cli method's fixes name its flags, not `sensor proxy set`.
    Fault {
        name: "proxy wants credentials (407)",
        args: &["--url", WEB, "--ca", "{ca}", "--proxy", "{basic}"],
        method: "cli",
        code: "PROXY_AUTH_REQUIRED",
        step: "proxy_auth",
        fix: &["--proxy-user", "--proxy-password"],
        never: &["sensor proxy set"],
        ..F
    },
    Fault {
        name: "wrong Basic password",
        args: &[
            "--url",
            WEB,
            "--ca",
            "{ca}",
            "--proxy",
            "{basic}",
            "--proxy-user",
            "bob",
            "--proxy-password",
            "Wrong-pa55",
        ],
        method: "cli",
        code: "PROXY_AUTH_FAILED",
        step: "proxy_auth",
        fix: &["--proxy-password"],
        never: &["sensor proxy set"],
        ..F
    },
    Fault {
        name: "wrong NTLM password",
        args: &[
            "--url",
            WEB,
            "--ca",
            "{ca}",
            "--proxy",
            "http://127.0.0.1:{ntlm}",
            "--proxy-user",
            "CORP\\bob",
            "--proxy-password",
            "Wrong-pa55",
        ],
        method: "cli",
        code: "PROXY_AUTH_FAILED",
        step: "proxy_auth",
        fix: &["--proxy-password"],
        never: &["sensor proxy set"],
        detail: &["NTLM"],
        ..F
    },
    Fault {
        name: "right Basic password (control)",
        args: &[
            "--url",
            WEB,
            "--ca",
            "{ca}",
            "--proxy",
            "{basic}",
            "--proxy-user",
            "bob",
            "--proxy-password",
            "Right-pa55",
        ],
        method: "cli",
        ..F
    },
    // Item 6: credentials given, the proxy offers only Negotiate: not "configure credentials".
    Fault {
        name: "Negotiate-only proxy with a password given",
        args: &[
            "--url",
            WEB,
            "--ca",
            "{ca}",
            "--proxy",
            "http://127.0.0.1:{negotiate}",
            "--proxy-user",
            "bob",
            "--proxy-password",
            "Any-pa55",
        ],
        method: "cli",
        code: "PROXY_AUTH_REQUIRED",
        step: "proxy_auth",
        fix: &["only Negotiate", "Kerberos"],
        never: &["configure a proxy user"],
        ..F
    },
    Fault {
        name: "proxy hangs",
        args: &[
            "--url",
            WEB,
            "--ca",
            "{ca}",
            "--proxy",
            "http://127.0.0.1:{hang}",
        ],
        timeout: 2,
        method: "cli",
        code: "PROXY_TIMEOUT",
        step: "proxy_connect",
        fix: &["did not answer in time"],
        ..F
    },
    Fault {
        name: "untrusted HTTPS proxy",
        args: &[
            "--url",
            WEB,
            "--ca",
            "{ca}",
            "--proxy",
            "https://web.uplink.localhost:{web}",
        ],
        method: "cli",
        code: "PROXY_TLS_UNTRUSTED",
        step: "proxy_connect",
        fix: &["--proxy-ca FILE"],
        never: &["sensor proxy set"],
        ..F
    },
    // Item 7: https:// given for a plain HTTP proxy: a code docs/check.md lists at that step.
    Fault {
        name: "https:// at a plain HTTP proxy",
        args: &[
            "--url",
            WEB,
            "--ca",
            "{ca}",
            "--proxy",
            "https://127.0.0.1:{squid_port}",
        ],
        method: "cli",
        code: "PROXY_PROTOCOL_ERROR",
        step: "proxy_connect",
        fix: &["scheme"],
        ..F
    },
    Fault {
        name: "SOCKS5 wants credentials",
        args: &["--url", WEB, "--ca", "{ca}", "--proxy", "{socks}"],
        method: "cli",
        code: "PROXY_AUTH_REQUIRED",
        step: "proxy_auth",
        fix: &["--proxy-user"],
        ..F
    },
    Fault {
        name: "SOCKS5 wrong password",
        args: &[
            "--url",
            WEB,
            "--ca",
            "{ca}",
            "--proxy",
            "{socks}",
            "--proxy-user",
            "sue",
            "--proxy-password",
            "Wrong-pa55",
        ],
        method: "cli",
        code: "PROXY_AUTH_FAILED",
        step: "proxy_auth",
        fix: &["--proxy-password"],
        ..F
    },
    // Item 3: SOCKS reply 5 (connection refused) is the proxy failing upstream, quoted.
    Fault {
        name: "SOCKS5 upstream refused (reply 5)",
        args: &[
            "--url",
            "https://web.uplink.localhost:{closed}/",
            "--ca",
            "{ca}",
            "--proxy",
            "{socks}",
            "--proxy-user",
            "sue",
            "--proxy-password",
            "Socks-pa55",
        ],
        method: "cli",
        code: "PROXY_UPSTREAM_FAILED",
        step: "proxy_connect",
        fix: &["connection refused", "port {closed}"],
        never: &["allow CONNECT"],
        ..F
    },
    Fault {
        name: "TLS interception (mitmproxy)",
        args: &["--url", WEB, "--ca", "{ca}", "--proxy", "{mitm}"],
        method: "cli",
        code: "TLS_INTERCEPTED",
        step: "tls",
        fix: &["SSL inspection"],
        ..F
    },
    Fault {
        name: "expired certificate",
        args: &[
            "--url",
            "https://web.uplink.localhost:{expired}/",
            "--ca",
            "{ca}",
        ],
        code: "TLS_EXPIRED",
        step: "tls",
        fix: &["clock"],
        ..F
    },
    Fault {
        name: "certificate for another host",
        args: &[
            "--url",
            "https://web.uplink.localhost:{wrong}/",
            "--ca",
            "{ca}",
        ],
        code: "TLS_HOSTNAME_MISMATCH",
        step: "tls",
        fix: &["host name"],
        ..F
    },
    // Item 6: a 503 has a known meaning.
    Fault {
        name: "server answers 503",
        args: &[
            "--url",
            "https://web.uplink.localhost:{web}/503",
            "--ca",
            "{ca}",
        ],
        code: "HTTP_UNEXPECTED_STATUS",
        step: "http",
        fix: &["up but cannot take data"],
        never: &["see the detail"],
        ..F
    },
    Fault {
        name: "server answers 404",
        args: &[
            "--url",
            "https://web.uplink.localhost:{web}/404",
            "--ca",
            "{ca}",
        ],
        code: "HTTP_UNEXPECTED_STATUS",
        step: "http",
        fix: &["check the URL"],
        ..F
    },
    // Item 6: no HTTP answer is TIMEOUT at http, with a fix that needs no "last error".
    Fault {
        name: "server never answers the request",
        args: &["--url", "http://127.0.0.1:{hang}/"],
        timeout: 2,
        code: "TIMEOUT",
        step: "http",
        fix: &["no HTTP answer in time"],
        never: &["last error"],
        ..F
    },
    Fault {
        name: "uplink service, healthy workspace (control)",
        args: &["--workspace-url", "{ws_url}", "--ca", "{ws_ca}"],
        ..F
    },
    // Item 2a: a bundle from before the workspace was re-created: not interception.
    Fault {
        name: "stale workspace CA (workspace re-created)",
        args: &["--workspace-url", "{ws_url}", "--ca", "{old_ca}"],
        code: "TLS_UNTRUSTED_ROOT",
        step: "tls",
        fix: &["re-install from the current bundle"],
        never: &["SSL inspection"],
        ..F
    },
    Fault {
        name: "stale workspace CA through a proxy",
        args: &[
            "--workspace-url",
            "{ws_url}",
            "--ca",
            "{old_ca}",
            "--proxy",
            "{squid}",
        ],
        method: "cli",
        code: "TLS_UNTRUSTED_ROOT",
        step: "tls",
        fix: &["re-install from the current bundle"],
        never: &["SSL inspection"],
        ..F
    },
    // Item 2b: a typo in the workspace host gets the service's placeholder.
    Fault {
        name: "typo in the workspace host name",
        args: &["--workspace-url", "{typo_url}", "--ca", "{ws_ca}"],
        code: "WORKSPACE_UNKNOWN",
        step: "tls",
        fix: &["No workspace answers at contossosensorapi.uplink.localhost"],
        never: &["SSL inspection"],
        ..F
    },
    Fault {
        name: "foreign client certificate",
        args: &["--config-dir", "{foreign_sensor}"],
        code: "MTLS_REJECTED",
        step: "client_cert",
        fix: &["re-enroll"],
        ..F
    },
    // Item 7: a front end that answers the client-certificate check with `Connection: close`
    // (the test server always does) has answered: not a failure.
    Fault {
        name: "front end closes after the client-certificate check (control)",
        args: &["--config-dir", "{closing_sensor}"],
        walked: &["dns", "tcp", "tls", "client_cert", "http"],
        ..F
    },
    // Item 6: TLS set up, the first request (the client-certificate check) never answered: a
    // TIMEOUT at http, not at client_cert.
    Fault {
        name: "service never answers after TLS (with a client certificate)",
        args: &["--config-dir", "{hanging_sensor}"],
        timeout: 2,
        code: "TIMEOUT",
        step: "http",
        fix: &["no HTTP answer in time"],
        never: &["last error"],
        ..F
    },
    // Item 4: --pac problems are the pac method's result; the other methods still run.
    Fault {
        name: "PAC URL refused",
        args: &[
            "--url",
            WEB,
            "--ca",
            "{ca}",
            "--method",
            "pac,direct",
            "--pac",
            "http://127.0.0.1:{closed}/proxy.pac",
        ],
        method: "pac",
        code: "PAC_FETCH_FAILED",
        step: "local",
        fix: &["PAC script"],
        others: &[("direct", "")],
        ..F
    },
    Fault {
        name: "PAC URL answers 404",
        args: &[
            "--url",
            WEB,
            "--ca",
            "{ca}",
            "--method",
            "pac,direct",
            "--pac",
            "http://127.0.0.1:{plain}/missing.pac",
        ],
        method: "pac",
        code: "PAC_FETCH_FAILED",
        step: "local",
        fix: &["PAC script"],
        others: &[("direct", "")],
        ..F
    },
    Fault {
        name: "PAC script with a syntax error",
        args: &[
            "--url",
            WEB,
            "--ca",
            "{ca}",
            "--method",
            "pac,direct",
            "--pac",
            "{broken_pac}",
        ],
        method: "pac",
        code: "PAC_SCRIPT_ERROR",
        step: "local",
        fix: &["fix the script"],
        others: &[("direct", "")],
        ..F
    },
    Fault {
        name: "PAC URL hangs, bounded by --timeout",
        args: &[
            "--url",
            WEB,
            "--ca",
            "{ca}",
            "--method",
            "pac,direct",
            "--pac",
            "http://127.0.0.1:{hang}/proxy.pac",
        ],
        timeout: 2,
        method: "pac",
        code: "PAC_TIMEOUT",
        step: "local",
        fix: &["did not answer in time"],
        others: &[("direct", "")],
        ..F
    },
    // Item 7: a PAC answer with an unknown keyword is DIRECT (browsers' rule), noted.
    Fault {
        name: "PAC answer with an unknown keyword",
        args: &[
            "--url",
            WEB,
            "--ca",
            "{ca}",
            "--method",
            "pac",
            "--pac",
            "{proxie_pac}",
        ],
        method: "pac",
        detail: &["skipped PROXIE 127.0.0.1:3128"],
        ..F
    },
    // Item 1 (kept): a blackholed PAC proxy, then DIRECT, every attempt reported.
    Fault {
        name: "PAC proxy blackholed, then DIRECT",
        net: Net::Blackhole,
        args: &[
            "--url",
            "http://127.0.0.1:1/",
            "--method",
            "pac",
            "--pac",
            "{blackhole_pac}",
        ],
        timeout: 3,
        method: "pac",
        code: "TCP_REFUSED",
        step: "tcp",
        fix: &["Nothing listens on 127.0.0.1:1"],
        attempts: &["TCP_TIMEOUT", "TCP_REFUSED"],
        ..F
    },
];

/// The placeholder values the shared peers give, and the namespaces' names (shared by the
/// rows' threads; the peers themselves live in [`Peers`]).
struct Env {
    vars: HashMap<&'static str, String>,
    dns_ns: String,
    blackhole_ns: String,
}

/// The peers, kept alive for the run (killed on drop).
#[allow(dead_code)]
struct Peers {
    dns: Dns,
    blackhole: Netns,
    keep: Vec<Box<dyn std::any::Any>>,
}

impl Env {
    fn expand(&self, s: &str) -> String {
        let mut out = s.to_owned();
        for (k, v) in &self.vars {
            out = out.replace(&format!("{{{k}}}"), v);
        }
        assert!(!out.contains('{'), "unknown placeholder in {s:?}");
        out
    }

    fn command(&self, net: Net) -> Command {
        let mut c = match net {
            Net::Root => Command::new(UPLINK),
            Net::Dns | Net::Blackhole => {
                let ns = if net == Net::Dns {
                    &self.dns_ns
                } else {
                    &self.blackhole_ns
                };
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, UPLINK]);
                c
            }
        };
        scrub_proxy_env(&mut c);
        c.env_remove("UPLINK_CONFIG_DIR")
            .env_remove("UPLINK_PROXY_PASSWORD");
        c
    }
}

/// A listener that accepts connections and never answers (kept open).
fn hanging_peer() -> (u16, Box<dyn std::any::Any>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in l.incoming().flatten() {
            held.push(c);
        }
    });
    (port, Box::new(()))
}

/// A scripted proxy on loopback: each request head on a connection is answered with
/// `reply(head)` (the connection is kept, as NTLM needs).
fn fake_proxy(reply: fn(&str) -> String) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut c in l.incoming().flatten() {
            std::thread::spawn(move || {
                let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
                let mut buf = Vec::new();
                let mut chunk = [0u8; 2048];
                loop {
                    match c.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                        buf.drain(..end + 4);
                        let _ = c.write_all(reply(&head).as_bytes());
                    }
                }
            });
        }
    });
    port
}

/// A TLS server for `web.uplink.localhost` (a leaf of `ca`) that completes the handshake, reads
/// the request and never answers.
fn tls_hanging_peer(ca: &TestCa) -> u16 {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let (cert_pem, key_pem) = ca.leaf(&["web.uplink.localhost"], false);
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap(),
    );
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            let config = config.clone();
            std::thread::spawn(move || {
                let _ = c.set_read_timeout(Some(Duration::from_secs(30)));
                let Ok(conn) = rustls::ServerConnection::new(config) else {
                    return;
                };
                let mut tls = rustls::StreamOwned::new(conn, c);
                let mut chunk = [0u8; 4096];
                // Reading drives the handshake, then takes the request; nothing is written.
                while matches!(tls.read(&mut chunk), Ok(n) if n > 0) {}
            });
        }
    });
    port
}

const AUTH_407: &str = "HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n";

/// Offers only Negotiate, whatever is sent.
fn negotiate_only(_: &str) -> String {
    format!("{AUTH_407}Proxy-Authenticate: Negotiate\r\n\r\n")
}

/// NTLM that rejects every password: a challenge for the negotiate message (type 1), a bare
/// `NTLM` 407 for the authenticate message (type 3).
fn ntlm_rejecting(head: &str) -> String {
    // NTLMSSP type 2: flags unicode, NTLM, always-sign, extended session security, target
    // info, 128-bit, 56-bit; challenge 0123456789abcdef; target info MsvAvEOL only.
    const TYPE2: &str = "TlRMTVNTUAACAAAAAAAAADAAAAABgoigASNFZ4mrze8AAAAAAAAAAAQABAAwAAAAAAAAAA==";
    if head.contains("NTLM TlRMTVNTUAAB") {
        format!("{AUTH_407}Proxy-Authenticate: NTLM {TYPE2}\r\n\r\n")
    } else {
        format!("{AUTH_407}Proxy-Authenticate: NTLM\r\n\r\n")
    }
}

fn setup() -> (Env, Peers) {
    let dir = tempfile::tempdir().unwrap();
    let mut vars: HashMap<&'static str, String> = HashMap::new();
    let mut keep: Vec<Box<dyn std::any::Any>> = Vec::new();

    let ca = Arc::new(TestCa::new(dir.path(), "fault test CA"));
    let web = WebServer::https(
        ca.clone(),
        CertMode::PerName,
        Arc::new(|_, path| match path {
            "/503" => 503,
            "/404" => 404,
            _ => 200,
        }),
    );
    let expired = WebServer::https(
        ca.clone(),
        CertMode::Expired(vec!["web.uplink.localhost".into()]),
        Arc::new(|_, _| 200),
    );
    let wrong = WebServer::https(
        ca.clone(),
        CertMode::Fixed(vec!["other.uplink.localhost".into()]),
        Arc::new(|_, _| 200),
    );
    let plain = WebServer::http(Arc::new(|_, _| 404));
    vars.insert("ca", ca.pem_file.display().to_string());
    vars.insert("web", web.port.to_string());
    vars.insert("expired", expired.port.to_string());
    vars.insert("wrong", wrong.port.to_string());
    vars.insert("plain", plain.port.to_string());
    vars.insert("closed", free_port().to_string());
    let (hang, h) = hanging_peer();
    vars.insert("hang", hang.to_string());
    keep.push(h);
    vars.insert("negotiate", fake_proxy(negotiate_only).to_string());
    vars.insert("ntlm", fake_proxy(ntlm_rejecting).to_string());

    // The real service: a workspace, the same workspace's CA from before it was re-created
    // (another data directory's `contoso`), a typo of its host, and a sensor whose client
    // certificate comes from a CA the service does not know.
    let data = tempfile::tempdir().unwrap();
    let svc = ServiceProc::start(data.path());
    let ws = create_workspace(data.path(), "contoso", svc.port);
    let before = tempfile::tempdir().unwrap();
    let old = create_workspace(before.path(), "contoso", svc.port);
    vars.insert("ws_url", ws.sensor_url.clone());
    vars.insert("ws_ca", ws.ca_file.display().to_string());
    vars.insert("old_ca", old.ca_file.display().to_string());
    vars.insert(
        "typo_url",
        ws.sensor_url
            .replace("contososensorapi", "contossosensorapi"),
    );
    let sdir = tempfile::tempdir().unwrap();
    let sensor = Sensor::installed(sdir.path(), &ws, &[]);
    let foreign = TestCa::new(sdir.path(), "foreign CA");
    let (cert, key) = foreign.leaf(&["sensor-x"], false);
    let cfg = std::path::Path::new(sensor.cfg());
    std::fs::write(cfg.join("client.pem"), cert).unwrap();
    std::fs::write(cfg.join("client.key"), key).unwrap();
    vars.insert("foreign_sensor", sensor.cfg().to_owned());
    // A sensor whose service is the test web server (it closes every connection after
    // answering): its CA is the test CA, its URL the web server's.
    let cdir = tempfile::tempdir().unwrap();
    let closing = Sensor::installed(cdir.path(), &ws, &[]);
    let ccfg = std::path::Path::new(closing.cfg());
    std::fs::copy(&ca.pem_file, ccfg.join("ca.pem")).unwrap();
    let toml = std::fs::read_to_string(ccfg.join("sensor.toml")).unwrap();
    let web_url = format!("https://web.uplink.localhost:{}", web.port);
    assert!(toml.contains(&ws.sensor_url), "{toml}");
    std::fs::write(
        ccfg.join("sensor.toml"),
        toml.replace(&ws.sensor_url, &web_url),
    )
    .unwrap();
    vars.insert("closing_sensor", closing.cfg().to_owned());
    // The same, for a server that completes TLS and never answers.
    let hdir = tempfile::tempdir().unwrap();
    let hanging = Sensor::installed(hdir.path(), &ws, &[]);
    let hcfg = std::path::Path::new(hanging.cfg());
    std::fs::copy(&ca.pem_file, hcfg.join("ca.pem")).unwrap();
    let toml = std::fs::read_to_string(hcfg.join("sensor.toml")).unwrap();
    let hang_url = format!("https://web.uplink.localhost:{}", tls_hanging_peer(&ca));
    std::fs::write(
        hcfg.join("sensor.toml"),
        toml.replace(&ws.sensor_url, &hang_url),
    )
    .unwrap();
    vars.insert("hanging_sensor", hanging.cfg().to_owned());

    // One open Squid (an ACL denying one host; its DNS has no server, so other names fail
    // fast) and one with Basic auth.
    let squid = Squid::start(SquidOptions {
        hosts: vec![
            "web.uplink.localhost".into(),
            "denied.uplink.localhost".into(),
            ws.sensor_host.clone(),
        ],
        extra_conf: vec![
            "acl denied dstdomain denied.uplink.localhost".into(),
            "http_access deny denied".into(),
            "dns_timeout 1 seconds".into(),
            "dns_retransmit_interval 100 milliseconds".into(),
        ],
        ..Default::default()
    });
    vars.insert("squid", squid.url());
    vars.insert("squid_port", squid.port.to_string());
    let basic = Squid::start(SquidOptions {
        basic: Some(("bob", "Right-pa55")),
        hosts: vec!["web.uplink.localhost".into()],
        ..Default::default()
    });
    vars.insert("basic", basic.url());
    let socks = Socks::start(Some(("sue", "Socks-pa55")));
    vars.insert("socks", socks.url(false));
    let mitm = Mitm::start();
    vars.insert("mitm", mitm.url());

    // PAC scripts.
    let broken = dir.path().join("broken.pac");
    std::fs::write(
        &broken,
        "function FindProxyForURL(url, host) { return \"DIRECT\" ",
    )
    .unwrap();
    vars.insert("broken_pac", broken.display().to_string());
    let proxie = dir.path().join("proxie.pac");
    std::fs::write(
        &proxie,
        "function FindProxyForURL(url, host) { return \"PROXIE 127.0.0.1:3128\"; }",
    )
    .unwrap();
    vars.insert("proxie_pac", proxie.display().to_string());

    // The namespaces.
    let dns = Dns::start(&[("known.fault.test", "127.0.0.1")]);
    require("nft");
    let blackhole = Netns::new();
    blackhole.hosts(&[]);
    blackhole.resolver_at_host(10, 1);
    blackhole.nft(&format!(
            "add table inet faults; add chain inet faults out {{ type filter hook output priority 0; }}; \
             add rule inet faults out udp dport 53 drop; \
             add rule inet faults out ip daddr {0} tcp dport {{ 9, 3128 }} drop",
            blackhole.host_ip
        ));
    vars.insert("host_ip", blackhole.host_ip.clone());
    let bh_pac = dir.path().join("blackhole.pac");
    std::fs::write(
        &bh_pac,
        format!(
            "function FindProxyForURL(url, host) {{ return \"PROXY {}:3128; DIRECT\"; }}",
            blackhole.host_ip
        ),
    )
    .unwrap();
    vars.insert("blackhole_pac", bh_pac.display().to_string());

    keep.push(Box::new((dir, ca, web, expired, wrong, plain)));
    keep.push(Box::new((data, svc, before, sdir, sensor, cdir, closing)));
    keep.push(Box::new((hdir, hanging)));
    keep.push(Box::new((squid, basic, socks, mitm)));
    let env = Env {
        vars,
        dns_ns: dns.ns.name.clone(),
        blackhole_ns: blackhole.name.clone(),
    };
    (
        env,
        Peers {
            dns,
            blackhole,
            keep,
        },
    )
}

/// Runs one row; `Err` says what was wrong, with the whole JSON.
fn run_row(env: &Env, f: &Fault) -> Result<(), String> {
    let mut cmd = env.command(f.net);
    cmd.args([
        "check",
        "--format",
        "json",
        "--timeout",
        &f.timeout.to_string(),
    ]);
    let explicit_method = f.args.contains(&"--method");
    if !explicit_method {
        cmd.args(["--method", f.method]);
    }
    for a in f.args {
        cmd.arg(env.expand(a));
    }
    let started = Instant::now();
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    let took = started.elapsed();
    let v: Value = serde_json::from_str(&stdout(&out)).map_err(|e| {
        format!(
            "no JSON ({e}); exit {:?}\n{}\n{}",
            out.status.code(),
            stdout(&out),
            stderr(&out)
        )
    })?;
    let ctx = |what: String| format!("{what}\n{v:#}\nstderr: {}", stderr(&out));
    let methods = v["urls"][0]["methods"]
        .as_array()
        .ok_or_else(|| ctx("no methods".into()))?;
    let find = |name: &str| methods.iter().find(|m| m["method"] == name);
    let m = find(f.method).ok_or_else(|| ctx(format!("no {} result", f.method)))?;
    // Every probe is bounded by --timeout: a row takes at most that, plus start-up.
    let bound = Duration::from_secs(u64::from(f.timeout)) + Duration::from_secs(3);
    if took > bound {
        return Err(ctx(format!(
            "took {took:?}, more than --timeout {} s allows",
            f.timeout
        )));
    }
    if f.code.is_empty() {
        if m["ok"] != true {
            return Err(ctx("expected to pass".into()));
        }
        if out.status.code() != Some(0) {
            return Err(ctx(format!("exit {:?}, expected 0", out.status.code())));
        }
    } else {
        if m["code"] != f.code || m["ok"] != false {
            return Err(ctx(format!("expected {}, got {}", f.code, m["code"])));
        }
        let step = m["steps"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["ok"] == false))
            .map(|s| s["step"].as_str().unwrap_or_default().to_owned())
            .unwrap_or_else(|| "local".into());
        if step != f.step {
            return Err(ctx(format!("expected step {}, got {step}", f.step)));
        }

        let fix = m["fix"].as_str().unwrap_or_default();
        for w in f.fix {
            let w = env.expand(w);
            if !fix.contains(&w) {
                return Err(ctx(format!("the fix lacks {w:?}: {fix:?}")));
            }
        }
        for w in f.never {
            if fix.contains(w) {
                return Err(ctx(format!("the fix says {w:?}: {fix:?}")));
            }
        }
        let passed = methods.iter().any(|m| m["ok"] == true);
        let want_exit = if passed { 0 } else { 1 };
        if out.status.code() != Some(want_exit) {
            return Err(ctx(format!(
                "exit {:?}, expected {want_exit}",
                out.status.code()
            )));
        }
    }
    // The failing step's detail, or for a passing row the first step's.
    let detail = m["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["ok"] == false).or(s.first()))
        .and_then(|s| s["detail"].as_str())
        .unwrap_or_default();
    for w in f.detail {
        if !detail.contains(&env.expand(w)) {
            return Err(ctx(format!("the detail lacks {w:?}")));
        }
    }
    for (name, code) in f.others {
        let o = find(name).ok_or_else(|| ctx(format!("{name} did not run")))?;
        let ok = if code.is_empty() {
            o["ok"] == true
        } else {
            o["code"] == *code
        };
        if !ok {
            return Err(ctx(format!("{name}: expected {code:?}")));
        }
    }
    if !f.walked.is_empty() {
        let got: Vec<&str> = m["steps"]
            .as_array()
            .map(|a| a.iter().map(|t| t["step"].as_str().unwrap_or("")).collect())
            .unwrap_or_default();
        if got != f.walked {
            return Err(ctx(format!("walked {got:?}, expected {:?}", f.walked)));
        }
    }
    if !f.attempts.is_empty() {
        let got: Vec<&str> = m["attempts"]
            .as_array()
            .map(|a| a.iter().map(|t| t["code"].as_str().unwrap_or("")).collect())
            .unwrap_or_default();
        if got != f.attempts {
            return Err(ctx(format!("attempts {got:?}, expected {:?}", f.attempts)));
        }
    }
    Ok(())
}

#[test]
fn fault_matrix() {
    let (env, _peers) = setup();
    // Rows run concurrently, a few at a time: each is bounded by its --timeout, and too many
    // processes at once on a small machine would make start-up, not the probe, the bound.
    let mut failures: Vec<String> = Vec::new();
    for chunk in FAULTS.chunks(8) {
        failures.extend(std::thread::scope(|s| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|f| (f.name, s.spawn(|| run_row(&env, f))))
                .collect();
            handles
                .into_iter()
                .filter_map(|(name, h)| match h.join() {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(format!("=== {name}: {e}")),
                    Err(_) => Some(format!("=== {name}: the runner panicked")),
                })
                .collect::<Vec<_>>()
        }));
    }
    assert!(
        failures.is_empty(),
        "{} of {} faults misnamed:\n{}",
        failures.len(),
        FAULTS.len(),
        failures.join("\n\n")
    );
}

/// The sensor names a stale workspace CA and a typo in the workspace host as `check` does (the
/// one classifier), directly and through a proxy; its status carries the fitted fix and its
/// heartbeats the same codes.
#[test]
fn the_sensor_names_a_stale_ca_and_an_unknown_workspace_as_check_does() {
    let data = tempfile::tempdir().unwrap();
    let svc = ServiceProc::start(data.path());
    let ws = create_workspace(data.path(), "contoso", svc.port);
    let before = tempfile::tempdir().unwrap();
    let old = create_workspace(before.path(), "contoso", svc.port);
    let squid = Squid::start(SquidOptions {
        hosts: vec![
            ws.sensor_host.clone(),
            format!("contosso{}", &ws.sensor_host[7..]),
        ],
        ..Default::default()
    });
    let sdir = tempfile::tempdir().unwrap();
    let sensor = Sensor::installed(sdir.path(), &ws, &[]);
    ok(sensor.send("{\"n\":1}\n"), "sensor send");
    let cfg = std::path::Path::new(sensor.cfg());
    let check_default = || -> Value {
        let mut c = uplink_cmd(&["check", "--config-dir", sensor.cfg(), "--method", "default"]);
        c.args(["--format", "json", "--timeout", "3"]);
        c.env_remove("UPLINK_CONFIG_DIR");
        let out = c.stdin(Stdio::null()).output().unwrap();
        serde_json::from_str(&stdout(&out))
            .unwrap_or_else(|e| panic!("{e}: {}{}", stdout(&out), stderr(&out)))
    };
    let expect = |code: &str, fix: &str, through: &str| {
        let (text, status) = sensor.run_once_failing(5, code);
        let got = status["last_error"]["fix"].as_str().unwrap_or_default();
        assert!(
            got.contains(fix),
            "{through}: the status's fix {got:?} lacks {fix:?}\n{text}"
        );
        let v = check_default();
        let m = &v["urls"][0]["methods"][0];
        assert_eq!(m["code"], code, "{through}: check says otherwise: {v:#}");
        assert!(
            m["fix"].as_str().unwrap_or_default().contains(fix),
            "{through}: {v:#}"
        );
    };

    // The workspace was re-created: the sensor's bundle holds the CA from before.
    std::fs::copy(&old.ca_file, cfg.join("ca.pem")).unwrap();
    expect(
        "TLS_UNTRUSTED_ROOT",
        "re-install from the current bundle",
        "direct",
    );
    ok(
        sensor.proxy(&["set", "--proxy-url", &squid.url()]),
        "sensor proxy set",
    );
    expect(
        "TLS_UNTRUSTED_ROOT",
        "re-install from the current bundle",
        "through Squid",
    );

    // A typo in the workspace host: the service's placeholder, not interception.
    std::fs::copy(&ws.ca_file, cfg.join("ca.pem")).unwrap();
    let toml = std::fs::read_to_string(cfg.join("sensor.toml")).unwrap();
    std::fs::write(
        cfg.join("sensor.toml"),
        toml.replace("contososensorapi", "contossosensorapi"),
    )
    .unwrap();
    expect(
        "WORKSPACE_UNKNOWN",
        "No workspace answers at contossosensorapi",
        "through Squid",
    );
    ok(
        sensor.proxy(&["set", "--direct"]),
        "sensor proxy set --direct",
    );
    expect(
        "WORKSPACE_UNKNOWN",
        "No workspace answers at contossosensorapi",
        "direct",
    );

    // The host name fixed: the heartbeats queued meanwhile reach the service carrying the same
    // codes, in order (the one classifier, in heartbeats too).
    std::fs::write(cfg.join("sensor.toml"), &toml).unwrap();
    ok(sensor.run_once(10), "run --once with the right host name");
    let mut rows = exported(data.path(), "contoso");
    rows.sort_by_key(|(_, seq, _)| *seq);
    let mut codes: Vec<String> = rows
        .iter()
        .filter(|(_, _, v)| v["kind"] == "heartbeat")
        .filter_map(|(_, _, v)| v["event"]["last_error_code"].as_str().map(str::to_owned))
        .collect();
    codes.dedup();
    assert_eq!(
        codes,
        ["TLS_UNTRUSTED_ROOT", "WORKSPACE_UNKNOWN"],
        "{rows:#?}"
    );
}

/// The table's names are unique, and every code it expects is a known code at that step or a
/// documented one (docs/check.md lists each code with the faults that produce it).
#[test]
fn the_fault_table_is_consistent_and_documented() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/check.md"))
        .unwrap();
    let mut names = std::collections::HashSet::new();
    for f in FAULTS {
        assert!(names.insert(f.name), "duplicate row {}", f.name);
        if f.code.is_empty() {
            continue;
        }
        let code: uplink_diag::Code = f.code.parse().unwrap();
        assert!(
            doc.contains(&format!("`{}`", code.as_str())),
            "docs/check.md does not list {}",
            f.code
        );
    }
}
