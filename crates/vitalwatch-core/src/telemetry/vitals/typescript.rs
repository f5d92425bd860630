//! The dashboard's TypeScript view of [`VITALS`]: `web/src/generated/vitals.ts` is rendered
//! here and the test below fails when the committed file differs, so the page's vital keys,
//! labels and bounds cannot drift from the server's. Test-only: core writes no files, the
//! test does when `VITALWATCH_UPDATE_GENERATED=1` asks it to.

use super::{VITALS, VitalInfo};
use std::fmt::Write as _;

/// The committed file, relative to this crate.
const GENERATED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../web/src/generated/vitals.ts"
);

const REGENERATE: &str = "VITALWATCH_UPDATE_GENERATED=1 cargo test -p vitalwatch-core vitals";

/// A JSON (and so TypeScript) string literal.
fn quoted(text: &str) -> String {
    serde_json::to_string(text).expect("a string always serialises")
}

fn entry(info: &VitalInfo) -> String {
    // Non-numeric kinds have no bounds; the file says 0 and 0 (see its header).
    let (min, max) = info.plausible.map_or((0.0, 0.0), |b| (b.min, b.max));
    format!(
        "  {{ key: {}, label: {}, unit: {}, column: {}, min: {min}, max: {max}, loinc: {}, kind: {} }},\n",
        quoted(info.key),
        quoted(info.label),
        quoted(info.unit),
        quoted(info.column),
        info.loinc.map_or("null".to_owned(), quoted),
        quoted(info.kind.as_str()),
    )
}

/// The whole file.
pub(super) fn render() -> String {
    let mut out = String::from(
        "// Generated from vitalwatch-core's vitals table; do not edit.\n\
         // One entry per vital a reading carries, in the table's order: `key` is the wire and JSON\n\
         // field name, `column` the SQL column, `min`/`max` the decoder's plausibility bounds (0 and 0\n\
         // where `kind` is not \"number\"), `loinc` the LOINC code of its FHIR vital-sign profile.\n\
         \n\
         export interface VitalInfo { key: string; label: string; unit: string; column: string; \
         min: number; max: number; loinc: string | null; kind: \"number\" | \"acvpu\" | \"bool\" }\n\
         \n\
         export const VITALS: readonly VitalInfo[] = [\n",
    );
    for info in &VITALS {
        out.push_str(&entry(info));
    }
    out.push_str("];\n\nexport type VitalKey = ");
    for (idx, info) in VITALS.iter().enumerate() {
        if idx > 0 {
            out.push_str(" | ");
        }
        let _ = write!(out, "{}", quoted(info.key));
    }
    out.push_str(";\n");
    out
}

#[test]
fn vitals_typescript_is_current() {
    let rendered = render();
    if std::env::var_os("VITALWATCH_UPDATE_GENERATED").is_some_and(|v| v == "1") {
        std::fs::write(GENERATED, &rendered).expect("writing web/src/generated/vitals.ts");
        return;
    }
    let committed = std::fs::read_to_string(GENERATED).unwrap_or_default();
    assert!(
        committed == rendered,
        "web/src/generated/vitals.ts is stale (it differs from the vitals table in \
         crates/vitalwatch-core/src/telemetry/vitals.rs); regenerate it with `{REGENERATE}`"
    );
}

#[test]
fn vitals_typescript_names_every_vital_once() {
    let rendered = render();
    for info in &VITALS {
        assert_eq!(
            rendered
                .matches(&format!("{{ key: \"{}\"", info.key))
                .count(),
            1,
            "{}",
            info.key
        );
    }
    assert!(rendered.contains(r#"min: -150, max: 20, loinc: null, kind: "number""#));
    assert!(rendered.contains(r#"min: 0, max: 0, loinc: null, kind: "acvpu""#));
    assert!(rendered.contains(r#"loinc: "8867-4""#));
}
