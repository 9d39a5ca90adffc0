//! The latency of each ingest (one commit group) under a steady load, and what the checkpointer
//! did: `cargo run --release --all-features -p uplink-store-sqlite --example ingest_latency
//! [BATCHES] [EVENTS] [IN_FLIGHT] [inline]` (issue #28: commits that took 40–70 ms when SQLite
//! checkpointed inside them). Events of 298 bytes, like bench/vs-fluentbit.sh's lines.
//! `inline`: no checkpointer passes, the writer copies the whole WAL back after the commit
//! that crosses 1,000 frames (what SQLite's auto-checkpoint did), for comparison.

use std::time::{Duration, Instant};

use uplink_store::*;
use uplink_store_sqlite::SqliteStore;

// The records the store's tests use: a workspace and its sensors.
#[path = "../tests/common/mod.rs"]
mod common;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let inline = std::env::args().any(|a| a == "inline");
    let mut args = std::env::args()
        .skip(1)
        .filter(|a| a != "inline")
        .map(|a| a.parse::<u64>().unwrap());
    let batches = args.next().unwrap_or(400);
    let per = args.next().unwrap_or(5000);
    let inflight = args.next().unwrap_or(2);
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), true).unwrap();
    if inline {
        store.set_checkpoint_bounds(uplink_store_sqlite::CheckpointBounds {
            passive_frames: u32::MAX,
            restart_frames: 1000,
        });
    }
    store
        .create_workspace(common::workspace("w"))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    let start = Instant::now();
    for t in 0..inflight {
        let id = format!("s{t}");
        store.add_sensor(common::sensor(&id)).await.unwrap();
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut took = Vec::new();
            for b in 0..batches / inflight {
                let events = (b * per..(b + 1) * per)
                    .map(|seq| NewEvent {
                        seq,
                        kind: "log".into(),
                        body: format!(
                            "{{\"seq\":{seq:>10},\"kind\":\"log\",\"data\":{{\"line\":\"{}\"}}}}",
                            "x".repeat(240)
                        ),
                    })
                    .collect();
                let t = Instant::now();
                store.ingest(&id, events).await.unwrap();
                took.push(t.elapsed());
            }
            took
        }));
    }
    let mut took: Vec<Duration> = Vec::new();
    for t in tasks {
        took.extend(t.await.unwrap());
    }
    let wall = start.elapsed();
    took.sort();
    let q =
        |p: f64| took[((took.len() as f64 * p) as usize).min(took.len() - 1)].as_secs_f64() * 1e3;
    let wal = std::fs::metadata(dir.path().join("uplink.db-wal"))
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "{} ingests of {per}: p50 {:.1} p90 {:.1} p99 {:.1} max {:.1} ms; over 40 ms: {}; {:.0} events/s; WAL {:.1} MiB; {:?}",
        took.len(),
        q(0.5),
        q(0.9),
        q(0.99),
        q(1.0),
        took.iter().filter(|d| d.as_millis() > 40).count(),
        (batches / inflight * inflight * per) as f64 / wall.as_secs_f64(),
        wal as f64 / 1048576.0,
        store.checkpoint_stats()
    );
}
