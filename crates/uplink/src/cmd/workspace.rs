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
    Create(CreateArgs),
    /// List the workspaces in a data directory or database.
    List(ListArgs),
    /// Show a workspace's sensors and event counts (readable while the service runs).
    Stats(StatsArgs),
    /// Write a workspace's enrollment bundle again (0600), from the store: any replica's host
    /// can, since the access key is kept in the store (sealed under the master key).
    Bundle(BundleArgs),
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
            "workspace {name}: {} sensors, {} events",
            stats.sensors.len(),
            stats.total
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
