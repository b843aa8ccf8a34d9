/**
 * The cloud ingest and query server (node:http).
 *
 *   POST /api/v1/batches   gateway batches (CBOR, bearer token) → InfluxDB; JSON { acked }
 *   GET  /api/v1/series    metrics of devices over time (series-query.ts, series-multi.ts)
 *   GET  /api/v1/devices   devices with the time each was last seen (values=1: latest values)
 *   GET  /api/v1/alerts    current and past alerts (alert-history.ts)
 *   GET  /api/v1/rules     the active alert rules and the last reload error
 *   GET  /api/v1/events    live events, Server-Sent Events (events.ts)
 *   GET  /                 the dashboard (dashboard/, dashboard-routes.ts)
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
 * stored (ingest.ts). Tokens are never logged. Gateway tokens may be configured as scrypt hashes
 * (auth.ts); such a token is verified against the hash of the gateway the batch names, so a gateway
 * can only write as itself, and unauthenticated bodies are read by at most `maxUnverified` requests
 * at a time. Slow clients are cut off (`headersTimeoutMs`, `requestTimeoutMs`); at most
 * `maxConnections` sockets are open. With `tls` the server speaks HTTPS only. One log line per rejected or failed request, a debug
 * line per accepted batch. `stop()` stops accepting, waits for requests in flight (up to a grace
 * period), then closes the store and the sink.
 *
 * Alerts (alert-service.ts): every batch's new records pass through the alert engine, whose state is
 * stored atomically with the high-water mark; an invalid rules file fails start() with
 * SLUICE_BAD_CONFIG, and `reloadRules()` (SIGHUP) keeps the previous rules when the file is invalid.
 */
import { createServer, type IncomingMessage, type Server, type ServerOptions, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { pino, type Logger } from 'pino';
import { decodeBatch } from '../protocols/batch.js';
import { isSluiceError, SluiceError } from '../protocols/errors.js';
import { bearerToken, TokenAuth } from './auth.js';
import { HwmStore } from './hwm-store.js';
import { sendError, sendJson, sendText, readBody } from './http-util.js';
import type { InfluxConfig, PointSink } from './influx-common.js';
import { createInfluxSink } from './influx-writer.js';
import { InfluxQlClient } from './influxql.js';
import { ingestBatch } from './ingest.js';
import { BatchSequencer } from './sequencer.js';
import { CloudMetrics, type BatchResult } from './metrics.js';
import { devicesFromSeries, devicesInfluxQL, seriesInfluxQL, seriesPoints } from './series-query.js';
import { devicesLatestInfluxQL, multiSeriesFromSeries, multiSeriesInfluxQL, parseSeriesRequest, withLatestValues } from './series-multi.js';
import { AlertService, type ReloadResult } from './alert-service.js';
import type { RuleSet } from './alert-rules.js';
import { currentAlerts, historyFromSeries, historyInfluxQL, mergeAlerts, needsHistory, parseAlertQuery } from './alert-history.js';
import type { Clock } from './clock.js';
import { serveDashboard } from './dashboard-routes.js';
import { EventHub } from './events.js';
import { loadServerTls, type CloudTlsConfig } from './tls.js';

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
  /** Gateway id → scrypt hash of its token (`sluice cloud hash-token`), instead of the token itself. */
  gatewayTokenHashes?: Record<string, string>;
  /** scrypt hashes of read tokens; with queryTokens or alone, reads then need a token. */
  queryTokenHashes?: string[];
  /** Serve HTTPS (PEM certificate chain and key files). */
  tls?: CloudTlsConfig;
  /** Time a client has to send the request headers (ms, default 10000): slowloris guard. */
  headersTimeoutMs?: number;
  /** Time a client has to send the whole request (ms, default 120000; a 16 MiB batch at 2 Mbit/s fits). */
  requestTimeoutMs?: number;
  /** Idle keep-alive connections are closed after this long (ms, default 5000). */
  keepAliveTimeoutMs?: number;
  /** Most open sockets (default 1024); more are refused by the kernel backlog / closed at once. */
  maxConnections?: number;
  /** Requests whose token is not yet verified that may read their body at once (default 16). */
  maxUnverified?: number;
  /** Deepest CBOR nesting of a batch (default 8). */
  maxDepth?: number;
  /** Wait this long for requests in flight on stop() before cutting connections (ms, default 5000). */
  stopGraceMs?: number;
  logger?: Logger;
  /** Alert rules file (YAML, see alert-rules.ts); watched for changes. */
  rulesFile?: string;
  /** Alert rules given directly (tests, embedding) when there is no file. */
  rules?: RuleSet;
  /** Wall clock of the alert tier: absent-data deadlines, notification retries (default: system clock). */
  clock?: Clock;
  /** Alert tier tuning: silent-device grace after start, outbox retry cap and first delay (ms), file watching. */
  alerts?: { absentStartGraceMs?: number; maxBackoffMs?: number; baseBackoffMs?: number; watch?: boolean };
  /** Serve the dashboard at / (default true). */
  dashboard?: boolean;
  /** Newest values of /api/v1/devices?values=1 are read over this many ms back (default 1 day). */
  latestValuesWindowMs?: number;
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
  private alertService: AlertService | undefined;
  readonly events = new EventHub({ metrics: this.metrics });
  private readonly inflight = new Set<Promise<void>>();
  private unverified = 0;
  /** Re-orders a gateway's pipelined batches (cloud/sequencer.ts). */
  private readonly sequencer = new BatchSequencer();
  /** Requests whose hashed read token was verified (preverifyReader). */
  private readonly verifiedReaders = new WeakSet<IncomingMessage>();

  constructor(private readonly cfg: CloudServerConfig) {
    this.log = cfg.logger ?? pino({ name: 'sluice-cloud' }, pino.destination(2));
    this.auth = new TokenAuth(cfg.gatewayTokens, { hashed: cfg.gatewayTokenHashes });
    this.readers =
      cfg.queryTokens || cfg.queryTokenHashes
        ? new TokenAuth(Object.fromEntries((cfg.queryTokens ?? []).map((t, i) => [`reader${i}`, t])), {
            hashed: Object.fromEntries((cfg.queryTokenHashes ?? []).map((h, i) => [`reader-hash${i}`, h])),
          })
        : undefined;
    this.maxBody = cfg.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
    this.query = new InfluxQlClient(cfg.influx, { timeoutMs: cfg.influxTimeoutMs });
  }

  async start(): Promise<{ url: string }> {
    if (this.server) throw new Error('CloudServer already started');
    const store = new HwmStore(this.cfg.dataDir, {
      onDamaged: (message, detail) => {
        this.metrics.errors.inc({ reason: 'store_damaged' });
        this.log.error(detail, message);
      },
    });
    await store.open();
    try {
      this.sink = await createInfluxSink(this.cfg.influx, { timeoutMs: this.cfg.influxTimeoutMs, logger: this.log });
      // The alert tier loads its rules, state and outbox before the first batch can arrive.
      const alerts = new AlertService({
        store,
        sink: this.sink,
        metrics: this.metrics,
        logger: this.log,
        clock: this.cfg.clock,
        rulesFile: this.cfg.rulesFile,
        rules: this.cfg.rules,
        watch: this.cfg.alerts?.watch,
        absentStartGraceMs: this.cfg.alerts?.absentStartGraceMs,
        maxBackoffMs: this.cfg.alerts?.maxBackoffMs,
        baseBackoffMs: this.cfg.alerts?.baseBackoffMs,
        onTransition: (t) => this.events.alert(t),
      });
      await alerts.start();
      this.alertService = alerts;
      const opts: ServerOptions = {
        headersTimeout: this.cfg.headersTimeoutMs ?? 10_000,
        requestTimeout: this.cfg.requestTimeoutMs ?? 120_000,
        keepAliveTimeout: this.cfg.keepAliveTimeoutMs ?? 5_000,
        // How often Node checks the two timeouts above (its default, 30 s, would let a slowloris
        // connection live up to 30 s past them).
        connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor((this.cfg.headersTimeoutMs ?? 10_000) / 2))),
      };
      const onRequest = (req: IncomingMessage, res: ServerResponse) => this.track(this.handle(req, res));
      const server: Server = this.cfg.tls ? createHttpsServer({ ...opts, ...loadServerTls(this.cfg.tls) }, onRequest) : createServer(opts, onRequest);
      server.maxConnections = this.cfg.maxConnections ?? 1024;
      // A socket that errors (reset, TLS garbage) must never take the process down.
      server.on('clientError', (_err, socket) => socket.destroy());
      server.on('tlsClientError', () => this.metrics.error('tls_handshake'));
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
      await this.alertService?.stop();
      this.alertService = undefined;
      await this.sink?.close();
      this.sink = undefined;
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
    return `${this.cfg.tls ? 'https' : 'http'}://${host}:${addr.port}`;
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    this.events.close();
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections();
    const grace = new Promise<void>((resolve) => setTimeout(resolve, this.cfg.stopGraceMs ?? 5000).unref());
    await Promise.race([Promise.allSettled([...this.inflight]), grace]);
    server.closeAllConnections();
    await closed;
    await this.alertService?.stop();
    this.alertService = undefined;
    await this.store?.close();
    await this.sink?.close();
    this.store = undefined;
    this.sink = undefined;
    this.log.info('cloud stopped');
  }

  /** The alert tier (undefined before start and after stop). */
  get alerts(): AlertService | undefined {
    return this.alertService;
  }

  /** Reload the alert rules file (SIGHUP); invalid rules are refused and the previous ones stay. */
  async reloadRules(): Promise<ReloadResult> {
    if (!this.alertService) throw new Error('CloudServer is not started');
    return this.alertService.reload();
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
      if (route !== 'POST /api/v1/batches' && url.pathname.startsWith('/api/v1/') && !(await this.preverifyReader(req, res))) return;
      switch (route) {
        case 'POST /api/v1/batches':
          return await this.onBatch(req, res);
        case 'GET /api/v1/series':
          return await this.onSeries(req, res, url.searchParams);
        case 'GET /api/v1/devices':
          return await this.onDevices(req, res, url.searchParams);
        case 'GET /api/v1/alerts':
          return await this.onAlerts(req, res, url.searchParams);
        case 'GET /api/v1/rules':
          if (!this.readerAllowed(req, res)) return;
          return sendJson(res, 200, this.alertService?.status() ?? {});
        case 'GET /api/v1/events':
          if (!this.readerAllowed(req, res)) return;
          return this.events.subscribe(req, res);
        case 'GET /healthz':
          return sendText(res, 200, 'ok\n');
        case 'GET /readyz':
          return (await this.query.ping()) ? sendText(res, 200, 'ready\n') : sendText(res, 503, 'influxdb not reachable\n');
        case 'GET /metrics':
          return sendText(res, 200, await this.metrics.registry.metrics(), this.metrics.registry.contentType);
        default:
          if (req.method === 'GET' && this.cfg.dashboard !== false && (await serveDashboard(url.pathname, res))) return;
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
    const authorization = req.headers.authorization;
    const unauthorized = () =>
      this.reject(req, res, 'unauthorized', 401, new SluiceError('SLUICE_UNAUTHORIZED', 'missing or unknown bearer token'), { 'www-authenticate': 'Bearer realm="sluice"' });
    // Plain tokens and recently verified hashed ones are known at once; an unknown token can only be
    // a hashed gateway token, verified once the batch names its gateway.
    let gw = this.auth.identify(authorization);
    if (gw === undefined && (!this.auth.hasHashes || bearerToken(authorization) === undefined)) return unauthorized();
    if (gw === undefined) {
      if (this.unverified >= (this.cfg.maxUnverified ?? 16)) {
        const err = new SluiceError('SLUICE_CLOUD_UNAVAILABLE', 'too many requests with unverified tokens; retry later', { retryable: true });
        return this.reject(req, res, 'unavailable', 503, err, { 'retry-after': String(this.cfg.retryAfterSeconds ?? 2) });
      }
      this.unverified++;
      try {
        return await this.onBatchAuthenticated(req, res, undefined);
      } finally {
        this.unverified--;
      }
    }
    return this.onBatchAuthenticated(req, res, gw);
  }

  /** `gw` undefined: the token is checked against the hash of the gateway the batch names. */
  private async onBatchAuthenticated(req: IncomingMessage, res: ServerResponse, known: string | undefined): Promise<void> {
    let gw = known;
    const ct = req.headers['content-type'];
    if (ct !== undefined && !/^application\/cbor\b/i.test(ct)) {
      return this.reject(req, res, 'bad_request', 415, new SluiceError('SLUICE_BAD_BATCH', `Content-Type must be application/cbor, not ${ct.slice(0, 60)}`), {}, gw);
    }
    let batch;
    try {
      const body = await readBody(req, this.maxBody);
      batch = decodeBatch(body, { maxBytes: this.maxBody, maxDepth: this.cfg.maxDepth });
    } catch (err) {
      // Unverified token: say nothing about the body (not even that it is malformed).
      if (gw === undefined && !isSluiceError(err, 'SLUICE_TOO_LARGE')) {
        if (!isSluiceError(err)) throw err;
        return this.reject(req, res, 'unauthorized', 401, new SluiceError('SLUICE_UNAUTHORIZED', 'missing or unknown bearer token'), { 'www-authenticate': 'Bearer realm="sluice"' });
      }
      if (isSluiceError(err, 'SLUICE_TOO_LARGE')) return this.reject(req, res, 'too_large', 413, err, {}, gw);
      if (isSluiceError(err)) return this.reject(req, res, 'bad_request', 400, err, {}, gw);
      throw err;
    }
    if (gw === undefined) {
      const verdict = this.auth.has(batch.gw) ? await this.auth.verifyAs(req.headers.authorization, batch.gw) : 'refused';
      if (verdict === 'busy') {
        const err = new SluiceError('SLUICE_CLOUD_UNAVAILABLE', 'token verification is busy; retry later', { retryable: true });
        return this.reject(req, res, 'unavailable', 503, err, { 'retry-after': String(this.cfg.retryAfterSeconds ?? 2) });
      }
      if (verdict !== 'ok') {
        return this.reject(req, res, 'unauthorized', 401, new SluiceError('SLUICE_UNAUTHORIZED', 'missing or unknown bearer token'), { 'www-authenticate': 'Bearer realm="sluice"' });
      }
      gw = batch.gw;
    }
    if (batch.gw !== gw) {
      const err = new SluiceError('SLUICE_FORBIDDEN', `this token belongs to gateway "${gw}", not "${batch.gw}"`);
      return this.reject(req, res, 'forbidden', 403, err, {}, gw);
    }
    let result;
    try {
      const hint = Number(req.headers['x-sluice-acked']);
      result = await ingestBatch(batch, {
        sequencer: this.sequencer,
        store: this.store!,
        sink: this.sink!,
        metrics: this.metrics,
        logger: this.log,
        alerts: this.alertService,
        onCommitted: (g, recs) => this.events.telemetry(g, recs),
      }, Number.isSafeInteger(hint) && hint >= 0 ? hint : undefined);
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

  /**
   * Hashed read tokens need an asynchronous scrypt check, done here once per request before routing,
   * so that `readerAllowed` stays synchronous for every route. False: a reply was sent (busy).
   */
  private async preverifyReader(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
    if (!this.readers?.hasHashes || this.readers.identify(req.headers.authorization) !== undefined || bearerToken(req.headers.authorization) === undefined) return true;
    const r = await this.readers.identifyAny(req.headers.authorization);
    if (r.result === 'ok') this.verifiedReaders.add(req);
    if (r.result !== 'busy') return true;
    this.metrics.error('auth_busy');
    req.resume();
    sendError(res, 503, 'SLUICE_CLOUD_UNAVAILABLE', 'token verification is busy; retry later', {}, { 'retry-after': String(this.cfg.retryAfterSeconds ?? 2) });
    return false;
  }

  private readerAllowed(req: IncomingMessage, res: ServerResponse): boolean {
    if (!this.readers || this.verifiedReaders.has(req) || this.readers.identify(req.headers.authorization) !== undefined) return true;
    this.metrics.error('unauthorized');
    sendError(res, 401, 'SLUICE_UNAUTHORIZED', 'missing or unknown bearer token', {}, { 'www-authenticate': 'Bearer realm="sluice"' });
    return false;
  }

  private async onSeries(req: IncomingMessage, res: ServerResponse, params: URLSearchParams): Promise<void> {
    if (!this.readerAllowed(req, res)) return;
    let r;
    try {
      r = parseSeriesRequest(params);
    } catch (err) {
      if (!isSluiceError(err)) throw err;
      this.metrics.error('bad_query');
      return sendError(res, 400, err.code, err.message);
    }
    const q = r.q;
    const how = {
      from: q.from,
      to: q.to,
      ...(q.every !== undefined ? { every: q.every, fn: q.fn } : {}),
      ...(q.window !== undefined ? { window: q.window, fn: q.fn ?? 'mean' } : {}),
    };
    if (r.kind === 'multi') {
      const mq = r.q;
      return this.runQuery(res, multiSeriesInfluxQL(mq), (series) => ({ ...how, series: multiSeriesFromSeries(series, mq) }));
    }
    const sq = r.q;
    await this.runQuery(res, seriesInfluxQL(sq), (series) => ({ device: sq.device, metric: sq.metric, ...how, points: seriesPoints(series) }));
  }

  private async onDevices(req: IncomingMessage, res: ServerResponse, params: URLSearchParams): Promise<void> {
    if (!this.readerAllowed(req, res)) return;
    const values = params.get('values');
    if (values !== '1' && values !== 'true') return this.runQuery(res, devicesInfluxQL(), (series) => ({ devices: devicesFromSeries(series) }));
    await this.runQuery(res, devicesInfluxQL(), async (newest) => {
      const latest = await this.query.query(devicesLatestInfluxQL(Date.now() - (this.cfg.latestValuesWindowMs ?? 86_400_000)));
      return { devices: withLatestValues(devicesFromSeries(newest), newest, latest) };
    });
  }

  private async onAlerts(req: IncomingMessage, res: ServerResponse, params: URLSearchParams): Promise<void> {
    if (!this.readerAllowed(req, res)) return;
    let q;
    try {
      q = parseAlertQuery(params);
    } catch (err) {
      if (!isSluiceError(err)) throw err;
      this.metrics.error('bad_query');
      return sendError(res, 400, err.code, err.message);
    }
    const current = currentAlerts(this.alertService?.engine.list() ?? [], q);
    if (!needsHistory(q)) return sendJson(res, 200, { alerts: mergeAlerts(current, [], q.limit) });
    await this.runQuery(res, historyInfluxQL(q), (series) => ({ alerts: mergeAlerts(current, historyFromSeries(series), q.limit) }));
  }

  private async runQuery(res: ServerResponse, q: string, shape: (series: Awaited<ReturnType<InfluxQlClient['query']>>) => unknown): Promise<void> {
    try {
      sendJson(res, 200, await shape(await this.query.query(q)));
    } catch (err) {
      if (!isSluiceError(err, 'SLUICE_INFLUX_QUERY')) throw err;
      // Nothing was ever written (the database is created with the first write): no data, not an error.
      if (err.detail?.statement && /database not found/i.test(err.message)) return sendJson(res, 200, await shape([]));
      this.metrics.error('influx_query');
      this.log.warn({ code: err.code }, err.message);
      // A statement InfluxDB refused (e.g. mean() of a boolean metric) is the caller's query; anything
      // else is an outage.
      if (err.detail?.statement) return sendError(res, 400, 'SLUICE_BAD_QUERY', err.message);
      sendError(res, 503, err.code, err.message, {}, { 'retry-after': String(this.cfg.retryAfterSeconds ?? 2) });
    }
  }
}
