//! Alert state shared through the database: the seam between the alert service's shared path
//! (`alerts/shared.rs`) and a store that can hold one row per device for every node.
//!
//! Only the PostgreSQL store offers it ([`crate::store::Store::shared_alerts`] answers `None`
//! on SQLite: the single-box path keeps its engine in memory). An evaluation is one
//! transaction: the devices' rows locked in device-id order, their registry interval and
//! thresholds read under the lock, the pure engine run by the caller's closure, then its
//! transitions (the alert tables) and the new rows written and committed together.

use super::{StoreError, ThresholdsRecord};
use async_trait::async_trait;
use vitalwatch_core::alerting::{Alert, AlertError, AlertTransition, DeviceState};
use vitalwatch_core::news2::LatestVitals;
use vitalwatch_core::telemetry::Timestamp;

/// One device's row as the evaluation found it, locked.
#[derive(Clone, Debug)]
pub struct LockedDevice {
    pub device_id: String,
    /// `None` when the device has no row yet.
    pub state: Option<DeviceState>,
    pub vitals: LatestVitals,
    /// The latest server time an evaluation of this device ran at (clocks of nodes differ a
    /// little: the engine's `now` never goes back for a device).
    pub evaluated_at: Option<Timestamp>,
    /// The registry's `expected_interval_s` of an active device; `None` when the device is
    /// not registered or not active (quarantined readings).
    pub expected_interval_s: Option<f64>,
    /// The device's threshold overrides, read under the lock.
    pub thresholds: Option<ThresholdsRecord>,
    /// For a device without a row: its open alerts in the alert tables (from before the
    /// shared state existed), to rebuild its state from.
    pub open_alerts: Vec<Alert>,
    /// The times (µs) of the device's latest evaluated readings, oldest first: a reading sent
    /// again is evaluated only when its time is not among them.
    pub evaluated: Vec<i64>,
}

/// One device's row to write back.
#[derive(Clone, Debug)]
pub struct DeviceRow {
    pub device_id: String,
    pub state: DeviceState,
    pub vitals: LatestVitals,
    pub evaluated_at: Timestamp,
    /// When the leader's timer must look at the device next.
    pub next_deadline: Option<Timestamp>,
    /// [`LockedDevice::evaluated`] with this evaluation's readings.
    pub evaluated: Vec<i64>,
}

/// What an evaluation produced. Alert ids at or above
/// [`vitalwatch_core::alerting::PROVISIONAL_ID_BASE`] are provisional: the store allocates
/// real ones (in raise order) before writing.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub transitions: Vec<AlertTransition>,
    pub rows: Vec<DeviceRow>,
    /// How many alerts the evaluation raised (provisional ids base+1 ..= base+raised).
    pub raised: usize,
}

/// The caller's part of an evaluation: pure, run with the rows locked. An error rolls back.
pub type Evaluate = Box<dyn FnOnce(Vec<LockedDevice>) -> Result<Outcome, AlertError> + Send>;

/// A store that keeps the alert engine's state per device for every node.
#[async_trait]
pub trait SharedAlertState: Send + Sync {
    /// Locks the rows of `devices` (created when missing) in device-id order, runs `run` on
    /// them and commits its transitions and rows; returns the transitions with their real ids.
    async fn evaluate(
        &self,
        devices: Vec<String>,
        run: Evaluate,
    ) -> Result<Result<Vec<AlertTransition>, AlertError>, StoreError>;
    /// Devices whose deadline is at or before `now`, at most `limit`, in device-id order.
    async fn due_devices(&self, now: Timestamp, limit: usize) -> Result<Vec<String>, StoreError>;
    /// The earliest deadline of any device.
    async fn next_deadline(&self) -> Result<Option<Timestamp>, StoreError>;
    /// A device's stored NEWS2 window (no lock).
    async fn vitals(&self, device_id: String) -> Result<Option<LatestVitals>, StoreError>;
    /// Active devices seen before that have no row yet (their offline timer would never run).
    async fn devices_without_state(&self, limit: usize) -> Result<Vec<String>, StoreError>;
}

/// One node's attempt at leadership: a session-level lock on a connection of its own.
#[async_trait]
pub trait LeaderLock: Send + Sync {
    /// Tries to take the lock (or checks that it is still held). `Ok(true)`: this node leads.
    /// A lost connection ends leadership: the next call reconnects and tries again.
    async fn try_lead(&mut self, node_id: &str) -> Result<bool, StoreError>;
    /// The node id of whoever holds the lock now, if anyone.
    async fn leader(&mut self) -> Result<Option<String>, StoreError>;
    /// Gives the lock up (a graceful stop).
    async fn release(&mut self);
}

/// The version byte of [`pack`]'s first encoding: the JSON deflated (still read).
const PACKED_V1: u8 = 1;
/// ... and of its current one: the JSON's length (4 bytes, little-endian), then the JSON as
/// one LZ4 block. A sixth of V1's cost to write (deflate was most of an evaluation's time
/// under load) for about a third more bytes.
const PACKED_V2: u8 = 2;
/// The most a packed row may inflate to (a stored row is a few tens of KB at most).
const PACKED_MAX: usize = 16 << 20;

#[derive(serde::Deserialize)]
struct Packed {
    state: DeviceState,
    vitals: LatestVitals,
}

#[derive(serde::Serialize)]
struct ToPack<'a> {
    state: &'a DeviceState,
    vitals: &'a LatestVitals,
}

/// A device's state and NEWS2 window as one stored value: a version byte, then their JSON
/// compressed (the onset sightings and NEWS2 windows repeat themselves: an hour of
/// tachycardia at one reading per 5 s is about 9 KB of JSON, under 2 KB packed).
pub fn pack(state: &DeviceState, vitals: &LatestVitals) -> Result<Vec<u8>, StoreError> {
    let json = serde_json::to_vec(&ToPack { state, vitals })
        .map_err(|err| StoreError::InvalidData(format!("alert state not serialisable: {err}")))?;
    let len = u32::try_from(json.len())
        .ok()
        .filter(|len| *len as usize <= PACKED_MAX)
        .ok_or_else(|| StoreError::InvalidData("alert state too large to store".to_owned()))?;
    let mut out = Vec::with_capacity(5 + lz4_flex::block::get_maximum_output_size(json.len()));
    out.push(PACKED_V2);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend(lz4_flex::block::compress(&json));
    Ok(out)
}

/// [`pack`]'s inverse (of either encoding); refuses an encoding it does not know.
pub fn unpack(bytes: &[u8]) -> Result<(DeviceState, LatestVitals), StoreError> {
    let invalid = |what: String| StoreError::InvalidData(format!("stored alert state: {what}"));
    let json = match bytes.split_first() {
        Some((&PACKED_V1, deflated)) => {
            miniz_oxide::inflate::decompress_to_vec_with_limit(deflated, PACKED_MAX)
                .map_err(|err| invalid(format!("not inflatable: {err:?}")))?
        }
        Some((&PACKED_V2, rest)) => {
            let (len, block) = rest
                .split_first_chunk::<4>()
                .ok_or_else(|| invalid("cut short".to_owned()))?;
            let len = u32::from_le_bytes(*len) as usize;
            if len > PACKED_MAX {
                return Err(invalid(format!("claims {len} bytes")));
            }
            lz4_flex::block::decompress(block, len)
                .map_err(|err| invalid(format!("not decompressible: {err}")))?
        }
        Some((version, _)) => return Err(invalid(format!("unknown encoding {version}"))),
        None => return Err(invalid("empty".to_owned())),
    };
    let packed: Packed = serde_json::from_slice(&json).map_err(|err| invalid(err.to_string()))?;
    Ok((packed.state, packed.vitals))
}

#[cfg(test)]
mod tests {
    use super::{pack, unpack};
    use vitalwatch_core::alerting::{AlertConfig, AlertEngine};
    use vitalwatch_core::news2::LatestVitals;
    use vitalwatch_core::telemetry::{DeviceId, FieldSet, Reading, Timestamp};

    /// A device with a story: an hour of tachycardia, every reading observed.
    fn lived_state() -> (vitalwatch_core::alerting::DeviceState, LatestVitals) {
        let mut engine = AlertEngine::new(AlertConfig::default(), 0);
        let mut vitals = LatestVitals::default();
        let id = DeviceId::parse("bed-1", 64).unwrap();
        for n in 0..720 {
            let at = Timestamp::from_secs(1_767_225_600 + n * 5);
            let mut reading = Reading::empty(id.clone(), at);
            reading.heart_rate_bpm = Some(if n % 7 == 0 { 80.0 } else { 135.0 });
            reading.spo2_pct = Some(95.0);
            vitals.observe(&reading, FieldSet::EMPTY);
            engine.observe(&reading, &[], None, at);
        }
        (engine.take_device(&id), vitals)
    }

    #[test]
    fn a_packed_state_round_trips_and_is_much_smaller_than_its_json() {
        let (state, vitals) = lived_state();
        let packed = pack(&state, &vitals).unwrap();
        assert_eq!(packed[0], 2, "the version byte");
        let (back, back_vitals) = unpack(&packed).unwrap();
        assert_eq!(back, state);
        assert_eq!(back_vitals, vitals);
        let json = serde_json::to_string(&state).unwrap().len()
            + serde_json::to_string(&vitals).unwrap().len();
        assert!(
            packed.len() * 3 < json,
            "{} packed bytes for {json} bytes of JSON",
            packed.len()
        );
    }

    #[test]
    fn a_row_packed_by_the_first_encoding_is_still_read() {
        let (state, vitals) = lived_state();
        let json = serde_json::to_vec(&super::ToPack {
            state: &state,
            vitals: &vitals,
        })
        .unwrap();
        let mut v1 = vec![1u8];
        v1.extend(miniz_oxide::deflate::compress_to_vec(&json, 6));
        let (back, back_vitals) = unpack(&v1).unwrap();
        assert_eq!(back, state);
        assert_eq!(back_vitals, vitals);
    }

    #[test]
    fn an_unknown_or_damaged_encoding_is_refused() {
        let (state, vitals) = lived_state();
        let packed = pack(&state, &vitals).unwrap();
        assert!(unpack(&[]).is_err());
        let mut newer = packed.clone();
        newer[0] = 3;
        assert!(unpack(&newer).is_err(), "a newer encoding");
        let mut short = packed.clone();
        short.truncate(packed.len() / 2);
        assert!(unpack(&short).is_err(), "cut short");
        assert!(unpack(&packed[..3]).is_err(), "no length");
        let mut huge = packed.clone();
        huge[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(unpack(&huge).is_err(), "a length past the limit");
        let mut deflated = packed;
        deflated[0] = 1;
        assert!(unpack(&deflated).is_err(), "the other encoding's bytes");
    }
}
