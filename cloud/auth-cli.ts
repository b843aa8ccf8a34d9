/**
 * Command-line parts of the cloud's security: the flags of auth-config.ts on `sluice cloud`, and
 * `sluice cloud hash-token`, which prints the scrypt hash of a token (read from the argument, or
 * from stdin so it stays out of shell history), or makes a new random token with --generate.
 */
import type { Command } from 'commander';
import { generateSecret, hashSecret } from '../protocols/secret-hash.js';

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

export function addCloudSecurityOptions(cmd: Command): Command {
  return cmd
    .option('--gateway-token-hash <gw=hash>', 'a gateway id and the scrypt hash of its token (sluice cloud hash-token); repeatable', collect)
    .option('--tokens-file <file>', 'YAML file of token hashes: { gateways: { GW: scrypt$… }, read: [scrypt$…] }')
    .option('--read-token <token>', 'token for the query API (GET /api/v1/…); repeatable; or env SLUICE_READ_TOKENS', collect)
    .option('--read-token-hash <hash>', 'scrypt hash of a query API token; repeatable', collect)
    .option('--tls-cert <file>', 'serve HTTPS with this PEM certificate (chain)')
    .option('--tls-key <file>', 'PEM private key of --tls-cert')
    .option('--headers-timeout <duration>', 'time a client has to send request headers (default 10s)')
    .option('--request-timeout <duration>', 'time a client has to send a whole request (default 120s)')
    .option('--max-connections <n>', 'most open connections (default 1024)')
    .option('--max-body <size>', 'largest accepted batch (default 16MiB)');
}

async function readStdinLine(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8').split(/\r?\n/)[0].trim();
}

export function registerHashToken(cloud: Command): void {
  cloud
    .command('hash-token')
    .description('print the scrypt hash of a gateway or read token, for --gateway-token-hash / --read-token-hash / --tokens-file')
    .argument('[token]', 'the token (default: read one line from stdin)')
    .option('--generate', 'make a new random token and print it and its hash')
    .action(async (token: string | undefined, opts: { generate?: boolean }) => {
      if (opts.generate) {
        const t = generateSecret();
        process.stdout.write(`token ${t}\nhash  ${await hashSecret(t)}\n`);
        return;
      }
      const t = token ?? (await readStdinLine());
      if (!t) {
        process.stderr.write('sluice cloud hash-token: no token given (argument or stdin)\n');
        process.exit(2);
      }
      process.stdout.write(`${await hashSecret(t)}\n`);
    });
}
