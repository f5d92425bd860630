//! `simulate --csv FILE`: the labelled stream as CSV, without a broker, as fast as it can be
//! written. Columns are named like the payload fields (so `vitalwatch train --input` and
//! `Dataset::from_csv` read them): one per numeric vital the scenario generates, in the vitals
//! table's order, then the ground truth: `label` (1 while an event that owes an alert is under
//! way, from its labelled onset) and `events` (the labels of every event under way,
//! `;`-separated).

use anyhow::Context;
use std::io::Write;
use std::path::Path;
use vitalwatch_core::alerting::LabelledEvent;
use vitalwatch_core::scenario::{self, EventKind, Scenario};
use vitalwatch_core::telemetry::{VitalKey, VitalKind};

/// The vitals with a column: the numeric vitals a scenario generates, in table order.
fn vital_columns() -> impl Iterator<Item = VitalKey> {
    scenario::GENERATED_VITALS
        .into_iter()
        .filter(|vital| vital.kind() == VitalKind::Number)
}

/// The header, in order.
pub fn columns() -> Vec<&'static str> {
    let mut columns = vec!["device_id", "timestamp"];
    columns.extend(vital_columns().map(VitalKey::key));
    columns.extend([
        "seq",
        "send_s",
        "measured_s",
        "redelivery",
        "label",
        "events",
    ]);
    columns
}

/// Event kinds that are about the device's transport, not about the patient or the sensor:
/// they never make a reading anomalous.
fn is_transport(kind: EventKind) -> bool {
    matches!(
        kind,
        EventKind::ClockSkew | EventKind::Duplicates | EventKind::Outage | EventKind::Dropout
    )
}

/// Writes the scenario's stream to `path` and returns the number of rows.
pub fn write(scenario: &Scenario, count: Option<u64>, path: &Path) -> anyhow::Result<u64> {
    let labelled = scenario::generate(scenario)?.events;
    // The labelled events that mark readings anomalous, per device, in scenario order.
    let mut anomalous: Vec<(&str, &LabelledEvent)> = Vec::new();
    let mut index = 0;
    for patient in &scenario.patients {
        for spec in &patient.events {
            let event = &labelled[index];
            index += 1;
            if !is_transport(spec.kind) {
                anomalous.push((patient.device_id.as_str(), event));
            }
        }
    }
    let stream = scenario::stream(scenario)?;
    let start = stream.start();
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    writeln!(out, "{}", columns().join(","))?;
    let mut per_device = vec![0u64; scenario.patients.len()];
    let mut rows = 0u64;
    for transmission in stream {
        let idx = transmission.device_idx;
        if count.is_some_and(|limit| per_device[idx] >= limit) {
            continue;
        }
        per_device[idx] += 1;
        let patient = &scenario.patients[idx];
        let reading = &transmission.reading;
        let measured = start.saturating_add_micros((transmission.measured_s * 1e6).round() as i64);
        let label = anomalous.iter().any(|(device, event)| {
            *device == patient.device_id && event.onset <= measured && measured < event.end
        });
        let events: Vec<String> = patient
            .events
            .iter()
            .filter(|e| {
                (e.onset_s as f64) <= transmission.measured_s
                    && transmission.measured_s < e.end_s as f64
            })
            .map(|e| {
                e.label
                    .clone()
                    .unwrap_or_else(|| e.kind.as_str().to_owned())
            })
            .collect();
        write!(
            out,
            "{},{}",
            reading.device_id.as_str(),
            reading.timestamp.to_rfc3339()
        )?;
        for vital in vital_columns() {
            match reading.vital(vital) {
                Some(value) => write!(out, ",{value}")?,
                None => write!(out, ",")?,
            }
        }
        writeln!(
            out,
            ",{},{},{},{},{},{}",
            reading.seq.unwrap_or(0),
            transmission.send_s,
            transmission.measured_s,
            u8::from(transmission.redelivery),
            u8::from(label),
            events.join(";"),
        )?;
        rows += 1;
    }
    out.flush()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vitalwatch_core::detect::Dataset;

    #[test]
    fn the_header_is_the_generated_numeric_vitals_between_identity_and_truth() {
        assert_eq!(
            columns().join(","),
            "device_id,timestamp,heart_rate,body_temp,signal_strength,battery_level,spo2,\
             respiratory_rate,systolic_bp,diastolic_bp,seq,send_s,measured_s,redelivery,label,events"
        );
    }

    #[test]
    fn the_csv_reads_back_as_a_labelled_dataset() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("stream.csv");
        let scenario = super::super::builtin::population(5, 2, 5.0, 3600);
        let rows = write(&scenario, None, &path).expect("written");
        assert_eq!(rows, 5 * 721);
        let text = std::fs::read_to_string(&path).expect("read");
        let data = Dataset::from_csv(&text).expect("parses");
        assert_eq!(data.n_rows() as u64, rows);
        let labels = data.labels().expect("label column");
        let positives = labels.iter().filter(|l| **l).count();
        // sim-005 has a fever from 20 % to 70 % of the hour, labelled once it reaches 38.1 °C.
        assert!((100..=360).contains(&positives), "{positives}");
    }
}
