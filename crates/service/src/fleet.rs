//! Fleet health in the service: reports stored as they arrive (the sensor's state and issues
//! derived at once, for that sensor), and the evaluation loop that derives every sensor's state
//! as time passes (a sensor that stops sending is `late`, then `disconnected`). The decisions are
//! `uplink-fleet`'s, run by the store in one transaction; with PostgreSQL the loop runs once
//! across replicas (an advisory lock: the replicas that lose skip the round).

use std::time::Duration;

use uplink_store::{FleetPolicy, FleetReport, Store, StoreError};

use crate::Shared;

/// How the service evaluates its fleet.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// Between two evaluations of the whole fleet.
    pub every: Duration,
    /// The thresholds (`disconnected_after_secs` is each workspace's setting; this one applies
    /// only to a store without settings).
    pub policy: FleetPolicy,
    /// The width of a report-history bucket (the console's charts): one point per sensor per
    /// bucket. Tests shorten it.
    pub history_bucket: Duration,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            every: Duration::from_secs(30),
            policy: FleetPolicy::default(),
            history_bucket: Duration::from_millis(uplink_store::history::BUCKET_MS as u64),
        }
    }
}

/// Stores a sensor's report and derives its state and issues from it now.
pub(crate) async fn report<S: Store>(
    shared: &Shared<S>,
    workspace: &str,
    sensor_id: &str,
    h: &uplink_protocol::heartbeat::Heartbeat,
) -> Result<(), StoreError> {
    let now = uplink_store::now_ms();
    let report = FleetReport::new(sensor_id, now, h);
    shared.store.record_report(workspace, report).await?;
    // The charts' history: a failure here loses a point, not the report.
    let bucket_ms = i64::try_from(shared.config.fleet.history_bucket.as_millis())
        .unwrap_or(uplink_store::history::BUCKET_MS)
        .max(1);
    let point = uplink_store::ReportPoint::new(sensor_id, now, bucket_ms, h);
    if let Err(e) = shared
        .store
        .record_report_point(workspace, point, now - uplink_store::history::KEEP_MS)
        .await
    {
        tracing::warn!(workspace, sensor_id, error = %e, "the report's chart point could not be stored");
    }
    shared
        .store
        .evaluate_fleet(
            now,
            &shared.config.fleet.policy,
            Some((workspace, sensor_id)),
        )
        .await?;
    Ok(())
}

/// Evaluates the whole fleet every `every` until dropped (the service aborts it at shutdown).
pub(crate) async fn run<S: Store>(shared: std::sync::Arc<Shared<S>>) {
    let every = shared.config.fleet.every.max(Duration::from_millis(100));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = uplink_store::now_ms();
        match shared
            .store
            .evaluate_fleet(now, &shared.config.fleet.policy, None)
            .await
        {
            Ok(e) if e.ran => {
                tracing::debug!(
                    sensors = e.sensors,
                    issues = e.issues_written,
                    "fleet evaluated"
                )
            }
            Ok(_) => tracing::debug!("fleet evaluated by another replica this round"),
            Err(e) => {
                tracing::warn!(error = %e, "fleet evaluation failed; trying again next round")
            }
        }
    }
}
