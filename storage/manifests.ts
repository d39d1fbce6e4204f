// ManifestStore: manifests kept byte-for-byte as pushed, tags, the referrers index and the catalog index.
import { createHash } from 'node:crypto';
import { RegistryError } from '../server/errors.ts';
import type { BlobStore } from './blobs.ts';
import type { StorageDriver } from './driver.ts';
import { baseName, decodeName, layout } from './layout.ts';
import { LocalGenerations, type Generations } from './coordination.ts';
import { LocalLock, type Lock } from './lock.ts';
import { StampedCache } from './stamped-cache.ts';
import { isForeignLayer, parseManifest, referrerArtifactType, type ParsedManifest } from './manifest-parser.ts';
import { tryParseDigest, type Digest, type Reference } from './reference.ts';

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

  /** Called after every push or delete (the search index recomputes the repository's entry). */
  changed?: (name: string) => Promise<void>;

  constructor(
    private readonly driver: StorageDriver,
    private readonly blobs: BlobStore,
    private readonly lock: Lock = new LocalLock(),
    private readonly generations: Generations = new LocalGenerations(),
  ) {}

  /**
   * Stores a manifest (and moves its tag). With `immutableTag`, a tag that already names another
   * manifest is refused with DENIED instead of moved.
   */
  async put(
    name: string,
    reference: Reference,
    bytes: Buffer,
    contentType: string | undefined,
    options: { immutableTag?: boolean } = {},
  ): Promise<PutResult> {
    const algorithm = reference.kind === 'digest' ? reference.digest.algorithm : 'sha256';
    const hex = createHash(algorithm).update(bytes).digest('hex');
    const digest: Digest = { algorithm, hex, value: `${algorithm}:${hex}` };
    if (reference.kind === 'digest' && reference.digest.hex !== hex) {
      throw new RegistryError('DIGEST_INVALID', 'the manifest digest does not match the digest in the URL', {
        expected: reference.digest.value,
        actual: digest.value,
      });
    }
    const manifest = parseManifest(bytes, contentType);
    await this.checkReferences(name, manifest);

    const meta: RevisionMeta = { mediaType: manifest.mediaType, size: bytes.length, subject: manifest.subject?.digest.value };
    // Locks come first: where they cannot be had (shared state away), nothing has been written. The
    // order manifest → tag is the same everywhere, so two writers never wait on each other in a circle.
    const tagged = <T>(fn: () => Promise<T>) =>
      reference.kind === 'tag' ? this.lock.run(`tag:${name}:${reference.tag}`, fn) : fn();
    await this.lock.run(`manifest:${name}:${digest.value}`, () => tagged(async () => {
      if (reference.kind === 'tag' && options.immutableTag) await this.refuseTagMove(name, reference.tag, digest);
      await this.blobs.putContent(digest, bytes);
      this.content.set(digest.value, bytes);
      const existed = (await this.driver.stat(layout.revision(name, digest))) !== undefined;
      await this.driver.putContent(layout.revision(name, digest), JSON.stringify(meta));
      await this.checkAfterWrite(name, digest, bytes, manifest, existed);
      if (manifest.subject) {
        const descriptor: ReferrerDescriptor = {
          mediaType: manifest.mediaType,
          digest: digest.value,
          size: bytes.length,
          artifactType: referrerArtifactType(manifest),
          annotations: manifest.annotations,
        };
        await this.driver.putContent(layout.referrer(name, manifest.subject.digest, digest), JSON.stringify(descriptor));
      }
      if (reference.kind === 'tag') await this.driver.putContent(layout.tag(name, reference.tag), digest.value);
      await this.generations.bump(name);
    }));
    await this.addToCatalog(name);
    await this.changed?.(name);
    return { digest: digest.value, subject: manifest.subject?.digest.value };
  }

  private async refuseTagMove(name: string, tag: string, digest: Digest): Promise<void> {
    const current = (await this.driver.getContent(layout.tag(name, tag)))?.toString();
    if (current !== undefined && current !== digest.value) {
      throw new RegistryError('DENIED', `tag ${tag} of ${name} is immutable: it cannot be moved to another manifest`, {
        name,
        tag,
        current,
      });
    }
  }

  /**
   * A garbage collection may have unlinked a referenced blob (or deleted this manifest's own bytes)
   * between the first check and the revision write. Checked again now that the revision is visible to
   * it (see gc.ts): a blob that went is refused, and the revision written here taken back.
   */
  private async checkAfterWrite(name: string, digest: Digest, bytes: Buffer, manifest: ParsedManifest, existed: boolean): Promise<void> {
    try {
      await this.checkReferences(name, manifest);
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
          throw new RegistryError('MANIFEST_INVALID', `descriptor size ${d.size} does not match the stored blob`, {
            digest: d.digest.value,
            size,
          });
        }
      }),
    );
    await Promise.all(
      manifest.manifests.map(async (d) => {
        const known = (await this.meta(name, d.digest)) ?? (await this.blobs.sizeIn(name, d.digest));
        if (known === undefined) missing.push(d.digest.value);
      }),
    );
    if (missing.length > 0) {
      throw new RegistryError('MANIFEST_BLOB_UNKNOWN', undefined, { digests: missing.sort() });
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

  private async resolveTag(name: string, tag: string, generation: number | undefined): Promise<Digest | undefined> {
    const key = this.tagKey(name, tag);
    const cached = this.tagCache.get(key, generation);
    if (cached !== undefined) return tryParseDigest(cached);
    const value = (await this.driver.getContent(layout.tag(name, tag)))?.toString();
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
  async delete(name: string, reference: Reference): Promise<boolean> {
    if (reference.kind === 'tag') {
      const existed = await this.lock.run(`tag:${name}:${reference.tag}`, async () => {
        const existed = await this.driver.delete(layout.tagDir(name, reference.tag));
        await this.generations.bump(name);
        return existed;
      });
      if (existed) await this.changed?.(name);
      return existed;
    }
    const digest = reference.digest;
    const deleted = await this.lock.run(`manifest:${name}:${digest.value}`, async () => {
      const meta = await this.meta(name, digest);
      if (!meta) return false;
      for (const tag of await this.tags(name)) {
        await this.lock.run(`tag:${name}:${tag}`, async () => {
          const target = await this.driver.getContent(layout.tag(name, tag));
          if (target?.toString() === digest.value) await this.driver.delete(layout.tagDir(name, tag));
        });
      }
      await this.dropRevision(name, digest, meta);
      return true;
    });
    if (deleted) await this.removeFromCatalogIfEmpty(name);
    if (deleted) await this.changed?.(name);
    return deleted;
  }

  /** Deletes a tag only if it still names `digest` (retention decided on what it read earlier). */
  async deleteTagIfUnmoved(name: string, tag: string, digest: string): Promise<boolean> {
    return this.lock.run(`tag:${name}:${tag}`, async () => {
      if ((await this.driver.getContent(layout.tag(name, tag)))?.toString() !== digest) return false;
      await this.driver.delete(layout.tagDir(name, tag));
      await this.generations.bump(name);
      return true;
    });
  }

  /**
   * For garbage collection: removes a revision stored before `storedBefore` that no tag names, checked
   * under the manifest's lock (a push of the same manifest with a tag takes it too).
   */
  async removeUntagged(name: string, digest: Digest, storedBefore: number): Promise<boolean> {
    const removed = await this.lock.run(`manifest:${name}:${digest.value}`, async () => {
      const info = await this.driver.stat(layout.revision(name, digest));
      if (!info || info.modifiedAt.getTime() > storedBefore) return false;
      if ((await this.tagsOf(name, digest)).length > 0) return false;
      const meta = await this.meta(name, digest);
      if (!meta) return false;
      await this.dropRevision(name, digest, meta);
      return true;
    });
    if (removed) await this.removeFromCatalogIfEmpty(name);
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
    const tags: string[] = [];
    for (const tag of await this.tags(name)) {
      if ((await this.driver.getContent(layout.tag(name, tag)))?.toString() === digest.value) tags.push(tag);
    }
    return tags;
  }

  async tags(name: string): Promise<string[]> {
    return (await this.driver.list(layout.tagsDir(name))).map(baseName);
  }

  /** A repository exists once a manifest was pushed to it, until its last manifest is deleted. */
  async exists(name: string): Promise<boolean> {
    if (await this.knownInCatalog(name)) return true;
    return (await this.driver.stat(layout.catalogEntry(name))) !== undefined;
  }

  private async knownInCatalog(name: string): Promise<boolean> {
    return this.catalogKnown.get(name, await this.generations.current(name)) === true;
  }

  async referrers(name: string, subject: Digest, artifactType?: string): Promise<ReferrerDescriptor[]> {
    const entries = await this.driver.list(layout.referrersOf(name, subject));
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
      if ((await this.driver.list(layout.revisionsOf(name, algorithm))).length > 0) return;
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
