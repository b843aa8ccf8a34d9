/**
 * The embedded MQTT broker (aedes) on TCP, with Sluice's hooks.
 *
 * Guarantees
 * - A telemetry PUBLISH is committed to the durable log inside `authorizePublish`, which aedes runs
 *   before it writes the PUBACK (lib/handlers/publish.js: [authorizePublish, enqueuePublish]); so a
 *   PUBACK always follows the commit. If the commit fails the client is disconnected without a
 *   PUBACK and will resend.
 * - A telemetry PUBLISH with a bad payload is acknowledged (so the device does not resend the same
 *   poison message forever), counted, dead-lettered, and not forwarded to local subscribers.
 * - Other topics are brokered normally; `$SYS/` is reserved for the broker.
 * - Backpressure: while more than `highWater` commits are pending, publishing clients' sockets are
 *   paused; they resume below `lowWater`. A subscriber that does not drain within `drainTimeoutMs`
 *   is disconnected, so it cannot stall the broker.
 */
import { Aedes, type AedesPublishPacket, type Client, type PublishPacket } from 'aedes';
import { createServer, type Server, type Socket } from 'node:net';
import type { Ingest } from './ingest.js';

export interface BrokerConfig {
  host: string;
  port: number;
  /** Accept clients without credentials. Required until a device registry is configured. */
  allowAnonymous: boolean;
  /** Pending commits above which publishing sockets are paused. */
  highWater: number;
  /** Pending commits below which paused sockets resume. */
  lowWater: number;
  /** ms to wait for a slow subscriber's socket to drain before disconnecting it. */
  drainTimeoutMs: number;
  /** Largest accepted MQTT packet in bytes. */
  maxPacketBytes: number;
  /** Most simultaneous client connections. */
  maxConnections: number;
  /** Drop (and count) QoS 0 telemetry while overloaded instead of queueing it. */
  shedQos0: boolean;
}

export const DEFAULT_BROKER_CONFIG: Omit<BrokerConfig, 'host' | 'port' | 'allowAnonymous'> = {
  highWater: 20_000,
  lowWater: 5_000,
  drainTimeoutMs: 10_000,
  maxPacketBytes: 256 * 1024,
  maxConnections: 10_000,
  shedQos0: true,
};

export interface BrokerStats {
  connected: number;
  connections: number;
  refusedConnections: number;
  clientErrors: number;
  pendingCommits: number;
  pausedSockets: number;
  pauses: number;
}

export class Broker {
  readonly config: BrokerConfig;
  readonly stats: BrokerStats = { connected: 0, connections: 0, refusedConnections: 0, clientErrors: 0, pendingCommits: 0, pausedSockets: 0, pauses: 0 };
  private aedes!: Aedes;
  private server!: Server;
  private readonly refused = new WeakSet<object>();
  private readonly paused = new Set<Socket>();
  private address = '';

  constructor(
    config: Partial<BrokerConfig> & Pick<BrokerConfig, 'host' | 'port' | 'allowAnonymous'>,
    private readonly ingest: Ingest,
    private readonly onLog: (level: 'warn' | 'error' | 'info', msg: string, extra?: object) => void = () => undefined,
  ) {
    this.config = { ...DEFAULT_BROKER_CONFIG, ...config };
  }

  get url(): string {
    return this.address;
  }

  get instance(): Aedes {
    return this.aedes;
  }

  async start(): Promise<string> {
    this.aedes = await Aedes.createBroker({
      drainTimeout: this.config.drainTimeoutMs,
      connectTimeout: 10_000,
      authenticate: (client, username, _password, done) => {
        if (this.config.allowAnonymous) return done(null, true);
        // No device registry yet: refuse everyone. [MQTT-3.2.2-5] CONNACK 5 "not authorized".
        const err = Object.assign(new Error('not authorized'), { returnCode: 5 as const });
        this.onLog('warn', 'refused MQTT client: no credentials accepted', { client: client.id, username });
        done(err as any, null);
      },
      authorizePublish: (client, packet, callback) => this.authorizePublish(client, packet, callback),
      // aedes copies the packet before forwarding but keeps the payload buffer: mark that.
      authorizeForward: (_client, packet) => (this.refused.has(packet.payload as object) ? null : packet),
    });
    this.aedes.on('client', () => this.stats.connected++);
    this.aedes.on('clientDisconnect', () => this.stats.connected--);
    this.aedes.on('clientError', () => this.stats.clientErrors++);
    this.aedes.on('connectionError', () => this.stats.clientErrors++);
    this.server = createServer((socket) => {
      this.stats.connections++;
      if (this.aedes.connectedClients >= this.config.maxConnections) {
        this.stats.refusedConnections++;
        socket.destroy();
        return;
      }
      socket.on('error', () => undefined);
      this.aedes.handle(socket);
    });
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.config.port, this.config.host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    const addr = this.server.address();
    const port = typeof addr === 'object' && addr ? addr.port : this.config.port;
    this.address = `mqtt://${this.config.host.includes(':') ? `[${this.config.host}]` : this.config.host}:${port}`;
    return this.address;
  }

  private authorizePublish(client: Client | null, packet: PublishPacket, callback: (error?: Error | null) => void): void {
    if (packet.topic.startsWith('$SYS/')) return callback(new Error('$SYS/ topics are reserved'));
    const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload;
    const contentType = (packet as any).properties?.contentType as string | undefined;
    if (packet.qos === 0 && this.config.shedQos0 && this.overloaded()) {
      // Policy: under pressure QoS 0 telemetry (which the device does not expect to be confirmed)
      // is shed first, counted, so QoS 1 readings keep their room.
      if (this.ingest.shed(packet.topic)) {
        if (typeof packet.payload === 'object') this.refused.add(packet.payload);
        return callback(null);
      }
    }
    const result = this.ingest.accept(packet.topic, payload, client?.id ?? '', contentType);
    if (result === null) return callback(null);
    if (!result.ok) {
      if (typeof packet.payload === 'object') this.refused.add(packet.payload);
      return callback(null);
    }
    this.stats.pendingCommits++;
    if (client && this.overloaded()) this.pause(client);
    result.committed.then(
      () => {
        this.stats.pendingCommits--;
        if (this.stats.pendingCommits < this.config.lowWater) this.resumeAll();
        callback(null);
      },
      (err: Error) => {
        this.stats.pendingCommits--;
        if (this.stats.pendingCommits < this.config.lowWater) this.resumeAll();
        this.onLog('error', 'commit failed: disconnecting client without PUBACK', { client: client?.id, err: err.message });
        callback(err);
      },
    );
  }

  /** Over the high watermark of pending commits, or the log is full. */
  overloaded(): boolean {
    return this.stats.pendingCommits > this.config.highWater || this.ingest.logFull();
  }

  private pause(client: Client): void {
    const sock = (client as any).conn as Socket | undefined;
    if (!sock || this.paused.has(sock) || typeof sock.pause !== 'function') return;
    sock.pause();
    this.paused.add(sock);
    this.stats.pauses++;
    this.stats.pausedSockets = this.paused.size;
  }

  private resumeAll(): void {
    if (this.paused.size === 0) return;
    for (const s of this.paused) s.resume();
    this.paused.clear();
    this.stats.pausedSockets = 0;
  }

  /** Stop accepting connections and disconnect clients. In-flight commits are the log's to finish. */
  async stop(): Promise<void> {
    if (!this.server) return;
    this.resumeAll();
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      // close() waits for connections to end; aedes.close() ends them.
      this.aedes.close(() => undefined);
    });
  }
}

export type { AedesPublishPacket };
