//! The service started inside the test process by `vitalwatch::server::start` on port 0, on a
//! runtime of its own, with the addresses it bound handed back, and stopped (shutdown token,
//! then the thread joined) when the guard drops.
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

/// The configuration most tests want: data in `<dir>/data` (the store on this run's backend,
/// [`super::backend`]), plaintext HTTP with loopback trusted (no tokens needed), no MQTT
/// broker.
pub fn config(dir: &Path) -> Config {
    let mut config = Config {
        data_dir: dir.join("data"),
        ..Config::default()
    };
    config.store.url =
        super::backend::database_url(&config.data_dir, dir).map(vitalwatch::secret::Secret::new);
    config.http.tls = false;
    config.http.trust_loopback = true;
    config.mqtt.enabled = false;
    config
}

/// Starts the service with `config` through `vitalwatch::server::start`, its API and
/// dashboard on 127.0.0.1 port 0 (the configured addresses are replaced), and returns the
/// addresses it bound once it answers `/health`.
pub fn start(mut config: Config) -> InProcess {
    vitalwatch::tls::install_crypto_provider();
    let loopback_any: SocketAddr = ([127, 0, 0, 1], 0).into();
    config.http_addr = loopback_any;
    config.dashboard_addr = loopback_any;
    let scheme = if config.http.tls { "https" } else { "http" };
    let data_dir = config.data_dir.clone();
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let (bound_tx, bound_rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        runtime.block_on(async move {
            let running = vitalwatch::server::start(config, token).await?;
            let _ = bound_tx.send((running.api, running.dashboard));
            running.await
        })
    });
    let (api, dashboard) = match bound_rx.recv_timeout(WAIT) {
        Ok((api, Some(dashboard))) => (api, dashboard),
        Ok((_, None)) => panic!("the in-process service started without its dashboard"),
        Err(_) => {
            let outcome = thread.join();
            panic!("the in-process service did not start: {outcome:?}");
        }
    };
    let service = InProcess {
        scheme,
        api,
        dashboard,
        data_dir,
        shutdown,
        thread: Some(thread),
    };
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
        panic!("the in-process service does not answer /health: {err}");
    }
    service
}

impl InProcess {
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{}", self.scheme, self.api, path)
    }

    /// Runs `sql` on its store, SQLite or PostgreSQL ([`super::backend::sql`]).
    pub fn sql(&self, sql: &str) -> String {
        super::backend::sql(&self.data_dir, sql)
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
