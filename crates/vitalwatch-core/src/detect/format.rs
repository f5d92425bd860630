//! The model file: one JSON envelope, bytes in and bytes out (the caller reads the file).
//!
//! ```text
//! { "format": "vitalwatch-model", "version": 1, "features": [...],
//!   "scaler": {"mean": [...], "std": [...]}, "typical": {"low": [...], "high": [...]},
//!   "iforest": {"n_trees", "sample_size", "height_limit", "threshold", "contamination",
//!               "trees": [{"left", "right", "feature", "threshold", "n_samples"}, ...]},
//!   "rf": null | {"metrics": {...}, "model": <smartcore>},
//!   "trained_at": "RFC 3339", "training_rows", "seed", "sha256": "hex" }
//! ```
//!
//! `sha256` covers the canonical body: the envelope without `sha256`, serialised by serde_json
//! in field order. Floats round-trip exactly (serde_json's `float_roundtrip`). Reading checks,
//! in order: length, JSON, format, version, schema, hash, then every value the scorer will
//! trust (finite numbers, known features, tree indices, sizes), and refuses with a
//! [`ModelError`], never a panic.

use super::feature::{Feature, MAX_FEATURES};
use super::iforest::{self, Forest, MAX_SAMPLE_SIZE, MAX_TREES, TreeFile};
use super::model::Model;
use super::rf::{RandomForest, RfFile};
use super::scaler::{Scaler, TypicalRange};
use crate::telemetry::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The `format` string every model file starts with.
pub const FORMAT: &str = "vitalwatch-model";
/// The only envelope version this build reads and writes.
pub const VERSION: u64 = 1;
/// A sensible `max_len` for [`Model::from_bytes`]: a default model is about 1.5 MB.
pub const DEFAULT_MAX_MODEL_BYTES: usize = 64 * 1024 * 1024;
/// The most isolation-tree nodes a file may hold in total.
const MAX_TOTAL_NODES: usize = 8_000_000;

/// Why a model file was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    #[error("model file is {len} bytes, above the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("model file is truncated")]
    Truncated,
    #[error("model file is not valid JSON: {0}")]
    CorruptJson(String),
    #[error("not a VitalWatch model file (format is {0:?}, expected \"vitalwatch-model\")")]
    WrongFormat(String),
    #[error("model file version {0} is not supported (this build reads version 1)")]
    UnknownVersion(String),
    #[error("model file has no valid sha256")]
    MissingHash,
    #[error("model file does not match its sha256: it was modified or damaged")]
    HashMismatch,
    #[error("model file has an invalid field: {0}")]
    Schema(String),
    #[error("model file names unknown feature {0:?}")]
    UnknownFeature(String),
    #[error("model file is invalid: {0}")]
    Invalid(&'static str),
    #[error("model file tree {tree} is invalid: {reason}")]
    BadTree { tree: usize, reason: &'static str },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    format: String,
    version: u64,
    features: Vec<String>,
    scaler: ScalerFile,
    typical: TypicalFile,
    iforest: ForestFile,
    rf: Option<RfFile>,
    trained_at: String,
    training_rows: u64,
    seed: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScalerFile {
    mean: Vec<f64>,
    std: Vec<f64>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TypicalFile {
    low: Vec<f64>,
    high: Vec<f64>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ForestFile {
    n_trees: u64,
    sample_size: u64,
    height_limit: u64,
    threshold: f64,
    contamination: f64,
    trees: Vec<TreeFile>,
}

#[derive(Serialize)]
struct EnvelopeOut<'a> {
    #[serde(flatten)]
    body: &'a Body,
    sha256: &'a str,
}

fn body_of(model: &Model) -> Body {
    Body {
        format: FORMAT.to_owned(),
        version: VERSION,
        features: model
            .features
            .iter()
            .map(|feature| feature.as_str().to_owned())
            .collect(),
        scaler: ScalerFile {
            mean: model.scaler.mean.clone(),
            std: model.scaler.std.clone(),
        },
        typical: TypicalFile {
            low: model.typical.low.clone(),
            high: model.typical.high.clone(),
        },
        iforest: ForestFile {
            n_trees: model.trees.len() as u64,
            sample_size: u64::from(model.sample_size),
            height_limit: u64::from(iforest::height_limit(model.sample_size)),
            threshold: model.threshold,
            contamination: model.contamination,
            trees: model.trees.clone(),
        },
        rf: model.rf.as_ref().map(RandomForest::to_file),
        trained_at: model.trained_at.to_rfc3339(),
        training_rows: model.training_rows,
        seed: model.seed,
    }
}

fn hash_body(body: &Body) -> String {
    let canonical =
        serde_json::to_vec(body).expect("the body holds only finite numbers and strings");
    let digest = Sha256::digest(&canonical);
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

pub(crate) fn body_sha256(model: &Model) -> String {
    hash_body(&body_of(model))
}

impl Model {
    /// The model file's bytes (compact JSON). Same model, same bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let body = body_of(self);
        let sha256 = hash_body(&body);
        serde_json::to_vec(&EnvelopeOut {
            body: &body,
            sha256: &sha256,
        })
        .expect("the envelope holds only finite numbers and strings")
    }

    /// SHA-256 of the model's canonical body, hex: the model's identity.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Reads a model file, refusing anything longer than `max_len` bytes (see
    /// [`DEFAULT_MAX_MODEL_BYTES`]) and anything the scorer could not trust.
    pub fn from_bytes(bytes: &[u8], max_len: usize) -> Result<Model, ModelError> {
        if bytes.len() > max_len {
            return Err(ModelError::TooLarge {
                len: bytes.len(),
                max: max_len,
            });
        }
        let mut value: serde_json::Value = serde_json::from_slice(bytes).map_err(|err| {
            if err.is_eof() {
                ModelError::Truncated
            } else {
                ModelError::CorruptJson(err.to_string())
            }
        })?;
        let object = value
            .as_object_mut()
            .ok_or_else(|| ModelError::WrongFormat("not an object".to_owned()))?;
        match object.get("format").and_then(serde_json::Value::as_str) {
            Some(FORMAT) => {}
            Some(other) => return Err(ModelError::WrongFormat(other.chars().take(40).collect())),
            None => return Err(ModelError::WrongFormat("missing".to_owned())),
        }
        match object.get("version") {
            Some(version) if version.as_u64() == Some(VERSION) => {}
            Some(version) => {
                return Err(ModelError::UnknownVersion(
                    version.to_string().chars().take(40).collect(),
                ));
            }
            None => return Err(ModelError::UnknownVersion("missing".to_owned())),
        }
        let claimed = match object.remove("sha256") {
            Some(serde_json::Value::String(hex))
                if hex.len() == 64
                    && hex
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
            {
                hex
            }
            _ => return Err(ModelError::MissingHash),
        };
        let body: Body =
            serde_json::from_value(value).map_err(|err| ModelError::Schema(err.to_string()))?;
        let sha256 = hash_body(&body);
        if sha256 != claimed {
            return Err(ModelError::HashMismatch);
        }
        model_of(body, sha256)
    }
}

fn model_of(body: Body, sha256: String) -> Result<Model, ModelError> {
    if body.features.is_empty() || body.features.len() > MAX_FEATURES {
        return Err(ModelError::Invalid("a model needs 1 to 8 features"));
    }
    let mut features = Vec::with_capacity(body.features.len());
    for name in &body.features {
        let feature = Feature::from_name(name)
            .ok_or_else(|| ModelError::UnknownFeature(name.chars().take(40).collect()))?;
        if features.contains(&feature) {
            return Err(ModelError::Invalid("a feature is listed twice"));
        }
        features.push(feature);
    }
    let n_features = features.len();
    let scaler = Scaler {
        mean: body.scaler.mean,
        std: body.scaler.std,
    };
    scaler.check(n_features).map_err(ModelError::Invalid)?;
    let typical = TypicalRange {
        low: body.typical.low,
        high: body.typical.high,
    };
    typical.check(n_features).map_err(ModelError::Invalid)?;

    let forest_file = body.iforest;
    if forest_file.trees.is_empty() || forest_file.trees.len() > MAX_TREES as usize {
        return Err(ModelError::Invalid(
            "the isolation forest must have 1 to 10000 trees",
        ));
    }
    if forest_file.n_trees != forest_file.trees.len() as u64 {
        return Err(ModelError::Invalid(
            "n_trees differs from the number of trees",
        ));
    }
    let sample_size = u32::try_from(forest_file.sample_size)
        .ok()
        .filter(|size| (2..=MAX_SAMPLE_SIZE).contains(size))
        .ok_or(ModelError::Invalid(
            "sample_size must be between 2 and 65536",
        ))?;
    if forest_file.height_limit != u64::from(iforest::height_limit(sample_size)) {
        return Err(ModelError::Invalid(
            "height_limit is not ceil(log2(sample_size))",
        ));
    }
    if !(forest_file.threshold.is_finite()
        && forest_file.threshold > 0.0
        && forest_file.threshold <= 1.0)
    {
        return Err(ModelError::Invalid(
            "threshold must be a finite score in (0, 1]",
        ));
    }
    let contamination = forest_file.contamination;
    if !(contamination.is_finite() && contamination > 0.0 && contamination <= 0.5) {
        return Err(ModelError::Invalid("contamination must be in (0, 0.5]"));
    }
    let total_nodes: usize = forest_file.trees.iter().map(TreeFile::len).sum();
    if total_nodes > MAX_TOTAL_NODES {
        return Err(ModelError::Invalid(
            "the isolation forest has too many nodes",
        ));
    }
    let forest = Forest::compile(&forest_file.trees, n_features, sample_size).map_err(
        |(tree, defect)| ModelError::BadTree {
            tree,
            reason: defect.as_str(),
        },
    )?;
    let rf = match &body.rf {
        None => None,
        Some(file) => Some(RandomForest::from_file(file, n_features).map_err(ModelError::Invalid)?),
    };
    let trained_at = Timestamp::parse_text(&body.trained_at)
        .ok_or(ModelError::Invalid("trained_at is not an RFC 3339 time"))?;
    Ok(Model {
        features,
        scaler,
        typical,
        trees: forest_file.trees,
        forest,
        sample_size,
        threshold: forest_file.threshold,
        contamination,
        rf,
        trained_at,
        training_rows: body.training_rows,
        seed: body.seed,
        sha256,
    })
}

/// Re-seals an edited envelope with a correct hash, so tests can reach the checks behind it.
#[cfg(test)]
pub(crate) fn reseal(mut value: serde_json::Value) -> Vec<u8> {
    if let Some(object) = value.as_object_mut() {
        object.remove("sha256");
    }
    let body: Body = serde_json::from_value(value).expect("the edit keeps the schema");
    let sha256 = hash_body(&body);
    serde_json::to_vec(&EnvelopeOut {
        body: &body,
        sha256: &sha256,
    })
    .expect("serialisable")
}
