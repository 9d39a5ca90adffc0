//! Where the sensor keeps WPAD discovery's result (`wpad.json` in the state directory); the
//! discovery and its cache are `uplink_route::wpad`.

use std::path::PathBuf;

use crate::config::Paths;

/// Where the discovery result is kept.
pub fn cache_file(paths: &Paths) -> PathBuf {
    paths.state_dir.join("wpad.json")
}

/// Forgets the cached result (the proxy settings changed).
pub fn forget(paths: &Paths) {
    uplink_route::wpad::forget(&cache_file(paths));
}
