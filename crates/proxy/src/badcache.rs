//! The bad-proxy cache. A proxy that could not be reached is skipped for a while — 10 s after the
//! first failure, doubling with each further failure up to 10 min — then tried again, as browsers
//! do. A proxy that works is forgotten at once. DIRECT is never marked bad.
//!
//! A discovered proxy that *refused* (see [`crate::trust`]) is skipped the same way, and the cache
//! remembers why while it skips it, so that the sensor can keep saying why it goes around it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

pub const FIRST: Duration = Duration::from_secs(10);
pub const MAX: Duration = Duration::from_secs(600);

#[derive(Debug, Default, Clone)]
pub struct BadProxies {
    /// Failures in a row, skipped until, and the refusal when the proxy refused.
    entries: HashMap<String, (u32, Instant, Option<String>)>,
}

impl BadProxies {
    /// Records a failure of `proxy` (a `host:port`) at `now`; returns how long it is skipped.
    pub fn mark_bad(&mut self, proxy: &str, now: Instant) -> Duration {
        self.mark(proxy, now, None)
    }

    /// Records that `proxy` answered and refused (`why`: no secret in it); returns how long it
    /// is skipped.
    pub fn mark_refused(&mut self, proxy: &str, now: Instant, why: String) -> Duration {
        self.mark(proxy, now, Some(why))
    }

    fn mark(&mut self, proxy: &str, now: Instant, why: Option<String>) -> Duration {
        let entry = self
            .entries
            .entry(proxy.to_owned())
            .or_insert((0, now, None));
        entry.0 = entry.0.saturating_add(1);
        let wait = FIRST.saturating_mul(1u32 << (entry.0 - 1).min(16)).min(MAX);
        entry.1 = now + wait;
        entry.2 = why;
        wait
    }

    /// Why `proxy` is being skipped, when it is skipped because it refused.
    pub fn refusal(&self, proxy: &str, now: Instant) -> Option<&str> {
        self.entries
            .get(proxy)
            .filter(|(_, until, _)| now < *until)
            .and_then(|(_, _, why)| why.as_deref())
    }

    pub fn mark_good(&mut self, proxy: &str) {
        self.entries.remove(proxy);
    }

    /// True while `proxy` is being skipped.
    pub fn is_bad(&self, proxy: &str, now: Instant) -> bool {
        self.entries
            .get(proxy)
            .is_some_and(|(_, until, _)| now < *until)
    }

    /// Reorders `items` (by their proxy key; `None` = DIRECT): proxies being skipped move to the
    /// end, in their original order, so they are still tried when nothing else works.
    pub fn order<T>(
        &self,
        items: Vec<T>,
        key: impl Fn(&T) -> Option<String>,
        now: Instant,
    ) -> Vec<T> {
        let (mut good, bad): (Vec<T>, Vec<T>) = items
            .into_iter()
            .partition(|i| key(i).is_none_or(|k| !self.is_bad(&k, now)));
        good.extend(bad);
        good
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_grow_bounded_and_expire() {
        let t0 = Instant::now();
        let mut bad = BadProxies::default();
        assert_eq!(bad.mark_bad("p:1", t0), Duration::from_secs(10));
        assert!(bad.is_bad("p:1", t0 + Duration::from_secs(9)));
        assert!(
            !bad.is_bad("p:1", t0 + Duration::from_secs(10)),
            "expired after 10 s"
        );
        assert_eq!(bad.mark_bad("p:1", t0), Duration::from_secs(20));
        assert_eq!(bad.mark_bad("p:1", t0), Duration::from_secs(40));
        for _ in 0..40 {
            bad.mark_bad("p:1", t0);
        }
        assert_eq!(bad.mark_bad("p:1", t0), MAX, "bounded");
        bad.mark_good("p:1");
        assert!(!bad.is_bad("p:1", t0));
        assert_eq!(
            bad.mark_bad("p:1", t0),
            FIRST,
            "a working proxy starts over"
        );
    }

    #[test]
    fn bad_proxies_go_last_but_stay_in_the_list() {
        let t0 = Instant::now();
        let mut bad = BadProxies::default();
        bad.mark_bad("a:1", t0);
        let items = vec![Some("a:1".to_string()), Some("b:2".to_string()), None];
        let ordered = bad.order(items.clone(), |i| i.clone(), t0);
        assert_eq!(
            ordered,
            vec![Some("b:2".to_string()), None, Some("a:1".to_string())]
        );
        let later = bad.order(items.clone(), |i| i.clone(), t0 + Duration::from_secs(11));
        assert_eq!(later, items, "after expiry the original order is back");
    }

    #[test]
    fn a_refusal_is_remembered_while_the_proxy_is_skipped() {
        let t0 = Instant::now();
        let mut bad = BadProxies::default();
        assert_eq!(bad.mark_refused("w:1", t0, "407".into()), FIRST);
        assert!(bad.is_bad("w:1", t0));
        assert_eq!(bad.refusal("w:1", t0 + Duration::from_secs(9)), Some("407"));
        assert_eq!(
            bad.refusal("w:1", t0 + Duration::from_secs(10)),
            None,
            "expired"
        );
        // Refusing again doubles the skip, like any failure.
        assert_eq!(bad.mark_refused("w:1", t0, "407".into()), FIRST * 2);
        // Unreachable now: skipped, but no refusal to report.
        bad.mark_bad("w:1", t0);
        assert!(bad.is_bad("w:1", t0) && bad.refusal("w:1", t0).is_none());
        bad.mark_refused("w:1", t0, "403".into());
        bad.mark_good("w:1");
        assert_eq!(bad.refusal("w:1", t0), None);
        assert_eq!(bad.refusal("unknown:1", t0), None);
    }
}
