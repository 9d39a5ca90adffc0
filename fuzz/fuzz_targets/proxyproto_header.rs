//! A PROXY protocol v2 header comes from whoever reaches the service's port (with
//! `--proxy-protocol` on): the parser must never panic, a complete header never claims more
//! bytes than it was given, and every prefix of an accepted header asks for more (with a bound
//! no larger than the header) instead of failing.
#![no_main]
// The parser is pure and lives in the service crate; included by path so that the fuzz build
// does not compile the whole service (TLS, PostgreSQL).
#[allow(dead_code)]
#[path = "../../crates/service/src/proxyproto.rs"]
mod proxyproto;

use proxyproto::{parse, Parsed, MAX_HEADER};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    match parse(data) {
        Ok(Parsed::Complete(h)) => {
            assert!(h.len <= data.len() && h.len <= MAX_HEADER);
            for cut in 0..h.len {
                match parse(&data[..cut]) {
                    Ok(Parsed::Incomplete { need }) => assert!(need > cut && need <= h.len),
                    other => panic!("prefix of {cut} bytes of an accepted header: {other:?}"),
                }
            }
        }
        Ok(Parsed::Incomplete { need }) => assert!(need > data.len() && need <= MAX_HEADER),
        Err(_) => {}
    }
});
