//! `uplink proxy pac` and `uplink proxy wpad` (placeholders until the PAC/WPAD issue lands).

use std::process::ExitCode;

/// Arguments of `uplink proxy pac`.
#[derive(Debug, clap::Args)]
pub struct PacArgs {}

/// Arguments of `uplink proxy wpad`.
#[derive(Debug, clap::Args)]
pub struct WpadArgs {}

pub fn run_pac(_args: PacArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`uplink proxy pac` is not implemented yet")
}

pub fn run_wpad(_args: WpadArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`uplink proxy wpad` is not implemented yet")
}
