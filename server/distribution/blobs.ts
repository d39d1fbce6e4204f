// GET / HEAD / DELETE /v2/<name>/blobs/<digest>
import type { Context } from 'koa';
import { RegistryError } from '../errors.ts';
import { parseDigest, type ByteRange, type Digest } from '../../storage/index.ts';
import { replyDirect, replyEmpty, replyHead, replyStream, type DistributionDeps, type Handler } from './http.ts';
import { requestedBy } from '../requester.ts';

type RangeResult = { kind: 'full' } | { kind: 'partial'; range: ByteRange } | { kind: 'unsatisfiable' };

/** Parses a single-range "bytes=" header; anything else is served whole, as HTTP allows. */
export function parseRange(header: string | undefined, size: number): RangeResult {
  if (!header) return { kind: 'full' };
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match || (match[1] === '' && match[2] === '')) return { kind: 'full' };
  let start: number;
  let end: number;
  if (match[1] === '') {
    const suffix = Number(match[2]);
    if (suffix === 0 || size === 0) return { kind: 'unsatisfiable' };
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(match[1]);
    end = match[2] === '' ? size - 1 : Math.min(Number(match[2]), size - 1);
    if (match[2] !== '' && Number(match[2]) < start) return { kind: 'full' };
    if (start >= size) return { kind: 'unsatisfiable' };
  }
  return { kind: 'partial', range: { start, end } };
}

/**
 * A presigned URL moved onto a CDN: the base's scheme and host replace the storage's, the path and the
 * signed query stay (the CDN must pass both, and the storage's Host, on to its origin).
 */
export function onBaseUrl(presigned: string, base: string): string {
  const url = new URL(presigned);
  return `${new URL(base).origin}${url.pathname}${url.search}`;
}

export function blobHandlers(deps: DistributionDeps): Record<string, Handler> {
  const { blobs } = deps.storage;
  const { config } = deps;
  const redirect = blobs.canRedirect ? config.s3?.redirect : undefined;

  /** Where the client can fetch the blob itself, when redirects are on (the caller's access is checked). */
  async function redirectTarget(digest: Digest): Promise<string | undefined> {
    if (!redirect) return undefined;
    const url = await blobs.redirectURL(digest, { expiresInSeconds: redirect.ttlSeconds });
    return url && redirect.baseUrl ? onBaseUrl(url, redirect.baseUrl) : url;
  }

  async function locate(name: string, ref: string) {
    const digest = parseDigest(ref);
    const size = await blobs.sizeIn(name, digest);
    if (size === undefined) throw new RegistryError('BLOB_UNKNOWN', undefined, { digest: digest.value });
    return { digest, size };
  }

  function headers(digest: string): Record<string, string> {
    return {
      'Docker-Content-Digest': digest,
      ETag: `"${digest}"`,
      'Accept-Ranges': 'bytes',
      // A digest's bytes never change, but they can be deleted (a leaked secret, a private repository's
      // layer): a cache may keep them, never serve them without asking, so a DELETE (or lost access) ends them.
      'Cache-Control': 'no-cache',
      'Content-Type': 'application/octet-stream',
    };
  }

  function notModified(ctx: Context, digest: string): boolean {
    const match = ctx.get('If-None-Match');
    return Boolean(match) && match.split(',').some((v) => v.trim() === `"${digest}"` || v.trim() === '*');
  }

  return {
    async HEAD(ctx, { name, ref }) {
      const { digest, size } = await locate(name, ref);
      replyHead(ctx, 200, size, headers(digest.value));
    },

    async GET(ctx, { name, ref }) {
      const { digest, size } = await locate(name, ref);
      if (notModified(ctx, digest.value)) {
        ctx.status = 304;
        ctx.set(headers(digest.value));
        return;
      }
      // The client follows the Location with the same headers, Range included: S3 answers it.
      const location = await redirectTarget(digest);
      if (location) {
        // Never cached: the URL expires, and it must reach only those the access check let through.
        replyEmpty(ctx, 307, { Location: location, 'Docker-Content-Digest': digest.value, 'Cache-Control': 'no-store' });
        return;
      }
      const range = parseRange(ctx.get('Range'), size);
      if (range.kind === 'unsatisfiable') {
        throw new RegistryError('BLOB_UNKNOWN', 'requested range not satisfiable', { size }, {
          status: 416,
          headers: { 'Content-Range': `bytes */${size}` },
        });
      }
      const partial = range.kind === 'partial' ? range.range : undefined;
      const status = partial ? 206 : 200;
      const length = partial ? partial.end - partial.start + 1 : size;
      const replyHeaders = partial
        ? { ...headers(digest.value), 'Content-Range': `bytes ${partial.start}-${partial.end}/${size}` }
        : headers(digest.value);
      if (blobs.hasFastCopy) {
        await replyDirect(ctx, status, length, replyHeaders, (sink) => blobs.copyTo(digest, sink, partial));
        return;
      }
      replyStream(ctx, status, await blobs.open(digest, partial), length, replyHeaders);
    },

    async DELETE(ctx, { name, ref }) {
      const digest = parseDigest(ref);
      if (!(await blobs.remove(name, digest, requestedBy(ctx)))) throw new RegistryError('BLOB_UNKNOWN', undefined, { digest: digest.value });
      replyEmpty(ctx, 202, { 'Docker-Content-Digest': digest.value });
    },
  };
}
