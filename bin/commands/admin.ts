// Admin commands that work on the configured storage directly (a server may be running on it):
// berth user | org | token | repo.
import { Command, InvalidArgumentError, Option } from 'commander';
import { pino } from 'pino';
import { AccountError, AccountManagement, splitRobotName, type Actor, type AuthService, type Role } from '../../auth/index.ts';
import { createAuth, openStorage } from '../../server/app.ts';
import { PolicyError } from '../../storage/index.ts';
import { collect, configOrExit, positiveCount, readStdin } from './common.ts';

/** Users `user list` reads from storage at a time: its memory stays bounded however many there are. */
const LIST_PAGE = 500;

/**
 * Runs `fn` with the auth service over the configured storage; prints errors the way a CLI should (a
 * refused account change exits 1, a refused policy 2).
 */
export async function withAuth(fn: (auth: AuthService, management: AccountManagement) => Promise<void>): Promise<void> {
  let opened: Awaited<ReturnType<typeof openStorage>> | undefined;
  try {
    const config = configOrExit();
    // The audit log of admin commands goes to stderr (or BERTH_AUDIT_LOG), never mixed into stdout.
    const logger = pino({ base: { service: 'berth-admin', pid: process.pid } }, pino.destination(2));
    opened = await openStorage(config, logger);
    const auth = await createAuth({ ...config, mode: config.mode === 'open' ? 'public-index' : config.mode }, opened.storage, opened.coordination, logger);
    await fn(auth, new AccountManagement(auth.accounts, auth.audit, opened.storage.policies, opened.storage.quotas));
  } catch (err) {
    if (err instanceof AccountError || err instanceof InvalidArgumentError || err instanceof PolicyError) {
      process.stderr.write(`berth: ${err.message}\n`);
      process.exitCode = err instanceof PolicyError ? 2 : 1;
      return;
    }
    throw err;
  } finally {
    await opened?.close();
  }
}

async function password(options: { passwordStdin?: boolean }): Promise<string> {
  if (!options.passwordStdin) throw new AccountError('invalid', 'give the password on standard input with --password-stdin');
  return readStdin();
}

/** Who runs the command, to the service: the registry's operator, named by their login. */
export const OPERATOR: Actor = { kind: 'operator', name: process.env.USER ?? 'admin', via: 'admin command' };

const audit = (auth: AuthService, action: string, fields: Record<string, unknown> = {}) =>
  auth.audit.record({ who: process.env.USER ?? 'admin', action, allowed: true, reason: 'admin command', ...fields });

export function registerAdminCommands(program: Command): void {
  const user = program.command('user').description('user accounts');
  user
    .command('add <name>')
    .description('create a user')
    .option('--password-stdin', 'read the password from standard input')
    .option('--admin', 'make the user an administrator (owns library/, may do everything)')
    .action((name: string, options: { passwordStdin?: boolean; admin?: boolean }) =>
      withAuth(async (_auth, management) => {
        await management.addUser(OPERATOR, name, await password(options), options.admin === true);
        process.stdout.write(`user ${name} created${options.admin ? ' (admin)' : ''}\n`);
      }),
    );
  user
    .command('passwd <name>')
    .description('change a password (refresh tokens from the old one stop working)')
    .option('--password-stdin', 'read the password from standard input')
    .action((name: string, options: { passwordStdin?: boolean }) =>
      withAuth(async (auth) => {
        await auth.accounts.setPassword(name, await password(options));
        audit(auth, `user passwd ${name}`);
        process.stdout.write(`password of ${name} changed\n`);
      }),
    );
  user
    .command('rm <name>')
    .description('remove a user, their organisation roles, robots and tokens; the name is kept for admins to give out again')
    .action((name: string) =>
      withAuth(async (_auth, management) => {
        const removed = await management.removeUser(OPERATOR, name);
        process.stdout.write(`user ${name} removed, with ${removed.roles.length} organisation role(s)${removed.roles.length ? ` (${removed.roles.join(', ')})` : ''}, ` +
          `${removed.robots.length} robot(s)${removed.robots.length ? ` (${removed.robots.join(', ')})` : ''} and ${removed.tokens} access token(s); ` +
          `only an admin can create ${name} again\n`);
      }),
    );
  user
    .command('list')
    .description('list users in the order of their records (a public index may have millions: read a page at a time)')
    .option('--limit <n>', 'at most this many users', positiveCount)
    .option('--after <name>', 'begin after this user (the last one a previous page printed)')
    .action((options: { limit?: number; after?: string }) =>
      withAuth(async (auth) => {
        let left = options.limit ?? Infinity;
        let after = options.after;
        while (left > 0) {
          const want = Math.min(LIST_PAGE, left);
          const page = await auth.accounts.usersPage(want, after);
          for (const name of page) {
            const u = await auth.accounts.user(name);
            process.stdout.write(`${name}${u?.admin ? ' (admin)' : ''}\n`);
          }
          if (page.length < want) break;
          left -= page.length;
          after = page.at(-1);
        }
      }),
    );

  const org = program.command('org').description('organisations');
  org
    .command('add <name>')
    .description('create an organisation (its name is a namespace: <name>/…)')
    .option('--owner <user>', 'first member, with the admin role')
    .action((name: string, options: { owner?: string }) =>
      withAuth(async (_auth, management) => {
        await management.addOrganisation(OPERATOR, name, options.owner);
        process.stdout.write(`organisation ${name} created\n`);
      }),
    );
  org
    .command('member <org> <user>')
    .description('set a member\'s role, or remove the member')
    .addOption(new Option('--role <role>', 'read: pull; write: pull and push; admin: also delete').choices(['read', 'write', 'admin']))
    .option('--remove', 'remove the member')
    .action((orgName: string, userName: string, options: { role?: Role; remove?: boolean }) =>
      withAuth(async (_auth, management) => {
        if (!options.role && !options.remove) throw new AccountError('invalid', 'give --role read|write|admin or --remove');
        await management.setMember(OPERATOR, orgName, userName, options.remove ? undefined : options.role);
        process.stdout.write(options.remove ? `${userName} removed from ${orgName}\n` : `${userName} is ${options.role} in ${orgName}\n`);
      }),
    );
  org
    .command('show <org>')
    .description('list an organisation\'s members')
    .action((orgName: string) =>
      withAuth(async (auth) => {
        const found = await auth.accounts.organisation(orgName);
        if (!found) throw new AccountError('unknown', `no organisation ${orgName}`);
        for (const [member, role] of Object.entries(found.members)) process.stdout.write(`${member} ${role}\n`);
      }),
    );

  const token = program.command('token').description('personal access tokens and robot accounts');
  token
    .command('create')
    .description('create a personal access token (--user) or a robot account (--robot org+name); the secret is shown once')
    .option('--user <name>', 'the user the token acts for (log in with this user name and the token as password)')
    .option('--robot <org+name>', 'a robot account of an organisation (log in with org+name and the secret)')
    .option('--description <text>', 'what the token is for', '')
    .option('--scope <scope>', 'repository:<name, prefix/* or *>:<pull,push,delete> (repeatable)', collect)
    .option('--expires-in <duration>', 'lifetime: 30d, 12h, … or never', '90d')
    .action((options: { user?: string; robot?: string; description: string; scope?: string[]; expiresIn: string }) =>
      withAuth(async (_auth, management) => {
        const request = { scopes: options.scope, expiresIn: options.expiresIn };
        if (options.user && !options.robot) {
          const { token: created, secret } = await management.createToken(OPERATOR, options.user, { ...request, description: options.description });
          process.stdout.write(`id: ${created.id}\nuser: ${options.user}\ntoken: ${secret}\n`);
        } else if (options.robot && !options.user) {
          const { namespace, name } = splitRobotName(options.robot);
          const { robot, secret } = await management.createRobot(OPERATOR, namespace, { ...request, name });
          process.stdout.write(`user: ${robot.name}\ntoken: ${secret}\n`);
        } else {
          throw new AccountError('invalid', 'give either --user or --robot');
        }
      }),
    );
  token
    .command('revoke <id>')
    .description('revoke a personal access token (by id) or a robot (by org+name), and the refresh tokens it gave')
    .action((id: string) =>
      withAuth(async (auth, management) => {
        let what = 'robot';
        if (id.includes('+')) {
          const { namespace, name } = splitRobotName(id);
          await management.deleteRobot(OPERATOR, namespace, name);
        } else {
          what = 'token';
          await management.revokeToken(OPERATOR, (await auth.accounts.token(id))?.owner ?? '', id);
        }
        process.stdout.write(`${what} ${id} revoked\n`);
      }),
    );
  token
    .command('list <user>')
    .description('list a user\'s personal access tokens')
    .action((name: string) =>
      withAuth(async (auth) => {
        for (const t of await auth.accounts.tokensOf(name)) {
          const state = t.revokedAt ? 'revoked' : t.expiresAt ? `expires ${t.expiresAt}` : 'never expires';
          process.stdout.write(`${t.id} ${state} ${t.scopes.map((s) => `repository:${s.pattern}:${s.actions.join(',')}`).join(' ')} ${t.description}\n`);
        }
      }),
    );

  const repo = program.command('repo').description('repositories');
  repo
    .command('visibility <name> <visibility>')
    .description('make a repository public or private')
    .action((name: string, visibility: string) =>
      withAuth(async (auth) => {
        await auth.setVisibility(name, visibility as 'public' | 'private');
        audit(auth, `repo visibility ${visibility}`, { repository: name });
        process.stdout.write(`${name} is ${visibility}\n`);
      }),
    );
}
