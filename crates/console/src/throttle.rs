//! Login throttling: after [`FREE_FAILURES`] consecutive failures for a name, each further
//! attempt must wait, twice as long each time (from `base`, up to [`MAX_WAIT_MS`]), counted from
//! the last failure. The count is in the store (per workspace and name), so every replica
//! throttles alike; a success clears it. Pure.

use uplink_store::LoginFailures;

/// Failures allowed before any wait.
pub const FREE_FAILURES: u32 = 5;
/// The longest wait between attempts.
pub const MAX_WAIT_MS: i64 = 15 * 60 * 1000;
/// The first wait, in production.
pub const DEFAULT_BASE_MS: i64 = 1000;

/// How long after the last failure the next attempt waits, given `failures` so far.
pub fn wait_ms(failures: u32, base_ms: i64) -> i64 {
    if failures < FREE_FAILURES {
        return 0;
    }
    let doublings = (failures - FREE_FAILURES).min(30);
    base_ms.saturating_mul(1i64 << doublings).min(MAX_WAIT_MS)
}

/// Milliseconds still to wait before an attempt at `now_ms` is looked at (`None`: go ahead).
pub fn must_wait(f: LoginFailures, now_ms: i64, base_ms: i64) -> Option<i64> {
    let last = f.last_at?;
    let until = last.saturating_add(wait_ms(f.count, base_ms));
    (now_ms < until).then(|| until - now_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_after_five_failures() {
        // (failures, wait)
        for (n, want) in [
            (0, 0),
            (4, 0),
            (5, 1000),
            (6, 2000),
            (7, 4000),
            (14, 512_000),
            (15, MAX_WAIT_MS),
            (u32::MAX, MAX_WAIT_MS),
        ] {
            assert_eq!(wait_ms(n, 1000), want, "{n}");
        }
        let f = |count, last| LoginFailures {
            count,
            last_at: Some(last),
        };
        // (failures, now, wait left)
        for (fail, now, want) in [
            (f(4, 100), 100, None),
            (f(5, 100), 100, Some(1000)),
            (f(5, 100), 600, Some(500)),
            (f(5, 100), 1100, None),
            (f(6, 100), 1100, Some(1000)),
            (LoginFailures::default(), 0, None),
        ] {
            assert_eq!(must_wait(fail, now, 1000), want, "{fail:?} {now}");
        }
    }
}
