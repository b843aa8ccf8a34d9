/**
 * Start a private VictoriaMetrics (Debian `victoria-metrics`) on a free loopback port: a real
 * `/api/v2/write` server for testing the InfluxDB v2 writer. Data goes to a temporary directory that
 * stop() removes.
 *
 * VictoriaMetrics quirks worth knowing in tests:
 * - it names each series `<measurement>_<field>` and keeps tags as labels; `org`/`bucket` are
 *   ignored by this version (1.79), so the bucket does not become a label;
 * - it stores milliseconds: two points in the same millisecond collapse (InfluxDB keeps ns);
 * - data older than the retention period (default 1 month) is dropped silently: write recent times;
 * - rows become visible to /api/v1/export only after /internal/force_flush (or a short while);
 * - it answers 204 even for unparsable lines (it logs and skips them).
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, waitFor } from '../../deploy/influxd.js';

export const VICTORIA_BIN = process.env.SLUICE_VICTORIA ?? '/usr/bin/victoria-metrics';

export interface VictoriaHandle {
  url: string;
  pid: number;
  stop(): Promise<void>;
}

export interface ExportedSeries {
  metric: Record<string, string>;
  values: number[];
  timestamps: number[];
}

export async function startVictoriaMetrics(): Promise<VictoriaHandle> {
  const dataDir = await mkdtemp(join(tmpdir(), 'sluice-victoria-'));
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    const child = spawn(VICTORIA_BIN, [`-httpListenAddr=127.0.0.1:${port}`, `-storageDataPath=${dataDir}`, '-loggerLevel=ERROR'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let exited: number | null | undefined;
    let spawnErr: Error | undefined;
    let output = '';
    child.on('error', (err) => (spawnErr = err));
    child.on('exit', (code) => (exited = code));
    child.stderr!.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-2000)));
    const url = `http://127.0.0.1:${port}`;
    try {
      await waitFor(
        'victoria-metrics /health',
        async () => {
          if (spawnErr) throw spawnErr;
          if (exited !== undefined) throw new Error(`victoria-metrics exited with ${exited}: ${output.trim()}`);
          const res = await fetch(`${url}/health`).catch(() => undefined);
          return res?.status === 200;
        },
        { timeoutMs: 20_000, intervalMs: 50 },
      );
    } catch (err) {
      child.kill('SIGKILL');
      if (spawnErr || attempt >= 2) {
        await rm(dataDir, { recursive: true, force: true });
        throw err;
      }
      continue;
    }
    return {
      url,
      pid: child.pid!,
      async stop() {
        if (exited === undefined) {
          const done = new Promise((r) => child.once('exit', r));
          child.kill('SIGTERM');
          const t = setTimeout(() => child.kill('SIGKILL'), 5000);
          await done;
          clearTimeout(t);
        }
        await rm(dataDir, { recursive: true, force: true });
      },
    };
  }
}

/** Series matching a PromQL selector, e.g. `{__name__=~"telemetry_.*",device="d1"}`. */
export async function victoriaExport(url: string, match: string): Promise<ExportedSeries[]> {
  await fetch(`${url}/internal/force_flush`).then((r) => r.arrayBuffer());
  const res = await fetch(`${url}/api/v1/export?${new URLSearchParams({ 'match[]': match })}`);
  if (!res.ok) throw new Error(`export failed: HTTP ${res.status} ${await res.text()}`);
  const text = await res.text();
  return text
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as ExportedSeries);
}
