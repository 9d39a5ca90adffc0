//! The central policy at the sensor (issue #26, docs/policy.md): what the service's policy says
//! about this sensor's route, kept in `STATE/policy.json`, and the settings the sensor follows.
//!
//! The uploader learns the workspace's current policy version from a response header on its
//! existing connection (heartbeat, batch) and fetches `GET /api/v1/policy` when it differs from
//! the version it last fetched. Before switching to a policy's route it tests it: the service's
//! ping, through that route, with the client certificate ([`crate::upload`]). A route that fails
//! is not taken: the sensor keeps its working route, records the rejection (version, code,
//! detail) for its heartbeats (the service raises `policy_rejected`) and tries again after
//! [`retry_after`]. A policy route that stops working later is dropped the same way when the
//! sensor's own settings still reach the service, so no policy can cut a sensor off for good.
//!
//! The policy's proxy password is sealed with the sensor's own key (`secret.key`, see
//! [`crate::secrets`]) the moment it arrives; `policy.json` (0600) holds only the sealed form,
//! and nothing here logs, reports or shows it.

use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use uplink_policy::{Policy, Precedence, Route};
use uplink_protocol::heartbeat::{PolicyRejection, PolicyState};
use uplink_proxy::{Mode, ProxySettings};

use crate::config::{Config, Paths};

/// `STATE/policy.json`.
pub fn file(paths: &Paths) -> PathBuf {
    paths.state_dir.join("policy.json")
}

/// Where an applied policy's proxy CA is written.
pub fn ca_file(paths: &Paths) -> PathBuf {
    paths.state_dir.join("policy-ca.pem")
}

/// What the sensor keeps of the policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Stored {
    /// The workspace's policy version last fetched (0: none yet).
    pub fetched: u64,
    /// The policy in use, without its password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied: Option<Policy>,
    /// Its proxy password sealed with `secret.key` (`enc:v1:…`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sealed_password: Option<String>,
    /// The last policy whose route failed its test.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejected: Option<PolicyRejection>,
    /// Unix seconds: when a rejected policy is fetched and tested again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<i64>,
}

impl Stored {
    /// What `policy.json` holds; nothing (no policy) when it is absent or unreadable.
    pub fn load(paths: &Paths) -> Stored {
        std::fs::read(file(paths))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Writes `policy.json` (0600, atomically).
    pub fn save(&self, paths: &Paths) -> std::io::Result<()> {
        let body = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        crate::fsutil::write_private(&file(paths), &body)
    }

    /// What heartbeats and `sensor status` report.
    pub fn state(&self) -> PolicyState {
        PolicyState {
            applied: self.applied.as_ref().map(|p| p.version),
            fetched: self.fetched,
            rejected: self.rejected.clone(),
        }
    }

    /// Whether the policy should be fetched now: the service names another version than the
    /// one last fetched, or a rejected one is due for another test.
    pub fn due(&self, announced: u64, now_unix: i64) -> bool {
        announced != self.fetched
            || (self.rejected.is_some() && self.retry_at.is_some_and(|t| now_unix >= t))
    }
}

/// Now, in Unix seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// When a rejected policy is tried again: five heartbeat intervals, at least 10 s and at most
/// an hour. Pure.
pub fn retry_after(heartbeat_secs: u64) -> u64 {
    (heartbeat_secs.saturating_mul(5)).clamp(10, 3600)
}

/// The sensor's own `[proxy]` settings in words, when it has settings of its own (an explicit
/// proxy, a PAC, a mode chosen); `None` for the default (`auto` with nothing set). Pure.
pub fn local_description(p: &ProxySettings) -> Option<String> {
    let own = p.url.is_some() || p.pac.is_some() || p.mode.is_some_and(|m| m != Mode::Auto);
    if !own {
        return None;
    }
    let mut text = p.mode().as_str().to_owned();
    if let Some(u) = p.url.as_deref().or(p.pac.as_deref()) {
        text.push(' ');
        text.push_str(u);
    }
    Some(text)
}

/// The proxy settings a policy gives. `sealed_password` is its password sealed with this
/// sensor's key; `ca` where its proxy CA was written; `local` the sensor's own settings, whose
/// allow-list of credential hosts is kept. Pure.
pub fn settings_of(
    policy: &Policy,
    sealed_password: Option<&str>,
    ca: Option<&Path>,
    local: &ProxySettings,
) -> ProxySettings {
    let mut s = ProxySettings {
        origin: Some(policy.source()),
        credential_hosts: local.credential_hosts.clone(),
        fallback: policy.fallback.map(|f| match f {
            uplink_policy::Fallback::Direct => uplink_proxy::Fallback::Direct,
            uplink_policy::Fallback::Never => uplink_proxy::Fallback::Never,
        }),
        ..ProxySettings::default()
    };
    match &policy.route {
        Route::Proxy { url, user, .. } => {
            s.mode = Some(Mode::Explicit);
            s.url = Some(url.clone());
            s.user = user.clone();
            s.password = sealed_password.map(str::to_owned);
            s.bypass = policy.bypass_text();
            s.proxy_ca = ca.map(|p| p.display().to_string());
        }
        Route::Pac { url } => {
            s.mode = Some(Mode::Pac);
            s.pac = Some(url.clone());
        }
        Route::Wpad => s.mode = Some(Mode::Wpad),
        Route::Direct => s.mode = Some(Mode::Direct),
    }
    s
}

/// `config` with the route the sensor follows: the applied policy's when it wins over the
/// local settings ([`uplink_policy::precedence`]), and which won.
pub fn effective(paths: &Paths, config: Config, stored: &Stored) -> (Config, Precedence) {
    let local = local_description(&config.proxy);
    let precedence = uplink_policy::precedence(stored.applied.as_ref(), local.as_deref());
    let Some(policy) = stored.applied.as_ref().filter(|_| precedence.use_policy) else {
        return (config, precedence);
    };
    let ca = match &policy.route {
        Route::Proxy {
            ca_pem: Some(_), ..
        } => Some(ca_file(paths)),
        _ => None,
    };
    let proxy = settings_of(
        policy,
        stored.sealed_password.as_deref(),
        ca.as_deref(),
        &config.proxy,
    );
    (Config { proxy, ..config }, precedence)
}

/// `sensor.toml` with the applied policy over it: what the uploader, `sensor proxy show` and
/// `uplink proxy explain` follow.
pub fn load_effective(paths: &Paths) -> Result<(Config, Precedence), crate::config::ConfigError> {
    let config = Config::load(paths)?;
    Ok(effective(paths, config, &Stored::load(paths)))
}

/// A fetched policy made ready to keep: its password sealed with this sensor's key, its CA
/// written beside `policy.json`. Returns the policy without its password and the sealed one.
pub fn prepare(
    paths: &Paths,
    policy: &Policy,
) -> Result<(Policy, Option<String>), crate::secrets::SecretError> {
    let sealed = match policy.route.password() {
        Some(p) => {
            let sb = crate::secrets::SecretBox::open_or_create(&paths.secret_key_file())?;
            Some(sb.seal(&SecretString::from(p.expose().to_owned())))
        }
        None => None,
    };
    if let Route::Proxy {
        ca_pem: Some(pem), ..
    } = &policy.route
    {
        crate::fsutil::write_private(&ca_file(paths), pem.as_bytes()).map_err(|source| {
            crate::secrets::SecretError::Io {
                path: ca_file(paths).display().to_string(),
                source,
            }
        })?;
    }
    Ok((policy.redacted(), sealed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use uplink_policy::{Password, Target};

    fn local(url: Option<&str>, mode: Option<Mode>) -> ProxySettings {
        ProxySettings {
            url: url.map(str::to_owned),
            mode,
            ..ProxySettings::default()
        }
    }

    #[test]
    fn local_settings_in_words() {
        let cases = [
            (local(None, None), None),
            (local(None, Some(Mode::Auto)), None),
            (
                local(Some("http://a:3128"), None),
                Some("explicit http://a:3128"),
            ),
            (local(None, Some(Mode::Direct)), Some("direct")),
            (local(None, Some(Mode::Wpad)), Some("wpad")),
        ];
        for (settings, want) in cases {
            assert_eq!(
                local_description(&settings).as_deref(),
                want,
                "{settings:?}"
            );
        }
    }

    #[test]
    fn a_policy_becomes_settings_and_wins_unless_it_allows_local_ones() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(Some(dir.path()));
        let mut p = Policy::new(
            Route::Proxy {
                url: "http://b:3128".into(),
                user: Some("CORP\\svc".into()),
                password: Some(Password::new("pw-at-the-sensor")),
                ca_pem: None,
            },
            Target::All,
        );
        p.version = 7;
        p.bypass = vec![".corp".into(), "10.0.0.0/8".into()];
        let (kept, sealed) = prepare(&paths, &p).unwrap();
        let sealed = sealed.unwrap();
        assert!(sealed.starts_with("enc:v1:") && !sealed.contains("pw-at"));
        assert!(kept.route.password().is_none());
        let stored = Stored {
            fetched: 7,
            applied: Some(kept.clone()),
            sealed_password: Some(sealed.clone()),
            ..Stored::default()
        };
        stored.save(&paths).unwrap();
        let text = std::fs::read_to_string(file(&paths)).unwrap();
        assert!(!text.contains("pw-at-the-sensor"), "{text}");
        assert_eq!(Stored::load(&paths), stored);
        let config: Config = toml::from_str(
            "format = 1\nworkspace = \"w\"\nsensor_id = \"s\"\nsensor_url = \"https://wsensorapi.x:8443\"\n[proxy]\nurl = \"http://a:3128\"\n",
        )
        .unwrap();
        let (eff, prec) = effective(&paths, config.clone(), &stored);
        assert!(prec.use_policy);
        assert_eq!(prec.source, "policy v7 from the service");
        assert_eq!(
            prec.overrode.as_deref(),
            Some("local settings (sensor.toml): explicit http://a:3128")
        );
        assert_eq!(eff.proxy.url.as_deref(), Some("http://b:3128"));
        assert_eq!(eff.proxy.user.as_deref(), Some("CORP\\svc"));
        assert_eq!(eff.proxy.password.as_deref(), Some(sealed.as_str()));
        assert_eq!(eff.proxy.bypass.as_deref(), Some(".corp,10.0.0.0/8"));
        assert_eq!(
            eff.proxy.origin.as_deref(),
            Some("policy v7 from the service")
        );
        assert_eq!(
            crate::config::unseal(&paths, &sealed).map(|s| {
                use secrecy::ExposeSecret;
                s.expose_secret().to_owned()
            }),
            Ok("pw-at-the-sensor".to_owned())
        );
        // allow_local: the sensor's own settings stay.
        let allow = Stored {
            applied: Some(Policy {
                allow_local: true,
                ..kept
            }),
            ..stored.clone()
        };
        let (eff, prec) = effective(&paths, config.clone(), &allow);
        assert!(!prec.use_policy);
        assert_eq!(eff.proxy, config.proxy);
        // No policy: nothing changes.
        let (eff, prec) = effective(&paths, config.clone(), &Stored::default());
        assert_eq!((eff, prec.use_policy), (config, false));
    }

    #[test]
    fn fetching_is_due_on_a_new_version_or_a_retry() {
        let rejected = Stored {
            fetched: 3,
            rejected: Some(PolicyRejection {
                version: 3,
                code: "TCP_REFUSED".into(),
                ..Default::default()
            }),
            retry_at: Some(100),
            ..Stored::default()
        };
        // (stored, announced, now, due)
        let cases = [
            (Stored::default(), 0, 0, false),
            (Stored::default(), 1, 0, true),
            (rejected.clone(), 3, 99, false),
            (rejected.clone(), 3, 100, true),
            (rejected.clone(), 4, 0, true),
        ];
        for (s, announced, now, want) in cases {
            assert_eq!(s.due(announced, now), want, "{s:?} {announced} {now}");
        }
        assert_eq!(
            (retry_after(1), retry_after(60), retry_after(100_000)),
            (10, 300, 3600)
        );
    }
}
