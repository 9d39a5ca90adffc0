//! Endpoints as a PAC file: `FindProxyForURL` returns one result for exactly the catalog's hosts
//! (DIRECT, or `PROXY host:port` with `--via`) and another for everything else (`--otherwise`).
//!
//! Two common uses: send only the sensor's hosts through a proxy, or let them bypass a
//! TLS-inspecting proxy that everything else goes through (the seeds: "SSL inspection and
//! intercepting proxies are not supported"). Routing is by host only: browsers and WinHTTP
//! hand a PAC script https URLs without their path, so a path pattern routes its whole host.
//! Exact hosts are keys of an object (one lookup however long the list); `*.domain` entries
//! match subdomains only, with `dnsDomainIs(host, ".domain")`, as the pattern says.
//!
//! The generated script uses only standard PAC functions, and every string in it has been
//! validated, so no input can inject JavaScript.

use crate::catalog::Resolved;

/// The two results a generated PAC file returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routes {
    /// For the catalog's hosts: `DIRECT` or `PROXY host:port`.
    pub matched: String,
    /// For every other host: a PAC result such as `DIRECT` or `PROXY corp:8080; DIRECT`.
    pub otherwise: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacError {
    #[error("--via {input:?}: {reason}; give HOST:PORT of the proxy, e.g. proxy.example.com:8080, or a PAC result such as \"PROXY proxy.example.com:8080\"")]
    BadVia { input: String, reason: &'static str },
    #[error("--otherwise {input:?}: {reason}; give a PAC result such as DIRECT or \"PROXY proxy.example.com:8080; DIRECT\"")]
    BadResult { input: String, reason: &'static str },
}

/// `PROXY host:port` for `--via host:port`; a whole PAC result (`--via "PROXY a:8080; DIRECT"`)
/// is validated and kept.
pub fn via(hostport: &str) -> Result<String, PacError> {
    // A whole PAC result ("PROXY proxy:8080", "PROXY a:8080; DIRECT") is what an administrator
    // who knows PAC writes: take it as such.
    if hostport.trim().contains(char::is_whitespace) {
        return result(hostport.trim()).map_err(|e| match e {
            PacError::BadResult { input, reason } => PacError::BadVia { input, reason },
            other => other,
        });
    }
    check_hostport(hostport).map_err(|reason| PacError::BadVia {
        input: hostport.to_owned(),
        reason,
    })?;
    Ok(format!("PROXY {hostport}"))
}

/// Validates and normalises a PAC result string: `DIRECT` or `TYPE host:port` items separated
/// by `;` (TYPE one of PROXY, HTTP, HTTPS, SOCKS, SOCKS4, SOCKS5).
pub fn result(input: &str) -> Result<String, PacError> {
    let bad = |reason| PacError::BadResult {
        input: input.to_owned(),
        reason,
    };
    let mut items = Vec::new();
    for item in input.split(';') {
        let mut words = item.split_whitespace();
        let kind = words.next().ok_or_else(|| bad("an item is empty"))?;
        let kind = kind.to_ascii_uppercase();
        match (kind.as_str(), words.next(), words.next()) {
            ("DIRECT", None, _) => items.push(kind),
            ("PROXY" | "HTTP" | "HTTPS" | "SOCKS" | "SOCKS4" | "SOCKS5", Some(hp), None) => {
                check_hostport(hp).map_err(bad)?;
                items.push(format!("{kind} {hp}"));
            }
            ("DIRECT", Some(_), _) => return Err(bad("DIRECT takes no address")),
            ("PROXY" | "HTTP" | "HTTPS" | "SOCKS" | "SOCKS4" | "SOCKS5", _, _) => {
                return Err(bad("a proxy item is TYPE HOST:PORT"))
            }
            _ => return Err(bad(
                "each item is DIRECT or PROXY, HTTP, HTTPS, SOCKS, SOCKS4, SOCKS5 with HOST:PORT",
            )),
        }
    }
    Ok(items.join("; "))
}

fn check_hostport(hp: &str) -> Result<(), &'static str> {
    let (host, port) = if let Some(rest) = hp.strip_prefix('[') {
        let (h, p) = rest
            .split_once(']')
            .ok_or("an IPv6 address needs its closing ']'")?;
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return Err("the address in brackets is not IPv6");
        }
        (None, p.strip_prefix(':').ok_or("the port is missing")?)
    } else {
        let (h, p) = hp.rsplit_once(':').ok_or("the port is missing")?;
        (Some(h), p)
    };
    if let Some(host) = host {
        let ok = !host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !ok {
            return Err("the host is not a DNS name or IPv4 address");
        }
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => Ok(()),
        _ => Err("the port is not a number from 1 to 65535"),
    }
}

/// Renders the PAC file.
pub fn render(resolved: &Resolved, routes: &Routes) -> String {
    let mut exact: Vec<&str> = Vec::new();
    let mut suffixes: Vec<String> = Vec::new();
    for e in &resolved.endpoints {
        match e.wildcard_domain() {
            Some(d) => {
                let s = format!(".{d}");
                if !suffixes.contains(&s) {
                    suffixes.push(s);
                }
            }
            None => {
                if !exact.contains(&e.host.as_str()) {
                    exact.push(&e.host);
                }
            }
        }
    }
    // Drop entries another suffix already routes (dnsDomainIs(h, ".d") is for names under d).
    let under = |name: &str, s: &String| name.len() > s.len() && name.ends_with(s.as_str());
    let all_suffixes = suffixes.clone();
    suffixes.retain(|s| !all_suffixes.iter().any(|t| under(s, t)));
    exact.retain(|h| !suffixes.iter().any(|s| under(h, s)));
    let paths: Vec<&str> = resolved
        .endpoints
        .iter()
        .filter(|e| e.path().is_some())
        .map(|e| e.pattern.as_str())
        .collect();

    let mut out = String::new();
    out.push_str(&format!(
        "// uplink allowlist urls --format pac: {}\n",
        resolved.summary
    ));
    out.push_str(&format!(
        "// The hosts below go {}; every other host goes {}.\n",
        js_string(&routes.matched),
        js_string(&routes.otherwise)
    ));
    out.push_str("// Routing is by host: a PAC file sees https URLs without their path.\n");
    if !paths.is_empty() {
        out.push_str(&format!(
            "// Path patterns routed as their whole host: {}.\n",
            paths.join(", ")
        ));
    }
    out.push_str("function FindProxyForURL(url, host) {\n");
    out.push_str("  var h = String(host).toLowerCase();\n");
    out.push_str("  if (h.charAt(h.length - 1) == \".\") h = h.substring(0, h.length - 1);\n");
    if !exact.is_empty() {
        out.push_str("  var exact = {\n");
        for (i, h) in exact.iter().enumerate() {
            let comma = if i + 1 < exact.len() { "," } else { "" };
            out.push_str(&format!("    {}: true{comma}\n", js_string(h)));
        }
        out.push_str("  };\n");
        out.push_str("  if (Object.prototype.hasOwnProperty.call(exact, h)) return ");
        out.push_str(&js_string(&routes.matched));
        out.push_str(";\n");
    }
    if !suffixes.is_empty() {
        out.push_str("  var suffixes = [\n");
        for (i, s) in suffixes.iter().enumerate() {
            let comma = if i + 1 < suffixes.len() { "," } else { "" };
            out.push_str(&format!("    {}{comma}\n", js_string(s)));
        }
        out.push_str("  ];\n");
        out.push_str("  for (var i = 0; i < suffixes.length; i++) {\n");
        out.push_str(&format!(
            "    if (dnsDomainIs(h, suffixes[i])) return {};\n",
            js_string(&routes.matched)
        ));
        out.push_str("  }\n");
    }
    out.push_str(&format!("  return {};\n}}\n", js_string(&routes.otherwise)));
    out
}

/// A JavaScript string literal. Inputs are validated host names and PAC results; escaping is a
/// second line of defence.
fn js_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_ascii_graphic() || c == ' ' => out.push(c),
            c => out.push_str(&format!("\\u{:04x}", c as u32)),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn via_and_result_validation() {
        let ok: &[(&str, &str)] = &[
            ("DIRECT", "DIRECT"),
            ("direct", "DIRECT"),
            ("PROXY corp:8080; DIRECT", "PROXY corp:8080; DIRECT"),
            (
                "proxy  a.example:3128 ;https b.example:443",
                "PROXY a.example:3128; HTTPS b.example:443",
            ),
            ("SOCKS5 [2001:db8::1]:1080", "SOCKS5 [2001:db8::1]:1080"),
        ];
        for (input, want) in ok {
            assert_eq!(result(input).unwrap(), *want, "{input}");
        }
        let bad: &[(&str, &str)] = &[
            ("", "an item is empty"),
            ("DIRECT;", "an item is empty"),
            ("PROXY", "a proxy item is TYPE HOST:PORT"),
            ("PROXY a b", "a proxy item is TYPE HOST:PORT"),
            ("DIRECT x", "DIRECT takes no address"),
            ("BLOCK", "each item is DIRECT or"),
            ("PROXY a.example", "the port is missing"),
            ("PROXY a.example:0", "not a number from 1 to 65535"),
            ("PROXY a.example:99999", "not a number from 1 to 65535"),
            ("PROXY a\".example:80", "not a DNS name"),
            ("PROXY [zz]:80", "not IPv6"),
        ];
        for (input, want) in bad {
            let err = result(input).unwrap_err().to_string();
            assert!(err.contains(want), "{input:?}: {err}");
        }
        assert_eq!(via("proxy.corp:8080").unwrap(), "PROXY proxy.corp:8080");
        let err = via("proxy.corp").unwrap_err().to_string();
        assert!(
            err.starts_with("--via \"proxy.corp\": the port is missing; give HOST:PORT"),
            "{err}"
        );
        assert!(via("http://proxy:8080").is_err());
        // A PAC result is taken as it is (the README's example), and checked as one.
        assert_eq!(via("PROXY proxy:8080").unwrap(), "PROXY proxy:8080");
        assert_eq!(via("PROXY a:8080; DIRECT").unwrap(), "PROXY a:8080; DIRECT");
        let err = via("PROXY proxy").unwrap_err().to_string();
        assert!(err.starts_with("--via \"PROXY proxy\": "), "{err}");
    }

    #[test]
    fn js_strings_are_escaped() {
        assert_eq!(js_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }
}
