//! The real service-tags file (Microsoft's ServiceTags_Public, changeNumber 370): facts from
//! SOURCES.md, every tag valid, aggregation never growing a tag, and damaged copies of the file
//! failing with the right error.

use uplink_allowlist::cidr::{aggregate, Family};
use uplink_allowlist::servicetags::{Document, Query, TagsError};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/fixtures/servicetags/ServiceTags_Public_cn370_20250911.json"
);

fn bytes() -> Vec<u8> {
    std::fs::read(FIXTURE).unwrap_or_else(|e| panic!("{FIXTURE}: {e}"))
}

fn q(tag: &str) -> Query<'_> {
    Query {
        tag,
        ..Query::default()
    }
}

#[test]
fn facts_from_sources_md() {
    let b = bytes();
    let doc = Document::parse(&b).unwrap();
    assert_eq!(doc.change_number, 370);
    assert_eq!(doc.cloud, "Public");
    assert_eq!(doc.tags.len(), 3002);
    let s = doc.select(&q("AzureAdvancedThreatProtection")).unwrap();
    assert_eq!(s.prefixes.len(), 162);
    assert_eq!(s.tag_change_number, Some(34));
    assert_eq!(s.prefixes[0].to_string(), "4.232.24.24/29");
    let v4 = s
        .prefixes
        .iter()
        .filter(|p| p.family() == Family::V4)
        .count();
    assert_eq!(v4, 85);
    // No regional AzureAdvancedThreatProtection tags; other services have them.
    let err = doc
        .select(&Query {
            region: Some("westeurope"),
            ..q("AzureAdvancedThreatProtection")
        })
        .unwrap_err();
    assert!(matches!(err, TagsError::NoRegionalTags { .. }), "{err}");
    let we = doc
        .select(&Query {
            region: Some("westeurope"),
            ..q("AzureCloud")
        })
        .unwrap();
    assert_eq!(we.tag, "AzureCloud.westeurope");
    assert_eq!(we.region, "westeurope");
    let monitor = doc
        .select(&Query {
            region: Some("australiacentral"),
            ..q("AzureMonitor")
        })
        .unwrap();
    assert_eq!(monitor.tag, "AzureMonitor.AustraliaCentral");
}

#[test]
fn every_tag_is_valid_and_aggregation_never_grows() {
    let b = bytes();
    let doc = Document::parse(&b).unwrap();
    let mut total = 0;
    let mut total_aggregated = 0;
    for t in &doc.tags {
        let s = doc
            .select(&q(&t.name))
            .unwrap_or_else(|e| panic!("{}: {e}", t.name));
        let agg = aggregate(&s.prefixes);
        assert!(agg.len() <= s.prefixes.len(), "{}", t.name);
        total += s.prefixes.len();
        total_aggregated += agg.len();
    }
    assert_eq!(total, 91597);
    assert!(total_aggregated < total);
}

#[test]
fn damaged_copies_fail_clearly() {
    let b = bytes();
    // Truncated in the middle of a prefix list.
    let cut = &b[..b.len() / 2];
    let err = Document::parse(cut).unwrap_err();
    assert!(matches!(err, TagsError::Truncated { .. }), "{err}");
    assert!(err.to_string().contains("truncated"), "{err}");
    // A broken byte in the middle: the position is reported.
    let mut broken = b.clone();
    let at = broken.len() / 3;
    let at = at + broken[at..].iter().position(|&c| c == b',').unwrap();
    broken[at] = b'#';
    let line = broken[..at].iter().filter(|&&c| c == b'\n').count() + 1;
    match Document::parse(&broken).unwrap_err() {
        TagsError::Json { line: l, .. } => assert_eq!(l, line),
        other => panic!("{other}"),
    }
}
