//! The queue's on-disk framing, as pure functions over bytes.
//!
//! A segment file is a header followed by records:
//!
//! ```text
//! header : magic "UPLQSEG\0" (8) | format u32 LE | header length u32 LE (=24) | first seq u64 LE
//! record : length word u32 LE | CRC-32 u32 LE | seq u64 LE | payload
//! ```
//!
//! **Format 2** (written by this build): the length word's high bit ([`MORE`]) says "more records
//! of this append follow"; its low 31 bits are the payload length. The CRC-32 covers the length
//! word, the seq and the payload, so a flipped flag is caught like any other damage. The records
//! of one [`crate::Queue::append`] form a *batch*: every record but the last has `MORE` set. A
//! batch is all or nothing: [`scan`] counts bytes as valid only up to the end of the last
//! complete batch, so a write cut short anywhere inside a batch (SIGKILL in the middle of a large
//! `write(2)`, power loss) drops the whole batch on recovery, never a part of it.
//!
//! **Format 1** (written by older builds, still read): the length word is the payload length and
//! the CRC-32 covers seq and payload only; every record is a batch of its own.
//!
//! Decoding a record returns `Incomplete` when the bytes end inside it (a torn write at the end of
//! a file), or `Corrupt` when the bytes are there but wrong. After damage, [`resync`] finds the
//! next valid record (every record carries its seq and CRC), so [`scan`] reports a [`Hole`] and
//! goes on instead of stopping.
//!
//! [`meta`] is the acknowledgement record (`meta.bin`): two slots overwritten in place.

/// Segment magic.
pub const MAGIC: &[u8; 8] = b"UPLQSEG\0";
/// The segment format this build writes (and the newest it reads; it also reads format 1).
pub const FORMAT: u32 = 2;
/// Bytes in a segment header.
pub const HEADER_LEN: usize = 24;
/// Bytes before a record's payload.
pub const RECORD_OVERHEAD: usize = 16;
/// Largest payload a record may hold (one event). Far below 2^31, so the length word's high bit
/// is free for [`MORE`].
pub const MAX_PAYLOAD: usize = 1 << 20;
/// Format 2: the length word's flag "more records of this batch follow".
pub const MORE: u32 = 1 << 31;

/// A decoded segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub format: u32,
    pub first_seq: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("the segment is shorter than its {HEADER_LEN}-byte header")]
    Truncated,
    #[error("the segment does not start with the queue magic (not an uplink queue file)")]
    BadMagic,
    #[error("the segment was written by a newer uplink (format {0}); this build reads format {FORMAT}: upgrade uplink")]
    NewerFormat(u32),
    #[error("the segment format {0} is not one this build knows (1 to {FORMAT})")]
    UnknownFormat(u32),
    #[error("the segment header length {0} is not {HEADER_LEN}")]
    BadHeaderLen(u32),
}

pub fn encode_header(first_seq: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&FORMAT.to_le_bytes());
    h[12..16].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
    h[16..24].copy_from_slice(&first_seq.to_le_bytes());
    h
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    u32::from_le_bytes(b)
}

fn u64_at(buf: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(b)
}

pub fn decode_header(buf: &[u8]) -> Result<Header, HeaderError> {
    if buf.len() < HEADER_LEN {
        return Err(HeaderError::Truncated);
    }
    if &buf[..8] != MAGIC {
        return Err(HeaderError::BadMagic);
    }
    let format = u32_at(buf, 8);
    if format > FORMAT {
        return Err(HeaderError::NewerFormat(format));
    }
    if format == 0 {
        return Err(HeaderError::UnknownFormat(format));
    }
    let len = u32_at(buf, 12);
    if len as usize != HEADER_LEN {
        return Err(HeaderError::BadHeaderLen(len));
    }
    Ok(Header {
        format,
        first_seq: u64_at(buf, 16),
    })
}

/// Appends one format-2 record to `out`; `more`: another record of the same batch follows.
pub fn encode_record(out: &mut Vec<u8>, seq: u64, payload: &[u8], more: bool) {
    debug_assert!(payload.len() <= MAX_PAYLOAD);
    let word = payload.len() as u32 | if more { MORE } else { 0 };
    let mut crc = crc32fast::Hasher::new();
    crc.update(&word.to_le_bytes());
    crc.update(&seq.to_le_bytes());
    crc.update(payload);
    out.extend_from_slice(&word.to_le_bytes());
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(payload);
}

/// Appends one format-1 record (as older builds wrote them). For tests of the upgrade path.
pub fn encode_record_v1(out: &mut Vec<u8>, seq: u64, payload: &[u8]) {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&seq.to_le_bytes());
    crc.update(payload);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(payload);
}

/// A format-1 segment header (as older builds wrote them). For tests of the upgrade path.
pub fn encode_header_v1(first_seq: u64) -> [u8; HEADER_LEN] {
    let mut h = encode_header(first_seq);
    h[8..12].copy_from_slice(&1u32.to_le_bytes());
    h
}

/// The result of decoding at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A valid record and the bytes it occupies; `more`: it is not the last of its batch.
    Complete {
        seq: u64,
        payload: &'a [u8],
        len: usize,
        more: bool,
    },
    /// The buffer ends inside a record (or is empty).
    Incomplete,
    /// The bytes cannot be a valid record.
    Corrupt(&'static str),
}

/// Decodes the record at the start of `buf`, in a segment of `format` (1 or 2).
pub fn decode_record(buf: &[u8], format: u32) -> Decoded<'_> {
    if buf.len() < RECORD_OVERHEAD {
        return Decoded::Incomplete;
    }
    let word = u32_at(buf, 0);
    let (len, more) = if format >= 2 {
        ((word & !MORE) as usize, word & MORE != 0)
    } else {
        (word as usize, false)
    };
    if len > MAX_PAYLOAD {
        return Decoded::Corrupt("record length is larger than the largest event");
    }
    let total = RECORD_OVERHEAD + len;
    if buf.len() < total {
        return Decoded::Incomplete;
    }
    let want = u32_at(buf, 4);
    let seq_bytes = &buf[8..16];
    let payload = &buf[16..total];
    let mut crc = crc32fast::Hasher::new();
    if format >= 2 {
        crc.update(&buf[0..4]);
    }
    crc.update(seq_bytes);
    crc.update(payload);
    if crc.finalize() != want {
        return Decoded::Corrupt("record checksum mismatch");
    }
    Decoded::Complete {
        seq: u64_at(buf, 8),
        payload,
        len: total,
        more,
    }
}

/// A stretch of a segment that holds no valid record (damage on disk), found by [`scan`] or
/// [`resync`]. Offsets are relative to the buffer scanned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hole {
    /// The first byte that did not decode.
    pub start: usize,
    /// Where the next valid record starts (or the end of the buffer).
    pub end: usize,
    /// The seq of the last valid record before the hole, if any.
    pub after: Option<u64>,
    /// The seq of the first valid record after the hole (`None`: none follows in the buffer).
    pub next: Option<u64>,
    /// Why the bytes at `start` are not a record.
    pub reason: String,
}

/// What [`scan`] found in the records of a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scanned {
    /// Bytes from the start of the buffer that hold complete batches only.
    pub valid: usize,
    /// The seq of the last record within `valid` (`None`: no record).
    pub last: Option<u64>,
    /// Damage inside `valid`, each followed by a valid record: the scan resynchronised there.
    pub holes: Vec<Hole>,
    /// Why the bytes after `valid` are not kept (a write cut short, damage at the very end, an
    /// unfinished batch), if there are such bytes.
    pub problem: Option<String>,
}

/// Finds the next valid record in `buf` at an offset of at least 1 whose seq is above `after`:
/// its offset and seq. Each record carries its seq and a CRC-32 over it, and payloads are JSON
/// text (no byte below 0x20 outside escapes), so a false match inside damaged or payload bytes
/// would need a 32-bit checksum collision on a length word that text cannot spell.
pub fn resync(buf: &[u8], format: u32, after: Option<u64>) -> Option<(usize, u64)> {
    (1..buf.len()).find_map(|at| match decode_record(&buf[at..], format) {
        Decoded::Complete { seq, .. } if after.is_none_or(|a| seq > a) => Some((at, seq)),
        _ => None,
    })
}

/// Scans records from the start of `buf` (a segment of `format`, after its header or after
/// a point known to end a batch) and returns the end of the last complete batch. `expected` is
/// the seq the first record must carry; `last` the seq before it, if any.
///
/// Damage in the middle (bytes that do not decode, or a seq that goes backwards) does not end
/// the scan: it resynchronises at the next valid record ([`resync`]) and reports the [`Hole`];
/// every intact record after it counts. Only when no valid record follows is the rest a
/// `problem` (a torn write at the end, or damage there: the caller cannot tell them apart).
pub fn scan(buf: &[u8], format: u32, expected: u64, last: Option<u64>) -> Scanned {
    let mut pos = 0;
    let mut out = Scanned {
        valid: 0,
        last,
        holes: Vec::new(),
        problem: None,
    };
    let mut expected = expected;
    let mut seen = last.or(expected.checked_sub(1));
    let mut holes = Vec::new();
    let mut in_batch = false;
    while pos < buf.len() {
        let why: String = match decode_record(&buf[pos..], format) {
            Decoded::Complete { seq, len, more, .. } if seen.is_none_or(|s| seq > s) => {
                if seq != expected {
                    // A gap with no damaged byte: seqs were skipped (never reissued).
                    holes.push(Hole {
                        start: pos,
                        end: pos,
                        after: seen,
                        next: Some(seq),
                        reason: format!("sequence {seq} where {expected} was expected"),
                    });
                }
                expected = seq.wrapping_add(1);
                seen = Some(seq);
                pos += len;
                in_batch = more;
                if !more {
                    out.valid = pos;
                    out.last = Some(seq);
                    out.holes.append(&mut holes);
                }
                continue;
            }
            Decoded::Complete { seq, .. } => {
                format!("sequence {seq} where {expected} was expected")
            }
            Decoded::Incomplete => "incomplete record (a write cut short)".into(),
            Decoded::Corrupt(why) => why.into(),
        };
        match resync(&buf[pos..], format, seen) {
            Some((skip, next)) => {
                holes.push(Hole {
                    start: pos,
                    end: pos + skip,
                    after: seen,
                    next: Some(next),
                    reason: why,
                });
                pos += skip;
                expected = next;
                in_batch = false;
            }
            None => {
                if let Some(seq) = damaged_last_record(&buf[pos..], format, expected) {
                    // The last record is all there — its length reaches the end exactly, its seq
                    // is the one expected, it ends its batch — but its checksum fails: damage,
                    // not a write cut short. Its batch was complete: keep the rest of it.
                    holes.push(Hole {
                        start: pos,
                        end: buf.len(),
                        after: seen,
                        next: Some(seq + 1),
                        reason: why,
                    });
                    out.valid = buf.len();
                    out.last = Some(seq);
                    out.holes.append(&mut holes);
                    return out;
                }
                out.problem = Some(why);
                return out;
            }
        }
    }
    if in_batch {
        out.problem = Some("incomplete batch (an append cut short between its records)".into());
    }
    out
}

/// `Some(seq)` when `rest` is exactly one record whose framing is intact (its length reaches the
/// end of `rest`, its seq is `expected`, it ends its batch) but whose checksum fails.
fn damaged_last_record(rest: &[u8], format: u32, expected: u64) -> Option<u64> {
    if rest.len() < RECORD_OVERHEAD {
        return None;
    }
    let word = u32_at(rest, 0);
    let (len, more) = if format >= 2 {
        ((word & !MORE) as usize, word & MORE != 0)
    } else {
        (word as usize, false)
    };
    let seq = u64_at(rest, 8);
    (!more && len <= MAX_PAYLOAD && RECORD_OVERHEAD + len == rest.len() && seq == expected)
        .then_some(seq)
}

/// The acknowledgement record (`meta.bin`, format 2): two fixed-size slots, each with a
/// generation and a CRC-32. An acknowledgement overwrites the older slot in place, so it needs no
/// new disk block (it works on a full disk), and a write torn by a crash leaves the other slot.
pub mod meta {
    /// Bytes in one slot; the file is two slots.
    pub const SLOT_LEN: usize = 64;
    pub const FILE_LEN: usize = 2 * SLOT_LEN;
    pub const MAGIC: &[u8; 8] = b"UPLQACK\0";
    /// The format this build writes.
    pub const FORMAT: u32 = 2;
    const NONE: u64 = u64::MAX;

    /// One acknowledgement state.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    pub struct Ack {
        /// Counts up with every write; the slot with the higher one wins.
        pub generation: u64,
        pub acked_through: Option<u64>,
        pub acked_segment: Option<u64>,
        pub acked_offset: u64,
    }

    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
    pub enum MetaError {
        #[error("written by a newer uplink (format {0}); this build reads format {FORMAT}: upgrade uplink")]
        Newer(u32),
        #[error("neither copy of the acknowledgement record is intact")]
        Damaged,
    }

    /// The slot an [`Ack`] of this generation goes to, and its bytes.
    pub fn encode(ack: &Ack) -> (usize, [u8; SLOT_LEN]) {
        let mut b = [0u8; SLOT_LEN];
        b[..8].copy_from_slice(MAGIC);
        b[8..12].copy_from_slice(&FORMAT.to_le_bytes());
        b[16..24].copy_from_slice(&ack.generation.to_le_bytes());
        b[24..32].copy_from_slice(&ack.acked_through.unwrap_or(NONE).to_le_bytes());
        b[32..40].copy_from_slice(&ack.acked_segment.unwrap_or(NONE).to_le_bytes());
        b[40..48].copy_from_slice(&ack.acked_offset.to_le_bytes());
        let crc = crc32fast::hash(&b[..48]);
        b[48..52].copy_from_slice(&crc.to_le_bytes());
        ((ack.generation % 2) as usize * SLOT_LEN, b)
    }

    fn slot(b: &[u8]) -> Result<Option<Ack>, MetaError> {
        if b.len() < SLOT_LEN || &b[..8] != MAGIC {
            return Ok(None);
        }
        let u64_at = |at: usize| super::u64_at(b, at);
        let format = super::u32_at(b, 8);
        if crc32fast::hash(&b[..48]) != super::u32_at(b, 48) {
            return Ok(None);
        }
        if format > FORMAT {
            return Err(MetaError::Newer(format));
        }
        let opt = |v: u64| (v != NONE).then_some(v);
        Ok(Some(Ack {
            generation: u64_at(16),
            acked_through: opt(u64_at(24)),
            acked_segment: opt(u64_at(32)),
            acked_offset: u64_at(40),
        }))
    }

    /// The newest intact slot of a `meta.bin`.
    pub fn decode(buf: &[u8]) -> Result<Ack, MetaError> {
        let a = slot(buf.get(..SLOT_LEN).unwrap_or(&[]))?;
        let b = slot(buf.get(SLOT_LEN..FILE_LEN).unwrap_or(&[]))?;
        match (a, b) {
            (Some(a), Some(b)) => Ok(if b.generation > a.generation { b } else { a }),
            (Some(x), None) | (None, Some(x)) => Ok(x),
            (None, None) => Err(MetaError::Damaged),
        }
    }
}

/// The digest of a payload that [`crate::Intent`] and [`crate::Stored`] carry: 64-bit FNV-1a.
/// Not cryptographic; it tells "the record at seq L is the one I wrote" from "another appender's
/// record got seq L", where the payloads differ (they carry kind and fields).
pub fn digest(payload: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in payload {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_errors() {
        let h = encode_header(42);
        assert_eq!(
            decode_header(&h).unwrap(),
            Header {
                format: FORMAT,
                first_seq: 42
            }
        );
        assert_eq!(
            decode_header(&encode_header_v1(7)).unwrap(),
            Header {
                format: 1,
                first_seq: 7
            }
        );
        assert_eq!(decode_header(&h[..10]), Err(HeaderError::Truncated));
        let mut bad = h;
        bad[0] = b'X';
        assert_eq!(decode_header(&bad), Err(HeaderError::BadMagic));
        let mut newer = h;
        newer[8..12].copy_from_slice(&3u32.to_le_bytes());
        assert_eq!(decode_header(&newer), Err(HeaderError::NewerFormat(3)));
        let mut zero = h;
        zero[8..12].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(decode_header(&zero), Err(HeaderError::UnknownFormat(0)));
    }

    #[test]
    fn every_truncation_of_a_record_is_incomplete_never_wrong() {
        for format in [1, 2] {
            let mut buf = Vec::new();
            if format == 1 {
                encode_record_v1(&mut buf, 7, b"{\"seq\":7}");
            } else {
                encode_record(&mut buf, 7, b"{\"seq\":7}", true);
            }
            for cut in 0..buf.len() {
                assert_eq!(
                    decode_record(&buf[..cut], format),
                    Decoded::Incomplete,
                    "format {format} cut at {cut}"
                );
            }
            assert_eq!(
                decode_record(&buf, format),
                Decoded::Complete {
                    seq: 7,
                    payload: b"{\"seq\":7}",
                    len: buf.len(),
                    more: format == 2
                }
            );
        }
    }

    #[test]
    fn every_single_bit_flip_is_detected_including_the_batch_flag() {
        for more in [false, true] {
            let mut buf = Vec::new();
            encode_record(&mut buf, 1 << 40, b"payload bytes", more);
            for i in 0..buf.len() {
                for bit in 0..8 {
                    let mut b = buf.clone();
                    b[i] ^= 1 << bit;
                    match decode_record(&b, 2) {
                        Decoded::Complete { .. } => {
                            panic!("flip of byte {i} bit {bit} went unnoticed (more={more})")
                        }
                        Decoded::Incomplete | Decoded::Corrupt(_) => {}
                    }
                }
            }
        }
    }

    #[test]
    fn the_formats_do_not_read_each_other() {
        let (mut v1, mut v2) = (Vec::new(), Vec::new());
        encode_record_v1(&mut v1, 3, b"abc");
        encode_record(&mut v2, 3, b"abc", true);
        assert!(matches!(decode_record(&v1, 2), Decoded::Corrupt(_)));
        // A format-1 reader sees the flag as an absurd length.
        assert!(matches!(decode_record(&v2, 1), Decoded::Corrupt(_)));
        // Without the flag the length words agree, but the checksums do not.
        let mut last = Vec::new();
        encode_record(&mut last, 3, b"abc", false);
        assert!(matches!(decode_record(&last, 1), Decoded::Corrupt(_)));
    }

    #[test]
    fn oversized_length_is_corrupt_not_a_huge_allocation() {
        let mut buf = vec![0xff, 0xff, 0xff, 0x7f];
        buf.resize(32, 0);
        for format in [1, 2] {
            assert_eq!(
                decode_record(&buf, format),
                Decoded::Corrupt("record length is larger than the largest event")
            );
        }
    }

    /// Batches of the given sizes, from seq 10: the bytes and the offset where each batch ends.
    fn batches(sizes: &[usize]) -> (Vec<u8>, Vec<(usize, u64)>, Vec<usize>) {
        let mut buf = Vec::new();
        let mut ends = Vec::new();
        let mut record_ends = Vec::new();
        let mut seq = 10;
        for &n in sizes {
            for i in 0..n {
                encode_record(&mut buf, seq, format!("event {seq}").as_bytes(), i + 1 < n);
                record_ends.push(buf.len());
                seq += 1;
            }
            ends.push((buf.len(), seq - 1));
        }
        (buf, ends, record_ends)
    }

    #[test]
    fn a_batch_cut_anywhere_is_dropped_whole() {
        let (buf, ends, record_ends) = batches(&[1, 3, 2]);
        for cut in 0..=buf.len() {
            let s = scan(&buf[..cut], 2, 10, None);
            // The last batch end at or before the cut.
            let (valid, last) = ends
                .iter()
                .rev()
                .find(|(e, _)| *e <= cut)
                .map_or((0, None), |(e, l)| (*e, Some(*l)));
            assert_eq!((s.valid, s.last), (valid, last), "cut at {cut}");
            let clean = cut == 0 || ends.iter().any(|(e, _)| *e == cut);
            assert_eq!(s.problem.is_none(), clean, "cut at {cut}: {:?}", s.problem);
            if record_ends.contains(&cut) && !clean {
                // Cut exactly between two records of a batch: every record decodes, yet the
                // batch is unfinished.
                assert!(
                    s.problem.unwrap().contains("incomplete batch"),
                    "cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn scanning_tables() {
        let (buf, _, _) = batches(&[2, 1]);
        let mut v1 = Vec::new();
        for seq in 5..8 {
            encode_record_v1(&mut v1, seq, b"x");
        }
        let mut flipped = buf.clone();
        let n = flipped.len();
        flipped[n - 1] ^= 1;
        for (name, bytes, format, expected, last, want_valid, want_last, want_problem) in [
            ("empty", &[][..], 2, 0, None, 0, None, None),
            ("empty keeps last", &[][..], 2, 9, Some(8), 0, Some(8), None),
            (
                "two batches",
                &buf[..],
                2,
                10,
                None,
                buf.len(),
                Some(12),
                None,
            ),
            (
                // A seq going backwards is damage: the scan resyncs at 11.
                "wrong first seq",
                &buf[..],
                2,
                11,
                None,
                buf.len(),
                Some(12),
                None,
            ),
            (
                // The payload of the last record: a hole, the record's framing says it was whole.
                "damaged last record",
                &flipped[..],
                2,
                10,
                None,
                buf.len(),
                Some(12),
                None,
            ),
            (
                "format 1: records",
                &v1[..],
                1,
                5,
                None,
                v1.len(),
                Some(7),
                None,
            ),
            (
                "format 1 cut",
                &v1[..v1.len() - 1],
                1,
                5,
                None,
                2 * (RECORD_OVERHEAD + 1),
                Some(6),
                Some("incomplete record (a write cut short)"),
            ),
        ] {
            let s = scan(bytes, format, expected, last);
            assert_eq!(
                (s.valid, s.last, s.problem.as_deref()),
                (want_valid, want_last, want_problem),
                "{name}"
            );
        }
    }

    #[test]
    fn damage_in_the_middle_resyncs_at_the_next_record_and_names_the_lost_seqs() {
        // Batches from seq 10: [10] [11 12 13] [14] [15 16] [17].
        let (buf, _, record_ends) = batches(&[1, 3, 1, 2, 1]);
        let start_of = |seq: u64| {
            if seq == 10 {
                0
            } else {
                record_ends[(seq - 11) as usize]
            }
        };
        for (name, damaged, want_after, want_next) in [
            ("first record", vec![10], Some(9), 11),
            ("middle of a batch", vec![12], Some(11), 13),
            ("two records", vec![13, 14], Some(12), 15),
            ("last of a batch", vec![16], Some(15), 17),
        ] {
            let mut b = buf.clone();
            for seq in &damaged {
                // Four bytes in the middle of the record, as a bad sector might.
                let at = start_of(*seq) + RECORD_OVERHEAD / 2;
                for x in &mut b[at..at + 4] {
                    *x ^= 0x5a;
                }
            }
            let s = scan(&b, 2, 10, None);
            assert_eq!(s.problem, None, "{name}");
            assert_eq!((s.valid, s.last), (b.len(), Some(17)), "{name}");
            assert_eq!(s.holes.len(), 1, "{name}: {:?}", s.holes);
            let h = &s.holes[0];
            assert_eq!((h.after, h.next), (want_after, Some(want_next)), "{name}");
            assert_eq!(h.start, start_of(damaged[0]), "{name}");
            assert_eq!(h.end, start_of(want_next), "{name}");
        }
        // Damage in the payload of the last record: its framing is intact, so it is a hole at
        // the end, not a torn write; everything before it is kept.
        let mut b = buf.clone();
        let at = start_of(17) + 20;
        b[at] ^= 1;
        let s = scan(&b, 2, 10, None);
        assert_eq!((s.valid, s.last, s.problem), (b.len(), Some(17), None));
        assert_eq!(s.holes.len(), 1);
        assert_eq!((s.holes[0].after, s.holes[0].next), (Some(16), Some(18)));
        // The same record cut short is a torn write: its batch goes.
        let s = scan(&buf[..buf.len() - 1], 2, 10, None);
        assert_eq!((s.valid, s.last), (start_of(17), Some(16)));
        assert!(s.holes.is_empty());
        assert_eq!(
            s.problem.as_deref(),
            Some("incomplete record (a write cut short)")
        );
        // Damage in its seq: cannot be told from garbage, the rest is the problem.
        let mut b = buf.clone();
        b[start_of(17) + 9] ^= 1;
        let s = scan(&b, 2, 10, None);
        assert_eq!((s.valid, s.last), (start_of(17), Some(16)));
        assert_eq!(s.problem.as_deref(), Some("record checksum mismatch"));
        // Zeroed bytes (a lost page) are not records.
        assert_eq!(resync(&[0u8; 4096], 2, None), None);
    }

    #[test]
    fn meta_slots() {
        use meta::*;
        let a = Ack {
            generation: 7,
            acked_through: Some(41),
            acked_segment: Some(0),
            acked_offset: 1234,
        };
        let b = Ack {
            generation: 8,
            acked_through: Some(99),
            acked_segment: None,
            acked_offset: 24,
        };
        let mut file = vec![0u8; FILE_LEN];
        for ack in [a, b] {
            let (at, bytes) = encode(&ack);
            file[at..at + SLOT_LEN].copy_from_slice(&bytes);
        }
        assert_eq!(decode(&file), Ok(b));
        // A write of the newer slot torn by a crash: the older one stands.
        let (newer_at, _) = encode(&b);
        let (older_at, _) = encode(&a);
        assert_ne!(
            newer_at, older_at,
            "consecutive generations alternate slots"
        );
        let mut torn = file.clone();
        torn[newer_at + 30] ^= 1;
        assert_eq!(decode(&torn), Ok(a));
        let mut both = torn.clone();
        both[older_at + 30] ^= 1;
        assert_eq!(decode(&both), Err(MetaError::Damaged));
        assert_eq!(decode(&[]), Err(MetaError::Damaged));
        let mut newer = file.clone();
        newer[newer_at + 8..newer_at + 12].copy_from_slice(&3u32.to_le_bytes());
        let crc = crc32fast::hash(&newer[newer_at..newer_at + 48]);
        newer[newer_at + 48..newer_at + 52].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode(&newer), Err(MetaError::Newer(3)));
    }

    #[test]
    fn digests() {
        // FNV-1a 64 reference values.
        for (input, want) in [
            (&b""[..], 0xcbf2_9ce4_8422_2325u64),
            (b"a", 0xaf63_dc4c_8601_ec8c),
            (b"foobar", 0x8594_4171_f739_67e8),
        ] {
            assert_eq!(digest(input), want, "{input:?}");
        }
    }
}
