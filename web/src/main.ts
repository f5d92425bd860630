// The VitalWatch dashboard. Loads the window's data from the API once, then stays current
// from the live event stream (/api/events): no polling. Stored times are UTC; everything is
// shown in the viewer's time zone. The time range and device filter apply to every view.
import './style.css';
import { Chart, Line, Marker } from './charts';
import {
  HttpError, PALETTE, ago, byId, fill, getJson, h, intFmt, isUnauthorized, localDateTime, localTime, num,
  onUnauthorized, postJson, setCsrfToken, sevBadge, svg, typeLabel, withQuery,
} from './util';
import { AlertItem, alertDevice, alertId, alertIsActive, alertSeverity, renderAlerts, sortAlerts } from './alerts';
import { Me, bindLogin, canActOnAlerts, hideLogin, showLogin, showUser, signOut, whoAmI } from './auth';

interface Reading {
  id: number; device_id: string; timestamp: string; received_at: string;
  heart_rate: number | null; body_temp: number | null; signal_strength: number | null;
  battery_level: number | null; spo2: number | null; respiratory_rate: number | null;
  systolic_bp: number | null; diastolic_bp: number | null; consciousness: string | null;
}
interface Anomaly {
  id: number; device_id: string; reading_id: number | null; type: string; severity: string;
  value: number | null; threshold: number | null; detected_at: string; details: string;
}
interface Device {
  device_id: string; patient_label: string | null; location: string | null; status: string;
  last_seen: string | null; total_readings: number; expected_interval_s: number;
}
interface News2 { total: number; risk: string; partial: boolean }
interface Latest { reading: Reading; news2: News2 | null }
interface Stats {
  total_devices: number; active_last_hour: number; readings: number; anomalies: number;
  anomalous_readings: number; anomaly_rate: number;
  by_type: { type: string; count: number; last_detected: string | null }[];
  by_severity: { severity: string; count: number }[];
  by_device: { device_id: string; readings: number; anomalies: number }[];
}
interface Metric { name: string; avg: (number | null)[]; min: (number | null)[]; max: (number | null)[] }
interface Series { device_id: string; bucket_s: number; t: number[]; count: number[]; metrics: Metric[] }
interface Ranges {
  heart_rate: { min: number; max: number }; body_temp: { min: number; max: number };
  weak_signal: { below: number }; low_battery: { below: number };
}

type Tab = 'realtime' | 'alerts' | 'anomalies' | 'devices' | 'statistics' | 'logs';
const TABS: Tab[] = ['realtime', 'alerts', 'anomalies', 'devices', 'statistics', 'logs'];
/** Devices drawn in one multi-device chart; more lines than colours is unreadable. */
const MAX_CHART_DEVICES = 8;
const ANOMALY_CARDS = 100;
const NEWEST_ROWS = 12;

const state = {
  rangeS: 3600,
  device: '',
  tab: 'realtime' as Tab,
  anomalyType: '',
  devices: [] as Device[],
  latest: new Map<string, Latest>(),
  stats: null as Stats | null,
  anomalies: [] as Anomaly[],
  newest: [] as Reading[],
  logs: [] as Reading[],
  logsCursor: null as string | null,
  ranges: null as Ranges | null,
  alertsAvailable: false,
  alerts: [] as AlertItem[],
  knownCritical: new Set<string>(),
  /** Critical anomalies that arrived live for devices the filter hides, by device. */
  hiddenCriticalAnomalies: new Map<string, number>(),
  chartDevices: [] as string[],
  loadedAt: 0,
  generation: 0,
};
const charts = new Map<string, Chart>();
/** Who is signed in (or the trusted loopback client); null while the sign-in form shows. */
let session: Me | null = null;
/** The normal ranges, fetched once per session; tiles and chart bands need them. */
let rangesReady: Promise<void> | null = null;
function loadRanges(): Promise<void> {
  rangesReady ??= getJson<Ranges>('/api/ranges')
    .then((r) => { state.ranges = r; })
    .catch((err) => {
      rangesReady = null;
      if (!isUnauthorized(err)) console.warn('ranges unavailable', err);
    });
  return rangesReady;
}
const freshTiles = new Set<string>();

function sinceIso(): string {
  return new Date(Date.now() - state.rangeS * 1000).toISOString();
}
function windowParams(): Record<string, string | undefined> {
  return { since: sinceIso(), device_id: state.device || undefined };
}
function inWindow(iso: string): boolean {
  return new Date(iso).getTime() >= Date.now() - state.rangeS * 1000;
}
function matchesDevice(id: string): boolean {
  return !state.device || state.device === id;
}
function colorOf(id: string): string {
  const idx = state.chartDevices.indexOf(id);
  return PALETTE[(idx >= 0 ? idx : 0) % PALETTE.length];
}
function deviceLabel(id: string): string {
  const d = state.devices.find((x) => x.device_id === id);
  return d?.patient_label ? `${id} · ${d.patient_label}` : id;
}

// ---------------------------------------------------------------------------- loading

async function loadAll(): Promise<void> {
  if (!session) return;
  const gen = ++state.generation;
  writeUrl();
  const p = windowParams();
  // Aggregates over a long window are the slowest read: everything else renders first, and
  // the metrics (and the views that count) fill in when they arrive.
  const statsPromise = getJson<Stats>('/api/stats', p);
  const [devices, latest, anomalies, newest] = await Promise.all([
    getJson<{ devices: Device[] }>('/api/devices'),
    getJson<{ latest: Latest[] }>('/api/latest', p),
    getJson<{ anomalies: Anomaly[] }>('/api/anomalies', { ...p, limit: '500' }),
    getJson<{ readings: Reading[] }>('/api/readings', { ...p, limit: String(NEWEST_ROWS) }),
    loadRanges(),
  ]);
  if (gen !== state.generation) return;
  state.devices = devices.devices;
  state.stats = null;
  state.latest = new Map(latest.latest.map((l) => [l.reading.device_id, l]));
  state.anomalies = anomalies.anomalies;
  state.newest = newest.readings;
  state.logs = [];
  state.logsCursor = null;
  state.loadedAt = Date.now();
  renderDeviceOptions();
  renderMetrics();
  const tabRendered = renderTab();
  const stats = await statsPromise;
  if (gen !== state.generation) return;
  state.stats = stats;
  renderMetrics();
  if (state.tab === 'anomalies' || state.tab === 'devices' || state.tab === 'statistics') await renderTab();
  await tabRendered;
}

let reloadTimer = 0;
function reloadSoon(delayMs = 300): void {
  window.clearTimeout(reloadTimer);
  reloadTimer = window.setTimeout(() => { void loadAll().catch(showLoadError); }, delayMs);
}

function showLoadError(err: unknown): void {
  // A 401 already brought the sign-in form back (onUnauthorized).
  if (isUnauthorized(err) || !session) return;
  console.error(err);
  setConn('down', 'Server unreachable');
}

// ---------------------------------------------------------------------------- header & filters

function setConn(kind: 'live' | 'down' | 'connecting', text: string): void {
  const el = byId('conn');
  el.className = `conn conn-${kind}`;
  el.textContent = text;
  byId('disconnected').hidden = kind !== 'down';
}

function renderDeviceOptions(): void {
  const select = byId<HTMLSelectElement>('device');
  const want = ['', ...state.devices.map((d) => d.device_id)];
  const have = Array.from(select.options).map((o) => o.value);
  if (want.join('\n') === have.join('\n')) return;
  fill(select, 
    h('option', { value: '' }, 'All devices'),
    ...state.devices.map((d) => h('option', { value: d.device_id }, deviceLabel(d.device_id))),
  );
  select.value = state.device;
}

function renderMetrics(): void {
  const s = state.stats;
  if (!s) {
    for (const id of ['m-devices', 'm-readings', 'm-anomalies', 'm-rate', 'm-active']) byId(id).textContent = '…';
    return;
  }
  byId('m-devices').textContent = intFmt.format(s.total_devices);
  byId('m-readings').textContent = intFmt.format(s.readings);
  byId('m-anomalies').textContent = intFmt.format(s.anomalies);
  byId('m-rate').textContent = `${(s.anomaly_rate * 100).toFixed(1)} %`;
  byId('m-active').textContent = intFmt.format(s.active_last_hour);
}

function selectTab(tab: Tab, focus = false): void {
  state.tab = tab;
  for (const t of TABS) {
    const button = byId(`tab-${t}`);
    const selected = t === tab;
    button.setAttribute('aria-selected', String(selected));
    button.tabIndex = selected ? 0 : -1;
    byId(`panel-${t}`).hidden = !selected;
    if (selected && focus) button.focus();
  }
  void renderTab();
}

function setDevice(id: string): void {
  state.device = id;
  state.hiddenCriticalAnomalies.clear();
  byId<HTMLSelectElement>('device').value = id;
  updateHiddenCriticalBanner();
  reloadSoon(0);
}

function bindControls(): void {
  byId<HTMLSelectElement>('range').addEventListener('change', (e) => {
    state.rangeS = Number((e.target as HTMLSelectElement).value);
    reloadSoon(0);
  });
  byId<HTMLSelectElement>('device').addEventListener('change', (e) => {
    setDevice((e.target as HTMLSelectElement).value);
  });
  byId('filters').addEventListener('submit', (e) => e.preventDefault());
  const tabs = byId('tabs');
  tabs.addEventListener('click', (e) => {
    const button = (e.target as HTMLElement).closest('button[role=tab]');
    if (button) selectTab(button.id.replace('tab-', '') as Tab);
  });
  tabs.addEventListener('keydown', (e) => {
    const visible = TABS.filter((t) => !byId(`tab-${t}`).hidden);
    const idx = visible.indexOf(state.tab);
    let next = -1;
    if (e.key === 'ArrowRight') next = (idx + 1) % visible.length;
    else if (e.key === 'ArrowLeft') next = (idx - 1 + visible.length) % visible.length;
    else if (e.key === 'Home') next = 0;
    else if (e.key === 'End') next = visible.length - 1;
    if (next >= 0) {
      e.preventDefault();
      selectTab(visible[next], true);
    }
  });
  byId('tz').textContent = `Times in ${Intl.DateTimeFormat().resolvedOptions().timeZone}`;
  const tick = () => { byId('clock').textContent = new Date().toLocaleTimeString(); };
  tick();
  window.setInterval(tick, 1000);
  // The window slides with the clock: refetch aggregates when it has moved by 5 % of its
  // length (at least a minute) so counts of readings leaving the window stay right.
  window.setInterval(() => {
    if (Date.now() - state.loadedAt > Math.max(60_000, state.rangeS * 50)) reloadSoon(0);
  }, 15_000);
}

// ---------------------------------------------------------------------------- views

async function renderTab(): Promise<void> {
  switch (state.tab) {
    case 'realtime': return renderRealtime();
    case 'alerts': return renderAlertsPanel();
    case 'anomalies': return renderAnomalies();
    case 'devices': return renderDevices();
    case 'statistics': return renderStatistics();
    case 'logs': return renderLogs();
  }
}

function destroyCharts(): void {
  for (const c of charts.values()) c.destroy();
  charts.clear();
}

function vital(name: string, value: string, unit: string, out = false): HTMLElement {
  return h('div', { class: 'vital' },
    h('span', { class: 'vital-name' }, name),
    h('span', { class: out ? 'vital-value out' : 'vital-value' }, value, unit ? h('small', {}, unit) : null));
}

function bp(systolic: number | null, diastolic: number | null): HTMLElement {
  const el = vital('Blood pressure', systolic !== null ? `${num(systolic)}/${num(diastolic)}` : '—', 'mmHg');
  el.querySelector('.vital-value')?.classList.add('bp');
  return el;
}

function hrOut(v: number | null): boolean {
  const r = state.ranges?.heart_rate;
  return v !== null && !!r && (v < r.min || v > r.max);
}
function tempOut(v: number | null): boolean {
  const r = state.ranges?.body_temp;
  return v !== null && !!r && (v < r.min || v > r.max);
}

/** A device's state: its open alerts (e.g. SpO₂, NEWS2, offline), then its latest reading
 *  against the ranges. A patient with an open high-priority alert is never shown as normal. */
function tileState(l: Latest | undefined, deviceId: string): string {
  const open = state.alerts.filter((a) => alertDevice(a) === deviceId && alertIsActive(a)).map(alertSeverity);
  if (open.includes('CRITICAL')) return 'CRITICAL';
  if (!l) return open.includes('WARNING') ? 'WARNING' : 'NONE';
  const r = l.reading;
  if (hrOut(r.heart_rate) || tempOut(r.body_temp) || (l.news2 && l.news2.total >= 7)) return 'CRITICAL';
  if (open.includes('WARNING')) return 'WARNING';
  const lowBattery = r.battery_level !== null && state.ranges && r.battery_level < state.ranges.low_battery.below;
  const weak = r.signal_strength !== null && state.ranges && r.signal_strength < state.ranges.weak_signal.below;
  if (lowBattery || weak || (l.news2 && l.news2.total >= 5)) return 'WARNING';
  return 'OK';
}

function tile(d: Device): HTMLElement {
  const l = state.latest.get(d.device_id);
  const r = l?.reading;
  const st = tileState(l, d.device_id);
  return h('button', {
    class: `tile state-${st}${freshTiles.has(d.device_id) ? ' fresh' : ''}`,
    'data-device': d.device_id,
    'aria-label': `Open ${d.device_id}`,
    onclick: () => setDevice(d.device_id),
  },
  h('div', { class: 'tile-head' },
    h('span', { class: 'tile-id' }, d.device_id),
    st === 'CRITICAL' || st === 'WARNING' ? sevBadge(st) : st === 'OK' ? sevBadge('OK') : h('span', { class: 'hint' }, 'No data')),
  d.patient_label || d.location ? h('div', { class: 'tile-label' }, [d.patient_label, d.location].filter(Boolean).join(' · ')) : null,
  h('div', { class: 'tile-vitals' },
    vital('Heart rate', num(r?.heart_rate ?? null), 'bpm', hrOut(r?.heart_rate ?? null)),
    vital('Temp', num(r?.body_temp ?? null, 1), '°C', tempOut(r?.body_temp ?? null)),
    r?.spo2 != null ? vital('SpO₂', num(r.spo2), '%') : null,
    l?.news2 ? vital('NEWS2', String(l.news2.total) + (l.news2.partial ? '+' : ''), '') : null),
  h('div', { class: 'tile-foot' },
    h('span', {}, `Battery ${num(r?.battery_level ?? null)} % · Signal ${num(r?.signal_strength ?? null)} dBm`),
    h('span', { title: localDateTime(r?.timestamp) }, r ? localTime(r.timestamp) : '—')));
}

let tilesScheduled = false;
/** Re-renders tiles, big vitals and the newest readings at most once per animation frame. */
function rerenderTilesSoon(): void {
  if (tilesScheduled) return;
  tilesScheduled = true;
  requestAnimationFrame(() => {
    tilesScheduled = false;
    const grid = document.getElementById('tiles');
    if (grid) fill(grid, ...visibleDevices().map(tile));
    const big = document.getElementById('big-vitals');
    if (big && state.device) fill(big, ...bigVitals(state.device));
    renderNewest();
  });
}

function visibleDevices(): Device[] {
  return state.devices.filter((d) => matchesDevice(d.device_id));
}

function renderNewest(): void {
  const body = document.getElementById('newest-body');
  if (!body) return;
  fill(body, ...state.newest.slice(0, NEWEST_ROWS).map(readingRow));
}

function readingRow(r: Reading): HTMLElement {
  return h('tr', { 'data-reading': r.id },
    h('td', { title: localDateTime(r.timestamp) }, localTime(r.timestamp)),
    h('td', {}, r.device_id),
    h('td', { class: 'n' }, num(r.heart_rate)),
    h('td', { class: 'n' }, num(r.body_temp, 1)),
    h('td', { class: 'n' }, num(r.spo2)),
    h('td', { class: 'n' }, num(r.respiratory_rate)),
    h('td', { class: 'n' }, num(r.signal_strength)),
    h('td', { class: 'n' }, num(r.battery_level)));
}

function readingsTable(bodyId: string, rows: Reading[]): HTMLElement {
  return h('div', { class: 'table-wrap' }, h('table', {},
    h('thead', {}, h('tr', {},
      h('th', {}, 'Time'), h('th', {}, 'Device'), h('th', { class: 'n' }, 'HR bpm'),
      h('th', { class: 'n' }, 'Temp °C'), h('th', { class: 'n' }, 'SpO₂ %'), h('th', { class: 'n' }, 'RR /min'),
      h('th', { class: 'n' }, 'Signal dBm'), h('th', { class: 'n' }, 'Battery %'))),
    h('tbody', { id: bodyId }, ...rows.map(readingRow))));
}

const CHART_DEFS: { key: string; title: string; unit: string; digits: number; detailOnly?: boolean }[] = [
  { key: 'heart_rate', title: 'Heart rate', unit: 'bpm', digits: 0 },
  { key: 'body_temp', title: 'Temperature', unit: '°C', digits: 1 },
  { key: 'spo2', title: 'SpO₂', unit: '%', digits: 0, detailOnly: true },
  { key: 'respiratory_rate', title: 'Respiration rate', unit: '/min', digits: 0, detailOnly: true },
  { key: 'signal_strength', title: 'Signal strength', unit: 'dBm', digits: 0 },
  { key: 'battery_level', title: 'Battery', unit: '%', digits: 0 },
];

function chartOptions(key: string, title: string, unit: string, digits: number) {
  const r = state.ranges;
  const opts: { title: string; unit: string; digits: number; band?: { lo: number; hi: number }; floor?: number } = { title, unit, digits };
  if (key === 'heart_rate' && r) opts.band = { lo: r.heart_rate.min, hi: r.heart_rate.max };
  if (key === 'body_temp' && r) opts.band = { lo: r.body_temp.min, hi: r.body_temp.max };
  // NEWS2 scores 0 for SpO₂ ≥ 96 % (scale 1) and respiration 12–20 /min (RCP 2017).
  if (key === 'spo2') opts.band = { lo: 96, hi: 100 };
  if (key === 'respiratory_rate') opts.band = { lo: 12, hi: 20 };
  if (key === 'signal_strength' && r) opts.floor = r.weak_signal.below;
  if (key === 'battery_level' && r) opts.floor = r.low_battery.below;
  return opts;
}

function bigVitals(id: string): HTMLElement[] {
  const l = state.latest.get(id);
  const r = l?.reading;
  const out: HTMLElement[] = [
    vital('Heart rate', num(r?.heart_rate ?? null), 'bpm', hrOut(r?.heart_rate ?? null)),
    vital('Temperature', num(r?.body_temp ?? null, 1), '°C', tempOut(r?.body_temp ?? null)),
    vital('SpO₂', num(r?.spo2 ?? null), '%'),
    vital('Resp. rate', num(r?.respiratory_rate ?? null), '/min'),
    bp(r?.systolic_bp ?? null, r?.diastolic_bp ?? null),
    vital('Battery', num(r?.battery_level ?? null), '%'),
    vital('Signal', num(r?.signal_strength ?? null), 'dBm'),
  ];
  const n = l?.news2;
  out.push(h('div', { class: 'vital' },
    h('span', { class: 'vital-name' }, 'NEWS2'),
    h('span', { class: 'vital-value news2' }, n ? `${n.total}${n.partial ? '+' : ''}` : '—'),
    h('span', { class: 'hint' }, n ? `${n.risk.replace('_', '–')} risk${n.partial ? ' (partial: some vitals missing)' : ''}` : 'needs SpO₂, RR, BP or ACVPU')));
  return out;
}

async function renderRealtime(): Promise<void> {
  const panel = byId('panel-realtime');
  destroyCharts();
  const gen = state.generation;
  const since = sinceIso();
  if (state.device) {
    const id = state.device;
    const l = state.latest.get(id);
    fill(panel, 
      h('div', { class: 'detail-head' },
        h('button', { class: 'btn', onclick: () => setDevice('') }, '← All devices'),
        h('h2', {}, deviceLabel(id)),
        sevBadge(tileState(l, id) === 'NONE' ? 'INFO' : tileState(l, id)),
        h('span', { class: 'hint' }, l ? `Last reading ${localDateTime(l.reading.timestamp)} (${ago(l.reading.timestamp)})` : 'No reading in this time range')),
      h('div', { class: 'big-vitals', id: 'big-vitals' }, ...bigVitals(id)),
      h('p', { class: 'hint' }, 'Green band: normal range. Shaded envelope: minimum to maximum in each interval. ▲ marks an anomaly.'),
      h('div', { class: 'charts', id: 'charts' }));
    state.chartDevices = [id];
  } else {
    const devices = visibleDevices();
    // Devices with anomalies in the window first, then by id.
    const withAnomalies = new Set(state.anomalies.map((a) => a.device_id));
    state.chartDevices = [...devices]
      .sort((a, b) => Number(withAnomalies.has(b.device_id)) - Number(withAnomalies.has(a.device_id)) || a.device_id.localeCompare(b.device_id))
      .slice(0, MAX_CHART_DEVICES)
      .map((d) => d.device_id);
    fill(panel, 
      h('h2', {}, 'Patients'),
      devices.length
        ? h('div', { class: 'tiles', id: 'tiles' }, ...devices.map(tile))
        : h('div', { class: 'empty' }, 'No devices yet. Readings posted to /api/telemetry appear here live.'),
      h('h3', {}, 'Vitals over time'),
      devices.length > MAX_CHART_DEVICES
        ? h('p', { class: 'hint' }, `Charts show ${MAX_CHART_DEVICES} of ${devices.length} devices (those with anomalies first). Choose a device in the filter to see one patient in detail.`)
        : null,
      h('div', { class: 'charts', id: 'charts' }),
      h('h3', {}, 'Newest readings'),
      readingsTable('newest-body', state.newest));
  }
  if (!state.chartDevices.length) return;
  const detail = !!state.device;
  const res = await getJson<{ series: Series[] }>('/api/series', {
    device_id: state.chartDevices.join(','), since, points: detail ? '400' : '240',
    metrics: detail ? undefined : 'heart_rate,body_temp,signal_strength,battery_level',
  });
  if (gen !== state.generation || state.tab !== 'realtime') return;
  const container = document.getElementById('charts');
  if (!container) return;
  destroyCharts();
  for (const def of CHART_DEFS) {
    if (def.detailOnly && !detail) continue;
    const lines: Line[] = res.series.map((s) => {
      const m = s.metrics.find((x) => x.name === def.key);
      return {
        label: detail ? def.title : s.device_id,
        color: detail ? '#0072b2' : colorOf(s.device_id),
        t: [...s.t], v: [...(m?.avg ?? [])],
        min: detail ? [...(m?.min ?? [])] : undefined,
        max: detail ? [...(m?.max ?? [])] : undefined,
      };
    });
    if (def.detailOnly && !lines.some((l) => l.v.some((v) => v !== null))) continue;
    const box = h('div', { class: 'chart', 'data-chart': def.key }, h('h3', {}, `${def.title} (${def.unit})`));
    const plot = h('div', {});
    box.append(plot);
    container.append(box);
    const chart = new Chart(plot, chartOptions(def.key, def.title, def.unit, def.digits));
    chart.minT = Date.now() / 1000 - state.rangeS;
    const markers: Marker[] = detail ? anomalyMarkers(def.key) : [];
    chart.setLines(lines, markers);
    charts.set(def.key, chart);
  }
}

const MARKER_TYPES: Record<string, string> = {
  OUT_OF_RANGE_HR: 'heart_rate', OUT_OF_RANGE_TEMP: 'body_temp', WEAK_SIGNAL: 'signal_strength', LOW_BATTERY: 'battery_level',
};
function anomalyMarkers(key: string): Marker[] {
  return state.anomalies
    .filter((a) => MARKER_TYPES[a.type] === key && a.value !== null && matchesDevice(a.device_id))
    .map((a) => ({ t: new Date(a.detected_at).getTime() / 1000, v: a.value as number, label: a.type }));
}

function anomalyCard(a: Anomaly, isNew = false): HTMLElement {
  const sev = a.severity.toUpperCase();
  return h('article', { class: `card sev-border-${sev}${isNew ? ' new' : ''}`, 'data-anomaly': a.id, 'aria-label': `${sev} ${typeLabel(a.type)} on ${a.device_id}` },
    h('div', { class: 'card-title' }, h('span', {}, typeLabel(a.type)), sevBadge(sev)),
    h('div', { class: 'card-body' },
      h('strong', {}, deviceLabel(a.device_id)),
      a.value !== null ? ` · value ${a.value}${a.threshold !== null ? ` (limit ${a.threshold})` : ''}` : ''),
    a.details ? h('div', { class: 'card-body hint' }, a.details) : null,
    h('div', { class: 'card-time', title: localDateTime(a.detected_at) }, `${localTime(a.detected_at)} · ${ago(a.detected_at)}`));
}

function bars(rows: { label: string; count: number; cls?: string }[]): HTMLElement {
  const max = Math.max(1, ...rows.map((r) => r.count));
  return h('div', { class: 'bars' }, ...rows.flatMap((r) => [
    h('span', {}, r.label),
    h('div', { class: `bar ${r.cls ?? ''}`, 'data-w': Math.round((100 * r.count) / max) }),
    h('span', { class: 'num' }, intFmt.format(r.count)),
  ]));
}

/** Bar widths as SVG-free CSSOM writes (no inline style attributes: the CSP forbids them). */
function sizeBars(root: HTMLElement): void {
  root.querySelectorAll<HTMLElement>('.bar[data-w]').forEach((b) => { b.style.width = `${b.dataset.w}%`; });
}

function renderAnomalies(): void {
  const panel = byId('panel-anomalies');
  const s = state.stats;
  const types = s?.by_type ?? [];
  const filtered = state.anomalies.filter((a) => (!state.anomalyType || a.type === state.anomalyType) && matchesDevice(a.device_id));
  const select = h('select', { id: 'anomaly-type', 'aria-label': 'Anomaly type' },
    h('option', { value: '' }, 'All types'),
    ...types.map((t) => h('option', { value: t.type }, typeLabel(t.type))));
  select.value = state.anomalyType;
  select.addEventListener('change', () => { state.anomalyType = select.value; renderAnomalies(); });
  const topDevices = (s?.by_device ?? []).filter((d) => d.anomalies > 0).sort((a, b) => b.anomalies - a.anomalies).slice(0, 10);
  fill(panel, 
    h('div', { class: 'split' },
      h('div', {}, h('h3', {}, 'By type'), types.length ? bars(types.map((t) => ({ label: typeLabel(t.type), count: t.count }))) : h('p', { class: 'hint' }, 'None in this time range.')),
      h('div', {}, h('h3', {}, 'By device (top 10)'), topDevices.length ? bars(topDevices.map((d) => ({ label: d.device_id, count: d.anomalies }))) : h('p', { class: 'hint' }, 'None in this time range.'))),
    h('div', { class: 'row' }, h('h3', {}, 'Anomalies'), h('label', { class: 'row' }, 'Type ', select),
      h('span', { class: 'hint', id: 'anomaly-count' }, `${filtered.length > ANOMALY_CARDS ? `newest ${ANOMALY_CARDS} of ` : ''}${filtered.length} shown`)),
    filtered.length
      ? h('div', { class: 'cards', id: 'anomaly-cards' }, ...filtered.slice(0, ANOMALY_CARDS).map((a) => anomalyCard(a)))
      : h('div', { class: 'empty', id: 'anomaly-cards' }, 'No anomalies in this time range. New ones appear here live.'));
  sizeBars(panel);
}

function renderDevices(): void {
  const panel = byId('panel-devices');
  const counts = new Map((state.stats?.by_device ?? []).map((d) => [d.device_id, d]));
  const rows = visibleDevices().map((d) => {
    const c = counts.get(d.device_id);
    const online = d.last_seen && Date.now() - new Date(d.last_seen).getTime() < Math.max(60, d.expected_interval_s * 6) * 1000;
    const status = d.status !== 'active' ? 'Inactive' : online ? 'Online' : 'Offline';
    const statusCls = status === 'Online' ? 'OK' : status === 'Offline' ? 'WARNING' : 'INFO';
    return h('tr', { class: `state-${d.status}`, 'data-device': d.device_id },
      h('td', {}, h('button', { class: 'btn', onclick: () => { setDevice(d.device_id); selectTab('realtime'); } }, d.device_id)),
      h('td', {}, d.patient_label ?? '—'),
      h('td', {}, d.location ?? '—'),
      h('td', {}, h('span', { class: `sev sev-${statusCls}` }, status)),
      h('td', { class: 'n' }, intFmt.format(d.total_readings)),
      h('td', { class: 'n' }, intFmt.format(c?.readings ?? 0)),
      h('td', { class: 'n' }, intFmt.format(c?.anomalies ?? 0)),
      h('td', { title: localDateTime(d.last_seen) }, `${localDateTime(d.last_seen)} (${ago(d.last_seen)})`));
  });
  fill(panel, 
    h('h2', {}, 'Devices'),
    rows.length ? h('div', { class: 'table-wrap' }, h('table', {},
      h('thead', {}, h('tr', {}, h('th', {}, 'Device'), h('th', {}, 'Patient'), h('th', {}, 'Location'), h('th', {}, 'Status'),
        h('th', { class: 'n' }, 'Readings (all)'), h('th', { class: 'n' }, 'Readings (range)'), h('th', { class: 'n' }, 'Anomalies (range)'), h('th', {}, 'Last seen'))),
      h('tbody', {}, ...rows))) : h('div', { class: 'empty' }, 'No devices.'));
}

function pie(slices: { label: string; count: number }[]): SVGElement {
  const total = slices.reduce((a, s) => a + s.count, 0) || 1;
  const root = svg('svg', { viewBox: '-1.1 -1.1 2.2 2.2', width: 220, height: 220, role: 'img', 'aria-label': 'Anomalies by type' });
  let angle = -Math.PI / 2;
  slices.forEach((s, i) => {
    const a = (2 * Math.PI * s.count) / total;
    const color = PALETTE[i % PALETTE.length];
    if (a >= 2 * Math.PI - 1e-9) {
      root.append(svg('circle', { r: 1, fill: color }));
    } else {
      const x0 = Math.cos(angle), y0 = Math.sin(angle);
      const x1 = Math.cos(angle + a), y1 = Math.sin(angle + a);
      root.append(svg('path', { d: `M0 0 L${x0} ${y0} A1 1 0 ${a > Math.PI ? 1 : 0} 1 ${x1} ${y1} Z`, fill: color, stroke: '#fff', 'stroke-width': 0.02 }));
    }
    angle += a;
  });
  root.append(svg('circle', { r: 0.5, fill: '#fff' }));
  return root;
}

function renderStatistics(): void {
  const panel = byId('panel-statistics');
  const s = state.stats;
  const types = s?.by_type ?? [];
  fill(panel, 
    h('h2', {}, 'Statistics'),
    h('div', { class: 'split' },
      h('div', {},
        h('h3', {}, 'Anomalies by type'),
        h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'Type'), h('th', { class: 'n' }, 'Count'), h('th', {}, 'Last detected'))),
          h('tbody', {}, ...types.map((t) => h('tr', {}, h('td', {}, typeLabel(t.type)), h('td', { class: 'n' }, intFmt.format(t.count)),
            h('td', { title: localDateTime(t.last_detected) }, localDateTime(t.last_detected)))))),
        types.length ? null : h('p', { class: 'hint' }, 'No anomalies in this time range.'),
        h('h3', {}, 'By severity'),
        bars((s?.by_severity ?? []).map((x) => ({ label: x.severity, count: x.count, cls: `b-${x.severity}` })))),
      h('div', {},
        h('h3', {}, 'Share by type'),
        types.length ? h('div', { class: 'pie-wrap' }, pie(types.map((t) => ({ label: t.type, count: t.count }))),
          h('ul', { class: 'legend' }, ...types.map((t, i) => h('li', {}, h('span', { class: `swatch sw-${i % 8}` }), `${typeLabel(t.type)}: ${((100 * t.count) / Math.max(1, s?.anomalies ?? 1)).toFixed(1)} %`))))
          : h('p', { class: 'hint' }, '—'))));
  sizeBars(panel);
}

async function renderLogs(): Promise<void> {
  const panel = byId('panel-logs');
  const gen = state.generation;
  if (!state.logs.length) {
    const res = await getJson<{ readings: Reading[]; next_cursor: string | null }>('/api/readings', { ...windowParams(), limit: '100' });
    if (gen !== state.generation) return;
    state.logs = res.readings;
    state.logsCursor = res.next_cursor;
  }
  const csv = withQuery('/api/readings.csv', windowParams());
  const more = h('button', { class: 'btn', id: 'logs-more', onclick: async () => {
    if (!state.logsCursor) return;
    const res = await getJson<{ readings: Reading[]; next_cursor: string | null }>('/api/readings', { ...windowParams(), limit: '100', cursor: state.logsCursor });
    state.logs.push(...res.readings);
    state.logsCursor = res.next_cursor;
    void renderLogs();
  } }, 'Load more');
  fill(panel, 
    h('div', { class: 'row' }, h('h2', {}, 'Readings'),
      h('a', { class: 'btn btn-primary', id: 'csv', href: csv, download: 'vitalwatch-readings.csv' }, '⭳ Download as CSV'),
      h('span', { class: 'hint' }, 'CSV holds every reading in the selected range and device (times in UTC).')),
    readingsTable('logs-body', state.logs),
    state.logsCursor ? more : null);
}

// ---------------------------------------------------------------------------- alerts

async function probeAlerts(): Promise<void> {
  if (!session) return;
  try {
    const res = await getJson<unknown>('/api/alerts');
    if (!session) return;
    state.alertsAvailable = true;
    state.alerts = sortAlerts(Array.isArray(res) ? res as AlertItem[] : ((res as { alerts?: AlertItem[] }).alerts ?? []));
  } catch (err) {
    if (!session || isUnauthorized(err)) return;
    // 404: alerting is not part of this server (yet); hide the view quietly.
    state.alertsAvailable = false;
    state.alerts = [];
    if (!(err instanceof HttpError)) console.warn(err);
  }
  byId('tab-alerts').hidden = !state.alertsAvailable;
  rerenderTilesSoon();
  updateAlertBadge();
  updateHiddenCriticalBanner();
  if (state.tab === 'alerts') renderAlertsPanel();
}

let alertTimer = 0;
function refreshAlertsSoon(): void {
  window.clearTimeout(alertTimer);
  alertTimer = window.setTimeout(() => void probeAlerts(), 150);
}

function activeCritical(): AlertItem[] {
  return state.alerts.filter((a) => alertIsActive(a) && alertSeverity(a) === 'CRITICAL');
}

function updateAlertBadge(): void {
  const critical = activeCritical();
  const badge = byId('alert-badge');
  badge.hidden = critical.length === 0;
  badge.textContent = `▲ ${critical.length} CRITICAL ALERT${critical.length === 1 ? '' : 'S'}`;
  badge.classList.toggle('flash', critical.some((a) => !String(a.state ?? a.status ?? '').toLowerCase().includes('ack')));
  document.title = critical.length ? `(${critical.length}) CRITICAL — VitalWatch` : 'VitalWatch';
  const tab = byId('tab-alerts');
  fill(tab, 'Alerts', ...(critical.length ? [h('span', { class: 'count' }, critical.length)] : []));
  const ids = new Set(critical.map((a) => alertId(a)));
  const fresh = [...ids].some((id) => !state.knownCritical.has(id));
  state.knownCritical = ids;
  if (fresh) beep();
}

/** A critical alert or anomaly is never hidden by the device filter without saying so. */
function updateHiddenCriticalBanner(): void {
  const hidden = activeCritical().filter((a) => !matchesDevice(alertDevice(a)));
  const anomalies = [...state.hiddenCriticalAnomalies.values()].reduce((x, y) => x + y, 0);
  const banner = byId('hidden-critical');
  banner.hidden = hidden.length === 0 && anomalies === 0;
  if (banner.hidden) return;
  const devices = [...new Set([...hidden.map(alertDevice), ...state.hiddenCriticalAnomalies.keys()])].join(', ');
  const parts = [
    hidden.length ? `${hidden.length} critical alert${hidden.length === 1 ? '' : 's'}` : '',
    anomalies ? `${anomalies} new critical anomal${anomalies === 1 ? 'y' : 'ies'}` : '',
  ].filter(Boolean).join(' and ');
  fill(banner,
    h('strong', {}, `▲ ${parts} hidden by the device filter`),
    ` (${devices}).`,
    h('button', { class: 'btn', id: 'show-all', onclick: () => setDevice('') }, 'Show all devices'));
}

function renderAlertsPanel(): void {
  const actor = { name: session?.kind === 'session' ? session.name : null, canAct: canActOnAlerts(session) };
  renderAlerts(byId('panel-alerts'), state.alerts, matchesDevice, async (a, action) => {
    // Who acts is recorded with the alert and in the audit trail: the signed-in user, or on a
    // trusted workstation (no sign-in) the name typed in.
    let by = actor.name ?? '';
    if (!by) {
      const byInput = byId<HTMLInputElement>('ack-by');
      by = byInput.value.trim();
      if (!by) {
        byInput.focus();
        throw new Error('enter your name first');
      }
    }
    // An audio pause is time-limited (IEC 60601-1-8): two minutes.
    const body = action === 'ack' ? { by } : { by, duration_s: 120 };
    await postJson(`/api/alerts/${encodeURIComponent(alertId(a))}/${action}`, body);
    await probeAlerts();
  }, actor);
}

let audio: AudioContext | null = null;
function beep(): void {
  if (!byId<HTMLInputElement>('sound').checked) return;
  try {
    audio ??= new AudioContext();
    const osc = audio.createOscillator();
    const gain = audio.createGain();
    osc.frequency.value = 880;
    gain.gain.value = 0.2;
    osc.connect(gain).connect(audio.destination);
    osc.start();
    osc.stop(audio.currentTime + 0.6);
  } catch (err) {
    console.warn('sound unavailable', err);
  }
}

// ---------------------------------------------------------------------------- live stream

let source: EventSource | null = null;
let lastEventId = '';
let retryMs = 1000;
let connectedBefore = false;
let reconnectTimer = 0;

function connect(): void {
  source?.close();
  source = null;
  window.clearTimeout(reconnectTimer);
  if (!session) return;
  const url = lastEventId ? withQuery('/api/events', { last_event_id: lastEventId }) : '/api/events';
  source = new EventSource(url);
  const track = (e: MessageEvent) => { if (e.lastEventId) lastEventId = e.lastEventId; };
  source.addEventListener('hello', (e) => {
    track(e as MessageEvent);
    retryMs = 1000;
    const resumed = JSON.parse((e as MessageEvent).data).resumed;
    setConn('live', 'Live');
    // A reconnection that could not resume may have missed anything: refetch. (The first
    // connection needs nothing: start() loads the page's data.)
    if (!resumed && connectedBefore) reloadSoon(0);
    connectedBefore = true;
    void probeAlerts();
  });
  source.addEventListener('reading', (e) => { track(e as MessageEvent); onReading(JSON.parse((e as MessageEvent).data)); });
  source.addEventListener('anomaly', (e) => { track(e as MessageEvent); onAnomaly(JSON.parse((e as MessageEvent).data)); });
  source.addEventListener('alert', (e) => { track(e as MessageEvent); refreshAlertsSoon(); });
  source.addEventListener('resync', (e) => { track(e as MessageEvent); reloadSoon(0); });
  source.addEventListener('error', () => {
    setConn('down', 'Disconnected — reconnecting');
    // An EventSource cannot tell a 401 from a network error: ask /auth/me whether the session
    // ended.
    void checkSession();
    // The browser retries by itself while readyState is CONNECTING; when it gave up, we retry
    // with the last cursor in the URL so nothing is missed.
    if (source?.readyState === EventSource.CLOSED) {
      window.clearTimeout(reconnectTimer);
      reconnectTimer = window.setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 10_000);
    }
  });
}

let checkingSession = false;
async function checkSession(): Promise<void> {
  if (checkingSession || !session || session.kind === 'loopback') return;
  checkingSession = true;
  try {
    if (session && (await whoAmI()) === null) endSession('Your session ended; sign in again.');
  } catch {
    // The server is unreachable: the stream's reconnection reports it and retries.
  } finally {
    checkingSession = false;
  }
}

function onReading(r: Reading): void {
  if (!state.devices.some((d) => d.device_id === r.device_id)) {
    // A new device: its registration row is needed for the tile and the filter.
    reloadSoon(200);
    return;
  }
  const dev = state.devices.find((d) => d.device_id === r.device_id);
  if (dev) {
    dev.total_readings += 1;
    if (!dev.last_seen || dev.last_seen < r.received_at) {
      if (state.stats && matchesDevice(r.device_id) && (!dev.last_seen || Date.now() - new Date(dev.last_seen).getTime() > 3_600_000)) state.stats.active_last_hour += 1;
      dev.last_seen = r.received_at;
    }
  }
  if (!matchesDevice(r.device_id) || !inWindow(r.timestamp)) return;
  const prev = state.latest.get(r.device_id);
  if (!prev || prev.reading.timestamp <= r.timestamp) {
    state.latest.set(r.device_id, { reading: r, news2: prev?.news2 && r.spo2 === null && r.respiratory_rate === null ? prev.news2 : null });
    if (r.spo2 !== null || r.respiratory_rate !== null || r.systolic_bp !== null) refreshLatestSoon(r.device_id);
  }
  if (state.stats) {
    state.stats.readings += 1;
    const d = state.stats.by_device.find((x) => x.device_id === r.device_id);
    if (d) d.readings += 1;
    state.stats.anomaly_rate = state.stats.readings ? state.stats.anomalous_readings / state.stats.readings : 0;
  }
  state.newest.unshift(r);
  state.newest.sort((a, b) => b.timestamp.localeCompare(a.timestamp));
  state.newest.length = Math.min(state.newest.length, NEWEST_ROWS);
  if (state.tab === 'logs' && state.logs.length) {
    state.logs.unshift(r);
    const body = document.getElementById('logs-body');
    body?.prepend(readingRow(r));
  }
  freshTiles.add(r.device_id);
  window.setTimeout(() => { freshTiles.delete(r.device_id); rerenderTilesSoon(); }, 1500);
  const t = new Date(r.timestamp).getTime() / 1000;
  if (state.chartDevices.includes(r.device_id)) {
    for (const [key, chart] of charts) {
      const v = (r as unknown as Record<string, number | null>)[key];
      if (v === null || v === undefined) continue;
      chart.minT = Date.now() / 1000 - state.rangeS;
      const def = CHART_DEFS.find((c) => c.key === key);
      chart.append(state.device ? def?.title ?? key : r.device_id, state.device ? '#0072b2' : colorOf(r.device_id), t, v);
    }
  }
  renderMetrics();
  rerenderTilesSoon();
}

const latestTimers = new Map<string, number>();
/** NEWS2 is scored on the server; refetch one device's latest when its inputs change. */
function refreshLatestSoon(id: string): void {
  if (latestTimers.has(id)) return;
  latestTimers.set(id, window.setTimeout(async () => {
    latestTimers.delete(id);
    const res = await getJson<{ latest: Latest[] }>('/api/latest', { since: sinceIso(), device_id: id }).catch(() => null);
    if (!res || !session) return;
    for (const l of res.latest) state.latest.set(l.reading.device_id, l);
    rerenderTilesSoon();
  }, 500));
}

let anomalyRender = 0;
function onAnomaly(a: Anomaly): void {
  if (!matchesDevice(a.device_id)) {
    if (a.severity.toUpperCase() === 'CRITICAL') {
      state.hiddenCriticalAnomalies.set(a.device_id, (state.hiddenCriticalAnomalies.get(a.device_id) ?? 0) + 1);
      updateHiddenCriticalBanner();
    }
    return;
  }
  if (!inWindow(a.detected_at)) return;
  state.anomalies.unshift(a);
  state.anomalies.length = Math.min(state.anomalies.length, 2000);
  const s = state.stats;
  if (s) {
    s.anomalies += 1;
    const t = s.by_type.find((x) => x.type === a.type);
    if (t) { t.count += 1; t.last_detected = a.detected_at; } else s.by_type.push({ type: a.type, count: 1, last_detected: a.detected_at });
    s.by_type.sort((x, y) => y.count - x.count);
    const sev = s.by_severity.find((x) => x.severity === a.severity);
    if (sev) sev.count += 1; else s.by_severity.push({ severity: a.severity, count: 1 });
    const d = s.by_device.find((x) => x.device_id === a.device_id);
    if (d) d.anomalies += 1;
    if (a.reading_id !== null && !state.anomalies.slice(1).some((x) => x.reading_id === a.reading_id)) s.anomalous_readings += 1;
    s.anomaly_rate = s.readings ? Math.min(1, s.anomalous_readings / s.readings) : 0;
  }
  renderMetrics();
  const key = MARKER_TYPES[a.type];
  if (key && a.value !== null && state.device) charts.get(key)?.addMarker({ t: new Date(a.detected_at).getTime() / 1000, v: a.value, label: a.type });
  if (state.tab === 'anomalies') {
    // Prepend the card at once (it must show within a second); re-render the counts shortly.
    const cards = document.getElementById('anomaly-cards');
    if (cards && cards.classList.contains('cards') && (!state.anomalyType || state.anomalyType === a.type)) {
      cards.prepend(anomalyCard(a, true));
      while (cards.children.length > ANOMALY_CARDS) cards.lastElementChild?.remove();
    } else if (cards) {
      renderAnomalies();
      return;
    }
    window.clearTimeout(anomalyRender);
    anomalyRender = window.setTimeout(() => renderAnomalies(), 2000);
  } else if (state.tab === 'statistics') {
    renderStatistics();
  }
}

// ---------------------------------------------------------------------------- start

/** `?range=SECONDS&device=ID` makes a view bookmarkable. */
function readUrl(): void {
  const q = new URLSearchParams(location.search);
  const range = q.get('range');
  const select = byId<HTMLSelectElement>('range');
  if (range && Array.from(select.options).some((o) => o.value === range)) {
    state.rangeS = Number(range);
    select.value = range;
  }
  state.device = q.get('device') ?? '';
}

function writeUrl(): void {
  const q = new URLSearchParams();
  if (state.rangeS !== 3600) q.set('range', String(state.rangeS));
  if (state.device) q.set('device', state.device);
  const s = q.toString();
  history.replaceState(null, '', s ? `?${s}` : location.pathname);
}

/** Starts the dashboard for whoever /auth/me or the sign-in form says is signed in. */
function startSession(me: Me): void {
  session = me;
  setCsrfToken(me.csrf_token);
  showUser(me);
  hideLogin();
  setConn('connecting', 'Connecting…');
  retryMs = 1000;
  connect();
  void loadAll().catch(showLoadError).finally(() => { if (session === me) document.body.dataset.ready = 'true'; });
}

/** The session ended (401, or signed out): stop the live stream and every pending call, forget
 *  the patient data shown, and bring the sign-in form back. */
function endSession(notice: string): void {
  if (!session) return;
  session = null;
  setCsrfToken(null);
  source?.close();
  source = null;
  window.clearTimeout(reconnectTimer);
  window.clearTimeout(reloadTimer);
  window.clearTimeout(alertTimer);
  window.clearTimeout(anomalyRender);
  for (const t of latestTimers.values()) window.clearTimeout(t);
  latestTimers.clear();
  state.generation++;
  lastEventId = '';
  connectedBefore = false;
  delete document.body.dataset.ready;
  clearData();
  showLogin(notice);
}

function clearData(): void {
  destroyCharts();
  Object.assign(state, {
    devices: [], latest: new Map(), stats: null, anomalies: [], newest: [], logs: [], logsCursor: null,
    alertsAvailable: false, alerts: [], knownCritical: new Set(), hiddenCriticalAnomalies: new Map(), chartDevices: [], loadedAt: 0,
  });
  freshTiles.clear();
  for (const t of TABS) fill(byId(`panel-${t}`));
  renderDeviceOptions();
  renderMetrics();
  for (const id of ['m-devices', 'm-readings', 'm-anomalies', 'm-rate', 'm-active']) byId(id).textContent = '–';
  byId('tab-alerts').hidden = true;
  updateAlertBadge();
  updateHiddenCriticalBanner();
  byId('disconnected').hidden = true;
}

async function signOutClicked(): Promise<void> {
  const button = byId<HTMLButtonElement>('sign-out');
  button.disabled = true;
  let notice = 'You have signed out.';
  try {
    await signOut();
  } catch (err) {
    // Already ended (401): signed out all the same. Otherwise the page forgets the session, but
    // the server still has it (the cookie is out of the page's reach): say so.
    if (!isUnauthorized(err)) {
      console.warn('sign-out', err);
      notice = 'Signed out of this page, but the server could not be reached to end the session: close the browser to be sure.';
    }
  } finally {
    button.disabled = false;
  }
  endSession(notice);
}

/** Asks /auth/me who is signed in: the dashboard, or the sign-in form. Retries while the
 *  server cannot be reached. */
async function boot(): Promise<void> {
  readUrl();
  bindControls();
  bindLogin(startSession);
  byId('sign-out').addEventListener('click', () => void signOutClicked());
  onUnauthorized(() => endSession('Your session ended; sign in again.'));
  // Calls that were under way when the session ended fail with 401: already handled.
  window.addEventListener('unhandledrejection', (e) => { if (isUnauthorized(e.reason)) e.preventDefault(); });
  for (let delay = 1000; ; delay = Math.min(delay * 2, 10_000)) {
    try {
      const me = await whoAmI();
      if (me) startSession(me);
      else showLogin();
      return;
    } catch (err) {
      console.warn('/auth/me', err);
      setConn('down', 'Server unreachable');
      await new Promise((r) => window.setTimeout(r, delay));
    }
  }
}

void boot();
