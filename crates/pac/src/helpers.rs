//! The PAC helper functions that are implemented natively: address arithmetic (`isInNet`,
//! `isInNetEx`, `sortIpAddressList`, and the canonical form of resolver answers) and the clock
//! helpers (`weekdayRange`, `dateRange`, `timeRange`). Where browsers disagree, these answer as
//! Chromium does (an IPv4 address and its IPv4-mapped IPv6 form are one address to `isInNetEx`).
//!
//! They are pure functions over their arguments and a [`Moment`], so they are tested here in
//! tables without a JavaScript engine; `engine.rs` only converts JavaScript values into [`Arg`]s.
//! The string helpers (`dnsDomainIs`, `shExpMatch`, …) are written in JavaScript in `prelude.js`
//! instead, because their browser semantics are defined in terms of JavaScript strings and
//! regular expressions.

use std::cmp::Ordering;
use std::net::{IpAddr, Ipv4Addr};

use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset, Weekday};

/// A point in time as the clock helpers see it: the same instant in local time and in UTC
/// (`"GMT"` as the last argument selects UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moment {
    pub local: PrimitiveDateTime,
    pub utc: PrimitiveDateTime,
}

impl Moment {
    /// The instant `at`, whose UTC offset is the local time zone the helpers see.
    pub fn new(at: OffsetDateTime) -> Moment {
        let utc = at.to_offset(UtcOffset::UTC);
        Moment {
            local: PrimitiveDateTime::new(at.date(), at.time()),
            utc: PrimitiveDateTime::new(utc.date(), utc.time()),
        }
    }

    fn pick(&self, gmt: bool) -> PrimitiveDateTime {
        if gmt {
            self.utc
        } else {
            self.local
        }
    }
}

/// A JavaScript argument reduced to what the helpers distinguish.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Num(f64),
    Str(String),
    Other,
}

impl Arg {
    fn is_gmt(&self) -> bool {
        matches!(self, Arg::Str(s) if s == "GMT")
    }

    /// A number, or a string holding a decimal integer (PAC authors write both `3` and `"3"`).
    fn number(&self) -> Option<i64> {
        match self {
            Arg::Num(n) if n.fract() == 0.0 && n.is_finite() && n.abs() < 1e12 => Some(*n as i64),
            Arg::Str(s) => s.trim().parse::<i64>().ok(),
            _ => None,
        }
    }
}

fn split_gmt(args: &[Arg]) -> (&[Arg], bool) {
    match args.split_last() {
        Some((last, rest)) if last.is_gmt() => (rest, true),
        _ => (args, false),
    }
}

/// `true` if `cur` lies in `[start, end]`, wrapping around when `start > end` (e.g. FRI..MON).
fn in_range<T: Ord>(start: T, cur: T, end: T) -> bool {
    if start <= end {
        start <= cur && cur <= end
    } else {
        cur >= start || cur <= end
    }
}

const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];

fn weekday_index(a: &Arg) -> Option<u8> {
    match a {
        Arg::Str(s) => WEEKDAYS.iter().position(|d| d == s).map(|i| i as u8),
        _ => None,
    }
}

fn sunday_based(w: Weekday) -> u8 {
    w.number_days_from_sunday()
}

/// `weekdayRange(wd1 [, wd2] [, "GMT"])`: inclusive, wrapping (`"FRI", "MON"` covers the weekend).
/// Unknown day names make it false.
pub fn weekday_range(args: &[Arg], now: &Moment) -> bool {
    let (args, gmt) = split_gmt(args);
    let today = sunday_based(now.pick(gmt).weekday());
    match args {
        [a] => weekday_index(a) == Some(today),
        [a, b] => match (weekday_index(a), weekday_index(b)) {
            (Some(a), Some(b)) => in_range(a, today, b),
            _ => false,
        },
        _ => false,
    }
}

/// `timeRange(h)`, `(h1, h2)`, `(h1, m1, h2, m2)`, `(h1, m1, s1, h2, m2, s2)`, each optionally
/// followed by `"GMT"`: inclusive at the given granularity, wrapping past midnight.
pub fn time_range(args: &[Arg], now: &Moment) -> bool {
    let (args, gmt) = split_gmt(args);
    let t = now.pick(gmt).time();
    let nums: Option<Vec<i64>> = args.iter().map(Arg::number).collect();
    let Some(n) = nums else { return false };
    let (h, m, s) = (
        i64::from(t.hour()),
        i64::from(t.minute()),
        i64::from(t.second()),
    );
    match n.as_slice() {
        [h1] => *h1 == h,
        [h1, h2] => in_range(*h1, h, *h2),
        [h1, m1, h2, m2] => in_range(h1 * 60 + m1, h * 60 + m, h2 * 60 + m2),
        [h1, m1, s1, h2, m2, s2] => in_range(
            h1 * 3600 + m1 * 60 + s1,
            h * 3600 + m * 60 + s,
            h2 * 3600 + m2 * 60 + s2,
        ),
        _ => false,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DatePart {
    Day(i64),
    Month(i64),
    Year(i64),
}

impl DatePart {
    fn rank(self) -> u8 {
        match self {
            DatePart::Day(_) => 0,
            DatePart::Month(_) => 1,
            DatePart::Year(_) => 2,
        }
    }
}

fn date_part(a: &Arg) -> Option<DatePart> {
    if let Arg::Str(s) = a {
        if let Some(i) = MONTHS.iter().position(|m| m == s) {
            return Some(DatePart::Month(i as i64));
        }
    }
    // As in Netscape's original: a number below 32 is a day of the month, anything else a year.
    let n = a.number()?;
    Some(if n < 32 {
        DatePart::Day(n)
    } else {
        DatePart::Year(n)
    })
}

/// A date spec is day?, month?, year?, in that order, each at most once.
fn valid_spec(parts: &[DatePart]) -> bool {
    !parts.is_empty() && parts.windows(2).all(|w| w[0].rank() < w[1].rank())
}

/// The comparison key of `parts` (year, then month, then day, whichever are present).
fn key(parts: &[DatePart]) -> Vec<i64> {
    let mut k: Vec<(u8, i64)> = parts
        .iter()
        .map(|p| match *p {
            DatePart::Day(d) => (0, d),
            DatePart::Month(m) => (1, m),
            DatePart::Year(y) => (2, y),
        })
        .collect();
    k.sort_by_key(|p| std::cmp::Reverse(p.0));
    k.into_iter().map(|(_, v)| v).collect()
}

fn current(parts: &[DatePart], at: PrimitiveDateTime) -> Vec<DatePart> {
    parts
        .iter()
        .map(|p| match p {
            DatePart::Day(_) => DatePart::Day(i64::from(at.day())),
            DatePart::Month(_) => DatePart::Month(i64::from(u8::from(at.month())) - 1),
            DatePart::Year(_) => DatePart::Year(i64::from(at.year())),
        })
        .collect()
}

/// `dateRange(...)` in all of Netscape's forms: a single day, month, year or date (`3`, `"MAR"`,
/// `2009`, `3, "MAR"`, `3, "MAR", 2009`) must match today; two specs of the same shape
/// (`1, 4`, `"JAN", "MAR"`, `1, "JAN", 3, "MAR"`, `"FEB", 2009, "MAR", 2010`, …) form an
/// inclusive range, wrapping when the start is after the end. Optional trailing `"GMT"`.
pub fn date_range(args: &[Arg], now: &Moment) -> bool {
    let (args, gmt) = split_gmt(args);
    let at = now.pick(gmt);
    let parts: Option<Vec<DatePart>> = args.iter().map(date_part).collect();
    let Some(parts) = parts else { return false };
    if parts.is_empty() || parts.len() > 6 {
        return false;
    }
    let half = parts.len() / 2;
    let (a, b) = parts.split_at(half);
    let same_shape =
        parts.len() % 2 == 0 && a.iter().map(|p| p.rank()).eq(b.iter().map(|p| p.rank()));
    if same_shape && valid_spec(a) {
        let cur = current(a, at);
        return in_range(key(a), key(&cur), key(b));
    }
    if valid_spec(&parts) {
        return current(&parts, at) == parts;
    }
    false
}

/// Parses a dotted quad the way `isInNet` recognises one (as browsers and pacparser do): four
/// groups of one to three decimal digits, each at most 255, and nothing else. Leading zeros are
/// decimal (`010.0.0.1` is 10.0.0.1), unlike Rust's own parser, which refuses them.
pub fn parse_dotted_quad(s: &str) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = s.split('.');
    for octet in &mut octets {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *octet = part.parse::<u8>().ok()?;
    }
    parts.next().is_none().then_some(Ipv4Addr::from(octets))
}

/// `isInNet(host, pattern, mask)` once `host` is an address: `pattern` and `mask` must be dotted
/// quads, otherwise false.
pub fn is_in_net_v4(addr: Ipv4Addr, pattern: &str, mask: &str) -> bool {
    match (parse_dotted_quad(pattern), parse_dotted_quad(mask)) {
        (Some(p), Some(m)) => u32::from(addr) & u32::from(m) == u32::from(p) & u32::from(m),
        _ => false,
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) as the IPv4 address it stands for; any other
/// address unchanged. The DNS helpers report resolver answers in this form, so a name listed as
/// `::ffff:10.1.2.3` is the IPv4 address 10.1.2.3 to `dnsResolve` as it would be to an IPv4
/// lookup, and appears once in `dnsResolveEx` beside its IPv4 form.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// `ips` in [`canonical`] form, each address once, in their first order.
pub fn canonical_unique(ips: impl IntoIterator<Item = IpAddr>) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    for ip in ips.into_iter().map(canonical) {
        if !out.contains(&ip) {
            out.push(ip);
        }
    }
    out
}

/// `true` if the first `len` bits of `a` and `b` are equal (`len` at most the bits of the type).
fn same_prefix(a: u128, b: u128, len: u32, bits: u32) -> bool {
    if len == 0 {
        return true;
    }
    let shift = bits - len;
    a >> shift == b >> shift
}

fn mapped_bits(v4: Ipv4Addr) -> u128 {
    u128::from(v4.to_ipv6_mapped())
}

/// `isInNetEx(ip, "prefix/len")` (Microsoft's IPv6 extension) with Chromium's semantics: an IPv4
/// address and its IPv4-mapped IPv6 form are the same address, in the address and in the prefix,
/// both ways — an IPv4 address against an IPv6 prefix is compared as `::ffff:a.b.c.d`, and an
/// IPv4 prefix `p/len` against an IPv6 address as `::ffff:p/(96 + len)`. The prefix may have
/// ASCII whitespace around its two parts (`" 10.0.0.0 / 8"`); the address may not. False on any
/// malformed input and on a prefix length too long for the prefix's family.
pub fn is_in_net_ex(ip: &str, prefix: &str) -> bool {
    let Ok(ip) = ip.parse::<IpAddr>() else {
        return false;
    };
    let mut parts = prefix.split('/');
    let (Some(net), Some(len), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let ws = |c: char| c.is_ascii_whitespace() || c == '\u{b}';
    let (net, len) = (net.trim_matches(ws), len.trim_matches(ws));
    if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let (Ok(net), Ok(len)) = (net.parse::<IpAddr>(), len.parse::<u32>()) else {
        return false;
    };
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) if len <= 32 => {
            same_prefix(u128::from(u32::from(a)), u128::from(u32::from(n)), len, 32)
        }
        (IpAddr::V6(a), IpAddr::V6(n)) if len <= 128 => {
            same_prefix(u128::from(a), u128::from(n), len, 128)
        }
        (IpAddr::V4(a), IpAddr::V6(n)) if len <= 128 => {
            same_prefix(mapped_bits(a), u128::from(n), len, 128)
        }
        (IpAddr::V6(a), IpAddr::V4(n)) if len <= 32 => {
            same_prefix(u128::from(a), mapped_bits(n), 96 + len, 128)
        }
        _ => false,
    }
}

/// `sortIpAddressList("a;b;c")`: IPv6 addresses first, then IPv4, each ascending, stable, written
/// as given (not re-formatted). Spaces and tabs anywhere in the list are dropped first, as
/// Chromium and Internet Explorer do. An IPv4-mapped IPv6 address is an IPv6 address here and
/// sorts with them (Chromium's order). `None` (JavaScript `false`) if the list is empty or any
/// entry is not an address.
pub fn sort_ip_address_list(list: &str) -> Option<String> {
    let cleaned: String = list.chars().filter(|c| *c != ' ' && *c != '\t').collect();
    let mut entries: Vec<(IpAddr, &str)> = Vec::new();
    for entry in cleaned.split(';').filter(|e| !e.is_empty()) {
        entries.push((entry.parse::<IpAddr>().ok()?, entry));
    }
    if entries.is_empty() {
        return None;
    }
    entries.sort_by(|(a, _), (b, _)| match (a, b) {
        (IpAddr::V6(_), IpAddr::V4(_)) => Ordering::Less,
        (IpAddr::V4(_), IpAddr::V6(_)) => Ordering::Greater,
        _ => a.cmp(b),
    });
    let out: Vec<&str> = entries.into_iter().map(|(_, s)| s).collect();
    Some(out.join(";"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn s(v: &str) -> Arg {
        Arg::Str(v.into())
    }
    fn n(v: i32) -> Arg {
        Arg::Num(f64::from(v))
    }

    #[test]
    fn weekday_time_and_date_tables() {
        // Saturday 01:24:30 at +05:30 = Friday 19:54:30 UTC (pac-resolver's mocked clock).
        let m = Moment::new(datetime!(2022-06-04 01:24:30 +05:30));
        type Helper = fn(&[Arg], &Moment) -> bool;
        let cases: &[(Helper, Vec<Arg>, bool)] = &[
            (weekday_range, vec![s("SAT")], true),
            (weekday_range, vec![s("FRI"), s("MON")], true),
            (weekday_range, vec![s("MON"), s("FRI"), s("GMT")], true),
            (weekday_range, vec![s("sat")], false),
            (weekday_range, vec![], false),
            (time_range, vec![n(1)], true),
            (time_range, vec![s("1")], true),
            (time_range, vec![n(23), n(2)], true),
            (time_range, vec![n(19), n(54), n(20), n(0), s("GMT")], true),
            (time_range, vec![n(1), n(2), n(3)], false),
            (date_range, vec![n(4)], true),
            (date_range, vec![s("JUN")], true),
            (date_range, vec![n(2022)], true),
            (date_range, vec![n(3), s("GMT")], true),
            (date_range, vec![s("NOV"), s("FEB")], false),
            (date_range, vec![s("MAY"), s("JUL")], true),
            (date_range, vec![s("DEC"), s("JUN")], true),
            (date_range, vec![s("JUN"), n(3)], false),
            (date_range, vec![s("XYZ")], false),
            (
                date_range,
                vec![n(1), n(2), n(3), n(4), n(5), n(6), n(7)],
                false,
            ),
        ];
        for (i, (f, args, want)) in cases.iter().enumerate() {
            assert_eq!(f(args, &m), *want, "row {i}: {args:?}");
        }
    }

    #[test]
    fn ip_tables() {
        // isInNet's dotted quads: decimal, leading zeros allowed, nothing else.
        let quads: &[(&str, Option<[u8; 4]>)] = &[
            ("10.1.2.3", Some([10, 1, 2, 3])),
            ("010.001.000.255", Some([10, 1, 0, 255])),
            ("255.255.255.255", Some([255; 4])),
            ("256.0.0.1", None),
            ("10.0.0", None),
            ("10.0.0.1.", None),
            ("10.0.0.0001", None),
            ("10.0.0.+1", None),
            (" 10.0.0.1", None),
            ("::ffff:10.0.0.1", None),
            ("", None),
        ];
        for (input, want) in quads {
            assert_eq!(
                parse_dotted_quad(input),
                want.map(Ipv4Addr::from),
                "{input:?}"
            );
        }
        let a = Ipv4Addr::new(10, 1, 2, 3);
        assert!(is_in_net_v4(a, "10.0.0.0", "255.0.0.0"));
        assert!(is_in_net_v4(a, "010.0.0.0", "255.000.0.0"));
        assert!(!is_in_net_v4(a, "10.0.0.0", "255.0.0"));
        assert!(!is_in_net_v4(a, "11.0.0.0", "255.0.0.0"));

        // isInNetEx: (address, prefix, answer). The IPv4/IPv4-mapped rows are Chromium's
        // (pac_library_unittest.js, testIsInNetEx), both ways.
        let ex: &[(&str, &str, bool)] = &[
            ("10.1.2.3", "10.0.0.0/8", true),
            ("::1", "::/0", true),
            ("10.1.2.3", "0.0.0.0/0", true),
            ("10.1.2.3", "10.0.0.0/33", false),
            ("::1", "::/129", false),
            ("198.95.1.1", "198.95.3.3/16", true),
            // An IPv4 address against an IPv6 prefix is ::ffff:a.b.c.d.
            ("127.0.0.1", "0:0:0:0:0:0:7f00:1/16", true),
            ("192.168.24.3", "fe80:0:0:0:0:0:c0a8:1803/32", false),
            ("192.168.1.1", "::ffff:192.168.1.1/112", true),
            ("192.168.1.1", "::fffe:192.168.1.1/112", false),
            ("10.168.1.1", "::ffff:192.168.1.1/112", false),
            ("10.1.2.3", "::ffff:10.1.2.3/128", true),
            ("10.1.2.3", "::ffff:0.0.0.0/96", true),
            ("10.1.2.3", "::/0", true),
            // An IPv4 prefix against an IPv6 address is ::ffff:prefix/(96 + len).
            ("::ffff:192.168.100.5", "192.168.1.1/16", true),
            ("::ffff:10.168.100.5", "192.168.1.1/16", false),
            ("::fffe:192.168.100.5", "192.168.1.1/16", false),
            ("::ffff:10.1.2.3", "10.1.2.3/32", true),
            ("::ffff:10.1.2.3", "0.0.0.0/0", true),
            ("::1", "0.0.0.0/0", false),
            ("2001:db8::1", "10.0.0.0/8", false),
            ("::ffff:10.1.2.3", "10.0.0.0/33", false),
            // Both IPv6, one mapped.
            ("::ffff:192.168.100.5", "::ffff:192.168.1.1/112", true),
            ("::ffff:10.168.100.5", "::ffff:192.168.1.1/112", false),
            // The prefix's parts may be padded with ASCII whitespace; the address may not.
            ("10.1.2.3", " 10.0.0.0 / 8 ", true),
            ("10.1.2.3", "10.0.0.0/\t8", true),
            ("10.1.2.3 ", "10.0.0.0/8", false),
            // Malformed prefixes.
            ("10.1.2.3", "10.0.0.0", false),
            ("10.1.2.3", "10.0.0.0/8/8", false),
            ("10.1.2.3", "10.0.0.0/", false),
            ("10.1.2.3", "10.0.0.0/+8", false),
            ("10.1.2.3", "10.0.0.0/-8", false),
            ("10.1.2.3", "10.0.0.0/08", true),
            ("10.1.2.3", "10.0.0.0/99999999999", false),
            ("10.1.2.3", "[::ffff:10.0.0.0]/104", false),
            ("256.0.0.1", "0.0.0.0/0", false),
        ];
        for (ip, prefix, want) in ex {
            assert_eq!(
                is_in_net_ex(ip, prefix),
                *want,
                "isInNetEx({ip:?}, {prefix:?})"
            );
        }

        // sortIpAddressList: IPv6 (mapped ones included) before IPv4, written as given.
        let sorts: &[(&str, Option<&str>)] = &[
            ("10.0.0.2;::1;10.0.0.1", Some("::1;10.0.0.1;10.0.0.2")),
            (
                "10.0.0.1;::ffff:10.0.0.1;::1",
                Some("::1;::ffff:10.0.0.1;10.0.0.1"),
            ),
            ("192.168. 0.1; 10.0.0.1", Some("10.0.0.1;192.168.0.1")),
            ("\t;;", None),
            ("10.0.0.2;x", None),
            ("10.0.0.1/8", None),
        ];
        for (list, want) in sorts {
            assert_eq!(sort_ip_address_list(list).as_deref(), *want, "{list:?}");
        }

        // Resolver answers and local addresses: a mapped address is its IPv4 address, once.
        let ips = |s: &str| -> Vec<IpAddr> { s.split(';').map(|a| a.parse().unwrap()).collect() };
        let canon: &[(&str, &str)] = &[
            ("::ffff:10.1.2.3", "10.1.2.3"),
            ("10.1.2.3;::ffff:10.1.2.3", "10.1.2.3"),
            (
                "::ffff:10.1.2.3;2001:db8::1;10.1.2.3",
                "10.1.2.3;2001:db8::1",
            ),
            ("::fffe:10.1.2.3;::1", "::fffe:a01:203;::1"),
            ("::10.1.2.3", "::a01:203"),
        ];
        for (input, want) in canon {
            assert_eq!(canonical_unique(ips(input)), ips(want), "{input}");
        }
    }
}
