use super::*;
use uplink_protocol::heartbeat::{Heartbeat, Outage as ReportOutage, QueueDepth};

const S: i64 = 1000;
const T0: i64 = 1_800_000_000_000;

fn policy() -> Policy {
    Policy {
        online_buffer_secs: 10,
        disconnected_after_secs: 120,
        ..Policy::default()
    }
}

#[test]
fn states_from_the_last_contact() {
    let p = policy();
    // (seconds since the last contact, interval, state)
    let cases = [
        (0, 60, State::Online),
        (70, 60, State::Online),
        (71, 60, State::Late),
        (11, 1, State::Online),
        (12, 1, State::Late),
        (120, 60, State::Late),
        (121, 60, State::Disconnected),
        (14 * 86_400, 60, State::Disconnected),
        (14 * 86_400 + 1, 60, State::Inactive),
        // A clock that went backwards: online.
        (-30, 60, State::Online),
    ];
    for (age, interval, want) in cases {
        assert_eq!(
            state(T0, T0 - age * S, interval, &p),
            want,
            "{age} s, {interval} s"
        );
    }
}

fn obs<'a>(
    report: Option<&'a Heartbeat>,
    seen_secs_ago: i64,
    outages: &'a [Outage],
) -> Observation<'a> {
    Observation {
        workspace: "w",
        sensor_id: "s1",
        enrolled_ms: T0 - 86_400 * S,
        seen_ms: Some(T0 - seen_secs_ago * S),
        report,
        // The clock tests compare with this: the report of T0.
        report_received_ms: Some(T0),
        outages,
    }
}

fn at(secs: i64) -> String {
    rfc3339(T0 + secs * S)
}

#[test]
fn conditions_from_the_report() {
    let p = policy();
    let base = Heartbeat {
        format: 2,
        interval_secs: Some(30),
        route: Some("PROXY p:3128".into()),
        sensor_time: Some(at(0)),
        ..Default::default()
    };
    let h = |f: &dyn Fn(&mut Heartbeat)| {
        let mut h = base.clone();
        f(&mut h);
        h
    };
    // (report, seconds since seen, kinds expected)
    let cases: Vec<(Option<Heartbeat>, i64, Vec<Kind>)> = vec![
        (Some(base.clone()), 0, vec![]),
        (None, 0, vec![]),
        (None, 121, vec![Kind::Disconnected]),
        (Some(base.clone()), 121, vec![Kind::Disconnected]),
        // A current auth error (after the last success)…
        (
            Some(h(&|h| {
                h.last_error_code = Some("PROXY_AUTH_FAILED".into());
                h.last_error_at = Some(at(-5));
                h.last_success_at = Some(at(-10));
            })),
            0,
            vec![Kind::ProxyAuthFailing],
        ),
        // …but not one that a delivery followed.
        (
            Some(h(&|h| {
                h.last_error_code = Some("PROXY_AUTH_FAILED".into());
                h.last_error_at = Some(at(-10));
                h.last_success_at = Some(at(-5));
            })),
            0,
            vec![],
        ),
        // An open outage with the code.
        (
            Some(h(&|h| {
                h.outages = vec![ReportOutage {
                    start: at(-60),
                    end: None,
                    codes: vec!["TCP_REFUSED".into(), "TLS_INTERCEPTED".into()],
                    ..Default::default()
                }]
            })),
            0,
            vec![Kind::TlsIntercepted],
        ),
        (
            Some(h(&|h| {
                h.fallback = true;
                h.route = Some("DIRECT".into());
            })),
            0,
            vec![Kind::ProxyFallback],
        ),
        // Backlog: older than max(10 × 30 s, 600 s).
        (
            Some(h(&|h| {
                h.queue = QueueDepth {
                    events: 5,
                    bytes: 9,
                    oldest_secs: Some(601),
                }
            })),
            0,
            vec![Kind::BacklogGrowing],
        ),
        (
            Some(h(&|h| {
                h.queue = QueueDepth {
                    events: 5,
                    bytes: 9,
                    oldest_secs: Some(600),
                }
            })),
            0,
            vec![],
        ),
        (
            Some(h(&|h| {
                h.queue = QueueDepth {
                    events: 0,
                    bytes: 0,
                    oldest_secs: Some(9999),
                }
            })),
            0,
            vec![],
        ),
        // Certificate: less than a sixth of 60 days left; or a failed renewal.
        (
            Some(h(&|h| {
                h.cert_not_before = Some(at(-50 * 86_400 - 1));
                h.cert_not_after = Some(at(10 * 86_400 - 1));
            })),
            0,
            vec![Kind::CertExpiring],
        ),
        (
            Some(h(&|h| {
                h.cert_not_before = Some(at(-49 * 86_400));
                h.cert_not_after = Some(at(11 * 86_400));
            })),
            0,
            vec![],
        ),
        (
            Some(h(&|h| h.cert_renewal_failed = true)),
            0,
            vec![Kind::CertExpiring],
        ),
        // Clock: more than 120 s either way.
        (
            Some(h(&|h| h.sensor_time = Some(at(121)))),
            0,
            vec![Kind::ClockSkew],
        ),
        (
            Some(h(&|h| h.sensor_time = Some(at(-121)))),
            0,
            vec![Kind::ClockSkew],
        ),
        (Some(h(&|h| h.sensor_time = Some(at(120)))), 0, vec![]),
        (
            Some(h(&|h| h.queue_damaged = true)),
            0,
            vec![Kind::QueueDamaged],
        ),
        (Some(h(&|h| h.disk_full = true)), 0, vec![Kind::DiskFull]),
        // Central policy: a rejection is an issue; an applied policy is not.
        (
            Some(h(&|h| {
                h.policy = Some(uplink_protocol::heartbeat::PolicyState {
                    applied: None,
                    fetched: 4,
                    rejected: Some(uplink_protocol::heartbeat::PolicyRejection {
                        version: 4,
                        code: "TCP_REFUSED".into(),
                        detail: "cannot reach the proxy dead:3128".into(),
                        at: at(0),
                    }),
                })
            })),
            0,
            vec![Kind::PolicyRejected],
        ),
        (
            Some(h(&|h| {
                h.policy = Some(uplink_protocol::heartbeat::PolicyState {
                    applied: Some(4),
                    fetched: 4,
                    rejected: None,
                })
            })),
            0,
            vec![],
        ),
    ];
    for (i, (report, ago, want)) in cases.iter().enumerate() {
        let a = assess(T0, &obs(report.as_ref(), *ago, &[]), &p);
        let kinds: Vec<Kind> = a.conditions.iter().map(|c| c.kind).collect();
        assert_eq!(&kinds, want, "case {i}: {report:?}");
        for c in &a.conditions {
            assert!(
                !c.description.is_empty() && !c.fix.is_empty(),
                "case {i}: {c:?}"
            );
        }
    }
    // A policy rejection names the version and the code, and its fix the code's.
    let rejected = h(&|h| {
        h.policy = Some(uplink_protocol::heartbeat::PolicyState {
            rejected: Some(uplink_protocol::heartbeat::PolicyRejection {
                version: 7,
                code: "PROXY_AUTH_FAILED".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
    });
    let a = assess(T0, &obs(Some(&rejected), 0, &[]), &p);
    assert!(
        a.conditions[0].description.contains("policy v7"),
        "{:?}",
        a.conditions[0]
    );
    assert!(
        a.conditions[0].fix.contains(Code::PROXY_AUTH_FAILED.fix()),
        "{:?}",
        a.conditions[0]
    );
    assert_eq!(Kind::PolicyRejected.severity(), Severity::Medium);
    // The auth failure's fix is the code's.
    let r = h(&|h| h.last_error_code = Some("PROXY_AUTH_FAILED".into()));
    let a = assess(T0, &obs(Some(&r), 0, &[]), &p);
    assert_eq!(a.conditions[0].fix, Code::PROXY_AUTH_FAILED.fix());
}

fn issue(kind: Kind, state: IssueState, occurrences: u64) -> Issue {
    Issue {
        issue_id: issue_id("w", Some("s1"), kind.as_str()),
        workspace: "w".into(),
        sensor_id: Some("s1".into()),
        kind: kind.as_str().into(),
        severity: kind.severity(),
        state,
        opened_at: T0 - 300 * S,
        closed_at: (state == IssueState::Closed).then_some(T0 - 200 * S),
        occurrences,
        description: "d".into(),
        fix: "f".into(),
        suppressed_until: None,
        suppress_reason: None,
        suppressed_by: None,
    }
}

#[test]
fn issues_open_close_reopen_and_stay_suppressed() {
    let p = policy();
    let cond = |kind| Condition {
        kind,
        description: "d".into(),
        fix: "f".into(),
    };
    let o = obs(None, 0, &[]);
    let assessed = |c: Vec<Condition>| Assessment {
        state: State::Online,
        conditions: c,
    };
    let mut suppressed = suppress(
        &issue(Kind::ProxyFallback, IssueState::Open, 1),
        T0 + 60 * S,
        "maintenance",
        "ops",
    );
    let mut expired = suppressed.clone();
    expired.suppressed_until = Some(T0);
    // (condition holds?, stored row, expected (state, occurrences) written, or None: nothing)
    type Case = (bool, Option<Issue>, Option<(IssueState, u64)>);
    let cases: Vec<Case> = vec![
        (false, None, None),
        (true, None, Some((IssueState::Open, 1))),
        (
            true,
            Some(issue(Kind::ProxyFallback, IssueState::Open, 1)),
            None,
        ),
        (
            false,
            Some(issue(Kind::ProxyFallback, IssueState::Open, 1)),
            Some((IssueState::Closed, 1)),
        ),
        (
            false,
            Some(issue(Kind::ProxyFallback, IssueState::Closed, 1)),
            None,
        ),
        // Recurrence reopens the same issue.
        (
            true,
            Some(issue(Kind::ProxyFallback, IssueState::Closed, 1)),
            Some((IssueState::Open, 2)),
        ),
        // Suppressed: stays so, whatever the condition does.
        (true, Some(suppressed.clone()), None),
        (false, Some(suppressed.clone()), None),
        // Suppression over: open if the condition holds, closed if not.
        (true, Some(expired.clone()), Some((IssueState::Open, 1))),
        (false, Some(expired.clone()), Some((IssueState::Closed, 1))),
    ];
    for (i, (holds, row, want)) in cases.into_iter().enumerate() {
        let a = assessed(if holds {
            vec![cond(Kind::ProxyFallback)]
        } else {
            vec![]
        });
        let existing: Vec<Issue> = row.into_iter().collect();
        let got = reconcile(T0, &o, &a, &existing, &p);
        let got: Option<(IssueState, u64)> = got.first().map(|n| (n.state, n.occurrences));
        assert_eq!(got, want, "case {i}");
    }
    // A new issue's fields.
    let new = reconcile(T0, &o, &assessed(vec![cond(Kind::ClockSkew)]), &[], &p);
    assert_eq!(new.len(), 1);
    assert_eq!(new[0].issue_id, issue_id("w", Some("s1"), "clock_skew"));
    assert_eq!(
        (new[0].severity, new[0].opened_at, new[0].closed_at),
        (Severity::Low, T0, None)
    );
    // Unsuppress opens it again; health counts open issues only.
    suppressed.severity = Severity::High;
    assert_eq!(health([&suppressed]), Health::Healthy);
    let back = unsuppress(&suppressed);
    assert_eq!(
        (back.state, back.suppressed_until),
        (IssueState::Open, None)
    );
    assert_eq!(back.suppress_reason.as_deref(), Some("maintenance"));
    assert_eq!(
        health([&back, &issue(Kind::ClockSkew, IssueState::Open, 1)]),
        Health::High
    );
    assert_eq!(
        health([&issue(Kind::ClockSkew, IssueState::Open, 1)]),
        Health::Low
    );
    assert_eq!(
        health([&issue(Kind::Disconnected, IssueState::Closed, 1)]),
        Health::Healthy
    );
}

#[test]
fn a_disconnected_sensor_back_closes_its_issue_with_the_cause() {
    let p = policy();
    let open = issue(Kind::Disconnected, IssueState::Open, 1); // opened 300 s ago
    let back = Assessment {
        state: State::Online,
        conditions: vec![],
    };
    let auth = Outage {
        start_ms: T0 - 500 * S,
        end_ms: Some(T0 - 100 * S),
        codes: vec!["PROXY_AUTH_FAILED".into()],
        proxy: Some("127.0.0.1:3128".into()),
        failures: 12,
    };
    let old = Outage {
        start_ms: T0 - 9000 * S,
        end_ms: Some(T0 - 8000 * S),
        codes: vec!["TCP_REFUSED".into()],
        proxy: None,
        failures: 1,
    };
    // (outages, words in the description, fix)
    let both = [old.clone(), auth.clone()];
    let cases: Vec<(&[Outage], Vec<&str>, &str)> = vec![
        (
            &both,
            vec![
                "cause:",
                "PROXY_AUTH_FAILED",
                "through proxy 127.0.0.1:3128",
                "12 failed",
            ],
            Code::PROXY_AUTH_FAILED.fix(),
        ),
        (&[], vec!["no failed upload"], "journalctl"),
        // An outage long before the disconnection is not its cause.
        (&both[..1], vec!["no failed upload"], "journalctl"),
    ];
    for (outages, words, fix) in cases {
        let o = obs(None, 0, outages);
        let rows = reconcile(T0, &o, &back, std::slice::from_ref(&open), &p);
        assert_eq!(rows.len(), 1);
        let n = &rows[0];
        assert_eq!((n.state, n.closed_at), (IssueState::Closed, Some(T0)));
        for w in words {
            assert!(n.description.contains(w), "{w:?} not in {}", n.description);
        }
        assert!(!n.description.contains("TCP_REFUSED"), "{}", n.description);
        assert!(n.fix.contains(fix), "{fix:?} not in {}", n.fix);
    }
}

#[test]
fn ids_times_and_tokens() {
    assert_eq!(issue_id("w", Some("s"), "k"), issue_id("w", Some("s"), "k"));
    assert_ne!(
        issue_id("w", Some("s"), "k"),
        issue_id("w", Some("s2"), "k")
    );
    assert_ne!(issue_id("ws", None, "k"), issue_id("w", Some("s"), "k"));
    assert!(issue_id("w", None, "k").starts_with("iss-"));
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(
        parse_rfc3339("2026-01-02T03:04:05Z")
            .map(rfc3339)
            .as_deref(),
        Some("2026-01-02T03:04:05Z")
    );
    assert_eq!(
        parse_rfc3339("2026-01-02T04:04:05+01:00"),
        parse_rfc3339("2026-01-02T03:04:05Z")
    );
    assert_eq!(parse_rfc3339("yesterday"), None);
    for k in Kind::ALL {
        assert_eq!(Kind::parse(k.as_str()), Some(*k));
    }
    for s in State::ALL {
        assert_eq!(State::parse(s.as_str()), Some(*s));
    }
}
