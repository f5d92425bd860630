//! Abuse of the login and the live stream by a client that knows a user name or holds one
//! viewer token (issue 19, findings 5, 6 and 7): concurrent guesses, a lockout attempt, and
//! thousands of streams. Bounded: at most 240 logins and a handful of streams.

use super::*;

const PASSWORD: &str = "correct horse battery staple";

/// Python's http.client in threads: `POST /auth/login` for each (source address, user,
/// password) line of standard input, all at once; prints one status per line, in order.
const LOGINS: &str = r#"
import http.client, json, ssl, sys, threading
ctx = ssl.create_default_context(cafile=sys.argv[1])
port = int(sys.argv[2])
jobs = [line.split(' ', 2) for line in sys.stdin.read().splitlines()]
statuses = [None] * len(jobs)
start = threading.Barrier(len(jobs))
def run(i, source, user, password):
    try:
        c = http.client.HTTPSConnection('localhost', port, context=ctx, timeout=120,
                                        source_address=(source, 0))
        c.connect()
        start.wait()
        body = json.dumps({'username': user, 'password': password})
        c.request('POST', '/auth/login', body=body, headers={'Content-Type': 'application/json'})
        statuses[i] = c.getresponse().status
    except Exception as e:
        statuses[i] = type(e).__name__
threads = [threading.Thread(target=run, args=(i, *job)) for i, job in enumerate(jobs)]
for t in threads: t.start()
for t in threads: t.join()
print('\n'.join(str(s) for s in statuses))
"#;

fn logins(server: &Server, jobs: &[(String, String, String)]) -> Vec<String> {
    let stdin: String = jobs
        .iter()
        .map(|(source, user, password)| format!("{source} {user} {password}\n"))
        .collect();
    let mut child = Command::new("python3")
        .args(["-c", LOGINS])
        .arg(server.data_dir.join("certs/ca.crt"))
        .arg(server.api.port().to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The server's peak resident memory (`VmHWM`), in MiB.
fn peak_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        / 1024
}

#[test]
fn concurrent_guesses_are_counted_before_checking_and_argon2_runs_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    create_user(dir.path(), "alice", "clinician", PASSWORD);
    // 120 guesses for one name from one address, at once: at most the 5 allowed are checked
    // (401); the others are refused unchecked (429).
    let same: Vec<_> = (0..120)
        .map(|_| ("127.0.0.1".into(), "alice".into(), "wrong guess".into()))
        .collect();
    let statuses = logins(&server, &same);
    let count = |statuses: &[String], code: &str| statuses.iter().filter(|s| *s == code).count();
    assert_eq!(statuses.len(), 120);
    assert!(count(&statuses, "401") <= 5, "{statuses:?}");
    assert_eq!(
        count(&statuses, "401") + count(&statuses, "429"),
        120,
        "{statuses:?}"
    );
    // 120 guesses for 120 names from 120 ranges: all pass the limiter, but only
    // `login_concurrency` password checks run at once; the rest are 429 at once, and memory
    // stays bounded (each Argon2id check takes ~19 MiB).
    let spread: Vec<_> = (0..120)
        .map(|n| {
            (
                format!("127.0.{}.1", n + 10),
                format!("user{n}"),
                "guess".into(),
            )
        })
        .collect();
    let statuses = logins(&server, &spread);
    assert_eq!(
        count(&statuses, "401") + count(&statuses, "429"),
        120,
        "{statuses:?}"
    );
    assert!(count(&statuses, "429") >= 1, "{statuses:?}");
    let peak = peak_mib(server.pid());
    assert!(peak < 600, "the server peaked at {peak} MiB");
}

#[test]
fn a_lockout_attempt_does_not_block_the_right_password_from_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    create_user(dir.path(), "alice", "clinician", PASSWORD);
    // Six wrong passwords, one after the other, from several addresses of one range.
    let statuses: Vec<String> = (0..6)
        .flat_map(|n| {
            logins(
                &server,
                &[(format!("127.0.0.{}", n + 2), "alice".into(), "wrong".into())],
            )
        })
        .collect();
    assert_eq!(statuses, ["401", "401", "401", "401", "401", "429"]);
    // The attacker's range stays refused, even with the right password ...
    let again = logins(
        &server,
        &[("127.0.0.9".into(), "alice".into(), PASSWORD.into())],
    );
    assert_eq!(again, ["429"]);
    // ... but alice, from her own address, gets in.
    let alice = logins(
        &server,
        &[("127.0.5.1".into(), "alice".into(), PASSWORD.into())],
    );
    assert_eq!(alice, ["200"]);
}

#[test]
fn live_streams_are_bounded_per_caller_and_in_all() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("vw.toml"),
        "[http]\nmax_live_streams = 5\nmax_live_streams_per_caller = 3\n",
    )
    .unwrap();
    let server = Server::start_secure(ServerOptions {
        args: vec!["--config".into(), "vw.toml".into()],
        ..ServerOptions::new(dir.path())
    });
    let a = token(dir.path(), "viewer", "viewer-a", &[]);
    let b = token(dir.path(), "viewer", "viewer-b", &[]);
    let agent = https_agent(&server.data_dir);
    let open = |token: &str| {
        agent
            .get(server.url("/api/events"))
            .header("Authorization", format!("Bearer {token}"))
            .call()
            .unwrap()
    };
    let mut streams_a: Vec<_> = (0..3).map(|_| open(&a)).collect();
    assert!(streams_a.iter().all(|s| s.status() == 200));
    assert_eq!(open(&a).status(), 429, "a fourth stream for one caller");
    let streams_b: Vec<_> = (0..2).map(|_| open(&b)).collect();
    assert!(streams_b.iter().all(|s| s.status() == 200));
    assert_eq!(open(&b).status(), 429, "a sixth stream in all");
    // A stream that ends gives its place back.
    drop(streams_a.pop());
    let reopened = poll_until(WAIT, || {
        let stream = open(&a);
        (stream.status() == 200).then_some(stream)
    });
    assert!(
        reopened.is_some(),
        "the ended stream's place was not given back"
    );
}
