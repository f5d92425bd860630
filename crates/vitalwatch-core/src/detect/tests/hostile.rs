//! Hostile and damaged model files: each must be refused with a clear error, never a panic.

use super::super::format::reseal;
use super::*;
use proptest::prelude::*;
use serde_json::{Value, json};

fn envelope() -> Value {
    serde_json::from_slice(&model().to_bytes()).expect("our own file is JSON")
}

fn load(bytes: &[u8]) -> Result<Model, ModelError> {
    Model::from_bytes(bytes, DEFAULT_MAX_MODEL_BYTES)
}

/// Edits the envelope, re-seals its hash and loads it.
fn load_edited(edit: impl FnOnce(&mut Value)) -> Result<Model, ModelError> {
    let mut value = envelope();
    edit(&mut value);
    load(&reseal(value))
}

fn error(res: Result<Model, ModelError>) -> ModelError {
    match res {
        Ok(_) => panic!("a hostile file was accepted"),
        Err(err) => err,
    }
}

#[test]
fn refuses_oversized_truncated_and_corrupt_files() {
    let bytes = model().to_bytes();
    assert_eq!(
        error(Model::from_bytes(&bytes, 1000)),
        ModelError::TooLarge {
            len: bytes.len(),
            max: 1000
        }
    );
    assert_eq!(
        error(load(&bytes[..bytes.len() / 2])),
        ModelError::Truncated
    );
    assert_eq!(error(load(b"")), ModelError::Truncated);
    assert!(matches!(
        error(load(b"PK\x03\x04 pickle")),
        ModelError::CorruptJson(_)
    ));
    let mut flipped = bytes.clone();
    flipped[bytes.len() / 3] = b'}';
    assert!(matches!(
        error(load(&flipped)),
        ModelError::CorruptJson(_) | ModelError::Schema(_)
    ));
    let deep = "[".repeat(100_000);
    assert!(matches!(
        error(load(deep.as_bytes())),
        ModelError::Truncated | ModelError::CorruptJson(_)
    ));
}

#[test]
fn refuses_other_formats_and_versions() {
    let mut other = envelope();
    other["format"] = json!("sklearn-pickle");
    assert_eq!(
        error(load(&serde_json::to_vec(&other).expect("json"))),
        ModelError::WrongFormat("sklearn-pickle".to_owned())
    );
    assert!(matches!(
        error(load(b"[1, 2, 3]")),
        ModelError::WrongFormat(_)
    ));
    let mut newer = envelope();
    newer["version"] = json!(2);
    assert_eq!(
        error(load(&serde_json::to_vec(&newer).expect("json"))),
        ModelError::UnknownVersion("2".to_owned())
    );
    assert_eq!(
        error(load(br#"{"format":"vitalwatch-model","version":"1"}"#)),
        ModelError::UnknownVersion("\"1\"".to_owned())
    );
}

#[test]
fn refuses_a_file_that_does_not_match_its_hash() {
    let mut edited = envelope();
    edited["iforest"]["threshold"] = json!(0.99);
    assert_eq!(
        error(load(&serde_json::to_vec(&edited).expect("json"))),
        ModelError::HashMismatch
    );
    let mut unsealed = envelope();
    unsealed["sha256"] = json!("not a hash");
    assert_eq!(
        error(load(&serde_json::to_vec(&unsealed).expect("json"))),
        ModelError::MissingHash
    );
    let mut extra = envelope();
    extra["exec"] = json!("rm -rf /");
    assert!(matches!(
        error(load(&serde_json::to_vec(&extra).expect("json"))),
        ModelError::Schema(_)
    ));
}

#[test]
fn refuses_non_finite_or_out_of_range_numbers() {
    let text = String::from_utf8(model().to_bytes()).expect("utf-8");
    let threshold = format!("\"threshold\":{}", model().threshold);
    assert!(text.contains(&threshold));
    for replacement in [
        "\"threshold\":NaN",
        "\"threshold\":Infinity",
        "\"threshold\":1e999",
    ] {
        let hostile = text.replacen(&threshold, replacement, 1);
        assert!(
            matches!(error(load(hostile.as_bytes())), ModelError::CorruptJson(_)),
            "{replacement}"
        );
    }
    let hostile = text.replacen(&threshold, "\"threshold\":null", 1);
    assert!(matches!(
        error(load(hostile.as_bytes())),
        ModelError::Schema(_)
    ));
    let check = |edit: &dyn Fn(&mut Value), expected: &str| {
        let err = error(load_edited(edit));
        assert_eq!(
            err.to_string(),
            format!("model file is invalid: {expected}")
        );
    };
    check(
        &|v| v["iforest"]["threshold"] = json!(1.5),
        "threshold must be a finite score in (0, 1]",
    );
    check(
        &|v| v["iforest"]["threshold"] = json!(-0.1),
        "threshold must be a finite score in (0, 1]",
    );
    check(
        &|v| v["iforest"]["contamination"] = json!(0.9),
        "contamination must be in (0, 0.5]",
    );
    check(
        &|v| v["scaler"]["std"][1] = json!(0.0),
        "scaler std must be finite and positive",
    );
    check(
        &|v| v["scaler"]["std"][1] = json!(-2.0),
        "scaler std must be finite and positive",
    );
    check(
        &|v| v["scaler"]["mean"] = json!([1.0]),
        "scaler length differs from the feature count",
    );
    check(
        &|v| v["typical"]["low"][0] = json!(1e300),
        "typical range must be finite with low <= high",
    );
    check(
        &|v| v["trained_at"] = json!("yesterday"),
        "trained_at is not an RFC 3339 time",
    );
}

#[test]
fn refuses_unknown_features() {
    let err = error(load_edited(|v| v["features"][1] = json!("temperature")));
    assert_eq!(err, ModelError::UnknownFeature("temperature".to_owned()));
    let err = error(load_edited(|v| v["features"][1] = json!("heart_rate")));
    assert_eq!(err, ModelError::Invalid("a feature is listed twice"));
}

#[test]
fn refuses_broken_trees() {
    let check = |edit: &dyn Fn(&mut Value), reason: &str| {
        let err = error(load_edited(edit));
        assert_eq!(
            err.to_string(),
            format!("model file tree 3 is invalid: {reason}")
        );
    };
    check(
        &|v| v["iforest"]["trees"][3]["left"][0] = json!(1_000_000),
        "a child index is out of bounds",
    );
    check(
        &|v| v["iforest"]["trees"][3]["right"][0] = json!(-5),
        "a child index is out of bounds",
    );
    check(
        &|v| v["iforest"]["trees"][3]["left"][0] = json!(0),
        "a node is reached twice (cycle or shared subtree)",
    );
    check(
        &|v| v["iforest"]["trees"][3]["feature"][0] = json!(4),
        "a split names a feature the model does not have",
    );
    check(
        &|v| {
            let tree = &mut v["iforest"]["trees"][3];
            for key in ["left", "right", "feature", "threshold", "n_samples"] {
                let Some(array) = tree[key].as_array_mut() else {
                    continue;
                };
                let fill = array[array.len() - 1].clone();
                array.resize(600, fill);
            }
        },
        "a tree has more nodes than its sample size allows",
    );
}

#[test]
fn refuses_absurd_sizes() {
    let check = |edit: &dyn Fn(&mut Value), expected: &str| {
        let err = error(load_edited(edit));
        assert_eq!(
            err.to_string(),
            format!("model file is invalid: {expected}")
        );
    };
    check(
        &|v| v["iforest"]["sample_size"] = json!(2_000_000_000u64),
        "sample_size must be between 2 and 65536",
    );
    check(
        &|v| v["iforest"]["n_trees"] = json!(4_000_000_000u64),
        "n_trees differs from the number of trees",
    );
    check(
        &|v| v["iforest"]["height_limit"] = json!(64),
        "height_limit is not ceil(log2(sample_size))",
    );
    check(
        &|v| v["iforest"]["trees"] = json!([]),
        "the isolation forest must have 1 to 10000 trees",
    );
    let mut huge = model().to_bytes();
    huge.resize(DEFAULT_MAX_MODEL_BYTES + 1, b' ');
    assert!(matches!(error(load(&huge)), ModelError::TooLarge { .. }));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn floats_round_trip_exactly(
        mean in -1e6f64..1e6,
        std in 1e-9f64..1e6,
        threshold in 1e-9f64..=1.0,
        low in -1e3f64..1e3,
        width in 0.0f64..1e3,
    ) {
        let mut edited = model().clone();
        edited.scaler.mean[1] = mean;
        edited.scaler.std[1] = std;
        edited.threshold = threshold;
        edited.typical.low[0] = low;
        edited.typical.high[0] = low + width;
        edited.sha256 = super::super::format::body_sha256(&edited);
        let back = load(&edited.to_bytes()).expect("a valid edit loads");
        prop_assert_eq!(back.scaler.mean[1].to_bits(), mean.to_bits());
        prop_assert_eq!(back.scaler.std[1].to_bits(), std.to_bits());
        prop_assert_eq!(back.threshold.to_bits(), threshold.to_bits());
        prop_assert_eq!(back.typical.low[0].to_bits(), low.to_bits());
        prop_assert_eq!(back.typical.high[0].to_bits(), (low + width).to_bits());
    }
}
