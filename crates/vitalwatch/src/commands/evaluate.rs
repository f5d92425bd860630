//! `vitalwatch evaluate`: replays labelled scenarios through the real rules and alert engine
//! and scores the alerts against the ground truth and the seed's one-alert-per-reading
//! behaviour.

use crate::alerts::replay::{self, ReplaySettings, ScenarioResult};
use crate::config::Config;
use anyhow::{Context, bail};
use clap::Args;
use std::path::{Path, PathBuf};
use vitalwatch_core::alerting::Evaluation;
use vitalwatch_core::scenario::{self, Scenario};

#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// Configuration file whose [rules] and [alerting] tables are evaluated (default: built-in).
    #[arg(long, env = "VITALWATCH_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also list every alert: condition, priority, open/close time and the event it detected
    /// (or "false"). The JSON report always lists them per scenario.
    #[arg(long)]
    pub alerts: bool,
    /// Scenario files (TOML, see docs/scenarios.md) or directories of them.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
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

/// Runs every scenario and prints the report (a table, or JSON with `--json`).
pub async fn run(args: EvaluateArgs) -> anyhow::Result<()> {
    let config = Config::load(args.config.as_deref(), |_| {})?;
    let files = scenario_files(&args.paths)?;
    let scenarios = files
        .iter()
        .map(|path| load_scenario(path))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let settings = ReplaySettings::from_config(&config.alerting, config.rules.clone());
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
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
        if args.alerts {
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
