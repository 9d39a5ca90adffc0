//! The `[sources]` section of `sensor.toml`. Every key has a default, and a configuration without
//! the section (every sensor installed before sources existed) loads as "heartbeats and
//! inventory on, no files, no journal".

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Default heartbeat period.
pub const DEFAULT_HEARTBEAT_SECS: u64 = 60;
/// Default inventory period (also sent at start).
pub const DEFAULT_INVENTORY_SECS: u64 = 86_400;
/// Default longest line kept whole; longer lines are split (see [`crate::lines`]).
pub const DEFAULT_MAX_LINE_BYTES: usize = 64 * 1024;
/// The largest `max_line_bytes`: a line's event, JSON-escaped (up to 6 bytes per control byte),
/// must stay under the queue's 1 MiB record limit.
pub const MAX_MAX_LINE_BYTES: usize = 128 * 1024;
/// Default kind of events read from files.
pub const DEFAULT_FILE_KIND: &str = "log";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct SourcesConfig {
    /// Seconds between heartbeats; 0 turns them off.
    pub heartbeat_secs: u64,
    /// Seconds between inventories (one is always sent at start unless this is 0).
    pub inventory_secs: u64,
    /// Groups of files to tail.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FilesConfig>,
    /// The systemd journal, when present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journal: Option<JournalConfig>,
}

impl Default for SourcesConfig {
    fn default() -> Self {
        SourcesConfig {
            heartbeat_secs: DEFAULT_HEARTBEAT_SECS,
            inventory_secs: DEFAULT_INVENTORY_SECS,
            files: Vec::new(),
            journal: None,
        }
    }
}

/// `[[sources.files]]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FilesConfig {
    /// Absolute paths; `*`, `?` and `[...]` match within one path component.
    pub paths: Vec<String>,
    /// The events' kind (default `log`).
    #[serde(default = "default_kind")]
    pub kind: String,
    /// Longest line kept whole (default 64 KiB).
    #[serde(default = "default_max_line")]
    pub max_line_bytes: usize,
    /// Seconds a file renamed away (or deleted) is still read after it stops growing (default 5).
    #[serde(default = "default_rotate_wait")]
    pub rotate_wait_secs: u64,
    /// What a line is (default `text`): see [`Format`].
    #[serde(default, skip_serializing_if = "Format::is_text")]
    pub format: Format,
}

/// `format` of `[[sources.files]]`: how a line becomes an event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Format {
    /// Each line is text: the event's `line`, a string.
    #[default]
    Text,
    /// Each line is one JSON object (what Fluent Bit's `Parser json` reads): shipped as the
    /// event's `data`, as read; a line that is not one is shipped as text and counted
    /// ([`crate::json`]).
    Json,
}

impl Format {
    pub fn is_text(&self) -> bool {
        *self == Format::Text
    }
}

impl TryFrom<String> for Format {
    type Error = String;
    fn try_from(s: String) -> Result<Format, String> {
        match s.as_str() {
            "text" => Ok(Format::Text),
            "json" => Ok(Format::Json),
            _ => Err(format!(
                "[[sources.files]] format = {s:?} is not a format: write \"text\" (each line is a string, the default) or \"json\" (each line is one JSON object)"
            )),
        }
    }
}

impl From<Format> for String {
    fn from(f: Format) -> String {
        match f {
            Format::Text => "text",
            Format::Json => "json",
        }
        .to_owned()
    }
}

fn default_rotate_wait() -> u64 {
    5
}

fn default_kind() -> String {
    DEFAULT_FILE_KIND.to_owned()
}
fn default_max_line() -> usize {
    DEFAULT_MAX_LINE_BYTES
}

/// `[sources.journal]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct JournalConfig {
    /// Read these journal files (`journalctl --file`) instead of the system journal.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<PathBuf>,
    /// Only these units (`journalctl --unit`), all when empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub units: Vec<String>,
}

impl SourcesConfig {
    /// Checks what serde cannot: absolute paths, sane sizes, valid kinds.
    pub fn validate(&self) -> Result<(), String> {
        for f in &self.files {
            if f.paths.is_empty() {
                return Err("[[sources.files]] needs at least one path in `paths`".into());
            }
            for p in &f.paths {
                if !p.starts_with('/') {
                    return Err(format!(
                        "[[sources.files]] path {p:?} is not absolute: write the whole path"
                    ));
                }
            }
            if !(256..=MAX_MAX_LINE_BYTES).contains(&f.max_line_bytes) {
                return Err(format!(
                    "[[sources.files]] max_line_bytes = {} is outside 256..={MAX_MAX_LINE_BYTES}",
                    f.max_line_bytes
                ));
            }
            if f.kind.is_empty()
                || f.kind.len() > 64
                || !f
                    .kind
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-:".contains(&b))
            {
                return Err(format!(
                    "[[sources.files]] kind {:?} must be 1 to 64 letters, digits, '.', '_', '-' or ':'",
                    f.kind
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_old_configs() {
        let c: SourcesConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(c, SourcesConfig::default());
        assert_eq!(c.heartbeat_secs, 60);
        let c: SourcesConfig =
            serde_json::from_str(r#"{"files":[{"paths":["/var/log/*.log"]}],"journal":{}}"#)
                .unwrap();
        assert_eq!(c.files[0].kind, "log");
        assert_eq!(c.files[0].max_line_bytes, 65536);
        assert_eq!(c.files[0].format, Format::Text);
        assert!(c.journal.is_some());
        assert!(c.validate().is_ok());
    }

    #[test]
    fn validation() {
        for (json, why) in [
            (r#"{"files":[{"paths":[]}]}"#, "at least one path"),
            (r#"{"files":[{"paths":["var/log"]}]}"#, "not absolute"),
            (
                r#"{"files":[{"paths":["/a"],"max_line_bytes":10}]}"#,
                "outside",
            ),
            (r#"{"files":[{"paths":["/a"],"kind":"a b"}]}"#, "must be 1"),
        ] {
            let c: SourcesConfig = serde_json::from_str(json).unwrap();
            let e = c.validate().unwrap_err();
            assert!(e.contains(why), "{json}: {e}");
        }
        assert!(serde_json::from_str::<SourcesConfig>(r#"{"file":[]}"#).is_err());
    }

    #[test]
    fn formats() {
        for (json, want) in [
            (r#"{"paths":["/a"]}"#, Ok(Format::Text)),
            (r#"{"paths":["/a"],"format":"text"}"#, Ok(Format::Text)),
            (r#"{"paths":["/a"],"format":"json"}"#, Ok(Format::Json)),
            (
                r#"{"paths":["/a"],"format":"JSON"}"#,
                Err("\"JSON\" is not a format"),
            ),
            (
                r#"{"paths":["/a"],"format":"ndjson"}"#,
                Err("write \"text\""),
            ),
            (r#"{"paths":["/a"],"format":1}"#, Err("expected a string")),
        ] {
            match (serde_json::from_str::<FilesConfig>(json), want) {
                (Ok(c), Ok(f)) => assert_eq!(c.format, f, "{json}"),
                (Err(e), Err(why)) => assert!(e.to_string().contains(why), "{json}: {e}"),
                (got, want) => panic!("{json}: {got:?}, want {want:?}"),
            }
        }
        // Written back: text (the default) is left out, so older configurations stay as they were.
        let mut c: FilesConfig = serde_json::from_str(r#"{"paths":["/a"]}"#).unwrap();
        assert!(!serde_json::to_string(&c).unwrap().contains("format"));
        c.format = Format::Json;
        assert!(serde_json::to_string(&c)
            .unwrap()
            .contains(r#""format":"json""#));
    }
}
