//! The walk's decisions, pure: how long one candidate may take to connect, and whether a failure
//! moves the walk on to the next candidate.
//!
//! A route is tried in order. The next candidate is tried when a proxy *could not be reached*
//! (refused, unreachable, blackholed, spoke no HTTP), and when a proxy that came from discovery
//! (WPAD, a PAC over plain http://) refused ([`uplink_proxy::trust::try_next`]); an
//! administrator's proxy that answers and refuses is the answer. A blackholed proxy must not eat
//! the whole deadline: each candidate's connect gets a share of what is left
//! ([`connect_budget`]), so the candidates after it are still tried.

use std::time::Duration;

use uplink_diag::Code;
use uplink_proxy::trust::{self, Failure, Origin};

/// The least a candidate's connect is given when more time than that is left.
pub const MIN_CONNECT: Duration = Duration::from_millis(500);

/// How long a candidate's TCP connect may take, given the time left for the whole walk and how
/// many candidates are left (this one included). The last candidate gets all of it; an earlier
/// one an equal share (at least [`MIN_CONNECT`]), so a blackholed proxy leaves time for the rest.
pub fn connect_budget(remaining: Duration, candidates_left: usize) -> Duration {
    if candidates_left <= 1 {
        return remaining;
    }
    let share = remaining / u32::try_from(candidates_left).unwrap_or(u32::MAX);
    share.max(MIN_CONNECT).min(remaining)
}

/// Whether the walk tries the next candidate after `failure` of a candidate from `origin`, with
/// `more` candidates after it and time left.
pub fn move_on(origin: Origin, failure: Failure, more: bool, time_left: bool) -> bool {
    more && time_left && trust::try_next(origin, failure)
}

/// One candidate tried: which (`DIRECT`, `PROXY host:port`, …), and how it ended (`None`: it
/// worked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub route: String,
    pub code: Option<Code>,
    pub detail: String,
}

impl Attempt {
    /// `PROXY p:1 (TCP_TIMEOUT)`, or the route alone when it worked.
    pub fn describe(&self) -> String {
        match self.code {
            Some(c) => format!("{} ({c})", self.route),
            None => self.route.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uplink_proxy::trust::Discovery;

    #[test]
    fn connect_budgets() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        let cases = [
            // (remaining, candidates left, budget)
            (s(5), 1, s(5)),
            (s(5), 2, ms(2500)),
            (s(6), 3, s(2)),
            (s(1), 4, ms(500)),
            (ms(300), 2, ms(300)),
            (Duration::ZERO, 2, Duration::ZERO),
            (s(5), 0, s(5)),
        ];
        for (remaining, left, want) in cases {
            assert_eq!(
                connect_budget(remaining, left),
                want,
                "{remaining:?} {left}"
            );
        }
    }

    #[test]
    fn when_the_walk_moves_on() {
        let admin = Origin::Configured;
        let wpad = Origin::Discovered(Discovery::Wpad);
        let cases = [
            // (origin, failure, more, time left, moves on)
            (admin, Failure::Unreachable, true, true, true),
            (admin, Failure::Unreachable, false, true, false),
            (admin, Failure::Unreachable, true, false, false),
            (admin, Failure::Refused, true, true, false),
            (admin, Failure::Other, true, true, false),
            (wpad, Failure::Refused, true, true, true),
            (wpad, Failure::Unreachable, true, true, true),
            (wpad, Failure::Other, true, true, false),
        ];
        for (origin, failure, more, time, want) in cases {
            assert_eq!(
                move_on(origin, failure, more, time),
                want,
                "{origin:?} {failure:?} more={more} time={time}"
            );
        }
    }
}
