// DOM, formatting and API helpers. Every text goes in through textContent (h()), never
// innerHTML, so a device id or detail string can never become markup.

export type Child = Node | string | number | null | undefined | false;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string | number | boolean | ((e: Event) => void) | undefined> = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === false) continue;
    if (typeof value === 'function') el.addEventListener(key.replace(/^on/, ''), value);
    else if (key === 'class') el.className = String(value);
    else if (value === true) el.setAttribute(key, '');
    else el.setAttribute(key, String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

export function svg(tag: string, attrs: Record<string, string | number>): SVGElement {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  return el;
}

export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`missing #${id}`);
  return el as T;
}

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
const dateTimeFmt = new Intl.DateTimeFormat(undefined, {
  year: 'numeric', month: 'short', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit',
});

/** A stored UTC time, shown in the viewer's zone; today's times show the time only. */
export function localTime(iso: string | null | undefined): string {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '—';
  const today = new Date();
  return d.toDateString() === today.toDateString() ? timeFmt.format(d) : dateTimeFmt.format(d);
}

export function localDateTime(iso: string | null | undefined): string {
  if (!iso) return '—';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? '—' : dateTimeFmt.format(d);
}

export function ago(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return 'never';
  const s = Math.max(0, Math.round((now - new Date(iso).getTime()) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

export function num(v: number | null | undefined, digits = 0): string {
  return v === null || v === undefined || !Number.isFinite(v) ? '—' : v.toFixed(digits);
}

export const intFmt = new Intl.NumberFormat();

/** A refused or failed API call: the HTTP status and the API's JSON error (`{"error","detail"}`). */
export class HttpError extends Error {
  constructor(
    public status: number,
    message: string,
    /** The API's stable error code, e.g. "forbidden", "csrf", "session_expired", "login_failed". */
    public code = '',
    public detail = '',
    /** Seconds from a Retry-After header (429), when given. */
    public retryAfterS: number | null = null,
  ) { super(message); }
}

// The session's CSRF token lives in memory only (never localStorage): a reload asks /auth/me.
let csrfToken: string | null = null;
export function setCsrfToken(token: string | null): void {
  csrfToken = token;
}

let unauthorized: ((err: HttpError) => void) | null = null;
/** Called on any 401 from the API (the session ended or there never was one), once per call. */
export function onUnauthorized(handler: (err: HttpError) => void): void {
  unauthorized = handler;
}

async function httpError(path: string, res: Response): Promise<HttpError> {
  let code = '';
  let detail = '';
  try {
    const body = await res.json() as { error?: unknown; detail?: unknown };
    code = typeof body.error === 'string' ? body.error : '';
    detail = typeof body.detail === 'string' ? body.detail : '';
  } catch { /* not JSON */ }
  const retry = Number(res.headers.get('retry-after') ?? '');
  return new HttpError(res.status, `${path}: HTTP ${res.status}${code ? ` ${code}` : ''}`, code, detail,
    Number.isFinite(retry) && retry > 0 ? Math.ceil(retry) : null);
}

export interface CallOptions {
  method?: 'GET' | 'POST' | 'PUT' | 'DELETE';
  body?: unknown;
  /** The /auth/* calls answer 401 as part of their flow: do not treat it as "the session ended". */
  authFlow?: boolean;
}

/** Every API call goes through here: the CSRF header on state-changing methods, JSON errors
 *  as HttpError, and 401 handed to the handler set with onUnauthorized(). */
export async function call(path: string, opts: CallOptions = {}): Promise<Response> {
  const method = opts.method ?? 'GET';
  const headers: Record<string, string> = { accept: 'application/json' };
  if (opts.body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET' && csrfToken) headers['x-csrf-token'] = csrfToken;
  const res = await fetch(path, {
    method,
    headers,
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
    credentials: 'same-origin',
  });
  if (res.ok) return res;
  const err = await httpError(path, res);
  if (res.status === 401 && !opts.authFlow) unauthorized?.(err);
  throw err;
}

export async function getJson<T>(path: string, params: Record<string, string | undefined> = {}): Promise<T> {
  const res = await call(withQuery(path, params));
  return res.json() as Promise<T>;
}

/** POST, PUT or DELETE with a JSON body; the answer's JSON, or {} when it has none. */
export async function sendJson<T>(method: 'POST' | 'PUT' | 'DELETE', path: string, body: unknown = {}, opts: Omit<CallOptions, 'method' | 'body'> = {}): Promise<T> {
  const res = await call(path, { ...opts, method, body });
  const text = await res.text();
  return (text ? JSON.parse(text) : {}) as T;
}

export function postJson<T>(path: string, body: unknown = {}): Promise<T> {
  return sendJson<T>('POST', path, body);
}

export function isUnauthorized(err: unknown): boolean {
  return err instanceof HttpError && err.status === 401;
}

export function withQuery(path: string, params: Record<string, string | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== '') q.set(k, v);
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

export const TYPE_LABELS: Record<string, string> = {
  OUT_OF_RANGE_HR: 'Heart rate out of range',
  OUT_OF_RANGE_TEMP: 'Temperature out of range',
  WEAK_SIGNAL: 'Weak signal',
  LOW_BATTERY: 'Low battery',
  ML_ANOMALY: 'Unusual pattern (model)',
  MISSING_FIELDS: 'Incomplete reading',
  UNKNOWN_DEVICE: 'Unknown device',
  SENSOR_FAULT: 'Sensor fault',
};

export function typeLabel(t: string): string {
  return TYPE_LABELS[t] ?? t;
}

export function sevBadge(severity: string): HTMLElement {
  const s = (severity || 'INFO').toUpperCase();
  const word = s === 'CRITICAL' ? 'Critical' : s === 'WARNING' ? 'Warning' : s === 'OK' ? 'Normal' : s.charAt(0) + s.slice(1).toLowerCase();
  return h('span', { class: `sev sev-${s}` }, word);
}

/** Okabe–Ito, in an order that keeps neighbours distinguishable; yellow darkened for white. */
export const PALETTE = ['#0072b2', '#e69f00', '#009e73', '#cc79a7', '#56b4e9', '#d55e00', '#000000', '#b8a600'];

/** Replaces an element's children, skipping null/undefined/false (replaceChildren would print "null"). */
export function fill(el: Element, ...children: Child[]): void {
  el.replaceChildren(...children.filter((c): c is Node | string | number => c !== null && c !== undefined && c !== false).map((c) => (c instanceof Node ? c : String(c))));
}
