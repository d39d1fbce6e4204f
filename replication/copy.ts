// One run of one rule: for each repository and selected tag, the source's digest by one request; when
// the destination's tag already names it, only the digest's referrers are listed (a signature or an
// attestation pushed after the tag was copied is copied then), and for a reduced index (the destination's
// tag names an index made from it) nothing more. Otherwise the manifest and everything it reaches,
// children first (a child the destination holds is skipped whole: it is content-addressed, and stored
// only with its blobs), blobs by HEAD / mount / upload (never downloaded when present), manifests byte
// for byte under their digests, the referrers of what was copied after their subject, the tag last.
// Every request that meets 429, a 5xx or no answer is tried again after Retry-After (or a doubling
// wait), a bounded number of times; a full destination or a refusal that will not change stops the run
// (RunStopped).
import { createHash } from 'node:crypto';
import { RegistryRequestError, RegistryResponseError } from '../client/index.ts';
import { UpstreamDigestError, UpstreamError } from '../mirror/index.ts';
import { isForeignLayer, isStorageError, parseManifest, tryParseDigest, type Digest } from '../storage/index.ts';
import { RunStopped } from './errors.ts';
import { deferred, type Destination, type Manifest, type Source } from './ends.ts';
import { platformMatches, REDUCED_FROM, selectTags, type PlatformFacts } from './filters.ts';
import type { RunCounts } from './ledger.ts';
import type { Rule } from './rules.ts';

/** Referrers followed per manifest, and levels of referrers of referrers. */
const MAX_REFERRERS = 100;
const MAX_REFERRER_DEPTH = 3;
/** An image config read to learn its platform. */
const MAX_CONFIG_BYTES = 1024 * 1024;

export interface RetrySettings {
  maxAttempts: number;
  baseMs: number;
  maxMs: number;
}

export interface CopyProgress extends RunCounts {
  failures: string[];
}

type Verdict = { kind: 'retry'; waitMs?: number } | { kind: 'stop'; stop: RunStopped } | { kind: 'fail' };

/** What an error means for the run: try again (429, 5xx, no answer), stop (full, a lasting refusal), or fail this tag. */
export function judge(err: unknown): Verdict {
  if (err instanceof RunStopped) return { kind: 'stop', stop: err };
  const errno = (err as NodeJS.ErrnoException)?.code ?? ((err as Error)?.cause as NodeJS.ErrnoException | undefined)?.code;
  if (errno === 'ENOSPC' || errno === 'EDQUOT' || isStorageError(err, 'QuotaExceeded')) {
    return { kind: 'stop', stop: new RunStopped('storage-full', `the destination is full: ${(err as Error).message}`) };
  }
  const status = err instanceof UpstreamError || err instanceof RegistryRequestError ? err.status : undefined;
  if (status === 507) return { kind: 'stop', stop: new RunStopped('storage-full', `the destination is full: ${(err as Error).message}`) };
  if (status !== undefined && (status === 0 || status === 429 || status >= 500)) {
    const seconds = (err as UpstreamError | RegistryRequestError).retryAfterSeconds;
    return { kind: 'retry', ...(seconds === undefined ? {} : { waitMs: seconds * 1000 }) };
  }
  if (isStorageError(err, 'Unavailable') || isStorageError(err, 'Busy')) return { kind: 'retry' };
  // A tag or manifest gone between the listing and the copy: this tag fails, the run goes on.
  if (status === 404 || err instanceof UpstreamDigestError || err instanceof RegistryResponseError || isStorageError(err)) return { kind: 'fail' };
  if (status !== undefined) return { kind: 'stop', stop: new RunStopped('refused', `the remote refused, and will again: ${(err as Error).message}`) };
  return { kind: 'fail' };
}

export class Copier {
  readonly progress: CopyProgress = { copied: 0, skipped: 0, failed: 0, bytes: 0, failures: [] };

  constructor(
    private readonly rule: Rule,
    private readonly source: Source,
    private readonly destination: Destination,
    private readonly retry: RetrySettings,
    private readonly maxManifestBytes: number,
    /** Whether the run should go on (false: its claim was lost, or the server stops). */
    private readonly going: () => boolean = () => true,
    private readonly sleep: (ms: number) => Promise<void> = (ms) => new Promise((r) => setTimeout(r, ms)),
  ) {}

  /** The rule's run; throws RunStopped when it ends early. */
  async run(): Promise<void> {
    const repositories = await this.attempt(() => this.source.repositories(this.rule.repositories));
    for (const repository of repositories) {
      const tags = selectTags(await this.attempt(() => this.source.tags(repository)), this.rule);
      for (const tag of tags) {
        if (!this.going()) throw new RunStopped('unavailable', 'the run was given up (its claim was lost, or the server stopped)');
        try {
          await this.copyTag(repository, tag);
        } catch (err) {
          const verdict = judge(err);
          if (verdict.kind === 'stop') throw verdict.stop;
          if (verdict.kind === 'retry') throw new RunStopped('unavailable', `gave up after ${this.retry.maxAttempts} attempts: ${(err as Error).message}`);
          this.progress.failed++;
          this.progress.failures.push(`${repository}:${tag}: ${(err as Error).message}`);
        }
      }
    }
  }

  private target(repository: string): string {
    return this.rule.destination ? `${this.rule.destination}/${repository}` : repository;
  }

  private async copyTag(repository: string, tag: string): Promise<void> {
    const target = this.target(repository);
    const digest = await this.attempt(() => this.source.resolve(repository, tag));
    if (digest === undefined) return;
    const present = await this.attempt(() => this.destination.resolve(target, tag));
    if (present === digest) {
      this.progress.skipped++;
      await this.copyReferrers(repository, target, digest, 0);
      return;
    }
    // A reduced index has a digest of its own: the source's referrers name another subject.
    if (present !== undefined && this.rule.reduceIndex && (await this.reducedFrom(target, present)) === digest) {
      this.progress.skipped++;
      return;
    }
    const manifest = await this.fetchManifest(repository, digest);
    const parsed = parseManifest(manifest.bytes, manifest.mediaType);
    let bytes = manifest.bytes;
    if (parsed.isIndex) {
      const children = indexChildren(manifest.bytes);
      const wanted = this.rule.platforms ? children.filter((c) => platformMatches(c.platform, this.rule.platforms!)) : children;
      if (wanted.length === 0) return; // no platform asked for: not this rule's to copy
      for (const child of this.rule.reduceIndex ? wanted : children) await this.copyManifest(repository, target, child.digest, 0);
      if (this.rule.reduceIndex && wanted.length < children.length) bytes = reducedIndex(manifest.bytes, wanted.map((c) => c.digest), digest);
    } else if (this.rule.platforms && !platformMatches(await this.configPlatform(repository, parsed.config?.digest), this.rule.platforms)) {
      return;
    }
    if (bytes === manifest.bytes) await this.copyManifest(repository, target, digest, 0, manifest);
    await this.attempt(() => this.destination.putManifest(target, tag, bytes, manifest.mediaType));
    this.progress.bytes += bytes.length;
    this.progress.copied++;
  }

  /** A manifest (with what it reaches and its referrers) stored under its digest, unless the destination holds it. */
  private async copyManifest(repository: string, target: string, digest: string, depth: number, known?: Manifest): Promise<void> {
    if (!known && (await this.attempt(() => this.destination.manifest(target, digest))) !== undefined) return;
    const manifest = known ?? (await this.fetchManifest(repository, digest));
    const parsed = parseManifest(manifest.bytes, manifest.mediaType);
    for (const child of parsed.manifests) await this.copyManifest(repository, target, child.digest.value, depth);
    const blobs = [...(parsed.config ? [parsed.config] : []), ...parsed.layers.filter((l) => !isForeignLayer(l))];
    for (const blob of blobs) await this.copyBlob(repository, target, blob.digest, blob.size);
    await this.attempt(() => this.destination.putManifest(target, digest, manifest.bytes, manifest.mediaType));
    this.progress.bytes += manifest.bytes.length;
    await this.copyReferrers(repository, target, digest, depth);
  }

  /** The source's referrers of `digest` that the destination lacks (each with what it reaches and its own referrers). */
  private async copyReferrers(repository: string, target: string, digest: string, depth: number): Promise<void> {
    if (depth >= MAX_REFERRER_DEPTH) return;
    const referrers = await this.attempt(() => this.source.referrers(repository, digest));
    for (const referrer of referrers.slice(0, MAX_REFERRERS)) {
      if (tryParseDigest(referrer.digest)) await this.copyManifest(repository, target, referrer.digest, depth + 1);
    }
  }

  private async copyBlob(repository: string, target: string, digest: Digest, size: number): Promise<void> {
    const outcome = await this.attempt(() => this.destination.pushBlob(target, digest, size, (offset) => deferred(() => this.source.blob(repository, digest, offset))));
    if (outcome === 'uploaded') this.progress.bytes += size;
  }

  private async fetchManifest(repository: string, digest: string): Promise<Manifest> {
    const manifest = await this.attempt(() => this.source.manifest(repository, digest));
    if (manifest.bytes.length > this.maxManifestBytes) throw new RunStopped('refused', `${repository}@${digest} is larger than ${this.maxManifestBytes} bytes`);
    const parsed = tryParseDigest(digest)!;
    const hex = createHash(parsed.algorithm).update(manifest.bytes).digest('hex');
    if (hex !== parsed.hex) throw new UpstreamDigestError(`manifest ${repository}@${digest}: the source sent bytes of ${parsed.algorithm}:${hex}`);
    return manifest;
  }

  /** The os and architecture of an image, from its config (read whole, bounded). */
  private async configPlatform(repository: string, digest: Digest | undefined): Promise<PlatformFacts | undefined> {
    if (!digest) return undefined;
    const stream = await this.attempt(() => this.source.blob(repository, digest));
    const chunks: Buffer[] = [];
    let total = 0;
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      total += chunk.length;
      if (total > MAX_CONFIG_BYTES) {
        stream.destroy();
        return undefined;
      }
      chunks.push(chunk);
    }
    try {
      const config = JSON.parse(Buffer.concat(chunks).toString('utf8')) as PlatformFacts;
      return { os: config.os, architecture: config.architecture, variant: config.variant };
    } catch {
      return undefined;
    }
  }

  /** The source digest a reduced index at the destination was made from. */
  private async reducedFrom(target: string, digest: string): Promise<string | undefined> {
    const stored = await this.attempt(() => this.destination.manifest(target, digest));
    if (!stored) return undefined;
    try {
      return (JSON.parse(stored.bytes.toString('utf8')) as { annotations?: Record<string, string> }).annotations?.[REDUCED_FROM];
    } catch {
      return undefined;
    }
  }

  /** `fn`, tried again while it meets what waiting may cure. */
  private async attempt<T>(fn: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        const verdict = judge(err);
        if (verdict.kind !== 'retry' || attempt >= this.retry.maxAttempts || !this.going()) throw err;
        const wait = verdict.waitMs ?? Math.min(this.retry.maxMs, this.retry.baseMs * 2 ** (attempt - 1));
        if (wait > this.retry.maxMs) throw new RunStopped('unavailable', `the remote asks to wait ${Math.round(wait / 1000)} s, longer than ${this.retry.maxMs / 1000} s: ${(err as Error).message}`);
        await this.sleep(wait);
      }
    }
  }
}

interface Child {
  digest: string;
  platform?: PlatformFacts;
}

/** An index's children with their platforms, read from its bytes (storage's parser keeps no platforms). */
function indexChildren(bytes: Buffer): Child[] {
  const manifests = (JSON.parse(bytes.toString('utf8')) as { manifests?: Array<{ digest?: unknown; platform?: PlatformFacts }> }).manifests ?? [];
  return manifests.filter((m) => typeof m.digest === 'string').map((m) => ({ digest: m.digest as string, platform: m.platform }));
}

/**
 * A NEW index with only the kept children (their descriptors as they were, so the children keep their
 * digests) and the source index it was made from: its own digest, not the source's.
 */
export function reducedIndex(bytes: Buffer, keep: readonly string[], from: string): Buffer {
  const index = JSON.parse(bytes.toString('utf8')) as { manifests: Array<{ digest: string }>; annotations?: Record<string, string> };
  const kept = new Set(keep);
  return Buffer.from(
    JSON.stringify({ ...index, manifests: index.manifests.filter((m) => kept.has(m.digest)), annotations: { ...index.annotations, [REDUCED_FROM]: from } }),
  );
}
