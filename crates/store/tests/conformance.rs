//! Behaviour every `Store` implementation must have. Today: SQLite. PostgreSQL will run these too.

use uplink_store::sqlite::SqliteStore;
use uplink_store::*;

fn workspace(name: &str) -> WorkspaceRecord {
    WorkspaceRecord {
        name: name.into(),
        domain: "uplink.localhost".into(),
        public_port: 443,
        ca_cert_pem: "cert".into(),
        ca_key_pem: "-----BEGIN PRIVATE KEY-----secret".into(),
        ca_sha256: "00".repeat(32),
        access_key_sha256: "11".repeat(32),
        created_at: now_ms(),
    }
}

fn sensor(id: &str, ws: &str) -> SensorRecord {
    SensorRecord {
        sensor_id: id.into(),
        workspace: ws.into(),
        name: "host".into(),
        cert_sha256: "22".repeat(32),
        key_sha256: Some(format!("key-of-{id}")),
        enrolled_at: now_ms(),
        last_seen: None,
    }
}

fn events(seqs: impl IntoIterator<Item = u64>, kind: &str) -> Vec<NewEvent> {
    seqs.into_iter()
        .map(|seq| NewEvent {
            seq,
            kind: kind.into(),
            body: format!("{{\"seq\":{seq},\"kind\":\"{kind}\"}}"),
        })
        .collect()
}

fn exported(store: &SqliteStore, ws: &str, filter: ExportFilter) -> Vec<(String, u64, String)> {
    let mut out = Vec::new();
    store
        .export(ws, &filter, |e| {
            out.push((e.sensor_id, e.seq, e.kind));
            Ok(())
        })
        .unwrap();
    out
}

#[tokio::test]
async fn workspaces_are_unique_and_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), true).unwrap();
    store.create_workspace(&workspace("a")).unwrap();
    assert!(
        matches!(store.create_workspace(&workspace("a")), Err(StoreError::WorkspaceExists(n)) if n == "a")
    );
    store.create_workspace(&workspace("b")).unwrap();
    let names: Vec<String> = store
        .workspaces()
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.name)
        .collect();
    assert_eq!(names, ["a", "b"]);
    let a = store.workspace("a").await.unwrap().unwrap();
    assert!(
        !format!("{a:?}").contains("secret"),
        "Debug must not show the CA key"
    );
    assert!(store.workspace("zzz").await.unwrap().is_none());
}

#[tokio::test]
async fn ingest_is_idempotent_for_any_batch_shape() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), true).unwrap();
    store.create_workspace(&workspace("w")).unwrap();
    store.add_sensor(sensor("s1", "w")).await.unwrap();
    store.add_sensor(sensor("s2", "w")).await.unwrap();

    let r = store.ingest("s1", events(0..10, "event")).await.unwrap();
    assert_eq!(
        r,
        IngestOutcome {
            accepted: 10,
            duplicates: 0
        }
    );
    // The same batch again: nothing new.
    let r = store.ingest("s1", events(0..10, "event")).await.unwrap();
    assert_eq!(
        r,
        IngestOutcome {
            accepted: 0,
            duplicates: 10
        }
    );
    // Re-shaped: overlaps the old range and extends it.
    let r = store.ingest("s1", events(5..15, "event")).await.unwrap();
    assert_eq!(
        r,
        IngestOutcome {
            accepted: 5,
            duplicates: 5
        }
    );
    // Same sequence numbers from another sensor are different events.
    let r = store.ingest("s2", events(0..3, "heartbeat")).await.unwrap();
    assert_eq!(
        r,
        IngestOutcome {
            accepted: 3,
            duplicates: 0
        }
    );

    let all = exported(&store, "w", ExportFilter::default());
    let want: Vec<(String, u64, String)> = (0..15)
        .map(|s| ("s1".to_string(), s, "event".to_string()))
        .chain((0..3).map(|s| ("s2".to_string(), s, "heartbeat".to_string())))
        .collect();
    assert_eq!(all, want);
    let hb = exported(
        &store,
        "w",
        ExportFilter {
            kind: Some("heartbeat".into()),
            sensor_id: None,
        },
    );
    assert_eq!(hb.len(), 3);
    let s1 = exported(
        &store,
        "w",
        ExportFilter {
            kind: None,
            sensor_id: Some("s1".into()),
        },
    );
    assert_eq!(s1.len(), 15);

    let stats = store.stats("w").unwrap();
    assert_eq!(stats.total, 18);
    assert_eq!(stats.by_kind.get("event"), Some(&15));
    assert_eq!(stats.by_kind.get("heartbeat"), Some(&3));
    assert_eq!(stats.sensors.len(), 2);
    assert!(stats.sensors.iter().all(|s| s.last_seen.is_some()));
}

#[tokio::test]
async fn concurrent_ingest_groups_commits_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), true).unwrap();
    store.create_workspace(&workspace("w")).unwrap();
    for i in 0..8 {
        store
            .add_sensor(sensor(&format!("s{i}"), "w"))
            .await
            .unwrap();
    }
    let mut tasks = Vec::new();
    for i in 0..8u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut accepted = 0;
            for b in 0..20u64 {
                // Every batch overlaps the previous one by 5 events.
                let start = b * 50;
                let r = store
                    .ingest(
                        &format!("s{i}"),
                        events(start.saturating_sub(5)..start + 50, "e"),
                    )
                    .await
                    .unwrap();
                accepted += r.accepted;
            }
            accepted
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    assert_eq!(total, 8 * 1000);
    assert_eq!(store.stats("w").unwrap().total, 8000);
    assert_eq!(exported(&store, "w", ExportFilter::default()).len(), 8000);
}

#[tokio::test]
async fn unknown_sensor_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), true).unwrap();
    store.create_workspace(&workspace("w")).unwrap();
    store.add_sensor(sensor("s1", "w")).await.unwrap();
    let (bad, good) = tokio::join!(
        store.ingest("ghost", events(0..3, "e")),
        store.ingest("s1", events(0..3, "e"))
    );
    assert!(matches!(bad, Err(StoreError::NoSuchSensor(id)) if id == "ghost"));
    assert_eq!(good.unwrap().accepted, 3);
}

#[tokio::test]
async fn renewal_records_the_new_certificate_of_enrolled_sensors_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), true).unwrap();
    store.create_workspace(&workspace("w")).unwrap();
    store.create_workspace(&workspace("v")).unwrap();
    store.add_sensor(sensor("s1", "w")).await.unwrap();
    let new = "33".repeat(32);
    store.renew_sensor("w", "s1", &new, "key-2").await.unwrap();
    let stats = store.stats("w").unwrap();
    assert_eq!(stats.sensors.len(), 1);
    assert_eq!(stats.sensors[0].cert_sha256, new);
    // Not in that workspace, or not at all: refused, nothing changed.
    for (ws, id) in [("v", "s1"), ("w", "ghost")] {
        let err = store.renew_sensor(ws, id, &"44".repeat(32), "key-3").await;
        assert!(
            matches!(err, Err(StoreError::NoSuchSensor(ref g)) if g == id),
            "{ws}/{id}: {err:?}"
        );
    }
    assert_eq!(store.stats("w").unwrap().sensors[0].cert_sha256, new);
    assert_eq!(
        store.stats("w").unwrap().sensors[0].key_sha256.as_deref(),
        Some("key-2")
    );
}

#[tokio::test]
async fn a_key_enrolls_one_sensor_per_workspace_and_renewal_may_keep_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), true).unwrap();
    store.create_workspace(&workspace("w")).unwrap();
    store.create_workspace(&workspace("v")).unwrap();
    store.add_sensor(sensor("s1", "w")).await.unwrap();
    // The same key again (a replayed CSR): refused, naming the sensor that holds it.
    let replay = SensorRecord {
        key_sha256: Some("key-of-s1".into()),
        ..sensor("s2", "w")
    };
    let err = store.add_sensor(replay.clone()).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::KeyAlreadyEnrolled { workspace, sensor_id } if workspace == "w" && sensor_id == "s1"),
        "{err:?}"
    );
    assert!(!err.is_unavailable());
    assert_eq!(store.stats("w").unwrap().sensors.len(), 1);
    // Another workspace may hold the same key.
    store
        .add_sensor(SensorRecord {
            workspace: "v".into(),
            ..replay
        })
        .await
        .unwrap();
    // Sensors without a recorded key (enrolled before format 2) do not collide.
    for id in ["old1", "old2"] {
        store
            .add_sensor(SensorRecord {
                key_sha256: None,
                ..sensor(id, "w")
            })
            .await
            .unwrap();
    }
    // Renewal: its own key is fine, another sensor's is not.
    store.add_sensor(sensor("s3", "w")).await.unwrap();
    store
        .renew_sensor("w", "s3", &"55".repeat(32), "key-of-s3")
        .await
        .unwrap();
    let err = store
        .renew_sensor("w", "s3", &"66".repeat(32), "key-of-s1")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::KeyAlreadyEnrolled { sensor_id, .. } if sensor_id == "s1"),
        "{err:?}"
    );
    store.health().await.unwrap();
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
        err.contains("missing") && err.contains("no such directory"),
        "{err}"
    );
}

#[test]
fn stats_and_export_of_unknown_workspace_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), true).unwrap();
    assert!(matches!(
        store.stats("nope"),
        Err(StoreError::NoSuchWorkspace(_))
    ));
    assert!(store
        .export("nope", &ExportFilter::default(), |_| Ok(()))
        .is_err());
}
