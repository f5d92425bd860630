// The patients overview: one tile per device with its latest vitals and its state, and the
// big vitals of the detail view. A device's state comes from its open alerts, its latest
// reading against the server's ranges, and the server's NEWS2 clinical risk.
import type { Device, Latest, NumericVital, Reading } from './api';
import { type Level, priorityLevel, riskLabel, riskLevel, vitalDigits, vitalLabel, vitalUnit } from './labels';
import { renderNewest } from './readings';
import { alertIsActive, nav, state, visibleDevices } from './state';
import { fill, h, localDateTime, localTime, num, sevBadge } from './util';

/** Tiles that just got a reading, highlighted for a moment. */
const freshTiles = new Set<string>();
const FRESH_MS = 1500;

function vital(name: string, value: string, unit: string, out = false): HTMLElement {
  return h('div', { class: 'vital' },
    h('span', { class: 'vital-name' }, name),
    h('span', { class: out ? 'vital-value out' : 'vital-value' }, value, unit ? h('small', {}, unit) : null));
}

/** One numeric vital of a reading, flagged when outside the server's normal range. */
function vitalOf(key: NumericVital, r: Reading | undefined, label = vitalLabel(key)): HTMLElement {
  const v = r?.[key] ?? null;
  return vital(label, num(v, vitalDigits(key)), vitalUnit(key), outOfRange(key, v));
}

function bloodPressure(r: Reading | undefined): HTMLElement {
  const systolic = r?.systolic_bp ?? null;
  const el = vital('Blood pressure', systolic !== null ? `${num(systolic)}/${num(r?.diastolic_bp)}` : '—', vitalUnit('systolic_bp'));
  el.querySelector('.vital-value')?.classList.add('bp');
  return el;
}

/** Outside the normal range the server's rules use (GET /api/ranges); only heart rate and
 *  temperature have one. */
function outOfRange(key: NumericVital, v: number | null): boolean {
  const ranges = state.ranges;
  if (v === null || !ranges) return false;
  const r = key === 'heart_rate' ? ranges.heart_rate : key === 'body_temp' ? ranges.body_temp : null;
  return !!r && (v < r.min || v > r.max);
}

/** A device's state: its open alerts (e.g. SpO₂, NEWS2, offline), then its latest reading
 *  against the ranges and its NEWS2 risk. A patient with an open high-priority alert is never
 *  shown as normal. 'NONE': no reading in the window. */
export function tileState(l: Latest | undefined, deviceId: string): Level | 'NONE' {
  const open = state.alerts.filter((a) => a.device_id === deviceId && alertIsActive(a)).map((a) => priorityLevel(a.priority));
  if (open.includes('CRITICAL')) return 'CRITICAL';
  if (!l) return open.includes('WARNING') ? 'WARNING' : 'NONE';
  const r = l.reading;
  const risk = l.news2 ? riskLevel(l.news2.risk) : 'OK';
  if (outOfRange('heart_rate', r.heart_rate) || outOfRange('body_temp', r.body_temp) || risk === 'CRITICAL') return 'CRITICAL';
  if (open.includes('WARNING')) return 'WARNING';
  const ranges = state.ranges;
  const lowBattery = r.battery_level !== null && !!ranges && r.battery_level < ranges.low_battery.below;
  const weak = r.signal_strength !== null && !!ranges && r.signal_strength < ranges.weak_signal.below;
  if (lowBattery || weak || risk === 'WARNING') return 'WARNING';
  return 'OK';
}

function news2Text(l: Latest | undefined): string {
  const n = l?.news2;
  return n ? `${n.total}${n.partial ? '+' : ''}` : '—';
}

function tile(d: Device): HTMLElement {
  const l = state.latest.get(d.device_id);
  const r = l?.reading;
  const st = tileState(l, d.device_id);
  const foot = (key: NumericVital) => `${vitalLabel(key)} ${num(r?.[key])} ${vitalUnit(key)}`;
  return h('button', {
    class: `tile state-${st}${freshTiles.has(d.device_id) ? ' fresh' : ''}`,
    'data-device': d.device_id,
    'aria-label': `Open ${d.device_id}`,
    onclick: () => nav().setDevice(d.device_id),
  },
  h('div', { class: 'tile-head' },
    h('span', { class: 'tile-id' }, d.device_id),
    st === 'NONE' ? h('span', { class: 'hint' }, 'No data') : sevBadge(st)),
  d.patient_label || d.location ? h('div', { class: 'tile-label' }, [d.patient_label, d.location].filter(Boolean).join(' · ')) : null,
  h('div', { class: 'tile-vitals' },
    vitalOf('heart_rate', r),
    vitalOf('body_temp', r),
    r?.spo2 != null ? vitalOf('spo2', r) : null,
    l?.news2 ? vital('NEWS2', news2Text(l), '') : null),
  h('div', { class: 'tile-foot' },
    h('span', {}, `${foot('battery_level')} · ${foot('signal_strength')}`),
    h('span', { title: localDateTime(r?.timestamp) }, r ? localTime(r.timestamp) : '—')));
}

export function tiles(devices: Device[]): HTMLElement[] {
  return devices.map(tile);
}

/** The detail view's vitals, NEWS2 with the server's clinical risk last. */
export function bigVitals(id: string): HTMLElement[] {
  const l = state.latest.get(id);
  const r = l?.reading;
  const n = l?.news2;
  return [
    vitalOf('heart_rate', r),
    vitalOf('body_temp', r),
    vitalOf('spo2', r),
    vitalOf('respiratory_rate', r),
    bloodPressure(r),
    vitalOf('battery_level', r),
    vitalOf('signal_strength', r),
    h('div', { class: 'vital' },
      h('span', { class: 'vital-name' }, 'NEWS2'),
      h('span', { class: 'vital-value news2' }, news2Text(l)),
      h('span', { class: 'hint' }, n
        ? `${riskLabel(n.risk)}${n.partial ? ' (partial: some vitals missing)' : ''}`
        : `needs ${vitalLabel('spo2')}, ${vitalLabel('respiratory_rate')}, BP or ACVPU`)),
  ];
}

let tilesScheduled = false;
/** Re-renders tiles, big vitals and the newest readings at most once per animation frame. */
export function rerenderTilesSoon(): void {
  if (tilesScheduled) return;
  tilesScheduled = true;
  requestAnimationFrame(() => {
    tilesScheduled = false;
    const grid = document.getElementById('tiles');
    if (grid) fill(grid, ...tiles(visibleDevices()));
    const big = document.getElementById('big-vitals');
    if (big && state.device) fill(big, ...bigVitals(state.device));
    renderNewest();
  });
}

/** Highlights a device's tile for a moment after a live reading. */
export function markFresh(id: string): void {
  freshTiles.add(id);
  window.setTimeout(() => { freshTiles.delete(id); rerenderTilesSoon(); }, FRESH_MS);
}

export function clearFresh(): void {
  freshTiles.clear();
}
