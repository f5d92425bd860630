//! The server: store, pipeline, alerting, broker and API wired together, started by
//! `serve`, `demo`, the benchmarks and the tests alike.
//!
//! [`start`] binds every listener the configuration names (port 0 picks a free one), returns
//! their addresses in [`Running`] once requests are accepted, and serves until `shutdown` is
//! cancelled; awaiting the [`Running`] waits for the end. Shutdown order: stop accepting, let
//! in-flight requests finish (their readings are committed before they are answered),
//! summarise refusals into the audit log, then close the store, which commits anything still
//! queued. This module reads no flags and installs no signal handler but SIGHUP's (reload the
//! model); the commands above it do that.

use crate::api::{self, AppState};
use crate::auth::layer::AuthService;
use crate::config::Config;
use crate::events::EventBus;
use crate::ingest::{BrokerSettings, BrokerStatus, embedded, external};
use crate::metrics::Metrics;
use crate::model::{self, ModelSlot};
use crate::pipeline::{Pipeline, PipelineParts};
use crate::store::postgres::PostgresStore;
use crate::store::sqlite::SqliteStore;
use crate::store::{AuditEntry, Retention, Store};
use crate::tls::ClientAuth;
use anyhow::Context;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const RETENTION_EVERY: Duration = Duration::from_secs(3600);
const REFUSAL_AUDIT_EVERY: Duration = Duration::from_secs(60);
/// How often the audit chain's head is written outside the database.
const ANCHOR_EVERY: Duration = Duration::from_secs(300);

/// A started server: the addresses it listens on, and (awaited) its end.
///
/// Awaiting it returns once `shutdown` was cancelled and everything queued is committed, or
/// when serving failed. Dropping it leaves the server running in the background.
#[derive(Debug)]
pub struct Running {
    /// The REST API.
    pub api: SocketAddr,
    /// The live dashboard (assets and the same API routes); `None` when started without one.
    pub dashboard: Option<SocketAddr>,
    /// The embedded broker's MQTT over TLS; `None` with the broker off or an external broker.
    pub mqtts: Option<SocketAddr>,
    /// The embedded broker's plaintext MQTT listener, when configured.
    pub mqtt: Option<SocketAddr>,
    /// The embedded broker's MQTT over WebSocket over TLS, when configured.
    pub mqtt_wss: Option<SocketAddr>,
    /// The token-free loopback `/metrics` listener, when configured.
    pub metrics: Option<SocketAddr>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Prints `listening NAME=ADDR` on standard output for every listener, the API's last:
    /// machine-readable lines for scripts and tests that asked for port 0.
    pub fn announce(&self) {
        let lines = [
            ("mqtts", self.mqtts),
            ("mqtt", self.mqtt),
            ("mqtt-wss", self.mqtt_wss),
            ("dashboard", self.dashboard),
            ("metrics", self.metrics),
            ("api", Some(self.api)),
        ];
        for (name, addr) in lines {
            if let Some(addr) = addr {
                announce_line(&format!("listening {name}={addr}"));
            }
        }
    }
}

impl Future for Running {
    type Output = anyhow::Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.task).poll(cx) {
            Poll::Ready(res) => Poll::Ready(res.context("the server task failed").and_then(|r| r)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Opens the store the configuration names: PostgreSQL when `store.url` is set, else SQLite
/// in the data directory.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    match &config.store.url {
        Some(url) => {
            let store = PostgresStore::open(
                url.expose(),
                config.store_options(),
                config.postgres_settings(),
            )
            .await
            // The error names the database without its password (never the URL).
            .context("opening the PostgreSQL store")?;
            Ok(Arc::new(store))
        }
        None => Ok(open_sqlite(config)?),
    }
}

/// Opens the SQLite store in the data directory.
pub fn open_sqlite(config: &Config) -> anyhow::Result<Arc<SqliteStore>> {
    let path = config.database_path();
    let store = SqliteStore::open(&path, config.store_options())
        .with_context(|| format!("opening the store at {}", path.display()))?;
    Ok(Arc::new(store))
}

/// Binds the API and the dashboard to the configured addresses and starts the server on them.
pub async fn start(config: Config, shutdown: CancellationToken) -> anyhow::Result<Running> {
    let listener = TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("binding the API to {}", config.http_addr))?;
    let dashboard = TcpListener::bind(config.dashboard_addr)
        .await
        .with_context(|| format!("binding the dashboard to {}", config.dashboard_addr))?;
    start_on(config, listener, Some(dashboard), shutdown).await
}

/// Serves on an already-bound listener (benchmarks bind their own) until `shutdown`. With
/// `announce`, prints `listening api=ADDR` on standard output once requests are accepted.
pub async fn run_on(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
    announce: bool,
) -> anyhow::Result<()> {
    serve_on(config, listener, None, shutdown, announce).await
}

/// [`run_on`] plus, when given, the dashboard's listener.
pub async fn serve_on(
    config: Config,
    listener: TcpListener,
    dashboard: Option<TcpListener>,
    shutdown: CancellationToken,
    announce: bool,
) -> anyhow::Result<()> {
    let running = start_on(config, listener, dashboard, shutdown).await?;
    if announce {
        running.announce();
    }
    running.await
}

/// Starts the server on already-bound listeners: the API's and, when given, the dashboard's.
/// Returns once every listener accepts.
pub async fn start_on(
    config: Config,
    listener: TcpListener,
    dashboard: Option<TcpListener>,
    shutdown: CancellationToken,
) -> anyhow::Result<Running> {
    crate::metrics::prometheus::install();
    let store: Arc<dyn Store> = open_store(&config).await?;
    audit_config_change(&*store, &config).await?;
    let metrics = Arc::new(Metrics::default());
    let model_path = config.model_path();
    let model_slot = Arc::new(
        tokio::task::spawn_blocking(move || ModelSlot::open(model_path))
            .await
            .context("loading the anomaly model")?,
    );
    let events = EventBus::new();
    // On a database several nodes share, live events cross nodes (events::bridge); stopped
    // after everything that publishes and before the store closes.
    let bridge_tasks = TaskTracker::new();
    let bridge_stop = CancellationToken::new();
    // Device credentials revoked on any node (ingest::revocation).
    let revocations = Arc::new(crate::ingest::revocation::SharedRevocations::default());
    if let Some(cluster) = store.cluster() {
        crate::events::bridge::start(
            &events,
            Arc::clone(&cluster),
            &config.cluster.node_id(),
            &bridge_tasks,
            bridge_stop.clone(),
        );
        bridge_tasks.spawn(crate::ingest::revocation::sync(
            Arc::clone(&revocations),
            cluster,
            bridge_stop.clone(),
        ));
    }
    // Alert tasks stop after the API (in-flight readings still reach the engine) and before
    // the store closes (their transitions are committed).
    let alert_tasks = TaskTracker::new();
    let alerts = crate::alerts::AlertService::start(
        Arc::clone(&store),
        config.alerting.clone(),
        config.rules.clone(),
        events.clone(),
        &alert_tasks,
        shutdown.clone(),
    )
    .await
    .context("starting alerting")?;
    let pipeline = Arc::new(Pipeline::new(PipelineParts {
        store: Arc::clone(&store),
        limits: config.limits.clone(),
        rules: config.rules.clone(),
        metrics,
        queue_timeout: config.store.queue_timeout(),
        model: Arc::clone(&model_slot),
        alerts: Arc::clone(&alerts),
        events,
    }));
    // Installed before the service announces itself, so a SIGHUP sent as soon as the API
    // answers reloads the model instead of ending the process.
    #[cfg(unix)]
    let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing the SIGHUP handler")?;
    let broker_status = BrokerStatus::default();
    let external_broker = match external::ExternalSettings::from_config(&config)? {
        Some(settings) if config.mqtt.enabled => {
            tracing::info!(event = "broker.external_mode",
                message = "Subscribing to an external broker; the embedded broker is off.",
                broker = %settings.url,
                filter = %settings.filter(),
                client_id = %settings.client_id,
            );
            Some(external::start(
                settings,
                Arc::clone(&pipeline),
                broker_status.clone(),
            )?)
        }
        _ => None,
    };
    let broker = if config.mqtt.enabled && external_broker.is_none() {
        let certs = crate::pki::CertsDir::new(config.certs_dir());
        if !certs.dir.exists() {
            let report = crate::pki::init(&certs, &[], false)?;
            tracing::info!(event = "pki.created",
                message = "Created a new PKI (CA and server certificate).",
                certs_dir = %certs.dir.display(),
                server_names = %report.sans.join(","),
            );
        }
        let settings = BrokerSettings {
            mqtts_addr: config.mqtt.mqtts_addr,
            certs,
            topic: config.mqtt.topic.clone(),
            require_certificate: config.mqtt.require_certificate,
            max_packet_size: config.mqtt.max_packet_size,
            max_inflight: config.mqtt.max_inflight,
            workers: config.mqtt.workers,
            plaintext_addr: config.mqtt.plaintext_addr,
            allow_anonymous: config.mqtt.allow_anonymous,
            wss_addr: config.mqtt.wss_addr,
            wss_allowed_origins: config.mqtt.wss_allowed_origins.clone(),
            max_rate_per_connection: config.mqtt.max_rate_per_connection,
            handshakes_per_address: config.mqtt.handshakes_per_address,
            revocations: Arc::clone(&revocations),
        };
        let broker = embedded::start(settings, Arc::clone(&pipeline))?;
        tracing::info!(event = "mqtt.listening", message = "MQTT over TLS is listening.", mqtts = %broker.addr, topic = %config.mqtt.topic);
        if let Some(plain) = broker.plaintext_addr {
            tracing::warn!(event = "mqtt.plaintext_listening",
                message = "Plaintext MQTT is listening: readings and credentials cross the network unencrypted. Use it on a trusted lab network only.",
                mqtt = %plain,
                anonymous = config.mqtt.allow_anonymous,
            );
        }
        broker_status.embedded(broker.addr);
        Some(broker)
    } else {
        None
    };
    let api_addr = listener.local_addr()?;
    tracing::info!(event = "server.serving",
        message = "VitalWatch is serving.",
        api = %api_addr,
        database = %config.database_name(),
        registry_policy = config.registry.policy.as_str(),
    );

    let tasks = TaskTracker::new();
    let retention = Retention {
        readings_days: config.store.retention_days,
        anomalies_days: config.store.anomaly_retention_days,
        audit_days: config.store.audit_retention_days,
    };
    tasks.spawn(refusal_audit_task(Arc::clone(&pipeline), shutdown.clone()));
    let anchors = crate::store::audit::anchors_path(&config.data_dir);
    let audit_key = crate::store::audit::AuditKey::load(&config.audit_key_path(), true)
        .context("loading the audit key")?;
    // Anchored at once: rows written before a crash are covered even if it comes soon.
    crate::store::audit::anchor_head(store.as_ref(), &anchors, &audit_key).await;
    // The work that must happen once: on SQLite this node does it; on PostgreSQL the leader.
    let cluster = {
        let store_ = Arc::clone(&store);
        let anchors_ = anchors.clone();
        let audit_key_ = audit_key.clone();
        let every_rows = config.store.audit_anchor_every.max(1);
        let alerts_ = Arc::clone(&alerts);
        let leader_tasks = alert_tasks.clone();
        let on_lead = move |term: CancellationToken| {
            leader_tasks.spawn(retention_task(Arc::clone(&store_), retention, term.clone()));
            leader_tasks.spawn(anchor_task(
                Arc::clone(&store_),
                anchors_.clone(),
                audit_key_.clone(),
                every_rows,
                term.clone(),
            ));
            if let Some(delivery) = alerts_.outbox_delivery(term.clone()) {
                leader_tasks.spawn(delivery);
            }
            if alerts_.is_shared() {
                leader_tasks.spawn(alert_timer_task(Arc::clone(&alerts_), term));
            }
        };
        let node_id = config.cluster.node_id();
        match store.leader_lock() {
            Some(lock) => {
                let status = Arc::new(crate::cluster::ClusterStatus::member(node_id));
                alert_tasks.spawn(crate::cluster::leader::run(
                    Arc::clone(&status),
                    lock,
                    config.cluster.leader_poll(),
                    on_lead,
                    shutdown.clone(),
                ));
                status
            }
            None => {
                on_lead(shutdown.clone());
                Arc::new(crate::cluster::ClusterStatus::alone(node_id))
            }
        }
    };
    #[cfg(unix)]
    tasks.spawn(reload_on_sighup(
        hangup,
        model_slot,
        Arc::clone(&store),
        shutdown.clone(),
    ));

    let auth = Arc::new(AuthService::new(Arc::clone(&store), &config.http));
    // Stopped after both listeners (below), so reads answered during shutdown are audited.
    let audit_stop = CancellationToken::new();
    let audit_task = tokio::spawn(Arc::clone(&auth.audit).run(audit_stop.clone()));
    let state = AppState {
        pipeline: Arc::clone(&pipeline),
        store: Arc::clone(&store),
        broker: broker_status,
        auth: Arc::clone(&auth),
        ops: api::metrics::OpsInfo {
            certs_dir: config.certs_dir(),
            store_queue_capacity: config.store.queue_capacity as u64,
        },
        cluster,
    };
    tasks.spawn(api::metrics::alert_counts(
        pipeline.events().subscribe_quiet(),
        shutdown.clone(),
    ));
    tasks.spawn(crate::metrics::prometheus::upkeep_task(shutdown.clone()));
    tasks.spawn(api::metrics::audit_chain_check(
        Arc::clone(&store),
        shutdown.clone(),
    ));
    let metrics_bound = match config.metrics_addr {
        Some(addr) => Some(api::metrics::serve_local(addr, state.clone(), shutdown.clone()).await?),
        None => None,
    };
    let https = if config.http.tls {
        let certs = crate::pki::CertsDir::new(config.certs_dir());
        if !certs.dir.exists() {
            crate::pki::init(&certs, &[], false)?;
        }
        Some(
            crate::tls::server_config(&certs, ClientAuth::None, &[b"h2", b"http/1.1"])
                .context("loading the HTTPS certificate")?,
        )
    } else {
        if !config.http.trust_loopback || !api_addr.ip().is_loopback() {
            tracing::warn!(event = "http.plaintext",
                message = "The API and dashboard serve plaintext HTTP: tokens, session cookies and patient data cross the network unencrypted. Use it on loopback or behind a TLS-terminating proxy only.",
                api = %api_addr,
            );
        }
        None
    };
    if config.http.trust_loopback {
        tracing::warn!(
            event = "http.trust_loopback",
            message = "--trust-loopback: clients on this host reach the API and dashboard with every role and no token."
        );
    }
    let (app, api_table) = api::app(state.clone(), shutdown.clone());
    let mut dashboard_task = None;
    let mut dashboard_bound = None;
    if let Some(dashboard) = dashboard {
        let dashboard_addr = dashboard.local_addr()?;
        if !crate::assets::assets_built() {
            tracing::warn!(
                event = "dashboard.assets_missing",
                message = "Dashboard assets not built; the dashboard shows how to build them.",
                hint = "scripts/build-web"
            );
        }
        tracing::info!(event = "dashboard.listening", message = "Dashboard is serving.", dashboard = %dashboard_addr);
        dashboard_bound = Some(dashboard_addr);
        let (dashboard_app, table) = crate::assets::app(app.clone(), &api_table);
        let dashboard_app = api::guarded(
            dashboard_app,
            &table,
            Arc::clone(&auth),
            https.is_some(),
            &config.http,
        );
        let served = crate::http_listen::serve(
            dashboard,
            crate::metrics::connections::Listener::Dashboard,
            dashboard_app,
            https.clone(),
            config.http.listen_limits(),
            shutdown.clone(),
        );
        dashboard_task = Some(tokio::spawn(async move {
            if let Err(err) = served.await {
                tracing::error!(event = "dashboard.failed", message = "The dashboard listener failed.", error = %err);
            }
        }));
    }
    let app = api::guarded(
        app,
        &api_table,
        Arc::clone(&auth),
        https.is_some(),
        &config.http,
    );
    let served = crate::http_listen::serve(
        listener,
        crate::metrics::connections::Listener::Api,
        app,
        https,
        config.http.listen_limits(),
        shutdown.clone(),
    );
    let running = Running {
        api: api_addr,
        dashboard: dashboard_bound,
        mqtts: broker.as_ref().map(|broker| broker.addr),
        mqtt: broker.as_ref().and_then(|broker| broker.plaintext_addr),
        mqtt_wss: broker.as_ref().and_then(|broker| broker.wss_addr),
        metrics: metrics_bound,
        task: tokio::spawn(async move {
            let served = served.await;
            if let Some(task) = dashboard_task {
                let _ = task.await;
            }
            tracing::info!(
                event = "server.stopping",
                message = "Shutting down: committing what is queued."
            );
            if let Some(broker) = broker {
                // In-flight publishes finish: their readings commit and are acknowledged.
                broker.stop().await;
            }
            if let Some(external_broker) = external_broker {
                // In-flight commits finish and are acknowledged to the broker; the rest is
                // redelivered.
                external_broker.stop().await;
            }
            shutdown.cancel();
            tasks.close();
            tasks.wait().await;
            alert_tasks.close();
            alert_tasks.wait().await;
            bridge_stop.cancel();
            bridge_tasks.close();
            bridge_tasks.wait().await;
            pipeline.flush_refusal_audit().await;
            audit_stop.cancel();
            let _ = audit_task.await;
            store.close().await;
            // The final head, read after the last commit.
            if let Ok(reopened) = open_store(&config).await {
                crate::store::audit::anchor_head(&*reopened, &anchors, &audit_key).await;
                reopened.close().await;
            }
            tracing::info!(event = "server.stopped", message = "Stopped cleanly.");
            served.context("serving the API")
        }),
    };
    Ok(running)
}

/// Writes one line to standard output; a reader that went away (closed pipe) is not an error
/// worth stopping a clinical service for.
fn announce_line(line: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

/// Audits the configuration in force when it differs from the last one this data dir ran
/// with: a site's change of ranges, limits or policy is recorded with the keys that changed.
/// Secrets serialise as `[redacted]`.
async fn audit_config_change(store: &dyn Store, config: &Config) -> anyhow::Result<()> {
    use sha2::{Digest, Sha256};
    let current = serde_json::to_value(config).context("serialising the configuration")?;
    let sha256 = hex::encode(Sha256::digest(current.to_string().as_bytes()));
    let previous = store.last_audit("config.applied".to_owned()).await?;
    let previous: Option<serde_json::Value> =
        previous.and_then(|row| serde_json::from_str(&row.details).ok());
    if previous
        .as_ref()
        .is_some_and(|p| p["sha256"].as_str() == Some(sha256.as_str()))
    {
        return Ok(());
    }
    let changed: Vec<String> = match previous.as_ref().and_then(|p| p["config"].as_object()) {
        Some(before) => current
            .as_object()
            .map(|now| {
                now.iter()
                    .filter(|(key, value)| before.get(*key) != Some(*value))
                    .map(|(key, _)| key.clone())
                    .collect()
            })
            .unwrap_or_default(),
        None => vec!["(first start)".to_owned()],
    };
    store
        .audit(AuditEntry {
            actor: "system:serve".to_owned(),
            action: "config.applied".to_owned(),
            target: "config".to_owned(),
            details: serde_json::json!({ "sha256": sha256, "changed": changed, "config": current }),
        })
        .await?;
    Ok(())
}

/// How often the leader looks for alert timers that are due (DEVICE_OFFLINE, escalation, end
/// of audio pause) in the shared alert state: a timer fires at most this late.
const ALERT_TIMERS_EVERY: Duration = Duration::from_secs(1);

/// The leader's alert timers on the shared path (`alerts::shared`), until leadership ends.
async fn alert_timer_task(alerts: Arc<crate::alerts::AlertService>, term: CancellationToken) {
    loop {
        tokio::select! {
            () = term.cancelled() => return,
            () = tokio::time::sleep(ALERT_TIMERS_EVERY) => {}
        }
        alerts.shared_tick().await;
    }
}

async fn retention_task(store: Arc<dyn Store>, retention: Retention, shutdown: CancellationToken) {
    // First pass shortly after start, then hourly.
    let mut delay = Duration::from_secs(10);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
        delay = RETENTION_EVERY;
        match store.purge(crate::clock::now(), retention).await {
            Ok(counts) => tracing::debug!(
                event = "retention.done",
                message = "Retention pass done.",
                ?counts
            ),
            Err(err) => {
                tracing::warn!(event = "retention.failed", message = "Retention pass failed.", error = %err)
            }
        }
    }
}

/// How often the anchor task looks at the chain's head (for the every-N-rows anchor).
const ANCHOR_CHECK_EVERY: Duration = Duration::from_secs(1);

/// Writes the audit chain's head, signed, to the anchors file every [`ANCHOR_EVERY`] and
/// whenever `every_rows` entries were added since the last anchor.
async fn anchor_task(
    store: Arc<dyn Store>,
    path: std::path::PathBuf,
    key: crate::store::audit::AuditKey,
    every_rows: u64,
    shutdown: CancellationToken,
) {
    let mut last_periodic = tokio::time::Instant::now();
    let mut last_id = None;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(ANCHOR_CHECK_EVERY) => {}
        }
        let head = store.audit_head().await.ok().flatten().map(|(id, _)| id);
        let grown = match (head, last_id) {
            (Some(head), Some(last)) => head.saturating_sub(last) as u64 >= every_rows,
            (Some(_), None) => true,
            _ => false,
        };
        if grown || last_periodic.elapsed() >= ANCHOR_EVERY {
            last_periodic = tokio::time::Instant::now();
            if let Some(id) = crate::store::audit::anchor_head(store.as_ref(), &path, &key).await {
                last_id = Some(id);
            }
        }
    }
}

async fn refusal_audit_task(pipeline: Arc<Pipeline>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(REFUSAL_AUDIT_EVERY) => {}
        }
        pipeline.flush_refusal_audit().await;
    }
}

/// Reloads the anomaly model on every SIGHUP (audited like the API's reload).
#[cfg(unix)]
async fn reload_on_sighup(
    mut hangup: tokio::signal::unix::Signal,
    slot: Arc<ModelSlot>,
    store: Arc<dyn Store>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            received = hangup.recv() => {
                if received.is_none() {
                    return;
                }
                model::reload_and_audit(&slot, store.as_ref(), "system:sighup".to_owned()).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn start_binds_port_zero_and_returns_what_it_bound() {
        let dir = tempfile::tempdir().unwrap();
        let any_port: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let mut config = Config {
            data_dir: dir.path().join("data"),
            http_addr: any_port,
            dashboard_addr: any_port,
            ..Config::default()
        };
        config.http.tls = false;
        config.mqtt.mqtts_addr = any_port;
        config.mqtt.plaintext_addr = Some(any_port);
        let shutdown = CancellationToken::new();
        let running = start(config, shutdown.clone()).await.unwrap();
        let dashboard = running.dashboard.expect("started with a dashboard");
        let mqtts = running.mqtts.expect("the embedded broker is on");
        let mqtt = running.mqtt.expect("a plaintext listener was asked for");
        assert!(running.mqtt_wss.is_none());
        for addr in [running.api, dashboard, mqtts, mqtt] {
            assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");
        }
        // Bound and accepting once `start` returns: no polling needed.
        let health = get(running.api, "/health").await;
        assert!(health.starts_with("HTTP/1.1 200"), "{health}");
        let health = get(dashboard, "/health").await;
        assert!(health.starts_with("HTTP/1.1 200"), "{health}");
        tokio::net::TcpStream::connect(mqtts).await.unwrap();
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(60), running)
            .await
            .expect("the server stops within a minute of shutdown")
            .unwrap();
        // It closed the store: the audit chain it wrote on start is anchored outside it.
        let anchors = crate::store::audit::anchors_path(&dir.path().join("data"));
        assert!(
            !crate::store::audit::read_anchors(&anchors)
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn start_names_the_address_it_could_not_bind() {
        let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().join("data"),
            http_addr: taken.local_addr().unwrap(),
            ..Config::default()
        };
        let err = start(config, CancellationToken::new()).await.unwrap_err();
        let expected = format!("binding the API to {}", taken.local_addr().unwrap());
        assert_eq!(err.to_string(), expected);
    }
}
