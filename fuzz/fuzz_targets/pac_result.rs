//! A PAC result string comes from a script someone else wrote: parsing it must never panic, always
//! yield at least one entry, and be stable (re-parsing the canonical form gives the same entries).
//! The URL helpers that feed the script are fuzzed alongside.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let parsed = uplink_pac::parse_pac_result_strict(&s);
    assert!(!parsed.proxies.is_empty());
    let canonical = uplink_pac::to_pac_string(&parsed.proxies);
    assert_eq!(uplink_pac::parse_pac_result(&canonical), parsed.proxies, "{canonical:?}");
    let _ = uplink_pac::host_for_pac(&s);
    let _ = uplink_pac::url_for_pac(&s);
});
