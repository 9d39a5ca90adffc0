//! Checkpoints off the commit path (issue #28, `checkpoint.rs`): the writer's commits never
//! checkpoint; the checkpointer thread copies the WAL back and keeps its file bounded, and
//! every event committed is there, once.

use std::path::Path;
use std::time::{Duration, Instant};

use uplink_store::*;
use uplink_store_sqlite::{CheckpointBounds, CheckpointStats, SqliteStore};

mod common;
use common::{sensor, workspace};

/// Events of ~1 KiB: a batch of 100 is ~4 WAL frames of 32 KiB.
fn events(seqs: impl IntoIterator<Item = u64>) -> Vec<NewEvent> {
    seqs.into_iter()
        .map(|seq| NewEvent {
            seq,
            kind: "e".into(),
            body: format!("{{\"seq\":{seq},\"pad\":\"{}\"}}", "x".repeat(1000)),
        })
        .collect()
}

/// Waits (generously: the suite runs loaded) until the checkpointer's counters satisfy `done`
/// (its passes run on their own thread, after the commits that asked for them).
fn wait_for(store: &SqliteStore, what: &str, done: impl Fn(CheckpointStats) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stats = store.checkpoint_stats();
        if done(stats) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: still {stats:?} after 60 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn wal_len(dir: &Path) -> u64 {
    std::fs::metadata(dir.join("uplink.db-wal"))
        .map(|m| m.len())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checkpointer_copies_the_wal_back_and_bounds_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), true).unwrap();
    let bounds = CheckpointBounds {
        passive_frames: 8,
        restart_frames: 32,
    };
    store.set_checkpoint_bounds(bounds);
    store.create_workspace(workspace("w")).await.unwrap();
    store.add_sensor(sensor("s1")).await.unwrap();
    assert_eq!(store.checkpoint_stats(), CheckpointStats::default());

    // 60 batches of 100 events: ~240 frames, far past both bounds.
    let mut stored = 0;
    for b in 0..60u64 {
        let outcome = store
            .ingest("s1", events(b * 100..(b + 1) * 100))
            .await
            .unwrap();
        stored += outcome.accepted;
    }
    assert_eq!(stored, 6000);
    let s = store.clone();
    tokio::task::spawn_blocking(move || {
        wait_for(&s, "a passive checkpoint and a restart", |c| {
            c.passive >= 1 && c.restart >= 1
        })
    })
    .await
    .unwrap();

    // Once restarted, the next commit writes the WAL from its beginning, and the file is cut
    // back to the restart bound (journal_size_limit). A restart can find a passive pass
    // running (busy): the next commit past the bound tries again.
    let page_size: u64 = rusqlite::Connection::open(dir.path().join("uplink.db"))
        .unwrap()
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .unwrap();
    assert_eq!(page_size, 32 * 1024, "a new store's page size");
    let limit = u64::from(bounds.restart_frames) * page_size;
    let mut seq = 6000;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        store.ingest("s1", events(seq..seq + 10)).await.unwrap();
        seq += 10;
        if wal_len(dir.path()) <= limit {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the WAL stays at {} bytes, past {limit}: {:?}",
            wal_len(dir.path()),
            store.checkpoint_stats()
        );
    }

    // Every event is there, once.
    assert_eq!(store.stats("w").await.unwrap().total, seq);
    assert_eq!(store.checkpoint_stats().failed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn below_the_bound_nothing_is_checkpointed_and_a_reopened_store_has_every_event() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SqliteStore::open(dir.path(), true).unwrap();
        store.set_checkpoint_bounds(CheckpointBounds {
            passive_frames: 100_000,
            restart_frames: 400_000,
        });
        store.create_workspace(workspace("w")).await.unwrap();
        store.add_sensor(sensor("s1")).await.unwrap();
        for b in 0..20u64 {
            store
                .ingest("s1", events(b * 100..(b + 1) * 100))
                .await
                .unwrap();
        }
        assert_eq!(store.checkpoint_stats(), CheckpointStats::default());
        // The commits are in the WAL, none copied back by the writer.
        assert!(wal_len(dir.path()) > 2000 * 1024, "{}", wal_len(dir.path()));
    }
    let store = SqliteStore::open(dir.path(), false).unwrap();
    assert_eq!(store.stats("w").await.unwrap().total, 2000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_on_an_old_snapshot_delays_the_restart_but_no_ingest() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), true).unwrap();
    store.set_checkpoint_bounds(CheckpointBounds {
        passive_frames: 8,
        restart_frames: 120,
    });
    store.create_workspace(workspace("w")).await.unwrap();
    store.add_sensor(sensor("s1")).await.unwrap();
    store.ingest("s1", events(0..100)).await.unwrap();

    // Another process's long read (an export): a snapshot held across the commits below.
    let reader = rusqlite::Connection::open(dir.path().join("uplink.db")).unwrap();
    reader.execute_batch("BEGIN").unwrap();
    let seen: i64 = reader
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(seen, 100);
    for b in 1..40u64 {
        store
            .ingest("s1", events(b * 100..(b + 1) * 100))
            .await
            .unwrap();
    }
    let held = store.checkpoint_stats();
    assert!(held.busy >= 1, "{held:?}");
    // Backing off (a quarter of the bound, ~7 commits of ~4 frames here): not one attempt
    // per commit past the bound.
    assert!(held.busy + held.restart <= 15, "{held:?}");
    assert_eq!(store.stats("w").await.unwrap().total, 4000);

    // The snapshot released, a later commit restarts the WAL.
    reader.execute_batch("COMMIT").unwrap();
    drop(reader);
    let mut seq = 4000;
    let deadline = Instant::now() + Duration::from_secs(60);
    while store.checkpoint_stats().restart <= held.restart {
        store.ingest("s1", events(seq..seq + 100)).await.unwrap();
        seq += 100;
        assert!(
            Instant::now() < deadline,
            "no restart after the reader left: {:?}",
            store.checkpoint_stats()
        );
    }
    assert_eq!(store.stats("w").await.unwrap().total, seq);
}
