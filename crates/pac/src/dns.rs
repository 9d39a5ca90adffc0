//! Name resolution for `dnsResolve`, `isResolvable`, `isInNet` and their `Ex` forms.
//!
//! A PAC can resolve names, and a blocking `getaddrinfo` cannot be stopped by the JavaScript
//! interrupt handler, so every lookup runs on its own thread and the caller waits at most a
//! timeout; a lookup that outlives it is abandoned (its thread ends when the system resolver
//! gives up). The [`Resolver`] trait lets tests and `uplink proxy pac --resolve` fix answers.
//! Caching per evaluation is done by the engine, not here.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// Why a lookup produced no address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    #[error("no address found for {host:?}")]
    NotFound { host: String },
    #[error("looking up {host:?} took longer than {timeout:?}; check the DNS servers in /etc/resolv.conf")]
    Timeout { host: String, timeout: Duration },
    #[error(
        "too many DNS lookups for the PAC are still outstanding ({limit}); not looking up {host:?}"
    )]
    Busy { host: String, limit: usize },
}

/// Resolves a host name to its addresses (IPv4 and IPv6, in the resolver's order).
pub trait Resolver: Send + Sync + fmt::Debug {
    /// Looks `host` up, waiting at most `timeout`.
    fn resolve(&self, host: &str, timeout: Duration) -> Result<Vec<IpAddr>, DnsError>;
}

/// The system resolver (`getaddrinfo`), each lookup on a thread of its own with a timeout.
#[derive(Debug, Default)]
pub struct SystemResolver {
    outstanding: Arc<AtomicUsize>,
}

/// Lookups still running after their timeout are abandoned, not killed; cap them so a PAC that
/// resolves in a loop against a dead DNS server cannot pile up threads.
const MAX_OUTSTANDING: usize = 16;

impl SystemResolver {
    pub fn new() -> SystemResolver {
        SystemResolver::default()
    }
}

impl Resolver for SystemResolver {
    fn resolve(&self, host: &str, timeout: Duration) -> Result<Vec<IpAddr>, DnsError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        if host.is_empty() || host.len() > 253 || host.contains(['\0', '/', ' ']) {
            return Err(DnsError::NotFound {
                host: host.to_string(),
            });
        }
        if self.outstanding.fetch_add(1, Ordering::SeqCst) >= MAX_OUTSTANDING {
            self.outstanding.fetch_sub(1, Ordering::SeqCst);
            return Err(DnsError::Busy {
                host: host.to_string(),
                limit: MAX_OUTSTANDING,
            });
        }
        let (tx, rx) = mpsc::channel();
        let name = host.to_string();
        let outstanding = Arc::clone(&self.outstanding);
        let spawned = std::thread::Builder::new()
            .name("pac-dns".into())
            .spawn(move || {
                let result = (name.as_str(), 0u16).to_socket_addrs().map(|addrs| {
                    let mut ips: Vec<IpAddr> = Vec::new();
                    for a in addrs {
                        if !ips.contains(&a.ip()) {
                            ips.push(a.ip());
                        }
                    }
                    ips
                });
                outstanding.fetch_sub(1, Ordering::SeqCst);
                let _ = tx.send(result);
            });
        if spawned.is_err() {
            self.outstanding.fetch_sub(1, Ordering::SeqCst);
            return Err(DnsError::Busy {
                host: host.to_string(),
                limit: MAX_OUTSTANDING,
            });
        }
        match rx.recv_timeout(timeout) {
            Ok(Ok(ips)) if !ips.is_empty() => Ok(ips),
            Ok(_) => Err(DnsError::NotFound {
                host: host.to_string(),
            }),
            Err(_) => Err(DnsError::Timeout {
                host: host.to_string(),
                timeout,
            }),
        }
    }
}

/// Fixed answers (`--resolve HOST=IP`, tests), optionally falling back to another resolver for
/// names it does not know. Names compare case-insensitively.
#[derive(Debug, Default)]
pub struct FixedResolver {
    answers: HashMap<String, Vec<IpAddr>>,
    fallback: Option<Arc<dyn Resolver>>,
}

impl FixedResolver {
    /// No answers and no fallback: every name that is not an IP literal is "not found".
    pub fn new() -> FixedResolver {
        FixedResolver::default()
    }

    /// Adds `ip` to the answers for `host` (call repeatedly for several addresses).
    pub fn with(mut self, host: &str, ip: IpAddr) -> FixedResolver {
        self.answers
            .entry(host.to_ascii_lowercase())
            .or_default()
            .push(ip);
        self
    }

    /// Sends names without a fixed answer to `fallback`.
    pub fn with_fallback(mut self, fallback: Arc<dyn Resolver>) -> FixedResolver {
        self.fallback = Some(fallback);
        self
    }
}

impl Resolver for FixedResolver {
    fn resolve(&self, host: &str, timeout: Duration) -> Result<Vec<IpAddr>, DnsError> {
        if let Some(ips) = self.answers.get(&host.to_ascii_lowercase()) {
            return Ok(ips.clone());
        }
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        match &self.fallback {
            Some(f) => f.resolve(host, timeout),
            None => Err(DnsError::NotFound {
                host: host.to_string(),
            }),
        }
    }
}

/// Parses `HOST=IP` (the `--resolve` syntax).
pub fn parse_resolve_arg(s: &str) -> Result<(String, IpAddr), String> {
    let (host, ip) = s.split_once('=').ok_or_else(|| {
        format!("--resolve {s:?}: expected HOST=IP, e.g. --resolve intranet.example=10.0.0.5")
    })?;
    if host.is_empty() {
        return Err(format!(
            "--resolve {s:?}: the host name before '=' is empty"
        ));
    }
    let ip = ip
        .trim_matches(['[', ']'])
        .parse::<IpAddr>()
        .map_err(|_| format!("--resolve {s:?}: {ip:?} is not an IPv4 or IPv6 address"))?;
    Ok((host.to_string(), ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_resolver_and_fallback() {
        let inner: Arc<dyn Resolver> =
            Arc::new(FixedResolver::new().with("b", "10.0.0.2".parse().unwrap()));
        let r = FixedResolver::new()
            .with("A", "10.0.0.1".parse().unwrap())
            .with_fallback(inner);
        let t = Duration::from_secs(1);
        assert_eq!(r.resolve("a", t), Ok(vec!["10.0.0.1".parse().unwrap()]));
        assert_eq!(r.resolve("b", t), Ok(vec!["10.0.0.2".parse().unwrap()]));
        assert_eq!(r.resolve("::1", t), Ok(vec!["::1".parse().unwrap()]));
        assert!(matches!(r.resolve("c", t), Err(DnsError::NotFound { .. })));
    }

    #[test]
    fn system_resolver_literals_and_bad_names() {
        let r = SystemResolver::new();
        let t = Duration::from_secs(2);
        assert_eq!(
            r.resolve("127.0.0.1", t),
            Ok(vec!["127.0.0.1".parse().unwrap()])
        );
        assert!(matches!(
            r.resolve("a b", t),
            Err(DnsError::NotFound { .. })
        ));
        assert!(r
            .resolve("localhost", t)
            .is_ok_and(|ips| ips.iter().all(|ip| ip.is_loopback())));
    }

    #[test]
    fn resolve_arg() {
        assert_eq!(
            parse_resolve_arg("h=10.0.0.1"),
            Ok(("h".into(), "10.0.0.1".parse().unwrap()))
        );
        assert_eq!(
            parse_resolve_arg("h=[::1]"),
            Ok(("h".into(), "::1".parse().unwrap()))
        );
        for bad in ["h", "=1.2.3.4", "h=x"] {
            let err = parse_resolve_arg(bad).unwrap_err();
            assert!(err.contains("--resolve"), "{err}");
        }
    }
}
