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

/** The page size `n` asked for (or the default), checked. */
function pageSize(ctx: Context, defaultSize?: number): number | undefined {
  const nParam = queryString(ctx, 'n');
  if (nParam === undefined || nParam === '') return defaultSize;
  if (!/^\d+$/.test(nParam) || Number(nParam) > MAX_PAGE) {
    throw new RegistryError('PAGINATION_NUMBER_INVALID', `n must be an integer from 0 to ${MAX_PAGE}`, { n: nParam.slice(0, 50) });
  }
  return Number(nParam);
}

/** The page of `after` (the items after `last`, in order; more than n of them if there is a next page). */
function pageOf(after: readonly string[], n: number | undefined): Page {
  if (n === undefined || after.length <= n) return { items: [...after] };
  const items = after.slice(0, n);
  return n === 0 ? { items } : { items, next: { last: items[items.length - 1]!, n } };
}

/** n / last pagination over a sorted list, as the spec describes it for tags and the catalog. */
function paginate(ctx: Context, sorted: string[], defaultSize?: number): Page {
  const n = pageSize(ctx, defaultSize);
  const last = queryString(ctx, 'last');
  return pageOf(last === undefined ? sorted : sorted.slice(firstAfter(sorted, last)), n);
}

/** The index of the first item of `sorted` after `last`. */
function firstAfter(sorted: readonly string[], last: string): number {
  let low = 0;
  let high = sorted.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if (sorted[mid]! > last) high = mid;
    else low = mid + 1;
  }
  return low;
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
        // With n, only that page (and one more, to know whether a next page exists) is listed.
        const n = pageSize(ctx);
        const tags = await manifests.tags(name, n === undefined ? undefined : { after: queryString(ctx, 'last'), limit: n + 1 });
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
        // The catalog shows only what the caller may pull: the page is filled from `last` on, and one
        // name more says whether a next page exists; what the caller may not see costs no storage read.
        const n = pageSize(ctx, DEFAULT_CATALOG_PAGE)!;
        const names = await manifests.catalog();
        const last = queryString(ctx, 'last');
        const after = await deps.gate.catalogPage(ctx, names, last === undefined ? 0 : firstAfter(names, last), n + 1);
        const page = pageOf(after, n);
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
