//! `uplink quickstart`: the whole system on one machine, in one command.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use uplink_client::{Connection, Endpoint, TlsSettings};
use uplink_service::admin::Bundle;
use uplink_service::{Config, Service};
use uplink_store::sqlite::SqliteStore;
use uplink_store::ExportFilter;

/// Create a workspace, start the service on loopback, enroll a client over mutual TLS, send
/// events (and replay some, to show they are not stored twice), verify every one, print a summary.
///
/// Without --data-dir everything happens in a temporary directory that is removed at the end.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Keep the data here instead of a temporary directory.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// How many events to send.
    #[arg(long, default_value_t = 20_000, value_name = "N")]
    pub events: u64,
    /// Events per batch.
    #[arg(long, default_value_t = 2_000, value_name = "N")]
    pub batch: u64,
    /// Keep the service running afterwards (until Ctrl-C), and print commands to try against it.
    #[arg(long)]
    pub keep_running: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.events == 0 || args.batch == 0 {
        bail!("--events and --batch must be at least 1");
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
    println!("  data directory   {}", data_dir.display());

    // 1. The service, on a free loopback port.
    let store = SqliteStore::open(&data_dir, true)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
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
    let name = format!("quickstart-{}", hex::encode(rand::random::<[u8; 2]>()));
    let created = uplink_service::admin::create_workspace(
        &data_dir,
        &name,
        uplink_protocol::names::DEFAULT_DOMAIN,
        port,
    )?;
    println!(
        "  workspace        {} ({})",
        created.workspace, created.sensor_url
    );

    // 3. Enroll a throw-away client from the bundle, checking the CA against its pin.
    let bundle: Bundle = serde_json::from_slice(&std::fs::read(&created.bundle_path)?)?;
    let ca_der = uplink_pki::certs_from_pem(&bundle.ca_pem)?;
    if uplink_pki::sha256_hex(&ca_der[0]) != bundle.ca_sha256 {
        bail!("the bundle's CA does not match its ca_sha256 pin");
    }
    let endpoint = Endpoint::parse(&bundle.sensor_url)?;
    let anonymous = TlsSettings::new(&bundle.ca_pem, None)?;
    let mut conn = connect(&endpoint, &anonymous).await?;
    let (status, body) = conn.ping().await?;
    println!("  ping             {status} {body}  (no client certificate needed)");
    let (key_pem, csr_pem) = uplink_pki::generate_key_and_csr("quickstart")?;
    let enrolled = conn
        .enroll(&uplink_protocol::EnrollRequest {
            access_key: bundle.access_key.clone(),
            csr_pem,
            name: "quickstart".into(),
        })
        .await?;
    println!(
        "  enrolled         sensor {} (certificate valid until {})",
        enrolled.sensor_id, enrolled.not_after
    );

    // 4. Send events over mutual TLS, zstd-compressed, then replay the first batch.
    let chain = format!("{}{}", enrolled.certificate_pem, enrolled.chain_pem);
    let tls = TlsSettings::new(&bundle.ca_pem, Some((&chain, &key_pem)))?;
    let mut conn = connect(&endpoint, &tls).await?;
    let send_start = Instant::now();
    let mut accepted = 0;
    let mut first_batch = None;
    let mut seq = 0;
    while seq < args.events {
        let end = (seq + args.batch).min(args.events);
        let mut ndjson = Vec::with_capacity(((end - seq) * 200) as usize);
        for s in seq..end {
            let fields = serde_json::json!({"host": "quickstart", "message": format!("event number {s}"), "level": "info"});
            let serde_json::Value::Object(fields) = fields else {
                unreachable!()
            };
            uplink_protocol::batch::encode_line(&mut ndjson, s, "event", &fields);
        }
        let packed = bytes::Bytes::from(zstd::encode_all(&ndjson[..], 1)?);
        if first_batch.is_none() {
            first_batch = Some(packed.clone());
        }
        accepted += conn.post_events(packed, true).await?.accepted;
        seq = end;
    }
    let elapsed = send_start.elapsed();
    let replay = conn
        .post_events(first_batch.expect("at least one batch"), true)
        .await?;
    println!(
        "  sent             {} events in {:.2?} ({:.0} events/s end to end, each committed before the reply)",
        accepted,
        elapsed,
        accepted as f64 / elapsed.as_secs_f64()
    );
    println!(
        "  replayed         one batch again: {} stored, {} recognised as duplicates",
        replay.accepted, replay.duplicates
    );

    // 5. Verify: every sequence number stored exactly once.
    let stats = store.stats(&created.workspace)?;
    let mut expected = 0u64;
    let mut out_of_order = 0u64;
    store.export(&created.workspace, &ExportFilter::default(), |e| {
        if e.seq != expected {
            out_of_order += 1;
        }
        expected = e.seq + 1;
        Ok(())
    })?;
    let ok = stats.total == args.events
        && expected == args.events
        && out_of_order == 0
        && replay.accepted == 0;
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

async fn connect(endpoint: &Endpoint, tls: &TlsSettings) -> anyhow::Result<Connection> {
    let tcp =
        uplink_client::dial_direct(&endpoint.host, endpoint.port, Duration::from_secs(5)).await?;
    Ok(Connection::handshake(tcp, endpoint, tls).await?)
}
