//! Allow-lists for the firewalls and proxies between a sensor and its service.
//!
//! The seeds tell administrators to allow per-workspace host names, per-region hosts, CRL and
//! PKI URLs, or the IP ranges of a service tag, and to "periodically check that the configured
//! IP addresses are still up-to-date". This crate turns that advice into artefacts a machine can
//! load and a cron job can check:
//!
//! - [`catalog`]: the versioned endpoint catalogs in `catalog/*.toml` (our own service, Defender
//!   for Identity, Defender for Endpoint), every entry citing its source, and the query that
//!   picks the endpoints for a workspace, cloud, region and connectivity variant;
//! - [`squid`], [`pac`], [`text`]: those endpoints as Squid ACLs, a PAC file, plain lines,
//!   JSON or CSV;
//! - [`servicetags`] and [`cidr`]: Microsoft's service-tags JSON, one tag's prefixes, strictly
//!   validated and optionally aggregated to the minimal CIDR set;
//! - [`firewall`]: those prefixes as an nftables set or iptables-restore rules;
//! - [`drift`]: what changed in a tag between two downloads.
//!
//! Everything here is pure: functions from bytes or values to values or strings. Reading files,
//! choosing exit codes and printing belong to the `uplink` binary. Nothing in this crate (or
//! its tests) contacts any host it lists.

pub mod catalog;
pub mod cidr;
pub mod drift;
pub mod firewall;
pub mod pac;
pub mod servicetags;
pub mod squid;
pub mod text;
