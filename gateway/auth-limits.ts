/**
 * Admission limits the broker applies before a packet reaches ingest: MQTT packet size, topic
 * length and depth, and a per-device publish rate.
 *
 * Each limit has a default here, a config key (config.ts `limits.*`) and a refusal counter; none of
 * them can make the process throw. Memory is bounded: the rate limiter keeps at most `maxKeys`
 * buckets (least recently used evicted; an evicted key simply starts again with a full bucket).
 */

export interface AdmissionLimits {
  /** Largest MQTT packet (remaining length) in bytes; larger ones close the connection. */
  maxPacketBytes: number;
  /** Longest topic or topic filter, in characters. */
  maxTopicLength: number;
  /** Most levels in a topic or topic filter. */
  maxTopicLevels: number;
  /** Sustained publishes per second per device (or account, or anonymous client); 0 = unlimited. */
  publishRate: number;
  /** Bucket size: how many publishes a device may send in a burst above the sustained rate. */
  publishBurst: number;
  /** A client that has not sent CONNECT within this many ms is disconnected. */
  connectTimeoutMs: number;
}

export const DEFAULT_ADMISSION_LIMITS: AdmissionLimits = {
  maxPacketBytes: 256 * 1024,
  maxTopicLength: 256,
  maxTopicLevels: 16,
  publishRate: 1000,
  publishBurst: 2000,
  connectTimeoutMs: 10_000,
};

/** Why a topic is refused, or undefined when it is within the limits. */
export function topicLimitViolation(topic: string, limits: Pick<AdmissionLimits, 'maxTopicLength' | 'maxTopicLevels'>): 'topic_too_long' | 'topic_too_deep' | undefined {
  if (topic.length > limits.maxTopicLength) return 'topic_too_long';
  let levels = 1;
  for (let i = 0; i < topic.length; i++) if (topic.charCodeAt(i) === 47) levels++;
  return levels > limits.maxTopicLevels ? 'topic_too_deep' : undefined;
}

/** Token buckets keyed by device id. */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    private readonly rate: number,
    private readonly burst: number,
    private readonly now: () => number = () => performance.now(),
    private readonly maxKeys = 100_000,
  ) {}

  /** Take one token for `key`; false when the key is over its rate. */
  take(key: string): boolean {
    if (this.rate <= 0) return true;
    const t = this.now();
    let b = this.buckets.get(key);
    if (b) {
      // Updated in place (deleting and re-inserting it to keep the Map in LRU order cost a Map
      // rehash every few thousand publishes); `at` orders the eviction instead.
      b.tokens = Math.min(this.burst, b.tokens + ((t - b.at) * this.rate) / 1000);
      b.at = t;
    } else {
      if (this.buckets.size >= this.maxKeys) this.evictLeastRecent();
      b = { tokens: this.burst, at: t };
      this.buckets.set(key, b);
    }
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  get size(): number {
    return this.buckets.size;
  }

  /** Forget the least recently used tenth of the keys (at least one), so a full table is rare work. */
  private evictLeastRecent(): void {
    const byAge = [...this.buckets].sort((x, y) => x[1].at - y[1].at);
    const n = Math.max(1, Math.floor(byAge.length / 10));
    for (let i = 0; i < n; i++) this.buckets.delete(byAge[i][0]);
  }
}

/**
 * Make an aedes client's MQTT parser refuse packets whose declared remaining length exceeds
 * `maxBytes`, as soon as the length header is read: the payload is never buffered. aedes 1.x gives
 * no option for this, so the parser instance (mqtt-packet 9) is wrapped; `false` means the hook
 * could not be installed (the caller logs it once; a test guards the behaviour).
 */
export function limitPacketSize(client: unknown, maxBytes: number, onTooLarge: (declared: number) => void): boolean {
  const parser = (client as { _parser?: any })._parser;
  if (!parser || typeof parser._parseLength !== 'function' || typeof parser._emitError !== 'function') return false;
  const parseLength = parser._parseLength;
  parser._parseLength = function (this: any): boolean {
    const ok = parseLength.call(this);
    if (ok && this.packet.length > maxBytes) {
      onTooLarge(this.packet.length);
      this._emitError(new Error(`packet of ${this.packet.length} bytes exceeds the limit of ${maxBytes} bytes`));
      return false;
    }
    return ok;
  };
  return true;
}
