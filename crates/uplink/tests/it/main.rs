//! The binary's integration tests, one test binary with a module per area (as ripgrep does):
//! the harness (`support`) and the whole tree are compiled and linked once, not once per file.
//! Run one area with a filter: `cargo test -p uplink --test it proxy::`.

mod support;

mod adminapi;
mod allowlist;
mod backup_fleet_state;
mod check;
mod console;
mod delivery;
mod docs;
mod faults;
mod fleet;
mod hardening_queue;
mod hardening_route;
mod hardening_store;
mod hardening_svc;
mod install;
mod journal;
mod lifecycle;
mod memtrim;
mod pac;
mod package;
mod package_systemd;
mod pipeline;
mod policy;
mod postgres;
mod proxy;
mod proxyauth;
mod reload;
mod renew;
mod replicas;
mod retention;
mod retention_holes;
mod route;
mod sensor;
mod service;
mod sources;
mod sources_json;
mod tail_rotation;
mod winproxy;
mod wpad;
mod wpad_dhcp;
