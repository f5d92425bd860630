//! Decode + rules per reading, the per-message hot path.
//!
//! Baseline in the same run: parsing the same payload into a generic `serde_json::Value`
//! (what a straightforward implementation does before it even looks at a field). Run with
//! `cargo bench -p vitalwatch-core --bench decode_rules`.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use vitalwatch_core::rules::{self, RuleSet};
use vitalwatch_core::telemetry::{self, Limits, Timestamp};

const SEED_PAYLOAD: &[u8] = br#"{"device_id":"ESP32_001","timestamp":"2024-01-16T10:30:45.123456","heart_rate":72,"body_temp":36.8,"signal_strength":-75,"battery_level":85}"#;
const ANOMALOUS_PAYLOAD: &[u8] = br#"{"device_id":"ESP32_001","timestamp":"2024-01-16T10:30:45.123456","heart_rate":131,"body_temp":39.4,"signal_strength":-105,"battery_level":5}"#;
const NOW: Timestamp = Timestamp::from_micros(1_705_401_045_000_000);

fn per_reading(c: &mut Criterion) {
    let limits = Limits::default();
    let rules = RuleSet::default();
    let mut group = c.benchmark_group("per_reading");
    group.throughput(Throughput::Elements(1));
    group.bench_function("baseline: serde_json::Value parse", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(SEED_PAYLOAD)).unwrap())
    });
    group.bench_function("decode", |b| {
        b.iter(|| telemetry::decode(black_box(SEED_PAYLOAD), NOW, &limits).unwrap())
    });
    let reading = telemetry::decode(ANOMALOUS_PAYLOAD, NOW, &limits).unwrap();
    let mut findings = Vec::with_capacity(8);
    group.bench_function("rules (4 findings)", |b| {
        b.iter(|| {
            findings.clear();
            rules::check(black_box(&reading), &rules, &mut findings);
            findings.len()
        })
    });
    for (name, payload) in [
        ("decode + rules, normal", SEED_PAYLOAD),
        ("decode + rules, 4 findings", ANOMALOUS_PAYLOAD),
    ] {
        group.bench_function(name, |b| {
            let mut findings = Vec::with_capacity(8);
            b.iter(|| {
                let reading = telemetry::decode(black_box(payload), NOW, &limits).unwrap();
                findings.clear();
                rules::check(&reading, &rules, &mut findings);
                findings.len()
            })
        });
    }
    group.finish();
}

fn batch(c: &mut Criterion) {
    let limits = Limits::default();
    let rules = RuleSet::default();
    let body = format!(
        "[{}]",
        (0..1000)
            .map(|n| format!(
                r#"{{"device_id":"bed-{}","timestamp":{},"heart_rate":{},"body_temp":36.8,"signal_strength":-60,"battery_level":80}}"#,
                n % 100,
                1_705_401_045_000u64 + n,
                55 + n % 60
            ))
            .collect::<Vec<_>>()
            .join(",")
    );
    let mut group = c.benchmark_group("batch_of_1000");
    group.throughput(Throughput::Elements(1000));
    group.bench_function("decode_body + rules", |b| {
        b.iter_batched(
            || Vec::with_capacity(8),
            |mut findings| {
                let telemetry::Decoded::Batch(items) =
                    telemetry::decode_body(black_box(body.as_bytes()), NOW, &limits).unwrap()
                else {
                    unreachable!("the body is an array")
                };
                let mut n = 0;
                for reading in items.iter().flatten() {
                    findings.clear();
                    rules::check(reading, &rules, &mut findings);
                    n += findings.len();
                }
                n
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, per_reading, batch);
criterion_main!(benches);
