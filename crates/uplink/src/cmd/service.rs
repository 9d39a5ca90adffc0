//! `uplink service`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use uplink_service::{Config, Service};
use uplink_store::Store;

/// Serve every workspace in the store (DIR, or the --database) on one HTTPS port.
///
/// The first line on stdout is `listening on https://IP:PORT` (the real port when ADDR ends in
/// `:0`). Hosts: `<workspace>sensorapi.<domain>` is the sensor API (ping, enroll, events);
/// `<workspace>.<domain>` is the console. Workspaces created while the service runs are served
/// without a restart. SIGTERM or Ctrl-C stops accepting and lets requests in flight finish.
///
/// At start it refuses a data directory that holds bundles but no store, store files it cannot
/// make private (0600), and a damaged store (SQLite quick_check); with --database it creates or
/// migrates the schema (replicas starting together take turns) and refuses a schema too new
/// for it. Replicas given the same --database share everything. `GET /healthz` (any host, no
/// client certificate) answers 200 while events can be stored, 503 while they cannot.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  uplink service --data-dir /var/lib/uplink-service --listen 0.0.0.0:8443\n  \
uplink service --database 'postgres://uplink@/uplink?host=/run/postgresql' \\\n      \
--master-key-file /etc/uplink-service/master.key --listen 0.0.0.0:443 --proxy-protocol"
)]
pub struct Args {
    #[command(flatten)]
    pub data: super::DataDir,
    /// Address to listen on, e.g. 0.0.0.0:443, [::]:8443 or 127.0.0.1:0.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// Worker threads (default: one per core).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Deprecated and ignored: the validity of client certificates is a workspace setting now,
    /// the same on every replica (`uplink workspace set NAME --client-cert-validity 30d`).
    #[arg(long, value_name = "DURATION", hide = true, value_parser = parse_validity)]
    pub client_cert_validity: Option<time::Duration>,
    /// Close a request whose body sends no byte for this long, answering 408: a client that
    /// opens a body and stalls holds a connection only this long. A number and a unit (ms, s, m).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_timeout)]
    pub body_idle_timeout: Duration,
    /// A request must arrive in full within this time of its first byte (408 otherwise); a
    /// connection whose request is still unanswered at twice this time is closed.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_timeout)]
    pub request_timeout: Duration,
    /// Most connections open at once [default: 10000, lowered to fit the descriptor limit]. At
    /// the cap, the stalled connection without a client certificate that was quiet the longest is
    /// closed to let the new one in; sensors with certificates are never closed to make room.
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Most connections from one IP address that presented no valid client certificate (and did
    /// not enroll on that connection). Sensors with certificates are not counted: a site's
    /// sensors behind one proxy all share its address. At the cap, as for --max-connections.
    #[arg(long, value_name = "N", default_value_t = 128)]
    pub max_unauthenticated_per_address: usize,
    /// How long a connection must have been quiet before it may be closed to make room at a
    /// cap; if none has, the new connection is refused instead.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_timeout)]
    pub stall_grace: Duration,
    /// Memory (MiB) that event batches being decompressed, parsed and stored may take together.
    /// A batch that does not fit is answered 503 with Retry-After; the sensor keeps it and
    /// retries. A 60 MB batch compressed with zstd costs about 120 MiB.
    #[arg(long, value_name = "MIB", default_value_t = 256)]
    pub decode_budget_mib: usize,
    /// Expect a PROXY protocol v2 header (HAProxy's send-proxy-v2) at the start of every
    /// connection, and take its source address as the client's: in logs, the per-address cap
    /// and the enrollment audit. A connection without one is closed and logged. Only for a
    /// listener that nothing but the load balancer can reach (docs/scale-out.md).
    #[arg(long)]
    pub proxy_protocol: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics (plain HTTP: bind it where only your
    /// Prometheus reaches, e.g. 127.0.0.1:9464): this replica's ingest, batch latency,
    /// enrollments, store errors and connections, and the fleet's sensors by state and health
    /// and open issues by kind (docs/admin-api.md).
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// Also trust the CA certificates in this PEM file for https:// webhooks and tls:// syslog
    /// receivers (besides the system's roots): for a receiver whose certificate your own CA
    /// issued. The receiver's certificate must still name its host.
    #[arg(long, value_name = "FILE")]
    pub webhook_ca: Option<std::path::PathBuf>,
    /// How often to read the store's change log, so that workspaces created, changed or deleted
    /// by another replica or command are served (or no longer served) here. A number and a unit
    /// (ms, s, m).
    #[arg(long, value_name = "DURATION", default_value = "500ms", value_parser = parse_timeout)]
    pub change_poll: Duration,
    /// How often the fleet is evaluated: each sensor's state (online, late, disconnected,
    /// inactive) and its health issues opened and closed (docs/fleet.md). With --database, one
    /// replica evaluates each round. Reports update their sensor at once, whatever this is.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_timeout)]
    pub fleet_evaluate_every: Duration,
    /// Time added to a sensor's own heartbeat interval before it counts as late. (When it is
    /// disconnected is each workspace's setting: `uplink workspace set NAME --disconnected-after`.)
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_timeout)]
    pub fleet_online_buffer: Duration,
    /// The width of a bucket of the report history the console's charts draw (one point per
    /// sensor per bucket, kept 7 days). Tests shorten it.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_timeout, hide = true)]
    pub fleet_history_bucket: Duration,
    /// How often to remove events older than each workspace's retention (`uplink workspace set
    /// NAME --retention-days N`), first after one interval. With --database one replica at a
    /// time does it. A number and a unit (ms, s, m).
    #[arg(long, value_name = "DURATION", default_value = "60m", value_parser = parse_timeout)]
    pub retention_interval: Duration,
    /// Web console: a session unused this long is signed out (docs/console.md).
    #[arg(long, value_name = "DURATION", default_value = "30m", value_parser = parse_timeout)]
    pub console_idle_timeout: Duration,
    /// Web console: a session this old is signed out, however busy.
    #[arg(long, value_name = "DURATION", default_value = "12h", value_parser = parse_timeout)]
    pub console_session_lifetime: Duration,
    /// Web console: after 5 failed sign-ins in a row for a name, the next attempt waits this
    /// long after the last failure, twice as long after each further failure (at most 15m).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_timeout)]
    pub console_login_wait: Duration,
    /// Web console: serve this certificate chain (PEM, leaf first) on console hosts
    /// (<workspace>.<domain>), e.g. a wildcard for *.<domain> from the company's CA, so browsers
    /// do not warn. Without it the workspace CA's certificate is served. Sensor hosts always use
    /// the workspace CA.
    #[arg(long, value_name = "FILE", requires = "console_key")]
    pub console_cert: Option<std::path::PathBuf>,
    /// The private key (PEM) of --console-cert.
    #[arg(long, value_name = "FILE", requires = "console_cert")]
    pub console_key: Option<std::path::PathBuf>,
}

/// `500ms`, `30s`, `2m`, `1h` (or seconds): the one duration syntax of every command.
fn parse_timeout(s: &str) -> Result<Duration, String> {
    super::duration(s)
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1)
}

/// Descriptors kept for the store, the listener and logs, beyond one per connection.
const RESERVED_FDS: u64 = 64;

/// Raises the soft limit on open descriptors to the hard one (every connection holds one; the
/// usual soft default of 1,024 is what a connection flood exhausted) and returns the soft limit in
/// force.
fn raise_nofile_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    // An unlimited hard limit is not a valid soft one for descriptors: take the kernel's default
    // ceiling (fs.nr_open).
    let target = limit.maximum.unwrap_or(1 << 20);
    if limit.current.is_some_and(|soft| soft < target) {
        limit.current = Some(target);
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            tracing::warn!(error = %e, "cannot raise the open-file limit to {target}");
        }
    }
    getrlimit(Resource::Nofile).current
}

/// `30s`, `15m`, `12h`, `365d`: the workspace settings' syntax
/// (`uplink_store::retention::parse_duration_secs`), within the client certificates' bounds.
fn parse_validity(s: &str) -> Result<time::Duration, String> {
    let secs = uplink_store::retention::parse_duration_secs(s)?;
    let d = i64::try_from(secs)
        .ok()
        .and_then(|secs| {
            let d = time::Duration::seconds(secs);
            (d >= uplink_pki::MIN_CLIENT_VALIDITY
                && d <= time::Duration::days(uplink_pki::MAX_CLIENT_VALIDITY_DAYS))
            .then_some(d)
        })
        .ok_or_else(|| format!("{s} is outside 10s..825d"))?;
    Ok(d)
}

/// Heap allocations below this come from malloc's arenas, not `mmap` (a decoded batch is up to
/// a few MB); 32 MiB is glibc's largest.
const SERVICE_MMAP_THRESHOLD: usize = 32 << 20;
/// Free heap an arena keeps at its top rather than giving it back to the kernel.
const SERVICE_TRIM_THRESHOLD: usize = 64 << 20;

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let webhook_trust = match &args.webhook_ca {
        Some(path) => {
            let what = format!("--webhook-ca {}", path.display());
            let pem = std::fs::read(path).map_err(|e| {
                super::usage("uplink service", format!("{what}: cannot read it: {e}"))
            })?;
            uplink_service::webhooks::ReceiverTrust::from_pem(&pem, &what)
                .map_err(|e| super::usage("uplink service", e))?
        }
        None => uplink_service::webhooks::ReceiverTrust::default(),
    };
    // Freed batch buffers stay in the heap for the next request instead of going back to the
    // kernel and being faulted in again (issue #28, crates/memtrim). The sensor does the same
    // with smaller bounds (`sensor run`).
    uplink_memtrim::keep_freed_heap(SERVICE_MMAP_THRESHOLD, SERVICE_TRIM_THRESHOLD);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(n) = args.threads {
        builder.worker_threads(n.max(1));
    }
    let rt = builder.build()?;
    rt.block_on(async move {
        // Refuse a store that is missing (bundles left behind), loose (modes) or damaged.
        if let Some(dir) = args.data.dir() {
            uplink_service::admin::check_data_dir(dir, uplink_store_sqlite::DB_FILE)?;
        }
        let store = args.data.open(true).await?;
        store.check().await?;
        let fds = raise_nofile_limit();
        let fit = fds.map_or(usize::MAX, |n| {
            usize::try_from(n.saturating_sub(RESERVED_FDS).max(1)).unwrap_or(usize::MAX)
        });
        let max_connections = match args.max_connections {
            Some(n) => {
                if n > fit {
                    tracing::warn!(max_connections = n, open_file_limit = ?fds, "--max-connections is above what the open-file limit allows: raise the limit (LimitNOFILE= in the unit) or lower the cap");
                }
                n
            }
            None => fit.min(10_000),
        };
        if args.client_cert_validity.is_some() {
            tracing::warn!("--client-cert-validity is deprecated and ignored: the validity of client certificates is a workspace setting, the same on every replica; set it with `uplink workspace set NAME --client-cert-validity 30d`");
        }
        let console_tls = match (&args.console_cert, &args.console_key) {
            (Some(cert), Some(key)) => {
                let read = |p: &std::path::Path| {
                    std::fs::read_to_string(p)
                        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()))
                };
                let config = uplink_service::tls::console_config(&read(cert)?, &read(key)?)
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "--console-cert {} / --console-key {}: {e}: give the PEM chain (leaf first) and its private key",
                            cert.display(),
                            key.display()
                        )
                    })?;
                Some(config)
            }
            _ => None,
        };
        let config = Config {
            change_poll: args.change_poll,
            proxy_protocol: args.proxy_protocol,
            webhook_trust,
            limits: uplink_service::Limits {
                body_idle_timeout: args.body_idle_timeout,
                request_timeout: args.request_timeout,
                max_connections,
                max_unauthenticated_per_address: args.max_unauthenticated_per_address.max(1),
                stall_grace: args.stall_grace,
                decode_budget: args.decode_budget_mib.max(1).saturating_mul(1 << 20),
                ..uplink_service::Limits::default()
            },
            fleet: uplink_service::fleet::FleetConfig {
                every: args.fleet_evaluate_every,
                policy: uplink_store::FleetPolicy {
                    // Whole seconds, at least one.
                    online_buffer_secs: args.fleet_online_buffer.as_secs().max(1),
                    ..uplink_store::FleetPolicy::default()
                },
                history_bucket: args.fleet_history_bucket,
            },
            console: uplink_console::Settings {
                expiry: uplink_console::session::Expiry {
                    idle_ms: duration_ms(args.console_idle_timeout),
                    absolute_ms: duration_ms(args.console_session_lifetime),
                },
                throttle_base_ms: duration_ms(args.console_login_wait),
            },
            console_tls,
        };
        let service = Service::new(store.clone(), config).await?;
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {}: is the port in use or privileged?",
                    args.listen
                )
            })?;
        let local = listener.local_addr()?;
        let metrics = match args.metrics_listen {
            Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.with_context(|| {
                format!("cannot listen on {addr} (--metrics-listen): is the port in use or privileged?")
            })?),
            None => None,
        };
        // Install the signal handlers before announcing the address: a SIGTERM sent as soon as
        // the address is printed must stop the service cleanly, not kill it.
        let shutdown = shutdown_signal();
        tokio::pin!(shutdown);
        let signalled = std::future::poll_fn(|cx| {
            std::task::Poll::Ready(std::future::Future::poll(shutdown.as_mut(), cx).is_ready())
        })
        .await;
        {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            writeln!(out, "listening on https://{local}")?;
            out.flush()?;
        }
        tracing::info!(%local, store = %args.data.describe(), max_connections, open_file_limit = ?fds, proxy_protocol = args.proxy_protocol, "service started");
        let retention = tokio::spawn(uplink_store::retention::retention_loop(
            store.clone(),
            args.retention_interval,
            std::future::pending(),
        ));
        if !signalled {
            let serve = service.serve(listener, shutdown, Duration::from_secs(10));
            match metrics {
                Some(m) => {
                    tracing::info!(address = %m.local_addr()?, "metrics at /metrics");
                    tokio::select! {
                        served = serve => served?,
                        failed = service.serve_metrics(m, std::future::pending()) => failed?,
                    }
                }
                None => serve.await?,
            }
        }
        retention.abort();
        if let Err(e) = store.flush().await {
            tracing::warn!(error = %e, "writing sensors' last-seen times at shutdown failed");
        }
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

#[cfg(test)]
mod tests {
    use super::parse_validity;

    #[test]
    fn validity_takes_the_settings_syntax_within_the_certificates_bounds() {
        for (input, want) in [
            ("10s", Ok(10)),
            ("15m", Ok(900)),
            ("12h", Ok(43_200)),
            ("825d", Ok(825 * 86_400)),
            ("9s", Err("outside")),
            ("826d", Err("outside")),
            ("99999999999999999999d", Err("not a duration")),
            ("18446744073709551615s", Err("outside")),
            ("2.5h", Err("not a duration")),
            ("h", Err("not a duration")),
            ("30", Err("not a duration")),
            ("30w", Err("not a duration")),
        ] {
            match (parse_validity(input), want) {
                (Ok(d), Ok(secs)) => assert_eq!(d.whole_seconds(), secs, "{input}"),
                (Err(e), Err(part)) => assert!(e.contains(part), "{input}: {e}"),
                (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
            }
        }
    }
}
