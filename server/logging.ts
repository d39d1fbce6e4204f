// Structured JSON logs (pino), one line per request with its request id.
import { randomUUID } from 'node:crypto';
import pino, { type Logger } from 'pino';
import type { Context, Next } from 'koa';

export type { Logger };

export function createLogger(level: string): Logger {
  return pino({ level, base: { service: 'berth', pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime });
}

const REQUEST_ID_RE = /^[A-Za-z0-9._-]{1,128}$/;

export function requestLog(logger: Logger) {
  return async (ctx: Context, next: Next): Promise<void> => {
    const incoming = ctx.get('X-Request-Id');
    const id = REQUEST_ID_RE.test(incoming) ? incoming : randomUUID();
    ctx.state.requestId = id;
    ctx.state.log = logger.child({ reqId: id });
    ctx.set('X-Request-Id', id);
    const started = Date.now();
    ctx.res.once('close', () => {
      const entry = {
        method: ctx.method,
        path: ctx.path,
        route: ctx.state.route,
        status: ctx.status,
        ms: Date.now() - started,
        length: ctx.res.getHeader('Content-Length'),
        aborted: !ctx.res.writableFinished,
        // The account the request's token or credentials stand for ('' for an anonymous token).
        user: (ctx.state.claims as { sub?: string } | undefined)?.sub,
      };
      if (ctx.status >= 500) ctx.state.log.error(entry, 'request');
      else ctx.state.log.info(entry, 'request');
    });
    await next();
  };
}
