//! WinINet's binary proxy value: `DefaultConnectionSettings`, `SavedLegacySettings` and the
//! per-connection values under `...\Internet Settings\Connections`.
//!
//! Layout (all integers `u32` little-endian; Microsoft never published it, see
//! `shared/fixtures/winproxy/FORMAT_NOTES.md` for the public sources):
//!
//! | offset | field |
//! |---|---|
//! | 0 | version: 0x46 (IE7 and later), 0x3C (IE6) |
//! | 4 | change counter |
//! | 8 | flags ([`Flags`]) |
//! | 12 | length + proxy server (`host:port`, or `http=a:80;https=b:443;socks=c:1080`) |
//! | … | length + bypass list (`;`-separated, `<local>`) |
//! | … | length + auto-config (PAC) URL |
//! | … | trailing bytes (32 on 0x46, 28 on 0x3C), meaning undocumented |
//!
//! Decoding keeps every byte (the counter as found, strings whose flag is cleared, the trailing
//! bytes), so `encode(decode(b)) == b` for every value that decodes. The strings are kept as
//! stored; [`crate::proxy_list`] interprets them.

use crate::blob::{put_string, put_u32, DecodeError, EncodeError, Field, Flags, Layout, Reader};
use crate::settings::ProxySettings;

/// The version Windows (IE7 and later, Windows 10/11) writes.
pub const VERSION: u32 = 0x46;
/// The version IE6 wrote.
pub const VERSION_IE6: u32 = 0x3C;
/// How many zero bytes follow the strings in a value Windows writes.
pub const TRAILING_LEN: usize = 32;

/// A decoded WinINet connection-settings value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ConnectionSettings {
    pub version: u32,
    /// Incremented by Windows on every change; may hold junk in per-connection values.
    pub counter: u32,
    pub flags: Flags,
    /// As stored, even when the PROXY flag is clear.
    pub proxy_server: String,
    /// As stored, even when the PROXY flag is clear.
    pub bypass: String,
    /// As stored, even when the AUTO_PROXY_URL flag is clear.
    pub auto_config_url: String,
    /// Everything after the three strings, byte for byte.
    pub trailing: Vec<u8>,
}

impl ConnectionSettings {
    /// Decodes a value. Accepts versions 0x46 and 0x3C; anything else is [`DecodeError::UnknownMagic`].
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(Layout::WinInet, bytes);
        let version = r.u32(Field::Version)?;
        if version != VERSION && version != VERSION_IE6 {
            return Err(DecodeError::UnknownMagic {
                layout: Layout::WinInet,
                field: Field::Version,
                found: version,
                known: "0x46, 0x3c",
            });
        }
        let counter = r.u32(Field::Counter)?;
        let flags = Flags(r.u32(Field::Flags)?);
        let proxy_server = r.string(Field::ProxyServerLength, Field::ProxyServer)?;
        let bypass = r.string(Field::BypassLength, Field::Bypass)?;
        let auto_config_url = r.string(Field::AutoConfigUrlLength, Field::AutoConfigUrl)?;
        Ok(ConnectionSettings {
            version,
            counter,
            flags,
            proxy_server,
            bypass,
            auto_config_url,
            trailing: r.rest().to_vec(),
        })
    }

    /// The value's bytes. The inverse of [`decode`](Self::decode).
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(
            24 + self.proxy_server.len()
                + self.bypass.len()
                + self.auto_config_url.len()
                + self.trailing.len(),
        );
        put_u32(&mut out, self.version);
        put_u32(&mut out, self.counter);
        put_u32(&mut out, self.flags.0);
        put_string(&mut out, Field::ProxyServer, &self.proxy_server)?;
        put_string(&mut out, Field::Bypass, &self.bypass)?;
        put_string(&mut out, Field::AutoConfigUrl, &self.auto_config_url)?;
        out.extend_from_slice(&self.trailing);
        Ok(out)
    }

    /// A new value as Windows writes one: version 0x46, DIRECT always set, the other flags from
    /// `settings`, the bypass list joined with `;`, and 32 trailing zero bytes.
    pub fn new(settings: &ProxySettings, counter: u32) -> Self {
        ConnectionSettings {
            version: VERSION,
            counter,
            flags: Flags::from_choices(
                settings.proxy_server.is_some(),
                settings.pac_url.is_some(),
                settings.auto_detect,
            ),
            proxy_server: settings.proxy_server.clone().unwrap_or_default(),
            bypass: settings.bypass.join(";"),
            auto_config_url: settings.pac_url.clone().unwrap_or_default(),
            trailing: vec![0; TRAILING_LEN],
        }
    }

    /// What this value makes WinINet do: only the parts whose flag is set count.
    pub fn settings(&self) -> ProxySettings {
        ProxySettings::from_parts(
            self.flags.proxy(),
            &self.proxy_server,
            &self.bypass,
            self.flags
                .auto_config_url()
                .then_some(self.auto_config_url.as_str()),
            self.flags.auto_detect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    #[test]
    fn decodes_hand_made_values() {
        // version, counter, flags, proxy, bypass, pac, trailing length
        let zeros32 = "00".repeat(32);
        let cases = [
            (
                format!(
                    "46000000 02000000 03000000 0b000000 {} 07000000 {} 00000000 {zeros32}",
                    hex::encode("proxy1:3128"),
                    hex::encode("<local>")
                ),
                (0x46, 2, 3, "proxy1:3128", "<local>", "", 32),
            ),
            (
                "3c000000 00000000 01000000 00000000 00000000 00000000".to_owned(),
                (0x3c, 0, 1, "", "", "", 0),
            ),
            (
                format!(
                    "46000000 ffffffff 05000000 00000000 00000000 01000000 20 {}",
                    "00".repeat(3)
                ),
                (0x46, u32::MAX, 5, "", "", " ", 3),
            ),
        ];
        for (hexs, (v, c, f, p, b, a, t)) in cases {
            let bytes = h(&hexs.replace(' ', ""));
            let d = ConnectionSettings::decode(&bytes).unwrap();
            assert_eq!(
                (
                    d.version,
                    d.counter,
                    d.flags.0,
                    d.proxy_server.as_str(),
                    d.bypass.as_str(),
                    d.auto_config_url.as_str(),
                    d.trailing.len()
                ),
                (v, c, f, p, b, a, t)
            );
            assert_eq!(d.encode().unwrap(), bytes);
        }
    }

    #[test]
    fn errors_name_field_and_offset() {
        // (hex, field, offset, text in message)
        let cases = [
            ("", Field::Version, 0, "only 0 bytes"),
            ("460000", Field::Version, 0, "only 3 bytes"),
            ("46000000 01000000", Field::Flags, 8, "flags at offset 8"),
            (
                "46000000 01000000 01000000",
                Field::ProxyServerLength,
                12,
                "proxy server length at offset 12",
            ),
            (
                "46000000 01000000 01000000 05000000 4142",
                Field::ProxyServerLength,
                12,
                "says 5 bytes, but only 2 bytes remain after offset 16",
            ),
            (
                "46000000 01000000 01000000 00000000 ffffff7f",
                Field::BypassLength,
                16,
                "bypass list length at offset 16 says 2147483647",
            ),
            (
                "46000000 01000000 01000000 00000000 00000000 02000000 41",
                Field::AutoConfigUrlLength,
                20,
                "auto-config URL length",
            ),
            (
                "46000000 01000000 01000000 02000000 41ff",
                Field::ProxyServer,
                17,
                "non-ASCII byte 0xff at offset 17",
            ),
            (
                "47000000 01000000 01000000",
                Field::Version,
                0,
                "unknown WinINet version 0x47",
            ),
            (
                "18000000 00000000 01000000 00000000 00000000",
                Field::Version,
                0,
                "version 0x18",
            ),
        ];
        for (hexs, field, offset, text) in cases {
            let e = ConnectionSettings::decode(&h(&hexs.replace(' ', ""))).unwrap_err();
            assert_eq!((e.field(), e.offset()), (field, offset), "{hexs}: {e}");
            assert!(e.to_string().contains(text), "{hexs}: {e}");
        }
    }

    #[test]
    fn new_value_is_what_windows_writes() {
        let s = ProxySettings {
            proxy_server: Some("proxy.contoso.com:8080".into()),
            bypass: vec!["*.contoso.com".into(), "<local>".into()],
            pac_url: None,
            auto_detect: false,
        };
        let bytes = ConnectionSettings::new(&s, 1).encode().unwrap();
        let mut want = h("46000000 01000000 03000000 16000000"
            .replace(' ', "")
            .as_str());
        want.extend_from_slice(b"proxy.contoso.com:8080");
        want.extend_from_slice(&[0x15, 0, 0, 0]);
        want.extend_from_slice(b"*.contoso.com;<local>");
        want.extend_from_slice(&[0; 4]);
        want.extend_from_slice(&[0; 32]);
        assert_eq!(bytes, want);
    }

    #[test]
    fn settings_follow_the_flags() {
        let mut d = ConnectionSettings {
            version: VERSION,
            counter: 0,
            flags: Flags(0x1),
            proxy_server: "p:80".into(),
            bypass: "a;b".into(),
            auto_config_url: "http://pac/".into(),
            trailing: vec![],
        };
        assert_eq!(d.settings(), ProxySettings::default());
        d.flags = Flags(0xf);
        let s = d.settings();
        assert_eq!(s.proxy_server.as_deref(), Some("p:80"));
        assert_eq!(s.bypass, ["a", "b"]);
        assert_eq!(s.pac_url.as_deref(), Some("http://pac/"));
        assert!(s.auto_detect);
    }
}
