#!/usr/bin/env node
// The berth command.
import { Command, InvalidArgumentError } from 'commander';
import { serve } from '../server/cluster.ts';
import { StorageUnavailableError } from '../storage/index.ts';
import { registerAdminCommands } from './commands/admin.ts';
import { configOrExit } from './commands/common.ts';
import { registerClientCommands } from './commands/client.ts';
import { registerLifecycleCommands } from './commands/lifecycle.ts';

const program = new Command();
program.name('berth').description('Berth: an OCI image registry');

function positiveInt(value: string): string {
  if (!/^[1-9]\d*$/.test(value)) throw new InvalidArgumentError('expected a whole number from 1');
  return value;
}

program
  .command('serve')
  .description('serve the registry (configured by BERTH_* environment variables or BERTH_CONFIG)')
  .option('-w, --workers <n>', 'processes serving one port (default: BERTH_WORKERS, else 1)', positiveInt)
  .action(async (options: { workers?: string }) => {
    const config = configOrExit(options.workers ? { ...process.env, BERTH_WORKERS: options.workers } : process.env);
    try {
      await serve(config);
    } catch (err) {
      if (err instanceof StorageUnavailableError) {
        process.stderr.write(`berth: ${err.message}\n`);
        process.exit(1);
      }
      throw err;
    }
  });

registerAdminCommands(program);
registerClientCommands(program);
registerLifecycleCommands(program);

await program.parseAsync(process.argv);
