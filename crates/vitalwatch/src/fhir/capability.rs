//! The CapabilityStatement of `GET /fhir/metadata`: exactly what the read-only API supports —
//! its resources, interactions and search parameters (anything else is refused with 400) —
//! and the local code systems the resources use.

use super::{
    BP_PANEL_LOINC, FHIR_JSON, LOINC, NEWS2_SNOMED, Part, SNOMED, SYSTEM_ALERT_CONDITION,
    SYSTEM_DEVICE_ID, SYSTEM_NEWS2_PARAMETER, SYSTEM_NEWS2_RISK, SYSTEM_NEWS2_SPO2_SCALE,
    SYSTEM_PATIENT_LABEL,
};
use serde_json::{Value, json};

/// The search parameters of each resource type: (name, FHIR type, what it does).
pub const OBSERVATION_PARAMS: &[(&str, &str, &str)] = &[
    (
        "subject",
        "reference",
        "Device/{id} (the device's readings) or Patient/{id} (the readings of every device with that patient label)",
    ),
    (
        "patient",
        "reference",
        "Patient/{id} or {id}: as subject=Patient/{id}",
    ),
    (
        "device",
        "reference",
        "Device/{id} or {id}: as subject=Device/{id}",
    ),
    (
        "code",
        "token",
        "[system|]code, comma-separated for any of several: the LOINC codes of the vitals, the BP panel 85354-9, NEWS2 (SNOMED 1104051000000101)",
    ),
    (
        "date",
        "date",
        "ge, le, gt or lt and a date or date-time of the device timestamp; given at most once per prefix",
    ),
];
pub const DEVICE_PARAMS: &[(&str, &str, &str)] = &[
    ("_id", "token", "the resource id"),
    (
        "identifier",
        "token",
        "[urn:vitalwatch:device-id|]device id",
    ),
    ("patient", "reference", "Patient/{id} or {id}"),
    ("status", "token", "active or inactive"),
];
pub const PATIENT_PARAMS: &[(&str, &str, &str)] = &[
    ("_id", "token", "the resource id"),
    (
        "identifier",
        "token",
        "[urn:vitalwatch:patient-label|]label",
    ),
];
pub const FLAG_PARAMS: &[(&str, &str, &str)] = &[
    ("subject", "reference", "Device/{id} or Patient/{id}"),
    ("patient", "reference", "Patient/{id} or {id}"),
    (
        "status",
        "token",
        "active (open alerts) or inactive (resolved)",
    ),
    (
        "date",
        "date",
        "ge and a date-time: alerts open then or opened after",
    ),
];
fn params(list: &[(&str, &str, &str)]) -> Value {
    let mut out: Vec<Value> = list
        .iter()
        .map(|(name, kind, doc)| json!({ "name": name, "type": kind, "documentation": doc }))
        .collect();
    out.push(json!({
        "name": "_count", "type": "number",
        "documentation": "entries per page, 1 to 1000 (default 50); pages follow the Bundle's next link",
    }));
    json!(out)
}

fn resource(kind: &str, search: Option<&[(&str, &str, &str)]>, doc: &str) -> Value {
    let mut interactions = vec![json!({ "code": "read" })];
    if search.is_some() {
        interactions.push(json!({ "code": "search-type" }));
    }
    let mut out = json!({
        "type": kind,
        "interaction": interactions,
        "documentation": doc,
    });
    if let Some(search) = search {
        out["searchParam"] = params(search);
    }
    out
}

/// The statement; `software_version` is the binary's.
pub fn statement(software_version: &str, date: &str) -> Value {
    let codes: Vec<String> = Part::all()
        .into_iter()
        .flat_map(|part| part.codings())
        .map(|(system, code)| format!("{system}|{code}"))
        .collect();
    let mut observation = resource(
        "Observation",
        Some(OBSERVATION_PARAMS),
        &format!(
            "Vital signs (R4 vital-signs category; LOINC codes {}) from each stored reading, a blood \
             pressure panel ({LOINC}|{BP_PANEL_LOINC}) with systolic/diastolic components, and a \
             NEWS2 total ({SNOMED}|{NEWS2_SNOMED}, category survey) whose components are the \
             per-parameter subscores coded in {SYSTEM_NEWS2_PARAMETER} and whose interpretation is \
             the clinical risk coded in {SYSTEM_NEWS2_RISK}, scored on the patient's SpO2 scale \
             (the method, coded in {SYSTEM_NEWS2_SPO2_SCALE}); a partial NEWS2 total (missing \
             parameters) has comparator >=. Interpretation H/L/HH/LL comes from the reading's \
             stored findings (WARNING = H/L, CRITICAL = HH/LL). Ids are <reading id>-<part>. \
             Search results are newest stored reading first (_sort=-date only).",
            codes.join(", ")
        ),
    );
    observation["searchParam"]
        .as_array_mut()
        .expect("params() is an array")
        .push(json!({
            "name": "_sort", "type": "string",
            "documentation": "-date only (the default order)",
        }));
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": date,
        "kind": "instance",
        "software": { "name": "VitalWatch", "version": software_version },
        "implementation": {
            "description": "VitalWatch read-only FHIR R4 API: remote-monitoring vital signs, NEWS2 and alerts",
        },
        "fhirVersion": "4.0.1",
        "format": [FHIR_JSON, "json"],
        "rest": [{
            "mode": "server",
            "documentation": format!(
                "Read-only. Authentication as the VitalWatch API (Bearer token or dashboard session; viewer, \
                 clinician or admin); every read is audited as phi.read. Search parameters not listed are \
                 refused with 400 and an OperationOutcome. Local code systems: {SYSTEM_DEVICE_ID} (device ids), \
                 {SYSTEM_PATIENT_LABEL} (patient labels of the device registry), {SYSTEM_NEWS2_PARAMETER} \
                 (respiration_rate, spo2, air_or_oxygen, systolic_bp, pulse, consciousness, temperature), \
                 {SYSTEM_NEWS2_RISK} (low, low_medium, medium, high), {SYSTEM_NEWS2_SPO2_SCALE} (scale1, \
                 scale2), {SYSTEM_ALERT_CONDITION} (alert \
                 conditions such as HEART_RATE_HIGH)."
            ),
            "security": { "description": "Authorization: Bearer vw_… or a dashboard session cookie" },
            "resource": [
                observation,
                resource("Device", Some(DEVICE_PARAMS), "One per registered device; patient when the device has a patient label."),
                resource("Patient", Some(PATIENT_PARAMS), "One per distinct patient label of the device registry: an identifier only, no demographics. Ids are p-<hash of the label>."),
                resource("Flag", Some(FLAG_PARAMS), "One per alert: status active while open, inactive once resolved; priority in the flag-priority extension (PH/PM/PL); code from urn:vitalwatch:alert-condition."),
            ],
        }],
    })
}
