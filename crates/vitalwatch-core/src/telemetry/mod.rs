//! Readings: the [`Reading`] type, its identifiers and units, and the payload decoder.
//!
//! A reading arrives as the seed's JSON payload (`device_id`, `timestamp`, `heart_rate`,
//! `body_temp`, `signal_strength`, `battery_level`) plus optional extended vitals. The
//! decoder ([`decode`]) turns bytes into a [`Reading`] or a [`Rejection`] with a precise,
//! stable reason; it never panics on any byte string.
//!
//! This module must not know where bytes come from (MQTT, HTTP, a file) nor where readings go.

mod decode;
mod limits;
mod time;

pub use decode::{Decoded, decode, decode_body};
pub use limits::{Bounds, Limits};
pub use time::Timestamp;

use std::fmt;

/// A device identifier: 1 to 64 characters of `[A-Za-z0-9_.:-]` (the maximum is configurable
/// through [`Limits::max_device_id_len`]).
///
/// The charset keeps ids safe to use in MQTT topics, file names, log fields and URLs.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct DeviceId(String);

impl DeviceId {
    /// Validates `raw` against the charset and `max_len`.
    pub fn parse(raw: &str, max_len: usize) -> Result<DeviceId, RejectReason> {
        if raw.is_empty() || raw.len() > max_len {
            return Err(RejectReason::InvalidDeviceId);
        }
        if !raw.bytes().all(is_device_id_byte) {
            return Err(RejectReason::InvalidDeviceId);
        }
        Ok(DeviceId(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_device_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-')
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Level of consciousness on the ACVPU scale used by NEWS2 (RCP 2017).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Consciousness {
    /// A: alert.
    Alert,
    /// C: new confusion.
    Confusion,
    /// V: responds to voice.
    Voice,
    /// P: responds to pain.
    Pain,
    /// U: unresponsive.
    Unresponsive,
}

impl Consciousness {
    /// Parses the ACVPU letter (either case).
    pub fn from_letter(raw: &str) -> Option<Consciousness> {
        match raw {
            "A" | "a" => Some(Consciousness::Alert),
            "C" | "c" => Some(Consciousness::Confusion),
            "V" | "v" => Some(Consciousness::Voice),
            "P" | "p" => Some(Consciousness::Pain),
            "U" | "u" => Some(Consciousness::Unresponsive),
            _ => None,
        }
    }

    pub fn letter(self) -> &'static str {
        match self {
            Consciousness::Alert => "A",
            Consciousness::Confusion => "C",
            Consciousness::Voice => "V",
            Consciousness::Pain => "P",
            Consciousness::Unresponsive => "U",
        }
    }
}

/// One accepted reading from one device.
///
/// Every vital is optional: the seed's four fields are expected (their absence is a
/// `MISSING_FIELDS` finding, not a rejection), the extended vitals are stored when present.
#[derive(Clone, Debug, PartialEq)]
pub struct Reading {
    pub device_id: DeviceId,
    /// When the device says it measured; the receive time when the payload had no timestamp.
    /// A timestamp without a zone is taken as UTC.
    pub timestamp: Timestamp,
    /// False when `timestamp` was filled in from `received_at`.
    pub timestamp_from_device: bool,
    /// When VitalWatch received the payload.
    pub received_at: Timestamp,
    pub heart_rate_bpm: Option<f64>,
    pub body_temp_c: Option<f64>,
    pub signal_strength_dbm: Option<f64>,
    pub battery_pct: Option<f64>,
    pub spo2_pct: Option<f64>,
    pub respiratory_rate_per_min: Option<f64>,
    pub systolic_bp_mmhg: Option<f64>,
    pub diastolic_bp_mmhg: Option<f64>,
    pub consciousness: Option<Consciousness>,
    pub on_oxygen: Option<bool>,
    /// The device's own sequence number; a redelivery carries the same one.
    pub seq: Option<u64>,
    /// Fields we do not know, kept verbatim as a JSON object (never interpreted).
    pub extra: Option<String>,
}

impl Reading {
    /// A reading with only the identifying fields set; used by tests and simulators.
    pub fn empty(device_id: DeviceId, timestamp: Timestamp) -> Reading {
        Reading {
            device_id,
            timestamp,
            timestamp_from_device: true,
            received_at: timestamp,
            heart_rate_bpm: None,
            body_temp_c: None,
            signal_strength_dbm: None,
            battery_pct: None,
            spo2_pct: None,
            respiratory_rate_per_min: None,
            systolic_bp_mmhg: None,
            diastolic_bp_mmhg: None,
            consciousness: None,
            on_oxygen: None,
            seq: None,
            extra: None,
        }
    }

    /// The seed's four expected fields that this reading lacks.
    pub fn missing_seed_fields(&self) -> FieldSet {
        let mut missing = FieldSet::EMPTY;
        let expected = [
            (Field::HeartRate, self.heart_rate_bpm),
            (Field::BodyTemp, self.body_temp_c),
            (Field::SignalStrength, self.signal_strength_dbm),
            (Field::BatteryLevel, self.battery_pct),
        ];
        for (field, value) in expected {
            if value.is_none() {
                missing.insert(field);
            }
        }
        missing
    }
}

/// A payload field that VitalWatch understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    DeviceId,
    Timestamp,
    HeartRate,
    BodyTemp,
    SignalStrength,
    BatteryLevel,
    Spo2,
    RespiratoryRate,
    SystolicBp,
    DiastolicBp,
    Consciousness,
    OnOxygen,
    Seq,
}

impl Field {
    pub const ALL: [Field; 13] = [
        Field::DeviceId,
        Field::Timestamp,
        Field::HeartRate,
        Field::BodyTemp,
        Field::SignalStrength,
        Field::BatteryLevel,
        Field::Spo2,
        Field::RespiratoryRate,
        Field::SystolicBp,
        Field::DiastolicBp,
        Field::Consciousness,
        Field::OnOxygen,
        Field::Seq,
    ];

    /// The payload key, as the seed spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Field::DeviceId => "device_id",
            Field::Timestamp => "timestamp",
            Field::HeartRate => "heart_rate",
            Field::BodyTemp => "body_temp",
            Field::SignalStrength => "signal_strength",
            Field::BatteryLevel => "battery_level",
            Field::Spo2 => "spo2",
            Field::RespiratoryRate => "respiratory_rate",
            Field::SystolicBp => "systolic_bp",
            Field::DiastolicBp => "diastolic_bp",
            Field::Consciousness => "consciousness",
            Field::OnOxygen => "on_oxygen",
            Field::Seq => "seq",
        }
    }

    pub fn from_key(key: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|field| field.as_str() == key)
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// A small set of [`Field`]s (a bit mask), cheap to copy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FieldSet(u16);

impl FieldSet {
    pub const EMPTY: FieldSet = FieldSet(0);

    pub fn insert(&mut self, field: Field) -> bool {
        let had = self.contains(field);
        self.0 |= field.bit();
        !had
    }

    pub fn contains(self, field: Field) -> bool {
        self.0 & field.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Field> {
        Field::ALL
            .into_iter()
            .filter(move |field| self.contains(*field))
    }

    /// The payload keys, comma-separated, e.g. `body_temp, battery_level`.
    pub fn names(self) -> String {
        self.iter()
            .map(Field::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Why a payload was refused. Stable strings ([`RejectReason::as_str`]) are used as metric
/// labels, audit entries and the API's `error` code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    PayloadTooLarge,
    InvalidUtf8,
    MalformedJson,
    TooDeep,
    NotAnObject,
    EmptyBatch,
    BatchTooLarge,
    DuplicateField,
    TooManyFields,
    MissingDeviceId,
    InvalidDeviceId,
    WrongType,
    NonFinite,
    NumberOutOfRange,
    OutOfBounds,
    StringTooLong,
    InvalidTimestamp,
    TimestampInFuture,
    InvalidConsciousness,
}

impl RejectReason {
    pub const ALL: [RejectReason; 19] = [
        RejectReason::PayloadTooLarge,
        RejectReason::InvalidUtf8,
        RejectReason::MalformedJson,
        RejectReason::TooDeep,
        RejectReason::NotAnObject,
        RejectReason::EmptyBatch,
        RejectReason::BatchTooLarge,
        RejectReason::DuplicateField,
        RejectReason::TooManyFields,
        RejectReason::MissingDeviceId,
        RejectReason::InvalidDeviceId,
        RejectReason::WrongType,
        RejectReason::NonFinite,
        RejectReason::NumberOutOfRange,
        RejectReason::OutOfBounds,
        RejectReason::StringTooLong,
        RejectReason::InvalidTimestamp,
        RejectReason::TimestampInFuture,
        RejectReason::InvalidConsciousness,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::PayloadTooLarge => "payload_too_large",
            RejectReason::InvalidUtf8 => "invalid_utf8",
            RejectReason::MalformedJson => "malformed_json",
            RejectReason::TooDeep => "too_deep",
            RejectReason::NotAnObject => "not_an_object",
            RejectReason::EmptyBatch => "empty_batch",
            RejectReason::BatchTooLarge => "batch_too_large",
            RejectReason::DuplicateField => "duplicate_field",
            RejectReason::TooManyFields => "too_many_fields",
            RejectReason::MissingDeviceId => "missing_device_id",
            RejectReason::InvalidDeviceId => "invalid_device_id",
            RejectReason::WrongType => "wrong_type",
            RejectReason::NonFinite => "non_finite_number",
            RejectReason::NumberOutOfRange => "number_out_of_range",
            RejectReason::OutOfBounds => "value_out_of_bounds",
            RejectReason::StringTooLong => "string_too_long",
            RejectReason::InvalidTimestamp => "invalid_timestamp",
            RejectReason::TimestampInFuture => "timestamp_in_future",
            RejectReason::InvalidConsciousness => "invalid_consciousness",
        }
    }

    /// Whether the whole body was unusable (as opposed to one reading within it).
    pub fn is_body_level(self) -> bool {
        matches!(
            self,
            RejectReason::PayloadTooLarge
                | RejectReason::InvalidUtf8
                | RejectReason::MalformedJson
                | RejectReason::TooDeep
                | RejectReason::NumberOutOfRange
                | RejectReason::EmptyBatch
                | RejectReason::BatchTooLarge
        )
    }
}

/// A refused payload: the reason and, where one field is to blame, which.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub reason: RejectReason,
    pub field: Option<Field>,
}

impl Rejection {
    pub fn new(reason: RejectReason) -> Rejection {
        Rejection {
            reason,
            field: None,
        }
    }

    pub fn at(reason: RejectReason, field: Field) -> Rejection {
        Rejection {
            reason,
            field: Some(field),
        }
    }

    /// A sentence a person can act on, e.g. "heart_rate must be between 0 and 400, got 10000".
    /// It names limits, never the rejected value (which may be patient data).
    pub fn detail(&self, limits: &Limits) -> String {
        let field = self.field.map(Field::as_str).unwrap_or("payload");
        match self.reason {
            RejectReason::PayloadTooLarge => format!(
                "payload exceeds the limit of {} bytes",
                limits.max_payload_bytes
            ),
            RejectReason::InvalidUtf8 => "payload is not valid UTF-8".to_owned(),
            RejectReason::MalformedJson => "payload is not well-formed JSON".to_owned(),
            RejectReason::TooDeep => format!(
                "JSON nesting deeper than the limit of {}",
                limits.max_depth
            ),
            RejectReason::NotAnObject => {
                "a reading must be a JSON object (or a JSON array of objects)".to_owned()
            }
            RejectReason::EmptyBatch => "the batch is an empty array".to_owned(),
            RejectReason::BatchTooLarge => format!(
                "a batch may hold at most {} readings",
                limits.max_batch_len
            ),
            RejectReason::DuplicateField => format!("field {field} appears more than once"),
            RejectReason::TooManyFields => format!(
                "a reading may have at most {} fields",
                limits.max_fields
            ),
            RejectReason::MissingDeviceId => "device_id is required".to_owned(),
            RejectReason::InvalidDeviceId => format!(
                "device_id must be 1 to {} characters of A-Z a-z 0-9 _ . : -",
                limits.max_device_id_len
            ),
            RejectReason::WrongType => format!("{field} has the wrong type: {}", expected(self.field)),
            RejectReason::NonFinite => format!("{field} must be a finite number (not NaN or Infinity)"),
            RejectReason::NumberOutOfRange => {
                "a number in the payload is too large to represent (e.g. 1e309)".to_owned()
            }
            RejectReason::OutOfBounds => match self.field.and_then(|f| limits.bounds(f)) {
                Some(bounds) => format!(
                    "{field} must be between {} and {}",
                    bounds.min, bounds.max
                ),
                None => format!("{field} is out of bounds"),
            },
            RejectReason::StringTooLong => format!(
                "{field} is longer than the limit of {} bytes",
                limits.max_string_len
            ),
            RejectReason::InvalidTimestamp => "timestamp must be RFC 3339 / ISO 8601 (zone optional, UTC assumed) or epoch seconds or milliseconds, after 2000-01-01".to_owned(),
            RejectReason::TimestampInFuture => format!(
                "timestamp is more than {} s ahead of the server clock",
                limits.max_future_skew_s
            ),
            RejectReason::InvalidConsciousness => {
                "consciousness must be one ACVPU letter: A, C, V, P or U".to_owned()
            }
        }
    }
}

fn expected(field: Option<Field>) -> &'static str {
    match field {
        Some(Field::DeviceId) => "expected a string",
        Some(Field::Timestamp) => "expected a string or a number",
        Some(Field::Consciousness) => "expected a string",
        Some(Field::OnOxygen) => "expected true or false",
        Some(Field::Seq) => "expected a non-negative integer",
        Some(_) => "expected a number",
        None => "unexpected type",
    }
}
