//! Fixtures for the unit tests: the service's parts over a real SQLite store in a temporary
//! directory (not a mock) — store, pipeline, alert service, auth service, the guarded API —
//! built the way `serve` builds them, and a test clock that follows tokio's, so that
//! `tokio::time::pause`/`advance` move the service's time as well as its timers.
//!
//! Test code only (`#[cfg(test)]` in `lib.rs`): nothing in it runs in the service.

use crate::alerts::AlertService;
use crate::api::AppState;
use crate::auth::layer::AuthService;
use crate::config::Config;
use crate::events::{Event, EventBus};
use crate::metrics::Metrics;
use crate::model::ModelSlot;
use crate::pipeline::{Pipeline, PipelineParts};
use crate::store::sqlite::SqliteStore;
use crate::store::{AuthWrite, Store, TokenRecord, UserRecord};
use std::sync::Arc;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use crate::clock::now;

/// Defaults, with devices expected hourly (tests that want DEVICE_OFFLINE set the interval)
/// and no webhooks.
pub fn config(dir: &std::path::Path) -> Config {
    let mut config = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    config.registry.default_expected_interval_s = 3600.0;
    config
}

/// A running set of the service's parts (no listeners).
pub struct Service {
    pub dir: tempfile::TempDir,
    pub store: Arc<SqliteStore>,
    pub pipeline: Arc<Pipeline>,
    pub alerts: Arc<AlertService>,
    pub auth: Arc<AuthService>,
    /// Subscribed before anything was ingested: sees every event.
    pub events: broadcast::Receiver<Event>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

/// The parts over a new temporary directory, with `tweak` applied to [`config`].
pub async fn service(tweak: impl FnOnce(&mut Config)) -> Service {
    let dir = tempfile::tempdir().expect("creating a temporary directory");
    service_in(dir, None, tweak).await
}

/// The parts over `dir` (a restart when it holds a store), scoring with `model` when given.
pub async fn service_in(
    dir: tempfile::TempDir,
    model: Option<Arc<ModelSlot>>,
    tweak: impl FnOnce(&mut Config),
) -> Service {
    let mut config = config(dir.path());
    tweak(&mut config);
    let store = crate::server::open_sqlite(&config).expect("opening the store in a temp dir");
    let dyn_store: Arc<dyn Store> = Arc::clone(&store) as Arc<dyn Store>;
    let bus = EventBus::new();
    let events = bus.subscribe();
    let tasks = TaskTracker::new();
    let shutdown = CancellationToken::new();
    let alerts = AlertService::start(
        Arc::clone(&dyn_store),
        config.alerting.clone(),
        config.rules.clone(),
        bus.clone(),
        &tasks,
        shutdown.clone(),
    )
    .await
    .expect("starting the alert service");
    let pipeline = Arc::new(Pipeline::new(PipelineParts {
        store: Arc::clone(&dyn_store),
        limits: config.limits.clone(),
        rules: config.rules.clone(),
        metrics: Arc::new(Metrics::default()),
        queue_timeout: config.store.queue_timeout(),
        model: model.unwrap_or_else(|| Arc::new(ModelSlot::empty())),
        alerts: Arc::clone(&alerts),
        events: bus,
    }));
    let auth = Arc::new(AuthService::new(Arc::clone(&dyn_store), &config.http));
    tasks.spawn(Arc::clone(&auth.audit).run(shutdown.clone()));
    Service {
        dir,
        store,
        pipeline,
        alerts,
        auth,
        events,
        tasks,
        shutdown,
    }
}

impl Service {
    pub fn store(&self) -> Arc<dyn Store> {
        Arc::clone(&self.store) as Arc<dyn Store>
    }

    /// The handlers' state, as `serve` builds it.
    pub fn app_state(&self) -> AppState {
        AppState {
            pipeline: Arc::clone(&self.pipeline),
            store: self.store(),
            broker: crate::ingest::BrokerStatus::default(),
            auth: Arc::clone(&self.auth),
            ops: crate::api::metrics::OpsInfo::default(),
            cluster: Arc::new(crate::cluster::ClusterStatus::alone("test".to_owned())),
        }
    }

    /// The API's router behind the guard (plaintext), as the API listener serves it.
    pub fn app(&self) -> axum::Router {
        let (app, table) = crate::api::app(self.app_state(), self.shutdown.clone());
        crate::api::guarded(
            app,
            &table,
            Arc::clone(&self.auth),
            false,
            &crate::config::HttpConfig {
                max_concurrent_requests: 64,
                ..crate::config::HttpConfig::default()
            },
        )
    }

    /// Stops the tasks (the alert persister drains what is queued), then closes the store;
    /// returns the directory, for a restart.
    pub async fn stop(self) -> tempfile::TempDir {
        self.shutdown.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        self.store.close().await;
        self.dir
    }

    /// Stores an API token with this role (and expiry, RFC 3339); returns its text.
    pub async fn token(
        &self,
        role: &str,
        device_id: Option<&str>,
        expires_at: Option<String>,
    ) -> String {
        let token = crate::auth::generate_token();
        let record = TokenRecord {
            name: format!("{role}-{}", token.id),
            id: token.id,
            role: role.to_owned(),
            device_id: device_id.map(str::to_owned),
            secret_hash: token.secret_hash,
            created_at: now().to_rfc3339(),
            created_by: "test".to_owned(),
            expires_at,
            revoked_at: None,
        };
        self.store
            .auth_write(AuthWrite::CreateToken(record), "test".to_owned())
            .await
            .expect("storing a token");
        token.text
    }

    /// Stores an enabled dashboard user (its password hash is not a real one: sessions are
    /// made with `auth.sessions.create`, not by logging in).
    pub async fn user(&self, username: &str, role: &str) {
        let at = now().to_rfc3339();
        let record = UserRecord {
            username: username.to_owned(),
            role: role.to_owned(),
            password_hash: "not a hash".to_owned(),
            created_at: at.clone(),
            created_by: "test".to_owned(),
            updated_at: at,
            disabled_at: None,
        };
        self.store
            .auth_write(AuthWrite::CreateUser(record), "test".to_owned())
            .await
            .expect("storing a user");
    }
}

/// A seed-shaped reading without a timestamp (the server's time is used).
pub fn reading_json(device_id: &str, heart_rate: f64) -> String {
    format!(
        r#"{{"device_id":"{device_id}","heart_rate":{heart_rate},"body_temp":36.8,"signal_strength":-55,"battery_level":90}}"#
    )
}
