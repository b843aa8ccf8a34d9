/**
 * The whole stack on real parts, as test/support/stack.ts, but secured: the gateway runs without
 * --allow-anonymous (unless asked), with whatever security flags the test gives (registry, mqtts,
 * --cloud-ca), the cloud may take a token hash and TLS flags, and the full stderr of both processes
 * is kept so a test can assert that no secret was ever logged.
 */
import { join } from 'node:path';
import { startInfluxd, type InfluxdHandle } from '../../deploy/influxd.js';
import { CLOUD_READY, GATEWAY_READY, startSluice, type SluiceProcess } from '../../deploy/processes.js';
import { hashSecret } from '../../protocols/secret-hash.js';
import { tempDir } from './tmp.js';

export interface SecureStack {
  influx: InfluxdHandle;
  db: string;
  cloud: SluiceProcess;
  cloudUrl: string;
  gateway: SluiceProcess;
  gatewayId: string;
  token: string;
  mqttUrl: string;
  mqttsUrl: string;
  gatewayHttp: string;
  dir: string;
  /** Everything the gateway / cloud wrote on stderr (the JSON logs), across restarts. */
  gatewayLog(): string;
  cloudLog(): string;
  startGateway(extraArgs?: string[]): Promise<SluiceProcess>;
  stop(): Promise<void>;
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

export async function startSecureStack(opts: SecureStackOptions = {}): Promise<SecureStack> {
  const tmp = await tempDir('sluice-sec-e2e-');
  let gatewayLog = '';
  let cloudLog = '';
  try {
    const prepared = (await opts.prepare?.(tmp.path)) ?? {};
    const influx = await startInfluxd({ dataDir: join(tmp.path, 'influxdb') });
    const db = opts.db ?? 'sluice';
    const gatewayId = opts.gatewayId ?? 'gw-sec';
    const token = 'tok-' + Math.random().toString(36).slice(2) + Math.random().toString(36).slice(2);
    const tokenArg = opts.hashedToken ? ['--gateway-token-hash', `${gatewayId}=${await hashSecret(token)}`] : ['--gateway-token', `${gatewayId}=${token}`];
    const cloud = await startSluice(
      ['cloud', '--listen', '127.0.0.1:0', '--data', join(tmp.path, 'cloud'), ...tokenArg, '--influx', influx.url, '--influx-api', '1', '--influx-db', db,
        ...(opts.cloudArgs ?? []), ...(prepared.cloudArgs ?? [])],
      CLOUD_READY,
      { onStderr: (c) => (cloudLog += c) },
    ).catch(async (err) => {
      await influx.stop();
      throw err;
    });
    const cloudUrl = cloud.match[1];
    const stack: SecureStack = {
      influx,
      db,
      cloud,
      cloudUrl,
      gateway: undefined as unknown as SluiceProcess,
      gatewayId,
      token,
      mqttUrl: '',
      mqttsUrl: '',
      gatewayHttp: '',
      dir: tmp.path,
      gatewayLog: () => gatewayLog,
      cloudLog: () => cloudLog,
      async startGateway(extra = []) {
        const proc = await startSluice(
          ['gateway', '--id', gatewayId, '--mqtt', '127.0.0.1:0', '--http', '127.0.0.1:0', '--data', join(tmp.path, 'gateway'), '--cloud', cloudUrl,
            '--sync', 'never', ...(opts.anonymous ? ['--allow-anonymous'] : []), ...(opts.gatewayArgs ?? []), ...(prepared.gatewayArgs ?? []), ...extra],
          GATEWAY_READY,
          // The token goes through the environment, as a deployment should do it.
          { env: { SLUICE_CLOUD_TOKEN: token }, onStderr: (c) => (gatewayLog += c) },
        );
        stack.gateway = proc;
        stack.mqttUrl = proc.match[2];
        stack.gatewayHttp = proc.match[3];
        stack.mqttsUrl = / mqtts (mqtts:\/\/\S+)/.exec(proc.readyLine)?.[1] ?? '';
        return proc;
      },
      async stop() {
        await stack.gateway?.stop('SIGTERM').catch(() => undefined);
        await stack.cloud.stop('SIGTERM').catch(() => undefined);
        await stack.influx.stop().catch(() => undefined);
        await tmp.remove();
      },
    };
    try {
      await stack.startGateway();
    } catch (err) {
      await cloud.stop('SIGKILL').catch(() => undefined);
      await influx.stop().catch(() => undefined);
      throw err;
    }
    return stack;
  } catch (err) {
    await tmp.remove();
    throw err;
  }
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
