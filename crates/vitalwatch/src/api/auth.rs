//! Dashboard logins (`/auth/*`) and the administration of tokens and users (`/api/tokens`,
//! `/api/users`, admin only).

use super::{ApiError, AppState, json_body};
use crate::auth::login::Refused;
use crate::auth::session::COOKIE;
use crate::auth::{AuthChangeError, Credential, Principal, Role, TokenRequest};
use crate::store::{AuditEntry, AuthWrite, StoreError, TokenRecord, UserRecord};
use axum::Extension;
use axum::Json;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::net::SocketAddr;

impl From<AuthChangeError> for ApiError {
    fn from(err: AuthChangeError) -> ApiError {
        match err {
            AuthChangeError::Invalid(text) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", text)
            }
            AuthChangeError::Store(StoreError::Conflict(what)) => ApiError::new(
                StatusCode::CONFLICT,
                "exists",
                format!("{what} already exists"),
            ),
            AuthChangeError::Store(err) => err.into(),
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    username: String,
    password: String,
}

fn cookie(value: &str, max_age_s: u64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={max_age_s}"
    ))
    .expect("a hex session id and digits make a valid header value")
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct LoginAnswer {
    username: String,
    role: String,
    /// Send it as `X-CSRF-Token` with every state change of this session.
    csrf_token: String,
}

/// Who the caller is.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Me {
    name: String,
    /// `viewer`, `clinician`, `admin`, `device`, `metrics` or `loopback`.
    role: &'static str,
    /// `token`, `session` or `loopback`.
    kind: &'static str,
    /// A session's CSRF token; null for a token.
    csrf_token: Option<String>,
}

/// A new token: its record and, this once, its text.
#[derive(Serialize, utoipa::ToSchema)]
pub struct NewTokenAnswer {
    #[serde(flatten)]
    record: TokenRecord,
    /// The token's text: shown here and nowhere else, ever.
    token: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenList {
    tokens: Vec<TokenRecord>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct UserList {
    users: Vec<UserRecord>,
}

/// `POST /auth/login {"username", "password"}`: a session cookie and the CSRF token.
#[utoipa::path(
    post,
    path = "/auth/login",
    tag = "auth",
    request_body(content = Login, content_type = "application/json"),
    responses(
        (status = 200, description = "Signed in: the session cookie is set (`Set-Cookie`); send the CSRF token as `X-CSRF-Token` with state changes", body = LoginAnswer),
        (status = "4XX", description = "A client mistake or refusal: `{error, detail}`", body = super::openapi::ErrorBody),
        (status = 503, description = "The store or the audit buffer cannot take it now", body = super::openapi::ErrorBody),
    )
)]
pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let auth = &state.auth;
    let login: Login = json_body(&headers, body).await?;
    let address = remote.ip().to_canonical();
    // Counted as a failure before the password is checked; a success gives it back.
    let attempt = match auth.limiter.attempt(&login.username, address).await {
        Ok(attempt) => attempt,
        Err(Refused::Throttled(wait_s)) => {
            auth.audit_failure(
                "auth.login_throttled",
                address,
                "too many failures",
                "/auth/login",
            );
            return Err(ApiError::too_many_requests(
                "login_throttled",
                "too many failed logins; wait before trying again",
                wait_s,
            ));
        }
        Err(Refused::Unavailable) => {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "logins cannot be checked while the database is away; retry shortly",
            ));
        }
    };
    if !attempt.delay.is_zero() {
        tokio::time::sleep(attempt.delay).await;
    }
    let Some(permit) = auth.limiter.check_permit() else {
        auth.limiter.cancel(attempt).await;
        return Err(ApiError::too_many_requests(
            "login_busy",
            "too many logins are being checked; try again in a moment",
            1,
        ));
    };
    let user = if login.username.len() <= 64 {
        state.store.find_user(login.username.clone()).await?
    } else {
        None
    };
    let stored = user.as_ref().map_or_else(
        || crate::auth::dummy_password_hash().to_owned(),
        |u| u.password_hash.clone(),
    );
    let password = login.password;
    let verified = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        crate::auth::verify_password(&stored, &password)
    })
    .await
    .unwrap_or(false);
    let user = match user {
        Some(user) if verified && user.disabled_at.is_none() => user,
        _ => {
            auth.audit.record_from(
                address,
                AuditEntry {
                    actor: format!("anonymous:{address}"),
                    action: "auth.failed".to_owned(),
                    target: "/auth/login".to_owned(),
                    details: json!({ "reason": "login_failed", "username": login.username }),
                },
            );
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "login_failed",
                "unknown user name or wrong password",
            ));
        }
    };
    auth.limiter.succeeded(attempt).await;
    let role = Role::parse(&user.role).ok_or_else(ApiError::internal)?;
    let (session, csrf) = auth.sessions.start(&user.username, role).await?;
    state
        .store
        .audit(AuditEntry {
            actor: format!("user:{}", user.username),
            action: "auth.login".to_owned(),
            target: format!("user:{}", user.username),
            details: json!({ "address": address.to_string() }),
        })
        .await?;
    let mut response = Json(LoginAnswer {
        username: user.username,
        role: user.role,
        csrf_token: csrf,
    })
    .into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        cookie(&session, auth.sessions.max_age().as_secs()),
    );
    Ok(response)
}

/// `POST /auth/logout`: ends the session and clears the cookie.
#[utoipa::path(
    post,
    path = "/auth/logout",
    tag = "auth",
    responses(
        (status = 204, description = "Done"),
        (status = "4XX", description = "A client mistake or refusal: `{error, detail}`", body = super::openapi::ErrorBody),
        (status = 503, description = "The store or the audit buffer cannot take it now", body = super::openapi::ErrorBody),
    )
)]
pub async fn logout(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(id) = crate::auth::layer::session_cookie(&headers) {
        state.auth.sessions.end(id).await?;
    }
    state
        .store
        .audit(AuditEntry {
            actor: who.actor(),
            action: "auth.logout".to_owned(),
            target: who.actor(),
            details: json!({}),
        })
        .await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, cookie("", 0));
    Ok(response)
}

/// `GET /auth/me`: who the caller is (and, for a session, its CSRF token).
#[utoipa::path(
    get,
    path = "/auth/me",
    tag = "auth",
    responses(
        (status = 200, description = "The caller", body = Me),
        (status = "4XX", description = "A client mistake or refusal: `{error, detail}`", body = super::openapi::ErrorBody),
        (status = 503, description = "The store or the audit buffer cannot take it now", body = super::openapi::ErrorBody),
    )
)]
pub async fn me(Extension(who): Extension<Principal>) -> Json<Me> {
    let (kind, csrf) = match &who.credential {
        Credential::Token { .. } => ("token", None),
        Credential::Session { csrf, .. } => ("session", Some(csrf.expose().to_owned())),
        Credential::Loopback => ("loopback", None),
    };
    Json(Me {
        name: who.name.clone(),
        role: who.role_name(),
        kind,
        csrf_token: csrf,
    })
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OwnPassword {
    current: String,
    new: String,
}

/// `POST /auth/password {"current", "new"}`: a signed-in user changes their own password.
/// The current one is checked (and a wrong one counts as a failed login); every session of
/// the user ends, this one included, so they sign in again with the new password.
#[utoipa::path(
    post,
    path = "/auth/password",
    tag = "auth",
    request_body(content = OwnPassword, content_type = "application/json"),
    responses(
        (status = 204, description = "Done"),
        (status = "4XX", description = "A client mistake or refusal: `{error, detail}`", body = super::openapi::ErrorBody),
        (status = 503, description = "The store or the audit buffer cannot take it now", body = super::openapi::ErrorBody),
    )
)]
pub async fn change_own_password(
    State(state): State<AppState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<StatusCode, ApiError> {
    let change: OwnPassword = json_body(&headers, body).await?;
    let auth = &state.auth;
    let address = remote.ip().to_canonical();
    let attempt = match auth.limiter.attempt(&who.name, address).await {
        Ok(attempt) => attempt,
        Err(Refused::Throttled(wait_s)) => {
            return Err(ApiError::too_many_requests(
                "login_throttled",
                "too many failed attempts; wait before trying again",
                wait_s,
            ));
        }
        Err(Refused::Unavailable) => {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "logins cannot be checked while the database is away; retry shortly",
            ));
        }
    };
    let Some(permit) = auth.limiter.check_permit() else {
        auth.limiter.cancel(attempt).await;
        return Err(ApiError::too_many_requests(
            "login_busy",
            "too many passwords are being checked; try again in a moment",
            1,
        ));
    };
    let user = state
        .store
        .find_user(who.name.clone())
        .await?
        .ok_or_else(|| {
            ApiError::new(StatusCode::UNAUTHORIZED, "session_expired", "log in again")
        })?;
    let (stored, current) = (user.password_hash.clone(), change.current);
    let verified = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        crate::auth::verify_password(&stored, &current)
    })
    .await
    .unwrap_or(false);
    if !verified {
        auth.audit_failure(
            "auth.failed",
            address,
            "wrong current password",
            "/auth/password",
        );
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "wrong_password",
            "the current password is not right",
        ));
    }
    auth.limiter.succeeded(attempt).await;
    crate::auth::check_password_strength(&change.new)
        .map_err(|text| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", text))?;
    let hash = crate::auth::hash_password_blocking(change.new).await?;
    state
        .store
        .auth_write(
            AuthWrite::SetPassword {
                username: who.name.clone(),
                hash,
            },
            who.actor(),
        )
        .await?;
    auth.sessions.end_user(&who.name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    name: String,
    role: String,
    #[serde(default)]
    device_id: Option<String>,
    /// Days until it expires; none = until revoked.
    #[serde(default)]
    expires_in_days: Option<u32>,
}

fn parse_role(text: &str) -> Result<Role, ApiError> {
    Role::parse(text).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "role is one of viewer, clinician, admin, device",
        )
    })
}

/// `POST /api/tokens`: the token's text is in this answer and nowhere else, ever.
#[utoipa::path(
    post,
    path = "/api/tokens",
    tag = "auth",
    request_body(content = NewToken, content_type = "application/json"),
    responses(
        (status = 201, description = "The new token, with its text", body = NewTokenAnswer),
        (status = "4XX", description = "A client mistake or refusal: `{error, detail}`", body = super::openapi::ErrorBody),
        (status = 503, description = "The store or the audit buffer cannot take it now", body = super::openapi::ErrorBody),
    )
)]
pub async fn create_token(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let request: NewToken = json_body(&headers, body).await?;
    let expires_at = match request.expires_in_days {
        Some(0) | None => None,
        Some(days) if days <= 3650 => {
            Some(crate::clock::now_utc() + chrono::Duration::days(i64::from(days)))
        }
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                "expires_in_days is at most 3650",
            ));
        }
    };
    let (text, record) = crate::auth::issue_token(
        state.store.as_ref(),
        TokenRequest {
            name: request.name,
            role: parse_role(&request.role)?,
            device_id: request.device_id,
            expires_at,
        },
        who.actor(),
    )
    .await?;
    let body = NewTokenAnswer {
        record,
        token: text,
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

#[utoipa::path(
    get,
    path = "/api/tokens",
    tag = "auth",
    responses(
        (status = 200, description = "Every token (never their text)", body = TokenList),
        (status = "4XX", description = "A client mistake or refusal: `{error, detail}`", body = super::openapi::ErrorBody),
        (status = 503, description = "The store or the audit buffer cannot take it now", body = super::openapi::ErrorBody),
    )
)]
pub async fn list_tokens(State(state): State<AppState>) -> Result<Json<TokenList>, ApiError> {
    let tokens = state.store.list_tokens().await?;
    Ok(Json(TokenList { tokens }))
}

/// `DELETE /api/tokens/{id}` (id or name): revoked at once.
#[utoipa::path(
    delete,
    path = "/api/tokens/{id}",
    tag = "auth",
    params(("id" = String, Path, description = "The token's id or name")),
    responses(
        (status = 204, description = "Done"),
        (status = "4XX", description = "A client mistake or refusal: `{error, detail}`", body = super::openapi::ErrorBody),
        (status = 503, description = "The store or the audit buffer cannot take it now", body = super::openapi::ErrorBody),
    )
)]
pub async fn revoke_token(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if state
        .store
        .auth_write(AuthWrite::RevokeToken(id.clone()), who.actor())
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "token_not_found",
            format!("no active token {id:?}"),
        ))
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    username: String,
    role: String,
    password: String,
}

#[utoipa::path(
    post,
    path = "/api/users",
    tag = "auth",
    request_body(content = NewUser, content_type = "application/json"),
    responses(
        (status = 201, description = "The new user", body = UserRecord),
        (status = "4XX", description = "A client mistake or refusal: `{error, detail}`", body = super::openapi::ErrorBody),
        (status = 503, description = "The store or the audit buffer cannot take it now", body = super::openapi::ErrorBody),
    )
)]
pub async fn create_user(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let request: NewUser = json_body(&headers, body).await?;
    let record = crate::auth::create_user(
        state.store.as_ref(),
        request.username,
        parse_role(&request.role)?,
        request.password,
        who.actor(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(record)).into_response())
}

#[utoipa::path(
    get,
    path = "/api/users",
    tag = "auth",
    responses(
        (status = 200, description = "Every dashboard user", body = UserList),
        (status = "4XX", description = "A client mistake or refusal: `{error, detail}`", body = super::openapi::ErrorBody),
        (status = 503, description = "The store or the audit buffer cannot take it now", body = super::openapi::ErrorBody),
    )
)]
pub async fn list_users(State(state): State<AppState>) -> Result<Json<UserList>, ApiError> {
    let users = state.store.list_users().await?;
    Ok(Json(UserList { users }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserChange {
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    disabled: Option<bool>,
}

/// `PUT /api/users/{name} {"password"?, "disabled"?}`: either ends the user's sessions.
#[utoipa::path(
    put,
    path = "/api/users/{name}",
    tag = "auth",
    params(("name" = String, Path, description = "The user name")),
    request_body(content = UserChange, content_type = "application/json"),
    responses(
        (status = 204, description = "Done"),
        (status = "4XX", description = "A client mistake or refusal: `{error, detail}`", body = super::openapi::ErrorBody),
        (status = 503, description = "The store or the audit buffer cannot take it now", body = super::openapi::ErrorBody),
    )
)]
pub async fn update_user(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(username): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<StatusCode, ApiError> {
    let change: UserChange = json_body(&headers, body).await?;
    if change.password.is_none() && change.disabled.is_none() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "give a new password, disabled, or both",
        ));
    }
    let mut found = true;
    if let Some(password) = change.password {
        crate::auth::check_password_strength(&password).map_err(|text| {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", text)
        })?;
        let hash = crate::auth::hash_password_blocking(password).await?;
        found &= state
            .store
            .auth_write(
                AuthWrite::SetPassword {
                    username: username.clone(),
                    hash,
                },
                who.actor(),
            )
            .await?;
    }
    if let Some(disabled) = change.disabled {
        found &= state
            .store
            .auth_write(
                AuthWrite::SetUserDisabled {
                    username: username.clone(),
                    disabled,
                },
                who.actor(),
            )
            .await?;
    }
    if !found {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "user_not_found",
            format!("no user {username:?}"),
        ));
    }
    state.auth.sessions.end_user(&username).await?;
    Ok(StatusCode::NO_CONTENT)
}
