//! `uplink proxy wpad` through lease files: option 252 pointing at a PAC on a loopback HTTP
//! server is found; a lease without it and an empty resolv.conf find nothing, and say so.
//! DNS discovery in a network namespace with its own dnsmasq and web server; a sensor in wpad mode
//! uploading through the Squid its discovered script names, from a cached discovery; PAC over https.

use crate::support;

use support::{stdout, uplink};

/// Serves `body` to every HTTP request (cacheable for an hour).
fn serve_pac(body: &'static str) -> String {
    serve_pac_n_times(body.to_string(), usize::MAX)
}

/// Serves `body` to exactly `n` HTTP requests, then closes the port (so a later success proves
/// a cached copy was used). Returns the URL.
fn serve_pac_n_times(body: String, n: usize) -> String {
    support::http::serve_pac(body, &["Cache-Control: max-age=3600"], n)
}

#[test]
fn option_252_in_a_networkd_lease_is_found() {
    let url = serve_pac("function FindProxyForURL(u, h) { return 'DIRECT'; }");
    let dir = tempfile::tempdir().unwrap();
    let hex: String = format!("{url}\0")
        .bytes()
        .map(|b| format!("{b:02X}"))
        .collect();
    std::fs::write(
        dir.path().join("2"),
        format!("ADDRESS=10.0.0.5\nOPTION_252={hex}\n"),
    )
    .unwrap();
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(&resolv, "nameserver 127.0.0.1\n").unwrap();
    let o = uplink(&[
        "proxy",
        "wpad",
        "--json",
        "--leases",
        dir.path().join("2").to_str().unwrap(),
        "--resolv-conf",
        resolv.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert_eq!(v["pac_url"], url.as_str());
    let steps = v["steps"].as_array().unwrap();
    assert_eq!(steps[0]["step"], "dhcp (networkd lease)");
    assert_eq!(steps[0]["outcome"], format!("option 252: {url}"));
    assert!(
        steps.last().unwrap()["outcome"]
            .as_str()
            .unwrap()
            .starts_with("found a PAC"),
        "{v}"
    );
}

#[test]
fn nothing_found_is_exit_1_with_the_steps() {
    let dir = tempfile::tempdir().unwrap();
    let lease = dir.path().join("dhclient.eth0.leases");
    std::fs::write(&lease, "lease {\n  option domain-name \"com\";\n}\n").unwrap();
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(&resolv, "search co.uk\n").unwrap();
    let o = uplink(&[
        "proxy",
        "wpad",
        "--leases",
        lease.to_str().unwrap(),
        "--resolv-conf",
        resolv.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    // Public suffixes are never tried: no wpad.com, no wpad.co.uk.
    assert!(
        !out.contains("wpad.com") && !out.contains("wpad.co.uk"),
        "{out}"
    );
    assert!(
        out.contains("no option 252") && out.ends_with("PAC: none found\n"),
        "{out}"
    );
}

fn networkd_lease(dir: &std::path::Path, url: &str) -> std::path::PathBuf {
    let hex: String = format!("{url}\0")
        .bytes()
        .map(|b| format!("{b:02X}"))
        .collect();
    let path = dir.join("3");
    std::fs::write(&path, format!("ADDRESS=10.0.0.5\nOPTION_252={hex}\n")).unwrap();
    path
}

fn json(o: std::process::Output, what: &str) -> serde_json::Value {
    let text = support::ok(o, what);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {text}"))
}

/// A sensor set to `--wpad` takes the route of the script a DHCP lease points to, uploads through
/// a real Squid on it, and keeps the discovery: the script's server answers once only, yet later
/// commands and the upload still route by it. Changing the settings forgets it.
#[test]
fn a_sensor_in_wpad_mode_uploads_through_the_discovered_proxy_and_caches_the_discovery() {
    use support::sensor::Sensor;
    use support::squid::{Squid, SquidOptions};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    let svc = support::ServiceProc::start(&data);
    let ws = support::create_workspace(&data, "wpadlease", svc.port);
    let squid = Squid::start(SquidOptions {
        hosts: vec![ws.sensor_host.clone()],
        ..Default::default()
    });
    let pac = format!(
        "function FindProxyForURL(url, host) {{\n\
           if (url === 'https://{}:{}/') return 'PROXY 127.0.0.1:{}';\n\
           return 'DIRECT';\n\
         }}\n",
        ws.sensor_host, svc.port, squid.port
    );
    let pac_url = serve_pac_n_times(pac, 1);
    let leases = tempfile::tempdir().unwrap();
    let lease = networkd_lease(leases.path(), &pac_url);
    let cfg = dir.path().join("sensor");
    let c = cfg.to_str().unwrap();
    let sensor = Sensor::installed(&cfg, &ws, &["--quiet"]);
    let with_lease = |args: &[&str]| {
        let mut cmd = support::uplink_cmd(args);
        cmd.env("UPLINK_WPAD_LEASES", &lease);
        cmd.output().unwrap()
    };

    // Setting the mode discovers (the one request the server answers) and shows the route.
    let set = with_lease(&["sensor", "proxy", "set", "--wpad", "--config-dir", c]);
    let out = support::ok(set, "proxy set --wpad");
    assert!(
        out.contains(&format!("PROXY 127.0.0.1:{}", squid.port)),
        "{out}"
    );
    let show = json(
        with_lease(&["sensor", "proxy", "show", "--json", "--config-dir", c]),
        "proxy show",
    );
    assert_eq!(show["mode"], "wpad", "{show}");
    assert_eq!(
        show["route"][0],
        format!("PROXY 127.0.0.1:{}", squid.port),
        "{show}"
    );
    let wpad = show["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["source"] == "wpad")
        .expect("a wpad source")
        .clone();
    assert_eq!(wpad["used"], true, "{show}");
    assert!(
        wpad["detail"].as_str().unwrap().contains("cached"),
        "the second look comes from the cache: {show}"
    );

    // The upload goes through Squid although the script's server is gone.
    let lines: String = (0..40)
        .map(|i| format!("{{\"kind\":\"wpad\",\"n\":{i}}}\n"))
        .collect();
    support::ok(sensor.send(&lines), "send");
    let run = with_lease(&support::sensor::run_once_args(c, "30"));
    assert!(
        run.status.success(),
        "{}\n{}",
        support::stderr(&run),
        squid.logs()
    );
    assert_eq!(
        sensor.status()["route"],
        format!("PROXY 127.0.0.1:{}", squid.port)
    );
    assert!(
        squid
            .access_log()
            .contains(&format!("CONNECT {}:{}", ws.sensor_host, svc.port)),
        "{}",
        squid.access_log()
    );
    let mut got: Vec<u64> = support::exported(&data, "wpadlease")
        .iter()
        .filter(|(_, _, v)| v["event"]["kind"] == "wpad")
        .map(|(_, _, v)| v["event"]["n"].as_u64().unwrap())
        .collect();
    got.sort_unstable();
    assert_eq!(got, (0..40).collect::<Vec<_>>(), "every event exactly once");

    // New settings forget the discovery: the server is gone now, so nothing is found.
    let again = json(
        {
            let set = with_lease(&["sensor", "proxy", "set", "--wpad", "--config-dir", c]);
            support::ok(set, "proxy set --wpad again");
            with_lease(&["sensor", "proxy", "show", "--json", "--config-dir", c])
        },
        "proxy show",
    );
    let wpad = again["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["source"] == "wpad")
        .unwrap()
        .clone();
    assert_eq!(wpad["used"], false, "{again}");
    assert!(
        wpad["detail"].as_str().unwrap().contains("nothing found"),
        "{again}"
    );
}

/// `sensor install` with no proxy switches is in auto mode, whose first step is WPAD: its
/// connection check (and enrollment) goes the way the discovered script says, as the running
/// sensor's will, and it caches nothing before it succeeds.
#[test]
fn install_in_auto_mode_enrolls_along_the_wpad_route() {
    use support::squid::{Squid, SquidOptions};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    let svc = support::ServiceProc::start(&data);
    let ws = support::create_workspace(&data, "wpadinstall", svc.port);
    let squid = Squid::start(SquidOptions {
        hosts: vec![ws.sensor_host.clone()],
        ..Default::default()
    });
    let pac = format!(
        "function FindProxyForURL(url, host) {{ return 'PROXY 127.0.0.1:{}'; }}\n",
        squid.port
    );
    let leases = tempfile::tempdir().unwrap();
    let lease = networkd_lease(leases.path(), &serve_pac_n_times(pac, 1));
    let cfg = dir.path().join("sensor");
    let mut install = support::uplink_cmd(&["sensor", "install", "--json", "--bundle"]);
    install
        .arg(&ws.bundle_path)
        .arg("--config-dir")
        .arg(&cfg)
        .env("UPLINK_WPAD_LEASES", &lease);
    let installed = json(install.output().unwrap(), "install");
    assert_eq!(
        installed["route"],
        format!("PROXY 127.0.0.1:{}", squid.port),
        "{installed}"
    );
    assert!(
        squid
            .access_log()
            .contains(&format!("CONNECT {}:{}", ws.sensor_host, svc.port)),
        "enrolled through the discovered proxy: {}",
        squid.access_log()
    );
    assert!(
        !cfg.join("wpad.json").exists(),
        "install caches no discovery"
    );
}

/// DNS discovery on a host of its own: a network namespace whose resolver is a dnsmasq on its
/// loopback (port 53 there is ours) and whose search domain is eu.corp.uplink.test. Only
/// wpad.corp.uplink.test exists, served by an HTTP server on the namespace's port 80: discovery
/// tries wpad.eu.corp.uplink.test, then finds wpad.corp.uplink.test, and never goes higher.
#[test]
fn dns_discovery_walks_up_the_search_domain_to_the_wpad_host() {
    use std::time::Duration;
    use support::daemon::Daemon;
    support::require("dnsmasq");
    support::require("python3");
    let ns = support::netns::Netns::new();
    ns.hosts(&[]);
    ns.resolv_conf("nameserver 127.0.0.1\nsearch eu.corp.uplink.test\n");
    let mut dnsmasq_cmd = ns.command("dnsmasq");
    dnsmasq_cmd.args([
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--bind-interfaces",
        "--listen-address=127.0.0.1",
        "--port=53",
        "--address=/wpad.corp.uplink.test/127.0.0.1",
        "--pid-file=",
        "--log-queries",
        "--log-facility=-",
    ]);
    let dnsmasq = Daemon::spawn("dnsmasq", dnsmasq_cmd);
    let www = tempfile::tempdir().unwrap();
    std::fs::write(
        www.path().join("wpad.dat"),
        "function FindProxyForURL(url, host) {\n\
           if (dnsDomainIs(host, '.localhost')) return 'PROXY 10.9.9.9:3128; DIRECT';\n\
           return 'DIRECT';\n\
         }\n",
    )
    .unwrap();
    let mut http_cmd = ns.command("python3");
    http_cmd
        .args([
            "-u",
            "-m",
            "http.server",
            "80",
            "--bind",
            "127.0.0.1",
            "--directory",
        ])
        .arg(www.path());
    let http = Daemon::spawn("python3 http.server", http_cmd);
    // Ready signals: dnsmasq logs "started", http.server prints "Serving HTTP".
    dnsmasq.expect("started", Duration::from_secs(20));
    http.expect("Serving HTTP", Duration::from_secs(20));

    let mut cmd = ns.command(support::UPLINK);
    support::scrub_proxy_env(&mut cmd);
    // Inside the namespace /etc/resolv.conf is the namespace's: use it.
    cmd.env("UPLINK_WPAD_RESOLV_CONF", "/etc/resolv.conf");
    let out = cmd.args(["proxy", "wpad", "--json"]).output().unwrap();
    drop((dnsmasq, http));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(&out), support::stderr(&out)));
    assert_eq!(out.status.code(), Some(0), "{v}");
    assert_eq!(v["pac_url"], "http://wpad.corp.uplink.test/wpad.dat", "{v}");
    let dns: Vec<&serde_json::Value> = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["step"] == "dns")
        .collect();
    assert_eq!(dns.len(), 2, "{v}");
    assert_eq!(dns[0]["source"], "http://wpad.eu.corp.uplink.test/wpad.dat");
    assert!(dns[0]["pac_url"].is_null(), "{v}");
    assert!(
        dns[1]["outcome"]
            .as_str()
            .unwrap()
            .starts_with("found a PAC"),
        "{v}"
    );
}

/// PAC files over https trust the system's roots (here SSL_CERT_FILE, as rustls-native-certs
/// honours it), and a server whose CA is not among them is refused with the reason.
#[test]
fn a_pac_over_https_trusts_the_system_roots_only() {
    support::require("openssl");
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    support::openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &p("ca.key"),
        "-out",
        &p("ca.pem"),
        "-days",
        "2",
        "-subj",
        "/CN=uplink test PAC CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
    ]);
    support::openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &p("srv.key"),
        "-out",
        &p("srv.csr"),
        "-subj",
        "/CN=localhost",
    ]);
    std::fs::write(
        dir.path().join("ext.cnf"),
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    support::openssl(&[
        "x509",
        "-req",
        "-in",
        &p("srv.csr"),
        "-CA",
        &p("ca.pem"),
        "-CAkey",
        &p("ca.key"),
        "-CAcreateserial",
        "-out",
        &p("srv.pem"),
        "-days",
        "2",
        "-extfile",
        &p("ext.cnf"),
    ]);
    std::fs::write(
        dir.path().join("proxy.pac"),
        "function FindProxyForURL(url, host) { return 'PROXY tls-pac.example:3128'; }\n",
    )
    .unwrap();
    let port = support::squid::free_port();
    let mut server = std::process::Command::new("openssl")
        .args([
            "s_server",
            "-quiet",
            "-WWW",
            "-accept",
            &port.to_string(),
            "-cert",
        ])
        .arg(p("srv.pem"))
        .arg("-key")
        .arg(p("srv.key"))
        .current_dir(dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("openssl s_server");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "s_server did not listen"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let url = format!("https://localhost:{port}/proxy.pac");
    let pac = |cert_file: Option<&str>| {
        let mut cmd =
            support::uplink_cmd(&["proxy", "pac", "--pac", &url, "--url", "https://a.example/"]);
        match cert_file {
            Some(f) => cmd.env("SSL_CERT_FILE", f),
            None => cmd.env_remove("SSL_CERT_FILE"),
        };
        cmd.output().unwrap()
    };
    let trusted = pac(Some(&p("ca.pem")));
    let untrusted = pac(None);
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(
        support::ok(trusted, "proxy pac over https"),
        "PROXY tls-pac.example:3128\n"
    );
    assert_ne!(untrusted.status.code(), Some(0));
    let err = support::stderr(&untrusted);
    assert!(
        err.contains("TLS handshake failed") && err.contains("SSL_CERT_FILE"),
        "{err}"
    );
}
