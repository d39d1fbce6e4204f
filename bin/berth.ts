#!/usr/bin/env -S node --import tsx
// The berth command.
import { Command } from 'commander';
import { ConfigError, loadConfig } from '../server/config.ts';
import { createApp, startServer } from '../server/app.ts';

const program = new Command();
program.name('berth').description('Berth: an OCI image registry');

program
  .command('serve')
  .description('serve the registry (configured by BERTH_* environment variables or BERTH_CONFIG)')
  .action(async () => {
    let config;
    try {
      config = loadConfig();
    } catch (err) {
      if (err instanceof ConfigError) {
        process.stderr.write(`berth: ${err.message}\n`);
        process.exit(2);
      }
      throw err;
    }
    const berth = createApp(config);
    // A bug in one request must not take the registry down for everyone: log it and keep serving.
    process.on('unhandledRejection', (err) => berth.logger.error({ err }, 'unhandled rejection'));
    process.on('uncaughtException', (err) => berth.logger.error({ err }, 'uncaught exception'));
    const running = await startServer(config, berth);
    const stop = (signal: string) => {
      process.stderr.write(`berth: ${signal}: finishing in-flight requests\n`);
      void running.close().then(() => process.exit(0));
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });

await program.parseAsync(process.argv);
