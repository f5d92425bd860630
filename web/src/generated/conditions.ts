// Generated from vitalwatch-core's alert conditions (`AlertCondition::vitals`); do not edit.
// One entry per condition an alert can be about, in the engine's order: `vitals` are the
// keys (generated/vitals.ts) of the values an open alert of it highlights, empty when it is
// about no single vital (NEWS2, sensor faults, the device).

import type { VitalKey } from './vitals';

export type AlertCondition = "HEART_RATE_HIGH" | "HEART_RATE_LOW" | "TEMPERATURE_HIGH" | "TEMPERATURE_LOW" | "SPO2_LOW" | "RESPIRATORY_RATE_HIGH" | "RESPIRATORY_RATE_LOW" | "SYSTOLIC_BP_LOW" | "BLOOD_PRESSURE_HIGH" | "CONSCIOUSNESS_CHANGED" | "NEWS2" | "SENSOR_FAULT" | "ARTEFACT" | "WEAK_SIGNAL" | "LOW_BATTERY" | "DEVICE_OFFLINE" | "ML_ANOMALY" | "UNKNOWN_DEVICE";

export interface ConditionInfo { condition: AlertCondition; class: "physiological" | "technical"; vitals: readonly VitalKey[] }

export const CONDITIONS: readonly ConditionInfo[] = [
  { condition: "HEART_RATE_HIGH", class: "physiological", vitals: ["heart_rate"] },
  { condition: "HEART_RATE_LOW", class: "physiological", vitals: ["heart_rate"] },
  { condition: "TEMPERATURE_HIGH", class: "physiological", vitals: ["body_temp"] },
  { condition: "TEMPERATURE_LOW", class: "physiological", vitals: ["body_temp"] },
  { condition: "SPO2_LOW", class: "physiological", vitals: ["spo2"] },
  { condition: "RESPIRATORY_RATE_HIGH", class: "physiological", vitals: ["respiratory_rate"] },
  { condition: "RESPIRATORY_RATE_LOW", class: "physiological", vitals: ["respiratory_rate"] },
  { condition: "SYSTOLIC_BP_LOW", class: "physiological", vitals: ["systolic_bp"] },
  { condition: "BLOOD_PRESSURE_HIGH", class: "physiological", vitals: ["systolic_bp", "diastolic_bp"] },
  { condition: "CONSCIOUSNESS_CHANGED", class: "physiological", vitals: ["consciousness"] },
  { condition: "NEWS2", class: "physiological", vitals: [] },
  { condition: "SENSOR_FAULT", class: "technical", vitals: [] },
  { condition: "ARTEFACT", class: "technical", vitals: [] },
  { condition: "WEAK_SIGNAL", class: "technical", vitals: ["signal_strength"] },
  { condition: "LOW_BATTERY", class: "technical", vitals: ["battery_level"] },
  { condition: "DEVICE_OFFLINE", class: "technical", vitals: [] },
  { condition: "ML_ANOMALY", class: "physiological", vitals: [] },
  { condition: "UNKNOWN_DEVICE", class: "technical", vitals: [] },
];
