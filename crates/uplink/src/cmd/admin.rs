//! `uplink admin`: tokens for the admin JSON API (docs/admin-api.md). A token is shown once, at
//! creation; the store keeps only its SHA-256 (`uplink_store::tokens`). And the web console's
//! accounts (`admin user`, docs/console.md): the password is read from stdin or a prompt and
//! stored as its Argon2id hash (`uplink_console::password`).

use std::process::ExitCode;

use anyhow::bail;
use serde_json::json;
use uplink_store::{tokens, AdminToken, Store, TokenRole, TokenSecret};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Tokens of the admin API (`Authorization: Bearer TOKEN` on
    /// https://<workspace>.<domain>/api/v1/admin/…).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Accounts of the web console (https://<workspace>.<domain>/login).
    #[command(subcommand)]
    User(UserCommand),
}

#[derive(Debug, clap::Subcommand)]
pub enum UserCommand {
    /// Add a console account. The password is read from stdin (its first line) or, on a
    /// terminal, prompted for twice without echo; at least 12 characters. Stored as its
    /// Argon2id hash.
    #[command(
        after_help = "Examples:\n  uplink admin user add contoso alice --role admin --data-dir /var/lib/uplink\n  printf '%s\\n' \"$PASS\" | uplink admin user add contoso soc --role viewer --data-dir /var/lib/uplink"
    )]
    Add(UserAddArgs),
    /// A workspace's console accounts (never their passwords). --json prints
    /// {"users":[{"name","role","created_at"}]}.
    #[command(
        after_help = "Examples:\n  uplink admin user list contoso --data-dir /var/lib/uplink\n  uplink admin user list contoso --json --data-dir /var/lib/uplink"
    )]
    List(ListArgs),
    /// Remove a console account; its sessions end at once.
    #[command(
        after_help = "Examples:\n  uplink admin user remove contoso soc --data-dir /var/lib/uplink"
    )]
    Remove(UserRemoveArgs),
}

#[derive(Debug, clap::Args)]
pub struct UserAddArgs {
    /// The workspace the account belongs to (it sees nothing of any other).
    pub workspace: String,
    /// The user name (letters, digits, `-`, `_`, `.`, `@`; at most 64).
    pub name: String,
    /// admin: looks and acts (revoke, suppress, …); viewer: looks only.
    #[arg(long, value_name = "ROLE", value_parser = parse_role)]
    pub role: TokenRole,
    #[command(flatten)]
    pub data: super::DataDir,
}

#[derive(Debug, clap::Args)]
pub struct UserRemoveArgs {
    /// The workspace name.
    pub workspace: String,
    /// The user name.
    pub name: String,
    #[command(flatten)]
    pub data: super::DataDir,
}

#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Create a token for one workspace and print it: it is shown this once (the store keeps
    /// only its SHA-256). --json prints {"id","name","role","created_at","token"}.
    #[command(
        after_help = "Examples:\n  uplink admin token create contoso --name soc --role viewer --data-dir /var/lib/uplink > soc.token\n  uplink admin token create contoso --name ci --json --data-dir /var/lib/uplink"
    )]
    Create(CreateArgs),
    /// A workspace's tokens (never their secrets). --json prints
    /// {"tokens":[{"id","name","role","created_at"}]}.
    #[command(
        after_help = "Examples:\n  uplink admin token list contoso --data-dir /var/lib/uplink"
    )]
    List(ListArgs),
    /// Revoke a token (by name or id) at once: the API refuses it from the next request.
    #[command(
        after_help = "Examples:\n  uplink admin token revoke contoso soc --data-dir /var/lib/uplink\n  uplink admin token revoke contoso tok-0123456789abcdef --data-dir /var/lib/uplink"
    )]
    Revoke(RevokeArgs),
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The workspace the token is for (it sees nothing of any other).
    pub workspace: String,
    /// A name for the token, unique in the workspace (letters, digits, `-`, `_`, `.`).
    #[arg(long, value_name = "N")]
    pub name: String,
    /// admin: every call; viewer: reads (GET) only.
    #[arg(long, value_name = "ROLE", default_value = "admin", value_parser = parse_role)]
    pub role: TokenRole,
    #[command(flatten)]
    pub data: super::DataDir,
    /// Print JSON (the token itself included: it is shown this once).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// The workspace name.
    pub workspace: String,
    #[command(flatten)]
    pub data: super::DataDir,
    /// Print JSON (never the tokens themselves: only their names, ids and roles).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct RevokeArgs {
    /// The workspace name.
    pub workspace: String,
    /// The token's name or id (`tok-…`).
    pub token: String,
    #[command(flatten)]
    pub data: super::DataDir,
}

fn parse_role(s: &str) -> Result<TokenRole, String> {
    TokenRole::parse(s).ok_or_else(|| format!("{s:?} is not a role: use admin or viewer"))
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    super::backend::runtime()?.block_on(async move {
        match command {
            Command::Token(TokenCommand::Create(a)) => create(a).await,
            Command::Token(TokenCommand::List(a)) => list(a).await,
            Command::Token(TokenCommand::Revoke(a)) => revoke(a).await,
            Command::User(UserCommand::Add(a)) => user_add(a).await,
            Command::User(UserCommand::List(a)) => user_list(a).await,
            Command::User(UserCommand::Remove(a)) => user_remove(a).await,
        }
    })
}

async fn create(a: CreateArgs) -> anyhow::Result<ExitCode> {
    if !tokens::valid_name(&a.name) {
        return Err(super::usage(
            "uplink admin token create",
            format!(
                "--name {:?} is not a token name: use 1 to 64 letters, digits, '-', '_' or '.', not starting with \"tok-\"",
                a.name
            ),
        ));
    }
    let store = a.data.open(false).await?;
    let ws = a.workspace.to_ascii_lowercase();
    let (secret, id) = TokenSecret::generate();
    let token = AdminToken {
        id,
        workspace: ws.clone(),
        name: a.name,
        role: a.role,
        created_at: uplink_store::now_ms(),
    };
    let result = store.create_token(token.clone(), secret.sha256()).await;
    let detail = format!("{} ({}, {})", token.name, token.id, token.role.as_str());
    super::fleet::cli_audit(
        &store,
        &token.workspace,
        "token_create",
        None,
        super::fleet::outcome(&result, detail),
    )
    .await?;
    result?;
    if a.json {
        let mut v = token.to_json();
        v["token"] = json!(secret.expose());
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("{}", secret.expose());
        eprintln!(
            "token {} ({}, {}) for workspace {ws}: shown this once, keep it in a secret store",
            token.name, token.id, token.role
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(a: ListArgs) -> anyhow::Result<ExitCode> {
    let store = a.data.open(false).await?;
    let ws = a.workspace.to_ascii_lowercase();
    let all = store.tokens(&ws).await?;
    if a.json {
        let v: Vec<_> = all.iter().map(AdminToken::to_json).collect();
        println!("{}", serde_json::to_string_pretty(&json!({ "tokens": v }))?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<20} {:<24} {:<7} CREATED", "ID", "NAME", "ROLE");
    for t in &all {
        println!(
            "{:<20} {:<24} {:<7} {}",
            t.id,
            t.name,
            t.role,
            uplink_store::rfc3339_ms(t.created_at)
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn revoke(a: RevokeArgs) -> anyhow::Result<ExitCode> {
    let store = a.data.open(false).await?;
    let ws = a.workspace.to_ascii_lowercase();
    let result = store.revoke_token(&ws, &a.token).await;
    super::fleet::cli_audit(
        &store,
        &ws,
        "token_revoke",
        None,
        match &result {
            Ok(Some(t)) => Ok(format!("{} ({})", t.name, t.id)),
            Ok(None) => Err(format!("no token {:?}", a.token)),
            Err(e) => Err(e.to_string()),
        },
    )
    .await?;
    match result? {
        Some(t) => {
            println!("revoked token {} ({})", t.name, t.id);
            Ok(ExitCode::SUCCESS)
        }
        None => bail!(
            "no token {:?} in workspace {ws:?}: list them with `uplink admin token list {ws}`",
            a.token
        ),
    }
}

/// The new account's password: prompted twice without echo on a terminal, else stdin's first
/// line.
fn read_password() -> anyhow::Result<String> {
    use std::io::{BufRead, IsTerminal, Write};
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut line = String::new();
        stdin.lock().read_line(&mut line)?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_owned());
    }
    let prompt = |label: &str| -> anyhow::Result<String> {
        eprint!("{label}: ");
        std::io::stderr().flush()?;
        let fd = std::io::stdin();
        let saved = rustix::termios::tcgetattr(&fd)?;
        let mut quiet = saved.clone();
        quiet.local_modes.remove(rustix::termios::LocalModes::ECHO);
        rustix::termios::tcsetattr(&fd, rustix::termios::OptionalActions::Now, &quiet)?;
        let mut line = String::new();
        let read = fd.lock().read_line(&mut line);
        rustix::termios::tcsetattr(&fd, rustix::termios::OptionalActions::Now, &saved)?;
        eprintln!();
        read?;
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    };
    let first = prompt("Password")?;
    if prompt("Again")? != first {
        bail!("the two passwords differ: run the command again");
    }
    Ok(first)
}

async fn user_add(a: UserAddArgs) -> anyhow::Result<ExitCode> {
    if !uplink_store::console::valid_user_name(&a.name) {
        return Err(super::usage(
            "uplink admin user add",
            format!(
                "{:?} is not a user name: use 1 to 64 letters, digits, '-', '_', '.' or '@'",
                a.name
            ),
        ));
    }
    let password = read_password()?;
    if let Err(weak) = uplink_console::password::check_strength(&password) {
        bail!("{weak}");
    }
    let store = a.data.open(false).await?;
    let ws = a.workspace.to_ascii_lowercase();
    let user = uplink_store::ConsoleUser {
        workspace: ws.clone(),
        name: a.name.clone(),
        role: a.role,
        password_hash: uplink_console::password::hash(&password),
        created_at: uplink_store::now_ms(),
    };
    let result = store.create_console_user(user).await;
    super::fleet::cli_audit(
        &store,
        &ws,
        "user_add",
        None,
        match &result {
            Ok(true) => Ok(format!("{} ({})", a.name, a.role.as_str())),
            Ok(false) => Err(format!("{:?} exists already", a.name)),
            Err(e) => Err(e.to_string()),
        },
    )
    .await?;
    if !result? {
        bail!(
            "workspace {ws:?} already has a console user {:?}: pick another name, or remove it first with `uplink admin user remove {ws} {}`",
            a.name,
            a.name
        );
    }
    println!(
        "console user {} ({}) added to workspace {ws}: sign in at https://{ws}.<domain>/login",
        a.name, a.role
    );
    Ok(ExitCode::SUCCESS)
}

async fn user_list(a: ListArgs) -> anyhow::Result<ExitCode> {
    let store = a.data.open(false).await?;
    let ws = a.workspace.to_ascii_lowercase();
    if store.workspace(&ws).await?.is_none() {
        bail!("no workspace {ws:?}: list them with `uplink workspace list`");
    }
    let all = store.console_users(&ws).await?;
    if a.json {
        let v: Vec<_> = all.iter().map(uplink_store::ConsoleUser::to_json).collect();
        println!("{}", serde_json::to_string_pretty(&json!({ "users": v }))?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<32} {:<7} CREATED", "NAME", "ROLE");
    for u in &all {
        println!(
            "{:<32} {:<7} {}",
            u.name,
            u.role,
            uplink_store::rfc3339_ms(u.created_at)
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn user_remove(a: UserRemoveArgs) -> anyhow::Result<ExitCode> {
    let store = a.data.open(false).await?;
    let ws = a.workspace.to_ascii_lowercase();
    let result = store.remove_console_user(&ws, &a.name).await;
    super::fleet::cli_audit(
        &store,
        &ws,
        "user_remove",
        None,
        match &result {
            Ok(true) => Ok(a.name.clone()),
            Ok(false) => Err(format!("no user {:?}", a.name)),
            Err(e) => Err(e.to_string()),
        },
    )
    .await?;
    if result? {
        println!(
            "removed console user {} from workspace {ws}; its sessions have ended",
            a.name
        );
        Ok(ExitCode::SUCCESS)
    } else {
        bail!(
            "no console user {:?} in workspace {ws:?}: list them with `uplink admin user list {ws}`",
            a.name
        )
    }
}
