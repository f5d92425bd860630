// The one judgement of a patient the page shows, taken from the server and nowhere else: the
// open alerts (their priority and condition, GET /api/alerts) and the NEWS2 clinical risk
// (GET /api/latest). The page holds no clinical range of its own: a tile's state, the header's
// counts, the Alerts view and a highlighted value all come from here (issue 18, "one
// judgement, shown everywhere").
import type { Alert, Latest, News2, News2Parameter, Priority } from './api';
import { type AlertCondition, CONDITIONS } from './generated/conditions';
import type { VitalKey } from './generated/vitals';
import { type Level, priorityLevel, riskLevel } from './labels';
import { alertIsActive, state } from './state';

const VITALS_OF = new Map<AlertCondition, readonly VitalKey[]>(CONDITIONS.map((c) => [c.condition, c.vitals]));

/** The vitals a condition is about (generated from core's `AlertCondition::vitals`). */
export function conditionVitals(condition: AlertCondition): readonly VitalKey[] {
  return VITALS_OF.get(condition) ?? [];
}

/** The vital each NEWS2 parameter is scored from (the reading's field). */
export const NEWS2_PARAMETER_VITAL: Record<News2Parameter, VitalKey> = {
  respiration_rate: 'respiratory_rate',
  spo2: 'spo2',
  air_or_oxygen: 'on_oxygen',
  systolic_bp: 'systolic_bp',
  pulse: 'heart_rate',
  consciousness: 'consciousness',
  temperature: 'body_temp',
};

export const PRIORITIES: readonly Priority[] = ['high', 'medium', 'low'];
const RANK: Record<Priority, number> = { high: 3, medium: 2, low: 1 };

/** A device's open (not resolved) alerts, highest priority first; every device's when
 *  `deviceId` is absent. Acknowledged alerts are still open: the patient still has them. */
export function openAlerts(deviceId?: string): Alert[] {
  return state.alerts
    .filter((a) => alertIsActive(a) && (deviceId === undefined || a.device_id === deviceId))
    .sort((x, y) => RANK[y.priority] - RANK[x.priority] || y.opened_at.localeCompare(x.opened_at));
}

/** How many alerts are open, by priority: the header's counts. */
export function openCounts(): Record<Priority, number> {
  const counts: Record<Priority, number> = { high: 0, medium: 0, low: 0 };
  for (const a of openAlerts()) counts[a.priority] += 1;
  return counts;
}

/** The NEWS2 risk as a level, never above a warning: the engine's NEWS2 alert (HIGH at
 *  NEWS2 ≥ 7) is what makes a patient critical, once the score has persisted; until then
 *  the score still shows, and the tile is never "normal" while NEWS2 calls for a response. */
function news2Level(news2: News2 | null | undefined): Level {
  const level = news2 ? riskLevel(news2.risk) : 'OK';
  return level === 'CRITICAL' ? 'WARNING' : level;
}

/** A device's state: Critical exactly when it has an open HIGH alert; Warning with an open
 *  MEDIUM alert or a NEWS2 risk that calls for a response; Info with an open LOW alert;
 *  Normal otherwise. 'NONE': no reading in the window and no open alert. */
export function deviceLevel(deviceId: string, latest: Latest | undefined): Level | 'NONE' {
  const top = openAlerts(deviceId)[0];
  const alertLevel = top ? priorityLevel(top.priority) : null;
  if (alertLevel === 'CRITICAL') return 'CRITICAL';
  if (alertLevel === 'WARNING' || news2Level(latest?.news2) === 'WARNING') return 'WARNING';
  if (alertLevel) return alertLevel;
  return latest ? 'OK' : 'NONE';
}

/** The vitals with a condition active now (an open alert whose condition is still present),
 *  each with the highest priority on it: the values the page highlights. A latched alert
 *  whose condition cleared keeps the tile's state but no longer marks the value. */
export function activeVitals(deviceId: string): Map<VitalKey, Priority> {
  const out = new Map<VitalKey, Priority>();
  for (const a of openAlerts(deviceId)) {
    if (!a.condition_present) continue;
    for (const vital of conditionVitals(a.condition)) {
      const had = out.get(vital);
      if (!had || RANK[a.priority] > RANK[had]) out.set(vital, a.priority);
    }
  }
  return out;
}

/** The vitals whose NEWS2 parameter is stale (measured, but longer ago than it stays valid). */
export function staleVitals(news2: News2 | null | undefined): VitalKey[] {
  return (news2?.stale ?? []).map((p) => NEWS2_PARAMETER_VITAL[p]);
}
