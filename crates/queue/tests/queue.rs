//! Behaviour of the durable queue, including recovery from torn writes.

use std::path::Path;

use uplink_queue::{Intent, Options, Queue, QueueError, Stored};

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

/// Several batches in flight: each read after the previous one, across segment boundaries,
/// acknowledged in order (a later acknowledgement covers the earlier batches); nothing after the
/// last one in flight is not "unreadable" (reading after it acknowledges nothing).
#[test]
fn batches_in_flight_are_read_one_after_another_and_acknowledged_as_a_prefix() {
    for opts in [Options::default(), small()] {
        let dir = tempfile::tempdir().unwrap();
        let mut q = Queue::open(dir.path(), opts).unwrap();
        append(&mut q, 250);
        let mut inflight = Vec::new();
        let mut last = None;
        while let Some(b) = q.read_batch_after(last.as_ref(), 40, 1 << 20).unwrap() {
            last = Some(b.clone());
            inflight.push(b);
        }
        let all: Vec<u64> = inflight.iter().flat_map(|b| seqs_of(&b.body)).collect();
        assert_eq!(all, (0..250).collect::<Vec<_>>(), "{opts:?}");
        // Nothing more after the last in flight, and that read acknowledged nothing.
        assert!(q
            .read_batch_after(last.as_ref(), 40, 1 << 20)
            .unwrap()
            .is_none());
        assert_eq!(q.depth().unwrap().events, 250);
        // The third batch's answer comes first: it cannot be acknowledged before the first two.
        q.ack(&inflight[1]).unwrap();
        assert_eq!(q.depth().unwrap().events, 250 - 80);
        // A restart of the uploader (nothing in flight) re-reads from the acknowledged prefix.
        let again = q.read_batch(40, 1 << 20).unwrap().unwrap();
        assert_eq!(again.first_seq, 80);
        // A batch at or below the acknowledged prefix as `after` reads from the prefix.
        let from_prefix = q
            .read_batch_after(Some(&inflight[0]), 40, 1 << 20)
            .unwrap()
            .unwrap();
        assert_eq!(from_prefix.first_seq, 80);
        q.ack(inflight.last().unwrap()).unwrap();
        assert_eq!(q.depth().unwrap().events, 0);
        assert!(q.read_batch(40, 1 << 20).unwrap().is_none());
        // New events after a drained queue are read after the last batch acknowledged.
        append(&mut q, 5);
        assert_eq!(drain(&mut q, 40), (250..255).collect::<Vec<_>>());
    }
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
fn a_torn_write_at_any_offset_keeps_every_complete_batch_and_nothing_of_the_torn_one() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut q = Queue::open(dir.path(), Options::default()).unwrap();
        // Batches of 1, 1, 3 and 2 events: seqs 0 | 1 | 2 3 4 | 5 6.
        for n in [1, 1, 3, 2] {
            append(&mut q, n);
        }
    }
    let seg = dir.path().join(format!("{:020}.seg", 0));
    let full = std::fs::read(&seg).unwrap();
    let header = uplink_queue::record::HEADER_LEN;
    let rec = |s: u64| uplink_queue::record::RECORD_OVERHEAD + payload(s).len();
    let end = |through: u64| header + (0..=through).map(rec).sum::<usize>();
    // Where each batch ends, and how many events are kept by a cut at or after it.
    let batch_ends = [
        (header, 0),
        (end(0), 1),
        (end(1), 2),
        (end(4), 5),
        (end(6), 7),
    ];
    assert_eq!(end(6), full.len());
    let record_ends: Vec<usize> = (0..7).map(end).collect();
    let mut between_records = 0;
    for cut in 0..=full.len() {
        let case = tempfile::tempdir().unwrap();
        std::fs::write(case.path().join(format!("{:020}.seg", 0)), &full[..cut]).unwrap();
        let mut q = Queue::open(case.path(), Options::default()).unwrap();
        let (batch_end, kept) = *batch_ends
            .iter()
            .rev()
            .find(|(e, _)| *e <= cut)
            .unwrap_or(&(0, 0));
        let recoveries = q.take_recoveries();
        let clean = batch_ends.iter().any(|(e, _)| *e == cut) || cut == 0;
        assert_eq!(recoveries.is_empty(), clean, "cut {cut}: {recoveries:?}");
        if !clean && cut >= header {
            assert_eq!(recoveries[0].offset, batch_end as u64, "cut {cut}");
            assert_eq!(
                recoveries[0].dropped_bytes,
                (cut - batch_end) as u64,
                "cut {cut}"
            );
            if record_ends.contains(&cut) {
                between_records += 1;
                assert!(
                    recoveries[0].reason.contains("incomplete batch"),
                    "{recoveries:?}"
                );
            }
        }
        let got = drain(&mut q, 100);
        assert_eq!(got, (0..kept).collect::<Vec<_>>(), "cut at {cut}");
        // New events never reuse a number the cut bytes could have held (a record begun
        // before the cut), nor a kept one; the gap is bounded by the bytes cut.
        let begun = (0..7u64)
            .filter(|s| if *s == 0 { header } else { end(*s - 1) } < cut)
            .count() as u64;
        let next = append(&mut q, 1).start;
        let bound = kept + (cut.saturating_sub(batch_end.max(header)) as u64).div_ceil(16);
        assert!(
            next >= begun.max(kept) && next <= bound.max(kept),
            "cut at {cut}: next seq {next}, {begun} records begun, bound {bound}"
        );
        if cut % 5 != 0 {
            continue;
        }
        // And after reopening, the same.
        drop(q);
        let mut q = Queue::open(case.path(), Options::default()).unwrap();
        assert_eq!(append(&mut q, 1).start, next + 1, "cut at {cut}");
    }
    // Cuts between two records of one batch (after 2, after 3, after 5): every record there
    // decodes, and still the batch goes.
    assert_eq!(between_records, 3);
}

#[test]
fn a_torn_batch_is_invisible_to_readers_and_lookup() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = Queue::open(dir.path(), Options::default()).unwrap();
    append(&mut q, 2);
    let seg = dir.path().join(format!("{:020}.seg", 0));
    let before = std::fs::metadata(&seg).unwrap().len();
    append(&mut q, 4);
    // The crash: the second batch's last record never made it.
    let full = std::fs::read(&seg).unwrap();
    let cut = full.len() - payload(5).len() - 3;
    std::fs::write(&seg, &full[..cut]).unwrap();
    let mut other = Queue::open(dir.path(), Options::default()).unwrap();
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), before);
    let b = other.read_batch(100, 1 << 20).unwrap().unwrap();
    assert_eq!(seqs_of(&b.body), vec![0, 1]);
    let stored = |q: &mut Queue, seq| q.lookup(seq, Ok::<_, QueueError>).unwrap();
    assert_eq!(stored(&mut other, 2), Stored::Absent);
    assert_eq!(stored(&mut other, 5), Stored::Absent);
    let digest = uplink_queue::record::digest(&payload(1));
    assert_eq!(stored(&mut other, 1), Stored::Present { digest });
    // The numbers of the dropped batch are never handed out again.
    let range = other
        .append(4, |_, seq, out| {
            out.extend_from_slice(format!("{{\"seq\":{seq},\"other\":1}}").as_bytes())
        })
        .unwrap();
    assert!(range.start >= 6, "{range:?}");
    assert_eq!(stored(&mut other, 5), Stored::Absent);
    let last = range.end - 1;
    assert_eq!(
        stored(&mut other, last),
        Stored::Present {
            digest: uplink_queue::record::digest(
                format!("{{\"seq\":{last},\"other\":1}}").as_bytes()
            )
        }
    );
    // Acknowledged and deleted: the active segment too, once every record in it is acknowledged.
    assert_eq!(drain(&mut other, 100).len(), 6);
    assert_eq!(stored(&mut other, 1), Stored::Acked);
    assert_eq!(stored(&mut other, last + 1), Stored::Absent);
}

#[test]
fn lookup_after_acknowledged_segments_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = Queue::open(dir.path(), small()).unwrap();
    for _ in 0..20 {
        append(&mut q, 20);
    }
    assert_eq!(drain(&mut q, 50).len(), 400);
    let stored = |q: &mut Queue, seq| q.lookup(seq, Ok::<_, QueueError>).unwrap();
    assert_eq!(stored(&mut q, 3), Stored::Acked);
    assert_eq!(stored(&mut q, 400), Stored::Absent);
    append(&mut q, 1);
    assert_eq!(
        stored(&mut q, 400),
        Stored::Present {
            digest: uplink_queue::record::digest(&payload(400))
        }
    );
}

#[test]
fn commit_runs_under_the_lock_before_any_byte_and_its_failure_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = Queue::open(dir.path(), Options::default()).unwrap();
    append(&mut q, 3);
    let seg = dir.path().join(format!("{:020}.seg", 0));
    let len = || std::fs::metadata(&seg).unwrap().len();
    let before = len();
    let mut seen = None;
    let range = q
        .append_committing(
            2,
            |_, seq, out| out.extend_from_slice(&payload(seq)),
            |intent: &Intent| {
                // Nothing of the batch is on disk yet, and another process cannot get in.
                assert_eq!(len(), before);
                let lock = std::fs::File::open(dir.path().join("queue.lock")).unwrap();
                assert!(
                    lock.try_lock().is_err(),
                    "commit ran without the queue lock"
                );
                seen = Some(*intent);
                Ok::<(), QueueError>(())
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(range, 3..5);
    assert_eq!(
        seen,
        Some(Intent {
            first_seq: 3,
            last_seq: 4,
            last_digest: uplink_queue::record::digest(&payload(4))
        })
    );
    let before = len();
    #[derive(Debug)]
    enum E {
        Q(#[allow(dead_code)] QueueError),
        Refused,
    }
    impl From<QueueError> for E {
        fn from(e: QueueError) -> E {
            E::Q(e)
        }
    }
    let err = q
        .append_committing(
            2,
            |_, seq, out| out.extend_from_slice(&payload(seq)),
            |_| Err(E::Refused),
        )
        .unwrap_err();
    assert!(matches!(err, E::Refused), "{err:?}");
    assert_eq!(len(), before);
    assert_eq!(q.next_seq().unwrap(), 5);
    // A full queue refuses before commit is called.
    let tiny_dir = tempfile::tempdir().unwrap();
    let mut tiny = Queue::open(
        tiny_dir.path(),
        Options {
            max_bytes: 10,
            segment_bytes: 1 << 20,
        },
    )
    .unwrap();
    let mut called = false;
    let err = tiny
        .append_committing(
            1,
            |_, seq, out| out.extend_from_slice(&payload(seq)),
            |_| {
                called = true;
                Ok::<(), QueueError>(())
            },
        )
        .unwrap_err();
    assert!(matches!(err, QueueError::Full { .. }) && !called, "{err}");
}

#[test]
fn format_1_segments_are_read_and_never_appended_to() {
    use uplink_queue::record::{encode_header_v1, encode_record_v1, HEADER_LEN};
    let dir = tempfile::tempdir().unwrap();
    // What an older build left: a format-1 tail with seqs 0..5, the last one torn.
    let mut bytes = encode_header_v1(0).to_vec();
    for seq in 0..5 {
        encode_record_v1(&mut bytes, seq, &payload(seq));
    }
    let old = dir.path().join(format!("{:020}.seg", 0));
    std::fs::write(&old, &bytes[..bytes.len() - 2]).unwrap();
    let mut q = Queue::open(dir.path(), Options::default()).unwrap();
    assert_eq!(q.take_recoveries().len(), 1);
    let b = q.read_batch(2, 1 << 20).unwrap().unwrap();
    assert_eq!(seqs_of(&b.body), vec![0, 1]);
    q.ack(&b).unwrap();
    // New batches go into a new format-2 segment named by their first seq, above every seq
    // the cut bytes could have held (seq 4 is never reused).
    let added = append(&mut q, 3);
    assert!(added.start > 4 && added.end - added.start == 3, "{added:?}");
    let new = dir.path().join(format!("{:020}.seg", added.start));
    let header = std::fs::read(&new).unwrap();
    assert_eq!(
        uplink_queue::record::decode_header(&header[..HEADER_LEN])
            .unwrap()
            .format,
        2
    );
    assert_eq!(
        std::fs::read(&old).unwrap().len(),
        bytes.len() - 2 - payload(4).len() - 14
    );
    assert_eq!(
        q.lookup(1, Ok::<_, QueueError>).unwrap(),
        Stored::Present {
            digest: uplink_queue::record::digest(&payload(1))
        }
    );
    drop(q);
    let mut q = Queue::open(dir.path(), Options::default()).unwrap();
    let mut want = vec![2, 3];
    want.extend(added);
    assert_eq!(drain(&mut q, 100), want);
    // The old segment is deleted once read through.
    assert!(!old.exists());
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
    assert!(r[0].damaged, "{r:?}");
    // Only the record under the flipped byte is lost: reading resynchronised after it.
    let (a, b) = r[0].lost.unwrap();
    assert_eq!(a, b, "{r:?}");
    let want: Vec<u64> = (0..400).filter(|s| *s != a).collect();
    assert_eq!(got, want);
    assert!(
        r[0].to_string()
            .contains(&format!("1 records lost (seq {a} to {a})")),
        "{}",
        r[0]
    );
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

/// `sensor send` opening the queue while `sensor run` appends its first events (which create
/// `meta.bin` and the `meta.json` marker) must never read a half-written marker. CI once saw
/// "not valid queue metadata: EOF while parsing" here: the marker was written in place and read
/// outside the lock.
#[test]
fn opening_while_another_handle_creates_the_metadata_never_sees_half_a_marker() {
    for round in 0..300 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let writer = std::thread::spawn(move || {
            let mut q = Queue::open(&path, Options::default()).unwrap();
            append(&mut q, 1);
        });
        // A tight reader of the marker (what `open` reads first) and a whole opener.
        let marker = dir.path().join("meta.json");
        let mut opened = 0;
        while !writer.is_finished() || opened == 0 {
            for _ in 0..50 {
                if let Ok(bytes) = std::fs::read(&marker) {
                    assert!(!bytes.is_empty(), "round {round}: meta.json read empty");
                }
            }
            match Queue::open(dir.path(), Options::default()) {
                Ok(_) => opened += 1,
                Err(e) => panic!("round {round}: open beside the first append failed: {e}"),
            }
        }
        writer.join().unwrap();
        let marker = std::fs::read_to_string(dir.path().join("meta.json")).unwrap();
        assert!(marker.contains("\"format\":2"), "round {round}: {marker}");
    }
}

/// An older build could be killed between creating `meta.json` and writing it, leaving it empty
/// beside a whole `meta.bin`: the queue still opens, keeps its acknowledgements and its events.
#[test]
fn an_empty_marker_beside_meta_bin_is_read_as_the_marker() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = Queue::open(dir.path(), Options::default()).unwrap();
    append(&mut q, 30);
    assert_eq!(drain(&mut q, 10).len(), 30);
    append(&mut q, 5);
    drop(q);
    std::fs::write(dir.path().join("meta.json"), b"").unwrap();
    let mut q = Queue::open(dir.path(), Options::default()).unwrap();
    assert_eq!(drain(&mut q, 10), (30..35).collect::<Vec<_>>());
    // Without meta.bin an empty meta.json is damage, and says so.
    drop(q);
    std::fs::remove_file(dir.path().join("meta.bin")).unwrap();
    let err = Queue::open(dir.path(), Options::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("not valid queue metadata"), "{err}");
}

/// Every file of a directory, sorted: (name, bytes).
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn a_read_only_handle_changes_no_file_and_reads_what_a_writer_keeps() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut q = Queue::open(dir.path(), Options::default()).unwrap();
        append(&mut q, 10);
        append(&mut q, 10);
    }
    let seg = dir.path().join(format!("{:020}.seg", 0));
    let mut bytes = std::fs::read(&seg).unwrap();
    // Damage in the middle (record 3's seq field) and a torn batch at the end.
    let at = uplink_queue::record::HEADER_LEN
        + (0..3)
            .map(|s| uplink_queue::record::RECORD_OVERHEAD + payload(s).len())
            .sum::<usize>()
        + 9;
    bytes[at] ^= 0x40;
    let mut torn = Vec::new();
    uplink_queue::record::encode_record(&mut torn, 20, &payload(20), true);
    bytes.extend_from_slice(&torn);
    std::fs::write(&seg, &bytes).unwrap();
    let before = snapshot(dir.path());
    let mut r = Queue::open_read_only(dir.path(), Options::default()).unwrap();
    assert_eq!(r.depth().unwrap().events, 20);
    let b = r.read_batch(100, 1 << 20).unwrap().unwrap();
    let want: Vec<u64> = (0..20).filter(|s| *s != 3).collect();
    assert_eq!(seqs_of(&b.body), want);
    assert!(r.append(1, |_, _, _| {}).is_err());
    assert!(
        snapshot(dir.path()) == before,
        "a read-only handle changed a file"
    );
    // A missing queue reads as empty, and is not created.
    let none = dir.path().join("none");
    let mut r = Queue::open_read_only(&none, Options::default()).unwrap();
    assert_eq!(r.depth().unwrap().events, 0);
    assert!(!none.exists());
    // The writer keeps the same, cuts only the torn batch, and skips its seq.
    let mut w = Queue::open(dir.path(), Options::default()).unwrap();
    let r = w.take_recoveries();
    assert_eq!(r.iter().filter(|r| r.damaged).count(), 1, "{r:?}");
    assert_eq!(r.iter().find(|r| r.damaged).unwrap().lost, Some((3, 3)));
    assert!(append(&mut w, 1).start > 20);
    let got = drain(&mut w, 100);
    assert_eq!(&got[..19], &want[..]);
}

#[test]
fn a_fully_acknowledged_active_segment_is_deleted_and_seqs_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = Queue::open(dir.path(), Options::default()).unwrap();
    append(&mut q, 50);
    assert_eq!(drain(&mut q, 20).len(), 50);
    let segs = || {
        std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension() == Some("seg".as_ref()))
            .count()
    };
    assert_eq!(segs(), 0, "the drained active segment is still there");
    assert_eq!(q.depth().unwrap().events, 0);
    drop(q);
    let mut q = Queue::open(dir.path(), Options::default()).unwrap();
    assert_eq!(append(&mut q, 1), 50..51);
    // meta.bin is the record; meta.json tells older builds to keep off.
    let marker = std::fs::read_to_string(dir.path().join("meta.json")).unwrap();
    assert!(marker.contains("\"format\":2"), "{marker}");
}

#[test]
fn an_older_builds_meta_json_is_read_and_moved_into_meta_bin() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut q = Queue::open(dir.path(), small()).unwrap();
        for _ in 0..10 {
            append(&mut q, 20);
        }
    }
    std::fs::remove_file(dir.path().join("meta.bin")).unwrap();
    // What an older build wrote after acknowledging through seq 99.
    let seg = (0..200u64)
        .rev()
        .find(|s| dir.path().join(format!("{s:020}.seg")).exists() && *s <= 100)
        .unwrap();
    let len: usize = (seg..100)
        .map(|s| uplink_queue::record::RECORD_OVERHEAD + payload(s).len())
        .sum();
    std::fs::write(
        dir.path().join("meta.json"),
        format!(
            "{{\"format\":1,\"acked_through\":99,\"acked_segment\":{seg},\"acked_offset\":{}}}",
            uplink_queue::record::HEADER_LEN + len
        ),
    )
    .unwrap();
    let mut q = Queue::open(dir.path(), small()).unwrap();
    assert_eq!(drain(&mut q, 30), (100..200).collect::<Vec<_>>());
    assert!(dir.path().join("meta.bin").exists());
    drop(q);
    let mut q = Queue::open(dir.path(), small()).unwrap();
    assert_eq!(append(&mut q, 1), 200..201);
}

/// A tail segment of several MiB (opened in windows, not read whole): a torn end past the first
/// windows is cut back to the last complete batch, damage past them is a hole resynchronised
/// after, and every intact record is delivered, exactly as when the tail was read in one piece.
#[test]
fn a_large_tail_is_scanned_in_windows_with_the_same_recovery() {
    let big = Options {
        max_bytes: 64 << 20,
        segment_bytes: 32 << 20,
    };
    let fill = |dir: &Path| -> u64 {
        let mut q = Queue::open(dir, big).unwrap();
        // ~7 MiB: batches of 1000 records of ~1 KiB, so batch ends fall anywhere in a window.
        for _ in 0..7 {
            q.append(1000, |_, seq, out| {
                out.extend_from_slice(
                    format!("{{\"seq\":{seq},\"pad\":\"{}\"}}", "y".repeat(1000)).as_bytes(),
                )
            })
            .unwrap();
        }
        q.next_seq().unwrap()
    };
    let seg = |dir: &Path| dir.join(format!("{:020}.seg", 0));

    // Clean: all of it, nothing reported.
    let dir = tempfile::tempdir().unwrap();
    let n = fill(dir.path());
    assert!(std::fs::metadata(seg(dir.path())).unwrap().len() > 6 << 20);
    let mut q = Queue::open(dir.path(), big).unwrap();
    assert!(q.take_recoveries().is_empty());
    assert_eq!(q.next_seq().unwrap(), n);
    assert_eq!(drain(&mut q, 2500), (0..n).collect::<Vec<_>>());

    // Torn in the last batch: that batch goes whole, its seqs are never reissued.
    let dir = tempfile::tempdir().unwrap();
    let n = fill(dir.path());
    let path = seg(dir.path());
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 500)
        .unwrap();
    let mut q = Queue::open(dir.path(), big).unwrap();
    let r = q.take_recoveries();
    assert_eq!(r.len(), 1, "{r:?}");
    assert!(!r[0].damaged, "{r:?}");
    assert!(
        q.next_seq().unwrap() >= n,
        "a torn batch's seqs are not reissued"
    );
    assert_eq!(drain(&mut q, 2500), (0..n - 1000).collect::<Vec<_>>());

    // A flipped byte in the sixth batch (past the first windows), or in the first window too:
    // one record lost for each, the rest flow.
    for spots in [&[11usize][..], &[3, 11]] {
        let dir = tempfile::tempdir().unwrap();
        let n = fill(dir.path());
        let path = seg(dir.path());
        let mut bytes = std::fs::read(&path).unwrap();
        let len = bytes.len();
        for s in spots {
            bytes[len * s / 14] ^= 0xff;
        }
        std::fs::write(&path, &bytes).unwrap();
        let mut q = Queue::open(dir.path(), big).unwrap();
        let got = drain(&mut q, 2500);
        let r = q.take_recoveries();
        assert_eq!(r.len(), spots.len(), "{r:?}");
        let lost: Vec<u64> = r
            .iter()
            .map(|r| {
                assert!(r.damaged, "{r:?}");
                let (a, b) = r.lost.unwrap();
                assert_eq!(a, b, "{r:?}");
                a
            })
            .collect();
        assert!(
            *lost.last().unwrap() > 4000,
            "past the first windows: {r:?}"
        );
        assert_eq!(
            got,
            (0..n).filter(|s| !lost.contains(s)).collect::<Vec<_>>()
        );
    }
}

/// Records larger than the reader's chunk are read whole (the chunk grows for them), between
/// small ones, and batches still respect their limits.
#[test]
fn records_larger_than_the_read_chunk_are_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = Queue::open(dir.path(), Options::default()).unwrap();
    let sizes = [10usize, 700_000, 20, 300_000, (1 << 20) - 40, 5];
    for size in sizes {
        q.append(1, |_, seq, out| {
            let head = format!("{{\"seq\":{seq},\"pad\":\"");
            out.extend_from_slice(head.as_bytes());
            out.resize(size.max(head.len() + 2) - 2, b'z');
            out.extend_from_slice(b"\"}");
        })
        .unwrap();
    }
    let mut got = Vec::new();
    while let Some(b) = q.read_batch(100, 1 << 20).unwrap() {
        assert!(b.count == 1 || b.body.len() <= (1 << 20) + (1 << 20));
        got.extend(seqs_of(&b.body));
        q.ack(&b).unwrap();
    }
    assert_eq!(got, (0..sizes.len() as u64).collect::<Vec<_>>());
    assert!(q.take_recoveries().is_empty());
}

#[test]
fn a_batch_stops_before_the_event_that_would_pass_its_byte_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = Queue::open(dir.path(), Options::default()).unwrap();
    // Events of 99 bytes (100 with their newline), then one of 250 (larger than the limit).
    q.append(10, |_, _, out| out.resize(99, b'a')).unwrap();
    q.append(1, |_, _, out| out.resize(250, b'b')).unwrap();
    q.append(3, |_, _, out| out.resize(99, b'c')).unwrap();
    let mut got = Vec::new();
    let mut shapes = Vec::new();
    while let Some(b) = q.read_batch(100, 350).unwrap() {
        assert!(
            b.count == 1 || b.body.len() <= 350,
            "{} bytes in {} events",
            b.body.len(),
            b.count
        );
        shapes.push((b.count, b.body.len(), b.is_full()));
        got.extend(b.first_seq..=b.last_seq);
        q.ack(&b).unwrap();
    }
    assert_eq!(
        shapes,
        [
            (3, 300, true),
            (3, 300, true),
            (3, 300, true),
            (1, 100, true),
            (1, 251, true),
            (3, 300, false),
        ]
    );
    assert_eq!(got, (0..14).collect::<Vec<_>>());
    // By events: full at the count, not full at the queue's end.
    q.append(5, |_, _, out| out.resize(10, b'd')).unwrap();
    let b = q.read_batch(5, 1 << 20).unwrap().unwrap();
    assert!(b.is_full());
    assert_eq!(b.count, 5);
    q.ack(&b).unwrap();
    q.append(2, |_, _, out| out.resize(10, b'e')).unwrap();
    let b = q.read_batch(5, 1 << 20).unwrap().unwrap();
    assert!(!b.is_full());
    assert_eq!(b.count, 2);
}

/// `read_batch_each` hands out the same events as `read_batch_after` (its body empty, its
/// `text_len` the body's length), and `full_batch_possible` says no only when the batch read
/// would not be full: for every way the queue ends (fewer events or bytes than a batch, events
/// exactly at the limit, bytes past it, after a batch in flight, across segments, after acks).
#[test]
fn a_batch_read_event_by_event_is_the_batch_read_whole_and_fullness_is_foreseen() {
    for opts in [Options::default(), small()] {
        for (events, max_events, max_bytes) in [
            (10, 40, 1 << 20),
            (40, 40, 1 << 20),
            (41, 40, 1 << 20),
            (250, 40, 1 << 20),
            (250, 1000, 2000),
            (30, 1000, 900),
            (5, 1000, 100_000),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let mut q = Queue::open(dir.path(), opts).unwrap();
            append(&mut q, events);
            let mut last: Option<uplink_queue::Batch> = None;
            let mut seen = Vec::new();
            let mut acked = false;
            loop {
                let foreseen = q
                    .full_batch_possible(last.as_ref(), max_events, max_bytes)
                    .unwrap();
                let whole = q
                    .read_batch_after(last.as_ref(), max_events, max_bytes)
                    .unwrap();
                let mut text = Vec::new();
                let each = q
                    .read_batch_each(last.as_ref(), max_events, max_bytes, &mut |p| {
                        text.extend_from_slice(p);
                        text.push(b'\n');
                        true
                    })
                    .unwrap();
                let case = format!("{opts:?} {events} {max_events} {max_bytes} after {seen:?}");
                let (Some(whole), Some(each)) = (whole, each) else {
                    assert!(!foreseen, "{case}");
                    break;
                };
                assert_eq!(whole.body, text, "{case}");
                assert!(each.body.is_empty(), "{case}");
                assert_eq!(each.text_len, text.len(), "{case}");
                assert_eq!(whole.text_len, text.len(), "{case}");
                assert_eq!(
                    (each.first_seq, each.last_seq, each.count, each.is_full()),
                    (
                        whole.first_seq,
                        whole.last_seq,
                        whole.count,
                        whole.is_full()
                    ),
                    "{case}"
                );
                // Never "no" for a batch that is full.
                assert!(foreseen || !each.is_full(), "{case}");
                seen.extend(seqs_of(&text));
                // Half way, the batches so far are acknowledged (the position moves to meta).
                if !acked && seen.len() * 2 >= events {
                    q.ack(&each).unwrap();
                    acked = true;
                }
                last = Some(each);
            }
            assert_eq!(seen, (0..events as u64).collect::<Vec<_>>(), "{opts:?}");
        }
    }
    // The last of a run of batches is not full when the queue ends inside it: foreseen.
    let dir = tempfile::tempdir().unwrap();
    let mut q = Queue::open(dir.path(), Options::default()).unwrap();
    append(&mut q, 50);
    let first = q.read_batch(40, 1 << 20).unwrap().unwrap();
    assert!(first.is_full());
    assert!(!q.full_batch_possible(Some(&first), 40, 1 << 20).unwrap());
    append(&mut q, 30);
    assert!(q.full_batch_possible(Some(&first), 40, 1 << 20).unwrap());
}

/// `read_batch_each`'s callback can end a batch early (the uploader's bound on compressed
/// bytes): the batch ends after the event it said no to, counts as full, and the next batch
/// starts at the event after it; every event is read once.
#[test]
fn a_batch_ended_by_its_reader_is_full_and_the_next_starts_after_it() {
    for stop_at in [1usize, 3, 7] {
        let dir = tempfile::tempdir().unwrap();
        let mut q = Queue::open(dir.path(), Options::default()).unwrap();
        append(&mut q, 20);
        let mut last: Option<uplink_queue::Batch> = None;
        let mut seen = Vec::new();
        let mut sizes = Vec::new();
        while let Some(b) = {
            let mut text = Vec::new();
            let b = q
                .read_batch_each(last.as_ref(), 1000, 1 << 20, &mut |p| {
                    text.extend_from_slice(p);
                    text.push(b'\n');
                    seqs_of(&text).len() < stop_at
                })
                .unwrap();
            seen.extend(seqs_of(&text));
            b
        } {
            sizes.push((b.count, b.is_full()));
            last = Some(b);
        }
        assert_eq!(seen, (0..20).collect::<Vec<_>>(), "stop at {stop_at}");
        let mut want: Vec<(usize, bool)> = vec![(stop_at, true); 20 / stop_at];
        if 20 % stop_at != 0 {
            // The last one ends with the queue, not by its reader: not full.
            want.push((20 % stop_at, false));
        }
        assert_eq!(sizes, want, "stop at {stop_at}");
    }
}

/// Two handles of one process (a sensor's sources and uploader): the reader trusts what the
/// other handle appended without scanning it again, but what another process appended after it
/// is still checked — a torn batch there is cut, and the seqs go on above it.
#[test]
fn a_torn_append_after_this_process_appends_is_still_found() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = Queue::open(dir.path(), Options::default()).unwrap();
    let mut reader = Queue::open(dir.path(), Options::default()).unwrap();
    append(&mut writer, 10);
    let b = reader.read_batch(100, 1 << 20).unwrap().unwrap();
    assert_eq!(seqs_of(&b.body), (0..10).collect::<Vec<_>>());
    append(&mut writer, 5);
    // Another process's append of seqs 15..17, cut short before its last record.
    let seg = dir.path().join(format!("{:020}.seg", 0));
    let mut torn = Vec::new();
    uplink_queue::record::encode_record(&mut torn, 15, &payload(15), true);
    uplink_queue::record::encode_record(&mut torn, 16, &payload(16), true);
    let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
    std::io::Write::write_all(&mut f, &torn).unwrap();
    drop(f);
    // The reader reads this process's appends and not the torn batch.
    let b = reader.read_batch(100, 1 << 20).unwrap().unwrap();
    assert_eq!(seqs_of(&b.body), (0..15).collect::<Vec<_>>());
    assert!(!b.is_full());
    reader.ack(&b).unwrap();
    // The torn batch's seqs are never handed out again.
    let next = append(&mut writer, 1);
    assert!(next.start > 16, "{next:?}");
    assert_eq!(drain(&mut reader, 100), vec![next.start]);
}

/// A queue directory moved aside and made again under the same path (as the advice for a
/// damaged `meta.bin` says), while a handle that recorded its appends still runs: the new tail
/// has the same name and is longer, but this process did not write it; a handle opened on it
/// reads every event of it. (Opening validates the whole tail, so this holds with or without
/// the file identity in `APPENDED`, which guards the refresh of handles already open.)
#[test]
fn a_queue_directory_made_again_under_the_same_path_is_scanned_not_trusted() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("queue");
    let mut first = Queue::open(&dir, Options::default()).unwrap();
    append(&mut first, 3);
    // Another queue's files, of longer events, as a restore would bring them.
    let other = root.path().join("other");
    let mut o = Queue::open(&other, Options::default()).unwrap();
    o.append(10, |_, seq, out| {
        out.extend_from_slice(
            format!(
                "{{\"seq\":{seq},\"kind\":\"event\",\"n\":\"{}\"}}",
                "y".repeat(50)
            )
            .as_bytes(),
        )
    })
    .unwrap();
    drop(o);
    std::fs::rename(&dir, root.path().join("aside")).unwrap();
    std::fs::create_dir(&dir).unwrap();
    for e in std::fs::read_dir(&other).unwrap() {
        let e = e.unwrap();
        if e.file_name() != "queue.lock" {
            std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
        }
    }
    let mut second = Queue::open(&dir, Options::default()).unwrap();
    assert_eq!(drain(&mut second, 100), (0..10).collect::<Vec<_>>());
    drop(first);
}
