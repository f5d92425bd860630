//! The payload decoder: bytes to [`Reading`] or [`Rejection`], within [`Limits`].
//!
//! Three passes over the input, all bounded by the size limit:
//! 1. size, UTF-8 and a nesting-depth scan (so a 10 000-deep payload never reaches a
//!    recursive parser);
//! 2. one streaming serde pass that writes known fields straight into the reading (no
//!    intermediate JSON tree), detects duplicate keys, and keeps unknown fields verbatim;
//! 3. field checks (types, finiteness, plausibility bounds, timestamp sanity).
//!
//! A bad reading inside a batch is a per-reading rejection; only a body that cannot be
//! parsed at all rejects the whole batch.

use super::{
    Consciousness, DeviceId, Field, FieldSet, Limits, Reading, RejectReason, Rejection, Timestamp,
    VitalSlot, time::EARLIEST_MICROS,
};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

/// What a body held: one reading (a JSON object) or a batch (a JSON array).
#[derive(Debug)]
pub enum Decoded {
    One(Result<Reading, Rejection>),
    Batch(Vec<Result<Reading, Rejection>>),
}

/// Decodes one reading (a JSON object), as an MQTT message carries it.
pub fn decode(bytes: &[u8], received_at: Timestamp, limits: &Limits) -> Result<Reading, Rejection> {
    if bytes.len() > limits.max_payload_bytes {
        return Err(Rejection::new(RejectReason::PayloadTooLarge));
    }
    let text = prescan(bytes, limits)?;
    if first_byte(text) != Some(b'{') {
        return Err(not_an_object(text));
    }
    let ctx = Ctx::new(received_at, limits);
    run(text, &ctx, ReadingSeed { ctx: &ctx })?
}

/// Decodes an HTTP body: one reading (object) or a batch (array of objects).
pub fn decode_body(
    bytes: &[u8],
    received_at: Timestamp,
    limits: &Limits,
) -> Result<Decoded, Rejection> {
    if bytes.len() > limits.max_batch_bytes.max(limits.max_payload_bytes) {
        return Err(Rejection::new(RejectReason::PayloadTooLarge));
    }
    let text = prescan(bytes, limits)?;
    match first_byte(text) {
        Some(b'{') => {
            if bytes.len() > limits.max_payload_bytes {
                return Err(Rejection::new(RejectReason::PayloadTooLarge));
            }
            Ok(Decoded::One(decode(bytes, received_at, limits)))
        }
        Some(b'[') => {
            let ctx = Ctx::new(received_at, limits);
            let batch = run(text, &ctx, BatchSeed { ctx: &ctx })?;
            if batch.is_empty() {
                return Err(Rejection::new(RejectReason::EmptyBatch));
            }
            Ok(Decoded::Batch(batch))
        }
        _ => Err(not_an_object(text)),
    }
}

fn first_byte(text: &str) -> Option<u8> {
    text.bytes().find(|b| !b.is_ascii_whitespace())
}

/// Valid JSON that is not an object is `not_an_object`; anything else is malformed.
fn not_an_object(text: &str) -> Rejection {
    match serde_json::from_str::<IgnoredAny>(text) {
        Ok(_) => Rejection::new(RejectReason::NotAnObject),
        Err(_) => Rejection::new(RejectReason::MalformedJson),
    }
}

/// Checks UTF-8 and nesting depth without recursion.
fn prescan<'a>(bytes: &'a [u8], limits: &Limits) -> Result<&'a str, Rejection> {
    let text = std::str::from_utf8(bytes).map_err(|_| Rejection::new(RejectReason::InvalidUtf8))?;
    // serde_json's own recursion guard is 128; stay below it so our reason is the one given.
    let max_depth = limits.max_depth.min(120);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for b in text.bytes() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max_depth {
                    return Err(Rejection::new(RejectReason::TooDeep));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(text)
}

/// Shared state of one decode call.
struct Ctx<'l> {
    received_at: Timestamp,
    limits: &'l Limits,
    /// Set when the whole body must be refused from inside the parse (e.g. batch too long).
    abort: Cell<Option<RejectReason>>,
}

impl<'l> Ctx<'l> {
    fn new(received_at: Timestamp, limits: &'l Limits) -> Ctx<'l> {
        Ctx {
            received_at,
            limits,
            abort: Cell::new(None),
        }
    }
}

fn run<'de, S>(text: &'de str, ctx: &Ctx<'_>, seed: S) -> Result<S::Value, Rejection>
where
    S: DeserializeSeed<'de>,
{
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed = seed.deserialize(&mut de).and_then(|value| {
        de.end()?;
        Ok(value)
    });
    parsed.map_err(|err| {
        if let Some(reason) = ctx.abort.get() {
            return Rejection::new(reason);
        }
        if err.is_syntax() && err.to_string().starts_with("number out of range") {
            return Rejection::new(RejectReason::NumberOutOfRange);
        }
        Rejection::new(RejectReason::MalformedJson)
    })
}

struct BatchSeed<'c, 'l> {
    ctx: &'c Ctx<'l>,
}

impl<'de> DeserializeSeed<'de> for BatchSeed<'_, '_> {
    type Value = Vec<Result<Reading, Rejection>>;

    fn deserialize<D: de::Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for BatchSeed<'_, '_> {
    type Value = Vec<Result<Reading, Rejection>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of readings")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(item) = seq.next_element_seed(ElementSeed { ctx: self.ctx })? {
            if out.len() == self.ctx.limits.max_batch_len {
                self.ctx.abort.set(Some(RejectReason::BatchTooLarge));
                return Err(de::Error::custom("batch too large"));
            }
            out.push(item);
        }
        Ok(out)
    }
}

/// One element of a batch: an object is a reading, anything else a per-element rejection.
struct ElementSeed<'c, 'l> {
    ctx: &'c Ctx<'l>,
}

impl<'de> DeserializeSeed<'de> for ElementSeed<'_, '_> {
    type Value = Result<Reading, Rejection>;

    fn deserialize<D: de::Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ElementSeed<'_, '_> {
    type Value = Result<Reading, Rejection>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a reading object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        ReadingSeed { ctx: self.ctx }.visit_map(map)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Err(Rejection::new(RejectReason::NotAnObject)))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Err(Rejection::new(RejectReason::NotAnObject)))
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Err(Rejection::new(RejectReason::NotAnObject)))
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Err(Rejection::new(RejectReason::NotAnObject)))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Err(Rejection::new(RejectReason::NotAnObject)))
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Err(Rejection::new(RejectReason::NotAnObject)))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Err(Rejection::new(RejectReason::NotAnObject)))
    }
}

struct ReadingSeed<'c, 'l> {
    ctx: &'c Ctx<'l>,
}

impl<'de> DeserializeSeed<'de> for ReadingSeed<'_, '_> {
    type Value = Result<Reading, Rejection>;

    fn deserialize<D: de::Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ReadingSeed<'_, '_> {
    type Value = Result<Reading, Rejection>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a reading object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let limits = self.ctx.limits;
        let mut fields = Fields::new(self.ctx.received_at);
        let mut seen = FieldSet::EMPTY;
        let mut extra: Option<serde_json::Map<String, serde_json::Value>> = None;
        let mut first_rejection: Option<Rejection> = None;
        let mut n_fields = 0usize;

        while let Some(key) = map.next_key::<Key<'de>>()? {
            n_fields += 1;
            if first_rejection.is_some() {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            if n_fields > limits.max_fields {
                first_rejection = Some(Rejection::new(RejectReason::TooManyFields));
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let Key(key) = key;
            if let Some(field) = Field::from_key(&key) {
                if !seen.insert(field) {
                    first_rejection = Some(Rejection::at(RejectReason::DuplicateField, field));
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
                let scalar = map.next_value_seed(ScalarSeed {
                    max_string_len: limits.max_string_len,
                })?;
                if let Err(rejection) = fields.set(field, scalar, limits) {
                    first_rejection = Some(rejection);
                }
                continue;
            }
            // An unknown field: kept verbatim, never interpreted.
            let value: serde_json::Value = map.next_value()?;
            if key.len() > limits.max_string_len || !strings_within(&value, limits.max_string_len) {
                first_rejection = Some(Rejection::new(RejectReason::StringTooLong));
                continue;
            }
            let extra = extra.get_or_insert_with(serde_json::Map::new);
            if extra.contains_key(key.as_ref()) {
                first_rejection = Some(Rejection::new(RejectReason::DuplicateField));
                continue;
            }
            extra.insert(key.into_owned(), value);
        }

        if let Some(rejection) = first_rejection {
            return Ok(Err(rejection));
        }
        Ok(fields.finish(extra, self.ctx))
    }
}

fn strings_within(value: &serde_json::Value, max_len: usize) -> bool {
    match value {
        serde_json::Value::String(s) => s.len() <= max_len,
        serde_json::Value::Array(items) => items.iter().all(|v| strings_within(v, max_len)),
        serde_json::Value::Object(map) => map
            .iter()
            .all(|(k, v)| k.len() <= max_len && strings_within(v, max_len)),
        _ => true,
    }
}

/// An object key, borrowed from the input when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: de::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        de.deserialize_str(KeyVisitor)
    }
}

/// A field value before it is checked against its field's type.
enum Scalar<'de> {
    Null,
    Bool(bool),
    UInt(u64),
    Int(i64),
    Float(f64),
    Str(Cow<'de, str>),
    LongStr,
    Composite,
}

struct ScalarSeed {
    max_string_len: usize,
}

impl<'de> DeserializeSeed<'de> for ScalarSeed {
    type Value = Scalar<'de>;

    fn deserialize<D: de::Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ScalarSeed {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Null)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Bool(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::UInt(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Int(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Float(v))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Scalar<'de>, E> {
        if v.len() > self.max_string_len {
            return Ok(Scalar::LongStr);
        }
        Ok(Scalar::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Scalar<'de>, E> {
        if v.len() > self.max_string_len {
            return Ok(Scalar::LongStr);
        }
        Ok(Scalar::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Composite)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar<'de>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Composite)
    }
}

/// The known fields as they are filled in: the vitals and `seq` straight into the reading
/// that [`Fields::finish`] completes with its identity.
struct Fields {
    device_id: Option<DeviceId>,
    timestamp: Option<Timestamp>,
    reading: Reading,
}

/// The spellings of non-finite numbers that JSON encoders emit as strings.
fn is_non_finite_spelling(raw: &str) -> bool {
    let trimmed = raw.trim().trim_start_matches(['+', '-']);
    ["nan", "inf", "infinity"]
        .iter()
        .any(|word| trimmed.eq_ignore_ascii_case(word))
}

impl Fields {
    fn new(received_at: Timestamp) -> Fields {
        Fields {
            device_id: None,
            timestamp: None,
            // Replaced in `finish`; an empty `String` does not allocate.
            reading: Reading::empty(DeviceId(String::new()), received_at),
        }
    }

    fn set(&mut self, field: Field, value: Scalar<'_>, limits: &Limits) -> Result<(), Rejection> {
        let wrong_type = Rejection::at(RejectReason::WrongType, field);
        if let Scalar::LongStr = value {
            return Err(Rejection::at(
                if field == Field::DeviceId {
                    RejectReason::InvalidDeviceId
                } else {
                    RejectReason::StringTooLong
                },
                field,
            ));
        }
        match field {
            Field::DeviceId => match value {
                Scalar::Str(raw) => {
                    self.device_id = Some(
                        DeviceId::parse(&raw, limits.max_device_id_len)
                            .map_err(|reason| Rejection::at(reason, field))?,
                    );
                }
                Scalar::Null => {}
                _ => return Err(wrong_type),
            },
            Field::Timestamp => {
                let invalid = Rejection::at(RejectReason::InvalidTimestamp, field);
                self.timestamp = match value {
                    Scalar::Str(raw) => Some(Timestamp::parse_text(&raw).ok_or(invalid)?),
                    Scalar::UInt(v) => Some(Timestamp::parse_epoch(v as f64).ok_or(invalid)?),
                    Scalar::Int(v) => Some(Timestamp::parse_epoch(v as f64).ok_or(invalid)?),
                    Scalar::Float(v) => Some(Timestamp::parse_epoch(v).ok_or(invalid)?),
                    Scalar::Null => None,
                    _ => return Err(wrong_type),
                };
            }
            Field::Seq => match value {
                Scalar::UInt(v) => self.reading.seq = Some(v),
                Scalar::Int(_) => return Err(Rejection::at(RejectReason::OutOfBounds, field)),
                // 2^53: above it a float no longer holds every integer exactly.
                Scalar::Float(v)
                    if v.fract() == 0.0 && (0.0..9.007_199_254_740_992e15).contains(&v) =>
                {
                    self.reading.seq = Some(v as u64)
                }
                Scalar::Null => {}
                _ => return Err(wrong_type),
            },
            Field::Vital(vital) => match self.reading.vital_slot(vital) {
                VitalSlot::Acvpu(slot) => match value {
                    Scalar::Str(raw) => {
                        *slot = Some(
                            Consciousness::from_letter(raw.trim())
                                .ok_or(Rejection::at(RejectReason::InvalidConsciousness, field))?,
                        );
                    }
                    Scalar::Null => {}
                    _ => return Err(wrong_type),
                },
                VitalSlot::Bool(slot) => match value {
                    Scalar::Bool(v) => *slot = Some(v),
                    Scalar::Null => {}
                    _ => return Err(wrong_type),
                },
                VitalSlot::Number(slot) => {
                    let number = match value {
                        Scalar::UInt(v) => v as f64,
                        Scalar::Int(v) => v as f64,
                        Scalar::Float(v) => v,
                        Scalar::Null => return Ok(()),
                        Scalar::Str(raw) if is_non_finite_spelling(&raw) => {
                            return Err(Rejection::at(RejectReason::NonFinite, field));
                        }
                        _ => return Err(wrong_type),
                    };
                    if !number.is_finite() {
                        return Err(Rejection::at(RejectReason::NonFinite, field));
                    }
                    let bounds = limits
                        .vital_bounds(vital)
                        .expect("every numeric vital has bounds");
                    if !bounds.contains(number) {
                        return Err(Rejection::at(RejectReason::OutOfBounds, field));
                    }
                    *slot = Some(number);
                }
            },
        }
        Ok(())
    }

    fn finish(
        self,
        extra: Option<serde_json::Map<String, serde_json::Value>>,
        ctx: &Ctx<'_>,
    ) -> Result<Reading, Rejection> {
        let Fields {
            device_id,
            timestamp,
            mut reading,
        } = self;
        let device_id = device_id.ok_or(Rejection::at(
            RejectReason::MissingDeviceId,
            Field::DeviceId,
        ))?;
        let received_at = ctx.received_at;
        let (timestamp, timestamp_from_device) = match timestamp {
            Some(ts) => {
                if ts.micros() < EARLIEST_MICROS {
                    return Err(Rejection::at(
                        RejectReason::InvalidTimestamp,
                        Field::Timestamp,
                    ));
                }
                let skew_micros = (ctx.limits.max_future_skew_s as i64).saturating_mul(1_000_000);
                if ts.saturating_sub(received_at) > skew_micros {
                    return Err(Rejection::at(
                        RejectReason::TimestampInFuture,
                        Field::Timestamp,
                    ));
                }
                (ts, true)
            }
            None => (received_at, false),
        };
        reading.device_id = device_id;
        reading.timestamp = timestamp;
        reading.timestamp_from_device = timestamp_from_device;
        reading.received_at = received_at;
        reading.extra = extra.map(|map| serde_json::Value::Object(map).to_string());
        Ok(reading)
    }
}

#[cfg(test)]
mod tests;
