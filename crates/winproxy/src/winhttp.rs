//! WinHTTP's binary proxy value: `WinHttpSettings` under
//! `HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Internet Settings\Connections`, the value
//! `netsh winhttp set proxy` and `netsh winhttp reset proxy` write.
//!
//! Layout (all integers `u32` little-endian):
//!
//! | offset | field |
//! |---|---|
//! | 0 | magic: 0x18 (older systems; KB 4494447's "direct" value) or 0x28 (newer exports) |
//! | 4 | a `u32` zero in every known sample (reported as the counter) |
//! | 8 | flags: 0x1 direct, 0x3 named proxy |
//! | 12 | length + proxy server |
//! | … | length + bypass list |
//! | … | anything after (none in known samples), kept byte for byte |
//!
//! There is no PAC URL and no auto-detect in WinHTTP's stored settings: WinHTTP callers ask for
//! those per request.

use crate::blob::{put_string, put_u32, DecodeError, EncodeError, Field, Flags, Layout, Reader};
use crate::settings::ProxySettings;

/// The magic of values written by current Windows versions (uplink's default).
pub const MAGIC: u32 = 0x28;
/// The magic of values written by older systems (Wine's WINHTTP_SETTINGS_MAGIC, KB 4494447).
pub const MAGIC_LEGACY: u32 = 0x18;

/// A magic as an administrator gives it: `0x28`, `0X18` or decimal. Only the two known magics
/// are accepted.
pub fn parse_magic(s: &str) -> Result<u32, String> {
    let n = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    };
    match n {
        Some(m @ (MAGIC_LEGACY | MAGIC)) => Ok(m),
        _ => Err(format!(
            "{s:?} is not a WinHTTP magic: use 0x28 (current Windows) or 0x18 (older systems)"
        )),
    }
}

/// A decoded `WinHttpSettings` value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WinHttpSettings {
    pub magic: u32,
    /// The second `u32`: zero in every known sample.
    pub counter: u32,
    pub flags: Flags,
    pub proxy_server: String,
    pub bypass: String,
    /// Anything after the two strings (nothing in known samples), byte for byte.
    pub trailing: Vec<u8>,
}

impl WinHttpSettings {
    /// Decodes a value. Accepts magics 0x18 and 0x28; anything else is [`DecodeError::UnknownMagic`].
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(Layout::WinHttp, bytes);
        let magic = r.u32(Field::Magic)?;
        if magic != MAGIC && magic != MAGIC_LEGACY {
            return Err(DecodeError::UnknownMagic {
                layout: Layout::WinHttp,
                field: Field::Magic,
                found: magic,
                known: "0x18, 0x28",
            });
        }
        let counter = r.u32(Field::Counter)?;
        let flags = Flags(r.u32(Field::Flags)?);
        let proxy_server = r.string(Field::ProxyServerLength, Field::ProxyServer)?;
        let bypass = r.string(Field::BypassLength, Field::Bypass)?;
        Ok(WinHttpSettings {
            magic,
            counter,
            flags,
            proxy_server,
            bypass,
            trailing: r.rest().to_vec(),
        })
    }

    /// The value's bytes. The inverse of [`decode`](Self::decode).
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(
            20 + self.proxy_server.len() + self.bypass.len() + self.trailing.len(),
        );
        put_u32(&mut out, self.magic);
        put_u32(&mut out, self.counter);
        put_u32(&mut out, self.flags.0);
        put_string(&mut out, Field::ProxyServer, &self.proxy_server)?;
        put_string(&mut out, Field::Bypass, &self.bypass)?;
        out.extend_from_slice(&self.trailing);
        Ok(out)
    }

    /// What `netsh winhttp set proxy PROXY BYPASS` stores: flags 0x3, the strings, nothing after.
    pub fn set(magic: u32, proxy_server: &str, bypass: &[String]) -> Self {
        WinHttpSettings {
            magic,
            counter: 0,
            flags: Flags(Flags::DIRECT | Flags::PROXY),
            proxy_server: proxy_server.to_owned(),
            bypass: bypass.join(";"),
            trailing: Vec::new(),
        }
    }

    /// What `netsh winhttp reset proxy` stores: direct access, empty strings.
    pub fn direct(magic: u32) -> Self {
        WinHttpSettings {
            magic,
            counter: 0,
            flags: Flags(Flags::DIRECT),
            proxy_server: String::new(),
            bypass: String::new(),
            trailing: Vec::new(),
        }
    }

    /// What this value makes WinHTTP do.
    pub fn settings(&self) -> ProxySettings {
        ProxySettings::from_parts(
            self.flags.proxy(),
            &self.proxy_server,
            &self.bypass,
            None,
            false,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magics() {
        let cases: &[(&str, Option<u32>)] = &[
            ("0x28", Some(0x28)),
            ("0X18", Some(0x18)),
            ("24", Some(0x18)),
            ("40", Some(0x28)),
            ("0x46", None),
            ("0x", None),
            ("", None),
            ("-1", None),
        ];
        for (input, want) in cases {
            match (parse_magic(input), want) {
                (Ok(m), Some(w)) => assert_eq!(m, *w, "{input:?}"),
                (Err(e), None) => assert!(e.contains("is not a WinHTTP magic"), "{input:?}: {e}"),
                (got, want) => panic!("{input:?}: {got:?} vs {want:?}"),
            }
        }
    }

    #[test]
    fn kb4494447_direct_value() {
        // Microsoft KB 4494447: "Data (for Direct Access or No Proxy)".
        let kb = hex::decode("1800000000000000010000000000000000000000").unwrap();
        let d = WinHttpSettings::decode(&kb).unwrap();
        assert_eq!(d, WinHttpSettings::direct(MAGIC_LEGACY));
        assert_eq!(d.encode().unwrap(), kb);
        assert_eq!(d.settings(), ProxySettings::default());
    }

    #[test]
    fn netsh_set_value() {
        // netsh winhttp set proxy proxy.contoso.com:8080 "localhost;*.contoso.com" (KB 4494447)
        let v = WinHttpSettings::set(
            MAGIC,
            "proxy.contoso.com:8080",
            &["localhost".into(), "*.contoso.com".into()],
        );
        let mut want = vec![0x28, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 22, 0, 0, 0];
        want.extend_from_slice(b"proxy.contoso.com:8080");
        want.extend_from_slice(&[23, 0, 0, 0]);
        want.extend_from_slice(b"localhost;*.contoso.com");
        assert_eq!(v.encode().unwrap(), want);
        let back = WinHttpSettings::decode(&want).unwrap();
        assert_eq!(back, v);
        let s = back.settings();
        assert_eq!(s.proxy_server.as_deref(), Some("proxy.contoso.com:8080"));
        assert_eq!(s.bypass, ["localhost", "*.contoso.com"]);
    }

    #[test]
    fn errors() {
        // (hex, field, offset, text)
        let cases = [
            ("", Field::Magic, 0, "truncated WinHTTP value"),
            ("28000000000000", Field::Counter, 4, "counter at offset 4"),
            (
                "2800000000000000030000000500000061",
                Field::ProxyServerLength,
                12,
                "says 5 bytes",
            ),
            (
                "280000000000000003000000",
                Field::ProxyServerLength,
                12,
                "needs 4 bytes",
            ),
            (
                "2800000000000000030000000000000001000000",
                Field::BypassLength,
                16,
                "bypass list length",
            ),
            (
                "46000000000000000100000000000000",
                Field::Magic,
                0,
                "unknown WinHTTP magic 0x46",
            ),
            (
                "28000000000000000300000001000000c3",
                Field::ProxyServer,
                16,
                "non-ASCII byte 0xc3",
            ),
        ];
        for (hexs, field, offset, text) in cases {
            let e = WinHttpSettings::decode(&hex::decode(hexs).unwrap()).unwrap_err();
            assert_eq!((e.field(), e.offset()), (field, offset), "{hexs}: {e}");
            assert!(e.to_string().contains(text), "{hexs}: {e}");
        }
    }

    #[test]
    fn trailing_bytes_are_kept() {
        let v = hex::decode("28000000000000000100000000000000000000000102").unwrap();
        let d = WinHttpSettings::decode(&v).unwrap();
        assert_eq!(d.trailing, [1, 2]);
        assert_eq!(d.encode().unwrap(), v);
    }
}
