// Dashboard benchmark (not a test): time to first render of the overview with many devices'
// readings, end-to-end live latency (POST /api/telemetry → value visible in the page), and the
// page's JS heap over a bounded live run. Bounded: the load, ~20 live samples, LIVE_S seconds
// of live data. Usage (from the repo root, after scripts/build-web and cargo build --release):
//   node web/bench/first-render.mjs [--devices 100] [--hours 24] [--interval 3] [--live 60]
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ROOT, launch, post, serverBin, startServer, tempDir } from '../tests/support.mjs';

const { values } = parseArgs({ options: {
  devices: { type: 'string', default: '100' }, hours: { type: 'string', default: '24' },
  interval: { type: 'string', default: '3' }, live: { type: 'string', default: '60' },
} });
const DEVICES = Number(values.devices);
const HOURS = Number(values.hours);
const INTERVAL = Number(values.interval);
const LIVE_S = Number(values.live);
process.env.VITALWATCH_BIN ??= join(process.env.CARGO_TARGET_DIR ?? join(ROOT, 'target'), 'release/vitalwatch');
console.log(`server: ${serverBin()}`);

const dir = tempDir('vw-bench-');
const db = join(dir, 'data', 'anomalies.db');
const ms = (t0) => Number(process.hrtime.bigint() - t0) / 1e6;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))];

// 1. Create the schema with the binary itself, then bulk-load with the sqlite3 CLI.
let server = await startServer({ dir });
await server.stop();
const perDevice = Math.floor((HOURS * 3600) / INTERVAL);
const end = Math.floor(Date.now() / 1000);
const start = end - perDevice * INTERVAL;
const sql = `
PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF;
BEGIN;
WITH RECURSIVE d(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM d WHERE k < ${DEVICES - 1})
INSERT INTO devices (device_id, patient_label, location, expected_interval_s, active, registered_at, registered_by, updated_at, last_seen, total_readings)
SELECT printf('BED_%03d', k), printf('Patient %03d', k), printf('Ward %d', k / 20 + 1), ${INTERVAL}, 1,
       strftime('%Y-%m-%dT%H:%M:%S.000000Z', ${start}, 'unixepoch'), 'bench', strftime('%Y-%m-%dT%H:%M:%S.000000Z', ${start}, 'unixepoch'),
       strftime('%Y-%m-%dT%H:%M:%S.000000Z', ${end}, 'unixepoch'), ${perDevice} FROM d;
WITH RECURSIVE d(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM d WHERE k < ${DEVICES - 1}),
     n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ${perDevice - 1})
INSERT INTO readings (device_id, timestamp, timestamp_from_device, received_at, heart_rate, body_temp, signal_strength, battery_level, source)
SELECT printf('BED_%03d', k), strftime('%Y-%m-%dT%H:%M:%S.000000Z', ${start} + i * ${INTERVAL}, 'unixepoch'), 1,
       strftime('%Y-%m-%dT%H:%M:%S.000000Z', ${start} + i * ${INTERVAL}, 'unixepoch'),
       72 + ((i * 7 + k * 13) % 25) + CASE WHEN (i + k) % 997 = 0 THEN 40 ELSE 0 END,
       36.4 + ((i + k) % 10) / 10.0, -60 - ((i * 3 + k) % 30), 100 - (i * 90 / ${perDevice}), 'http'
FROM d, n ORDER BY 1, 2;
-- The server counts its own inserts per hour (schema V8); a bulk load adds its counts itself.
INSERT INTO reading_hours (device_id, hour, n)
SELECT device_id, substr(timestamp, 1, 13), COUNT(*) FROM readings GROUP BY 1, 2;
INSERT INTO anomalies (device_id, reading_id, type, severity, value, threshold, detected_at, details)
SELECT device_id, id, 'OUT_OF_RANGE_HR', 'CRITICAL', heart_rate, 100, timestamp, 'heart_rate above 100'
FROM readings WHERE heart_rate > 100;
COMMIT;
PRAGMA wal_checkpoint(TRUNCATE);
SELECT COUNT(*) FROM readings;`;
let t0 = process.hrtime.bigint();
const rows = execFileSync('sqlite3', [db], { input: sql }).toString().trim().split('\n').pop();
console.log(`loaded ${rows} readings (${DEVICES} devices × ${HOURS} h at 1 / ${INTERVAL} s) in ${(ms(t0) / 1000).toFixed(1)} s`);

// 2. First render: navigation to the overview (tiles, top metrics, charts drawn).
server = await startServer({ dir });
const browser = await launch();
const results = {};
for (const [name, query] of [['overview, last hour', ''], [`overview, last ${HOURS} h`, `?range=${HOURS * 3600}`], ['overview, last 7 days', '?range=604800']]) {
  const samples = [];
  for (let run = 0; run < 3; run++) {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    t0 = process.hrtime.bigint();
    await page.goto(server.dashboard + '/' + query);
    await page.waitForSelector('body[data-ready=true]');
    await page.waitForSelector(`.tile >> nth=${DEVICES - 1}`);
    await page.waitForSelector('[data-chart=heart_rate] canvas');
    await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => r())));
    samples.push(ms(t0));
    await page.close();
  }
  results[name] = samples;
  console.log(`first render (${name}): median ${median(samples).toFixed(0)} ms, runs ${samples.map((s) => s.toFixed(0)).join(', ')} ms`);
}

// 3. Live latency: POST → the value is in the device's tile.
const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
await page.goto(server.dashboard);
await page.waitForSelector('#conn.conn-live');
await page.waitForSelector('.tile[data-device=BED_000]');
const latencies = [];
for (let i = 0; i < 20; i++) {
  const hr = 150 + i;
  t0 = process.hrtime.bigint();
  await post(server.api, { device_id: 'BED_000', heart_rate: hr, body_temp: 36.8, signal_strength: -60, battery_level: 80 });
  await page.waitForFunction((v) => new RegExp(`${v}\\s*bpm`).test(document.querySelector('.tile[data-device=BED_000]')?.textContent ?? ''), hr, { polling: 'raf' });
  latencies.push(ms(t0));
}
console.log(`live latency POST → visible: median ${median(latencies).toFixed(0)} ms, p95 ${pct(latencies, 0.95).toFixed(0)} ms, max ${Math.max(...latencies).toFixed(0)} ms (n=${latencies.length})`);

// 4. Memory over a bounded live run: every device posts every INTERVAL s for LIVE_S s.
const cdp = await page.context().newCDPSession(page);
const heap = async () => {
  await cdp.send('HeapProfiler.collectGarbage');
  const { metrics } = await cdp.send('Performance.getMetrics');
  return metrics.find((m) => m.name === 'JSHeapUsedSize').value / 1048576;
};
await cdp.send('Performance.enable');
const heap0 = await heap();
const samples = [];
const liveStart = Date.now();
let sent = 0;
while (Date.now() - liveStart < LIVE_S * 1000) {
  const tick = Date.now();
  const batch = [];
  for (let k = 0; k < DEVICES; k++) batch.push({ device_id: `BED_${String(k).padStart(3, '0')}`, heart_rate: 70 + ((sent + k) % 20), body_temp: 36.8, signal_strength: -60, battery_level: 80 });
  await post(server.api, batch);
  sent += DEVICES;
  if (samples.length === 0 || Date.now() - liveStart >= samples.length * 10_000) samples.push([(Date.now() - liveStart) / 1000, await heap()]);
  await new Promise((r) => setTimeout(r, Math.max(0, INTERVAL * 1000 - (Date.now() - tick))));
}
const heap1 = await heap();
const slope = (heap1 - samples[0][1]) / ((Date.now() - liveStart) / 1000); // MiB per second
console.log(`page JS heap: ${heap0.toFixed(1)} MiB before, ${heap1.toFixed(1)} MiB after ${LIVE_S} s of live data (${sent} readings); samples ${samples.map(([t, m]) => `${t.toFixed(0)}s:${m.toFixed(1)}`).join(' ')}`);
console.log(`  extrapolated growth over one hour at this slope: ${(slope * 3600).toFixed(1)} MiB`);
await browser.close();
await server.stop();
rmSync(dir, { recursive: true, force: true });
