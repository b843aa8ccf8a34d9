/**
 * PointSink for InfluxDB 1.x: POST /write?db=DB&precision=ns (line protocol).
 *
 * - `start()` creates the database (`CREATE DATABASE` is idempotent in 1.x). If InfluxDB is
 *   unreachable at start, the cloud still starts; the database is created before the first write.
 * - If InfluxDB answers "database not found" (its data was wiped under us), the database is created
 *   again and the request retried once.
 * - Credentials go in a Basic Authorization header, never in the URL (URLs end up in logs).
 * - Requests go through node:http(s) with a keep-alive agent of its own, the body as one Buffer:
 *   per point that costs about half of what fetch (undici, web streams) does, and the cloud sends
 *   every point it stores through here. `timeoutMs` bounds each request and its answer. A request that
 *   fails on a reused idle connection before any answer (the server closed it meanwhile) is sent
 *   once more on a new one; a write is idempotent (points.ts), so that cannot duplicate anything.
 * See influx-writer.ts for the PointSink contract.
 */
import { Agent as HttpAgent, request as httpRequest, type IncomingHttpHeaders, type RequestOptions } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
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

/** What an exchange with InfluxDB returned: status, headers and the body as text. */
interface Reply {
  status: number;
  ok: boolean;
  headers: IncomingHttpHeaders;
  text: string;
}

export class InfluxV1Writer implements PointSink {
  private readonly base: string;
  private readonly headers: Record<string, string>;
  private readonly timeoutMs: number;
  private readonly maxLines: number;
  private readonly https: boolean;
  private readonly agent: HttpAgent;
  private dbReady: Promise<void> | undefined;

  constructor(
    private readonly cfg: InfluxV1Config,
    private readonly opts: WriterOptions = {},
  ) {
    this.base = trimSlash(cfg.url);
    this.headers = influxAuthHeader(cfg);
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_WRITE_TIMEOUT_MS;
    this.maxLines = opts.maxLinesPerRequest ?? DEFAULT_MAX_LINES_PER_REQUEST;
    this.https = /^https:/i.test(this.base);
    this.agent = this.https ? new HttpsAgent({ keepAlive: true }) : new HttpAgent({ keepAlive: true });
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
    // One request per maxLines lines; the usual batch fits in one, so no copy of `lines` is made.
    if (lines.length <= this.maxLines) return this.post(Buffer.from(lines.join('\n')), false);
    for (const part of chunk(lines, this.maxLines)) await this.post(Buffer.from(part.join('\n')), false);
  }

  async close(): Promise<void> {
    // Closes the pooled keep-alive connections (the server stops only after its requests ended).
    this.agent.destroy();
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
    const res = await this.exchange('/query', Buffer.from(body.toString()), 'application/x-www-form-urlencoded;charset=UTF-8', 'create the database');
    const text = res.text;
    if (res.ok) return;
    // A non-admin user may not create databases, yet write to an existing one: let the write decide.
    if (res.status === 401 || res.status === 403) {
      this.opts.logger?.warn({ status: res.status, db: this.cfg.db }, 'not allowed to CREATE DATABASE; assuming it exists');
      return;
    }
    throw influxWriteError(`InfluxDB refused CREATE DATABASE (HTTP ${res.status}): ${influxErrorText(text)}`, { status: res.status });
  }

  private async post(body: Buffer, retried: boolean): Promise<void> {
    const params = new URLSearchParams({ db: this.cfg.db, precision: 'ns' });
    const res = await this.exchange(`/write?${params}`, body, 'text/plain; charset=utf-8', 'write');
    const text = res.text;
    if (res.ok) return;
    const msg = influxErrorText(text);
    if (res.status === 404 && /database not found/i.test(msg) && !retried) {
      this.dbReady = undefined;
      await this.ensureDatabase();
      return this.post(body, true);
    }
    throw influxWriteError(`InfluxDB refused the write (HTTP ${res.status}): ${msg}`, {
      status: res.status,
      retryAfterSeconds: parseRetryAfter(headerValue(res.headers['retry-after'])),
    });
  }

  private async exchange(path: string, body: Buffer, contentType: string, what: string): Promise<Reply> {
    try {
      return await this.send(path, body, contentType, true);
    } catch (err) {
      throw influxWriteError(`InfluxDB at ${this.base} unreachable (${what}): ${describeError(err)}`, { cause: err });
    }
  }

  /** One POST; `mayRetry`: send once more if a reused keep-alive connection failed before any answer. */
  private send(path: string, body: Buffer, contentType: string, mayRetry: boolean): Promise<Reply> {
    return new Promise<Reply>((resolve, reject) => {
      const options: RequestOptions = {
        method: 'POST',
        agent: this.agent,
        headers: { ...this.headers, 'content-type': contentType, 'content-length': body.length },
      };
      const url = new URL(`${this.base}${path}`);
      let answered = false;
      let settled = false;
      const finish = (err: Error | undefined, reply?: Reply) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err) reject(err);
        else resolve(reply!);
      };
      const req = (this.https ? httpsRequest : httpRequest)(url, options, (res) => {
        answered = true;
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('error', (err) => finish(err));
        res.on('close', () => {
          if (!res.complete) finish(new Error('connection closed before the answer was complete'));
        });
        res.on('end', () => {
          const status = res.statusCode ?? 0;
          finish(undefined, { status, ok: status >= 200 && status < 300, headers: res.headers, text: Buffer.concat(parts).toString('utf8') });
        });
      });
      const timer = setTimeout(() => {
        finish(new Error(`no answer within ${this.timeoutMs} ms`));
        req.destroy();
      }, this.timeoutMs);
      req.on('error', (err: NodeJS.ErrnoException) => {
        if (settled) return;
        if (mayRetry && !answered && req.reusedSocket && (err.code === 'ECONNRESET' || err.code === 'EPIPE')) {
          settled = true;
          clearTimeout(timer);
          this.send(path, body, contentType, false).then(resolve, reject);
          return;
        }
        finish(err);
      });
      req.end(body);
    });
  }
}

function headerValue(h: string | string[] | undefined): string | undefined {
  return Array.isArray(h) ? h[0] : h;
}
