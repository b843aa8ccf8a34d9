/**
 * Live events for the dashboard: GET /api/v1/events as Server-Sent Events.
 *
 *   event: hello      { now }                                    once, on connect
 *   event: telemetry  { devices: [{ device, gateway, ts, values }] }  newest reading per device,
 *                                                                 coalesced over `coalesceMs`
 *   event: alert      { id, rule, device, severity, state, previous, value, threshold, ts, message }
 *   : ping                                                        every `heartbeatMs` (keeps proxies open)
 *
 * Guarantees: publishing never blocks or fails ingest; work per batch is O(records) and memory is
 * bounded by the number of devices seen within one coalescing interval. A client that does not read
 * (more than `maxBufferedBytes` queued) is disconnected; at most `maxClients` streams are served
 * (503 beyond). Events are best effort: a reconnecting client reloads state from the REST API.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { RawRecord } from '../protocols/batch.js';
import type { Transition } from './alert-engine.js';
import { sendError } from './http-util.js';
import type { CloudMetrics } from './metrics.js';

export interface EventHubConfig {
  metrics: CloudMetrics;
  heartbeatMs?: number;
  coalesceMs?: number;
  maxClients?: number;
  maxBufferedBytes?: number;
}

interface Latest {
  device: string;
  gateway: string;
  ts: number;
  values: Record<string, number | boolean>;
}

export class EventHub {
  private readonly clients = new Set<ServerResponse>();
  private pending = new Map<string, Latest>();
  private flushTimer: NodeJS.Timeout | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly cfg: EventHubConfig) {}

  get size(): number {
    return this.clients.size;
  }

  subscribe(req: IncomingMessage, res: ServerResponse): void {
    if (this.closed || this.clients.size >= (this.cfg.maxClients ?? 100)) {
      sendError(res, 503, 'SLUICE_CLOUD_UNAVAILABLE', 'too many event streams', {}, { 'retry-after': '10' });
      return;
    }
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    res.write(`retry: 3000\nevent: hello\ndata: ${JSON.stringify({ now: Date.now() })}\n\n`);
    this.clients.add(res);
    this.cfg.metrics.sseClients.set(this.clients.size);
    const drop = () => {
      if (this.clients.delete(res)) this.cfg.metrics.sseClients.set(this.clients.size);
    };
    req.on('close', drop);
    res.on('close', drop);
    res.on('error', drop);
    this.heartbeat ??= setInterval(() => this.broadcast(': ping\n\n'), this.cfg.heartbeatMs ?? 15_000).unref();
  }

  /** A committed alert transition (sent at once). */
  alert(t: Transition): void {
    if (this.clients.size === 0) return;
    const body = { id: t.id, rule: t.rule, device: t.device, severity: t.severity, state: t.to, previous: t.from, metric: t.metric, value: t.value, threshold: t.threshold, ts: t.ts, message: t.message };
    this.broadcast(`event: alert\ndata: ${JSON.stringify(body)}\n\n`);
  }

  /** New records of a committed batch; the newest reading per device goes out with the next flush. */
  telemetry(gateway: string, recs: RawRecord[]): void {
    if (this.clients.size === 0 || recs.length === 0) return;
    for (const r of recs) {
      const cur = this.pending.get(r.dev);
      if (cur && cur.ts > r.ts) {
        for (const [k, v] of Object.entries(r.vals)) if (!(k in cur.values)) cur.values[k] = v;
        continue;
      }
      this.pending.set(r.dev, { device: r.dev, gateway, ts: r.ts, values: { ...(cur?.values ?? {}), ...r.vals } });
    }
    this.flushTimer ??= setTimeout(() => this.flush(), this.cfg.coalesceMs ?? 1000).unref();
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.flushTimer);
    clearInterval(this.heartbeat);
    for (const res of this.clients) res.end();
    this.clients.clear();
    this.cfg.metrics.sseClients.set(0);
  }

  private flush(): void {
    this.flushTimer = undefined;
    const devices = [...this.pending.values()];
    this.pending = new Map();
    if (devices.length > 0) this.broadcast(`event: telemetry\ndata: ${JSON.stringify({ devices })}\n\n`);
  }

  private broadcast(text: string): void {
    const max = this.cfg.maxBufferedBytes ?? 1024 * 1024;
    for (const res of this.clients) {
      if (res.writableLength > max) {
        // A client that stopped reading: cut it rather than buffer without bound.
        this.clients.delete(res);
        res.destroy();
        continue;
      }
      res.write(text);
    }
    this.cfg.metrics.sseClients.set(this.clients.size);
    if (this.clients.size === 0) {
      clearInterval(this.heartbeat);
      this.heartbeat = undefined;
    }
  }
}
