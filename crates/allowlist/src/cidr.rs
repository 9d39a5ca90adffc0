//! IP prefixes (CIDR blocks): strict parsing, canonical text, and aggregation to the minimal set.
//!
//! A firewall rule built from a prefix must mean exactly what its publisher meant, so parsing is
//! strict: `ADDRESS/LENGTH` with a length in range, no host bits set (`10.0.0.1/24` is refused,
//! not silently widened or narrowed), no spaces, no zone ids, no octal-looking IPv4 octets.
//! Both families live in one `u128` so aggregation is plain integer arithmetic: sort, merge the
//! covered ranges, then cut each range into the fewest aligned blocks.
//!
//! This module does no I/O and knows nothing about service tags; `servicetags` feeds it.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// An address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// Address width in bits.
    pub const fn bits(self) -> u8 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }

    /// The highest address of the family, as a `u128`.
    pub const fn max_addr(self) -> u128 {
        match self {
            Family::V4 => u32::MAX as u128,
            Family::V6 => u128::MAX,
        }
    }

    /// `ipv4` or `ipv6`, as on the command line.
    pub const fn name(self) -> &'static str {
        match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One CIDR block. The derived order sorts IPv4 before IPv6, then by address, then by length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix {
    family: Family,
    addr: u128,
    len: u8,
}

/// Why a prefix's text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    #[error("it is empty")]
    Empty,
    #[error("it contains whitespace; a prefix is ADDRESS/LENGTH with nothing around it")]
    Whitespace,
    #[error("it has no '/LENGTH'; write a single address as e.g. 192.0.2.7/32")]
    NoLength,
    #[error("the length {0:?} is not a decimal number without leading zeros")]
    BadLength(String),
    #[error("the length /{len} is longer than {max}, the size of an {family} address")]
    LengthTooLong { len: u32, family: Family, max: u8 },
    #[error("{0:?} is not an IPv4 or IPv6 address (IPv4 octets may not have leading zeros; zone ids like %eth0 are not allowed)")]
    BadAddress(String),
    #[error("host bits are set after /{len}: the network is {network}; write that if it is meant")]
    HostBits { len: u8, network: String },
}

impl Prefix {
    /// Builds a prefix from its parts; `None` when the length is too long or host bits are set.
    pub fn new(family: Family, addr: u128, len: u8) -> Option<Prefix> {
        if len > family.bits() || addr > family.max_addr() {
            return None;
        }
        let p = Prefix { family, addr, len };
        (addr & p.host_mask() == 0).then_some(p)
    }

    /// Parses `ADDRESS/LENGTH` strictly (see the module docs).
    pub fn parse(text: &str) -> Result<Prefix, PrefixError> {
        if text.is_empty() {
            return Err(PrefixError::Empty);
        }
        if text.chars().any(char::is_whitespace) {
            return Err(PrefixError::Whitespace);
        }
        let (addr, len) = text.split_once('/').ok_or(PrefixError::NoLength)?;
        let len_ok = !len.is_empty()
            && len.len() <= 3
            && len.bytes().all(|b| b.is_ascii_digit())
            && !(len.len() > 1 && len.starts_with('0'));
        if !len_ok {
            return Err(PrefixError::BadLength(len.to_owned()));
        }
        let len: u32 = len.parse().expect("1 to 3 ASCII digits");
        let (family, value) = if addr.contains(':') {
            let a: Ipv6Addr = addr
                .parse()
                .map_err(|_| PrefixError::BadAddress(addr.to_owned()))?;
            (Family::V6, u128::from(a))
        } else {
            let a: Ipv4Addr = addr
                .parse()
                .map_err(|_| PrefixError::BadAddress(addr.to_owned()))?;
            (Family::V4, u128::from(u32::from(a)))
        };
        if len > u32::from(family.bits()) {
            return Err(PrefixError::LengthTooLong {
                len,
                family,
                max: family.bits(),
            });
        }
        let len = len as u8;
        let p = Prefix {
            family,
            addr: value,
            len,
        };
        if value & p.host_mask() != 0 {
            let network = Prefix {
                addr: value & !p.host_mask(),
                ..p
            };
            return Err(PrefixError::HostBits {
                len,
                network: network.to_string(),
            });
        }
        Ok(p)
    }

    pub fn family(&self) -> Family {
        self.family
    }

    /// The prefix length (the number after the slash).
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// The first address, as a `u128` (IPv4 in the low 32 bits).
    pub fn first(&self) -> u128 {
        self.addr
    }

    /// The last address.
    pub fn last(&self) -> u128 {
        self.addr | self.host_mask()
    }

    /// True when `addr` of `family` lies inside this prefix.
    pub fn contains(&self, family: Family, addr: u128) -> bool {
        self.family == family && self.first() <= addr && addr <= self.last()
    }

    /// The first address as text.
    pub fn first_text(&self) -> String {
        addr_text(self.family, self.first())
    }

    /// The last address as text.
    pub fn last_text(&self) -> String {
        addr_text(self.family, self.last())
    }

    fn host_mask(&self) -> u128 {
        host_mask(self.family, self.len)
    }
}

fn host_mask(family: Family, len: u8) -> u128 {
    let host_bits = family.bits() - len;
    if host_bits == 128 {
        u128::MAX
    } else {
        (1u128 << host_bits) - 1
    }
}

/// An address of `family` as text (RFC 5952 form for IPv6).
pub fn addr_text(family: Family, addr: u128) -> String {
    match family {
        Family::V4 => Ipv4Addr::from(addr as u32).to_string(),
        Family::V6 => Ipv6Addr::from(addr).to_string(),
    }
}

impl fmt::Display for Prefix {
    /// The canonical form: dotted quad, or RFC 5952 (lowercase, longest zero run as `::`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", addr_text(self.family, self.addr), self.len)
    }
}

/// Serialized as its canonical text, as in the service-tags files.
impl serde::Serialize for Prefix {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl std::str::FromStr for Prefix {
    type Err = PrefixError;
    fn from_str(s: &str) -> Result<Prefix, PrefixError> {
        Prefix::parse(s)
    }
}

/// The minimal set of prefixes covering exactly the addresses the input covers, sorted (IPv4
/// first). Overlaps, duplicates and adjacent blocks are merged; the result has no two prefixes
/// that overlap or that could be joined into one.
pub fn aggregate(prefixes: &[Prefix]) -> Vec<Prefix> {
    let mut ranges: Vec<(Family, u128, u128)> = prefixes
        .iter()
        .map(|p| (p.family, p.first(), p.last()))
        .collect();
    ranges.sort_unstable();
    let mut merged: Vec<(Family, u128, u128)> = Vec::with_capacity(ranges.len());
    for (family, first, last) in ranges {
        if let Some((f, _, end)) = merged.last_mut() {
            // Adjacent counts as touching: [a, b] and [b + 1, c] are one range. `*end` may be
            // the family's last address, where b + 1 does not exist.
            if *f == family && (*end == family.max_addr() || first <= *end + 1) {
                *end = (*end).max(last);
                continue;
            }
        }
        merged.push((family, first, last));
    }
    let mut out = Vec::with_capacity(merged.len());
    for (family, first, last) in merged {
        range_to_prefixes(family, first, last, &mut out);
    }
    out
}

/// Cuts `[first, last]` into the fewest aligned blocks, largest first from the left.
fn range_to_prefixes(family: Family, mut first: u128, last: u128, out: &mut Vec<Prefix>) {
    let bits = u32::from(family.bits());
    loop {
        // The block may be no larger than `first`'s alignment allows...
        let align = first.trailing_zeros().min(bits);
        // ...nor extend past `last`: floor(log2(last - first + 1)), where the +1 may overflow.
        let span = last - first;
        let fit = if span == u128::MAX {
            128
        } else {
            127 - (span + 1).leading_zeros()
        };
        let host_bits = align.min(fit);
        let len = (bits - host_bits) as u8;
        out.push(Prefix {
            family,
            addr: first,
            len,
        });
        let block_last = first | host_mask(family, len);
        if block_last >= last {
            return;
        }
        first = block_last + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix {
        Prefix::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parse_accepts_canonical_and_normalises_ipv6() {
        let cases = [
            ("4.232.24.24/29", "4.232.24.24/29"),
            ("0.0.0.0/0", "0.0.0.0/0"),
            ("255.255.255.255/32", "255.255.255.255/32"),
            ("2603:1000:4::140/123", "2603:1000:4::140/123"),
            ("2603:1000:4:0:0:0:0:140/123", "2603:1000:4::140/123"),
            ("2603:1020:104:3::6E0/123", "2603:1020:104:3::6e0/123"),
            ("::/0", "::/0"),
            ("::1/128", "::1/128"),
            ("::ffff:192.0.2.0/120", "::ffff:192.0.2.0/120"),
        ];
        for (input, want) in cases {
            assert_eq!(p(input).to_string(), want, "{input}");
        }
    }

    #[test]
    fn parse_refuses_malformed() {
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("10.0.0.0", "no '/LENGTH'"),
            ("10.0.0.0/", "not a decimal number"),
            ("10.0.0.0/08", "leading zeros"),
            ("10.0.0.0/+8", "not a decimal number"),
            ("10.0.0.0/1000", "not a decimal number"),
            ("10.0.0.0/33", "longer than 32"),
            ("::/129", "longer than 128"),
            ("10.0.0.1/24", "the network is 10.0.0.0/24"),
            (
                "2603:1000:4::141/123",
                "the network is 2603:1000:4::140/123",
            ),
            ("10.0.0/24", "not an IPv4 or IPv6 address"),
            ("010.0.0.0/8", "not an IPv4 or IPv6 address"),
            ("256.0.0.0/8", "not an IPv4 or IPv6 address"),
            ("fe80::1%eth0/128", "not an IPv4 or IPv6 address"),
            (" 10.0.0.0/8", "whitespace"),
            ("10.0.0.0/8\n", "whitespace"),
            ("10.0.0.0/8/9", "not a decimal number"),
            ("example.com/32", "not an IPv4 or IPv6 address"),
        ];
        for (input, want) in cases {
            let err = Prefix::parse(input).unwrap_err().to_string();
            assert!(err.contains(want), "{input:?}: {err}");
        }
    }

    #[test]
    fn first_last_contains() {
        let x = p("10.1.2.0/23");
        assert_eq!(x.first_text(), "10.1.2.0");
        assert_eq!(x.last_text(), "10.1.3.255");
        assert!(x.contains(
            Family::V4,
            u128::from(u32::from(Ipv4Addr::new(10, 1, 3, 255)))
        ));
        assert!(!x.contains(
            Family::V4,
            u128::from(u32::from(Ipv4Addr::new(10, 1, 4, 0)))
        ));
        assert!(!x.contains(Family::V6, x.first()));
        assert_eq!(p("::/0").last(), u128::MAX);
        assert_eq!(p("0.0.0.0/0").last(), u128::from(u32::MAX));
        assert_eq!(p("::/0").prefix_len(), 0);
    }

    #[test]
    fn aggregate_table() {
        let cases: &[(&[&str], &[&str])] = &[
            (&[], &[]),
            (&["10.0.0.0/24"], &["10.0.0.0/24"]),
            // siblings merge, repeatedly
            (&["10.0.0.0/25", "10.0.0.128/25"], &["10.0.0.0/24"]),
            (
                &["10.0.0.0/26", "10.0.0.64/26", "10.0.0.128/25"],
                &["10.0.0.0/24"],
            ),
            // covered and duplicate blocks disappear
            (
                &["10.0.0.0/8", "10.1.0.0/16", "10.0.0.0/8"],
                &["10.0.0.0/8"],
            ),
            // adjacent but not aligned: cannot become one prefix
            (
                &["10.0.0.1/32", "10.0.0.2/32"],
                &["10.0.0.1/32", "10.0.0.2/32"],
            ),
            (
                &["10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/30", "10.0.0.8/32"],
                &["10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/30", "10.0.0.8/32"],
            ),
            (
                &["10.0.0.0/32", "10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/30"],
                &["10.0.0.0/29"],
            ),
            // sorted, families kept apart (IPv4 first)
            (
                &["2001:db8::/33", "192.0.2.0/24", "2001:db8:8000::/33"],
                &["192.0.2.0/24", "2001:db8::/32"],
            ),
            // the ends of the address spaces
            (&["0.0.0.0/1", "128.0.0.0/1"], &["0.0.0.0/0"]),
            (&["::/1", "8000::/1", "::/0"], &["::/0"]),
            (
                &["255.255.255.255/32", "255.255.255.254/32"],
                &["255.255.255.254/31"],
            ),
            (
                &["ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128", "::/128"],
                &["::/128", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"],
            ),
            // IPv4 0.0.0.0/0 and IPv6 ::/96 cover the same integers but never merge
            (&["0.0.0.0/0", "::/96"], &["0.0.0.0/0", "::/96"]),
        ];
        for (input, want) in cases {
            let input: Vec<Prefix> = input.iter().map(|s| p(s)).collect();
            let got: Vec<String> = aggregate(&input).iter().map(|p| p.to_string()).collect();
            assert_eq!(got, *want, "{input:?}");
        }
    }

    #[test]
    fn new_checks_parts() {
        assert_eq!(
            Prefix::new(Family::V4, 0x0a00_0000, 8),
            Some(p("10.0.0.0/8"))
        );
        assert_eq!(Prefix::new(Family::V4, 0x0a00_0001, 8), None);
        assert_eq!(Prefix::new(Family::V4, 1 << 40, 32), None);
        assert_eq!(Prefix::new(Family::V4, 0, 33), None);
        assert_eq!(Prefix::new(Family::V6, 0, 0), Some(p("::/0")));
    }
}
