//! `uplink`: one binary, many subcommands. This crate only wires the library crates together:
//! argument parsing, output formatting and exit codes live here; behaviour lives in the crates.

mod cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Get a sensor's data to its cloud service through real corporate networks.
///
/// uplink is the service (mutual-TLS sensor API, enrollment, storage), the sensor, and the tools
/// an administrator needs to make them talk through proxies and firewalls.
///
/// Exit codes: 0 success; 1 the operation failed (the message says what and what to do);
/// 2 bad usage.
#[derive(Debug, Parser)]
#[command(
    name = "uplink",
    version,
    propagate_version = true,
    max_term_width = 100
)]
struct Cli {
    /// Log verbosity on stderr: error, warn, info, debug or trace.
    #[arg(long, global = true, value_name = "LEVEL")]
    log_level: Option<String>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = cmd::LogFormat::Text)]
    log_format: cmd::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole system once on this machine: a workspace, the service, an enrolled client and
    /// its events, then a summary. Needs nothing but this binary.
    Quickstart(cmd::quickstart::Args),
    /// Run the cloud service: the sensor API of every workspace in a data directory, on one port.
    Service(cmd::service::Args),
    /// Create, inspect, configure and delete workspaces.
    #[command(subcommand)]
    Workspace(cmd::workspace::Command),
    /// The sensor: install, queue events, upload them, show status.
    #[command(subcommand)]
    Sensor(cmd::sensor::Command),
    /// Proxy routes: how this machine reaches a URL, and why.
    #[command(subcommand)]
    Proxy(cmd::proxy::Command),
    /// Windows proxy settings: decode, encode and copy WinINet/WinHTTP values and .reg files.
    #[command(subcommand)]
    Winproxy(cmd::winproxy::Command),
    /// Allow-lists for firewalls and proxies, from endpoint catalogs and service tags.
    #[command(subcommand)]
    Allowlist(cmd::allowlist::Command),
    /// Test every route to a service step by step (DNS, TCP, proxy, TLS, client certificate,
    /// HTTP) and name the failing step with a fix: the connectivity analyzer.
    Check(Box<cmd::check::Args>),
    /// Read the events a workspace has stored.
    #[command(subcommand)]
    Events(cmd::events::Command),
    /// The store as a whole: its master key, copies (migrate, backup, restore), retention (prune).
    #[command(subcommand)]
    Store(cmd::store::Command),
    /// Fleet health: each sensor's state and health, and the issues the service opened.
    #[command(subcommand)]
    Fleet(cmd::fleet::Command),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Service(_) | Command::Sensor(cmd::sensor::Command::Run(_)) => "info",
        _ => "warn",
    };
    cmd::init_logging(
        cli.log_level.as_deref().unwrap_or(default_level),
        cli.log_format,
    );
    let result = match cli.command {
        Command::Quickstart(args) => cmd::quickstart::run(args),
        Command::Service(args) => cmd::service::run(args),
        Command::Workspace(c) => cmd::workspace::run(c),
        Command::Events(c) => cmd::events::run(c),
        Command::Store(c) => cmd::store::run(c),
        Command::Fleet(c) => cmd::fleet::run(c),
        Command::Sensor(c) => cmd::sensor::run(c),
        Command::Proxy(c) => cmd::proxy::run(c),
        Command::Winproxy(c) => cmd::winproxy::run(c),
        Command::Allowlist(c) => cmd::allowlist::run(c),
        Command::Check(a) => cmd::check::run(*a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
