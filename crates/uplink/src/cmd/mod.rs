//! Subcommand implementations.

pub mod allowlist;
mod backend;
pub mod check;
pub mod events;
pub mod fleet;
pub mod proxy;
pub mod proxy_pac;
pub mod quickstart;
pub mod sensor;
pub mod service;
pub mod store;
pub mod winproxy;
pub mod workspace;

use std::path::PathBuf;

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
