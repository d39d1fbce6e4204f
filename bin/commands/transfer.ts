// berth export, berth import: air-gapped transfer through OCI image layouts (transfer/). export reads the
// configured storage (safe beside a running server: it only reads). import writes the configured storage
// only when no server without Redis uses it (as berth gc), else into a running registry with --url.
// Each prints a JSON report on stdout; a refused layout or reference exits 2.
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { ClientError, CredentialStore, RegistryPusher, type Credentials } from '../../client/index.ts';
import { openStorage } from '../../server/app.ts';
import { RegistryError } from '../../server/errors.ts';
import { exportImages, importLayout, openLayout, openSink, registryTarget, storageTarget, TransferError, type ImportTarget } from '../../transfer/index.ts';
import { clientConfigOrExit, configOrExit, printJson, readStdin } from './common.ts';
import { serversInTheWay } from './lifecycle.ts';

/** Runs a command body and prints its report; a known failure prints one line and exits 2. */
async function reported(body: () => Promise<unknown>): Promise<void> {
  try {
    printJson(await body());
  } catch (err) {
    if (!(err instanceof TransferError || err instanceof RegistryError || err instanceof ClientError)) throw err;
    const detail = err instanceof RegistryError && err.detail ? ` ${JSON.stringify(err.detail)}` : '';
    process.stderr.write(`berth: ${err.message}${detail}\n`);
    process.exitCode = 2;
  }
}

interface ImportOptions {
  to?: string;
  url?: string;
  username?: string;
  passwordStdin?: boolean;
}

/** The credentials for --url: --username with --password-stdin, else those berth login kept for its host. */
async function credentialsFor(url: URL, options: ImportOptions): Promise<Credentials | undefined> {
  if (options.username !== undefined) {
    if (!options.passwordStdin) throw new ClientError('--username needs --password-stdin');
    return { username: options.username, password: await readStdin() };
  }
  if (options.passwordStdin) throw new ClientError('--password-stdin needs --username');
  const config = clientConfigOrExit();
  return new CredentialStore(join(config.clientHome.replace(/^~(?=$|\/)/, homedir()), 'credentials.json')).get(url.host);
}

async function importInto(target: ImportTarget, source: string, namespace: string | undefined, maxManifestBytes: number): Promise<unknown> {
  const layout = await openLayout(source);
  try {
    return await importLayout(layout.dir, target, { namespace, maxManifestBytes });
  } finally {
    await layout.close();
  }
}

export function registerTransferCommands(program: Command): void {
  program
    .command('export')
    .description('write images (NAME: every tag; NAME:TAG; NAME@DIGEST), with their platforms and referrers, as an OCI image layout')
    .argument('<references...>', 'NAME[:TAG|@DIGEST]')
    .requiredOption('--to <path>', 'a new or empty directory, or FILE.tar')
    .action((references: string[], options: { to: string }) =>
      reported(async () => {
        const { storage, close } = await openStorage(configOrExit());
        try {
          return await exportImages(storage, references, await openSink(options.to));
        } finally {
          await close();
        }
      }),
    );

  program
    .command('import')
    .description('push an OCI image layout (a directory or FILE.tar; berth export\'s, skopeo\'s) into storage, or with --url into a registry; every digest is checked first')
    .argument('<source>', 'a layout directory or FILE.tar')
    .option('--to <namespace>', 'put NAME entries under NAMESPACE/, and entries that name only a tag (skopeo\'s) into the repository NAMESPACE')
    .option('--url <url>', 'push over HTTP into this registry (e.g. http://127.0.0.1:5000) instead of writing the storage')
    .option('-u, --username <username>', 'with --url: the account (with --password-stdin; else what berth login kept)')
    .option('--password-stdin', 'with --url: read the password or token from standard input')
    .action((source: string, options: ImportOptions) =>
      reported(async () => {
        if (options.url !== undefined) {
          if (!URL.canParse(options.url) || !/^https?:$/.test(new URL(options.url).protocol)) throw new ClientError(`--url ${JSON.stringify(options.url)} is not an http(s) URL`);
          const url = new URL(options.url);
          const credentials = await credentialsFor(url, options);
          const pusher = new RegistryPusher({ registry: url.host, baseUrl: url.origin, ...(credentials ? { credentials } : {}) });
          // The registry's own manifest limit applies there; this one only bounds what is read here.
          return importInto(registryTarget(pusher), source, options.to, 4 * 1024 * 1024);
        }
        if (options.username !== undefined || options.passwordStdin) throw new ClientError('--username and --password-stdin go with --url');
        const config = configOrExit();
        const { storage, close } = await openStorage(config);
        try {
          const which = await serversInTheWay(storage, config);
          if (which) {
            throw new TransferError(
              `a server without Redis uses this storage (${which}): its locks and caches are its own, so writing the storage from here would race it. ` +
                `Import through it with --url (e.g. --url ${config.publicUrl ?? 'http://HOST:PORT'}), stop it first, or give both BERTH_REDIS_URL.`,
            );
          }
          return await importInto(storageTarget(storage), source, options.to, config.maxManifestBytes);
        } finally {
          await close();
        }
      }),
    );
}
