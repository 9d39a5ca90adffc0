use super::*;

fn proxy(url: &str, user: Option<&str>, password: Option<&str>) -> Route {
    Route::Proxy {
        url: url.into(),
        user: user.map(str::to_owned),
        password: password.map(Password::new),
        ca_pem: None,
    }
}

#[test]
fn validation_refuses_with_the_input_and_the_fix() {
    let ca = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    let ok = |route: Route| Policy::new(route, Target::All);
    // (policy, the words the error must have; none: valid)
    let cases: Vec<(Policy, Option<&[&str]>)> = vec![
        (ok(proxy("http://b:3128", None, None)), None),
        (
            ok(proxy("http://b:3128", Some("CORP\\svc"), Some("pw"))),
            None,
        ),
        (
            ok(Route::Pac {
                url: "http://pac.corp/p.pac".into(),
            }),
            None,
        ),
        (ok(Route::Wpad), None),
        (ok(Route::Direct), None),
        (
            ok(proxy("b:3128", None, None)),
            Some(&["proxy URL", "no scheme", "http://HOST:PORT"]),
        ),
        (
            ok(proxy("http://u:secret@b:3128", None, None)),
            Some(&["carries credentials", "--proxy-user", "http://b:3128"]),
        ),
        (
            ok(proxy("http://b:3128", None, Some("pw"))),
            Some(&["no user"]),
        ),
        (
            ok(proxy("http://b:3128", Some("u"), None)),
            Some(&["\"u\"", "--proxy-password-file"]),
        ),
        (
            ok(proxy("http://b:3128", Some(" "), Some("pw"))),
            Some(&["user"]),
        ),
        (
            ok(proxy("http://b:3128", Some("u"), Some("a\nb"))),
            Some(&["line break"]),
        ),
        (
            ok(Route::Proxy {
                url: "https://b:3129".into(),
                user: None,
                password: None,
                ca_pem: Some("not pem".into()),
            }),
            Some(&["--proxy-ca"]),
        ),
        (
            ok(Route::Proxy {
                url: "http://b:3128".into(),
                user: None,
                password: None,
                ca_pem: Some(ca.into()),
            }),
            Some(&["https://", "\"http://b:3128\""]),
        ),
        (
            ok(Route::Pac {
                url: "ftp://x/p.pac".into(),
            }),
            Some(&["PAC URL", "ftp"]),
        ),
        (
            Policy {
                fallback: Some(Fallback::Never),
                ..ok(Route::Direct)
            },
            Some(&["--fallback"]),
        ),
        (
            Policy {
                bypass: vec!["a.corp".into()],
                ..ok(Route::Wpad)
            },
            Some(&["--bypass"]),
        ),
        (
            Policy {
                bypass: vec!["a b".into()],
                ..ok(proxy("http://b:3128", None, None))
            },
            Some(&["\"a b\""]),
        ),
        (
            Policy {
                heartbeat_secs: Some(0),
                ..ok(Route::Wpad)
            },
            Some(&["--heartbeat-secs", "1 to 86400"]),
        ),
        (
            Policy {
                heartbeat_secs: Some(1),
                ..ok(Route::Wpad)
            },
            None,
        ),
        (
            Policy {
                rollout_percent: 0,
                ..ok(Route::Wpad)
            },
            Some(&["--rollout", "1 to 100"]),
        ),
        (
            Policy {
                rollout_percent: 101,
                ..ok(Route::Wpad)
            },
            Some(&["101"]),
        ),
        (
            Policy::new(Route::Wpad, Target::Sensors(vec![])),
            Some(&["--all", "--sensor"]),
        ),
        (
            Policy::new(Route::Wpad, Target::Sensors(vec!["s 1".into()])),
            Some(&["\"s 1\"", "fleet list"]),
        ),
        (
            Policy::new(Route::Wpad, Target::Sensors(vec!["a1-b2".into()])),
            None,
        ),
    ];
    for (policy, want) in cases {
        let got = policy.validate();
        match (got, want) {
            (Ok(()), None) => {}
            (Err(e), Some(words)) => {
                let text = e.to_string();
                for w in words {
                    assert!(text.contains(w), "{w:?} not in {text:?}");
                }
                assert!(!text.contains("secret"), "{text}");
            }
            (got, want) => panic!("{policy:?}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn passwords_never_reach_debug_or_redacted_forms() {
    let p = Policy::new(
        proxy("http://b:3128", Some("CORP\\svc"), Some("hunter2")),
        Target::All,
    );
    assert!(!format!("{p:?}").contains("hunter2"));
    let r = p.redacted();
    assert!(r.route.password().is_none());
    assert!(!serde_json::to_string(&r).unwrap().contains("hunter2"));
    // The wire form (only inside mutual TLS to the sensor) keeps it.
    let wire = serde_json::to_string(&p).unwrap();
    assert!(wire.contains("hunter2"));
    assert_eq!(serde_json::from_str::<Policy>(&wire).unwrap(), p);
    assert_eq!(p.route.describe(), "proxy http://b:3128 as CORP\\svc");
}

#[test]
fn wire_form_is_stable() {
    let mut p = Policy::new(
        Route::Pac {
            url: "http://p/x.pac".into(),
        },
        Target::Sensors(vec!["s1".into()]),
    );
    p.version = 7;
    p.fallback = Some(Fallback::Direct);
    let v: serde_json::Value = serde_json::to_value(&p).unwrap();
    assert_eq!(
        v,
        serde_json::json!({
            "version": 7,
            "route": {"kind": "pac", "url": "http://p/x.pac"},
            "fallback": "direct",
            "allow_local": false,
            "target": {"sensors": ["s1"]},
            "rollout_percent": 100,
        })
    );
    let all: Policy =
        serde_json::from_str(r#"{"route":{"kind":"direct"},"target":"all"}"#).unwrap();
    assert_eq!(all, Policy::new(Route::Direct, Target::All));
}

#[test]
fn selection_by_target_and_stable_rollout() {
    // The buckets are fixed by SHA-256: a change here would move sensors between rollouts.
    let buckets: Vec<u8> = ["s1", "s2", "s3", "sensor-4"]
        .iter()
        .map(|s| rollout_bucket(s))
        .collect();
    assert_eq!(buckets, buckets.iter().map(|b| b % 100).collect::<Vec<_>>());
    for id in ["s1", "s2", "s3"] {
        assert_eq!(rollout_bucket(id), rollout_bucket(id));
    }
    let ids: Vec<String> = (0..1000).map(|i| format!("sensor-{i}")).collect();
    let share = |pct: u8| -> Vec<&String> {
        let p = Policy {
            rollout_percent: pct,
            ..Policy::new(Route::Direct, Target::All)
        };
        ids.iter().filter(|i| p.applies_to(i)).collect()
    };
    let (ten, fifty, all) = (share(10), share(50), share(100));
    assert_eq!(all.len(), 1000);
    assert!((50..150).contains(&ten.len()), "{}", ten.len());
    assert!((400..600).contains(&fifty.len()), "{}", fifty.len());
    assert!(
        ten.iter().all(|i| fifty.contains(i)),
        "raising the share keeps the first sensors"
    );
    let some = Policy::new(Route::Direct, Target::Sensors(vec!["a".into(), "b".into()]));
    let cases = [("a", true), ("b", true), ("c", false)];
    for (id, want) in cases {
        assert_eq!(some.applies_to(id), want, "{id}");
    }
    let a = Answer::for_sensor(3, Some(&some), "c");
    assert_eq!((a.version, a.policy), (3, None));
    assert_eq!(
        Answer::for_sensor(3, Some(&some), "a").policy.unwrap(),
        some
    );
    assert_eq!(Answer::for_sensor(4, None, "a").policy, None);
}

#[test]
fn precedence_names_the_source_and_what_it_overrode() {
    let mut p = Policy::new(proxy("http://b:3128", None, None), Target::All);
    p.version = 7;
    let allow = Policy {
        allow_local: true,
        ..p.clone()
    };
    // (policy, local settings, use the policy, source, overrode)
    type Case<'a> = (
        Option<&'a Policy>,
        Option<&'a str>,
        bool,
        &'a str,
        Option<&'a str>,
    );
    let cases: Vec<Case> = vec![
        (None, None, false, "local settings (sensor.toml)", None),
        (
            None,
            Some("explicit http://a:3128"),
            false,
            "local settings (sensor.toml)",
            None,
        ),
        (Some(&p), None, true, "policy v7 from the service", None),
        (
            Some(&p),
            Some("explicit http://a:3128"),
            true,
            "policy v7 from the service",
            Some("local settings (sensor.toml): explicit http://a:3128"),
        ),
        (
            Some(&allow),
            Some("explicit http://a:3128"),
            false,
            "local settings (sensor.toml)",
            Some("policy v7 from the service (proxy http://b:3128), which allows local settings"),
        ),
        (Some(&allow), None, true, "policy v7 from the service", None),
    ];
    for (policy, local, use_policy, source, overrode) in cases {
        let got = precedence(policy, local);
        assert_eq!(
            (got.use_policy, got.source.as_str(), got.overrode.as_deref()),
            (use_policy, source, overrode),
            "{policy:?} {local:?}"
        );
    }
}
