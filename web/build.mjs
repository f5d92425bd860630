// Bundles the dashboard into web/dist (app.js, app.css, index.html, favicon.svg).
// Run through scripts/build-web, which installs the pinned packages first.
import { build } from 'esbuild';
import { copyFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, 'dist');
mkdirSync(dist, { recursive: true });
await build({
  entryPoints: { app: join(here, 'src/main.ts') },
  bundle: true,
  minify: true,
  sourcemap: false,
  target: ['chrome110', 'firefox110', 'safari16'],
  format: 'iife',
  outdir: dist,
  logLevel: 'warning',
  legalComments: 'linked',
});
for (const file of ['index.html', 'favicon.svg']) copyFileSync(join(here, file), join(dist, file));
console.log('web/dist built');
