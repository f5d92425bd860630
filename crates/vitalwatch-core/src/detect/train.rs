//! Training: [`train`] turns a [`Dataset`] into a [`Model`], deterministically.
//!
//! The same data, features, options and seed always give a byte-identical model file: trees
//! draw from per-tree ChaCha8 streams derived from the seed, and nothing depends on hash order,
//! threads or the clock (`trained_at` is passed in). Progress is reported through a callback so
//! the caller (running this on `spawn_blocking`) can show it.

use super::dataset::Dataset;
use super::feature::{Feature, MAX_FEATURES};
use super::format;
use super::iforest::{self, Forest, MAX_SAMPLE_SIZE, MAX_TREES};
use super::model::Model;
use super::rf::RandomForest;
use super::scaler::{Scaler, TypicalRange, quantile_sorted};
use crate::telemetry::Timestamp;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The default share of training readings flagged as anomalous: 0.5 %.
///
/// The seed used scikit-learn's 0.05: one normal reading in 20 flagged, so a patient sending a
/// reading a minute would raise about 72 false ML_ANOMALY findings a day — alarm fatigue, not
/// monitoring. At 0.005 the same patient sees about 7 a day, and fewer on unseen patients: on
/// the synthetic labelled set (`default_threshold_catches_injected_anomalies`) the false-positive
/// rate on new patients is about 0.3 % while 90 % of injected fevers are flagged and the ranking
/// of all injected anomalies keeps a ROC AUC above 0.95. Going lower (0.001) loses half the
/// fevers. Single-vital extremes (HR 0, 150 bpm, 33 °C) are diluted across four features and
/// often stay under any sane threshold; the range rules catch those, so the model's job is the
/// unusual *combination*. Estimating a 99.5th percentile needs data: train on at least a few
/// thousand rows.
pub const DEFAULT_CONTAMINATION: f64 = 0.005;

/// How to train.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainOptions {
    /// Number of isolation trees (default 100, as scikit-learn).
    pub trees: u32,
    /// Subsample size ψ per tree (default 256, as the paper and scikit-learn); min(ψ, rows) is
    /// used.
    pub sample_size: u32,
    /// Share of training rows above the threshold, in (0, 0.5]; see [`DEFAULT_CONTAMINATION`].
    pub contamination: f64,
    /// Seeds every random choice.
    pub seed: u64,
    /// Trees of the supervised random forest; `None` trains none. Needs a labelled dataset.
    pub random_forest_trees: Option<u16>,
}

impl Default for TrainOptions {
    fn default() -> TrainOptions {
        TrainOptions {
            trees: 100,
            sample_size: 256,
            contamination: DEFAULT_CONTAMINATION,
            seed: 0,
            random_forest_trees: None,
        }
    }
}

/// Which part of training is running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Trees,
    Threshold,
    RandomForest,
}

/// A progress report: `done` of `total` units of `stage` are finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    pub stage: Stage,
    pub done: usize,
    pub total: usize,
}

/// Why training refused to run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TrainError {
    #[error("no features were chosen")]
    NoFeatures,
    #[error("feature {0} is listed twice")]
    DuplicateFeature(&'static str),
    #[error("the data has no {0} column")]
    MissingColumn(&'static str),
    #[error("only {got} rows have every chosen feature; at least {need} are needed")]
    TooFewRows { need: usize, got: usize },
    #[error("trees must be between 1 and {MAX_TREES}")]
    BadTrees,
    #[error("sample_size must be between 2 and {MAX_SAMPLE_SIZE}")]
    BadSampleSize,
    #[error("contamination must be above 0 and at most 0.5")]
    BadContamination,
    #[error("a random forest needs a labelled dataset (a label column)")]
    NoLabels,
    #[error("random forest training failed: {0}")]
    RandomForest(String),
}

/// Trains a model on the rows of `data` that have every one of `features` (rows lacking one
/// are skipped, as scoring would skip them).
pub fn train(
    data: &Dataset,
    features: &[Feature],
    options: &TrainOptions,
    trained_at: Timestamp,
    progress: &mut dyn FnMut(Progress),
) -> Result<Model, TrainError> {
    check_options(features, options)?;
    let n_features = features.len();
    let (mut rows, kept) = data
        .complete_rows(features)
        .map_err(|feature| TrainError::MissingColumn(feature.as_str()))?;
    let n_rows = kept.len();
    if n_rows < 2 {
        return Err(TrainError::TooFewRows {
            need: 2,
            got: n_rows,
        });
    }
    let typical = TypicalRange::fit(&rows, n_features);
    let scaler = Scaler::fit(&rows, n_features);
    for row in rows.chunks_exact_mut(n_features) {
        scaler.transform(row);
    }

    let sample_size = options.sample_size.min(n_rows as u32);
    let limit = iforest::height_limit(sample_size);
    let total_trees = options.trees as usize;
    let mut trees = Vec::with_capacity(total_trees);
    for tree_idx in 0..options.trees {
        let mut rng = tree_rng(options.seed, tree_idx);
        let mut sample = iforest::subsample(&mut rng, n_rows, sample_size as usize);
        trees.push(iforest::grow_tree(
            &rows,
            n_features,
            &mut sample,
            limit,
            &mut rng,
        ));
        progress(Progress {
            stage: Stage::Trees,
            done: tree_idx as usize + 1,
            total: total_trees,
        });
    }
    let forest = Forest::compile(&trees, n_features, sample_size)
        .expect("freshly grown trees satisfy every structural check");

    // The threshold is the (1 − contamination) quantile of training scores, as scikit-learn's
    // `offset_` is the contamination percentile of `score_samples` (its sign flipped).
    let mut scores: Vec<f64> = rows
        .chunks_exact(n_features)
        .map(|row| forest.score(row))
        .collect();
    scores.sort_unstable_by(f64::total_cmp);
    let threshold = quantile_sorted(&scores, 1.0 - options.contamination);
    progress(Progress {
        stage: Stage::Threshold,
        done: 1,
        total: 1,
    });

    let rf = match options.random_forest_trees {
        None => None,
        Some(rf_trees) => {
            let all_labels = data.labels().ok_or(TrainError::NoLabels)?;
            let labels: Vec<bool> = kept.iter().map(|row_idx| all_labels[*row_idx]).collect();
            progress(Progress {
                stage: Stage::RandomForest,
                done: 0,
                total: 1,
            });
            let rf = RandomForest::train(&rows, n_features, &labels, rf_trees.max(1), options.seed)
                .map_err(TrainError::RandomForest)?;
            progress(Progress {
                stage: Stage::RandomForest,
                done: 1,
                total: 1,
            });
            Some(rf)
        }
    };

    let mut model = Model {
        features: features.to_vec(),
        scaler,
        typical,
        trees,
        forest,
        sample_size,
        threshold,
        contamination: options.contamination,
        rf,
        trained_at,
        training_rows: n_rows as u64,
        seed: options.seed,
        sha256: String::new(),
    };
    model.sha256 = format::body_sha256(&model);
    Ok(model)
}

fn check_options(features: &[Feature], options: &TrainOptions) -> Result<(), TrainError> {
    if features.is_empty() {
        return Err(TrainError::NoFeatures);
    }
    for (idx, feature) in features.iter().enumerate().take(MAX_FEATURES + 1) {
        if features[..idx].contains(feature) {
            return Err(TrainError::DuplicateFeature(feature.as_str()));
        }
    }
    if options.trees == 0 || options.trees > MAX_TREES {
        return Err(TrainError::BadTrees);
    }
    if options.sample_size < 2 || options.sample_size > MAX_SAMPLE_SIZE {
        return Err(TrainError::BadSampleSize);
    }
    if !(options.contamination > 0.0 && options.contamination <= 0.5) {
        return Err(TrainError::BadContamination);
    }
    Ok(())
}

/// Each tree gets its own stream of the seed's ChaCha8 generator, so a tree's randomness does
/// not depend on how many numbers earlier trees drew (and trees could be grown in parallel).
fn tree_rng(seed: u64, tree_idx: u32) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(u64::from(tree_idx));
    rng
}
