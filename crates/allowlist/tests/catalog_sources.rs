//! The catalog against its sources: every entry's host (and path) text appears in the stored
//! copy of the page it cites, every service tag it names exists in the real service-tags file,
//! and no entry is listed twice.
//!
//! When Microsoft changes a page, update the fixture and the catalog together; this test then
//! points at each entry that no longer matches its source.

use std::collections::HashMap;
use std::path::PathBuf;

use uplink_allowlist::catalog::{self, Catalog};
use uplink_allowlist::servicetags::{Document, Query};

fn repo_root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn catalogs() -> Vec<Catalog> {
    catalog::profiles()
        .map(|p| catalog::load(p).unwrap())
        .collect()
}

/// The literal pieces of a pattern: the text between placeholders and wildcards.
fn fragments(pattern: &str) -> Vec<String> {
    pattern
        .replace("{workspace}", "*")
        .replace("{domain}", "*")
        .split('*')
        .map(|f| f.trim_matches('.').to_owned())
        .filter(|f| f.len() > 1)
        .collect()
}

#[test]
fn every_entry_appears_in_its_cited_file() {
    let mut files: HashMap<String, String> = HashMap::new();
    let mut checked = 0;
    for c in catalogs() {
        for (key, source) in &c.sources {
            let path = repo_root().join(&source.file);
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
                panic!(
                    "catalog/{}.toml source {key}: {}: {e}",
                    c.profile,
                    path.display()
                )
            });
            // Markdown escapes `*` as `\*`; the comparison ignores that and case.
            files.insert(key.clone(), text.replace("\\*", "*").to_ascii_lowercase());
        }
        for e in &c.endpoints {
            let text = &files[&e.source];
            for f in fragments(&e.pattern) {
                assert!(
                    text.contains(&f.to_ascii_lowercase()),
                    "catalog/{}.toml: {:?} (from {:?}) is not in {}",
                    c.profile,
                    f,
                    e.pattern,
                    c.sources[&e.source].file
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 150, "only {checked} fragments checked");
}

#[test]
fn no_entry_is_listed_twice() {
    for c in catalogs() {
        let mut seen: HashMap<_, usize> = HashMap::new();
        for (i, e) in c.endpoints.iter().enumerate() {
            let clouds = if e.clouds.is_empty() {
                c.clouds.clone()
            } else {
                e.clouds.clone()
            };
            for cloud in clouds {
                let key = (
                    e.pattern.clone(),
                    e.port,
                    e.purpose,
                    e.variant.clone(),
                    e.legacy,
                    e.region.clone(),
                    cloud,
                );
                if let Some(first) = seen.insert(key.clone(), i) {
                    panic!(
                        "catalog/{}.toml: endpoints[{first}] and endpoints[{i}] are the same: {key:?}",
                        c.profile
                    );
                }
            }
        }
    }
}

#[test]
fn service_tags_named_by_the_catalog_exist() {
    let path =
        repo_root().join("../shared/fixtures/servicetags/ServiceTags_Public_cn370_20250911.json");
    let bytes = std::fs::read(&path).unwrap();
    let doc = Document::parse(&bytes).unwrap();
    let mut named = 0;
    for c in catalogs() {
        for tag in &c.service_tags {
            let s = doc
                .select(&Query {
                    tag,
                    ..Query::default()
                })
                .unwrap_or_else(|e| panic!("catalog/{}.toml names {tag}: {e}", c.profile));
            assert!(!s.prefixes.is_empty());
            named += 1;
        }
    }
    assert_eq!(named, 3);
}

#[test]
fn catalog_readme_documents_the_format_version() {
    let readme = std::fs::read_to_string(repo_root().join("catalog/README.md")).unwrap();
    assert!(
        readme.contains(&format!("format = {}", catalog::FORMAT)),
        "catalog/README.md must describe format {}",
        catalog::FORMAT
    );
    for p in catalog::profiles() {
        assert!(
            readme.contains(&format!("{p}.toml")),
            "README lists {p}.toml"
        );
    }
}
