//! The connectivity analyzer behind `uplink check`.
//!
//! The seeds' analyzer tests every service URL several ways (default proxy, WPAD, proxy
//! disabled, named proxy, command-line proxy) and prints an HTTP status per way. uplink's says
//! *which step* of each way failed — DNS, TCP, proxy CONNECT, proxy authentication, TLS, the
//! client certificate, HTTP — with a stable [`uplink_diag::Code`] and a one-line fix.
//!
//! The crate has a pure part and a thin I/O part:
//!
//! - [`model`]: what to test — [`model::Target`]s (a URL, what status to expect, which CA or
//!   issuers to expect) and [`model::Method`]s; [`model::plan`] turns targets × methods into
//!   probes, asking a [`model::Routes`] for each method's route: [`routes::SourceRoutes`], which
//!   has the route layer (`uplink-route`) compute it from what the binary read (the sensor's
//!   settings, the environment, the command line), exactly as the sensor computes its own.
//! - [`plan`]: which targets and methods the command line asks for (a profile's endpoints from
//!   the catalog or the MDE table, each catalog entry once, a workspace URL, URLs, else the
//!   installed sensor), as [`plan::TargetSpec`]s whose trust anchor the binary loads.
//! - [`result`]: the results, serialisable to the `--format json` schema of issue #10.
//! - [`classify`]: I/O errors, resolver messages, rustls errors and presented chains → codes.
//! - [`render`]: the table and the classic `--report` text.
//! - [`redact`]: secrets out of anything that goes into a bundle.
//! - [`mde`]: the Defender for Endpoint analyzer's URL table with expected statuses.
//! - I/O: [`probe`] walks one route step by step; [`run`] runs probes concurrently, each under
//!   its own timeout; [`bundle`] writes the zip.
//!
//! It deliberately does not read the environment, the sensor's files or the system trust store:
//! the binary does, and hands typed values in (see `crates/uplink/src/cmd/check.rs`).

#![forbid(unsafe_code)]

pub mod bundle;
pub mod classify;
pub mod mde;
pub mod model;
pub mod plan;
pub mod probe;
pub mod redact;
pub mod render;
pub mod result;
pub mod routes;
pub mod run;
pub mod verifier;

pub use model::{plan, Anchor, Expect, HttpMethod, Method, Probe, RouteSpec, Routes, Target};
pub use result::{MethodResult, Report, StepResult, UrlResult};
