/**
 * `sluice sim`: run a simulated fleet against an MQTT broker (normally the Sluice gateway).
 *
 *   sluice sim --url mqtt://127.0.0.1:1883 --devices 50 --rate 2 [--qos 0|1] [--format json|cbor]
 *              [--duration 60s] [--count N] [--prefix sim] [--username U --password P] [--seed N]
 *              [--max [--window N]] [--warmup 2s]
 *
 * Without --duration or --count it runs until SIGINT/SIGTERM; the first signal stops publishing,
 * waits for outstanding acks and disconnects cleanly, a second one exits at once (130).
 * A bad flag value prints a message naming the flag and exits 2. Exit 1 when readings were left
 * unacknowledged or nothing could be sent. Live status on stderr, the final summary on stdout.
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { isSluiceError, SluiceError } from '../protocols/errors.js';
import { parseDuration } from '../protocols/units.js';
import { resolveSimOptions, runSim, type SimOptions, type SimResult } from './sim.js';
import { StatusLine } from './status.js';

/** The flags as commander hands them over: strings, validated by parseSimFlags. */
export interface SimFlags {
  url: string;
  devices: string;
  rate: string;
  qos: string;
  format: string;
  duration?: string;
  count?: string;
  prefix: string;
  max?: boolean;
  window?: string;
  username?: string;
  password?: string;
  seed?: string;
  ca?: string;
  insecure?: boolean;
  connectRate?: string;
  drainTimeout?: string;
  warmup?: string;
  json?: boolean;
}

function bad(flag: string, message: string): SluiceError {
  return new SluiceError('SLUICE_BAD_CONFIG', `${flag} ${message}`, { detail: { flag } });
}

function intFlag(flag: string, raw: string, min: number, max: number): number {
  const n = /^\d+$/.test(raw.trim()) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) throw bad(flag, `must be an integer from ${min} to ${max}, got "${raw}"`);
  return n;
}

function numFlag(flag: string, raw: string, max: number): number {
  const n = /^\d*\.?\d+$/.test(raw.trim()) ? Number(raw) : NaN;
  if (!(n > 0 && n <= max)) throw bad(flag, `must be a number > 0 and ≤ ${max}, got "${raw}"`);
  return n;
}

function durationFlag(flag: string, raw: string): number {
  try {
    return parseDuration(raw, flag);
  } catch {
    throw bad(flag, `must be a duration such as 500ms, 30s, 5m or 1h, got "${raw}"`);
  }
}

/** Turns raw flags into SimOptions. Throws SLUICE_BAD_CONFIG whose message starts with the flag. */
export function parseSimFlags(f: SimFlags): Omit<SimOptions, 'signal' | 'onProgress'> {
  let url: URL | undefined;
  try {
    url = new URL(f.url);
  } catch {
    url = undefined;
  }
  if (!url || !/^(mqtts?|tcp|tls|ssl|wss?):$/.test(url.protocol) || !url.hostname) {
    throw bad('--url', `must be mqtt://host:port or mqtts://host:port, got "${f.url}"`);
  }
  if (f.qos !== '0' && f.qos !== '1') throw bad('--qos', `must be 0 or 1, got "${f.qos}"`);
  if (f.format !== 'json' && f.format !== 'cbor') throw bad('--format', `must be json or cbor, got "${f.format}"`);
  if (f.password !== undefined && f.username === undefined) throw bad('--password', 'needs --username (MQTT 3.1.1 sends no password without a user name)');
  const opts: Omit<SimOptions, 'signal' | 'onProgress'> = {
    url: f.url,
    devices: intFlag('--devices', f.devices, 1, 100_000),
    rate: numFlag('--rate', f.rate, 100_000),
    qos: f.qos === '1' ? 1 : 0,
    format: f.format,
    prefix: f.prefix,
    max: Boolean(f.max),
  };
  if (f.duration !== undefined) opts.durationMs = durationFlag('--duration', f.duration);
  if (f.count !== undefined) opts.count = intFlag('--count', f.count, 1, Number.MAX_SAFE_INTEGER);
  if (f.window !== undefined) opts.window = intFlag('--window', f.window, 1, 10_000);
  if (f.seed !== undefined) opts.seed = intFlag('--seed', f.seed, 0, 2 ** 32 - 1);
  if (f.connectRate !== undefined) opts.connectRate = numFlag('--connect-rate', f.connectRate, 1e6);
  if (f.drainTimeout !== undefined) opts.drainTimeoutMs = durationFlag('--drain-timeout', f.drainTimeout);
  if (f.warmup !== undefined) {
    opts.warmupMs = durationFlag('--warmup', f.warmup);
    if (opts.durationMs !== undefined && opts.warmupMs > 0 && opts.warmupMs >= opts.durationMs) throw bad('--warmup', 'must be shorter than --duration (the steady rate is measured from the end of the warm-up to the end of --duration)');
  }
  if (f.username !== undefined) opts.username = f.username;
  if (f.password !== undefined) opts.password = f.password;
  if (f.insecure) opts.rejectUnauthorized = false;
  if (f.ca !== undefined) {
    try {
      opts.ca = readFileSync(f.ca);
    } catch (err) {
      throw bad('--ca', `cannot read "${f.ca}": ${(err as Error).message}`);
    }
  }
  if (!/^[A-Za-z0-9_.-]{1,50}$/.test(f.prefix)) throw bad('--prefix', `must be 1 to 50 of A-Z a-z 0-9 _ . -, got "${f.prefix}"`);
  // The remaining cross-checks of runSim, with its messages (they name the option).
  resolveSimOptions({ ...opts, signal: new AbortController().signal });
  return opts;
}

export function formatSummary(r: SimResult, devices: number): string {
  const secs = (r.durationMs / 1000).toFixed(1);
  const steady = r.steady === undefined ? '' : ` (steady ${r.steady.rate.toFixed(1)}/s)`;
  return `sim: done in ${secs}s: ${devices} devices, sent ${r.sent}, acked ${r.acked}, unacked ${r.unacked}, ${r.rate.toFixed(1)}/s${steady}, errors ${r.errors}`;
}

/** Runs the fleet with signal handling, status line and summary. Returns the process exit code. */
export async function runSimCommand(opts: Omit<SimOptions, 'signal' | 'onProgress'>, json = false): Promise<number> {
  const stopper = new AbortController();
  let signals = 0;
  const onSignal = (): void => {
    if (++signals > 1) process.exit(130);
    process.stderr.write('\nsim: stopping: waiting for acks, then disconnecting (again to force)\n');
    stopper.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const status = new StatusLine();
  let result: SimResult;
  try {
    // A CLI run can last hours: keep counts, not every acknowledged reading.
    result = await runSim({ recordAcks: false, ...opts, signal: stopper.signal, onProgress: (s) => status.update(s) });
  } finally {
    status.done();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  if (json) {
    const perDevice = Object.fromEntries([...result.perDevice].map(([id, d]) => [id, { sent: d.sent, acked: d.ackedCount, unacked: d.unacked, errors: d.errors, reconnects: d.reconnects }]));
    process.stdout.write(`${JSON.stringify({ ...result, perDevice })}\n`);
  } else {
    process.stdout.write(`${formatSummary(result, opts.devices)}\n`);
    if (result.lastError) process.stderr.write(`sim: last error: ${result.lastError}\n`);
  }
  return result.unacked > 0 || (result.sent === 0 && result.errors > 0) ? 1 : 0;
}

export function register(program: Command): void {
  program
    .command('sim')
    .description('simulate a fleet of MQTT devices publishing payload v1 telemetry (load generator)')
    .option('--url <url>', 'broker URL, mqtt://host:port or mqtts://host:port', 'mqtt://127.0.0.1:1883')
    .option('--devices <n>', 'number of devices, one MQTT connection each', '50')
    .option('--rate <n>', 'readings per second per device', '2')
    .option('--qos <0|1>', 'MQTT QoS of the publishes', '1')
    .option('--format <json|cbor>', 'payload encoding', 'json')
    .option('--duration <d>', 'stop after this long (e.g. 30s, 5m); default: run until Ctrl-C')
    .option('--count <n>', 'readings per device, then stop')
    .option('--prefix <p>', 'device id prefix: ids are {prefix}-0001, …', 'sim')
    .option('--max', 'load mode: publish as fast as the broker acks, --window in flight per device')
    .option('--window <n>', 'readings in flight per device (default 16 with --max, else 100)')
    .option('--username <u>', 'MQTT user name')
    .option('--password <p>', 'MQTT password')
    .option('--seed <n>', 'seed of the signal generators (same seed, same values)')
    .option('--ca <file>', 'PEM CA certificate for mqtts://')
    .option('--insecure', 'mqtts:// without verifying the broker certificate')
    .option('--connect-rate <n>', 'new connections per second while the fleet starts', '200')
    .option('--warmup <d>', 'leave this first part of --duration (connections ramping up) out of the steady rate it reports')
    .option('--drain-timeout <d>', 'how long to wait for outstanding acks at the end', '5s')
    .option('--json', 'print the final result as JSON instead of the summary line')
    .showHelpAfterError("(see 'sluice sim --help' for the flags)")
    .action(async (flags: SimFlags, cmd: Command) => {
      let opts: Omit<SimOptions, 'signal' | 'onProgress'>;
      try {
        opts = parseSimFlags(flags);
      } catch (err) {
        if (isSluiceError(err, 'SLUICE_BAD_CONFIG')) cmd.error(`sluice sim: ${err.message}`, { exitCode: 2, code: 'sluice.badFlag' });
        throw err;
      }
      process.exitCode = await runSimCommand(opts, flags.json);
    });
}
