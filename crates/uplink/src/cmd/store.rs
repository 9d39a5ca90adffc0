//! `uplink store`: operations on the store as a whole.

use std::path::PathBuf;
use std::process::ExitCode;

use uplink_store::{MasterKeyFile, Store, StoreError};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Re-seal every secret of the store (workspace CA keys, access keys) under a new master key.
    ///
    /// Everything is re-sealed and the store switched to the new key in one transaction, so an
    /// interrupted run leaves the store whole under the old key; run it again. A run that finds
    /// the store already under the new key finishes what is left. FILE is created (0600) with a
    /// new key if it does not exist. With --data-dir and the default DIR/master.key, the new key
    /// then replaces DIR/master.key; otherwise point every service and command at FILE
    /// (--master-key-file or UPLINK_MASTER_KEY_FILE). Stop the services first, or restart them
    /// with the new key at once: a service holding the old key cannot read secrets sealed after.
    RotateMasterKey(RotateArgs),
}

#[derive(Debug, clap::Args)]
pub struct RotateArgs {
    #[command(flatten)]
    pub data: super::DataDir,
    /// The new master key (created if it does not exist).
    #[arg(long, value_name = "FILE")]
    pub new_key_file: PathBuf,
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    let Command::RotateMasterKey(a) = command;
    super::backend::runtime()?.block_on(rotate(a))
}

async fn rotate(a: RotateArgs) -> anyhow::Result<ExitCode> {
    let new_file = MasterKeyFile(a.new_key_file.clone());
    let current = a.data.key_file();
    if current.as_ref() == Some(&new_file) {
        anyhow::bail!(
            "--new-key-file is the key in force ({}): give a new file",
            a.new_key_file.display()
        );
    }
    let resealed = match a.data.open(false).await {
        Ok(store) => {
            let new = new_file.resolve(false)?;
            let n = store.rotate_master_key(new).await?;
            store.flush().await?;
            Some(n)
        }
        // A run that committed and was stopped before it finished: the store already has the
        // new key.
        Err(StoreError::MasterKeyWrong { .. }) if a.new_key_file.exists() => {
            a.data.open_with_key(false, Some(new_file.clone())).await?;
            None
        }
        Err(e) => return Err(e.into()),
    };
    match resealed {
        Some(n) => println!("re-sealed {n} secrets under {}", a.new_key_file.display()),
        None => println!(
            "the store is already under {}; finishing",
            a.new_key_file.display()
        ),
    }
    // With the data directory's default key, the new key takes its place.
    if let (Some(dir), None) = (a.data.dir(), &a.data.master_key_file) {
        let target = dir.join(uplink_store_sqlite::MASTER_KEY_FILE);
        replace_key_file(&a.new_key_file, &target)?;
        println!(
            "{} now holds the new key (the old key opens nothing any more)",
            target.display()
        );
    } else {
        println!(
            "now give every service and command --master-key-file {} (or UPLINK_MASTER_KEY_FILE), and restart the services",
            a.new_key_file.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Copies the key at `from` over `to` (0600, written beside and renamed into place).
fn replace_key_file(from: &std::path::Path, to: &std::path::Path) -> anyhow::Result<()> {
    let key = std::fs::read(from)?;
    let tmp = to.with_file_name(".master.key.new");
    uplink_service::admin::write_private(&tmp, &key)?;
    std::fs::rename(&tmp, to)?;
    if let Some(dir) = to.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}
