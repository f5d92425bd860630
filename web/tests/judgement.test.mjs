// One judgement, shown everywhere (issue 18, point 6), in a real browser against the real
// binary: the header counts the open alerts of /api/alerts by priority, a tile is Critical
// only with an open HIGH alert, a value is highlighted because a condition on it is active,
// a Scale 2 patient's tile says so, a stale NEWS2 parameter is named, and the alerts'
// messages appear on the tile and in the Alerts view.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { SHOTS, launch, post, request, startServer, tempDir } from './support.mjs';

const dir = tempDir('vw-judge-');
let server;
let browser;
let page;

const shot = (name) => page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
const iso = (ms) => new Date(ms).toISOString();

async function api(path, { method = 'GET', body } = {}) {
  const res = await request(`${server.api}${path}`, { method, body });
  assert.ok(res.status >= 200 && res.status < 300, `${method} ${path}: ${res.status} ${res.text}`);
  return res.json();
}

async function openAlerts() {
  return (await api('/api/alerts?state=open&limit=1000')).alerts;
}

function countByPriority(alerts) {
  const counts = { high: 0, medium: 0, low: 0 };
  for (const a of alerts) counts[a.priority] += 1;
  return counts;
}

/** What the header's badge says, by priority (its data attributes and its words). */
function badgeCounts() {
  return page.evaluate(() => {
    const badge = document.getElementById('alert-badge');
    const words = badge.hidden ? '' : badge.textContent;
    const said = (p) => Number((new RegExp(`(\\d+) ${p}`).exec(words) ?? [0, 0])[1]);
    return {
      data: { high: Number(badge.dataset.high ?? 0), medium: Number(badge.dataset.medium ?? 0), low: Number(badge.dataset.low ?? 0) },
      words: { high: said('high'), medium: said('medium'), low: said('low') },
    };
  });
}

/** Waits until the page shows what /api/alerts says now: the header's counts by priority,
 *  and every tile Critical exactly when its device has an open HIGH alert. Alerts keep
 *  changing on their own (a device going quiet raises DEVICE_OFFLINE), so this asks the API
 *  again until the page and an unchanged answer agree; bounded. */
async function pageAgreesWithTheServer() {
  let last = null;
  for (let attempt = 0; attempt < 20; attempt++) {
    const alerts = await openAlerts();
    const expected = countByPriority(alerts);
    const high = [...new Set(alerts.filter((a) => a.priority === 'high').map((a) => a.device_id))].sort();
    const ok = await page.waitForFunction(([want, highDevices]) => {
      const badge = document.getElementById('alert-badge');
      const counts = ['high', 'medium', 'low'].map((p) => Number(badge.dataset[p] ?? 0));
      if (counts.join() !== [want.high, want.medium, want.low].join()) return false;
      const critical = [...document.querySelectorAll('.tile')].filter((t) => t.dataset.state === 'CRITICAL').map((t) => t.dataset.device).sort();
      return critical.join() === highDevices.join();
    }, [expected, high], { timeout: 3000 }).then(() => true, () => false);
    const again = await openAlerts();
    last = { expected, high, shown: await badgeCounts() };
    if (ok && JSON.stringify(countByPriority(again)) === JSON.stringify(expected)) return last;
  }
  assert.fail(`the page never agreed with /api/alerts: ${JSON.stringify(last)}`);
}

/** A complete observation set on Scale 1's normal ranges, with `fields` changed. */
function reading(deviceId, at, fields = {}) {
  return {
    device_id: deviceId, timestamp: iso(at), heart_rate: 72, body_temp: 36.8, signal_strength: -60, battery_level: 90,
    spo2: 97, respiratory_rate: 16, systolic_bp: 124, diastolic_bp: 78, consciousness: 'A', on_oxygen: false, ...fields,
  };
}

before(async () => {
  server = await startServer({ dir });
  for (const id of ['HR_1', 'TEMP_1', 'COPD_1', 'STALE_1']) {
    await api('/api/devices', { method: 'POST', body: { device_id: id } });
  }
  // COPD_1: a clinician puts the patient on SpO2 Scale 2 (target 88-92 %) before readings.
  await api('/api/devices/COPD_1/thresholds', {
    method: 'PUT',
    body: { spo2_scale: 'scale2', spo2_min: 88, author: 'dr.b', reason: 'COPD, type 2 respiratory failure; target 88-92 %' },
  });
  const now = Date.now();
  // STALE_1: a BP two hours old (BP stays valid for an hour), then monitored vitals without BP.
  await post(server.api, reading('STALE_1', now - 2 * 3600_000));
  for (const t of [-10_000, -5000, 0]) {
    const { systolic_bp: _s, diastolic_bp: _d, ...noBp } = reading('STALE_1', now + t);
    await post(server.api, noBp);
  }
  // COPD_1 at the prescribed saturation, on air.
  for (const t of [-10_000, -5000, 0]) await post(server.api, reading('COPD_1', now + t, { spo2: 88 }));
  browser = await launch();
  page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  await page.goto(server.dashboard);
  await page.waitForSelector('body[data-ready=true]');
  await page.waitForSelector('#conn.conn-live');
});

after(async () => {
  await browser?.close();
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

test('a fever the engine has not alerted on is not shown as critical', async () => {
  // 38.9 °C is outside the site's 36.0-37.5 range (the old page said Critical at once); one
  // reading opens no alert, so the engine's judgement is not critical.
  await post(server.api, { device_id: 'TEMP_1', heart_rate: 88, body_temp: 38.9, signal_strength: -60, battery_level: 90 });
  const tile = page.locator('.tile[data-device=TEMP_1]');
  await page.waitForFunction(() => /38\.9/.test(document.querySelector('.tile[data-device=TEMP_1]')?.textContent ?? ''));
  const high = (await openAlerts()).filter((a) => a.device_id === 'TEMP_1' && a.priority === 'high');
  assert.deepEqual(high, [], 'the engine has no HIGH alert for one reading of 38.9 °C');
  assert.notEqual(await tile.getAttribute('data-state'), 'CRITICAL');
  assert.doesNotMatch(await tile.innerText(), /Critical/);
  // No condition on the temperature is active, so the value is not highlighted.
  assert.equal(await tile.locator('[data-vital=body_temp] .vital-value.out').count(), 0);
});

test('a tile is critical with an open HIGH alert, its value highlighted and its message shown', async () => {
  const now = Date.now();
  for (const t of [-10_000, -5000, 0]) {
    await post(server.api, { device_id: 'HR_1', timestamp: iso(now + t), heart_rate: 150, body_temp: 36.8, signal_strength: -60, battery_level: 90 });
  }
  const tile = page.locator('.tile[data-device=HR_1]');
  await page.waitForSelector('.tile[data-device=HR_1][data-state=CRITICAL]');
  const alert = (await openAlerts()).find((a) => a.device_id === 'HR_1' && a.condition === 'HEART_RATE_HIGH');
  assert.ok(alert, 'the engine opened HEART_RATE_HIGH');
  assert.equal(alert.priority, 'high');
  assert.match(alert.message, /^HR 150 bpm \(limit \d+\)/);
  assert.match(await tile.innerText(), /Critical/);
  // The heart rate is highlighted because HEART_RATE_HIGH is on it; the temperature is not.
  assert.equal(await tile.locator('[data-vital=heart_rate] .vital-value.out').getAttribute('data-active'), 'high');
  assert.equal(await tile.locator('[data-vital=body_temp] .vital-value.out').count(), 0);
  // The alert's message, as the server wrote it, on the tile.
  const onTile = tile.locator(`.tile-alerts [data-alert-id="${alert.id}"]`);
  await onTile.waitFor();
  assert.match(await onTile.innerText(), /^HR 150 bpm \(limit \d+\).*, HR_1/);
  assert.equal(await onTile.getAttribute('data-priority'), 'high');
  await shot('judgement-tiles');
});

test("the header counts the open alerts by priority, and only HIGH ones make a tile critical", async () => {
  const agreed = await pageAgreesWithTheServer();
  assert.ok(agreed.expected.high >= 1, `HR_1's alert is open: ${JSON.stringify(agreed)}`);
  // The words say the same as the data attributes.
  assert.deepEqual(agreed.shown.words, agreed.shown.data);
  assert.deepEqual(agreed.shown.data, agreed.expected);
});

test("a Scale 2 patient's tile says Scale 2, as the NEWS2 answer does", async () => {
  const answer = await api('/api/devices/COPD_1/news2');
  assert.equal(answer.spo2_scale, 'scale2');
  assert.equal(answer.news2.scale, 'scale2');
  assert.equal(answer.news2.subscores.spo2, 0, 'SpO2 88 % on Scale 2 scores 0');
  const tile = page.locator('.tile[data-device=COPD_1]');
  await tile.locator('[data-scale=scale2]').waitFor();
  assert.match(await tile.locator('[data-scale=scale2]').innerText(), /SpO₂ Scale 2/);
  assert.equal(await page.locator('.tile[data-device=HR_1] [data-scale]').count(), 0, 'a Scale 1 tile says nothing');
  // NEWS2 0 on Scale 2: the SpO2 of 88 % raises nothing, so nothing is highlighted.
  assert.match(await tile.locator('[data-vital=news2]').innerText(), /NEWS2\s*0\b/);
  assert.equal(await tile.locator('.vital-value.out').count(), 0);
  // The detail view says which scale the score is on.
  await page.click('.tile[data-device=COPD_1]');
  await page.waitForSelector('#big-vitals [data-vital=news2]');
  assert.match(await page.locator('#big-vitals [data-vital=news2]').innerText(), /scored on SpO₂ Scale 2/);
  await shot('judgement-scale2');
  await page.selectOption('#device', '');
  await page.waitForSelector('.tile[data-device=COPD_1]');
});

test('a stale NEWS2 parameter is shown as stale', async () => {
  const answer = await api('/api/devices/STALE_1/news2');
  assert.deepEqual(answer.stale, ['systolic_bp'], 'the two-hour-old BP is stale');
  const stale = page.locator('.tile[data-device=STALE_1] [data-vital=news2] .news2-stale');
  await stale.waitFor();
  assert.equal(await stale.getAttribute('data-stale'), 'systolic_bp');
  assert.match(await stale.innerText(), /stale: Systolic BP/);
  // A partial total: a lower bound, marked +.
  assert.match(await page.locator('.tile[data-device=STALE_1] [data-vital=news2]').innerText(), /NEWS2\s*\d+\+/);
});

test("the Alerts view shows each alert's message", async () => {
  await page.click('#tab-alerts');
  const alerts = await openAlerts();
  const hr = alerts.find((a) => a.device_id === 'HR_1' && a.condition === 'HEART_RATE_HIGH');
  assert.ok(hr);
  const card = page.locator(`.alert[data-alert="${hr.id}"] .alert-message`);
  await card.waitFor();
  assert.match(await card.innerText(), /^HR 150 bpm \(limit \d+\).*, HR_1/);
  // Every open alert's card carries the server's message, whatever its condition.
  for (const a of alerts) {
    const text = await page.locator(`.alert[data-alert="${a.id}"] .alert-message`).innerText();
    assert.ok(text.endsWith(a.device_id) || text.includes(`${a.device_id} (`), `${a.condition}: ${text}`);
  }
  await shot('judgement-alerts');
});
