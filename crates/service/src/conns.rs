//! Connections under attack: caps, eviction, and the clocks of a request.
//!
//! Every accepted connection is registered with the [`Tracker`] and carries a [`ConnState`]: its
//! source address, whether it proved who it is (a valid client certificate, or an enrollment that
//! succeeded on it), when it last sent a byte, and when its current request began.
//!
//! Caps keep a flood of idle or stalled connections from exhausting the service's descriptors:
//!
//! - at most `max_connections` in total;
//! - at most `max_unauthenticated_per_address` connections from one source address that have not
//!   proved who they are. Connections with a valid client certificate are never counted per
//!   address: a whole site's sensors reach the service from one proxy address.
//!
//! At a cap, the new connection is let in and the *stalled* unauthenticated connection that has
//! been quiet the longest (no byte for at least `stall_grace`) is closed instead, so an attacker's
//! idle connections make room for a real client rather than locking it out. Only when no such
//! connection exists is the new one refused (closed at once). Authenticated connections are never
//! closed to make room. The decision is the pure [`decide`], table-tested below.
//!
//! What this module does not do: rate-limit enrollments (the lifecycle work does), or time out
//! the TLS handshake and request headers (the handshake timeout and hyper's header timeout do).

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

/// The caps, from [`crate::Limits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Caps {
    pub max_connections: usize,
    pub max_unauthenticated_per_address: usize,
    pub stall_grace: Duration,
}

/// One live connection as the admission decision sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct View {
    pub id: u64,
    pub ip: IpAddr,
    pub authenticated: bool,
    /// Milliseconds since the last byte arrived (or since it was accepted).
    pub quiet_ms: u64,
}

/// Which cap a refusal or an eviction was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cap {
    Total,
    PerAddress,
}

impl std::fmt::Display for Cap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Cap::Total => "max-connections",
            Cap::PerAddress => "max-unauthenticated-per-address",
        })
    }
}

/// What to do with a new connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Let it in after closing these connections (empty when under every cap).
    Admit(Vec<(u64, Cap)>),
    /// Close it: a cap is reached and nothing may be closed to make room.
    Refuse(Cap),
}

/// Decides about a new connection from `ip` given the live ones.
pub(crate) fn decide(live: &[View], ip: IpAddr, caps: &Caps) -> Admission {
    let grace = u64::try_from(caps.stall_grace.as_millis()).unwrap_or(u64::MAX);
    let mut victims: Vec<(u64, Cap)> = Vec::new();
    // The quietest stalled unauthenticated connection matching `filter`, not already chosen.
    let quietest = |victims: &[(u64, Cap)], filter: &dyn Fn(&View) -> bool| {
        live.iter()
            .filter(|v| !v.authenticated && v.quiet_ms >= grace && filter(v))
            .filter(|v| !victims.iter().any(|(id, _)| *id == v.id))
            .max_by_key(|v| (v.quiet_ms, std::cmp::Reverse(v.id)))
            .map(|v| v.id)
    };
    let same_address = live
        .iter()
        .filter(|v| !v.authenticated && v.ip == ip)
        .count();
    if same_address >= caps.max_unauthenticated_per_address {
        match quietest(&victims, &|v| v.ip == ip) {
            Some(id) => victims.push((id, Cap::PerAddress)),
            None => return Admission::Refuse(Cap::PerAddress),
        }
    }
    if live.len() - victims.len() >= caps.max_connections {
        match quietest(&victims, &|_| true) {
            Some(id) => victims.push((id, Cap::Total)),
            None => return Admission::Refuse(Cap::Total),
        }
    }
    Admission::Admit(victims)
}

/// A live connection's shared state: written by its I/O and its requests, read by the tracker.
#[derive(Debug)]
pub(crate) struct ConnState {
    pub id: u64,
    pub ip: IpAddr,
    epoch: Instant,
    /// Milliseconds since `epoch` of the last byte received.
    last_read_ms: AtomicU64,
    /// Milliseconds since `epoch` + 1 of the first byte of the current request; 0 between requests.
    request_began: AtomicU64,
    authenticated: AtomicBool,
    /// Notified when the tracker closes this connection to make room.
    evicted: Notify,
}

impl ConnState {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn touch(&self, request_bytes: bool) {
        let now = self.now_ms();
        self.last_read_ms.store(now, Ordering::Relaxed);
        if request_bytes {
            let _ = self.request_began.compare_exchange(
                0,
                now + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    /// The connection proved who it is (valid client certificate, or a successful enrollment):
    /// it no longer counts against its address's cap and is never closed to make room.
    pub fn set_authenticated(&self) {
        self.authenticated.store(true, Ordering::Relaxed);
    }

    pub fn is_authenticated(&self) -> bool {
        self.authenticated.load(Ordering::Relaxed)
    }

    /// When the current request's first byte arrived (now if none was seen, e.g. pipelined).
    pub fn request_began(&self) -> Instant {
        match self.request_began.load(Ordering::Relaxed) {
            0 => Instant::now(),
            ms => self.epoch + Duration::from_millis(ms - 1),
        }
    }

    /// The request is answered; the next byte starts the next one.
    pub fn request_done(&self) {
        self.request_began.store(0, Ordering::Relaxed);
    }

    /// The instant by which a request in progress must be finished whatever it is doing, if one
    /// is in progress: `backstop` after its first byte.
    pub fn backstop_deadline(&self, backstop: Duration) -> Option<Instant> {
        match self.request_began.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(self.epoch + Duration::from_millis(ms - 1) + backstop),
        }
    }

    /// Completes when the tracker closes this connection to make room.
    pub async fn evicted(&self) {
        self.evicted.notified().await;
    }

    fn view(&self, now_ms: u64) -> View {
        View {
            id: self.id,
            ip: self.ip,
            authenticated: self.is_authenticated(),
            quiet_ms: now_ms.saturating_sub(self.last_read_ms.load(Ordering::Relaxed)),
        }
    }
}

/// The registry of live connections.
#[derive(Debug)]
pub(crate) struct Tracker {
    caps: Caps,
    epoch: Instant,
    next_id: AtomicU64,
    live: Mutex<HashMap<u64, Arc<ConnState>>>,
    /// When a cap was last reported in the log (ms since `epoch` + 1), so a flood logs a line every
    /// ten seconds, not one per connection.
    last_warned: AtomicU64,
}

/// A registered connection; dropping it unregisters.
#[derive(Debug)]
pub(crate) struct Registered {
    pub state: Arc<ConnState>,
    tracker: Arc<Tracker>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.tracker.lock().remove(&self.state.id);
    }
}

impl Tracker {
    pub fn new(caps: Caps) -> Arc<Tracker> {
        Arc::new(Tracker {
            caps,
            epoch: Instant::now(),
            next_id: AtomicU64::new(1),
            live: Mutex::new(HashMap::new()),
            last_warned: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<ConnState>>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a new connection from `ip`, closing stalled unauthenticated ones to make room;
    /// `Err` names the cap when it must be refused.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Registered, Cap> {
        let now_ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let mut live = self.lock();
        let views: Vec<View> = live.values().map(|c| c.view(now_ms)).collect();
        let victims = match decide(&views, ip, &self.caps) {
            Admission::Admit(victims) => victims,
            Admission::Refuse(cap) => {
                drop(live);
                self.report(now_ms, || {
                    tracing::warn!(%ip, cap = %cap, "a connection cap is reached and every connection is busy or authenticated: refusing new connections (raise the cap if these are real clients)");
                });
                return Err(cap);
            }
        };
        for (id, cap) in &victims {
            if let Some(victim) = live.remove(id) {
                tracing::debug!(victim = %victim.ip, new = %ip, cap = %cap, "closing a stalled unauthenticated connection to make room");
                victim.evicted.notify_one();
            }
        }
        let state = Arc::new(ConnState {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            ip,
            epoch: self.epoch,
            last_read_ms: AtomicU64::new(now_ms),
            request_began: AtomicU64::new(0),
            authenticated: AtomicBool::new(false),
            evicted: Notify::new(),
        });
        live.insert(state.id, state.clone());
        drop(live);
        if let Some((_, cap)) = victims.first() {
            self.report(now_ms, || {
                tracing::warn!(cap = %cap, "a connection cap is reached: closing the stalled unauthenticated connections that were quiet the longest to let new ones in");
            });
        }
        Ok(Registered {
            state,
            tracker: self.clone(),
        })
    }

    fn report(&self, now_ms: u64, log: impl FnOnce()) {
        let last = self.last_warned.load(Ordering::Relaxed);
        if last == 0 || now_ms + 1 >= last + 10_000 {
            self.last_warned.store(now_ms + 1, Ordering::Relaxed);
            log();
        }
    }
}

/// A byte stream that records on its connection's state when bytes arrive. Below TLS it measures
/// quiet time (handshake bytes count); above TLS (`request_bytes`) it also starts a request's clock.
#[derive(Debug)]
pub(crate) struct Tracked<T> {
    inner: T,
    state: Arc<ConnState>,
    request_bytes: bool,
}

impl<T> Tracked<T> {
    pub fn new(inner: T, state: Arc<ConnState>, request_bytes: bool) -> Self {
        Tracked {
            inner,
            state,
            request_bytes,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.state.touch(self.request_bytes);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    fn v(id: u64, ip: IpAddr, authenticated: bool, quiet_ms: u64) -> View {
        View {
            id,
            ip,
            authenticated,
            quiet_ms,
        }
    }

    #[test]
    fn admission() {
        let caps = Caps {
            max_connections: 4,
            max_unauthenticated_per_address: 2,
            stall_grace: Duration::from_millis(1000),
        };
        use Admission::*;
        let cases: &[(&str, Vec<View>, IpAddr, Admission)] = &[
            ("empty", vec![], A, Admit(vec![])),
            (
                "under both caps",
                vec![v(1, A, false, 5000)],
                A,
                Admit(vec![]),
            ),
            (
                "a site's sensors from one address are not counted per address",
                vec![v(1, A, true, 0), v(2, A, true, 0), v(3, A, false, 0)],
                A,
                Admit(vec![]),
            ),
            (
                "per address: the quietest stalled one of that address goes",
                vec![
                    v(1, A, false, 2000),
                    v(2, A, false, 9000),
                    v(3, B, false, 99_000),
                ],
                A,
                Admit(vec![(2, Cap::PerAddress)]),
            ),
            (
                "per address: nothing stalled yet, so the new one is refused",
                vec![v(1, A, false, 999), v(2, A, false, 10)],
                A,
                Refuse(Cap::PerAddress),
            ),
            (
                "per address: another address is not affected",
                vec![v(1, A, false, 0), v(2, A, false, 0)],
                B,
                Admit(vec![]),
            ),
            (
                "total: the quietest stalled unauthenticated anywhere goes",
                vec![
                    v(1, A, true, 90_000),
                    v(2, B, false, 3000),
                    v(3, A, false, 4000),
                    v(4, B, true, 0),
                ],
                B,
                Admit(vec![(3, Cap::Total)]),
            ),
            (
                "total: authenticated connections are never closed to make room",
                vec![
                    v(1, A, true, 90_000),
                    v(2, A, true, 90_000),
                    v(3, B, true, 90_000),
                    v(4, B, true, 0),
                ],
                B,
                Refuse(Cap::Total),
            ),
            (
                "both caps: one eviction from the address satisfies both",
                vec![
                    v(1, A, false, 5000),
                    v(2, A, false, 6000),
                    v(3, B, true, 0),
                    v(4, B, true, 0),
                ],
                A,
                Admit(vec![(2, Cap::PerAddress)]),
            ),
            (
                "equally quiet: the older connection goes",
                vec![v(7, A, false, 5000), v(3, A, false, 5000)],
                A,
                Admit(vec![(3, Cap::PerAddress)]),
            ),
        ];
        for (what, live, ip, want) in cases {
            assert_eq!(&decide(live, *ip, &caps), want, "{what}");
        }
    }

    #[test]
    fn tracker_evicts_and_unregisters() {
        let tracker = Tracker::new(Caps {
            max_connections: 2,
            max_unauthenticated_per_address: 10,
            stall_grace: Duration::ZERO,
        });
        let first = tracker.admit(A).unwrap();
        let second = tracker.admit(B).unwrap();
        second.state.set_authenticated();
        let third = tracker.admit(A).unwrap();
        // The first was closed to make room: its eviction is signalled.
        let evicted = first.state.clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(5), evicted.evicted())
                .await
                .expect("eviction signalled");
        });
        third.state.set_authenticated();
        assert_eq!(tracker.admit(B).unwrap_err(), Cap::Total);
        drop(third);
        drop(first);
        assert!(tracker.admit(B).is_ok());
    }
}
