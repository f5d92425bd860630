//! The Prometheus exposition of `GET /metrics`: the process-wide recorder of the `metrics`
//! facade (metrics-exporter-prometheus renders it in the text format 0.0.4), the histogram
//! buckets, the process collector, and [`render`], which first writes the service's own
//! counters ([`Metrics`], the source `/health` reads too) and a scrape-time [`Snapshot`] into
//! it.
//!
//! Histograms are recorded where the work happens with `::metrics::histogram!` and the names
//! below (the store writer, the pipeline); counters that `/health` shows are never recorded
//! twice: the exporter's copy is set from the atomics at every scrape. The recorder is global
//! (the facade's design), so several servers in one test process share histograms; each
//! scrape still sets its own server's counters under one lock before rendering.

use super::{Metrics, Transport};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use parking_lot::Mutex;
use std::sync::OnceLock;

/// Readings per committed transaction.
pub const COMMIT_BATCH_SIZE: &str = "vitalwatch_commit_batch_size";
/// Time to write and commit one transaction of readings.
pub const COMMIT_SECONDS: &str = "vitalwatch_commit_seconds";
/// From a reading's arrival at the pipeline to its answer (PUBACK or HTTP 200), by transport.
pub const ACK_SECONDS: &str = "vitalwatch_ack_seconds";
/// Time to score one body's readings with the anomaly model.
pub const MODEL_SCORE_SECONDS: &str = "vitalwatch_model_score_seconds";
/// Commands waiting in the store writer's queue when it took its last batch.
pub const STORE_QUEUE_DEPTH: &str = "vitalwatch_store_queue_depth";
/// Alert episodes raised and resolved, by condition and priority (from the event bus).
pub const ALERTS_OPENED: &str = "vitalwatch_alerts_opened_total";
pub const ALERTS_CLOSED: &str = "vitalwatch_alerts_closed_total";

/// Latency buckets in seconds: from a fast commit (1 ms) to a stalled one (10 s).
const SECONDS_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Readings per transaction, up to the largest `store.max_batch` worth allowing.
const BATCH_BUCKETS: [f64; 12] = [
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0,
];

/// What only the layers above know, read at each scrape.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// `/ready`'s answer.
    pub ready: bool,
    pub store_up: bool,
    /// `None` unless an external broker is configured.
    pub broker_connected: Option<bool>,
    pub model_loaded: bool,
    /// Open alerts by priority name (`low`, `medium`, `high`), zeros included.
    pub open_alerts: Vec<(&'static str, u64)>,
    pub store_queue_capacity: u64,
    /// Audit entries waiting for the writer, and refused because the buffer was full.
    pub audit_waiting: u64,
    pub audit_refused: u64,
    pub audit_written: u64,
    /// Each certificate the service presents, by role (`server`, `ca`): its notAfter, in
    /// seconds since the epoch.
    pub certificate_expiry: Vec<(&'static str, i64)>,
}

struct Exporter {
    handle: PrometheusHandle,
    process: metrics_process::Collector,
    /// One scrape at a time: setting the counters and rendering them is one step.
    render: Mutex<()>,
}

static EXPORTER: OnceLock<Exporter> = OnceLock::new();

/// Installs the recorder on first use; later calls return the same one.
fn exporter() -> &'static Exporter {
    EXPORTER.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), &SECONDS_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full(COMMIT_BATCH_SIZE.to_owned()),
                    &BATCH_BUCKETS,
                )
            })
            .expect("the bucket lists are constant and not empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if ::metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!(
                message = "Another metrics recorder is installed; /metrics shows counters only.",
                event = "metrics.recorder_taken",
            );
        }
        let process = metrics_process::Collector::default();
        process.describe();
        describe();
        super::connections::describe();
        super::connections::register_zeros();
        super::cluster::describe();
        super::cluster::register_zeros();
        Exporter {
            handle,
            process,
            render: Mutex::new(()),
        }
    })
}

/// Installs the recorder, so histograms recorded from now on are kept. Called by the server
/// before it starts.
pub fn install() {
    exporter();
}

/// Drains the histograms' pending samples every few seconds (they also drain at every
/// scrape), so a server nobody scrapes does not grow.
pub async fn upkeep_task(shutdown: tokio_util::sync::CancellationToken) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = every.tick() => exporter().handle.run_upkeep(),
        }
    }
}

fn describe() {
    use ::metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "vitalwatch_readings_received_total",
        "Readings that reached the pipeline, whatever became of them."
    );
    describe_counter!(
        "vitalwatch_readings_stored_total",
        "Readings committed to the store (the count /health shows)."
    );
    describe_counter!(
        "vitalwatch_readings_duplicate_total",
        "Redeliveries answered with the original reading id."
    );
    describe_counter!(
        "vitalwatch_readings_quarantined_total",
        "Readings of unregistered or deactivated devices, kept apart."
    );
    describe_counter!(
        "vitalwatch_readings_rejected_total",
        "Inputs refused, by reason."
    );
    describe_counter!(
        "vitalwatch_anomalies_total",
        "Anomalies recorded with stored or quarantined readings."
    );
    describe_counter!(
        "vitalwatch_mqtt_rate_limited_total",
        "MQTT messages delayed by their connection's rate limit (none dropped)."
    );
    describe_histogram!(COMMIT_BATCH_SIZE, "Readings per committed transaction.");
    describe_histogram!(
        COMMIT_SECONDS,
        Unit::Seconds,
        "Time to write and commit one transaction of readings."
    );
    describe_histogram!(
        ACK_SECONDS,
        Unit::Seconds,
        "From a reading's arrival at the pipeline to its answer, by transport."
    );
    describe_histogram!(
        MODEL_SCORE_SECONDS,
        Unit::Seconds,
        "Time to score one body's readings with the anomaly model."
    );
    describe_gauge!(
        STORE_QUEUE_DEPTH,
        "Commands waiting in the store writer's queue."
    );
    describe_gauge!(
        "vitalwatch_store_queue_capacity",
        "The store writer queue's capacity."
    );
    describe_gauge!("vitalwatch_store_up", "1 while the store answers.");
    describe_gauge!(
        "vitalwatch_ready",
        "1 while the node can commit readings (what /ready answers)."
    );
    describe_gauge!(
        "vitalwatch_broker_connected",
        "1 while the external broker connection is up (external-broker mode only)."
    );
    describe_gauge!(
        "vitalwatch_model_loaded",
        "1 while an anomaly model is loaded."
    );
    describe_gauge!("vitalwatch_alerts_open", "Open alerts, by priority.");
    describe_counter!(
        ALERTS_OPENED,
        "Alert episodes raised, by condition and priority."
    );
    describe_counter!(
        ALERTS_CLOSED,
        "Alert episodes resolved, by condition and priority."
    );
    describe_gauge!(
        "vitalwatch_audit_buffer_depth",
        "Audit entries waiting to be written."
    );
    describe_counter!(
        "vitalwatch_audit_buffer_refused_total",
        "Audit entries refused because the buffer was full (their reads were refused too)."
    );
    describe_counter!(
        "vitalwatch_audit_buffer_written_total",
        "Audit entries handed to the store."
    );
    describe_gauge!(
        "vitalwatch_certificate_expiry_timestamp_seconds",
        "When a certificate the service presents expires (notAfter), by role."
    );
    describe_gauge!(
        "vitalwatch_audit_chain_ok",
        "1 while every audit row checked so far verifies against the hash chain, 0 once one does not."
    );
    describe_gauge!(
        "vitalwatch_audit_chain_verified_entries",
        "Audit rows verified since start."
    );
    describe_gauge!(
        "vitalwatch_build_info",
        "Always 1; the version is the label."
    );
    describe_gauge!(
        "vitalwatch_uptime_seconds",
        Unit::Seconds,
        "Seconds since the server started."
    );
}

/// The exposition text: the service's counters from `metrics`, the scrape-time state from
/// `snapshot`, the histograms and the process collector.
pub fn render(metrics: &Metrics, snapshot: &Snapshot) -> String {
    use ::metrics::{counter, gauge};
    let exporter = exporter();
    let _one_scrape = exporter.render.lock();
    for transport in Transport::ALL {
        counter!("vitalwatch_readings_received_total", "transport" => transport.as_str())
            .absolute(0);
    }
    let mut received = [0u64; 2];
    for (transport, outcome, reason, count) in metrics.by_transport() {
        let transport_label = transport.as_str();
        received[transport as usize] += count;
        match (outcome, reason) {
            ("stored", _) => {
                counter!("vitalwatch_readings_stored_total", "transport" => transport_label)
                    .absolute(count)
            }
            ("duplicate", _) => {
                counter!("vitalwatch_readings_duplicate_total", "transport" => transport_label)
                    .absolute(count)
            }
            ("quarantined", _) => {
                counter!("vitalwatch_readings_quarantined_total", "transport" => transport_label)
                    .absolute(count)
            }
            (_, Some(reason)) => counter!(
                "vitalwatch_readings_rejected_total",
                "transport" => transport_label,
                "reason" => reason
            )
            .absolute(count),
            _ => {}
        }
    }
    for transport in Transport::ALL {
        counter!("vitalwatch_readings_received_total", "transport" => transport.as_str())
            .absolute(received[transport as usize]);
    }
    counter!("vitalwatch_anomalies_total").absolute(metrics.anomalies());
    counter!("vitalwatch_mqtt_rate_limited_total").absolute(metrics.n_rate_limited());
    gauge!("vitalwatch_uptime_seconds").set(metrics.uptime_s() as f64);
    gauge!("vitalwatch_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    let flag = |on: bool| if on { 1.0 } else { 0.0 };
    gauge!("vitalwatch_ready").set(flag(snapshot.ready));
    gauge!("vitalwatch_store_up").set(flag(snapshot.store_up));
    if let Some(connected) = snapshot.broker_connected {
        gauge!("vitalwatch_broker_connected").set(flag(connected));
    }
    gauge!("vitalwatch_model_loaded").set(flag(snapshot.model_loaded));
    gauge!("vitalwatch_store_queue_capacity").set(snapshot.store_queue_capacity as f64);
    for (priority, count) in &snapshot.open_alerts {
        gauge!("vitalwatch_alerts_open", "priority" => *priority).set(*count as f64);
    }
    gauge!("vitalwatch_audit_buffer_depth").set(snapshot.audit_waiting as f64);
    counter!("vitalwatch_audit_buffer_refused_total").absolute(snapshot.audit_refused);
    counter!("vitalwatch_audit_buffer_written_total").absolute(snapshot.audit_written);
    for (role, not_after) in &snapshot.certificate_expiry {
        gauge!("vitalwatch_certificate_expiry_timestamp_seconds", "certificate" => *role)
            .set(*not_after as f64);
    }
    exporter.process.collect();
    exporter.handle.render()
}

/// Records one histogram sample under one of the names above.
pub fn observe(name: &'static str, value: f64) {
    ::metrics::histogram!(name).record(value);
}

/// Records one latency sample labelled with its transport.
pub fn observe_ack(transport: Transport, seconds: f64) {
    ack_histogram(transport).record(seconds);
}

/// The acknowledgement histogram of `transport`, to record a batch's answers with one
/// registry look-up.
pub fn ack_histogram(transport: Transport) -> ::metrics::Histogram {
    ::metrics::histogram!(ACK_SECONDS, "transport" => transport.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Refusal;

    #[test]
    fn the_counters_of_health_are_the_counters_exported() {
        install();
        let metrics = Metrics::default();
        metrics.stored(Transport::Mqtt, 0);
        metrics.stored(Transport::Mqtt, 1);
        metrics.refused(Refusal::Busy, Transport::Http);
        observe(COMMIT_BATCH_SIZE, 2.0);
        let text = render(&metrics, &Snapshot::default());
        assert!(
            text.contains("vitalwatch_readings_stored_total{transport=\"mqtt\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("vitalwatch_readings_received_total{transport=\"http\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "vitalwatch_readings_rejected_total{transport=\"http\",reason=\"busy\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("# TYPE vitalwatch_commit_batch_size histogram"),
            "{text}"
        );
        assert!(
            text.contains("vitalwatch_commit_batch_size_bucket{le=\"2\"}"),
            "{text}"
        );
        assert_eq!(metrics.counts().stored, 2);
    }
}
