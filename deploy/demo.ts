import type { Command } from 'commander';
export function register(program: Command): void {
  program.command('demo').description('run the whole path locally (placeholder)').action(() => {});
}
