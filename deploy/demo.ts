/**
 * `sluice demo`: the whole path on this machine. Starts a private influxd on a free loopback port,
 * the cloud and a gateway as separate processes, then a simulated fleet; shows live progress; at the
 * end prints what was sent, acknowledged and stored (counted in InfluxDB) and how to query it.
 * Everything it started is stopped on exit (Ctrl-C included); data lives in a temporary directory.
 */
import type { Command } from 'commander';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseDuration } from '../protocols/units.js';
import { runSim } from '../devices-sim/sim.js';
import { countPoints, startInfluxd, type InfluxdHandle } from './influxd.js';
import { CLOUD_READY, GATEWAY_READY, SLUICE_BIN, startSluice, type SluiceProcess } from './processes.js';

interface DemoOptions {
  duration?: string;
  devices: string;
  rate: string;
  qos: string;
  format: string;
  keep?: boolean;
}

const DB = 'sluice';
const GATEWAY = 'demo-gw';

function say(msg: string): void {
  process.stdout.write(`${msg}\n`);
}

export async function runDemo(opts: DemoOptions): Promise<number> {
  const durationMs = opts.duration ? parseDuration(opts.duration, '--duration') : undefined;
  const devices = Number(opts.devices);
  const rate = Number(opts.rate);
  const qos = Number(opts.qos) as 0 | 1;
  if (!Number.isInteger(devices) || devices < 1) throw new Error('--devices must be a positive integer');
  if (!(rate > 0)) throw new Error('--rate must be a positive number');
  if (qos !== 0 && qos !== 1) throw new Error('--qos must be 0 or 1');

  const work = await mkdtemp(join(tmpdir(), 'sluice-demo-'));
  const started: Array<{ name: string; stop: () => Promise<unknown> }> = [];
  const abort = new AbortController();
  let cleaning: Promise<void> | undefined;
  const cleanup = () =>
    (cleaning ??= (async () => {
      abort.abort();
      for (const s of started.reverse()) await s.stop().catch(() => undefined);
      await rm(work, { recursive: true, force: true });
    })());
  const simAbort = new AbortController();
  let simRunning = false;
  const onSignal = () => {
    if (simRunning) {
      // First Ctrl-C: stop the devices, let the gateway drain, print the summary.
      simRunning = false;
      say('\nstopping the devices; draining…');
      simAbort.abort();
      return;
    }
    say('\nstopping everything the demo started…');
    void cleanup().then(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  try {
    say(`sluice demo: working directory ${work}`);
    const influx: InfluxdHandle = await startInfluxd({ dataDir: join(work, 'influxdb') });
    started.push({ name: 'influxd', stop: () => influx.stop() });
    say(`  influxd      ${influx.url}  (private, data in ${influx.dataDir})`);

    const token = `demo-${Math.random().toString(36).slice(2, 12)}`;
    const cloud: SluiceProcess = await startSluice(
      ['cloud', '--listen', '127.0.0.1:0', '--data', join(work, 'cloud'), '--gateway-token', `${GATEWAY}=${token}`, '--influx', influx.url, '--influx-api', '1', '--influx-db', DB],
      CLOUD_READY,
    );
    started.push({ name: 'cloud', stop: () => cloud.stop() });
    const cloudUrl = cloud.match[1];
    say(`  cloud        ${cloudUrl}  dashboard ${cloudUrl}/  (pid ${cloud.child.pid})`);

    const gateway: SluiceProcess = await startSluice(
      ['gateway', '--id', GATEWAY, '--mqtt', '127.0.0.1:0', '--http', '127.0.0.1:0', '--data', join(work, 'gateway'), '--cloud', cloudUrl, '--cloud-token', token, '--allow-anonymous'],
      GATEWAY_READY,
    );
    started.push({ name: 'gateway', stop: () => gateway.stop() });
    const mqttUrl = gateway.match[2];
    const gwHttp = gateway.match[3];
    say(`  gateway      ${mqttUrl}  status ${gwHttp}/status  metrics ${gwHttp}/metrics  (pid ${gateway.child.pid})`);
    say(`  devices      ${devices} simulated devices × ${rate}/s, QoS ${qos}, ${opts.format}${durationMs ? `, for ${opts.duration}` : ', until Ctrl-C'}`);
    const queryCmd = `sluice query --cloud ${cloudUrl} --device sim-0001 --metric temperature --from -10m`;
    if (!durationMs) say(`\nQuery while it runs (another terminal):\n  node bin/sluice.js ${queryCmd.slice('sluice '.length)}\n`);

    let stored = 0;
    let backlog = 0;
    const poll = setInterval(() => {
      void countPoints(influx.url, DB, 'telemetry').then((n) => (stored = n)).catch(() => undefined);
      void fetch(`${gwHttp}/status`).then((r) => r.json()).then((s: any) => (backlog = s.log.backlogRecords)).catch(() => undefined);
    }, 1000);
    const tty = process.stdout.isTTY;
    let lastLine = 0;
    simRunning = true;
    const result = await runSim({
      url: mqttUrl,
      devices,
      rate,
      qos,
      format: opts.format as 'json' | 'cbor',
      durationMs,
      prefix: 'sim',
      signal: simAbort.signal,
      onProgress: (s: any) => {
        const line = `demo: sent ${s.sent}, acked ${s.acked}, errors ${s.errors}, gateway backlog ${backlog}, stored in InfluxDB ${stored}`;
        if (tty) process.stdout.write(`\r${line}   `);
        else if (Date.now() - lastLine > 5000) {
          lastLine = Date.now();
          say(line);
        }
      },
    } as any);
    simRunning = false;
    if (tty) process.stdout.write('\n');
    clearInterval(poll);

    // Let the gateway drain: every acknowledged reading should reach InfluxDB.
    const deadline = Date.now() + 30_000;
    for (;;) {
      stored = await countPoints(influx.url, DB, 'telemetry').catch(() => stored);
      if (stored >= result.acked || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    say('');
    say(`sent      ${result.sent} readings from ${devices} devices`);
    say(`acked     ${result.acked} (PUBACK after the gateway's durable commit)`);
    say(`stored    ${stored} points in InfluxDB measurement "telemetry" (database "${DB}")`);
    say(stored === result.acked ? 'every acknowledged reading arrived exactly once.' : `MISMATCH: ${result.acked - stored} acknowledged readings not (yet) stored`);
    say('');
    if (opts.keep) say(`Dashboard: ${cloudUrl}/`);
    say('Query a series:');
    say(`  node bin/sluice.js ${queryCmd.slice('sluice '.length)}`);
    say(`  curl '${cloudUrl}/api/v1/series?device=sim-0001&metric=temperature&from=-10m&every=10s&fn=mean'`);
    say(`  curl -G '${influx.url}/query' --data-urlencode 'db=${DB}' --data-urlencode 'q=SELECT count(*) FROM telemetry'`);
    // Show the query working before everything stops.
    const q = spawnSync(process.execPath, [SLUICE_BIN, ...queryCmd.split(' ').slice(1), '--every', '10s', '--fn', 'mean'], { encoding: 'utf8' });
    say(`\n$ ${queryCmd} --every 10s --fn mean`);
    say((q.stdout || q.stderr).split('\n').slice(0, 14).join('\n'));
    if (!opts.keep) say('(run with --keep to leave everything running and query it yourself)');
    if (opts.keep) {
      say('\nEverything keeps running: press Ctrl-C to stop.');
      await new Promise<void>((resolve) => abort.signal.addEventListener('abort', () => resolve()));
    }
    return stored === result.acked ? 0 : 1;
  } finally {
    await cleanup();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

export function register(program: Command): void {
  program
    .command('demo')
    .description('run the whole path locally: private influxd, cloud, gateway and simulated devices')
    .option('--duration <duration>', 'how long the devices publish, e.g. 30s (default: until Ctrl-C)')
    .option('--devices <n>', 'number of simulated devices', '20')
    .option('--rate <n>', 'readings per second per device', '2')
    .option('--qos <0|1>', 'MQTT QoS of the devices', '1')
    .option('--format <json|cbor>', 'payload format', 'json')
    .option('--keep', 'after --duration, keep everything running until Ctrl-C')
    .action(async (opts: DemoOptions) => {
      try {
        process.exitCode = await runDemo(opts);
      } catch (err) {
        process.stderr.write(`sluice demo: ${(err as Error).message}\n`);
        process.exitCode = 1;
      }
    });
}
