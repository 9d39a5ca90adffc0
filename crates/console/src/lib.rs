//! The web console on a workspace's console host, `https://<workspace>.<domain>/` (issue #25,
//! docs/console.md).
//!
//! This crate is the console's pure part: the pages as HTML (maud, compiled in), the static
//! assets (CSS and a small script, served as files so the Content-Security-Policy needs no
//! `unsafe-inline`), sessions and their expiry, CSRF tokens, login throttling, password hashing
//! (Argon2id), form and query parsing, the sensors table's filtering, sorting, columns, pages and
//! CSV. The service (`uplink-service`, `console.rs`) owns the sockets: it reads the request,
//! calls the store through the same functions the admin API uses, and hands the results here to
//! be rendered. Every piece of state (users, sessions, failures) is in the store, so any replica
//! serves any browser.
//!
//! What it does not do: read the store, the clock or the environment (callers pass `now_ms`).

pub mod assets;
pub mod chart;
pub mod check;
pub mod deploy;
pub mod events;
pub mod form;
pub mod pages;
pub mod password;
pub mod route;
pub mod sensors;
pub mod session;
pub mod throttle;

/// The Content-Security-Policy of every console answer: only this origin's script and styles,
/// no inline code, no framing, forms post only here.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The console's settings (the service's flags; tests shorten them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub expiry: session::Expiry,
    /// The first wait after [`throttle::FREE_FAILURES`] failed sign-ins.
    pub throttle_base_ms: i64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            expiry: session::Expiry::default(),
            throttle_base_ms: throttle::DEFAULT_BASE_MS,
        }
    }
}
