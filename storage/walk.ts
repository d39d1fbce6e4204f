// Walks over what storage holds: every repository, every stored blob. For lifecycle jobs (GC, retention,
// quota usage records), which must see repositories that have blobs but no manifest, so the catalog index is not enough.
import type { StorageDriver } from './driver/index.ts';
import { baseName, decodeName, layout } from './layout.ts';
import { tryParseDigest, type Digest } from './reference.ts';

/** Storage round trips a walk keeps in flight at once (each costs a network round trip on S3). */
export const WALK_CONCURRENCY = 16;

/** Maps items with at most `limit` calls in flight; results in the items' order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/** The names of the repositories under a storage folder (default: all), found by their `_` folders. */
export async function repositoryNames(driver: StorageDriver, under = layout.repositoriesDir): Promise<string[]> {
  const names: string[] = [];
  const visit = async (dir: string, name: string): Promise<void> => {
    const children = await driver.list(dir);
    // Name components never start with "_": a child that does is one of this repository's own folders.
    if (name && children.some((child) => baseName(child).startsWith('_'))) names.push(name);
    const nested = children.filter((child) => !baseName(child).startsWith('_'));
    await mapLimit(nested, WALK_CONCURRENCY, (child) => visit(child, name ? `${name}/${baseName(child)}` : baseName(child)));
  };
  const prefix = under === layout.repositoriesDir ? '' : under.slice(`${layout.repositoriesDir}/`.length);
  await visit(under, prefix);
  return names.sort();
}

/** Every blob stored under /blobs/<alg>/<xx>/<hex>. */
export async function storedBlobs(driver: StorageDriver): Promise<Digest[]> {
  const digests: Digest[] = [];
  for (const algorithm of await driver.list(layout.blobsDir)) {
    const shards = await mapLimit(await driver.list(algorithm), WALK_CONCURRENCY, (shard) => driver.list(shard));
    for (const dir of shards.flat()) {
      const digest = tryParseDigest(`${baseName(algorithm)}:${baseName(dir)}`);
      if (digest) digests.push(digest);
    }
  }
  return digests;
}

/** The digests named by the folders under a path (layer links, revisions: `<alg>/<hex>`). */
export async function digestFolders(driver: StorageDriver, dir: string): Promise<Digest[]> {
  const digests: Digest[] = [];
  for (const algorithm of await driver.list(dir)) {
    for (const entry of await driver.list(algorithm)) {
      const digest = tryParseDigest(`${baseName(algorithm)}:${baseName(entry)}`);
      if (digest) digests.push(digest);
    }
  }
  return digests;
}

/** The repositories that hold a blob, as recorded when they linked it. */
export async function blobHolders(driver: StorageDriver, digest: Digest): Promise<string[]> {
  return (await driver.list(layout.blobHolders(digest))).map((p) => decodeName(baseName(p)));
}

/** Children a sweep looks at per run: a run's cost does not grow with what the folder holds. */
export const SWEEP_PAGE_SIZE = 1000;

/**
 * Removes what `condemned` picks among a folder's children, a page at a time: each run reads at most
 * `pageSize` children after those the last run read, and starts again at the front after the end.
 */
export class FolderSweep {
  private after: string | undefined;

  constructor(
    private readonly driver: StorageDriver,
    readonly dir: string,
    private readonly pageSize = SWEEP_PAGE_SIZE,
  ) {}

  /** How many children this run removed. */
  async run(condemned: (path: string) => Promise<boolean>): Promise<number> {
    const page = await this.driver.list(this.dir, { after: this.after, limit: this.pageSize });
    this.after = page.length < this.pageSize ? undefined : baseName(page[page.length - 1]!);
    const removed = await mapLimit(page, WALK_CONCURRENCY, async (path) => (await condemned(path)) && (await this.driver.delete(path)));
    return removed.filter(Boolean).length;
  }
}
