//! `uplink sensor status --prometheus FILE`: the sensor's [`Report`] as a node_exporter
//! textfile (Prometheus text format 0.0.4), for the textfile collector
//! (`--collector.textfile.directory`). Pure: the binary writes the file (atomically, by rename,
//! so the collector never reads half of it). Metric names start `uplink_sensor_`.

use super::report::Report;

/// A label value escaped as the text format wants (`\`, `"`, newline).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Seconds since the Unix epoch of an RFC 3339 time, if it parses.
fn unix_secs(t: Option<&str>) -> Option<i64> {
    let t = time::OffsetDateTime::parse(t?, &time::format_description::well_known::Rfc3339).ok()?;
    Some(t.unix_timestamp())
}

impl Report {
    /// The textfile. Times the sensor does not know yet are left out (not written as 0).
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, String)]| {
            out.push_str(&format!("# HELP uplink_sensor_{name} {help}\n"));
            out.push_str(&format!("# TYPE uplink_sensor_{name} {kind}\n"));
            for (labels, value) in samples {
                out.push_str(&format!("uplink_sensor_{name}{labels} {value}\n"));
            }
        };
        let id = format!(
            "{{workspace=\"{}\",sensor_id=\"{}\"}}",
            label(&self.workspace),
            label(&self.sensor_id)
        );
        metric(
            "info",
            "gauge",
            "The sensor's workspace and id, and its current route.",
            &[(
                format!(
                    "{{workspace=\"{}\",sensor_id=\"{}\",route=\"{}\"}}",
                    label(&self.workspace),
                    label(&self.sensor_id),
                    label(&self.route)
                ),
                "1".into(),
            )],
        );
        metric(
            "queue_events",
            "gauge",
            "Events queued and not yet delivered.",
            &[(id.clone(), self.queue.events.to_string())],
        );
        metric(
            "queue_bytes",
            "gauge",
            "Bytes of the events queued.",
            &[(id.clone(), self.queue.bytes.to_string())],
        );
        metric(
            "delivered_events",
            "gauge",
            "Events the uploader delivered since it started.",
            &[(id.clone(), self.delivered.to_string())],
        );
        let when = |t: Option<&str>| -> Vec<(String, String)> {
            unix_secs(t)
                .map(|s| vec![(id.clone(), s.to_string())])
                .unwrap_or_default()
        };
        metric(
            "last_success_timestamp_seconds",
            "gauge",
            "When a batch was last delivered (Unix seconds).",
            &when(self.last_success.as_deref()),
        );
        metric(
            "certificate_expiry_timestamp_seconds",
            "gauge",
            "When the sensor's client certificate expires (Unix seconds).",
            &when(self.certificate_expires.as_deref()),
        );
        let failing: Vec<(String, String)> = self
            .last_error
            .iter()
            .map(|e| {
                (
                    format!(
                        "{{workspace=\"{}\",sensor_id=\"{}\",code=\"{}\"}}",
                        label(&self.workspace),
                        label(&self.sensor_id),
                        label(&e.code)
                    ),
                    "1".into(),
                )
            })
            .collect();
        metric(
            "last_error",
            "gauge",
            "1 with the code of the last failure, when the last attempt failed.",
            &failing,
        );
        metric(
            "disk_full",
            "gauge",
            "1 while the sources cannot queue for want of disk space.",
            &[(id.clone(), u8::from(self.disk_full.is_some()).to_string())],
        );
        metric(
            "queue_lost_records",
            "gauge",
            "Records lost to damage of the queue's files (0: none).",
            &[(
                id.clone(),
                self.queue_damage
                    .as_ref()
                    .map_or(0, |d| d.lost_records)
                    .to_string(),
            )],
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{LastError, SourcesStatus};

    fn report(last_error: Option<LastError>) -> Report {
        Report {
            workspace: "contoso".into(),
            sensor_id: "s-\"1\"".into(),
            sensor_url: "https://contososensorapi.example".into(),
            route: "PROXY proxy.corp:3128".into(),
            route_note: None,
            proxy_auth: None,
            certificate_expires: Some("2027-01-01T00:00:00Z".into()),
            last_success: None,
            last_error,
            delivered: 42,
            queue: uplink_queue::Depth {
                events: 5,
                bytes: 600,
            },
            queue_damage: None,
            disk_full: None,
            sources: SourcesStatus::default(),
            policy: None,
        }
    }

    #[test]
    fn the_textfile_has_every_known_value_and_escapes_labels() {
        let text = report(Some(LastError {
            code: "TCP_REFUSED".into(),
            message: "refused".into(),
            at: "2026-01-02T03:04:06Z".into(),
            fix: None,
        }))
        .prometheus();
        let id = r#"{workspace="contoso",sensor_id="s-\"1\""}"#;
        for line in [
            format!("uplink_sensor_queue_events{id} 5"),
            format!("uplink_sensor_queue_bytes{id} 600"),
            format!("uplink_sensor_delivered_events{id} 42"),
            format!("uplink_sensor_certificate_expiry_timestamp_seconds{id} 1798761600"),
            format!("uplink_sensor_disk_full{id} 0"),
            r#"uplink_sensor_last_error{workspace="contoso",sensor_id="s-\"1\"",code="TCP_REFUSED"} 1"#.into(),
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
        // Unknown times are left out, not written as 0.
        assert!(
            !text.contains("uplink_sensor_last_success_timestamp_seconds{"),
            "{text}"
        );
        let healthy = report(None).prometheus();
        assert!(!healthy.contains("uplink_sensor_last_error{"), "{healthy}");
    }
}
