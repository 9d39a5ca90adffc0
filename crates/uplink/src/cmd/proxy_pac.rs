//! `uplink proxy pac` and `uplink proxy wpad`: run a PAC script by hand, the way the sensor would,
//! to see exactly what it answers for given URLs (and, with WPAD, where the PAC would come from).
//! Behaviour lives in `uplink-pac`; this file parses flags, loads the script and prints.

use std::io::{BufRead, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uplink_pac::{Clock, EvalOptions, FixedResolver, Pac, SystemResolver};

/// Arguments of `uplink proxy pac`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Each result is printed exactly as the script returned it, one line per URL. URLs are \
passed to the script as given (the sensor itself shortens https URLs to https://host:port/, as \
browsers do); the host argument is the URL's host, lower-cased, without brackets.\n\n\
Examples:\n  uplink proxy pac --pac proxy.pac --url https://example.com/\n  \
uplink proxy pac --pac http://wpad.corp.example/wpad.dat --urls urls.txt --resolve intranet.corp.example=10.1.2.3\n  \
uplink proxy pac --pac proxy.pac --url http://a.example/ --now 2024-03-04T09:30:00+01:00 --my-ip 10.0.0.7\n\n\
Exit status: 0 every URL evaluated; 1 the script failed to load or fetch, or a URL failed \
(its line reads `ERROR: message`); 2 usage error."
)]
pub struct PacArgs {
    /// The PAC script: a file path, file:// URL or http:// URL.
    #[arg(long, value_name = "FILE-OR-URL")]
    pub pac: String,
    /// Evaluate FindProxyForURL for this URL.
    #[arg(
        long,
        value_name = "URL",
        conflicts_with = "urls",
        required_unless_present = "urls"
    )]
    pub url: Option<String>,
    /// Evaluate every URL in this file, one per line (blank lines and lines starting with # are
    /// skipped; `-` reads standard input).
    #[arg(long, value_name = "FILE")]
    pub urls: Option<PathBuf>,
    /// What myIpAddress() returns (repeat for myIpAddressEx()); default: the local address that
    /// routes to the Internet.
    #[arg(long = "my-ip", value_name = "IP")]
    pub my_ip: Vec<IpAddr>,
    /// Fix the clock for weekdayRange/dateRange/timeRange; its UTC offset is the local time zone
    /// the script sees (e.g. 2024-03-04T09:30:00+01:00).
    #[arg(long, value_name = "RFC3339", value_parser = parse_now)]
    pub now: Option<OffsetDateTime>,
    /// Answer DNS lookups of HOST with IP (repeatable, several IPs per host allowed); other names
    /// go to the system resolver.
    #[arg(long, value_name = "HOST=IP", value_parser = uplink_pac::parse_resolve_arg)]
    pub resolve: Vec<(String, IpAddr)>,
    /// Wall-clock limit of one evaluation, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 2000)]
    pub timeout_ms: u64,
}

fn parse_now(s: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s, &Rfc3339).map_err(|e| {
        format!("{s:?} is not an RFC 3339 time ({e}); write e.g. 2024-03-04T09:30:00+01:00")
    })
}

/// Arguments of `uplink proxy wpad`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Steps, in order: DHCP option 252 in systemd-networkd leases, then in dhclient \
leases; then DNS: http://wpad.<domain>/wpad.dat for each search domain of resolv.conf and its \
parents, never reaching a public suffix (wpad.com, wpad.co.uk). The first PAC fetched wins. Not \
yet consulted: NetworkManager over D-Bus.\n\nExit status: 0 a PAC was found; 1 none was found."
)]
pub struct WpadArgs {
    /// Print the steps as JSON.
    #[arg(long)]
    pub json: bool,
    /// Directories and files holding DHCP leases (default: /run/systemd/netif/leases,
    /// /var/lib/dhcp, /var/lib/dhclient); files named *.lease(s) are read as dhclient leases,
    /// others as networkd leases.
    #[arg(long = "leases", value_name = "PATH")]
    pub leases: Vec<PathBuf>,
    /// The resolv.conf whose search domains start the DNS walk.
    #[arg(long, value_name = "FILE", default_value = "/etc/resolv.conf")]
    pub resolv_conf: PathBuf,
}

/// Reads the PAC source from a path, a file:// URL or an http:// URL.
fn load_pac(spec: &str) -> anyhow::Result<String> {
    let lower = spec.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        let fetched = uplink_pac::fetch::fetch(spec, &uplink_pac::fetch::FetchOptions::default())?;
        return Ok(fetched.body);
    }
    let path = spec.strip_prefix("file://").unwrap_or(spec);
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read the PAC file {path:?}"))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn read_urls(path: &PathBuf) -> anyhow::Result<Vec<String>> {
    let text = if path.as_os_str() == "-" {
        let mut s = String::new();
        for line in std::io::stdin().lock().lines() {
            s.push_str(&line.context("reading URLs from standard input")?);
            s.push('\n');
        }
        s
    } else {
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the URL list {}", path.display()))?
    };
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect())
}

pub fn run_pac(args: PacArgs) -> anyhow::Result<ExitCode> {
    let source = load_pac(&args.pac)?;
    let limits = uplink_pac::Limits {
        eval_timeout: std::time::Duration::from_millis(args.timeout_ms.max(1)),
        ..uplink_pac::Limits::default()
    };
    let mut pac = Pac::compile_with(&source, limits)
        .with_context(|| format!("loading the PAC {}", args.pac))?;
    let mut resolver = FixedResolver::new().with_fallback(Arc::new(SystemResolver::new()));
    for (host, ip) in &args.resolve {
        resolver = resolver.with(host, *ip);
    }
    let opts = EvalOptions {
        resolver: Arc::new(resolver),
        my_ip: args.my_ip.clone(),
        clock: args.now.map_or(Clock::System, Clock::Fixed),
        ..EvalOptions::default()
    };

    let single = args.urls.is_none();
    let urls = match (&args.url, &args.urls) {
        (Some(u), _) => vec![u.clone()],
        (None, Some(path)) => read_urls(path)?,
        (None, None) => anyhow::bail!("give --url URL or --urls FILE"),
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut failed = false;
    for url in &urls {
        let result = match uplink_pac::host_for_pac(url) {
            Some(host) => pac.find_proxy(url, &host, &opts).map_err(|e| e.to_string()),
            None => Err(format!(
                "{url:?} is not a URL with a host; write e.g. https://example.com/"
            )),
        };
        for alert in pac.take_alerts() {
            eprintln!("alert: {alert}");
        }
        match result {
            Ok(s) => writeln!(out, "{s}")?,
            Err(e) if single => {
                out.flush()?;
                eprintln!("error: evaluating {url}: {e}");
                return Ok(ExitCode::from(1));
            }
            Err(e) => {
                failed = true;
                writeln!(out, "ERROR: {}", e.replace('\n', " "))?;
            }
        }
    }
    out.flush()?;
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

#[derive(Debug, serde::Serialize)]
struct WpadStep {
    step: String,
    source: String,
    outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pac_url: Option<String>,
}

fn lease_files(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            if let Ok(rd) = std::fs::read_dir(p) {
                let mut files: Vec<PathBuf> = rd
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.is_file())
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

pub fn run_wpad(args: WpadArgs) -> anyhow::Result<ExitCode> {
    let lease_paths = if args.leases.is_empty() {
        [
            "/run/systemd/netif/leases",
            "/var/lib/dhcp",
            "/var/lib/dhclient",
        ]
        .iter()
        .map(PathBuf::from)
        .collect()
    } else {
        args.leases.clone()
    };
    let mut steps: Vec<WpadStep> = Vec::new();
    let mut domains: Vec<String> = Vec::new();
    let mut urls: Vec<(String, String)> = Vec::new();
    for file in lease_files(&lease_paths) {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let (kind, info) = if name.contains(".lease") {
            (
                "dhcp (dhclient lease)",
                uplink_wpad::parse_dhclient_leases(&text),
            )
        } else {
            (
                "dhcp (networkd lease)",
                uplink_wpad::parse_networkd_lease(&text),
            )
        };
        let outcome = match &info.wpad_url {
            Some(u) => format!("option 252: {u}"),
            None => "no option 252".to_string(),
        };
        steps.push(WpadStep {
            step: kind.into(),
            source: file.display().to_string(),
            outcome,
            pac_url: None,
        });
        if let Some(u) = info.wpad_url {
            urls.push((kind.to_string(), u));
        }
        domains.extend(info.domain);
    }
    match std::fs::read_to_string(&args.resolv_conf) {
        Ok(text) => domains.extend(uplink_wpad::parse_resolv_conf(&text)),
        Err(e) => steps.push(WpadStep {
            step: "dns".into(),
            source: args.resolv_conf.display().to_string(),
            outcome: format!("cannot read: {e}"),
            pac_url: None,
        }),
    }
    for u in uplink_wpad::dns_candidates(&domains) {
        urls.push(("dns".to_string(), u));
    }
    if domains.is_empty() {
        steps.push(WpadStep {
            step: "dns".into(),
            source: "search domains".into(),
            outcome: "none known: no DNS candidates".into(),
            pac_url: None,
        });
    }
    let fetch_opts = uplink_pac::fetch::FetchOptions {
        timeout: std::time::Duration::from_secs(5),
        ..Default::default()
    };
    let mut found = None;
    for (kind, url) in urls {
        let outcome = match uplink_pac::fetch::fetch(&url, &fetch_opts) {
            Ok(f) => match Pac::compile(&f.body) {
                Ok(_) => {
                    found = Some(url.clone());
                    format!(
                        "found a PAC ({} bytes, refresh after {}s)",
                        f.body.len(),
                        f.refresh_after.as_secs()
                    )
                }
                Err(e) => format!("fetched, but not a usable PAC: {e}"),
            },
            Err(e) => e.to_string(),
        };
        let hit = found.as_deref() == Some(url.as_str());
        steps.push(WpadStep {
            step: kind,
            source: url.clone(),
            outcome,
            pac_url: hit.then(|| url.clone()),
        });
        if hit {
            break;
        }
    }
    if args.json {
        println!(
            "{}",
            serde_json::json!({ "pac_url": found, "steps": steps })
        );
    } else {
        for (i, s) in steps.iter().enumerate() {
            println!("{}. {}: {}: {}", i + 1, s.step, s.source, s.outcome);
        }
        match &found {
            Some(u) => println!("PAC: {u}"),
            None => println!("PAC: none found"),
        }
    }
    Ok(if found.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
