/**
 * A private Prometheus (Debian package `prometheus`) on a free loopback port, scraping the given
 * targets every second, with its TSDB in a temporary directory that stop() removes.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { freePort, waitFor } from '../../deploy/influxd.js';
import { tempDir } from './tmp.js';

export interface PrometheusHandle {
  url: string;
  /** Instant PromQL query: the result vector as [labels, value] pairs. */
  query(q: string): Promise<Array<{ metric: Record<string, string>; value: number }>>;
  output(): string;
  stop(): Promise<void>;
}

export async function startPrometheus(jobs: Record<string, string[]>): Promise<PrometheusHandle> {
  const dir = await tempDir('sluice-prometheus-');
  const config = join(dir.path, 'prometheus.yml');
  const lines = ['global:', '  scrape_interval: 1s', '  scrape_timeout: 1s', '  evaluation_interval: 1s', 'scrape_configs:'];
  for (const [job, targets] of Object.entries(jobs)) {
    lines.push(`  - job_name: ${job}`, '    static_configs:', `      - targets: [${targets.map((t) => `'${t}'`).join(', ')}]`);
  }
  await writeFile(config, `${lines.join('\n')}\n`);
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    const child: ChildProcess = spawn(
      'prometheus',
      [
        `--config.file=${config}`,
        `--storage.tsdb.path=${join(dir.path, 'data')}`,
        `--web.listen-address=127.0.0.1:${port}`,
        '--storage.tsdb.retention.time=1h',
        '--log.level=warn',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    let exited: number | null | undefined;
    let spawnError: Error | undefined;
    child.stdout!.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-8000)));
    child.stderr!.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-8000)));
    child.on('error', (err) => (spawnError = err));
    child.on('exit', (code) => (exited = code));
    const url = `http://127.0.0.1:${port}`;
    const stop = async () => {
      if (exited === undefined && !spawnError) {
        const done = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 5000);
        await done;
        clearTimeout(t);
      }
    };
    try {
      await waitFor(
        'prometheus to be ready',
        async () => {
          if (spawnError) throw new Error(`cannot start prometheus (apt-get install prometheus): ${spawnError.message}`);
          if (exited !== undefined) throw new Error(`prometheus exited with ${exited}: ${out.slice(-1500)}`);
          const res = await fetch(`${url}/-/ready`).catch(() => undefined);
          return res?.status === 200;
        },
        { timeoutMs: 30_000, intervalMs: 100 },
      );
    } catch (err) {
      await stop();
      if (attempt < 2 && exited !== undefined && /address already in use/.test(out)) continue;
      await dir.remove();
      throw err;
    }
    return {
      url,
      output: () => out,
      async query(q) {
        const res = await fetch(`${url}/api/v1/query?${new URLSearchParams({ query: q })}`);
        const body = (await res.json()) as { status: string; error?: string; data?: { result: Array<{ metric: Record<string, string>; value: [number, string] }> } };
        if (body.status !== 'success') throw new Error(`PromQL ${q} failed: ${body.error}`);
        return body.data!.result.map((r) => ({ metric: r.metric, value: Number(r.value[1]) }));
      },
      async stop() {
        await stop();
        await dir.remove();
      },
    };
  }
}
