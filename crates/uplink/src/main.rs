//! `uplink`: one binary, many subcommands. This crate only wires the library crates together:
//! argument parsing, output formatting and exit codes live here; behaviour lives in the crates.

mod cmd;
mod idle;

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
    #[arg(
        long,
        global = true,
        value_name = "LEVEL",
        help_heading = "Common options"
    )]
    log_level: Option<String>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = cmd::LogFormat::Text, help_heading = "Common options")]
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
    /// Write man pages and shell completions for this build (used by packaging/build-deb.sh).
    #[command(hide = true)]
    Generate(cmd::generate::Args),
    /// The admin API's tokens (docs/admin-api.md) and the web console's accounts (docs/console.md).
    #[command(subcommand)]
    Admin(cmd::admin::Command),
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
        Command::Admin(c) => cmd::admin::run(c),
        Command::Sensor(c) => cmd::sensor::run(c),
        Command::Proxy(c) => cmd::proxy::run(c),
        Command::Winproxy(c) => cmd::winproxy::run(c),
        Command::Allowlist(c) => cmd::allowlist::run(c),
        Command::Check(a) => cmd::check::run(*a),
        Command::Generate(a) => cmd::generate::run(a, <Cli as clap::CommandFactory>::command()),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            cmd::exit_code(&e)
        }
    }
}

#[cfg(test)]
mod doccmds;

#[cfg(test)]
mod tests {
    use super::doccmds::{doc_commands, uplink_words};
    use super::Cli;
    use clap::{CommandFactory, Parser};

    /// The `Examples:` lines of a command's help (each starts with `uplink `).
    fn examples(cmd: &clap::Command) -> Vec<String> {
        let text = cmd
            .get_after_long_help()
            .or(cmd.get_after_help())
            .map(|t| t.to_string())
            .unwrap_or_default();
        let mut out: Vec<String> = Vec::new();
        let mut continued = false;
        for line in text
            .lines()
            .skip_while(|l| !l.trim_start().starts_with("Example"))
            .skip(1)
        {
            let l = line.trim();
            if continued {
                if let Some(last) = out.last_mut() {
                    last.push(' ');
                    last.push_str(l.trim_end_matches('\\').trim());
                }
            } else if l.contains("uplink ") {
                out.push(l.trim_end_matches('\\').trim().to_owned());
            }
            continued = l.ends_with('\\');
        }
        out
    }

    /// The example section's lines as written (for the wrapping check).
    fn examples_raw(cmd: &clap::Command) -> Vec<String> {
        let text = cmd
            .get_after_long_help()
            .or(cmd.get_after_help())
            .map(|t| t.to_string())
            .unwrap_or_default();
        text.lines()
            .skip_while(|l| !l.trim_start().starts_with("Example"))
            .skip(1)
            .filter(|l| {
                let t = l.trim();
                t.starts_with("uplink ") || t.contains(" uplink ") || t.starts_with("--")
            })
            .map(str::to_owned)
            .collect()
    }

    fn leaves(cmd: &clap::Command, path: &str, out: &mut Vec<(String, clap::Command)>) {
        let subs: Vec<_> = cmd
            .get_subcommands()
            .filter(|c| c.get_name() != "help")
            .collect();
        if subs.is_empty() {
            out.push((path.to_owned(), cmd.clone()));
        }
        for c in subs {
            leaves(c, &format!("{path} {}", c.get_name()), out);
        }
    }

    /// Every command's --help shows at least one example; each parses as written (split as a
    /// shell splits it, up to a pipe or redirection), and is short enough that --help does not
    /// wrap it mid-argument.
    #[test]
    fn every_command_has_examples_that_parse_as_written() {
        let mut all = Vec::new();
        leaves(&Cli::command(), "uplink", &mut all);
        let mut problems = Vec::new();
        for (path, cmd) in &all {
            let ex = examples(cmd);
            let ex: Vec<String> = ex;
            if ex.is_empty() {
                problems.push(format!("{path}: no example"));
            }
            let help = cmd.clone().render_long_help().to_string();
            for line in ex {
                let Some(args) = uplink_words(&line) else {
                    continue;
                };
                if let Err(e) = Cli::try_parse_from(&args) {
                    problems.push(format!("{path}: {line}: {}", e.kind()));
                }
            }
            // Printed as written: no example line wrapped by --help.
            for line in examples_raw(cmd) {
                if !help.lines().any(|h| h.trim_end() == line.trim_end()) {
                    problems.push(format!("{path}: --help wraps this line: {line}"));
                }
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    /// Every `uplink` command in README.md and docs/*.md parses with this build's flags: a
    /// renamed flag or a value the docs spell differently fails here. (The integration test
    /// `docs::` runs the ones that need no service.)
    #[test]
    fn every_documented_command_parses() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
        let mut files = vec![std::path::PathBuf::from(format!("{root}/README.md"))];
        for e in std::fs::read_dir(format!("{root}/docs")).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "md") {
                files.push(p);
            }
        }
        let mut problems = Vec::new();
        let mut seen = 0;
        for f in &files {
            let text = std::fs::read_to_string(f).unwrap();
            for cmd in doc_commands(&text) {
                let cmd = cmd.split(" # ").next().unwrap_or(&cmd).trim().to_owned();
                let Some(args) = uplink_words(&cmd) else {
                    continue;
                };
                seen += 1;
                if let Err(e) = Cli::try_parse_from(&args) {
                    let msg = e.to_string();
                    let first = msg.lines().next().unwrap_or_default();
                    problems.push(format!("{}: {cmd}: {first}", f.display()));
                }
            }
        }
        assert!(
            seen > 20,
            "only {seen} documented commands found: the extraction broke"
        );
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    /// Every flag and argument of every command says what it is in --help.
    #[test]
    fn every_argument_has_a_description() {
        let mut all = Vec::new();
        leaves(&Cli::command(), "uplink", &mut all);
        let mut missing = Vec::new();
        for (path, cmd) in &all {
            for arg in cmd.get_arguments() {
                if arg.is_hide_set() || ["help", "version"].contains(&arg.get_id().as_str()) {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path}: {}", arg.get_id()));
                }
            }
        }
        assert!(missing.is_empty(), "no description: {missing:#?}");
    }
}
