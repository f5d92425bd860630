//! `vitalwatch users create|list|passwd|disable|enable`: dashboard users from the command line,
//! through the same store and audit trail as the API (safe beside a running server: the server
//! looks users up on every request). Passwords are read from standard input.

use super::{StoreArgs, actor, role};
use crate::auth;
use crate::server::open_store;
use crate::store::{AuthWrite, Store};
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use std::io::BufRead;

#[derive(Debug, Args)]
pub struct UsersArgs {
    #[command(flatten)]
    pub store: StoreArgs,

    #[command(subcommand)]
    pub command: UsersCommand,
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a dashboard user; the password (12+ characters) is read from standard input.
    Create {
        /// The login name.
        #[arg(long, value_name = "NAME")]
        name: String,
        /// viewer, clinician or admin.
        #[arg(long, value_name = "ROLE")]
        role: String,
    },
    /// List users, their roles and whether they are disabled (never their password hashes).
    List,
    /// Set a new password (read from standard input); ends the user's sessions.
    Passwd {
        /// The login name.
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Stop a user from logging in; ends their sessions.
    Disable {
        /// The login name.
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Let a disabled user log in again.
    Enable {
        /// The login name.
        #[arg(value_name = "NAME")]
        name: String,
    },
}

/// One line from standard input, without its line end.
fn read_password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

pub async fn run(args: UsersArgs) -> anyhow::Result<()> {
    let config = args.store.config()?;
    let store = open_store(&config).await?;
    let res = users_on(&*store, args.command).await;
    store.close().await;
    res
}

async fn users_on(store: &dyn Store, command: UsersCommand) -> anyhow::Result<()> {
    match command {
        UsersCommand::Create { name, role: text } => {
            let password = read_password()?;
            let user = auth::create_user(store, name, role(&text)?, password, actor()).await?;
            eprintln!("Created user {:?} with role {}.", user.username, user.role);
        }
        UsersCommand::List => {
            println!("{:<24} {:<10} {:<25} STATE", "NAME", "ROLE", "CREATED");
            for user in store.list_users().await? {
                println!(
                    "{:<24} {:<10} {:<25} {}",
                    user.username,
                    user.role,
                    user.created_at,
                    if user.disabled_at.is_some() {
                        "disabled"
                    } else {
                        "active"
                    }
                );
            }
        }
        UsersCommand::Passwd { name } => {
            let password = read_password()?;
            auth::check_password_strength(&password).map_err(anyhow::Error::msg)?;
            let hash = auth::hash_password_blocking(password).await?;
            let found = store
                .auth_write(
                    AuthWrite::SetPassword {
                        username: name.clone(),
                        hash,
                    },
                    actor(),
                )
                .await?;
            if !found {
                bail!("no user {name:?}");
            }
            eprintln!("User {name:?}: password changed; their sessions ended.");
        }
        UsersCommand::Disable { name } => set_disabled(store, name, true).await?,
        UsersCommand::Enable { name } => set_disabled(store, name, false).await?,
    }
    Ok(())
}

async fn set_disabled(store: &dyn Store, name: String, disabled: bool) -> anyhow::Result<()> {
    let found = store
        .auth_write(
            AuthWrite::SetUserDisabled {
                username: name.clone(),
                disabled,
            },
            actor(),
        )
        .await?;
    if !found {
        bail!("no user {name:?}");
    }
    let state = if disabled { "disabled" } else { "enabled" };
    eprintln!("User {name:?}: {state}.");
    Ok(())
}
