// Walks over what storage holds: every repository, every stored blob. For lifecycle jobs (GC, retention,
// quotas), which must see repositories that have blobs but no manifest, so the catalog index is not enough.
import type { StorageDriver } from './driver.ts';
import { baseName } from './layout.ts';
import { tryParseDigest, type Digest } from './reference.ts';

/** The names of the repositories under a storage folder (default: all), found by their `_` folders. */
export async function repositoryNames(driver: StorageDriver, under = '/repositories'): Promise<string[]> {
  const names: string[] = [];
  const visit = async (dir: string, name: string): Promise<void> => {
    const children = await driver.list(dir);
    // Name components never start with "_": a child that does is one of this repository's own folders.
    if (name && children.some((child) => baseName(child).startsWith('_'))) names.push(name);
    for (const child of children) {
      const segment = baseName(child);
      if (!segment.startsWith('_')) await visit(child, name ? `${name}/${segment}` : segment);
    }
  };
  const prefix = under === '/repositories' ? '' : under.slice('/repositories/'.length);
  await visit(under, prefix);
  return names.sort();
}

/** Every blob stored under /blobs/<alg>/<xx>/<hex>. */
export async function storedBlobs(driver: StorageDriver): Promise<Digest[]> {
  const digests: Digest[] = [];
  for (const algorithm of await driver.list('/blobs')) {
    for (const shard of await driver.list(algorithm)) {
      for (const dir of await driver.list(shard)) {
        const digest = tryParseDigest(`${baseName(algorithm)}:${baseName(dir)}`);
        if (digest) digests.push(digest);
      }
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
