//! Every SOCKS5 answer comes from the network: the method choice, the username/password verdict
//! and the CONNECT reply parsers must never panic, and a value must never claim more bytes than
//! it was given.
#![no_main]
use uplink_tunnel::socks5::{parse_auth_reply, parse_method, parse_reply, Parsed};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(Parsed::Done(_, used)) = parse_method(data) {
        assert!(used <= data.len());
    }
    if let Ok(Parsed::Done(_, used)) = parse_auth_reply(data) {
        assert!(used <= data.len());
    }
    if let Ok(Parsed::Done(reply, used)) = parse_reply(data) {
        assert!(used <= data.len());
        assert_eq!(reply.rep == 0, reply.bound.is_some());
    }
});
