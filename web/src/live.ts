// The live stream (/api/events, Server-Sent Events): every view stays current from it, with
// no polling. The stream's cursor (the event id) survives reconnections: a browser that comes
// back gets what it missed, or a `resync` telling it to reload.
import { type Anomaly, type Reading, eventData, eventsUrl, getLatest } from './api';
import { probeAlerts, refreshAlertsSoon, updateHiddenCriticalBanner } from './alerts';
import { showLiveAnomaly } from './anomalies';
import { whoAmI } from './auth';
import { renderMetrics, setConn } from './header';
import { markFresh, rerenderTilesSoon } from './overview';
import { NEWEST_ROWS, prependLog } from './readings';
import { chartAnomaly, chartReading } from './realtime';
import { auth, inWindow, matchesDevice, nav, sinceIso, state } from './state';
import { renderStatistics } from './statistics';

/** Reconnection delays: the first, and the most after doubling. */
const FIRST_RETRY_MS = 1000;
const MAX_RETRY_MS = 10_000;
/** Anomalies kept in memory for the views. */
const MAX_ANOMALIES = 2000;
/** NEWS2 is scored on the server: a device's latest is refetched this long after a reading
 *  that changes its inputs (once for a burst). */
const LATEST_REFRESH_MS = 500;
const HOUR_MS = 3_600_000;

let source: EventSource | null = null;
let lastEventId = '';
let retryMs = FIRST_RETRY_MS;
let connectedBefore = false;
let reconnectTimer = 0;
const latestTimers = new Map<string, number>();

/** Opens the stream (closing any open one), resuming after the last event received. */
export function connect(): void {
  source?.close();
  source = null;
  window.clearTimeout(reconnectTimer);
  if (!auth.session) return;
  source = new EventSource(eventsUrl(lastEventId));
  const on = <K extends 'hello' | 'reading' | 'anomaly' | 'alert' | 'resync'>(name: K, handle: (e: MessageEvent<string>) => void) =>
    source?.addEventListener(name, (e) => {
      const m = e as MessageEvent<string>;
      if (m.lastEventId) lastEventId = m.lastEventId;
      handle(m);
    });
  on('hello', (e) => {
    retryMs = FIRST_RETRY_MS;
    const { resumed } = eventData('hello', e);
    setConn('live', 'Live');
    // A reconnection that could not resume may have missed anything: refetch. (The first
    // connection needs nothing: the session's start loads the page's data.)
    if (!resumed && connectedBefore) nav().reloadSoon(0);
    connectedBefore = true;
    void probeAlerts();
  });
  on('reading', (e) => onReading(eventData('reading', e)));
  on('anomaly', (e) => onAnomaly(eventData('anomaly', e)));
  on('alert', () => refreshAlertsSoon());
  on('resync', () => nav().reloadSoon(0));
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
      retryMs = Math.min(retryMs * 2, MAX_RETRY_MS);
    }
  });
}

/** Closes the stream and forgets its cursor and every pending refresh (sign-out). */
export function disconnect(): void {
  source?.close();
  source = null;
  window.clearTimeout(reconnectTimer);
  for (const t of latestTimers.values()) window.clearTimeout(t);
  latestTimers.clear();
  lastEventId = '';
  retryMs = FIRST_RETRY_MS;
  connectedBefore = false;
}

let checkingSession = false;
async function checkSession(): Promise<void> {
  if (checkingSession || !auth.session || auth.session.kind === 'loopback') return;
  checkingSession = true;
  try {
    if (auth.session && (await whoAmI()) === null) nav().endSession('Your session ended; sign in again.');
  } catch {
    // The server is unreachable: the stream's reconnection reports it and retries.
  } finally {
    checkingSession = false;
  }
}

function onReading(r: Reading): void {
  const dev = state.devices.find((d) => d.device_id === r.device_id);
  if (!dev) {
    // A new device: its registration row is needed for the tile and the filter.
    nav().reloadSoon(200);
    return;
  }
  dev.total_readings += 1;
  if (!dev.last_seen || dev.last_seen < r.received_at) {
    const wasActive = dev.last_seen && Date.now() - new Date(dev.last_seen).getTime() <= HOUR_MS;
    if (state.stats && matchesDevice(r.device_id) && !wasActive) state.stats.active_last_hour += 1;
    dev.last_seen = r.received_at;
  }
  if (!matchesDevice(r.device_id) || !inWindow(r.timestamp)) return;
  const prev = state.latest.get(r.device_id);
  if (!prev || prev.reading.timestamp <= r.timestamp) {
    // Keep the last NEWS2 (and the patient's scale) until the server scores the new reading:
    // the engine's NEWS2 holds each parameter for its validity, so a reading without NEWS2
    // vitals does not take the score off the tile.
    state.latest.set(r.device_id, { reading: r, news2: prev?.news2 ?? null, spo2_scale: prev?.spo2_scale ?? 'scale1' });
    const news2Input = r.spo2 !== null || r.respiratory_rate !== null || r.systolic_bp !== null || r.consciousness !== null;
    if (news2Input || prev?.news2) refreshLatestSoon(r.device_id);
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
  prependLog(r);
  markFresh(r.device_id);
  chartReading(r);
  renderMetrics();
  rerenderTilesSoon();
}

function refreshLatestSoon(id: string): void {
  if (latestTimers.has(id)) return;
  latestTimers.set(id, window.setTimeout(async () => {
    latestTimers.delete(id);
    const res = await getLatest({ since: sinceIso(), device_id: id }).catch(() => null);
    if (!res || !auth.session) return;
    for (const l of res.latest) state.latest.set(l.reading.device_id, l);
    rerenderTilesSoon();
  }, LATEST_REFRESH_MS));
}

function onAnomaly(a: Anomaly): void {
  if (!matchesDevice(a.device_id)) {
    if (a.severity === 'CRITICAL') {
      state.hiddenCriticalAnomalies.set(a.device_id, (state.hiddenCriticalAnomalies.get(a.device_id) ?? 0) + 1);
      updateHiddenCriticalBanner();
    }
    return;
  }
  if (!inWindow(a.detected_at)) return;
  state.anomalies.unshift(a);
  state.anomalies.length = Math.min(state.anomalies.length, MAX_ANOMALIES);
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
  chartAnomaly(a);
  if (state.tab === 'anomalies') showLiveAnomaly(a);
  else if (state.tab === 'statistics') renderStatistics();
}
