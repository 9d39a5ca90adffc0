//! The workspaces a running service knows, with their TLS configurations.
//!
//! The store is the source of truth; this is a cache of it. A host the cache does not know is
//! looked up in the store by its workspace name (one indexed read) and, when found, the cache is
//! rebuilt, so a workspace created by another process — or on another replica — is served at once
//! without a restart. Names the store does not know either are remembered for [`NEGATIVE_TTL`],
//! so a flood of made-up host names cannot turn into a flood of store reads.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use rustls::pki_types::CertificateDer;
use rustls::ServerConfig;
use uplink_pki::CertificateAuthority;
use uplink_protocol::names::{self, Role};
use uplink_store::{Store, WorkspaceRecord};

use crate::{tls, ServiceError};

/// How long a name the store does not know is answered from memory.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(1);
/// Bound on remembered unknown names.
const NEGATIVE_MAX: usize = 10_000;

/// One workspace, ready to serve.
pub(crate) struct Workspace {
    pub name: String,
    pub domain: String,
    pub access_key_sha256: Vec<u8>,
    pub ca: CertificateAuthority,
    pub ca_subject_raw: Vec<u8>,
    pub server_config: Arc<ServerConfig>,
    server_chain: Vec<CertificateDer<'static>>,
    server_key_pem: String,
}

/// An immutable view: replaced whole on refresh, shared by connections.
#[derive(Default)]
pub(crate) struct Snapshot {
    pub by_host: HashMap<String, (Arc<Workspace>, Role)>,
    pub by_ca_subject: HashMap<Vec<u8>, Arc<Workspace>>,
    by_name: HashMap<String, Arc<Workspace>>,
}

/// Host names the store does not know, remembered for [`NEGATIVE_TTL`], at most
/// [`NEGATIVE_MAX`] of them: a flood of made-up names costs bounded memory and one store read
/// per name per TTL. The decisions take `now`, so they are tested without a clock or a store.
#[derive(Debug, Default)]
pub(crate) struct Unknown {
    seen: HashMap<String, Instant>,
}

impl Unknown {
    /// Whether `host` was found unknown less than [`NEGATIVE_TTL`] before `now` (answer "no
    /// such workspace" from memory). When the memory is full, expired names go first, and if
    /// all are fresh (a flood) everything is forgotten: the bound holds either way.
    fn remembered(&mut self, host: &str, now: Instant) -> bool {
        let fresh = |t: &Instant| now.saturating_duration_since(*t) < NEGATIVE_TTL;
        if self.seen.get(host).is_some_and(fresh) {
            return true;
        }
        if self.seen.len() >= NEGATIVE_MAX {
            self.seen.retain(|_, t| fresh(t));
            if self.seen.len() >= NEGATIVE_MAX {
                self.seen.clear();
            }
        }
        false
    }

    /// Records that the store does not know `host`, as of `now`.
    fn remember(&mut self, host: &str, now: Instant) {
        self.seen.insert(host.to_owned(), now);
    }
}

/// The service's view of its workspaces.
pub struct Registry {
    snapshot: RwLock<Arc<Snapshot>>,
    rebuilding: tokio::sync::Mutex<()>,
    unknown: std::sync::Mutex<Unknown>,
    /// Served when the SNI names no workspace: a throw-away self-signed certificate, so a client
    /// that proceeds anyway gets a readable 404/421 instead of a bare TLS alert.
    fallback: Arc<ServerConfig>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("workspaces", &self.snapshot().by_name.len())
            .finish()
    }
}

impl Registry {
    pub(crate) fn new() -> Result<Self, ServiceError> {
        let ca = uplink_pki::generate_ca("unknown-host")
            .map_err(|e| ServiceError::Tls(e.to_string()))?;
        let ca = CertificateAuthority::from_pem(&ca.cert_pem, &ca.key_pem)
            .map_err(|e| ServiceError::Tls(e.to_string()))?;
        let issued = ca
            .issue_server(&["uplink-unknown-host.invalid".into()])
            .map_err(|e| ServiceError::Tls(e.to_string()))?;
        let fallback = tls::server_config(vec![issued.cert_der], &issued.key_pem, None)?;
        Ok(Registry {
            snapshot: RwLock::new(Arc::new(Snapshot::default())),
            rebuilding: Default::default(),
            unknown: Default::default(),
            fallback,
        })
    }

    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn fallback(&self) -> Arc<ServerConfig> {
        self.fallback.clone()
    }

    /// Finds the workspace serving `host`, refreshing from the store on a miss.
    pub(crate) async fn lookup<S: Store>(
        &self,
        host: &str,
        store: &S,
    ) -> Result<Option<(Arc<Workspace>, Role)>, ServiceError> {
        if let Some(hit) = self.snapshot().by_host.get(host) {
            return Ok(Some(hit.clone()));
        }
        // Only names shaped like a workspace host are worth asking the store about.
        let Some((name, domain, _)) = names::classify_host(host) else {
            return Ok(None);
        };
        if self
            .unknown
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remembered(host, Instant::now())
        {
            return Ok(None);
        }
        let exists = store
            .workspace(&name)
            .await?
            .is_some_and(|w| w.domain == domain);
        if exists {
            self.refresh(store).await?;
        }
        let found = self.snapshot().by_host.get(host).cloned();
        if found.is_none() {
            self.unknown
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remember(host, Instant::now());
        }
        Ok(found)
    }

    /// Reloads every workspace from the store.
    pub async fn refresh<S: Store>(&self, store: &S) -> Result<(), ServiceError> {
        let _one_at_a_time = self.rebuilding.lock().await;
        self.rebuild(store).await
    }

    async fn rebuild<S: Store>(&self, store: &S) -> Result<(), ServiceError> {
        let records = store.workspaces().await?;
        let old = self.snapshot();
        let unchanged = records.len() == old.by_name.len()
            && records.iter().all(|r| {
                old.by_name
                    .get(&r.name)
                    .is_some_and(|w| w.ca.sha256() == r.ca_sha256)
            });
        if unchanged {
            return Ok(());
        }
        let cas: Vec<CertificateDer<'static>> = records
            .iter()
            .filter_map(|r| {
                uplink_pki::certs_from_pem(&r.ca_cert_pem)
                    .ok()
                    .and_then(|c| c.into_iter().next())
            })
            .collect();
        let mut snap = Snapshot::default();
        for record in &records {
            // A workspace that cannot be loaded must not take the others down with it.
            match build_workspace(record, old.by_name.get(&record.name), &cas) {
                Ok(ws) => {
                    let ws = Arc::new(ws);
                    snap.by_host.insert(
                        names::sensor_host(&ws.name, &ws.domain),
                        (ws.clone(), Role::SensorApi),
                    );
                    snap.by_host.insert(
                        names::console_host(&ws.name, &ws.domain),
                        (ws.clone(), Role::Console),
                    );
                    snap.by_ca_subject
                        .insert(ws.ca_subject_raw.clone(), ws.clone());
                    snap.by_name.insert(ws.name.clone(), ws);
                }
                Err(e) => {
                    tracing::error!(workspace = %record.name, error = %e, "cannot load workspace; skipping it")
                }
            }
        }
        tracing::info!(workspaces = snap.by_name.len(), "workspaces loaded");
        *self.snapshot.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(snap);
        Ok(())
    }
}

fn build_workspace(
    record: &WorkspaceRecord,
    previous: Option<&Arc<Workspace>>,
    all_cas: &[CertificateDer<'static>],
) -> Result<Workspace, ServiceError> {
    let tls_err =
        |e: uplink_pki::PkiError| ServiceError::Tls(format!("workspace {}: {e}", record.name));
    let ca =
        CertificateAuthority::from_pem(&record.ca_cert_pem, &record.ca_key_pem).map_err(tls_err)?;
    let ca_subject_raw = uplink_pki::cert_info(ca.cert_der())
        .map_err(tls_err)?
        .subject_raw;
    // Keep the server certificate already issued for this CA; issue one otherwise.
    let (server_chain, server_key_pem) =
        match previous.filter(|p| p.ca.sha256() == record.ca_sha256) {
            Some(p) => (p.server_chain.clone(), p.server_key_pem.clone()),
            None => {
                let hosts = vec![
                    names::sensor_host(&record.name, &record.domain),
                    names::console_host(&record.name, &record.domain),
                ];
                let issued = ca.issue_server(&hosts).map_err(tls_err)?;
                (vec![issued.cert_der, ca.cert_der().clone()], issued.key_pem)
            }
        };
    let verifier = tls::client_verifier(all_cas, ca.cert_der())?;
    let server_config = tls::server_config(server_chain.clone(), &server_key_pem, verifier)?;
    let access_key_sha256 = hex::decode(&record.access_key_sha256).map_err(|e| {
        ServiceError::Tls(format!(
            "workspace {}: bad access key hash: {e}",
            record.name
        ))
    })?;
    Ok(Workspace {
        name: record.name.clone(),
        domain: record.domain.clone(),
        access_key_sha256,
        ca,
        ca_subject_raw,
        server_config,
        server_chain,
        server_key_pem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_names_are_remembered_for_the_ttl() {
        let t0 = Instant::now();
        let mut u = Unknown::default();
        assert!(!u.remembered("a.example", t0), "never seen: ask the store");
        u.remember("a.example", t0);
        // (time since it was found unknown, answered from memory)
        for (after, remembered) in [
            (Duration::ZERO, true),
            (NEGATIVE_TTL / 2, true),
            (NEGATIVE_TTL - Duration::from_millis(1), true),
            (NEGATIVE_TTL, false),
            (NEGATIVE_TTL * 10, false),
        ] {
            assert_eq!(
                u.remembered("a.example", t0 + after),
                remembered,
                "{after:?}"
            );
        }
        assert!(
            !u.remembered("A.example", t0),
            "names are compared as given (normalised before)"
        );
    }

    #[test]
    fn the_memory_is_bounded() {
        let t0 = Instant::now();
        let mut u = Unknown::default();
        for i in 0..NEGATIVE_MAX {
            u.remember(&format!("h{i}.example"), t0);
        }
        // Full of fresh names: a new one forgets them all rather than grow.
        assert!(!u.remembered("new.example", t0));
        assert!(u.seen.is_empty());
        // Full with half expired: only the expired go.
        let later = t0 + NEGATIVE_TTL;
        for i in 0..NEGATIVE_MAX {
            let at = if i % 2 == 0 { t0 } else { later };
            u.remember(&format!("h{i}.example"), at);
        }
        assert!(!u.remembered("new.example", later));
        assert_eq!(u.seen.len(), NEGATIVE_MAX / 2);
        assert!(u.remembered("h1.example", later));
        assert!(!u.remembered("h0.example", later));
    }
}
