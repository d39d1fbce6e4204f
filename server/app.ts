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
  PresenceMarker,
  SecretSeal,
  allOf,
  type Coordination,
  type Storage,
  type StorageDriver,
  type UploadObserver,
} from '../storage/index.ts';
import { AuditLog, AuthService, LdapDirectory, type AuditSink } from '../auth/index.ts';
import { Webhooks } from '../events/index.ts';
import { hostname } from 'node:os';
import { bodyBytesArrived, dropStartupGarbage } from './young-buffers.ts';
import { AuthGate } from './auth-gate.ts';
import { controlSocketPath, listenAddress, rangeList, usesRedis, type Config } from './config.ts';
import { listenControl } from './control.ts';
import { distributionRoutes } from './distribution/routes.ts';
import { createLogger, requestLog, type Logger } from './logging.ts';
import { Metrics } from './metrics.ts';
import { UploadAdmission } from './admission.ts';
import { errorMapping, rateLimit } from './middleware.ts';
import { serialiseJsonBodies } from './json-bodies.ts';
import { tokenHandlers } from './token.ts';
import { LoginGuard } from './login-guard.ts';
import { forwardedClient } from './forwarded.ts';
import { connectionOptions, watchBodyProgress } from './connections.ts';
import { readLimited } from './distribution/http.ts';
import { refuseCrossSite, securityHeaders, webRoutes } from '../web/index.ts';
import { RegistryError } from './errors.ts';
import { pino } from 'pino';
import { scheduleLifecycle } from './lifecycle.ts';
import type { Mirrors } from '../mirror/index.ts';
import { Replication, type RunSummary } from '../replication/index.ts';

export interface Berth {
  app: Koa;
  /** Every route the app answers (the OpenAPI test reads its stack). */
  router: Router;
  /** Undefined in `open` mode. */
  auth?: AuthService;
  storage: Storage;
  coordination: Coordination;
  metrics: Metrics;
  logger: Logger;
  webhooks: Webhooks;
  replication: Replication;
}

export async function createApp(
  config: Config,
  logger: Logger = createLogger(config.logLevel),
  /** A driver to use instead of the configured one (a test that counts what a request reads). */
  driver?: StorageDriver,
): Promise<Berth> {
  const metrics = new Metrics();
  await metrics.joinCluster();
  const { storage, coordination } = await openStorage(
    config,
    logger,
    { bytesReceived: (n) => metrics.bytesReceived(n), pieceArrived: bodyBytesArrived },
    driver,
  );
  // The webhooks' event source: storage tells it of pushes, deletes, pulls and collections.
  const webhooks = openWebhooks(config, storage, coordination, logger);
  // Replication's push rules hear of pushes too (after the webhooks' queueing, never failing the push).
  const replication = openReplication(config, storage, coordination, logger, (summary) => {
    metrics.replicationFinished(summary);
    return webhooks.replicated(summary);
  });
  storage.listen(allOf(webhooks.listener(), replication.listener()));
  // Behind a trusted proxy Koa reads the protocol from X-Forwarded-Proto; forwardedClient (first below)
  // sets the client address and leaves Koa only the forwarding headers it may believe.
  const app = new Koa({ proxy: config.trustProxy });
  app.silent = true;
  serialiseJsonBodies(app);
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
  // The mirror room (and the client code its upstream speaks with) is loaded only where mirrors are
  // configured: every other server would carry it in memory for nothing.
  const mirrors: Mirrors | undefined =
    config.mirrors.length > 0
      ? new (await import('../mirror/index.ts')).Mirrors(config.mirrors, { storage, lock: coordination.lock, announcements: coordination.announcements, metrics: metrics.mirror, logger, maxManifestBytes: config.maxManifestBytes })
      : undefined;
  const servedAs = mirrors && (async (name: string) => (await mirrors.route(name, true))?.name);
  const auth = config.mode === 'open' ? undefined : await createAuth(config, storage, coordination, logger, servedAs);
  // The catalog's and the search's filter reads the visibility index: made now (once per storage, from
  // the settings written before it existed) rather than by the first request that needs it.
  if (auth) storage.repositories.visibilities().catch((err: Error) => logger.warn({ err: err.message }, 'the visibility index is not ready yet'));
  const guard = auth && new LoginGuard(auth, config, coordination.counter);
  if (auth && guard) {
    const token = tokenHandlers({ auth, config, guard });
    router.get('/token', token.GET);
    router.post('/token', token.POST);
    router.get('/.well-known/jwks.json', token.jwks);
    router.post('/api/v1/users', token.signUp);
  } else {
    logger.warn('BERTH_MODE=open: no authentication; anyone who reaches this registry may push and delete');
  }
  webRoutes(router, {
    storage,
    auth,
    login: guard,
    readBody: readLimited,
    publicUrl: config.publicUrl,
    maxManifestBytes: config.maxManifestBytes,
    webhooks,
    replication,
    gcSchedule: { intervalSeconds: config.gcIntervalSeconds, graceSeconds: config.gcGraceSeconds, deleteUntagged: config.gcDeleteUntagged },
    mirroredFrom: mirrors && ((name) => mirrors.mirroredFrom(name)),
    oidcName: config.oidc?.name,
  });
  const admission = new UploadAdmission(config.maxConcurrentUploads, metrics);
  const v2 = distributionRoutes({ config, storage, gate: new AuthGate(auth, config, guard), admission, mirrors });
  router.all('/v2', v2);
  router.all('/v2/{*rest}', v2);

  app.use(securityHeaders());
  app.use(forwardedClient(config));
  app.use(requestLog(logger));
  app.use(metrics.middleware());
  app.use(errorMapping(logger, config.publicUrl));
  app.use(refuseCrossSite(config.publicUrl, () => new RegistryError('DENIED', 'a request made for another site may not change anything here')));
  app.use(rateLimit(config.rateLimitPerMinute, coordination.counter));
  app.use(router.routes());
  return { app, router, auth, storage, coordination, metrics, logger, webhooks, replication };
}

const seals = new WeakMap<Storage, SecretSeal>();

/**
 * The one SecretSeal of a storage, for every room that seals (webhook secrets, replication passwords,
 * OpenID refresh tokens): its key is read, or made, once per process.
 */
function sealOf(config: Config, storage: Storage, coordination: Coordination): SecretSeal {
  let seal = seals.get(storage);
  if (!seal) seals.set(storage, (seal = new SecretSeal(storage.driver, coordination.lock, config.webhookSecretKey)));
  return seal;
}

/** The replication rules and their runs over this storage, as configured (the server and `berth replication`). */
export function openReplication(
  config: Config,
  storage: Storage,
  coordination: Coordination,
  logger: Logger,
  finished?: (summary: RunSummary) => Promise<void>,
): Replication {
  return new Replication({
    storage,
    lock: coordination.lock,
    seal: sealOf(config, storage, coordination),
    retry: { maxAttempts: config.replicationMaxAttempts, baseMs: config.replicationRetryBaseMs, maxMs: config.replicationRetryMaxMs },
    tickMs: config.replicationTickSeconds * 1000,
    staleMs: config.replicationStaleSeconds * 1000,
    maxManifestBytes: config.maxManifestBytes,
    logger,
    finished,
  });
}

/** The webhook endpoints, queues and delivery over this storage, as configured (the server and `berth webhook`). */
export function openWebhooks(config: Config, storage: Storage, coordination: Coordination, logger: Logger): Webhooks {
  return new Webhooks({
    driver: storage.driver,
    lock: coordination.lock,
    allow: config.webhookAllow ? rangeList(config.webhookAllow) : undefined,
    queueLimit: config.webhookQueueLimit,
    seal: sealOf(config, storage, coordination),
    timeoutMs: config.webhookTimeoutMs,
    maxAttempts: config.webhookMaxAttempts,
    retryBaseMs: config.webhookRetryBaseMs,
    retryMaxMs: config.webhookRetryMaxMs,
    pollMs: config.webhookPollMs,
    publicUrl: config.publicUrl,
    sourceAddr: config.publicUrl ? new URL(config.publicUrl).host : `${hostname()}:${listenAddress(config).port}`,
    logger,
  });
}

/**
 * Accounts, tokens and policy over the same storage, the directory that checks its users' passwords when
 * BERTH_LDAP_URL is set, and the OpenID provider the browser signs in through when BERTH_OIDC_ISSUER is;
 * the audit log on the server log unless BERTH_AUDIT_LOG names a file.
 */
export async function createAuth(
  config: Config,
  storage: Storage,
  coordination: Coordination,
  logger: Logger,
  /** Which repository a read of a name is served from, where a mirror serves it under another (AuthOptions.servedAs). */
  servedAs?: (name: string) => Promise<string | undefined>,
): Promise<AuthService> {
  const sink: AuditSink = config.auditLog
    ? pino({ base: { service: 'berth-audit', pid: process.pid } }, pino.destination({ dest: config.auditLog, mkdir: true, sync: false }))
    : logger;
  const options = {
    mode: config.mode,
    issuer: config.authIssuer,
    service: config.authService,
    tokenTtlSeconds: config.tokenTtlSeconds,
    refreshTokenTtlSeconds: config.refreshTokenTtlSeconds,
    reservedNames: config.reservedNames,
    mirrorNamespaces: config.mirrors.map((m) => m.prefix.split('/')[0]!),
    servedAs,
  };
  const directory = config.ldap && new LdapDirectory(config.ldap);
  // The provider's refresh tokens are sealed with the webhook secrets' key: one key to keep, or one made once in storage.
  const oidc = config.oidc && { options: config.oidc, sealer: sealOf(config, storage, coordination) };
  return AuthService.create(options, storage, coordination, new AuditLog(sink), { directory, oidc });
}

/** S3 when a bucket is configured, else the folder BERTH_DATA. */
export async function createDriver(config: Config, logger?: Logger): Promise<StorageDriver> {
  if (!config.s3) return new FilesystemDriver(config.dataDir, { directIO: config.directIo });
  const { bucket, prefix, region, endpoint, forcePathStyle, partSize, requestTimeoutMs } = config.s3;
  return createS3Driver({
    bucket,
    prefix,
    region,
    endpoint,
    forcePathStyle,
    partSize,
    requestTimeoutMs,
    logger: logger && {
      warn: (message) => logger.warn({ s3: message }, 'S3 client warning'),
      error: (message) => logger.error({ s3: message }, 'S3 client error'),
    },
  });
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

/**
 * The configured storage and coordination: the server's (with its metrics observing uploads), and what the
 * admin and maintenance commands (`berth user`, `berth gc`, …) work on while a server runs on the same data.
 */
export async function openStorage(
  config: Config,
  logger?: Logger,
  observer?: UploadObserver,
  driver?: StorageDriver,
): Promise<{ storage: Storage; coordination: Coordination; close(): Promise<void> }> {
  const coordination = await chooseCoordination(config);
  // Blob bytes read from files (berth import) are fresh buffers as a request's are: the same collections keep them from piling up.
  const storage = createStorage(driver ?? (await createDriver(config, logger)), observer ?? { bytesReceived: () => {}, pieceArrived: bodyBytesArrived }, coordination);
  return {
    storage,
    coordination,
    close: async () => {
      await coordination.close();
      await storage.driver.close?.();
    },
  };
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
  const server = createServer(connectionOptions(config), berth.app.callback());
  const stopWatching = watchBodyProgress(server, config, berth.logger);
  const { host, port } = listenAddress(config);
  // Without Redis this process's locks and caches are its own: lifecycle jobs run from elsewhere look for
  // this marker (written before the first request can arrive).
  const presence = usesRedis(config) ? undefined : new PresenceMarker(berth.storage.driver);
  await presence?.start();
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    await presence?.stop();
    throw err;
  }
  const address = server.address() as AddressInfo;
  const url = `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;
  const where = config.s3 ? { bucket: config.s3.bucket, prefix: config.s3.prefix } : { data: config.dataDir };
  berth.logger.info({ url, storage: berth.storage.driver.name, ...where }, 'berth is serving');
  // Once the first requests have loaded what serving needs, start-up's garbage is collected (idle memory).
  setTimeout(dropStartupGarbage, 2000).unref();

  // Pulls are counted in memory and added to the search index now and then: one write per repository.
  // The same tick renews a day-old search snapshot, so that a quiet registry still restarts from it.
  const pulls = setInterval(() => {
    berth.storage.search.flushPulls().catch((err: Error) => berth.logger.warn({ err: err.message }, 'pull counts not saved; will try again'));
    berth.storage.search.renewSnapshot().catch((err: Error) => berth.logger.warn({ err: err.message }, 'search snapshot not renewed; will try again'));
  }, config.pullCountFlushSeconds * 1000);
  pulls.unref();
  const stopLifecycle = scheduleLifecycle(config, berth);
  berth.webhooks.start();
  berth.replication.start();
  const socketPath = controlSocketPath(config);
  const control = socketPath
    ? await listenControl(socketPath, berth.storage.jobs, config.gcGraceSeconds, berth.logger, berth.replication).catch((err: Error) => {
        berth.logger.warn({ err: err.message, path: socketPath }, 'no control socket: `berth gc` and `berth retention run` cannot hand their job to this server');
        return undefined;
      })
    : undefined;

  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= new Promise<void>((resolve) => {
      const timer = setTimeout(() => server.closeAllConnections(), config.shutdownTimeoutMs);
      timer.unref();
      clearInterval(pulls);
      stopWatching();
      stopLifecycle();
      control?.close();
      server.close(() => {
        clearTimeout(timer);
        void Promise.all([berth.webhooks.stop(), berth.replication.stop()])
          .then(() => presence?.stop())
          .then(() => berth.coordination.close())
          .then(resolve, resolve);
      });
      server.closeIdleConnections();
    }));
  return { server, url, close };
}
