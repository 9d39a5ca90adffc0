//! The `wpad` mode, and the first step of `auto`: discover a PAC script (DHCP option 252, then
//! `wpad.<domain>`), remember the result for its lifetime, and evaluate it for the service.
//!
//! Discovery walks files, DNS and HTTP, which may take seconds on a network that drops packets,
//! so its result is cached in the state directory (`wpad.json`, see [`uplink_wpad::cache`]): the
//! uploader chooses a route for every new connection and must not rediscover each time. Changing
//! the proxy settings (`uplink sensor proxy set`) removes the cache.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use uplink_proxy::WpadOutcome;
use uplink_wpad::cache::Cached;
use uplink_wpad::{Discovery, Fetched};

use crate::config::Paths;

/// Time limit of one candidate's fetch.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the discovery result is kept.
pub fn cache_file(paths: &Paths) -> PathBuf {
    paths.state_dir.join("wpad.json")
}

/// Fetches a candidate and checks that it compiles as a PAC.
pub fn fetch_and_check(url: &str) -> Result<Fetched, String> {
    let opts = uplink_pac::fetch::FetchOptions {
        timeout: FETCH_TIMEOUT,
        ..Default::default()
    };
    let fetched = uplink_pac::fetch::fetch(url, &opts).map_err(|e| e.to_string())?;
    uplink_pac::Pac::compile(&fetched.body)
        .map_err(|e| format!("fetched, but not a usable PAC: {e}"))?;
    Ok(Fetched {
        script: fetched.body,
        refresh_after: fetched.refresh_after,
    })
}

/// Discovery's result: from the cache while it is fresh (with the seconds it has left), else
/// discovered now and cached.
pub fn discovery(paths: &Paths) -> (Discovery, Option<u64>) {
    let file = cache_file(paths);
    let now = SystemTime::now();
    if let Some(cached) = Cached::load(&file).filter(|c| c.is_fresh(now)) {
        return (cached.discovery(), Some(cached.expires_in(now)));
    }
    let found = uplink_wpad::discover(&paths.wpad, &mut fetch_and_check);
    if let Err(e) = Cached::new(&found, now).store(&file) {
        tracing::warn!(path = %file.display(), error = %e, "cannot cache the WPAD result; discovery will run again");
    }
    (found, None)
}

/// What discovery found (from the cache or now), evaluated for `https://host:port/`, for the
/// proxy engine.
pub fn outcome(paths: &Paths, host: &str, port: u16) -> WpadOutcome {
    let (d, cached) = discovery(paths);
    evaluate(&d, cached, host, port)
}

/// A discovery's script evaluated for `https://host:port/`; `cached` is the seconds its cached
/// copy has left, when it came from the cache.
pub fn evaluate(d: &Discovery, cached: Option<u64>, host: &str, port: u16) -> WpadOutcome {
    let mut steps: Vec<String> = d.steps.iter().map(ToString::to_string).collect();
    if let Some(left) = cached {
        steps.insert(0, format!("cached result, rediscovered in {left}s"));
    }
    let pac = d.found.as_ref().map(|f| {
        let label = match cached {
            Some(left) => format!("{} (cached, {left}s left)", f.url),
            None => f.url.clone(),
        };
        crate::pacsource::evaluate_loaded(&label, Ok(f.script.clone()), host, port)
    });
    WpadOutcome { steps, pac }
}

/// Forgets the cached result (the proxy settings changed).
pub fn forget(paths: &Paths) {
    let _ = std::fs::remove_file(cache_file(paths));
}
