/**
 * Bearer token → gateway id (or reader id), for tokens given in the clear or as scrypt hashes.
 *
 * Guarantees:
 * - Plain tokens: the presented token is hashed (SHA-256) and the digest compared with
 *   `timingSafeEqual` against every configured token's digest, without stopping at the first match,
 *   so neither the token's content nor which gateway it belongs to leaks through timing.
 * - Hashed tokens (`scrypt$…`, printed by `sluice cloud hash-token`): the cloud never holds the token
 *   itself. A scrypt verification needs to know which hash to try, so `verifyAs(header, id)` checks
 *   the token against one id's hash (the gateway a batch names: a gateway can only ever write as
 *   itself), and `identifyAny` tries every hash (meant for the few read tokens). Verifications run
 *   asynchronously, at most `concurrency` at a time with a bounded queue (`busy` beyond it).
 *   A verified token is remembered for `cacheTtlMs` by its SHA-256 digest, so steady traffic costs
 *   one scrypt per token per TTL; a refused one is remembered for `negativeTtlMs` (bounded), so
 *   replaying a wrong token does not cost a scrypt each time.
 * - Tokens are never logged or echoed; errors name the gateway, never the token.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { SluiceError } from '../protocols/errors.js';
import { isSecretHash, parseSecretHash, verifySecret, VerifyGate } from '../protocols/secret-hash.js';

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

/** The token of an `Authorization: Bearer …` header, or undefined. */
export function bearerToken(authorization: string | undefined): string | undefined {
  const m = authorization ? /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(authorization) : null;
  return m ? m[1] : undefined;
}

export interface TokenAuthOptions {
  /** id → scrypt hash of its token. */
  hashed?: Record<string, string>;
  cacheTtlMs?: number;
  negativeTtlMs?: number;
  concurrency?: number;
  maxQueue?: number;
  now?: () => number;
}

export type VerifyResult = 'ok' | 'refused' | 'busy';

export class TokenAuth {
  private readonly entries: { id: string; digest: Buffer }[];
  private readonly hashes = new Map<string, ReturnType<typeof parseSecretHash>>();
  /** sha256(token) hex → { id, expires }: verified hashed tokens. */
  private readonly verified = new Map<string, { id: string; expires: number }>();
  /** `${id}\0${sha256 hex}` (or `*\0…`) → expires: recently refused. */
  private readonly refused = new Map<string, number>();
  private readonly gate: VerifyGate;
  private readonly now: () => number;
  readonly stats = { verifications: 0, cacheHits: 0 };

  /** `tokens` maps an id (gateway id, or a reader name) to its secret token. */
  constructor(tokens: Record<string, string>, private readonly opts: TokenAuthOptions = {}) {
    const seen = new Map<string, string>();
    this.entries = Object.entries(tokens).map(([id, token]) => {
      if (token.length === 0) throw new SluiceError('SLUICE_BAD_CONFIG', `token of "${id}" is empty`);
      const other = seen.get(token);
      if (other !== undefined) throw new SluiceError('SLUICE_BAD_CONFIG', `gateways "${other}" and "${id}" share one token; each needs its own`);
      seen.set(token, id);
      return { id, digest: digest(token) };
    });
    for (const [id, h] of Object.entries(opts.hashed ?? {})) {
      if (!isSecretHash(h)) throw new SluiceError('SLUICE_BAD_CONFIG', `token hash of "${id}" is not a scrypt hash (make one with \`sluice cloud hash-token\`)`);
      if (this.entries.some((e) => e.id === id)) throw new SluiceError('SLUICE_BAD_CONFIG', `"${id}" has both a token and a token hash; give one`);
      try {
        this.hashes.set(id, parseSecretHash(h));
      } catch (err) {
        throw new SluiceError('SLUICE_BAD_CONFIG', `token hash of "${id}": ${(err as Error).message}`);
      }
    }
    this.gate = new VerifyGate(opts.concurrency ?? 2, opts.maxQueue ?? 256);
    this.now = opts.now ?? Date.now;
  }

  get size(): number {
    return this.entries.length + this.hashes.size;
  }

  /** Are there hashed entries (whose verification is asynchronous)? */
  get hasHashes(): boolean {
    return this.hashes.size > 0;
  }

  has(id: string): boolean {
    return this.hashes.has(id) || this.entries.some((e) => e.id === id);
  }

  /**
   * Synchronous lookup: plain tokens, and hashed tokens verified recently. Undefined means "not
   * known yet", not necessarily "wrong" when there are hashed entries.
   */
  identify(authorization: string | undefined): string | undefined {
    const token = bearerToken(authorization);
    if (token === undefined) return undefined;
    const d = digest(token);
    let found: string | undefined;
    for (const e of this.entries) {
      if (timingSafeEqual(d, e.digest) && found === undefined) found = e.id;
    }
    if (found !== undefined || this.hashes.size === 0) return found;
    const key = d.toString('hex');
    const v = this.verified.get(key);
    if (!v) return undefined;
    if (v.expires <= this.now()) {
      this.verified.delete(key);
      return undefined;
    }
    // Sliding: a gateway that keeps sending never needs another scrypt while the process lives.
    v.expires = this.now() + (this.opts.cacheTtlMs ?? 10 * 60_000);
    this.stats.cacheHits++;
    return v.id;
  }

  /** Is this the token of `id`? Checks `id`'s hash (or plain token) only. */
  async verifyAs(authorization: string | undefined, id: string): Promise<VerifyResult> {
    const token = bearerToken(authorization);
    if (token === undefined) return 'refused';
    if (this.identify(authorization) === id) return 'ok';
    const h = this.hashes.get(id);
    if (!h) return 'refused';
    return this.verifyHashed(token, [[id, h]]);
  }

  /** Which id's token is this? Tries every hash: for small sets such as read tokens. */
  async identifyAny(authorization: string | undefined): Promise<{ result: VerifyResult; id?: string }> {
    const token = bearerToken(authorization);
    if (token === undefined) return { result: 'refused' };
    const known = this.identify(authorization);
    if (known !== undefined) return { result: 'ok', id: known };
    if (this.hashes.size === 0) return { result: 'refused' };
    const result = await this.verifyHashed(token, [...this.hashes]);
    return result === 'ok' ? { result, id: this.identify(authorization) } : { result };
  }

  private async verifyHashed(token: string, candidates: Array<[string, ReturnType<typeof parseSecretHash>]>): Promise<VerifyResult> {
    const d = digest(token).toString('hex');
    const refusedKey = `${candidates.length === 1 ? candidates[0][0] : '*'}\0${d}`;
    const until = this.refused.get(refusedKey);
    if (until !== undefined && until > this.now()) return 'refused';
    const r = await this.gate.run(async () => {
      for (const [id, h] of candidates) {
        this.stats.verifications++;
        if (await verifySecret(token, h)) return id;
      }
      return undefined;
    });
    if (r.busy) return 'busy';
    if (r.value === undefined) {
      if (this.refused.size >= 10_000) this.refused.clear();
      this.refused.set(refusedKey, this.now() + (this.opts.negativeTtlMs ?? 60_000));
      return 'refused';
    }
    if (this.verified.size >= 10_000) this.verified.clear();
    this.verified.set(d, { id: r.value, expires: this.now() + (this.opts.cacheTtlMs ?? 10 * 60_000) });
    return 'ok';
  }
}
