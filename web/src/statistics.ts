// The Statistics view: anomalies by type (table and share), by severity.
import { bars, sizeBars } from './anomalies';
import { typeLabel } from './labels';
import { state } from './state';
import { byId, fill, h, intFmt, localDateTime, paletteColor, svg } from './util';

function pie(slices: { label: string; count: number }[]): SVGElement {
  const total = slices.reduce((a, s) => a + s.count, 0) || 1;
  const root = svg('svg', { viewBox: '-1.1 -1.1 2.2 2.2', width: 220, height: 220, role: 'img', 'aria-label': 'Anomalies by type' });
  let angle = -Math.PI / 2;
  slices.forEach((s, i) => {
    const a = (2 * Math.PI * s.count) / total;
    const color = paletteColor(i);
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

export function renderStatistics(): void {
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
