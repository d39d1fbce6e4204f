// ManifestStore: manifests kept byte-for-byte as pushed, tags, the referrers index and the catalog index.
import { createHash } from 'node:crypto';
import { StorageError } from './errors.ts';
import type { BlobStore } from './blobs.ts';
import { UNFLUSHED, type StorageDriver } from './driver/index.ts';
import { baseName, decodeName, layout } from './layout.ts';
import { LocalGenerations, type Generations } from './coordination/index.ts';
import { LocalLock, type Lock } from './coordination/index.ts';
import { StampedCache } from './stamped-cache.ts';
import { deleteLink, readLink, writeLink } from './links.ts';
import { isForeignLayer, parseManifest, referrerArtifactType, type ParsedManifest } from './manifest-parser.ts';
import { tryParseDigest, type Digest, type Reference } from './reference.ts';
import type { RequestedBy, StorageListener } from './listener.ts';

export interface StoredManifest {
  readonly digest: string;
  readonly mediaType: string;
  readonly content: Buffer;
}

/** What a revision records besides its bytes. */
interface RevisionMeta {
  mediaType: string;
  size: number;
  subject?: string;
  /**
   * Every tag that named this revision since it was stored left a marker under its `tags` folder (see
   * `tagMarker`). Revisions stored before the markers existed lack it: their tags are found by a scan.
   */
  tagIndex?: boolean;
}

/**
 * What a write changed, for the search index: the tags whose target was set or removed, and the subject
 * whose referrers changed. It recomputes only those, never every tag of the repository.
 */
export interface ManifestChange {
  name: string;
  tags: string[];
  subject?: string;
}

export interface ReferrerDescriptor {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
}

export interface PutResult {
  digest: string;
  subject?: string;
}

/** A small LRU bounded by bytes: manifests are immutable under their digest, so this never goes stale. */
class ContentCache {
  private readonly entries = new Map<string, Buffer>();
  private bytes = 0;
  constructor(private readonly maxBytes: number) {}

  get(key: string): Buffer | undefined {
    const value = this.entries.get(key);
    if (value) {
      this.entries.delete(key);
      this.entries.set(key, value);
    }
    return value;
  }

  set(key: string, value: Buffer): void {
    if (value.length > this.maxBytes / 8 || this.entries.has(key)) return;
    this.entries.set(key, value);
    this.bytes += value.length;
    for (const [k, v] of this.entries) {
      if (this.bytes <= this.maxBytes) break;
      this.entries.delete(k);
      this.bytes -= v.length;
    }
  }
}

/** The generation key of the catalog index (repository names never start with '_'). */
const CATALOG = '_catalog';

export class ManifestStore {
  private readonly content = new ContentCache(64 * 1024 * 1024);
  // Tag targets and revision facts are cached with the repository's generation when they were read;
  // any write anywhere bumps the generation, so a stale entry is never served.
  private readonly tagCache = new StampedCache<string>(100_000);
  private readonly metaCache = new StampedCache<RevisionMeta>(100_000);
  // Repositories known to be in the catalog index, at their generation (a delete elsewhere bumps it).
  private readonly catalogKnown = new StampedCache<true>(100_000);
  private readonly catalogCache = new StampedCache<string[]>(1);

  /** Called after every push or delete with what changed (the search index updates just that). */
  changed?: (change: ManifestChange) => Promise<void>;
  /** Told of pushes, client deletes and pulls (the webhooks' event source, injected by the server). */
  listener?: StorageListener;

  constructor(
    private readonly driver: StorageDriver,
    private readonly blobs: BlobStore,
    private readonly lock: Lock = new LocalLock(),
    private readonly generations: Generations = new LocalGenerations(),
  ) {}

  /**
   * Stores a manifest (and moves its tag). With `immutableTag`, a tag that already names another
   * manifest is refused (TagImmutable) instead of moved. With `referencesOnDemand` (a pull-through cache's
   * copy of an upstream manifest) the blobs and children it names need not be here yet: they are fetched
   * when first pulled. `by` is the request that asked, for the listener.
   */
  async put(
    name: string,
    reference: Reference,
    bytes: Buffer,
    contentType: string | undefined,
    options: { immutableTag?: boolean; referencesOnDemand?: boolean; by?: RequestedBy } = {},
  ): Promise<PutResult> {
    const algorithm = reference.kind === 'digest' ? reference.digest.algorithm : 'sha256';
    const hex = createHash(algorithm).update(bytes).digest('hex');
    const digest: Digest = { algorithm, hex, value: `${algorithm}:${hex}` };
    if (reference.kind === 'digest' && reference.digest.hex !== hex) {
      throw new StorageError(
        { kind: 'DigestMismatch', expected: reference.digest.value, actual: digest.value },
        'the manifest digest does not match the digest in the URL',
      );
    }
    const manifest = parseManifest(bytes, contentType);
    const checkReferences = options.referencesOnDemand ? async () => {} : () => this.checkReferences(name, manifest);
    await checkReferences();

    // Locks come first: where they cannot be had (shared state away), nothing has been written. The
    // order manifest → tag is the same everywhere, so two writers never wait on each other in a circle.
    const tagged = <T>(fn: () => Promise<T>) =>
      reference.kind === 'tag' ? this.lock.run(`tag:${name}:${reference.tag}`, fn) : fn();
    await this.lock.run(`manifest:${name}:${digest.value}`, () => tagged(async () => {
      // Reads first, together; then writes in as few rounds as their order allows (each durable write
      // waits for a flush to disk, so rounds, not writes, set a push's time).
      const [previous, stored] = await Promise.all([
        reference.kind === 'tag' ? this.tagTarget(name, reference.tag) : undefined,
        this.driver.getContent(layout.revision(name, digest)),
        this.blobs.putContent(digest, bytes),
      ]);
      if (reference.kind === 'tag' && options.immutableTag && previous !== undefined && previous !== digest.value) {
        throw new StorageError(
          { kind: 'TagImmutable', name, tag: reference.tag, current: previous },
          `tag ${reference.tag} of ${name} is immutable: it cannot be moved to another manifest`,
        );
      }
      this.content.set(digest.value, bytes);
      const existed = stored !== undefined;
      // A revision written before tag markers existed keeps scanning for its tags: old tags have no marker.
      const tagIndex = existed ? (JSON.parse(stored.toString()) as RevisionMeta).tagIndex === true : true;
      const meta: RevisionMeta = { mediaType: manifest.mediaType, size: bytes.length, subject: manifest.subject?.digest.value, tagIndex };
      // Round 1: the revision (its time moved even when unchanged: GC reads it as the manifest's last
      // push, gc.ts) and the tag's marker, which precedes the tag so that markers are a superset of tags.
      // Durability: the manifest's bytes (a blob) and a new revision are flushed to disk before the push
      // is answered. Links (a tag, its marker, a rewritten revision) are replaced atomically without a
      // flush, as Distribution writes them: after a power loss a tag may name its previous manifest or be
      // gone, never name a manifest whose bytes are not on disk.
      await Promise.all([
        this.storeRevision(name, digest, JSON.stringify(meta), stored),
        reference.kind === 'tag' ? this.driver.putContent(layout.tagMarker(name, digest, reference.tag), '', UNFLUSHED) : undefined,
      ]);
      await this.checkAfterWrite(name, digest, bytes, existed, checkReferences);
      // Round 2: what makes the manifest reachable: its referrer entry and its tag.
      const referrer = manifest.subject && {
        mediaType: manifest.mediaType,
        digest: digest.value,
        size: bytes.length,
        artifactType: referrerArtifactType(manifest),
        annotations: manifest.annotations,
      } satisfies ReferrerDescriptor;
      await Promise.all([
        referrer ? this.driver.putContent(layout.referrer(name, manifest.subject!.digest, digest), JSON.stringify(referrer)) : undefined,
        reference.kind === 'tag' ? writeLink(this.driver, layout.tag(name, reference.tag), digest.value) : undefined,
      ]);
      if (reference.kind === 'tag' && previous !== undefined && previous !== digest.value) await this.dropTagMarker(name, reference.tag, previous);
      await this.generations.bump(name);
    }));
    await this.addToCatalog(name);
    await this.changed?.({ name, tags: reference.kind === 'tag' ? [reference.tag] : [], subject: manifest.subject?.digest.value });
    await this.listener?.manifestPushed?.({
      name,
      digest: digest.value,
      mediaType: manifest.mediaType,
      size: bytes.length,
      ...(reference.kind === 'tag' ? { tag: reference.tag } : {}),
      ...(options.by ? { by: options.by } : {}),
    });
    return { digest: digest.value, subject: manifest.subject?.digest.value };
  }

  /**
   * Writes a revision's facts. A revision stored before with the same facts (a manifest pushed again, under
   * another tag) only has its time moved, which GC reads as its last push: one system call on a filesystem
   * where a rewrite took seven. A new revision is flushed to disk before the push is answered.
   */
  private async storeRevision(name: string, digest: Digest, meta: string, stored: Buffer | undefined): Promise<void> {
    const path = layout.revision(name, digest);
    if (stored === undefined) return this.driver.putContent(path, meta);
    if (this.driver.touch && stored.toString() === meta && (await this.driver.touch(path))) return;
    return this.driver.putContent(path, meta, UNFLUSHED);
  }

  /** The digest a tag names now, read from storage (callers hold the tag's lock). */
  private async tagTarget(name: string, tag: string): Promise<string | undefined> {
    return readLink(this.driver, layout.tag(name, tag));
  }

  private async dropTagMarker(name: string, tag: string, target: string): Promise<void> {
    const digest = tryParseDigest(target);
    if (digest) await this.driver.delete(layout.tagMarker(name, digest, tag));
  }

  /** Removes a tag (its link and its revision's marker); callers hold the tag's lock. */
  private async removeTag(name: string, tag: string, target: string | undefined): Promise<boolean> {
    const existed = await deleteLink(this.driver, layout.tag(name, tag));
    if (target !== undefined) await this.dropTagMarker(name, tag, target);
    await this.generations.bump(name);
    return existed;
  }

  /**
   * A garbage collection may have unlinked a referenced blob (or deleted this manifest's own bytes)
   * between the first check and the revision write. Checked again now that the revision is visible to
   * it (see gc.ts): a blob that went is refused, and the revision written here taken back.
   */
  private async checkAfterWrite(name: string, digest: Digest, bytes: Buffer, existed: boolean, checkReferences: () => Promise<void>): Promise<void> {
    try {
      await checkReferences();
    } catch (err) {
      if (!existed) await this.driver.delete(layout.revisionDir(name, digest));
      await this.generations.bump(name);
      throw err;
    }
    if ((await this.blobs.size(digest)) === undefined) await this.blobs.putContent(digest, bytes);
  }

  private async checkReferences(name: string, manifest: ParsedManifest): Promise<void> {
    const missing: string[] = [];
    const blobs = [...(manifest.config ? [manifest.config] : []), ...manifest.layers.filter((l) => !isForeignLayer(l))];
    await Promise.all(
      blobs.map(async (d) => {
        const size = await this.blobs.sizeIn(name, d.digest);
        if (size === undefined) missing.push(d.digest.value);
        else if (size !== d.size) {
          throw new StorageError(
            { kind: 'ManifestInvalid', detail: { digest: d.digest.value, size } },
            `descriptor size ${d.size} does not match the stored blob`,
          );
        }
      }),
    );
    // An index may name one child many times: each distinct child is looked up once.
    const children = [...new Map(manifest.manifests.map((d) => [d.digest.value, d])).values()];
    await Promise.all(
      children.map(async (d) => {
        const known = (await this.meta(name, d.digest)) ?? (await this.blobs.sizeIn(name, d.digest));
        if (known === undefined) missing.push(d.digest.value);
      }),
    );
    if (missing.length > 0) {
      throw new StorageError({ kind: 'ManifestBlobUnknown', digests: missing.sort() }, `the manifest references what the repository does not hold: ${missing.join(', ')}`);
    }
  }

  /** Resolves a tag or digest to the manifest this repository serves under it. */
  async get(name: string, reference: Reference): Promise<StoredManifest | undefined> {
    // One generation read serves both lookups: with Redis it is the only round trip of a cached GET.
    const generation = await this.generations.current(name);
    const digest = reference.kind === 'digest' ? reference.digest : await this.resolveTag(name, reference.tag, generation);
    if (!digest) return undefined;
    const meta = await this.meta(name, digest, generation);
    if (!meta) return undefined;
    let content = this.content.get(digest.value);
    if (!content) {
      content = await this.blobs.read(digest);
      if (!content) return undefined;
      this.content.set(digest.value, content);
    }
    return { digest: digest.value, mediaType: meta.mediaType, content };
  }

  /** A client pulled this manifest (the route tells a pull from a page's read): the listener hears of it. */
  pulled(name: string, manifest: StoredManifest, tag?: string, by?: RequestedBy): void {
    this.listener?.manifestPulled?.({ name, digest: manifest.digest, mediaType: manifest.mediaType, size: manifest.content.length, ...(tag ? { tag } : {}), ...(by ? { by } : {}) });
  }

  private async resolveTag(name: string, tag: string, generation: number | undefined): Promise<Digest | undefined> {
    const key = this.tagKey(name, tag);
    const cached = this.tagCache.get(key, generation);
    if (cached !== undefined) return tryParseDigest(cached);
    const value = await readLink(this.driver, layout.tag(name, tag));
    if (value === undefined) return undefined;
    this.tagCache.set(key, generation, value);
    return tryParseDigest(value);
  }

  /** A revision's facts; from the cache only at a known, current generation, else read from storage. */
  private async meta(name: string, digest: Digest, generation?: number): Promise<RevisionMeta | undefined> {
    const key = this.metaKey(name, digest.value);
    const cached = this.metaCache.get(key, generation);
    if (cached) return cached;
    const raw = await this.driver.getContent(layout.revision(name, digest));
    if (!raw) return undefined;
    const meta = JSON.parse(raw.toString()) as RevisionMeta;
    this.metaCache.set(key, generation, meta);
    return meta;
  }

  /** Deletes a tag, or a manifest with every tag that points at it. Returns false when there was none. */
  async delete(name: string, reference: Reference, by?: RequestedBy): Promise<boolean> {
    if (reference.kind === 'tag') {
      const tag = reference.tag;
      let target: string | undefined;
      const existed = await this.lock.run(`tag:${name}:${tag}`, async () => this.removeTag(name, tag, (target = await this.tagTarget(name, tag))));
      if (existed) await this.changed?.({ name, tags: [tag] });
      if (existed) await this.listener?.manifestDeleted?.({ name, tag, digest: target, ...(by ? { by } : {}) });
      return existed;
    }
    const digest = reference.digest;
    const removed: string[] = [];
    let subject: string | undefined;
    const deleted = await this.lock.run(`manifest:${name}:${digest.value}`, async () => {
      const meta = await this.meta(name, digest);
      if (!meta) return false;
      subject = meta.subject;
      for (const tag of await this.candidateTags(name, digest, meta)) {
        await this.lock.run(`tag:${name}:${tag}`, async () => {
          const target = await this.tagTarget(name, tag);
          if (target === digest.value && (await this.removeTag(name, tag, target))) removed.push(tag);
        });
      }
      await this.dropRevision(name, digest, meta);
      return true;
    });
    if (deleted) await this.removeFromCatalogIfEmpty(name);
    if (deleted) await this.changed?.({ name, tags: removed, subject });
    if (deleted) await this.listener?.manifestDeleted?.({ name, digest: digest.value, ...(by ? { by } : {}) });
    return deleted;
  }

  /** Deletes a tag only if it still names `digest` (retention decided on what it read earlier). */
  async deleteTagIfUnmoved(name: string, tag: string, digest: string): Promise<boolean> {
    const deleted = await this.lock.run(`tag:${name}:${tag}`, async () => {
      if ((await this.tagTarget(name, tag)) !== digest) return false;
      await this.removeTag(name, tag, digest);
      return true;
    });
    if (deleted) await this.changed?.({ name, tags: [tag] });
    if (deleted) await this.listener?.manifestDeleted?.({ name, tag, digest });
    return deleted;
  }

  /**
   * Tags that may name the revision: its markers (a superset of the truth: callers check each link), or
   * every tag for a revision stored before markers were written.
   */
  private async candidateTags(name: string, digest: Digest, meta: RevisionMeta): Promise<string[]> {
    if (!meta.tagIndex) return this.tags(name);
    return (await this.driver.list(layout.tagMarkers(name, digest))).map(baseName);
  }

  /**
   * For garbage collection: removes a revision stored before `storedBefore` that no tag names, checked
   * under the manifest's lock (a push of the same manifest with a tag takes it too).
   */
  async removeUntagged(name: string, digest: Digest, storedBefore: number): Promise<boolean> {
    let subject: string | undefined;
    const removed = await this.lock.run(`manifest:${name}:${digest.value}`, async () => {
      const info = await this.driver.stat(layout.revision(name, digest));
      if (!info || info.modifiedAt.getTime() > storedBefore) return false;
      if ((await this.tagsOf(name, digest)).length > 0) return false;
      const meta = await this.meta(name, digest);
      if (!meta) return false;
      subject = meta.subject;
      await this.dropRevision(name, digest, meta);
      return true;
    });
    if (removed) await this.removeFromCatalogIfEmpty(name);
    if (removed) await this.changed?.({ name, tags: [], subject });
    return removed;
  }

  private async dropRevision(name: string, digest: Digest, meta: RevisionMeta): Promise<void> {
    const subject = meta.subject ? tryParseDigest(meta.subject) : undefined;
    if (subject) await this.driver.delete(layout.referrer(name, subject, digest));
    await this.driver.delete(layout.revisionDir(name, digest));
    await this.generations.bump(name);
  }

  /** The digests a stored revision names: config, layers (foreign ones included) and child manifests. */
  async referencesOf(name: string, digest: Digest): Promise<string[]> {
    const meta = await this.meta(name, digest);
    const bytes = meta && (await this.blobs.read(digest));
    if (!meta || !bytes) return [];
    const manifest = parseManifest(bytes, meta.mediaType);
    return [...(manifest.config ? [manifest.config] : []), ...manifest.layers, ...manifest.manifests].map((d) => d.digest.value);
  }

  /** The tags of a repository that name this manifest. */
  async tagsOf(name: string, digest: Digest): Promise<string[]> {
    const meta = await this.meta(name, digest);
    if (!meta) return [];
    const candidates = await this.candidateTags(name, digest, meta);
    const targets = await Promise.all(candidates.map((tag) => this.tagTarget(name, tag)));
    return candidates.filter((_, i) => targets[i] === digest.value);
  }

  /** The repository's tags, sorted; with `after` and `limit`, one page of them (tags/list?n=&last=). */
  async tags(name: string, page?: { after?: string; limit?: number }): Promise<string[]> {
    return (await this.driver.list(layout.tagsDir(name), page)).map(baseName);
  }

  /** A repository exists once a manifest was pushed to it, until its last manifest is deleted. */
  async exists(name: string): Promise<boolean> {
    if (await this.knownInCatalog(name)) return true;
    return (await this.driver.stat(layout.catalogEntry(name))) !== undefined;
  }

  private async knownInCatalog(name: string): Promise<boolean> {
    return this.catalogKnown.get(name, await this.generations.current(name)) === true;
  }

  /** The referrers of a subject; with `first`, only the first that many entries are read (a page shows a few). */
  async referrers(name: string, subject: Digest, artifactType?: string, first?: number): Promise<ReferrerDescriptor[]> {
    const entries = await this.driver.list(layout.referrersOf(name, subject), first === undefined ? undefined : { limit: first });
    const found = await Promise.all(
      entries.map(async (path) => {
        const raw = await this.driver.getContent(path);
        return raw ? (JSON.parse(raw.toString()) as ReferrerDescriptor) : undefined;
      }),
    );
    return found.filter(
      (d): d is ReferrerDescriptor => d !== undefined && (artifactType === undefined || d.artifactType === artifactType),
    );
  }

  async catalog(): Promise<string[]> {
    const generation = await this.generations.current(CATALOG);
    const cached = this.catalogCache.get(CATALOG, generation);
    if (cached) return cached;
    const names = (await this.driver.list(layout.catalogDir)).map((p) => decodeName(baseName(p))).sort();
    this.catalogCache.set(CATALOG, generation, names);
    return names;
  }

  private async addToCatalog(name: string): Promise<void> {
    if (await this.knownInCatalog(name)) return;
    const generation = await this.generations.current(name);
    if (!(await this.driver.stat(layout.catalogEntry(name)))) {
      await this.driver.putContent(layout.catalogEntry(name), '');
      await this.generations.bump(CATALOG);
    }
    this.catalogKnown.set(name, generation, true);
  }

  private async removeFromCatalogIfEmpty(name: string): Promise<void> {
    for (const algorithm of ['sha256', 'sha512']) {
      if ((await this.driver.list(layout.revisionsOf(name, algorithm), { limit: 1 })).length > 0) return;
    }
    if (await this.driver.delete(layout.catalogEntry(name))) await this.generations.bump(CATALOG);
    await this.generations.bump(name);
  }

  private tagKey(name: string, tag: string): string {
    return `${name}:${tag}`;
  }

  private metaKey(name: string, digest: string): string {
    return `${name}@${digest}`;
  }
}
