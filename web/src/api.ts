// The API as the server sends it: one type per answer, with the server's field names (the
// serde structs of crates/vitalwatch/src/store and vitalwatch-core), and one function per call.
// Every request the page makes goes through here: the CSRF header on state-changing methods,
// JSON errors as HttpError, and a 401 handed to the handler set with onUnauthorized().
import type { AlertCondition } from './generated/conditions';
import type { VitalKey } from './generated/vitals';

export type { AlertCondition };

// ---------------------------------------------------------------------------- records

/** `rules::Severity`, as anomalies carry it. */
export type Severity = 'WARNING' | 'CRITICAL';

/** `rules::AnomalyType`, the seed's spelling. */
export type AnomalyType =
  | 'OUT_OF_RANGE_HR' | 'OUT_OF_RANGE_TEMP' | 'WEAK_SIGNAL' | 'LOW_BATTERY'
  | 'ML_ANOMALY' | 'MISSING_FIELDS' | 'UNKNOWN_DEVICE' | 'SENSOR_FAULT';

/** The ACVPU letter of `telemetry::Consciousness`. */
export type Acvpu = 'A' | 'C' | 'V' | 'P' | 'U';

/** The numeric vitals of a reading (every vital of generated/vitals.ts but the two that are
 *  not numbers). */
export type NumericVital = Exclude<VitalKey, 'consciousness' | 'on_oxygen'>;

/** `store::ReadingRecord`: one field per vital of generated/vitals.ts, named by its key, and
 *  the record's own fields. Times are RFC 3339 UTC. */
export type Reading = { [K in NumericVital]: number | null } & {
  id: number;
  device_id: string;
  timestamp: string;
  timestamp_from_device: boolean;
  received_at: string;
  consciousness: Acvpu | null;
  on_oxygen: boolean | null;
  seq: number | null;
  extra: unknown;
  ml_score: number | null;
  source: string;
};

/** `store::AnomalyRecord`. */
export interface Anomaly {
  id: number;
  device_id: string;
  reading_id: number | null;
  type: AnomalyType;
  severity: Severity;
  value: number | null;
  threshold: number | null;
  detected_at: string;
  details: string;
}

/** `store::DeviceRecord`. */
export interface Device {
  device_id: string;
  patient_label: string | null;
  location: string | null;
  expected_interval_s: number;
  status: 'active' | 'inactive';
  registered_at: string;
  registered_by: string;
  updated_at: string;
  last_seen: string | null;
  total_readings: number;
}

/** `news2::ClinicalRisk`: the response the score calls for (RCP 2017). */
export type ClinicalRisk = 'low' | 'low_medium' | 'medium' | 'high';

/** `news2::Parameter`. */
export type News2Parameter =
  | 'respiration_rate' | 'spo2' | 'air_or_oxygen' | 'systolic_bp' | 'pulse' | 'consciousness' | 'temperature';

/** `news2::Spo2Scale`: Scale 2 is a clinician's decision for hypercapnic respiratory failure
 *  (a prescribed 88–92 % target), set in the patient's thresholds. */
export type Spo2Scale = 'scale1' | 'scale2';

/** `news2::News2`. */
export interface News2 {
  total: number;
  subscores: Record<News2Parameter, number | null>;
  risk: ClinicalRisk;
  scale: Spo2Scale;
  partial: boolean;
  /** Missing parameters, stale ones included. */
  missing: News2Parameter[];
  /** Parameters measured, but longer ago than they stay valid: flagged, scored as nothing. */
  stale: News2Parameter[];
}

/** One entry of `GET /api/latest`: the newest reading, the device's NEWS2 as the engine
 *  scores it (null without NEWS2 vitals), and the patient's SpO2 scale. */
export interface Latest { reading: Reading; news2: News2 | null; spo2_scale: Spo2Scale }

/** `store::dashboard::DashboardStats`. */
export interface Stats {
  total_devices: number;
  active_last_hour: number;
  readings: number;
  anomalies: number;
  anomalous_readings: number;
  anomaly_rate: number;
  by_type: { type: AnomalyType; count: number; last_detected: string | null }[];
  by_severity: { severity: Severity; count: number }[];
  by_device: { device_id: string; readings: number; anomalies: number }[];
}

/** The vitals `/api/series` can aggregate (`store::dashboard::SERIES_METRICS`). */
export type SeriesMetric = 'heart_rate' | 'body_temp' | 'signal_strength' | 'battery_level' | 'spo2' | 'respiratory_rate' | 'systolic_bp';

/** `store::dashboard::MetricSeries`. */
export interface MetricSeries { name: SeriesMetric; avg: (number | null)[]; min: (number | null)[]; max: (number | null)[] }

/** `store::dashboard::DeviceSeries`: bucket `i` starts at `t[i]`, in seconds since the epoch. */
export interface DeviceSeries { device_id: string; bucket_s: number; t: number[]; count: number[]; metrics: MetricSeries[] }

/** `rules::RuleSet`, from `GET /api/ranges`. */
export interface Ranges {
  heart_rate: { min: number; max: number; severity: Severity };
  body_temp: { min: number; max: number; severity: Severity };
  weak_signal: { below: number; severity: Severity };
  low_battery: { below: number; severity: Severity };
  missing_fields: { severity: Severity };
  unknown_device: { severity: Severity };
  ml_anomaly: { severity: Severity };
}

/** `alerting::Priority` (IEC 60601-1-8). */
export type Priority = 'low' | 'medium' | 'high';

/** `alerting::AlertState`. */
export type AlertState = 'active' | 'acknowledged' | 'resolved';

/** `store::AlertRecord`: the engine's `alerting::Alert` plus when the row last changed. */
export interface Alert {
  id: number;
  device_id: string;
  condition: AlertCondition;
  class: 'physiological' | 'technical';
  priority: Priority;
  state: AlertState;
  opened_at: string;
  last_seen: string;
  last_value: number | null;
  threshold: number | null;
  count: number;
  condition_present: boolean;
  acknowledged_by: string | null;
  acknowledged_at: string | null;
  acknowledged_note: string | null;
  silenced_until: string | null;
  silenced_by: string | null;
  resolved_at: string | null;
  resolved_by: string | null;
  attention_since: string;
  escalation_level: number;
  updated_at: string;
  /** `alerting::message`: the short text for people and pagers, e.g.
   *  "HR 142 bpm (limit 130) for 45 s, bed-7". */
  message: string;
}

/** `auth::Role`, or "loopback" for a trusted loopback client. */
export type Role = 'viewer' | 'clinician' | 'admin' | 'device' | 'loopback';

/** `GET /auth/me`. */
export interface Me {
  name: string;
  role: Role;
  kind: 'session' | 'token' | 'loopback';
  csrf_token: string | null;
}

// ---------------------------------------------------------------------------- live events

/** `alerting::TransitionKind`. */
export type TransitionKind = 'raised' | 'updated' | 'escalated' | 'acknowledged' | 'silenced' | 'resolved' | 'reopened';

/** The `data` of each event `GET /api/events` sends, by event name. */
export interface LiveEvents {
  hello: { resumed: boolean; server_time: string };
  reading: Reading;
  anomaly: Anomaly;
  /** `alerting::AlertTransition`; its alert has no `updated_at` (the store adds it) and no
   *  `message` (the page refetches /api/alerts on it). */
  alert: { kind: TransitionKind; alert: Omit<Alert, 'updated_at' | 'message'>; at: string };
  resync: { reason: 'too_many_missed' | 'catch_up_failed' | 'lagged' | 'bridge_reconnected' };
}

/** The live stream's URL; `lastEventId` resumes after what was already received. */
export function eventsUrl(lastEventId: string): string {
  return withQuery('/api/events', { last_event_id: lastEventId || undefined });
}

/** Parses one event's data (the server's JSON, typed by the event's name). */
export function eventData<K extends keyof LiveEvents>(_name: K, e: MessageEvent<string>): LiveEvents[K] {
  return JSON.parse(e.data) as LiveEvents[K];
}

// ---------------------------------------------------------------------------- transport

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

export function isUnauthorized(err: unknown): boolean {
  return err instanceof HttpError && err.status === 401;
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

export function withQuery(path: string, params: Record<string, string | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== '') q.set(k, v);
  const s = q.toString();
  return s ? `${path}?${s}` : path;
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

interface CallOptions {
  method?: 'GET' | 'POST' | 'PUT' | 'DELETE';
  body?: unknown;
  /** The /auth/* calls answer 401 as part of their flow: do not treat it as "the session ended". */
  authFlow?: boolean;
}

async function call(path: string, opts: CallOptions = {}): Promise<Response> {
  const method = opts.method ?? 'GET';
  const headers: Record<string, string> = { accept: 'application/json' };
  if (opts.body !== undefined) headers['content-type'] = 'application/json';
  // Without a session (trusted loopback) the header still shows this is the page, not a
  // cross-site form: the server requires it on state changes either way.
  if (method !== 'GET') headers['x-csrf-token'] = csrfToken ?? 'loopback';
  const res = await fetch(path, {
    method,
    headers,
    body: opts.body === undefined ? null : JSON.stringify(opts.body),
    credentials: 'same-origin',
  });
  if (res.ok) return res;
  const err = await httpError(path, res);
  if (res.status === 401 && !opts.authFlow) unauthorized?.(err);
  throw err;
}

async function getJson<T>(path: string, params: Record<string, string | undefined> = {}, authFlow = false): Promise<T> {
  const res = await call(withQuery(path, params), { authFlow });
  return res.json() as Promise<T>;
}

/** A POST with a JSON body; the answer's JSON, or null when it has none (204). */
async function postJson<T>(path: string, body: unknown, authFlow = false): Promise<T | null> {
  const res = await call(path, { method: 'POST', body, authFlow });
  const text = await res.text();
  return text ? JSON.parse(text) as T : null;
}

// ---------------------------------------------------------------------------- calls

/** The window every dashboard read takes: `since` (RFC 3339) and one device, or all. */
export interface Window { since: string; device_id?: string | undefined }

function windowQuery(w: Window): Record<string, string | undefined> {
  return { since: w.since, device_id: w.device_id || undefined };
}

export function getDevices(): Promise<{ count: number; devices: Device[] }> {
  return getJson('/api/devices');
}

export function getLatest(w: Window): Promise<{ latest: Latest[] }> {
  return getJson('/api/latest', windowQuery(w));
}

export function getAnomalies(w: Window, limit: number): Promise<{ count: number; anomalies: Anomaly[]; next_cursor: string | null }> {
  return getJson('/api/anomalies', { ...windowQuery(w), limit: String(limit) });
}

export function getReadings(w: Window, limit: number, cursor?: string): Promise<{ count: number; readings: Reading[]; next_cursor: string | null }> {
  return getJson('/api/readings', { ...windowQuery(w), limit: String(limit), cursor });
}

/** The CSV export of the window's readings (a link the browser downloads). */
export function readingsCsvUrl(w: Window): string {
  return withQuery('/api/readings.csv', windowQuery(w));
}

export function getStats(w: Window): Promise<Stats> {
  return getJson('/api/stats', windowQuery(w));
}

export interface SeriesRequest {
  device_ids: string[];
  since: string;
  points: number;
  /** Every metric when absent. */
  metrics?: SeriesMetric[] | undefined;
}

export function getSeries(req: SeriesRequest): Promise<{ since: string; until: string; series: DeviceSeries[] }> {
  return getJson('/api/series', {
    device_id: req.device_ids.join(','), since: req.since, points: String(req.points), metrics: req.metrics?.join(','),
  });
}

export function getRanges(): Promise<Ranges> {
  return getJson('/api/ranges');
}

/** The alerts the page shows: every open one (as many as the API gives, 1000) and the
 *  newest others, open first (the API's order). */
export function getAlerts(): Promise<{ count: number; alerts: Alert[] }> {
  return getJson('/api/alerts', { limit: '1000' });
}

export function acknowledgeAlert(id: number, by: string): Promise<Alert | null> {
  return postJson(`/api/alerts/${id}/ack`, { by });
}

/** Pauses the alert's audio for `durationS` seconds. */
export function silenceAlert(id: number, by: string, durationS: number): Promise<Alert | null> {
  return postJson(`/api/alerts/${id}/silence`, { by, duration_s: durationS });
}

/** Who is signed in; throws HttpError (401 when nobody is). */
export function getMe(): Promise<Me> {
  return getJson('/auth/me', {}, true);
}

/** `POST /auth/login`: the session's cookie is set by the answer, its CSRF token is in it. */
export async function login(username: string, password: string): Promise<{ username: string; role: Role; csrf_token: string }> {
  const res = await postJson<{ username: string; role: Role; csrf_token: string }>('/auth/login', { username, password }, true);
  if (!res) throw new HttpError(500, '/auth/login: empty answer');
  return res;
}

/** `POST /auth/logout`: ends the session (the answer clears the cookie). */
export async function logout(): Promise<void> {
  await postJson('/auth/logout', {}, true);
}
