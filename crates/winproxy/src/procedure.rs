//! The seeds' manual procedures, each as a function that builds the .reg file to import.
//!
//! - [`copy_to_services`]: the user's `DefaultConnectionSettings`, byte for byte, under
//!   LocalSystem's and LocalService's Connections keys (services running as those accounts
//!   read WinINet settings from their own profiles, not the user's).
//! - [`restore_file`]: from the administrator's export of the service accounts' current values,
//!   the file that puts them back.
//! - [`winhttp_set`], [`winhttp_reset`]: what `netsh winhttp set proxy` / `reset proxy` store.
//! - [`telemetry_policy`]: `TelemetryProxyServer` and `DisableEnterpriseAuthProxy` = 1.
//! - [`encode`]: a new value of any of the three stored forms, as Windows writes it, and the
//!   .reg file that sets it where Windows keeps it (`uplink winproxy encode`).
//!
//! These are pure: they take parsed files and arguments and return a [`RegFile`]; reading and
//! writing files is the caller's job. Nothing here touches a live registry.

use uplink_diag::{Code, Diagnose};

use crate::inet_settings::InternetSettings;
use crate::keys::{self, ServiceAccount};
use crate::proxy_list::{self, BypassError, ProxyListError};
use crate::regfile::{fold, Hive, KeyPath, RegData, RegFile, RegFormat, RegValue};
use crate::scan::{FoundError, ValueError};
use crate::settings::ProxySettings;
use crate::telemetry::TelemetryPolicy;
use crate::winhttp::WinHttpSettings;
use crate::wininet::ConnectionSettings;

/// Why a procedure could not build its file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProcedureError {
    #[error(
        "the file has no DefaultConnectionSettings under an ...\\Internet Settings\\Connections \
         key, and no Internet Settings proxy values; export the user's settings on a machine \
         where the proxy works, with: reg export \"HKCU\\{}\" user.reg",
        keys::CONNECTIONS
    )]
    NoUserSettings,
    #[error(
        "the file has proxy settings under several keys ({}) and uplink cannot tell which are \
         the user's: export only the user's key (reg export \"HKCU\\{}\" user.reg)",
        keys.join("; "),
        crate::keys::CONNECTIONS
    )]
    Ambiguous { keys: Vec<String> },
    #[error(transparent)]
    Value(#[from] FoundError),
    #[error(
        "the backup has no values for {account} ({key}): export them first with: reg export \
         \"{key}\" backup-{sid}.reg, and pass each export with --backup; if that key does not \
         exist on the machine, pass --backup-missing-ok (the restore file then deletes the value)"
    )]
    BackupMissing {
        account: &'static str,
        sid: &'static str,
        key: String,
    },
    #[error(transparent)]
    Proxy(#[from] ProxyListError),
    #[error(transparent)]
    Bypass(#[from] BypassError),
    #[error(
        "{proxy:?} is not a single HOST:PORT: the telemetry policy takes one server and port \
         without a scheme or protocol (e.g. proxy.contoso.com:8080)"
    )]
    NotHostPort { proxy: String },
    #[error("{0}")]
    Encode(#[from] crate::blob::EncodeError),
}

impl Diagnose for ProcedureError {
    fn code(&self) -> Code {
        Code::CONFIG_INVALID
    }
}

/// The user's WinINet settings as found in their export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserSettings {
    /// The key they came from.
    pub source: KeyPath,
    /// The value's bytes, exactly as exported (or converted from the string form).
    pub bytes: Vec<u8>,
    pub decoded: ConnectionSettings,
    /// True when the export had only the Internet Settings strings, converted to a new blob.
    pub converted_from_strings: bool,
}

/// Finds the user's `DefaultConnectionSettings` in their export: the one under
/// HKEY_CURRENT_USER, else the only one in the file; failing both, the Internet Settings
/// strings converted to a new value (as Windows writes one, counter 1).
pub fn user_connection_settings(reg: &RegFile) -> Result<UserSettings, ProcedureError> {
    let resolved = reg.resolved();
    let mut blobs = Vec::new();
    for key in &resolved {
        if !key.path.ends_with(r"Internet Settings\Connections") {
            continue;
        }
        if let Some(v) = key
            .values
            .iter()
            .find(|v| fold(&v.name) == fold(keys::DEFAULT_CONNECTION_SETTINGS))
        {
            blobs.push((&key.path, v));
        }
    }
    let in_hkcu = blobs
        .iter()
        .filter(|(p, _)| p.hive == Hive::CurrentUser)
        .count();
    let chosen = if in_hkcu == 1 {
        blobs.iter().find(|(p, _)| p.hive == Hive::CurrentUser)
    } else if blobs.len() <= 1 {
        blobs.first()
    } else {
        return Err(ProcedureError::Ambiguous {
            keys: blobs.iter().map(|(p, _)| p.to_string()).collect(),
        });
    };
    if let Some((path, value)) = chosen {
        let err = |error| FoundError {
            key: (*path).clone(),
            value_name: Some(value.name.clone()),
            error: Box::new(error),
        };
        let bytes = value.data.as_binary().ok_or_else(|| {
            err(ValueError::NotBinary {
                found: value.data.describe(),
            })
        })?;
        let decoded = ConnectionSettings::decode(bytes).map_err(|e| err(e.into()))?;
        return Ok(UserSettings {
            source: (*path).clone(),
            bytes: bytes.to_vec(),
            decoded,
            converted_from_strings: false,
        });
    }
    let mut strings = Vec::new();
    for key in &resolved {
        if !key.path.ends_with("Internet Settings") {
            continue;
        }
        let found = InternetSettings::from_values(&key.values).map_err(|e| FoundError {
            key: key.path.clone(),
            value_name: Some(e.name.clone()),
            error: Box::new(e.into()),
        })?;
        if let Some(is) = found {
            strings.push((&key.path, is));
        }
    }
    let chosen = strings
        .iter()
        .find(|(p, _)| p.hive == Hive::CurrentUser)
        .or_else(|| (strings.len() == 1).then(|| &strings[0]));
    match chosen {
        Some((path, is)) => {
            let decoded = is.to_connection_settings(1);
            Ok(UserSettings {
                source: (*path).clone(),
                bytes: decoded.encode()?,
                decoded,
                converted_from_strings: true,
            })
        }
        None if strings.is_empty() => Err(ProcedureError::NoUserSettings),
        None => Err(ProcedureError::Ambiguous {
            keys: strings.iter().map(|(p, _)| p.to_string()).collect(),
        }),
    }
}

/// The user's value under LocalSystem's and LocalService's Connections keys.
pub fn copy_to_services(user: &UserSettings, format: RegFormat) -> RegFile {
    let mut out = RegFile::new(format);
    for account in ServiceAccount::ALL {
        out.push_key(
            account.connections(),
            vec![RegValue::new(
                keys::DEFAULT_CONNECTION_SETTINGS,
                RegData::binary(user.bytes.clone()),
            )],
        );
    }
    out
}

/// What the restore file does for one account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Restore {
    /// Puts back the value found in the backup.
    Value(Vec<u8>),
    /// The backup covers the key but has no value: the restore deletes the copied one.
    Delete,
    /// The backup does not cover the key, and that was allowed: the restore deletes.
    DeleteAssumed,
}

/// The file that undoes [`copy_to_services`], from the administrator's exports of the
/// service accounts' current settings (`reg export` of the Connections key or any key above
/// it, such as the whole `HKU\S-1-5-18`). `HKEY_USERS\.DEFAULT` counts as LocalSystem.
/// An account no export covers is an error unless `missing_ok`.
pub fn restore_file(
    backups: &[RegFile],
    missing_ok: bool,
    format: RegFormat,
) -> Result<(RegFile, Vec<(ServiceAccount, Restore)>), ProcedureError> {
    let mut out = RegFile::new(format);
    let mut plan = Vec::new();
    for account in ServiceAccount::ALL {
        let aliases = account.aliases();
        let covered = backups.iter().any(|b| {
            b.keys
                .iter()
                .any(|k| aliases.iter().any(|a| a.is_within(&k.path)))
        });
        let found = backups
            .iter()
            .flat_map(RegFile::resolved)
            .filter(|k| aliases.iter().any(|a| a.same_key(&k.path)))
            .filter_map(|k| {
                k.values
                    .into_iter()
                    .find(|v| fold(&v.name) == fold(keys::DEFAULT_CONNECTION_SETTINGS))
            })
            .next_back();
        let restore = match (found, covered) {
            (Some(v), _) => match v.data.as_binary() {
                Some(bytes) => Restore::Value(bytes.to_vec()),
                None => {
                    return Err(FoundError {
                        key: account.connections(),
                        value_name: Some(v.name),
                        error: Box::new(ValueError::NotBinary {
                            found: v.data.describe(),
                        }),
                    }
                    .into())
                }
            },
            (None, true) => Restore::Delete,
            (None, false) if missing_ok => Restore::DeleteAssumed,
            (None, false) => {
                return Err(ProcedureError::BackupMissing {
                    account: account.name(),
                    sid: account.sid(),
                    key: format!("HKU\\{}\\{}", account.sid(), keys::CONNECTIONS),
                })
            }
        };
        let data = match &restore {
            Restore::Value(bytes) => RegData::binary(bytes.clone()),
            Restore::Delete | Restore::DeleteAssumed => RegData::Delete,
        };
        out.push_key(
            account.connections(),
            vec![RegValue::new(keys::DEFAULT_CONNECTION_SETTINGS, data)],
        );
        plan.push((account, restore));
    }
    Ok((out, plan))
}

/// What `netsh winhttp set proxy PROXY BYPASS` stores, in the 64-bit view (and the 32-bit
/// `WOW6432Node` view when `wow64`).
pub fn winhttp_set(
    proxy: &str,
    bypass: Option<&str>,
    magic: u32,
    wow64: bool,
    format: RegFormat,
) -> Result<RegFile, ProcedureError> {
    proxy_list::parse_proxy_arg(proxy)?;
    let bypass = match bypass {
        Some(b) => proxy_list::parse_bypass_arg(b)?,
        None => Vec::new(),
    };
    winhttp_file(
        &WinHttpSettings::set(magic, proxy.trim(), &bypass),
        wow64,
        format,
    )
}

/// What `netsh winhttp reset proxy` stores: direct access.
pub fn winhttp_reset(
    magic: u32,
    wow64: bool,
    format: RegFormat,
) -> Result<RegFile, ProcedureError> {
    winhttp_file(&WinHttpSettings::direct(magic), wow64, format)
}

/// Which stored form [`encode`] builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// WinINet `DefaultConnectionSettings` (per user), with this change counter.
    WinInet { counter: u32 },
    /// WinHTTP `WinHttpSettings` (per machine), with this magic. It holds no PAC URL and no
    /// auto-detection: those parts of the settings are not stored.
    WinHttp { magic: u32 },
    /// The Internet Settings strings (per user), as the WinINet value with this counter would
    /// read.
    InternetSettings { counter: u32 },
}

/// What [`encode`] builds: the value's bytes (`None` for the Internet Settings strings, which
/// are several values) and the .reg file that sets it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded {
    pub bytes: Option<Vec<u8>>,
    pub file: RegFile,
}

/// A new value meaning `settings`, as Windows writes it, under the key Windows reads it from:
/// `HKCU\...\Connections` for WinINet, `HKLM\...\Connections` for WinHTTP (the 64-bit view),
/// `HKCU\...\Internet Settings` for the strings.
pub fn encode(
    settings: &ProxySettings,
    form: Form,
    format: RegFormat,
) -> Result<Encoded, crate::blob::EncodeError> {
    let mut file = RegFile::new(format);
    let bytes = match form {
        Form::WinInet { counter } => {
            let v = ConnectionSettings::new(settings, counter).encode()?;
            file.push_key(
                keys::user_connections(),
                vec![RegValue::new(
                    keys::DEFAULT_CONNECTION_SETTINGS,
                    RegData::binary(v.clone()),
                )],
            );
            Some(v)
        }
        Form::WinHttp { magic } => {
            let v = match &settings.proxy_server {
                Some(p) => WinHttpSettings::set(magic, p, &settings.bypass),
                None => WinHttpSettings::direct(magic),
            }
            .encode()?;
            file.push_key(
                keys::winhttp_connections(false),
                vec![RegValue::new(
                    keys::WINHTTP_SETTINGS,
                    RegData::binary(v.clone()),
                )],
            );
            Some(v)
        }
        Form::InternetSettings { counter } => {
            let cs = ConnectionSettings::new(settings, counter);
            let is = InternetSettings::from_connection_settings(&cs);
            file.push_key(keys::user_internet_settings(), is.to_values());
            None
        }
    };
    Ok(Encoded { bytes, file })
}

fn winhttp_file(
    value: &WinHttpSettings,
    wow64: bool,
    format: RegFormat,
) -> Result<RegFile, ProcedureError> {
    let bytes = value.encode()?;
    let mut out = RegFile::new(format);
    let views: &[bool] = if wow64 { &[false, true] } else { &[false] };
    for &view in views {
        out.push_key(
            keys::winhttp_connections(view),
            vec![RegValue::new(
                keys::WINHTTP_SETTINGS,
                RegData::binary(bytes.clone()),
            )],
        );
    }
    Ok(out)
}

/// The telemetry proxy policy for one `HOST:PORT`.
pub fn telemetry_policy(proxy: &str, format: RegFormat) -> Result<RegFile, ProcedureError> {
    let entries = proxy_list::parse_proxy_arg(proxy)?;
    let [entry] = entries.as_slice() else {
        return Err(ProcedureError::NotHostPort {
            proxy: proxy.to_owned(),
        });
    };
    if entry.protocol.is_some() || entry.scheme.is_some() {
        return Err(ProcedureError::NotHostPort {
            proxy: proxy.to_owned(),
        });
    }
    let mut out = RegFile::new(format);
    out.push_key(
        keys::data_collection_policy(),
        TelemetryPolicy::new(&entry.to_string()).to_values(),
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(body: &str) -> RegFile {
        RegFile::parse_str(&format!("REGEDIT4\n\n{body}")).unwrap()
    }

    const CONN: &str = keys::CONNECTIONS;

    #[test]
    fn encode_puts_each_form_where_windows_reads_it() {
        let settings = ProxySettings {
            proxy_server: Some("proxy.contoso.com:8080".into()),
            bypass: vec!["*.contoso.com".into(), "<local>".into()],
            pac_url: Some("http://wpad.contoso.com/wpad.dat".into()),
            auto_detect: true,
        };
        let winhttp_meaning = ProxySettings {
            pac_url: None,
            auto_detect: false,
            ..settings.clone()
        };
        // (form, key, value name, what the file reads back as, bytes expected)
        let cases = [
            (
                Form::WinInet { counter: 5 },
                keys::user_connections(),
                Some(keys::DEFAULT_CONNECTION_SETTINGS),
                settings.clone(),
                true,
            ),
            (
                Form::WinHttp { magic: 0x18 },
                keys::winhttp_connections(false),
                Some(keys::WINHTTP_SETTINGS),
                winhttp_meaning,
                true,
            ),
            (
                Form::InternetSettings { counter: 5 },
                keys::user_internet_settings(),
                None,
                settings.clone(),
                false,
            ),
        ];
        for (form, key, name, meaning, has_bytes) in cases {
            for format in [RegFormat::V5, RegFormat::Regedit4] {
                let e = encode(&settings, form, format).unwrap();
                assert_eq!(e.bytes.is_some(), has_bytes, "{form:?}");
                let back = RegFile::parse(&e.file.to_bytes().unwrap()).unwrap();
                let found = crate::scan::find_proxy_values(&back);
                assert_eq!(found.len(), 1, "{form:?}: {found:?}");
                let f = found[0].as_ref().unwrap();
                assert_eq!((&f.key, f.value_name.as_deref()), (&key, name), "{form:?}");
                assert_eq!(f.decoded.settings(), meaning, "{form:?}");
                if let Some(b) = &e.bytes {
                    assert_eq!(crate::Decoded::from_blob(b).unwrap(), f.decoded, "{form:?}");
                }
            }
        }
        let direct = encode(
            &ProxySettings::default(),
            Form::WinHttp { magic: 0x28 },
            RegFormat::V5,
        );
        assert_eq!(
            hex::encode(direct.unwrap().bytes.unwrap()),
            "2800000000000000010000000000000000000000"
        );
        let long = ProxySettings {
            proxy_server: Some("é:80".into()),
            ..Default::default()
        };
        assert!(encode(&long, Form::WinInet { counter: 1 }, RegFormat::V5).is_err());
    }

    #[test]
    fn user_settings_prefers_hkcu_then_the_only_one() {
        let v = |n: u8| {
            format!("\"DefaultConnectionSettings\"=hex:46,00,00,00,{n:02x},00,00,00,01,00,00,00,00,00,00,00,00,00,00,00,00,00,00,00\n")
        };
        // (file, counter of the chosen value, or error text)
        let cases: Vec<(String, Result<u32, &str>)> = vec![
            (format!("[HKEY_USERS\\S-1-5-21-1\\{CONN}]\n{}[HKEY_CURRENT_USER\\{CONN}]\n{}", v(1), v(2)), Ok(2)),
            (format!("[HKEY_USERS\\S-1-5-21-1\\{CONN}]\n{}", v(3)), Ok(3)),
            (format!("[HKEY_USERS\\S-1-5-21-1\\{CONN}]\n{}[HKEY_USERS\\S-1-5-21-2\\{CONN}]\n{}", v(1), v(2)), Err("several keys")),
            (format!("[HKEY_CURRENT_USER\\{CONN}]\n\"SavedLegacySettings\"=hex:00\n"), Err("no DefaultConnectionSettings")),
            (format!("[HKEY_CURRENT_USER\\{CONN}]\n\"DefaultConnectionSettings\"=hex:46,00\n"), Err("truncated WinINet value")),
            (format!("[HKEY_CURRENT_USER\\{CONN}]\n\"DefaultConnectionSettings\"=dword:1\n"), Err("it is a dword")),
            (format!("[HKEY_CURRENT_USER\\{CONN}]\n{}[HKEY_CURRENT_USER\\{CONN}]\n\"DefaultConnectionSettings\"=-\n", v(1)), Err("no DefaultConnectionSettings")),
        ];
        for (body, want) in cases {
            match (user_connection_settings(&reg(&body)), want) {
                (Ok(u), Ok(c)) => {
                    assert_eq!(u.decoded.counter, c, "{body}");
                    assert!(!u.converted_from_strings);
                }
                (Err(e), Err(text)) => assert!(e.to_string().contains(text), "{body}: {e}"),
                (got, want) => panic!("{body}: {got:?} vs {want:?}"),
            }
        }
    }

    #[test]
    fn user_settings_from_strings() {
        let u = user_connection_settings(&reg(
            "[HKEY_CURRENT_USER\\Software\\Microsoft\\Windows\\CurrentVersion\\Internet Settings]\n\
             \"ProxyEnable\"=dword:00000001\n\"ProxyServer\"=\"p:8082\"\n\"ProxyOverride\"=\"a, <local>\"\n",
        ))
        .unwrap();
        assert!(u.converted_from_strings);
        let mut want = vec![0x46, 0, 0, 0, 1, 0, 0, 0, 3, 0, 0, 0, 6, 0, 0, 0];
        want.extend_from_slice(b"p:8082\x09\x00\x00\x00a;<local>\x00\x00\x00\x00");
        want.extend_from_slice(&[0; 32]);
        assert_eq!(u.bytes, want);
    }

    #[test]
    fn copies_byte_for_byte_to_both_accounts() {
        let u = UserSettings {
            source: keys::user_connections(),
            bytes: vec![0x46, 1, 2, 3],
            decoded: ConnectionSettings::new(&Default::default(), 0),
            converted_from_strings: false,
        };
        let f = copy_to_services(&u, RegFormat::V5);
        let got: Vec<(String, Vec<u8>)> = f
            .keys
            .iter()
            .map(|k| {
                (
                    k.path.to_string(),
                    k.values[0].data.as_binary().unwrap().to_vec(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (format!("HKEY_USERS\\S-1-5-18\\{CONN}"), vec![0x46, 1, 2, 3]),
                (format!("HKEY_USERS\\S-1-5-19\\{CONN}"), vec![0x46, 1, 2, 3]),
            ]
        );
    }

    #[test]
    fn restore_plans() {
        let sys_value = format!(
            "[HKEY_USERS\\S-1-5-18\\{CONN}]\n\"DefaultConnectionSettings\"=hex:46,00,00,00,07\n"
        );
        let dflt_value = format!(
            "[HKEY_USERS\\.DEFAULT\\{CONN}]\n\"DefaultConnectionSettings\"=hex:46,00,00,00,08\n"
        );
        let svc_key_only =
            format!("[HKEY_USERS\\S-1-5-19\\{CONN}]\n\"SavedLegacySettings\"=hex:00\n");
        let svc_hive = "[HKEY_USERS\\S-1-5-19]\n\"x\"=dword:1\n".to_owned();
        type Want = Result<[Restore; 2], &'static str>;
        let cases: Vec<(Vec<String>, bool, Want)> = vec![
            (
                vec![sys_value.clone(), svc_key_only.clone()],
                false,
                Ok([Restore::Value(vec![0x46, 0, 0, 0, 7]), Restore::Delete]),
            ),
            (
                vec![format!("{dflt_value}{svc_hive}")],
                false,
                Ok([Restore::Value(vec![0x46, 0, 0, 0, 8]), Restore::Delete]),
            ),
            (
                vec![sys_value.clone()],
                false,
                Err("no values for LocalService (HKU\\S-1-5-19\\"),
            ),
            (
                vec![sys_value.clone()],
                true,
                Ok([
                    Restore::Value(vec![0x46, 0, 0, 0, 7]),
                    Restore::DeleteAssumed,
                ]),
            ),
            (vec![], false, Err("no values for LocalSystem")),
        ];
        for (files, missing_ok, want) in cases {
            let backups: Vec<RegFile> = files.iter().map(|b| reg(b)).collect();
            match (restore_file(&backups, missing_ok, RegFormat::V5), want) {
                (Ok((file, plan)), Ok(want)) => {
                    let got: Vec<Restore> = plan.into_iter().map(|(_, r)| r).collect();
                    assert_eq!(got, want);
                    assert_eq!(file.keys.len(), 2);
                    assert_eq!(
                        file.keys[1].path,
                        ServiceAccount::LocalService.connections()
                    );
                }
                (Err(e), Err(text)) => assert!(e.to_string().contains(text), "{e}"),
                (got, want) => panic!("{files:?}: {got:?} vs {want:?}"),
            }
        }
    }

    #[test]
    fn winhttp_files() {
        let f = winhttp_set(
            "proxy:8080",
            Some("localhost, *.contoso.com"),
            0x28,
            true,
            RegFormat::V5,
        )
        .unwrap();
        assert_eq!(f.keys.len(), 2);
        assert!(f.keys[1].path.subkey.contains("WOW6432Node"));
        let v = WinHttpSettings::decode(f.keys[0].values[0].data.as_binary().unwrap()).unwrap();
        assert_eq!(
            (
                v.magic,
                v.flags.0,
                v.proxy_server.as_str(),
                v.bypass.as_str()
            ),
            (0x28, 3, "proxy:8080", "localhost;*.contoso.com")
        );
        let e = winhttp_set("proxy", None, 0x28, false, RegFormat::V5).unwrap_err();
        assert!(e.to_string().contains("has no port"), "{e}");
        let e = winhttp_set("p:1", Some("a b\"c"), 0x28, false, RegFormat::V5).unwrap_err();
        assert!(e.to_string().contains("not a host pattern"), "{e}");
        let r = winhttp_reset(0x18, false, RegFormat::V5).unwrap();
        assert_eq!(
            r.keys[0].values[0].data.as_binary().unwrap(),
            hex::decode("1800000000000000010000000000000000000000").unwrap()
        );
    }

    #[test]
    fn telemetry_files() {
        let f = telemetry_policy("10.0.0.6:8080", RegFormat::V5).unwrap();
        assert_eq!(f.keys[0].path, keys::data_collection_policy());
        assert_eq!(
            f.keys[0].values[0].data,
            RegData::String("10.0.0.6:8080".into())
        );
        assert_eq!(f.keys[0].values[1].data, RegData::Dword(1));
        for bad in ["http://p:80", "http=p:80", "a:1;b:2", "p"] {
            assert!(telemetry_policy(bad, RegFormat::V5).is_err(), "{bad}");
        }
    }
}
