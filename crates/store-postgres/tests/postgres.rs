//! What only the PostgreSQL store has: migrations under an advisory lock (replicas starting
//! together), refusal of an incompatible newer schema, `last_seen` written in batches, a URL's
//! password kept out of `Debug` and errors. The behaviour every store shares is in
//! `crates/store/tests/conformance.rs` (run for PostgreSQL too).

#[path = "../../uplink/tests/it/support/postgres.rs"]
#[allow(dead_code)]
mod cluster;

use std::time::Duration;

use uplink_store::retention;
use uplink_store::*;
use uplink_store_postgres::{migrate, PostgresStore, Settings};

/// The master key beside the cluster (removed with it).
fn key_file(c: &cluster::Cluster) -> MasterKeyFile {
    MasterKeyFile(c.socket_dir.join("master.key"))
}

fn settings(c: &cluster::Cluster) -> Settings {
    Settings::new(DatabaseUrl::new(&c.url("uplink")).unwrap(), key_file(c))
}

/// A second connection, as another replica (or a prune) holding a transaction open.
async fn other_connection(c: &cluster::Cluster) -> tokio_postgres::Client {
    let (other, conn) = tokio_postgres::connect(&c.url("uplink"), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    other
}

/// Waits until exactly one of the store's connections waits for a lock (`other`'s).
async fn until_one_waits_for_a_lock(other: &tokio_postgres::Client, what: &str) {
    until(what, async || {
        other
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'uplink' AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
            == 1
    })
    .await;
}

/// Workspace "w" with placeholder keys: what most tests here need before a sensor.
async fn create_workspace_w(store: &PostgresStore) {
    store
        .create_workspace(WorkspaceRecord {
            name: "w".into(),
            domain: "uplink.localhost".into(),
            public_port: 443,
            ca_cert_pem: "c".into(),
            ca_key_pem: "k".into(),
            ca_sha256: "h".into(),
            access_key_sha256: "a".into(),
            created_at: 0,
            access_key: None,
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_apply_the_migrations_once() {
    let c = cluster::Cluster::start().unwrap();
    let starts: Vec<_> = (0..6)
        .map(|_| {
            let s = settings(&c);
            tokio::spawn(async move { PostgresStore::connect(s).await })
        })
        .collect();
    for s in starts {
        s.await.unwrap().unwrap();
    }
    assert_eq!(
        c.psql("uplink", "SELECT count(*), max(version) FROM uplink_schema"),
        format!("{}|{}", migrate::MIGRATIONS.len(), migrate::latest())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_is_refused_only_when_this_build_cannot_run_on_it() {
    let c = cluster::Cluster::start().unwrap();
    drop(PostgresStore::connect(settings(&c)).await.unwrap());
    let next = migrate::latest() + 1;
    // A newer build expanded the schema and says this build still runs on it: accepted.
    c.psql(
        "uplink",
        &format!("INSERT INTO uplink_schema VALUES ({next}, 'expand', 1, 0)"),
    );
    let store = PostgresStore::connect(settings(&c)).await.unwrap();
    store.health().await.unwrap();
    drop(store);
    // A later one contracted it past this build: refused, saying what to do.
    c.psql(
        "uplink",
        &format!(
            "INSERT INTO uplink_schema VALUES ({}, 'contract', {}, 0)",
            next + 1,
            next + 1
        ),
    );
    let err = PostgresStore::connect(settings(&c)).await.unwrap_err();
    assert!(matches!(err, StoreError::NewerFormat { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("upgrade uplink") && text.contains("postgres://"),
        "{text}"
    );
}

fn event(seq: u64) -> Vec<NewEvent> {
    vec![NewEvent {
        seq,
        kind: "e".into(),
        body: "{}".into(),
    }]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_seen_is_written_in_batches_not_by_each_request() {
    let c = cluster::Cluster::start().unwrap();
    let store = PostgresStore::connect(Settings {
        last_seen_flush: Duration::from_secs(3600),
        ..settings(&c)
    })
    .await
    .unwrap();
    store
        .create_workspace(WorkspaceRecord {
            name: "w".into(),
            domain: "uplink.localhost".into(),
            public_port: 443,
            ca_cert_pem: "c".into(),
            ca_key_pem: "k".into(),
            ca_sha256: "h".into(),
            access_key_sha256: "a".into(),
            created_at: 0,
            access_key: Some("the-access-key".into()),
        })
        .await
        .unwrap();
    for id in ["s1", "s2"] {
        store
            .add_sensor(SensorRecord {
                sensor_id: id.into(),
                workspace: "w".into(),
                name: "n".into(),
                cert_sha256: "c".into(),
                key_sha256: Some(format!("key-{id}")),
                enrolled_at: 0,
                last_seen: None,
            })
            .await
            .unwrap();
    }
    for seq in 0..20u64 {
        for id in ["s1", "s2"] {
            store.ingest(id, event(seq)).await.unwrap();
        }
    }
    let nulls = || {
        c.psql(
            "uplink",
            "SELECT count(*) FROM sensors WHERE last_seen IS NULL",
        )
    };
    // 40 requests, no UPDATE yet; this process's stats show the times all the same.
    assert_eq!(nulls(), "2");
    let stats = store.stats("w").await.unwrap();
    assert!(
        stats.sensors.iter().all(|s| s.last_seen.is_some()),
        "{stats:?}"
    );
    store.flush().await.unwrap();
    assert_eq!(nulls(), "0");
    // The flush task writes on its own too.
    let store = PostgresStore::connect(Settings {
        last_seen_flush: Duration::from_millis(100),
        ..settings(&c)
    })
    .await
    .unwrap();
    c.psql("uplink", "UPDATE sensors SET last_seen = NULL");
    store.ingest("s1", event(99)).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while nulls() != "1" {
        assert!(
            std::time::Instant::now() < deadline,
            "last_seen never written"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_in_the_url_stays_out_of_debug_and_errors() {
    let url =
        DatabaseUrl::new("postgres://uplink:s3cret@/uplink?host=/nonexistent-uplink-dir").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings {
        connect_timeout: Duration::from_secs(2),
        ..Settings::new(url, MasterKeyFile(dir.path().join("master.key")))
    };
    assert!(!format!("{settings:?}").contains("s3cret"));
    let err = PostgresStore::connect(settings).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, StoreError::Unreachable { .. }), "{err:?}");
    assert!(err.is_unavailable());
    assert!(
        text.contains("postgres://uplink:****@/uplink") && !text.contains("s3cret"),
        "{text}"
    );
    assert!(text.contains("Check that the server runs"), "{text}");
    // TLS is never silently dropped: asked for on a Unix socket, it is refused.
    let url =
        DatabaseUrl::new("postgres://uplink:s3cret@/uplink?host=/tmp&sslmode=require").unwrap();
    let err = PostgresStore::connect(Settings::new(url, MasterKeyFile(dir.path().join("k"))))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("does not speak TLS on a Unix socket") && !text.contains("s3cret"),
        "{text}"
    );
}

async fn connect_to(c: &cluster::Cluster, url: &str) -> Result<PostgresStore, StoreError> {
    PostgresStore::connect(Settings {
        connect_timeout: Duration::from_secs(5),
        ..Settings::new(DatabaseUrl::new(url).unwrap(), key_file(c))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_postgresql_verifies_the_certificate_and_the_host_name() {
    let new_ca = |name: &str| {
        let ca = uplink_pki::generate_ca(name).unwrap();
        let authority =
            uplink_pki::CertificateAuthority::from_pem(&ca.cert_pem, &ca.key_pem).unwrap();
        (ca.cert_pem, authority)
    };
    let (ca_pem, authority) = new_ca("pg-test");
    let (other_pem, _) = new_ca("someone-else");
    let server = authority.issue_server(&["localhost".into()]).unwrap();
    let c = cluster::Cluster::start_tls(&server.cert_pem, &server.key_pem);
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    let other_file = dir.path().join("other.pem");
    std::fs::write(&ca_file, &ca_pem).unwrap();
    std::fs::write(&other_file, &other_pem).unwrap();
    let query =
        |file: &std::path::Path| format!("sslmode=verify-full&sslrootcert={}", file.display());

    // The right CA and the certificate's name: connected, over TLS.
    let store = connect_to(&c, &c.tcp_url("localhost", "uplink", &query(&ca_file)))
        .await
        .unwrap();
    store.health().await.unwrap();
    assert_eq!(
        c.psql(
            "uplink",
            "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'uplink'"
        ),
        "t"
    );
    drop(store);

    // Another CA, a name the certificate does not hold, or `require` with only the system's
    // roots: refused, never connected unverified.
    for (host, q) in [
        ("localhost", query(&other_file)),
        ("127.0.0.1", query(&ca_file)),
        ("localhost", "sslmode=require".to_owned()),
    ] {
        let err = connect_to(&c, &c.tcp_url(host, "uplink", &q))
            .await
            .unwrap_err();
        let text = err.to_string();
        eprintln!("{host} {q}: {text}");
        assert!(
            text.contains("certificate") || text.contains("trust store"),
            "{host} {q}: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_keys_are_sealed_in_the_database_and_a_wrong_or_missing_master_key_is_refused() {
    let c = cluster::Cluster::start().unwrap();
    let store = PostgresStore::connect(settings(&c)).await.unwrap();
    store
        .create_workspace(WorkspaceRecord {
            name: "w".into(),
            domain: "uplink.localhost".into(),
            public_port: 443,
            ca_cert_pem: "c".into(),
            ca_key_pem: "-----BEGIN PRIVATE KEY-----secret".into(),
            ca_sha256: "h".into(),
            access_key_sha256: "a".into(),
            created_at: 0,
            access_key: Some("the-access-key".into()),
        })
        .await
        .unwrap();
    let raw_access = c.psql("uplink", "SELECT access_key FROM workspaces");
    assert!(
        raw_access.starts_with("sealed:v1:") && !raw_access.contains("the-access-key"),
        "{raw_access}"
    );
    let raw = c.psql("uplink", "SELECT ca_key_pem FROM workspaces");
    assert!(
        raw.starts_with("sealed:v1:") && !raw.contains("PRIVATE") && !raw.contains("secret"),
        "{raw}"
    );
    assert_eq!(
        store.workspace("w").await.unwrap().unwrap().ca_key_pem,
        "-----BEGIN PRIVATE KEY-----secret"
    );
    drop(store);
    // A row someone wrote plain is sealed at the next start.
    c.psql(
        "uplink",
        "INSERT INTO workspaces VALUES ('p', 'd', 443, 'c', 'plain-key', 'h', 'a', 0)",
    );
    let store = PostgresStore::connect(settings(&c)).await.unwrap();
    assert!(c
        .psql(
            "uplink",
            "SELECT ca_key_pem FROM workspaces WHERE name = 'p'"
        )
        .starts_with("sealed:v1:"));
    assert_eq!(
        store.workspace("p").await.unwrap().unwrap().ca_key_pem,
        "plain-key"
    );
    drop(store);
    // Another key: refused. The key file gone: refused, none made in its place.
    let other = c.socket_dir.join("other.key");
    std::fs::write(&other, format!("{}\n", "cd".repeat(32))).unwrap();
    let err = PostgresStore::connect(Settings {
        master_key: MasterKeyFile(other),
        ..settings(&c)
    })
    .await
    .unwrap_err();
    assert!(matches!(err, StoreError::MasterKeyWrong { .. }), "{err}");
    std::fs::remove_file(&key_file(&c).0).unwrap();
    let err = PostgresStore::connect(settings(&c)).await.unwrap_err();
    assert!(matches!(err, StoreError::MasterKeyMissing { .. }), "{err}");
    assert!(!key_file(&c).0.exists());
}

/// A version-2 database as that build left it, with events of `sensor` 1: seqs 0..25 received
/// 40 days ago, 25..40 now.
fn version_2_database(c: &cluster::Cluster) {
    let now = now_ms();
    let old = now - 40 * retention::DAY_MS;
    c.psql(
        "uplink",
        &format!(
            "BEGIN;
             CREATE TABLE uplink_schema (version INTEGER PRIMARY KEY, name TEXT NOT NULL, compatible_back_to INTEGER NOT NULL, applied_at BIGINT NOT NULL);
             {}
             {}
             INSERT INTO uplink_schema VALUES (1, 'initial', 1, 0), (2, 'meta (sealed CA keys)', 2, 0);
             INSERT INTO workspaces VALUES ('w', 'uplink.localhost', 443, 'c', 'k', 'h', 'a', 0, NULL);
             INSERT INTO sensors (sensor_id, workspace, name, cert_sha256, enrolled_at) VALUES ('s1', 'w', 'n', 'c', 0);
             INSERT INTO events SELECT 1, g, 'e', CASE WHEN g < 25 THEN {old} ELSE {now} END, '{{}}' FROM generate_series(0, 39) g;
             INSERT INTO kind_counts VALUES (1, 'e', 40);
             COMMIT;",
            migrate::MIGRATIONS[0].sql,
            migrate::MIGRATIONS[1].sql,
        ),
    );
}

fn events_of(seqs: std::ops::Range<u64>) -> Vec<NewEvent> {
    seqs.map(|seq| NewEvent {
        seq,
        kind: "e".into(),
        body: "{}".into(),
    })
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_2_events_become_the_legacy_partition_and_stay_exactly_once() {
    let c = cluster::Cluster::start().unwrap();
    version_2_database(&c);
    let store = PostgresStore::connect(settings(&c)).await.unwrap();
    assert_eq!(
        c.psql(
            "uplink",
            "SELECT count(*) FROM events_legacy; SELECT count(*) FROM seen"
        ),
        "40\n40"
    );
    // Version 13: no per-row foreign-key trigger on the tables every event is written to, the
    // legacy partition included (INSERT_EVENTS locks the sensor's row once per batch instead).
    assert_eq!(
        c.psql(
            "uplink",
            "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND conrelid IN ('events'::regclass, 'seen'::regclass, 'events_legacy'::regclass)"
        ),
        "0"
    );
    assert_eq!(store.stats("w").await.unwrap().total, 40);
    // Retries of events stored before the upgrade are duplicates; new ones are stored.
    let r = store.ingest("s1", events_of(30..45)).await.unwrap();
    assert_eq!((r.accepted, r.duplicates), (5, 10));
    // 30 days: the legacy partition still holds recent events, so it is pruned in chunks.
    let report = store
        .prune(PruneOptions {
            now_ms: now_ms(),
            chunk: 10,
        })
        .await
        .unwrap();
    assert_eq!(report.total(), 25);
    assert!(report.partitions_dropped.is_empty());
    assert_eq!(store.stats("w").await.unwrap().total, 20);
    // Sixty days on, all of it is past retention: dropped whole, and today's events are stored
    // in a day partition from then on.
    let later = now_ms() + 60 * retention::DAY_MS;
    let prune_later = async || {
        store
            .prune(PruneOptions {
                now_ms: later,
                chunk: 10,
            })
            .await
            .unwrap()
    };
    let report = prune_later().await;
    assert_eq!(report.total(), 20);
    // Dropped whole, now or (when its lock was not had in time: autovacuum, a loaded machine)
    // emptied in chunks and dropped by a later run.
    let mut dropped = report.partitions_dropped;
    for _ in 0..20 {
        if dropped.iter().any(|p| p == "events_legacy") {
            break;
        }
        dropped.extend(prune_later().await.partitions_dropped);
    }
    assert!(dropped.iter().any(|p| p == "events_legacy"), "{dropped:?}");
    assert_eq!(
        c.psql(
            "uplink",
            "SELECT count(*) FROM uplink_meta WHERE key = 'events_legacy_until'"
        ),
        "0"
    );
    let r = store.ingest("s1", events_of(0..50)).await.unwrap();
    assert_eq!((r.accepted, r.duplicates), (5, 45));
    assert_eq!(store.stats("w").await.unwrap().total, 5);
    // Another process (connected before the drop) finds the partitions again by itself.
    drop(store);
    let again = PostgresStore::connect(settings(&c)).await.unwrap();
    let r = again.ingest("s1", events_of(50..52)).await.unwrap();
    assert_eq!(r.accepted, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_prunes_at_a_time() {
    let c = cluster::Cluster::start().unwrap();
    let store = PostgresStore::connect(settings(&c)).await.unwrap();
    let (client, conn) = tokio_postgres::connect(&c.url("uplink"), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .execute(
            "SELECT pg_advisory_lock($1)",
            &[&uplink_store_postgres::retention::RETENTION_LOCK],
        )
        .await
        .unwrap();
    let report = store.prune(PruneOptions::now()).await.unwrap();
    assert!(
        report
            .skipped
            .as_deref()
            .is_some_and(|s| s.contains("another process is pruning")),
        "{report:?}"
    );
    client
        .execute(
            "SELECT pg_advisory_unlock($1)",
            &[&uplink_store_postgres::retention::RETENTION_LOCK],
        )
        .await
        .unwrap();
    let report = store.prune(PruneOptions::now()).await.unwrap();
    assert_eq!(report.skipped, None);
    // The lock was released after the run: another connection takes it at once.
    let got: bool = client
        .query_one(
            "SELECT pg_try_advisory_lock($1)",
            &[&uplink_store_postgres::retention::RETENTION_LOCK],
        )
        .await
        .unwrap()
        .get(0);
    assert!(got);
}

fn sensor_record(id: &str) -> SensorRecord {
    SensorRecord {
        sensor_id: id.into(),
        workspace: "w".into(),
        name: "host".into(),
        cert_sha256: "22".repeat(32),
        key_sha256: Some(format!("key-of-{id}")),
        enrolled_at: 0,
        last_seen: None,
    }
}

/// Waits (bounded) for a condition no process announces.
async fn until(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !cond().await {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_batches_share_one_commit_and_a_bad_one_fails_alone() {
    let c = cluster::Cluster::start().unwrap();
    let store = PostgresStore::connect(Settings {
        ingest_writers: 1,
        ..settings(&c)
    })
    .await
    .unwrap();
    create_workspace_w(&store).await;
    for i in 0..20 {
        store
            .add_sensor(sensor_record(&format!("s{i}")))
            .await
            .unwrap();
    }
    // Hold the writer's first group in its statement: another session locks a table it writes.
    let (locker, conn) = tokio_postgres::connect(&c.url("uplink"), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    locker
        .batch_execute("BEGIN; LOCK TABLE kind_counts IN EXCLUSIVE MODE")
        .await
        .unwrap();
    let before = store.ingest_groups();
    let ingest = |i: usize, kind: &'static str| {
        let store = store.clone();
        tokio::spawn(async move {
            let batch = (0..10u64)
                .map(|seq| NewEvent {
                    seq,
                    kind: kind.into(),
                    body: "{}".into(),
                })
                .collect();
            store.ingest(&format!("s{i}"), batch).await
        })
    };
    let first = ingest(0, "e");
    until("the first group waits for the lock", async || {
        locker
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'uplink' AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
            == 1
    })
    .await;
    // Meanwhile 19 more arrive, one of them a batch PostgreSQL refuses (a NUL in its text).
    let rest: Vec<_> = (1..20)
        .map(|i| ingest(i, if i == 7 { "bad\0kind" } else { "e" }))
        .collect();
    until("the others queue behind the writer", async || {
        store.queued_batches() == 19
    })
    .await;
    locker.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(first.await.unwrap().unwrap().accepted, 10);
    for (i, t) in (1..20).zip(rest) {
        let r = t.await.unwrap();
        if i == 7 {
            let e = r.unwrap_err();
            assert!(matches!(e, StoreError::Backend { .. }), "{e:?}");
        } else {
            assert_eq!(r.unwrap().accepted, 10, "s{i}");
        }
    }
    // The first group, then the 19 together: the bad one split them, each then alone.
    let groups = store.ingest_groups() - before;
    assert_eq!(
        groups,
        1 + 18,
        "one group then each good batch alone after the split"
    );
    assert_eq!(store.stats("w").await.unwrap().total, 190);
    assert_eq!(c.psql("uplink", "SELECT count(*) FROM seen"), "190");

    // Without a bad batch, waiting batches share one commit.
    locker
        .batch_execute("BEGIN; LOCK TABLE kind_counts IN EXCLUSIVE MODE")
        .await
        .unwrap();
    let before = store.ingest_groups();
    let store2 = store.clone();
    let first = tokio::spawn(async move {
        store2
            .ingest(
                "s0",
                (10..20)
                    .map(|seq| NewEvent {
                        seq,
                        kind: "e".into(),
                        body: "{}".into(),
                    })
                    .collect(),
            )
            .await
    });
    until("the first group waits for the lock", async || {
        locker
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'uplink' AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
            == 1
    })
    .await;
    // Retries of stored batches and one new batch, all waiting together.
    let rest: Vec<_> = (1..20).map(|i| ingest(i, "e")).collect();
    until("the others queue behind the writer", async || {
        store.queued_batches() == 19
    })
    .await;
    locker.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(first.await.unwrap().unwrap().accepted, 10);
    for (i, t) in (1..20).zip(rest) {
        let r = t.await.unwrap().unwrap();
        // s7's first batch failed: this one is new; the others are retries.
        let want = if i == 7 { (10, 0) } else { (0, 10) };
        assert_eq!((r.accepted, r.duplicates), want, "s{i}");
    }
    assert_eq!(store.ingest_groups() - before, 2);
    assert_eq!(store.stats("w").await.unwrap().total, 210);
}

/// Fleet evaluation runs once across replicas: while another session (a replica evaluating)
/// holds the fleet lock, a round is skipped, not run twice; a sensor's own update after its
/// report waits for the lock instead of skipping.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_evaluation_runs_once_across_replicas() {
    let c = cluster::Cluster::start().unwrap();
    let store = PostgresStore::connect(settings(&c)).await.unwrap();
    let other = other_connection(&c).await;
    let policy = FleetPolicy::default();
    other
        .execute(
            "SELECT pg_advisory_lock($1)",
            &[&uplink_store_postgres::FLEET_LOCK],
        )
        .await
        .unwrap();
    let e = store.evaluate_fleet(now_ms(), &policy, None).await.unwrap();
    assert!(
        !e.ran,
        "evaluated while another replica held the lock: {e:?}"
    );
    let waiting = tokio::spawn({
        let store = store.clone();
        async move {
            store
                .evaluate_fleet(now_ms(), &FleetPolicy::default(), Some(("w", "s")))
                .await
        }
    });
    // The update waits on the lock (its session shows in pg_locks, not granted).
    let held = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let n: i64 = other
                .query_one(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            if n > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        held.is_ok(),
        "the sensor's update did not wait for the lock"
    );
    assert!(!waiting.is_finished());
    other
        .execute(
            "SELECT pg_advisory_unlock($1)",
            &[&uplink_store_postgres::FLEET_LOCK],
        )
        .await
        .unwrap();
    assert!(waiting.await.unwrap().unwrap().ran);
    assert!(
        store
            .evaluate_fleet(now_ms(), &policy, None)
            .await
            .unwrap()
            .ran
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_held_by_a_long_reader_is_emptied_in_chunks_then_dropped_later() {
    let c = cluster::Cluster::start().unwrap();
    let store = PostgresStore::connect(settings(&c)).await.unwrap();
    create_workspace_w(&store).await;
    store.add_sensor(sensor_record("s0")).await.unwrap();
    let now = now_ms();
    let old = now - 40 * retention::DAY_MS;
    let events: Vec<StoredEvent> = (0..30u64)
        .map(|seq| StoredEvent {
            sensor_id: "s0".into(),
            seq,
            kind: "e".into(),
            received_at: old,
            body: "{}".into(),
        })
        .collect();
    store.import_events("s0", events).await.unwrap();
    let partition = format!("events_p{}", retention::day_of(old));
    // A reader (an export, say) in the middle of a long transaction over that partition.
    let (reader, conn) = tokio_postgres::connect(&c.url("uplink"), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    reader
        .batch_execute(&format!("BEGIN; SELECT count(*) FROM {partition}"))
        .await
        .unwrap();
    let report = store
        .prune(PruneOptions {
            now_ms: now,
            chunk: 7,
        })
        .await
        .unwrap();
    assert!(report.partitions_dropped.is_empty(), "{report:?}");
    assert_eq!(report.total(), 30);
    assert_eq!(store.stats("w").await.unwrap().total, 0);
    // A retry is a duplicate all the same.
    let r = store.ingest("s0", events_of(0..30)).await.unwrap();
    assert_eq!((r.accepted, r.duplicates), (0, 30));
    reader.batch_execute("COMMIT").await.unwrap();
    // Now a run drops it (a few runs, should autovacuum or a loaded machine delay its lock).
    let mut dropped = Vec::new();
    for _ in 0..20 {
        let report = store
            .prune(PruneOptions {
                now_ms: now,
                chunk: 7,
            })
            .await
            .unwrap();
        assert_eq!(report.total(), 0);
        dropped.extend(report.partitions_dropped);
        if !dropped.is_empty() {
            break;
        }
    }
    assert_eq!(dropped, vec![partition]);
}

// Webhook secrets sealed at rest (issue #23).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_secrets_are_sealed_in_the_database_and_a_plain_one_is_sealed_at_connect() {
    let c = cluster::Cluster::start().unwrap();
    let store = PostgresStore::connect(settings(&c)).await.unwrap();
    create_workspace_w(&store).await;
    let hook = Webhook {
        url: "https://hooks.example/a".into(),
        secret: "webhook-secret-0123456789".into(),
    };
    store.set_webhooks("w", vec![hook.clone()]).await.unwrap();
    // Sealed in the column, read back whole.
    let check = |store: PostgresStore| {
        let raw = c.psql("uplink", "SELECT secret FROM webhooks");
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
    // As an earlier build stored it: plain. The next connect seals it, and it reads the same.
    c.psql(
        "uplink",
        "UPDATE webhooks SET secret = 'webhook-secret-0123456789'",
    );
    check(PostgresStore::connect(settings(&c)).await.unwrap()).await;
}

/// `events` and `seen` have no foreign key to `sensors` (version 13: a trigger per event cost
/// 40 % of the database's CPU per event): the ingest statement's lock on the sensor's row and the
/// deletion's lock keep them consistent instead. A workspace deleted while its sensors upload
/// leaves no event and no `seen` row of a sensor that is gone, and every batch either was stored
/// before the deletion (and went with it) or is refused as of a sensor no longer enrolled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workspace_deleted_while_its_sensors_upload_leaves_no_orphan_rows() {
    let c = cluster::Cluster::start().unwrap();
    let store = PostgresStore::connect(settings(&c)).await.unwrap();
    create_workspace_w(&store).await;
    let sensors = 8;
    for i in 0..sensors {
        store
            .add_sensor(sensor_record(&format!("s{i}")))
            .await
            .unwrap();
    }
    // Batches stored per sensor.
    let stored: std::sync::Arc<Vec<std::sync::atomic::AtomicU64>> =
        std::sync::Arc::new((0..sensors).map(|_| Default::default()).collect());
    let uploads: Vec<_> = (0..sensors)
        .map(|i| {
            let (store, stored) = (store.clone(), stored.clone());
            tokio::spawn(async move {
                for b in 0u64.. {
                    match store
                        .ingest(&format!("s{i}"), events_of(b * 50..b * 50 + 50))
                        .await
                    {
                        Ok(r) => {
                            assert_eq!(r.accepted, 50);
                            stored[i].fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                        Err(StoreError::NoSuchSensor(_)) => return b,
                        Err(e) => panic!("s{i}, batch {b}: {e}"),
                    }
                }
                unreachable!()
            })
        })
        .collect();
    until("every sensor stored a batch", async || {
        stored
            .iter()
            .all(|n| n.load(std::sync::atomic::Ordering::SeqCst) > 0)
    })
    .await;
    let deleted = store.delete_workspace("w").await.unwrap();
    assert_eq!(deleted.sensors, sensors as u64);
    assert!(deleted.events > 0);
    for u in uploads {
        assert!(u.await.unwrap() > 0);
    }
    assert_eq!(
        c.psql(
            "uplink",
            "SELECT count(*) FROM events WHERE sensor NOT IN (SELECT id FROM sensors);
             SELECT count(*) FROM seen WHERE sensor NOT IN (SELECT id FROM sensors)"
        ),
        "0\n0"
    );
}

/// INSERT_EVENTS writes `seen` with a plain INSERT (no speculative insertion): when another
/// transaction (another replica given the same batch again) stores some of the same seqs after
/// the statement's snapshot, the statement waits for it, fails on the unique key, and the group is
/// run again, counting them as duplicates: each event once, and no error for the sensor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_events_stored_concurrently_by_another_replica_are_duplicates_not_errors() {
    let c = cluster::Cluster::start().unwrap();
    let store = PostgresStore::connect(settings(&c)).await.unwrap();
    create_workspace_w(&store).await;
    store.add_sensor(sensor_record("s1")).await.unwrap();
    // Today's partition exists: the other "replica" below writes into it.
    store.ingest("s1", events_of(0..1)).await.unwrap();
    let other = other_connection(&c).await;
    // The other replica stores seqs 5 and 6 and has not committed yet.
    other
        .batch_execute(&format!(
            "BEGIN;
             INSERT INTO seen SELECT id, g FROM sensors, generate_series(5, 6) g WHERE sensor_id = 's1';
             INSERT INTO events SELECT id, g, 'e', {now}, '{{}}' FROM sensors, generate_series(5, 6) g WHERE sensor_id = 's1';
             UPDATE kind_counts SET n = n + 2 WHERE sensor = (SELECT id FROM sensors WHERE sensor_id = 's1');",
            now = now_ms()
        ))
        .await
        .unwrap();
    let ingest = {
        let store = store.clone();
        tokio::spawn(async move { store.ingest("s1", events_of(0..10)).await })
    };
    until_one_waits_for_a_lock(&other, "this replica's batch waits for the other's seqs").await;
    other.batch_execute("COMMIT").await.unwrap();
    let r = ingest.await.unwrap().unwrap();
    // 0 was stored before, 5 and 6 by the other replica.
    assert_eq!((r.accepted, r.duplicates), (7, 3));
    assert_eq!(store.stats("w").await.unwrap().total, 10);
    assert_eq!(
        c.psql(
            "uplink",
            "SELECT count(*), count(DISTINCT seq) FROM events; SELECT count(*) FROM seen"
        ),
        "10|10\n10"
    );
}

/// A prune that raises a sensor's watermark past a never-stored seq records that seq's hole in
/// the same transaction. An ingest whose statement started before that prune committed, and
/// waited for its lock, must still store the seq: it decides by the watermark of its own snapshot
/// (found in review: deciding by the locked, newer watermark, whose holes the snapshot cannot
/// see, answered it "duplicate" and the sensor dropped it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seq_in_a_hole_a_concurrent_prune_records_is_stored_not_answered_duplicate() {
    let c = cluster::Cluster::start().unwrap();
    let store = PostgresStore::connect(settings(&c)).await.unwrap();
    create_workspace_w(&store).await;
    store.add_sensor(sensor_record("s1")).await.unwrap();
    // Seqs 0 and 20 stored; 1..=19 never were (a batch that failed while a later one committed).
    store.ingest("s1", events_of(0..1)).await.unwrap();
    store.ingest("s1", events_of(20..21)).await.unwrap();
    let other = other_connection(&c).await;
    // What a prune chunk does under the sensor's lock, not committed yet: it removed 0 and 20,
    // recorded the hole 1..=19 and raised the watermark to 20.
    other
        .batch_execute(
            "BEGIN;
             SELECT 1 FROM sensors WHERE sensor_id = 's1' FOR UPDATE;
             DELETE FROM events WHERE sensor = (SELECT id FROM sensors WHERE sensor_id = 's1');
             INSERT INTO pruned_holes SELECT id, 1, 19 FROM sensors WHERE sensor_id = 's1';
             UPDATE sensors SET pruned_through = 20 WHERE sensor_id = 's1';",
        )
        .await
        .unwrap();
    let ingest = {
        let store = store.clone();
        tokio::spawn(async move { store.ingest("s1", events_of(5..8)).await })
    };
    until_one_waits_for_a_lock(&other, "the batch waits for the prune's lock").await;
    other.batch_execute("COMMIT").await.unwrap();
    let r = ingest.await.unwrap().unwrap();
    assert_eq!(
        (r.accepted, r.duplicates),
        (3, 0),
        "seqs 5..8 were never stored"
    );
    // A retry of them, and of the pruned 0 and 20, are duplicates.
    let again = store.ingest("s1", events_of(5..8)).await.unwrap();
    assert_eq!((again.accepted, again.duplicates), (0, 3));
    let pruned = store.ingest("s1", events_of(0..1)).await.unwrap();
    assert_eq!((pruned.accepted, pruned.duplicates), (0, 1));
    assert_eq!(
        c.psql("uplink", "SELECT count(*), min(seq), max(seq) FROM events"),
        "3|5|7"
    );
}

/// A retried seq whose first arrival (another replica) commits after the retry's statement began,
/// while a prune takes that seq out of its hole and clears its `seen` row: the retry must be a
/// duplicate. Found in review: the statement took its snapshot before waiting for the prune's
/// lock, so it saw the old hole and not the first arrival's `seen` row, and its insert into
/// `seen` met no row any more (the prune had deleted it): the seq was stored twice. Ingest now
/// locks the sensor's row before the snapshot its statement decides by (group.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_racing_a_prune_that_clears_the_first_arrivals_seen_row_is_a_duplicate() {
    let c = cluster::Cluster::start().unwrap();
    let store = PostgresStore::connect(settings(&c)).await.unwrap();
    create_workspace_w(&store).await;
    store.add_sensor(sensor_record("s1")).await.unwrap();
    // Seqs 0 and 20 stored, then pruned: watermark 20, the hole 1..=19 (never stored).
    store.ingest("s1", events_of(0..1)).await.unwrap();
    store.ingest("s1", events_of(20..21)).await.unwrap();
    c.psql(
        "uplink",
        "DELETE FROM events; DELETE FROM seen;
         INSERT INTO pruned_holes SELECT id, 1, 19 FROM sensors WHERE sensor_id = 's1';
         UPDATE sensors SET pruned_through = 20 WHERE sensor_id = 's1';",
    );
    // A prune step holds the sensor's row.
    let prune = other_connection(&c).await;
    prune
        .batch_execute("BEGIN; SELECT 1 FROM sensors WHERE sensor_id = 's1' FOR UPDATE;")
        .await
        .unwrap();
    // The retry of seq 5 (replica B) waits for it.
    let retry = {
        let store = store.clone();
        tokio::spawn(async move { store.ingest("s1", events_of(5..6)).await })
    };
    until_one_waits_for_a_lock(&prune, "the retry waits for the prune's lock").await;
    // Meanwhile the first arrival of seq 5 (replica A) commits its `seen` row...
    let first = other_connection(&c).await;
    first
        .batch_execute("INSERT INTO seen SELECT id, 5 FROM sensors WHERE sensor_id = 's1'")
        .await
        .unwrap();
    // ...and the prune takes 5 out of the hole (shrink_holes) and deletes its `seen` row, now
    // below the watermark and in no hole (clear_seen), and commits.
    prune
        .batch_execute(
            "DELETE FROM pruned_holes;
             INSERT INTO pruned_holes SELECT id, lo, hi FROM sensors, (VALUES (1, 4), (6, 19)) AS h (lo, hi)
                 WHERE sensor_id = 's1';
             DELETE FROM seen WHERE seq = 5;
             COMMIT;",
        )
        .await
        .unwrap();
    let r = retry.await.unwrap().unwrap();
    assert_eq!(
        (r.accepted, r.duplicates),
        (0, 1),
        "seq 5 had arrived already: a retry is a duplicate"
    );
    assert_eq!(c.psql("uplink", "SELECT count(*) FROM events"), "0");
}

/// Late arrivals into a hole retention passed are deduplicated by their `seen` rows, which the
/// next prune removes after taking their seqs out of the hole (the watermark then makes them
/// duplicates): no `seen` row stays below the watermark, and nothing is stored twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seen_rows_of_late_arrivals_into_holes_go_with_the_next_prune() {
    const DAY: i64 = 86_400_000;
    let c = cluster::Cluster::start().unwrap();
    let store = PostgresStore::connect(settings(&c)).await.unwrap();
    create_workspace_w(&store).await;
    store.add_sensor(sensor_record("s")).await.unwrap();
    let now = now_ms();
    for (seqs, age) in [(0..10, 45 * DAY), (20..30, 45 * DAY), (30..35, DAY)] {
        let events = seqs
            .map(|seq| StoredEvent {
                sensor_id: "s".into(),
                seq,
                kind: "old".into(),
                received_at: now - age,
                body: format!("{{\"n\":{seq}}}"),
            })
            .collect();
        store.import_events("s", events).await.unwrap();
    }
    let prune = || async {
        store
            .prune(PruneOptions {
                now_ms: now,
                chunk: 2,
            })
            .await
            .unwrap()
    };
    let other = other_connection(&c).await;
    // (`seen` rows at or below the watermark, recorded holes)
    let below = async || -> (i64, Vec<(i64, i64)>) {
        let seen = other
            .query_one(
                "SELECT count(*) FROM seen n JOIN sensors s ON s.id = n.sensor WHERE n.seq <= s.pruned_through",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        let holes = other
            .query("SELECT lo, hi FROM pruned_holes ORDER BY lo", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        (seen, holes)
    };
    prune().await;
    assert_eq!(store.watermarks("w").await.unwrap()["s"], 29);
    assert_eq!(below().await, (0, vec![(10, 19)]));
    let mut late = event(12);
    for seq in [13, 14, 17] {
        late.extend(event(seq));
    }
    let r = store.ingest("s", late).await.unwrap();
    assert_eq!((r.accepted, r.duplicates), (4, 0));
    assert_eq!(below().await, (4, vec![(10, 19)]));
    prune().await;
    assert_eq!(below().await, (0, vec![(10, 11), (15, 16), (18, 19)]));
    let holes = store.pruned_holes("w").await.unwrap();
    assert_eq!(holes["s"], [(10, 11), (15, 16), (18, 19)]);
    // The rest of the hole arrives, and every retry after: each seq stored once.
    let r = store.ingest("s", events_of(10..20)).await.unwrap();
    assert_eq!((r.accepted, r.duplicates), (6, 4));
    prune().await;
    assert_eq!(below().await, (0, vec![]));
    let r = store.ingest("s", events_of(0..35)).await.unwrap();
    assert_eq!((r.accepted, r.duplicates), (0, 35));
    assert_eq!(store.stats("w").await.unwrap().total, 5 + 10);
}
