//! Microsoft's "Azure IP Ranges and Service Tags" JSON (`ServiceTags_Public_*.json` and the
//! other clouds' files): parsing, picking one tag, and validating its prefixes.
//!
//! The seeds tell administrators to allow the IP ranges of a service tag and to "periodically
//! check that the configured IP addresses are still up-to-date"; this module is the reading half
//! of that. The file is about 4 MB with ~90,000 prefixes, and the allow-list commands read it on
//! every run, so it is parsed in one pass into borrowed slices of the input (no string copies
//! unless a string contains JSON escapes), and only the selected tag's prefixes are converted
//! and validated. A damaged prefix in some other tag therefore does not block this one.
//!
//! Errors carry what a person needs to fix the input: the line and column of a JSON error or
//! of a bad prefix, the two positions of a duplicate, the closest names to an unknown tag.
//!
//! Not done here: downloading the file (the caller reads bytes; uplink never touches the
//! network for this), or rendering (`firewall`, `text`).

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, Visitor};
use serde::Deserialize;

use crate::cidr::{Family, Prefix, PrefixError};

/// Where Microsoft publishes the files, for error messages.
pub const DOWNLOAD_HINT: &str = "download it again from https://www.microsoft.com/download/details.aspx?id=56519 (Public cloud; id=57063 for US Government)";

/// A parsed service-tags document, borrowing from the bytes it was parsed from.
#[derive(Debug)]
pub struct Document<'a> {
    src: &'a [u8],
    /// The file's `changeNumber` (increases with every published change).
    pub change_number: u64,
    /// The file's `cloud`: `Public`, `AzureGovernment`, `AzureChinaCloud`, ….
    pub cloud: Cow<'a, str>,
    /// Every tag, in file order.
    pub tags: Vec<Tag<'a>>,
}

/// One entry of `values[]`.
#[derive(Debug)]
pub struct Tag<'a> {
    /// `name`, e.g. `AzureAdvancedThreatProtection` or `AzureCloud.westeurope`.
    pub name: Cow<'a, str>,
    /// `properties.changeNumber` of this tag.
    pub change_number: Option<u64>,
    /// `properties.region`: empty for global tags, e.g. `westeurope` for regional ones.
    pub region: Cow<'a, str>,
    /// `properties.addressPrefixes`, unparsed.
    pub prefixes: Vec<Cow<'a, str>>,
}

/// What to take out of a document.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<'q> {
    /// The tag name; matched exactly, else case-insensitively when that is unambiguous.
    pub tag: &'q str,
    /// A region: selects the regional tag `<tag>.<Region>` (matched on the name suffix or on
    /// `properties.region`, case-insensitively).
    pub region: Option<&'q str>,
    /// Keep only one family.
    pub family: Option<Family>,
}

/// One tag's validated prefixes and the numbers that identify the data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// The tag's name as the file spells it.
    pub tag: String,
    pub cloud: String,
    /// The file's `changeNumber`.
    pub change_number: u64,
    /// The tag's own `changeNumber`.
    pub tag_change_number: Option<u64>,
    /// `properties.region` (empty for a global tag).
    pub region: String,
    /// The family asked for (`None`: both).
    pub family: Option<Family>,
    /// True after [`Selection::aggregate`].
    pub aggregated: bool,
    /// The prefixes in file order, each valid and none repeated, filtered by family; after
    /// [`Selection::aggregate`], the minimal covering set in address order.
    pub prefixes: Vec<Prefix>,
}

impl Selection {
    /// Replaces the prefixes by the minimal set covering the same addresses.
    pub fn aggregate(mut self) -> Selection {
        self.prefixes = crate::cidr::aggregate(&self.prefixes);
        self.aggregated = true;
        self
    }

    /// The families present, IPv4 first.
    pub fn families(&self) -> Vec<Family> {
        [Family::V4, Family::V6]
            .into_iter()
            .filter(|f| self.prefixes.iter().any(|p| p.family() == *f))
            .collect()
    }

    /// One line naming the data, for the headers of generated files.
    pub fn summary(&self) -> String {
        let mut s = format!("tag {}", self.tag);
        if !self.region.is_empty() {
            s.push_str(&format!(" (region {})", self.region));
        }
        s.push_str(&format!(
            ", cloud {}, changeNumber {}",
            self.cloud, self.change_number
        ));
        if let Some(n) = self.tag_change_number {
            s.push_str(&format!(" (tag {n})"));
        }
        let family = self.family.map(|f| format!(" {f}")).unwrap_or_default();
        s.push_str(&format!(
            ", {}{family} prefixes{}",
            self.prefixes.len(),
            if self.aggregated { ", aggregated" } else { "" }
        ));
        s
    }
}

/// A place in the input: line and column (1-based) when known, and the index in the tag's list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Index in `addressPrefixes` (0-based).
    pub index: usize,
    /// Line and column of the string's opening quote; unknown for strings with JSON escapes.
    pub line_col: Option<(usize, usize)>,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line_col {
            Some((l, c)) => write!(f, "line {l}, column {c}"),
            None => write!(f, "addressPrefixes[{}]", self.index),
        }
    }
}

/// Why a document or a tag could not be used. Every message says what to do next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagsError {
    #[error("the file is empty: {DOWNLOAD_HINT}")]
    EmptyFile,
    #[error("the JSON ends early at line {line}, column {column}: the file is truncated (an interrupted download?); {DOWNLOAD_HINT}")]
    Truncated { line: usize, column: usize },
    #[error("invalid JSON at line {line}, column {column}: {detail}. Is this the service-tags file? If it is, the copy is damaged: {DOWNLOAD_HINT}")]
    Json {
        line: usize,
        column: usize,
        detail: String,
    },
    #[error("not a service-tags document ({detail} at line {line}, column {column}): expected Microsoft's ServiceTags_*.json, an object with changeNumber, cloud and values[] whose properties hold addressPrefixes")]
    NotServiceTags {
        line: usize,
        column: usize,
        detail: String,
    },
    #[error("the tag name is empty: give one such as AzureAdvancedThreatProtection")]
    EmptyTagName,
    #[error("no tag named {tag:?} in this file (cloud {cloud}, changeNumber {change_number}){}", closest_hint(.closest))]
    UnknownTag {
        tag: String,
        cloud: String,
        change_number: u64,
        closest: Vec<String>,
    },
    #[error("the tag name {tag:?} matches several tags that differ only in case ({}); spell it exactly", .matches.join(", "))]
    AmbiguousTag { tag: String, matches: Vec<String> },
    #[error("the tag {tag:?} appears {count} times in this file: the file is damaged or not Microsoft's; {DOWNLOAD_HINT}")]
    DuplicateTag { tag: String, count: usize },
    #[error("{tag} has no regional tags in this file (cloud {cloud}, changeNumber {change_number}): Microsoft publishes it only as one global tag; leave out --region")]
    NoRegionalTags {
        tag: String,
        cloud: String,
        change_number: u64,
    },
    #[error("{tag} has no tag for region {region:?}; its regions in this file are: {}", .available.join(", "))]
    UnknownRegion {
        tag: String,
        region: String,
        available: Vec<String>,
    },
    #[error("the tag {tag} lists no {}prefixes; refusing to make an empty allow-list (it would allow nothing and look like success){}", family.map(|f| format!("{f} ")).unwrap_or_default(), family.map(|_| "; choose the other --family or leave it out").unwrap_or(""))]
    EmptyTag { tag: String, family: Option<Family> },
    #[error("the tag {tag} has a malformed prefix {text:?} at {at}: {reason}")]
    BadPrefix {
        tag: String,
        text: String,
        at: Position,
        reason: PrefixError,
    },
    #[error("the tag {tag} lists {prefix} twice (at {first} and at {second}): the file is damaged or not Microsoft's; {DOWNLOAD_HINT}")]
    DuplicatePrefix {
        tag: String,
        prefix: String,
        first: Position,
        second: Position,
    },
}

fn closest_hint(closest: &[String]) -> String {
    if closest.is_empty() {
        "; list the names with: jq -r '.values[].name' FILE".to_owned()
    } else {
        format!("; closest names: {}", closest.join(", "))
    }
}

impl<'a> Document<'a> {
    /// Parses a whole document. Only the structure is checked here; prefixes are checked by
    /// [`Document::select`] for the tag asked for.
    pub fn parse(src: &'a [u8]) -> Result<Document<'a>, TagsError> {
        // Files saved by some Windows tools start with a UTF-8 byte order mark.
        let src = src.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(src);
        if src.iter().all(u8::is_ascii_whitespace) {
            return Err(TagsError::EmptyFile);
        }
        // serde would read an array as the struct's fields in order; a service-tags file is an
        // object, and saying so beats "expected a string" deep inside.
        let first = src
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(0);
        let kind = match src[first] {
            b'[' => Some("an array"),
            b'"' => Some("a string"),
            b'0'..=b'9' | b'-' => Some("a number"),
            b't' | b'f' => Some("a boolean"),
            b'n' => Some("null"),
            _ => None,
        };
        if let Some(kind) = kind {
            // Still report a syntax error first if the text is not JSON at all.
            if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(src) {
                return Err(json_error(e));
            }
            let (line, column) = line_col(src, first);
            return Err(TagsError::NotServiceTags {
                line,
                column,
                detail: format!("the top level is {kind}, not an object"),
            });
        }
        let raw: RawDoc<'a> = serde_json::from_slice(src).map_err(json_error)?;
        let tags = raw
            .values
            .into_iter()
            .map(|t| Tag {
                name: t.name.0,
                change_number: t.properties.change_number,
                region: t.properties.region.map(|r| r.0).unwrap_or_default(),
                prefixes: t
                    .properties
                    .address_prefixes
                    .into_iter()
                    .map(|p| p.0)
                    .collect(),
            })
            .collect();
        Ok(Document {
            src,
            change_number: raw.change_number,
            cloud: raw.cloud.0,
            tags,
        })
    }

    /// Finds a tag by name: exactly, else case-insensitively if only one tag matches.
    pub fn find(&self, name: &str) -> Result<&Tag<'a>, TagsError> {
        if name.trim().is_empty() {
            return Err(TagsError::EmptyTagName);
        }
        let exact: Vec<&Tag<'a>> = self.tags.iter().filter(|t| t.name == name).collect();
        match exact.len() {
            1 => return Ok(exact[0]),
            0 => {}
            count => {
                return Err(TagsError::DuplicateTag {
                    tag: name.to_owned(),
                    count,
                })
            }
        }
        let folded: Vec<&Tag<'a>> = self
            .tags
            .iter()
            .filter(|t| t.name.eq_ignore_ascii_case(name))
            .collect();
        match folded.len() {
            1 => Ok(folded[0]),
            0 => Err(TagsError::UnknownTag {
                tag: name.to_owned(),
                cloud: self.cloud.to_string(),
                change_number: self.change_number,
                closest: closest_names(self.tags.iter().map(|t| t.name.as_ref()), name, 5),
            }),
            _ => Err(TagsError::AmbiguousTag {
                tag: name.to_owned(),
                matches: folded.iter().map(|t| t.name.to_string()).collect(),
            }),
        }
    }

    /// Finds the regional tag of `base` for `region`.
    fn find_regional(&self, base: &str, region: &str) -> Result<&Tag<'a>, TagsError> {
        let base_tag = self.find(base)?;
        let prefix_len = base_tag.name.len() + 1;
        let regional: Vec<&Tag<'a>> = self
            .tags
            .iter()
            .filter(|t| {
                t.name.len() > prefix_len
                    && t.name.as_bytes()[prefix_len - 1] == b'.'
                    && t.name[..prefix_len - 1].eq_ignore_ascii_case(&base_tag.name)
            })
            .collect();
        if regional.is_empty() {
            return Err(TagsError::NoRegionalTags {
                tag: base_tag.name.to_string(),
                cloud: self.cloud.to_string(),
                change_number: self.change_number,
            });
        }
        let matches = |t: &&&Tag<'a>| {
            t.name[prefix_len..].eq_ignore_ascii_case(region)
                || t.region.eq_ignore_ascii_case(region)
        };
        match regional.iter().find(matches) {
            Some(t) => Ok(t),
            None => {
                let mut available: Vec<String> = regional
                    .iter()
                    .map(|t| {
                        if t.region.is_empty() {
                            t.name[prefix_len..].to_owned()
                        } else {
                            t.region.to_string()
                        }
                    })
                    .collect();
                available.sort();
                available.dedup();
                Err(TagsError::UnknownRegion {
                    tag: base_tag.name.to_string(),
                    region: region.to_owned(),
                    available,
                })
            }
        }
    }

    /// Picks a tag, validates all its prefixes (syntax, host bits, duplicates) and keeps those
    /// of the family asked for. An empty result is an error, never an empty allow-list.
    pub fn select(&self, query: &Query<'_>) -> Result<Selection, TagsError> {
        let tag = match query.region {
            Some(region) => self.find_regional(query.tag, region)?,
            None => self.find(query.tag)?,
        };
        let name = tag.name.to_string();
        if tag.prefixes.is_empty() {
            return Err(TagsError::EmptyTag {
                tag: name,
                family: None,
            });
        }
        let mut parsed = Vec::with_capacity(tag.prefixes.len());
        for (index, text) in tag.prefixes.iter().enumerate() {
            match Prefix::parse(text) {
                Ok(p) => parsed.push(p),
                Err(reason) => {
                    return Err(TagsError::BadPrefix {
                        tag: name,
                        text: text.to_string(),
                        at: self.position(&tag.prefixes, index),
                        reason,
                    })
                }
            }
        }
        let mut order: Vec<(Prefix, usize)> = parsed.iter().copied().zip(0..parsed.len()).collect();
        order.sort_unstable();
        // Report the duplicate whose second occurrence comes first in the file.
        if let Some(w) = order
            .windows(2)
            .filter(|w| w[0].0 == w[1].0)
            .min_by_key(|w| w[1].1)
        {
            return Err(TagsError::DuplicatePrefix {
                tag: name,
                prefix: w[0].0.to_string(),
                first: self.position(&tag.prefixes, w[0].1),
                second: self.position(&tag.prefixes, w[1].1),
            });
        }
        if let Some(family) = query.family {
            parsed.retain(|p| p.family() == family);
            if parsed.is_empty() {
                return Err(TagsError::EmptyTag {
                    tag: name,
                    family: Some(family),
                });
            }
        }
        Ok(Selection {
            tag: name,
            cloud: self.cloud.to_string(),
            change_number: self.change_number,
            tag_change_number: tag.change_number,
            region: tag.region.to_string(),
            family: query.family,
            aggregated: false,
            prefixes: parsed,
        })
    }

    fn position(&self, prefixes: &[Cow<'a, str>], index: usize) -> Position {
        let line_col = match &prefixes[index] {
            Cow::Borrowed(s) => offset_in(self.src, s).map(|off| line_col(self.src, off)),
            Cow::Owned(_) => None,
        };
        Position { index, line_col }
    }
}

/// The byte offset of the opening quote of `s`, a slice borrowed from `src`.
fn offset_in(src: &[u8], s: &str) -> Option<usize> {
    let base = src.as_ptr() as usize;
    let at = s.as_ptr() as usize;
    (at > base && at + s.len() <= base + src.len()).then(|| at - base - 1)
}

/// 1-based line and column (in bytes) of `offset`.
fn line_col(src: &[u8], offset: usize) -> (usize, usize) {
    let before = &src[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    (line, offset - line_start + 1)
}

fn json_error(e: serde_json::Error) -> TagsError {
    let (line, column) = (e.line(), e.column());
    let detail = e.to_string();
    let detail = detail
        .strip_suffix(&format!(" at line {line} column {column}"))
        .unwrap_or(&detail)
        .to_owned();
    match e.classify() {
        serde_json::error::Category::Eof => TagsError::Truncated { line, column },
        serde_json::error::Category::Data => TagsError::NotServiceTags {
            line,
            column,
            detail,
        },
        serde_json::error::Category::Syntax | serde_json::error::Category::Io => TagsError::Json {
            line,
            column,
            detail,
        },
    }
}

/// Up to `n` names closest to `wanted` (case-insensitive edit distance; names containing it, or
/// contained in it, count as close), best first.
pub fn closest_names<'n>(
    names: impl Iterator<Item = &'n str>,
    wanted: &str,
    n: usize,
) -> Vec<String> {
    let w = wanted.to_ascii_lowercase();
    let threshold = (w.chars().count() / 3).max(3);
    let mut scored: Vec<(usize, &str)> = names
        .filter_map(|name| {
            let lower = name.to_ascii_lowercase();
            let distance = strsim::levenshtein(&lower, &w);
            let related = lower.len() >= 3 && (lower.contains(&w) || w.contains(&lower));
            (distance <= threshold || related).then_some((distance, name))
        })
        .collect();
    scored.sort_unstable();
    scored.dedup_by(|a, b| a.1 == b.1);
    scored
        .into_iter()
        .take(n)
        .map(|(_, s)| s.to_owned())
        .collect()
}

// ---- serde shapes: only the fields we use; unknown fields are ignored ----

#[derive(Deserialize)]
struct RawDoc<'a> {
    #[serde(rename = "changeNumber")]
    change_number: u64,
    #[serde(borrow)]
    cloud: Text<'a>,
    #[serde(borrow)]
    values: Vec<RawTag<'a>>,
}

#[derive(Deserialize)]
struct RawTag<'a> {
    #[serde(borrow)]
    name: Text<'a>,
    #[serde(borrow)]
    properties: RawProps<'a>,
}

#[derive(Deserialize)]
struct RawProps<'a> {
    #[serde(rename = "changeNumber", default)]
    change_number: Option<u64>,
    #[serde(borrow, default)]
    region: Option<Text<'a>>,
    #[serde(rename = "addressPrefixes", borrow)]
    address_prefixes: Vec<Text<'a>>,
}

/// A JSON string borrowed from the input when it has no escapes, owned otherwise. (serde's own
/// `Cow<str>` always copies when nested in a `Vec`.)
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"{
  "changeNumber": 7,
  "cloud": "Public",
  "values": [
    {
      "name": "AzureAdvancedThreatProtection",
      "id": "AzureAdvancedThreatProtection",
      "properties": {
        "changeNumber": 3,
        "region": "",
        "addressPrefixes": ["20.37.64.112/29", "2603:1000:4::140/123", "13.87.32.4/32"]
      }
    },
    {
      "name": "AzureCloud.westeurope",
      "properties": { "changeNumber": 2, "region": "westeurope", "addressPrefixes": ["10.0.0.0/8"] }
    },
    {
      "name": "AzureCloud.EastUS",
      "properties": { "region": "eastus", "addressPrefixes": ["11.0.0.0/8"] }
    },
    {
      "name": "AzureCloud",
      "properties": { "region": "", "addressPrefixes": ["10.0.0.0/8", "11.0.0.0/8"] }
    },
    { "name": "Empty", "properties": { "addressPrefixes": [] } },
    { "name": "Bad", "properties": { "addressPrefixes": ["1.2.3.0/24",
        "1.2.3.4/24"] } },
    { "name": "Dup", "properties": { "addressPrefixes": ["1.2.3.0/24", "5.0.0.0/8",
      "1.2.3.0/24"] } },
    { "name": "Escaped", "properties": { "addressPrefixes": ["1.2.3.0/24", "\u0031.2.3.0/24"] } },
    { "name": "V4only", "properties": { "addressPrefixes": ["1.2.3.0/24"] } }
  ]
}"#;

    fn doc() -> Document<'static> {
        Document::parse(DOC.as_bytes()).unwrap()
    }

    fn q(tag: &str) -> Query<'_> {
        Query {
            tag,
            ..Query::default()
        }
    }

    fn texts(s: &Selection) -> Vec<String> {
        s.prefixes.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn selects_tags_by_name_region_and_family() {
        let d = doc();
        assert_eq!(d.change_number, 7);
        assert_eq!(d.cloud, "Public");
        assert_eq!(d.tags.len(), 9);
        let cases: &[(Query<'_>, &str, &[&str])] = &[
            (
                q("AzureAdvancedThreatProtection"),
                "AzureAdvancedThreatProtection",
                &["20.37.64.112/29", "2603:1000:4::140/123", "13.87.32.4/32"],
            ),
            (
                q("azureadvancedthreatprotection"),
                "AzureAdvancedThreatProtection",
                &["20.37.64.112/29", "2603:1000:4::140/123", "13.87.32.4/32"],
            ),
            (
                Query {
                    family: Some(Family::V6),
                    ..q("AzureAdvancedThreatProtection")
                },
                "AzureAdvancedThreatProtection",
                &["2603:1000:4::140/123"],
            ),
            (
                Query {
                    region: Some("WestEurope"),
                    ..q("AzureCloud")
                },
                "AzureCloud.westeurope",
                &["10.0.0.0/8"],
            ),
            (
                Query {
                    region: Some("eastus"),
                    ..q("azurecloud")
                },
                "AzureCloud.EastUS",
                &["11.0.0.0/8"],
            ),
            (
                q("AzureCloud.westeurope"),
                "AzureCloud.westeurope",
                &["10.0.0.0/8"],
            ),
        ];
        for (query, name, want) in cases {
            let s = d.select(query).unwrap_or_else(|e| panic!("{query:?}: {e}"));
            assert_eq!(s.tag, *name);
            assert_eq!(texts(&s), *want, "{query:?}");
        }
        let s = d.select(&q("AzureCloud.westeurope")).unwrap();
        assert_eq!((s.change_number, s.tag_change_number), (7, Some(2)));
        assert_eq!(s.region, "westeurope");
    }

    #[test]
    fn select_errors_say_what_and_where() {
        let d = doc();
        let cases: &[(Query<'_>, &str)] = &[
            (q(""), "tag name is empty"),
            (
                q("AzureAdvancedThreatProtecton"),
                "no tag named \"AzureAdvancedThreatProtecton\" in this file (cloud Public, changeNumber 7); closest names: AzureAdvancedThreatProtection",
            ),
            (q("zzzzzzzzzzzzzzzzzzzzzzzz"), "jq -r '.values[].name' FILE"),
            (
                Query {
                    region: Some("westeurope"),
                    ..q("AzureAdvancedThreatProtection")
                },
                "AzureAdvancedThreatProtection has no regional tags in this file (cloud Public, changeNumber 7)",
            ),
            (
                Query {
                    region: Some("mars"),
                    ..q("AzureCloud")
                },
                "AzureCloud has no tag for region \"mars\"; its regions in this file are: eastus, westeurope",
            ),
            (q("Empty"), "the tag Empty lists no prefixes"),
            (
                Query {
                    family: Some(Family::V6),
                    ..q("V4only")
                },
                "lists no ipv6 prefixes",
            ),
            (
                q("Bad"),
                "the tag Bad has a malformed prefix \"1.2.3.4/24\" at line 28, column 9: host bits are set after /24: the network is 1.2.3.0/24",
            ),
            (
                q("Dup"),
                "the tag Dup lists 1.2.3.0/24 twice (at line 29, column 58 and at line 30, column 7)",
            ),
            (
                q("Escaped"),
                "lists 1.2.3.0/24 twice (at line 31, column 62 and at addressPrefixes[1])",
            ),
        ];
        for (query, want) in cases {
            let err = d.select(query).unwrap_err().to_string();
            assert!(err.contains(want), "{query:?}:\n got {err}\nwant {want}");
        }
    }

    #[test]
    fn parse_errors_classify_and_locate() {
        let cases: &[(&str, &str)] = &[
            ("", "the file is empty"),
            ("  \n", "the file is empty"),
            (
                "{\"changeNumber\": 1, \"cloud\": \"Public\", \"values\": [",
                "the JSON ends early at line 1, column 50: the file is truncated",
            ),
            (
                "{\"changeNumber\": 1,\n \"cloud\": \"Public\" \"values\": []}",
                "invalid JSON at line 2, column 20: expected `,` or `}`",
            ),
            ("[1, 2]", "not a service-tags document (the top level is an array, not an object at line 1, column 1)"),
            ("\"ServiceTags\"", "not a service-tags document (the top level is a string, not an object"),
            ("<html>", "invalid JSON at line 1, column 1: expected value"),
            (
                "{\"name\": \"x\"}",
                "not a service-tags document (missing field `changeNumber` at line 1, column 13)",
            ),
            (
                "{\"changeNumber\": 1, \"cloud\": \"Public\", \"values\": [{\"name\": \"a\", \"properties\": {\"addressPrefixes\": [5]}}]}",
                "invalid type: integer `5`, expected a string",
            ),
            (
                "{\"changeNumber\": \"1\", \"cloud\": \"Public\", \"values\": []}",
                "invalid type: string \"1\", expected u64",
            ),
        ];
        for (input, want) in cases {
            let err = Document::parse(input.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(want), "{input:?}:\n got {err}\nwant {want}");
        }
    }

    #[test]
    fn repeated_and_case_twin_tags_are_refused() {
        let text = r#"{"changeNumber": 1, "cloud": "Public", "values": [
            {"name": "Twice", "properties": {"addressPrefixes": ["10.0.0.0/8"]}},
            {"name": "Twice", "properties": {"addressPrefixes": ["11.0.0.0/8"]}},
            {"name": "Ab", "properties": {"addressPrefixes": ["10.0.0.0/8"]}},
            {"name": "AB", "properties": {"addressPrefixes": ["10.0.0.0/8"]}}]}"#;
        let d = Document::parse(text.as_bytes()).unwrap();
        let cases = [
            ("Twice", "the tag \"Twice\" appears 2 times in this file"),
            (
                "ab",
                "matches several tags that differ only in case (Ab, AB); spell it exactly",
            ),
        ];
        for (tag, want) in cases {
            let err = d.select(&q(tag)).unwrap_err().to_string();
            assert!(err.contains(want), "{tag}: {err}");
        }
        assert_eq!(d.select(&q("AB")).unwrap().tag, "AB");
    }

    #[test]
    fn byte_order_mark_and_unknown_fields_are_fine() {
        let text = "\u{feff}{\"changeNumber\": 1, \"cloud\": \"Public\", \"extra\": {}, \"values\": [{\"name\": \"a\", \"id\": \"a\", \"properties\": {\"addressPrefixes\": [\"10.0.0.0/8\"], \"networkFeatures\": null}}]}";
        let d = Document::parse(text.as_bytes()).unwrap();
        assert_eq!(d.select(&q("a")).unwrap().prefixes.len(), 1);
    }

    #[test]
    fn closest_names_ranks_by_distance() {
        let names = [
            "AzureAdvancedThreatProtection",
            "AzureCloud",
            "AzureCloud.westeurope",
            "Storage",
            "Sql",
        ];
        let cases: &[(&str, &[&str])] = &[
            (
                "AzureAdvancedThreatProtecton",
                &["AzureAdvancedThreatProtection"],
            ),
            ("azurcloud", &["AzureCloud"]),
            ("AzureCloud.west", &["AzureCloud", "AzureCloud.westeurope"]),
            ("Storag", &["Storage"]),
            ("nothing-like-it-at-all", &[]),
        ];
        for (wanted, want) in cases {
            assert_eq!(
                closest_names(names.iter().copied(), wanted, 5),
                *want,
                "{wanted}"
            );
        }
    }
}
