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

use std::fmt;

/// Longest accepted `kind`.
pub const MAX_KIND_LEN: usize = 64;
/// Largest sequence number: stores keep it in a signed 64-bit column (SQLite INTEGER, PostgreSQL BIGINT).
pub const MAX_SEQ: u64 = i64::MAX as u64;
/// The kind given to events that do not name one.
pub const DEFAULT_KIND: &str = "event";

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
    let mut events = Vec::with_capacity(text.len() / 256 + 1);
    let mut seen = std::collections::HashMap::new();
    for (index, line) in text.split('\n').enumerate() {
        let line_no = index + 1;
        let raw = line.strip_suffix('\r').unwrap_or(line);
        if raw.trim().is_empty() {
            continue;
        }
        if events.len() == max_events {
            let count = text.split('\n').filter(|l| !l.trim().is_empty()).count();
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

/// Validates one line: a JSON object with a non-negative integer `seq` and an optional string `kind`.
pub fn parse_line(raw: &str) -> Result<Event<'_>, String> {
    let trimmed = raw.trim_start();
    if !trimmed.starts_with('{') {
        return Err("not a JSON object (each line must be one object like {\"seq\":1,...})".into());
    }
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
        ];
        for (body, want) in cases {
            let err = parse(body, 100)
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
