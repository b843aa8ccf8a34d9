/**
 * `sluice device add|list|remove`: edit the device registry (registry.ts).
 *
 * `add` prints the new secret exactly once on stdout (and nothing else there), so a provisioning
 * script can capture it: `SECRET=$(sluice device add sensor-01 --registry devices.yaml)`. Only its
 * scrypt hash is stored. A running gateway picks changes up by itself. Exit codes: 0 ok, 1 the entry
 * does not exist (remove), 2 usage or file errors.
 */
import type { Command } from 'commander';
import { isSluiceError } from '../protocols/errors.js';
import { addEntry, listEntries, removeEntry } from './registry.js';

const DEFAULT_REGISTRY = process.env.SLUICE_REGISTRY ?? 'devices.yaml';

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

function fail(err: unknown): never {
  process.stderr.write(`sluice device: ${(err as Error).message}\n`);
  process.exit(isSluiceError(err, 'SLUICE_BAD_CONFIG') ? 2 : 1);
}

export function registerDeviceCommands(program: Command): void {
  const device = program.command('device').description('manage the device registry: MQTT identities, hashed secrets, topic rules');

  device
    .command('add')
    .description('register a device (or, with --account, a local account) and print its secret once')
    .argument('<id>', 'device id = MQTT username ([A-Za-z0-9_.-]{1,64})')
    .option('--registry <file>', 'registry file (or env SLUICE_REGISTRY)', DEFAULT_REGISTRY)
    .option('--account', 'a local account with explicit rules (operators, dashboards) instead of a device')
    .option('--subscribe <filter>', 'topic filter it may subscribe to; repeatable', collect)
    .option('--publish <filter>', 'topic filter an account may publish to; repeatable', collect)
    .option('--deny-subscribe <filter>', 'topic filter an account may never receive; repeatable', collect)
    .option('--deny-publish <filter>', 'topic filter an account may never publish to; repeatable', collect)
    .option('--rotate', 'issue a new secret for an existing entry (the old one stops working)')
    .action(async (id: string, opts) => {
      try {
        const secret = await addEntry(opts.registry, id, {
          account: opts.account,
          subscribe: opts.subscribe,
          publish: opts.publish,
          denySubscribe: opts.denySubscribe,
          denyPublish: opts.denyPublish,
          rotate: opts.rotate,
        });
        process.stdout.write(`${secret}\n`);
        process.stderr.write(`${opts.rotate ? 'rotated' : 'added'} "${id}" in ${opts.registry}; the secret above is shown only once (MQTT username ${id}, password = secret)\n`);
      } catch (err) {
        fail(err);
      }
    });

  device
    .command('list')
    .description('list registered devices and accounts (never secrets)')
    .option('--registry <file>', 'registry file (or env SLUICE_REGISTRY)', DEFAULT_REGISTRY)
    .option('--json', 'one JSON object per line')
    .action(async (opts) => {
      try {
        for (const e of await listEntries(opts.registry)) {
          if (opts.json) process.stdout.write(`${JSON.stringify(e)}\n`);
          else process.stdout.write(`${e.id}\t${e.kind}\t${e.added ?? '-'}\tpublish ${e.publish.join(',') || '-'}\tsubscribe ${e.subscribe.join(',') || '-'}\n`);
        }
      } catch (err) {
        fail(err);
      }
    });

  device
    .command('remove')
    .description('remove a device or account: a running gateway closes its connections within seconds and refuses new ones')
    .argument('<id>')
    .option('--registry <file>', 'registry file (or env SLUICE_REGISTRY)', DEFAULT_REGISTRY)
    .action(async (id: string, opts) => {
      try {
        if (!(await removeEntry(opts.registry, id))) {
          process.stderr.write(`sluice device: "${id}" is not in ${opts.registry}\n`);
          process.exit(1);
        }
        process.stderr.write(`removed "${id}" from ${opts.registry}\n`);
      } catch (err) {
        fail(err);
      }
    });
}
