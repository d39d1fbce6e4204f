// The storage lifecycle jobs the server runs on a schedule: expiring abandoned uploads, the expiry sweep
// of sessions, refresh tokens and cards, retention, then garbage collection. Every worker and replica
// keeps the timers, and each job runs once per interval across all of them: whoever's timer fires first
// runs it under the shared lock and stamps it in storage; the others see the stamp.
import { hostname } from 'node:os';
import { applyRetention, layout, type GcReport, type Lock, type StorageDriver } from '../storage/index.ts';
import type { Berth } from './app.ts';
import type { Config } from './config.ts';
import { expirySweep } from '../web/index.ts';

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

interface JobStamp {
  finishedAt: string;
  by: string;
}

/** One scheduled job across processes: at most one run per interval, whichever process comes first. */
export class ScheduledJob {
  constructor(
    private readonly driver: StorageDriver,
    private readonly lock: Lock,
    readonly name: string,
    private readonly intervalMs: number,
    private readonly job: () => Promise<void>,
    private readonly now: () => number = Date.now,
  ) {}

  /** Runs the job unless another process finished it within the last interval; true when it ran here. */
  tick(): Promise<boolean> {
    return this.lock.run(`schedule:${this.name}`, async () => {
      const path = layout.jobStamp(this.name);
      const last = await this.driver.getContent(path).catch(() => undefined);
      const finishedAt = last ? Date.parse((JSON.parse(last.toString()) as Partial<JobStamp>).finishedAt ?? '') : NaN;
      // Timers of different processes drift apart: a run a little less than an interval ago counts.
      if (this.now() - finishedAt < this.intervalMs * 0.9) return false;
      await this.job();
      const stamp: JobStamp = { finishedAt: new Date(this.now()).toISOString(), by: `${hostname()}/${process.pid}` };
      await this.driver.putContent(path, JSON.stringify(stamp));
      return true;
    });
  }
}

/** Starts the timers the configuration asks for; returns what stops them. */
export function scheduleLifecycle(config: Config, berth: Berth): () => void {
  const { storage, coordination, logger } = berth;
  const timers: NodeJS.Timeout[] = [];
  const every = (seconds: number, job: () => Promise<void>, what: string) => {
    if (seconds <= 0) return;
    const scheduled = new ScheduledJob(storage.driver, coordination.lock, what.replace(/ /g, '-'), seconds * 1000, job);
    let running = false;
    const timer = setInterval(() => {
      if (running) return;
      running = true;
      scheduled
        .tick()
        .catch((err: Error) => logger.warn({ err: err.message }, `${what} failed; will try again`))
        .finally(() => (running = false));
    }, seconds * 1000);
    timer.unref();
    timers.push(timer);
  };

  every(config.uploadPurgeIntervalSeconds, async () => {
    const removed = await storage.uploads.purgeExpired(new Date(Date.now() - config.uploadExpirySeconds * 1000));
    if (removed > 0) logger.info({ removed }, 'expired upload sessions removed');
  }, 'upload expiry');

  const sweep = expirySweep(storage, berth.auth, config.publicUrl);
  every(config.expirySweepIntervalSeconds, async () => {
    const removed = await sweep();
    if (removed.sessions + removed.refreshTokens + removed.cards > 0) logger.info(removed, 'expired sessions, refresh tokens and cards removed');
  }, 'expiry sweep');

  every(config.retentionIntervalSeconds, async () => {
    const results = await coordination.lock.run('retention', () => applyRetention(storage.driver, storage.manifests, storage.policies));
    const deleted = results.flatMap((r) => r.deleted.map((tag) => `${r.repository}:${tag}`));
    if (deleted.length > 0) logger.info({ deleted }, 'retention deleted tags');
  }, 'retention');

  every(config.gcIntervalSeconds, async () => {
    const report = await storage.gc.run({ graceSeconds: config.gcGraceSeconds, deleteUntagged: config.gcDeleteUntagged });
    logger.info(gcSummary(report), 'garbage collection done');
  }, 'garbage collection');

  return () => timers.forEach((timer) => clearInterval(timer));
}
