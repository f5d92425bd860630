//! Benches of the anomaly model's hot path: scoring one reading and a batch of 1000 with a
//! 100-tree forest, and training on 1 000 and 100 000 rows. Compare with
//! `scripts/bench_sklearn.py`, run on the same machine.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use vitalwatch_core::detect::{
    Dataset, Feature, Model, PopulationOptions, TrainOptions, normal_population, train,
};
use vitalwatch_core::telemetry::{DeviceId, Reading, Timestamp};

fn population(rows: usize) -> Dataset {
    normal_population(&PopulationOptions {
        patients: 100,
        readings_per_patient: rows / 100,
        seed: 7,
        ..PopulationOptions::default()
    })
}

fn trained(data: &Dataset) -> Model {
    train(
        data,
        &Feature::SEED,
        &TrainOptions::default(),
        Timestamp::from_secs(1_764_000_000),
        &mut |_| {},
    )
    .expect("training succeeds")
}

fn readings(data: &Dataset, n: usize) -> Vec<Reading> {
    let column = |feature| data.column(feature).expect("generated column");
    let (hr, temp, signal, battery) = (
        column(Feature::HeartRate),
        column(Feature::BodyTemp),
        column(Feature::SignalStrength),
        column(Feature::BatteryLevel),
    );
    let device = DeviceId::parse("bench-1", 64).expect("valid id");
    (0..n)
        .map(|idx| {
            let mut reading = Reading::empty(device.clone(), Timestamp::from_secs(1_764_000_000));
            reading.heart_rate_bpm = hr[idx];
            reading.body_temp_c = temp[idx];
            reading.signal_strength_dbm = signal[idx];
            reading.battery_pct = battery[idx];
            reading
        })
        .collect()
}

fn scoring(c: &mut Criterion) {
    let data = population(10_000);
    let model = trained(&data);
    let batch = readings(&data, 1000);
    let mut group = c.benchmark_group("score");
    group.throughput(Throughput::Elements(1));
    group.bench_function("one_reading_100_trees", |b| {
        let mut idx = 0;
        b.iter(|| {
            idx = (idx + 1) % batch.len();
            black_box(model.score(black_box(&batch[idx])))
        })
    });
    group.throughput(Throughput::Elements(batch.len() as u64));
    let mut out = Vec::with_capacity(batch.len());
    group.bench_function("batch_1000_100_trees", |b| {
        b.iter(|| {
            model.score_batch(black_box(&batch), &mut out);
            black_box(out.len())
        })
    });
    group.finish();
}

fn training(c: &mut Criterion) {
    let mut group = c.benchmark_group("train");
    group.sample_size(10);
    for rows in [1_000usize, 100_000] {
        let data = population(rows);
        group.throughput(Throughput::Elements(rows as u64));
        group.bench_function(format!("{rows}_rows_100_trees"), |b| {
            b.iter_batched(
                || data.clone(),
                |data| black_box(trained(&data)),
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, scoring, training);
criterion_main!(benches);
