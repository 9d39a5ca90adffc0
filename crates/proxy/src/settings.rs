//! Proxy settings, their precedence, and the ordered route they give for a destination.
//!
//! The configured mode decides:
//!
//! | mode | route | default fallback |
//! |---|---|---|
//! | `explicit` | the configured proxy, unless the host is in its bypass list | `never` |
//! | `env` | the proxy captured from the environment (`https_proxy`, `all_proxy`), unless in `no_proxy` | `direct` |
//! | `pac` | what the PAC script returns, in its order | `never` |
//! | `wpad` | what the discovered PAC script returns | `direct` |
//! | `direct` | DIRECT | — |
//! | `auto` (nothing configured) | WPAD if discovery finds a script, else the captured environment, else DIRECT | `direct` |
//!
//! DIRECT is appended to a proxy route only when the fallback policy allows it: discovered
//! proxies (environment, WPAD) fall back by default, as the seeds' sensor does when its proxy is
//! unreachable; proxies an administrator named (explicit, PAC) do not, unless told to.
//!
//! [`explain`] is pure: it returns every source considered, what it said or why it was skipped,
//! and the final ordered route. The sensor uses the route; `uplink proxy explain` prints it all.
//! PAC evaluation and WPAD discovery plug in here (see the PAC/WPAD issue); until then those
//! sources say so instead of guessing.

use serde::{Deserialize, Serialize};
use uplink_diag::Code;
use uplink_url::{Credentials, ProxyUrl};

use crate::bypass::WinInetBypass;
use crate::env::{parse_env_proxy, EnvCapture};
use crate::noproxy::NoProxy;
use crate::trust::{self, CredentialHosts, Origin, ProxyAuth};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Explicit,
    Pac,
    Wpad,
    Env,
    Direct,
    Auto,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Explicit => "explicit",
            Mode::Pac => "pac",
            Mode::Wpad => "wpad",
            Mode::Env => "env",
            Mode::Direct => "direct",
            Mode::Auto => "auto",
        }
    }

    /// The fallback policy when none is set.
    pub fn default_fallback(self) -> Fallback {
        match self {
            Mode::Explicit | Mode::Pac => Fallback::Never,
            Mode::Env | Mode::Wpad | Mode::Auto | Mode::Direct => Fallback::Direct,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fallback {
    Direct,
    Never,
}

impl Fallback {
    pub fn as_str(self) -> &'static str {
        match self {
            Fallback::Direct => "direct",
            Fallback::Never => "never",
        }
    }
}

/// The `[proxy]` section of the sensor's configuration. Passwords are sealed by the caller.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxySettings {
    /// Absent: `explicit` when `url` is set, else `auto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// The explicit proxy, `http://HOST:PORT` (never with credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Sealed: `enc:v1:...`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Hosts that skip the explicit proxy (NO_PROXY syntax).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bypass: Option<String>,
    /// Hosts that skip the explicit proxy, WinINet syntax (settings imported from Windows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wininet_bypass: Option<String>,
    /// The PAC file or URL (`pac` mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pac: Option<String>,
    /// A PEM file of the CA(s) to trust for HTTPS proxies (`https://` URLs, PAC `HTTPS`
    /// entries) instead of the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_ca: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Fallback>,
    /// Where these settings came from (install switches, `proxy set`, a .reg file...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// The proxy environment captured at install or with `--from-env`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<EnvCapture>,
    /// Proxy hosts that may receive the credentials when discovery named them (WPAD, a PAC over
    /// plain http://), and then by Digest, NTLM or Negotiate only (see [`crate::trust`]). Kept
    /// across `proxy set` changes: it is a policy, not a source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_hosts: Option<Vec<String>>,
}

impl ProxySettings {
    pub fn mode(&self) -> Mode {
        self.mode.unwrap_or(if self.url.is_some() {
            Mode::Explicit
        } else {
            Mode::Auto
        })
    }

    pub fn fallback(&self) -> Fallback {
        self.fallback.unwrap_or(self.mode().default_fallback())
    }

    /// The allow-list of proxy hosts that may receive credentials when discovered.
    pub fn credential_hosts(&self) -> CredentialHosts {
        CredentialHosts::new(self.credential_hosts.as_deref().unwrap_or_default())
    }
}

/// One step of a route.
#[derive(Clone)]
pub enum Candidate {
    Direct,
    Proxy {
        /// Its scheme says how to talk to it (`http`, `https`, `socks5`, `socks5h`).
        url: ProxyUrl,
        credentials: Option<Credentials>,
        /// For an HTTPS proxy: the CA file to trust instead of the system roots.
        proxy_ca: Option<String>,
        /// Who named it: an administrator, or discovery.
        origin: Origin,
        /// What it may be sent; `credentials` is None when they are withheld.
        auth: ProxyAuth,
    },
}

impl Candidate {
    /// A proxy an administrator named, trusted with `credentials` by any scheme.
    pub fn configured(
        url: ProxyUrl,
        credentials: Option<Credentials>,
        proxy_ca: Option<String>,
    ) -> Candidate {
        Candidate::Proxy {
            url,
            credentials,
            proxy_ca,
            origin: Origin::Configured,
            auth: ProxyAuth::Any,
        }
    }

    /// A proxy named by `origin`, with the configured `credentials` released to it only as far
    /// as [`trust::release`] allows.
    fn named_by(
        origin: Origin,
        url: ProxyUrl,
        credentials: &Option<Credentials>,
        proxy_ca: Option<String>,
        allowed: &CredentialHosts,
    ) -> Candidate {
        let auth = match credentials {
            Some(_) => trust::release(origin, url.kind(), &url.host, allowed),
            None => ProxyAuth::Any,
        };
        let credentials = match auth {
            ProxyAuth::Withheld(_) => None,
            _ => credentials.clone(),
        };
        Candidate::Proxy {
            url,
            credentials,
            proxy_ca,
            origin,
            auth,
        }
    }

    /// Who named it (DIRECT: configured).
    pub fn origin(&self) -> Origin {
        match self {
            Candidate::Direct => Origin::Configured,
            Candidate::Proxy { origin, .. } => *origin,
        }
    }

    /// What `uplink proxy explain` says about the credentials of this candidate, when they are
    /// not simply sent: withheld (and why), or by challenge-response schemes only.
    pub fn credential_note(&self) -> Option<String> {
        match self {
            Candidate::Proxy {
                auth: ProxyAuth::Withheld(why),
                ..
            } => Some(format!("credentials withheld: {why}")),
            Candidate::Proxy {
                auth: ProxyAuth::ChallengeResponse,
                origin: Origin::Discovered(how),
                url,
                ..
            } => Some(format!(
                "credentials by Digest, NTLM or Negotiate only, never Basic: the proxy {} came from {} and is in the credential allow-list",
                url.host,
                how.describe()
            )),
            _ => None,
        }
    }

    /// `host:port` of a proxy, `None` for DIRECT (the bad-proxy cache key).
    pub fn proxy_key(&self) -> Option<String> {
        match self {
            Candidate::Direct => None,
            Candidate::Proxy { url, .. } => Some(url.host_port()),
        }
    }
}

impl std::fmt::Display for Candidate {
    /// PAC notation: `DIRECT`, `PROXY host:port`, `HTTPS host:port`, `SOCKS5 host:port`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Candidate::Direct => f.write_str("DIRECT"),
            Candidate::Proxy { url, .. } => {
                write!(f, "{} {}", url.kind().pac_keyword(), url.host_port())
            }
        }
    }
}

impl std::fmt::Debug for Candidate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

/// One source considered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceReport {
    pub source: String,
    pub used: bool,
    pub detail: String,
}

/// Everything `explain` found.
#[derive(Debug, Clone)]
pub struct Explanation {
    pub mode: Mode,
    pub fallback: Fallback,
    pub sources: Vec<SourceReport>,
    pub route: Vec<Candidate>,
    /// Set when the settings cannot give any route.
    pub problem: Option<String>,
    /// The code of `problem`: `CONFIG_INVALID` for the settings themselves, `PAC_*` when the PAC
    /// script could not be fetched or run, `WPAD_NOT_FOUND` when discovery found none.
    pub problem_code: Option<Code>,
}

/// Why a PAC or WPAD source gave no answer: its code (`PAC_FETCH_FAILED`, `PAC_SCRIPT_ERROR`,
/// `PAC_TIMEOUT`, …) and what happened, with which input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub code: Code,
    pub message: String,
}

impl Problem {
    pub fn new(code: Code, message: impl Into<String>) -> Problem {
        Problem {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// A bare message is a script error (what tables and older callers pass).
impl From<&str> for Problem {
    fn from(message: &str) -> Problem {
        Problem::new(Code::PAC_SCRIPT_ERROR, message)
    }
}

impl From<String> for Problem {
    fn from(message: String) -> Problem {
        Problem::new(Code::PAC_SCRIPT_ERROR, message)
    }
}

/// Secrets the caller unseals (the proxy crate never sees the key).
pub trait Unseal {
    fn unseal(&self, sealed: &str) -> Result<secrecy::SecretString, String>;
}

impl<F: Fn(&str) -> Result<secrecy::SecretString, String>> Unseal for F {
    fn unseal(&self, sealed: &str) -> Result<secrecy::SecretString, String> {
        self(sealed)
    }
}

/// One entry of a PAC result, already parsed (`PROXY h:p`, `DIRECT`, or something this build
/// cannot use yet, such as `HTTPS h:p` or `SOCKS5 h:p`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PacEntry {
    Direct,
    Proxy { host: String, port: u16 },
    Unsupported(String),
}

/// A PAC script's answer for the destination. The caller loads and evaluates the script (this
/// crate does no I/O) and hands the outcome to [`explain_with`].
#[derive(Debug, Clone)]
pub struct PacOutcome {
    /// Where the script came from: a path or a URL.
    pub script: String,
    /// The string FindProxyForURL returned, when it returned one.
    pub raw: Option<String>,
    /// The parsed entries, in the script's order, or why there are none.
    pub result: Result<Vec<PacEntry>, Problem>,
}

/// What WPAD discovery did (the caller runs it).
#[derive(Debug, Clone)]
pub struct WpadOutcome {
    /// Each step tried, for explanations.
    pub steps: Vec<String>,
    /// The script discovery found and its answer, if it found one.
    pub pac: Option<PacOutcome>,
}

/// Answers from the sources that need I/O, obtained by the caller beforehand.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub pac: Option<PacOutcome>,
    pub wpad: Option<WpadOutcome>,
}

/// The route for `host:port` under `settings`, when no PAC or WPAD answer is available.
pub fn explain(
    settings: &ProxySettings,
    host: &str,
    port: u16,
    unseal: &dyn Unseal,
) -> Explanation {
    explain_with(settings, host, port, unseal, &Inputs::default())
}

/// Turns a PAC outcome into route candidates (PAC's order kept; DIRECT where the script put it),
/// with `credentials` for its proxies as far as their `origin` and the allow-list permit.
/// Returns the candidates and a description.
fn pac_candidates(
    outcome: &PacOutcome,
    credentials: &Option<Credentials>,
    proxy_ca: &Option<String>,
    origin: Origin,
    allowed: &CredentialHosts,
) -> Result<(Vec<Candidate>, String), Problem> {
    let entries = outcome
        .result
        .as_ref()
        .map_err(|e| Problem::new(e.code, format!("{}: {e}", outcome.script)))?;
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for e in entries {
        match e {
            PacEntry::Direct => out.push(Candidate::Direct),
            PacEntry::Proxy { host, port } => match ProxyUrl::parse(&format!(
                "http://{}:{port}",
                if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host.clone()
                }
            )) {
                Ok((url, _)) => {
                    out.push(Candidate::named_by(origin, url, credentials, None, allowed))
                }
                Err(err) => skipped.push(format!("{host}:{port} ({err})")),
            },
            PacEntry::Unsupported(what) => match pac_entry_url(what).map(|u| ProxyUrl::parse(&u)) {
                Some(Ok((url, _))) => {
                    let ca = (url.kind() == uplink_url::ProxyKind::Https)
                        .then(|| proxy_ca.clone())
                        .flatten();
                    out.push(Candidate::named_by(origin, url, credentials, ca, allowed))
                }
                Some(Err(err)) => skipped.push(format!("{what} ({err})")),
                None => skipped.push(format!("{what} (not supported)")),
            },
        }
    }
    let raw = outcome
        .raw
        .as_deref()
        .map(|r| format!("returned {r:?}"))
        .unwrap_or_default();
    let mut detail = format!("{} {raw}", outcome.script);
    if !skipped.is_empty() {
        detail.push_str(&format!("; skipped {}", skipped.join(", ")));
    }
    if out.is_empty() {
        return Err(format!("{detail}: no usable entry").into());
    }
    Ok((out, detail))
}

/// The proxy URL for a PAC entry other than `PROXY` and `DIRECT` (as the PAC crate writes it:
/// `HTTPS h:p`, `SOCKS5 h:p`, `SOCKS h:p`), or None for one uplink cannot use.
///
/// `SOCKS5` entries let the proxy resolve the name (`socks5h`), as browsers do for PAC. `SOCKS`
/// means SOCKS4 in browsers; uplink speaks SOCKS5 to it, which most SOCKS servers (Dante,
/// OpenSSH) also accept. A SOCKS4-only server answers in a way the SOCKS5 parser refuses
/// (`PROXY_PROTOCOL_ERROR`), and the route moves on to its next entry.
fn pac_entry_url(entry: &str) -> Option<String> {
    let (keyword, host_port) = entry.trim().split_once(' ')?;
    let scheme = match keyword.to_ascii_uppercase().as_str() {
        "HTTPS" => "https",
        "SOCKS5" | "SOCKS" | "SOCKS4" => "socks5h",
        _ => return None,
    };
    Some(format!("{scheme}://{}", host_port.trim()))
}

/// The route for `host:port` under `settings`, given what PAC evaluation and WPAD discovery
/// returned. Pure: no I/O, no environment, no DNS.
pub fn explain_with(
    settings: &ProxySettings,
    host: &str,
    port: u16,
    unseal: &dyn Unseal,
    inputs: &Inputs,
) -> Explanation {
    let mode = settings.mode();
    let fallback = settings.fallback();
    let mut ex = Explanation {
        mode,
        fallback,
        sources: Vec::new(),
        route: Vec::new(),
        problem: None,
        problem_code: None,
    };
    let mut report = |source: &str, used: bool, detail: String| {
        ex.sources.push(SourceReport {
            source: source.into(),
            used,
            detail,
        })
    };
    let mut proxies: Vec<Candidate> = Vec::new();
    let mut problem = None;
    // The code of `problem` when it is not the settings' own (CONFIG_INVALID).
    let mut problem_code = None;
    let mut bypassed = false;

    // explicit
    match (&settings.url, mode) {
        (Some(url), Mode::Explicit) => match ProxyUrl::parse(url) {
            Ok((parsed, _)) => {
                let credentials = match (&settings.user, &settings.password) {
                    (Some(u), Some(sealed)) => match unseal.unseal(sealed) {
                        Ok(p) => Some(Credentials {
                            user: u.clone(),
                            password: p,
                        }),
                        Err(e) => {
                            problem = Some(format!("the proxy password cannot be read: {e}"));
                            None
                        }
                    },
                    (Some(u), None) => Some(Credentials::new(u.clone(), "")),
                    _ => None,
                };
                let curl_bypass = settings
                    .bypass
                    .as_deref()
                    .map(NoProxy::parse)
                    .filter(|b| !b.is_empty());
                let win_bypass = settings
                    .wininet_bypass
                    .as_deref()
                    .map(WinInetBypass::parse)
                    .filter(|b| !b.is_empty());
                if curl_bypass
                    .as_ref()
                    .is_some_and(|b| b.matches(host, Some(port)))
                {
                    bypassed = true;
                    report(
                        "explicit",
                        true,
                        format!(
                            "{host} is in the bypass list {:?}: DIRECT",
                            settings.bypass.as_deref().unwrap_or("")
                        ),
                    );
                } else if win_bypass.as_ref().is_some_and(|b| b.matches(host, port)) {
                    bypassed = true;
                    report(
                        "explicit",
                        true,
                        format!(
                            "{host} is in the Windows bypass list {:?}: DIRECT",
                            settings.wininet_bypass.as_deref().unwrap_or("")
                        ),
                    );
                } else {
                    let who = credentials
                        .as_ref()
                        .map(|c| format!(" as {}", c.user))
                        .unwrap_or_default();
                    report(
                        "explicit",
                        true,
                        format!(
                            "proxy {parsed}{who}{}",
                            settings
                                .origin
                                .as_ref()
                                .map(|o| format!(" (set by {o})"))
                                .unwrap_or_default()
                        ),
                    );
                    let proxy_ca = (parsed.kind() == uplink_url::ProxyKind::Https)
                        .then(|| settings.proxy_ca.clone())
                        .flatten();
                    proxies.push(Candidate::configured(parsed, credentials, proxy_ca));
                }
            }
            Err(e) => {
                problem = Some(format!("the configured proxy URL is invalid: {e}"));
                report("explicit", false, format!("invalid: {e}"));
            }
        },
        (Some(url), _) => report(
            "explicit",
            false,
            format!("{url} is configured but the mode is {}", mode.as_str()),
        ),
        (None, Mode::Explicit) => {
            problem = Some("mode is explicit but no proxy URL is set: uplink sensor proxy set --proxy-url http://HOST:PORT".into());
            report("explicit", false, "no proxy URL configured".into());
        }
        (None, _) => report("explicit", false, "not configured".into()),
    }

    // pac
    let explicit_credentials = match (&settings.user, &settings.password) {
        (Some(u), Some(sealed)) => unseal.unseal(sealed).ok().map(|p| Credentials {
            user: u.clone(),
            password: p,
        }),
        (Some(u), None) => Some(Credentials::new(u.clone(), "")),
        _ => None,
    };
    let allowed = settings.credential_hosts();
    match (mode, &inputs.pac) {
        (Mode::Pac, Some(outcome)) => {
            let origin = Origin::of_pac(settings.pac.as_deref().unwrap_or(&outcome.script));
            match pac_candidates(
                outcome,
                &explicit_credentials,
                &settings.proxy_ca,
                origin,
                &allowed,
            ) {
                Ok((cands, detail)) => {
                    report("pac", true, detail);
                    proxies.extend(cands);
                }
                Err(e) => {
                    report("pac", false, e.to_string());
                    if fallback == Fallback::Never {
                        problem = Some(format!("the PAC script gives no usable route: {e}"));
                        problem_code = Some(e.code);
                    }
                }
            }
        }
        (Mode::Pac, None) => {
            problem = Some("the PAC script was not evaluated (this build or this caller cannot): use --url, --from-env or --direct".into());
            report(
                "pac",
                false,
                format!(
                    "{}: not evaluated",
                    settings.pac.as_deref().unwrap_or("(no script)")
                ),
            );
        }
        _ => report("pac", false, "not configured".into()),
    }

    // wpad (the first step of auto)
    let mut wpad_found = false;
    // Why a discovered script gave no route (its PAC_* code).
    let mut wpad_code = None;
    match (mode, &inputs.wpad) {
        (Mode::Wpad | Mode::Auto, Some(w)) => match &w.pac {
            Some(outcome) => {
                match pac_candidates(
                    outcome,
                    &explicit_credentials,
                    &settings.proxy_ca,
                    Origin::Discovered(trust::Discovery::Wpad),
                    &allowed,
                ) {
                    Ok((cands, detail)) => {
                        wpad_found = true;
                        report("wpad", true, format!("discovered {detail}"));
                        proxies.extend(cands);
                    }
                    Err(e) => {
                        wpad_code = Some(e.code);
                        report("wpad", false, format!("discovered a script, but {e}"))
                    }
                }
            }
            None => report(
                "wpad",
                false,
                format!("nothing found ({})", w.steps.join("; ")),
            ),
        },
        (Mode::Wpad, None) => {
            problem = Some("WPAD discovery did not run (this build or this caller cannot): use --url, --from-env or --direct".into());
            report("wpad", false, "discovery did not run".into());
        }
        (Mode::Auto, None) => report("wpad", false, "skipped: discovery did not run".into()),
        _ => report("wpad", false, "not configured".into()),
    }

    // environment (captured)
    // In auto, the environment counts only when WPAD found nothing.
    let env_wanted = mode == Mode::Env || (mode == Mode::Auto && !wpad_found);
    match (&settings.env, env_wanted) {
        (Some(env), true) => match env.https_choice() {
            Some((var, value)) => {
                let no_proxy = env.no_proxy.as_deref().map(NoProxy::parse).unwrap_or_default();
                if no_proxy.matches(host, Some(port)) {
                    bypassed = true;
                    report("env", true, format!("{host} is in no_proxy {:?}: DIRECT", env.no_proxy.as_deref().unwrap_or("")));
                } else {
                    match parse_env_proxy(value) {
                        Ok((url, defaulted)) => {
                            let credentials = match (&env.user, &env.password) {
                                (Some(u), Some(sealed)) => unseal.unseal(sealed).ok().map(|p| Credentials { user: u.clone(), password: p }),
                                _ => None,
                            };
                            let note = if defaulted { " (no port given: 1080, as curl assumes)" } else { "" };
                            let who = credentials.as_ref().map(|c| format!(" as {}", c.user)).unwrap_or_default();
                            report("env", true, format!("{var} captured from the environment: proxy {url}{who}{note}"));
                            let proxy_ca = (url.kind() == uplink_url::ProxyKind::Https).then(|| settings.proxy_ca.clone()).flatten();
                            proxies.push(Candidate::configured(url, credentials, proxy_ca));
                        }
                        Err(e) => {
                            report("env", false, format!("{var}={value:?} cannot be used: {e}"));
                            if mode == Mode::Env {
                                problem = Some(format!("the captured {var} is not usable: {e}"));
                            }
                        }
                    }
                }
            }
            None if env.http_proxy.is_some() => report(
                "env",
                false,
                "only http_proxy was captured; it applies to http:// URLs, and the service is https (set https_proxy)".into(),
            ),
            None => report("env", false, "no https_proxy or all_proxy captured".into()),
        },
        (None, true) => report("env", false, "nothing captured from the environment".into()),
        (_, false) if mode == Mode::Auto => report("env", false, "not used: WPAD found a script".into()),
        (_, false) => report("env", false, "not configured".into()),
    }

    // direct / fallback
    let direct_detail;
    if mode == Mode::Direct {
        ex.route.push(Candidate::Direct);
        direct_detail = "mode is direct".to_owned();
    } else if bypassed {
        ex.route.push(Candidate::Direct);
        direct_detail = "the host bypasses the proxy".to_owned();
    } else if proxies.is_empty() && mode == Mode::Auto {
        ex.route.push(Candidate::Direct);
        direct_detail = "auto found no proxy: DIRECT".to_owned();
    } else if proxies.is_empty() && fallback == Fallback::Direct && problem.is_none() {
        ex.route.push(Candidate::Direct);
        direct_detail = "no proxy found; fallback is direct".to_owned();
    } else {
        let n = proxies.len();
        let has_direct = proxies.iter().any(|c| matches!(c, Candidate::Direct));
        ex.route.extend(proxies);
        if has_direct {
            direct_detail = "where the PAC script put it".to_owned();
        } else if fallback == Fallback::Direct && n > 0 {
            ex.route.push(Candidate::Direct);
            direct_detail =
                "appended: fallback is direct (used only if the proxy cannot be reached)"
                    .to_owned();
        } else {
            direct_detail = "not used: fallback is never".to_owned();
        }
    }
    let direct_used = ex.route.iter().any(|c| matches!(c, Candidate::Direct));
    ex.sources.push(SourceReport {
        source: "direct".into(),
        used: direct_used,
        detail: direct_detail,
    });
    if ex.route.is_empty() && problem.is_none() {
        problem = Some("no route: no proxy could be used and fallback is never".into());
        if mode == Mode::Wpad && !wpad_found {
            problem_code = Some(wpad_code.unwrap_or(Code::WPAD_NOT_FOUND));
        }
    }
    ex.problem_code = problem
        .as_ref()
        .map(|_| problem_code.unwrap_or(Code::CONFIG_INVALID));
    ex.problem = problem;
    ex
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unseal(s: &str) -> Result<secrecy::SecretString, String> {
        s.strip_prefix("sealed:")
            .map(|p| secrecy::SecretString::from(p.to_owned()))
            .ok_or_else(|| "bad".into())
    }

    fn route(s: &ProxySettings, host: &str) -> Vec<String> {
        explain(s, host, 443, &unseal)
            .route
            .iter()
            .map(|c| c.to_string())
            .collect()
    }

    fn env(https: Option<&str>, no_proxy: Option<&str>) -> Option<EnvCapture> {
        Some(EnvCapture {
            https_proxy: https.map(Into::into),
            no_proxy: no_proxy.map(Into::into),
            ..Default::default()
        })
    }

    #[test]
    fn precedence_table() {
        let explicit = ProxySettings {
            url: Some("http://p:3128".into()),
            ..Default::default()
        };
        let cases: Vec<(&str, ProxySettings, &str, Vec<&str>)> = vec![
            (
                "nothing configured: auto, nothing found",
                ProxySettings::default(),
                "h",
                vec!["DIRECT"],
            ),
            (
                "explicit: no fallback by default",
                explicit.clone(),
                "h",
                vec!["PROXY p:3128"],
            ),
            (
                "explicit with fallback direct",
                ProxySettings {
                    fallback: Some(Fallback::Direct),
                    ..explicit.clone()
                },
                "h",
                vec!["PROXY p:3128", "DIRECT"],
            ),
            (
                "explicit, host in bypass",
                ProxySettings {
                    bypass: Some(".corp.example".into()),
                    ..explicit.clone()
                },
                "a.corp.example",
                vec!["DIRECT"],
            ),
            (
                "explicit, host not in bypass",
                ProxySettings {
                    bypass: Some(".corp.example".into()),
                    ..explicit.clone()
                },
                "x.example",
                vec!["PROXY p:3128"],
            ),
            (
                "explicit, Windows bypass <local>",
                ProxySettings {
                    wininet_bypass: Some("<local>".into()),
                    ..explicit.clone()
                },
                "intranet",
                vec!["DIRECT"],
            ),
            (
                "explicit wins over the environment",
                ProxySettings {
                    env: env(Some("http://e:1"), None),
                    ..explicit.clone()
                },
                "h",
                vec!["PROXY p:3128"],
            ),
            (
                "auto uses the captured environment, falls back",
                ProxySettings {
                    env: env(Some("http://e:1"), None),
                    ..Default::default()
                },
                "h",
                vec!["PROXY e:1", "DIRECT"],
            ),
            (
                "auto, host in no_proxy",
                ProxySettings {
                    env: env(Some("http://e:1"), Some("h")),
                    ..Default::default()
                },
                "h",
                vec!["DIRECT"],
            ),
            (
                "env mode with fallback never",
                ProxySettings {
                    mode: Some(Mode::Env),
                    fallback: Some(Fallback::Never),
                    env: env(Some("e:1"), None),
                    ..Default::default()
                },
                "h",
                vec!["PROXY e:1"],
            ),
            (
                "env mode, nothing captured, fallback direct",
                ProxySettings {
                    mode: Some(Mode::Env),
                    ..Default::default()
                },
                "h",
                vec!["DIRECT"],
            ),
            (
                "direct mode ignores a configured proxy",
                ProxySettings {
                    mode: Some(Mode::Direct),
                    ..explicit.clone()
                },
                "h",
                vec!["DIRECT"],
            ),
            (
                "pac not evaluated yet: no route",
                ProxySettings {
                    mode: Some(Mode::Pac),
                    pac: Some("/x.pac".into()),
                    ..Default::default()
                },
                "h",
                vec![],
            ),
        ];
        for (name, settings, host, want) in cases {
            assert_eq!(route(&settings, host), want, "{name}");
        }
    }

    #[test]
    fn explanations_name_every_source_and_the_winner() {
        let s = ProxySettings {
            url: Some("http://p:3128".into()),
            user: Some("CONTOSO\\u".into()),
            password: Some("sealed:pw".into()),
            origin: Some("install switches".into()),
            ..Default::default()
        };
        let ex = explain(&s, "wsensorapi.example", 443, &unseal);
        let names: Vec<&str> = ex.sources.iter().map(|s| s.source.as_str()).collect();
        assert_eq!(names, ["explicit", "pac", "wpad", "env", "direct"]);
        assert!(
            ex.sources[0].used
                && ex.sources[0].detail.contains("as CONTOSO\\u")
                && ex.sources[0].detail.contains("install switches")
        );
        assert!(!ex.sources[4].used && ex.sources[4].detail.contains("fallback is never"));
        assert!(ex.problem.is_none());
        let Candidate::Proxy {
            credentials: Some(c),
            ..
        } = &ex.route[0]
        else {
            panic!("{:?}", ex.route)
        };
        use secrecy::ExposeSecret;
        assert_eq!(c.password.expose_secret(), "pw");
        assert!(!format!("{ex:?}").contains("pw\""), "no secret in Debug");

        let bad = ProxySettings {
            password: Some("garbage".into()),
            ..s
        };
        assert!(explain(&bad, "h", 443, &unseal)
            .problem
            .unwrap()
            .contains("password cannot be read"));
        let only_http = ProxySettings {
            env: Some(EnvCapture {
                http_proxy: Some("http://h:1".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let ex = explain(&only_http, "h", 443, &unseal);
        assert!(
            ex.sources[3].detail.contains("applies to http:// URLs"),
            "{:?}",
            ex.sources
        );
        assert_eq!(ex.route.len(), 1);
    }

    fn pac(entries: Vec<PacEntry>) -> PacOutcome {
        PacOutcome {
            script: "/etc/corp.pac".into(),
            raw: Some("…".into()),
            result: Ok(entries),
        }
    }

    fn p(host: &str, port: u16) -> PacEntry {
        PacEntry::Proxy {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn pac_and_wpad_answers_slot_into_the_route() {
        let pac_mode = |fallback: Option<Fallback>| ProxySettings {
            mode: Some(Mode::Pac),
            pac: Some("/etc/corp.pac".into()),
            fallback,
            ..Default::default()
        };
        let with = |s: &ProxySettings, inputs: Inputs| -> (Vec<String>, Option<String>) {
            let ex = explain_with(s, "h", 443, &unseal, &inputs);
            (ex.route.iter().map(|c| c.to_string()).collect(), ex.problem)
        };
        let cases: Vec<(&str, ProxySettings, Inputs, Vec<&str>, bool)> = vec![
            (
                "PAC order kept, DIRECT where the script put it",
                pac_mode(None),
                Inputs {
                    pac: Some(pac(vec![p("a", 1), PacEntry::Direct, p("b", 2)])),
                    wpad: None,
                },
                vec!["PROXY a:1", "DIRECT", "PROXY b:2"],
                false,
            ),
            (
                "PAC proxies, fallback direct appends DIRECT",
                pac_mode(Some(Fallback::Direct)),
                Inputs {
                    pac: Some(pac(vec![p("a", 1)])),
                    wpad: None,
                },
                vec!["PROXY a:1", "DIRECT"],
                false,
            ),
            (
                "PAC SOCKS5, SOCKS and HTTPS entries are proxies, in order",
                pac_mode(None),
                Inputs {
                    pac: Some(pac(vec![
                        PacEntry::Unsupported("SOCKS5 s:1080".into()),
                        PacEntry::Unsupported("HTTPS h:443".into()),
                        PacEntry::Unsupported("SOCKS [::1]:1081".into()),
                        p("a", 1),
                    ])),
                    wpad: None,
                },
                vec![
                    "SOCKS5 s:1080",
                    "HTTPS h:443",
                    "SOCKS5 [::1]:1081",
                    "PROXY a:1",
                ],
                false,
            ),
            (
                "PAC gives nothing usable, fallback never",
                pac_mode(None),
                Inputs {
                    pac: Some(pac(vec![PacEntry::Unsupported("QUIC h:443".into())])),
                    wpad: None,
                },
                vec![],
                true,
            ),
            (
                "PAC failed, fallback direct",
                pac_mode(Some(Fallback::Direct)),
                Inputs {
                    pac: Some(PacOutcome {
                        script: "x".into(),
                        raw: None,
                        result: Err("timeout".into()),
                    }),
                    wpad: None,
                },
                vec!["DIRECT"],
                false,
            ),
            (
                "PAC failed, fallback never",
                pac_mode(None),
                Inputs {
                    pac: Some(PacOutcome {
                        script: "x".into(),
                        raw: None,
                        result: Err("timeout".into()),
                    }),
                    wpad: None,
                },
                vec![],
                true,
            ),
            (
                "auto: WPAD wins over the captured environment",
                ProxySettings {
                    env: env(Some("http://e:1"), None),
                    ..Default::default()
                },
                Inputs {
                    pac: None,
                    wpad: Some(WpadOutcome {
                        steps: vec!["dns wpad.corp".into()],
                        pac: Some(pac(vec![p("w", 8080)])),
                    }),
                },
                vec!["PROXY w:8080", "DIRECT"],
                false,
            ),
            (
                "auto: WPAD found nothing, the environment applies",
                ProxySettings {
                    env: env(Some("http://e:1"), None),
                    ..Default::default()
                },
                Inputs {
                    pac: None,
                    wpad: Some(WpadOutcome {
                        steps: vec!["no lease".into()],
                        pac: None,
                    }),
                },
                vec!["PROXY e:1", "DIRECT"],
                false,
            ),
        ];
        for (name, settings, inputs, want, problem) in cases {
            let (route, prob) = with(&settings, inputs);
            assert_eq!(route, want, "{name}");
            assert_eq!(prob.is_some(), problem, "{name}: {prob:?}");
        }
        // PAC proxies get the configured credentials.
        let s = ProxySettings {
            user: Some("D\\u".into()),
            password: Some("sealed:pw".into()),
            ..pac_mode(None)
        };
        let ex = explain_with(
            &s,
            "h",
            443,
            &unseal,
            &Inputs {
                pac: Some(pac(vec![p("a", 1)])),
                wpad: None,
            },
        );
        assert!(
            matches!(&ex.route[0], Candidate::Proxy { credentials: Some(c), .. } if c.user == "D\\u")
        );
    }

    /// What each proxy of the route is sent, by where the route came from (the table of
    /// `trust::release`, through `explain_with`).
    #[test]
    fn discovered_proxies_get_credentials_only_when_allowed_and_never_basic() {
        let creds = |s: ProxySettings| ProxySettings {
            user: Some("CONTOSO\\u".into()),
            password: Some("sealed:pw".into()),
            ..s
        };
        let wpad_mode = |hosts: Option<Vec<&str>>| {
            creds(ProxySettings {
                mode: Some(Mode::Wpad),
                credential_hosts: hosts.map(|h| h.into_iter().map(Into::into).collect()),
                ..Default::default()
            })
        };
        let pac_mode = |pac: &str| {
            creds(ProxySettings {
                mode: Some(Mode::Pac),
                pac: Some(pac.into()),
                ..Default::default()
            })
        };
        let wpad_found = |entries: Vec<PacEntry>| Inputs {
            pac: None,
            wpad: Some(WpadOutcome {
                steps: vec![],
                pac: Some(pac(entries)),
            }),
        };
        let pac_found = |entries: Vec<PacEntry>| Inputs {
            pac: Some(pac(entries)),
            wpad: None,
        };
        let allowed = Some(vec!["proxy.corp.example", "*.corp.example"]);
        // (name, settings, inputs, per proxy: "any" | "challenge" | "withheld")
        let cases: Vec<(&str, ProxySettings, Inputs, Vec<&str>)> = vec![
            (
                "WPAD, no allow-list: withheld",
                wpad_mode(None),
                wpad_found(vec![p("evil.test", 3128)]),
                vec!["withheld"],
            ),
            (
                "WPAD, allowed and not allowed hosts in one answer",
                wpad_mode(allowed.clone()),
                wpad_found(vec![
                    p("evil.test", 3128),
                    p("proxy.corp.example", 8080),
                    PacEntry::Unsupported("HTTPS p2.corp.example:443".into()),
                    PacEntry::Unsupported("SOCKS5 s.corp.example:1080".into()),
                ]),
                vec!["withheld", "challenge", "challenge", "withheld"],
            ),
            (
                "auto is WPAD too",
                ProxySettings {
                    mode: None,
                    ..wpad_mode(None)
                },
                wpad_found(vec![p("evil.test", 3128)]),
                vec!["withheld"],
            ),
            (
                "a PAC file: the administrator's",
                pac_mode("/etc/uplink/corp.pac"),
                pac_found(vec![p("evil.test", 3128)]),
                vec!["any"],
            ),
            (
                "a PAC over https: the administrator's",
                pac_mode("https://pac.corp.example/p.pac"),
                pac_found(vec![p("evil.test", 3128)]),
                vec!["any"],
            ),
            (
                "a PAC over plain http: as discovered",
                pac_mode("http://pac.corp.example/p.pac"),
                pac_found(vec![p("evil.test", 3128)]),
                vec!["withheld"],
            ),
            (
                "a PAC over plain http, allowed host",
                ProxySettings {
                    credential_hosts: Some(vec!["evil.test".into()]),
                    ..pac_mode("http://pac.corp.example/p.pac")
                },
                pac_found(vec![p("evil.test", 3128)]),
                vec!["challenge"],
            ),
            (
                "explicit: the administrator's",
                creds(ProxySettings {
                    url: Some("http://evil.test:3128".into()),
                    ..Default::default()
                }),
                Inputs::default(),
                vec!["any"],
            ),
        ];
        for (name, settings, inputs, want) in cases {
            let ex = explain_with(&settings, "h", 443, &unseal, &inputs);
            let got: Vec<&str> = ex
                .route
                .iter()
                .filter_map(|c| match c {
                    Candidate::Direct => None,
                    Candidate::Proxy {
                        credentials, auth, ..
                    } => Some(match (auth, credentials) {
                        (ProxyAuth::Any, Some(_)) => "any",
                        (ProxyAuth::ChallengeResponse, Some(_)) => "challenge",
                        (ProxyAuth::Withheld(_), None) => "withheld",
                        other => panic!("{name}: inconsistent {other:?}"),
                    }),
                })
                .collect();
            assert_eq!(got, want, "{name}: {:?}", ex.route);
            for c in &ex.route {
                let note = c.credential_note();
                match c {
                    Candidate::Proxy {
                        auth: ProxyAuth::Any,
                        ..
                    }
                    | Candidate::Direct => assert!(note.is_none(), "{name}"),
                    _ => assert!(
                        note.as_deref()
                            .is_some_and(|n| n.contains("withheld") || n.contains("never Basic")),
                        "{name}: {note:?}"
                    ),
                }
            }
        }
        // Without credentials there is nothing to withhold.
        let ex = explain_with(
            &ProxySettings {
                mode: Some(Mode::Wpad),
                ..Default::default()
            },
            "h",
            443,
            &unseal,
            &wpad_found(vec![p("evil.test", 3128)]),
        );
        assert!(ex.route[0].credential_note().is_none());
        assert!(ex.route[0].origin().discovered());
    }

    #[test]
    fn the_allow_list_survives_a_round_trip_and_old_files_load_without_it() {
        let s = ProxySettings {
            mode: Some(Mode::Wpad),
            credential_hosts: Some(vec!["proxy.corp.example".into(), "*.corp.example".into()]),
            ..Default::default()
        };
        let text = serde_json::to_string(&s).unwrap();
        let back: ProxySettings = serde_json::from_str(&text).unwrap();
        assert_eq!(back, s);
        assert!(back.credential_hosts().matches("a.corp.example"));
        let old: ProxySettings = serde_json::from_str(r#"{"mode":"wpad"}"#).unwrap();
        assert_eq!(old.credential_hosts, None);
        assert!(old.credential_hosts().is_empty());
    }
}
