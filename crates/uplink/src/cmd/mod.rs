//! Subcommand implementations.

pub mod admin;
pub mod allowlist;
mod backend;
pub mod check;
pub mod events;
pub mod fleet;
pub mod generate;
pub mod proxy;
pub mod proxy_pac;
pub mod quickstart;
pub mod sensor;
pub mod service;
pub mod store;
pub mod winproxy;
pub mod workspace;

use std::path::PathBuf;

/// A malformed argument found after clap parsed the line (a URL without a scheme, flags that
/// contradict each other): printed as `error: MESSAGE` with where to read more, and the exit
/// status is 2, as for clap's own usage errors. Everything else that fails exits 1.
#[derive(Debug)]
pub struct UsageError {
    pub message: String,
    /// The command whose `--help` explains the argument, e.g. `uplink check`.
    pub command: &'static str,
}

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}\n(see {} --help)", self.message, self.command)
    }
}

impl std::error::Error for UsageError {}

/// A [`UsageError`] for `command`.
pub fn usage(command: &'static str, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError {
        message: message.into(),
        command,
    })
}

/// The exit status for an error: 2 for bad usage, else 1.
pub fn exit_code(e: &anyhow::Error) -> std::process::ExitCode {
    if e.downcast_ref::<UsageError>().is_some() {
        std::process::ExitCode::from(2)
    } else {
        std::process::ExitCode::FAILURE
    }
}

/// `1 event`, `2 events`: a count with its noun, for messages people read.
pub fn count(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// A duration on the command line, one syntax for every command: a number of seconds (`5`,
/// `2.5`) or a number with a unit (`500ms`, `30s`, `2m`, `1h`, `1d`). Zero is refused. (Workspace
/// settings, stored for the whole fleet, take a unit always: `retention::parse_duration_secs`.)
pub fn duration(s: &str) -> Result<std::time::Duration, String> {
    use std::time::Duration;
    let bad = || {
        format!("{s:?} is not a duration: write seconds (5, 2.5) or a number with a unit (500ms, 30s, 2m, 1h, 1d)")
    };
    let t = s.trim();
    let unit_at = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let n: f64 = t[..unit_at].parse().map_err(|_| bad())?;
    let secs = match &t[unit_at..] {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86_400.0,
        _ => return Err(bad()),
    };
    if !secs.is_finite() || secs > 365.0 * 86_400.0 {
        return Err(format!("{s} is too long: give at most a year"));
    }
    let d = Duration::from_secs_f64(secs);
    if d.is_zero() {
        return Err(format!("{s} must be more than zero"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn counts() {
        assert_eq!(super::count(0, "event", "events"), "0 events");
        assert_eq!(super::count(1, "sensor", "sensors"), "1 sensor");
        assert_eq!(super::count(2, "batch", "batches"), "2 batches");
    }

    #[test]
    fn durations() {
        let ok = [
            ("5", Duration::from_secs(5)),
            ("2.5", Duration::from_millis(2500)),
            ("500ms", Duration::from_millis(500)),
            ("30s", Duration::from_secs(30)),
            ("2m", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3600)),
            ("2d", Duration::from_secs(2 * 86_400)),
            (" 7s ", Duration::from_secs(7)),
        ];
        for (s, want) in ok {
            assert_eq!(super::duration(s), Ok(want), "{s}");
        }
        for (s, want) in [
            ("0", "more than zero"),
            ("0ms", "more than zero"),
            ("", "not a duration"),
            ("5 s", "not a duration"),
            ("5w", "not a duration"),
            ("-1", "not a duration"),
            ("1.2.3", "not a duration"),
            ("99999999h", "too long"),
        ] {
            let e = super::duration(s).unwrap_err();
            assert!(e.contains(want), "{s}: {e}");
        }
    }
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

pub fn init_logging(level: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_new(level).unwrap_or_else(|_| {
        eprintln!("warning: log level {level:?} is not valid (use error, warn, info, debug or trace); using info");
        tracing_subscriber::EnvFilter::new("info")
    });
    use std::io::IsTerminal;
    // Colour only for a person at a terminal: journald, files and pipes get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Where the service's state lives, shared by the service and the admin commands: `--data-dir`
/// (the embedded SQLite store) or `--database` (PostgreSQL, shared by replicas). Exactly one.
#[derive(Debug, Clone, clap::Args)]
#[group(skip)]
#[command(group(clap::ArgGroup::new("store").required(true).multiple(false).args(["data_dir", "database"])))]
pub struct DataDir {
    /// The service's data directory: its SQLite store (uplink.db) and workspace bundles.
    #[arg(long, value_name = "DIR", env = "UPLINK_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// A PostgreSQL database instead of a data directory, e.g.
    /// postgres://uplink@/uplink?host=/run/postgresql (Unix socket) or
    /// postgres://uplink:PASSWORD@db.example:5432/uplink?sslmode=verify-full&sslrootcert=CA.pem
    /// (TLS: the server's certificate and name are always verified, against sslrootcert or the
    /// system's trust store). The schema is created or migrated at start. Prefer the
    /// environment variable for a URL with a password (it is never printed).
    #[arg(
        long,
        value_name = "URL",
        env = "UPLINK_DATABASE_URL",
        hide_env_values = true,
        requires = "master_key_file"
    )]
    pub database: Option<String>,
    /// The key that seals the workspaces' CA keys in the store (32 random bytes, hex, 0600).
    /// Default with --data-dir: DIR/master.key; required with --database. A path that does not
    /// exist yet is created, with a new key, by the first command given it for a store that has
    /// none; keep it (and a backup of it) with the service: without it the store is unusable.
    #[arg(long, value_name = "FILE", env = "UPLINK_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,
}
