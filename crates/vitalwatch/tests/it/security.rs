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

#[derive(Default, Clone, Copy)]
struct Creds<'a> {
    bearer: Option<&'a str>,
    cookie: Option<&'a str>,
    csrf: Option<&'a str>,
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
            assert_eq!(reply.json["error"], code, "{what}");
            assert!(reply.headers.contains_key("www-authenticate"), "{what}");
        }
        let wrong = match rule.access {
            Access::Read => Some(Role::Device),
            Access::Clinical => Some(Role::Viewer),
            Access::Admin => Some(Role::Clinician),
            Access::Telemetry => Some(Role::Admin),
            // A token is not a signed-in user.
            Access::Session => Some(Role::Viewer),
            Access::Authenticated | Access::Public => None,
        };
        if let Some(wrong) = wrong {
            let reply = status_with(Some(&tokens[&wrong]));
            assert_eq!(reply.status, 403, "{what} as {wrong:?}: {}", reply.json);
            assert_eq!(reply.json["error"], "forbidden", "{what}");
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
    let mut db = std::fs::read(server.data_dir.join("anomalies.db")).unwrap();
    db.extend(std::fs::read(server.data_dir.join("anomalies.db-wal")).unwrap_or_default());
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
    let db = rusqlite::Connection::open(server.data_dir.join("anomalies.db")).unwrap();
    let devices: Vec<String> = db
        .prepare("SELECT DISTINCT device_id FROM readings")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(devices, ["BED_1"]);
}

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

#[test]
fn dashboard_sessions_use_strict_cookies_csrf_and_throttled_logins() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let agent = https_agent(&server.data_dir);
    let password = "correct horse battery staple";
    create_user(dir.path(), "alice", "clinician", password);
    // A short password is refused.
    let short = run_with_stdin(
        dir.path(),
        &["users", "create", "--name", "bob", "--role", "viewer"],
        "short\n",
    );
    assert!(!short.status.success());
    assert!(String::from_utf8_lossy(&short.stderr).contains("12 characters"));

    let wrong = login(&agent, &server, "alice", "wrong password here");
    assert_eq!(
        (wrong.status, wrong.json["error"].as_str()),
        (401, Some("login_failed"))
    );
    let unknown = login(&agent, &server, "mallory", "wrong password here");
    assert_eq!(
        unknown.json, wrong.json,
        "an unknown user looks like a wrong password"
    );

    let ok = login(&agent, &server, "alice", password);
    assert_eq!(ok.status, 200, "{}", ok.json);
    let set_cookie = ok.headers["set-cookie"].to_str().unwrap().to_owned();
    for flag in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(flag), "{set_cookie}");
    }
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let csrf = ok.json["csrf_token"].as_str().unwrap().to_owned();
    let session = Creds {
        cookie: Some(&cookie),
        ..Creds::default()
    };

    let me = call(&agent, "GET", &server.url("/auth/me"), session, None);
    assert_eq!(me.json["role"], "clinician");
    assert_eq!(me.json["csrf_token"], csrf.as_str());
    let devices = call(&agent, "GET", &server.url("/api/devices"), session, None);
    assert_eq!(devices.status, 200);
    // A clinician may not administer.
    let admin_only = call(&agent, "GET", &server.url("/api/tokens"), session, None);
    assert_eq!(admin_only.status, 403);

    // State changes need the CSRF token as well as the cookie.
    let ack_url = server.url("/api/alerts/1/ack");
    let body = Some(r#"{"by":"alice"}"#);
    let no_csrf = call(&agent, "POST", &ack_url, session, body);
    assert_eq!(
        (no_csrf.status, no_csrf.json["error"].as_str()),
        (403, Some("csrf"))
    );
    let bad_csrf = Creds {
        csrf: Some("00"),
        ..session
    };
    assert_eq!(call(&agent, "POST", &ack_url, bad_csrf, body).status, 403);
    let with_csrf = Creds {
        csrf: Some(&csrf),
        ..session
    };
    let acked = call(&agent, "POST", &ack_url, with_csrf, body);
    assert_eq!(
        acked.status, 404,
        "no alert 1 yet, but allowed: {}",
        acked.json
    );

    // Logging out ends the session.
    let out = call(&agent, "POST", &server.url("/auth/logout"), with_csrf, None);
    assert_eq!(out.status, 204);
    assert!(
        out.headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let after = call(&agent, "GET", &server.url("/api/devices"), session, None);
    assert_eq!(
        (after.status, after.json["error"].as_str()),
        (401, Some("session_expired"))
    );

    // Disabling a user ends their sessions at once.
    let (cookie2, _) = session_of(&login(&agent, &server, "alice", password));
    let session2 = Creds {
        cookie: Some(&cookie2),
        ..Creds::default()
    };
    assert_eq!(
        call(&agent, "GET", &server.url("/api/devices"), session2, None).status,
        200
    );
    cli(dir.path(), &["users", "disable", "alice"], "");
    assert_eq!(
        call(&agent, "GET", &server.url("/api/devices"), session2, None).status,
        401
    );
    assert_eq!(login(&agent, &server, "alice", password).status, 401);
    cli(dir.path(), &["users", "enable", "alice"], "");

    // Five failures for one user name: the sixth attempt is refused unchecked, even with the
    // right password, and says when to come back.
    for _ in 0..4 {
        assert_eq!(
            login(&agent, &server, "alice", "still the wrong one").status,
            401
        );
    }
    let throttled = login(&agent, &server, "alice", password);
    assert_eq!(throttled.status, 429, "{}", throttled.json);
    assert_eq!(throttled.json["error"], "login_throttled");
    let retry: u64 = throttled.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 0 && retry <= 900);

    // The audit trail has the reads, the logins and the refusals, with who (the guard's
    // entries are buffered: wait, bounded, until they are committed).
    let expected = [
        ("phi.read", "user:alice"),
        ("auth.login", "user:alice"),
        ("auth.failed", "anonymous:"),
        ("auth.csrf_refused", "user:alice"),
        ("auth.forbidden", "user:alice"),
        ("user.created", "cli:"),
        ("user.disabled", "cli:"),
    ];
    let mut export = String::new();
    let mut missing = Vec::new();
    let _ = poll_until(WAIT, || {
        export = cli(dir.path(), &["audit", "export"], "");
        let rows: Vec<Value> = export
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let has = |(action, actor): &(&str, &str)| {
            rows.iter()
                .any(|r| r["action"] == *action && r["actor"].as_str().unwrap().starts_with(actor))
        };
        missing = expected.iter().filter(|e| !has(e)).copied().collect();
        missing.is_empty()
    });
    assert!(missing.is_empty(), "not audited: {missing:?}");
    assert!(
        !export.contains(password),
        "a password reached the audit trail"
    );
    let verify = cli(dir.path(), &["audit", "verify"], "");
    assert!(verify.contains("intact"), "{verify}");
    // Nor did the password, the session or the CSRF token reach the (debug-level) log.
    let log = server.log();
    assert!(
        log.contains("VitalWatch is serving"),
        "the log was captured"
    );
    let session_id = cookie.split_once('=').unwrap().1;
    for secret in [password, session_id, csrf.as_str()] {
        assert!(!log.contains(secret), "the log holds a secret");
    }
}

#[test]
fn https_sends_security_headers_and_refuses_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let agent = https_agent(&server.data_dir);
    for url in [
        server.url("/health"),
        format!("https://{}/", server.listeners["dashboard"]),
    ] {
        let reply = call(&agent, "GET", &url, Creds::default(), None);
        assert_eq!(reply.status, 200, "{url}");
        let header = |name: &str| {
            reply
                .headers
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default()
        };
        assert!(
            header("strict-transport-security").contains("max-age="),
            "{url}"
        );
        assert_eq!(header("x-content-type-options"), "nosniff");
        let csp = header("content-security-policy");
        assert!(
            csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe-inline"),
            "{csp}"
        );
    }
    // Plaintext HTTP to the HTTPS ports gets no HTTP answer.
    for addr in [server.api, server.listeners["dashboard"]] {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        assert!(
            !answer.starts_with(b"HTTP/"),
            "{}",
            String::from_utf8_lossy(&answer)
        );
    }
}

#[test]
fn the_simulator_posts_over_https_with_a_device_token_and_is_refused_without() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let device = token(dir.path(), "device", "sim-1", &["--device", "sim-001"]);
    let simulate = |token: Option<&str>| {
        let mut command = Command::new(bin());
        command.current_dir(dir.path()).args([
            "simulate",
            "--devices",
            "1",
            "--count",
            "5",
            "--interval",
            "1s",
            "--speed",
            "1000x",
            "--json",
            "--http",
            &server.url("/api/telemetry"),
        ]);
        if let Some(token) = token {
            command.args(["--token", token]);
        }
        let output = command.output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).to_string();
        let report: Value = stdout
            .lines()
            .rev()
            .find_map(|line| serde_json::from_str(line).ok())
            .unwrap_or(Value::Null);
        (output.status.success(), report)
    };
    let (ok, report) = simulate(Some(&device));
    assert!(ok, "{report}");
    assert_eq!(
        (report["acked"].as_u64(), report["failed"].as_u64()),
        (Some(5), Some(0))
    );
    let (ok, report) = simulate(None);
    assert!(!ok);
    assert_eq!(report["failed"].as_u64(), Some(5), "{report}");
}

#[test]
fn session_actions_carry_the_users_own_name_and_streams_end_with_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let agent = https_agent(&server.data_dir);
    let password = "correct horse battery staple";
    create_user(dir.path(), "alice", "clinician", password);
    let device = token(dir.path(), "device", "bed-1", &["--device", "bed-1"]);
    for n in 0..12 {
        let body = crate::support::reading("bed-1", n, 150.0);
        let creds = Creds {
            bearer: Some(&device),
            ..Creds::default()
        };
        let posted = call(
            &agent,
            "POST",
            &server.url("/api/telemetry"),
            creds,
            Some(&body),
        );
        assert_eq!(posted.status, 200, "{}", posted.json);
    }
    let (cookie, csrf) = session_of(&login(&agent, &server, "alice", password));
    let session = Creds {
        cookie: Some(&cookie),
        csrf: Some(&csrf),
        ..Creds::default()
    };
    let id = wait_until(WAIT, "an alert for bed-1", || {
        let alerts = call(
            &agent,
            "GET",
            &server.url("/api/alerts?device_id=bed-1"),
            session,
            None,
        );
        alerts.json["alerts"][0]["id"].as_u64()
    });
    // The body claims someone else; the alert records the logged-in user.
    let acked = call(
        &agent,
        "POST",
        &server.url(&format!("/api/alerts/{id}/ack")),
        session,
        Some(r#"{"by":"someone.else"}"#),
    );
    assert_eq!(acked.status, 200, "{}", acked.json);
    assert_eq!(acked.json["acknowledged_by"], "alice", "{}", acked.json);

    // A live stream opened in the session ends once the session does.
    let request = ureq::http::Request::builder()
        .uri(server.url("/api/events"))
        .header("Cookie", &cookie)
        .body(Vec::new())
        .unwrap();
    let mut stream = agent.run(request).unwrap();
    assert_eq!(stream.status().as_u16(), 200);
    let out = call(&agent, "POST", &server.url("/auth/logout"), session, None);
    assert_eq!(out.status, 204);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = stream.body_mut().read_to_string();
        let _ = tx.send(());
    });
    assert!(
        rx.recv_timeout(Duration::from_secs(20)).is_ok(),
        "the stream outlived its session"
    );
}

#[test]
fn trusted_loopback_refuses_a_rebound_host_name() {
    let dir = tempfile::tempdir().unwrap();
    // Plaintext, loopback trusted: the service in this process, asked by the real curl.
    let server = crate::support::in_process::start(crate::support::in_process::config(dir.path()));
    // The API's listener and the dashboard's (which serves the same API) alike.
    for base in [server.url(""), format!("http://{}", server.dashboard)] {
        let curl = |host: Option<&str>| {
            let mut command = Command::new("curl");
            command.args(["-s", "-o", "/dev/null", "-w", "%{http_code}"]);
            if let Some(host) = host {
                command.args(["-H", &format!("Host: {host}")]);
            }
            let output = command.arg(format!("{base}/api/devices")).output().unwrap();
            String::from_utf8_lossy(&output.stdout).to_string()
        };
        assert_eq!(curl(None), "200", "{base}");
        assert_eq!(curl(Some("localhost:5000")), "200", "{base}");
        assert_eq!(curl(Some("[::1]:5000")), "200", "{base}");
        // A page from another site that rebinds its name to 127.0.0.1 is not this workstation.
        assert_eq!(curl(Some("rebind.attacker.example")), "401", "{base}");
        assert_eq!(curl(Some("rebind.attacker.example:5000")), "401", "{base}");
    }
}

#[test]
fn open_connections_are_bounded_per_listener() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("vw.toml"), "[http]\nmax_connections = 3\n").unwrap();
    let server = Server::start_secure(ServerOptions {
        args: vec!["--config".into(), "vw.toml".into()],
        ..ServerOptions::new(dir.path())
    });
    // No pooling: every request opens its own connection.
    let fresh = ureq::Agent::config_builder()
        .tls_config(https_agent(&server.data_dir).config().tls_config().clone())
        .timeout_global(Some(Duration::from_secs(10)))
        .max_idle_connections(0)
        .build()
        .new_agent();
    // Three idle connections (no TLS handshake, as a slowloris client would leave them) use
    // up the limit: once the server has taken their permits, the next connection is closed
    // unanswered (each connection takes its permit in a task of its own, so the probe is
    // repeated until the three hold theirs).
    let idle: Vec<_> = (0..3)
        .map(|_| std::net::TcpStream::connect(server.api).unwrap())
        .collect();
    let refused = poll_until(WAIT, || fresh.get(server.url("/health")).call().is_err());
    assert!(refused.is_some(), "a fourth connection was still served");
    // The three idle ones were not the ones turned away.
    for stream in &idle {
        stream.set_nonblocking(true).unwrap();
        let mut byte = [0u8; 1];
        let peeked = stream.peek(&mut byte);
        assert!(
            matches!(&peeked, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "an idle connection was closed: {peeked:?}"
        );
    }
    drop(idle);
    // Their permits come back: a new connection is served again.
    let served = poll_until(WAIT, || {
        fresh
            .get(server.url("/health"))
            .call()
            .is_ok_and(|response| response.status() == 200)
    });
    assert!(
        served.is_some(),
        "no connection was served after the idle ones closed"
    );
}

#[test]
fn plain_http_connections_beyond_the_bound_wait_for_a_free_one() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("vw.toml"), "[http]\nmax_connections = 2\n").unwrap();
    let server = Server::start_with(ServerOptions {
        args: vec!["--config".into(), "vw.toml".into()],
        ..ServerOptions::new(dir.path())
    });
    let curl = |max_time: &str| {
        let output = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                max_time,
            ])
            .arg(server.url("/health"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).to_string()
    };
    assert_eq!(curl("10"), "200");
    let idle: Vec<_> = (0..2)
        .map(|_| std::net::TcpStream::connect(server.api).unwrap())
        .collect();
    // Not accepted while both permits are held: no answer within a second. (Until the server
    // has accepted both idle connections a probe may still be served; it frees its permit
    // when it ends, and the next connection waiting, an idle one, takes it.)
    let waiting = poll_until(WAIT, || curl("1") == "000");
    assert!(waiting.is_some(), "a third connection was always served");
    drop(idle);
    assert_eq!(curl("10"), "200");
}

#[test]
fn admins_manage_tokens_and_users_over_the_api_without_secrets_leaking() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let agent = https_agent(&server.data_dir);
    let admin = token(dir.path(), "admin", "root", &[]);
    let as_admin = Creds {
        bearer: Some(&admin),
        ..Creds::default()
    };
    let created = call(
        &agent,
        "POST",
        &server.url("/api/tokens"),
        as_admin,
        Some(r#"{"name":"ward-display","role":"viewer","expires_in_days":30}"#),
    );
    assert_eq!(created.status, 201, "{}", created.json);
    let viewer = created.json["token"].as_str().unwrap().to_owned();
    assert!(created.json["expires_at"].is_string());
    let as_viewer = Creds {
        bearer: Some(&viewer),
        ..Creds::default()
    };
    assert_eq!(
        call(&agent, "GET", &server.url("/api/devices"), as_viewer, None).status,
        200
    );
    let duplicate = call(
        &agent,
        "POST",
        &server.url("/api/tokens"),
        as_admin,
        Some(r#"{"name":"ward-display","role":"viewer"}"#),
    );
    assert_eq!(duplicate.status, 409);
    for bad in [
        r#"{"name":"x","role":"root"}"#,
        r#"{"name":"x","role":"device"}"#,
        r#"{"name":"x","role":"viewer","device_id":"bed-1"}"#,
        r#"{"name":"bad name!","role":"viewer"}"#,
    ] {
        let reply = call(
            &agent,
            "POST",
            &server.url("/api/tokens"),
            as_admin,
            Some(bad),
        );
        assert_eq!(reply.status, 422, "{bad}: {}", reply.json);
    }

    let user = call(
        &agent,
        "POST",
        &server.url("/api/users"),
        as_admin,
        Some(r#"{"username":"bob","role":"viewer","password":"twelve chars ok"}"#),
    );
    assert_eq!(user.status, 201, "{}", user.json);
    let weak = call(
        &agent,
        "POST",
        &server.url("/api/users"),
        as_admin,
        Some(r#"{"username":"eve","role":"viewer","password":"short"}"#),
    );
    assert_eq!(weak.status, 422);
    assert_eq!(login(&agent, &server, "bob", "twelve chars ok").status, 200);
    let changed = call(
        &agent,
        "PUT",
        &server.url("/api/users/bob"),
        as_admin,
        Some(r#"{"password":"another long one"}"#),
    );
    assert_eq!(changed.status, 204);
    assert_eq!(login(&agent, &server, "bob", "twelve chars ok").status, 401);
    assert_eq!(
        login(&agent, &server, "bob", "another long one").status,
        200
    );
    let nobody = call(
        &agent,
        "PUT",
        &server.url("/api/users/nobody"),
        as_admin,
        Some(r#"{"disabled":true}"#),
    );
    assert_eq!(nobody.status, 404);

    // Listings show neither secrets nor hashes.
    let users = call(&agent, "GET", &server.url("/api/users"), as_admin, None).json;
    let tokens = call(&agent, "GET", &server.url("/api/tokens"), as_admin, None).json;
    let listed = format!("{users}{tokens}");
    assert!(
        listed.contains("bob") && listed.contains("ward-display"),
        "{listed}"
    );
    for secret in ["argon2", "secret_hash", "password", &viewer[20..]] {
        assert!(!listed.contains(secret), "a listing holds {secret:?}");
    }
}

#[test]
fn an_https_client_that_sends_no_request_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("vw.toml"),
        "[http]\nheader_read_timeout_s = 1\n",
    )
    .unwrap();
    let server = Server::start_secure(ServerOptions {
        args: vec!["--config".into(), "vw.toml".into()],
        ..ServerOptions::new(dir.path())
    });
    // Python's ssl: handshake, send nothing, wait (at most 20 s) for the server to close.
    let script = "import socket, ssl, sys, time\n\
ctx = ssl.create_default_context(cafile=sys.argv[1])\n\
s = ctx.wrap_socket(socket.create_connection(('127.0.0.1', int(sys.argv[2]))), server_hostname='localhost')\n\
s.settimeout(20)\n\
start = time.time()\n\
try:\n    data = s.recv(1)\nexcept (socket.timeout, TimeoutError):\n    print('open'); sys.exit(0)\nexcept OSError:\n    data = b''\n\
print('closed' if not data else 'data', round(time.time() - start))\n";
    let output = Command::new("python3")
        .args(["-c", script])
        .arg(server.data_dir.join("certs/ca.crt"))
        .arg(server.api.port().to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.starts_with("closed"),
        "{stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_user_changes_their_own_password_and_must_sign_in_again() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let agent = https_agent(&server.data_dir);
    let old = "first password here";
    create_user(dir.path(), "carol", "viewer", old);
    let (cookie, csrf) = session_of(&login(&agent, &server, "carol", old));
    let session = Creds {
        cookie: Some(&cookie),
        csrf: Some(&csrf),
        ..Creds::default()
    };
    let url = server.url("/auth/password");
    let wrong = call(
        &agent,
        "POST",
        &url,
        session,
        Some(r#"{"current":"not it at all","new":"second password here"}"#),
    );
    assert_eq!(
        (wrong.status, wrong.json["error"].as_str()),
        (403, Some("wrong_password"))
    );
    let weak = call(
        &agent,
        "POST",
        &url,
        session,
        Some(&format!(r#"{{"current":"{old}","new":"short"}}"#)),
    );
    assert_eq!(weak.status, 422);
    let changed = call(
        &agent,
        "POST",
        &url,
        session,
        Some(&format!(
            r#"{{"current":"{old}","new":"second password here"}}"#
        )),
    );
    assert_eq!(changed.status, 204, "{}", changed.json);
    // The session ended; the old password no longer works, the new one does.
    assert_eq!(
        call(&agent, "GET", &server.url("/auth/me"), session, None).status,
        401
    );
    assert_eq!(login(&agent, &server, "carol", old).status, 401);
    assert_eq!(
        login(&agent, &server, "carol", "second password here").status,
        200
    );
    // A token has no password to change.
    let viewer = token(dir.path(), "viewer", "v", &[]);
    let by_token = Creds {
        bearer: Some(&viewer),
        ..Creds::default()
    };
    assert_eq!(
        call(
            &agent,
            "POST",
            &url,
            by_token,
            Some(r#"{"current":"x","new":"y"}"#)
        )
        .status,
        403
    );
}
