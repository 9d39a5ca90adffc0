//! NDJSON event batches.
//!
//! A batch is one JSON object per line. Each object carries `seq`, the sensor-assigned sequence
//! number that makes retries idempotent: the service stores each `(sensor, seq)` at most once, so
//! a batch re-sent after a lost response (or re-shaped, split, merged) never duplicates anything.
//! `kind` classifies the event (default `event`); every other field is the sensor's and is stored
//! verbatim.
//!
//! [`parse`] validates the whole batch before anything is stored, so a bad line rejects the batch
//! and nothing is half-stored; its error names the line.
//!
//! Beyond being JSON, a line must be readable by every common JSON reader once stored
//! ([`check_structure`]): arrays and objects nest at most [`MAX_DEPTH`] levels (serde_json stops
//! at 128, and a 100,000-deep line crashes recursive parsers), and every `\u` escape is valid
//! Unicode (a lone UTF-16 surrogate such as `"\ud800"` passes a lenient parser but makes `jq`
//! and strict readers abort on the whole export).

use std::fmt;

/// Longest accepted `kind`.
pub const MAX_KIND_LEN: usize = 64;
/// Largest sequence number: stores keep it in a signed 64-bit column (SQLite INTEGER, PostgreSQL BIGINT).
pub const MAX_SEQ: u64 = i64::MAX as u64;
/// The kind given to events that do not name one.
pub const DEFAULT_KIND: &str = "event";
/// Deepest nesting of arrays and objects in an event line; the line's own object is level 1.
/// Exported events sit one level deeper (inside the export line), still far below the limit of
/// any common reader (serde_json 127, jq and Go 10,000).
pub const MAX_DEPTH: usize = 64;

/// One validated event of a batch, borrowing the request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event<'a> {
    pub seq: u64,
    pub kind: std::borrow::Cow<'a, str>,
    /// The line as sent, without its newline: a JSON object.
    pub raw: &'a str,
}

/// Why a batch was refused. Line numbers start at 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("the batch is empty: send at least one event line")]
    Empty,
    #[error("the batch is not UTF-8 (first bad byte at offset {offset})")]
    NotUtf8 { offset: usize },
    #[error("line {line}: {reason}")]
    BadLine { line: usize, reason: String },
    #[error(
        "line {line}: sequence number {seq} appears twice in this batch (first on line {first})"
    )]
    DuplicateSeq { line: usize, first: usize, seq: u64 },
    #[error("the batch has {count} events; the limit is {limit}: send smaller batches")]
    TooManyEvents { count: usize, limit: usize },
}

#[derive(serde::Deserialize)]
struct Head<'a> {
    seq: Option<serde_json::Value>,
    #[serde(borrow)]
    kind: Option<std::borrow::Cow<'a, str>>,
}

/// Parses and validates a whole batch. Blank lines (and a trailing newline) are ignored.
pub fn parse(body: &[u8], max_events: usize) -> Result<Vec<Event<'_>>, BatchError> {
    let text = std::str::from_utf8(body).map_err(|e| BatchError::NotUtf8 {
        offset: e.valid_up_to(),
    })?;
    parse_str(text, max_events)
}

/// [`parse`] of a body already known to be UTF-8 (the service makes it a `String` first, to
/// keep it as the store's one buffer of the batch's events).
pub fn parse_str(text: &str, max_events: usize) -> Result<Vec<Event<'_>>, BatchError> {
    let mut events: Vec<Event<'_>> = Vec::with_capacity(text.len() / 256 + 1);
    let mut parser = BatchParser::new(max_events);
    parser.feed(text, &mut events)?;
    parser.finish()?;
    Ok(events)
}

/// [`parse_str`] a piece of the batch at a time, for a batch that is never whole in memory
/// ([`parse_zstd_frames`]): the same events, line numbers and refusals, but for
/// [`BatchError::TooManyEvents`], whose count is of the piece it was found in.
#[derive(Debug)]
pub struct BatchParser {
    max_events: usize,
    events: usize,
    line_no: usize,
    /// While the seqs increase (a sensor sends them so), none can repeat: the set of seqs seen
    /// (for the error naming a repeat's first line) is built only once one does not, from each
    /// event's seq and line so far.
    history: Vec<(u64, usize)>,
    seen: Option<std::collections::HashMap<u64, usize>>,
}

impl BatchParser {
    pub fn new(max_events: usize) -> BatchParser {
        BatchParser {
            max_events,
            events: 0,
            line_no: 0,
            history: Vec::new(),
            seen: None,
        }
    }

    /// Parses the lines of `text`, the batch's next piece, into `out`. A piece ends where a
    /// line does: after its newline, or at the end of the batch.
    pub fn feed<'t>(&mut self, text: &'t str, out: &mut Vec<Event<'t>>) -> Result<(), BatchError> {
        // Each line is scanned once (issue #28): the fast scan of an object starts at the
        // line's first byte and finds the line's end itself (a JSON line holds no raw newline),
        // so the newlines are not searched for in a pass of their own. A line it is not sure of
        // is cut at its newline and handled as `parse_line` handles it.
        let b = text.as_bytes();
        let mut start = 0;
        while start < text.len() {
            self.line_no += 1;
            let (event, end) = match scan_object(&b[start..], MAX_DEPTH, true, true) {
                Some((Some(seq), kind, len)) => {
                    let end = start + len;
                    // The line without its newline, as `lines_of` cuts it; then without one `\r`.
                    let line = &text[start..end];
                    let raw = line.strip_suffix('\r').unwrap_or(line);
                    let kind = std::borrow::Cow::Borrowed(kind.unwrap_or(DEFAULT_KIND));
                    (
                        Some(check_kind(&kind).map(|()| Event { seq, kind, raw })),
                        end,
                    )
                }
                _ => {
                    let end = memchr::memchr(b'\n', &b[start..]).map_or(text.len(), |n| start + n);
                    let line = &text[start..end];
                    let raw = line.strip_suffix('\r').unwrap_or(line);
                    // The fast scan of this line already failed: the general path answers.
                    let event = (!raw.trim().is_empty()).then(|| general_line(raw));
                    (event, end)
                }
            };
            start = end + 1;
            let Some(event) = event else {
                continue;
            };
            if self.events == self.max_events {
                let count = lines_of(text).filter(|l| !l.trim().is_empty()).count();
                return Err(BatchError::TooManyEvents {
                    count,
                    limit: self.max_events,
                });
            }
            let line = self.line_no;
            let event = event.map_err(|reason| BatchError::BadLine { line, reason })?;
            let increasing = self.history.last().is_none_or(|last| event.seq > last.0);
            if self.seen.is_none() && !increasing {
                self.seen = Some(std::mem::take(&mut self.history).into_iter().collect());
            }
            match &mut self.seen {
                Some(seen) => {
                    if let Some(first) = seen.insert(event.seq, line) {
                        return Err(BatchError::DuplicateSeq {
                            line,
                            first,
                            seq: event.seq,
                        });
                    }
                }
                None => self.history.push((event.seq, line)),
            }
            self.events += 1;
            out.push(event);
        }
        Ok(())
    }

    /// After the last piece: a batch of no event is refused.
    pub fn finish(&self) -> Result<(), BatchError> {
        match self.events {
            0 => Err(BatchError::Empty),
            _ => Ok(()),
        }
    }
}

/// Parses a zstd body as it decodes it, a frame at a time into a buffer the thread reuses, so
/// that the decoded batch is never whole in memory (issue #28): each frame's lines are checked
/// (UTF-8, then [`BatchParser`]) while the cache still holds them. A line across frames is put
/// together first. `each` gets every event and where its line lies in the decoded body.
///
/// Returns the decoded length, or `None` when the body is refused or is not for this way
/// (a frame that decodes to other than its declared size, or larger than
/// [`crate::body::MAX_FRAME`]): the caller then decodes it whole and parses it with
/// [`parse_str`], which says why it is refused. Events handed to `each` before a `None` are
/// to be dropped.
pub fn parse_zstd_frames(
    body: &[u8],
    frames: &[crate::body::Frame],
    max_events: usize,
    mut each: impl FnMut(&Event<'_>, std::ops::Range<usize>),
) -> Option<usize> {
    let mut parser = BatchParser::new(max_events);
    // Parses `text`, whose first byte is at `at` in the decoded body.
    let mut piece = |text: &[u8], at: usize| -> Option<()> {
        let text = std::str::from_utf8(text).ok()?;
        let mut events = Vec::new();
        parser.feed(text, &mut events).ok()?;
        let base = text.as_ptr() as usize;
        for e in &events {
            // A line is a piece of the text it was parsed from.
            let start = at + (e.raw.as_ptr() as usize - base);
            each(e, start..start + e.raw.len());
        }
        Some(())
    };
    // The start of a line not ended by the frames so far, and where it starts.
    let mut carry: Vec<u8> = Vec::new();
    let mut carry_at = 0;
    crate::body::for_each_frame(body, frames, |decoded, at| {
        let mut from = 0;
        if !carry.is_empty() {
            let Some(nl) = memchr::memchr(b'\n', decoded) else {
                carry.extend_from_slice(decoded);
                return Some(());
            };
            carry.extend_from_slice(&decoded[..=nl]);
            piece(&carry, carry_at)?;
            carry.clear();
            from = nl + 1;
        }
        let end = memchr::memrchr(b'\n', &decoded[from..]).map_or(from, |k| from + k + 1);
        if end > from {
            piece(&decoded[from..end], at + from)?;
        }
        carry.extend_from_slice(&decoded[end..]);
        carry_at = at + end;
        Some(())
    })?;
    if !carry.is_empty() {
        piece(&carry, carry_at)?;
    }
    parser.finish().ok()?;
    Some(frames.last().map_or(0, |f| f.decoded.end))
}

/// [`parse_str`] the plain way, a line at a time over [`lines_of`] with [`parse_line`]: what
/// `parse_str` must answer for every text (its tests and the `event_batch` fuzz target check
/// that it does). Not for other uses.
#[doc(hidden)]
pub fn parse_str_by_lines(text: &str, max_events: usize) -> Result<Vec<Event<'_>>, BatchError> {
    let mut events: Vec<Event<'_>> = Vec::new();
    let mut seen = std::collections::HashMap::new();
    for (index, line) in lines_of(text).enumerate() {
        let line_no = index + 1;
        let raw = line.strip_suffix('\r').unwrap_or(line);
        if raw.trim().is_empty() {
            continue;
        }
        if events.len() == max_events {
            let count = lines_of(text).filter(|l| !l.trim().is_empty()).count();
            return Err(BatchError::TooManyEvents {
                count,
                limit: max_events,
            });
        }
        let event = parse_line(raw).map_err(|reason| BatchError::BadLine {
            line: line_no,
            reason,
        })?;
        if let Some(first) = seen.insert(event.seq, line_no) {
            return Err(BatchError::DuplicateSeq {
                line: line_no,
                first,
                seq: event.seq,
            });
        }
        events.push(event);
    }
    if events.is_empty() {
        return Err(BatchError::Empty);
    }
    Ok(events)
}

/// `text.split('\n')`, the newlines found with `memchr` (SIMD): `str::split` searches with the
/// standard library's word-at-a-time loop, which was 3 % of the service's CPU (issue #28's flame
/// graph) for lines of ~300 bytes.
fn lines_of(text: &str) -> impl Iterator<Item = &str> {
    let mut start = 0;
    let mut ends = memchr::memchr_iter(b'\n', text.as_bytes());
    std::iter::from_fn(move || {
        let from = start;
        if from > text.len() {
            return None;
        }
        let end = ends.next().unwrap_or(text.len());
        start = end + 1;
        // Newlines are ASCII: `from` and `end` are on character boundaries.
        Some(&text[from..end])
    })
}

/// Validates one line: a JSON object with a non-negative integer `seq` and an optional string `kind`.
pub fn parse_line(raw: &str) -> Result<Event<'_>, String> {
    if let Some((seq, kind)) = fast_head(raw) {
        let kind = std::borrow::Cow::Borrowed(kind.unwrap_or(DEFAULT_KIND));
        check_kind(&kind)?;
        return Ok(Event { seq, kind, raw });
    }
    general_line(raw)
}

/// [`parse_line`] without its fast path: what it must answer for every line (the
/// `event_batch` fuzz target checks that it does). Not for other uses.
#[doc(hidden)]
pub fn parse_line_general(raw: &str) -> Result<Event<'_>, String> {
    general_line(raw)
}

/// [`parse_line`] for any line: the structure check, then serde_json.
fn general_line(raw: &str) -> Result<Event<'_>, String> {
    let trimmed = raw.trim_start();
    if !trimmed.starts_with('{') {
        return Err("not a JSON object (each line must be one object like {\"seq\":1,...})".into());
    }
    check_structure(raw)?;
    let head: Head<'_> = serde_json::from_str(raw).map_err(|e| format!("invalid JSON: {e}"))?;
    let seq = match head.seq {
        None => return Err("missing \"seq\" (the sensor-assigned sequence number)".into()),
        Some(serde_json::Value::Number(n)) => n
            .as_u64()
            .filter(|s| *s <= MAX_SEQ)
            .ok_or_else(|| format!("\"seq\" must be an integer from 0 to {MAX_SEQ}, got {n}"))?,
        Some(other) => {
            return Err(format!(
                "\"seq\" must be an integer from 0 to {MAX_SEQ}, got {other}"
            ))
        }
    };
    let kind = head
        .kind
        .unwrap_or(std::borrow::Cow::Borrowed(DEFAULT_KIND));
    check_kind(&kind)?;
    Ok(Event { seq, kind, raw })
}

/// The common line in one pass (issue #28: this and the two passes it replaces were a tenth of
/// the service's CPU per event): a strict JSON validator of the whole line that also reads the
/// top-level `seq` and `kind`, without allocating. It answers only for lines it is sure of —
/// valid JSON, nesting within [`MAX_DEPTH`], every `\u` escape a character (a UTF-16
/// surrogate only as a high-low pair), no escape in a top-level key or the kind, `seq` a plain
/// integer up to [`MAX_SEQ`] and each of `seq` and `kind` at most once — and `None` for
/// anything else, which [`parse_line`]'s general path then accepts or refuses with its message. So what is accepted, and every error, is the general path's;
/// `fast_head_agrees_with_the_general_path` checks it on a table of lines.
fn fast_head(raw: &str) -> Option<(u64, Option<&str>)> {
    let (seq, kind, _) = scan_object(raw.as_bytes(), MAX_DEPTH, true, false)?;
    Some((seq?, kind))
}

/// Whether `raw` is, for sure, one JSON object every reader of stored events takes: valid JSON,
/// nesting at most `max_depth` levels (the object itself is level 1), every `\u` escape a
/// character (a UTF-16 surrogate only as a high-low pair), nothing around it but JSON
/// whitespace after it. `false` when the fast scan is not sure: serde_json and
/// [`check_structure`] then decide. The sensor asks it before shipping a line of a
/// `format = "json"` file as it is (issue #28: the slow way was most of the sensor's CPU per
/// line with escape-heavy lines).
///
/// `max_depth` above [`MAX_DEPTH`] counts as [`MAX_DEPTH`] (the scan keeps its containers' kinds
/// in one bit each of a `u64`).
pub fn is_plain_object(raw: &str, max_depth: usize) -> bool {
    scan_object(raw.as_bytes(), max_depth.min(MAX_DEPTH), false, false).is_some()
}

/// [`fast_head`]'s scan: with `head`, also the top-level `seq` and `kind` (and `None` for what
/// the general path must see: an escaped top-level key, a `seq` that is not a plain integer, a
/// `kind` with escapes, either twice); and where the scan ended.
///
/// Without `line`, the object is all of `b` (whitespace around it aside) and the scan ends at
/// `b.len()`. With `line`, `b` is a line and what follows it ([`parse_str`]): a newline is then
/// not whitespace but the line's end, and the scan ends at the first newline after the object
/// (or at `b.len()`), with only spaces, tabs and `\r` between. A line holds no newline, so on
/// a line both ways answer alike.
fn scan_object(
    b: &[u8],
    max_depth: usize,
    head: bool,
    line: bool,
) -> Option<(Option<u64>, Option<&str>, usize)> {
    /// What may come next.
    #[derive(Clone, Copy)]
    enum Want {
        KeyOrClose,
        Key,
        ValueOrClose,
        Value,
        CommaOrClose,
    }
    if b.first() != Some(&b'{') {
        return None;
    }
    let space = |c: Option<&u8>| match c {
        Some(b' ' | b'\t' | b'\r') => true,
        Some(b'\n') => !line,
        _ => false,
    };
    // Bit d set: the container at depth d + 1 is an object (else an array).
    let mut objects: u64 = 1;
    let mut depth = 1usize;
    let (mut seq, mut kind) = (None, None);
    // The top-level key whose value comes next: `seq`, `kind` or another.
    let (mut is_seq, mut is_kind) = (false, false);
    let mut want = Want::KeyOrClose;
    let mut i = 1;
    loop {
        while space(b.get(i)) {
            i += 1;
        }
        let c = *b.get(i)?;
        let close = match want {
            Want::KeyOrClose | Want::ValueOrClose | Want::CommaOrClose
                if c == b'}' || c == b']' =>
            {
                let in_object = objects >> (depth - 1) & 1 == 1;
                if (c == b'}') != in_object {
                    return None;
                }
                true
            }
            _ => false,
        };
        if close {
            i += 1;
            depth -= 1;
            if depth == 0 {
                while space(b.get(i)) {
                    i += 1;
                }
                return (i == b.len() || line && b[i] == b'\n').then_some((seq, kind, i));
            }
            want = Want::CommaOrClose;
            continue;
        }
        match want {
            Want::KeyOrClose | Want::Key => {
                if c != b'"' {
                    return None;
                }
                let (end, escaped) = string_end(b, i + 1)?;
                if depth == 1 && head {
                    // An escaped top-level key might spell `seq` or `kind`.
                    if escaped {
                        return None;
                    }
                    is_seq = &b[i + 1..end] == b"seq";
                    is_kind = &b[i + 1..end] == b"kind";
                }
                i = end + 1;
                while space(b.get(i)) {
                    i += 1;
                }
                if b.get(i)? != &b':' {
                    return None;
                }
                i += 1;
                want = Want::Value;
            }
            Want::ValueOrClose | Want::Value => {
                if depth == 1 && (is_seq || is_kind) {
                    i = top_value(b, i, is_seq, &mut seq, &mut kind)?;
                    want = Want::CommaOrClose;
                } else if c == b'{' || c == b'[' {
                    if depth >= max_depth {
                        return None;
                    }
                    if c == b'{' {
                        objects |= 1 << depth;
                        want = Want::KeyOrClose;
                    } else {
                        objects &= !(1 << depth);
                        want = Want::ValueOrClose;
                    }
                    depth += 1;
                    i += 1;
                } else {
                    i = scalar_end(b, i)?;
                    want = Want::CommaOrClose;
                }
            }
            Want::CommaOrClose => {
                if c != b',' {
                    return None;
                }
                i += 1;
                want = if objects >> (depth - 1) & 1 == 1 {
                    Want::Key
                } else {
                    Want::Value
                };
            }
        }
    }
}

/// The value of a top-level `seq` (a plain integer) or `kind` (a string without escapes), each
/// at most once; the index after it.
fn top_value<'a>(
    b: &'a [u8],
    i: usize,
    is_seq: bool,
    seq: &mut Option<u64>,
    kind: &mut Option<&'a str>,
) -> Option<usize> {
    if is_seq {
        if seq.is_some() {
            return None;
        }
        let end = scalar_end(b, i)?;
        let digits = &b[i..end];
        if !digits.iter().all(u8::is_ascii_digit) || digits.len() > 19 {
            return None;
        }
        let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
        *seq = Some(n).filter(|n| *n <= MAX_SEQ);
        seq.map(|_| end)
    } else {
        if kind.is_some() || b.get(i)? != &b'"' {
            return None;
        }
        let (end, escaped) = string_end(b, i + 1)?;
        if escaped {
            return None;
        }
        *kind = Some(std::str::from_utf8(&b[i + 1..end]).ok()?);
        Some(end + 1)
    }
}

/// The end of a string whose text starts at `i`: the index of its closing quote, and whether
/// it has escapes. `None` for a control character, an unknown escape, a `\u` without four hex
/// digits, or a `\u` UTF-16 surrogate that is not a high one followed by a low one (the general
/// path then refuses the line with its message).
///
/// Two speeds (issue #28). Keys and short values, most strings of an event, end within their
/// first [`SHORT_WORDS`] words of eight bytes, each special byte of a word handled in that word.
/// Longer strings (the message or log line that is most of an event's bytes) go on in blocks of
/// 64 ([`string_end_blocks`]), with no work per escape at all: a log line carried as a JSON string
/// has an escape every few bytes (`\"`, `\\`), and handling them one by one cost the service more
/// than the rest of the event.
fn string_end(b: &[u8], i: usize) -> Option<(usize, bool)> {
    let mut escaped = false;
    // The first byte not yet accounted for (after an escape, past its last byte, which may be
    // in a later word).
    let mut next = i;
    let mut at = i;
    for _ in 0..SHORT_WORDS {
        let Some(chunk) = b.get(at..at + 8) else {
            // Fewer than eight bytes left: a byte at a time.
            let mut p = next.max(at);
            loop {
                match *b.get(p)? {
                    b'"' => return Some((p, escaped)),
                    b'\\' => {
                        p = escape_end(b, p)?;
                        escaped = true;
                    }
                    0..=0x1f => return None,
                    _ => p += 1,
                }
            }
        };
        let mut word = hits(u64::from_le_bytes(chunk.try_into().ok()?));
        while word != 0 {
            let p = at + word.trailing_zeros() as usize / 8;
            word &= word - 1;
            if p < next {
                continue;
            }
            match b[p] {
                b'"' => return Some((p, escaped)),
                b'\\' => {
                    next = escape_end(b, p)?;
                    escaped = true;
                }
                0..=0x1f => return None, // a control character
                _ => {}                  // not special: a false hit after a true one
            }
        }
        at += 8;
    }
    string_end_blocks(b, next.max(at), escaped)
}

/// Words [`string_end`] scans before it goes on in blocks: 16 bytes hold most keys and short
/// values, for which a block of 64 would cost more than the words.
const SHORT_WORDS: usize = 2;

/// [`string_end`] from `at`, which is not inside an escape, 64 bytes at a time: the block's
/// quotes, backslashes and control characters as bitmasks ([`uplink_bytescan`]), the escaped
/// bytes from the backslashes' runs ([`escaping`]), and the string's end is the lowest quote
/// not escaped. Only a block with escapes before that end checks what they escape, and only a
/// `\u` escape is looked at on its own. The last block is the last 64 bytes of `b`, shifted (or
/// for a shorter `b`, padded with spaces): a string not closed by the end of `b` finds no end.
fn string_end_blocks(b: &[u8], mut at: usize, mut escaped: bool) -> Option<(usize, bool)> {
    // The first byte of the block is escaped by the last backslash of the one before.
    let mut carry = 0;
    // The `u` of a low surrogate's `\u` already checked with its high one.
    let mut low_u = usize::MAX;
    loop {
        let rest = b.get(at..).filter(|rest| !rest.is_empty())?;
        // The block, and how many of its first bytes come before `at`: the last block of a
        // string is the last 64 bytes of `b`, its bits shifted down to start at `at` (bits
        // past the end are then 0: bytes of no class).
        let (block, shift) = match (rest.first_chunk(), b.last_chunk()) {
            (Some(block), _) => (*block, 0),
            (None, Some(last)) => (*last, at - (b.len() - 64)),
            (None, None) => {
                let mut block = [b' '; 64];
                block[..rest.len()].copy_from_slice(rest);
                (block, 0)
            }
        };
        let mut m = uplink_bytescan::specials(&block);
        if m == uplink_bytescan::Specials::default() && carry == 0 && shift == 0 {
            // A block of plain text: likely a long run (a log line's text, most of a batch's
            // bytes). `memchr2` (32 bytes a compare with AVX2, where the CPU has it) goes to the
            // next quote or backslash, and one vectorised pass checks what it passed for control
            // characters; the blocks go on from there.
            let rest = b.get(at + 64..)?;
            let k = memchr::memchr2(b'"', b'\\', rest)?;
            if rest[..k].iter().fold(0xff_u8, |m, &c| m.min(c)) < 0x20 {
                return None; // a control character
            }
            at += 64 + k;
            continue;
        }
        m.quote >>= shift;
        m.backslash >>= shift;
        m.control >>= shift;
        let escaping = escaping(m.backslash & !carry);
        let esc = escaping << 1 | carry;
        let ends = m.quote & !esc;
        // The bytes before the first end: all of them without one.
        let before = ends.wrapping_sub(1) & !ends;
        if m.control & before != 0 {
            return None;
        }
        let esc = esc & before;
        if esc != 0 {
            escaped = true;
            let letters = uplink_bytescan::any_of(&block, *b"\"\\/bfnrtu") >> shift;
            if esc & !letters != 0 {
                return None;
            }
            let mut u = esc & uplink_bytescan::any_of(&block, [b'u']) >> shift;
            while u != 0 {
                let p = at + u.trailing_zeros() as usize;
                u &= u - 1;
                if p != low_u {
                    // The backslash is at `p - 1`.
                    if escape_end(b, p - 1)? == p + 11 {
                        low_u = p + 6;
                    }
                }
            }
        }
        if ends != 0 {
            return Some((at + ends.trailing_zeros() as usize, escaped));
        }
        if rest.len() <= 64 {
            return None;
        }
        carry = escaping >> 63;
        at += 64;
    }
}

/// The backslashes of `backslash` (one bit per byte) that escape the byte after them: in a run
/// of backslashes, the first, the third, the fifth… (`\\\\\"` is two escaped backslashes and a
/// quote that ends the string). A run that starts on an even bit escapes with its even bits,
/// one that starts on an odd bit with its odd bits.
fn escaping(backslash: u64) -> u64 {
    const EVEN: u64 = 0x5555_5555_5555_5555;
    let starts = backslash & !(backslash << 1);
    // Adding a run's first bit to it clears the whole run (the carry runs through it to the
    // byte after): the runs that start on an odd bit are the bits this sum clears.
    let odd_runs = backslash & !backslash.wrapping_add(starts & !EVEN);
    (odd_runs & !EVEN) | (backslash & !odd_runs & EVEN)
}

/// The index after the escape whose backslash is at `p`: `None` for an unknown escape, a `\u`
/// without four hex digits, or a UTF-16 surrogate that is not a high one (`\uD800`-`\uDBFF`)
/// followed at once by a low one (`\uDC00`-`\uDFFF`), the pair then one escape of 12 bytes.
fn escape_end(b: &[u8], p: usize) -> Option<usize> {
    match *b.get(p + 1)? {
        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(p + 2),
        b'u' => match hex4(b, p + 2)? {
            0xD800..=0xDBFF => {
                let low = (b.get(p + 6..p + 8)? == b"\\u").then(|| hex4(b, p + 8))??;
                (0xDC00..=0xDFFF).contains(&low).then_some(p + 12)
            }
            0xDC00..=0xDFFF => None,
            _ => Some(p + 6),
        },
        _ => None,
    }
}

/// The high bit of each byte of `w` (little-endian) that is `"`, `\` or below 0x20: exact up
/// to the first such byte; after it, a borrow can also mark a byte that is none of these
/// (e.g. `]` after `\`), never miss one that is.
fn hits(w: u64) -> u64 {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let quote = w ^ (ONES * u64::from(b'"'));
    let backslash = w ^ (ONES * u64::from(b'\\'));
    (quote.wrapping_sub(ONES) & !quote
        | backslash.wrapping_sub(ONES) & !backslash
        | w.wrapping_sub(ONES * 0x20) & !w)
        & HIGH
}

/// The index of the first `"`, `\` or control character (below 0x20) in `s`, eight bytes at a
/// time with [`hits`]: how its test checks that `hits` is exact up to a word's first hit.
#[cfg(test)]
fn special(s: &[u8]) -> Option<usize> {
    let mut at = 0;
    while let Some(chunk) = s.get(at..at + 8) {
        let hits = hits(u64::from_le_bytes(chunk.try_into().ok()?));
        if hits != 0 {
            return Some(at + hits.trailing_zeros() as usize / 8);
        }
        at += 8;
    }
    s[at..]
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
        .map(|p| at + p)
}

/// The end of a scalar at `i` (string, number, `true`, `false`, `null`), checked strictly.
fn scalar_end(b: &[u8], i: usize) -> Option<usize> {
    match b.get(i)? {
        b'"' => string_end(b, i + 1).map(|(end, _)| end + 1),
        b't' => b[i..].starts_with(b"true").then_some(i + 4),
        b'f' => b[i..].starts_with(b"false").then_some(i + 5),
        b'n' => b[i..].starts_with(b"null").then_some(i + 4),
        _ => number_end(b, i),
    }
}

/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?` at `i`.
fn number_end(b: &[u8], mut i: usize) -> Option<usize> {
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i > start
    };
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    match b.get(i)? {
        b'0' => i += 1,
        b'1'..=b'9' => {
            digits(&mut i);
        }
        _ => return None,
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if !digits(&mut i) {
            return None;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !digits(&mut i) {
            return None;
        }
    }
    Some(i)
}

/// Checks what a lenient JSON parser lets through but readers of the stored events would choke
/// on: nesting deeper than [`MAX_DEPTH`], and `\u` escapes that are not valid Unicode (a high
/// surrogate `\uD800`-`\uDBFF` not followed by a low one `\uDC00`-`\uDFFF`, or a low one alone).
///
/// One pass over the bytes, no allocation, no recursion. It does not check that the line is JSON
/// (the parser does); on malformed input it stops quietly and leaves the verdict to the parser.
pub fn check_structure(raw: &str) -> Result<(), String> {
    let b = raw.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    let mut in_string = false;
    while i < b.len() {
        let c = b[i];
        if !in_string {
            match c {
                b'{' | b'[' => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err(format!(
                            "arrays and objects nest deeper than {MAX_DEPTH} levels (at byte {}): flatten the event; deeper nesting breaks common JSON readers",
                            i + 1
                        ));
                    }
                }
                b'}' | b']' => depth = depth.saturating_sub(1),
                b'"' => in_string = true,
                _ => {}
            }
            i += 1;
            continue;
        }
        match c {
            b'"' => {
                in_string = false;
                i += 1;
            }
            b'\\' if b.get(i + 1) == Some(&b'u') => {
                let Some(unit) = hex4(b, i + 2) else {
                    return Ok(()); // malformed escape: the parser reports it
                };
                let lone = |at: usize| {
                    format!(
                        "the escape {} at byte {} is a lone UTF-16 surrogate, which is not Unicode and makes strict JSON readers (jq) reject the export: send the character itself, or a high surrogate \\uD800-\\uDBFF followed by a low one \\uDC00-\\uDFFF",
                        &raw[at..at + 6],
                        at + 1
                    )
                };
                match unit {
                    0xD800..=0xDBFF => {
                        let low = (b.get(i + 6) == Some(&b'\\') && b.get(i + 7) == Some(&b'u'))
                            .then(|| hex4(b, i + 8))
                            .flatten();
                        if !matches!(low, Some(0xDC00..=0xDFFF)) {
                            return Err(lone(i));
                        }
                        i += 12;
                    }
                    0xDC00..=0xDFFF => return Err(lone(i)),
                    _ => i += 6,
                }
            }
            // Any other escape is two bytes; the parser checks which ones are allowed.
            b'\\' => i += 2,
            // The bulk of an event is string text: on to its next quote or escape at once.
            _ => i += memchr::memchr2(b'"', b'\\', &b[i..]).unwrap_or(b.len() - i),
        }
    }
    Ok(())
}

/// The value of four hex digits at `at`, if they are there.
fn hex4(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 4)?.iter().try_fold(0, |v, &c| {
        let digit = char::from(c).to_digit(16)?;
        Some(v << 4 | digit as u16)
    })
}

/// A kind is 1 to 64 characters of letters, digits, `_`, `-`, `.` or `:`.
pub fn check_kind(kind: &str) -> Result<(), String> {
    if kind.is_empty() || kind.len() > MAX_KIND_LEN {
        return Err(format!(
            "\"kind\" must be 1 to {MAX_KIND_LEN} characters, got {} characters",
            kind.len()
        ));
    }
    if let Some(c) = kind
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')))
    {
        return Err(format!(
            "\"kind\" {kind:?} has the character {c:?}; use letters, digits, _ - . :"
        ));
    }
    Ok(())
}

/// Writes one event line (with its newline) for a batch: `{"seq":N,"kind":K,...fields}`.
///
/// `fields` is the sensor's JSON object; its own `seq` is overwritten so that the sequence number
/// always comes from the queue.
pub fn encode_line(
    out: &mut Vec<u8>,
    seq: u64,
    kind: &str,
    fields: &serde_json::Map<String, serde_json::Value>,
) {
    use std::io::Write;
    let _ = write!(out, "{{\"seq\":{seq},\"kind\":");
    serde_json::to_writer(&mut *out, kind).expect("writing to a Vec cannot fail");
    for (k, v) in fields {
        if k == "seq" || k == "kind" {
            continue;
        }
        out.push(b',');
        serde_json::to_writer(&mut *out, k).expect("writing to a Vec cannot fail");
        out.push(b':');
        serde_json::to_writer(&mut *out, v).expect("writing to a Vec cannot fail");
    }
    out.extend_from_slice(b"}\n");
}

impl fmt::Display for Event<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_splits_as_str_split_does() {
        let long = format!("{}\n{}", "a".repeat(100), "é".repeat(70));
        // Several newlines per SIMD block, some adjacent, past 64 bytes.
        let many = format!("{}\n\n{}", "ab\n".repeat(50), "\n".repeat(70));
        for text in [
            "",
            "\n",
            "\n\n",
            "a",
            "a\n",
            "\na",
            "a\nb",
            "a\r\nb\r\n",
            "é\n\nü\n",
            long.as_str(),
            many.as_str(),
        ] {
            let ours: Vec<&str> = lines_of(text).collect();
            let std: Vec<&str> = text.split('\n').collect();
            assert_eq!(ours, std, "{text:?}");
        }
    }

    #[test]
    fn valid_batches() {
        let cases: &[(&str, &[(u64, &str)])] = &[
            ("{\"seq\":1}\n", &[(1, "event")]),
            (
                "{\"seq\":1,\"kind\":\"heartbeat\"}\n{\"seq\":2,\"x\":[1,2]}",
                &[(1, "heartbeat"), (2, "event")],
            ),
            ("\n\n{\"seq\":0}\r\n\n", &[(0, "event")]),
            (
                "{\"kind\":\"a.b:c-d_e\",\"seq\":9223372036854775807}",
                &[(MAX_SEQ, "a.b:c-d_e")],
            ),
            ("{\"seq\":7,\"kind\":\"ev\\u0065nt\"}", &[(7, "event")]),
        ];
        for (body, want) in cases {
            assert_eq!(
                parse_str(body, 100),
                parse_str_by_lines(body, 100),
                "{body:?}"
            );
            let got = parse(body.as_bytes(), 100).unwrap_or_else(|e| panic!("{body:?}: {e}"));
            let got: Vec<(u64, &str)> = got.iter().map(|e| (e.seq, &*e.kind)).collect();
            assert_eq!(&got, want, "{body:?}");
        }
    }

    #[test]
    fn invalid_batches_name_the_line() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "empty"),
            (b"\n \n", "empty"),
            (b"{\"seq\":1}\nnot json\n", "line 2: not a JSON object"),
            (
                b"{\"seq\":1}\n{\"seq\":1}",
                "line 2: sequence number 1 appears twice",
            ),
            (b"{\"x\":1}", "line 1: missing \"seq\""),
            (
                b"{\"seq\":-1}",
                "line 1: \"seq\" must be an integer from 0 to 9223372036854775807, got -1",
            ),
            (b"{\"seq\":1.5}", "got 1.5"),
            (b"{\"seq\":\"1\"}", "got \"1\""),
            (b"{\"seq\":9223372036854775808}", "got 9223372036854775808"),
            (b"{\"seq\":1,\"kind\":\"\"}", "\"kind\" must be 1 to 64"),
            (b"{\"seq\":1,\"kind\":\"a b\"}", "has the character ' '"),
            (b"{\"seq\":1,\"kind\":3}", "line 1: invalid JSON"),
            (b"{\"seq\":1", "line 1: invalid JSON"),
            (b"[1,2]", "not a JSON object"),
            (b"{\"seq\":1}\xff", "not UTF-8 (first bad byte at offset 9)"),
            (b"{\"seq\":1}{\"seq\":2}", "line 1: invalid JSON"),
            (
                b"{\"seq\":1}\n{\"seq\":2}\r\n \n{\"seq\":3}",
                "the batch has 3 events; the limit is 2",
            ),
            (
                b"{\"seq\":1}\n{\"seq\":2}\n[3]",
                "the batch has 3 events; the limit is 2",
            ),
        ];
        for (body, want) in cases {
            if let Ok(text) = std::str::from_utf8(body) {
                assert_eq!(parse_str(text, 2), parse_str_by_lines(text, 2), "{text:?}");
            }
            let err = parse(body, 2)
                .expect_err(&String::from_utf8_lossy(body))
                .to_string();
            assert!(
                err.contains(want),
                "{:?}: got {err:?}, want {want:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn structure_readers_choke_on() {
        let nest = |n: usize| {
            format!(
                "{{\"seq\":1,\"x\":{}1{}}}",
                "[".repeat(n - 1),
                "]".repeat(n - 1)
            )
        };
        let deep_objects = |n: usize| {
            format!(
                "{{\"seq\":1{}}}",
                ",\"a\":{".repeat(n - 1) + &"}".repeat(n - 1)
            )
        };
        // (line, Ok or the words the error must contain)
        let cases: Vec<(String, Result<(), &str>)> = vec![
            (nest(MAX_DEPTH), Ok(())),
            (deep_objects(MAX_DEPTH), Ok(())),
            (nest(MAX_DEPTH + 1), Err("nest deeper than 64 levels")),
            (
                deep_objects(MAX_DEPTH + 1),
                Err("nest deeper than 64 levels"),
            ),
            (
                nest(100_000),
                Err("nest deeper than 64 levels (at byte 77)"),
            ),
            // Brackets inside strings are text, not nesting.
            (
                format!("{{\"seq\":1,\"s\":\"{}\"}}", "[{".repeat(500)),
                Ok(()),
            ),
            (
                format!("{{\"seq\":1,\"s\":\"\\\"{}\"}}", "[".repeat(500)),
                Ok(()),
            ),
            // A valid pair, BMP escapes, escaped backslashes before a u.
            (
                r#"{"seq":1,"s":"\ud83d\ude00 \u00e9 \uD83D\uDE00"}"#.into(),
                Ok(()),
            ),
            (r#"{"seq":1,"s":"\\ud800"}"#.into(), Ok(())),
            (r#"{"seq":1,"s":"\\\\ud800"}"#.into(), Ok(())),
            (
                r#"{"seq":1,"s":"\ud800"}"#.into(),
                Err("the escape \\ud800 at byte 15 is a lone UTF-16 surrogate"),
            ),
            (
                r#"{"seq":1,"s":"\uDBFFx"}"#.into(),
                Err("\\uDBFF at byte 15 is a lone"),
            ),
            (
                r#"{"seq":1,"s":"\ud800\ud800"}"#.into(),
                Err("\\ud800 at byte 15 is a lone"),
            ),
            (
                r#"{"seq":1,"s":"\ud800\n"}"#.into(),
                Err("lone UTF-16 surrogate"),
            ),
            (
                r#"{"seq":1,"s":"\udc00"}"#.into(),
                Err("\\udc00 at byte 15 is a lone"),
            ),
            (
                r#"{"seq":1,"s":"\ud83d\ude00\ude00"}"#.into(),
                Err("\\ude00 at byte 27 is a lone"),
            ),
            (
                r#"{"seq":1,"\ud800":1}"#.into(),
                Err("lone UTF-16 surrogate"),
            ),
            (
                r#"{"seq":1,"s":"\ud800"#.into(),
                Err("lone UTF-16 surrogate"),
            ),
            // Long string text (skipped to its next quote or escape at once), non-ASCII text,
            // and what follows the string still counted.
            (
                format!("{{\"seq\":1,\"s\":\"{}\\ud800\"}}", "é日x".repeat(400)),
                Err("lone UTF-16 surrogate"),
            ),
            (
                format!(
                    "{{\"seq\":1,\"s\":\"{}\\\"{}\",\"x\":{}1{}}}",
                    "ü".repeat(300),
                    "[".repeat(300),
                    "[".repeat(MAX_DEPTH - 1),
                    "]".repeat(MAX_DEPTH - 1)
                ),
                Ok(()),
            ),
            // Malformed escapes are left to the parser.
            (r#"{"seq":1,"s":"\u12"}"#.into(), Ok(())),
            (
                r#"{"seq":1,"s":"\ud800\u12"}"#.into(),
                Err("lone UTF-16 surrogate"),
            ),
        ];
        for (line, want) in &cases {
            let got = check_structure(line);
            match (want, &got) {
                (Ok(()), Ok(())) => {}
                (Err(words), Err(e)) if e.contains(words) => {}
                _ => panic!("{:.120}: got {got:?}, want {want:?}", line),
            }
        }
    }

    #[test]
    fn batches_with_unreadable_lines_are_refused_naming_the_line() {
        let deep = format!("{{\"seq\":3,\"x\":{}{}}}", "[".repeat(65), "]".repeat(65));
        let cases: Vec<(String, &str)> = vec![
            (
                format!("{{\"seq\":1}}\n{{\"seq\":2}}\n{deep}\n"),
                "line 3: arrays and objects nest deeper than 64 levels",
            ),
            (
                "{\"seq\":1}\n\n{\"seq\":2,\"s\":\"\\ud800\"}\n".into(),
                "line 3: the escape \\ud800 at byte 15 is a lone UTF-16 surrogate",
            ),
            (
                "{\"seq\":1,\"kind\":\"a\\udc00\"}".into(),
                "line 1: the escape \\udc00",
            ),
        ];
        for (body, want) in &cases {
            let err = parse(body.as_bytes(), 100).unwrap_err().to_string();
            assert!(err.starts_with(want), "{:.80}: got {err:?}", body);
        }
    }

    /// What the service stores, serde_json (the strictest common reader) reads back, also inside
    /// an export line (one level deeper), and lenient parsing alone did not guarantee either.
    #[test]
    fn accepted_lines_are_readable_by_serde_json_and_refused_ones_were_not_refused_by_it() {
        let at_limit = format!(
            "{{\"seq\":1,\"x\":{}1{}}}",
            "[".repeat(MAX_DEPTH - 1),
            "]".repeat(MAX_DEPTH - 1)
        );
        let event = parse_line(&at_limit).unwrap();
        let export_line = format!("{{\"sensor_id\":\"s\",\"event\":{}}}", event.raw);
        serde_json::from_str::<serde_json::Value>(&export_line).unwrap();
        // The lenient head parse alone accepted both of these.
        for bad in [
            format!(
                "{{\"seq\":1,\"x\":{}{}}}",
                "[".repeat(100_000),
                "]".repeat(100_000)
            ),
            r#"{"seq":1,"s":"\ud800"}"#.to_owned(),
        ] {
            assert!(serde_json::from_str::<Head<'_>>(&bad).is_ok());
            assert!(parse_line(&bad).is_err());
        }
    }

    /// The fast path answers the common lines, and wherever it answers, exactly as the general
    /// path does (the same seq and kind, the same refusal of a bad kind); everything else is
    /// left to the general path. Checked on a table, then on every one-byte change and every
    /// truncation of a few lines.
    #[test]
    fn fast_head_agrees_with_the_general_path() {
        let bench = r#"{"host":"dc01.contoso.com","user":"CONTOSO\\user1","src_ip":"10.1.0.1","event_id":4624,"n":1,"msg":"xxxxxxxx"}"#;
        let fast: Vec<String> = vec![
            r#"{"seq":1}"#.into(),
            r#"{"seq":0,"kind":"log"}"#.into(),
            r#"{"kind":"a.b:c-d_e","seq":9223372036854775807}"#.into(),
            format!(r#"{{"seq":5,"kind":"log",{}"#, &bench[1..]),
            r#"{ "seq" : 7 , "kind" : "x" , "a" : [ 1 , -2.5e+3 , 0 , true , false , null , { } , [ ] ] }"#.into(),
            "{\t\"seq\":8,\"s\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\",\"o\":{\"seq\":\"nested is not the seq\",\"kind\":3}}\r".into(),
            r#"{"seq":9,"x":[[[[{"a":[{}]}]]]],"y":-0,"z":1E5,"w":0.5e-7}"#.into(),
            r#"{"seq":10,"é日":"é日 ü"}"#.into(),
            r#"{"seq":11,"kind":"bad kind"}"#.into(),
            r#"{"seq":12,"kind":""}"#.into(),
            r#"{"seq":14,"s":"\u00e9 \ud83d\ude00 \uDBFF\uDFFF \u0000"}"#.into(),
            // The bench's escaped shape as a text event carries it: escapes across blocks.
            format!(
                r#"{{"seq":15,"kind":"log","line":"{}","offset":0}}"#,
                r#"say \\\"hi\\\"\\\\path\\tq\\u0001 "#.repeat(8)
            ),
            // A pair across a block's edge, and escapes at the edges.
            format!(r#"{{"seq":16,"s":"{}\ud83d\ude00{}\\\""}}"#, "x".repeat(75), "y".repeat(49)),
            r#"{"seq":13,"a":1,"a":2}"#.into(),
            format!(
                "{{\"seq\":1,\"x\":{}1{}}}",
                "[".repeat(MAX_DEPTH - 1),
                "]".repeat(MAX_DEPTH - 1)
            ),
        ];
        let general_only: Vec<String> = vec![
            r#"{"x":1}"#.into(),
            r#"{"seq":1,"seq":2}"#.into(),
            r#"{"seq":1,"kind":"a","kind":"b"}"#.into(),
            r#"{"s\u0065q":1}"#.into(),
            r#"{"seq":1,"s":"\ud800"}"#.into(),
            // A lone surrogate in a long string (its blocks), and one after a pair.
            format!(
                r#"{{"seq":1,"s":"{}\udc00 x"}}"#,
                r#"say \"hi\"\\p"#.repeat(9)
            ),
            format!(r#"{{"seq":1,"s":"{}\ud83d\ude00\udc00"}}"#, "x".repeat(75)),
            r#"{"seq":1,"kind":"ev\u0065nt"}"#.into(),
            r#"{"seq":1,"kind":"a\/b"}"#.into(),
            r#"{"seq":-1}"#.into(),
            r#"{"seq":01}"#.into(),
            r#"{"seq":1.0}"#.into(),
            r#"{"seq":1e3}"#.into(),
            r#"{"seq":"1"}"#.into(),
            r#"{"seq":null}"#.into(),
            r#"{"seq":1,"kind":null}"#.into(),
            r#"{"seq":1,"kind":3}"#.into(),
            r#"{"seq":9223372036854775808}"#.into(),
            r#"{"seq":99999999999999999999}"#.into(),
            r#"{"seq":1,}"#.into(),
            r#"{"seq":1,"a":[1,]}"#.into(),
            r#"{"seq":1,"a":[1}"#.into(),
            r#"{"seq":1,"a":{"b"}}"#.into(),
            r#"{"seq":1,"a":tru}"#.into(),
            r#"{"seq":1,"a":.5}"#.into(),
            r#"{"seq":1,"a":1.}"#.into(),
            r#"{"seq":1,"a":1e}"#.into(),
            r#"{"seq":1,"a":+1}"#.into(),
            r#"{"seq":1,"a":"\x"}"#.into(),
            "{\"seq\":1,\"a\":\"tab\there\"}".into(),
            r#"{"seq":1}{"seq":2}"#.into(),
            r#"{"seq":1} x"#.into(),
            r#" {"seq":1}"#.into(),
            r#"{"seq":1"#.into(),
            "[1,2]".into(),
            format!(
                "{{\"seq\":1,\"x\":{}1{}}}",
                "[".repeat(MAX_DEPTH),
                "]".repeat(MAX_DEPTH)
            ),
        ];
        // Each line alone, and within batches: `parse_str` (one scan per line, finding its
        // end) against the plain way, line by line.
        let agree = |line: &str| {
            let (got, want) = (parse_line(line), general_line(line));
            assert_eq!(got, want, "{line:.120}");
            for text in [
                line.to_owned(),
                format!("{line}\n{{\"seq\":99}}\r\n"),
                format!("{{\"seq\":99}}\n{line} \t\r\r\n\n"),
            ] {
                assert_eq!(
                    parse_str(&text, 100),
                    parse_str_by_lines(&text, 100),
                    "{text:.120}"
                );
            }
        };
        for line in &fast {
            assert!(
                fast_head(line).is_some(),
                "the fast path answers {line:.120}"
            );
            agree(line);
        }
        for line in &general_only {
            assert!(
                fast_head(line).is_none(),
                "left to the general path: {line:.120}"
            );
            agree(line);
        }
        // Every one-byte change and truncation of ASCII lines.
        let subs = b"{}[]\":,\\0-1e.E+ \tuxnt/\x01";
        for line in fast.iter().chain(&general_only).filter(|l| l.is_ascii()) {
            for at in 0..line.len() {
                agree(&line[..at]);
                for &c in subs {
                    let mut bytes = line.clone().into_bytes();
                    bytes[at] = c;
                    agree(std::str::from_utf8(&bytes).unwrap());
                }
            }
        }
    }

    /// Every run of backslashes, at every offset and across the top bit: its first, third…
    /// escape.
    #[test]
    fn escaping_backslashes_are_every_other_one_of_a_run() {
        let naive = |b: u64| {
            let (mut out, mut after_escaping) = (0, false);
            for k in 0..64 {
                let here = b >> k & 1 == 1;
                if here && !after_escaping {
                    out |= 1 << k;
                    after_escaping = true;
                } else {
                    after_escaping = false;
                }
            }
            out
        };
        for pattern in 0..1u64 << 16 {
            for shift in [0, 1, 7, 24, 47, 48, 55] {
                let b = pattern << shift;
                assert_eq!(escaping(b), naive(b), "{b:#066b}");
                let b = pattern << shift | pattern.rotate_right(3) << 40;
                assert_eq!(escaping(b), naive(b), "{b:#066b}");
            }
        }
        assert_eq!(escaping(!0), naive(!0));
        assert_eq!(escaping(0b0111_0110), 0b0101_0010);
    }

    /// A byte at a time: what [`string_end`] must answer.
    fn string_end_bytewise(b: &[u8], mut p: usize) -> Option<(usize, bool)> {
        let mut escaped = false;
        loop {
            match *b.get(p)? {
                b'"' => return Some((p, escaped)),
                b'\\' => {
                    escaped = true;
                    let c = *b.get(p + 1)?;
                    if b"\"\\/bfnrt".contains(&c) {
                        p += 2;
                        continue;
                    }
                    if c != b'u' {
                        return None;
                    }
                    // Four hex digits, and a UTF-16 surrogate only as a high-low pair.
                    let unit = |at: usize| {
                        let digits = std::str::from_utf8(b.get(at..at + 4)?).ok()?;
                        digits
                            .bytes()
                            .all(|c| c.is_ascii_hexdigit())
                            .then(|| u32::from_str_radix(digits, 16).ok())?
                    };
                    match unit(p + 2)? {
                        0xd800..=0xdbff => {
                            if b.get(p + 6..p + 8)? != b"\\u"
                                || !(0xdc00..=0xdfff).contains(&unit(p + 8)?)
                            {
                                return None;
                            }
                            p += 12;
                        }
                        0xdc00..=0xdfff => return None,
                        _ => p += 6,
                    }
                }
                c if c < 0x20 => return None,
                _ => p += 1,
            }
        }
    }

    #[test]
    fn string_end_handles_every_special_byte_at_every_position() {
        // Escapes (valid, invalid, `\u`), quotes, control characters and the bytes a borrow
        // can falsely mark after a hit (`]` after `\`, `#` after `"`, space after a control
        // character), alone, in pairs and runs, at every offset in and across words, after
        // every start offset, truncated anywhere.
        let pieces: [&[u8]; 29] = [
            b"\\ud83d\\ude00",
            b"\\uDBFF\\uDFFF",
            b"\\ud800",
            b"\\udc00",
            b"\\ud800\\u0041",
            b"\\u00\"",
            b"\\u12",
            b"\\\"",
            b"\\\\",
            b"\\/",
            b"\\n",
            b"\\t",
            b"\\b",
            b"\\f",
            b"\\r",
            b"\\u00e9",
            b"\\x",
            b"\\]",
            b"\\\"]",
            b"]]",
            b"\"",
            b"#",
            b"\x01",
            b"\x1f",
            b"\n ",
            b"\x7f",
            "é".as_bytes(),
            b"\\\\\\\"",
            b"\\",
        ];
        let mut checked = 0;
        for filler in [b'x', b']', b'#', b' '] {
            for first in pieces {
                for second in pieces {
                    // In the words, and across the blocks' edges (at 16 + 64k from `start`).
                    for at in (0..12).chain([16, 23, 31, 40, 63, 70]).chain(77..=82) {
                        // Across blocks' edges after the first piece too.
                        for gap in [0, 1, 5, 9, 47].into_iter().chain(61..=65) {
                            let mut s = vec![filler; at];
                            s.extend_from_slice(first);
                            s.extend(std::iter::repeat_n(filler, gap));
                            s.extend_from_slice(second);
                            s.extend(std::iter::repeat_n(filler, 3));
                            s.push(b'"');
                            for start in [0, 1, 3] {
                                for len in [s.len(), s.len().saturating_sub(1), at + 1] {
                                    let b = &s[..len.min(s.len())];
                                    if start > b.len() {
                                        continue;
                                    }
                                    assert_eq!(
                                        string_end(b, start),
                                        string_end_bytewise(b, start),
                                        "{:?} from {start}",
                                        String::from_utf8_lossy(b)
                                    );
                                    checked += 1;
                                }
                            }
                        }
                    }
                }
            }
        }
        assert!(checked > 100_000, "{checked}");
        // Random strings over an alphabet heavy in special bytes (xorshift: reproducible).
        let alphabet = b"\\\"]#/nux0dD \x00\x01\x1f\x7f\x80\xff";
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        /// The next of a xorshift sequence.
        fn xorshift(x: &mut u64) -> u64 {
            *x ^= *x << 13;
            *x ^= *x >> 7;
            *x ^= *x << 17;
            *x
        }
        for _ in 0..200_000 {
            xorshift(&mut state);
            let len = (state % 40) as usize;
            let b: Vec<u8> = (0..len)
                .map(|i| alphabet[((state >> (i % 56)) as usize + i) % alphabet.len()])
                .collect();
            let start = (state >> 60) as usize % (len + 1);
            assert_eq!(
                string_end(&b, start),
                string_end_bytewise(&b, start),
                "{b:?} from {start}"
            );
        }
        // Long random strings, special bytes sparse or dense, across many blocks.
        for _ in 0..20_000 {
            xorshift(&mut state);
            let len = (state % 400) as usize;
            let one_in = 1 + (state >> 40) % 40;
            let mut r = state;
            let b: Vec<u8> = (0..len)
                .map(|_| {
                    let x = xorshift(&mut r);
                    if x.is_multiple_of(one_in) {
                        alphabet[(x >> 32) as usize % alphabet.len()]
                    } else {
                        b'x'
                    }
                })
                .collect();
            let start = (state >> 50) as usize % (len + 1);
            assert_eq!(
                string_end(&b, start),
                string_end_bytewise(&b, start),
                "{b:?} from {start}"
            );
        }
        // A log line full of escaped quotes, as a text event carries it.
        let line = br#"GET \"/a\" \"x\\y\" 200\"" "#;
        assert_eq!(string_end(line, 0), Some((line.len() - 2, true)));
        assert_eq!(
            string_end(b"plain text, long enough\"", 0),
            Some((23, false))
        );
        assert_eq!(string_end(b"\\u0041\"", 0), Some((6, true)));
        assert_eq!(string_end(b"\\ud83d\\ude00\"", 0), Some((12, true)));
        assert_eq!(string_end(b"\\ud83d\"", 0), None);
        assert_eq!(string_end(b"tab\there\"", 0), None);
        assert_eq!(string_end(b"no end \\\"", 0), None);
    }

    /// `cargo test --release -p uplink-protocol -- --ignored --nocapture string_end_speed`
    #[test]
    #[ignore = "a measurement: run in release"]
    fn string_end_speed() {
        let escaped = br#"10.1.2.3 - - [06/Dec/2026:02:20:00 +0000] \"GET /api/v1/items?id=42&page=3 HTTP/1.1\" 200 5120 \"https://example.com/start\" \"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36\" \"-\" rt=0.012 uct=\"0.000\" uht=\"0.010\" urt=\"0.010\"""#;
        let dense = br#"\"a\" \"b\" \"c\" \"d\" \"e\" \"f\" \"g\" \"h\" \"i\" \"j\" \"k\" \"l\" \"m\" \"n\"""#;
        let plain: Vec<u8> = [b'x'; 290].iter().chain(b"\"").copied().collect();
        for (name, line) in [
            ("escaped log line", &escaped[..]),
            ("dense escapes", &dense[..]),
            ("plain", &plain[..]),
            ("key", &b"src_ip\""[..]),
            ("short value", &b"dc01.contoso.com\""[..]),
            ("short, escaped", &b"CONTOSO\\\\user42\""[..]),
        ] {
            let want = string_end_bytewise(line, 0);
            assert!(want.is_some(), "{name}");
            type Scan = fn(&[u8], usize) -> Option<(usize, bool)>;
            let time = |f: Scan| {
                let start = std::time::Instant::now();
                for _ in 0..200_000 {
                    assert_eq!(f(std::hint::black_box(line), 0), want);
                }
                start.elapsed()
            };
            let (mut new, mut old) = (std::time::Duration::MAX, std::time::Duration::MAX);
            for _ in 0..5 {
                new = new.min(time(string_end));
                old = old.min(time(string_end_bytewise));
            }
            println!(
                "{name} ({} B): {:.1} ns per string, a byte at a time {:.1} ns ({:.2}x)",
                line.len(),
                new.as_nanos() as f64 / 200_000.0,
                old.as_nanos() as f64 / 200_000.0,
                new.as_secs_f64() / old.as_secs_f64()
            );
        }
    }

    #[test]
    #[ignore = "a measurement: run in release"]
    fn batch_parse_speed() {
        // 5,000 events of a tailed access-log line (241 B, an escaped quote every few dozen
        // bytes; none of `bench/vs-fluentbit.sh`'s shapes, which are JSON lines), each a 328 B
        // event as the sensor's file source encodes it.
        let line = r#"10.1.2.3 - - [06/Dec/2026:02:20:00 +0000] \"GET /api/v1/items?id=42&page=3 HTTP/1.1\" 200 5120 \"https://example.com/start\" \"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36\" \"-\" rt=0.012"#;
        let mut text = String::new();
        for seq in 0..5_000 {
            text.push_str(&format!(
                "{{\"seq\":{seq},\"kind\":\"log\",\"line\":\"{line}\",\"offset\":{},\"path\":\"/var/log/nginx/access.log\"}}\n",
                seq * 300
            ));
        }
        let per_event = |split: bool| {
            let mut best = std::time::Duration::MAX;
            for _ in 0..20 {
                let start = std::time::Instant::now();
                if split {
                    let mut n = 0;
                    for l in std::hint::black_box(&text).split('\n') {
                        if !l.is_empty() {
                            std::hint::black_box(parse_line(l).unwrap());
                            n += 1;
                        }
                    }
                    assert_eq!(n, 5_000);
                } else {
                    assert_eq!(
                        parse_str(std::hint::black_box(&text), 10_000)
                            .unwrap()
                            .len(),
                        5_000
                    );
                }
                best = best.min(start.elapsed());
            }
            best.as_nanos() as f64 / 5_000.0
        };
        let split_only = |f: &dyn Fn(&str) -> usize| {
            let mut best = std::time::Duration::MAX;
            for _ in 0..20 {
                let start = std::time::Instant::now();
                assert_eq!(f(std::hint::black_box(&text)), 5_001);
                best = best.min(start.elapsed());
            }
            best.as_nanos() as f64 / 5_000.0
        };
        let (ours, split) = (per_event(false), per_event(true));
        let (lines_only, split_only) = (
            split_only(&|t| lines_of(t).count()),
            split_only(&|t| t.split('\n').count()),
        );
        println!(
            "batch of 5,000 events of {} B: parse_str {ours:.1} ns per event; parse_line over str::split {split:.1} ns; the split alone: lines_of {lines_only:.1} ns, str::split {split_only:.1} ns",
            text.len() / 5_000
        );
    }

    #[test]
    fn special_finds_the_first_quote_backslash_or_control_character() {
        let naive = |s: &[u8]| s.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20);
        for filler in [b'x', b' ', 0x21, 0x7f, 0x80, 0xa0, 0xff, b'!', b'#', b']'] {
            for len in 0..24 {
                let base = vec![filler; len];
                assert_eq!(special(&base), naive(&base));
                for at in 0..len {
                    for c in [
                        b'"', b'\\', 0, 1, 0x1f, b'\n', b'\t', 0x20, b'!', b'[', 0x9f,
                    ] {
                        let mut s = base.clone();
                        s[at] = c;
                        // A second one after it must not change the answer.
                        if at + 3 < len {
                            s[at + 3] = b'"';
                        }
                        assert_eq!(special(&s), naive(&s), "{s:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn duplicate_seqs_name_both_lines_whatever_the_order() {
        for (body, want) in [
            (
                "{\"seq\":3}\n{\"seq\":1}\n{\"seq\":2}\n{\"seq\":1}",
                (4, 2, 1),
            ),
            ("{\"seq\":1}\n{\"seq\":2}\n\n{\"seq\":2}", (4, 2, 2)),
            (
                "{\"seq\":5}\n{\"seq\":7}\n{\"seq\":6}\n{\"seq\":7}",
                (4, 2, 7),
            ),
        ] {
            assert_eq!(
                parse(body.as_bytes(), 10),
                Err(BatchError::DuplicateSeq {
                    line: want.0,
                    first: want.1,
                    seq: want.2
                }),
                "{body:?}"
            );
        }
        let out_of_order = parse(b"{\"seq\":3}\n{\"seq\":1}\n{\"seq\":2}", 10).unwrap();
        let seqs: Vec<u64> = out_of_order.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [3, 1, 2]);
    }

    /// A body in frames of `size` bytes of text each, as the sensor writes its 256 KiB ones.
    fn framed(text: &str, size: usize) -> Vec<u8> {
        let mut body = Vec::new();
        for chunk in text.as_bytes().chunks(size.max(1)) {
            body.extend(zstd::bulk::compress(chunk, 1).unwrap());
        }
        body
    }

    /// Parsing as the frames decode: for every text and every frame size (lines, escapes and
    /// multi-byte characters across frames), the events `parse_str` finds in the whole text,
    /// or, where it refuses the batch, `None` (the service then parses it whole, for the
    /// refusal's words).
    #[test]
    fn parsing_frame_by_frame_finds_what_parsing_whole_finds() {
        let long = format!(
            r#"{{"seq":3,"kind":"log","line":"{}é\"日\\"}}"#,
            "x".repeat(300)
        );
        let texts: Vec<String> = vec![
            "{\"seq\":1}\n".into(),
            "{\"seq\":1}".into(),
            format!("{{\"seq\":1,\"kind\":\"a\"}}\r\n\n  \n{long}\r\n{{\"seq\":9,\"s\":\"ü🚀\"}}"),
            format!("\n\n{long}\n{{\"seq\":4,\"kind\":\"ev\\u0065nt\"}}\n\n"),
            // Seqs out of order (the set of seqs seen is then built), not repeated.
            "{\"seq\":5}\n{\"seq\":2}\n{\"seq\":7}\n{\"seq\":3}\n".into(),
            // Refused: a repeat across frames, a bad line, empty (not UTF-8: below, as a str
            // cannot hold it).
            "{\"seq\":5}\n{\"seq\":6}\n{\"seq\":5}\n".into(),
            format!("{long}\n{{\"seq\":4,\"kind\":\"a b\"}}\n"),
            "{\"seq\":1}\n[2]\n".into(),
            "\n \n".into(),
            String::new(),
        ];
        for text in &texts {
            for size in [1, 2, 3, 7, 64, 333, 1 << 16] {
                let body = framed(text, size);
                let frames = crate::body::zstd_frames(&body).unwrap();
                let mut got = Vec::new();
                let len = parse_zstd_frames(&body, &frames, 100, |e, range| {
                    got.push((e.seq, e.kind.to_string(), range));
                });
                match parse_str(text, 100) {
                    Ok(want) => {
                        assert_eq!(len, Some(text.len()), "{text:?} in frames of {size}");
                        let got: Vec<_> = got
                            .into_iter()
                            .map(|(seq, kind, range)| (seq, kind, &text[range]))
                            .collect();
                        let want: Vec<_> = want
                            .iter()
                            .map(|e| (e.seq, e.kind.to_string(), e.raw))
                            .collect();
                        assert_eq!(got, want, "{text:?} in frames of {size}");
                    }
                    Err(_) => assert_eq!(len, None, "{text:?} in frames of {size}"),
                }
            }
        }
        // Too many events, a frame cut short, a frame of more than MAX_FRAME, not UTF-8.
        let body = framed(&texts[4], 5);
        let frames = crate::body::zstd_frames(&body).unwrap();
        assert_eq!(parse_zstd_frames(&body, &frames, 3, |_, _| {}), None);
        assert_eq!(
            parse_zstd_frames(&body, &frames, 4, |_, _| {}),
            Some(texts[4].len())
        );
        let mut cut = frames.clone();
        cut[1].compressed.end -= 1;
        assert_eq!(parse_zstd_frames(&body, &cut, 4, |_, _| {}), None);
        let big = format!(
            "{{\"seq\":1,\"s\":\"{}\"}}",
            "x".repeat(crate::body::MAX_FRAME)
        );
        let body = framed(&big, big.len());
        let frames = crate::body::zstd_frames(&body).unwrap();
        assert_eq!(parse_zstd_frames(&body, &frames, 4, |_, _| {}), None);
        // Not UTF-8 (a bad lead byte, then a lone continuation byte), in one frame and across
        // frames.
        let mut bytes = b"{\"seq\":1}\n{\"seq\":2,\"s\":\"caf\xc3\xa9\"}".to_vec();
        for (at, bad) in [(27, 0xff), (27, b'a')] {
            bytes[at] = bad;
            for size in [1, 3, 26, bytes.len()] {
                let body: Vec<u8> = bytes
                    .chunks(size)
                    .flat_map(|c| zstd::bulk::compress(c, 1).unwrap())
                    .collect();
                let frames = crate::body::zstd_frames(&body).unwrap();
                assert_eq!(
                    parse_zstd_frames(&body, &frames, 4, |_, _| {}),
                    None,
                    "{size}"
                );
            }
        }
    }

    #[test]
    fn too_many_events() {
        let body: String = (0..5).map(|i| format!("{{\"seq\":{i}}}\n")).collect();
        assert_eq!(parse(body.as_bytes(), 5).unwrap().len(), 5);
        assert_eq!(
            parse(body.as_bytes(), 4).unwrap_err(),
            BatchError::TooManyEvents { count: 5, limit: 4 }
        );
    }

    #[test]
    fn encode_then_parse_keeps_fields_and_forces_seq() {
        let fields: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(r#"{"seq":999,"kind":"ignored","host":"dc1","n":[1,{"a":null}]}"#)
                .unwrap();
        let mut out = Vec::new();
        encode_line(&mut out, 42, "logon", &fields);
        encode_line(&mut out, 43, "logon", &serde_json::Map::new());
        let events = parse(&out, 10).unwrap();
        assert_eq!(events[0].seq, 42);
        assert_eq!(events[0].kind, "logon");
        let v: serde_json::Value = serde_json::from_str(events[0].raw).unwrap();
        assert_eq!(v["host"], "dc1");
        assert_eq!(v["n"][1]["a"], serde_json::Value::Null);
        assert_eq!(events[1].raw, r#"{"seq":43,"kind":"logon"}"#);
    }
}
