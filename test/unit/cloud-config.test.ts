import { describe, expect, it } from 'vitest';
import { parseCloudFile, resolveCloudConfig } from '../../cloud/config.js';
import { TokenAuth } from '../../cloud/auth.js';

const base = { data: '/tmp/x', gatewayToken: ['gw1=t1'] };
const err = (fn: () => unknown): { code?: string; message: string } => {
  try {
    fn();
  } catch (e) {
    return e as { code?: string; message: string };
  }
  throw new Error('expected an error');
};

describe('cloud config', () => {
  it('applies defaults', () => {
    expect(resolveCloudConfig(base, {}, {})).toEqual({
      listen: { host: '127.0.0.1', port: 8787 },
      dataDir: '/tmp/x',
      gatewayTokens: { gw1: 't1' },
      influx: { api: 1, url: 'http://127.0.0.1:8086', db: 'sluice' },
    });
  });

  it('flags override the file; tokens merge per gateway', () => {
    const file = parseCloudFile('listen: 127.0.0.1:9000\ndata: /f\ngateway-token:\n  gw1: old\n  gw2: t2\ninflux-db: filedb\n', 'c.yaml');
    const c = resolveCloudConfig({ listen: '127.0.0.1:0', gatewayToken: ['gw1=new'] }, file, {});
    expect(c.listen).toEqual({ host: '127.0.0.1', port: 0 });
    expect(c.dataDir).toBe('/f');
    expect(c.gatewayTokens).toEqual({ gw1: 'new', gw2: 't2' });
    expect(c.influx).toMatchObject({ api: 1, db: 'filedb' });
  });

  it('accepts gateway tokens as a list in the file', () => {
    const file = parseCloudFile('data: /f\ngateway-token: ["a=1", "b=2"]\n', 'c.yaml');
    expect(resolveCloudConfig({}, file, {}).gatewayTokens).toEqual({ a: '1', b: '2' });
  });

  it('refuses unknown file keys by name', () => {
    const e = err(() => parseCloudFile('data: /f\ninflux-dbb: x\n', 'c.yaml'));
    expect(e.code).toBe('SLUICE_BAD_CONFIG');
    expect(e.message).toContain('"influx-dbb"');
  });

  it('names the key of a bad value', () => {
    const e = err(() => parseCloudFile('influx-api: 3\n', 'c.yaml'));
    expect(e.message).toContain('influx-api');
  });

  it('api 2 needs org, bucket and token; secrets may come from the environment', () => {
    expect(err(() => resolveCloudConfig({ ...base, influxApi: '2', influxBucket: 'b', influxToken: 't' }, {}, {})).message).toContain('--influx-org');
    const c = resolveCloudConfig({ ...base, influxApi: '2', influxOrg: 'o', influxBucket: 'b' }, {}, { SLUICE_INFLUX_TOKEN: 'envtok' });
    expect(c.influx).toEqual({ api: 2, url: 'http://127.0.0.1:8086', org: 'o', bucket: 'b', token: 'envtok' });
    const c1 = resolveCloudConfig({ ...base, influxUser: 'u' }, {}, { SLUICE_INFLUX_PASSWORD: 'pw' });
    expect(c1.influx).toMatchObject({ api: 1, user: 'u', password: 'pw' });
  });

  it.each([
    [{ ...base, listen: 'nope' }, '--listen'],
    [{ gatewayToken: ['a=b'] }, '--data'],
    [{ data: '/x' }, '--gateway-token'],
    [{ ...base, gatewayToken: ['bad id=t'] }, '--gateway-token'],
    [{ ...base, gatewayToken: ['a=same', 'b=same'] }, 'share one token'],
    [{ ...base, gatewayToken: ['secretwithoutequals'] }, 'GW=TOKEN'],
    [{ ...base, influx: 'ftp://x' }, '--influx'],
    [{ ...base, influxApi: '3' }, '--influx-api'],
    [{ ...base, influxOrg: 'o' }, '--influx-org'],
    [{ ...base, influxPassword: 'p' }, '--influx-user'],
  ])('refuses %j naming %s', (flags, name) => {
    const e = err(() => resolveCloudConfig(flags, {}, {}));
    expect(e.code).toBe('SLUICE_BAD_CONFIG');
    expect(e.message).toContain(name);
    expect(e.message).not.toContain('secretwithoutequals');
  });
});

describe('TokenAuth', () => {
  const auth = new TokenAuth({ gw1: 'tok-1', gw2: 'tok-2' });
  it('maps a bearer token to its gateway', () => {
    expect(auth.identify('Bearer tok-1')).toBe('gw1');
    expect(auth.identify('bearer tok-2')).toBe('gw2');
  });
  it('refuses missing, malformed and unknown tokens', () => {
    for (const h of [undefined, '', 'tok-1', 'Basic tok-1', 'Bearer tok-3', 'Bearer tok-1x', 'Bearer ']) expect(auth.identify(h)).toBeUndefined();
  });
  it('refuses duplicate tokens at construction', () => {
    expect(() => new TokenAuth({ a: 'x', b: 'x' })).toThrow(expect.objectContaining({ code: 'SLUICE_BAD_CONFIG' }));
  });
});
