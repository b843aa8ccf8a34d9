/**
 * The dashboard's static files (cloud/dashboard/), served by the cloud at `/` and `/dashboard/…`.
 * No build step: plain HTML, CSS and ES modules. Only the files listed here are served (no path is
 * ever joined from the request), and each is read once and kept in memory.
 */
import { readFile } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';

const DIR = new URL('./dashboard/', import.meta.url);

const FILES: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/index.html': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/dashboard/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/dashboard/chart.js': { file: 'chart.js', type: 'text/javascript; charset=utf-8' },
  '/dashboard/style.css': { file: 'style.css', type: 'text/css; charset=utf-8' },
  '/dashboard/favicon.svg': { file: 'favicon.svg', type: 'image/svg+xml' },
  '/favicon.ico': { file: 'favicon.svg', type: 'image/svg+xml' },
};

const cache = new Map<string, Buffer>();

/** Serves the file when `pathname` is one of the dashboard's; false otherwise. */
export async function serveDashboard(pathname: string, res: ServerResponse): Promise<boolean> {
  const f = FILES[pathname];
  if (!f) return false;
  let body = cache.get(f.file);
  if (!body) {
    body = await readFile(new URL(f.file, DIR));
    cache.set(f.file, body);
  }
  res.writeHead(200, {
    'content-type': f.type,
    'content-length': body.length,
    'cache-control': 'no-cache',
    'x-content-type-options': 'nosniff',
    // Everything the page needs comes from this origin; no inline script.
    'content-security-policy': "default-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'",
  });
  res.end(body);
  return true;
}
