// The catalog's questions, answered once for the pages and the JSON API alike: a search with filters,
// sort and pages; one repository's facts with the Windows verdicts — always through the viewer's visibility.
import { windowsHostsFor, windowsName } from '../platform/index.ts';
import { isOfficial, isValidName, summaryOf, type RepositoryEntry, type RepositorySummary, type SearchSort, type Storage, type TagSort, type PlatformFacts, type TagPage } from '../storage/index.ts';
import { logoUrl } from './images.ts';
import type { Visibility } from './session.ts';

export const PAGE_SIZE = 20;
export const MAX_PAGE_SIZE = 100;

export interface SearchParams {
  q: string;
  os?: 'linux' | 'windows';
  architecture?: string;
  official: boolean;
  sort: SearchSort;
  page: number;
  n: number;
}

export interface SearchResult {
  total: number;
  page: number;
  n: number;
  pages: number;
  results: RepositorySummary[];
}

function one(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/** Query parameters → search parameters; anything unknown falls back to the default rather than failing. */
export function searchParams(query: Record<string, string | string[] | undefined>): SearchParams {
  const os = one(query.os);
  const sort = one(query.sort);
  const architecture = one(query.arch) ?? one(query.architecture);
  const page = Number(one(query.page));
  const n = Number(one(query.n));
  return {
    q: (one(query.q) ?? '').slice(0, 200),
    os: os === 'linux' || os === 'windows' ? os : undefined,
    architecture: architecture && /^[a-z0-9]+(?:\/[a-z0-9]+)?$/.test(architecture) ? architecture : undefined,
    official: ['1', 'true', 'on'].includes(one(query.official) ?? ''),
    sort: sort === 'pushed' || sort === 'pulls' ? sort : 'name',
    page: Number.isSafeInteger(page) && page >= 1 ? page : 1,
    n: Number.isSafeInteger(n) && n >= 1 ? Math.min(n, MAX_PAGE_SIZE) : PAGE_SIZE,
  };
}

/** How many pages of `n` hold `total` items: at least one, empty when there is nothing. */
export function pageCount(total: number, n: number): number {
  return Math.max(1, Math.ceil(total / n));
}

export interface TagParams {
  page: number;
  n: number;
  /** Only tags whose name starts with this. */
  prefix?: string;
  sort: TagSort;
}

export const TAG_PAGE_SIZE = 25;

/**
 * A repository's tags are paged as Docker Hub pages them (`?page=`, `?n=`, `?tag=` a name prefix), newest
 * first or by name (`?sort=pushed|name`).
 */
export function tagParams(query: Record<string, string | string[] | undefined>): TagParams {
  const page = Number(one(query.page));
  const n = Number(one(query.n));
  const prefix = one(query.tag);
  return {
    sort: one(query.sort) === 'name' ? 'name' : 'pushed',
    page: Number.isSafeInteger(page) && page >= 1 ? page : 1,
    n: Number.isSafeInteger(n) && n >= 1 ? Math.min(n, MAX_PAGE_SIZE) : TAG_PAGE_SIZE,
    // Kept as given (a tag is at most 128 characters): a filter with `*`, `%` or `[` matches the tags that
    // start with those very characters, which is none, and never falls back to every tag.
    prefix: prefix ? prefix.slice(0, 129) : undefined,
  };
}

const TAG_PREFIX_RE = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;

export async function tagPage(storage: Storage, name: string, params: TagParams): Promise<TagPage> {
  if (params.prefix !== undefined && !TAG_PREFIX_RE.test(params.prefix)) return { total: 0, tags: [] };
  return storage.search.tagPage(name, { offset: (params.page - 1) * params.n, n: params.n, prefix: params.prefix, sort: params.sort });
}

export async function search(storage: Storage, visibility: Visibility, params: SearchParams): Promise<SearchResult> {
  const found = await storage.search.search({ q: params.q, os: params.os, architecture: params.architecture, official: params.official, sort: params.sort });
  const visible = await visibility.filter(found);
  const start = (params.page - 1) * params.n;
  const results = await visibility.confirm(visible.slice(start, start + params.n));
  return { total: visible.length, page: params.page, n: params.n, pages: pageCount(visible.length, params.n), results };
}

/** A repository the viewer may pull, or undefined (missing and private look the same). */
export async function repository(storage: Storage, visibility: Visibility, name: string): Promise<RepositoryEntry | undefined> {
  if (!isValidName(name) || !(await visibility.may(name, 'pull'))) return undefined;
  return storage.search.entry(name);
}

export interface WindowsVerdicts {
  osVersion: string;
  name?: string;
  /** Host names that run the image with process isolation, and those that need Hyper-V isolation. */
  process: string[];
  hyperv: string[];
}

/** For each distinct Windows os.version among these platforms: which well-known hosts run it, and how. */
export function windowsVerdicts(platforms: Pick<PlatformFacts, 'os' | 'osVersion'>[]): WindowsVerdicts[] {
  const versions = [...new Set(platforms.filter((p) => p.os === 'windows' && p.osVersion).map((p) => p.osVersion!))];
  return versions.flatMap((osVersion) => {
    try {
      const hosts = windowsHostsFor(osVersion);
      return [{
        osVersion,
        name: windowsName(osVersion),
        process: hosts.filter((h) => h.verdict.isolation === 'process').map((h) => h.name),
        hyperv: hosts.filter((h) => h.verdict.isolation === 'hyperv').map((h) => h.name),
      }];
    } catch {
      return [];
    }
  });
}

/** A repository as the API shows it; `mirroredFrom` says what a mirror's repository is a copy of. */
export function summary(entry: RepositorySummary, mirroredFrom?: (name: string) => string | undefined) {
  return {
    name: entry.name,
    mirrorOf: mirroredFrom?.(entry.name) ?? null,
    description: entry.description,
    official: isOfficial(entry.name),
    visibility: entry.visibility ?? 'public',
    os: entry.os,
    architectures: entry.architectures,
    lastPushed: entry.lastPushed ?? null,
    pulls: entry.pulls,
    tags: entry.tagCount,
    newestTags: entry.newest,
    logo: entry.logo ? { png: logoUrl(entry.name, entry.logo, 256, 'png'), webp: logoUrl(entry.name, entry.logo, 256, 'webp') } : null,
  };
}

/** A repository with one page of its tags (`tagPage`: which page, how many match the filter). */
export function details(entry: RepositoryEntry, page: TagPage, params: TagParams, mirroredFrom?: (name: string) => string | undefined) {
  return {
    ...summary(summaryOf(entry), mirroredFrom),
    tagPage: { page: params.page, n: params.n, tag: params.prefix ?? null, sort: params.sort, total: page.total, pages: pageCount(page.total, params.n) },
    tags: page.tags.map((t) => ({
      ...t,
      platforms: t.platforms.map((p) => ({ ...p, windowsName: p.os === 'windows' && p.osVersion ? (safeName(p.osVersion) ?? null) : undefined })),
      windows: windowsVerdicts(t.platforms),
    })),
  };
}

function safeName(osVersion: string): string | undefined {
  try {
    return windowsName(osVersion);
  } catch {
    return undefined;
  }
}
export { safeName as windowsNameOf };
