// The VitalWatch dashboard. Loads the window's data from the API once, then stays current
// from the live event stream (live.ts): no polling. Stored times are UTC; everything is shown
// in the viewer's time zone. The time range and device filter apply to every view.
//
// This file starts and ends sessions, loads the window's data, and routes between the tabs;
// each view is its own module (overview, realtime, alerts, anomalies, devices, statistics,
// readings), every API call is in api.ts, and every vital's name and unit comes from
// generated/vitals.ts.
import './style.css';
import {
  type Me, getAnomalies, getDevices, getLatest, getReadings, getStats, isUnauthorized, onUnauthorized, setCsrfToken,
} from './api';
import { renderAlertsPanel, stopAlertRefresh, updateAlertBadge, updateHiddenCriticalBanner } from './alerts';
import { renderAnomalies, stopAnomalyRecount } from './anomalies';
import { bindLogin, hideLogin, showLogin, showUser, signOut, whoAmI } from './auth';
import { renderDevices } from './devices';
import { renderDeviceOptions, renderMetrics, setConn } from './header';
import { connect, disconnect } from './live';
import { clearFresh } from './overview';
import { NEWEST_ROWS, renderLogs } from './readings';
import { destroyCharts, renderRealtime } from './realtime';
import { TABS, type Tab, auth, currentWindow, loadRanges, resetData, setNavigation, state } from './state';
import { renderStatistics } from './statistics';
import { byId, fill } from './util';

/** Anomalies loaded for a window (cards, markers, counts arrive with the statistics). */
const ANOMALY_LIMIT = 500;
/** The range the page opens with, left out of the URL. */
const DEFAULT_RANGE_S = 3600;

// ---------------------------------------------------------------------------- loading

async function loadAll(): Promise<void> {
  if (!auth.session) return;
  const gen = ++state.generation;
  writeUrl();
  const w = currentWindow();
  // Aggregates over a long window are the slowest read: everything else renders first, and
  // the metrics (and the views that count) fill in when they arrive.
  const statsPromise = getStats(w);
  const [devices, latest, anomalies, newest] = await Promise.all([
    getDevices(),
    getLatest(w),
    getAnomalies(w, ANOMALY_LIMIT),
    getReadings(w, NEWEST_ROWS),
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
  if (isUnauthorized(err) || !auth.session) return;
  console.error(err);
  setConn('down', 'Server unreachable');
}

// ---------------------------------------------------------------------------- routing

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

function isTab(id: string): id is Tab {
  return (TABS as readonly string[]).includes(id);
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
    const tab = button?.id.replace('tab-', '') ?? '';
    if (isTab(tab)) selectTab(tab);
  });
  tabs.addEventListener('keydown', (e) => {
    const visible = TABS.filter((t) => !byId(`tab-${t}`).hidden);
    const idx = visible.indexOf(state.tab);
    let next = -1;
    if (e.key === 'ArrowRight') next = (idx + 1) % visible.length;
    else if (e.key === 'ArrowLeft') next = (idx - 1 + visible.length) % visible.length;
    else if (e.key === 'Home') next = 0;
    else if (e.key === 'End') next = visible.length - 1;
    const tab = visible[next];
    if (tab) {
      e.preventDefault();
      selectTab(tab, true);
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
  if (state.rangeS !== DEFAULT_RANGE_S) q.set('range', String(state.rangeS));
  if (state.device) q.set('device', state.device);
  const s = q.toString();
  history.replaceState(null, '', s ? `?${s}` : location.pathname);
}

// ---------------------------------------------------------------------------- sessions

/** Starts the dashboard for whoever /auth/me or the sign-in form says is signed in. */
function startSession(me: Me): void {
  auth.session = me;
  setCsrfToken(me.csrf_token);
  showUser(me);
  hideLogin();
  setConn('connecting', 'Connecting…');
  connect();
  void loadAll().catch(showLoadError).finally(() => { if (auth.session === me) document.body.dataset.ready = 'true'; });
}

/** The session ended (401, or signed out): stop the live stream and every pending call, forget
 *  the patient data shown, and bring the sign-in form back. */
function endSession(notice: string): void {
  if (!auth.session) return;
  auth.session = null;
  setCsrfToken(null);
  disconnect();
  window.clearTimeout(reloadTimer);
  stopAlertRefresh();
  stopAnomalyRecount();
  state.generation++;
  delete document.body.dataset.ready;
  clearData();
  showLogin(notice);
}

function clearData(): void {
  destroyCharts();
  resetData();
  clearFresh();
  for (const t of TABS) fill(byId(`panel-${t}`));
  renderDeviceOptions();
  renderMetrics('–');
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
  setNavigation({ setDevice, selectTab, reloadSoon, endSession });
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
