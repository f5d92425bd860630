// The Alerts view and the alert badge. Alerts come from /api/alerts (refetched when the live
// stream says one changed); the view is shown only when the server answers it. The header
// counts the open alerts by priority (judgement.ts), each card shows the server's message, and
// a new open high-priority alert sounds (when the user turned the sound on).
import { type Alert, HttpError, acknowledgeAlert, getAlerts, isUnauthorized, silenceAlert } from './api';
import { canActOnAlerts } from './auth';
import { conditionLabel, priorityLevel } from './labels';
import { rerenderTilesSoon } from './overview';
import { PRIORITIES, openCounts } from './judgement';
import { activeCritical, alertIsActive, auth, matchesDevice, nav, state } from './state';
import { ago, byId, fill, h, localDateTime, sevBadge } from './util';

/** How long "Silence" pauses an alert's audio (IEC 60601-1-8 practice: at most two minutes). */
const AUDIO_PAUSE_S = 120;

const RANK: Record<Alert['priority'], number> = { high: 0, medium: 1, low: 2 };

/** Open first, then by priority, then newest first. */
export function sortAlerts(alerts: Alert[]): Alert[] {
  return [...alerts].sort((x, y) =>
    Number(!alertIsActive(x)) - Number(!alertIsActive(y)) ||
    RANK[x.priority] - RANK[y.priority] ||
    y.opened_at.localeCompare(x.opened_at));
}

function isSilenced(a: Alert, now = Date.now()): boolean {
  return a.silenced_until !== null && new Date(a.silenced_until).getTime() > now;
}

type Action = 'ack' | 'silence';
const ACTION_WORDS: Record<Action, string> = { ack: 'acknowledge', silence: 'silence' };

/** What to tell the user when an action failed, and whether retrying could help. */
function actionError(err: unknown, action: Action): { text: string; final: boolean } {
  if (err instanceof HttpError) {
    if (err.status === 403 && err.code === 'csrf') {
      return { text: 'The server refused the request (its security token was missing or stale). Reload the page and try again.', final: false };
    }
    if (err.status === 403) {
      return { text: `Not allowed: your role may not ${ACTION_WORDS[action]} alerts. Ask a clinician or an administrator.`, final: true };
    }
    if (err.status === 401) return { text: 'Your session ended; sign in again.', final: true };
    return { text: `Could not ${ACTION_WORDS[action]} the alert: ${err.detail || `HTTP ${err.status}`}.`, final: false };
  }
  return { text: `Could not ${ACTION_WORDS[action]} the alert: ${err instanceof Error ? err.message : String(err)}.`, final: false };
}

/** Who acts: the signed-in user, or on a trusted workstation (no sign-in) the name typed in. */
function actingName(): string {
  const session = auth.session;
  if (session?.kind === 'session') return session.name;
  const input = byId<HTMLInputElement>('ack-by');
  const by = input.value.trim();
  if (!by) {
    input.focus();
    throw new Error('enter your name first');
  }
  return by;
}

async function act(a: Alert, action: Action): Promise<void> {
  const by = actingName();
  if (action === 'ack') await acknowledgeAlert(a.id, by);
  else await silenceAlert(a.id, by, AUDIO_PAUSE_S);
  await probeAlerts();
}

function alertCard(a: Alert, canAct: boolean): HTMLElement {
  const active = alertIsActive(a);
  const error = h('p', { class: 'alert-error', role: 'alert', hidden: true });
  const button = (label: string, action: Action, done: boolean) => h('button', {
    class: action === 'ack' ? 'btn btn-primary' : 'btn',
    'data-action': action,
    disabled: !active || done || !canAct,
    title: canAct ? undefined : `Your role may not ${ACTION_WORDS[action]} alerts`,
    onclick: async (e: Event) => {
      const b = e.currentTarget as HTMLButtonElement;
      b.disabled = true;
      error.hidden = true;
      try {
        await act(a, action);
      } catch (err) {
        const { text, final } = actionError(err, action);
        error.textContent = text;
        error.hidden = false;
        b.disabled = final;
        if (!final) b.textContent = `${label} failed — retry`;
        console.error(err);
      }
    },
  }, label);
  const silenced = isSilenced(a);
  return h('article', { class: `alert sev-border-${priorityLevel(a.priority)}${active ? '' : ' inactive'}`, 'data-alert': a.id, 'data-state': a.state },
    h('div', {},
      h('div', { class: 'card-title' }, h('span', {}, `${conditionLabel(a.condition)} — ${a.device_id}`), sevBadge(priorityLevel(a.priority))),
      h('div', { class: 'card-body alert-message' }, a.message),
      h('div', { class: 'card-time' },
        `State: ${a.state}${silenced ? ' (audio paused)' : ''} · raised ${localDateTime(a.opened_at)} (${ago(a.opened_at)})`)),
    h('div', { class: 'alert-actions' },
      button('Acknowledge', 'ack', a.state === 'acknowledged'),
      button('Silence', 'silence', silenced)),
    error);
}

export function renderAlertsPanel(): void {
  const session = auth.session;
  const name = session?.kind === 'session' ? session.name : null;
  const canAct = canActOnAlerts(session);
  const visible = state.alerts.filter((a) => matchesDevice(a.device_id));
  const hidden = state.alerts.length - visible.length;
  // Signed in, the user is who acts; otherwise (a trusted workstation) the page asks for a name.
  const by = name !== null
    ? h('input', { id: 'ack-by', type: 'text', readonly: true, value: name, 'aria-readonly': 'true' })
    : h('input', {
      id: 'ack-by', type: 'text', autocomplete: 'name', maxlength: '64',
      placeholder: 'your name', value: localStorage.getItem('vw-ack-by') ?? '',
      oninput: (e: Event) => localStorage.setItem('vw-ack-by', (e.currentTarget as HTMLInputElement).value),
    });
  fill(byId('panel-alerts'),
    h('h2', {}, 'Alerts'),
    canAct
      ? h('label', { class: 'ack-by' }, 'Acknowledge and silence as ', by)
      : h('p', { class: 'hint', id: 'alerts-read-only' }, 'Your role can view alerts but not acknowledge or silence them.'),
    hidden ? h('p', { class: 'banner banner-warning' }, `${hidden} alert(s) on other devices are hidden by the device filter.`) : null,
    visible.length ? h('div', { class: 'alerts' }, ...visible.map((a) => alertCard(a, canAct))) : h('div', { class: 'empty' }, 'No alerts.'));
}

/** Refetches the alerts and redraws what shows them; hides the view when the server has none. */
export async function probeAlerts(): Promise<void> {
  if (!auth.session) return;
  try {
    const res = await getAlerts();
    if (!auth.session) return;
    state.alertsAvailable = true;
    state.alerts = sortAlerts(res.alerts);
  } catch (err) {
    if (!auth.session || isUnauthorized(err)) return;
    // 404: alerting is not part of this server; hide the view quietly.
    state.alertsAvailable = false;
    state.alerts = [];
    if (!(err instanceof HttpError)) console.warn(err);
  }
  byId('tab-alerts').hidden = !state.alertsAvailable;
  rerenderTilesSoon();
  updateAlertBadge();
  updateHiddenCriticalBanner();
  if (state.tab === 'alerts') renderAlertsPanel();
}

let alertTimer = 0;
/** Refetches shortly, once for a burst of alert events. */
export function refreshAlertsSoon(): void {
  window.clearTimeout(alertTimer);
  alertTimer = window.setTimeout(() => void probeAlerts(), 150);
}

export function stopAlertRefresh(): void {
  window.clearTimeout(alertTimer);
}

const PRIORITY_SHAPES: Record<Alert['priority'], string> = { high: '▲', medium: '◆', low: '●' };

/** The header's badge: the open alerts by priority, as /api/alerts has them (high ones
 *  flash while not acknowledged). */
export function updateAlertBadge(): void {
  const critical = activeCritical();
  const counts = openCounts();
  const badge = byId('alert-badge');
  const total = counts.high + counts.medium + counts.low;
  badge.hidden = total === 0;
  badge.className = `alert-badge alert-badge-${counts.high ? 'high' : counts.medium ? 'medium' : 'low'}`;
  for (const p of PRIORITIES) badge.dataset[p] = String(counts[p]);
  fill(badge, ...PRIORITIES.filter((p) => counts[p] > 0).map((p) =>
    h('span', { class: `badge-count badge-${p}`, 'data-priority': p }, `${PRIORITY_SHAPES[p]} ${counts[p]} ${p}`)));
  badge.setAttribute('aria-label', `Open alerts: ${PRIORITIES.map((p) => `${counts[p]} ${p} priority`).join(', ')}`);
  badge.classList.toggle('flash', critical.some((a) => a.state === 'active'));
  document.title = critical.length ? `(${critical.length}) CRITICAL — VitalWatch` : 'VitalWatch';
  fill(byId('tab-alerts'), 'Alerts', ...(critical.length ? [h('span', { class: 'count' }, critical.length)] : []));
  const ids = new Set(critical.map((a) => a.id));
  const fresh = [...ids].some((id) => !state.knownCritical.has(id));
  state.knownCritical = ids;
  if (fresh) beep();
}

/** A critical alert or anomaly is never hidden by the device filter without saying so. */
export function updateHiddenCriticalBanner(): void {
  const hidden = activeCritical().filter((a) => !matchesDevice(a.device_id));
  const anomalies = [...state.hiddenCriticalAnomalies.values()].reduce((x, y) => x + y, 0);
  const banner = byId('hidden-critical');
  banner.hidden = hidden.length === 0 && anomalies === 0;
  if (banner.hidden) return;
  const devices = [...new Set([...hidden.map((a) => a.device_id), ...state.hiddenCriticalAnomalies.keys()])].join(', ');
  const parts = [
    hidden.length ? `${hidden.length} critical alert${hidden.length === 1 ? '' : 's'}` : '',
    anomalies ? `${anomalies} new critical anomal${anomalies === 1 ? 'y' : 'ies'}` : '',
  ].filter(Boolean).join(' and ');
  fill(banner,
    h('strong', {}, `▲ ${parts} hidden by the device filter`),
    ` (${devices}).`,
    h('button', { class: 'btn', id: 'show-all', onclick: () => nav().setDevice('') }, 'Show all devices'));
}

let audio: AudioContext | null = null;
function beep(): void {
  if (!byId<HTMLInputElement>('sound').checked) return;
  try {
    audio ??= new AudioContext();
    const osc = audio.createOscillator();
    const gain = audio.createGain();
    osc.frequency.value = 880;
    gain.gain.value = 0.2;
    osc.connect(gain).connect(audio.destination);
    osc.start();
    osc.stop(audio.currentTime + 0.6);
  } catch (err) {
    console.warn('sound unavailable', err);
  }
}
