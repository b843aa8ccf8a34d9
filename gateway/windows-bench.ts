/**
 * Micro-benchmark of the window engine: µs per reading for one 1m tumbling window, and for 1m tumbling
 * plus 5m hopping every 1m. Run: npx tsx gateway/windows-bench.ts [readings] [devices]
 *
 * The stream: every device reports temperature, humidity and a door boolean once per second of event
 * time; 5 % of readings arrive up to 5 s out of order, 0.5 % are late beyond the allowed lateness.
 * The gateway clock is the real Date.now, as in production. Prints a Markdown table and one JSON line.
 */
import { Encoder } from 'cbor-x';
import type { Values } from '../protocols/payload.js';
import { WindowEngine } from './windows.js';

const N = Number(process.argv[2] ?? 1_000_000);
const DEVICES = Number(process.argv[3] ?? 200);

interface Stream {
  devs: string[];
  ts: Float64Array;
  vals: Values[];
}

function makeStream(n: number, devices: number): Stream {
  let seed = 42;
  const rnd = (): number => {
    seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648;
    return seed / 2_147_483_648;
  };
  const ids = Array.from({ length: devices }, (_, i) => `sensor-${i}`);
  const devs: string[] = new Array(n);
  const ts = new Float64Array(n);
  const vals: Values[] = new Array(n);
  const t0 = 1_700_000_000_000;
  for (let i = 0; i < n; i++) {
    const d = i % devices;
    let t = t0 + Math.floor(i / devices) * 1000 + d;
    const r = rnd();
    if (r < 0.05) t -= Math.floor(rnd() * 5000);
    else if (r < 0.055) t -= 15_000 + Math.floor(rnd() * 60_000);
    devs[i] = ids[d];
    ts[i] = t;
    // Fresh objects, as decoded payloads would be.
    vals[i] = { temperature: 20 + rnd() * 5, humidity: Math.round(rnd() * 1000) / 10, door_open: rnd() < 0.1 };
  }
  return { devs, ts, vals };
}

function run(windows: string[], s: Stream): { usPerReading: number; emitted: number; snapshotBytes: number; snapshotMs: number } {
  const engine = new WindowEngine({ windows });
  let emitted = 0;
  const warm = Math.min(100_000, Math.floor(s.ts.length / 10));
  for (let i = 0; i < warm; i++) emitted += engine.add(s.devs[i], s.ts[i], s.vals[i]).length;
  const t0 = process.hrtime.bigint();
  for (let i = warm; i < s.ts.length; i++) emitted += engine.add(s.devs[i], s.ts[i], s.vals[i]).length;
  const t1 = process.hrtime.bigint();
  const s0 = process.hrtime.bigint();
  const snap = engine.snapshot();
  const bytes = new Encoder({ useRecords: false } as ConstructorParameters<typeof Encoder>[0]).encode(snap).length;
  const s1 = process.hrtime.bigint();
  return {
    usPerReading: Number(t1 - t0) / 1000 / (s.ts.length - warm),
    emitted,
    snapshotBytes: bytes,
    snapshotMs: Number(s1 - s0) / 1e6,
  };
}

const stream = makeStream(N, DEVICES);
const cases: Array<[string, string[]]> = [
  ['1m tumbling', ['1m']],
  ['1m tumbling + 5m/1m hopping', ['1m', '5m/1m']],
];
const results: Record<string, ReturnType<typeof run>> = {};
console.log(`# window engine: ${N} readings, ${DEVICES} devices, 3 metrics each, node ${process.version}\n`);
console.log('| windows | µs/reading | readings/s | windows emitted | snapshot (CBOR bytes, ms) |');
console.log('|---|---:|---:|---:|---:|');
for (const [label, windows] of cases) {
  const r = run(windows, stream);
  results[label] = r;
  console.log(`| ${label} | ${r.usPerReading.toFixed(3)} | ${Math.round(1e6 / r.usPerReading).toLocaleString('en')} | ${r.emitted} | ${r.snapshotBytes}, ${r.snapshotMs.toFixed(1)} |`);
}
console.log(`\n${JSON.stringify({ bench: 'windows', readings: N, devices: DEVICES, results })}`);
