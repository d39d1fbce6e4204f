// berth gc, berth retention run, berth policy set|show|rm: storage lifecycle jobs on the configured
// storage (BERTH_DATA or the S3 bucket; BERTH_REDIS_URL for the lock and cache generations it shares with
// running servers). gc and retention are handed to a server running on this machine through its control
// socket when there is one, so they work beside it with or without Redis; with none they run here, and
// without Redis only while no server elsewhere uses the storage. Each prints JSON on stdout.
import { InvalidArgumentError, type Command } from 'commander';
import { controlSocketPath, usesRedis, type Config } from '../../server/config.ts';
import { askServer, type GcJobRequest, type RetentionJobRequest } from '../../server/control.ts';
import { withAuth, OPERATOR } from './admin.ts';
import { configOrExit, printJson } from './common.ts';
import { openStorage } from '../../server/app.ts';
import { PolicyError, serversWithoutSharedState, type Storage } from '../../storage/index.ts';

function seconds(value: string): number {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError('expected a whole number of seconds');
  return Number(value);
}

/**
 * The servers without Redis that use the storage (their pid and host), when the command shares no locks
 * with them (no BERTH_REDIS_URL): a command that changes what they serve must not run beside them.
 */
export async function serversInTheWay(storage: Storage, config: Config): Promise<string | undefined> {
  if (usesRedis(config)) return undefined;
  const servers = await serversWithoutSharedState(storage.driver);
  return servers.length > 0 ? servers.map((s) => `pid ${s.pid} on ${s.host}`).join(', ') : undefined;
}

/**
 * Opens the configured storage, runs the job, prints its result; errors go to stderr with an exit code.
 * A job that changes what servers serve (`changesServed`) is refused while a server without Redis uses
 * the storage: that server's locks and caches are in its memory, so the job would race its pushes (a
 * collection could sweep a blob a push just linked) and it would go on serving what the job removed.
 */
async function withStorage(job: (storage: Storage, grace: number) => Promise<unknown>, changesServed = false, config: Config = configOrExit()): Promise<void> {
  const { storage, close } = await openStorage(config);
  try {
    const which = changesServed ? await serversInTheWay(storage, config) : undefined;
    if (which) {
      process.stderr.write(
        `berth: a server without Redis uses this storage (${which}) and no server answers on this machine's control socket ` +
          `(${controlSocketPath(config) ?? 'BERTH_CONTROL_SOCKET=none'}): that server's locks and caches are its own, so this job would race it. ` +
          'Run the command where that server runs, use POST /api/v1/admin/gc, let it run the job on its schedule (BERTH_GC_INTERVAL_SECONDS, BERTH_RETENTION_INTERVAL_SECONDS), ' +
          'or give both BERTH_REDIS_URL.\n',
      );
      process.exitCode = 2;
      return;
    }
    printJson(await job(storage, config.gcGraceSeconds));
  } catch (err) {
    if (!(err instanceof PolicyError)) throw err;
    process.stderr.write(`berth: ${err.message}\n`);
    process.exitCode = 2;
  } finally {
    await close();
  }
}

/**
 * Hands a job to the server listening on the control socket and prints its report; with no server there,
 * runs it here (withStorage).
 */
async function throughServer(
  job: 'gc' | 'retention',
  request: GcJobRequest | RetentionJobRequest,
  here: (storage: Storage, grace: number) => Promise<unknown>,
  changesServed: boolean,
): Promise<void> {
  const config = configOrExit();
  const socket = controlSocketPath(config);
  const reply = socket ? await askServer(socket, job, request) : undefined;
  if (!reply) return withStorage(here, changesServed, config);
  if (reply.ok) {
    printJson(reply.result);
    return;
  }
  process.stderr.write(`berth: the server refused the job (${reply.status}): ${reply.error}\n`);
  process.exitCode = reply.status >= 500 ? 1 : 2;
}

export function registerLifecycleCommands(program: Command): void {
  program
    .command('gc')
    .description('remove the blobs (and with --delete-untagged, the manifests) nothing reaches; safe while clients push (without Redis: refused while a server uses the storage)')
    .option('--dry-run', 'report what would be removed, remove nothing')
    .option('--delete-untagged', 'also remove manifests that no tag reaches')
    .option('--grace-seconds <n>', 'keep what was stored less than this long ago (default: BERTH_GC_GRACE_SECONDS)', seconds)
    .action((options: { dryRun?: boolean; deleteUntagged?: boolean; graceSeconds?: number }) =>
      throughServer(
        'gc',
        { dryRun: options.dryRun, deleteUntagged: options.deleteUntagged, graceSeconds: options.graceSeconds },
        (storage, grace) => storage.jobs.collectGarbage({ dryRun: options.dryRun, deleteUntagged: options.deleteUntagged, graceSeconds: options.graceSeconds ?? grace }),
        !options.dryRun,
      ),
    );

  program
    .command('retention')
    .description('retention policies')
    .command('run')
    .description('delete the tags that the retention policies do not keep')
    .option('--dry-run', 'report what would be deleted, delete nothing')
    .action((options: { dryRun?: boolean }) =>
      throughServer('retention', { dryRun: options.dryRun }, (storage) => storage.jobs.applyRetention({ dryRun: options.dryRun }), !options.dryRun),
    );

  const policy = program.command('policy').description('lifecycle policies of a repository or namespace');
  // Changes go through the account service as the operator, so they are audited as the admin API's are.
  policy
    .command('set <scope> <json>')
    .description('replace the policy of a repository or namespace, e.g. \'{"immutableTags":["v*"],"quotaBytes":1000000,"retention":{"keepLast":5}}\'')
    .action((scope: string, json: string) =>
      withAuth(async (_auth, management) => {
        let value: unknown;
        try {
          value = JSON.parse(json);
        } catch {
          throw new PolicyError('the policy is not valid JSON');
        }
        printJson({ scope, policy: await management.setPolicy(OPERATOR, scope, value) });
      }),
    );
  policy
    .command('show [scope]')
    .description('show one policy (with the namespace usage when it has a quota), or all of them')
    .action((scope: string | undefined) =>
      withStorage(async (storage) => {
        return scope === undefined ? storage.policies.list() : storage.quotas.policyView(scope);
      }),
    );
  policy
    .command('rm <scope>')
    .description('remove the policy of a repository or namespace')
    .action((scope: string) =>
      withAuth(async (_auth, management) => {
        await management.removePolicy(OPERATOR, scope);
        printJson({ scope, removed: true });
      }),
    );
}
