//! Which targets and methods `uplink check` tests: the decisions behind its flags. Pure.
//!
//! From what the command line asks — a profile with its workspace, cloud, region and variant,
//! `--all-hosts`, a workspace URL, URLs, or else the installed sensor — [`decide`] picks the
//! [`TargetSpec`]s (each URL with the statuses that mean "reached", the issuers to expect, the
//! HTTP method, and which trust anchor to check it against) and the [`Method`]s, or says which
//! flag is wrong. The endpoint catalog (`uplink-allowlist`) and the MDE analyzer table
//! ([`crate::mde`]) are embedded data, so nothing here reads a file.
//!
//! It deliberately does not choose routes or load certificates: the binary's
//! [`crate::Routes`] gives each method's route (from `sensor.toml`, the environment, PAC, WPAD),
//! and the binary turns each [`Trust`] into an [`Anchor`] (reading `--ca`, the sensor's CA and
//! certificate, the system store) with [`TargetSpec::into_target`].

use std::sync::Arc;

pub use uplink_allowlist::catalog::Cloud;
use uplink_allowlist::catalog::{self, CatalogError, Endpoint, Purpose, QueryError, UrlQuery};

use crate::model::{parse_url, Anchor, Expect, HttpMethod, Identity, Method, Target, UrlParts};

/// A public service's endpoints (`--profile`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Profile {
    /// Microsoft Defender for Identity.
    Mdi,
    /// Microsoft Defender for Endpoint.
    Mde,
}

impl Profile {
    pub const ALL: [Profile; 2] = [Profile::Mdi, Profile::Mde];
    /// The names (also the endpoint catalogs' profile names), in the order `--help` lists them.
    pub const NAMES: [&'static str; 2] = ["mdi", "mde"];

    pub fn name(self) -> &'static str {
        match self {
            Profile::Mdi => "mdi",
            Profile::Mde => "mde",
        }
    }
}

impl std::str::FromStr for Profile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Profile::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown profile {s:?}: use one of {}",
                    Profile::NAMES.join(", ")
                )
            })
    }
}

/// What the command line asks to test (the flags of `uplink check`, already parsed).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    pub profile: Option<Profile>,
    /// The Defender for Identity workspace name (`--profile mdi`).
    pub workspace: Option<String>,
    pub cloud: Option<Cloud>,
    /// The region (MDE: us, eu, uk, au; default us for the analyzer table).
    pub region: Option<String>,
    pub streamlined: bool,
    /// Every allow-list host of the profile, reachability only.
    pub all_hosts: bool,
    /// An uplink workspace's sensor URL (`--workspace-url`).
    pub workspace_url: Option<String>,
    /// Whether `--ca FILE` was given: a workspace URL needs it.
    pub ca_given: bool,
    pub urls: Vec<String>,
    /// The statuses that mean success for every `--url` (empty: 200).
    pub expect: Vec<u16>,
    /// Issuers replacing the profile's (and the workspace URL's) expectations.
    pub expect_issuer: Vec<String>,
    /// `--method` values as typed (empty: the default set).
    pub methods: Vec<String>,
    /// The installed sensor's service URL, if a sensor is installed: the target when nothing
    /// else is asked.
    pub sensor_url: Option<String>,
}

/// Which trust anchor a target's certificate is checked against; the binary loads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trust {
    /// `--ca FILE` when given, else this machine's trust store.
    CaOrSystem,
    /// `--ca FILE` (always given: [`decide`] refuses a workspace URL without it).
    Ca,
    /// The installed sensor's workspace CA, and its client certificate when it has one.
    Sensor,
}

/// One target as decided: everything a [`Target`] holds but the loaded anchor and identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetSpec {
    /// The URL as shown in reports.
    pub url: String,
    pub parts: UrlParts,
    pub http_method: HttpMethod,
    pub expect: Expect,
    pub issuers: Vec<String>,
    pub trust: Trust,
}

impl TargetSpec {
    fn new(
        url: String,
        expect: Expect,
        issuers: Vec<String>,
        http_method: HttpMethod,
        trust: Trust,
    ) -> Result<TargetSpec, PlanError> {
        let parts = parse_url(&url).map_err(PlanError::Url)?;
        Ok(TargetSpec {
            url,
            parts,
            http_method,
            expect,
            issuers,
            trust,
        })
    }

    /// The probe's target, with the anchor the binary loaded for [`TargetSpec::trust`].
    pub fn into_target(self, anchor: Anchor, identity: Option<Arc<Identity>>) -> Target {
        Target {
            url: self.url,
            tls: self.parts.tls,
            host: self.parts.host,
            port: self.parts.port,
            path: self.parts.path,
            http_method: self.http_method,
            expect: self.expect,
            anchor,
            issuers: self.issuers,
            identity,
        }
    }
}

/// What to test: targets in order, methods in order, and remarks for the person asking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub targets: Vec<TargetSpec>,
    pub methods: Vec<Method>,
    pub notes: Vec<String>,
}

/// A request that cannot be planned: bad usage, each message naming the flag to change.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("--all-hosts (and allowlist verify) needs --profile mdi|mde")]
    AllHostsWithoutProfile,
    #[error("--profile mdi needs --workspace NAME (the Defender for Identity workspace, e.g. contoso for contososensorapi.atp.azure.com)")]
    MdiWithoutWorkspace,
    #[error("--workspace-url and --profile test different services: give one")]
    WorkspaceUrlWithProfile,
    #[error("--workspace-url needs --ca FILE (the workspace CA from its bundle)")]
    WorkspaceUrlWithoutCa,
    #[error("nothing to test: give --url, --profile, --workspace-url, or --config-dir of an installed sensor")]
    NothingToTest,
    /// The embedded catalog is broken (a bug the allowlist crate's tests catch).
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The catalog has no such cloud, region or variant for the profile.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// The MDE analyzer table has no such region.
    #[error("{0}")]
    MdeRegion(String),
    /// A URL that is not `http(s)://HOST[:PORT][/PATH]`; the message names it.
    #[error("{0}")]
    Url(String),
    /// An unknown `--method`.
    #[error("{0}")]
    Method(String),
}

/// The methods tested when `--method` is not given with `--all-hosts`: reachability of the
/// allow-list directly and through the configured proxies.
pub const ALL_HOSTS_METHODS: [Method; 3] = [Method::Direct, Method::Named, Method::Cli];

/// Decides the targets and methods for `req`. Targets come in this order: the profile's (or
/// with `--all-hosts` every probeable host of its allow-list), the workspace URL, the URLs; the
/// installed sensor's workspace only when none of those was asked.
pub fn decide(req: &Request) -> Result<Plan, PlanError> {
    let mut notes = Vec::new();
    let mut targets = Vec::new();
    let issuers = |declared: Vec<String>| -> Vec<String> {
        if req.expect_issuer.is_empty() {
            declared
        } else {
            req.expect_issuer.clone()
        }
    };
    let given = |url: String, expect: Expect, declared: Vec<String>, m: HttpMethod| {
        TargetSpec::new(url, expect, issuers(declared), m, Trust::CaOrSystem)
    };

    if req.all_hosts {
        let profile = req.profile.ok_or(PlanError::AllHostsWithoutProfile)?;
        for (url, declared) in reachability_urls(probeable_endpoints(req, profile, &mut notes)?) {
            targets.push(given(url, Expect::Any, declared, HttpMethod::Get)?);
        }
    } else if let Some(profile) = req.profile {
        match profile {
            Profile::Mdi => {
                for e in probeable_endpoints(req, profile, &mut notes)? {
                    let (url, expect) = match (e.port, e.purpose) {
                        (80, _) => (
                            format!(
                                "http://{}{}",
                                e.host,
                                e.path().unwrap_or("/").trim_end_matches('*')
                            ),
                            Expect::Any,
                        ),
                        (_, Purpose::Sensor) => (
                            format!("https://{}{}", e.host, uplink_protocol::PING_PATH),
                            // 503 still means "reached" for old workspaces (the seeds).
                            Expect::Status(vec![200, 503]),
                        ),
                        _ => (format!("https://{}/", e.host), Expect::Any),
                    };
                    targets.push(given(url, expect, e.issuers, HttpMethod::Get)?);
                }
            }
            Profile::Mde if req.cloud.is_some_and(|c| c != Cloud::Commercial) => {
                notes.push("the analyzer's URL table covers the commercial cloud; other clouds are checked for reachability from the endpoint catalog".into());
                let endpoints = probeable_endpoints(req, profile, &mut notes)?;
                for (url, declared) in reachability_urls(endpoints) {
                    targets.push(given(url, Expect::Any, declared, HttpMethod::Get)?);
                }
            }
            Profile::Mde => {
                let region = req.region.as_deref().unwrap_or("us");
                let rows =
                    crate::mde::urls(region, req.streamlined).map_err(PlanError::MdeRegion)?;
                for r in rows {
                    let m = if r.head {
                        HttpMethod::Head
                    } else {
                        HttpMethod::Get
                    };
                    let expect = Expect::Status(vec![r.expected_status]);
                    targets.push(given(r.url, expect, r.issuers, m)?);
                }
            }
        }
    }

    if let Some(w) = &req.workspace_url {
        if req.profile.is_some() {
            return Err(PlanError::WorkspaceUrlWithProfile);
        }
        if !req.ca_given {
            return Err(PlanError::WorkspaceUrlWithoutCa);
        }
        let url = format!("{}{}", w.trim_end_matches('/'), uplink_protocol::PING_PATH);
        targets.push(TargetSpec::new(
            url,
            Expect::Status(vec![200]),
            issuers(Vec::new()),
            HttpMethod::Get,
            Trust::Ca,
        )?);
    }

    let expect = if req.expect.is_empty() {
        Expect::Status(vec![200])
    } else {
        Expect::Status(req.expect.clone())
    };
    for u in &req.urls {
        targets.push(given(
            u.clone(),
            expect.clone(),
            Vec::new(),
            HttpMethod::Get,
        )?);
    }

    if targets.is_empty() {
        let sensor = req.sensor_url.as_ref().ok_or(PlanError::NothingToTest)?;
        let url = format!(
            "{}{}",
            sensor.trim_end_matches('/'),
            uplink_protocol::PING_PATH
        );
        // The sensor's own CA is the expectation: --expect-issuer does not apply.
        targets.push(TargetSpec::new(
            url,
            Expect::Status(vec![200]),
            Vec::new(),
            HttpMethod::Get,
            Trust::Sensor,
        )?);
    }

    Ok(Plan {
        targets,
        methods: methods(req)?,
        notes,
    })
}

/// `--method` as given (each once, in the order first given), or the default set.
fn methods(req: &Request) -> Result<Vec<Method>, PlanError> {
    if req.methods.is_empty() {
        return Ok(if req.all_hosts {
            ALL_HOSTS_METHODS.to_vec()
        } else {
            Method::ALL.to_vec()
        });
    }
    let mut out = Vec::new();
    for s in &req.methods {
        let method: Method = s.trim().parse().map_err(PlanError::Method)?;
        if !out.contains(&method) {
            out.push(method);
        }
    }
    Ok(out)
}

/// The catalog's endpoints for the profile that a probe can reach: each host, port and path
/// once, in catalog order. Wildcard entries (`*.domain`, no single host) are left out and named
/// in a note.
fn probeable_endpoints(
    req: &Request,
    profile: Profile,
    notes: &mut Vec<String>,
) -> Result<Vec<Endpoint>, PlanError> {
    if profile == Profile::Mdi && req.workspace.is_none() {
        return Err(PlanError::MdiWithoutWorkspace);
    }
    let catalog = catalog::load(profile.name())?;
    let q = UrlQuery {
        workspace: req.workspace.clone().filter(|_| profile == Profile::Mdi),
        cloud: req.cloud.map(|c| c.name().to_owned()),
        region: req.region.clone(),
        streamlined: req.streamlined,
        ..Default::default()
    };
    let resolved = catalog.resolve(&q)?;
    let (endpoints, wild) = probeable(resolved.endpoints);
    if !wild.is_empty() {
        notes.push(format!(
            "{} wildcard entries cannot be probed (no single host): {}",
            wild.len(),
            wild.join(", ")
        ));
    }
    Ok(endpoints)
}

/// The URL that shows a host is reachable, with the entry's issuers: `http://HOST/` for port 80
/// (plain HTTP, as the clients of those CRL and update hosts fetch them), `https://HOST:PORT/`
/// otherwise. Paths are left out, so entries that differ only by path give one URL, once.
fn reachability_urls(endpoints: Vec<Endpoint>) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for e in endpoints {
        let url = if e.port == 80 {
            format!("http://{}/", e.host)
        } else {
            format!("https://{}:{}/", e.host, e.port)
        };
        if !out.iter().any(|(u, _)| *u == url) {
            out.push((url, e.issuers));
        }
    }
    out
}

/// Splits catalog endpoints into those a probe can reach — each host, port and path once, in
/// order — and the wildcard hosts (`*.domain`) it cannot.
fn probeable(endpoints: Vec<Endpoint>) -> (Vec<Endpoint>, Vec<String>) {
    let mut out: Vec<Endpoint> = Vec::new();
    let mut wild = Vec::new();
    for e in endpoints {
        if e.wildcard_domain().is_some() {
            wild.push(e.host);
        } else if !out
            .iter()
            .any(|o| o.host == e.host && o.port == e.port && o.path() == e.path())
        {
            out.push(e);
        }
    }
    (out, wild)
}

#[cfg(test)]
mod tests {
    use super::*;
    use uplink_protocol::PING_PATH;

    fn req(f: impl FnOnce(&mut Request)) -> Request {
        let mut r = Request::default();
        f(&mut r);
        r
    }

    /// (url, expect, HTTP method, trust, issuers) of each target.
    type Row = (String, Expect, HttpMethod, Trust, Vec<String>);

    fn rows(p: &Plan) -> Vec<Row> {
        p.targets
            .iter()
            .map(|t| {
                (
                    t.url.clone(),
                    t.expect.clone(),
                    t.http_method,
                    t.trust,
                    t.issuers.clone(),
                )
            })
            .collect()
    }

    fn row(url: &str, expect: Expect, trust: Trust, issuers: &[&str]) -> Row {
        let issuers = issuers.iter().map(|s| s.to_string()).collect();
        (url.to_owned(), expect, HttpMethod::Get, trust, issuers)
    }

    fn ok(r: &Request) -> Plan {
        decide(r).unwrap_or_else(|e| panic!("{r:?}: {e}"))
    }

    #[test]
    fn bad_requests_name_the_flag_to_change() {
        let url = |r: &mut Request| r.urls = vec!["https://a.example/".into()];
        let cases: Vec<(Request, &str)> = vec![
            (req(|_| {}), "nothing to test: give --url, --profile"),
            (req(|r| r.expect = vec![204]), "nothing to test"),
            (
                req(|r| r.all_hosts = true),
                "--all-hosts (and allowlist verify) needs --profile",
            ),
            (
                req(|r| r.profile = Some(Profile::Mdi)),
                "--profile mdi needs --workspace NAME",
            ),
            (
                req(|r| {
                    r.profile = Some(Profile::Mdi);
                    r.all_hosts = true;
                }),
                "--profile mdi needs --workspace NAME",
            ),
            (
                req(|r| {
                    r.profile = Some(Profile::Mde);
                    r.workspace_url = Some("https://w.example/".into());
                    r.ca_given = true;
                }),
                "--workspace-url and --profile test different services",
            ),
            (
                req(|r| r.workspace_url = Some("https://w.example/".into())),
                "--workspace-url needs --ca FILE",
            ),
            (
                req(|r| {
                    r.profile = Some(Profile::Mde);
                    r.region = Some("mars".into());
                }),
                "unknown MDE region \"mars\"",
            ),
            (
                req(|r| {
                    r.profile = Some(Profile::Mde);
                    r.cloud = Some(Cloud::Dod);
                }),
                "profile mde has no standard endpoints for cloud dod",
            ),
            (
                req(|r| {
                    r.profile = Some(Profile::Mdi);
                    r.workspace = Some("contoso".into());
                    r.region = Some("mars".into());
                }),
                "mars",
            ),
            (
                req(|r| r.urls = vec!["ftp://x".into()]),
                "\"ftp://x\" is not an http:// or https:// URL",
            ),
            (
                req(|r| {
                    url(r);
                    r.methods = vec!["direct".into(), "proxy".into()];
                }),
                "unknown method \"proxy\"",
            ),
            // Targets are checked before methods.
            (
                req(|r| {
                    r.all_hosts = true;
                    r.methods = vec!["proxy".into()];
                }),
                "--all-hosts",
            ),
            (
                req(|r| r.sensor_url = Some("ftp://bad".into())),
                "\"ftp://bad/tri/sensor/api/ping\" is not an http",
            ),
        ];
        for (r, want) in cases {
            match decide(&r) {
                Ok(p) => panic!("{r:?}: planned {:?}", rows(&p)),
                Err(e) => assert!(e.to_string().contains(want), "{r:?}: {e}"),
            }
        }
    }

    #[test]
    fn explicit_targets_and_the_sensor_fallback() {
        let status = |s: &[u16]| Expect::Status(s.to_vec());
        let sensor =
            |r: &mut Request| r.sensor_url = Some("https://wsensorapi.example:8443/".into());
        let cases: Vec<(&str, Request, Vec<Row>)> =
            vec![
            (
                "the installed sensor, when nothing else is asked: its CA, no issuer override",
                req(|r| {
                    sensor(r);
                    r.expect_issuer = vec!["X".into()];
                }),
                vec![row(
                    &format!("https://wsensorapi.example:8443{PING_PATH}"),
                    status(&[200]),
                    Trust::Sensor,
                    &[],
                )],
            ),
            (
                "URLs replace the sensor; --expect applies to each",
                req(|r| {
                    sensor(r);
                    r.urls = vec!["https://a.example/x".into(), "http://b.example".into()];
                    r.expect = vec![204, 301];
                }),
                vec![
                    row("https://a.example/x", status(&[204, 301]), Trust::CaOrSystem, &[]),
                    row("http://b.example", status(&[204, 301]), Trust::CaOrSystem, &[]),
                ],
            ),
            (
                "a workspace URL is pinged against --ca, before the URLs; --expect-issuer applies",
                req(|r| {
                    r.workspace_url = Some("https://wsensorapi.example/".into());
                    r.ca_given = true;
                    r.urls = vec!["https://a.example/".into()];
                    r.expect_issuer = vec!["Corp CA".into()];
                }),
                vec![
                    row(
                        &format!("https://wsensorapi.example{PING_PATH}"),
                        status(&[200]),
                        Trust::Ca,
                        &["Corp CA"],
                    ),
                    row("https://a.example/", status(&[200]), Trust::CaOrSystem, &["Corp CA"]),
                ],
            ),
        ];
        for (what, r, want) in cases {
            let p = ok(&r);
            assert_eq!(rows(&p), want, "{what}");
            assert!(p.notes.is_empty(), "{what}: {:?}", p.notes);
        }
        let t = ok(&req(sensor)).targets.remove(0);
        assert_eq!(
            (t.parts.host.as_str(), t.parts.port, t.parts.tls),
            ("wsensorapi.example", 8443, true)
        );
    }

    #[test]
    fn mdi_targets_ping_the_sensor_api_and_reach_the_rest() {
        for (cloud, sensor_host, console) in [
            (
                None,
                "contososensorapi.atp.azure.com",
                "https://contoso.atp.azure.com/",
            ),
            (
                Some(Cloud::GccHigh),
                "contososensorapi.atp.azure.us",
                "https://security.microsoft.us/",
            ),
        ] {
            let p = ok(&req(|r| {
                r.profile = Some(Profile::Mdi);
                r.workspace = Some("contoso".into());
                r.cloud = cloud;
            }));
            let rows = rows(&p);
            assert_eq!(
                rows[0],
                row(
                    &format!("https://{sensor_host}{PING_PATH}"),
                    Expect::Status(vec![200, 503]),
                    Trust::CaOrSystem,
                    &rows[0].4.iter().map(String::as_str).collect::<Vec<_>>(),
                ),
                "{cloud:?}"
            );
            assert!(
                rows.iter().any(|r| r.0 == console && r.1 == Expect::Any),
                "{cloud:?}: {rows:?}"
            );
            // Port 80 entries are fetched over plain HTTP with their path, without the `*`.
            assert!(
                rows.iter()
                    .any(|r| r.0 == "http://www.microsoft.com/pkiops/"),
                "{cloud:?}: {rows:?}"
            );
            for r in &rows {
                assert!(!r.0.contains('*'), "{r:?}");
                if r.0.starts_with("http://") {
                    assert_eq!(r.1, Expect::Any, "{r:?}");
                }
            }
        }
    }

    #[test]
    fn mde_targets_are_the_analyzer_table_for_the_commercial_cloud() {
        for (region, streamlined, cloud) in [
            (None, false, None),
            (Some("eu"), true, None),
            (Some("UK"), false, Some(Cloud::Commercial)),
        ] {
            let p = ok(&req(|r| {
                r.profile = Some(Profile::Mde);
                r.region = region.map(str::to_owned);
                r.streamlined = streamlined;
                r.cloud = cloud;
            }));
            let table = crate::mde::urls(region.unwrap_or("us"), streamlined).unwrap();
            let want: Vec<Row> = table
                .into_iter()
                .map(|u| {
                    let m = if u.head {
                        HttpMethod::Head
                    } else {
                        HttpMethod::Get
                    };
                    (
                        u.url,
                        Expect::Status(vec![u.expected_status]),
                        m,
                        Trust::CaOrSystem,
                        u.issuers,
                    )
                })
                .collect();
            assert_eq!(rows(&p), want, "{region:?} {streamlined}");
            assert!(p.notes.is_empty());
        }
        // --expect-issuer replaces the table's pins.
        let p = ok(&req(|r| {
            r.profile = Some(Profile::Mde);
            r.expect_issuer = vec!["Corp Inspection CA".into()];
        }));
        assert!(p
            .targets
            .iter()
            .all(|t| t.issuers == ["Corp Inspection CA"]));
    }

    #[test]
    fn mde_in_other_clouds_checks_the_catalog_for_reachability() {
        let p = ok(&req(|r| {
            r.profile = Some(Profile::Mde);
            r.cloud = Some(Cloud::GccHigh);
            r.streamlined = true;
        }));
        assert!(p.notes[0].starts_with("the analyzer's URL table covers the commercial cloud"));
        assert!(!p.targets.is_empty());
        for t in &p.targets {
            assert_eq!(
                (&t.expect, t.http_method),
                (&Expect::Any, HttpMethod::Get),
                "{}",
                t.url
            );
            assert!(!t.parts.host.starts_with('*'), "{}", t.url);
        }
        assert!(p.targets.iter().any(|t| t.parts.host.ends_with(".us")));
    }

    #[test]
    fn all_hosts_reaches_every_probeable_host_with_any_status() {
        let p = ok(&req(|r| {
            r.profile = Some(Profile::Mdi);
            r.workspace = Some("contoso".into());
            r.all_hosts = true;
        }));
        assert_eq!(p.methods, ALL_HOSTS_METHODS);
        assert_eq!(
            p.targets[0].url,
            "https://contososensorapi.atp.azure.com:443/"
        );
        for t in &p.targets {
            assert_eq!(t.expect, Expect::Any);
            assert_eq!(t.parts.tls, t.parts.port != 80, "{}", t.url);
            assert_eq!(t.parts.path, "/", "{}", t.url);
        }
        // MDE's streamlined list is mostly wildcards: those are named, not probed.
        let p = ok(&req(|r| {
            r.profile = Some(Profile::Mde);
            r.streamlined = true;
            r.all_hosts = true;
        }));
        let note = p.notes.iter().find(|n| n.contains("wildcard")).unwrap();
        assert!(note.contains("*.endpoint.security.microsoft.com"), "{note}");
        assert!(p.targets.iter().all(|t| !t.url.contains('*')));
    }

    #[test]
    fn catalog_entries_are_probed_once_and_wildcards_set_aside() {
        let ep = |pattern: &str, port: u16| {
            let host = pattern.split('/').next().unwrap().to_owned();
            Endpoint {
                host,
                port,
                pattern: pattern.to_owned(),
                purpose: Purpose::Revocation,
                source: "s".into(),
                region: None,
                issuers: Vec::new(),
            }
        };
        let (kept, wild) = probeable(vec![
            ep("a.example", 443),
            ep("*.w.example", 443),
            ep("a.example", 443),
            ep("a.example", 8443),
            ep("c.example/pki/*", 80),
            ep("c.example/pki/*", 80),
            ep("c.example/pkiops/*", 80),
            ep("*.v.example", 80),
        ]);
        let kept: Vec<(String, u16)> = kept.into_iter().map(|e| (e.pattern, e.port)).collect();
        assert_eq!(
            kept,
            [
                ("a.example".to_owned(), 443),
                ("a.example".to_owned(), 8443),
                ("c.example/pki/*".to_owned(), 80),
                ("c.example/pkiops/*".to_owned(), 80),
            ]
        );
        assert_eq!(wild, ["*.w.example", "*.v.example"]);
    }

    #[test]
    fn reachability_is_plain_http_on_port_80_and_each_url_once() {
        let ep = |pattern: &str, port: u16, issuer: &str| Endpoint {
            host: pattern.split('/').next().unwrap().to_owned(),
            port,
            pattern: pattern.to_owned(),
            purpose: Purpose::Revocation,
            source: "s".into(),
            region: None,
            issuers: vec![issuer.to_owned()],
        };
        let got = reachability_urls(vec![
            ep("a.example", 443, "A"),
            ep("c.example/pki/*", 80, "C1"),
            ep("c.example/pkiops/*", 80, "C2"),
            ep("a.example", 8443, "A2"),
            ep("a.example/x", 443, "A3"),
        ]);
        let want = [
            ("https://a.example:443/", "A"),
            ("http://c.example/", "C1"),
            ("https://a.example:8443/", "A2"),
        ];
        let got: Vec<(&str, &str)> = got
            .iter()
            .map(|(u, i)| (u.as_str(), i[0].as_str()))
            .collect();
        assert_eq!(got, want);
    }

    /// Every profile, cloud, region and variant the catalog answers: each URL once, TLS never
    /// to port 80, no wildcard host.
    #[test]
    fn every_selection_plans_each_url_once_and_tls_never_on_port_80() {
        let mut planned = 0;
        for profile in Profile::ALL {
            let regions = catalog::load(profile.name()).unwrap().regions;
            for cloud in Cloud::ALL.map(Some).into_iter().chain([None]) {
                for region in regions.iter().cloned().map(Some).chain([None]) {
                    for (streamlined, all_hosts) in
                        [(false, false), (true, false), (false, true), (true, true)]
                    {
                        let r = req(|r| {
                            r.profile = Some(profile);
                            r.workspace = Some("contoso".into());
                            r.cloud = cloud;
                            r.region = region.clone();
                            r.streamlined = streamlined;
                            r.all_hosts = all_hosts;
                        });
                        let Ok(p) = decide(&r) else { continue };
                        planned += 1;
                        let mut seen = std::collections::HashSet::new();
                        for t in &p.targets {
                            assert!(seen.insert(&t.url), "{r:?}: {} twice", t.url);
                            assert!(!(t.parts.tls && t.parts.port == 80), "{r:?}: {}", t.url);
                            assert!(!t.parts.host.contains('*'), "{r:?}: {}", t.url);
                        }
                    }
                }
            }
        }
        assert!(planned > 40, "{planned}");
    }

    #[test]
    fn methods_as_given_once_or_the_default_set() {
        let m = |v: &[&str], all_hosts: bool| {
            methods(&req(|r| {
                r.methods = v.iter().map(|s| s.to_string()).collect();
                r.all_hosts = all_hosts;
            }))
        };
        // (--method values, --all-hosts, the methods or a fragment of the error)
        type Case<'a> = (&'a [&'a str], bool, Result<&'a [Method], &'a str>);
        let cases: &[Case] = &[
            (&[], false, Ok(&Method::ALL)),
            (&[], true, Ok(&ALL_HOSTS_METHODS)),
            (&["pac"], true, Ok(&[Method::Pac])),
            (
                &["cli", " direct", "cli"],
                false,
                Ok(&[Method::Cli, Method::Direct]),
            ),
            (
                &["direct", "DIRECT"],
                false,
                Err("unknown method \"DIRECT\""),
            ),
            (&[""], false, Err("unknown method \"\"")),
        ];
        for (given, all_hosts, want) in cases {
            match (m(given, *all_hosts), want) {
                (Ok(got), Ok(w)) => assert_eq!(got, *w, "{given:?}"),
                (Err(e), Err(text)) => assert!(e.to_string().contains(text), "{given:?}: {e}"),
                (got, want) => panic!("{given:?}: {got:?} vs {want:?}"),
            }
        }
    }

    #[test]
    fn profiles_parse_by_name() {
        for p in Profile::ALL {
            assert_eq!(p.name().parse::<Profile>(), Ok(p));
            assert!(catalog::profiles().any(|c| c == p.name()));
        }
        assert_eq!(Profile::ALL.map(Profile::name), Profile::NAMES);
        assert!("uplink".parse::<Profile>().is_err());
    }
}
