/**
 * The gateway's configuration: one typed schema with defaults and a doc line per key. A YAML file
 * (`--config FILE`), environment variables (GATEWAY_ENV below: secrets and per-host values) and
 * command-line flags fill it; precedence flag > environment > file > default. Unknown keys and bad
 * values are refused at start with a message naming the key (SLUICE_BAD_CONFIG).
 * deploy/gateway.sample.yaml is the commented sample; a test loads it through this loader.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { SluiceError } from '../protocols/errors.js';
import { GATEWAY_ID_RE } from '../protocols/batch.js';
import { parseDuration, parseHostPort, parseSize } from '../protocols/units.js';
import { CLOCK_FLOOR_MS } from './clock.js';
import { DEFAULT_LOG_CONFIG } from './log.js';
import { DEFAULT_FORWARDER_CONFIG } from './forwarder.js';
import { GATEWAY_SECURITY_KEYS, gatewaySecurity } from './auth-config.js';
import type { GatewayConfig } from './gateway.js';

/** Environment variable → config key. Empty variables are ignored. */
export const GATEWAY_ENV: Record<string, string> = {
  SLUICE_GATEWAY_ID: 'id',
  SLUICE_CLOUD_URL: 'cloud',
  SLUICE_CLOUD_TOKEN: 'cloudToken',
  SLUICE_LOG_LEVEL: 'logLevel',
};

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

const duration = (what: string) => z.union([z.string(), z.number()]).transform((v) => parseDuration(v, what));
const size = (what: string) => z.union([z.string(), z.number()]).transform((v) => parseSize(v, what));
const hostPort = (what: string) => z.string().transform((v) => parseHostPort(v, what));
/** An ISO date ("2026-11-01", "2026-11-01T00:00:00Z") or ms since the epoch. */
const instant = () =>
  z.union([z.string(), z.number(), z.date()]).transform((v, ctx) => {
    const ms = v instanceof Date ? v.getTime() : typeof v === 'number' ? v : Date.parse(v);
    if (!Number.isFinite(ms) || ms < 0) {
      ctx.addIssue({ code: 'custom', message: `"${String(v)}" is not a date (example: 2026-11-01)` });
      return z.NEVER;
    }
    return ms;
  });

export const gatewayConfigSchema = z
  .object({
    /** This gateway's id at the cloud. */
    id: z.string().regex(GATEWAY_ID_RE, 'must match [A-Za-z0-9_.-]{1,64}'),
    /** Data directory: the durable log and window state live here. */
    data: z.string().min(1),
    /** MQTT listen address HOST:PORT (port 0 = any free port). */
    mqtt: hostPort('mqtt').default({ host: '0.0.0.0', port: 1883 }),
    /** HTTP listen address for /metrics, /healthz, /readyz, /status (omit to disable). */
    http: hostPort('http').optional(),
    /** Cloud ingest base URL, e.g. https://cloud.example:8443 */
    cloud: z.string().url(),
    /** Bearer token of this gateway at the cloud (env SLUICE_CLOUD_TOKEN). */
    cloudToken: z.string().min(1),
    /** Accept MQTT clients without credentials (logs a warning at start). */
    allowAnonymous: z.boolean().default(false),
    /** Log level of the JSON logs on stderr (env SLUICE_LOG_LEVEL; reloaded on SIGHUP). */
    logLevel: z.enum(LOG_LEVELS).default('info'),
    /** Longest graceful stop on SIGTERM (stop MQTT, finish commits and the batch in flight, close LevelDB); then exit 1. */
    stopTimeout: duration('stopTimeout').default(15_000),
    /** Wall clock trust (gateway/clock.ts): readings stamped by an unsynchronised clock are flagged and corrected. */
    clock: z
      .object({
        /** auto: ask the kernel (systemd) and check the floor; floor: the floor only; off: always trust the clock. */
        check: z.enum(['auto', 'floor', 'off']).default('auto'),
        /** A clock reading before this date is never trusted (default: this release's date). */
        notBefore: instant().default(CLOCK_FLOOR_MS),
        /** While unsynchronised, how often to ask the kernel. */
        probeInterval: duration('clock.probeInterval').default(5000),
      })
      .strict()
      .default({ check: 'auto', notBefore: CLOCK_FLOOR_MS, probeInterval: 5000 }),
    /** Durable log settings. */
    log: z
      .object({
        /** always: fsync each group commit (survives power loss); interval: fsync every syncInterval; never: OS-buffered. */
        sync: z.enum(['always', 'interval', 'never']).default('always'),
        /** With sync: interval, time between fsyncs. */
        syncInterval: duration('log.syncInterval').default(1000),
        /** Most bytes of unacknowledged records kept on disk. */
        quota: size('log.quota').default(1024 ** 3),
        /** Free disk space never used by the log. */
        reserve: size('log.reserve').default(64 * 1024 ** 2),
        /** When the quota is reached: block (stop acknowledging) or drop-oldest (evict, counted). */
        whenFull: z.enum(['block', 'drop-oldest']).default('block'),
        /** Most records in one group commit. */
        maxGroup: z.number().int().min(1).max(100_000).default(2000),
        /**
         * At low rates, the longest a publish waits for others to share its commit (and fsync)
         * before its PUBACK: fewer fsyncs and less CPU and SD-card wear against that much PUBACK
         * delay. Not applied once traffic is heavy (gateway/log.ts scheduleFlush).
         */
        commitLinger: duration('log.commitLinger').refine((ms) => ms <= 1000, 'log.commitLinger must be at most 1s').default(DEFAULT_LOG_CONFIG.commitLingerMs),
        /** The wait ends early once nothing else was published for this long. */
        commitIdle: duration('log.commitIdle').refine((ms) => ms >= 1 && ms <= 1000, 'log.commitIdle must be between 1ms and 1s').default(DEFAULT_LOG_CONFIG.commitIdleMs),
        /**
         * Under heavy traffic (readings keep arriving while a commit is written), the longest the
         * next commit gathers readings before it is written (gateway/log.ts gatherGroup): fewer
         * fsyncs against that much more PUBACK delay during a flood.
         */
        commitGather: duration('log.commitGather').refine((ms) => ms >= 1 && ms <= 1000, 'log.commitGather must be between 1ms and 1s').default(DEFAULT_LOG_CONFIG.commitGatherMs),
        /**
         * A commit (group write, with its fsync under `sync: always`) taking this long or longer is
         * counted and logged as a warning, at most once a minute: QoS 1 PUBACKs wait for it.
         */
        slowWrite: duration('log.slowWrite').refine((ms) => ms >= 1, 'log.slowWrite must be at least 1ms').default(DEFAULT_LOG_CONFIG.slowWriteMs),
      })
      .strict()
      .default({ sync: 'always', syncInterval: 1000, quota: 1024 ** 3, reserve: 64 * 1024 ** 2, whenFull: 'block', maxGroup: 2000, commitLinger: DEFAULT_LOG_CONFIG.commitLingerMs, commitIdle: DEFAULT_LOG_CONFIG.commitIdleMs, commitGather: DEFAULT_LOG_CONFIG.commitGatherMs, slowWrite: DEFAULT_LOG_CONFIG.slowWriteMs }),
    /** Forwarding to the cloud. */
    forward: z
      .object({
        /** Most records per batch. */
        maxBatchRecords: z.number().int().min(1).max(100_000).default(5000),
        /** Per-request timeout. */
        timeout: duration('forward.timeout').default(30_000),
        /** Longest retry backoff; also the circuit breaker's probe interval while the cloud is down. */
        maxBackoff: duration('forward.maxBackoff').default(30_000),
        /** Batches in flight at once while catching up on a backlog (acked in order); 1 = one at a time. */
        maxInFlight: z.number().int().min(1).max(16).default(3),
        /** With a small backlog, how long a batch waits to fill before it is sent: latency against requests (and CPU) per second. */
        linger: duration('forward.linger').refine((ms) => ms <= 10_000, 'forward.linger must be at most 10s').default(DEFAULT_FORWARDER_CONFIG.lingerMs),
      })
      .strict()
      .default({ maxBatchRecords: 5000, timeout: 30_000, maxBackoff: 30_000, maxInFlight: 3, linger: DEFAULT_FORWARDER_CONFIG.lingerMs }),
    /** Event-time pre-aggregation on the gateway. */
    windows: z
      .object({
        /** Windows per device and metric: "1m" tumbling, "5m/1m" hopping (size/advance); [] turns it off. */
        specs: z.array(z.string()).default(['1m']),
        /** How late (event time) a reading may be and still count before its window closes. */
        allowedLateness: duration('windows.allowedLateness').default(10_000),
        /** After a window closed, a late reading within this long re-emits it with a revision. */
        grace: duration('windows.grace').default(60_000),
        /** A silent device's open windows close after this long on the gateway clock (default 2 × largest window + lateness). */
        idleTimeout: duration('windows.idleTimeout').optional(),
        /** How often window state is checkpointed to the log. */
        checkpoint: duration('windows.checkpoint').default(5_000),
      })
      .strict()
      .default({ specs: ['1m'], allowedLateness: 10_000, grace: 60_000, checkpoint: 5_000 }),
    /** Security: registry, mqtts, tls.*, cloudCa, limits.* (documented in auth-config.ts). */
    ...GATEWAY_SECURITY_KEYS,
  })
  .strict();

export type GatewayFileConfig = z.input<typeof gatewayConfigSchema>;

/** Merge the YAML file (if any), environment secrets and flags, then validate. */
export function loadGatewayConfig(file: string | undefined, flags: Record<string, unknown>, env = process.env): GatewayConfig {
  let doc: Record<string, unknown> = {};
  if (file) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new SluiceError('SLUICE_BAD_CONFIG', `cannot read config file ${file}: ${(err as Error).message}`, { cause: err });
    }
    try {
      doc = (parseYaml(text) as Record<string, unknown>) ?? {};
    } catch (err) {
      throw new SluiceError('SLUICE_BAD_CONFIG', `config file ${file} is not valid YAML: ${(err as Error).message}`, { cause: err });
    }
    if (typeof doc !== 'object' || Array.isArray(doc)) throw new SluiceError('SLUICE_BAD_CONFIG', `config file ${file} must be a YAML mapping`);
  }
  const merged: Record<string, unknown> = { ...doc };
  const fromEnv: Record<string, string> = {};
  for (const [name, key] of Object.entries(GATEWAY_ENV)) {
    if (!env[name]) continue;
    merged[key] = env[name];
    fromEnv[key] = name;
  }
  for (const [k, v] of Object.entries(flags)) {
    if (v === undefined) continue;
    if (k.includes('.')) {
      const [outer, inner] = k.split('.');
      merged[outer] = { ...((merged[outer] as object) ?? {}), [inner]: v };
    } else merged[k] = v;
    delete fromEnv[k];
  }
  let parsed: z.output<typeof gatewayConfigSchema>;
  try {
    parsed = gatewayConfigSchema.parse(merged);
  } catch (err) {
    throw configError(err, file, fromEnv, merged);
  }
  const security = gatewaySecurity(parsed, parsed.cloud);
  return {
    id: parsed.id,
    dataDir: parsed.data,
    mqtt: parsed.mqtt,
    http: parsed.http,
    cloud: { url: parsed.cloud, token: parsed.cloudToken },
    allowAnonymous: parsed.allowAnonymous,
    logLevel: parsed.logLevel,
    stopTimeoutMs: parsed.stopTimeout,
    clock: { check: parsed.clock.check, notBeforeMs: parsed.clock.notBefore, probeIntervalMs: parsed.clock.probeInterval },
    log: {
      sync: parsed.log.sync,
      syncIntervalMs: parsed.log.syncInterval,
      quotaBytes: parsed.log.quota,
      reserveBytes: parsed.log.reserve,
      whenFull: parsed.log.whenFull,
      maxGroup: parsed.log.maxGroup,
      commitLingerMs: parsed.log.commitLinger,
      commitIdleMs: parsed.log.commitIdle,
      commitGatherMs: parsed.log.commitGather,
      slowWriteMs: parsed.log.slowWrite,
    },
    forwarder: {
      maxBatchRecords: parsed.forward.maxBatchRecords,
      requestTimeoutMs: parsed.forward.timeout,
      maxBackoffMs: parsed.forward.maxBackoff,
      breakerCooldownMs: parsed.forward.maxBackoff,
      maxInFlight: parsed.forward.maxInFlight,
      lingerMs: parsed.forward.linger,
      ...(security.cloudFetch ? { fetchImpl: security.cloudFetch } : {}),
    },
    broker: security.broker,
    payloadLimits: security.payloadLimits,
    windows: {
      windows: parsed.windows.specs,
      allowedLatenessMs: parsed.windows.allowedLateness,
      graceMs: parsed.windows.grace,
      idleTimeoutMs: parsed.windows.idleTimeout,
      checkpointMs: parsed.windows.checkpoint,
    },
  };
}

/** Turn a zod (or unit-parsing) error into one message naming every offending key. */
export function configError(err: unknown, file?: string, fromEnv: Record<string, string> = {}, input?: unknown): SluiceError {
  if (err instanceof SluiceError) return err;
  if (err instanceof z.ZodError) {
    const lines = err.issues.map((i) => {
      const key = i.path.join('.') || '(top level)';
      const env = fromEnv[String(i.path[0])];
      if (i.code === 'unrecognized_keys') return `unknown key${i.keys.length > 1 ? 's' : ''} ${i.keys.map((k) => `"${[...i.path, k].join('.')}"`).join(', ')}`;
      // zod does not report the input value; look it up to tell "missing" from "wrong type".
      const given = input === undefined ? (i as any).input : i.path.reduce<any>((o, k) => (o == null ? undefined : o[k as string]), input);
      if (i.code === 'invalid_type' && given === undefined) {
        const envName = Object.keys(GATEWAY_ENV).find((n) => GATEWAY_ENV[n] === key);
        return `missing required key "${key}"${envName ? ` (or env ${envName})` : ''}`;
      }
      return `"${key}"${env ? ` (from ${env})` : ''}: ${i.message}`;
    });
    return new SluiceError('SLUICE_BAD_CONFIG', `bad configuration${file ? ` in ${file}` : ''}: ${lines.join('; ')}`, { cause: err });
  }
  return new SluiceError('SLUICE_BAD_CONFIG', `bad configuration: ${(err as Error).message}`, { cause: err });
}
