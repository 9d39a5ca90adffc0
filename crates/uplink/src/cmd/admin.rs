//! `uplink admin`: tokens for the admin JSON API (docs/admin-api.md). A token is shown once, at
//! creation; the store keeps only its SHA-256 (`uplink_store::tokens`).

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
    store.create_token(token.clone(), secret.sha256()).await?;
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
    match store.revoke_token(&ws, &a.token).await? {
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
