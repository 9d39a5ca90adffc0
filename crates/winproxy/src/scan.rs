//! Finding the proxy settings in a .reg file, and choosing the one that is in effect.
//!
//! A file is read as what importing it would leave set ([`RegFile::resolved`]), so a restore
//! file that deletes a value does not report it. Proxy values are recognised by where they are:
//!
//! - binary values under any `...\Internet Settings\Connections` key: `WinHttpSettings` is
//!   WinHTTP, every other binary value (DefaultConnectionSettings, SavedLegacySettings,
//!   per-connection values) WinINet;
//! - the string form under any `...\Internet Settings` key (see [`crate::inet_settings`]);
//! - the telemetry policy under any `...\Policies\Microsoft\Windows\DataCollection` key.
//!
//! [`effective_proxy`] then picks the one a sensor service would follow, in this order:
//!
//! 1. the telemetry policy (`TelemetryProxyServer`): an administrator's explicit policy;
//! 2. WinINet `DefaultConnectionSettings` of LocalSystem (S-1-5-18 or `.DEFAULT`), then
//!    LocalService (S-1-5-19), then the current user, then any other user;
//! 3. the Internet Settings strings, in the same order of accounts;
//! 4. WinHTTP `WinHttpSettings` (the 64-bit view before `WOW6432Node`).
//!
//! `SavedLegacySettings` (a copy Windows keeps to undo) and per-connection (dial-up, VPN) values
//! are reported but never chosen. A source that says "direct" is a choice like any other: it
//! wins over the sources below it.

use std::fmt;

use uplink_diag::{Code, Diagnose};

use crate::blob::DecodeError;
use crate::inet_settings::{InternetSettings, InternetSettingsError};
use crate::keys::{self, ServiceAccount};
use crate::regfile::{fold, Hive, KeyPath, RegFile};
use crate::settings::{Decoded, Kind, ProxySettings};
use crate::telemetry::{TelemetryPolicy, TelemetryPolicyError};
use crate::winhttp::WinHttpSettings;
use crate::wininet::ConnectionSettings;

/// A proxy setting found in a .reg file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundValue {
    pub key: KeyPath,
    /// The value's name; `None` for the Internet Settings string form, which is several values
    /// (named in `value_names`).
    pub value_name: Option<String>,
    /// The values it was read from.
    pub value_names: Vec<String>,
    pub decoded: Decoded,
}

impl FoundValue {
    pub fn source(&self) -> Source {
        Source {
            kind: self.decoded.kind(),
            key: self.key.clone(),
            value_name: self.value_name.clone(),
        }
    }
}

/// Where a setting came from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Source {
    pub kind: Kind,
    pub key: KeyPath,
    pub value_name: Option<String>,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}]", self.key)?;
        if let Some(v) = &self.value_name {
            write!(f, " \"{v}\"")?;
        }
        write!(f, " ({})", self.kind.as_str())
    }
}

/// Why a value that should hold proxy settings does not.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    InternetSettings(#[from] InternetSettingsError),
    #[error(transparent)]
    Telemetry(#[from] TelemetryPolicyError),
    #[error(
        "it is {found}, but proxy settings are binary (hex:): export the key again with regedit"
    )]
    NotBinary { found: String },
}

/// A proxy value that could not be read, with where it is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("[{key}]{}: {error}", value_name.as_ref().map(|v| format!(" \"{v}\"")).unwrap_or_default())]
pub struct FoundError {
    pub key: KeyPath,
    pub value_name: Option<String>,
    /// Boxed: errors travel in `Result`s and should stay small.
    pub error: Box<ValueError>,
}

impl Diagnose for FoundError {
    fn code(&self) -> Code {
        Code::CONFIG_INVALID
    }
}

/// Every proxy setting in the file, in file order; values that fail to decode are errors in place.
pub fn find_proxy_values(reg: &RegFile) -> Vec<Result<FoundValue, FoundError>> {
    let mut out = Vec::new();
    for key in reg.resolved() {
        let path = &key.path;
        if path.ends_with(r"Internet Settings\Connections") {
            for v in &key.values {
                let named = |n: &str| fold(&v.name) == fold(n);
                let must_be_binary = named(keys::WINHTTP_SETTINGS)
                    || named(keys::DEFAULT_CONNECTION_SETTINGS)
                    || named(keys::SAVED_LEGACY_SETTINGS);
                let err = |error| FoundError {
                    key: path.clone(),
                    value_name: Some(v.name.clone()),
                    error: Box::new(error),
                };
                let Some(bytes) = v.data.as_binary() else {
                    if must_be_binary {
                        out.push(Err(err(ValueError::NotBinary {
                            found: v.data.describe(),
                        })));
                    }
                    continue;
                };
                let decoded = if named(keys::WINHTTP_SETTINGS) {
                    WinHttpSettings::decode(bytes).map(Decoded::WinHttp)
                } else {
                    ConnectionSettings::decode(bytes).map(Decoded::WinInet)
                };
                out.push(
                    decoded
                        .map(|decoded| FoundValue {
                            key: path.clone(),
                            value_name: Some(v.name.clone()),
                            value_names: vec![v.name.clone()],
                            decoded,
                        })
                        .map_err(|e| err(e.into())),
                );
            }
        } else if path.ends_with("Internet Settings") {
            match InternetSettings::from_values(&key.values) {
                Ok(Some(is)) => out.push(Ok(FoundValue {
                    key: path.clone(),
                    value_name: None,
                    value_names: is.present().into_iter().map(str::to_owned).collect(),
                    decoded: Decoded::InternetSettings(is),
                })),
                Ok(None) => {}
                Err(e) => out.push(Err(FoundError {
                    key: path.clone(),
                    value_name: Some(e.name.clone()),
                    error: Box::new(e.into()),
                })),
            }
        } else if path.ends_with(r"Policies\Microsoft\Windows\DataCollection") {
            match TelemetryPolicy::from_values(&key.values) {
                Ok(Some(p)) => out.push(Ok(FoundValue {
                    key: path.clone(),
                    value_name: Some(crate::telemetry::TELEMETRY_PROXY_SERVER.to_owned()),
                    value_names: p.to_values().into_iter().map(|v| v.name).collect(),
                    decoded: Decoded::TelemetryPolicy(p),
                })),
                Ok(None) => {}
                Err(e) => out.push(Err(FoundError {
                    key: path.clone(),
                    value_name: Some(e.name.clone()),
                    error: Box::new(e.into()),
                })),
            }
        }
    }
    out
}

/// The proxy settings in effect, where they came from, and what else was found but not used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Effective {
    pub source: Source,
    pub settings: ProxySettings,
    /// The other candidate sources, best first (they lost to `source`).
    pub ignored: Vec<Source>,
}

/// Order of accounts within a kind: LocalSystem, LocalService, current user, other users, rest.
fn account_rank(key: &KeyPath) -> u32 {
    let first = key.components().next().map(fold).unwrap_or_default();
    match key.hive {
        Hive::Users if first == fold(ServiceAccount::LocalSystem.sid()) || first == ".default" => 0,
        Hive::Users if first == fold(ServiceAccount::LocalService.sid()) => 1,
        Hive::CurrentUser => 2,
        Hive::Users => 3,
        _ => 4,
    }
}

/// Where a found value stands in the order (lower wins); `None`: never chosen.
fn rank(key: &KeyPath, value_name: Option<&str>, kind: Kind) -> Option<u32> {
    let name = value_name.map(fold).unwrap_or_default();
    match kind {
        Kind::TelemetryPolicy => Some(0),
        Kind::Wininet if name == fold(keys::DEFAULT_CONNECTION_SETTINGS) => {
            Some(10 + account_rank(key))
        }
        Kind::Wininet => None,
        Kind::InternetSettings => Some(20 + account_rank(key)),
        Kind::Winhttp if name == fold(keys::WINHTTP_SETTINGS) => Some(
            if key.ends_with(
                r"WOW6432Node\Microsoft\Windows\CurrentVersion\Internet Settings\Connections",
            ) {
                31
            } else {
                30
            },
        ),
        Kind::Winhttp => None,
    }
}

/// The kind a value that failed to decode would have had, from its key and name.
fn kind_by_place(e: &FoundError) -> Kind {
    let name = e.value_name.as_deref().map(fold).unwrap_or_default();
    if e.key.ends_with("Internet Settings") {
        Kind::InternetSettings
    } else if e
        .key
        .ends_with(r"Policies\Microsoft\Windows\DataCollection")
    {
        Kind::TelemetryPolicy
    } else if name == fold(keys::WINHTTP_SETTINGS) {
        Kind::Winhttp
    } else {
        Kind::Wininet
    }
}

/// The proxy settings a sensor service would follow, from a parsed .reg file (see the module
/// docs for the order). `Ok(None)`: the file holds no candidate. An error in the winning
/// candidate is returned; errors in candidates ranked below a good one are ignored.
pub fn effective_proxy(reg: &RegFile) -> Result<Option<Effective>, FoundError> {
    let mut candidates: Vec<(u32, Kind, Result<FoundValue, FoundError>)> = Vec::new();
    for found in find_proxy_values(reg) {
        let (key, value_name, kind) = match &found {
            Ok(f) => (&f.key, f.value_name.as_deref(), f.decoded.kind()),
            // A value that failed to decode ranks where its place says it would have.
            Err(e) => (&e.key, e.value_name.as_deref(), kind_by_place(e)),
        };
        if let Some(r) = rank(key, value_name, kind) {
            candidates.push((r, kind, found));
        }
    }
    // Stable: equal ranks keep file order.
    candidates.sort_by_key(|(r, _, _)| *r);
    let mut rest = candidates.into_iter();
    let Some((_, _, best)) = rest.next() else {
        return Ok(None);
    };
    let best = best?;
    let ignored = rest
        .map(|(_, kind, f)| match f {
            Ok(f) => f.source(),
            Err(e) => Source {
                kind,
                key: e.key,
                value_name: e.value_name,
            },
        })
        .collect();
    Ok(Some(Effective {
        source: best.source(),
        settings: best.decoded.settings(),
        ignored,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONN: &str = r"Software\Microsoft\Windows\CurrentVersion\Internet Settings\Connections";

    /// A WinINet blob with a manual proxy `p`.
    fn blob(p: &str) -> String {
        let cs = ConnectionSettings::new(
            &ProxySettings {
                proxy_server: Some(p.into()),
                ..Default::default()
            },
            1,
        );
        let bytes = cs.encode().unwrap();
        // The .reg form: comma-separated bytes (which `hex::encode` does not write).
        bytes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn reg(body: &str) -> RegFile {
        RegFile::parse_str(&format!("Windows Registry Editor Version 5.00\n\n{body}")).unwrap()
    }

    #[test]
    fn finds_every_kind() {
        let f = reg(&format!(
            "[HKEY_CURRENT_USER\\{CONN}]\n\
             \"DefaultConnectionSettings\"=hex:{}\n\
             \"SavedLegacySettings\"=hex:{}\n\
             \"Some VPN\"=hex:{}\n\
             \"NotAProxy\"=dword:1\n\
             [HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Internet Settings\\Connections]\n\
             \"WinHttpSettings\"=hex:18,00,00,00,00,00,00,00,01,00,00,00,00,00,00,00,00,00,00,00\n\
             [HKEY_CURRENT_USER\\Software\\Microsoft\\Windows\\CurrentVersion\\Internet Settings]\n\
             \"ProxyEnable\"=dword:1\n\"ProxyServer\"=\"s:80\"\n\"MigrateProxy\"=dword:1\n\
             [HKEY_LOCAL_MACHINE\\SOFTWARE\\Policies\\Microsoft\\Windows\\DataCollection]\n\
             \"TelemetryProxyServer\"=\"t:8080\"\n\"DisableEnterpriseAuthProxy\"=dword:1\n",
            blob("a:1"),
            blob("b:2"),
            blob("c:3")
        ));
        let found: Vec<(Kind, Option<String>, Option<String>)> = find_proxy_values(&f)
            .into_iter()
            .map(|r| {
                let v = r.unwrap();
                (
                    v.decoded.kind(),
                    v.value_name.clone(),
                    v.decoded.settings().proxy_server,
                )
            })
            .collect();
        let s = |x: &str| Some(x.to_owned());
        assert_eq!(
            found,
            [
                (Kind::Wininet, s("DefaultConnectionSettings"), s("a:1")),
                (Kind::Wininet, s("SavedLegacySettings"), s("b:2")),
                (Kind::Wininet, s("Some VPN"), s("c:3")),
                (Kind::Winhttp, s("WinHttpSettings"), None),
                (Kind::InternetSettings, None, s("s:80")),
                (
                    Kind::TelemetryPolicy,
                    s("TelemetryProxyServer"),
                    s("t:8080")
                ),
            ]
        );
    }

    #[test]
    fn errors_are_reported_in_place() {
        let f = reg(&format!(
            "[HKEY_CURRENT_USER\\{CONN}]\n\
             \"DefaultConnectionSettings\"=hex:46,00,00,00,01,00,00\n\
             \"SavedLegacySettings\"=\"text\"\n\
             \"Other\"=hex:{}\n",
            blob("a:1")
        ));
        let found = find_proxy_values(&f);
        assert_eq!(found.len(), 3);
        let e0 = found[0].as_ref().unwrap_err().to_string();
        assert!(
            e0.contains(
                "\"DefaultConnectionSettings\": truncated WinINet value: the counter at offset 4"
            ),
            "{e0}"
        );
        let e1 = found[1].as_ref().unwrap_err().to_string();
        assert!(
            e1.contains("\"SavedLegacySettings\": it is a string"),
            "{e1}"
        );
        assert!(found[2].is_ok());
    }

    #[test]
    fn effective_order() {
        let sys = format!(
            "[HKEY_USERS\\S-1-5-18\\{CONN}]\n\"DefaultConnectionSettings\"=hex:{}\n",
            blob("sys:1")
        );
        let dflt = format!(
            "[HKEY_USERS\\.DEFAULT\\{CONN}]\n\"DefaultConnectionSettings\"=hex:{}\n",
            blob("dflt:1")
        );
        let svc = format!(
            "[HKEY_USERS\\S-1-5-19\\{CONN}]\n\"DefaultConnectionSettings\"=hex:{}\n",
            blob("svc:1")
        );
        let user = format!(
            "[HKEY_CURRENT_USER\\{CONN}]\n\"DefaultConnectionSettings\"=hex:{}\n",
            blob("user:1")
        );
        let saved = format!(
            "[HKEY_USERS\\S-1-5-18\\{CONN}]\n\"SavedLegacySettings\"=hex:{}\n",
            blob("saved:1")
        );
        let strings = "[HKEY_USERS\\S-1-5-18\\Software\\Microsoft\\Windows\\CurrentVersion\\Internet Settings]\n\"ProxyEnable\"=dword:1\n\"ProxyServer\"=\"str:1\"\n";
        let winhttp = format!("[HKEY_LOCAL_MACHINE\\{}]\n\"WinHttpSettings\"=hex:28,00,00,00,00,00,00,00,03,00,00,00,06,00,00,00,68,3a,38,30,38,30,00,00,00,00\n", keys::WINHTTP_CONNECTIONS);
        let policy = "[HKEY_LOCAL_MACHINE\\SOFTWARE\\Policies\\Microsoft\\Windows\\DataCollection]\n\"TelemetryProxyServer\"=\"pol:1\"\n";
        let broken_user =
            format!("[HKEY_CURRENT_USER\\{CONN}]\n\"DefaultConnectionSettings\"=hex:46\n");
        // (file body, winning proxy or error text, number ignored)
        type Case<'a> = (String, Result<Option<&'a str>, &'a str>, usize);
        let cases: Vec<Case> = vec![
            (
                format!("{user}{svc}{sys}{strings}{winhttp}{policy}"),
                Ok(Some("pol:1")),
                5,
            ),
            (
                format!("{user}{svc}{sys}{strings}{winhttp}"),
                Ok(Some("sys:1")),
                4,
            ),
            (format!("{user}{svc}{dflt}"), Ok(Some("dflt:1")), 2),
            (format!("{winhttp}{user}{svc}"), Ok(Some("svc:1")), 2),
            (format!("{winhttp}{strings}{user}"), Ok(Some("user:1")), 2),
            (format!("{winhttp}{strings}"), Ok(Some("str:1")), 1),
            (winhttp.clone(), Ok(Some("h:8080")), 0),
            (saved.clone(), Ok(None), 0),
            (String::new(), Ok(None), 0),
            (format!("{sys}{broken_user}"), Ok(Some("sys:1")), 1),
            (format!("{winhttp}{broken_user}"), Err("truncated"), 0),
            (
                format!("{sys}[-HKEY_USERS\\S-1-5-18]\n{winhttp}"),
                Ok(Some("h:8080")),
                0,
            ),
        ];
        for (body, want, ignored) in cases {
            match (effective_proxy(&reg(&body)), want) {
                (Ok(None), Ok(None)) => {}
                (Ok(Some(e)), Ok(Some(p))) => {
                    assert_eq!(e.settings.proxy_server.as_deref(), Some(p), "{body}");
                    assert_eq!(e.ignored.len(), ignored, "{body}: {:?}", e.ignored);
                }
                (Err(e), Err(text)) => assert!(e.to_string().contains(text), "{e}"),
                (got, want) => panic!("{body}: {got:?} vs {want:?}"),
            }
        }
    }
}
