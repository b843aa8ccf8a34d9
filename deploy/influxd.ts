/**
 * Start and stop a private InfluxDB 1.x (`influxd` from Debian's `influxdb` package) on loopback,
 * with its data in a temporary directory. Used by `sluice demo`, the test suite and the benchmarks.
 * Nothing here touches a system-wide InfluxDB.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SluiceError } from '../protocols/errors.js';

export interface InfluxdHandle {
  url: string;
  port: number;
  dataDir: string;
  pid: number;
  stop(): Promise<void>;
}

export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, host, () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined | false>,
  opts: { timeoutMs?: number; intervalMs?: number; onTick?: () => void } = {},
): Promise<T> {
  const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}${lastErr ? `: ${(lastErr as Error).message}` : ''}`);
    }
    opts.onTick?.();
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 100));
  }
}

export const INFLUXD_BIN = process.env.SLUICE_INFLUXD ?? 'influxd';

/**
 * Start influxd on a free loopback port. Resolves once /ping answers.
 * `dataDir` defaults to a fresh temporary directory that stop() removes.
 */
export async function startInfluxd(opts: { dataDir?: string; port?: number; log?: (line: string) => void } = {}): Promise<InfluxdHandle> {
  const ownDir = opts.dataDir === undefined;
  const dataDir = opts.dataDir ?? (await mkdtemp(join(tmpdir(), 'sluice-influxd-')));
  await mkdir(dataDir, { recursive: true });
  for (let attempt = 0; ; attempt++) {
    const httpPort = opts.port ?? (await freePort());
    const rpcPort = await freePort();
    const conf = join(dataDir, 'influxdb.conf');
    await writeFile(
      conf,
      [
        'reporting-disabled = true',
        `bind-address = "127.0.0.1:${rpcPort}"`,
        '[meta]',
        `  dir = "${join(dataDir, 'meta')}"`,
        '  logging-enabled = false',
        '[data]',
        `  dir = "${join(dataDir, 'data')}"`,
        `  wal-dir = "${join(dataDir, 'wal')}"`,
        '  query-log-enabled = false',
        '  cache-snapshot-write-cold-duration = "10s"',
        '[monitor]',
        '  store-enabled = false',
        '[http]',
        `  bind-address = "127.0.0.1:${httpPort}"`,
        '  log-enabled = false',
        '  max-body-size = 0',
        '[logging]',
        '  level = "warn"',
        '[continuous_queries]',
        '  enabled = false',
        '',
      ].join('\n'),
    );
    let child: ChildProcess;
    try {
      child = spawn(INFLUXD_BIN, ['run', '-config', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (err) {
      throw missingInfluxd(err);
    }
    let exited: number | null | undefined;
    let spawnErr: Error | undefined;
    let output = '';
    child.on('error', (err) => (spawnErr = err));
    child.on('exit', (code) => (exited = code));
    const onData = (d: Buffer) => {
      output = (output + d.toString()).slice(-4000);
      opts.log?.(d.toString());
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    const url = `http://127.0.0.1:${httpPort}`;
    try {
      await waitFor(
        'influxd to answer /ping',
        async () => {
          if (spawnErr) throw missingInfluxd(spawnErr);
          if (exited !== undefined) throw new Error(`influxd exited with code ${exited}: ${output.trim().split('\n').slice(-3).join(' | ')}`);
          const res = await fetch(`${url}/ping`).catch(() => undefined);
          return res?.status === 204;
        },
        { timeoutMs: 30_000, intervalMs: 50 },
      );
    } catch (err) {
      child.kill('SIGKILL');
      if (err instanceof SluiceError || attempt >= 2 || opts.port) throw err;
      continue; // most likely a port taken between freePort() and bind: try other ports
    }
    const handle: InfluxdHandle = {
      url,
      port: httpPort,
      dataDir,
      pid: child.pid!,
      async stop() {
        if (exited === undefined) {
          const done = new Promise((r) => child.once('exit', r));
          child.kill('SIGTERM');
          const t = setTimeout(() => child.kill('SIGKILL'), 5000);
          await done;
          clearTimeout(t);
        }
        if (ownDir) await rm(dataDir, { recursive: true, force: true });
      },
    };
    return handle;
  }
}

function missingInfluxd(cause: unknown): SluiceError {
  return new SluiceError(
    'SLUICE_MISSING_DEPENDENCY',
    'influxd not found: install InfluxDB with `sudo apt-get install -y influxdb` (Debian package), or run `npm test` / `npm run demo`, which install it when run as root',
    { cause },
  );
}

/** Run an InfluxQL statement against a 1.x-compatible /query endpoint. */
export async function influxQuery(url: string, q: string, db?: string): Promise<any> {
  const params = new URLSearchParams({ q, epoch: 'ms' });
  if (db) params.set('db', db);
  const res = await fetch(`${url}/query`, { method: 'POST', body: params });
  const body: any = await res.json();
  if (!res.ok || body.error || body.results?.[0]?.error) {
    throw new Error(`InfluxQL "${q}" failed: ${body.error ?? body.results?.[0]?.error ?? res.status}`);
  }
  return body;
}

/** Count points of a measurement (by counting a field that every point has is not possible in general, so count all fields and take the max). */
export async function countPoints(url: string, db: string, measurement: string, where = ''): Promise<number> {
  const body = await influxQuery(url, `SELECT count(*) FROM "${measurement}"${where ? ` WHERE ${where}` : ''}`, db);
  const series = body.results?.[0]?.series;
  if (!series) return 0;
  let max = 0;
  for (const s of series) {
    const row = s.values[0];
    for (let i = 1; i < row.length; i++) if (typeof row[i] === 'number' && row[i] > max) max = row[i];
  }
  return max;
}
