//! Compiled PAC scripts, kept by source text.
//!
//! A PAC URL is re-fetched periodically and usually returns the same bytes; compiling a 150 KB
//! script and running its top-level code costs milliseconds, evaluating it microseconds. The
//! cache hands back the already-loaded [`Pac`] when the source is unchanged, and keeps a few
//! scripts (several PAC URLs, or a WPAD result next to a configured one), least recently used
//! first out.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use crate::engine::{Limits, Pac, PacError};

/// Compiled scripts by source; see the module docs.
#[derive(Debug)]
pub struct PacCache {
    capacity: usize,
    limits: Limits,
    /// Most recently used last.
    entries: Vec<(u64, Pac)>,
    compiles: u64,
}

impl PacCache {
    /// A cache of at most `capacity` (≥ 1) scripts, compiled under `limits`.
    pub fn new(capacity: usize, limits: Limits) -> PacCache {
        PacCache {
            capacity: capacity.max(1),
            limits,
            entries: Vec::new(),
            compiles: 0,
        }
    }

    /// The compiled script for `source`, compiling it on a miss. Errors are not cached.
    pub fn get_or_compile(&mut self, source: &str) -> Result<&mut Pac, PacError> {
        let mut h = DefaultHasher::new();
        source.hash(&mut h);
        let key = h.finish();
        let hit = self
            .entries
            .iter()
            .position(|(k, pac)| *k == key && pac.source() == source);
        let entry = match hit {
            Some(i) => self.entries.remove(i),
            None => {
                let pac = Pac::compile_with(source, self.limits.clone())?;
                self.compiles += 1;
                if self.entries.len() >= self.capacity {
                    self.entries.remove(0);
                }
                (key, pac)
            }
        };
        self.entries.push(entry);
        let last = self.entries.len() - 1;
        Ok(&mut self.entries[last].1)
    }

    /// How many compilations the cache has done (misses), for tests and status output.
    pub fn compiles(&self) -> u64 {
        self.compiles
    }

    /// Scripts currently held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_misses_and_eviction() {
        let mut cache = PacCache::new(2, Limits::default());
        let a = "function FindProxyForURL(u, h) { return 'DIRECT'; }";
        let b = "function FindProxyForURL(u, h) { return 'PROXY b:1'; }";
        let c = "function FindProxyForURL(u, h) { return 'PROXY c:1'; }";
        cache.get_or_compile(a).unwrap();
        cache.get_or_compile(a).unwrap();
        assert_eq!(cache.compiles(), 1);
        cache.get_or_compile(b).unwrap();
        cache.get_or_compile(a).unwrap(); // a is now most recent
        cache.get_or_compile(c).unwrap(); // evicts b
        assert_eq!(cache.compiles(), 3);
        assert_eq!(cache.len(), 2);
        cache.get_or_compile(a).unwrap();
        assert_eq!(cache.compiles(), 3);
        cache.get_or_compile(b).unwrap();
        assert_eq!(cache.compiles(), 4);
        assert!(cache.get_or_compile("function (").is_err());
        assert_eq!(cache.len(), 2);
    }
}
