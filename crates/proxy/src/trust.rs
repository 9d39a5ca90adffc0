//! How far a route's proxies are trusted: where each came from, which credentials it may receive,
//! and whether its refusal ends the walk of the route.
//!
//! A proxy an administrator named (`--url`, a PAC file, a PAC at an `https://` URL, the captured
//! environment) is trusted with the configured credentials, by any scheme it asks for, and its
//! refusal is an answer. A proxy that came from **discovery** — named by a WPAD script, or by a
//! PAC script fetched over plain `http://`, which anyone on the path can rewrite — may be anyone's:
//! a rogue DHCP server or `wpad.<domain>` host names its own proxy and collects whatever the sensor
//! sends it. So such a proxy:
//!
//! - receives the credentials only if its host is in the administrator's allow-list
//!   ([`CredentialHosts`], `uplink sensor proxy set --credential-hosts HOST[,HOST…]`), and then
//!   only by a challenge-response scheme (Digest, NTLM, Negotiate): never Basic, never SOCKS5's
//!   clear-text username/password, which would hand the password itself to whoever answers on that
//!   name;
//! - when it refuses (asks for credentials it does not get, rejects them, denies the tunnel,
//!   intercepts TLS), the route moves on to its next candidate — DIRECT when the fallback policy
//!   allows — as it does when a proxy cannot be reached, so a rogue network cannot hold the
//!   sensor's events back by naming a proxy that says no.
//!
//! Pure: the decisions here are tables; `uplink-sensor`'s `link` module applies them.

use std::net::IpAddr;

use uplink_proxyauth::{Options as AuthOptions, Scheme};
use uplink_url::ProxyKind;

use crate::noproxy::normalize_host;

/// How discovery named a proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discovery {
    /// A script found by WPAD (DHCP option 252 or `wpad.<domain>`).
    Wpad,
    /// A PAC script the administrator configured, fetched over plain `http://`.
    PacOverHttp,
}

impl Discovery {
    /// For messages: "came from {describe}".
    pub fn describe(self) -> &'static str {
        match self {
            Discovery::Wpad => "WPAD discovery",
            Discovery::PacOverHttp => "a PAC script fetched over plain http://",
        }
    }
}

/// Where a proxy of a route came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// An administrator named it (explicit URL, captured environment, PAC file or `https://` PAC).
    Configured,
    /// Discovery named it.
    Discovered(Discovery),
}

impl Origin {
    /// The origin of the proxies a PAC script at `pac` (a path or a URL) names.
    pub fn of_pac(pac: &str) -> Origin {
        if pac.trim().to_ascii_lowercase().starts_with("http://") {
            Origin::Discovered(Discovery::PacOverHttp)
        } else {
            Origin::Configured
        }
    }

    pub fn discovered(self) -> bool {
        matches!(self, Origin::Discovered(_))
    }
}

/// What a proxy may be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyAuth {
    /// The configured credentials, if any, by whichever scheme the proxy asks for.
    Any,
    /// The configured credentials, by Digest, NTLM or Negotiate only (a discovered proxy whose
    /// host is in the allow-list).
    ChallengeResponse,
    /// The configured credentials are withheld from this proxy: why (no secret in it).
    Withheld(String),
}

impl ProxyAuth {
    /// The authentication options for the CONNECT exchange: Basic is left out of the preference
    /// (and never sent pre-emptively) unless any scheme is allowed.
    pub fn auth_options(&self) -> AuthOptions {
        let mut o = AuthOptions::default();
        if *self != ProxyAuth::Any {
            o.preference.retain(|s| *s != Scheme::Basic);
            o.preemptive_basic = false;
        }
        o
    }

    /// Whether `scheme` may carry the credentials.
    pub fn allows(&self, scheme: Scheme) -> bool {
        match self {
            ProxyAuth::Any => true,
            ProxyAuth::ChallengeResponse => scheme != Scheme::Basic,
            ProxyAuth::Withheld(_) => false,
        }
    }
}

/// The administrator's allow-list of proxy hosts that may receive credentials when discovery
/// named them: host names and addresses as given (case-insensitive, a final dot ignored), and
/// `*.corp.example` for every name below `corp.example` (not `corp.example` itself).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CredentialHosts {
    entries: Vec<HostPattern>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Exact(String),
    Addr(IpAddr),
    /// `.corp.example`: names ending with it.
    Below(String),
}

impl CredentialHosts {
    /// The allow-list from stored entries. Entries that [`check_entry`] refuses match nothing.
    pub fn new<S: AsRef<str>>(entries: &[S]) -> CredentialHosts {
        CredentialHosts {
            entries: entries
                .iter()
                .filter_map(|e| pattern(e.as_ref()).ok())
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether the proxy host `host` (a name or an address, IPv6 with or without brackets) is
    /// allowed.
    pub fn matches(&self, host: &str) -> bool {
        let h = normalize_host(host);
        let addr: Option<IpAddr> = h.parse().ok();
        self.entries.iter().any(|p| match p {
            HostPattern::Exact(e) => *e == h,
            HostPattern::Addr(a) => addr == Some(*a),
            HostPattern::Below(suffix) => addr.is_none() && h.ends_with(suffix.as_str()),
        })
    }
}

/// Checks one allow-list entry as an administrator typed it; returns it normalised (lowercase,
/// punycode, no final dot, no brackets) or why it cannot be used.
pub fn check_entry(entry: &str) -> Result<String, String> {
    pattern(entry)?;
    let t = entry.trim();
    Ok(match t.strip_prefix("*.") {
        Some(rest) => format!("*.{}", normalize_host(rest)),
        None => normalize_host(t),
    })
}

/// Parses a comma-separated list (`--credential-hosts`): each entry checked, blanks around
/// entries ignored; an empty list means none.
pub fn parse_list(list: &str) -> Result<Vec<String>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| check_entry(e).map_err(|why| format!("{e:?}: {why}")))
        .collect()
}

fn pattern(entry: &str) -> Result<HostPattern, String> {
    let t = entry.trim();
    if t.is_empty() {
        return Err("an empty entry".into());
    }
    if let Some(rest) = t.strip_prefix("*.") {
        let suffix = normalize_host(rest);
        if !is_name(&suffix) {
            return Err("a wildcard needs a domain after `*.` (e.g. *.corp.example)".into());
        }
        return Ok(HostPattern::Below(format!(".{suffix}")));
    }
    if t.contains('*') {
        return Err("`*` is allowed only as a whole first label (`*.corp.example`); a list that allows every proxy would defeat it".into());
    }
    let h = normalize_host(t);
    if let Ok(addr) = h.parse::<IpAddr>() {
        return Ok(HostPattern::Addr(addr));
    }
    if h.contains(':') {
        return Err(
            "give the host without a port or scheme (the proxy's host name or address)".into(),
        );
    }
    if !is_name(&h) {
        return Err("not a host name or an address".into());
    }
    Ok(HostPattern::Exact(h))
}

fn is_name(h: &str) -> bool {
    !h.is_empty()
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// What the proxy `host` (of kind `kind`, from `origin`) may receive, when credentials are
/// configured.
pub fn release(
    origin: Origin,
    kind: ProxyKind,
    host: &str,
    allowed: &CredentialHosts,
) -> ProxyAuth {
    let Origin::Discovered(how) = origin else {
        return ProxyAuth::Any;
    };
    if !allowed.matches(host) {
        let list = if allowed.is_empty() {
            "no credential allow-list is set".to_owned()
        } else {
            "it is not in the credential allow-list".to_owned()
        };
        return ProxyAuth::Withheld(format!(
            "the proxy {host} came from {} and {list} (uplink sensor proxy set --credential-hosts)",
            how.describe()
        ));
    }
    match kind {
        ProxyKind::Socks5 { .. } => ProxyAuth::Withheld(format!(
            "the SOCKS5 proxy {host} came from {}, and SOCKS5 would carry the password in clear (only Digest, NTLM and Negotiate are used with discovered proxies)",
            how.describe()
        )),
        ProxyKind::Http | ProxyKind::Https => ProxyAuth::ChallengeResponse,
    }
}

/// When a proxy asked for authentication and got none it could use (`offered`: the schemes it
/// offered), whether that is this policy's doing: why, for `PROXY_CREDENTIALS_WITHHELD`.
pub fn withheld(auth: &ProxyAuth, offered: &[String]) -> Option<String> {
    match auth {
        ProxyAuth::Any => None,
        ProxyAuth::Withheld(why) => Some(why.clone()),
        ProxyAuth::ChallengeResponse => offered
            .iter()
            .any(|s| s.eq_ignore_ascii_case("Basic"))
            .then(|| {
                format!(
                    "it offers {}, and Basic would hand the password itself to a proxy that came from discovery: only Digest, NTLM and Negotiate are used with it",
                    offered.join(", ")
                )
            }),
    }
}

/// How an attempt through one candidate failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The proxy could not be reached, or spoke no HTTP/TLS/SOCKS.
    Unreachable,
    /// The proxy answered and refused: authentication asked for, withheld, rejected; the tunnel
    /// denied; the service's certificate replaced by the proxy's.
    Refused,
    /// Anything else (the service itself, local configuration, timeouts past the proxy).
    Other,
}

/// After a candidate failed, whether the route's next candidate is tried.
pub fn try_next(origin: Origin, failure: Failure) -> bool {
    match failure {
        Failure::Unreachable => true,
        // A refusal by a proxy an administrator named is an answer: going around it would hide
        // the problem (and may be exactly what the network forbids). A discovered proxy's is not.
        Failure::Refused => origin.discovered(),
        Failure::Other => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list_matching() {
        let allowed = CredentialHosts::new(&[
            "proxy.corp.example",
            "*.proxies.example",
            "10.0.0.8",
            "2001:db8::8",
            "Bücher.example",
        ]);
        let cases: &[(&str, bool)] = &[
            ("proxy.corp.example", true),
            ("PROXY.corp.example.", true),
            ("evil-proxy.corp.example", false),
            ("proxy.corp.example.evil.test", false),
            ("a.proxies.example", true),
            ("a.b.proxies.example", true),
            ("proxies.example", false),
            ("xproxies.example", false),
            ("10.0.0.8", true),
            ("10.0.0.9", false),
            ("[2001:db8::8]", true),
            ("2001:db8:0::8", true),
            ("xn--bcher-kva.example", true),
            ("bücher.example", true),
            ("", false),
        ];
        for (host, want) in cases {
            assert_eq!(allowed.matches(host), *want, "{host:?}");
        }
        assert!(!CredentialHosts::default().matches("proxy.corp.example"));
        // A stored entry that cannot be used matches nothing (and does not widen anything).
        let odd = CredentialHosts::new(&["*", "a*.example", "p:3128"]);
        assert!(odd.is_empty());
        assert!(!odd.matches("a.example") && !odd.matches("p"));
    }

    #[test]
    fn allow_list_entries_are_checked() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("proxy.corp.example", Ok("proxy.corp.example")),
            (" Proxy.Corp.Example. ", Ok("proxy.corp.example")),
            ("*.Corp.Example", Ok("*.corp.example")),
            ("10.0.0.8", Ok("10.0.0.8")),
            ("[2001:db8::8]", Ok("2001:db8::8")),
            ("*", Err("only as a whole first label")),
            ("*example.com", Err("only as a whole first label")),
            ("a.*.example", Err("only as a whole first label")),
            ("*.", Err("a wildcard needs a domain")),
            ("proxy:3128", Err("without a port")),
            ("http://proxy", Err("without a port")),
            ("pro xy", Err("not a host name")),
            ("proxy/x", Err("not a host name")),
        ];
        for (entry, want) in cases {
            match (check_entry(entry), want) {
                (Ok(got), Ok(w)) => assert_eq!(got, *w, "{entry:?}"),
                (Err(got), Err(w)) => assert!(got.contains(w), "{entry:?}: {got}"),
                (got, w) => panic!("{entry:?}: got {got:?}, want {w:?}"),
            }
        }
        assert_eq!(
            parse_list(" a.example, *.b.example ,,").unwrap(),
            ["a.example", "*.b.example"]
        );
        assert_eq!(parse_list("").unwrap(), Vec::<String>::new());
        let e = parse_list("a.example,*").unwrap_err();
        assert!(e.starts_with("\"*\""), "{e}");
    }

    #[test]
    fn which_credentials_go_to_which_proxy() {
        use Discovery::*;
        let allowed = CredentialHosts::new(&["proxy.corp.example", "*.corp.example"]);
        let none = CredentialHosts::default();
        let http = ProxyKind::Http;
        let https = ProxyKind::Https;
        let socks = ProxyKind::Socks5 { remote_dns: true };
        // (origin, kind, host, allow-list, expected: "any" | "challenge" | withheld text)
        let cases: Vec<(Origin, ProxyKind, &str, &CredentialHosts, &str)> = vec![
            (Origin::Configured, http, "evil.test", &none, "any"),
            (Origin::Configured, socks, "evil.test", &none, "any"),
            (
                Origin::Discovered(Wpad),
                http,
                "evil.test",
                &none,
                "no credential allow-list is set",
            ),
            (
                Origin::Discovered(Wpad),
                http,
                "evil.test",
                &allowed,
                "not in the credential allow-list",
            ),
            (
                Origin::Discovered(Wpad),
                http,
                "proxy.corp.example",
                &allowed,
                "challenge",
            ),
            (
                Origin::Discovered(Wpad),
                https,
                "p2.corp.example",
                &allowed,
                "challenge",
            ),
            (
                Origin::Discovered(Wpad),
                socks,
                "p2.corp.example",
                &allowed,
                "in clear",
            ),
            (
                Origin::Discovered(PacOverHttp),
                http,
                "evil.test",
                &allowed,
                "a PAC script fetched over plain http://",
            ),
            (
                Origin::Discovered(PacOverHttp),
                http,
                "proxy.corp.example",
                &allowed,
                "challenge",
            ),
        ];
        for (origin, kind, host, list, want) in cases {
            let got = release(origin, kind, host, list);
            match (&got, want) {
                (ProxyAuth::Any, "any") | (ProxyAuth::ChallengeResponse, "challenge") => {}
                (ProxyAuth::Withheld(why), w) if why.contains(w) => {
                    assert!(why.contains(host), "{why}")
                }
                _ => panic!("{origin:?} {kind:?} {host}: got {got:?}, want {want}"),
            }
        }
    }

    #[test]
    fn basic_is_never_offered_to_a_discovered_proxy() {
        for (auth, basic) in [
            (ProxyAuth::Any, true),
            (ProxyAuth::ChallengeResponse, false),
            (ProxyAuth::Withheld("x".into()), false),
        ] {
            let o = auth.auth_options();
            assert_eq!(o.preference.contains(&Scheme::Basic), basic, "{auth:?}");
            assert_eq!(auth.allows(Scheme::Basic), basic, "{auth:?}");
            assert!(!o.preemptive_basic || basic);
        }
        let o = ProxyAuth::ChallengeResponse.auth_options();
        assert_eq!(
            o.preference,
            [Scheme::Negotiate, Scheme::Ntlm, Scheme::Digest],
            "the others keep their order"
        );
    }

    #[test]
    fn an_unanswered_demand_is_withheld_only_by_this_policy() {
        let offers = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let why = ProxyAuth::Withheld("not allowed".into());
        let cases: Vec<(ProxyAuth, Vec<String>, Option<&str>)> = vec![
            (ProxyAuth::Any, offers(&["Basic"]), None),
            (why.clone(), offers(&["Basic"]), Some("not allowed")),
            (why, offers(&["NTLM"]), Some("not allowed")),
            (
                ProxyAuth::ChallengeResponse,
                offers(&["Basic"]),
                Some("it offers Basic, and Basic"),
            ),
            (
                ProxyAuth::ChallengeResponse,
                offers(&["Negotiate", "basic"]),
                Some("it offers Negotiate, basic"),
            ),
            // Negotiate failed on its own (no Kerberos): not this policy's doing.
            (ProxyAuth::ChallengeResponse, offers(&["Negotiate"]), None),
        ];
        for (auth, offered, want) in cases {
            let got = withheld(&auth, &offered);
            match want {
                None => assert_eq!(got, None, "{auth:?} {offered:?}"),
                Some(w) => assert!(
                    got.as_deref().is_some_and(|g| g.contains(w)),
                    "{auth:?} {offered:?}: {got:?}"
                ),
            }
        }
    }

    #[test]
    fn pac_origin() {
        let cases = [
            ("/etc/uplink/corp.pac", Origin::Configured),
            ("https://pac.corp.example/p.pac", Origin::Configured),
            (
                "HTTP://pac.corp.example/p.pac",
                Origin::Discovered(Discovery::PacOverHttp),
            ),
            (
                "http://10.0.0.1/p.pac",
                Origin::Discovered(Discovery::PacOverHttp),
            ),
        ];
        for (pac, want) in cases {
            assert_eq!(Origin::of_pac(pac), want, "{pac}");
        }
    }

    #[test]
    fn which_failures_move_on_to_the_next_candidate() {
        let wpad = Origin::Discovered(Discovery::Wpad);
        let cases = [
            (Origin::Configured, Failure::Unreachable, true),
            (Origin::Configured, Failure::Refused, false),
            (Origin::Configured, Failure::Other, false),
            (wpad, Failure::Unreachable, true),
            (wpad, Failure::Refused, true),
            (wpad, Failure::Other, false),
            (
                Origin::Discovered(Discovery::PacOverHttp),
                Failure::Refused,
                true,
            ),
        ];
        for (origin, failure, want) in cases {
            assert_eq!(try_next(origin, failure), want, "{origin:?} {failure:?}");
        }
    }
}
