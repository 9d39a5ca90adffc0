//! A tailed text line becomes a JSON string in the sensor (`write_str_lossy`: std's UTF-8
//! check, then SIMD escaping, issue #28): for any bytes, exactly what serde_json writes for
//! `String::from_utf8_lossy` of them. A line of a `format = "json"` file is shipped as it is
//! when `json::object` says so: its fast scan must answer as its slow way (serde_json) does.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut got = Vec::new();
    uplink_sources::json::write_str_lossy(&mut got, data);
    let want = serde_json::to_vec(&String::from_utf8_lossy(data)).expect("a string serialises");
    assert_eq!(got, want, "{data:?}");
    assert_eq!(
        uplink_sources::json::object(data),
        uplink_sources::json::object_slow(data),
        "{data:?}"
    );
});
