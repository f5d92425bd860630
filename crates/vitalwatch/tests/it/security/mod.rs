//! Access control on the real server with its defaults (HTTPS, deny by default): every
//! registered route × every kind of caller, device tokens bound to their device, dashboard
//! sessions (cookie flags, CSRF, idle end, throttled logins), security headers, plaintext
//! refused on the HTTPS port, and the audit trail of reads and refusals.

use crate::support::{
    Server, ServerOptions, WAIT, bin, https_agent, poll_until, run_with_stdin, wait_until,
};
use serde_json::Value;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use vitalwatch::auth::{Access, Role};

struct Reply {
    status: u16,
    headers: ureq::http::HeaderMap,
    json: Value,
}

impl Reply {
    /// The refusal's stable code: the API's `error`, or under /fhir the code an
    /// OperationOutcome's diagnostics start with (`invalid_token: …`).
    fn error_code(&self) -> Value {
        if self.json["resourceType"] == "OperationOutcome" {
            let diagnostics = self.json["issue"][0]["diagnostics"].as_str().unwrap_or("");
            return Value::from(diagnostics.split(':').next().unwrap_or(""));
        }
        self.json["error"].clone()
    }
}

#[derive(Default, Clone, Copy)]
struct Creds<'a> {
    bearer: Option<&'a str>,
    cookie: Option<&'a str>,
    csrf: Option<&'a str>,
}

mod abuse;
mod broker;
mod commands;
mod floods;
mod sessions;
mod transport;

fn login(agent: &ureq::Agent, server: &Server, user: &str, password: &str) -> Reply {
    call(
        agent,
        "POST",
        &server.url("/auth/login"),
        Creds::default(),
        Some(&serde_json::json!({ "username": user, "password": password }).to_string()),
    )
}

/// The session cookie (`vw_session=…`) and CSRF token of a successful login.
fn session_of(reply: &Reply) -> (String, String) {
    assert_eq!(reply.status, 200, "{}", reply.json);
    let set_cookie = reply.headers["set-cookie"].to_str().unwrap();
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    (
        cookie,
        reply.json["csrf_token"].as_str().unwrap().to_owned(),
    )
}

fn call(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    creds: Creds<'_>,
    body: Option<&str>,
) -> Reply {
    let mut builder = ureq::http::Request::builder().method(method).uri(url);
    if let Some(token) = creds.bearer {
        builder = builder.header("Authorization", format!("Bearer {token}"));
    }
    if let Some(cookie) = creds.cookie {
        builder = builder.header("Cookie", cookie);
    }
    if let Some(csrf) = creds.csrf {
        builder = builder.header("X-CSRF-Token", csrf);
    }
    if body.is_some() {
        builder = builder.header("Content-Type", "application/json");
    }
    let request = builder
        .body(body.unwrap_or("").as_bytes().to_vec())
        .unwrap();
    let mut response = agent
        .run(request)
        .unwrap_or_else(|err| panic!("{method} {url}: transport failure: {err}"));
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    // The live stream never ends: its status and headers are enough.
    let text = if url.contains("/api/events") && status == 200 {
        String::new()
    } else {
        response.body_mut().read_to_string().unwrap_or_default()
    };
    Reply {
        status,
        headers,
        json: serde_json::from_str(&text).unwrap_or(Value::Null),
    }
}

fn cli(dir: &Path, args: &[&str], stdin: &str) -> String {
    let output = run_with_stdin(dir, args, stdin);
    assert!(
        output.status.success(),
        "vitalwatch {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// A dashboard user, made with the real CLI (the password goes in on standard input).
fn create_user(dir: &Path, name: &str, role: &str, password: &str) {
    cli(
        dir,
        &["users", "create", "--name", name, "--role", role],
        &format!("{password}\n"),
    );
}

fn token(dir: &Path, role: &str, name: &str, extra: &[&str]) -> String {
    let mut args = vec!["tokens", "create", "--role", role, "--name", name];
    args.extend_from_slice(extra);
    let text = cli(dir, &args, "");
    assert!(text.starts_with("vw_"), "{text}");
    text
}

fn start(dir: &Path) -> Server {
    Server::start_secure(ServerOptions::new(dir))
}

fn concrete(path: &str) -> String {
    path.replace("/api/devices/{id}", "/api/devices/WARD_1")
        .replace("/api/alerts/{id}", "/api/alerts/1")
        .replace("{id}", "no-such-token")
        .replace("{name}", "nobody")
        .replace("{file}", "favicon.svg")
}

fn reading(device: &str, heart_rate: f64) -> String {
    format!(
        r#"{{"device_id":"{device}","heart_rate":{heart_rate},"body_temp":36.8,"signal_strength":-55,"battery_level":90}}"#
    )
}

#[test]
fn every_route_answers_each_kind_of_caller_as_its_rule_says() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let agent = https_agent(&server.data_dir);
    let tokens: std::collections::HashMap<Role, String> = Role::ALL
        .into_iter()
        .map(|role| {
            let extra: &[&str] = if role == Role::Device {
                &["--device", "WARD_1"]
            } else {
                &[]
            };
            (role, token(dir.path(), role.as_str(), role.as_str(), extra))
        })
        .collect();
    let expiring = token(
        dir.path(),
        "admin",
        "expiring",
        &["--expires", &{
            (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339()
        }],
    );
    let revoked = token(dir.path(), "admin", "revoked", &[]);
    cli(dir.path(), &["tokens", "revoke", "revoked"], "");
    // A well-formed token nobody issued, and a real one with its secret changed.
    let forged = format!("vw_0123456789abcdef_{}", "0".repeat(64));
    let mut tampered = tokens[&Role::Admin].clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == '0' { '1' } else { '0' });
    // The device reading that the read routes find, posted with the device's own token.
    let posted = call(
        &agent,
        "POST",
        &server.url("/api/telemetry"),
        Creds {
            bearer: Some(&tokens[&Role::Device]),
            ..Creds::default()
        },
        Some(&reading("WARD_1", 72.0)),
    );
    assert_eq!(posted.status, 200, "{}", posted.json);
    // The expiring token is refused once its time has come.
    wait_until(WAIT, "the expiring token to expire", || {
        let reply = call(
            &agent,
            "GET",
            &server.url("/auth/me"),
            Creds {
                bearer: Some(&expiring),
                ..Creds::default()
            },
            None,
        );
        reply.json["error"] == "token_expired"
    });

    // A signed-in dashboard user, for the routes only a session may use.
    create_user(dir.path(), "dora", "viewer", "a long enough password");
    let (cookie, csrf) = session_of(&login(&agent, &server, "dora", "a long enough password"));
    let user_session = Creds {
        cookie: Some(&cookie),
        csrf: Some(&csrf),
        ..Creds::default()
    };

    let table = vitalwatch::api::route_table(false);
    assert!(table.len() >= 35, "the API has {} routes", table.len());
    let mut checked = 0;
    for rule in &table {
        let url = server.url(&concrete(rule.path));
        let method = rule.method.as_str();
        let body = matches!(method, "POST" | "PUT").then_some("{}");
        let status_with = |bearer: Option<&str>| {
            call(
                &agent,
                method,
                &url,
                Creds {
                    bearer,
                    ..Creds::default()
                },
                body,
            )
        };
        let what = format!("{method} {}", rule.path);
        if rule.access == Access::Public {
            for bearer in [None, Some(forged.as_str())] {
                let reply = status_with(bearer);
                assert!(
                    ![401, 403].contains(&reply.status),
                    "{what}: {}",
                    reply.status
                );
            }
            checked += 1;
            continue;
        }
        for (bearer, code) in [
            (None, "unauthenticated"),
            (Some(forged.as_str()), "invalid_token"),
            (Some(tampered.as_str()), "invalid_token"),
            (Some("not-a-token"), "invalid_token"),
            (Some(expiring.as_str()), "token_expired"),
            (Some(revoked.as_str()), "token_revoked"),
        ] {
            let reply = status_with(bearer);
            assert_eq!(reply.status, 401, "{what} with {code}: {}", reply.json);
            assert_eq!(reply.error_code(), code, "{what}");
            assert!(reply.headers.contains_key("www-authenticate"), "{what}");
        }
        let wrong = match rule.access {
            Access::Read => Some(Role::Device),
            Access::Clinical => Some(Role::Viewer),
            Access::Admin => Some(Role::Clinician),
            Access::Telemetry => Some(Role::Admin),
            // A token is not a signed-in user.
            Access::Session => Some(Role::Viewer),
            // Patient data is not for a scraper, and metrics not for a viewer.
            Access::Metrics => Some(Role::Viewer),
            Access::Authenticated | Access::Public => None,
        };
        if let Some(wrong) = wrong {
            let reply = status_with(Some(&tokens[&wrong]));
            assert_eq!(reply.status, 403, "{what} as {wrong:?}: {}", reply.json);
            assert_eq!(reply.error_code(), "forbidden", "{what}");
        }
        // A metrics token reads metrics and nothing else.
        if !matches!(rule.access, Access::Metrics | Access::Authenticated) {
            let reply = status_with(Some(&tokens[&Role::Metrics]));
            assert_eq!(
                reply.status, 403,
                "{what} as a metrics token: {}",
                reply.json
            );
        }
        let right = rule.access.least_role().unwrap();
        let reply = if rule.access == Access::Session {
            call(&agent, method, &url, user_session, body)
        } else {
            status_with(Some(&tokens[&right]))
        };
        assert!(
            ![401, 403].contains(&reply.status) && reply.status < 500,
            "{what} as {right:?}: {} {}",
            reply.status,
            reply.json
        );
        // Roles above the least one are admitted too (the device role stands apart).
        if matches!(rule.access, Access::Read | Access::Clinical) {
            let reply = status_with(Some(&tokens[&Role::Admin]));
            assert!(![401, 403].contains(&reply.status), "{what} as admin");
        }
        checked += 1;
    }
    assert_eq!(checked, table.len());

    // The dashboard's listener serves the same API plus its page: the same rules hold there.
    let dashboard = server.listeners["dashboard"];
    let dashboard_table = vitalwatch::api::route_table(true);
    assert!(dashboard_table.len() > table.len());
    for rule in &dashboard_table {
        let url = format!("https://{dashboard}{}", concrete(rule.path));
        let method = rule.method.as_str();
        let body = matches!(method, "POST" | "PUT").then_some("{}");
        let reply = call(&agent, method, &url, Creds::default(), body);
        if rule.access == Access::Public {
            assert!(![401, 403].contains(&reply.status), "{method} {url}");
        } else {
            assert_eq!(reply.status, 401, "{method} {url} without a token");
        }
    }

    // Unknown routes reveal nothing to strangers; a caller with a token gets 404.
    let unknown = server.url("/api/no-such-route");
    assert_eq!(
        call(&agent, "GET", &unknown, Creds::default(), None).status,
        401
    );
    let viewer = Creds {
        bearer: Some(&tokens[&Role::Viewer]),
        ..Creds::default()
    };
    assert_eq!(call(&agent, "GET", &unknown, viewer, None).status, 404);

    // Tokens, good or bad, never reach the (debug-level) log; their secrets are not stored.
    let log = server.log();
    let mut db = std::fs::read(server.data_dir.join("anomalies.db")).unwrap_or_default();
    db.extend(std::fs::read(server.data_dir.join("anomalies.db-wal")).unwrap_or_default());
    // On PostgreSQL: every row of the tables that hold credentials or their traces, as text.
    if crate::support::backend::is_postgres(&server.data_dir) {
        for table in ["api_tokens", "users", "sessions", "audit_log"] {
            db.extend(
                server
                    .sql(&format!("SELECT t::text FROM {table} t"))
                    .into_bytes(),
            );
        }
    }
    assert!(!db.is_empty(), "the store holds something to search");
    for text in tokens
        .values()
        .chain([&forged, &tampered, &expiring, &revoked])
    {
        assert!(!log.contains(&text[20..]), "the log holds a token");
    }
    // (The forged one's all-zero secret would match the chain's genesis hash.)
    for text in tokens.values().chain([&expiring, &revoked]) {
        let secret = &text[20..];
        assert!(
            !db.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "a token secret is stored"
        );
    }
}

#[test]
fn a_device_token_posts_only_for_its_own_device_and_revocation_is_immediate() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let agent = https_agent(&server.data_dir);
    let device = token(dir.path(), "device", "bed-1", &["--device", "BED_1"]);
    let admin = token(dir.path(), "admin", "ops", &[]);
    let as_device = Creds {
        bearer: Some(&device),
        ..Creds::default()
    };
    let url = server.url("/api/telemetry");
    let own = call(
        &agent,
        "POST",
        &url,
        as_device,
        Some(&reading("BED_1", 70.0)),
    );
    assert_eq!(own.status, 200, "{}", own.json);
    let other = call(
        &agent,
        "POST",
        &url,
        as_device,
        Some(&reading("BED_2", 70.0)),
    );
    assert_eq!(other.status, 403, "{}", other.json);
    // One foreign reading in a batch refuses the whole batch.
    let batch = format!("[{},{}]", reading("BED_1", 71.0), reading("BED_2", 71.0));
    assert_eq!(
        call(&agent, "POST", &url, as_device, Some(&batch)).status,
        403
    );

    // Revoked through the API by an admin: refused on the next request.
    let tokens = call(
        &agent,
        "GET",
        &server.url("/api/tokens"),
        Creds {
            bearer: Some(&admin),
            ..Creds::default()
        },
        None,
    );
    let listed = tokens.json["tokens"].to_string();
    assert!(
        listed.contains("bed-1") && !listed.contains(&device[20..]),
        "{listed}"
    );
    let revoke = call(
        &agent,
        "DELETE",
        &server.url("/api/tokens/bed-1"),
        Creds {
            bearer: Some(&admin),
            ..Creds::default()
        },
        None,
    );
    assert_eq!(revoke.status, 204);
    let after = call(
        &agent,
        "POST",
        &url,
        as_device,
        Some(&reading("BED_1", 72.0)),
    );
    assert_eq!(
        (after.status, after.json["error"].as_str()),
        (401, Some("token_revoked"))
    );

    // /health needs nothing and says nothing about patients.
    let health = call(
        &agent,
        "GET",
        &server.url("/health"),
        Creds::default(),
        None,
    );
    assert_eq!(health.status, 200);
    assert!(
        !health.json.to_string().contains("BED_1"),
        "{}",
        health.json
    );

    // The stored readings: one, from the device's own post.
    let devices: Vec<String> = server
        .sql("SELECT DISTINCT device_id FROM readings")
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(devices, ["BED_1"]);
}
