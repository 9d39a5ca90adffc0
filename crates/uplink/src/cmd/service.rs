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
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(n) = args.threads {
        builder.worker_threads(n.max(1));
    }
    let rt = builder.build()?;
    rt.block_on(async move {
        let store = SqliteStore::open(&args.data.data_dir, true)?;
        let service = Service::new(store, Config::default()).await?;
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {}: is the port in use or privileged?",
                    args.listen
                )
            })?;
        let local = listener.local_addr()?;
        {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            writeln!(out, "listening on https://{local}")?;
            out.flush()?;
        }
        tracing::info!(%local, data_dir = %args.data.data_dir.display(), "service started");
        service
            .serve(listener, shutdown_signal(), Duration::from_secs(10))
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
