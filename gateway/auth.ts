/**
 * Who is this MQTT client? Device authentication for the broker's CONNECT step.
 *
 * Identities, in order of precedence:
 * 1. A verified TLS client certificate (mTLS): the device id is the certificate's CN. With a
 *    registry, the CN must be registered (removing the entry revokes the device); without one, any
 *    certificate the configured CA signed is accepted as the device it names. A username, if sent,
 *    must equal the CN.
 * 2. Username + password: username = device (or account) id, password = its secret, checked against
 *    the scrypt hash in the registry.
 * 3. No credentials at all: accepted only with `allowAnonymous`, with unrestricted topics.
 * Wrong or missing credentials are refused with CONNACK 5 "not authorized"; more pending
 * verifications than the gate admits get CONNACK 3 "server unavailable".
 *
 * Cost: scrypt runs asynchronously on the thread pool, at most `concurrency` at a time (the pool is
 * shared with LevelDB). A successful verification is remembered for `cacheTtlMs` (as a SHA-256
 * digest of the password, compared in constant time), and simultaneous CONNECTs with the same
 * credentials share one verification, so a fleet reconnecting after a network blip costs one hash
 * per device, not one per CONNECT. An unknown id is verified against a dummy hash so
 * timing does not reveal which ids exist. Secrets and passwords are never logged.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { DUMMY_HASH, parseSecretHash, verifySecret, VerifyGate } from '../protocols/secret-hash.js';
import { DEVICE_ID_RE } from '../protocols/topic.js';
import { Acl } from './auth-acl.js';
import type { DeviceRegistry } from './registry.js';

export interface Identity {
  id: string;
  kind: 'device' | 'account' | 'anonymous';
  via: 'password' | 'certificate' | 'anonymous';
  acl: Acl;
}

export type AuthResult = { ok: true; identity: Identity } | { ok: false; returnCode: 3 | 5; reason: AuthRefusal };

/** Why a CONNECT was refused; also the label of the refusal counter. */
export type AuthRefusal = 'no_credentials' | 'unknown_id' | 'bad_password' | 'bad_certificate' | 'revoked_certificate' | 'cert_username_mismatch' | 'auth_busy';

export interface AuthInput {
  username?: string;
  password?: Buffer | string;
  /** Subject CN of a client certificate the TLS layer verified. */
  certCn?: string;
}

export interface DeviceAuthOptions {
  registry?: DeviceRegistry;
  allowAnonymous: boolean;
  /** How long a successful password verification is remembered (ms, default 5 min; 0 disables). */
  cacheTtlMs?: number;
  /** Concurrent scrypt verifications (default 2). */
  concurrency?: number;
  /** Verifications allowed to wait; beyond that CONNACK 3 (default 512). */
  maxQueue?: number;
  now?: () => number;
}

const DUMMY = parseSecretHash(DUMMY_HASH);

function digest(b: Buffer | string): Buffer {
  return createHash('sha256').update(b).digest();
}

export class DeviceAuth {
  private readonly gate: VerifyGate;
  private readonly cache = new Map<string, { digest: Buffer; expires: number; generation: number }>();
  private readonly inflight = new Map<string, Promise<{ busy: true } | { busy: false; value: boolean }>>();
  private readonly now: () => number;
  private readonly ttl: number;
  readonly stats = { verifications: 0, cacheHits: 0 };

  constructor(private readonly opts: DeviceAuthOptions) {
    this.gate = new VerifyGate(opts.concurrency ?? 2, opts.maxQueue ?? 512);
    this.now = opts.now ?? Date.now;
    this.ttl = opts.cacheTtlMs ?? 5 * 60_000;
  }

  get pendingVerifications(): number {
    return this.gate.pending;
  }

  async authenticate(input: AuthInput): Promise<AuthResult> {
    const registry = this.opts.registry;
    if (registry) await registry.refresh();
    if (input.certCn !== undefined) return this.byCertificate(input);
    const hasUser = input.username !== undefined && input.username !== '';
    if (!registry) {
      // Nothing to check credentials against: anonymous mode takes everyone (as mosquitto does
      // with allow_anonymous and no password file), otherwise nobody.
      if (this.opts.allowAnonymous) return { ok: true, identity: { id: '', kind: 'anonymous', via: 'anonymous', acl: Acl.open() } };
      return { ok: false, returnCode: 5, reason: hasUser ? 'unknown_id' : 'no_credentials' };
    }
    if (!hasUser) {
      if (this.opts.allowAnonymous && (input.password === undefined || input.password.length === 0)) {
        return { ok: true, identity: { id: '', kind: 'anonymous', via: 'anonymous', acl: Acl.open() } };
      }
      return { ok: false, returnCode: 5, reason: 'no_credentials' };
    }
    const password = input.password === undefined ? Buffer.alloc(0) : Buffer.from(input.password);
    const entry = registry.get(input.username!);
    if (entry && this.cached(entry.id, password, registry.generation)) {
      this.stats.cacheHits++;
      return { ok: true, identity: { id: entry.id, kind: entry.kind, via: 'password', acl: entry.acl } };
    }
    if (password.length === 0) return { ok: false, returnCode: 5, reason: entry ? 'bad_password' : 'unknown_id' };
    // Concurrent CONNECTs with the same credentials (a device's reconnect storm) share one scrypt.
    const key = `${registry.generation}\0${input.username}\0${digest(password).toString('hex')}`;
    let pending = this.inflight.get(key);
    if (!pending) {
      pending = this.gate.run(() => {
        this.stats.verifications++;
        return verifySecret(password, entry?.hash ?? DUMMY);
      });
      this.inflight.set(key, pending);
      void pending.finally(() => this.inflight.delete(key));
    }
    const r = await pending;
    if (r.busy) return { ok: false, returnCode: 3, reason: 'auth_busy' };
    if (!entry) return { ok: false, returnCode: 5, reason: 'unknown_id' };
    if (!r.value) return { ok: false, returnCode: 5, reason: 'bad_password' };
    if (this.ttl > 0) this.remember(entry.id, password, registry.generation);
    return { ok: true, identity: { id: entry.id, kind: entry.kind, via: 'password', acl: entry.acl } };
  }

  private byCertificate(input: AuthInput): AuthResult {
    const cn = input.certCn!;
    if (!DEVICE_ID_RE.test(cn)) return { ok: false, returnCode: 5, reason: 'bad_certificate' };
    if (input.username !== undefined && input.username !== '' && input.username !== cn) return { ok: false, returnCode: 5, reason: 'cert_username_mismatch' };
    const registry = this.opts.registry;
    if (registry) {
      const entry = registry.get(cn);
      if (!entry) return { ok: false, returnCode: 5, reason: 'revoked_certificate' };
      return { ok: true, identity: { id: cn, kind: entry.kind, via: 'certificate', acl: entry.acl } };
    }
    const acl = new Acl({ publish: [`devices/${cn}/#`], subscribe: [], denyPublish: [], denySubscribe: [] });
    return { ok: true, identity: { id: cn, kind: 'device', via: 'certificate', acl } };
  }

  private cached(id: string, password: Buffer, generation: number): boolean {
    const c = this.cache.get(id);
    if (!c) return false;
    if (c.expires <= this.now() || c.generation !== generation) {
      this.cache.delete(id);
      return false;
    }
    return timingSafeEqual(c.digest, digest(password));
  }

  private remember(id: string, password: Buffer, generation: number): void {
    // Bounded: at most one entry per registered id.
    this.cache.set(id, { digest: digest(password), expires: this.now() + this.ttl, generation });
  }
}
