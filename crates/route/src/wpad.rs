//! The `wpad` source of the route, and the first step of `auto`: discover a PAC script (DHCP
//! option 252, then `wpad.<domain>`), remember the result for its lifetime, and evaluate it for
//! the service.
//!
//! Discovery walks files, DNS and HTTP, which may take seconds on a network that drops packets,
//! so its result is cached in a file the caller names (the sensor's `wpad.json`, see
//! [`uplink_wpad::cache`]): the uploader chooses a route for every new connection and must not
//! rediscover each time. The analyzer discovers afresh, without the cache.

use std::path::Path;
use std::time::{Duration, SystemTime};

use uplink_proxy::WpadOutcome;
use uplink_wpad::cache::Cached;
use uplink_wpad::{Discovery, Fetched, Sources};

use crate::pac::SourceError;

/// Time limit of one candidate's fetch, DNS included.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Fetches a candidate and checks that it compiles as a PAC.
pub fn fetch_and_check(url: &str) -> Result<Fetched, String> {
    fetch_checked(url).map_err(|e| e.to_string())
}

/// [`fetch_and_check`], typed.
pub fn fetch_checked(url: &str) -> Result<Fetched, SourceError> {
    let opts = uplink_pac::fetch::FetchOptions {
        timeout: FETCH_TIMEOUT,
        ..Default::default()
    };
    let fetched = uplink_pac::fetch::fetch(url, &opts)?;
    uplink_pac::Pac::compile(&fetched.body).map_err(SourceError::NotPac)?;
    Ok(Fetched {
        script: fetched.body,
        refresh_after: fetched.refresh_after,
    })
}

/// Discovery's result: from the cache file while it is fresh (with the seconds it has left),
/// else discovered now and cached there.
pub fn discovery(cache_file: &Path, sources: &Sources) -> (Discovery, Option<u64>) {
    let now = SystemTime::now();
    if let Some(cached) = Cached::load(cache_file).filter(|c| c.is_fresh(now)) {
        return (cached.discovery(), Some(cached.expires_in(now)));
    }
    let found = discover(sources);
    if let Err(e) = Cached::new(&found, now).store(cache_file) {
        tracing::warn!(path = %cache_file.display(), error = %e, "cannot cache the WPAD result; discovery will run again");
    }
    (found, None)
}

/// Discovery now, without any cache (the analyzer, `uplink proxy wpad`, install).
pub fn discover(sources: &Sources) -> Discovery {
    uplink_wpad::discover(sources, &mut fetch_and_check)
}

/// What discovery found (from the cache or now), evaluated for `https://host:port/`, for the
/// proxy engine.
pub fn outcome(cache_file: &Path, sources: &Sources, host: &str, port: u16) -> WpadOutcome {
    let (d, cached) = discovery(cache_file, sources);
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
        crate::pac::evaluate_loaded(&label, Ok(f.script.clone()), host, port)
    });
    WpadOutcome { steps, pac }
}

/// Forgets the cached result (the proxy settings changed).
pub fn forget(cache_file: &Path) {
    let _ = std::fs::remove_file(cache_file);
}
