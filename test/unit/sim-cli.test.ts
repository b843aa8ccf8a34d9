/** `sluice sim` flags: each bad value is refused with a message naming the flag and exit code 2. */
import { Command, CommanderError } from 'commander';
import { describe, expect, it } from 'vitest';
import { parseSimFlags, register, type SimFlags } from '../../devices-sim/cli.js';
import { deviceId, resolveSimOptions } from '../../devices-sim/sim.js';

const defaults: SimFlags = { url: 'mqtt://127.0.0.1:1883', devices: '50', rate: '2', qos: '1', format: 'json', prefix: 'sim', connectRate: '200', drainTimeout: '5s' };

function flagError(over: Partial<SimFlags>): { code?: string; message: string; detail?: Record<string, unknown> } {
  try {
    parseSimFlags({ ...defaults, ...over });
  } catch (err) {
    return err as { code?: string; message: string; detail?: Record<string, unknown> };
  }
  throw new Error(`expected ${JSON.stringify(over)} to be refused`);
}

/** Parses argv with commander, errors captured instead of exiting. */
async function cli(args: string[]): Promise<{ exitCode: number; stderr: string }> {
  let stderr = '';
  const program = new Command().name('sluice').exitOverride().configureOutput({ writeErr: (s) => (stderr += s), writeOut: () => {} });
  register(program);
  // Only bad flags are tried here: parsing fails before any connection is made.
  try {
    await program.parseAsync(['node', 'sluice', 'sim', ...args]);
  } catch (err) {
    if (err instanceof CommanderError) return { exitCode: err.exitCode, stderr };
    throw err;
  }
  return { exitCode: 0, stderr };
}

describe('parseSimFlags', () => {
  it('turns the defaults and every flag into SimOptions', () => {
    expect(parseSimFlags(defaults)).toMatchObject({ url: 'mqtt://127.0.0.1:1883', devices: 50, rate: 2, qos: 1, format: 'json', prefix: 'sim', max: false, connectRate: 200, drainTimeoutMs: 5000 });
    const all = parseSimFlags({ ...defaults, url: 'mqtts://gw.example:8883', qos: '0', format: 'cbor', rate: '0.5', duration: '1m30s', count: '10', max: true, window: '8', username: 'u', password: 'p', seed: '42', insecure: true, drainTimeout: '250ms', warmup: '2s' });
    expect(all).toMatchObject({ url: 'mqtts://gw.example:8883', qos: 0, format: 'cbor', rate: 0.5, durationMs: 90_000, count: 10, max: true, window: 8, username: 'u', password: 'p', seed: 42, rejectUnauthorized: false, drainTimeoutMs: 250, warmupMs: 2000 });
  });

  it.each<[Partial<SimFlags>, string]>([
    [{ url: 'localhost:1883' }, '--url'],
    [{ url: 'http://127.0.0.1:1883' }, '--url'],
    [{ url: 'mqtt://' }, '--url'],
    [{ devices: '0' }, '--devices'],
    [{ devices: 'abc' }, '--devices'],
    [{ devices: '1.5' }, '--devices'],
    [{ devices: '100001' }, '--devices'],
    [{ rate: '0' }, '--rate'],
    [{ rate: '-1' }, '--rate'],
    [{ rate: 'fast' }, '--rate'],
    [{ qos: '2' }, '--qos'],
    [{ qos: 'one' }, '--qos'],
    [{ format: 'xml' }, '--format'],
    [{ duration: '5x' }, '--duration'],
    [{ duration: '-1s' }, '--duration'],
    [{ count: '0' }, '--count'],
    [{ count: '1e3' }, '--count'],
    [{ prefix: 'a/b' }, '--prefix'],
    [{ prefix: '' }, '--prefix'],
    [{ prefix: 'x'.repeat(51) }, '--prefix'],
    [{ window: '0' }, '--window'],
    [{ seed: '-1' }, '--seed'],
    [{ seed: String(2 ** 32) }, '--seed'],
    [{ password: 'p' }, '--password'],
    [{ ca: '/nonexistent/ca.pem' }, '--ca'],
    [{ connectRate: '0' }, '--connect-rate'],
    [{ drainTimeout: 'soon' }, '--drain-timeout'],
    [{ warmup: 'a while' }, '--warmup'],
    [{ warmup: '10s', duration: '10s' }, '--warmup'],
  ])('refuses %j naming %s', (over, flag) => {
    const err = flagError(over);
    expect(err.code).toBe('SLUICE_BAD_CONFIG');
    expect(err.message.startsWith(`${flag} `)).toBe(true);
    expect(err.detail?.flag).toBe(flag);
  });
});

describe('sluice sim (commander)', () => {
  it('exits 2 with the flag named on a bad value', async () => {
    const r = await cli(['--devices', 'many']);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/--devices must be an integer/);
    const q = await cli(['--qos', '2', '--count', '1']);
    expect(q.exitCode).toBe(2);
    expect(q.stderr).toMatch(/--qos/);
  });
});

describe('resolveSimOptions', () => {
  const base = { url: 'mqtt://127.0.0.1:1', devices: 1, rate: 1, qos: 1 as const, format: 'json' as const, count: 1 };

  it('fills in defaults', () => {
    expect(resolveSimOptions(base)).toMatchObject({ prefix: 'sim', max: false, window: 100, connectRate: 200, drainTimeoutMs: 5000 });
    expect(resolveSimOptions({ ...base, max: true }).window).toBe(16);
  });

  it.each<[Record<string, unknown>, RegExp]>([
    [{ url: 'nope' }, /url/],
    [{ url: 'http://x:1' }, /url/],
    [{ devices: 0 }, /devices/],
    [{ rate: 0 }, /rate/],
    [{ qos: 2 }, /qos/],
    [{ format: 'xml' }, /format/],
    [{ count: 0 }, /count/],
    [{ count: undefined }, /durationMs/],
    [{ durationMs: -1 }, /durationMs/],
    [{ prefix: 'a b' }, /prefix/],
    [{ window: 0 }, /window/],
    [{ seed: 1.5 }, /seed/],
    [{ warmupMs: -1 }, /warmupMs/],
    [{ warmupMs: 500, durationMs: 500, count: undefined }, /warmupMs: must be shorter than durationMs/],
  ])('refuses %j', (over, message) => {
    let err: { code?: string; message?: string } = {};
    try {
      resolveSimOptions({ ...base, ...over } as never);
    } catch (e) {
      err = e as typeof err;
    }
    expect(err.code).toBe('SLUICE_BAD_CONFIG');
    expect(err.message).toMatch(message);
  });

  it('names devices {prefix}-NNNN, sortable in fleet order', () => {
    expect(deviceId('sim', 0, 50)).toBe('sim-0001');
    expect(deviceId('sim', 49, 50)).toBe('sim-0050');
    expect(deviceId('x', 12344, 20000)).toBe('x-12345');
    expect(deviceId('x', 0, 20000)).toBe('x-00001');
  });
});
