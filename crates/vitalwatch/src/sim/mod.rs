//! `vitalwatch simulate`: virtual patients as real devices.
//!
//! The physiology and the device behaviours come from `vitalwatch_core::scenario::stream`
//! (pure, seeded); this module paces the stream on the wall clock (`--speed`, `--rate`) and
//! hands each message to its device: an MQTT client over TLS with its own certificate
//! ([`mqtt`]), an HTTP poster ([`http`]), or a CSV file ([`csv`]). Counts of what was sent,
//! acknowledged and failed are kept in [`Stats`]. Never logs payloads or vital values.

pub mod builtin;
pub mod csv;
pub mod http;
pub mod mqtt;
mod stats;

pub use stats::{Report, Stats};

use anyhow::{Context, bail};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use vitalwatch_core::scenario::{self, Scenario, Transmission};
use vitalwatch_core::telemetry::Timestamp;

/// Messages queued per device before the pacer waits (a reconnecting device buffers this much).
const DEVICE_QUEUE: usize = 4096;

/// Where the simulated devices send.
#[derive(Clone, Debug)]
pub enum Target {
    /// MQTT over TLS: each device a client with its own certificate.
    Mqtt(mqtt::MqttTarget),
    /// `POST` each reading to `…/api/telemetry`.
    Http(http::HttpTarget),
}

/// How fast messages go out.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pace {
    /// Scenario time runs this many times faster than the wall clock (1 = real time).
    Speed(f64),
    /// This many messages per second in total, whatever the scenario's interval.
    Rate(f64),
    /// As fast as acknowledgements allow (load mode).
    Max,
}

/// One simulation run.
#[derive(Clone, Debug)]
pub struct SimOptions {
    pub scenario: Scenario,
    pub target: Target,
    pub pace: Pace,
    /// At most this many messages per device.
    pub count: Option<u64>,
    /// Print per-second sent/acked counts on standard error.
    pub progress: bool,
}

/// What starting the devices gives: a queue per device and the tasks to wait for.
pub type Devices = (
    Vec<tokio::sync::mpsc::Sender<Outgoing>>,
    Vec<tokio::task::JoinHandle<()>>,
);

/// One message for one device.
#[derive(Debug)]
pub struct Outgoing {
    pub payload: Vec<u8>,
    pub redelivery: bool,
}

/// Parses a duration such as `3s`, `500ms`, `2m`, `1h`, `1d` or a number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 3s, 500ms, 2m, 1h)"))?;
    let scale = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        other => return Err(format!("unknown unit {other:?} (use ms, s, m, h or d)")),
    };
    let secs = value * scale;
    if !(secs.is_finite() && secs > 0.0 && secs < 1e9) {
        return Err(format!("{text:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses `--speed`: `60x`, `60` or `1000x`.
pub fn parse_speed(text: &str) -> Result<f64, String> {
    let number = text.trim().trim_end_matches(['x', 'X']);
    match number.parse::<f64>() {
        Ok(speed) if speed.is_finite() && speed > 0.0 && speed <= 1e6 => Ok(speed),
        _ => Err(format!("{text:?} is not a speed (e.g. 1x, 60x, 1000x)")),
    }
}

/// Reads a scenario file (TOML, see docs/scenarios.md).
pub fn load_scenario(path: &std::path::Path) -> anyhow::Result<Scenario> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing the scenario {}", path.display()))
}

/// The JSON payload of a reading: the seed's fields plus the extended vitals and `seq`.
pub fn payload(transmission: &Transmission, timestamp: Timestamp, seq: u64) -> Vec<u8> {
    let reading = &transmission.reading;
    let mut body = serde_json::json!({
        "device_id": reading.device_id.as_str(),
        "timestamp": timestamp.to_rfc3339(),
        "heart_rate": reading.heart_rate_bpm,
        "body_temp": reading.body_temp_c,
        "signal_strength": reading.signal_strength_dbm,
        "battery_level": reading.battery_pct,
        "seq": seq,
    });
    let extended = [
        ("spo2", reading.spo2_pct),
        ("respiratory_rate", reading.respiratory_rate_per_min),
        ("systolic_bp", reading.systolic_bp_mmhg),
        ("diastolic_bp", reading.diastolic_bp_mmhg),
    ];
    for (key, value) in extended {
        if let Some(value) = value {
            body[key] = serde_json::json!(value);
        }
    }
    if let Some(on_oxygen) = reading.on_oxygen {
        body["on_oxygen"] = serde_json::json!(on_oxygen);
    }
    if let Some(consciousness) = reading.consciousness {
        body["consciousness"] = serde_json::json!(consciousness.letter());
    }
    body.to_string().into_bytes()
}

fn wall_now() -> Timestamp {
    crate::clock::now()
}

/// Runs the simulation until the scenario (or `--count`) ends or `shutdown` is cancelled,
/// then waits for outstanding acknowledgements (bounded) and reports.
pub async fn run(options: SimOptions, shutdown: CancellationToken) -> anyhow::Result<Report> {
    let SimOptions {
        scenario,
        target,
        pace,
        count,
        progress,
    } = options;
    let stream = scenario::stream(&scenario)?;
    let device_ids: Vec<String> = stream
        .devices()
        .iter()
        .map(|d| d.as_str().to_owned())
        .collect();
    let stats = Arc::new(Stats::default());
    let qos_acks = match &target {
        Target::Mqtt(target) => target.qos > 0,
        Target::Http(_) => true,
    };
    // Connect every device first: a device that cannot connect is an error, not a silent
    // "published".
    let (senders, tasks) = match &target {
        Target::Mqtt(target) => {
            mqtt::start_devices(target, &device_ids, DEVICE_QUEUE, Arc::clone(&stats)).await?
        }
        Target::Http(target) => http::start_devices(target, &device_ids, DEVICE_QUEUE, &stats)?,
    };
    let reporter = progress.then(|| stats::spawn_progress(Arc::clone(&stats), shutdown.clone()));
    let started = Instant::now();
    // Sequence numbers unique across runs (a random base above any tick number), so a
    // restarted simulator is not taken for a redelivery: the store de-duplicates on seq
    // within its redelivery window.
    let seq_base = u64::from(rand::random::<u32>()) << 23;
    // Per device, the last payload: a redelivery repeats it byte for byte.
    let mut last_payload: Vec<Vec<u8>> = vec![Vec::new(); device_ids.len()];
    let speed = match pace {
        Pace::Speed(speed) => speed,
        Pace::Rate(_) | Pace::Max => 1.0,
    };
    let mut per_device = vec![0u64; device_ids.len()];
    let mut n_done = 0usize;
    let mut n_sent_total = 0u64;
    for transmission in stream {
        let idx = transmission.device_idx;
        if count.is_some_and(|limit| per_device[idx] >= limit) {
            continue;
        }
        let due = match pace {
            Pace::Speed(speed) => Some(transmission.send_s / speed),
            Pace::Rate(rate) => Some(n_sent_total as f64 / rate),
            Pace::Max => None,
        };
        if let Some(due_s) = due {
            let at = started + Duration::from_secs_f64(due_s);
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep_until(at.into()) => {}
            }
        } else if shutdown.is_cancelled() {
            break;
        }
        // The device's clock: now, less how long the reading was held, plus its skew.
        let held_s = (transmission.send_s - transmission.measured_s) / speed;
        let timestamp =
            wall_now().saturating_add_micros(((transmission.skew_s - held_s) * 1e6).round() as i64);
        let seq = seq_base + transmission.reading.seq.unwrap_or(0);
        if !transmission.redelivery || last_payload[idx].is_empty() {
            last_payload[idx] = payload(&transmission, timestamp, seq);
        }
        let outgoing = Outgoing {
            payload: last_payload[idx].clone(),
            redelivery: transmission.redelivery,
        };
        tokio::select! {
            () = shutdown.cancelled() => break,
            sent = senders[idx].send(outgoing) => {
                if sent.is_err() {
                    bail!("device {} stopped unexpectedly", device_ids[idx]);
                }
            }
        }
        per_device[idx] += 1;
        n_sent_total += 1;
        if count.is_some_and(|limit| per_device[idx] == limit) {
            n_done += 1;
            if n_done == device_ids.len() {
                break;
            }
        }
    }
    drop(senders);
    for task in tasks {
        task.await.context("a simulated device task failed")?;
    }
    if let Some(reporter) = reporter {
        reporter.abort();
    }
    Ok(stats.report(started.elapsed(), qos_acks))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_speeds_parse_like_the_docs_say() {
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("3 parsecs").is_err());
        assert!(parse_duration("0s").is_err());
        assert_eq!(parse_speed("60x"), Ok(60.0));
        assert_eq!(parse_speed("1000"), Ok(1000.0));
        assert!(parse_speed("fast").is_err());
        assert!(parse_speed("-2x").is_err());
    }

    #[test]
    fn the_payload_carries_the_seed_fields_and_the_extended_vitals() {
        let scenario = builtin::population(1, 1, 5.0, 60);
        let first = scenario::stream(&scenario)
            .expect("valid")
            .next()
            .expect("one reading");
        let body: serde_json::Value =
            serde_json::from_slice(&payload(&first, Timestamp::from_secs(1_767_225_600), 42))
                .expect("JSON");
        for key in [
            "device_id",
            "timestamp",
            "heart_rate",
            "body_temp",
            "signal_strength",
            "battery_level",
            "spo2",
            "respiratory_rate",
            "systolic_bp",
        ] {
            assert!(!body[key].is_null(), "{key} missing in {body}");
        }
        assert_eq!(body["seq"], 42);
        assert_eq!(body["timestamp"], "2026-01-01T00:00:00.000000Z");
        let decoded = vitalwatch_core::telemetry::decode(
            body.to_string().as_bytes(),
            Timestamp::from_secs(1_767_225_600),
            &vitalwatch_core::telemetry::Limits::default(),
        );
        assert!(decoded.is_ok(), "{decoded:?}");
    }
}
