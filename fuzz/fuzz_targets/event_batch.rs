//! Event batches come from sensors over the network: parse and decode must never panic, and the
//! parser's fast path (SIMD string scans, issue #28) must answer every line as the general path
//! (serde_json) does: the same event, or the same refusal. A whole batch, scanned a line at a
//! time by its fast path finding each line's end, must parse as it does line by line; and
//! compressed in small frames, parsed as they decode, it must give the same events.
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
        // One compressor for every run (a new one per frame is most of a run's time).
        thread_local! {
            static ZSTD: std::cell::RefCell<zstd::bulk::Compressor<'static>> =
                std::cell::RefCell::new(zstd::bulk::Compressor::new(1).unwrap());
        }
        let mut body = Vec::new();
        ZSTD.with(|z| {
            for chunk in data.chunks(7) {
                body.extend(z.borrow_mut().compress(chunk).unwrap());
            }
        });
        let frames = uplink_protocol::body::zstd_frames(&body).unwrap();
        let mut got = Vec::new();
        let len = uplink_protocol::batch::parse_zstd_frames(&body, &frames, 1000, |e, range| {
            got.push((e.seq, e.kind.to_string(), range));
        });
        match uplink_protocol::batch::parse_str(text, 1000) {
            Ok(want) => {
                assert_eq!(len, Some(text.len()));
                let got: Vec<_> = got.iter().map(|(s, k, r)| (*s, k.as_str(), &text[r.clone()])).collect();
                let want: Vec<_> = want.iter().map(|e| (e.seq, &*e.kind, e.raw)).collect();
                assert_eq!(got, want);
            }
            Err(_) => assert_eq!(len, None),
        }
        for line in text.split('\n') {
            assert_eq!(
                uplink_protocol::batch::parse_line(line),
                uplink_protocol::batch::parse_line_general(line),
                "{line:?}"
            );
        }
    }
});
