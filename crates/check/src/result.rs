//! Results, in exactly the shape of `uplink check --format json` (issue #10):
//!
//! ```json
//! {"ok": bool, "urls": [{"url": "...", "ok": bool, "methods": [{"method": "direct", "ok": bool,
//!   "code": null | "TCP_REFUSED" | "NOT_CONFIGURED", "status": 200 | null,
//!   "route": "PROXY host:port" | "DIRECT" | null,
//!   "steps": [{"step": "dns", "ok": true, "ms": 3, "detail": "..."}], "fix": null | "..."}]}]}
//! ```
//!
//! A URL passes when at least one of its methods passed (the seeds' rule); the run passes when
//! every URL does.

use serde::{Deserialize, Serialize};
use uplink_diag::{Code, Step};

use crate::model::Method;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepResult {
    pub step: Step,
    pub ok: bool,
    pub ms: u64,
    pub detail: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MethodResult {
    pub method: Method,
    pub ok: bool,
    pub code: Option<Code>,
    pub status: Option<u16>,
    pub route: Option<String>,
    pub steps: Vec<StepResult>,
    pub fix: Option<String>,
    /// Every route candidate tried, in order, when more than one was (`route` names the one
    /// that worked, or the last one tried): the steps of each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<AttemptResult>,
}

/// One route candidate tried by a probe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptResult {
    pub route: String,
    pub ok: bool,
    pub code: Option<Code>,
    pub steps: Vec<StepResult>,
}

impl MethodResult {
    /// A method with nothing to test.
    pub fn not_configured(method: Method, why: &str) -> Self {
        MethodResult {
            method,
            ok: false,
            code: Some(Code::NOT_CONFIGURED),
            status: None,
            route: None,
            steps: Vec::new(),
            fix: Some(format!("{why}.")),
            attempts: Vec::new(),
        }
    }

    /// True when something was tested (not `NOT_CONFIGURED`).
    pub fn tested(&self) -> bool {
        self.code != Some(Code::NOT_CONFIGURED)
    }

    /// The failing step's detail, if any.
    pub fn failure_detail(&self) -> Option<&str> {
        self.steps.iter().find(|s| !s.ok).map(|s| s.detail.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UrlResult {
    pub url: String,
    pub ok: bool,
    pub methods: Vec<MethodResult>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub ok: bool,
    pub urls: Vec<UrlResult>,
}

impl Report {
    /// Groups method results per URL (in the order the URLs are given) and sets the verdicts.
    pub fn assemble(urls: &[String], results: Vec<(usize, MethodResult)>) -> Report {
        let mut per: Vec<Vec<MethodResult>> = vec![Vec::new(); urls.len()];
        for (i, r) in results {
            if let Some(v) = per.get_mut(i) {
                v.push(r);
            }
        }
        let urls: Vec<UrlResult> = urls
            .iter()
            .zip(per)
            .map(|(url, mut methods)| {
                methods.sort_by_key(|m| m.method);
                UrlResult {
                    url: url.clone(),
                    ok: methods.iter().any(|m| m.ok),
                    methods,
                }
            })
            .collect();
        Report {
            ok: !urls.is_empty() && urls.iter().all(|u| u.ok),
            urls,
        }
    }

    /// 0 when every URL has a passing method, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        if self.ok {
            0
        } else {
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passed(m: Method) -> MethodResult {
        MethodResult {
            method: m,
            ok: true,
            code: None,
            status: Some(200),
            route: Some("DIRECT".into()),
            steps: vec![StepResult {
                step: Step::Http,
                ok: true,
                ms: 1,
                detail: "200".into(),
            }],
            fix: None,
            attempts: Vec::new(),
        }
    }

    fn failed(m: Method, code: Code) -> MethodResult {
        MethodResult {
            method: m,
            ok: false,
            code: Some(code),
            status: None,
            route: Some("DIRECT".into()),
            steps: vec![StepResult {
                step: code.step(),
                ok: false,
                ms: 1,
                detail: "x".into(),
            }],
            fix: Some(code.fix().into()),
            attempts: Vec::new(),
        }
    }

    #[test]
    fn verdicts_follow_the_seeds_rule() {
        let urls = vec!["https://a/".to_owned(), "https://b/".to_owned()];
        type Case = (Vec<(usize, MethodResult)>, bool, [bool; 2]);
        let cases: Vec<Case> = vec![
            (
                vec![
                    (0, failed(Method::Direct, Code::TCP_REFUSED)),
                    (0, passed(Method::Cli)),
                    (1, passed(Method::Direct)),
                ],
                true,
                [true, true],
            ),
            (
                vec![
                    (0, passed(Method::Direct)),
                    (1, MethodResult::not_configured(Method::Named, "no proxy")),
                ],
                false,
                [true, false],
            ),
            (vec![], false, [false, false]),
        ];
        for (results, ok, per) in cases {
            let r = Report::assemble(&urls, results);
            assert_eq!(r.ok, ok);
            assert_eq!([r.urls[0].ok, r.urls[1].ok], per);
            assert_eq!(r.exit_code(), if ok { 0 } else { 1 });
        }
    }

    #[test]
    fn json_has_exactly_the_issue_schema() {
        let r = Report::assemble(
            &["https://a/".to_owned()],
            vec![
                (0, failed(Method::Direct, Code::TLS_INTERCEPTED)),
                (0, MethodResult::not_configured(Method::Wpad, "no WPAD")),
            ],
        );
        let v = serde_json::to_value(&r).unwrap();
        let keys = |v: &serde_json::Value| {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        assert_eq!(keys(&v), ["ok", "urls"]);
        assert_eq!(keys(&v["urls"][0]), ["methods", "ok", "url"]);
        let m = &v["urls"][0]["methods"][0];
        assert_eq!(
            keys(m),
            ["code", "fix", "method", "ok", "route", "status", "steps"]
        );
        assert_eq!(m["method"], "wpad");
        assert_eq!(m["code"], "NOT_CONFIGURED");
        assert_eq!(m["route"], serde_json::Value::Null);
        let m = &v["urls"][0]["methods"][1];
        assert_eq!(m["code"], "TLS_INTERCEPTED");
        assert_eq!(keys(&m["steps"][0]), ["detail", "ms", "ok", "step"]);
        assert_eq!(m["steps"][0]["step"], "tls");
        let back: Report = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
    }
}
