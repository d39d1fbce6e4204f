// The catalog's search index: for each repository, the facts people browse by — tags, and for each tag
// the platforms (os, architecture, variant, os.version) read from the image config or from the distinct
// children of an index, compressed size, last push, referrers — plus its description, visibility and pulls.
//
// Three kinds of documents, so that nothing grows with the number of tags:
//   /search/<name~>.json             the summary: tag count, os / architectures (with a count of tags per
//                                    label), the newest tags' facts, description, visibility, pulls
//   /search-tags/<name~>/<tag>       one tag's facts
//   /search-order/<name~>/<key>      an empty file per tag; the keys sort newest first (inverted push time)
// A write names the tags and the subject it changed (ManifestChange); only those tags are recomputed, and
// changes that arrive while a repository's update runs are applied together by the next one. The write
// that caused a change returns after the update, so the index agrees with a full recomputation whenever a
// write has been acknowledged. Summaries are held in memory by every process, so a search never walks
// storage; other processes learn of a change through the `_search` generation. Every document here can be
// derived again from the manifests and tags, so none is flushed to disk (UNFLUSHED); a torn one is rebuilt.
import type { BlobStore } from './blobs.ts';
import type { Generations } from './coordination/index.ts';
import { getFolderContents, UNFLUSHED, type StorageDriver } from './driver/index.ts';
import { baseName, layout } from './layout.ts';
import { statLink } from './links.ts';
import type { Lock } from './coordination/index.ts';
import type { ManifestChange, ManifestStore } from './manifests.ts';
import { parseManifest } from './manifest-parser.ts';
import { tryParseDigest } from './reference.ts';
import type { RepositoryStore } from './repositories.ts';
import { mapLimit } from './walk.ts';
import { SearchJournal } from './search-journal.ts';

export interface PlatformFacts {
  os: string;
  architecture: string;
  variant?: string;
  osVersion?: string;
  /** The platform's own manifest (the child of an index, or the image itself). */
  digest: string;
  /** Compressed: manifest's config plus layers, foreign layers included (what a pull downloads). */
  size: number;
}

export interface TagFacts {
  tag: string;
  digest: string;
  mediaType: string;
  size: number;
  pushedAt: string;
  platforms: PlatformFacts[];
  /** Signatures, SBOMs and other artifacts whose subject is this tag's manifest (at most MAX_REFERRERS). */
  referrers: { artifactType: string; digest: string }[];
}

export interface RepositoryEntry {
  name: string;
  description: string;
  visibility?: 'public' | 'private';
  tagCount: number;
  /** The newest tags (at most NEWEST_TAGS), newest first: what results and the page's head show. */
  newestTags: TagFacts[];
  /** Every OS of every tag, and every architecture (with its variant, `arm/v7`). */
  os: string[];
  architectures: string[];
  /** How many tags carry each OS and architecture label: what lets a removed tag take its label away. */
  labels: { os: Record<string, number>; architectures: Record<string, number> };
  lastPushed?: string;
  pulls: number;
  logo?: string;
  /** The document's shape; an older one is rebuilt from storage when its repository is next touched. */
  version: number;
}

/**
 * What every process holds in memory per repository for searching: the summary without the tags' facts
 * (their names only), a few hundred bytes however many tags and platforms the repository has.
 */
export interface RepositorySummary {
  name: string;
  description: string;
  visibility?: 'public' | 'private';
  tagCount: number;
  /** The newest tags' names, newest first. */
  newest: string[];
  os: string[];
  architectures: string[];
  lastPushed?: string;
  pulls: number;
  logo?: string;
}

export function summaryOf(entry: RepositoryEntry): RepositorySummary {
  const { name, description, visibility, tagCount, os, architectures, lastPushed, pulls, logo } = entry;
  return { name, description, visibility, tagCount, newest: entry.newestTags.map((t) => t.tag), os, architectures, lastPushed, pulls, logo };
}

export interface TagPage {
  /** Tags that match the filter, all pages together. */
  total: number;
  tags: TagFacts[];
}

export type SearchSort = 'name' | 'pushed' | 'pulls';
/** A repository's tags: newest push first, or by name. */
export type TagSort = 'pushed' | 'name';

export interface SearchQuery {
  q?: string;
  os?: string;
  architecture?: string;
  official?: boolean;
  sort?: SearchSort;
  /** Only what this returns true for is found (the caller's visibility rule). */
  visible?: (entry: RepositorySummary) => boolean;
}

const VERSION = 2;
export const NEWEST_TAGS = 10;
/** Platforms kept per manifest: an index names a handful; a hostile one cannot make the facts grow. */
export const MAX_PLATFORMS = 64;
/** Distinct children of an index (or of its child indexes) read for platforms. */
export const MAX_CHILDREN = 1024;
/** Index nesting followed for platforms (an index of indexes of images is depth 2). */
const MAX_DEPTH = 4;
export const MAX_REFERRERS = 64;
/** A config larger than this is not an image config worth reading for its platform. */
const MAX_CONFIG_BYTES = 1024 * 1024;
/** Platforms held by the digest cache, all entries together. */
const PLATFORM_CACHE_LIMIT = 200_000;
const SEARCH = '_search';
/** Another process without shared generations (an admin command) may have changed a summary: look this often. */
const LOOK_AGAIN_MS = 30_000;
/** A snapshot of the summaries is written after this many changes caught up, or this long after the last. */
const SNAPSHOT_EVERY_CHANGES = 4096;
const SNAPSHOT_EVERY_MS = 10 * 60_000;
/**
 * How old a snapshot may be and still be caught up through the journals. A journal is removed a week after
 * its writer's last change (search-journal.ts), so every change made after a snapshot stays in some journal
 * for at least a week after it; six days leave a day's margin, and a quiet registry restarted after a long
 * weekend starts from its snapshot, not by reading every repository's summary.
 */
const SNAPSHOT_TRUSTED_MS = 6 * 86_400_000;
/** A snapshot no change has renewed for this long is written again by a process holding the summaries. */
const SNAPSHOT_RENEW_MS = 86_400_000;

interface SearchSnapshot {
  version: number;
  savedAt: number;
  positions: Record<string, number>;
  entries: RepositorySummary[];
}

const READ_CONCURRENCY = 16;

// Labels that count toward a repository's os / architectures: Go's GOOS and GOARCH values (what the
// image spec names), with a short `vN` variant. Any other value stays in the tag's facts but adds no
// label, so the label maps cannot grow with what a pusher writes into its configs.
const KNOWN_OS = new Set('aix android darwin dragonfly freebsd hurd illumos ios js linux nacl netbsd openbsd plan9 solaris wasip1 windows zos'.split(' '));
const KNOWN_ARCH = new Set('386 amd64 amd64p32 arm arm64 arm64be armbe loong64 mips mips64 mips64le mips64p32 mips64p32le mipsle ppc ppc64 ppc64le riscv riscv64 s390 s390x sparc sparc64 wasm'.split(' '));
const VARIANT_RE = /^v[0-9]{1,2}(?:\.[0-9])?$/;
const INVERTED_TIME = 9_999_999_999_999;

export function architectureLabel(p: { architecture: string; variant?: string }): string {
  return p.variant ? `${p.architecture}/${p.variant}` : p.architecture;
}

/** `library/x` and one-part names are the official images, as on Docker Hub. */
export function isOfficial(name: string): boolean {
  return name.startsWith('library/') || !name.includes('/');
}

function str(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value.slice(0, 128) : undefined;
}

/** The labels one tag adds: each distinct known OS and architecture once. */
function labelsOf(tag: TagFacts): { os: string[]; architectures: string[] } {
  const os = new Set<string>();
  const architectures = new Set<string>();
  for (const p of tag.platforms) {
    if (KNOWN_OS.has(p.os)) os.add(p.os);
    if (KNOWN_ARCH.has(p.architecture)) architectures.add(p.variant && VARIANT_RE.test(p.variant) ? architectureLabel(p) : p.architecture);
  }
  return { os: [...os], architectures: [...architectures] };
}

function count(entry: RepositoryEntry, tag: TagFacts, by: 1 | -1): void {
  const labels = labelsOf(tag);
  for (const [kind, values] of [['os', labels.os], ['architectures', labels.architectures]] as const) {
    const counts = entry.labels[kind];
    for (const value of values) {
      const next = (counts[value] ?? 0) + by;
      if (next > 0) counts[value] = next;
      else delete counts[value];
    }
  }
  entry.os = Object.keys(entry.labels.os).sort();
  entry.architectures = Object.keys(entry.labels.architectures).sort();
}

/** Newest first; tags pushed in the same millisecond by name. */
function newestFirst(a: TagFacts, b: TagFacts): number {
  return b.pushedAt.localeCompare(a.pushedAt) || (a.tag < b.tag ? -1 : a.tag > b.tag ? 1 : 0);
}

/** The newest tags of a summary from tags sorted newest first, and its last push with them. */
function setNewest(entry: RepositoryEntry, sorted: TagFacts[]): void {
  entry.newestTags = sorted.slice(0, NEWEST_TAGS);
  entry.lastPushed = entry.newestTags[0]?.pushedAt;
  if (entry.lastPushed === undefined) delete entry.lastPushed;
}

/** The order file of a tag: sorts newest first, then by tag, as `newestFirst` does. */
function orderKey(tag: TagFacts): string {
  return `${String(INVERTED_TIME - Date.parse(tag.pushedAt)).padStart(13, '0')}.${tag.tag}`;
}

/** A search document that does not parse (a crash while it was written without a flush). */
class TornDocument extends Error {}

/**
 * A repository's search document as stored: `[VERSION, summary]` on the first line, then the whole entry.
 * A start without a snapshot parses the first line alone of each document: for 100,000 documents 0.34 s
 * against 0.58 s for the whole entries, whose tag facts are garbage at once. JSON.stringify writes no raw
 * line break, so the first one ends the summary.
 */
export function searchDocument(entry: RepositoryEntry): string {
  return `${JSON.stringify([VERSION, summaryOf(entry)])}\n${JSON.stringify(entry)}`;
}

const LINE_BREAK = 0x0a;
const CLOSING_BRACE = 0x7d;

function parsed<T>(raw: Buffer): T | undefined {
  try {
    return JSON.parse(raw.toString()) as T;
  } catch {
    return undefined;
  }
}

function tagOfKey(key: string): string {
  return key.slice(key.indexOf('.') + 1);
}

interface Pending {
  tags: Set<string>;
  subjects: Set<string>;
}

interface Queue {
  pending: Pending;
  /** The update that will apply `pending`: every caller whose change is in it waits for it. */
  next?: Promise<void>;
  running?: Promise<void>;
}

export class SearchIndex {
  private entries = new Map<string, RepositorySummary>();
  /** The `_search` generation the memory is current for; undefined: never loaded. */
  private loadedAt?: number;
  private loaded = false;
  private lookedAt = 0;
  private loading?: Promise<void>;
  private readonly journal: SearchJournal;
  private changesSinceSnapshot = 0;
  private snapshotAt = 0;
  private snapshotting?: Promise<unknown>;
  /** Platform facts by manifest digest: immutable, so never stale. */
  private readonly platformCache = new Map<string, PlatformFacts[]>();
  private platformCacheSize = 0;
  private readonly pendingPulls = new Map<string, number>();
  private readonly queues = new Map<string, Queue>();

  constructor(
    private readonly driver: StorageDriver,
    private readonly manifests: ManifestStore,
    private readonly blobs: BlobStore,
    private readonly repositories: RepositoryStore,
    private readonly lock: Lock,
    private readonly generations: Generations,
  ) {
    this.journal = new SearchJournal(driver);
  }

  /**
   * Applies a change (a push, retag or delete names its tags and subject; a settings change names
   * nothing). Resolves once an update that includes it has been written.
   */
  apply(change: ManifestChange): Promise<void> {
    let queue = this.queues.get(change.name);
    if (!queue) {
      queue = { pending: { tags: new Set(), subjects: new Set() } };
      this.queues.set(change.name, queue);
    }
    for (const tag of change.tags) queue.pending.tags.add(tag);
    if (change.subject) queue.pending.subjects.add(change.subject);
    const q = queue;
    q.next ??= (q.running ?? Promise.resolve()).catch(() => {}).then(() => {
      const pending = q.pending;
      q.pending = { tags: new Set(), subjects: new Set() };
      q.next = undefined;
      const running = this.update(change.name, pending).finally(() => {
        if (q.running === running) q.running = undefined;
        if (!q.running && !q.next) this.queues.delete(change.name);
      });
      q.running = running;
      return running;
    });
    return q.next;
  }

  /** Recomputes one repository's documents from storage, every tag (an old document's upgrade, a repair). */
  async rebuild(name: string): Promise<void> {
    await this.lock.run(`search:${name}`, async () => {
      const exists = await this.manifests.exists(name);
      const facts = exists ? await this.allTagFacts(name) : [];
      const keep = new Set(facts.map((t) => t.tag));
      // Documents of tags that are gone, and every order file (rewritten from the facts).
      const [docs, orders] = await Promise.all([this.driver.list(layout.searchTags(name)), this.driver.list(layout.searchOrder(name))]);
      await mapLimit(docs.filter((p) => !keep.has(baseName(p))), READ_CONCURRENCY, (p) => this.driver.delete(p));
      await mapLimit(orders, READ_CONCURRENCY, (p) => this.driver.delete(p));
      if (!exists) {
        await this.driver.delete(layout.searchEntry(name));
        return this.announce(name, undefined);
      }
      await mapLimit(facts, READ_CONCURRENCY, (t) => this.writeTag(name, t));
      await this.save(name, await this.entryFrom(name, facts));
    });
  }

  /**
   * What a full recomputation from storage gives: every tag's facts read afresh, the same rules applied.
   * The incrementally kept summary must always equal it (the property test checks that).
   */
  async recompute(name: string): Promise<RepositoryEntry | undefined> {
    if (!(await this.manifests.exists(name))) return undefined;
    return this.entryFrom(name, await this.allTagFacts(name));
  }

  /** The summary of a repository with these tags (all of them), its pulls kept and its settings read. */
  private async entryFrom(name: string, tags: TagFacts[]): Promise<RepositoryEntry> {
    const entry = this.emptyEntry(name, (await this.readEntry(name))?.pulls ?? 0);
    for (const tag of tags) count(entry, tag, 1);
    entry.tagCount = tags.length;
    setNewest(entry, [...tags].sort(newestFirst));
    await this.copySettings(entry);
    return entry;
  }

  /** Every tag's facts recomputed from storage: a rebuild's work, never a request's. */
  private async allTagFacts(name: string): Promise<TagFacts[]> {
    const facts = await mapLimit(await this.manifests.tags(name), READ_CONCURRENCY, (tag) => this.tagFacts(name, tag));
    return facts.filter((t): t is TagFacts => t !== undefined);
  }

  private emptyEntry(name: string, pulls: number): RepositoryEntry {
    return { name, description: '', tagCount: 0, newestTags: [], os: [], architectures: [], labels: { os: {}, architectures: {} }, pulls, version: VERSION };
  }

  private async copySettings(entry: RepositoryEntry): Promise<void> {
    const settings = (await this.repositories.settings(entry.name)) ?? {};
    entry.description = settings.description ?? '';
    entry.visibility = settings.visibility;
    entry.logo = settings.logo;
    if (!entry.visibility) delete entry.visibility;
    if (!entry.logo) delete entry.logo;
  }

  /** Applies the pending changes of one repository: the named tags, and the tags that name a changed subject. */
  private async update(name: string, pending: Pending): Promise<void> {
    const applied = await this.lock.run(`search:${name}`, () => this.updateHeld(name, pending)).catch((err: unknown) => {
      if (err instanceof TornDocument) return false;
      throw err;
    });
    if (!applied) await this.rebuild(name);
  }

  /** The update itself, under the repository's search lock; false when only a rebuild will do. */
  private async updateHeld(name: string, pending: Pending): Promise<boolean> {
    const [entry, exists] = await Promise.all([this.readEntry(name), this.manifests.exists(name)]);
    // What cannot be updated piece by piece (no summary yet, an older shape, a repository that went) is rebuilt.
    if (!entry || entry.version !== VERSION || !exists) return false;
    const tags = new Set(pending.tags);
    for (const subject of pending.subjects) {
      const digest = tryParseDigest(subject);
      if (digest) for (const tag of await this.manifests.tagsOf(name, digest)) tags.add(tag);
    }
    let newestLost = false;
    await mapLimit([...tags], READ_CONCURRENCY, async (tag) => {
      const [before, after] = await Promise.all([this.readTag(name, tag), this.tagFacts(name, tag)]);
      if (before) {
        count(entry, before, -1);
        const key = orderKey(before);
        if (!after || orderKey(after) !== key) await this.driver.delete(layout.searchOrderKey(name, key));
        if (!after) {
          await this.driver.delete(layout.searchTag(name, tag));
          entry.tagCount--;
        }
      }
      const i = entry.newestTags.findIndex((t) => t.tag === tag);
      if (i >= 0) {
        entry.newestTags.splice(i, 1);
        newestLost = true;
      }
      if (after) {
        await this.writeTag(name, after);
        count(entry, after, 1);
        if (!before) entry.tagCount++;
        entry.newestTags.push(after);
      }
    });
    // A tag that left the newest few is replaced from the order files (names only; a few documents read).
    const refill = newestLost && entry.newestTags.length < Math.min(NEWEST_TAGS, entry.tagCount);
    setNewest(entry, refill ? await this.readTags(name, await this.tagNames(name, 'pushed', NEWEST_TAGS)) : entry.newestTags.sort(newestFirst));
    await this.copySettings(entry);
    await this.save(name, entry);
    return true;
  }

  /** Stores a summary and announces it. */
  private async save(name: string, entry: RepositoryEntry): Promise<void> {
    await this.driver.putContent(layout.searchEntry(name), searchDocument(entry), UNFLUSHED);
    await this.announce(name, summaryOf(entry));
  }

  private async writeTag(name: string, tag: TagFacts): Promise<void> {
    await Promise.all([
      this.driver.putContent(layout.searchTag(name, tag.tag), JSON.stringify(tag), UNFLUSHED),
      this.driver.putContent(layout.searchOrderKey(name, orderKey(tag)), '', UNFLUSHED),
    ]);
  }

  /** A tag's facts as stored; a document torn by a crash throws TornDocument (the repository is rebuilt). */
  private async readTag(name: string, tag: string): Promise<TagFacts | undefined> {
    const raw = await this.driver.getContent(layout.searchTag(name, tag));
    if (!raw) return undefined;
    const facts = parsed<TagFacts>(raw);
    if (!facts) throw new TornDocument(layout.searchTag(name, tag));
    return facts;
  }

  /** Counts a pull in memory; `flushPulls` adds the counts to storage (a write per repository, not per pull). */
  countPull(name: string): void {
    this.pendingPulls.set(name, (this.pendingPulls.get(name) ?? 0) + 1);
  }

  async flushPulls(): Promise<void> {
    const pending = [...this.pendingPulls];
    this.pendingPulls.clear();
    for (const [name, count] of pending) {
      await this.lock.run(`search:${name}`, async () => {
        const entry = await this.readEntry(name);
        if (!entry) return;
        entry.pulls += count;
        await this.save(name, entry);
      });
    }
  }

  /** One repository's summary with its newest tags' facts, read from storage: current in every process. */
  async entry(name: string): Promise<RepositoryEntry | undefined> {
    return this.readEntry(name);
  }

  /**
   * A page of a repository's tags, newest first (or by name), optionally only those whose name starts
   * with `prefix`. Reads the names of the order files (or of the tags' documents, which sort by name) up
   * to the page's end and the page's documents, never every tag's facts.
   */
  async tagPage(name: string, options: { offset: number; n: number; prefix?: string; sort?: TagSort }): Promise<TagPage> {
    let entry = await this.readEntry(name);
    if (entry && entry.version !== VERSION) {
      await this.rebuild(name);
      entry = await this.readEntry(name);
    }
    const sort = options.sort ?? 'pushed';
    const page = (tags: string[]) => this.readTags(name, tags.slice(options.offset, options.offset + options.n));
    if (options.prefix) {
      // A name prefix says nothing of push times: the names are all read (no document is).
      const tags = (await this.tagNames(name, sort)).filter((t) => t.startsWith(options.prefix!));
      return { total: tags.length, tags: await page(tags) };
    }
    return { total: entry?.tagCount ?? 0, tags: await page(await this.tagNames(name, sort, options.offset + options.n)) };
  }

  /**
   * The first `limit` tag names in this order (all without a limit): from the order files' names, or from
   * the tags' documents', which sort by name. On S3, one LIST request per thousand files.
   */
  private async tagNames(name: string, sort: TagSort, limit?: number): Promise<string[]> {
    const byName = sort === 'name';
    const files = await this.driver.list(byName ? layout.searchTags(name) : layout.searchOrder(name), limit === undefined ? undefined : { limit });
    return files.map((p) => (byName ? baseName(p) : tagOfKey(baseName(p))));
  }

  /** These tags' facts, in this order; one a crash tore or a change removed meanwhile is left out. */
  private async readTags(name: string, tags: string[]): Promise<TagFacts[]> {
    const facts = await mapLimit(tags, READ_CONCURRENCY, (tag) => this.readTag(name, tag).catch(() => undefined));
    return facts.filter((t): t is TagFacts => t !== undefined);
  }

  async search(query: SearchQuery): Promise<RepositorySummary[]> {
    await this.fresh();
    const words = (query.q ?? '').toLowerCase().split(/\s+/).filter(Boolean);
    const found: RepositorySummary[] = [];
    for (const entry of this.entries.values()) {
      if (query.os && !entry.os.includes(query.os)) continue;
      if (query.architecture && !entry.architectures.includes(query.architecture)) continue;
      if (query.official && !isOfficial(entry.name)) continue;
      if (words.length > 0) {
        const text = `${entry.name} ${entry.description}`.toLowerCase();
        if (!words.every((w) => text.includes(w))) continue;
      }
      if (query.visible && !query.visible(entry)) continue;
      found.push(entry);
    }
    const byName = (a: RepositorySummary, b: RepositorySummary) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
    if (query.sort === 'pushed') found.sort((a, b) => (b.lastPushed ?? '').localeCompare(a.lastPushed ?? '') || byName(a, b));
    else if (query.sort === 'pulls') found.sort((a, b) => b.pulls - a.pulls || byName(a, b));
    else found.sort(byName);
    return found;
  }

  /** Writes a summary into memory and the journal, then tells the other processes. */
  private async announce(name: string, summary: RepositorySummary | undefined): Promise<void> {
    if (summary) this.entries.set(name, summary);
    else this.entries.delete(name);
    await this.journal.record(name);
    await this.generations.bump(SEARCH);
  }

  /**
   * Brings the summaries in memory up to date: the first time by reading them all; afterwards, when the
   * `_search` generation moved (or, without shared generations, every LOOK_AGAIN_MS), by re-reading only
   * what the other processes' journals name.
   */
  private async fresh(): Promise<void> {
    const generation = await this.generations.current(SEARCH);
    if (this.loaded && generation !== undefined && generation === this.loadedAt && Date.now() - this.lookedAt < LOOK_AGAIN_MS) return;
    this.loading ??= this.catchUp(generation).finally(() => (this.loading = undefined));
    await this.loading;
  }

  private async catchUp(generation: number | undefined): Promise<void> {
    if (!this.loaded) await this.loadSnapshot();
    const plan = this.loaded ? await this.journal.catchUp() : ({ kind: 'everything' } as const);
    if (plan.kind === 'everything') {
      await this.load();
      this.saveSnapshot();
    } else {
      await mapLimit([...plan.names], READ_CONCURRENCY, async (name) => {
        const summary = this.storedSummary(name, await this.driver.getContent(layout.searchEntry(name)));
        if (summary) this.entries.set(name, summary);
        else this.entries.delete(name);
      });
      this.changesSinceSnapshot += plan.names.size;
      if (this.changesSinceSnapshot >= SNAPSHOT_EVERY_CHANGES || (this.changesSinceSnapshot > 0 && Date.now() - this.snapshotAt > SNAPSHOT_EVERY_MS)) this.saveSnapshot();
    }
    this.loadedAt = generation;
    this.lookedAt = Date.now();
  }

  /**
   * Starts from the last snapshot of some process's memory (one read instead of one per repository) and
   * its positions in the journals; false when there is none, or it is too old to trust the journals for.
   */
  private async loadSnapshot(): Promise<boolean> {
    const raw = await this.driver.getContent(layout.searchSnapshot);
    const snapshot = raw && parsed<SearchSnapshot>(raw);
    if (!snapshot || snapshot.version !== VERSION || Date.now() - snapshot.savedAt > SNAPSHOT_TRUSTED_MS) return false;
    this.entries = new Map(snapshot.entries.map((e) => [e.name, e]));
    this.journal.restore(snapshot.positions);
    this.loaded = true;
    this.snapshotAt = snapshot.savedAt;
    return true;
  }

  /** Writes this process's memory as the snapshot, in the background; one writer at a time. */
  private saveSnapshot(): void {
    this.changesSinceSnapshot = 0;
    this.snapshotAt = Date.now();
    // Taken at one instant: the summaries and the journal positions they are current to.
    const snapshot: SearchSnapshot = { version: VERSION, savedAt: this.snapshotAt, positions: this.journal.positions(), entries: [...this.entries.values()] };
    // Written once the request that caught up has been answered: 100,000 summaries take 0.1 s to stringify.
    this.snapshotting ??= new Promise((next) => setImmediate(next))
      .then(() => this.lock.run('search-snapshot', () => this.driver.putContent(layout.searchSnapshot, JSON.stringify(snapshot), UNFLUSHED)))
      .catch(() => {})
      .finally(() => (this.snapshotting = undefined));
  }

  /**
   * Keeps the snapshot trusted on a quiet registry: one that no change renewed for a day is written again
   * by a process that holds the summaries, once caught up. Without it a registry that took no push for six
   * days would read every repository's summary at its next start.
   */
  async renewSnapshot(olderThanMs = SNAPSHOT_RENEW_MS): Promise<void> {
    if (!this.loaded || Date.now() - this.snapshotAt < olderThanMs) return;
    await this.fresh();
    if (Date.now() - this.snapshotAt >= olderThanMs) this.saveSnapshot();
    await this.snapshotting;
  }

  /** Resolves when no snapshot is being written (tests, shutdown). */
  async settled(): Promise<void> {
    await this.snapshotting;
  }

  private async load(): Promise<void> {
    await this.journal.mark();
    const entries = new Map<string, RepositorySummary>();
    // Through the driver's bulk read: on a filesystem the files are read on threads of their own while
    // this one parses their first lines (read and parsed whole here, 100,000 documents took 2.4 s).
    await getFolderContents(this.driver, layout.searchDir, (file, raw) => {
      const name = layout.searchEntryOf(file);
      if (name === undefined) return;
      const summary = this.storedSummary(name, raw);
      if (summary) entries.set(name, summary);
    });
    this.entries = entries;
    this.loaded = true;
  }

  /** A summary as stored; one of an older shape is read into this one (its tags are rebuilt when next touched). */
  private async readEntry(name: string): Promise<RepositoryEntry | undefined> {
    return this.storedEntry(name, await this.driver.getContent(layout.searchEntry(name)));
  }

  /** A summary as stored: the document's first line, or (a document of an older shape) made from its entry. */
  private storedSummary(name: string, raw: Buffer | undefined): RepositorySummary | undefined {
    if (!raw) return undefined;
    const lineBreak = raw.indexOf(LINE_BREAK);
    // A document cut short by a crash ends before its closing brace: rebuilt by the next change, as a torn entry is.
    if (lineBreak >= 0 && raw[raw.length - 1] === CLOSING_BRACE) {
      const head = parsed<[number, RepositorySummary]>(raw.subarray(0, lineBreak));
      if (Array.isArray(head) && head[0] === VERSION && head[1]) return head[1];
    }
    const entry = this.storedEntry(name, raw);
    return entry && summaryOf(entry);
  }

  private storedEntry(name: string, raw: Buffer | undefined): RepositoryEntry | undefined {
    const lineBreak = raw ? raw.indexOf(LINE_BREAK) : -1;
    const stored = raw && parsed<RepositoryEntry & { tags?: TagFacts[] }>(lineBreak < 0 ? raw : raw.subarray(lineBreak + 1));
    // Missing or torn by a crash: the next change rebuilds it.
    if (!stored) return undefined;
    if (stored.version === VERSION) return stored;
    const entry = this.emptyEntry(name, stored.pulls ?? 0);
    const tags = stored.tags ?? [];
    for (const tag of tags) count(entry, tag, 1);
    Object.assign(entry, { description: stored.description ?? '', visibility: stored.visibility, logo: stored.logo, tagCount: tags.length, version: 1 });
    setNewest(entry, [...tags].sort(newestFirst));
    return entry;
  }

  private async tagFacts(name: string, tag: string): Promise<TagFacts | undefined> {
    const manifest = await this.manifests.get(name, { kind: 'tag', tag });
    const link = await statLink(this.driver, layout.tag(name, tag));
    if (!manifest || !link) return undefined;
    const platforms = await this.platformsOf(name, manifest.digest, manifest.content, manifest.mediaType, 0);
    const digest = tryParseDigest(manifest.digest)!;
    const referrers = (await this.manifests.referrers(name, digest))
      .slice(0, MAX_REFERRERS)
      .map((r) => ({ artifactType: r.artifactType ?? r.mediaType, digest: r.digest }));
    return {
      tag,
      digest: manifest.digest,
      mediaType: manifest.mediaType,
      size: platforms.reduce((sum, p) => sum + p.size, 0),
      pushedAt: link.modifiedAt.toISOString(),
      platforms,
      referrers,
    };
  }

  /**
   * The platforms of a manifest: its config's, or those of each distinct child of an index (attestations
   * left out), de-duplicated and capped at MAX_PLATFORMS. Platforms are cached by digest, so an index that
   * names one child a thousand times, or an index of a thousand such indexes, reads each distinct manifest
   * once: the work is bounded by the distinct manifests pushed, which the pusher sent byte by byte.
   */
  private async platformsOf(name: string, digest: string, content: Buffer, mediaType: string, depth: number): Promise<PlatformFacts[]> {
    const cached = this.platformCache.get(digest);
    if (cached) return cached;
    const parsed = parseManifest(content, mediaType);
    const platforms: PlatformFacts[] = [];
    if (parsed.isIndex) {
      // Deeper nesting than any real image uses: left out, and not cached (it depends on where it was met).
      if (depth >= MAX_DEPTH) return [];
      // The parser keeps descriptors only; an index child's declared platform is read from the JSON itself.
      const declared = new Map<string, Record<string, unknown> | undefined>();
      for (const child of (JSON.parse(content.toString()) as { manifests: { digest?: unknown; platform?: Record<string, unknown> }[] }).manifests) {
        if (declared.size >= MAX_CHILDREN) break;
        if (typeof child.digest === 'string' && !declared.has(child.digest)) declared.set(child.digest, child.platform);
      }
      const seen = new Set<string>();
      for (const [childDigest, platform] of declared) {
        if (platforms.length >= MAX_PLATFORMS) break;
        const childManifest = await this.manifests.get(name, { kind: 'digest', digest: tryParseDigest(childDigest)! });
        const childPlatforms = childManifest
          ? await this.platformsOf(name, childManifest.digest, childManifest.content, childManifest.mediaType, depth + 1)
          : [];
        for (const p of childPlatforms) {
          if (p.os === 'unknown') continue;
          const facts = { ...p, osVersion: p.osVersion ?? str(platform?.['os.version']) };
          const key = `${facts.digest} ${facts.os} ${facts.architecture} ${facts.variant} ${facts.osVersion}`;
          if (seen.has(key)) continue;
          seen.add(key);
          platforms.push(facts);
          if (platforms.length >= MAX_PLATFORMS) break;
        }
      }
    } else if (parsed.config) {
      const size = parsed.config.size + parsed.layers.reduce((sum, l) => sum + l.size, 0);
      const config = parsed.config.size <= MAX_CONFIG_BYTES ? await this.blobs.read(parsed.config.digest) : undefined;
      let facts: Record<string, unknown> = {};
      try {
        facts = config ? (JSON.parse(config.toString()) as Record<string, unknown>) : {};
      } catch {
        // an artifact's config need not be JSON: it has no platform
      }
      const os = str(facts.os);
      const architecture = str(facts.architecture);
      if (os && architecture) {
        platforms.push({ os, architecture, variant: str(facts.variant), osVersion: str(facts['os.version']), digest, size });
      }
    }
    if (this.platformCacheSize + platforms.length > PLATFORM_CACHE_LIMIT) {
      this.platformCache.clear();
      this.platformCacheSize = 0;
    }
    this.platformCache.set(digest, platforms);
    this.platformCacheSize += platforms.length + 1;
    return platforms;
  }
}
