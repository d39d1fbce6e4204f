// berth replication add|list|show|rm|run: replication rules on the configured storage (a running server
// reads them at its next tick or push). run hands the run to the server on this machine's control socket
// when one answers (the run goes on there; --wait follows it to its end), else runs it here, refused
// without Redis while a server elsewhere uses the storage (as gc). Each prints JSON; the remote password
// comes from standard input (--password-stdin), never from the command line, and is never printed.
import { InvalidArgumentError, type Command } from 'commander';
import { pino } from 'pino';
import { openReplication, openStorage, openWebhooks } from '../../server/app.ts';
import { controlSocketPath } from '../../server/config.ts';
import { askServer } from '../../server/control.ts';
import { ReplicationError, type ActiveRun, type Replication } from '../../replication/index.ts';
import { collect, configOrExit, printJson, readStdin } from './common.ts';
import { serversInTheWay } from './lifecycle.ts';

function whole(value: string): number {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError('expected a whole number');
  return Number(value);
}

async function withReplication(fn: (replication: Replication, inTheWay: () => Promise<string | undefined>) => Promise<unknown>): Promise<void> {
  const config = configOrExit();
  const logger = pino({ base: { service: 'berth-replication', pid: process.pid } }, pino.destination(2));
  const opened = await openStorage(config, logger);
  try {
    // A run here queues its webhook event in storage, where the servers deliver it.
    const webhooks = openWebhooks(config, opened.storage, opened.coordination, logger);
    const replication = openReplication(config, opened.storage, opened.coordination, logger, (summary) => webhooks.replicated(summary));
    const result = await fn(replication, () => serversInTheWay(opened.storage, config));
    if (result !== undefined) printJson(result);
  } catch (err) {
    if (!(err instanceof ReplicationError)) throw err;
    process.stderr.write(`berth: ${err.message}\n`);
    process.exitCode = err.code === 'NOT_FOUND' ? 1 : 2;
  } finally {
    await opened.close();
  }
}

interface AddOptions {
  pull?: boolean;
  push?: boolean;
  remote: string;
  username?: string;
  passwordStdin?: boolean;
  realm?: string[];
  repository: string[];
  destination?: string;
  tag?: string[];
  tagRegex?: string;
  semver?: string;
  platform?: string[];
  reduceIndex?: boolean;
  newest?: number;
  every?: number;
  onPush?: boolean;
  disabled?: boolean;
}

/** Waits for the run's record in the rule's history (the server runs it). */
async function followRun(replication: Replication, name: string, run: ActiveRun): Promise<unknown> {
  for (;;) {
    const ledger = await replication.ledger.read(name);
    const done = ledger.history.find((r) => r.id === run.id);
    if (done) return done;
    // Claimed again after its server went silent: the resumed run's record is the one to wait for.
    if (ledger.running && ledger.running.id !== run.id) run = ledger.running;
    await new Promise((r) => setTimeout(r, 500));
  }
}

export function registerReplicationCommands(program: Command): void {
  const replication = program.command('replication').description('replication rules: copy images from other registries (pull) or to them (push)');
  replication
    .command('add <name>')
    .description('add a rule (see README: Replication)')
    .option('--pull', 'copy from the remote into this registry')
    .option('--push', 'copy from this registry to the remote')
    .requiredOption('--remote <url>', 'the remote registry, e.g. https://registry-1.docker.io')
    .option('--username <name>', 'the remote account')
    .option('--password-stdin', 'read the remote password from standard input')
    .option('--realm <origin>', 'a token realm on another host that may see the credentials (repeatable)', collect)
    .requiredOption('--repository <glob>', 'a repository name or glob on the source side (repeatable)', collect)
    .option('--destination <namespace>', 'the namespace the copies go under')
    .option('--tag <glob>', 'copy tags matching this glob (repeatable)', collect)
    .option('--tag-regex <regex>', 'copy tags matching this regular expression')
    .option('--semver <range>', 'copy tags that are versions in this range, e.g. ">=1.2 <2"')
    .option('--platform <os/arch>', 'copy images of this platform (repeatable)', collect)
    .option('--reduce-index', 'copy an index reduced to the platforms (a new index, its own digest)')
    .option('--newest <n>', 'copy only the newest N tags that pass the filters', whole)
    .option('--every <seconds>', 'run on this interval', whole)
    .option('--on-push', 'push rules: run after each push to a matching repository')
    .option('--disabled', 'add it without triggers running it')
    .action(async (name: string, o: AddOptions) => {
      if (Boolean(o.pull) === Boolean(o.push)) {
        process.stderr.write('berth: give one of --pull and --push\n');
        process.exitCode = 2;
        return;
      }
      const password = o.passwordStdin ? await readStdin() : undefined;
      await withReplication((r) =>
        r.add(
          {
            name,
            direction: o.pull ? 'pull' : 'push',
            remote: { url: o.remote, username: o.username, password, realms: o.realm ?? [] },
            repositories: o.repository,
            destination: o.destination,
            tags: { glob: o.tag, regex: o.tagRegex, semver: o.semver },
            platforms: o.platform,
            reduceIndex: o.reduceIndex ?? false,
            newest: o.newest,
            intervalSeconds: o.every ?? 0,
            onPush: o.onPush ?? false,
            enabled: !o.disabled,
          },
          process.env.USER ?? 'admin',
        ),
      );
    });
  replication
    .command('list')
    .description('every rule with its run in progress and last run')
    .action(() => withReplication(async (r) => ({ rules: (await r.list()).map(({ history: _history, ...rule }) => rule) })));
  replication
    .command('show <name>')
    .description('a rule, its run in progress and its history')
    .action((name: string) => withReplication((r) => r.show(name)));
  replication
    .command('rm <name>')
    .description('remove a rule and its history')
    .action((name: string) => withReplication((r) => r.remove(name)));
  replication
    .command('run <name>')
    .description('run a rule now (on the server on this machine when one answers on the control socket)')
    .option('--wait', 'wait for the run\'s end and print its record')
    .action((name: string, o: { wait?: boolean }) =>
      withReplication(async (r, inTheWay) => {
        const socket = controlSocketPath(configOrExit());
        const reply = socket ? await askServer(socket, 'replication', { rule: name }) : undefined;
        if (reply && !reply.ok) {
          process.stderr.write(`berth: the server refused the run (${reply.status}): ${reply.error}\n`);
          process.exitCode = reply.status === 404 ? 1 : 2;
          return undefined;
        }
        if (reply) return o.wait ? followRun(r, name, reply.result as ActiveRun) : reply.result;
        const which = await inTheWay();
        if (which) {
          process.stderr.write(`berth: a server without Redis uses this storage (${which}) and none answers on this machine's control socket: run the rule there, through POST /api/v1/replication/rules/${name}/run, or give both BERTH_REDIS_URL.\n`);
          process.exitCode = 2;
          return undefined;
        }
        return r.runNow(name);
      }),
    );
}
