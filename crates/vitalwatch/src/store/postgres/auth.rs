//! SQL for access control on PostgreSQL: API tokens and dashboard users, each change in one
//! transaction with its audit entry. Secrets and password hashes never appear in an entry.

use super::{Tx, audit, now_text, pg};
use crate::store::{AuditEntry, AuthWrite, StoreError, TokenRecord, UserRecord};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

const TOKEN_COLUMNS: &str =
    "id, name, role, device_id, secret_hash, created_at, created_by, expires_at, revoked_at";
const USER_COLUMNS: &str =
    "username, role, password_hash, created_at, created_by, updated_at, disabled_at";

fn token_from_row(row: &Row) -> TokenRecord {
    TokenRecord {
        id: row.get(0),
        name: row.get(1),
        role: row.get(2),
        device_id: row.get(3),
        secret_hash: row.get(4),
        created_at: row.get(5),
        created_by: row.get(6),
        expires_at: row.get(7),
        revoked_at: row.get(8),
    }
}

fn user_from_row(row: &Row) -> UserRecord {
    UserRecord {
        username: row.get(0),
        role: row.get(1),
        password_hash: row.get(2),
        created_at: row.get(3),
        created_by: row.get(4),
        updated_at: row.get(5),
        disabled_at: row.get(6),
    }
}

pub(super) async fn find_token(
    client: &impl GenericClient,
    id: &str,
) -> Result<Option<TokenRecord>, StoreError> {
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1"
        ))
        .await
        .map_err(pg)?;
    Ok(client
        .query_opt(&stmt, &[&id])
        .await
        .map_err(pg)?
        .map(|row| token_from_row(&row)))
}

pub(super) async fn list_tokens(
    client: &impl GenericClient,
) -> Result<Vec<TokenRecord>, StoreError> {
    let rows = client
        .query(
            &format!("SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created_at, name"),
            &[],
        )
        .await
        .map_err(pg)?;
    Ok(rows.iter().map(token_from_row).collect())
}

pub(super) async fn find_user(
    client: &impl GenericClient,
    username: &str,
) -> Result<Option<UserRecord>, StoreError> {
    // PostgreSQL's text cannot hold NUL, so no stored name has one; a login may still send
    // one, and it names no user (rather than failing the query).
    if username.contains('\0') {
        return Ok(None);
    }
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE username = $1"
        ))
        .await
        .map_err(pg)?;
    Ok(client
        .query_opt(&stmt, &[&username])
        .await
        .map_err(pg)?
        .map(|row| user_from_row(&row)))
}

pub(super) async fn list_users(client: &impl GenericClient) -> Result<Vec<UserRecord>, StoreError> {
    let rows = client
        .query(
            &format!("SELECT {USER_COLUMNS} FROM users ORDER BY username"),
            &[],
        )
        .await
        .map_err(pg)?;
    Ok(rows.iter().map(user_from_row).collect())
}

async fn audited(
    tx: &Tx<'_>,
    actor: &str,
    action: &str,
    target: String,
    details: serde_json::Value,
) -> Result<(), StoreError> {
    audit::append(
        tx,
        &AuditEntry {
            actor: actor.to_owned(),
            action: action.to_owned(),
            target,
            details,
        },
    )
    .await
}

/// Applies one change and its audit entry in the caller's transaction.
pub(super) async fn apply(tx: &Tx<'_>, write: &AuthWrite, actor: &str) -> Result<bool, StoreError> {
    audit::lock(tx).await?;
    match write {
        AuthWrite::CreateToken(token) => {
            let exists: bool = tx
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM api_tokens WHERE name = $1)",
                    &[&token.name],
                )
                .await
                .map_err(pg)?
                .get(0);
            if exists {
                return Err(StoreError::Conflict(format!("token {:?}", token.name)));
            }
            tx.execute(
                &format!(
                    "INSERT INTO api_tokens ({TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL)"
                ),
                &[
                    &token.id,
                    &token.name,
                    &token.role,
                    &token.device_id,
                    &token.secret_hash,
                    &token.created_at,
                    &token.created_by,
                    &token.expires_at,
                ],
            )
            .await
            .map_err(pg)?;
            audited(
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
            )
            .await?;
            Ok(true)
        }
        AuthWrite::RevokeToken(key) => {
            let found = tx
                .query_opt(
                    "SELECT id, name FROM api_tokens WHERE (id = $1 OR name = $1) AND revoked_at IS NULL",
                    &[key],
                )
                .await
                .map_err(pg)?;
            let Some(row) = found else {
                return Ok(false);
            };
            let (id, name): (String, String) = (row.get(0), row.get(1));
            tx.execute(
                "UPDATE api_tokens SET revoked_at = $2 WHERE id = $1",
                &[&id, &now_text()],
            )
            .await
            .map_err(pg)?;
            audited(
                tx,
                actor,
                "token.revoked",
                format!("token:{name}"),
                serde_json::json!({ "id": id }),
            )
            .await?;
            Ok(true)
        }
        AuthWrite::CreateUser(user) => {
            let exists: bool = tx
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM users WHERE username = $1)",
                    &[&user.username],
                )
                .await
                .map_err(pg)?
                .get(0);
            if exists {
                return Err(StoreError::Conflict(format!("user {:?}", user.username)));
            }
            tx.execute(
                &format!(
                    "INSERT INTO users ({USER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, NULL)"
                ),
                &[
                    &user.username,
                    &user.role,
                    &user.password_hash,
                    &user.created_at,
                    &user.created_by,
                    &user.updated_at,
                ],
            )
            .await
            .map_err(pg)?;
            audited(
                tx,
                actor,
                "user.created",
                format!("user:{}", user.username),
                serde_json::json!({ "role": user.role }),
            )
            .await?;
            Ok(true)
        }
        AuthWrite::SetPassword { username, hash } => {
            let changed = tx
                .execute(
                    "UPDATE users SET password_hash = $2, updated_at = $3 WHERE username = $1",
                    &[username, hash, &now_text()],
                )
                .await
                .map_err(pg)?;
            if changed == 0 {
                return Ok(false);
            }
            audited(
                tx,
                actor,
                "user.password_changed",
                format!("user:{username}"),
                serde_json::json!({}),
            )
            .await?;
            Ok(true)
        }
        AuthWrite::SetUserDisabled { username, disabled } => {
            let at = disabled.then(now_text);
            let changed = tx
                .execute(
                    "UPDATE users SET disabled_at = $2, updated_at = $3 WHERE username = $1",
                    &[username, &at, &now_text()],
                )
                .await
                .map_err(pg)?;
            if changed == 0 {
                return Ok(false);
            }
            let action = if *disabled {
                "user.disabled"
            } else {
                "user.enabled"
            };
            audited(
                tx,
                actor,
                action,
                format!("user:{username}"),
                serde_json::json!({}),
            )
            .await?;
            Ok(true)
        }
    }
}
