//! .reg files are hand-edited text in three encodings: the parser must never panic, and a file
//! it reads must write out and read back the same.
#![no_main]
use uplink_winproxy::procedure;
use uplink_winproxy::{effective_proxy, find_proxy_values, RegFile, RegFormat};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(file) = RegFile::parse(data) else {
        return;
    };
    let _ = find_proxy_values(&file);
    let _ = effective_proxy(&file);
    let _ = procedure::user_connection_settings(&file);
    let _ = procedure::restore_file(std::slice::from_ref(&file), true, RegFormat::V5);
    // Some parsed text cannot be written (a NUL in a string, non-ANSI text in REGEDIT4).
    if let Ok(bytes) = file.to_bytes() {
        let again = RegFile::parse(&bytes).expect("uplink's own output parses");
        assert_eq!(again, file);
    }
});
