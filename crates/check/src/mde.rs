//! Defender for Endpoint's URL table with expected statuses: the `urls_map` of Microsoft's
//! cross-platform MDE client analyzer (`data/mde_urls.json`, a copy of
//! `shared/fixtures/endpoints/mde/mde_xplat_client_analyzer_urls_map.json`; see
//! `shared/fixtures/SOURCES.md`). Pure: selection by region and variant.
//!
//! The table covers the commercial cloud. Other clouds come from the endpoint catalog (`uplink
//! allowlist`), where only reachability can be checked (any HTTP status).

use serde::Deserialize;

const TABLE: &str = include_str!("../data/mde_urls.json");

/// `verify` names of the analyzer → issuer names to expect.
const SC_VERIFY: &str = "Microsoft Secure Server CA 2011";
const DIGI: &str = "DigiCert";

/// One URL of the analyzer's table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MdeUrl {
    pub url: String,
    pub expected_status: u16,
    pub head: bool,
    /// Issuers the analyzer pins; empty: the system trust.
    pub issuers: Vec<String>,
}

#[derive(Deserialize)]
struct File {
    rows: Vec<Row>,
}

#[derive(Deserialize)]
struct Row {
    geo: String,
    url: String,
    verify: Option<Vec<String>>,
    expected_status_code: u16,
    http_method: String,
}

/// The regions of the table.
pub const REGIONS: [&str; 4] = ["us", "eu", "uk", "au"];

/// The URLs for `region` (`us`, `eu`, `uk`, `au`), standard or streamlined connectivity.
pub fn urls(region: &str, streamlined: bool) -> Result<Vec<MdeUrl>, String> {
    let region = region.to_ascii_lowercase();
    if !REGIONS.contains(&region.as_str()) {
        return Err(format!(
            "unknown MDE region {region:?}: use one of {}",
            REGIONS.join(", ")
        ));
    }
    let geo = if streamlined {
        format!("GW_{}", region.to_ascii_uppercase())
    } else {
        region.to_ascii_uppercase()
    };
    let file: File = serde_json::from_str(TABLE)
        .map_err(|e| format!("the embedded MDE URL table does not parse: {e}"))?;
    Ok(file
        .rows
        .into_iter()
        .filter(|r| r.geo == geo)
        .map(|r| MdeUrl {
            url: r.url,
            expected_status: r.expected_status_code,
            head: r.http_method.eq_ignore_ascii_case("HEAD"),
            issuers: r
                .verify
                .unwrap_or_default()
                .iter()
                .map(|v| match v.as_str() {
                    "sc_verify" => SC_VERIFY.to_owned(),
                    "digi" => DIGI.to_owned(),
                    other => other.to_owned(),
                })
                .collect(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_region_and_variant_has_urls_with_statuses() {
        for region in REGIONS {
            for streamlined in [false, true] {
                let u = urls(region, streamlined).unwrap();
                assert!(u.len() >= 9, "{region} {streamlined}: {}", u.len());
                assert!(u.iter().all(|x| x.url.starts_with("https://")));
                assert!(
                    u.iter().all(|x| crate::model::parse_url(&x.url).is_ok()),
                    "{region}"
                );
            }
        }
        let us = urls("US", true).unwrap();
        let report = us
            .iter()
            .find(|u| u.url == "https://mdav.us.endpoint.security.microsoft.com/mdav/test")
            .unwrap();
        assert_eq!(report.expected_status, 404);
        assert_eq!(report.issuers, [SC_VERIFY]);
        assert!(us.iter().any(|u| u.head && u.issuers.len() == 2));
        assert!(urls("mars", false).unwrap_err().contains("mars"));
    }
}
