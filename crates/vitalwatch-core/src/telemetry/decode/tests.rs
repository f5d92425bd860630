use super::*;
use crate::telemetry::VitalKey;
use proptest::prelude::*;

const NOW: Timestamp = Timestamp::from_micros(1_705_401_045_000_000); // 2024-01-16T10:30:45Z

fn decode_str(payload: &str) -> Result<Reading, Rejection> {
    decode(payload.as_bytes(), NOW, &Limits::default())
}

/// Asserts the payload is refused with `reason` (and `field`, when given).
fn check_rejected(payload: &str, reason: RejectReason, field: Option<Field>) {
    let shown: String = payload.chars().take(80).collect();
    let res = decode_str(payload);
    let rejection = res.expect_err(&format!("{shown:?} should be rejected"));
    assert_eq!(rejection.reason, reason, "reason for {shown:?}");
    if field.is_some() {
        assert_eq!(rejection.field, field, "field for {shown:?}");
    }
}

#[test]
fn seed_example_payload() {
    let reading = decode_str(
        r#"{"device_id":"ESP32_001","timestamp":"2024-01-16T10:30:45.123456","heart_rate":72,"body_temp":36.8,"signal_strength":-75,"battery_level":85}"#,
    )
    .unwrap();
    assert_eq!(reading.device_id.as_str(), "ESP32_001");
    assert_eq!(
        reading.timestamp.to_rfc3339(),
        "2024-01-16T10:30:45.123456Z"
    );
    assert!(reading.timestamp_from_device);
    assert_eq!(reading.received_at, NOW);
    assert_eq!(reading.heart_rate_bpm, Some(72.0));
    assert_eq!(reading.body_temp_c, Some(36.8));
    assert_eq!(reading.signal_strength_dbm, Some(-75.0));
    assert_eq!(reading.battery_pct, Some(85.0));
    assert!(reading.missing_seed_fields().is_empty());
    assert_eq!(reading.extra, None);
}

#[test]
fn seed_curl_payload_without_timestamp_uses_receive_time() {
    let reading = decode_str(
        r#"{"device_id":"TEST_001","heart_rate":75,"body_temp":36.8,"signal_strength":-55,"battery_level":90}"#,
    )
    .unwrap();
    assert_eq!(reading.timestamp, NOW);
    assert!(!reading.timestamp_from_device);
}

#[test]
fn extended_vitals_and_unknown_fields() {
    let reading = decode_str(
        r#"{"device_id":"bed-7","spo2":94,"respiratory_rate":22,"systolic_bp":101,"diastolic_bp":60,
            "consciousness":"c","on_oxygen":true,"seq":42,"firmware":"1.2.3","nested":{"a":[1,2]}}"#,
    )
    .unwrap();
    assert_eq!(reading.spo2_pct, Some(94.0));
    assert_eq!(reading.respiratory_rate_per_min, Some(22.0));
    assert_eq!(reading.systolic_bp_mmhg, Some(101.0));
    assert_eq!(reading.diastolic_bp_mmhg, Some(60.0));
    assert_eq!(reading.consciousness, Some(Consciousness::Confusion));
    assert_eq!(reading.on_oxygen, Some(true));
    assert_eq!(reading.seq, Some(42));
    let extra: serde_json::Value = serde_json::from_str(reading.extra.as_deref().unwrap()).unwrap();
    assert_eq!(extra["firmware"], "1.2.3");
    assert_eq!(extra["nested"]["a"][1], 2);
    let missing = reading.missing_seed_fields();
    assert_eq!(
        missing.names(),
        "heart_rate, body_temp, signal_strength, battery_level"
    );
}

#[test]
fn null_vitals_count_as_missing() {
    let reading = decode_str(r#"{"device_id":"d1","heart_rate":null,"body_temp":36.6}"#).unwrap();
    assert_eq!(reading.heart_rate_bpm, None);
    assert!(
        reading
            .missing_seed_fields()
            .contains(Field::Vital(VitalKey::HeartRate))
    );
    assert!(
        !reading
            .missing_seed_fields()
            .contains(Field::Vital(VitalKey::BodyTemp))
    );
}

#[test]
fn timestamp_spellings() {
    let secs = decode_str(r#"{"device_id":"d","timestamp":1705401045}"#).unwrap();
    let millis = decode_str(r#"{"device_id":"d","timestamp":1705401045000}"#).unwrap();
    let zoned = decode_str(r#"{"device_id":"d","timestamp":"2024-01-16T11:30:45+01:00"}"#).unwrap();
    assert_eq!(secs.timestamp, NOW);
    assert_eq!(millis.timestamp, NOW);
    assert_eq!(zoned.timestamp, NOW);
}

#[test]
fn hostile_payloads_have_precise_reasons() {
    use Field as F;
    use RejectReason as R;
    let cases: &[(&str, R, Option<F>)] = &[
        ("", R::MalformedJson, None),
        ("{", R::MalformedJson, None),
        ("{\"device_id\":\"a\",}", R::MalformedJson, None),
        ("{\"device_id\":\"a\"} trailing", R::MalformedJson, None),
        ("null", R::NotAnObject, None),
        ("42", R::NotAnObject, None),
        ("\"text\"", R::NotAnObject, None),
        ("[]", R::NotAnObject, None),
        ("{}", R::MissingDeviceId, Some(F::DeviceId)),
        (
            r#"{"heart_rate":70}"#,
            R::MissingDeviceId,
            Some(F::DeviceId),
        ),
        (r#"{"device_id":""}"#, R::InvalidDeviceId, Some(F::DeviceId)),
        (
            r#"{"device_id":"a b"}"#,
            R::InvalidDeviceId,
            Some(F::DeviceId),
        ),
        (
            r#"{"device_id":"a/b"}"#,
            R::InvalidDeviceId,
            Some(F::DeviceId),
        ),
        (
            r#"{"device_id":"a\u0000"}"#,
            R::InvalidDeviceId,
            Some(F::DeviceId),
        ),
        (
            r#"{"device_id":"é"}"#,
            R::InvalidDeviceId,
            Some(F::DeviceId),
        ),
        (r#"{"device_id":42}"#, R::WrongType, Some(F::DeviceId)),
        (
            r#"{"device_id":"a","heart_rate":"72"}"#,
            R::WrongType,
            Some(F::Vital(VitalKey::HeartRate)),
        ),
        (
            r#"{"device_id":"a","heart_rate":true}"#,
            R::WrongType,
            Some(F::Vital(VitalKey::HeartRate)),
        ),
        (
            r#"{"device_id":"a","heart_rate":[72]}"#,
            R::WrongType,
            Some(F::Vital(VitalKey::HeartRate)),
        ),
        (
            r#"{"device_id":"a","heart_rate":{"v":72}}"#,
            R::WrongType,
            Some(F::Vital(VitalKey::HeartRate)),
        ),
        (
            r#"{"device_id":"a","heart_rate":"NaN"}"#,
            R::NonFinite,
            Some(F::Vital(VitalKey::HeartRate)),
        ),
        (
            r#"{"device_id":"a","body_temp":"Infinity"}"#,
            R::NonFinite,
            Some(F::Vital(VitalKey::BodyTemp)),
        ),
        (
            r#"{"device_id":"a","body_temp":"-inf"}"#,
            R::NonFinite,
            Some(F::Vital(VitalKey::BodyTemp)),
        ),
        (
            r#"{"device_id":"a","heart_rate":NaN}"#,
            R::MalformedJson,
            None,
        ),
        (
            r#"{"device_id":"a","heart_rate":1e309}"#,
            R::NumberOutOfRange,
            None,
        ),
        (
            r#"{"device_id":"a","heart_rate":10000}"#,
            R::OutOfBounds,
            Some(F::Vital(VitalKey::HeartRate)),
        ),
        (
            r#"{"device_id":"a","heart_rate":-1}"#,
            R::OutOfBounds,
            Some(F::Vital(VitalKey::HeartRate)),
        ),
        (
            r#"{"device_id":"a","battery_level":-5}"#,
            R::OutOfBounds,
            Some(F::Vital(VitalKey::BatteryLevel)),
        ),
        (
            r#"{"device_id":"a","battery_level":100.5}"#,
            R::OutOfBounds,
            Some(F::Vital(VitalKey::BatteryLevel)),
        ),
        (
            r#"{"device_id":"a","spo2":101}"#,
            R::OutOfBounds,
            Some(F::Vital(VitalKey::Spo2)),
        ),
        (
            r#"{"device_id":"a","signal_strength":-1000}"#,
            R::OutOfBounds,
            Some(F::Vital(VitalKey::SignalStrength)),
        ),
        (
            r#"{"device_id":"a","body_temp":1e300}"#,
            R::OutOfBounds,
            Some(F::Vital(VitalKey::BodyTemp)),
        ),
        (
            r#"{"device_id":"a","device_id":"b"}"#,
            R::DuplicateField,
            Some(F::DeviceId),
        ),
        (
            r#"{"device_id":"a","heart_rate":70,"heart_rate":200}"#,
            R::DuplicateField,
            Some(F::Vital(VitalKey::HeartRate)),
        ),
        (r#"{"device_id":"a","x":1,"x":2}"#, R::DuplicateField, None),
        (
            r#"{"device_id":"a","timestamp":"yesterday"}"#,
            R::InvalidTimestamp,
            Some(F::Timestamp),
        ),
        (
            r#"{"device_id":"a","timestamp":"1999-12-31T23:59:59"}"#,
            R::InvalidTimestamp,
            Some(F::Timestamp),
        ),
        (
            r#"{"device_id":"a","timestamp":-5}"#,
            R::InvalidTimestamp,
            Some(F::Timestamp),
        ),
        (
            r#"{"device_id":"a","timestamp":"2099-01-01T00:00:00Z"}"#,
            R::TimestampInFuture,
            Some(F::Timestamp),
        ),
        (
            r#"{"device_id":"a","timestamp":true}"#,
            R::WrongType,
            Some(F::Timestamp),
        ),
        (
            r#"{"device_id":"a","consciousness":"X"}"#,
            R::InvalidConsciousness,
            Some(F::Vital(VitalKey::Consciousness)),
        ),
        (
            r#"{"device_id":"a","consciousness":1}"#,
            R::WrongType,
            Some(F::Vital(VitalKey::Consciousness)),
        ),
        (
            r#"{"device_id":"a","on_oxygen":"yes"}"#,
            R::WrongType,
            Some(F::Vital(VitalKey::OnOxygen)),
        ),
        (
            r#"{"device_id":"a","on_oxygen":1}"#,
            R::WrongType,
            Some(F::Vital(VitalKey::OnOxygen)),
        ),
        (
            r#"{"device_id":"a","seq":-1}"#,
            R::OutOfBounds,
            Some(F::Seq),
        ),
        (r#"{"device_id":"a","seq":1.5}"#, R::WrongType, Some(F::Seq)),
        (r#"{"device_id":"a","seq":"1"}"#, R::WrongType, Some(F::Seq)),
    ];
    for (payload, reason, field) in cases {
        check_rejected(payload, *reason, *field);
    }
}

#[test]
fn size_depth_and_string_limits() {
    let huge_id = format!(r#"{{"device_id":"{}"}}"#, "a".repeat(65));
    check_rejected(
        &huge_id,
        RejectReason::InvalidDeviceId,
        Some(Field::DeviceId),
    );
    let ok_id = format!(r#"{{"device_id":"{}"}}"#, "a".repeat(64));
    assert!(decode_str(&ok_id).is_ok());

    let long_string = format!(r#"{{"device_id":"a","note":"{}"}}"#, "x".repeat(300));
    check_rejected(&long_string, RejectReason::StringTooLong, None);

    let too_big = format!(r#"{{"device_id":"a","note":"{}"}}"#, "x".repeat(5000));
    check_rejected(&too_big, RejectReason::PayloadTooLarge, None);

    let deep = format!("{}{}", "[".repeat(2000), "]".repeat(2000));
    check_rejected(&deep, RejectReason::TooDeep, None);
    let deeper = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    assert_eq!(
        decode_body(deeper.as_bytes(), NOW, &Limits::default())
            .unwrap_err()
            .reason,
        RejectReason::TooDeep
    );
    let deep_field = format!(
        r#"{{"device_id":"a","x":{}1{}}}"#,
        "[".repeat(20),
        "]".repeat(20)
    );
    check_rejected(&deep_field, RejectReason::TooDeep, None);
    // Brackets inside strings do not count as nesting.
    assert!(decode_str(r#"{"device_id":"a","note":"[[[[[[[[[[[[[["}"#).is_ok());

    let many_fields: String = (0..70).map(|i| format!(r#","f{i}":1"#)).collect();
    check_rejected(
        &format!(r#"{{"device_id":"a"{many_fields}}}"#),
        RejectReason::TooManyFields,
        None,
    );

    let invalid_utf8 = b"{\"device_id\":\"a\xff\"}";
    assert_eq!(
        decode(invalid_utf8, NOW, &Limits::default())
            .unwrap_err()
            .reason,
        RejectReason::InvalidUtf8
    );
}

#[test]
fn batches_reject_per_reading() {
    let body = br#"[{"device_id":"a","heart_rate":70},{"device_id":"b","heart_rate":"x"},7,{"device_id":"c"}]"#;
    let Decoded::Batch(items) = decode_body(body, NOW, &Limits::default()).unwrap() else {
        panic!("expected a batch");
    };
    assert_eq!(items.len(), 4);
    assert!(items[0].is_ok());
    assert_eq!(
        items[1].as_ref().unwrap_err().reason,
        RejectReason::WrongType
    );
    assert_eq!(
        items[2].as_ref().unwrap_err().reason,
        RejectReason::NotAnObject
    );
    assert!(items[3].is_ok());

    assert_eq!(
        decode_body(b"[]", NOW, &Limits::default())
            .unwrap_err()
            .reason,
        RejectReason::EmptyBatch
    );
    let limits = Limits {
        max_batch_len: 2,
        ..Limits::default()
    };
    assert_eq!(
        decode_body(
            br#"[{"device_id":"a"},{"device_id":"a"},{"device_id":"a"}]"#,
            NOW,
            &limits
        )
        .unwrap_err()
        .reason,
        RejectReason::BatchTooLarge
    );
    // A syntax error anywhere refuses the whole batch: nothing half-parsed is stored.
    assert_eq!(
        decode_body(
            br#"[{"device_id":"a"},{"device_id":}]"#,
            NOW,
            &Limits::default()
        )
        .unwrap_err()
        .reason,
        RejectReason::MalformedJson
    );
    assert!(matches!(
        decode_body(br#"{"device_id":"a"}"#, NOW, &Limits::default()).unwrap(),
        Decoded::One(Ok(_))
    ));
}

#[test]
fn every_rejection_has_a_detail_without_the_value() {
    let limits = Limits::default();
    for reason in RejectReason::ALL {
        for field in [
            None,
            Some(Field::Vital(VitalKey::HeartRate)),
            Some(Field::DeviceId),
        ] {
            let detail = Rejection { reason, field }.detail(&limits);
            assert!(!detail.is_empty());
        }
    }
    let detail = decode_str(r#"{"device_id":"a","heart_rate":10000}"#)
        .unwrap_err()
        .detail(&limits);
    assert_eq!(detail, "heart_rate must be between 0 and 400");
}

fn payload_strategy() -> impl Strategy<Value = String> {
    let number = prop_oneof![
        any::<f64>().prop_map(|v| format!("{v}")),
        any::<i64>().prop_map(|v| v.to_string()),
        Just("1e309".to_owned()),
        Just("\"NaN\"".to_owned()),
        Just("null".to_owned()),
        "[a-z]{0,5}".prop_map(|s| format!("\"{s}\"")),
    ];
    let key = prop_oneof![
        Just("device_id"),
        Just("heart_rate"),
        Just("body_temp"),
        Just("timestamp"),
        Just("seq"),
        Just("consciousness"),
        Just("on_oxygen"),
        Just("other"),
    ];
    proptest::collection::vec((key, number), 0..8).prop_map(|fields| {
        let body: Vec<String> = fields
            .into_iter()
            .map(|(k, v)| format!("\"{k}\":{v}"))
            .collect();
        format!("{{{}}}", body.join(","))
    })
}

proptest! {
    #[test]
    fn never_panics_on_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&bytes, NOW, &Limits::default());
        let _ = decode_body(&bytes, NOW, &Limits::default());
    }

    #[test]
    fn never_panics_on_json_shaped_input(payload in payload_strategy()) {
        let res = decode_str(&payload);
        if let Ok(reading) = res {
            for value in [reading.heart_rate_bpm, reading.body_temp_c].into_iter().flatten() {
                prop_assert!(value.is_finite());
            }
        }
    }

    #[test]
    fn valid_readings_round_trip(hr in 0.0f64..400.0, temp in -20.0f64..60.0, battery in 0.0f64..=100.0, seq in any::<u32>()) {
        let payload = serde_json::json!({
            "device_id": "dev-1", "heart_rate": hr, "body_temp": temp,
            "battery_level": battery, "seq": seq,
        })
        .to_string();
        let reading = decode_str(&payload).unwrap();
        prop_assert_eq!(reading.heart_rate_bpm, Some(hr));
        prop_assert_eq!(reading.body_temp_c, Some(temp));
        prop_assert_eq!(reading.battery_pct, Some(battery));
        prop_assert_eq!(reading.seq, Some(u64::from(seq)));
    }
}
