//! Syslog targets of a workspace (`uplink workspace set NAME --syslog tcp://HOST:PORT`, or
//! `tls://`): one RFC 5424 message with structured data per issue event, framed by octet
//! counting (RFC 6587) over TCP or TLS (RFC 5425). They ride on the webhooks' delivery log
//! (`webhooks.rs`): a target is a webhook whose URL has a `tcp://` or `tls://` scheme, so each
//! event is recorded once, sent by one replica and retried the same way. Pure.

use serde_json::Value;

/// The IANA private enterprise number used in the structured data's id (`uplink@32473`: 32473 is
/// reserved by RFC 5612 for documentation; a registered number would replace it).
pub const SD_ID: &str = "uplink@32473";

/// `(tls, host, port)` of a `tcp://HOST:PORT` or `tls://HOST:PORT` target, or why not.
pub fn target(url: &str) -> Result<(bool, String, u16), String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("tcp://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("tls://") {
        (true, r)
    } else {
        return Err(format!(
            "{url:?} is not a syslog target: write tcp://HOST:PORT or tls://HOST:PORT"
        ));
    };
    let rest = rest.trim_end_matches('/');
    match crate::syslog_split(rest) {
        Some((host, Some(port))) if !host.is_empty() && port > 0 => Ok((tls, host, port)),
        _ => Err(format!(
            "{url:?} needs a host and a port: tcp://HOST:PORT (e.g. tcp://127.0.0.1:514)"
        )),
    }
}

/// Whether a delivery URL is a syslog target rather than a webhook.
pub fn is_syslog(url: &str) -> bool {
    url.starts_with("tcp://") || url.starts_with("tls://")
}

/// A structured-data parameter value escaped as RFC 5424 §6.3.3 wants (`"`, `\`, `]`).
fn sd_escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The severity (RFC 5424 §6.2.1) of an event's issue: its own while open, informational once
/// closed.
fn severity(event: &str, issue: &Value) -> u8 {
    if event == "issue.closed" {
        return 6;
    }
    match issue["severity"].as_str() {
        Some("high") => 3,
        Some("medium") => 4,
        _ => 5,
    }
}

/// The message for a delivery body (`{"event","workspace","issue"}`), facility local0, framed
/// by octet counting: `LEN SP <PRI>1 TIMESTAMP HOSTNAME uplink - EVENT [SD] DESCRIPTION`.
pub fn message(body: &str, timestamp: &str, hostname: &str) -> Result<String, String> {
    let v: Value =
        serde_json::from_str(body).map_err(|e| format!("a delivery body is not JSON: {e}"))?;
    let event = v["event"].as_str().unwrap_or("issue.unknown");
    let issue = &v["issue"];
    let pri = 16 * 8 + u32::from(severity(event, issue));
    let text = |k: &str| issue[k].as_str().unwrap_or("-").to_owned();
    let mut sd = format!(
        "[{SD_ID} workspace=\"{}\"",
        sd_escape(v["workspace"].as_str().unwrap_or("-"))
    );
    for k in [
        "issue_id",
        "kind",
        "severity",
        "state",
        "sensor_id",
        "opened_at",
    ] {
        sd.push_str(&format!(" {k}=\"{}\"", sd_escape(&text(k))));
    }
    sd.push(']');
    let hostname: String = hostname
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(255)
        .collect();
    let hostname = if hostname.is_empty() {
        "-".to_owned()
    } else {
        hostname
    };
    // MSGID is at most 32 printable characters: the event name fits.
    let msg = format!(
        "<{pri}>1 {timestamp} {hostname} uplink - {event} {sd} {}",
        text("description")
    );
    Ok(format!("{} {msg}", msg.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(
            target("tcp://127.0.0.1:514"),
            Ok((false, "127.0.0.1".into(), 514))
        );
        assert_eq!(
            target("tls://logs.example:6514/"),
            Ok((true, "logs.example".into(), 6514))
        );
        assert_eq!(target("tcp://[::1]:514"), Ok((false, "::1".into(), 514)));
        for bad in [
            "udp://h:514",
            "tcp://h",
            "tcp://:514",
            "http://h:1",
            "tcp://h:0",
        ] {
            assert!(target(bad).is_err(), "{bad}");
        }
        assert!(is_syslog("tls://h:1") && !is_syslog("https://h/"));
    }

    #[test]
    fn messages_are_rfc5424_with_structured_data_and_octet_counting() {
        let body = r#"{"event":"issue.opened","workspace":"acme","issue":{"issue_id":"iss-1","kind":"disconnected","severity":"high","state":"open","sensor_id":"s\"]1","opened_at":"2026-01-01T00:00:00Z","description":"not heard from"}}"#;
        let m = message(body, "2026-01-01T00:00:01.000Z", "svc-1").unwrap();
        let (len, msg) = m.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), msg.len());
        assert_eq!(
            msg,
            r#"<131>1 2026-01-01T00:00:01.000Z svc-1 uplink - issue.opened [uplink@32473 workspace="acme" issue_id="iss-1" kind="disconnected" severity="high" state="open" sensor_id="s\"\]1" opened_at="2026-01-01T00:00:00Z"] not heard from"#
        );
        let closed = body.replace("issue.opened", "issue.closed");
        assert!(message(&closed, "t", "h").unwrap().contains("<134>1 "));
        assert!(message("nope", "t", "h").is_err());
    }
}
