//! Security: dashboard sessions, their cookies, CSRF and throttled logins, actions under the
//! user's own name, the admin token and user API, and changing one's own password.

use super::*;

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
    // A name no store can hold (PostgreSQL's text has no NUL; schemathesis sent one) is an
    // unknown user too, not a store failure.
    let nul = login(&agent, &server, "mal\u{0}lory", "wrong password here");
    assert_eq!(nul.json, wrong.json, "a NUL in the name: {}", nul.json);

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
    // Devices and Prometheus scrapers hold tokens, never logins (schemathesis once found a
    // metrics user answered 500).
    for role in ["device", "metrics"] {
        let body = format!(r#"{{"username":"svc","role":"{role}","password":"twelve chars ok"}}"#);
        let refused = call(
            &agent,
            "POST",
            &server.url("/api/users"),
            as_admin,
            Some(&body),
        );
        assert_eq!(refused.status, 422, "{role}: {}", refused.json);
    }
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
