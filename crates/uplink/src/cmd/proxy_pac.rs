//! `uplink proxy pac` and `uplink proxy wpad`: run a PAC script by hand, the way the sensor would,
//! to see exactly what it answers for given URLs (and, with WPAD, where the PAC would come from).
//! Behaviour lives in `uplink-pac`; this file parses flags, loads the script and prints.

use std::io::{Read, Write};
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
uplink proxy pac --pac proxy.pac --urls urls.txt --json\n  \
uplink proxy pac --pac http://wpad.corp.example/wpad.dat --urls urls.txt \\\n      \
--resolve intranet.corp.example=10.1.2.3\n  \
uplink proxy pac --pac proxy.pac --url http://a.example/ --now 2024-03-04T09:30:00+01:00 \\\n      \
--my-ip 10.0.0.7\n\n\
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
    /// Wall-clock limit of one evaluation: seconds (2) or with a unit (500ms, 2s).
    #[arg(long, value_name = "DURATION", default_value = "2", value_parser = super::duration)]
    pub timeout: std::time::Duration,
    /// The same limit in milliseconds (the older spelling).
    #[arg(long, value_name = "MS", hide = true, conflicts_with = "timeout")]
    pub timeout_ms: Option<u64>,
    /// Print JSON: an array of {"url", "result"} or {"url", "error"}, one per URL, in order
    /// (the exit status is the same).
    #[arg(long)]
    pub json: bool,
}

fn parse_now(s: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s, &Rfc3339).map_err(|e| {
        format!("{s:?} is not an RFC 3339 time ({e}); write e.g. 2024-03-04T09:30:00+01:00")
    })
}

/// Arguments of `uplink proxy wpad`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Steps, in order: DHCP option 252 from NetworkManager (nmcli, over D-Bus) \
when it runs; then in systemd-networkd and dhclient lease files; then DNS: \
http://wpad.<domain>/wpad.dat for each search domain (the leases' and resolv.conf's) and its \
parents, never reaching a public suffix (wpad.com, wpad.co.uk). The first script that fetches \
and compiles wins; https URLs trust the system roots. The whole walk has a 15 s budget. This \
command always discovers afresh; a sensor caches the result in its state directory.\n\n\
Environment (for containers and tests): UPLINK_WPAD_RESOLV_CONF, UPLINK_WPAD_LEASES \
(':'-separated), UPLINK_WPAD_NETWORKMANAGER=0.\n\n\
Examples:\n  uplink proxy wpad\n  uplink proxy wpad --json\n\n\
Exit status: 0 a PAC was found; 1 none was found."
)]
pub struct WpadArgs {
    /// Print {"pac_url": URL or null, "steps": [{"step", "source", "outcome", "pac_url"?}]}.
    #[arg(long)]
    pub json: bool,
    /// Directories and files holding DHCP leases, instead of the usual places
    /// (/run/systemd/netif/leases, /var/lib/dhcp, /var/lib/dhclient, /var/lib/NetworkManager);
    /// files named *.lease(s) are read as dhclient leases, others as networkd leases.
    #[arg(long = "leases", value_name = "PATH")]
    pub leases: Vec<PathBuf>,
    /// The resolv.conf whose search domains start the DNS walk (default /etc/resolv.conf).
    #[arg(long, value_name = "FILE")]
    pub resolv_conf: Option<PathBuf>,
    /// Do not ask NetworkManager.
    #[arg(long)]
    pub no_networkmanager: bool,
}

/// Reads the PAC source from a path, a file:// URL or an http:// URL.
fn load_pac(spec: &str) -> anyhow::Result<String> {
    match uplink_pac::source::Source::parse(spec) {
        uplink_pac::source::Source::Url(url) => {
            let fetched =
                uplink_pac::fetch::fetch(url, &uplink_pac::fetch::FetchOptions::default())?;
            Ok(fetched.body)
        }
        uplink_pac::source::Source::File(path) => {
            let bytes = std::fs::read(path)
                .with_context(|| format!("cannot read the PAC file {path:?}"))?;
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        }
    }
}

fn read_urls(path: &PathBuf) -> anyhow::Result<Vec<String>> {
    let text = if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .lock()
            .read_to_string(&mut s)
            .context("reading URLs from standard input")?;
        s
    } else {
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the URL list {}", path.display()))?
    };
    Ok(uplink_pac::source::url_list(&text))
}

pub fn run_pac(args: PacArgs) -> anyhow::Result<ExitCode> {
    let source = load_pac(&args.pac)?;
    let limits = uplink_pac::Limits {
        eval_timeout: args.timeout_ms.map_or(args.timeout, |ms| {
            std::time::Duration::from_millis(ms.max(1))
        }),
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
    let mut json = Vec::new();
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
        if args.json {
            json.push(match &result {
                Ok(r) => serde_json::json!({"url": url, "result": r}),
                Err(e) => serde_json::json!({"url": url, "error": e}),
            });
            failed |= result.is_err();
            continue;
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
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&json)?)?;
    }
    out.flush()?;
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

pub fn run_wpad(args: WpadArgs) -> anyhow::Result<ExitCode> {
    let mut sources = super::sensor::wpad_sources();
    if !args.leases.is_empty() {
        sources.leases = args.leases.clone();
    }
    if let Some(r) = &args.resolv_conf {
        sources.resolv_conf = Some(r.clone());
    }
    if args.no_networkmanager {
        sources.networkmanager = false;
    }
    let d = uplink_route::wpad::discover(&sources);
    let steps = d.steps;
    let found = d.found.map(|f| f.url);
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
