// berth webhook add|list|rm|log: webhook endpoints on the configured storage (a running server sees a
// change at its next event: the endpoints are one document with a stamp). Each prints JSON on stdout; the
// secret is printed once, by add.
import type { Command } from 'commander';
import { pino } from 'pino';
import { EVENT_TYPES, WebhookError, type Webhooks } from '../../events/index.ts';
import { openStorage, openWebhooks } from '../../server/app.ts';
import { collect, configOrExit, printJson } from './common.ts';

async function withWebhooks(fn: (webhooks: Webhooks) => Promise<unknown>): Promise<void> {
  const config = configOrExit();
  const logger = pino({ base: { service: 'berth-webhook', pid: process.pid } }, pino.destination(2));
  const opened = await openStorage(config, logger);
  try {
    const result = await fn(openWebhooks(config, opened.storage, opened.coordination, logger));
    printJson(result);
  } catch (err) {
    if (!(err instanceof WebhookError)) throw err;
    process.stderr.write(`berth: ${err.message}\n`);
    process.exitCode = err.code === 'NOT_FOUND' ? 1 : 2;
  } finally {
    await opened.close();
  }
}

export function registerWebhookCommands(program: Command): void {
  const webhook = program.command('webhook').description('webhook endpoints: signed notifications of pushes, deletes, pulls and collections');
  webhook
    .command('add <url>')
    .description('add an endpoint; prints its secret, which is never shown again')
    .option('--namespace <name>', 'only events of this namespace\'s repositories (default: every repository, and collections)')
    .option('--event <type>', `an event type to send (repeatable; ${EVENT_TYPES.join(', ')}; default: push and delete)`, collect)
    .action((url: string, options: { namespace?: string; event?: string[] }) =>
      withWebhooks((w) => w.add({ url, namespace: options.namespace, events: options.event, createdBy: process.env.USER ?? 'admin' }).then(({ endpoint, secret }) => ({ ...endpoint, secret }))),
    );
  webhook
    .command('list')
    .description('list the endpoints (never their secrets)')
    .action(() => withWebhooks(async (w) => ({ endpoints: await w.list() })));
  webhook
    .command('rm <id>')
    .description('remove an endpoint with its queued events and log')
    .action((id: string) => withWebhooks((w) => w.remove(id)));
  webhook
    .command('log <id>')
    .description('the endpoint\'s last deliveries (status, time, attempt), what waits, and what was dropped')
    .action((id: string) => withWebhooks((w) => w.deliveries(id)));
}
