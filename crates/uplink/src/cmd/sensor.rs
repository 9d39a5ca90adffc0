//! `uplink sensor`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use uplink_diag::Diagnose;
use uplink_sensor::{install, upload, Paths, SensorError};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Enroll this machine with a workspace and write the sensor's configuration.
    ///
    /// The switches mirror the seeds' installer: --proxy-url (ProxyUrl), --proxy-user
    /// (ProxyUserName, as DOMAIN\user), --proxy-password (ProxyUserPassword, stored encrypted),
    /// --quiet (/quiet). The bundle's CA is checked against its pin; the private key is generated
    /// here and never leaves the machine. If anything fails, nothing is installed.
    ///
    /// Files: /etc/uplink (configuration, certificate, keys) and /var/lib/uplink (queue, status),
    /// or everything in --config-dir.
    #[command(
        after_help = "Examples:\n  uplink sensor install --bundle contoso.json\n  uplink sensor install --bundle contoso.json --proxy-url http://proxy.contoso.com:8080\n  UPLINK_PROXY_PASSWORD=secret uplink sensor install --bundle contoso.json \\\n      --proxy-url http://proxy.contoso.com:8080 --proxy-user 'CONTOSO\\svc-uplink'\n  uplink sensor install --bundle contoso.json --config-dir /srv/uplink --quiet"
    )]
    Install(InstallArgs),
    /// Remove the sensor's files (refuses while events wait for upload, unless --force).
    #[command(
        after_help = "Examples:\n  uplink sensor uninstall\n  uplink sensor uninstall --config-dir /srv/uplink --force"
    )]
    Uninstall(UninstallArgs),
    /// Queue events from standard input: NDJSON, one JSON object per line.
    ///
    /// A string field "kind" classifies each event (default "event"); the queue assigns the
    /// sequence number. Works while `sensor run` is running.
    ///
    /// A line that cannot be an event — not valid JSON, not an object, not UTF-8, longer than
    /// 1 MiB, or over 1 MiB once encoded — is skipped and reported with its line number; every
    /// other line, before and after it, is queued. So after exit 1 send only the lines named
    /// (fixed), never the whole input again: that would queue the good lines twice.
    ///
    /// Exit codes: 0 every line queued; 1 some lines were skipped as above (the others queued);
    /// 3 the queue or its disk is full (DISK_FULL; also recorded in `sensor status`): the lines
    /// from the one named were not queued, send those again later; 2 bad usage.
    #[command(
        after_help = "Examples:\n  echo '{\"kind\":\"logon\",\"user\":\"alice\"}' | uplink sensor send\n  uplink sensor send --config-dir /srv/uplink < events.ndjson"
    )]
    Send(SendArgs),
    /// Upload queued events to the service, over mutual TLS, through the configured route.
    ///
    /// Failures are retried with exponential backoff and jitter; nothing leaves the queue until
    /// the service has committed it. The sources of sensor.toml's [sources] run alongside:
    /// files (`[[sources.files]] paths = [globs]`, `format = "json"` for JSON lines), the
    /// journal (`[sources.journal]`), a
    /// heartbeat every 60 s and an inventory at start and daily (docs/sources.md).
    ///
    /// Signals: SIGTERM stops it (the upload in flight may finish, at most 10 s; sources stop
    /// between batches). SIGHUP reloads sensor.toml: a changed proxy applies at the next
    /// connection, changed [sources] restart where they stopped; a file that does not parse is
    /// refused and the running settings stay. `uplink sensor status` shows what it is doing.
    ///
    /// With --once: take one heartbeat and one inventory, read every source to its current end,
    /// upload everything queued, then exit 0; or 1 with the last error code when that could not
    /// happen within --timeout; or 1 with QUEUE_DAMAGED when part of the queue files was damaged
    /// (every intact event was delivered; the lost ones are named, also in `sensor status`); or 1
    /// when SIGTERM/SIGINT stopped it first, saying how many events remain queued.
    #[command(
        after_help = "Examples:\n  uplink sensor run\n  uplink sensor run --once --timeout 2m\n  systemctl reload uplink-sensor"
    )]
    Run(RunArgs),
    /// Show the sensor's workspace, route, last success, last error and queue depth.
    #[command(
        after_help = "Examples:\n  uplink sensor status\n  uplink sensor status --config-dir /srv/uplink --json\n  uplink sensor status --prometheus /var/lib/node_exporter/textfile/uplink.prom"
    )]
    Status(StatusArgs),
    /// Print the systemd unit that runs the sensor as a hardened service (`sensor install`
    /// writes it to /etc/systemd/system/uplink-sensor.service when it uses the default paths).
    #[command(
        after_help = "Examples:\n  uplink sensor systemd-unit > /etc/systemd/system/uplink-sensor.service\n  uplink sensor systemd-unit --user uplink"
    )]
    SystemdUnit(SystemdUnitArgs),
    /// Change how the sensor reaches the service, without reinstalling.
    #[command(subcommand)]
    Proxy(ProxyCommand),
}

#[derive(Debug, clap::Subcommand)]
pub enum ProxyCommand {
    /// Change how the sensor reaches the service. A running `sensor run` uses the new setting
    /// from its next connection: no restart, no reinstall.
    ///
    /// Sources: --proxy-url (an explicit proxy; --proxy-user/--proxy-password if it asks; --bypass for hosts that
    /// skip it), --direct, --from-env (capture https_proxy/HTTPS_PROXY/all_proxy/ALL_PROXY/
    /// http_proxy/no_proxy from this shell: a system service does not inherit them), --pac (a
    /// PAC file or URL, evaluated for the service at each new connection; --proxy-user and
    /// --proxy-password apply to the proxies it names, as --credential-hosts allows for a script
    /// fetched over plain http://), --from-windows-reg (the proxy or PAC script a Windows .reg
    /// export configures, as `uplink winproxy decode` reads it), --wpad (discover the script;
    /// --proxy-user and --proxy-password only as --credential-hosts allows).
    ///
    /// --fallback direct|never: whether DIRECT is tried when the proxy cannot be reached.
    /// Default: never for --proxy-url and --pac (an administrator chose that proxy), direct for
    /// --from-env and --wpad (discovered settings), as the seeds' sensor does. A proxy that came
    /// from discovery (WPAD, a PAC over plain http://) is gone around when it refuses, too.
    ///
    /// --credential-hosts: which discovered proxies may receive --proxy-user/--proxy-password (see its help);
    /// alone, it changes only that list.
    #[command(
        after_help = "Examples:\n  uplink sensor proxy set --proxy-url http://proxy.contoso.com:8080 --fallback never\n  UPLINK_PROXY_PASSWORD=secret uplink sensor proxy set \\\n      --proxy-url http://proxy.contoso.com:8080 --proxy-user 'CONTOSO\\svc-uplink'\n  uplink sensor proxy set --pac http://wpad.contoso.com/wpad.dat\n  uplink sensor proxy set --wpad --credential-hosts '*.contoso.com'\n  uplink sensor proxy set --from-windows-reg internet-settings.reg\n  uplink sensor proxy set --direct"
    )]
    Set(ProxySetArgs),
    /// Forget explicit settings: back to `auto` (WPAD, else the environment captured at install,
    /// else DIRECT).
    #[command(after_help = "Examples:\n  uplink sensor proxy reset")]
    Reset(ProxyResetArgs),
    /// Show the proxy settings and the route they give to the service (never a password).
    #[command(
        after_help = "Examples:\n  uplink sensor proxy show\n  uplink sensor proxy show --config-dir /srv/uplink --json"
    )]
    Show(ProxyShowArgs),
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).multiple(true).args(["proxy_url", "direct", "from_env", "pac", "wpad", "from_windows_reg", "credential_hosts"])))]
#[command(group(clap::ArgGroup::new("one_source").args(["proxy_url", "direct", "from_env", "pac", "wpad", "from_windows_reg"])))]
#[command(mut_arg("proxy_url", |a| a.alias("url")))]
#[command(mut_arg("proxy_user", |a| a.alias("user")))]
#[command(mut_arg("proxy_password", |a| a.alias("password")))]
pub struct ProxySetArgs {
    #[command(flatten)]
    pub dir: Dir,
    /// The proxy (`--proxy-url`: an explicit proxy; with --pac or --wpad only the user,
    /// password and CA apply). `--url`, `--user` and `--password` are the older spellings.
    #[command(flatten)]
    pub proxy: super::proxy::ProxyFlags,
    /// Hosts that skip the proxy, NO_PROXY syntax (e.g. ".corp.example,10.0.0.0/8").
    #[arg(long, value_name = "LIST", requires = "proxy_url")]
    pub bypass: Option<String>,
    /// Connect to the service directly.
    #[arg(long)]
    pub direct: bool,
    /// Use the proxy variables of this shell (recorded now).
    #[arg(long)]
    pub from_env: bool,
    /// A PAC script: a file, or an http:// or https:// URL (checked now; evaluated at each new
    /// connection; https trusts the system roots). The proxies a script fetched over plain
    /// http:// names count as discovered: see --credential-hosts.
    #[arg(long, value_name = "FILE-OR-URL")]
    pub pac: Option<String>,
    /// Discover a PAC script with WPAD (DHCP option 252 from NetworkManager or lease files, then
    /// http://wpad.<domain>/wpad.dat up the search domains; see `uplink proxy wpad`). The result
    /// is cached for the script's HTTP lifetime (5 minutes when nothing is found). --proxy-user and
    /// --proxy-password go only to the proxies --credential-hosts allows, never by Basic; a proxy the
    /// script names that refuses is gone around when the fallback allows (the default).
    #[arg(long)]
    pub wpad: bool,
    /// Windows proxy settings from a .reg export (regedit or `reg export`): the proxy the
    /// LocalSystem/LocalService/user WinINet settings, WinHTTP or the telemetry policy name,
    /// with WinINet's bypass rules (see `uplink winproxy decode`).
    #[arg(long, value_name = "FILE.reg")]
    pub from_windows_reg: Option<PathBuf>,
    /// Whether DIRECT is tried when the proxy cannot be reached.
    #[arg(long, value_enum)]
    pub fallback: Option<FallbackArg>,
    /// Proxy hosts that may receive --proxy-user/--proxy-password when discovery named them (a WPAD
    /// script, or a PAC fetched over plain http://, which anyone on the network can forge):
    /// host names or addresses, comma-separated; `*.corp.example` for every name below
    /// corp.example. Even these get the credentials only by Digest, NTLM or Negotiate, never
    /// Basic. Other discovered proxies get none (PROXY_CREDENTIALS_WITHHELD when they ask).
    /// Kept by later `proxy set` and `proxy reset`; '' clears it.
    #[arg(long, value_name = "HOST[,HOST...]")]
    pub credential_hosts: Option<String>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum FallbackArg {
    Direct,
    Never,
}

impl From<FallbackArg> for uplink_proxy::Fallback {
    fn from(f: FallbackArg) -> Self {
        match f {
            FallbackArg::Direct => uplink_proxy::Fallback::Direct,
            FallbackArg::Never => uplink_proxy::Fallback::Never,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct ProxyResetArgs {
    #[command(flatten)]
    pub dir: Dir,
}

#[derive(Debug, clap::Args)]
pub struct ProxyShowArgs {
    #[command(flatten)]
    pub dir: Dir,
    /// Print JSON: {"mode", "fallback", "url", "user", "bypass", "proxy_ca", "env", "origin",
    /// "credential_hosts", "route", "credentials": [{"proxy", "note"}], "sources"}.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct Dir {
    /// Keep everything (configuration, keys, queue, status) in this one directory instead of
    /// /etc/uplink and /var/lib/uplink.
    #[arg(long, value_name = "DIR", env = "UPLINK_CONFIG_DIR")]
    pub config_dir: Option<PathBuf>,
}

impl Dir {
    fn paths(&self) -> Paths {
        Paths::new(self.config_dir.as_deref()).with_wpad(wpad_sources())
    }
}

#[derive(Debug, clap::Args)]
pub struct InstallArgs {
    /// The enrollment bundle from `uplink workspace create`.
    #[arg(long, value_name = "FILE")]
    pub bundle: PathBuf,
    #[command(flatten)]
    pub dir: Dir,
    /// The proxy to reach the service through.
    #[command(flatten)]
    pub proxy: super::proxy::ProxyFlags,
    /// Hosts that skip the proxy, NO_PROXY syntax (e.g. ".corp.example,10.0.0.0/8").
    #[arg(long, value_name = "LIST", requires = "proxy_url")]
    pub bypass: Option<String>,
    /// Whether DIRECT is tried when the proxy cannot be reached (default: never).
    #[arg(long, value_enum)]
    pub fallback: Option<FallbackArg>,
    /// The sensor's name in the workspace (default: this machine's host name).
    #[arg(long)]
    pub name: Option<String>,
    /// How long to keep trying when the service limits enrollments (429, in a mass
    /// deployment): each retry waits as its Retry-After says; after this the install fails with
    /// ENROLL_RATE_LIMITED. A number and a unit (30s, 10m). Default: 10m.
    #[arg(long, value_name = "DURATION", value_parser = super::duration)]
    pub enroll_wait: Option<std::time::Duration>,
    /// Print nothing on success.
    #[arg(long)]
    pub quiet: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct SystemdUnitArgs {
    /// Run as this user (default: `uplink` if that user exists, else root, still sandboxed).
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct UninstallArgs {
    #[command(flatten)]
    pub dir: Dir,
    /// Remove even if events have not been delivered (they are lost).
    #[arg(long)]
    pub force: bool,
    /// How long to try telling the service, along the sensor's own route, that it is being
    /// uninstalled (it then revokes the certificate and shows the sensor `uninstalled`); the
    /// sensor is removed either way. A number and a unit (500ms, 5s).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = super::duration)]
    pub tell_timeout: std::time::Duration,
    /// Do not tell the service (an offline machine; the administrator decommissions it).
    #[arg(long)]
    pub no_tell: bool,
    /// Print JSON: {"removed": [paths], "undelivered_events": N, "service_told": BOOL}.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct SendArgs {
    #[command(flatten)]
    pub dir: Dir,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub dir: Dir,
    /// Read every source to its end and upload everything queued, then exit.
    #[arg(long)]
    pub once: bool,
    /// With --once: print JSON at the end: {"delivered", "batches", "stopped", "remaining"}.
    #[arg(long, requires = "once")]
    pub json: bool,
    /// With --once: give up after this long, in seconds (60) or with a unit (90s, 5m); the error says how long it took; it stops
    /// early when the next retry would come after the limit). Only with --once: `sensor run`
    /// without it never gives up.
    #[arg(long, default_value = "60", value_name = "DURATION", requires = "once", value_parser = super::duration)]
    pub timeout: Duration,
    /// Each time the sensor has been idle this long (almost no CPU used) after its memory grew
    /// (the start, a burst of events, a heartbeat), give memory back to the system: free heap,
    /// and the pages of code and read-only data it no longer runs. 0 never does.
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = super::duration)]
    pub idle_trim: Duration,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub dir: Dir,
    /// Print JSON: workspace, sensor_id, route, last_success, last_error {code, message, at},
    /// queue {events, bytes}, queue_damage {lost_records, lost_seqs [[first, last]…], at} or
    /// null, disk_full {code, message, at} (while the sources cannot queue) or null.
    #[arg(long)]
    pub json: bool,
    /// Also write the status as a node_exporter textfile (Prometheus text: queue depth, delivered
    /// events, last success, certificate expiry, last error code, disk full, lost records) to
    /// FILE, replaced atomically; point node_exporter's --collector.textfile.directory at its
    /// directory (the name must end in .prom).
    #[arg(long, value_name = "FILE")]
    pub prometheus: Option<std::path::PathBuf>,
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    let name = match &command {
        Command::Install(_) => "uplink sensor install",
        Command::Uninstall(_) => "uplink sensor uninstall",
        Command::Send(_) => "uplink sensor send",
        Command::Run(_) => "uplink sensor run",
        Command::Status(_) => "uplink sensor status",
        Command::SystemdUnit(_) => "uplink sensor systemd-unit",
        Command::Proxy(_) => "uplink sensor proxy",
    };
    // Every sensor error is printed with its code and the fix for its case.
    dispatch(command).map_err(|e| match e.downcast::<SensorError>() {
        Ok(e) => with_code(e, name),
        Err(e) => e,
    })
}

fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Install(a) => install_cmd(a),
        Command::Uninstall(a) => {
            let paths = a.dir.paths();
            // Tell the service first (best effort, bounded), while the key is still here.
            install::check_uninstall(&paths, a.force)?;
            let told = if a.no_tell {
                None
            } else {
                Some(runtime()?.block_on(install::tell_uninstalled(&paths, a.tell_timeout)))
            };
            let mut done = install::uninstall(&paths, a.force)?;
            match told {
                Some(Ok(_)) => done.service_told = true,
                Some(Err(e)) => eprintln!(
                    "warning: the service was not told of the uninstall ({e}); the sensor is removed all the same. Its administrator can decommission it: uplink fleet decommission WORKSPACE SENSOR_ID"
                ),
                None => {}
            }
            if a.dir.config_dir.is_none() {
                done.removed.extend(remove_unit()?);
            }
            if done.undelivered_events > 0 {
                eprintln!(
                    "warning: {} discarded (--force)",
                    super::count(
                        done.undelivered_events,
                        "undelivered event was",
                        "undelivered events were"
                    )
                );
            }
            if a.json {
                println!("{}", serde_json::to_string_pretty(&done)?);
            } else {
                println!(
                    "sensor removed ({})",
                    super::count(done.removed.len() as u64, "path", "paths")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Send(a) => send_cmd(a),
        Command::Run(a) => run_cmd(a),
        Command::Status(a) => status_cmd(a),
        Command::SystemdUnit(a) => {
            let binary = std::env::current_exe()?;
            if let Some(name) = &a.user {
                // systemd would refuse to start the unit (status=217/USER): say so now.
                if uplink_sensor::account::user(name)?.is_none() {
                    anyhow::bail!(
                        "--user {name:?}: no such user on this machine (`getent passwd {name}` finds none): create it first (e.g. `useradd --system --no-create-home {name}`), or leave --user out to run as `{}` if it exists, else root",
                        uplink_sensor::systemd::SERVICE_USER
                    );
                }
            }
            let user = a.user.or_else(service_user);
            print!(
                "{}",
                uplink_sensor::systemd::unit(&binary, user.as_deref(), journal_group())
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Proxy(ProxyCommand::Set(a)) => proxy_set(a),
        Command::Proxy(ProxyCommand::Reset(a)) => {
            let paths = a.dir.paths();
            install::set_proxy(
                &paths,
                install::ProxyChange::Reset,
                None,
                "uplink sensor proxy reset",
            )?;
            println!("proxy settings reset to auto");
            print_route(&paths)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Proxy(ProxyCommand::Show(a)) => proxy_show(a),
    }
}

/// The dedicated service user, if this machine has it (through NSS: a directory user counts).
fn service_user() -> Option<String> {
    let user = uplink_sensor::systemd::SERVICE_USER;
    uplink_sensor::account::user(user)
        .ok()
        .flatten()
        .map(|a| a.name)
}

/// Whether this machine has the group that reads the journal (the unit names it only then).
fn journal_group() -> bool {
    uplink_sensor::account::group_exists(uplink_sensor::systemd::JOURNAL_GROUP)
}

/// With the default paths, install the systemd unit (never overwriting one an administrator
/// changed: only a missing unit is written), or enable the package's unit where it is installed.
fn install_unit(quiet: bool) -> anyhow::Result<()> {
    use uplink_sensor::unitfile::{self, Installed, UnitPlace};
    let place = UnitPlace::system();
    let binary = std::env::current_exe()?;
    let done = unitfile::install(&place, || {
        uplink_sensor::systemd::unit(&binary, service_user().as_deref(), journal_group())
    })?;
    if !quiet {
        match done {
            Installed::NoSystemd => println!(
                "no /etc/systemd/system here: run `uplink sensor run` under your service manager"
            ),
            Installed::Kept => println!("kept the existing {}", place.unit.display()),
            Installed::Wrote => println!(
                "wrote {}: enable it with `systemctl daemon-reload && systemctl enable --now uplink-sensor`",
                place.unit.display()
            ),
            Installed::EnabledPackaged => println!(
                "enabled the packaged {}: start it with `systemctl daemon-reload && systemctl start uplink-sensor`",
                place.packaged.display()
            ),
        }
    }
    Ok(())
}

/// With the default paths, uninstall removes the unit install wrote — only while it is still the
/// one written (an administrator's unit stays) — and the link `systemctl enable` made to it.
fn remove_unit() -> anyhow::Result<Vec<PathBuf>> {
    let place = uplink_sensor::unitfile::UnitPlace::system();
    let removed = uplink_sensor::unitfile::remove(&place)?;
    if !removed.is_empty() {
        let paths: Vec<String> = removed.iter().map(|p| p.display().to_string()).collect();
        println!(
            "removed {}: run `systemctl daemon-reload` (stop the service first if it still runs)",
            paths.join(", ")
        );
    }
    Ok(removed)
}

/// When the dedicated service user exists, the sensor's files become its own (they stay 0600):
/// the unit runs the sensor as that user. Links are never followed.
fn hand_over_to_service_user(paths: &Paths) -> anyhow::Result<()> {
    let Some(account) = uplink_sensor::account::user(uplink_sensor::systemd::SERVICE_USER)? else {
        return Ok(());
    };
    uplink_sensor::account::hand_over(
        &[paths.config_dir.clone(), paths.state_dir.clone()],
        &account,
    )
    .map_err(|e| anyhow::anyhow!("cannot give the sensor's files to {}: {e}", account.name))
}

/// Where WPAD discovery looks: the system's usual places, unless the environment overrides them
/// (`UPLINK_WPAD_*`, for containers and tests: see `uplink_wpad::Sources::with_overrides`).
pub fn wpad_sources() -> uplink_wpad::Sources {
    uplink_wpad::Sources::system().with_overrides(|k| std::env::var(k).ok())
}

/// The process environment's proxy variables (the binary reads the environment; libraries don't).
pub fn env_proxy() -> uplink_proxy::env::FromEnv {
    uplink_proxy::env::capture(|k| std::env::var(k).ok())
}

fn proxy_set(a: ProxySetArgs) -> anyhow::Result<ExitCode> {
    let paths = a.dir.paths();
    // Checked before anything changes.
    let credential_hosts = a
        .credential_hosts
        .as_deref()
        .map(uplink_proxy::trust::parse_list)
        .transpose()
        .map_err(|e| {
            anyhow::anyhow!("--credential-hosts {e}; give proxy host names or addresses, comma-separated (*.corp.example for every name below corp.example)")
        })?;
    let only_hosts = !(a.proxy.proxy_url.is_some()
        || a.direct
        || a.from_env
        || a.pac.is_some()
        || a.wpad
        || a.from_windows_reg.is_some());
    if only_hosts {
        // (A password may come from UPLINK_PROXY_PASSWORD in the environment: not an error.)
        if a.proxy.proxy_user.is_some() || a.fallback.is_some() || a.proxy.proxy_ca.is_some() {
            anyhow::bail!("--proxy-user, --proxy-password, --fallback and --proxy-ca go with a proxy source (--proxy-url, --pac, --wpad...); --credential-hosts alone changes only the allow-list");
        }
        set_credential_hosts(&paths, credential_hosts)?;
        print_route(&paths)?;
        return Ok(ExitCode::SUCCESS);
    }
    let result = proxy_set_source(&paths, a);
    if let (Ok(_), Some(hosts)) = (&result, credential_hosts) {
        set_credential_hosts(&paths, Some(hosts))?;
    }
    result?;
    print_route(&paths)?;
    Ok(ExitCode::SUCCESS)
}

/// Records the allow-list of discovered proxy hosts that may receive credentials (empty: none).
fn set_credential_hosts(paths: &Paths, hosts: Option<Vec<String>>) -> anyhow::Result<()> {
    match install::set_credential_hosts(paths, hosts)? {
        Some(h) => println!(
            "credentials may go to these discovered proxies (Digest, NTLM, Negotiate only): {}",
            h.join(", ")
        ),
        None => println!("no discovered proxy receives credentials"),
    }
    Ok(())
}

fn proxy_set_source(paths: &Paths, a: ProxySetArgs) -> anyhow::Result<()> {
    let paths = paths.clone();
    if let Some(file) = &a.from_windows_reg {
        let (change, origin) = install::windows_change(file)?;
        install::set_proxy(
            &paths,
            change,
            a.fallback.map(Into::into),
            &format!("uplink sensor proxy set --from-windows-reg {origin}"),
        )?;
        println!("proxy settings imported from {}", file.display());
        return Ok(());
    }
    let change = if a.direct {
        install::ProxyChange::Direct
    } else if a.from_env {
        install::ProxyChange::FromEnv(env_proxy())
    } else if a.pac.is_some() || a.wpad {
        let credentials = install::credential_switches(
            a.proxy.proxy_user,
            a.proxy.proxy_password.map(secrecy::SecretString::from),
        )?;
        match a.pac {
            Some(pac) => install::ProxyChange::Pac {
                pac,
                credentials,
                proxy_ca: a.proxy.proxy_ca,
            },
            None => install::ProxyChange::Wpad {
                credentials,
                proxy_ca: a.proxy.proxy_ca,
            },
        }
    } else {
        let Some((url, credentials)) = install::proxy_switches(
            a.proxy.proxy_url.as_deref(),
            a.proxy.proxy_user.as_deref(),
            a.proxy.proxy_password.map(secrecy::SecretString::from),
        )?
        else {
            anyhow::bail!("give --proxy-url, --pac, --direct or --from-env");
        };
        install::ProxyChange::Explicit {
            url,
            credentials,
            bypass: a.bypass,
            proxy_ca: a.proxy.proxy_ca,
        }
    };
    install::set_proxy(
        &paths,
        change,
        a.fallback.map(Into::into),
        "uplink sensor proxy set",
    )?;
    println!("proxy settings saved; a running sensor uses them from its next connection");
    Ok(())
}

fn print_route(paths: &Paths) -> anyhow::Result<()> {
    use uplink_sensor::proxyshow::{credential_notes, route_line};
    let (config, _) = uplink_sensor::policy::load_effective(paths)?;
    let endpoint = uplink_client::Endpoint::parse(&config.sensor_url)?;
    let ex = config.explain(paths, &endpoint.host, endpoint.port);
    let route: Vec<String> = ex.route.iter().map(ToString::to_string).collect();
    println!("route to {}: {}", endpoint.host, route_line(&route));
    for c in credential_notes(&ex) {
        println!("{}: {}", c.proxy, c.note);
    }
    if let Some(p) = ex.problem {
        println!("problem: {p}");
    }
    Ok(())
}

fn proxy_show(a: ProxyShowArgs) -> anyhow::Result<ExitCode> {
    let paths = a.dir.paths();
    // sensor.toml under the central policy the sensor applied (issue #26).
    let (config, precedence) = uplink_sensor::policy::load_effective(&paths)?;
    let endpoint = uplink_client::Endpoint::parse(&config.sensor_url)?;
    let ex = config.explain(&paths, &endpoint.host, endpoint.port);
    let status = uplink_sensor::status::Status::load(&paths.status_file());
    let shown = uplink_sensor::proxyshow::ProxyShow::new(&config.proxy, &ex)
        .with_status(&config.proxy, &status)
        .with_precedence(&precedence);
    if a.json {
        println!("{}", shown.json());
    } else {
        print!("{}", shown.text());
    }
    Ok(ExitCode::SUCCESS)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn install_cmd(a: InstallArgs) -> anyhow::Result<ExitCode> {
    let paths = a.dir.paths();
    let opts = install::InstallOptions {
        bundle: a.bundle,
        proxy_url: a.proxy.proxy_url,
        proxy_user: a.proxy.proxy_user,
        proxy_password: a.proxy.proxy_password.map(secrecy::SecretString::from),
        proxy_ca: a.proxy.proxy_ca,
        bypass: a.bypass,
        fallback: a.fallback.map(Into::into),
        env: Some(env_proxy()),
        name: a.name,
        enroll_wait: a.enroll_wait,
    };
    let system = a.dir.config_dir.is_none();
    if system {
        // All or nothing: a unit that cannot be written fails the install before it enrolls.
        uplink_sensor::unitfile::probe(&uplink_sensor::unitfile::UnitPlace::system()).map_err(
            |e| anyhow::anyhow!("{e}: nothing was installed; make /etc/systemd/system writable (or install with --config-dir DIR and run `uplink sensor run --config-dir DIR` under your service manager)"),
        )?;
    }
    let installed = runtime()?
        .block_on(install::install(&paths, opts))
        .map_err(|e| with_code(e, "uplink sensor install"))?;
    if system {
        // The unit is written last; if that (or the hand-over) still fails, what was installed
        // is removed again, so a retry starts clean instead of finding "already installed".
        let quiet = a.quiet || a.json;
        if let Err(e) = install_unit(quiet).and_then(|()| hand_over_to_service_user(&paths)) {
            let _ = install::uninstall(&paths, true);
            let _ = remove_unit();
            return Err(e.context(
                "the sensor enrolled, but the install could not finish: everything it wrote was removed again, nothing is installed",
            ));
        }
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&installed)?);
    } else if !a.quiet {
        println!("sensor installed");
        println!("  workspace  {}", installed.workspace);
        println!("  sensor id  {}", installed.sensor_id);
        println!("  service    {}", installed.sensor_url);
        println!("  route      {}", installed.route);
        println!("  cert until {}", installed.certificate_expires);
        println!("  config     {}", installed.config_dir.display());
        println!(
            "next: queue events with `uplink sensor send` and upload them with `uplink sensor run`"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A sensor error with its code and fix; a malformed or contradictory flag is bad usage (exit 2).
fn with_code(e: SensorError, command: &'static str) -> anyhow::Error {
    if let SensorError::Switch(msg) = &e {
        return super::usage(command, msg.clone());
    }
    anyhow::anyhow!("{}: {e}\nfix: {}", e.code(), e.fix())
}

fn send_cmd(a: SendArgs) -> anyhow::Result<ExitCode> {
    let paths = a.dir.paths();
    let stdin = std::io::stdin();
    let mut err = std::io::stderr().lock();
    let report = uplink_sensor::send(&paths, stdin.lock(), |line, reason| {
        let _ = writeln!(err, "line {line}: {reason} (skipped)");
    })?;
    if let (Some((line, e)), Some(code)) = (&report.full, report.full_code()) {
        eprintln!("error: {code}: {e}\nfix: {}", code.fix());
        eprintln!(
            "{} queued; line {line} and the lines after it were NOT queued: send them again later",
            super::count(report.accepted as u64, "event was", "events were")
        );
        return Ok(ExitCode::from(3));
    }
    if report.rejected > 0 {
        eprintln!(
            "{} queued, {} rejected (skipped, named above): send only those lines again, once fixed",
            super::count(report.accepted as u64, "event", "events"),
            super::count(report.rejected as u64, "line", "lines")
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// Heap allocations below this come from malloc's arenas, not `mmap`: a tailed chunk of long
/// lines, its queue records and a batch's frames are a few hundred KiB each.
const SENSOR_MMAP_THRESHOLD: usize = 8 << 20;
/// Free heap an arena keeps at its top rather than giving it back to the kernel at once (the
/// idle trim, `--idle-trim`, gives it back when the sensor goes idle; with the idle trim off,
/// glibc's own thresholds stay).
const SENSOR_TRIM_THRESHOLD: usize = 16 << 20;

fn run_cmd(a: RunArgs) -> anyhow::Result<ExitCode> {
    // Buffers freed after each tailed chunk and each batch stay in the heap for the next one
    // (issue #28): with glibc's moving thresholds, chunks just past its 128 KiB start were
    // mapped and unmapped, or trimmed off an arena's top, and faulted in zeroed again each
    // time: a third of the sensor's CPU tailing 2,000 B lines (perf: page faults in the queue
    // records' copy and the splitter's buffer). The peak measured unchanged (bench/sensor-mem.sh,
    // docs/benchmarks.md); the idle trim returns what is kept, so without it nothing is kept.
    if !a.idle_trim.is_zero() {
        uplink_memtrim::keep_freed_heap(SENSOR_MMAP_THRESHOLD, SENSOR_TRIM_THRESHOLD);
    }
    let paths = a.dir.paths();
    let reload = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let opts = upload::RunOptions {
        once: a.once,
        timeout: a.timeout,
        reload: Some(reload.clone()),
    };
    let rt = runtime()?;
    rt.spawn(reload_on_sighup(reload));
    rt.spawn(crate::idle::trim_when_idle(a.idle_trim));
    match rt.block_on(upload::run(&paths, opts, super::service::shutdown_signal())) {
        Ok(report) => {
            tracing::info!(
                delivered = report.delivered,
                batches = report.batches,
                "uploader stopped"
            );
            if a.json {
                println!("{}", serde_json::to_string(&report)?);
                return Ok(if report.stopped {
                    ExitCode::from(1)
                } else {
                    ExitCode::SUCCESS
                });
            }
            if a.once && report.stopped {
                eprintln!(
                    "stopped by a signal before the queue was empty: delivered {} in {}; {} queued (they are sent by the next `uplink sensor run`)",
                    super::count(report.delivered, "event", "events"),
                    super::count(report.batches, "batch", "batches"),
                    super::count(report.remaining, "event remains", "events remain")
                );
                return Ok(ExitCode::from(1));
            }
            if a.once {
                println!(
                    "delivered {} in {}; the queue is empty",
                    super::count(report.delivered, "event", "events"),
                    super::count(report.batches, "batch", "batches")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(with_code(e, "uplink sensor run")),
    }
}

/// SIGHUP asks the uploader to reload its configuration (proxy settings included).
async fn reload_on_sighup(flag: std::sync::Arc<std::sync::atomic::AtomicBool>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
    #[cfg(not(unix))]
    let _ = flag;
}

fn status_cmd(a: StatusArgs) -> anyhow::Result<ExitCode> {
    let report = uplink_sensor::status::Report::load(&a.dir.paths())?;
    if let Some(file) = &a.prometheus {
        // Written beside the target and renamed over it: the collector never reads half a file.
        let mut tmp = file.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = std::path::PathBuf::from(tmp);
        std::fs::write(&tmp, report.prometheus())
            .and_then(|()| std::fs::rename(&tmp, file))
            .map_err(|e| anyhow::anyhow!("cannot write --prometheus {}: {e}: check that its directory exists and is writable", file.display()))?;
    }
    if a.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.text());
    }
    Ok(ExitCode::SUCCESS)
}
