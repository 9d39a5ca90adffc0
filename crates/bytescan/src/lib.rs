//! JSON's special bytes, 64 at a time, as bitmasks (issue #28).
//!
//! Both ends of the upload path walk every byte of every event's strings: the sensor escapes a
//! text line into a JSON string, the service validates the string it receives. A line full of
//! escapes (a log line that quotes, a Windows path) has a special byte every few bytes, and
//! finding them one word and one branch at a time cost both ends more per event than all the
//! rest of the line. Here a block of 64 bytes becomes one bit per byte and class — quote,
//! backslash, control character, or any byte of a small set — so the callers work on whole
//! blocks with bit arithmetic: an escaped quote is `quote & escaped`, the string's end the
//! lowest bit left, a block without escapes one test.
//!
//! On x86_64 the classes are SSE2 compares (part of every x86_64 CPU, so no detection at run
//! time), sixteen bytes per instruction; elsewhere a loop over the bytes gives the same masks.
//! rustc (LLVM) does not turn that loop into SSE2 by itself (its byte compares against
//! constants come out as shuffles), hence the unsafe load and calls, in a crate of their own
//! because the workspace forbids unsafe code.
//!
//! Pure: functions of a block, tested against the portable loop on every byte value.

/// Bit `k` of each mask is byte `k` of the block.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Specials {
    /// `"`.
    pub quote: u64,
    /// `\`.
    pub backslash: u64,
    /// Below 0x20: not allowed raw in a JSON string.
    pub control: u64,
}

/// The quotes, backslashes and control characters of `block`.
#[inline]
pub fn specials(block: &[u8; 64]) -> Specials {
    imp::specials(block)
}

/// The bytes of `block` that are any of `set`.
#[inline]
pub fn any_of<const N: usize>(block: &[u8; 64], set: [u8; N]) -> u64 {
    imp::any_of(block, set)
}

/// The same masks one byte at a time: what [`specials`] must answer, and what it is off x86_64.
pub fn specials_portable(block: &[u8; 64]) -> Specials {
    let mut m = Specials::default();
    for (k, &c) in block.iter().enumerate() {
        m.quote |= u64::from(c == b'"') << k;
        m.backslash |= u64::from(c == b'\\') << k;
        m.control |= u64::from(c < 0x20) << k;
    }
    m
}

/// [`any_of`] one byte at a time.
pub fn any_of_portable<const N: usize>(block: &[u8; 64], set: [u8; N]) -> u64 {
    let mut m = 0;
    for (k, c) in block.iter().enumerate() {
        m |= u64::from(set.contains(c)) << k;
    }
    m
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
mod imp {
    use super::Specials;
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8, _mm_setzero_si128,
    };

    #[inline]
    pub(super) fn specials(block: &[u8; 64]) -> Specials {
        // SAFETY: this module is compiled only where SSE2 is enabled (`target_feature = "sse2"`,
        // the default of every x86_64 target but soft-float ones), the feature `sse2_specials`
        // needs.
        unsafe { sse2_specials(block) }
    }

    #[inline]
    pub(super) fn any_of<const N: usize>(block: &[u8; 64], set: [u8; N]) -> u64 {
        // SAFETY: as in `specials`: SSE2 is enabled where this module is compiled.
        unsafe { sse2_any_of(block, set) }
    }

    /// The four 16-byte lanes of `block`.
    #[inline]
    #[target_feature(enable = "sse2")]
    fn lanes(block: &[u8; 64]) -> [__m128i; 4] {
        let mut v = [_mm_setzero_si128(); 4];
        for (j, lane) in block.chunks_exact(16).enumerate() {
            // SAFETY: `lane` is 16 readable bytes and `_mm_loadu_si128` reads exactly 16 with
            // no alignment requirement.
            v[j] = unsafe { _mm_loadu_si128(lane.as_ptr().cast()) };
        }
        v
    }

    /// One bit per byte of the lanes, from compares (each byte 0 or 0xff).
    #[inline]
    #[target_feature(enable = "sse2")]
    fn bits(m: [__m128i; 4]) -> u64 {
        let mut acc = 0;
        for (j, &v) in m.iter().enumerate() {
            // The 16 high bits, in the low half of an i32.
            acc |= u64::from(_mm_movemask_epi8(v) as u16) << (16 * j);
        }
        acc
    }

    #[inline]
    #[target_feature(enable = "sse2")]
    fn sse2_specials(block: &[u8; 64]) -> Specials {
        let v = lanes(block);
        let (mut quote, mut backslash, mut control) = ([v[0]; 4], [v[0]; 4], [v[0]; 4]);
        // Unsigned `c <= 0x1f` is `min(c, 0x1f) == c`.
        let low = _mm_set1_epi8(0x1f);
        let mut any = _mm_setzero_si128();
        for j in 0..4 {
            quote[j] = _mm_cmpeq_epi8(v[j], _mm_set1_epi8(b'"' as i8));
            backslash[j] = _mm_cmpeq_epi8(v[j], _mm_set1_epi8(b'\\' as i8));
            control[j] = _mm_cmpeq_epi8(_mm_min_epu8(v[j], low), v[j]);
            any = _mm_or_si128(
                any,
                _mm_or_si128(quote[j], _mm_or_si128(backslash[j], control[j])),
            );
        }
        // Most blocks of a long string have none: one movemask instead of twelve.
        if _mm_movemask_epi8(any) == 0 {
            return Specials::default();
        }
        Specials {
            quote: bits(quote),
            backslash: bits(backslash),
            control: bits(control),
        }
    }

    #[inline]
    #[target_feature(enable = "sse2")]
    fn sse2_any_of<const N: usize>(block: &[u8; 64], set: [u8; N]) -> u64 {
        let v = lanes(block);
        let mut hit = [_mm_setzero_si128(); 4];
        for j in 0..4 {
            for &c in &set {
                hit[j] = _mm_or_si128(hit[j], _mm_cmpeq_epi8(v[j], _mm_set1_epi8(c as i8)));
            }
        }
        bits(hit)
    }
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
mod imp {
    pub(super) use super::{any_of_portable as any_of, specials_portable as specials};
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every byte value at every position, among neighbours of every class.
    #[test]
    fn the_fast_masks_are_the_portable_ones() {
        let fill: [u8; 6] = [b'a', b'"', b'\\', 0x00, 0x1f, 0xff];
        for value in 0..=255u8 {
            for at in 0..64 {
                for &f in &fill {
                    let mut block = [f; 64];
                    block[at] = value;
                    assert_eq!(
                        specials(&block),
                        specials_portable(&block),
                        "{value:#x} at {at} among {f:#x}"
                    );
                    let set = [b'"', b'\\', b'/', b'b', b'f', b'n', b'r', b't', b'u'];
                    assert_eq!(any_of(&block, set), any_of_portable(&block, set));
                    assert_eq!(any_of(&block, [value]), any_of_portable(&block, [value]));
                }
            }
        }
    }

    #[test]
    fn a_block_of_text() {
        let mut block = [b' '; 64];
        block[..19].copy_from_slice(b"say \\\"hi\\\"\tnow\x01\x7f\x80\xff\"");
        let m = specials(&block);
        assert_eq!(m.quote, 1 << 5 | 1 << 9 | 1 << 18);
        assert_eq!(m.backslash, 1 << 4 | 1 << 8);
        assert_eq!(m.control, 1 << 10 | 1 << 14);
        assert_eq!(any_of(&block, [b'h', b'w']), 1 << 6 | 1 << 13);
        assert_eq!(any_of(&block, [0x80, 0xff]), 1 << 16 | 1 << 17);
    }
}
