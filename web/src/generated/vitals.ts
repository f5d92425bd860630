// Generated from vitalwatch-core's vitals table; do not edit.
// One entry per vital a reading carries, in the table's order: `key` is the wire and JSON
// field name, `column` the SQL column, `min`/`max` the decoder's plausibility bounds (0 and 0
// where `kind` is not "number"), `loinc` the LOINC code of its FHIR vital-sign profile.

export interface VitalInfo { key: string; label: string; unit: string; column: string; min: number; max: number; loinc: string | null; kind: "number" | "acvpu" | "bool" }

export const VITALS: readonly VitalInfo[] = [
  { key: "heart_rate", label: "Heart rate", unit: "bpm", column: "heart_rate", min: 0, max: 400, loinc: "8867-4", kind: "number" },
  { key: "body_temp", label: "Temperature", unit: "°C", column: "body_temp", min: -20, max: 60, loinc: "8310-5", kind: "number" },
  { key: "signal_strength", label: "Signal strength", unit: "dBm", column: "signal_strength", min: -150, max: 20, loinc: null, kind: "number" },
  { key: "battery_level", label: "Battery", unit: "%", column: "battery_level", min: 0, max: 100, loinc: null, kind: "number" },
  { key: "spo2", label: "SpO₂", unit: "%", column: "spo2", min: 0, max: 100, loinc: "2708-6", kind: "number" },
  { key: "respiratory_rate", label: "Respiratory rate", unit: "/min", column: "respiratory_rate", min: 0, max: 200, loinc: "9279-1", kind: "number" },
  { key: "systolic_bp", label: "Systolic BP", unit: "mmHg", column: "systolic_bp", min: 0, max: 400, loinc: "8480-6", kind: "number" },
  { key: "diastolic_bp", label: "Diastolic BP", unit: "mmHg", column: "diastolic_bp", min: 0, max: 300, loinc: "8462-4", kind: "number" },
  { key: "consciousness", label: "Consciousness", unit: "", column: "consciousness", min: 0, max: 0, loinc: null, kind: "acvpu" },
  { key: "on_oxygen", label: "On oxygen", unit: "", column: "on_oxygen", min: 0, max: 0, loinc: null, kind: "bool" },
];

export type VitalKey = "heart_rate" | "body_temp" | "signal_strength" | "battery_level" | "spo2" | "respiratory_rate" | "systolic_bp" | "diastolic_bp" | "consciousness" | "on_oxygen";
