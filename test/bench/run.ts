/**
 * `npm run bench [-- --quick] [-- --out FILE] [-- --only name,name]`: Sluice against what a user would
 * pick instead, in the same run, so every figure is also a ratio that holds on a noisy machine.
 * Separate processes for load generator (`sluice sim --max`), gateway, cloud, InfluxDB and the
 * baselines (bare aedes, Debian's mosquitto). Progress on stderr; JSON to --out; Markdown on stdout.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm, stat, writeFile, mkdir } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { countPoints, freePort, influxQuery, startInfluxd, type InfluxdHandle } from '../../deploy/influxd.js';
import { CLOUD_READY, GATEWAY_READY, ROOT, SLUICE_BIN, startSluice, type SluiceProcess } from '../../deploy/processes.js';
import { encodeBatch, type RawRecord } from '../../protocols/batch.js';
import { codecBench } from './codecs.js';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const outFile = args.includes('--out') ? args[args.indexOf('--out') + 1] : join(ROOT, 'bench-results', quick ? 'quick.json' : 'full.json');
const only = args.includes('--only') ? new Set(args[args.indexOf('--only') + 1].split(',')) : undefined;

const P = {
  ingestSeconds: quick ? 4 : 6,
  ingestWarmupSeconds: quick ? 1 : 2,
  ingestRounds: quick ? 1 : 7,
  devices: 100,
  window: 16,
  drainReadings: quick ? 30_000 : 500_000,
  drainRounds: quick ? 1 : 7,
  backlogReadings: quick ? 60_000 : 1_000_000,
  nominalDevices: quick ? 300 : 1000,
  nominalSeconds: quick ? 10 : 25,
  latencySamples: quick ? 40 : 200,
  cloudPoints: quick ? 50_000 : 300_000,
  cloudRounds: quick ? 1 : 3,
};

const results: Record<string, any> = { quick, params: P, machine: { cpus: (await import('node:os')).cpus().length, node: process.version }, started: new Date().toISOString() };
const t0 = Date.now();
function progress(msg: string): void {
  process.stderr.write(`[bench ${((Date.now() - t0) / 1000).toFixed(0).padStart(4)}s] ${msg}\n`);
}
const want = (name: string) => !only || only.has(name);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let work: string;
let influx: InfluxdHandle;
const cleanups: Array<() => Promise<unknown>> = [];

// ---------- helpers ----------

/**
 * Sustained QoS 1 rate (PUBACKs/s): `ingestSeconds` measured after `ingestWarmupSeconds` in which
 * the devices connect and the broker's code warms up, without the final drain (sim --warmup).
 */
async function qos1Rate(url: string, pid: number): Promise<{ rate: number; cpuUs: number }> {
  const c0 = procStat(pid).cpuMs;
  const r = await runSimProcess(url, 1, P.ingestSeconds + P.ingestWarmupSeconds, ['--warmup', `${P.ingestWarmupSeconds}s`]);
  if (!r.steady) throw new Error(`sim reported no steady rate: ${JSON.stringify(r).slice(0, 300)}`);
  // The broker's CPU (all its threads) per acknowledged reading over the whole run.
  return { rate: r.steady.rate, cpuUs: ((procStat(pid).cpuMs - c0) * 1000) / r.acked };
}

async function runSimProcess(url: string, qos: 0 | 1, seconds: number, extra: string[] = []): Promise<any> {
  const child = spawn(process.execPath, [SLUICE_BIN, 'sim', '--url', url, '--devices', String(P.devices), '--max', '--window', String(P.window), '--qos', String(qos), '--format', 'json', '--duration', `${seconds}s`, '--json', '--drain-timeout', '10s', ...extra], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err = (err + d).slice(-4000)));
  const code = await new Promise<number>((r) => child.on('exit', (c) => r(c ?? 1)));
  const line = out.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(line);
  } catch {
    throw new Error(`sim exited ${code} without a JSON result: ${err}`);
  }
}

interface ReferenceBroker {
  url: string;
  pid: number;
  count(): Promise<number>;
  stop(): Promise<void>;
}

/**
 * A reference broker in its own process: test/bench/bare-aedes.ts (bare aedes, no Sluice pipeline)
 * or test/bench/floor-mqtt.ts (the least a Node.js MQTT broker can do). Plain node, like the
 * compiled gateway: both files are kept free of TypeScript syntax, so their figures (CPU, RSS) carry
 * no tsx loader.
 */
async function startReference(file: string): Promise<ReferenceBroker> {
  const source = readFileSync(join(ROOT, file), 'utf8');
  const child = spawn(process.execPath, ['--input-type=module', '-e', source], { cwd: ROOT, stdio: ['pipe', 'pipe', 'inherit'] });
  let buf = '';
  const waiters: Array<(n: number) => void> = [];
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        const m = /listening on (\S+)/.exec(line);
        if (m) resolve(m[1]);
        const c = /^count (\d+)/.exec(line);
        if (c) waiters.shift()?.(Number(c[1]));
      }
    });
    child.on('exit', (c) => reject(new Error(`${file} exited ${c}`)));
  });
  return {
    url,
    pid: child.pid!,
    count: () => new Promise((r) => { waiters.push(r); child.stdin.write('count\n'); }),
    stop: async () => { child.kill('SIGTERM'); await new Promise((r) => child.on('exit', r)); },
  };
}

const startBareAedes = (): Promise<ReferenceBroker> => startReference('test/bench/bare-aedes.ts');

async function startMosquitto(): Promise<{ url: string; pid: number; stop(): Promise<void> }> {
  const port = await freePort();
  const conf = join(work, `mosquitto-${port}.conf`);
  await writeFile(conf, `listener ${port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_inflight_messages 0\nmax_queued_messages 100000\nlog_dest none\n`);
  const child = spawn('mosquitto', ['-c', conf], { stdio: 'ignore' });
  const url = `mqtt://127.0.0.1:${port}`;
  const mqtt = await import('mqtt');
  for (let i = 0; ; i++) {
    try {
      const c = await mqtt.connectAsync(url, { reconnectPeriod: 0, connectTimeout: 500 });
      await c.endAsync();
      break;
    } catch (err) {
      if (i > 100) throw new Error(`mosquitto did not start: ${(err as Error).message}`);
      await sleep(50);
    }
  }
  return { url, pid: child.pid!, stop: async () => { child.kill('SIGTERM'); await new Promise((r) => child.on('exit', r)); } };
}

interface Stack {
  cloud?: SluiceProcess;
  cloudUrl: string;
  gateway: SluiceProcess;
  mqttUrl: string;
  http: string;
  db: string;
  dataDir: string;
  startCloud(): Promise<void>;
  stopCloud(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * The gateway runs with the environment deploy/systemd/sluice-gateway.service gives it, read from
 * the unit itself: its NODE_OPTIONS (V8 flags: the semi-space size) as node arguments, and
 * MALLOC_ARENA_MAX. (The old generation's growth the gateway tunes itself: gateway/cli.ts
 * tuneHeap.) SLUICE_BENCH_NODE_FLAGS adds flags for an A/B run, e.g. `--heap-growing-percent=0`
 * turns that tuning off, `--max-semi-space-size=2` overrides the unit's.
 */
const UNIT = readFileSync(join(ROOT, 'deploy/systemd/sluice-gateway.service'), 'utf8');
const unitEnv = (name: string): string => {
  const m = new RegExp(`^Environment=${name}=(.*)$`, 'm').exec(UNIT);
  if (!m) throw new Error(`deploy/systemd/sluice-gateway.service sets no ${name}`);
  return m[1].trim();
};
const GATEWAY_NODE_FLAGS = [...unitEnv('NODE_OPTIONS').split(' '), ...(process.env.SLUICE_BENCH_NODE_FLAGS ?? '').split(' ')].filter(Boolean);
const GATEWAY_ENV = { MALLOC_ARENA_MAX: unitEnv('MALLOC_ARENA_MAX') };

let stackN = 0;
async function startStack(opts: { cloud?: boolean; gatewayArgs?: string[] } = {}): Promise<Stack> {
  const n = ++stackN;
  const db = `bench${n}`;
  const dir = join(work, `stack${n}`);
  const cloudPort = await freePort();
  const token = `t${n}`;
  const cloudArgs = ['cloud', '--listen', `127.0.0.1:${cloudPort}`, '--data', join(dir, 'cloud'), '--gateway-token', `gw${n}=${token}`, '--influx', influx.url, '--influx-api', '1', '--influx-db', db, '--log-level', 'warn'];
  const s: Stack = {
    cloudUrl: `http://127.0.0.1:${cloudPort}`,
    gateway: undefined as any,
    mqttUrl: '',
    http: '',
    db,
    dataDir: join(dir, 'gateway'),
    async startCloud() { s.cloud = await startSluice(cloudArgs, CLOUD_READY); },
    async stopCloud() { await s.cloud?.stop(); s.cloud = undefined; },
    async stop() { await s.gateway.stop(); await s.cloud?.stop(); },
  };
  if (opts.cloud !== false) await s.startCloud();
  s.gateway = await startSluice(['gateway', '--id', `gw${n}`, '--mqtt', '127.0.0.1:0', '--http', '127.0.0.1:0', '--data', s.dataDir, '--cloud', s.cloudUrl, '--cloud-token', token, '--allow-anonymous', '--log-level', 'warn', '--max-backoff', '500ms', ...(opts.gatewayArgs ?? [])], GATEWAY_READY, { nodeArgs: GATEWAY_NODE_FLAGS, env: GATEWAY_ENV });
  s.mqttUrl = s.gateway.match[2];
  s.http = s.gateway.match[3];
  return s;
}

async function gwStatus(s: Stack): Promise<any> {
  return (await fetch(`${s.http}/status`)).json();
}

function procStat(pid: number): { cpuMs: number; rssMb: number; writeBytes: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  const rssPages = Number(fields[21]);
  let writeBytes = 0;
  try {
    writeBytes = Number(/write_bytes: (\d+)/.exec(readFileSync(`/proc/${pid}/io`, 'utf8'))?.[1] ?? 0);
  } catch { /* not readable */ }
  return { cpuMs: (ticks * 1000) / 100, rssMb: (rssPages * 4096) / 1024 / 1024, writeBytes };
}

/** Sample the peak RSS of a process while `work` runs. */
async function peakRss<T>(pid: number, work: Promise<T>): Promise<{ value: T; peakMb: number }> {
  let peak = procStat(pid).rssMb;
  let done = false;
  const sampler = (async () => { while (!done) { peak = Math.max(peak, procStat(pid).rssMb); await sleep(100); } })();
  const value = await work;
  done = true;
  await sampler;
  return { value, peakMb: peak };
}

async function dirBytes(dir: string): Promise<number> {
  let total = 0;
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    total += e.isDirectory() ? await dirBytes(p) : (await stat(p)).size;
  }
  return total;
}

async function waitFor(what: string, probe: () => Promise<boolean>, timeoutMs: number, intervalMs = 100): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(intervalMs);
  }
}

/** Fill a gateway's log with `n` readings while its cloud is down; returns the fill rate. */
async function fillBacklog(s: Stack, n: number, label: string): Promise<number> {
  const perDevice = Math.ceil(n / P.devices);
  const started = Date.now();
  const child = spawn(process.execPath, [SLUICE_BIN, 'sim', '--url', s.mqttUrl, '--devices', String(P.devices), '--max', '--window', '64', '--qos', '1', '--format', 'cbor', '--count', String(perDevice), '--json', '--drain-timeout', '30s'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'ignore'] });
  const timer = setInterval(() => void gwStatus(s).then((st) => progress(`  ${label}: backlog ${st.log.backlogRecords} / ${perDevice * P.devices}`)).catch(() => undefined), 5000);
  await new Promise((r) => child.on('exit', r));
  clearInterval(timer);
  const st = await gwStatus(s);
  return st.log.backlogRecords / ((Date.now() - started) / 1000);
}

// ---------- scenarios ----------

const median = (xs: number[]): number => {
  const a = [...xs].sort((x, y) => x - y);
  return a.length % 2 ? a[(a.length - 1) / 2] : (a[a.length / 2 - 1] + a[a.length / 2]) / 2;
};

/**
 * One ingest run against a Sluice gateway: readings/s accepted (QoS 1: PUBACKed; QoS 0: committed)
 * and QoS 0 readings shed. `cloud`: the whole stack on this host instead of the gateway alone.
 */
async function ingestSluice(qos: 0 | 1, cloud: boolean): Promise<{ rate: number; shed: number; cpuUs: number; commits?: { perGroup: number; writeMeanMs: number; writeMaxMs: number } }> {
  const s = await startStack({ cloud });
  const pid = s.gateway.child.pid!;
  try {
    if (qos === 1) {
      const r = await qos1Rate(s.mqttUrl, pid);
      // Readings per group commit (one LevelDB write, one fsync each) and how long those writes
      // took: the gateway's CPU per reading depends on the first, its PUBACKs wait for the second
      // (bare aedes waits for no disk), so each round's figure comes with both.
      const log = (await gwStatus(s)).log;
      const groups = Math.max(1, log.groupCommits);
      return { ...r, shed: 0, commits: { perGroup: log.committed / groups, writeMeanMs: log.commitWriteMsTotal / groups, writeMaxMs: log.commitWriteMsMax } };
    }
    const before = (await gwStatus(s)).ingest.committed;
    const c0 = procStat(pid).cpuMs;
    const t = Date.now();
    await runSimProcess(s.mqttUrl, 0, P.ingestSeconds);
    await waitFor('QoS 0 commits to settle', async () => (await gwStatus(s)).broker.pendingCommits === 0, 30_000).catch(async () =>
      progress(`  warning: ${(await gwStatus(s)).broker.pendingCommits} QoS 0 commits still pending after 30 s`),
    );
    const st = await gwStatus(s);
    const n = st.ingest.committed - before;
    return { rate: n / ((Date.now() - t) / 1000), shed: st.ingest.dropped.shed_qos0 ?? 0, cpuUs: ((procStat(pid).cpuMs - c0) * 1000) / n };
  } finally {
    await s.stop();
  }
}

/** The same run against bare aedes (readings/s it received). */
async function ingestBare(qos: 0 | 1): Promise<{ rate: number; cpuUs: number }> {
  const b = await startBareAedes();
  try {
    if (qos === 1) return await qos1Rate(b.url, b.pid);
    const before = await b.count();
    const c0 = procStat(b.pid).cpuMs;
    const t = Date.now();
    await runSimProcess(b.url, 0, P.ingestSeconds);
    const n = (await b.count()) - before;
    return { rate: n / ((Date.now() - t) / 1000), cpuUs: ((procStat(b.pid).cpuMs - c0) * 1000) / n };
  } finally {
    await b.stop();
  }
}

async function benchIngest(qos: 0 | 1): Promise<void> {
  const key = `ingest_qos${qos}`;
  progress(`${key}: ${P.devices} devices, --max, ${P.ingestRounds} × (Sluice, bare aedes) alternating, ${P.ingestSeconds}s each${qos === 1 ? ` after ${P.ingestWarmupSeconds}s warm-up` : ''}`);
  const r: Record<string, number | number[]> = {};
  // Sluice as deployed: the gateway alone on this host (durable log, group commit, fsync), its cloud
  // and InfluxDB elsewhere. Here "elsewhere" is emulated by a cloud that is not running: the
  // forwarder retries in the background and the backlog grows on disk, as during an outage.
  // Sluice and bare aedes alternate, and the ratio is the median of the rounds' ratios: this
  // machine's speed drifts by tens of percent within minutes (bare aedes alone has measured 38k to
  // 62k readings/s on different runs), and a ratio of neighbouring runs is what holds.
  const sluice: number[] = [];
  const bare: number[] = [];
  const shed: number[] = [];
  // CPU (all threads) per reading of the gateway over bare aedes', per round: how much more work
  // Sluice does per reading, a figure the machine's drifting speed moves far less than the rates.
  const cpuRatios: number[] = [];
  const perGroup: number[] = [];
  const writeMean: number[] = [];
  const writeMax: number[] = [];
  for (let i = 0; i < P.ingestRounds; i++) {
    const s = await ingestSluice(qos, false);
    const c = s.commits;
    if (c) {
      perGroup.push(round(c.perGroup));
      writeMean.push(round(c.writeMeanMs, 2));
      writeMax.push(round(c.writeMaxMs, 1));
    }
    sluice.push(s.rate);
    shed.push(s.shed);
    const b = await ingestBare(qos);
    bare.push(b.rate);
    cpuRatios.push(s.cpuUs / b.cpuUs);
    progress(`  round ${i + 1}: sluice ${s.rate.toFixed(0)}/s${qos === 0 ? ` (shed ${s.shed})` : ''}, bare aedes ${bare[i].toFixed(0)}/s, ratio ${(s.rate / bare[i]).toFixed(3)}; CPU per reading ${s.cpuUs.toFixed(1)} / ${b.cpuUs.toFixed(1)} µs${c ? `; ${c.perGroup.toFixed(0)} readings per group commit, writes ${c.writeMeanMs.toFixed(2)} ms mean / ${c.writeMaxMs.toFixed(1)} ms slowest` : ''}`);
  }
  r.cpu_per_reading_ratio = round(median(cpuRatios), 3);
  r.cpu_per_reading_ratio_rounds = cpuRatios.map((x) => round(x, 3));
  if (perGroup.length > 0) {
    r.readings_per_group_commit_rounds = perGroup;
    r.group_write_ms_mean_rounds = writeMean;
    r.group_write_ms_max_rounds = writeMax;
  }
  r.sluice = median(sluice);
  r.bare_aedes = median(bare);
  r.ratio = median(sluice.map((x, i) => x / bare[i]));
  r.ratio_rounds = sluice.map((x, i) => round(x / bare[i], 3));
  if (qos === 0) r.sluice_shed = Math.max(...shed);
  // The whole stack on this one 2-core host (gateway + cloud + influxd + load generator all
  // sharing the CPUs), reported separately; full runs only (--quick must stay under 90 s).
  if (!quick) {
    const same = await ingestSluice(qos, true);
    r.sluice_same_host_stack = same.rate;
    if (qos === 0) r.sluice_same_host_stack_shed = same.shed;
    progress(`  sluice_same_host_stack ${same.rate.toFixed(0)}/s`);
  }
  if (qos === 1) {
    const m = await startMosquitto();
    const { rate } = await qos1Rate(m.url, m.pid);
    r.mosquitto = rate;
    await m.stop();
    progress(`  mosquitto ${rate.toFixed(0)}/s`);
  }
  results[key] = r;
}

async function benchLatency(): Promise<void> {
  progress(`e2e_latency_ms: background load 1,000 readings/s, ${P.latencySamples} probe readings`);
  const s = await startStack();
  const bg = spawn(process.execPath, [SLUICE_BIN, 'sim', '--url', s.mqttUrl, '--devices', '100', '--rate', '10', '--qos', '1', '--duration', '600s', '--prefix', 'bg'], { cwd: ROOT, stdio: 'ignore' });
  const mqtt = await import('mqtt');
  const probe = await mqtt.connectAsync(s.mqttUrl, { clientId: 'probe' });
  await sleep(1500);
  const lat: number[] = [];
  for (let i = 0; i < P.latencySamples; i++) {
    const ts = Date.now();
    const sent = performance.now();
    await probe.publishAsync('devices/probe/telemetry', JSON.stringify({ ts, seq: i + 1, values: { v: i } }), { qos: 1 });
    for (;;) {
      const body = await influxQuery(influx.url, `SELECT v FROM telemetry WHERE device='probe' AND time >= ${ts}ms AND time < ${ts + 1}ms`, s.db).catch(() => undefined);
      if (body?.results?.[0]?.series) break;
      await sleep(5);
    }
    lat.push(performance.now() - sent);
  }
  await probe.endAsync();
  bg.kill('SIGINT');
  await new Promise((r) => bg.on('exit', r));
  await s.stop();
  lat.sort((a, b) => a - b);
  const pct = (p: number) => lat[Math.min(lat.length - 1, Math.floor((p / 100) * lat.length))];
  results.e2e_latency_ms = { p50: round(pct(50)), p99: round(pct(99)), max: round(lat[lat.length - 1]), samples: lat.length };
  progress(`  p50 ${pct(50).toFixed(1)} ms, p99 ${pct(99).toFixed(1)} ms`);
}

/**
 * The direct baseline: `requests` line-protocol bodies (`body(k)`) POSTed one after the other to a
 * fresh database `db` of the bench's InfluxDB; `points` per second over the requests only.
 */
async function timeDirectWrites(db: string, points: number, requests: number, body: (k: number) => string): Promise<number> {
  await influxQuery(influx.url, `CREATE DATABASE ${db}`);
  const t = Date.now();
  for (let k = 0; k < requests; k++) {
    const res = await fetch(`${influx.url}/write?db=${db}&precision=ns`, { method: 'POST', body: body(k) });
    if (res.status !== 204) throw new Error(`direct write failed: ${res.status} ${await res.text()}`);
  }
  return points / ((Date.now() - t) / 1000);
}

/**
 * One drain round: a backlog of `n` readings with the cloud down, drained into InfluxDB; then the
 * same number of points written straight to InfluxDB. Returns both rates (points/s) and more.
 */
async function drainRound(n: number, k: number): Promise<{ readings: number; stored: number; fill: number; sluice: number; direct: number; formatting: number }> {
  const s = await startStack({ cloud: false });
  const fill = await fillBacklog(s, n, 'drain fill');
  const backlog = (await gwStatus(s)).log.backlogRecords;
  // The drain is timed from the first acknowledged batch to the last one, with the gateway's own
  // clock (forwarder.lastAckAt, recordsForwarded in /status): the cloud's start and the gateway's
  // retry delay before it notices the cloud is back are start-up, not drain rate. Timing with the
  // gateway's stamps, not when a poll saw the change, lets the bench poll every 100 ms: each /status
  // costs the gateway ~0.6 ms of CPU, which a 20 ms poll took from the drain it measured.
  await s.startCloud();
  let start: { acks: number; at: number } | undefined;
  let last = { acks: 0, at: 0 };
  await waitFor('backlog drained', async () => {
    const st = await gwStatus(s);
    last = { acks: st.forwarder.recordsForwarded, at: st.forwarder.lastAckAt ?? 0 };
    if (start === undefined && last.acks > 0) start = last;
    return st.log.backlogRecords === 0;
  }, 30 * 60_000, 100);
  const from = last.acks - (start?.acks ?? 0);
  const sluice = from / (Math.max(1, last.at - (start?.at ?? 0)) / 1000);
  const stored = await countPoints(influx.url, s.db, 'telemetry');
  await s.stop();
  // Direct: the same number of points, line protocol, 5,000 per request, sequential. The bodies are
  // formatted before the clock starts, as Sluice's backlog was stored before its drain: what is
  // timed is InfluxDB taking them (formatting them here took ~20 % of that time).
  const base = Date.now() - 3_600_000;
  const bodyOf = (i: number): string => {
    const lines: string[] = [];
    for (let j = i; j < Math.min(backlog, i + 5000); j++) {
      lines.push(`telemetry,gateway=direct,device=d${String(j % P.devices).padStart(4, '0')} temperature=${(20 + (j % 100) / 10).toFixed(2)},humidity=${(40 + (j % 50)).toFixed(1)},door_open=${j % 7 === 0} ${(base + j) * 1_000_000 + (j % 1_000_000)}`);
    }
    return lines.join('\n');
  };
  const bodies: string[] = [];
  for (let i = 0; i < backlog; i += 5000) bodies.push(bodyOf(i));
  const direct = await timeDirectWrites(`direct_drain${k}`, backlog, bodies.length, (j) => bodies[j]);
  // For context only: a plain script that formats each batch and then posts it, one after the
  // other (what the direct figure was before; not the target's baseline).
  const formatting = await timeDirectWrites(`direct_drain_formatting${k}`, backlog, bodies.length, (j) => bodyOf(j * 5000));
  progress(`  round ${k}: sluice drained ${backlog} (stored ${stored}), ${from} of them at ${sluice.toFixed(0)}/s after the first batch; direct ${direct.toFixed(0)}/s, ratio ${(sluice / direct).toFixed(3)} (a writer formatting each batch before posting it: ${formatting.toFixed(0)}/s)`);
  return { readings: backlog, stored, fill, sluice, direct, formatting };
}

async function benchDrain(): Promise<void> {
  const n = P.drainReadings;
  progress(`drain: ${n} readings backlog with the cloud down, then drained into InfluxDB; ${P.drainRounds} round(s), each followed by the same points written straight to InfluxDB`);
  // Rounds, and the median of their ratios: one pass of each is a few seconds, and this machine's
  // speed drifts by more than the figure's margin from one minute to the next.
  const rounds: Array<Awaited<ReturnType<typeof drainRound>>> = [];
  for (let k = 1; k <= P.drainRounds; k++) rounds.push(await drainRound(n, k));
  const ratios = rounds.map((r) => round(r.sluice / r.direct, 3));
  results.drain = {
    readings: Math.min(...rounds.map((r) => r.readings)),
    stored: Math.min(...rounds.map((r) => r.stored)),
    fill_rate: round(median(rounds.map((r) => r.fill))),
    sluice: round(median(rounds.map((r) => r.sluice))),
    direct: round(median(rounds.map((r) => r.direct))),
    ratio: median(ratios),
    ratio_rounds: ratios,
    direct_formatting_each_batch: round(median(rounds.map((r) => r.formatting))),
    ratio_to_formatting_writer: median(rounds.map((r) => round(r.sluice / r.formatting, 3))),
  };
}

async function benchCloudIngest(): Promise<void> {
  const n = P.cloudPoints;
  progress(`cloud_ingest: ${n} points in 5,000-record batches through the cloud vs direct; ${P.cloudRounds} round(s) alternating`);
  const base = Date.now() - 7_200_000;
  const makeRecs = (from: number, to: number): RawRecord[] => {
    const recs: RawRecord[] = [];
    for (let j = from; j < to; j++) recs.push({ seq: j + 1, dev: `d${String(j % P.devices).padStart(4, '0')}`, ts: base + j, vals: { temperature: 20 + (j % 100) / 10, humidity: 40 + (j % 50), door_open: j % 7 === 0 } });
    return recs;
  };
  const bodies: Buffer[] = [];
  for (let i = 0; i < n; i += 5000) bodies.push(encodeBatch({ gw: 'gwc', inc: 'bench', first: i + 1, last: Math.min(n, i + 5000), recs: makeRecs(i, Math.min(n, i + 5000)), aggs: [] }));
  // Formatted before the clock starts, as the cloud's batch bodies were encoded before its clock.
  const lineBodies: string[] = [];
  for (let i = 0; i < n; i += 5000) lineBodies.push(makeRecs(i, Math.min(n, i + 5000)).map((r) => `telemetry,device=${r.dev},gateway=gwc door_open=${r.vals.door_open},humidity=${r.vals.humidity},temperature=${r.vals.temperature} ${r.ts * 1_000_000 + (r.seq % 1_000_000)}`).join('\n'));
  const sluice: number[] = [];
  const direct: number[] = [];
  for (let k = 1; k <= P.cloudRounds; k++) {
    // A fresh cloud and database each round: every batch is new to it.
    const cloudPort = await freePort();
    const cloud = await startSluice(['cloud', '--listen', `127.0.0.1:${cloudPort}`, '--data', join(work, `cloud-ingest${k}`), '--gateway-token', 'gwc=tc', '--influx', influx.url, '--influx-api', '1', '--influx-db', `cloud_ingest${k}`, '--log-level', 'warn'], CLOUD_READY);
    const t = Date.now();
    for (const body of bodies) {
      const res = await fetch(`http://127.0.0.1:${cloudPort}/api/v1/batches`, { method: 'POST', headers: { 'content-type': 'application/cbor', authorization: 'Bearer tc' }, body: body as any });
      if (res.status !== 200) throw new Error(`cloud refused a batch: ${res.status} ${await res.text()}`);
    }
    sluice.push(n / ((Date.now() - t) / 1000));
    await cloud.stop();
    direct.push(await timeDirectWrites(`cloud_direct${k}`, n, lineBodies.length, (j) => lineBodies[j]));
    progress(`  round ${k}: cloud ${sluice[k - 1].toFixed(0)}/s, direct ${direct[k - 1].toFixed(0)}/s, ratio ${(sluice[k - 1] / direct[k - 1]).toFixed(3)}`);
  }
  const ratios = sluice.map((x, i) => round(x / direct[i], 3));
  results.cloud_ingest = { points: n, sluice: round(median(sluice)), direct: round(median(direct)), ratio: median(ratios), ratio_rounds: ratios };
}

async function benchResources(): Promise<void> {
  progress(`gateway_rss_mb / cpu_us_per_reading: idle, then ${P.nominalDevices} devices × 1 reading/s for ${P.nominalSeconds}s (CPU over the steady state)`);
  const s = await startStack();
  const pid = s.gateway.child.pid!;
  await sleep(1000);
  const idle = procStat(pid).rssMb;
  const nominalSim = (url: string) => spawn(process.execPath, [SLUICE_BIN, 'sim', '--url', url, '--devices', String(P.nominalDevices), '--rate', '1', '--qos', '1', '--duration', `${P.nominalSeconds}s`, '--prefix', 'nom'], { cwd: ROOT, stdio: 'ignore' });
  const sim = nominalSim(s.mqttUrl);
  const simDone = new Promise((r) => sim.on('exit', r));
  // CPU is measured over the steady state only: after every device connected (connection setup is
  // a one-off cost), until shortly before the devices stop.
  const rampMs = Math.ceil(P.nominalDevices / 200) * 1000 + 2000;
  await sleep(rampMs);
  const before = procStat(pid);
  const c0 = (await gwStatus(s)).ingest.committed;
  const windowMs = P.nominalSeconds * 1000 - rampMs - 1000;
  const { peakMb } = await peakRss(pid, sleep(windowMs));
  const after = procStat(pid);
  const readings = (await gwStatus(s)).ingest.committed - c0;
  const { peakMb: peak2 } = await peakRss(pid, simDone);
  await waitFor('nominal backlog drained', async () => (await gwStatus(s)).log.backlogRecords === 0, 30_000);
  await s.stop();
  results.gateway_rss_mb = { idle: round(idle), nominal: round(Math.max(peakMb, peak2)) };
  results.cpu_us_per_reading = round(((after.cpuMs - before.cpuMs) * 1000) / readings);
  results.disk_write_bytes_per_reading_nominal = round((after.writeBytes - before.writeBytes) / readings);
  progress(`  idle ${idle.toFixed(1)} MB, nominal peak ${peakMb.toFixed(1)} MB, ${results.cpu_us_per_reading} µs CPU/reading over ${readings} readings`);

  // The same load on bare aedes (no hooks, nothing stored): what 1,000 MQTT connections publishing
  // one message a second cost in aedes by themselves, the reference for the two figures above.
  const reference = async (start: () => Promise<ReferenceBroker>): Promise<{ rss_mb_idle: number; rss_mb_nominal: number; cpu_us_per_reading: number }> => {
    const a = await start();
    await sleep(1000);
    const aIdle = procStat(a.pid).rssMb;
    const asim = nominalSim(a.url);
    const asimDone = new Promise((r) => asim.on('exit', r));
    await sleep(rampMs);
    const b0 = procStat(a.pid);
    const n0 = await a.count();
    const { peakMb: aPeak } = await peakRss(a.pid, sleep(windowMs));
    const b1 = procStat(a.pid);
    const n1 = await a.count();
    const { peakMb: aPeak2 } = await peakRss(a.pid, asimDone);
    await a.stop();
    return { rss_mb_idle: round(aIdle), rss_mb_nominal: round(Math.max(aPeak, aPeak2)), cpu_us_per_reading: round(((b1.cpuMs - b0.cpuMs) * 1000) / (n1 - n0)) };
  };
  results.bare_aedes_nominal = await reference(startBareAedes);
  results.cpu_us_per_reading_ratio = round(results.cpu_us_per_reading / results.bare_aedes_nominal.cpu_us_per_reading, 2);
  progress(`  bare aedes: idle ${results.bare_aedes_nominal.rss_mb_idle} MB, nominal peak ${results.bare_aedes_nominal.rss_mb_nominal} MB, ${results.bare_aedes_nominal.cpu_us_per_reading} µs CPU/reading`);
  // And on the floor: a Node.js process that only answers CONNECT, PUBLISH and PINGREQ
  // (floor-mqtt.ts). No Node.js broker can go below it on this machine, so it shows which absolute
  // targets (cpu_us_per_reading, gateway_rss_mb.nominal) are reachable here at all. Full runs only.
  if (!quick) {
    results.node_floor_nominal = await reference(() => startReference('test/bench/floor-mqtt.ts'));
    progress(`  Node.js floor: idle ${results.node_floor_nominal.rss_mb_idle} MB, nominal peak ${results.node_floor_nominal.rss_mb_nominal} MB, ${results.node_floor_nominal.cpu_us_per_reading} µs CPU/reading`);
  }

  const n = P.backlogReadings;
  progress(`gateway_rss_mb.backlog: ${n} readings backlog`);
  const b = await startStack({ cloud: false, gatewayArgs: ['--quota', '4GiB'] });
  const bpid = b.gateway.child.pid!;
  const samples: Array<[number, number]> = [];
  let done = false;
  const sampler = (async () => {
    while (!done) {
      const st = await gwStatus(b).catch(() => undefined);
      if (st) samples.push([st.log.backlogRecords, procStat(bpid).rssMb]);
      await sleep(250);
    }
  })();
  await fillBacklog(b, n, 'backlog fill');
  done = true;
  await sampler;
  const backlog = (await gwStatus(b)).log.backlogRecords;
  const disk = await dirBytes(join(b.dataDir, 'log'));
  const peak = Math.max(...samples.map((x) => x[1]));
  // flatness: peak RSS in the second half of the fill vs the first half
  const half = samples.filter((x) => x[0] >= backlog / 2).map((x) => x[1]);
  const firstHalf = samples.filter((x) => x[0] < backlog / 2 && x[0] > 0).map((x) => x[1]);
  results.gateway_rss_mb.backlog_1m = round(peak);
  results.gateway_rss_mb.backlog_readings = backlog;
  results.gateway_rss_mb.backlog_first_half_peak = round(Math.max(...firstHalf, 0));
  results.gateway_rss_mb.backlog_second_half_peak = round(Math.max(...half, 0));
  results.disk_bytes_per_reading = round(disk / backlog);
  await b.stop();
  progress(`  backlog ${backlog}: peak RSS ${peak.toFixed(1)} MB, ${results.disk_bytes_per_reading} disk bytes/reading`);
}

async function benchMicro(): Promise<void> {
  progress('micro: payload and batch codecs (in-process), window engine (gateway/windows-bench.ts)');
  results.codecs = codecBench();
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'gateway', 'windows-bench.ts'), quick ? '200000' : '1000000', '200'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  await new Promise((r) => child.on('exit', r));
  const line = out.trim().split('\n').find((l) => l.startsWith('{'));
  const w = line ? JSON.parse(line).results : {};
  results.windows_us_per_reading = {
    tumbling_1m: round(w['1m tumbling']?.usPerReading ?? NaN, 3),
    tumbling_1m_hopping_5m_1m: round(w['1m tumbling + 5m/1m hopping']?.usPerReading ?? NaN, 3),
  };
  progress(`  codecs ${JSON.stringify(results.codecs)}; windows ${JSON.stringify(results.windows_us_per_reading)}`);
}

function round(x: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

function markdown(): string {
  const rows: Array<[string, string, string]> = [];
  const add = (k: string, v: unknown, target: string) => rows.push([k, v === undefined ? 'n/a' : String(v), target]);
  const r = results;
  add('ingest_qos1 sluice / bare aedes / mosquitto (readings/s)', r.ingest_qos1 && `${round(r.ingest_qos1.sluice, 0)} / ${round(r.ingest_qos1.bare_aedes, 0)} / ${round(r.ingest_qos1.mosquitto, 0)}`, '');
  add('ingest_qos1 whole stack on this host (readings/s)', r.ingest_qos1?.sluice_same_host_stack === undefined ? undefined : round(r.ingest_qos1.sluice_same_host_stack, 0), '');
  add('ingest_qos1.ratio (median of rounds)', r.ingest_qos1 && `${round(r.ingest_qos1.ratio, 3)} (${r.ingest_qos1.ratio_rounds.join(', ')})`, '≥ 0.9');
  add('ingest_qos1 gateway CPU per reading / bare aedes\' (median of rounds)', r.ingest_qos1?.cpu_per_reading_ratio && `${r.ingest_qos1.cpu_per_reading_ratio} (${r.ingest_qos1.cpu_per_reading_ratio_rounds.join(', ')})`, '');
  add('ingest_qos0 sluice / bare aedes (readings/s)', r.ingest_qos0 && `${round(r.ingest_qos0.sluice, 0)} / ${round(r.ingest_qos0.bare_aedes, 0)} (shed ${r.ingest_qos0.sluice_shed})`, '');
  add('ingest_qos0.ratio (median of rounds)', r.ingest_qos0 && `${round(r.ingest_qos0.ratio, 3)} (${r.ingest_qos0.ratio_rounds.join(', ')})`, '≥ 0.8');
  add('ingest_qos0 gateway CPU per reading / bare aedes\' (median of rounds)', r.ingest_qos0?.cpu_per_reading_ratio && `${r.ingest_qos0.cpu_per_reading_ratio} (${r.ingest_qos0.cpu_per_reading_ratio_rounds.join(', ')})`, '');
  add('e2e_latency_ms p50 / p99', r.e2e_latency_ms && `${r.e2e_latency_ms.p50} / ${r.e2e_latency_ms.p99}`, 'p99 ≤ 500');
  add('drain sluice / direct (points/s)', r.drain && `${r.drain.sluice} / ${r.drain.direct} (${r.drain.readings} readings)`, '');
  add('drain.ratio (median of rounds)', r.drain && `${r.drain.ratio}${r.drain.ratio_rounds ? ` (${r.drain.ratio_rounds.join(', ')})` : ''}`, '≥ 0.8');
  add('drain: a writer formatting each batch before posting it (points/s); Sluice / it', r.drain?.direct_formatting_each_batch && `${r.drain.direct_formatting_each_batch}; ${r.drain.ratio_to_formatting_writer}`, '');
  add('cloud_ingest sluice / direct (points/s)', r.cloud_ingest && `${r.cloud_ingest.sluice} / ${r.cloud_ingest.direct}`, '');
  add('cloud_ingest.ratio (median of rounds)', r.cloud_ingest && `${r.cloud_ingest.ratio}${r.cloud_ingest.ratio_rounds ? ` (${r.cloud_ingest.ratio_rounds.join(', ')})` : ''}`, '≥ 0.8');
  add('gateway_rss_mb idle / nominal', r.gateway_rss_mb && `${r.gateway_rss_mb.idle} / ${r.gateway_rss_mb.nominal}`, 'nominal ≤ 80');
  add('gateway_rss_mb.backlog_1m', r.gateway_rss_mb?.backlog_1m !== undefined ? `${r.gateway_rss_mb.backlog_1m} (${r.gateway_rss_mb.backlog_readings} readings; halves ${r.gateway_rss_mb.backlog_first_half_peak} → ${r.gateway_rss_mb.backlog_second_half_peak})` : undefined, '≤ 120, flat');
  add('disk_bytes_per_reading', r.disk_bytes_per_reading, '≤ 64');
  add('cpu_us_per_reading', r.cpu_us_per_reading, '≤ 50');
  add('bare aedes, same nominal load: RSS idle / nominal (MB); CPU µs/reading', r.bare_aedes_nominal && `${r.bare_aedes_nominal.rss_mb_idle} / ${r.bare_aedes_nominal.rss_mb_nominal}; ${r.bare_aedes_nominal.cpu_us_per_reading}`, '');
  add('cpu_us_per_reading / bare aedes', r.cpu_us_per_reading_ratio, '');
  add('Node.js floor (floor-mqtt.ts), same nominal load: RSS idle / nominal (MB); CPU µs/reading', r.node_floor_nominal && `${r.node_floor_nominal.rss_mb_idle} / ${r.node_floor_nominal.rss_mb_nominal}; ${r.node_floor_nominal.cpu_us_per_reading}`, '');
  add('disk write bytes/reading (nominal, /proc io)', r.disk_write_bytes_per_reading_nominal, '');
  add('window engine µs/reading: 1m / 1m + 5m/1m', r.windows_us_per_reading && `${r.windows_us_per_reading.tumbling_1m} / ${r.windows_us_per_reading.tumbling_1m_hopping_5m_1m}`, '');
  if (r.codecs) {
    const c = r.codecs;
    add('payload JSON / CBOR bytes', `${c.payload_json_bytes} / ${c.payload_cbor_bytes}`, '');
    add('payload decode+validate µs JSON / CBOR', `${c.payload_json_decode_us} / ${c.payload_cbor_decode_us}`, '');
    add('payload encode µs JSON / CBOR', `${c.payload_json_encode_us} / ${c.payload_cbor_encode_us}`, '');
    add('batch bytes/record; encode / decode µs per record', `${c.batch_bytes_per_record}; ${c.batch_encode_us_per_record} / ${c.batch_decode_us_per_record}`, '');
  }
  return ['| figure | value | target |', '|---|---|---|', ...rows.map((x) => `| ${x.join(' | ')} |`)].join('\n');
}

async function main(): Promise<void> {
  // Measure what a Pi runs: the compiled JavaScript (bin/sluice.js prefers a fresh dist/).
  progress('building dist/ (npm run build)');
  const build = spawn('npm', ['run', 'build', '--silent'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
  if ((await new Promise((r) => build.on('exit', r))) !== 0) throw new Error('npm run build failed');
  // Every sluice process of this run uses that build, even if sources change meanwhile.
  process.env.SLUICE_FROM_DIST = '1';
  work = await mkdtemp(join(tmpdir(), 'sluice-bench-'));
  influx = await startInfluxd({ dataDir: join(work, 'influxdb') });
  cleanups.push(() => influx.stop(), () => rm(work, { recursive: true, force: true }));
  progress(`${quick ? 'quick' : 'full'} run; influxd at ${influx.url}; work dir ${work}`);
  try {
    if (want('micro')) await benchMicro();
    if (want('ingest_qos1')) await benchIngest(1);
    if (want('ingest_qos0')) await benchIngest(0);
    if (want('e2e_latency')) await benchLatency();
    if (want('drain')) await benchDrain();
    if (want('cloud_ingest')) await benchCloudIngest();
    if (want('resources')) await benchResources();
  } finally {
    results.seconds = Math.round((Date.now() - t0) / 1000);
    await mkdir(dirname(outFile), { recursive: true });
    await writeFile(outFile, `${JSON.stringify(results, null, 2)}\n`);
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
  }
  process.stdout.write(`\n${markdown()}\n\nJSON: ${outFile} (${results.seconds}s)\n`);
}

await main();
