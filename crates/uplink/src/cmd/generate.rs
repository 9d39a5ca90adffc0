//! `uplink generate --out DIR`: man pages and shell completions written from the CLI definition
//! itself, so they cannot drift from the flags a build has. Hidden: packaging/build-deb.sh runs
//! it on the binary it packages (a build script could not see the clap types of the binary crate
//! without moving them into a library; the binary it ships is also what documents itself).
//!
//! Writes `DIR/man/uplink.1`, one `uplink-SUB[-SUB].1` per subcommand (as git does), and
//! `DIR/completions/` for bash (`uplink`), zsh (`_uplink`) and fish (`uplink.fish`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

/// Write man pages and shell completions for this build.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  uplink generate --out target/generated")]
pub struct Args {
    /// Directory to write `man/` and `completions/` into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

pub fn run(args: Args, cli: clap::Command) -> anyhow::Result<ExitCode> {
    // Completions from the definition as written (clap adds --help and --version at build).
    let mut visible = without_hidden_subcommands(&cli);
    let mut cli = cli;
    cli.build();
    let man = args.out.join("man");
    let completions = args.out.join("completions");
    for dir in [&man, &completions] {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut pages = 0;
    write_pages(&cli, "uplink", &man, &mut pages)?;
    for (shell, file) in [
        (clap_complete::Shell::Bash, "uplink"),
        (clap_complete::Shell::Zsh, "_uplink"),
        (clap_complete::Shell::Fish, "uplink.fish"),
    ] {
        let mut text = Vec::new();
        clap_complete::generate(shell, &mut visible, "uplink", &mut text);
        write(&completions.join(file), &text)?;
    }
    println!(
        "wrote {pages} man pages to {} and completions to {}",
        man.display(),
        completions.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The root command with its hidden subcommands left out: clap_complete offers hidden
/// subcommands (this one) in bash, zsh and fish; clap_mangen already skips them. Clap has no way
/// to remove a subcommand, so the root is rebuilt from its parts.
fn without_hidden_subcommands(cli: &clap::Command) -> clap::Command {
    let mut root = clap::Command::new("uplink")
        .version(env!("CARGO_PKG_VERSION"))
        .propagate_version(cli.is_propagate_version_set())
        .subcommand_required(cli.is_subcommand_required_set());
    for arg in cli.get_arguments().filter(|a| !a.is_hide_set()) {
        root = root.arg(arg.clone());
    }
    for sub in cli.get_subcommands().filter(|s| !s.is_hide_set()) {
        root = root.subcommand(sub.clone());
    }
    root
}

/// `cmd`'s page as `name.1`, then its visible subcommands' pages, recursively.
fn write_pages(
    cmd: &clap::Command,
    name: &str,
    dir: &Path,
    pages: &mut usize,
) -> anyhow::Result<()> {
    // The page's title; its usage line is the bin name clap gave it ("uplink sensor install").
    let page = cmd.clone().display_name(name.to_owned());
    let mut text = Vec::new();
    clap_mangen::Man::new(page)
        .render(&mut text)
        .with_context(|| format!("cannot render the man page of {name}"))?;
    write(&dir.join(format!("{name}.1")), &text)?;
    *pages += 1;
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        write_pages(sub, &format!("{name}-{}", sub.get_name()), dir, pages)?;
    }
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}
