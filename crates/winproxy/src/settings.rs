//! The one model every source decodes into, and the summary `uplink winproxy decode` prints.
//!
//! Four places hold a Windows proxy setting: WinINet's blob, WinHTTP's blob, the Internet
//! Settings strings, and the telemetry group policy. Each decodes into its own exact type (which
//! keeps every byte for round trips) and into [`ProxySettings`], what the setting *means*: the
//! proxy server, the bypass list, the PAC URL and auto-detection, with disabled parts removed.
//! A caller turns `ProxySettings` into a route; this crate does not choose routes.

use crate::blob::{DecodeError, Field, Flags, Layout};
use crate::inet_settings::InternetSettings;
use crate::proxy_list::{self, ProxyEntry, ProxyListError};
use crate::telemetry::TelemetryPolicy;
use crate::winhttp::WinHttpSettings;
use crate::wininet::ConnectionSettings;

/// What a proxy setting makes Windows do.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub struct ProxySettings {
    /// The manual proxy server string (WinINet syntax, see [`proxy_list`]) when a manual proxy
    /// is enabled; `None` otherwise.
    pub proxy_server: Option<String>,
    /// Hosts that bypass the manual proxy; empty when no manual proxy is enabled.
    pub bypass: Vec<String>,
    /// The setup script (PAC) URL when enabled.
    pub pac_url: Option<String>,
    /// Whether WPAD discovery is enabled.
    pub auto_detect: bool,
}

impl ProxySettings {
    /// Builds the meaning from stored parts. A proxy string or PAC URL of only white space (seen
    /// in real values: a PAC URL of one space) counts as absent.
    pub(crate) fn from_parts(
        proxy_enabled: bool,
        proxy_server: &str,
        bypass: &str,
        pac_url: Option<&str>,
        auto_detect: bool,
    ) -> Self {
        let proxy_server = Some(proxy_server.trim())
            .filter(|p| proxy_enabled && !p.is_empty())
            .map(str::to_owned);
        let bypass = if proxy_server.is_some() {
            proxy_list::parse_bypass(bypass)
        } else {
            Vec::new()
        };
        ProxySettings {
            proxy_server,
            bypass,
            pac_url: pac_url
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(str::to_owned),
            auto_detect,
        }
    }

    /// True when nothing but direct connections is configured.
    pub fn is_direct(&self) -> bool {
        self.proxy_server.is_none() && self.pac_url.is_none() && !self.auto_detect
    }

    /// The manual proxy's entries (none when no manual proxy is enabled).
    pub fn proxies(&self) -> Result<Vec<ProxyEntry>, ProxyListError> {
        match &self.proxy_server {
            None => Ok(Vec::new()),
            Some(s) => proxy_list::parse_proxy_server(s),
        }
    }

    /// The manual proxy for a URL scheme (`"https"` for uplink's traffic), as WinINet picks it;
    /// `None` means direct (or PAC/auto-detect, if enabled).
    pub fn proxy_for(&self, scheme: &str) -> Result<Option<ProxyEntry>, ProxyListError> {
        let entries = self.proxies()?;
        Ok(proxy_list::proxy_for(&entries, scheme).cloned())
    }

    /// One line saying what the settings make Windows do, in WinINet's order: detection, then
    /// the script, then the manual proxy (`"direct connections"` when none is set).
    pub fn meaning(&self) -> String {
        if self.is_direct() {
            return "direct connections".into();
        }
        let mut parts = Vec::new();
        if self.auto_detect {
            parts.push("WPAD auto-detection".into());
        }
        if let Some(p) = &self.pac_url {
            parts.push(format!("PAC script {p}"));
        }
        if let Some(p) = &self.proxy_server {
            let mut part = format!("proxy {p}");
            if !self.bypass.is_empty() {
                part.push_str(&format!(" except {}", self.bypass.join(";")));
            }
            parts.push(part);
        }
        parts.join(", then ")
    }

    /// Whether `<local>` (host names without a dot) is in the bypass list.
    pub fn bypasses_local(&self) -> bool {
        self.bypass
            .iter()
            .any(|b| b.eq_ignore_ascii_case("<local>"))
    }
}

/// Which kind of stored setting a value is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// WinINet's binary value (`DefaultConnectionSettings` and friends).
    Wininet,
    /// WinHTTP's binary value (`WinHttpSettings`).
    Winhttp,
    /// The string values under `...\Internet Settings` (`ProxyEnable`, `ProxyServer`, ...).
    InternetSettings,
    /// The `TelemetryProxyServer` group policy.
    TelemetryPolicy,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Wininet => "wininet",
            Kind::Winhttp => "winhttp",
            Kind::InternetSettings => "internet-settings",
            Kind::TelemetryPolicy => "telemetry-policy",
        }
    }
}

/// A decoded setting of any kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded {
    WinInet(ConnectionSettings),
    WinHttp(WinHttpSettings),
    InternetSettings(InternetSettings),
    TelemetryPolicy(TelemetryPolicy),
}

impl Decoded {
    /// Decodes a binary value whose kind is not known, by its first `u32`: 0x18 and 0x28 are
    /// WinHTTP, 0x46 and 0x3C WinINet.
    pub fn from_blob(bytes: &[u8]) -> Result<Decoded, DecodeError> {
        match bytes.get(..4) {
            Some([0x18 | 0x28, 0, 0, 0]) => WinHttpSettings::decode(bytes).map(Decoded::WinHttp),
            Some([0x46 | 0x3c, 0, 0, 0]) => ConnectionSettings::decode(bytes).map(Decoded::WinInet),
            Some(m) => Err(DecodeError::UnknownMagic {
                layout: Layout::WinInet,
                field: Field::Version,
                found: u32::from_le_bytes([m[0], m[1], m[2], m[3]]),
                known: "WinINet 0x46, 0x3c; WinHTTP 0x18, 0x28",
            }),
            None => Err(DecodeError::Truncated {
                layout: Layout::WinInet,
                field: Field::Version,
                offset: 0,
                len: bytes.len(),
            }),
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            Decoded::WinInet(_) => Kind::Wininet,
            Decoded::WinHttp(_) => Kind::Winhttp,
            Decoded::InternetSettings(_) => Kind::InternetSettings,
            Decoded::TelemetryPolicy(_) => Kind::TelemetryPolicy,
        }
    }

    /// What the setting means.
    pub fn settings(&self) -> ProxySettings {
        match self {
            Decoded::WinInet(v) => v.settings(),
            Decoded::WinHttp(v) => v.settings(),
            Decoded::InternetSettings(v) => v.settings(),
            Decoded::TelemetryPolicy(v) => v.settings(),
        }
    }

    /// The fields `uplink winproxy decode` reports.
    pub fn summary(&self) -> Summary {
        let flags_of = |f: Flags| FlagSummary {
            direct: f.direct(),
            proxy: f.proxy(),
            auto_config_url: f.auto_config_url(),
            auto_detect: f.auto_detect(),
        };
        let effective = self.settings();
        match self {
            Decoded::WinInet(v) => Summary {
                kind: Kind::Wininet,
                version: Some(v.version),
                counter: Some(v.counter),
                flags: flags_of(v.flags),
                flags_raw: Some(v.flags.0),
                proxy_server: v.proxy_server.clone(),
                bypass: v.bypass.clone(),
                auto_config_url: Some(v.auto_config_url.clone()),
                trailing_hex: Some(hex::encode(&v.trailing)),
                effective,
            },
            Decoded::WinHttp(v) => Summary {
                kind: Kind::Winhttp,
                version: Some(v.magic),
                counter: Some(v.counter),
                flags: flags_of(v.flags),
                flags_raw: Some(v.flags.0),
                proxy_server: v.proxy_server.clone(),
                bypass: v.bypass.clone(),
                auto_config_url: None,
                trailing_hex: Some(hex::encode(&v.trailing)),
                effective,
            },
            Decoded::InternetSettings(v) => Summary {
                kind: Kind::InternetSettings,
                version: None,
                counter: None,
                flags: flags_of(v.flags()),
                flags_raw: None,
                proxy_server: v.proxy_server.clone().unwrap_or_default(),
                bypass: v.proxy_override.clone().unwrap_or_default(),
                auto_config_url: v.auto_config_url.clone(),
                trailing_hex: None,
                effective,
            },
            Decoded::TelemetryPolicy(v) => Summary {
                kind: Kind::TelemetryPolicy,
                version: None,
                counter: None,
                flags: flags_of(Flags::from_choices(v.proxy_server.is_some(), false, false)),
                flags_raw: None,
                proxy_server: v.proxy_server.clone().unwrap_or_default(),
                bypass: String::new(),
                auto_config_url: None,
                trailing_hex: None,
                effective,
            },
        }
    }
}

/// The flags as booleans.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FlagSummary {
    pub direct: bool,
    pub proxy: bool,
    pub auto_config_url: bool,
    pub auto_detect: bool,
}

/// What `uplink winproxy decode` reports for one value. Strings are as stored; `effective` is
/// what they mean. For WinHTTP `version` is the magic and `counter` the second `u32`; fields a
/// kind does not have are `None` (`null` in JSON).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    pub kind: Kind,
    pub version: Option<u32>,
    pub counter: Option<u32>,
    pub flags: FlagSummary,
    /// The flags word as stored (binary kinds only), unknown bits included.
    pub flags_raw: Option<u32>,
    pub proxy_server: String,
    pub bypass: String,
    pub auto_config_url: Option<String>,
    pub trailing_hex: Option<String>,
    pub effective: ProxySettings,
}

impl Summary {
    /// The text form `uplink winproxy decode` prints: one `label: value` line per field the kind
    /// has, each prefixed with `indent`, ending with what the value means ("in effect").
    pub fn describe(&self, indent: &str) -> String {
        let mut lines: Vec<(&str, String)> = vec![("kind", self.kind.as_str().into())];
        if let Some(v) = self.version {
            let label = if self.kind == Kind::Winhttp {
                "magic"
            } else {
                "version"
            };
            lines.push((label, format!("{v:#x}{}", version_name(self.kind, v))));
        }
        if let Some(c) = self.counter {
            lines.push(("counter", c.to_string()));
        }
        let f = &self.flags;
        let set: Vec<&str> = [
            (f.direct, "direct"),
            (f.proxy, "proxy"),
            (f.auto_config_url, "auto_config_url"),
            (f.auto_detect, "auto_detect"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        let flags = match self.flags_raw {
            Some(raw) => format!("{raw:#04x} ({})", set.join(", ")),
            None => set.join(", "),
        };
        lines.push(("flags", flags));
        lines.push(("proxy server", shown(&self.proxy_server)));
        lines.push(("bypass", shown(&self.bypass)));
        if let Some(u) = &self.auto_config_url {
            lines.push(("auto-config URL", shown(u)));
        }
        if let Some(t) = &self.trailing_hex {
            lines.push((
                "trailing bytes",
                if t.is_empty() {
                    "none".into()
                } else {
                    format!("{} ({} bytes)", t, t.len() / 2)
                },
            ));
        }
        lines.push(("in effect", self.effective.meaning()));
        lines
            .into_iter()
            .map(|(k, v)| format!("{indent}{:<16} {v}\n", format!("{k}:")))
            .collect()
    }
}

/// Which Windows writes a version (WinINet) or magic (WinHTTP), as ` (…)`; empty if unknown.
fn version_name(kind: Kind, v: u32) -> &'static str {
    match (kind, v) {
        (Kind::Wininet, crate::wininet::VERSION) => " (IE7 and later)",
        (Kind::Wininet, crate::wininet::VERSION_IE6) => " (IE6)",
        (Kind::Winhttp, crate::winhttp::MAGIC) => " (current Windows)",
        (Kind::Winhttp, crate::winhttp::MAGIC_LEGACY) => " (older systems)",
        _ => "",
    }
}

/// A stored string for people: quoted, or `(empty)`.
fn shown(s: &str) -> String {
    if s.is_empty() {
        "(empty)".into()
    } else {
        format!("{s:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_parts_drops_disabled_and_blank_parts() {
        // (proxy enabled, proxy, bypass, pac, auto) -> (proxy, bypass len, pac)
        let cases = [
            (
                (true, "p:80", "a;b", Some("http://x/p.pac"), true),
                (Some("p:80"), 2, Some("http://x/p.pac")),
            ),
            ((false, "p:80", "a;b", None, false), (None, 0, None)),
            ((true, "  ", "a;b", Some(" "), false), (None, 0, None)),
            ((true, " p:80 ", "", None, false), (Some("p:80"), 0, None)),
        ];
        for ((en, p, b, pac, auto), (wp, wb, wpac)) in cases {
            let s = ProxySettings::from_parts(en, p, b, pac, auto);
            assert_eq!(
                (
                    s.proxy_server.as_deref(),
                    s.bypass.len(),
                    s.pac_url.as_deref(),
                    s.auto_detect
                ),
                (wp, wb, wpac, auto)
            );
        }
    }

    #[test]
    fn from_blob_picks_the_layout_by_magic() {
        let cases = [
            (
                "1800000000000000010000000000000000000000",
                Ok(Kind::Winhttp),
            ),
            (
                "2800000000000000010000000000000000000000",
                Ok(Kind::Winhttp),
            ),
            (
                "460000000100000001000000000000000000000000000000",
                Ok(Kind::Wininet),
            ),
            (
                "3c0000000100000001000000000000000000000000000000",
                Ok(Kind::Wininet),
            ),
            (
                "4700000001000000",
                Err("unknown WinINet version 0x47 at offset 0"),
            ),
            ("460000", Err("only 3 bytes")),
            ("", Err("only 0 bytes")),
        ];
        for (h, want) in cases {
            let got = Decoded::from_blob(&hex::decode(h).unwrap());
            match (got, want) {
                (Ok(d), Ok(k)) => assert_eq!(d.kind(), k),
                (Err(e), Err(text)) => assert!(e.to_string().contains(text), "{h}: {e}"),
                (got, want) => panic!("{h}: {got:?} vs {want:?}"),
            }
        }
    }

    #[test]
    fn meaning_follows_wininets_order() {
        let s =
            |proxy: Option<&str>, bypass: &[&str], pac: Option<&str>, auto: bool| ProxySettings {
                proxy_server: proxy.map(str::to_owned),
                bypass: bypass.iter().map(|b| b.to_string()).collect(),
                pac_url: pac.map(str::to_owned),
                auto_detect: auto,
            };
        let cases = [
            (s(None, &[], None, false), "direct connections"),
            (s(Some("p:80"), &[], None, false), "proxy p:80"),
            (
                s(Some("p:80"), &["<local>", "*.corp"], None, false),
                "proxy p:80 except <local>;*.corp",
            ),
            (
                s(None, &[], Some("http://w/p.pac"), false),
                "PAC script http://w/p.pac",
            ),
            (
                s(Some("p:80"), &["a"], Some("http://w/p.pac"), true),
                "WPAD auto-detection, then PAC script http://w/p.pac, then proxy p:80 except a",
            ),
            (s(None, &[], None, true), "WPAD auto-detection"),
        ];
        for (settings, want) in cases {
            assert_eq!(settings.meaning(), want, "{settings:?}");
        }
    }

    #[test]
    fn describe_names_every_field_of_the_kind() {
        let blob = |h: &str| Decoded::from_blob(&hex::decode(h).unwrap()).unwrap();
        let cases: Vec<(Decoded, &str, &str)> = vec![
            (
                blob("1800000000000000010000000000000000000000"),
                "",
                "kind:            winhttp\n\
                 magic:           0x18 (older systems)\n\
                 counter:         0\n\
                 flags:           0x01 (direct)\n\
                 proxy server:    (empty)\n\
                 bypass:          (empty)\n\
                 trailing bytes:  none\n\
                 in effect:       direct connections\n",
            ),
            (
                Decoded::WinInet(ConnectionSettings::new(
                    &ProxySettings {
                        proxy_server: Some("p:8080".into()),
                        bypass: vec!["<local>".into()],
                        pac_url: None,
                        auto_detect: true,
                    },
                    7,
                )),
                "  ",
                "  kind:            wininet\n\
                 \x20 version:         0x46 (IE7 and later)\n\
                 \x20 counter:         7\n\
                 \x20 flags:           0x0b (direct, proxy, auto_detect)\n\
                 \x20 proxy server:    \"p:8080\"\n\
                 \x20 bypass:          \"<local>\"\n\
                 \x20 auto-config URL: (empty)\n\
                 \x20 trailing bytes:  0000000000000000000000000000000000000000000000000000000000000000 (32 bytes)\n\
                 \x20 in effect:       WPAD auto-detection, then proxy p:8080 except <local>\n",
            ),
            (
                Decoded::TelemetryPolicy(TelemetryPolicy {
                    proxy_server: Some("10.0.0.6:8080".into()),
                    disable_enterprise_auth_proxy: Some(1),
                }),
                "",
                "kind:            telemetry-policy\n\
                 flags:           direct, proxy\n\
                 proxy server:    \"10.0.0.6:8080\"\n\
                 bypass:          (empty)\n\
                 in effect:       proxy 10.0.0.6:8080\n",
            ),
        ];
        for (decoded, indent, want) in cases {
            assert_eq!(decoded.summary().describe(indent), want, "{decoded:?}");
        }
    }

    #[test]
    fn proxy_for_and_local() {
        let s = ProxySettings {
            proxy_server: Some("http=a:80;https=b:443".into()),
            bypass: vec!["<LOCAL>".into()],
            pac_url: None,
            auto_detect: false,
        };
        assert_eq!(s.proxy_for("https").unwrap().unwrap().host, "b");
        assert!(s.bypasses_local());
        assert!(!s.is_direct());
        assert!(ProxySettings::default().is_direct());
        assert_eq!(ProxySettings::default().proxy_for("https").unwrap(), None);
    }
}
