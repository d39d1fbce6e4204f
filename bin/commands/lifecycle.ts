// berth gc, berth retention run, berth policy set|show|rm: storage lifecycle jobs on the configured
// storage (BERTH_DATA or the S3 bucket; BERTH_REDIS_URL for the lock and cache generations it shares with
// running servers; without it, gc and retention run only while no server uses the storage). Each prints
// JSON on stdout.
import { InvalidArgumentError, type Command } from 'commander';
import { usesRedis } from '../../server/config.ts';
import { configOrExit } from './common.ts';
import { openStorage } from '../../server/app.ts';
import { applyRetention, namespaceOf, PolicyError, serversWithoutSharedState, type Storage } from '../../storage/index.ts';

function seconds(value: string): number {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError('expected a whole number of seconds');
  return Number(value);
}

/**
 * Opens the configured storage, runs the job, prints its result; errors go to stderr with an exit code.
 * A job that changes what servers serve (`changesServed`) is refused while a server without Redis uses
 * the storage: that server's locks and caches are in its memory, so the job would race its pushes (a
 * collection could sweep a blob a push just linked) and it would go on serving what the job removed.
 */
async function withStorage(job: (storage: Storage, grace: number) => Promise<unknown>, changesServed = false): Promise<void> {
  const config = configOrExit();
  const { storage, close } = await openStorage(config);
  try {
    if (changesServed && !usesRedis(config)) {
      const servers = await serversWithoutSharedState(storage.driver);
      if (servers.length > 0) {
        const which = servers.map((s) => `pid ${s.pid} on ${s.host}`).join(', ');
        process.stderr.write(
          `berth: a server without Redis uses this storage (${which}): its locks and caches are its own, so this job would race it. ` +
            'Stop it first, let it run the job on its schedule (BERTH_GC_INTERVAL_SECONDS, BERTH_RETENTION_INTERVAL_SECONDS), ' +
            'or give both BERTH_REDIS_URL.\n',
        );
        process.exitCode = 2;
        return;
      }
    }
    process.stdout.write(`${JSON.stringify(await job(storage, config.gcGraceSeconds), null, 2)}\n`);
  } catch (err) {
    if (!(err instanceof PolicyError)) throw err;
    process.stderr.write(`berth: ${err.message}\n`);
    process.exitCode = 2;
  } finally {
    await close();
  }
}

export function registerLifecycleCommands(program: Command): void {
  program
    .command('gc')
    .description('remove the blobs (and with --delete-untagged, the manifests) nothing reaches; safe while clients push (without Redis: refused while a server uses the storage)')
    .option('--dry-run', 'report what would be removed, remove nothing')
    .option('--delete-untagged', 'also remove manifests that no tag reaches')
    .option('--grace-seconds <n>', 'keep what was stored less than this long ago (default: BERTH_GC_GRACE_SECONDS)', seconds)
    .action((options: { dryRun?: boolean; deleteUntagged?: boolean; graceSeconds?: number }) =>
      withStorage((storage, grace) =>
        storage.gc.run({ dryRun: options.dryRun, deleteUntagged: options.deleteUntagged, graceSeconds: options.graceSeconds ?? grace }),
      !options.dryRun),
    );

  program
    .command('retention')
    .description('retention policies')
    .command('run')
    .description('delete the tags that the retention policies do not keep')
    .option('--dry-run', 'report what would be deleted, delete nothing')
    .action((options: { dryRun?: boolean }) =>
      withStorage((storage) => applyRetention(storage.driver, storage.manifests, storage.policies, { dryRun: options.dryRun }), !options.dryRun),
    );

  const policy = program.command('policy').description('lifecycle policies of a repository or namespace');
  policy
    .command('set <scope> <json>')
    .description('replace the policy of a repository or namespace, e.g. \'{"immutableTags":["v*"],"quotaBytes":1000000,"retention":{"keepLast":5}}\'')
    .action((scope: string, json: string) =>
      withStorage(async (storage) => {
        let value: unknown;
        try {
          value = JSON.parse(json);
        } catch {
          throw new PolicyError('the policy is not valid JSON');
        }
        return { scope, policy: await storage.policies.set(scope, value) };
      }),
    );
  policy
    .command('show [scope]')
    .description('show one policy (with the namespace usage when it has a quota), or all of them')
    .action((scope: string | undefined) =>
      withStorage(async (storage) => {
        if (scope === undefined) return storage.policies.list();
        const own = await storage.policies.get(scope);
        if (!own) throw new PolicyError(`${scope} has no policy`);
        const usage = own.quotaBytes === undefined ? undefined : (await storage.quotas.usage(namespaceOf(scope))).bytes;
        return { scope, policy: own, ...(usage === undefined ? {} : { usageBytes: usage }) };
      }),
    );
  policy
    .command('rm <scope>')
    .description('remove the policy of a repository or namespace')
    .action((scope: string) =>
      withStorage(async (storage) => {
        if (!(await storage.policies.remove(scope))) throw new PolicyError(`${scope} has no policy`);
        return { scope, removed: true };
      }),
    );
}
