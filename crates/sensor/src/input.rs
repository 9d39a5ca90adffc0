//! Validating events given to `uplink sensor send`: NDJSON, one JSON object per line, with an
//! optional string `kind` (default `event`). The queue assigns `seq`; one given is ignored.

use uplink_protocol::batch::{check_kind, check_structure, DEFAULT_KIND};

/// A line accepted for queueing.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    pub kind: String,
    pub fields: serde_json::Map<String, serde_json::Value>,
}

/// Validates one input line (without its newline). `Ok(None)` for a blank line.
pub fn prepare(line: &str) -> Result<Option<Prepared>, String> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.trim().is_empty() {
        return Ok(None);
    }
    // What the service would refuse must never be queued: it would block the queue behind it.
    check_structure(line)?;
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("not valid JSON: {e}"))?;
    let serde_json::Value::Object(mut fields) = value else {
        return Err("not a JSON object: each line must be one object, e.g. {\"kind\":\"logon\",\"user\":\"alice\"}".into());
    };
    let kind = match fields.remove("kind") {
        None => DEFAULT_KIND.to_owned(),
        Some(serde_json::Value::String(k)) => {
            check_kind(&k)?;
            k
        }
        Some(other) => return Err(format!("\"kind\" must be a string, got {other}")),
    };
    fields.remove("seq");
    Ok(Some(Prepared { kind, fields }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        assert_eq!(prepare("").unwrap(), None);
        assert_eq!(prepare("  \r").unwrap(), None);
        let p = prepare(r#"{"kind":"logon","user":"alice","seq":5}"#)
            .unwrap()
            .unwrap();
        assert_eq!(p.kind, "logon");
        assert_eq!(
            p.fields.len(),
            1,
            "kind and seq are not fields: {:?}",
            p.fields
        );
        assert_eq!(prepare(r#"{"a":1}"#).unwrap().unwrap().kind, "event");
        for (bad, why) in [
            ("{", "not valid JSON"),
            ("[1]", "not a JSON object"),
            ("42", "not a JSON object"),
            (r#"{"kind":7}"#, "must be a string"),
            (r#"{"kind":"a b"}"#, "has the character"),
            (
                &format!("{{\"a\":{}{}}}", "[".repeat(64), "]".repeat(64)),
                "nest deeper than 64",
            ),
        ] {
            let err = prepare(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
