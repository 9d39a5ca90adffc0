//! The uplink cloud service.
//!
//! One HTTPS port serves every workspace in the store. The TLS ClientHello's SNI picks the
//! workspace and its server certificate; the `Host` header then picks the face:
//! `<workspace>sensorapi.<domain>` is the sensor API, `<workspace>.<domain>` the console (not yet
//! built: 404). Client certificates are optional at the TLS layer so that `ping` works from a
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
mod registry;
mod routes;
pub mod tls;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use uplink_store::Store;

pub use registry::Registry;

/// Limits on what a client may send. The defaults suit batches of up to 100,000 events.
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
    /// Time allowed to receive a request's headers.
    pub header_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body: 16 << 20,
            max_decoded: 64 << 20,
            max_events: 100_000,
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(30),
        }
    }
}

/// Service settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub limits: Limits,
    /// Validity of the client certificates issued at enrollment and renewal.
    pub client_validity: time::Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            limits: Limits::default(),
            client_validity: time::Duration::days(uplink_pki::CLIENT_VALIDITY_DAYS),
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
        Ok(Service {
            shared: Arc::new(Shared {
                store,
                registry,
                config,
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
        tokio::pin!(shutdown);
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
            tokio::spawn(async move {
                if let Err(e) = routes::serve_connection(shared, tcp, watcher).await {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            });
        }
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

fn is_transient_accept_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    // EMFILE/ENFILE (too many open files) show up as `Other`/uncategorized: back off and retry.
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | Interrupted | WouldBlock | Other
    ) || e.raw_os_error().is_some_and(|c| c == 24 || c == 23)
}
