/**
 * Hashed secrets: device passwords in the gateway's registry and gateway/read tokens at the cloud
 * are stored as scrypt hashes, never in the clear.
 *
 *   scrypt$N=16384,r=8,p=1$<salt, base64url>$<derived key, base64url>
 *
 * - Verification uses the asynchronous `crypto.scrypt`, which runs on the libuv thread pool, so a
 *   storm of CONNECTs or requests never blocks the event loop; callers bound how many run at once
 *   (the thread pool is shared with LevelDB).
 * - The derived key is compared with `timingSafeEqual`.
 * - Parameters are bounded when parsing, so a mistyped hash in a config file cannot make one
 *   verification take minutes or gigabytes.
 */
import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { SluiceError } from './errors.js';

export const SCRYPT_PREFIX = 'scrypt$';

export interface ScryptParams {
  N: number;
  r: number;
  p: number;
}

/** 16 MiB of memory and roughly 20–60 ms per verification on a Raspberry Pi 4 class CPU. */
export const DEFAULT_SCRYPT: ScryptParams = { N: 16384, r: 8, p: 1 };
const KEY_LEN = 32;
const SALT_LEN = 16;
/** Longest secret we hash at all: anything longer cannot be one of ours and is refused cheaply. */
export const MAX_SECRET_BYTES = 1024;

interface ParsedHash extends ScryptParams {
  salt: Buffer;
  key: Buffer;
}

function scryptAsync(secret: Buffer, salt: Buffer, keylen: number, opts: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => scrypt(secret, salt, keylen, opts, (err, key) => (err ? reject(err) : resolve(key))));
}

function memFor(p: ScryptParams): number {
  // What scrypt needs (128·N·r·p bytes plus slack); Node's default cap is 32 MiB.
  return 128 * p.N * p.r * p.p + 1024 * 1024;
}

/** A fresh random secret, 32 characters of base64url (192 bits). */
export function generateSecret(bytes = 24): string {
  return randomBytes(bytes).toString('base64url');
}

export function isSecretHash(s: string): boolean {
  return s.startsWith(SCRYPT_PREFIX);
}

/** Parse and bound-check a stored hash. Throws SLUICE_BAD_CONFIG naming what is wrong, never echoing it. */
export function parseSecretHash(encoded: string): ParsedHash {
  const m = /^scrypt\$N=(\d{1,8}),r=(\d{1,3}),p=(\d{1,3})\$([A-Za-z0-9_-]{16,128})\$([A-Za-z0-9_-]{16,128})$/.exec(encoded);
  if (!m) throw new SluiceError('SLUICE_BAD_CONFIG', 'not a scrypt hash (expected scrypt$N=…,r=…,p=…$SALT$KEY, as printed by the hash commands)');
  const [N, r, p] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (N < 1024 || N > 1 << 20 || (N & (N - 1)) !== 0) throw new SluiceError('SLUICE_BAD_CONFIG', `scrypt N=${N} must be a power of two between 1024 and 1048576`);
  if (r < 1 || r > 32 || p < 1 || p > 16 || memFor({ N, r, p }) > 512 * 1024 * 1024) {
    throw new SluiceError('SLUICE_BAD_CONFIG', `scrypt r=${r}, p=${p} out of range (r 1..32, p 1..16, at most 512 MiB)`);
  }
  return { N, r, p, salt: Buffer.from(m[4], 'base64url'), key: Buffer.from(m[5], 'base64url') };
}

/** Hash a secret for storage. */
export async function hashSecret(secret: string | Buffer, params: ScryptParams = DEFAULT_SCRYPT): Promise<string> {
  const salt = randomBytes(SALT_LEN);
  const key = await scryptAsync(Buffer.from(secret), salt, KEY_LEN, { ...params, maxmem: memFor(params) });
  return `${SCRYPT_PREFIX}N=${params.N},r=${params.r},p=${params.p}$${salt.toString('base64url')}$${key.toString('base64url')}`;
}

/**
 * Does `secret` match the stored hash? Constant-time in the comparison; a malformed hash is simply
 * "no" (it was checked when the configuration was loaded).
 */
export async function verifySecret(secret: string | Buffer, encoded: string | ParsedHash): Promise<boolean> {
  let h: ParsedHash;
  try {
    h = typeof encoded === 'string' ? parseSecretHash(encoded) : encoded;
  } catch {
    return false;
  }
  const s = Buffer.from(secret);
  if (s.length === 0 || s.length > MAX_SECRET_BYTES) return false;
  const key = await scryptAsync(s, h.salt, h.key.length, { N: h.N, r: h.r, p: h.p, maxmem: memFor(h) });
  return key.length === h.key.length && timingSafeEqual(key, h.key);
}

/**
 * A hash no secret matches, with the default parameters: verifying against it for an unknown user
 * costs the same as for a known one, so response time does not reveal which ids exist.
 */
export const DUMMY_HASH = `${SCRYPT_PREFIX}N=${DEFAULT_SCRYPT.N},r=${DEFAULT_SCRYPT.r},p=${DEFAULT_SCRYPT.p}$${Buffer.alloc(SALT_LEN, 7).toString('base64url')}$${Buffer.alloc(KEY_LEN, 0).toString('base64url')}`;

/**
 * At most `concurrency` verifications at once, at most `maxQueue` waiting: a CONNECT storm or a
 * token-guessing flood gets "busy" (the caller answers 503 / CONNACK 3) instead of queueing forever
 * and starving the thread pool that LevelDB also uses.
 */
export class VerifyGate {
  private running = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(readonly concurrency = 2, readonly maxQueue = 512) {}

  get pending(): number {
    return this.running + this.waiting.length;
  }

  /** Runs `fn` when a slot is free; resolves `busy` at once when the queue is full. */
  async run<T>(fn: () => Promise<T>): Promise<{ busy: true } | { busy: false; value: T }> {
    if (this.running >= this.concurrency) {
      if (this.waiting.length >= this.maxQueue) return { busy: true };
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    } else {
      this.running++;
    }
    try {
      return { busy: false, value: await fn() };
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }
}
