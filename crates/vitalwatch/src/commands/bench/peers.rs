//! The processes `bench ingest` measures beside VitalWatch: Debian's Mosquitto and, when the
//! operator points at one, rumqttd, each forwarding the load over mutual TLS to one QoS 1
//! subscriber and storing nothing; and the `/proc` sampling that reads every server's CPU and
//! memory the same way.

use crate::pki::CertsDir;
use anyhow::{Context, bail};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Linux's USER_HZ, the unit of `/proc/<pid>/stat` CPU times (100 on every mainstream
/// architecture; reading it with sysconf would need libc).
const CLOCK_TICKS_PER_S: f64 = 100.0;

/// CPU time and resident memory of a process.
#[derive(Clone, Copy, Debug)]
pub struct ProcSample {
    pub cpu_s: f64,
    pub rss_kb: u64,
    pub at: Instant,
}

pub fn sample(pid: u32) -> anyhow::Result<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start at field 3; utime and stime
    // are fields 14 and 15.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("unexpected /proc stat format")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<f64> {
        Ok(fields.get(i).context("short /proc stat")?.parse::<u64>()? as f64)
    };
    let cpu_s = (ticks(11)? + ticks(12)?) / CLOCK_TICKS_PER_S;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss_kb = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS in /proc status")?;
    Ok(ProcSample {
        cpu_s,
        rss_kb,
        at: Instant::now(),
    })
}

pub fn cpu_percent(before: ProcSample, after: ProcSample) -> f64 {
    let wall = after.at.duration_since(before.at).as_secs_f64();
    100.0 * (after.cpu_s - before.cpu_s) / wall.max(1e-9)
}

/// CPU microseconds the process spent per message between the two samples.
pub fn cpu_us_per_message(before: ProcSample, after: ProcSample, messages: u64) -> f64 {
    1e6 * (after.cpu_s - before.cpu_s) / messages.max(1) as f64
}

/// A child process killed (SIGKILL) when dropped, unless it was stopped first.
pub struct ChildGuard(pub Option<Child>);

impl ChildGuard {
    pub fn pid(&self) -> u32 {
        self.0.as_ref().map(Child::id).unwrap_or(0)
    }

    /// SIGTERM, then wait (bounded).
    pub fn terminate(mut self, within: Duration) {
        if let Some(mut child) = self.0.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + within;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Waits (bounded) until something accepts TCP connections on `port`.
fn wait_listening(name: &str, port: u16, child: &mut ChildGuard) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(Ok(Some(status))) = child.0.as_mut().map(Child::try_wait) {
            bail!("{name} exited before listening: {status}");
        }
        if Instant::now() > deadline {
            bail!("{name} did not start listening on {port}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Debian's Mosquitto with a TLS listener (client certificates required, like ours) and no
/// queue limit, so a slow subscriber loses nothing.
pub fn start_mosquitto(dir: &Path, certs: &CertsDir) -> anyhow::Result<(ChildGuard, u16)> {
    let state = dir.join("mosquitto");
    std::fs::create_dir_all(&state)?;
    let port = free_port()?;
    let conf = state.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "user root\nallow_anonymous true\npersistence false\nmax_queued_messages 0\n\
             log_dest none\nlistener {port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n\
             require_certificate true\n",
            certs.ca_cert().display(),
            certs.server_cert().display(),
            certs.server_key().display(),
        ),
    )?;
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting mosquitto (apt-get install mosquitto, or pass --no-mosquitto)")?;
    let mut guard = ChildGuard(Some(child));
    wait_listening("mosquitto", port, &mut guard)?;
    Ok((guard, port))
}

/// rumqttd's configuration: one MQTT 3.1.1 listener over TLS that requires a client
/// certificate from the bench's CA (rumqttd built with `--features verify-client-cert`),
/// in-memory commit log large enough for a whole run.
pub fn rumqttd_config(port: u16, certs: &CertsDir) -> String {
    format!(
        r#"id = 0

[router]
max_connections = 20010
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10

[v4.1]
name = "v4-1"
listen = "127.0.0.1:{port}"
next_connection_delay_ms = 0
    [v4.1.tls]
    capath = "{}"
    certpath = "{}"
    keypath = "{}"
    [v4.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = 20480
    max_inflight_count = 100
    dynamic_filters = true
"#,
        certs.ca_cert().display(),
        certs.server_cert().display(),
        certs.server_key().display(),
    )
}

/// rumqttd (the binary at `exe`) on a free port, with the same certificates as Mosquitto.
pub fn start_rumqttd(
    exe: &Path,
    dir: &Path,
    certs: &CertsDir,
) -> anyhow::Result<(ChildGuard, u16)> {
    let state = dir.join("rumqttd");
    std::fs::create_dir_all(&state)?;
    let port = free_port()?;
    let conf = state.join("rumqttd.toml");
    std::fs::write(&conf, rumqttd_config(port, certs))?;
    let child = Command::new(exe)
        .arg("-q")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| {
            format!(
                "starting rumqttd at {} (cargo install rumqttd --version 0.20.0 --features verify-client-cert)",
                exe.display()
            )
        })?;
    let mut guard = ChildGuard(Some(child));
    wait_listening("rumqttd", port, &mut guard)?;
    Ok((guard, port))
}
