// One mirror: the repositories under its prefix are copies of the upstream's, fetched when first pulled
// and kept in storage as ordinary (read-only) repositories. A digest, once stored, is never asked for
// again; a tag is asked for with HEAD at most once per tagTtlSeconds, and served stale when the upstream
// cannot answer. Blobs are fetched once however many clients want them (fill.ts).
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { isStorageError, layout, LocalLock, parseReference, type Announcements, type Digest, type Lock, type Reference, type Storage } from '../storage/index.ts';
import type { MirrorConfig } from './config.ts';
import { Eviction } from './eviction.ts';
import { BlobFill, type StreamedFill } from './fill.ts';
import { fillKey, FillAnnouncer, FOLLOWER_IDLE_MS, FollowedFill } from './shared-fill.ts';
import { linkStoredBlob, storeBlob, storeManifest } from './store.ts';
import { Upstream, UpstreamDigestError, UpstreamError } from './upstream.ts';

/** What the mirror counts, per mirror (its prefix). */
export interface MirrorMetrics {
  hit(mirror: string): void;
  miss(mirror: string): void;
  stale(mirror: string): void;
  upstreamError(mirror: string): void;
  bytesFetched(mirror: string, n: number): void;
}

export interface MirrorLogger {
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
}

export interface MirrorDeps {
  storage: Storage;
  /** The coordination lock (Redis with replicas): one fill of a blob at a time across every process. */
  lock?: Lock;
  /** Where a fill says how far it is, so that clients of other processes stream it too (shared-fill.ts). */
  announcements?: Announcements;
  metrics?: MirrorMetrics;
  logger?: MirrorLogger;
  maxManifestBytes: number;
}

/** What a blob GET is answered from: storage, or a fill in progress, here or in another process (stream from it). */
export type BlobSource = { kind: 'stored' } | { kind: 'filling'; fill: StreamedFill };

/** Tag checks remembered in memory per process (and in storage for all); the oldest are forgotten first. */
const MAX_TAG_CHECKS = 50_000;
/** Resumptions of a blob fill the upstream cut. */
const MAX_RESUMES = 3;
/** Times a pull waits out the lock's wait (60 s with Redis) while another process fills the blob. */
const MAX_FILL_WAITS = 30;

export class Mirror {
  readonly prefix: string;
  readonly upstream: Upstream;
  /** When each tag (name:tag) was last found current upstream. */
  private readonly checkedAt = new Map<string, number>();
  /** Manifest lookups in progress (name@reference), so that concurrent pulls ask the upstream once. */
  private readonly resolving = new Map<string, Promise<void>>();
  /** Blob fills in progress, by digest. */
  private readonly fills = new Map<string, BlobFill>();
  /** Fills of other processes this process's clients are streamed from, by digest. */
  private readonly followed = new Map<string, FollowedFill>();
  /** Blobs whose fill this process is waiting to start (for the shared lock), by digest. */
  private readonly claims = new Map<string, Promise<BlobSource>>();
  private readonly lock: Lock;
  /** maxBytes: the pulls recorded, and the least recently pulled evicted. */
  readonly eviction: Eviction;

  constructor(
    readonly config: MirrorConfig,
    private readonly deps: MirrorDeps,
  ) {
    this.prefix = config.prefix;
    this.upstream = new Upstream(config);
    this.lock = deps.lock ?? new LocalLock();
    this.eviction = new Eviction(deps.storage, config.prefix, config.maxBytes, (evicted) =>
      this.deps.logger?.info({ mirror: this.prefix, evicted }, 'over maxBytes: evicted the least recently pulled'),
    );
  }

  /** The upstream's name for a repository of this mirror (`docker.io/library/alpine` → `library/alpine`). */
  upstreamName(name: string): string {
    return name.slice(this.prefix.length + 1);
  }

  /**
   * Makes the manifest `ref` of `name` servable from storage: fetched when missing, checked (HEAD) when
   * its tag was last checked over tagTtlSeconds ago. A malformed reference is left to the normal handler.
   */
  async manifest(name: string, ref: string): Promise<void> {
    const reference = parseReference(ref);
    if (!reference) return;
    const key = `${name}@${ref}`;
    let pending = this.resolving.get(key);
    if (!pending) {
      pending = this.resolve(name, reference).finally(() => this.resolving.delete(key));
      this.resolving.set(key, pending);
    }
    await pending;
    if (this.config.maxBytes !== undefined) {
      const stored = await this.deps.storage.manifests.get(name, reference);
      if (stored) await this.eviction.pulled(name, stored.digest, stored.content);
    }
  }

  /** Evicts what was pulled least recently while the mirror holds over maxBytes; in the background, logged. */
  private trim(fetched: number): void {
    if (this.config.maxBytes === undefined) return;
    this.eviction.trim(fetched).catch((err: Error) => this.deps.logger?.warn({ mirror: this.prefix, err: err.message }, 'eviction failed'));
  }

  private async resolve(name: string, reference: Reference): Promise<void> {
    const { manifests } = this.deps.storage;
    const local = await manifests.get(name, reference);
    if (reference.kind === 'digest') {
      // A digest names the same bytes forever: once stored, the upstream is never asked again.
      if (local) return this.count('hit');
      this.count('miss');
      const fetched = await this.upstreamCall(() => this.upstream.getManifest(this.upstreamName(name), reference.digest.value, this.deps.maxManifestBytes));
      verify(fetched.bytes, reference.digest, `manifest ${name}@${reference.digest.value}`);
      await storeManifest(this.deps.storage, name, reference, fetched.bytes, fetched.mediaType);
      return;
    }
    const tagKey = `${name}:${reference.tag}`;
    if (local && (await this.fresh(tagKey))) return this.count('hit');
    let current: { digest?: string };
    try {
      current = await this.upstreamCall(() => this.upstream.headManifest(this.upstreamName(name), reference.tag));
    } catch (err) {
      if (!local || !(err instanceof UpstreamError) || !err.unavailable) throw err;
      // The upstream is down, slow or rate-limiting: what we have is better than nothing.
      this.count('stale');
      this.deps.logger?.warn({ mirror: this.prefix, name, tag: reference.tag, err: err.message }, 'upstream unavailable: serving the cached tag');
      return;
    }
    if (local && current.digest === local.digest) {
      await this.remember(tagKey);
      return this.count('hit');
    }
    this.count('miss');
    // By digest when the HEAD named one (what we fetch is then what was current), else by tag.
    const fetched = await this.upstreamCall(() => this.upstream.getManifest(this.upstreamName(name), current.digest ?? reference.tag, this.deps.maxManifestBytes));
    const named = current.digest ?? fetched.digest;
    const algorithm = named?.startsWith('sha512:') ? 'sha512' : 'sha256';
    const digest = `${algorithm}:${createHash(algorithm).update(fetched.bytes).digest('hex')}`;
    if (named !== undefined && named !== digest) {
      this.count('upstreamError');
      throw new UpstreamDigestError(`manifest ${name}:${reference.tag}: the upstream named ${named} but sent bytes of ${digest}`);
    }
    await storeManifest(this.deps.storage, name, reference, fetched.bytes, fetched.mediaType);
    await this.remember(tagKey);
  }

  /**
   * Where blob `digest` of `name` is served from: storage when this repository has it (or another one
   * does: then it is linked here, without the upstream), else the one fill of it in progress.
   */
  async blob(name: string, digest: Digest): Promise<BlobSource> {
    const { blobs } = this.deps.storage;
    if ((await blobs.sizeIn(name, digest)) !== undefined || (await linkStoredBlob(this.deps.storage, name, digest))) {
      this.count('hit');
      return { kind: 'stored' };
    }
    const running = this.fills.get(digest.value) ?? this.followed.get(digest.value);
    if (running) return this.follow(name, digest, { kind: 'filling', fill: running });
    const waiting = this.claims.get(digest.value);
    if (waiting) return this.follow(name, digest, await waiting);
    const claim = this.claimFill(name, digest).finally(() => this.claims.delete(digest.value));
    this.claims.set(digest.value, claim);
    return claim;
  }

  /** A pull of `name` served from a fill or store made for another pull (perhaps of another repository): linked here too. */
  private async follow(name: string, digest: Digest, source: BlobSource): Promise<BlobSource> {
    this.count('hit');
    if (source.kind === 'stored') await linkStoredBlob(this.deps.storage, name, digest);
    else source.fill.finished.then(() => linkStoredBlob(this.deps.storage, name, digest)).catch(() => {});
    return source;
  }

  /**
   * Starts the one fill of `digest` across every process: under the lock `mirror-fill:<digest>`, held until
   * the fill ends. A process that waits for the lock follows the fill as soon as its filler announces it
   * (shared-fill.ts), or else, once it holds the lock, finds the blob stored and links it. A fill that
   * outlasts the lock's wait makes the waiter look again, up to MAX_FILL_WAITS times.
   */
  private claimFill(name: string, digest: Digest): Promise<BlobSource> {
    return new Promise<BlobSource>((resolve, reject) => {
      let settled = false;
      const settle = (source: BlobSource) => {
        if (settled) return;
        settled = true;
        resolve(source);
      };
      const stopFollowing = this.followElsewhere(name, digest, () => settled, settle);
      const attempt = (waits: number): void => {
        this.lock
          .run(`mirror-fill:${digest.value}`, async () => {
            // Followed elsewhere already: the lock came only after that fill; its end (stored or not) decides.
            if (settled) return;
            if (await linkStoredBlob(this.deps.storage, name, digest)) {
              this.count('hit');
              return settle({ kind: 'stored' });
            }
            const { fill, ended } = this.startFill(name, digest);
            settle({ kind: 'filling', fill });
            await ended;
          })
          .then(
            () => stopFollowing(),
            (err: unknown) => {
              if (settled) return stopFollowing();
              if (isStorageError(err, 'Busy') && waits < MAX_FILL_WAITS) return attempt(waits + 1);
              stopFollowing();
              reject(err);
            },
          );
      };
      attempt(0);
    });
  }

  /**
   * Watches for a fill of `digest` another process announces, and when one is heard before `settled()`,
   * gives it to `settle` (its blob then linked into `name` too). Returns what stops the watch while nothing
   * is followed; a followed fill stops it itself when it ends.
   */
  private followElsewhere(name: string, digest: Digest, settled: () => boolean, settle: (source: BlobSource) => void): () => void {
    const { announcements } = this.deps;
    if (!announcements || !FillAnnouncer.wanted(this.deps.storage)) return () => {};
    let followed: FollowedFill | undefined;
    let stop: (() => void) | undefined;
    let stopped = false;
    const stopUnlessFollowing = () => {
      stopped = true;
      if (!followed) stop?.();
    };
    announcements
      .watch(fillKey(digest), (value) => {
        if (followed) return followed.heard(value);
        if (value === undefined || settled() || stopped) return;
        const fill = FollowedFill.from(this.deps.storage, digest, value, FOLLOWER_IDLE_MS);
        if (!fill) return;
        followed = fill;
        this.followed.set(digest.value, fill);
        this.count('hit');
        fill.finished.then(() => linkStoredBlob(this.deps.storage, name, digest)).catch(() => {});
        fill.finished
          .catch(() => {})
          .finally(() => {
            stop?.();
            if (this.followed.get(digest.value) === fill) this.followed.delete(digest.value);
          });
        settle({ kind: 'filling', fill });
      })
      .then(
        (unwatch) => {
          stop = unwatch;
          if ((stopped && !followed) || (followed && followed.state !== 'running')) unwatch();
        },
        // No announcements to be had (shared state away, too many at once): the lock alone decides.
        () => {},
      );
    return stopUnlessFollowing;
  }

  /**
   * The upstream GET of a blob, into storage and to every client of this process that wants it (and, where
   * storage allows, announced to the others); `ended` resolves once it is over and no longer announced.
   */
  private startFill(name: string, digest: Digest): { fill: BlobFill; ended: Promise<void> } {
    this.count('miss');
    const upstreamName = this.upstreamName(name);
    const { announcements } = this.deps;
    let fill: BlobFill | undefined;
    const announcer = announcements && FillAnnouncer.wanted(this.deps.storage) ? new FillAnnouncer(announcements, this.deps.storage, digest, () => fill) : undefined;
    fill = new BlobFill(
      { open: (offset, signal) => this.upstreamCall(() => this.upstream.getBlob(upstreamName, digest.value, offset, signal)) },
      (bytes: Readable) => storeBlob(this.deps.storage, name, digest, bytes, (session) => announcer?.opened(session)),
      {
        idleTimeoutMs: this.config.timeoutSeconds * 1000,
        maxResumes: MAX_RESUMES,
        onBytes: (n) => this.deps.metrics?.bytesFetched(this.prefix, n),
      },
    );
    this.fills.set(digest.value, fill);
    const filled = fill;
    fill.finished.then(
      () => {
        this.fills.delete(digest.value);
        this.trim(filled.size ?? Number.POSITIVE_INFINITY);
      },
      (err: Error) => {
        this.fills.delete(digest.value);
        this.count('upstreamError');
        this.deps.logger?.warn({ mirror: this.prefix, name, digest: digest.value, err: err.message }, 'blob not cached: the fill failed');
      },
    );
    // Withdrawn only once stored (followers then find the blob) or failed (they are cut short).
    const ended = fill.finished.catch(() => {}).then(() => announcer?.end());
    return { fill, ended };
  }

  /** The size of a blob not stored yet, from the upstream (a HEAD before any GET). */
  blobSize(name: string, digest: Digest): Promise<number | undefined> {
    return this.upstreamCall(() => this.upstream.blobSize(this.upstreamName(name), digest.value));
  }

  /** Runs an upstream request; its failure is counted. */
  private async upstreamCall<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      this.count('upstreamError');
      throw err;
    }
  }

  /**
   * Whether the tag was found current upstream within tagTtlSeconds: by this process (memory), else by any
   * replica or worker (a small record in storage, read only when this process's own check is stale).
   */
  private async fresh(tagKey: string): Promise<boolean> {
    const ttl = this.config.tagTtlSeconds * 1000;
    const at = this.checkedAt.get(tagKey);
    if (at !== undefined && Date.now() - at < ttl) return true;
    const shared = Number((await this.deps.storage.driver.getContent(this.checkPath(tagKey)).catch(() => undefined))?.toString());
    if (!Number.isFinite(shared) || Date.now() - shared >= ttl) return false;
    this.note(tagKey, shared);
    return true;
  }

  private checkPath(tagKey: string): string {
    return layout.mirrorTagCheck(this.prefix, createHash('sha256').update(tagKey).digest('hex'));
  }

  private async remember(tagKey: string): Promise<void> {
    const now = Date.now();
    this.note(tagKey, now);
    // Derived and cheap to lose (a lost record costs one HEAD): not flushed, and a failure ignored. Written
    // before the answer, so that a pull the client sends next to another replica finds it.
    await this.deps.storage.driver.putContent(this.checkPath(tagKey), String(now), { durable: false }).catch(() => {});
  }

  private note(tagKey: string, at: number): void {
    this.checkedAt.delete(tagKey);
    this.checkedAt.set(tagKey, at);
    if (this.checkedAt.size > MAX_TAG_CHECKS) this.checkedAt.delete(this.checkedAt.keys().next().value!);
  }

  private count(what: 'hit' | 'miss' | 'stale' | 'upstreamError'): void {
    this.deps.metrics?.[what](this.prefix);
  }
}

function verify(bytes: Buffer, digest: Digest, what: string): void {
  const hex = createHash(digest.algorithm).update(bytes).digest('hex');
  if (hex !== digest.hex) throw new UpstreamDigestError(`${what}: the upstream sent bytes of ${digest.algorithm}:${hex}`);
}
