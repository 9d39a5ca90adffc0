//! Queue records are read back from disk after crashes: any bytes must decode to a record, an
//! `Incomplete` or a `Corrupt`, never a panic; a `Complete` must re-encode to the same bytes; a
//! scan never claims more valid bytes than it was given, and always ends on a record boundary;
//! resynchronisation finds a record inside the buffer; `meta.bin` slots never panic.
#![no_main]
use uplink_queue::record::{
    decode_header, decode_record, encode_record, encode_record_v1, meta, resync, scan, Decoded,
};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = decode_header(data);
    let _ = meta::decode(data);
    for format in [1, 2] {
        if let Decoded::Complete {
            seq,
            payload,
            len,
            more,
        } = decode_record(data, format)
        {
            let mut again = Vec::new();
            if format == 1 {
                encode_record_v1(&mut again, seq, payload);
            } else {
                encode_record(&mut again, seq, payload, more);
            }
            assert_eq!(&again[..], &data[..len]);
        }
        let first = data
            .get(8..16)
            .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap()));
        let s = scan(data, format, first, None);
        assert!(s.valid <= data.len());
        assert_eq!(scan(&data[..s.valid], format, first, None).valid, s.valid);
        for h in &s.holes {
            assert!(h.start <= h.end && h.end <= s.valid);
        }
        if let Some((at, _)) = resync(data, format, None) {
            assert!(at > 0 && at < data.len());
            assert!(matches!(decode_record(&data[at..], format), Decoded::Complete { .. }));
        }
    }
});
