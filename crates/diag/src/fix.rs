//! Fixes fitted to the case: a [`Diagnosis`] is a code, the step it happened at and the
//! [`Context`] it happened in (who acts on it, the route, the target's host and port, the HTTP
//! status, the proxy's authentication schemes and its own words), and [`Diagnosis::fix`]
//! composes the line an administrator reads from all of it. [`Code::fix`] stays the generic line
//! for a code alone (what the service's error bodies carry); a caller that knows more says so.
//!
//! The sensor's status and heartbeats and `uplink check`'s report build their fixes here, so the
//! same failure gets the same advice wherever it is shown.

use crate::{Code, Step};

/// Who will act on the fix: the settings to change live in different places.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Who {
    /// The installed sensor: its settings change with `uplink sensor proxy set` / `install`.
    #[default]
    Sensor,
    /// A command whose proxy came from its own command line (`uplink check --proxy`): the fix
    /// names those flags (`--proxy-user`, `--proxy-password`, `--proxy-ca`).
    CommandLine,
}

/// What was being done when a code was met. Every field is optional: the fix uses what it has.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Context {
    pub who: Who,
    /// The route candidate: `DIRECT`, `PROXY host:port`, `HTTPS host:port`, `SOCKS5 host:port`.
    pub route: Option<String>,
    /// The target's host and port (the service, or the URL checked).
    pub host: Option<String>,
    pub port: Option<u16>,
    /// The HTTP status of the answer (the service's, or the proxy's to CONNECT).
    pub status: Option<u16>,
    /// The authentication schemes the proxy offered (`Basic`, `NTLM`, `Negotiate`, …).
    pub schemes: Vec<String>,
    /// Credentials were configured for the proxy.
    pub credentials: bool,
    /// The peer's own words: Squid's `X-Squid-Error`, a SOCKS reply's meaning.
    pub reason: Option<String>,
    /// The expected server CA is a workspace CA (the sensor's bundle), not the system roots.
    pub workspace_ca: bool,
}

/// A failure as the administrator sees it: its code, where it happened, and its context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnosis {
    pub code: Code,
    pub step: Step,
    pub context: Context,
}

impl Diagnosis {
    /// A diagnosis at the code's own step.
    pub fn new(code: Code, context: Context) -> Self {
        Diagnosis {
            code,
            step: code.step(),
            context,
        }
    }

    /// The same diagnosis, at `step` (a `TIMEOUT` waiting for an HTTP answer is at `http`).
    pub fn at(mut self, step: Step) -> Self {
        self.step = step;
        self
    }

    /// The one-line fix for this code in this context.
    pub fn fix(&self) -> String {
        let cx = &self.context;
        let host = cx.host.as_deref().unwrap_or("the service");
        let port = cx.port.map(|p| p.to_string());
        let port = port.as_deref().unwrap_or("its port");
        let proxy = cx
            .route
            .as_deref()
            .filter(|r| *r != "DIRECT")
            .and_then(|r| r.split_once(' ').map(|(_, p)| p))
            .map(|p| format!("the proxy {p}"))
            .unwrap_or_else(|| "the proxy".to_owned());
        let command_line = cx.who == Who::CommandLine;
        match self.code {
            Code::PROXY_CONNECT_DENIED => {
                let said = cx
                    .status
                    .map(|s| format!(" (it answered {s})"))
                    .or_else(|| cx.reason.as_ref().map(|r| format!(" ({r})")))
                    .unwrap_or_default();
                format!(
                    "{} refuses to tunnel to {host}{said}: ask its administrator to allow CONNECT to {host} on port {port}, or use another route.",
                    capitalize(&proxy)
                )
            }
            Code::PROXY_UPSTREAM_FAILED => {
                let said = cx
                    .reason
                    .as_ref()
                    .map(|r| format!(" (it says: {r})"))
                    .unwrap_or_default();
                format!(
                    "{} could not reach {host} on port {port} itself{said}: this is not a policy denial; its administrator should check the proxy's DNS and outbound route to {host}:{port} (and that the service listens there), or use another route.",
                    capitalize(&proxy)
                )
            }
            Code::PROXY_AUTH_REQUIRED => {
                let negotiate_only = !cx.schemes.is_empty()
                    && cx.schemes.iter().all(|s| {
                        s.eq_ignore_ascii_case("Negotiate") || s.eq_ignore_ascii_case("Kerberos")
                    });
                if cx.credentials && negotiate_only {
                    format!(
                        "{} accepts only Negotiate (Kerberos), which a user name and password do not answer: give this machine a Kerberos ticket (kinit, or a keytab for the service user) with a build that has Kerberos support, or ask the proxy's administrator to also offer NTLM, Digest or Basic.",
                        capitalize(&proxy)
                    )
                } else if cx.credentials {
                    format!(
                        "{} offers only {}, none of which uplink can answer with the credentials given: ask its administrator to offer Basic, Digest, NTLM or Negotiate.",
                        capitalize(&proxy),
                        if cx.schemes.is_empty() { "schemes".to_owned() } else { cx.schemes.join(", ") }
                    )
                } else if command_line {
                    format!(
                        "{} requires authentication: give --proxy-user DOMAIN\\user and --proxy-password ... with --proxy.",
                        capitalize(&proxy)
                    )
                } else {
                    format!(
                        "{} requires authentication: configure a proxy user and password (uplink sensor proxy set --proxy-url URL --proxy-user DOMAIN\\user --proxy-password ...).",
                        capitalize(&proxy)
                    )
                }
            }
            Code::PROXY_AUTH_FAILED => {
                if command_line {
                    format!(
                        "{} rejected the credentials: check --proxy-user (DOMAIN\\user) and --proxy-password.",
                        capitalize(&proxy)
                    )
                } else {
                    format!(
                        "{} rejected the credentials: check the user name (DOMAIN\\user) and password, then set them again (uplink sensor proxy set --proxy-user ... --proxy-password ...).",
                        capitalize(&proxy)
                    )
                }
            }
            Code::PROXY_TLS_UNTRUSTED if command_line => format!(
                "{}'s certificate does not chain to a trusted CA: give its CA with --proxy-ca FILE, or add it to the system roots.",
                capitalize(&proxy)
            ),
            Code::TLS_UNTRUSTED_ROOT if cx.workspace_ca => format!(
                "The certificate of {host} does not chain to the workspace CA this sensor holds: if the workspace was re-created, re-install from the current bundle (uplink sensor install); otherwise check the URL."
            ),
            Code::WORKSPACE_UNKNOWN => format!(
                "No workspace answers at {host}: check the URL (the workspace name in <workspace>sensorapi.<domain>) against the bundle."
            ),
            Code::TCP_REFUSED => format!(
                "Nothing listens on {}: check the port, and that the {} is running.",
                target(cx, host, port),
                if cx.route.as_deref().is_some_and(|r| r != "DIRECT") { "proxy" } else { "service" }
            ),
            Code::TCP_TIMEOUT if cx.route.as_deref().is_some_and(|r| r != "DIRECT") => format!(
                "{} does not answer: a firewall is probably dropping the traffic to it; check its address and port, or use another route.",
                capitalize(&proxy)
            ),
            Code::TCP_TIMEOUT => format!(
                "A firewall is probably dropping the traffic: allow {host} on port {port} outbound, or use the proxy."
            ),
            Code::HTTP_UNEXPECTED_STATUS => match cx.status {
                Some(503) => format!(
                    "{host} is up but cannot take data right now (503: storage down or overloaded): the sensor keeps its events and retries; the service's administrator should check its log and storage."
                ),
                Some(502 | 504) => format!(
                    "A gateway in front of {host} could not reach it ({}): check the load balancer or reverse proxy in front of the service.",
                    cx.status.unwrap_or_default()
                ),
                Some(404) => format!(
                    "{host} does not serve this path (404): check the URL, and that it points at the service and not another web server."
                ),
                Some(421) => format!(
                    "{host} serves another host name on this connection (421): check that no proxy rewrites the host, and the URL."
                ),
                Some(s) if (500..600).contains(&s) => format!(
                    "{host} failed with {s}: the service's administrator should check its log."
                ),
                Some(s) => format!(
                    "{host} answered {s}, which this check does not expect: see the detail for the body, and check the URL."
                ),
                None => format!(
                    "{host} closed the connection without an HTTP answer: check that nothing in the path (a firewall, an inspecting proxy) cuts the connection after TLS."
                ),
            },
            Code::TIMEOUT if self.step == Step::Http => format!(
                "{host} took the connection but sent no HTTP answer in time: the service is stalled or overloaded, or something in the path holds the request; try a longer --timeout, and check the service's load."
            ),
            code => code.fix().to_owned(),
        }
    }
}

fn target(cx: &Context, host: &str, port: &str) -> String {
    match cx.route.as_deref() {
        Some(r) if r != "DIRECT" => r
            .split_once(' ')
            .map(|(_, p)| p.to_owned())
            .unwrap_or_else(|| r.to_owned()),
        _ => format!("{host}:{port}"),
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx() -> Context {
        Context {
            host: Some("ws.example".into()),
            port: Some(18443),
            ..Context::default()
        }
    }

    #[test]
    fn fixes_fit_the_case() {
        let proxy = |c: Context| Context {
            route: Some("PROXY 127.0.0.1:3128".into()),
            ..c
        };
        // (code, step, context, words the fix has, words it must not have)
        type Row = (
            Code,
            Step,
            Context,
            &'static [&'static str],
            &'static [&'static str],
        );
        let table: Vec<Row> = vec![
            // The real port, not 443.
            (
                Code::PROXY_CONNECT_DENIED,
                Step::ProxyConnect,
                Context {
                    status: Some(403),
                    ..proxy(cx())
                },
                &["127.0.0.1:3128", "port 18443", "403"],
                &["443."],
            ),
            (
                Code::PROXY_UPSTREAM_FAILED,
                Step::ProxyConnect,
                Context {
                    reason: Some("ERR_CONNECT_FAIL 111".into()),
                    ..proxy(cx())
                },
                &[
                    "could not reach ws.example on port 18443",
                    "ERR_CONNECT_FAIL",
                    "not a policy denial",
                ],
                &["allow CONNECT"],
            ),
            (
                Code::PROXY_AUTH_REQUIRED,
                Step::ProxyAuth,
                proxy(cx()),
                &["uplink sensor proxy set"],
                &[],
            ),
            (
                Code::PROXY_AUTH_REQUIRED,
                Step::ProxyAuth,
                Context {
                    who: Who::CommandLine,
                    ..proxy(cx())
                },
                &["--proxy-user", "--proxy-password"],
                &["sensor proxy set"],
            ),
            // A Negotiate-only proxy with credentials given: not "configure credentials".
            (
                Code::PROXY_AUTH_REQUIRED,
                Step::ProxyAuth,
                Context {
                    credentials: true,
                    schemes: vec!["Negotiate".into()],
                    ..proxy(cx())
                },
                &["only Negotiate", "Kerberos"],
                &["configure a proxy user"],
            ),
            (
                Code::PROXY_AUTH_FAILED,
                Step::ProxyAuth,
                Context {
                    who: Who::CommandLine,
                    ..proxy(cx())
                },
                &["--proxy-password"],
                &["sensor proxy set"],
            ),
            (
                Code::PROXY_AUTH_FAILED,
                Step::ProxyAuth,
                proxy(cx()),
                &["uplink sensor proxy set"],
                &[],
            ),
            (
                Code::PROXY_TLS_UNTRUSTED,
                Step::ProxyConnect,
                Context {
                    who: Who::CommandLine,
                    ..proxy(cx())
                },
                &["--proxy-ca FILE"],
                &["sensor proxy set"],
            ),
            (
                Code::HTTP_UNEXPECTED_STATUS,
                Step::Http,
                Context {
                    status: Some(503),
                    ..cx()
                },
                &["up but cannot take data"],
                &["see the detail"],
            ),
            (
                Code::HTTP_UNEXPECTED_STATUS,
                Step::Http,
                Context {
                    status: Some(404),
                    ..cx()
                },
                &["check the URL"],
                &[],
            ),
            (
                Code::HTTP_UNEXPECTED_STATUS,
                Step::Http,
                cx(),
                &["without an HTTP answer"],
                &[],
            ),
            (
                Code::TIMEOUT,
                Step::Http,
                cx(),
                &["no HTTP answer in time", "--timeout"],
                &["last error"],
            ),
            (
                Code::TLS_UNTRUSTED_ROOT,
                Step::Tls,
                Context {
                    workspace_ca: true,
                    ..cx()
                },
                &["re-install from the current bundle"],
                &["SSL inspection"],
            ),
            (
                Code::WORKSPACE_UNKNOWN,
                Step::Tls,
                cx(),
                &["No workspace answers at ws.example"],
                &[],
            ),
            (
                Code::TCP_REFUSED,
                Step::Tcp,
                cx(),
                &["ws.example:18443"],
                &[],
            ),
            (
                Code::TCP_REFUSED,
                Step::Tcp,
                proxy(cx()),
                &["127.0.0.1:3128", "proxy"],
                &[],
            ),
            (
                Code::TCP_TIMEOUT,
                Step::Tcp,
                proxy(cx()),
                &["127.0.0.1:3128 does not answer"],
                &[],
            ),
            (
                Code::TCP_TIMEOUT,
                Step::Tcp,
                cx(),
                &["allow ws.example on port 18443"],
                &[],
            ),
            (
                Code::DNS_NXDOMAIN,
                Step::Dns,
                cx(),
                &["Check the host name for typos"],
                &[],
            ),
        ];
        for (code, step, context, want, never) in table {
            let fix = Diagnosis::new(code, context).at(step).fix();
            for w in want {
                assert!(fix.contains(w), "{code} at {step:?}: {fix:?} lacks {w:?}");
            }
            for n in never {
                assert!(!fix.contains(n), "{code} at {step:?}: {fix:?} has {n:?}");
            }
        }
    }

    #[test]
    fn every_code_has_a_fix_in_an_empty_context() {
        for &code in Code::ALL {
            assert!(
                Diagnosis::new(code, Context::default()).fix().len() > 20,
                "{code}"
            );
        }
    }
}
