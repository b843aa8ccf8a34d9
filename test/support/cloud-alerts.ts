/**
 * Helpers for alert tests: a recording PointSink that can be told to fail, a real HTTP webhook
 * receiver, and a rig that runs the cloud's ingest path (HwmStore in a temp dir → ingestBatch →
 * AlertService) in-process with an injected clock, and can be "restarted" on the same directory.
 */
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import { AlertService } from '../../cloud/alert-service.js';
import { HwmStore } from '../../cloud/hwm-store.js';
import { influxWriteError, type PointSink } from '../../cloud/influx-common.js';
import { ingestBatch } from '../../cloud/ingest.js';
import { CloudMetrics } from '../../cloud/metrics.js';
import type { AggRecord, RawRecord } from '../../protocols/batch.js';
import type { ManualClock } from './cloud-clock.js';

export class FakeSink implements PointSink {
  readonly lines: string[] = [];
  /** Fail this many upcoming writes (retryable, like an InfluxDB outage). */
  failNext = 0;

  async write(lines: string[]): Promise<void> {
    if (this.failNext > 0) {
      this.failNext--;
      throw influxWriteError('InfluxDB unavailable (test)', { status: 503 });
    }
    this.lines.push(...lines);
  }

  async close(): Promise<void> {}

  alertLines(): string[] {
    return this.lines.filter((l) => l.startsWith('alerts,'));
  }
}

export interface ReceivedHook {
  headers: IncomingHttpHeaders;
  body: any;
}

export interface WebhookReceiver {
  url: string;
  received: ReceivedHook[];
  /** Status codes to answer with next (then 200). */
  failWith: number[];
  close(): Promise<void>;
}

/** A real HTTP server recording every POST; answers 200 unless `failWith` has codes queued. */
export async function startWebhookReceiver(): Promise<WebhookReceiver> {
  const r: WebhookReceiver = { url: '', received: [], failWith: [], close: async () => undefined };
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const status = r.failWith.shift() ?? 200;
      if (status === 200) r.received.push({ headers: req.headers, body: JSON.parse(Buffer.concat(chunks).toString()) });
      res.writeHead(status, status === 503 ? { 'retry-after': '1' } : {});
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  r.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  r.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return r;
}

export interface AlertRig {
  store: HwmStore;
  service: AlertService;
  sink: FakeSink;
  metrics: CloudMetrics;
  rulesFile: string;
  /** Ingest raw records as the next batch of gateway `gw` (sequences continue from the last call). */
  ingest(recs: Omit<RawRecord, 'seq'>[], opts?: { aggs?: Omit<AggRecord, 'seq'>[]; first?: number }): Promise<{ status: number; written?: number }>;
  /** Send exactly this batch (for replays). */
  send(first: number, recs: RawRecord[], aggs?: AggRecord[]): Promise<{ status: number }>;
  /** Stop and start again on the same directory (a cloud restart). */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export async function startAlertRig(opts: {
  dir: string;
  rules: string;
  clock: ManualClock;
  sink?: FakeSink;
  store?: (dir: string) => HwmStore;
  logger?: Logger;
  absentStartGraceMs?: number;
  watch?: boolean;
}): Promise<AlertRig> {
  const rulesFile = join(opts.dir, 'rules.yaml');
  await writeFile(rulesFile, opts.rules);
  const sink = opts.sink ?? new FakeSink();
  const logger = opts.logger ?? pino({ level: 'silent' });
  let seq = 0;
  const rig = {} as AlertRig;
  const open = async () => {
    const store = opts.store ? opts.store(join(opts.dir, 'data')) : new HwmStore(join(opts.dir, 'data'));
    await store.open();
    const metrics = new CloudMetrics();
    const service = new AlertService({
      store,
      sink,
      metrics,
      logger,
      clock: opts.clock,
      rulesFile,
      watch: opts.watch ?? false,
      absentStartGraceMs: opts.absentStartGraceMs ?? 0,
      baseBackoffMs: 1000,
      maxBackoffMs: 8000,
    });
    await service.start();
    Object.assign(rig, { store, service, metrics });
  };
  const send = async (first: number, recs: RawRecord[], aggs: AggRecord[] = []) => {
    const last = Math.max(first, ...recs.map((r) => r.seq), ...aggs.map((a) => a.seq));
    const batch = { v: 1, gw: 'gw1', inc: 'inc1', first, last, recs, aggs };
    try {
      const r = await ingestBatch(batch, { store: rig.store, sink, metrics: rig.metrics, logger, alerts: rig.service });
      return { status: r.status, ...(r.status === 200 ? { written: r.written } : {}) };
    } catch {
      return { status: 503 };
    }
  };
  await open();
  Object.assign(rig, {
    sink,
    rulesFile,
    send,
    async ingest(recs: Omit<RawRecord, 'seq'>[], o: { aggs?: Omit<AggRecord, 'seq'>[]; first?: number } = {}) {
      const first = o.first ?? seq + 1;
      const full = recs.map((r, i) => ({ ...r, seq: first + i }) as RawRecord);
      const aggs = (o.aggs ?? []).map((a, i) => ({ ...a, seq: first + full.length + i }) as AggRecord);
      const res = await send(first, full, aggs);
      if (res.status === 200) seq = Math.max(seq, first + full.length + aggs.length - 1);
      return res;
    },
    async restart() {
      await rig.service.stop();
      await rig.store.close();
      await open();
    },
    async stop() {
      await rig.service.stop();
      await rig.store.close();
    },
  });
  return rig;
}
