//! PAC (proxy auto-config): evaluate a PAC script in a sandbox and parse what it returns.
//!
//! uplink must follow the proxy choice an enterprise publishes as a PAC file, as browsers do:
//! `FindProxyForURL(url, host)` runs in an embedded JavaScript engine (QuickJS) with a wall-clock
//! limit per evaluation, a memory limit and no I/O except the Netscape helpers and Microsoft's IPv6
//! extensions. DNS helpers go through a [`Resolver`] with its own timeout and a per-evaluation
//! cache; the date helpers through a [`Clock`] that tests and `uplink proxy pac --now` can fix.
//!
//! - [`Pac::compile`] parses and loads a script once; [`Pac::find_proxy`] evaluates per request.
//! - [`parse_pac_result`] turns the returned string into [`PacProxy`] entries (Chromium's rules).
//! - [`PacCache`] keeps compiled scripts by source, and [`fetch`] gets PAC files over HTTP with
//!   their caching headers turned into a bounded refresh interval.
//!
//! What this crate does not do: choose among the entries or retry bad proxies (the proxy engine
//! does), or discover the PAC URL (WPAD).

#![forbid(unsafe_code)]

#[cfg(feature = "engine")]
mod cache;
mod dns;
#[cfg(feature = "engine")]
mod engine;
pub mod fetch;
#[cfg(feature = "engine")]
mod helpers;
mod result;
pub mod source;
mod url;

#[cfg(feature = "engine")]
pub use cache::PacCache;
pub use dns::{parse_resolve_arg, DnsError, FixedResolver, Resolver, SystemResolver};
#[cfg(feature = "engine")]
pub use engine::{Clock, EvalOptions, Limits, Pac, PacError};
pub use result::{
    parse_pac_result, parse_pac_result_strict, to_pac_string, HostPort, PacProxy, ParsedPacResult,
};
pub use url::{host_for_pac, url_for_pac};

#[cfg(all(test, feature = "engine"))]
mod tests;
