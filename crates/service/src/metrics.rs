//! Prometheus metrics of one replica (`uplink service --metrics-listen ADDR`, `GET /metrics`,
//! docs/admin-api.md): ingest (events, bytes, a batch latency histogram), enrollments, store
//! errors and open connections counted by this process; sensors by state and health and open
//! issues by kind read from the store at each scrape (every replica answers them alike, so a
//! dashboard takes them from any one).
//!
//! The binary binds the listener and hands it to [`crate::Service::serve_metrics`]; this module
//! only counts and encodes (the encoding is `prometheus-client`'s).

use std::collections::BTreeMap;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use uplink_store::{IssueState, Store, StoreError};

type Labels = Vec<(String, String)>;

/// The metrics of one service process.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub(crate) ingest_events: Counter,
    pub(crate) ingest_duplicates: Counter,
    pub(crate) ingest_bytes: Counter,
    pub(crate) batch_seconds: Histogram,
    pub(crate) enrollments: Counter,
    pub(crate) store_errors: Counter,
    pub(crate) connections: Gauge,
    sensors: Family<Labels, Gauge>,
    open_issues: Family<Labels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("uplink");
        let m = Metrics {
            ingest_events: Counter::default(),
            ingest_duplicates: Counter::default(),
            ingest_bytes: Counter::default(),
            // 1 ms to about 16 s.
            batch_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            enrollments: Counter::default(),
            store_errors: Counter::default(),
            connections: Gauge::default(),
            sensors: Family::default(),
            open_issues: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "ingest_events",
            "Events stored by this replica (duplicates not counted)",
            m.ingest_events.clone(),
        );
        registry.register(
            "ingest_duplicate_events",
            "Events received again and not stored twice",
            m.ingest_duplicates.clone(),
        );
        registry.register(
            "ingest_bytes",
            "Bytes of event batches received on the wire",
            m.ingest_bytes.clone(),
        );
        registry.register(
            "batch_duration_seconds",
            "Time from a batch's body read to its answer (decode, store, commit)",
            m.batch_seconds.clone(),
        );
        registry.register(
            "enrollments",
            "Sensors enrolled through this replica",
            m.enrollments.clone(),
        );
        registry.register(
            "store_errors",
            "Store operations that failed (the request was answered 503)",
            m.store_errors.clone(),
        );
        registry.register(
            "connections",
            "Connections open on this replica",
            m.connections.clone(),
        );
        registry.register(
            "sensors",
            "Sensors by workspace, state and health, as of the last fleet evaluation",
            m.sensors.clone(),
        );
        registry.register(
            "open_issues",
            "Open health issues by workspace and kind",
            m.open_issues.clone(),
        );
        Metrics { registry, ..m }
    }
}

/// Counts per label set (workspace, state, health) of a workspace's sensors, and per
/// (workspace, kind) of its open issues. Pure.
pub fn fleet_counts(
    workspace: &str,
    sensors: &[uplink_store::FleetSensor],
    issues: &[uplink_store::Issue],
) -> (BTreeMap<Labels, i64>, BTreeMap<Labels, i64>) {
    let mut by_state = BTreeMap::new();
    for s in sensors {
        let labels = vec![
            ("workspace".to_owned(), workspace.to_owned()),
            (
                "state".to_owned(),
                s.state.clone().unwrap_or_else(|| "unknown".into()),
            ),
            (
                "health".to_owned(),
                s.health.clone().unwrap_or_else(|| "unknown".into()),
            ),
        ];
        *by_state.entry(labels).or_insert(0) += 1;
    }
    let mut by_kind = BTreeMap::new();
    for i in issues.iter().filter(|i| i.state == IssueState::Open) {
        let labels = vec![
            ("workspace".to_owned(), workspace.to_owned()),
            ("kind".to_owned(), i.kind.to_string()),
        ];
        *by_kind.entry(labels).or_insert(0) += 1;
    }
    (by_state, by_kind)
}

impl Metrics {
    /// Reads the fleet gauges from the store, then encodes every metric (Prometheus text).
    pub async fn render<S: Store>(&self, store: &S) -> Result<String, StoreError> {
        let mut sensors = BTreeMap::new();
        let mut issues = BTreeMap::new();
        for ws in store.workspaces().await? {
            let (s, i) =
                match tokio::try_join!(store.fleet_sensors(&ws.name), store.fleet_issues(&ws.name))
                {
                    Ok(x) => x,
                    // Deleted meanwhile.
                    Err(StoreError::NoSuchWorkspace(_)) => continue,
                    Err(e) => {
                        self.store_errors.inc();
                        return Err(e);
                    }
                };
            let (a, b) = fleet_counts(&ws.name, &s, &i);
            sensors.extend(a);
            issues.extend(b);
        }
        self.sensors.clear();
        for (labels, n) in sensors {
            self.sensors.get_or_create(&labels).set(n);
        }
        self.open_issues.clear();
        for (labels, n) in issues {
            self.open_issues.get_or_create(&labels).set(n);
        }
        let mut out = String::new();
        encode(&mut out, &self.registry)
            .map_err(|_| StoreError::Settings("encoding the metrics failed".into()))?;
        Ok(prometheus_text(&out))
    }
}

/// OpenMetrics text (what `prometheus-client` encodes) as the Prometheus text format 0.0.4 that
/// every scraper and `promtool check metrics` read: a counter family is named as its samples
/// (`x_total`), and there is no `# EOF`. Pure.
pub fn prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + 64);
    for line in openmetrics.lines() {
        if line == "# EOF" {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find(|p| line.starts_with(p));
        match meta {
            Some(prefix) => {
                let rest = &line[prefix.len()..];
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                if counters.contains(name) {
                    out.push_str(&format!("{prefix}{name}_total {tail}"));
                } else {
                    out.push_str(line);
                }
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Counts a connection while it lives.
pub(crate) struct ConnectionGuard<'a>(&'a Metrics);

impl<'a> ConnectionGuard<'a> {
    pub(crate) fn new(m: &'a Metrics) -> Self {
        m.connections.inc();
        ConnectionGuard(m)
    }
}

impl Drop for ConnectionGuard<'_> {
    fn drop(&mut self) {
        self.0.connections.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counters_and_fleet_gauges_encode_as_prometheus_text() {
        let dir = tempfile::tempdir().unwrap();
        let store = uplink_store_sqlite::SqliteStore::open(dir.path(), true).unwrap();
        let m = Metrics::default();
        m.ingest_events.inc_by(5);
        m.ingest_bytes.inc_by(1234);
        m.batch_seconds.observe(0.02);
        m.enrollments.inc();
        {
            let _c = ConnectionGuard::new(&m);
            let text = m.render(&store).await.unwrap();
            assert!(text.contains("uplink_connections 1"), "{text}");
        }
        let text = m.render(&store).await.unwrap();
        for line in [
            "uplink_ingest_events_total 5",
            "uplink_ingest_bytes_total 1234",
            "uplink_enrollments_total 1",
            "uplink_store_errors_total 0",
            "uplink_connections 0",
            "uplink_batch_duration_seconds_count 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} not in\n{text}");
        }
        assert!(
            text.contains("# TYPE uplink_ingest_events_total counter\n"),
            "{text}"
        );
        assert!(!text.contains("# EOF"), "{text}");
    }

    #[test]
    fn openmetrics_counters_become_prometheus_text() {
        let open = "# HELP a_b Things.\n# TYPE a_b counter\na_b_total 3\n# HELP g A gauge.\n# TYPE g gauge\ng{x=\"1\"} 2\n# EOF\n";
        assert_eq!(
            prometheus_text(open),
            "# HELP a_b_total Things.\n# TYPE a_b_total counter\na_b_total 3\n# HELP g A gauge.\n# TYPE g gauge\ng{x=\"1\"} 2\n"
        );
    }
}
