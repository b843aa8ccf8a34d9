/** Parsing of human units used in flags and config files: durations ("30s") and sizes ("64MiB"). */
import { SluiceError } from './errors.js';

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** "250ms", "30s", "5m", "1h30m", "2d" or a bare number of milliseconds → milliseconds. */
export function parseDuration(input: string | number, what = 'duration'): number {
  if (typeof input === 'number') {
    if (!Number.isFinite(input) || input < 0) throw new SluiceError('SLUICE_BAD_CONFIG', `${what}: must be a non-negative number of ms`);
    return input;
  }
  const s = input.trim();
  if (/^\d+(\.\d+)?$/.test(s)) return Number(s);
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;
  let total = 0;
  let matched = 0;
  for (let m = re.exec(s); m; m = re.exec(s)) {
    total += Number(m[1]) * DURATION_UNITS[m[2]];
    matched = re.lastIndex;
  }
  if (matched === 0 || matched !== s.length) {
    throw new SluiceError('SLUICE_BAD_CONFIG', `${what}: "${input}" is not a duration (examples: 500ms, 30s, 5m, 1h)`);
  }
  return total;
}

const SIZE_UNITS: Record<string, number> = {
  b: 1, k: 1e3, kb: 1e3, m: 1e6, mb: 1e6, g: 1e9, gb: 1e9,
  kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3,
};

/** "512MiB", "2GB", "100k" or a bare number of bytes → bytes. */
export function parseSize(input: string | number, what = 'size'): number {
  if (typeof input === 'number') {
    if (!Number.isFinite(input) || input < 0) throw new SluiceError('SLUICE_BAD_CONFIG', `${what}: must be a non-negative number of bytes`);
    return input;
  }
  const m = /^(\d+(?:\.\d+)?)\s*([a-zA-Z]*)$/.exec(input.trim());
  const unit = m ? SIZE_UNITS[(m[2] || 'b').toLowerCase()] : undefined;
  if (!m || unit === undefined) throw new SluiceError('SLUICE_BAD_CONFIG', `${what}: "${input}" is not a size (examples: 4096, 64MiB, 2GB)`);
  return Math.floor(Number(m[1]) * unit);
}

/** "host:port" or ":port" → { host, port }. Port 0 asks the OS for a free one. */
export function parseHostPort(input: string, what = 'address', defaultHost = '127.0.0.1'): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(input.trim());
  if (!m) throw new SluiceError('SLUICE_BAD_CONFIG', `${what}: "${input}" is not HOST:PORT`);
  const port = Number(m[3]);
  if (port > 65535) throw new SluiceError('SLUICE_BAD_CONFIG', `${what}: port ${port} is out of range`);
  return { host: m[1] ?? (m[2] || defaultHost), port };
}
