//! `uplink quickstart`: the whole system on one machine, in one command.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use uplink_service::admin::BundleAt;
use uplink_service::{Config, Service};
use uplink_store::{ExportFilter, Store};
use uplink_store_sqlite::SqliteStore;

/// Create a workspace, start the service on loopback, install a sensor from the workspace's
/// bundle, queue events, upload them over mutual TLS, verify every one, print a summary.
///
/// Without --data-dir everything happens in a temporary directory that is removed at the end.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  cargo run --release -- quickstart\n  uplink quickstart --events 100000\n  \
uplink quickstart --data-dir ./uplink-demo --keep-running\n  \
uplink quickstart --workspace demo --listen 127.0.0.1:8443 --proxy-url http://127.0.0.1:3128\n\n\
Through a proxy, the proxy resolves the workspace's host: give it a hosts entry such as\n  \
127.0.0.1 demosensorapi.uplink.localhost\n\
(Squid reads /etc/hosts), and let it tunnel to the port (Squid: acl SSL_ports port 8443)."
)]
pub struct Args {
    /// Keep the data here instead of a temporary directory.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// How many events to send.
    #[arg(long, default_value_t = 20_000, value_name = "N")]
    pub events: u64,
    /// Keep the service running afterwards (until Ctrl-C), and print commands to try against it.
    #[arg(long)]
    pub keep_running: bool,
    /// The workspace's name (default quickstart-XXXX): fix it to prepare a proxy's hosts entry
    /// for <NAME>sensorapi.uplink.localhost.
    #[arg(long, value_name = "NAME")]
    pub workspace: Option<String>,
    /// Where the service listens (default a free loopback port); a stock Squid tunnels only to
    /// the ports of its SSL_ports list.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub listen: std::net::SocketAddr,
    /// Upload through this proxy (as `sensor install --proxy-url`, fallback never), to see the
    /// proxy path work. The proxy must resolve the workspace's host name to this machine and
    /// allow CONNECT to the service's port (see README, "Through a proxy").
    #[command(flatten)]
    pub proxy: super::proxy::ProxyFlags,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.events == 0 {
        bail!("--events must be at least 1");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(quickstart(args))
}

async fn quickstart(args: Args) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let (_tmp, data_dir) = match &args.data_dir {
        Some(d) => (None, d.clone()),
        None => {
            let t = tempfile::Builder::new()
                .prefix("uplink-quickstart-")
                .tempdir()?;
            let p = t.path().to_path_buf();
            (Some(t), p)
        }
    };
    println!("uplink quickstart");
    if args.data_dir.is_some() {
        println!("  data directory   {} (kept)", data_dir.display());
    } else {
        println!(
            "  data directory   {} (temporary: removed at exit; --data-dir DIR keeps it)",
            data_dir.display()
        );
    }

    // 1. The service, on a free loopback port.
    let store = SqliteStore::open(&data_dir, true)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {} (--listen)", args.listen))?;
    let port = listener.local_addr()?.port();
    let service = Service::new(store.clone(), Config::default()).await?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        service
            .serve(
                listener,
                async {
                    let _ = stop_rx.await;
                },
                Duration::from_secs(5),
            )
            .await
    });
    println!("  service          listening on https://127.0.0.1:{port}");

    // 2. A workspace, created while the service runs (it picks it up without a restart).
    let name = args
        .workspace
        .clone()
        .unwrap_or_else(|| format!("quickstart-{}", hex::encode(rand::random::<[u8; 2]>())));
    let created = uplink_service::admin::create_workspace(
        &store,
        &name,
        uplink_protocol::names::DEFAULT_DOMAIN,
        port,
        BundleAt::DataDir(data_dir.clone()),
    )
    .await?;
    println!(
        "  workspace        {} ({})",
        created.workspace, created.sensor_url
    );

    // 3. Install a real sensor from the bundle (CA pin checked, key generated here, enrolled).
    // The service is on loopback: no WPAD discovery (a corporate PAC has no say in that route).
    let paths = uplink_sensor::Paths::new(Some(&data_dir.join("sensor")))
        .with_wpad(uplink_wpad::Sources::none());
    let host = uplink_protocol::names::sensor_host(
        &created.workspace,
        uplink_protocol::names::DEFAULT_DOMAIN,
    );
    if let Some(proxy) = &args.proxy.proxy_url {
        println!(
            "  proxy            {}: it must resolve {host} to this machine and tunnel to port {port}",
            uplink_url::ProxyUrl::parse(proxy)
                .map(|(u, _)| u.to_string())
                .unwrap_or_else(|_| "(as given)".into())
        );
    }
    let opts = uplink_sensor::install::InstallOptions {
        bundle: created.bundle_path.clone(),
        name: Some("quickstart".into()),
        proxy_url: args.proxy.proxy_url.clone(),
        proxy_user: args.proxy.proxy_user.clone(),
        proxy_password: args
            .proxy
            .proxy_password
            .clone()
            .map(secrecy::SecretString::from),
        proxy_ca: args.proxy.proxy_ca.clone(),
        ..Default::default()
    };
    let installed = match uplink_sensor::install::install(&paths, opts).await {
        Ok(i) => i,
        Err(e) if args.proxy.proxy_url.is_some() => {
            use uplink_diag::Diagnose;
            let _ = stop_tx.send(());
            bail!(
                "{}: {e}\nfix: {}\nThrough a proxy, the proxy itself resolves {host}: give it a hosts entry \"127.0.0.1 {host}\" (Squid reads /etc/hosts), and let it tunnel to port {port} (Squid: \"acl SSL_ports port {port}\", or run with --listen 127.0.0.1:443): see README, \"Through a proxy\"",
                e.code(),
                e.fix()
            );
        }
        Err(e) => return Err(e.into()),
    };
    println!(
        "  sensor           {} installed in {} (route {})",
        installed.sensor_id,
        paths.config_dir.display(),
        installed.route
    );

    // 4. Queue events as `uplink sensor send` would, then upload them as `uplink sensor run --once`.
    // The check below counts exactly the events sent, so this sensor sends no heartbeat or
    // inventory of its own (`run --once` would add one of each).
    let mut config = uplink_sensor::Config::load(&paths)?;
    config.sources.heartbeat_secs = 0;
    config.sources.inventory_secs = 0;
    config.save(&paths)?;
    let mut input = Vec::with_capacity(args.events as usize * 120);
    for n in 0..args.events {
        use std::io::Write;
        writeln!(
            input,
            r#"{{"kind":"logon","host":"quickstart","user":"user{}","n":{n}}}"#,
            n % 97
        )?;
    }
    let queued_at = Instant::now();
    let sent = uplink_sensor::send(&paths, &input[..], |line, reason| {
        eprintln!("line {line}: {reason}")
    })?;
    let queue_time = queued_at.elapsed();
    println!(
        "  queued           {} events durably in {:.2?}",
        sent.accepted, queue_time
    );
    let send_start = Instant::now();
    let run = uplink_sensor::upload::RunOptions {
        once: true,
        timeout: Duration::from_secs(60),
        reload: None,
    };
    let report = uplink_sensor::upload::run(&paths, run, std::future::pending()).await?;
    let elapsed = send_start.elapsed();
    println!(
        "  uploaded         {} events in {} {} in {:.2?} ({:.0} events/s, each batch committed before it left the queue)",
        report.delivered,
        report.batches,
        if report.batches == 1 { "batch" } else { "batches" },
        elapsed,
        report.delivered as f64 / elapsed.as_secs_f64()
    );

    // 5. Verify: every sequence number stored exactly once.
    let stats = store.stats(&created.workspace).await?;
    let mut expected = 0u64;
    let mut out_of_order = 0u64;
    uplink_store::export_each(&store, &created.workspace, ExportFilter::default(), |e| {
        if e.seq != expected {
            out_of_order += 1;
        }
        expected = e.seq + 1;
        Ok(())
    })
    .await?;
    let ok = stats.total == args.events && expected == args.events && out_of_order == 0;
    println!(
        "  stored           {} events, sequence 0..{} complete: {}",
        stats.total,
        args.events,
        if ok { "yes" } else { "NO" }
    );

    if args.keep_running {
        println!();
        println!("The service keeps running; try, in another terminal:");
        println!(
            "  curl --cacert <(jq -r .ca_pem {}) {}/tri/sensor/api/ping",
            created.bundle_path.display(),
            created.sensor_url
        );
        println!(
            "  uplink workspace stats {} --data-dir {} --json",
            created.workspace,
            data_dir.display()
        );
        println!("Press Ctrl-C to stop.");
        crate::cmd::service::shutdown_signal().await;
    }
    let _ = stop_tx.send(());
    server.await.context("the service task failed")??;
    println!("  done in          {:.2?}", started.elapsed());
    if !ok {
        bail!(
            "verification failed: {} events stored for {} sent",
            stats.total,
            args.events
        );
    }
    Ok(ExitCode::SUCCESS)
}
