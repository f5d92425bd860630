// The Anomalies view: counts by type and by device, and the window's anomaly cards (newest
// first, filterable by type). A live anomaly's card is prepended at once.
import type { Anomaly } from './api';
import { typeLabel } from './labels';
import { deviceLabel, matchesDevice, state } from './state';
import { ago, byId, fill, h, intFmt, localDateTime, localTime, sevBadge } from './util';

/** Cards shown; older ones are counted, not drawn. */
const ANOMALY_CARDS = 100;
/** How long after a live card the counts are redrawn (a burst redraws once). */
const RECOUNT_MS = 2000;

export function anomalyCard(a: Anomaly, isNew = false): HTMLElement {
  return h('article', { class: `card sev-border-${a.severity}${isNew ? ' new' : ''}`, 'data-anomaly': a.id, 'aria-label': `${a.severity} ${typeLabel(a.type)} on ${a.device_id}` },
    h('div', { class: 'card-title' }, h('span', {}, typeLabel(a.type)), sevBadge(a.severity)),
    h('div', { class: 'card-body' },
      h('strong', {}, deviceLabel(a.device_id)),
      a.value !== null ? ` · value ${a.value}${a.threshold !== null ? ` (limit ${a.threshold})` : ''}` : ''),
    a.details ? h('div', { class: 'card-body hint' }, a.details) : null,
    h('div', { class: 'card-time', title: localDateTime(a.detected_at) }, `${localTime(a.detected_at)} · ${ago(a.detected_at)}`));
}

/** Horizontal bars, widths relative to the largest count. */
export function bars(rows: { label: string; count: number; cls?: string }[]): HTMLElement {
  const max = Math.max(1, ...rows.map((r) => r.count));
  return h('div', { class: 'bars' }, ...rows.flatMap((r) => [
    h('span', {}, r.label),
    h('div', { class: `bar ${r.cls ?? ''}`, 'data-w': Math.round((100 * r.count) / max) }),
    h('span', { class: 'num' }, intFmt.format(r.count)),
  ]));
}

/** Bar widths as CSSOM writes (no inline style attributes: the CSP forbids them). */
export function sizeBars(root: HTMLElement): void {
  root.querySelectorAll<HTMLElement>('.bar[data-w]').forEach((b) => { b.style.width = `${b.dataset.w}%`; });
}

export function renderAnomalies(): void {
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

let recountTimer = 0;
/** A live anomaly in the Anomalies view: its card at once (it must show within a second), the
 *  counts shortly after. */
export function showLiveAnomaly(a: Anomaly): void {
  const cards = document.getElementById('anomaly-cards');
  const wanted = !state.anomalyType || state.anomalyType === a.type;
  if (cards && cards.classList.contains('cards') && wanted) {
    cards.prepend(anomalyCard(a, true));
    while (cards.children.length > ANOMALY_CARDS) cards.lastElementChild?.remove();
  } else if (cards) {
    renderAnomalies();
    return;
  }
  window.clearTimeout(recountTimer);
  recountTimer = window.setTimeout(() => renderAnomalies(), RECOUNT_MS);
}

export function stopAnomalyRecount(): void {
  window.clearTimeout(recountTimer);
}
