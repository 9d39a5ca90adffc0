//! Event batches come from sensors over the network: parse and decode must never panic, and the
//! parser's fast path (SIMD string scans, issue #28) must answer every line as the general path
//! (serde_json) does: the same event, or the same refusal. A whole batch, scanned a line at a
//! time by its fast path finding each line's end, must parse as it does line by line.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = uplink_protocol::batch::parse(data, 1000);
    let _ = uplink_protocol::body::decode(uplink_protocol::body::Encoding::Zstd, data, 1 << 20);
    if let Ok(text) = std::str::from_utf8(data) {
        assert_eq!(
            uplink_protocol::batch::parse_str(text, 1000),
            uplink_protocol::batch::parse_str_by_lines(text, 1000),
            "{text:?}"
        );
        for line in text.split('\n') {
            assert_eq!(
                uplink_protocol::batch::parse_line(line),
                uplink_protocol::batch::parse_line_general(line),
                "{line:?}"
            );
        }
    }
});
