// POST /v2/<name>/blobs/uploads/ and PATCH / PUT / GET / DELETE /v2/<name>/blobs/uploads/<id>
import type { Context } from 'koa';
import { rangeNotSatisfiable, RegistryError, uploadSessionHeaders } from '../errors.ts';
import { isValidName, parseDigest, tryParseDigest, type BlobUpload, type Digest } from '../../storage/index.ts';
import { declaredLength, hasBody, location, queryString, replyEmpty, type DistributionDeps, type Handler } from './http.ts';

const CONTENT_RANGE_RE = /^(?:bytes[ =])?(\d+)-(\d+)(?:\/(?:\d+|\*))?$/;

export function uploadHandlers(deps: DistributionDeps): { collection: Record<string, Handler>; session: Record<string, Handler> } {
  const { uploads, blobs, quotas } = deps.storage;

  function sessionHeaders(upload: BlobUpload): Record<string, string> {
    return { ...uploadSessionHeaders(upload, deps.config.publicUrl), 'Blob-Upload-Session-ID': upload.id };
  }

  function created(ctx: Context, name: string, digest: Digest): void {
    replyEmpty(ctx, 201, {
      Location: location(deps, `/v2/${name}/blobs/${digest.value}`),
      'Docker-Content-Digest': digest.value,
    });
  }

  /** The upload slot is held while bytes stream in; past the limit a client is told to come back. */
  async function streaming<T>(fn: () => Promise<T>): Promise<T> {
    const limit = deps.config.maxConcurrentUploads;
    if (limit > 0 && deps.metrics.uploadsInFlight() >= limit) {
      throw new RegistryError('TOO_MANY_REQUESTS', `at most ${limit} uploads are streamed at once`, null, {
        headers: { 'Retry-After': '1' },
      });
    }
    return deps.metrics.trackUpload(fn);
  }

  /** Content-Range of a chunk, when the client gave one: the chunk's start and its length. */
  function chunkRange(ctx: Context, upload: BlobUpload): { start?: number; length?: number } {
    const rangeError = (reason: string) => rangeNotSatisfiable(upload, reason, deps.config.publicUrl);
    const length = declaredLength(ctx);
    const header = ctx.get('Content-Range');
    if (!header) return { length };
    const match = CONTENT_RANGE_RE.exec(header.trim());
    if (!match) throw rangeError(`Content-Range ${JSON.stringify(header.slice(0, 100))} is not <start>-<end>`);
    const start = Number(match[1]);
    const end = Number(match[2]);
    if (end < start) throw rangeError('Content-Range ends before it starts');
    if (length !== undefined && length !== end - start + 1) {
      throw rangeError(`Content-Range covers ${end - start + 1} bytes but Content-Length is ${length}`);
    }
    return { start, length: end - start + 1 };
  }

  async function anyPullable(ctx: Context, names: string[]): Promise<boolean> {
    for (const holder of names) if (await deps.gate.mayPull(ctx, holder)) return true;
    return false;
  }

  /** The size of the blob a mount asks for, when it is there and the caller may pull it from there. */
  async function mountable(ctx: Context, digest: Digest, from: string | undefined): Promise<number | undefined> {
    if (from !== undefined) {
      if (!isValidName(from) || !(await deps.gate.mayPull(ctx, from))) return undefined;
      return blobs.sizeIn(from, digest);
    }
    return (await anyPullable(ctx, await blobs.holders(digest))) ? blobs.size(digest) : undefined;
  }

  async function tryMount(name: string, ctx: Context): Promise<Digest | undefined> {
    const digest = tryParseDigest(queryString(ctx, 'mount') ?? '');
    if (!digest) return undefined;
    const from = queryString(ctx, 'from');
    // A source the caller may not pull is treated as one without the blob: a session opens instead, and
    // nothing tells a private repository from a missing one.
    const size = await mountable(ctx, digest, from);
    if (size === undefined) return undefined;
    return quotas.admit(name, size, digest, () =>
      // Checked again and linked under the blob's lock, so a garbage collection cannot delete it in between.
      blobs.guarded(digest, async () => {
        if ((await (from !== undefined ? blobs.sizeIn(from, digest) : blobs.size(digest))) === undefined) return undefined;
        await blobs.link(name, digest);
        return digest;
      }),
    );
  }

  /** The exact size is known now: checked once more against the quota, and linked before another admission is checked. */
  async function completeWithinQuota(upload: BlobUpload, digest: Digest): Promise<void> {
    let admitted = false;
    try {
      await quotas.admit(upload.name, upload.offset, digest, () => {
        admitted = true;
        return uploads.complete(upload, digest);
      });
    } catch (err) {
      if (!admitted) await uploads.cancel(upload);
      throw err;
    }
  }

  /** A chunk whose Content-Length would pass the quota is refused before its bytes are read. */
  async function appendWithinQuota(ctx: Context, upload: BlobUpload): Promise<BlobUpload> {
    const { start, length } = chunkRange(ctx, upload);
    if (length !== undefined) await quotas.check(upload.name, upload.offset + length);
    return streaming(() => uploads.append(upload, ctx.req, { start, length }));
  }

  /** The session named by the URL, if the caller opened it (see UploadStore.require). */
  const ownSession = (ctx: Context, name: string, id: string) => uploads.require(name, id, deps.gate.owner(ctx));

  const collection: Record<string, Handler> = {
    async POST(ctx, { name }) {
      const mounted = await tryMount(name, ctx);
      if (mounted) return created(ctx, name, mounted);

      const digestParam = queryString(ctx, 'digest');
      if (digestParam !== undefined) {
        // Monolithic upload: the whole blob in the POST body.
        const digest = parseDigest(digestParam);
        const length = declaredLength(ctx);
        await quotas.check(name, length ?? 0, digest);
        const upload = await uploads.create(name, deps.gate.owner(ctx));
        try {
          const received = await streaming(() => uploads.append(upload, ctx.req, { length }));
          await completeWithinQuota(received, digest);
        } catch (err) {
          await uploads.cancel(upload).catch(() => {});
          throw err;
        }
        return created(ctx, name, digest);
      }

      const upload = await uploads.create(name, deps.gate.owner(ctx));
      const headers = sessionHeaders(upload);
      if (deps.config.chunkMinLength > 0) headers['OCI-Chunk-Min-Length'] = String(deps.config.chunkMinLength);
      replyEmpty(ctx, 202, headers);
    },
  };

  const session: Record<string, Handler> = {
    async GET(ctx, { name, ref }) {
      const upload = await ownSession(ctx, name, ref);
      replyEmpty(ctx, 204, sessionHeaders(upload));
    },

    async PATCH(ctx, { name, ref }) {
      const upload = await appendWithinQuota(ctx, await ownSession(ctx, name, ref));
      replyEmpty(ctx, 202, sessionHeaders(upload));
    },

    async PUT(ctx, { name, ref }) {
      const digestParam = queryString(ctx, 'digest');
      if (digestParam === undefined) throw new RegistryError('DIGEST_INVALID', 'the digest query parameter is required');
      const digest = parseDigest(digestParam);
      let upload = await ownSession(ctx, name, ref);
      if (hasBody(ctx)) upload = await appendWithinQuota(ctx, upload);
      await completeWithinQuota(upload, digest);
      created(ctx, name, digest);
    },

    async DELETE(ctx, { name, ref }) {
      const upload = await ownSession(ctx, name, ref);
      await uploads.cancel(upload);
      replyEmpty(ctx, 204);
    },
  };

  return { collection, session };
}
