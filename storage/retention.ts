// Retention: per repository (or its namespace), the tags to keep: the last N pushed, those pushed in
// the last D days, those matching a pattern; immutable tags are always kept. Every other tag is deleted
// (its manifest stays until a garbage collection with --delete-untagged).
import type { StorageDriver } from './driver/index.ts';
import { layout } from './layout.ts';
import { readLink, statLink } from './links.ts';
import type { ManifestStore } from './manifests.ts';
import { matchesTagPattern, type PolicyStore, type RetentionRule } from './policies.ts';
import { repositoryNames } from './walk.ts';

export interface RetentionResult {
  repository: string;
  kept: string[];
  deleted: string[];
}

export interface RetentionOptions {
  dryRun?: boolean;
  /** The time "the last D days" ends at (default: now). */
  now?: Date;
}

/** Which tags a rule keeps, given when each was last pushed. */
export function tagsToKeep(tags: Array<{ tag: string; pushedAt: number }>, rule: RetentionRule, now: number, immutable: string[]): Set<string> {
  const keep = new Set<string>();
  const newestFirst = [...tags].sort((a, b) => b.pushedAt - a.pushedAt || a.tag.localeCompare(b.tag));
  newestFirst.slice(0, rule.keepLast ?? 0).forEach((t) => keep.add(t.tag));
  for (const { tag, pushedAt } of tags) {
    if (rule.keepDays !== undefined && pushedAt >= now - rule.keepDays * 86_400_000) keep.add(tag);
    if ([...(rule.keepTags ?? []), ...immutable].some((pattern) => matchesTagPattern(tag, pattern))) keep.add(tag);
  }
  return keep;
}

export async function applyRetention(
  driver: StorageDriver,
  manifests: ManifestStore,
  policies: PolicyStore,
  options: RetentionOptions = {},
): Promise<RetentionResult[]> {
  const now = options.now?.getTime() ?? Date.now();
  const results: RetentionResult[] = [];
  for (const repository of await repositoryNames(driver)) {
    const policy = await policies.forRepository(repository);
    if (!policy.retention) continue;
    const tags: Array<{ tag: string; pushedAt: number; digest: string }> = [];
    for (const tag of await manifests.tags(repository)) {
      const [info, digest] = await Promise.all([statLink(driver, layout.tag(repository, tag)), readLink(driver, layout.tag(repository, tag))]);
      if (info && digest) tags.push({ tag, pushedAt: info.modifiedAt.getTime(), digest });
    }
    const keep = tagsToKeep(tags, policy.retention, now, policy.immutableTags);
    const result: RetentionResult = { repository, kept: [], deleted: [] };
    // A tag pushed again since it was read is newer than this decision: it stays.
    for (const { tag, digest } of tags.sort((a, b) => a.tag.localeCompare(b.tag))) {
      if (keep.has(tag)) result.kept.push(tag);
      else if (options.dryRun || (await manifests.deleteTagIfUnmoved(repository, tag, digest))) result.deleted.push(tag);
      else result.kept.push(tag);
    }
    results.push(result);
  }
  return results;
}
