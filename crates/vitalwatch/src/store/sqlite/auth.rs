//! SQL for access control (schema V5): API tokens and dashboard users. Writes run on the
//! writer thread, each in one transaction with its audit entry; reads on the read-only
//! connections. Secrets and password hashes never appear in an audit entry.

use super::now_text;
use super::writer::Reply;
use crate::store::{AuditEntry, AuthWrite, StoreError, TokenRecord, UserRecord};
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};

const TOKEN_COLUMNS: &str =
    "id, name, role, device_id, secret_hash, created_at, created_by, expires_at, revoked_at";
const USER_COLUMNS: &str =
    "username, role, password_hash, created_at, created_by, updated_at, disabled_at";

fn token_from_row(row: &Row<'_>) -> rusqlite::Result<TokenRecord> {
    Ok(TokenRecord {
        id: row.get(0)?,
        name: row.get(1)?,
        role: row.get(2)?,
        device_id: row.get(3)?,
        secret_hash: row.get(4)?,
        created_at: row.get(5)?,
        created_by: row.get(6)?,
        expires_at: row.get(7)?,
        revoked_at: row.get(8)?,
    })
}

fn user_from_row(row: &Row<'_>) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        username: row.get(0)?,
        role: row.get(1)?,
        password_hash: row.get(2)?,
        created_at: row.get(3)?,
        created_by: row.get(4)?,
        updated_at: row.get(5)?,
        disabled_at: row.get(6)?,
    })
}

pub(super) fn find_token(conn: &Connection, id: &str) -> Result<Option<TokenRecord>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = ?1"
        ))?
        .query_row([id], token_from_row)
        .optional()?)
}

pub(super) fn list_tokens(conn: &Connection) -> Result<Vec<TokenRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created_at, name"
    ))?;
    let rows = stmt.query_map([], token_from_row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

pub(super) fn find_user(
    conn: &Connection,
    username: &str,
) -> Result<Option<UserRecord>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE username = ?1"
        ))?
        .query_row([username], user_from_row)
        .optional()?)
}

pub(super) fn list_users(conn: &Connection) -> Result<Vec<UserRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {USER_COLUMNS} FROM users ORDER BY username"
    ))?;
    let rows = stmt.query_map([], user_from_row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Runs one change in its own transaction and answers its caller.
pub(super) fn handle(conn: &mut Connection, write: AuthWrite, actor: String, reply: Reply<bool>) {
    let res = (|| {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let changed = apply(&tx, write, &actor)?;
        tx.commit()?;
        Ok(changed)
    })();
    if let Err(err) = &res
        && !matches!(err, StoreError::Conflict(_))
    {
        tracing::error!(event = "store.auth_write_failed", message = "Access-control write failed.", error = %err);
    }
    let _ = reply.send(res);
}

fn audit(
    tx: &Transaction<'_>,
    actor: &str,
    action: &str,
    target: String,
    details: serde_json::Value,
) -> Result<(), StoreError> {
    super::audit::append(
        tx,
        &AuditEntry {
            actor: actor.to_owned(),
            action: action.to_owned(),
            target,
            details,
        },
    )
}

fn apply(tx: &Transaction<'_>, write: AuthWrite, actor: &str) -> Result<bool, StoreError> {
    match write {
        AuthWrite::CreateToken(token) => {
            let exists: bool = tx
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM api_tokens WHERE name = ?1)")?
                .query_row([&token.name], |row| row.get(0))?;
            if exists {
                return Err(StoreError::Conflict(format!("token {:?}", token.name)));
            }
            tx.prepare_cached(&format!(
                "INSERT INTO api_tokens ({TOKEN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NULL)"
            ))?
            .execute(params![
                token.id,
                token.name,
                token.role,
                token.device_id,
                token.secret_hash,
                token.created_at,
                token.created_by,
                token.expires_at
            ])?;
            audit(
                tx,
                actor,
                "token.created",
                format!("token:{}", token.name),
                serde_json::json!({
                    "id": token.id,
                    "role": token.role,
                    "device_id": token.device_id,
                    "expires_at": token.expires_at,
                }),
            )?;
            Ok(true)
        }
        AuthWrite::RevokeToken(key) => {
            let found: Option<(String, String)> = tx
                .prepare_cached(
                    "SELECT id, name FROM api_tokens WHERE (id = ?1 OR name = ?1) AND revoked_at IS NULL",
                )?
                .query_row([&key], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()?;
            let Some((id, name)) = found else {
                return Ok(false);
            };
            tx.prepare_cached("UPDATE api_tokens SET revoked_at = ?2 WHERE id = ?1")?
                .execute(params![id, now_text()])?;
            audit(
                tx,
                actor,
                "token.revoked",
                format!("token:{name}"),
                serde_json::json!({ "id": id }),
            )?;
            Ok(true)
        }
        AuthWrite::CreateUser(user) => {
            let exists: bool = tx
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM users WHERE username = ?1)")?
                .query_row([&user.username], |row| row.get(0))?;
            if exists {
                return Err(StoreError::Conflict(format!("user {:?}", user.username)));
            }
            tx.prepare_cached(&format!(
                "INSERT INTO users ({USER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL)"
            ))?
            .execute(params![
                user.username,
                user.role,
                user.password_hash,
                user.created_at,
                user.created_by,
                user.updated_at
            ])?;
            audit(
                tx,
                actor,
                "user.created",
                format!("user:{}", user.username),
                serde_json::json!({ "role": user.role }),
            )?;
            Ok(true)
        }
        AuthWrite::SetPassword { username, hash } => {
            let changed = tx
                .prepare_cached(
                    "UPDATE users SET password_hash = ?2, updated_at = ?3 WHERE username = ?1",
                )?
                .execute(params![username, hash, now_text()])?;
            if changed == 0 {
                return Ok(false);
            }
            audit(
                tx,
                actor,
                "user.password_changed",
                format!("user:{username}"),
                serde_json::json!({}),
            )?;
            Ok(true)
        }
        AuthWrite::SetUserDisabled { username, disabled } => {
            let at = disabled.then(now_text);
            let changed = tx
                .prepare_cached(
                    "UPDATE users SET disabled_at = ?2, updated_at = ?3 WHERE username = ?1",
                )?
                .execute(params![username, at, now_text()])?;
            if changed == 0 {
                return Ok(false);
            }
            let action = if disabled {
                "user.disabled"
            } else {
                "user.enabled"
            };
            audit(
                tx,
                actor,
                action,
                format!("user:{username}"),
                serde_json::json!({}),
            )?;
            Ok(true)
        }
    }
}
