//! `format = "json"` files: is a line one JSON object the service will take as it is?
//!
//! A line of a JSON file is shipped as its event's `data` — the bytes read, never parsed into a
//! tree and written again — when [`object`] says it is one JSON object that every reader of the
//! stored events can read: valid UTF-8, valid JSON (the service's one-pass scan,
//! [`uplink_protocol::batch::is_plain_object`], and for what it is not sure of serde_json into
//! `IgnoredAny`: no tree either way), an
//! object, nesting at most [`MAX_OBJECT_DEPTH`] levels (the event wraps it, and the service
//! refuses events deeper than [`uplink_protocol::batch::MAX_DEPTH`]), and every `\u` escape valid
//! Unicode (the service refuses lone UTF-16 surrogates). Anything else — bad JSON, an array, a
//! scalar, invalid UTF-8, too deep — is [`Verdict`]ed with its reason and shipped as text, exactly
//! as in text mode: a line is never dropped, and a line the service would refuse never makes the
//! batch it is in unsendable.
//!
//! Text lines go the other way: [`write_str_lossy`] writes a line's bytes as a JSON string, as
//! `String::from_utf8_lossy` then serde_json's escaping did, 64 bytes at a time.
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
    // Most lines of a JSON file are plain objects: one scan (the service's own, with its long
    // strings 64 bytes at a time) says so for sure; anything it is not sure of goes the slow way,
    // which also says why not.
    let bytes = trim(line);
    match std::str::from_utf8(bytes) {
        Ok(text) if uplink_protocol::batch::is_plain_object(text, MAX_OBJECT_DEPTH) => Ok(text),
        _ => object_slow(line),
    }
}

/// [`object`] without its fast scan: what it must answer for every line (the `text_line` fuzz
/// target checks that it does). Not for other uses.
#[doc(hidden)]
pub fn object_slow(line: &[u8]) -> Result<&str, Verdict> {
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
                    // (Past the end after a backslash that ends the line.)
                    let rest = b.get(i..).unwrap_or_default();
                    let Some(k) = rest.iter().position(|&c| c == b'"' || c == b'\\') else {
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

/// Writes `bytes` as a JSON string (quotes included) exactly as
/// `serde_json::to_writer(out, &String::from_utf8_lossy(bytes))` does — each invalid UTF-8
/// sequence as U+FFFD, as `from_utf8_lossy` replaces it (the maximal invalid subpart, which
/// `Utf8Error::error_len` is), `"`, `\` and control bytes escaped as serde_json escapes them.
/// The sources thread spends most of a tailing sensor's CPU writing lines; this is its inner
/// loop. The UTF-8 check is std's (a word at a time over ASCII); the escaping then looks only for
/// `"`, `\` and control bytes, 64 bytes at a time ([`uplink_bytescan`]), and copies the runs
/// between them whole (issue #28: a line full of quotes and backslashes cost more here, a word
/// and a branch per special byte, than serde_json's byte loop).
pub fn write_str_lossy(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut rest = bytes;
    loop {
        match std::str::from_utf8(rest) {
            Ok(_) => {
                write_escaped(out, rest);
                break;
            }
            Err(e) => {
                let (valid, after) = rest.split_at(e.valid_up_to());
                write_escaped(out, valid);
                out.extend_from_slice("\u{fffd}".as_bytes());
                // `None`: a sequence cut short by the end, one U+FFFD as `from_utf8_lossy`.
                rest = after
                    .get(e.error_len().unwrap_or(after.len())..)
                    .unwrap_or_default();
            }
        }
    }
    out.push(b'"');
}

/// Writes valid UTF-8 `s` escaped for a JSON string, as serde_json escapes it: `"` and `\`
/// after a backslash, control bytes as `\n`, `\t`… or `\u00XX`, everything else as it is.
///
/// Blocks without a special byte are copied whole with the run they are in. A block with some is
/// written out in a scratch buffer first, each run before a special byte copied as a fixed 64
/// bytes (of which the next write keeps only the run's): a line full of quotes and backslashes
/// has a run of a few bytes between them, and a copy of a run's own length is a call per run.
fn write_escaped(out: &mut Vec<u8>, s: &[u8]) {
    // The escape of each special byte (`"`, `\\`, control), in its first six bytes (the
    // backslash, then a letter or `u00XX`), and its length in the last.
    const ESCAPES: [[u8; 8]; 128] = {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut t = [[0; 8]; 128];
        let mut c = 0;
        while c < 32 {
            t[c] = match c {
                0x08 => *b"\\b\0\0\0\0\0\x02",
                0x09 => *b"\\t\0\0\0\0\0\x02",
                0x0a => *b"\\n\0\0\0\0\0\x02",
                0x0c => *b"\\f\0\0\0\0\0\x02",
                0x0d => *b"\\r\0\0\0\0\0\x02",
                _ => [b'\\', b'u', b'0', b'0', HEX[c >> 4], HEX[c & 15], 0, 6],
            };
            c += 1;
        }
        t[b'"' as usize] = *b"\\\"\0\0\0\0\0\x02";
        t[b'\\' as usize] = *b"\\\\\0\0\0\0\0\x02";
        t
    };
    /// A dirty block's bytes (with room for a fixed copy from any of them), and what they
    /// become: at most six bytes each, and room for a fixed copy after the last. One per
    /// thread, not zeroed again for each line.
    type Scratch = ([u8; 128], [u8; 6 * 64 + 64]);
    thread_local! {
        static SCRATCH: std::cell::RefCell<Scratch> = const {
            std::cell::RefCell::new(([0; 128], [0; 6 * 64 + 64]))
        };
    }
    SCRATCH.with_borrow_mut(|(src, dst)| {
        // Bytes from `clean` on are not written yet.
        let mut clean = 0;
        let mut at = 0;
        while at < s.len() {
            // The block from `at`; at the end, the last 64 bytes of `s` with the bits before `at`
            // shifted out (or, for a shorter `s`, its bytes padded with spaces: no special byte).
            let (block, shift) = match (s[at..].first_chunk(), s.last_chunk()) {
                (Some(block), _) => (*block, 0),
                (None, Some(last)) => (*last, at - (s.len() - 64)),
                (None, None) => {
                    let mut block = [b' '; 64];
                    block[..s.len() - at].copy_from_slice(&s[at..]);
                    (block, 0)
                }
            };
            let m = uplink_bytescan::specials(&block);
            let mut hits = (m.quote | m.backslash | m.control) >> shift;
            if hits == 0 {
                at += 64;
                continue;
            }
            out.extend_from_slice(&s[clean..at]);
            let n = (s.len() - at).min(64);
            src[..n].copy_from_slice(&s[at..at + n]);
            // `from`: the first byte of `src` not written; `o`: the end of `dst`'s bytes.
            let (mut from, mut o) = (0, 0);
            while hits != 0 {
                let p = hits.trailing_zeros() as usize;
                hits &= hits - 1;
                dst[o..o + 64].copy_from_slice(&src[from..from + 64]);
                o += p - from;
                // No branch on which escape: they alternate unpredictably in such a line.
                let escape = &ESCAPES[usize::from(src[p] & 0x7f)];
                dst[o..o + 6].copy_from_slice(&escape[..6]);
                o += usize::from(escape[7]);
                from = p + 1;
            }
            dst[o..o + 64].copy_from_slice(&src[from..from + 64]);
            o += n - from;
            out.extend_from_slice(&dst[..o]);
            at += 64;
            clean = at.min(s.len());
        }
        out.extend_from_slice(&s[clean..]);
    });
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
            // A backslash that ends the line (this panicked before).
            (br#"{"a":"x\"#, Err(NotJson)),
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
        // The fast scan and the slow way agree on every line, every one-byte change and every
        // cut of these lines (and of long escape-heavy ones, across the scan's 64-byte blocks).
        let long = format!(
            r#"{{"host":"dc01","msg":"{}","n":[1,{{"a":"\ud83d\ude80"}}]}}"#,
            r#"say \"hi\"\\path\tq\u0001 "#.repeat(8)
        );
        let subs = b"{}[]\":,\\0-1e.E+ \tuxnd/\x01\x80";
        for line in cases.iter().map(|(l, _)| *l).chain([long.as_bytes()]) {
            assert_eq!(object(line), object_slow(line));
            // (The table's megabyte line only whole: its cuts and changes would take minutes.)
            if line.len() > 4096 {
                continue;
            }
            for at in 0..line.len() {
                assert_eq!(object(&line[..at]), object_slow(&line[..at]));
                for &c in subs {
                    let mut changed = line.to_vec();
                    changed[at] = c;
                    assert_eq!(
                        object(&changed),
                        object_slow(&changed),
                        "{:?}",
                        String::from_utf8_lossy(&changed)
                    );
                }
            }
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

    /// The old path: `from_utf8_lossy`, then serde_json's escaping.
    fn two_passes(bytes: &[u8]) -> Vec<u8> {
        serde_json::to_vec(&String::from_utf8_lossy(bytes)).unwrap()
    }

    #[track_caller]
    fn same(bytes: &[u8]) {
        let mut got = b"before".to_vec();
        write_str_lossy(&mut got, bytes);
        assert_eq!(&got[..6], b"before");
        let want = two_passes(bytes);
        assert!(
            got[6..] == want[..],
            "{bytes:?}: {:?} against {:?}",
            String::from_utf8_lossy(&got[6..]),
            String::from_utf8_lossy(&want)
        );
    }

    #[test]
    fn one_pass_writes_what_two_passes_wrote() {
        // Every byte value alone, and at every position of lines around the 64-byte blocks.
        for b in 0..=255u8 {
            same(&[b]);
            for len in (1..=25).chain(62..=66).chain([127, 129]) {
                for at in 0..len {
                    let mut line = vec![b'x'; len];
                    line[at] = b;
                    same(&line);
                }
            }
        }
        // Every two-byte pair after a lead byte and in ASCII context (UTF-8 sequences cut,
        // overlong, surrogates, past U+10FFFF).
        for lead in [
            0xC0u8, 0xC2, 0xDF, 0xE0, 0xE1, 0xED, 0xEF, 0xF0, 0xF1, 0xF4, 0xF5, 0xFF,
        ] {
            for second in 0..=255u8 {
                for tail in [&b""[..], b"\x80", b"\xbf", b"\x80\x80", b"\x80a", b"a"] {
                    let mut line = b"abcdefg".to_vec();
                    line.extend_from_slice(&[lead, second]);
                    line.extend_from_slice(tail);
                    same(&line);
                    same(&line[7..]);
                }
            }
        }
        let table: &[&[u8]] = &[
            b"",
            b"plain text that is longer than a few words of eight bytes",
            b"tab\there \"quoted\" back\\slash \x01 \x1f \x7f \x08\x0c\r\n",
            "non-ASCII: é 日本 😀 \u{2028} \u{10ffff}".as_bytes(),
            b"invalid \xff\xfe UTF-8 \xe6\x97",
            b"\xed\xa0\x80 surrogate, \xc0\xaf overlong, \xf4\x90\x80\x80 too high",
            b"\xf0\x9f\x98",
            b"\"\"\"\"\"\"\"\"\\\\\\\\\\\\\\\\",
        ];
        for line in table {
            same(line);
        }
        // Blocks of nothing but escapes: a scratch block at its fullest (six bytes each).
        for b in [0x01, 0x1f, b'"', b'\\', b'\n'] {
            same(&[b; 130]);
        }
        // Random lines: printable ASCII, specials, UTF-8 and stray bytes mixed, any length.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let pieces: &[&[u8]] = &[
            b"a",
            b"long ascii run ",
            b"\"",
            b"\\",
            b"\n",
            b"\x00",
            b"\x1b",
            b"\x7f",
            "é".as_bytes(),
            "日".as_bytes(),
            "😀".as_bytes(),
            b"\xff",
            b"\xe6\x97",
            b"\xf0\x9f",
            b"\x80",
        ];
        for _ in 0..20_000 {
            let n = (next() % 40) as usize;
            let line: Vec<u8> = (0..n)
                .flat_map(|_| {
                    pieces[(next() % pieces.len() as u64) as usize]
                        .iter()
                        .copied()
                })
                .collect();
            same(&line);
        }
    }

    /// A measurement, not a check of speed: ns per line of serde_json after `from_utf8_lossy`
    /// (what the sensor did before [`write_str_lossy`]) and of [`write_str_lossy`], alternated in
    /// one process, for the bench's line shapes. Run with
    /// `cargo test --release -p uplink-sources -- --ignored --nocapture one_pass_speed`.
    #[test]
    #[ignore = "a measurement; run it in release"]
    fn one_pass_speed() {
        let head = r#"{"host":"dc01.contoso.com","user":"CONTOSO\\user42","src_ip":"10.1.0.42","event_id":4624,"n":42,"msg":""#;
        let shapes = [
            (
                "298",
                format!("{head}{}\"}}", "x".repeat(298 - head.len() - 3)),
            ),
            ("plain", "x".repeat(297)),
            (
                "escaped",
                format!("{head}{}\"}}", r#"say \"hi\"\\path\tq\u0001 "#.repeat(8)),
            ),
            (
                "nonascii",
                format!("{head}{}\"}}", "Übergröße café 日本語のログ 🚀 ".repeat(4)),
            ),
        ];
        for (name, line) in &shapes {
            let bytes = line.as_bytes();
            let n = 200_000;
            let mut out = Vec::with_capacity(1024);
            let (mut old, mut new) = (f64::MAX, f64::MAX);
            for _ in 0..5 {
                let t = std::time::Instant::now();
                for _ in 0..n {
                    out.clear();
                    serde_json::to_writer(
                        &mut out,
                        &String::from_utf8_lossy(std::hint::black_box(bytes)),
                    )
                    .unwrap();
                }
                old = old.min(t.elapsed().as_nanos() as f64 / n as f64);
                let want = out.clone();
                let t = std::time::Instant::now();
                for _ in 0..n {
                    out.clear();
                    write_str_lossy(&mut out, std::hint::black_box(bytes));
                }
                new = new.min(t.elapsed().as_nanos() as f64 / n as f64);
                assert_eq!(out, want);
            }
            eprintln!(
                "{name:>8} ({} B): serde_json {old:.0} ns/line, write_str_lossy {new:.0} ns/line ({:.2}x)",
                bytes.len(),
                new / old
            );
        }
    }
}
