//! What `uplink sensor status` shows: one typed [`Report`] assembled from `sensor.toml`,
//! `status.json`, the queue's depth, the sources' checkpoints and the client certificate, with
//! its two renderings — JSON for scripts and text for people.
//!
//! The JSON is a contract scripts rely on: its field names and shape (objects with their keys in
//! sorted order, as `serde_json`'s map writes them, `null` for what is unknown) stay as they are.
//! Add fields; never rename or remove one. `tests::json_shape_is_the_captured_one` keeps it.
//!
//! Loading only reads: the queue is opened read-only (status never creates, cuts or rewrites a
//! queue file; only the writer repairs), and unreadable checkpoints or certificates read as
//! absent, so status answers even when the sensor is in trouble.

use serde::Serialize;
use uplink_queue::Depth;

use super::{LastError, QueueDamage, SourcesStatus, Status};
use crate::{Config, Paths, SensorError};

/// `uplink sensor status`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Report {
    pub workspace: String,
    pub sensor_id: String,
    pub sensor_url: String,
    /// The route last used; before the first connection, the first candidate the settings give
    /// (`none` when they give none, `invalid: …` when the service URL does not parse).
    pub route: String,
    pub route_note: Option<String>,
    pub proxy_auth: Option<String>,
    /// The client certificate's expiry, RFC 3339 (`None`: no readable certificate).
    pub certificate_expires: Option<String>,
    pub last_success: Option<String>,
    pub last_error: Option<LastError>,
    pub delivered: u64,
    pub queue: Depth,
    pub queue_damage: Option<QueueDamage>,
    /// While a running sensor's sources cannot queue for want of disk space (`DISK_FULL`).
    pub disk_full: Option<LastError>,
    pub sources: SourcesStatus,
    /// The central policy (issue #26): the version applied (null: sensor.toml's settings), the
    /// one last fetched, a rejected one. `null` before the sensor learnt of any.
    pub policy: Option<uplink_protocol::heartbeat::PolicyState>,
}

impl Report {
    /// Reads everything `sensor status` shows. Fails only when there is no sensor (no readable
    /// `sensor.toml`) or its queue cannot be opened read-only.
    pub fn load(paths: &Paths) -> Result<Report, SensorError> {
        let config = Config::load(paths)?;
        let status = Status::load(&paths.status_file());
        let queue = crate::open_queue_read_only(paths, &config)?.depth()?;
        let route = status
            .route
            .clone()
            .unwrap_or_else(|| planned_route(paths, &config));
        let sources = SourcesStatus::load(paths);
        let certificate_expires = certificate_expires(paths);
        Ok(Report::new(
            &config,
            status,
            queue,
            route,
            sources,
            certificate_expires,
        ))
    }

    /// The report from what was read (pure).
    pub fn new(
        config: &Config,
        status: Status,
        queue: Depth,
        route: String,
        sources: SourcesStatus,
        certificate_expires: Option<String>,
    ) -> Report {
        Report {
            workspace: config.workspace.clone(),
            sensor_id: config.sensor_id.clone(),
            sensor_url: config.sensor_url.clone(),
            route,
            route_note: status.route_note,
            proxy_auth: status.proxy_auth,
            certificate_expires,
            last_success: status.last_success,
            last_error: status.last_error,
            delivered: status.delivered,
            queue,
            queue_damage: status.queue_damage,
            disk_full: status.disk_full,
            sources,
            policy: status.policy,
        }
    }

    /// `sensor status --json`: pretty JSON, every object's keys sorted (the contract above).
    pub fn json(&self) -> String {
        crate::render::sorted_json(self)
    }

    /// `sensor status`: one line per fact, for people.
    pub fn text(&self) -> String {
        use std::fmt::Write;
        let mut out = crate::render::Lines::default();
        let mut line = |s: String| out.line(s);
        line(format!("workspace     {}", self.workspace));
        line(format!("sensor id     {}", self.sensor_id));
        line(format!("service       {}", self.sensor_url));
        line(format!("route         {}", self.route));
        if let Some(scheme) = &self.proxy_auth {
            line(format!("proxy auth    {scheme}"));
        }
        if let Some(note) = &self.route_note {
            line(format!("              ({note})"));
        }
        line(format!(
            "last success  {}",
            self.last_success.as_deref().unwrap_or("never")
        ));
        match &self.last_error {
            Some(e) => {
                line(format!(
                    "last error    {} at {}: {}",
                    e.code, e.at, e.message
                ));
                // The fix fitted to the failure when the uploader recorded one.
                match (&e.fix, e.code.parse::<uplink_diag::Code>()) {
                    (Some(fix), _) => line(format!("fix           {fix}")),
                    (None, Ok(code)) => line(format!("fix           {}", code.fix())),
                    (None, Err(_)) => {}
                }
            }
            None => line("last error    none".to_owned()),
        }
        line(format!(
            "queue         {} events, {} bytes",
            self.queue.events, self.queue.bytes
        ));
        if let Some(d) = &self.queue_damage {
            line(format!(
                "queue damage  {} (last found {})",
                d.message(),
                d.at
            ));
        }
        if let Some(d) = &self.disk_full {
            line(format!("disk full     since {}: {}", d.at, d.message));
            line(format!(
                "fix           {}",
                uplink_diag::Code::DISK_FULL.fix()
            ));
        }
        if let Some(p) = &self.policy {
            if let Some(v) = p.applied {
                line(format!("policy        v{v} from the service applied"));
            }
            if let Some(r) = &p.rejected {
                line(format!(
                    "policy        v{} rejected at {}: {} (the sensor keeps its working route and tries again later)",
                    r.version, r.at, r.code
                ));
            }
        }
        line(format!(
            "certificate   valid until {}",
            self.certificate_expires
                .as_deref()
                .unwrap_or("unknown (no readable client certificate)")
        ));
        let hb = &self.sources.heartbeats;
        let mut heartbeats = format!("heartbeats    {} queued, ", hb.queued);
        match hb.skipped {
            0 => heartbeats.push_str("none skipped"),
            n => {
                let _ = write!(heartbeats, "{n} skipped (queue full)");
            }
        }
        if let Some(t) = &hb.last_queued {
            let _ = write!(heartbeats, ", last at {t}");
        }
        line(heartbeats);
        for f in &self.sources.files {
            let not_json = match f.not_json {
                0 => String::new(),
                n => format!("; {n} lines not JSON objects, queued as text"),
            };
            line(match f.behind {
                Some(behind) => format!(
                    "file          {}: queued through byte {}, {behind} bytes behind{not_json}",
                    f.path, f.offset
                ),
                None => format!(
                    "file          {}: queued through byte {} (rotated away or deleted){not_json}",
                    f.path, f.offset
                ),
            });
        }
        if self.sources.not_json_let_go > 0 {
            line(format!(
                "files let go  {} lines not JSON objects, queued as text, in files rotated away and finished",
                self.sources.not_json_let_go
            ));
        }
        for f in &self.sources.lost_files {
            line(format!(
                "file lost     {}: gone (deleted or moved away while the sensor was stopped) before it was read past byte {}; its later lines, if any, were not queued",
                f.path, f.offset
            ));
        }
        if let Some(cursor) = &self.sources.journal_cursor {
            line(format!("journal       queued through cursor {cursor}"));
        }
        out.finish()
    }
}

/// Before the first connection: the first candidate of the route the settings give.
fn planned_route(paths: &Paths, config: &Config) -> String {
    match uplink_client::Endpoint::parse(&config.sensor_url) {
        Ok(e) => first_candidate(
            config
                .explain(paths, &e.host, e.port)
                .route
                .first()
                .map(ToString::to_string),
        ),
        Err(e) => format!("invalid: {e}"),
    }
}

/// What status names when the settings give no candidate at all.
fn first_candidate(first: Option<String>) -> String {
    first.unwrap_or_else(|| "none".into())
}

/// The client certificate's expiry, RFC 3339; `None` when it cannot be read.
pub fn certificate_expires(paths: &Paths) -> Option<String> {
    let pem = std::fs::read_to_string(paths.cert_file()).ok()?;
    let der = uplink_pki::certs_from_pem(&pem).ok()?.into_iter().next()?;
    let info = uplink_pki::cert_info(&der).ok()?;
    info.not_after
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::super::{FileStatus, HeartbeatRecord};
    use super::*;

    fn config() -> Config {
        toml::from_str(
            r#"
format = 1
workspace = "contoso"
sensor_id = "s-1"
sensor_url = "https://contososensorapi.uplink.localhost:8443"
"#,
        )
        .expect("a minimal sensor.toml")
    }

    /// Every field set.
    fn busy() -> Report {
        let status = Status {
            route: Some("PROXY proxy.corp:3128".into()),
            route_source: Some("explicit".into()),
            route_note: Some("PROXY down:3128 unreachable".into()),
            proxy_auth: Some("NTLM".into()),
            proxy_settings: Some("0123456789abcdef".into()),
            last_success: Some("2026-01-02T03:04:05Z".into()),
            last_error: Some(LastError {
                code: "TCP_REFUSED".into(),
                message: "refused".into(),
                at: "2026-01-02T03:04:06Z".into(),
                fix: None,
            }),
            queue_damage: Some(QueueDamage {
                lost_records: 3,
                lost_seqs: vec![[7, 9]],
                at: "2026-01-02T03:04:07Z".into(),
            }),
            disk_full: Some(LastError {
                code: "DISK_FULL".into(),
                message: "no space for the file source".into(),
                at: "2026-01-02T03:04:09Z".into(),
                fix: None,
            }),
            delivered: 42,
            updated_at: Some("2026-01-02T03:04:08Z".into()),
            policy: None,
        };
        let sources = SourcesStatus {
            files: vec![
                FileStatus {
                    path: "/var/log/a.log".into(),
                    offset: 10,
                    length: Some(25),
                    behind: Some(15),
                    not_json: 0,
                },
                FileStatus {
                    path: "/var/log/b.log".into(),
                    offset: 7,
                    length: None,
                    behind: None,
                    not_json: 3,
                },
            ],
            lost_files: Vec::new(),
            not_json_let_go: 0,
            journal_cursor: Some("s=abc".into()),
            heartbeats: HeartbeatRecord {
                queued: 4,
                skipped: 2,
                last_queued: Some("2026-01-02T03:00:00Z".into()),
                last_skipped: Some("2026-01-02T03:01:00Z".into()),
            },
        };
        Report::new(
            &config(),
            status,
            Depth {
                events: 5,
                bytes: 600,
            },
            "PROXY proxy.corp:3128".into(),
            sources,
            Some("2027-01-01T00:00:00Z".into()),
        )
    }

    /// A sensor that never ran.
    fn fresh() -> Report {
        Report::new(
            &config(),
            Status::default(),
            Depth::default(),
            "DIRECT".into(),
            SourcesStatus::default(),
            None,
        )
    }

    /// The JSON `sensor status --json` printed when it was built inline in the binary (the
    /// `serde_json::json!` it used, kept here verbatim as the reference).
    fn inline_json(r: &Report) -> String {
        let value = serde_json::json!({
            "workspace": r.workspace,
            "sensor_id": r.sensor_id,
            "sensor_url": r.sensor_url,
            "route": r.route,
            "route_note": r.route_note,
            "proxy_auth": r.proxy_auth,
            "certificate_expires": r.certificate_expires,
            "last_success": r.last_success,
            "last_error": r.last_error,
            "delivered": r.delivered,
            "queue": {"events": r.queue.events, "bytes": r.queue.bytes},
            "queue_damage": r.queue_damage,
            "disk_full": r.disk_full,
            "sources": r.sources,
            "policy": r.policy,
        });
        serde_json::to_string_pretty(&value).unwrap()
    }

    #[test]
    fn json_is_byte_for_byte_what_the_binary_printed() {
        for r in [busy(), fresh()] {
            assert_eq!(r.json(), inline_json(&r));
        }
    }

    #[test]
    fn json_shape_is_the_captured_one() {
        let captured = r#"{
  "certificate_expires": "2027-01-01T00:00:00Z",
  "delivered": 42,
  "disk_full": {
    "at": "2026-01-02T03:04:09Z",
    "code": "DISK_FULL",
    "message": "no space for the file source"
  },
  "last_error": {
    "at": "2026-01-02T03:04:06Z",
    "code": "TCP_REFUSED",
    "message": "refused"
  },
  "last_success": "2026-01-02T03:04:05Z",
  "policy": null,
  "proxy_auth": "NTLM",
  "queue": {
    "bytes": 600,
    "events": 5
  },
  "queue_damage": {
    "at": "2026-01-02T03:04:07Z",
    "lost_records": 3,
    "lost_seqs": [
      [
        7,
        9
      ]
    ]
  },
  "route": "PROXY proxy.corp:3128",
  "route_note": "PROXY down:3128 unreachable",
  "sensor_id": "s-1",
  "sensor_url": "https://contososensorapi.uplink.localhost:8443",
  "sources": {
    "files": [
      {
        "behind": 15,
        "length": 25,
        "not_json": 0,
        "offset": 10,
        "path": "/var/log/a.log"
      },
      {
        "behind": null,
        "length": null,
        "not_json": 3,
        "offset": 7,
        "path": "/var/log/b.log"
      }
    ],
    "heartbeats": {
      "last_queued": "2026-01-02T03:00:00Z",
      "last_skipped": "2026-01-02T03:01:00Z",
      "queued": 4,
      "skipped": 2
    },
    "journal_cursor": "s=abc"
  },
  "workspace": "contoso"
}"#;
        assert_eq!(busy().json(), captured);
        let captured_fresh = r#"{
  "certificate_expires": null,
  "delivered": 0,
  "disk_full": null,
  "last_error": null,
  "last_success": null,
  "policy": null,
  "proxy_auth": null,
  "queue": {
    "bytes": 0,
    "events": 0
  },
  "queue_damage": null,
  "route": "DIRECT",
  "route_note": null,
  "sensor_id": "s-1",
  "sensor_url": "https://contososensorapi.uplink.localhost:8443",
  "sources": {
    "files": [],
    "heartbeats": {
      "last_queued": null,
      "last_skipped": null,
      "queued": 0,
      "skipped": 0
    },
    "journal_cursor": null
  },
  "workspace": "contoso"
}"#;
        assert_eq!(fresh().json(), captured_fresh);
    }

    #[test]
    fn text_of_a_busy_sensor() {
        let want = format!(
            "\
workspace     contoso
sensor id     s-1
service       https://contososensorapi.uplink.localhost:8443
route         PROXY proxy.corp:3128
proxy auth    NTLM
              (PROXY down:3128 unreachable)
last success  2026-01-02T03:04:05Z
last error    TCP_REFUSED at 2026-01-02T03:04:06Z: refused
fix           {}
queue         5 events, 600 bytes
queue damage  {} (last found 2026-01-02T03:04:07Z)
disk full     since 2026-01-02T03:04:09Z: no space for the file source
fix           {}
certificate   valid until 2027-01-01T00:00:00Z
heartbeats    4 queued, 2 skipped (queue full), last at 2026-01-02T03:00:00Z
file          /var/log/a.log: queued through byte 10, 15 bytes behind
file          /var/log/b.log: queued through byte 7 (rotated away or deleted); 3 lines not JSON objects, queued as text
journal       queued through cursor s=abc
",
            uplink_diag::Code::TCP_REFUSED.fix(),
            busy().queue_damage.unwrap().message(),
            uplink_diag::Code::DISK_FULL.fix(),
        );
        assert_eq!(busy().text(), want);
    }

    #[test]
    fn the_central_policy_is_shown_applied_and_rejected() {
        let mut r = fresh();
        r.policy = Some(uplink_protocol::heartbeat::PolicyState {
            applied: Some(7),
            fetched: 8,
            rejected: Some(uplink_protocol::heartbeat::PolicyRejection {
                version: 8,
                code: "TCP_REFUSED".into(),
                detail: "cannot reach the proxy".into(),
                at: "2026-01-02T03:04:05Z".into(),
            }),
        });
        let text = r.text();
        assert!(
            text.contains("policy        v7 from the service applied\n"),
            "{text}"
        );
        assert!(
            text.contains("policy        v8 rejected at 2026-01-02T03:04:05Z: TCP_REFUSED"),
            "{text}"
        );
        assert!(r.json().contains("\"applied\": 7"), "{}", r.json());
    }

    #[test]
    fn text_of_a_fresh_sensor() {
        assert_eq!(
            fresh().text(),
            "\
workspace     contoso
sensor id     s-1
service       https://contososensorapi.uplink.localhost:8443
route         DIRECT
last success  never
last error    none
queue         0 events, 0 bytes
certificate   valid until unknown (no readable client certificate)
heartbeats    0 queued, none skipped
"
        );
    }

    #[test]
    fn a_fitted_fix_replaces_the_codes_generic_one() {
        let mut r = fresh();
        r.last_error = Some(LastError {
            code: "TLS_UNTRUSTED_ROOT".into(),
            message: "m".into(),
            at: "t".into(),
            fix: Some("the workspace was re-created: reinstall the sensor".into()),
        });
        let text = r.text();
        assert!(
            text.contains("fix           the workspace was re-created: reinstall the sensor\n"),
            "{text}"
        );
        assert!(
            !text.contains(uplink_diag::Code::TLS_UNTRUSTED_ROOT.fix()),
            "{text}"
        );
        // And the JSON carries it (absent when none was fitted, as status.json writes it).
        assert!(r.json().contains("\"fix\": \"the workspace was re-created"));
        assert!(!busy().json().contains("\"fix\""));
    }

    #[test]
    fn an_error_code_this_build_does_not_know_has_no_fix_line() {
        let mut r = fresh();
        r.last_error = Some(LastError {
            code: "FROM_A_NEWER_SENSOR".into(),
            message: "m".into(),
            at: "t".into(),
            fix: None,
        });
        let text = r.text();
        assert!(text.contains("last error    FROM_A_NEWER_SENSOR at t: m\n"));
        assert!(!text.contains("fix "), "{text}");
    }

    #[test]
    fn without_candidates_the_route_is_none() {
        for (first, want) in [
            (None, "none"),
            (Some("DIRECT".to_owned()), "DIRECT"),
            (Some("PROXY p:1".to_owned()), "PROXY p:1"),
        ] {
            assert_eq!(first_candidate(first), want);
        }
    }

    #[test]
    fn loading_reads_the_sensor_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(Some(dir.path()));
        // No sensor: the error says so (the binary prints it).
        assert!(matches!(
            Report::load(&paths),
            Err(SensorError::Config(
                crate::config::ConfigError::NotInstalled(_)
            ))
        ));
    }
}
