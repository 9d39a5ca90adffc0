//! The documentation's commands, run as written.
//!
//! - Every `uplink winproxy …` and `uplink allowlist …` line of README.md and docs/*.md (the
//!   tools that need no service) runs in a directory holding the files it names — a Windows
//!   export, service-tags files, backups — made from the shared fixtures, through `sh -c`, so
//!   its pipes and redirections count too, and must exit as documented.
//! - The README's walk-through ("The service", "The sensor") runs line by line in a confined
//!   machine of its own (mount and network namespaces) with the README's own paths, names, proxy
//!   and password.
//!
//! That every documented command parses with this build's flags is the binary's unit test
//! `every_documented_command_parses`; the analyzer's examples in docs/check.md name public hosts,
//! which tests never contact, so they are parsed, not run.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{stderr, UPLINK};

#[path = "../../src/doccmds.rs"]
#[allow(dead_code)]
mod doccmds;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixtures() -> PathBuf {
    repo().join("../shared/fixtures")
}

/// Every fenced `uplink` command of README.md and docs/*.md, with the file it is in.
fn documented() -> Vec<(String, String)> {
    let mut files = vec![repo().join("README.md")];
    for e in std::fs::read_dir(repo().join("docs")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "md") {
            files.push(p);
        }
    }
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        for c in doccmds::doc_commands(&text) {
            out.push((name.clone(), c));
        }
    }
    out
}

/// A .reg file's text (UTF-16 with a BOM, as regedit writes, or UTF-8).
fn reg_text(bytes: &[u8]) -> String {
    if bytes.starts_with(&[0xff, 0xfe]) {
        let units: Vec<u16> = bytes[2..]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        String::from_utf16(&units).unwrap()
    } else {
        String::from_utf8(bytes.to_vec()).unwrap()
    }
}

fn utf16_reg(text: &str) -> Vec<u8> {
    let mut out = vec![0xff, 0xfe];
    for u in text.encode_utf16() {
        out.extend_from_slice(&u.to_le_bytes());
    }
    out
}

/// The files the documented commands name, in `dir`.
fn provide_files(dir: &Path) {
    let winproxy = fixtures().join("winproxy/reg");
    std::fs::copy(
        winproxy.join("ProxySettings-02.reg"),
        dir.join("user-export.reg"),
    )
    .unwrap();
    // One export holding both service accounts' keys, as `reg export` of HKU would give.
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/winproxy");
    let b18 = reg_text(&std::fs::read(golden.join("backup-18.reg")).unwrap());
    let b19 = reg_text(&std::fs::read(golden.join("backup-19.reg")).unwrap());
    let b19_body = b19
        .split_once('\n')
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    std::fs::write(
        dir.join("current-services.reg"),
        utf16_reg(&format!("{}{b19_body}", b18.trim_end_matches('\u{feff}'))),
    )
    .unwrap();
    // This week's service tags, and last week's: the same with one prefix fewer in the tag the
    // docs diff, so `diff` has a change to report.
    let tags = fixtures().join("servicetags/ServiceTags_Public_cn370_20250911.json");
    std::fs::copy(&tags, dir.join("ServiceTags_Public.json")).unwrap();
    std::fs::copy(&tags, dir.join("today.json")).unwrap();
    let mut older: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&tags).unwrap()).unwrap();
    for v in older["values"].as_array_mut().unwrap() {
        if v["name"] == "AzureAdvancedThreatProtection" {
            v["properties"]["addressPrefixes"]
                .as_array_mut()
                .unwrap()
                .remove(0);
        }
    }
    std::fs::write(dir.join("last-week.json"), older.to_string()).unwrap();
}

#[test]
fn the_documented_offline_commands_run_as_written() {
    let dir = tempfile::tempdir().unwrap();
    provide_files(dir.path());
    let bin = Path::new(UPLINK).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut ran = Vec::new();
    for (file, line) in documented() {
        let Some(words) = doccmds::uplink_words(&line) else {
            continue;
        };
        let tool = words.get(1).map(String::as_str);
        if !matches!(tool, Some("winproxy" | "allowlist"))
            || words.get(2).is_some_and(|w| w == "verify")
        {
            continue;
        }
        let out = Command::new("sh")
            .args(["-c", &line])
            .current_dir(dir.path())
            .env("PATH", &path)
            .output()
            .unwrap();
        // `allowlist diff` exits 1 when the tag changed, as the docs say it does here.
        let want = if words.get(2).is_some_and(|w| w == "diff") {
            1
        } else {
            0
        };
        assert_eq!(
            out.status.code(),
            Some(want),
            "{file}: `{line}` exited {:?}: {}",
            out.status.code(),
            stderr(&out)
        );
        ran.push(line);
    }
    // README's Windows and allow-list sections: four winproxy and four allowlist lines.
    assert!(ran.len() >= 8, "only these ran: {ran:#?}");
    for f in ["services.reg", "restore.reg", "winhttp.reg", "policy.reg"] {
        assert!(
            dir.path().join(f).is_file(),
            "the documented command did not write {f}"
        );
    }
}

/// The fenced blocks of one README section (`### NAME` up to the next heading), their lines as
/// written (continuations joined, comment-only lines left out).
fn readme_section(name: &str) -> Vec<String> {
    let text = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let start = text
        .find(&format!("\n### {name}\n"))
        .unwrap_or_else(|| panic!("README has no section {name:?}"));
    let body = &text[start + 1..];
    let end = body[4..]
        .find("\n## ")
        .into_iter()
        .chain(body[4..].find("\n### "))
        .min()
        .map_or(body.len(), |i| i + 4);
    let mut out = Vec::new();
    let mut fenced = false;
    let mut pending = String::new();
    for line in body[..end].lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        let l = line.trim();
        if !fenced || (pending.is_empty() && (l.is_empty() || l.starts_with('#'))) {
            continue;
        }
        match l.strip_suffix('\\') {
            Some(head) => {
                pending.push_str(head.trim_end());
                pending.push(' ');
            }
            None => {
                pending.push_str(l);
                out.push(std::mem::take(&mut pending));
            }
        }
    }
    out
}

/// The README's walk-through, run as written, in order, in a machine of its own: a mount
/// namespace over /etc and /var/lib (the default paths are the README's) and a network
/// namespace, where `proxy.contoso.com` (a hosts entry) is a real Squid on port 8080 asking
/// `CONTOSO\proxyuser` for `P@ssw0rd`, resolving the workspace's host and tunnelling to 8443 —
/// the two things the README says a proxy needs. The service section's commands, the route
/// proof with curl, then the sensor section's: install through the proxy, send, run (with
/// `--once`, as its comment offers: a test cannot wait on a daemon that never exits), status.
#[test]
fn the_readme_walkthrough_runs_as_written() {
    use crate::support::confined::Confined;
    use crate::support::daemon::Daemon;
    use std::time::Duration;

    for p in ["squid", "openssl", "curl", "jq"] {
        crate::support::require(p);
    }
    let dir = tempfile::tempdir().unwrap();
    let ns = Confined::with_network(dir.path());
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let bin = Path::new(UPLINK)
        .parent()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    // In the work directory: entering the mount namespace (nsenter) moves the cwd to its
    // root, the host's `/`, where the README's relative files (contoso-ca.pem, …) landed.
    let sh = |line: &str| {
        let line = format!("cd '{}' && {line}", work.display());
        let mut c = ns.command("sh", &["-c", &line]);
        c.current_dir(&work)
            .env("PATH", format!("{bin}:/usr/sbin:/usr/bin:/sbin:/bin"));
        c
    };

    // The proxy the README names, on the machine's own network.
    let hosts = ns.path("/etc/hosts");
    let mut text = std::fs::read_to_string(&hosts).unwrap_or_default();
    text.push_str("127.0.0.1 proxy.contoso.com\n");
    std::fs::write(&hosts, text).unwrap();
    let squid_dir = dir.path().join("squid");
    std::fs::create_dir_all(&squid_dir).unwrap();
    std::fs::set_permissions(
        &squid_dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let hash = Command::new("openssl")
        .args(["passwd", "-apr1", "P@ssw0rd"])
        .output()
        .unwrap();
    std::fs::write(
        squid_dir.join("passwd"),
        format!(
            "CONTOSO\\proxyuser:{}",
            String::from_utf8_lossy(&hash.stdout)
        ),
    )
    .unwrap();
    std::fs::write(
        squid_dir.join("hosts"),
        "127.0.0.1 contososensorapi.uplink.localhost\n",
    )
    .unwrap();
    let d = squid_dir.display();
    std::fs::write(
        squid_dir.join("squid.conf"),
        format!(
            "http_port 127.0.0.1:8080\npid_filename {d}/squid.pid\ncache_log {d}/cache.log\n\
             access_log stdio:{d}/access.log\ncache deny all\ncache_mem 8 MB\n\
             hosts_file {d}/hosts\nshutdown_lifetime 0 seconds\ndns_nameservers 127.0.0.1\n\
             auth_param basic program /usr/lib/squid/basic_ncsa_auth {d}/passwd\n\
             auth_param basic casesensitive on\nacl authed proxy_auth REQUIRED\n\
             acl SSL_ports port 8443\nacl CONNECT method CONNECT\n\
             http_access deny CONNECT !SSL_ports\nhttp_access allow CONNECT authed\n\
             http_access deny all\n"
        ),
    )
    .unwrap();
    let squid = Daemon::spawn(
        "squid (proxy.contoso.com)",
        ns.command(
            "squid",
            &[
                "-N",
                "-d",
                "1",
                "-n",
                "uplinkreadme",
                "-f",
                &format!("{d}/squid.conf"),
            ],
        ),
    );
    squid.expect("Accepting HTTP Socket connections", Duration::from_secs(30));

    let run = |line: &str| {
        let out = sh(line).output().unwrap();
        assert!(
            out.status.success(),
            "README: `{line}` failed ({:?}):\n{}\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            stderr(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };

    // "The service": create, then serve (in the background: it runs until stopped).
    let mut service = None;
    let service_lines = readme_section("The service");
    assert!(service_lines.len() >= 4, "{service_lines:?}");
    for line in &service_lines {
        if line.starts_with("uplink service ") {
            // `exec`: the Daemon's kill must reach the service, not a shell that leaves it
            // running (it outlived the test, holding the namespaces).
            let d = Daemon::spawn("the README's service", sh(&format!("exec {line}")));
            d.expect("listening on https://0.0.0.0:8443", Duration::from_secs(30));
            service = Some(d);
        } else if line.starts_with("curl ") {
            assert_eq!(run(line).trim(), "Ok", "`{line}`");
        } else {
            run(line);
        }
    }
    assert!(service.is_some(), "the section starts no service");

    // "The sensor", through proxy.contoso.com.
    let sensor_lines = readme_section("The sensor");
    assert!(sensor_lines.len() >= 5, "{sensor_lines:?}");
    let mut status = String::new();
    for line in &sensor_lines {
        let line = match line.split_once(" #") {
            Some((cmd, _)) => cmd.trim().to_owned(),
            None => line.clone(),
        };
        let line = if line == "uplink sensor run" {
            "uplink sensor run --once".to_owned()
        } else {
            line
        };
        let out = run(&line);
        if line == "uplink sensor status" {
            status = out;
        }
    }
    assert!(
        status.contains("PROXY proxy.contoso.com:8080") && status.contains("queue         0"),
        "status after the walk-through:\n{status}"
    );
    let log = std::fs::read_to_string(squid_dir.join("access.log")).unwrap_or_default();
    assert!(
        log.lines().any(|l| l.contains("TCP_TUNNEL/200")
            && l.contains("contososensorapi.uplink.localhost:8443")),
        "no tunnel through proxy.contoso.com:\n{log}"
    );
    eprintln!("status after the walk-through:\n{status}");
    // The event sent is at the service, exactly once.
    let events =
        run("uplink events export contoso --data-dir /var/lib/uplink-service --kind logon");
    assert_eq!(events.lines().count(), 1, "{events}");
    assert!(events.contains("\"user\":\"alice\""), "{events}");
}
