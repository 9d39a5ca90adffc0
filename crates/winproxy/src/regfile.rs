//! .reg files: what `regedit` exports and `reg import` reads.
//!
//! Two dialects: "Windows Registry Editor Version 5.00" (UTF-16LE with a byte-order mark, CRLF)
//! and "REGEDIT4" (ANSI). Both hold `[key]` lines followed by values:
//!
//! ```text
//! [HKEY_USERS\S-1-5-18\Software\Microsoft\Windows\CurrentVersion\Internet Settings\Connections]
//! "DefaultConnectionSettings"=hex:46,00,00,00,05,00,00,00,0f,00,00,00,18,00,00,\
//!   00,68,74,74,70,...
//! "ProxyEnable"=dword:00000001
//! "ProxyServer"="proxy.contoso.com:8080"
//! @="the default value"
//! "Obsolete"=-
//! [-HKEY_CURRENT_USER\Software\Old]
//! ; a comment
//! ```
//!
//! The reader is lenient where real files differ (LF line ends, a version 5 header on an ANSI
//! or UTF-8 file, blank lines with spaces, mixed-case and short hive names such as `HKLM`,
//! comments after data) and strict where guessing would change data (an unknown escape in a
//! string, a bad hex byte, a value before any key): those are errors with the line number.
//!
//! The writer produces exactly what `regedit` exports: the header, a blank line, each key
//! followed by its values and a blank line, CRLF line ends, hive names spelled out, binary
//! data as `hex:` wrapped with `\` before column 80. Reading a regedit export and writing it
//! again gives the same bytes (the tests check this on real exports).
//!
//! Deliberately not done: the registry itself (nothing here reads or writes a live registry),
//! transcoding `hex(2)`/`hex(7)` string data between the dialects (kept as bytes), and strings
//! holding line breaks (regedit cannot express them as `"..."` either).

use std::fmt;

use uplink_diag::{Code, Diagnose};

use crate::text::{self, TextError};

/// The first line of a version 5 file.
pub const HEADER_V5: &str = "Windows Registry Editor Version 5.00";
/// The first line of a REGEDIT4 file.
pub const HEADER_REGEDIT4: &str = "REGEDIT4";

/// REG_NONE.
pub const REG_NONE: u32 = 0;
/// REG_SZ.
pub const REG_SZ: u32 = 1;
/// REG_EXPAND_SZ.
pub const REG_EXPAND_SZ: u32 = 2;
/// REG_BINARY: written as `hex:`.
pub const REG_BINARY: u32 = 3;
/// REG_DWORD.
pub const REG_DWORD: u32 = 4;
/// REG_MULTI_SZ.
pub const REG_MULTI_SZ: u32 = 7;
/// REG_QWORD.
pub const REG_QWORD: u32 = 0xb;

/// Regedit breaks a `hex:` line once it reaches this many characters.
const HEX_LINE_WIDTH: usize = 77;

/// The dialect of a .reg file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RegFormat {
    /// "Windows Registry Editor Version 5.00": UTF-16LE with a byte-order mark.
    V5,
    /// "REGEDIT4": ANSI (Windows-1252).
    Regedit4,
}

impl RegFormat {
    pub fn header(self) -> &'static str {
        match self {
            RegFormat::V5 => HEADER_V5,
            RegFormat::Regedit4 => HEADER_REGEDIT4,
        }
    }
}

/// A root key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hive {
    ClassesRoot,
    CurrentUser,
    LocalMachine,
    Users,
    CurrentConfig,
}

impl Hive {
    /// The name regedit writes.
    pub fn name(self) -> &'static str {
        match self {
            Hive::ClassesRoot => "HKEY_CLASSES_ROOT",
            Hive::CurrentUser => "HKEY_CURRENT_USER",
            Hive::LocalMachine => "HKEY_LOCAL_MACHINE",
            Hive::Users => "HKEY_USERS",
            Hive::CurrentConfig => "HKEY_CURRENT_CONFIG",
        }
    }

    /// Parses a hive name in any case, spelled out or short (`HKLM`, as `reg.exe` takes them).
    pub fn parse(s: &str) -> Option<Hive> {
        Some(match s.to_ascii_uppercase().as_str() {
            "HKEY_CLASSES_ROOT" | "HKCR" => Hive::ClassesRoot,
            "HKEY_CURRENT_USER" | "HKCU" => Hive::CurrentUser,
            "HKEY_LOCAL_MACHINE" | "HKLM" => Hive::LocalMachine,
            "HKEY_USERS" | "HKU" => Hive::Users,
            "HKEY_CURRENT_CONFIG" | "HKCC" => Hive::CurrentConfig,
            _ => return None,
        })
    }
}

/// Why a key path is not usable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyPathError {
    #[error("the key path is empty")]
    Empty,
    #[error(
        "the key {path:?} starts with {hive:?}, which is not a root key: use HKEY_LOCAL_MACHINE, \
         HKEY_CURRENT_USER, HKEY_USERS, HKEY_CLASSES_ROOT or HKEY_CURRENT_CONFIG"
    )]
    UnknownHive { path: String, hive: String },
    #[error("the key {path:?} has an empty name between two backslashes: remove the extra '\\'")]
    EmptyComponent { path: String },
}

/// A key: its hive and the path below it (`Software\Microsoft\...`, no leading backslash).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeyPath {
    pub hive: Hive,
    pub subkey: String,
}

impl KeyPath {
    pub fn new(hive: Hive, subkey: &str) -> Self {
        KeyPath {
            hive,
            subkey: subkey.trim_matches('\\').to_owned(),
        }
    }

    /// Parses `HIVE\sub\key` (any hive spelling; a trailing backslash is dropped).
    pub fn parse(s: &str) -> Result<KeyPath, KeyPathError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(KeyPathError::Empty);
        }
        let (hive, rest) = s.split_once('\\').unwrap_or((s, ""));
        let hive = Hive::parse(hive).ok_or_else(|| KeyPathError::UnknownHive {
            path: s.to_owned(),
            hive: hive.to_owned(),
        })?;
        let rest = rest.strip_suffix('\\').unwrap_or(rest);
        if !rest.is_empty() && rest.split('\\').any(str::is_empty) {
            return Err(KeyPathError::EmptyComponent { path: s.to_owned() });
        }
        Ok(KeyPath {
            hive,
            subkey: rest.to_owned(),
        })
    }

    /// The subkey's names, top down.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.subkey.split('\\').filter(|c| !c.is_empty())
    }

    /// Same key, compared as Windows does (case-insensitively).
    pub fn same_key(&self, other: &KeyPath) -> bool {
        self.hive == other.hive && fold(&self.subkey) == fold(&other.subkey)
    }

    /// True when this key is `ancestor` or below it.
    pub fn is_within(&self, ancestor: &KeyPath) -> bool {
        if self.hive != ancestor.hive {
            return false;
        }
        let (me, anc) = (fold(&self.subkey), fold(&ancestor.subkey));
        anc.is_empty() || me == anc || me.starts_with(&format!("{anc}\\"))
    }

    /// True when the path ends with these key names (case-insensitively, whole names).
    pub fn ends_with(&self, suffix: &str) -> bool {
        let suffix: Vec<String> = suffix.split('\\').map(fold).collect();
        let mine: Vec<String> = self.components().map(fold).collect();
        mine.len() >= suffix.len() && mine[mine.len() - suffix.len()..] == suffix[..]
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.hive.name())?;
        if !self.subkey.is_empty() {
            write!(f, "\\{}", self.subkey)?;
        }
        Ok(())
    }
}

/// Registry names compare case-insensitively.
pub(crate) fn fold(s: &str) -> String {
    s.to_lowercase()
}

/// A value's data as a .reg file writes it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RegData {
    /// `"text"`: REG_SZ.
    String(String),
    /// `dword:0000000a`: REG_DWORD.
    Dword(u32),
    /// `hex:` (REG_BINARY, `kind` 3) or `hex(N):` (any type N), as bytes.
    Hex { kind: u32, bytes: Vec<u8> },
    /// `-`: delete the value.
    Delete,
}

impl RegData {
    /// REG_BINARY data.
    pub fn binary(bytes: Vec<u8>) -> RegData {
        RegData::Hex {
            kind: REG_BINARY,
            bytes,
        }
    }

    /// The bytes of REG_BINARY data.
    pub fn as_binary(&self) -> Option<&[u8]> {
        match self {
            RegData::Hex {
                kind: REG_BINARY,
                bytes,
            } => Some(bytes),
            _ => None,
        }
    }

    /// A REG_DWORD, written as `dword:` or as `hex(4):` with four bytes.
    pub fn as_dword(&self) -> Option<u32> {
        match self {
            RegData::Dword(n) => Some(*n),
            RegData::Hex {
                kind: REG_DWORD,
                bytes,
            } => match bytes.as_slice() {
                [a, b, c, d] => Some(u32::from_le_bytes([*a, *b, *c, *d])),
                _ => None,
            },
            _ => None,
        }
    }

    /// A REG_SZ written as `"..."`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            RegData::String(s) => Some(s),
            _ => None,
        }
    }

    /// How the data is written, for messages.
    pub fn describe(&self) -> String {
        match self {
            RegData::String(_) => "a string (REG_SZ)".into(),
            RegData::Dword(_) => "a dword (REG_DWORD)".into(),
            RegData::Hex {
                kind: REG_BINARY, ..
            } => "binary data (hex:, REG_BINARY)".into(),
            RegData::Hex { kind, .. } => format!("hex({kind:x}) data"),
            RegData::Delete => "a deletion (-)".into(),
        }
    }
}

/// A value line. An empty name is the key's default value (`@`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RegValue {
    pub name: String,
    pub data: RegData,
}

impl RegValue {
    pub fn new(name: &str, data: RegData) -> Self {
        RegValue {
            name: name.to_owned(),
            data,
        }
    }
}

/// A `[key]` block with its values, or a `[-key]` deletion.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RegKey {
    pub path: KeyPath,
    /// `[-key]`: delete the key and everything below it.
    pub delete: bool,
    pub values: Vec<RegValue>,
}

/// A key after applying a file's blocks in order: what importing the file leaves set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedKey {
    pub path: KeyPath,
    /// Values set by the file (deletions applied, later lines winning), in first-seen order.
    pub values: Vec<RegValue>,
}

/// A .reg file: its dialect and its blocks, in order.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RegFile {
    pub format: RegFormat,
    pub keys: Vec<RegKey>,
}

/// Why a .reg file could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegError {
    #[error(transparent)]
    Text(#[from] TextError),
    #[error(
        "this is not a .reg file: the first line is {found:?}, but a .reg file starts with \
         \"Windows Registry Editor Version 5.00\" or \"REGEDIT4\"; export the key with regedit \
         or `reg export`"
    )]
    NoHeader { found: String },
    #[error("line {line}: {error}")]
    Syntax { line: usize, error: SyntaxError },
}

impl RegError {
    /// The line of a syntax error.
    pub fn line(&self) -> Option<usize> {
        match self {
            RegError::Syntax { line, .. } => Some(*line),
            _ => None,
        }
    }
}

impl Diagnose for RegError {
    fn code(&self) -> Code {
        Code::CONFIG_INVALID
    }
}

/// What is wrong on a line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SyntaxError {
    #[error("a value before any [key] line: put a [HKEY_...\\...] line above it")]
    ValueOutsideKey,
    #[error("the value is under a deleted key ([-...]): remove the '-' to set values, or remove the values")]
    ValueUnderDeletedKey,
    #[error("the key line {text:?} has no closing ']'")]
    UnterminatedKey { text: String },
    #[error(transparent)]
    KeyPath(#[from] KeyPathError),
    #[error("the quoted text {text:?} has no closing '\"'")]
    UnterminatedString { text: String },
    #[error(
        "unknown escape '\\{escape}' in {text:?}: .reg strings know only \\\\ and \\\"; write a \
         backslash as \\\\"
    )]
    BadEscape { escape: char, text: String },
    #[error("expected '=' after the value name in {text:?}")]
    MissingEquals { text: String },
    #[error("unexpected text {text:?} after the value: start comments with ';'")]
    TrailingText { text: String },
    #[error("bad dword {text:?}: write 1 to 8 hex digits, e.g. dword:00000001")]
    BadDword { text: String },
    #[error("bad hex type {text:?}: write hex: or hex(N): with N in hex, e.g. hex(2):")]
    BadHexType { text: String },
    #[error("bad byte {token:?} at index {index} of the hex data: write bytes as two hex digits separated by commas")]
    BadHexByte { index: usize, token: String },
    #[error("the data {text:?} is not a string (\"...\"), dword:, hex:, hex(N): or - (delete)")]
    UnknownType { text: String },
    #[error("cannot read {text:?}: expected [key], \"name\"=data, @=data or a ; comment")]
    Unrecognized { text: String },
}

/// Why a .reg file could not be written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    #[error(
        "the {what} {text:?} holds a line break or NUL, which a .reg file cannot hold in that place"
    )]
    ControlCharacter { what: &'static str, text: String },
    #[error(
        "REGEDIT4 files are ANSI (Windows-1252), which cannot hold {ch:?}: write a version 5 \
         file (leave out --ansi)"
    )]
    NotAnsi { ch: char },
    #[error("the deleted key [-{key}] has values: a deletion block holds no values")]
    ValuesUnderDeletedKey { key: String },
}

impl Diagnose for WriteError {
    fn code(&self) -> Code {
        Code::CONFIG_INVALID
    }
}

impl RegFile {
    pub fn new(format: RegFormat) -> Self {
        RegFile {
            format,
            keys: Vec::new(),
        }
    }

    /// Appends a `[key]` block.
    pub fn push_key(&mut self, path: KeyPath, values: Vec<RegValue>) {
        self.keys.push(RegKey {
            path,
            delete: false,
            values,
        });
    }

    /// Reads a file's bytes (UTF-16LE with BOM, UTF-8, or Windows-1252; see [`crate::text`]).
    pub fn parse(bytes: &[u8]) -> Result<RegFile, RegError> {
        let (text, encoding) = text::decode(bytes)?;
        let file = Self::parse_str(&text)?;
        // Text that is valid UTF-8 was only guessed to be UTF-8; a REGEDIT4 file is ANSI, as
        // regedit reads it (and as uplink writes it).
        if encoding == text::Encoding::Utf8
            && file.format == RegFormat::Regedit4
            && !bytes.is_ascii()
        {
            return Self::parse_str(&text::decode_cp1252(bytes));
        }
        Ok(file)
    }

    /// Reads a file's text.
    pub fn parse_str(text: &str) -> Result<RegFile, RegError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let lines: Vec<&str> = text
            .split('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .collect();
        let mut i = lines
            .iter()
            .position(|l| !l.trim().is_empty())
            .unwrap_or(lines.len());
        let header = lines.get(i).map_or("", |l| l.trim());
        let format = if header.eq_ignore_ascii_case(HEADER_V5) {
            RegFormat::V5
        } else if header.eq_ignore_ascii_case(HEADER_REGEDIT4) {
            RegFormat::Regedit4
        } else {
            return Err(RegError::NoHeader {
                found: header.chars().take(60).collect(),
            });
        };
        i += 1;
        let mut file = RegFile::new(format);
        while let Some(raw) = lines.get(i) {
            let line_no = i + 1;
            i += 1;
            let syntax = |error: SyntaxError| RegError::Syntax {
                line: line_no,
                error,
            };
            let line = raw.trim_start();
            if line.trim_end().is_empty() || line.starts_with(';') {
                continue;
            }
            if line.starts_with('[') {
                file.keys.push(parse_key_line(line).map_err(syntax)?);
                continue;
            }
            if line.starts_with('"') || line.starts_with('@') {
                let value = parse_value(line, &lines, &mut i).map_err(syntax)?;
                let key = file
                    .keys
                    .last_mut()
                    .ok_or(syntax(SyntaxError::ValueOutsideKey))?;
                if key.delete {
                    return Err(syntax(SyntaxError::ValueUnderDeletedKey));
                }
                key.values.push(value);
                continue;
            }
            return Err(syntax(SyntaxError::Unrecognized {
                text: shorten(line),
            }));
        }
        Ok(file)
    }

    /// The file's text, CRLF line ends, as regedit writes it.
    pub fn to_text(&self) -> Result<String, WriteError> {
        let mut out = String::new();
        out.push_str(self.format.header());
        out.push_str("\r\n\r\n");
        for key in &self.keys {
            let path = key.path.to_string();
            no_breaks("key", &path)?;
            if key.delete {
                if !key.values.is_empty() {
                    return Err(WriteError::ValuesUnderDeletedKey { key: path });
                }
                out.push_str(&format!("[-{path}]\r\n"));
            } else {
                out.push_str(&format!("[{path}]\r\n"));
            }
            for value in &key.values {
                write_value(&mut out, value)?;
            }
            out.push_str("\r\n");
        }
        Ok(out)
    }

    /// The file's bytes: UTF-16LE with a byte-order mark for version 5, Windows-1252 for REGEDIT4.
    pub fn to_bytes(&self) -> Result<Vec<u8>, WriteError> {
        let text = self.to_text()?;
        match self.format {
            RegFormat::V5 => Ok(text::encode_utf16le(&text)),
            RegFormat::Regedit4 => {
                text::encode_cp1252(&text).map_err(|ch| WriteError::NotAnsi { ch })
            }
        }
    }

    /// What importing the file leaves set: blocks applied in order, `[-key]` removing the key
    /// and its subkeys, `"name"=-` removing a value, a later value replacing an earlier one.
    pub fn resolved(&self) -> Vec<ResolvedKey> {
        let mut out: Vec<ResolvedKey> = Vec::new();
        for key in &self.keys {
            if key.delete {
                out.retain(|k| !k.path.is_within(&key.path));
                continue;
            }
            let idx = match out.iter().position(|k| k.path.same_key(&key.path)) {
                Some(idx) => idx,
                None => {
                    out.push(ResolvedKey {
                        path: key.path.clone(),
                        values: Vec::new(),
                    });
                    out.len() - 1
                }
            };
            let values = &mut out[idx].values;
            for v in &key.values {
                let existing = values.iter().position(|e| fold(&e.name) == fold(&v.name));
                match (&v.data, existing) {
                    (RegData::Delete, Some(at)) => {
                        values.remove(at);
                    }
                    (RegData::Delete, None) => {}
                    (_, Some(at)) => values[at] = v.clone(),
                    (_, None) => values.push(v.clone()),
                }
            }
        }
        out
    }
}

fn shorten(s: &str) -> String {
    let mut out: String = s.trim_end().chars().take(60).collect();
    if s.trim_end().chars().count() > 60 {
        out.push('…');
    }
    out
}

/// Only white space or a `;` comment may follow a key or a value.
fn is_tail(s: &str) -> bool {
    let t = s.trim_start();
    t.is_empty() || t.starts_with(';')
}

fn parse_key_line(line: &str) -> Result<RegKey, SyntaxError> {
    // The last `]` closes the key, as regedit reads it: key names may contain `]`, so
    // whatever the writer writes reads back the same. Only white space or a comment may follow.
    let close = line
        .rfind(']')
        .ok_or_else(|| SyntaxError::UnterminatedKey {
            text: shorten(line),
        })?;
    if !is_tail(&line[close + 1..]) {
        return Err(SyntaxError::TrailingText {
            text: shorten(line[close + 1..].trim()),
        });
    }
    let inner = &line[1..close];
    let (delete, path) = match inner.strip_prefix('-') {
        Some(p) => (true, p),
        None => (false, inner),
    };
    Ok(RegKey {
        path: KeyPath::parse(path)?,
        delete,
        values: Vec::new(),
    })
}

/// Parses the inside of a quoted string starting after its opening quote; returns the text
/// and what follows the closing quote.
fn parse_quoted(s: &str) -> Result<(String, &str), SyntaxError> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, &s[i + 1..])),
            '\\' => match chars.next() {
                Some((_, '\\')) => out.push('\\'),
                Some((_, '"')) => out.push('"'),
                Some((_, escape)) => {
                    return Err(SyntaxError::BadEscape {
                        escape,
                        text: shorten(s),
                    })
                }
                None => break,
            },
            c => out.push(c),
        }
    }
    Err(SyntaxError::UnterminatedString { text: shorten(s) })
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

fn parse_value(line: &str, lines: &[&str], next: &mut usize) -> Result<RegValue, SyntaxError> {
    let (name, rest) = match line.strip_prefix('@') {
        Some(rest) => (String::new(), rest),
        None => parse_quoted(&line[1..])?,
    };
    let rest = rest
        .trim_start()
        .strip_prefix('=')
        .ok_or_else(|| SyntaxError::MissingEquals {
            text: shorten(line),
        })?
        .trim_start();
    let tail = |after: &str| {
        if is_tail(after) {
            Ok(())
        } else {
            Err(SyntaxError::TrailingText {
                text: shorten(after.trim()),
            })
        }
    };
    let data = if let Some(s) = rest.strip_prefix('"') {
        let (text, after) = parse_quoted(s)?;
        tail(after)?;
        RegData::String(text)
    } else if let Some(after) = rest.strip_prefix('-') {
        tail(after)?;
        RegData::Delete
    } else if let Some(digits) = strip_prefix_ignore_case(rest, "dword:") {
        let digits = digits.split(';').next().unwrap_or("").trim();
        let bad = || SyntaxError::BadDword {
            text: digits.to_owned(),
        };
        if digits.is_empty() || digits.len() > 8 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad());
        }
        RegData::Dword(u32::from_str_radix(digits, 16).map_err(|_| bad())?)
    } else if let Some(after_hex) = strip_prefix_ignore_case(rest, "hex") {
        let (kind, first) = parse_hex_type(after_hex)?;
        let body = collect_continued(first, lines, next);
        RegData::Hex {
            kind,
            bytes: parse_hex_bytes(&body)?,
        }
    } else {
        return Err(SyntaxError::UnknownType {
            text: shorten(rest),
        });
    };
    Ok(RegValue { name, data })
}

/// `:` → REG_BINARY; `(N):` → type N. Returns the type and the text after the colon.
fn parse_hex_type(s: &str) -> Result<(u32, &str), SyntaxError> {
    if let Some(rest) = s.strip_prefix(':') {
        return Ok((REG_BINARY, rest));
    }
    let bad = || SyntaxError::BadHexType {
        text: format!("hex{}", shorten(s)),
    };
    let inner = s.strip_prefix('(').ok_or_else(bad)?;
    let (n, rest) = inner.split_once("):").ok_or_else(bad)?;
    if n.is_empty() || n.len() > 8 || !n.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let kind = u32::from_str_radix(n, 16).map_err(|_| bad())?;
    Ok((kind, rest))
}

/// Joins a hex value's lines: a line ending in `\` continues on the next one (comment lines
/// in between are skipped); comments after the bytes are dropped.
fn collect_continued(first: &str, lines: &[&str], next: &mut usize) -> String {
    let mut body = String::new();
    let mut current = first;
    loop {
        let content = current.split(';').next().unwrap_or("").trim_end();
        let Some(cont) = content.strip_suffix('\\') else {
            body.push_str(content);
            return body;
        };
        body.push_str(cont);
        loop {
            let Some(line) = lines.get(*next) else {
                return body;
            };
            *next += 1;
            let t = line.trim_start();
            if !t.starts_with(';') {
                current = t;
                break;
            }
        }
    }
}

fn parse_hex_bytes(body: &str) -> Result<Vec<u8>, SyntaxError> {
    let tokens: Vec<&str> = body.split(',').map(str::trim).collect();
    let mut out = Vec::with_capacity(tokens.len());
    for (index, token) in tokens.iter().enumerate() {
        // A trailing comma (or no data at all) leaves one empty token at the end.
        if token.is_empty() && index + 1 == tokens.len() {
            break;
        }
        // Token by token rather than `hex::decode`: each byte is its own comma-separated token,
        // and a one-digit token (`hex:1,a`) is read as a byte (files are read leniently).
        let ok = (1..=2).contains(&token.len()) && token.chars().all(|c| c.is_ascii_hexdigit());
        let byte = ok
            .then(|| u8::from_str_radix(token, 16).ok())
            .flatten()
            .ok_or_else(|| SyntaxError::BadHexByte {
                index,
                token: shorten(token),
            })?;
        out.push(byte);
    }
    Ok(out)
}

fn no_breaks(what: &'static str, s: &str) -> Result<(), WriteError> {
    if s.contains(['\r', '\n', '\0']) {
        return Err(WriteError::ControlCharacter {
            what,
            text: s.to_owned(),
        });
    }
    Ok(())
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn write_value(out: &mut String, value: &RegValue) -> Result<(), WriteError> {
    no_breaks("value name", &value.name)?;
    let mut line = if value.name.is_empty() {
        "@=".to_owned()
    } else {
        format!("\"{}\"=", escape(&value.name))
    };
    match &value.data {
        RegData::String(s) => {
            no_breaks("string", s)?;
            line.push_str(&format!("\"{}\"", escape(s)));
        }
        RegData::Dword(n) => line.push_str(&format!("dword:{n:08x}")),
        RegData::Delete => line.push('-'),
        RegData::Hex { kind, bytes } => {
            if *kind == REG_BINARY {
                line.push_str("hex:");
            } else {
                line.push_str(&format!("hex({kind:x}):"));
            }
            // Byte by byte rather than `hex::encode`: regedit separates the bytes with commas
            // and wraps the line, which plain hex has no room for.
            let mut column = line.chars().count();
            for (i, b) in bytes.iter().enumerate() {
                line.push_str(&format!("{b:02x}"));
                if i + 1 == bytes.len() {
                    break;
                }
                line.push(',');
                column += 3;
                if column >= HEX_LINE_WIDTH {
                    line.push_str("\\\r\n  ");
                    column = 2;
                }
            }
        }
    }
    out.push_str(&line);
    out.push_str("\r\n");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<RegFile, RegError> {
        RegFile::parse_str(s)
    }

    fn one_value(body: &str) -> Result<RegValue, RegError> {
        let f = parse(&format!("REGEDIT4\n[HKEY_CURRENT_USER\\K]\n{body}\n"))?;
        Ok(f.keys[0].values[0].clone())
    }

    #[test]
    fn values() {
        let b = |v: &[u8]| RegData::binary(v.to_vec());
        let cases: Vec<(&str, &str, RegData)> = vec![
            (r#""A"="x""#, "A", RegData::String("x".into())),
            (r#""A"="""#, "A", RegData::String(String::new())),
            (
                r#""A"="C:\\Temp\\\"q\"""#,
                "A",
                RegData::String(r#"C:\Temp\"q""#.into()),
            ),
            (
                r#""A"="semi;colon" ; comment"#,
                "A",
                RegData::String("semi;colon".into()),
            ),
            (r#""Na\"me\\"=dword:1"#, "Na\"me\\", RegData::Dword(1)),
            (r#"@="default""#, "", RegData::String("default".into())),
            (r#""A" = DWORD:FFFFFFFF"#, "A", RegData::Dword(u32::MAX)),
            (r#""A"=dword:00000001 ; on"#, "A", RegData::Dword(1)),
            (r#""A"=-"#, "A", RegData::Delete),
            (r#""A"=hex:"#, "A", b(&[])),
            (r#""A"=hex:46,00,0F"#, "A", b(&[0x46, 0, 0xf])),
            (r#""A"=HEX:4,0f,"#, "A", b(&[4, 0xf])),
            ("\"A\"=hex:01,\\\n  02,\\\n  03", "A", b(&[1, 2, 3])),
            ("\"A\"=hex:01,\\\n; note\n  02 ; end", "A", b(&[1, 2])),
            ("\"A\"=hex:01,\\\r\n  02", "A", b(&[1, 2])),
            ("\"A\"=hex:01,\\", "A", b(&[1])),
            (
                r#""A"=hex(2):25,00,00,00"#,
                "A",
                RegData::Hex {
                    kind: 2,
                    bytes: vec![0x25, 0, 0, 0],
                },
            ),
            (
                r#""A"=hex(b):01,00,00,00,00,00,00,00"#,
                "A",
                RegData::Hex {
                    kind: 0xb,
                    bytes: vec![1, 0, 0, 0, 0, 0, 0, 0],
                },
            ),
            (r#""A"=hex(3):ff"#, "A", b(&[0xff])),
        ];
        for (input, name, data) in cases {
            let v = one_value(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!((v.name.as_str(), &v.data), (name, &data), "{input:?}");
        }
    }

    #[test]
    fn syntax_errors_name_the_line() {
        // (file, line, text in the message)
        let cases = [
            ("REGEDIT4\n\"A\"=dword:1\n", 2, "before any [key]"),
            ("REGEDIT4\n[HKEY_CURRENT_USER\\K\n", 2, "no closing ']'"),
            (
                "REGEDIT4\n[HKEY_CURRENT_USER\\K] x\n",
                2,
                "unexpected text \"x\"",
            ),
            (
                "REGEDIT4\n[HKEY_FOO\\K]\n",
                2,
                "\"HKEY_FOO\", which is not a root key",
            ),
            ("REGEDIT4\n[HKCU\\a\\\\b]\n", 2, "empty name"),
            ("REGEDIT4\n[]\n", 2, "empty"),
            (
                "REGEDIT4\n[HKCU\\K]\n\"A\"=\"C:\\Temp\"\n",
                3,
                "unknown escape '\\T'",
            ),
            ("REGEDIT4\n[HKCU\\K]\n\"A\"=\"open\n", 3, "no closing '\"'"),
            ("REGEDIT4\n[HKCU\\K]\n\"A\"dword:1\n", 3, "expected '='"),
            (
                "REGEDIT4\n[HKCU\\K]\n\"A\"=dword:123456789\n",
                3,
                "bad dword",
            ),
            ("REGEDIT4\n[HKCU\\K]\n\"A\"=dword:\n", 3, "bad dword"),
            ("REGEDIT4\n[HKCU\\K]\n\"A\"=dword:0x1\n", 3, "bad dword"),
            (
                "REGEDIT4\n[HKCU\\K]\n\n\"A\"=hex:01,\\\n  zz\n",
                4,
                "bad byte \"zz\" at index 1",
            ),
            (
                "REGEDIT4\n[HKCU\\K]\n\"A\"=hex:01,,02\n",
                3,
                "bad byte \"\" at index 1",
            ),
            (
                "REGEDIT4\n[HKCU\\K]\n\"A\"=hex:100\n",
                3,
                "bad byte \"100\"",
            ),
            ("REGEDIT4\n[HKCU\\K]\n\"A\"=hex(x):00\n", 3, "bad hex type"),
            ("REGEDIT4\n[HKCU\\K]\n\"A\"=hex(2)00\n", 3, "bad hex type"),
            ("REGEDIT4\n[HKCU\\K]\n\"A\"=str:00\n", 3, "is not a string"),
            (
                "REGEDIT4\n[HKCU\\K]\n\"A\"=\"x\" y\n",
                3,
                "unexpected text \"y\"",
            ),
            ("REGEDIT4\n[HKCU\\K]\nA=1\n", 3, "cannot read \"A=1\""),
            ("REGEDIT4\n[-HKCU\\K]\n\"A\"=-\n", 3, "deleted key"),
        ];
        for (input, line, text) in cases {
            let e = parse(input).unwrap_err();
            assert_eq!(e.line(), Some(line), "{input:?}: {e}");
            assert!(e.to_string().contains(text), "{input:?}: {e}");
        }
    }

    #[test]
    fn headers() {
        let cases = [
            (
                "Windows Registry Editor Version 5.00\r\n",
                Ok(RegFormat::V5),
            ),
            (
                "\n\n  windows registry editor version 5.00  \n",
                Ok(RegFormat::V5),
            ),
            ("REGEDIT4", Ok(RegFormat::Regedit4)),
            ("\u{feff}REGEDIT4\r\n", Ok(RegFormat::Regedit4)),
            ("REGEDIT5\n", Err("the first line is \"REGEDIT5\"")),
            ("", Err("the first line is \"\"")),
            ("[HKEY_CURRENT_USER\\K]\n", Err("not a .reg file")),
        ];
        for (input, want) in cases {
            match (parse(input), want) {
                (Ok(f), Ok(fmt)) => assert_eq!(f.format, fmt),
                (Err(e), Err(text)) => assert!(e.to_string().contains(text), "{input:?}: {e}"),
                (got, want) => panic!("{input:?}: {got:?} vs {want:?}"),
            }
        }
    }

    #[test]
    fn regedit4_is_ansi_even_when_it_looks_like_utf8() {
        let value = |bytes: &[u8]| {
            RegFile::parse(bytes).unwrap().keys[0].values[0]
                .data
                .as_str()
                .unwrap()
                .to_owned()
        };
        let body = b"[HKEY_CURRENT_USER\\K]\n\"A\"=\"caf\xc3\xa9\"\n";
        let cases: [(&[u8], &str); 4] = [
            (b"REGEDIT4\n", "caf\u{c3}\u{a9}"),
            (b"Windows Registry Editor Version 5.00\n", "caf\u{e9}"),
            (b"\xef\xbb\xbfREGEDIT4\n", "caf\u{e9}"),
            (b"REGEDIT4\n; \xff\n", "caf\u{c3}\u{a9}"),
        ];
        for (header, want) in cases {
            assert_eq!(value(&[header, &body[..]].concat()), want, "{header:?}");
        }
    }

    #[test]
    fn keys_and_hives() {
        let f = parse(
            "REGEDIT4\n[HKEY_Current_User\\A]\n[hklm\\B\\]\n[-HKEY_USERS\\S-1-5-18\\C] ; gone\n\
             [HKU]\n[HKEY_LOCAL_MACHINE\\We]ird]\n",
        )
        .unwrap();
        let got: Vec<(String, bool)> = f
            .keys
            .iter()
            .map(|k| (k.path.to_string(), k.delete))
            .collect();
        assert_eq!(
            got,
            [
                ("HKEY_CURRENT_USER\\A".to_owned(), false),
                ("HKEY_LOCAL_MACHINE\\B".to_owned(), false),
                ("HKEY_USERS\\S-1-5-18\\C".to_owned(), true),
                ("HKEY_USERS".to_owned(), false),
                ("HKEY_LOCAL_MACHINE\\We]ird".to_owned(), false),
            ]
        );
    }

    #[test]
    fn key_path_relations() {
        let p = |s| KeyPath::parse(s).unwrap();
        let conn = p(
            r"HKU\S-1-5-18\Software\Microsoft\Windows\CurrentVersion\Internet Settings\Connections",
        );
        assert!(conn.ends_with(r"internet settings\CONNECTIONS"));
        assert!(!conn.ends_with(r"Settings\Connections\X"));
        assert!(!conn.ends_with(r"ternet Settings\Connections"));
        assert!(conn.is_within(&p(r"HKEY_USERS\s-1-5-18")));
        assert!(conn.is_within(&p("HKU")));
        assert!(!conn.is_within(&p(r"HKU\S-1-5-1")));
        assert!(!conn.is_within(&p(r"HKLM\S-1-5-18")));
        assert!(p(r"HKCU\A\b").same_key(&p(r"HKEY_CURRENT_USER\a\B")));
    }

    #[test]
    fn resolved_applies_deletions_in_order() {
        let f = parse(
            "REGEDIT4\n\
             [HKCU\\A]\n\"x\"=dword:1\n\"y\"=dword:2\n\
             [HKCU\\A\\Sub]\n\"z\"=dword:3\n\
             [HKCU\\Other]\n\"w\"=dword:4\n\
             [hkcu\\a]\n\"X\"=dword:9\n\"y\"=-\n\"gone\"=-\n\
             [-HKCU\\A\\Sub]\n\
             [-HKCU\\Other]\n[HKCU\\Other]\n\"v\"=dword:5\n",
        )
        .unwrap();
        type Resolved = Vec<(String, Vec<(String, Option<u32>)>)>;
        let got: Resolved = f
            .resolved()
            .into_iter()
            .map(|k| {
                (
                    k.path.to_string(),
                    k.values
                        .iter()
                        .map(|v| (v.name.clone(), v.data.as_dword()))
                        .collect(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    "HKEY_CURRENT_USER\\A".to_owned(),
                    vec![("X".to_owned(), Some(9))]
                ),
                (
                    "HKEY_CURRENT_USER\\Other".to_owned(),
                    vec![("v".to_owned(), Some(5))]
                ),
            ]
        );
    }

    #[test]
    fn writes_what_regedit_writes() {
        let mut f = RegFile::new(RegFormat::V5);
        f.push_key(
            KeyPath::parse(r"HKCU\Software\Test").unwrap(),
            vec![
                RegValue::new("", RegData::String("def".into())),
                RegValue::new("S", RegData::String(r#"a\b"c"#.into())),
                RegValue::new("D", RegData::Dword(0xa)),
                RegValue::new("Gone", RegData::Delete),
                RegValue::new(
                    "E",
                    RegData::Hex {
                        kind: REG_EXPAND_SZ,
                        bytes: vec![0x25, 0],
                    },
                ),
                RegValue::new("B", RegData::binary(vec![])),
            ],
        );
        f.keys.push(RegKey {
            path: KeyPath::parse(r"HKLM\Old").unwrap(),
            delete: true,
            values: vec![],
        });
        let want = "Windows Registry Editor Version 5.00\r\n\r\n\
                    [HKEY_CURRENT_USER\\Software\\Test]\r\n\
                    @=\"def\"\r\n\
                    \"S\"=\"a\\\\b\\\"c\"\r\n\
                    \"D\"=dword:0000000a\r\n\
                    \"Gone\"=-\r\n\
                    \"E\"=hex(2):25,00\r\n\
                    \"B\"=hex:\r\n\
                    \r\n\
                    [-HKEY_LOCAL_MACHINE\\Old]\r\n\
                    \r\n";
        assert_eq!(f.to_text().unwrap(), want);
        assert_eq!(RegFile::parse_str(want).unwrap(), f);
        let bytes = f.to_bytes().unwrap();
        assert_eq!(&bytes[..6], b"\xff\xfeW\x00i\x00");
        assert_eq!(RegFile::parse(&bytes).unwrap(), f);
    }

    #[test]
    fn hex_wraps_like_regedit() {
        // regedit breaks after the comma that reaches column 77: after the 8-character prefix
        // `"A"=hex:`, 23 bytes fit on the first line (8 + 23*3 = 77), then 25 (2 + 25*3).
        let mut f = RegFile::new(RegFormat::Regedit4);
        f.push_key(
            KeyPath::parse(r"HKCU\K").unwrap(),
            vec![RegValue::new("A", RegData::binary((0..49).collect()))],
        );
        let text = f.to_text().unwrap();
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(lines[3].len(), 78, "{}", lines[3]);
        assert!(lines[3].starts_with("\"A\"=hex:00,01,") && lines[3].ends_with("16,\\"));
        assert_eq!(
            lines[4],
            format!(
                "  {}\\",
                (23..48).map(|b| format!("{b:02x},")).collect::<String>()
            )
        );
        assert_eq!(lines[5], "  30");
    }

    #[test]
    fn wrapping_matches_public_regedit_exports() {
        // Values from public regedit exports of service keys (NetTcpPortSharing's
        // FailureActions, webthreatdefsvc's DependOnService): prefixes of 21 and 25 characters,
        // so the break falls after 19 and 18 bytes.
        let exports = [
            "\"FailureActions\"=hex:84,03,00,00,00,00,00,00,00,00,00,00,03,00,00,00,14,00,00,\\\r\n  \
             00,01,00,00,00,c0,d4,01,00,01,00,00,00,e0,93,04,00,00,00,00,00,00,00,00,00\r\n",
            "\"DependOnService\"=hex(7):52,00,70,00,63,00,53,00,73,00,00,00,77,00,74,00,64,00,\\\r\n  \
             00,00,00,00\r\n",
        ];
        for export in exports {
            let text =
                format!("{HEADER_V5}\r\n\r\n[HKEY_LOCAL_MACHINE\\SYSTEM\\X]\r\n{export}\r\n");
            let f = RegFile::parse_str(&text).unwrap();
            assert_eq!(f.to_text().unwrap(), text);
        }
    }

    #[test]
    fn write_errors() {
        let mut f = RegFile::new(RegFormat::Regedit4);
        f.push_key(
            KeyPath::parse(r"HKCU\K").unwrap(),
            vec![RegValue::new("A", RegData::String("Ω".into()))],
        );
        assert!(f
            .to_bytes()
            .unwrap_err()
            .to_string()
            .contains("cannot hold 'Ω'"));
        f.format = RegFormat::V5;
        assert!(f.to_bytes().is_ok());
        f.keys[0].values[0].data = RegData::String("two\nlines".into());
        assert!(f.to_text().unwrap_err().to_string().contains("line break"));
    }
}
