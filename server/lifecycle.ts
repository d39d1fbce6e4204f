// The storage lifecycle jobs the server runs on a schedule: expiring abandoned uploads, the expiry sweep
// of sessions, refresh tokens and cards, retention, then garbage collection. Every worker and replica
// keeps the timers, and each job runs once per interval across all of them: whoever's timer fires first
// runs it under the shared lock and stamps it in storage; the others see the stamp.
import { gcSummary, readJobRecord, writeJobRecord, type Lock, type StorageDriver } from '../storage/index.ts';
import type { Berth } from './app.ts';
import type { Config } from './config.ts';
import { expirySweep } from '../web/index.ts';

/** One scheduled job across processes: at most one run per interval, whichever process comes first. */
export class ScheduledJob {
  constructor(
    private readonly driver: StorageDriver,
    private readonly lock: Lock,
    readonly name: string,
    private readonly intervalMs: number,
    /** Resolves true when the job recorded its run itself (with what it did). */
    private readonly job: () => Promise<boolean | void>,
    private readonly now: () => number = Date.now,
  ) {}

  /** Runs the job unless another process finished it within the last interval; true when it ran here. */
  tick(): Promise<boolean> {
    return this.lock.run(`schedule:${this.name}`, async () => {
      const last = await readJobRecord(this.driver, this.name);
      const finishedAt = last ? Date.parse(last.finishedAt) : NaN;
      // Timers of different processes drift apart: a run a little less than an interval ago counts.
      if (this.now() - finishedAt < this.intervalMs * 0.9) return false;
      if (!(await this.job())) await writeJobRecord(this.driver, this.name, new Date(this.now()));
      return true;
    });
  }
}

/** Starts the timers the configuration asks for; returns what stops them. */
export function scheduleLifecycle(config: Config, berth: Berth): () => void {
  const { storage, coordination, logger } = berth;
  const timers: NodeJS.Timeout[] = [];
  const every = (seconds: number, job: () => Promise<boolean | void>, what: string) => {
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
    const results = await storage.jobs.applyRetention();
    const deleted = results.flatMap((r) => r.deleted.map((tag) => `${r.repository}:${tag}`));
    if (deleted.length > 0) logger.info({ deleted: deleted.slice(0, 100), count: deleted.length }, 'retention deleted tags');
    return true;
  }, 'retention');

  every(config.gcIntervalSeconds, async () => {
    const report = await storage.jobs.collectGarbage({ graceSeconds: config.gcGraceSeconds, deleteUntagged: config.gcDeleteUntagged });
    logger.info(gcSummary(report), 'garbage collection done');
    return true;
  }, 'garbage collection');

  return () => timers.forEach((timer) => clearInterval(timer));
}
