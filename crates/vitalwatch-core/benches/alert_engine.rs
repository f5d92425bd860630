//! The alert engine, per reading: `AlertEngine::observe` for a device in steady state (normal
//! vitals, no findings, no NEWS2 passed in), as the pipeline calls it after every stored
//! reading. No alert opens or closes, so this is the cost every reading pays.
//!
//! `cargo bench -p vitalwatch-core --bench alert_engine`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use vitalwatch_core::alerting::{AlertConfig, AlertEngine};
use vitalwatch_core::telemetry::{DeviceId, Reading, Timestamp};

mod support;

/// The shared normal readings, with SpO2 kept at 96–99 %: below 96 % is SPO2_LOW on scale 1.
fn reading(device: &DeviceId, at: Timestamp, n: i64) -> Reading {
    let mut reading = support::reading(device, at, n);
    reading.spo2_pct = Some(96.0 + ((n * 13) % 4) as f64);
    reading
}

fn observe(c: &mut Criterion) {
    let device = DeviceId::parse("bench-1", 64).expect("valid id");
    let t0 = Timestamp::from_secs(1_705_401_000);
    let mut engine = AlertEngine::new(AlertConfig::default(), 0);
    for n in 0..600 {
        let at = t0.saturating_add_micros(n * 1_000_000);
        let transitions = engine.observe(&reading(&device, at, n), &[], None, at);
        assert!(
            transitions.is_empty(),
            "a normal reading moved an alert: {transitions:?}"
        );
    }
    let mut group = c.benchmark_group("alert_engine_observe");
    group.throughput(Throughput::Elements(1));
    group.bench_function("normal reading, one device, 1 per s", |b| {
        let mut n = 600i64;
        b.iter(|| {
            n += 1;
            let at = t0.saturating_add_micros(n * 1_000_000);
            let reading = reading(&device, at, n);
            black_box(engine.observe(black_box(&reading), &[], None, at))
        })
    });
    group.finish();
}

criterion_group!(benches, observe);
criterion_main!(benches);
