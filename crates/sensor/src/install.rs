//! `uplink sensor install`, `uninstall`, and `proxy set`.
//!
//! Install mirrors the seeds' installer switches (ProxyUrl, ProxyUserName, ProxyUserPassword,
//! /quiet). Everything that can fail for a reason outside this machine — the bundle's CA pin, the
//! proxy, the service, the access key — is checked *before* a single file is written, and a write
//! that fails removes what was written: nothing is ever left half-installed.
//!
//! Without `--proxy-url`, install records the installing shell's proxy environment (the sensor
//! runs as a service, which does not inherit it) and uses `auto` mode — whose first step, WPAD, it
//! runs for its own connection check too, so that install and the running sensor take one route.

use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use uplink_client::{Endpoint, TlsSettings};
use uplink_proxy::{Fallback, ProxySettings};
use uplink_tunnel::{Credentials, ProxyUrl};

use crate::config::{Config, Paths, CONFIG_FORMAT};
use crate::secrets::SecretBox;
use crate::{fsutil, link, SensorError};

/// The enrollment bundle as read by the sensor (see docs/protocol.md).
#[derive(Deserialize)]
struct Bundle {
    #[serde(default = "one")]
    format: u32,
    workspace: String,
    sensor_url: String,
    access_key: String,
    ca_pem: String,
    ca_sha256: String,
}

fn one() -> u32 {
    1
}

/// The installer's switches.
#[derive(Debug, Default)]
pub struct InstallOptions {
    pub bundle: PathBuf,
    pub proxy_url: Option<String>,
    pub proxy_user: Option<String>,
    pub proxy_password: Option<SecretString>,
    /// For an HTTPS proxy: the CA file its certificate chains to, instead of the system roots.
    pub proxy_ca: Option<PathBuf>,
    /// Hosts that skip the proxy (NO_PROXY syntax).
    pub bypass: Option<String>,
    /// DIRECT when the proxy cannot be reached? (default: never for an explicit proxy)
    pub fallback: Option<Fallback>,
    /// The installing shell's proxy environment, recorded for `auto` when no proxy is given.
    pub env: Option<uplink_proxy::env::FromEnv>,
    /// The sensor's display name (default: the host name).
    pub name: Option<String>,
    /// How long to keep retrying an enrollment the service answers 429 (rate limited), honouring
    /// its Retry-After (default [`DEFAULT_ENROLL_WAIT`]).
    pub enroll_wait: Option<Duration>,
}

/// How long `install` keeps retrying a rate-limited enrollment by default: a mass deployment
/// spreads over the service's windows instead of failing.
pub const DEFAULT_ENROLL_WAIT: Duration = Duration::from_secs(600);

/// How long to wait before retrying an enrollment answered 429: the service's Retry-After (1 s
/// to 5 min; without one, 1, 2, 4 … 60 s by attempt), plus `jitter` (0 to 1) of up to a fifth
/// of it, so thousands of installers told the same time do not all come back at once. Pure.
pub fn enroll_backoff(retry_after: Option<Duration>, attempt: u32, jitter: f64) -> Duration {
    let base = match retry_after {
        Some(d) => d.clamp(Duration::from_secs(1), Duration::from_secs(300)),
        None => Duration::from_secs(1u64 << attempt.saturating_sub(1).min(6))
            .min(Duration::from_secs(60)),
    };
    base + base.mul_f64(jitter.clamp(0.0, 1.0) / 5.0)
}

/// What install did.
#[derive(Debug, Clone, Serialize)]
pub struct Installed {
    pub workspace: String,
    pub sensor_id: String,
    pub sensor_url: String,
    pub route: String,
    pub certificate_expires: String,
    pub config_dir: PathBuf,
    pub state_dir: PathBuf,
}

const ENROLL_TIMEOUT: Duration = Duration::from_secs(15);
/// Placeholders for passwords not yet sealed (the key file is written only on success).
const PENDING_EXPLICIT: &str = "pending:explicit";
const PENDING_ENV: &str = "pending:env";

/// Validates the proxy switches: the proxy URL and the credentials to use.
pub fn proxy_switches(
    url: Option<&str>,
    user: Option<&str>,
    password: Option<SecretString>,
) -> Result<Option<(ProxyUrl, Option<Credentials>)>, SensorError> {
    let Some(url) = url else {
        if user.is_some() || password.is_some() {
            return Err(SensorError::Switch(
                "--proxy-user and --proxy-password need --proxy-url".into(),
            ));
        }
        return Ok(None);
    };
    let (parsed, inline) = ProxyUrl::parse(url).map_err(|e| SensorError::Switch(e.to_string()))?;
    let credentials = match (inline, user, password) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return Err(SensorError::Switch("give the proxy credentials either in the URL or with --proxy-user/--proxy-password, not both".into()));
        }
        (Some(c), None, None) => Some(c),
        (None, Some(u), Some(p)) => {
            if u.trim().is_empty() {
                return Err(SensorError::Switch("--proxy-user is empty".into()));
            }
            Some(Credentials {
                user: u.to_owned(),
                password: p,
            })
        }
        (None, Some(_), None) => {
            return Err(SensorError::Switch(
                "--proxy-user needs a password: --proxy-password PASSWORD, or (kept out of the shell history and ps) UPLINK_PROXY_PASSWORD in the environment".into(),
            ))
        }
        (None, None, Some(_)) => {
            return Err(SensorError::Switch(
                "--proxy-password needs --proxy-user (DOMAIN\\user)".into(),
            ))
        }
        (None, None, None) => None,
    };
    Ok(Some((parsed, credentials)))
}

/// `--proxy-user` and `--proxy-password` for the proxies a PAC script or WPAD names (no proxy
/// URL to carry them): both, or neither.
pub fn credential_switches(
    user: Option<String>,
    password: Option<SecretString>,
) -> Result<Option<Credentials>, SensorError> {
    match (user, password) {
        (Some(user), Some(_)) if user.trim().is_empty() => {
            Err(SensorError::Switch("--proxy-user is empty".into()))
        }
        (Some(user), Some(password)) => Ok(Some(Credentials { user, password })),
        (None, None) => Ok(None),
        _ => Err(SensorError::Switch(
            "give --proxy-user and --proxy-password together (the password may come from UPLINK_PROXY_PASSWORD in the environment instead)".into(),
        )),
    }
}

/// Installs and enrolls a sensor. See the module docs.
pub async fn install(paths: &Paths, opts: InstallOptions) -> Result<Installed, SensorError> {
    if paths.config_file().exists() {
        return Err(SensorError::AlreadyInstalled(paths.config_dir.clone()));
    }
    let proxy = proxy_switches(
        opts.proxy_url.as_deref(),
        opts.proxy_user.as_deref(),
        opts.proxy_password,
    )?;
    let bundle = read_bundle(&opts.bundle)?;
    let endpoint = Endpoint::parse(&bundle.sensor_url)?;

    // The proxy settings to record, with passwords still in memory.
    let mut settings = ProxySettings {
        fallback: opts.fallback,
        ..Default::default()
    };
    let mut explicit_password = None;
    let mut env_password = None;
    match proxy {
        Some((url, creds)) => {
            settings.url = Some(url.to_string());
            settings.bypass = opts.bypass;
            settings.proxy_ca = checked_proxy_ca(opts.proxy_ca.as_deref())?;
            settings.origin = Some("install switches".into());
            if let Some(c) = creds {
                settings.user = Some(c.user.clone());
                settings.password = Some(PENDING_EXPLICIT.into());
                explicit_password = Some(c.password);
            }
        }
        None => {
            if opts.bypass.is_some() {
                return Err(SensorError::Switch("--bypass needs --proxy-url".into()));
            }
            if opts.proxy_ca.is_some() {
                return Err(SensorError::Switch(
                    "--proxy-ca needs --proxy-url https://HOST:PORT (it is the CA of an HTTPS proxy)"
                        .into(),
                ));
            }
            if let Some(env) = opts.env.filter(|e| !e.capture.is_empty()) {
                let mut capture = env.capture;
                if let Some(c) = env.credentials {
                    capture.user = Some(c.user.clone());
                    capture.password = Some(PENDING_ENV.into());
                    env_password = Some(c.password);
                }
                settings.env = Some(capture);
                settings.origin = Some("install (environment captured)".into());
            }
        }
    }
    let unseal_pending = |sealed: &str| -> Result<SecretString, String> {
        match sealed {
            PENDING_EXPLICIT => explicit_password
                .clone()
                .ok_or_else(|| "no password".to_owned()),
            PENDING_ENV => env_password.clone().ok_or_else(|| "no password".to_owned()),
            _ => Err("unexpected sealed value during install".into()),
        }
    };
    // In auto mode WPAD comes first, as for the running sensor: discover now (not cached: the
    // state directory is written only once everything worked).
    let mut inputs = uplink_proxy::Inputs::default();
    if settings.mode() == uplink_proxy::Mode::Auto {
        let (sources, host, port) = (paths.wpad.clone(), endpoint.host.clone(), endpoint.port);
        inputs.wpad = tokio::task::spawn_blocking(move || {
            let found = uplink_route::wpad::discover(&sources);
            uplink_route::wpad::evaluate(&found, None, &host, port)
        })
        .await
        .ok();
    }
    let explanation = uplink_proxy::explain_with(
        &settings,
        &endpoint.host,
        endpoint.port,
        &unseal_pending,
        &inputs,
    );

    // Enroll: the private key is made here and never leaves this machine.
    let name = opts.name.unwrap_or_else(hostname);
    let (key_pem, csr_pem) = uplink_pki::generate_key_and_csr(&name)?;
    let key_pem = zeroize::Zeroizing::new(key_pem);
    let anonymous = TlsSettings::new(&bundle.ca_pem, None)?;
    let wait_bound = opts.enroll_wait.unwrap_or(DEFAULT_ENROLL_WAIT);
    let started = std::time::Instant::now();
    let mut attempt = 0u32;
    // Rate limited (429): wait as the service says, within the bound, and enroll again on a new
    // connection (the same key and CSR: nothing was enrolled).
    let (route, enrolled) = loop {
        attempt += 1;
        let mut bad = Default::default();
        let connected = link::connect_route(
            &endpoint,
            &explanation,
            &anonymous,
            ENROLL_TIMEOUT,
            &mut bad,
        )
        .await
        .map_err(|error| match uplink_diag::Diagnose::code(&error) {
            // Only straight to the service: through a proxy, the refusal is the proxy's.
            uplink_diag::Code::TCP_REFUSED | uplink_diag::Code::TCP_TIMEOUT
                if matches!(
                    explanation.route.as_slice(),
                    [uplink_proxy::Candidate::Direct]
                ) =>
            {
                SensorError::EnrollUnreachable {
                    error,
                    port: endpoint.port,
                }
            }
            _ => SensorError::Enroll(error),
        })?;
        let route = connected.route.clone();
        let mut conn = connected.conn;
        match conn
            .enroll(&uplink_protocol::EnrollRequest {
                access_key: bundle.access_key.clone(),
                csr_pem: csr_pem.clone(),
                name: name.clone(),
            })
            .await
        {
            Ok(enrolled) => break (route, enrolled),
            Err(uplink_client::ClientError::Status {
                status: 429,
                message,
                ..
            }) => {
                let wait = enroll_backoff(conn.retry_after(), attempt, rand::random::<f64>());
                let waited = started.elapsed();
                if waited + wait > wait_bound {
                    return Err(SensorError::EnrollRateLimited {
                        attempts: attempt,
                        waited,
                        bound: wait_bound,
                        message,
                    });
                }
                tracing::warn!(attempt, wait_secs = wait.as_secs_f64(), %message, "enrollment rate limited by the service: waiting, then enrolling again");
                drop(conn);
                tokio::time::sleep(wait).await;
            }
            Err(e) => return Err(SensorError::Enroll(e.into())),
        }
    };

    // Everything external worked; now write, undoing on failure.
    let mut config = Config {
        format: CONFIG_FORMAT,
        workspace: enrolled.workspace.clone(),
        sensor_id: enrolled.sensor_id.clone(),
        sensor_url: bundle.sensor_url.clone(),
        proxy: settings,
        queue: Default::default(),
        upload: Default::default(),
        sources: Default::default(),
    };
    let mut written = Written::default();
    let result = (|| -> Result<(), SensorError> {
        written.dir(&paths.config_dir)?;
        written.dir(&paths.state_dir)?;
        if explicit_password.is_some() || env_password.is_some() {
            let key_path = paths.secret_key_file();
            written.files.push(key_path.clone());
            let sb = SecretBox::open_or_create(&key_path)?;
            if let Some(p) = &explicit_password {
                config.proxy.password = Some(sb.seal(p));
            }
            if let (Some(p), Some(env)) = (&env_password, config.proxy.env.as_mut()) {
                env.password = Some(sb.seal(p));
            }
        }
        written.file(&paths.ca_file(), bundle.ca_pem.as_bytes(), false)?;
        written.file(
            &paths.cert_file(),
            enrolled.certificate_pem.as_bytes(),
            false,
        )?;
        written.file(&paths.key_file(), key_pem.as_bytes(), true)?;
        written.file(&paths.config_file(), config.to_toml().as_bytes(), true)?;
        Ok(())
    })();
    if let Err(e) = result {
        written.undo();
        return Err(e);
    }
    Ok(Installed {
        workspace: enrolled.workspace,
        sensor_id: enrolled.sensor_id,
        sensor_url: bundle.sensor_url,
        route,
        certificate_expires: enrolled.not_after,
        config_dir: paths.config_dir.clone(),
        state_dir: paths.state_dir.clone(),
    })
}

/// Files and directories written so far, to undo a failed install.
#[derive(Default)]
struct Written {
    files: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
}

impl Written {
    fn dir(&mut self, path: &Path) -> Result<(), SensorError> {
        if fsutil::create_private_dir(path).map_err(|source| SensorError::Io {
            path: path.into(),
            source,
        })? {
            self.dirs.push(path.into());
        }
        Ok(())
    }

    fn file(&mut self, path: &Path, contents: &[u8], private: bool) -> Result<(), SensorError> {
        self.files.push(path.into());
        let r = if private {
            fsutil::write_private(path, contents)
        } else {
            fsutil::write_public(path, contents)
        };
        r.map_err(|source| SensorError::Io {
            path: path.into(),
            source,
        })
    }

    fn undo(&self) {
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
        for d in self.dirs.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// What `uplink sensor proxy set` asks for.
#[derive(Debug)]
pub enum ProxyChange {
    /// An explicit proxy, with credentials and a bypass list.
    Explicit {
        url: ProxyUrl,
        credentials: Option<Credentials>,
        bypass: Option<String>,
        /// The CA file for an HTTPS proxy (`--proxy-ca`), instead of the system roots.
        proxy_ca: Option<PathBuf>,
    },
    /// Connect directly.
    Direct,
    /// Use (and record) the proxy environment given.
    FromEnv(uplink_proxy::env::FromEnv),
    /// Back to `auto`, keeping the environment captured earlier.
    Reset,
    /// A proxy from Windows settings, with a WinINet bypass list.
    Windows {
        url: ProxyUrl,
        wininet_bypass: Option<String>,
    },
    /// A PAC script (a file or an `http://` URL), with credentials for the proxies it names.
    Pac {
        pac: String,
        credentials: Option<Credentials>,
        /// The CA file for the HTTPS proxies the script names (`--proxy-ca`).
        proxy_ca: Option<PathBuf>,
    },
    /// WPAD discovery, with credentials (and a CA for HTTPS proxies) for the proxies the
    /// discovered script names.
    Wpad {
        credentials: Option<Credentials>,
        proxy_ca: Option<PathBuf>,
    },
}

/// Reads Windows proxy settings from a .reg export (`uplink winproxy` reads the same) and says
/// what they mean for the sensor: a proxy (with its WinINet bypass list) or DIRECT. Settings
/// that need PAC or WPAD are refused until those land. Returns the change and where it came from.
pub fn windows_change(path: &Path) -> Result<(ProxyChange, String), SensorError> {
    let bad = |reason: String| SensorError::Failed(format!("{}: {reason}", path.display()));
    let bytes = std::fs::read(path).map_err(|source| SensorError::Io {
        path: path.into(),
        source,
    })?;
    let reg = uplink_winproxy::RegFile::parse(&bytes)
        .map_err(|e| bad(format!("not a readable .reg file: {e}")))?;
    let effective = uplink_winproxy::effective_proxy(&reg)
        .map_err(|e| bad(format!("the proxy value cannot be decoded: {e}")))?
        .ok_or_else(|| {
            bad("holds no proxy setting (DefaultConnectionSettings, the Internet Settings strings, WinHttpSettings or TelemetryProxyServer)".into())
        })?;
    let origin = format!("{} {}", path.display(), effective.source);
    let settings = &effective.settings;
    // WinINet's order: automatic detection, then the setup script, then the manual proxy (which
    // is used only when neither is enabled or both fail).
    if settings.auto_detect {
        // WinINet tries automatic detection first; the sensor's wpad mode is the same step.
        return Ok((
            ProxyChange::Wpad {
                credentials: None,
                proxy_ca: None,
            },
            origin,
        ));
    }
    if let Some(pac) = &settings.pac_url {
        // WinINet uses the script before any manual proxy.
        return Ok((
            ProxyChange::Pac {
                pac: pac.clone(),
                credentials: None,
                proxy_ca: None,
            },
            origin,
        ));
    }
    if settings.proxy_server.is_some() {
        let entry = settings
            .proxy_for("https")
            .map_err(|e| bad(format!("its proxy server string cannot be used: {e}")))?
            .ok_or_else(|| bad("its proxy server has no entry for https".into()))?;
        if entry.protocol.as_deref() == Some("socks")
            || entry
                .scheme
                .as_deref()
                .is_some_and(|s| s.starts_with("socks"))
        {
            return Err(bad(format!(
                "its https proxy {entry} is a SOCKS proxy, which this build cannot use yet"
            )));
        }
        let host = if entry.host.contains(':') {
            format!("[{}]", entry.host)
        } else {
            entry.host.clone()
        };
        // WinINet's default proxy port is 80.
        let (url, _) = ProxyUrl::parse(&format!("http://{host}:{}", entry.port.unwrap_or(80)))
            .map_err(|e| bad(format!("its proxy {entry} is not usable: {e}")))?;
        let wininet_bypass = (!settings.bypass.is_empty()).then(|| settings.bypass.join(";"));
        return Ok((
            ProxyChange::Windows {
                url,
                wininet_bypass,
            },
            origin,
        ));
    }
    Ok((ProxyChange::Direct, origin))
}

/// Records which discovered proxies may receive the configured credentials (`sensor proxy set
/// --credential-hosts`); an empty list means none. Returns the list now in force.
pub fn set_credential_hosts(
    paths: &Paths,
    hosts: Option<Vec<String>>,
) -> Result<Option<Vec<String>>, SensorError> {
    let mut config = Config::load(paths)?;
    config.proxy.credential_hosts = hosts.filter(|h| !h.is_empty());
    config.save(paths)?;
    Ok(config.proxy.credential_hosts)
}

/// Replaces the proxy settings of an installed sensor. A running uploader uses them from its
/// next connection; no reinstall. Passwords are sealed; nothing secret is written in clear.
pub fn set_proxy(
    paths: &Paths,
    change: ProxyChange,
    fallback: Option<Fallback>,
    origin: &str,
) -> Result<Config, SensorError> {
    let mut config = Config::load(paths)?;
    let previous_env = config.proxy.env.take();
    // The stored proxy account (user and sealed password), for a change that carries none of
    // its own but keeps using one (a Windows export names proxies, never their credentials).
    let previous_account = (config.proxy.user.take(), config.proxy.password.take());
    let mut settings = ProxySettings {
        fallback,
        origin: Some(origin.to_owned()),
        // A policy over every source, not part of one: kept (`--credential-hosts ''` clears it).
        credential_hosts: config.proxy.credential_hosts.take(),
        ..Default::default()
    };
    let seal = |p: &SecretString| -> Result<String, SensorError> {
        Ok(SecretBox::open_or_create(&paths.secret_key_file())?.seal(p))
    };
    match change {
        ProxyChange::Explicit {
            url,
            credentials,
            bypass,
            proxy_ca,
        } => {
            settings.proxy_ca = checked_proxy_ca(proxy_ca.as_deref())?;
            settings.mode = Some(uplink_proxy::Mode::Explicit);
            settings.url = Some(url.to_string());
            settings.bypass = bypass;
            if let Some(c) = credentials {
                settings.user = Some(c.user.clone());
                settings.password = Some(seal(&c.password)?);
            }
            settings.env = previous_env;
        }
        ProxyChange::Direct => {
            settings.mode = Some(uplink_proxy::Mode::Direct);
            settings.env = previous_env;
        }
        ProxyChange::FromEnv(env) => {
            if env.capture.is_empty() {
                return Err(SensorError::Failed(
                    "--from-env found no proxy variable (https_proxy, HTTPS_PROXY, all_proxy, ALL_PROXY, http_proxy, no_proxy) in this shell".into(),
                ));
            }
            settings.mode = Some(uplink_proxy::Mode::Env);
            let mut capture = env.capture;
            if let Some(c) = env.credentials {
                capture.user = Some(c.user.clone());
                capture.password = Some(seal(&c.password)?);
            }
            settings.env = Some(capture);
        }
        ProxyChange::Reset => {
            settings.env = previous_env;
        }
        ProxyChange::Pac {
            pac,
            credentials,
            proxy_ca,
        } => {
            settings.proxy_ca = checked_proxy_ca(proxy_ca.as_deref())?;
            uplink_route::pac::check(&pac)
                .map_err(|e| SensorError::Failed(format!("the PAC script cannot be used: {e}")))?;
            settings.mode = Some(uplink_proxy::Mode::Pac);
            settings.pac = Some(pac);
            if let Some(c) = credentials {
                settings.user = Some(c.user.clone());
                settings.password = Some(seal(&c.password)?);
            }
            settings.env = previous_env;
        }
        ProxyChange::Wpad {
            credentials,
            proxy_ca,
        } => {
            settings.proxy_ca = checked_proxy_ca(proxy_ca.as_deref())?;
            settings.mode = Some(uplink_proxy::Mode::Wpad);
            if let Some(c) = credentials {
                settings.user = Some(c.user.clone());
                settings.password = Some(seal(&c.password)?);
            }
            settings.env = previous_env;
        }
        ProxyChange::Windows {
            url,
            wininet_bypass,
        } => {
            settings.mode = Some(uplink_proxy::Mode::Explicit);
            settings.url = Some(url.to_string());
            settings.wininet_bypass = wininet_bypass;
            (settings.user, settings.password) = previous_account;
            settings.env = previous_env;
        }
    }
    config.proxy = settings;
    config.save(paths)?;
    // A discovery made under the old settings must not outlive them.
    crate::wpadsource::forget(paths);
    Ok(config)
}

/// A proxy CA file, checked now (readable, PEM certificates) and recorded as an absolute path:
/// the sensor runs from another directory.
fn checked_proxy_ca(path: Option<&Path>) -> Result<Option<String>, SensorError> {
    let Some(path) = path else { return Ok(None) };
    let absolute = std::path::absolute(path).map_err(|source| SensorError::Io {
        path: path.into(),
        source,
    })?;
    if let Err(e) = uplink_tunnel::ProxyTls::new(Some(&absolute), "") {
        let reason = match e {
            uplink_tunnel::TunnelError::Config { reason, .. } => reason,
            other => other.to_string(),
        };
        return Err(SensorError::Switch(format!("--proxy-ca: {reason}")));
    }
    Ok(Some(absolute.display().to_string()))
}

fn read_bundle(path: &Path) -> Result<Bundle, SensorError> {
    let bad = |reason: String| SensorError::Bundle {
        path: path.into(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let bundle: Bundle = serde_json::from_slice(&bytes).map_err(|e| {
        bad(format!(
            "not an uplink enrollment bundle ({e}); use the file `uplink workspace create` wrote"
        ))
    })?;
    if bundle.format > 1 {
        return Err(bad(format!(
            "written by a newer uplink (format {}): upgrade uplink",
            bundle.format
        )));
    }
    let certs = uplink_pki::certs_from_pem(&bundle.ca_pem)
        .map_err(|e| bad(format!("its ca_pem is not a certificate: {e}")))?;
    let actual = uplink_pki::sha256_hex(&certs[0]);
    if !actual.eq_ignore_ascii_case(bundle.ca_sha256.trim()) {
        return Err(SensorError::BundlePin {
            path: path.into(),
            expected: bundle.ca_sha256.clone(),
            actual,
        });
    }
    if bundle.workspace.is_empty() || bundle.access_key.is_empty() {
        return Err(bad("it has no workspace or access key".into()));
    }
    Ok(bundle)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "sensor".into())
}

/// What uninstall removed.
#[derive(Debug, Clone, Serialize)]
pub struct Uninstalled {
    pub removed: Vec<PathBuf>,
    pub undelivered_events: u64,
    /// Whether the service was told (see [`tell_uninstalled`]); set by the caller.
    pub service_told: bool,
}

/// How long `uninstall` tries to tell the service by default.
pub const DEFAULT_TELL_TIMEOUT: Duration = Duration::from_secs(5);

/// Refuses to uninstall while events wait for upload, unless `force`; returns how many wait.
/// What [`uninstall`] checks first, for a caller that does more before removing (telling the
/// service).
pub fn check_uninstall(paths: &Paths, force: bool) -> Result<u64, SensorError> {
    let config = Config::load(paths)?;
    let depth = crate::open_queue(paths, &config)?.depth()?;
    if depth.events > 0 && !force {
        return Err(SensorError::PendingEvents {
            events: depth.events,
            dir: paths.config_dir.clone(),
        });
    }
    Ok(depth.events)
}

/// Tells the service that this sensor is being uninstalled (`POST /api/v1/uninstall` with its
/// certificate), along the sensor's own route (its proxy, PAC, WPAD: what `run` would use),
/// within `timeout`. Best effort: the caller uninstalls whatever this returns; the service then
/// revokes the certificate and shows the sensor `uninstalled`. Returns the route taken.
pub async fn tell_uninstalled(paths: &Paths, timeout: Duration) -> Result<String, SensorError> {
    let config = Config::load(paths)?;
    let read = |p: PathBuf| {
        std::fs::read_to_string(&p).map_err(|source| SensorError::Io { path: p, source })
    };
    let ca = read(paths.ca_file())?;
    let cert = read(paths.cert_file())?;
    let key = zeroize::Zeroizing::new(read(paths.key_file())?);
    let tls = TlsSettings::new(&ca, Some((&cert, &key)))?;
    let endpoint = Endpoint::parse(&config.sensor_url)?;
    let work = async {
        let (cfg, p) = (config.clone(), paths.clone());
        let (host, port) = (endpoint.host.clone(), endpoint.port);
        // Off the runtime's threads: PAC evaluation and WPAD discovery block.
        let explanation = tokio::task::spawn_blocking(move || cfg.explain(&p, &host, port))
            .await
            .map_err(|e| SensorError::Failed(format!("choosing the route failed: {e}")))?;
        let mut bad = Default::default();
        let connected = link::connect_route(&endpoint, &explanation, &tls, timeout, &mut bad)
            .await
            .map_err(|e| {
                SensorError::Failed(format!(
                    "cannot reach the service ({}): {e}",
                    uplink_diag::Diagnose::code(&e)
                ))
            })?;
        let mut conn = connected.conn;
        conn.uninstall().await.map_err(|e| {
            SensorError::Failed(format!(
                "the service did not take it ({}): {e}",
                uplink_diag::Diagnose::code(&e)
            ))
        })?;
        Ok::<_, SensorError>(connected.route)
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(SensorError::Failed(format!(
            "no answer within {} s",
            timeout.as_secs_f64()
        ))),
    }
}

/// Removes an installed sensor. Refuses while events wait for upload, unless `force`.
pub fn uninstall(paths: &Paths, force: bool) -> Result<Uninstalled, SensorError> {
    let undelivered = check_uninstall(paths, force)?;
    let mut removed = Vec::new();
    // Besides what install wrote, what the sensor writes in the state directory as it runs:
    // without them the directory would not be empty and would stay.
    for f in paths.installed_files().into_iter().chain([
        paths.status_file(),
        crate::wpadsource::cache_file(paths),
        crate::report::ReportState::file(paths),
        // The central policy kept (issue #26).
        crate::policy::file(paths),
        crate::policy::ca_file(paths),
    ]) {
        if std::fs::remove_file(&f).is_ok() {
            removed.push(f);
        }
    }
    for dir in [paths.queue_dir(), paths.sources_dir()] {
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|source| SensorError::Io {
                path: dir.clone(),
                source,
            })?;
            removed.push(dir);
        }
    }
    for d in [&paths.state_dir, &paths.config_dir] {
        // Only if empty: never delete files uplink did not write.
        if std::fs::remove_dir(d).is_ok() {
            removed.push(d.clone());
        }
    }
    Ok(Uninstalled {
        removed,
        undelivered_events: undelivered,
        service_told: false,
    })
}

#[cfg(test)]
mod switch_tests {
    use super::*;

    #[test]
    fn rate_limited_enrollments_wait_as_told_with_bounded_jitter() {
        let s = Duration::from_secs;
        // (Retry-After, attempt, jitter, wait)
        let cases: &[(Option<u64>, u32, f64, Duration)] = &[
            (Some(7), 1, 0.0, s(7)),
            (Some(10), 3, 1.0, s(12)),
            (Some(0), 1, 0.0, s(1)),
            (Some(86_400), 1, 0.0, s(300)),
            (None, 1, 0.0, s(1)),
            (None, 2, 0.0, s(2)),
            (None, 5, 0.0, s(16)),
            (None, 40, 0.0, s(60)),
            (None, 40, 2.0, s(72)),
        ];
        for &(retry, attempt, jitter, want) in cases {
            assert_eq!(
                enroll_backoff(retry.map(s), attempt, jitter),
                want,
                "{retry:?} {attempt} {jitter}"
            );
        }
    }

    #[test]
    fn credential_hosts_are_recorded_and_an_empty_list_clears_them() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(Some(dir.path()));
        assert!(
            set_credential_hosts(&paths, None).is_err(),
            "no sensor: nothing to change"
        );
        let config: Config = toml::from_str(
            "format = 1\nworkspace = \"w\"\nsensor_id = \"s\"\nsensor_url = \"https://wsensorapi.uplink.localhost\"\n",
        )
        .unwrap();
        config.save(&paths).unwrap();
        // (given, in force afterwards)
        for (given, want) in [
            (
                Some(vec!["*.corp".to_owned(), "p.example".to_owned()]),
                Some(vec!["*.corp", "p.example"]),
            ),
            (Some(vec![]), None),
            (Some(vec!["q.example".to_owned()]), Some(vec!["q.example"])),
            (None, None),
        ] {
            let want: Option<Vec<String>> = want.map(|w| w.into_iter().map(String::from).collect());
            assert_eq!(set_credential_hosts(&paths, given).unwrap(), want);
            assert_eq!(Config::load(&paths).unwrap().proxy.credential_hosts, want);
        }
    }

    #[test]
    fn pac_and_wpad_credentials_come_in_pairs() {
        use secrecy::ExposeSecret;
        let pw = || Some(SecretString::from("s3cret"));
        let c = credential_switches(Some("CONTOSO\\alice".into()), pw())
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.user.as_str(), c.password.expose_secret()),
            ("CONTOSO\\alice", "s3cret")
        );
        assert!(credential_switches(None, None).unwrap().is_none());
        for (user, password, want) in [
            (Some("alice".to_owned()), None, "together"),
            (None, pw(), "together"),
            (Some("  ".to_owned()), pw(), "--proxy-user is empty"),
        ] {
            let e = credential_switches(user, password).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
            assert!(!e.contains("s3cret"), "{e}");
        }
    }
}
