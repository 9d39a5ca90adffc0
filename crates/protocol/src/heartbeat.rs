//! Heartbeats: what a sensor reports about itself (not its data).
//!
//! A heartbeat travels two ways with the same body: as a queued event of kind `heartbeat` (history,
//! delivered in order with the backlog), and as `POST /api/v1/heartbeat` (the *report*), which the
//! uploader sends first on every new connection and then once an interval, so the service learns
//! that a sensor is back — and why it was away — before any backlog is uploaded.
//!
//! Format 1 (no `format` field) carried the version, route, proxy scheme, queue depth, last error
//! code and skipped heartbeats. Format 2 adds the interval, host, how the route was chosen, the
//! queue's oldest event, when the last error happened, the certificate's validity, the sensor's
//! clock and the outage log. [`parse`] reads both into [`Heartbeat`]; a format-1 body simply has
//! the newer fields empty. A format newer than this build is read for the fields it shares.
//!
//! Pure: no clock, no I/O. Times are RFC 3339 UTC strings as the sensor wrote them.

use serde::{Deserialize, Serialize};

/// The heartbeat format this build writes.
pub const FORMAT: u32 = 2;

/// Most outage intervals one heartbeat carries (the newest are kept).
pub const MAX_OUTAGES: usize = 32;

/// A heartbeat, format 2 (a format-1 body parses into it with the newer fields at their
/// defaults). Field names are the wire contract (docs/protocol.md).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Heartbeat {
    /// 2 for this format; absent (read as 1) in format 1.
    pub format: u32,
    /// The sensor's heartbeat period (before jitter).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval_secs: Option<u64>,
    pub version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// `PRETTY_NAME` of os-release, else `ID VERSION_ID`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    /// `DIRECT` or `PROXY host:port`, or none before the first connection.
    pub route: Option<String>,
    /// How the route was chosen (format 2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route_source: Option<RouteSource>,
    /// Whether the route in use is a fallback: not the first candidate (format 2).
    pub fallback: bool,
    /// Why the first candidate was not used, when `fallback`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback_reason: Option<String>,
    /// The proxy authentication scheme of the current route (`Basic`, `NTLM`, `Negotiate`, …).
    pub proxy_auth: Option<String>,
    pub queue: QueueDepth,
    pub last_error_code: Option<String>,
    /// When the last error happened (format 2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error_at: Option<String>,
    /// When a request last went through to the service (format 2): an error after it is still
    /// current.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_success_at: Option<String>,
    /// Heartbeats skipped (queue full) over the sensor's life in its state directory.
    pub skipped_heartbeats: u64,
    /// Seconds since the sensor started.
    pub running_secs: u64,
    /// The client certificate's validity (format 2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_not_before: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_not_after: Option<String>,
    /// The last certificate renewal failed (format 2).
    pub cert_renewal_failed: bool,
    /// The queue lost records to damage on disk during this run (`QUEUE_DAMAGED`).
    pub queue_damaged: bool,
    /// The sources cannot queue for want of disk space (`DISK_FULL`).
    pub disk_full: bool,
    /// The sensor's clock when it built this heartbeat (format 2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sensor_time: Option<String>,
    /// The outage log (format 2): each interval since the last delivered report in which uploads
    /// failed, oldest first; the last may still be open (`end` null) in a queued heartbeat.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub outages: Vec<Outage>,
    /// The central policy as the sensor follows it (issue #26, docs/policy.md); absent from
    /// sensors older than policies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyState>,
    /// Events the uploader delivered since the sensor started (format 2, issue #25): the
    /// console derives events/s from the difference between two reports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered: Option<u64>,
}

/// Where a sensor stands with its workspace's central policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PolicyState {
    /// The policy version whose route the sensor uses; null: its local settings.
    pub applied: Option<u64>,
    /// The workspace's policy version the sensor last fetched (0: none yet).
    pub fetched: u64,
    /// The last policy the sensor refused to switch to because its route did not reach the
    /// service; cleared once a policy is applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejected: Option<PolicyRejection>,
}

/// A policy a sensor kept away from: its route, tested, did not reach the service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PolicyRejection {
    pub version: u64,
    /// The diagnostic code the test got (`TCP_REFUSED`, `PROXY_AUTH_FAILED`, …).
    pub code: String,
    /// What failed, in words (no secret).
    pub detail: String,
    /// RFC 3339: when.
    pub at: String,
}

/// How the sensor chose its route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteSource {
    /// A proxy set in the sensor's settings.
    Explicit,
    Pac,
    Wpad,
    /// The captured environment (`https_proxy`, …).
    Env,
    Direct,
    /// The fallback policy picked the route (every proxy failed).
    Policy,
}

impl RouteSource {
    pub fn as_str(self) -> &'static str {
        match self {
            RouteSource::Explicit => "explicit",
            RouteSource::Pac => "pac",
            RouteSource::Wpad => "wpad",
            RouteSource::Env => "env",
            RouteSource::Direct => "direct",
            RouteSource::Policy => "policy",
        }
    }
}

/// Queue depth.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct QueueDepth {
    pub events: u64,
    pub bytes: u64,
    /// Age of the oldest queued event, in seconds (format 2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_secs: Option<u64>,
}

/// One interval in which uploads failed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Outage {
    /// RFC 3339: the first failure.
    pub start: String,
    /// RFC 3339: the first success after it; null while it lasts.
    pub end: Option<String>,
    /// The codes seen, each once, in the order first seen.
    pub codes: Vec<String>,
    /// The proxy the failing attempts went through (`host:port`), if any.
    pub proxy: Option<String>,
    /// Failed attempts in the interval.
    pub failures: u64,
}

/// Why a heartbeat body was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeartbeatError {
    #[error("the heartbeat is not a JSON object of the heartbeat format: {0}")]
    Json(String),
    #[error("the heartbeat has {0} outages; at most {MAX_OUTAGES} are accepted")]
    TooManyOutages(usize),
}

/// Reads a heartbeat body (an event line's fields, or a report body) of any format.
pub fn parse(body: &[u8]) -> Result<Heartbeat, HeartbeatError> {
    // Serde would also take a struct as a JSON array of its fields: only an object is a heartbeat.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(HeartbeatError::Json("not a JSON object".into()));
    }
    let mut h: Heartbeat =
        serde_json::from_slice(body).map_err(|e| HeartbeatError::Json(e.to_string()))?;
    if h.format == 0 {
        h.format = 1;
    }
    if h.outages.len() > MAX_OUTAGES {
        return Err(HeartbeatError::TooManyOutages(h.outages.len()));
    }
    Ok(h)
}

/// The heartbeat period with ±10 % jitter: `unit` is a uniform draw in [0, 1). Spreads the
/// heartbeats of sensors started together (a fleet rebooted at once) over the interval.
pub fn jittered(interval: std::time::Duration, unit: f64) -> std::time::Duration {
    let unit = if unit.is_finite() {
        unit.clamp(0.0, 1.0)
    } else {
        0.5
    };
    interval.mul_f64(0.9 + 0.2 * unit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn parses_both_formats() {
        type Case = (&'static str, Result<(u32, Option<u64>, usize, u64), ()>);
        let cases: &[Case] = &[
            // Format 1, as `uplink-sources` wrote it before format 2 (plus the event's seq/kind).
            (
                r#"{"seq":4,"kind":"heartbeat","version":"0.1.0","route":"DIRECT","proxy_auth":null,"queue":{"events":3,"bytes":90},"last_error_code":null,"skipped_heartbeats":0,"running_secs":60}"#,
                Ok((1, None, 0, 3)),
            ),
            (
                r#"{"format":2,"interval_secs":60,"version":"0.2.0","route":"PROXY p:3128","fallback":false,"queue":{"events":0,"bytes":0,"oldest_secs":0},"outages":[{"start":"2026-01-01T00:00:00Z","end":"2026-01-01T00:05:00Z","codes":["PROXY_AUTH_FAILED"],"proxy":"p:3128","failures":7}]}"#,
                Ok((2, Some(60), 1, 0)),
            ),
            // A newer format: read for what it shares.
            (
                r#"{"format":3,"version":"9","novel":{"x":1}}"#,
                Ok((3, None, 0, 0)),
            ),
            ("[]", Err(())),
            ("{\"queue\":{\"events\":-1}}", Err(())),
            ("not json", Err(())),
        ];
        for (body, want) in cases {
            let got = parse(body.as_bytes())
                .map(|h| (h.format, h.interval_secs, h.outages.len(), h.queue.events))
                .map_err(|_| ());
            assert_eq!(&got, want, "{body}");
        }
        let many = Heartbeat {
            format: 2,
            outages: vec![Outage::default(); MAX_OUTAGES + 1],
            ..Default::default()
        };
        assert_eq!(
            parse(&serde_json::to_vec(&many).unwrap()),
            Err(HeartbeatError::TooManyOutages(MAX_OUTAGES + 1))
        );
    }

    #[test]
    fn round_trips() {
        let h = Heartbeat {
            format: FORMAT,
            interval_secs: Some(30),
            version: "1".into(),
            route_source: Some(RouteSource::Pac),
            fallback: true,
            outages: vec![Outage {
                start: "a".into(),
                end: None,
                codes: vec!["TCP_REFUSED".into()],
                proxy: None,
                failures: 2,
            }],
            ..Default::default()
        };
        let text = serde_json::to_string(&h).unwrap();
        assert!(text.contains("\"route_source\":\"pac\""), "{text}");
        assert_eq!(parse(text.as_bytes()).unwrap(), h);
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        let i = Duration::from_secs(60);
        let cases = [
            (0.0, 54_000),
            (0.5, 60_000),
            (0.999_999, 65_999),
            (1.0, 66_000),
            (-3.0, 54_000),
            (f64::NAN, 60_000),
        ];
        for (unit, ms) in cases {
            assert_eq!(jittered(i, unit).as_millis(), ms, "{unit}");
        }
    }
}
