/**
 * The Pi install runs `npm ci --omit=dev`: every package the shipped code imports at run time must
 * be a production dependency. (Type-only imports are erased by tsx and need nothing.)
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../../deploy/processes.js';

const SHIPPED = ['bin', 'gateway', 'cloud', 'protocols', 'devices-sim', 'deploy'];

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return sources(p);
    return /\.(ts|js|mjs)$/.test(name) ? [p] : [];
  });
}

/** Package name of every runtime import/export-from/dynamic import of a bare specifier. */
function runtimeImports(text: string): string[] {
  const out: string[] = [];
  const re = /(?:^|[;\n])\s*(import|export)\s+(type\s+)?(?:[^'";]*?\sfrom\s+)?['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g;
  for (const m of text.matchAll(re)) {
    if (m[2]) continue; // import type … / export type …
    const spec = m[3] ?? m[4];
    if (!spec || spec.startsWith('.') || spec.startsWith('/') || spec.startsWith('node:')) continue;
    const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0];
    if (!builtinModules.includes(name)) out.push(name);
  }
  return out;
}

describe('production dependencies', () => {
  it('cover every package the shipped code imports', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
    const prod = new Set(Object.keys(pkg.dependencies ?? {}));
    const missing: string[] = [];
    let files = 0;
    for (const dir of SHIPPED) {
      for (const file of sources(join(ROOT, dir))) {
        files++;
        for (const name of runtimeImports(readFileSync(file, 'utf8'))) {
          if (!prod.has(name)) missing.push(`${relative(ROOT, file)} imports ${name}`);
        }
      }
    }
    expect(files).toBeGreaterThan(20);
    expect(missing, 'move these to "dependencies" or import them only from test/').toEqual([]);
    // tsx runs the TypeScript in production.
    expect(prod.has('tsx')).toBe(true);
  });
});
