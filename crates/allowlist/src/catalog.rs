//! The endpoint catalogs: which hosts, ports and URL patterns a sensor (and its administrators)
//! must reach, per profile, cloud, region and connectivity variant, each entry citing its source.
//!
//! The data lives in `catalog/<profile>.toml` at the repository root (documented in
//! `catalog/README.md`) and is embedded into the binary, so `uplink allowlist urls` works from
//! anywhere and the data is reviewed like code. This module parses and validates those files
//! and answers a [`UrlQuery`] with a list of [`Endpoint`]s; the renderers (`squid`, `pac`,
//! `text`) turn that list into configuration.
//!
//! Per-workspace hosts are written `{workspace}sensorapi.<domain>` and `{workspace}.<domain>`
//! and are built with `uplink_protocol::names`, the same functions the service uses, so our own
//! service and Defender for Identity (which the service mirrors) share one naming rule.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use uplink_protocol::names;

/// The catalog file format this code reads. Bump it (and teach `parse`) on incompatible changes.
pub const FORMAT: u32 = 1;

/// The embedded catalogs, by profile name.
const FILES: &[(&str, &str)] = &[
    ("uplink", include_str!("../../../catalog/uplink.toml")),
    ("mdi", include_str!("../../../catalog/mdi.toml")),
    ("mde", include_str!("../../../catalog/mde.toml")),
];

/// The profile names, in the order `--help` lists them.
pub fn profiles() -> impl Iterator<Item = &'static str> {
    FILES.iter().map(|(name, _)| *name)
}

/// What an endpoint is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Purpose {
    /// Sensor (agent) traffic to the service.
    Sensor,
    /// Consoles and portals used by people.
    Console,
    /// Certificate revocation lists, trust lists and CA certificates.
    Revocation,
    /// Product and security-intelligence updates.
    Updates,
}

impl Purpose {
    pub const ALL: [Purpose; 4] = [
        Purpose::Sensor,
        Purpose::Console,
        Purpose::Revocation,
        Purpose::Updates,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Purpose::Sensor => "sensor",
            Purpose::Console => "console",
            Purpose::Revocation => "revocation",
            Purpose::Updates => "updates",
        }
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The Microsoft clouds the catalogs cover: the commercial cloud and the three US Government
/// offerings. The names are those of `clouds` in the catalog files and of `--cloud`; a catalog
/// may list fewer (a test checks that `mdi` and `mde` list exactly these).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cloud {
    Commercial,
    Gcc,
    GccHigh,
    Dod,
}

impl Cloud {
    pub const ALL: [Cloud; 4] = [Cloud::Commercial, Cloud::Gcc, Cloud::GccHigh, Cloud::Dod];
    /// The names, in the order `--help` lists them.
    pub const NAMES: [&'static str; 4] = ["commercial", "gcc", "gcc-high", "dod"];

    pub fn name(self) -> &'static str {
        match self {
            Cloud::Commercial => "commercial",
            Cloud::Gcc => "gcc",
            Cloud::GccHigh => "gcc-high",
            Cloud::Dod => "dod",
        }
    }
}

impl fmt::Display for Cloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Cloud {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Cloud::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown cloud {s:?}: use one of {}",
                    Cloud::NAMES.join(", ")
                )
            })
    }
}

/// One catalog file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// The file format ([`FORMAT`]).
    pub format: u32,
    pub profile: String,
    /// The data revision: bumped on every change to the entries.
    pub version: u32,
    /// When the data was last checked against its sources (YYYY-MM-DD).
    pub updated: String,
    pub title: String,
    /// The clouds `--cloud` accepts; the first is the default. Empty: the profile has none.
    pub clouds: Vec<String>,
    /// The regions `--region` accepts. Empty: the profile has none.
    pub regions: Vec<String>,
    /// Connectivity variants; the first is the default, `--streamlined` picks "streamlined".
    pub variants: Vec<String>,
    /// Service tags whose IP ranges cover the profile (for `uplink allowlist ips`).
    pub service_tags: Vec<String>,
    pub endpoints: Vec<Entry>,
    pub sources: BTreeMap<String, Source>,
}

/// One catalog entry, as written in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// `host`, `*.domain` or `host/path` (a trailing `*` in the path matches any rest), with
    /// `{workspace}` and `{domain}` placeholders for per-workspace hosts.
    pub pattern: String,
    /// Absent only where the operator chooses it (`--port`, profile `uplink`).
    pub port: Option<u16>,
    pub purpose: Purpose,
    /// The clouds the entry applies to; empty: all of the profile's.
    #[serde(default)]
    pub clouds: Vec<String>,
    /// The region the entry applies to; absent: every region.
    pub region: Option<String>,
    /// The connectivity variant; absent: every variant.
    pub variant: Option<String>,
    /// Superseded endpoints, listed only with `--legacy`.
    #[serde(default)]
    pub legacy: bool,
    /// Certificate issuers to expect on this host (TLS inspection shows up as a different one).
    #[serde(default)]
    pub issuers: Vec<String>,
    /// A key of `[sources]`.
    pub source: String,
    pub note: Option<String>,
}

/// Where entries come from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// A citation a person can follow.
    pub cite: String,
    /// The stored copy, relative to the repository root (tests check each entry against it).
    pub file: String,
}

/// A resolved endpoint: what the renderers emit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    /// The host name, or `*.domain` for any subdomain of `domain`.
    pub host: String,
    pub port: u16,
    /// The host with its path pattern, if any, as published (`www.microsoft.com/pkiops/*`).
    pub pattern: String,
    pub purpose: Purpose,
    /// The citation of the entry's source.
    pub source: String,
    pub region: Option<String>,
    pub issuers: Vec<String>,
}

impl Endpoint {
    /// The path pattern (`/pkiops/*`), if the entry has one.
    pub fn path(&self) -> Option<&str> {
        self.pattern.find('/').map(|i| &self.pattern[i..])
    }

    /// `Some("domain")` for a `*.domain` host.
    pub fn wildcard_domain(&self) -> Option<&str> {
        self.host.strip_prefix("*.")
    }

    /// Plain HTTP (port 80) is proxied request by request; everything else is a CONNECT tunnel.
    pub fn is_plain_http(&self) -> bool {
        self.port == 80
    }
}

/// The options of `uplink allowlist urls`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UrlQuery {
    pub workspace: Option<String>,
    /// Profile `uplink` only (default `uplink.localhost`).
    pub domain: Option<String>,
    /// Profile `uplink` only (default 443).
    pub port: Option<u16>,
    pub cloud: Option<String>,
    pub region: Option<String>,
    pub streamlined: bool,
    pub legacy: bool,
    /// Keep only these purposes; empty keeps all.
    pub purposes: Vec<Purpose>,
}

/// The answer to a query: the endpoints in catalog order, and remarks for the person asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub endpoints: Vec<Endpoint>,
    pub notes: Vec<String>,
    /// One line describing the selection, for the headers of generated files.
    pub summary: String,
}

/// An embedded catalog that does not parse or validate (a bug caught by the crate's tests).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error("unknown profile {0:?}: use one of uplink, mdi, mde")]
    UnknownProfile(String),
    #[error("catalog/{profile}.toml does not parse: {detail}")]
    Parse { profile: String, detail: String },
    #[error("catalog/{profile}.toml has format {found}; this uplink reads format {FORMAT}: upgrade uplink")]
    Format { profile: String, found: u32 },
    #[error("catalog/{profile}.toml: {detail}")]
    Invalid { profile: String, detail: String },
}

/// Why a query cannot be answered; each says which option to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("profile {profile} has no clouds; leave out --cloud")]
    NoClouds { profile: String },
    #[error("profile {profile} has no cloud {cloud:?}; use one of: {}", .known.join(", "))]
    UnknownCloud {
        profile: String,
        cloud: String,
        known: Vec<String>,
    },
    #[error("profile {profile} has no regions; leave out --region")]
    NoRegions { profile: String },
    #[error("profile {profile} has no region {region:?}; use one of: {}", .known.join(", "))]
    UnknownRegion {
        profile: String,
        region: String,
        known: Vec<String>,
    },
    #[error("--streamlined applies to profile mde only (profile {profile} has one connectivity variant)")]
    NoVariants { profile: String },
    #[error("profile {profile} has no {variant} endpoints for cloud {cloud}{}", if .variant == "standard" { "; Microsoft publishes only streamlined URLs there: add --streamlined" } else { "" })]
    NoVariantForCloud {
        profile: String,
        variant: String,
        cloud: String,
    },
    #[error("profile {profile} lists per-workspace hosts: add --workspace NAME ({example})")]
    WorkspaceNeeded { profile: String, example: String },
    #[error("profile {profile} has no per-workspace hosts; leave out --workspace")]
    WorkspaceUnused { profile: String },
    #[error("{option} applies to profile uplink only, whose domain and port are yours to choose")]
    OperatorOnly { option: &'static str },
    #[error("port 0 is not a port: give the port sensors connect to, e.g. --port 443")]
    PortZero,
    #[error(transparent)]
    Name(#[from] names::NameError),
    #[error("nothing selected: profile {profile} has no endpoints for {summary}")]
    Empty { profile: String, summary: String },
}

/// Parses the embedded catalog of `profile`.
pub fn load(profile: &str) -> Result<Catalog, CatalogError> {
    let (_, text) = FILES
        .iter()
        .find(|(name, _)| *name == profile)
        .ok_or_else(|| CatalogError::UnknownProfile(profile.to_owned()))?;
    Catalog::parse(profile, text)
}

impl Catalog {
    /// Parses and validates one catalog file.
    pub fn parse(profile: &str, text: &str) -> Result<Catalog, CatalogError> {
        // The format is read first, so that a newer file fails with "upgrade", not a field error.
        #[derive(Deserialize)]
        struct Head {
            format: u32,
        }
        let head: Head = toml::from_str(text).map_err(|e| CatalogError::Parse {
            profile: profile.to_owned(),
            detail: e.to_string(),
        })?;
        if head.format != FORMAT {
            return Err(CatalogError::Format {
                profile: profile.to_owned(),
                found: head.format,
            });
        }
        let catalog: Catalog = toml::from_str(text).map_err(|e| CatalogError::Parse {
            profile: profile.to_owned(),
            detail: e.to_string(),
        })?;
        catalog.validate(profile)?;
        Ok(catalog)
    }

    fn validate(&self, profile: &str) -> Result<(), CatalogError> {
        let invalid = |detail: String| CatalogError::Invalid {
            profile: profile.to_owned(),
            detail,
        };
        if self.profile != profile {
            return Err(invalid(format!(
                "profile = {:?} but the file is {profile}.toml",
                self.profile
            )));
        }
        for (i, e) in self.endpoints.iter().enumerate() {
            let at = |what: String| invalid(format!("endpoints[{i}] ({}): {what}", e.pattern));
            if !self.sources.contains_key(&e.source) {
                return Err(at(format!("source {:?} is not in [sources]", e.source)));
            }
            if let Some(c) = e.clouds.iter().find(|c| !self.clouds.contains(c)) {
                return Err(at(format!("cloud {c:?} is not in clouds")));
            }
            if let Some(r) = e.region.as_ref().filter(|r| !self.regions.contains(r)) {
                return Err(at(format!("region {r:?} is not in regions")));
            }
            if let Some(v) = e.variant.as_ref().filter(|v| !self.variants.contains(v)) {
                return Err(at(format!("variant {v:?} is not in variants")));
            }
            let operator_domain = e.pattern.contains("{domain}");
            match (e.port, operator_domain) {
                (None, false) => return Err(at("port is missing".into())),
                (Some(_), true) => {
                    return Err(at(
                        "an entry with {domain} takes the operator's --port".into()
                    ))
                }
                (Some(0), _) => return Err(at("port 0".into())),
                _ => {}
            }
            // Check the pattern's shape with placeholders filled in.
            let sample =
                expand(&e.pattern, "workspace", "example.test").map_err(|m| at(m.to_owned()))?;
            check_pattern(&sample).map_err(|m| at(m.to_owned()))?;
        }
        Ok(())
    }

    /// True when some entry is a per-workspace host.
    fn has_workspace_hosts(&self) -> bool {
        self.endpoints
            .iter()
            .any(|e| e.pattern.contains("{workspace}"))
    }

    /// True when the operator chooses the domain and port (profile `uplink`).
    fn operator_chosen(&self) -> bool {
        self.endpoints
            .iter()
            .any(|e| e.pattern.contains("{domain}"))
    }

    /// Picks the endpoints for a query, in catalog order, without repeats of (pattern, port).
    pub fn resolve(&self, q: &UrlQuery) -> Result<Resolved, QueryError> {
        let profile = self.profile.clone();
        // Options that do not apply to this profile are refused rather than ignored.
        if !self.operator_chosen() {
            if q.domain.is_some() {
                return Err(QueryError::OperatorOnly { option: "--domain" });
            }
            if q.port.is_some() {
                return Err(QueryError::OperatorOnly { option: "--port" });
            }
        }
        if q.port == Some(0) {
            return Err(QueryError::PortZero);
        }
        let cloud = match (&q.cloud, self.clouds.first()) {
            (Some(_), None) => return Err(QueryError::NoClouds { profile }),
            (Some(c), Some(_)) if !self.clouds.contains(c) => {
                return Err(QueryError::UnknownCloud {
                    profile,
                    cloud: c.clone(),
                    known: self.clouds.clone(),
                })
            }
            (Some(c), Some(_)) => Some(c.clone()),
            (None, first) => first.cloned(),
        };
        let region = q.region.as_ref().map(|r| r.to_ascii_lowercase());
        if let Some(r) = &region {
            if self.regions.is_empty() {
                return Err(QueryError::NoRegions { profile });
            }
            if !self.regions.contains(r) {
                return Err(QueryError::UnknownRegion {
                    profile,
                    region: r.clone(),
                    known: self.regions.clone(),
                });
            }
        }
        let variant = match (q.streamlined, self.variants.first()) {
            (true, None) => return Err(QueryError::NoVariants { profile }),
            (true, Some(_)) => Some("streamlined".to_owned()),
            (false, first) => first.cloned(),
        };
        let workspace = match (&q.workspace, self.has_workspace_hosts()) {
            (Some(_), false) => return Err(QueryError::WorkspaceUnused { profile }),
            (Some(w), true) => Some(names::workspace_name(w)?),
            (None, true) => {
                let example = self
                    .endpoints
                    .iter()
                    .find(|e| e.pattern.starts_with("{workspace}sensorapi."))
                    .and_then(|e| expand(&e.pattern, "contoso-corp", names::DEFAULT_DOMAIN).ok())
                    .map(|h| format!("e.g. contoso-corp for {h}"))
                    .unwrap_or_else(|| "e.g. contoso-corp".into());
                return Err(QueryError::WorkspaceNeeded { profile, example });
            }
            (None, false) => None,
        };
        let domain = match &q.domain {
            Some(d) => names::domain(d)?,
            None => names::DEFAULT_DOMAIN.to_owned(),
        };

        let summary = summary(self, q, cloud.as_deref(), variant.as_deref(), &domain);
        let cloud_ok = |e: &Entry| match &cloud {
            Some(c) => e.clouds.is_empty() || e.clouds.contains(c),
            None => true,
        };
        if let (Some(v), Some(c)) = (&variant, &cloud) {
            if !self
                .endpoints
                .iter()
                .any(|e| e.variant.as_ref() == Some(v) && cloud_ok(e))
            {
                return Err(QueryError::NoVariantForCloud {
                    profile,
                    variant: v.clone(),
                    cloud: c.clone(),
                });
            }
        }
        let mut seen = HashSet::new();
        let mut endpoints = Vec::new();
        let mut legacy_skipped = 0;
        for e in &self.endpoints {
            let selected_but_legacy = cloud_ok(e)
                && (e.variant.is_none() || e.variant == variant)
                && (e.region.is_none() || region.is_none() || e.region == region)
                && (q.purposes.is_empty() || q.purposes.contains(&e.purpose));
            if !selected_but_legacy {
                continue;
            }
            if e.legacy && !q.legacy {
                if e.region.is_some() && e.region == region {
                    legacy_skipped += 1;
                }
                continue;
            }
            let ws = workspace.as_deref().unwrap_or("");
            let pattern = expand(&e.pattern, ws, &domain).expect("validated on load");
            let port = e.port.or(q.port).unwrap_or(443);
            if !seen.insert((pattern.clone(), port)) {
                continue;
            }
            let host = pattern.split('/').next().unwrap_or_default().to_owned();
            endpoints.push(Endpoint {
                host,
                port,
                pattern,
                purpose: e.purpose,
                source: self.sources[&e.source].cite.clone(),
                region: e.region.clone(),
                issuers: e
                    .issuers
                    .iter()
                    .map(|i| i.replace("{workspace}", ws))
                    .collect(),
            });
        }
        let mut notes = Vec::new();
        if legacy_skipped > 0 {
            notes.push(format!(
                "{legacy_skipped} per-region host(s) of region {} are legacy and were left out; add --legacy to include them",
                region.as_deref().unwrap_or_default()
            ));
        }
        if endpoints.is_empty() {
            return Err(QueryError::Empty { profile, summary });
        }
        Ok(Resolved {
            endpoints,
            notes,
            summary,
        })
    }
}

fn summary(
    c: &Catalog,
    q: &UrlQuery,
    cloud: Option<&str>,
    variant: Option<&str>,
    domain: &str,
) -> String {
    let mut parts = vec![format!("profile {}", c.profile)];
    if let Some(w) = &q.workspace {
        parts.push(format!("workspace {}", w.to_ascii_lowercase()));
    }
    if c.operator_chosen() {
        parts.push(format!("domain {domain}"));
        parts.push(format!("port {}", q.port.unwrap_or(443)));
    }
    if let Some(cloud) = cloud {
        parts.push(format!("cloud {cloud}"));
    }
    if let Some(v) = variant {
        parts.push(format!("{v} connectivity"));
    }
    if !c.regions.is_empty() {
        match &q.region {
            Some(r) => parts.push(format!("region {}", r.to_ascii_lowercase())),
            None => parts.push("all regions".to_owned()),
        }
    }
    if q.legacy {
        parts.push("with legacy hosts".to_owned());
    }
    if !q.purposes.is_empty() {
        let p: Vec<&str> = q.purposes.iter().map(|p| p.name()).collect();
        parts.push(format!("purposes {}", p.join(",")));
    }
    format!(
        "{}; catalog {} version {} ({})",
        parts.join(", "),
        c.profile,
        c.version,
        c.updated
    )
}

/// Fills in `{workspace}` and `{domain}`, building per-workspace hosts with the service's own
/// naming functions. Placeholders are allowed only as `{workspace}sensorapi.<domain>`,
/// `{workspace}.<domain>`, and `{domain}` as the whole domain.
fn expand(pattern: &str, workspace: &str, domain: &str) -> Result<String, &'static str> {
    let fill_domain = |d: &str| -> Result<String, &'static str> {
        match d {
            "{domain}" => Ok(domain.to_owned()),
            d if d.contains('{') || d.contains('}') => {
                Err("{domain} must be the whole domain of the pattern")
            }
            d => Ok(d.to_owned()),
        }
    };
    if let Some(rest) = pattern.strip_prefix("{workspace}") {
        if let Some(d) = rest.strip_prefix(names::SENSOR_API_SUFFIX) {
            let d = d
                .strip_prefix('.')
                .ok_or("expected {workspace}sensorapi.<domain>")?;
            return Ok(names::sensor_host(workspace, &fill_domain(d)?));
        }
        let d = rest
            .strip_prefix('.')
            .ok_or("{workspace} must be followed by 'sensorapi.' or '.'")?;
        return Ok(names::console_host(workspace, &fill_domain(d)?));
    }
    if pattern.contains("{workspace}") {
        return Err("{workspace} must start the pattern");
    }
    if pattern.starts_with("{domain}") {
        return Err("{domain} needs a workspace host in front of it");
    }
    Ok(pattern.to_owned())
}

/// Checks `host[/path]`: lowercase DNS labels, optionally `*.` in front; a path of visible
/// ASCII without quotes or backslashes.
fn check_pattern(pattern: &str) -> Result<(), &'static str> {
    let (host, path) = match pattern.find('/') {
        Some(i) => (&pattern[..i], Some(&pattern[i..])),
        None => (pattern, None),
    };
    let labels = host.strip_prefix("*.").unwrap_or(host);
    if labels.split('.').count() < 2 {
        return Err("the host needs at least two labels");
    }
    for label in labels.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err("host labels are lowercase letters, digits and '-' (a wildcard only as a leading '*.')");
        }
    }
    if let Some(path) = path {
        if !path
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'\'' | b'\\' | b'{' | b'}'))
        {
            return Err("the path has characters outside visible ASCII, or quotes");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clouds_are_the_catalogs_clouds() {
        for c in Cloud::ALL {
            assert_eq!(c.name().parse::<Cloud>(), Ok(c));
            assert_eq!(c.to_string(), c.name());
        }
        assert_eq!(Cloud::ALL.map(Cloud::name), Cloud::NAMES);
        assert!("moon".parse::<Cloud>().unwrap_err().contains("\"moon\""));
        for profile in ["mdi", "mde"] {
            assert_eq!(load(profile).unwrap().clouds, Cloud::NAMES, "{profile}");
        }
        assert!(load("uplink").unwrap().clouds.is_empty());
    }

    fn query(f: impl FnOnce(&mut UrlQuery)) -> UrlQuery {
        let mut q = UrlQuery::default();
        f(&mut q);
        q
    }

    fn patterns(profile: &str, q: &UrlQuery) -> Vec<String> {
        let c = load(profile).unwrap();
        let r = c
            .resolve(q)
            .unwrap_or_else(|e| panic!("{profile} {q:?}: {e}"));
        r.endpoints
            .iter()
            .map(|e| format!("{}:{}", e.pattern, e.port))
            .collect()
    }

    #[test]
    fn every_catalog_loads() {
        for p in profiles() {
            let c = load(p).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(c.profile, p);
            assert!(!c.endpoints.is_empty());
        }
        assert_eq!(
            load("nope").unwrap_err().to_string(),
            "unknown profile \"nope\": use one of uplink, mdi, mde"
        );
    }

    #[test]
    fn uplink_profile_uses_the_service_naming() {
        let got = patterns("uplink", &query(|q| q.workspace = Some("Contoso".into())));
        assert_eq!(
            got,
            [
                "contososensorapi.uplink.localhost:443",
                "contoso.uplink.localhost:443"
            ]
        );
        let got = patterns(
            "uplink",
            &query(|q| {
                q.workspace = Some("contoso".into());
                q.domain = Some("Sensors.Example.COM.".into());
                q.port = Some(8443);
            }),
        );
        assert_eq!(
            got,
            [
                "contososensorapi.sensors.example.com:8443",
                "contoso.sensors.example.com:8443"
            ]
        );
        let c = load("uplink").unwrap();
        let r = c
            .resolve(&query(|q| q.workspace = Some("contoso".into())))
            .unwrap();
        assert_eq!(
            r.endpoints[0].issuers,
            ["O=uplink, CN=uplink workspace CA contoso <8 hex digits>"]
        );
        assert_eq!(r.endpoints[0].purpose, Purpose::Sensor);
        assert_eq!(r.endpoints[1].purpose, Purpose::Console);
        assert_eq!(
            r.summary,
            "profile uplink, workspace contoso, domain uplink.localhost, port 443; catalog uplink version 1 (2026-11-22)"
        );
    }

    #[test]
    fn mdi_selection_table() {
        let ws = |q: &mut UrlQuery| q.workspace = Some("contoso-corp".into());
        let current = [
            "contoso-corpsensorapi.atp.azure.com:443",
            "contoso-corp.atp.azure.com:443",
            "crl.microsoft.com:80",
            "ctldl.windowsupdate.com:80",
            "www.microsoft.com/pkiops/*:80",
            "www.microsoft.com/pki/*:80",
        ];
        assert_eq!(patterns("mdi", &query(ws)), current);
        // A region alone changes nothing: the per-region hosts are legacy.
        let q = query(|q| {
            ws(q);
            q.region = Some("EU".into());
        });
        assert_eq!(patterns("mdi", &q), current);
        let r = load("mdi").unwrap().resolve(&q).unwrap();
        assert_eq!(
            r.notes,
            ["4 per-region host(s) of region eu are legacy and were left out; add --legacy to include them"]
        );
        let got = patterns(
            "mdi",
            &query(|q| {
                ws(q);
                q.region = Some("eu".into());
                q.legacy = true;
            }),
        );
        assert_eq!(
            got[6..],
            [
                "triprd1wceun2sensorapi.atp.azure.com:443",
                "triprd1wceuw3sensorapi.atp.azure.com:443",
                "triprd1wceun1sensorapi.atp.azure.com:443",
                "triprd1wceuw1sensorapi.atp.azure.com:443",
            ]
        );
        let got = patterns(
            "mdi",
            &query(|q| {
                ws(q);
                q.cloud = Some("gcc".into());
            }),
        );
        assert_eq!(
            got[..2],
            [
                "contoso-corpsensorapi.gcc.atp.azure.com:443",
                "security.microsoft.com:443"
            ]
        );
        for cloud in ["gcc-high", "dod"] {
            let got = patterns(
                "mdi",
                &query(|q| {
                    ws(q);
                    q.cloud = Some(cloud.into());
                    q.legacy = true;
                }),
            );
            assert_eq!(
                got[..2],
                [
                    "contoso-corpsensorapi.atp.azure.us:443",
                    "security.microsoft.us:443"
                ]
            );
            assert_eq!(
                got.contains(&"triff1wcva2sensorapi.atp.azure.us:443".to_string()),
                cloud == "gcc-high"
            );
        }
        let got = patterns(
            "mdi",
            &query(|q| {
                ws(q);
                q.purposes = vec![Purpose::Revocation];
            }),
        );
        assert_eq!(got, current[2..]);
    }

    #[test]
    fn mde_selection_table() {
        let standard = patterns("mde", &UrlQuery::default());
        assert!(standard.contains(&"ussus1eastprod.blob.core.windows.net:443".to_string()));
        assert!(standard.contains(&"winatp-gw-cus.microsoft.com:443".to_string()));
        assert!(!standard
            .iter()
            .any(|p| p.contains("endpoint.security.microsoft.com")));
        assert!(
            !standard.iter().any(|p| p.contains("opinsights")),
            "MMA is legacy"
        );
        let uk = patterns("mde", &query(|q| q.region = Some("uk".into())));
        assert!(uk.contains(&"ussuk1southprod.blob.core.windows.net:443".to_string()));
        assert!(!uk.contains(&"ussus1eastprod.blob.core.windows.net:443".to_string()));
        assert!(
            uk.contains(&"*.wdcp.microsoft.com:443".to_string()),
            "region-less entries stay"
        );
        let streamlined = patterns("mde", &query(|q| q.streamlined = true));
        assert_eq!(streamlined[0], "*.endpoint.security.microsoft.com:443");
        assert!(streamlined.contains(&"mdav.eu.endpoint.security.microsoft.com:443".to_string()));
        assert!(!streamlined.iter().any(|p| p.contains("ussus1eastprod")));
        assert!(streamlined.contains(&"www.microsoft.com/pkiops/*:80".to_string()));
        let legacy = patterns("mde", &query(|q| q.legacy = true));
        assert!(legacy.contains(&"*.oms.opinsights.azure.com:443".to_string()));
        assert!(legacy.contains(&"events.data.microsoft.com:443".to_string()));
        let gcc = patterns(
            "mde",
            &query(|q| {
                q.cloud = Some("gcc".into());
                q.streamlined = true;
            }),
        );
        assert!(gcc.contains(&"unitedstates4.ss.wd.microsoft.us:443".to_string()));
        assert!(!gcc.contains(&"unitedstates1.ss.wd.microsoft.us:443".to_string()));
        assert!(gcc.contains(&"*.gcc.securitycenter.microsoft.us:443".to_string()));
        assert!(!gcc.iter().any(|p| p.contains("ussus1eastprod")));
        // Entries repeated in several tables come out once, the first one winning.
        let c = load("mde").unwrap();
        let r = c.resolve(&UrlQuery::default()).unwrap();
        let login: Vec<_> = r
            .endpoints
            .iter()
            .filter(|e| e.pattern == "login.microsoftonline.com")
            .collect();
        assert_eq!(login.len(), 1);
        assert_eq!(login[0].purpose, Purpose::Sensor);
        let gw = r
            .endpoints
            .iter()
            .find(|e| e.host == "winatp-gw-cus.microsoft.com")
            .unwrap();
        assert_eq!(gw.issuers, ["Microsoft Secure Server CA 2011"]);
        assert!(gw.source.contains("client analyzer"));
    }

    #[test]
    fn query_errors_say_which_option_to_change() {
        let cases: &[(&str, UrlQuery, &str)] = &[
            ("mdi", UrlQuery::default(), "profile mdi lists per-workspace hosts: add --workspace NAME (e.g. contoso-corp for contoso-corpsensorapi.atp.azure.com)"),
            ("uplink", UrlQuery::default(), "add --workspace NAME (e.g. contoso-corp for contoso-corpsensorapi.uplink.localhost)"),
            ("mde", query(|q| q.workspace = Some("x".into())), "profile mde has no per-workspace hosts; leave out --workspace"),
            ("mdi", query(|q| { q.workspace = Some("x".into()); q.region = Some("mars".into()) }), "profile mdi has no region \"mars\"; use one of: us, eu, uk, asia"),
            ("mde", query(|q| q.region = Some("asia".into())), "profile mde has no region \"asia\"; use one of: us, eu, uk, au"),
            ("uplink", query(|q| { q.workspace = Some("x".into()); q.region = Some("us".into()) }), "profile uplink has no regions; leave out --region"),
            ("uplink", query(|q| { q.workspace = Some("x".into()); q.cloud = Some("gcc".into()) }), "profile uplink has no clouds; leave out --cloud"),
            ("mdi", query(|q| { q.workspace = Some("x".into()); q.cloud = Some("moon".into()) }), "profile mdi has no cloud \"moon\"; use one of: commercial, gcc, gcc-high, dod"),
            ("mdi", query(|q| { q.workspace = Some("x".into()); q.streamlined = true }), "--streamlined applies to profile mde only"),
            ("mde", query(|q| q.cloud = Some("dod".into())), "profile mde has no standard endpoints for cloud dod; Microsoft publishes only streamlined URLs there: add --streamlined"),
            ("mdi", query(|q| { q.workspace = Some("x".into()); q.domain = Some("a.b".into()) }), "--domain applies to profile uplink only"),
            ("mde", query(|q| q.port = Some(8443)), "--port applies to profile uplink only"),
            ("uplink", query(|q| { q.workspace = Some("x".into()); q.port = Some(0) }), "port 0 is not a port"),
            ("mdi", query(|q| q.workspace = Some("bad_name".into())), "workspace name \"bad_name\" has the character '_'"),
            ("uplink", query(|q| { q.workspace = Some("x".into()); q.domain = Some("a..b".into()) }), "domain \"a..b\" is not a valid DNS name"),
            ("uplink", query(|q| { q.workspace = Some("x".into()); q.purposes = vec![Purpose::Updates] }), "nothing selected: profile uplink has no endpoints for profile uplink, workspace x"),
        ];
        for (profile, q, want) in cases {
            let err = load(profile).unwrap().resolve(q).unwrap_err().to_string();
            assert!(
                err.contains(want),
                "{profile} {q:?}:\n got {err}\nwant {want}"
            );
        }
    }

    #[test]
    fn validation_refuses_bad_files() {
        let base = |endpoints: &str| {
            format!(
                "format = 1\nprofile = \"t\"\nversion = 1\nupdated = \"2025-01-01\"\ntitle = \"t\"\nclouds = [\"c\"]\nregions = [\"r\"]\nvariants = []\nservice_tags = []\nendpoints = [{endpoints}]\n[sources]\ns = {{ cite = \"c\", file = \"f\" }}\n"
            )
        };
        let cases: &[(String, &str)] = &[
            ("format = 2\n".into(), "has format 2; this uplink reads format 1: upgrade uplink"),
            (base("{ pattern = \"a.example\", port = 443, purpose = \"sensor\", source = \"s\" }").replace("profile = \"t\"", "profile = \"u\""), "profile = \"u\" but the file is t.toml"),
            (base("{ pattern = \"a.example\", port = 443, purpose = \"sensor\", source = \"x\" }"), "source \"x\" is not in [sources]"),
            (base("{ pattern = \"a.example\", port = 443, purpose = \"spying\", source = \"s\" }"), "unknown variant `spying`"),
            (base("{ pattern = \"a.example\", purpose = \"sensor\", source = \"s\" }"), "port is missing"),
            (base("{ pattern = \"a.example\", port = 443, purpose = \"sensor\", source = \"s\", clouds = [\"z\"] }"), "cloud \"z\" is not in clouds"),
            (base("{ pattern = \"a.example\", port = 443, purpose = \"sensor\", source = \"s\", region = \"z\" }"), "region \"z\" is not in regions"),
            (base("{ pattern = \"a.example\", port = 443, purpose = \"sensor\", source = \"s\", variant = \"z\" }"), "variant \"z\" is not in variants"),
            (base("{ pattern = \"a*b.example\", port = 443, purpose = \"sensor\", source = \"s\" }"), "a wildcard only as a leading"),
            (base("{ pattern = \"A.example\", port = 443, purpose = \"sensor\", source = \"s\" }"), "lowercase letters"),
            (base("{ pattern = \"example\", port = 443, purpose = \"sensor\", source = \"s\" }"), "at least two labels"),
            (base("{ pattern = \"a.example/x\\\"y\", port = 443, purpose = \"sensor\", source = \"s\" }"), "or quotes"),
            (base("{ pattern = \"x{workspace}.example\", port = 443, purpose = \"sensor\", source = \"s\" }"), "{workspace} must start the pattern"),
            (base("{ pattern = \"{workspace}.{domain}\", port = 443, purpose = \"sensor\", source = \"s\" }"), "takes the operator's --port"),
            (base("{ pattern = \"a.example\", port = 443, purpose = \"sensor\", source = \"s\", extra = 1 }"), "unknown field `extra`"),
        ];
        for (text, want) in cases {
            let err = Catalog::parse("t", text).unwrap_err().to_string();
            assert!(err.contains(want), "{text}\n got {err}\nwant {want}");
        }
    }
}
