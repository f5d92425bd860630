// Readings as a table: the newest readings under the overview, and the Logs view (paged, with
// the window's CSV export).
import { type NumericVital, type Reading, getReadings, readingsCsvUrl } from './api';
import { vitalDigits, vitalLabel, vitalUnit } from './labels';
import { currentWindow, state } from './state';
import { byId, fill, h, localDateTime, localTime, num } from './util';

/** Rows in the overview's "Newest readings". */
export const NEWEST_ROWS = 12;
const LOG_PAGE = 100;

/** The vitals a table row shows, in column order. */
const COLUMNS: readonly NumericVital[] = ['heart_rate', 'body_temp', 'spo2', 'respiratory_rate', 'signal_strength', 'battery_level'];

export function readingRow(r: Reading): HTMLElement {
  return h('tr', { 'data-reading': r.id },
    h('td', { title: localDateTime(r.timestamp) }, localTime(r.timestamp)),
    h('td', {}, r.device_id),
    ...COLUMNS.map((key) => h('td', { class: 'n' }, num(r[key], vitalDigits(key)))));
}

export function readingsTable(bodyId: string, rows: Reading[]): HTMLElement {
  return h('div', { class: 'table-wrap' }, h('table', {},
    h('thead', {}, h('tr', {},
      h('th', {}, 'Time'), h('th', {}, 'Device'),
      ...COLUMNS.map((key) => h('th', { class: 'n' }, vitalLabel(key), ' ', h('small', {}, vitalUnit(key)))))),
    h('tbody', { id: bodyId }, ...rows.map(readingRow))));
}

export function renderNewest(): void {
  const body = document.getElementById('newest-body');
  if (!body) return;
  fill(body, ...state.newest.slice(0, NEWEST_ROWS).map(readingRow));
}

/** A reading that arrived live, at the top of the Logs view when it shows. */
export function prependLog(r: Reading): void {
  if (state.tab !== 'logs' || !state.logs.length) return;
  state.logs.unshift(r);
  document.getElementById('logs-body')?.prepend(readingRow(r));
}

export async function renderLogs(): Promise<void> {
  const panel = byId('panel-logs');
  const gen = state.generation;
  if (!state.logs.length) {
    const res = await getReadings(currentWindow(), LOG_PAGE);
    if (gen !== state.generation) return;
    state.logs = res.readings;
    state.logsCursor = res.next_cursor;
  }
  const more = h('button', { class: 'btn', id: 'logs-more', onclick: async () => {
    if (!state.logsCursor) return;
    const res = await getReadings(currentWindow(), LOG_PAGE, state.logsCursor);
    state.logs.push(...res.readings);
    state.logsCursor = res.next_cursor;
    void renderLogs();
  } }, 'Load more');
  fill(panel,
    h('div', { class: 'row' }, h('h2', {}, 'Readings'),
      h('a', { class: 'btn btn-primary', id: 'csv', href: readingsCsvUrl(currentWindow()), download: 'vitalwatch-readings.csv' }, '⭳ Download as CSV'),
      h('span', { class: 'hint' }, 'CSV holds every reading in the selected range and device (times in UTC).')),
    readingsTable('logs-body', state.logs),
    state.logsCursor ? more : null);
}
