// A mirror's `maxBytes`: what was pulled least recently goes first. Each mirrored manifest has a small record
// in storage (which repository, its digest, when last pulled, the blobs it names and their sizes), written
// when it is stored and then at most once a minute per process however often it is pulled. When the
// distinct blobs the records name exceed maxBytes, the least recently pulled manifests are deleted (with
// their tags) and their blobs unlinked from the repository unless a manifest kept there still names them;
// garbage collection then frees only blobs that no repository links, so a blob a local image shares stays.
import { createHash } from 'node:crypto';
import { layout, parseReference, tryParseDigest, type Storage } from '../storage/index.ts';

/** How long a pull's record may lag behind the pulls (each process writes at most once per this, per manifest). */
const RECORD_EVERY_MS = 60_000;
/** Manifests whose last record time this process remembers; the oldest are forgotten (and written again). */
const MAX_REMEMBERED = 50_000;
/** Blob descriptors a record keeps: a manifest naming more is counted by these only. */
const MAX_BLOBS_PER_RECORD = 1000;
/** Records an eviction reads; a mirror holding more manifests is trimmed among the first this many listed. */
const MAX_RECORDS = 20_000;
/** A trim reads every record: one starts at most this often per process (one asked for sooner runs then). */
const TRIM_EVERY_MS = 10_000;
const READ_CONCURRENCY = 8;

export interface PullRecord {
  name: string;
  digest: string;
  /** Milliseconds since the epoch of the last recorded pull. */
  pulledAt: number;
  /** The manifest itself and the blobs it names (config and layers; an index's manifests). */
  blobs: Array<{ digest: string; size: number }>;
}

export interface Evicted {
  name: string;
  digest: string;
}

/** The config, layers and child manifests a manifest names, with their sizes, as far as its JSON says. */
export function namedBlobs(content: Buffer): Array<{ digest: string; size: number }> {
  let parsed: { config?: unknown; layers?: unknown; manifests?: unknown };
  try {
    parsed = JSON.parse(content.toString('utf8')) as typeof parsed;
  } catch {
    return [];
  }
  const descriptors = [parsed.config, ...(Array.isArray(parsed.layers) ? parsed.layers : []), ...(Array.isArray(parsed.manifests) ? parsed.manifests : [])];
  const blobs: Array<{ digest: string; size: number }> = [];
  for (const d of descriptors) {
    if (blobs.length >= MAX_BLOBS_PER_RECORD) break;
    const { digest, size } = (d ?? {}) as { digest?: unknown; size?: unknown };
    if (typeof digest === 'string' && tryParseDigest(digest) && typeof size === 'number' && Number.isSafeInteger(size) && size >= 0) blobs.push({ digest, size });
  }
  return blobs;
}

export class Eviction {
  private readonly recordedAt = new Map<string, number>();
  private running?: Promise<Evicted[]>;
  private again = false;
  private lastTrim = 0;
  /** The bytes the last trim left, plus what this process fetched since: no trim while this is within maxBytes. */
  private estimate?: number;

  constructor(
    private readonly storage: Storage,
    private readonly prefix: string,
    private readonly maxBytes: number | undefined,
    /** Told of each trim that evicted something, as it ends. */
    private readonly report: (evicted: Evicted[]) => void = () => {},
  ) {}

  private folder(): string {
    return layout.mirrorPullsDir(this.prefix);
  }

  private path(name: string, digest: string): string {
    return layout.mirrorPull(this.prefix, createHash('sha256').update(`${name}@${digest}`).digest('hex'));
  }

  /** Notes a pull of manifest `digest` of `name` (bytes `content`); written when due. Never throws: a pull is not failed by its bookkeeping. */
  async pulled(name: string, digest: string, content: Buffer, now = Date.now()): Promise<void> {
    if (this.maxBytes === undefined) return;
    const key = `${name}@${digest}`;
    const last = this.recordedAt.get(key);
    if (last !== undefined && now - last < RECORD_EVERY_MS) return;
    this.recordedAt.delete(key);
    this.recordedAt.set(key, now);
    if (this.recordedAt.size > MAX_REMEMBERED) this.recordedAt.delete(this.recordedAt.keys().next().value!);
    const record: PullRecord = { name, digest, pulledAt: now, blobs: [{ digest, size: content.length }, ...namedBlobs(content)] };
    await this.storage.driver.putContent(this.path(name, digest), JSON.stringify(record)).catch(() => this.recordedAt.delete(key));
  }

  /**
   * Trims the mirror to maxBytes after `fetched` more bytes were stored: at once when due, else when
   * TRIM_EVERY_MS has passed since the last; once at a time per process (a request during a run makes one more).
   */
  trim(fetched = 0): Promise<Evicted[]> {
    if (this.maxBytes === undefined) return Promise.resolve([]);
    if (this.estimate !== undefined) this.estimate += fetched;
    if (this.estimate !== undefined && this.estimate <= this.maxBytes) return Promise.resolve([]);
    if (this.running) {
      this.again = true;
      return this.running;
    }
    const run = async (): Promise<Evicted[]> => {
      const evicted: Evicted[] = [];
      do {
        this.again = false;
        const wait = this.lastTrim + TRIM_EVERY_MS - Date.now();
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait).unref());
        this.lastTrim = Date.now();
        const now = await this.trimOnce(this.maxBytes!);
        if (now.length > 0) this.report(now);
        evicted.push(...now);
      } while (this.again);
      return evicted;
    };
    this.running = run().finally(() => (this.running = undefined));
    return this.running;
  }

  private async records(): Promise<PullRecord[]> {
    const paths = await this.storage.driver.list(this.folder(), { limit: MAX_RECORDS });
    const records: PullRecord[] = [];
    for (let i = 0; i < paths.length; i += READ_CONCURRENCY) {
      const read = await Promise.all(paths.slice(i, i + READ_CONCURRENCY).map((p) => this.storage.driver.getContent(p.startsWith('/') ? p : `${this.folder()}/${p}`)));
      for (const bytes of read) {
        try {
          if (bytes) records.push(JSON.parse(bytes.toString('utf8')) as PullRecord);
        } catch {
          // A torn record: that manifest is simply not counted until it is pulled again.
        }
      }
    }
    return records;
  }

  private async trimOnce(maxBytes: number): Promise<Evicted[]> {
    const records = (await this.records()).sort((a, b) => a.pulledAt - b.pulledAt);
    const holders = new Map<string, number>();
    const sizes = new Map<string, number>();
    for (const r of records) for (const b of r.blobs) {
      holders.set(b.digest, (holders.get(b.digest) ?? 0) + 1);
      sizes.set(b.digest, b.size);
    }
    let total = [...sizes.values()].reduce((a, b) => a + b, 0);
    const evicted: Evicted[] = [];
    // The most recently pulled stays, even alone over the limit: evicting what is being pulled helps no one.
    for (const record of records.slice(0, -1)) {
      if (total <= maxBytes) break;
      await this.evict(record, records);
      for (const b of record.blobs) {
        const left = holders.get(b.digest)! - 1;
        holders.set(b.digest, left);
        if (left === 0) total -= b.size;
      }
      evicted.push({ name: record.name, digest: record.digest });
    }
    this.estimate = total;
    return evicted;
  }

  /** Deletes the manifest and its tags, and unlinks its blobs that no other kept manifest of the repository names. */
  private async evict(record: PullRecord, records: PullRecord[]): Promise<void> {
    const reference = parseReference(record.digest);
    if (reference?.kind === 'digest') await this.storage.manifests.delete(record.name, reference);
    await this.storage.driver.delete(this.path(record.name, record.digest));
    const index = records.indexOf(record);
    if (index >= 0) records.splice(index, 1);
    const kept = new Set(records.filter((r) => r.name === record.name).flatMap((r) => r.blobs.map((b) => b.digest)));
    for (const b of record.blobs.slice(1)) {
      const digest = tryParseDigest(b.digest);
      if (digest && !kept.has(b.digest)) await this.storage.blobs.unlink(record.name, digest);
    }
    this.recordedAt.delete(`${record.name}@${record.digest}`);
  }
}
