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
 * - Other topics are brokered normally; `$SYS/` is reserved for the broker. Telemetry reaches local
 *   subscribers like any topic; while no subscription that could match it exists, aedes' publish
 *   pipeline is skipped for it (skipUnwatchedTelemetry: nobody would receive anything).
 * - Backpressure: aedes reads a client's next packets only once every packet of its current read
 *   has completed, and a QoS 1 telemetry publish completes at its commit: that paces each client.
 *   (A QoS 0 one completes when queued for commit: it has no PUBACK to delay.) Across clients,
 *   once more than `highWater` commits are pending, publishes are held (a PUBACK delayed, and so
 *   their client's next read) until the pending commits are back under `lowWater`: the readings in
 *   memory stay bounded however many devices publish. Each client is read in batches of at most
 *   `readBatchBytes` (read-batch.ts), so that overshoots `highWater` by little. QoS 0 telemetry is
 *   shed, counted, only when the log is full or more than 2 × `highWater` commits are pending; a
 *   shed publish completes when pending is back under `lowWater` (at most 1 s later), so a flood
 *   is slowed, not spun through. A subscriber that does not drain within `drainTimeoutMs` is
 *   disconnected, so it cannot stall the broker.
 * - Security (gateway/README.md "Security"): every client is authenticated at CONNECT (auth.ts:
 *   registry password, TLS client certificate, or anonymous only with `allowAnonymous`) and then
 *   confined by its ACL (auth-acl.ts). A refused PUBLISH is acknowledged and dropped
 *   [MQTT-3.3.5-2], never stored or forwarded; a refused SUBSCRIBE gets 0x80 in the SUBACK. Client
 *   ids are scoped by identity, so one device cannot take over another's session.
 * - Limits (auth-limits.ts): packet size, topic length/depth, per-device publish rate, open sockets,
 *   CONNECT timeout. Exceeding one is refused and counted (stats.dropped / stats.refused), never a
 *   crash. A QoS 1/2 publish over the rate closes the connection without PUBACK, so the reading is
 *   not lost: the device resends it after reconnecting.
 */
import { Aedes, type AedesPublishPacket, type Client, type PublishPacket, type Subscription } from 'aedes';
import mqttPacket from 'mqtt-packet';
import { createServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls';
import { DeviceAuth, type DeviceAuthOptions, type Identity } from './auth.js';
import { DEFAULT_ADMISSION_LIMITS, limitPacketSize, RateLimiter, topicLimitViolation } from './auth-limits.js';
import { isTelemetryTopic } from '../protocols/topic.js';
import type { Ingest } from './ingest.js';
import { settle } from './log.js';
import { coalescePubacks, fastPublishParse } from './mqtt-fast-path.js';
import { limitReadBatch } from './read-batch.js';
import { DeviceRegistry } from './registry.js';
import { tlsServerOptions, verifiedClientCn, type TlsListenConfig } from './tls.js';

export interface BrokerConfig {
  host: string;
  port: number;
  /** Accept clients without credentials. Required until a device registry is configured. */
  allowAnonymous: boolean;
  /** Pending commits above which committed publishes are held (PUBACK delayed, client not read). */
  highWater: number;
  /** Pending commits below which held publishes are released. */
  lowWater: number;
  /** ms to wait for a slow subscriber's socket to drain before disconnecting it. */
  drainTimeoutMs: number;
  /**
   * Bytes of MQTT packets aedes reads from one client before it waits for them to complete
   * (read-batch.ts); 0 = whatever the socket buffered. Bounds how far a flood overshoots `highWater`.
   */
  readBatchBytes: number;
  /**
   * Parse PUBLISH and write PUBACK without mqtt-packet's general machinery where the packets are
   * plain (mqtt-fast-path.ts); off only to compare against it.
   */
  mqttFastPath: boolean;
  /** Largest accepted MQTT packet in bytes. */
  maxPacketBytes: number;
  /** Most simultaneous client connections. */
  maxConnections: number;
  /** Drop (and count) QoS 0 telemetry when the log is full or more than 2 × `highWater` commits are pending, instead of queueing it. */
  shedQos0: boolean;
  /** Longest topic or topic filter in characters. */
  maxTopicLength: number;
  /** Most levels in a topic or topic filter. */
  maxTopicLevels: number;
  /** Sustained publishes per second per device/account (0 = unlimited). */
  publishRate: number;
  /** Publishes a device may burst above the sustained rate. */
  publishBurst: number;
  /** ms a new connection has to send CONNECT (also the TLS handshake timeout). */
  connectTimeoutMs: number;
  /** Device registry (YAML, registry.ts). Without it only anonymous or certificate clients get in. */
  registryFile?: string;
  /** MQTT over TLS listener, in addition to the plain one. */
  tls?: TlsListenConfig;
  /** Tuning of credential verification (cache, concurrency); defaults suit production. */
  auth?: Pick<DeviceAuthOptions, 'cacheTtlMs' | 'concurrency' | 'maxQueue'>;
}

/**
 * Longest a shed QoS 0 publish is held before aedes may read that client's next packets (ms). It
 * is normally released earlier, when the pending commits fall under `lowWater`; the timeout is for
 * a full log, where nothing commits. Shorter (50 ms) let a flood back in well before the commits
 * had caught up, and most of it was shed again.
 */
const SHED_HOLD_MS = 1000;

/** The commit callback of a QoS 0 reading, whose publish already completed when it was queued. */
const QOS0_QUEUED = (_err: Error | null): void => undefined;

export const DEFAULT_BROKER_CONFIG: Omit<BrokerConfig, 'host' | 'port' | 'allowAnonymous'> = {
  // Four full group commits (log maxGroup 2,000) queued keep the disk busy; more in flight only
  // costs memory (each pending commit holds its packet, its reading and aedes' callback).
  highWater: 8_000,
  lowWater: 4_000,
  drainTimeoutMs: 10_000,
  // ~60 small publishes. A client with more than that in flight (a bridge, say) waits for a
  // commit per 8 KiB; with 100 clients the batches can add ~6,000 pending commits over highWater,
  // which stays under the 2 × highWater where QoS 0 is shed.
  readBatchBytes: 8192,
  mqttFastPath: true,
  maxPacketBytes: DEFAULT_ADMISSION_LIMITS.maxPacketBytes,
  maxConnections: 10_000,
  shedQos0: true,
  maxTopicLength: DEFAULT_ADMISSION_LIMITS.maxTopicLength,
  maxTopicLevels: DEFAULT_ADMISSION_LIMITS.maxTopicLevels,
  publishRate: DEFAULT_ADMISSION_LIMITS.publishRate,
  publishBurst: DEFAULT_ADMISSION_LIMITS.publishBurst,
  connectTimeoutMs: DEFAULT_ADMISSION_LIMITS.connectTimeoutMs,
};

export interface BrokerStats {
  connected: number;
  connections: number;
  refusedConnections: number;
  clientErrors: number;
  pendingCommits: number;
  /** Committed publishes whose completion (PUBACK) is held by backpressure right now. */
  heldPublishes: number;
  /** Times backpressure started holding publishes. */
  holds: number;
  /** Open sockets, including those not yet past CONNECT. */
  openSockets: number;
  /** Refused connections and subscriptions, by reason (bad_password, identifier_rejected, subscribe_denied, …). */
  refused: Record<string, number>;
  /** Publishes refused before ingest, by reason (acl_denied, rate_limited, topic_too_long, packet_too_large, …). */
  dropped: Record<string, number>;
  /** scrypt verifications run, and CONNECTs answered from the verification cache. */
  authVerifications: number;
  authCacheHits: number;
}

export class Broker {
  readonly config: BrokerConfig;
  readonly stats: BrokerStats = {
    connected: 0, connections: 0, refusedConnections: 0, clientErrors: 0, pendingCommits: 0, heldPublishes: 0, holds: 0,
    openSockets: 0, refused: {}, dropped: {}, authVerifications: 0, authCacheHits: 0,
  };
  private aedes!: Aedes;
  private server!: Server;
  private tlsServer?: TlsServer;
  private readonly refused = new WeakSet<object>();
  /** Completions held by backpressure (see settled()); undefined while not holding. */
  private held: Array<(err: Error | null) => void> | undefined;
  /** A subscription that could match a telemetry topic has been made (skipUnwatchedTelemetry). */
  private telemetryWatched = false;
  private shedHeld: Array<(error?: Error | null) => void> = [];
  private shedTimer?: NodeJS.Timeout;
  private readonly sockets = new Set<Socket>();
  private readonly identities = new WeakMap<Client, Identity>();
  private readonly emptyClientIds = new WeakSet<Client>();
  /** Per client, the last topic that passed the limits and the ACL (see authorizePublish). */
  private readonly admitted = new WeakMap<Client, { topic: string; identity: Identity | undefined; rateKey: string }>();
  private readonly warned = new Map<string, number>();
  private registry?: DeviceRegistry;
  private registryTimer?: NodeJS.Timeout;
  private auth!: DeviceAuth;
  private rate!: RateLimiter;
  private address = '';
  private tlsAddress = '';

  constructor(
    config: Partial<BrokerConfig> & Pick<BrokerConfig, 'host' | 'port' | 'allowAnonymous'>,
    private readonly ingest: Ingest,
    private readonly onLog: (level: 'warn' | 'error' | 'info', msg: string, extra?: object) => void = () => undefined,
  ) {
    this.config = { ...DEFAULT_BROKER_CONFIG, ...config };
    ingest.onSettled = (dones, err) => this.settled(dones, err);
  }

  get url(): string {
    return this.address;
  }

  /** mqtts:// URL of the TLS listener, '' when there is none. */
  get tlsUrl(): string {
    return this.tlsAddress;
  }

  get instance(): Aedes {
    return this.aedes;
  }

  /** The identity a connected client authenticated as (undefined before CONNECT completes). */
  identityOf(client: Client): Identity | undefined {
    return this.identities.get(client);
  }

  async start(): Promise<string> {
    if (this.config.registryFile) {
      this.registry = new DeviceRegistry(this.config.registryFile, { onLog: this.onLog, onReload: () => this.dropRevoked() });
      await this.registry.load();
      this.onLog('info', 'device registry loaded', { path: this.config.registryFile, entries: this.registry.size });
      const registry = this.registry;
      this.registryTimer = setInterval(() => void registry.refresh(), 5000);
      this.registryTimer.unref();
    } else if (!this.config.allowAnonymous && (this.config.tls?.clientAuth ?? 'none') === 'none') {
      this.onLog('warn', 'no device registry (--registry) and no --allow-anonymous: every MQTT client will be refused');
    }
    this.auth = new DeviceAuth({ registry: this.registry, allowAnonymous: this.config.allowAnonymous, ...this.config.auth });
    this.rate = new RateLimiter(this.config.publishRate, Math.max(1, this.config.publishBurst));
    const tlsOptions = this.config.tls ? tlsServerOptions(this.config.tls, this.config.connectTimeoutMs) : undefined;
    // mqtt-packet otherwise builds, on its first packet written, a table of 65,536 two-byte Buffers
    // (message ids, ~7 MB of heap that stays for the life of the process) to save one tiny
    // allocation per PUBACK.
    mqttPacket.writeToStream.cacheNumbers = false;
    this.aedes = await Aedes.createBroker({
      drainTimeout: this.config.drainTimeoutMs,
      connectTimeout: this.config.connectTimeoutMs,
      // aedes' own ceiling (it disconnects); the configured, counted limit is checked in the hooks.
      maxTopicLevels: 100,
      // MQTT 3.1 clients: room for the identity prefix of scoped client ids (scopedClientId).
      maxClientsIdLength: 23 + 65,
      preConnect: (client, packet, done) => {
        if (!packet.clientId) this.emptyClientIds.add(client);
        else packet.clientId = this.scopedClientId(client, packet.clientId, packet.username);
        done(null, true);
      },
      authenticate: (client, username, password, done) => this.authenticate(client, username, password, done),
      authorizePublish: (client, packet, callback) => this.authorizePublish(client, packet, callback),
      authorizeSubscribe: (client, sub, callback) => this.authorizeSubscribe(client, sub, callback),
      authorizeForward: (client, packet) => {
        // aedes copies the packet before forwarding but keeps the payload buffer: mark that.
        if (this.refused.has(packet.payload as object)) return null;
        const id = this.identities.get(client);
        return id && !id.acl.canReceive(packet.topic) ? null : packet;
      },
    });
    this.skipUnwatchedTelemetry();
    this.aedes.on('client', () => this.stats.connected++);
    this.aedes.on('clientDisconnect', () => this.stats.connected--);
    this.aedes.on('clientError', () => this.stats.clientErrors++);
    this.aedes.on('connectionError', () => this.stats.clientErrors++);
    this.server = createServer((socket) => this.accept(socket));
    this.address = `mqtt://${await this.listen(this.server, this.config.host, this.config.port)}`;
    if (tlsOptions && this.config.tls) {
      // With optional client auth, a certificate the CA does not vouch for passes the handshake and
      // is refused at CONNECT with CONNACK 5, which tells the device more than a dropped socket.
      const tlsServer = createTlsServer(tlsOptions, (socket) => this.accept(socket));
      tlsServer.on('tlsClientError', (err, socket) => {
        this.refuse('tls_handshake', 'MQTTS handshake failed', { remote: socket.remoteAddress, err: err.message });
        socket.destroy();
      });
      this.tlsServer = tlsServer;
      this.tlsAddress = `mqtts://${await this.listen(tlsServer, this.config.tls.host, this.config.tls.port)}`;
    }
    return this.address;
  }

  private async listen(server: Server | TlsServer, host: string, port: number): Promise<string> {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const addr = server.address();
    const bound = typeof addr === 'object' && addr ? addr.port : port;
    return `${host.includes(':') ? `[${host}]` : host}:${bound}`;
  }

  /** One new socket (TCP, or TLS after the handshake). */
  private accept(socket: Socket): void {
    this.stats.connections++;
    if (this.sockets.size >= this.config.maxConnections) {
      this.stats.refusedConnections++;
      this.count(this.stats.refused, 'max_connections');
      socket.destroy();
      return;
    }
    this.sockets.add(socket);
    this.stats.openSockets = this.sockets.size;
    socket.once('close', () => {
      this.sockets.delete(socket);
      this.stats.openSockets = this.sockets.size;
    });
    socket.on('error', () => undefined);
    // Half-open connections (a device that lost power) are found by TCP keepalive even when the
    // client asked for MQTT keepalive 0.
    socket.setKeepAlive(true, 60_000);
    const client = this.aedes.handle(socket);
    const limited = limitPacketSize(client, this.config.maxPacketBytes, (declared) => {
      this.count(this.stats.dropped, 'packet_too_large');
      this.warnOnce(`packet|${socket.remoteAddress}`, 'MQTT packet over the size limit: connection closed', { remote: socket.remoteAddress, bytes: declared, limit: this.config.maxPacketBytes });
    });
    if (!limited) this.warnOnce('packet-hook', 'cannot enforce maxPacketBytes with this aedes/mqtt-packet version', {});
    if (this.config.mqttFastPath && limited) {
      // Installed before limitReadBatch, which wraps the parse this one wraps. Without the size
      // hook the fast path stays off: it leaves oversized packets to that hook to refuse.
      if (!fastPublishParse((client as any)._parser, this.config.maxPacketBytes) || !coalescePubacks(socket)) this.warnOnce('fast-path', 'MQTT fast path unavailable with this aedes/mqtt-packet version', {});
    }
    // Bounded read batches: a flood meets the holds in small steps instead of overshooting
    // highWater by a whole socket buffer per client (hundreds of publishes each).
    if (this.config.readBatchBytes > 0 && !limitReadBatch(client, this.config.readBatchBytes)) this.warnOnce('batch-hook', 'cannot bound read batches with this aedes/mqtt-packet version', {});
  }

  /**
   * The id aedes registers the client under. With identities in play it is prefixed by the claimed
   * identity (verified before registration, else the connection is refused), so device A's
   * "client-1" and device B's "client-1" are different sessions and neither can take over the other.
   * MQTT 3.1.1 clients never see the id the server uses.
   */
  private scopedClientId(client: Client, clientId: string, username: string | undefined): string {
    if (!this.registry && !this.config.tls) return clientId;
    const conn = (client as any).conn as TLSSocket;
    const cn = typeof conn.getPeerCertificate === 'function' ? verifiedClientCn(conn) : undefined;
    const owner = cn ?? username ?? '';
    // ':' cannot occur in an id, so "owner:" prefixes never collide (anonymous gets ":").
    return `${owner}:${clientId}`;
  }

  /** After a registry change: close connections of identities that are no longer registered. */
  private dropRevoked(): void {
    if (!this.registry || !this.aedes) return;
    // aedes keeps connected clients by id (not in its typings).
    for (const client of Object.values((this.aedes as unknown as { clients: Record<string, Client> }).clients)) {
      const id = this.identities.get(client);
      if (!id || id.kind === 'anonymous' || this.registry.get(id.id)) continue;
      this.refuse('revoked', 'closing the connection of an identity removed from the registry', { identity: id.id });
      client.close();
    }
  }

  private authenticate(client: Client, username: string | undefined, password: Buffer | undefined, done: (err: any, ok: boolean | null) => void): void {
    const remote = (client as any).conn?.remoteAddress as string | undefined;
    const refuse = (returnCode: 2 | 3 | 5, reason: string) => {
      this.refuse(reason, 'refused MQTT client', { reason, username: username?.slice(0, 64), remote, returnCode });
      // [MQTT-3.2.2-5] CONNACK with the return code, then close.
      done(Object.assign(new Error(reason), { returnCode }), null);
    };
    // [MQTT-3.1.3-8] a zero-byte ClientId with CleanSession 0: CONNACK 2 "identifier rejected".
    if (this.emptyClientIds.has(client) && !client.clean) return refuse(2, 'identifier_rejected');
    const conn = (client as any).conn as TLSSocket;
    const cn = typeof conn.getPeerCertificate === 'function' ? verifiedClientCn(conn) : undefined;
    if (cn === null) return refuse(5, 'tls_untrusted_certificate');
    this.auth.authenticate({ username, password, certCn: cn }).then(
      (r) => {
        this.stats.authVerifications = this.auth.stats.verifications;
        this.stats.authCacheHits = this.auth.stats.cacheHits;
        if (!r.ok) return refuse(r.returnCode, r.reason);
        // A will is published by the broker on the client's behalf: it must pass the same ACL.
        const will = (client as any)._will as { topic: string } | null | undefined;
        if (will && (!r.identity.acl.canPublish(will.topic) || topicLimitViolation(will.topic, this.config))) return refuse(5, 'will_denied');
        this.identities.set(client, r.identity);
        done(null, true);
      },
      (err: Error) => {
        this.onLog('error', 'authentication failed internally', { err: err.message });
        refuse(3, 'auth_error');
      },
    );
  }

  private authorizeSubscribe(client: Client | null, sub: Subscription, callback: (err: Error | null, sub?: Subscription | null) => void): void {
    const id = client ? this.identities.get(client) : undefined;
    const violation = topicLimitViolation(sub.topic, this.config);
    if (violation || !id || !id.acl.canSubscribe(sub.topic)) {
      // [MQTT-3.9.3] a null subscription is answered with 0x80 (failure) in the SUBACK.
      this.refuse('subscribe_denied', 'refused SUBSCRIBE', { client: client?.id, identity: id?.id, filter: sub.topic.slice(0, 120), reason: violation ?? 'acl' });
      return callback(null, null);
    }
    callback(null, sub);
  }

  private count(map: Record<string, number>, reason: string): void {
    map[reason] = (map[reason] ?? 0) + 1;
  }

  private refuse(reason: string, msg: string, extra: Record<string, unknown>): void {
    this.count(this.stats.refused, reason);
    this.warnOnce(`${reason}|${extra.username ?? extra.identity ?? extra.remote ?? ''}`, msg, extra);
  }

  /** Warn once per key per minute: every refusal is counted, few are logged. */
  private warnOnce(key: string, msg: string, extra: object): void {
    const now = Date.now();
    if (now - (this.warned.get(key) ?? 0) < 60_000) return;
    if (this.warned.size > 10_000) this.warned.clear();
    this.warned.set(key, now);
    this.onLog('warn', msg, extra);
  }

  /** Refuse a publish: acknowledged as usual [MQTT-3.3.5-2], but never stored or forwarded. */
  private dropPublish(client: Client | null, packet: PublishPacket, reason: string, callback: (error?: Error | null) => void): void {
    this.count(this.stats.dropped, reason);
    if (typeof packet.payload === 'object') this.refused.add(packet.payload);
    const id = client ? this.identities.get(client) : undefined;
    this.warnOnce(`${reason}|${id?.id ?? client?.id}`, 'refused PUBLISH', { reason, client: client?.id, identity: id?.id, topic: packet.topic.slice(0, 120) });
    callback(null);
  }

  private authorizePublish(client: Client | null, packet: PublishPacket, callback: (error?: Error | null) => void): void {
    if (packet.topic.startsWith('$SYS/')) return callback(new Error('$SYS/ topics are reserved'));
    const identity = client ? this.identities.get(client) : undefined;
    // A device publishes to the same topic again and again: the topic limits, the ACL verdict and
    // the rate-limit key are remembered for its last admitted topic (an identity's ACL never
    // changes under a connection; a revoked identity is disconnected).
    const last = client ? this.admitted.get(client) : undefined;
    let rateKey: string;
    if (last !== undefined && last.topic === packet.topic && last.identity === identity) {
      rateKey = last.rateKey;
    } else {
      const violation = topicLimitViolation(packet.topic, this.config);
      if (violation) return this.dropPublish(client, packet, violation, callback);
      if (client && (!identity || !identity.acl.canPublish(packet.topic))) return this.dropPublish(client, packet, 'acl_denied', callback);
      rateKey = this.rateKey(client, identity, packet.topic);
      if (client) this.admitted.set(client, { topic: packet.topic, identity, rateKey });
    }
    if (!this.rate.take(rateKey)) {
      if (packet.qos === 0) return this.dropPublish(client, packet, 'rate_limited', callback);
      // QoS 1/2: no PUBACK, close the connection [MQTT-3.3.5-2]; the device resends after reconnecting.
      this.count(this.stats.dropped, 'rate_limited');
      this.warnOnce(`rate|${identity?.id ?? client?.id}`, 'publish rate exceeded: closing the connection without PUBACK', { client: client?.id, identity: identity?.id });
      return callback(new Error('publish rate exceeded'));
    }
    const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload;
    const contentType = (packet as any).properties?.contentType as string | undefined;
    if (packet.qos === 0 && this.config.shedQos0 && this.mustShed()) {
      // Policy: QoS 0 telemetry (which the device does not expect to be confirmed) is shed,
      // counted, when the log is full or the commits pending are past twice `highWater`, so QoS 1
      // readings keep their room. Below that it is committed like QoS 1, and past `highWater` held
      // like QoS 1 (aedes reads a client's next packets only after its current ones completed),
      // which paces a flood to the log. Shedding from `highWater` on, answered at once, made a
      // flood loop through the shed path (bench ingest_qos0: more shed than committed, the commits
      // starved of CPU); a shed publish is held too (holdShed).
      if (this.ingest.shed(packet.topic)) {
        if (typeof packet.payload === 'object') this.refused.add(packet.payload);
        return this.holdShed(callback);
      }
    }
    // Counted before submit: a commit can only settle on a later tick, never inside it.
    this.stats.pendingCommits++;
    const qos0 = packet.qos === 0;
    // aedes' own callback is what the log keeps for the commit (no closure per reading: it would
    // live until the commit); settled() handles a group at a time.
    const result = this.ingest.submit(packet.topic, payload, client?.id ?? '', contentType, qos0 ? QOS0_QUEUED : callback);
    if (result === null || !result.ok) {
      this.stats.pendingCommits--;
      if (result !== null && typeof packet.payload === 'object') this.refused.add(packet.payload);
      return callback(null);
    }
    if (this.held === undefined && this.overloaded()) {
      this.held = [];
      this.stats.holds++;
    }
    if (qos0) {
      // QoS 0 has no PUBACK to wait for the commit: the publish completes now (its reading is in
      // the commit queue), so aedes frees the packet at once instead of keeping it, and the client
      // state around it, alive until the commit. Over the high watermark it is held like a QoS 1
      // publish, which is what slows the client.
      if (this.held !== undefined) {
        this.held.push(callback);
        this.stats.heldPublishes = this.held.length;
        return;
      }
      callback(null);
    }
  }

  /**
   * A group of readings' commit settled (Ingest.onSettled): release their slots, then let aedes
   * PUBACK them — or hold those PUBACKs while over the high watermark, or drop their clients on a
   * commit error. QoS 0 readings (QOS0_QUEUED) completed when they were queued.
   */
  private settled(dones: Array<(err: Error | null) => void>, err: Error | null): void {
    this.stats.pendingCommits -= dones.length;
    if (this.stats.pendingCommits < this.config.lowWater) {
      this.releaseHeld();
      this.releaseShed();
    }
    if (err) {
      // Counted by the ingest (errors) and the log (commitErrors). A QoS 0 reading is lost (its
      // device expects no answer); a QoS 1 client is disconnected without PUBACK and resends.
      this.onLog('error', 'commit failed: disconnecting clients without PUBACK (QoS 1), QoS 0 readings lost', { readings: dones.length, err: err.message });
      return settle(dones, err);
    }
    const held = this.held;
    if (held === undefined) return settle(dones, null);
    for (const done of dones) if (done !== QOS0_QUEUED) held.push(done);
    this.stats.heldPublishes = held.length;
  }

  /**
   * Telemetry is what the gateway stores; it is brokered to local subscribers too, but most
   * gateways have none. Until a subscription that could match a telemetry topic is made, a
   * telemetry publish skips aedes' publish pipeline (a packet copy, two topic-trie matches and two
   * promise chains per reading, ~15 % of all the gateway allocated under load) and completes at
   * once; retained messages always go through. Once such a subscription has been seen the
   * pipeline runs for every publish until the gateway restarts (unsubscribes are not tracked: the
   * safe side). Local subscribers see exactly what they saw before: nothing is published before
   * their subscription anyway.
   */
  private skipUnwatchedTelemetry(): void {
    this.aedes.on('subscribe', (subs: Subscription[]) => {
      if (!this.telemetryWatched && subs.some((s) => filterMayMatchTelemetry(s.topic))) this.telemetryWatched = true;
    });
    const aedes = this.aedes as unknown as { publish: (packet: PublishPacket, client?: unknown, done?: (err?: Error) => void) => void };
    const publish = aedes.publish.bind(this.aedes);
    aedes.publish = (packet, client, done) => {
      if (typeof done === 'function' && !this.telemetryWatched && !packet.retain && isTelemetryTopic(packet.topic)) return done();
      return publish(packet, client, done);
    };
  }

  /** Rate-limit bucket: the authenticated identity, else the device named by the topic, else the client. */
  private rateKey(client: Client | null, identity: Identity | undefined, topic: string): string {
    if (identity && identity.kind !== 'anonymous') return identity.id;
    if (topic.startsWith('devices/')) {
      const end = topic.indexOf('/', 8);
      return `dev:${topic.slice(8, end < 0 ? undefined : end)}`;
    }
    return `client:${client?.id ?? ''}`;
  }

  /** Past the point where QoS 0 telemetry is shed: the log is full, or pausing has not held the pending commits. */
  private mustShed(): boolean {
    return this.stats.pendingCommits > 2 * this.config.highWater || this.ingest.logFull();
  }

  /** Over the high watermark of pending commits, or the log is full. */
  overloaded(): boolean {
    return this.stats.pendingCommits > this.config.highWater || this.ingest.logFull();
  }

  /** Back under `lowWater`: complete the held publishes (their PUBACKs go out, their clients are read again). */
  private releaseHeld(): void {
    const held = this.held;
    if (held === undefined) return;
    this.held = undefined;
    this.stats.heldPublishes = 0;
    settle(held, null);
  }

  /**
   * Hold a shed QoS 0 publish's completion until the pending commits are back under `lowWater`
   * (or SHED_HOLD_MS passed, for a full log with nothing committing). aedes reads a client's
   * next packets only once every packet of its current batch has completed, so this is what
   * actually slows a QoS 0 flood down; answering at once made it loop through the shed path.
   */
  private holdShed(callback: (error?: Error | null) => void): void {
    this.shedHeld.push(callback);
    if (!this.shedTimer) {
      this.shedTimer = setTimeout(() => this.releaseShed(), SHED_HOLD_MS);
      this.shedTimer.unref();
    }
  }

  private releaseShed(): void {
    if (this.shedTimer) clearTimeout(this.shedTimer);
    this.shedTimer = undefined;
    const held = this.shedHeld;
    if (held.length === 0) return;
    this.shedHeld = [];
    for (const cb of held) cb(null);
  }

  /** Stop accepting connections and disconnect clients. In-flight commits are the log's to finish. */
  async stop(): Promise<void> {
    if (!this.server) return;
    clearInterval(this.registryTimer);
    this.releaseHeld();
    this.releaseShed();
    const closed = [this.server, ...(this.tlsServer ? [this.tlsServer] : [])].map((srv) => new Promise<void>((resolve) => srv.close(() => resolve())));
    // close() waits for connections to end; aedes.close() ends those of clients past CONNECT, and
    // sockets that never sent one are cut here rather than left to their CONNECT timeout.
    this.aedes.close(() => undefined);
    for (const s of this.sockets) s.destroy();
    await Promise.all(closed);
  }
}

/**
 * Whether an MQTT topic filter could match a telemetry topic (`devices/{id}/telemetry[/…]`);
 * true when in doubt. A shared subscription (`$share/{group}/{filter}`) is judged by its filter.
 */
export function filterMayMatchTelemetry(filter: string): boolean {
  let f = filter;
  if (f.startsWith('$share/')) {
    const i = f.indexOf('/', 7);
    f = i < 0 ? '' : f.slice(i + 1);
  }
  const levels = f.split('/');
  for (let i = 0; i < levels.length; i++) {
    const l = levels[i];
    if (l === '#') return true;
    if (l === '+') continue;
    if (i === 0 && l !== 'devices') return false;
    if (i === 2 && l !== 'telemetry') return false;
  }
  return levels.length >= 3;
}

export type { AedesPublishPacket };
