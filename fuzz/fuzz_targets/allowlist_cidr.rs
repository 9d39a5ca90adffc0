//! Prefix text comes from downloaded files: the parser must never panic, a parsed prefix must
//! print back to text that parses to the same prefix, and aggregation must never cover fewer
//! addresses than its input (checked at every input prefix's ends).
#![no_main]
use uplink_allowlist::cidr::{aggregate, Prefix};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let prefixes: Vec<Prefix> = text
        .split(',')
        .filter_map(|t| Prefix::parse(t).ok())
        .collect();
    for p in &prefixes {
        assert_eq!(Prefix::parse(&p.to_string()), Ok(*p));
    }
    let out = aggregate(&prefixes);
    for p in &prefixes {
        for a in [p.first(), p.last()] {
            assert!(out.iter().any(|q| q.contains(p.family(), a)), "{p} lost");
        }
    }
    for w in out.windows(2) {
        assert!(w[0] < w[1]);
        assert!(w[0].family() != w[1].family() || w[0].last() < w[1].first());
    }
});
