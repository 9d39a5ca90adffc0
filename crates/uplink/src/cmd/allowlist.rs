//! `uplink allowlist`: allow-lists for firewalls and proxies, from the endpoint catalogs
//! (`urls`) and Microsoft's service-tags files (`ips`), and the drift check for cron (`diff`).
//!
//! All behaviour is in `uplink-allowlist`; this module reads files, picks the renderer, prints,
//! and maps outcomes to the exit codes the help texts document (bad input is 2, not the
//! binary's generic 1, so scripts can tell "the input is wrong" from "the tag changed").

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use uplink_allowlist::catalog::{self, Cloud, Purpose, UrlQuery};
use uplink_allowlist::cidr::Family;
use uplink_allowlist::servicetags::{Document, Query, Selection};
use uplink_allowlist::{drift, firewall, pac, squid, text};

const URLS_AFTER: &str = "\
Profiles:
  uplink  a workspace of this project's service: <workspace>sensorapi.<domain> and
          <workspace>.<domain> (--domain, default uplink.localhost; --port, default 443)
  mdi     Microsoft Defender for Identity: <workspace>sensorapi.atp.azure.com, the console, the
          CRL/PKI URLs; US Government clouds; legacy per-region sensor hosts with --legacy
  mde     Microsoft Defender for Endpoint: the standard per-region tables, or the streamlined
          *.endpoint.security.microsoft.com URLs with --streamlined; updates, CRL, portal URLs

The catalogs are data files in the repository (catalog/*.toml), compiled in; every entry cites
its source, which the JSON and CSV outputs show. Nothing is contacted: this only writes text.

Examples:
  uplink allowlist urls --profile mdi --workspace contoso-corp
  uplink allowlist urls --profile mdi --workspace contoso-corp --format squid > mdi-squid.conf
  uplink allowlist urls --profile mde --region eu --streamlined --format pac --via proxy.corp:8080
  uplink allowlist urls --profile mde --cloud gcc-high --streamlined --purpose sensor,revocation
  uplink allowlist urls --profile uplink --workspace contoso --domain sensors.example.com \\
      --port 8443 --json

Exit codes: 0 written; 2 bad usage or an option the profile does not have (the message says which).";

const IPS_AFTER: &str = "\
Download the file from Microsoft (it changes weekly; uplink never downloads it):
  Public cloud           https://www.microsoft.com/download/details.aspx?id=56519
  US Government cloud    https://www.microsoft.com/download/details.aspx?id=57063
Defender for Identity's tag is AzureAdvancedThreatProtection (a global tag only: the files have
no AzureAdvancedThreatProtection.<Region>); Defender for Endpoint's are MicrosoftDefenderForEndpoint
and OneDsCollector. Regional tags (AzureCloud.westeurope, …) are picked by name or with --region.

Every prefix of the tag is checked: malformed text, host bits set (10.0.0.1/24) or a prefix listed
twice fail with the line and column in the file. An empty result is an error, never an empty list.

Examples:
  uplink allowlist ips --service-tags ServiceTags_Public.json --tag AzureAdvancedThreatProtection
  uplink allowlist ips --service-tags ServiceTags_Public.json --tag AzureAdvancedThreatProtection \\
      --aggregate --format nftables > /etc/nftables.d/mdi.nft && nft -f /etc/nftables.d/mdi.nft
  uplink allowlist ips --service-tags ServiceTags_Public.json --tag AzureCloud --region westeurope \\
      --family ipv4 --format iptables | iptables-restore --noflush

Exit codes: 0 written; 1 the file or tag failed (unreadable, truncated or wrong file, unknown or
empty tag, bad prefixes: the message says which); 2 bad usage.";

const DIFF_AFTER: &str = "\
Examples:
  uplink allowlist diff current.json new.json --tag AzureCloud --region westeurope --json
For cron: keep the file your firewall was built from, download the new one, and alert on exit 1:
  uplink allowlist diff current.json new.json --tag AzureAdvancedThreatProtection \\
      || mail -s 'AzureAdvancedThreatProtection changed' netops < /dev/null

Prefixes are compared after normalising (canonical IPv6 text), as sets; both files are checked
like `uplink allowlist ips` checks one.

Exit codes: 0 unchanged; 1 changed (prefixes added or removed); 2 error (unreadable or invalid
file, unknown tag, bad prefixes) or bad usage.";

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Host names and URL patterns to allow for a profile: plain lines, Squid ACLs, a PAC file,
    /// JSON or CSV.
    #[command(after_long_help = URLS_AFTER)]
    Urls(UrlsArgs),
    /// The IP prefixes of an Azure service tag, from Microsoft's service-tags JSON: plain lines,
    /// an nftables set, iptables-restore rules, JSON or CSV.
    #[command(after_long_help = IPS_AFTER)]
    Ips(IpsArgs),
    /// What changed in a service tag between two service-tags files; exit 1 when anything did.
    #[command(after_long_help = DIFF_AFTER)]
    Diff(DiffArgs),
    /// Is the firewall in line with today's list: probe every host of a profile's allow-list
    /// directly and through the configured proxy (`uplink check --all-hosts`; same options).
    Verify(Box<super::check::Args>),
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Profile {
    Uplink,
    Mdi,
    Mde,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum PurposeArg {
    Sensor,
    Console,
    Revocation,
    Updates,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum UrlFormat {
    /// One host or URL pattern per line.
    Plain,
    /// Squid `acl` and `http_access allow` lines to include before "http_access deny all".
    Squid,
    /// A PAC file routing exactly these hosts (see --via and --otherwise).
    Pac,
    /// An array of {"host", "port", "pattern", "purpose", "source", "region", "issuers"}.
    Json,
    /// host,port,pattern,purpose,source,region,issuers.
    Csv,
}

#[derive(Debug, clap::Args)]
pub struct UrlsArgs {
    /// Whose endpoints: uplink (this project's service), mdi or mde.
    #[arg(long, value_enum, value_name = "PROFILE")]
    pub profile: Profile,
    /// The workspace name, e.g. contoso-corp for contoso-corpsensorapi.atp.azure.com. Required
    /// by the profiles with per-workspace hosts (uplink, mdi).
    #[arg(long, value_name = "NAME")]
    pub workspace: Option<String>,
    /// Profile uplink: the DNS domain of the workspace's hosts (default uplink.localhost).
    #[arg(long, value_name = "DOMAIN")]
    pub domain: Option<String>,
    /// Profile uplink: the port sensors connect to (default 443).
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,
    /// Profiles mdi and mde: the cloud (default commercial). gcc, gcc-high and dod are the US
    /// Government offerings.
    #[arg(long, value_name = "CLOUD", value_parser = super::check::one_of::<Cloud>(&Cloud::NAMES))]
    pub cloud: Option<Cloud>,
    /// Keep one region's hosts (plus the region-independent ones); default: every region.
    /// mdi: us, eu, uk, asia (its per-region hosts are legacy: add --legacy); mde: us, eu, uk, au.
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
    /// Profile mde: the streamlined connectivity URLs instead of the standard per-region tables.
    #[arg(long)]
    pub streamlined: bool,
    /// Also list superseded hosts: mdi's 2018/2021 per-region sensor hosts, mde's MMA agent hosts.
    #[arg(long)]
    pub legacy: bool,
    /// Keep only these purposes (comma-separated): sensor, console, revocation, updates.
    #[arg(long, value_enum, value_delimiter = ',', value_name = "PURPOSE")]
    pub purpose: Vec<PurposeArg>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = UrlFormat::Plain, value_name = "FORMAT")]
    pub format: UrlFormat,
    /// The same as --format json.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// --format pac: route the listed hosts through this proxy instead of DIRECT: HOST:PORT, or
    /// a PAC result such as "PROXY proxy:8080" or "PROXY a:8080; DIRECT".
    #[arg(long, value_name = "HOST:PORT|RESULT")]
    pub via: Option<String>,
    /// --format pac: the PAC result for every other host, e.g. "PROXY corp:8080; DIRECT"
    /// (default DIRECT).
    #[arg(long, value_name = "RESULT")]
    pub otherwise: Option<String>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum FamilyArg {
    Ipv4,
    Ipv6,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum IpsFormat {
    /// One prefix per line.
    Plain,
    /// `nft -f` input: table inet uplink, a named interval set per family (<TAG>_v4, <TAG>_v6).
    Nftables,
    /// `iptables-restore --noflush` input: chain UPLINK-ALLOW (one family: use --family).
    Iptables,
    /// {"tag", "cloud", "change_number", "tag_change_number", "region", "family", "aggregated", "prefixes"}.
    Json,
    /// prefix,family,first,last.
    Csv,
}

#[derive(Debug, clap::Args)]
pub struct IpsArgs {
    /// Microsoft's service-tags JSON (ServiceTags_Public_YYYYMMDD.json or another cloud's); - for
    /// standard input.
    #[arg(long, value_name = "FILE")]
    pub service_tags: PathBuf,
    /// The service tag, e.g. AzureAdvancedThreatProtection (case-insensitive when unambiguous).
    /// An unknown name lists the closest ones.
    #[arg(long, value_name = "NAME")]
    pub tag: String,
    /// Take the regional tag NAME.<Region> (e.g. westeurope), for services that publish them.
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
    /// Keep only one address family.
    #[arg(long, value_enum, value_name = "FAMILY")]
    pub family: Option<FamilyArg>,
    /// Merge overlapping and adjacent prefixes into the minimal set covering the same addresses.
    #[arg(long)]
    pub aggregate: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = IpsFormat::Plain, value_name = "FORMAT")]
    pub format: IpsFormat,
    /// The same as --format json.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum DiffFormat {
    /// A summary line, then "+ prefix" and "- prefix" lines.
    Text,
    /// {"tag", "old_change_number", "new_change_number", "added", "removed"}.
    Json,
}

#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    /// The service-tags file the current allow-list was built from.
    #[arg(value_name = "OLD.json")]
    pub old: PathBuf,
    /// The newer service-tags file.
    #[arg(value_name = "NEW.json")]
    pub new: PathBuf,
    /// The service tag to compare, e.g. AzureAdvancedThreatProtection.
    #[arg(long, value_name = "NAME")]
    pub tag: String,
    /// Compare the regional tag NAME.<Region>.
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = DiffFormat::Text, value_name = "FORMAT")]
    pub format: DiffFormat,
    /// The same as --format json.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
}

/// Bad usage: the message on stderr, exit 2.
fn bad(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}

/// A failure the message explains (a missing or damaged file, a tag it lacks): exit 1, except
/// for `diff`, whose exit 1 means "changed" and whose failures are 2, as diff(1)'s are.
fn failed(message: impl std::fmt::Display, code: u8) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(code)
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    let outcome = match command {
        Command::Urls(mut a) => {
            if a.json {
                a.format = UrlFormat::Json;
            }
            urls(a)
        }
        Command::Ips(mut a) => {
            if a.json {
                a.format = IpsFormat::Json;
            }
            ips(a)
        }
        Command::Diff(mut a) => {
            if a.json {
                a.format = DiffFormat::Json;
            }
            diff(a)
        }
        Command::Verify(a) => return super::check::run_verify(*a),
    };
    Ok(outcome.unwrap_or_else(|code| code))
}

fn urls(a: UrlsArgs) -> Result<ExitCode, ExitCode> {
    let profile = match a.profile {
        Profile::Uplink => "uplink",
        Profile::Mdi => "mdi",
        Profile::Mde => "mde",
    };
    if !matches!(a.format, UrlFormat::Pac) {
        if a.via.is_some() {
            return Err(bad("--via applies to --format pac only"));
        }
        if a.otherwise.is_some() {
            return Err(bad("--otherwise applies to --format pac only"));
        }
    }
    let catalog = catalog::load(profile).map_err(bad)?;
    let query = UrlQuery {
        workspace: a.workspace,
        domain: a.domain,
        port: a.port,
        cloud: a.cloud.map(|c| c.name().to_owned()),
        region: a.region,
        streamlined: a.streamlined,
        legacy: a.legacy,
        purposes: a
            .purpose
            .iter()
            .map(|p| match p {
                PurposeArg::Sensor => Purpose::Sensor,
                PurposeArg::Console => Purpose::Console,
                PurposeArg::Revocation => Purpose::Revocation,
                PurposeArg::Updates => Purpose::Updates,
            })
            .collect(),
    };
    let resolved = catalog.resolve(&query).map_err(bad)?;
    for note in &resolved.notes {
        eprintln!("note: {note}");
    }
    let out = match a.format {
        UrlFormat::Plain => text::urls_plain(&resolved.endpoints),
        UrlFormat::Json => text::urls_json(&resolved.endpoints),
        UrlFormat::Csv => text::urls_csv(&resolved.endpoints),
        UrlFormat::Squid => squid::render(&resolved, profile),
        UrlFormat::Pac => {
            let matched = match &a.via {
                Some(v) => pac::via(v).map_err(bad)?,
                None => "DIRECT".to_owned(),
            };
            let otherwise = pac::result(a.otherwise.as_deref().unwrap_or("DIRECT")).map_err(bad)?;
            pac::render(&resolved, &pac::Routes { matched, otherwise })
        }
    };
    emit(&out, ExitCode::SUCCESS)
}

fn ips(a: IpsArgs) -> Result<ExitCode, ExitCode> {
    let bytes = read_input(&a.service_tags, 1)?;
    let family = a.family.map(|f| match f {
        FamilyArg::Ipv4 => Family::V4,
        FamilyArg::Ipv6 => Family::V6,
    });
    let selection = select(
        &a.service_tags,
        &bytes,
        &a.tag,
        a.region.as_deref(),
        family,
        1,
    )?;
    let selection = if a.aggregate {
        selection.aggregate()
    } else {
        selection
    };
    let out = match a.format {
        IpsFormat::Plain => text::prefixes_plain(&selection),
        IpsFormat::Json => text::prefixes_json(&selection),
        IpsFormat::Csv => text::prefixes_csv(&selection),
        IpsFormat::Nftables => firewall::nftables(&selection),
        IpsFormat::Iptables => firewall::iptables(&selection).map_err(bad)?,
    };
    emit(&out, ExitCode::SUCCESS)
}

fn diff(a: DiffArgs) -> Result<ExitCode, ExitCode> {
    let old_bytes = read_input(&a.old, 2)?;
    let new_bytes = read_input(&a.new, 2)?;
    let old = select(&a.old, &old_bytes, &a.tag, a.region.as_deref(), None, 2)?;
    let new = select(&a.new, &new_bytes, &a.tag, a.region.as_deref(), None, 2)?;
    let d = drift::diff(&old, &new);
    let out = match a.format {
        DiffFormat::Text => d.text(),
        DiffFormat::Json => d.json(),
    };
    emit(&out, ExitCode::from(u8::from(d.changed())))
}

fn select(
    path: &Path,
    bytes: &[u8],
    tag: &str,
    region: Option<&str>,
    family: Option<Family>,
    failure: u8,
) -> Result<Selection, ExitCode> {
    let doc =
        Document::parse(bytes).map_err(|e| failed(format!("{}: {e}", path.display()), failure))?;
    doc.select(&Query {
        tag,
        region,
        family,
    })
    .map_err(|e| failed(format!("{}: {e}", path.display()), failure))
}

fn read_input(path: &Path, failure: u8) -> Result<Vec<u8>, ExitCode> {
    let read = if path == Path::new("-") {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut buf).map(|_| buf)
    } else {
        std::fs::read(path)
    };
    read.map_err(|e| {
        failed(
            format!(
                "cannot read {}: {e}; give the path of a service-tags JSON file (ServiceTags_Public_*.json)",
                path.display()
            ),
            failure,
        )
    })
}

/// Writes the whole output; a reader that went away (`| head`) is not an error.
fn emit(out: &str, code: ExitCode) -> Result<ExitCode, ExitCode> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(out.as_bytes())
        .and_then(|_| stdout.flush())
    {
        Ok(()) => Ok(code),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(code),
        Err(e) => Err(failed(format!("cannot write the output: {e}"), 1)),
    }
}
