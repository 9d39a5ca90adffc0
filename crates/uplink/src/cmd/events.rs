//! `uplink events`.

use std::io::Write;
use std::process::ExitCode;

use uplink_store::ExportFilter;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Write a workspace's stored events to stdout as NDJSON, ordered by sensor and sequence.
    ///
    /// Each line is {"sensor_id", "seq", "kind", "received_at", "event"} where "event" is the
    /// object the sensor sent. With (sensor_id, seq) on every line, a script can prove that
    /// nothing was lost or stored twice.
    ///
    /// Exit status: 0 when every stored event was written; 1 on any error — including a store
    /// whose pages cannot be read, or fewer events read than the store counts (damage): what
    /// could be read is still written, and the error names how many.
    #[command(
        after_help = "Examples:\n  uplink events export contoso --data-dir /var/lib/uplink-service > contoso.ndjson\n  \
uplink events export contoso --data-dir /var/lib/uplink-service --kind heartbeat | jq .sensor_id"
    )]
    Export(ExportArgs),
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The workspace name.
    pub name: String,
    #[command(flatten)]
    pub data: super::DataDir,
    /// Only events of this kind (e.g. heartbeat).
    #[arg(long)]
    pub kind: Option<String>,
    /// Only events from this sensor id.
    #[arg(long, value_name = "ID")]
    pub sensor: Option<String>,
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    let Command::Export(a) = command;
    super::backend::runtime()?.block_on(export(a))
}

async fn export(a: ExportArgs) -> anyhow::Result<ExitCode> {
    let store = a.data.open(false).await?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let filter = ExportFilter {
        kind: a.kind,
        sensor_id: a.sensor,
    };
    let name = a.name.to_ascii_lowercase();
    let result = uplink_store::export_each(&store, &name, filter, |e| {
        // The same line as the console's NDJSON download.
        writeln!(out, "{}", uplink_console::events::ndjson_line(&e))
    })
    .await;
    match result {
        Ok(_) => {
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        // A closed pipe (`| head`) is not an error worth a message.
        Err(uplink_store::StoreError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            // What could be read is out; the error (and exit 1) says it is not everything.
            let _ = out.flush();
            Err(e.into())
        }
    }
}
