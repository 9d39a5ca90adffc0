//! The proxy's reply to CONNECT comes from the network: it must never panic the parser.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = uplink_tunnel::connect::parse_reply(data);
});
