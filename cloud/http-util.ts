/**
 * Small node:http helpers for the cloud's API: JSON replies and a size-capped body reader.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { SluiceError } from '../protocols/errors.js';

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

export function sendText(res: ServerResponse, status: number, text: string, contentType = 'text/plain; charset=utf-8'): void {
  res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** JSON error body `{ error, code, …detail }`. */
export function sendError(res: ServerResponse, status: number, code: string, message: string, extra: Record<string, unknown> = {}, headers: Record<string, string> = {}): void {
  sendJson(res, status, { error: message, code, ...extra }, headers);
}

/**
 * Read the whole body, refusing more than `maxBytes` (SLUICE_TOO_LARGE) before buffering it: a
 * Content-Length over the limit fails at once, a body that grows past it fails as soon as it does.
 */
export function readBody(req: IncomingMessage, maxBytes: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > maxBytes) {
      reject(new SluiceError('SLUICE_TOO_LARGE', `body of ${declared} bytes exceeds the limit of ${maxBytes} bytes`));
      return;
    }
    const parts: Buffer[] = [];
    let size = 0;
    let done = false;
    const finish = (err?: Error) => {
      if (done) return;
      done = true;
      req.off('data', onData);
      if (err) reject(err);
      else resolve(Buffer.concat(parts, size));
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxBytes) finish(new SluiceError('SLUICE_TOO_LARGE', `body exceeds the limit of ${maxBytes} bytes`));
      else parts.push(chunk);
    };
    req.on('data', onData);
    req.once('end', () => finish());
    req.once('error', (err) => finish(err));
    req.once('aborted', () => finish(new Error('request aborted')));
  });
}
