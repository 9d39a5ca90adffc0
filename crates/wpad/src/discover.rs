//! Discovery: the I/O around the pure parts, in the order a browser on a managed network would
//! try them, recording every step so `uplink proxy wpad` and `uplink proxy explain` can say what
//! was tried and why it did or did not find anything.
//!
//! 1. DHCP option 252 from NetworkManager (through `nmcli`, which asks NetworkManager over D-Bus)
//!    when it runs;
//! 2. DHCP option 252 in systemd-networkd and dhclient lease files;
//! 3. DNS: `http://wpad.<domain>/wpad.dat` for each search domain (leases' domain names and
//!    resolv.conf's `search`/`domain`), walking up to, never into, a public suffix.
//!
//! Fetching and checking a script is the caller's (`Fetch`): this crate does not depend on the
//! PAC engine. The whole walk has a time budget, so a network where every candidate times out
//! costs a bounded delay, once per cache period (see [`crate::cache`]).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::{dns_candidates, parse_dhclient_leases, parse_networkd_lease, parse_resolv_conf};

/// Where discovery looks. [`Sources::system`] is a Linux host's usual places; tests and
/// containers point them elsewhere (the `uplink` binary takes `UPLINK_WPAD_*` variables).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    /// Lease files, or directories of them: names containing `.lease` are dhclient leases, others
    /// systemd-networkd leases.
    pub leases: Vec<PathBuf>,
    /// The resolv.conf whose search domains start the DNS walk (`None`: no DNS step).
    pub resolv_conf: Option<PathBuf>,
    /// Ask NetworkManager (through `nmcli`) for its DHCP options.
    pub networkmanager: bool,
    /// The whole walk's time budget: candidates left when it is spent are reported, not tried.
    pub budget: Duration,
}

impl Sources {
    /// The system's usual places.
    pub fn system() -> Sources {
        Sources {
            leases: [
                "/run/systemd/netif/leases",
                "/var/lib/dhcp",
                "/var/lib/dhclient",
                "/var/lib/NetworkManager",
            ]
            .iter()
            .map(PathBuf::from)
            .collect(),
            resolv_conf: Some(PathBuf::from("/etc/resolv.conf")),
            networkmanager: true,
            budget: Duration::from_secs(15),
        }
    }

    /// Nothing to look at: discovery finds nothing, at once.
    pub fn none() -> Sources {
        Sources {
            leases: Vec::new(),
            resolv_conf: None,
            networkmanager: false,
            budget: Duration::from_secs(15),
        }
    }

    /// These sources with the overrides a container or a test sets (`var` reads them; the
    /// binary passes the environment): `UPLINK_WPAD_RESOLV_CONF` (a file; empty: no DNS step),
    /// `UPLINK_WPAD_LEASES` (`:`-separated files or directories; empty: none),
    /// `UPLINK_WPAD_NETWORKMANAGER` (`0`, `false`, `no` or `off`: do not ask NetworkManager).
    pub fn with_overrides(mut self, var: impl Fn(&str) -> Option<String>) -> Sources {
        if let Some(v) = var("UPLINK_WPAD_RESOLV_CONF") {
            self.resolv_conf = (!v.is_empty()).then(|| PathBuf::from(v));
        }
        if let Some(v) = var("UPLINK_WPAD_LEASES") {
            self.leases = v
                .split(':')
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
                .collect();
        }
        if let Some(v) = var("UPLINK_WPAD_NETWORKMANAGER") {
            self.networkmanager = !matches!(v.as_str(), "0" | "false" | "no" | "off");
        }
        self
    }
}

impl Default for Sources {
    fn default() -> Sources {
        Sources::system()
    }
}

/// One thing discovery tried.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Step {
    /// `networkmanager`, `dhcp (networkd lease)`, `dhcp (dhclient lease)`, `dns`.
    pub step: String,
    /// What was read or fetched: a file, a URL, a program.
    pub source: String,
    /// What came of it, in words.
    pub outcome: String,
    /// The PAC URL, on the step that found the script.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pac_url: Option<String>,
}

impl std::fmt::Display for Step {
    /// `dns http://wpad.corp/wpad.dat: found a PAC (…)`, as explanations list it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.step, self.source, self.outcome)
    }
}

/// A script discovery found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub url: String,
    pub script: String,
    /// How long the script stays fresh (from its HTTP caching headers, bounded by the fetcher).
    pub refresh_after: Duration,
}

/// What discovery did and found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    pub steps: Vec<Step>,
    pub found: Option<Found>,
}

/// A fetched script: its text and how long it stays fresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub script: String,
    pub refresh_after: Duration,
}

/// Fetches a candidate URL and checks that what came back is a usable PAC; the error is the
/// outcome to report.
pub trait Fetch {
    fn fetch(&mut self, url: &str) -> Result<Fetched, String>;
}

impl<F: FnMut(&str) -> Result<Fetched, String>> Fetch for F {
    fn fetch(&mut self, url: &str) -> Result<Fetched, String> {
        self(url)
    }
}

/// Runs discovery over `sources`; the first candidate whose script fetches and checks wins.
pub fn discover(sources: &Sources, fetcher: &mut dyn Fetch) -> Discovery {
    let started = Instant::now();
    let mut steps = Vec::new();
    let mut domains: Vec<String> = Vec::new();
    let mut urls: Vec<(String, String)> = Vec::new();

    if sources.networkmanager {
        let (step, found) = networkmanager();
        if let Some(nm) = found {
            if let Some(u) = nm.wpad_url {
                urls.push(("networkmanager".into(), u));
            }
            domains.extend(nm.domain);
        }
        steps.push(step);
    }

    for file in lease_files(&sources.leases) {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let (kind, info) = if name.contains(".lease") {
            ("dhcp (dhclient lease)", parse_dhclient_leases(&text))
        } else {
            ("dhcp (networkd lease)", parse_networkd_lease(&text))
        };
        steps.push(Step {
            step: kind.into(),
            source: file.display().to_string(),
            outcome: match &info.wpad_url {
                Some(u) => format!("option 252: {u}"),
                None => "no option 252".into(),
            },
            pac_url: None,
        });
        if let Some(u) = info.wpad_url {
            urls.push((kind.into(), u));
        }
        domains.extend(info.domain);
    }

    if let Some(resolv) = &sources.resolv_conf {
        match std::fs::read_to_string(resolv) {
            Ok(text) => domains.extend(parse_resolv_conf(&text)),
            Err(e) => steps.push(Step {
                step: "dns".into(),
                source: resolv.display().to_string(),
                outcome: format!("cannot read: {e}"),
                pac_url: None,
            }),
        }
    }
    let candidates = dns_candidates(&domains);
    if candidates.is_empty() {
        steps.push(Step {
            step: "dns".into(),
            source: "search domains".into(),
            outcome: if domains.is_empty() {
                "none known: no DNS candidates".into()
            } else {
                format!(
                    "{} yield no candidate below a public suffix",
                    domains.join(", ")
                )
            },
            pac_url: None,
        });
    }
    urls.extend(candidates.into_iter().map(|u| ("dns".to_string(), u)));

    let mut found = None;
    for (kind, url) in urls {
        if started.elapsed() >= sources.budget {
            steps.push(Step {
                step: kind,
                source: url,
                outcome: format!(
                    "not tried: discovery's {}s budget is spent",
                    sources.budget.as_secs()
                ),
                pac_url: None,
            });
            continue;
        }
        match fetcher.fetch(&url) {
            Ok(f) => {
                steps.push(Step {
                    step: kind,
                    source: url.clone(),
                    outcome: format!(
                        "found a PAC ({} bytes, fresh for {}s)",
                        f.script.len(),
                        f.refresh_after.as_secs()
                    ),
                    pac_url: Some(url.clone()),
                });
                found = Some(Found {
                    url,
                    script: f.script,
                    refresh_after: f.refresh_after,
                });
                break;
            }
            Err(e) => steps.push(Step {
                step: kind,
                source: url,
                outcome: e,
                pac_url: None,
            }),
        }
    }
    Discovery { steps, found }
}

fn lease_files(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            if let Ok(rd) = std::fs::read_dir(p) {
                let mut files: Vec<PathBuf> = rd
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.is_file() && is_lease_name(p))
                    .collect();
                files.sort();
                out.extend(files);
            }
        } else if p.is_file() {
            out.push(p.clone());
        }
    }
    out
}

/// In a directory, only files that look like leases: networkd names them by interface index,
/// dhclient and NetworkManager `*.lease(s)`. (Named files are always read.)
fn is_lease_name(p: &Path) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.contains(".lease") || (!name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()))
}

/// What NetworkManager's active DHCPv4 configurations say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NmInfo {
    pub wpad_url: Option<String>,
    pub domain: Option<String>,
}

fn networkmanager() -> (Step, Option<NmInfo>) {
    let step = |outcome: String| Step {
        step: "networkmanager".into(),
        source: "nmcli -t -f DHCP4 device show".into(),
        outcome,
        pac_url: None,
    };
    let out = match Command::new("nmcli")
        .args(["-t", "-f", "DHCP4", "device", "show"])
        .stdin(std::process::Stdio::null())
        .output()
    {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return (
                step("nmcli is not installed (NetworkManager not in use)".into()),
                None,
            )
        }
        Err(e) => return (step(format!("cannot run nmcli: {e}")), None),
    };
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let first = err.lines().next().unwrap_or("").trim();
        return (
            step(format!("NetworkManager did not answer: {first}")),
            None,
        );
    }
    let info = parse_nmcli_dhcp4(&String::from_utf8_lossy(&out.stdout));
    let outcome = match &info.wpad_url {
        Some(u) => format!("option 252: {u}"),
        None => "no option 252 in any active DHCPv4 configuration".into(),
    };
    (step(outcome), Some(info))
}

/// Parses `nmcli -t -f DHCP4 device show`: lines `DHCP4.OPTION[n]:name = value`, one device
/// after another. NetworkManager calls option 252 `wpad` (its dhclient backend: `wpad`; some
/// versions `proxy_auto_config`). The first device that has one wins.
pub fn parse_nmcli_dhcp4(text: &str) -> NmInfo {
    let mut info = NmInfo::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        if !key.starts_with("DHCP4.OPTION") {
            continue;
        }
        let Some((name, value)) = value.split_once(" = ") else {
            continue;
        };
        let value = value.trim();
        match name.trim() {
            "wpad" | "proxy_auto_config" | "option_252" | "private_252"
                if info.wpad_url.is_none() =>
            {
                let lower = value.to_ascii_lowercase();
                if lower.starts_with("http://") || lower.starts_with("https://") {
                    info.wpad_url = Some(value.trim_end_matches('\0').to_string());
                }
            }
            "domain_name" if info.domain.is_none() => {
                info.domain = value
                    .split_whitespace()
                    .next()
                    .map(|d| d.trim_end_matches('.').to_ascii_lowercase())
                    .filter(|d| !d.is_empty());
            }
            _ => {}
        }
    }
    info
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nmcli_output() {
        let cases: &[(&str, Option<&str>, Option<&str>)] = &[
            ("", None, None),
            (
                "DHCP4.OPTION[1]:broadcast_address = 10.0.0.255\nDHCP4.OPTION[2]:domain_name = corp.example.com\nDHCP4.OPTION[3]:wpad = http://pac.corp.example.com/proxy.pac\n",
                Some("http://pac.corp.example.com/proxy.pac"),
                Some("corp.example.com"),
            ),
            // Not a URL: ignored, as browsers do.
            ("DHCP4.OPTION[1]:wpad = \n", None, None),
            ("DHCP4.OPTION[1]:wpad = file:///etc/x.pac\n", None, None),
            // Two devices: the first with option 252 wins.
            (
                "DHCP4.OPTION[1]:domain_name = a.example\nDHCP4.OPTION[1]:wpad = http://a/wpad.dat\nDHCP4.OPTION[1]:wpad = http://b/wpad.dat\n",
                Some("http://a/wpad.dat"),
                Some("a.example"),
            ),
            ("garbage\n:::\nDHCP4.OPTION[1]:nonsense\n", None, None),
            // NetworkManager 1.42 (internal DHCP client) after a real exchange with dnsmasq
            // (crates/uplink/tests/it/wpad_dhcp.rs), abridged: `requested_wpad = 1` comes first and is not the URL.
            (
                "DHCP4.OPTION[1]:broadcast_address = 10.79.200.255\n\
                 DHCP4.OPTION[5]:domain_name = corp.uplink.test\n\
                 DHCP4.OPTION[8]:ip_address = 10.79.200.11\n\
                 DHCP4.OPTION[25]:requested_time_offset = 1\n\
                 DHCP4.OPTION[26]:requested_wpad = 1\n\
                 DHCP4.OPTION[27]:routers = 10.79.200.1\n\
                 DHCP4.OPTION[28]:subnet_mask = 255.255.255.0\n\
                 DHCP4.OPTION[29]:wpad = http://10.79.200.1/wpad.dat\n",
                Some("http://10.79.200.1/wpad.dat"),
                Some("corp.uplink.test"),
            ),
        ];
        for (text, url, domain) in cases {
            let info = parse_nmcli_dhcp4(text);
            assert_eq!(info.wpad_url.as_deref(), *url, "{text:?}");
            assert_eq!(info.domain.as_deref(), *domain, "{text:?}");
        }
    }

    #[test]
    fn discovery_walks_leases_then_dns_and_stops_at_the_first_script() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("2"),
            "ADDRESS=10.0.0.5\nDOMAINNAME=eu.corp.example.com\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "OPTION_252=41").unwrap();
        let resolv = dir.path().join("resolv.conf");
        std::fs::write(&resolv, "search lab.example.net\n").unwrap();
        let sources = Sources {
            leases: vec![dir.path().to_path_buf()],
            resolv_conf: Some(resolv),
            networkmanager: false,
            budget: Duration::from_secs(60),
        };
        let mut tried = Vec::new();
        let d = discover(&sources, &mut |url: &str| {
            tried.push(url.to_string());
            if url == "http://wpad.corp.example.com/wpad.dat" {
                Ok(Fetched {
                    script: "function FindProxyForURL(){return 'DIRECT'}".into(),
                    refresh_after: Duration::from_secs(600),
                })
            } else {
                Err("does not resolve".into())
            }
        });
        assert_eq!(
            tried,
            [
                "http://wpad.eu.corp.example.com/wpad.dat",
                "http://wpad.corp.example.com/wpad.dat"
            ]
        );
        let found = d.found.expect("found");
        assert_eq!(found.url, "http://wpad.corp.example.com/wpad.dat");
        assert_eq!(found.refresh_after, Duration::from_secs(600));
        // The lease step, two DNS steps; notes.txt is not a lease name and is not read.
        assert_eq!(d.steps.len(), 3, "{:?}", d.steps);
        assert_eq!(d.steps[0].outcome, "no option 252");
        assert_eq!(d.steps[2].pac_url.as_deref(), Some(found.url.as_str()));
    }

    #[test]
    fn option_252_comes_before_dns_and_a_spent_budget_stops_the_walk() {
        let dir = tempfile::tempdir().unwrap();
        let lease = dir.path().join("dhclient.eth0.leases");
        std::fs::write(
            &lease,
            "lease {\n  option wpad \"http://10.1.1.1/p.pac\";\n  option domain-name \"corp.example.com\";\n}\n",
        )
        .unwrap();
        let sources = Sources {
            leases: vec![lease],
            resolv_conf: None,
            networkmanager: false,
            budget: Duration::ZERO,
        };
        let d = discover(&sources, &mut |_: &str| -> Result<Fetched, String> {
            panic!("nothing may be fetched with no budget")
        });
        assert!(d.found.is_none());
        let urls: Vec<_> = d.steps.iter().map(|s| s.source.as_str()).collect();
        assert_eq!(urls[1], "http://10.1.1.1/p.pac");
        assert_eq!(urls[2], "http://wpad.corp.example.com/wpad.dat");
        assert!(d.steps[1].outcome.contains("budget"));
    }

    #[test]
    fn nothing_to_look_at_finds_nothing_and_says_so() {
        let d = discover(
            &Sources::none(),
            &mut |_: &str| -> Result<Fetched, String> { panic!("nothing to fetch") },
        );
        assert!(d.found.is_none());
        assert_eq!(d.steps.len(), 1);
        assert_eq!(d.steps[0].outcome, "none known: no DNS candidates");
    }

    #[test]
    fn overrides_from_the_environment() {
        let with = |vars: &[(&str, &str)]| {
            let vars: Vec<(String, String)> = vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            Sources::system()
                .with_overrides(move |k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
        };
        assert_eq!(with(&[]), Sources::system());
        // (variables, leases, resolv.conf, NetworkManager)
        // The leases Sources::system() reads.
        const SYSTEM_LEASES: &[&str] = &[
            "/run/systemd/netif/leases",
            "/var/lib/dhcp",
            "/var/lib/dhclient",
            "/var/lib/NetworkManager",
        ];
        type Case<'a> = (
            &'a [(&'a str, &'a str)],
            &'a [&'a str],
            Option<&'a str>,
            bool,
        );
        let cases: &[Case] = &[
            (
                &[("UPLINK_WPAD_RESOLV_CONF", "/t/resolv.conf")],
                SYSTEM_LEASES,
                Some("/t/resolv.conf"),
                true,
            ),
            (
                &[("UPLINK_WPAD_RESOLV_CONF", ""), ("UPLINK_WPAD_LEASES", "")],
                &[],
                None,
                true,
            ),
            (
                &[("UPLINK_WPAD_LEASES", "/a::/b/c.lease:")],
                &["/a", "/b/c.lease"],
                Some("/etc/resolv.conf"),
                true,
            ),
            (
                &[("UPLINK_WPAD_NETWORKMANAGER", "0")],
                SYSTEM_LEASES,
                Some("/etc/resolv.conf"),
                false,
            ),
            (
                &[
                    ("UPLINK_WPAD_NETWORKMANAGER", "off"),
                    ("UPLINK_WPAD_LEASES", "/l"),
                ],
                &["/l"],
                Some("/etc/resolv.conf"),
                false,
            ),
            (
                &[("UPLINK_WPAD_NETWORKMANAGER", "no")],
                SYSTEM_LEASES,
                Some("/etc/resolv.conf"),
                false,
            ),
            (
                &[("UPLINK_WPAD_NETWORKMANAGER", "false")],
                SYSTEM_LEASES,
                Some("/etc/resolv.conf"),
                false,
            ),
            // Anything else leaves it on.
            (
                &[("UPLINK_WPAD_NETWORKMANAGER", "1")],
                SYSTEM_LEASES,
                Some("/etc/resolv.conf"),
                true,
            ),
        ];
        for (vars, leases, resolv, nm) in cases {
            let s = with(vars);
            let want: Vec<PathBuf> = leases.iter().map(PathBuf::from).collect();
            assert_eq!(s.leases, want, "{vars:?}");
            assert_eq!(s.resolv_conf, resolv.map(PathBuf::from), "{vars:?}");
            assert_eq!(s.networkmanager, *nm, "{vars:?}");
            assert_eq!(s.budget, Sources::system().budget);
        }
    }
}
