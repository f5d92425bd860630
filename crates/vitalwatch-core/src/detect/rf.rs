//! The optional supervised model (the seed's `rf_model.pkl`): a random forest classifier from
//! smartcore 0.7, trained on labelled, scaled rows, with precision and recall measured on a
//! seeded held-out split at training time.
//!
//! smartcore's serialised model is trusted by smartcore: a hostile file with a child index out
//! of range or pointing back up the tree would make its `predict` panic or loop forever. So
//! [`RandomForest::from_json`] checks the tree structure in the JSON before smartcore sees it,
//! and the envelope round-trip test fails CI if a smartcore upgrade changes the format.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use smartcore::ensemble::random_forest_classifier::{
    RandomForestClassifier, RandomForestClassifierParameters,
};
use smartcore::linalg::basic::matrix::DenseMatrix;

type Inner = RandomForestClassifier<f64, u32, DenseMatrix<f64>, Vec<u32>>;

/// The share of labelled rows held out to measure precision and recall.
const HOLDOUT_FRACTION: f64 = 0.2;

/// How well the classifier did on the held-out rows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RfMetrics {
    pub n_trees: u16,
    /// Of the held-out rows predicted anomalous, the share that were (1 when none predicted).
    pub precision: f64,
    /// Of the held-out anomalous rows, the share predicted anomalous (1 when none exist).
    pub recall: f64,
    pub train_rows: u64,
    pub test_rows: u64,
}

/// A trained classifier with its metrics.
#[derive(Debug)]
pub(crate) struct RandomForest {
    inner: Inner,
    metrics: RfMetrics,
    n_features: usize,
}

impl Clone for RandomForest {
    fn clone(&self) -> RandomForest {
        // smartcore's classifier is not `Clone`; a JSON round trip copies it exactly.
        let json = serde_json::to_value(&self.inner).expect("a trained forest serialises");
        RandomForest {
            inner: serde_json::from_value(json).expect("our own JSON deserialises"),
            metrics: self.metrics.clone(),
            n_features: self.n_features,
        }
    }
}

impl RandomForest {
    /// Trains on row-major scaled `rows` with `labels` (true = anomalous), holding out a
    /// seeded 20 % for metrics. The returned classifier is the one trained on the other 80 %,
    /// so the metrics describe exactly the model that is stored.
    pub(crate) fn train(
        rows: &[f64],
        n_features: usize,
        labels: &[bool],
        n_trees: u16,
        seed: u64,
    ) -> Result<RandomForest, String> {
        let n_rows = labels.len();
        let mut order: Vec<usize> = (0..n_rows).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        let n_test = ((n_rows as f64) * HOLDOUT_FRACTION).round() as usize;
        let (test_idx, train_idx) = order.split_at(n_test);
        let has_both = |idx: &[usize]| {
            idx.iter().any(|row| labels[*row]) && idx.iter().any(|row| !labels[*row])
        };
        if !has_both(train_idx) {
            return Err("the training split needs both normal and anomalous rows".to_owned());
        }
        let matrix = |idx: &[usize]| {
            let values: Vec<f64> = idx
                .iter()
                .flat_map(|row| {
                    rows[row * n_features..(row + 1) * n_features]
                        .iter()
                        .copied()
                })
                .collect();
            DenseMatrix::new(idx.len(), n_features, values, false).map_err(|err| err.to_string())
        };
        let y: Vec<u32> = train_idx
            .iter()
            .map(|row| u32::from(labels[*row]))
            .collect();
        let params = RandomForestClassifierParameters::default()
            .with_n_trees(n_trees)
            .with_seed(seed);
        let inner = Inner::fit(&matrix(train_idx)?, &y, params).map_err(|err| err.to_string())?;
        let (mut tp, mut fp, mut fn_) = (0u64, 0u64, 0u64);
        if !test_idx.is_empty() {
            let predicted = inner
                .predict(&matrix(test_idx)?)
                .map_err(|err| err.to_string())?;
            for (row, guess) in test_idx.iter().zip(predicted) {
                match (labels[*row], guess == 1) {
                    (true, true) => tp += 1,
                    (false, true) => fp += 1,
                    (true, false) => fn_ += 1,
                    (false, false) => {}
                }
            }
        }
        let ratio = |num: u64, den: u64| {
            if den == 0 {
                1.0
            } else {
                num as f64 / den as f64
            }
        };
        let metrics = RfMetrics {
            n_trees,
            precision: ratio(tp, tp + fp),
            recall: ratio(tp, tp + fn_),
            train_rows: train_idx.len() as u64,
            test_rows: test_idx.len() as u64,
        };
        Ok(RandomForest {
            inner,
            metrics,
            n_features,
        })
    }

    /// True when the scaled vector is classified anomalous; `None` if smartcore refuses it.
    pub(crate) fn predict(&self, scaled: &[f64]) -> Option<bool> {
        if scaled.len() != self.n_features {
            return None;
        }
        let x = DenseMatrix::new(1, scaled.len(), scaled.to_vec(), false).ok()?;
        let predicted = self.inner.predict(&x).ok()?;
        predicted.first().map(|class| *class == 1)
    }

    pub(crate) fn metrics(&self) -> RfMetrics {
        self.metrics.clone()
    }

    pub(crate) fn to_file(&self) -> RfFile {
        RfFile {
            metrics: self.metrics.clone(),
            model: serde_json::to_value(&self.inner).expect("a trained forest serialises"),
        }
    }

    /// Rebuilds a classifier from its file form after checking the tree structure.
    pub(crate) fn from_file(
        file: &RfFile,
        n_features: usize,
    ) -> Result<RandomForest, &'static str> {
        check_structure(&file.model, n_features)?;
        let inner: Inner = serde_json::from_value(file.model.clone())
            .map_err(|_| "smartcore rejected the random forest")?;
        Ok(RandomForest {
            inner,
            metrics: file.metrics.clone(),
            n_features,
        })
    }
}

/// The random forest as stored in the envelope.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RfFile {
    pub(crate) metrics: RfMetrics,
    /// smartcore's own serde form of `RandomForestClassifier`.
    pub(crate) model: serde_json::Value,
}

/// Checks what smartcore's `predict` trusts: classes present, every tree's children in bounds
/// and strictly after their parent (so no cycles), split features below `n_features`, leaf
/// outputs naming a class.
fn check_structure(model: &serde_json::Value, n_features: usize) -> Result<(), &'static str> {
    const BAD: &str = "the random forest's structure is invalid";
    let n_classes = model
        .get("classes")
        .and_then(serde_json::Value::as_array)
        .map(Vec::len)
        .ok_or(BAD)?;
    if n_classes == 0 {
        return Err(BAD);
    }
    let trees = model
        .get("trees")
        .and_then(serde_json::Value::as_array)
        .ok_or(BAD)?;
    if trees.is_empty() || trees.len() > usize::from(u16::MAX) {
        return Err(BAD);
    }
    for tree in trees {
        let tree_classes = tree
            .get("classes")
            .and_then(serde_json::Value::as_array)
            .ok_or(BAD)?;
        let tree_features = tree
            .get("num_features")
            .and_then(serde_json::Value::as_u64)
            .ok_or(BAD)?;
        if tree_classes.len() != n_classes || tree_features != n_features as u64 {
            return Err(BAD);
        }
        let nodes = tree
            .get("nodes")
            .and_then(serde_json::Value::as_array)
            .ok_or(BAD)?;
        if nodes.is_empty() {
            return Err(BAD);
        }
        for (idx, node) in nodes.iter().enumerate() {
            let output = node
                .get("output")
                .and_then(serde_json::Value::as_u64)
                .ok_or(BAD)?;
            if output >= n_classes as u64 {
                return Err(BAD);
            }
            let child = |key: &str| node.get(key).and_then(serde_json::Value::as_u64);
            match (child("true_child"), child("false_child")) {
                (None, None) => {
                    let both_null = node
                        .get("true_child")
                        .is_some_and(serde_json::Value::is_null)
                        && node
                            .get("false_child")
                            .is_some_and(serde_json::Value::is_null);
                    if !both_null {
                        return Err(BAD);
                    }
                }
                (Some(t), Some(f)) => {
                    let in_order = |c: u64| c > idx as u64 && c < nodes.len() as u64;
                    if !in_order(t) || !in_order(f) {
                        return Err(BAD);
                    }
                    let feature = node
                        .get("split_feature")
                        .and_then(serde_json::Value::as_u64)
                        .ok_or(BAD)?;
                    if feature >= n_features as u64 {
                        return Err(BAD);
                    }
                }
                _ => return Err(BAD),
            }
        }
    }
    Ok(())
}
