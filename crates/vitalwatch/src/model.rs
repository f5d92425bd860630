//! The loaded anomaly model: reading the model file, holding it for the pipeline, swapping it
//! on reload, and describing it for `/health`.
//!
//! The file is read here (the core only sees bytes). Its length is checked against
//! [`DEFAULT_MAX_MODEL_BYTES`] before a byte is read, so a file that claims gigabytes costs
//! nothing. A refused file never replaces a loaded model: the pipeline keeps scoring with the
//! previous one, or runs on rules alone when there was none. Readers take a cheap `Arc`
//! snapshot under a read lock held for a pointer copy, so a reload never waits for scoring
//! and scoring never sees half a model.

use crate::store::{AuditEntry, Store};
use parking_lot::RwLock;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use vitalwatch_core::detect::{DEFAULT_MAX_MODEL_BYTES, Model, ModelError};
use vitalwatch_core::rules::{AnomalyType, Finding, Severity};
use vitalwatch_core::telemetry::{FieldSet, Reading};

/// Why a model file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("no model file at {0}")]
    Missing(PathBuf),
    #[error("cannot read model file {path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("model file {path} refused: {error}")]
    Refused { path: PathBuf, error: ModelError },
}

/// Reads and validates a model file, refusing anything above [`DEFAULT_MAX_MODEL_BYTES`]
/// without reading it.
pub fn read_model_file(path: &Path) -> Result<Model, LoadError> {
    let io = |error| LoadError::Io {
        path: path.to_owned(),
        error,
    };
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(LoadError::Missing(path.to_owned()));
        }
        Err(err) => return Err(io(err)),
    };
    let declared = file.metadata().map_err(io)?.len();
    let refused = |error| LoadError::Refused {
        path: path.to_owned(),
        error,
    };
    if declared > DEFAULT_MAX_MODEL_BYTES as u64 {
        return Err(refused(ModelError::TooLarge {
            len: usize::try_from(declared).unwrap_or(usize::MAX),
            max: DEFAULT_MAX_MODEL_BYTES,
        }));
    }
    // Read at most one byte past the limit, in case the file grew after the check.
    let mut bytes = Vec::with_capacity(declared as usize);
    file.take(DEFAULT_MAX_MODEL_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    Model::from_bytes(&bytes, DEFAULT_MAX_MODEL_BYTES).map_err(refused)
}

/// A one-line description of a loaded model, as `/health` shows it.
pub fn describe(model: &Model) -> String {
    let info = model.info();
    format!(
        "loaded (sha256 {}, {} trees, features {})",
        info.sha256,
        info.n_trees,
        info.features.join(", ")
    )
}

/// What `/health` and the reload endpoint report.
#[derive(Clone, Debug)]
pub struct ModelStatus {
    pub loaded: bool,
    /// `loaded (sha256 …, N trees, features …)` or `unavailable (<reason>)`.
    pub description: String,
    pub sha256: Option<String>,
}

struct SlotState {
    model: Option<Arc<Model>>,
    /// Why there is no model (only read while `model` is `None`).
    unavailable: String,
}

/// The model the pipeline scores with, swappable at run time.
pub struct ModelSlot {
    /// The file `reload` reads; `None` for a pipeline built without a model (benchmarks).
    path: Option<PathBuf>,
    state: RwLock<SlotState>,
}

/// What a reload did.
#[derive(Debug)]
pub enum ReloadOutcome {
    /// The new model is in use.
    Loaded {
        sha256: String,
        previous: Option<String>,
    },
    /// The file was refused; the previous model (if any) stays in use.
    Refused {
        reason: String,
        kept: Option<String>,
    },
}

impl ModelSlot {
    /// A slot with no model and no file: the pipeline runs on rules alone.
    pub fn empty() -> ModelSlot {
        ModelSlot {
            path: None,
            state: RwLock::new(SlotState {
                model: None,
                unavailable: "no model configured".to_owned(),
            }),
        }
    }

    /// Loads `path` if it can; otherwise an empty slot that says why.
    pub fn open(path: PathBuf) -> ModelSlot {
        let slot = ModelSlot {
            path: Some(path),
            state: RwLock::new(SlotState {
                model: None,
                unavailable: String::new(),
            }),
        };
        let outcome = slot.reload();
        match outcome {
            ReloadOutcome::Loaded { sha256, .. } => {
                tracing::info!(event = "model.loaded", message = "Anomaly model loaded.", %sha256);
            }
            ReloadOutcome::Refused { reason, .. } => {
                tracing::warn!(event = "model.unavailable", message = "Anomaly model unavailable; running on rules alone.", %reason);
            }
        }
        slot
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The model in use now, if any.
    pub fn current(&self) -> Option<Arc<Model>> {
        self.state.read().model.clone()
    }

    pub fn status(&self) -> ModelStatus {
        let state = self.state.read();
        match &state.model {
            Some(model) => ModelStatus {
                loaded: true,
                description: describe(model),
                sha256: Some(model.sha256().to_owned()),
            },
            None => ModelStatus {
                loaded: false,
                description: format!("unavailable ({})", state.unavailable),
                sha256: None,
            },
        }
    }

    /// Reads the file again. A refused file keeps the previous model in use.
    pub fn reload(&self) -> ReloadOutcome {
        let Some(path) = &self.path else {
            return ReloadOutcome::Refused {
                reason: "no model file is configured".to_owned(),
                kept: None,
            };
        };
        let loaded = read_model_file(path);
        let mut state = self.state.write();
        let previous = state.model.as_ref().map(|model| model.sha256().to_owned());
        match loaded {
            Ok(model) => {
                let sha256 = model.sha256().to_owned();
                state.model = Some(Arc::new(model));
                ReloadOutcome::Loaded { sha256, previous }
            }
            Err(err) => {
                let reason = err.to_string();
                if state.model.is_none() {
                    state.unavailable = reason.clone();
                }
                ReloadOutcome::Refused {
                    reason,
                    kept: previous,
                }
            }
        }
    }
}

/// Reloads `slot` from its file on a blocking thread and writes a `model.reload` audit row
/// (sha256 and outcome, never model content) as `actor`.
pub async fn reload_and_audit(
    slot: &Arc<ModelSlot>,
    store: &dyn Store,
    actor: String,
) -> ReloadOutcome {
    let reloading = Arc::clone(slot);
    let outcome = match tokio::task::spawn_blocking(move || reloading.reload()).await {
        Ok(outcome) => outcome,
        Err(err) => ReloadOutcome::Refused {
            reason: format!("the reload task failed: {err}"),
            kept: slot.status().sha256,
        },
    };
    let target = slot
        .path()
        .map_or_else(|| "none".to_owned(), |path| path.display().to_string());
    let details = match &outcome {
        ReloadOutcome::Loaded { sha256, previous } => {
            tracing::info!(event = "model.reloaded", message = "Anomaly model reloaded.", %sha256, %actor);
            serde_json::json!({ "outcome": "loaded", "sha256": sha256, "previous_sha256": previous })
        }
        ReloadOutcome::Refused { reason, kept } => {
            tracing::warn!(event = "model.reload_refused", message = "Anomaly model reload refused; keeping the previous model.", %reason, %actor);
            serde_json::json!({ "outcome": "refused", "reason": reason, "sha256": kept })
        }
    };
    let entry = AuditEntry {
        actor,
        action: "model.reload".to_owned(),
        target,
        details,
    };
    if let Err(err) = store.audit(entry).await {
        tracing::warn!(event = "audit.not_written", message = "Model reload not audited.", error = %err);
    }
    outcome
}

/// Scores `readings` with `model` in one batch: each reading's score (`None` when it lacks a
/// feature the model needs) and, for those above the threshold, an ML_ANOMALY finding.
pub fn score_readings(
    model: &Model,
    readings: &[Reading],
    severity: Severity,
) -> Vec<(Option<f64>, Option<Finding>)> {
    let mut scores = Vec::with_capacity(readings.len());
    model.score_batch(readings, &mut scores);
    readings
        .iter()
        .zip(scores)
        .map(|(reading, score)| {
            let Some(score) = score else {
                return (None, None);
            };
            // The supervised random forest, when the model carries one, can raise a finding the
            // isolation forest missed; it never suppresses one (a real alarm is never buried).
            let supervised = model.classify(reading) == Some(true);
            if !score.is_anomaly && !supervised {
                return (Some(score.value), None);
            }
            let mut explanation = model.explain(reading);
            if supervised && !score.is_anomaly {
                explanation = Some(match explanation {
                    Some(text) => format!("classified anomalous by the supervised model; {text}"),
                    None => "classified anomalous by the supervised model".to_owned(),
                });
            }
            let finding = Finding {
                kind: AnomalyType::MlAnomaly,
                severity,
                value: Some(score.value),
                threshold: Some(model.threshold()),
                missing: FieldSet::EMPTY,
                explanation,
            };
            (Some(score.value), Some(finding))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use vitalwatch_core::detect::{Feature, PopulationOptions, TrainOptions, normal_population};
    use vitalwatch_core::telemetry::{DeviceId, Timestamp};

    fn model() -> Model {
        let data = normal_population(&PopulationOptions {
            patients: 20,
            readings_per_patient: 100,
            ..PopulationOptions::default()
        });
        vitalwatch_core::detect::train(
            &data,
            &Feature::SEED,
            &TrainOptions {
                trees: 20,
                ..TrainOptions::default()
            },
            Timestamp::from_secs(1_764_000_000),
            &mut |_| {},
        )
        .expect("training on synthetic data succeeds")
    }

    fn reading(hr: f64, temp: f64, battery: Option<f64>) -> Reading {
        let mut reading = Reading::empty(
            DeviceId::parse("dev-1", 64).expect("valid id"),
            Timestamp::from_secs(1_764_000_000),
        );
        reading.heart_rate_bpm = Some(hr);
        reading.body_temp_c = Some(temp);
        reading.signal_strength_dbm = Some(-60.0);
        reading.battery_pct = battery;
        reading
    }

    #[test]
    fn scores_flags_and_skips_incomplete_readings() {
        let model = model();
        let readings = [
            reading(72.0, 36.8, Some(80.0)),
            reading(130.0, 39.6, Some(80.0)),
            reading(72.0, 36.8, None),
        ];
        let out = score_readings(&model, &readings, Severity::Critical);
        assert!(out[0].0.is_some() && out[0].1.is_none());
        let finding = out[1]
            .1
            .as_ref()
            .expect("fever with tachycardia is flagged");
        assert_eq!(finding.kind, AnomalyType::MlAnomaly);
        assert_eq!(finding.threshold, Some(model.threshold()));
        assert!(
            finding.details().contains("body_temp") || finding.details().contains("heart_rate")
        );
        assert_eq!(out[2], (None, None));
    }

    #[test]
    fn a_supervised_forest_raises_what_the_isolation_forest_missed() {
        use vitalwatch_core::detect::labelled_test_set;
        let options = PopulationOptions {
            patients: 30,
            readings_per_patient: 100,
            ..PopulationOptions::default()
        };
        let data = labelled_test_set(&options, 150);
        let model = vitalwatch_core::detect::train(
            &data,
            &Feature::SEED,
            &TrainOptions {
                trees: 50,
                random_forest_trees: Some(30),
                ..TrainOptions::default()
            },
            Timestamp::from_secs(1_764_000_000),
            &mut |_| {},
        )
        .expect("training with labels succeeds");
        // Every labelled anomaly in the training data, as a reading.
        let labels = data.labels().expect("the set is labelled");
        let column = |f: Feature| data.column(f).expect("seed feature present");
        let (hr, temp, rssi, battery) = (
            column(Feature::HeartRate),
            column(Feature::BodyTemp),
            column(Feature::SignalStrength),
            column(Feature::BatteryLevel),
        );
        let anomalies: Vec<Reading> = (0..data.n_rows())
            .filter(|&i| labels[i])
            .map(|i| {
                let mut r = reading(hr[i].unwrap(), temp[i].unwrap(), battery[i]);
                r.signal_strength_dbm = rssi[i];
                r
            })
            .collect();
        let out = score_readings(&model, &anomalies, Severity::Critical);
        let rescued: Vec<&Finding> = anomalies
            .iter()
            .zip(&out)
            .filter(|(r, (score, _))| {
                score.is_some_and(|s| s <= model.threshold()) && model.classify(r) == Some(true)
            })
            .map(|(_, (_, finding))| finding.as_ref().expect("the supervised verdict raises"))
            .collect();
        assert!(
            !rescued.is_empty(),
            "no anomaly was left to the supervised model"
        );
        assert!(rescued.iter().all(|f| {
            f.details()
                .starts_with("classified anomalous by the supervised model")
        }));
    }

    #[test]
    fn refused_reload_keeps_the_previous_model() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("model.json");
        let missing = ModelSlot::open(path.clone());
        assert!(!missing.status().loaded);
        assert!(missing.status().description.contains("no model file at"));

        let good = model();
        std::fs::write(&path, good.to_bytes()).expect("write");
        assert!(matches!(missing.reload(), ReloadOutcome::Loaded { .. }));
        std::fs::write(&path, b"{\"format\":").expect("write");
        match missing.reload() {
            ReloadOutcome::Refused { reason, kept } => {
                assert!(reason.contains("truncated"), "{reason}");
                assert_eq!(kept.as_deref(), Some(good.sha256()));
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert_eq!(missing.status().sha256.as_deref(), Some(good.sha256()));
    }
}
