/**
 * gateway/quiet-debug.ts: unless DEBUG is set, the libraries the gateway loads after it get a debug
 * factory whose loggers do nothing (and allocate nothing); with DEBUG set, debug works as before.
 * Run in child processes: it changes what `require('debug')` returns for the whole process.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = join(__dirname, '..', '..');
const probe = `
  const { quietDebug } = await import('./gateway/quiet-debug.ts');
  quietDebug();
  const { createRequire } = await import('node:module');
  const require = createRequire(process.cwd() + '/package.json');
  // what aedes' own require('debug') gets
  const aedesRequire = createRequire(require.resolve('aedes'));
  const d = aedesRequire('debug')('aedes:test');
  d('a %s message', 'debug');
  console.log(JSON.stringify({ enabled: d.enabled, sameFactory: typeof aedesRequire('debug').enable }));
`;

function run(debug: string): { out: unknown; err: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', probe], {
    cwd: ROOT,
    env: { ...process.env, DEBUG: debug },
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`probe failed: ${r.stderr}`);
  return { out: JSON.parse(r.stdout.trim()), err: r.stderr };
}

describe('quietDebug', () => {
  it('without DEBUG: loggers are no-ops, the factory keeps its API', () => {
    const { out, err } = run('');
    expect(out).toEqual({ enabled: false, sameFactory: 'function' });
    expect(err).not.toContain('a debug message');
  });

  it('with DEBUG set: debug is left alone and still prints', () => {
    const { out, err } = run('aedes:*');
    expect(out).toEqual({ enabled: true, sameFactory: 'function' });
    expect(err).toContain('a debug message');
  });
});
