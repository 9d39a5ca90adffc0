//! The SQLite store's ingest alone: CPU per event with no network, TLS or decompression in the
//! way (issue #28's "service ≤ 1.5 µs per event into SQLite" is mostly this).
//!
//! Builds every batch first (not timed; they are all held in memory, so mind EVENTS × BODY_BYTES),
//! then ingests them through `Store::ingest_batch`, as the service does, with several batches in
//! flight on a two-worker runtime and the service's malloc settings, checkpoints what the WAL
//! still holds (so that every run pays for all of its copying), and prints events/s and the
//! process's CPU µs per event (user and system, every thread: the writer, the checkpointer, the
//! runtime). `bench/ingest.sh` measures the whole service with real sensors;
//! this is the instrument for changes to the store itself, whose effect there would be lost in
//! the run-to-run spread of fifty sensor processes.
//!
//! ```text
//! cargo run --release -p uplink-store-sqlite --example ingest_cpu -- [EVENTS] [SENSORS] [BODY_BYTES] [IN_FLIGHT] [BATCH_EVENTS] [DIR]
//! ```
//! Defaults: 1,000,000 events from 50 sensors, bodies of 200 bytes, 8 batches in flight, batches
//! of 5,000 events (the sensor's default `upload.batch_events` until 2026-12-06, kept so that
//! figures stay comparable; new sensors send up to 20,000 or 4 MiB), a new temporary directory (DIR:
//! an empty directory elsewhere, e.g. on another file system). `PAGE_SIZE=16384` (or another
//! power of two) makes the store with that page size instead of the store's own, to compare.
//! `ZSTD=LEVEL` compresses each batch's text at that level first (not timed) and keeps it, as the
//! service keeps a sensor's compressed request: the store then writes each batch once and points
//! its rows into it (`blobs.rs`); without it every row holds its event's text. `PAD=random`
//! fills the bodies with random letters and digits instead of one repeated letter (text zstd
//! shrinks only to about three quarters: the worst case for a batch kept as sent).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use uplink_store::batch::EventBatch;
use uplink_store::Store;
use uplink_store_sqlite::SqliteStore;

// The records the store's tests use: a workspace and its sensors.
#[path = "../tests/common/mod.rs"]
mod common;

fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .nth(n)
        .map(|a| {
            a.replace(',', "")
                .parse()
                .unwrap_or_else(|_| panic!("argument {n}: not a number: {a}"))
        })
        .unwrap_or(default)
}

/// One sensor's `count` events from `first_seq` as one batch, bodies of about `body` bytes.
fn batch(
    sensor: usize,
    first_seq: u64,
    count: usize,
    body: usize,
    zstd: Option<i32>,
) -> EventBatch {
    let mut text = String::with_capacity(count * (body + 16));
    let mut ranges = Vec::with_capacity(count);
    let pad_len = body.saturating_sub(90);
    let mut pad = "x".repeat(pad_len);
    let random = std::env::var("PAD").is_ok_and(|p| p == "random");
    for i in 0..count {
        let seq = first_seq + i as u64;
        if random {
            // Letters and digits from a xorshift of the seq: text zstd cannot shrink below
            // about 6 bits per byte, the worst case for a batch kept as sent.
            let mut x = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            pad = (0..pad_len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"
                        [(x & 63) as usize] as char
                })
                .collect();
        }
        let start = text.len();
        text.push_str(&format!(
            r#"{{"seq":{seq},"kind":"logon","host":"host-{sensor}","user":"CORP\\u{i}","pad":"{pad}"}}"#
        ));
        ranges.push((seq, start..text.len()));
        text.push('\n');
    }
    // As the sensor compresses: frames of 256 KiB, each declaring its size.
    let kept = zstd.map(|level| {
        text.as_bytes()
            .chunks(256 << 10)
            .flat_map(|piece| zstd::bulk::compress(piece, level).expect("zstd"))
            .collect::<Vec<u8>>()
    });
    let mut batch = EventBatch::new(text, count);
    let kind = batch.append("logon");
    for (seq, body) in ranges {
        assert!(batch.push(seq, kind.clone(), body));
    }
    if let Some(kept) = kept {
        batch.keep_zstd(kept);
    }
    batch
}

fn main() {
    let events = arg(1, 1_000_000);
    let sensors = arg(2, 50).max(1);
    let body = arg(3, 200);
    let in_flight = arg(4, 8).max(1);
    let per_batch = arg(5, 5000).max(1);
    let kept = std::env::args().nth(6);
    let zstd = std::env::var("ZSTD").ok().map(|l| {
        l.parse::<i32>()
            .unwrap_or_else(|_| panic!("ZSTD={l}: a zstd level, e.g. 1 (the sensor's)"))
    });
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let dir = kept
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().into());
    std::fs::create_dir_all(&dir).expect("the store's directory");
    // The service's: freed batch buffers stay in the heap (`uplink service`).
    uplink_memtrim::keep_freed_heap(32 << 20, 64 << 20);
    let db = dir.join("uplink.db");
    if let Ok(size) = std::env::var("PAGE_SIZE") {
        // An empty database with this page size: the store's own setting is then a no-op.
        let c = rusqlite::Connection::open(&db).expect("a database for PAGE_SIZE");
        c.execute_batch(&format!(
            "PRAGMA page_size={size}; PRAGMA journal_mode=WAL;"
        ))
        .expect("PAGE_SIZE: a power of two from 512 to 65536");
    }
    let store = SqliteStore::open(&dir, true).expect("a new store");
    let page_size: u32 = rusqlite::Connection::open(&db)
        .and_then(|c| c.query_row("PRAGMA page_size", [], |r| r.get(0)))
        .expect("the store's page size");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        store
            .create_workspace(common::workspace("w"))
            .await
            .expect("workspace w (DIR must be empty)");
        for s in 0..sensors {
            store
                .add_sensor(common::sensor(&format!("sensor-{s}")))
                .await
                .unwrap();
        }
    });

    // Round-robin over the sensors, as fifty sensors uploading at once arrive.
    let per_sensor = events / sensors;
    assert!(
        per_sensor > 0,
        "fewer EVENTS ({events}) than SENSORS ({sensors})"
    );
    let mut batches = Vec::new();
    for round in 0..per_sensor.div_ceil(per_batch) {
        for s in 0..sensors {
            let first = round * per_batch;
            let count = per_batch.min(per_sensor - first);
            batches.push((
                format!("sensor-{s}"),
                batch(s, first as u64 + 1, count, body, zstd),
            ));
        }
    }
    let total: usize = batches.iter().map(|(_, b)| b.len()).sum();
    batches.reverse();
    let queue = Arc::new(Mutex::new(batches));

    // The process's CPU time (user + system, every thread), as the idle trim reads it.
    let cpu0 = uplink_memtrim::cpu_time();
    let t0 = Instant::now();
    let accepted = rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..in_flight {
            let (store, queue) = (store.clone(), queue.clone());
            tasks.push(tokio::spawn(async move {
                let mut accepted = 0;
                loop {
                    let next = queue.lock().unwrap().pop();
                    let Some((sensor, batch)) = next else { break };
                    accepted += store.ingest_batch(&sensor, batch).await.unwrap().accepted;
                }
                accepted
            }));
        }
        let mut accepted = 0;
        for t in tasks {
            accepted += t.await.unwrap();
        }
        accepted
    });
    // What the WAL still holds, copied back now: a larger WAL bound (or page size) must not
    // look cheaper for leaving more of its copying out of the figure.
    rusqlite::Connection::open(&db)
        .and_then(|c| c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(0)))
        .expect("the final checkpoint");
    let wall = t0.elapsed().as_secs_f64();
    let cpu = (uplink_memtrim::cpu_time() - cpu0).as_secs_f64();
    assert_eq!(accepted as usize, total, "every event stored once");
    println!(
        "{total} events of ~{body} B from {sensors} sensors, batches of {per_batch}{}, {in_flight} in flight, {} KiB pages: {:.0} events/s, {:.2} µs CPU/event",
        zstd.map(|l| format!(" kept as zstd level {l}")).unwrap_or_default(),
        page_size / 1024,
        total as f64 / wall,
        cpu / total as f64 * 1e6
    );
}
