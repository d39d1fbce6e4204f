// Listings: GET /v2/<name>/tags/list, GET /v2/_catalog, GET /v2/<name>/referrers/<digest>.
import type { Context } from 'koa';
import { RegistryError } from '../errors.ts';
import { MediaType, parseDigest } from '../../storage/index.ts';
import { queryString, replyJson, type DistributionDeps, type Handler } from './http.ts';

const MAX_PAGE = 10000;
const DEFAULT_CATALOG_PAGE = 1000;

interface Page {
  items: string[];
  next?: { last: string; n: number };
}

/** n / last pagination over a sorted list, as the spec describes it for tags and the catalog. */
function paginate(ctx: Context, sorted: string[], defaultSize?: number): Page {
  const nParam = queryString(ctx, 'n');
  let n = defaultSize;
  if (nParam !== undefined && nParam !== '') {
    if (!/^\d+$/.test(nParam) || Number(nParam) > MAX_PAGE) {
      throw new RegistryError('PAGINATION_NUMBER_INVALID', `n must be an integer from 0 to ${MAX_PAGE}`, { n: nParam.slice(0, 50) });
    }
    n = Number(nParam);
  }
  const last = queryString(ctx, 'last');
  const after = last === undefined ? sorted : sorted.filter((item) => item > last);
  if (n === undefined || after.length <= n) return { items: after };
  const items = after.slice(0, n);
  return n === 0 ? { items } : { items, next: { last: items[items.length - 1]!, n } };
}

function linkHeader(path: string, next: Page['next']): Record<string, string> {
  if (!next) return {};
  const query = new URLSearchParams({ last: next.last, n: String(next.n) });
  return { Link: `<${path}?${query.toString()}>; rel="next"` };
}

export function listingHandlers(deps: DistributionDeps): {
  tags: Record<string, Handler>;
  catalog: Record<string, Handler>;
  referrers: Record<string, Handler>;
} {
  const { manifests } = deps.storage;
  return {
    tags: {
      async GET(ctx, { name }) {
        const tags = await manifests.tags(name);
        // The spec wants 200 for any repository that is found, with a list that MAY be empty: only one
        // that holds nothing at all (no manifest, no blob) is unknown.
        if (tags.length === 0 && !(await manifests.exists(name)) && !(await deps.storage.blobs.holdsAny(name))) {
          throw new RegistryError('NAME_UNKNOWN', undefined, { name });
        }
        const page = paginate(ctx, tags);
        replyJson(ctx, 200, { name, tags: page.items }, 'application/json', linkHeader(`/v2/${name}/tags/list`, page.next));
      },
    },
    catalog: {
      async GET(ctx) {
        // The catalog shows only what the caller may pull.
        let names = await manifests.catalog();
        if (deps.gate.enabled) names = await deps.gate.pullable(ctx, names);
        const page = paginate(ctx, names, DEFAULT_CATALOG_PAGE);
        replyJson(ctx, 200, { repositories: page.items }, 'application/json', linkHeader('/v2/_catalog', page.next));
      },
    },
    referrers: {
      async GET(ctx, { name, ref }) {
        const subject = parseDigest(ref);
        const artifactType = queryString(ctx, 'artifactType');
        const found = await manifests.referrers(name, subject, artifactType || undefined);
        const headers: Record<string, string> = artifactType ? { 'OCI-Filters-Applied': 'artifactType' } : {};
        replyJson(ctx, 200, { schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: found }, MediaType.OciIndex, headers);
      },
    },
  };
}
