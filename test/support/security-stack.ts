/**
 * The whole stack on real parts, as test/support/stack.ts, but secured: the gateway runs without
 * --allow-anonymous (unless asked), with whatever security flags the test gives (registry, mqtts,
 * --cloud-ca), the cloud may take a token hash and TLS flags, and the full stderr of both processes
 * is kept so a test can assert that no secret was ever logged.
 */
import type { SluiceProcess } from '../../deploy/processes.js';
import { startStack, type Stack } from './stack.js';

export interface SecureStack extends Omit<Stack, 'startGateway'> {
  startGateway(extraArgs?: string[]): Promise<SluiceProcess>;
}

export interface SecureStackOptions {
  gatewayId?: string;
  db?: string;
  /** Extra gateway flags (e.g. --registry FILE, --mqtts …). */
  gatewayArgs?: string[];
  /** Add --allow-anonymous (default false). */
  anonymous?: boolean;
  /** Extra cloud flags (e.g. --tls-cert/--tls-key). */
  cloudArgs?: string[];
  /** Give the cloud only the scrypt hash of the gateway token. */
  hashedToken?: boolean;
  /** Called with the temp dir before anything starts (to write a registry, certificates…). */
  prepare?: (dir: string) => Promise<{ gatewayArgs?: string[]; cloudArgs?: string[] } | void>;
}

/** startStack() secured: no anonymous access unless asked, the token in the environment, logs kept. */
export async function startSecureStack(opts: SecureStackOptions = {}): Promise<SecureStack> {
  const stack = await startStack({
    ...opts,
    gatewayId: opts.gatewayId ?? 'gw-sec',
    gatewayArgs: ['--sync', 'never', ...(opts.gatewayArgs ?? [])],
    anonymous: opts.anonymous ?? false,
    tokenInEnv: true,
    tmpPrefix: 'sluice-sec-e2e-',
  });
  const start = stack.startGateway.bind(stack);
  return Object.assign(stack, { startGateway: (extraArgs: string[] = []) => start({ extraArgs }) });
}

/** A hand-made MQTT 3.1.1 CONNECT packet (for cases client libraries refuse to produce). */
export function connectPacket(opts: { clientId: string; clean: boolean; username?: string; password?: string; keepalive?: number }): Buffer {
  const str = (s: string) => {
    const b = Buffer.from(s, 'utf8');
    const len = Buffer.alloc(2);
    len.writeUInt16BE(b.length);
    return Buffer.concat([len, b]);
  };
  let flags = opts.clean ? 0x02 : 0;
  if (opts.username !== undefined) flags |= 0x80;
  if (opts.password !== undefined) flags |= 0x40;
  const ka = Buffer.alloc(2);
  ka.writeUInt16BE(opts.keepalive ?? 30);
  const body = Buffer.concat([
    str('MQTT'),
    Buffer.from([4, flags]),
    ka,
    str(opts.clientId),
    ...(opts.username !== undefined ? [str(opts.username)] : []),
    ...(opts.password !== undefined ? [str(opts.password)] : []),
  ]);
  return Buffer.concat([Buffer.from([0x10]), remainingLength(body.length), body]);
}

/** A QoS 0 PUBLISH packet. */
export function publishPacket(topic: string, payload: Buffer | string): Buffer {
  const t = Buffer.from(topic, 'utf8');
  const tl = Buffer.alloc(2);
  tl.writeUInt16BE(t.length);
  const body = Buffer.concat([tl, t, Buffer.from(payload)]);
  return Buffer.concat([Buffer.from([0x30]), remainingLength(body.length), body]);
}

export function remainingLength(n: number): Buffer {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return Buffer.from(out);
}
