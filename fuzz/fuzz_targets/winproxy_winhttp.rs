//! WinHTTP proxy blobs come from registry exports anyone can edit: decoding must never panic,
//! and whatever decodes must re-encode to the same bytes.
#![no_main]
use uplink_winproxy::{Decoded, WinHttpSettings};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(v) = WinHttpSettings::decode(data) {
        assert_eq!(v.encode().expect("a decoded value encodes"), data);
        let _ = v.settings().proxies();
    }
    // Recognising the layout by its first bytes must not panic either.
    let _ = Decoded::from_blob(data).map(|d| d.summary());
});
