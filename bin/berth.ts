#!/usr/bin/env node
// The berth command.
import { Command } from 'commander';
import { serve } from '../server/cluster.ts';
import { configOrExit, positiveCount } from './commands/common.ts';

const program = new Command();
program.name('berth').description('Berth: an OCI image registry');

program
  .command('serve')
  .description('serve the registry (configured by BERTH_* environment variables or BERTH_CONFIG)')
  .option('-w, --workers <n>', 'processes serving one port (default: BERTH_WORKERS, else 1)', positiveCount)
  .action(async (options: { workers?: number }) => {
    const config = configOrExit(options.workers ? { ...process.env, BERTH_WORKERS: String(options.workers) } : process.env);
    try {
      await serve(config);
    } catch (err) {
      const { StorageUnavailableError } = await import('../storage/index.ts');
      if (err instanceof StorageUnavailableError) {
        process.stderr.write(`berth: ${err.message}\n`);
        process.exit(1);
      }
      throw err;
    }
  });

// `berth serve` loads only what serving needs: with --workers the primary process only forks and relays,
// and the other commands would bring the whole registry and client into it (about 20 MiB).
if (process.argv[2] !== 'serve') {
  const [admin, client, lifecycle, webhooks, transfer, replication] = await Promise.all([
    import('./commands/admin.ts'),
    import('./commands/client.ts'),
    import('./commands/lifecycle.ts'),
    import('./commands/webhooks.ts'),
    import('./commands/transfer.ts'),
    import('./commands/replication.ts'),
  ]);
  admin.registerAdminCommands(program);
  client.registerClientCommands(program);
  lifecycle.registerLifecycleCommands(program);
  webhooks.registerWebhookCommands(program);
  transfer.registerTransferCommands(program);
  replication.registerReplicationCommands(program);
}

await program.parseAsync(process.argv);
