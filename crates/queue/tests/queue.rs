//! Behaviour of the durable queue, including recovery from torn writes.

use std::path::Path;

use uplink_queue::{Options, Queue, QueueError};

fn payload(seq: u64) -> Vec<u8> {
    format!(
        "{{\"seq\":{seq},\"kind\":\"event\",\"n\":\"{}\"}}",
        "x".repeat((seq % 7) as usize)
    )
    .into_bytes()
}

fn append(q: &mut Queue, n: usize) -> std::ops::Range<u64> {
    q.append(n, |_, seq, out| out.extend_from_slice(&payload(seq)))
        .unwrap()
}

fn seqs_of(body: &[u8]) -> Vec<u64> {
    body.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            serde_json::from_slice::<serde_json::Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

/// Reads and acks everything, returning every seq in order.
fn drain(q: &mut Queue, batch: usize) -> Vec<u64> {
    let mut all = Vec::new();
    while let Some(b) = q.read_batch(batch, 1 << 20).unwrap() {
        let s = seqs_of(&b.body);
        assert_eq!(s.len(), b.count);
        assert_eq!((s[0], *s.last().unwrap()), (b.first_seq, b.last_seq));
        all.extend(s);
        q.ack(&b).unwrap();
    }
    all
}

fn small() -> Options {
    Options {
        max_bytes: 1 << 20,
        segment_bytes: 4096,
    }
}

#[test]
fn events_leave_only_when_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = Queue::open(dir.path(), Options::default()).unwrap();
    assert!(q.read_batch(10, 1 << 20).unwrap().is_none());
    assert_eq!(append(&mut q, 10), 0..10);
    let b = q.read_batch(4, 1 << 20).unwrap().unwrap();
    assert_eq!(seqs_of(&b.body), vec![0, 1, 2, 3]);
    // Not acknowledged (the upload failed): the same events come again.
    let again = q.read_batch(4, 1 << 20).unwrap().unwrap();
    assert_eq!(seqs_of(&again.body), vec![0, 1, 2, 3]);
    q.ack(&again).unwrap();
    assert_eq!(q.depth().unwrap().events, 6);
    assert_eq!(drain(&mut q, 4), (4..10).collect::<Vec<_>>());
    assert_eq!(q.depth().unwrap().events, 0);
}

#[test]
fn sequence_numbers_survive_reopen_and_are_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut q = Queue::open(dir.path(), small()).unwrap();
        append(&mut q, 100);
        assert_eq!(drain(&mut q, 7), (0..100).collect::<Vec<_>>());
    }
    // Every segment may be gone after the acks; the numbering still continues.
    let mut q = Queue::open(dir.path(), small()).unwrap();
    assert_eq!(q.next_seq().unwrap(), 100);
    assert_eq!(append(&mut q, 5), 100..105);
    drop(q);
    let mut q = Queue::open(dir.path(), small()).unwrap();
    assert_eq!(drain(&mut q, 3), (100..105).collect::<Vec<_>>());
}

#[test]
fn segments_rotate_and_acknowledged_ones_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = Queue::open(dir.path(), small()).unwrap();
    for _ in 0..50 {
        append(&mut q, 20);
    }
    let segs = |d: &Path| {
        std::fs::read_dir(d)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "seg")
            })
            .count()
    };
    assert!(
        segs(dir.path()) > 10,
        "expected rotation, got {} segments",
        segs(dir.path())
    );
    assert_eq!(drain(&mut q, 33), (0..1000).collect::<Vec<_>>());
    assert!(
        segs(dir.path()) <= 1,
        "acknowledged segments remain: {}",
        segs(dir.path())
    );
    assert_eq!(
        q.depth().unwrap(),
        uplink_queue::Depth {
            events: 0,
            bytes: 0
        }
    );
}

#[test]
fn a_full_queue_refuses_whole_appends_and_frees_space_on_ack() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        max_bytes: 2000,
        segment_bytes: 1 << 20,
    };
    let mut q = Queue::open(dir.path(), opts).unwrap();
    append(&mut q, 30);
    let err = q
        .append(30, |_, seq, out| out.extend_from_slice(&payload(seq)))
        .unwrap_err();
    assert!(matches!(err, QueueError::Full { .. }), "{err}");
    assert!(err.to_string().contains("queue is full"), "{err}");
    // Nothing of the refused append is in the queue, and numbering is unaffected.
    assert_eq!(q.depth().unwrap().events, 30);
    assert_eq!(q.next_seq().unwrap(), 30);
    let b = q.read_batch(30, 1 << 20).unwrap().unwrap();
    q.ack(&b).unwrap();
    assert_eq!(append(&mut q, 30), 30..60);
}

#[test]
fn a_torn_write_at_any_offset_keeps_every_complete_record() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut q = Queue::open(dir.path(), Options::default()).unwrap();
        append(&mut q, 3);
    }
    let seg = dir.path().join(format!("{:020}.seg", 0));
    let full = std::fs::read(&seg).unwrap();
    let header = uplink_queue::record::HEADER_LEN;
    let rec = |s: u64| uplink_queue::record::RECORD_OVERHEAD + payload(s).len();
    let ends = [
        header,
        header + rec(0),
        header + rec(0) + rec(1),
        full.len(),
    ];
    for cut in 0..=full.len() {
        let case = tempfile::tempdir().unwrap();
        std::fs::write(case.path().join(format!("{:020}.seg", 0)), &full[..cut]).unwrap();
        let mut q = Queue::open(case.path(), Options::default()).unwrap();
        let kept = ends.iter().filter(|e| **e <= cut && **e > header).count() as u64;
        let recoveries = q.take_recoveries();
        let clean = ends.contains(&cut) || cut == 0;
        assert_eq!(recoveries.is_empty(), clean, "cut {cut}: {recoveries:?}");
        let got = drain(&mut q, 100);
        assert_eq!(got, (0..kept).collect::<Vec<_>>(), "cut at {cut}");
        // New events continue right after the kept ones: no gap, no reuse of a kept number.
        assert_eq!(append(&mut q, 1), kept..kept + 1, "cut at {cut}");
    }
}

#[test]
fn garbage_after_the_last_record_is_truncated_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut q = Queue::open(dir.path(), Options::default()).unwrap();
        append(&mut q, 5);
    }
    let seg = dir.path().join(format!("{:020}.seg", 0));
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes.extend_from_slice(&[
        0x10, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20,
    ]);
    std::fs::write(&seg, &bytes).unwrap();
    let mut q = Queue::open(dir.path(), Options::default()).unwrap();
    let r = q.take_recoveries();
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].dropped_bytes, 24);
    assert!(r[0]
        .to_string()
        .contains("every complete record before it was kept"));
    assert_eq!(drain(&mut q, 100), (0..5).collect::<Vec<_>>());
}

#[test]
fn two_handles_share_one_queue_like_send_and_run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let writer = std::thread::spawn(move || {
        let mut q = Queue::open(&d, small()).unwrap();
        for _ in 0..200 {
            append(&mut q, 5);
        }
    });
    let mut reader = Queue::open(dir.path(), small()).unwrap();
    let mut got = Vec::new();
    while got.len() < 1000 {
        if let Some(b) = reader.read_batch(17, 1 << 20).unwrap() {
            got.extend(seqs_of(&b.body));
            reader.ack(&b).unwrap();
        } else {
            std::thread::yield_now();
        }
    }
    writer.join().unwrap();
    assert_eq!(got, (0..1000).collect::<Vec<_>>());
    assert!(reader.read_batch(10, 1 << 20).unwrap().is_none());
}

#[test]
fn damage_in_a_sealed_segment_is_reported_and_later_segments_still_flow() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = Queue::open(dir.path(), small()).unwrap();
    for _ in 0..20 {
        append(&mut q, 20);
    }
    drop(q);
    let first = dir.path().join(format!("{:020}.seg", 0));
    let mut bytes = std::fs::read(&first).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&first, &bytes).unwrap();
    let mut q = Queue::open(dir.path(), small()).unwrap();
    let got = drain(&mut q, 50);
    let r = q.take_recoveries();
    assert_eq!(r.len(), 1, "{r:?}");
    assert!(got.len() < 400 && got.len() > 300, "kept {}", got.len());
    assert_eq!(*got.last().unwrap(), 399);
    assert!(got.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn a_newer_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(Queue::open(dir.path(), Options::default()).unwrap());
    std::fs::write(
        dir.path().join("meta.json"),
        br#"{"format":9,"acked_through":null,"acked_segment":null,"acked_offset":0}"#,
    )
    .unwrap();
    let err = Queue::open(dir.path(), Options::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("newer uplink (format 9)"), "{err}");
}
