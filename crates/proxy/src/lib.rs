//! The proxy engine: where proxy settings come from, which applies, and the ordered route to a
//! destination, explained.
//!
//! - [`settings`]: the model stored in the sensor's configuration, modes and precedence, fallback
//!   policy, and [`settings::explain`] (pure) which gives the route and why;
//! - [`noproxy`]: NO_PROXY lists with curl's semantics; [`bypass`]: WinINet bypass lists;
//! - [`env`]: proxy variables captured from an environment the caller passes in;
//! - [`badcache`]: proxies that failed are skipped for a bounded, growing time;
//! - [`trust`]: which credentials a proxy may receive, and whether its refusal ends the route,
//!   by where it came from (an administrator, or discovery: WPAD, a PAC over plain http://);
//! - [`view`]: an explanation as `proxy explain` prints it (JSON and text), the route on a line.
//!
//! Deliberately not here: sockets (the sensor's `link` module dials the route), PAC evaluation
//! and WPAD discovery (their own crates; they return candidate lists that slot into `explain`).

pub mod badcache;
pub mod bypass;
pub mod env;
pub mod noproxy;
pub mod settings;
pub mod trust;
pub mod view;

pub use settings::{
    explain, explain_with, Candidate, Explanation, Fallback, Inputs, Mode, PacEntry, PacOutcome,
    Problem, ProxySettings, SourceReport, WpadOutcome,
};
