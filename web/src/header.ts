// The header and the filter bar: the connection state, the summary metrics and the device
// filter's options.
import { deviceLabel, state } from './state';
import { byId, fill, h, intFmt } from './util';

const METRICS = ['m-devices', 'm-readings', 'm-anomalies', 'm-rate', 'm-active'] as const;

export function setConn(kind: 'live' | 'down' | 'connecting', text: string): void {
  const el = byId('conn');
  el.className = `conn conn-${kind}`;
  el.textContent = text;
  byId('disconnected').hidden = kind !== 'down';
}

/** The summary metrics; '…' while the statistics load, `placeholder` when there is no data. */
export function renderMetrics(placeholder = '…'): void {
  const s = state.stats;
  if (!s) {
    for (const id of METRICS) byId(id).textContent = placeholder;
    return;
  }
  byId('m-devices').textContent = intFmt.format(s.total_devices);
  byId('m-readings').textContent = intFmt.format(s.readings);
  byId('m-anomalies').textContent = intFmt.format(s.anomalies);
  byId('m-rate').textContent = `${(s.anomaly_rate * 100).toFixed(1)} %`;
  byId('m-active').textContent = intFmt.format(s.active_last_hour);
}

export function renderDeviceOptions(): void {
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
