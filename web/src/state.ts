// What the page holds: the window (time range and device filter), the data loaded for it, who
// is signed in, and the navigation every view may call (set once by main.ts, so that views do
// not import the module that imports them: imports point one way, main → views → state).
import {
  type Alert, type Anomaly, type Device, type Latest, type Me, type Ranges, type Reading, type Stats, type Window,
  getRanges, isUnauthorized,
} from './api';
import { paletteColor } from './util';

export type Tab = 'realtime' | 'alerts' | 'anomalies' | 'devices' | 'statistics' | 'logs';
export const TABS: readonly Tab[] = ['realtime', 'alerts', 'anomalies', 'devices', 'statistics', 'logs'];

export const state = {
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
  alerts: [] as Alert[],
  knownCritical: new Set<number>(),
  /** Critical anomalies that arrived live for devices the filter hides, by device. */
  hiddenCriticalAnomalies: new Map<string, number>(),
  chartDevices: [] as string[],
  loadedAt: 0,
  /** Bumped by every reload and sign-out: an answer for an older generation is dropped. */
  generation: 0,
};

/** Forgets every patient datum (sign-out), keeping the window. */
export function resetData(): void {
  Object.assign(state, {
    devices: [], latest: new Map(), stats: null, anomalies: [], newest: [], logs: [], logsCursor: null,
    alertsAvailable: false, alerts: [], knownCritical: new Set(), hiddenCriticalAnomalies: new Map(), chartDevices: [], loadedAt: 0,
  });
}

/** Who is signed in (or the trusted loopback client); null while the sign-in form shows. */
export const auth = { session: null as Me | null };

/** Moves between views; main.ts provides it. */
export interface Navigation {
  /** Shows one device (or all with ''), and reloads. */
  setDevice(id: string): void;
  selectTab(tab: Tab, focus?: boolean): void;
  /** Reloads the window's data after `delayMs` (coalescing calls). */
  reloadSoon(delayMs?: number): void;
  /** The session ended: forget the data and show the sign-in form with `notice`. */
  endSession(notice: string): void;
}

let navigation: Navigation | null = null;
export function setNavigation(n: Navigation): void {
  navigation = n;
}
export function nav(): Navigation {
  if (!navigation) throw new Error('navigation used before main.ts set it');
  return navigation;
}

export function sinceIso(): string {
  return new Date(Date.now() - state.rangeS * 1000).toISOString();
}

/** The window every read takes. */
export function currentWindow(): Window {
  return { since: sinceIso(), device_id: state.device || undefined };
}

export function inWindow(iso: string): boolean {
  return new Date(iso).getTime() >= Date.now() - state.rangeS * 1000;
}

export function matchesDevice(id: string): boolean {
  return !state.device || state.device === id;
}

export function visibleDevices(): Device[] {
  return state.devices.filter((d) => matchesDevice(d.device_id));
}

/** A device's line colour in multi-device charts. */
export function colorOf(id: string): string {
  return paletteColor(Math.max(0, state.chartDevices.indexOf(id)));
}

export function deviceLabel(id: string): string {
  const d = state.devices.find((x) => x.device_id === id);
  return d?.patient_label ? `${id} · ${d.patient_label}` : id;
}

/** The site's rule ranges, fetched once per session: the charts' reference bands only (the
 *  page judges nothing by them: judgement.ts). */
let rangesReady: Promise<void> | null = null;
export function loadRanges(): Promise<void> {
  rangesReady ??= getRanges()
    .then((r) => { state.ranges = r; })
    .catch((err: unknown) => {
      rangesReady = null;
      if (!isUnauthorized(err)) console.warn('ranges unavailable', err);
    });
  return rangesReady;
}

/** An alert that still needs attention: not resolved (acknowledged ones still count). */
export function alertIsActive(a: Alert): boolean {
  return a.state !== 'resolved';
}

/** The open high-priority alerts, which the header counts and sounds for. */
export function activeCritical(): Alert[] {
  return state.alerts.filter((a) => alertIsActive(a) && a.priority === 'high');
}
