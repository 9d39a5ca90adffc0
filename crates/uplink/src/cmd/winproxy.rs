//! `uplink winproxy`: Windows proxy settings as reviewable .reg files, from any OS.
//!
//! The codecs, the .reg reader/writer and the procedures live in `uplink-winproxy`; this file
//! parses arguments, reads and writes files, and formats output.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use uplink_winproxy::keys::{self, ServiceAccount};
use uplink_winproxy::procedure;
use uplink_winproxy::proxy_list;
use uplink_winproxy::report;
use uplink_winproxy::{
    find_proxy_values, ConnectionSettings, Decoded, ProxySettings, RegFile, RegFormat, Summary,
    WinHttpSettings,
};

const DECODE_EXAMPLES: &str = "\
Examples:
  uplink winproxy decode --hex 1800000000000000010000000000000000000000
  uplink winproxy decode --reg user.reg --format json
  uplink winproxy decode --reg user.reg --value DefaultConnectionSettings

JSON (--format json): {\"kind\": \"wininet\"|\"winhttp\"|\"internet-settings\"|\"telemetry-policy\",
\"version\", \"counter\", \"flags\": {\"direct\", \"proxy\", \"auto_config_url\", \"auto_detect\"},
\"flags_raw\", \"proxy_server\", \"bypass\", \"auto_config_url\", \"trailing_hex\", \"effective\": {...}}.
For WinHTTP, version is the magic and counter the second u32; fields a kind lacks are null.
With --reg: an array of such objects, each with \"key\" and \"value_name\" (null for the
Internet Settings strings, which are several values: see \"value_names\").

Exit codes: 0 decoded; 1 a value could not be decoded or the file not read (the message names
the offset and field, or the line); 2 bad usage.";

const ENCODE_EXAMPLES: &str = "\
Examples:
  uplink winproxy encode --proxy proxy.contoso.com:8080 --bypass '*.contoso.com;<local>'
  uplink winproxy encode --pac-url http://wpad.contoso.com/wpad.dat --auto-detect \\
      --format reg --out user.reg
  uplink winproxy encode --kind winhttp --proxy proxy.contoso.com:8080 --magic 0x18
  uplink winproxy encode --kind internet-settings --proxy proxy.contoso.com:8080 \\
      --format reg --out is.reg

Exit codes: 0 written; 1 the output could not be written; 2 bad usage (including a malformed
proxy, bypass list or URL).";

const COPY_EXAMPLES: &str = "\
Examples (the seeds' procedure as one step). On a machine where the proxy works for the user:
  reg export \"HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Internet Settings\\Connections\" user.reg
On the sensor machine, back up what the service accounts have now:
  reg export \"HKU\\S-1-5-18\\Software\\Microsoft\\Windows\\CurrentVersion\\Internet Settings\\Connections\" backup-18.reg
  reg export \"HKU\\S-1-5-19\\Software\\Microsoft\\Windows\\CurrentVersion\\Internet Settings\\Connections\" backup-19.reg
Anywhere:
  uplink winproxy copy-to-services --from user.reg --out services.reg \\
      --backup backup-18.reg --backup backup-19.reg --restore-out restore.reg
Then, as administrator on the sensor machine: reg import services.reg, and restart the sensor
service. To undo: reg import restore.reg.

If user.reg holds only the Internet Settings strings (ProxyEnable, ProxyServer, ...), they are
converted to the value Windows would write.

Exit codes: 0 written; 1 an input could not be read or lacks what is needed (nothing is
written); 2 bad usage.";

const WINHTTP_EXAMPLES: &str = "\
Examples:
  uplink winproxy winhttp set proxy.contoso.com:8080 --bypass 'localhost;*.contoso.com' \\
      --out winhttp.reg
  uplink winproxy winhttp reset --out winhttp-direct.reg
Then, as administrator: reg import winhttp.reg (the same as netsh winhttp set proxy ...).

Exit codes: 0 written; 1 the file could not be written; 2 bad usage.";

const TELEMETRY_EXAMPLES: &str = "\
Example:
  uplink winproxy telemetry-policy --proxy 10.0.0.6:8080 --out telemetry.reg
Then, as administrator: reg import telemetry.reg (or put the values in a GPO).

Exit codes: 0 written; 1 the file could not be written; 2 bad usage.";

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Decode proxy values: a WinINet or WinHTTP blob in hex, or every proxy value in a .reg file.
    ///
    /// A blob's layout is recognised by its first four bytes (46 or 3c: WinINet
    /// DefaultConnectionSettings and friends; 18 or 28: WinHTTP WinHttpSettings). In a .reg
    /// file (version 5 UTF-16LE or REGEDIT4), proxy values are found where Windows keeps them:
    /// binary values under ...\Internet Settings\Connections, the ProxyEnable, ProxyServer,
    /// ProxyOverride, AutoConfigURL and AutoDetect strings under ...\Internet Settings, and the
    /// TelemetryProxyServer policy. Text output shows what each value holds and what it means.
    #[command(after_help = DECODE_EXAMPLES)]
    Decode(DecodeArgs),
    /// Build a new proxy value, as Windows writes one: hex, or a .reg file to import.
    ///
    /// WinINet (default): DefaultConnectionSettings, version 0x46, 32 trailing zero bytes, for
    /// HKEY_CURRENT_USER. WinHTTP: WinHttpSettings for HKEY_LOCAL_MACHINE (magic 0x28; --magic
    /// 0x18 for older systems); no PAC URL or auto-detect. internet-settings: the ProxyEnable,
    /// ProxyServer, ProxyOverride, AutoConfigURL and AutoDetect values (.reg only). Without
    /// --proxy, --pac-url or --auto-detect the value means "direct".
    #[command(after_help = ENCODE_EXAMPLES)]
    Encode(EncodeArgs),
    /// Copy the user's proxy settings to LocalSystem and LocalService, with a restore file.
    ///
    /// Reads DefaultConnectionSettings from the user's export (--from) and writes it, byte for
    /// byte, under HKEY_USERS\S-1-5-18 (LocalSystem) and HKEY_USERS\S-1-5-19 (LocalService)
    /// ...\Internet Settings\Connections: services running as those accounts, like the sensor,
    /// read their own profile's settings. From --backup (the exports of those keys as they are
    /// now) it writes --restore-out, which puts them back.
    #[command(after_help = COPY_EXAMPLES)]
    CopyToServices(CopyArgs),
    /// WinHTTP's machine-wide proxy: what `netsh winhttp set proxy` and `reset proxy` store.
    #[command(subcommand)]
    Winhttp(WinhttpCommand),
    /// The telemetry proxy group policy: TelemetryProxyServer and DisableEnterpriseAuthProxy=1.
    ///
    /// Writes HKEY_LOCAL_MACHINE\SOFTWARE\Policies\Microsoft\Windows\DataCollection with
    /// TelemetryProxyServer (REG_SZ HOST:PORT) and DisableEnterpriseAuthProxy (REG_DWORD 1): the
    /// static proxy Windows' telemetry service (and so Defender sensors) use.
    #[command(after_help = TELEMETRY_EXAMPLES)]
    TelemetryPolicy(TelemetryArgs),
}

#[derive(Debug, clap::Subcommand)]
pub enum WinhttpCommand {
    /// Write the WinHttpSettings value `netsh winhttp set proxy PROXY:PORT "BYPASS"` stores.
    #[command(after_help = WINHTTP_EXAMPLES)]
    Set(WinhttpSetArgs),
    /// Write the WinHttpSettings value `netsh winhttp reset proxy` stores (direct access).
    #[command(after_help = WINHTTP_EXAMPLES)]
    Reset(WinhttpResetArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DecodeFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BlobKind {
    /// By the first four bytes.
    Auto,
    Wininet,
    Winhttp,
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["hex", "reg"])))]
pub struct DecodeArgs {
    /// The value's bytes in hex. Spaces, commas, backslashes and a leading `hex:` are ignored,
    /// so a value copied from a .reg file works as is.
    #[arg(long, value_name = "HEX")]
    pub hex: Option<String>,
    /// A .reg file (regedit or `reg export` output, version 5 or REGEDIT4).
    #[arg(long, value_name = "FILE")]
    pub reg: Option<PathBuf>,
    /// Only the value with this name (e.g. DefaultConnectionSettings, WinHttpSettings,
    /// ProxyServer).
    #[arg(long, value_name = "NAME", conflicts_with = "hex")]
    pub value: Option<String>,
    /// The layout of --hex.
    #[arg(long, value_enum, default_value_t = BlobKind::Auto, conflicts_with = "reg")]
    pub kind: BlobKind,
    /// Output format.
    #[arg(long, value_enum, default_value_t = DecodeFormat::Text)]
    pub format: DecodeFormat,
    /// The same as --format json.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EncodeKind {
    /// WinINet DefaultConnectionSettings (per user).
    Wininet,
    /// WinHTTP WinHttpSettings (per machine).
    Winhttp,
    /// The Internet Settings string values (per user; .reg only).
    InternetSettings,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EncodeFormat {
    Hex,
    Reg,
}

/// Output options shared by the commands that write .reg files.
#[derive(Debug, clap::Args)]
pub struct RegOut {
    /// Write REGEDIT4 (ANSI, Windows-1252) instead of version 5 (UTF-16LE with BOM, CRLF).
    #[arg(long)]
    pub ansi: bool,
}

impl RegOut {
    fn format(&self) -> RegFormat {
        if self.ansi {
            RegFormat::Regedit4
        } else {
            RegFormat::V5
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct EncodeArgs {
    /// The manual proxy: HOST:PORT, or per protocol: http=HOST:PORT;https=HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    pub proxy: Option<String>,
    /// Hosts that skip the proxy, separated by ';' (e.g. "*.contoso.com;10.*;<local>";
    /// <local> means host names without a dot).
    #[arg(long, value_name = "LIST", requires = "proxy")]
    pub bypass: Option<String>,
    /// The setup script (PAC) URL (WinINet only).
    #[arg(long, value_name = "URL")]
    pub pac_url: Option<String>,
    /// Discover a PAC script with WPAD (WinINet only).
    #[arg(long)]
    pub auto_detect: bool,
    /// Which value to build.
    #[arg(long, value_enum, default_value_t = EncodeKind::Wininet)]
    pub kind: EncodeKind,
    /// WinHTTP magic: 0x28 (current Windows) or 0x18 (older systems).
    #[arg(long, value_name = "MAGIC", value_parser = uplink_winproxy::winhttp::parse_magic)]
    pub magic: Option<u32>,
    /// WinINet change counter of the new value.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub counter: u32,
    /// hex: the value's bytes; reg: a .reg file that sets it.
    #[arg(long, value_enum, default_value_t = EncodeFormat::Hex)]
    pub format: EncodeFormat,
    /// Write to this file instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub reg: RegOut,
}

#[derive(Debug, clap::Args)]
pub struct CopyArgs {
    /// The user's export of HKCU\Software\Microsoft\Windows\CurrentVersion\Internet
    /// Settings\Connections (or of Internet Settings, for the string form).
    #[arg(long, value_name = "USER.reg")]
    pub from: PathBuf,
    /// The .reg file to write: the value for LocalSystem and LocalService.
    #[arg(long, value_name = "FILE.reg")]
    pub out: PathBuf,
    /// The current service-account settings, exported from the sensor machine (the Connections
    /// keys of HKU\S-1-5-18 and HKU\S-1-5-19, or anything above them). Repeat for each file.
    #[arg(long, value_name = "CURRENT.reg", requires = "restore_out")]
    pub backup: Vec<PathBuf>,
    /// Where to write the restore file built from --backup.
    #[arg(long, value_name = "RESTORE.reg", requires = "backup")]
    pub restore_out: Option<PathBuf>,
    /// An account the backups do not cover had no value: the restore file deletes it.
    #[arg(long, requires = "backup")]
    pub backup_missing_ok: bool,
    #[command(flatten)]
    pub reg: RegOut,
}

#[derive(Debug, clap::Args)]
pub struct WinhttpSetArgs {
    /// The proxy: HOST:PORT, or per protocol: http=HOST:PORT;https=HOST:PORT.
    #[arg(value_name = "PROXY:PORT")]
    pub proxy: String,
    /// Hosts that skip the proxy, separated by ';' (e.g. "localhost;*.contoso.com;<local>").
    #[arg(long, value_name = "LIST")]
    pub bypass: Option<String>,
    #[command(flatten)]
    pub common: WinhttpCommon,
}

#[derive(Debug, clap::Args)]
pub struct WinhttpResetArgs {
    #[command(flatten)]
    pub common: WinhttpCommon,
}

#[derive(Debug, clap::Args)]
pub struct WinhttpCommon {
    /// The .reg file to write.
    #[arg(long, value_name = "FILE.reg")]
    pub out: PathBuf,
    /// WinHTTP magic: 0x28 (current Windows) or 0x18 (older systems).
    #[arg(long, value_name = "MAGIC", value_parser = uplink_winproxy::winhttp::parse_magic, default_value = "0x28")]
    pub magic: u32,
    /// Also write the WOW6432Node copy, read by 32-bit programs on 64-bit Windows.
    #[arg(long)]
    pub wow64: bool,
    #[command(flatten)]
    pub reg: RegOut,
}

#[derive(Debug, clap::Args)]
pub struct TelemetryArgs {
    /// The proxy: HOST:PORT (server name or IP address, no scheme).
    #[arg(long, value_name = "HOST:PORT")]
    pub proxy: String,
    /// The .reg file to write.
    #[arg(long, value_name = "FILE.reg")]
    pub out: PathBuf,
    #[command(flatten)]
    pub reg: RegOut,
}

/// Bad usage found after parsing: printed like clap's errors, exit 2.
fn usage(message: impl std::fmt::Display) -> anyhow::Result<ExitCode> {
    eprintln!("error: {message}\n\nFor more information, try '--help'.");
    Ok(ExitCode::from(2))
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Decode(args) => decode(args),
        Command::Encode(args) => encode(args),
        Command::CopyToServices(args) => copy_to_services(args),
        Command::Winhttp(WinhttpCommand::Set(args)) => {
            let file = match procedure::winhttp_set(
                &args.proxy,
                args.bypass.as_deref(),
                args.common.magic,
                args.common.wow64,
                args.common.reg.format(),
            ) {
                Ok(f) => f,
                Err(e) => return usage(e),
            };
            write_reg(&args.common.out, &file)?;
            println!(
                "wrote {}: WinHttpSettings = proxy {}{} (magic {:#x}); import it as administrator \
                 with: reg import {}",
                args.common.out.display(),
                args.proxy.trim(),
                args.bypass
                    .map(|b| format!(", bypass {}", proxy_list::parse_bypass(&b).join(";")))
                    .unwrap_or_default(),
                args.common.magic,
                args.common.out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Winhttp(WinhttpCommand::Reset(args)) => {
            let file = procedure::winhttp_reset(
                args.common.magic,
                args.common.wow64,
                args.common.reg.format(),
            )?;
            write_reg(&args.common.out, &file)?;
            println!(
                "wrote {}: WinHttpSettings = direct access (magic {:#x}); import it as \
                 administrator with: reg import {}",
                args.common.out.display(),
                args.common.magic,
                args.common.out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::TelemetryPolicy(args) => {
            let file = match procedure::telemetry_policy(&args.proxy, args.reg.format()) {
                Ok(f) => f,
                Err(e) => return usage(e),
            };
            write_reg(&args.out, &file)?;
            println!(
                "wrote {}: [{}] TelemetryProxyServer = {}, DisableEnterpriseAuthProxy = 1; import \
                 it as administrator with: reg import {}",
                args.out.display(),
                keys::data_collection_policy(),
                args.proxy.trim(),
                args.out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn read_reg(path: &Path, what: &str) -> anyhow::Result<RegFile> {
    let bytes = std::fs::read(path).with_context(|| {
        format!(
            "cannot read {what} {}: check the path and permissions",
            path.display()
        )
    })?;
    RegFile::parse(&bytes).with_context(|| format!("cannot read {what} {}", path.display()))
}

fn write_reg(path: &Path, file: &RegFile) -> anyhow::Result<()> {
    let bytes = file
        .to_bytes()
        .with_context(|| format!("cannot write {}", path.display()))?;
    std::fs::write(path, bytes).with_context(|| {
        format!(
            "cannot write {}: check that its directory exists and is writable",
            path.display()
        )
    })
}

// ---------------------------------------------------------------------------------------------
// decode

/// One entry of `decode --reg --format json`.
#[derive(serde::Serialize)]
struct RegEntry<'a> {
    key: String,
    value_name: Option<&'a str>,
    value_names: &'a [String],
    #[serde(flatten)]
    summary: Summary,
}

#[derive(serde::Serialize)]
#[serde(untagged)]
enum JsonEntry<'a> {
    Value(RegEntry<'a>),
    /// A value that could not be decoded: where it is and why.
    Error(RegEntryError<'a>),
}

#[derive(serde::Serialize)]
struct RegEntryError<'a> {
    key: String,
    value_name: Option<&'a str>,
    error: String,
}

fn decode(mut args: DecodeArgs) -> anyhow::Result<ExitCode> {
    if args.json {
        args.format = DecodeFormat::Json;
    }
    if let Some(h) = &args.hex {
        let bytes = match uplink_winproxy::blob::parse_pasted_hex(h) {
            Ok(b) => b,
            Err(e) => return usage(format!("--hex: {e}")),
        };
        let decoded = match args.kind {
            BlobKind::Auto => Decoded::from_blob(&bytes),
            BlobKind::Wininet => ConnectionSettings::decode(&bytes).map(Decoded::WinInet),
            BlobKind::Winhttp => WinHttpSettings::decode(&bytes).map(Decoded::WinHttp),
        }
        .with_context(|| format!("cannot decode the {}-byte value", bytes.len()))?;
        match args.format {
            DecodeFormat::Json => println!("{}", serde_json::to_string_pretty(&decoded.summary())?),
            DecodeFormat::Text => print!("{}", decoded.summary().describe("")),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let Some(path) = &args.reg else {
        return usage("give --hex HEX or --reg FILE");
    };
    let file = read_reg(path, "the .reg file")?;
    let all = find_proxy_values(&file);
    if all.is_empty() {
        anyhow::bail!(
            "{} has no proxy values (binary values under ...\\Internet Settings\\Connections, \
             ProxyServer and friends under ...\\Internet Settings, or TelemetryProxyServer); \
             export the key that holds them, e.g. reg export \"HKCU\\{}\" user.reg",
            path.display(),
            keys::CONNECTIONS
        );
    }
    let selected = match report::select(&all, args.value.as_deref()) {
        Ok(selected) => selected,
        Err(present) => anyhow::bail!(
            "{} has no proxy value named {:?}; its proxy values are: {}",
            path.display(),
            args.value.unwrap_or_default(),
            present.join(", ")
        ),
    };
    let failed = selected.iter().filter(|r| r.is_err()).count();
    match args.format {
        DecodeFormat::Json => {
            let entries: Vec<JsonEntry> = selected
                .iter()
                .map(|r| match r {
                    Ok(f) => JsonEntry::Value(RegEntry {
                        key: f.key.to_string(),
                        value_name: f.value_name.as_deref(),
                        value_names: &f.value_names,
                        summary: f.decoded.summary(),
                    }),
                    Err(e) => JsonEntry::Error(RegEntryError {
                        key: e.key.to_string(),
                        value_name: e.value_name.as_deref(),
                        error: e.error.to_string(),
                    }),
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&entries)?);
        }
        DecodeFormat::Text => {
            let out: String = selected
                .iter()
                .filter_map(|r| r.as_ref().ok())
                .map(report::describe)
                .collect();
            print!("{out}");
        }
    }
    for e in selected.iter().filter_map(|r| r.as_ref().err()) {
        eprintln!("error: {}: {e}", path.display());
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

// ---------------------------------------------------------------------------------------------
// encode

fn encode(args: EncodeArgs) -> anyhow::Result<ExitCode> {
    if let Some(p) = &args.proxy {
        if let Err(e) = proxy_list::parse_proxy_arg(p) {
            return usage(format!("--proxy: {e}"));
        }
    }
    let bypass = match args.bypass.as_deref().map(proxy_list::parse_bypass_arg) {
        None => Vec::new(),
        Some(Ok(b)) => b,
        Some(Err(e)) => return usage(format!("--bypass: {e}")),
    };
    if let Some(Err(e)) = args.pac_url.as_deref().map(proxy_list::check_pac_url_arg) {
        return usage(format!("--pac-url: {e}"));
    }
    if args.magic.is_some() && args.kind != EncodeKind::Winhttp {
        return usage("--magic is for --kind winhttp");
    }
    let settings = ProxySettings {
        proxy_server: args.proxy.as_deref().map(|p| p.trim().to_owned()),
        bypass,
        pac_url: args.pac_url.clone(),
        auto_detect: args.auto_detect,
    };
    let form = match args.kind {
        EncodeKind::Wininet => procedure::Form::WinInet {
            counter: args.counter,
        },
        EncodeKind::Winhttp => {
            if settings.pac_url.is_some() || settings.auto_detect {
                return usage(
                    "WinHTTP settings hold no PAC URL or auto-detection: leave out --pac-url and \
                     --auto-detect, or use --kind wininet",
                );
            }
            procedure::Form::WinHttp {
                magic: args.magic.unwrap_or(uplink_winproxy::winhttp::MAGIC),
            }
        }
        EncodeKind::InternetSettings => {
            if args.format == EncodeFormat::Hex {
                return usage(
                    "the Internet Settings form is several string values, not bytes: use \
                     --format reg",
                );
            }
            procedure::Form::InternetSettings {
                counter: args.counter,
            }
        }
    };
    let procedure::Encoded { bytes, file: reg } =
        procedure::encode(&settings, form, args.reg.format())?;
    let output = match (args.format, bytes) {
        (EncodeFormat::Hex, Some(b)) => format!("{}\n", hex::encode(b)).into_bytes(),
        _ => reg.to_bytes()?,
    };
    match &args.out {
        Some(path) => {
            std::fs::write(path, &output).with_context(|| {
                format!(
                    "cannot write {}: check that its directory exists and is writable",
                    path.display()
                )
            })?;
            eprintln!("wrote {}", path.display());
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&output)?;
            stdout.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------------
// copy-to-services

fn copy_to_services(args: CopyArgs) -> anyhow::Result<ExitCode> {
    let format = args.reg.format();
    // Read and check every input before writing anything.
    let user_file = read_reg(&args.from, "the user's export")?;
    let user = procedure::user_connection_settings(&user_file)
        .with_context(|| format!("cannot use {}", args.from.display()))?;
    let out = procedure::copy_to_services(&user, format);
    let restore = if args.backup.is_empty() {
        None
    } else {
        let backups = args
            .backup
            .iter()
            .map(|p| read_reg(p, "the backup"))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Some(
            procedure::restore_file(&backups, args.backup_missing_ok, format)
                .context("cannot build the restore file")?,
        )
    };
    let out_bytes = out
        .to_bytes()
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    let restore_bytes = match &restore {
        Some((file, _)) => Some(file.to_bytes().context("cannot write the restore file")?),
        None => None,
    };

    std::fs::write(&args.out, out_bytes).with_context(|| {
        format!(
            "cannot write {}: check that its directory exists and is writable",
            args.out.display()
        )
    })?;
    let source = if user.converted_from_strings {
        "the Internet Settings strings (converted to DefaultConnectionSettings)"
    } else {
        "DefaultConnectionSettings"
    };
    println!(
        "read {source} from [{}] in {}: {}",
        user.source,
        args.from.display(),
        user.decoded.settings().meaning()
    );
    let accounts: Vec<String> = ServiceAccount::ALL
        .iter()
        .map(|a| format!("{} ({})", a.name(), a.connections()))
        .collect();
    println!(
        "wrote {}: DefaultConnectionSettings for {}",
        args.out.display(),
        accounts.join(" and ")
    );
    if let (Some(path), Some(bytes), Some((_, plan))) = (&args.restore_out, restore_bytes, &restore)
    {
        std::fs::write(path, bytes).with_context(|| {
            format!(
                "cannot write {}: check that its directory exists and is writable",
                path.display()
            )
        })?;
        let steps: Vec<String> = plan
            .iter()
            .map(|(account, r)| format!("{}: {}", account.name(), report::restore_step(r)))
            .collect();
        println!("wrote {}: {}", path.display(), steps.join("; "));
    } else {
        eprintln!(
            "note: no --backup given, so there is no restore file; to be able to undo, export \
             the current values first: reg export \"{}\" backup-18.reg (and the same for S-1-5-19)",
            ServiceAccount::LocalSystem
                .connections()
                .to_string()
                .replace("HKEY_USERS", "HKU")
        );
    }
    println!(
        "next: as administrator on the sensor machine, reg import {} and restart the sensor \
         service{}",
        args.out.display(),
        args.restore_out
            .as_ref()
            .map(|p| format!("; to undo, reg import {}", p.display()))
            .unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}
