/**
 * The gateway's configuration: one typed schema with defaults and a doc line per key. A YAML file
 * (`--config FILE`) and command-line flags fill it; flags win. Unknown keys and bad values are
 * refused at start with a message naming the key (SLUICE_BAD_CONFIG).
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { SluiceError } from '../protocols/errors.js';
import { GATEWAY_ID_RE } from '../protocols/batch.js';
import { parseDuration, parseHostPort, parseSize } from '../protocols/units.js';
import type { GatewayConfig } from './gateway.js';

const duration = (what: string) => z.union([z.string(), z.number()]).transform((v) => parseDuration(v, what));
const size = (what: string) => z.union([z.string(), z.number()]).transform((v) => parseSize(v, what));
const hostPort = (what: string) => z.string().transform((v) => parseHostPort(v, what));

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
      })
      .strict()
      .default({ sync: 'always', syncInterval: 1000, quota: 1024 ** 3, reserve: 64 * 1024 ** 2, whenFull: 'block', maxGroup: 2000 }),
    /** Forwarding to the cloud. */
    forward: z
      .object({
        /** Most records per batch. */
        maxBatchRecords: z.number().int().min(1).max(100_000).default(5000),
        /** Per-request timeout. */
        timeout: duration('forward.timeout').default(30_000),
        /** Longest retry backoff; also the circuit breaker's probe interval while the cloud is down. */
        maxBackoff: duration('forward.maxBackoff').default(30_000),
      })
      .strict()
      .default({ maxBatchRecords: 5000, timeout: 30_000, maxBackoff: 30_000 }),
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
  if (env.SLUICE_CLOUD_TOKEN && merged.cloudToken === undefined) merged.cloudToken = env.SLUICE_CLOUD_TOKEN;
  for (const [k, v] of Object.entries(flags)) {
    if (v === undefined) continue;
    if (k.includes('.')) {
      const [outer, inner] = k.split('.');
      merged[outer] = { ...((merged[outer] as object) ?? {}), [inner]: v };
    } else merged[k] = v;
  }
  let parsed: z.output<typeof gatewayConfigSchema>;
  try {
    parsed = gatewayConfigSchema.parse(merged);
  } catch (err) {
    throw configError(err, file);
  }
  return {
    id: parsed.id,
    dataDir: parsed.data,
    mqtt: parsed.mqtt,
    http: parsed.http,
    cloud: { url: parsed.cloud, token: parsed.cloudToken },
    allowAnonymous: parsed.allowAnonymous,
    log: {
      sync: parsed.log.sync,
      syncIntervalMs: parsed.log.syncInterval,
      quotaBytes: parsed.log.quota,
      reserveBytes: parsed.log.reserve,
      whenFull: parsed.log.whenFull,
      maxGroup: parsed.log.maxGroup,
    },
    forwarder: {
      maxBatchRecords: parsed.forward.maxBatchRecords,
      requestTimeoutMs: parsed.forward.timeout,
      maxBackoffMs: parsed.forward.maxBackoff,
      breakerCooldownMs: parsed.forward.maxBackoff,
    },
  };
}

/** Turn a zod (or unit-parsing) error into one message naming every offending key. */
export function configError(err: unknown, file?: string): SluiceError {
  if (err instanceof SluiceError) return err;
  if (err instanceof z.ZodError) {
    const lines = err.issues.map((i) => {
      const key = i.path.join('.') || '(top level)';
      if (i.code === 'unrecognized_keys') return `unknown key${i.keys.length > 1 ? 's' : ''} ${i.keys.map((k) => `"${[...i.path, k].join('.')}"`).join(', ')}`;
      if (i.code === 'invalid_type' && (i as any).input === undefined) return `missing required key "${key}"`;
      return `"${key}": ${i.message}`;
    });
    return new SluiceError('SLUICE_BAD_CONFIG', `bad configuration${file ? ` in ${file}` : ''}: ${lines.join('; ')}`, { cause: err });
  }
  return new SluiceError('SLUICE_BAD_CONFIG', `bad configuration: ${(err as Error).message}`, { cause: err });
}
