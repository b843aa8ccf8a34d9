/**
 * `sluice sim` as a real process (devices-sim/main.ts under tsx) against a real aedes broker on
 * port 0: the summary line, --json, exit 2 on a bad flag, and a clean stop on SIGINT.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Aedes, type AedesPublishPacket, type Client } from 'aedes';
import { afterEach, describe, expect, it } from 'vitest';
import { decodePayload } from '../../protocols/payload.js';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function startBroker(): Promise<{ broker: Aedes; url: string; seqs: Map<string, number[]> }> {
  const broker = await Aedes.createBroker();
  const server = net.createServer(broker.handle);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const seqs = new Map<string, number[]>();
  broker.on('publish', (packet: AedesPublishPacket, client: Client | null) => {
    if (!client || !packet.topic.startsWith('devices/')) return;
    seqs.set(client.id, [...(seqs.get(client.id) ?? []), decodePayload(packet.payload as Buffer).seq!]);
  });
  cleanups.push(async () => {
    await new Promise<void>((resolve) => broker.close(() => resolve()));
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { broker, url: `mqtt://127.0.0.1:${(server.address() as net.AddressInfo).port}`, seqs };
}

interface Run {
  child: ChildProcess;
  out: { stdout: string; stderr: string };
  exit: Promise<number | null>;
}

function sim(args: string[]): Run {
  const child = spawn(process.execPath, ['--import', 'tsx', 'devices-sim/main.ts', 'sim', ...args], { cwd: repo, stdio: ['ignore', 'pipe', 'pipe'] });
  const out = { stdout: '', stderr: '' };
  child.stdout!.on('data', (d) => (out.stdout += d));
  child.stderr!.on('data', (d) => (out.stderr += d));
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  cleanups.push(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return { child, out, exit };
}

async function until(pred: () => boolean, what: string, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i + 1);

describe('sluice sim (process)', () => {
  it('runs --count readings per device and prints the summary', async () => {
    const b = await startBroker();
    const r = sim(['--url', b.url, '--devices', '3', '--rate', '50', '--count', '5', '--format', 'cbor', '--prefix', 'cli']);
    expect(await r.exit).toBe(0);
    expect(r.out.stdout).toMatch(/^sim: done in \d+\.\ds: 3 devices, sent 15, acked 15, unacked 0, [\d.]+\/s, errors 0\n$/);
    expect(Object.fromEntries(b.seqs)).toEqual({ 'cli-0001': range(5), 'cli-0002': range(5), 'cli-0003': range(5) });
  });

  it('--json prints the result as JSON', async () => {
    const b = await startBroker();
    const r = sim(['--url', b.url, '--devices', '2', '--rate', '100', '--count', '3', '--qos', '0', '--json']);
    expect(await r.exit).toBe(0);
    const res = JSON.parse(r.out.stdout) as { sent: number; acked: number; perDevice: Record<string, { sent: number; acked: number }> };
    expect(res).toMatchObject({ sent: 6, acked: 6, unacked: 0, errors: 0 });
    expect(res.perDevice['sim-0001']).toMatchObject({ sent: 3, acked: 3, unacked: [] });
  });

  it('exits 2 naming the flag on a bad value', async () => {
    const r = sim(['--url', 'mqtt://127.0.0.1:1', '--rate', 'fast']);
    expect(await r.exit).toBe(2);
    expect(r.out.stderr).toMatch(/--rate must be a number/);
    expect(r.out.stdout).toBe('');
  });

  it('stops cleanly on SIGINT: acks drained, clients disconnected, summary printed', async () => {
    const b = await startBroker();
    const r = sim(['--url', b.url, '--devices', '2', '--rate', '50']);
    await until(() => (b.seqs.get('sim-0001')?.length ?? 0) >= 5 && (b.seqs.get('sim-0002')?.length ?? 0) >= 5, 'readings from both devices');
    r.child.kill('SIGINT');
    expect(await r.exit).toBe(0);
    const m = /sent (\d+), acked (\d+), unacked 0/.exec(r.out.stdout);
    expect(m).not.toBeNull();
    const seen = [...b.seqs.values()].reduce((a, s) => a + s.length, 0);
    expect(Number(m![1])).toBe(seen);
    expect(Number(m![2])).toBe(seen);
    for (const s of b.seqs.values()) expect(s).toEqual(range(s.length));
    expect(r.out.stderr).toMatch(/stopping/);
    await until(() => b.broker.connectedClients === 0, 'the sim clients to disconnect');
  });
});
