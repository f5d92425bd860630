//! `vitalwatch tokens …`, `vitalwatch users …` and `vitalwatch routes`: access control from
//! the command line, through the same store and audit trail as the API (safe beside a running
//! server: the server looks tokens and users up on every request).

use crate::auth::{self, Role, TokenRequest};
use crate::cli::actor;
use crate::cli::{TokensCommand, UsersCommand};
use crate::config::Config;
use crate::serve::open_store;
use crate::store::{AuthWrite, Store};
use anyhow::{Context, bail};
use std::io::BufRead;
use vitalwatch_core::telemetry::Timestamp;

fn role(text: &str) -> anyhow::Result<Role> {
    Role::parse(text)
        .with_context(|| format!("unknown role {text:?}: use viewer, clinician, admin or device"))
}

pub async fn tokens(config: Config, command: TokensCommand) -> anyhow::Result<()> {
    let store = open_store(&config)?;
    let res = tokens_on(&*store, command).await;
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
                (None, Some(raw)) => Some(
                    Timestamp::parse_text(&raw)
                        .or_else(|| raw.parse::<f64>().ok().and_then(Timestamp::parse_epoch))
                        .context("--expires must be an RFC 3339 time or epoch seconds")?
                        .to_datetime(),
                ),
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

/// One line from standard input, without its line end.
fn read_password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

pub async fn users(config: Config, command: UsersCommand) -> anyhow::Result<()> {
    let store = open_store(&config)?;
    let res = users_on(&*store, command).await;
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

/// Prints the route table: what each route needs.
pub fn routes() {
    println!(
        "{:<8} {:<36} {:<14} AUDITED READ",
        "METHOD", "PATH", "ACCESS"
    );
    let mut seen = std::collections::HashSet::new();
    for rule in crate::api::route_table(true) {
        if !seen.insert((rule.method.clone(), rule.path)) {
            continue;
        }
        let access = serde_json::to_value(rule.access)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        println!(
            "{:<8} {:<36} {:<14} {}",
            rule.method.as_str(),
            rule.path,
            access,
            if rule.patient_data { "yes" } else { "" }
        );
    }
}
