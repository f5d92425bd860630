//! `vitalwatch tokens create|list|revoke`: API tokens from the command line, through the same
//! store and audit trail as the API (safe beside a running server: the server looks tokens up
//! on every request).

use super::{StoreArgs, actor, role};
use crate::auth::{self, TokenRequest};
use crate::server::open_store;
use crate::store::{AuthWrite, Store};
use anyhow::bail;
use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct TokensArgs {
    #[command(flatten)]
    pub store: StoreArgs,

    #[command(subcommand)]
    pub command: TokensCommand,
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Create a token and print it once (only its hash is kept).
    Create {
        /// What it may do: viewer, clinician, admin, or device (posts readings for --device).
        #[arg(long, value_name = "ROLE")]
        role: String,
        /// A unique name, shown in the audit trail (e.g. "ward-3-display").
        #[arg(long, value_name = "NAME")]
        name: String,
        /// For a device token: the device id it may post readings for.
        #[arg(long, value_name = "ID")]
        device: Option<String>,
        /// Expires after this many days [default: never; revoke it instead].
        #[arg(long, value_name = "DAYS", conflicts_with = "expires")]
        expires_in_days: Option<u32>,
        /// Expires at this time (RFC 3339 or epoch seconds).
        #[arg(long, value_name = "TIME")]
        expires: Option<String>,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token by id or name; it stops working at once.
    Revoke {
        /// The token's id or name (as `tokens list` shows them).
        #[arg(value_name = "ID_OR_NAME")]
        token: String,
    },
}

pub async fn run(args: TokensArgs) -> anyhow::Result<()> {
    let config = args.store.config()?;
    let store = open_store(&config).await?;
    let res = tokens_on(&*store, args.command).await;
    store.close().await;
    res
}

async fn tokens_on(store: &dyn Store, command: TokensCommand) -> anyhow::Result<()> {
    match command {
        TokensCommand::Create {
            role: role_text,
            name,
            device,
            expires_in_days,
            expires,
        } => {
            let expires_at = match (expires_in_days, expires) {
                (Some(days), _) => {
                    Some(chrono::Utc::now() + chrono::Duration::days(i64::from(days)))
                }
                (None, Some(raw)) => Some(super::time_or_epoch(&raw, "--expires")?.to_datetime()),
                (None, None) => None,
            };
            let request = TokenRequest {
                name,
                role: role(&role_text)?,
                device_id: device,
                expires_at,
            };
            let (text, record) = auth::issue_token(store, request, actor()).await?;
            eprintln!(
                "Created token {:?} (id {}, role {}{}). It is shown once; store it now:",
                record.name,
                record.id,
                record.role,
                record
                    .expires_at
                    .as_deref()
                    .map(|at| format!(", expires {at}"))
                    .unwrap_or_default()
            );
            println!("{text}");
        }
        TokensCommand::List => {
            println!(
                "{:<16} {:<24} {:<10} {:<16} {:<25} STATE",
                "ID", "NAME", "ROLE", "DEVICE", "EXPIRES"
            );
            for token in store.list_tokens().await? {
                let state = token.state(chrono::Utc::now()).as_str();
                println!(
                    "{:<16} {:<24} {:<10} {:<16} {:<25} {state}",
                    token.id,
                    token.name,
                    token.role,
                    token.device_id.as_deref().unwrap_or("-"),
                    token.expires_at.as_deref().unwrap_or("never"),
                );
            }
        }
        TokensCommand::Revoke { token } => {
            if !store
                .auth_write(AuthWrite::RevokeToken(token.clone()), actor())
                .await?
            {
                bail!("no active token {token:?}");
            }
            eprintln!("Revoked token {token:?}.");
        }
    }
    Ok(())
}
