//! Event batches come from sensors over the network: parse and decode must never panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = uplink_protocol::batch::parse(data, 1000);
    let _ = uplink_protocol::body::decode(uplink_protocol::body::Encoding::Zstd, data, 1 << 20);
});
