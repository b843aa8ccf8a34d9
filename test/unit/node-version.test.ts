/** The oldest Node.js Sluice runs on (deploy/node-version.js): 20.15, the first 20.x with zlib.crc32. */
import { describe, expect, it } from 'vitest';
import { nodeTooOld } from '../../deploy/node-version.js';

describe('nodeTooOld', () => {
  it.each(['18.19.0', '20.0.0', '20.10.0', '20.14.9'])('refuses %s, naming what is needed', (v) => {
    expect(nodeTooOld(v)).toBe(`Node.js ${v} is too old: Sluice needs Node.js 20.15 or newer (zlib.crc32 arrived in 20.15).`);
  });

  it.each(['20.15.0', '20.20.2', '21.0.0', '22.11.0'])('accepts %s', (v) => {
    expect(nodeTooOld(v)).toBeNull();
  });

  it('accepts the Node.js running this test (the CI machine meets its own requirement)', () => {
    expect(nodeTooOld()).toBeNull();
  });
});
