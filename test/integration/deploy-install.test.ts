/**
 * The Raspberry Pi install, run for real in a throw-away root: deploy/pi/install.sh and uninstall.sh
 * with fake systemctl/useradd/apt-get/npm on PATH (test/support/deploy-fakes.ts), and the systemd
 * units checked by `systemd-analyze verify` (Debian package `systemd`).
 */
import { execFile } from 'node:child_process';
import { existsSync, lstatSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseCloudFile, resolveCloudConfig } from '../../cloud/config.js';
import { ROOT } from '../../deploy/processes.js';
import { loadGatewayConfig } from '../../gateway/config.js';
import { fakeSystem, INSTALL_SH, runScript, UNINSTALL_SH } from '../support/deploy-fakes.js';
import { tempDir } from '../support/tmp.js';

const exec = promisify(execFile);
const UNITS = ['sluice-gateway.service', 'sluice-cloud.service'].map((u) => join(ROOT, 'deploy', 'systemd', u));

let tmp: Awaited<ReturnType<typeof tempDir>>;
beforeAll(async () => {
  tmp = await tempDir('sluice-install-');
});
afterAll(() => tmp.remove());

/** KEY='value' lines of an EnvironmentFile. */
function envFile(path: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    const m = /^([A-Z_]+)='(.*)'$/.exec(line);
    if (m) out[m[1]] = m[2];
  }
  return out;
}

async function verify(units: string[]): Promise<{ code: number; stderr: string }> {
  try {
    const r = await exec('systemd-analyze', ['verify', '--man=no', ...units]);
    return { code: 0, stderr: r.stderr };
  } catch (err) {
    const e = err as { code?: number; stderr?: string };
    return { code: e.code ?? 1, stderr: e.stderr ?? String(err) };
  }
}

describe('systemd units', () => {
  it('pass systemd-analyze verify without a single warning, with the hardening the install promises', async () => {
    const r = await verify(UNITS);
    expect(r).toEqual({ code: 0, stderr: '' });
    for (const unit of UNITS) {
      const text = readFileSync(unit, 'utf8');
      for (const line of ['ProtectSystem=strict', 'ReadWritePaths=/var/lib/sluice', 'NoNewPrivileges=yes', 'PrivateTmp=yes', 'ProtectHome=yes', 'Restart=on-failure', 'User=sluice']) {
        expect(text, `${unit}: ${line}`).toContain(`\n${line}\n`);
      }
      // TimeoutStopSec above the 15 s graceful-stop bound of both processes; no watchdog (no sd_notify).
      expect(Number(/\nTimeoutStopSec=(\d+)\n/.exec(text)?.[1])).toBeGreaterThan(15);
      expect(text).not.toMatch(/^WatchdogSec=/m);
      expect(text).toMatch(/^ExecStart=\/usr\/bin\/node \/opt\/sluice\/bin\/sluice\.js (gateway|cloud) --config \/etc\/sluice\/(gateway|cloud)\.yaml$/m);
    }
  });

  it('a broken unit is caught (the check is not vacuous)', async () => {
    const bad = join(tmp.path, 'broken.service');
    writeFileSync(bad, readFileSync(UNITS[0], 'utf8').replace('ProtectHome=yes', 'ProtectHome=yes\nProtectHomme=yes').replace('/usr/bin/node', '/usr/bin/no-such-node'));
    const r = await verify([bad]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('ProtectHomme');
  });
});

describe('deploy/pi/install.sh in a throw-away root', () => {
  it('gateway: installs code, user, state dir, config, secrets and an enabled unit; re-run keeps the config; uninstall keeps data unless --purge', async () => {
    const dir = join(tmp.path, 'gw');
    const root = join(dir, 'root');
    const sys = await fakeSystem(dir, 'real');
    await exec('mkdir', ['-p', root]);
    const tokenFile = join(dir, 'token');
    writeFileSync(tokenFile, 'tok-Abc123_secret\n');
    const args = ['--root', root, '--id', 'site-1', '--cloud-url', 'https://cloud.example:8443', '--token-file', tokenFile, '--http', '0.0.0.0:8788', '--non-interactive'];
    const r = await runScript(INSTALL_SH, args, sys.path);
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);

    // Code, production dependencies only.
    expect(existsSync(join(root, 'opt/sluice/bin/sluice.js'))).toBe(true);
    expect(existsSync(join(root, 'opt/sluice/gateway/gateway.ts'))).toBe(true);
    expect(existsSync(join(root, 'opt/sluice/test'))).toBe(false);
    expect(lstatSync(join(root, 'opt/sluice/node_modules')).isSymbolicLink()).toBe(true);
    expect(await sys.calls('npm')).toEqual([`${join(root, 'opt/sluice')}: ci --omit=dev --no-audit --no-fund`]);
    expect(await sys.calls('apt-get')).toEqual([]);
    // User and state directory.
    expect((await sys.calls('useradd'))[0]).toMatch(new RegExp(`^--root ${root} --system --user-group .*sluice$`));
    expect(readFileSync(join(root, 'etc/passwd'), 'utf8')).toMatch(/^sluice:/m);
    expect(statSync(join(root, 'var/lib/sluice')).mode & 0o777).toBe(0o750);
    // Configuration from the sample, secrets apart, both readable by group sluice only.
    const env = envFile(join(root, 'etc/sluice/gateway.env'));
    expect(env).toEqual({ SLUICE_CLOUD_TOKEN: 'tok-Abc123_secret' });
    expect(statSync(join(root, 'etc/sluice/gateway.env')).mode & 0o777).toBe(0o640);
    expect(statSync(join(root, 'etc/sluice/gateway.yaml')).mode & 0o777).toBe(0o640);
    expect(readFileSync(join(root, 'etc/sluice/gateway.yaml'), 'utf8')).not.toContain('tok-Abc123_secret');
    const cfg = loadGatewayConfig(join(root, 'etc/sluice/gateway.yaml'), {}, env);
    expect(cfg).toMatchObject({ id: 'site-1', dataDir: '/var/lib/sluice/gateway', cloud: { url: 'https://cloud.example:8443', token: 'tok-Abc123_secret' }, http: { host: '0.0.0.0', port: 8788 } });
    // Devices need credentials: an empty registry the service user owns, named in the config.
    expect(cfg.allowAnonymous).toBe(false);
    expect(cfg.broker?.registryFile).toBe('/var/lib/sluice/devices.yaml');
    expect(statSync(join(root, 'var/lib/sluice/devices.yaml')).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(root, 'usr/local/bin/sluice'), 'utf8')).toContain('/opt/sluice/bin/sluice.js "$@"');
    // The unit, enabled in the root; it still verifies once installed.
    const unit = join(root, 'etc/systemd/system/sluice-gateway.service');
    expect(readFileSync(unit, 'utf8')).toMatch(/^ExecStart=\S+node \/opt\/sluice\/bin\/sluice\.js gateway --config \/etc\/sluice\/gateway\.yaml$/m);
    expect(await sys.calls('systemctl')).toEqual([`--root=${root} enable sluice-gateway.service`]);
    expect(await verify([unit])).toEqual({ code: 0, stderr: '' });
    expect(r.stdout).toContain('configuration ok');

    // Upgrade: re-run without secrets keeps the configuration and the user.
    const again = await runScript(INSTALL_SH, ['--root', root, '--non-interactive'], sys.path);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toContain('keeping the existing');
    expect(await sys.calls('useradd')).toHaveLength(1);
    expect(envFile(join(root, 'etc/sluice/gateway.env'))).toEqual(env);

    // Uninstall keeps configuration and data; --purge removes them and the user.
    writeFileSync(join(root, 'var/lib/sluice/readings-not-yet-forwarded'), 'x');
    const un = await runScript(UNINSTALL_SH, ['--root', root], sys.path);
    expect(un.code, un.stderr).toBe(0);
    expect(existsSync(join(root, 'opt/sluice'))).toBe(false);
    expect(existsSync(join(root, 'usr/local/bin/sluice'))).toBe(false);
    expect(existsSync(unit)).toBe(false);
    expect(existsSync(join(root, 'etc/sluice/gateway.yaml'))).toBe(true);
    expect(existsSync(join(root, 'var/lib/sluice/readings-not-yet-forwarded'))).toBe(true);
    expect(await sys.calls('systemctl')).toContain(`--root=${root} disable sluice-gateway.service`);
    const purge = await runScript(UNINSTALL_SH, ['--root', root, '--purge'], sys.path);
    expect(purge.code, purge.stderr).toBe(0);
    expect(existsSync(join(root, 'etc/sluice'))).toBe(false);
    expect(existsSync(join(root, 'var/lib/sluice'))).toBe(false);
    expect(await sys.calls('userdel')).toEqual([`--root ${root} sluice`]);
    expect(readFileSync(join(root, 'etc/passwd'), 'utf8')).not.toMatch(/^sluice:/m);
  });

  it('cloud on a host without Node.js: installs nodejs and npm with apt-get, then the cloud unit', async () => {
    const dir = join(tmp.path, 'cloud');
    const root = join(dir, 'root');
    const sys = await fakeSystem(dir, 'missing');
    await exec('mkdir', ['-p', root]);
    const r = await runScript(INSTALL_SH, ['--root', root, '--role', 'cloud', '--gateway-token', 'site-1=tok-1', '--gateway-token', 'site-2=tok-2', '-y'], sys.path);
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    const apt = await sys.calls('apt-get');
    expect(apt.some((l) => /install .*nodejs npm/.test(l))).toBe(true);
    const env = envFile(join(root, 'etc/sluice/cloud.env'));
    expect(env).toEqual({ SLUICE_GATEWAY_TOKENS: 'site-1=tok-1 site-2=tok-2' });
    const file = parseCloudFile(readFileSync(join(root, 'etc/sluice/cloud.yaml'), 'utf8'), 'cloud.yaml');
    expect(resolveCloudConfig({}, file, env)).toMatchObject({ dataDir: '/var/lib/sluice/cloud', gatewayTokens: { 'site-1': 'tok-1', 'site-2': 'tok-2' } });
    expect(existsSync(join(root, 'etc/systemd/system/sluice-cloud.service'))).toBe(true);
    expect(await sys.calls('systemctl')).toEqual([`--root=${root} enable sluice-cloud.service`]);
  });

  it('refuses a Node.js older than 20.15 with instructions, and missing values naming the flag', async () => {
    for (const [kind, version] of [['old', '18.19.0'], ['old20', '20.10.0']] as const) {
      const dir = join(tmp.path, kind);
      const root = join(dir, 'root');
      await exec('mkdir', ['-p', root]);
      const old = await fakeSystem(dir, kind);
      const r = await runScript(INSTALL_SH, ['--root', root, '--id', 'x', '--cloud-url', 'https://c.example', '--token', 't', '-y'], old.path);
      expect(r.code).toBe(3);
      expect(r.stderr).toContain(`Node.js ${version}; Sluice needs Node.js 20.15 or newer`);
      expect(r.stderr).toMatch(/nodesource/i);
      expect(existsSync(join(root, 'opt/sluice'))).toBe(false);
    }

    const dir2 = join(tmp.path, 'noflag');
    const root2 = join(dir2, 'root');
    await exec('mkdir', ['-p', root2]);
    const sys = await fakeSystem(dir2, 'real');
    const r2 = await runScript(INSTALL_SH, ['--root', root2, '--id', 'x', '--token', 't', '-y'], sys.path);
    expect(r2.code).toBe(2);
    expect(r2.stderr).toContain('--cloud-url is required');
    const r3 = await runScript(INSTALL_SH, ['--root', root2, '--bogus'], sys.path);
    expect(r3.code).toBe(2);
    expect(r3.stderr).toContain('unknown option --bogus');
  });
});
