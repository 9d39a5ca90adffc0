//! The sensor page's charts (issue #25, docs/console.md): a sensor's report history
//! ([`uplink_store::ReportPoint`], one per bucket of time) as series, and a series as
//! server-rendered SVG: no script, no inline style (presentation attributes only), so the
//! Content-Security-Policy stays without `unsafe-inline`.
//!
//! Pure: the caller passes the points, the window and the bucket width. Rates and changes
//! between buckets are derived here from consecutive points: events/s from the difference of the
//! sensor's delivered counter (a smaller counter is a restart: no rate for that step), route
//! changes from the route of one bucket's first report against the previous bucket's last.
//! A bucket missing (the sensor was silent) breaks the line: a gap, not a slope.

use maud::{html, Markup};
use uplink_store::ReportPoint;

/// What a chart draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Series {
    /// Events queued on the sensor.
    Backlog,
    /// Events delivered per second.
    EventsPerSec,
    /// Age of the oldest undelivered event, in seconds.
    Latency,
    /// Route changes per bucket.
    RouteChanges,
}

impl Series {
    pub const ALL: [Series; 4] = [
        Series::Backlog,
        Series::EventsPerSec,
        Series::Latency,
        Series::RouteChanges,
    ];

    /// The `data-chart` attribute's value.
    pub fn key(self) -> &'static str {
        match self {
            Series::Backlog => "backlog",
            Series::EventsPerSec => "events_per_sec",
            Series::Latency => "latency",
            Series::RouteChanges => "route_changes",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Series::Backlog => "Backlog (events queued)",
            Series::EventsPerSec => "Events delivered per second",
            Series::Latency => "Upload latency (age of the oldest queued event, s)",
            Series::RouteChanges => "Route changes",
        }
    }
}

/// One sample: when (ms) and the value (`None`: a gap, the line breaks there).
pub type Sample = (i64, Option<f64>);

/// The samples of `which` from `points` (oldest first, as the store returns them). Two points
/// more than one bucket apart have a gap between them.
pub fn series(points: &[ReportPoint], which: Series, bucket_ms: i64) -> Vec<Sample> {
    let bucket_ms = bucket_ms.max(1);
    let mut out: Vec<Sample> = Vec::with_capacity(points.len());
    let mut prev: Option<&ReportPoint> = None;
    for p in points {
        let adjacent = prev.filter(|q| p.bucket - q.bucket <= bucket_ms);
        if prev.is_some() && adjacent.is_none() {
            out.push((p.at, None));
        }
        let v = match which {
            Series::Backlog => Some(p.backlog as f64),
            Series::Latency => p.latency_secs.map(|v| v as f64),
            Series::EventsPerSec => adjacent.and_then(|q| {
                let (a, b) = (q.delivered?, p.delivered?);
                let secs = (p.at - q.at) as f64 / 1000.0;
                (b >= a && secs > 0.0).then(|| (b - a) as f64 / secs)
            }),
            Series::RouteChanges => {
                let across = prev.is_some_and(|q| q.route != p.first_route);
                Some((p.route_changes + u64::from(across)) as f64)
            }
        };
        // A rate needs two adjacent points: the first of a run has none (no sample, no gap).
        if v.is_some() || which != Series::EventsPerSec {
            out.push((p.at, v));
        }
        prev = Some(p);
    }
    out
}

/// Width and height of the drawing, in SVG user units (it scales to the page's width).
const W: f64 = 320.0;
const H: f64 = 140.0;
/// Margins: left for the value labels, bottom for the time labels.
const LEFT: f64 = 40.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 24.0;

/// A value label: whole numbers as such, others with up to two decimals.
pub fn label(v: f64) -> String {
    if !v.is_finite() {
        return "0".into();
    }
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// "24 h", "7 d": how long before `to_ms` the window starts, for the axis.
fn span_label(ms: i64) -> String {
    let h = ms / 3_600_000;
    if h >= 48 && h % 24 == 0 {
        format!("{} d ago", h / 24)
    } else if h >= 1 {
        format!("{h} h ago")
    } else {
        format!("{} min ago", (ms / 60_000).max(1))
    }
}

/// One chart of `samples` over `[from_ms, to_ms]`: `<svg data-chart=KEY data-range=RANGE>` with
/// a title, the value axis (0 and the maximum, 1 when every value is 0), the time axis (the window's start and "now"),
/// a polyline per run of samples and a dot for a lone sample. No sample: says so.
pub fn svg(
    key: &str,
    title: &str,
    range: &str,
    from_ms: i64,
    to_ms: i64,
    samples: &[Sample],
) -> Markup {
    let span = (to_ms - from_ms).max(1) as f64;
    let shown: Vec<Sample> = samples
        .iter()
        .copied()
        .filter(|(t, _)| *t >= from_ms && *t <= to_ms)
        .collect();
    let max = shown
        .iter()
        .filter_map(|(_, v)| *v)
        .filter(|v| v.is_finite())
        .fold(0.0_f64, f64::max);
    let top = if max > 0.0 { max } else { 1.0 };
    let x = |t: i64| LEFT + (t - from_ms) as f64 / span * (W - LEFT - RIGHT);
    let y = |v: f64| TOP + (1.0 - (v / top).clamp(0.0, 1.0)) * (H - TOP - BOTTOM);
    // Runs of samples between gaps.
    let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
    for (t, v) in &shown {
        match v.filter(|v| v.is_finite()) {
            Some(v) => runs
                .last_mut()
                .unwrap_or(&mut Vec::new())
                .push((x(*t), y(v))),
            None => runs.push(Vec::new()),
        }
    }
    runs.retain(|r| !r.is_empty());
    let count = runs.iter().map(Vec::len).sum::<usize>();
    let id = format!("chart-{key}-{range}");
    let fmt = |r: &[(f64, f64)]| {
        r.iter()
            .map(|(a, b)| format!("{a:.1},{b:.1}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    html! {
        figure.chart {
            svg id=(id) data-chart=(key) data-range=(range) data-points=(count)
                xmlns="http://www.w3.org/2000/svg" viewBox=(format!("0 0 {W} {H}"))
                role="img" aria-labelledby=(format!("{id}-title")) width="100%" {
                title id=(format!("{id}-title")) { (title) " — " (range) }
                line x1=(LEFT) y1=(TOP) x2=(LEFT) y2=(H - BOTTOM) stroke="#555" stroke-width="1" {}
                line x1=(LEFT) y1=(H - BOTTOM) x2=(W - RIGHT) y2=(H - BOTTOM) stroke="#555" stroke-width="1" {}
                text.axis x=(LEFT - 4.0) y=(TOP + 9.0) text-anchor="end" font-size="12" fill="#222" data-axis="max" { (label(top)) }
                text.axis x=(LEFT - 4.0) y=(H - BOTTOM) text-anchor="end" font-size="12" fill="#222" data-axis="zero" { "0" }
                text.axis x=(LEFT) y=(H - 6.0) text-anchor="start" font-size="12" fill="#222" data-axis="from" { (span_label(to_ms - from_ms)) }
                text.axis x=(W - RIGHT) y=(H - 6.0) text-anchor="end" font-size="12" fill="#222" data-axis="to" { "now" }
                @if count == 0 {
                    text x=(W / 2.0) y=(H / 2.0) text-anchor="middle" font-size="12" fill="#222" data-empty="true" { "No data in this period." }
                }
                @for r in &runs {
                    @if r.len() == 1 {
                        circle cx=(format!("{:.1}", r[0].0)) cy=(format!("{:.1}", r[0].1)) r="2.5" fill="#1d4ed8" {}
                    } @else {
                        polyline points=(fmt(r)) fill="none" stroke="#1d4ed8" stroke-width="1.5" {}
                    }
                }
            }
            figcaption { (title) " — " (range) }
        }
    }
}

/// The sensor page's charts: each series over 24 hours and over 7 days, ending at `now_ms`.
pub fn charts(points: &[ReportPoint], bucket_ms: i64, now_ms: i64) -> Markup {
    const DAY: i64 = 24 * 3600 * 1000;
    html! {
        @for (range, span) in [("24h", DAY), ("7d", 7 * DAY)] {
            h3 { @if range == "24h" { "Last 24 hours" } @else { "Last 7 days" } }
            div.charts data-range=(range) {
                @for s in Series::ALL {
                    (svg(s.key(), s.title(), range, now_ms - span, now_ms, &series(points, s, bucket_ms)))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(bucket: i64, delivered: Option<u64>, route: &str) -> ReportPoint {
        ReportPoint {
            sensor_id: "s".into(),
            bucket,
            at: bucket + 10,
            backlog: bucket as u64 / 100,
            delivered,
            latency_secs: Some(2),
            first_route: route.into(),
            route: route.into(),
            route_changes: 0,
        }
    }

    #[test]
    fn series_derive_rates_changes_and_gaps() {
        let mut changed = point(300, Some(50), "DIRECT");
        changed.route_changes = 2;
        let pts = vec![
            point(0, Some(0), "PROXY p:1"),
            point(100, Some(20), "PROXY p:1"),
            point(200, Some(10), "DIRECT"), // a restart: no rate
            changed,
            // a bucket missing: a gap
            point(500, Some(60), "DIRECT"),
        ];
        type Case = (Series, Vec<Sample>);
        let cases: Vec<Case> = vec![
            (
                Series::Backlog,
                vec![
                    (10, Some(0.0)),
                    (110, Some(1.0)),
                    (210, Some(2.0)),
                    (310, Some(3.0)),
                    (510, None),
                    (510, Some(5.0)),
                ],
            ),
            (
                Series::EventsPerSec,
                // 20 events in 0.1 s; 40 in 0.1 s; after the gap, nothing until two adjacent.
                vec![(110, Some(200.0)), (310, Some(400.0)), (510, None)],
            ),
            (
                Series::RouteChanges,
                vec![
                    (10, Some(0.0)),
                    (110, Some(0.0)),
                    (210, Some(1.0)),
                    (310, Some(2.0)),
                    (510, None),
                    (510, Some(0.0)),
                ],
            ),
        ];
        for (s, want) in cases {
            assert_eq!(series(&pts, s, 100), want, "{s:?}");
        }
        assert_eq!(series(&[], Series::Latency, 100), vec![]);
        let unknown = ReportPoint {
            latency_secs: None,
            delivered: None,
            ..point(0, None, "")
        };
        assert_eq!(
            series(std::slice::from_ref(&unknown), Series::Latency, 100),
            vec![(10, None)]
        );
        assert_eq!(
            series(
                &[
                    unknown.clone(),
                    ReportPoint {
                        bucket: 100,
                        at: 110,
                        ..unknown
                    }
                ],
                Series::EventsPerSec,
                100
            ),
            vec![]
        );
    }

    #[test]
    fn labels() {
        for (v, want) in [
            (0.0, "0"),
            (12.0, "12"),
            (0.5, "0.5"),
            (1.256, "1.26"),
            (f64::NAN, "0"),
        ] {
            assert_eq!(label(v), want, "{v}");
        }
        for (ms, want) in [
            (24 * 3_600_000, "24 h ago"),
            (7 * 24 * 3_600_000, "7 d ago"),
            (60_000, "1 min ago"),
        ] {
            assert_eq!(span_label(ms), want);
        }
    }

    #[test]
    fn svg_draws_what_it_has() {
        let count = |h: &str, what: &str| h.matches(what).count();
        // (samples, polylines, circles, empty notice, max label)
        type Case = (Vec<Sample>, usize, usize, bool, &'static str);
        let cases: Vec<Case> = vec![
            (vec![], 0, 0, true, ">1<"),
            (vec![(500, Some(3.0))], 0, 1, false, ">3<"),
            (vec![(100, Some(1.0)), (200, Some(4.0))], 1, 0, false, ">4<"),
            // A gap: two runs (a line, then a dot).
            (
                vec![
                    (100, Some(1.0)),
                    (200, Some(2.0)),
                    (300, None),
                    (400, Some(7.5)),
                ],
                1,
                1,
                false,
                ">7.5<",
            ),
            // Outside the window: not drawn.
            (vec![(-5, Some(9.0)), (5_000, Some(9.0))], 0, 0, true, ">1<"),
            (vec![(100, None)], 0, 0, true, ">1<"),
        ];
        for (samples, lines, dots, empty, max) in cases {
            let h = svg("backlog", "Backlog", "24h", 0, 1000, &samples).into_string();
            assert!(h.contains(r#"data-chart="backlog""#), "{h}");
            assert!(h.contains(r#"data-range="24h""#), "{h}");
            assert_eq!(count(&h, "<polyline"), lines, "{samples:?}: {h}");
            assert_eq!(count(&h, "<circle"), dots, "{samples:?}: {h}");
            assert_eq!(h.contains("data-empty"), empty, "{samples:?}: {h}");
            assert!(h.contains(max), "{samples:?}: {h}");
            assert!(h.contains(">now<") && h.contains("min ago"), "{h}");
            assert!(!h.contains("style"), "no inline style: {h}");
        }
        let h = svg("x\"><script>", "<b>&", "24h", 0, 1000, &[]).into_string();
        assert!(!h.contains("<script>") && !h.contains("<b>"), "{h}");
        assert!(h.contains("&lt;b&gt;&amp;"), "{h}");
    }

    #[test]
    fn the_page_has_four_charts_per_range() {
        let day = 24 * 3600 * 1000;
        let h = charts(
            &[point(day * 10 - 1000, Some(1), "DIRECT")],
            300_000,
            day * 10,
        )
        .into_string();
        for s in Series::ALL {
            for r in ["24h", "7d"] {
                assert!(h.contains(&format!(r#"id="chart-{}-{r}""#, s.key())), "{h}");
            }
        }
        assert_eq!(h.matches("<svg").count(), 8);
    }
}
