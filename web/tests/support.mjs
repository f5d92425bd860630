// Helpers for the browser tests: start the real `vitalwatch serve` on free ports in a temp
// data dir, post readings through the API, and launch Debian's chromium through playwright-core.
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const TARGET = process.env.CARGO_TARGET_DIR ? resolve(process.env.CARGO_TARGET_DIR) : join(ROOT, 'target');
export const BIN = process.env.VITALWATCH_BIN ? resolve(process.env.VITALWATCH_BIN) : join(TARGET, 'debug/vitalwatch');
export const SHOTS = join(TARGET, 'dashboard-screenshots');
mkdirSync(SHOTS, { recursive: true });

export function tempDir(prefix = 'vw-dash-') {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Starts `serve`; resolves once both `listening` lines were printed. */
export function startServer({ dir, api = '127.0.0.1:0', dashboard = '127.0.0.1:0', args = [] }) {
  const child = spawn(BIN, ['serve', '--data-dir', join(dir, 'data'), '--http-addr', api, '--dashboard-addr', dashboard, '--mqtts-addr', '127.0.0.1:0', ...args], {
    cwd: dir,
    env: serverEnv(),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  return new Promise((resolvePromise, reject) => {
    const found = {};
    let buf = '';
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`server did not start:\n${stderr}`)); }, 30_000);
    child.stdout.on('data', (d) => {
      buf += d;
      for (const line of buf.split('\n')) {
        const m = /^listening (api|dashboard)=(\S+)/.exec(line.trim());
        if (m) found[m[1]] = m[2];
      }
      if (found.api && found.dashboard) {
        clearTimeout(timer);
        resolvePromise({
          child,
          api: `http://${found.api}`,
          dashboard: `http://${found.dashboard}`,
          apiAddr: found.api,
          dashboardAddr: found.dashboard,
          stop: () => stopChild(child),
        });
      }
    });
    child.on('error', (err) => { clearTimeout(timer); reject(err); });
    child.on('exit', (code) => { clearTimeout(timer); if (!found.api) reject(new Error(`server exited ${code}:\n${stderr}`)); });
  });
}

function serverEnv() {
  const env = { ...process.env, RUST_LOG: 'vitalwatch=warn' };
  for (const key of Object.keys(env)) if (key.startsWith('VITALWATCH_')) delete env[key];
  return env;
}

function stopChild(child) {
  return new Promise((res) => {
    if (child.exitCode !== null) return res();
    child.once('exit', () => res());
    child.kill('SIGTERM');
  });
}

export async function post(base, body) {
  const res = await fetch(`${base}/api/telemetry`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body),
  });
  if (!res.ok) throw new Error(`POST /api/telemetry: ${res.status} ${await res.text()}`);
  return res.json();
}

export async function launch() {
  // playwright-core's launch() gives every browser a fresh, empty temporary profile.
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic',
    ],
  });
  return browser;
}
