//! The state machine, driven by 407s written by hand: no sockets.

use super::*;

const PASSWORD: &str = "s3cret-Pa55";

fn creds(user: &str) -> Option<(String, SecretString)> {
    Some((user.to_owned(), SecretString::from(PASSWORD)))
}

/// Without Kerberos: tests never reach the system's GSSAPI (and so never a KDC or DNS).
fn no_kerberos() -> Options {
    Options {
        negotiator: None,
        ..Options::default()
    }
}

fn auth(user: &str) -> Authenticator {
    Authenticator::new(creds(user), "sensor.example:443", no_kerberos())
}

fn challenges(headers: &[&str]) -> Vec<Challenge> {
    let (good, bad) = challenge::parse_all(headers.iter().copied());
    assert!(bad.is_empty(), "{bad:?}");
    good
}

/// A CHALLENGE message as a proxy would send it (MS-NLMP 4.2.4.3).
const NTLM_CHALLENGE: &str = "TlRMTVNTUAACAAAADAAMADgAAAAzgoriASNFZ4mrze8AAAAAAAAAACQAJABEAAAABgBwFwAAAA9TAGUAcgB2AGUAcgACAAwARABvAG0AYQBpAG4AAQAMAFMAZQByAHYAZQByAAAAAAA=";

fn no_secret(text: &str) {
    assert!(!text.contains(PASSWORD), "the password leaked: {text}");
}

#[test]
fn the_strongest_offered_scheme_wins() {
    let cases: &[(&[&str], Scheme)] = &[
        (&["Basic realm=\"r\""], Scheme::Basic),
        (
            &[
                "Basic realm=\"r\"",
                "Digest realm=\"r\", nonce=\"n\", qop=\"auth\"",
            ],
            Scheme::Digest,
        ),
        (
            &["Digest realm=r, nonce=n", "NTLM", "Basic realm=r"],
            Scheme::Ntlm,
        ),
        // Negotiate without Kerberos: NTLM, offered beside it, is used.
        (&["Negotiate, NTLM"], Scheme::Ntlm),
        // An unusable Digest challenge falls through to the next scheme.
        (
            &["Digest nonce=n, algorithm=SHA-512-256", "Basic realm=r"],
            Scheme::Basic,
        ),
        // Case-insensitive scheme names.
        (&["basic realm=r"], Scheme::Basic),
    ];
    for (headers, want) in cases {
        let mut a = auth("CONTOSO\\proxyuser");
        let answer = a.respond(&challenges(headers)).unwrap();
        assert_eq!(answer.scheme, *want, "{headers:?}");
        assert_eq!(a.scheme(), Some(*want));
        assert!(
            answer
                .authorization
                .expose_secret()
                .starts_with(want.name()),
            "{headers:?}"
        );
    }
}

#[test]
fn the_preference_is_configurable() {
    let offered = challenges(&["NTLM", "Basic realm=r"]);
    let mut a = Authenticator::new(
        creds("u"),
        "h:443",
        Options {
            preference: parse_preference("basic, ntlm").unwrap(),
            ..Options::default()
        },
    );
    assert_eq!(a.respond(&offered).unwrap().scheme, Scheme::Basic);
    // A scheme left out of the preference is never used.
    let mut only_ntlm = Authenticator::new(
        creds("u"),
        "h:443",
        Options {
            preference: vec![Scheme::Ntlm],
            ..Options::default()
        },
    );
    let err = only_ntlm
        .respond(&challenges(&["Basic realm=r"]))
        .unwrap_err();
    assert_eq!(err.code(), Code::PROXY_AUTH_REQUIRED);
    assert!(err.to_string().contains("offers Basic"), "{err}");
    assert!(parse_preference("ntlm,kerberos5").is_err());
    assert_eq!(
        parse_preference("Negotiate,NTLM").unwrap(),
        [Scheme::Negotiate, Scheme::Ntlm]
    );
}

#[test]
fn basic_round_then_rejection() {
    let mut a = auth("CONTOSO\\proxyuser");
    let offered = challenges(&["Basic realm=\"squid\""]);
    let answer = a.respond(&offered).unwrap();
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(
            answer
                .authorization
                .expose_secret()
                .strip_prefix("Basic ")
                .unwrap(),
        )
        .unwrap();
    assert_eq!(raw, format!("CONTOSO\\proxyuser:{PASSWORD}").as_bytes());
    assert!(answer.fresh_connection_ok);
    let err = a.respond(&offered).unwrap_err();
    assert_eq!(err.code(), Code::PROXY_AUTH_FAILED);
    assert!(matches!(
        err,
        AuthError::Rejected {
            scheme: Scheme::Basic,
            ..
        }
    ));
    let text = err.to_string();
    assert!(
        text.contains("CONTOSO\\proxyuser") && text.contains("Basic"),
        "{text}"
    );
    no_secret(&text);
    no_secret(&format!("{err:?} {a:?}"));
}

#[test]
fn no_credentials_names_the_offered_schemes() {
    let mut a = Authenticator::new(None, "h:443", no_kerberos());
    let err = a
        .respond(&challenges(&["Negotiate", "NTLM", "Basic realm=r"]))
        .unwrap_err();
    assert_eq!(err.code(), Code::PROXY_AUTH_REQUIRED);
    assert_eq!(
        err,
        AuthError::NoCredentials {
            offered: Offered(vec!["Negotiate".into(), "NTLM".into(), "Basic".into()])
        }
    );
    let none = a.respond(&[]).unwrap_err();
    assert!(none.to_string().contains("no scheme"), "{none}");
}

#[test]
fn only_negotiate_is_reported_as_unsupported() {
    let err = auth("u").respond(&challenges(&["Negotiate"])).unwrap_err();
    assert_eq!(err.code(), Code::PROXY_AUTH_REQUIRED);
    assert!(err.to_string().contains("offers Negotiate"), "{err}");
    assert!(err.to_string().contains("Kerberos is not enabled"), "{err}");
    let err = auth("u")
        .respond(&challenges(&["Digest nonce=n, qop=auth-int"]))
        .unwrap_err();
    assert!(err.to_string().contains("qop"), "{err}");
}

#[test]
fn digest_answers_the_strongest_challenge_and_retries_a_stale_nonce_once() {
    let mut a = auth("CONTOSO\\proxyuser");
    let offered = challenges(&[
        "Digest realm=\"r\", nonce=\"n1\", qop=\"auth\", algorithm=MD5",
        "Digest realm=\"r\", nonce=\"n2\", qop=\"auth\", algorithm=SHA-256",
    ]);
    let answer = a.respond(&offered).unwrap();
    let sent = challenge::parse(answer.authorization.expose_secret()).unwrap();
    assert_eq!(sent[0].param("nonce"), Some("n2"));
    assert_eq!(sent[0].param("algorithm"), Some("SHA-256"));
    assert_eq!(sent[0].param("uri"), Some("sensor.example:443"));
    assert_eq!(sent[0].param("username"), Some("CONTOSO\\proxyuser"));
    // The response is what digest::response computes for the cnonce we sent.
    let p = digest::Params::from_challenge(&offered[1]).unwrap();
    let want = digest::response(
        &p,
        "CONTOSO\\proxyuser",
        PASSWORD,
        "CONNECT",
        "sensor.example:443",
        sent[0].param("cnonce").unwrap(),
        1,
    );
    assert_eq!(sent[0].param("response"), Some(want.as_str()));
    no_secret(answer.authorization.expose_secret());

    let stale = challenges(&["Digest realm=\"r\", nonce=\"n3\", qop=auth, stale=true"]);
    let again = a.respond(&stale).unwrap();
    assert!(again.authorization.expose_secret().contains("nonce=\"n3\""));
    // A second stale in a row is a rejection, not a loop.
    let err = a.respond(&stale).unwrap_err();
    assert!(matches!(
        err,
        AuthError::Rejected {
            scheme: Scheme::Digest,
            ..
        }
    ));
}

#[test]
fn ntlm_takes_two_rounds_and_the_second_is_connection_bound() {
    let mut a = auth("CONTOSO\\proxyuser");
    let first = a.respond(&challenges(&["NTLM", "Basic realm=r"])).unwrap();
    assert!(first.fresh_connection_ok);
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let t1 = b64
        .decode(
            first
                .authorization
                .expose_secret()
                .strip_prefix("NTLM ")
                .unwrap(),
        )
        .unwrap();
    assert_eq!(t1, ntlm::negotiate());

    let second = a
        .respond(&challenges(&[&format!("NTLM {NTLM_CHALLENGE}")]))
        .unwrap();
    assert!(!second.fresh_connection_ok);
    let t3 = b64
        .decode(
            second
                .authorization
                .expose_secret()
                .strip_prefix("NTLM ")
                .unwrap(),
        )
        .unwrap();
    assert_eq!(&t3[..12], b"NTLMSSP\0\x03\0\0\0");
    // The user and domain fields carry the split DOMAIN\user, in UTF-16LE.
    let field = |at: usize| {
        let len = usize::from(u16::from_le_bytes([t3[at], t3[at + 1]]));
        let off = u32::from_le_bytes([t3[at + 4], t3[at + 5], t3[at + 6], t3[at + 7]]) as usize;
        String::from_utf16(
            &t3[off..off + len]
                .chunks(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect::<Vec<_>>(),
        )
        .unwrap()
    };
    assert_eq!(field(28), "CONTOSO");
    assert_eq!(field(36), "proxyuser");

    let err = a.respond(&challenges(&["NTLM"])).unwrap_err();
    assert_eq!(err.code(), Code::PROXY_AUTH_FAILED);
    assert!(matches!(
        err,
        AuthError::Rejected {
            scheme: Scheme::Ntlm,
            ..
        }
    ));
}

#[test]
fn broken_ntlm_challenges_are_protocol_errors() {
    for header in [
        "NTLM",
        "NTLM !!!",
        "NTLM AAAA",
        "NTLM TlRMTVNTUAABAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    ] {
        let mut a = auth("u");
        a.respond(&challenges(&["NTLM"])).unwrap();
        let (cs, _) = challenge::parse_all([header]);
        let err = a.respond(&cs).unwrap_err();
        assert_eq!(err.code(), Code::PROXY_PROTOCOL_ERROR, "{header}: {err}");
        assert!(matches!(
            err,
            AuthError::BadChallenge {
                scheme: Scheme::Ntlm,
                ..
            }
        ));
    }
}

#[test]
fn an_endless_407_loop_ends() {
    // A proxy answering every round with a fresh stale Digest nonce, and a tighter bound.
    let mut a = Authenticator::new(
        creds("u"),
        "h:443",
        Options {
            max_rounds: 1,
            ..Options::default()
        },
    );
    let stale = challenges(&["Digest realm=r, nonce=n, qop=auth, stale=true"]);
    a.respond(&stale).unwrap();
    let err = a.respond(&stale).unwrap_err();
    assert_eq!(err.code(), Code::PROXY_AUTH_FAILED);
    assert!(
        matches!(err, AuthError::TooManyRounds { rounds: 1, .. }),
        "{err}"
    );
    // With the default bound, at most max_rounds answers are ever produced, whatever comes.
    let mut b = auth("u");
    let answered = (0..100).take_while(|_| b.respond(&stale).is_ok()).count();
    assert!(
        answered as u32 <= Options::default().max_rounds,
        "{answered}"
    );
}

#[test]
fn scheme_names_round_trip() {
    for s in Scheme::ALL {
        assert_eq!(s.name().parse::<Scheme>(), Ok(s));
        assert_eq!(s.to_string(), s.name());
    }
    assert!(Scheme::Ntlm.connection_bound() && !Scheme::Digest.connection_bound());
}

#[test]
fn by_default_no_credentials_go_before_the_proxy_names_its_schemes() {
    let mut a = auth("CONTOSO\\proxyuser");
    assert!(a.initial().is_none(), "no preemptive Basic by default");
}

#[test]
fn preemptive_basic_then_the_scheme_the_proxy_asks_for() {
    let mut a = Authenticator::new(
        creds("CONTOSO\\proxyuser"),
        "sensor.example:443",
        Options {
            preemptive_basic: true,
            ..Options::default()
        },
    );
    let first = a.initial().unwrap();
    assert!(first.expose_secret().starts_with("Basic "));
    assert_eq!(a.initial().map(|_| ()), None, "only once");
    // An NTLM-only proxy: the exchange moves on to NTLM.
    let next = a.respond(&challenges(&["NTLM"])).unwrap();
    assert_eq!(
        (next.scheme, a.scheme()),
        (Scheme::Ntlm, Some(Scheme::Ntlm))
    );

    // A proxy offering Basic after preemptive Basic rejected the credentials.
    let mut b = Authenticator::new(
        creds("u"),
        "h:443",
        Options {
            preemptive_basic: true,
            ..Options::default()
        },
    );
    b.initial().unwrap();
    let err = b
        .respond(&challenges(&["NTLM", "Basic realm=r"]))
        .unwrap_err();
    assert!(
        matches!(
            err,
            AuthError::Rejected {
                scheme: Scheme::Basic,
                ..
            }
        ),
        "{err}"
    );

    // Off, or Basic not preferred, or no credentials: nothing before the first 407.
    let off = Options {
        preemptive_basic: false,
        ..Options::default()
    };
    assert!(Authenticator::new(creds("u"), "h:443", off)
        .initial()
        .is_none());
    let no_basic = Options {
        preference: vec![Scheme::Ntlm],
        preemptive_basic: true,
        ..Options::default()
    };
    assert!(Authenticator::new(creds("u"), "h:443", no_basic)
        .initial()
        .is_none());
    assert!(Authenticator::new(None, "h:443", Options::default())
        .initial()
        .is_none());
}

/// A scripted Negotiator: its first token is `tok1`; it answers the proxy's `more` with `tok2`,
/// and is done after anything else.
struct Scripted;

impl negotiate::Negotiator for Scripted {
    fn start(
        &mut self,
        user: &str,
        password: &SecretString,
        host: &str,
    ) -> Result<Vec<u8>, negotiate::StartError> {
        assert_eq!(
            (user, password.expose_secret(), host),
            ("alice@UPLINK.TEST", PASSWORD, "proxy.corp")
        );
        Ok(b"tok1".to_vec())
    }
    fn step(&mut self, token: &[u8]) -> Result<Option<Vec<u8>>, String> {
        Ok((token == b"more").then(|| b"tok2".to_vec()))
    }
}

fn scripted() -> Box<dyn negotiate::Negotiator> {
    Box::new(Scripted)
}

/// A Negotiator for a machine without Kerberos.
struct NoKdc;

impl negotiate::Negotiator for NoKdc {
    fn start(
        &mut self,
        _: &str,
        password: &SecretString,
        _: &str,
    ) -> Result<Vec<u8>, negotiate::StartError> {
        if password.expose_secret() == "wrong" {
            return Err(negotiate::StartError::Rejected(
                "Preauthentication failed".into(),
            ));
        }
        Err(negotiate::StartError::Unavailable(
            "Cannot contact any KDC for realm 'UPLINK.TEST'".into(),
        ))
    }
    fn step(&mut self, _: &[u8]) -> Result<Option<Vec<u8>>, String> {
        unreachable!("never started")
    }
}

fn no_kdc() -> Box<dyn negotiate::Negotiator> {
    Box::new(NoKdc)
}

fn kerberos(factory: fn() -> Box<dyn negotiate::Negotiator>) -> Authenticator {
    let mut a = Authenticator::new(
        creds("alice@UPLINK.TEST"),
        "sensor.example:443",
        Options {
            negotiator: Some(negotiate::NegotiatorFactory(factory)),
            ..Options::default()
        },
    );
    a.set_proxy_host("proxy.corp");
    a
}

#[test]
fn negotiate_is_preferred_over_ntlm_when_kerberos_starts() {
    let mut a = kerberos(scripted);
    let answer = a.respond(&challenges(&["NTLM", "Negotiate"])).unwrap();
    assert_eq!(answer.scheme, Scheme::Negotiate);
    assert_eq!(answer.authorization.expose_secret(), "Negotiate dG9rMQ==");
    assert!(
        answer.fresh_connection_ok,
        "the first token is not bound to the connection"
    );
    assert_eq!(a.scheme(), Some(Scheme::Negotiate));
    // A continuation: the proxy's token is answered on the same connection.
    let answer = a.respond(&challenges(&["Negotiate bW9yZQ=="])).unwrap();
    assert_eq!(answer.authorization.expose_secret(), "Negotiate dG9rMg==");
    assert!(!answer.fresh_connection_ok);
    // Done on our side and still 407: rejected.
    let err = a.respond(&challenges(&["Negotiate b3RoZXI="])).unwrap_err();
    assert_eq!(err.code(), Code::PROXY_AUTH_FAILED);
    assert!(
        err.to_string().contains("Negotiate") && err.to_string().contains("alice@UPLINK.TEST"),
        "{err}"
    );
}

#[test]
fn a_bare_negotiate_after_our_token_is_a_rejection() {
    let mut a = kerberos(scripted);
    a.respond(&challenges(&["Negotiate"])).unwrap();
    let err = a.respond(&challenges(&["Negotiate", "NTLM"])).unwrap_err();
    assert_eq!(err.code(), Code::PROXY_AUTH_FAILED);
    let mut a = kerberos(scripted);
    a.respond(&challenges(&["Negotiate"])).unwrap();
    let err = a.respond(&challenges(&["Negotiate a"])).unwrap_err();
    // Not base64: the proxy's fault.
    assert_eq!(err.code(), Code::PROXY_PROTOCOL_ERROR, "{err}");
}

#[test]
fn without_a_kdc_ntlm_is_used_and_the_reason_is_kept() {
    let mut a = kerberos(no_kdc);
    let answer = a.respond(&challenges(&["Negotiate", "NTLM"])).unwrap();
    assert_eq!(answer.scheme, Scheme::Ntlm);
    let mut a = kerberos(no_kdc);
    let err = a.respond(&challenges(&["Negotiate"])).unwrap_err();
    assert_eq!(err.code(), Code::PROXY_AUTH_REQUIRED);
    assert!(err.to_string().contains("Cannot contact any KDC"), "{err}");
    no_secret(&format!("{err} {err:?} {a:?}"));
}

#[test]
fn a_password_the_kdc_refuses_is_auth_failed_at_once() {
    let mut a = Authenticator::new(
        Some(("alice@UPLINK.TEST".into(), SecretString::from("wrong"))),
        "h:443",
        Options {
            negotiator: Some(negotiate::NegotiatorFactory(no_kdc)),
            ..Options::default()
        },
    );
    let err = a.respond(&challenges(&["Negotiate", "NTLM"])).unwrap_err();
    assert_eq!(err.code(), Code::PROXY_AUTH_FAILED);
    assert!(
        err.to_string().contains("KDC refused") && err.to_string().contains("alice@UPLINK.TEST"),
        "{err}"
    );
}
