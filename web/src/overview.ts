// The patients overview: one tile per device with its latest vitals, its NEWS2 (stale
// parameters and SpO2 scale) and its open alerts' messages, and the big vitals of the detail
// view. What is judged (the tile's state, a highlighted value) comes from judgement.ts: the
// server's open alerts and NEWS2 risk, never a range of the page's own.
import type { Device, Latest, NumericVital, Priority, Reading } from './api';
import { activeVitals, deviceLevel, openAlerts, staleVitals } from './judgement';
import { type Level, priorityLevel, riskLabel, vitalDigits, vitalLabel, vitalUnit } from './labels';
import { renderNewest } from './readings';
import { nav, state, visibleDevices } from './state';
import { fill, h, localDateTime, localTime, num, sevBadge } from './util';
import type { VitalKey } from './generated/vitals';

/** Tiles that just got a reading, highlighted for a moment. */
const freshTiles = new Set<string>();
const FRESH_MS = 1500;
/** Alert messages shown on a tile; the rest are counted ("+2 more"). */
const TILE_MESSAGES = 3;

/** One vital; `active` is the priority of an open alert whose condition is on it (the value
 *  is then highlighted, with the priority's word for screen readers). */
function vital(key: VitalKey | 'news2', name: string, value: string, unit: string, active?: Priority): HTMLElement {
  const level: Level | null = active ? priorityLevel(active) : null;
  return h('div', { class: 'vital', 'data-vital': key },
    h('span', { class: 'vital-name' }, name),
    h('span', {
      class: level ? `vital-value out out-${level}` : 'vital-value',
      'data-active': active,
      title: active ? `An open ${active}-priority alert is about this value` : undefined,
    }, value, unit ? h('small', {}, unit) : null));
}

/** One numeric vital of a reading, highlighted while a condition on it is active. */
function vitalOf(key: NumericVital, r: Reading | undefined, active: Map<VitalKey, Priority>, label = vitalLabel(key)): HTMLElement {
  const v = r?.[key] ?? null;
  return vital(key, label, num(v, vitalDigits(key)), vitalUnit(key), active.get(key));
}

function bloodPressure(r: Reading | undefined, active: Map<VitalKey, Priority>): HTMLElement {
  const systolic = r?.systolic_bp ?? null;
  const on = active.get('systolic_bp') ?? active.get('diastolic_bp');
  const el = vital('systolic_bp', 'Blood pressure', systolic !== null ? `${num(systolic)}/${num(r?.diastolic_bp)}` : '—', vitalUnit('systolic_bp'), on);
  el.querySelector('.vital-value')?.classList.add('bp');
  return el;
}

/** A device's state (judgement.ts), for the tile and the detail view. */
export function tileState(l: Latest | undefined, deviceId: string): Level | 'NONE' {
  return deviceLevel(deviceId, l);
}

function news2Text(l: Latest | undefined): string {
  const n = l?.news2;
  return n ? `${n.total}${n.partial ? '+' : ''}` : '—';
}

/** The SpO₂ scale the patient is scored on, said when it is Scale 2 (a clinician's decision:
 *  SpO₂ 88–92 % is their target and scores 0). */
function scaleNote(l: Latest | undefined): HTMLElement | null {
  const scale = l?.news2?.scale ?? l?.spo2_scale;
  return scale === 'scale2'
    ? h('span', { class: 'scale2', 'data-scale': 'scale2', title: 'NEWS2 SpO₂ Scale 2: hypercapnic respiratory failure, prescribed target 88–92 %' }, 'SpO₂ Scale 2')
    : null;
}

/** The NEWS2 risk and what it lacks: the stale parameters (measured too long ago, scored as
 *  nothing) by name, and whether others are missing. */
function news2Detail(l: Latest | undefined): HTMLElement | null {
  const n = l?.news2;
  if (!n) return null;
  const stale = staleVitals(n);
  const missing = n.missing.length - n.stale.length;
  return h('span', { class: 'news2-detail' },
    h('span', { class: 'news2-risk', 'data-risk': n.risk }, riskLabel(n.risk)),
    stale.length
      ? h('span', { class: 'news2-stale', 'data-stale': stale.join(' ') }, `stale: ${stale.map(vitalLabel).join(', ')}`)
      : null,
    missing > 0 ? h('span', { class: 'hint' }, `${missing} not measured`) : null);
}

/** The open alerts' messages, highest priority first. */
function alertMessages(deviceId: string): HTMLElement | null {
  const open = openAlerts(deviceId);
  if (!open.length) return null;
  const more = open.length - TILE_MESSAGES;
  return h('div', { class: 'tile-alerts' },
    ...open.slice(0, TILE_MESSAGES).map((a) => h('div', { class: `msg msg-${priorityLevel(a.priority)}`, 'data-alert-id': a.id, 'data-priority': a.priority }, a.message)),
    more > 0 ? h('div', { class: 'hint' }, `+${more} more`) : null);
}

function tile(d: Device): HTMLElement {
  const l = state.latest.get(d.device_id);
  const r = l?.reading;
  const st = tileState(l, d.device_id);
  const active = activeVitals(d.device_id);
  const foot = (key: NumericVital) => `${vitalLabel(key)} ${num(r?.[key])} ${vitalUnit(key)}`;
  return h('button', {
    class: `tile state-${st}${freshTiles.has(d.device_id) ? ' fresh' : ''}`,
    'data-device': d.device_id,
    'data-state': st,
    'aria-label': `Open ${d.device_id}`,
    onclick: () => nav().setDevice(d.device_id),
  },
  h('div', { class: 'tile-head' },
    h('span', { class: 'tile-id' }, d.device_id),
    scaleNote(l),
    st === 'NONE' ? h('span', { class: 'hint' }, 'No data') : sevBadge(st)),
  d.patient_label || d.location ? h('div', { class: 'tile-label' }, [d.patient_label, d.location].filter(Boolean).join(' · ')) : null,
  h('div', { class: 'tile-vitals' },
    vitalOf('heart_rate', r, active),
    vitalOf('body_temp', r, active),
    r?.spo2 != null ? vitalOf('spo2', r, active) : null,
    l?.news2 ? h('div', { class: 'vital vital-news2', 'data-vital': 'news2' },
      h('span', { class: 'vital-name' }, 'NEWS2'),
      h('span', { class: 'vital-value news2' }, news2Text(l)),
      news2Detail(l)) : null),
  alertMessages(d.device_id),
  h('div', { class: 'tile-foot' },
    h('span', {}, `${foot('battery_level')} · ${foot('signal_strength')}`),
    h('span', { title: localDateTime(r?.timestamp) }, r ? localTime(r.timestamp) : '—')));
}

export function tiles(devices: Device[]): HTMLElement[] {
  return devices.map(tile);
}

/** The detail view's vitals, NEWS2 with the server's clinical risk, scale and stale
 *  parameters last, then the open alerts' messages. */
export function bigVitals(id: string): HTMLElement[] {
  const l = state.latest.get(id);
  const r = l?.reading;
  const n = l?.news2;
  const active = activeVitals(id);
  return [
    vitalOf('heart_rate', r, active),
    vitalOf('body_temp', r, active),
    vitalOf('spo2', r, active),
    vitalOf('respiratory_rate', r, active),
    bloodPressure(r, active),
    vitalOf('battery_level', r, active),
    vitalOf('signal_strength', r, active),
    h('div', { class: 'vital vital-news2', 'data-vital': 'news2' },
      h('span', { class: 'vital-name' }, 'NEWS2'),
      h('span', { class: 'vital-value news2' }, news2Text(l)),
      n ? news2Detail(l) : h('span', { class: 'hint' }, `needs ${vitalLabel('spo2')}, ${vitalLabel('respiratory_rate')}, BP or ACVPU`),
      n ? h('span', { class: 'hint' }, `scored on SpO₂ ${n.scale === 'scale2' ? 'Scale 2' : 'Scale 1'}${n.partial ? ' (partial: some vitals missing or stale)' : ''}`) : null,
      scaleNote(l)),
    alertMessages(id) ?? h('span', { class: 'hint' }, 'No open alerts.'),
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
