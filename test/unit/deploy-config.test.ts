/**
 * Configuration as an operator meets it: the commented samples in deploy/ load through the real
 * loaders (and document every key), environment overrides work, and every bad value is refused
 * with SLUICE_BAD_CONFIG naming the key.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { CloudFileSchema, parseCloudFile, resolveCloudConfig, resolveCloudLogLevel } from '../../cloud/config.js';
import { ROOT } from '../../deploy/processes.js';
import { CLOCK_FLOOR_MS } from '../../gateway/clock.js';
import { gatewayConfigSchema, loadGatewayConfig } from '../../gateway/config.js';
import { tempDir } from '../support/tmp.js';

const GATEWAY_SAMPLE = join(ROOT, 'deploy', 'gateway.sample.yaml');
const CLOUD_SAMPLES = [join(ROOT, 'deploy', 'cloud.sample.yaml'), join(ROOT, 'cloud', 'cloud.sample.yaml')].filter((p) => existsSync(p));

function errorOf(fn: () => unknown): { code?: string; message: string } {
  try {
    fn();
  } catch (e) {
    return e as { code?: string; message: string };
  }
  throw new Error('expected an error');
}

/** Dotted key paths of a zod object schema (nested objects included), unwrapping defaults/optionals. */
function schemaKeys(schema: z.ZodType, prefix = ''): string[] {
  let s: any = schema;
  while (s?.def && (s.def.type === 'default' || s.def.type === 'prefault' || s.def.type === 'optional' || s.def.type === 'pipe' || s.def.type === 'nullable')) {
    s = s.def.type === 'pipe' ? s.def.in : s.def.innerType;
  }
  if (s?.def?.type !== 'object') return [];
  return Object.entries(s.def.shape as Record<string, z.ZodType>).flatMap(([k, v]) => {
    const path = prefix ? `${prefix}.${k}` : k;
    return [path, ...schemaKeys(v, path)];
  });
}

/** Does the YAML text mention `path` as a key (commented out or not) at the right nesting? */
function documents(text: string, path: string): boolean {
  const parts = path.split('.');
  const leaf = parts[parts.length - 1].replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const indent = parts.length > 1 ? '\\s{2,}' : '';
  return new RegExp(`^#?\\s?${indent}${leaf}:`, 'm').test(text) || (parts.length > 1 && new RegExp(`^\\s+#?\\s*${leaf}:`, 'm').test(text));
}

describe('sample configs in deploy/', () => {
  it('the gateway sample loads through the real loader and equals the defaults', () => {
    const c = loadGatewayConfig(GATEWAY_SAMPLE, {}, { SLUICE_CLOUD_TOKEN: 'from-env' });
    const d = loadGatewayConfig(undefined, { id: 'my-site', data: '/var/lib/sluice/gateway', cloud: 'https://cloud.example.com', http: '127.0.0.1:8788' }, { SLUICE_CLOUD_TOKEN: 'from-env' });
    expect(c).toEqual(d);
    expect(c.cloud.token).toBe('from-env');
    expect(c.clock?.notBeforeMs).toBe(CLOCK_FLOOR_MS);
    expect(c.log).toMatchObject({ commitLingerMs: 50, commitIdleMs: 5, commitGatherMs: 10, slowWriteMs: 1000 });
  });

  it('the gateway sample documents every key of the schema', () => {
    const text = readFileSync(GATEWAY_SAMPLE, 'utf8');
    const missing = schemaKeys(gatewayConfigSchema).filter((k) => !documents(text, k));
    expect(missing, `keys of gateway/config.ts missing from deploy/gateway.sample.yaml`).toEqual([]);
  });

  it.each(CLOUD_SAMPLES)('the cloud sample %s loads through the real loader', (file) => {
    const parsed = parseCloudFile(readFileSync(file, 'utf8'), file);
    const c = resolveCloudConfig({}, parsed, { SLUICE_GATEWAY_TOKENS: 'site-a=t1 site-b=t2' });
    expect(c.dataDir).toBe('/var/lib/sluice/cloud');
    expect(c.gatewayTokens).toMatchObject({ 'site-b': 't2' });
    expect(resolveCloudLogLevel(undefined, parsed, {})).toBe('info');
  });

  it('the deploy/ cloud sample documents every key of the schema', () => {
    const text = readFileSync(join(ROOT, 'deploy', 'cloud.sample.yaml'), 'utf8');
    const missing = Object.keys(CloudFileSchema.shape).filter((k) => !documents(text, k));
    expect(missing, 'keys of cloud/config.ts missing from deploy/cloud.sample.yaml').toEqual([]);
  });
});

describe('gateway config refusals name the key', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  beforeAll(async () => {
    dir = await tempDir('sluice-cfg-');
  });
  afterAll(() => dir.remove());
  const base = 'id: g1\ndata: /tmp/g1\ncloud: http://127.0.0.1:8787\ncloudToken: t\n';
  const file = (name: string, text: string) => {
    const p = join(dir.path, name);
    writeFileSync(p, text);
    return p;
  };

  it.each([
    ['unknown top-level key', `${base}mqt: 0.0.0.0:1883\n`, '"mqt"'],
    ['unknown nested key', `${base}log:\n  sycn: always\n`, '"log.sycn"'],
    ['bad id', base.replace('g1\n', 'has space\n'), '"id"'],
    ['missing id', base.replace('id: g1\n', ''), '"id"'],
    ['missing data', base.replace('data: /tmp/g1\n', ''), '"data"'],
    ['mqtt not HOST:PORT', `${base}mqtt: localhost\n`, 'mqtt'],
    ['mqtt port out of range', `${base}mqtt: 0.0.0.0:70000\n`, 'mqtt'],
    ['mqtt of the wrong type', `${base}mqtt: 1883\n`, '"mqtt"'],
    ['http not HOST:PORT', `${base}http: yes\n`, 'http'],
    ['cloud not a URL', base.replace('http://127.0.0.1:8787', 'cloud.example'), '"cloud"'],
    ['empty token', base.replace('cloudToken: t', 'cloudToken: ""'), '"cloudToken"'],
    ['allowAnonymous not a boolean', `${base}allowAnonymous: maybe\n`, '"allowAnonymous"'],
    ['logLevel', `${base}logLevel: loud\n`, '"logLevel"'],
    ['stopTimeout', `${base}stopTimeout: soon\n`, 'stopTimeout'],
    ['clock.check', `${base}clock:\n  check: ntp\n`, '"clock.check"'],
    ['clock.notBefore', `${base}clock:\n  notBefore: last tuesday\n`, '"clock.notBefore"'],
    ['clock.probeInterval', `${base}clock:\n  probeInterval: -1s\n`, 'clock.probeInterval'],
    ['log.sync', `${base}log:\n  sync: sometimes\n`, '"log.sync"'],
    ['log.syncInterval', `${base}log:\n  syncInterval: 1 sec\n`, 'log.syncInterval'],
    ['log.quota', `${base}log:\n  quota: lots\n`, 'log.quota'],
    ['log.reserve', `${base}log:\n  reserve: 12 parsecs\n`, 'log.reserve'],
    ['log.whenFull', `${base}log:\n  whenFull: panic\n`, '"log.whenFull"'],
    ['log.maxGroup', `${base}log:\n  maxGroup: 0\n`, '"log.maxGroup"'],
    ['log.commitLinger', `${base}log:\n  commitLinger: 2s\n`, 'log.commitLinger must be at most 1s'],
    ['log.commitIdle', `${base}log:\n  commitIdle: 0ms\n`, 'log.commitIdle must be between 1ms and 1s'],
    ['log.commitGather', `${base}log:\n  commitGather: 5s\n`, 'log.commitGather must be between 1ms and 1s'],
    ['log.slowWrite', `${base}log:\n  slowWrite: 0ms\n`, 'log.slowWrite must be at least 1ms'],
    ['forward.maxBatchRecords', `${base}forward:\n  maxBatchRecords: many\n`, '"forward.maxBatchRecords"'],
    ['forward.timeout', `${base}forward:\n  timeout: forever\n`, 'forward.timeout'],
    ['forward.maxBackoff', `${base}forward:\n  maxBackoff: 5 minutes\n`, 'forward.maxBackoff'],
    ['a list instead of a mapping', '- id: g1\n', 'mapping'],
    ['invalid YAML', 'id: [g1\n', 'not valid YAML'],
  ])('%s', (name, text, key) => {
    const e = errorOf(() => loadGatewayConfig(file(`${name.replace(/\W+/g, '-')}.yaml`, text), {}, {}));
    expect(e.code).toBe('SLUICE_BAD_CONFIG');
    expect(e.message).toContain(key);
  });

  it('the commit waits come from the file', () => {
    const c = loadGatewayConfig(file('waits.yaml', `${base}log:\n  commitLinger: 20ms\n  commitIdle: 2ms\n  commitGather: 25ms\n  slowWrite: 250ms\n`), {}, {});
    expect(c.log).toMatchObject({ commitLingerMs: 20, commitIdleMs: 2, commitGatherMs: 25, slowWriteMs: 250 });
  });

  it('a missing file is refused naming it', () => {
    const e = errorOf(() => loadGatewayConfig(join(dir.path, 'nope.yaml'), {}, {}));
    expect(e.code).toBe('SLUICE_BAD_CONFIG');
    expect(e.message).toContain('nope.yaml');
  });

  it('environment overrides the file, flags override the environment; a bad env value names the variable', () => {
    const p = file('env.yaml', `${base}logLevel: warn\n`);
    const env = { SLUICE_CLOUD_TOKEN: 'env-token', SLUICE_LOG_LEVEL: 'debug', SLUICE_GATEWAY_ID: 'env-id', SLUICE_CLOUD_URL: 'https://env.example' };
    const c = loadGatewayConfig(p, {}, env);
    expect(c).toMatchObject({ id: 'env-id', logLevel: 'debug', cloud: { url: 'https://env.example', token: 'env-token' } });
    expect(loadGatewayConfig(p, { logLevel: 'error', cloudToken: 'flag-token' }, env)).toMatchObject({ logLevel: 'error', cloud: { token: 'flag-token' } });
    const e = errorOf(() => loadGatewayConfig(p, {}, { SLUICE_LOG_LEVEL: 'chatty' }));
    expect(e.message).toContain('"logLevel" (from SLUICE_LOG_LEVEL)');
    const missing = errorOf(() => loadGatewayConfig(file('notoken.yaml', base.replace('cloudToken: t\n', '')), {}, {}));
    expect(missing.message).toContain('"cloudToken" (or env SLUICE_CLOUD_TOKEN)');
  });
});

describe('cloud config refusals name the key', () => {
  it.each([
    ['data: /d\nlisten-on: 1\n', '"listen-on"'],
    ['data: /d\nlog-level: chatty\n', 'log-level'],
    ['data: /d\ninflux-api: 3\n', 'influx-api'],
    ['data: /d\ngateway-token: 5\n', 'gateway-token'],
    ['- data\n', '(top level)'],
  ])('file %j names %s', (text, key) => {
    const e = errorOf(() => parseCloudFile(text, 'c.yaml'));
    expect(e.code).toBe('SLUICE_BAD_CONFIG');
    expect(e.message).toContain(key);
  });

  it('SLUICE_GATEWAY_TOKENS: merged under the flags, refused by name without echoing the secret', () => {
    const c = resolveCloudConfig({ data: '/d', gatewayToken: ['a=flag'] }, { 'gateway-token': { a: 'file', c: 'filec' } }, { SLUICE_GATEWAY_TOKENS: 'a=env,b=envb\n' });
    expect(c.gatewayTokens).toEqual({ a: 'flag', b: 'envb', c: 'filec' });
    const e = errorOf(() => resolveCloudConfig({ data: '/d' }, {}, { SLUICE_GATEWAY_TOKENS: 'supersecretvalue' }));
    expect(e.code).toBe('SLUICE_BAD_CONFIG');
    expect(e.message).toContain('SLUICE_GATEWAY_TOKENS');
    expect(e.message).not.toContain('supersecretvalue');
    expect(errorOf(() => resolveCloudConfig({ data: '/d' }, {}, {})).message).toContain('SLUICE_GATEWAY_TOKENS');
  });

  it('log level: flag > env > file, each named when bad', () => {
    expect(resolveCloudLogLevel(undefined, { 'log-level': 'warn' }, { SLUICE_LOG_LEVEL: 'debug' })).toBe('debug');
    expect(resolveCloudLogLevel('error', { 'log-level': 'warn' }, { SLUICE_LOG_LEVEL: 'debug' })).toBe('error');
    expect(errorOf(() => resolveCloudLogLevel(undefined, {}, { SLUICE_LOG_LEVEL: 'chatty' })).message).toContain('SLUICE_LOG_LEVEL');
  });
});
