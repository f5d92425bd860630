//! Readings: the [`Reading`] type, its identifiers and units, and the payload decoder.
//!
//! A reading arrives as the seed's JSON payload (`device_id`, `timestamp`, `heart_rate`,
//! `body_temp`, `signal_strength`, `battery_level`) plus optional extended vitals. The
//! decoder ([`decode`]) turns bytes into a [`Reading`] or a [`Rejection`] with a precise,
//! stable reason; it never panics on any byte string.
//!
//! Which vitals exist, and every fact about each, is the table in [`VITALS`] (`vitals.rs`).
//!
//! This module must not know where bytes come from (MQTT, HTTP, a file) nor where readings go.

mod decode;
mod limits;
mod time;
mod vitals;

pub use decode::{Decoded, decode, decode_body};
pub use limits::{Bounds, Limits};
pub use time::Timestamp;
pub use vitals::{VITALS, VitalInfo, VitalKey, VitalKind};

use std::fmt;

/// A device identifier: 1 to 64 characters of `[A-Za-z0-9_.:-]` (the maximum is configurable
/// through [`Limits::max_device_id_len`]).
///
/// The charset keeps ids safe to use in MQTT topics, file names, log fields and URLs.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

/// Which SpO2 scale applies. Scale 2 is only for patients with hypercapnic respiratory failure
/// and a prescribed target of 88–92 % [NEWS2-RCPJ]; a clinician chooses it per patient. It lives
/// here, below `rules` and `news2`, because both a patient's thresholds and the score use it.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Spo2Scale {
    #[default]
    Scale1,
    Scale2,
}

impl Spo2Scale {
    pub fn as_str(self) -> &'static str {
        match self {
            Spo2Scale::Scale1 => "scale1",
            Spo2Scale::Scale2 => "scale2",
        }
    }

    pub fn parse(raw: &str) -> Option<Spo2Scale> {
        match raw {
            "scale1" => Some(Spo2Scale::Scale1),
            "scale2" => Some(Spo2Scale::Scale2),
            _ => None,
        }
    }
}

/// Level of consciousness on the ACVPU scale used by NEWS2 (RCP 2017).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
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
    #[inline]
    pub fn missing_seed_fields(&self) -> FieldSet {
        let mut missing = FieldSet::EMPTY;
        for vital in VitalKey::SEED {
            if !self.has_vital(vital) {
                missing.insert(Field::Vital(vital));
            }
        }
        missing
    }

    /// The value of a numeric vital; `None` when the reading lacks it, and for the kinds that
    /// are not numbers (use [`Reading::vital_value`] for those).
    #[inline]
    pub fn vital(&self, vital: VitalKey) -> Option<f64> {
        match self.vital_value(vital)? {
            VitalValue::Number(value) => Some(value),
            VitalValue::Acvpu(_) | VitalValue::Bool(_) => None,
        }
    }

    #[inline]
    pub fn has_vital(&self, vital: VitalKey) -> bool {
        self.vital_value(vital).is_some()
    }

    /// The value of any vital, of its table kind. With [`Reading::vital_slot`], the one place
    /// that maps a [`VitalKey`] to a field of `Reading`.
    #[inline]
    pub fn vital_value(&self, vital: VitalKey) -> Option<VitalValue> {
        use VitalValue::{Acvpu, Bool, Number};
        match vital {
            VitalKey::HeartRate => self.heart_rate_bpm.map(Number),
            VitalKey::BodyTemp => self.body_temp_c.map(Number),
            VitalKey::SignalStrength => self.signal_strength_dbm.map(Number),
            VitalKey::BatteryLevel => self.battery_pct.map(Number),
            VitalKey::Spo2 => self.spo2_pct.map(Number),
            VitalKey::RespiratoryRate => self.respiratory_rate_per_min.map(Number),
            VitalKey::SystolicBp => self.systolic_bp_mmhg.map(Number),
            VitalKey::DiastolicBp => self.diastolic_bp_mmhg.map(Number),
            VitalKey::Consciousness => self.consciousness.map(Acvpu),
            VitalKey::OnOxygen => self.on_oxygen.map(Bool),
        }
    }

    /// Where `vital` is kept, for writing it (the decoder fills a reading through this).
    #[inline]
    pub fn vital_slot(&mut self, vital: VitalKey) -> VitalSlot<'_> {
        match vital {
            VitalKey::HeartRate => VitalSlot::Number(&mut self.heart_rate_bpm),
            VitalKey::BodyTemp => VitalSlot::Number(&mut self.body_temp_c),
            VitalKey::SignalStrength => VitalSlot::Number(&mut self.signal_strength_dbm),
            VitalKey::BatteryLevel => VitalSlot::Number(&mut self.battery_pct),
            VitalKey::Spo2 => VitalSlot::Number(&mut self.spo2_pct),
            VitalKey::RespiratoryRate => VitalSlot::Number(&mut self.respiratory_rate_per_min),
            VitalKey::SystolicBp => VitalSlot::Number(&mut self.systolic_bp_mmhg),
            VitalKey::DiastolicBp => VitalSlot::Number(&mut self.diastolic_bp_mmhg),
            VitalKey::Consciousness => VitalSlot::Acvpu(&mut self.consciousness),
            VitalKey::OnOxygen => VitalSlot::Bool(&mut self.on_oxygen),
        }
    }
}

/// One vital's value, of its [`VitalKind`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum VitalValue {
    Number(f64),
    Acvpu(Consciousness),
    Bool(bool),
}

/// A vital's field in a [`Reading`], typed by its [`VitalKind`].
#[derive(Debug)]
pub enum VitalSlot<'r> {
    Number(&'r mut Option<f64>),
    Acvpu(&'r mut Option<Consciousness>),
    Bool(&'r mut Option<bool>),
}

impl VitalSlot<'_> {
    pub fn kind(&self) -> VitalKind {
        match self {
            VitalSlot::Number(_) => VitalKind::Number,
            VitalSlot::Acvpu(_) => VitalKind::Acvpu,
            VitalSlot::Bool(_) => VitalKind::Bool,
        }
    }
}

/// A payload field that VitalWatch understands: the identifying fields, every vital of
/// [`VITALS`], and the device's sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    DeviceId,
    Timestamp,
    Vital(VitalKey),
    Seq,
}

impl Field {
    /// Every field: identity, the vitals in table order, then `seq`.
    pub const ALL: [Field; VitalKey::COUNT + 3] = {
        let mut all = [Field::DeviceId; VitalKey::COUNT + 3];
        all[1] = Field::Timestamp;
        let mut idx = 0;
        while idx < VitalKey::COUNT {
            all[2 + idx] = Field::Vital(VitalKey::ALL[idx]);
            idx += 1;
        }
        all[VitalKey::COUNT + 2] = Field::Seq;
        all
    };

    /// The payload keys of [`Field::ALL`], in that order, so [`Field::from_key`] compares
    /// strings from one array.
    const KEYS: [&'static str; Field::ALL.len()] = {
        let mut keys = [""; Field::ALL.len()];
        let mut idx = 0;
        while idx < keys.len() {
            keys[idx] = Field::ALL[idx].as_str();
            idx += 1;
        }
        keys
    };

    /// The payload key, as the seed spells it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Field::DeviceId => "device_id",
            Field::Timestamp => "timestamp",
            Field::Vital(vital) => vital.key(),
            Field::Seq => "seq",
        }
    }

    pub fn from_key(key: &str) -> Option<Field> {
        Field::KEYS
            .iter()
            .position(|known| *known == key)
            .map(|idx| Field::ALL[idx])
    }

    /// This field's position in [`Field::ALL`], which is also its bit in a [`FieldSet`].
    #[inline]
    const fn index(self) -> usize {
        match self {
            Field::DeviceId => 0,
            Field::Timestamp => 1,
            Field::Vital(vital) => 2 + vital as usize,
            Field::Seq => VitalKey::COUNT + 2,
        }
    }

    #[inline]
    fn bit(self) -> u16 {
        1 << self.index()
    }
}

impl From<VitalKey> for Field {
    fn from(vital: VitalKey) -> Field {
        Field::Vital(vital)
    }
}

const _: () = assert!(Field::ALL.len() <= 16, "a FieldSet is a u16 bit mask");

/// A small set of [`Field`]s (a bit mask), cheap to copy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FieldSet(u16);

impl FieldSet {
    pub const EMPTY: FieldSet = FieldSet(0);

    #[inline]
    pub fn insert(&mut self, field: Field) -> bool {
        let had = self.contains(field);
        self.0 |= field.bit();
        !had
    }

    #[inline]
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
        Some(Field::Vital(vital)) => match vital.kind() {
            VitalKind::Number => "expected a number",
            VitalKind::Acvpu => "expected a string",
            VitalKind::Bool => "expected true or false",
        },
        Some(Field::Seq) => "expected a non-negative integer",
        None => "unexpected type",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_identity_then_vitals_then_seq() {
        assert_eq!(Field::ALL[0], Field::DeviceId);
        assert_eq!(Field::ALL[2], Field::Vital(VitalKey::HeartRate));
        assert_eq!(Field::ALL[12], Field::Seq);
        for (idx, field) in Field::ALL.into_iter().enumerate() {
            assert_eq!(field.index(), idx);
            assert_eq!(Field::from_key(field.as_str()), Some(field));
        }
        assert_eq!(Field::from_key("temperature"), None);
    }

    #[test]
    fn vitals_slots_have_the_table_kind_and_round_trip() {
        let mut reading = Reading::empty(
            DeviceId::parse("dev-1", 64).expect("valid id"),
            Timestamp::from_secs(1_700_000_000),
        );
        for (n, vital) in VitalKey::ALL.into_iter().enumerate() {
            assert!(!reading.has_vital(vital));
            let slot = reading.vital_slot(vital);
            assert_eq!(slot.kind(), vital.kind(), "{vital:?}");
            let expected = match slot {
                VitalSlot::Number(slot) => VitalValue::Number(*slot.insert(n as f64)),
                VitalSlot::Acvpu(slot) => VitalValue::Acvpu(*slot.insert(Consciousness::Voice)),
                VitalSlot::Bool(slot) => VitalValue::Bool(*slot.insert(true)),
            };
            assert_eq!(reading.vital_value(vital), Some(expected));
            let number = matches!(vital.kind(), VitalKind::Number).then_some(n as f64);
            assert_eq!(reading.vital(vital), number);
        }
        assert_eq!(reading.heart_rate_bpm, Some(0.0));
        assert_eq!(reading.diastolic_bp_mmhg, Some(7.0));
        assert_eq!(reading.on_oxygen, Some(true));
        assert!(reading.missing_seed_fields().is_empty());
    }
}
