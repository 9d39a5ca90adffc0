//! `uplink workspace`.

use std::path::PathBuf;
use std::process::ExitCode;

use uplink_service::admin::BundleAt;
use uplink_store::Store;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create a workspace: its CA, an access key and an enrollment bundle (mode 0600).
    ///
    /// NAME is one DNS label (letters, digits, '-'), at most 54 characters, not ending in
    /// 'sensorapi'. Sensors reach the workspace at https://NAMEsensorapi.DOMAIN[:PORT]; give them
    /// the bundle file. Works whether or not the service is running.
    #[command(
        after_help = "Examples:\n  uplink workspace create contoso --data-dir /var/lib/uplink-service --public-port 8443\n  uplink workspace create contoso --data-dir ./svc --domain sensors.example.com --json\n  uplink workspace create contoso --database 'postgres://uplink@/uplink?host=/run/postgresql' \\\n      --master-key-file /etc/uplink-service/master.key --bundle-out contoso.json"
    )]
    Create(CreateArgs),
    /// List the workspaces in a data directory or database.
    #[command(
        after_help = "Examples:\n  uplink workspace list --data-dir /var/lib/uplink-service\n  uplink workspace list --data-dir /var/lib/uplink-service --json"
    )]
    List(ListArgs),
    /// Show a workspace's sensors and event counts (readable while the service runs).
    #[command(
        after_help = "Examples:\n  uplink workspace stats contoso --data-dir /var/lib/uplink-service --json"
    )]
    Stats(StatsArgs),
    /// Write a workspace's enrollment bundle again (0600), from the store: any replica's host
    /// can, since the access key is kept in the store (sealed under the master key).
    #[command(
        after_help = "Examples:\n  uplink workspace bundle contoso --data-dir /var/lib/uplink-service --out contoso.json"
    )]
    Bundle(BundleArgs),
    /// Change a workspace's settings (the others keep their values); prints them all.
    ///
    /// Exit codes: 0 changed; 1 the store failed or has no such workspace; 2 bad usage (a value
    /// out of range or not understood, or nothing to change).
    #[command(
        after_help = "Examples:\n  uplink workspace set contoso --data-dir /var/lib/uplink-service --retention-days 90\n  uplink workspace set contoso --data-dir /var/lib/uplink-service --disconnected-after 15m"
    )]
    Set(SetArgs),
    /// Show a workspace's settings; secrets only as whether they are set.
    #[command(
        after_help = "Examples:\n  uplink workspace show contoso --data-dir /var/lib/uplink-service --json"
    )]
    Show(ShowArgs),
    /// Delete a workspace and all its data: sensors, events, counters, settings. Cannot be
    /// undone (take a backup first: `uplink store backup`).
    ///
    /// Without --yes nothing is deleted (exit 2). A running service stops serving the
    /// workspace once it asks the store again (at the latest when restarted).
    #[command(
        after_help = "Examples:\n  uplink workspace delete contoso --data-dir /var/lib/uplink-service --yes"
    )]
    Delete(DeleteArgs),
    /// Replace the workspace's access key: the old one is refused for new enrollments at once
    /// (every replica, within a second); enrolled sensors are not affected. With --data-dir the
    /// bundle file DIR/bundles/NAME.json is rewritten; `uplink workspace bundle` gives the new
    /// bundle anywhere. Recorded in the audit trail (`uplink fleet audit`).
    ///
    /// --json prints {"workspace", "bundle_path" (null with --database)}.
    #[command(
        after_help = "Examples:\n  uplink workspace rotate-access-key contoso --data-dir /var/lib/uplink-service"
    )]
    RotateAccessKey(RotateAccessKeyArgs),
    /// Rotate the workspace's CA (docs/lifecycle.md). Without --retire-old: a new CA is made
    /// (its key sealed under the master key) and becomes current on every replica within a
    /// second; the old one stays trusted. Sensors learn the new CA over their authenticated
    /// connection and renew onto it by themselves; new enrollments get it. With --data-dir the
    /// bundle file DIR/bundles/NAME.json is rewritten with the new CA. With --retire-old, once
    /// every sensor has moved: the old CA is dropped (its client certificates are refused from
    /// then on); refused, naming the sensors that have not, while any is left. Recorded in the
    /// audit trail (`rotate_ca`, `retire_ca`).
    ///
    /// --json prints {"workspace","ca_sha256","previous_ca_sha256","bundle_path"}, or with
    /// --retire-old {"workspace","ca_sha256","retired":[sha256…]}. Exit 1 when refused.
    #[command(
        after_help = "Examples:\n  uplink workspace rotate-ca contoso --data-dir /var/lib/uplink-service\n  uplink workspace rotate-ca contoso --retire-old --data-dir /var/lib/uplink-service"
    )]
    RotateCa(RotateCaArgs),
    /// A workspace's webhook delivery log, newest first (docs/admin-api.md). --json prints
    /// {"deliveries":[{"id","url","event","issue_id","state","attempts","created_at",
    /// "delivered_at","last_error"}]}; state is pending, delivered or failed.
    #[command(
        after_help = "Examples:\n  uplink workspace deliveries contoso --data-dir /var/lib/uplink --json"
    )]
    Deliveries(DeliveriesArgs),
}

#[derive(Debug, clap::Args)]
pub struct RotateAccessKeyArgs {
    /// The workspace name.
    pub name: String,
    #[command(flatten)]
    pub data: super::DataDir,
    /// Print JSON (the new bundle's path with --data-dir).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct RotateCaArgs {
    /// The workspace name.
    pub name: String,
    #[command(flatten)]
    pub data: super::DataDir,
    /// Drop the previous CA once every sensor has moved to the new one.
    #[arg(long)]
    pub retire_old: bool,
    /// Print JSON (see above).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct DeliveriesArgs {
    /// The workspace name.
    pub name: String,
    #[command(flatten)]
    pub data: super::DataDir,
    /// Print JSON (see above).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct SetArgs {
    /// The workspace name.
    pub name: String,
    #[command(flatten)]
    pub data: super::DataDir,
    /// Keep events this many days (1 to 36500); older ones are removed by the service's
    /// retention and `uplink store prune`. Default for new workspaces: 30.
    #[arg(long, value_name = "N")]
    pub retention_days: Option<u32>,
    /// A sensor not heard from for this long counts as disconnected: a number and a unit
    /// (s, m, h, d), 10s to 30d, e.g. 90s, 10m, 2h. Default for new workspaces: 10m.
    #[arg(long, value_name = "DURATION", value_parser = uplink_store::retention::parse_duration_secs)]
    pub disconnected_after: Option<u64>,
    /// Send each issue opened, closed or reopened to URL (http or https; repeat for several):
    /// replaces the workspace's webhooks. POST {"event","workspace","issue"} signed with
    /// X-Uplink-Signature: sha256=HMAC-SHA256(secret, TIMESTAMP.BODY) (docs/admin-api.md).
    #[arg(long, value_name = "URL")]
    pub webhook: Vec<String>,
    /// The webhooks' signing secret: a file (its first line), one for all the --webhook URLs,
    /// or one per URL in the same order.
    #[arg(long, value_name = "FILE")]
    pub webhook_secret_file: Vec<PathBuf>,
    /// Remove every webhook of the workspace.
    #[arg(long, conflicts_with = "webhook")]
    pub no_webhooks: bool,
    /// Send each issue opened, closed or reopened to a syslog receiver as one RFC 5424 message
    /// with structured data: tcp://HOST:PORT or tls://HOST:PORT (repeat for several; replaces
    /// the workspace's syslog targets).
    #[arg(long, value_name = "URL")]
    pub syslog: Vec<String>,
    /// Remove every syslog target of the workspace.
    #[arg(long, conflicts_with = "syslog")]
    pub no_syslog: bool,
    /// Validity of the client certificates the workspace issues from now on (enrollment and
    /// renewal; sensors renew at two thirds of it): a number and a unit (s, m, h, d), 10s to
    /// 825d. Default: 30d. Every replica applies it within a second.
    #[arg(long, value_name = "DURATION", value_parser = uplink_store::retention::parse_duration_secs)]
    pub client_cert_validity: Option<u64>,
    /// Successful enrollments into the workspace per --enroll-window, from all addresses
    /// together (sites behind one proxy share an address); more are answered 429 with
    /// Retry-After, and `uplink sensor install` waits. Default: 600.
    #[arg(long, value_name = "N")]
    pub enroll_limit: Option<u32>,
    /// Failed enrollments (a wrong access key, a bad or already-enrolled key) per source address
    /// per --enroll-window; that address is then answered 429 until the window ends. Default: 30.
    #[arg(long, value_name = "N")]
    pub failed_enroll_limit: Option<u32>,
    /// The window both enrollment limits count in (fixed windows, shared by the replicas through
    /// the store): a number and a unit, 1s to 1d. Default: 1m.
    #[arg(long, value_name = "DURATION", value_parser = uplink_store::retention::parse_duration_secs)]
    pub enroll_window: Option<u64>,
    /// Print JSON, as `workspace show --json`.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// The workspace name.
    pub name: String,
    #[command(flatten)]
    pub data: super::DataDir,
    /// Print JSON: {"workspace", "domain", "public_port", "sensor_url", "ca_sha256",
    /// "created_at", "retention_days", "disconnected_after_secs", "client_cert_validity_secs",
    /// "enroll_limit", "failed_enroll_limit", "enroll_window_secs", "ca_key_set",
    /// "access_key_set"}.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    /// The workspace name.
    pub name: String,
    #[command(flatten)]
    pub data: super::DataDir,
    /// Really delete it (required).
    #[arg(long)]
    pub yes: bool,
    /// Print JSON: {"workspace", "sensors", "events"} (what was removed).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct BundleArgs {
    /// The workspace name.
    pub name: String,
    #[command(flatten)]
    pub data: super::DataDir,
    /// Where to write the bundle (replaced if it exists).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Print JSON: {"workspace", "bundle_path"}.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The workspace name, e.g. contoso-corp.
    pub name: String,
    #[command(flatten)]
    pub data: super::DataDir,
    /// The DNS domain under which the workspace's hosts live. `*.localhost` names resolve to
    /// loopback without DNS (RFC 6761), so the default works on one machine with no setup.
    #[arg(long, default_value = uplink_protocol::names::DEFAULT_DOMAIN)]
    pub domain: String,
    /// The port sensors connect to (where the service, or a load balancer in front of it, listens).
    #[arg(long, default_value_t = 443, value_name = "PORT")]
    pub public_port: u16,
    /// Where to write the enrollment bundle (0600). Default: DIR/bundles/NAME.json with
    /// --data-dir, ./NAME.json with --database.
    #[arg(long, value_name = "FILE")]
    pub bundle_out: Option<PathBuf>,
    /// Print JSON: workspace, sensor_url, console_url, access_key, bundle_path, ca_sha256.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub data: super::DataDir,
    /// Print JSON: an array of {workspace, sensor_url, ca_sha256}.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    /// The workspace name.
    pub name: String,
    #[command(flatten)]
    pub data: super::DataDir,
    /// Print JSON: {"sensors": [{"id", "name", "last_seen"}], "events": {"total", "by_kind"}}.
    #[arg(long)]
    pub json: bool,
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    super::backend::runtime()?.block_on(async move {
        match command {
            Command::Create(a) => create(a).await,
            Command::List(a) => list(a).await,
            Command::Stats(a) => stats(a).await,
            Command::Bundle(a) => bundle(a).await,
            Command::Set(a) => set(a).await,
            Command::Show(a) => show(a).await,
            Command::Delete(a) => delete(a).await,
            Command::RotateAccessKey(a) => rotate_access_key(a).await,
            Command::RotateCa(a) => rotate_ca(a).await,
            Command::Deliveries(a) => deliveries(a).await,
        }
    })
}

async fn create(a: CreateArgs) -> anyhow::Result<ExitCode> {
    let store = a.data.open(true).await?;
    let bundle_at = match (a.bundle_out, a.data.dir()) {
        (Some(file), _) => BundleAt::File(file),
        (None, Some(dir)) => BundleAt::DataDir(dir.clone()),
        (None, None) => BundleAt::CurrentDir,
    };
    let created = uplink_service::admin::create_workspace(
        &store,
        &a.name,
        &a.domain,
        a.public_port,
        bundle_at,
    )
    .await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&created)?);
    } else {
        println!("workspace   {}", created.workspace);
        println!("sensor URL  {}", created.sensor_url);
        println!("console URL {}", created.console_url);
        println!("CA SHA-256  {}", created.ca_sha256);
        println!(
            "bundle      {}  (holds the access key; give it to sensors, keep it private)",
            created.bundle_path.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn bundle(a: BundleArgs) -> anyhow::Result<ExitCode> {
    let store = a.data.open(false).await?;
    uplink_service::admin::write_bundle(&store, &a.name, &a.out).await?;
    let name = a.name.to_ascii_lowercase();
    if a.json {
        let v = serde_json::json!({"workspace": name, "bundle_path": a.out});
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "bundle of {name} written to {}  (holds the access key; give it to sensors, keep it private)",
            a.out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(a: ListArgs) -> anyhow::Result<ExitCode> {
    let store = a.data.open(false).await?;
    let rows: Vec<serde_json::Value> = store
        .workspaces()
        .await?
        .into_iter()
        .map(|w| {
            let host = uplink_protocol::names::sensor_host(&w.name, &w.domain);
            serde_json::json!({
                "workspace": w.name,
                "sensor_url": uplink_service::admin::url_for(&host, w.public_port),
                "ca_sha256": w.ca_sha256,
            })
        })
        .collect();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else if rows.is_empty() {
        println!(
            "no workspaces yet: create one with `uplink workspace create NAME --data-dir DIR` (or --database URL)"
        );
    } else {
        for r in rows {
            println!(
                "{:<30} {}",
                r["workspace"].as_str().unwrap_or_default(),
                r["sensor_url"].as_str().unwrap_or_default()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn stats(a: StatsArgs) -> anyhow::Result<ExitCode> {
    let store = a.data.open(false).await?;
    let name = a.name.to_ascii_lowercase();
    let stats = store.stats(&name).await?;
    let sensors: Vec<serde_json::Value> = stats
        .sensors
        .iter()
        .map(|s| {
            serde_json::json!({
                "id": s.sensor_id,
                "name": s.name,
                "enrolled_at": uplink_store::rfc3339_ms(s.enrolled_at),
                "last_seen": s.last_seen.map(uplink_store::rfc3339_ms),
            })
        })
        .collect();
    if a.json {
        let value = serde_json::json!({
            "workspace": name,
            "sensors": sensors,
            "events": {"total": stats.total, "by_kind": stats.by_kind},
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!(
            "workspace {name}: {}, {}",
            super::count(stats.sensors.len() as u64, "sensor", "sensors"),
            super::count(stats.total, "event", "events")
        );
        for (kind, n) in &stats.by_kind {
            println!("  {kind:<20} {n}");
        }
        for s in &stats.sensors {
            let seen = s
                .last_seen
                .map(uplink_store::rfc3339_ms)
                .unwrap_or_else(|| "never".into());
            println!("  sensor {} ({}) last seen {seen}", s.sensor_id, s.name);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Exit code 2 with a message on stderr: the command was used wrongly.
fn usage(message: &str) -> anyhow::Result<ExitCode> {
    eprintln!("error: {message}");
    Ok(ExitCode::from(2))
}

async fn set(a: SetArgs) -> anyhow::Result<ExitCode> {
    let change = uplink_store::SettingsChange {
        retention_days: a.retention_days,
        disconnected_after_secs: a.disconnected_after,
    };
    let hooks = match webhooks(&a) {
        Ok(h) => h,
        Err(m) => return usage(&m),
    };
    let syslog = if a.no_syslog {
        Some(Vec::new())
    } else if a.syslog.is_empty() {
        None
    } else {
        let mut targets = Vec::new();
        for url in &a.syslog {
            if let Err(m) = uplink_store::syslog::target(url) {
                return usage(&format!("--syslog: {m}"));
            }
            targets.push(uplink_store::Webhook {
                url: url.trim_end_matches('/').to_owned(),
                secret: String::new(),
            });
        }
        Some(targets)
    };
    let lifecycle = uplink_store::LifecycleChange {
        client_cert_validity_secs: a.client_cert_validity,
        enroll_limit: a.enroll_limit,
        failed_enroll_limit: a.failed_enroll_limit,
        enroll_window_secs: a.enroll_window,
    };
    if change == uplink_store::SettingsChange::default()
        && hooks.is_none()
        && syslog.is_none()
        && lifecycle.is_empty()
    {
        return usage(
            "nothing to change: give --retention-days N, --disconnected-after DURATION, --client-cert-validity DURATION, --enroll-limit N, --failed-enroll-limit N, --enroll-window DURATION, --webhook URL --webhook-secret-file FILE, --syslog URL, --no-webhooks or --no-syslog",
        );
    }
    // Out-of-range values are bad usage, refused before the store is opened.
    if let Err(e) = change.validate().and_then(|()| lifecycle.validate()) {
        return usage(&e.to_string());
    }
    let store = a.data.open(false).await?;
    let name = a.name.to_ascii_lowercase();
    // What changed, for the audit trail (names and counts: never a URL or a secret).
    let mut what: Vec<String> = [
        ("retention_days", a.retention_days.is_some()),
        ("disconnected_after", a.disconnected_after.is_some()),
        ("client_cert_validity", a.client_cert_validity.is_some()),
        ("enroll_limit", a.enroll_limit.is_some()),
        ("failed_enroll_limit", a.failed_enroll_limit.is_some()),
        ("enroll_window", a.enroll_window.is_some()),
    ]
    .iter()
    .filter(|(_, set)| *set)
    .map(|(n, _)| (*n).to_owned())
    .collect();
    if let Some(h) = &hooks {
        what.push(format!("webhooks ({})", h.len()));
    }
    if let Some(h) = &syslog {
        what.push(format!("syslog targets ({})", h.len()));
    }
    let result = apply_settings(&store, &name, change, lifecycle, hooks, syslog).await;
    super::fleet::cli_audit(
        &store,
        &name,
        "settings",
        None,
        super::fleet::outcome(&result, what.join(", ")),
    )
    .await?;
    result?;
    print_settings(&store, &name, a.json).await
}

/// Stores what `workspace set` changes.
async fn apply_settings(
    store: &super::backend::AnyStore,
    name: &str,
    change: uplink_store::SettingsChange,
    lifecycle: uplink_store::LifecycleChange,
    hooks: Option<Vec<uplink_store::Webhook>>,
    syslog: Option<Vec<uplink_store::Webhook>>,
) -> anyhow::Result<()> {
    if change != uplink_store::SettingsChange::default() {
        store.set_workspace_settings(name, change).await?;
    }
    if !lifecycle.is_empty() {
        store.set_lifecycle_settings(name, lifecycle).await?;
    }
    if hooks.is_some() || syslog.is_some() {
        // Webhooks and syslog targets share the store's list: each flag replaces its own kind.
        let (old_syslog, old_hooks): (Vec<_>, Vec<_>) = store
            .webhooks(name)
            .await?
            .into_iter()
            .partition(|h| uplink_store::syslog::is_syslog(&h.url));
        let mut all = hooks.unwrap_or(old_hooks);
        all.extend(syslog.unwrap_or(old_syslog));
        store.set_webhooks(name, all).await?;
    }
    Ok(())
}

/// The webhooks `set` asks for (`None`: leave them), or why the flags are wrong.
fn webhooks(a: &SetArgs) -> Result<Option<Vec<uplink_store::Webhook>>, String> {
    if a.no_webhooks {
        return Ok(Some(Vec::new()));
    }
    if a.webhook.is_empty() {
        return match a.webhook_secret_file.is_empty() {
            true => Ok(None),
            false => Err("--webhook-secret-file without --webhook: give the URL too".into()),
        };
    }
    let files = &a.webhook_secret_file;
    if files.len() != 1 && files.len() != a.webhook.len() {
        return Err(format!(
            "{} --webhook URLs and {} --webhook-secret-file: give one secret file for all, or one per URL",
            a.webhook.len(),
            files.len()
        ));
    }
    let mut hooks = Vec::new();
    for (n, url) in a.webhook.iter().enumerate() {
        let parsed = uplink_url::HttpUrl::parse(url).map_err(|e| format!("--webhook: {e}"))?;
        let file = &files[if files.len() == 1 { 0 } else { n }];
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("cannot read --webhook-secret-file {}: {e}", file.display()))?;
        let secret = text.lines().next().unwrap_or("").trim().to_owned();
        if secret.len() < 16 {
            return Err(format!(
                "the secret in {} is shorter than 16 characters: use a long random one (e.g. openssl rand -hex 32 > FILE)",
                file.display()
            ));
        }
        hooks.push(uplink_store::Webhook {
            url: parsed.to_string(),
            secret,
        });
    }
    Ok(Some(hooks))
}

async fn deliveries(a: DeliveriesArgs) -> anyhow::Result<ExitCode> {
    let store = a.data.open(false).await?;
    let name = a.name.to_ascii_lowercase();
    let all = store.deliveries(&name).await?;
    if a.json {
        let v: Vec<_> = all.iter().map(uplink_store::Delivery::to_json).collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "deliveries": v }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    for d in &all {
        println!(
            "{:>6} {:<10} {:<15} {} {} (attempts {}{})",
            d.id,
            d.state,
            d.event,
            d.issue_id,
            d.url,
            d.attempts,
            d.last_error
                .as_deref()
                .map(|e| format!(", last error: {e}"))
                .unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn show(a: ShowArgs) -> anyhow::Result<ExitCode> {
    let store = a.data.open(false).await?;
    print_settings(&store, &a.name.to_ascii_lowercase(), a.json).await
}

async fn print_settings(
    store: &super::backend::AnyStore,
    name: &str,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let w = store
        .workspace(name)
        .await?
        .ok_or_else(|| uplink_store::StoreError::NoSuchWorkspace(name.to_owned()))?;
    let settings = store.workspace_settings(name).await?;
    let lifecycle = store.lifecycle_settings(name).await?;
    let hooks: Vec<String> = store
        .webhooks(name)
        .await?
        .into_iter()
        .map(|h| h.url)
        .collect();
    let host = uplink_protocol::names::sensor_host(&w.name, &w.domain);
    let value = serde_json::json!({
        "workspace": w.name,
        "domain": w.domain,
        "public_port": w.public_port,
        "sensor_url": uplink_service::admin::url_for(&host, w.public_port),
        "ca_sha256": w.ca_sha256,
        "created_at": uplink_store::rfc3339_ms(w.created_at),
        "retention_days": settings.retention_days,
        "disconnected_after_secs": settings.disconnected_after_secs,
        "client_cert_validity_secs": lifecycle.client_cert_validity_secs,
        "enroll_limit": lifecycle.enroll_limit,
        "failed_enroll_limit": lifecycle.failed_enroll_limit,
        "enroll_window_secs": lifecycle.enroll_window_secs,
        "ca_key_set": !w.ca_key_pem.is_empty(),
        "access_key_set": w.access_key.is_some(),
        "webhooks": hooks.iter().filter(|u| !uplink_store::syslog::is_syslog(u)).collect::<Vec<_>>(),
        "syslog": hooks.iter().filter(|u| uplink_store::syslog::is_syslog(u)).collect::<Vec<_>>(),
    });
    if json {
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!("workspace               {}", w.name);
        println!(
            "sensor URL              {}",
            value["sensor_url"].as_str().unwrap_or_default()
        );
        println!("domain                  {}", w.domain);
        println!("public port             {}", w.public_port);
        println!("CA SHA-256              {}", w.ca_sha256);
        println!(
            "created                 {}",
            value["created_at"].as_str().unwrap_or_default()
        );
        println!("retention               {} days", settings.retention_days);
        println!(
            "disconnected after      {}s",
            settings.disconnected_after_secs
        );
        println!(
            "client cert validity    {}s",
            lifecycle.client_cert_validity_secs
        );
        println!(
            "enrollments             {} per {}s per workspace, {} failed per {}s per address",
            lifecycle.enroll_limit,
            lifecycle.enroll_window_secs,
            lifecycle.failed_enroll_limit,
            lifecycle.enroll_window_secs
        );
        println!("CA key set              {}", !w.ca_key_pem.is_empty());
        println!("access key set          {}", w.access_key.is_some());
    }
    Ok(ExitCode::SUCCESS)
}

async fn delete(a: DeleteArgs) -> anyhow::Result<ExitCode> {
    let name = a.name.to_ascii_lowercase();
    if !a.yes {
        return usage(&format!(
            "deleting workspace {name:?} removes its sensors and all their events for good: add --yes to do it (take `uplink store backup` first if in doubt); nothing was deleted"
        ));
    }
    let store = a.data.open(false).await?;
    let deleted = store.delete_workspace(&name).await?;
    if a.json {
        let v = serde_json::json!({"workspace": name, "sensors": deleted.sensors, "events": deleted.events});
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "deleted workspace {name}: {}, {}",
            super::count(deleted.sensors, "sensor", "sensors"),
            super::count(deleted.events, "event", "events")
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn rotate_access_key(a: RotateAccessKeyArgs) -> anyhow::Result<ExitCode> {
    let store = a.data.open(false).await?;
    let name = a.name.to_ascii_lowercase();
    // 256 random bits, as at creation (the same function as the console's Deploy page).
    let result = uplink_service::admin::rotate_access_key(&store, &name).await;
    if !matches!(result, Err(uplink_store::StoreError::NoSuchWorkspace(_))) {
        let entry = uplink_store::AuditEntry {
            workspace: name.clone(),
            at: uplink_store::now_ms(),
            actor: std::env::var("USER").unwrap_or_else(|_| "unknown".into()),
            source: format!("cli@{}", super::fleet::hostname()),
            action: "rotate_access_key".into(),
            sensor_id: None,
            result: if result.is_ok() { "ok" } else { "failed" }.into(),
            detail: result
                .as_ref()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default(),
        };
        if let Err(e) = store.record_audit(entry).await {
            eprintln!("warning: the audit entry could not be recorded: {e}");
        }
    }
    result?;
    let bundle_path = match a.data.dir() {
        Some(dir) => {
            let bundles = dir.join("bundles");
            uplink_service::admin::create_private_dir(&bundles)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", bundles.display()))?;
            let path = bundles.join(format!("{name}.json"));
            uplink_service::admin::write_bundle(&store, &name, &path).await?;
            Some(path)
        }
        None => None,
    };
    if a.json {
        let v = serde_json::json!({"workspace": name, "bundle_path": bundle_path});
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("the access key of {name} was replaced: the old key no longer enrolls sensors (enrolled ones are not affected)");
        match bundle_path {
            Some(p) => println!(
                "bundle      {}  (holds the new access key; give it to new sensors, keep it private)",
                p.display()
            ),
            None => println!("get the new bundle with `uplink workspace bundle {name} --out FILE`"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `workspace rotate-ca` (CA rotation, issue #24).
async fn rotate_ca(a: RotateCaArgs) -> anyhow::Result<ExitCode> {
    let store = a.data.open(false).await?;
    let name = a.name.to_ascii_lowercase();
    if store.workspace(&name).await?.is_none() {
        anyhow::bail!(uplink_store::StoreError::NoSuchWorkspace(name));
    }
    let audit = |action: &str, result: Result<String, String>| uplink_store::AuditEntry {
        workspace: name.clone(),
        at: uplink_store::now_ms(),
        actor: std::env::var("USER").unwrap_or_else(|_| "unknown".into()),
        source: format!("cli@{}", super::fleet::hostname()),
        action: action.into(),
        sensor_id: None,
        result: if result.is_ok() { "ok" } else { "failed" }.into(),
        detail: result.unwrap_or_else(|e| e),
    };
    if a.retire_old {
        let result = uplink_service::admin::retire_previous_ca(&store, &name).await;
        let detail = match &result {
            Ok((_, gone)) => Ok(format!("retired {}", gone.join(", "))),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = store.record_audit(audit("retire_ca", detail)).await {
            eprintln!("warning: the audit entry could not be recorded: {e}");
        }
        let (current, gone) = match result {
            Ok(r) => r,
            Err(e) => {
                if let (true, uplink_service::admin::AdminError::CaNotRetired { sensors, .. }) =
                    (a.json, &e)
                {
                    let v = serde_json::json!({"workspace": name, "refused": e.to_string(), "sensors_not_moved": sensors});
                    println!("{}", serde_json::to_string_pretty(&v)?);
                    return Ok(ExitCode::FAILURE);
                }
                return Err(e.into());
            }
        };
        if a.json {
            let v = serde_json::json!({"workspace": name, "ca_sha256": current, "retired": gone});
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            println!(
                "retired the previous CA of {name} ({}): its client certificates are refused from now on; the CA is {current}",
                gone.join(", "),
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let result = uplink_service::admin::rotate_ca(&store, &name).await;
    let detail = match &result {
        Ok(r) => Ok(format!(
            "new CA {} (previous {})",
            r.ca_sha256, r.previous_ca_sha256
        )),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = store.record_audit(audit("rotate_ca", detail)).await {
        eprintln!("warning: the audit entry could not be recorded: {e}");
    }
    let rotated = result?;
    let bundle_path = match a.data.dir() {
        Some(dir) => {
            let bundles = dir.join("bundles");
            uplink_service::admin::create_private_dir(&bundles)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", bundles.display()))?;
            let path = bundles.join(format!("{name}.json"));
            uplink_service::admin::write_bundle(&store, &name, &path).await?;
            Some(path)
        }
        None => None,
    };
    if a.json {
        let v = serde_json::json!({
            "workspace": name,
            "ca_sha256": rotated.ca_sha256,
            "previous_ca_sha256": rotated.previous_ca_sha256,
            "bundle_path": bundle_path,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "workspace {name} has a new CA {} (the previous one, {}, is still trusted): sensors learn it and renew onto it by themselves; once they all have, run `uplink workspace rotate-ca {name} --retire-old`",
            rotated.ca_sha256, rotated.previous_ca_sha256
        );
        if let Some(p) = bundle_path {
            println!("bundle      {}  (carries the new CA)", p.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
