#!/usr/bin/env node
// The one entry point behind `npm run demo`, `npm test` and `npm run bench` on a fresh clone:
// installs what is missing (npm packages; Debian packages when run as root, else prints the exact
// command and stops), then hands over to the real command. Plain JavaScript with no dependencies,
// because it runs before `npm ci`.
import { spawnSync, spawn } from 'node:child_process';
import { existsSync, statSync, writeFileSync, unlinkSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { nodeTooOld } from './node-version.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const [mode = 'test', ...rest] = process.argv.slice(2);

// binary -> Debian package. What each mode needs from the system.
const SYSTEM_DEPS = {
  demo: { influxd: 'influxdb' },
  test: {
    influxd: 'influxdb',
    mosquitto_pub: 'mosquitto-clients',
    mosquitto_sub: 'mosquitto-clients',
    'victoria-metrics': 'victoria-metrics',
    chromium: 'chromium',
    openssl: 'openssl',
    prometheus: 'prometheus',
    'systemd-analyze': 'systemd',
  },
  bench: { influxd: 'influxdb', mosquitto: 'mosquitto', mosquitto_pub: 'mosquitto-clients' },
};

function log(msg) {
  process.stderr.write(`[sluice bootstrap] ${msg}\n`);
}

function which(bin) {
  const dirs = (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/sbin', '/usr/bin']);
  return dirs.some((d) => d && existsSync(join(d, bin)));
}

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { stdio: 'inherit', cwd: root, ...opts });
  if (r.error) throw r.error;
  return r.status ?? 1;
}

function ensureNodeVersion() {
  const tooOld = nodeTooOld();
  if (tooOld) {
    log(tooOld);
    process.exit(1);
  }
}

function ensureNpmPackages() {
  const marker = join(root, 'node_modules', '.package-lock.json');
  const lock = join(root, 'package-lock.json');
  const fresh = existsSync(marker) && (!existsSync(lock) || statSync(marker).mtimeMs >= statSync(lock).mtimeMs);
  if (fresh && existsSync(join(root, 'node_modules', '.bin', 'tsx'))) return;
  log('installing npm packages (npm ci)…');
  let status = run('npm', existsSync(lock) ? ['ci', '--no-audit', '--no-fund'] : ['install', '--no-audit', '--no-fund']);
  if (status !== 0 && existsSync(lock)) {
    // Some npm 11 releases write lock files without other platforms' optional packages and then
    // refuse them in `npm ci`; `npm install` still honours every version the lock file pins.
    log('npm ci refused the lock file; installing with npm install instead…');
    status = run('npm', ['install', '--no-audit', '--no-fund']);
  }
  if (status !== 0) {
    log('npm install failed: see the messages above.');
    process.exit(status);
  }
}

function ensureSystemPackages(deps) {
  const missing = [...new Set(Object.entries(deps).filter(([bin]) => !which(bin)).map(([, pkg]) => pkg))];
  if (missing.length === 0) return;
  const cmd = `apt-get update && apt-get install -y --no-install-recommends ${missing.join(' ')}`;
  if (process.getuid?.() !== 0) {
    log(`missing Debian packages: ${missing.join(', ')}. Install them with:\n\n    sudo sh -c '${cmd}'\n\nthen run this command again.`);
    process.exit(1);
  }
  log(`installing Debian packages: ${missing.join(' ')}…`);
  // Keep the packages' own services (a system-wide influxd, mosquitto) from starting: Sluice
  // starts private instances on free loopback ports and needs nothing system-wide.
  const policy = '/usr/sbin/policy-rc.d';
  const ownPolicy = !existsSync(policy);
  if (ownPolicy) writeFileSync(policy, '#!/bin/sh\nexit 101\n', { mode: 0o755 });
  try {
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    if (run('apt-get', ['update', '-q'], { env }) !== 0) log('apt-get update failed; trying the install anyway');
    const status = run('apt-get', ['install', '-y', '-q', '--no-install-recommends', ...missing], { env });
    if (status !== 0) {
      log(`apt-get install failed (exit ${status}). Run by hand: ${cmd}`);
      process.exit(status);
    }
  } finally {
    if (ownPolicy) unlinkSync(policy);
  }
}

function exec(cmd, args) {
  const child = spawn(cmd, args, { stdio: 'inherit', cwd: root });
  const forward = (sig) => child.kill(sig);
  process.on('SIGINT', forward);
  process.on('SIGTERM', forward);
  child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
}

function typecheck() {
  log('type-checking (tsc --noEmit)…');
  const status = run(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '--noEmit', '-p', root]);
  if (status !== 0) {
    log('type errors: see above');
    process.stdout.write('\ntests: 0 passed, 1 failed\n');
    process.exit(1);
  }
}

function runTests(args) {
  if (args.length === 0) typecheck();
  const report = join(root, 'test-artifacts', 'vitest-report.json');
  const vitest = join(root, 'node_modules', 'vitest', 'vitest.mjs');
  const child = spawn(process.execPath, [vitest, 'run', '--reporter=default', '--reporter=json', `--outputFile.json=${report}`, ...args], {
    stdio: 'inherit',
    cwd: root,
  });
  process.on('SIGINT', () => child.kill('SIGINT'));
  process.on('SIGTERM', () => child.kill('SIGTERM'));
  child.on('exit', (code) => {
    try {
      const r = JSON.parse(readFileSync(report, 'utf8'));
      const skipped = (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
      // One plain closing line that any CI can read.
      process.stdout.write(`\ntests: ${r.numPassedTests} passed, ${r.numFailedTests} failed${skipped ? `, ${skipped} skipped` : ''}\n`);
      if (r.numTotalTests === 0) {
        log('no test ran: treating that as a failure');
        process.exit(1);
      }
    } catch {
      log('no test report was written');
    }
    process.exit(code ?? 1);
  });
}

ensureNodeVersion();
ensureNpmPackages();
ensureSystemPackages(SYSTEM_DEPS[mode] ?? {});
const sluice = join(root, 'bin', 'sluice.js');
switch (mode) {
  case 'test':
    runTests(rest);
    break;
  case 'demo':
    exec(process.execPath, [sluice, 'demo', ...rest]);
    break;
  case 'bench':
    exec(process.execPath, ['--import', 'tsx', join(root, 'test', 'bench', 'run.ts'), ...rest]);
    break;
  default:
    log(`unknown mode "${mode}" (want demo, test or bench)`);
    process.exit(2);
}
