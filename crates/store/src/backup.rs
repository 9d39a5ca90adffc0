//! Backups of any store, in uplink's own format, through the [`Store`] trait: the same file
//! backs up SQLite and PostgreSQL and restores into either.
//!
//! The format is NDJSON, one object per line, each with one key saying what it is:
//!
//! ```text
//! {"uplink_backup":2,"created_at":MS,"master_key_check":"sealed:v1:…"}
//! {"workspace":{"name":…,"domain":…,"public_port":…,"ca_cert_pem":…,"ca_key_sealed":"sealed:v1:…",
//!               "ca_sha256":…,"access_key_sha256":…,"access_key_sealed":"sealed:v1:…"|null,"created_at":MS,
//!               "settings":{"retention_days":N,"disconnected_after_secs":N},
//!               "lifecycle":{"client_cert_validity_secs":N,"enroll_limit":N,"failed_enroll_limit":N,"enroll_window_secs":N},
//!               "webhooks":[{"url":…,"secret_sealed":"sealed:v1:…"}] (webhooks and syslog targets),
//!               "policy":{"version":N,"set_at":MS,"doc":…|null,"password_sealed":"sealed:v1:…"|null}
//!                 (its current policy version, when it ever had one; doc null: cleared),
//!               "previous_cas":[{"sha256":…,"cert_pem":…,"key_sealed":"sealed:v1:…","replaced_at":MS}]
//!                 (a CA rotation in progress: the CAs not retired yet),
//!               "retired_cas":[{"sha256":…,"retired_at":MS}] (the CAs its rotations retired)}}
//! {"sensor":{"sensor_id":…,"workspace":…,"name":…,"cert_sha256":…,"key_sha256":…|null,"enrolled_at":MS,"last_seen":MS|null,
//!            "pruned_through":N (only for a sensor retention pruned: its watermark, restored after its events),
//!            "pruned_holes":[[LO,HI],…] (only when it has some: the never-stored seqs below it),
//!            "revocation":{"reason":…,"revoked_at":MS,"decommissioned":B,"uninstalled":B,"cert_sha256":…}
//!              (only for a revoked sensor),
//!            "certificates":[{"serial_hex":…,"cert_sha256":…},…] (those recorded for the CRL),
//!            "issuer_ca_sha256":… (the CA recorded as issuer of its current certificate)}}
//! {"event":{"sensor_id":…,"seq":N,"kind":…,"received_at":MS,"body":"<the event line>"}}
//! {"end":{"workspaces":N,"sensors":N,"events":N}}
//! ```
//!
//! Secrets stay sealed under the master key of the store backed up (the header's check value
//! lets a restore refuse a wrong key before writing anything); a file without its `end` line is
//! incomplete and refused. A workspace's sensors come before their events, each sensor's
//! events in sequence order. Restoring is idempotent (what is there is skipped, events are not
//! stored twice), so an interrupted restore is run again.
//!
//! Versions: format 2 added `lifecycle`, `policy`, `previous_cas`, `revocation`,
//! `certificates` and `issuer_ca_sha256` (a format 1 file, which has neither,
//! still restores: its sensors are restored unrevoked, as they were backed up by a build that
//! did not carry revocations). A build that reads only format 1 refuses a format 2 file ("upgrade
//! uplink") rather than restore its revoked sensors as trusted ones. Fields a format adds are
//! optional within it, so a line without them still reads: `retired_cas` was added within
//! format 2 (a build that predates it ignores the list, as it ignored retirements).

use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};

use crate::master::{access_key_context, ca_key_context};
use crate::*;

/// The format this build writes (it reads [`OLDEST_FORMAT`] to this one).
pub const BACKUP_FORMAT: u32 = 2;

/// The oldest format this build restores.
pub const OLDEST_FORMAT: u32 = 1;

/// A certificate issued to a sensor, as recorded for the CRL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedCertificate {
    pub sensor_id: String,
    /// Its serial number, lowercase hex.
    pub serial_hex: String,
    pub cert_sha256: String,
}

/// What a backup or a restore counted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub workspaces: u64,
    pub sensors: u64,
    pub events: u64,
    /// What a restore left out on purpose, for the operator (a CA the target retired since the
    /// backup: [`retired_ca_warning`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Why a copy leaves out a previous CA of a rotation the target store has finished since: it
/// is not trusted again, and sensors that only hold a certificate from it must enroll again.
pub fn retired_ca_warning(workspace: &str, ca_sha256: &str) -> String {
    format!(
        "workspace {workspace}: previous CA {ca_sha256} was not restored: this store retired it (`uplink workspace rotate-ca --retire-old`) after the backup was taken, so it stays untrusted; sensors whose only certificate is from it must enroll again (`uplink sensor enroll`), as after the rotation"
    )
}

#[derive(Serialize, Deserialize)]
struct Header {
    uplink_backup: u32,
    created_at: i64,
    master_key_check: String,
}

#[derive(Serialize, Deserialize)]
struct WorkspaceLine {
    name: String,
    domain: String,
    public_port: u16,
    ca_cert_pem: String,
    ca_key_sealed: String,
    ca_sha256: String,
    access_key_sha256: String,
    access_key_sealed: Option<String>,
    created_at: i64,
    /// Absent in backups written before settings existed (the defaults then apply).
    #[serde(default)]
    settings: Option<WorkspaceSettings>,
    /// The workspace's webhooks and syslog targets (issue #23), their secrets sealed; absent in
    /// backups written before they were backed up.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    webhooks: Vec<WebhookLine>,
    /// Enrollment limits and certificate validity (format 2; absent before: left as they are).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lifecycle: Option<LifecycleSettings>,
    /// The current policy version (format 2), its number kept; absent when none was ever set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    policy: Option<PolicyLine>,
    /// The previous CAs of a rotation in progress (format 2), their keys sealed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    previous_cas: Vec<PreviousCaLine>,
    /// The CAs the workspace's rotations retired (format 2, later builds): a restore records
    /// them before any previous CA, so that no copy makes them trusted again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    retired_cas: Vec<RetiredCa>,
}

#[derive(Serialize, Deserialize)]
struct PreviousCaLine {
    sha256: String,
    cert_pem: String,
    key_sealed: String,
    replaced_at: i64,
}

#[derive(Serialize, Deserialize)]
struct PolicyLine {
    version: u64,
    set_at: i64,
    /// The policy without its password, as the store keeps it (`None`: this version cleared it).
    doc: Option<String>,
    password_sealed: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct WebhookLine {
    url: String,
    secret_sealed: String,
}

/// A sensor's never-stored seqs below its watermark, as inclusive ranges.
type Holes = Vec<(u64, u64)>;

#[derive(Serialize, Deserialize)]
struct SensorLine {
    sensor_id: String,
    workspace: String,
    name: String,
    cert_sha256: String,
    key_sha256: Option<String>,
    enrolled_at: i64,
    last_seen: Option<i64>,
    /// The sensor's retention watermark (`retention.rs`); absent when never pruned, and in
    /// backups written before retention existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pruned_through: Option<u64>,
    /// The seqs below the watermark that were never stored (docs/storage.md), restored with it;
    /// absent when none, and in backups written before holes were recorded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pruned_holes: Holes,
    /// The sensor's revocation (format 2), restored with it: a revoked sensor stays refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    revocation: Option<RevocationLine>,
    /// The certificates issued to it (format 2), so that the CRL lists them once it is revoked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    certificates: Vec<CertificateLine>,
    /// The CA recorded as the issuer of its current certificate (format 2): what tells, during
    /// a CA rotation, whether it moved to the new CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    issuer_ca_sha256: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct CertificateLine {
    serial_hex: String,
    cert_sha256: String,
}

#[derive(Serialize, Deserialize)]
struct RevocationLine {
    reason: String,
    revoked_at: i64,
    decommissioned: bool,
    uninstalled: bool,
    cert_sha256: String,
}

#[derive(Serialize, Deserialize)]
struct EventLine {
    sensor_id: String,
    seq: u64,
    kind: String,
    received_at: i64,
    body: String,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Line {
    Workspace(WorkspaceLine),
    Sensor(SensorLine),
    Event(EventLine),
    End(EndLine),
}

#[derive(Serialize, Deserialize)]
struct EndLine {
    workspaces: u64,
    sensors: u64,
    events: u64,
}

fn io_err(what: &str) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: what.to_owned(),
        source,
    }
}

fn bad(line: u64, why: impl std::fmt::Display) -> StoreError {
    StoreError::Settings(format!(
        "the backup is not usable at line {line}: {why}; it was not written by `uplink store backup`, or it is damaged"
    ))
}

/// Writes every workspace, sensor and event of `store` to `out`; `key` is the store's master
/// key (secrets are written sealed under it). `progress` is called after each sensor.
pub async fn backup<S: Store>(
    store: &S,
    key: &MasterKey,
    out: &mut impl Write,
    mut progress: impl FnMut(&str, u64),
) -> Result<Counts, StoreError> {
    let write = |out: &mut dyn Write, v: &dyn erased::Json| -> Result<(), StoreError> {
        out.write_all(v.json().as_bytes())
            .and_then(|_| out.write_all(b"\n"))
            .map_err(io_err("<backup file>"))
    };
    let header = Header {
        uplink_backup: BACKUP_FORMAT,
        created_at: now_ms(),
        master_key_check: key.check_value(),
    };
    write(out, &header)?;
    let mut counts = Counts::default();
    for ws in store.workspaces().await? {
        let settings = store.workspace_settings(&ws.name).await?;
        let lifecycle = store.lifecycle_settings(&ws.name).await?;
        let policy = match current_policy(store, &ws.name).await? {
            None => None,
            Some((version, set_at, policy)) => {
                let (doc, password_sealed) = match policy {
                    Some(p) => {
                        let (d, s) = crate::policy::encode(key, &ws.name, &p)?;
                        (Some(d), s)
                    }
                    None => (None, None),
                };
                Some(PolicyLine {
                    version,
                    set_at,
                    doc,
                    password_sealed,
                })
            }
        };
        let previous_cas = store
            .previous_cas(&ws.name)
            .await?
            .into_iter()
            .map(|p| PreviousCaLine {
                key_sealed: key.seal(
                    &p.key_pem,
                    &crate::lifecycle::previous_ca_key_context(&ws.name, &p.sha256),
                ),
                sha256: p.sha256,
                cert_pem: p.cert_pem,
                replaced_at: p.replaced_at,
            })
            .collect();
        // Read after the previous CAs: one retired in between is in both lists, and the restore
        // records it retired first.
        let retired_cas = store.retired_cas(&ws.name).await?;
        let issuers: BTreeMap<String, String> = store
            .sensor_cert_issuers(&ws.name)
            .await?
            .into_iter()
            .collect();
        let mut certificates: BTreeMap<String, Vec<CertificateLine>> = BTreeMap::new();
        for c in store.issued_certificates(&ws.name).await? {
            certificates
                .entry(c.sensor_id)
                .or_default()
                .push(CertificateLine {
                    serial_hex: c.serial_hex,
                    cert_sha256: c.cert_sha256,
                });
        }
        let webhooks = store
            .webhooks(&ws.name)
            .await?
            .into_iter()
            .map(|h| WebhookLine {
                secret_sealed: crate::webhooks::seal_secret(key, &ws.name, &h.url, &h.secret),
                url: h.url,
            })
            .collect();
        let line = Line::Workspace(WorkspaceLine {
            settings: Some(settings),
            lifecycle: Some(lifecycle),
            policy,
            previous_cas,
            retired_cas,
            webhooks,
            ca_key_sealed: key.seal(&ws.ca_key_pem, &ca_key_context(&ws.name)),
            access_key_sealed: ws
                .access_key
                .as_ref()
                .map(|k| key.seal(k, &access_key_context(&ws.name))),
            name: ws.name.clone(),
            domain: ws.domain,
            public_port: ws.public_port,
            ca_cert_pem: ws.ca_cert_pem,
            ca_sha256: ws.ca_sha256,
            access_key_sha256: ws.access_key_sha256,
            created_at: ws.created_at,
        });
        write(out, &line)?;
        counts.workspaces += 1;
        let stats = store.stats(&ws.name).await?;
        // Revocations after the sensor list: a sensor listed and revoked while the backup runs
        // is in the backup revoked (read before the list, it was in it trusted).
        let mut revoked: BTreeMap<String, Revocation> = store
            .revocations(&ws.name)
            .await?
            .into_iter()
            .map(|r| (r.sensor_id.clone(), r))
            .collect();
        let marks = store.watermarks(&ws.name).await?;
        let mut holes = store.pruned_holes(&ws.name).await?;
        for s in stats.sensors {
            let sensor_id = s.sensor_id.clone();
            write(
                out,
                &Line::Sensor(SensorLine {
                    pruned_through: marks.get(&s.sensor_id).copied(),
                    pruned_holes: holes.remove(&s.sensor_id).unwrap_or_default(),
                    certificates: certificates.remove(&s.sensor_id).unwrap_or_default(),
                    issuer_ca_sha256: issuers.get(&s.cert_sha256).cloned(),
                    revocation: revoked.remove(&s.sensor_id).map(|r| RevocationLine {
                        reason: r.reason,
                        revoked_at: r.revoked_at,
                        decommissioned: r.decommissioned,
                        uninstalled: r.uninstalled,
                        cert_sha256: r.cert_sha256,
                    }),
                    sensor_id: s.sensor_id,
                    workspace: s.workspace,
                    name: s.name,
                    cert_sha256: s.cert_sha256,
                    key_sha256: s.key_sha256,
                    enrolled_at: s.enrolled_at,
                    last_seen: s.last_seen,
                }),
            )?;
            counts.sensors += 1;
            let filter = ExportFilter {
                kind: None,
                sensor_id: Some(sensor_id.clone()),
            };
            let mut failed = None;
            let n = export_each(store, &ws.name, filter, |e| {
                let line = Line::Event(EventLine {
                    sensor_id: e.sensor_id,
                    seq: e.seq,
                    kind: e.kind,
                    received_at: e.received_at,
                    body: e.body,
                });
                write(out, &line).map_err(|e| {
                    let io = std::io::Error::other(e.to_string());
                    failed = Some(e);
                    io
                })
            })
            .await
            .map_err(|e| failed.take().unwrap_or(e))?;
            counts.events += n;
            progress(&sensor_id, n);
        }
    }
    write(
        out,
        &Line::End(EndLine {
            workspaces: counts.workspaces,
            sensors: counts.sensors,
            events: counts.events,
        }),
    )?;
    out.flush().map_err(io_err("<backup file>"))?;
    Ok(counts)
}

/// A backup's first line, of a format this build reads.
fn read_header(first: &str) -> Result<Header, StoreError> {
    let header: Header = serde_json::from_str(first).map_err(|e| bad(1, e))?;
    if !(OLDEST_FORMAT..=BACKUP_FORMAT).contains(&header.uplink_backup) {
        return Err(bad(
            1,
            format!(
                "format {} (this build reads {OLDEST_FORMAT} to {BACKUP_FORMAT}): upgrade uplink",
                header.uplink_backup
            ),
        ));
    }
    Ok(header)
}

/// Checks a backup's first line: its format, and that `key` opens its secrets.
pub fn check_header(input: impl BufRead, key: &MasterKey) -> Result<(), StoreError> {
    let first = input
        .lines()
        .next()
        .ok_or_else(|| bad(1, "the file is empty"))?
        .map_err(io_err("<backup file>"))?;
    let header = read_header(&first)?;
    key.verify_check(&header.master_key_check)
}

/// Restores a backup into `store`; `key` must be the master key the backup's secrets were
/// sealed with (checked before anything is written). Events go in batches of `batch`.
pub async fn restore<S: Store>(
    store: &S,
    key: &MasterKey,
    input: impl BufRead,
    batch: usize,
) -> Result<Counts, StoreError> {
    let mut lines = input.lines();
    let first = lines
        .next()
        .ok_or_else(|| bad(1, "the file is empty"))?
        .map_err(io_err("<backup file>"))?;
    let header = read_header(&first)?;
    key.verify_check(&header.master_key_check)?;
    let mut counts = Counts::default();
    let mut pending: Vec<StoredEvent> = Vec::new();
    let flush = |pending: &mut Vec<StoredEvent>| {
        let events = std::mem::take(pending);
        async move {
            if let Some(first) = events.first() {
                let sensor = first.sensor_id.clone();
                store.import_events(&sensor, events).await?;
            }
            Ok::<(), StoreError>(())
        }
    };
    let mut n = 1u64;
    let mut ended = None;
    // The sensor whose events are being restored: its watermark and holes, set after them.
    let mut mark: Option<(String, Option<u64>, Holes)> = None;
    for line in lines {
        n += 1;
        let line = line.map_err(io_err("<backup file>"))?;
        if ended.is_some() {
            return Err(bad(n, "lines after the end"));
        }
        let parsed: Line = serde_json::from_str(&line).map_err(|e| bad(n, e))?;
        if !matches!(parsed, Line::Event(_)) {
            flush(&mut pending).await?;
            // The previous sensor's events are in: now its watermark (raised before them, it
            // would turn events it kept below it into duplicates).
            // Both in one transaction: a late seq in a hole is never "duplicate" in between.
            if let Some((sensor, through, holes)) = mark.take() {
                store.import_watermark(&sensor, through, holes).await?;
            }
        }
        match parsed {
            Line::Workspace(w) => {
                let settings = w.settings;
                let ws = WorkspaceRecord {
                    ca_key_pem: key.open(&w.ca_key_sealed, &ca_key_context(&w.name))?,
                    access_key: w
                        .access_key_sealed
                        .as_deref()
                        .map(|k| key.open(k, &access_key_context(&w.name)))
                        .transpose()?,
                    name: w.name,
                    domain: w.domain,
                    public_port: w.public_port,
                    ca_cert_pem: w.ca_cert_pem,
                    ca_sha256: w.ca_sha256,
                    access_key_sha256: w.access_key_sha256,
                    created_at: w.created_at,
                };
                match store.workspace(&ws.name).await? {
                    Some(there) if there.ca_sha256 == ws.ca_sha256 => {}
                    Some(_) => {
                        return Err(StoreError::WorkspaceExists(ws.name));
                    }
                    None => store.create_workspace(ws.clone()).await?,
                }
                if let Some(s) = settings {
                    let change = SettingsChange {
                        retention_days: Some(s.retention_days),
                        disconnected_after_secs: Some(s.disconnected_after_secs),
                    };
                    store.set_workspace_settings(&ws.name, change).await?;
                }
                if let Some(l) = w.lifecycle {
                    store
                        .set_lifecycle_settings(&ws.name, lifecycle_change(l))
                        .await?;
                }
                for r in w.retired_cas {
                    store.import_retired_ca(&ws.name, r).await?;
                }
                let retired = store.retired_cas(&ws.name).await?;
                for p in w.previous_cas {
                    if retired.iter().any(|r| r.sha256 == p.sha256) {
                        counts
                            .warnings
                            .push(retired_ca_warning(&ws.name, &p.sha256));
                        continue;
                    }
                    let ca = PreviousCa {
                        key_pem: key.open(
                            &p.key_sealed,
                            &crate::lifecycle::previous_ca_key_context(&ws.name, &p.sha256),
                        )?,
                        sha256: p.sha256,
                        cert_pem: p.cert_pem,
                        replaced_at: p.replaced_at,
                    };
                    store.import_previous_ca(&ws.name, ca).await?;
                }
                if let Some(p) = w.policy {
                    let policy = crate::policy::decode(
                        key,
                        &ws.name,
                        p.version,
                        p.doc.as_deref(),
                        p.password_sealed.as_deref(),
                    )?;
                    store
                        .import_policy(&ws.name, p.version, p.set_at, policy)
                        .await?;
                }
                // Webhooks, unless the workspace has its own already (a re-run, or a workspace
                // that was there): what is there is kept.
                if !w.webhooks.is_empty() && store.webhooks(&ws.name).await?.is_empty() {
                    let hooks = w
                        .webhooks
                        .iter()
                        .map(|h| {
                            Ok(Webhook {
                                secret: crate::webhooks::open_secret(
                                    key,
                                    &ws.name,
                                    &h.url,
                                    &h.secret_sealed,
                                )?,
                                url: h.url.clone(),
                            })
                        })
                        .collect::<Result<Vec<_>, StoreError>>()?;
                    store.set_webhooks(&ws.name, hooks).await?;
                }
                counts.workspaces += 1;
            }
            Line::Sensor(s) => {
                mark = (s.pruned_through.is_some() || !s.pruned_holes.is_empty())
                    .then(|| (s.sensor_id.clone(), s.pruned_through, s.pruned_holes));
                let sensor_id = s.sensor_id.clone();
                let issuer = s.issuer_ca_sha256.map(|ca| (s.cert_sha256.clone(), ca));
                let revocation = s.revocation.map(|r| Revocation {
                    workspace: s.workspace.clone(),
                    sensor_id: s.sensor_id.clone(),
                    reason: r.reason,
                    revoked_at: r.revoked_at,
                    decommissioned: r.decommissioned,
                    uninstalled: r.uninstalled,
                    cert_sha256: r.cert_sha256,
                });
                store
                    .import_sensor(SensorRecord {
                        sensor_id: s.sensor_id,
                        workspace: s.workspace,
                        name: s.name,
                        cert_sha256: s.cert_sha256,
                        key_sha256: s.key_sha256,
                        enrolled_at: s.enrolled_at,
                        last_seen: s.last_seen,
                    })
                    .await?;
                // Its revocation at once (a re-run revokes it again, harmlessly): a failure
                // in what follows must not leave a revoked sensor trusted. Then its
                // certificates (recording one again changes nothing).
                if let Some(r) = revocation {
                    store.import_revocation(r).await?;
                }
                if let Some((cert, ca)) = issuer {
                    store.record_issuer(&cert, &ca).await?;
                }
                for c in s.certificates {
                    store
                        .record_certificate(&sensor_id, &c.serial_hex, &c.cert_sha256)
                        .await?;
                }
                counts.sensors += 1;
            }
            Line::Event(e) => {
                if pending.first().is_some_and(|p| p.sensor_id != e.sensor_id)
                    || pending.len() >= batch.max(1)
                {
                    flush(&mut pending).await?;
                }
                pending.push(StoredEvent {
                    sensor_id: e.sensor_id,
                    seq: e.seq,
                    kind: e.kind,
                    received_at: e.received_at,
                    body: e.body,
                });
                counts.events += 1;
            }
            Line::End(end) => ended = Some(end),
        }
    }
    let Some(end) = ended else {
        return Err(bad(
            n,
            "the file ends without its `end` line: it is incomplete",
        ));
    };
    if (end.workspaces, end.sensors, end.events)
        != (counts.workspaces, counts.sensors, counts.events)
    {
        return Err(bad(
            n,
            format!(
                "it says {} workspaces, {} sensors, {} events but holds {}, {}, {}",
                end.workspaces,
                end.sensors,
                end.events,
                counts.workspaces,
                counts.sensors,
                counts.events
            ),
        ));
    }
    store.flush().await?;
    Ok(counts)
}

/// A policy version as a copy brings it: its number, time and policy (`None`: cleared).
pub type CopiedPolicy = (u64, i64, Option<uplink_policy::Policy>);

/// A workspace's current policy version for a copy; `None` when it never had one.
pub async fn current_policy<S: Store>(
    store: &S,
    workspace: &str,
) -> Result<Option<CopiedPolicy>, StoreError> {
    let (version, policy) = store.current_policy(workspace).await?;
    if version == 0 {
        return Ok(None);
    }
    let set_at = store
        .policy_versions(workspace)
        .await?
        .into_iter()
        .find(|v| v.version == version)
        .map_or_else(now_ms, |v| v.set_at);
    Ok(Some((version, set_at, policy)))
}

/// Lifecycle settings as a change that sets them all (what a copy applies).
pub fn lifecycle_change(l: LifecycleSettings) -> LifecycleChange {
    LifecycleChange {
        client_cert_validity_secs: Some(l.client_cert_validity_secs),
        enroll_limit: Some(l.enroll_limit),
        failed_enroll_limit: Some(l.failed_enroll_limit),
        enroll_window_secs: Some(l.enroll_window_secs),
    }
}

/// The part of the hole `lo..=hi` a copy records ([`Store::import_watermark`]): above the
/// watermark `old` the target had and at or below its new one `new` (-1: none). Pure.
pub fn between_watermarks(lo: u64, hi: u64, old: i64, new: i64) -> Option<(u64, u64)> {
    if new < 0 {
        return None;
    }
    let lo = lo.max((old + 1).max(0) as u64);
    let hi = hi.min(new as u64);
    (lo <= hi).then_some((lo, hi))
}

/// The parts of `lo..=hi` that no range of `taken` (sorted by start; ranges may overlap) covers
/// (a copy's holes less what the target stored or recorded already). Pure.
pub fn uncovered(lo: u64, hi: u64, taken: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    // The next seq not yet accounted for; `None` once past `hi` (or past u64::MAX).
    let mut next = Some(lo);
    for &(a, b) in taken {
        let Some(from) = next else { break };
        if b < from {
            continue;
        }
        if a > hi {
            break;
        }
        if a > from {
            out.push((from, a - 1));
        }
        next = b.checked_add(1).filter(|n| *n <= hi);
    }
    if let Some(from) = next {
        if from <= hi {
            out.push((from, hi));
        }
    }
    out
}

/// Serialising the line types through one closure.
mod erased {
    pub trait Json {
        fn json(&self) -> String;
    }
    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> String {
            serde_json::to_string(self).expect("backup lines serialise")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seq ranges, inclusive, as copies give them.
    type SeqRanges = &'static [(u64, u64)];

    #[test]
    fn uncovered_table() {
        let cases: &[(u64, u64, SeqRanges, SeqRanges)] = &[
            (1, 10, &[], &[(1, 10)]),
            (1, 10, &[(1, 10)], &[]),
            (1, 10, &[(0, 20)], &[]),
            (1, 10, &[(5, 5)], &[(1, 4), (6, 10)]),
            (1, 10, &[(1, 1), (10, 10)], &[(2, 9)]),
            (1, 10, &[(2, 4), (3, 6), (8, 8)], &[(1, 1), (7, 7), (9, 10)]),
            (1, 10, &[(11, 20)], &[(1, 10)]),
            (5, 10, &[(0, 2)], &[(5, 10)]),
            (0, u64::MAX, &[(u64::MAX, u64::MAX)], &[(0, u64::MAX - 1)]),
            (7, 7, &[(7, 7)], &[]),
        ];
        for (lo, hi, taken, want) in cases {
            assert_eq!(
                uncovered(*lo, *hi, taken),
                *want,
                "{lo}..={hi} less {taken:?}"
            );
        }
    }

    #[test]
    fn holes_a_copy_brings_are_clipped_to_between_the_watermarks() {
        type Case = (u64, u64, i64, i64, Option<(u64, u64)>);
        let cases: &[Case] = &[
            (0, 9, -1, 20, Some((0, 9))),
            (0, 9, -1, -1, None),
            (0, 9, 4, 20, Some((5, 9))),
            (0, 9, 9, 20, None),
            (5, 30, -1, 20, Some((5, 20))),
            (5, 30, 10, 10, None),
            (21, 30, -1, 20, None),
            (7, 7, 6, 7, Some((7, 7))),
        ];
        for &(lo, hi, old, new, want) in cases {
            assert_eq!(
                between_watermarks(lo, hi, old, new),
                want,
                "{lo}..={hi} {old} {new}"
            );
        }
    }
}
