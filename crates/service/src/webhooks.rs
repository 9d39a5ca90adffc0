//! Webhook deliveries (issue #23, docs/admin-api.md): every replica claims due deliveries from
//! the store with a lease (`Store::claim_deliveries`: one replica per delivery), POSTs each with
//! its signature, and records the outcome (delivered; retried with backoff; failed after
//! `uplink_store::webhooks::GIVE_UP_AFTER_MS`). The deliveries themselves are recorded by the
//! fleet evaluation, in its transaction.
//!
//! `X-Uplink-Timestamp: UNIX-SECONDS`, `X-Uplink-Signature: sha256=HEX`: the HMAC-SHA256 of
//! `TIMESTAMP.BODY` with the webhook's secret ([`signature`], pure). A receiver checks it and
//! refuses an old timestamp (replays).
//!
//! A `tcp://` or `tls://` target is syslog: an RFC 5424 message (`uplink_store::syslog`).
//!
//! An `https://` webhook or a `tls://` syslog receiver must present a certificate for its host
//! name that chains to the system's roots or to a CA the administrator names with `uplink
//! service --webhook-ca FILE` ([`ReceiverTrust`]): a receiver with its own CA is trusted that
//! way, never by turning verification off. The secrets are sealed in the store
//! (`uplink_store::webhooks::seal_secret`) and only opened here, to sign.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use tokio_rustls::TlsConnector;
use uplink_store::webhooks::{after_failure, Outcome};
use uplink_store::{Delivery, Store};

use crate::Shared;

/// How often a replica looks for due deliveries.
const POLL: Duration = Duration::from_millis(500);
/// How long a claim lasts: longer than an attempt ([`ATTEMPT_TIMEOUT`]) so no other replica
/// sends the same delivery meanwhile.
const LEASE_MS: i64 = 60_000;
/// One attempt: connect, TLS, request and answer.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Deliveries claimed at a time.
const BATCH: usize = 16;

/// The CAs a receiver's certificate may chain to besides the system's roots (`uplink service
/// --webhook-ca FILE`). `Debug` shows how many.
#[derive(Clone, Default)]
pub struct ReceiverTrust {
    extra: Vec<CertificateDer<'static>>,
}

impl std::fmt::Debug for ReceiverTrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiverTrust")
            .field("extra_cas", &self.extra.len())
            .finish()
    }
}

impl ReceiverTrust {
    /// The CA certificates of a PEM file's contents (`what` names the file in errors): at least
    /// one, each a CA certificate rustls accepts as a trust anchor. Pure.
    pub fn from_pem(pem: &[u8], what: &str) -> Result<ReceiverTrust, String> {
        let extra = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{what}: not a PEM file of certificates ({e})"))?;
        if extra.is_empty() {
            return Err(format!(
                "{what}: no certificate in it: give the PEM file of the CA that issued the receiver's certificate"
            ));
        }
        let mut roots = rustls::RootCertStore::empty();
        for (i, c) in extra.iter().enumerate() {
            roots.add(c.clone()).map_err(|e| {
                format!(
                    "{what}: certificate {} cannot be a trust anchor ({e})",
                    i + 1
                )
            })?;
        }
        Ok(ReceiverTrust { extra })
    }

    /// How many CA certificates were given.
    pub fn len(&self) -> usize {
        self.extra.len()
    }

    /// Whether none was given (the system's roots only).
    pub fn is_empty(&self) -> bool {
        self.extra.is_empty()
    }

    /// The TLS client configuration for receivers: the system's roots and these CAs.
    fn client_config(&self) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        roots.add_parsable_certificates(self.extra.iter().cloned());
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth()
    }
}

/// A TLS failure with a receiver, with what to do when its certificate is the problem.
fn tls_failure(addr: &str, e: &std::io::Error) -> String {
    let certificate = e
        .get_ref()
        .and_then(|i| i.downcast_ref::<rustls::Error>())
        .is_some_and(|r| matches!(r, rustls::Error::InvalidCertificate(_)));
    if certificate {
        format!(
            "TLS with {addr}: {e}: the receiver's certificate is not trusted for this name; if it is issued by your own CA, start the service with --webhook-ca FILE (that CA's PEM)"
        )
    } else {
        format!("TLS with {addr}: {e}")
    }
}

/// `sha256=HEX`: HMAC-SHA256 of `TIMESTAMP.BODY` under `secret`. Pure.
pub fn signature(secret: &str, timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Runs for as long as the service serves.
pub(crate) async fn run<S: Store>(shared: Arc<Shared<S>>) {
    let tls =
        tokio_rustls::TlsConnector::from(Arc::new(shared.config.webhook_trust.client_config()));
    loop {
        tokio::time::sleep(POLL).await;
        let now = uplink_store::now_ms();
        let claimed = match shared.store.claim_deliveries(now, LEASE_MS, BATCH).await {
            Ok(c) => c,
            Err(e) => {
                shared.metrics.store_errors.inc();
                tracing::warn!(error = %e, "webhooks: claiming deliveries failed");
                continue;
            }
        };
        for (d, secret) in claimed {
            let outcome = match secret {
                None => Outcome::Failed {
                    error: "the webhook was removed before the delivery".into(),
                },
                Some(secret) => match attempt(&d, &secret, &tls).await {
                    Ok(()) => Outcome::Delivered {
                        at: uplink_store::now_ms(),
                    },
                    Err(error) => {
                        tracing::info!(id = d.id, url = %d.url, attempts = d.attempts, %error, "webhook delivery failed; retrying later");
                        after_failure(d.created_at, d.attempts, uplink_store::now_ms(), error)
                    }
                },
            };
            if let Err(e) = shared.store.finish_delivery(d.id, outcome).await {
                shared.metrics.store_errors.inc();
                tracing::warn!(error = %e, id = d.id, "webhooks: recording a delivery failed");
            }
        }
    }
}

/// Sends a test event (`{"event":"test","workspace","issue":null,"test":{"by","at"}}`, signed
/// like every delivery; one RFC 5424 message to a syslog target) to each of `hooks` now, all at
/// once, each bounded by [`ATTEMPT_TIMEOUT`] (so the whole test is too); what each gave, in the
/// order of `hooks`. Nothing is recorded in the delivery log: the caller audits it.
pub(crate) async fn send_tests(
    trust: &ReceiverTrust,
    workspace: &str,
    hooks: &[uplink_store::Webhook],
    by: &str,
    now_ms: i64,
) -> Vec<(String, Result<(), String>)> {
    let tls = TlsConnector::from(Arc::new(trust.client_config()));
    let body = serde_json::json!({
        "event": "test",
        "workspace": workspace,
        "issue": null,
        "test": { "by": by, "at": uplink_store::rfc3339_ms(now_ms) },
    })
    .to_string();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, h) in hooks.iter().enumerate() {
        let d = Delivery {
            id: 0,
            workspace: workspace.to_owned(),
            url: h.url.clone(),
            event: "test".into(),
            issue_id: String::new(),
            body: body.clone(),
            state: "pending".into(),
            attempts: 0,
            created_at: now_ms,
            next_attempt_at: now_ms,
            delivered_at: None,
            last_error: None,
        };
        let (secret, tls) = (h.secret.clone(), tls.clone());
        tasks.spawn(async move { (i, attempt(&d, &secret, &tls).await) });
    }
    let mut got: Vec<Option<Result<(), String>>> = vec![None; hooks.len()];
    while let Some(joined) = tasks.join_next().await {
        if let Ok((i, r)) = joined {
            got[i] = Some(r);
        }
    }
    hooks
        .iter()
        .zip(got)
        .map(|(h, r)| {
            let r = r.unwrap_or_else(|| Err("the attempt ended abnormally".into()));
            (h.url.clone(), r)
        })
        .collect()
}

/// One POST; `Err` says why it did not count as delivered (no 2xx answer).
async fn attempt(d: &Delivery, secret: &str, tls: &TlsConnector) -> Result<(), String> {
    tokio::time::timeout(ATTEMPT_TIMEOUT, post(d, secret, tls))
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} s", ATTEMPT_TIMEOUT.as_secs())))
}

/// A syslog target (`tcp://`, `tls://`): the RFC 5424 message, framed by octet counting,
/// written whole (`uplink_store::syslog`).
async fn syslog(d: &Delivery, tls_connector: &TlsConnector) -> Result<(), String> {
    use tokio::io::AsyncWriteExt;
    let (tls, host, port) = uplink_store::syslog::target(&d.url)?;
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let msg = uplink_store::syslog::message(
        &d.body,
        &uplink_store::rfc3339_ms(uplink_store::now_ms()),
        hostname.trim(),
    )?;
    let addr = uplink_url::host_port(&host, port);
    let mut tcp = tokio::net::TcpStream::connect(&addr)
        .await
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    if tls {
        let mut tls = tls_connector
            .connect(server_name(&host)?, tcp)
            .await
            .map_err(|e| tls_failure(&addr, &e))?;
        tls.write_all(msg.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        tls.shutdown().await.map_err(|e| e.to_string())
    } else {
        tcp.write_all(msg.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        tcp.shutdown().await.map_err(|e| e.to_string())
    }
}

fn server_name(host: &str) -> Result<rustls_pki_types::ServerName<'static>, String> {
    rustls_pki_types::ServerName::try_from(host.to_owned()).map_err(|e| format!("{host}: {e}"))
}

async fn post(d: &Delivery, secret: &str, tls_connector: &TlsConnector) -> Result<(), String> {
    if uplink_store::syslog::is_syslog(&d.url) {
        return syslog(d, tls_connector).await;
    }
    let url = uplink_url::HttpUrl::parse(&d.url).map_err(|e| e.to_string())?;
    let ts = uplink_store::now_ms() / 1000;
    let req = http::Request::post(url.path.as_str())
        .header(http::header::HOST, url.authority())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(
            http::header::USER_AGENT,
            concat!("uplink/", env!("CARGO_PKG_VERSION")),
        )
        .header("X-Uplink-Timestamp", ts.to_string())
        .header("X-Uplink-Signature", signature(secret, ts, &d.body))
        .body(Full::new(Bytes::from(d.body.clone())))
        .map_err(|e| e.to_string())?;
    let tcp = tokio::net::TcpStream::connect(url.host_port())
        .await
        .map_err(|e| format!("connecting to {}: {e}", url.host_port()))?;
    let status = if url.is_tls() {
        let tls = tls_connector
            .connect(server_name(&url.host)?, tcp)
            .await
            .map_err(|e| tls_failure(&url.host_port(), &e))?;
        send(hyper_util::rt::TokioIo::new(tls), req).await?
    } else {
        send(hyper_util::rt::TokioIo::new(tcp), req).await?
    };
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("the receiver answered {status}"))
    }
}

async fn send<T>(io: T, req: http::Request<Full<Bytes>>) -> Result<http::StatusCode, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(conn);
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    // Read the answer whole (bounded by the attempt's timeout), then close.
    let _ = resp.into_body().collect().await;
    driver.abort();
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receiver_cas_come_from_a_pem_file_of_certificates() {
        let ca = uplink_pki::generate_ca("hooks").unwrap();
        let two = format!("{}{}", ca.cert_pem, ca.cert_pem);
        let trust = ReceiverTrust::from_pem(two.as_bytes(), "--webhook-ca ca.pem").unwrap();
        assert_eq!(trust.len(), 2);
        assert_eq!(format!("{trust:?}"), "ReceiverTrust { extra_cas: 2 }");
        let cases: &[(&str, &str)] = &[
            ("", "no certificate in it"),
            ("not pem at all\n", "no certificate in it"),
            (
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                "cannot be a trust anchor",
            ),
            (
                "-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n",
                "not a PEM file",
            ),
        ];
        for (pem, want) in cases {
            let err = ReceiverTrust::from_pem(pem.as_bytes(), "--webhook-ca ca.pem").unwrap_err();
            assert!(
                err.contains("--webhook-ca ca.pem") && err.contains(want),
                "{pem:?}: {err}"
            );
        }
        assert!(ReceiverTrust::default().is_empty());
    }

    #[test]
    fn signatures_are_hmac_sha256_of_timestamp_dot_body() {
        // Computed independently: printf '1700000000.{}' | openssl dgst -sha256 -hmac Jefe
        let s = signature("Jefe", 1700000000, "{}");
        assert_eq!(
            s,
            "sha256=d3793e2b4103edfbd98cc19591832f5fad701d413db9fcae0ae7dab8184ed207"
        );
        assert_ne!(s, signature("Jefe", 1700000001, "{}"));
        assert_ne!(s, signature("jefe", 1700000000, "{}"));
    }
}
