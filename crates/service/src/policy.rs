//! Central policy delivery (issue #26, docs/policy.md): `GET /api/v1/policy` answers a sensor,
//! over mutual TLS, the workspace's current policy if it selects that sensor
//! ([`uplink_policy::Answer`]); heartbeat and event responses carry the workspace's current
//! policy version in [`uplink_policy::VERSION_HEADER`], so a sensor learns of a new version on
//! its existing connection, within one heartbeat interval or sooner.
//!
//! Each replica reads the store's current policy at most once per [`TTL`] per workspace (the
//! change log's poll period): a policy set through any replica or the CLI is answered by every
//! replica within about half a second, and the hot path (batches) costs a map lookup. A store
//! that cannot be read leaves the header out (the sensor keeps what it has) and answers 503.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use uplink_policy::{Answer, Policy};
use uplink_store::Store;

use crate::Shared;

/// How long a workspace's current policy is answered from memory.
pub(crate) const TTL: Duration = Duration::from_millis(500);

/// A workspace's current policy version and policy, with when they were read.
type Entry = (Instant, u64, Option<Arc<Policy>>);

/// The current policy of each workspace asked about.
#[derive(Default)]
pub(crate) struct Cache {
    entries: Mutex<HashMap<String, Entry>>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("policy::Cache").finish_non_exhaustive()
    }
}

impl Cache {
    /// The workspace's current version and policy, from memory when read less than [`TTL`] ago.
    pub(crate) async fn current<S: Store>(
        &self,
        store: &S,
        workspace: &str,
    ) -> Result<(u64, Option<Arc<Policy>>), uplink_store::StoreError> {
        if let Some((at, v, p)) = self.lock().get(workspace) {
            if at.elapsed() < TTL {
                return Ok((*v, p.clone()));
            }
        }
        let (version, policy) = store.current_policy(workspace).await?;
        let policy = policy.map(Arc::new);
        let mut entries = self.lock();
        // Bounded by the workspaces that exist (only loaded workspaces reach here).
        entries.insert(
            workspace.to_owned(),
            (Instant::now(), version, policy.clone()),
        );
        Ok((version, policy))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Adds the workspace's current policy version to a successful response (heartbeat, batch).
pub(crate) async fn stamp<S: Store>(
    shared: &Shared<S>,
    workspace: &str,
    mut resp: Response<Full<Bytes>>,
) -> Response<Full<Bytes>> {
    if !resp.status().is_success() {
        return resp;
    }
    match shared.policies.current(&shared.store, workspace).await {
        Ok((version, _)) => {
            resp.headers_mut().insert(
                uplink_policy::VERSION_HEADER,
                http::HeaderValue::from(version),
            );
        }
        Err(e) => {
            tracing::warn!(workspace, error = %e, "reading the workspace's policy failed; its version is left out of this response")
        }
    }
    resp
}

/// `GET /api/v1/policy` for an authenticated sensor of `workspace`.
pub(crate) async fn answer<S: Store>(
    shared: &Shared<S>,
    workspace: &str,
    sensor_id: &str,
) -> Response<Full<Bytes>> {
    match shared.policies.current(&shared.store, workspace).await {
        Ok((version, policy)) => {
            let answer = Answer::for_sensor(version, policy.as_deref(), sensor_id);
            tracing::debug!(
                workspace,
                sensor_id,
                version,
                selected = answer.policy.is_some(),
                "policy answered"
            );
            let mut resp = crate::routes::json(StatusCode::OK, &answer);
            resp.headers_mut().insert(
                uplink_policy::VERSION_HEADER,
                http::HeaderValue::from(version),
            );
            // The answer can hold a proxy password: never kept by anything between.
            resp.headers_mut().insert(
                http::header::CACHE_CONTROL,
                http::HeaderValue::from_static("no-store"),
            );
            resp
        }
        Err(e) => {
            tracing::error!(workspace, error = %e, "reading the workspace's policy failed");
            crate::routes::unavailable()
        }
    }
}
