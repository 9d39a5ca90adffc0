//! The telemetry proxy group policy: `TelemetryProxyServer` and `DisableEnterpriseAuthProxy`
//! under `HKLM\SOFTWARE\Policies\Microsoft\Windows\DataCollection`.
//!
//! Windows' Connected User Experiences and Telemetry service (which Defender sensors use to
//! report) reads a static proxy from `TelemetryProxyServer` (REG_SZ `server:port`) and, with
//! `DisableEnterpriseAuthProxy` = 1, does not try an authenticating proxy. The policy has no
//! bypass list, PAC URL or auto-detection.

use uplink_diag::{Code, Diagnose};

use crate::regfile::{fold, RegData, RegValue};
use crate::settings::ProxySettings;

pub const TELEMETRY_PROXY_SERVER: &str = "TelemetryProxyServer";
pub const DISABLE_ENTERPRISE_AUTH_PROXY: &str = "DisableEnterpriseAuthProxy";

/// The two policy values, as found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct TelemetryPolicy {
    pub proxy_server: Option<String>,
    pub disable_enterprise_auth_proxy: Option<u32>,
}

/// A policy value has the wrong type.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the policy value {name:?} is {found}, but the policy stores it as {expected}: write it as \
     {example}"
)]
pub struct TelemetryPolicyError {
    pub name: String,
    pub found: String,
    pub expected: &'static str,
    pub example: &'static str,
}

impl Diagnose for TelemetryPolicyError {
    fn code(&self) -> Code {
        Code::CONFIG_INVALID
    }
}

impl TelemetryPolicy {
    /// The policy for a proxy: the server and `DisableEnterpriseAuthProxy` = 1.
    pub fn new(proxy_server: &str) -> Self {
        TelemetryPolicy {
            proxy_server: Some(proxy_server.to_owned()),
            disable_enterprise_auth_proxy: Some(1),
        }
    }

    /// Collects the two values from a key's values; `None` when `TelemetryProxyServer` is absent.
    pub fn from_values<'a>(
        values: impl IntoIterator<Item = &'a RegValue>,
    ) -> Result<Option<Self>, TelemetryPolicyError> {
        let mut out = TelemetryPolicy::default();
        for v in values {
            if v.data == RegData::Delete {
                continue;
            }
            let name = fold(&v.name);
            if name == fold(TELEMETRY_PROXY_SERVER) {
                let s = v.data.as_str().ok_or_else(|| TelemetryPolicyError {
                    name: v.name.clone(),
                    found: v.data.describe(),
                    expected: "a string",
                    example: "\"TelemetryProxyServer\"=\"proxy.contoso.com:8080\"",
                })?;
                out.proxy_server = Some(s.to_owned());
            } else if name == fold(DISABLE_ENTERPRISE_AUTH_PROXY) {
                let n = v.data.as_dword().ok_or_else(|| TelemetryPolicyError {
                    name: v.name.clone(),
                    found: v.data.describe(),
                    expected: "a dword",
                    example: "\"DisableEnterpriseAuthProxy\"=dword:00000001",
                })?;
                out.disable_enterprise_auth_proxy = Some(n);
            }
        }
        Ok(out.proxy_server.is_some().then_some(out))
    }

    /// The policy's values for a .reg file.
    pub fn to_values(&self) -> Vec<RegValue> {
        let mut out = Vec::new();
        if let Some(p) = &self.proxy_server {
            out.push(RegValue::new(
                TELEMETRY_PROXY_SERVER,
                RegData::String(p.clone()),
            ));
        }
        if let Some(n) = self.disable_enterprise_auth_proxy {
            out.push(RegValue::new(
                DISABLE_ENTERPRISE_AUTH_PROXY,
                RegData::Dword(n),
            ));
        }
        out
    }

    /// What the policy makes the telemetry service do: use the proxy, if one is set.
    pub fn settings(&self) -> ProxySettings {
        ProxySettings::from_parts(
            true,
            self.proxy_server.as_deref().unwrap_or(""),
            "",
            None,
            false,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_values() {
        let v = |n: &str, d: RegData| RegValue::new(n, d);
        type Want<'a> = Result<Option<(&'a str, Option<u32>)>, &'a str>;
        let cases: Vec<(Vec<RegValue>, Want)> = vec![
            (
                vec![
                    v("telemetryproxyserver", RegData::String("p:8080".into())),
                    v("DisableEnterpriseAuthProxy", RegData::Dword(1)),
                ],
                Ok(Some(("p:8080", Some(1)))),
            ),
            (
                vec![v("DisableEnterpriseAuthProxy", RegData::Dword(1))],
                Ok(None),
            ),
            (vec![v("TelemetryProxyServer", RegData::Delete)], Ok(None)),
            (
                vec![v("TelemetryProxyServer", RegData::Dword(1))],
                Err("as a string"),
            ),
            (
                vec![
                    v("TelemetryProxyServer", RegData::String("p:1".into())),
                    v("DisableEnterpriseAuthProxy", RegData::String("1".into())),
                ],
                Err("as a dword"),
            ),
        ];
        for (values, want) in cases {
            match (TelemetryPolicy::from_values(&values), want) {
                (Ok(got), Ok(want)) => assert_eq!(
                    got.as_ref().map(|p| (
                        p.proxy_server.as_deref().unwrap(),
                        p.disable_enterprise_auth_proxy
                    )),
                    want
                ),
                (Err(e), Err(text)) => assert!(e.to_string().contains(text), "{e}"),
                (got, want) => panic!("{values:?}: {got:?} vs {want:?}"),
            }
        }
    }

    #[test]
    fn new_policy() {
        let p = TelemetryPolicy::new("proxy.contoso.com:8080");
        assert_eq!(
            p.to_values(),
            [
                RegValue::new(
                    "TelemetryProxyServer",
                    RegData::String("proxy.contoso.com:8080".into())
                ),
                RegValue::new("DisableEnterpriseAuthProxy", RegData::Dword(1)),
            ]
        );
        assert_eq!(
            p.settings().proxy_server.as_deref(),
            Some("proxy.contoso.com:8080")
        );
        assert!(p.settings().bypass.is_empty());
    }
}
