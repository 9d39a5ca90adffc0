//! Central proxy policy (issue #26): how a sensor reaches the service, set once at the service
//! for a whole workspace (or some of its sensors) instead of on every host.
//!
//! This crate is the pure part, shared by the store, the service, the CLI and the sensor:
//!
//! - the model ([`Policy`], [`Route`], [`Target`]) and its wire form (JSON, the same in the store
//!   and on `GET /api/v1/policy`);
//! - validation with errors that name the input and what to do ([`Policy::validate`]);
//! - which sensors a policy selects ([`Policy::applies_to`]): its target, then its rollout share,
//!   picked by a stable hash of the sensor id ([`rollout_bucket`]), so raising the share only
//!   adds sensors;
//! - precedence over a sensor's local `[proxy]` settings ([`precedence`]): the policy wins unless
//!   it says `allow_local` and the sensor has settings of its own; the explanation names the
//!   source (`policy v7 from the service`) and what it overrode.
//!
//! It deliberately does not decide whether a route works: the sensor tests a policy's route
//! before switching to it and keeps its last working route otherwise (`uplink-sensor`'s
//! `policy.rs`), so no policy can cut a sensor off for good.

use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

/// The response header carrying the workspace's current policy version (on heartbeat and event
/// responses): a sensor that has applied another version fetches [`POLICY_PATH`].
pub const VERSION_HEADER: &str = "x-uplink-policy-version";
/// The sensor endpoint answering a sensor's policy ([`Answer`]), over mutual TLS.
pub const POLICY_PATH: &str = "/api/v1/policy";
/// Bounds of `heartbeat_secs`.
pub const HEARTBEAT_SECS: std::ops::RangeInclusive<u64> = 1..=86_400;
/// Most sensor ids one policy may name.
pub const MAX_SENSORS: usize = 10_000;
/// Most bypass entries.
pub const MAX_BYPASS: usize = 256;
/// Most bytes of a proxy CA bundle.
pub const MAX_CA_BYTES: usize = 64 * 1024;

/// A proxy password. Never in `Debug`; zeroed on drop. Serialised in clear: only inside the
/// mutual-TLS answer to its sensor, and by the store after sealing (the store keeps the sealed
/// form, see `uplink-store`'s policy block).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Password(String);

impl Password {
    pub fn new(text: impl Into<String>) -> Password {
        Password(text.into())
    }
    /// The password itself: only to seal it or to answer the proxy.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl Drop for Password {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// How the sensors reach the service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Route {
    /// An explicit proxy (`http://HOST:PORT`, https, socks5), with credentials and a CA to trust
    /// for an HTTPS proxy.
    Proxy {
        url: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        password: Option<Password>,
        /// PEM of the CA(s) an HTTPS proxy's certificate is checked against.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ca_pem: Option<String>,
    },
    /// A PAC script at this URL.
    Pac { url: String },
    /// WPAD discovery.
    Wpad,
    /// No proxy.
    Direct,
}

impl Route {
    /// One line naming the route, without secrets: `proxy http://b:3128 as CORP\svc`.
    pub fn describe(&self) -> String {
        match self {
            Route::Proxy { url, user, .. } => match user {
                Some(u) => format!("proxy {url} as {u}"),
                None => format!("proxy {url}"),
            },
            Route::Pac { url } => format!("PAC {url}"),
            Route::Wpad => "WPAD".to_owned(),
            Route::Direct => "DIRECT".to_owned(),
        }
    }

    /// The route with its password removed (what `fleet policy show` and logs may see).
    pub fn redacted(&self) -> Route {
        match self {
            Route::Proxy {
                url, user, ca_pem, ..
            } => Route::Proxy {
                url: url.clone(),
                user: user.clone(),
                password: None,
                ca_pem: ca_pem.clone(),
            },
            other => other.clone(),
        }
    }

    /// The password, if the route has one.
    pub fn password(&self) -> Option<&Password> {
        match self {
            Route::Proxy { password, .. } => password.as_ref(),
            _ => None,
        }
    }
}

/// What to do when every proxy of the route fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
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

/// Which sensors of the workspace a policy is for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    All,
    Sensors(Vec<String>),
}

/// A policy. `version` is assigned by the store (1, 2, … per workspace); 0 before that.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    #[serde(default)]
    pub version: u64,
    pub route: Route,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Fallback>,
    /// Hosts that skip the proxy (NO_PROXY syntax, one entry each).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bypass: Vec<String>,
    /// The sensors' heartbeat (and so report and policy check) period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_secs: Option<u64>,
    /// A sensor's own `[proxy]` settings win over this policy, when it has some.
    #[serde(default)]
    pub allow_local: bool,
    pub target: Target,
    /// The share of the targeted sensors that take the policy, 1 to 100.
    #[serde(default = "hundred")]
    pub rollout_percent: u8,
}

fn hundred() -> u8 {
    100
}

/// Why a policy is refused. Each names the input and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("the policy's proxy URL is not usable: {0}")]
    ProxyUrl(String),
    #[error("the policy's proxy URL {0:?} carries credentials: give the user with --proxy-user and the password with --proxy-password-file, so the password is sealed and never shown")]
    CredentialsInUrl(String),
    #[error("the policy has a proxy password but no user: give --proxy-user 'DOMAIN\\user' with --proxy-password-file")]
    PasswordWithoutUser,
    #[error("the policy has the proxy user {0:?} but no password: give --proxy-password-file FILE (a file holding the password)")]
    UserWithoutPassword(String),
    #[error("the policy's proxy user {0:?} is empty or holds control characters: write it as user or 'DOMAIN\\user'")]
    BadUser(String),
    #[error("the policy's proxy password is empty or holds a line break: put the password alone in the file given to --proxy-password-file")]
    BadPassword,
    #[error("the policy's proxy CA is not a PEM certificate bundle (no BEGIN CERTIFICATE line, or over {MAX_CA_BYTES} bytes): give the CA's PEM file with --proxy-ca")]
    BadCa,
    #[error("the policy's proxy CA applies only to an https:// proxy, and {0:?} is not one: drop --proxy-ca, or use https://HOST:PORT")]
    CaWithoutTls(String),
    #[error("the policy's PAC URL is not usable: {0}")]
    PacUrl(String),
    #[error("the policy's heartbeat of {0} s is out of bounds: give --heartbeat-secs from {min} to {max}", min = HEARTBEAT_SECS.start(), max = HEARTBEAT_SECS.end())]
    Heartbeat(u64),
    #[error("the policy's rollout of {0} % is out of bounds: give --rollout from 1 to 100")]
    Rollout(u8),
    #[error("the policy names no sensor: give --all, or one --sensor ID per sensor")]
    NoSensors,
    #[error("the policy names {0} sensors; at most {MAX_SENSORS} are accepted: use --all with --rollout instead")]
    TooManySensors(usize),
    #[error("the sensor id {0:?} is not one: copy it from `uplink fleet list`")]
    BadSensorId(String),
    #[error("the bypass entry {0:?} is not a host, domain or address: give a comma-separated list like .corp.example,10.0.0.0/8")]
    BadBypass(String),
    #[error("the policy has {0} bypass entries; at most {MAX_BYPASS} are accepted")]
    TooManyBypass(usize),
    #[error("a fallback applies to a route through a proxy, PAC or WPAD; a direct route has none: drop --fallback")]
    FallbackWithDirect,
    #[error("bypass entries apply to a route through an explicit proxy only: drop --bypass, or list the hosts in the PAC script")]
    BypassWithoutProxy,
}

impl Policy {
    /// A policy for every sensor, the whole fleet at once, with nothing else set.
    pub fn new(route: Route, target: Target) -> Policy {
        Policy {
            version: 0,
            route,
            fallback: None,
            bypass: Vec::new(),
            heartbeat_secs: None,
            allow_local: false,
            target,
            rollout_percent: 100,
        }
    }

    /// Checks everything a sensor will rely on, so that a bad policy is refused at `set` rather
    /// than by two thousand sensors.
    pub fn validate(&self) -> Result<(), PolicyError> {
        match &self.route {
            Route::Proxy {
                url,
                user,
                password,
                ca_pem,
            } => {
                let (parsed, creds) = uplink_url::ProxyUrl::parse(url)
                    .map_err(|e| PolicyError::ProxyUrl(e.to_string()))?;
                if creds.is_some() {
                    return Err(PolicyError::CredentialsInUrl(redact_userinfo(url)));
                }
                match (user, password) {
                    (None, Some(_)) => return Err(PolicyError::PasswordWithoutUser),
                    (Some(u), None) => return Err(PolicyError::UserWithoutPassword(u.clone())),
                    (Some(u), Some(p)) => {
                        if u.trim().is_empty() || u.chars().any(char::is_control) {
                            return Err(PolicyError::BadUser(u.clone()));
                        }
                        if p.expose().is_empty() || p.expose().contains(['\n', '\r']) {
                            return Err(PolicyError::BadPassword);
                        }
                    }
                    (None, None) => {}
                }
                if let Some(ca) = ca_pem {
                    if ca.len() > MAX_CA_BYTES || !ca.contains("-----BEGIN CERTIFICATE-----") {
                        return Err(PolicyError::BadCa);
                    }
                    if parsed.scheme != "https" {
                        return Err(PolicyError::CaWithoutTls(url.clone()));
                    }
                }
            }
            Route::Pac { url } => {
                uplink_url::HttpUrl::parse(url).map_err(|e| PolicyError::PacUrl(e.to_string()))?;
            }
            Route::Wpad => {}
            Route::Direct => {
                if self.fallback.is_some() {
                    return Err(PolicyError::FallbackWithDirect);
                }
            }
        }
        if !self.bypass.is_empty() && !matches!(self.route, Route::Proxy { .. }) {
            return Err(PolicyError::BypassWithoutProxy);
        }
        if self.bypass.len() > MAX_BYPASS {
            return Err(PolicyError::TooManyBypass(self.bypass.len()));
        }
        for b in &self.bypass {
            let ok = !b.is_empty()
                && b.len() <= 255
                && b.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-_*:/[]".contains(c));
            if !ok {
                return Err(PolicyError::BadBypass(b.clone()));
            }
        }
        if let Some(s) = self.heartbeat_secs {
            if !HEARTBEAT_SECS.contains(&s) {
                return Err(PolicyError::Heartbeat(s));
            }
        }
        if !(1..=100).contains(&self.rollout_percent) {
            return Err(PolicyError::Rollout(self.rollout_percent));
        }
        if let Target::Sensors(ids) = &self.target {
            if ids.is_empty() {
                return Err(PolicyError::NoSensors);
            }
            if ids.len() > MAX_SENSORS {
                return Err(PolicyError::TooManySensors(ids.len()));
            }
            for id in ids {
                let ok = !id.is_empty()
                    && id.len() <= 128
                    && id
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
                if !ok {
                    return Err(PolicyError::BadSensorId(id.clone()));
                }
            }
        }
        Ok(())
    }

    /// Whether this policy is for `sensor_id`: targeted, and inside the rollout share.
    pub fn applies_to(&self, sensor_id: &str) -> bool {
        let targeted = match &self.target {
            Target::All => true,
            Target::Sensors(ids) => ids.iter().any(|i| i == sensor_id),
        };
        targeted && rollout_bucket(sensor_id) < self.rollout_percent
    }

    /// The policy without its password: for `fleet policy show`, the admin API, logs.
    pub fn redacted(&self) -> Policy {
        Policy {
            route: self.route.redacted(),
            ..self.clone()
        }
    }

    /// `policy v7 from the service`.
    pub fn source(&self) -> String {
        source_label(self.version)
    }

    /// The bypass list as NO_PROXY text (`a,b`), `None` when empty.
    pub fn bypass_text(&self) -> Option<String> {
        (!self.bypass.is_empty()).then(|| self.bypass.join(","))
    }
}

/// `policy vN from the service`: how explanations name a policy.
pub fn source_label(version: u64) -> String {
    format!("policy v{version} from the service")
}

/// `http://user:****@host:port` → `http://host:port`-ish text safe to show: user info removed.
fn redact_userinfo(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}{}", &url[..s + 3], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

/// The sensor's rollout bucket, 0 to 99: the first 8 bytes of SHA-256 of its id, modulo 100.
/// Stable (the same on every replica and across versions), so a 10 % rollout raised to 50 %
/// keeps the first 10 % and adds others.
pub fn rollout_bucket(sensor_id: &str) -> u8 {
    use sha2::Digest;
    let d = sha2::Sha256::digest(sensor_id.as_bytes());
    let mut n = [0u8; 8];
    n.copy_from_slice(&d[..8]);
    (u64::from_be_bytes(n) % 100) as u8
}

/// The answer to `GET /api/v1/policy`: the workspace's current policy version (0: none ever set;
/// a cleared policy keeps its version) and the policy for this sensor, if one applies to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    pub version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Policy>,
}

impl Answer {
    /// The answer for `sensor_id` given the workspace's current policy (`None`: none, or
    /// cleared) and version.
    pub fn for_sensor(version: u64, current: Option<&Policy>, sensor_id: &str) -> Answer {
        Answer {
            version,
            policy: current.filter(|p| p.applies_to(sensor_id)).cloned(),
        }
    }
}

/// Which settings a sensor follows, and how the explanation names them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Precedence {
    /// The policy's route is the one to use.
    pub use_policy: bool,
    /// `policy v7 from the service`, or `local settings (sensor.toml)`.
    pub source: String,
    /// What the winner overrode (the local settings, or the policy allowing them), if anything.
    pub overrode: Option<String>,
}

/// How a sensor's local settings are named when they win.
pub const LOCAL_SOURCE: &str = "local settings (sensor.toml)";

/// Decides between an applied policy and the sensor's own settings. `local` describes the local
/// `[proxy]` settings when the sensor has any of its own (`None`: it has none, e.g. `auto`). Pure.
pub fn precedence(policy: Option<&Policy>, local: Option<&str>) -> Precedence {
    match (policy, local) {
        (None, _) => Precedence {
            use_policy: false,
            source: LOCAL_SOURCE.to_owned(),
            overrode: None,
        },
        (Some(p), Some(_)) if p.allow_local => Precedence {
            use_policy: false,
            source: LOCAL_SOURCE.to_owned(),
            overrode: Some(format!(
                "{} ({}), which allows local settings",
                p.source(),
                p.route.describe()
            )),
        },
        (Some(p), local) => Precedence {
            use_policy: true,
            source: p.source(),
            overrode: local.map(|l| format!("{LOCAL_SOURCE}: {l}")),
        },
    }
}

#[cfg(test)]
mod tests;
