// BlobStore: content-addressed blobs stored once per digest, and the links that say which repository
// may serve which blob.
import type { Readable, Writable } from 'node:stream';
import { UNFLUSHED, type ByteRange, type RedirectOptions, type StorageDriver } from './driver/index.ts';
import { layout } from './layout.ts';
import { deleteLink, linkExists, writeLink } from './links.ts';
import { LocalGenerations, type Generations } from './coordination/index.ts';
import { LocalLock, type Lock } from './coordination/index.ts';
import type { Digest } from './reference.ts';
import { StampedCache } from './stamped-cache.ts';
import { NamespaceUsage } from './usage.ts';
import { blobHolders } from './walk.ts';
import type { RequestedBy, StorageListener } from './listener.ts';

/** The generation key of a repository's blob links (names never start with '_', so it cannot clash). */
function linksOf(name: string): string {
  return `_links:${name}`;
}

export class BlobStore {
  // Which repository serves which blob, and its size: a hot path (clients HEAD every layer before a push)
  // that costs two storage round trips, S3 ones included. Entries carry the generation of the
  // repository's blob links, which every unlink bumps; a link only adds, so it needs no bump.
  private readonly descriptors = new StampedCache<number>(100_000);

  constructor(
    private readonly driver: StorageDriver,
    private readonly generations: Generations = new LocalGenerations(),
    private readonly lock: Lock = new LocalLock(),
    /** Every link and unlink is counted here, so that quota checks need not walk the namespace. */
    readonly usage: NamespaceUsage = new NamespaceUsage(driver, lock),
  ) {}

  /** Told of a client's blob deletes (the webhooks' event source, injected by the server). */
  listener?: StorageListener;

  /**
   * Runs fn holding the blob's lock: what links a blob (an upload's completion, a mount) and what
   * deletes it (GC) take it, so GC never deletes a blob between its last check and a new link.
   */
  guarded<T>(digest: Digest, fn: () => Promise<T>): Promise<T> {
    return this.lock.run(`blob:${digest.value}`, fn);
  }

  /** Size of the blob if it is stored at all (in any repository). */
  async size(digest: Digest): Promise<number | undefined> {
    const info = await this.driver.stat(layout.blobData(digest));
    return info && !info.isDirectory ? info.size : undefined;
  }

  /** Size of the blob if this repository may serve it. */
  async sizeIn(name: string, digest: Digest): Promise<number | undefined> {
    const key = `${name}@${digest.value}`;
    const generation = await this.generations.current(linksOf(name));
    const cached = this.descriptors.get(key, generation);
    if (cached !== undefined) return cached;
    if (!(await linkExists(this.driver, layout.layerLink(name, digest)))) return undefined;
    const size = await this.size(digest);
    if (size !== undefined) this.descriptors.set(key, generation, size);
    return size;
  }

  open(digest: Digest, range?: ByteRange): Promise<Readable> {
    return this.driver.reader(layout.blobData(digest), range);
  }

  /** Whether `copyTo` is there: the driver can send a blob without allocating per read. */
  get hasFastCopy(): boolean {
    return this.driver.copyTo !== undefined;
  }

  copyTo(digest: Digest, sink: Writable, range?: ByteRange): Promise<void> {
    if (!this.driver.copyTo) throw new Error(`the ${this.driver.name} driver has no copyTo`);
    return this.driver.copyTo(layout.blobData(digest), sink, range);
  }

  /** Whether the driver can hand out URLs that serve blobs without this process (`redirectURL`). */
  get canRedirect(): boolean {
    return this.driver.redirectURL !== undefined;
  }

  /**
   * A short-lived URL from which the blob's bytes can be fetched directly, or undefined. It grants the
   * bytes to whoever holds it: ask only after checking that the caller may read the blob.
   */
  async redirectURL(digest: Digest, options: RedirectOptions): Promise<string | undefined> {
    return this.driver.redirectURL?.(layout.blobData(digest), options);
  }

  async read(digest: Digest): Promise<Buffer | undefined> {
    return this.driver.getContent(layout.blobData(digest));
  }

  /** Stores small content (manifests) under its digest, unless it is there already. */
  async putContent(digest: Digest, content: Buffer): Promise<void> {
    if ((await this.size(digest)) === content.length) return;
    await this.driver.putContent(layout.blobData(digest), content);
  }

  /** Moves verified, durable upload data into place; a blob that is already stored is kept as it is. */
  async commit(sourcePath: string, digest: Digest): Promise<void> {
    if ((await this.size(digest)) !== undefined) {
      await this.driver.delete(sourcePath);
      return;
    }
    await this.driver.move(sourcePath, layout.blobData(digest));
  }

  async link(name: string, digest: Digest): Promise<void> {
    await this.usage.change(name, digest, async (counted) => {
      // Linking again what the repository holds (a layer pushed twice, a mount of its own blob) adds nothing.
      const existed = counted && (await linkExists(this.driver, layout.layerLink(name, digest)));
      // Links, like tags, are renamed into place without a flush to disk (the blob itself was flushed
      // before it was committed): after a power loss a link may be missing, never name missing bytes.
      await Promise.all([
        this.driver.putContent(layout.blobHolder(digest, name), '', UNFLUSHED),
        writeLink(this.driver, layout.layerLink(name, digest), digest.value),
      ]);
      return existed ? 0 : 1;
    });
  }

  async unlink(name: string, digest: Digest): Promise<boolean> {
    // Announced before as well as after: when the announcement cannot be made (Redis away), nothing is
    // unlinked, since other processes would go on serving the size they cached once the counter answers again.
    await this.generations.bump(linksOf(name));
    let existed = false;
    await this.usage.change(name, digest, async () => {
      existed = await deleteLink(this.driver, layout.layerLink(name, digest));
      await this.driver.delete(layout.blobHolder(digest, name));
      return existed ? -1 : 0;
    });
    await this.generations.bump(linksOf(name));
    return existed;
  }

  /** A client's DELETE of a blob from a repository: the unlink, announced (GC's unlinks are not, one by one). */
  async remove(name: string, digest: Digest, by?: RequestedBy): Promise<boolean> {
    const existed = await this.unlink(name, digest);
    if (existed) await this.listener?.blobDeleted?.({ name, digest: digest.value, ...(by ? { by } : {}) });
    return existed;
  }

  /**
   * Whether the repository links any blob: one whose last manifest was deleted still holds its layers,
   * and is still there for the API (an empty tag list, not NAME_UNKNOWN).
   */
  async holdsAny(name: string): Promise<boolean> {
    for (const algorithm of await this.driver.list(layout.layersOf(name))) {
      if ((await this.driver.list(algorithm, { limit: 1 })).length > 0) return true;
    }
    return false;
  }

  /** The repositories that hold this blob, as recorded when it was linked. */
  holders(digest: Digest): Promise<string[]> {
    return blobHolders(this.driver, digest);
  }
}
