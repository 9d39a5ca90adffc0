//! The sensor gives memory back once it goes idle: the schedule (crates/memtrim says what is
//! given back and why it is safe).

use std::time::Duration;

use uplink_memtrim::{cpu_time, rss_kib, trim, IdleTrim};

/// Samples the CPU time and resident set every `period` and trims when idle and grown
/// (crates/memtrim). A zero period
/// disables it. Runs until the runtime stops.
pub async fn trim_when_idle(period: Duration) {
    if period.is_zero() {
        return;
    }
    let mut state = IdleTrim::new(period, cpu_time());
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if state.tick(cpu_time(), rss_kib()) {
            let t = trim();
            state.trimmed(t.rss_after_kib);
            tracing::info!(
                rss_before_kib = t.rss_before_kib,
                rss_after_kib = t.rss_after_kib,
                read_only_unmapped_kib = t.read_only_bytes / 1024,
                "idle: memory given back to the system"
            );
        }
    }
}
