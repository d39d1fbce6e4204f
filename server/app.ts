// The composition root: config → storage → metrics → middleware → routes, in one readable place.
import Koa from 'koa';
import Router from '@koa/router';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import cluster from 'node:cluster';
import {
  clusterWorkerCoordination,
  createStorage,
  FilesystemDriver,
  localCoordination,
  createRedisCoordination,
  createS3Driver,
  type Coordination,
  type Storage,
  type StorageDriver,
} from '../storage/index.ts';
import { listenAddress, usesRedis, usesS3, type Config } from './config.ts';
import { distributionRoutes } from './distribution/routes.ts';
import { createLogger, requestLog, type Logger } from './logging.ts';
import { Metrics } from './metrics.ts';
import { errorMapping, rateLimit } from './middleware.ts';
import { scheduleLifecycle } from './lifecycle.ts';

export interface Berth {
  app: Koa;
  storage: Storage;
  coordination: Coordination;
  metrics: Metrics;
  logger: Logger;
}

export async function createApp(config: Config, logger: Logger = createLogger(config.logLevel)): Promise<Berth> {
  const metrics = new Metrics();
  const coordination = await chooseCoordination(config);
  const storage = createStorage(await createDriver(config, logger), metrics, coordination);
  const app = new Koa({ proxy: false });
  app.silent = true;
  app.on('error', (err: Error) => logger.debug({ err: err.message }, 'response stream ended early'));

  const router = new Router();
  router.get('/healthz', async (ctx) => {
    await storage.driver.list('/');
    ctx.state.route = 'healthz';
    ctx.body = { status: 'ok' };
  });
  router.get('/metrics', async (ctx) => {
    ctx.state.route = 'metrics';
    const { type, body } = await metrics.render();
    ctx.type = type;
    ctx.body = body;
  });
  const v2 = distributionRoutes({ config, storage, metrics });
  router.all('/v2', v2);
  router.all('/v2/{*rest}', v2);

  app.use(requestLog(logger));
  app.use(metrics.middleware());
  app.use(errorMapping(logger));
  app.use(rateLimit(config.rateLimitPerMinute, coordination.counter));
  app.use(router.routes());
  return { app, storage, coordination, metrics, logger };
}

/** S3 when a bucket is configured, else the folder BERTH_DATA. */
export async function createDriver(config: Config, logger?: Logger): Promise<StorageDriver> {
  if (!usesS3(config)) return new FilesystemDriver(config.dataDir);
  return createS3Driver({
    bucket: config.s3Bucket!,
    prefix: config.s3Prefix,
    region: config.s3Region,
    endpoint: config.s3Endpoint,
    forcePathStyle: config.s3ForcePathStyle,
    partSize: config.s3PartSize,
    requestTimeoutMs: config.s3RequestTimeoutMs,
    logger: logger && {
      warn: (message) => logger.warn({ s3: message }, 'S3 client warning'),
      error: (message) => logger.error({ s3: message }, 'S3 client error'),
    },
  });
}

/** The configured storage and coordination, for the berth command's maintenance jobs (no server). */
export async function openStorage(config: Config): Promise<{ storage: Storage; close(): Promise<void> }> {
  const coordination = await chooseCoordination(config);
  const driver = await createDriver(config);
  return {
    storage: createStorage(driver, undefined, coordination),
    close: async () => {
      await coordination.close();
      await driver.close?.();
    },
  };
}

/** Checks once, before serving, that storage answers (an S3 bucket must exist and be reachable). */
export async function checkStorage(config: Config): Promise<void> {
  const driver = await createDriver(config);
  try {
    await driver.ready?.();
  } finally {
    await driver.close?.();
  }
}

/** Redis when configured; else the primary's arbiter for cluster workers; else this process alone. */
async function chooseCoordination(config: Config): Promise<Coordination> {
  if (usesRedis(config)) {
    return createRedisCoordination({
      url: config.redisUrl,
      sentinels: config.redisSentinels,
      sentinelName: config.redisSentinelName,
      clusterNodes: config.redisCluster,
      keyPrefix: config.redisKeyPrefix,
    });
  }
  return cluster.isWorker ? clusterWorkerCoordination() : localCoordination();
}

export interface RunningServer {
  server: Server;
  url: string;
  /** Stops accepting, lets in-flight requests finish (up to the timeout), then closes what is left. */
  close(): Promise<void>;
}

export async function startServer(config: Config, berth: Berth): Promise<RunningServer> {
  const server = createServer({ keepAliveTimeout: 65_000, requestTimeout: 0 }, berth.app.callback());
  const { host, port } = listenAddress(config);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const url = `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;
  const where = usesS3(config) ? { bucket: config.s3Bucket, prefix: config.s3Prefix } : { data: config.dataDir };
  berth.logger.info({ url, storage: berth.storage.driver.name, ...where }, 'berth is serving');

  // Abandoned upload sessions expire; one process at a time looks for them (the shared lock).
  const purge = setInterval(() => {
    const startedBefore = new Date(Date.now() - config.uploadExpirySeconds * 1000);
    berth.coordination.lock
      .run('purge:uploads', () => berth.storage.uploads.purgeExpired(startedBefore))
      .then(
        (removed) => removed > 0 && berth.logger.info({ removed }, 'expired upload sessions removed'),
        (err: Error) => berth.logger.warn({ err: err.message }, 'upload expiry failed; will try again'),
      );
  }, config.uploadPurgeIntervalSeconds * 1000);
  purge.unref();
  const stopLifecycle = scheduleLifecycle(config, berth);

  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= new Promise<void>((resolve) => {
      const timer = setTimeout(() => server.closeAllConnections(), config.shutdownTimeoutMs);
      timer.unref();
      clearInterval(purge);
      stopLifecycle();
      server.close(() => {
        clearTimeout(timer);
        void berth.coordination.close().then(resolve, resolve);
      });
      server.closeIdleConnections();
    }));
  return { server, url, close };
}
