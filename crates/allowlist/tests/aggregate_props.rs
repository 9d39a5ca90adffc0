//! Property tests: aggregation covers exactly the addresses its input covers, and its output
//! is minimal (no two prefixes overlap, none could merge with a sibling), sorted and stable.
//!
//! Two universes: a small one (IPv4 prefixes inside 10.0.0.0/22, 1,024 addresses) checked
//! address by address, and the full IPv4 and IPv6 spaces, checked at every boundary (each
//! input and output prefix's first and last address and their neighbours) and at random
//! addresses.

use proptest::prelude::*;
use uplink_allowlist::cidr::{aggregate, Family, Prefix};

fn covered(prefixes: &[Prefix], family: Family, addr: u128) -> bool {
    prefixes.iter().any(|p| p.contains(family, addr))
}

/// Asserts the structural properties of an aggregated list.
fn assert_minimal(out: &[Prefix]) {
    for w in out.windows(2) {
        let (a, b) = (w[0], w[1]);
        assert!(a < b, "not sorted: {a} then {b}");
        if a.family() == b.family() {
            assert!(a.last() < b.first(), "{a} and {b} overlap");
            // Siblings: same length, differ only in the last network bit. They could merge.
            let len = a.prefix_len();
            if len > 0 && len == b.prefix_len() {
                let bit = 1u128 << (a.family().bits() - len);
                let parent_aligned = a.first() & bit == 0;
                assert!(
                    !(parent_aligned && a.first() | bit == b.first()),
                    "{a} and {b} could merge into one prefix"
                );
            }
        }
    }
}

fn v4(addr: u32, len: u8) -> Prefix {
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    Prefix::new(Family::V4, u128::from(addr & mask), len).unwrap()
}

fn v6(addr: u128, len: u8) -> Prefix {
    let mask = if len == 0 {
        0
    } else {
        u128::MAX << (128 - len)
    };
    Prefix::new(Family::V6, addr & mask, len).unwrap()
}

/// Prefixes crowded into 10.0.0.0/22 so that overlaps, duplicates and siblings are common.
fn small_universe() -> impl Strategy<Value = Vec<Prefix>> {
    prop::collection::vec((0u32..1024, 22u8..=32), 0..40).prop_map(|v| {
        v.into_iter()
            .map(|(a, len)| v4(0x0a00_0000 + a, len))
            .collect()
    })
}

/// Prefixes anywhere, both families, biased towards a few shared high bits so they interact.
fn full_universe() -> impl Strategy<Value = Vec<Prefix>> {
    let v4s = (any::<u32>(), 0u8..=32, 0u8..4).prop_map(|(a, len, bias)| {
        let a = if bias > 0 {
            (a & 0x0000_ffff) | 0x0a0a_0000
        } else {
            a
        };
        v4(a, len.max(if bias > 0 { 12 } else { 0 }))
    });
    let v6s = (any::<u128>(), 0u8..=128, 0u8..4).prop_map(|(a, len, bias)| {
        let a = if bias > 0 {
            (a & 0xffff_ffff) | 0x2603_1000_0000_0000_0000_0000_0000_0000
        } else {
            a
        };
        v6(a, len.max(if bias > 0 { 90 } else { 0 }))
    });
    prop::collection::vec(prop_oneof![v4s, v6s], 0..40)
}

fn boundaries(prefixes: &[Prefix]) -> Vec<(Family, u128)> {
    let mut v = Vec::new();
    for p in prefixes {
        let f = p.family();
        for a in [p.first(), p.last()] {
            v.push((f, a));
            if a > 0 {
                v.push((f, a - 1));
            }
            if a < f.max_addr() {
                v.push((f, a + 1));
            }
        }
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn small_universe_exact(input in small_universe()) {
        let out = aggregate(&input);
        for a in 0x0a00_0000u128 - 2..0x0a00_0000 + 1024 + 2 {
            prop_assert_eq!(covered(&input, Family::V4, a), covered(&out, Family::V4, a), "address {}", a);
        }
        assert_minimal(&out);
        prop_assert_eq!(aggregate(&out), out.clone());
        let in_count: u128 = (0x0a00_0000u128..0x0a00_0000 + 1024).filter(|a| covered(&input, Family::V4, *a)).count() as u128;
        let out_count: u128 = out.iter().map(|p| p.last() - p.first() + 1).sum();
        prop_assert_eq!(in_count, out_count, "the output counts addresses twice or misses some");
    }

    #[test]
    fn full_universe_boundaries(input in full_universe(), samples in prop::collection::vec((any::<bool>(), any::<u128>()), 64)) {
        let out = aggregate(&input);
        assert_minimal(&out);
        let mut points = boundaries(&input);
        points.extend(boundaries(&out));
        for (is_v6, a) in samples {
            if is_v6 {
                points.push((Family::V6, a));
            } else {
                points.push((Family::V4, a & u128::from(u32::MAX)));
            }
        }
        for (f, a) in points {
            prop_assert_eq!(covered(&input, f, a), covered(&out, f, a), "{} address {:#x}", f, a);
        }
        prop_assert_eq!(aggregate(&out), out.clone());
        // Order of the input does not matter.
        let mut reversed = input.clone();
        reversed.reverse();
        prop_assert_eq!(aggregate(&reversed), out);
    }

    #[test]
    fn text_round_trips(input in full_universe()) {
        for p in input {
            prop_assert_eq!(Prefix::parse(&p.to_string()), Ok(p));
        }
    }
}
