//! `uplink service`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use uplink_service::{Config, Service};
use uplink_store::sqlite::SqliteStore;

/// Serve every workspace in DIR on one HTTPS port.
///
/// The first line on stdout is `listening on https://IP:PORT` (the real port when ADDR ends in
/// `:0`). Hosts: `<workspace>sensorapi.<domain>` is the sensor API (ping, enroll, events);
/// `<workspace>.<domain>` is the console. Workspaces created while the service runs are served
/// without a restart. SIGTERM or Ctrl-C stops accepting and lets requests in flight finish.
///
/// At start it refuses a data directory that holds bundles but no store, store files it cannot
/// make private (0600), and a damaged store (SQLite quick_check). `GET /healthz` (any host, no
/// client certificate) answers 200 while events can be stored, 503 while they cannot.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub data: super::DataDir,
    /// Address to listen on, e.g. 0.0.0.0:443, [::]:8443 or 127.0.0.1:0.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// Worker threads (default: one per core).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Validity of the client certificates issued at enrollment and renewal: a number and a unit
    /// (s, m, h, d), from 10s to 825d. Sensors renew when a third of it (at most 30 days) is
    /// left. Short values are for renewal drills and tests.
    #[arg(long, value_name = "DURATION", default_value = "365d", value_parser = parse_validity)]
    pub client_cert_validity: time::Duration,
}

/// `30s`, `15m`, `12h`, `365d`.
fn parse_validity(s: &str) -> Result<time::Duration, String> {
    let bad = || format!("{s:?} is not a duration: write a number and a unit, e.g. 365d, 12h, 90s");
    let unit_at = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let n: i64 = s[..unit_at].parse().map_err(|_| bad())?;
    let d = match &s[unit_at..] {
        "s" => time::Duration::seconds(n),
        "m" => time::Duration::minutes(n),
        "h" => time::Duration::hours(n),
        "d" => time::Duration::days(n),
        _ => return Err(bad()),
    };
    if d < uplink_pki::MIN_CLIENT_VALIDITY
        || d > time::Duration::days(uplink_pki::MAX_CLIENT_VALIDITY_DAYS)
    {
        return Err(format!("{s} is outside 10s..825d"));
    }
    Ok(d)
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(n) = args.threads {
        builder.worker_threads(n.max(1));
    }
    let rt = builder.build()?;
    rt.block_on(async move {
        // Refuse a store that is missing (bundles left behind), loose (modes) or damaged.
        uplink_service::admin::check_data_dir(&args.data.data_dir)?;
        let store = SqliteStore::open(&args.data.data_dir, true)?;
        store.quick_check()?;
        let config = Config {
            client_validity: args.client_cert_validity,
            ..Config::default()
        };
        let service = Service::new(store, config).await?;
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {}: is the port in use or privileged?",
                    args.listen
                )
            })?;
        let local = listener.local_addr()?;
        // Install the SIGTERM/SIGINT handlers (first poll) before announcing the address: a
        // supervisor that stops us right after it must get a clean stop, not the default action.
        let shutdown = shutdown_signal();
        tokio::pin!(shutdown);
        tokio::select! {
            biased;
            () = &mut shutdown => return Ok(ExitCode::SUCCESS),
            () = std::future::ready(()) => {}
        }
        {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            writeln!(out, "listening on https://{local}")?;
            out.flush()?;
        }
        tracing::info!(%local, data_dir = %args.data.data_dir.display(), "service started");
        service
            .serve(listener, shutdown, Duration::from_secs(10))
            .await?;
        tracing::info!("service stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            std::future::pending::<()>().await;
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
