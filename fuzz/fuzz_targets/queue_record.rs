//! Queue records are read back from disk after crashes: any bytes must decode to a record, an
//! `Incomplete` or a `Corrupt`, never a panic; a `Complete` must re-encode to the same bytes.
#![no_main]
use uplink_queue::record::{decode_header, decode_record, encode_record, Decoded};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = decode_header(data);
    if let Decoded::Complete { seq, payload, len } = decode_record(data) {
        let mut again = Vec::new();
        encode_record(&mut again, seq, payload);
        assert_eq!(&again[..], &data[..len]);
    }
});
