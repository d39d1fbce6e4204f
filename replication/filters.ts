// What a rule copies, decided from names and descriptors alone: repository globs, tag filters (glob,
// regular expression, semver range: all that are given must pass), the newest N of what passes, and
// platforms (os/architecture[/variant]).
import { createRequire } from 'node:module';
import type SemVerModule from 'semver';
import { matchesTagPattern } from '../storage/index.ts';
import type { Rule } from './rules.ts';

/** `*` within a name component, `**` across components, the rest literal. */
export function matchesRepository(name: string, glob: string): boolean {
  const source = glob
    .split('**')
    .map((part) => part.replace(/[.+?^${}()|[\]\\-]/g, '\\$&').replaceAll('*', '[^/]*'))
    .join('.*');
  return new RegExp(`^${source}$`).test(name);
}

export function isGlob(pattern: string): boolean {
  return pattern.includes('*');
}

/** The version a tag stands for (a leading v allowed), when it is one. */
// Loaded by the first rule with a semver filter or a newest-N: every server imports this file for its
// repository globs, and semver alone is half a MiB of heap.
let loaded: typeof SemVerModule | undefined;
const semver = (): typeof SemVerModule => (loaded ??= createRequire(import.meta.url)('semver') as typeof SemVerModule);

function versionOf(tag: string): SemVerModule.SemVer | null {
  return semver().parse(tag.replace(/^v(?=\d)/, ''), { loose: false });
}

export function tagPasses(tag: string, filter: Rule['tags']): boolean {
  if (filter.glob && !filter.glob.some((g) => matchesTagPattern(tag, g))) return false;
  if (filter.regex !== undefined && !new RegExp(`^(?:${filter.regex})$`).test(tag)) return false;
  if (filter.semver !== undefined) {
    const version = versionOf(tag);
    if (!version || !semver().satisfies(version, filter.semver, { includePrerelease: false })) return false;
  }
  return true;
}

/**
 * The tags a rule copies, newest first when it keeps the newest N: a registry does not say when a tag was
 * pushed, so "newest" is the highest version for tags that are versions (they come first), then the
 * rest by name, descending (dates and build numbers in names sort that way).
 */
export function selectTags(tags: readonly string[], rule: Pick<Rule, 'tags' | 'newest'>): string[] {
  const passing = tags.filter((t) => tagPasses(t, rule.tags));
  if (rule.newest === undefined) return passing;
  const ordered = passing
    .map((tag) => ({ tag, version: versionOf(tag) }))
    .sort((a, b) => {
      if (a.version && b.version) return semver().rcompare(a.version, b.version) || (a.tag < b.tag ? 1 : -1);
      if (a.version || b.version) return a.version ? -1 : 1;
      return a.tag < b.tag ? 1 : a.tag > b.tag ? -1 : 0;
    });
  return ordered.slice(0, rule.newest).map((o) => o.tag);
}

/** The annotation a reduced index carries: the source index it was made from (so an unchanged source is seen). */
export const REDUCED_FROM = 'dev.berth.replication.source';

export interface PlatformFacts {
  os?: string;
  architecture?: string;
  variant?: string;
}

export function platformMatches(platform: PlatformFacts | undefined, wanted: readonly string[]): boolean {
  if (!platform?.os || !platform.architecture) return false;
  return wanted.some((w) => {
    const [os, architecture, variant] = w.split('/');
    return os === platform.os && architecture === platform.architecture && (variant === undefined || variant === platform.variant);
  });
}
