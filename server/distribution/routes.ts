// The /v2 API: one matcher for multi-segment repository names (matched from the right, never decoded),
// then one handler per resource and method.
import type { Context, Next } from 'koa';
import { RegistryError } from '../errors.ts';
import type { AccessNeed } from '../auth-gate.ts';
import { parseName } from '../../storage/index.ts';
import { blobHandlers } from './blobs.ts';
import { queryString, replyJson, type DistributionDeps, type Handler } from './http.ts';
import { listingHandlers } from './listing.ts';
import { manifestHandlers } from './manifests.ts';
import { mirrorHandlers } from './mirror.ts';
import { uploadHandlers } from './uploads.ts';

interface Route {
  /** A label for logs and metrics. */
  id: string;
  pattern: RegExp;
  handlers: Record<string, Handler>;
}

const WRITE_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
/** The routes a mirror reaches without its prefix (docker's registry-mirrors, containerd's ?ns=). */
const PULLED_THROUGH = new Set(['manifest', 'blob']);

/**
 * What a request needs its token to grant: reads pull, writes push, and every DELETE delete, cancelling
 * an upload included (as Distribution asks), so that no right to remove anything hides inside push.
 */
function accessNeed(routeId: string, method: string, name: string): AccessNeed {
  if (routeId === 'base') return { kind: 'base' };
  if (routeId === 'catalog') return { kind: 'catalog' };
  if (!WRITE_METHODS.has(method)) return { kind: 'repository', name, action: 'pull' };
  return { kind: 'repository', name, action: method === 'DELETE' ? 'delete' : 'push' };
}

export function distributionRoutes(deps: DistributionDeps): (ctx: Context, next: Next) => Promise<void> {
  const uploads = uploadHandlers(deps);
  const mirrored = deps.mirrors && mirrorHandlers(deps, deps.mirrors);
  const listings = listingHandlers(deps);
  const base: Record<string, Handler> = {
    async GET(ctx) {
      replyJson(ctx, 200, {});
    },
  };
  base.HEAD = base.GET!;

  // Order matters: the upload routes come before the blob route, which would also match them.
  const routes: Route[] = [
    { id: 'base', pattern: /^\/v2\/?$/, handlers: base },
    { id: 'catalog', pattern: /^\/v2\/_catalog$/, handlers: listings.catalog },
    { id: 'tags', pattern: /^\/v2\/(.+)\/tags\/list$/, handlers: listings.tags },
    { id: 'manifest', pattern: /^\/v2\/(.+)\/manifests\/([^/]+)$/, handlers: manifestHandlers(deps) },
    { id: 'uploads', pattern: /^\/v2\/(.+)\/blobs\/uploads\/?$/, handlers: uploads.collection },
    { id: 'upload', pattern: /^\/v2\/(.+)\/blobs\/uploads\/([^/]+)$/, handlers: uploads.session },
    { id: 'blob', pattern: /^\/v2\/(.+)\/blobs\/([^/]+)$/, handlers: blobHandlers(deps) },
    { id: 'referrers', pattern: /^\/v2\/(.+)\/referrers\/([^/]+)$/, handlers: listings.referrers },
  ];

  return async function distribution(ctx: Context): Promise<void> {
    ctx.set('Docker-Distribution-API-Version', 'registry/2.0');
    const path = ctx.path;
    for (const route of routes) {
      const match = route.pattern.exec(path);
      if (!match) continue;
      ctx.state.route = route.id;
      const handler = route.handlers[ctx.method];
      if (!handler) {
        const allowed = Object.keys(route.handlers).join(', ');
        throw new RegistryError('UNSUPPORTED', `${ctx.method} is not supported here`, { allowed }, {
          headers: { Allow: allowed },
        });
      }
      if (WRITE_METHODS.has(ctx.method)) {
        if (deps.config.readOnly) throw new RegistryError('DENIED', 'the registry is read-only');
        if (ctx.method === 'DELETE' && route.id !== 'upload' && !deps.config.deleteEnabled) {
          throw new RegistryError('UNSUPPORTED', 'deletion is disabled on this registry');
        }
      }
      let name = match[1] === undefined ? '' : parseName(match[1]);
      let serve = handler;
      // A mirror's repository: read-only, its manifests and blobs pulled through (mirror.ts); the name
      // checked and served is the one in storage, under the mirror's prefix.
      const mirror = name && mirrored ? await deps.mirrors!.route(name, PULLED_THROUGH.has(route.id) && !WRITE_METHODS.has(ctx.method), queryString(ctx, 'ns')) : undefined;
      if (mirror) {
        if (WRITE_METHODS.has(ctx.method)) throw new RegistryError('DENIED', `${mirror.mirror.prefix}/ is a mirror of ${mirror.mirror.upstream.origin}: its repositories are read-only`);
        name = mirror.name;
        serve = mirrored![route.id]?.[ctx.method] ?? handler;
      }
      await deps.gate.check(ctx, accessNeed(route.id, ctx.method, name));
      await serve(ctx, { name, ref: match[2] ?? '' });
      return;
    }
    ctx.state.route = 'unknown';
    throw new RegistryError('UNSUPPORTED', 'no such endpoint', { path: path.slice(0, 300) }, { status: 404 });
  };
}
