// The maintained usage of a namespace: the bytes of the distinct blobs its repositories link, kept up to date
// as links come and go, so that a quota check reads one record instead of walking the namespace.
//
// A namespace's record is its usage document plus one marker per linked blob that counts the repositories of
// the namespace linking it: a link or an unlink then knows from one marker whether the namespace gains or
// loses the blob's bytes. Records exist only for namespaces with a quota: elsewhere nobody reads the number,
// and bookkeeping costs each link a namespace-wide lock and a few storage round trips (on S3 and Redis, tens
// of milliseconds, with every link of the namespace waiting its turn). A record is built by one walk under the
// lock (the first check after a quota is set, or garbage collection), which also rebuilds it from what is
// linked: that is how a crash between a link and its bookkeeping is repaired.
//
// The lock `quota-usage:<namespace>` is the innermost one: links happen under the blob's lock, which
// admissions take after `quota:<namespace>`, so the bookkeeping cannot share that key. A link into a
// namespace without a record takes no lock: it writes, then looks again; a record begun in between may have
// walked past the link or not, so that blob is recounted from its holders under the lock.
import type { StorageDriver } from './driver/index.ts';
import { baseName, layout } from './layout.ts';
import { linkExists } from './links.ts';
import type { Lock } from './coordination/index.ts';
import { namespaceOf } from './policies.ts';
import { tryParseDigest, type Digest } from './reference.ts';
import { blobHolders, digestFolders, mapLimit, repositoryNames, WALK_CONCURRENCY } from './walk.ts';

export interface Usage {
  /** Bytes of the distinct blobs linked in the namespace. */
  bytes: number;
  /** How many distinct blobs. */
  blobs: number;
}

interface UsageDocument extends Usage {
  /** False while a walk builds the record (or after one that crashed): not to be trusted nor updated. */
  complete: boolean;
}

/** Per (namespace, blob): how many of the namespace's repositories link it, and the bytes it counts for. */
interface Marker {
  refs: number;
  size: number;
}

/**
 * Writes one link or unlink of `digest` in a repository. With `counted`, it must report what changed: +1 for a
 * link that was not there, -1 for one that went, else 0; without, no one reads the answer and it may skip
 * finding out.
 */
export type LinkWrite = (counted: boolean) => Promise<number>;

export class NamespaceUsage {
  constructor(
    private readonly driver: StorageDriver,
    private readonly lock: Lock,
  ) {}

  /** The maintained usage, when the namespace has a complete record. */
  async read(namespace: string): Promise<Usage | undefined> {
    const doc = await this.document(namespace);
    return doc?.complete ? { bytes: doc.bytes, blobs: doc.blobs } : undefined;
  }

  /** Whether the record counts the blob as linked in the namespace (only meaningful with a complete record). */
  async holds(namespace: string, digest: Digest): Promise<boolean> {
    return (await this.driver.stat(layout.quotaBlob(namespace, digest))) !== undefined;
  }

  /** The usage, from the record, which is built (once, under the lock) when there is none. */
  async maintained(namespace: string): Promise<Usage> {
    return (await this.read(namespace)) ?? this.locked(namespace, async () => (await this.read(namespace)) ?? (await this.rebuild(namespace)).now);
  }

  /** Builds the record from a walk, whatever it said: returns what it said before (if complete) and now. */
  reconcile(namespace: string): Promise<{ was?: Usage; now: Usage }> {
    return this.locked(namespace, () => this.rebuild(namespace));
  }

  /** Stops maintaining the namespace's usage (its quota is gone). */
  drop(namespace: string): Promise<void> {
    return this.locked(namespace, async () => {
      // The document first: without it, links stop counting before the markers go.
      await this.driver.delete(layout.quotaUsage(namespace));
      await this.driver.delete(layout.quotaDir(namespace));
    });
  }

  /** The namespaces that have a record. */
  async namespaces(): Promise<string[]> {
    return (await this.driver.list(layout.quotasDir)).map(baseName);
  }

  /** A walk of the namespace: each linked blob with how many repositories link it, and its size. */
  async measure(namespace: string): Promise<Map<string, Marker>> {
    const names = await repositoryNames(this.driver, layout.repositoryDir(namespace));
    const linked = await mapLimit(names, WALK_CONCURRENCY, (name) => digestFolders(this.driver, layout.layersOf(name)));
    const refs = new Map<string, { digest: Digest; refs: number }>();
    for (const digest of linked.flat()) {
      const entry = refs.get(digest.value) ?? { digest, refs: 0 };
      entry.refs++;
      refs.set(digest.value, entry);
    }
    const entries = [...refs.values()];
    const sizes = await mapLimit(entries, WALK_CONCURRENCY, ({ digest }) => this.blobSize(digest));
    return new Map(entries.map((e, i) => [e.digest.value, { refs: e.refs, size: sizes[i]! }]));
  }

  /** Runs a link or unlink of `digest` in repository `name` and counts it in the namespace's record, if any. */
  async change(name: string, digest: Digest, write: LinkWrite): Promise<void> {
    const namespace = namespaceOf(name);
    if (!(await this.recorded(namespace))) {
      await write(false);
      if (await this.recorded(namespace)) await this.locked(namespace, () => this.recount(namespace, digest));
      return;
    }
    await this.locked(namespace, async () => {
      const doc = await this.document(namespace);
      const delta = await write(doc?.complete === true);
      if (!doc?.complete || delta === 0) return;
      const marker = await this.marker(namespace, digest);
      await this.setRefs(namespace, digest, doc, marker, (marker?.refs ?? 0) + delta);
    });
  }

  private locked<T>(namespace: string, fn: () => Promise<T>): Promise<T> {
    return this.lock.run(`quota-usage:${namespace}`, fn);
  }

  private async recorded(namespace: string): Promise<boolean> {
    return (await this.driver.stat(layout.quotaUsage(namespace))) !== undefined;
  }

  private async document(namespace: string): Promise<UsageDocument | undefined> {
    const raw = await this.driver.getContent(layout.quotaUsage(namespace));
    return raw ? (JSON.parse(raw.toString()) as UsageDocument) : undefined;
  }

  private async marker(namespace: string, digest: Digest): Promise<Marker | undefined> {
    const raw = await this.driver.getContent(layout.quotaBlob(namespace, digest));
    return raw ? (JSON.parse(raw.toString()) as Marker) : undefined;
  }

  private async blobSize(digest: Digest): Promise<number> {
    const info = await this.driver.stat(layout.blobData(digest));
    // A link whose bytes are gone counts for nothing, as it always did.
    return info && !info.isDirectory ? info.size : 0;
  }

  /** Under the lock: the blob's marker says `refs` repositories now, and the document follows. */
  private async setRefs(namespace: string, digest: Digest, doc: UsageDocument, marker: Marker | undefined, refs: number): Promise<void> {
    const path = layout.quotaBlob(namespace, digest);
    if (refs <= 0) {
      if (!marker) return;
      await this.driver.delete(path);
      doc.bytes -= marker.size;
      doc.blobs--;
    } else {
      if (marker?.refs === refs) return;
      const size = marker?.size ?? (await this.blobSize(digest));
      await this.driver.putContent(path, JSON.stringify({ refs, size } satisfies Marker));
      if (marker) return;
      doc.bytes += size;
      doc.blobs++;
    }
    await this.driver.putContent(layout.quotaUsage(namespace), JSON.stringify(doc));
  }

  /** Under the lock: one blob's marker from its holders, for a link that raced the record's walk. */
  private async recount(namespace: string, digest: Digest): Promise<void> {
    const doc = await this.document(namespace);
    if (!doc?.complete) return;
    const holders = (await blobHolders(this.driver, digest)).filter((name) => namespaceOf(name) === namespace);
    const linked = await mapLimit(holders, WALK_CONCURRENCY, (name) => linkExists(this.driver, layout.layerLink(name, digest)));
    await this.setRefs(namespace, digest, doc, await this.marker(namespace, digest), linked.filter(Boolean).length);
  }

  /** Under the lock: the record, rewritten from a walk; only the markers that differ are written. */
  private async rebuild(namespace: string): Promise<{ was?: Usage; now: Usage }> {
    const before = await this.document(namespace);
    // Incomplete from here on: a link that sees it waits for the lock and then recounts its blob, since this
    // walk may or may not pass it.
    await this.driver.putContent(layout.quotaUsage(namespace), JSON.stringify({ bytes: 0, blobs: 0, complete: false } satisfies UsageDocument));
    const measured = await this.measure(namespace);
    const stored = await digestFolders(this.driver, layout.quotaBlobsDir(namespace));
    await mapLimit(stored, WALK_CONCURRENCY, async (digest) => {
      if (!measured.has(digest.value)) await this.driver.delete(layout.quotaBlob(namespace, digest));
    });
    const storedSet = new Set(stored.map((d) => d.value));
    await mapLimit([...measured], WALK_CONCURRENCY, async ([value, marker]) => {
      const digest = tryParseDigest(value)!;
      if (storedSet.has(value)) {
        const current = await this.marker(namespace, digest);
        if (current?.refs === marker.refs && current.size === marker.size) return;
      }
      await this.driver.putContent(layout.quotaBlob(namespace, digest), JSON.stringify(marker));
    });
    const now: Usage = { bytes: [...measured.values()].reduce((sum, m) => sum + m.size, 0), blobs: measured.size };
    await this.driver.putContent(layout.quotaUsage(namespace), JSON.stringify({ ...now, complete: true } satisfies UsageDocument));
    return { was: before?.complete ? { bytes: before.bytes, blobs: before.blobs } : undefined, now };
  }
}
