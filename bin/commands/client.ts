// The runtime client's commands: pull, run, images, rmi, login.
import { homedir } from 'node:os';
import { Command } from 'commander';
import { Client, ClientError, formatBytes } from '../../client/index.ts';
import { clientConfigOrExit, collect, readStdin } from './common.ts';

function makeClient(): Client {
  const config = clientConfigOrExit();
  return new Client({
    home: config.clientHome.replace(/^~(?=$|\/)/, homedir()),
    defaultRegistry: config.defaultRegistry,
    insecureRegistries: config.insecureRegistries?.split(',') ?? [],
    runtime: config.runtime,
    unpackLimits: { maxBytes: config.unpackMaxBytes, maxEntries: config.unpackMaxEntries },
  });
}

/** Runs a command body; a known failure prints one line and exits with `failureCode`. */
async function guarded(failureCode: number, body: (client: Client) => Promise<number | void>): Promise<void> {
  try {
    const code = await body(makeClient());
    if (typeof code === 'number') process.exitCode = code;
  } catch (err) {
    if (err instanceof ClientError) {
      process.stderr.write(`berth: ${err.message}\n`);
      process.exit(failureCode);
    }
    throw err;
  }
}

/** Columns padded to their widest cell, as docker prints its lists. */
function printTable(table: string[][]): void {
  const widths = table[0]!.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
  for (const row of table) process.stdout.write(`${row.map((cell, i) => cell.padEnd(widths[i]!)).join('   ').trimEnd()}\n`);
}

/** "5 seconds", "3 minutes", "2 hours", "4 days": how long ago `iso` was. */
function since(now: number, iso: string): string {
  const seconds = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  for (const [unit, size] of [['day', 86_400], ['hour', 3_600], ['minute', 60]] as const) {
    const n = Math.floor(seconds / size);
    if (n >= 1) return `${n} ${unit}${n > 1 ? 's' : ''}`;
  }
  return `${seconds} second${seconds === 1 ? '' : 's'}`;
}

export function registerClientCommands(program: Command): void {
  // `berth run IMAGE CMD --flag`: options after the image belong to the container's command.
  program.enablePositionalOptions();

  program
    .command('pull')
    .description('pull an image into the local store')
    .argument('<image>', '[registry[:port]/]name[:tag|@digest]')
    .option('--platform <os/arch[/variant]>', 'the platform to pick from a multi-platform image (default: this host)')
    .action((image: string, options: { platform?: string }) =>
      guarded(1, async (client) => {
        await client.pull(image, options.platform);
      }),
    );

  program
    .command('run')
    .description('run a command in a new container (pulls the image when it is not in the local store)')
    .argument('<image>', '[registry[:port]/]name[:tag|@digest]')
    .argument('[command...]', 'replaces the image\'s Cmd')
    .option('--rm', 'remove the container\'s files when it exits', false)
    .option('-e, --env <KEY=VALUE>', 'set an environment variable (KEY alone: from this environment)', collect, [])
    .option('-w, --workdir <dir>', 'working directory inside the container')
    .option('-u, --user <user[:group]>', 'user (name or number) to run as')
    .option('--entrypoint <command>', 'replaces the image\'s Entrypoint')
    .option('--platform <os/arch[/variant]>', 'the platform to pick from a multi-platform image')
    .passThroughOptions()
    .action(
      (
        image: string,
        command: string[],
        options: { rm: boolean; env: string[]; workdir?: string; user?: string; entrypoint?: string; platform?: string },
      ) =>
        // 125 as docker: a failure of berth itself, told apart from the container's own exit codes.
        guarded(125, (client) =>
          client.run(image, {
            command,
            env: options.env,
            remove: options.rm,
            ...(options.workdir !== undefined ? { workdir: options.workdir } : {}),
            ...(options.user !== undefined ? { user: options.user } : {}),
            ...(options.entrypoint !== undefined ? { entrypoint: options.entrypoint } : {}),
            ...(options.platform !== undefined ? { platform: options.platform } : {}),
          }),
        ),
    );

  program
    .command('images')
    .description('list the images in the local store')
    .action(() =>
      guarded(1, async (client) => {
        const rows = client.images().map((r) => [
          r.name,
          r.tag ?? '<none>',
          r.config.slice(r.config.indexOf(':') + 1, r.config.indexOf(':') + 13),
          `${r.platform.os}/${r.platform.architecture}${r.platform.variant ? `/${r.platform.variant}` : ''}`,
          formatBytes(r.size),
        ]);
        printTable([['REPOSITORY', 'TAG', 'IMAGE ID', 'PLATFORM', 'SIZE'], ...rows]);
      }),
    );

  program
    .command('ps')
    .description('list the containers kept by berth run (without --rm), newest first')
    .option('-a, --all', 'accepted for docker\'s sake: every kept container is listed')
    .action(() =>
      guarded(1, async (client) => {
        const now = Date.now();
        const rows = client.containers().map((c) => [
          c.id,
          c.image,
          JSON.stringify(c.command.join(' ').slice(0, 40)),
          `${since(now, c.created)} ago`,
          c.running ? 'Running' : c.exitCode !== undefined ? `Exited (${c.exitCode}) ${since(now, c.finishedAt!)} ago` : 'Dead',
        ]);
        printTable([['CONTAINER ID', 'IMAGE', 'COMMAND', 'CREATED', 'STATUS'], ...rows]);
      }),
    );

  program
    .command('rm')
    .description('remove kept containers (their bundle and root filesystem)')
    .argument('<container...>', 'container IDs, or unique prefixes of them')
    .action((containers: string[]) =>
      guarded(1, async (client) => {
        for (const id of containers) process.stdout.write(`${client.rm(id)}\n`);
      }),
    );

  program
    .command('rmi')
    .description('remove images from the local store, and the blobs no other image uses')
    .argument('<image...>', 'references or image IDs')
    .action((images: string[]) =>
      guarded(1, async (client) => {
        for (const image of images) {
          const { removed, blobs } = client.rmi(image);
          for (const r of removed) process.stdout.write(`Untagged: ${r.name}${r.tag ? `:${r.tag}` : `@${r.digest}`}\n`);
          for (const digest of blobs) process.stdout.write(`Deleted: ${digest}\n`);
        }
      }),
    );

  program
    .command('login')
    .description('check credentials against a registry and keep them (in BERTH_HOME/credentials.json, mode 0600)')
    .argument('<registry>', 'host[:port]')
    .requiredOption('-u, --username <name>', 'user name')
    .option('-p, --password <password>', 'password or token (visible to other users in the process list: prefer --password-stdin)')
    .option('--password-stdin', 'read the password from standard input', false)
    .action((registry: string, options: { username: string; password?: string; passwordStdin: boolean }) =>
      guarded(1, async (client) => {
        const password = options.passwordStdin ? await readStdin() : options.password;
        if (!password) throw new ClientError('a password is needed: --password-stdin (or -p)');
        await client.login(registry, { username: options.username, password });
        process.stdout.write('Login Succeeded\n');
      }),
    );
}
