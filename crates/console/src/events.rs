//! The Events page's pure parts: the query (sensor, kind, time window, how many), the latest
//! events kept while the store's export streams past, and the NDJSON line (the one
//! `uplink events export` prints too).

use std::collections::BinaryHeap;

use uplink_store::StoredEvent;

use crate::form;

/// Events shown by default, and the most a page shows.
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;
/// The most lines one NDJSON download holds (`uplink events export` has no bound).
pub const MAX_EXPORT: usize = 100_000;

/// What the user asked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventQuery {
    pub sensor: Option<String>,
    pub kind: Option<String>,
    /// Unix milliseconds, inclusive.
    pub since: Option<i64>,
    /// Unix milliseconds, exclusive.
    pub until: Option<i64>,
    pub limit: usize,
    /// Why a field was ignored (shown on the page).
    pub notes: Vec<String>,
}

/// `2026-12-05T17:00`, `2026-12-05T17:00:30`, with or without `Z` (UTC), as Unix ms.
pub fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim().trim_end_matches('Z');
    let full = match s.len() {
        16 => format!("{s}:00Z"),
        19 => format!("{s}Z"),
        _ => return None,
    };
    uplink_fleet::parse_rfc3339(&full)
}

impl EventQuery {
    pub fn parse(query: &str) -> EventQuery {
        let p = form::pairs(query);
        let text = |k: &str| {
            form::get(&p, k)
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let mut q = EventQuery {
            sensor: text("sensor"),
            kind: text("kind"),
            limit: DEFAULT_LIMIT,
            ..EventQuery::default()
        };
        for (key, slot) in [("since", &mut q.since), ("until", &mut q.until)] {
            if let Some(v) = text(key) {
                match parse_time(&v) {
                    Some(t) => *slot = Some(t),
                    None => q.notes.push(format!(
                        "{key} {v:?} is not a time: use 2026-12-05T17:00 (UTC)"
                    )),
                }
            }
        }
        if let Some(v) = text("limit") {
            match v.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => q.limit = n,
                _ => q
                    .notes
                    .push(format!("limit {v:?} is not a number from 1 to {MAX_LIMIT}")),
            }
        }
        q
    }

    /// The store's filter (sensor and kind are filtered in the store).
    pub fn store_filter(&self) -> uplink_store::ExportFilter {
        uplink_store::ExportFilter {
            kind: self.kind.clone(),
            sensor_id: self.sensor.clone(),
        }
    }

    /// Whether `e` is in the time window.
    pub fn in_window(&self, e: &StoredEvent) -> bool {
        self.since.is_none_or(|t| e.received_at >= t)
            && self.until.is_none_or(|t| e.received_at < t)
    }

    /// This query as a query string (for the export link).
    pub fn to_query(&self) -> String {
        let mut parts = Vec::new();
        for (k, v) in [("sensor", &self.sensor), ("kind", &self.kind)] {
            if let Some(v) = v {
                parts.push(format!("{k}={}", form::encode(v)));
            }
        }
        for (k, v) in [("since", self.since), ("until", self.until)] {
            if let Some(t) = v {
                parts.push(format!(
                    "{k}={}",
                    form::encode(&uplink_fleet::rfc3339(t)[..19])
                ));
            }
        }
        parts.join("&")
    }
}

/// Keeps the `n` latest events (by reception, then sensor and seq) of a stream.
#[derive(Debug)]
pub struct Latest {
    n: usize,
    heap: BinaryHeap<std::cmp::Reverse<Ordered>>,
}

#[derive(Debug, PartialEq, Eq)]
struct Ordered(StoredEvent);

impl Ord for Ordered {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.0.received_at, &self.0.sensor_id, self.0.seq).cmp(&(
            o.0.received_at,
            &o.0.sensor_id,
            o.0.seq,
        ))
    }
}
impl PartialOrd for Ordered {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

impl Latest {
    pub fn new(n: usize) -> Latest {
        Latest {
            n,
            heap: BinaryHeap::new(),
        }
    }

    pub fn push(&mut self, e: StoredEvent) {
        self.heap.push(std::cmp::Reverse(Ordered(e)));
        if self.heap.len() > self.n {
            self.heap.pop();
        }
    }

    /// Newest first.
    pub fn into_newest_first(self) -> Vec<StoredEvent> {
        let mut v: Vec<StoredEvent> = self
            .heap
            .into_sorted_vec()
            .into_iter()
            .map(|r| r.0 .0)
            .collect();
        // `into_sorted_vec` of Reverse is newest first already.
        v.truncate(self.n);
        v
    }
}

/// One event as a line of NDJSON (no newline): what `uplink events export` prints.
pub fn ndjson_line(e: &StoredEvent) -> String {
    format!(
        "{{\"sensor_id\":{},\"seq\":{},\"kind\":{},\"received_at\":\"{}\",\"event\":{}}}",
        serde_json::Value::String(e.sensor_id.clone()),
        e.seq,
        serde_json::Value::String(e.kind.clone()),
        uplink_store::rfc3339_ms(e.received_at),
        e.body
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(sensor: &str, seq: u64, at: i64) -> StoredEvent {
        StoredEvent {
            sensor_id: sensor.into(),
            seq,
            kind: "k".into(),
            received_at: at,
            body: format!("{{\"n\":{seq}}}"),
        }
    }

    #[test]
    fn queries_and_windows() {
        let q = EventQuery::parse("sensor=s1&kind=&since=2026-01-01T00:00&until=nope&limit=5");
        assert_eq!(q.sensor.as_deref(), Some("s1"));
        assert_eq!(q.kind, None);
        assert_eq!(q.since, uplink_fleet::parse_rfc3339("2026-01-01T00:00:00Z"));
        assert_eq!(q.until, None);
        assert_eq!(q.limit, 5);
        assert_eq!(q.notes.len(), 1, "{:?}", q.notes);
        assert_eq!(EventQuery::parse("limit=0").limit, DEFAULT_LIMIT);
        assert_eq!(
            parse_time("2026-01-01T00:00:30Z"),
            uplink_fleet::parse_rfc3339("2026-01-01T00:00:30Z")
        );
        let t = q.since.unwrap();
        assert!(q.in_window(&ev("s1", 1, t)) && !q.in_window(&ev("s1", 1, t - 1)));
        let round = EventQuery::parse(&q.to_query());
        assert_eq!((round.sensor, round.since), (q.sensor.clone(), q.since));
    }

    #[test]
    fn the_latest_are_kept_newest_first() {
        let mut l = Latest::new(2);
        for (s, seq, at) in [("a", 1, 10), ("b", 1, 30), ("a", 2, 20), ("c", 1, 5)] {
            l.push(ev(s, seq, at));
        }
        let got: Vec<(String, u64)> = l
            .into_newest_first()
            .into_iter()
            .map(|e| (e.sensor_id, e.seq))
            .collect();
        assert_eq!(got, [("b".to_owned(), 1), ("a".to_owned(), 2)]);
        assert_eq!(
            ndjson_line(&ev("s\"1", 3, 0)),
            r#"{"sensor_id":"s\"1","seq":3,"kind":"k","received_at":"1970-01-01T00:00:00.000Z","event":{"n":3}}"#
        );
    }
}
