//! The console's pages as HTML (maud: escaped by default, compiled into the binary). Each takes
//! what the service read from the store and renders it; none does I/O. The markup works without
//! JavaScript (forms post, links navigate); the one script only refreshes the sensors table.

use maud::{html, Markup, PreEscaped, DOCTYPE};
use serde_json::Value;

use crate::sensors::{Query, Row, COLUMNS, HEALTHS, STATES};
use crate::session::CSRF_FIELD;

/// Who is looking, for the header and the forms.
#[derive(Debug, Clone)]
pub struct Viewer<'a> {
    pub workspace: &'a str,
    pub user: &'a str,
    /// Admins act; viewers only look.
    pub admin: bool,
    pub csrf: &'a str,
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

fn csrf_input(csrf: &str) -> Markup {
    html! { input type="hidden" name=(CSRF_FIELD) value=(csrf); }
}

/// The page around `body`.
pub fn layout(title: &str, viewer: Option<&Viewer<'_>>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · uplink console" }
                link rel="stylesheet" href="/static/console.css";
                script src="/static/console.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header {
                    span.brand { "uplink" }
                    @if let Some(v) = viewer {
                        nav aria-label="Main" {
                            a href="/sensors" { "Sensors" }
                            a href="/issues" { "Issues" }
                            a href="/events" { "Events" }
                            a href="/deploy" { "Deploy" }
                            a href="/settings" { "Settings" }
                        }
                        div.who {
                            span { (v.user) " · " (v.workspace) " · " (if v.admin { "admin" } else { "viewer" }) }
                            form method="post" action="/logout" {
                                (csrf_input(v.csrf))
                                button type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main id="main" tabindex="-1" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// The sign-in page of `workspace`; `error` says why the last attempt failed.
pub fn login(workspace: &str, csrf: &str, error: Option<&str>) -> Markup {
    layout(
        "Sign in",
        None,
        html! {
            p { "Workspace " strong { (workspace) } }
            @if let Some(e) = error {
                p.error role="alert" id="login-error" { (e) }
            }
            form.login method="post" action="/login" {
                (csrf_input(csrf))
                label for="username" { "User name" }
                input id="username" name="username" type="text" autocomplete="username" required autofocus;
                label for="password" { "Password" }
                input id="password" name="password" type="password" autocomplete="current-password" required;
                button type="submit" { "Sign in" }
            }
        },
    )
}

/// A page that only says something (a refusal, a missing sensor, a done action).
pub fn message(title: &str, viewer: Option<&Viewer<'_>>, text: &str) -> Markup {
    layout(
        title,
        viewer,
        html! {
            p role="alert" { (text) }
            p { a href="/sensors" { "Back to the sensors" } }
        },
    )
}

/// The sensors table: `rows` is the page shown, `total` how many passed the filters.
pub fn sensors(
    viewer: &Viewer<'_>,
    q: &Query,
    rows: &[Row],
    page: usize,
    pages: usize,
    total: usize,
) -> Markup {
    let shown: Vec<_> = COLUMNS
        .iter()
        .filter(|c| q.columns.contains(&c.key))
        .collect();
    let sort_link = |key: &str| {
        let mut q2 = q.clone();
        q2.desc = q.sort == key && !q.desc;
        q2.sort = COLUMNS
            .iter()
            .find(|c| c.key == key)
            .map_or("name", |c| c.key);
        format!("/sensors?{}", q2.to_query(1))
    };
    let csv_link = format!("/sensors.csv?{}", q.to_query(1));
    layout(
        "Sensors",
        Some(viewer),
        html! {
            form.filters method="get" action="/sensors" role="search" {
                label for="f-state" { "Connectivity" }
                select id="f-state" name="state" {
                    option value="" { "any" }
                    @for s in STATES { option value=(s) selected[q.state.as_deref() == Some(*s)] { (s) } }
                }
                label for="f-health" { "Health" }
                select id="f-health" name="health" {
                    option value="" { "any" }
                    @for h in HEALTHS { option value=(h) selected[q.health.as_deref() == Some(*h)] { (h) } }
                }
                label for="f-q" { "Search" }
                input id="f-q" type="search" name="q" value=(q.text) placeholder="name, host, route…";
                input type="hidden" name="sort" value=(q.sort);
                @if q.desc { input type="hidden" name="dir" value="desc"; }
                details {
                    summary { "Columns" }
                    fieldset {
                        legend { "Columns shown" }
                        @for c in COLUMNS {
                            label.check {
                                input type="checkbox" name="col" value=(c.key) checked[q.columns.contains(&c.key)] disabled[c.key == "name"];
                                " " (c.title)
                            }
                        }
                    }
                }
                label.check {
                    input type="checkbox" name="all" value="1" checked[q.all];
                    " decommissioned too"
                }
                button type="submit" { "Apply" }
                a href=(csv_link) download="sensors.csv" { "Export CSV" }
            }
            p id="count" aria-live="polite" { (total) " sensors" @if pages > 1 { ", page " (page) " of " (pages) } }
            div.scroll {
                table id="sensors" data-refresh="15" {
                    caption.visually-hidden { "Sensors of workspace " (viewer.workspace) }
                    thead { tr {
                        @for c in &shown {
                            th scope="col" aria-sort=(if q.sort == c.key { if q.desc { "descending" } else { "ascending" } } else { "none" }) {
                                a href=(sort_link(c.key)) { (c.title) }
                            }
                        }
                    } }
                    tbody {
                        @for r in rows {
                            tr data-sensor-id=(r.sensor_id) data-state=(r.state) data-health=(r.health) {
                                @for c in &shown {
                                    @if c.key == "name" {
                                        th scope="row" { a href=(format!("/sensors/{}", crate::form::encode(&r.sensor_id))) { (r.cell("name")) } }
                                    } @else {
                                        td class=(format!("c-{} v-{}", c.key, r.cell(c.key))) { (r.cell(c.key)) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if pages > 1 {
                nav.pages aria-label="Pages" {
                    @if page > 1 { a rel="prev" href=(format!("/sensors?{}", q.to_query(page - 1))) { "Previous" } }
                    @if page < pages { a rel="next" href=(format!("/sensors?{}", q.to_query(page + 1))) { "Next" } }
                }
            }
        },
    )
}

/// One sensor: `v` is `sensor_detail_json`'s value; `check` the `uplink check` command line;
/// `charts` its report history drawn ([`crate::chart::charts`]).
pub fn sensor(viewer: &Viewer<'_>, v: &Value, check: &str, charts: &Markup) -> Markup {
    let id = text(&v["sensor_id"]);
    let base = format!("/sensors/{}", crate::form::encode(&id));
    let issues: Vec<&Value> = v["issues"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let open: Vec<&&Value> = issues.iter().filter(|i| i["state"] != "closed").collect();
    let closed: Vec<&&Value> = issues.iter().filter(|i| i["state"] == "closed").collect();
    let revoked = v["lifecycle"] != "active";
    layout(
        &format!("Sensor {}", text(&v["name"])),
        Some(viewer),
        html! {
            dl.details id="details" data-sensor-id=(id) data-state=(text(&v["state"])) {
                @for (k, label) in [("sensor_id", "Id"), ("hostname", "Host"), ("version", "Version"), ("state", "Connectivity"), ("health", "Health"), ("lifecycle", "Lifecycle"), ("last_seen", "Last seen"), ("route", "Route"), ("report_received_at", "Last report")] {
                    dt { (label) } dd data-field=(k) { (text(&v[k])) }
                }
                dt { "Backlog" } dd data-field="backlog" { (text(&v["queue"]["events"])) " events" }
                dt { "Certificate expires" } dd data-field="cert_expiry" { (text(&v["report"]["cert_not_after"])) }
                @if revoked {
                    dt { "Revoked" } dd { (text(&v["revoked_at"])) ": " (text(&v["revoke_reason"])) }
                }
            }
            h2 { "Test its route" }
            p { "On the sensor's host:" }
            pre id="check-command" { code { (check) } }
            @if viewer.admin {
                h2 { "Lifecycle" }
                form.act method="post" action=(format!("{base}/revoke")) {
                    (csrf_input(viewer.csrf))
                    label for="revoke-reason" { "Reason" }
                    input id="revoke-reason" name="reason" required placeholder="lost laptop";
                    button id="revoke" name="action" value="revoke" type="submit" { "Revoke" }
                    button id="decommission" name="action" value="decommission" type="submit" { "Decommission" }
                    p.hint { "Revoking refuses its certificate at once on every replica; decommissioning also hides it from the list. Its events stay until retention removes them." }
                }
            }
            h2 { "Open issues (" (open.len()) ")" }
            (issue_list(viewer, &open))
            h2 { "Closed issues (" (closed.len()) ")" }
            (issue_list(viewer, &closed))
            h2 { "Charts" }
            section id="charts" aria-label="Charts" { (charts) }
            h2 { "Outage log" }
            @let outages = v["outages"].as_array().cloned().unwrap_or_default();
            @if outages.is_empty() { p { "No outage reported." } } @else {
                div.scroll { table id="outages" {
                    thead { tr { th scope="col" { "Start" } th scope="col" { "End" } th scope="col" { "Codes" } th scope="col" { "Proxy" } th scope="col" { "Failures" } } }
                    tbody { @for o in &outages { tr {
                        td { (text(&o["start"])) } td { (text(&o["end"])) }
                        td { (o["codes"].as_array().map(|c| c.iter().map(text).collect::<Vec<_>>().join(", ")).unwrap_or_default()) }
                        td { (text(&o["proxy"])) } td { (text(&o["failures"])) }
                    } } }
                } }
            }
        },
    )
}

fn issue_list(viewer: &Viewer<'_>, issues: &[&&Value]) -> Markup {
    html! {
        @if issues.is_empty() { p { "None." } } @else {
            ul.issues {
                @for i in issues {
                    @let id = text(&i["issue_id"]);
                    li.issue data-issue-id=(id) data-kind=(text(&i["kind"])) data-state=(text(&i["state"])) {
                        p { strong { (text(&i["kind"])) } " · " (text(&i["severity"])) " · " (text(&i["state"]))
                            " · opened " (text(&i["opened_at"])) }
                        p { (text(&i["description"])) }
                        p.fix { "Fix: " (text(&i["fix"])) }
                        @if i["state"] == "suppressed" {
                            p { "Suppressed until " (text(&i["suppressed_until"])) " by " (text(&i["suppressed_by"])) ": " (text(&i["suppress_reason"])) }
                        }
                        @if viewer.admin && i["state"] == "open" {
                            form.act method="post" action=(format!("/issues/{}/suppress", crate::form::encode(&id))) {
                                (csrf_input(viewer.csrf))
                                label for=(format!("reason-{id}")) { "Reason" }
                                input id=(format!("reason-{id}")) name="reason" required placeholder="known, ticket 123";
                                label for=(format!("days-{id}")) { "Days" }
                                input id=(format!("days-{id}")) name="days" type="number" min="1" max="3650" value="7" required;
                                button type="submit" { "Suppress" }
                            }
                        }
                        @if viewer.admin && i["state"] == "suppressed" {
                            form.act method="post" action=(format!("/issues/{}/unsuppress", crate::form::encode(&id))) {
                                (csrf_input(viewer.csrf))
                                button type="submit" { "Unsuppress" }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Which issues the issues page shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IssueFilter {
    /// `open`, `suppressed`, `closed`, or all (`None`).
    pub state: Option<String>,
    /// One sensor's only.
    pub sensor: Option<String>,
}

impl IssueFilter {
    /// From the query string (unknown states are ignored).
    pub fn parse(query: &str) -> IssueFilter {
        let p = crate::form::pairs(query);
        IssueFilter {
            state: crate::form::get(&p, "state")
                .filter(|s| ["open", "suppressed", "closed"].contains(s))
                .map(str::to_owned),
            sensor: crate::form::get(&p, "sensor")
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
        }
    }

    /// Whether `issue` (`issue_json`'s value) passes.
    pub fn matches(&self, issue: &Value) -> bool {
        self.state
            .as_ref()
            .is_none_or(|s| issue["state"] == s.as_str())
            && self
                .sensor
                .as_ref()
                .is_none_or(|s| issue["sensor_id"] == s.as_str())
    }
}

/// The health issues of the workspace (`issue_json` values), as `filter` selects them.
pub fn issues(viewer: &Viewer<'_>, all: &[Value], filter: &IssueFilter) -> Markup {
    let shown: Vec<&Value> = all.iter().filter(|i| filter.matches(i)).collect();
    let refs: Vec<&&Value> = shown.iter().collect();
    layout(
        "Health issues",
        Some(viewer),
        html! {
            form.filters method="get" action="/issues" role="search" {
                label for="i-state" { "State" }
                select id="i-state" name="state" {
                    option value="" { "any" }
                    @for s in ["open", "suppressed", "closed"] {
                        option value=(s) selected[filter.state.as_deref() == Some(s)] { (s) }
                    }
                }
                label for="i-sensor" { "Sensor id" }
                input id="i-sensor" name="sensor" value=(filter.sensor.as_deref().unwrap_or(""));
                button type="submit" { "Apply" }
            }
            p id="count" { (shown.len()) " of " (all.len()) " issues" }
            (issue_list(viewer, &refs))
        },
    )
}

/// What the Deploy page shows.
#[derive(Debug, Clone)]
pub struct DeployView<'a> {
    /// The access key (admins only; `None` for viewers or when the store has none).
    pub access_key: Option<&'a str>,
    pub bundle_file: &'a str,
    pub form: &'a crate::deploy::InstallForm,
    pub install: &'a str,
    pub ping_url: &'a str,
    pub allowlist: &'a [(&'static str, String)],
    /// Set right after a regeneration.
    pub regenerated: bool,
}

/// The Deploy page.
pub fn deploy(viewer: &Viewer<'_>, d: &DeployView<'_>) -> Markup {
    layout(
        "Deploy sensors",
        Some(viewer),
        html! {
            h2 { "1. The enrollment bundle" }
            @if viewer.admin {
                p { a id="bundle" href="/deploy/bundle.json" download=(d.bundle_file) { "Download " (d.bundle_file) }
                    " — it holds the access key: keep it private, give it only to the hosts to enroll." }
            } @else {
                p { "Only admins can download the bundle (it holds the access key)." }
            }
            h2 { "2. The install command" }
            form.filters method="get" action="/deploy" {
                label for="d-proxy" { "Proxy URL" }
                input id="d-proxy" name="proxy_url" value=(d.form.proxy_url) placeholder="http://proxy.corp:3128";
                label for="d-user" { "Proxy user" }
                input id="d-user" name="proxy_user" value=(d.form.proxy_user) placeholder=r"CORP\user";
                button type="submit" { "Build the command" }
            }
            p.hint { "The proxy password is never part of the command: it is asked for on the host and passed through UPLINK_PROXY_PASSWORD." }
            pre id="install-command" { code { (d.install) } }
            h2 { "3. Let it through the firewall" }
            p { "Test from the host: " code id="ping-url" { (d.ping_url) } " answers " code { "Ok" } "." }
            @for (format, text) in d.allowlist {
                details {
                    summary { "Allow-list (" (format) ")" }
                    pre data-format=(format) { code { (text) } }
                }
            }
            @if viewer.admin {
                h2 { "The access key" }
                @if d.regenerated {
                    p role="status" id="regenerated" { "A new access key was made. Download the new bundle for new sensors." }
                }
                @if let Some(k) = d.access_key {
                    details {
                        summary { "Show the access key" }
                        pre id="access-key" { code { (k) } }
                    }
                }
                form.act method="post" action="/deploy/access-key" {
                    (csrf_input(viewer.csrf))
                    p.hint { "Regenerating makes a new key at once: the old key, and every bundle and install command holding it, no longer enrolls new sensors. Sensors already enrolled keep working." }
                    label.check {
                        input id="confirm-regenerate" type="checkbox" name="confirm" value="yes" required;
                        " I understand the old key stops enrolling sensors"
                    }
                    button id="regenerate" type="submit" { "Regenerate the access key" }
                }
            }
        },
    )
}

/// The Events page: `events` newest first.
pub fn events(
    viewer: &Viewer<'_>,
    q: &crate::events::EventQuery,
    events: &[uplink_store::StoredEvent],
) -> Markup {
    let export = format!("/events.ndjson?{}", q.to_query());
    let t = |ms: Option<i64>| {
        ms.map(|m| uplink_fleet::rfc3339(m)[..16].to_owned())
            .unwrap_or_default()
    };
    layout(
        "Events",
        Some(viewer),
        html! {
            form.filters method="get" action="/events" role="search" {
                label for="e-sensor" { "Sensor id" }
                input id="e-sensor" name="sensor" value=(q.sensor.as_deref().unwrap_or(""));
                label for="e-kind" { "Kind" }
                input id="e-kind" name="kind" value=(q.kind.as_deref().unwrap_or("")) placeholder="heartbeat";
                label for="e-since" { "Since (UTC)" }
                input id="e-since" name="since" type="datetime-local" value=(t(q.since));
                label for="e-until" { "Until (UTC)" }
                input id="e-until" name="until" type="datetime-local" value=(t(q.until));
                label for="e-limit" { "Show" }
                input id="e-limit" name="limit" type="number" min="1" max=(crate::events::MAX_LIMIT) value=(q.limit);
                button type="submit" { "Apply" }
                a href=(export) download="events.ndjson" { "Export NDJSON" }
            }
            @for n in &q.notes { p.error role="alert" { (n) } }
            p id="count" { (events.len()) " latest events" }
            div.scroll { table id="events" {
                thead { tr { th scope="col" { "Received" } th scope="col" { "Sensor" } th scope="col" { "Seq" } th scope="col" { "Kind" } th scope="col" { "Event" } } }
                tbody { @for e in events {
                    tr data-sensor-id=(e.sensor_id) data-kind=(e.kind) {
                        td { (uplink_store::rfc3339_ms(e.received_at)) }
                        td { a href=(format!("/sensors/{}", crate::form::encode(&e.sensor_id))) { (e.sensor_id) } }
                        td { (e.seq) }
                        td { (e.kind) }
                        td.event { details {
                            summary { (e.body.chars().take(80).collect::<String>()) @if e.body.chars().count() > 80 { "…" } }
                            pre { code { (serde_json::from_str::<Value>(&e.body).ok().and_then(|v| serde_json::to_string_pretty(&v).ok()).unwrap_or_else(|| e.body.clone())) } }
                        } }
                    }
                } }
            } }
        },
    )
}

/// What the Settings page shows.
#[derive(Debug)]
pub struct SettingsView<'a> {
    pub settings: &'a uplink_store::WorkspaceSettings,
    pub webhooks: &'a [String],
    pub users: &'a [uplink_store::ConsoleUser],
    pub tokens: &'a [uplink_store::AdminToken],
    pub saved: bool,
}

/// The Settings page.
pub fn settings(viewer: &Viewer<'_>, v: &SettingsView<'_>) -> Markup {
    layout(
        "Settings",
        Some(viewer),
        html! {
            @if v.saved { p role="status" id="saved" { "Saved." } }
            h2 { "Fleet and storage" }
            form.act method="post" action="/settings" {
                (csrf_input(viewer.csrf))
                label for="s-disc" { "Disconnected after (seconds)" }
                input id="s-disc" name="disconnected_after_secs" type="number" min="10" value=(v.settings.disconnected_after_secs) disabled[!viewer.admin];
                label for="s-ret" { "Keep events (days)" }
                input id="s-ret" name="retention_days" type="number" min="1" value=(v.settings.retention_days) disabled[!viewer.admin];
                @if viewer.admin { button id="save-settings" type="submit" { "Save" } }
            }
            h2 { "Webhooks" }
            @if v.webhooks.is_empty() { p { "None (" code { "uplink workspace set NAME --webhook URL" } ")." } }
            ul { @for w in v.webhooks { li { code { (w) } } } }
            @if viewer.admin && !v.webhooks.is_empty() {
                form.act method="post" action="/settings/test" {
                    (csrf_input(viewer.csrf))
                    button id="send-test" type="submit" { "Send a test" }
                    p.hint { "Sends a test event (" code { "\"event\": \"test\"" } ", signed like the others; one RFC 5424 message to a syslog target) to each target now, and shows what each answered." }
                }
            }
            h2 { "Console accounts" }
            p.hint { "Added and removed with " code { "uplink admin user add|remove" } "." }
            ul id="users" { @for u in v.users { li { (u.name) " · " (u.role) } } }
            h2 { "Admin API tokens" }
            p.hint { "Made and revoked with " code { "uplink admin token create|revoke" } "; the secrets are never shown again." }
            ul id="tokens" { @for t in v.tokens { li { (t.name) " · " (t.role) " · " (t.id) } } }
        },
    )
}

/// What a test sent to each webhook or syslog target gave: its URL and `Ok` or the failure.
pub fn test_results(viewer: &Viewer<'_>, results: &[(String, Result<(), String>)]) -> Markup {
    layout(
        "Test of the targets",
        Some(viewer),
        html! {
            ul id="test-results" {
                @for (url, r) in results {
                    li data-target=(url) data-result=(if r.is_ok() { "ok" } else { "failed" }) {
                        code { (url) } ": "
                        @match r {
                            Ok(()) => { "delivered." }
                            Err(e) => { "not delivered: " (e) }
                        }
                    }
                }
            }
            p { a href="/settings" { "Back to the settings" } }
        },
    )
}

/// Rendered to a string.
pub fn render(m: Markup) -> String {
    m.into_string()
}

// Keeps PreEscaped in scope for future raw snippets (none today: everything is escaped).
#[allow(dead_code)]
fn _raw(s: &str) -> PreEscaped<&str> {
    PreEscaped(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn viewer(admin: bool) -> Viewer<'static> {
        Viewer {
            workspace: "w",
            user: "alice",
            admin,
            csrf: "tok123",
        }
    }

    #[test]
    fn the_login_form_has_its_fields_and_token_and_escapes() {
        let h = render(login("w", "c1", Some("<b>nope</b>")));
        for want in [
            r#"name="username""#,
            r#"name="password""#,
            r#"name="csrf" value="c1""#,
            r#"action="/login""#,
            "&lt;b&gt;nope",
            r#"<html lang="en">"#,
        ] {
            assert!(h.contains(want), "{want} in {h}");
        }
        assert!(!h.contains("<b>nope"));
        assert!(!h.contains("<script>"), "no inline script");
        assert!(!h.contains("style="), "no inline style");
    }

    fn rows() -> Vec<Row> {
        vec![Row::new(
            &json!({"sensor_id": "s<1>", "name": "web", "state": "online", "health": "healthy", "lifecycle": "active", "queue": {"events": 3}}),
            None,
        )]
    }

    #[test]
    fn the_sensors_table_carries_ids_states_and_chosen_columns() {
        let q = Query::parse("col=health");
        let h = render(sensors(&viewer(true), &q, &rows(), 1, 1, 1));
        assert!(h.contains(r#"data-sensor-id="s&lt;1&gt;""#), "{h}");
        assert!(h.contains(r#"data-state="online""#));
        assert!(h.contains(">Health<") && !h.contains(">Backlog<"), "{h}");
        assert!(h.contains(r#"href="/sensors/s%3C1%3E""#));
        assert!(h.contains(r#"action="/logout""#) && h.contains(r#"value="tok123""#));
        let all = render(sensors(
            &viewer(false),
            &Query::default(),
            &rows(),
            2,
            3,
            120,
        ));
        assert!(
            all.contains(">Backlog<")
                && all.contains(r#"rel="prev""#)
                && all.contains(r#"rel="next""#)
        );
    }

    #[test]
    fn the_sensor_page_shows_actions_to_admins_only() {
        let v = json!({
            "sensor_id": "s1", "name": "web", "state": "disconnected", "lifecycle": "active",
            "queue": {"events": 1}, "report": {"cert_not_after": "2027-01-01T00:00:00Z"},
            "outages": [{"start": "a", "end": null, "codes": ["TCP_REFUSED"], "proxy": null, "failures": 3}],
            "issues": [
                {"issue_id": "iss-1", "kind": "disconnected", "state": "open", "fix": "restart it", "description": "gone"},
                {"issue_id": "iss-2", "kind": "proxy_auth", "state": "closed", "fix": "fix creds", "description": "407"}
            ]
        });
        let admin = render(sensor(
            &viewer(true),
            &v,
            "uplink check --method direct",
            &html! {},
        ));
        for want in [
            "/sensors/s1/revoke",
            "/issues/iss-1/suppress",
            "restart it",
            "fix creds",
            "TCP_REFUSED",
            "uplink check --method direct",
            "2027-01-01",
            r#"name="csrf""#,
        ] {
            assert!(admin.contains(want), "{want} in {admin}");
        }
        assert!(
            !admin.contains("/issues/iss-2/suppress"),
            "closed issues are not suppressed"
        );
        let look = render(sensor(&viewer(false), &v, "x", &html! {}));
        assert!(
            !look.contains("/revoke") && !look.contains("/suppress"),
            "{look}"
        );
        assert!(look.contains("restart it"));
    }

    #[test]
    fn the_deploy_page_shows_secrets_to_admins_only_and_never_the_proxy_password() {
        let form = crate::deploy::InstallForm {
            proxy_url: "http://p:3128".into(),
            proxy_user: r"CORP\bob".into(),
        };
        let install = crate::deploy::install_command("w.json", &form);
        let lists = vec![("plain", "wsensorapi.example.com:443\n".to_owned())];
        let view = |key| DeployView {
            access_key: key,
            bundle_file: "w.json",
            form: &form,
            install: &install,
            ping_url: "https://wsensorapi.example.com/tri/sensor/api/ping",
            allowlist: &lists,
            regenerated: false,
        };
        let admin = render(deploy(&viewer(true), &view(Some("the-key"))));
        for want in [
            "/deploy/bundle.json",
            "the-key",
            "/deploy/access-key",
            r#"name="confirm""#,
            "UPLINK_PROXY_PASSWORD",
            "wsensorapi.example.com:443",
            "tri/sensor/api/ping",
        ] {
            assert!(admin.contains(want), "{want} in {admin}");
        }
        let look = render(deploy(&viewer(false), &view(None)));
        assert!(
            !look.contains("/deploy/bundle.json") && !look.contains("/deploy/access-key"),
            "{look}"
        );
    }

    #[test]
    fn the_issues_page_filters_by_state_and_sensor() {
        let all = vec![
            json!({"issue_id": "i1", "kind": "disconnected", "state": "open", "sensor_id": "s1"}),
            json!({"issue_id": "i2", "kind": "proxy_fallback", "state": "suppressed", "sensor_id": "s2"}),
            json!({"issue_id": "i3", "kind": "disconnected", "state": "closed", "sensor_id": "s2"}),
        ];
        // (query, issue ids shown)
        for (q, want) in [
            ("", vec!["i1", "i2", "i3"]),
            ("state=open", vec!["i1"]),
            ("sensor=s2", vec!["i2", "i3"]),
            ("state=closed&sensor=s2", vec!["i3"]),
            ("state=bogus", vec!["i1", "i2", "i3"]),
        ] {
            let f = IssueFilter::parse(q);
            let got: Vec<&str> = all
                .iter()
                .filter(|i| f.matches(i))
                .map(|i| i["issue_id"].as_str().unwrap())
                .collect();
            assert_eq!(got, want, "{q}");
        }
        let h = render(issues(
            &viewer(true),
            &all,
            &IssueFilter::parse("state=suppressed"),
        ));
        assert!(
            h.contains("/issues/i2/unsuppress") && !h.contains(r#"data-issue-id="i1""#),
            "{h}"
        );
    }
}
