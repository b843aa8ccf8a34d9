/**
 * The pure parts of the security work: topic filter algebra, nesting scanners, secret hashes,
 * registry parsing, rate limiting, credential caching, and the security keys of both configs.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TokenAuth } from '../../cloud/auth.js';
import { resolveCloudConfig, parseCloudFile } from '../../cloud/config.js';
import { Acl, filterCovers, isValidFilter, topicMatches } from '../../gateway/auth-acl.js';
import { RateLimiter, topicLimitViolation } from '../../gateway/auth-limits.js';
import { DeviceAuth } from '../../gateway/auth.js';
import { loadGatewayConfig } from '../../gateway/config.js';
import { addEntry, DeviceRegistry, parseRegistry } from '../../gateway/registry.js';
import { cborEncoder } from '../../protocols/cbor.js';
import { cborDepthExceeds, jsonDepthExceeds } from '../../protocols/nesting.js';
import { DUMMY_HASH, hashSecret, parseSecretHash, verifySecret, VerifyGate } from '../../protocols/secret-hash.js';
import { tempDir } from '../support/tmp.js';

let tmp: { path: string; remove(): Promise<void> };
beforeAll(async () => {
  tmp = await tempDir('sluice-sec-unit-');
});
afterAll(async () => {
  await tmp?.remove();
});

describe('topic filters', () => {
  it.each([
    ['devices/+/telemetry', 'devices/d1/telemetry', true],
    ['devices/#', 'devices', true],
    ['devices/#', 'devices/d1/telemetry/x', true],
    ['devices/+', 'devices/d1/telemetry', false],
    ['#', '$SYS/broker', false],
    ['+/x', '$SYS/x', false],
    ['$SYS/#', '$SYS/x', true],
    ['devices/d1/#', 'devices/d10/telemetry', false],
    ['a//b', 'a//b', true],
    ['a/+/b', 'a//b', true],
  ])('%s matches %s: %s', (f, t, want) => expect(topicMatches(f, t)).toBe(want));

  it.each([
    ['devices/#', 'devices/+/telemetry', true],
    ['devices/#', 'devices/#', true],
    ['devices/+/telemetry', 'devices/#', false],
    ['devices/+/#', 'devices/d1/cmd/#', true],
    ['devices/d1/#', 'devices/+/cmd', false],
    ['#', '$SYS/#', false],
    ['devices/+', 'devices/+/x', false],
  ])('%s covers %s: %s', (o, i, want) => expect(filterCovers(o, i)).toBe(want));

  it('covering is sound: every topic the inner filter matches, the outer matches too', () => {
    const level = fc.constantFrom('a', 'b', '+', '$s');
    const filterArb = fc.tuple(fc.array(level, { minLength: 1, maxLength: 4 }), fc.boolean()).map(([ls, hash]) => [...ls, ...(hash ? ['#'] : [])].join('/'));
    const topicArb = fc.array(fc.constantFrom('a', 'b', '$s'), { minLength: 1, maxLength: 6 }).map((ls) => ls.join('/'));
    fc.assert(
      fc.property(filterArb, filterArb, topicArb, (outer, inner, topic) => {
        if (filterCovers(outer, inner) && topicMatches(inner, topic)) expect(topicMatches(outer, topic)).toBe(true);
      }),
      { numRuns: 3000 },
    );
  });

  it('validates filters', () => {
    for (const f of ['a/#', '+', 'a/+/b', '#']) expect(isValidFilter(f)).toBe(true);
    for (const f of ['', 'a/#/b', 'a+', 'a/b#']) expect(isValidFilter(f)).toBe(false);
  });

  it('deny rules: a covered subscription is refused, an overlapping one is filtered at delivery', () => {
    const acl = new Acl({ publish: ['factory/#'], subscribe: ['devices/#'], denyPublish: ['factory/secret/#'], denySubscribe: ['devices/vault/#'] });
    expect(acl.canSubscribe('devices/#')).toBe(true);
    expect(acl.canSubscribe('devices/vault/telemetry')).toBe(false);
    expect(acl.canReceive('devices/vault/telemetry')).toBe(false);
    expect(acl.canReceive('devices/d1/telemetry')).toBe(true);
    expect(acl.canPublish('factory/line1')).toBe(true);
    expect(acl.canPublish('factory/secret/x')).toBe(false);
  });
});

describe('limits', () => {
  it('topic length and depth', () => {
    const l = { maxTopicLength: 20, maxTopicLevels: 3 };
    expect(topicLimitViolation('a/b/c', l)).toBeUndefined();
    expect(topicLimitViolation('a/b/c/d', l)).toBe('topic_too_deep');
    expect(topicLimitViolation('x'.repeat(21), l)).toBe('topic_too_long');
  });

  it('token bucket: burst, refill, independent keys, bounded memory', () => {
    let now = 0;
    const r = new RateLimiter(10, 5, () => now, 3);
    expect(Array.from({ length: 7 }, () => r.take('a'))).toEqual([true, true, true, true, true, false, false]);
    expect(r.take('b')).toBe(true);
    now += 100; // 1 token
    expect(r.take('a')).toBe(true);
    expect(r.take('a')).toBe(false);
    for (const k of ['c', 'd', 'e', 'f']) r.take(k);
    expect(r.size).toBe(3);
    expect(new RateLimiter(0, 1).take('x')).toBe(true);
  });

  it('token bucket: a full table forgets the least recently used keys, not the busy ones', () => {
    let now = 0;
    // One token each and (practically) no refill: a remembered key stays refused, a forgotten one starts full.
    const r = new RateLimiter(0.001, 1, () => now, 10);
    for (let i = 0; i < 10; i++) {
      now = i;
      expect(r.take(`k${i}`)).toBe(true);
    }
    now = 10;
    expect(r.take('k0')).toBe(false); // k0 is now the most recently used
    now = 11;
    expect(r.take('new')).toBe(true); // the table is full: k1, the least recently used, goes
    expect(r.size).toBe(10);
    expect(r.take('k0')).toBe(false);
    expect(r.take('k2')).toBe(false);
    expect(r.take('k1')).toBe(true); // forgotten: a full bucket again
  });
});

describe('nesting scanners', () => {
  it('measure JSON depth outside strings', () => {
    expect(jsonDepthExceeds(Buffer.from('{"a":{"b":[1]}}'), 3)).toBe(false);
    expect(jsonDepthExceeds(Buffer.from('{"a":{"b":[[1]]}}'), 3)).toBe(true);
    expect(jsonDepthExceeds(Buffer.from('{"a":"[[[[[[\\"[["}'), 1)).toBe(false);
  });

  it('agree with the real CBOR nesting of generated values', () => {
    const depth = (v: unknown): number => (v !== null && typeof v === 'object' && !(v instanceof Uint8Array) ? 1 + Math.max(0, ...Object.values(v as object).map(depth)) : 0);
    fc.assert(
      // (No bigints: cbor-x writes those above 64 bits as tag 2, which the scanner rightly counts as a level.)
      fc.property(fc.anything({ maxDepth: 6 }), fc.integer({ min: 1, max: 7 }), (v, limit) => {
        let buf: Buffer;
        try {
          buf = Buffer.from(cborEncoder.encode(v));
        } catch {
          return;
        }
        expect(cborDepthExceeds(buf, limit)).toBe(depth(v) > limit);
      }),
      { numRuns: 2000 },
    );
  });

  it('handle indefinite lengths, tags and truncation', () => {
    expect(cborDepthExceeds(Buffer.from([0x9f, 0x9f, 0x9f, 0x01, 0xff, 0xff, 0xff]), 2)).toBe(true);
    expect(cborDepthExceeds(Buffer.from([0x9f, 0x9f, 0x01, 0xff, 0xff]), 2)).toBe(false);
    expect(cborDepthExceeds(Buffer.from([0xc6, 0xc6, 0xc6, 0x01]), 2)).toBe(true);
    expect(cborDepthExceeds(Buffer.from([0x9b, 0xff]), 2)).toBe(false);
  });
});

describe('secret hashes', () => {
  it('hash and verify; wrong secrets, malformed and unbounded hashes are refused', async () => {
    const h = await hashSecret('s3cret');
    expect(h).toMatch(/^scrypt\$N=16384,r=8,p=1\$[A-Za-z0-9_-]{22}\$[A-Za-z0-9_-]{43}$/);
    expect(await verifySecret('s3cret', h)).toBe(true);
    expect(await verifySecret('s3cret!', h)).toBe(false);
    expect(await verifySecret('', h)).toBe(false);
    expect(await verifySecret('x'.repeat(2000), h)).toBe(false);
    expect(await verifySecret('s3cret', 'scrypt$garbage')).toBe(false);
    expect(await verifySecret('anything', DUMMY_HASH)).toBe(false);
    expect(() => parseSecretHash(h.replace('N=16384', 'N=4194304'))).toThrow(/power of two/);
    expect(() => parseSecretHash(h.replace('N=16384', 'N=1000'))).toThrow();
  });

  it('the verify gate bounds concurrency and answers busy when its queue is full', async () => {
    const gate = new VerifyGate(1, 1);
    let release!: () => void;
    const blocker = new Promise<void>((r) => (release = r));
    const a = gate.run(() => blocker.then(() => 'a'));
    const b = gate.run(async () => 'b');
    expect(await gate.run(async () => 'c')).toEqual({ busy: true });
    release();
    expect(await a).toEqual({ busy: false, value: 'a' });
    expect(await b).toEqual({ busy: false, value: 'b' });
  });
});

describe('device registry', () => {
  it('refuses bad files naming the key, never echoing a secret', () => {
    const bad = (text: string) => {
      try {
        parseRegistry(text, 'reg');
      } catch (err) {
        return err as { code: string; message: string };
      }
      throw new Error('expected an error');
    };
    expect(bad('devices:\n  d1:\n    secret: plain-text-secret\n').message).toMatch(/"devices\.d1\.secret"/);
    expect(bad('devices:\n  d1:\n    secret: plain-text-secret\n').message).not.toContain('plain-text-secret');
    expect(bad('devices:\n  "bad/id":\n    secret: x\n').code).toBe('SLUICE_BAD_CONFIG');
    expect(bad('devicez: {}\n').message).toContain('"devicez"');
    expect(bad(`devices:\n  d1:\n    secret: ${DUMMY_HASH}\n    subscribe: ["a/#/b"]\n`).message).toContain('subscribe');
    expect(bad(`devices:\n  x:\n    secret: ${DUMMY_HASH}\naccounts:\n  x:\n    secret: ${DUMMY_HASH}\n`).message).toContain('both a device and an account');
  });

  it('expands {id} and fixes the device publish scope', () => {
    const reg = parseRegistry(`deviceSubscribe: ["devices/{id}/cmd/#"]\ndevices:\n  d1:\n    secret: ${DUMMY_HASH}\n`, 'reg');
    const acl = reg.get('d1')!.acl;
    expect(acl.rules.publish).toEqual(['devices/d1/#']);
    expect(acl.canSubscribe('devices/d1/cmd/reboot')).toBe(true);
    expect(acl.canSubscribe('devices/d2/cmd/reboot')).toBe(false);
  });
});

describe('device authentication', () => {
  it('caches a verified password (constant-time digest compare) until the registry changes', async () => {
    const file = join(tmp.path, 'auth.yaml');
    const secret = await addEntry(file, 'dev-a');
    let now = 0;
    const registry = new DeviceRegistry(file, { checkIntervalMs: 0 });
    await registry.load();
    const auth = new DeviceAuth({ registry, allowAnonymous: false, cacheTtlMs: 1000, now: () => now });
    expect((await auth.authenticate({ username: 'dev-a', password: Buffer.from(secret) })).ok).toBe(true);
    expect((await auth.authenticate({ username: 'dev-a', password: Buffer.from(secret) })).ok).toBe(true);
    expect(auth.stats).toEqual({ verifications: 1, cacheHits: 1 });
    expect(await auth.authenticate({ username: 'dev-a', password: Buffer.from('wrong') })).toMatchObject({ ok: false, returnCode: 5, reason: 'bad_password' });
    now = 2000;
    expect((await auth.authenticate({ username: 'dev-a', password: Buffer.from(secret) })).ok).toBe(true);
    expect(auth.stats.verifications).toBe(3);
    expect(await auth.authenticate({})).toMatchObject({ ok: false, reason: 'no_credentials' });
  });
});

describe('cloud token auth', () => {
  it('hashed tokens verify against one id, are cached, and refusals are remembered', async () => {
    const auth = new TokenAuth({ plain: 'plain-token' }, { hashed: { gwH: await hashSecret('hashed-token') } });
    expect(auth.identify('Bearer hashed-token')).toBeUndefined();
    expect(await auth.verifyAs('Bearer hashed-token', 'gwH')).toBe('ok');
    expect(auth.identify('Bearer hashed-token')).toBe('gwH');
    expect(await auth.verifyAs('Bearer wrong', 'gwH')).toBe('refused');
    expect(await auth.verifyAs('Bearer wrong', 'gwH')).toBe('refused');
    expect(auth.stats.verifications).toBe(2);
    expect(await auth.verifyAs('Bearer plain-token', 'gwH')).toBe('refused');
    expect(() => new TokenAuth({ a: 't' }, { hashed: { a: DUMMY_HASH } })).toThrow(/both a token and a token hash/);
    expect(() => new TokenAuth({}, { hashed: { a: 'plain' } })).toThrow(/not a scrypt hash/);
  });
});

describe('configuration keys', () => {
  it('gateway: security keys with defaults, cross-key checks naming the keys', async () => {
    const base = { id: 'g', data: '/tmp/x', cloud: 'http://c', cloudToken: 't' };
    const c = loadGatewayConfig(undefined, base, {});
    expect(c.broker).toMatchObject({ maxPacketBytes: 262144, maxTopicLength: 256, maxTopicLevels: 16, publishRate: 1000, publishBurst: 2000, maxConnections: 10000, connectTimeoutMs: 10000 });
    expect(c.payloadLimits).toEqual({ maxBytes: 65536, maxMetrics: 100, maxTags: 16, maxTagValueLength: 128, maxDepth: 8 });
    const file = join(tmp.path, 'gw.yaml');
    await writeFile(file, 'limits:\n  maxPacket: 16KiB\n  maxPayload: 8KiB\n  publishRate: 5\n  connectTimeout: 2s\n');
    expect(loadGatewayConfig(file, base, {}).broker).toMatchObject({ maxPacketBytes: 16384, publishRate: 5, connectTimeoutMs: 2000 });
    const err = (flags: Record<string, unknown>) => {
      try {
        loadGatewayConfig(undefined, { ...base, ...flags }, {});
      } catch (e) {
        return (e as Error).message;
      }
      return '';
    };
    expect(err({ mqtts: '127.0.0.1:0' })).toContain('"mqtts" needs "tls.cert"');
    expect(err({ mqtts: '127.0.0.1:0', 'tls.cert': 'c', 'tls.key': 'k', 'tls.clientAuth': 'require' })).toContain('"tls.clientAuth" require needs "tls.ca"');
    expect(err({ cloudCa: '/nonexistent' })).toContain('"cloudCa" (--cloud-ca) only applies to an https://');
    expect(err({ cloud: 'https://c', cloudCa: '/nonexistent/ca.pem' })).toContain('cannot read /nonexistent/ca.pem');
    await writeFile(file, 'limits:\n  maxPackets: 1\n');
    expect(() => loadGatewayConfig(file, base, {})).toThrow(/"limits\.maxPackets"/);
  });

  it('cloud: hashed tokens, read tokens, tokens file, TLS pair, timeouts', async () => {
    const h = await hashSecret('t');
    const tokens = join(tmp.path, 'tokens.yaml');
    await writeFile(tokens, `gateways:\n  gwF: "${h}"\nread:\n  - "${h}"\n`);
    const c = resolveCloudConfig({ data: '/d', gatewayTokenHash: [`gwA=${h}`], tokensFile: tokens, readToken: ['r1'], headersTimeout: '5s', maxBody: '1MiB' }, {}, {});
    expect(c.gatewayTokens).toEqual({});
    expect(Object.keys(c.gatewayTokenHashes!)).toEqual(['gwF', 'gwA']);
    expect(c.queryTokenHashes).toHaveLength(1);
    expect(c.queryTokens).toEqual(['r1']);
    expect(c.headersTimeoutMs).toBe(5000);
    expect(c.maxBodyBytes).toBe(1024 * 1024);
    const file = parseCloudFile(`data: /d\ngateway-token-hash:\n  gwY: "${h}"\ntls-cert: c.pem\ntls-key: k.pem\n`, 'c.yaml');
    expect(resolveCloudConfig({}, file, {}).tls).toEqual({ cert: 'c.pem', key: 'k.pem' });
    const bad = (flags: object) => {
      try {
        resolveCloudConfig({ data: '/d', ...flags }, {}, {});
      } catch (e) {
        return (e as Error).message;
      }
      return '';
    };
    expect(bad({ gatewayTokenHash: ['gwA=plain-secret'] })).toContain('--gateway-token-hash');
    expect(bad({ gatewayTokenHash: ['gwA=plain-secret'] })).not.toContain('plain-secret');
    expect(bad({ gatewayToken: ['g=t'], tlsCert: 'c.pem' })).toContain('--tls-cert and --tls-key go together');
    expect(bad({})).toContain('--gateway-token');
  });
});
