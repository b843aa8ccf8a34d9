/**
 * `sluice cloud --rules FILE` as a real process: an invalid rules file at start exits 2 naming the rule
 * and key; at run time (SIGHUP or a file change) it is refused and the previous rules stay active.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runSluice, spawnSluice, waitListening } from '../support/cloud-cli.js';
import { tempDir, until } from '../support/tmp.js';

let dir: { path: string; remove(): Promise<void> };

beforeEach(async () => {
  dir = await tempDir('sluice-alerts-cli-');
});

afterEach(async () => {
  await dir.remove();
});

const base = () => ['cloud', '--listen', '127.0.0.1:0', '--data', join(dir.path, 'data'), '--gateway-token', 'gw=t', '--influx', 'http://127.0.0.1:1'];
const GOOD = 'rules:\n  - id: hot\n    metric: temperature\n    above: 30\n';

describe('sluice cloud --rules', () => {
  it('refuses an invalid rules file at start: exit 2 naming the rule and the key', async () => {
    const file = join(dir.path, 'rules.yaml');
    await writeFile(file, 'rules:\n  - id: hot\n    metric: temperature\n    above: "thirty"\n');
    const r = await runSluice([...base(), '--rules', file]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`sluice cloud: --rules ${file}: rule "hot": key "above": must be a finite number`);
    const missing = await runSluice([...base(), '--rules', join(dir.path, 'nope.yaml')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/--rules .*nope\.yaml: cannot read: ENOENT/);
  });

  it('SIGHUP with a broken file keeps the previous rules; a fixed file is taken; the config file key works', async () => {
    const file = join(dir.path, 'rules.yaml');
    await writeFile(file, GOOD);
    const config = join(dir.path, 'cloud.yaml');
    await writeFile(config, `rules: ${file}\n`);
    const c = spawnSluice([...base(), '--config', config]);
    try {
      const url = await waitListening(c);
      const rules = async () => (await (await fetch(`${url}/api/v1/rules`)).json()) as any;
      expect((await rules()).rules.map((r: any) => r.id)).toEqual(['hot']);

      await writeFile(file, GOOD + '    for: 30\n');
      c.child.kill('SIGHUP');
      const broken = await until('the reload error', async () => (await rules()).lastError);
      expect(broken).toMatchObject({ rule: 'hot', key: 'for' });
      expect((await rules()).rules.map((r: any) => r.id)).toEqual(['hot']);
      await until('the refusal logged', () => c.stderr().includes('rules not reloaded, previous rules stay active'));

      await writeFile(file, GOOD + '  - id: cold\n    metric: temperature\n    below: 5\n');
      c.child.kill('SIGHUP');
      await until('the new rules', async () => (await rules()).rules.length === 2);
      expect((await rules()).lastError).toBeUndefined();
      expect(c.stderr()).toContain('reloading alert rules');
    } finally {
      c.child.kill('SIGTERM');
      expect(await c.exited).toBe(0);
    }
  });
});
