#!/usr/bin/env node
// Loader for the `sluice` command. Runs the compiled JavaScript in dist/ (`npm run build`) when it
// is there and newer than every TypeScript source — lighter and faster to start, what a Pi should
// run — and otherwise the TypeScript sources directly through tsx.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { nodeTooOld } from '../deploy/node-version.js';

const tooOld = nodeTooOld();
if (tooOld) {
  process.stderr.write(`sluice: ${tooOld}\n`);
  process.exit(1);
}

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const stamp = join(root, 'dist', '.build-stamp');

function newestSource(dir, newest = 0) {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) newest = newestSource(p, newest);
    else if (e.name.endsWith('.ts')) newest = Math.max(newest, statSync(p).mtimeMs);
  }
  return newest;
}

function distIsFresh() {
  if (process.env.SLUICE_FROM_SOURCE || !existsSync(stamp)) return false;
  // The benchmark builds dist/ and pins it, whatever is edited meanwhile.
  if (process.env.SLUICE_FROM_DIST) return true;
  const built = statSync(stamp).mtimeMs;
  for (const d of ['bin', 'gateway', 'cloud', 'protocols', 'devices-sim', 'deploy']) {
    const p = join(root, d);
    if (existsSync(p) && newestSource(p) > built) return false;
  }
  return true;
}

if (distIsFresh()) {
  await import(pathToFileURL(join(root, 'dist', 'bin', 'main.js')).href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import('./main.ts');
}
