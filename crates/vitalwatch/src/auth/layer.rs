//! The authentication and authorization middleware, and the session endpoints
//! (`/auth/login`, `/auth/logout`, `/auth/me`).

use super::audit_buffer::AuditBuffer;
use super::login::LoginLimiter;
use super::routes::Policy;
use super::session::{COOKIE, Sessions};
use super::{Access, Credential, Principal, Role};
use crate::api_error::ApiError;
use crate::config::HttpConfig;
use crate::secret::Secret;
use crate::store::{AuditEntry, Store, TokenState};
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// The header a session's state-changing requests carry their CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Everything the middleware and the session endpoints share.
pub struct AuthService {
    pub store: Arc<dyn Store>,
    pub sessions: Sessions,
    pub limiter: LoginLimiter,
    pub audit: Arc<AuditBuffer>,
    pub trust_loopback: bool,
    /// Open live streams, bounded in all and per caller.
    pub live_streams: Arc<super::streams::LiveStreams>,
    /// [`AuthService::still_valid`]'s answers for a moment, so open streams do not query the
    /// store each: (credential key) → (valid, when checked).
    validity: parking_lot::Mutex<std::collections::HashMap<String, (bool, tokio::time::Instant)>>,
}

/// How long a [`AuthService::still_valid`] answer is reused.
const VALIDITY_CACHE: Duration = Duration::from_secs(2);

impl AuthService {
    /// On a store several nodes share, sessions and login failures live in it.
    pub fn new(store: Arc<dyn Store>, config: &HttpConfig) -> AuthService {
        let mut sessions = Sessions::new(
            Duration::from_secs(config.session_idle_timeout_s),
            Duration::from_secs(config.session_max_age_s),
        );
        let mut limiter = LoginLimiter::new(
            config.login_failures_per_user,
            config.login_failures_per_address,
            Duration::from_secs(config.login_window_s),
            config.login_concurrency,
        );
        if let Some(cluster) = store.cluster() {
            sessions = sessions.shared(Arc::clone(&cluster));
            limiter = limiter.shared(cluster);
        }
        AuthService {
            audit: Arc::new(AuditBuffer::new(Arc::clone(&store), config.audit_buffer)),
            store,
            sessions,
            limiter,
            trust_loopback: config.trust_loopback,
            live_streams: super::streams::LiveStreams::new(
                config.max_live_streams,
                config.max_live_streams_per_caller,
            ),
            validity: parking_lot::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// Whether a caller authenticated earlier still is: its session has not ended (an open
    /// stream does not count as activity, so idle sessions still end), its user is enabled,
    /// its token is neither revoked nor expired. Long-lived responses (the live stream) check
    /// this periodically and end when it is false.
    pub async fn still_valid(&self, principal: &Principal) -> bool {
        let key = match &principal.credential {
            Credential::Loopback => return true,
            Credential::Session { id, .. } => format!("session:{}", id.expose()),
            Credential::Token { id } => format!("token:{id}"),
        };
        let now = tokio::time::Instant::now();
        if let Some((valid, at)) = self.validity.lock().get(&key)
            && now.duration_since(*at) < VALIDITY_CACHE
        {
            return *valid;
        }
        let valid = self.check_still_valid(principal).await;
        let mut cache = self.validity.lock();
        if cache.len() > 10_000 {
            cache.retain(|_, (_, at)| now.duration_since(*at) < VALIDITY_CACHE);
        }
        cache.insert(key, (valid, now));
        valid
    }

    async fn check_still_valid(&self, principal: &Principal) -> bool {
        match &principal.credential {
            Credential::Loopback => true,
            Credential::Session { id, .. } => {
                matches!(self.sessions.is_live(id.expose()).await, Ok(true))
                    && matches!(
                        self.store.find_user(principal.name.clone()).await,
                        Ok(Some(user)) if user.disabled_at.is_none()
                    )
            }
            Credential::Token { id } => match self.store.find_token(id.clone()).await {
                Ok(Some(token)) => token.state(crate::clock::now_utc()) == TokenState::Active,
                _ => false,
            },
        }
    }

    /// Records a failed authentication (buffered; a full buffer is counted, not waited on).
    pub fn audit_failure(&self, action: &str, remote: IpAddr, reason: &str, path: &str) {
        self.audit.record_from(
            remote,
            AuditEntry {
                actor: format!("anonymous:{remote}"),
                action: action.to_owned(),
                target: path.to_owned(),
                details: serde_json::json!({ "reason": reason }),
            },
        );
    }
}

/// The middleware's state: the service and the routes' rules.
#[derive(Clone)]
pub struct Guard {
    pub service: Arc<AuthService>,
    pub policy: Arc<Policy>,
}

fn unauthenticated(code: &'static str, detail: &str) -> Response {
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, code, detail).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"vitalwatch\""),
    );
    response
}

/// The session cookie's value, if the request has one.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// Whether the request names this host by a loopback name (`Host: localhost:5000`,
/// `127.0.0.1`, `[::1]`; over HTTP/2 the `:authority`, which hyper keeps in the URI). A web
/// page from elsewhere that got a browser on this host to send the request (DNS rebinding)
/// names its own domain, and so is not trusted; a name with userinfo (`localhost@evil`) is
/// not a loopback name.
fn loopback_host(headers: &HeaderMap, uri: &axum::http::Uri) -> bool {
    let host = match headers.get(header::HOST) {
        Some(value) => match value.to_str() {
            Ok(host) => host,
            Err(_) => return false,
        },
        None => match uri.authority() {
            Some(authority) => authority.as_str(),
            // curl over HTTP/1.1 always sends a Host; no name at all is not a rebinding page.
            None => return true,
        },
    };
    if host.contains('@') {
        return false;
    }
    let name = match host.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((name, port)) if port.is_empty() || port.starts_with(':') => name,
            _ => return false,
        },
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

/// Whether a state-changing request from a trusted loopback caller cannot be a cross-site
/// one: it carries `X-CSRF-Token` (any value: a page from elsewhere cannot add a header
/// without a CORS preflight, which this API never grants) or a JSON body (likewise), and any
/// `Origin` it names is a loopback one.
fn loopback_not_cross_site(headers: &HeaderMap) -> bool {
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let host = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .unwrap_or("");
        let mut named = HeaderMap::new();
        match HeaderValue::from_str(host) {
            Ok(value) if !host.is_empty() => {
                named.insert(header::HOST, value);
            }
            _ => return false,
        }
        if !loopback_host(&named, &axum::http::Uri::default()) {
            return false;
        }
    }
    headers.contains_key(CSRF_HEADER) || crate::api_error::is_json(headers)
}

enum AuthFailure {
    /// 401 with a stable code.
    Unauthenticated(&'static str, &'static str),
}

/// Works out who sent the request; `Ok(None)` when it carries no credentials.
async fn identify(
    service: &AuthService,
    headers: &HeaderMap,
    uri: &axum::http::Uri,
    remote: SocketAddr,
) -> Result<Option<Principal>, AuthFailure> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let text = value.to_str().unwrap_or("");
        let Some(token) = text
            .strip_prefix("Bearer ")
            .or_else(|| text.strip_prefix("bearer "))
        else {
            return Err(AuthFailure::Unauthenticated(
                "invalid_token",
                "use Authorization: Bearer <token>",
            ));
        };
        let invalid = AuthFailure::Unauthenticated("invalid_token", "the token is not valid");
        let Some((id, secret)) = super::parse_token(token.trim()) else {
            return Err(invalid);
        };
        let record = match service.store.find_token(id.to_owned()).await {
            Ok(Some(record)) => record,
            Ok(None) => return Err(invalid),
            Err(err) => {
                tracing::error!(event = "auth.token_lookup_failed", message = "Token lookup failed.", error = %err);
                return Err(invalid);
            }
        };
        if !super::constant_time_eq(&super::hash_secret(secret), &record.secret_hash) {
            return Err(invalid);
        }
        match record.state(crate::clock::now_utc()) {
            TokenState::Active => {}
            TokenState::Revoked => {
                return Err(AuthFailure::Unauthenticated(
                    "token_revoked",
                    "the token has been revoked",
                ));
            }
            TokenState::Expired => {
                return Err(AuthFailure::Unauthenticated(
                    "token_expired",
                    "the token has expired",
                ));
            }
        }
        let Some(role) = Role::parse(&record.role) else {
            return Err(invalid);
        };
        return Ok(Some(Principal {
            name: record.name,
            role: Some(role),
            device_id: record.device_id,
            credential: Credential::Token { id: record.id },
        }));
    }
    if let Some(cookie) = session_cookie(headers) {
        let expired =
            AuthFailure::Unauthenticated("session_expired", "the session has ended; log in again");
        let session = match service.sessions.lookup(cookie).await {
            Ok(Some(session)) => session,
            Ok(None) => return Err(expired),
            Err(err) => {
                tracing::error!(event = "auth.session_lookup_failed", message = "Session lookup failed.", error = %err);
                return Err(expired);
            }
        };
        // A disabled user's sessions end at once, whatever the cookie says.
        match service.store.find_user(session.username.clone()).await {
            Ok(Some(user)) if user.disabled_at.is_none() => {}
            _ => {
                let _ = service.sessions.end(cookie).await;
                return Err(expired);
            }
        }
        return Ok(Some(Principal {
            name: session.username,
            role: Some(session.role),
            device_id: None,
            credential: Credential::Session {
                id: Secret::new(cookie),
                csrf: Secret::new(session.csrf),
            },
        }));
    }
    if service.trust_loopback
        && remote.ip().to_canonical().is_loopback()
        && loopback_host(headers, uri)
    {
        return Ok(Some(Principal {
            name: remote.ip().to_string(),
            role: None,
            device_id: None,
            credential: Credential::Loopback,
        }));
    }
    Ok(None)
}

/// Refuses what the route's rule does not allow, audits patient-data reads, and hands the
/// caller to the handler as a [`Principal`] extension.
pub async fn authorize(
    State(guard): State<Guard>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    mut request: Request,
    next: Next,
) -> Response {
    let service = &guard.service;
    let matched = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let rule = matched
        .as_deref()
        .and_then(|path| guard.policy.lookup(request.method(), path))
        .cloned();
    if rule.as_ref().is_some_and(|r| r.access == Access::Public) {
        // A public route may say more to a caller who proves who they are (`/health`).
        if let Ok(Some(principal)) =
            identify(service, request.headers(), request.uri(), remote).await
        {
            request.extensions_mut().insert(principal);
        }
        return next.run(request).await;
    }
    let path = request.uri().path().to_owned();
    let principal = match identify(service, request.headers(), request.uri(), remote).await {
        Ok(Some(principal)) => principal,
        Ok(None) => {
            service.audit_failure("auth.failed", remote.ip(), "no credentials", &path);
            return unauthenticated(
                "unauthenticated",
                "this route needs a token (Authorization: Bearer …) or a dashboard login",
            );
        }
        Err(AuthFailure::Unauthenticated(code, detail)) => {
            service.audit_failure("auth.failed", remote.ip(), code, &path);
            return unauthenticated(code, detail);
        }
    };
    let Some(rule) = rule else {
        // No rule for this method: the router answers 404 or 405 — unless the route was added
        // without any rule at all, which nobody may use (deny by default).
        if let Some(matched) = &matched
            && !guard.policy.knows_path(matched)
        {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this route has no access rule",
            )
            .into_response();
        }
        request.extensions_mut().insert(principal);
        return next.run(request).await;
    };
    let session_only = rule.access == Access::Session
        && !matches!(principal.credential, Credential::Session { .. });
    if session_only || !rule.access.allows(principal.role) {
        let _ = service.audit.record(AuditEntry {
            actor: principal.actor(),
            action: "auth.forbidden".to_owned(),
            target: path,
            details: serde_json::json!({
                "method": request.method().as_str(),
                "role": principal.role_name(),
                "needs": rule.access,
            }),
        });
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            if session_only {
                "this route is for a signed-in dashboard user".to_owned()
            } else {
                format!("the {} role may not use this route", principal.role_name())
            },
        )
        .into_response();
    }
    if let Credential::Session { csrf, .. } = &principal.credential
        && !matches!(
            *request.method(),
            Method::GET | Method::HEAD | Method::OPTIONS
        )
    {
        let presented = request
            .headers()
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok());
        if !Sessions::csrf_matches(csrf.expose(), presented) {
            let _ = service.audit.record(AuditEntry {
                actor: principal.actor(),
                action: "auth.csrf_refused".to_owned(),
                target: path,
                details: serde_json::json!({ "method": request.method().as_str() }),
            });
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf",
                "a state-changing request from the dashboard needs its X-CSRF-Token header",
            )
            .into_response();
        }
    }
    if matches!(principal.credential, Credential::Loopback)
        && !matches!(
            *request.method(),
            Method::GET | Method::HEAD | Method::OPTIONS
        )
        && !loopback_not_cross_site(request.headers())
    {
        let _ = service.audit.record(AuditEntry {
            actor: principal.actor(),
            action: "auth.csrf_refused".to_owned(),
            target: path,
            details: serde_json::json!({ "method": request.method().as_str() }),
        });
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "csrf",
            "a state-changing request needs an X-CSRF-Token header (any value) or a JSON body",
        )
        .into_response();
    }
    if rule.patient_data {
        let entry = AuditEntry {
            actor: principal.actor(),
            action: "phi.read".to_owned(),
            target: path,
            details: serde_json::json!({
                "route": rule.path,
                "query": request.uri().query().unwrap_or(""),
            }),
        };
        if service.audit.record(entry).is_err() {
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "audit_unavailable",
                "patient data cannot be served while the audit trail is not keeping up; retry shortly",
            )
            .into_response();
        }
    }
    request.extensions_mut().insert(principal);
    next.run(request).await
}

#[cfg(test)]
mod tests;
