/**
 * The real `sluice gateway` / `sluice cloud` commands as systemd runs them: a bad configuration
 * exits 2 naming the key, `--check-config` accepts the shipped samples, SIGHUP reloads the log level
 * (and survives a broken file), SIGTERM exits 0 promptly.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLOUD_READY, GATEWAY_READY, ROOT, startSluice, type SluiceProcess } from '../../deploy/processes.js';
import { runCli } from '../support/deploy-cli.js';
import { tempDir, until } from '../support/tmp.js';

let dir: Awaited<ReturnType<typeof tempDir>>;
const running: SluiceProcess[] = [];
beforeAll(async () => {
  dir = await tempDir('sluice-cli-');
});
afterAll(async () => {
  await Promise.all(running.map((p) => p.stop('SIGKILL', 0)));
  await dir.remove();
});

function file(name: string, text: string): string {
  const p = join(dir.path, name);
  writeFileSync(p, text);
  return p;
}

describe('configuration errors through the real CLI', () => {
  it('exit 2 with the key on stderr; --check-config accepts the samples', async () => {
    const gwBase = `id: g1\ndata: ${dir.path}/g\ncloud: http://127.0.0.1:9\n`;
    const cases: Array<[string[], Record<string, string>, number, RegExp]> = [
      [['gateway', '--config', file('g-unknown.yaml', `${gwBase}cloudToken: t\nlog:\n  quotaa: 1GiB\n`)], {}, 2, /"log\.quotaa"/],
      [['gateway', '--config', file('g-ok.yaml', gwBase), '--quota', 'lots'], { SLUICE_CLOUD_TOKEN: 't' }, 2, /log\.quota/],
      [['gateway', '--config', file('g-notoken.yaml', gwBase), '--check-config'], {}, 2, /"cloudToken" \(or env SLUICE_CLOUD_TOKEN\)/],
      [['gateway', '--config', join(ROOT, 'deploy', 'gateway.sample.yaml'), '--check-config'], { SLUICE_CLOUD_TOKEN: 't' }, 0, /^configuration ok$/m],
      [['cloud', '--config', file('c-unknown.yaml', 'data: /d\ninflux-bucket-name: x\n'), '--check-config'], {}, 2, /"influx-bucket-name"/],
      [['cloud', '--config', join(ROOT, 'deploy', 'cloud.sample.yaml'), '--check-config'], { SLUICE_LOG_LEVEL: 'chatty', SLUICE_GATEWAY_TOKENS: 'a=b' }, 2, /SLUICE_LOG_LEVEL/],
      [['cloud', '--config', join(ROOT, 'deploy', 'cloud.sample.yaml'), '--check-config'], { SLUICE_GATEWAY_TOKENS: 'site-a=x' }, 0, /^configuration ok$/m],
    ];
    const results = await Promise.all(cases.map(([args, env]) => runCli(args, env)));
    results.forEach((r, i) => {
      const [args, , code, re] = cases[i];
      const out = code === 0 ? r.stdout : r.stderr;
      expect({ args: args.join(' '), code: r.code, matches: re.test(out) }, `${args.join(' ')}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`).toEqual({
        args: args.join(' '),
        code,
        matches: true,
      });
    });
  });
});

describe('SIGHUP and SIGTERM', () => {
  it('gateway: SIGHUP applies logLevel from the file, refuses a broken file, SIGTERM exits 0', async () => {
    const text = (level: string) =>
      `id: hup\ndata: ${dir.path}/hup\nmqtt: 127.0.0.1:0\nhttp: 127.0.0.1:0\ncloud: http://127.0.0.1:9\ncloudToken: gw-secret-token-7\nlogLevel: ${level}\nstopTimeout: 5s\n`;
    const cfg = file('hup.yaml', text('warn'));
    let err = '';
    const gw = await startSluice(['gateway', '--config', cfg], GATEWAY_READY, { onStderr: (c) => (err += c) });
    running.push(gw);
    writeFileSync(cfg, text('debug'));
    gw.child.kill('SIGHUP');
    await until('reload logged', () => /"applied":\["logLevel"\].*"msg":"configuration reloaded"/.test(err), 15_000);
    writeFileSync(cfg, `${text('debug')}bogus: 1\n`);
    gw.child.kill('SIGHUP');
    await until('broken reload refused', () => /unknown key.*bogus.*reload refused/.test(err), 15_000);
    const t0 = performance.now();
    expect(await gw.stop('SIGTERM', 10_000)).toBe(0);
    expect(performance.now() - t0).toBeLessThan(5_000);
    expect(err).not.toContain('gw-secret-token-7');
  });

  it('cloud: SIGHUP applies log-level, SIGTERM exits 0 within the bound', async () => {
    const cfg = file('cloud-hup.yaml', `listen: 127.0.0.1:0\ndata: ${dir.path}/cloud\ninflux: http://127.0.0.1:9\nlog-level: warn\n`);
    let err = '';
    const cloud = await startSluice(['cloud', '--config', cfg], CLOUD_READY, { env: { SLUICE_GATEWAY_TOKENS: 'hup=secret-token-1' }, onStderr: (c) => (err += c) });
    running.push(cloud);
    writeFileSync(cfg, `listen: 127.0.0.1:0\ndata: ${dir.path}/cloud\ninflux: http://127.0.0.1:9\nlog-level: info\n`);
    cloud.child.kill('SIGHUP');
    await until('cloud reload logged', () => /"logLevel":"info".*configuration reloaded/.test(err), 15_000);
    const t0 = performance.now();
    expect(await cloud.stop('SIGTERM', 20_000)).toBe(0);
    expect(performance.now() - t0).toBeLessThan(15_000);
    expect(err).not.toContain('secret-token-1');
  });
});
