/**
 * Payload v1: every malformed input is refused with a stable code (SLUICE_BAD_PAYLOAD,
 * SLUICE_UNSUPPORTED_VERSION, SLUICE_TOO_LARGE) and, where it matters, a message naming the field.
 */
import { describe, expect, it } from 'vitest';
import { isSluiceError, type SluiceErrorCode } from '../../protocols/errors.js';
import { DEFAULT_PAYLOAD_LIMITS, decodePayload, detectFormat, encodePayload, type PayloadFormat } from '../../protocols/payload.js';

const TS = 1732200000123;
const enc = (doc: unknown): Buffer => Buffer.from(JSON.stringify(doc));

/**
 * Raw CBOR of any document: encodePayload only writes known fields, so invalid documents need
 * this tiny hand encoder (definite lengths, float64 for non-integers).
 */
function cbor(x: unknown): Buffer {
  const head = (major: number, n: number): Buffer => {
    if (n < 24) return Buffer.from([(major << 5) | n]);
    if (n < 256) return Buffer.from([(major << 5) | 24, n]);
    if (n < 65536) return Buffer.from([(major << 5) | 25, n >> 8, n & 0xff]);
    const b = Buffer.alloc(5);
    b[0] = (major << 5) | 26;
    b.writeUInt32BE(n, 1);
    return b;
  };
  if (x === null) return Buffer.from([0xf6]);
  if (x === undefined) return Buffer.from([0xf7]);
  if (typeof x === 'boolean') return Buffer.from([x ? 0xf5 : 0xf4]);
  if (typeof x === 'number') {
    if (Number.isInteger(x) && x >= 0 && x < 2 ** 32) return head(0, x);
    if (Number.isInteger(x) && x < 0 && x >= -(2 ** 32)) return head(1, -1 - x);
    const b = Buffer.alloc(9);
    b[0] = 0xfb;
    b.writeDoubleBE(x, 1);
    return b;
  }
  if (typeof x === 'string') {
    const s = Buffer.from(x);
    return Buffer.concat([head(3, s.length), s]);
  }
  if (x instanceof Uint8Array) return Buffer.concat([head(2, x.length), x]);
  if (Array.isArray(x)) return Buffer.concat([head(4, x.length), ...x.map(cbor)]);
  const entries = Object.entries(x as Record<string, unknown>);
  return Buffer.concat([head(5, entries.length), ...entries.flatMap(([k, v]) => [cbor(k), cbor(v)])]);
}

function failure(buf: Uint8Array, opts: Parameters<typeof decodePayload>[1] = {}): { code: SluiceErrorCode; message: string } {
  try {
    decodePayload(buf, opts);
  } catch (err) {
    if (!isSluiceError(err)) throw err;
    return { code: err.code, message: err.message };
  }
  throw new Error(`expected ${Buffer.from(buf).toString('hex').slice(0, 80)} to be rejected`);
}

/** Runs a document through both encodings: each must fail the same way. */
function bothFail(doc: unknown, code: SluiceErrorCode = 'SLUICE_BAD_PAYLOAD'): string {
  const j = failure(enc(doc));
  const c = failure(cbor(doc));
  expect(j.code).toBe(code);
  expect(c.code).toBe(code);
  return j.message;
}

describe('decodePayload accepts', () => {
  it.each<PayloadFormat>(['json', 'cbor'])('a full reading round-trip (%s)', (format) => {
    const p = { ts: TS, values: { temperature: 21.5, humidity: 45.2, door_open: false }, seq: 42, tags: { room: 'a1' } };
    expect(decodePayload(encodePayload(p, format))).toStrictEqual(p);
    expect(decodePayload(encodePayload({ values: { t: 1 } }, format))).toStrictEqual({ values: { t: 1 } });
  });

  it('"v": 1, leading whitespace, and exactly the limits', () => {
    expect(decodePayload(Buffer.from(' \n\t{"v":1,"values":{"t":1}}'))).toStrictEqual({ values: { t: 1 } });
    const values = Object.fromEntries(Array.from({ length: DEFAULT_PAYLOAD_LIMITS.maxMetrics }, (_, i) => [`m${i}`, i]));
    expect(Object.keys(decodePayload(enc({ values })).values)).toHaveLength(DEFAULT_PAYLOAD_LIMITS.maxMetrics);
    const tags = Object.fromEntries(Array.from({ length: DEFAULT_PAYLOAD_LIMITS.maxTags }, (_, i) => [`k${i}`, 'v'.repeat(DEFAULT_PAYLOAD_LIMITS.maxTagValueLength)]));
    expect(decodePayload(enc({ values: { t: 1 }, tags })).tags).toEqual(tags);
  });

  it('metric names that merely look like Object.prototype members', () => {
    const p = decodePayload(enc({ values: { constructor: 1, toString: 2, hasOwnProperty: true } }));
    expect(p.values).toStrictEqual({ constructor: 1, toString: 2, hasOwnProperty: true });
  });

  it('a CBOR uint64 ts as other CBOR libraries write it', () => {
    const buf = Buffer.from(`a2627473 1b000001934f2a6a7b 6676616c756573 a1617401`.replace(/ /g, ''), 'hex');
    expect(decodePayload(buf)).toStrictEqual({ ts: TS, values: { t: 1 } });
  });
});

describe('decodePayload rejects', () => {
  it('empty and whitespace-only payloads', () => {
    expect(failure(Buffer.alloc(0)).code).toBe('SLUICE_BAD_PAYLOAD');
    expect(failure(Buffer.alloc(0), { contentType: 'application/json' }).code).toBe('SLUICE_BAD_PAYLOAD');
    expect(failure(Buffer.alloc(0), { contentType: 'application/cbor' }).code).toBe('SLUICE_BAD_PAYLOAD');
    expect(failure(Buffer.from('  \r\n')).message).toMatch(/empty/);
  });

  it.each([
    ['text', Buffer.from('hello')],
    ['broken JSON', Buffer.from('{"values":{"t":1}')],
    ['JSON with trailing garbage', Buffer.from('{"values":{"t":1}} x')],
    ['invalid UTF-8 in JSON', Buffer.concat([Buffer.from('{"values":{"t":1},"tags":{"a":"'), Buffer.from([0xff, 0xfe]), Buffer.from('"}}')])],
    ['binary noise', Buffer.from([0x00, 0x01, 0x02, 0xff])],
    ['CBOR map header only', Buffer.from([0xa2])],
    ['CBOR with trailing bytes', Buffer.concat([encodePayload({ values: { t: 1 } }, 'cbor'), Buffer.from([0x00])])],
    ['CBOR break without start', Buffer.from([0xff])],
    ['a CBOR tag (date) at top level', Buffer.from('c11a5f5e1000', 'hex')],
  ])('not JSON or CBOR: %s', (_name, buf) => {
    expect(failure(buf).code).toBe('SLUICE_BAD_PAYLOAD');
  });

  it('every truncation of a valid CBOR payload', () => {
    const full = encodePayload({ ts: TS, values: { temperature: 21.5, door_open: true }, seq: 7, tags: { room: 'a1' } }, 'cbor');
    for (let n = 1; n < full.length; n++) expect(failure(full.subarray(0, n)).code).toBe('SLUICE_BAD_PAYLOAD');
  });

  it('every truncation of a valid JSON payload', () => {
    const full = encodePayload({ ts: TS, values: { temperature: 21.5 }, seq: 7 }, 'json');
    for (let n = 1; n < full.length; n++) expect(failure(full.subarray(0, n)).code).toBe('SLUICE_BAD_PAYLOAD');
  });

  it.each([
    ['array', [{ values: { t: 1 } }]],
    ['number', 21.5],
    ['string', 'x'],
    ['null', null],
    ['boolean', true],
  ])('a top level that is not a map: %s', (_name, doc) => {
    expect(bothFail(doc)).toMatch(/values/);
  });

  it('a CBOR byte string at top level', () => {
    expect(failure(Buffer.from([0x42, 0x7b, 0x7d]), { contentType: 'application/cbor' }).code).toBe('SLUICE_BAD_PAYLOAD');
  });

  it.each([
    ['missing', { ts: TS }],
    ['null', { values: null }],
    ['array', { values: [1, 2] }],
    ['number', { values: 1 }],
    ['string', { values: '{"t":1}' }],
    ['empty map', { values: {} }],
  ])('"values" %s', (_name, doc) => {
    expect(bothFail(doc)).toMatch(/"values"/);
  });

  it.each([
    ['a string', '21.5'],
    ['null', null],
    ['an array', [21.5]],
    ['a map', { v: 21.5 }],
  ])('a value that is %s', (_name, v) => {
    expect(bothFail({ values: { temperature: v } })).toMatch(/temperature/);
  });

  it('non-finite numbers', () => {
    expect(failure(Buffer.from('{"values":{"t":1e999}}')).message).toMatch(/"t"/);
    expect(failure(Buffer.from('{"values":{"t":NaN}}')).code).toBe('SLUICE_BAD_PAYLOAD');
    for (const v of [NaN, Infinity, -Infinity]) expect(failure(cbor({ values: { t: v } })).message).toMatch(/"t"/);
    // float16 NaN and +Infinity, as a small device might send them
    for (const f16 of ['f97e00', 'f97c00']) expect(failure(Buffer.from(`a16676616c756573a16174${f16}`, 'hex')).code).toBe('SLUICE_BAD_PAYLOAD');
  });

  it.each(['__proto__', 'time', 'device', 'gateway', '_field', '_measurement', '', '9lives', '_x', 'has space', 'ü', 'm'.repeat(65)])(
    'bad metric name %j',
    (name) => {
      // JSON.parse keeps "__proto__" as an own key; build the text by hand so it reaches the validator.
      const j = failure(Buffer.from(`{"values":{${JSON.stringify(name)}:1}}`));
      expect(j.code).toBe('SLUICE_BAD_PAYLOAD');
      expect(j.message).toMatch(/metric name/);
      expect(failure(cbor({ values: { [name]: 1, ok: 2 } })).code).toBe('SLUICE_BAD_PAYLOAD');
    },
  );

  it('"__proto__" never changes the prototype of the decoded values', () => {
    const buf = Buffer.from(`a16676616c756573a2695f5f70726f746f5f5fa1617801617401`, 'hex'); // {values: {__proto__: {x: 1}, t: 1}}
    expect(failure(buf).code).toBe('SLUICE_BAD_PAYLOAD');
    expect(({} as Record<string, unknown>).x).toBeUndefined();
  });

  it('too many metrics', () => {
    const values = Object.fromEntries(Array.from({ length: DEFAULT_PAYLOAD_LIMITS.maxMetrics + 1 }, (_, i) => [`m${i}`, i]));
    expect(bothFail({ values })).toMatch(/"values".*limit/);
  });

  it.each([
    ['not a map', { tags: 'room=a1' }],
    ['an array', { tags: ['a1'] }],
    ['a number value', { tags: { room: 1 } }],
    ['an empty value', { tags: { room: '' } }],
    ['a null value', { tags: { room: null } }],
    ['a too long value', { tags: { room: 'x'.repeat(DEFAULT_PAYLOAD_LIMITS.maxTagValueLength + 1) } }],
    ['a bad key', { tags: { '1room': 'a' } }],
    ['a reserved key', { tags: { device: 'other' } }],
    ['too many tags', { tags: Object.fromEntries(Array.from({ length: DEFAULT_PAYLOAD_LIMITS.maxTags + 1 }, (_, i) => [`k${i}`, 'v'])) }],
  ])('tags: %s', (_name, extra) => {
    expect(bothFail({ values: { t: 1 }, ...extra })).toMatch(/tag/);
  });

  it.each([
    ['negative', -1],
    ['float', 1732200000123.5],
    ['string', '1732200000123'],
    ['beyond 2^53', 2 ** 53 + 2],
    ['boolean', true],
    ['null', null],
  ])('ts: %s', (_name, ts) => {
    expect(bothFail({ ts, values: { t: 1 } })).toMatch(/"ts"/);
  });

  it('ts as a CBOR date tag or a bigint beyond 2^53', () => {
    expect(failure(Buffer.from('a2627473c11a5f5e10006676616c756573a1617401', 'hex')).message).toMatch(/"ts"/);
    expect(failure(Buffer.from('a26274731b00200000000000016676616c756573a1617401', 'hex')).message).toMatch(/"ts"/);
  });

  it.each([-1, 1.5, '42', null])('seq %j', (seq) => {
    expect(bothFail({ seq, values: { t: 1 } })).toMatch(/"seq"/);
  });

  it('unknown fields, named in the message', () => {
    expect(bothFail({ values: { t: 1 }, unit: 'C' })).toMatch(/unknown field "unit"/);
    expect(bothFail({ values: { t: 1 }, Values: { t: 1 } })).toMatch(/"Values"/);
    expect(failure(Buffer.from('{"values":{"t":1},"__proto__":{"x":1}}')).message).toMatch(/unknown field "__proto__"/);
  });

  it('unsupported or malformed versions', () => {
    expect(bothFail({ v: 2, values: { t: 1 } }, 'SLUICE_UNSUPPORTED_VERSION')).toMatch(/version 2/);
    expect(bothFail({ v: 0, values: { t: 1 } }, 'SLUICE_UNSUPPORTED_VERSION')).toMatch(/version 0/);
    // A later version may add fields and change "values": it is refused as a version, not as a shape.
    expect(bothFail({ v: 2, readings: [], values: 'x' }, 'SLUICE_UNSUPPORTED_VERSION')).toMatch(/version/);
    expect(bothFail({ v: '1', values: { t: 1 } })).toMatch(/"v"/);
    expect(bothFail({ v: 1.5, values: { t: 1 } })).toMatch(/"v"/);
  });

  it('oversized payloads before parsing them', () => {
    const big = Buffer.alloc(DEFAULT_PAYLOAD_LIMITS.maxBytes + 1, 0x20);
    expect(failure(big).code).toBe('SLUICE_TOO_LARGE');
    expect(failure(big, { metric: 'temperature' }).code).toBe('SLUICE_TOO_LARGE');
    const limits = { ...DEFAULT_PAYLOAD_LIMITS, maxBytes: 16 };
    expect(failure(enc({ values: { temperature: 21.5 } }), { limits }).code).toBe('SLUICE_TOO_LARGE');
    expect(failure(enc({ values: { a: 1, b: 2 } }), { limits: { ...DEFAULT_PAYLOAD_LIMITS, maxMetrics: 1 } }).code).toBe('SLUICE_BAD_PAYLOAD');
  });
});

describe('single-metric topic form', () => {
  const one = (text: string | Buffer, metric = 'temperature') => decodePayload(typeof text === 'string' ? Buffer.from(text) : text, { metric });

  it.each([
    ['21.5', 21.5],
    ['  21.5\n', 21.5],
    ['-3', -3],
    ['+4', 4],
    ['0', 0],
    ['1e3', 1000],
    ['-1.5E-3', -0.0015],
    ['.5', 0.5],
    ['5.', 5],
  ])('accepts %j', (text, want) => {
    expect(one(text)).toStrictEqual({ values: { temperature: want } });
  });

  it('accepts true and false', () => {
    expect(one('true', 'door_open')).toStrictEqual({ values: { door_open: true } });
    expect(one('false\r\n', 'door_open')).toStrictEqual({ values: { door_open: false } });
  });

  it.each(['', '   ', 'garbage', 'NaN', 'Infinity', '-Infinity', '0x10', '1,5', '21.5 C', 'TRUE', 'null', '{"value":1}', '1e999', '--1', '1e', 'e5', '.'])(
    'rejects %j',
    (text) => {
      let code: string | undefined;
      try {
        one(text);
      } catch (err) {
        code = (err as { code?: string }).code;
      }
      expect(code).toBe('SLUICE_BAD_PAYLOAD');
    },
  );

  it('names the metric in the message', () => {
    expect(failure(Buffer.from('garbage'), { metric: 'temperature' }).message).toMatch(/temperature/);
  });

  it.each(['time', '__proto__', '9x', ''])('rejects the metric name %j', (metric) => {
    expect(failure(Buffer.from('1'), { metric }).code).toBe('SLUICE_BAD_PAYLOAD');
  });
});

describe('detectFormat', () => {
  it('prefers the MQTT 5 content type', () => {
    expect(detectFormat(Buffer.from('{'), 'application/cbor')).toBe('cbor');
    expect(detectFormat(Buffer.from([0xa1]), 'application/json')).toBe('json');
    expect(detectFormat(Buffer.from([0xa1]), 'Application/JSON; charset=utf-8')).toBe('json');
    expect(detectFormat(Buffer.from('{'), 'application/senml+cbor')).toBe('cbor');
  });

  it('sniffs the first byte when the content type says nothing', () => {
    expect(detectFormat(Buffer.from('{}'))).toBe('json');
    expect(detectFormat(Buffer.from('\r\n\t {}'))).toBe('json');
    expect(detectFormat(Buffer.from('\ufeff{}'))).toBe('json');
    expect(detectFormat(Buffer.from('[1]'), 'text/plain')).toBe('json');
    expect(detectFormat(Buffer.from([0xa0]))).toBe('cbor');
    expect(detectFormat(Buffer.from([0xbf]))).toBe('cbor');
    expect(detectFormat(Buffer.from([0xd9, 0xd9, 0xf7]))).toBe('cbor');
    expect(detectFormat(Buffer.from([0x00]))).toBe('cbor');
  });

  it('rejects an empty buffer', () => {
    let code: string | undefined;
    try {
      detectFormat(Buffer.from(' '));
    } catch (err) {
      code = (err as { code?: string }).code;
    }
    expect(code).toBe('SLUICE_BAD_PAYLOAD');
  });

  it('decodes with the content type even against the sniffed byte', () => {
    const c = encodePayload({ values: { t: 1 } }, 'cbor');
    expect(decodePayload(c, { contentType: 'application/cbor' })).toStrictEqual({ values: { t: 1 } });
    expect(failure(c, { contentType: 'application/json' }).message).toMatch(/JSON/);
    expect(failure(Buffer.from('{"values":{"t":1}}'), { contentType: 'application/cbor' }).message).toMatch(/CBOR/);
  });

  it('decodes from a view into a larger buffer', () => {
    const inner = encodePayload({ values: { t: 2 } }, 'json');
    const outer = Buffer.concat([Buffer.from('xxxx'), inner, Buffer.from('yyyy')]);
    expect(decodePayload(outer.subarray(4, 4 + inner.length))).toStrictEqual({ values: { t: 2 } });
    const c = encodePayload({ values: { t: 3 } }, 'cbor');
    const outerC = new Uint8Array(c.length + 8);
    outerC.set(c, 4);
    expect(decodePayload(outerC.subarray(4, 4 + c.length))).toStrictEqual({ values: { t: 3 } });
  });
});
