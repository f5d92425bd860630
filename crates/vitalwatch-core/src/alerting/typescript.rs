//! The dashboard's TypeScript view of the alert conditions: `web/src/generated/conditions.ts`
//! is rendered here from [`AlertCondition::ALL`], [`AlertCondition::class`] and
//! [`AlertCondition::vitals`], and the test below fails when the committed file differs, so
//! the page highlights a value because a condition on that vital is open, never by a range of
//! its own. Test-only, like the vitals table's generator (`telemetry/vitals/typescript.rs`):
//! core writes no files, the test does when `VITALWATCH_UPDATE_GENERATED=1` asks it to.

use super::{AlertClass, AlertCondition};
use std::fmt::Write as _;

/// The committed file, relative to this crate.
const GENERATED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../web/src/generated/conditions.ts"
);

const REGENERATE: &str = "VITALWATCH_UPDATE_GENERATED=1 cargo test -p vitalwatch-core vitals";

fn class_name(class: AlertClass) -> &'static str {
    match class {
        AlertClass::Physiological => "physiological",
        AlertClass::Technical => "technical",
    }
}

/// The whole file.
fn render() -> String {
    let mut out = String::from(
        "// Generated from vitalwatch-core's alert conditions (`AlertCondition::vitals`); do not edit.\n\
         // One entry per condition an alert can be about, in the engine's order: `vitals` are the\n\
         // keys (generated/vitals.ts) of the values an open alert of it highlights, empty when it is\n\
         // about no single vital (NEWS2, sensor faults, the device).\n\
         \n\
         import type { VitalKey } from './vitals';\n\
         \n\
         export type AlertCondition = ",
    );
    for (idx, condition) in AlertCondition::ALL.iter().enumerate() {
        if idx > 0 {
            out.push_str(" | ");
        }
        let _ = write!(out, "\"{}\"", condition.as_str());
    }
    out.push_str(
        ";\n\n\
         export interface ConditionInfo { condition: AlertCondition; class: \"physiological\" | \"technical\"; vitals: readonly VitalKey[] }\n\
         \n\
         export const CONDITIONS: readonly ConditionInfo[] = [\n",
    );
    for condition in AlertCondition::ALL {
        let vitals: Vec<String> = condition
            .vitals()
            .iter()
            .map(|vital| format!("\"{}\"", vital.key()))
            .collect();
        let _ = writeln!(
            out,
            "  {{ condition: \"{}\", class: \"{}\", vitals: [{}] }},",
            condition.as_str(),
            class_name(condition.class()),
            vitals.join(", ")
        );
    }
    out.push_str("];\n");
    out
}

#[test]
fn vitals_of_conditions_typescript_is_current() {
    let rendered = render();
    if std::env::var_os("VITALWATCH_UPDATE_GENERATED").is_some_and(|v| v == "1") {
        std::fs::write(GENERATED, &rendered).expect("writing web/src/generated/conditions.ts");
        return;
    }
    let committed = std::fs::read_to_string(GENERATED).unwrap_or_default();
    assert!(
        committed == rendered,
        "web/src/generated/conditions.ts is stale (it differs from AlertCondition in \
         crates/vitalwatch-core/src/alerting/mod.rs); regenerate it with `{REGENERATE}`"
    );
}

#[test]
fn vitals_of_conditions_name_each_physiological_vital_condition() {
    let rendered = render();
    assert!(rendered.contains(
        r#"{ condition: "BLOOD_PRESSURE_HIGH", class: "physiological", vitals: ["systolic_bp", "diastolic_bp"] }"#
    ));
    assert!(rendered.contains(r#"{ condition: "NEWS2", class: "physiological", vitals: [] }"#));
    // Every physiological condition but the aggregates (NEWS2, the model) names its vital.
    for condition in AlertCondition::ALL
        .into_iter()
        .filter(|c| c.class() == AlertClass::Physiological)
    {
        let aggregate = matches!(condition, AlertCondition::News2 | AlertCondition::MlAnomaly);
        assert_eq!(aggregate, condition.vitals().is_empty(), "{condition}");
    }
}
