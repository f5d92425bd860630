//! The alert engine, per reading: `AlertEngine::observe` for a device in steady state (normal
//! vitals, no findings, no NEWS2 passed in), as the pipeline calls it after every stored
//! reading. No alert opens or closes, so this is the cost every reading pays.
//!
//! `cargo bench -p vitalwatch-core --bench alert_engine`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use vitalwatch_core::alerting::{AlertConfig, AlertEngine};
use vitalwatch_core::telemetry::{DeviceId, Reading, Timestamp};

/// The `n`th reading of a device: five vitals, each cycling through a normal range.
fn reading(device: &DeviceId, at: Timestamp, n: i64) -> Reading {
    let mut reading = Reading::empty(device.clone(), at);
    reading.heart_rate_bpm = Some(70.0 + ((n * 37) % 30) as f64);
    reading.spo2_pct = Some(96.0 + ((n * 13) % 4) as f64);
    reading.respiratory_rate_per_min = Some(14.0 + ((n * 7) % 6) as f64);
    reading.systolic_bp_mmhg = Some(120.0 + ((n * 11) % 20) as f64);
    reading.body_temp_c = Some(36.5 + ((n * 3) % 10) as f64 / 10.0);
    reading
}

fn observe(c: &mut Criterion) {
    let device = DeviceId::parse("bench-1", 64).expect("valid id");
    let t0 = Timestamp::from_secs(1_705_401_000);
    let mut engine = AlertEngine::new(AlertConfig::default(), 0);
    for n in 0..600 {
        let at = t0.saturating_add_micros(n * 1_000_000);
        engine.observe(&reading(&device, at, n), &[], None, at);
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
