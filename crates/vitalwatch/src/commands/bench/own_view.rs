//! The server's own account of a load run, read from its `/metrics` as the timed phase starts
//! and after it ends: how long a reading spent inside it (arrival at the pipeline to its
//! answer) and what its group commit did. The connections and warm-up readings before the
//! timed phase are left out: 1 000 warm-up readings committed one by one would make the
//! readings per commit look ten times smaller than under the load. Printed beside the clients' latency, it splits what the clients see into the part the
//! server measures and the rest (TLS, the broker thread's turn, the network and the clients
//! themselves), which no client-side figure can tell apart.

use crate::metrics::prometheus::{ACK_SECONDS, COMMIT_BATCH_SIZE, COMMIT_SECONDS};
use crate::pki::CertsDir;
use std::net::SocketAddr;

/// Means over the timed phase from the server's histograms.
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
    /// The view of what happened between two exposition texts (`start` empty: since the
    /// server started); `None` when a series is missing at `end` or nothing was acknowledged
    /// or committed in between.
    pub(super) fn between(start: &str, end: &str) -> Option<OwnView> {
        let delta =
            |series: String| Some(value(end, &series)? - value(start, &series).unwrap_or(0.0));
        let ack_sum = delta(format!("{ACK_SECONDS}_sum{{transport=\"mqtt\"}}"))?;
        let acks = delta(format!("{ACK_SECONDS}_count{{transport=\"mqtt\"}}"))?;
        let commit_sum = delta(format!("{COMMIT_SECONDS}_sum"))?;
        let commits = delta(format!("{COMMIT_SECONDS}_count"))?;
        let batched = delta(format!("{COMMIT_BATCH_SIZE}_sum"))?;
        (acks > 0.0 && commits > 0.0).then(|| OwnView {
            ack_mean_ms: 1000.0 * ack_sum / acks,
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

/// The body of `GET path` on the server's default HTTPS (trusting the bench's own CA).
pub(super) fn get(api: SocketAddr, certs: &CertsDir, path: &str) -> anyhow::Result<String> {
    let target = crate::sim::http::HttpTarget {
        url: format!("https://{api}{path}"),
        token: None,
        ca: Some(certs.ca_cert()),
    };
    let mut response = crate::sim::http::agent(&target)?.get(&target.url).call()?;
    Ok(response.body_mut().read_to_string()?)
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
        let view = OwnView::between("", EXPOSITION).expect("every series is there");
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
        assert_eq!(OwnView::between("", &without_mqtt), None);
        let no_commits = EXPOSITION.replace(
            "vitalwatch_commit_seconds_count 2",
            "vitalwatch_commit_seconds_count 0",
        );
        assert_eq!(OwnView::between("", &no_commits), None);
    }

    #[test]
    fn the_view_between_two_expositions_counts_only_what_came_in_between() {
        // Before the timed phase: one warm-up reading acknowledged in 1 ms, committed alone.
        let start = "\
vitalwatch_ack_seconds_sum{transport=\"mqtt\"} 0.001
vitalwatch_ack_seconds_count{transport=\"mqtt\"} 1
vitalwatch_commit_seconds_sum 0.004
vitalwatch_commit_seconds_count 1
vitalwatch_commit_batch_size_sum 1
";
        let end = EXPOSITION
            .replace("} 0.06", "} 0.061")
            .replace("count{transport=\"mqtt\"} 4", "count{transport=\"mqtt\"} 5");
        let view = OwnView::between(start, &end).expect("every series is there");
        assert!((view.ack_mean_ms - 15.0).abs() < 1e-9, "{view:?}");
        assert!((view.commit_mean_ms - 6.0).abs() < 1e-9, "{view:?}");
        assert!((view.readings_per_commit - 4.0).abs() < 1e-9, "{view:?}");
        // Nothing acknowledged in between: no view.
        assert_eq!(OwnView::between(&end, &end), None);
    }
}
