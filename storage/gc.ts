// Online garbage collection: mark every blob that a kept manifest reaches, sweep the stored blobs nobody
// reaches. It runs while clients push, so a sweep never trusts the mark alone:
// - a blob or untagged manifest younger than the grace period is never a candidate;
// - a candidate linked or re-linked to a repository since the run began (an upload of the same bytes, a
//   mount) is in use: it stays. Links are made under the blob's lock, which the sweep holds while it
//   checks and deletes, so none is made between the check and the delete;
// - a manifest pushed during the run may name a candidate whose link it saw before the sweep removed it.
//   The sweep first unlinks the candidate everywhere (which bumps the repositories' link generations),
//   then reads every revision written since the mark; ManifestStore.put writes its revision first, then
//   checks its references again with fresh generations. One of the two sees the other: the sweep keeps
//   (and re-links) the blob, or the push is refused with MANIFEST_BLOB_UNKNOWN and leaves no revision.
//   A manifest's own bytes are handled the same way from the other side: the push stores them again if
//   they are gone, and the sweep puts back those of a manifest pushed again during the run.
// Last, the maintained quota usage of each namespace with a quota is rebuilt from a walk (see Quotas.reconcile).
import type { BlobStore } from './blobs.ts';
import type { StorageDriver } from './driver/index.ts';
import { baseName, layout } from './layout.ts';
import { readLink, statLink } from './links.ts';
import type { Lock } from './coordination/index.ts';
import type { ManifestStore } from './manifests.ts';
import type { Quotas, UsageCorrection } from './quotas.ts';
import { tryParseDigest, type Digest } from './reference.ts';
import { digestFolders, mapLimit, repositoryNames, storedBlobs, WALK_CONCURRENCY } from './walk.ts';

export interface GcOptions {
  /** Report what would be removed; change nothing. */
  dryRun?: boolean;
  /** Also remove manifests that no tag reaches (directly, as an index child, or as a referrer). */
  deleteUntagged?: boolean;
  /** Blobs and untagged manifests stored less than this long ago are never removed. */
  graceSeconds: number;
  /** The time ages are measured at (default: now). */
  now?: Date;
  /**
   * A link whose modification time is this close to the run's start counts as made during the run:
   * S3 reports whole seconds. Default 1000.
   */
  clockSlackMs?: number;
}

export interface GcReport {
  dryRun: boolean;
  /** When this run got the lock, and when it ended (ISO 8601). */
  startedAt: string;
  finishedAt?: string;
  blobsRemoved: Array<{ digest: string; size: number }>;
  manifestsRemoved: Array<{ repository: string; digest: string }>;
  bytesFreed: number;
  /** Candidates that something started to use during the run, so they stayed. */
  blobsKeptInUse: string[];
  /** Namespaces whose maintained quota usage was missing or wrong (a crash between a link and its count). */
  quotaUsageCorrected: UsageCorrection[];
}

/** Revisions of one repository read at once (repositories are walked WALK_CONCURRENCY at a time). */
const PER_REPOSITORY_CONCURRENCY = 4;

/** Manifests are at most a few MiB: a candidate this small is read first, in case its bytes must return. */
const MANIFEST_MAX_BYTES = 4 * 1024 * 1024;

interface Candidate {
  digest: Digest;
  size: number;
  holders: string[];
  /** The bytes, when they could be a manifest's. */
  content?: Buffer;
}

export class GarbageCollector {
  /** References of a manifest by digest: the same bytes name the same blobs in every repository. */
  private readonly references = new Map<string, string[]>();

  constructor(
    private readonly driver: StorageDriver,
    private readonly blobs: BlobStore,
    private readonly manifests: ManifestStore,
    private readonly lock: Lock,
    private readonly quotas: Quotas,
  ) {}

  /** One collection at a time across every process sharing the lock (Redis, or the cluster primary). */
  run(options: GcOptions): Promise<GcReport> {
    return this.lock.run('gc', async () => {
      const report = await this.collect(options);
      if (!options.dryRun) report.quotaUsageCorrected = await this.quotas.reconcile();
      report.finishedAt = new Date().toISOString();
      return report;
    });
  }

  private async collect(options: GcOptions): Promise<GcReport> {
    const startedAt = Date.now();
    const now = options.now?.getTime() ?? startedAt;
    const oldBefore = now - options.graceSeconds * 1000;
    const inUseSince = startedAt - (options.clockSlackMs ?? 1000);
    const report: GcReport = { dryRun: Boolean(options.dryRun), startedAt: new Date(startedAt).toISOString(), blobsRemoved: [], manifestsRemoved: [], bytesFreed: 0, blobsKeptInUse: [], quotaUsageCorrected: [] };
    this.references.clear();

    // Mark.
    const seenRevisions = new Map<string, Set<string>>();
    const linkedIn = new Map<string, string[]>();
    const marked = new Set<string>();
    const unkept: Array<{ repository: string; digest: Digest }> = [];
    await mapLimit(await repositoryNames(this.driver), WALK_CONCURRENCY, async (repository) => {
      const [revisions, links] = await Promise.all([
        digestFolders(this.driver, layout.revisionsDir(repository)),
        digestFolders(this.driver, layout.layersOf(repository)),
      ]);
      seenRevisions.set(repository, new Set(revisions.map((d) => d.value)));
      for (const digest of links) linkedIn.set(digest.value, [...(linkedIn.get(digest.value) ?? []), repository]);
      const kept = options.deleteUntagged ? await this.reachableFromTags(repository, revisions, oldBefore) : new Set(revisions.map((d) => d.value));
      await mapLimit(revisions, PER_REPOSITORY_CONCURRENCY, async (digest) => {
        if (!kept.has(digest.value)) return unkept.push({ repository, digest });
        marked.add(digest.value);
        for (const reference of await this.referencesOf(repository, digest)) marked.add(reference);
      });
    });

    // Untagged manifests (only when asked), each checked again under its lock.
    for (const { repository, digest } of unkept) {
      if (options.dryRun || (await this.manifests.removeUntagged(repository, digest, oldBefore))) {
        report.manifestsRemoved.push({ repository, digest: digest.value });
        seenRevisions.get(repository)?.delete(digest.value);
      } else {
        marked.add(digest.value);
        for (const reference of await this.referencesOf(repository, digest)) marked.add(reference);
      }
    }

    // Candidates: stored, unmarked, older than the grace period.
    const unmarked = (await storedBlobs(this.driver)).filter((digest) => !marked.has(digest.value));
    const infos = await mapLimit(unmarked, WALK_CONCURRENCY, (digest) => this.driver.stat(layout.blobData(digest)));
    const candidates: Candidate[] = [];
    for (const [i, digest] of unmarked.entries()) {
      const info = infos[i];
      if (info && info.modifiedAt.getTime() > oldBefore) continue;
      candidates.push({ digest, size: info?.size ?? 0, holders: linkedIn.get(digest.value) ?? [] });
    }
    if (options.dryRun) {
      for (const c of candidates) report.blobsRemoved.push({ digest: c.digest.value, size: c.size });
      report.bytesFreed = candidates.reduce((sum, c) => sum + c.size, 0);
      return report;
    }

    // Sweep, step 1: unlink each candidate everywhere, unless a repository linked it during the run.
    const unlinked: Candidate[] = [];
    for (const candidate of candidates) {
      const inUse = await this.blobs.guarded(candidate.digest, async () => {
        const holders = [...new Set([...candidate.holders, ...(await this.blobs.holders(candidate.digest))])];
        for (const repository of holders) {
          const link = await statLink(this.driver, layout.layerLink(repository, candidate.digest));
          const modified = link?.modifiedAt.getTime();
          if (modified !== undefined && (modified > oldBefore || modified >= inUseSince)) return true;
        }
        if (candidate.size <= MANIFEST_MAX_BYTES) candidate.content = await this.blobs.read(candidate.digest);
        for (const repository of holders) await this.blobs.unlink(repository, candidate.digest);
        candidate.holders = holders;
        return false;
      });
      if (inUse) report.blobsKeptInUse.push(candidate.digest.value);
      else unlinked.push(candidate);
    }

    // Step 2: what the revisions written since the mark reference stays, linked again where it was.
    const referencedNow = await this.referencedByNewRevisions(seenRevisions);
    const doomed: Candidate[] = [];
    for (const candidate of unlinked) {
      if (!referencedNow.has(candidate.digest.value)) {
        doomed.push(candidate);
        continue;
      }
      await this.blobs.guarded(candidate.digest, async () => {
        for (const repository of candidate.holders) await this.blobs.link(repository, candidate.digest);
      });
      report.blobsKeptInUse.push(candidate.digest.value);
    }

    // Step 3: delete, unless a repository linked the blob since step 1.
    const removed: Candidate[] = [];
    for (const candidate of doomed) {
      const deleted = await this.blobs.guarded(candidate.digest, async () => {
        if ((await this.blobs.holders(candidate.digest)).length > 0) return false;
        await this.driver.delete(layout.blobDir(candidate.digest));
        return true;
      });
      if (deleted) removed.push(candidate);
      else report.blobsKeptInUse.push(candidate.digest.value);
    }

    // Step 4: a manifest pushed again during the run whose bytes were just deleted gets them back.
    const revisedNow = await this.referencedByNewRevisions(seenRevisions);
    for (const candidate of removed) {
      if (revisedNow.has(candidate.digest.value) && candidate.content) {
        await this.blobs.putContent(candidate.digest, candidate.content);
        report.blobsKeptInUse.push(candidate.digest.value);
        continue;
      }
      report.blobsRemoved.push({ digest: candidate.digest.value, size: candidate.size });
      report.bytesFreed += candidate.size;
    }
    return report;
  }

  /**
   * The revisions a tag reaches, with their index children and referrers, and every revision younger
   * than the grace period (an index's children are pushed before the index that names them).
   */
  private async reachableFromTags(repository: string, revisions: Digest[], oldBefore: number): Promise<Set<string>> {
    const pending: string[] = [];
    for (const tag of await this.manifests.tags(repository)) {
      const target = await readLink(this.driver, layout.tag(repository, tag));
      if (target) pending.push(target);
    }
    for (const digest of revisions) {
      const info = await this.driver.stat(layout.revision(repository, digest));
      if (!info || info.modifiedAt.getTime() > oldBefore) pending.push(digest.value);
    }
    const stored = new Set(revisions.map((d) => d.value));
    const kept = new Set<string>();
    while (pending.length > 0) {
      const value = pending.pop()!;
      const digest = tryParseDigest(value);
      if (kept.has(value) || !digest || !stored.has(value)) continue;
      kept.add(value);
      pending.push(...(await this.referencesOf(repository, digest)));
      for (const entry of await this.driver.list(layout.referrersOf(repository, digest))) {
        pending.push(baseName(entry).replace('-', ':'));
      }
    }
    return kept;
  }

  /** What a stored manifest names: its config, layers and child manifests. */
  private async referencesOf(repository: string, digest: Digest): Promise<string[]> {
    const known = this.references.get(digest.value);
    if (known) return known;
    const references = await this.manifests.referencesOf(repository, digest);
    this.references.set(digest.value, references);
    return references;
  }

  /** Every digest that revisions written since the mark are, or name. */
  private async referencedByNewRevisions(seen: Map<string, Set<string>>): Promise<Set<string>> {
    const found = new Set<string>();
    await mapLimit(await repositoryNames(this.driver), WALK_CONCURRENCY, async (repository) => {
      const before = seen.get(repository);
      for (const digest of await digestFolders(this.driver, layout.revisionsDir(repository))) {
        if (before?.has(digest.value)) continue;
        found.add(digest.value);
        for (const reference of await this.referencesOf(repository, digest)) found.add(reference);
      }
    });
    return found;
  }
}
