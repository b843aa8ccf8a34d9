/**
 * The security keys of the gateway's configuration (config.ts spreads them into its schema):
 *
 *   registry        device registry file (YAML, registry.ts); flag --registry
 *   mqtts           HOST:PORT of the MQTT-over-TLS listener; flag --mqtts (needs tls.cert/tls.key)
 *   tls.cert        PEM server certificate (chain); --tls-cert
 *   tls.key         PEM private key; --tls-key
 *   tls.ca          CA bundle that signs client certificates; --tls-ca
 *   tls.clientAuth  none | optional | require (client certificates, device id = CN); --tls-client-auth
 *   cloudCa         CA bundle the cloud's HTTPS certificate is verified against; --cloud-ca
 *   limits.*        admission limits, each with a default (README "Security"):
 *     maxPacket 256KiB · maxPayload 64KiB · maxTopicLength 256 · maxTopicLevels 16 · maxMetrics 100 ·
 *     maxTags 16 · maxTagValueLength 128 · maxDepth 8 · publishRate 1000/s · publishBurst 2000 ·
 *     maxConnections 10000 · connectTimeout 10s
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { SluiceError } from '../protocols/errors.js';
import { DEFAULT_PAYLOAD_LIMITS, type PayloadLimits } from '../protocols/payload.js';
import { parseDuration, parseHostPort, parseSize } from '../protocols/units.js';
import { DEFAULT_ADMISSION_LIMITS } from './auth-limits.js';
import type { BrokerConfig } from './broker.js';
import { fetchWithCa } from './tls-fetch.js';

const size = (what: string) => z.union([z.string(), z.number()]).transform((v) => parseSize(v, what));
const duration = (what: string) => z.union([z.string(), z.number()]).transform((v) => parseDuration(v, what));
const int = (min: number, max: number) => z.number().int().min(min).max(max);

/** Schema keys for config.ts's gatewayConfigSchema. */
export const GATEWAY_SECURITY_KEYS = {
  /** Device registry file (sluice device add|list|remove). */
  registry: z.string().min(1).optional(),
  /** MQTT over TLS listen address HOST:PORT. */
  mqtts: z.string().transform((v) => parseHostPort(v, 'mqtts')).optional(),
  /** TLS material of the MQTTS listener. */
  tls: z
    .object({
      cert: z.string().min(1),
      key: z.string().min(1),
      ca: z.string().min(1).optional(),
      clientAuth: z.enum(['none', 'optional', 'require']).default('none'),
    })
    .strict()
    .optional(),
  /** CA bundle for the cloud's certificate (HTTPS with a private CA). */
  cloudCa: z.string().min(1).optional(),
  /** Admission limits. */
  limits: z
    .object({
      maxPacket: size('limits.maxPacket').default(DEFAULT_ADMISSION_LIMITS.maxPacketBytes),
      maxPayload: size('limits.maxPayload').default(DEFAULT_PAYLOAD_LIMITS.maxBytes),
      maxTopicLength: int(8, 65535).default(DEFAULT_ADMISSION_LIMITS.maxTopicLength),
      maxTopicLevels: int(3, 100).default(DEFAULT_ADMISSION_LIMITS.maxTopicLevels),
      maxMetrics: int(1, 10_000).default(DEFAULT_PAYLOAD_LIMITS.maxMetrics),
      maxTags: int(0, 1000).default(DEFAULT_PAYLOAD_LIMITS.maxTags),
      maxTagValueLength: int(1, 65535).default(DEFAULT_PAYLOAD_LIMITS.maxTagValueLength),
      maxDepth: int(2, 64).default(DEFAULT_PAYLOAD_LIMITS.maxDepth!),
      publishRate: z.number().min(0).default(DEFAULT_ADMISSION_LIMITS.publishRate),
      publishBurst: int(1, 10_000_000).default(DEFAULT_ADMISSION_LIMITS.publishBurst),
      maxConnections: int(1, 1_000_000).default(10_000),
      connectTimeout: duration('limits.connectTimeout').default(DEFAULT_ADMISSION_LIMITS.connectTimeoutMs),
    })
    .strict()
    .prefault({}),
};

const securitySchema = z.object(GATEWAY_SECURITY_KEYS);
type SecurityParsed = z.output<typeof securitySchema>;

export interface GatewaySecurityConfig {
  broker: Partial<Omit<BrokerConfig, 'host' | 'port' | 'allowAnonymous'>>;
  payloadLimits: PayloadLimits;
  /** fetch for the forwarder when cloudCa is set. */
  cloudFetch?: typeof fetch;
}

function bad(message: string): SluiceError {
  return new SluiceError('SLUICE_BAD_CONFIG', message);
}

/** Cross-key checks and the mapping onto broker, ingest and forwarder settings. */
export function gatewaySecurity(p: SecurityParsed, cloudUrl: string): GatewaySecurityConfig {
  if (p.mqtts && !p.tls) throw bad('"mqtts" needs "tls.cert" and "tls.key" (--tls-cert, --tls-key)');
  if (p.tls && !p.mqtts) throw bad('"tls" is set but "mqtts" (--mqtts HOST:PORT) is not: where should MQTT over TLS listen?');
  if (p.tls && p.tls.clientAuth !== 'none' && !p.tls.ca) throw bad(`"tls.clientAuth" ${p.tls.clientAuth} needs "tls.ca" (--tls-ca), the CA that signs client certificates`);
  if (p.limits.maxPayload > p.limits.maxPacket) throw bad('"limits.maxPayload" cannot exceed "limits.maxPacket"');
  const l = p.limits;
  const broker: GatewaySecurityConfig['broker'] = {
    maxPacketBytes: l.maxPacket,
    maxTopicLength: l.maxTopicLength,
    maxTopicLevels: l.maxTopicLevels,
    publishRate: l.publishRate,
    publishBurst: l.publishBurst,
    maxConnections: l.maxConnections,
    connectTimeoutMs: l.connectTimeout,
  };
  if (p.registry) broker.registryFile = p.registry;
  if (p.mqtts && p.tls) broker.tls = { ...p.mqtts, ...p.tls };
  const out: GatewaySecurityConfig = {
    broker,
    payloadLimits: { maxBytes: l.maxPayload, maxMetrics: l.maxMetrics, maxTags: l.maxTags, maxTagValueLength: l.maxTagValueLength, maxDepth: l.maxDepth },
  };
  if (p.cloudCa) {
    if (!cloudUrl.startsWith('https:')) throw bad('"cloudCa" (--cloud-ca) only applies to an https:// cloud URL');
    let ca: Buffer;
    try {
      ca = readFileSync(p.cloudCa);
    } catch (err) {
      throw bad(`"cloudCa": cannot read ${p.cloudCa}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    out.cloudFetch = fetchWithCa(ca);
  }
  return out;
}
