// Error mapping: every failure becomes a spec-shaped error body; nothing else reaches the client.
import type { Context, Next } from 'koa';
import type { Logger } from 'pino';
import type { IncomingMessage } from 'node:http';
import { isStorageFailure, retryAfterSeconds, type RateCounter } from '../storage/index.ts';
import { DirectoryUnavailableError } from '../auth/index.ts';
import { fromStorage, RegistryError } from './errors.ts';
import { directoryUnavailable } from './login-guard.ts';

// A refused request's unread body is read off the wire and dropped up to this size, so the client sees
// the error instead of a connection reset; a larger one gets the error and the connection is closed.
const DRAIN_LIMIT = 16 * 1024 * 1024;

async function drainBody(req: IncomingMessage): Promise<boolean> {
  if (req.complete || req.readableEnded) return true;
  if (req.destroyed || req.readableFlowing) return false;
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (declared > DRAIN_LIMIT) return false;
  return new Promise<boolean>((resolve) => {
    let seen = 0;
    req.on('data', (chunk: Buffer) => {
      seen += chunk.length;
      if (seen > DRAIN_LIMIT) {
        req.pause();
        resolve(false);
      }
    });
    req.once('end', () => resolve(true));
    req.once('error', () => resolve(false));
    req.once('close', () => resolve(req.complete));
  });
}

function isClientGone(ctx: Context, err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException)?.code;
  // Node's "aborted" (a request body cut off) carries ECONNRESET.
  return ctx.req.destroyed || code === 'ECONNRESET' || code === 'ERR_STREAM_PREMATURE_CLOSE';
}

/** `publicUrl` places the Location headers of errors that name an upload session. */
export function errorMapping(logger: Logger, publicUrl?: string) {
  return async (ctx: Context, next: Next): Promise<void> => {
    try {
      await next();
    } catch (err) {
      let error: RegistryError | undefined;
      if (err instanceof RegistryError) {
        error = err;
      } else if ((error = fromStorage(err, publicUrl))) {
        if (isStorageFailure(err)) (ctx.state.log ?? logger).warn({ err: (err as Error).message }, 'storage failure');
      } else if (err instanceof DirectoryUnavailableError) {
        // A token or session of a directory user was due for a check the directory could not answer.
        (ctx.state.log ?? logger).warn({ err: err.message }, 'directory unavailable');
        error = directoryUnavailable();
      } else if (isClientGone(ctx, err)) {
        // The client went away mid-body: nothing was committed, and nobody is left to answer.
        (ctx.state.log ?? logger).info({ err: (err as Error).message }, 'client went away');
        error = new RegistryError('BLOB_UPLOAD_INVALID', 'the request body ended before its announced length');
      } else {
        (ctx.state.log ?? logger).error({ err }, 'unexpected error');
        error = new RegistryError('UNKNOWN', 'internal error', { requestId: ctx.state.requestId });
      }
      const drained = await drainBody(ctx.req);
      ctx.status = error.status;
      ctx.set(error.headers);
      if (!drained) ctx.set('Connection', 'close');
      ctx.body = error.body();
      ctx.type = 'application/json';
    }
  };
}

/**
 * A limit on /v2 requests per client address and minute. The counters are shared (Redis, or the
 * cluster's primary), so the limit holds across every process; when they cannot be reached, requests go
 * through rather than being refused for a fault of ours.
 */
export function rateLimit(perMinute: number, counter: RateCounter) {
  return async (ctx: Context, next: Next): Promise<void> => {
    if (perMinute > 0 && (ctx.path === '/v2' || ctx.path.startsWith('/v2/'))) {
      const hit = await counter.hit(`ip:${ctx.ip}`, 60_000);
      if (hit) {
        ctx.set('RateLimit-Limit', String(perMinute));
        ctx.set('RateLimit-Remaining', String(Math.max(0, perMinute - hit.count)));
        if (hit.count > perMinute) {
          throw new RegistryError('TOO_MANY_REQUESTS', `at most ${perMinute} requests a minute from one address`, null, {
            headers: { 'Retry-After': retryAfterSeconds(hit) },
          });
        }
      }
    }
    await next();
  };
}
