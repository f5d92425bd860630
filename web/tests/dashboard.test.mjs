// The dashboard in a real browser (Debian chromium, headless) against the real binary.
// One server and one page are shared by the steps, in order, to keep the run short.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { SHOTS, launch, post, startServer, tempDir } from './support.mjs';

const dir = tempDir();
let server;
let browser;
let page;

const shot = (name) => page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });

/** Waits until every chart on the page is drawn (its time axis set) and the page has painted
 *  twice since, so a screenshot or a layout measurement sees the settled page. */
async function settled() {
  await page.waitForFunction(() => [...document.querySelectorAll('[data-chart]')]
    .every((c) => c.querySelector('[data-x-max]') && c.querySelector('canvas')));
  await page.evaluate(() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done))));
}

before(async () => {
  server = await startServer({ dir });
  // Some history before the page opens: two beds, one with extended vitals.
  const now = Date.now();
  for (let i = 20; i >= 1; i--) {
    const ts = new Date(now - i * 60_000).toISOString();
    await post(server.api, [
      { device_id: 'BED_1', timestamp: ts, heart_rate: 70 + (i % 5), body_temp: 36.7, signal_strength: -60, battery_level: 88, spo2: 97, respiratory_rate: 16, systolic_bp: 122, diastolic_bp: 78, consciousness: 'A', on_oxygen: false },
      { device_id: 'BED_2', timestamp: ts, heart_rate: 82 + (i % 3), body_temp: 37.1, signal_strength: -71, battery_level: 54 },
    ]);
  }
  browser = await launch();
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await page.goto(server.dashboard);
  await page.waitForSelector('body[data-ready=true]');
  await page.waitForSelector('#conn.conn-live');
});

after(async () => {
  await browser?.close();
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

test('the device appears with its latest values, live', async () => {
  await page.waitForSelector('.tile[data-device=BED_1]');
  await post(server.api, { device_id: 'WARD_3', heart_rate: 64, body_temp: 36.6, signal_strength: -58, battery_level: 77 });
  const tile = page.locator('.tile[data-device=WARD_3]');
  await tile.waitFor();
  const text = await tile.innerText();
  assert.match(text, /64\s*bpm/);
  assert.match(text, /36\.6\s*°C/);
  assert.match(text, /77 %/);
  // A newer reading replaces the shown value without a reload.
  await post(server.api, { device_id: 'WARD_3', heart_rate: 66, body_temp: 36.7, signal_strength: -58, battery_level: 76 });
  await page.waitForFunction(() => /66\s*bpm/.test(document.querySelector('.tile[data-device=WARD_3]')?.textContent ?? ''));
  await settled();
  await shot('realtime');
});

test('an out-of-range reading shows up as an anomaly card live, within 2 s, without reloading', async () => {
  await page.click('#tab-anomalies');
  await page.evaluate(() => { window.__noReload = true; });
  await post(server.api, { device_id: 'BED_2', heart_rate: 148, body_temp: 36.9, signal_strength: -70, battery_level: 50 });
  const card = page.locator('#anomaly-cards .card', { hasText: 'BED_2' }).filter({ hasText: 'Heart rate out of range' });
  await card.first().waitFor({ timeout: 2000 });
  assert.match(await card.first().innerText(), /Critical/);
  assert.equal(await page.evaluate(() => window.__noReload), true, 'the page was not reloaded');
  await shot('anomalies');
});

test('the time range and the device filter change what is shown', async () => {
  // A reading three hours old is outside "Last hour" and inside "Last 6 hours".
  const old = new Date(Date.now() - 3 * 3600_000).toISOString();
  await post(server.api, { device_id: 'BED_9', timestamp: old, heart_rate: 71, body_temp: 36.8, signal_strength: -60, battery_level: 90 });
  await page.click('#tab-logs');
  await page.waitForSelector('#logs-body tr');
  const rowsFor = (id) => page.locator(`#logs-body tr`, { hasText: id }).count();
  assert.equal(await rowsFor('BED_9'), 0, 'a 3 h old reading is not in the last hour');
  await page.selectOption('#range', '21600');
  await page.waitForFunction(() => /BED_9/.test(document.querySelector('#logs-body')?.textContent ?? ''));
  assert.equal(await rowsFor('BED_9'), 1);
  await page.selectOption('#device', 'BED_1');
  await page.waitForFunction(() => {
    const rows = [...document.querySelectorAll('#logs-body tr')];
    return rows.length > 0 && rows.every((r) => r.textContent.includes('BED_1'));
  });
  await page.waitForFunction(() => document.querySelector('#m-devices')?.textContent === '1');
  await page.click('#tab-realtime');
  await page.waitForSelector('#big-vitals');
  await page.waitForSelector('[data-chart=heart_rate] canvas');
  assert.equal(await page.locator('.tile').count(), 0, 'one device: the detail view, not the grid');
  assert.match(await page.locator('#big-vitals').innerText(), /NEWS2/);
  await settled();
  await shot('detail');
  // A critical anomaly on a device the filter hides is announced, not hidden silently.
  await post(server.api, { device_id: 'BED_2', heart_rate: 35, body_temp: 36.9, signal_strength: -70, battery_level: 50 });
  const banner = page.locator('#hidden-critical');
  await banner.waitFor({ state: 'visible' });
  assert.match(await banner.innerText(), /1 new critical anomaly hidden by the device filter \(BED_2\)/);
  await shot('hidden-critical');
  await page.click('#show-all');
  await page.waitForSelector('.tile[data-device=BED_2]');
  assert.equal(await banner.isHidden(), true);
});

test('the CSV download contains the readings of the window', async () => {
  await page.click('#tab-logs');
  await page.waitForSelector('#csv');
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#csv')]);
  const path = await download.path();
  const lines = readFileSync(path, 'utf8').trim().split('\n');
  assert.match(lines[0], /^id,device_id,timestamp_utc/);
  assert.ok(lines.some((l) => l.includes(',BED_9,')), 'the 6 h window holds the old reading');
  assert.ok(lines.some((l) => l.includes(',WARD_3,') && l.includes(',66,')), 'live readings are exported');
  assert.equal(lines.length - 1, 20 * 2 + 2 + 1 + 1 + 1, 'every reading in the window, once');
  await shot('logs');
});

test('the statistics and devices views show counts', async () => {
  await page.click('#tab-statistics');
  await page.waitForFunction(() => /Heart rate out of range\s+2/.test(document.querySelector('#panel-statistics')?.innerText ?? ''));
  const stats = await page.locator('#panel-statistics').innerText();
  assert.match(stats, /Heart rate out of range\s+2/);
  await shot('statistics');
  await page.click('#tab-devices');
  const devices = await page.locator('#panel-devices').innerText();
  assert.match(devices, /BED_1/);
  assert.match(devices, /WARD_3/);
  await shot('devices');
  // Keyboard: arrows move between tabs.
  await page.focus('#tab-devices');
  await page.keyboard.press('ArrowLeft');
  assert.equal(await page.getAttribute('#tab-anomalies', 'aria-selected'), 'true');
});

test('the alerts view follows /api/alerts: hidden on 404, acknowledging updates it', async () => {
  const res = await fetch(`${server.api}/api/alerts`);
  if (res.status === 404) {
    assert.equal(await page.locator('#tab-alerts').isHidden(), true);
    return;
  }
  assert.equal(res.status, 200);
  await post(server.api, { device_id: 'BED_2', heart_rate: 190, body_temp: 39.9, signal_strength: -70, battery_level: 50 });
  await page.waitForSelector('#tab-alerts:not([hidden])');
  await page.click('#tab-alerts');
  const ack = page.locator('.alert button[data-action=ack]:not([disabled])').first();
  await ack.waitFor();
  const id = await ack.locator('xpath=ancestor::article').getAttribute('data-alert');
  // Who acknowledges is recorded: the page asks for a name first.
  await page.fill('#ack-by', 'Nurse Ada');
  await ack.click();
  await page.waitForFunction((alertId) => /ack/i.test(document.querySelector(`[data-alert="${alertId}"]`)?.getAttribute('data-state') ?? ''), id);
  const detail = await (await fetch(`${server.api}/api/alerts/${id}`)).json();
  assert.equal(detail.alert.acknowledged_by, 'Nurse Ada');
  await shot('alerts');
});

test('the page shows the disconnection and recovers after the server restarts', async () => {
  await page.click('#tab-realtime');
  await server.stop();
  await page.waitForSelector('#disconnected:not([hidden])');
  await shot('disconnected');
  server = await startServer({ dir, api: server.apiAddr, dashboard: server.dashboardAddr });
  await page.waitForSelector('#conn.conn-live');
  assert.equal(await page.locator('#disconnected').isHidden(), true);
  await post(server.api, { device_id: 'WARD_3', heart_rate: 59, body_temp: 36.5, signal_strength: -58, battery_level: 75 });
  await page.waitForFunction(() => /59\s*bpm/.test(document.querySelector('.tile[data-device=WARD_3]')?.textContent ?? ''));
});

test('the page is usable at tablet width', async () => {
  await page.setViewportSize({ width: 768, height: 1024 });
  await page.waitForFunction(() => window.innerWidth === 768);
  await settled();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  assert.ok(overflow <= 1, `no horizontal scrolling at 768 px (overflow ${overflow}px)`);
  await shot('tablet');
});

test('with a single reading, "Last hour" draws a time axis of the last hour', async () => {
  await page.setViewportSize({ width: 1280, height: 900 });
  // One reading 20 minutes ago on a device of its own: one bucket, one point.
  const at = Date.now() - 20 * 60_000;
  await post(server.api, { device_id: 'SOLO_1', timestamp: new Date(at).toISOString(), heart_rate: 72, body_temp: 36.8, signal_strength: -60, battery_level: 90 });
  await page.waitForSelector('#device option[value=SOLO_1]', { state: 'attached' });
  await page.selectOption('#range', '3600');
  await page.selectOption('#device', 'SOLO_1');
  await page.click('#tab-realtime');
  await page.waitForFunction(() => /SOLO_1/.test(document.querySelector('.detail-head h2')?.textContent ?? ''));
  const plot = page.locator('[data-chart=heart_rate] [data-x-max]');
  await plot.waitFor();
  await settled();
  const now = Date.now() / 1000;
  const min = Number(await plot.getAttribute('data-x-min'));
  const max = Number(await plot.getAttribute('data-x-max'));
  assert.ok(Math.abs(max - now) < 120, `the axis ends now (ends ${new Date(max * 1000).toISOString()})`);
  assert.ok(Math.abs(max - min - 3600) < 1, `the axis spans the hour (${max - min} s)`);
  assert.ok(min <= at / 1000 && at / 1000 <= max, 'the reading is on the axis');
  // The labels are times of day within that hour, as the page's locale writes them: no
  // dates, no other years.
  const ticks = JSON.parse(await plot.getAttribute('data-x-ticks'));
  assert.ok(ticks.length >= 2, `several labels (${ticks})`);
  const minutes = await page.evaluate(([lo, hi]) => {
    const fmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
    const out = [];
    for (let t = Math.floor(lo / 60) * 60; t <= hi; t += 60) out.push(fmt.format(new Date(t * 1000)));
    return out;
  }, [min, max]);
  for (const label of ticks) {
    assert.doesNotMatch(label, /\d{4}/, `no year in ${label}`);
    assert.ok(minutes.includes(label), `${label} is a minute of the last hour (${minutes[0]} … ${minutes.at(-1)})`);
  }
  await shot('single-reading-hour');
});
