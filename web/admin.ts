// The admin API's lifecycle endpoints: GET /api/v1/admin/gc (the last collection and the next one) and
// POST /api/v1/admin/gc (start one now). Admins only: a bearer token of an admin user with no scope limit
// (from /token), or an admin's browser session (a POST from it carries the session's CSRF token in
// X-CSRF-Token). In open mode, as every other route, anyone.
import type Router from '@koa/router';
import type { Context } from 'koa';
import type { WebDeps } from './index.ts';
import type { Actor, Principal } from '../auth/index.ts';
import { csrfMatches } from './session.ts';

export interface GcSchedule {
  intervalSeconds: number;
  graceSeconds: number;
  deleteUntagged: boolean;
}

export function apiError(ctx: Context, status: number, code: string, message: string): void {
  ctx.status = status;
  ctx.body = { errors: [{ code, message, detail: null }] };
}

/** Who calls the admin API: anyone in open mode, else a signed-in principal with an unlimited token or a session. */
export type ApiCaller = { open: true } | { open: false; principal: Principal; user?: string };

/**
 * The caller of an admin API request, or undefined once the refusal is answered: nobody signed in (401),
 * a token limited to some repositories, or a browser write without the session's CSRF token (403).
 */
export async function apiCaller(ctx: Context, deps: WebDeps): Promise<ApiCaller | undefined> {
  if (!deps.auth) return { open: true };
  const viewer = await deps.sessions.viewer(ctx);
  const p = viewer.principal;
  if (p.kind === 'anonymous') {
    ctx.set('WWW-Authenticate', 'Bearer realm="/token",service="berth"');
    apiError(ctx, 401, 'UNAUTHORIZED', 'sign in: a bearer token from /token, or a browser session');
    return undefined;
  }
  const refuse = (message: string) => {
    auditApi(deps, ctx, p.name, `${ctx.method} ${ctx.path.slice(0, 300)}`, false, { reason: message });
    apiError(ctx, 403, 'DENIED', message);
    return undefined;
  };
  if (viewer.limit) return refuse('a token limited to some repositories may not use the admin API');
  if (ctx.method !== 'GET' && viewer.user && !csrfMatches(viewer, ctx.get('X-CSRF-Token') || undefined)) {
    return refuse('a request from a browser session carries its CSRF token in X-CSRF-Token');
  }
  return { open: false, principal: p, user: viewer.user };
}

/** Whether the caller is a registry admin (anyone in open mode). */
export function isAdmin(caller: ApiCaller): boolean {
  return caller.open || (caller.principal.kind === 'user' && caller.principal.admin === true);
}

/** Answers an error a service threw in the API's shape; false when it is not one the caller caused. */
export type ApiErrorAnswer = (ctx: Context, err: unknown) => boolean;

/**
 * An admin API route: no caching, the caller admitted (apiCaller) before `fn` runs, and the errors
 * `answer` knows answered in the API's shape; anything else is the server's fault and goes on up.
 */
export function apiRoute(deps: WebDeps, answer: ApiErrorAnswer) {
  return (route: string, fn: (ctx: Context, caller: ApiCaller) => Promise<void>) => async (ctx: Context) => {
    ctx.state.route = route;
    ctx.set('Cache-Control', 'no-store');
    const caller = await apiCaller(ctx, deps);
    if (!caller) return;
    try {
      await fn(ctx, caller);
    } catch (err) {
      if (!answer(ctx, err)) throw err;
    }
  };
}

/** An admin API decision in the audit log: who asked (by the caller's name, or `anonymous`), what, and the answer. */
export function auditApi(deps: WebDeps, ctx: Context, who: ApiCaller | string, action: string, allowed: boolean, fields: { repository?: string; granted?: string[]; reason?: string } = {}): void {
  const name = typeof who === 'string' ? who : who.open ? 'anonymous' : who.principal.kind === 'anonymous' ? 'anonymous' : who.principal.name;
  deps.auth?.audit.record({ who: name, action, allowed, ...fields, reason: ['admin API', fields.reason].filter(Boolean).join('; '), address: ctx.ip });
}

/** The caller as the service layer knows it: open mode's anyone is the registry's operator. */
export function actorOf(caller: ApiCaller, via: string, ctx?: Context): Actor {
  return caller.open ? { kind: 'operator', name: 'anonymous', via } : { kind: 'principal', principal: caller.principal, via, address: ctx?.ip };
}

/** Whether the caller manages the namespace: the service's rule (AccountManagement.managesNamespace). */
export function managesNamespace(deps: WebDeps, caller: ApiCaller, namespace: string | undefined): Promise<boolean> {
  return deps.management.managesNamespace(actorOf(caller, 'admin API'), namespace);
}

/** Whether the caller is a registry admin; anyone else is refused (403). A write is audited either way. */
export function admitAdmin(deps: WebDeps, ctx: Context, caller: ApiCaller, refusal = 'only an admin may do this'): boolean {
  const admin = isAdmin(caller);
  if (ctx.method !== 'GET') auditApi(deps, ctx, caller, `${ctx.method} ${ctx.path}`, admin, admin ? {} : { reason: 'not an admin' });
  if (!admin) apiError(ctx, 403, 'DENIED', refusal);
  return admin;
}

export function adminRoutes(router: Router, deps: WebDeps, schedule: GcSchedule): void {
  /** Why the last collection started here failed, until one succeeds. */
  let lastError: string | undefined;

  /** Whether the request may use the admin API; answers the refusal itself when not. */
  const admitted = async (ctx: Context): Promise<boolean> => {
    const caller = await apiCaller(ctx, deps);
    return caller !== undefined && admitAdmin(deps, ctx, caller);
  };

  const status = async () => {
    const last = await deps.storage.jobs.last('garbage-collection');
    const next =
      schedule.intervalSeconds <= 0 ? null : new Date((last ? Date.parse(last.finishedAt) : Date.now()) + schedule.intervalSeconds * 1000).toISOString();
    return {
      running: deps.storage.jobs.isRunning('garbage-collection'),
      last: last ?? null,
      ...(lastError ? { lastError } : {}),
      next,
      intervalSeconds: schedule.intervalSeconds,
      graceSeconds: schedule.graceSeconds,
      deleteUntagged: schedule.deleteUntagged,
    };
  };

  router.get('/api/v1/admin/gc', async (ctx) => {
    ctx.state.route = 'api-admin-gc';
    if (!(await admitted(ctx))) return;
    ctx.set('Cache-Control', 'no-store');
    ctx.body = await status();
  });

  router.post('/api/v1/admin/gc', async (ctx) => {
    ctx.state.route = 'api-admin-gc';
    if (!(await admitted(ctx))) return;
    if (deps.storage.jobs.isRunning('garbage-collection')) {
      apiError(ctx, 409, 'RUNNING', 'a garbage collection is already running in this server; GET this URL for its result');
      return;
    }
    // A collection can take minutes: it runs on after the answer, and GET shows its result.
    const options = { graceSeconds: schedule.graceSeconds, deleteUntagged: schedule.deleteUntagged };
    void deps.storage.jobs.collectGarbage(options).then(
      () => (lastError = undefined),
      (err: Error) => (lastError = err.message),
    );
    ctx.status = 202;
    ctx.set('Location', '/api/v1/admin/gc');
    ctx.body = { started: true, ...(await status()) };
  });
}
