// GET / HEAD of manifests and blobs in a mirrored repository: the mirror makes them servable from
// storage, then the ordinary handlers serve them; a blob still being fetched is streamed from its fill
// as its bytes arrive. The mirror's failures become the spec's errors here.
import type { Context } from 'koa';
import { RegistryError, type ErrorCode } from '../errors.ts';
import { parseDigest } from '../../storage/index.ts';
import type { Mirror, Mirrors, UpstreamError } from '../../mirror/index.ts';
import { blobHandlers } from './blobs.ts';
import { manifestHandlers } from './manifests.ts';
import { replyHead, type DistributionDeps, type Handler, type RouteParams } from './http.ts';

/** Upstream codes passed on as they are (the spec's own); any other refusal is told as the status's nearest. */
const PASSED_ON = new Set<ErrorCode>(['BLOB_UNKNOWN', 'MANIFEST_UNKNOWN', 'NAME_UNKNOWN', 'NAME_INVALID', 'MANIFEST_INVALID', 'DENIED', 'UNSUPPORTED']);

// The mirror room is loaded only when mirrors are configured (server/app.ts), so its errors are told
// apart by name: importing their classes here would load the room into every server.
const isUpstreamError = (err: unknown): err is UpstreamError => err instanceof Error && err.name === 'UpstreamError';
const isDigestError = (err: unknown): boolean => err instanceof Error && err.name === 'UpstreamDigestError';

/** The spec error a client gets for a mirror's failure. */
export function mirrorError(mirror: Mirror, err: unknown, notFound: ErrorCode): unknown {
  const upstream = { upstream: mirror.upstream.origin };
  if (isDigestError(err)) {
    return new RegistryError('UNKNOWN', 'the upstream registry sent content that does not match its digest; nothing was cached', upstream, { status: 502 });
  }
  if (!isUpstreamError(err)) return err;
  if (err.unavailable) {
    return new RegistryError('UNAVAILABLE', `the upstream registry did not answer (${err.status || 'no answer'})`, upstream, { headers: { 'Retry-After': '5' } });
  }
  const first = err.errors[0];
  if (first && PASSED_ON.has(first.code as ErrorCode)) {
    return new RegistryError(first.code as ErrorCode, first.message || undefined, first.detail ?? upstream, { status: err.status === 401 ? 403 : err.status });
  }
  // A HEAD's refusal has no body: the upstream's 404 is told as what was asked for.
  if (err.status === 404) return new RegistryError(notFound, undefined, upstream);
  // 401/403: the upstream refused the mirror's own credentials (or their absence); not the client's.
  return new RegistryError('DENIED', `the upstream registry refused the request (${err.status})`, upstream);
}

export function mirrorHandlers(deps: DistributionDeps, mirrors: Mirrors): Record<string, Record<string, Handler>> {
  const manifests = manifestHandlers(deps);
  const blobs = blobHandlers(deps);

  const mirrorOf = (name: string): Mirror => mirrors.of(name)!;
  async function through<T>(mirror: Mirror, fn: () => Promise<T>, notFound: ErrorCode = 'BLOB_UNKNOWN'): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw mirrorError(mirror, err, notFound);
    }
  }

  /** The manifest made current (or left stale when the upstream is away), then served from storage. */
  const manifest = (serve: Handler): Handler => async (ctx, params) => {
    const mirror = mirrorOf(params.name);
    await through(mirror, () => mirror.manifest(params.name, params.ref), 'MANIFEST_UNKNOWN');
    await serve(ctx, params);
  };

  async function blobGet(ctx: Context, params: RouteParams): Promise<void> {
    const mirror = mirrorOf(params.name);
    const digest = parseDigest(params.ref);
    const source = await through(mirror, () => mirror.blob(params.name, digest));
    if (source.kind === 'filling') {
      const { fill } = source;
      await through(mirror, () => fill.started);
      // Still running: stream from it (Range is ignored, as HTTP allows: the whole blob comes with 200).
      if (fill.state === 'running') {
        ctx.status = 200;
        ctx.set({ 'Docker-Content-Digest': digest.value, 'Content-Type': 'application/octet-stream', 'Cache-Control': 'no-cache' });
        ctx.body = fill.reader();
        if (fill.size !== undefined) ctx.length = fill.size;
        return;
      }
      await through(mirror, () => fill.finished);
      await mirror.blob(params.name, digest);
    }
    await blobs.GET!(ctx, params);
  }

  async function blobHead(ctx: Context, params: RouteParams): Promise<void> {
    const mirror = mirrorOf(params.name);
    const digest = parseDigest(params.ref);
    if ((await deps.storage.blobs.sizeIn(params.name, digest)) !== undefined) return blobs.HEAD!(ctx, params);
    // Not fetched yet: the upstream says its size, and nothing is fetched for a HEAD.
    const size = await through(mirror, () => mirror.blobSize(params.name, digest));
    if (size === undefined) throw new RegistryError('BLOB_UNKNOWN', undefined, { digest: digest.value });
    replyHead(ctx, 200, size, { 'Docker-Content-Digest': digest.value, 'Content-Type': 'application/octet-stream' });
  }

  return {
    manifest: { GET: manifest(manifests.GET!), HEAD: manifest(manifests.HEAD!) },
    blob: { GET: blobGet, HEAD: blobHead },
  };
}
