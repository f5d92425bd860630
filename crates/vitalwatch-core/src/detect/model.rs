//! [`Model`]: a trained anomaly model and the scoring API the pipeline calls.
//!
//! A model holds its feature list, the [`Scaler`] fitted on the training data, the compiled
//! isolation forest, the decision threshold and (optionally) a supervised random forest.
//! Scoring extracts the model's features from a [`Reading`], scales them *inside* the model
//! and walks the trees, so callers can only ever hand it raw readings. Scoring allocates
//! nothing. This module does not read files or clocks: see `format` for bytes.

use super::dataset::Dataset;
use super::explain;
use super::feature::{Feature, FeatureVec, MAX_FEATURES, extract};
use super::iforest::{Forest, MAX_SPLIT_FEATURES, ROWS, Ranks, ReferenceForest, TreeFile};
use super::rf::RandomForest;
use super::scaler::{Scaler, TypicalRange};
use crate::telemetry::{Reading, Timestamp};
use std::fmt;

// Every model feature can be a split feature of the compiled forest.
const _: () = assert!(MAX_FEATURES <= MAX_SPLIT_FEATURES);

/// One reading's anomaly score.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Score {
    /// The isolation-forest score s = 2^(−E[h]/c(ψ)), in (0, 1]; higher is more anomalous.
    /// Around 0.5 and below is ordinary; the paper calls s close to 1 an anomaly.
    pub value: f64,
    /// Whether `value` is above the model's threshold.
    pub is_anomaly: bool,
}

/// A model scored with its forest in the previous node layout (see
/// [`Model::reference_scorer`]); gives the same scores, only slower.
#[doc(hidden)]
pub struct ReferenceScorer<'a> {
    model: &'a Model,
    forest: ReferenceForest,
}

impl ReferenceScorer<'_> {
    pub fn score(&self, reading: &Reading) -> Option<Score> {
        let mut scaled = extract(&self.model.features, reading)?;
        self.model.scaler.transform(scaled.as_mut_slice());
        let value = self.forest.score(scaled.as_slice());
        Some(Score {
            value,
            is_anomaly: value > self.model.threshold,
        })
    }
}

/// A trained model. Build one with [`super::train`] or [`Model::from_bytes`].
#[derive(Clone, Debug)]
pub struct Model {
    pub(crate) features: Vec<Feature>,
    pub(crate) scaler: Scaler,
    /// Central 95 % of each training feature: what explanations call "typical".
    pub(crate) typical: TypicalRange,
    /// The trees in file form, kept for serialisation.
    pub(crate) trees: Vec<TreeFile>,
    /// The same trees compiled for scoring.
    pub(crate) forest: Forest,
    pub(crate) sample_size: u32,
    /// Scores strictly above this are anomalies.
    pub(crate) threshold: f64,
    /// The share of training rows scoring above `threshold`, chosen at training.
    pub(crate) contamination: f64,
    pub(crate) rf: Option<RandomForest>,
    pub(crate) trained_at: Timestamp,
    pub(crate) training_rows: u64,
    pub(crate) seed: u64,
    /// SHA-256 of the canonical body, hex; the model's identity in logs and `model info`.
    pub(crate) sha256: String,
}

impl Model {
    /// Scores one reading; `None` when it lacks one of the model's features (it is then not
    /// scored at all, never scored with a missing column filled in).
    pub fn score(&self, reading: &Reading) -> Option<Score> {
        extract(&self.features, reading).map(|raw| self.score_raw(&raw))
    }

    /// Scores raw (unscaled) values of [`Model::features`], in that order. The vector's length
    /// must equal the feature count; `None` otherwise.
    pub fn score_values(&self, raw: &[f64]) -> Option<Score> {
        if raw.len() != self.features.len() {
            return None;
        }
        FeatureVec::from_slice(raw).map(|raw| self.score_raw(&raw))
    }

    /// Scores many readings into `out` (cleared first), one entry per reading: the same
    /// scores as [`Model::score`], cheaper per reading, since [`ROWS`] readings walk each
    /// tree together. Allocates nothing beyond `out`.
    pub fn score_batch(&self, readings: &[Reading], out: &mut Vec<Option<Score>>) {
        out.clear();
        out.reserve(readings.len());
        // Up to ROWS scorable readings waiting, with their places in `out`.
        let mut rows = [Ranks::default(); ROWS];
        let mut places = [0usize; ROWS];
        let mut waiting = 0;
        for reading in readings {
            let Some(mut scaled) = extract(&self.features, reading) else {
                out.push(None);
                continue;
            };
            self.scaler.transform(scaled.as_mut_slice());
            rows[waiting] = self.forest.ranks(scaled.as_slice());
            places[waiting] = out.len();
            out.push(None);
            waiting += 1;
            if waiting == ROWS {
                self.place_scores(&rows, &places, out);
                waiting = 0;
            }
        }
        if waiting > 0 {
            // The rows after the waiting ones repeat the last: walked for nothing, not placed.
            let last = rows[waiting - 1];
            rows[waiting..].fill(last);
            self.place_scores(&rows, &places[..waiting], out);
        }
    }

    fn place_scores(&self, rows: &[Ranks; ROWS], places: &[usize], out: &mut [Option<Score>]) {
        for (place, value) in places.iter().zip(self.forest.score_rows(rows)) {
            out[*place] = Some(Score {
                value,
                is_anomaly: value > self.threshold,
            });
        }
    }

    /// Scores each row of a dataset; a row lacking a model feature gets `None`.
    /// `Err(feature)` names a model feature with no column in the dataset.
    pub fn score_dataset(&self, data: &Dataset) -> Result<Vec<Option<Score>>, Feature> {
        let n_features = self.features.len();
        let (matrix, kept) = data.complete_rows(&self.features)?;
        let mut scores = vec![None; data.n_rows()];
        for (row, row_idx) in matrix.chunks_exact(n_features.max(1)).zip(kept) {
            scores[row_idx] = self.score_values(row);
        }
        Ok(scores)
    }

    fn score_raw(&self, raw: &FeatureVec) -> Score {
        let mut scaled = *raw;
        self.scaler.transform(scaled.as_mut_slice());
        let value = self.forest.score(scaled.as_slice());
        Score {
            value,
            is_anomaly: value > self.threshold,
        }
    }

    /// This model's isolation forest in the node layout used before issue 20 (16-byte nodes,
    /// `f64` thresholds), for the detect bench's same-run baseline. Not for production use.
    #[doc(hidden)]
    pub fn reference_scorer(&self) -> ReferenceScorer<'_> {
        ReferenceScorer {
            model: self,
            forest: self.forest.reference(),
        }
    }

    /// A sentence naming the vitals that make `reading` unusual, for a flagged reading's
    /// ML_ANOMALY finding; `None` when the reading lacks a model feature.
    pub fn explain(&self, reading: &Reading) -> Option<String> {
        let raw = extract(&self.features, reading)?;
        Some(explain::explain(
            &self.features,
            &self.scaler,
            &self.typical,
            raw.as_slice(),
        ))
    }

    /// The supervised classifier's verdict (true = anomalous), when the model has one and
    /// the reading has every feature.
    pub fn classify(&self, reading: &Reading) -> Option<bool> {
        let rf = self.rf.as_ref()?;
        let raw = extract(&self.features, reading)?;
        let mut scaled = raw;
        self.scaler.transform(scaled.as_mut_slice());
        rf.predict(scaled.as_slice())
    }

    pub fn features(&self) -> &[Feature] {
        &self.features
    }

    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    /// A summary for `vitalwatch model info`.
    pub fn info(&self) -> ModelInfo {
        ModelInfo {
            features: self
                .features
                .iter()
                .map(|feature| feature.as_str())
                .collect(),
            n_trees: self.trees.len(),
            sample_size: self.sample_size,
            n_nodes: self.forest.n_nodes(),
            threshold: self.threshold,
            contamination: self.contamination,
            trained_at: self.trained_at,
            training_rows: self.training_rows,
            seed: self.seed,
            sha256: self.sha256.clone(),
            rf: self.rf.as_ref().map(RandomForest::metrics),
        }
    }
}

/// What `vitalwatch model info` prints.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelInfo {
    pub features: Vec<&'static str>,
    pub n_trees: usize,
    pub sample_size: u32,
    pub n_nodes: usize,
    pub threshold: f64,
    pub contamination: f64,
    pub trained_at: Timestamp,
    pub training_rows: u64,
    pub seed: u64,
    pub sha256: String,
    /// Held-out metrics of the supervised model, when there is one.
    pub rf: Option<super::rf::RfMetrics>,
}

impl fmt::Display for ModelInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "features:       {}", self.features.join(", "))?;
        writeln!(
            f,
            "isolation forest: {} trees, sample size {}, {} nodes",
            self.n_trees, self.sample_size, self.n_nodes
        )?;
        writeln!(
            f,
            "threshold:      {:.6} (contamination {})",
            self.threshold, self.contamination
        )?;
        writeln!(f, "trained at:     {}", self.trained_at)?;
        writeln!(f, "training rows:  {}", self.training_rows)?;
        writeln!(f, "seed:           {}", self.seed)?;
        match &self.rf {
            Some(rf) => writeln!(
                f,
                "random forest:  {} trees, precision {:.3}, recall {:.3} on {} held-out rows",
                rf.n_trees, rf.precision, rf.recall, rf.test_rows
            )?,
            None => writeln!(f, "random forest:  none")?,
        }
        write!(f, "sha256:         {}", self.sha256)
    }
}
