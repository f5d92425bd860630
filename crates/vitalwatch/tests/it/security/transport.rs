//! Security on the wire: HTTPS headers and refused plaintext, the simulator over HTTPS,
//! trusted loopback's Host check, connection bounds, idle HTTPS clients, and `Connection:
//! close` on answers given before their request's body was read.

use super::*;

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
    // The idle connections below hold their permits until the handshake timeout: long enough
    // that a loaded machine still probes within it.
    std::fs::write(
        dir.path().join("vw.toml"),
        "[http]\nmax_connections = 3\ntls_handshake_timeout_s = 300\n",
    )
    .unwrap();
    let server = Server::start_secure(ServerOptions {
        args: vec![
            "--config".into(),
            "vw.toml".into(),
            // The token-free loopback exposition, to see when the idle connections hold
            // their permits.
            "--metrics-addr".into(),
            "127.0.0.1:0".into(),
        ],
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
    // up the limit. Each connection takes its permit in a task of its own, in no set order,
    // so the probe waits until the three hold theirs (the API listener's open-connections
    // gauge reads 3); then the next connection is closed unanswered.
    let idle: Vec<_> = (0..3)
        .map(|_| std::net::TcpStream::connect(server.api).unwrap())
        .collect();
    let metrics = format!("http://{}/metrics", server.listeners["metrics"]);
    let open_api = || {
        crate::support::agent()
            .get(&metrics)
            .call()
            .ok()
            .and_then(|mut response| response.body_mut().read_to_string().ok())
            .and_then(|text| {
                text.lines().find_map(|line| {
                    line.strip_prefix("vitalwatch_connections_open{listener=\"api\"} ")
                        .and_then(|v| v.trim().parse::<f64>().ok())
                })
            })
    };
    let held = poll_until(WAIT, || open_api().filter(|n| *n >= 3.0));
    assert!(
        held.is_some(),
        "the idle connections never held their permits: {:?}",
        open_api()
    );
    assert!(
        fresh.get(server.url("/health")).call().is_err(),
        "a fourth connection was still served"
    );
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
fn trusted_loopback_checks_the_http2_authority_userinfo_and_cross_site_posts() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_secure(ServerOptions::with_args(dir.path(), &["--trust-loopback"]));
    let port = server.api.port();
    let curl = |args: &[&str]| {
        let output = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
            .arg(server.data_dir.join("certs/ca.crt"))
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).to_string()
    };
    let devices = format!("https://localhost:{port}/api/devices");
    assert_eq!(curl(&["--http2", &devices]), "200");
    // Over HTTP/2 curl sends the Host header as :authority.
    assert_eq!(
        curl(&["--http2", "-H", "Host: evil.example", &devices]),
        "401"
    );
    assert_eq!(
        curl(&[
            "--http1.1",
            "-H",
            &format!("Host: localhost:{port}@evil.example"),
            &devices
        ]),
        "401"
    );
    // A cross-site "simple" POST (no custom header, a form or text body) is refused; the same
    // with the CSRF header (any value) or a JSON body is not cross-site.
    let reload = format!("https://localhost:{port}/api/model/reload");
    // (HTTP/1.1: curl 7.88 drops an HTTP/2 answer sent before it finished its body.)
    let simple = [
        "--http1.1",
        "-X",
        "POST",
        "-H",
        "Content-Type: text/plain",
        "-d",
        "x",
    ];
    assert_eq!(curl(&[&simple[..], &[reload.as_str()]].concat()), "403");
    let with_header = [&simple[..], &["-H", "X-CSRF-Token: 1", reload.as_str()]].concat();
    assert_ne!(curl(&with_header), "403");
    let json = [
        "--http1.1",
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-d",
        "{}",
    ];
    assert_ne!(curl(&[&json[..], &[reload.as_str()]].concat()), "403");
    // ... unless it names another site as its origin.
    let foreign = [
        &json[..],
        &["-H", "Origin: https://evil.example", reload.as_str()],
    ]
    .concat();
    assert_eq!(curl(&foreign), "403");
}

/// Reads one HTTP/1.1 answer from `stream`: its status and lower-cased headers (its body is
/// read and dropped).
fn read_answer(stream: &mut std::net::TcpStream) -> (u16, Vec<(String, String)>) {
    use std::io::Read;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).expect("reading the answer");
        assert_eq!(n, 1, "the connection closed before the answer's head ended");
        head.push(byte[0]);
    }
    let text = String::from_utf8(head).unwrap();
    let mut lines = text.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_lowercase(), value.trim().to_lowercase()))
        .collect::<Vec<(String, String)>>();
    let length: usize = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .map(|(_, value)| value.parse().unwrap())
        .expect("the answer has a length");
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).unwrap();
    (status, headers)
}

#[test]
fn an_answer_given_before_its_body_arrived_closes_the_connection_and_says_so() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let server = crate::support::in_process::start(crate::support::in_process::config(dir.path()));
    let mut stream = std::net::TcpStream::connect(server.api).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    // The head of a request refused on its head alone (415); its body is not sent yet, as when
    // a client writes head and body apart and the server answers in between.
    stream
        .write_all(
            b"POST /api/telemetry HTTP/1.1\r\nHost: 127.0.0.1\r\nX-CSRF-Token: 1\r\n\
              Content-Type: text/plain\r\nContent-Length: 17\r\n\r\n",
        )
        .unwrap();
    let (status, headers) = read_answer(&mut stream);
    assert_eq!(status, 415);
    // The server will not read the rest of that request, so it cannot read another on this
    // connection: it must say so, or the client reuses it and its next request meets a close.
    assert!(
        headers.contains(&("connection".into(), "close".into())),
        "{headers:?}"
    );
    // The late body and a second request are read and dropped, never answered.
    let _ =
        stream.write_all(b"{\"device_id\":\"a\"}GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));

    // An answer after the whole body was read keeps the connection for the next request.
    let mut stream = std::net::TcpStream::connect(server.api).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let reading = crate::support::reading("calm", 1, 72.0);
    let request = format!(
        "POST /api/telemetry HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{reading}GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        reading.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    for expected in [200, 200] {
        let (status, headers) = read_answer(&mut stream);
        assert_eq!(status, expected);
        assert!(
            !headers.contains(&("connection".into(), "close".into())),
            "{headers:?}"
        );
    }
}
