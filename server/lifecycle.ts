// The storage lifecycle jobs the server runs on a schedule: retention, then garbage collection. Each
// runs in one process at a time (the shared lock), whichever replica or worker gets there first.
import { applyRetention, type GcReport } from '../storage/index.ts';
import type { Berth } from './app.ts';
import type { Config } from './config.ts';

export function gcSummary(report: GcReport): Record<string, unknown> {
  return {
    dryRun: report.dryRun,
    startedAt: report.startedAt,
    finishedAt: report.finishedAt,
    blobsRemoved: report.blobsRemoved.length,
    manifestsRemoved: report.manifestsRemoved.length,
    bytesFreed: report.bytesFreed,
    blobsKeptInUse: report.blobsKeptInUse.length,
  };
}

/** Starts the timers the configuration asks for; returns what stops them. */
export function scheduleLifecycle(config: Config, berth: Berth): () => void {
  const { storage, coordination, logger } = berth;
  const timers: NodeJS.Timeout[] = [];
  const every = (seconds: number, job: () => Promise<void>, what: string) => {
    if (seconds <= 0) return;
    let running = false;
    const timer = setInterval(() => {
      if (running) return;
      running = true;
      job()
        .catch((err: Error) => logger.warn({ err: err.message }, `${what} failed; will try again`))
        .finally(() => (running = false));
    }, seconds * 1000);
    timer.unref();
    timers.push(timer);
  };

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
