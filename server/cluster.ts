// `berth serve --workers N`: N worker processes (node:cluster) share one port. The primary forks them,
// replaces one that dies, arbitrates locks and relays cache invalidations when there is no Redis, and
// gathers metrics from all of them.
import cluster, { type Worker } from 'node:cluster';
// Straight to storage's coordination room, not storage/index.ts: the primary only forks and relays, and
// should not carry the whole registry (S3 SDK, Koa…) in memory. Workers load the app when they start.
import { ClusterAnnouncementRelay, ClusterGenerationRelay, ClusterLockArbiter, ClusterRateRelay } from '../storage/coordination/index.ts';
import type { Config } from './config.ts';
import { createLogger } from './logging.ts';
import { isMetricsRequest, type MetricsReply } from './metrics.ts';
import { aggregatorRegistry } from './prometheus.ts';

/** Serves in this process until SIGTERM/SIGINT, then lets in-flight requests finish and exits. */
export async function serveOne(config: Config): Promise<void> {
  const { createApp, startServer } = await import('./app.ts');
  (await import('./young-buffers.ts')).tuneHeapForUploads();
  const berth = await createApp(config);
  // A bug in one request must not take the registry down for everyone: log it and keep serving.
  process.on('unhandledRejection', (err) => berth.logger.error({ err }, 'unhandled rejection'));
  process.on('uncaughtException', (err) => berth.logger.error({ err }, 'uncaught exception'));
  const running = await startServer(config, berth);
  const stop = (signal: string) => {
    berth.logger.info({ signal }, 'finishing in-flight requests');
    void running.close().then(() => process.exit(0));
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

export async function serve(config: Config): Promise<void> {
  // Once, before any worker starts: a registry whose bucket does not answer must not serve (and must not
  // restart workers forever). A local folder needs no check.
  if (!cluster.isWorker && config.s3) await (await import('./app.ts')).checkStorage(config);
  if (config.workers <= 1 || cluster.isWorker) return serveOne(config);
  await runPrimary(config);
}

async function runPrimary(config: Config): Promise<void> {
  const logger = createLogger(config.logLevel);
  const arbiter = new ClusterLockArbiter();
  const relay = new ClusterGenerationRelay();
  const rates = new ClusterRateRelay();
  const announcements = new ClusterAnnouncementRelay();
  const aggregator = new (await aggregatorRegistry())();
  let stopping = false;

  const fork = (): Worker => {
    const worker = cluster.fork();
    arbiter.attach(worker);
    relay.attach(worker);
    rates.attach(worker);
    announcements.attach(worker);
    worker.on('message', (message: unknown) => {
      if (!isMetricsRequest(message)) return;
      void aggregator.clusterMetrics().then(
        (text) => worker.send({ berthMetrics: 'reply', id: message.id, text, type: aggregator.contentType } satisfies MetricsReply),
        (err: Error) => worker.send({ berthMetrics: 'reply', id: message.id, text: `# ${err.message}\n`, type: 'text/plain' } satisfies MetricsReply),
      );
    });
    return worker;
  };

  cluster.on('exit', (worker, code, signal) => {
    if (!stopping) {
      logger.error({ pid: worker.process.pid, code, signal }, 'worker died; starting another');
      fork();
    } else if (Object.keys(cluster.workers ?? {}).length === 0) {
      process.exit(0);
    }
  });
  for (let i = 0; i < config.workers; i++) fork();
  logger.info({ workers: config.workers }, 'berth primary started');

  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'stopping workers');
    for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill('SIGTERM');
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}
