// The Devices view: every registered device with its status, counts and last contact.
import { nav, state, visibleDevices } from './state';
import { ago, byId, fill, h, intFmt, localDateTime } from './util';

/** A device is online while its last reading is younger than six expected intervals (at
 *  least a minute). */
const OFFLINE_AFTER_INTERVALS = 6;
const MIN_OFFLINE_S = 60;

export function renderDevices(): void {
  const panel = byId('panel-devices');
  const counts = new Map((state.stats?.by_device ?? []).map((d) => [d.device_id, d]));
  const rows = visibleDevices().map((d) => {
    const c = counts.get(d.device_id);
    const online = d.last_seen !== null
      && Date.now() - new Date(d.last_seen).getTime() < Math.max(MIN_OFFLINE_S, d.expected_interval_s * OFFLINE_AFTER_INTERVALS) * 1000;
    const status = d.status !== 'active' ? 'Inactive' : online ? 'Online' : 'Offline';
    const statusCls = status === 'Online' ? 'OK' : status === 'Offline' ? 'WARNING' : 'INFO';
    return h('tr', { class: `state-${d.status}`, 'data-device': d.device_id },
      h('td', {}, h('button', { class: 'btn', onclick: () => { nav().setDevice(d.device_id); nav().selectTab('realtime'); } }, d.device_id)),
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
