// GET / HEAD / DELETE /v2/<name>/blobs/<digest>
import type { Context } from 'koa';
import { RegistryError } from '../errors.ts';
import { parseDigest, type ByteRange } from '../../storage/index.ts';
import { replyDirect, replyEmpty, replyHead, replyStream, type DistributionDeps, type Handler } from './http.ts';

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

export function blobHandlers(deps: DistributionDeps): Record<string, Handler> {
  const { blobs } = deps.storage;

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
      'Cache-Control': 'max-age=31536000',
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
      if (!(await blobs.unlink(name, digest))) throw new RegistryError('BLOB_UNKNOWN', undefined, { digest: digest.value });
      replyEmpty(ctx, 202, { 'Docker-Content-Digest': digest.value });
    },
  };
}
