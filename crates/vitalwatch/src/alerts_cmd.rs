//! `vitalwatch thresholds …` and `vitalwatch evaluate …`: per-patient thresholds through the
//! same store and audit trail as the API, and the scenario evaluation of alerting.

use crate::alerts::replay::{self, ReplaySettings, ScenarioResult};
use crate::alerts::{PreviewAnswer, preview_history, validate_thresholds};
use crate::cli::actor;
use crate::cli::{ThresholdLimits, ThresholdsCommand};
use crate::config::Config;
use crate::serve::open_store;
use crate::store::Store;
use anyhow::{Context, bail};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use vitalwatch_core::alerting::Evaluation;
use vitalwatch_core::rules::PatientThresholds;
use vitalwatch_core::scenario::{self, Scenario};
use vitalwatch_core::telemetry::{DeviceId, Timestamp};

fn check_id(raw: &str, config: &Config) -> anyhow::Result<DeviceId> {
    DeviceId::parse(raw, config.limits.max_device_id_len).map_err(|_| {
        anyhow::anyhow!("invalid device id {raw:?}: use 1 to 64 characters of A-Z a-z 0-9 _ . : -")
    })
}

fn thresholds_of(limits: ThresholdLimits) -> PatientThresholds {
    PatientThresholds {
        heart_rate_min: limits.hr_min,
        heart_rate_max: limits.hr_max,
        body_temp_min: limits.temp_min,
        body_temp_max: limits.temp_max,
    }
}

fn time(raw: Option<&str>, flag: &str) -> anyhow::Result<Option<Timestamp>> {
    raw.map(|raw| {
        Timestamp::parse_text(raw).ok_or_else(|| anyhow::anyhow!("{flag} must be an RFC 3339 time"))
    })
    .transpose()
}

pub async fn thresholds(config: Config, command: ThresholdsCommand) -> anyhow::Result<()> {
    let store: Arc<dyn Store> = open_store(&config)?;
    let res = dispatch(&config, Arc::clone(&store), command).await;
    store.close().await;
    res
}

async fn require_device(store: &dyn Store, id: &DeviceId) -> anyhow::Result<()> {
    if store.get_device(id.as_str().to_owned()).await?.is_none() {
        bail!("device {} is not registered", id.as_str());
    }
    Ok(())
}

async fn dispatch(
    config: &Config,
    store: Arc<dyn Store>,
    command: ThresholdsCommand,
) -> anyhow::Result<()> {
    match command {
        ThresholdsCommand::Set {
            id,
            limits,
            reason,
            author,
        } => {
            let id = check_id(&id, config)?;
            require_device(&*store, &id).await?;
            let author = author.map_or_else(actor, |name| format!("{name} ({})", actor()));
            let record = validate_thresholds(
                &config.rules,
                &id,
                thresholds_of(limits),
                author,
                reason,
                None,
            )
            .map_err(|err| anyhow::anyhow!("thresholds refused: {err}"))?;
            let record = store.set_thresholds(record).await?;
            println!("{}", serde_json::to_string_pretty(&record)?);
        }
        ThresholdsCommand::Show { id } => {
            let id = check_id(&id, config)?;
            require_device(&*store, &id).await?;
            let record = store
                .thresholds(Some(id.as_str().to_owned()))
                .await?
                .into_iter()
                .next();
            let answer = json!({
                "device_id": id.as_str(),
                "override": record,
                "site": { "heart_rate": config.rules.heart_rate, "body_temp": config.rules.body_temp },
            });
            println!("{}", serde_json::to_string_pretty(&answer)?);
        }
        ThresholdsCommand::Clear { id, reason } => {
            let id = check_id(&id, config)?;
            require_device(&*store, &id).await?;
            let removed = store
                .clear_thresholds(id.as_str().to_owned(), actor(), reason)
                .await?;
            println!(
                "{}",
                json!({ "device_id": id.as_str(), "removed": removed })
            );
        }
        ThresholdsCommand::Preview {
            id,
            limits,
            since,
            until,
        } => {
            let id = id.map(|raw| check_id(&raw, config)).transpose()?;
            if let Some(id) = &id {
                require_device(&*store, id).await?;
            }
            let answer: PreviewAnswer = preview_history(
                store,
                &config.alerting,
                &config.rules,
                id.map(|id| id.as_str().to_owned()),
                thresholds_of(limits),
                time(since.as_deref(), "--since")?,
                time(until.as_deref(), "--until")?,
            )
            .await
            .map_err(|err| anyhow::anyhow!("preview refused: {err}"))?;
            println!("{}", serde_json::to_string_pretty(&answer)?);
        }
    }
    Ok(())
}

/// Scenario files named on the command line, directories expanded to their `*.toml` (sorted).
fn scenario_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("reading directory {}", path.display()))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|ext| ext == "toml"))
                .collect();
            found.sort();
            if found.is_empty() {
                bail!("no *.toml scenario in {}", path.display());
            }
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

fn load_scenario(path: &Path) -> anyhow::Result<Scenario> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading scenario {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("in scenario {}", path.display()))
}

/// Runs every scenario and prints the report (a table, or JSON with `json`).
pub async fn evaluate(
    config: Config,
    paths: &[PathBuf],
    json_out: bool,
    list_alerts: bool,
) -> anyhow::Result<()> {
    let files = scenario_files(paths)?;
    let scenarios = files
        .iter()
        .map(|path| load_scenario(path))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let settings = ReplaySettings {
        engine: config.alerting.engine.clone(),
        sensor: config.alerting.sensor_fault,
        news2_window_s: config.alerting.news2_window_s,
        site: config.rules.clone(),
        overrides: Default::default(),
        ticks: true,
    };
    let results = tokio::task::spawn_blocking(move || {
        scenarios
            .iter()
            .map(|scenario| {
                let generated = scenario::generate(scenario)?;
                Ok(replay::evaluate_scenario(
                    &scenario.name,
                    &generated,
                    &settings,
                ))
            })
            .collect::<anyhow::Result<Vec<ScenarioResult>>>()
    })
    .await
    .context("the evaluation task failed")??;
    let report = Report::new(results);
    if json_out {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
        if list_alerts {
            print!("\n{}", replay::alert_listing(&report.scenarios));
        }
    }
    Ok(())
}

#[derive(serde::Serialize)]
struct Report {
    #[serde(flatten)]
    engine: Evaluation,
    /// 1 − alerts / seed_alerts.
    alert_reduction: f64,
    patient_days: f64,
    seed: Evaluation,
    scenarios: Vec<ScenarioResult>,
}

impl Report {
    fn new(scenarios: Vec<ScenarioResult>) -> Report {
        let patient_days = scenarios.iter().map(|s| s.patient_days).sum();
        let engine = replay::merge(
            &scenarios.iter().map(|s| &s.engine).collect::<Vec<_>>(),
            patient_days,
        );
        let seed = replay::merge(
            &scenarios.iter().map(|s| &s.seed).collect::<Vec<_>>(),
            patient_days,
        );
        let alert_reduction = if engine.seed_alerts > 0 {
            1.0 - engine.alerts as f64 / engine.seed_alerts as f64
        } else {
            0.0
        };
        Report {
            engine,
            alert_reduction,
            patient_days,
            seed,
            scenarios,
        }
    }

    fn table(&self) -> String {
        use std::fmt::Write;
        let secs = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0} s"));
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<22} {:>6} | {:>9} {:>9} {:>9} | {:>9} {:>9} {:>9}",
            "event kind",
            "events",
            "detected",
            "mean TTA",
            "max TTA",
            "seed det",
            "seed mean",
            "seed max"
        );
        for (kind, score) in &self.engine.per_kind {
            let seed = self.seed.per_kind.get(kind).cloned().unwrap_or_default();
            let _ = writeln!(
                out,
                "{:<22} {:>6} | {:>9} {:>9} {:>9} | {:>9} {:>9} {:>9}",
                kind,
                score.events,
                score.detected,
                secs(score.mean_time_to_alert_s),
                secs(score.max_time_to_alert_s),
                seed.detected,
                secs(seed.mean_time_to_alert_s),
                secs(seed.max_time_to_alert_s),
            );
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<34} {:>14} {:>14}",
            "", "alert engine", "seed (1/reading)"
        );
        let rows = [
            (
                "critical events detected",
                format!(
                    "{}/{}",
                    self.engine.critical_detected, self.engine.critical_events
                ),
                format!(
                    "{}/{}",
                    self.seed.critical_detected, self.seed.critical_events
                ),
            ),
            (
                "slowest critical detection",
                secs(self.engine.max_time_to_alert_s),
                secs(self.seed.max_time_to_alert_s),
            ),
            (
                "alerts",
                self.engine.alerts.to_string(),
                self.engine.seed_alerts.to_string(),
            ),
            (
                "false alerts per patient-day",
                format!("{:.2}", self.engine.false_alerts_per_patient_day),
                format!("{:.2}", self.seed.false_alerts_per_patient_day),
            ),
        ];
        for (name, engine, seed) in rows {
            let _ = writeln!(out, "{name:<34} {engine:>14} {seed:>14}");
        }
        let _ = writeln!(
            out,
            "\n{} scenarios, {:.1} patient-days; {:.1} % fewer alerts than the seed",
            self.scenarios.len(),
            self.patient_days,
            100.0 * self.alert_reduction
        );
        out
    }
}
