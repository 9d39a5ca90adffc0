//! What the two binary layouts share: little-endian `u32` fields and length-prefixed ANSI
//! strings, read with every offset checked, and the errors that name the offset and the field.
//!
//! Both WinINet's `DefaultConnectionSettings` and WinHTTP's `WinHttpSettings` are three `u32`s
//! followed by `u32`-length-prefixed strings without terminators. A corrupt or cut-off value must
//! produce an error that tells an administrator where it broke ("the bypass list length at offset
//! 40 says 300 bytes, but 12 remain"), never a panic and never a silently shortened string.

use std::fmt;

use uplink_diag::{Code, Diagnose};

/// Which of the two layouts a value has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layout {
    /// WinINet: `DefaultConnectionSettings`, `SavedLegacySettings`, per-connection values.
    WinInet,
    /// WinHTTP: `WinHttpSettings`, written by `netsh winhttp`.
    WinHttp,
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layout::WinInet => "WinINet",
            Layout::WinHttp => "WinHTTP",
        })
    }
}

/// A field of a binary value, named in errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    /// WinINet's version (0x46, 0x3C).
    Version,
    /// WinHTTP's magic (0x18, 0x28).
    Magic,
    Counter,
    Flags,
    ProxyServerLength,
    ProxyServer,
    BypassLength,
    Bypass,
    AutoConfigUrlLength,
    AutoConfigUrl,
}

impl Field {
    pub fn name(self) -> &'static str {
        match self {
            Field::Version => "version",
            Field::Magic => "magic",
            Field::Counter => "counter",
            Field::Flags => "flags",
            Field::ProxyServerLength => "proxy server length",
            Field::ProxyServer => "proxy server",
            Field::BypassLength => "bypass list length",
            Field::Bypass => "bypass list",
            Field::AutoConfigUrlLength => "auto-config URL length",
            Field::AutoConfigUrl => "auto-config URL",
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a binary value could not be decoded. Every variant names the field and its offset.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The value ends inside a fixed-size field (the header, or a length prefix).
    #[error(
        "truncated {layout} value: the {field} at offset {offset} needs 4 bytes, but the value \
         is only {len} bytes long; the value was cut off: export it again with `reg export` and \
         copy every byte"
    )]
    Truncated {
        layout: Layout,
        field: Field,
        offset: usize,
        len: usize,
    },
    /// A length prefix says more bytes than the value has left.
    #[error(
        "corrupt {layout} value: the {length_field} at offset {offset} says {length} bytes, but \
         only {available} bytes remain after offset {start}; the {field} runs past the end of \
         the value: export it again, or reset the setting on the machine that wrote it"
    )]
    LengthPastEnd {
        layout: Layout,
        length_field: Field,
        field: Field,
        offset: usize,
        length: u32,
        start: usize,
        available: usize,
    },
    /// The first `u32` is not a known version or magic for the layout.
    #[error(
        "unknown {layout} {field} 0x{found:x} at offset 0 (known: {known}); this is not a \
         {layout} proxy value, or one written by a Windows version uplink does not know: check \
         the value name and kind, or report the bytes"
    )]
    UnknownMagic {
        layout: Layout,
        field: Field,
        found: u32,
        known: &'static str,
    },
    /// A string holds a byte outside ASCII.
    #[error(
        "the {layout} {field} starting at offset {offset} holds the non-ASCII byte 0x{byte:02x} \
         at offset {at}; these strings are ANSI and uplink accepts ASCII only: write \
         international host names in punycode (xn--...)"
    )]
    NonAscii {
        layout: Layout,
        field: Field,
        offset: usize,
        at: usize,
        byte: u8,
    },
}

impl DecodeError {
    /// The field where decoding stopped.
    pub fn field(&self) -> Field {
        match self {
            DecodeError::Truncated { field, .. }
            | DecodeError::UnknownMagic { field, .. }
            | DecodeError::NonAscii { field, .. } => *field,
            DecodeError::LengthPastEnd { length_field, .. } => *length_field,
        }
    }

    /// The offset of that field in the value.
    pub fn offset(&self) -> usize {
        match self {
            DecodeError::Truncated { offset, .. }
            | DecodeError::LengthPastEnd { offset, .. }
            | DecodeError::NonAscii { at: offset, .. } => *offset,
            DecodeError::UnknownMagic { .. } => 0,
        }
    }
}

impl Diagnose for DecodeError {
    fn code(&self) -> Code {
        Code::CONFIG_INVALID
    }
}

/// Why a value could not be encoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error(
        "the {field} {value:?} holds the non-ASCII character {ch:?}; Windows stores it as ANSI \
         and uplink writes ASCII only: write international host names in punycode (xn--...)"
    )]
    NonAscii {
        field: Field,
        value: String,
        ch: char,
    },
    #[error("the {field} is {len} bytes long; the format's length field holds at most 4 GiB")]
    TooLong { field: Field, len: usize },
}

impl Diagnose for EncodeError {
    fn code(&self) -> Code {
        Code::CONFIG_INVALID
    }
}

/// Reads fields front to back, checking every offset.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    layout: Layout,
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(layout: Layout, buf: &'a [u8]) -> Self {
        Reader {
            layout,
            buf,
            pos: 0,
        }
    }

    pub(crate) fn u32(&mut self, field: Field) -> Result<u32, DecodeError> {
        let offset = self.pos;
        let bytes =
            self.buf
                .get(offset..offset.saturating_add(4))
                .ok_or(DecodeError::Truncated {
                    layout: self.layout,
                    field,
                    offset,
                    len: self.buf.len(),
                })?;
        self.pos += 4;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    /// A `u32` length (`length_field`) followed by that many ASCII bytes (`field`).
    pub(crate) fn string(
        &mut self,
        length_field: Field,
        field: Field,
    ) -> Result<String, DecodeError> {
        let offset = self.pos;
        let length = self.u32(length_field)?;
        let start = self.pos;
        let available = self.buf.len() - start;
        let bytes = usize::try_from(length)
            .ok()
            .and_then(|n| self.buf.get(start..start.checked_add(n)?))
            .ok_or(DecodeError::LengthPastEnd {
                layout: self.layout,
                length_field,
                field,
                offset,
                length,
                start,
                available,
            })?;
        if let Some(i) = bytes.iter().position(|b| !b.is_ascii()) {
            return Err(DecodeError::NonAscii {
                layout: self.layout,
                field,
                offset: start,
                at: start + i,
                byte: bytes[i],
            });
        }
        self.pos = start + bytes.len();
        // ASCII is UTF-8, so this never replaces anything.
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }

    pub(crate) fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }
}

pub(crate) fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

pub(crate) fn put_string(out: &mut Vec<u8>, field: Field, s: &str) -> Result<(), EncodeError> {
    if let Some(ch) = s.chars().find(|c| !c.is_ascii()) {
        return Err(EncodeError::NonAscii {
            field,
            value: s.to_owned(),
            ch,
        });
    }
    let len = u32::try_from(s.len()).map_err(|_| EncodeError::TooLong {
        field,
        len: s.len(),
    })?;
    put_u32(out, len);
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

/// The flags word shared by both layouts (WinHTTP uses only the first two bits).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Flags(pub u32);

impl Flags {
    /// PROXY_TYPE_DIRECT: always set by Windows.
    pub const DIRECT: u32 = 0x1;
    /// PROXY_TYPE_PROXY: use the manual proxy server.
    pub const PROXY: u32 = 0x2;
    /// PROXY_TYPE_AUTO_PROXY_URL: use the setup script (PAC) URL.
    pub const AUTO_PROXY_URL: u32 = 0x4;
    /// PROXY_TYPE_AUTO_DETECT: discover a PAC file (WPAD).
    pub const AUTO_DETECT: u32 = 0x8;

    pub fn direct(self) -> bool {
        self.0 & Self::DIRECT != 0
    }
    pub fn proxy(self) -> bool {
        self.0 & Self::PROXY != 0
    }
    pub fn auto_config_url(self) -> bool {
        self.0 & Self::AUTO_PROXY_URL != 0
    }
    pub fn auto_detect(self) -> bool {
        self.0 & Self::AUTO_DETECT != 0
    }

    /// The flags Windows writes for these choices (DIRECT is always set).
    pub fn from_choices(proxy: bool, auto_config_url: bool, auto_detect: bool) -> Flags {
        let mut f = Self::DIRECT;
        if proxy {
            f |= Self::PROXY;
        }
        if auto_config_url {
            f |= Self::AUTO_PROXY_URL;
        }
        if auto_detect {
            f |= Self::AUTO_DETECT;
        }
        Flags(f)
    }
}

/// Hex that is not a value's bytes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    #[error(
        "{found:?} (character {position} after removing separators) is not a hex digit; give the \
         value's bytes as hex, e.g. 1800000000000000010000000000000000000000"
    )]
    NotHex { found: char, position: usize },
    #[error("{digits} hex digits is an odd number; every byte takes two digits")]
    OddLength { digits: usize },
}

/// A binary value's bytes from hex as people paste it: a value copied from a .reg file
/// (`hex:46,00,00,00,\` and its continuation lines), or a spaced dump. White space, commas,
/// backslashes and a leading `hex:` are ignored.
pub fn parse_pasted_hex(s: &str) -> Result<Vec<u8>, HexError> {
    let s = s.trim();
    let s = s
        .strip_prefix("hex:")
        .or_else(|| s.strip_prefix("HEX:"))
        .unwrap_or(s);
    let clean: String = s
        .chars()
        .filter(|c| !c.is_whitespace() && !matches!(c, ',' | '\\'))
        .collect();
    // Checked here rather than left to `hex::decode`, so that the message names the character
    // (not a byte of it) and a bad digit is reported before an odd count.
    if let Some((i, c)) = clean.char_indices().find(|(_, c)| !c.is_ascii_hexdigit()) {
        return Err(HexError::NotHex {
            found: c,
            position: i + 1,
        });
    }
    hex::decode(&clean).map_err(|_| HexError::OddLength {
        digits: clean.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pasted_hex() {
        let cases: &[(&str, Result<&[u8], &str>)] = &[
            ("18000000", Ok(&[0x18, 0, 0, 0])),
            ("hex:46,00,\\\n  00,00", Ok(&[0x46, 0, 0, 0])),
            ("HEX:46", Ok(&[0x46])),
            (" 28 00 0a FF ", Ok(&[0x28, 0, 0xa, 0xff])),
            ("", Ok(&[])),
            (
                "46x0",
                Err("'x' (character 3 after removing separators) is not a hex digit"),
            ),
            ("46 é0", Err("'é' (character 3")),
            ("x60", Err("'x' (character 1")),
            ("460", Err("3 hex digits is an odd number")),
        ];
        for (input, want) in cases {
            match (parse_pasted_hex(input), want) {
                (Ok(b), Ok(w)) => assert_eq!(b, *w, "{input:?}"),
                (Err(e), Err(text)) => assert!(e.to_string().contains(text), "{input:?}: {e}"),
                (got, want) => panic!("{input:?}: {got:?} vs {want:?}"),
            }
        }
    }

    #[test]
    fn reader_checks_every_offset() {
        // (input, result of u32 then string)
        type Case<'a> = (&'a [u8], Result<(u32, &'a str), (Field, usize)>);
        let cases: &[Case] = &[
            (b"\x01\x00\x00\x00\x02\x00\x00\x00ab", Ok((1, "ab"))),
            (b"\x01\x00\x00\x00\x00\x00\x00\x00", Ok((1, ""))),
            (b"\x01\x00\x00", Err((Field::Counter, 0))),
            (
                b"\x01\x00\x00\x00\x02\x00",
                Err((Field::ProxyServerLength, 4)),
            ),
            (
                b"\x01\x00\x00\x00\x03\x00\x00\x00ab",
                Err((Field::ProxyServerLength, 4)),
            ),
            (
                b"\x01\x00\x00\x00\xff\xff\xff\xffab",
                Err((Field::ProxyServerLength, 4)),
            ),
            (
                b"\x01\x00\x00\x00\x02\x00\x00\x00a\xe9",
                Err((Field::ProxyServer, 9)),
            ),
        ];
        for (input, want) in cases {
            let mut r = Reader::new(Layout::WinInet, input);
            let got = r.u32(Field::Counter).and_then(|n| {
                r.string(Field::ProxyServerLength, Field::ProxyServer)
                    .map(|s| (n, s))
            });
            match (got, want) {
                (Ok((n, s)), Ok((wn, ws))) => assert_eq!((n, s.as_str()), (*wn, *ws)),
                (Err(e), Err((field, offset))) => {
                    assert_eq!((e.field(), e.offset()), (*field, *offset), "{input:?}: {e}")
                }
                (got, want) => panic!("{input:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn errors_name_offset_and_field() {
        let mut r = Reader::new(Layout::WinInet, b"\x01\x00\x00\x00\x09\x00\x00\x00ab");
        r.u32(Field::Counter).unwrap();
        let e = r
            .string(Field::BypassLength, Field::Bypass)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("bypass list length at offset 4 says 9 bytes"),
            "{e}"
        );
        assert!(e.contains("only 2 bytes remain after offset 8"), "{e}");
    }

    #[test]
    fn flags() {
        let cases = [
            (0x1, [true, false, false, false]),
            (0x3, [true, true, false, false]),
            (0x5, [true, false, true, false]),
            (0x9, [true, false, false, true]),
            (0xf, [true, true, true, true]),
            (0x0, [false, false, false, false]),
        ];
        for (raw, [d, p, a, ad]) in cases {
            let f = Flags(raw);
            assert_eq!(
                [f.direct(), f.proxy(), f.auto_config_url(), f.auto_detect()],
                [d, p, a, ad],
                "{raw:#x}"
            );
            if d {
                assert_eq!(Flags::from_choices(p, a, ad), f);
            }
        }
    }

    #[test]
    fn put_string_refuses_non_ascii() {
        let mut out = Vec::new();
        let e = put_string(&mut out, Field::ProxyServer, "prøxy:80").unwrap_err();
        assert!(e.to_string().contains("'ø'"), "{e}");
        put_string(&mut out, Field::ProxyServer, "p:80").unwrap();
        assert_eq!(out, b"\x04\x00\x00\x00p:80");
    }
}
