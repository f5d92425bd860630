//! The optional supervised random forest: trained from labelled rows, metrics reported, and
//! carried through the envelope unchanged.

use super::*;
use serde_json::json;

fn labelled() -> Dataset {
    labelled_test_set(
        &PopulationOptions {
            patients: 10,
            readings_per_patient: 200,
            seed: 21,
            ..PopulationOptions::default()
        },
        60,
    )
}

fn trained() -> Model {
    let options = TrainOptions {
        trees: 20,
        random_forest_trees: Some(15),
        seed: 8,
        ..TrainOptions::default()
    };
    train(
        &labelled(),
        &Feature::SEED,
        &options,
        TRAINED_AT,
        &mut |_| {},
    )
    .expect("trains")
}

#[test]
fn random_forest_reports_held_out_metrics_and_classifies() {
    let model = trained();
    let metrics = model.info().rf.expect("a random forest was trained");
    assert_eq!(metrics.n_trees, 15);
    assert_eq!(metrics.test_rows, 460, "20 % of 2300 rows");
    assert!(metrics.precision >= 0.8, "precision {}", metrics.precision);
    assert!(metrics.recall >= 0.8, "recall {}", metrics.recall);
    assert_eq!(
        model.classify(&reading(72.0, 36.8, -62.0, 60.0)),
        Some(false)
    );
    assert_eq!(
        model.classify(&reading(150.0, 39.9, -62.0, 60.0)),
        Some(true)
    );
}

#[test]
fn random_forest_round_trips_through_the_envelope() {
    let model = trained();
    let bytes = model.to_bytes();
    assert!(
        bytes == trained().to_bytes(),
        "random forest training is deterministic"
    );
    let back = Model::from_bytes(&bytes, DEFAULT_MAX_MODEL_BYTES).expect("loads");
    assert!(back.to_bytes() == bytes);
    assert_eq!(back.info().rf, model.info().rf);
    for r in [
        reading(72.0, 36.8, -62.0, 60.0),
        reading(150.0, 39.9, -62.0, 60.0),
        reading(0.0, 36.0, -80.0, 20.0),
    ] {
        assert_eq!(back.classify(&r), model.classify(&r));
    }
}

#[test]
fn hostile_random_forest_structure_is_refused() {
    let model = trained();
    let value: serde_json::Value = serde_json::from_slice(&model.to_bytes()).expect("json");
    let edits: [&dyn Fn(&mut serde_json::Value); 4] = [
        &|v| v["rf"]["model"]["trees"][0]["nodes"][0]["true_child"] = json!(0),
        &|v| v["rf"]["model"]["trees"][0]["nodes"][0]["false_child"] = json!(1_000_000),
        &|v| v["rf"]["model"]["trees"][0]["nodes"][0]["split_feature"] = json!(9),
        &|v| v["rf"]["model"]["trees"] = json!(null),
    ];
    for edit in edits {
        let mut hostile = value.clone();
        edit(&mut hostile);
        let err = Model::from_bytes(
            &super::super::format::reseal(hostile),
            DEFAULT_MAX_MODEL_BYTES,
        )
        .err();
        assert_eq!(
            err,
            Some(ModelError::Invalid(
                "the random forest's structure is invalid"
            ))
        );
    }
}
