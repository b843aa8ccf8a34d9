/**
 * The cloud ingest and query server (node:http).
 *
 *   POST /api/v1/batches   gateway batches (CBOR, bearer token) → InfluxDB; JSON { acked }
 *   GET  /api/v1/series    one device's metric over time (see series-query.ts)
 *   GET  /api/v1/devices   devices with the time each was last seen
 *   GET  /healthz          200 "ok" while the process serves
 *   GET  /readyz           200 when InfluxDB answers /ping, else 503
 *   GET  /metrics          Prometheus text (metrics.ts)
 *
 * Batch status codes (ARCHITECTURE.md "Wire formats"): 200 ack; 400 malformed batch, or InfluxDB
 * refused the data itself (code names which; the gateway quarantines); 401 missing/unknown token;
 * 403 batch.gw is not the token's gateway; 409 gap with `expected`; 413 too large; 415 not CBOR;
 * 503 + Retry-After when InfluxDB (or the local store) is unavailable: nothing was acknowledged.
 *
 * Guarantees: an ack (200) is sent only after InfluxDB accepted the points and the high-water mark is
 * stored (ingest.ts). Tokens are never logged. One log line per rejected or failed request, a debug
 * line per accepted batch. `stop()` stops accepting, waits for requests in flight (up to a grace
 * period), then closes the store and the sink.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pino, type Logger } from 'pino';
import { decodeBatch } from '../protocols/batch.js';
import { isSluiceError, SluiceError } from '../protocols/errors.js';
import { TokenAuth } from './auth.js';
import { HwmStore } from './hwm-store.js';
import { sendError, sendJson, sendText, readBody } from './http-util.js';
import type { InfluxConfig, PointSink } from './influx-common.js';
import { createInfluxSink } from './influx-writer.js';
import { InfluxQlClient } from './influxql.js';
import { ingestBatch } from './ingest.js';
import { CloudMetrics, type BatchResult } from './metrics.js';
import { devicesFromSeries, devicesInfluxQL, parseSeriesQuery, seriesInfluxQL, seriesPoints } from './series-query.js';

export interface CloudServerConfig {
  listen: { host: string; port: number };
  /** Directory for the cloud's own state (the high-water marks' LevelDB). */
  dataDir: string;
  /** Gateway id → its bearer token. */
  gatewayTokens: Record<string, string>;
  influx: InfluxConfig;
  /** Largest accepted batch body in bytes (default 16 MiB). */
  maxBodyBytes?: number;
  /** Retry-After (seconds) sent with a 503 when InfluxDB gave none (default 2). */
  retryAfterSeconds?: number;
  /** InfluxDB request timeout in ms (default 10000). */
  influxTimeoutMs?: number;
  /** Tokens that may read /api/v1/series and /api/v1/devices. Absent: reads need no token. */
  queryTokens?: string[];
  /** Wait this long for requests in flight on stop() before cutting connections (ms, default 5000). */
  stopGraceMs?: number;
  logger?: Logger;
}

export const DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024;

export class CloudServer {
  readonly metrics = new CloudMetrics();
  private readonly log: Logger;
  private readonly auth: TokenAuth;
  private readonly readers: TokenAuth | undefined;
  private readonly maxBody: number;
  private readonly query: InfluxQlClient;
  private server: Server | undefined;
  private store: HwmStore | undefined;
  private sink: PointSink | undefined;
  private readonly inflight = new Set<Promise<void>>();

  constructor(private readonly cfg: CloudServerConfig) {
    this.log = cfg.logger ?? pino({ name: 'sluice-cloud' }, pino.destination(2));
    this.auth = new TokenAuth(cfg.gatewayTokens);
    this.readers = cfg.queryTokens ? new TokenAuth(Object.fromEntries(cfg.queryTokens.map((t, i) => [`reader${i}`, t]))) : undefined;
    this.maxBody = cfg.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
    this.query = new InfluxQlClient(cfg.influx, { timeoutMs: cfg.influxTimeoutMs });
  }

  async start(): Promise<{ url: string }> {
    if (this.server) throw new Error('CloudServer already started');
    const store = new HwmStore(this.cfg.dataDir);
    await store.open();
    try {
      this.sink = await createInfluxSink(this.cfg.influx, { timeoutMs: this.cfg.influxTimeoutMs, logger: this.log });
      const server = createServer((req, res) => this.track(this.handle(req, res)));
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(this.cfg.listen.port, this.cfg.listen.host, () => {
          server.off('error', reject);
          resolve();
        });
      });
      this.server = server;
      this.store = store;
    } catch (err) {
      await store.close();
      throw err;
    }
    const url = this.url();
    this.log.info({ url, gateways: this.auth.size, influx: this.cfg.influx.url, api: this.cfg.influx.api }, 'cloud listening');
    return { url };
  }

  /** Base URL of the bound server (the real port when listen.port was 0). */
  url(): string {
    const addr = this.server?.address() as AddressInfo | null | undefined;
    if (!addr) throw new Error('CloudServer is not listening');
    const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
    return `http://${host}:${addr.port}`;
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections();
    const grace = new Promise<void>((resolve) => setTimeout(resolve, this.cfg.stopGraceMs ?? 5000).unref());
    await Promise.race([Promise.allSettled([...this.inflight]), grace]);
    server.closeAllConnections();
    await closed;
    await this.store?.close();
    await this.sink?.close();
    this.store = undefined;
    this.sink = undefined;
    this.log.info('cloud stopped');
  }

  private track(p: Promise<void>): void {
    const settled = p.catch((err) => this.log.error({ err }, 'request handler failed'));
    this.inflight.add(settled);
    void settled.finally(() => this.inflight.delete(settled));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const url = new URL(req.url ?? '/', 'http://localhost');
      const route = `${req.method} ${url.pathname}`;
      switch (route) {
        case 'POST /api/v1/batches':
          return await this.onBatch(req, res);
        case 'GET /api/v1/series':
          return await this.onSeries(req, res, url.searchParams);
        case 'GET /api/v1/devices':
          return await this.onDevices(req, res);
        case 'GET /healthz':
          return sendText(res, 200, 'ok\n');
        case 'GET /readyz':
          return (await this.query.ping()) ? sendText(res, 200, 'ready\n') : sendText(res, 503, 'influxdb not reachable\n');
        case 'GET /metrics':
          return sendText(res, 200, await this.metrics.registry.metrics(), this.metrics.registry.contentType);
        default:
          req.resume();
          return sendError(res, 404, 'SLUICE_NOT_FOUND', `no route ${req.method} ${url.pathname}`);
      }
    } catch (err) {
      this.metrics.error('internal');
      this.log.error({ err }, 'request failed');
      if (!res.headersSent) sendError(res, 500, 'SLUICE_INTERNAL', 'internal error');
      else res.destroy();
    }
  }

  private reject(req: IncomingMessage, res: ServerResponse, result: BatchResult, status: number, err: SluiceError, extraHeaders: Record<string, string> = {}, gw?: string): void {
    this.metrics.batch(result);
    this.metrics.error(result);
    this.log.warn({ status, code: err.code, gateway: gw, remote: req.socket.remoteAddress }, err.message);
    // Discard whatever is left of the body; after a 413 do not keep a connection that still carries it.
    const headers = status === 413 ? { connection: 'close', ...extraHeaders } : extraHeaders;
    req.resume();
    sendError(res, status, err.code, err.message, err.detail ?? {}, headers);
  }

  private async onBatch(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const gw = this.auth.identify(req.headers.authorization);
    if (gw === undefined) {
      const err = new SluiceError('SLUICE_UNAUTHORIZED', 'missing or unknown bearer token');
      return this.reject(req, res, 'unauthorized', 401, err, { 'www-authenticate': 'Bearer realm="sluice"' });
    }
    const ct = req.headers['content-type'];
    if (ct !== undefined && !/^application\/cbor\b/i.test(ct)) {
      return this.reject(req, res, 'bad_request', 415, new SluiceError('SLUICE_BAD_BATCH', `Content-Type must be application/cbor, not ${ct.slice(0, 60)}`), {}, gw);
    }
    let batch;
    try {
      const body = await readBody(req, this.maxBody);
      batch = decodeBatch(body, { maxBytes: this.maxBody });
    } catch (err) {
      if (isSluiceError(err, 'SLUICE_TOO_LARGE')) return this.reject(req, res, 'too_large', 413, err, {}, gw);
      if (isSluiceError(err)) return this.reject(req, res, 'bad_request', 400, err, {}, gw);
      throw err;
    }
    if (batch.gw !== gw) {
      const err = new SluiceError('SLUICE_FORBIDDEN', `this token belongs to gateway "${gw}", not "${batch.gw}"`);
      return this.reject(req, res, 'forbidden', 403, err, {}, gw);
    }
    let result;
    try {
      result = await ingestBatch(batch, { store: this.store!, sink: this.sink!, metrics: this.metrics, logger: this.log });
    } catch (err) {
      if (isSluiceError(err, 'SLUICE_INFLUX_WRITE') && !err.retryable) return this.reject(req, res, 'rejected', 400, err, {}, gw);
      const retryAfter = (isSluiceError(err) && (err.detail?.retryAfterSeconds as number | undefined)) || (this.cfg.retryAfterSeconds ?? 2);
      const e = isSluiceError(err, 'SLUICE_INFLUX_WRITE')
        ? err
        : new SluiceError('SLUICE_CLOUD_UNAVAILABLE', 'the cloud could not store the batch; retry later', { cause: err, retryable: true });
      if (!isSluiceError(err, 'SLUICE_INFLUX_WRITE')) this.log.error({ err }, 'batch failed');
      return this.reject(req, res, 'unavailable', 503, new SluiceError(e.code, e.message, { retryable: true }), { 'retry-after': String(retryAfter) }, gw);
    }
    if (result.status === 409) {
      this.metrics.batch('gap');
      this.log.warn({ gateway: gw, inc: batch.inc, first: batch.first, expected: result.body.expected }, 'sequence gap');
      return sendJson(res, 409, result.body);
    }
    this.metrics.batch(result.written > 0 || result.replayed === 0 ? 'ok' : 'replay');
    this.log.debug({ gateway: gw, inc: batch.inc, first: batch.first, last: batch.last, acked: result.body.acked, written: result.written, replayed: result.replayed }, 'batch');
    sendJson(res, 200, result.body);
  }

  private readerAllowed(req: IncomingMessage, res: ServerResponse): boolean {
    if (!this.readers || this.readers.identify(req.headers.authorization) !== undefined) return true;
    this.metrics.error('unauthorized');
    sendError(res, 401, 'SLUICE_UNAUTHORIZED', 'missing or unknown bearer token', {}, { 'www-authenticate': 'Bearer realm="sluice"' });
    return false;
  }

  private async onSeries(req: IncomingMessage, res: ServerResponse, params: URLSearchParams): Promise<void> {
    if (!this.readerAllowed(req, res)) return;
    let q;
    try {
      q = parseSeriesQuery(params);
    } catch (err) {
      if (!isSluiceError(err)) throw err;
      this.metrics.error('bad_query');
      return sendError(res, 400, err.code, err.message);
    }
    await this.runQuery(res, seriesInfluxQL(q), (series) => ({
      device: q.device,
      metric: q.metric,
      from: q.from,
      to: q.to,
      ...(q.every !== undefined ? { every: q.every, fn: q.fn } : {}),
      ...(q.window !== undefined ? { window: q.window, fn: q.fn ?? 'mean' } : {}),
      points: seriesPoints(series),
    }));
  }

  private async onDevices(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (!this.readerAllowed(req, res)) return;
    await this.runQuery(res, devicesInfluxQL(), (series) => ({ devices: devicesFromSeries(series) }));
  }

  private async runQuery(res: ServerResponse, q: string, shape: (series: Awaited<ReturnType<InfluxQlClient['query']>>) => unknown): Promise<void> {
    try {
      sendJson(res, 200, shape(await this.query.query(q)));
    } catch (err) {
      if (!isSluiceError(err, 'SLUICE_INFLUX_QUERY')) throw err;
      this.metrics.error('influx_query');
      this.log.warn({ code: err.code }, err.message);
      // A statement InfluxDB refused (e.g. mean() of a boolean metric) is the caller's query; anything
      // else is an outage.
      if (err.detail?.statement) return sendError(res, 400, 'SLUICE_BAD_QUERY', err.message);
      sendError(res, 503, err.code, err.message, {}, { 'retry-after': String(this.cfg.retryAfterSeconds ?? 2) });
    }
  }
}
