// POST /v2/<name>/blobs/uploads/ and PATCH / PUT / GET / DELETE /v2/<name>/blobs/uploads/<id>
import type { Context } from 'koa';
import { rangeNotSatisfiable, RegistryError, uploadSessionHeaders } from '../errors.ts';
import { parseDigest, tryParseDigest, type BlobUpload, type ChunkBounds, type Digest } from '../../storage/index.ts';
import { declaredLength, hasBody, location, queryString, replyEmpty, type DistributionDeps, type Handler } from './http.ts';

const CONTENT_RANGE_RE = /^(?:bytes[ =])?(\d+)-(\d+)(?:\/(?:\d+|\*))?$/;

export function uploadHandlers(deps: DistributionDeps): { collection: Record<string, Handler>; session: Record<string, Handler> } {
  const { uploads } = deps.storage;

  function sessionHeaders(upload: BlobUpload): Record<string, string> {
    return { ...uploadSessionHeaders(upload, deps.config.publicUrl), 'Blob-Upload-Session-ID': upload.id };
  }

  function created(ctx: Context, name: string, digest: Digest): void {
    replyEmpty(ctx, 201, {
      Location: location(deps, `/v2/${name}/blobs/${digest.value}`),
      'Docker-Content-Digest': digest.value,
    });
  }

  /** Content-Range of a chunk, when the client gave one: the chunk's start and its length. */
  function chunkRange(ctx: Context, upload: BlobUpload): ChunkBounds {
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

  /** The digest a mount linked, when the query asks for one (`mount`, `from`) that a repository the caller may pull holds. */
  async function tryMount(ctx: Context, name: string): Promise<Digest | undefined> {
    const digest = tryParseDigest(queryString(ctx, 'mount') ?? '');
    if (!digest) return undefined;
    const mayRead = (source: string) => deps.gate.mayPull(ctx, source);
    return (await uploads.mount(name, digest, { from: queryString(ctx, 'from'), mayRead })) ? digest : undefined;
  }

  /** The upload slot is held while the chunk streams in (see UploadAdmission). */
  function appendChunk(ctx: Context, upload: BlobUpload): Promise<BlobUpload> {
    const chunk = chunkRange(ctx, upload);
    return deps.admission.run(() => uploads.append(upload, ctx.req, chunk));
  }

  /** The session named by the URL, if the caller opened it (see UploadStore.require). */
  const ownSession = (ctx: Context, name: string, id: string) => uploads.require(name, id, deps.gate.owner(ctx));

  const collection: Record<string, Handler> = {
    async POST(ctx, { name }) {
      const mounted = await tryMount(ctx, name);
      if (mounted) return created(ctx, name, mounted);

      const digestParam = queryString(ctx, 'digest');
      if (digestParam !== undefined) {
        // Monolithic upload: the whole blob in the POST body.
        const digest = parseDigest(digestParam);
        const options = { length: declaredLength(ctx), owner: deps.gate.owner(ctx) };
        await deps.admission.run(() => uploads.monolithic(name, ctx.req, digest, options));
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
      const upload = await appendChunk(ctx, await ownSession(ctx, name, ref));
      replyEmpty(ctx, 202, sessionHeaders(upload));
    },

    async PUT(ctx, { name, ref }) {
      const digestParam = queryString(ctx, 'digest');
      if (digestParam === undefined) throw new RegistryError('DIGEST_INVALID', 'the digest query parameter is required');
      const digest = parseDigest(digestParam);
      let upload = await ownSession(ctx, name, ref);
      if (hasBody(ctx)) upload = await appendChunk(ctx, upload);
      await uploads.complete(upload, digest);
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
