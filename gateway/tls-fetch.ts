/**
 * The forwarder's `fetch`: the small subset of fetch it uses (method, headers, a Buffer body,
 * AbortSignal; status, headers, text/json) over node:http / node:https with keep-alive agents.
 *
 * Why not the global fetch (undici): it copies every request body into a web stream (a 400 KB
 * batch, 20+ times a second while draining a backlog), and it takes a `dispatcher` with CA options
 * only through the `undici` package, which Sluice does not depend on. With a custom CA
 * (`--cloud-ca`) the cloud's certificate is verified against that CA (and the host name), never
 * skipped. Responses larger than `maxResponseBytes` are cut off with an error: a hostile endpoint
 * cannot make the gateway buffer without bound.
 */
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { Agent as HttpAgent, request as httpRequest, type IncomingHttpHeaders } from 'node:http';

function toHeaders(h: IncomingHttpHeaders): Headers {
  const out = new Headers();
  for (const [k, v] of Object.entries(h)) {
    if (v === undefined) continue;
    for (const one of Array.isArray(v) ? v : [v]) out.append(k, one);
  }
  return out;
}

/** The forwarder's fetch, trusting `ca` for https (`--cloud-ca`). */
export function fetchWithCa(ca: Buffer | string, opts: { maxResponseBytes?: number } = {}): typeof fetch {
  return nodeFetch({ ...opts, ca });
}

/** The forwarder's fetch over node:http(s); with `ca`, https URLs are verified against it. */
export function nodeFetch(opts: { ca?: Buffer | string; maxResponseBytes?: number } = {}): typeof fetch {
  const https = new HttpsAgent({ ...(opts.ca === undefined ? {} : { ca: opts.ca }), keepAlive: true, maxSockets: 4 });
  const http = new HttpAgent({ keepAlive: true, maxSockets: 4 });
  const maxResponse = opts.maxResponseBytes ?? 1024 * 1024;
  const impl = (input: string | URL | Request, init: RequestInit = {}): Promise<Response> => {
    const url = new URL(typeof input === 'string' || input instanceof URL ? input : input.url);
    if (url.protocol !== 'https:' && url.protocol !== 'http:') return fetch(input, init);
    const [request, agent] = url.protocol === 'https:' ? [httpsRequest, https] : [httpRequest, http];
    const headers: Record<string, string> = {};
    new Headers(init.headers).forEach((v, k) => (headers[k] = v));
    const body = init.body as Buffer | Uint8Array | string | undefined | null;
    if (body !== undefined && body !== null && typeof body !== 'string' && !(body instanceof Uint8Array)) {
      return Promise.reject(new TypeError('fetchWithCa: body must be a string or bytes'));
    }
    return new Promise<Response>((resolve, reject) => {
      const req = request(url, { method: init.method ?? 'GET', headers, agent, signal: init.signal ?? undefined }, (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > maxResponse) {
            res.destroy(new Error(`response larger than ${maxResponse} bytes`));
            return;
          }
          chunks.push(c);
        });
        res.on('error', reject);
        res.on('end', () => {
          const status = res.statusCode ?? 502;
          const noBody = status === 204 || status === 304 || (status >= 100 && status < 200);
          resolve(new Response(noBody ? null : Buffer.concat(chunks), { status, statusText: res.statusMessage, headers: toHeaders(res.headers) }));
        });
      });
      // Same shape as a fetch network error: the forwarder reads `cause.message`.
      req.on('error', (err) => reject(Object.assign(new TypeError('fetch failed'), { cause: err })));
      req.end(body ?? undefined);
    });
  };
  return impl as typeof fetch;
}
