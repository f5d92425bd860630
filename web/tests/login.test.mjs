// Signing in to the dashboard in a real browser (Debian chromium, headless) against the real
// binary run as deployed: HTTPS, no trusted loopback, users and tokens made with the CLI.
// One server and one page are shared by the steps, in order.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { SHOTS, cli, launch, post, request, startServer, tempDir } from './support.mjs';

const dir = tempDir('vw-login-');
const data = join(dir, 'data');
const PASSWORD = 'a-long-password-1';
const VIEWER_PASSWORD = 'another-long-password-2';
const STEP = { timeout: 60_000 };

let server;
let browser;
let context;
let page;
let deviceToken;
let adminToken;
/** CSP violations and uncaught exceptions seen by any page, for the last step. */
const violations = [];
const pageErrors = [];

const shot = (p, name) => p.screenshot({ path: join(SHOTS, `login-${name}.png`), fullPage: true });

/** The page's own fetch (same origin, with its cookie), as { status, body }. */
const pageFetch = (p, path, init = {}) => p.evaluate(async ([path, init]) => {
  const res = await fetch(path, init);
  const text = await res.text();
  let body = null;
  try { body = JSON.parse(text); } catch { body = text; }
  return { status: res.status, body };
}, [path, init]);

const apiAs = (token, path, init = {}) => request(`${server.api}${path}`, {
  ...init, ca: server.ca, headers: { authorization: `Bearer ${token}`, ...(init.headers ?? {}) },
});

async function watch(p) {
  // Chromium reports a CSP violation both as a console error and as a DOM event.
  p.on('console', (msg) => { if (/Content Security Policy/i.test(msg.text())) violations.push(msg.text()); });
  p.on('pageerror', (err) => pageErrors.push(String(err)));
  await p.exposeFunction('__cspViolation', (text) => violations.push(text));
  await p.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__cspViolation(`${e.violatedDirective}: ${e.blockedURI} (${e.sourceFile}:${e.lineNumber})`);
    });
  });
  p.setDefaultTimeout(15_000);
}

async function newSecurePage() {
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 900 } });
  const p = await ctx.newPage();
  await watch(p);
  return { ctx, p };
}

async function signIn(p, username, password) {
  await p.fill('#login-user', username);
  await p.fill('#login-password', password);
  await p.click('#login-submit');
}

async function sessionCookie() {
  return (await context.cookies(server.dashboard)).find((c) => c.name === 'vw_session');
}

before(async () => {
  // A user made before the server ever started, the other while it runs.
  await cli(['users', 'create', '--name', 'alice', '--role', 'clinician', '--data-dir', data], { input: `${PASSWORD}\n`, cwd: dir });
  server = await startServer({ dir, secure: true });
  assert.match(server.dashboard, /^https:\/\//);
  await cli(['users', 'create', '--name', 'victor', '--role', 'viewer', '--data-dir', data], { input: `${VIEWER_PASSWORD}\n`, cwd: dir });
  deviceToken = (await cli(['tokens', 'create', '--role', 'device', '--device', 'WARD_1', '--name', 'dev1', '--data-dir', data], { cwd: dir })).trim();
  adminToken = (await cli(['tokens', 'create', '--role', 'admin', '--name', 'test-admin', '--data-dir', data], { cwd: dir })).trim();
  assert.match(deviceToken, /^\S+$/);
  await post(server.api, { device_id: 'WARD_1', heart_rate: 72, body_temp: 36.8, signal_strength: -60, battery_level: 90 }, { ca: server.ca, token: deviceToken });
  browser = await launch();
  ({ ctx: context, p: page } = await newSecurePage());
});

after(async () => {
  await browser?.close();
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

test('without a login the page shows the sign-in form and the API answers 401', STEP, async () => {
  const anonymous = await request(`${server.api}/api/devices`, { ca: server.ca });
  assert.equal(anonymous.status, 401);
  await page.goto(server.dashboard);
  await page.waitForSelector('#login:not([hidden])');
  assert.equal(await page.locator('#app').isHidden(), true, 'no dashboard before signing in');
  assert.equal(await page.locator('#user').isHidden(), true);
  assert.equal(await page.locator('.tile').count(), 0);
  const devices = await pageFetch(page, '/api/devices');
  assert.equal(devices.status, 401);
  assert.equal(devices.body.error, 'unauthenticated');
  await shot(page, 'form');
});

test('a wrong password shows the error and no dashboard', STEP, async () => {
  await signIn(page, 'alice', 'not-the-password-0');
  const error = page.locator('#login-error');
  await error.waitFor({ state: 'visible' });
  assert.match(await error.innerText(), /wrong password/i);
  assert.equal(await page.locator('#app').isHidden(), true);
  assert.equal(await page.inputValue('#login-password'), '', 'the password field is cleared');
  assert.equal(await sessionCookie(), undefined, 'no session cookie');
  await shot(page, 'wrong-password');
});

test('the right password shows the dashboard with the user; the cookie is HttpOnly, Secure, SameSite=Strict', STEP, async () => {
  await signIn(page, 'alice', PASSWORD);
  await page.waitForSelector('body[data-ready=true]');
  await page.waitForSelector('#conn.conn-live');
  assert.equal(await page.locator('#login').isHidden(), true);
  assert.equal(await page.locator('#login-error').isHidden(), true);
  assert.equal(await page.textContent('#user-name'), 'alice');
  assert.match(await page.textContent('#user-role'), /clinician/i);
  assert.equal(await page.locator('#sign-out').isVisible(), true);
  await page.waitForSelector('.tile[data-device=WARD_1]');
  const cookie = await sessionCookie();
  assert.ok(cookie, 'a vw_session cookie');
  assert.equal(cookie.httpOnly, true);
  assert.equal(cookie.secure, true);
  assert.equal(cookie.sameSite, 'Strict');
  assert.doesNotMatch(await page.evaluate(() => document.cookie), /vw_session/, 'the page cannot read the session');
  // Live: a reading posted now shows without a reload.
  await post(server.api, { device_id: 'WARD_1', heart_rate: 77, body_temp: 36.9, signal_strength: -60, battery_level: 89 }, { ca: server.ca, token: deviceToken });
  await page.waitForFunction(() => /77\s*bpm/.test(document.querySelector('.tile[data-device=WARD_1]')?.textContent ?? ''));
  await shot(page, 'signed-in');
});

let alertId;

test('acknowledging an alert from the page works and carries the CSRF token', STEP, async () => {
  await post(server.api, { device_id: 'WARD_1', heart_rate: 190, body_temp: 39.9, signal_strength: -70, battery_level: 50 }, { ca: server.ca, token: deviceToken });
  await page.waitForSelector('#tab-alerts:not([hidden])');
  await page.click('#tab-alerts');
  const ack = page.locator('.alert button[data-action=ack]:not([disabled])').first();
  await ack.waitFor();
  alertId = await ack.locator('xpath=ancestor::article').getAttribute('data-alert');
  // Signed in, the page records the user as who acknowledged: no name to type.
  assert.equal(await page.inputValue('#ack-by'), 'alice');
  assert.equal(await page.getAttribute('#ack-by', 'readonly'), '');
  const me = await pageFetch(page, '/auth/me');
  assert.equal(me.status, 200);
  assert.equal(me.body.kind, 'session');
  const [req] = await Promise.all([
    page.waitForRequest((r) => r.method() === 'POST' && r.url().endsWith(`/api/alerts/${alertId}/ack`)),
    ack.click(),
  ]);
  assert.equal(req.headers()['x-csrf-token'], me.body.csrf_token);
  const res = await req.response();
  assert.equal(res.status(), 200);
  await page.waitForFunction((id) => /ack/i.test(document.querySelector(`[data-alert="${id}"]`)?.getAttribute('data-state') ?? ''), alertId);
  const detail = await pageFetch(page, `/api/alerts/${alertId}`);
  assert.equal(detail.status, 200);
  assert.equal(detail.body.alert.acknowledged_by, 'alice');
  await shot(page, 'alert-acknowledged');
});

test('a POST with the session cookie but without the CSRF header is refused (403)', STEP, async () => {
  const res = await pageFetch(page, `/api/alerts/${alertId}/silence`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ by: 'x', duration_s: 60 }),
  });
  assert.equal(res.status, 403);
  assert.equal(res.body.error, 'csrf');
  const detail = await pageFetch(page, `/api/alerts/${alertId}`);
  assert.equal(detail.body.alert.silenced_by, null, 'nothing changed');
});

test('a viewer sees alerts read-only, and the server\'s 403 is reported on the page', STEP, async () => {
  const { ctx, p } = await newSecurePage();
  try {
    await p.goto(server.dashboard);
    await p.waitForSelector('#login:not([hidden])');
    await signIn(p, 'victor', VIEWER_PASSWORD);
    await p.waitForSelector('body[data-ready=true]');
    assert.match(await p.textContent('#user-role'), /viewer/i);
    await p.waitForSelector('#tab-alerts:not([hidden])');
    await p.click('#tab-alerts');
    const silence = p.locator(`[data-alert="${alertId}"] button[data-action=silence]`);
    await silence.waitFor();
    assert.equal(await silence.isDisabled(), true, 'a viewer cannot silence');
    assert.match(await p.textContent('#panel-alerts'), /can view alerts but not acknowledge or silence/);
    // Were the button enabled anyway, the server refuses (with the CSRF token: not a CSRF
    // refusal) and the page says so.
    await silence.evaluate((b) => { b.disabled = false; });
    const [req] = await Promise.all([
      p.waitForRequest((r) => r.method() === 'POST' && r.url().endsWith(`/api/alerts/${alertId}/silence`)),
      silence.click(),
    ]);
    assert.equal((await req.response()).status(), 403);
    const error = p.locator(`[data-alert="${alertId}"] .alert-error`);
    await error.waitFor({ state: 'visible' });
    assert.match(await error.innerText(), /Not allowed: your role may not silence alerts/);
    assert.equal(await p.locator('#login').isHidden(), true, 'a 403 does not sign out');
    await shot(p, 'viewer-forbidden');
  } finally {
    await ctx.close();
  }
});

test('when the server ends the session, the next call brings back the sign-in form; signing in again works', STEP, async () => {
  await page.click('#tab-realtime');
  const disabled = await apiAs(adminToken, '/api/users/alice', { method: 'PUT', body: { disabled: true } });
  assert.equal(disabled.status, 204, disabled.text);
  // Any call now answers 401: changing the time range refetches.
  await page.selectOption('#range', '21600');
  await page.waitForSelector('#login:not([hidden])');
  assert.match(await page.textContent('#login-notice'), /Your session ended; sign in again/);
  assert.equal(await page.locator('#app').isHidden(), true);
  assert.equal(await page.locator('.tile').count(), 0, 'the patient data is gone from the page');
  await shot(page, 'session-ended');
  const enabled = await apiAs(adminToken, '/api/users/alice', { method: 'PUT', body: { disabled: false } });
  assert.equal(enabled.status, 204, enabled.text);
  await signIn(page, 'alice', PASSWORD);
  await page.waitForSelector('body[data-ready=true]');
  await page.waitForSelector('#conn.conn-live');
  await page.waitForSelector('.tile[data-device=WARD_1]');
  assert.equal(await page.locator('#login-notice').isHidden(), true);
});

test('after a server restart (sessions are in memory) the live stream\'s error leads to the sign-in form', STEP, async () => {
  await server.stop();
  server = await startServer({ dir, api: server.apiAddr, dashboard: server.dashboardAddr, secure: true });
  await page.waitForSelector('#login:not([hidden])', { timeout: 30_000 });
  assert.match(await page.textContent('#login-notice'), /Your session ended/);
  await signIn(page, 'alice', PASSWORD);
  await page.waitForSelector('#conn.conn-live');
});

test('signing out returns to the sign-in form and /auth/me is then 401', STEP, async () => {
  const [req] = await Promise.all([
    page.waitForRequest((r) => r.method() === 'POST' && r.url().endsWith('/auth/logout')),
    page.click('#sign-out'),
  ]);
  assert.equal((await req.response()).status(), 204);
  await page.waitForSelector('#login:not([hidden])');
  assert.match(await page.textContent('#login-notice'), /signed out/i);
  assert.equal(await page.locator('#app').isHidden(), true);
  assert.equal(await page.locator('#user').isHidden(), true);
  assert.equal(await page.textContent('#panel-realtime'), '', 'the patient data is gone from the page');
  const me = await pageFetch(page, '/auth/me');
  assert.equal(me.status, 401);
  assert.equal(await sessionCookie(), undefined, 'the cookie is cleared');
  await shot(page, 'signed-out');
});

test('too many failed sign-ins: the form says how long to wait, for that user name only', STEP, async () => {
  // Five failures for one user name (the server's default limit) from node, the sixth on the page.
  for (let i = 0; i < 5; i++) {
    const res = await request(`${server.api}/auth/login`, { method: 'POST', body: { username: 'mallory', password: `wrong-password-${i}` }, ca: server.ca });
    assert.equal(res.status, 401);
  }
  await signIn(page, 'mallory', 'wrong-password-5');
  await page.waitForFunction(() => /Too many failed sign-ins\. Try again in \d+/.test(document.querySelector('#login-error')?.textContent ?? ''));
  assert.equal(await page.locator('#login-submit').isDisabled(), true, 'no retry before the wait is over');
  assert.equal(await page.locator('#app').isHidden(), true);
  assert.equal(await page.locator('#login-notice').isHidden(), true, 'the old notice went with the new attempt');
  await shot(page, 'throttled');
  // The wait is for that user name: someone else at the same screen can still sign in.
  await signIn(page, 'alice', PASSWORD);
  await page.waitForSelector('body[data-ready=true]');
  assert.equal(await page.textContent('#user-name'), 'alice');
});

test('no page logged a Content Security Policy violation or an uncaught error', STEP, async () => {
  assert.deepEqual(violations, []);
  assert.deepEqual(pageErrors, []);
});
