//! Each method's route, computed by the route layer (`uplink-route`) from what the binary read:
//! the sensor's settings (or the environment), the named and command-line proxies, the `--pac`
//! script, WPAD's sources. Nothing here resolves a route by itself: `default` is the sensor's
//! own computation ([`uplink_route::sources::explain`]), `pac` and `wpad` the same sources alone.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use secrecy::SecretString;
use uplink_diag::Code;
use uplink_proxy::{Candidate, Explanation, ProxySettings};
use uplink_route::SourceError;
use uplink_wpad::{Discovery, Sources};

use crate::model::{Method, RouteSpec, Routes, Target};

/// Opens a sealed password (the sensor's key; the binary provides it).
pub type Unseal = Box<dyn Fn(&str) -> Result<SecretString, String> + Send + Sync>;

/// Where the `default` method's route comes from.
pub enum DefaultRoute {
    /// The installed sensor's settings: exactly the sensor's route.
    Sensor {
        settings: Box<ProxySettings>,
        unseal: Unseal,
        /// The sensor's WPAD cache file, so that `default` is the route the sensor uses now
        /// (None: discover afresh).
        wpad_cache: Option<PathBuf>,
    },
    /// No sensor: the environment's proxy variables.
    Env(uplink_proxy::env::FromEnv),
}

/// Every method's route.
pub struct SourceRoutes {
    pub default: DefaultRoute,
    pub named: RouteSpec,
    pub cli: RouteSpec,
    pub pac: Option<String>,
    /// Bound on fetching the `--pac` script (the probe's `--timeout`).
    pub pac_timeout: Duration,
    pub wpad_sources: Sources,
    /// The `--pac` script, loaded once per check, on first use.
    pac_script: OnceLock<Result<String, SourceError>>,
    /// Discovery runs once per check (afresh, never from a sensor's cache), on first use.
    wpad: OnceLock<Discovery>,
}

impl SourceRoutes {
    pub fn new(
        default: DefaultRoute,
        named: RouteSpec,
        cli: RouteSpec,
        pac: Option<String>,
        pac_timeout: Duration,
        wpad_sources: Sources,
    ) -> SourceRoutes {
        SourceRoutes {
            default,
            named,
            cli,
            pac,
            pac_timeout,
            wpad_sources,
            pac_script: OnceLock::new(),
            wpad: OnceLock::new(),
        }
    }
}

impl std::fmt::Debug for DefaultRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // (No settings: they may hold sealed passwords and credential hosts.)
        match self {
            DefaultRoute::Sensor { .. } => f.write_str("DefaultRoute::Sensor"),
            DefaultRoute::Env(_) => f.write_str("DefaultRoute::Env"),
        }
    }
}

impl std::fmt::Debug for SourceRoutes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceRoutes")
            .field("default", &self.default)
            .field("pac", &self.pac)
            .finish_non_exhaustive()
    }
}

fn from_explanation(ex: Explanation) -> RouteSpec {
    match ex.problem {
        Some(why) => RouteSpec::Failed {
            code: ex.problem_code.unwrap_or(Code::CONFIG_INVALID),
            why,
        },
        None => {
            // What a source skipped (a PAC answer's unknown keyword) is not silent.
            let skipped: Vec<String> = ex
                .sources
                .iter()
                .filter_map(|s| {
                    s.detail
                        .split_once("; skipped ")
                        .map(|(_, what)| format!("{} skipped {what}", s.source))
                })
                .collect();
            if skipped.is_empty() {
                RouteSpec::Route(ex.route)
            } else {
                RouteSpec::Noted {
                    route: ex.route,
                    note: skipped.join("; "),
                }
            }
        }
    }
}

impl Routes for SourceRoutes {
    fn route(&self, t: &Target, method: Method) -> RouteSpec {
        match method {
            Method::Direct => RouteSpec::Route(vec![Candidate::Direct]),
            Method::Named => self.named.clone(),
            Method::Cli => self.cli.clone(),
            Method::Default => match &self.default {
                DefaultRoute::Sensor {
                    settings,
                    unseal,
                    wpad_cache,
                } => {
                    let wpad = uplink_route::sources::WpadPlace {
                        sources: &self.wpad_sources,
                        cache_file: wpad_cache.as_deref(),
                    };
                    from_explanation(uplink_route::sources::explain(
                        settings, unseal, wpad, &t.host, t.port,
                    ))
                }
                DefaultRoute::Env(env) => {
                    from_explanation(uplink_route::sources::env_method(env, &t.host, t.port))
                }
            },
            Method::Wpad => {
                let d = self
                    .wpad
                    .get_or_init(|| uplink_route::wpad::discover(&self.wpad_sources));
                match uplink_route::sources::wpad_method(d, &t.host, t.port) {
                    Err(none) => RouteSpec::NotConfigured(none),
                    Ok(ex) => from_explanation(ex),
                }
            }
            Method::Pac => match &self.pac {
                None => RouteSpec::NotConfigured("no --pac was given".into()),
                Some(pac) => {
                    let script = self
                        .pac_script
                        .get_or_init(|| uplink_route::pac::load_within(pac, self.pac_timeout));
                    // The `cli` proxy's credentials go to the script's proxies.
                    let credentials = match &self.cli {
                        RouteSpec::Route(c) => c.iter().find_map(|c| match c {
                            Candidate::Proxy { credentials, .. } => credentials.clone(),
                            Candidate::Direct => None,
                        }),
                        _ => None,
                    };
                    match uplink_route::sources::pac_method(
                        pac,
                        script.clone(),
                        &t.host,
                        t.port,
                        credentials,
                    ) {
                        Ok(ex) => from_explanation(ex),
                        Err(p) => RouteSpec::Failed {
                            code: p.code,
                            why: p.message,
                        },
                    }
                }
            },
        }
    }
}
