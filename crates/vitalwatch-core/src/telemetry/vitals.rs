//! The table of vitals: for each vital a reading can carry, everything the code needs to know
//! about it (payload key, label, units, plausibility bounds, SQL column, kind, LOINC code),
//! each fact written once, in [`VITALS`].
//!
//! What lists vitals is derived from the table or checked against it: the payload [`Field`]s
//! and the decoder, the default [`Limits`], the anomaly model's features, the simulator's CSV,
//! the series API, the SQL column list and the dashboard's TypeScript
//! (`web/src/generated/vitals.ts`, rendered from this table by a unit test that fails when the
//! committed file is stale; `VITALWATCH_UPDATE_GENERATED=1 cargo test -p vitalwatch-core
//! vitals` rewrites it).
//!
//! A vital's `key` is its one name outside SQL: the payload field, the CSV column, the model
//! file's feature name, the series name, the `[limits]` key and the TypeScript `VitalKey` all
//! spell it that way.
//!
//! This module holds facts about the quantities, not clinical judgement: normal ranges live in
//! `rules`, NEWS2 bands in `news2`.
//!
//! [`Field`]: super::Field
//! [`Limits`]: super::Limits

use super::Bounds;

/// What kind of value a vital holds on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VitalKind {
    /// A finite JSON number, within the vital's plausibility bounds.
    Number,
    /// One ACVPU letter (`A`, `C`, `V`, `P`, `U`), see [`Consciousness`](super::Consciousness).
    Acvpu,
    /// `true` or `false`.
    Bool,
}

impl VitalKind {
    /// The name the TypeScript table uses.
    pub fn as_str(self) -> &'static str {
        match self {
            VitalKind::Number => "number",
            VitalKind::Acvpu => "acvpu",
            VitalKind::Bool => "bool",
        }
    }
}

/// Everything about one vital. See the module docs for what is derived from it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VitalInfo {
    pub vital: VitalKey,
    /// The payload field, as the seed spells it; also the CSV column, model feature, series
    /// and `[limits]` name.
    pub key: &'static str,
    /// What a person reads on the dashboard.
    pub label: &'static str,
    /// The unit shown after a value (empty for ACVPU and booleans).
    pub unit: &'static str,
    /// The unit's UCUM code, as a FHIR `valueQuantity.code` carries it [FHIR-VS].
    pub ucum: Option<&'static str>,
    pub kind: VitalKind,
    /// Default plausibility bounds of the sensor (present exactly for [`VitalKind::Number`]):
    /// beyond them a value is refused as impossible input. Clinical ranges are in `rules`.
    pub plausible: Option<Bounds>,
    /// Decimal places worth showing to a clinician.
    pub decimals: u8,
    /// The column of the `readings` table that stores it.
    pub column: &'static str,
    /// The LOINC code of its FHIR R4 vital-signs profile [FHIR-VS]; `None` for device facts
    /// (battery, RSSI), which are not vital signs, and where CLINICAL.md gives no code.
    pub loinc: Option<&'static str>,
    /// A second LOINC coding the profile adds (SpO2 "by pulse oximetry") [FHIR-O2].
    pub loinc_also: Option<&'static str>,
    /// One of the seed's four payload fields: a reading without it is a `MISSING_FIELDS`
    /// finding (the extended vitals are optional).
    pub seed: bool,
    /// Aggregated by `GET /api/series`. Diastolic BP is stored and exported but not charted.
    pub series: bool,
}

/// Declares [`VitalKey`] and [`VITALS`] from one list, so a vital's variant and its row
/// cannot drift apart (row `i` is variant `i`).
macro_rules! vital_table {
    ($($(#[$doc:meta])* $variant:ident { $($row:tt)* })*) => {
        /// A vital a reading can carry: an index into [`VITALS`].
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum VitalKey {
            $($(#[$doc])* $variant,)*
        }

        /// Every vital, in table order (the order of payload docs, SQL columns and CSV columns).
        pub const VITALS: [VitalInfo; [$(VitalKey::$variant),*].len()] = [
            $(VitalInfo { vital: VitalKey::$variant, $($row)* },)*
        ];

        impl VitalKey {
            /// Every vital, in table order.
            pub const ALL: [VitalKey; VITALS.len()] = [$(VitalKey::$variant),*];
        }
    };
}

vital_table! {
    /// Pulse rate.
    HeartRate {
        key: "heart_rate",
        label: "Heart rate",
        unit: "bpm",
        ucum: Some("/min"),
        kind: VitalKind::Number,
        // Sensors report 0 when detached and up to ~350 on artefacts; beyond is garbage.
        plausible: Some(Bounds::new(0.0, 400.0)),
        decimals: 0,
        column: "heart_rate",
        // FHIR `heartrate` profile [FHIR-HR].
        loinc: Some("8867-4"),
        loinc_also: None,
        seed: true,
        series: true,
    }
    /// Body temperature.
    BodyTemp {
        key: "body_temp",
        label: "Temperature",
        unit: "°C",
        ucum: Some("Cel"),
        kind: VitalKind::Number,
        // A probe off the skin reads room temperature, or 0; beyond is garbage.
        plausible: Some(Bounds::new(-20.0, 60.0)),
        // NEWS2 bands temperature to 0.1 °C (RCP 2017).
        decimals: 1,
        column: "body_temp",
        // FHIR `bodytemp` profile [FHIR-VS].
        loinc: Some("8310-5"),
        loinc_also: None,
        seed: true,
        series: true,
    }
    /// Radio signal strength (RSSI) of the device: a technical value, not a vital sign.
    SignalStrength {
        key: "signal_strength",
        label: "Signal strength",
        unit: "dBm",
        ucum: Some("dB[mW]"),
        kind: VitalKind::Number,
        // RSSI in dBm: Wi-Fi/BLE radios report roughly -127..0.
        plausible: Some(Bounds::new(-150.0, 20.0)),
        decimals: 0,
        column: "signal_strength",
        // A device fact, not a vital sign: no LOINC code [PHD].
        loinc: None,
        loinc_also: None,
        seed: true,
        series: true,
    }
    /// Battery charge of the device: a technical value, not a vital sign.
    BatteryLevel {
        key: "battery_level",
        label: "Battery",
        unit: "%",
        ucum: Some("%"),
        kind: VitalKind::Number,
        plausible: Some(Bounds::new(0.0, 100.0)),
        decimals: 0,
        column: "battery_level",
        // A device fact (MDC_ATTR_VAL_BATT_CHARGE in the PHD IG), not a vital sign [PHD].
        loinc: None,
        loinc_also: None,
        seed: true,
        series: true,
    }
    /// Oxygen saturation.
    Spo2 {
        key: "spo2",
        label: "SpO₂",
        unit: "%",
        ucum: Some("%"),
        kind: VitalKind::Number,
        plausible: Some(Bounds::new(0.0, 100.0)),
        decimals: 0,
        column: "spo2",
        // FHIR `oxygensat` profile, with "by pulse oximetry" as a second coding [FHIR-O2].
        loinc: Some("2708-6"),
        loinc_also: Some("59408-5"),
        seed: false,
        series: true,
    }
    /// Respiration rate.
    RespiratoryRate {
        key: "respiratory_rate",
        label: "Respiratory rate",
        unit: "/min",
        ucum: Some("/min"),
        kind: VitalKind::Number,
        plausible: Some(Bounds::new(0.0, 200.0)),
        decimals: 0,
        column: "respiratory_rate",
        // FHIR `resprate` profile [FHIR-RR].
        loinc: Some("9279-1"),
        loinc_also: None,
        seed: false,
        series: true,
    }
    /// Systolic blood pressure.
    SystolicBp {
        key: "systolic_bp",
        label: "Systolic BP",
        unit: "mmHg",
        ucum: Some("mm[Hg]"),
        kind: VitalKind::Number,
        plausible: Some(Bounds::new(0.0, 400.0)),
        decimals: 0,
        column: "systolic_bp",
        // Systolic component of the FHIR `bp` profile (panel 85354-9) [FHIR-VS].
        loinc: Some("8480-6"),
        loinc_also: None,
        seed: false,
        series: true,
    }
    /// Diastolic blood pressure.
    DiastolicBp {
        key: "diastolic_bp",
        label: "Diastolic BP",
        unit: "mmHg",
        ucum: Some("mm[Hg]"),
        kind: VitalKind::Number,
        plausible: Some(Bounds::new(0.0, 300.0)),
        decimals: 0,
        column: "diastolic_bp",
        // Diastolic component of the FHIR `bp` profile (panel 85354-9) [FHIR-VS].
        loinc: Some("8462-4"),
        loinc_also: None,
        seed: false,
        series: false,
    }
    /// Level of consciousness on the ACVPU scale (NEWS2).
    Consciousness {
        key: "consciousness",
        label: "Consciousness",
        unit: "",
        ucum: None,
        kind: VitalKind::Acvpu,
        plausible: None,
        decimals: 0,
        column: "consciousness",
        // Not in the FHIR vital-signs profile; CLINICAL.md gives no code for ACVPU.
        loinc: None,
        loinc_also: None,
        seed: false,
        series: false,
    }
    /// Whether the patient breathes supplemental oxygen (NEWS2's "air or oxygen?").
    OnOxygen {
        key: "on_oxygen",
        label: "On oxygen",
        unit: "",
        ucum: None,
        kind: VitalKind::Bool,
        plausible: None,
        decimals: 0,
        column: "on_oxygen",
        // Not in the FHIR vital-signs profile; CLINICAL.md gives no code.
        loinc: None,
        loinc_also: None,
        seed: false,
        series: false,
    }
}

/// [`VITALS`] as one static array, so [`VitalKey::info`] can hand out `&'static` rows.
const TABLE: &[VitalInfo; VITALS.len()] = &VITALS;

/// A subset of the table, selected at compile time.
#[derive(Clone, Copy)]
enum Subset {
    Numeric,
    Seed,
    Series,
}

const fn in_subset(info: &VitalInfo, subset: Subset) -> bool {
    match subset {
        Subset::Numeric => matches!(info.kind, VitalKind::Number),
        Subset::Seed => info.seed,
        Subset::Series => info.series,
    }
}

const fn count(subset: Subset) -> usize {
    let (mut idx, mut n) = (0, 0);
    while idx < VITALS.len() {
        if in_subset(&VITALS[idx], subset) {
            n += 1;
        }
        idx += 1;
    }
    n
}

const fn select<const N: usize>(subset: Subset) -> [VitalKey; N] {
    let mut out = [VitalKey::HeartRate; N];
    let (mut idx, mut n) = (0, 0);
    while idx < VITALS.len() {
        if in_subset(&VITALS[idx], subset) {
            out[n] = VITALS[idx].vital;
            n += 1;
        }
        idx += 1;
    }
    assert!(n == N, "the subset's length is its count");
    out
}

const fn columns<const N: usize>(vitals: [VitalKey; N]) -> [&'static str; N] {
    let mut out = [""; N];
    let mut idx = 0;
    while idx < N {
        out[idx] = vitals[idx].info().column;
        idx += 1;
    }
    out
}

// The table's own invariants, checked by the compiler.
const _: () = {
    let mut idx = 0;
    while idx < VITALS.len() {
        let info = &VITALS[idx];
        assert!(info.vital as usize == idx, "row i describes variant i");
        assert!(
            info.plausible.is_some() == matches!(info.kind, VitalKind::Number),
            "numbers, and only numbers, have plausibility bounds"
        );
        assert!(
            !info.seed || matches!(info.kind, VitalKind::Number),
            "the seed's fields are numbers"
        );
        assert!(
            !info.series || matches!(info.kind, VitalKind::Number),
            "only numbers are charted"
        );
        idx += 1;
    }
};

impl VitalKey {
    /// How many vitals there are.
    pub const COUNT: usize = VITALS.len();
    /// The numeric vitals, in table order: the `REAL` columns of `readings`, the model's
    /// possible features.
    pub const NUMERIC: [VitalKey; count(Subset::Numeric)] = select(Subset::Numeric);
    /// The seed's four payload vitals, in table order.
    pub const SEED: [VitalKey; count(Subset::Seed)] = select(Subset::Seed);
    /// The vitals `GET /api/series` aggregates, in table order.
    pub const SERIES: [VitalKey; count(Subset::Series)] = select(Subset::Series);
    /// The SQL columns of every vital, in table order.
    pub const COLUMNS: [&'static str; VITALS.len()] = columns(VitalKey::ALL);
    /// The SQL columns of the numeric vitals, in table order.
    pub const NUMERIC_COLUMNS: [&'static str; count(Subset::Numeric)] = columns(VitalKey::NUMERIC);

    pub const fn info(self) -> &'static VitalInfo {
        &TABLE[self as usize]
    }

    /// The payload key (see [`VitalInfo::key`]).
    pub const fn key(self) -> &'static str {
        self.info().key
    }

    pub const fn kind(self) -> VitalKind {
        self.info().kind
    }

    /// The vital whose [`key`](VitalKey::key) is `key`.
    pub fn from_key(key: &str) -> Option<VitalKey> {
        VitalKey::ALL.into_iter().find(|vital| vital.key() == key)
    }
}

impl VitalInfo {
    /// What goes between a value and its unit: nothing before `/min` (`27/min`) or an empty
    /// unit, a space otherwise (`72 bpm`, `98 %`).
    pub fn unit_separator(&self) -> &'static str {
        if self.unit.is_empty() || self.unit.starts_with('/') {
            ""
        } else {
            " "
        }
    }
}

#[cfg(test)]
mod typescript;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vitals_keys_are_unique_and_round_trip() {
        for vital in VitalKey::ALL {
            assert_eq!(VitalKey::from_key(vital.key()), Some(vital));
            let same_key = VITALS.iter().filter(|i| i.key == vital.key()).count();
            let same_column = VITALS
                .iter()
                .filter(|i| i.column == vital.info().column)
                .count();
            assert_eq!((same_key, same_column), (1, 1), "{vital:?}");
        }
        assert_eq!(VitalKey::from_key("temperature"), None);
    }

    #[test]
    fn vitals_subsets_follow_the_table() {
        use VitalKey::*;
        assert_eq!(
            VitalKey::SEED,
            [HeartRate, BodyTemp, SignalStrength, BatteryLevel]
        );
        assert_eq!(VitalKey::NUMERIC.len(), 8);
        assert!(!VitalKey::NUMERIC.contains(&Consciousness));
        assert!(!VitalKey::SERIES.contains(&DiastolicBp));
        assert_eq!(
            VitalKey::NUMERIC_COLUMNS,
            [
                "heart_rate",
                "body_temp",
                "signal_strength",
                "battery_level",
                "spo2",
                "respiratory_rate",
                "systolic_bp",
                "diastolic_bp"
            ]
        );
        assert_eq!(VitalKey::COLUMNS[8..], ["consciousness", "on_oxygen"]);
    }

    #[test]
    fn vitals_loinc_codes_are_the_fhir_profiles() {
        let loinc = |vital: VitalKey| vital.info().loinc;
        assert_eq!(loinc(VitalKey::HeartRate), Some("8867-4"));
        assert_eq!(loinc(VitalKey::BodyTemp), Some("8310-5"));
        assert_eq!(loinc(VitalKey::Spo2), Some("2708-6"));
        assert_eq!(VitalKey::Spo2.info().loinc_also, Some("59408-5"));
        assert_eq!(loinc(VitalKey::RespiratoryRate), Some("9279-1"));
        assert_eq!(loinc(VitalKey::SystolicBp), Some("8480-6"));
        assert_eq!(loinc(VitalKey::DiastolicBp), Some("8462-4"));
        assert_eq!(loinc(VitalKey::SignalStrength), None);
        assert_eq!(loinc(VitalKey::BatteryLevel), None);
    }
}
