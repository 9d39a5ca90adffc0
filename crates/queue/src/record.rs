//! The queue's on-disk framing, as pure functions over bytes.
//!
//! A segment file is a header followed by records:
//!
//! ```text
//! header : magic "UPLQSEG\0" (8) | format u32 LE | header length u32 LE (=24) | first seq u64 LE
//! record : payload length u32 LE | CRC-32 u32 LE over (seq ‖ payload) | seq u64 LE | payload
//! ```
//!
//! Decoding a record returns `Incomplete` when the bytes end inside it (a torn write at the end of
//! a file), or `Corrupt` when the bytes are there but wrong. Recovery keeps everything before the
//! first record that is not `Complete`.

/// Segment magic.
pub const MAGIC: &[u8; 8] = b"UPLQSEG\0";
/// The segment format this build writes and reads.
pub const FORMAT: u32 = 1;
/// Bytes in a segment header.
pub const HEADER_LEN: usize = 24;
/// Bytes before a record's payload.
pub const RECORD_OVERHEAD: usize = 16;
/// Largest payload a record may hold (one event).
pub const MAX_PAYLOAD: usize = 1 << 20;

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

pub fn decode_header(buf: &[u8]) -> Result<Header, HeaderError> {
    if buf.len() < HEADER_LEN {
        return Err(HeaderError::Truncated);
    }
    if &buf[..8] != MAGIC {
        return Err(HeaderError::BadMagic);
    }
    let format = u32::from_le_bytes(buf[8..12].try_into().expect("4 bytes"));
    if format > FORMAT {
        return Err(HeaderError::NewerFormat(format));
    }
    let len = u32::from_le_bytes(buf[12..16].try_into().expect("4 bytes"));
    if len as usize != HEADER_LEN {
        return Err(HeaderError::BadHeaderLen(len));
    }
    Ok(Header {
        format,
        first_seq: u64::from_le_bytes(buf[16..24].try_into().expect("8 bytes")),
    })
}

/// Appends one framed record to `out`.
pub fn encode_record(out: &mut Vec<u8>, seq: u64, payload: &[u8]) {
    debug_assert!(payload.len() <= MAX_PAYLOAD);
    let mut crc = crc32fast::Hasher::new();
    crc.update(&seq.to_le_bytes());
    crc.update(payload);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(payload);
}

/// The result of decoding at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A valid record and the bytes it occupies.
    Complete {
        seq: u64,
        payload: &'a [u8],
        len: usize,
    },
    /// The buffer ends inside a record (or is empty).
    Incomplete,
    /// The bytes cannot be a valid record.
    Corrupt(&'static str),
}

pub fn decode_record(buf: &[u8]) -> Decoded<'_> {
    if buf.len() < RECORD_OVERHEAD {
        return Decoded::Incomplete;
    }
    let len = u32::from_le_bytes(buf[0..4].try_into().expect("4 bytes")) as usize;
    if len > MAX_PAYLOAD {
        return Decoded::Corrupt("record length is larger than the largest event");
    }
    let total = RECORD_OVERHEAD + len;
    if buf.len() < total {
        return Decoded::Incomplete;
    }
    let want = u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes"));
    let seq_bytes = &buf[8..16];
    let payload = &buf[16..total];
    let mut crc = crc32fast::Hasher::new();
    crc.update(seq_bytes);
    crc.update(payload);
    if crc.finalize() != want {
        return Decoded::Corrupt("record checksum mismatch");
    }
    Decoded::Complete {
        seq: u64::from_le_bytes(seq_bytes.try_into().expect("8 bytes")),
        payload,
        len: total,
    }
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
        assert_eq!(decode_header(&h[..10]), Err(HeaderError::Truncated));
        let mut bad = h;
        bad[0] = b'X';
        assert_eq!(decode_header(&bad), Err(HeaderError::BadMagic));
        let mut newer = h;
        newer[8..12].copy_from_slice(&2u32.to_le_bytes());
        assert_eq!(decode_header(&newer), Err(HeaderError::NewerFormat(2)));
    }

    #[test]
    fn every_truncation_of_a_record_is_incomplete_never_wrong() {
        let mut buf = Vec::new();
        encode_record(&mut buf, 7, b"{\"seq\":7}");
        for cut in 0..buf.len() {
            assert_eq!(
                decode_record(&buf[..cut]),
                Decoded::Incomplete,
                "cut at {cut}"
            );
        }
        assert_eq!(
            decode_record(&buf),
            Decoded::Complete {
                seq: 7,
                payload: b"{\"seq\":7}",
                len: buf.len()
            }
        );
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let mut buf = Vec::new();
        encode_record(&mut buf, 1 << 40, b"payload bytes");
        for i in 0..buf.len() {
            for bit in 0..8 {
                let mut b = buf.clone();
                b[i] ^= 1 << bit;
                match decode_record(&b) {
                    Decoded::Complete { .. } => panic!("flip of byte {i} bit {bit} went unnoticed"),
                    Decoded::Incomplete | Decoded::Corrupt(_) => {}
                }
            }
        }
    }

    #[test]
    fn oversized_length_is_corrupt_not_a_huge_allocation() {
        let mut buf = vec![0xff, 0xff, 0xff, 0x7f];
        buf.resize(32, 0);
        assert_eq!(
            decode_record(&buf),
            Decoded::Corrupt("record length is larger than the largest event")
        );
    }
}
