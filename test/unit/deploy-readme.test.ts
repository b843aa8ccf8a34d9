/**
 * deploy/README.md stays true: its Prometheus alert rules and scrape config pass promtool (Debian
 * package `prometheus`), and every metric it names exists in gateway/metrics.ts or cloud/metrics.ts.
 */
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from '../../deploy/processes.js';
import { tempDir } from '../support/tmp.js';

const exec = promisify(execFile);
const README = readFileSync(join(ROOT, 'deploy', 'README.md'), 'utf8');
const yamlBlocks = [...README.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]);

let tmp: Awaited<ReturnType<typeof tempDir>>;
beforeAll(async () => {
  tmp = await tempDir('sluice-readme-');
});
afterAll(() => tmp.remove());

async function promtool(args: string[]): Promise<{ code: number; out: string }> {
  try {
    const r = await exec('promtool', args);
    return { code: 0, out: r.stdout + r.stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, out: `${e.stdout ?? ''}${e.stderr ?? String(err)}` };
  }
}

describe('deploy/README.md', () => {
  it('its alert rules pass promtool check rules', async () => {
    const rules = yamlBlocks.find((b) => b.startsWith('# prometheus-rules'));
    expect(rules).toBeDefined();
    const file = join(tmp.path, 'rules.yml');
    writeFileSync(file, rules!);
    const r = await promtool(['check', 'rules', file]);
    expect(r, r.out).toMatchObject({ code: 0 });
    expect(r.out).toMatch(/SUCCESS: \d+ rules found/);
  });

  it('its scrape config passes promtool check config', async () => {
    const scrape = yamlBlocks.find((b) => b.startsWith('scrape_configs:'));
    expect(scrape).toBeDefined();
    const file = join(tmp.path, 'prometheus.yml');
    writeFileSync(file, scrape!);
    const r = await promtool(['check', 'config', '--syntax-only', file]);
    expect(r, r.out).toMatchObject({ code: 0 });
  });

  it('every metric it names is exported', () => {
    const sources = ['gateway/metrics.ts', 'cloud/metrics.ts'].map((f) => readFileSync(join(ROOT, f), 'utf8')).join('\n');
    const named = new Set([...README.matchAll(/\bsluice_(?:gateway|cloud)_[a-z_]+/g)].map((m) => m[0].replace(/_(bucket|count|sum)$/, '')));
    const missing = [...named].filter((n) => !sources.includes(`'${n}'`));
    expect(missing).toEqual([]);
    expect(named.size).toBeGreaterThan(5);
  });
});
