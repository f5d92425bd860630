//! The anomaly model (issue "The anomaly model"): an isolation forest with its scaler, an
//! optional supervised random forest, their file format, and the data they are trained on.
//!
//! # Layout
//! - `feature`: [`Feature`] names and [`extract`]ing a feature vector from a [`Reading`].
//! - `scaler`: standardisation stored inside the model, and each feature's typical range.
//! - `iforest`: growing, validating and scoring isolation trees (flat node array).
//! - `explain`: the sentence naming the vitals that made a reading unusual.
//! - `train`: [`train`] with [`TrainOptions`] and the default contamination.
//! - `model`: [`Model`], the scoring API ([`Model::score`], [`Model::explain`], [`Model::info`]).
//! - `format`: the JSON envelope, [`Model::to_bytes`] and [`Model::from_bytes`].
//! - `rf`: the optional smartcore random forest and its held-out metrics.
//! - `dataset`: [`Dataset`] columns and their CSV form.
//! - `synth`: seeded synthetic normal populations and labelled test sets.
//!
//! Like the rest of the crate this module does no I/O: bytes and text come in and go out,
//! training time and seeds are passed in, and nothing reads a clock.
//!
//! [`Reading`]: crate::telemetry::Reading

mod dataset;
mod explain;
mod feature;
mod format;
mod iforest;
mod model;
mod rf;
mod scaler;
mod synth;
mod train;

pub use dataset::{CsvError, Dataset, DatasetError, LABEL_COLUMN};
pub use feature::{Feature, FeatureVec, MAX_FEATURES, extract};
pub use format::{DEFAULT_MAX_MODEL_BYTES, FORMAT, ModelError, VERSION};
pub use iforest::{MAX_SAMPLE_SIZE, MAX_TREES};
pub use model::{Model, ModelInfo, ReferenceScorer, Score};
pub use rf::RfMetrics;
pub use synth::{Injected, PopulationOptions, labelled_test_set, normal_population};
pub use train::{DEFAULT_CONTAMINATION, Progress, Stage, TrainError, TrainOptions, train};

#[cfg(test)]
mod tests;
