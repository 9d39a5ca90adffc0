//! The sensor's report to the service: heartbeat format 2 (`uplink_protocol::heartbeat`), and the
//! outage log it carries.
//!
//! The uploader keeps the **outage log** ([`ReportState`], `STATE/report.json`, beside the queue
//! so it survives a restart): an interval opens at the first failed upload, gathers the codes
//! seen and the proxy they went through, and closes at the next success. Intervals stay in the
//! log until a report that carried them was answered by the service (`POST /api/v1/heartbeat`,
//! sent first on each new connection): so the service learns why the sensor was away as soon as
//! it is back, before the backlog. Queued heartbeats carry the log too, and never clear it.
//!
//! The same file keeps when the queue was last seen empty: the oldest queued event is at most
//! that old (the queue keeps no time per record), which is what the report says.
//!
//! [`build`] and the log's transitions are pure; loading and storing the file are the only I/O.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use uplink_protocol::heartbeat::{Heartbeat, Outage, QueueDepth, RouteSource, FORMAT, MAX_OUTAGES};

use crate::config::Paths;
use crate::status::Status;

/// What the uploader keeps for its reports (`STATE/report.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReportState {
    /// Intervals in which uploads failed, not yet delivered in a report; oldest first.
    pub outages: Vec<Outage>,
    /// RFC 3339: when the queue was last seen empty (none: not since this file exists).
    pub queue_empty_at: Option<String>,
}

impl ReportState {
    pub fn file(paths: &Paths) -> PathBuf {
        paths.state_dir.join("report.json")
    }

    /// The stored state; an unreadable file counts as empty (the log is a report, not data).
    pub fn load(paths: &Paths) -> ReportState {
        std::fs::read(Self::file(paths))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    pub fn store(&self, paths: &Paths) -> std::io::Result<()> {
        write_file(
            &Self::file(paths),
            &serde_json::to_vec(self).expect("report state serialises"),
        )
    }

    /// An upload failed at `at` with `code`, through `proxy`: opens an interval or adds to the
    /// open one. Returns whether the stored form changed (a new interval or a new code).
    pub fn failed(&mut self, code: &str, proxy: Option<&str>, at: &str) -> bool {
        if let Some(open) = self.outages.last_mut().filter(|o| o.end.is_none()) {
            open.failures += 1;
            let mut changed = false;
            if !open.codes.iter().any(|c| c == code) {
                open.codes.push(code.to_owned());
                changed = true;
            }
            if open.proxy.is_none() && proxy.is_some() {
                open.proxy = proxy.map(str::to_owned);
                changed = true;
            }
            return changed;
        }
        self.outages.push(Outage {
            start: at.to_owned(),
            end: None,
            codes: vec![code.to_owned()],
            proxy: proxy.map(str::to_owned),
            failures: 1,
        });
        // Bounded: the oldest go (a sensor down for weeks keeps its last MAX_OUTAGES intervals).
        if self.outages.len() > MAX_OUTAGES {
            let extra = self.outages.len() - MAX_OUTAGES;
            self.outages.drain(..extra);
        }
        true
    }

    /// A request succeeded at `at`: closes the open interval. Returns whether one was open.
    pub fn succeeded(&mut self, at: &str) -> bool {
        match self.outages.last_mut().filter(|o| o.end.is_none()) {
            Some(open) => {
                open.end = Some(at.to_owned());
                true
            }
            None => false,
        }
    }

    /// A report carrying `sent` (the closed intervals it held) was stored by the service: they
    /// leave the log. Intervals opened since stay.
    pub fn delivered(&mut self, sent: &[Outage]) -> bool {
        let before = self.outages.len();
        self.outages.retain(|o| {
            o.end.is_none() || !sent.iter().any(|s| s.start == o.start && s.end.is_some())
        });
        before != self.outages.len()
    }
}

/// Everything a heartbeat says, gathered by the caller.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    pub interval_secs: u64,
    pub version: &'a str,
    pub hostname: Option<String>,
    pub os: Option<String>,
    pub status: &'a Status,
    pub queue_events: u64,
    pub queue_bytes: u64,
    pub state: &'a ReportState,
    pub skipped: u64,
    pub running_secs: u64,
    pub cert_not_before: Option<String>,
    pub cert_not_after: Option<String>,
    pub cert_renewal_failed: bool,
    /// Now, as RFC 3339 and as Unix seconds (for the queue's age).
    pub now: &'a str,
    pub now_unix: i64,
}

/// Builds a format-2 heartbeat. Pure.
pub fn build(i: &Inputs<'_>) -> Heartbeat {
    let s = i.status;
    let oldest_secs = if i.queue_events == 0 {
        Some(0)
    } else {
        i.state
            .queue_empty_at
            .as_deref()
            .and_then(unix_of)
            .map(|t| (i.now_unix - t).max(0) as u64)
    };
    Heartbeat {
        format: FORMAT,
        interval_secs: Some(i.interval_secs),
        version: i.version.to_owned(),
        hostname: i.hostname.clone(),
        os: i.os.clone(),
        route: s.route.clone(),
        route_source: s.route_source.as_deref().and_then(parse_source),
        fallback: s.route.is_some() && s.route_note.is_some(),
        fallback_reason: s.route.as_ref().and(s.route_note.clone()),
        proxy_auth: s.proxy_auth.clone(),
        queue: QueueDepth {
            events: i.queue_events,
            bytes: i.queue_bytes,
            oldest_secs,
        },
        last_error_code: s.last_error.as_ref().map(|e| e.code.clone()),
        last_error_at: s.last_error.as_ref().map(|e| e.at.clone()),
        last_success_at: s.last_success.clone(),
        skipped_heartbeats: i.skipped,
        running_secs: i.running_secs,
        cert_not_before: i.cert_not_before.clone(),
        cert_not_after: i.cert_not_after.clone(),
        cert_renewal_failed: i.cert_renewal_failed,
        queue_damaged: s.queue_damage.is_some()
            && s.last_error
                .as_ref()
                .is_some_and(|e| e.code == "QUEUE_DAMAGED"),
        disk_full: s.disk_full.is_some(),
        sensor_time: Some(i.now.to_owned()),
        outages: i.state.outages.clone(),
        policy: s.policy.clone(),
        delivered: Some(s.delivered),
    }
}

/// What the running sensor knows that the files do not: its counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct Live {
    pub interval_secs: u64,
    pub skipped: u64,
    pub running_secs: u64,
    pub cert_renewal_failed: bool,
}

/// Gathers a heartbeat now: `status` and the queue's depth from the caller, the outage log from
/// `STATE/report.json`, the host's name and OS, the certificate's validity. What cannot be read
/// is left out: a heartbeat with a gap beats none.
pub fn collect(
    paths: &Paths,
    status: &Status,
    state: &ReportState,
    depth: (u64, u64),
    live: Live,
) -> Heartbeat {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let hostname =
        Some(read("/proc/sys/kernel/hostname").trim().to_owned()).filter(|h| !h.is_empty());
    let os_text = std::fs::read_to_string("/etc/os-release")
        .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
        .unwrap_or_default();
    let os = uplink_sources::host::parse_os_release(&os_text);
    let os = os.pretty_name.or_else(|| {
        os.id.map(|id| {
            format!("{id} {}", os.version_id.unwrap_or_default())
                .trim()
                .to_owned()
        })
    });
    let cert = crate::renew::Renewal::load(paths).ok();
    let now = std::time::SystemTime::now();
    let now_text = rfc3339(now);
    let now_unix = now
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    build(&Inputs {
        interval_secs: live.interval_secs,
        version: env!("CARGO_PKG_VERSION"),
        hostname,
        os,
        status,
        queue_events: depth.0,
        queue_bytes: depth.1,
        state,
        skipped: live.skipped,
        running_secs: live.running_secs,
        // The certificate file's time is when it was obtained: its lifetime starts there.
        cert_not_before: cert.as_ref().map(|c| rfc3339(c.obtained_at)),
        cert_not_after: cert.as_ref().map(|c| rfc3339(c.not_after)),
        cert_renewal_failed: live.cert_renewal_failed,
        now: &now_text,
        now_unix,
    })
}

/// How the route was chosen, from the proxy engine's explanation: the source it used (the first
/// `used` one, `explicit`, `pac`, `wpad`, `env`, `direct`), or `policy` when the route in use is
/// not the first candidate and is DIRECT (the fallback policy's). Pure.
pub fn route_source(used: Option<&str>, route: &str, fell_back: bool) -> RouteSource {
    if fell_back && route == "DIRECT" {
        return RouteSource::Policy;
    }
    used.and_then(parse_source).unwrap_or(RouteSource::Direct)
}

fn parse_source(s: &str) -> Option<RouteSource> {
    Some(match s {
        "explicit" => RouteSource::Explicit,
        "pac" => RouteSource::Pac,
        "wpad" => RouteSource::Wpad,
        "env" => RouteSource::Env,
        "direct" => RouteSource::Direct,
        "policy" => RouteSource::Policy,
        _ => return None,
    })
}

fn unix_of(rfc3339: &str) -> Option<i64> {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

/// RFC 3339 UTC of a system time.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    crate::fsutil::write_public(path, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::LastError;

    #[test]
    fn the_outage_log_opens_gathers_and_closes() {
        let mut s = ReportState::default();
        // (event, changed, intervals, open?, codes of the last)
        type Step = (&'static str, bool, usize, bool, &'static [&'static str]);
        let steps: &[Step] = &[
            (
                "fail PROXY_AUTH_FAILED p:1 t1",
                true,
                1,
                true,
                &["PROXY_AUTH_FAILED"],
            ),
            (
                "fail PROXY_AUTH_FAILED p:1 t2",
                false,
                1,
                true,
                &["PROXY_AUTH_FAILED"],
            ),
            (
                "fail TCP_REFUSED - t3",
                true,
                1,
                true,
                &["PROXY_AUTH_FAILED", "TCP_REFUSED"],
            ),
            (
                "ok t4",
                true,
                1,
                false,
                &["PROXY_AUTH_FAILED", "TCP_REFUSED"],
            ),
            (
                "ok t5",
                false,
                1,
                false,
                &["PROXY_AUTH_FAILED", "TCP_REFUSED"],
            ),
            (
                "fail TLS_INTERCEPTED - t6",
                true,
                2,
                true,
                &["TLS_INTERCEPTED"],
            ),
            ("ok t7", true, 2, false, &["TLS_INTERCEPTED"]),
        ];
        for (event, changed, n, open, codes) in steps {
            let w: Vec<&str> = event.split(' ').collect();
            let got = match w[0] {
                "fail" => s.failed(w[1], (w[2] != "-").then_some(w[2]), w[3]),
                _ => s.succeeded(w[1]),
            };
            assert_eq!(got, *changed, "{event}");
            assert_eq!(s.outages.len(), *n, "{event}");
            let last = s.outages.last().unwrap();
            assert_eq!(last.end.is_none(), *open, "{event}");
            assert_eq!(&last.codes, codes, "{event}");
        }
        assert_eq!(s.outages[0].failures, 3);
        assert_eq!(s.outages[0].proxy.as_deref(), Some("p:1"));
        assert_eq!(s.outages[0].end.as_deref(), Some("t4"));
        // Delivered: the closed intervals sent leave; one opened since stays.
        let sent = s.outages.clone();
        s.failed("TCP_TIMEOUT", None, "t8");
        assert!(s.delivered(&sent));
        assert_eq!(s.outages.len(), 1);
        assert_eq!(s.outages[0].start, "t8");
        // Bounded.
        let mut s = ReportState::default();
        for i in 0..MAX_OUTAGES + 5 {
            s.failed("X", None, &format!("f{i}"));
            s.succeeded(&format!("s{i}"));
        }
        assert_eq!(s.outages.len(), MAX_OUTAGES);
        assert_eq!(s.outages[0].start, "f5");
    }

    #[test]
    fn route_sources() {
        let cases = [
            (
                Some("explicit"),
                "PROXY p:3128",
                false,
                RouteSource::Explicit,
            ),
            (Some("pac"), "PROXY p:3128", true, RouteSource::Pac),
            (Some("pac"), "DIRECT", true, RouteSource::Policy),
            (Some("pac"), "DIRECT", false, RouteSource::Pac),
            (Some("wpad"), "PROXY w:8080", false, RouteSource::Wpad),
            (Some("env"), "PROXY e:1", false, RouteSource::Env),
            (Some("direct"), "DIRECT", false, RouteSource::Direct),
            (None, "DIRECT", false, RouteSource::Direct),
            (Some("novel"), "DIRECT", false, RouteSource::Direct),
        ];
        for (used, route, fell_back, want) in cases {
            assert_eq!(
                route_source(used, route, fell_back),
                want,
                "{used:?} {route}"
            );
        }
    }

    #[test]
    fn builds_format_2() {
        let status = Status {
            route: Some("DIRECT".into()),
            route_source: Some("policy".into()),
            route_note: Some("PROXY p:3128 unreachable (TCP_REFUSED)".into()),
            last_success: Some("2026-01-01T00:00:09Z".into()),
            last_error: Some(LastError {
                code: "TCP_REFUSED".into(),
                message: "m".into(),
                at: "2026-01-01T00:00:08Z".into(),
                fix: None,
            }),
            ..Default::default()
        };
        let state = ReportState {
            outages: vec![Outage {
                start: "2026-01-01T00:00:00Z".into(),
                end: Some("2026-01-01T00:00:09Z".into()),
                codes: vec!["TCP_REFUSED".into()],
                proxy: Some("p:3128".into()),
                failures: 4,
            }],
            queue_empty_at: Some("2026-01-01T00:00:00Z".into()),
        };
        let now = "2026-01-01T00:01:40Z";
        let base = Inputs {
            interval_secs: 60,
            version: "0.1.0",
            status: &status,
            state: &state,
            queue_events: 5,
            queue_bytes: 500,
            now,
            now_unix: unix_of(now).unwrap(),
            hostname: None,
            os: None,
            skipped: 0,
            running_secs: 0,
            cert_not_before: None,
            cert_not_after: None,
            cert_renewal_failed: false,
        };
        let h = build(&base);
        assert_eq!(h.format, 2);
        assert_eq!(h.interval_secs, Some(60));
        assert_eq!(h.route_source, Some(RouteSource::Policy));
        assert!(h.fallback);
        assert_eq!(h.queue.oldest_secs, Some(100));
        assert_eq!(h.last_error_code.as_deref(), Some("TCP_REFUSED"));
        assert_eq!(h.last_error_at.as_deref(), Some("2026-01-01T00:00:08Z"));
        assert_eq!(h.sensor_time.as_deref(), Some(now));
        assert_eq!(h.outages, state.outages);
        // An empty queue has no age; no note, no fallback; nothing queued since an unknown time.
        let plain = Status {
            route: Some("DIRECT".into()),
            ..Default::default()
        };
        let h = build(&Inputs {
            status: &plain,
            queue_events: 0,
            ..base.clone()
        });
        assert_eq!((h.fallback, h.queue.oldest_secs), (false, Some(0)));
        let unknown = ReportState::default();
        let h = build(&Inputs {
            state: &unknown,
            ..base
        });
        assert_eq!(h.queue.oldest_secs, None);
        // What the service parses back is what was built.
        let again = uplink_protocol::heartbeat::parse(&serde_json::to_vec(&h).unwrap()).unwrap();
        assert_eq!(again, h);
    }
}
