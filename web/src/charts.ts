// uPlot wrappers: one Chart per vital. Lines are kept per device as columns and aligned with
// uPlot.join at most once per animation frame, so a burst of live readings costs one redraw.
// The time axis is always the selected window, [now - range, now], whatever the data spans
// (uPlot alone would stretch a single point to a 1000-day axis), and old points are trimmed to
// it, which keeps memory flat on a long-running page. The plot element carries the axis's
// bounds and labels (data-x-min, data-x-max in seconds, data-x-ticks) for tests and tools.
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

export interface Line {
  label: string;
  color: string;
  t: number[];
  v: (number | null)[];
  /** Bucket minimum and maximum, drawn as an envelope when present (single-device charts). */
  min?: (number | null)[];
  max?: (number | null)[];
}

export interface ChartOptions {
  title: string;
  unit: string;
  /** The normal range, drawn as a green band behind the data. */
  band?: { lo: number; hi: number };
  /** Only a floor (e.g. battery below 10 %): shaded below it. */
  floor?: number;
  height?: number;
  digits?: number;
  /** The window's length in seconds: the time axis ends now and starts this long before. */
  rangeS: number;
}

export interface Marker { t: number; v: number; label: string }

/** Live points beyond this many per line are dropped from the old end. */
const MAX_POINTS_PER_LINE = 5000;

export class Chart {
  private u: uPlot | null = null;
  private lines: Line[] = [];
  private markers: Marker[] = [];
  private scheduled = false;
  private shape = '';
  private readonly observer: ResizeObserver;

  constructor(private readonly el: HTMLElement, private readonly opts: ChartOptions) {
    this.observer = new ResizeObserver(() => {
      if (this.u) this.u.setSize({ width: this.width(), height: this.opts.height ?? 220 });
    });
    this.observer.observe(el);
  }

  /** The window in seconds since the epoch, as of now. */
  private window(): [number, number] {
    const until = Date.now() / 1000;
    return [until - this.opts.rangeS, until];
  }

  private width(): number {
    return Math.max(280, this.el.clientWidth - 4);
  }

  destroy(): void {
    this.observer.disconnect();
    this.u?.destroy();
    this.u = null;
  }

  setLines(lines: Line[], markers: Marker[] = []): void {
    this.lines = lines;
    this.markers = markers;
    this.schedule();
  }

  setMarkers(markers: Marker[]): void {
    this.markers = markers;
    this.schedule();
  }

  addMarker(m: Marker): void {
    this.markers.push(m);
    this.schedule();
  }

  /** Appends one live value to the line called `label` (creating it with `color`). */
  append(label: string, color: string, t: number, v: number | null): void {
    let line = this.lines.find((l) => l.label === label);
    if (!line) {
      line = { label, color, t: [], v: [] };
      this.lines.push(line);
    }
    // Keep time order: a late reading is inserted where it belongs.
    let i = line.t.length;
    while (i > 0 && (line.t[i - 1] ?? -Infinity) > t) i--;
    line.t.splice(i, 0, t);
    line.v.splice(i, 0, v);
    line.min?.splice(i, 0, v);
    line.max?.splice(i, 0, v);
    this.schedule();
  }

  private trim(): void {
    const [since] = this.window();
    for (const line of this.lines) {
      let drop = 0;
      while (drop < line.t.length && (line.t[drop] ?? Infinity) < since) drop++;
      drop = Math.max(drop, line.t.length - MAX_POINTS_PER_LINE);
      if (drop > 0) {
        line.t.splice(0, drop);
        line.v.splice(0, drop);
        line.min?.splice(0, drop);
        line.max?.splice(0, drop);
      }
    }
    this.markers = this.markers.filter((m) => m.t >= since).slice(-500);
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    requestAnimationFrame(() => {
      this.scheduled = false;
      this.render();
    });
  }

  private render(): void {
    this.trim();
    const withData = this.lines.filter((l) => l.t.length > 0);
    const envelope = withData.length === 1 && withData[0]?.min !== undefined;
    const shape = withData.map((l) => l.label).join('|') + (envelope ? '+env' : '');
    const tables: uPlot.AlignedData[] = withData.map((l) =>
      envelope
        ? ([l.t, l.v, l.min ?? [], l.max ?? []] as unknown as uPlot.AlignedData)
        : ([l.t, l.v] as unknown as uPlot.AlignedData),
    );
    const data: uPlot.AlignedData = tables.length ? uPlot.join(tables) : [[]];
    if (!this.u || shape !== this.shape) {
      this.u?.destroy();
      this.shape = shape;
      this.u = new uPlot(this.options(withData, envelope), data, this.el);
    } else {
      this.u.setData(data);
    }
  }

  private options(lines: Line[], envelope: boolean): uPlot.Options {
    const { band, floor, unit } = this.opts;
    // Times of day for a window up to a day, with the date beyond; in the viewer's zone.
    const tickFmt = new Intl.DateTimeFormat(undefined, this.opts.rangeS > 86_400
      ? { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' }
      : { hour: '2-digit', minute: '2-digit' });
    const digits = this.opts.digits ?? 0;
    const series: uPlot.Series[] = [{}];
    const bands: uPlot.Band[] = [];
    for (const line of lines) {
      series.push({
        label: line.label,
        stroke: line.color,
        width: 2,
        spanGaps: true,
        // Sparse lines (a device that just started, an isolated old reading) need dots to show.
        points: { show: line.t.length < 60, size: 6, fill: line.color },
        value: (_u, v) => (v === null || v === undefined ? '—' : `${v.toFixed(digits)} ${unit}`),
      });
      if (envelope) {
        series.push({ label: 'Lowest', stroke: 'rgba(0,114,178,0.35)', width: 1, spanGaps: true, points: { show: false } });
        series.push({ label: 'Highest', stroke: 'rgba(0,114,178,0.35)', width: 1, spanGaps: true, points: { show: false } });
        bands.push({ series: [3, 2], fill: 'rgba(0,114,178,0.15)' });
      }
    }
    const markers = () => this.markers;
    return {
      width: this.width(),
      height: this.opts.height ?? 220,
      series,
      bands,
      legend: { show: lines.length > 0 && lines.length <= 8 },
      cursor: { drag: { x: true, y: false } },
      scales: {
        // The whole window, not the span with data: an empty stretch is information, and a
        // lone point must not stretch the axis (uPlot widens min == max by 86 400 000 s).
        x: { time: true, range: () => this.window() },
        y: {
          range: (_u, min, max) => {
            let lo = Number.isFinite(min) ? min : 0;
            let hi = Number.isFinite(max) ? max : 1;
            if (band) { lo = Math.min(lo, band.lo); hi = Math.max(hi, band.hi); }
            if (floor !== undefined) { lo = Math.min(lo, floor); hi = Math.max(hi, floor); }
            const pad = Math.max((hi - lo) * 0.08, digits ? 0.2 : 2);
            return [lo - pad, hi + pad];
          },
        },
      },
      axes: [
        { stroke: '#111418', grid: { stroke: '#e3e6ea' }, ticks: { stroke: '#c9ced6' },
          values: (_u, ticks) => {
            const labels = ticks.map((t) => tickFmt.format(new Date(t * 1000)));
            this.el.dataset.xTicks = JSON.stringify(labels);
            return labels;
          } },
        { stroke: '#111418', grid: { stroke: '#e3e6ea' }, ticks: { stroke: '#c9ced6' }, size: 56,
          values: (_u, ticks) => ticks.map((v) => v.toFixed(digits)) },
      ],
      hooks: {
        setScale: [
          (u, key) => {
            if (key !== 'x') return;
            this.el.dataset.xMin = String(u.scales.x?.min ?? '');
            this.el.dataset.xMax = String(u.scales.x?.max ?? '');
          },
        ],
        drawClear: [
          (u) => {
            const ctx = u.ctx;
            const { left, top, width, height } = u.bbox;
            ctx.save();
            if (band) {
              const y1 = u.valToPos(band.hi, 'y', true);
              const y0 = u.valToPos(band.lo, 'y', true);
              ctx.fillStyle = 'rgba(0,158,115,0.13)';
              ctx.fillRect(left, Math.max(top, y1), width, Math.min(top + height, y0) - Math.max(top, y1));
            }
            if (floor !== undefined) {
              const y = u.valToPos(floor, 'y', true);
              ctx.fillStyle = 'rgba(213,94,0,0.10)';
              ctx.fillRect(left, y, width, top + height - y);
            }
            ctx.restore();
          },
        ],
        draw: [
          (u) => {
            const ctx = u.ctx;
            ctx.save();
            for (const m of markers()) {
              const x = u.valToPos(m.t, 'x', true);
              const y = u.valToPos(m.v, 'y', true);
              if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
              const s = 7 * devicePixelRatio;
              ctx.beginPath();
              ctx.moveTo(x, y - s);
              ctx.lineTo(x + s, y + s * 0.8);
              ctx.lineTo(x - s, y + s * 0.8);
              ctx.closePath();
              ctx.fillStyle = '#d55e00';
              ctx.strokeStyle = '#000';
              ctx.lineWidth = 1.5 * devicePixelRatio;
              ctx.fill();
              ctx.stroke();
            }
            ctx.restore();
          },
        ],
      },
    };
  }
}
