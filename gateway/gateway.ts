/**
 * The gateway process: broker → ingest → durable log → forwarder, plus a small HTTP server for
 * /metrics, /healthz, /readyz and /status.
 *
 * Lifecycle: start() opens the log (resuming from its persisted cursor), starts the forwarder, then
 * the broker, then HTTP. stop() reverses it: stop accepting MQTT, let pending commits finish, stop
 * the forwarder after its in-flight batch, close LevelDB. Bounded by `stopTimeoutMs`.
 */
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import pino, { type Logger } from 'pino';
import type { PayloadLimits } from '../protocols/payload.js';
import { Broker, type BrokerConfig } from './broker.js';
import { GatewayClock, type ClockConfig } from './clock.js';
import { CounterRates, drainEtaSeconds } from './rates.js';
import { Forwarder, type ForwarderConfig } from './forwarder.js';
import { Ingest } from './ingest.js';
import { DEFAULT_LOG_CONFIG, DurableLog, type LogConfig } from './log.js';
import { commitWriteHistogram, gatewayMetrics } from './metrics.js';
import { DEFAULT_WINDOW_STAGE_CONFIG, WindowStage, type WindowStageConfig } from './windows-stage.js';

export interface GatewayConfig {
  /** This gateway's id at the cloud ([A-Za-z0-9_.-]{1,64}). */
  id: string;
  /** Where the log lives. */
  dataDir: string;
  mqtt: { host: string; port: number };
  /** Optional HTTP listener for /metrics, /healthz, /readyz, /status. */
  http?: { host: string; port: number };
  cloud: { url: string; token: string };
  allowAnonymous: boolean;
  log?: Partial<Omit<LogConfig, 'dir'>>;
  forwarder?: Partial<Omit<ForwarderConfig, 'cloudUrl' | 'token' | 'gatewayId'>>;
  broker?: Partial<Omit<BrokerConfig, 'host' | 'port' | 'allowAnonymous'>>;
  /** Payload limits (metrics, tags, sizes, nesting) applied by ingest; defaults in protocols/payload.ts. */
  payloadLimits?: PayloadLimits;
  stopTimeoutMs?: number;
  /** Level of the JSON logs (the CLI applies it; reload() changes it). */
  logLevel?: string;
  /** Event-time windows (gateway/windows-stage.ts); `windows: []` turns pre-aggregation off. */
  windows?: Partial<WindowStageConfig>;
  /** Wall clock trust for gateway-assigned timestamps (gateway/clock.ts). */
  clock?: Partial<ClockConfig>;
  logger?: Logger;
}

export class Gateway {
  readonly log: DurableLog;
  /** The aggregate lane: closed windows, forwarded by their own forwarder ahead of a raw backlog. */
  readonly aggLog: DurableLog;
  readonly ingest: Ingest;
  readonly forwarder: Forwarder;
  readonly aggForwarder: Forwarder;
  readonly windows?: WindowStage;
  /** Group write durations of the raw log (what PUBACKs wait for), from the first commit on; in /metrics. */
  readonly commitWrites = commitWriteHistogram();
  readonly broker: Broker;
  readonly clock: GatewayClock;
  readonly logger: Logger;
  private http?: Server;
  private started = false;
  private rejectWarnings = new Map<string, number>();
  /** Readings committed and forwarded per second, recently (rates.ts): is the backlog shrinking? */
  private readonly rates = new CounterRates(() => ({ committed: this.log.stats.committed, forwarded: this.forwarder.stats.recordsForwarded }));
  mqttUrl = '';
  httpUrl = '';

  constructor(readonly config: GatewayConfig) {
    this.logger = config.logger ?? pino({ name: 'sluice-gateway' });
    const windowCfg: WindowStageConfig = { ...DEFAULT_WINDOW_STAGE_CONFIG, ...config.windows };
    const windowsOn = windowCfg.windows.length > 0;
    this.log = new DurableLog({ dir: join(config.dataDir, 'log'), ...config.log, retainForReplay: windowsOn });
    // Aggregates are small (one record per device, window and minute): a tenth of the quota.
    const quota = config.log?.quotaBytes ?? DEFAULT_LOG_CONFIG.quotaBytes;
    this.aggLog = new DurableLog({ dir: join(config.dataDir, 'log'), ...config.log, quotaBytes: Math.max(64 * 1024, Math.floor(quota / 10)) }, { lane: 'agg', shareWith: this.log });
    const onLog = (level: 'warn' | 'error' | 'info', msg: string, extra?: object) => this.logger[level](extra ?? {}, msg);
    this.log.onCorruption = (message, detail) => this.logger.error(detail, message);
    this.aggLog.onCorruption = (message, detail) => this.logger.error(detail, message);
    this.log.onWarn = (message, detail) => this.logger.warn(detail, message);
    this.log.onCommitWrite = (ms) => this.commitWrites.observe(ms / 1000);
    this.clock = new GatewayClock(config.clock, {
      onSync: (info) => this.logger.warn(info, 'clock synchronised: readings stamped before are corrected if still in the log'),
    });
    if (windowsOn) this.windows = new WindowStage(this.log, this.aggLog, windowCfg, { onLog });
    this.ingest = new Ingest(this.log, {
      limits: config.payloadLimits,
      onReading: this.windows ? (r) => this.windows!.onReading(r) : undefined,
      clock: this.clock,
      onReject: (info) => {
        // Log a rejected payload once per client and reason per minute: counted always, logged sparingly.
        const key = `${info.client}|${info.code}`;
        const last = this.rejectWarnings.get(key) ?? 0;
        if (Date.now() - last > 60_000) {
          this.rejectWarnings.set(key, Date.now());
          this.logger.warn({ client: info.client, topic: info.topic, code: info.code }, `rejected payload: ${info.message}`);
        }
      },
    });
    this.forwarder = new Forwarder(this.log, { cloudUrl: config.cloud.url, token: config.cloud.token, gatewayId: config.id, ...config.forwarder }, { onLog, restamp: (r) => this.clock.restamp(r) });
    this.aggForwarder = new Forwarder(this.aggLog, { cloudUrl: config.cloud.url, token: config.cloud.token, gatewayId: config.id, ...config.forwarder }, { onLog });
    this.broker = new Broker({ host: config.mqtt.host, port: config.mqtt.port, allowAnonymous: config.allowAnonymous, ...config.broker }, this.ingest, onLog);
  }

  async start(): Promise<{ mqtt: string; http?: string }> {
    await this.log.open();
    await this.aggLog.open();
    await this.clock.start();
    await this.windows?.start();
    if (!this.clock.isSynced()) this.logger.warn({ check: this.clock.config.check }, 'clock not synchronised: readings without a device timestamp are flagged until it is');
    this.logger.info({ incarnation: this.log.incarnation, cursor: this.log.ackedSeq, next: this.log.lastSeq + 1, backlog: this.log.stats.backlogRecords }, 'log opened');
    this.aggForwarder.start();
    this.forwarder.start();
    this.rates.start();
    this.mqttUrl = await this.broker.start();
    if (this.config.allowAnonymous) this.logger.warn('anonymous MQTT access is allowed (--allow-anonymous): any client on the network may publish');
    if (this.config.http) this.httpUrl = await this.startHttp(this.config.http.host, this.config.http.port);
    this.started = true;
    return { mqtt: this.mqttUrl, http: this.httpUrl || undefined };
  }

  /**
   * SIGHUP: apply what can change without a restart. Today: the log level. Components that can
   * reload (e.g. a device registry) hook in here. Returns the names of what was applied; keys that
   * differ but need a restart are logged.
   */
  reload(next: GatewayConfig): string[] {
    const applied: string[] = [];
    if (next.logLevel && next.logLevel !== this.logger.level) {
      this.logger.level = next.logLevel;
      applied.push('logLevel');
    }
    const needRestart = (['id', 'dataDir', 'mqtt', 'http', 'cloud', 'allowAnonymous', 'log', 'forwarder', 'clock', 'broker', 'payloadLimits', 'windows'] as const).filter(
      (k) => JSON.stringify(next[k]) !== JSON.stringify(this.config[k]),
    );
    if (needRestart.length > 0) this.logger.warn({ keys: needRestart }, 'configuration changed in keys that need a restart; not applied');
    this.logger.info({ applied }, 'configuration reloaded');
    return applied;
  }

  snapshotStats() {
    return {
      id: this.config.id,
      incarnation: this.log.incarnation,
      ingest: this.ingest.stats,
      log: this.log.stats,
      forwarder: this.forwarder.stats,
      aggLog: this.aggLog.stats,
      aggForwarder: this.aggForwarder.stats,
      windows: this.windows?.stats(),
      broker: this.broker.stats,
      ...this.recentRates(),
    };
  }

  /**
   * Readings committed and forwarded per second over about the last 10 s (null in the first second),
   * and the seconds until the backlog is empty at those rates (null when it is not shrinking).
   */
  private recentRates(): { rates: { committedPerSec: number; forwardedPerSec: number; overSec: number } | null; drainEtaSec: number | null } {
    const r = this.rates.rates();
    if (!r) return { rates: null, drainEtaSec: null };
    const { committed, forwarded } = r.perSecond;
    return {
      rates: { committedPerSec: Math.round(committed), forwardedPerSec: Math.round(forwarded), overSec: Math.round(r.overMs / 100) / 10 },
      drainEtaSec: drainEtaSeconds(this.log.stats.backlogRecords, committed, forwarded),
    };
  }

  private async startHttp(host: string, port: number): Promise<string> {
    const registry = gatewayMetrics(this);
    this.http = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      const send = (code: number, body: string, type = 'text/plain; charset=utf-8') => {
        res.writeHead(code, { 'content-type': type });
        res.end(body);
      };
      if (req.method !== 'GET') return send(405, 'method not allowed\n');
      switch (url.pathname) {
        case '/healthz':
          return send(200, 'ok\n');
        case '/readyz': {
          const st = this.snapshotStats();
          const stuck = st.forwarder.circuit === 'open';
          const ok = this.started && !st.log.full && !stuck;
          return send(ok ? 200 : 503, ok ? 'ready\n' : `not ready:${st.log.full ? ' log full' : ''}${stuck ? ' cloud unreachable' : ''}\n`);
        }
        case '/status':
          return void this.log.oldestUnackedTs().then((ts) =>
            send(200, JSON.stringify({ ...this.snapshotStats(), oldestUnackedTs: ts ?? null }, null, 2), 'application/json'),
          );
        case '/metrics':
          return void registry.metrics().then(
            (text) => send(200, text, registry.contentType),
            (err) => send(500, String(err)),
          );
        default:
          return send(404, 'not found\n');
      }
    });
    await new Promise<void>((resolve, reject) => {
      this.http!.once('error', reject);
      this.http!.listen(port, host, () => resolve());
    });
    const addr = this.http.address();
    return `http://${host}:${typeof addr === 'object' && addr ? addr.port : port}`;
  }

  async stop(): Promise<void> {
    const deadline = this.config.stopTimeoutMs ?? 15_000;
    const work = (async () => {
      await this.broker.stop().catch(() => undefined);
      this.rates.stop();
      this.clock.stop();
      await Promise.all([this.forwarder.stop(), this.aggForwarder.stop()]);
      // Raw commits still in flight feed the windows; then the windows' last aggregates and
      // checkpoint; then the lanes close (the aggregate lane shares the raw lane's LevelDB).
      await this.log.drain();
      await this.windows?.stop();
      await this.aggLog.close();
      await this.log.close();
      if (this.http) {
        this.http.closeAllConnections?.();
        await new Promise<void>((r) => this.http!.close(() => r()));
      }
    })();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`gateway did not stop within ${deadline} ms`)), deadline);
      timer.unref();
    });
    try {
      await Promise.race([work, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
}
