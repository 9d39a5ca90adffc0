//! Workspace names and the host names derived from them.
//!
//! Like the seeds' service, every workspace has two hosts under its domain:
//! `<workspace>sensorapi.<domain>` (the sensor API) and `<workspace>.<domain>` (the console).
//! A name is therefore one DNS label of at most 54 characters (54 + `sensorapi` = 63, the label
//! limit) that does not itself end in `sensorapi`, which would make the two hosts ambiguous.

/// Suffix of a workspace's sensor-API label.
pub const SENSOR_API_SUFFIX: &str = "sensorapi";
/// Longest workspace name.
pub const MAX_NAME_LEN: usize = 63 - SENSOR_API_SUFFIX.len();
/// The domain used when none is given; `*.localhost` resolves to loopback (RFC 6761).
pub const DEFAULT_DOMAIN: &str = "uplink.localhost";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("workspace name is empty: use letters, digits and '-', e.g. contoso-corp")]
    EmptyName,
    #[error("workspace name {name:?} is {len} characters; the limit is {MAX_NAME_LEN} (so that '<name>sensorapi' fits in a 63-character DNS label)")]
    NameTooLong { name: String, len: usize },
    #[error("workspace name {name:?} has the character {ch:?}: use letters, digits and '-' only")]
    NameBadChar { name: String, ch: char },
    #[error("workspace name {name:?} may not start or end with '-'")]
    NameHyphenEdge { name: String },
    #[error("workspace name {name:?} may not end in 'sensorapi': that would collide with another workspace's sensor host")]
    NameReservedSuffix { name: String },
    #[error("domain {domain:?} is not a valid DNS name: {reason}")]
    BadDomain { domain: String, reason: String },
}

/// Validates a workspace name and returns it in lowercase (DNS names are case-insensitive).
pub fn workspace_name(name: &str) -> Result<String, NameError> {
    let lower = name.to_ascii_lowercase();
    if lower.is_empty() {
        return Err(NameError::EmptyName);
    }
    if let Some(ch) = lower
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(NameError::NameBadChar {
            name: name.into(),
            ch,
        });
    }
    if lower.len() > MAX_NAME_LEN {
        return Err(NameError::NameTooLong {
            name: name.into(),
            len: lower.len(),
        });
    }
    if lower.starts_with('-') || lower.ends_with('-') {
        return Err(NameError::NameHyphenEdge { name: name.into() });
    }
    if lower.ends_with(SENSOR_API_SUFFIX) {
        return Err(NameError::NameReservedSuffix { name: name.into() });
    }
    Ok(lower)
}

/// Validates a domain (dot-separated DNS labels) and returns it in lowercase without a final dot.
pub fn domain(domain: &str) -> Result<String, NameError> {
    let bad = |reason: &str| NameError::BadDomain {
        domain: domain.into(),
        reason: reason.into(),
    };
    let lower = domain
        .strip_suffix('.')
        .unwrap_or(domain)
        .to_ascii_lowercase();
    if lower.is_empty() {
        return Err(bad("it is empty"));
    }
    if lower.len() > 253 - 64 {
        return Err(bad("it is too long to leave room for the workspace label"));
    }
    for label in lower.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(bad("every label must be 1 to 63 characters"));
        }
        if !label
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(bad("use letters, digits, '-' and '.' only"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(bad("a label may not start or end with '-'"));
        }
    }
    Ok(lower)
}

/// The sensor API host of a workspace.
pub fn sensor_host(workspace: &str, domain: &str) -> String {
    format!("{workspace}{SENSOR_API_SUFFIX}.{domain}")
}

/// The console host of a workspace.
pub fn console_host(workspace: &str, domain: &str) -> String {
    format!("{workspace}.{domain}")
}

/// Which face of a workspace a host name addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    SensorApi,
    Console,
}

/// Splits a host name into (workspace, domain, role), or `None` when it cannot be a workspace host.
pub fn classify_host(host: &str) -> Option<(String, String, Role)> {
    let host = normalize_host(host);
    if host.parse::<std::net::IpAddr>().is_ok() {
        return None;
    }
    let (label, domain) = host.split_once('.')?;
    let (name, role) = match label.strip_suffix(SENSOR_API_SUFFIX) {
        Some(name) => (name, Role::SensorApi),
        None => (label, Role::Console),
    };
    let name = workspace_name(name).ok()?;
    Some((name, domain.to_owned(), role))
}

/// Lowercases a host and strips a final dot, a port and IPv6 brackets.
pub fn normalize_host(host: &str) -> String {
    let host = host.trim();
    let host = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        match host.rsplit_once(':') {
            Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) && !h.contains(':') => h,
            _ => host,
        }
    };
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

/// True for `localhost` and `*.localhost`, which resolve to loopback without DNS (RFC 6761 §6.3).
pub fn is_localhost(host: &str) -> bool {
    let h = normalize_host(host);
    h == "localhost" || h.ends_with(".localhost")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_names() {
        let ok = [
            ("contoso", "contoso"),
            ("Contoso-Corp", "contoso-corp"),
            ("a", "a"),
            ("a1-b2", "a1-b2"),
        ];
        for (input, want) in ok {
            assert_eq!(workspace_name(input).unwrap(), want);
        }
        let long54 = "a".repeat(54);
        assert_eq!(workspace_name(&long54).unwrap(), long54);
        let bad: &[(&str, &str)] = &[
            ("", "empty"),
            (&"a".repeat(55), "55 characters; the limit is 54"),
            ("con_toso", "character '_'"),
            ("con.toso", "character '.'"),
            ("-a", "start or end with '-'"),
            ("a-", "start or end with '-'"),
            ("contososensorapi", "may not end in 'sensorapi'"),
            ("SensorAPI", "may not end in 'sensorapi'"),
            ("café", "character 'é'"),
        ];
        for (input, want) in bad {
            let err = workspace_name(input).unwrap_err().to_string();
            assert!(err.contains(want), "{input:?}: {err}");
        }
    }

    #[test]
    fn domains() {
        assert_eq!(domain("Uplink.LOCALHOST.").unwrap(), "uplink.localhost");
        for bad in [
            "",
            ".",
            "a..b",
            "-a.b",
            "a_b.c",
            &format!("{}.com", "a".repeat(64)),
        ] {
            assert!(domain(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hosts_classify() {
        let cases = [
            (
                "contososensorapi.uplink.localhost",
                Some(("contoso", "uplink.localhost", Role::SensorApi)),
            ),
            (
                "ContosoSensorAPI.Uplink.Localhost:8443",
                Some(("contoso", "uplink.localhost", Role::SensorApi)),
            ),
            (
                "contoso.uplink.localhost.",
                Some(("contoso", "uplink.localhost", Role::Console)),
            ),
            ("sensorapi.uplink.localhost", None),
            ("localhost", None),
            ("127.0.0.1:443", None),
            ("[::1]:443", None),
            ("a_b.example.com", None),
        ];
        for (host, want) in cases {
            let got = classify_host(host);
            let got = got.as_ref().map(|(w, d, r)| (w.as_str(), d.as_str(), *r));
            assert_eq!(got, want, "{host}");
        }
        assert_eq!(sensor_host("x", "d.test"), "xsensorapi.d.test");
        assert_eq!(console_host("x", "d.test"), "x.d.test");
    }

    #[test]
    fn localhost_names() {
        for (h, want) in [
            ("localhost", true),
            ("a.b.localhost:9", true),
            ("LOCALHOST.", true),
            ("localhost.com", false),
            ("notlocalhost", false),
        ] {
            assert_eq!(is_localhost(h), want, "{h}");
        }
    }
}
