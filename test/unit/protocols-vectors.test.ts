/**
 * Golden vectors (test/vectors/): every committed vector decodes to its expected value or fails with
 * its error code, and the encoders reproduce the bytes of every canonical vector exactly.
 * The vectors are read, never regenerated, here.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { decodeBatch, encodeBatch, type Batch } from '../../protocols/batch.js';
import { decodePayload, encodePayload, type DecodedPayload, type PayloadFormat } from '../../protocols/payload.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', 'vectors');

interface VectorCase {
  name: string;
  file: string;
  format?: PayloadFormat;
  metric?: string;
  canonical?: boolean;
  encodeExtra?: Record<string, unknown>;
  expected?: string;
  error?: string;
  note: string;
}

function manifest(dir: string): VectorCase[] {
  return JSON.parse(readFileSync(join(root, dir, 'manifest.json'), 'utf8')) as VectorCase[];
}

function bytes(dir: string, file: string): Buffer {
  const raw = readFileSync(join(root, dir, file));
  return file.endsWith('.hex') ? Buffer.from(raw.toString('ascii').replace(/\s+/g, ''), 'hex') : raw;
}

function expected<T>(dir: string, file: string): T {
  return JSON.parse(readFileSync(join(root, dir, file), 'utf8')) as T;
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return (err as { code?: string }).code;
  }
  return undefined;
}

describe('payload v1 vectors', () => {
  const cases = manifest('payload-v1');

  it('has accepted, canonical and rejected cases in both formats', () => {
    expect(cases.filter((c) => c.canonical && c.format === 'json').length).toBeGreaterThan(0);
    expect(cases.filter((c) => c.canonical && c.format === 'cbor').length).toBeGreaterThan(0);
    expect(cases.filter((c) => c.error).length).toBeGreaterThan(0);
  });

  for (const c of cases) {
    it(`${c.name}: ${c.note}`, () => {
      const buf = bytes('payload-v1', c.file);
      if (c.error) {
        expect(codeOf(() => decodePayload(buf, c.metric ? { metric: c.metric } : {}))).toBe(c.error);
        return;
      }
      const want = expected<DecodedPayload>('payload-v1', c.expected!);
      expect(decodePayload(buf, c.metric ? { metric: c.metric } : {})).toStrictEqual(want);
      if (c.canonical) {
        const again = encodePayload({ ...want, ...c.encodeExtra } as DecodedPayload, c.format);
        expect(again.toString('hex')).toBe(buf.toString('hex'));
      }
    });
  }
});

describe('batch v1 vectors', () => {
  const cases = manifest('batch-v1');

  it('has accepted and rejected cases', () => {
    expect(cases.filter((c) => c.canonical).length).toBeGreaterThan(0);
    expect(cases.filter((c) => c.error).length).toBeGreaterThan(0);
  });

  for (const c of cases) {
    it(`${c.name}: ${c.note}`, () => {
      const buf = bytes('batch-v1', c.file);
      if (c.error) {
        expect(codeOf(() => decodeBatch(buf))).toBe(c.error);
        return;
      }
      const want = expected<Batch>('batch-v1', c.expected!);
      expect(decodeBatch(buf)).toStrictEqual(want);
      if (c.canonical) expect(encodeBatch(want).toString('hex')).toBe(buf.toString('hex'));
    });
  }
});
