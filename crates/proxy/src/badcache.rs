//! The bad-proxy cache. A proxy that could not be reached is skipped for a while — 10 s after the
//! first failure, doubling with each further failure up to 10 min — then tried again, as browsers
//! do. A proxy that works is forgotten at once. DIRECT is never marked bad.

use std::collections::HashMap;
use std::time::{Duration, Instant};

pub const FIRST: Duration = Duration::from_secs(10);
pub const MAX: Duration = Duration::from_secs(600);

#[derive(Debug, Default, Clone)]
pub struct BadProxies {
    entries: HashMap<String, (u32, Instant)>,
}

impl BadProxies {
    /// Records a failure of `proxy` (a `host:port`) at `now`; returns how long it is skipped.
    pub fn mark_bad(&mut self, proxy: &str, now: Instant) -> Duration {
        let entry = self.entries.entry(proxy.to_owned()).or_insert((0, now));
        entry.0 = entry.0.saturating_add(1);
        let wait = FIRST.saturating_mul(1u32 << (entry.0 - 1).min(16)).min(MAX);
        entry.1 = now + wait;
        wait
    }

    pub fn mark_good(&mut self, proxy: &str) {
        self.entries.remove(proxy);
    }

    /// True while `proxy` is being skipped.
    pub fn is_bad(&self, proxy: &str, now: Instant) -> bool {
        self.entries
            .get(proxy)
            .is_some_and(|(_, until)| now < *until)
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
}
