// The admin API's replication rules: GET/POST /api/v1/replication/rules, GET/DELETE
// /api/v1/replication/rules/<name>, POST /api/v1/replication/rules/<name>/run (202: the run goes on after
// the answer; GET the rule for its end). Registry admins only: a rule reads and writes any repository.
// The remote password goes in with POST and never comes back out.
import type Router from '@koa/router';
import type { Context } from 'koa';
import { ReplicationError } from '../replication/index.ts';
import { admitAdmin, apiError, apiRoute, type ApiCaller } from './admin.ts';
import type { WebDeps } from './index.ts';

/** A rule is a few names and filters: small. */
const BODY_LIMIT = 32 * 1024;

const STATUS: Record<ReplicationError['code'], number> = { INVALID: 400, NOT_FOUND: 404, EXISTS: 409, RUNNING: 409, TOO_MANY: 409 };

export function replicationRoutes(router: Router, deps: WebDeps): void {
  const route = apiRoute(deps, (ctx, err) => {
    if (!(err instanceof ReplicationError)) return false;
    apiError(ctx, STATUS[err.code], err.code, err.message);
    return true;
  });
  /** An admin-only route: anyone else is refused before anything is read. */
  const admins = (name: string, fn: (ctx: Context, caller: ApiCaller) => Promise<void>) =>
    route(name, async (ctx, caller) => {
      if (admitAdmin(deps, ctx, caller, 'only an admin may manage replication')) await fn(ctx, caller);
    });

  router.get('/api/v1/replication/rules', admins('api-replication', async (ctx) => {
    ctx.body = { rules: await deps.replication.list() };
  }));

  router.post('/api/v1/replication/rules', admins('api-replication', async (ctx, caller) => {
    const text = (await deps.readBody(ctx, BODY_LIMIT, 'replication rule')).toString('utf8');
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      throw new ReplicationError('INVALID', 'the body must be a JSON object (see the OpenAPI document\'s ReplicationRule)');
    }
    const createdBy = caller.open ? undefined : caller.user ?? (caller.principal.kind === 'anonymous' ? undefined : caller.principal.name);
    const rule = await deps.replication.add(body, createdBy);
    ctx.status = 201;
    ctx.set('Location', `/api/v1/replication/rules/${rule.name}`);
    ctx.body = rule;
  }));

  router.get('/api/v1/replication/rules/:name', admins('api-replication-rule', async (ctx) => {
    ctx.body = await deps.replication.show(ctx.params.name!);
  }));

  router.delete('/api/v1/replication/rules/:name', admins('api-replication-rule', async (ctx) => {
    ctx.body = await deps.replication.remove(ctx.params.name!);
  }));

  router.post('/api/v1/replication/rules/:name/run', admins('api-replication-run', async (ctx) => {
    const { run, done } = await deps.replication.begin(ctx.params.name!);
    done.catch(() => {}); // the run records its own end
    ctx.status = 202;
    ctx.set('Location', `/api/v1/replication/rules/${ctx.params.name}`);
    ctx.body = run;
  }));
}
