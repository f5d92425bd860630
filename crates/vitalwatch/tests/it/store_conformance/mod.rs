//! The store's conformance suite: the contract of every [`Store`] method, written against the
//! trait alone, so that every backend runs the very same tests.
//!
//! A contract is an `async fn(Open)`: it opens fresh stores through the backend's [`Open`]
//! (one per temporary directory it owns), drives them through `Arc<dyn Store>` and checks what
//! the trait promises, nothing about SQL. [`contracts!`] lists every contract once; it builds
//! [`CONTRACTS`] (for [`run_all`]) and one `#[tokio::test]` per contract and backend. A new
//! backend adds an `Open` function and one `mod` in the macro (see `sqlite` and `postgres`
//! below). PostgreSQL runs on the test binary's cluster, a fresh database per store.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use tempfile::TempDir;
use vitalwatch::store::{
    ItemOutcome, PreparedReading, RegistryPolicy, Source, Store, StoreOptions,
};
use vitalwatch_core::rules::{RuleSet, Severity, check};
use vitalwatch_core::telemetry::{DeviceId, Reading, Timestamp};

pub mod alerts;
mod audit;
pub mod auth;
mod dashboard;
mod devices;
mod lifecycle;
mod readings;

/// Opens a fresh, empty store of the backend under test. `dir` is a temporary directory that
/// outlives the store; a backend without files may ignore it (and use, say, a new database,
/// kept by the returned guard).
pub type Open =
    Arc<dyn Fn(&Path, StoreOptions) -> Pin<Box<dyn Future<Output = Opened>>> + Send + Sync>;

/// A store just opened, and whatever must live as long as it (a database of its own).
pub struct Opened {
    pub store: Arc<dyn Store>,
    pub guard: Option<Box<dyn std::any::Any>>,
}

/// One contract, boxed so contracts of every area fit in one list.
pub type Contract = fn(Open) -> Pin<Box<dyn Future<Output = ()>>>;

macro_rules! contracts {
    ($($area:ident :: $name:ident),* $(,)?) => {
        /// Every contract, by name.
        pub const CONTRACTS: &[(&str, Contract)] = &[
            $((concat!(stringify!($area), "::", stringify!($name)), |open| Box::pin($area::$name(open)))),*
        ];

        /// The suite against SQLite, one test per contract.
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$area::$name(super::sqlite()).await;
                }
            )*
        }

        /// The suite against PostgreSQL, one test per contract.
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$area::$name(super::postgres()).await;
                }
            )*
        }
    };
}

contracts! {
    readings::readings_round_trip,
    readings::an_empty_write_stores_nothing,
    readings::the_same_timestamp_is_stored_once,
    readings::a_redelivered_seq_is_a_duplicate_within_the_window,
    readings::findings_become_anomalies_of_their_reading,
    readings::reading_queries_filter_and_page,
    readings::anomaly_queries_filter_and_page,
    readings::normal_readings_are_those_without_anomalies,
    readings::events_after_resume_a_stream,
    readings::try_write_stores_when_there_is_room,
    devices::registration_is_explicit_and_unique,
    devices::updates_are_partial_and_audited,
    devices::auto_register_registers_on_the_first_reading,
    devices::strict_policy_quarantines_unknown_devices,
    devices::deactivated_devices_are_quarantined,
    devices::stored_readings_count_and_touch_their_device,
    devices::one_write_of_many_readings_counts_each_device_s_own,
    audit::audit_entries_form_a_verifiable_chain,
    audit::audited_changes_join_the_chain,
    alerts::transitions_persist_episodes_and_history,
    alerts::one_open_episode_per_device_and_condition,
    alerts::alert_queries_list_open_first_then_by_priority,
    alerts::verdicts_label_the_readings_of_their_episode,
    alerts::thresholds_are_set_replaced_and_cleared,
    alerts::webhook_deliveries_are_listed_newest_first,
    auth::tokens_are_created_found_and_revoked,
    auth::users_are_created_changed_and_disabled,
    dashboard::stats_count_the_window,
    dashboard::series_bucket_each_device,
    dashboard::series_come_in_the_order_asked,
    dashboard::latest_readings_are_one_per_device,
    lifecycle::retention_purges_by_age_and_keeps_the_chain_verifiable,
    lifecycle::health_is_ok_while_open,
    lifecycle::a_closed_store_refuses_work,
}

/// Runs every contract against one backend, in order; for a backend whose setup is too
/// costly for one test per contract.
pub async fn run_all(open: Open) {
    for (name, contract) in CONTRACTS {
        eprintln!("store conformance: {name}");
        contract(Arc::clone(&open)).await;
    }
}

/// SQLite on a file in the test's directory.
pub fn sqlite() -> Open {
    Arc::new(|dir: &Path, options: StoreOptions| {
        let store = vitalwatch::store::sqlite::SqliteStore::open(&dir.join("store.db"), options)
            .expect("a fresh SQLite store opens");
        let opened = Opened {
            store: Arc::new(store),
            guard: None,
        };
        Box::pin(async move { opened })
    })
}

/// PostgreSQL: a new database on the test binary's cluster for each store.
pub fn postgres() -> Open {
    Arc::new(|_dir: &Path, options: StoreOptions| {
        Box::pin(async move {
            let database = crate::support::postgres::Cluster::shared().database();
            let store = vitalwatch::store::postgres::PostgresStore::open(
                &database.url(),
                options,
                vitalwatch::store::postgres::PostgresSettings::default(),
            )
            .await
            .expect("a fresh PostgreSQL store opens");
            Opened {
                store: Arc::new(store),
                guard: Some(Box::new(database)),
            }
        })
    })
}

#[tokio::test]
async fn the_sqlite_store_passes_the_whole_suite_in_one_run() {
    run_all(sqlite()).await;
}

/// A store in a directory (and, on PostgreSQL, a database) of its own, removed after the test.
pub struct Fixture {
    pub store: Arc<dyn Store>,
    _guard: Option<Box<dyn std::any::Any>>,
    _dir: TempDir,
}

impl Fixture {
    pub async fn new(open: &Open) -> Fixture {
        Fixture::with(open, options()).await
    }

    pub async fn with(open: &Open, options: StoreOptions) -> Fixture {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let opened = open(dir.path(), options).await;
        Fixture {
            store: opened.store,
            _guard: opened.guard,
            _dir: dir,
        }
    }

    /// Writes readings (their findings from the default rules) and returns the outcomes.
    pub async fn write(&self, readings: Vec<Reading>) -> Vec<ItemOutcome> {
        let items = readings.into_iter().map(prepared).collect();
        self.store
            .write_readings(items)
            .await
            .expect("readings are written")
            .into_iter()
            .map(|written| written.outcome)
            .collect()
    }

    /// Writes one reading that must be stored; returns its id.
    pub async fn store_one(&self, reading: Reading) -> i64 {
        stored_id(&self.write(vec![reading]).await[0])
    }
}

/// Auto-register, a one-hour redelivery window, CRITICAL for unknown devices.
pub fn options() -> StoreOptions {
    StoreOptions {
        policy: RegistryPolicy::AutoRegister,
        default_expected_interval_s: 5.0,
        max_batch: 64,
        queue_capacity: 64,
        redelivery_window_s: 3600,
        unknown_device_severity: Severity::Critical,
    }
}

/// 2026-01-01T00:00:00Z, the suite's epoch.
const T0_SECS: i64 = 1_767_225_600;

/// `secs` seconds after the suite's epoch.
pub fn at(secs: i64) -> Timestamp {
    Timestamp::from_secs(T0_SECS + secs)
}

pub fn device(id: &str) -> DeviceId {
    DeviceId::parse(id, 64).expect("a valid device id")
}

/// A reading of `device_id` taken (and received) at `timestamp`, every vital in range.
pub fn normal(device_id: &str, timestamp: Timestamp) -> Reading {
    let mut reading = Reading::empty(device(device_id), timestamp);
    reading.heart_rate_bpm = Some(72.0);
    reading.body_temp_c = Some(36.8);
    reading.signal_strength_dbm = Some(-60.0);
    reading.battery_pct = Some(80.0);
    reading
}

/// Like [`normal`], with a heart rate the default rules flag.
pub fn tachycardic(device_id: &str, timestamp: Timestamp) -> Reading {
    let mut reading = normal(device_id, timestamp);
    reading.heart_rate_bpm = Some(150.0);
    reading
}

pub fn prepared(reading: Reading) -> PreparedReading {
    let mut findings = Vec::new();
    check(&reading, &RuleSet::default(), &mut findings);
    PreparedReading {
        reading,
        findings,
        source: Source::Http,
        ml_score: None,
    }
}

/// The id of a reading that was stored; panics (failing the test) on any other outcome.
pub fn stored_id(outcome: &ItemOutcome) -> i64 {
    match outcome {
        ItemOutcome::Stored { reading_id, .. } => *reading_id,
        other => panic!("expected a stored reading, got {other:?}"),
    }
}

pub use crate::support::wait::eventually;
