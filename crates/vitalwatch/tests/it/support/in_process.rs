//! The service started inside the test process: its listeners bound here on port 0, so the
//! addresses are known before it starts, served by `vitalwatch::server::serve_on` on a runtime
//! of its own, and stopped (shutdown token, then the thread joined) when the guard drops.
//!
//! For tests of the HTTP API that need a real socket but not the binary's process: no
//! signals, no standard output, no embedded MQTT broker. [`start`] is the one entry point, so
//! the way the service is started in process can change behind it.

use super::wait::WAIT;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use tokio_util::sync::CancellationToken;
use vitalwatch::config::Config;

/// A service running in this process.
pub struct InProcess {
    /// "http" or "https".
    pub scheme: &'static str,
    pub api: SocketAddr,
    pub dashboard: SocketAddr,
    pub data_dir: PathBuf,
    shutdown: CancellationToken,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

/// The configuration most tests want: data in `<dir>/data`, plaintext HTTP with loopback
/// trusted (no tokens needed), no MQTT broker.
pub fn config(dir: &Path) -> Config {
    let mut config = Config {
        data_dir: dir.join("data"),
        ..Config::default()
    };
    config.http.tls = false;
    config.http.trust_loopback = true;
    config.mqtt.enabled = false;
    config
}

/// Starts the service with `config` (its listen addresses are ignored: both listeners are on
/// 127.0.0.1 port 0) and returns once it answers `/health`.
pub fn start(config: Config) -> InProcess {
    vitalwatch::tls::install_crypto_provider();
    let bind = || {
        let listener = super::net::loopback_listener();
        listener
            .set_nonblocking(true)
            .expect("a tokio listener is non-blocking");
        listener
    };
    let (api, dashboard) = (bind(), bind());
    let api_addr = api.local_addr().expect("a bound listener has an address");
    let dashboard_addr = dashboard
        .local_addr()
        .expect("a bound listener has an address");
    let scheme = if config.http.tls { "https" } else { "http" };
    let data_dir = config.data_dir.clone();
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        runtime.block_on(async move {
            let api = tokio::net::TcpListener::from_std(api)?;
            let dashboard = tokio::net::TcpListener::from_std(dashboard)?;
            vitalwatch::server::serve_on(config, api, Some(dashboard), token, false).await
        })
    });
    let mut service = InProcess {
        scheme,
        api: api_addr,
        dashboard: dashboard_addr,
        data_dir,
        shutdown,
        thread: Some(thread),
    };
    // The listeners are bound already: this request waits in the backlog until the service
    // accepts, or fails when it gave up starting.
    let agent = if scheme == "https" {
        super::http::https_agent(&service.data_dir)
    } else {
        super::http::agent()
    };
    let ready = agent
        .get(service.url("/health"))
        .config()
        .timeout_global(Some(WAIT))
        .build()
        .call();
    if let Err(err) = ready {
        let outcome = service.stop();
        panic!("the in-process service did not start ({err}): {outcome:?}");
    }
    service
}

impl InProcess {
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{}", self.scheme, self.api, path)
    }

    /// Shuts it down as SIGTERM would (every answered reading committed) and waits for it.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        match self.thread.take() {
            Some(thread) => thread
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the service's thread panicked"))),
            None => Ok(()),
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
