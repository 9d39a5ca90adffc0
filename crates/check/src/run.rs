//! Runs probes concurrently: a bounded [`JoinSet`] (at most `concurrency` probes in flight), each
//! probe under its own deadline, so a whole profile takes about one timeout rather than the sum.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use uplink_diag::Code;

use crate::model::{Probe, Target};
use crate::probe::{probe, Options};
use crate::result::{MethodResult, Report};

/// Runs every probe; `progress` is called as each one finishes (for the progress bar).
pub async fn run(
    targets: Arc<Vec<Target>>,
    probes: Vec<Probe>,
    opts: Arc<Options>,
    concurrency: usize,
    mut progress: impl FnMut(&Target, &MethodResult),
) -> Report {
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut set = JoinSet::new();
    for (n, p) in probes.into_iter().enumerate() {
        let (targets, opts, permits) = (targets.clone(), opts.clone(), permits.clone());
        set.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let t = &targets[p.target];
            // The probe bounds itself; this outer bound only guards against a step that
            // ignores its deadline.
            let limit = opts.timeout + Duration::from_secs(2);
            let r = match tokio::time::timeout(limit, probe(t, p.method, &p.route, &opts)).await {
                Ok(r) => r,
                Err(_) => MethodResult {
                    method: p.method,
                    ok: false,
                    code: Some(Code::TIMEOUT),
                    status: None,
                    route: None,
                    steps: Vec::new(),
                    fix: Some(Code::TIMEOUT.fix().to_owned()),
                    attempts: Vec::new(),
                },
            };
            (n, p.target, r)
        });
    }
    let mut done: Vec<(usize, usize, MethodResult)> = Vec::new();
    while let Some(joined) = set.join_next().await {
        // A probe task cannot panic on input (every failure is a result); if one did, the
        // others still report.
        if let Ok((n, target, r)) = joined {
            progress(&targets[target], &r);
            done.push((n, target, r));
        }
    }
    done.sort_by_key(|(n, _, _)| *n);
    let urls: Vec<String> = targets.iter().map(|t| t.url.clone()).collect();
    Report::assemble(&urls, done.into_iter().map(|(_, t, r)| (t, r)).collect())
}
