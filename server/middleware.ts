// Error mapping: every failure becomes a spec-shaped error body; nothing else reaches the client.
import type { Context, Next } from 'koa';
import type { Logger } from 'pino';
import { RegistryError } from './errors.ts';

function isClientGone(ctx: Context, err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException)?.code;
  return ctx.req.destroyed || code === 'ECONNRESET' || code === 'ERR_STREAM_PREMATURE_CLOSE' || (err as Error)?.message === 'aborted';
}

export function errorMapping(logger: Logger) {
  return async (ctx: Context, next: Next): Promise<void> => {
    try {
      await next();
    } catch (err) {
      let error: RegistryError;
      if (err instanceof RegistryError) {
        error = err;
      } else if (isClientGone(ctx, err)) {
        // The client went away mid-body: nothing was committed, and nobody is left to answer.
        (ctx.state.log ?? logger).info({ err: (err as Error).message }, 'client went away');
        error = new RegistryError('BLOB_UPLOAD_INVALID', 'the request body ended before its announced length');
      } else {
        (ctx.state.log ?? logger).error({ err }, 'unexpected error');
        error = new RegistryError('UNKNOWN', 'internal error', { requestId: ctx.state.requestId });
      }
      ctx.status = error.status;
      ctx.set(error.headers);
      ctx.body = error.body();
      ctx.type = 'application/json';
    }
  };
}
