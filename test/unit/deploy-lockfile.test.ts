/**
 * `npm ci` (what deploy/pi/install.sh runs on the Pi, and the bootstrap first tries) refuses a lock
 * file that lacks any platform's optional package ("Missing: @cbor-extract/cbor-extract-linux-arm64
 * from lock file"). Some npm releases write such lock files when run on one platform; this holds
 * package-lock.json to listing every optional dependency of every package it pins.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../../deploy/processes.js';

interface LockEntry {
  version?: string;
  optionalDependencies?: Record<string, string>;
  hasInstallScript?: boolean;
}

describe('package-lock.json', () => {
  const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockEntry> };

  it('pins every optional dependency of every package, for every platform (npm ci on a Pi)', () => {
    const pinned = new Set(Object.keys(lock.packages).map((p) => p.replace(/^.*node_modules\//, '')));
    const missing: string[] = [];
    for (const [path, entry] of Object.entries(lock.packages)) {
      for (const dep of Object.keys(entry.optionalDependencies ?? {})) {
        if (!pinned.has(dep)) missing.push(`${dep} (optional dependency of ${path || 'the root'})`);
      }
    }
    expect(missing).toEqual([]);
  });

  it('pins the native CBOR extractor for the Raspberry Pi (linux-arm64 and linux-arm)', () => {
    expect(lock.packages['node_modules/@cbor-extract/cbor-extract-linux-arm64']?.version).toMatch(/^\d/);
    expect(lock.packages['node_modules/@cbor-extract/cbor-extract-linux-arm']?.version).toMatch(/^\d/);
  });

  it('every pinned package with an install script is approved in package.json allowScripts (npm 12 skips the others)', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { allowScripts?: Record<string, boolean> };
    const withScripts = Object.entries(lock.packages)
      .filter(([path, e]) => path !== '' && e.hasInstallScript)
      .map(([path]) => path.replace(/^.*node_modules\//, ''));
    expect(withScripts.length).toBeGreaterThan(0);
    expect(withScripts.filter((name) => pkg.allowScripts?.[name] !== true)).toEqual([]);
  });
});
