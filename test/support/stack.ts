/**
 * The whole Sluice stack on real parts for end-to-end tests: a private influxd, the cloud and the
 * gateway as separate `sluice` processes on free loopback ports, data in temporary directories.
 */
import { join } from 'node:path';
import { influxQuery, startInfluxd, type InfluxdHandle } from '../../deploy/influxd.js';
import { CLOUD_READY, GATEWAY_READY, startSluice, type SluiceProcess } from '../../deploy/processes.js';
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
  gatewayHttp: string;
  dir: string;
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

export async function startStack(opts: { gatewayId?: string; db?: string; gatewayArgs?: string[] } = {}): Promise<Stack> {
  const tmp = await tempDir('sluice-e2e-');
  let influx = await startInfluxd({ dataDir: join(tmp.path, 'influxdb') });
  const influxPort = influx.port;
  const db = opts.db ?? 'sluice';
  const gatewayId = opts.gatewayId ?? 'gw-e2e';
  const token = 'tok-' + Math.random().toString(36).slice(2);
  const cloudArgs = (listen: string) => [
    'cloud', '--listen', listen, '--data', join(tmp.path, 'cloud'), '--gateway-token', `${gatewayId}=${token}`,
    '--influx', influx.url, '--influx-api', '1', '--influx-db', db,
  ];
  const cloud = await startSluice(cloudArgs('127.0.0.1:0'), CLOUD_READY);
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
    gatewayHttp: '',
    dir: tmp.path,
    async stopCloud() {
      await stack.cloud.stop('SIGTERM');
    },
    async startCloud() {
      stack.cloud = await startSluice(cloudArgs(`127.0.0.1:${new URL(cloudUrl).port}`), CLOUD_READY);
    },
    async stopInflux() {
      await stack.influx.stop();
    },
    async startInflux() {
      influx = await startInfluxd({ dataDir: join(tmp.path, 'influxdb'), port: influxPort });
      stack.influx = influx;
    },
    async startGateway(g = {}) {
      const proc = await startSluice(
        [
          'gateway', '--id', gatewayId, '--mqtt', `127.0.0.1:${g.mqttPort ?? 0}`, '--http', '127.0.0.1:0', '--data', join(tmp.path, 'gateway'),
          '--cloud', cloudUrl, '--cloud-token', token, '--allow-anonymous', ...(opts.gatewayArgs ?? []), ...(g.extraArgs ?? []),
        ],
        GATEWAY_READY,
      );
      stack.gateway = proc;
      stack.mqttUrl = proc.match[2];
      stack.gatewayHttp = proc.match[3];
      return proc;
    },
    async stop() {
      await stack.gateway?.stop('SIGTERM').catch(() => undefined);
      await stack.cloud.stop('SIGTERM').catch(() => undefined);
      await stack.influx.stop().catch(() => undefined);
      await tmp.remove();
    },
  };
  await stack.startGateway();
  return stack;
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
