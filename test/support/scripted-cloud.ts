/**
 * A scripted cloud for gateway tests: a real HTTP server that decodes real batches and keeps a
 * high-water mark like the real cloud, but whose answers a test can dictate (503 with Retry-After,
 * 409, 400, 413). It stands in for failures the real cloud cannot be made to produce on demand;
 * the end-to-end tests use the real cloud and InfluxDB.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { decodeBatch, type Batch } from '../../protocols/batch.js';

export type Script = (batch: Batch, n: number) => { status: number; body?: unknown; headers?: Record<string, string> } | undefined;

export class ScriptedCloud {
  batches: Batch[] = [];
  /** Every accepted record by seq (a replay overwrites: counts stay exact). */
  records = new Map<number, Batch['recs'][number]>();
  aggs: Batch['aggs'] = [];
  hw = 0;
  aggHw = 0;
  requests = 0;
  script: Script = () => undefined;
  private server: Server;
  url = '';

  constructor() {
    this.server = createServer((req, res) => void this.handle(req).then(({ status, body, headers }) => {
      res.writeHead(status, { 'content-type': 'application/json', ...headers });
      res.end(JSON.stringify(body ?? {}));
    }));
  }

  async start(port = 0): Promise<string> {
    await new Promise<void>((r) => this.server.listen(port, '127.0.0.1', () => r()));
    const a = this.server.address();
    this.url = `http://127.0.0.1:${typeof a === 'object' && a ? a.port : port}`;
    return this.url;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  private async handle(req: IncomingMessage): Promise<{ status: number; body?: unknown; headers?: Record<string, string> }> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    this.requests++;
    let batch: Batch;
    try {
      batch = decodeBatch(Buffer.concat(chunks));
    } catch (err) {
      return { status: 400, body: { error: (err as Error).message, code: (err as any).code } };
    }
    if (batch.inc.endsWith('.agg')) {
      // The aggregate lane: its own sequence space, always accepted.
      this.aggHw = Math.max(this.aggHw, batch.last);
      for (const a of batch.aggs) this.aggs.push(a);
      return { status: 200, body: { acked: this.aggHw } };
    }
    const scripted = this.script(batch, this.requests);
    if (scripted) return scripted;
    if (batch.first > this.hw + 1) return { status: 409, body: { error: 'gap', code: 'SLUICE_GAP', expected: this.hw + 1 } };
    this.batches.push(batch);
    for (const r of batch.recs) if (r.seq > this.hw) this.records.set(r.seq, r);
    this.hw = Math.max(this.hw, batch.last);
    return { status: 200, body: { acked: this.hw } };
  }
}
