//! `uplink check` (and `uplink allowlist verify`): the connectivity analyzer's command line.
//!
//! This module reads what the library must not: the sensor's files, the environment's proxy
//! variables, the system trust store, a PAC script; it turns them into `uplink_check` targets and
//! routes, runs the probes, and prints the table, JSON, report and bundle. Behaviour lives in
//! `crates/check`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rustls::RootCertStore;
use secrecy::{ExposeSecret, SecretString};
use uplink_check::model::{Identity, Overrides};
use uplink_check::plan::{Cloud, Profile, Trust};
use uplink_check::probe::Options;
use uplink_check::routes::{DefaultRoute, SourceRoutes};
use uplink_check::{Anchor, Method, RouteSpec, Target};
use uplink_proxy::Candidate;
use uplink_sensor::config::{Config, Paths};
use uplink_tunnel::{Credentials, ProxyUrl};

const AFTER_HELP: &str = "\
Targets (at least one; with none, the installed sensor's workspace):
  --config-dir DIR                 the sensor's workspace: ping over its route, CA and certificate
  --workspace-url URL --ca FILE    an uplink workspace by URL (ping, TLS to that CA)
  --profile mdi --workspace NAME   Defender for Identity: sensor API ping, console, CRL/PKI URLs
  --profile mde [--region R] [--streamlined]   Defender for Endpoint URLs with expected statuses
  --url URL [--expect STATUS] [--ca FILE]      any URL (default expectation: 200)
  --profile P --all-hosts          every allow-list host of P, reachability only (any status)

Methods (--method, repeatable; default: all, those with nothing configured say NOT_CONFIGURED):
  default  the route the sensor would use (proxy engine: explicit, PAC, environment, direct)
  wpad     the script WPAD discovery finds now (see `uplink proxy wpad`; NOT_CONFIGURED when none)
  direct   no proxy
  named    the proxy in the sensor's configuration
  cli      --proxy-url URL [--proxy-user U --proxy-password P] [--proxy-ca FILE]
  pac      --pac FILE-OR-URL

Each probe walks dns, tcp, proxy_connect, proxy_auth, tls, client_cert, http and stops at the
first failure with a stable code (TCP_REFUSED, PROXY_AUTH_REQUIRED, TLS_INTERCEPTED, ...) and a
fix. docs/check.md lists every code.

Exit codes: 0 every URL passed by at least one method; 1 some URL passed by none (or the check
could not run); 2 bad usage.

Examples:
  uplink check
  uplink check --profile mde --region eu --proxy-url http://proxy:8080 --report mde.txt
  uplink check --url https://example.com/ --method direct,cli --proxy-url http://proxy:3128 --json
  uplink allowlist verify --profile mdi --workspace contoso";

/// A clap value parser for a type named by a fixed list (`--profile`, `--cloud`): `--help` lists
/// the names and a wrong one is refused as clap refuses any unknown value. (clap's `ValueEnum`
/// cannot be derived on another crate's type, and the library crates do not depend on clap.)
pub(super) fn one_of<T>(
    names: &'static [&'static str],
) -> impl clap::builder::TypedValueParser<Value = T>
where
    T: std::str::FromStr<Err = String> + Clone + Send + Sync + 'static,
{
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(names).try_map(|s| s.parse::<T>())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Test every route to a service step by step and name the failing step, with a fix.
#[derive(Debug, Clone, clap::Args)]
#[command(after_long_help = AFTER_HELP)]
#[command(mut_arg("proxy_url", |a| a.alias("proxy")))]
#[command(mut_arg("proxy_ca", |a| a.requires("proxy_url")))]
pub struct Args {
    /// The sensor's configuration directory (its workspace, proxy and certificate).
    #[arg(long, value_name = "DIR", env = "UPLINK_CONFIG_DIR")]
    pub config_dir: Option<PathBuf>,
    /// An uplink workspace's sensor URL (https://<workspace>sensorapi.<domain>[:port]); needs --ca.
    #[arg(long, value_name = "URL")]
    pub workspace_url: Option<String>,
    /// The CA to expect: the workspace CA, or for --url and profiles a CA to trust instead of the
    /// system store (a test CA, a private service).
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// A public service's endpoints, from the endpoint catalog.
    #[arg(long, value_parser = one_of::<Profile>(&Profile::NAMES))]
    pub profile: Option<Profile>,
    /// The Defender for Identity workspace name (--profile mdi).
    #[arg(long, value_name = "NAME")]
    pub workspace: Option<String>,
    /// The cloud of --profile mdi's URLs: the commercial cloud (default) or a government one,
    /// as in the endpoint catalog.
    #[arg(long, value_parser = one_of::<Cloud>(&Cloud::NAMES))]
    pub cloud: Option<Cloud>,
    /// Defender for Endpoint region: us, eu, uk or au (default us).
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
    /// Defender for Endpoint streamlined connectivity.
    #[arg(long)]
    pub streamlined: bool,
    /// Every host of the profile's allow-list (reachability: any HTTP status passes).
    #[arg(long)]
    pub all_hosts: bool,
    /// A URL to test (repeatable).
    #[arg(long = "url", value_name = "URL")]
    pub urls: Vec<String>,
    /// The HTTP status that means success for every --url (repeatable; default 200).
    #[arg(long, value_name = "STATUS")]
    pub expect: Vec<u16>,
    /// Issuer names to expect instead of the profile's (repeatable): a chain from any other CA is
    /// reported as TLS_INTERCEPTED.
    #[arg(long, value_name = "NAME")]
    pub expect_issuer: Vec<String>,
    /// Methods to test (repeatable or comma-separated): default, wpad, direct, named, cli, pac.
    #[arg(long = "method", value_name = "METHOD", value_delimiter = ',')]
    pub methods: Vec<String>,
    /// The `cli` method's proxy (`--proxy` is the older spelling of --proxy-url), its user and
    /// password, and for an https:// proxy the CA to trust for it (an untrusted one is
    /// PROXY_TLS_UNTRUSTED).
    #[command(flatten)]
    pub proxy: super::proxy::ProxyFlags,
    /// The `pac` method's script: a file or an http(s) URL.
    #[arg(long, value_name = "FILE-OR-URL")]
    pub pac: Option<String>,
    /// Connect to ADDRESS for HOST:PORT instead of asking DNS (curl's syntax; HOST may be *).
    #[arg(long, value_name = "HOST:PORT:ADDRESS")]
    pub resolve: Vec<String>,
    /// Connect to HOST2:PORT2 for HOST:PORT (curl's syntax; empty HOST or PORT match any).
    #[arg(long, value_name = "HOST:PORT:HOST2:PORT2")]
    pub connect_to: Vec<String>,
    /// How long each probe may take, all steps included: seconds (5, 2.5) or with a unit
    /// (500ms, 30s, 2m); at most 10m.
    #[arg(long, value_name = "DURATION", default_value = "5", value_parser = super::duration)]
    pub timeout: Duration,
    /// Most probes in flight at once.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub concurrency: usize,
    /// text: a table (and a progress bar at a terminal); json: the report as JSON.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// The same as --format json.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// Also write the classic analyzer report here.
    #[arg(long, value_name = "FILE.txt")]
    pub report: Option<PathBuf>,
    /// Also write a zip for support: report, JSON and environment, secrets redacted.
    #[arg(long, value_name = "FILE.zip")]
    pub bundle: Option<PathBuf>,
}

/// Bad usage (exit 2) or a failure (exit 1): see [`super::UsageError`].
type Usage = anyhow::Error;

/// A malformed or contradictory argument: exit 2.
fn usage(msg: impl Into<String>) -> Usage {
    super::usage("uplink check", msg)
}

/// A failure the message explains (a missing file or directory): exit 1.
fn failure(msg: impl Into<String>) -> Usage {
    anyhow::anyhow!("{}", msg.into())
}

/// `uplink allowlist verify`: `check --all-hosts`.
pub fn run_verify(mut a: Args) -> anyhow::Result<ExitCode> {
    a.all_hosts = true;
    run(a)
}

pub fn run(mut a: Args) -> anyhow::Result<ExitCode> {
    if a.json {
        a.format = Format::Json;
    }
    let setup = prepare(&a)?;
    let Setup {
        targets,
        methods,
        routes,
        overrides,
        secrets,
        notes,
    } = setup;
    for n in &notes {
        eprintln!("note: {n}");
    }
    let probes = uplink_check::plan(&targets, &methods, &routes);
    let opts = Arc::new(Options {
        timeout: a.timeout,
        overrides,
    });
    let targets = Arc::new(targets);
    let show_progress = std::io::stderr().is_terminal() && a.format == Format::Text;
    let bar = show_progress.then(|| {
        let bar = indicatif::ProgressBar::new(probes.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {pos}/{len} probes {wide_msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let started = std::time::Instant::now();
    let report = runtime.block_on(uplink_check::run::run(
        targets.clone(),
        probes,
        opts,
        a.concurrency,
        |t, r| {
            if let Some(bar) = &bar {
                bar.inc(1);
                bar.set_message(format!("{} {}", r.method.as_str(), t.url));
            }
        },
    ));
    // A blocking lookup (getaddrinfo) a probe gave up on at its deadline may still run on the
    // runtime's blocking pool: do not wait for it, or --timeout means nothing (issue 17 item 5).
    runtime.shutdown_background();
    let elapsed = started.elapsed();
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let json = serde_json::to_string_pretty(&report)?;
    let header = format!(
        "uplink check {}\nDate: {}\nTargets: {}\nMethods: {}\nTimeout per probe: {} s; took {:.1} s",
        env!("CARGO_PKG_VERSION"),
        uplink_sensor::status::now_rfc3339(),
        targets.len(),
        methods
            .iter()
            .map(|m| m.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        a.timeout.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    let text_report = uplink_check::render::report_text(&report, &header);
    let secret_refs: Vec<&str> = secrets.iter().map(|s| s.expose_secret()).collect();
    match a.format {
        Format::Json => println!("{json}"),
        Format::Text => print!("{}", uplink_check::render::table(&report)),
    }
    if let Some(path) = &a.report {
        let text = uplink_check::redact::redact(&text_report, &secret_refs);
        std::fs::write(path, text)
            .with_context(|| format!("cannot write the report {}", path.display()))?;
    }
    if let Some(path) = &a.bundle {
        let paths = Paths::new(a.config_dir.as_deref()).with_wpad(super::sensor::wpad_sources());
        let entries = vec![
            ("report.txt".to_owned(), text_report.clone()),
            ("check.json".to_owned(), json.clone()),
            ("environment.txt".to_owned(), environment()),
            ("sensor.toml".to_owned(), read_or_note(&paths.config_file())),
            ("status.json".to_owned(), read_or_note(&paths.status_file())),
        ];
        uplink_check::bundle::write(path, &entries, &secret_refs)?;
    }
    Ok(ExitCode::from(report.exit_code()))
}

fn read_or_note(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| format!("({}: {e})\n", p.display()))
}

/// Proxy variables, resolv.conf, routes: what a support engineer asks for first.
fn environment() -> String {
    let mut out = String::from("# proxy variables\n");
    let mut vars: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| {
            let l = k.to_ascii_lowercase();
            l.ends_with("_proxy") || l.starts_with("uplink_")
        })
        .collect();
    vars.sort();
    if vars.is_empty() {
        out.push_str("(none set)\n");
    }
    for (k, v) in vars {
        out.push_str(&format!("{k}={v}\n"));
    }
    out.push_str("\n# /etc/resolv.conf\n");
    out.push_str(&read_or_note(Path::new("/etc/resolv.conf")));
    for (title, args) in [
        ("ip route", &["route", "show"][..]),
        ("ip -6 route", &["-6", "route", "show"][..]),
    ] {
        out.push_str(&format!("\n# {title}\n"));
        match std::process::Command::new("ip").args(args).output() {
            Ok(o) => out.push_str(&String::from_utf8_lossy(&o.stdout)),
            Err(e) => out.push_str(&format!("(cannot run ip: {e})\n")),
        }
    }
    out
}

struct Setup {
    targets: Vec<Target>,
    methods: Vec<Method>,
    routes: SourceRoutes,
    overrides: Overrides,
    secrets: Vec<SecretString>,
    notes: Vec<String>,
}

fn prepare(a: &Args) -> Result<Setup, Usage> {
    if a.timeout > Duration::from_secs(600) {
        return Err(usage(format!(
            "--timeout {:?} is out of range: give at most 600 seconds (10m)",
            a.timeout
        )));
    }
    let mut overrides = Overrides::default();
    for r in &a.resolve {
        overrides.add_resolve(r).map_err(usage)?;
    }
    for c in &a.connect_to {
        overrides.add_connect_to(c).map_err(usage)?;
    }
    let mut secrets: Vec<SecretString> = Vec::new();
    let mut notes = Vec::new();

    // The sensor, if any: its route (default, named) and, as a target, its workspace.
    let paths = Paths::new(a.config_dir.as_deref()).with_wpad(super::sensor::wpad_sources());
    let sensor = match Config::load(&paths) {
        Ok(c) => Some(c),
        Err(uplink_sensor::config::ConfigError::NotInstalled(_)) if a.config_dir.is_none() => None,
        Err(e) => return Err(failure(e.to_string())),
    };
    let named = match &sensor {
        Some(c) => named_proxy(c, &paths, &mut secrets),
        None => RouteSpec::NotConfigured(
            "no sensor is installed on this machine (or pass --config-dir)".into(),
        ),
    };

    // The command-line proxy.
    let cli = match &a.proxy.proxy_url {
        None => {
            if a.proxy.proxy_user.is_some() {
                return Err(usage("--proxy-user needs --proxy-url URL"));
            }
            RouteSpec::NotConfigured("no --proxy was given".into())
        }
        Some(p) => {
            let (url, in_url) =
                ProxyUrl::parse(p).map_err(|e| usage(format!("--proxy-url: {e}")))?;
            let creds = match (&a.proxy.proxy_user, &a.proxy.proxy_password, in_url) {
                (Some(u), Some(pw), _) => Some(Credentials::new(u.clone(), pw.clone())),
                (Some(_), None, _) => {
                    return Err(usage(
                        "--proxy-user needs --proxy-password (or UPLINK_PROXY_PASSWORD)",
                    ))
                }
                (None, _, c) => c,
            };
            if let Some(c) = &creds {
                secrets.push(c.password.clone());
            }
            let proxy_ca = match &a.proxy.proxy_ca {
                Some(ca) => {
                    let ca = std::path::absolute(ca)
                        .map_err(|e| failure(format!("--proxy-ca {}: {e}", ca.display())))?;
                    // (Not `p` as the label: it may carry a password.)
                    if let Err(e) = uplink_tunnel::ProxyTls::new(Some(&ca), "") {
                        let reason = match e {
                            uplink_tunnel::TunnelError::Config { reason, .. } => reason,
                            other => other.to_string(),
                        };
                        return Err(usage(format!("--proxy-ca: {reason}")));
                    }
                    Some(ca.display().to_string())
                }
                None => None,
            };
            RouteSpec::Route(vec![Candidate::configured(url, creds, proxy_ca)])
        }
    };
    if let Some(pw) = &a.proxy.proxy_password {
        secrets.push(SecretString::from(pw.clone()));
    }
    let env = super::sensor::env_proxy();
    if let Some(c) = &env.credentials {
        secrets.push(c.password.clone());
    }

    // What to test: the check crate decides; here only the anchors are loaded.
    let ca = match &a.ca {
        Some(f) => Some(load_ca(f)?),
        None => None,
    };
    let request = uplink_check::plan::Request {
        profile: a.profile,
        workspace: a.workspace.clone(),
        cloud: a.cloud,
        region: a.region.clone(),
        streamlined: a.streamlined,
        all_hosts: a.all_hosts,
        workspace_url: a.workspace_url.clone(),
        ca_given: ca.is_some(),
        urls: a.urls.clone(),
        expect: a.expect.clone(),
        expect_issuer: a.expect_issuer.clone(),
        methods: a.methods.clone(),
        sensor_url: sensor.as_ref().map(|c| c.sensor_url.clone()),
    };
    let plan = uplink_check::plan::decide(&request).map_err(|e| usage(e.to_string()))?;
    notes.extend(plan.notes);
    let methods = plan.methods;
    // Loaded once, and only when some target needs it.
    let system_store = std::cell::OnceCell::new();
    let system = || -> Anchor {
        system_store
            .get_or_init(|| {
                let mut roots = RootCertStore::empty();
                for cert in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(cert);
                }
                Anchor::System(Arc::new(roots))
            })
            .clone()
    };
    let mut targets = Vec::with_capacity(plan.targets.len());
    for spec in plan.targets {
        let target = match (spec.trust, &ca) {
            (Trust::Sensor, _) => {
                let anchor = load_ca(&paths.ca_file())?;
                spec.into_target(anchor, sensor_identity(&paths))
            }
            (Trust::Ca | Trust::CaOrSystem, Some(ca)) => spec.into_target(ca.clone(), None),
            (Trust::CaOrSystem, None) => spec.into_target(system(), None),
            // (`decide` refuses this already.)
            (Trust::Ca, None) => {
                return Err(usage(
                    uplink_check::plan::PlanError::WorkspaceUrlWithoutCa.to_string(),
                ))
            }
        };
        targets.push(target);
    }
    // Each method's route is the route layer's: `default` the sensor's own computation (or the
    // environment's, with no sensor), `pac` and `wpad` those sources alone. A --pac script that
    // cannot be fetched or run is the pac method's PAC_* result; the other methods still run.
    let default = match sensor {
        Some(c) => {
            let unseal_paths = paths.clone();
            DefaultRoute::Sensor {
                settings: Box::new(c.proxy),
                unseal: Box::new(move |sealed: &str| {
                    uplink_sensor::config::unseal(&unseal_paths, sealed)
                }),
                wpad_cache: Some(uplink_sensor::wpadsource::cache_file(&paths)),
            }
        }
        None => DefaultRoute::Env(env),
    };
    let routes = SourceRoutes::new(
        default,
        named,
        cli,
        a.pac.clone(),
        a.timeout,
        super::sensor::wpad_sources(),
    );
    Ok(Setup {
        targets,
        methods,
        routes,
        overrides,
        secrets,
        notes,
    })
}

/// The installed sensor's client certificate, when it has one.
fn sensor_identity(paths: &Paths) -> Option<Arc<Identity>> {
    let chain = std::fs::read_to_string(paths.cert_file());
    let key = std::fs::read_to_string(paths.key_file());
    let (Ok(chain_pem), Ok(key_pem)) = (chain, key) else {
        return None;
    };
    Some(Arc::new(Identity {
        chain_pem,
        key_pem: SecretString::from(key_pem),
        probe_path: uplink_protocol::EVENTS_PATH.to_owned(),
    }))
}

fn load_ca(path: &Path) -> Result<Anchor, Usage> {
    use rustls_pki_types::pem::PemObject;
    let pem = std::fs::read(path)
        .map_err(|e| failure(format!("cannot read the CA file {}: {e}", path.display())))?;
    let mut roots = RootCertStore::empty();
    let mut names = Vec::new();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| {
            usage(format!(
                "{} is not a PEM certificate file: {e}",
                path.display()
            ))
        })?;
        names.push(uplink_check::classify::CertSummary::from_der(&cert).subject);
        roots.add(cert).map_err(|e| {
            usage(format!(
                "{} holds an unusable CA certificate: {e}",
                path.display()
            ))
        })?;
    }
    if roots.is_empty() {
        return Err(usage(format!("{} holds no certificate", path.display())));
    }
    Ok(Anchor::Ca {
        roots: Arc::new(roots),
        names,
    })
}

/// The sensor's explicit proxy (computed by the route layer), its password kept for redaction.
fn named_proxy(c: &Config, paths: &Paths, secrets: &mut Vec<SecretString>) -> RouteSpec {
    let unseal = |sealed: &str| uplink_sensor::config::unseal(paths, sealed);
    match uplink_route::sources::named_method(&c.proxy, &unseal) {
        Ok(None) => RouteSpec::NotConfigured(format!(
            "the sensor in {} has no named proxy (uplink sensor proxy set --proxy-url URL)",
            paths.config_dir.display()
        )),
        Ok(Some(candidate)) => {
            if let Candidate::Proxy {
                credentials: Some(c),
                ..
            } = &candidate
            {
                secrets.push(c.password.clone());
            }
            RouteSpec::Route(vec![candidate])
        }
        Err(p) => RouteSpec::Failed {
            code: p.code,
            why: p.message,
        },
    }
}
