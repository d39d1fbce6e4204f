// The admin API's accounts, repositories and policies: users, organisations and members, personal access
// tokens, robots, a repository's visibility and description, lifecycle policies. Callers as for the rest
// of the admin API (web/admin.ts). Every rule is the service layer's (AccountStore, AuthService,
// RepositoryStore, PolicyStore), the same methods `berth user|org|token|repo|policy` call: these
// handlers only decide who may ask, read the body and shape the answer.
import type Router from '@koa/router';
import type { Context } from 'koa';
import {
  AccountError,
  type AccountRefusal,
  type AuthService,
  type Role,
  type User,
} from '../auth/index.ts';
import { isValidName, PolicyError } from '../storage/index.ts';
import { actorOf, apiError, apiRoute, auditApi, type ApiCaller } from './admin.ts';
import type { WebDeps } from './index.ts';

/** A body here is a name, a password, a few scopes or a policy: small. */
const BODY_LIMIT = 64 * 1024;

const ACCOUNT_STATUS: Record<AccountRefusal, number> = { invalid: 400, reserved: 409, taken: 409, unknown: 404, denied: 403 };
/** How these requests are named in the audit log. */
const VIA = 'admin API';
/** Users or organisations per page of a list: what one answer reads stays bounded however many there are. */
const DEFAULT_PAGE = 100;
const MAX_PAGE = 1000;

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

/** A list's page as asked: ?n= (DEFAULT_PAGE when absent, at most MAX_PAGE) and ?last= (checked by the service). */
function pageAsked(ctx: Context): { n: number; last?: string } {
  const nParam = typeof ctx.query.n === 'string' ? ctx.query.n : undefined;
  const last = typeof ctx.query.last === 'string' ? ctx.query.last : undefined;
  if (nParam !== undefined && !(/^\d{1,4}$/.test(nParam) && Number(nParam) >= 1 && Number(nParam) <= MAX_PAGE)) {
    throw new ApiRefusal(400, 'INVALID', `n is a number from 1 to ${MAX_PAGE}`);
  }
  return { n: nParam === undefined ? DEFAULT_PAGE : Number(nParam), ...(last !== undefined ? { last } : {}) };
}

/** A Link header to the next page, as the registry's own listings give one. */
function linkNext(ctx: Context, path: string, n: number, next: string | undefined): void {
  if (next !== undefined) ctx.set('Link', `<${path}?${new URLSearchParams({ n: String(n), last: next }).toString()}>; rel="next"`);
}

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

  /** The accounts, or a refusal in open mode (nobody has an account there). */
  const accountsOf = (): AuthService => {
    if (!deps.auth) throw new ApiRefusal(404, 'NOT_FOUND', 'this registry runs in open mode: it has no accounts');
    return deps.auth;
  };

  /** Runs a route for an admitted caller; answers refusals and the services' errors in the API's shape. */
  const handle = apiRoute(deps, (ctx, err) => {
    if (err instanceof ApiRefusal) apiError(ctx, err.status, err.code, err.message);
    else if (err instanceof AccountError) apiError(ctx, ACCOUNT_STATUS[err.refusal], err.refusal.toUpperCase(), err.message);
    else if (err instanceof PolicyError) apiError(ctx, err.kind === 'none' ? 404 : 400, err.kind === 'none' ? 'NOT_FOUND' : 'INVALID', err.message);
    else return false;
    return true;
  });


  // ---- users (registry admins) ------------------------------------------------------------------

  // A page at a time, as Harbor and Docker Hub list accounts: n (default 100, at most 1,000) and last,
  // with a Link header to the next page as the registry's own listings have.
  router.get('/api/v1/admin/users', handle('api-admin-users', async (ctx, caller) => {
    accountsOf();
    const { n, last } = pageAsked(ctx);
    const page = await deps.management.users(actorOf(caller, VIA, ctx), n, last);
    linkNext(ctx, '/api/v1/admin/users', n, page.next);
    ctx.body = { users: page.users.map(userView) };
  }));

  router.post('/api/v1/admin/users', handle('api-admin-users', async (ctx, caller) => {
    accountsOf();
    const body = await jsonBody(ctx, deps);
    const name = field(body, 'name', isString, 'a string') ?? '';
    const user = await deps.management.addUser(actorOf(caller, VIA, ctx), name, field(body, 'password', isString, 'a string') ?? '', field(body, 'admin', isBoolean, 'true or false') ?? false);
    ctx.status = 201;
    ctx.set('Location', `/api/v1/admin/users/${name}`);
    ctx.body = userView(user);
  }));

  router.delete('/api/v1/admin/users/:name', handle('api-admin-user', async (ctx, caller) => {
    accountsOf();
    const name = ctx.params.name!;
    ctx.body = { name, removed: true, ...(await deps.management.removeUser(actorOf(caller, VIA, ctx), name)) };
  }));

  // ---- organisations and members ----------------------------------------------------------------

  router.get('/api/v1/organisations', handle('api-organisations', async (ctx, caller) => {
    accountsOf();
    const { n, last } = pageAsked(ctx);
    const page = await deps.management.managedOrganisations(actorOf(caller, VIA, ctx), n, last);
    linkNext(ctx, '/api/v1/organisations', n, page.next);
    ctx.body = { organisations: page.organisations };
  }));

  router.post('/api/v1/organisations', handle('api-organisations', async (ctx, caller) => {
    accountsOf();
    const body = await jsonBody(ctx, deps);
    const name = field(body, 'name', isString, 'a string') ?? '';
    const org = await deps.management.addOrganisation(actorOf(caller, VIA, ctx), name, field(body, 'owner', isString, 'a user name'));
    ctx.status = 201;
    ctx.set('Location', `/api/v1/organisations/${name}`);
    ctx.body = org;
  }));

  router.get('/api/v1/organisations/:name', handle('api-organisation', async (ctx, caller) => {
    accountsOf();
    ctx.body = await deps.management.organisation(actorOf(caller, VIA, ctx), ctx.params.name!);
  }));

  const setMember = async (ctx: Context, caller: ApiCaller, role: Role | undefined) => {
    const { name, user } = ctx.params as { name: string; user: string };
    accountsOf();
    ctx.body = await deps.management.setMember(actorOf(caller, VIA, ctx), name, user, role);
  };
  router.put('/api/v1/organisations/:name/members/:user', handle('api-organisation-member', async (ctx, caller) => {
    const role = field(await jsonBody(ctx, deps), 'role', isString, 'read, write or admin');
    if (role === undefined) throw new ApiRefusal(400, 'INVALID', 'give the member\'s role: {"role": "read" | "write" | "admin"}');
    await setMember(ctx, caller, role as Role);
  }));
  router.delete('/api/v1/organisations/:name/members/:user', handle('api-organisation-member', (ctx, caller) => setMember(ctx, caller, undefined)));

  // ---- personal access tokens (the user, or an admin) -------------------------------------------

  router.get('/api/v1/users/:name/tokens', handle('api-user-tokens', async (ctx, caller) => {
    accountsOf();
    ctx.body = { tokens: await deps.management.tokens(actorOf(caller, VIA, ctx), ctx.params.name!) };
  }));

  router.post('/api/v1/users/:name/tokens', handle('api-user-tokens', async (ctx, caller) => {
    accountsOf();
    const body = await jsonBody(ctx, deps);
    const { token, secret } = await deps.management.createToken(actorOf(caller, VIA, ctx), ctx.params.name!, {
      description: field(body, 'description', isString, 'a string'),
      scopes: field(body, 'scopes', isStrings, 'a list of at most 100 scopes'),
      expiresIn: field(body, 'expiresIn', isString, 'a lifetime like 30d, or never'),
    });
    ctx.status = 201;
    // The only time the secret leaves the server.
    ctx.body = { ...token, secret };
  }));

  router.delete('/api/v1/users/:name/tokens/:id', handle('api-user-token', async (ctx, caller) => {
    const { name, id } = ctx.params as { name: string; id: string };
    accountsOf();
    await deps.management.revokeToken(actorOf(caller, VIA, ctx), name, id);
    ctx.body = { id, revoked: true };
  }));

  // ---- robots (the namespace's managers) --------------------------------------------------------

  router.get('/api/v1/namespaces/:namespace/robots', handle('api-robots', async (ctx, caller) => {
    accountsOf();
    ctx.body = { robots: await deps.management.robots(actorOf(caller, VIA, ctx), ctx.params.namespace!) };
  }));

  router.post('/api/v1/namespaces/:namespace/robots', handle('api-robots', async (ctx, caller) => {
    accountsOf();
    const body = await jsonBody(ctx, deps);
    const { robot, secret } = await deps.management.createRobot(actorOf(caller, VIA, ctx), ctx.params.namespace!, {
      name: field(body, 'name', isString, 'a string') ?? '',
      scopes: field(body, 'scopes', isStrings, 'a list of at most 100 scopes'),
      expiresIn: field(body, 'expiresIn', isString, 'a lifetime like 30d, or never'),
    });
    ctx.status = 201;
    ctx.body = { ...robot, secret };
  }));

  router.delete('/api/v1/namespaces/:namespace/robots/:name', handle('api-robot', async (ctx, caller) => {
    const { namespace, name } = ctx.params as { namespace: string; name: string };
    accountsOf();
    ctx.body = { name: await deps.management.deleteRobot(actorOf(caller, VIA, ctx), namespace, name), revoked: true };
  }));

  // ---- repositories (who may delete them, as the settings page) ---------------------------------

  router.patch('/api/v1/repositories/{*name}', handle('api-repository', async (ctx, caller) => {
    const name = ctx.params.name ?? '';
    const body = await jsonBody(ctx, deps);
    const visibility = field(body, 'visibility', isString, 'public or private');
    const description = field(body, 'description', isString, 'a string');
    if (!isValidName(name)) throw new ApiRefusal(400, 'NAME_INVALID', `${JSON.stringify(name.slice(0, 300))} is not a valid repository name`);
    if (!caller.open && !(await accountsOf().managesRepository(caller.principal, name))) {
      throw new ApiRefusal(404, 'NOT_FOUND', `no repository ${name} whose settings you manage`);
    }
    if (visibility !== undefined) await accountsOf().setVisibility(name, visibility as 'public' | 'private');
    if (description !== undefined) await deps.storage.repositories.update(name, { description });
    auditApi(deps, ctx, caller, 'repo settings', true, { repository: name, reason: `${Object.keys(body).filter((k) => k === 'visibility' || k === 'description').join(', ')}` });
    const settings = (await deps.storage.repositories.settings(name)) ?? {};
    ctx.body = { name, visibility: settings.visibility ?? null, description: settings.description ?? '' };
  }));

  // ---- lifecycle policies (a namespace's managers; quotas the admins') --------------------------

  router.get('/api/v1/policies', handle('api-policies', async (ctx, caller) => {
    ctx.body = { policies: await deps.management.listPolicies(actorOf(caller, VIA, ctx)) };
  }));

  router.get('/api/v1/policies/{*scope}', handle('api-policy', async (ctx, caller) => {
    ctx.body = await deps.management.policy(actorOf(caller, VIA, ctx), ctx.params.scope ?? '');
  }));

  router.put('/api/v1/policies/{*scope}', handle('api-policy', async (ctx, caller) => {
    const scope = ctx.params.scope ?? '';
    const policy = await deps.management.setPolicy(actorOf(caller, VIA, ctx), scope, await jsonBody(ctx, deps));
    ctx.body = { scope, policy };
  }));

  router.delete('/api/v1/policies/{*scope}', handle('api-policy', async (ctx, caller) => {
    const scope = ctx.params.scope ?? '';
    await deps.management.removePolicy(actorOf(caller, VIA, ctx), scope);
    ctx.body = { scope, removed: true };
  }));
}
