//! Each sensor's report history (issue #25, docs/console.md): one [`ReportPoint`] per sensor per
//! bucket of time, what the console's charts draw (backlog, events/s, upload latency, route
//! changes over 24 hours and 7 days).
//!
//! Both backends upsert a point keyed by sensor and bucket start as each report is stored (the
//! last report of a bucket wins; route changes inside a bucket are counted), and remove points
//! older than [`KEEP_MS`] in the same write, so the table stays bounded: 2,000 sensors × 288
//! five-minute buckets × 7 days. The rates and changes *between* buckets are derived when the
//! chart is drawn (`uplink-console`'s `chart` module), from consecutive points.
//!
//! What it does not do: keep history past 7 days, or anything but the report's numbers.

/// The default width of a bucket: 5 minutes.
pub const BUCKET_MS: i64 = 5 * 60 * 1000;

/// How long points are kept: 7 days.
pub const KEEP_MS: i64 = 7 * 24 * 3600 * 1000;

/// One sensor's last report in one bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportPoint {
    pub sensor_id: String,
    /// The bucket's start, Unix milliseconds (a multiple of the bucket width).
    pub bucket: i64,
    /// When the last report of the bucket was received (the service's clock, ms).
    pub at: i64,
    /// Events queued on the sensor.
    pub backlog: u64,
    /// Events the sensor's uploader delivered since it started (`None`: a sensor that does
    /// not report it). A smaller number than the previous point's is a restart.
    pub delivered: Option<u64>,
    /// Age of the oldest undelivered event, in seconds: how late the events being uploaded
    /// arrive (`None`: not reported).
    pub latency_secs: Option<u64>,
    /// The route of the bucket's first and last report (`DIRECT`, `PROXY host:port`, empty:
    /// none yet).
    pub first_route: String,
    pub route: String,
    /// Route changes between the bucket's reports (not counting the one from the previous
    /// bucket: see `first_route`).
    pub route_changes: u64,
}

impl ReportPoint {
    /// The point a heartbeat received at `received_at` makes, in buckets of `bucket_ms`.
    pub fn new(
        sensor_id: &str,
        received_at: i64,
        bucket_ms: i64,
        h: &uplink_protocol::heartbeat::Heartbeat,
    ) -> Self {
        let bucket_ms = bucket_ms.max(1);
        let route = h.route.clone().unwrap_or_default();
        ReportPoint {
            sensor_id: sensor_id.to_owned(),
            bucket: received_at.div_euclid(bucket_ms) * bucket_ms,
            at: received_at,
            backlog: h.queue.events,
            delivered: h.delivered,
            latency_secs: h.queue.oldest_secs,
            first_route: route.clone(),
            route,
            route_changes: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_point_lands_in_its_bucket() {
        let h = uplink_protocol::heartbeat::Heartbeat {
            route: Some("PROXY p:3128".into()),
            queue: uplink_protocol::heartbeat::QueueDepth {
                events: 7,
                bytes: 1,
                oldest_secs: Some(3),
            },
            delivered: Some(40),
            ..Default::default()
        };
        for (at, width, bucket) in [
            (0, BUCKET_MS, 0),
            (BUCKET_MS - 1, BUCKET_MS, 0),
            (BUCKET_MS, BUCKET_MS, BUCKET_MS),
            (2_500, 1_000, 2_000),
            (2_500, 0, 2_500),
        ] {
            let p = ReportPoint::new("s", at, width, &h);
            assert_eq!((p.bucket, p.at), (bucket, at), "{at} in {width}");
            assert_eq!(
                (p.backlog, p.delivered, p.latency_secs),
                (7, Some(40), Some(3))
            );
            assert_eq!(
                (p.first_route.as_str(), p.route.as_str()),
                ("PROXY p:3128", "PROXY p:3128")
            );
        }
        let none = ReportPoint::new("s", 1, BUCKET_MS, &Default::default());
        assert_eq!((none.route.as_str(), none.delivered), ("", None));
    }
}
