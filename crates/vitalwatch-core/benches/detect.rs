//! Benches of the anomaly model's hot path: scoring one reading and a batch of 1000 with a
//! 100-tree forest, and training on 1 000 and 100 000 rows.
//!
//! Under `cargo bench` (not under `cargo test`, which runs each bench once), the same run then
//! calls `scripts/bench_sklearn.py` for scikit-learn's timings of the same operations and
//! prints a table of ratios. The script needs python3 with scikit-learn (`scripts/test`
//! installs it); `VITALWATCH_PYTHON` picks the interpreter and `VITALWATCH_SKLEARN_SECONDS`
//! the time per scikit-learn measurement (default 2).

use criterion::{BatchSize, Criterion, Throughput, criterion_group};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;
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
    // The previous node layout (16-byte nodes, f64 thresholds), same forest, same run.
    let reference = model.reference_scorer();
    group.bench_function("one_reading_100_trees_reference_layout", |b| {
        let mut idx = 0;
        b.iter(|| {
            idx = (idx + 1) % batch.len();
            black_box(reference.score(black_box(&batch[idx])))
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

/// Where criterion writes its estimates: `<target>/criterion`, next to `<target>/release`.
fn criterion_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the bench knows its own path");
    // <target>/release/deps/detect-HASH
    exe.ancestors()
        .nth(3)
        .map_or_else(|| PathBuf::from("target"), Path::to_path_buf)
        .join("criterion")
}

/// Our time per iteration in seconds, from criterion's estimates written by this run
/// (an estimate older than `started`, left by an earlier filtered run, does not count).
fn ours(dir: &Path, group: &str, bench: &str, started: SystemTime) -> Option<f64> {
    let path = dir.join(group).join(bench).join("new/estimates.json");
    let modified = std::fs::metadata(&path)
        .and_then(|meta| meta.modified())
        .ok()?;
    if modified < started {
        return None;
    }
    let text = std::fs::read_to_string(path).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    // The figure criterion prints: the slope when it sampled linearly, else the mean.
    value["slope"]["point_estimate"]
        .as_f64()
        .or_else(|| value["mean"]["point_estimate"].as_f64())
        .map(|ns| ns * 1e-9)
}

/// scikit-learn's seconds per element, by bench name.
fn sklearn() -> Vec<(String, f64)> {
    let python = std::env::var("VITALWATCH_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let seconds = std::env::var("VITALWATCH_SKLEARN_SECONDS").unwrap_or_else(|_| "2".to_owned());
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/bench_sklearn.py");
    let output = Command::new(&python)
        .arg(&script)
        .args(["--seconds", &seconds])
        .output()
        .unwrap_or_else(|err| panic!("cannot run {python} {}: {err}", script.display()));
    assert!(
        output.status.success(),
        "scripts/bench_sklearn.py failed (is scikit-learn installed? `pip install scikit-learn`):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|value| {
            Some((
                value["bench"].as_str()?.to_owned(),
                value["per_element_s"].as_f64()?,
            ))
        })
        .collect()
}

fn human(seconds: f64) -> String {
    if seconds < 1e-6 {
        format!("{:.0} ns", seconds * 1e9)
    } else if seconds < 1e-3 {
        format!("{:.2} µs", seconds * 1e6)
    } else if seconds < 1.0 {
        format!("{:.2} ms", seconds * 1e3)
    } else {
        format!("{seconds:.2} s")
    }
}

/// Prints the compact node layout against the previous one, measured in this run.
fn compare_layouts(started: SystemTime) {
    let dir = criterion_dir();
    let (Some(new), Some(old)) = (
        ours(&dir, "score", "one_reading_100_trees", started),
        ours(
            &dir,
            "score",
            "one_reading_100_trees_reference_layout",
            started,
        ),
    ) else {
        return;
    };
    println!();
    println!("| score one reading, 100 trees | per reading | ratio |");
    println!("|---|---:|---:|");
    println!(
        "| previous layout (16-byte nodes, f64 thresholds) | {} | 1.00× |",
        human(old)
    );
    println!(
        "| ranked layout (8-byte nodes, integer threshold ranks) | {} | {:.2}× faster |",
        human(new),
        old / new
    );
}

/// Prints our numbers beside scikit-learn's, per element, with the ratio.
fn compare_with_sklearn(started: SystemTime) {
    let dir = criterion_dir();
    let theirs = sklearn();
    let their = |name: &str| {
        theirs
            .iter()
            .find(|(bench, _)| bench == name)
            .map(|(_, per_element)| *per_element)
    };
    // (what, our group/bench, elements per iteration, scikit-learn's bench)
    let rows: [(&str, &str, &str, f64, &str); 6] = [
        (
            "score one reading (per row)",
            "score",
            "one_reading_100_trees",
            1.0,
            "score/one_reading_100_trees",
        ),
        (
            "predict one reading (per row)",
            "score",
            "one_reading_100_trees",
            1.0,
            "predict/one_reading_100_trees",
        ),
        (
            "score a batch of 1000 (per reading)",
            "score",
            "batch_1000_100_trees",
            1000.0,
            "score/batch_1000_100_trees",
        ),
        (
            "predict a batch of 1000 (per reading)",
            "score",
            "batch_1000_100_trees",
            1000.0,
            "predict/batch_1000_100_trees",
        ),
        (
            "train on 1 000 rows (whole fit)",
            "train",
            "1000_rows_100_trees",
            1.0,
            "train/1000_rows_100_trees",
        ),
        (
            "train on 100 000 rows (whole fit)",
            "train",
            "100000_rows_100_trees",
            1.0,
            "train/100000_rows_100_trees",
        ),
    ];
    println!();
    println!("| operation (100 trees, ψ = 256) | VitalWatch | scikit-learn | speed-up |");
    println!("|---|---:|---:|---:|");
    for (what, group, bench, elements, their_name) in rows {
        let Some(our_iter) = ours(&dir, group, bench, started) else {
            println!("| {what} | not run | | |");
            continue;
        };
        let whole_fit = group == "train";
        let our_value = if whole_fit {
            our_iter
        } else {
            our_iter / elements
        };
        let their_value = their(their_name).map(|per_element| {
            if whole_fit {
                // The script reports training per row; a whole fit is rows × that.
                let rows: f64 = if bench.starts_with("1000_") {
                    1_000.0
                } else {
                    100_000.0
                };
                per_element * rows
            } else {
                per_element
            }
        });
        match their_value {
            Some(their_value) => println!(
                "| {what} | {} | {} | {:.0}× |",
                human(our_value),
                human(their_value),
                their_value / our_value
            ),
            None => println!("| {what} | {} | not measured | |", human(our_value)),
        }
    }
}

criterion_group!(benches, scoring, training);

fn main() {
    let started = SystemTime::now();
    benches();
    Criterion::default().configure_from_args().final_summary();
    // `cargo bench` passes --bench; `cargo test` runs each bench once without it.
    if std::env::args().any(|arg| arg == "--bench") {
        compare_layouts(started);
        compare_with_sklearn(started);
    }
}
