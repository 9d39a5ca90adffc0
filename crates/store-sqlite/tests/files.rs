//! The SQLite store's files under a careless administrator and a damaged disk: deleted or
//! replaced under a running store, file modes, damaged pages, older formats.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use uplink_store::*;
use uplink_store_sqlite::{SqliteStore, FORMAT_VERSION};

mod common;
use common::kept::{kept_batch, kept_body, sent_batch};
use common::{sensor, workspace};

fn events(seqs: impl IntoIterator<Item = u64>) -> Vec<NewEvent> {
    seqs.into_iter()
        .map(|seq| NewEvent {
            seq,
            kind: "e".into(),
            body: format!("{{\"seq\":{seq},\"pad\":\"{}\"}}", "x".repeat(100)),
        })
        .collect()
}

async fn store_with_events(dir: &Path, n: u64) -> SqliteStore {
    let store = SqliteStore::open(dir, true).unwrap();
    store.create_workspace(workspace("w")).await.unwrap();
    store.add_sensor(sensor("s1")).await.unwrap();
    store.ingest("s1", events(0..n)).await.unwrap();
    store
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn a_store_deleted_under_the_process_refuses_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_events(dir.path(), 10).await;
    store.health().await.unwrap();
    for f in ["uplink.db", "uplink.db-wal", "uplink.db-shm"] {
        std::fs::remove_file(dir.path().join(f)).unwrap();
    }
    let err = store.ingest("s1", events(10..20)).await.unwrap_err();
    assert!(
        matches!(err, StoreError::FilesGone { .. }) && err.is_unavailable(),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("deleted") && text.contains("restart") && text.contains("/proc/"),
        "{text}"
    );
    assert!(store.health().await.is_err());
    assert!(matches!(
        store.add_sensor(sensor("s2")).await,
        Err(StoreError::FilesGone { .. })
    ));
    assert!(matches!(
        store.create_workspace(workspace("v")).await,
        Err(StoreError::FilesGone { .. })
    ));
}

#[tokio::test]
async fn a_store_replaced_under_the_process_refuses_every_write() {
    for victim in ["uplink.db", "uplink.db-wal"] {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_events(dir.path(), 10).await;
        // Another store (or a backup) moved over one of the files.
        let other = tempfile::tempdir().unwrap();
        let other_store = store_with_events(other.path(), 3).await;
        std::fs::rename(other.path().join(victim), dir.path().join(victim)).unwrap();
        drop(other_store);
        let err = store.ingest("s1", events(10..20)).await.unwrap_err();
        assert!(
            err.to_string().contains("replaced by another file"),
            "{victim}: {err}"
        );
        assert!(store.health().await.is_err(), "{victim}");
    }
}

#[tokio::test]
async fn store_files_are_private_whatever_the_directory_and_umask() {
    // A pre-existing 0755 directory (systemd's StateDirectory= default) with a database file
    // some earlier tool left 0644.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let store = store_with_events(dir.path(), 5).await;
    for f in ["uplink.db", "uplink.db-wal", "uplink.db-shm"] {
        assert_eq!(mode(&dir.path().join(f)), 0o600, "{f}");
    }
    drop(store);
    for f in ["uplink.db", "uplink.db-wal", "uplink.db-shm"] {
        let p = dir.path().join(f);
        if p.exists() {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
    let store = SqliteStore::open(dir.path(), true).unwrap();
    for f in ["uplink.db", "uplink.db-wal", "uplink.db-shm"] {
        assert_eq!(mode(&dir.path().join(f)), 0o600, "{f} after reopening");
    }
    assert_eq!(
        mode(dir.path()),
        0o755,
        "an existing directory is left as it is"
    );
    drop(store);
}

/// Overwrites pages in the middle of the database file (as a failing disk would).
fn damage(db: &Path) {
    use std::io::{Seek, SeekFrom, Write};
    let len = std::fs::metadata(db).unwrap().len();
    // Whole pages, whatever the store's page size (the header's bytes 16-17).
    let header = std::fs::read(db).unwrap();
    let page = u64::from(u16::from_be_bytes([header[16], header[17]]));
    let mut f = std::fs::OpenOptions::new().write(true).open(db).unwrap();
    for at in [len / 2 / page * page, len * 3 / 4 / page * page] {
        f.seek(SeekFrom::Start(at)).unwrap();
        let junk: Vec<u8> = (0..page as u32).map(|i| (i * 7 + 3) as u8).collect();
        f.write_all(&junk).unwrap();
    }
    f.sync_all().unwrap();
}

#[tokio::test]
async fn damaged_pages_fail_the_check_and_the_export_loudly() {
    let dir = tempfile::tempdir().unwrap();
    drop(store_with_events(dir.path(), 60_000).await);
    let store = SqliteStore::open(dir.path(), false).unwrap();
    store.check().await.unwrap();
    let mut n = 0;
    assert_eq!(
        export_each(&store, "w", ExportFilter::default(), |_| {
            n += 1;
            Ok(())
        })
        .await
        .unwrap(),
        60_000
    );
    drop(store);
    assert!(
        !dir.path().join("uplink.db-wal").exists(),
        "checkpointed on close"
    );
    damage(&dir.path().join("uplink.db"));
    let store = SqliteStore::open(dir.path(), false).unwrap();
    let err = store.check().await.unwrap_err();
    assert!(
        matches!(err, StoreError::Damaged { .. }) && err.to_string().contains("quick_check"),
        "{err}"
    );
    let mut written = 0u64;
    let err = export_each(&store, "w", ExportFilter::default(), |_| {
        written += 1;
        Ok(())
    })
    .await
    .unwrap_err();
    assert!(matches!(err, StoreError::Damaged { .. }), "{err}");
    assert!(
        err.to_string().contains("incomplete"),
        "{err} ({written} written)"
    );
}

#[tokio::test]
async fn a_format_1_store_is_migrated_and_keeps_its_sensors() {
    let dir = tempfile::tempdir().unwrap();
    {
        // Format 1 as it was written: sensors without a key column.
        let c = rusqlite::Connection::open(dir.path().join("uplink.db")).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode=WAL;
             CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE workspaces (name TEXT PRIMARY KEY, domain TEXT NOT NULL, public_port INTEGER NOT NULL, ca_cert_pem TEXT NOT NULL, ca_key_pem TEXT NOT NULL, ca_sha256 TEXT NOT NULL, access_key_sha256 TEXT NOT NULL, created_at INTEGER NOT NULL);
             CREATE TABLE sensors (id INTEGER PRIMARY KEY, sensor_id TEXT NOT NULL UNIQUE, workspace TEXT NOT NULL REFERENCES workspaces(name), name TEXT NOT NULL, cert_sha256 TEXT NOT NULL, enrolled_at INTEGER NOT NULL, last_seen INTEGER);
             CREATE INDEX sensors_by_workspace ON sensors(workspace);
             CREATE TABLE events (sensor INTEGER NOT NULL REFERENCES sensors(id), seq INTEGER NOT NULL, kind TEXT NOT NULL, received_at INTEGER NOT NULL, body TEXT NOT NULL, PRIMARY KEY (sensor, seq));
             CREATE TABLE kind_counts (workspace TEXT NOT NULL, kind TEXT NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (workspace, kind));
             INSERT INTO meta VALUES ('format', '1');
             INSERT INTO workspaces VALUES ('w', 'uplink.localhost', 443, 'c', 'k', 'h', 'a', 0);
             INSERT INTO sensors VALUES (1, 'old', 'w', 'n', 'c', 0, NULL);
             PRAGMA user_version=1;",
        )
        .unwrap();
    }
    let store = SqliteStore::open(dir.path(), false).unwrap();
    let stats = store.stats("w").await.unwrap();
    assert_eq!(stats.sensors.len(), 1);
    assert_eq!(stats.sensors[0].key_sha256, None);
    store.add_sensor(sensor("s1")).await.unwrap();
    assert!(matches!(
        store
            .add_sensor(SensorRecord {
                sensor_id: "s2".into(),
                ..sensor("s1")
            })
            .await,
        Err(StoreError::KeyAlreadyEnrolled { .. })
    ));
    let c = rusqlite::Connection::open(dir.path().join("uplink.db")).unwrap();
    let v: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, FORMAT_VERSION);
    let f: String = c
        .query_row("SELECT value FROM meta WHERE key = 'format'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(f, FORMAT_VERSION.to_string());
    // Its plain CA key is sealed now, and still reads back.
    let raw: String = c
        .query_row(
            "SELECT ca_key_pem FROM workspaces WHERE name = 'w'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(raw.starts_with("sealed:v1:"), "{raw}");
    assert_eq!(store.workspace("w").await.unwrap().unwrap().ca_key_pem, "k");
}

#[tokio::test]
async fn an_export_short_of_the_counted_events_fails_instead_of_ending_quietly() {
    let dir = tempfile::tempdir().unwrap();
    drop(store_with_events(dir.path(), 1000).await);
    {
        // Rows gone without a read error (what overwritten pages can look like to a reader).
        let c = rusqlite::Connection::open(dir.path().join("uplink.db")).unwrap();
        c.execute("DELETE FROM events WHERE seq BETWEEN 500 AND 506", [])
            .unwrap();
    }
    let store = SqliteStore::open(dir.path(), false).unwrap();
    let mut written = 0u64;
    let err = export_each(&store, "w", ExportFilter::default(), |_| {
        written += 1;
        Ok(())
    })
    .await
    .unwrap_err();
    assert_eq!(written, 993, "what could be read is still written");
    let text = err.to_string();
    assert!(
        text.contains("read 993 events but the store counts 1000") && text.contains("incomplete"),
        "{text}"
    );
    // A kind filter is checked against that kind's counter too.
    let err = export_each(
        &store,
        "w",
        ExportFilter {
            kind: Some("e".into()),
            sensor_id: None,
        },
        |_| Ok(()),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("kind \"e\""), "{err}");
}

#[test]
fn newer_format_and_foreign_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(SqliteStore::open(dir.path(), true).unwrap());
    {
        let c = rusqlite::Connection::open(dir.path().join("uplink.db")).unwrap();
        c.execute_batch("PRAGMA user_version = 99").unwrap();
    }
    let err = SqliteStore::open(dir.path(), false)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("newer uplink (format 99)") && err.contains("upgrade uplink"),
        "{err}"
    );

    // A format no migration step starts from (a development build's numbering) is refused, not
    // opened as it is without this format's tables.
    let dir = tempfile::tempdir().unwrap();
    drop(SqliteStore::open(dir.path(), true).unwrap());
    {
        let c = rusqlite::Connection::open(dir.path().join("uplink.db")).unwrap();
        c.execute_batch("PRAGMA user_version = -3").unwrap();
    }
    let err = SqliteStore::open(dir.path(), false)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("format -3")
            && err.contains("cannot migrate from")
            && err.contains("store backup"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("uplink.db"),
        b"this is not sqlite at all, just some text that is long enough",
    )
    .unwrap();
    let err = SqliteStore::open(dir.path(), false)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not an uplink store") || err.contains("not a database"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let err = SqliteStore::open(&dir.path().join("missing"), false)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("missing") && err.contains("does not exist") && !err.contains(": no such"),
        "{err}"
    );
}

#[tokio::test]
async fn ca_keys_are_sealed_at_rest_and_a_wrong_or_missing_master_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(store_with_events(dir.path(), 3).await);
    let key_file = dir.path().join("master.key");
    assert_eq!(mode(&key_file), 0o600);
    let (raw, raw_access): (String, String) =
        rusqlite::Connection::open(dir.path().join("uplink.db"))
            .unwrap()
            .query_row(
                "SELECT ca_key_pem, access_key FROM workspaces WHERE name = 'w'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
    assert!(
        raw_access.starts_with("sealed:v1:") && !raw_access.contains("the-access-key"),
        "{raw_access}"
    );
    assert!(
        raw.starts_with("sealed:v1:") && !raw.contains("PRIVATE KEY") && !raw.contains("secret"),
        "{raw}"
    );
    // Reopened with its key: the CA key reads back.
    let store = SqliteStore::open(dir.path(), false).unwrap();
    let w = store.workspace("w").await.unwrap().unwrap();
    assert_eq!(w.ca_key_pem, "-----BEGIN PRIVATE KEY-----secret");
    assert_eq!(w.access_key.as_deref(), Some("the-access-key"));
    drop(store);
    // Another key: refused at open, naming the flag.
    let other = dir.path().join("other.key");
    std::fs::write(&other, format!("{}\n", "ab".repeat(32))).unwrap();
    let err = SqliteStore::open_with_key(dir.path(), false, &MasterKeyFile(other)).unwrap_err();
    assert!(matches!(err, StoreError::MasterKeyWrong { .. }), "{err}");
    assert!(err.to_string().contains("--master-key-file"), "{err}");
    // The key file gone: refused, and no new key is made in its place.
    let saved = std::fs::read(&key_file).unwrap();
    std::fs::remove_file(&key_file).unwrap();
    let err = SqliteStore::open(dir.path(), true).unwrap_err();
    assert!(matches!(err, StoreError::MasterKeyMissing { .. }), "{err}");
    assert!(!key_file.exists());
    std::fs::write(&key_file, saved).unwrap();
    SqliteStore::open(dir.path(), false).unwrap();
}

#[tokio::test]
async fn after_a_rotation_only_the_new_master_key_opens_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_events(dir.path(), 3).await;
    let new_file = MasterKeyFile(dir.path().join("new.key"));
    store
        .rotate_master_key(new_file.resolve(false).unwrap())
        .await
        .unwrap();
    drop(store);
    let err = SqliteStore::open(dir.path(), false).unwrap_err();
    assert!(matches!(err, StoreError::MasterKeyWrong { .. }), "{err}");
    let store = SqliteStore::open_with_key(dir.path(), false, &new_file).unwrap();
    let w = store.workspace("w").await.unwrap().unwrap();
    assert_eq!(w.ca_key_pem, "-----BEGIN PRIVATE KEY-----secret");
}

#[tokio::test]
async fn a_format_3_store_is_migrated_to_settings_and_retention_and_keeps_its_events() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = store_with_events(dir.path(), 40).await;
        drop(store);
        // Back to format 3 as it was written: no settings, no watermark, no age index, no
        // change log.
        let c = rusqlite::Connection::open(dir.path().join("uplink.db")).unwrap();
        c.execute_batch(
            "DROP TABLE changes;
             DROP TABLE event_blobs;
             ALTER TABLE events DROP COLUMN blob;
             ALTER TABLE events DROP COLUMN span;
             ALTER TABLE workspaces DROP COLUMN retention_days;
             ALTER TABLE workspaces DROP COLUMN disconnected_after_secs;
             ALTER TABLE sensors DROP COLUMN pruned_through;
             UPDATE events SET received_at = received_at - 40 * 86400000 WHERE seq < 25;
             UPDATE meta SET value = '3' WHERE key = 'format';
             PRAGMA user_version = 3;",
        )
        .unwrap();
    }
    let store = SqliteStore::open(dir.path(), false).unwrap();
    assert_eq!(
        store.workspace_settings("w").await.unwrap(),
        WorkspaceSettings::default()
    );
    assert_eq!(store.stats("w").await.unwrap().total, 40);
    let report = store.prune(PruneOptions::now()).await.unwrap();
    assert_eq!(report.total(), 25);
    let r = store.ingest("s1", events(0..45)).await.unwrap();
    assert_eq!((r.accepted, r.duplicates), (5, 40));
    assert_eq!(store.stats("w").await.unwrap().total, 20);
    let c = rusqlite::Connection::open(dir.path().join("uplink.db")).unwrap();
    let (v, index): (i64, i64) = c
        .query_row(
            "SELECT (SELECT user_version FROM pragma_user_version), (SELECT count(*) FROM sqlite_master WHERE name = 'events_by_age')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    // Format 4 built the age index; format 14 dropped it (retention goes in seq order).
    assert_eq!((v, index), (FORMAT_VERSION, 0));
}

#[tokio::test]
async fn a_format_13_store_is_migrated_keeps_its_events_and_still_prunes_and_dedupes() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = store_with_events(dir.path(), 50).await;
        drop(store);
        // Back to format 13 as it was written: with the age index, without the holes table and the
        // batches stored as sent.
        let c = rusqlite::Connection::open(dir.path().join("uplink.db")).unwrap();
        c.execute_batch(
            "DROP TABLE pruned_holes;
             DROP TABLE event_blobs;
             ALTER TABLE events DROP COLUMN blob;
             ALTER TABLE events DROP COLUMN span;
             CREATE INDEX events_by_age ON events(sensor, received_at);
             UPDATE events SET received_at = received_at - 40 * 86400000 WHERE seq < 20;
             UPDATE meta SET value = '13' WHERE key = 'format';
             PRAGMA user_version = 13;",
        )
        .unwrap();
    }
    let store = SqliteStore::open(dir.path(), false).unwrap();
    let c = rusqlite::Connection::open(dir.path().join("uplink.db")).unwrap();
    let (v, f, index, holes): (i64, String, i64, i64) = c
        .query_row(
            "SELECT (SELECT user_version FROM pragma_user_version), (SELECT value FROM meta WHERE key = 'format'), (SELECT count(*) FROM sqlite_master WHERE name = 'events_by_age'), (SELECT count(*) FROM sqlite_master WHERE name = 'pruned_holes')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    // 14 dropped the age index, 15 made the holes table.
    let current = FORMAT_VERSION.to_string();
    assert_eq!(
        (v, f.as_str(), index, holes),
        (FORMAT_VERSION, current.as_str(), 0, 1)
    );
    // Every event kept, each body as stored.
    let mut seqs = Vec::new();
    export_each(&store, "w", ExportFilter::default(), |e| {
        assert_eq!(e.body, events([e.seq])[0].body);
        seqs.push(e.seq);
        Ok(())
    })
    .await
    .unwrap();
    assert_eq!(seqs, (0..50).collect::<Vec<_>>());
    // Retention removes the 20 old ones in seq order, in chunks, and their retries stay
    // duplicates.
    let report = store
        .prune(PruneOptions {
            chunk: 6,
            ..PruneOptions::now()
        })
        .await
        .unwrap();
    assert_eq!(report.total(), 20);
    assert_eq!(store.stats("w").await.unwrap().total, 30);
    let r = store.ingest("s1", events(0..55)).await.unwrap();
    assert_eq!((r.accepted, r.duplicates), (5, 50));
    assert_eq!(store.stats("w").await.unwrap().total, 35);
}

// Multi-row inserts (issue #28): every event's outcome and kind counted exactly, whatever mix
// of new, stored, pruned, repeated and out-of-order seqs a batch crosses its chunks with.
#[tokio::test]
async fn chunked_inserts_count_each_event_once_across_chunk_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), true).unwrap();
    store.create_workspace(workspace("w")).await.unwrap();
    store.add_sensor(sensor("s1")).await.unwrap();
    let kinded = |seqs: Vec<u64>| -> Vec<NewEvent> {
        seqs.into_iter()
            .map(|seq| NewEvent {
                seq,
                // Runs of kinds that change inside and across chunks.
                kind: ["a", "b", "c"][(seq / 50 % 3) as usize].into(),
                body: format!("{{\"seq\":{seq}}}"),
            })
            .collect()
    };
    // Scattered events stored first: later chunks overlap them one by one.
    let scattered: Vec<u64> = (0..20).map(|i| i * 31 + 5).collect();
    let r = store.ingest("s1", kinded(scattered.clone())).await.unwrap();
    assert_eq!((r.accepted, r.duplicates), (20, 0));
    // 0..700 in one batch, with a repeat and a step back inside it.
    let mut seqs: Vec<u64> = (0..700).collect();
    seqs.insert(300, 299);
    seqs.insert(450, 100);
    let r = store.ingest("s1", kinded(seqs)).await.unwrap();
    assert_eq!((r.accepted, r.duplicates), (680, 22));
    // The same range again, and a new tail of 1..=7 events per batch (row by row).
    let r = store
        .ingest("s1", kinded((0..707).collect()))
        .await
        .unwrap();
    assert_eq!((r.accepted, r.duplicates), (7, 700));
    let stats = store.stats("w").await.unwrap();
    assert_eq!(stats.total, 707);
    let want = |k: u64| (0..707).filter(|s| s / 50 % 3 == k).count() as u64;
    assert_eq!(stats.by_kind.get("a"), Some(&want(0)));
    assert_eq!(stats.by_kind.get("b"), Some(&want(1)));
    assert_eq!(stats.by_kind.get("c"), Some(&want(2)));
    let mut got = Vec::new();
    export_each(&store, "w", ExportFilter::default(), |e| {
        assert_eq!(e.body, format!("{{\"seq\":{}}}", e.seq));
        got.push(e.seq);
        Ok(())
    })
    .await
    .unwrap();
    assert_eq!(got, (0..707).collect::<Vec<_>>());
    // Above a watermark: old events pruned, then a batch straddling it.
    let c = rusqlite::Connection::open(dir.path().join("uplink.db")).unwrap();
    c.execute_batch("UPDATE events SET received_at = received_at - 40 * 86400000 WHERE seq < 600;")
        .unwrap();
    let report = store.prune(PruneOptions::now()).await.unwrap();
    assert_eq!(report.total(), 600);
    let r = store
        .ingest("s1", kinded((550..800).collect()))
        .await
        .unwrap();
    assert_eq!((r.accepted, r.duplicates), (93, 157));
    assert_eq!(store.stats("w").await.unwrap().total, 200);
    // The writer does not check the foreign key per event: a batch for a sensor deleted (with
    // its workspace) after the writer cached it is refused whole, and nothing is left behind.
    store.delete_workspace("w").await.unwrap();
    let e = store.ingest("s1", kinded((800..900).collect())).await;
    assert!(matches!(e, Err(StoreError::NoSuchSensor(_))), "{e:?}");
    let (left, orphans): (i64, i64) = c
        .query_row(
            "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM pragma_foreign_key_check('events'))",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((left, orphans), (0, 0));
}

// Webhook secrets sealed at rest (issue #23).
#[tokio::test]
async fn webhook_secrets_are_sealed_and_a_plain_one_from_an_earlier_build_is_sealed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_events(dir.path(), 1).await;
    let hook = Webhook {
        url: "https://hooks.example/a".into(),
        secret: "webhook-secret-0123456789".into(),
    };
    store.set_webhooks("w", vec![hook.clone()]).await.unwrap();
    let db = || rusqlite::Connection::open(dir.path().join("uplink.db")).unwrap();
    // Sealed in the column, read back whole.
    let check = |store: SqliteStore| {
        let raw: String = db()
            .query_row("SELECT secret FROM webhooks", [], |r| r.get(0))
            .unwrap();
        assert!(
            raw.starts_with("sealed:v1:") && !raw.contains("webhook-secret"),
            "{raw}"
        );
        let hook = hook.clone();
        async move {
            assert_eq!(store.webhooks("w").await.unwrap(), [hook]);
        }
    };
    check(store).await;
    // As an earlier build stored it: plain. The next open seals it, and it reads the same.
    db().execute(
        "UPDATE webhooks SET secret = 'webhook-secret-0123456789'",
        [],
    )
    .unwrap();
    check(SqliteStore::open(dir.path(), false).unwrap()).await;
    // A sealed secret moved onto another URL's row does not open: refused, not misused.
    db().execute(
        "UPDATE webhooks SET url = 'https://elsewhere.example/' WHERE workspace = 'w'",
        [],
    )
    .unwrap();
    let store = SqliteStore::open(dir.path(), false).unwrap();
    let err = store.webhooks("w").await.unwrap_err();
    assert!(matches!(err, StoreError::MasterKeyWrong { .. }), "{err}");
}

/// A backup carries a workspace's webhooks and syslog targets (secrets sealed, not in clear in
/// the file); a restore into an empty store gives them back.
#[tokio::test]
async fn backups_keep_webhooks_sealed_and_restore_them() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let store = store_with_events(a.path(), 2).await;
    let hooks = vec![
        Webhook {
            url: "https://hooks.example/a".into(),
            secret: "webhook-secret-0123456789".into(),
        },
        Webhook {
            url: "tls://127.0.0.1:6514".into(),
            secret: String::new(),
        },
    ];
    store.set_webhooks("w", hooks.clone()).await.unwrap();
    let key_file = MasterKeyFile(a.path().join("master.key"));
    let key = key_file.resolve(true).unwrap();
    let mut file = Vec::new();
    backup::backup(&store, &key, &mut file, |_, _| {})
        .await
        .unwrap();
    let text = String::from_utf8(file.clone()).unwrap();
    assert!(text.contains("https://hooks.example/a"), "{text}");
    assert!(!text.contains("webhook-secret"), "{text}");

    let restored = SqliteStore::open_with_key(b.path(), true, &key_file).unwrap();
    backup::restore(&restored, &key, std::io::Cursor::new(&file), 100)
        .await
        .unwrap();
    assert_eq!(restored.webhooks("w").await.unwrap(), hooks);
    // Again (a re-run): nothing changes.
    backup::restore(&restored, &key, std::io::Cursor::new(&file), 100)
        .await
        .unwrap();
    assert_eq!(restored.webhooks("w").await.unwrap(), hooks);
}

#[tokio::test]
async fn kind_counters_follow_mixed_kinds_and_duplicates_in_a_batch() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), true).unwrap();
    store.create_workspace(workspace("w")).await.unwrap();
    store.add_sensor(sensor("s1")).await.unwrap();
    let batch = |seqs_kinds: &[(u64, &str)]| -> Vec<NewEvent> {
        seqs_kinds
            .iter()
            .map(|&(seq, kind)| NewEvent {
                seq,
                kind: kind.into(),
                body: format!("{{\"seq\":{seq}}}"),
            })
            .collect()
    };
    let r = store
        .ingest(
            "s1",
            batch(&[(0, "a"), (1, "a"), (2, "b"), (3, "a"), (4, "c"), (5, "c")]),
        )
        .await
        .unwrap();
    assert_eq!((r.accepted, r.duplicates), (6, 0));
    // Duplicates inside runs and between them are not counted.
    let r = store
        .ingest(
            "s1",
            batch(&[
                (1, "a"),
                (6, "a"),
                (2, "b"),
                (7, "b"),
                (8, "b"),
                (5, "c"),
                (9, "a"),
            ]),
        )
        .await
        .unwrap();
    assert_eq!((r.accepted, r.duplicates), (4, 3));
    let st = store.stats("w").await.unwrap();
    assert_eq!(st.total, 10);
    let by_kind: Vec<(&str, u64)> = st.by_kind.iter().map(|(k, n)| (k.as_str(), *n)).collect();
    assert_eq!(by_kind, [("a", 5), ("b", 3), ("c", 2)]);
}

// Batches stored as sent (issue #28, blobs.rs): one body per batch of new events, each of its
// rows pointing into it; read back exactly, once; a batch goes with its last row.
#[tokio::test]
async fn batches_kept_as_sent_are_stored_once_read_back_exactly_and_removed_with_their_last_row() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), true).unwrap();
    store.create_workspace(workspace("w")).await.unwrap();
    store.add_sensor(sensor("s1")).await.unwrap();
    let c = rusqlite::Connection::open(dir.path().join("uplink.db")).unwrap();
    // (batches stored, rows pointing into one, of those rows any with text of their own)
    let layout = || -> (i64, i64, i64) {
        c.query_row(
            "SELECT (SELECT count(*) FROM event_blobs), (SELECT count(*) FROM events WHERE blob IS NOT NULL), (SELECT count(*) FROM events WHERE blob IS NOT NULL AND body != '')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap()
    };
    // (what, the batch's seqs, whether without its text as the service sends it to this
    // store, its outcome, the layout after)
    type Step = (
        &'static str,
        std::ops::Range<u64>,
        bool,
        (u64, u64),
        (i64, i64, i64),
    );
    let steps: [Step; 5] = [
        (
            "chunks of 64, 64, 64 and 8, then a tail of 3 row by row: all point in",
            0..203,
            true,
            (203, 0),
            (1, 203, 0),
        ),
        (
            "retried whole: every event a duplicate, no second copy of the batch",
            0..203,
            false,
            (0, 203),
            (1, 203, 0),
        ),
        (
            "retried whole without its text: the same",
            0..203,
            true,
            (0, 203),
            (1, 203, 0),
        ),
        (
            "overlapping what is stored: not all new, so each new event keeps its text in its \
             row (a batch holds exactly its rows' texts), decoded again from the batch as sent",
            150..400,
            true,
            (197, 53),
            (1, 203, 0),
        ),
        (
            "a few new events (no multi-row chunk) are stored as sent too",
            400..405,
            false,
            (5, 0),
            (2, 208, 0),
        ),
    ];
    for (what, seqs, sent, outcome, want) in steps {
        let batch = match sent {
            true => sent_batch(seqs),
            false => kept_batch(seqs),
        };
        let r = store.ingest_batch("s1", batch).await.unwrap();
        assert_eq!((r.accepted, r.duplicates), outcome, "{what}");
        assert_eq!(layout(), want, "{what}");
    }
    // One compressed as a stream (no frame declares its size) is read back whole.
    let mut stream = kept_batch(405..500);
    let text: String = (405..500).map(|s| kept_body(s) + "\n").collect();
    stream.keep_zstd(zstd::encode_all(text.as_bytes(), 3).unwrap());
    let r = store.ingest_batch("s1", stream).await.unwrap();
    assert_eq!((r.accepted, r.duplicates), (95, 0));
    assert_eq!(layout(), (3, 303, 0));
    let all = |from: u64| {
        let store = store.clone();
        async move {
            let mut seqs = Vec::new();
            export_each(&store, "w", ExportFilter::default(), |e| {
                assert_eq!((e.body, e.kind.as_str()), (kept_body(e.seq), "log"));
                seqs.push(e.seq);
                Ok(())
            })
            .await
            .unwrap();
            assert_eq!(seqs, (from..500).collect::<Vec<_>>());
        }
    };
    all(0).await;
    assert_eq!(
        store.stats("w").await.unwrap().by_kind.get("log"),
        Some(&500)
    );

    // Retention removes 0..300: the first batch has no row left and goes.
    c.execute_batch("UPDATE events SET received_at = received_at - 40 * 86400000 WHERE seq < 300;")
        .unwrap();
    let report = store
        .prune(PruneOptions {
            chunk: 45,
            ..PruneOptions::now()
        })
        .await
        .unwrap();
    assert_eq!(report.total(), 300);
    assert_eq!(layout(), (2, 100, 0));
    all(300).await;
    // Their retries stay duplicates.
    let r = store.ingest_batch("s1", kept_batch(0..300)).await.unwrap();
    assert_eq!((r.accepted, r.duplicates), (0, 300));
    assert_eq!(layout(), (2, 100, 0));

    // Damage fails the export loudly, naming the event: a stored batch cut short, a row with
    // half a pointer, a row pointing into another sensor's batch.
    store.add_sensor(sensor("s2")).await.unwrap();
    store.ingest_batch("s2", kept_batch(0..64)).await.unwrap();
    let damages = [
        (
            "UPDATE event_blobs SET zstd = substr(zstd, 1, 20) WHERE sensor = (SELECT id FROM sensors WHERE sensor_id = 's2')",
            "the text of event 0 of sensor s2 could not be read: batch",
        ),
        (
            "UPDATE events SET span = NULL WHERE seq = 450",
            "event 450 of sensor s1 has half a pointer",
        ),
        (
            "UPDATE events SET blob = (SELECT max(id) FROM event_blobs) WHERE seq = 401",
            "the text of event 401 of sensor s1 could not be read: the row points into batch",
        ),
    ];
    // Each damage is committed (the export reads on its own connection), then undone.
    c.execute_batch(
        "CREATE TEMP TABLE ev AS SELECT sensor, seq, blob, span FROM main.events;
         CREATE TEMP TABLE bl AS SELECT id, zstd FROM main.event_blobs;",
    )
    .unwrap();
    for (damage, says) in damages {
        c.execute_batch(damage).unwrap();
        let e = export_each(&store, "w", ExportFilter::default(), |_| Ok(()))
            .await
            .unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains(says) && text.contains("the export is incomplete"),
            "{damage}: {text}"
        );
        c.execute_batch(
            "UPDATE main.events SET blob = ev.blob, span = ev.span FROM ev WHERE main.events.sensor = ev.sensor AND main.events.seq = ev.seq;
             UPDATE main.event_blobs SET zstd = bl.zstd FROM bl WHERE main.event_blobs.id = bl.id;",
        )
        .unwrap();
    }
    all_with_s2(&store).await;

    // Everything past retention: no batch left. The workspace then goes whole.
    let report = store
        .prune(PruneOptions {
            now_ms: now_ms() + 100 * 86_400_000,
            chunk: 1000,
        })
        .await
        .unwrap();
    assert_eq!(report.total(), 264);
    assert_eq!(layout(), (0, 0, 0));
    store.ingest_batch("s2", kept_batch(64..200)).await.unwrap();
    assert_eq!(layout().0, 1);
    store.delete_workspace("w").await.unwrap();
    assert_eq!(layout(), (0, 0, 0));
}

/// After the damages are undone: s1's 300..500 and s2's 0..64, every text exact.
async fn all_with_s2(store: &SqliteStore) {
    let mut n = 0;
    export_each(store, "w", ExportFilter::default(), |e| {
        assert_eq!(e.body, kept_body(e.seq));
        n += 1;
        Ok(())
    })
    .await
    .unwrap();
    assert_eq!(n, 264);
}
