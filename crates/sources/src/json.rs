//! `format = "json"` files: is a line one JSON object the service will take as it is?
//!
//! A line of a JSON file is shipped as its event's `data` — the bytes read, never parsed into a
//! tree and written again — when [`object`] says it is one JSON object that every reader of the
//! stored events can read: valid UTF-8, valid JSON (serde_json, into `IgnoredAny`: no tree), an
//! object, nesting at most [`MAX_OBJECT_DEPTH`] levels (the event wraps it, and the service
//! refuses events deeper than [`uplink_protocol::batch::MAX_DEPTH`]), and every `\u` escape valid
//! Unicode (the service refuses lone UTF-16 surrogates). Anything else — bad JSON, an array, a
//! scalar, invalid UTF-8, too deep — is [`Verdict`]ed with its reason and shipped as text, exactly
//! as in text mode: a line is never dropped, and a line the service would refuse never makes the
//! batch it is in unsendable.
//!
//! Pure: functions over bytes, table-tested below.

use serde::de::IgnoredAny;

/// The deepest nesting of arrays and objects in a line shipped as `data` (the line's own object
/// is level 1): one less than the service's limit on an event, whose object holds it.
pub const MAX_OBJECT_DEPTH: usize = uplink_protocol::batch::MAX_DEPTH - 1;

/// Why a line of a JSON file is shipped as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// One JSON object: shipped as `data`.
    Object,
    /// Not UTF-8.
    NotUtf8,
    /// Valid UTF-8, but not JSON (or not one value).
    NotJson,
    /// JSON, but an array, a string, a number, `true`, `false` or `null`.
    NotObject,
    /// Nested deeper than [`MAX_OBJECT_DEPTH`].
    TooDeep,
    /// A `\u` escape that is a lone UTF-16 surrogate.
    LoneSurrogate,
}

/// JSON's whitespace (RFC 8259): what may surround the value on a line.
fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// `line` without the JSON whitespace around it.
pub fn trim(line: &[u8]) -> &[u8] {
    let start = line.iter().position(|&b| !is_ws(b)).unwrap_or(line.len());
    let end = line
        .iter()
        .rposition(|&b| !is_ws(b))
        .map_or(start, |e| e + 1);
    &line[start..end]
}

/// The object of `line` (without surrounding whitespace) when the line is one JSON object the
/// service takes as it is; else why not.
pub fn object(line: &[u8]) -> Result<&str, Verdict> {
    let bytes = trim(line);
    let text = std::str::from_utf8(bytes).map_err(|_| Verdict::NotUtf8)?;
    if bytes.first() != Some(&b'{') {
        // One JSON value, but not an object; or not JSON at all.
        return Err(if serde_json::from_str::<IgnoredAny>(text).is_ok() {
            Verdict::NotObject
        } else {
            Verdict::NotJson
        });
    }
    // Depth and surrogates first: serde_json's own limit (128) is deeper than the service's,
    // and it lets lone surrogates through.
    structure(bytes)?;
    serde_json::from_str::<IgnoredAny>(text).map_err(|_| Verdict::NotJson)?;
    Ok(text)
}

/// Nesting within [`MAX_OBJECT_DEPTH`] and no lone surrogate in a `\u` escape. One pass over the
/// bytes, no allocation; malformed input is left to the parser (it refuses it).
fn structure(b: &[u8]) -> Result<(), Verdict> {
    let mut depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_OBJECT_DEPTH {
                    return Err(Verdict::TooDeep);
                }
                i += 1;
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b'"' => {
                // A string: on to its closing quote, checking its `\u` escapes.
                i += 1;
                loop {
                    // The bulk of an event is string text: to the next quote or backslash at once.
                    let Some(k) = b[i..].iter().position(|&c| c == b'"' || c == b'\\') else {
                        return Ok(()); // unterminated: the parser says so
                    };
                    i += k;
                    if b[i] == b'"' {
                        i += 1;
                        break;
                    }
                    if b.get(i + 1) != Some(&b'u') {
                        i += 2;
                        continue;
                    }
                    match hex4(b, i + 2) {
                        None => return Ok(()), // malformed: the parser says so
                        Some(0xD800..=0xDBFF) => {
                            let low = (b.get(i + 6) == Some(&b'\\') && b.get(i + 7) == Some(&b'u'))
                                .then(|| hex4(b, i + 8))
                                .flatten();
                            if !matches!(low, Some(0xDC00..=0xDFFF)) {
                                return Err(Verdict::LoneSurrogate);
                            }
                            i += 12;
                        }
                        Some(0xDC00..=0xDFFF) => return Err(Verdict::LoneSurrogate),
                        Some(_) => i += 6,
                    }
                }
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// The value of four hex digits at `at`, if they are there.
fn hex4(b: &[u8], at: usize) -> Option<u16> {
    let d = b.get(at..at + 4)?;
    d.iter().try_fold(0u16, |v, &c| {
        let x = (c as char).to_digit(16)?;
        Some(v << 4 | x as u16)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize) -> String {
        let mut s = String::from("{\"a\":");
        for _ in 1..depth {
            s.push('[');
        }
        s.push('1');
        for _ in 1..depth {
            s.push(']');
        }
        s.push('}');
        s
    }

    #[test]
    fn table() {
        use Verdict::*;
        let deepest = nested(MAX_OBJECT_DEPTH);
        let too_deep = nested(MAX_OBJECT_DEPTH + 1);
        let big = format!("{{\"msg\":\"{}\"}}", "x".repeat(64 * 1024 - 10));
        let cases: &[(&[u8], Result<&str, Verdict>)] = &[
            (b"{}", Ok("{}")),
            (br#"{"a":1}"#, Ok(r#"{"a":1}"#)),
            (b"  \t{\"a\":1}\r ", Ok(r#"{"a":1}"#)),
            (
                br#"{"user":"CONTOSO\\u1","n":-1.5e3,"ok":true,"z":null,"l":[1,{"b":[]}]}"#,
                Ok(r#"{"user":"CONTOSO\\u1","n":-1.5e3,"ok":true,"z":null,"l":[1,{"b":[]}]}"#),
            ),
            // Escapes, including a surrogate pair and an escaped quote before the real one.
            (
                br#"{"q":"say \"hi\"\t\\ \u00e9 \ud83d\ude80 \/"}"#,
                Ok(r#"{"q":"say \"hi\"\t\\ \u00e9 \ud83d\ude80 \/"}"#),
            ),
            // Non-ASCII as itself; a brace inside a string does not nest.
            (
                "{\"m\":\"Übergröße 日本 🚀 {[\"}".as_bytes(),
                Ok("{\"m\":\"Übergröße 日本 🚀 {[\"}"),
            ),
            // Duplicate keys are JSON (the service stores them as sent).
            (br#"{"a":1,"a":2}"#, Ok(r#"{"a":1,"a":2}"#)),
            (deepest.as_bytes(), Ok(&deepest)),
            (big.as_bytes(), Ok(&big)),
            // Not UTF-8 (in a string, and a truncated sequence).
            (b"{\"a\":\"\xff\"}", Err(NotUtf8)),
            (b"{\"a\":\"\xe6\x97\"}", Err(NotUtf8)),
            // Not JSON.
            (b"", Err(NotJson)),
            (b"   ", Err(NotJson)),
            (b"plain text", Err(NotJson)),
            (b"{", Err(NotJson)),
            (br#"{"a":1"#, Err(NotJson)),
            (br#"{"a":1}}"#, Err(NotJson)),
            (br#"{"a":1} {"b":2}"#, Err(NotJson)),
            (br#"{"a":1,}"#, Err(NotJson)),
            (br#"{'a':1}"#, Err(NotJson)),
            (br#"{"a":01}"#, Err(NotJson)),
            (br#"{"a":NaN}"#, Err(NotJson)),
            (b"{\"a\":\"tab\there\"}", Err(NotJson)),
            (b"{\"a\":\"nul\0\"}", Err(NotJson)),
            (br#"{"a":"\x"}"#, Err(NotJson)),
            (br#"{"a":"\u12"}"#, Err(NotJson)),
            (br#"{"a":"unterminated}"#, Err(NotJson)),
            (b"{\"a\":1}\x0b", Err(NotJson)),
            // JSON, not an object.
            (b"[1,2]", Err(NotObject)),
            (br#""a string""#, Err(NotObject)),
            (b"42", Err(NotObject)),
            (b"true", Err(NotObject)),
            (b"null", Err(NotObject)),
            // Too deep for the service once wrapped in the event.
            (too_deep.as_bytes(), Err(TooDeep)),
            // Lone surrogates: JSON to serde_json, refused by the service.
            (br#"{"a":"\ud800"}"#, Err(LoneSurrogate)),
            (br#"{"a":"\udc00 x"}"#, Err(LoneSurrogate)),
            (br#"{"a":"\ud83d\u0041"}"#, Err(LoneSurrogate)),
        ];
        for (line, want) in cases {
            assert_eq!(
                object(line),
                *want,
                "{:?}",
                String::from_utf8_lossy(&line[..line.len().min(80)])
            );
        }
    }

    /// What is shipped as `data`, wrapped as the event, is what the service accepts; what is
    /// refused as too deep or a lone surrogate, the service would refuse.
    #[test]
    fn the_service_takes_every_object_shipped() {
        let lines = [
            r#"{"a":1}"#.to_owned(),
            r#"{"q":"\ud83d\ude80 \"x\""}"#.to_owned(),
            nested(MAX_OBJECT_DEPTH),
            nested(MAX_OBJECT_DEPTH + 1),
            r#"{"a":"\ud800"}"#.to_owned(),
        ];
        for l in &lines {
            let event = format!("{{\"seq\":1,\"kind\":\"log\",\"data\":{l},\"offset\":0}}");
            let service = uplink_protocol::batch::parse_line(&event).is_ok();
            assert_eq!(object(l.as_bytes()).is_ok(), service, "{l}");
        }
    }
}
