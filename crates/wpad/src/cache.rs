//! Discovery results kept for a while, so a sensor choosing a route for every new connection does
//! not walk DHCP, DNS and HTTP each time (browsers keep WPAD results too).
//!
//! A script found stays for its HTTP freshness (the fetcher clamps it, 60 s to 24 h); "nothing
//! found" stays for [`NEGATIVE_TTL`], so a WPAD host deployed later is picked up within minutes.
//! The file is written atomically (temporary file, rename); a missing, corrupt or expired file
//! simply means "discover again". Changing the proxy settings removes it.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::discover::{Discovery, Found, Step};

/// How long "nothing found" is remembered.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(300);

/// The format of the cache file this build writes and reads.
const FORMAT: u32 = 1;

/// A discovery result with its lifetime.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cached {
    pub format: u32,
    /// Seconds since the Unix epoch.
    pub discovered_at: u64,
    pub expires_at: u64,
    pub pac_url: Option<String>,
    pub script: Option<String>,
    pub refresh_after_secs: u64,
    pub steps: Vec<Step>,
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Cached {
    /// Remembers `d`, found at `now`.
    pub fn new(d: &Discovery, now: SystemTime) -> Cached {
        let ttl = d.found.as_ref().map_or(NEGATIVE_TTL, |f| f.refresh_after);
        Cached {
            format: FORMAT,
            discovered_at: unix(now),
            expires_at: unix(now).saturating_add(ttl.as_secs()),
            pac_url: d.found.as_ref().map(|f| f.url.clone()),
            script: d.found.as_ref().map(|f| f.script.clone()),
            refresh_after_secs: ttl.as_secs(),
            steps: d.steps.clone(),
        }
    }

    /// Whether the result still holds at `now`. A clock set back before the discovery also
    /// counts as stale, so a wrong clock cannot pin a result forever.
    pub fn is_fresh(&self, now: SystemTime) -> bool {
        let now = unix(now);
        self.format == FORMAT && now >= self.discovered_at && now < self.expires_at
    }

    /// Seconds left at `now`.
    pub fn expires_in(&self, now: SystemTime) -> u64 {
        self.expires_at.saturating_sub(unix(now))
    }

    /// The discovery this remembers.
    pub fn discovery(&self) -> Discovery {
        let found = match (&self.pac_url, &self.script) {
            (Some(url), Some(script)) => Some(Found {
                url: url.clone(),
                script: script.clone(),
                refresh_after: Duration::from_secs(self.refresh_after_secs),
            }),
            _ => None,
        };
        Discovery {
            steps: self.steps.clone(),
            found,
        }
    }

    /// Reads the cache file; `None` when it is missing or unreadable (discover again).
    pub fn load(path: &Path) -> Option<Cached> {
        let bytes = std::fs::read(path).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Writes the cache file atomically.
    pub fn store(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("json.tmp");
        let body = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, body)?;
        std::fs::rename(&tmp, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn lifetimes() {
        let found = Discovery {
            steps: vec![],
            found: Some(Found {
                url: "http://wpad.corp/wpad.dat".into(),
                script: "function FindProxyForURL(){return 'DIRECT'}".into(),
                refresh_after: Duration::from_secs(600),
            }),
        };
        let none = Discovery {
            steps: vec![],
            found: None,
        };
        let start = 1_700_000_000;
        // (discovery, checked at, fresh?)
        let cases: &[(&Discovery, u64, bool)] = &[
            (&found, start, true),
            (&found, start + 599, true),
            (&found, start + 600, false),
            (&none, start + 299, true),
            (&none, start + 300, false),
            // The clock went back: stale.
            (&found, start - 1, false),
        ];
        for (d, now, fresh) in cases {
            let c = Cached::new(d, at(start));
            assert_eq!(
                c.is_fresh(at(*now)),
                *fresh,
                "{:?} at +{}",
                d.found.is_some(),
                *now as i64 - start as i64
            );
        }
        let c = Cached::new(&found, at(start));
        assert_eq!(c.expires_in(at(start + 100)), 500);
        assert_eq!(c.discovery(), found);
    }

    #[test]
    fn round_trip_and_corrupt_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wpad.json");
        assert_eq!(Cached::load(&path), None);
        let c = Cached::new(
            &Discovery {
                steps: vec![Step {
                    step: "dns".into(),
                    source: "http://wpad.corp/wpad.dat".into(),
                    outcome: "does not resolve".into(),
                    pac_url: None,
                }],
                found: None,
            },
            SystemTime::now(),
        );
        c.store(&path).unwrap();
        assert_eq!(Cached::load(&path), Some(c));
        std::fs::write(&path, b"{not json").unwrap();
        assert_eq!(Cached::load(&path), None);
    }
}
