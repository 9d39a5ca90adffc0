//! The PAC helper functions that are implemented natively: address arithmetic (`isInNet`,
//! `isInNetEx`, `sortIpAddressList`) and the clock helpers (`weekdayRange`, `dateRange`,
//! `timeRange`).
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

/// Parses an IPv4 address the strict way PAC helpers expect (four decimal octets, nothing else).
pub fn parse_ipv4_strict(s: &str) -> Option<Ipv4Addr> {
    s.parse::<Ipv4Addr>().ok()
}

/// `isInNet(host, pattern, mask)` once `host` is an address: `pattern` and `mask` must be IPv4
/// literals, otherwise false.
pub fn is_in_net_v4(addr: Ipv4Addr, pattern: &str, mask: &str) -> bool {
    match (parse_ipv4_strict(pattern), parse_ipv4_strict(mask)) {
        (Some(p), Some(m)) => u32::from(addr) & u32::from(m) == u32::from(p) & u32::from(m),
        _ => false,
    }
}

/// `isInNetEx(ip, "prefix/len")` (Microsoft's IPv6 extension): false on any malformed input, on a
/// prefix length too long for the family, and when the families differ.
pub fn is_in_net_ex(ip: &str, prefix: &str) -> bool {
    let Ok(ip) = ip.parse::<IpAddr>() else {
        return false;
    };
    let Some((net, len)) = prefix.split_once('/') else {
        return false;
    };
    let (Ok(net), Ok(len)) = (net.parse::<IpAddr>(), len.parse::<u8>()) else {
        return false;
    };
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) if len <= 32 => {
            let mask = if len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(len))
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) if len <= 128 => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len))
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// `sortIpAddressList("a;b;c")`: IPv6 addresses first, then IPv4, each ascending, stable, written
/// as given (not re-formatted). `None` (JavaScript `false`) if the list is empty or any entry is
/// not an address.
pub fn sort_ip_address_list(list: &str) -> Option<String> {
    let mut entries: Vec<(IpAddr, &str)> = Vec::new();
    for raw in list.split(';') {
        let entry = raw.trim_matches(|c: char| c == ' ' || c == '\t');
        if entry.is_empty() {
            continue;
        }
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
        assert!(is_in_net_v4(
            Ipv4Addr::new(10, 1, 2, 3),
            "10.0.0.0",
            "255.0.0.0"
        ));
        assert!(!is_in_net_v4(
            Ipv4Addr::new(10, 1, 2, 3),
            "10.0.0.0",
            "255.0.0"
        ));
        assert!(is_in_net_ex("10.1.2.3", "10.0.0.0/8"));
        assert!(is_in_net_ex("::1", "::/0"));
        assert!(!is_in_net_ex("10.1.2.3", "10.0.0.0/33"));
        assert_eq!(
            sort_ip_address_list("10.0.0.2;::1;10.0.0.1").as_deref(),
            Some("::1;10.0.0.1;10.0.0.2")
        );
        assert_eq!(sort_ip_address_list("10.0.0.2;x"), None);
    }
}
