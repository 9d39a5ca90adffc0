//! The uploader: queue → batch → (proxy) → service → ack.
//!
//! A batch leaves the queue only after the service answered 200, which it sends only after the
//! batch is committed. Any failure — proxy, network, TLS, service — keeps the batch queued and
//! retries it with exponential backoff and full jitter (250 ms doubling to 30 s). The same
//! sequence numbers go out again, so the service stores nothing twice. A refusal that says when
//! to come back (`Retry-After`, a busy or unavailable service's 503) is honoured: the retry waits
//! at least that long, bounded by [`RETRY_AFTER_MAX`] and jittered up so that a fleet told the
//! same second does not come back in step ([`retry_wait`]).
//!
//! The route is read from the configuration before every new connection, so a changed proxy
//! takes effect without a restart; a connection in use is dropped within about a second of a
//! change to the proxy settings (sensor.toml's time and size, then its `[proxy]`), so a kept-alive
//! connection cannot hold on to the old route. A reload (SIGHUP) also restarts the sources when their settings
//! changed (`apply_reload`): stopping them between batches keeps their checkpoints exact.
//!
//! The configured sources ([`crate::sources`]) run beside it on their own threads, writing into the
//! same queue. With `once`, the uploader stops only when the sources have read to their current
//! end *and* the queue is empty, so a source paused by a full queue resumes as batches leave.

use std::future::Future;
use std::time::{Duration, Instant};

use uplink_client::{Connection, Endpoint, TlsSettings};
use uplink_diag::Diagnose;
use uplink_queue::Queue;

use crate::config::{Config, Paths};
use crate::link::{self, LinkError};
use crate::status::{now_rfc3339, LastError, Status};
use crate::SensorError;

const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// The longest `Retry-After` honoured: a service asking for more is retried after this.
pub const RETRY_AFTER_MAX: Duration = Duration::from_secs(120);
/// Up to this fraction of a `Retry-After` is added at random.
const RETRY_AFTER_JITTER: f64 = 0.25;
/// How often an idle uploader looks for new events.
const IDLE_POLL: Duration = Duration::from_millis(200);
/// How often `--once` looks for events while its sources are still reading.
const ONCE_POLL: Duration = Duration::from_millis(20);
/// How often a lane waiting for a full batch (`upload.linger_ms`) looks at the queue (each look
/// takes the queue's lock and reads its state from disk).
const LINGER_POLL: Duration = Duration::from_millis(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `--once` waits for its last report (best effort) before it exits.
const LAST_REPORT_BOUND: Duration = Duration::from_secs(5);
/// Successes are written to status.json at most this often (errors at once).
const STATUS_EVERY: Duration = Duration::from_secs(1);

/// How `run` should behave.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Exit once the queue is empty.
    pub once: bool,
    /// With `once`: give up (with the last error) after this long.
    pub timeout: Duration,
    /// Set (e.g. by SIGHUP) to reload the configuration and reconnect along a fresh route.
    pub reload: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

/// How long a stop request waits for the upload in flight (then it is simply re-sent later).
pub const DRAIN_BOUND: Duration = Duration::from_secs(10);

/// How a run ended; `sensor run --once --json` prints it as it is
/// (`{"delivered","batches","stopped","remaining"}`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RunReport {
    pub delivered: u64,
    pub batches: u64,
    /// Stopped by the shutdown signal rather than (with `once`) by an empty queue.
    pub stopped: bool,
    /// Events still queued when it stopped.
    pub remaining: u64,
}

struct State {
    paths: Paths,
    config: Config,
    endpoint: Endpoint,
    tls: TlsSettings,
    queue: Queue,
    conn: Option<Connection>,
    bad_proxies: uplink_proxy::badcache::BadProxies,
    status: Status,
    status_written: Option<Instant>,
    /// Delivered batches not yet in `status.json` (writes are at most once per `STATUS_EVERY`
    /// while batches flow): written as soon as the queue is empty, so `sensor status` reflects
    /// every delivered batch within moments, not at the next heartbeat.
    status_pending: bool,
    backoff: Duration,
    renewal: crate::renew::Renewal,
    /// While the connection in use goes around a discovered proxy that refused:
    /// `DISCOVERED_PROXY_REFUSED`, kept as the status's last error even as batches are delivered
    /// (heartbeats carry it), until a connection needs no going around.
    route_warning: Option<LastError>,
    /// Damage was found in the queue during this run (reported in status, fails `--once`).
    damage_this_run: bool,
    /// The outage log and when the queue was last empty (`STATE/report.json`, see
    /// [`crate::report`]).
    report: crate::report::ReportState,
    /// The report's period (the heartbeat's, `sources.heartbeat_secs`); `None`: no reports.
    report_every: Option<Duration>,
    /// When the next report is due on an open connection (every new connection sends one first).
    next_report: Instant,
    /// The connection in use has not carried a report yet.
    fresh_conn: bool,
    /// The service answered 404 to a report (older than reports): none is sent again this run.
    reports_unsupported: bool,
    /// The queue was empty at the last read.
    queue_was_empty: bool,
    /// The last certificate renewal failed (reported until one succeeds).
    renewal_failed: bool,
    started: Instant,
    /// sensor.toml's modification time and size when last looked at, and when that was: a
    /// connection in use is dropped when the proxy settings change (`proxy_changed`).
    config_stamp: Option<(std::time::SystemTime, u64)>,
    config_checked: Instant,
    /// The central policy as this sensor follows it (`STATE/policy.json`, [`crate::policy`]).
    policy: crate::policy::Stored,
    /// Connections along the applied policy's route that failed in a row: past
    /// [`POLICY_FAILURES`], the sensor's own route is tried (never cut off by a policy).
    policy_failures: u32,
    /// The batch being read, compressed as it is read ([`crate::frames`]): its whole text is
    /// never held.
    frames: crate::frames::Frames,
    /// CA rotation: the digest of the CAs trusted now (`ca.pem`), and a trust set that could
    /// not be fetched, with when to try again.
    trust_digest: Option<String>,
    trust_retry: Option<(String, Instant)>,
    /// Pipelining (`upload.inflight`): idle extra connections along the route of the one in use,
    /// the route they are opened along (the candidate that connection went through), and their
    /// generation — bumped whenever the connection in use is dropped or replaced, so that a
    /// connection of an older route is closed as it comes back instead of being used again.
    lanes: Vec<Connection>,
    lane_route: Option<uplink_proxy::Explanation>,
    lane_gen: u64,
    /// An extra connection could not be opened (a proxy limiting connections, say): one batch at
    /// a time until then.
    lanes_off_until: Option<Instant>,
    /// The text of the last batch that ended at [`crate::frames::MAX_COMPRESSED`] (its text
    /// does not compress well): what counts as a full batch's bytes while that lasts, so that
    /// a lane neither lingers nor holds back a second lane for text the cap would cut anyway.
    capped_text: Option<usize>,
    /// The `Retry-After` of the last refusal, for the next retry's wait ([`State::next_wait`]).
    asked_wait: Option<Duration>,
    /// A `Retry-After` was logged since the last success (logged once per outage).
    asked_logged: bool,
}

/// How long to wait before retrying: `backoff` (already jittered), or, when the service said
/// when to come back (`asked`, its `Retry-After`), at least that — bounded by
/// [`RETRY_AFTER_MAX`] — plus up to [`RETRY_AFTER_JITTER`] of it at random (`r` in 0..1). Pure.
pub fn retry_wait(asked: Option<Duration>, backoff: Duration, r: f64) -> Duration {
    match asked {
        None => backoff,
        Some(asked) => {
            let base = asked.min(RETRY_AFTER_MAX);
            (base + base.mul_f64(RETRY_AFTER_JITTER * r.clamp(0.0, 1.0))).max(backoff)
        }
    }
}

/// Failed connections in a row along an applied policy's route before the sensor's own
/// settings are tried instead.
const POLICY_FAILURES: u32 = 3;

/// How often an open connection looks whether sensor.toml's proxy settings changed.
const CONFIG_CHECK_EVERY: Duration = Duration::from_secs(1);

impl State {
    /// The text of a full batch, for foreseeing one (`Queue::full_batch_possible`): the
    /// configured `batch_bytes`, or less — what the last batch cut at its compressed bytes held
    /// (text that compresses poorly), and never more than half the queue (a queue smaller than
    /// a batch would otherwise never hold a full one, and every lane would linger its whole
    /// time).
    fn full_batch_bytes(&self) -> usize {
        let queue_half = usize::try_from(self.config.queue.max_bytes / 2).unwrap_or(usize::MAX);
        self.config
            .upload
            .batch_bytes
            .min(self.capped_text.unwrap_or(usize::MAX))
            .min(queue_half)
            .max(1)
    }

    fn record_error(&mut self, e: &LinkError) {
        let code = e.code();
        tracing::warn!(code = %code, error = %e, "upload failed; will retry");
        // The same classification and fix as `uplink check` (uplink_diag::Diagnosis).
        let diagnosis = e.diagnosis(&self.endpoint);
        self.status.last_error = Some(LastError::diagnosed(&diagnosis, e.to_string()));
        self.write_status();
        // The outage log: through the proxy of the route last used, when it was one.
        let proxy = self
            .status
            .route
            .as_deref()
            .and_then(|r| r.strip_prefix("PROXY "))
            .map(str::to_owned);
        if self
            .report
            .failed(code.as_str(), proxy.as_deref(), &now_rfc3339())
        {
            self.store_report_state();
        }
    }

    fn store_report_state(&self) {
        if let Err(e) = self.report.store(&self.paths) {
            tracing::warn!(error = %e, "cannot record the outage log");
        }
    }

    /// A request went through: the open outage interval (if any) ends now.
    fn note_success(&mut self) {
        self.asked_logged = false;
        if self.report.succeeded(&now_rfc3339()) {
            self.store_report_state();
        }
    }

    /// Sends the report (heartbeat format 2, `POST /api/v1/heartbeat`) when one is due: first
    /// on every new connection — so that the service learns the sensor is back, and why it was
    /// away, before any batch of a backlog — and once a heartbeat period on an open one.
    async fn report_if_due(&mut self, skipped: u64) -> Result<(), LinkError> {
        let Some(every) = self.report_every.filter(|_| !self.reports_unsupported) else {
            return Ok(());
        };
        let reconnecting = self.conn.as_ref().is_none_or(|c| !c.is_open());
        if !reconnecting && !self.fresh_conn && Instant::now() < self.next_report {
            return Ok(());
        }
        self.connection().await?;
        let depth = self.queue.depth().unwrap_or_default();
        // Sent with the open interval ending now: this request is the first success.
        let mut state = self.report.clone();
        let now = now_rfc3339();
        state.succeeded(&now);
        // This request is a success through the route: an earlier error is not current.
        let mut status = self.status.clone();
        status.last_success = Some(now.clone());
        let report = crate::report::collect(
            &self.paths,
            &status,
            &state,
            (depth.events, depth.bytes),
            crate::report::Live {
                interval_secs: every.as_secs(),
                skipped,
                running_secs: self.started.elapsed().as_secs(),
                cert_renewal_failed: self.renewal_failed,
            },
        );
        let conn = self.conn.as_mut().expect("connected above");
        let sent = tokio::time::timeout(REQUEST_TIMEOUT, conn.post_heartbeat(&report)).await;
        self.fresh_conn = false;
        match sent {
            Ok(Ok(())) => {
                self.report.succeeded(&now);
                self.report.delivered(&report.outages);
                self.store_report_state();
                let every = uplink_protocol::heartbeat::jittered(every, rand::random::<f64>());
                self.next_report = Instant::now() + every;
                tracing::debug!(outages = report.outages.len(), "report delivered");
                self.follow_policy().await;
                Ok(())
            }
            // A service older than reports (404), or one that refuses this report (400, 413: a
            // bug, never worth holding the data back for): reports stop for this run, batches go.
            Ok(Err(uplink_client::ClientError::Status {
                status: status @ (404 | 400 | 413),
                message,
                ..
            })) => {
                tracing::warn!(status, %message, "the service does not take this sensor's reports: heartbeats go with the events only until the sensor restarts");
                self.reports_unsupported = true;
                Ok(())
            }
            Ok(Err(e)) => {
                self.asked_wait = self.conn.as_ref().and_then(Connection::retry_after);
                self.drop_conn();
                Err(e.into())
            }
            Err(_) => {
                self.drop_conn();
                Err(LinkError::Timeout {
                    what: "sending the report",
                    after: REQUEST_TIMEOUT,
                })
            }
        }
    }

    /// Logs what the queue skipped; damage (records lost for good) goes into status as
    /// `QUEUE_DAMAGED` at once, and stays the last error for the rest of this run.
    fn note_recoveries(&mut self) {
        let mut damaged = false;
        for r in self.queue.take_recoveries() {
            if !r.damaged {
                tracing::warn!("queue recovery: {r}");
                continue;
            }
            tracing::error!(code = %uplink_diag::Code::QUEUE_DAMAGED, "queue damage: {r}");
            if let Some((first, last)) = r.lost {
                self.status
                    .queue_damage
                    .get_or_insert_with(Default::default)
                    .add(first, last);
                damaged = true;
            }
        }
        if damaged {
            self.damage_this_run = true;
            self.status.last_error = self.damage_error();
            self.write_status();
        }
    }

    /// The damage found during this run, as the last error.
    fn damage_error(&self) -> Option<LastError> {
        let d = self
            .status
            .queue_damage
            .as_ref()
            .filter(|_| self.damage_this_run)?;
        Some(LastError::new(
            uplink_diag::Code::QUEUE_DAMAGED,
            d.message(),
        ))
    }

    /// The sources cannot queue for want of disk space: status says so (`disk_full`, written at
    /// once, in place if need be) while it lasts, and clears it when an append fits again.
    fn note_disk_full(&mut self, full: bool) {
        if full == self.status.disk_full.is_some() {
            return;
        }
        self.status.disk_full = full.then(|| {
            LastError::new(
                uplink_diag::Code::DISK_FULL,
                format!(
                    "the sources cannot queue what they read: the file system holding {} is full; they wait, and their data stays in the files and the journal until there is room",
                    self.paths.state_dir.display()
                ),
            )
        });
        if full {
            tracing::warn!(code = "DISK_FULL", dir = %self.paths.state_dir.display(), "the sources wait: no space left to queue");
        } else {
            tracing::info!("the sources queue again: there is room");
        }
        self.write_status();
    }

    fn write_status(&mut self) {
        if let Err(e) = self.status.store(&self.paths.status_file()) {
            tracing::warn!(error = %e, path = %self.paths.status_file().display(), "cannot write status");
        }
        self.status_written = Some(Instant::now());
        self.status_pending = false;
    }

    /// Whether sensor.toml's proxy settings differ from those of the connection in use (looked
    /// at most every [`CONFIG_CHECK_EVERY`], by the file's time and size first): `sensor proxy
    /// set` then applies within seconds, even to a connection that would otherwise stay open.
    fn proxy_changed(&mut self) -> bool {
        if self.config_checked.elapsed() < CONFIG_CHECK_EVERY {
            return false;
        }
        self.config_checked = Instant::now();
        let stamp = config_stamp(&self.paths);
        if stamp == self.config_stamp {
            return false;
        }
        self.config_stamp = stamp;
        match Config::load(&self.paths) {
            Ok(fresh) => {
                crate::policy::effective(&self.paths, fresh, &self.policy)
                    .0
                    .proxy
                    != self.config.proxy
            }
            Err(_) => false,
        }
    }

    async fn connection(&mut self) -> Result<&mut Connection, LinkError> {
        if self.conn.as_ref().is_some_and(|c| !c.is_open()) {
            self.drop_conn();
        }
        if self.conn.is_some() && self.proxy_changed() {
            tracing::info!("the proxy settings changed; reconnecting along the new route");
            self.drop_conn();
        }
        if self.conn.is_none() {
            // Re-read the configuration: a proxy changed since the last connection applies now.
            self.config_stamp = config_stamp(&self.paths);
            if let Ok(fresh) = Config::load(&self.paths) {
                // The applied central policy's route, when it wins (issue #26).
                self.config = crate::policy::effective(&self.paths, fresh, &self.policy).0;
            }
            let explanation = self.choose(self.config.clone()).await?;
            let attempt = link::connect_route(
                &self.endpoint,
                &explanation,
                &self.tls,
                CONNECT_TIMEOUT,
                &mut self.bad_proxies,
            )
            .await;
            let (explanation, connected) = match attempt {
                Ok(c) => {
                    self.policy_failures = 0;
                    (explanation, c)
                }
                Err(e) => self.policy_route_failed(e).await?,
            };
            tracing::info!(route = %connected.route, note = connected.note.as_deref().unwrap_or(""), "connected to the service");
            self.route_warning = connected.refused.map(|why| {
                tracing::warn!(code = %uplink_diag::Code::DISCOVERED_PROXY_REFUSED, "{why}");
                LastError::new(uplink_diag::Code::DISCOVERED_PROXY_REFUSED, why)
            });
            let changed = self.status.route.as_deref() != Some(connected.route.as_str());
            let used = explanation
                .sources
                .iter()
                .find(|s| s.used)
                .map(|s| s.source.as_str());
            self.status.route_source = Some(
                crate::report::route_source(used, &connected.route, connected.note.is_some())
                    .as_str()
                    .to_owned(),
            );
            self.fresh_conn = true;
            self.status.route = Some(connected.route);
            self.status.route_note = connected.note;
            self.status.proxy_auth = connected.proxy_auth.map(str::to_owned);
            let fingerprint = crate::config::proxy_fingerprint(&self.config.proxy);
            let changed = changed || self.status.proxy_settings.as_ref() != Some(&fingerprint);
            self.status.proxy_settings = Some(fingerprint);
            if changed {
                // A new route is news for `sensor status` now, not at the next throttled write.
                self.write_status();
            }
            // Extra connections go the way this one went, without walking the route again.
            let mut lane_route = explanation;
            lane_route
                .route
                .retain(|c| self.status.route.as_deref() == Some(c.to_string().as_str()));
            self.lane_route = Some(lane_route);
            self.lanes.clear();
            self.lane_gen += 1;
            self.conn = Some(connected.conn);
        }
        Ok(self.conn.as_mut().expect("just connected"))
    }

    /// The route `config` gives, explained: off the runtime's threads (PAC evaluation and WPAD
    /// discovery block), bounded (a PAC server or a resolver that never answers must not stall
    /// uploads; the blocking thread ends with its own fetch and DNS limits).
    async fn choose(&self, config: Config) -> Result<uplink_proxy::Explanation, LinkError> {
        let paths = self.paths.clone();
        let (host, port) = (self.endpoint.host.clone(), self.endpoint.port);
        let choosing = tokio::task::spawn_blocking(move || config.explain(&paths, &host, port));
        let limit = uplink_route::sources::SELECTION_TIMEOUT;
        let Ok(chosen) = tokio::time::timeout(limit, choosing).await else {
            return Err(LinkError::Timeout {
                what: "choosing the route (PAC, WPAD)",
                after: limit,
            });
        };
        match chosen {
            Ok(explanation) => Ok(explanation),
            // A panic while choosing the route is a bug: surface it as one.
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Only when the runtime shuts down.
            Err(_) => Err(LinkError::Timeout {
                what: "choosing the route (shutting down)",
                after: Duration::ZERO,
            }),
        }
    }

    /// A connection along the route in use failed with `e`. When that route is an applied
    /// central policy's and it has failed [`POLICY_FAILURES`] times in a row, the sensor's own
    /// settings are tried: if they reach the service, the policy is set aside as rejected (and
    /// tried again later), so no policy cuts the sensor off for good. Otherwise `e`.
    async fn policy_route_failed(
        &mut self,
        e: LinkError,
    ) -> Result<(uplink_proxy::Explanation, link::Connected), LinkError> {
        let Some(version) = self.policy_in_use() else {
            return Err(e);
        };
        self.policy_failures += 1;
        if self.policy_failures < POLICY_FAILURES {
            return Err(e);
        }
        let Ok(local) = Config::load(&self.paths) else {
            return Err(e);
        };
        let Ok(explanation) = self.choose(local.clone()).await else {
            return Err(e);
        };
        let mut bad = uplink_proxy::badcache::BadProxies::default();
        match link::connect_route(
            &self.endpoint,
            &explanation,
            &self.tls,
            CONNECT_TIMEOUT,
            &mut bad,
        )
        .await
        {
            Ok(c) => {
                let code = e.code();
                tracing::warn!(version, code = %code, error = %e, "the central policy's route fails and the sensor's own settings reach the service: policy set aside, tried again later");
                self.reject_policy(version, code.as_str(), &e.to_string());
                self.policy.applied = None;
                self.policy.sealed_password = None;
                self.save_policy();
                self.policy_failures = 0;
                self.config = local;
                Ok((explanation, c))
            }
            Err(_) => Err(e),
        }
    }

    /// The version of the applied policy whose route is in use, if one is.
    fn policy_in_use(&self) -> Option<u64> {
        let p = self.policy.applied.as_ref()?;
        let local = Config::load(&self.paths).ok()?;
        uplink_policy::precedence(
            Some(p),
            crate::policy::local_description(&local.proxy).as_deref(),
        )
        .use_policy
        .then_some(p.version)
    }

    /// Records a rejection of policy `version` (heartbeats report it; retried later).
    fn reject_policy(&mut self, version: u64, code: &str, detail: &str) {
        let every = self.report_every.map_or(60, |d| d.as_secs()).max(1);
        self.policy.rejected = Some(uplink_protocol::heartbeat::PolicyRejection {
            version,
            code: code.to_owned(),
            // Bounded: it travels in every heartbeat and sits in status.json.
            detail: detail.chars().take(300).collect(),
            at: now_rfc3339(),
        });
        self.policy.retry_at =
            Some(crate::policy::unix_now() + crate::policy::retry_after(every) as i64);
    }

    /// Writes `policy.json` and the policy's state into `status.json` (and so heartbeats).
    fn save_policy(&mut self) {
        if let Err(e) = self.policy.save(&self.paths) {
            tracing::warn!(error = %e, path = %crate::policy::file(&self.paths).display(), "cannot record the central policy");
        }
        self.status.policy = Some(self.policy.state());
        self.report_every = report_period(&self.config, &self.policy);
        self.write_status();
    }

    /// After a response on the connection in use: when the service names another policy
    /// version than the one last fetched (or a rejected one is due again), fetches the policy
    /// and applies it — after testing its route — or records why not. Never fails the upload:
    /// whatever goes wrong here leaves the route in use as it is.
    async fn follow_policy(&mut self) {
        let Some(announced) = self.conn.as_ref().and_then(|c| c.policy_version) else {
            return;
        };
        if !self.policy.due(announced, crate::policy::unix_now()) {
            return;
        }
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let answer = match tokio::time::timeout(REQUEST_TIMEOUT, conn.get_policy()).await {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => {
                // A service that names versions answers the policy; anything else is retried at
                // the next response, without holding uploads.
                tracing::warn!(code = %e.code(), error = %e, "fetching the central policy failed; the route in use stays");
                return;
            }
            Err(_) => {
                tracing::warn!("fetching the central policy timed out; the route in use stays");
                self.drop_conn();
                return;
            }
        };
        self.apply_answer(answer).await;
    }

    async fn apply_answer(&mut self, answer: uplink_policy::Answer) {
        let applied = self.policy.applied.as_ref().map(|p| p.version);
        let Some(policy) = answer.policy else {
            // None for this sensor (cleared, another target, outside the rollout).
            self.policy = crate::policy::Stored {
                fetched: answer.version,
                ..Default::default()
            };
            self.save_policy();
            if applied.is_some() {
                tracing::info!(
                    version = answer.version,
                    "the central policy no longer applies to this sensor; back to its own settings"
                );
                self.drop_conn();
            }
            return;
        };
        if applied == Some(policy.version) {
            self.policy.fetched = answer.version;
            self.save_policy();
            return;
        }
        let (kept, sealed) = match crate::policy::prepare(&self.paths, &policy) {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "cannot keep the central policy's secret; the route in use stays");
                self.reject_policy(policy.version, "CONFIG_INVALID", &e.to_string());
                self.policy.fetched = answer.version;
                self.save_policy();
                return;
            }
        };
        let candidate = crate::policy::Stored {
            fetched: answer.version,
            applied: Some(kept),
            sealed_password: sealed,
            rejected: None,
            retry_at: None,
        };
        let local = match Config::load(&self.paths) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read sensor.toml to weigh the central policy; the route in use stays");
                return;
            }
        };
        let (config, precedence) = crate::policy::effective(&self.paths, local, &candidate);
        if precedence.use_policy {
            if let Err((code, detail)) = self.test_route(config).await {
                tracing::warn!(version = policy.version, code = %code, %detail, "the central policy's route does not reach the service: kept the working route; tried again later");
                self.reject_policy(policy.version, &code, &detail);
                self.policy.fetched = answer.version;
                self.save_policy();
                return;
            }
        }
        tracing::info!(version = policy.version, route = %policy.route.describe(), source = %precedence.source, overrode = precedence.overrode.as_deref().unwrap_or("nothing"), "central policy applied");
        self.policy = candidate;
        self.policy_failures = 0;
        self.save_policy();
        // The next request goes along the policy's route.
        self.drop_conn();
    }

    /// Whether `config`'s route reaches the service: the ping, through it, on a connection
    /// presenting the client certificate. The failure's code and words otherwise.
    async fn test_route(&self, config: Config) -> Result<(), (String, String)> {
        let fail = |e: LinkError| (e.code().as_str().to_owned(), e.to_string());
        let explanation = self.choose(config).await.map_err(fail)?;
        let mut bad = uplink_proxy::badcache::BadProxies::default();
        let mut connected = link::connect_route(
            &self.endpoint,
            &explanation,
            &self.tls,
            CONNECT_TIMEOUT,
            &mut bad,
        )
        .await
        .map_err(fail)?;
        match tokio::time::timeout(REQUEST_TIMEOUT, connected.conn.ping()).await {
            Ok(Ok((200, _))) => Ok(()),
            Ok(Ok((status, _))) => Err((
                uplink_diag::Code::HTTP_UNEXPECTED_STATUS
                    .as_str()
                    .to_owned(),
                format!(
                    "the service's ping answered {status} through {}",
                    connected.route
                ),
            )),
            Ok(Err(e)) => Err(fail(e.into())),
            Err(_) => Err(fail(LinkError::Timeout {
                what: "the service's ping through the policy's route",
                after: REQUEST_TIMEOUT,
            })),
        }
    }

    /// Renews the client certificate over the current connection (see [`crate::renew`]); on
    /// success the next connection presents the new one. A failure is retried later; it never
    /// stops uploads while the current certificate is valid.
    async fn renew_certificate(&mut self) {
        let sensor_id = self.config.sensor_id.clone();
        let paths = self.paths.clone();
        let result = match self.connection().await {
            Ok(conn) => {
                match tokio::time::timeout(
                    REQUEST_TIMEOUT,
                    crate::renew::renew(&paths, &sensor_id, conn),
                )
                .await
                {
                    Ok(r) => r,
                    Err(_) => Err(SensorError::Failed(format!(
                        "no answer within {REQUEST_TIMEOUT:?}"
                    ))),
                }
            }
            Err(e) => Err(SensorError::Failed(e.to_string())),
        };
        match result {
            Ok(renewed) => {
                tracing::info!(not_after = %renewed.not_after, "client certificate renewed");
                self.tls = renewed.tls;
                self.renewal = renewed.renewal;
                self.renewal_failed = false;
                // Reconnect so that the new certificate is the one presented.
                self.drop_conn();
            }
            Err(e) => {
                let wait = self.renewal.failed(std::time::SystemTime::now());
                self.renewal_failed = true;
                tracing::warn!(code = %e.code(), error = %e, retry_in = ?wait, "client certificate renewal failed; the current certificate stays in use");
            }
        }
    }

    /// CA rotation (see [`crate::trust`]): when the last answer named another trust set than
    /// the CAs in `ca.pem`, fetches it over the open connection and trusts it from the next
    /// connection on; renewal becomes due when the certificate is not from its current CA. A
    /// failure is retried a minute later; uploads go on with the CAs trusted now.
    async fn follow_trust(&mut self) {
        let Some(announced) = self
            .conn
            .as_ref()
            .filter(|c| c.is_open())
            .and_then(|c| c.announced_trust())
            .map(str::to_owned)
        else {
            return;
        };
        if self.trust_digest.as_deref() == Some(announced.as_str()) {
            return;
        }
        if self
            .trust_retry
            .as_ref()
            .is_some_and(|(d, at)| *d == announced && Instant::now() < *at)
        {
            return;
        }
        let paths = self.paths.clone();
        let conn = self.conn.as_mut().expect("checked above");
        let result = match tokio::time::timeout(
            REQUEST_TIMEOUT,
            crate::trust::refresh(&paths, conn, &announced),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(SensorError::Failed(format!(
                "no answer within {REQUEST_TIMEOUT:?}"
            ))),
        };
        match result {
            Ok(tls) => {
                tracing::info!(trust = %announced, "the workspace's CAs changed: trusting its new set from the next connection");
                self.tls = tls;
                self.trust_digest = Some(announced);
                self.trust_retry = None;
                let set = std::fs::read_to_string(self.paths.ca_file()).unwrap_or_default();
                let cert = std::fs::read_to_string(self.paths.cert_file()).unwrap_or_default();
                if !crate::trust::issued_by_current(&set, &cert) {
                    tracing::info!("the client certificate is from a CA that is no longer current: renewing now");
                    self.renewal.off_current_ca = true;
                }
            }
            Err(e) => {
                tracing::warn!(code = %e.code(), error = %e, "fetching the workspace's new CAs failed; trying again in a minute");
                self.trust_retry = Some((announced, Instant::now() + Duration::from_secs(60)));
            }
        }
    }
}

impl State {
    /// Drops the connection in use and every extra one (those in flight are closed as their
    /// answers come back): the next request reconnects along the route chosen afresh.
    fn drop_conn(&mut self) {
        self.conn = None;
        self.lanes.clear();
        self.lane_gen += 1;
        // No extra connection along the old route either: the next batch waits for those in
        // flight, then goes on the connection chosen afresh.
        self.lane_route = None;
    }

    /// Exponential backoff with full jitter.
    fn next_backoff(&mut self) -> Duration {
        let wait = Duration::from_secs_f64(self.backoff.as_secs_f64() * rand::random::<f64>());
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        wait
    }

    /// The wait before the next retry: the backoff, or what the service asked for
    /// ([`retry_wait`]), said once per outage.
    fn next_wait(&mut self) -> Duration {
        let backoff = self.next_backoff();
        let asked = self.asked_wait.take();
        let wait = retry_wait(asked, backoff, rand::random::<f64>());
        if let Some(asked) = asked {
            if !std::mem::replace(&mut self.asked_logged, true) {
                tracing::info!(
                    retry_after = ?asked,
                    wait = ?wait,
                    "the service asked to be retried later (Retry-After); waiting {wait:.1?} (said once until an upload succeeds)"
                );
            }
        }
        wait
    }

    /// The queue is empty now: the oldest event of the next backlog is younger than this. Kept
    /// in memory while idle, written when the queue fills again ([`State::note_queue_filled`]).
    fn note_queue_empty(&mut self) {
        self.report.queue_empty_at = Some(now_rfc3339());
        self.queue_was_empty = true;
    }

    /// A batch was read after the queue was empty: the bound is written, for the queued
    /// heartbeats and for a restart.
    fn note_queue_filled(&mut self) {
        if std::mem::take(&mut self.queue_was_empty) {
            self.store_report_state();
        }
    }
}

/// Loads what the uploader needs from an installed sensor.
fn prepare(paths: &Paths) -> Result<State, SensorError> {
    let config = Config::load(paths)?;
    crate::renew::recover(paths)?;
    let renewal = crate::renew::Renewal::load(paths)?;
    let read = |p: std::path::PathBuf| {
        std::fs::read_to_string(&p).map_err(|source| SensorError::Io { path: p, source })
    };
    let ca = read(paths.ca_file())?;
    let cert = read(paths.cert_file())?;
    let key = zeroize::Zeroizing::new(read(paths.key_file())?);
    let tls = TlsSettings::new(&ca, Some((&cert, &key)))?;
    let endpoint = Endpoint::parse(&config.sensor_url)?;
    let queue = crate::open_queue(paths, &config)?;
    let status = Status::load(&paths.status_file());
    let policy = crate::policy::Stored::load(paths);
    let report_every = report_period(&config, &policy);
    let mut status = status;
    status.policy = Some(policy.state());
    Ok(State {
        paths: paths.clone(),
        config,
        endpoint,
        tls,
        queue,
        conn: None,
        bad_proxies: Default::default(),
        status,
        status_written: None,
        status_pending: false,
        backoff: BACKOFF_MIN,
        renewal,
        route_warning: None,
        damage_this_run: false,
        report: {
            let mut r = crate::report::ReportState::load(paths);
            // Never seen empty (a new sensor, or one from before reports): nothing queued is
            // older than the installation (the CA file is written once, at install).
            if r.queue_empty_at.is_none() {
                r.queue_empty_at = std::fs::metadata(paths.ca_file())
                    .and_then(|m| m.modified())
                    .ok()
                    .map(crate::report::rfc3339);
            }
            r
        },
        report_every,
        next_report: Instant::now(),
        fresh_conn: false,
        reports_unsupported: false,
        queue_was_empty: false,
        renewal_failed: false,
        started: Instant::now(),
        config_stamp: config_stamp(paths),
        config_checked: Instant::now(),
        policy,
        policy_failures: 0,
        frames: crate::frames::Frames::new(crate::frames::FRAME_BYTES).map_err(|e| {
            SensorError::Io {
                path: "<zstd>".into(),
                source: e,
            }
        })?,
        trust_digest: crate::trust::digest_of(&ca),
        trust_retry: None,
        lanes: Vec::new(),
        lane_route: None,
        lane_gen: 0,
        lanes_off_until: None,
        capped_text: None,
        asked_wait: None,
        asked_logged: false,
    })
}

/// The report's period: the applied central policy's heartbeat when it sets one, else the
/// sensor's (`sources.heartbeat_secs`); `None`: no reports.
fn report_period(config: &Config, policy: &crate::policy::Stored) -> Option<Duration> {
    let own = config.sources.heartbeat_secs;
    let secs = policy
        .applied
        .as_ref()
        .and_then(|p| p.heartbeat_secs)
        .filter(|_| own > 0)
        .unwrap_or(own);
    (secs > 0).then(|| Duration::from_secs(secs))
}

/// sensor.toml's modification time and size.
fn config_stamp(paths: &Paths) -> Option<(std::time::SystemTime, u64)> {
    let m = std::fs::metadata(paths.config_file()).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Uploads until `shutdown` completes (or, with `once`, until the queue is empty).
pub async fn run(
    paths: &Paths,
    opts: RunOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<RunReport, SensorError> {
    let mut st = prepare(paths)?;
    st.note_recoveries();
    let mut sources = crate::sources::spawn(paths, &st.config, opts.once)?;
    let mut result = upload_loop(&mut st, &opts, &mut sources, shutdown).await;
    sources.stop();
    // Counted once the sources have stopped: a heartbeat they queued while the uploader was
    // stopping is left too, and "N events remain" must be what `sensor status` then shows.
    if let Ok(r) = &mut result {
        if r.stopped {
            r.remaining = st.queue.depth().map(|d| d.events).unwrap_or(r.remaining);
        }
    }
    result
}

/// Applies a reloaded configuration. The route is chosen afresh at the next connection; sources
/// whose settings changed are stopped (between batches: their checkpoints match the queue) and
/// started again with the new settings, resuming where they stopped. Nothing queued is touched.
fn apply_reload(
    st: &mut State,
    sources: &mut crate::sources::SourcesHandle,
    fresh: Config,
    once: bool,
) {
    let restart = fresh.sources != st.config.sources || fresh.queue != st.config.queue;
    st.report_every = report_period(&fresh, &st.policy);
    let previous = std::mem::replace(&mut st.config, fresh);
    st.drop_conn();
    tracing::info!("configuration reloaded; reconnecting along the configured route");
    if !restart {
        return;
    }
    // The threads stop within a poll (≤ 50 ms) and journalctl is killed: brief enough to block
    // this runtime, which has nothing in flight at the top of the loop.
    let old = std::mem::replace(sources, crate::sources::SourcesHandle::stopped());
    old.stop();
    match crate::sources::spawn(&st.paths, &st.config, once) {
        Ok(new) => {
            *sources = new;
            tracing::info!("sources restarted with the reloaded settings");
        }
        Err(e) => {
            tracing::error!(code = %e.code(), error = %e, "the reloaded sources cannot start; going on with the previous sources settings");
            st.config.sources = previous.sources;
            st.config.queue = previous.queue;
            match crate::sources::spawn(&st.paths, &st.config, once) {
                Ok(new) => *sources = new,
                Err(e) => {
                    tracing::error!(code = %e.code(), error = %e, "the previous sources cannot start again either; only the queue is uploaded until the next reload")
                }
            }
        }
    }
}

/// A batch sent and not answered yet, or answered and waiting for the batches before it: the
/// queue's acknowledged prefix only moves over batches the service committed, in order.
struct InFlight {
    /// This request's number ([`Returned::id`]): unique within the run, so an answer to a request
    /// no longer waited for can never be taken for a later request of the same first seq (with
    /// other batch limits after a reload, that one may end elsewhere).
    id: u64,
    /// The batch without its text (it was compressed into the request).
    batch: uplink_queue::Batch,
    /// Answered 200 (the service committed it).
    done: bool,
}

/// What a request in flight comes back with: its batch's first seq, the connection (to use
/// again, unless it broke) and the generation it belongs to ([`State::lane_gen`]), and the answer.
/// `Unsent`: an extra connection could not be opened, so the batch never left.
enum Answer {
    Sent(Result<uplink_protocol::EventsResponse, LinkError>),
    Unsent(LinkError),
}

struct Returned {
    /// The request's number ([`InFlight::id`]).
    id: u64,
    first_seq: u64,
    conn: Option<Connection>,
    gen: u64,
    answer: Answer,
    /// The refusal's `Retry-After`, when it had one.
    retry_after: Option<Duration>,
}

/// How long one batch at a time is kept after an extra connection could not be opened.
const LANES_OFF: Duration = Duration::from_secs(300);

impl State {
    /// Before the first batch of a burst (nothing in flight): the report when one is due, then
    /// the connection in use (re-chosen and reconnected when needed).
    async fn ready(&mut self, skipped: u64) -> Result<(), LinkError> {
        self.report_if_due(skipped).await?;
        self.connection().await?;
        Ok(())
    }

    /// Whether to stop sending more batches until those in flight are answered, because work
    /// that needs the connection in use to itself is due: a reload, a certificate renewal, a
    /// trust set to fetch, a report, or a changed proxy (whose connections are dropped now).
    fn must_pause(&mut self, opts: &RunOptions) -> bool {
        if opts
            .reload
            .as_ref()
            .is_some_and(|r| r.load(std::sync::atomic::Ordering::SeqCst))
        {
            return true;
        }
        if self.renewal.due(std::time::SystemTime::now()) {
            return true;
        }
        if self.report_every.is_some()
            && !self.reports_unsupported
            && Instant::now() >= self.next_report
        {
            return true;
        }
        let trust = self
            .conn
            .as_ref()
            .and_then(|c| c.announced_trust())
            .is_some_and(|t| {
                self.trust_digest.as_deref() != Some(t)
                    && !self
                        .trust_retry
                        .as_ref()
                        .is_some_and(|(d, at)| d == t && Instant::now() < *at)
            });
        if trust {
            return true;
        }
        if self.proxy_changed() {
            tracing::info!("the proxy settings changed; reconnecting along the new route");
            self.drop_conn();
            return true;
        }
        false
    }

    /// A connection for one more batch while others are in flight: the connection in use when
    /// it is back, else an idle extra one; `None`: the request opens a new one (`lane_route`).
    fn lane(&mut self) -> Option<Connection> {
        if let Some(c) = self.conn.take().filter(Connection::is_open) {
            return Some(c);
        }
        while let Some(c) = self.lanes.pop() {
            if c.is_open() {
                return Some(c);
            }
        }
        None
    }

    /// A connection came back with its answer: it becomes the connection in use when there is
    /// none, else an idle extra one; closed when it broke or belongs to an older route.
    fn give_back(&mut self, conn: Option<Connection>, gen: u64) {
        let Some(conn) = conn.filter(|c| c.is_open() && gen == self.lane_gen) else {
            return;
        };
        if self.conn.is_none() {
            self.conn = Some(conn);
        } else {
            self.lanes.push(conn);
        }
    }

    /// The batch just delivered (and acknowledged with those before it): status and counters.
    fn delivered(&mut self, count: usize) {
        self.note_success();
        self.backoff = BACKOFF_MIN;
        let code = |e: &Option<LastError>| e.as_ref().map(|e| e.code.clone());
        let was_failing = code(&self.status.last_error) != code(&self.route_warning);
        self.status.last_success = Some(now_rfc3339());
        self.status.delivered += count as u64;
        // Damage found in this run stays the last error until the run ends; otherwise a
        // discovered proxy that was gone around stays reported while batches are delivered.
        self.status.last_error = self.damage_error().or_else(|| self.route_warning.clone());
        if was_failing
            || self
                .status_written
                .is_none_or(|t| t.elapsed() >= STATUS_EVERY)
        {
            self.write_status();
        } else {
            self.status_pending = true;
        }
    }
}

/// Sends one batch on `conn` (or on a new connection along `route` when `conn` is `None`).
#[allow(clippy::too_many_arguments)] // the request's owned parts: it runs as its own task
async fn send_batch(
    id: u64,
    first_seq: u64,
    conn: Option<Connection>,
    gen: u64,
    route: Option<uplink_proxy::Explanation>,
    endpoint: Endpoint,
    tls: TlsSettings,
    body: bytes::Bytes,
) -> Returned {
    let unsent = |e: LinkError| Returned {
        id,
        first_seq,
        conn: None,
        gen,
        answer: Answer::Unsent(e),
        retry_after: None,
    };
    let mut conn = match conn {
        Some(c) => c,
        None => {
            let Some(route) = route else {
                return unsent(LinkError::Timeout {
                    what: "opening another connection (no route yet)",
                    after: Duration::ZERO,
                });
            };
            let mut bad = uplink_proxy::badcache::BadProxies::default();
            match link::connect_route(&endpoint, &route, &tls, CONNECT_TIMEOUT, &mut bad).await {
                Ok(c) => {
                    tracing::debug!(route = %c.route, "another connection opened for the batches in flight");
                    c.conn
                }
                Err(e) => return unsent(e),
            }
        }
    };
    let answer = match tokio::time::timeout(REQUEST_TIMEOUT, conn.post_events(body, true)).await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(LinkError::Timeout {
            what: "uploading a batch",
            after: REQUEST_TIMEOUT,
        }),
    };
    Returned {
        id,
        first_seq,
        retry_after: answer.as_ref().err().and(conn.retry_after()),
        conn: answer.is_ok().then_some(conn),
        gen,
        answer: Answer::Sent(answer),
    }
}

async fn upload_loop(
    st: &mut State,
    opts: &RunOptions,
    sources: &mut crate::sources::SourcesHandle,
    shutdown: impl Future<Output = ()>,
) -> Result<RunReport, SensorError> {
    let started = Instant::now();
    let deadline = opts.once.then(|| started + opts.timeout);
    let mut report = RunReport {
        delivered: 0,
        batches: 0,
        stopped: false,
        remaining: 0,
    };
    tokio::pin!(shutdown);
    // Stopping: the batches in flight are given until this instant to be answered (their
    // events then leave the queue now instead of being sent again after the restart).
    let mut stopping: Option<Instant> = None;
    // A request failed: nothing more is sent until the batches before it are answered; then
    // the backoff, and it goes again from the acknowledged prefix.
    let mut failed: Option<LinkError> = None;
    // An extra connection could not be opened: no more batches until those in flight are back
    // (the one that never left is read again from the acknowledged prefix).
    let mut unsent = false;
    let mut inflight: std::collections::VecDeque<InFlight> = Default::default();
    // Numbers the requests ([`InFlight::id`]).
    let mut next_id: u64 = 0;
    let mut tasks: tokio::task::JoinSet<Returned> = tokio::task::JoinSet::new();
    // Until when a lane just back from its answer waits for a full batch (`upload.linger_ms`).
    let mut linger_until: Option<Instant> = None;
    loop {
        let idle = inflight.is_empty();
        if idle {
            if stopping.is_some() {
                break;
            }
            if let Some(e) = failed.take() {
                let wait = st.next_wait();
                if let Some(deadline) = deadline {
                    if Instant::now() + wait >= deadline {
                        return Err(SensorError::GaveUp {
                            code: e.code(),
                            message: e.to_string(),
                            spent: started.elapsed(),
                            limit: opts.timeout,
                        });
                    }
                }
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(wait) => {}
                }
                continue;
            }
            unsent = false;
            if opts
                .reload
                .as_ref()
                .is_some_and(|r| r.swap(false, std::sync::atomic::Ordering::SeqCst))
            {
                match Config::load(&st.paths) {
                    Ok(fresh) => apply_reload(st, sources, fresh, opts.once),
                    Err(e) => {
                        tracing::error!(error = %e, "configuration reload failed; keeping the previous one")
                    }
                }
            }
            // CA rotation: a new trust set announced is fetched first, so that a certificate of
            // a CA no longer current is renewed at once.
            st.follow_trust().await;
            if st.renewal.due(std::time::SystemTime::now()) {
                st.renew_certificate().await;
            }
            // The lane is just back from its answer with no batch in flight: if events wait,
            // wait briefly for a full batch rather than send part of one, unless no more can
            // come (`--once` with its sources at their end). Each batch costs the service a
            // commit and a request whatever it holds (`DEFAULT_LINGER_MS`).
            if let Some(until) = linger_until.take() {
                // Nothing waiting at all: the idle path below (no wait for a batch that may
                // never come).
                if !(opts.once && sources.done()) && st.queue.full_batch_possible(None, 1, 1)? {
                    // `--once` waits no longer than its time limit allows.
                    let until = deadline.map_or(until, |d| until.min(d));
                    let stop = loop {
                        let now = Instant::now();
                        if now >= until
                            || st.queue.full_batch_possible(
                                None,
                                st.config.upload.batch_events,
                                st.full_batch_bytes(),
                            )?
                        {
                            break false;
                        }
                        tokio::select! {
                            () = &mut shutdown => break true,
                            () = tokio::time::sleep(LINGER_POLL.min(until - now)) => {}
                        }
                    };
                    if stop {
                        break;
                    }
                }
            }
        }
        st.note_disk_full(sources.disk_full.load(std::sync::atomic::Ordering::SeqCst));
        let skipped = sources
            .skipped_heartbeats
            .load(std::sync::atomic::Ordering::SeqCst);
        let lanes_on = st.lanes_off_until.is_none_or(|t| Instant::now() >= t);
        let room = if lanes_on {
            st.config.upload.inflight.max(1)
        } else {
            1
        };
        let may_send = idle
            || (stopping.is_none()
                && failed.is_none()
                && !unsent
                && inflight.len() < room
                && st.lane_route.is_some()
                && !st.must_pause(opts));
        // Beside batches in flight only a full batch goes (below): when the queue cannot hold
        // one after them, nothing is read (and compressed) only to be dropped.
        let may_send = may_send
            && (idle
                || st.queue.full_batch_possible(
                    inflight.back().map(|f| &f.batch),
                    st.config.upload.batch_events,
                    st.full_batch_bytes(),
                )?);
        if may_send {
            let frames = &mut st.frames;
            let batch = st.queue.read_batch_each(
                inflight.back().map(|f| &f.batch),
                st.config.upload.batch_events,
                st.config.upload.batch_bytes,
                &mut |payload| {
                    frames.push(payload);
                    frames.compressed_len() < crate::frames::MAX_COMPRESSED
                },
            );
            // A batch cut at its compressed bytes (text that compresses poorly): its text is
            // the measure of a full batch for now. One that ended otherwise full, or went past
            // that measure uncut (the text compresses again), ends it.
            if let Ok(Some(b)) = &batch {
                if st.frames.compressed_len() >= crate::frames::MAX_COMPRESSED {
                    st.capped_text = Some(b.text_len);
                } else if b.is_full() || st.capped_text.is_some_and(|t| b.text_len >= t) {
                    st.capped_text = None;
                }
            }
            // The compressed body of a batch that goes now; what was compressed of one that
            // does not (beside batches in flight only a full one goes, below) is dropped, so
            // the next batch starts afresh.
            let (batch, body) = match batch {
                Ok(Some(b)) if idle || b.is_full() => {
                    let body = st.frames.finish().map_err(|e| SensorError::Io {
                        path: "<zstd>".into(),
                        source: e,
                    })?;
                    (Some(b), body)
                }
                Ok(b) => {
                    st.frames.discard();
                    (b, Vec::new())
                }
                Err(e) => {
                    st.frames.discard();
                    return Err(e.into());
                }
            };
            st.note_recoveries();
            match batch {
                None if idle => {
                    if st.status_pending {
                        st.write_status();
                    }
                    st.note_queue_empty();
                    // Idle: a report once a period is the sensor's sign of life.
                    if !opts.once && st.report_every.is_some() && Instant::now() >= st.next_report {
                        // A stop request does not wait for a report (it is sent again at the next start).
                        let sent = {
                            let report = st.report_if_due(skipped);
                            tokio::pin!(report);
                            tokio::select! {
                                r = &mut report => Some(r),
                                () = &mut shutdown => None,
                            }
                        };
                        match sent {
                            None => break,
                            Some(Err(e)) => {
                                st.record_error(&e);
                                let wait = st.next_wait();
                                st.next_report = Instant::now() + wait;
                                tokio::select! {
                                    () = &mut shutdown => break,
                                    () = tokio::time::sleep(wait) => {}
                                }
                                continue;
                            }
                            Some(Ok(())) => {
                                // The route works again: as after a delivered batch, the failure is over.
                                st.note_success();
                                st.backoff = BACKOFF_MIN;
                                let current =
                                    st.damage_error().or_else(|| st.route_warning.clone());
                                if st.status.last_error != current {
                                    st.status.last_error = current;
                                    st.write_status();
                                }
                            }
                        }
                    }
                    if opts.once && sources.done() {
                        if let Some(e) = sources.take_error() {
                            return Err(SensorError::Source(e));
                        }
                        // A source may have queued its last batch after our read: look once more.
                        if st.queue.depth()?.events == 0 {
                            st.write_status();
                            // The run's first report counted what was queued then: a last one says the
                            // queue is drained (best effort: the run has succeeded either way).
                            if report.batches > 0 && st.report_every.is_some() {
                                st.next_report = Instant::now();
                                let last = tokio::time::timeout(
                                    LAST_REPORT_BOUND,
                                    st.report_if_due(skipped),
                                );
                                tokio::select! {
                                    r = last => match r {
                                        Ok(Ok(())) => {}
                                        Ok(Err(e)) => tracing::debug!(error = %e, "the last report of the run was not sent"),
                                        Err(_) => tracing::debug!("the last report of the run did not finish within {LAST_REPORT_BOUND:?}"),
                                    },
                                    () = &mut shutdown => {}
                                }
                            }
                            if let Some(d) = st.damage_error() {
                                // Everything intact went; what was lost must not pass as success.
                                return Err(SensorError::QueueDamaged(format!(
                                    "delivered {} events; {}",
                                    report.delivered, d.message
                                )));
                            }
                            return Ok(report);
                        }
                        continue;
                    }
                    if opts.once {
                        // Sources are still reading (or paused on a queue that cannot drain): look again
                        // soon, within the run's time limit.
                        if deadline.is_some_and(|d| Instant::now() >= d) {
                            return Err(SensorError::GaveUp {
                                code: uplink_diag::Code::QUEUE_FULL,
                                message: "the sources had not read to their end".into(),
                                spent: started.elapsed(),
                                limit: opts.timeout,
                            });
                        }
                        tokio::select! {
                            () = &mut shutdown => break,
                            () = tokio::time::sleep(ONCE_POLL) => continue,
                        }
                    }
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(IDLE_POLL) => continue,
                    }
                }
                // Nothing more to send now: wait for an answer below.
                None => {}
                // Beside batches in flight only a full one goes: a trickle (a tailer keeping
                // up with its file) is not cut into many small requests (each a commit at the
                // service); it goes whole once the answers are back.
                Some(batch) if !idle && !batch.is_full() => {}
                Some(batch) => {
                    if idle {
                        st.note_queue_filled();
                        // The first batch of a burst: the report first when due, and the
                        // connection in use (chosen afresh when it is gone).
                        let ready = {
                            let ready = st.ready(skipped);
                            tokio::pin!(ready);
                            tokio::select! {
                                r = &mut ready => Some(r),
                                () = &mut shutdown => None,
                            }
                        };
                        match ready {
                            None => break,
                            Some(Ok(())) => {}
                            Some(Err(e)) => {
                                st.record_error(&e);
                                failed = Some(e);
                                continue;
                            }
                        }
                    }
                    let body = bytes::Bytes::from(body);
                    let conn = st.lane();
                    next_id += 1;
                    tasks.spawn(send_batch(
                        next_id,
                        batch.first_seq,
                        conn,
                        st.lane_gen,
                        st.lane_route.clone(),
                        st.endpoint.clone(),
                        st.tls.clone(),
                        body,
                    ));
                    inflight.push_back(InFlight {
                        id: next_id,
                        batch,
                        done: false,
                    });
                    // Another one may go at once.
                    continue;
                }
            }
        }
        // Wait for an answer (or the stop request, or the end of the time given to stop).
        let joined = tokio::select! {
            j = tasks.join_next() => j,
            () = &mut shutdown, if stopping.is_none() => {
                stopping = Some(Instant::now() + DRAIN_BOUND);
                continue;
            }
            () = tokio::time::sleep_until(stopping.unwrap_or_else(Instant::now).into()), if stopping.is_some() => {
                tracing::warn!("the upload in flight did not finish within {DRAIN_BOUND:?}; it will be sent again");
                break;
            }
        };
        let returned = match joined {
            Some(Ok(r)) => r,
            Some(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Only when the runtime shuts down.
            Some(Err(_)) | None => {
                inflight.clear();
                continue;
            }
        };
        st.give_back(returned.conn, returned.gen);
        // A batch no longer waited for (one before it failed, or never left): whatever its
        // answer, it is read again from the acknowledged prefix (stored once all the same).
        let Some(index) = inflight.iter().position(|f| f.id == returned.id) else {
            continue;
        };
        match returned.answer {
            Answer::Sent(Ok(resp)) => {
                inflight[index].done = true;
                tracing::debug!(
                    first_seq = returned.first_seq,
                    accepted = resp.accepted,
                    duplicates = resp.duplicates,
                    "batch delivered"
                );
                // The acknowledged prefix moves over every answered batch at its front.
                let mut counts = Vec::new();
                let mut through = None;
                while inflight.front().is_some_and(|f| f.done) {
                    let f = inflight.pop_front().expect("checked");
                    counts.push(f.batch.count);
                    through = Some(f.batch);
                }
                if let Some(b) = through {
                    st.queue.ack(&b)?;
                }
                for count in counts {
                    st.delivered(count);
                    report.delivered += count as u64;
                    report.batches += 1;
                }
                if inflight.is_empty() && st.config.upload.linger_ms > 0 {
                    linger_until = Instant::now()
                        .checked_add(Duration::from_millis(st.config.upload.linger_ms));
                }
                if st.conn.is_some() {
                    st.follow_policy().await;
                }
            }
            Answer::Sent(Err(e)) => {
                // No more batches until those before this one are answered (and acknowledged);
                // it and those after it go again after the backoff, from the acknowledged
                // prefix, on a new connection.
                st.record_error(&e);
                st.drop_conn();
                inflight.truncate(index);
                st.asked_wait = st.asked_wait.max(returned.retry_after);
                if failed.is_none() {
                    failed = Some(e);
                }
            }
            Answer::Unsent(e) => {
                tracing::warn!(code = %e.code(), error = %e, "cannot open another connection to the service: one batch at a time for {LANES_OFF:?}");
                st.lanes_off_until = Some(Instant::now() + LANES_OFF);
                // Its batch and those after it are read again, from the acknowledged prefix,
                // once the ones before it are back.
                unsent = true;
                inflight.truncate(index);
            }
        }
    }
    // Stopped by the signal (every `break` above): say what is left.
    report.stopped = true;
    report.remaining = st.queue.depth().map(|d| d.events).unwrap_or(0);
    st.write_status();
    Ok(report)
}

#[cfg(test)]
mod report_tests {
    use super::RunReport;

    #[test]
    fn the_run_report_is_the_json_scripts_read() {
        let r = RunReport {
            delivered: 1200,
            batches: 3,
            stopped: true,
            remaining: 7,
        };
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            serde_json::json!({"delivered": 1200, "batches": 3, "stopped": true, "remaining": 7})
        );
    }
}

#[cfg(test)]
mod retry_tests {
    use super::*;

    #[test]
    fn a_retry_after_is_honoured_bounded_and_jittered_up() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        let cases: &[(Option<Duration>, Duration, f64, Duration)] = &[
            // No Retry-After: the backoff as drawn.
            (None, ms(180), 0.7, ms(180)),
            // At least what was asked, plus up to a quarter of it.
            (Some(s(5)), ms(180), 0.0, s(5)),
            (Some(s(5)), ms(180), 1.0, ms(6_250)),
            (Some(s(1)), ms(10), 0.5, ms(1_125)),
            // A backoff already longer wins.
            (Some(s(1)), s(20), 0.5, s(20)),
            // "0": no floor beyond the backoff.
            (Some(s(0)), ms(300), 0.9, ms(300)),
            // Bounded: an hour asked is two minutes (plus jitter).
            (Some(s(3_600)), ms(1), 0.0, RETRY_AFTER_MAX),
            (Some(s(3_600)), ms(1), 1.0, s(150)),
            // A random draw out of range is clamped.
            (Some(s(4)), ms(1), 7.0, s(5)),
        ];
        for (asked, backoff, r, want) in cases {
            assert_eq!(
                retry_wait(*asked, *backoff, *r),
                *want,
                "{asked:?} {backoff:?} {r}"
            );
        }
    }
}
