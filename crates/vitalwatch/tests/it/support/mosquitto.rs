//! A real Mosquitto 2.x (Debian's `mosquitto`) for tests: a PKI made with `vitalwatch certs`,
//! a mosquitto.conf written into a temporary directory with one TLS listener on a free port
//! (`require_certificate true`, persistence on), started with `mosquitto -c`, awaited until it
//! accepts connections, and killed by its process id on drop (its guard's).

use super::bin;
use super::net::free_port;
use super::process::Guarded;
use super::wait::poll_until;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A PKI made with the real CLI: CA, server certificate, and device certificates on demand.
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    pub fn init(dir: &Path) -> Pki {
        let pki = Pki {
            dir: dir.to_path_buf(),
        };
        pki.certs(&["init"]);
        pki
    }

    fn certs(&self, args: &[&str]) {
        // `certs` audits what it issues into a database: keep it in the temporary directory.
        let output = Command::new(bin())
            .arg("certs")
            .args(args)
            .arg("--certs-dir")
            .arg(&self.dir)
            .arg("--data-dir")
            .arg(self.dir.with_extension("audit"))
            .output()
            .expect("running vitalwatch certs");
        assert!(
            output.status.success(),
            "vitalwatch certs {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// Issues (once) a client certificate; returns (cert, key).
    pub fn client(&self, id: &str) -> (PathBuf, PathBuf) {
        let cert = self.dir.join(format!("devices/{id}.crt"));
        if !cert.exists() {
            self.certs(&["device", id]);
        }
        (cert, self.dir.join(format!("devices/{id}.key")))
    }
}

pub struct Mosquitto {
    process: Option<Guarded>,
    pub port: u16,
    conf: PathBuf,
    log: PathBuf,
}

impl Mosquitto {
    /// Starts Mosquitto with a TLS listener on a free port, using `pki`'s server certificate.
    pub fn start(dir: &Path, pki: &Pki) -> Mosquitto {
        let state = dir.join("mosquitto");
        std::fs::create_dir_all(&state).unwrap();
        let port = free_port();
        let conf = state.join("mosquitto.conf");
        let log = state.join("mosquitto.log");
        let text = format!(
            "# Written by the VitalWatch tests.\n\
             user root\n\
             per_listener_settings false\n\
             allow_anonymous true\n\
             persistence true\n\
             persistence_location {state}/\n\
             autosave_interval 1\n\
             # Keep every QoS 1 message for an offline persistent session (the default, 1000,\n\
             # drops the rest: that would be the broker losing readings, not VitalWatch).\n\
             max_queued_messages 0\n\
             log_dest file {log}\n\
             log_type error\n\
             log_type warning\n\
             log_type notice\n\
             log_type information\n\
             listener {port} 127.0.0.1\n\
             cafile {ca}\n\
             certfile {cert}\n\
             keyfile {key}\n\
             require_certificate true\n\
             tls_version tlsv1.2\n",
            state = state.display(),
            log = log.display(),
            ca = pki.ca().display(),
            cert = pki.dir.join("server.crt").display(),
            key = pki.dir.join("server.key").display(),
        );
        std::fs::write(&conf, text).unwrap();
        let mut mosquitto = Mosquitto {
            process: None,
            port,
            conf,
            log,
        };
        mosquitto.spawn();
        mosquitto
    }

    fn spawn(&mut self) {
        // scripts/test installs mosquitto.
        let mut process = Guarded::spawn(
            Command::new("mosquitto")
                .arg("-c")
                .arg(&self.conf)
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let accepting = poll_until(Duration::from_secs(15), || {
            assert!(
                process.is_running(),
                "mosquitto exited; its log:\n{}",
                self.log()
            );
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        });
        assert!(
            accepting.is_some(),
            "mosquitto did not accept connections; its log:\n{}",
            self.log()
        );
        self.process = Some(process);
    }

    pub fn url(&self) -> String {
        format!("mqtts://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL (a crash: nothing saved since the last autosave), by process id.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }

    /// SIGTERM (Mosquitto saves its persistence file as it exits) and started again on the
    /// same port.
    pub fn restart_gracefully(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.stop("TERM", Duration::from_secs(30));
        }
        self.spawn();
    }

    /// Starts it again on the same port with the same configuration and persistence file.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
    }
}
