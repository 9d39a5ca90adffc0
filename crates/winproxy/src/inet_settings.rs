//! The string form of the proxy settings: values under
//! `HKCU\Software\Microsoft\Windows\CurrentVersion\Internet Settings`.
//!
//! | value | type | meaning |
//! |---|---|---|
//! | `ProxyEnable` | dword | 1: use `ProxyServer` |
//! | `ProxyServer` | string | as in the blob (`host:port` or per protocol) |
//! | `ProxyOverride` | string | bypass list, `;`-separated (`, ` seen in scripts), `<local>` |
//! | `AutoConfigURL` | string | PAC URL; present means enabled |
//! | `AutoDetect` | dword | 1: WPAD discovery |
//!
//! Windows keeps these beside the `DefaultConnectionSettings` blob, and many exports, group
//! policy preferences and scripts carry only them. They decode into the same
//! [`ProxySettings`] and convert to and from [`ConnectionSettings`]; what only the blob holds
//! (counter, trailing bytes, strings whose flag is clear) is not in the string form.

use uplink_diag::{Code, Diagnose};

use crate::blob::Flags;
use crate::proxy_list;
use crate::regfile::{fold, RegData, RegValue};
use crate::settings::ProxySettings;
use crate::wininet::ConnectionSettings;

pub const PROXY_ENABLE: &str = "ProxyEnable";
pub const PROXY_SERVER: &str = "ProxyServer";
pub const PROXY_OVERRIDE: &str = "ProxyOverride";
pub const AUTO_CONFIG_URL: &str = "AutoConfigURL";
pub const AUTO_DETECT: &str = "AutoDetect";

/// The five values, as found (`None`: absent).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct InternetSettings {
    pub proxy_enable: Option<u32>,
    pub proxy_server: Option<String>,
    pub proxy_override: Option<String>,
    pub auto_config_url: Option<String>,
    pub auto_detect: Option<u32>,
}

/// A value of the string form has the wrong type.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the Internet Settings value {name:?} is {found}, but Windows stores it as {expected}: \
     write it as {example}"
)]
pub struct InternetSettingsError {
    pub name: String,
    pub found: String,
    pub expected: &'static str,
    pub example: &'static str,
}

impl Diagnose for InternetSettingsError {
    fn code(&self) -> Code {
        Code::CONFIG_INVALID
    }
}

impl InternetSettings {
    /// Collects the five values from a key's values (other values are ignored). `None` when
    /// none of them is there.
    pub fn from_values<'a>(
        values: impl IntoIterator<Item = &'a RegValue>,
    ) -> Result<Option<Self>, InternetSettingsError> {
        let mut out = InternetSettings::default();
        let mut any = false;
        for v in values {
            let name = fold(&v.name);
            let dword = |example| {
                v.data.as_dword().ok_or_else(|| InternetSettingsError {
                    name: v.name.clone(),
                    found: v.data.describe(),
                    expected: "a dword",
                    example,
                })
            };
            let string = |example| {
                v.data
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| InternetSettingsError {
                        name: v.name.clone(),
                        found: v.data.describe(),
                        expected: "a string",
                        example,
                    })
            };
            if v.data == RegData::Delete {
                continue;
            }
            if name == fold(PROXY_ENABLE) {
                out.proxy_enable = Some(dword("\"ProxyEnable\"=dword:00000001")?);
            } else if name == fold(PROXY_SERVER) {
                out.proxy_server = Some(string("\"ProxyServer\"=\"proxy.contoso.com:8080\"")?);
            } else if name == fold(PROXY_OVERRIDE) {
                out.proxy_override = Some(string("\"ProxyOverride\"=\"*.contoso.com;<local>\"")?);
            } else if name == fold(AUTO_CONFIG_URL) {
                out.auto_config_url = Some(string("\"AutoConfigURL\"=\"http://wpad/wpad.dat\"")?);
            } else if name == fold(AUTO_DETECT) {
                out.auto_detect = Some(dword("\"AutoDetect\"=dword:00000001")?);
            } else {
                continue;
            }
            any = true;
        }
        Ok(any.then_some(out))
    }

    /// The names of the values present, in the table's order.
    pub fn present(&self) -> Vec<&'static str> {
        [
            (self.proxy_enable.is_some(), PROXY_ENABLE),
            (self.proxy_server.is_some(), PROXY_SERVER),
            (self.proxy_override.is_some(), PROXY_OVERRIDE),
            (self.auto_config_url.is_some(), AUTO_CONFIG_URL),
            (self.auto_detect.is_some(), AUTO_DETECT),
        ]
        .into_iter()
        .filter_map(|(present, name)| present.then_some(name))
        .collect()
    }

    fn pac_url(&self) -> Option<&str> {
        self.auto_config_url
            .as_deref()
            .filter(|u| !u.trim().is_empty())
    }

    /// The flags the blob would carry for these values.
    pub fn flags(&self) -> Flags {
        Flags::from_choices(
            self.proxy_enable.unwrap_or(0) != 0,
            self.pac_url().is_some(),
            self.auto_detect.unwrap_or(0) != 0,
        )
    }

    /// What the values make WinINet do.
    pub fn settings(&self) -> ProxySettings {
        let flags = self.flags();
        ProxySettings::from_parts(
            flags.proxy(),
            self.proxy_server.as_deref().unwrap_or(""),
            self.proxy_override.as_deref().unwrap_or(""),
            self.pac_url(),
            flags.auto_detect(),
        )
    }

    /// The string form of a blob: ProxyEnable and AutoDetect from its flags, ProxyServer and
    /// ProxyOverride when non-empty (Windows keeps them while the proxy is off), AutoConfigURL
    /// only when its flag is set (in the string form its presence is the switch).
    pub fn from_connection_settings(cs: &ConnectionSettings) -> Self {
        let non_empty = |s: &str| Some(s.to_owned()).filter(|s| !s.is_empty());
        InternetSettings {
            proxy_enable: Some(u32::from(cs.flags.proxy())),
            proxy_server: non_empty(&cs.proxy_server),
            proxy_override: non_empty(&cs.bypass),
            auto_config_url: if cs.flags.auto_config_url() {
                non_empty(&cs.auto_config_url)
            } else {
                None
            },
            auto_detect: Some(u32::from(cs.flags.auto_detect())),
        }
    }

    /// A new blob for these values, as Windows writes one (version 0x46, 32 trailing zero
    /// bytes), keeping ProxyServer while the proxy is off and joining ProxyOverride with `;`.
    pub fn to_connection_settings(&self, counter: u32) -> ConnectionSettings {
        let mut cs = ConnectionSettings::new(&ProxySettings::default(), counter);
        cs.flags = self.flags();
        cs.proxy_server = self.proxy_server.clone().unwrap_or_default();
        cs.bypass =
            proxy_list::parse_bypass(self.proxy_override.as_deref().unwrap_or("")).join(";");
        cs.auto_config_url = self.pac_url().unwrap_or("").to_owned();
        cs
    }

    /// The .reg values that make a key hold exactly these settings: the dwords always, each
    /// string set or deleted (`"Name"=-`).
    pub fn to_values(&self) -> Vec<RegValue> {
        let string = |name, v: &Option<String>| match v {
            Some(s) => RegValue::new(name, RegData::String(s.clone())),
            None => RegValue::new(name, RegData::Delete),
        };
        vec![
            RegValue::new(PROXY_ENABLE, RegData::Dword(self.proxy_enable.unwrap_or(0))),
            string(PROXY_SERVER, &self.proxy_server),
            string(PROXY_OVERRIDE, &self.proxy_override),
            string(AUTO_CONFIG_URL, &self.auto_config_url),
            RegValue::new(AUTO_DETECT, RegData::Dword(self.auto_detect.unwrap_or(0))),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::regfile::RegFile;

    fn values_of(reg: &str) -> Vec<RegValue> {
        let f = RegFile::parse_str(&format!("REGEDIT4\n[HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Internet Settings]\n{reg}")).unwrap();
        f.keys[0].values.clone()
    }

    #[test]
    fn decodes_the_string_form() {
        // (values, proxy, bypass, pac, auto_detect)
        type Case<'a> = (
            &'a str,
            Option<&'a str>,
            &'a [&'a str],
            Option<&'a str>,
            bool,
        );
        let cases: &[Case] = &[
            (
                "\"ProxyEnable\"=dword:1\n\"ProxyServer\"=\"p:8082\"\n\"ProxyOverride\"=\"*.a.nl, b.local, <local>\"\n",
                Some("p:8082"), &["*.a.nl", "b.local", "<local>"], None, false,
            ),
            ("\"ProxyEnable\"=dword:0\n\"ProxyServer\"=\"p:8082\"\n", None, &[], None, false),
            ("\"proxyenable\"=hex(4):01,00,00,00\n\"PROXYSERVER\"=\"http=a:80;https=b:443\"\n", Some("http=a:80;https=b:443"), &[], None, false),
            ("\"AutoConfigURL\"=\"http://wpad/wpad.dat\"\n\"AutoDetect\"=dword:1\n", None, &[], Some("http://wpad/wpad.dat"), true),
            ("\"AutoConfigURL\"=\" \"\n", None, &[], None, false),
        ];
        for (reg, proxy, bypass, pac, auto) in cases {
            let is = InternetSettings::from_values(&values_of(reg))
                .unwrap()
                .unwrap();
            let s = is.settings();
            assert_eq!(
                (
                    s.proxy_server.as_deref(),
                    s.bypass.iter().map(String::as_str).collect::<Vec<_>>(),
                    s.pac_url.as_deref(),
                    s.auto_detect
                ),
                (*proxy, bypass.to_vec(), *pac, *auto),
                "{reg}"
            );
        }
    }

    #[test]
    fn absent_and_wrong_types() {
        assert_eq!(
            InternetSettings::from_values(&values_of("\"MigrateProxy\"=dword:1\n")).unwrap(),
            None
        );
        assert_eq!(
            InternetSettings::from_values(&values_of("\"ProxyServer\"=-\n")).unwrap(),
            None
        );
        let e = InternetSettings::from_values(&values_of("\"ProxyEnable\"=\"1\"\n")).unwrap_err();
        assert!(
            e.to_string()
                .contains("\"ProxyEnable\" is a string (REG_SZ), but Windows stores it as a dword"),
            "{e}"
        );
        let e = InternetSettings::from_values(&values_of("\"ProxyServer\"=dword:1\n")).unwrap_err();
        assert!(e.to_string().contains("as a string"), "{e}");
    }

    #[test]
    fn converts_to_and_from_the_blob() {
        let is = InternetSettings {
            proxy_enable: Some(1),
            proxy_server: Some("www-proxy.cs.kadaster.nl:8082".into()),
            proxy_override: Some("*.cs.kadaster.nl, localhost, <local>".into()),
            auto_config_url: None,
            auto_detect: None,
        };
        let cs = is.to_connection_settings(7);
        assert_eq!((cs.version, cs.counter, cs.flags), (0x46, 7, Flags(0x3)));
        assert_eq!(cs.bypass, "*.cs.kadaster.nl;localhost;<local>");
        assert_eq!(cs.trailing, [0; 32]);
        assert_eq!(cs.settings(), is.settings());
        let back = InternetSettings::from_connection_settings(&cs);
        assert_eq!(back.settings(), is.settings());
        assert_eq!(
            back.proxy_override.as_deref(),
            Some("*.cs.kadaster.nl;localhost;<local>")
        );
        assert_eq!(back.auto_detect, Some(0));
    }

    #[test]
    fn to_values_sets_or_deletes_each() {
        let is = InternetSettings {
            proxy_enable: Some(1),
            proxy_server: Some("p:80".into()),
            ..Default::default()
        };
        let names: Vec<(String, String)> = is
            .to_values()
            .iter()
            .map(|v| (v.name.clone(), v.data.describe()))
            .collect();
        assert_eq!(
            names[0],
            ("ProxyEnable".into(), "a dword (REG_DWORD)".into())
        );
        assert_eq!(names[1], ("ProxyServer".into(), "a string (REG_SZ)".into()));
        assert_eq!(names[2], ("ProxyOverride".into(), "a deletion (-)".into()));
        assert_eq!(names[3], ("AutoConfigURL".into(), "a deletion (-)".into()));
        // Applying the values to a key gives back the same settings.
        let back = InternetSettings::from_values(&is.to_values())
            .unwrap()
            .unwrap();
        assert_eq!(back.settings(), is.settings());
    }
}
