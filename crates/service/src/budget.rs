//! The decoding budget: how much memory event batches may take while they are decompressed,
//! parsed and stored, all requests together.
//!
//! A batch's cost is known before it is decoded ([`cost`]): the compressed body, the decoded body
//! (bounded by what its zstd frames declare, [`uplink_protocol::body::decoded_bound`]) and the
//! owned copies of its events handed to the store. A request reserves its cost before decoding and
//! holds it until the store has the batch; when the budget cannot cover it, the service answers
//! 503 with `Retry-After` at once (the sensor keeps the batch and retries) instead of letting
//! twelve 60 MB batches decode together. A batch costing more than the whole budget runs alone.
//!
//! The budget is counted in KiB so that budgets beyond 4 GiB fit a semaphore's permits.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uplink_protocol::body::Encoding;

/// A budget in bytes.
#[derive(Debug)]
pub(crate) struct DecodeBudget {
    permits: Arc<Semaphore>,
    total_kib: u32,
}

/// What a batch of `raw_len` bytes on the wire may take in memory at once: the raw body, the
/// decoded body (a copy only when compressed), and the events' owned copies for the store.
pub(crate) fn cost(encoding: Encoding, raw_len: usize, decoded_bound: usize) -> usize {
    let decoded_copies = match encoding {
        Encoding::Identity => 1,
        Encoding::Zstd => 2,
    };
    raw_len.saturating_add(decoded_bound.saturating_mul(decoded_copies))
}

fn kib(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX)
}

impl DecodeBudget {
    pub fn new(bytes: usize) -> Self {
        let total_kib = kib(bytes).clamp(1, Semaphore::MAX_PERMITS as u32);
        DecodeBudget {
            permits: Arc::new(Semaphore::new(total_kib as usize)),
            total_kib,
        }
    }

    /// The budget in bytes.
    pub fn total(&self) -> usize {
        self.total_kib as usize * 1024
    }

    /// Reserves `bytes` (at most the whole budget) if that much is free now.
    pub fn try_reserve(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        let want = kib(bytes).clamp(1, self.total_kib);
        self.permits.clone().try_acquire_many_owned(want).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs() {
        let cases = [
            (Encoding::Identity, 1000, 1000, 2000),
            (Encoding::Zstd, 100, 62_000_000, 124_000_100),
            (Encoding::Zstd, usize::MAX, 10, usize::MAX),
        ];
        for (enc, raw, bound, want) in cases {
            assert_eq!(cost(enc, raw, bound), want, "{enc:?} {raw} {bound}");
        }
    }

    #[test]
    fn reservations_share_the_budget_and_come_back() {
        let budget = DecodeBudget::new(10 << 20);
        let a = budget.try_reserve(6 << 20).expect("fits");
        assert!(budget.try_reserve(6 << 20).is_none(), "over the budget");
        let b = budget.try_reserve(4 << 20).expect("the rest fits");
        drop(a);
        // Larger than the whole budget: runs alone, once everything else is done.
        assert!(budget.try_reserve(100 << 20).is_none());
        drop(b);
        let alone = budget.try_reserve(100 << 20).expect("alone");
        assert!(budget.try_reserve(1).is_none());
        drop(alone);
        assert_eq!(budget.total(), 10 << 20);
    }
}
