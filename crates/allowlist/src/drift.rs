//! Drift of a service tag between two downloads: which prefixes were added and which removed.
//!
//! The seeds ask administrators who allow IP ranges to "periodically check that the configured
//! IP addresses are still up-to-date". `uplink allowlist diff OLD NEW --tag T` is that check for
//! cron: it compares the normalised prefixes (canonical text, so `2603:1000:4:0::140/123` and
//! `2603:1000:4::140/123` are the same) as sets, and the binary maps "changed" to exit 1.
//!
//! This compares prefixes, not addresses: if Microsoft splits a /28 into two /29s the tag has
//! changed even though it covers the same addresses, and the firewall should be reloaded.

use serde::Serialize;

use crate::cidr::Prefix;
use crate::servicetags::Selection;

/// The difference between two selections of one tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Drift {
    pub tag: String,
    pub old_change_number: u64,
    pub new_change_number: u64,
    /// In NEW, not in OLD; sorted.
    pub added: Vec<Prefix>,
    /// In OLD, not in NEW; sorted.
    pub removed: Vec<Prefix>,
    #[serde(skip)]
    pub old_tag_change_number: Option<u64>,
    #[serde(skip)]
    pub new_tag_change_number: Option<u64>,
    #[serde(skip)]
    pub unchanged_count: usize,
}

/// Compares two selections (each already validated: no duplicates).
pub fn diff(old: &Selection, new: &Selection) -> Drift {
    let mut a = old.prefixes.clone();
    let mut b = new.prefixes.clone();
    a.sort_unstable();
    b.sort_unstable();
    let (mut added, mut removed, mut same) = (Vec::new(), Vec::new(), 0);
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x == y => {
                same += 1;
                i += 1;
                j += 1;
            }
            (Some(x), Some(y)) if x < y => {
                removed.push(*x);
                i += 1;
            }
            (Some(_), Some(y)) => {
                added.push(*y);
                j += 1;
            }
            (Some(x), None) => {
                removed.push(*x);
                i += 1;
            }
            (None, Some(y)) => {
                added.push(*y);
                j += 1;
            }
            (None, None) => unreachable!("loop condition"),
        }
    }
    Drift {
        tag: new.tag.clone(),
        old_change_number: old.change_number,
        new_change_number: new.change_number,
        added,
        removed,
        old_tag_change_number: old.tag_change_number,
        new_tag_change_number: new.tag_change_number,
        unchanged_count: same,
    }
}

impl Drift {
    pub fn changed(&self) -> bool {
        !self.added.is_empty() || !self.removed.is_empty()
    }

    /// `{"tag", "old_change_number", "new_change_number", "added", "removed"}`.
    pub fn json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("drift serializes");
        s.push('\n');
        s
    }

    /// A summary line, then `+ prefix` and `- prefix` lines.
    pub fn text(&self) -> String {
        let tag_numbers = match (self.old_tag_change_number, self.new_tag_change_number) {
            (Some(a), Some(b)) => format!("; tag changeNumber {a} -> {b}"),
            _ => String::new(),
        };
        let numbers = format!(
            "changeNumber {} -> {}{tag_numbers}",
            self.old_change_number, self.new_change_number
        );
        let mut out = if self.changed() {
            format!(
                "{}: changed, {} added, {} removed, {} unchanged ({numbers})\n",
                self.tag,
                self.added.len(),
                self.removed.len(),
                self.unchanged_count
            )
        } else {
            format!(
                "{}: unchanged, {} prefixes ({numbers})\n",
                self.tag, self.unchanged_count
            )
        };
        for p in &self.added {
            out.push_str(&format!("+ {p}\n"));
        }
        for p in &self.removed {
            out.push_str(&format!("- {p}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(n: u64, prefixes: &[&str]) -> Selection {
        Selection {
            tag: "T".into(),
            cloud: "Public".into(),
            change_number: n,
            tag_change_number: Some(n),
            region: String::new(),
            family: None,
            aggregated: false,
            prefixes: prefixes.iter().map(|p| Prefix::parse(p).unwrap()).collect(),
        }
    }

    #[test]
    fn diff_table() {
        type Case<'a> = (&'a [&'a str], &'a [&'a str], &'a [&'a str], &'a [&'a str]);
        let cases: &[Case<'_>] = &[
            (&["10.0.0.0/8"], &["10.0.0.0/8"], &[], &[]),
            (&[], &["10.0.0.0/8"], &["10.0.0.0/8"], &[]),
            (&["10.0.0.0/8"], &[], &[], &["10.0.0.0/8"]),
            (
                &["2001:db8::/32", "10.0.0.0/8", "11.0.0.0/8"],
                &["11.0.0.0/8", "12.0.0.0/8", "2001:db8::/32"],
                &["12.0.0.0/8"],
                &["10.0.0.0/8"],
            ),
            // same addresses, different prefixes: a change
            (
                &["10.0.0.0/24"],
                &["10.0.0.0/25", "10.0.0.128/25"],
                &["10.0.0.0/25", "10.0.0.128/25"],
                &["10.0.0.0/24"],
            ),
        ];
        for (old, new, added, removed) in cases {
            let d = diff(&sel(1, old), &sel(2, new));
            let s = |v: &[Prefix]| v.iter().map(|p| p.to_string()).collect::<Vec<_>>();
            assert_eq!(s(&d.added), *added, "{old:?} -> {new:?}");
            assert_eq!(s(&d.removed), *removed, "{old:?} -> {new:?}");
            assert_eq!(d.changed(), !added.is_empty() || !removed.is_empty());
        }
    }

    #[test]
    fn renderings() {
        let d = diff(
            &sel(370, &["10.0.0.0/8", "11.0.0.0/8"]),
            &sel(371, &["11.0.0.0/8", "2001:db8::/32"]),
        );
        assert_eq!(
            d.text(),
            "T: changed, 1 added, 1 removed, 1 unchanged (changeNumber 370 -> 371; tag changeNumber 370 -> 371)\n+ 2001:db8::/32\n- 10.0.0.0/8\n"
        );
        let v: serde_json::Value = serde_json::from_str(&d.json()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"tag": "T", "old_change_number": 370, "new_change_number": 371,
                "added": ["2001:db8::/32"], "removed": ["10.0.0.0/8"]})
        );
        let same = diff(&sel(1, &["10.0.0.0/8"]), &sel(1, &["10.0.0.0/8"]));
        assert_eq!(
            same.text(),
            "T: unchanged, 1 prefixes (changeNumber 1 -> 1; tag changeNumber 1 -> 1)\n"
        );
    }
}
