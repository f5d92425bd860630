// The Real-time view: every device's tile with up to eight devices' charts, or one device in
// detail (big vitals and every chart, with the bucket envelope and anomaly markers). Charts
// load downsampled series once and then take live readings and anomalies.
import { Chart, type ChartOptions, type Line, type Marker } from './charts';
import { type Anomaly, type Reading, type SeriesMetric, getSeries } from './api';
import { ANOMALY_VITAL, vitalDigits, vitalLabel, vitalUnit } from './labels';
import { bigVitals, tileState, tiles } from './overview';
import { readingsTable } from './readings';
import { colorOf, deviceLabel, matchesDevice, nav, sinceIso, state, visibleDevices } from './state';
import { ago, byId, fill, h, localDateTime, sevBadge } from './util';

/** Devices drawn in one multi-device chart; more lines than colours is unreadable. */
const MAX_CHART_DEVICES = 8;
/** Buckets per series: the detail view's charts are wider. */
const DETAIL_POINTS = 400;
const OVERVIEW_POINTS = 240;
/** One device's line colour. */
const DETAIL_COLOR = '#0072b2';

/** The charts, in order; `detailOnly` ones are drawn for one device, when it has values. */
const CHARTS: readonly { key: SeriesMetric; detailOnly?: boolean }[] = [
  { key: 'heart_rate' },
  { key: 'body_temp' },
  { key: 'spo2', detailOnly: true },
  { key: 'respiratory_rate', detailOnly: true },
  { key: 'signal_strength' },
  { key: 'battery_level' },
];

const charts = new Map<SeriesMetric, Chart>();
/** Bumped by every render: a render whose series arrive after a newer one started is dropped
 *  (re-selecting the tab renders again within the same generation). */
let renderSeq = 0;

export function destroyCharts(): void {
  for (const c of charts.values()) c.destroy();
  charts.clear();
}

/** A chart's options: the server's normal range as a band (heart rate, temperature) or its
 *  floor (signal, battery). */
function chartOptions(key: SeriesMetric): ChartOptions {
  const r = state.ranges;
  const opts: ChartOptions = { title: vitalLabel(key), unit: vitalUnit(key), digits: vitalDigits(key), rangeS: state.rangeS };
  if (key === 'heart_rate' && r) opts.band = { lo: r.heart_rate.min, hi: r.heart_rate.max };
  if (key === 'body_temp' && r) opts.band = { lo: r.body_temp.min, hi: r.body_temp.max };
  if (key === 'signal_strength' && r) opts.floor = r.weak_signal.below;
  if (key === 'battery_level' && r) opts.floor = r.low_battery.below;
  return opts;
}

function anomalyMarkers(key: SeriesMetric): Marker[] {
  return state.anomalies.flatMap((a) =>
    ANOMALY_VITAL[a.type] === key && a.value !== null && matchesDevice(a.device_id)
      ? [{ t: new Date(a.detected_at).getTime() / 1000, v: a.value, label: a.type }]
      : []);
}

function detailPanel(id: string): HTMLElement[] {
  const l = state.latest.get(id);
  const st = tileState(l, id);
  return [
    h('div', { class: 'detail-head' },
      h('button', { class: 'btn', onclick: () => nav().setDevice('') }, '← All devices'),
      h('h2', {}, deviceLabel(id)),
      sevBadge(st === 'NONE' ? 'INFO' : st),
      h('span', { class: 'hint' }, l ? `Last reading ${localDateTime(l.reading.timestamp)} (${ago(l.reading.timestamp)})` : 'No reading in this time range')),
    h('div', { class: 'big-vitals', id: 'big-vitals' }, ...bigVitals(id)),
    h('p', { class: 'hint' }, 'Green band: normal range. Shaded envelope: minimum to maximum in each interval. ▲ marks an anomaly.'),
    h('div', { class: 'charts', id: 'charts' }),
  ];
}

function overviewPanel(): (HTMLElement | null)[] {
  const devices = visibleDevices();
  // Devices with anomalies in the window first, then by id.
  const withAnomalies = new Set(state.anomalies.map((a) => a.device_id));
  state.chartDevices = [...devices]
    .sort((a, b) => Number(withAnomalies.has(b.device_id)) - Number(withAnomalies.has(a.device_id)) || a.device_id.localeCompare(b.device_id))
    .slice(0, MAX_CHART_DEVICES)
    .map((d) => d.device_id);
  return [
    h('h2', {}, 'Patients'),
    devices.length
      ? h('div', { class: 'tiles', id: 'tiles' }, ...tiles(devices))
      : h('div', { class: 'empty' }, 'No devices yet. Readings posted to /api/telemetry appear here live.'),
    h('h3', {}, 'Vitals over time'),
    devices.length > MAX_CHART_DEVICES
      ? h('p', { class: 'hint' }, `Charts show ${MAX_CHART_DEVICES} of ${devices.length} devices (those with anomalies first). Choose a device in the filter to see one patient in detail.`)
      : null,
    h('div', { class: 'charts', id: 'charts' }),
    h('h3', {}, 'Newest readings'),
    readingsTable('newest-body', state.newest),
  ];
}

export async function renderRealtime(): Promise<void> {
  const panel = byId('panel-realtime');
  destroyCharts();
  const seq = ++renderSeq;
  const gen = state.generation;
  const since = sinceIso();
  const detail = !!state.device;
  if (detail) {
    fill(panel, ...detailPanel(state.device));
    state.chartDevices = [state.device];
  } else {
    fill(panel, ...overviewPanel());
  }
  if (!state.chartDevices.length) return;
  const shown = CHARTS.filter((c) => detail || !c.detailOnly);
  const res = await getSeries({
    device_ids: state.chartDevices, since, points: detail ? DETAIL_POINTS : OVERVIEW_POINTS,
    metrics: detail ? undefined : shown.map((c) => c.key),
  });
  if (seq !== renderSeq || gen !== state.generation || state.tab !== 'realtime') return;
  const container = document.getElementById('charts');
  if (!container) return;
  destroyCharts();
  for (const def of shown) {
    const lines: Line[] = res.series.map((s) => {
      const m = s.metrics.find((x) => x.name === def.key);
      return {
        label: detail ? vitalLabel(def.key) : s.device_id,
        color: detail ? DETAIL_COLOR : colorOf(s.device_id),
        t: [...s.t], v: [...(m?.avg ?? [])],
        min: detail ? [...(m?.min ?? [])] : undefined,
        max: detail ? [...(m?.max ?? [])] : undefined,
      };
    });
    if (def.detailOnly && !lines.some((l) => l.v.some((v) => v !== null))) continue;
    const box = h('div', { class: 'chart', 'data-chart': def.key }, h('h3', {}, `${vitalLabel(def.key)} (${vitalUnit(def.key)})`));
    const plot = h('div', {});
    box.append(plot);
    container.append(box);
    const chart = new Chart(plot, chartOptions(def.key));
    chart.setLines(lines, detail ? anomalyMarkers(def.key) : []);
    charts.set(def.key, chart);
  }
}

/** A live reading on the charts it has values for. */
export function chartReading(r: Reading): void {
  if (!state.chartDevices.includes(r.device_id)) return;
  const t = new Date(r.timestamp).getTime() / 1000;
  for (const [key, chart] of charts) {
    const v = r[key];
    if (v === null) continue;
    if (state.device) chart.append(vitalLabel(key), DETAIL_COLOR, t, v);
    else chart.append(r.device_id, colorOf(r.device_id), t, v);
  }
}

/** A live anomaly as a marker on its vital's chart (detail view only). */
export function chartAnomaly(a: Anomaly): void {
  const key = ANOMALY_VITAL[a.type];
  if (!key || a.value === null || !state.device) return;
  charts.get(key)?.addMarker({ t: new Date(a.detected_at).getTime() / 1000, v: a.value, label: a.type });
}
