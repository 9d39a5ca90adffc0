//! The workspaces a running service knows, with their TLS configurations.
//!
//! The store is the source of truth; this is a cache of it, kept current by the store's change
//! log. At start every workspace is loaded (one read). Afterwards:
//!
//! - A host the cache does not know is looked up in the store by its workspace name (one indexed
//!   read) and, when found, that one workspace is loaded — never all of them, never every CA key.
//!   Names the store does not know either are remembered for [`NEGATIVE_TTL`], so a flood of
//!   made-up host names cannot turn into a flood of store reads.
//! - [`Registry::follow`] polls the change log every [`crate::Config::change_poll`] (500 ms by
//!   default): a workspace created, changed, re-keyed or deleted by any replica or command is
//!   reloaded or dropped — exactly the workspaces named, decided by [`plan`] and [`actions`]
//!   (pure, tested here). A poll, not PostgreSQL's LISTEN/NOTIFY: the same code serves both
//!   backends (SQLite has no notifications), nothing is lost across reconnects or a database
//!   restart (a missed NOTIFY would leave a stale cache for good; a poll reads from its cursor),
//!   and the cost is one indexed read per replica per poll.
//! - Client certificates are verified against the CA certificates of every loaded workspace
//!   ([`tls::SharedRoots`], replaced when the set changes), so a workspace's TLS configuration
//!   is built once, when it is loaded.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use rustls::pki_types::CertificateDer;
use rustls::ServerConfig;
use uplink_pki::CertificateAuthority;
use uplink_protocol::names::{self, Role};
use uplink_store::{Change, ChangeKind, Store, StoreError, WorkspaceRecord};

use crate::{tls, ServiceError};

/// How long a name the store does not know is answered from memory.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(1);
/// Bound on remembered unknown names.
const NEGATIVE_MAX: usize = 10_000;
/// Most change-log entries read by one query (a poll reads again at once while it gets full
/// pages).
const CHANGES_PAGE: usize = 500;

/// One workspace, ready to serve.
pub(crate) struct Workspace {
    pub name: String,
    pub domain: String,
    pub access_key_sha256: Vec<u8>,
    pub ca: CertificateAuthority,
    pub ca_subject_raw: Vec<u8>,
    pub server_config: Arc<ServerConfig>,
    /// The sensors of this workspace whose certificates are revoked (issue #24), as of the last
    /// load: every request of a client certificate is checked against the current snapshot's set
    /// (`Registry::is_revoked`), so a revocation reaches kept-alive connections too.
    pub revoked: HashSet<String>,
    /// Every certificate of those sensors, for the CRL (`crate::crl`), and the CRL last signed.
    pub revoked_serials: Vec<uplink_store::RevokedSerial>,
    pub crl: crate::crl::Cache,
    /// The workspace's lifecycle settings (certificate validity, enrollment limits), as of the
    /// last load: a change is a change-log entry that reloads the workspace on every replica.
    pub lifecycle: uplink_store::LifecycleSettings,
    /// The rate-limit windows this replica already recorded a 429 of in the audit trail.
    pub limited: crate::lifecycle::Limited,
    server_chain: Vec<CertificateDer<'static>>,
    server_key_pem: String,
    /// CA rotation (`crate::rotation`): the CAs replaced and not retired yet, whose client
    /// certificates are still accepted, and the trust set sensors are told about.
    pub rotation: crate::rotation::Trust,
}

/// An immutable view: replaced whole on each change, shared by connections.
#[derive(Default, Clone)]
pub(crate) struct Snapshot {
    pub by_host: HashMap<String, (Arc<Workspace>, Role)>,
    pub by_ca_subject: HashMap<Vec<u8>, Arc<Workspace>>,
    by_name: HashMap<String, Arc<Workspace>>,
}

impl Snapshot {
    fn insert(&mut self, ws: Arc<Workspace>) {
        self.remove(&ws.name);
        self.by_host.insert(
            names::sensor_host(&ws.name, &ws.domain),
            (ws.clone(), Role::SensorApi),
        );
        self.by_host.insert(
            names::console_host(&ws.name, &ws.domain),
            (ws.clone(), Role::Console),
        );
        self.by_ca_subject
            .insert(ws.ca_subject_raw.clone(), ws.clone());
        for prev in &ws.rotation.previous {
            self.by_ca_subject
                .insert(prev.subject_raw.clone(), ws.clone());
        }
        self.by_name.insert(ws.name.clone(), ws);
    }

    fn remove(&mut self, name: &str) {
        if let Some(old) = self.by_name.remove(name) {
            self.by_host.retain(|_, (w, _)| !Arc::ptr_eq(w, &old));
            self.by_ca_subject.retain(|_, w| !Arc::ptr_eq(w, &old));
        }
    }

    fn cas(&self) -> Vec<CertificateDer<'static>> {
        self.by_name
            .values()
            .flat_map(|w| {
                std::iter::once(w.ca.cert_der().clone())
                    .chain(w.rotation.previous.iter().map(|p| p.ca.cert_der().clone()))
            })
            .collect()
    }
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

    /// Forgets what was remembered about workspace `name` (it was just created).
    fn forget_workspace(&mut self, name: &str) {
        self.seen
            .retain(|host, _| names::classify_host(host).is_none_or(|(n, _, _)| n != name));
    }
}

/// What a poll of the change log does, given the cursor (the last version applied) and the
/// store's newest version. Pure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Poll {
    /// Nothing new.
    UpToDate,
    /// Read the entries after the cursor.
    Read,
    /// The store's log is behind the cursor: it was restored from a backup or replaced. Reload
    /// everything and start again from its newest version.
    Resync,
}

pub(crate) fn plan(cursor: u64, latest: u64) -> Poll {
    match latest.cmp(&cursor) {
        std::cmp::Ordering::Equal => Poll::UpToDate,
        std::cmp::Ordering::Greater => Poll::Read,
        std::cmp::Ordering::Less => Poll::Resync,
    }
}

/// What to do to the cache for one workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Read it again from the store (it may be gone: then drop it).
    Reload(String),
    /// Drop it without reading (deleted).
    Drop(String),
    /// Nothing to reload (its secrets were re-sealed under a new master key, the CA is the
    /// same), but this replica's master key is now the old one: warn.
    KeyRotated(String),
}

/// What a run of change-log entries means for the cache, one action per workspace, in name
/// order: the last entry for a workspace decides (deleted then created again is a reload). A
/// workspace not cached is only loaded when it was created (it is about to be used); any other
/// change to it is read when it is first asked for. A master-key rotation alone reloads nothing.
pub(crate) fn actions(changes: &[Change], cached: &dyn Fn(&str) -> bool) -> Vec<Action> {
    let mut last: BTreeMap<&str, &ChangeKind> = BTreeMap::new();
    let mut rotated: BTreeSet<&str> = BTreeSet::new();
    for c in changes {
        if c.kind == ChangeKind::MasterKeyRotated {
            rotated.insert(&c.workspace);
        } else if c.kind != ChangeKind::Created
            && c.kind != ChangeKind::Deleted
            && last.get(c.workspace.as_str()) == Some(&&ChangeKind::Created)
        {
            // Created, then changed before this poll: still a creation to load (a workspace
            // created and set up at once must not wait for its first request).
        } else {
            last.insert(&c.workspace, &c.kind);
        }
    }
    let mut out = Vec::new();
    for name in rotated.iter().filter(|n| !last.contains_key(*n)) {
        out.push(Action::KeyRotated(name.to_string()));
    }
    for (name, kind) in last {
        match kind {
            ChangeKind::Deleted if cached(name) => out.push(Action::Drop(name.into())),
            ChangeKind::Deleted => {}
            ChangeKind::Created => out.push(Action::Reload(name.into())),
            _ if cached(name) => out.push(Action::Reload(name.into())),
            _ => {}
        }
    }
    out.sort_by(|a, b| action_name(a).cmp(action_name(b)));
    out
}

fn action_name(a: &Action) -> &str {
    match a {
        Action::Reload(n) | Action::Drop(n) | Action::KeyRotated(n) => n,
    }
}

/// Whether a store error while loading one workspace is the store being unreachable right now
/// (stop, retry the whole poll later) rather than something about that workspace (log it, go
/// on with the others).
fn transient(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::Unreachable { .. }
            | StoreError::Backend { .. }
            | StoreError::WriterGone
            | StoreError::Commit { .. }
            | StoreError::Io { .. }
    )
}

/// The service's view of its workspaces.
pub struct Registry {
    snapshot: RwLock<Arc<Snapshot>>,
    /// One writer of the snapshot at a time (a load, a poll, a resync).
    writing: tokio::sync::Mutex<()>,
    unknown: std::sync::Mutex<Unknown>,
    /// Served when the SNI names no workspace: a throw-away self-signed certificate, so a client
    /// that proceeds anyway gets a readable 404/421 instead of a bare TLS alert.
    fallback: Arc<ServerConfig>,
    roots: Arc<tls::SharedRoots>,
    /// The last change-log version applied.
    cursor: std::sync::atomic::AtomicU64,
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
            writing: Default::default(),
            unknown: Default::default(),
            fallback,
            roots: Default::default(),
            cursor: Default::default(),
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

    fn unknown(&self) -> std::sync::MutexGuard<'_, Unknown> {
        self.unknown.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Installs `snap` and trusts its workspaces' CAs.
    fn install(&self, snap: Snapshot) -> Result<(), ServiceError> {
        self.roots.replace(&snap.cas())?;
        *self.snapshot.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(snap);
        Ok(())
    }

    /// Finds the workspace serving `host`, loading that one workspace from the store on a miss.
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
        if self.unknown().remembered(host, Instant::now()) {
            return Ok(None);
        }
        let record = store.workspace(&name).await?.filter(|w| w.domain == domain);
        if let Some(record) = record {
            let revoked = revoked_of(store, &record.name).await?;
            let _one_writer = self.writing.lock().await;
            let mut snap = Snapshot::clone(&self.snapshot());
            if !snap.by_host.contains_key(host) {
                match self.build(&record, revoked, &snap) {
                    Ok(ws) => {
                        let settings = ws.lifecycle;
                        snap.insert(Arc::new(ws));
                        self.install(snap)?;
                        log_loaded(&name, &settings, "workspace loaded");
                    }
                    Err(e) => {
                        tracing::error!(workspace = %name, error = %e, "cannot load workspace")
                    }
                }
            }
        }
        let found = self.snapshot().by_host.get(host).cloned();
        if found.is_none() {
            self.unknown().remember(host, Instant::now());
        }
        Ok(found)
    }

    fn build(
        &self,
        record: &WorkspaceRecord,
        revoked: Revoked,
        snap: &Snapshot,
    ) -> Result<Workspace, ServiceError> {
        build_workspace(record, revoked, snap.by_name.get(&record.name), &self.roots)
    }

    /// The workspace named `name` as of the current snapshot (CA rotation: a connection kept
    /// alive across a change of CA is served, and signed for, by the workspace as it is now).
    pub(crate) fn current(&self, name: &str) -> Option<Arc<Workspace>> {
        self.snapshot().by_name.get(name).cloned()
    }

    /// Whether the sensor `sensor_id` of workspace `workspace` is revoked, as of the current
    /// snapshot (memory only: checked on every request).
    pub(crate) fn is_revoked(&self, workspace: &str, sensor_id: &str) -> bool {
        self.snapshot()
            .by_name
            .get(workspace)
            .is_some_and(|w| w.revoked.contains(sensor_id))
    }

    /// Reloads every workspace from the store (at start, and when the change log went
    /// backwards), and moves the change-log cursor to the store's newest version read before.
    pub async fn refresh<S: Store>(&self, store: &S) -> Result<(), ServiceError> {
        let _one_writer = self.writing.lock().await;
        self.rebuild(store).await
    }

    async fn rebuild<S: Store>(&self, store: &S) -> Result<(), ServiceError> {
        // The version first: a change committed while the workspaces are read is applied again
        // by the next poll (applying is idempotent), never missed.
        let version = store.change_version().await?;
        let records = store.workspaces().await?;
        let old = self.snapshot();
        let mut snap = Snapshot::default();
        for record in &records {
            let revoked = revoked_of(store, &record.name).await?;
            // A workspace that cannot be loaded must not take the others down with it.
            match build_workspace(record, revoked, old.by_name.get(&record.name), &self.roots) {
                Ok(ws) => snap.insert(Arc::new(ws)),
                Err(e) => {
                    tracing::error!(workspace = %record.name, error = %e, "cannot load workspace; skipping it")
                }
            }
        }
        tracing::info!(workspaces = snap.by_name.len(), "workspaces loaded");
        self.install(snap)?;
        self.cursor
            .store(version, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// One poll of the change log: reads what changed since the last poll and drops or reloads
    /// exactly those workspaces. On a store error nothing past the last entry fully applied is
    /// skipped: the next poll reads it again.
    pub async fn poll<S: Store>(&self, store: &S) -> Result<(), ServiceError> {
        let _one_writer = self.writing.lock().await;
        let latest = store.change_version().await?;
        loop {
            let cursor = self.cursor.load(std::sync::atomic::Ordering::SeqCst);
            match plan(cursor, latest) {
                Poll::UpToDate => return Ok(()),
                Poll::Resync => {
                    tracing::warn!(
                        cursor,
                        latest,
                        "the store's change log is behind this replica's (restored from a backup?): reloading every workspace"
                    );
                    return self.rebuild(store).await;
                }
                Poll::Read => {}
            }
            let changes = store.changes_since(cursor, CHANGES_PAGE).await?;
            let Some(last) = changes.last().map(|c| c.version) else {
                return Ok(());
            };
            self.apply(store, &changes).await?;
            self.cursor.store(last, std::sync::atomic::Ordering::SeqCst);
            if changes.len() < CHANGES_PAGE {
                return Ok(());
            }
        }
    }

    async fn apply<S: Store>(&self, store: &S, changes: &[Change]) -> Result<(), ServiceError> {
        let mut snap = Snapshot::clone(&self.snapshot());
        let todo = actions(changes, &|name| snap.by_name.contains_key(name));
        if todo.is_empty() {
            return Ok(());
        }
        // Logged once installed: a line seen in the log means requests now get these settings.
        let mut installed: Vec<(String, uplink_store::LifecycleSettings)> = Vec::new();
        for action in todo {
            match action {
                Action::KeyRotated(name) => tracing::warn!(
                    workspace = %name,
                    "the master key was rotated by another process: restart this replica with the new key file (--master-key-file) before it must load a workspace"
                ),
                Action::Drop(name) => {
                    snap.remove(&name);
                    tracing::info!(workspace = %name, "workspace deleted: no longer served");
                }
                Action::Reload(name) => {
                    self.unknown().forget_workspace(&name);
                    let loaded = match store.workspace(&name).await {
                        Ok(Some(record)) => match revoked_of(store, &name).await {
                            Ok(revoked) => Ok(Some((record, revoked))),
                            Err(e) => Err(e),
                        },
                        Ok(None) => Ok(None),
                        Err(e) => Err(e),
                    };
                    match loaded {
                        Ok(Some((record, revoked))) => match self.build(&record, revoked, &snap) {
                            Ok(ws) => {
                                installed.push((name.clone(), ws.lifecycle));
                                snap.insert(Arc::new(ws));
                            }
                            // Keep serving what was loaded before rather than nothing.
                            Err(e) => {
                                tracing::error!(workspace = %name, error = %e, "cannot load the changed workspace; keeping the previous one")
                            }
                        },
                        Ok(None) => {
                            snap.remove(&name);
                        }
                        Err(e) if transient(&e) => return Err(e.into()),
                        Err(e) => {
                            tracing::error!(workspace = %name, error = %e, "cannot read the changed workspace; keeping the previous one")
                        }
                    }
                }
            }
        }
        self.install(snap)?;
        for (name, settings) in &installed {
            log_loaded(name, settings, "workspace (re)loaded after a change");
        }
        Ok(())
    }

    /// Polls the change log every `every` until dropped (the service runs it beside its accept
    /// loop). Each poll is bounded by `every * 10` (at least 5 s); a failed one is retried at the
    /// next tick.
    pub async fn follow<S: Store>(&self, store: &S, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let bound = (every * 10).max(Duration::from_secs(5));
        let mut failing = false;
        loop {
            tick.tick().await;
            match tokio::time::timeout(bound, self.poll(store)).await {
                Ok(Ok(())) => {
                    if failing {
                        tracing::info!("following the store's change log again");
                    }
                    failing = false;
                }
                Ok(Err(e)) => {
                    if !failing {
                        tracing::warn!(error = %e, "cannot read the store's change log; workspaces may be stale until it can");
                    }
                    failing = true;
                }
                Err(_) => {
                    if !failing {
                        tracing::warn!(after = ?bound, "reading the store's change log timed out; retrying");
                    }
                    failing = true;
                }
            }
        }
    }
}

/// The line of a workspace (re)loaded, with the lifecycle settings now in force.
fn log_loaded(name: &str, s: &uplink_store::LifecycleSettings, what: &str) {
    tracing::info!(
        workspace = %name,
        client_cert_validity_secs = s.client_cert_validity_secs,
        enroll_limit = s.enroll_limit,
        failed_enroll_limit = s.failed_enroll_limit,
        enroll_window_secs = s.enroll_window_secs,
        "{what}"
    );
}

/// The revoked sensors of a workspace and their certificates' serials, read with the workspace
/// when it is (re)loaded (a revocation is a change-log entry: it reloads the workspace).
pub(crate) struct Revoked {
    sensors: HashSet<String>,
    serials: Vec<uplink_store::RevokedSerial>,
    /// Read with them: the workspace's lifecycle settings.
    lifecycle: uplink_store::LifecycleSettings,
    /// And its previous CAs (CA rotation).
    previous: Vec<uplink_store::PreviousCa>,
}

async fn revoked_of<S: Store>(store: &S, workspace: &str) -> Result<Revoked, StoreError> {
    let sensors = store
        .revocations(workspace)
        .await?
        .into_iter()
        .map(|r| r.sensor_id)
        .collect();
    let serials = store.revoked_serials(workspace).await?;
    let lifecycle = store.lifecycle_settings(workspace).await?;
    let previous = store.previous_cas(workspace).await?;
    Ok(Revoked {
        sensors,
        serials,
        lifecycle,
        previous,
    })
}

fn build_workspace(
    record: &WorkspaceRecord,
    revoked: Revoked,
    previous: Option<&Arc<Workspace>>,
    roots: &Arc<tls::SharedRoots>,
) -> Result<Workspace, ServiceError> {
    let tls_err =
        |e: uplink_pki::PkiError| ServiceError::Tls(format!("workspace {}: {e}", record.name));
    let ca =
        CertificateAuthority::from_pem(&record.ca_cert_pem, &record.ca_key_pem).map_err(tls_err)?;
    let ca_subject_raw = uplink_pki::cert_info(ca.cert_der())
        .map_err(tls_err)?
        .subject_raw;
    let rotation = crate::rotation::Trust::load(&ca, &revoked.previous).map_err(tls_err)?;
    // Keep the server certificate already issued for this CA and trust set; issue one
    // otherwise.
    let (server_chain, server_key_pem) = match previous
        .filter(|p| p.ca.sha256() == record.ca_sha256 && p.rotation.digest == rotation.digest)
    {
        Some(p) => (p.server_chain.clone(), p.server_key_pem.clone()),
        None => {
            let hosts = vec![
                names::sensor_host(&record.name, &record.domain),
                names::console_host(&record.name, &record.domain),
            ];
            let issued = ca.issue_server(&hosts).map_err(tls_err)?;
            let mut chain = vec![issued.cert_der, ca.cert_der().clone()];
            // During a rotation: the new CA signed by each previous one, for sensors that
            // trust only those yet.
            chain.extend(rotation.cross.iter().cloned());
            (chain, issued.key_pem)
        }
    };
    let verifier = tls::WorkspaceVerifier::for_workspace(roots.clone(), ca.cert_der())?;
    let server_config = tls::server_config(server_chain.clone(), &server_key_pem, Some(verifier))?;
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
        revoked: revoked.sensors,
        revoked_serials: revoked.serials,
        crl: Default::default(),
        lifecycle: revoked.lifecycle,
        limited: Default::default(),
        server_chain,
        server_key_pem,
        rotation,
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
    fn a_poll_reads_resyncs_or_does_nothing() {
        // (cursor, store's newest version, what to do)
        for (cursor, latest, want) in [
            (0, 0, Poll::UpToDate),
            (7, 7, Poll::UpToDate),
            (0, 1, Poll::Read),
            (7, 9, Poll::Read),
            // Restored from a backup, or another database: the log went backwards.
            (9, 7, Poll::Resync),
            (9, 0, Poll::Resync),
        ] {
            assert_eq!(plan(cursor, latest), want, "{cursor} {latest}");
        }
    }

    #[test]
    fn changes_reload_or_drop_exactly_the_workspaces_named() {
        use ChangeKind::*;
        let ch = |v: u64, ws: &str, kind: ChangeKind| Change {
            version: v,
            workspace: ws.into(),
            kind,
        };
        let reload = |n: &str| Action::Reload(n.into());
        let drop = |n: &str| Action::Drop(n.into());
        // Cached: a, b, c.
        let cached = |n: &str| ["a", "b", "c"].contains(&n);
        let cases: Vec<(&str, Vec<Change>, Vec<Action>)> = vec![
            ("nothing", vec![], vec![]),
            (
                "created elsewhere: load it",
                vec![ch(1, "new", Created)],
                vec![reload("new")],
            ),
            (
                "settings of a cached one",
                vec![ch(1, "a", Settings)],
                vec![reload("a")],
            ),
            ("re-keyed", vec![ch(1, "b", Rekeyed)], vec![reload("b")]),
            (
                "revocation, policy",
                vec![ch(1, "a", Revoked), ch(2, "c", Policy)],
                vec![reload("a"), reload("c")],
            ),
            ("deleted", vec![ch(1, "a", Deleted)], vec![drop("a")]),
            (
                "not cached: read when asked for",
                vec![ch(1, "x", Settings), ch(2, "y", Deleted)],
                vec![],
            ),
            (
                "several changes, one reload",
                vec![
                    ch(1, "a", Settings),
                    ch(2, "a", Rekeyed),
                    ch(3, "a", Settings),
                ],
                vec![reload("a")],
            ),
            (
                "created then changed before the poll: load it",
                vec![ch(1, "new", Created), ch(2, "new", Settings)],
                vec![reload("new")],
            ),
            (
                "created then deleted before the poll",
                vec![ch(1, "new", Created), ch(2, "new", Deleted)],
                vec![],
            ),
            (
                "changed then deleted",
                vec![ch(1, "a", Settings), ch(2, "a", Deleted)],
                vec![drop("a")],
            ),
            (
                "deleted then created again",
                vec![ch(1, "a", Deleted), ch(2, "a", Created)],
                vec![reload("a")],
            ),
            (
                "a newer build's kind: reload",
                vec![ch(1, "b", Other("renamed".into()))],
                vec![reload("b")],
            ),
            (
                "a rotation alone reloads nothing",
                vec![ch(1, "a", MasterKeyRotated), ch(2, "b", MasterKeyRotated)],
                vec![
                    Action::KeyRotated("a".into()),
                    Action::KeyRotated("b".into()),
                ],
            ),
            (
                "a rotation beside a change",
                vec![ch(1, "a", MasterKeyRotated), ch(2, "a", Settings)],
                vec![reload("a")],
            ),
            (
                "in name order",
                vec![
                    ch(1, "c", Settings),
                    ch(2, "new", Created),
                    ch(3, "a", Deleted),
                ],
                vec![drop("a"), reload("c"), reload("new")],
            ),
        ];
        for (what, changes, want) in cases {
            assert_eq!(actions(&changes, &cached), want, "{what}");
        }
    }

    #[test]
    fn created_workspaces_are_forgotten_as_unknown() {
        let t0 = Instant::now();
        let mut u = Unknown::default();
        u.remember("newsensorapi.uplink.localhost", t0);
        u.remember("othersensorapi.uplink.localhost", t0);
        u.forget_workspace("new");
        assert!(!u.remembered("newsensorapi.uplink.localhost", t0));
        assert!(u.remembered("othersensorapi.uplink.localhost", t0));
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
