// Helpers for the browser tests: start the real `vitalwatch serve` on free ports in a temp
// data dir, post readings through the API, and launch Debian's chromium through playwright-core.
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const TARGET = process.env.CARGO_TARGET_DIR ? resolve(process.env.CARGO_TARGET_DIR) : join(ROOT, 'target');
/** The binary servers run: `VITALWATCH_BIN` as it is when a server starts (a bench sets it
 *  after importing this module), else the debug build. */
export function serverBin() {
  return process.env.VITALWATCH_BIN ? resolve(process.env.VITALWATCH_BIN) : join(TARGET, 'debug/vitalwatch');
}
export const SHOTS = join(TARGET, 'dashboard-screenshots');
mkdirSync(SHOTS, { recursive: true });

export function tempDir(prefix = 'vw-dash-') {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Starts `serve`; resolves once both `listening` lines were printed.
 *
 *  By default plaintext HTTP with loopback clients trusted (no login), as the dashboard tests
 *  expect. `secure: true` runs it as deployed: HTTPS with the certificate of the CA created in
 *  `<dir>/data/certs` on first start, and every API route needs a login or a token; the answer
 *  then has `ca` (the CA's PEM) for node-side requests (see request()). */
export function startServer({ dir, api = '127.0.0.1:0', dashboard = '127.0.0.1:0', args = [], secure = false }) {
  const mode = secure ? [] : ['--http-plaintext', '--trust-loopback'];
  const scheme = secure ? 'https' : 'http';
  const child = spawn(serverBin(), ['serve', '--data-dir', join(dir, 'data'), '--http-addr', api, '--dashboard-addr', dashboard, '--mqtts-addr', '127.0.0.1:0', ...mode, ...args], {
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
          secure,
          ca: secure ? readFileSync(join(dir, 'data/certs/ca.crt')) : undefined,
          api: `${scheme}://${found.api}`,
          dashboard: `${scheme}://${found.dashboard}`,
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

/** One HTTP(S) request from node, trusting `ca` (PEM) for https URLs; bounded by `timeoutMs`.
 *  Resolves to { status, headers, text, json() } whatever the status. */
export function request(url, { method = 'GET', headers = {}, body, ca, timeoutMs = 10_000 } = {}) {
  const u = new URL(url);
  const data = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
  const lib = u.protocol === 'https:' ? https : http;
  return new Promise((resolvePromise, reject) => {
    const req = lib.request(u, {
      method,
      headers: { ...(data !== undefined ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } : {}), ...headers },
      ...(u.protocol === 'https:' ? { ca } : {}),
      timeout: timeoutMs,
    }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => resolvePromise({ status: res.statusCode, headers: res.headers, text, json: () => JSON.parse(text) }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${url}: no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    if (data !== undefined) req.write(data);
    req.end();
  });
}

/** Posts readings to /api/telemetry; over HTTPS pass the server's `ca` and a `token`. */
export async function post(base, body, { ca, token } = {}) {
  const res = await request(`${base}/api/telemetry`, {
    method: 'POST', body, ca, headers: token ? { authorization: `Bearer ${token}` } : {},
  });
  if (res.status !== 200) throw new Error(`POST /api/telemetry: ${res.status} ${res.text}`);
  return res.json();
}

/** Runs a `vitalwatch` command (e.g. `users create`) with `input` on its standard input;
 *  resolves to its standard output, rejects on a non-zero exit or after `timeoutMs`. */
export function cli(args, { input = '', cwd, timeoutMs = 30_000 } = {}) {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(serverBin(), args, { cwd, env: serverEnv(), stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`vitalwatch ${args.join(' ')}: timed out\n${stderr}`)); }, timeoutMs);
    child.on('error', (err) => { clearTimeout(timer); reject(err); });
    child.on('exit', (code) => {
      clearTimeout(timer);
      if (code === 0) resolvePromise(stdout);
      else reject(new Error(`vitalwatch ${args.join(' ')}: exit ${code}\n${stderr}`));
    });
    child.stdin.end(input);
  });
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
