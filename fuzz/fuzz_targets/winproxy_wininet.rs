//! WinINet proxy blobs come from registry exports anyone can edit: decoding must never panic,
//! and whatever decodes must re-encode to the same bytes.
#![no_main]
use uplink_winproxy::{ConnectionSettings, InternetSettings};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(v) = ConnectionSettings::decode(data) {
        assert_eq!(v.encode().expect("a decoded value encodes"), data);
        let settings = v.settings();
        let _ = settings.proxy_for("https");
        // The string form carries the same meaning.
        let strings = InternetSettings::from_connection_settings(&v);
        assert_eq!(strings.settings(), settings);
    }
});
