//! The route to the service, for the sensor and the analyzer alike.
//!
//! - [`sources`]: the ordered route computed from the settings, the PAC script ([`pac`]), WPAD
//!   discovery ([`wpad`]), the environment and (when walking) the bad-proxy cache — the proxy
//!   engine (`uplink-proxy`) decides, this crate does the I/O it needs first;
//! - [`decide`]: the walk's decisions, pure and table-tested: how long a candidate's connect may
//!   take, whether a failure moves on to the next candidate, what a failure was;
//! - [`tunnel`]: one candidate's tunnel (CONNECT, TLS to an HTTPS proxy, SOCKS5, with
//!   authentication through `uplink-tunnel`), the same code for the sensor and the analyzer;
//! - [`walk`]: the sensor's walk (per candidate: a bounded connect, the tunnel, then TLS to the
//!   workspace through `uplink-client`), reporting each attempt. The analyzer (`uplink-check`)
//!   walks the same candidates with the same decisions and the same tunnel, recording every step
//!   of every attempt.
//!
//! Errors are typed and carry their code: `PAC_FETCH_FAILED`, `PAC_SCRIPT_ERROR`, `PAC_TIMEOUT`,
//! `WPAD_NOT_FOUND` for the sources, the tunnel's and the client's codes for the walk.

pub mod decide;
pub mod pac;
pub mod sources;
pub mod tunnel;
pub mod walk;
pub mod wpad;

pub use decide::{connect_budget, Attempt};
pub use pac::SourceError;
pub use walk::{connect_route, Connected, LinkError};
