// The Alerts view. Alerting is served by /api/alerts when the server has it; the view is shown
// only then. The alert's JSON is read defensively (id, device_id, priority or severity,
// state or status, condition or kind, message, raised_at or started_at) so small naming
// differences in the API do not hide an alert.
import { HttpError, ago, fill, h, localDateTime, sevBadge } from './util';

export type AlertItem = Record<string, unknown> & {
  id?: string | number; alert_id?: string | number; device_id?: string;
  severity?: string; priority?: string; state?: string; status?: string;
  condition?: string; kind?: string; type?: string; message?: string; details?: string;
  raised_at?: string; started_at?: string; opened_at?: string; updated_at?: string;
};

export function alertId(a: AlertItem): string {
  return String(a.id ?? a.alert_id ?? '');
}
export function alertDevice(a: AlertItem): string {
  return String(a.device_id ?? '');
}
/** HIGH priority (IEC 60601-1-8) and CRITICAL severity are both shown as critical. */
export function alertSeverity(a: AlertItem): string {
  const raw = String(a.severity ?? a.priority ?? '').toUpperCase();
  if (raw === 'HIGH' || raw === 'CRITICAL') return 'CRITICAL';
  if (raw === 'MEDIUM' || raw === 'WARNING') return 'WARNING';
  return 'INFO';
}
function stateOf(a: AlertItem): string {
  return String(a.state ?? a.status ?? 'active').toLowerCase();
}
export function alertIsActive(a: AlertItem): boolean {
  const s = stateOf(a);
  return !(s.includes('resolv') || s.includes('clear') || s.includes('closed') || s.includes('ended'));
}
const RANK: Record<string, number> = { CRITICAL: 0, WARNING: 1, INFO: 2 };
export function sortAlerts(alerts: AlertItem[]): AlertItem[] {
  return [...alerts].sort((x, y) =>
    Number(!alertIsActive(x)) - Number(!alertIsActive(y)) ||
    (RANK[alertSeverity(x)] ?? 3) - (RANK[alertSeverity(y)] ?? 3) ||
    String(y.raised_at ?? y.started_at ?? '').localeCompare(String(x.raised_at ?? x.started_at ?? '')));
}

export interface AlertActor {
  /** The signed-in user's name: recorded as who acted (no free-text name then). */
  name: string | null;
  /** False for a read-only role (viewer): the buttons are disabled and say why. */
  canAct: boolean;
}

const ACTION_WORDS: Record<'ack' | 'silence', string> = { ack: 'acknowledge', silence: 'silence' };

/** What to tell the user when an action failed. */
function actionError(err: unknown, action: 'ack' | 'silence'): { text: string; final: boolean } {
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

export function renderAlerts(
  panel: HTMLElement,
  alerts: AlertItem[],
  shown: (deviceId: string) => boolean,
  act: (a: AlertItem, action: 'ack' | 'silence') => Promise<void>,
  actor: AlertActor = { name: null, canAct: true },
): void {
  const visible = alerts.filter((a) => shown(alertDevice(a)));
  const hidden = alerts.length - visible.length;
  const items = visible.map((a) => {
    const sev = alertSeverity(a);
    const st = stateOf(a);
    const active = alertIsActive(a);
    const when = String(a.raised_at ?? a.started_at ?? a.opened_at ?? '');
    const error = h('p', { class: 'alert-error', role: 'alert', hidden: true });
    const button = (label: string, action: 'ack' | 'silence', done: boolean) => h('button', {
      class: action === 'ack' ? 'btn btn-primary' : 'btn',
      'data-action': action,
      disabled: !active || done || !actor.canAct,
      title: actor.canAct ? undefined : `Your role may not ${ACTION_WORDS[action]} alerts`,
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
    return h('article', { class: `alert sev-border-${sev}${active ? '' : ' inactive'}`, 'data-alert': alertId(a), 'data-state': st },
      h('div', {},
        h('div', { class: 'card-title' }, h('span', {}, `${a.condition ?? a.kind ?? a.type ?? 'Alert'} — ${alertDevice(a)}`), sevBadge(sev)),
        h('div', { class: 'card-body' }, String(a.message ?? a.details ?? '')),
        h('div', { class: 'card-time' }, `State: ${st}${when ? ` · raised ${localDateTime(when)} (${ago(when)})` : ''}`)),
      h('div', { class: 'alert-actions' },
        button('Acknowledge', 'ack', st.includes('ack')),
        button('Silence', 'silence', st.includes('silenc'))),
      error);
  });
  // Signed in, the user is who acts; otherwise (a trusted workstation) the page asks for a name.
  const by = actor.name !== null
    ? h('input', { id: 'ack-by', type: 'text', readonly: true, value: actor.name, 'aria-readonly': 'true' })
    : h('input', {
      id: 'ack-by', type: 'text', autocomplete: 'name', maxlength: '64',
      placeholder: 'your name', value: localStorage.getItem('vw-ack-by') ?? '',
      oninput: (e: Event) => localStorage.setItem('vw-ack-by', (e.currentTarget as HTMLInputElement).value),
    });
  fill(panel,
    h('h2', {}, 'Alerts'),
    actor.canAct
      ? h('label', { class: 'ack-by' }, 'Acknowledge and silence as ', by)
      : h('p', { class: 'hint', id: 'alerts-read-only' }, 'Your role can view alerts but not acknowledge or silence them.'),
    hidden ? h('p', { class: 'banner banner-warning' }, `${hidden} alert(s) on other devices are hidden by the device filter.`) : null,
    items.length ? h('div', { class: 'alerts' }, ...items) : h('div', { class: 'empty' }, 'No alerts.'));
}
