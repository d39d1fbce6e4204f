// Small reply helpers that keep Koa from adding its own body or length where the spec wants neither.
import type { Context } from 'koa';
import type { Readable, Writable } from 'node:stream';
import { publicLocation, RegistryError } from '../errors.ts';
import type { Config } from '../config.ts';
import type { Storage } from '../../storage/index.ts';
import type { AuthGate } from '../auth-gate.ts';
import type { UploadAdmission } from '../admission.ts';
import type { Mirrors } from '../../mirror/index.ts';

export interface DistributionDeps {
  config: Config;
  storage: Storage;
  gate: AuthGate;
  admission: UploadAdmission;
  /** The pull-through caches, when any are configured. */
  mirrors?: Mirrors;
}

export interface RouteParams {
  name: string;
  /** The last path segment: a digest, a tag or an upload id, depending on the route. */
  ref: string;
}

export type Handler = (ctx: Context, params: RouteParams) => Promise<void>;

/** A reply with no body: Content-Length 0 and no Content-Type (Koa would otherwise write the status text). */
export function replyEmpty(ctx: Context, status: number, headers: Record<string, string> = {}): void {
  ctx.body = null;
  ctx.status = status;
  ctx.set(headers);
}

/** A HEAD reply that carries the length of the body a GET would send. */
export function replyHead(ctx: Context, status: number, length: number, headers: Record<string, string>): void {
  ctx.status = status;
  ctx.set(headers);
  ctx.set('Content-Length', String(length));
}

export function replyJson(ctx: Context, status: number, value: unknown, type = 'application/json', headers: Record<string, string> = {}): void {
  ctx.status = status;
  ctx.body = Buffer.from(JSON.stringify(value));
  ctx.type = type;
  ctx.set(headers);
}

export function replyStream(ctx: Context, status: number, stream: Readable, length: number, headers: Record<string, string>): void {
  ctx.status = status;
  ctx.body = stream;
  ctx.length = length;
  ctx.set(headers);
}

/**
 * Writes a body straight into the response (Koa steps aside), for a storage fast path that reuses its
 * buffers. A failure before the first byte is still answered as an error; after it, the connection is
 * cut, which is how HTTP says a body broke off.
 */
export async function replyDirect(
  ctx: Context,
  status: number,
  length: number,
  headers: Record<string, string>,
  send: (sink: Writable) => Promise<void>,
): Promise<void> {
  ctx.status = status;
  ctx.set(headers);
  ctx.set('Content-Length', String(length));
  ctx.respond = false;
  try {
    await send(ctx.res);
    ctx.res.end();
  } catch (err) {
    if (!ctx.res.headersSent) {
      ctx.respond = true;
      ctx.remove('Content-Length');
      throw err;
    }
    ctx.res.destroy();
  }
}

/**
 * Reads a small request body (a manifest, a form) with a hard limit, checked against Content-Length before
 * anything is read. Past the limit nothing more is kept or waited for: the stream is left flowing with no
 * reader, so the error is answered at once with `Connection: close` (see errorMapping), however long the
 * sender would go on.
 */
export async function readLimited(ctx: Context, limit: number, what = 'manifest'): Promise<Buffer> {
  const declared = ctx.get('Content-Length');
  if (declared && Number(declared) > limit) throw tooLarge(limit, what);
  const req = ctx.req;
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    const onData = (chunk: Buffer) => {
      total += chunk.length;
      if (total <= limit) return void chunks.push(chunk);
      chunks.length = 0;
      settle();
      reject(tooLarge(limit, what));
    };
    const onEnd = () => {
      settle();
      resolve(Buffer.concat(chunks, total));
    };
    const onError = (err: Error) => {
      settle();
      reject(err);
    };
    const settle = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
    };
    req.on('data', onData);
    req.once('end', onEnd);
    req.once('error', onError);
  });
}

function tooLarge(limit: number, what: string): RegistryError {
  // Node discards the unread rest of a declared body after the reply, so the client reads the 413 instead
  // of failing with a broken pipe.
  return new RegistryError('SIZE_INVALID', `${what} exceeds the limit of ${limit} bytes`, { limit }, { status: 413 });
}

/** True when the request carries a body (a length above zero, or chunked transfer encoding). */
export function hasBody(ctx: Context): boolean {
  const length = ctx.get('Content-Length');
  if (length) return Number(length) > 0;
  return Boolean(ctx.get('Transfer-Encoding'));
}

export function declaredLength(ctx: Context): number | undefined {
  const length = ctx.get('Content-Length');
  if (!length) return undefined;
  if (!/^\d+$/.test(length)) throw new RegistryError('SIZE_INVALID', 'Content-Length is not a number');
  return Number(length);
}

export function queryString(ctx: Context, key: string): string | undefined {
  const value = ctx.query[key];
  return Array.isArray(value) ? value[0] : value;
}

export function location(deps: DistributionDeps, path: string): string {
  return publicLocation(deps.config.publicUrl, path);
}
