//! The store's records for access control: API tokens and dashboard users (schema V5).
//! The SQL lives in `sqlite/auth.rs`; every change is audited in its own transaction.

use serde::Serialize;

/// An API token as stored: its secret only as a SHA-256 hash.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TokenRecord {
    pub id: String,
    pub name: String,
    pub role: String,
    /// The one device a `device` token may post readings for.
    pub device_id: Option<String>,
    #[serde(skip)]
    pub secret_hash: String,
    pub created_at: String,
    pub created_by: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
}

/// A dashboard user as stored: the password only as an Argon2id PHC string.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct UserRecord {
    pub username: String,
    pub role: String,
    #[serde(skip)]
    pub password_hash: String,
    pub created_at: String,
    pub created_by: String,
    pub updated_at: String,
    pub disabled_at: Option<String>,
}

/// A change to tokens or users. The answer of [`crate::store::Store::auth_write`] is `false`
/// when the token or user it names does not exist (or was already revoked).
#[derive(Clone, Debug)]
pub enum AuthWrite {
    CreateToken(TokenRecord),
    /// By id or by name.
    RevokeToken(String),
    CreateUser(UserRecord),
    SetPassword {
        username: String,
        hash: String,
    },
    SetUserDisabled {
        username: String,
        disabled: bool,
    },
}
