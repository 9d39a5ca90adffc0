//! Renderers, pure: the terminal table (one row per URL, one column per method, `OK` or the
//! code, then the failures with their step, detail and fix) and the classic `--report` text
//! (`Testing URL : …`, numbered methods, `Succeeded (200)` or the code), plus a summary.

use std::fmt::Write;

use uplink_diag::Code;

use crate::model::Method;
use crate::result::{MethodResult, Report};

fn methods_of(report: &Report) -> Vec<Method> {
    let mut m: Vec<Method> = report
        .urls
        .iter()
        .flat_map(|u| u.methods.iter().map(|m| m.method))
        .collect();
    m.sort();
    m.dedup();
    m
}

fn cell(m: &MethodResult) -> String {
    match (m.ok, m.code) {
        (true, _) => "OK".into(),
        (false, Some(c)) => c.as_str().into(),
        (false, None) => "FAILED".into(),
    }
}

/// The table, then each failure's step, detail and fix, then the verdict.
pub fn table(report: &Report) -> String {
    let methods = methods_of(report);
    let url_w = report
        .urls
        .iter()
        .map(|u| u.url.len())
        .max()
        .unwrap_or(3)
        .max(3);
    let col_w: Vec<usize> = methods
        .iter()
        .map(|m| {
            report
                .urls
                .iter()
                .filter_map(|u| u.methods.iter().find(|r| r.method == *m))
                .map(|r| cell(r).len())
                .max()
                .unwrap_or(0)
                .max(m.as_str().len())
        })
        .collect();
    let mut out = String::new();
    let _ = write!(out, "{:<url_w$}", "URL");
    for (m, w) in methods.iter().zip(&col_w) {
        let _ = write!(out, "  {:<w$}", m.as_str());
    }
    out.push('\n');
    for u in &report.urls {
        let _ = write!(out, "{:<url_w$}", u.url);
        for (m, w) in methods.iter().zip(&col_w) {
            let c = u
                .methods
                .iter()
                .find(|r| r.method == *m)
                .map(cell)
                .unwrap_or_else(|| "-".into());
            let _ = write!(out, "  {c:<w$}");
        }
        out.push('\n');
    }
    let mut failures = String::new();
    for u in &report.urls {
        for m in u.methods.iter().filter(|m| !m.ok && m.tested()) {
            let step = m.steps.iter().find(|s| !s.ok);
            let _ = writeln!(
                failures,
                "{} [{}{}] {} at {}: {}",
                u.url,
                m.method.as_str(),
                m.route
                    .as_deref()
                    .map(|r| format!(", {r}"))
                    .unwrap_or_default(),
                m.code.map(Code::as_str).unwrap_or("FAILED"),
                step.map(|s| s.step.as_str()).unwrap_or("-"),
                step.map(|s| s.detail.as_str()).unwrap_or("-"),
            );
            if let Some(fix) = &m.fix {
                let _ = writeln!(failures, "    fix: {fix}");
            }
        }
    }
    if !failures.is_empty() {
        out.push_str("\nFailures:\n");
        out.push_str(&failures);
    }
    let tried = routes_tried(report);
    if !tried.is_empty() {
        out.push_str("\nRoutes tried:\n");
        out.push_str(&tried);
    }
    out.push('\n');
    out.push_str(&summary(report));
    out
}

/// For each method that tried more than one route candidate, one line: every candidate and how
/// it ended, in order (`PROXY p:3128 (TCP_TIMEOUT) -> DIRECT (OK)`).
pub fn routes_tried(report: &Report) -> String {
    let mut out = String::new();
    for u in &report.urls {
        for m in u.methods.iter().filter(|m| !m.attempts.is_empty()) {
            let chain: Vec<String> = m
                .attempts
                .iter()
                .map(|a| {
                    let how = match (a.ok, a.code) {
                        (true, _) => "OK",
                        (false, Some(c)) => c.as_str(),
                        (false, None) => "FAILED",
                    };
                    format!("{} ({how})", a.route)
                })
                .collect();
            let _ = writeln!(
                out,
                "{} [{}] {}",
                u.url,
                m.method.as_str(),
                chain.join(" -> ")
            );
        }
    }
    out
}

/// `N URLs; M reachable...` and the verdict, one line each.
pub fn summary(report: &Report) -> String {
    let total = report.urls.len();
    let reached = report.urls.iter().filter(|u| u.ok).count();
    let mut out = format!(
        "{total} URL(s) tested; {reached} reachable by at least one method; {} not reachable by any.\n",
        total - reached
    );
    if report.ok {
        out.push_str("Result: PASS (every URL is reachable by at least one method)\n");
    } else {
        let bad: Vec<&str> = report
            .urls
            .iter()
            .filter(|u| !u.ok)
            .map(|u| u.url.as_str())
            .collect();
        let _ = writeln!(out, "Result: FAIL (not reachable: {})", bad.join(", "));
    }
    out
}

/// The classic analyzer layout. `header` is the first lines (tool, version, time, settings).
pub fn report_text(report: &Report, header: &str) -> String {
    let mut out = String::new();
    out.push_str(header);
    if !header.ends_with('\n') {
        out.push('\n');
    }
    out.push_str("\nConnectivity test\n");
    for u in &report.urls {
        let _ = writeln!(out, "\n   Testing URL : {}", u.url);
        for (i, m) in u.methods.iter().enumerate() {
            let verdict = match (m.ok, m.code) {
                (true, _) => format!("Succeeded ({})", m.status.unwrap_or(0)),
                (false, Some(Code::NOT_CONFIGURED)) => {
                    format!(
                        "Doesn't exist (NOT_CONFIGURED: {})",
                        m.fix.as_deref().unwrap_or("").trim_end_matches('.')
                    )
                }
                (false, code) => {
                    let step = m.steps.iter().find(|s| !s.ok);
                    format!(
                        "{} at {}{}",
                        code.map(Code::as_str).unwrap_or("FAILED"),
                        step.map(|s| s.step.as_str()).unwrap_or("-"),
                        step.map(|s| format!(": {}", s.detail)).unwrap_or_default()
                    )
                }
            };
            let route = m
                .route
                .as_deref()
                .map(|r| format!(" [{r}]"))
                .unwrap_or_default();
            let _ = writeln!(out, "   {} - {}{route}: {verdict}", i + 1, m.method.label());
            if !m.ok && m.tested() {
                if let Some(fix) = &m.fix {
                    let _ = writeln!(out, "       Fix: {fix}");
                }
            }
            for a in &m.attempts {
                let how = match (a.ok, a.code) {
                    (true, _) => "OK".to_owned(),
                    (false, code) => {
                        let step = a.steps.iter().find(|s| !s.ok);
                        format!(
                            "{} at {}",
                            code.map(Code::as_str).unwrap_or("FAILED"),
                            step.map(|s| s.step.as_str()).unwrap_or("-")
                        )
                    }
                };
                let _ = writeln!(out, "       Tried {}: {how}", a.route);
            }
        }
    }
    out.push_str("\nSummary\n");
    out.push_str(&summary(report));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::{StepResult, UrlResult};
    use uplink_diag::Step;

    fn sample() -> Report {
        let ok = MethodResult {
            method: Method::Direct,
            ok: true,
            code: None,
            status: Some(200),
            route: Some("DIRECT".into()),
            steps: vec![StepResult {
                step: Step::Http,
                ok: true,
                ms: 3,
                detail: "200 OK".into(),
            }],
            fix: None,
            attempts: Vec::new(),
        };
        let refused = MethodResult {
            method: Method::Cli,
            ok: false,
            code: Some(Code::TCP_REFUSED),
            status: None,
            route: Some("PROXY 127.0.0.1:9".into()),
            steps: vec![StepResult {
                step: Step::Tcp,
                ok: false,
                ms: 0,
                detail: "the proxy: connecting to 127.0.0.1:9: Connection refused".into(),
            }],
            fix: Some(Code::TCP_REFUSED.fix().into()),
            attempts: Vec::new(),
        };
        let none =
            MethodResult::not_configured(Method::Named, "no proxy is configured for the sensor");
        Report {
            ok: false,
            urls: vec![
                UrlResult {
                    url: "https://a.example/ping".into(),
                    ok: true,
                    methods: vec![ok.clone(), none.clone(), refused.clone()],
                },
                UrlResult {
                    url: "https://b.example/".into(),
                    ok: false,
                    methods: vec![none, refused],
                },
            ],
        }
    }

    #[test]
    fn every_route_candidate_tried_is_listed() {
        let mut r = sample();
        assert!(!table(&r).contains("Routes tried"));
        let attempt = |route: &str, code: Option<Code>| crate::result::AttemptResult {
            route: route.into(),
            ok: code.is_none(),
            code,
            steps: Vec::new(),
        };
        r.urls[0].methods[0].attempts = vec![
            attempt("PROXY 192.0.2.1:3128", Some(Code::TCP_TIMEOUT)),
            attempt("DIRECT", None),
        ];
        let t = table(&r);
        assert!(
            t.contains("Routes tried:\nhttps://a.example/ping [direct] PROXY 192.0.2.1:3128 (TCP_TIMEOUT) -> DIRECT (OK)\n"),
            "{t}"
        );
    }

    #[test]
    fn the_table_shows_ok_or_the_code_and_every_failure() {
        let t = table(&sample());
        let lines: Vec<&str> = t.lines().collect();
        assert!(
            lines[0].starts_with("URL")
                && lines[0].contains("direct")
                && lines[0].contains("named")
                && lines[0].contains("cli"),
            "{t}"
        );
        assert!(
            lines[1].starts_with("https://a.example/ping")
                && lines[1].contains("OK")
                && lines[1].contains("TCP_REFUSED"),
            "{t}"
        );
        assert!(
            lines[2].contains("NOT_CONFIGURED") && lines[2].contains(" - "),
            "missing method shows -: {t}"
        );
        assert!(t.contains("https://b.example/ [cli, PROXY 127.0.0.1:9] TCP_REFUSED at tcp: the proxy: connecting"), "{t}");
        assert!(t.contains("fix: Nothing listens"), "{t}");
        assert!(
            t.contains("Result: FAIL (not reachable: https://b.example/)"),
            "{t}"
        );
    }

    #[test]
    fn the_report_has_the_classic_layout() {
        let r = report_text(&sample(), "uplink check 0.1.0");
        let expected_lines = [
            "   Testing URL : https://a.example/ping",
            "   1 - Proxy disabled [DIRECT]: Succeeded (200)",
            "   2 - Named proxy: Doesn't exist (NOT_CONFIGURED: no proxy is configured for the sensor)",
            "   3 - Command line proxy [PROXY 127.0.0.1:9]: TCP_REFUSED at tcp: the proxy: connecting to 127.0.0.1:9: Connection refused",
            "       Fix: Nothing listens on that host and port: check the port, and that the service or proxy is running.",
            "   Testing URL : https://b.example/",
            "Summary",
            "2 URL(s) tested; 1 reachable by at least one method; 1 not reachable by any.",
        ];
        for l in expected_lines {
            assert!(r.lines().any(|x| x == l), "missing line {l:?} in:\n{r}");
        }
        assert!(r.starts_with("uplink check 0.1.0\n"));
    }
}
