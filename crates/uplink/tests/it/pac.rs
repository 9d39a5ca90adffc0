//! `uplink proxy pac` end to end: scripts from files and from a loopback HTTP server, fixed DNS,
//! clock and address, and bad input (syntax error, endless loop, huge body, throwing function,
//! garbage result), each of which must end with a clear error in bounded time.

use crate::support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use support::{ok, stderr, stdout, uplink};

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, text).expect("write");
    p
}

const ECHO_PAC: &str = "function FindProxyForURL(url, host) {\n\
  if (host == 'direct.example') return 'DIRECT';\n\
  return 'PROXY p.example:3128; DIRECT #' + url + '#' + host;\n}\n";

#[test]
fn prints_exactly_what_the_script_returns() {
    let dir = tempfile::tempdir().unwrap();
    let pac = write(&dir, "p.pac", ECHO_PAC);
    let out = ok(
        uplink(&[
            "proxy",
            "pac",
            "--pac",
            pac.to_str().unwrap(),
            "--url",
            "https://User:pw@Mixed.Example:8443/path?q=1",
        ]),
        "proxy pac --url",
    );
    // The URL is passed exactly as given; the host is derived from it, lower-cased.
    assert_eq!(
        out,
        "PROXY p.example:3128; DIRECT #https://User:pw@Mixed.Example:8443/path?q=1#mixed.example\n"
    );
}

#[test]
fn url_list_in_order_with_error_lines() {
    let dir = tempfile::tempdir().unwrap();
    let pac = write(&dir, "p.pac", "function FindProxyForURL(u, h) {\n if (h == 'bad.example') return 42;\n return 'PROXY ' + h + ':1';\n}\n");
    let urls = write(&dir, "urls.txt", "http://a.example/\n\n# comment\nhttp://bad.example/\nnot a url\nhttp://[2001:db8::1]:8080/\n");
    let o = uplink(&[
        "proxy",
        "pac",
        "--pac",
        pac.to_str().unwrap(),
        "--urls",
        urls.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "stderr: {}", stderr(&o));
    let lines: Vec<String> = stdout(&o).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert_eq!(lines[0], "PROXY a.example:1");
    assert!(
        lines[1].starts_with("ERROR: FindProxyForURL returned the number 42"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].starts_with("ERROR: ") && lines[2].contains("not a url"),
        "{}",
        lines[2]
    );
    assert_eq!(lines[3], "PROXY 2001:db8::1:1");

    // --json: the same results, each with its URL, the same exit status.
    let o = uplink(&[
        "proxy",
        "pac",
        "--pac",
        pac.to_str().unwrap(),
        "--urls",
        urls.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(1), "stderr: {}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let v = v.as_array().unwrap();
    assert_eq!(v.len(), 4, "{v:?}");
    assert_eq!(v[0]["url"], "http://a.example/");
    assert_eq!(v[0]["result"], "PROXY a.example:1");
    assert!(v[1]["error"]
        .as_str()
        .unwrap()
        .starts_with("FindProxyForURL returned the number 42"));
    assert_eq!(v[2]["url"], "not a url");
    assert!(v[2]["result"].is_null() && v[2]["error"].is_string());
    assert_eq!(v[3]["result"], "PROXY 2001:db8::1:1");
}

#[test]
fn resolve_my_ip_and_now_fix_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let pac = write(
        &dir,
        "p.pac",
        "function FindProxyForURL(u, h) {\n\
         return [dnsResolve(h), isInNet(h, '10.0.0.0', '255.0.0.0'), dnsResolveEx(h), myIpAddress(), myIpAddressEx(),\n\
                 weekdayRange('MON'), timeRange(9), timeRange(8, 'GMT'), dateRange('MAR'), isResolvable('nxdomain.invalid')].join(' ');\n}\n",
    );
    let out = ok(
        uplink(&[
            "proxy",
            "pac",
            "--pac",
            pac.to_str().unwrap(),
            "--url",
            "http://intranet.corp.example/",
            "--resolve",
            "intranet.corp.example=10.1.2.3",
            "--resolve",
            "intranet.corp.example=2001:db8::7",
            "--my-ip",
            "192.0.2.10",
            "--my-ip",
            "2001:db8::10",
            "--now",
            "2024-03-04T09:30:00+01:00",
        ]),
        "proxy pac with fixed environment",
    );
    assert_eq!(
        out,
        "10.1.2.3 true 10.1.2.3;2001:db8::7 192.0.2.10 192.0.2.10;2001:db8::10 true true true true false\n"
    );
}

#[test]
fn syntax_error_reports_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let pac = write(
        &dir,
        "p.pac",
        "// a comment\nfunction FindProxyForURL(u, h) {\n  return 'DIRECT' +;\n}\n",
    );
    let o = uplink(&[
        "proxy",
        "pac",
        "--pac",
        pac.to_str().unwrap(),
        "--url",
        "http://a/",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("SyntaxError") && err.contains("line 3"),
        "{err}"
    );
    assert!(stdout(&o).is_empty());
}

#[test]
fn throwing_function_reports_message_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let pac = write(
        &dir,
        "p.pac",
        "function FindProxyForURL(u, h) {\n  throw new Error('no route for ' + h);\n}\n",
    );
    let o = uplink(&[
        "proxy",
        "pac",
        "--pac",
        pac.to_str().unwrap(),
        "--url",
        "http://a.example/",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("no route for a.example") && err.contains("line 2"),
        "{err}"
    );
}

#[test]
fn endless_loop_ends_in_bounded_time() {
    let dir = tempfile::tempdir().unwrap();
    let pac = write(
        &dir,
        "p.pac",
        "function FindProxyForURL(u, h) { while (true) {} }\n",
    );
    let start = Instant::now();
    let o = uplink(&[
        "proxy",
        "pac",
        "--pac",
        pac.to_str().unwrap(),
        "--url",
        "http://a/",
        "--timeout-ms",
        "300",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );
    assert!(
        stderr(&o).contains("ran longer than 300ms"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        vec!["proxy", "pac", "--pac", "x.pac"],
        vec![
            "proxy",
            "pac",
            "--pac",
            "x.pac",
            "--url",
            "http://a/",
            "--resolve",
            "nohost",
        ],
        vec![
            "proxy",
            "pac",
            "--pac",
            "x.pac",
            "--url",
            "http://a/",
            "--now",
            "yesterday",
        ],
        vec![
            "proxy",
            "pac",
            "--pac",
            "x.pac",
            "--url",
            "http://a/",
            "--urls",
            "f",
        ],
    ] {
        let o = uplink(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    }
    let o = uplink(&[
        "proxy",
        "pac",
        "--pac",
        "/nonexistent/x.pac",
        "--url",
        "http://a/",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("/nonexistent/x.pac"), "{}", stderr(&o));
}

/// A one-shot-per-connection HTTP server on loopback: answers every request with `response`
/// (head, then `body_len` bytes of `fill` streamed), until the test ends.
fn serve(head: String, body: Vec<u8>, repeat_body: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut buf = [0u8; 4096];
            let mut req = Vec::new();
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            if conn.write_all(head.as_bytes()).is_err() {
                continue;
            }
            for _ in 0..repeat_body {
                if conn.write_all(&body).is_err() {
                    break;
                }
            }
        }
    });
    format!("http://{addr}/proxy.pac")
}

#[test]
fn pac_served_over_http() {
    let url = serve(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/x-ns-proxy-autoconfig\r\nCache-Control: max-age=300\r\nContent-Length: {}\r\n\r\n",
            ECHO_PAC.len()
        ),
        ECHO_PAC.as_bytes().to_vec(),
        1,
    );
    let out = ok(
        uplink(&[
            "proxy",
            "pac",
            "--pac",
            &url,
            "--url",
            "http://direct.example/",
        ]),
        "PAC over HTTP",
    );
    assert_eq!(out, "DIRECT\n");
}

#[test]
fn pac_url_errors_are_clear() {
    let not_found = serve(
        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".into(),
        Vec::new(),
        0,
    );
    let o = uplink(&["proxy", "pac", "--pac", &not_found, "--url", "http://a/"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("HTTP 404"), "{}", stderr(&o));

    // 50 MB of body: refused at the limit, quickly, without reading it all.
    let chunk = vec![b'/'; 1 << 20];
    let huge = serve(
        "HTTP/1.1 200 OK\r\nContent-Length: 52428800\r\n\r\n".into(),
        chunk,
        50,
    );
    let start = Instant::now();
    let o = uplink(&["proxy", "pac", "--pac", &huge, "--url", "http://a/"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("larger than"), "{}", stderr(&o));
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );

    // Same without Content-Length: the limit applies while reading.
    let chunk = vec![b'/'; 1 << 20];
    let unbounded = serve("HTTP/1.0 200 OK\r\n\r\n".into(), chunk, 50);
    let o = uplink(&["proxy", "pac", "--pac", &unbounded, "--url", "http://a/"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("larger than"), "{}", stderr(&o));

    // Nothing listening.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/x.pac", listener.local_addr().unwrap());
    drop(listener);
    let o = uplink(&["proxy", "pac", "--pac", &dead, "--url", "http://a/"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot connect"), "{}", stderr(&o));
}

#[test]
fn enterprise_pac_answers_like_the_fixture_intends() {
    let pac = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/fixtures/pac/large/enterprise-large.pac"
    );
    let dir = tempfile::tempdir().unwrap();
    let urls = write(&dir, "u.txt", "http://intranet/\nhttp://localhost:8080/\nhttps://api.api.org/x\nhttps://www.api.api.org/\n");
    let out = ok(
        uplink(&[
            "proxy",
            "pac",
            "--pac",
            pac,
            "--urls",
            urls.to_str().unwrap(),
        ]),
        "enterprise PAC",
    );
    assert_eq!(out, "DIRECT\nDIRECT\nDIRECT\nDIRECT\n");
}
