/**
 * The whole Sluice stack on real parts for end-to-end tests: a private influxd, the cloud and the
 * gateway as separate `sluice` processes on free loopback ports, data in temporary directories.
 */
import { join } from 'node:path';
import { influxQuery, startInfluxd, type InfluxdHandle } from '../../deploy/influxd.js';
import { CLOUD_READY, GATEWAY_READY, startSluice, type SluiceProcess } from '../../deploy/processes.js';
import { hashSecret } from '../../protocols/secret-hash.js';
import { tempDir } from './tmp.js';

export interface Stack {
  influx: InfluxdHandle;
  db: string;
  cloud: SluiceProcess;
  cloudUrl: string;
  gateway: SluiceProcess;
  gatewayId: string;
  token: string;
  mqttUrl: string;
  /** The gateway's MQTT-over-TLS address when it was started with --mqtts, else ''. */
  mqttsUrl: string;
  gatewayHttp: string;
  dir: string;
  /** Everything the gateway / cloud wrote on stderr (their JSON logs), across restarts. */
  gatewayLog(): string;
  cloudLog(): string;
  /** Stop the cloud process (SIGTERM). */
  stopCloud(): Promise<void>;
  /** Start the cloud process again on the same port and data directory. */
  startCloud(): Promise<void>;
  /** Stop influxd (its data stays). */
  stopInflux(): Promise<void>;
  /** Start influxd again on the same port and data directory. */
  startInflux(): Promise<void>;
  /** Start (or restart) the gateway process on the same data directory and, if given, port. */
  startGateway(opts?: { mqttPort?: number; extraArgs?: string[] }): Promise<SluiceProcess>;
  stop(): Promise<void>;
}

export interface StackOptions {
  gatewayId?: string;
  db?: string;
  /** Extra gateway flags (e.g. --windows, --registry FILE, --mqtts …). */
  gatewayArgs?: string[];
  /** Extra cloud flags (e.g. --rules FILE, --tls-cert/--tls-key). */
  cloudArgs?: string[];
  /** Start the gateway with --allow-anonymous (default true). */
  anonymous?: boolean;
  /** Give the cloud only the scrypt hash of the gateway token. */
  hashedToken?: boolean;
  /** Pass the gateway's cloud token in SLUICE_CLOUD_TOKEN, as a deployment should, not as a flag. */
  tokenInEnv?: boolean;
  /** Called with the temporary directory before anything starts (to write rules, a registry, certificates…). */
  prepare?: (dir: string) => Promise<{ gatewayArgs?: string[]; cloudArgs?: string[] } | void>;
  tmpPrefix?: string;
}

export async function startStack(opts: StackOptions = {}): Promise<Stack> {
  const tmp = await tempDir(opts.tmpPrefix ?? 'sluice-e2e-');
  let gatewayLog = '';
  let cloudLog = '';
  let influx: InfluxdHandle | undefined;
  try {
    const prepared = (await opts.prepare?.(tmp.path)) ?? {};
    influx = await startInfluxd({ dataDir: join(tmp.path, 'influxdb') });
    const influxPort = influx.port;
    const influxUrl = influx.url;
    const db = opts.db ?? 'sluice';
    const gatewayId = opts.gatewayId ?? 'gw-e2e';
    const token = 'tok-' + Math.random().toString(36).slice(2) + Math.random().toString(36).slice(2);
    const tokenArg = opts.hashedToken ? ['--gateway-token-hash', `${gatewayId}=${await hashSecret(token)}`] : ['--gateway-token', `${gatewayId}=${token}`];
    const cloudArgs = (listen: string) => [
      'cloud', '--listen', listen, '--data', join(tmp.path, 'cloud'), ...tokenArg,
      '--influx', influxUrl, '--influx-api', '1', '--influx-db', db, ...(opts.cloudArgs ?? []), ...(prepared.cloudArgs ?? []),
    ];
    const onCloudStderr = (c: string) => (cloudLog = (cloudLog + c).slice(-2_000_000));
    const cloud = await startSluice(cloudArgs('127.0.0.1:0'), CLOUD_READY, { onStderr: onCloudStderr });
    const cloudUrl = cloud.match[1];
    const stack: Stack = {
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
      async stopCloud() {
        await stack.cloud.stop('SIGTERM');
      },
      async startCloud() {
        stack.cloud = await startSluice(cloudArgs(`127.0.0.1:${new URL(cloudUrl).port}`), CLOUD_READY, { onStderr: onCloudStderr });
      },
      async stopInflux() {
        await stack.influx.stop();
      },
      async startInflux() {
        stack.influx = await startInfluxd({ dataDir: join(tmp.path, 'influxdb'), port: influxPort });
      },
      async startGateway(g = {}) {
        const proc = await startSluice(
          [
            'gateway', '--id', gatewayId, '--mqtt', `127.0.0.1:${g.mqttPort ?? 0}`, '--http', '127.0.0.1:0', '--data', join(tmp.path, 'gateway'),
            '--cloud', cloudUrl, ...(opts.tokenInEnv ? [] : ['--cloud-token', token]), ...(opts.anonymous === false ? [] : ['--allow-anonymous']),
            ...(opts.gatewayArgs ?? []), ...(prepared.gatewayArgs ?? []), ...(g.extraArgs ?? []),
          ],
          GATEWAY_READY,
          { env: opts.tokenInEnv ? { SLUICE_CLOUD_TOKEN: token } : {}, onStderr: (c) => (gatewayLog = (gatewayLog + c).slice(-2_000_000)) },
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
      await stack.cloud.stop('SIGKILL').catch(() => undefined);
      throw err;
    }
    return stack;
  } catch (err) {
    await influx?.stop().catch(() => undefined);
    await tmp.remove();
    throw err;
  }
}

export interface StoredPoint {
  time: number;
  device: string;
  gateway: string;
  [field: string]: unknown;
}

/** Every point of a measurement, with tags and fields by name (time in ms). */
export async function allPoints(stack: Pick<Stack, 'influx' | 'db'>, measurement = 'telemetry', where = ''): Promise<StoredPoint[]> {
  const body = await influxQuery(stack.influx.url, `SELECT * FROM "${measurement}"${where ? ` WHERE ${where}` : ''}`, stack.db).catch((err) => {
    if (/database not found/.test(String(err))) return { results: [{}] };
    throw err;
  });
  const series = body.results?.[0]?.series ?? [];
  const out: StoredPoint[] = [];
  for (const s of series) {
    for (const row of s.values) {
      const p: Record<string, unknown> = {};
      s.columns.forEach((c: string, i: number) => {
        if (row[i] !== null) p[c] = row[i];
      });
      out.push(p as StoredPoint);
    }
  }
  return out;
}
