use super::*;
use vitalwatch_core::telemetry::VITALS;

fn reading() -> ReadingRecord {
    ReadingRecord {
        id: 7,
        device_id: "bed_1:a".to_owned(),
        timestamp: "2026-01-01T00:00:00.000000Z".to_owned(),
        timestamp_from_device: true,
        received_at: "2026-01-01T00:00:00.100000Z".to_owned(),
        heart_rate: Some(120.0),
        body_temp: Some(36.8),
        signal_strength: Some(-55.0),
        battery_level: Some(90.0),
        spo2: Some(95.0),
        respiratory_rate: Some(22.0),
        systolic_bp: Some(105.0),
        diastolic_bp: None,
        consciousness: Some("A".to_owned()),
        on_oxygen: None,
        seq: None,
        extra: None,
        ml_score: None,
        source: "http".to_owned(),
    }
}

fn finding(kind: AnomalyType, severity: Severity, value: f64, threshold: f64) -> AnomalyRecord {
    AnomalyRecord {
        id: 1,
        device_id: "bed_1:a".to_owned(),
        reading_id: Some(7),
        kind,
        severity,
        value: Some(value),
        threshold: Some(threshold),
        detected_at: "2026-01-01T00:00:00.100000Z".to_owned(),
        details: "heart_rate 120 above 100".to_owned(),
    }
}

fn by_id<'a>(observations: &'a [Value], suffix: &str) -> &'a Value {
    observations
        .iter()
        .find(|o| o["id"] == format!("7-{suffix}"))
        .unwrap_or_else(|| panic!("no 7-{suffix} in {observations:?}"))
}

#[test]
fn every_vital_with_a_loinc_code_is_an_observation_with_the_tables_code_and_unit() {
    let observations = reading_observations(&reading(), &[], None, Spo2Scale::Scale1);
    let ids: Vec<&str> = observations
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "7-heart-rate",
            "7-body-temp",
            "7-spo2",
            "7-respiratory-rate",
            "7-bp",
            "7-news2"
        ]
    );
    for info in VITALS.iter().filter(|i| i.loinc.is_some()) {
        if BP_COMPONENTS.contains(&info.vital) {
            continue;
        }
        let o = by_id(&observations, &info.key.replace('_', "-"));
        assert_eq!(o["code"]["coding"][0]["system"], LOINC);
        assert_eq!(o["code"]["coding"][0]["code"], info.loinc.unwrap());
        assert_eq!(o["valueQuantity"]["code"], info.ucum.unwrap());
        assert_eq!(o["valueQuantity"]["system"], UCUM);
        assert_eq!(o["category"][0]["coding"][0]["code"], "vital-signs");
        assert_eq!(o["effectiveDateTime"], "2026-01-01T00:00:00.000000Z");
        assert_eq!(o["subject"]["reference"], "Device/bed.u1.ca");
        assert_eq!(o["device"]["reference"], "Device/bed.u1.ca");
    }
    let spo2 = by_id(&observations, "spo2");
    assert_eq!(spo2["code"]["coding"][1]["code"], "59408-5");
    // No Observation for battery, RSSI, ACVPU or the oxygen flag.
    assert!(
        !ids.iter()
            .any(|id| id.contains("battery") || id.contains("signal"))
    );
}

#[test]
fn the_bp_panel_has_both_components_and_says_which_is_absent() {
    let observations = reading_observations(&reading(), &[], None, Spo2Scale::Scale1);
    let bp = by_id(&observations, "bp");
    assert_eq!(bp["code"]["coding"][0]["code"], BP_PANEL_LOINC);
    assert!(bp.get("valueQuantity").is_none());
    assert_eq!(bp["component"][0]["code"]["coding"][0]["code"], "8480-6");
    assert_eq!(bp["component"][0]["valueQuantity"]["code"], "mm[Hg]");
    assert_eq!(bp["component"][0]["valueQuantity"]["value"], 105.0);
    assert_eq!(bp["component"][1]["code"]["coding"][0]["code"], "8462-4");
    assert_eq!(
        bp["component"][1]["dataAbsentReason"]["coding"][0]["code"],
        "not-performed"
    );
    let mut without = reading();
    without.systolic_bp = None;
    let observations = reading_observations(&without, &[], None, Spo2Scale::Scale1);
    assert!(observations.iter().all(|o| o["id"] != "7-bp"));
}

fn thresholds(device_id: &str, scale: Spo2Scale, effective_from: &str) -> ThresholdsRecord {
    ThresholdsRecord {
        device_id: device_id.to_owned(),
        thresholds: vitalwatch_core::rules::PatientThresholds {
            spo2_scale: Some(scale),
            spo2_min: Some(88.0),
            ..Default::default()
        },
        author: "dr.b".to_owned(),
        reason: "COPD, type 2 RF".to_owned(),
        effective_from: effective_from.to_owned(),
        updated_at: effective_from.to_owned(),
    }
}

#[test]
fn the_spo2_scale_is_the_patients_record_in_force_when_the_reading_arrived() {
    let reading = reading();
    let check = |record: Option<ThresholdsRecord>, expected: Spo2Scale| {
        assert_eq!(
            spo2_scale_for(&reading, record.as_ref()),
            expected,
            "{record:?}"
        );
    };
    check(None, Spo2Scale::Scale1);
    // In force from before the reading was received (2026-01-01T00:00:00.1Z), and exactly then.
    check(
        Some(thresholds(
            "bed_1:a",
            Spo2Scale::Scale2,
            "2025-12-31T08:00:00Z",
        )),
        Spo2Scale::Scale2,
    );
    check(
        Some(thresholds(
            "bed_1:a",
            Spo2Scale::Scale2,
            "2026-01-01T00:00:00.100000Z",
        )),
        Spo2Scale::Scale2,
    );
    // Set after the reading arrived: the pipeline scored it on Scale 1, so does FHIR.
    check(
        Some(thresholds(
            "bed_1:a",
            Spo2Scale::Scale2,
            "2026-01-01T00:00:01Z",
        )),
        Spo2Scale::Scale1,
    );
    // Another device's record, or a time that is not one, never applies.
    check(
        Some(thresholds(
            "bed_2",
            Spo2Scale::Scale2,
            "2025-12-31T08:00:00Z",
        )),
        Spo2Scale::Scale1,
    );
    check(
        Some(thresholds("bed_1:a", Spo2Scale::Scale2, "yesterday")),
        Spo2Scale::Scale1,
    );
}

#[test]
fn news2_is_scored_on_the_patients_scale_and_says_which() {
    // SpO2 88 % on air: Scale 1 scores 3, Scale 2 (target 88-92 %) scores 0.
    let copd = ReadingRecord {
        spo2: Some(88.0),
        on_oxygen: Some(false),
        ..reading()
    };
    let news2 = |scale| by_id(&reading_observations(&copd, &[], None, scale), "news2").clone();
    let spo2_points = |news2: &Value| {
        news2["component"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["code"]["coding"][0]["code"] == "spo2")
            .unwrap()["valueInteger"]
            .clone()
    };
    let scale1 = news2(Spo2Scale::Scale1);
    let scale2 = news2(Spo2Scale::Scale2);
    assert_eq!(spo2_points(&scale1), 3);
    assert_eq!(spo2_points(&scale2), 0);
    // RR 22 → 2, SBP 105 → 1, pulse 120 → 2, air → 0, A → 0, 36.8 → 0: 5 + SpO2.
    assert_eq!(scale1["valueQuantity"]["value"], 8);
    assert_eq!(scale2["valueQuantity"]["value"], 5);
    assert_eq!(
        scale1["method"]["coding"][0]["system"],
        SYSTEM_NEWS2_SPO2_SCALE
    );
    assert_eq!(scale1["method"]["coding"][0]["code"], "scale1");
    assert_eq!(scale2["method"]["coding"][0]["code"], "scale2");
    assert!(
        scale2["method"]["text"]
            .as_str()
            .unwrap()
            .contains("Scale 2"),
        "{}",
        scale2["method"]
    );
}

#[test]
fn news2_carries_subscores_a_lower_bound_when_partial_and_its_sources() {
    let observations = reading_observations(&reading(), &[], Some("Jane"), Spo2Scale::Scale1);
    let news2 = by_id(&observations, "news2");
    assert_eq!(news2["code"]["coding"][0]["system"], SNOMED);
    assert_eq!(news2["code"]["coding"][0]["code"], NEWS2_SNOMED);
    // RR 22 → 2, SpO2 95 → 1, SBP 105 → 1, pulse 120 → 2, A → 0, 36.8 → 0; air/O2 missing.
    assert_eq!(news2["valueQuantity"]["value"], 6);
    assert_eq!(news2["valueQuantity"]["comparator"], ">=");
    let component = |name: &str| {
        news2["component"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["code"]["coding"][0]["code"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(component("pulse")["valueInteger"], 2);
    assert_eq!(component("respiration_rate")["valueInteger"], 2);
    assert!(component("air_or_oxygen")["dataAbsentReason"].is_object());
    assert_eq!(news2["interpretation"][0]["coding"][0]["code"], "medium");
    let derived: Vec<&str> = news2["derivedFrom"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reference"].as_str().unwrap())
        .collect();
    assert!(derived.contains(&"Observation/7-heart-rate"), "{derived:?}");
    assert!(derived.contains(&"Observation/7-bp"), "{derived:?}");
    let expected = format!("Patient/{}", patient_resource_id("Jane"));
    assert_eq!(news2["subject"]["reference"], expected);
    // Heart rate and temperature alone: no NEWS2.
    let mut seed = reading();
    (
        seed.spo2,
        seed.respiratory_rate,
        seed.systolic_bp,
        seed.consciousness,
    ) = (None, None, None, None);
    assert!(
        reading_observations(&seed, &[], None, Spo2Scale::Scale1)
            .iter()
            .all(|o| o["id"] != "7-news2")
    );
}

#[test]
fn interpretation_follows_the_stored_findings() {
    let check = |severity, value, threshold, code: &str| {
        let found = [finding(
            AnomalyType::OutOfRangeHr,
            severity,
            value,
            threshold,
        )];
        let observations = reading_observations(&reading(), &found, None, Spo2Scale::Scale1);
        let hr = by_id(&observations, "heart-rate");
        assert_eq!(hr["interpretation"][0]["coding"][0]["code"], code);
        assert!(
            by_id(&observations, "body-temp")
                .get("interpretation")
                .is_none()
        );
    };
    check(Severity::Critical, 120.0, 100.0, "HH");
    check(Severity::Warning, 120.0, 100.0, "H");
    check(Severity::Critical, 50.0, 60.0, "LL");
    check(Severity::Warning, 50.0, 60.0, "L");
}

#[test]
fn ids_round_trip() {
    for device in ["bed-1", "WARD_1", "a.b:c_d-e", "x..y"] {
        let id = device_resource_id(device);
        assert!(
            id.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        );
        assert_eq!(device_id_of_resource(&id).as_deref(), Some(device));
    }
    assert_eq!(device_resource_id("bed-1"), "bed-1");
    assert_eq!(device_id_of_resource("a.x"), None);
    assert_eq!(device_id_of_resource("a_b"), None);
    for part in Part::all() {
        let id = ObservationId {
            reading_id: 42,
            part,
        };
        assert_eq!(ObservationId::parse(&id.to_string()), Some(id));
    }
    assert_eq!(ObservationId::parse("42-battery-level"), None);
    assert_eq!(ObservationId::parse("0-bp"), None);
    let patient = patient_resource_id("Jane Doe");
    assert!(patient.starts_with("p-") && patient.len() == 34 && !patient.contains("Jane"));
}

#[test]
fn devices_and_patients_invent_nothing() {
    let record = DeviceRecord {
        device_id: "bed_1".to_owned(),
        patient_label: Some("Jane".to_owned()),
        location: None,
        expected_interval_s: 60.0,
        status: "inactive".to_owned(),
        registered_at: String::new(),
        registered_by: String::new(),
        updated_at: String::new(),
        last_seen: None,
        total_readings: 0,
    };
    let device = device(&record);
    assert_eq!(device["id"], "bed.u1");
    assert_eq!(device["status"], "inactive");
    assert_eq!(device["identifier"][0]["value"], "bed_1");
    let patient = patient("Jane");
    assert_eq!(
        device["patient"]["reference"],
        format!("Patient/{}", patient["id"].as_str().unwrap())
    );
    assert_eq!(patient.as_object().unwrap().len(), 4, "{patient}");
    assert!(patient.get("name").is_none() && patient.get("birthDate").is_none());
}
