//! Endpoints as Squid access rules: `acl` lines and `http_access allow` lines, to include in a
//! squid.conf before its final `http_access deny all`.
//!
//! How a proxy sees traffic decides the rule: HTTPS (any port but 80) arrives as a CONNECT
//! tunnel, so only the host and port are visible and the rule is a `dstdomain` ACL with the
//! `CONNECT` method; plain HTTP (port 80, where CRLs and CA certificates are fetched) arrives as
//! whole URLs, so path patterns become `url_regex` ACLs. `*.example.com` becomes Squid's
//! `.example.com`. Squid warns about (and ignores) a `dstdomain` entry that another entry of the
//! same ACL already covers, so covered entries are left out here.
//!
//! The file only allows; it never denies, so it cannot lock anyone out. Names are prefixed with
//! `uplink_<profile>_` so files for several profiles can be included side by side.

use std::collections::BTreeMap;

use crate::catalog::{Endpoint, Resolved};

/// Renders the Squid rules for a resolved query.
pub fn render(resolved: &Resolved, profile: &str) -> String {
    let prefix = if profile == "uplink" {
        "uplink".to_owned()
    } else {
        format!("uplink_{profile}")
    };
    let mut by_port: BTreeMap<u16, Vec<&Endpoint>> = BTreeMap::new();
    for e in &resolved.endpoints {
        by_port.entry(e.port).or_default().push(e);
    }
    let mut out = String::new();
    out.push_str(&format!(
        "# uplink allowlist urls --format squid: {}\n",
        resolved.summary
    ));
    out.push_str(
        "# Allow rules only: include this file in squid.conf before the final \"http_access deny all\".\n\
         # Port 80 is plain HTTP, matched on the host or the URL; other ports are CONNECT tunnels,\n\
         # matched on the host (a tunnel hides the path). \"*.example.com\" is written .example.com,\n\
         # which Squid also matches for example.com itself.\n",
    );
    if by_port.keys().any(|p| *p != 80 && *p != 443) {
        out.push_str(
            "# If your squid.conf denies CONNECT to ports outside SSL_ports, add the ports below to SSL_ports.\n",
        );
    }
    let connect = format!("{prefix}_connect");
    out.push_str(&format!("acl {connect} method CONNECT\n"));
    for (port, endpoints) in by_port {
        let plain_http = port == 80;
        let (domains, regexes, notes) = acl_values(&endpoints, plain_http);
        let port_acl = format!("{prefix}_port_{port}");
        let dst_acl = format!("{prefix}_dst_{port}");
        let url_acl = format!("{prefix}_url_{port}");
        out.push_str(&format!("acl {port_acl} port {port}\n"));
        for n in notes {
            out.push_str(&format!("# {n}\n"));
        }
        for d in &domains {
            out.push_str(&format!("acl {dst_acl} dstdomain {d}\n"));
        }
        for r in &regexes {
            out.push_str(&format!("acl {url_acl} url_regex -i {r}\n"));
        }
        let method = if plain_http {
            format!("!{connect}")
        } else {
            connect.clone()
        };
        if !domains.is_empty() {
            out.push_str(&format!(
                "http_access allow {method} {port_acl} {dst_acl}\n"
            ));
        }
        if !regexes.is_empty() {
            out.push_str(&format!(
                "http_access allow {method} {port_acl} {url_acl}\n"
            ));
        }
    }
    out
}

/// The `dstdomain` values, the `url_regex` values and comments for one port.
fn acl_values(
    endpoints: &[&Endpoint],
    plain_http: bool,
) -> (Vec<String>, Vec<String>, Vec<String>) {
    let mut notes = Vec::new();
    // Host-level entries: everything except plain-HTTP path patterns.
    let mut hosts: Vec<&str> = Vec::new();
    let mut paths: Vec<&Endpoint> = Vec::new();
    for e in endpoints {
        match e.path() {
            Some(_) if plain_http => paths.push(e),
            Some(_) => {
                notes.push(format!(
                    "{} is allowed for the whole host: a CONNECT tunnel hides the path",
                    e.pattern
                ));
                hosts.push(&e.host);
            }
            None => hosts.push(&e.host),
        }
    }
    let wildcards: Vec<&str> = hosts.iter().filter_map(|h| h.strip_prefix("*.")).collect();
    let mut domains: Vec<String> = Vec::new();
    for h in &hosts {
        let (value, bare) = match h.strip_prefix("*.") {
            Some(d) => (format!(".{d}"), d),
            None => (h.to_string(), *h),
        };
        // `.d` covers `d` and every name under it; skip what another wildcard already covers.
        let covered = wildcards
            .iter()
            .any(|w| bare.ends_with(&format!(".{w}")) || (bare == *w && !h.starts_with("*.")));
        if !covered && !domains.contains(&value) {
            domains.push(value);
        }
    }
    let mut regexes = Vec::new();
    for e in paths {
        let host_allowed = domains.iter().any(|d| {
            *d == e.host
                || d.strip_prefix('.')
                    .is_some_and(|w| e.host.ends_with(&format!(".{w}")) || e.host == w)
        });
        if host_allowed {
            notes.push(format!(
                "{} is covered by the host rule for {}",
                e.pattern, e.host
            ));
            continue;
        }
        let r = url_regex(e);
        if !regexes.contains(&r) {
            regexes.push(r);
        }
    }
    (domains, regexes, notes)
}

/// `^http://host(:80)?/path` for a plain-HTTP path pattern: a trailing `*` makes it a prefix
/// match; without one the path must end there (a query string may follow).
fn url_regex(e: &Endpoint) -> String {
    let host = match e.host.strip_prefix("*.") {
        Some(d) => format!("[^/:]+\\.{}", regex_escape(d)),
        None => regex_escape(&e.host),
    };
    let path = e.path().unwrap_or("/");
    let (path, open_end) = match path.strip_suffix('*') {
        Some(p) => (p, true),
        None => (path, false),
    };
    let path: Vec<String> = path.split('*').map(regex_escape).collect();
    let mut r = format!("^http://{host}(:80)?{}", path.join(".*"));
    if !open_end {
        r.push_str("(\\?.*)?$");
    }
    r
}

fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if "\\^$.|?*+()[]{}".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Purpose;

    fn ep(pattern: &str, port: u16) -> Endpoint {
        Endpoint {
            host: pattern.split('/').next().unwrap().into(),
            port,
            pattern: pattern.into(),
            purpose: Purpose::Sensor,
            source: String::new(),
            region: None,
            issuers: vec![],
        }
    }

    fn values(patterns: &[(&str, u16)]) -> (Vec<String>, Vec<String>, Vec<String>) {
        let eps: Vec<Endpoint> = patterns.iter().map(|(p, port)| ep(p, *port)).collect();
        let refs: Vec<&Endpoint> = eps.iter().collect();
        acl_values(&refs, patterns[0].1 == 80)
    }

    #[test]
    fn dstdomain_values_skip_what_a_wildcard_covers() {
        let (d, r, _) = values(&[
            ("a.example.com", 443),
            ("*.blob.core.windows.net", 443),
            ("x.blob.core.windows.net", 443),
            ("*.sub.blob.core.windows.net", 443),
            ("blob.core.windows.net", 443),
            ("a.example.com", 443),
            ("*.windowsupdate.com", 443),
            ("*.download.windowsupdate.com", 443),
        ]);
        assert_eq!(
            d,
            [
                "a.example.com",
                ".blob.core.windows.net",
                ".windowsupdate.com"
            ]
        );
        assert!(r.is_empty());
    }

    #[test]
    fn paths_become_url_regex_on_port_80_and_hosts_on_connect() {
        let (d, r, n) = values(&[
            ("crl.microsoft.com", 80),
            ("www.microsoft.com/pkiops/*", 80),
            ("www.microsoft.com/pki/certs", 80),
            ("crl.microsoft.com/pki/crl/*", 80),
            ("*.example.net/a*b/*", 80),
        ]);
        assert_eq!(d, ["crl.microsoft.com"]);
        assert_eq!(
            r,
            [
                "^http://www\\.microsoft\\.com(:80)?/pkiops/",
                "^http://www\\.microsoft\\.com(:80)?/pki/certs(\\?.*)?$",
                "^http://[^/:]+\\.example\\.net(:80)?/a.*b/",
            ]
        );
        assert_eq!(
            n,
            ["crl.microsoft.com/pki/crl/* is covered by the host rule for crl.microsoft.com"]
        );
        let (d, r, n) = values(&[("*.blob.core.windows.net/networkscannerstable/*", 443)]);
        assert_eq!(d, [".blob.core.windows.net"]);
        assert!(r.is_empty());
        assert_eq!(
            n,
            ["*.blob.core.windows.net/networkscannerstable/* is allowed for the whole host: a CONNECT tunnel hides the path"]
        );
    }
}
