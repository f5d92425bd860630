//! The guard in front of the real API router, driven in process with `oneshot` (no socket):
//! public routes, missing and bad credentials, roles, sessions and their CSRF token, and
//! trusted loopback. The store behind it is a real SQLite file in a temporary directory.

use super::*;
use crate::testing::{Service, service};
use axum::body::Body;
use axum::http::Request;
use tower::ServiceExt;

const LAN: &str = "10.1.2.3:40000";
const LOOPBACK: &str = "127.0.0.1:40000";

struct Answer {
    status: StatusCode,
    error: Option<String>,
    www_authenticate: bool,
}

/// One request through the guarded router, from `remote`, with extra `headers`.
async fn send(
    service: &Service,
    method: &str,
    uri: &str,
    remote: &str,
    headers: &[(&str, &str)],
) -> Answer {
    let mut builder = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let body = if method == "GET" {
        Body::empty()
    } else {
        builder = builder.header(header::CONTENT_TYPE, "application/json");
        Body::from("{}")
    };
    let mut request = builder.body(body).expect("a well-formed request");
    let remote: SocketAddr = remote.parse().expect("a socket address");
    request.extensions_mut().insert(ConnectInfo(remote));
    let response = service
        .app()
        .oneshot(request)
        .await
        .expect("the router is infallible");
    let status = response.status();
    let www_authenticate = response.headers().contains_key(header::WWW_AUTHENTICATE);
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("reading the answer");
    let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    Answer {
        status,
        error: json["error"].as_str().map(str::to_owned),
        www_authenticate,
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test]
async fn a_public_route_needs_nothing() {
    let service = service(|_| {}).await;
    let answer = send(&service, "GET", "/health", LAN, &[]).await;
    assert_eq!(answer.status, StatusCode::OK);
    // Not even a bad credential spoils it.
    let forged = bearer(&format!("vw_0123456789abcdef_{}", "0".repeat(64)));
    let answer = send(
        &service,
        "GET",
        "/health",
        LAN,
        &[("authorization", &forged)],
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
}

#[tokio::test]
async fn no_credential_is_unauthenticated_with_a_challenge() {
    let service = service(|_| {}).await;
    let answer = send(&service, "GET", "/api/devices", LAN, &[]).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.error.as_deref(), Some("unauthenticated"));
    assert!(answer.www_authenticate);
    // An unknown route reveals nothing to a stranger either.
    let answer = send(&service, "GET", "/api/no-such-route", LAN, &[]).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn bad_tokens_are_refused_each_with_its_reason() {
    let service = service(|_| {}).await;
    let admin = service.token("admin", None, None).await;
    let mut tampered = admin.clone();
    let last = tampered.pop().expect("a token is not empty");
    tampered.push(if last == '0' { '1' } else { '0' });
    let expired = service
        .token("admin", None, Some("2000-01-01T00:00:00.000Z".to_owned()))
        .await;
    let revoked = service.token("viewer", None, None).await;
    let revoked_id = crate::auth::parse_token(&revoked)
        .expect("a generated token parses")
        .0
        .to_owned();
    service
        .store
        .auth_write(
            crate::store::AuthWrite::RevokeToken(revoked_id),
            "test".to_owned(),
        )
        .await
        .expect("revoking");
    let cases = [
        (format!("Basic {admin}"), "invalid_token"),
        (bearer("not-a-token"), "invalid_token"),
        (
            bearer(&format!("vw_0123456789abcdef_{}", "0".repeat(64))),
            "invalid_token",
        ),
        (bearer(&tampered), "invalid_token"),
        (bearer(&expired), "token_expired"),
        (bearer(&revoked), "token_revoked"),
    ];
    for (authorization, code) in cases {
        let answer = send(
            &service,
            "GET",
            "/api/devices",
            LAN,
            &[("authorization", &authorization)],
        )
        .await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{code}");
        assert_eq!(answer.error.as_deref(), Some(code));
        assert!(answer.www_authenticate, "{code}");
    }
    // The untouched token works.
    let answer = send(
        &service,
        "GET",
        "/api/devices",
        LAN,
        &[("authorization", &bearer(&admin))],
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
}

#[tokio::test]
async fn a_role_below_the_routes_rule_is_forbidden_and_the_right_one_passes() {
    let service = service(|_| {}).await;
    let viewer = bearer(&service.token("viewer", None, None).await);
    let clinician = bearer(&service.token("clinician", None, None).await);
    let device = bearer(&service.token("device", Some("bed-1"), None).await);
    let cases = [
        ("GET", "/api/devices", &viewer, StatusCode::OK),
        ("GET", "/api/devices", &device, StatusCode::FORBIDDEN),
        ("POST", "/api/devices", &viewer, StatusCode::FORBIDDEN),
        ("POST", "/api/devices", &clinician, StatusCode::FORBIDDEN),
        ("GET", "/api/tokens", &clinician, StatusCode::FORBIDDEN),
        ("POST", "/api/telemetry", &viewer, StatusCode::FORBIDDEN),
        // A token is not a signed-in user.
        ("POST", "/auth/password", &clinician, StatusCode::FORBIDDEN),
    ];
    for (method, uri, authorization, status) in cases {
        let answer = send(
            &service,
            method,
            uri,
            LAN,
            &[("authorization", authorization)],
        )
        .await;
        assert_eq!(answer.status, status, "{method} {uri}");
        if status == StatusCode::FORBIDDEN {
            assert_eq!(answer.error.as_deref(), Some("forbidden"), "{method} {uri}");
        }
    }
    // Past the guard, the handler answers (an empty body is a bad request, not a refusal).
    let answer = send(
        &service,
        "POST",
        "/api/alerts/1/ack",
        LAN,
        &[("authorization", &clinician)],
    )
    .await;
    assert!(
        ![StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN].contains(&answer.status),
        "{:?}",
        answer.status
    );
}

#[tokio::test]
async fn a_session_change_needs_its_csrf_token() {
    let service = service(|_| {}).await;
    service.user("alice", "clinician").await;
    let (id, csrf) = service
        .auth
        .sessions
        .create("alice", crate::auth::Role::Clinician);
    let cookie = format!("{}={id}", crate::auth::session::COOKIE);
    let read = send(&service, "GET", "/api/devices", LAN, &[("cookie", &cookie)]).await;
    assert_eq!(read.status, StatusCode::OK);
    let change = "/api/alerts/1/ack";
    let without = send(&service, "POST", change, LAN, &[("cookie", &cookie)]).await;
    assert_eq!(
        (without.status, without.error.as_deref()),
        (StatusCode::FORBIDDEN, Some("csrf"))
    );
    let wrong = send(
        &service,
        "POST",
        change,
        LAN,
        &[("cookie", &cookie), (CSRF_HEADER, "0".repeat(64).as_str())],
    )
    .await;
    assert_eq!(wrong.error.as_deref(), Some("csrf"));
    let with = send(
        &service,
        "POST",
        change,
        LAN,
        &[("cookie", &cookie), (CSRF_HEADER, &csrf)],
    )
    .await;
    assert!(
        ![StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN].contains(&with.status),
        "{:?} {:?}",
        with.status,
        with.error
    );
    // A logged-out session is over.
    service.auth.sessions.remove(&id);
    let after = send(&service, "GET", "/api/devices", LAN, &[("cookie", &cookie)]).await;
    assert_eq!(
        (after.status, after.error.as_deref()),
        (StatusCode::UNAUTHORIZED, Some("session_expired"))
    );
}

#[tokio::test]
async fn trusted_loopback_refuses_a_host_name_that_is_not_loopback() {
    let service = service(|config| config.http.trust_loopback = true).await;
    for host in ["localhost:5000", "127.0.0.1:5000", "[::1]:5000"] {
        let answer = send(&service, "GET", "/api/devices", LOOPBACK, &[("host", host)]).await;
        assert_eq!(answer.status, StatusCode::OK, "{host}");
    }
    // A page elsewhere that rebinds its name to 127.0.0.1 is not this workstation.
    for host in ["rebind.attacker.example", "rebind.attacker.example:5000"] {
        let answer = send(&service, "GET", "/api/devices", LOOPBACK, &[("host", host)]).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{host}");
    }
    // Nor is another machine, whatever it calls us.
    let answer = send(
        &service,
        "GET",
        "/api/devices",
        LAN,
        &[("host", "localhost")],
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    // Without --trust-loopback, loopback is a stranger too.
    let untrusted = crate::testing::service(|_| {}).await;
    let answer = send(
        &untrusted,
        "GET",
        "/api/devices",
        LOOPBACK,
        &[("host", "localhost")],
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_token_stays_valid_only_until_it_expires_or_is_revoked() {
    let service = service(|_| {}).await;
    let principal = |id: &str| Principal {
        name: "t".to_owned(),
        role: Some(crate::auth::Role::Admin),
        device_id: None,
        credential: Credential::Token { id: id.to_owned() },
    };
    let soon = (chrono::Utc::now() + chrono::TimeDelta::hours(1)).to_rfc3339();
    let live = service.token("admin", None, Some(soon)).await;
    let past = service
        .token("admin", None, Some("2000-01-01T00:00:00.000Z".to_owned()))
        .await;
    let id_of = |text: &str| {
        crate::auth::parse_token(text)
            .expect("a generated token parses")
            .0
            .to_owned()
    };
    assert!(service.auth.still_valid(&principal(&id_of(&live))).await);
    assert!(!service.auth.still_valid(&principal(&id_of(&past))).await);
    assert!(
        !service
            .auth
            .still_valid(&principal("0123456789abcdef"))
            .await
    );
}

/// Token expiry on the service's clock: paused, a token valid for an hour is accepted, and
/// refused as expired once the clock has moved past its expiry (no wall time passes).
#[tokio::test(start_paused = true)]
async fn a_token_is_refused_once_the_clock_passes_its_expiry() {
    let service = service(|_| {}).await;
    let expiry = (crate::clock::now_utc() + chrono::TimeDelta::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let token = service.token("viewer", None, Some(expiry)).await;
    let authorization = bearer(&token);
    let headers = [("authorization", authorization.as_str())];
    let answer = send(&service, "GET", "/api/devices", LAN, &headers).await;
    assert_eq!(answer.status, StatusCode::OK);
    tokio::time::advance(std::time::Duration::from_secs(59 * 60)).await;
    let answer = send(&service, "GET", "/api/devices", LAN, &headers).await;
    assert_eq!(answer.status, StatusCode::OK, "still inside its hour");
    tokio::time::advance(std::time::Duration::from_secs(2 * 60)).await;
    let answer = send(&service, "GET", "/api/devices", LAN, &headers).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.error.as_deref(), Some("token_expired"));
}
