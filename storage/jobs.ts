// The storage lifecycle jobs — garbage collection and retention — as one service that every way of
// starting them shares: the server's schedule, `berth gc` / `berth retention run` (through a running
// server's control socket, or directly), and the admin API. Each run that changed something is recorded in
// storage (when, by whom, what it did), so any process can say when the last one ran.
import { hostname } from 'node:os';
import type { StorageDriver } from './driver/index.ts';
import type { GarbageCollector, GcOptions, GcReport } from './gc.ts';
import { layout } from './layout.ts';
import type { Lock } from './coordination/index.ts';
import type { ManifestStore } from './manifests.ts';
import type { PolicyStore } from './policies.ts';
import type { StorageListener } from './listener.ts';
import { applyRetention, type RetentionOptions, type RetentionResult } from './retention.ts';

export type JobName = 'garbage-collection' | 'retention';

/** The last completed run of a job, kept in storage. */
export interface JobRecord {
  finishedAt: string;
  /** host/pid of the process that ran it. */
  by: string;
  /** Counts, not lists: bounded whatever the run removed. */
  summary?: Record<string, unknown>;
}

export function gcSummary(report: GcReport): Record<string, unknown> {
  return {
    dryRun: report.dryRun,
    startedAt: report.startedAt,
    finishedAt: report.finishedAt,
    blobsRemoved: report.blobsRemoved.length,
    manifestsRemoved: report.manifestsRemoved.length,
    bytesFreed: report.bytesFreed,
    blobsKeptInUse: report.blobsKeptInUse.length,
    quotaUsageCorrected: report.quotaUsageCorrected.map((c) => c.namespace),
  };
}

function retentionSummary(results: RetentionResult[]): Record<string, unknown> {
  return { repositories: results.length, tagsDeleted: results.reduce((n, r) => n + r.deleted.length, 0) };
}

export async function readJobRecord(driver: StorageDriver, job: string): Promise<JobRecord | undefined> {
  const raw = await driver.getContent(layout.jobStamp(job)).catch(() => undefined);
  if (!raw) return undefined;
  try {
    const record = JSON.parse(raw.toString()) as Partial<JobRecord>;
    return typeof record.finishedAt === 'string' ? (record as JobRecord) : undefined;
  } catch {
    return undefined;
  }
}

export async function writeJobRecord(driver: StorageDriver, job: string, finishedAt: Date, summary?: Record<string, unknown>): Promise<void> {
  const record: JobRecord = { finishedAt: finishedAt.toISOString(), by: `${hostname()}/${process.pid}`, ...(summary ? { summary } : {}) };
  await driver.putContent(layout.jobStamp(job), JSON.stringify(record));
}

export class LifecycleJobs {
  /** Runs in this process now, per job (another process's run shows only in the lock it holds). */
  private readonly inProgress = new Map<JobName, number>();

  constructor(
    private readonly driver: StorageDriver,
    private readonly gc: GarbageCollector,
    private readonly manifests: ManifestStore,
    private readonly policies: PolicyStore,
    private readonly lock: Lock,
  ) {}

  /** Told of each collection that was not a dry run (the webhooks' event source, injected by the server). */
  listener?: StorageListener;

  /** One collection (the collector holds the shared `gc` lock); recorded unless a dry run. */
  collectGarbage(options: GcOptions): Promise<GcReport> {
    return this.track('garbage-collection', async () => {
      const report = await this.gc.run(options);
      if (!report.dryRun) {
        await writeJobRecord(this.driver, 'garbage-collection', new Date(report.finishedAt ?? Date.now()), gcSummary(report));
        await this.listener?.garbageCollected?.(gcSummary(report));
      }
      return report;
    });
  }

  /** The retention policies applied once, under the shared `retention` lock; recorded unless a dry run. */
  applyRetention(options: RetentionOptions = {}): Promise<RetentionResult[]> {
    return this.track('retention', async () => {
      const results = await this.lock.run('retention', () => applyRetention(this.driver, this.manifests, this.policies, options));
      if (!options.dryRun) await writeJobRecord(this.driver, 'retention', new Date(), retentionSummary(results));
      return results;
    });
  }

  last(job: JobName): Promise<JobRecord | undefined> {
    return readJobRecord(this.driver, job);
  }

  isRunning(job: JobName): boolean {
    return (this.inProgress.get(job) ?? 0) > 0;
  }

  private async track<T>(job: JobName, run: () => Promise<T>): Promise<T> {
    this.inProgress.set(job, (this.inProgress.get(job) ?? 0) + 1);
    try {
      return await run();
    } finally {
      this.inProgress.set(job, this.inProgress.get(job)! - 1);
    }
  }
}
