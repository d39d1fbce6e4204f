// The admin API's accounts, repositories and policies: users, organisations and members, personal access
// tokens, robots, a repository's visibility and description, lifecycle policies. Callers as for the rest
// of the admin API (web/admin.ts). Every rule is the service layer's (AccountStore, AuthService,
// RepositoryStore, PolicyStore), the same methods `berth user|org|token|repo|policy` call: these
// handlers only decide who may ask, read the body and shape the answer.
import type Router from '@koa/router';
import type { Context } from 'koa';
import {
  AccountError,
  parseExpiry,
  parseScopeGrants,
  principalName,
  robotDefaultScope,
  TOKEN_DEFAULT_SCOPE,
  withoutSecret,
  type AccountRefusal,
  type AuthService,
  type Role,
  type User,
} from '../auth/index.ts';
import { isValidName, PolicyError } from '../storage/index.ts';
import { apiError, apiRoute, isAdmin, managesNamespace, type ApiCaller } from './admin.ts';
import type { WebDeps } from './index.ts';

/** A body here is a name, a password, a few scopes or a policy: small. */
const BODY_LIMIT = 64 * 1024;

const ACCOUNT_STATUS: Record<AccountRefusal, number> = { invalid: 400, reserved: 409, taken: 409, unknown: 404 };

/** A request the API refuses before any service sees it. */
class ApiRefusal extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const denied = (message: string) => new ApiRefusal(403, 'DENIED', message);

/** A JSON object body, sent as application/json and within the limit (413 above it, from readBody). */
async function jsonBody(ctx: Context, deps: WebDeps): Promise<Record<string, unknown>> {
  if (!/^application\/json\s*(;|$)/i.test(ctx.get('Content-Type'))) throw new ApiRefusal(415, 'UNSUPPORTED', 'send the body as application/json');
  const text = (await deps.readBody(ctx, BODY_LIMIT, 'request')).toString('utf8');
  try {
    const value = JSON.parse(text) as unknown;
    if (value && typeof value === 'object' && !Array.isArray(value)) return value as Record<string, unknown>;
  } catch {
    // answered below
  }
  throw new ApiRefusal(400, 'INVALID', 'the body must be a JSON object');
}

/** An optional field of a body: undefined, or of the type expected (else 400). */
function field<T>(body: Record<string, unknown>, name: string, check: (v: unknown) => v is T, what: string): T | undefined {
  const value = body[name];
  if (value === undefined || value === null) return undefined;
  if (!check(value)) throw new ApiRefusal(400, 'INVALID', `${name} must be ${what}`);
  return value;
}
const isString = (v: unknown): v is string => typeof v === 'string';
const isBoolean = (v: unknown): v is boolean => typeof v === 'boolean';
const isStrings = (v: unknown): v is string[] => Array.isArray(v) && v.length <= 100 && v.every(isString);

/** A user as the API shows one: never the password's hash nor its epoch. */
/** A user as the API shows them: what their source said of them, never the provider's refresh token (sealed as it is). */
const userView = (u: User) => {
  const { sealedRefreshToken: _kept, ...directory } = u.directory ?? { dn: '', checkedAt: '' };
  return { name: u.name, admin: u.admin, createdAt: u.createdAt, ...(u.directory ? { directory } : {}) };
};

export function accountRoutes(router: Router, deps: WebDeps): void {
  const who = (caller: ApiCaller) => (caller.open ? 'anonymous' : principalName(caller.principal));

  /** The accounts, or a refusal in open mode (nobody has an account there). */
  const accountsOf = (): AuthService => {
    if (!deps.auth) throw new ApiRefusal(404, 'NOT_FOUND', 'this registry runs in open mode: it has no accounts');
    return deps.auth;
  };

  const audit = (caller: ApiCaller, action: string, fields: { repository?: string; granted?: string[]; reason?: string } = {}) =>
    deps.auth?.audit.record({ who: who(caller), action, allowed: true, reason: 'admin API', ...fields });

  /** Runs a route for an admitted caller; answers refusals and the services' errors in the API's shape. */
  const handle = apiRoute(deps, (ctx, err) => {
    if (err instanceof ApiRefusal) apiError(ctx, err.status, err.code, err.message);
    else if (err instanceof AccountError) apiError(ctx, ACCOUNT_STATUS[err.refusal], err.refusal.toUpperCase(), err.message);
    else if (err instanceof PolicyError) apiError(ctx, err.kind === 'none' ? 404 : 400, err.kind === 'none' ? 'NOT_FOUND' : 'INVALID', err.message);
    else return false;
    return true;
  });

  const requireAdmin = (caller: ApiCaller) => {
    if (!isAdmin(caller)) throw denied('only an admin may do this');
  };
  /** A namespace's things are told only to who manages it: to anyone else it does not exist. */
  const requireManager = async (caller: ApiCaller, namespace: string) => {
    if (!(await managesNamespace(deps, caller, namespace))) throw new ApiRefusal(404, 'NOT_FOUND', `no namespace ${namespace.slice(0, 80)} that you manage`);
  };
  const requireSelfOrAdmin = (caller: ApiCaller, user: string) => {
    if (!isAdmin(caller) && !(!caller.open && caller.principal.kind === 'user' && caller.principal.name === user)) throw denied('only the user or an admin may manage these tokens');
  };

  // ---- users (registry admins) ------------------------------------------------------------------

  router.get('/api/v1/admin/users', handle('api-admin-users', async (ctx, caller) => {
    requireAdmin(caller);
    const accounts = accountsOf().accounts;
    const users = await Promise.all((await accounts.users()).map((name) => accounts.user(name)));
    ctx.body = { users: users.filter((u): u is User => u !== undefined).map(userView) };
  }));

  router.post('/api/v1/admin/users', handle('api-admin-users', async (ctx, caller) => {
    requireAdmin(caller);
    const body = await jsonBody(ctx, deps);
    const name = field(body, 'name', isString, 'a string') ?? '';
    const password = field(body, 'password', isString, 'a string') ?? '';
    const admin = field(body, 'admin', isBoolean, 'true or false') ?? false;
    const user = await accountsOf().accounts.addUser(name, password, admin);
    audit(caller, `user add ${name}`, { granted: admin ? ['admin'] : [] });
    ctx.status = 201;
    ctx.set('Location', `/api/v1/admin/users/${name}`);
    ctx.body = userView(user);
  }));

  router.delete('/api/v1/admin/users/:name', handle('api-admin-user', async (ctx, caller) => {
    requireAdmin(caller);
    const name = ctx.params.name!;
    const removed = await accountsOf().accounts.removeUser(name);
    audit(caller, `user rm ${name}`, { reason: `admin API; removed roles in: ${removed.roles.join(' ') || 'none'}; robots: ${removed.robots.join(' ') || 'none'}; access tokens: ${removed.tokens}` });
    ctx.body = { name, removed: true, ...removed };
  }));

  // ---- organisations and members ----------------------------------------------------------------

  router.get('/api/v1/organisations', handle('api-organisations', async (ctx, caller) => {
    const accounts = accountsOf().accounts;
    const all = await Promise.all((await accounts.organisations()).map((name) => accounts.organisation(name)));
    const found = all.filter((o) => o !== undefined);
    const managed = await Promise.all(found.map((o) => managesNamespace(deps, caller, o.name)));
    ctx.body = { organisations: found.filter((_, i) => managed[i]) };
  }));

  router.post('/api/v1/organisations', handle('api-organisations', async (ctx, caller) => {
    requireAdmin(caller);
    const body = await jsonBody(ctx, deps);
    const name = field(body, 'name', isString, 'a string') ?? '';
    const org = await accountsOf().accounts.addOrganisation(name, field(body, 'owner', isString, 'a user name'));
    audit(caller, `org add ${name}`);
    ctx.status = 201;
    ctx.set('Location', `/api/v1/organisations/${name}`);
    ctx.body = org;
  }));

  router.get('/api/v1/organisations/:name', handle('api-organisation', async (ctx, caller) => {
    const name = ctx.params.name!;
    await requireManager(caller, name);
    const org = await accountsOf().accounts.organisation(name);
    if (!org) throw new AccountError('unknown', `no organisation ${name.slice(0, 80)}`);
    ctx.body = org;
  }));

  const setMember = async (ctx: Context, caller: ApiCaller, role: Role | undefined) => {
    const { name, user } = ctx.params as { name: string; user: string };
    await requireManager(caller, name);
    ctx.body = await accountsOf().accounts.setMember(name, user, role);
    audit(caller, `org member ${name} ${user}`, { granted: role ? [role] : [] });
  };
  router.put('/api/v1/organisations/:name/members/:user', handle('api-organisation-member', async (ctx, caller) => {
    const role = field(await jsonBody(ctx, deps), 'role', isString, 'read, write or admin');
    if (role === undefined) throw new ApiRefusal(400, 'INVALID', 'give the member\'s role: {"role": "read" | "write" | "admin"}');
    await setMember(ctx, caller, role as Role);
  }));
  router.delete('/api/v1/organisations/:name/members/:user', handle('api-organisation-member', (ctx, caller) => setMember(ctx, caller, undefined)));

  // ---- personal access tokens (the user, or an admin) -------------------------------------------

  router.get('/api/v1/users/:name/tokens', handle('api-user-tokens', async (ctx, caller) => {
    requireSelfOrAdmin(caller, ctx.params.name!);
    ctx.body = { tokens: (await accountsOf().accounts.tokensOf(ctx.params.name!)).map(withoutSecret) };
  }));

  router.post('/api/v1/users/:name/tokens', handle('api-user-tokens', async (ctx, caller) => {
    const owner = ctx.params.name!;
    requireSelfOrAdmin(caller, owner);
    const body = await jsonBody(ctx, deps);
    const scopes = parseScopeGrants(field(body, 'scopes', isStrings, 'a list of at most 100 scopes'), TOKEN_DEFAULT_SCOPE);
    const expiresAt = parseExpiry(field(body, 'expiresIn', isString, 'a lifetime like 30d, or never') ?? '90d');
    const { token, secret } = await accountsOf().accounts.createToken(owner, field(body, 'description', isString, 'a string') ?? '', scopes, expiresAt);
    audit(caller, `token create ${token.id} for ${owner}`);
    ctx.status = 201;
    // The only time the secret leaves the server.
    ctx.body = { ...withoutSecret(token), secret };
  }));

  router.delete('/api/v1/users/:name/tokens/:id', handle('api-user-token', async (ctx, caller) => {
    const { name, id } = ctx.params as { name: string; id: string };
    requireSelfOrAdmin(caller, name);
    const accounts = accountsOf().accounts;
    if ((await accounts.token(id))?.owner !== name) throw new AccountError('unknown', `no token ${id.slice(0, 80)} of ${name.slice(0, 80)}`);
    await accounts.revoke(id);
    audit(caller, `token revoke ${id}`);
    ctx.body = { id, revoked: true };
  }));

  // ---- robots (the namespace's managers) --------------------------------------------------------

  router.get('/api/v1/namespaces/:namespace/robots', handle('api-robots', async (ctx, caller) => {
    await requireManager(caller, ctx.params.namespace!);
    ctx.body = { robots: (await accountsOf().accounts.robotsOf(ctx.params.namespace!)).map(withoutSecret) };
  }));

  router.post('/api/v1/namespaces/:namespace/robots', handle('api-robots', async (ctx, caller) => {
    const namespace = ctx.params.namespace!;
    await requireManager(caller, namespace);
    const body = await jsonBody(ctx, deps);
    const scopes = parseScopeGrants(field(body, 'scopes', isStrings, 'a list of at most 100 scopes'), robotDefaultScope(namespace));
    const expiresAt = parseExpiry(field(body, 'expiresIn', isString, 'a lifetime like 30d, or never') ?? '90d');
    const { robot, secret } = await accountsOf().accounts.createRobot(namespace, field(body, 'name', isString, 'a string') ?? '', scopes, expiresAt);
    audit(caller, `robot create ${robot.name}`);
    ctx.status = 201;
    ctx.body = { ...withoutSecret(robot), secret };
  }));

  router.delete('/api/v1/namespaces/:namespace/robots/:name', handle('api-robot', async (ctx, caller) => {
    const { namespace, name } = ctx.params as { namespace: string; name: string };
    await requireManager(caller, namespace);
    const accounts = accountsOf().accounts;
    const full = `${namespace}+${name}`;
    if (!(await accounts.robot(full))) throw new AccountError('unknown', `no robot ${full.slice(0, 160)}`);
    await accounts.revoke(full);
    audit(caller, `robot revoke ${full}`);
    ctx.body = { name: full, revoked: true };
  }));

  // ---- repositories (who may delete them, as the settings page) ---------------------------------

  router.patch('/api/v1/repositories/{*name}', handle('api-repository', async (ctx, caller) => {
    const name = ctx.params.name ?? '';
    const body = await jsonBody(ctx, deps);
    const visibility = field(body, 'visibility', isString, 'public or private');
    const description = field(body, 'description', isString, 'a string');
    if (!isValidName(name)) throw new ApiRefusal(400, 'NAME_INVALID', `${JSON.stringify(name.slice(0, 300))} is not a valid repository name`);
    // An admin may set a repository's settings before its first push (as `berth repo visibility`); others
    // only those of a repository that exists and that they may delete (as the settings page).
    if (!isAdmin(caller) && !caller.open && !((await deps.storage.manifests.exists(name)) && (await accountsOf().allowed(caller.principal, name)).has('delete'))) {
      throw new ApiRefusal(404, 'NOT_FOUND', `no repository ${name} whose settings you manage`);
    }
    if (visibility !== undefined) await accountsOf().setVisibility(name, visibility as 'public' | 'private');
    if (description !== undefined) await deps.storage.repositories.update(name, { description });
    audit(caller, 'repo settings', { repository: name, reason: `admin API; ${Object.keys(body).filter((k) => k === 'visibility' || k === 'description').join(', ')}` });
    const settings = (await deps.storage.repositories.settings(name)) ?? {};
    ctx.body = { name, visibility: settings.visibility ?? null, description: settings.description ?? '' };
  }));

  // ---- lifecycle policies (registry admins: quotas are theirs) ----------------------------------

  router.get('/api/v1/policies', handle('api-policies', async (ctx, caller) => {
    requireAdmin(caller);
    ctx.body = { policies: await deps.storage.policies.list() };
  }));

  router.get('/api/v1/policies/{*scope}', handle('api-policy', async (ctx, caller) => {
    requireAdmin(caller);
    ctx.body = await deps.storage.quotas.policyView(ctx.params.scope ?? '');
  }));

  router.put('/api/v1/policies/{*scope}', handle('api-policy', async (ctx, caller) => {
    requireAdmin(caller);
    const scope = ctx.params.scope ?? '';
    const policy = await deps.storage.policies.set(scope, await jsonBody(ctx, deps));
    audit(caller, 'policy set', { repository: scope });
    ctx.body = { scope, policy };
  }));

  router.delete('/api/v1/policies/{*scope}', handle('api-policy', async (ctx, caller) => {
    requireAdmin(caller);
    const scope = ctx.params.scope ?? '';
    await deps.storage.policies.removeExisting(scope);
    audit(caller, 'policy rm', { repository: scope });
    ctx.body = { scope, removed: true };
  }));
}
