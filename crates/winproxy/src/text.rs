//! The byte encodings of .reg files: UTF-16LE with a byte-order mark (what `regedit` and
//! `reg export` write for "Windows Registry Editor Version 5.00"), and ANSI for REGEDIT4.
//!
//! "ANSI" is the machine's code page; uplink assumes Windows-1252 (Western European, the code
//! page of every en-US and most European installations). A file with a UTF-8 byte-order mark is
//! UTF-8. A file without a byte-order mark that is valid UTF-8 is read as UTF-8 (hand-written
//! files on Linux, and ASCII, which both encodings read the same) unless it says REGEDIT4, which
//! is ANSI by definition (see [`crate::regfile`]); anything else is read as Windows-1252, which
//! maps every byte.

/// Windows-1252 bytes 0x80..=0x9F (the rest of the upper half is Latin-1). The five bytes the
/// code page leaves undefined map to the C1 control with the same number, as Windows'
/// `MultiByteToWideChar` does, so every byte decodes and re-encodes to itself.
const CP1252_80_9F: [char; 32] = [
    '\u{20AC}', '\u{0081}', '\u{201A}', '\u{0192}', '\u{201E}', '\u{2026}', '\u{2020}', '\u{2021}',
    '\u{02C6}', '\u{2030}', '\u{0160}', '\u{2039}', '\u{0152}', '\u{008D}', '\u{017D}', '\u{008F}',
    '\u{0090}', '\u{2018}', '\u{2019}', '\u{201C}', '\u{201D}', '\u{2022}', '\u{2013}', '\u{2014}',
    '\u{02DC}', '\u{2122}', '\u{0161}', '\u{203A}', '\u{0153}', '\u{009D}', '\u{017E}', '\u{0178}',
];

/// Decodes Windows-1252. Total: every byte maps to a character.
pub fn decode_cp1252(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| match b {
            0x80..=0x9F => CP1252_80_9F[usize::from(b - 0x80)],
            _ => char::from(b),
        })
        .collect()
}

/// Encodes Windows-1252; `Err(c)` names the first character the code page cannot hold.
pub fn encode_cp1252(s: &str) -> Result<Vec<u8>, char> {
    s.chars()
        .map(|c| {
            let n = u32::from(c);
            if n < 0x80 || (0xA0..=0xFF).contains(&n) {
                // Checked above: fits in a byte.
                Ok(n as u8)
            } else {
                CP1252_80_9F
                    .iter()
                    .position(|&m| m == c)
                    .map(|i| 0x80 + i as u8)
                    .ok_or(c)
            }
        })
        .collect()
}

/// How a file's bytes were encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Utf16Le,
    /// UTF-8 with a byte-order mark: certain.
    Utf8Bom,
    /// No byte-order mark, and valid UTF-8: a guess (Windows-1252 may read it too).
    Utf8,
    Cp1252,
}

/// Why a file's bytes are not text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error(
        "the file starts with a UTF-16LE byte-order mark but has an odd number of bytes ({len}); \
         it was cut off: export it again"
    )]
    OddUtf16 { len: usize },
    #[error(
        "the file is UTF-16LE but holds an unpaired surrogate 0x{unit:04x} at byte offset \
         {offset}; it is corrupt: export it again"
    )]
    BadUtf16 { offset: usize, unit: u16 },
    #[error(
        "the file starts with a UTF-16BE byte-order mark; regedit reads UTF-16LE: save it as \
         \"Unicode\" (UTF-16LE) or export it again with `reg export`"
    )]
    Utf16Be,
}

/// Decodes a .reg file's bytes, dropping the byte-order mark.
pub fn decode(bytes: &[u8]) -> Result<(String, Encoding), TextError> {
    if let Some(body) = bytes.strip_prefix(&[0xFF, 0xFE]) {
        if !body.len().is_multiple_of(2) {
            return Err(TextError::OddUtf16 { len: bytes.len() });
        }
        let units = body
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]));
        let mut out = String::with_capacity(body.len() / 2);
        // Units consumed so far: an error is reported for the unit right here.
        let mut pos = 0;
        for r in char::decode_utf16(units) {
            match r {
                Ok(c) => {
                    out.push(c);
                    pos += c.len_utf16();
                }
                Err(e) => {
                    return Err(TextError::BadUtf16 {
                        // Counting the byte-order mark.
                        offset: 2 + 2 * pos,
                        unit: e.unpaired_surrogate(),
                    });
                }
            }
        }
        return Ok((out, Encoding::Utf16Le));
    }
    if bytes.starts_with(&[0xFE, 0xFF]) {
        return Err(TextError::Utf16Be);
    }
    if let Some(body) = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]) {
        if let Ok(s) = std::str::from_utf8(body) {
            return Ok((s.to_owned(), Encoding::Utf8Bom));
        }
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok((s.to_owned(), Encoding::Utf8)),
        Err(_) => Ok((decode_cp1252(bytes), Encoding::Cp1252)),
    }
}

/// UTF-16LE with a byte-order mark.
pub fn encode_utf16le(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + s.len() * 2);
    out.extend_from_slice(&[0xFF, 0xFE]);
    for u in s.encode_utf16() {
        out.extend_from_slice(&u.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cp1252_is_a_bijection_on_bytes() {
        let all: Vec<u8> = (0..=255).collect();
        let s = decode_cp1252(&all);
        assert_eq!(s.chars().count(), 256);
        assert_eq!(encode_cp1252(&s).unwrap(), all);
        // Spot checks against the code page chart.
        assert_eq!(decode_cp1252(&[0x80, 0x99, 0xE9, 0x9F]), "€™éŸ");
        assert_eq!(encode_cp1252("Ω"), Err('Ω'));
    }

    #[test]
    fn decodes_by_bom_and_content() {
        type Case<'a> = (&'a [u8], Result<(&'a str, Encoding), &'a str>);
        let cases: &[Case] = &[
            (b"\xff\xfeR\x00E\x00", Ok(("RE", Encoding::Utf16Le))),
            (b"\xff\xfeR\x00E", Err("odd number of bytes (5)")),
            (
                b"\xff\xfeR\x00\x00\xd8A\x00",
                Err("unpaired surrogate 0xd800 at byte offset 4"),
            ),
            (b"\xfe\xff\x00R", Err("UTF-16BE")),
            (b"\xef\xbb\xbfREGEDIT4", Ok(("REGEDIT4", Encoding::Utf8Bom))),
            (
                b"\xef\xbb\xbf\xff",
                Ok(("\u{ef}\u{bb}\u{bf}\u{ff}", Encoding::Cp1252)),
            ),
            ("caf\u{e9}".as_bytes(), Ok(("caf\u{e9}", Encoding::Utf8))),
            (b"caf\xe9", Ok(("caf\u{e9}", Encoding::Cp1252))),
            (b"", Ok(("", Encoding::Utf8))),
        ];
        for (input, want) in cases {
            match (decode(input), want) {
                (Ok((s, e)), Ok((ws, we))) => assert_eq!((s.as_str(), e), (*ws, *we)),
                (Err(e), Err(text)) => assert!(e.to_string().contains(text), "{input:?}: {e}"),
                (got, want) => panic!("{input:?}: {got:?} vs {want:?}"),
            }
        }
    }

    #[test]
    fn utf16_round_trip() {
        let s = "Windows Registry Editor Version 5.00\r\n\"é\"=\"𝄞\"\r\n";
        let bytes = encode_utf16le(s);
        assert_eq!(&bytes[..4], b"\xff\xfeW\x00");
        assert_eq!(decode(&bytes).unwrap(), (s.to_owned(), Encoding::Utf16Le));
    }
}
