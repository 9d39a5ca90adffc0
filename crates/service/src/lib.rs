//! The uplink cloud service.
//!
//! One HTTPS port serves every workspace in the store. The TLS ClientHello's SNI picks the
//! workspace and its server certificate; the `Host` header then picks the face:
//! `<workspace>sensorapi.<domain>` is the sensor API, `<workspace>.<domain>` the console (the
//! admin API and the web console's pages). Client certificates are optional at the TLS layer so that `ping` works from a
//! browser, and required by the handlers that need them.
//!
//! A client certificate is accepted at the TLS layer if it chains to *any* workspace CA; the
//! handler then compares its issuer with the host's workspace and answers 403 on a mismatch, so an
//! administrator sees "this certificate belongs to another workspace" rather than a TLS alert.
//! The CA names are not advertised to clients (no root hints but the host's own CA).
//!
//! [`Service::serve`] takes its listener and a shutdown future; it never binds or reads the
//! environment itself.

pub mod admin;
pub mod adminapi;
mod budget;
mod conns;
mod console;
mod crl;
pub mod fleet;
mod lifecycle;
pub mod metrics;
mod policy;
pub mod proxyproto;
mod registry;
mod routes;
// CA rotation (issue #24).
mod rotation;
pub mod tls;
pub mod webhooks;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use uplink_store::Store;

pub use registry::Registry;

/// Limits on what a client may send, and on what clients may hold. The defaults suit batches of up
/// to 100,000 events and sites of thousands of sensors; tests shrink them to run in seconds.
/// docs/security.md says what each one defends against.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body on the wire (compressed or not).
    pub max_body: usize,
    /// Largest body after decompression.
    pub max_decoded: usize,
    /// Most events in one batch.
    pub max_events: usize,
    /// Time allowed for the TLS handshake.
    pub handshake_timeout: Duration,
    /// Time allowed to receive a request's headers (and for an idle keep-alive connection to
    /// start its next request).
    pub header_timeout: Duration,
    /// A request body that sends no byte for this long is answered 408 and its connection closed.
    pub body_idle_timeout: Duration,
    /// A request must be received in full within this time of its first byte (408 and close
    /// otherwise); its connection is closed if it is still unanswered at twice this time.
    pub request_timeout: Duration,
    /// Most connections open at once. At the cap, the stalled unauthenticated connection quiet the
    /// longest is closed to let a new one in.
    pub max_connections: usize,
    /// Most connections from one source address that presented no valid client certificate (and
    /// did not enroll successfully). Sensors with certificates are never counted here: a site's
    /// sensors all come from its proxy's address.
    pub max_unauthenticated_per_address: usize,
    /// How long a connection must have been quiet to be closed to make room at a cap.
    pub stall_grace: Duration,
    /// Memory all event batches being decoded, parsed and stored may take together; beyond it a
    /// batch is answered 503 with Retry-After.
    pub decode_budget: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body: 16 << 20,
            max_decoded: 64 << 20,
            max_events: 100_000,
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(30),
            body_idle_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            max_unauthenticated_per_address: 128,
            stall_grace: Duration::from_secs(1),
            decode_budget: 256 << 20,
        }
    }
}

/// Service settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub limits: Limits,
    /// How often the store's change log is read, to drop or reload workspaces changed by other
    /// replicas or commands (see `registry.rs`).
    pub change_poll: Duration,
    /// Every connection starts with a PROXY protocol v2 header (from a load balancer), whose
    /// source address is the client's; a connection without one is closed (`proxyproto.rs`).
    pub proxy_protocol: bool,
    /// Fleet health: how often and with which thresholds (docs/fleet.md).
    pub fleet: fleet::FleetConfig,
    /// CAs trusted for https webhooks and tls:// syslog receivers besides the system's roots.
    pub webhook_trust: webhooks::ReceiverTrust,
    /// The web console: session expiry, sign-in throttling (docs/console.md).
    pub console: uplink_console::Settings,
    /// Console hosts' TLS configuration from `--console-cert/--console-key` (`None`: the
    /// workspace CA's certificate, as on sensor hosts).
    pub console_tls: Option<Arc<rustls::ServerConfig>>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            limits: Limits::default(),
            change_poll: Duration::from_millis(500),
            proxy_protocol: false,
            fleet: fleet::FleetConfig::default(),
            webhook_trust: webhooks::ReceiverTrust::default(),
            console: uplink_console::Settings::default(),
            console_tls: None,
        }
    }
}

/// A service over a store.
pub struct Service<S> {
    shared: Arc<Shared<S>>,
}

impl<S> std::fmt::Debug for Service<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service").finish_non_exhaustive()
    }
}

pub(crate) struct Shared<S> {
    pub(crate) store: S,
    pub(crate) registry: Registry,
    pub(crate) config: Config,
    pub(crate) budget: budget::DecodeBudget,
    pub(crate) metrics: metrics::Metrics,
    /// Each workspace's current central policy, read at most every 500 ms (issue #26).
    pub(crate) policies: policy::Cache,
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Store(#[from] uplink_store::StoreError),
    #[error("TLS setup failed: {0}")]
    Tls(String),
    #[error("accepting connections failed: {0}")]
    Accept(#[from] std::io::Error),
}

impl<S: Store> Service<S> {
    /// Loads every workspace from the store and prepares their TLS configurations.
    pub async fn new(store: S, config: Config) -> Result<Self, ServiceError> {
        let registry = Registry::new()?;
        registry.refresh(&store).await?;
        let budget = budget::DecodeBudget::new(config.limits.decode_budget);
        Ok(Service {
            shared: Arc::new(Shared {
                store,
                registry,
                config,
                budget,
                metrics: metrics::Metrics::default(),
                policies: policy::Cache::default(),
            }),
        })
    }

    /// Serves connections from `listener` until `shutdown` completes, then lets in-flight requests
    /// finish (up to `drain`).
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
        drain: Duration,
    ) -> Result<(), ServiceError> {
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let limits = &self.shared.config.limits;
        let tracker = conns::Tracker::new(conns::Caps {
            max_connections: limits.max_connections.max(1),
            max_unauthenticated_per_address: limits.max_unauthenticated_per_address.max(1),
            stall_grace: limits.stall_grace,
        });
        tokio::pin!(shutdown);
        // Workspaces changed elsewhere are dropped or reloaded while this serves; the task ends
        // with `serve`.
        let follower = {
            let shared = self.shared.clone();
            let every = shared.config.change_poll.max(Duration::from_millis(10));
            AbortOnDrop(tokio::spawn(async move {
                shared.registry.follow(&shared.store, every).await
            }))
        };
        // Connections still sending their PROXY header are bounded too (by the connection cap).
        let headers = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
        // Ends with `serve` (aborted below, or dropped with the runtime).
        let fleet = tokio::spawn(fleet::run(self.shared.clone()));
        let _stop_fleet = AbortOnDrop(fleet);
        // Webhook deliveries (`webhooks.rs`), for as long as `serve`.
        let _stop_webhooks = AbortOnDrop(tokio::spawn(webhooks::run(self.shared.clone())));
        loop {
            let (tcp, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(x) => x,
                    Err(e) if is_transient_accept_error(&e) => {
                        tracing::warn!(error = %e, "accept failed; continuing");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                },
                () = &mut shutdown => break,
            };
            let _ = tcp.set_nodelay(true);
            let shared = self.shared.clone();
            let watcher = graceful.watcher();
            if !shared.config.proxy_protocol {
                // Over a cap with nothing to close instead: dropping the socket closes it at once.
                let Ok(registered) = tracker.admit(peer.ip()) else {
                    continue;
                };
                tokio::spawn(async move {
                    if let Err(e) = routes::serve_connection(shared, tcp, registered, watcher).await
                    {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
                continue;
            }
            let Ok(permit) = headers.clone().try_acquire_owned() else {
                tracing::warn!(%peer, "too many connections still sending their PROXY header; closing this one");
                continue;
            };
            let tracker = tracker.clone();
            tokio::spawn(async move {
                let mut tcp = tcp;
                let timeout = shared.config.limits.handshake_timeout;
                let header = proxyproto::read_header(&mut tcp, timeout).await;
                drop(permit);
                let client = match header {
                    Ok(h) => h.source.unwrap_or(peer),
                    Err(e) => {
                        tracing::warn!(%peer, error = %e, "connection refused: no valid PROXY protocol header (--proxy-protocol is on)");
                        return;
                    }
                };
                // The caps, logs and enrollment see the client's address from here on.
                let Ok(registered) = tracker.admit(client.ip()) else {
                    return;
                };
                if let Err(e) = routes::serve_connection(shared, tcp, registered, watcher).await {
                    tracing::debug!(peer = %client, via = %peer, error = %e, "connection ended with an error");
                }
            });
        }
        drop(follower);
        drop(listener);
        if tokio::time::timeout(drain, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("connections still open after {:?}; closing them", drain);
        }
        Ok(())
    }
}

impl<S: Store> Service<S> {
    /// Serves `GET /metrics` (Prometheus text, [`metrics::Metrics`]) in plain HTTP from
    /// `listener` until `shutdown` completes. Anything else is 404.
    pub async fn serve_metrics(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ServiceError> {
        tokio::pin!(shutdown);
        loop {
            let (tcp, _) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(x) => x,
                    Err(e) if is_transient_accept_error(&e) => continue,
                    Err(e) => return Err(e.into()),
                },
                () = &mut shutdown => return Ok(()),
            };
            let shared = self.shared.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let shared = shared.clone();
                        async move {
                            let resp = if req.uri().path() != "/metrics" {
                                http::Response::builder().status(404).body(
                                    http_body_util::Full::new(bytes::Bytes::from_static(
                                        b"only /metrics here\n",
                                    )),
                                )
                            } else {
                                match shared.metrics.render(&shared.store).await {
                                    Ok(text) => http::Response::builder()
                                        .header(
                                            http::header::CONTENT_TYPE,
                                            "text/plain; version=0.0.4; charset=utf-8",
                                        )
                                        .body(http_body_util::Full::new(bytes::Bytes::from(text))),
                                    Err(e) => {
                                        tracing::warn!(error = %e, "metrics: the store failed");
                                        http::Response::builder().status(503).body(
                                            http_body_util::Full::new(bytes::Bytes::from_static(
                                                b"the store is unavailable\n",
                                            )),
                                        )
                                    }
                                }
                            };
                            Ok::<_, std::convert::Infallible>(resp.unwrap_or_default())
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                    .await;
            });
        }
    }
}

/// Aborts a task when dropped: the change-log follower and the fleet loop live exactly as long
/// as `serve`.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn is_transient_accept_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    // EMFILE/ENFILE (too many open files) show up as `Other`/uncategorized: back off and retry.
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | Interrupted | WouldBlock | Other
    ) || e.raw_os_error().is_some_and(|c| c == 24 || c == 23)
}
