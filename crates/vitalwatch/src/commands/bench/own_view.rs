//! The server's own account of a load run, read from its `/metrics` after the run: how long a
//! reading spent inside it (arrival at the pipeline to its answer) and what its group commit
//! did. Printed beside the clients' latency, it splits what the clients see into the part the
//! server measures and the rest (TLS, the broker thread's turn, the network and the clients
//! themselves), which no client-side figure can tell apart.

use crate::metrics::prometheus::{ACK_SECONDS, COMMIT_BATCH_SIZE, COMMIT_SECONDS};
use crate::pki::CertsDir;
use anyhow::Context;
use std::net::SocketAddr;

/// Whole-run means from the server's histograms (the warm-up readings included).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct OwnView {
    /// Mean time from a reading's arrival at the pipeline to its PUBACK being queued.
    pub(super) ack_mean_ms: f64,
    /// Mean time one transaction of readings took to write and commit.
    pub(super) commit_mean_ms: f64,
    /// Mean readings per committed transaction.
    pub(super) readings_per_commit: f64,
}

impl OwnView {
    /// Reads the view from an exposition text; `None` when a series is missing or nothing
    /// was committed.
    pub(super) fn from_exposition(text: &str) -> Option<OwnView> {
        let ack_sum = value(text, &format!("{ACK_SECONDS}_sum{{transport=\"mqtt\"}}"))?;
        let ack_count = value(text, &format!("{ACK_SECONDS}_count{{transport=\"mqtt\"}}"))?;
        let commit_sum = value(text, &format!("{COMMIT_SECONDS}_sum"))?;
        let commits = value(text, &format!("{COMMIT_SECONDS}_count"))?;
        let batched = value(text, &format!("{COMMIT_BATCH_SIZE}_sum"))?;
        (ack_count > 0.0 && commits > 0.0).then(|| OwnView {
            ack_mean_ms: 1000.0 * ack_sum / ack_count,
            commit_mean_ms: 1000.0 * commit_sum / commits,
            readings_per_commit: batched / commits,
        })
    }
}

/// The value of the sample named exactly `series` (name and labels as exposed).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let (name, rest) = line.split_once(' ')?;
        (name == series).then(|| rest.trim().parse().ok()).flatten()
    })
}

/// The server's `/metrics`, over its default HTTPS (trusting the bench's own CA).
pub(super) fn fetch(api: SocketAddr, certs: &CertsDir) -> anyhow::Result<OwnView> {
    let target = crate::sim::http::HttpTarget {
        url: format!("https://{api}/metrics"),
        token: None,
        ca: Some(certs.ca_cert()),
    };
    let mut response = crate::sim::http::agent(&target)?.get(&target.url).call()?;
    let text = response.body_mut().read_to_string()?;
    OwnView::from_exposition(&text)
        .context("the server's /metrics has no MQTT acknowledgements or commits")
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPOSITION: &str = "\
# TYPE vitalwatch_ack_seconds histogram
vitalwatch_ack_seconds_bucket{transport=\"mqtt\",le=\"0.025\"} 3
vitalwatch_ack_seconds_sum{transport=\"http\"} 9
vitalwatch_ack_seconds_count{transport=\"http\"} 1
vitalwatch_ack_seconds_sum{transport=\"mqtt\"} 0.06
vitalwatch_ack_seconds_count{transport=\"mqtt\"} 4
vitalwatch_commit_seconds_sum 0.01
vitalwatch_commit_seconds_count 2
vitalwatch_commit_batch_size_sum 5
vitalwatch_commit_batch_size_count 2
";

    #[test]
    fn the_view_takes_the_mqtt_series_and_the_commit_means() {
        let view = OwnView::from_exposition(EXPOSITION).expect("every series is there");
        assert!((view.ack_mean_ms - 15.0).abs() < 1e-9, "{view:?}");
        assert!((view.commit_mean_ms - 5.0).abs() < 1e-9, "{view:?}");
        assert!((view.readings_per_commit - 2.5).abs() < 1e-9, "{view:?}");
    }

    #[test]
    fn a_missing_series_or_no_commit_gives_no_view() {
        let without_mqtt: String = EXPOSITION
            .lines()
            .filter(|line| !line.contains("mqtt"))
            .map(|line| format!("{line}\n"))
            .collect();
        assert_eq!(OwnView::from_exposition(&without_mqtt), None);
        let no_commits = EXPOSITION.replace(
            "vitalwatch_commit_seconds_count 2",
            "vitalwatch_commit_seconds_count 0",
        );
        assert_eq!(OwnView::from_exposition(&no_commits), None);
    }
}
