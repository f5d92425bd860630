//! Who may use the REST API and the dashboard.
//!
//! Every route is registered through [`routes::Routes`] with the [`Access`] it needs; the
//! middleware in [`layer`] looks the matched route up and refuses what is not allowed — a
//! route without a rule is refused to everyone (deny by default). Callers prove who they are
//! with an API token (`Authorization: Bearer vw_…`), a dashboard session cookie (state-changing
//! requests also need the session's CSRF token), or — only with `--trust-loopback` — by
//! connecting from loopback.

pub mod audit_buffer;
pub mod layer;
pub mod login;
pub mod routes;
pub mod session;
pub mod streams;

use crate::secret::Secret;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// What a caller is allowed to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads vitals and alerts.
    Viewer,
    /// + acknowledges and silences alerts, sets per-patient thresholds.
    Clinician,
    /// + devices, certificates, users, tokens, model, configuration.
    Admin,
    /// Posts readings for its own device id only (API tokens only).
    Device,
    /// Reads `/metrics` and nothing else (a Prometheus scraper's token).
    Metrics,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Viewer,
        Role::Clinician,
        Role::Admin,
        Role::Device,
        Role::Metrics,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Clinician => "clinician",
            Role::Admin => "admin",
            Role::Device => "device",
            Role::Metrics => "metrics",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == text)
    }
}

/// What a route needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Anyone: `/health`, the login endpoint, the dashboard's page and assets.
    Public,
    /// Any authenticated caller (their own session: `/auth/me`, `/auth/logout`).
    Authenticated,
    /// A signed-in dashboard user (not a token, not loopback): their own password.
    Session,
    /// Patient data: viewer, clinician, admin. Every such read is audited.
    Read,
    /// Clinical actions: clinician, admin.
    Clinical,
    /// Administration: admin.
    Admin,
    /// Posting readings: a device token (for its own id).
    Telemetry,
    /// The Prometheus exposition: a metrics token, or admin.
    Metrics,
}

impl Access {
    /// Whether `role` may use a route that needs this; `None` is a trusted loopback client,
    /// which may do everything.
    pub fn allows(self, role: Option<Role>) -> bool {
        let Some(role) = role else {
            return true;
        };
        match self {
            Access::Public | Access::Authenticated => true,
            Access::Session => !matches!(role, Role::Device | Role::Metrics),
            Access::Read => matches!(role, Role::Viewer | Role::Clinician | Role::Admin),
            Access::Clinical => matches!(role, Role::Clinician | Role::Admin),
            Access::Admin => role == Role::Admin,
            Access::Telemetry => role == Role::Device,
            Access::Metrics => matches!(role, Role::Metrics | Role::Admin),
        }
    }

    /// The lowest role this admits (for tests and the route listing); `None` for public.
    pub fn least_role(self) -> Option<Role> {
        match self {
            Access::Public => None,
            Access::Authenticated | Access::Session | Access::Read => Some(Role::Viewer),
            Access::Clinical => Some(Role::Clinician),
            Access::Admin => Some(Role::Admin),
            Access::Telemetry => Some(Role::Device),
            Access::Metrics => Some(Role::Metrics),
        }
    }
}

/// How a caller proved who they are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    Token { id: String },
    Session { id: Secret, csrf: Secret },
    Loopback,
}

/// An authenticated caller, in every request's extensions.
#[derive(Clone, Debug)]
pub struct Principal {
    /// Token name, user name, or the loopback address.
    pub name: String,
    /// `None` for a trusted loopback client (every role).
    pub role: Option<Role>,
    /// For a device token: the only device id it may post for.
    pub device_id: Option<String>,
    pub credential: Credential,
}

impl Principal {
    /// Who did it, as the audit trail records it.
    pub fn actor(&self) -> String {
        match self.credential {
            Credential::Token { .. } => format!("token:{}", self.name),
            Credential::Session { .. } => format!("user:{}", self.name),
            Credential::Loopback => format!("loopback:{}", self.name),
        }
    }

    /// The name an action is recorded under: a logged-in user's own name, whatever the
    /// request claims; for tokens and loopback (scripts acting for a named person) the
    /// claimed name, with the token's name beside it in the audit trail.
    pub fn acting_as<'a>(&'a self, claimed: &'a str) -> &'a str {
        match self.credential {
            Credential::Session { .. } => &self.name,
            Credential::Token { .. } | Credential::Loopback => claimed,
        }
    }

    pub fn role_name(&self) -> &'static str {
        self.role.map_or("loopback", Role::as_str)
    }
}

/// The prefix of every API token, so secret scanners can find leaked ones.
pub const TOKEN_PREFIX: &str = "vw_";

/// A new token: the text to show once, its id, and the hash to store.
pub struct NewToken {
    pub text: String,
    pub id: String,
    pub secret_hash: String,
}

/// Makes a token `vw_<id>_<secret>`: a 64-bit id to look it up by and a 256-bit secret.
pub fn generate_token() -> NewToken {
    let id = hex::encode(rand::random::<[u8; 8]>());
    let secret = hex::encode(rand::random::<[u8; 32]>());
    NewToken {
        text: format!("{TOKEN_PREFIX}{id}_{secret}"),
        secret_hash: hash_secret(&secret),
        id,
    }
}

/// Splits a presented token into (id, secret); `None` when it is not shaped like one.
pub fn parse_token(text: &str) -> Option<(&str, &str)> {
    let (id, secret) = text.strip_prefix(TOKEN_PREFIX)?.split_once('_')?;
    let hex_of = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex_of(id, 16) && hex_of(secret, 64)).then_some((id, secret))
}

/// SHA-256 of a token's secret, hex. A 256-bit random secret cannot be guessed, so a slow
/// password hash would only slow down every request.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Compares two strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Argon2id PHC string of a password.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    use argon2::PasswordHasher;
    argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|err| anyhow::anyhow!("hashing the password: {err}"))
}

/// Whether `password` matches a stored PHC string (false for a malformed one).
pub fn verify_password(stored: &str, password: &str) -> bool {
    use argon2::PasswordVerifier;
    let Ok(parsed) = argon2::PasswordHash::new(stored) else {
        return false;
    };
    argon2::Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// A dummy hash to verify against when the user does not exist, so an unknown name takes
/// as long to refuse as a wrong password.
pub fn dummy_password_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| hash_password("not a password of anyone").unwrap_or_default())
}

/// The rules for a password: 12 to 256 characters.
pub fn check_password_strength(password: &str) -> Result<(), &'static str> {
    let len = password.chars().count();
    if len < 12 {
        return Err("a password needs at least 12 characters");
    }
    if len > 256 {
        return Err("a password may have at most 256 characters");
    }
    Ok(())
}

/// The rules for a user or token name: 1 to 64 of `A-Z a-z 0-9 _ . @ -`.
pub fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'@' | b'-'))
    {
        return Err("a name is 1 to 64 characters of A-Z a-z 0-9 _ . @ -");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_token_parses_and_its_secret_matches_the_hash() {
        let token = generate_token();
        let (id, secret) = parse_token(&token.text).unwrap();
        assert_eq!(id, token.id);
        assert_eq!(hash_secret(secret), token.secret_hash);
        assert!(!token.text.contains(&token.secret_hash));
    }

    #[test]
    fn malformed_tokens_do_not_parse() {
        for text in [
            "",
            "vw_",
            "vw_abc_def",
            "xx_0123456789abcdef_0000000000000000000000000000000000000000000000000000000000000000",
            "vw_0123456789abcdeg_0000000000000000000000000000000000000000000000000000000000000000",
            "vw_0123456789abcdef_000000000000000000000000000000000000000000000000000000000000000",
        ] {
            assert_eq!(parse_token(text), None, "{text}");
        }
    }

    #[test]
    fn roles_map_to_access_as_the_issue_says() {
        use Access::*;
        let table = [
            (Role::Viewer, [true, true, true, false, false, false]),
            (Role::Clinician, [true, true, true, true, false, false]),
            (Role::Admin, [true, true, true, true, true, false]),
            (Role::Device, [true, true, false, false, false, true]),
        ];
        for (role, expected) in table {
            let got = [Public, Authenticated, Read, Clinical, Admin, Telemetry]
                .map(|access| access.allows(Some(role)));
            assert_eq!(got, expected, "{role:?}");
        }
        assert!(Admin.allows(None) && Telemetry.allows(None));
        assert!(Session.allows(Some(Role::Viewer)) && !Session.allows(Some(Role::Device)));
    }

    #[test]
    fn passwords_verify_only_themselves() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password(&hash, "correct horse battery"));
        assert!(!verify_password(&hash, "correct horse batterz"));
        assert!(!verify_password("not a hash", "x"));
    }

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "abcd"));
    }
}

/// What a new token is for.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    pub name: String,
    pub role: Role,
    /// Required for, and only for, the `device` role.
    pub device_id: Option<String>,
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Why a token or user could not be made; the text is for the person asking.
#[derive(Debug, thiserror::Error)]
pub enum AuthChangeError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Checks and stores a new token; returns its text (to show once) and record.
pub async fn issue_token(
    store: &dyn crate::store::Store,
    request: TokenRequest,
    actor: String,
) -> Result<(String, crate::store::TokenRecord), AuthChangeError> {
    let invalid = |text: &str| AuthChangeError::Invalid(text.to_owned());
    check_name(&request.name).map_err(invalid)?;
    match (&request.role, &request.device_id) {
        (Role::Device, None) => {
            return Err(invalid("a device token needs the device id it posts for"));
        }
        (Role::Device, Some(id)) => {
            vitalwatch_core::telemetry::DeviceId::parse(id, 64).map_err(|_| {
                invalid("invalid device id: use 1 to 64 characters of A-Z a-z 0-9 _ . : -")
            })?;
        }
        (_, Some(_)) => return Err(invalid("only a device token is bound to a device id")),
        (_, None) => {}
    }
    if request
        .expires_at
        .is_some_and(|at| at <= crate::clock::now_utc())
    {
        return Err(invalid("the expiry is in the past"));
    }
    let token = generate_token();
    let now = crate::clock::now_utc();
    let record = crate::store::TokenRecord {
        id: token.id,
        name: request.name,
        role: request.role.as_str().to_owned(),
        device_id: request.device_id,
        secret_hash: token.secret_hash,
        created_at: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        created_by: actor.clone(),
        expires_at: request
            .expires_at
            .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        revoked_at: None,
    };
    store
        .auth_write(crate::store::AuthWrite::CreateToken(record.clone()), actor)
        .await?;
    Ok((token.text, record))
}

/// Checks and stores a new dashboard user.
pub async fn create_user(
    store: &dyn crate::store::Store,
    username: String,
    role: Role,
    password: String,
    actor: String,
) -> Result<crate::store::UserRecord, AuthChangeError> {
    let invalid = |text: &str| AuthChangeError::Invalid(text.to_owned());
    check_name(&username).map_err(invalid)?;
    if matches!(role, Role::Device | Role::Metrics) {
        return Err(invalid(
            "devices and metrics scrapers use tokens, not logins: a user is viewer, clinician or admin",
        ));
    }
    check_password_strength(&password).map_err(invalid)?;
    let hash = hash_password_blocking(password).await?;
    let now = crate::clock::now_rfc3339_millis();
    let record = crate::store::UserRecord {
        username,
        role: role.as_str().to_owned(),
        password_hash: hash,
        created_at: now.clone(),
        created_by: actor.clone(),
        updated_at: now,
        disabled_at: None,
    };
    store
        .auth_write(crate::store::AuthWrite::CreateUser(record.clone()), actor)
        .await?;
    Ok(record)
}

/// Argon2 off the async threads.
pub async fn hash_password_blocking(password: String) -> Result<String, AuthChangeError> {
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|err| AuthChangeError::Invalid(format!("hashing failed: {err}")))?
        .map_err(|err| AuthChangeError::Invalid(err.to_string()))
}
