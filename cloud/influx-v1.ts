/**
 * PointSink for InfluxDB 1.x: POST /write?db=DB&precision=ns (line protocol).
 *
 * - `start()` creates the database (`CREATE DATABASE` is idempotent in 1.x). If InfluxDB is
 *   unreachable at start, the cloud still starts; the database is created before the first write.
 * - If InfluxDB answers "database not found" (its data was wiped under us), the database is created
 *   again and the request retried once.
 * - Credentials go in a Basic Authorization header, never in the URL (URLs end up in logs).
 * See influx-writer.ts for the PointSink contract.
 */
import {
  DEFAULT_MAX_LINES_PER_REQUEST,
  DEFAULT_WRITE_TIMEOUT_MS,
  chunk,
  describeError,
  influxAuthHeader,
  influxErrorText,
  influxWriteError,
  parseRetryAfter,
  trimSlash,
  type InfluxV1Config,
  type PointSink,
  type WriterOptions,
} from './influx-common.js';
import { quoteIdent } from './influxql.js';

export class InfluxV1Writer implements PointSink {
  private readonly base: string;
  private readonly headers: Record<string, string>;
  private readonly timeoutMs: number;
  private readonly maxLines: number;
  private dbReady: Promise<void> | undefined;

  constructor(
    private readonly cfg: InfluxV1Config,
    private readonly opts: WriterOptions = {},
  ) {
    this.base = trimSlash(cfg.url);
    this.headers = influxAuthHeader(cfg);
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_WRITE_TIMEOUT_MS;
    this.maxLines = opts.maxLinesPerRequest ?? DEFAULT_MAX_LINES_PER_REQUEST;
  }

  async start(): Promise<void> {
    try {
      await this.ensureDatabase();
    } catch (err) {
      this.opts.logger?.warn({ err: describeError(err), url: this.base }, 'InfluxDB not reachable at start; will create the database before the first write');
    }
  }

  async write(lines: string[]): Promise<void> {
    if (lines.length === 0) return;
    await this.ensureDatabase();
    for (const part of chunk(lines, this.maxLines)) await this.post(part.join('\n'), false);
  }

  async close(): Promise<void> {
    // Stateless apart from fetch's connection pool, which unrefs idle sockets itself.
  }

  private ensureDatabase(): Promise<void> {
    if (!this.dbReady) {
      this.dbReady = this.createDatabase().catch((err) => {
        this.dbReady = undefined; // try again on the next write
        throw err;
      });
    }
    return this.dbReady;
  }

  private async createDatabase(): Promise<void> {
    const body = new URLSearchParams({ q: `CREATE DATABASE ${quoteIdent(this.cfg.db)}` });
    const res = await this.fetch('/query', body, 'create the database');
    const text = await res.text();
    if (res.ok) return;
    // A non-admin user may not create databases, yet write to an existing one: let the write decide.
    if (res.status === 401 || res.status === 403) {
      this.opts.logger?.warn({ status: res.status, db: this.cfg.db }, 'not allowed to CREATE DATABASE; assuming it exists');
      return;
    }
    throw influxWriteError(`InfluxDB refused CREATE DATABASE (HTTP ${res.status}): ${influxErrorText(text)}`, { status: res.status });
  }

  private async post(body: string, retried: boolean): Promise<void> {
    const params = new URLSearchParams({ db: this.cfg.db, precision: 'ns' });
    const res = await this.fetch(`/write?${params}`, body, 'write');
    const text = await res.text().catch(() => '');
    if (res.ok) return;
    const msg = influxErrorText(text);
    if (res.status === 404 && /database not found/i.test(msg) && !retried) {
      this.dbReady = undefined;
      await this.ensureDatabase();
      return this.post(body, true);
    }
    throw influxWriteError(`InfluxDB refused the write (HTTP ${res.status}): ${msg}`, {
      status: res.status,
      retryAfterSeconds: parseRetryAfter(res.headers.get('retry-after')),
    });
  }

  private async fetch(path: string, body: string | URLSearchParams, what: string): Promise<Response> {
    try {
      return await fetch(`${this.base}${path}`, {
        method: 'POST',
        headers: { ...this.headers, ...(typeof body === 'string' ? { 'content-type': 'text/plain; charset=utf-8' } : {}) },
        body,
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (err) {
      throw influxWriteError(`InfluxDB at ${this.base} unreachable (${what}): ${describeError(err)}`, { cause: err });
    }
  }
}
