//! The sensors table (`/sensors`): the rows of `uplink fleet list` (built from the same
//! `uplink_store::fleet::sensor_json`), filtered by state, health and text, sorted, cut into
//! pages, with the columns the user chose, or as CSV. Pure.

use serde_json::Value;

use crate::form;

/// A column: its query key and heading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub key: &'static str,
    pub title: &'static str,
}

/// Every column, in order; the name is always shown.
pub const COLUMNS: &[Column] = &[
    Column {
        key: "name",
        title: "Name",
    },
    Column {
        key: "host",
        title: "Host",
    },
    Column {
        key: "version",
        title: "Version",
    },
    Column {
        key: "route",
        title: "Route",
    },
    Column {
        key: "state",
        title: "Connectivity",
    },
    Column {
        key: "health",
        title: "Health",
    },
    Column {
        key: "last_seen",
        title: "Last seen",
    },
    Column {
        key: "backlog",
        title: "Backlog",
    },
    Column {
        key: "cert_expiry",
        title: "Certificate expires",
    },
    Column {
        key: "lifecycle",
        title: "Lifecycle",
    },
    Column {
        key: "issues",
        title: "Open issues",
    },
];

/// The connectivity states and healths a filter may name.
pub const STATES: &[&str] = &["online", "late", "disconnected", "inactive"];
pub const HEALTHS: &[&str] = &["healthy", "low", "medium", "high"];

/// Rows per page by default, and the most.
pub const PER_PAGE: usize = 50;
pub const MAX_PER_PAGE: usize = 500;

/// One row: the sensor's id, each column's text, and the sort keys.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub sensor_id: String,
    pub state: String,
    pub health: String,
    pub lifecycle: String,
    /// Text per column, in [`COLUMNS`] order.
    pub cells: Vec<String>,
    backlog: Option<u64>,
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

impl Row {
    /// From `sensor_json`'s value and the sensor's last report (for its certificate's expiry).
    pub fn new(v: &Value, report: Option<&str>) -> Row {
        let report: Value = report
            .and_then(|r| serde_json::from_str(r).ok())
            .unwrap_or(Value::Null);
        let backlog = v["queue"]["events"].as_u64();
        let cells = COLUMNS
            .iter()
            .map(|c| match c.key {
                "name" => text(&v["name"]),
                "host" => text(&v["hostname"]),
                "version" => text(&v["version"]),
                "route" => text(&v["route"]),
                "state" => text(&v["state"]),
                "health" => text(&v["health"]),
                "last_seen" => text(&v["last_seen"]),
                "backlog" => backlog.map(|b| b.to_string()).unwrap_or_default(),
                "cert_expiry" => text(&report["cert_not_after"]),
                "lifecycle" => text(&v["lifecycle"]),
                "issues" => text(&v["open_issues"]),
                _ => String::new(),
            })
            .collect();
        Row {
            sensor_id: text(&v["sensor_id"]),
            state: text(&v["state"]),
            health: text(&v["health"]),
            lifecycle: text(&v["lifecycle"]),
            cells,
            backlog,
        }
    }

    /// The text of column `key`.
    pub fn cell(&self, key: &str) -> &str {
        COLUMNS
            .iter()
            .position(|c| c.key == key)
            .and_then(|i| self.cells.get(i))
            .map_or("", String::as_str)
    }
}

/// What the user asked of the table (the query string).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub state: Option<String>,
    pub health: Option<String>,
    /// Text searched (case-insensitively) in the id, name, host, version and route.
    pub text: String,
    pub sort: &'static str,
    pub desc: bool,
    /// The columns shown (keys of [`COLUMNS`], in their order).
    pub columns: Vec<&'static str>,
    /// 1-based.
    pub page: usize,
    pub per_page: usize,
    /// Decommissioned sensors too.
    pub all: bool,
}

impl Default for Query {
    fn default() -> Self {
        Query {
            state: None,
            health: None,
            text: String::new(),
            sort: "name",
            desc: false,
            columns: COLUMNS.iter().map(|c| c.key).collect(),
            page: 1,
            per_page: PER_PAGE,
            all: false,
        }
    }
}

impl Query {
    /// From a query string; what is not understood is ignored (a bookmark from another version
    /// still opens).
    pub fn parse(query: &str) -> Query {
        let pairs = form::pairs(query);
        let mut q = Query::default();
        let known = |v: &str, list: &[&str]| list.contains(&v).then(|| v.to_owned());
        if let Some(s) = form::get(&pairs, "state") {
            q.state = known(s, STATES);
        }
        if let Some(h) = form::get(&pairs, "health") {
            q.health = known(h, HEALTHS);
        }
        q.text = form::get(&pairs, "q").unwrap_or("").trim().to_owned();
        if let Some(c) = form::get(&pairs, "sort").and_then(|s| COLUMNS.iter().find(|c| c.key == s))
        {
            q.sort = c.key;
        }
        q.desc = form::get(&pairs, "dir") == Some("desc");
        let cols: Vec<&'static str> = COLUMNS
            .iter()
            .map(|c| c.key)
            .filter(|k| pairs.iter().any(|(n, v)| n == "col" && v == k))
            .collect();
        if !cols.is_empty() {
            q.columns = cols;
        }
        if !q.columns.contains(&"name") {
            q.columns.insert(0, "name");
        }
        q.page = form::get(&pairs, "page")
            .and_then(|p| p.parse().ok())
            .filter(|p| *p >= 1)
            .unwrap_or(1);
        q.per_page = form::get(&pairs, "per_page")
            .and_then(|p| p.parse().ok())
            .filter(|p| (1..=MAX_PER_PAGE).contains(p))
            .unwrap_or(PER_PAGE);
        q.all = form::get(&pairs, "all").is_some_and(|v| v == "1" || v == "on" || v == "true");
        q
    }

    /// This query as a query string, with `page` replaced (for links).
    pub fn to_query(&self, page: usize) -> String {
        let mut parts = Vec::new();
        if let Some(s) = &self.state {
            parts.push(format!("state={}", form::encode(s)));
        }
        if let Some(h) = &self.health {
            parts.push(format!("health={}", form::encode(h)));
        }
        if !self.text.is_empty() {
            parts.push(format!("q={}", form::encode(&self.text)));
        }
        parts.push(format!("sort={}", self.sort));
        if self.desc {
            parts.push("dir=desc".into());
        }
        if self.columns.len() != COLUMNS.len() {
            for c in &self.columns {
                parts.push(format!("col={c}"));
            }
        }
        if self.per_page != PER_PAGE {
            parts.push(format!("per_page={}", self.per_page));
        }
        if self.all {
            parts.push("all=1".into());
        }
        parts.push(format!("page={page}"));
        parts.join("&")
    }

    /// Whether `row` passes the filters.
    pub fn matches(&self, row: &Row) -> bool {
        if !self.all && row.lifecycle == "decommissioned" {
            return false;
        }
        if self.state.as_ref().is_some_and(|s| *s != row.state) {
            return false;
        }
        if self.health.as_ref().is_some_and(|h| *h != row.health) {
            return false;
        }
        if self.text.is_empty() {
            return true;
        }
        let needle = self.text.to_lowercase();
        std::iter::once(row.sensor_id.as_str())
            .chain(
                ["name", "host", "version", "route"]
                    .iter()
                    .map(|k| row.cell(k)),
            )
            .any(|h| h.to_lowercase().contains(&needle))
    }

    /// The rows that pass, sorted (ties by sensor id).
    pub fn select(&self, rows: Vec<Row>) -> Vec<Row> {
        let mut rows: Vec<Row> = rows.into_iter().filter(|r| self.matches(r)).collect();
        let key = self.sort;
        rows.sort_by(|a, b| {
            let o = if key == "backlog" {
                a.backlog.cmp(&b.backlog)
            } else {
                a.cell(key).cmp(b.cell(key))
            };
            let o = if self.desc { o.reverse() } else { o };
            o.then_with(|| a.sensor_id.cmp(&b.sensor_id))
        });
        rows
    }
}

/// One page of `rows`: the rows, the page shown (clamped) and the number of pages (at least 1).
pub fn page(rows: &[Row], page: usize, per_page: usize) -> (&[Row], usize, usize) {
    let per_page = per_page.max(1);
    let pages = rows.len().div_ceil(per_page).max(1);
    let page = page.clamp(1, pages);
    let start = (page - 1) * per_page;
    let end = (start + per_page).min(rows.len());
    (&rows[start.min(end)..end], page, pages)
}

/// `rows` as CSV (RFC 4180) with the chosen columns, the sensor id first. Cells that a
/// spreadsheet would run as a formula are prefixed with `'`.
pub fn csv(rows: &[Row], columns: &[&str]) -> String {
    fn field(s: &str) -> String {
        let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
            format!("'{s}")
        } else {
            s.to_owned()
        };
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s
        }
    }
    let mut out = String::from("sensor_id");
    for c in columns {
        out.push(',');
        out.push_str(c);
    }
    out.push_str("\r\n");
    for r in rows {
        out.push_str(&field(&r.sensor_id));
        for c in columns {
            out.push(',');
            out.push_str(&field(r.cell(c)));
        }
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(id: &str, name: &str, state: &str, health: &str, backlog: u64) -> Row {
        Row::new(
            &json!({
                "sensor_id": id, "name": name, "hostname": format!("{name}.corp"),
                "version": "0.1.0", "state": state, "health": health,
                "lifecycle": "active", "last_seen": "2026-01-01T00:00:00Z",
                "route": "PROXY p:3128", "queue": {"events": backlog}, "open_issues": 0
            }),
            Some(r#"{"cert_not_after":"2027-01-01T00:00:00Z"}"#),
        )
    }

    fn ids(rows: &[Row]) -> Vec<&str> {
        rows.iter().map(|r| r.sensor_id.as_str()).collect()
    }

    #[test]
    fn rows_take_the_fleet_list_fields() {
        let r = row("s1", "web", "online", "healthy", 7);
        assert_eq!(r.cell("host"), "web.corp");
        assert_eq!(r.cell("backlog"), "7");
        assert_eq!(r.cell("cert_expiry"), "2027-01-01T00:00:00Z");
        assert_eq!(r.cell("state"), "online");
        assert_eq!(r.cell("nope"), "");
        let bare = Row::new(&json!({"sensor_id": "s2", "name": "x", "queue": {}}), None);
        assert_eq!((bare.cell("backlog"), bare.cell("cert_expiry")), ("", ""));
    }

    #[test]
    fn queries_filter_sort_and_choose_columns() {
        let rows = vec![
            row("s1", "web", "online", "healthy", 7),
            row("s2", "db", "disconnected", "high", 100),
            row("s3", "mail", "online", "medium", 0),
        ];
        // (query, ids)
        let cases: &[(&str, &[&str])] = &[
            ("", &["s2", "s3", "s1"]),
            ("state=online", &["s3", "s1"]),
            ("state=bogus", &["s2", "s3", "s1"]),
            ("health=high", &["s2"]),
            ("q=WEB", &["s1"]),
            ("q=s3", &["s3"]),
            ("q=corp&sort=backlog", &["s3", "s1", "s2"]),
            ("sort=backlog&dir=desc", &["s2", "s1", "s3"]),
            ("sort=nope", &["s2", "s3", "s1"]),
        ];
        for (qs, want) in cases {
            let q = Query::parse(qs);
            assert_eq!(ids(&q.select(rows.clone())), *want, "{qs}");
        }
        let q = Query::parse("col=health&col=host&col=bogus");
        assert_eq!(q.columns, vec!["name", "host", "health"]);
        assert_eq!(Query::parse("").columns.len(), COLUMNS.len());
        let mut decom = row("s4", "old", "inactive", "healthy", 0);
        decom.lifecycle = "decommissioned".into();
        assert!(!Query::parse("").matches(&decom));
        assert!(Query::parse("all=1").matches(&decom));
        // A query survives its own links.
        for qs in [
            "state=late&q=a%20b&sort=host&dir=desc&col=host&per_page=5&all=1",
            "",
        ] {
            let q = Query::parse(qs);
            assert_eq!(Query::parse(&q.to_query(q.page)), q, "{qs}");
        }
        assert_eq!(Query::parse("page=0").page, 1);
        assert_eq!(Query::parse("per_page=100000").per_page, PER_PAGE);
    }

    #[test]
    fn pages_cover_every_row_once() {
        let rows: Vec<Row> = (0..5)
            .map(|i| row(&format!("s{i}"), "n", "online", "healthy", 0))
            .collect();
        let (p, n, of) = page(&rows, 1, 2);
        assert_eq!((ids(p), n, of), (vec!["s0", "s1"], 1, 3));
        let (p, n, _) = page(&rows, 3, 2);
        assert_eq!((ids(p), n), (vec!["s4"], 3));
        let (p, n, _) = page(&rows, 9, 2);
        assert_eq!((ids(p), n), (vec!["s4"], 3), "clamped to the last page");
        let (p, n, of) = page(&[], 1, 2);
        assert_eq!((p.len(), n, of), (0, 1, 1));
    }

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        let mut r = row("s1", "a,\"b\"", "online", "healthy", 1);
        r.cells[1] = "=cmd()".into();
        let out = csv(&[r], &["name", "host", "backlog"]);
        assert_eq!(
            out,
            "sensor_id,name,host,backlog\r\ns1,\"a,\"\"b\"\"\",'=cmd(),1\r\n"
        );
    }
}
