/**
 * Bearer token → gateway id.
 *
 * Guarantees:
 * - Comparison is constant-time with respect to the presented token: it is hashed (SHA-256) and the
 *   digest compared with `timingSafeEqual` against every configured token's digest, without stopping
 *   at the first match, so neither the token's content nor which gateway it belongs to leaks through
 *   timing.
 * - Tokens are never logged or echoed; errors name the gateway, never the token.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { SluiceError } from '../protocols/errors.js';

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

export class TokenAuth {
  private readonly entries: { id: string; digest: Buffer }[];

  /** `tokens` maps an id (gateway id, or "query" for readers) to its secret token. */
  constructor(tokens: Record<string, string>) {
    const seen = new Map<string, string>();
    this.entries = Object.entries(tokens).map(([id, token]) => {
      if (token.length === 0) throw new SluiceError('SLUICE_BAD_CONFIG', `token of "${id}" is empty`);
      const other = seen.get(token);
      if (other !== undefined) throw new SluiceError('SLUICE_BAD_CONFIG', `gateways "${other}" and "${id}" share one token; each needs its own`);
      seen.set(token, id);
      return { id, digest: digest(token) };
    });
  }

  get size(): number {
    return this.entries.length;
  }

  /** The id whose token the `Authorization: Bearer …` header carries, or undefined. */
  identify(authorization: string | undefined): string | undefined {
    const m = authorization ? /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(authorization) : null;
    if (!m) return undefined;
    const d = digest(m[1]);
    let found: string | undefined;
    for (const e of this.entries) {
      if (timingSafeEqual(d, e.digest) && found === undefined) found = e.id;
    }
    return found;
  }
}
