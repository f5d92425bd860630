//! HL7 FHIR R4: the store's records as FHIR resources (`serde_json` values), pure functions
//! with no I/O, driven by the vitals table (`vitalwatch_core::telemetry::VITALS`): each
//! vital's LOINC code(s), UCUM unit and label are read from the table, never written here.
//!
//! - a reading becomes vital-signs `Observation`s (one per vital with a LOINC code, the two
//!   blood pressures as one panel with components), and a NEWS2 total `Observation` with its
//!   subscores as components (core's `news2` scores it on the patient's SpO2 scale, from the
//!   thresholds record in force when the reading was received: [`spo2_scale_for`]; the scale
//!   is the Observation's `method`);
//! - `interpretation` (H/L/HH/LL) comes from the reading's stored findings (the rules' and the
//!   patient's thresholds, as the pipeline committed them);
//! - an alert becomes a `Flag`, a registered device a `Device`, a patient label a `Patient`
//!   (an identifier only: no invented demographics), an error an `OperationOutcome`.
//!
//! Ids are stable: `Observation/<reading id>-<part>` (`heart-rate`, `bp`, `news2`, …),
//! `Device/<device id>` (escaped to FHIR's id charset, see [`device_resource_id`]),
//! `Patient/p-<hash of the label>`, `Flag/<alert id>`. The HTTP side is `api::fhir`, the
//! bulk export `commands::fhir`; the search that pages the store for both is [`search`].
//! Codes that are not the vitals' own (the BP panel, NEWS2, the local code systems) are
//! constants here, each with its source.

pub mod capability;
pub mod search;

use crate::store::{AlertRecord, alert_state_str};
use crate::store::{AnomalyRecord, DeviceRecord, ReadingRecord, ThresholdsRecord};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use vitalwatch_core::alerting::{AlertClass, AlertState, Priority};
use vitalwatch_core::news2::{ClinicalRisk, Parameter, Spo2Scale};
use vitalwatch_core::rules::{AnomalyType, Severity};
use vitalwatch_core::telemetry::{Timestamp, VitalKey, VitalKind};

/// The media type of every answer [FHIR R4 http.html#mime-type].
pub const FHIR_JSON: &str = "application/fhir+json";
/// LOINC, as FHIR names it.
pub const LOINC: &str = "http://loinc.org";
/// UCUM, the system of every `valueQuantity` [FHIR-VS].
pub const UCUM: &str = "http://unitsofmeasure.org";
pub const SNOMED: &str = "http://snomed.info/sct";
const OBSERVATION_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";
const INTERPRETATION: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation";
const DATA_ABSENT: &str = "http://terminology.hl7.org/CodeSystem/data-absent-reason";
const FLAG_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/flag-category";
/// The R4 core extension that carries a Flag's priority, and its code system.
const FLAG_PRIORITY_EXT: &str = "http://hl7.org/fhir/StructureDefinition/flag-priority";
const FLAG_PRIORITY_CODES: &str = "http://hl7.org/fhir/flag-priority-code";

/// Blood pressure panel, the grouper of the `bp` profile (CLINICAL.md §2 [FHIR-VS]); its
/// components' codes are the systolic and diastolic rows of the vitals table.
pub const BP_PANEL_LOINC: &str = "85354-9";
/// The vitals that are the BP panel's components, in component order.
const BP_COMPONENTS: [VitalKey; 2] = [VitalKey::SystolicBp, VitalKey::DiastolicBp];
/// NEWS2 total score, SNOMED CT UK edition (CLINICAL.md §1 [NEWS2-FHIR]).
pub const NEWS2_SNOMED: &str = "1104051000000101";

/// Local code systems, documented in the CapabilityStatement ([`capability`]).
pub const SYSTEM_DEVICE_ID: &str = "urn:vitalwatch:device-id";
pub const SYSTEM_PATIENT_LABEL: &str = "urn:vitalwatch:patient-label";
/// NEWS2 parameters (`news2::Parameter::as_str`): the components of the NEWS2 Observation.
pub const SYSTEM_NEWS2_PARAMETER: &str = "urn:vitalwatch:news2-parameter";
/// NEWS2 clinical-risk categories (low, low_medium, medium, high) [NEWS2-RCPJ].
pub const SYSTEM_NEWS2_RISK: &str = "urn:vitalwatch:news2-risk";
/// NEWS2 SpO2 scales (`Spo2Scale::as_str`: scale1, scale2): a NEWS2 Observation's `method`.
pub const SYSTEM_NEWS2_SPO2_SCALE: &str = "urn:vitalwatch:news2-spo2-scale";
/// Alert conditions (`AlertCondition::as_str`): a Flag's code.
pub const SYSTEM_ALERT_CONDITION: &str = "urn:vitalwatch:alert-condition";

/// One part of a reading that is an Observation of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// A vital with a LOINC code that is not a BP component.
    Vital(VitalKey),
    BloodPressure,
    News2,
}

impl Part {
    /// The id suffix: the vital's key with `-` for `_` (`heart-rate`), `bp`, `news2`.
    pub fn suffix(self) -> String {
        match self {
            Part::Vital(vital) => vital.key().replace('_', "-"),
            Part::BloodPressure => "bp".to_owned(),
            Part::News2 => "news2".to_owned(),
        }
    }

    fn parse(raw: &str) -> Option<Part> {
        match raw {
            "bp" => Some(Part::BloodPressure),
            "news2" => Some(Part::News2),
            _ => observed_vitals()
                .find(|vital| vital.key().replace('_', "-") == raw)
                .map(Part::Vital),
        }
    }

    /// The codings of this part's `code` (system, code).
    pub fn codings(self) -> Vec<(&'static str, &'static str)> {
        match self {
            Part::Vital(vital) => {
                let info = vital.info();
                info.loinc
                    .into_iter()
                    .chain(info.loinc_also)
                    .map(|code| (LOINC, code))
                    .collect()
            }
            Part::BloodPressure => vec![(LOINC, BP_PANEL_LOINC)],
            Part::News2 => vec![(SNOMED, NEWS2_SNOMED)],
        }
    }

    /// Every part there is, in the order a reading's Observations are listed.
    pub fn all() -> Vec<Part> {
        let mut parts: Vec<Part> = observed_vitals().map(Part::Vital).collect();
        parts.push(Part::BloodPressure);
        parts.push(Part::News2);
        parts
    }
}

/// The vitals that are Observations of their own: a LOINC code, a number, not a BP component.
fn observed_vitals() -> impl Iterator<Item = VitalKey> {
    VitalKey::ALL.into_iter().filter(|vital| {
        let info = vital.info();
        info.loinc.is_some() && info.kind == VitalKind::Number && !BP_COMPONENTS.contains(vital)
    })
}

/// An Observation's id, `<reading id>-<part suffix>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObservationId {
    pub reading_id: i64,
    pub part: Part,
}

impl ObservationId {
    pub fn parse(raw: &str) -> Option<ObservationId> {
        let (id, part) = raw.split_once('-')?;
        let reading_id = id.parse::<i64>().ok().filter(|id| *id > 0)?;
        Some(ObservationId {
            reading_id,
            part: Part::parse(part)?,
        })
    }
}

impl std::fmt::Display for ObservationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.reading_id, self.part.suffix())
    }
}

/// A device id in FHIR's id charset (`[A-Za-z0-9.-]`): letters, digits and `-` as they are,
/// `.` as `..`, `_` as `.u`, `:` as `.c` (device ids are `A-Z a-z 0-9 _ . : -`), so the
/// mapping is one-to-one and `bed-1` stays `bed-1`.
pub fn device_resource_id(device_id: &str) -> String {
    let mut out = String::with_capacity(device_id.len());
    for c in device_id.chars() {
        match c {
            '.' => out.push_str(".."),
            '_' => out.push_str(".u"),
            ':' => out.push_str(".c"),
            other => out.push(other),
        }
    }
    out
}

/// The device id a [`device_resource_id`] came from; `None` if it is not one.
pub fn device_id_of_resource(resource_id: &str) -> Option<String> {
    let mut out = String::with_capacity(resource_id.len());
    let mut chars = resource_id.chars();
    while let Some(c) = chars.next() {
        match c {
            '.' => match chars.next()? {
                '.' => out.push('.'),
                'u' => out.push('_'),
                'c' => out.push(':'),
                _ => return None,
            },
            c if c.is_ascii_alphanumeric() || c == '-' => out.push(c),
            _ => return None,
        }
    }
    (!out.is_empty()).then_some(out)
}

/// A patient label's resource id: `p-` and 32 hex digits of its SHA-256, so the label (which
/// may name a person) never appears in a URL or an access log.
pub fn patient_resource_id(label: &str) -> String {
    let digest = Sha256::digest(label.as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("p-{hex}")
}

/// The Observation's subject: the device's patient when it has a label, else the device.
fn subject(device_id: &str, patient_label: Option<&str>) -> Value {
    match patient_label {
        Some(label) => json!({ "reference": format!("Patient/{}", patient_resource_id(label)) }),
        None => device_reference(device_id),
    }
}

pub fn device_reference(device_id: &str) -> Value {
    json!({ "reference": format!("Device/{}", device_resource_id(device_id)) })
}

fn codeable(codings: &[(&str, &str)], text: &str) -> Value {
    let coding: Vec<Value> = codings
        .iter()
        .map(|(system, code)| json!({ "system": system, "code": code }))
        .collect();
    json!({ "coding": coding, "text": text })
}

/// The quantity of one vital's value, its unit and code from the table.
fn quantity(vital: VitalKey, value: f64) -> Value {
    let info = vital.info();
    let code = info.ucum.unwrap_or("1");
    let unit = if info.unit.is_empty() {
        code
    } else {
        info.unit
    };
    json!({ "value": value, "unit": unit, "system": UCUM, "code": code })
}

/// The vital a stored finding is about (only the ones with an Observation of their own).
fn finding_vital(kind: AnomalyType) -> Option<VitalKey> {
    match kind {
        AnomalyType::OutOfRangeHr => Some(VitalKey::HeartRate),
        AnomalyType::OutOfRangeTemp => Some(VitalKey::BodyTemp),
        _ => None,
    }
}

/// `H`/`L` for a WARNING finding, `HH`/`LL` (critical) for a CRITICAL one, from which side
/// of its threshold the value was.
fn interpretation(vital: VitalKey, findings: &[AnomalyRecord]) -> Option<Value> {
    let finding = findings
        .iter()
        .find(|finding| finding_vital(finding.kind) == Some(vital))?;
    let (Some(value), Some(threshold)) = (finding.value, finding.threshold) else {
        return None;
    };
    let (code, display) = match (value < threshold, finding.severity) {
        (true, Severity::Critical) => ("LL", "Critical low"),
        (true, Severity::Warning) => ("L", "Low"),
        (false, Severity::Critical) => ("HH", "Critical high"),
        (false, Severity::Warning) => ("H", "High"),
    };
    Some(json!([{
        "coding": [{ "system": INTERPRETATION, "code": code, "display": display }],
        "text": finding.details,
    }]))
}

/// What every Observation of one reading shares.
struct Common<'a> {
    reading: &'a ReadingRecord,
    patient_label: Option<&'a str>,
    spo2_scale: Spo2Scale,
}

impl Common<'_> {
    fn observation(
        &self,
        part: Part,
        category: &str,
        text: &str,
    ) -> serde_json::Map<String, Value> {
        let id = ObservationId {
            reading_id: self.reading.id,
            part,
        };
        let mut out = serde_json::Map::new();
        out.insert("resourceType".into(), json!("Observation"));
        out.insert("id".into(), json!(id.to_string()));
        out.insert("status".into(), json!("final"));
        out.insert(
            "category".into(),
            json!([{ "coding": [{ "system": OBSERVATION_CATEGORY, "code": category }] }]),
        );
        out.insert("code".into(), codeable(&part.codings(), text));
        out.insert(
            "subject".into(),
            subject(&self.reading.device_id, self.patient_label),
        );
        out.insert("effectiveDateTime".into(), json!(self.reading.timestamp));
        out.insert("issued".into(), json!(self.reading.received_at));
        out.insert("device".into(), device_reference(&self.reading.device_id));
        out
    }
}

/// Every Observation of one stored reading, in [`Part::all`] order: each vital with a LOINC
/// code it carries, the BP panel when it carries either pressure, and the NEWS2 total when it
/// carries a vital only NEWS2 uses (heart rate and temperature alone would make a misleadingly
/// low score). `findings` are the reading's stored anomalies; `patient_label` its device's;
/// `spo2_scale` the patient's NEWS2 SpO2 scale for it ([`spo2_scale_for`]).
pub fn reading_observations(
    reading: &ReadingRecord,
    findings: &[AnomalyRecord],
    patient_label: Option<&str>,
    spo2_scale: Spo2Scale,
) -> Vec<Value> {
    let common = Common {
        reading,
        patient_label,
        spo2_scale,
    };
    let mut out = Vec::new();
    for part in Part::all() {
        if let Some(observation) = part_observation(&common, part, findings) {
            out.push(observation);
        }
    }
    out
}

/// The Observation of one part of a reading, if the reading has it.
pub fn observation(
    reading: &ReadingRecord,
    part: Part,
    findings: &[AnomalyRecord],
    patient_label: Option<&str>,
    spo2_scale: Spo2Scale,
) -> Option<Value> {
    let common = Common {
        reading,
        patient_label,
        spo2_scale,
    };
    part_observation(&common, part, findings)
}

fn part_observation(common: &Common<'_>, part: Part, findings: &[AnomalyRecord]) -> Option<Value> {
    let reading = common.reading;
    match part {
        Part::Vital(vital) => {
            let value = vital_value(reading, vital)?;
            let mut out = common.observation(part, "vital-signs", vital.info().label);
            out.insert("valueQuantity".into(), quantity(vital, value));
            if let Some(interpretation) = interpretation(vital, findings) {
                out.insert("interpretation".into(), interpretation);
            }
            Some(Value::Object(out))
        }
        Part::BloodPressure => {
            let values = BP_COMPONENTS.map(|vital| vital_value(reading, vital));
            if values.iter().all(Option::is_none) {
                return None;
            }
            let mut out = common.observation(part, "vital-signs", "Blood pressure panel");
            let components: Vec<Value> = BP_COMPONENTS
                .iter()
                .zip(values)
                .map(|(vital, value)| {
                    let info = vital.info();
                    let codings: Vec<(&str, &str)> =
                        info.loinc.into_iter().map(|code| (LOINC, code)).collect();
                    let mut component = serde_json::Map::new();
                    component.insert("code".into(), codeable(&codings, info.label));
                    match value {
                        Some(value) => {
                            component.insert("valueQuantity".into(), quantity(*vital, value));
                        }
                        None => {
                            component.insert("dataAbsentReason".into(), not_performed());
                        }
                    }
                    Value::Object(component)
                })
                .collect();
            out.insert("component".into(), json!(components));
            Some(Value::Object(out))
        }
        Part::News2 => news2_observation(common),
    }
}

fn not_performed() -> Value {
    json!({ "coding": [{ "system": DATA_ABSENT, "code": "not-performed" }] })
}

/// A stored reading's numeric vital.
pub fn vital_value(reading: &ReadingRecord, vital: VitalKey) -> Option<f64> {
    match vital {
        VitalKey::HeartRate => reading.heart_rate,
        VitalKey::BodyTemp => reading.body_temp,
        VitalKey::SignalStrength => reading.signal_strength,
        VitalKey::BatteryLevel => reading.battery_level,
        VitalKey::Spo2 => reading.spo2,
        VitalKey::RespiratoryRate => reading.respiratory_rate,
        VitalKey::SystolicBp => reading.systolic_bp,
        VitalKey::DiastolicBp => reading.diastolic_bp,
        VitalKey::Consciousness | VitalKey::OnOxygen => None,
    }
}

fn risk_code(risk: ClinicalRisk) -> &'static str {
    match risk {
        ClinicalRisk::Low => "low",
        ClinicalRisk::LowMedium => "low_medium",
        ClinicalRisk::Medium => "medium",
        ClinicalRisk::High => "high",
    }
}

/// The SpO2 scale a reading is scored on: the patient's thresholds record when it was in force
/// at the reading's arrival (`effective_from` ≤ `received_at`), as the pipeline applied it;
/// Scale 1 otherwise (no record, a record from later, or a time that does not parse). The
/// store keeps a device's current record only (earlier ones are in the audit trail), so a
/// reading from before the latest change is scored on Scale 1.
pub fn spo2_scale_for(reading: &ReadingRecord, thresholds: Option<&ThresholdsRecord>) -> Spo2Scale {
    let Some(record) = thresholds.filter(|record| record.device_id == reading.device_id) else {
        return Spo2Scale::Scale1;
    };
    match (
        Timestamp::parse_text(&record.effective_from),
        Timestamp::parse_text(&reading.received_at),
    ) {
        (Some(from), Some(received)) if from <= received => record.thresholds.scale(),
        _ => Spo2Scale::Scale1,
    }
}

fn scale_text(scale: Spo2Scale) -> &'static str {
    match scale {
        Spo2Scale::Scale1 => "NEWS2 SpO2 Scale 1",
        Spo2Scale::Scale2 => {
            "NEWS2 SpO2 Scale 2 (hypercapnic respiratory failure, prescribed target 88-92 %)"
        }
    }
}

/// The NEWS2 total of one reading on the patient's SpO2 scale (`method`): the total as a
/// `{score}` quantity (`>=` when parameters are missing: a partial total is a lower bound),
/// one component per parameter (its subscore, or `dataAbsentReason` when missing), the risk
/// as interpretation, and `derivedFrom` the reading's vital-sign Observations.
fn news2_observation(common: &Common<'_>) -> Option<Value> {
    let reading = common.reading;
    let score = reading.news2(common.spo2_scale)?;
    let mut out = common.observation(Part::News2, "survey", "NEWS2 total score");
    out.insert(
        "method".into(),
        codeable(
            &[(SYSTEM_NEWS2_SPO2_SCALE, score.scale.as_str())],
            scale_text(score.scale),
        ),
    );
    let mut total = json!({
        "value": score.total, "unit": "score", "system": UCUM, "code": "{score}",
    });
    if score.partial {
        total["comparator"] = json!(">=");
    }
    out.insert("valueQuantity".into(), total);
    out.insert(
        "interpretation".into(),
        json!([codeable(
            &[(SYSTEM_NEWS2_RISK, risk_code(score.risk))],
            &format!(
                "NEWS2 clinical risk: {}",
                risk_code(score.risk).replace('_', "-")
            ),
        )]),
    );
    let components: Vec<Value> = Parameter::ALL
        .iter()
        .map(|parameter| {
            let text = format!("NEWS2 {} subscore", parameter.as_str().replace('_', " "));
            let mut component = serde_json::Map::new();
            component.insert(
                "code".into(),
                codeable(&[(SYSTEM_NEWS2_PARAMETER, parameter.as_str())], &text),
            );
            match score.subscores.get(*parameter) {
                Some(points) => component.insert("valueInteger".into(), json!(points)),
                None => component.insert("dataAbsentReason".into(), not_performed()),
            };
            Value::Object(component)
        })
        .collect();
    out.insert("component".into(), json!(components));
    let derived: Vec<Value> = Part::all()
        .into_iter()
        .filter(|part| *part != Part::News2)
        .filter(|part| part_observation(common, *part, &[]).is_some())
        .map(|part| {
            let id = ObservationId {
                reading_id: reading.id,
                part,
            };
            json!({ "reference": format!("Observation/{id}") })
        })
        .collect();
    if !derived.is_empty() {
        out.insert("derivedFrom".into(), json!(derived));
    }
    Some(Value::Object(out))
}

/// A registered device.
pub fn device(record: &DeviceRecord) -> Value {
    let mut out = json!({
        "resourceType": "Device",
        "id": device_resource_id(&record.device_id),
        "identifier": [{ "system": SYSTEM_DEVICE_ID, "value": record.device_id }],
        "status": if record.status == "active" { "active" } else { "inactive" },
        "deviceName": [{ "name": record.device_id, "type": "user-friendly-name" }],
    });
    if let Some(label) = &record.patient_label {
        out["patient"] = json!({ "reference": format!("Patient/{}", patient_resource_id(label)) });
    }
    if let Some(location) = &record.location {
        out["note"] = json!([{ "text": format!("location: {location}") }]);
    }
    out
}

/// The patient a label names: its identifier and nothing more (the registry has no
/// demographics, and none are invented).
pub fn patient(label: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "id": patient_resource_id(label),
        "identifier": [{ "system": SYSTEM_PATIENT_LABEL, "value": label }],
        "active": true,
    })
}

/// An alert as a Flag: active while open, inactive once resolved; its IEC 60601-1-8
/// priority in the R4 `flag-priority` extension (PH/PM/PL); its condition as the code.
pub fn flag(record: &AlertRecord, patient_label: Option<&str>) -> Value {
    let alert = &record.alert;
    let device_id = alert.device_id.as_str();
    let (priority_code, priority_text) = match alert.priority {
        Priority::High => ("PH", "High priority"),
        Priority::Medium => ("PM", "Medium priority"),
        Priority::Low => ("PL", "Low priority"),
    };
    let category = match alert.class {
        AlertClass::Physiological => "clinical",
        AlertClass::Technical => "safety",
    };
    let status = match alert.state {
        AlertState::Active | AlertState::Acknowledged => "active",
        AlertState::Resolved => "inactive",
    };
    let mut period = json!({ "start": alert.opened_at.to_rfc3339() });
    if let Some(end) = alert.resolved_at {
        period["end"] = json!(end.to_rfc3339());
    }
    let condition = alert.condition.as_str();
    json!({
        "resourceType": "Flag",
        "id": alert.id.to_string(),
        "extension": [{
            "url": FLAG_PRIORITY_EXT,
            "valueCodeableConcept": codeable(&[(FLAG_PRIORITY_CODES, priority_code)], priority_text),
        }],
        "status": status,
        "category": [{ "coding": [{ "system": FLAG_CATEGORY, "code": category }] }],
        "code": codeable(
            &[(SYSTEM_ALERT_CONDITION, condition)],
            &format!("{condition} ({} priority, {})", alert.priority.as_str(), alert_state_str(alert.state)),
        ),
        "subject": subject(device_id, patient_label),
        "period": period,
        "author": device_reference(device_id),
    })
}

/// An `OperationOutcome` with one issue; `code` is from FHIR's issue-type value set
/// (`invalid`, `not-found`, `not-supported`, `exception`, …).
pub fn operation_outcome(severity: &str, code: &str, diagnostics: &str) -> Value {
    json!({
        "resourceType": "OperationOutcome",
        "issue": [{ "severity": severity, "code": code, "diagnostics": diagnostics }],
    })
}

/// A `searchset` Bundle of `resources`, with its `self` link and, when there is more, `next`
/// (links relative to the server, as the request named it: the server may sit behind a proxy
/// that knows its public address better than it does).
pub fn searchset(resources: Vec<Value>, self_url: &str, next_url: Option<&str>) -> Value {
    let mut links = vec![json!({ "relation": "self", "url": self_url })];
    if let Some(next) = next_url {
        links.push(json!({ "relation": "next", "url": next }));
    }
    let entries: Vec<Value> = resources
        .into_iter()
        .map(|resource| json!({ "resource": resource, "search": { "mode": "match" } }))
        .collect();
    json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "link": links,
        "entry": entries,
    })
}

#[cfg(test)]
mod tests;
