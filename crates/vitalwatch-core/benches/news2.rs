//! NEWS2 over time, per reading: scoring a device's smoothed observation set, as the alert
//! engine does after every stored reading. The baseline sorts each window (the state restored
//! from its serialised form, which keeps no sorted values); the kept sorted values need none.
//!
//! `cargo bench -p vitalwatch-core --bench news2`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use vitalwatch_core::news2::{LatestVitals, Spo2Scale, Validity};
use vitalwatch_core::telemetry::{DeviceId, FieldSet, Timestamp};

mod support;
use support::reading;

/// A device that reported five vitals `per_s` times a second for a minute.
fn device(per_s: i64) -> (LatestVitals, Timestamp) {
    let device = DeviceId::parse("bench-1", 64).expect("valid id");
    let t0 = Timestamp::from_secs(1_705_401_000);
    let mut vitals = LatestVitals::default();
    let mut at = t0;
    for n in 0..60 * per_s {
        at = t0.saturating_add_micros(n * 1_000_000 / per_s);
        vitals.observe(&reading(&device, at, n), FieldSet::EMPTY);
    }
    (vitals, at)
}

fn score_at(c: &mut Criterion) {
    let validity = Validity::default();
    let mut group = c.benchmark_group("news2_score_at");
    group.throughput(Throughput::Elements(1));
    for (name, per_s) in [("10 per s", 10), ("1 per s", 1)] {
        let (kept, at) = device(per_s);
        let sorting: LatestVitals =
            serde_json::from_str(&serde_json::to_string(&kept).expect("serialisable"))
                .expect("restored");
        group.bench_function(format!("baseline: sort each window, {name}"), |b| {
            b.iter(|| black_box(&sorting).score_at(at, &validity, 30, Spo2Scale::Scale1))
        });
        group.bench_function(format!("kept sorted, {name}"), |b| {
            b.iter(|| black_box(&kept).score_at(at, &validity, 30, Spo2Scale::Scale1))
        });
    }
    group.finish();
}

/// Feeding a reading to a device whose history is full: one value in and one out for each of
/// its five parameters, the sorted copy kept in step.
fn observe(c: &mut Criterion) {
    let (vitals, at) = device(10);
    let device = DeviceId::parse("bench-1", 64).expect("valid id");
    let mut group = c.benchmark_group("news2_observe");
    group.throughput(Throughput::Elements(1));
    group.bench_function("full history, 10 per s", |b| {
        let mut vitals = vitals.clone();
        let mut n = 0i64;
        b.iter(|| {
            n += 1;
            let reading = reading(&device, at.saturating_add_micros(n * 100_000), n);
            vitals.observe(black_box(&reading), FieldSet::EMPTY);
        })
    });
    group.finish();
}

criterion_group!(benches, score_at, observe);
criterion_main!(benches);
