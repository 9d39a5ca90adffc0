//! Service-tags files are downloaded from the internet and may be damaged or hostile: parsing,
//! selecting every tag (which validates its prefixes and reports positions), aggregating and
//! rendering must never panic.
#![no_main]
use uplink_allowlist::servicetags::{Document, Query};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(doc) = Document::parse(data) else {
        return;
    };
    let names: Vec<String> = doc.tags.iter().map(|t| t.name.to_string()).collect();
    for name in names.iter().take(16) {
        let _ = doc.select(&Query {
            tag: name,
            region: Some("westeurope"),
            family: None,
        });
        if let Ok(s) = doc.select(&Query {
            tag: name,
            ..Query::default()
        }) {
            let agg = s.clone().aggregate();
            assert!(agg.prefixes.len() <= s.prefixes.len());
            let _ = uplink_allowlist::firewall::nftables(&agg);
            let _ = uplink_allowlist::firewall::iptables(&s);
            let _ = uplink_allowlist::drift::diff(&s, &agg).text();
        }
    }
    let _ = doc.find("AzureAdvancedThreatProtecton");
});
