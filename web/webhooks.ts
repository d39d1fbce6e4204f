// The admin API's webhook endpoints: GET/POST /api/v1/webhooks, GET/DELETE /api/v1/webhooks/<id>,
// GET /api/v1/webhooks/<id>/deliveries. A global endpoint (no namespace) is the registry admins'; a
// namespace's is its admins' too (the user of that name, an organisation's admins). Callers as for the
// rest of the admin API (web/admin.ts): a bearer token or a session, whose writes carry X-CSRF-Token.
import type Router from '@koa/router';
import { WebhookError, type EndpointView } from '../events/index.ts';
import { apiError, apiRoute, auditApi, managesNamespace, type ApiCaller } from './admin.ts';
import type { WebDeps } from './index.ts';

/** An endpoint's request body is a URL, a namespace and a few event names: small. */
const BODY_LIMIT = 16 * 1024;

const STATUS: Record<WebhookError['code'], number> = { INVALID: 400, DESTINATION_REFUSED: 400, NOT_FOUND: 404, TOO_MANY: 409 };

export function webhookRoutes(router: Router, deps: WebDeps): void {
  const manages = (caller: ApiCaller, namespace: string | undefined) => managesNamespace(deps, caller, namespace);

  /** Runs a route for an admitted caller; answers a webhook error itself. */
  const handle = apiRoute(deps, (ctx, err) => {
    if (!(err instanceof WebhookError)) return false;
    apiError(ctx, STATUS[err.code], err.code, err.message);
    return true;
  });

  /** The endpoint, if the caller manages it; a 404 either way otherwise (an endpoint's existence is not told). */
  const endpointFor = async (caller: ApiCaller, id: string): Promise<EndpointView> => {
    const endpoint = await deps.webhooks.find(id);
    if (!(await manages(caller, endpoint.namespace))) throw new WebhookError('NOT_FOUND', `no webhook endpoint ${JSON.stringify(id.slice(0, 40))}`);
    return endpoint;
  };

  router.get('/api/v1/webhooks', handle('api-webhooks', async (ctx, caller) => {
    const all = await deps.webhooks.list();
    const managed = await Promise.all(all.map((e) => manages(caller, e.namespace)));
    ctx.body = { endpoints: all.filter((_, i) => managed[i]) };
  }));

  router.post('/api/v1/webhooks', handle('api-webhooks', async (ctx, caller) => {
    const body = parseJson((await deps.readBody(ctx, BODY_LIMIT, 'webhook')).toString('utf8'));
    const namespace = body.namespace === undefined || body.namespace === null ? undefined : String(body.namespace);
    if (!(await manages(caller, namespace))) {
      auditApi(deps, ctx, caller, `webhook add ${namespace ?? '(global)'}`, false, { reason: 'not a manager of the namespace' });
      apiError(ctx, 403, 'DENIED', namespace === undefined ? 'only an admin may add a global endpoint' : `only an admin of ${namespace} may add its endpoints`);
      return;
    }
    const createdBy = caller.open ? undefined : caller.user ?? (caller.principal.kind === 'anonymous' ? undefined : caller.principal.name);
    const added = await deps.webhooks.add({ namespace, url: body.url as string, events: body.events as string[] | undefined, createdBy });
    auditApi(deps, ctx, caller, `webhook add ${added.endpoint.id} ${namespace ?? '(global)'}`, true);
    ctx.status = 201;
    ctx.set('Location', `/api/v1/webhooks/${added.endpoint.id}`);
    // The only time the secret leaves the server.
    ctx.body = { ...added.endpoint, secret: added.secret };
  }));

  router.get('/api/v1/webhooks/:id', handle('api-webhook', async (ctx, caller) => {
    const endpoint = await endpointFor(caller, ctx.params.id!);
    const { waiting, droppedFull } = await deps.webhooks.deliveries(endpoint.id);
    ctx.body = { ...endpoint, waiting, droppedFull };
  }));

  router.delete('/api/v1/webhooks/:id', handle('api-webhook', async (ctx, caller) => {
    await endpointFor(caller, ctx.params.id!);
    ctx.body = await deps.webhooks.remove(ctx.params.id!);
    auditApi(deps, ctx, caller, `webhook rm ${ctx.params.id!}`, true);
  }));

  router.get('/api/v1/webhooks/:id/deliveries', handle('api-webhook-deliveries', async (ctx, caller) => {
    await endpointFor(caller, ctx.params.id!);
    ctx.body = await deps.webhooks.deliveries(ctx.params.id!);
  }));
}

function parseJson(text: string): Record<string, unknown> {
  try {
    const value = JSON.parse(text) as unknown;
    if (value && typeof value === 'object' && !Array.isArray(value)) return value as Record<string, unknown>;
  } catch {
    // answered below
  }
  throw new WebhookError('INVALID', 'the body must be a JSON object: {"url": …, "events": […], "namespace": …}');
}
