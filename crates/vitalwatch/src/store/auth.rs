//! The store's records for access control: API tokens and dashboard users (schema V5).
//! The SQL lives in `sqlite/auth.rs`; every change is audited in its own transaction.

use serde::Serialize;

/// An API token as stored: its secret only as a SHA-256 hash.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
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

/// Whether a token may be used now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenState {
    Active,
    Expired,
    Revoked,
}

impl TokenState {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenState::Active => "active",
            TokenState::Expired => "expired",
            TokenState::Revoked => "revoked",
        }
    }
}

impl TokenRecord {
    /// Revoked wins over expired; an expiry that does not parse counts as passed.
    pub fn state(&self, now: chrono::DateTime<chrono::Utc>) -> TokenState {
        if self.revoked_at.is_some() {
            return TokenState::Revoked;
        }
        match &self.expires_at {
            Some(at) if chrono::DateTime::parse_from_rfc3339(at).map_or(true, |at| at <= now) => {
                TokenState::Expired
            }
            _ => TokenState::Active,
        }
    }
}

/// A dashboard user as stored: the password only as an Argon2id PHC string.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
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

#[cfg(test)]
mod tests {
    use super::*;

    fn token(expires_at: Option<&str>, revoked_at: Option<&str>) -> TokenRecord {
        TokenRecord {
            id: "0123456789abcdef".into(),
            name: "t".into(),
            role: "viewer".into(),
            device_id: None,
            secret_hash: String::new(),
            created_at: "2026-01-01T00:00:00Z".into(),
            created_by: "test".into(),
            expires_at: expires_at.map(str::to_owned),
            revoked_at: revoked_at.map(str::to_owned),
        }
    }

    #[test]
    fn a_tokens_state_follows_revocation_then_expiry() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-06-01T00:00:00Z")
            .unwrap()
            .to_utc();
        let cases = [
            (None, None, TokenState::Active),
            (Some("2026-07-01T00:00:00Z"), None, TokenState::Active),
            (Some("2026-05-01T00:00:00Z"), None, TokenState::Expired),
            (Some("not a time"), None, TokenState::Expired),
            (
                Some("2026-07-01T00:00:00Z"),
                Some("2026-05-01T00:00:00Z"),
                TokenState::Revoked,
            ),
        ];
        for (expires, revoked, state) in cases {
            assert_eq!(
                token(expires, revoked).state(now),
                state,
                "{expires:?} {revoked:?}"
            );
        }
    }
}
