//! What `uplink sensor proxy show` prints: the sensor's proxy settings (never a password) and the
//! route they give to the service, as JSON for scripts and as text for people.
//!
//! The JSON is a contract: its field names and shape stay (objects with their keys sorted, as
//! `serde_json`'s map writes them; `null` for what is not set). Add fields, never rename one.

use serde::Serialize;
use uplink_proxy::{Explanation, ProxySettings, SourceReport};

pub use uplink_proxy::view::{credential_notes, route_line, CredentialNote};

/// `sensor proxy show`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ProxyShow {
    pub mode: &'static str,
    pub fallback: &'static str,
    pub url: Option<String>,
    pub user: Option<String>,
    /// The hosts that go direct: `--bypass` (no_proxy syntax) or, from a Windows export, the
    /// WinINet list (`;`-separated, `<local>`), as `bypass_syntax` says.
    pub bypass: Option<String>,
    /// `no_proxy` or `wininet`; `null` when there is no bypass list.
    pub bypass_syntax: Option<&'static str>,
    pub proxy_ca: Option<String>,
    /// The command that set these settings.
    pub origin: Option<String>,
    /// The proxy variables captured from a shell, credentials removed.
    pub env: Option<EnvView>,
    pub credential_hosts: Vec<String>,
    /// The ordered route, in PAC notation.
    pub route: Vec<String>,
    pub credentials: Vec<CredentialNote>,
    pub sources: Vec<SourceReport>,
    pub problem: Option<String>,
    /// Whether the sensor's last connection was chosen under these settings (`status.json`):
    /// `false` while a running sensor has not switched yet (it does within seconds); `null`
    /// when no connection is recorded.
    pub applied: Option<bool>,
    /// The route of the sensor's last connection, from `status.json`.
    pub route_in_use: Option<String>,
    /// Where these settings come from: `local settings (sensor.toml)`, or `policy v7 from the
    /// service` (the central policy, issue #26).
    pub source: String,
    /// What that source overrode: the local settings under a policy, or a policy that allows
    /// local settings.
    pub overrode: Option<String>,
}

/// The captured proxy variables as shown (every key present, `null` when unset).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct EnvView {
    pub https_proxy: Option<String>,
    pub http_proxy: Option<String>,
    pub all_proxy: Option<String>,
    pub no_proxy: Option<String>,
    pub user: Option<String>,
}

impl ProxyShow {
    /// From the settings in `sensor.toml` and what the proxy engine made of them.
    pub fn new(p: &ProxySettings, ex: &Explanation) -> ProxyShow {
        ProxyShow {
            mode: ex.mode.as_str(),
            fallback: ex.fallback.as_str(),
            url: p.url.clone(),
            user: p.user.clone(),
            bypass: p.bypass.clone().or_else(|| p.wininet_bypass.clone()),
            bypass_syntax: match (&p.bypass, &p.wininet_bypass) {
                (Some(_), _) => Some("no_proxy"),
                (None, Some(_)) => Some("wininet"),
                (None, None) => None,
            },
            proxy_ca: p.proxy_ca.clone(),
            origin: p.origin.clone(),
            env: p.env.as_ref().map(|e| EnvView {
                https_proxy: e.https_proxy.clone(),
                http_proxy: e.http_proxy.clone(),
                all_proxy: e.all_proxy.clone(),
                no_proxy: e.no_proxy.clone(),
                user: e.user.clone(),
            }),
            credential_hosts: p.credential_hosts.clone().unwrap_or_default(),
            route: uplink_proxy::view::route(ex),
            credentials: credential_notes(ex),
            sources: ex.sources.clone(),
            problem: ex.problem.clone(),
            applied: None,
            route_in_use: None,
            source: uplink_policy::LOCAL_SOURCE.to_owned(),
            overrode: None,
        }
    }

    /// With the source of the settings: the central policy's precedence over sensor.toml.
    pub fn with_precedence(mut self, p: &uplink_policy::Precedence) -> ProxyShow {
        self.source = p.source.clone();
        self.overrode = p.overrode.clone();
        self
    }

    /// With what the uploader recorded of its last connection: its route, and whether it was
    /// chosen under `p` (these settings).
    pub fn with_status(mut self, p: &ProxySettings, status: &crate::status::Status) -> ProxyShow {
        self.route_in_use = status.route.clone();
        self.applied = status
            .proxy_settings
            .as_ref()
            .map(|f| *f == crate::config::proxy_fingerprint(p));
        self
    }

    /// `--json`: pretty JSON, every object's keys sorted (the contract above).
    pub fn json(&self) -> String {
        crate::render::sorted_json(self)
    }

    /// The text, one fact a line.
    pub fn text(&self) -> String {
        let mut out = crate::render::Lines::default();
        let mut line = |s: String| out.line(s);
        line(format!("mode      {}", self.mode));
        line(format!("fallback  {}", self.fallback));
        if let Some(u) = &self.url {
            line(format!("proxy     {u}"));
        }
        if let Some(u) = &self.user {
            line(format!("user      {u} (password stored encrypted)"));
        }
        if let Some(b) = &self.bypass {
            match self.bypass_syntax {
                Some("wininet") => line(format!("bypass    {b} (WinINet rules)")),
                _ => line(format!("bypass    {b}")),
            }
        }
        if let Some(ca) = &self.proxy_ca {
            line(format!("proxy CA  {ca}"));
        }
        if let Some(o) = &self.origin {
            line(format!("set by    {o}"));
        }
        line(format!("source    {}", self.source));
        if let Some(o) = &self.overrode {
            line(format!("overrode  {o}"));
        }
        match (self.applied, &self.route_in_use) {
            (Some(true), Some(r)) => line(format!("in use    yes: the sensor's last connection ({r})")),
            (Some(false), Some(r)) => line(format!(
                "in use    not yet: the sensor's last connection ({r}) predates these settings; a running sensor switches within seconds"
            )),
            _ => line("in use    no connection recorded yet (`uplink sensor run` makes one)".into()),
        }
        if !self.credential_hosts.is_empty() {
            line(format!(
                "credential hosts  {} (discovered proxies that may receive the credentials, by Digest, NTLM or Negotiate only)",
                self.credential_hosts.join(", ")
            ));
        }
        line(format!("route     {}", route_line(&self.route)));
        for c in &self.credentials {
            line(format!("  {}: {}", c.proxy, c.note));
        }
        if let Some(pr) = &self.problem {
            line(format!("problem   {pr}"));
        }
        out.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(settings: &ProxySettings) -> ProxyShow {
        let unseal = |_: &str| -> Result<secrecy::SecretString, String> {
            Ok(secrecy::SecretString::from("pw"))
        };
        let ex = uplink_proxy::explain(settings, "svc.example", 443, &unseal);
        ProxyShow::new(settings, &ex)
    }

    fn explicit() -> ProxySettings {
        ProxySettings {
            mode: Some(uplink_proxy::Mode::Explicit),
            url: Some("http://proxy.corp:3128".into()),
            user: Some("CONTOSO\\alice".into()),
            password: Some("enc:v1:sealed".into()),
            bypass: Some(".internal".into()),
            origin: Some("uplink sensor proxy set".into()),
            credential_hosts: Some(vec!["*.corp".into()]),
            ..Default::default()
        }
    }

    /// The JSON the binary built inline with `serde_json::json!`, kept as the reference.
    fn inline_json(p: &ProxySettings, ex: &Explanation) -> String {
        let env = p.env.as_ref().map(|e| {
            serde_json::json!({"https_proxy": e.https_proxy, "http_proxy": e.http_proxy, "all_proxy": e.all_proxy, "no_proxy": e.no_proxy, "user": e.user})
        });
        let route: Vec<String> = ex.route.iter().map(ToString::to_string).collect();
        let v = serde_json::json!({
            "mode": ex.mode.as_str(),
            "fallback": ex.fallback.as_str(),
            "url": p.url,
            "user": p.user,
            "bypass": p.bypass.clone().or_else(|| p.wininet_bypass.clone()),
            "bypass_syntax": match (&p.bypass, &p.wininet_bypass) {
                (Some(_), _) => Some("no_proxy"),
                (None, Some(_)) => Some("wininet"),
                (None, None) => None,
            },
            "proxy_ca": p.proxy_ca,
            "origin": p.origin,
            "env": env,
            "credential_hosts": p.credential_hosts.clone().unwrap_or_default(),
            "route": route,
            "credentials": credential_notes(ex).into_iter().map(|c| serde_json::json!({"proxy": c.proxy, "note": c.note})).collect::<Vec<_>>(),
            "sources": ex.sources,
            "problem": ex.problem,
            "applied": null,
            "route_in_use": null,
            "source": "local settings (sensor.toml)",
            "overrode": null,
        });
        serde_json::to_string_pretty(&v).unwrap()
    }

    #[test]
    fn a_windows_bypass_list_is_shown_with_its_syntax() {
        let windows = ProxySettings {
            mode: Some(uplink_proxy::Mode::Explicit),
            url: Some("http://proxy.corp:8080".into()),
            user: Some("CONTOSO\\alice".into()),
            wininet_bypass: Some("*.corp;<local>".into()),
            ..Default::default()
        };
        let shown = show(&windows);
        assert_eq!(shown.bypass.as_deref(), Some("*.corp;<local>"));
        assert_eq!(shown.bypass_syntax, Some("wininet"));
        assert!(shown
            .text()
            .contains("bypass    *.corp;<local> (WinINet rules)"));
        assert!(shown.text().contains("user      CONTOSO\\alice"));
        assert_eq!(show(&explicit()).bypass_syntax, Some("no_proxy"));
        assert_eq!(show(&ProxySettings::default()).bypass_syntax, None);
    }

    #[test]
    fn json_is_byte_for_byte_what_the_binary_printed() {
        let env = ProxySettings {
            mode: Some(uplink_proxy::Mode::Env),
            env: Some(uplink_proxy::env::EnvCapture {
                https_proxy: Some("http://p:8080".into()),
                no_proxy: Some("localhost".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        for settings in [explicit(), env, ProxySettings::default()] {
            let unseal = |_: &str| -> Result<secrecy::SecretString, String> {
                Ok(secrecy::SecretString::from("pw"))
            };
            let ex = uplink_proxy::explain(&settings, "svc.example", 443, &unseal);
            let shown = ProxyShow::new(&settings, &ex);
            assert_eq!(shown.json(), inline_json(&settings, &ex), "{settings:?}");
        }
    }

    #[test]
    fn json_field_names_and_no_password() {
        let json = show(&explicit()).json();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "applied",
                "bypass",
                "bypass_syntax",
                "credential_hosts",
                "credentials",
                "env",
                "fallback",
                "mode",
                "origin",
                "overrode",
                "problem",
                "proxy_ca",
                "route",
                "route_in_use",
                "source",
                "sources",
                "url",
                "user"
            ]
        );
        assert_eq!(v["route"][0], "PROXY proxy.corp:3128");
        assert_eq!(v["credential_hosts"], serde_json::json!(["*.corp"]));
        assert!(v["env"].is_null());
        assert!(
            !json.contains("enc:v1") && !json.contains("\"pw\""),
            "{json}"
        );
    }

    #[test]
    fn text() {
        let text = show(&explicit()).text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "mode      explicit");
        assert!(
            lines.contains(&"proxy     http://proxy.corp:3128"),
            "{text}"
        );
        assert!(
            lines.contains(&"user      CONTOSO\\alice (password stored encrypted)"),
            "{text}"
        );
        assert!(lines.contains(&"bypass    .internal"), "{text}");
        assert!(
            lines.contains(&"source    local settings (sensor.toml)"),
            "{text}"
        );
        let policy = uplink_policy::Precedence {
            use_policy: true,
            source: "policy v7 from the service".into(),
            overrode: Some("local settings (sensor.toml): explicit http://a:3128".into()),
        };
        let text = show(&explicit()).with_precedence(&policy).text();
        assert!(text.contains("source    policy v7 from the service\noverrode  local settings (sensor.toml): explicit http://a:3128\n"), "{text}");
        assert!(
            lines.contains(&"set by    uplink sensor proxy set"),
            "{text}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("credential hosts  *.corp (")),
            "{text}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("route     PROXY proxy.corp:3128")),
            "{text}"
        );
        assert!(!text.contains("enc:v1") && !text.contains("pw\n"), "{text}");
        // Nothing set: only what is.
        let bare = show(&ProxySettings::default()).text();
        assert!(
            !bare.contains("proxy     ") && !bare.contains("credential hosts"),
            "{bare}"
        );
        assert!(bare.contains("\nroute     "), "{bare}");
    }
}
