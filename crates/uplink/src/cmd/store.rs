//! `uplink store`: operations on the store as a whole.

use std::path::PathBuf;
use std::process::ExitCode;

use uplink_store::{MasterKeyFile, Store, StoreError};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Re-seal every secret of the store (workspace CA keys, access keys) under a new master key.
    ///
    /// Everything is re-sealed and the store switched to the new key in one transaction, so an
    /// interrupted run leaves the store whole under the old key; run it again. A run that finds
    /// the store already under the new key finishes what is left. FILE is created (0600) with a
    /// new key if it does not exist. With --data-dir and the default DIR/master.key, the new key
    /// then replaces DIR/master.key; otherwise point every service and command at FILE
    /// (--master-key-file or UPLINK_MASTER_KEY_FILE). Stop the services first, or restart them
    /// with the new key at once: a service holding the old key cannot read secrets sealed after.
    #[command(
        after_help = "Examples:\n  uplink store rotate-master-key --data-dir /var/lib/uplink-service --new-key-file new-master.key"
    )]
    RotateMasterKey(RotateArgs),
    /// Copy a SQLite data directory into PostgreSQL: workspaces (their secrets sealed again
    /// under the target's master key, their settings, lifecycle settings, current policy,
    /// previous CAs of a rotation, webhooks), sensors
    /// with their revocations, every event with its sequence number and time (docs/storage.md
    /// says what is not copied).
    ///
    /// Prints its progress; at the end compares, per workspace and per sensor, the events in
    /// both stores, and fails (exit 1) if any differ. Safe to stop and run again: what was
    /// copied is skipped or not stored twice. Stop the service on DIR first (events it stores
    /// during the copy may be missed; a re-run copies them).
    #[command(
        after_help = "Examples:\n  uplink store migrate --from /var/lib/uplink-service \\\n      --to 'postgres://uplink@/uplink?host=/run/postgresql' \\\n      --master-key-file /etc/uplink-service/master.key"
    )]
    Migrate(MigrateArgs),
    /// Write every workspace, sensor and event of the store to FILE (0600), in uplink's own
    /// format (NDJSON, docs in crates/store/src/backup.rs), readable while the service runs.
    ///
    /// Secrets stay sealed under the store's master key: keep that key with the backup (a
    /// restore needs it). Works the same for --data-dir and --database.
    #[command(
        after_help = "Examples:\n  uplink store backup --data-dir /var/lib/uplink-service --to uplink-backup.json"
    )]
    Backup(BackupArgs),
    /// Restore a backup written by `uplink store backup` into a store (SQLite or PostgreSQL),
    /// usually an empty one. Needs the master key of the store that was backed up
    /// (--master-key-file). Safe to interrupt and run again: nothing is stored twice.
    #[command(
        after_help = "Examples:\n  uplink store restore --data-dir /var/lib/uplink-new --from uplink-backup.json"
    )]
    Restore(RestoreArgs),
    /// Remove the events older than each workspace's retention (`uplink workspace set NAME
    /// --retention-days N`; 30 by default) now, as the service does periodically.
    ///
    /// Removes in bounded chunks (ingest goes on meanwhile); with PostgreSQL, whole day
    /// partitions are dropped once past every workspace's retention. With PostgreSQL only one
    /// process prunes at a time: if another is pruning, this one says so and exits 0. A sensor
    /// retrying an event that was removed is answered as for a duplicate: it is not stored again.
    #[command(
        after_help = "Examples:\n  uplink store prune --data-dir /var/lib/uplink-service --json"
    )]
    Prune(PruneArgs),
}

#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    #[command(flatten)]
    pub data: super::DataDir,
    /// Print JSON: {"workspaces": [{"workspace", "retention_days", "cutoff_ms", "events"}],
    /// "partitions_dropped": [...], "skipped": null or why, "total"}.
    #[arg(long)]
    pub json: bool,
    /// Events removed per transaction.
    #[arg(long, value_name = "N", default_value_t = uplink_store::retention::DEFAULT_CHUNK, hide = true)]
    pub chunk: usize,
}

#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub data: super::DataDir,
    /// The backup file to write (replaced whole when done).
    #[arg(long, value_name = "FILE")]
    pub to: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub data: super::DataDir,
    /// The backup file to read.
    #[arg(long, value_name = "FILE")]
    pub from: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// The SQLite data directory to copy.
    #[arg(long, value_name = "DIR")]
    pub from: PathBuf,
    /// The source's master key [default: DIR/master.key].
    #[arg(long, value_name = "FILE")]
    pub from_master_key_file: Option<PathBuf>,
    /// The PostgreSQL database to copy into (its schema is created if needed).
    #[arg(
        long,
        value_name = "URL",
        env = "UPLINK_DATABASE_URL",
        hide_env_values = true
    )]
    pub to: String,
    /// The target's master key (created if it does not exist and the database has none).
    #[arg(long, value_name = "FILE", env = "UPLINK_MASTER_KEY_FILE")]
    pub master_key_file: PathBuf,
    /// Events copied per transaction.
    #[arg(long, value_name = "N", default_value_t = 10_000, hide = true)]
    pub batch: usize,
}

#[derive(Debug, clap::Args)]
pub struct RotateArgs {
    #[command(flatten)]
    pub data: super::DataDir,
    /// The new master key (created if it does not exist).
    #[arg(long, value_name = "FILE")]
    pub new_key_file: PathBuf,
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    let rt = super::backend::runtime()?;
    match command {
        Command::RotateMasterKey(a) => rt.block_on(rotate(a)),
        Command::Migrate(a) => rt.block_on(migrate(a)),
        Command::Backup(a) => rt.block_on(backup(a)),
        Command::Restore(a) => rt.block_on(restore(a)),
        Command::Prune(a) => rt.block_on(prune(a)),
    }
}

async fn prune(a: PruneArgs) -> anyhow::Result<ExitCode> {
    let store = a.data.open(false).await?;
    let options = uplink_store::PruneOptions {
        chunk: a.chunk.max(1),
        ..uplink_store::PruneOptions::now()
    };
    let report = store.prune(options).await?;
    if a.json {
        let mut v = serde_json::to_value(&report)?;
        v["total"] = report.total().into();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else if let Some(why) = &report.skipped {
        println!("nothing done: {why}");
    } else {
        for w in &report.workspaces {
            println!(
                "{:<30} {} events removed (older than {} days, before {})",
                w.workspace,
                w.events,
                w.retention_days,
                uplink_store::rfc3339_ms(w.cutoff_ms)
            );
        }
        for p in &report.partitions_dropped {
            println!("dropped partition {p}");
        }
        println!("{} events removed", report.total());
    }
    Ok(ExitCode::SUCCESS)
}

async fn backup(a: BackupArgs) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let store = a.data.open(false).await?;
    let key = a
        .data
        .key_file()
        .ok_or_else(|| anyhow::anyhow!("give --master-key-file FILE"))?
        .resolve(true)?;
    let tmp = a.to.with_file_name(format!(
        ".{}.tmp",
        a.to.file_name().unwrap_or_default().to_string_lossy()
    ));
    let file = {
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create(true).truncate(true);
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
        o.open(&tmp)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", tmp.display()))?
    };
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let counts = uplink_store::backup::backup(&store, &key, &mut out, |sensor, n| {
        let mut o = std::io::stdout().lock();
        let _ = writeln!(o, "  sensor {sensor}: {n} events");
        let _ = o.flush();
    })
    .await;
    let counts = match counts {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e.into());
        }
    };
    let file = out.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
    file.sync_all()?;
    std::fs::rename(&tmp, &a.to)?;
    println!(
        "backed up {}, {}, {} to {} (its secrets are sealed under {}: keep that key with it)",
        super::count(counts.workspaces as u64, "workspace", "workspaces"),
        super::count(counts.sensors as u64, "sensor", "sensors"),
        super::count(counts.events as u64, "event", "events"),
        a.to.display(),
        key.path()
    );
    Ok(ExitCode::SUCCESS)
}

async fn restore(a: RestoreArgs) -> anyhow::Result<ExitCode> {
    let open = || {
        std::fs::File::open(&a.from)
            .map(|f| std::io::BufReader::with_capacity(1 << 20, f))
            .map_err(|e| anyhow::anyhow!("cannot read the backup {}: {e}", a.from.display()))
    };
    // The backup's key first: nothing is created or written with the wrong one.
    let key_file = a
        .data
        .key_file()
        .ok_or_else(|| anyhow::anyhow!("give --master-key-file FILE"))?;
    if !key_file.0.exists() {
        anyhow::bail!(
            "the master key {} does not exist: give the master key of the store that was backed up with --master-key-file (or UPLINK_MASTER_KEY_FILE); nothing was restored",
            key_file.0.display()
        );
    }
    let key = key_file.resolve(true)?;
    match uplink_store::backup::check_header(open()?, &key) {
        Ok(()) => {}
        Err(StoreError::MasterKeyWrong { path }) => anyhow::bail!(
            "the secrets in {} are sealed under another master key than {path}: give the master key of the store that was backed up with --master-key-file (or UPLINK_MASTER_KEY_FILE); nothing was restored",
            a.from.display()
        ),
        Err(e) => return Err(e.into()),
    }
    let store = a.data.open(true).await?;
    let counts = uplink_store::backup::restore(&store, &key, open()?, 10_000).await?;
    println!(
        "restored {}, {}, {} from {}",
        super::count(counts.workspaces as u64, "workspace", "workspaces"),
        super::count(counts.sensors as u64, "sensor", "sensors"),
        super::count(counts.events as u64, "event", "events"),
        a.from.display()
    );
    for w in &counts.warnings {
        eprintln!("warning: {w}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn migrate(a: MigrateArgs) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let from = super::DataDir {
        data_dir: Some(a.from.clone()),
        database: None,
        master_key_file: a.from_master_key_file.clone(),
    };
    let to = super::DataDir {
        data_dir: None,
        database: Some(a.to.clone()),
        master_key_file: Some(a.master_key_file.clone()),
    };
    let src = from.open(false).await?;
    let dst = to.open(true).await?;
    let mut out = std::io::stdout();
    let batch = a.batch.max(1);
    let mut failures = Vec::new();
    for ws in src.workspaces().await? {
        let name = ws.name.clone();
        match dst.workspace(&name).await? {
            Some(there) if there.ca_sha256 == ws.ca_sha256 => {
                writeln!(out, "workspace {name}: already there")?
            }
            Some(_) => anyhow::bail!(
                "the target already has another workspace named {name:?} (another CA): nothing of {name} was copied; remove it there or copy into another database"
            ),
            None => {
                dst.create_workspace(ws).await?;
                writeln!(out, "workspace {name}: created")?
            }
        }
        let settings = src.workspace_settings(&name).await?;
        dst.set_workspace_settings(
            &name,
            uplink_store::SettingsChange {
                retention_days: Some(settings.retention_days),
                disconnected_after_secs: Some(settings.disconnected_after_secs),
            },
        )
        .await?;
        // Enrollment limits and certificate validity.
        let lifecycle = src.lifecycle_settings(&name).await?;
        dst.set_lifecycle_settings(&name, uplink_store::backup::lifecycle_change(lifecycle))
            .await?;
        // The current policy version, its number kept (sensors compare it with theirs).
        if let Some((version, set_at, policy)) =
            uplink_store::backup::current_policy(&src, &name).await?
        {
            dst.import_policy(&name, version, set_at, policy).await?;
        }
        // The CAs the source's rotations retired, then the previous CAs of a rotation in
        // progress (re-sealed under the target's key), not one either store retired (it would
        // be trusted again). Retired ones read after the previous ones: one retired in between
        // is in both lists, and recorded retired first.
        let previous = src.previous_cas(&name).await?;
        for r in src.retired_cas(&name).await? {
            dst.import_retired_ca(&name, r).await?;
        }
        let retired = dst.retired_cas(&name).await?;
        for ca in previous {
            if retired.iter().any(|r| r.sha256 == ca.sha256) {
                eprintln!(
                    "warning: {}",
                    uplink_store::backup::retired_ca_warning(&name, &ca.sha256)
                );
                continue;
            }
            dst.import_previous_ca(&name, ca).await?;
        }
        // Webhooks and syslog targets (issue #23), unless the target has its own already.
        let hooks = src.webhooks(&name).await?;
        if !hooks.is_empty() && dst.webhooks(&name).await?.is_empty() {
            dst.set_webhooks(&name, hooks).await?;
        }
        let stats = src.stats(&name).await?;
        // Revocations read after the sensor list (a sensor revoked meanwhile comes revoked),
        // each imported right after its sensor, before anything else can fail: a revoked
        // sensor is trusted on the copy for one transaction's time at most, never left trusted
        // by a copy that stopped half way. (One that enrolled after the list is not copied.)
        let mut revoked: std::collections::BTreeMap<String, uplink_store::Revocation> = src
            .revocations(&name)
            .await?
            .into_iter()
            .map(|r| (r.sensor_id.clone(), r))
            .collect();
        let mut revocations = 0u64;
        for s in &stats.sensors {
            dst.import_sensor(s.clone()).await?;
            if let Some(r) = revoked.remove(&s.sensor_id) {
                dst.import_revocation(r).await?;
                revocations += 1;
            }
        }
        // The certificates issued to them (what the CRL lists once a sensor is revoked).
        for (cert, ca) in src.sensor_cert_issuers(&name).await? {
            dst.record_issuer(&cert, &ca).await?;
        }
        for c in src.issued_certificates(&name).await? {
            dst.record_certificate(&c.sensor_id, &c.serial_hex, &c.cert_sha256)
                .await?;
        }
        if revocations > 0 {
            writeln!(
                out,
                "  {}",
                super::count(revocations, "revocation", "revocations")
            )?;
        }
        let want = src.sensor_counts(&name).await?;
        let have = dst.sensor_counts(&name).await?;
        let marks = src.watermarks(&name).await?;
        let holes = src.pruned_holes(&name).await?;
        for (sensor, &total) in &want {
            // After the sensor's events (below): retention's watermark, so that retries of the
            // events it removed stay duplicates in the copy.
            let mark = marks.get(sensor).copied();
            let already = have.get(sensor).copied().unwrap_or(0);
            if already == total {
                writeln!(
                    out,
                    "  sensor {sensor}: {total}/{total} events (already there)"
                )?;
                let h = holes.get(sensor).cloned().unwrap_or_default();
                dst.import_watermark(sensor, mark, h).await?;
                continue;
            }
            let (tx, mut rx) = tokio::sync::mpsc::channel(batch);
            let filter = uplink_store::ExportFilter {
                kind: None,
                sensor_id: Some(sensor.clone()),
            };
            let copy = async {
                let mut pending = Vec::with_capacity(batch);
                let mut copied = 0u64;
                loop {
                    let next = rx.recv().await;
                    let done = next.is_none();
                    if let Some(e) = next {
                        pending.push(e);
                    }
                    if pending.len() >= batch || (done && !pending.is_empty()) {
                        copied += pending.len() as u64;
                        if let Err(e) = dst
                            .import_events(sensor, std::mem::take(&mut pending))
                            .await
                        {
                            // Stop the export too: it would wait for room in the channel
                            // forever (the receiver lives on, borrowed, until both end).
                            rx.close();
                            return Err(e);
                        }
                        let mut o = std::io::stdout().lock();
                        let _ = writeln!(o, "  sensor {sensor}: {copied}/{total} events");
                        let _ = o.flush();
                    }
                    if done {
                        return Ok::<u64, StoreError>(copied);
                    }
                }
            };
            let (exported, copied) = tokio::join!(src.export(&name, filter, tx), copy);
            copied?;
            exported?;
            // And the holes below it, so that their late arrival is stored in the copy too: in one
            // transaction, so a late seq in a hole is never answered "duplicate" in between.
            let h = holes.get(sensor).cloned().unwrap_or_default();
            dst.import_watermark(sensor, mark, h).await?;
        }
        // Verify: the same events per sensor, and the same counts per kind.
        let have = dst.sensor_counts(&name).await?;
        let there = dst.stats(&name).await?;
        if have != want || there.by_kind != stats.by_kind {
            failures.push(format!(
                "{name}: source {want:?} by kind {:?}, target {have:?} by kind {:?}",
                stats.by_kind, there.by_kind
            ));
        } else {
            writeln!(
                out,
                "verified {name}: {} sensors, {} events",
                want.len(),
                stats.total
            )?;
        }
    }
    dst.flush().await?;
    if !failures.is_empty() {
        anyhow::bail!(
            "the copy differs from the source: {}. Run the command again (the service on the source must be stopped)",
            failures.join("; ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn rotate(a: RotateArgs) -> anyhow::Result<ExitCode> {
    let new_file = MasterKeyFile(a.new_key_file.clone());
    let current = a.data.key_file();
    if current.as_ref() == Some(&new_file) {
        anyhow::bail!(
            "--new-key-file is the key in force ({}): give a new file",
            a.new_key_file.display()
        );
    }
    let resealed = match a.data.open(false).await {
        Ok(store) => {
            let new = new_file.resolve(false)?;
            let n = store.rotate_master_key(new).await?;
            store.flush().await?;
            Some(n)
        }
        // A run that committed and was stopped before it finished: the store already has the
        // new key.
        Err(StoreError::MasterKeyWrong { .. }) if a.new_key_file.exists() => {
            a.data.open_with_key(false, Some(new_file.clone())).await?;
            None
        }
        Err(e) => return Err(e.into()),
    };
    match resealed {
        Some(n) => println!("re-sealed {n} secrets under {}", a.new_key_file.display()),
        None => println!(
            "the store is already under {}; finishing",
            a.new_key_file.display()
        ),
    }
    // With the data directory's default key, the new key takes its place.
    if let (Some(dir), None) = (a.data.dir(), &a.data.master_key_file) {
        let target = dir.join(uplink_store_sqlite::MASTER_KEY_FILE);
        replace_key_file(&a.new_key_file, &target)?;
        println!(
            "{} now holds the new key (the old key opens nothing any more)",
            target.display()
        );
    } else {
        println!(
            "now give every service and command --master-key-file {} (or UPLINK_MASTER_KEY_FILE), and restart the services",
            a.new_key_file.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Copies the key at `from` over `to` (0600, written beside and renamed into place).
fn replace_key_file(from: &std::path::Path, to: &std::path::Path) -> anyhow::Result<()> {
    let key = std::fs::read(from)?;
    let tmp = to.with_file_name(".master.key.new");
    uplink_service::admin::write_private(&tmp, &key)?;
    std::fs::rename(&tmp, to)?;
    if let Some(dir) = to.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}
