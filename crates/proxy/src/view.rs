//! An [`Explanation`] as people and scripts read it: `uplink proxy explain`'s report (JSON and
//! text), and the pieces `sensor proxy show` and `sensor proxy set` print too — the route on one
//! line, and the proxies whose credentials are withheld or limited.
//!
//! The JSON is a contract: field names and shape stay (objects with their keys sorted, as
//! `serde_json`'s map writes them; `null` for what is not set). Add fields, never rename one.

use serde::Serialize;

use crate::{Explanation, SourceReport};

/// A proxy of the route whose credentials are withheld or limited, and why
/// ([`crate::Candidate::credential_note`]).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CredentialNote {
    pub proxy: String,
    pub note: String,
}

/// Each proxy of the route whose credentials are withheld or limited.
pub fn credential_notes(ex: &Explanation) -> Vec<CredentialNote> {
    ex.route
        .iter()
        .filter_map(|c| {
            c.credential_note().map(|note| CredentialNote {
                proxy: c.to_string(),
                note,
            })
        })
        .collect()
}

/// The route in PAC notation, one string per candidate.
pub fn route(ex: &Explanation) -> Vec<String> {
    ex.route.iter().map(ToString::to_string).collect()
}

/// A route as one line: its candidates joined by `; `, or `none`.
pub fn route_line(route: &[String]) -> String {
    if route.is_empty() {
        "none".into()
    } else {
        route.join("; ")
    }
}

/// `uplink proxy explain URL`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Explained {
    pub url: String,
    /// Whose settings decided: the sensor's configuration, or the shell's environment.
    pub settings: String,
    pub mode: &'static str,
    pub fallback: &'static str,
    pub sources: Vec<SourceReport>,
    pub route: Vec<String>,
    pub credentials: Vec<CredentialNote>,
    pub problem: Option<String>,
}

impl Explained {
    pub fn new(url: &str, settings: String, ex: &Explanation) -> Explained {
        Explained {
            url: url.to_owned(),
            settings,
            mode: ex.mode.as_str(),
            fallback: ex.fallback.as_str(),
            sources: ex.sources.clone(),
            route: route(ex),
            credentials: credential_notes(ex),
            problem: ex.problem.clone(),
        }
    }

    /// `--json`: pretty JSON, keys sorted (through `Value`, whose map sorts them).
    pub fn json(&self) -> String {
        let value = serde_json::to_value(self).expect("an explanation serialises");
        serde_json::to_string_pretty(&value).expect("a JSON value serialises")
    }

    /// Every source considered (`*` the one used), the route, credentials, problem.
    pub fn text(&self) -> String {
        let mut out = format!(
            "URL       {}\nsettings  {}\nmode      {} (fallback {})\n",
            self.url, self.settings, self.mode, self.fallback
        );
        for s in &self.sources {
            out.push_str(&format!(
                "  {} {:<9} {}\n",
                if s.used { "*" } else { "-" },
                s.source,
                s.detail
            ));
        }
        out.push_str(&format!("route     {}\n", route_line(&self.route)));
        for c in &self.credentials {
            out.push_str(&format!("credentials {}: {}\n", c.proxy, c.note));
        }
        if let Some(p) = &self.problem {
            out.push_str(&format!("problem   {p}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Mode, ProxySettings};

    fn explain(settings: &ProxySettings, host: &str) -> Explanation {
        let unseal = |_: &str| -> Result<secrecy::SecretString, String> {
            Ok(secrecy::SecretString::from("pw"))
        };
        crate::explain(settings, host, 443, &unseal)
    }

    fn explicit() -> ProxySettings {
        ProxySettings {
            mode: Some(Mode::Explicit),
            url: Some("http://proxy.corp:3128".into()),
            bypass: Some(".internal".into()),
            ..Default::default()
        }
    }

    /// What the binary built inline with `serde_json::json!`, kept as the reference.
    fn inline_json(url: &str, origin: &str, ex: &Explanation) -> String {
        let route: Vec<String> = ex.route.iter().map(ToString::to_string).collect();
        let v = serde_json::json!({
            "url": url,
            "settings": origin,
            "mode": ex.mode.as_str(),
            "fallback": ex.fallback.as_str(),
            "sources": ex.sources,
            "route": route,
            "credentials": credential_notes(ex)
                .iter()
                .map(|c| serde_json::json!({"proxy": c.proxy, "note": c.note}))
                .collect::<Vec<_>>(),
            "problem": ex.problem,
        });
        serde_json::to_string_pretty(&v).unwrap()
    }

    #[test]
    fn json_is_byte_for_byte_what_the_binary_printed() {
        for (settings, host) in [
            (explicit(), "svc.example"),
            (explicit(), "db.internal"),
            (ProxySettings::default(), "svc.example"),
        ] {
            let ex = explain(&settings, host);
            let url = format!("https://{host}/");
            let shown = Explained::new(&url, "the settings".into(), &ex);
            assert_eq!(shown.json(), inline_json(&url, "the settings", &ex));
        }
        let v: serde_json::Value = serde_json::from_str(
            &Explained::new(
                "https://svc.example/",
                "s".into(),
                &explain(&explicit(), "svc.example"),
            )
            .json(),
        )
        .unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "credentials",
                "fallback",
                "mode",
                "problem",
                "route",
                "settings",
                "sources",
                "url"
            ]
        );
        assert_eq!(v["route"], serde_json::json!(["PROXY proxy.corp:3128"]));
    }

    #[test]
    fn text() {
        let ex = explain(&explicit(), "svc.example");
        let text = Explained::new("https://svc.example/", "the sensor".into(), &ex).text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            &lines[..3],
            [
                "URL       https://svc.example/",
                "settings  the sensor",
                "mode      explicit (fallback never)"
            ]
        );
        assert!(lines.iter().any(|l| l.starts_with("  * ")), "{text}");
        assert!(lines.contains(&"route     PROXY proxy.corp:3128"), "{text}");
    }

    #[test]
    fn route_lines() {
        assert_eq!(route_line(&[]), "none");
        assert_eq!(route_line(&["DIRECT".into()]), "DIRECT");
        assert_eq!(
            route_line(&["PROXY a:1".into(), "DIRECT".into()]),
            "PROXY a:1; DIRECT"
        );
    }
}
