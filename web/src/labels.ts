// What things are called on the page: the vitals (from the generated table, never written out
// here), anomaly types, alert conditions and priorities, NEWS2 risk.
import { VITALS, type VitalInfo, type VitalKey } from './generated/vitals';
import type { AlertCondition, AnomalyType, ClinicalRisk, Priority, SeriesMetric } from './api';

const BY_KEY = new Map(VITALS.map((v) => [v.key, v]));

/** A vital's label, unit and bounds. Throws when the generated table lacks `key`. */
export function vitalInfo(key: VitalKey): VitalInfo {
  const info = BY_KEY.get(key);
  if (!info) throw new Error(`vital ${key} is missing from generated/vitals.ts`);
  return info;
}

export function vitalLabel(key: VitalKey): string {
  return vitalInfo(key).label;
}

export function vitalUnit(key: VitalKey): string {
  return vitalInfo(key).unit;
}

/** Decimals shown for a vital: temperature to 0.1 °C, everything else whole. */
export function vitalDigits(key: VitalKey): number {
  return key === 'body_temp' ? 1 : 0;
}

const TYPE_LABELS: Record<AnomalyType, string> = {
  OUT_OF_RANGE_HR: 'Heart rate out of range',
  OUT_OF_RANGE_TEMP: 'Temperature out of range',
  WEAK_SIGNAL: 'Weak signal',
  LOW_BATTERY: 'Low battery',
  ML_ANOMALY: 'Unusual pattern (model)',
  MISSING_FIELDS: 'Incomplete reading',
  UNKNOWN_DEVICE: 'Unknown device',
  SENSOR_FAULT: 'Sensor fault',
};

export function typeLabel(t: AnomalyType): string {
  return TYPE_LABELS[t] ?? t;
}

/** The vital an anomaly type is about, where it is about one (chart markers). */
export const ANOMALY_VITAL: Partial<Record<AnomalyType, SeriesMetric>> = {
  OUT_OF_RANGE_HR: 'heart_rate',
  OUT_OF_RANGE_TEMP: 'body_temp',
  WEAK_SIGNAL: 'signal_strength',
  LOW_BATTERY: 'battery_level',
};

const CONDITION_LABELS: Record<AlertCondition, string> = {
  HEART_RATE_HIGH: 'Heart rate high',
  HEART_RATE_LOW: 'Heart rate low',
  TEMPERATURE_HIGH: 'Temperature high',
  TEMPERATURE_LOW: 'Temperature low',
  SPO2_LOW: 'SpO₂ low',
  RESPIRATORY_RATE_HIGH: 'Respiratory rate high',
  RESPIRATORY_RATE_LOW: 'Respiratory rate low',
  SYSTOLIC_BP_LOW: 'Systolic BP low',
  BLOOD_PRESSURE_HIGH: 'Blood pressure high',
  CONSCIOUSNESS_CHANGED: 'Consciousness changed (ACVPU)',
  NEWS2: 'NEWS2',
  SENSOR_FAULT: 'Sensor fault',
  ARTEFACT: 'Signal artefacts',
  WEAK_SIGNAL: 'Weak signal',
  LOW_BATTERY: 'Low battery',
  DEVICE_OFFLINE: 'Device offline',
  ML_ANOMALY: 'Unusual pattern (model)',
  UNKNOWN_DEVICE: 'Unknown device',
};

export function conditionLabel(c: AlertCondition): string {
  return CONDITION_LABELS[c] ?? c;
}

/** How the page shows a level: a severity badge's class and word. */
export type Level = 'CRITICAL' | 'WARNING' | 'INFO' | 'OK';

/** IEC 60601-1-8 priorities as the page's levels: high is shown as critical. */
export function priorityLevel(p: Priority): Level {
  return p === 'high' ? 'CRITICAL' : p === 'medium' ? 'WARNING' : 'INFO';
}

/** The server's NEWS2 clinical risk (RCP 2017) as a level: high calls for an emergency
 *  response, medium and low–medium (one parameter scoring 3) for an urgent one. */
export function riskLevel(r: ClinicalRisk): Level {
  return r === 'high' ? 'CRITICAL' : r === 'medium' || r === 'low_medium' ? 'WARNING' : 'OK';
}

const RISK_LABELS: Record<ClinicalRisk, string> = {
  low: 'low risk', low_medium: 'low–medium risk', medium: 'medium risk', high: 'high risk',
};

export function riskLabel(r: ClinicalRisk): string {
  return RISK_LABELS[r] ?? r;
}
