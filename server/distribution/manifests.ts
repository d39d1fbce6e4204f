// GET / HEAD / PUT / DELETE /v2/<name>/manifests/<reference>
import type { Context } from 'koa';
import { RegistryError } from '../errors.ts';
import { looksLikeDigest, MediaType, parseDigest, parseReference, type Reference, type StoredManifest } from '../../storage/index.ts';
import { location, readLimited, replyEmpty, replyHead, type DistributionDeps, type Handler } from './http.ts';
import { requestedBy } from '../requester.ts';

/**
 * A client that lists media types without OCI ones cannot read an OCI manifest; as Distribution does,
 * it is told the manifest is unknown rather than handed bytes it will misparse.
 */
function acceptable(ctx: Context, mediaType: string): boolean {
  if (mediaType !== MediaType.OciManifest && mediaType !== MediaType.OciIndex) return true;
  const accept = ctx.get('Accept');
  if (!accept) return true;
  const types = accept.split(',').map((t) => t.split(';')[0]!.trim().toLowerCase());
  return types.some((t) => t === mediaType || t === '*/*' || t === 'application/*' || t === '');
}

export function manifestHandlers(deps: DistributionDeps): Record<string, Handler> {
  const { manifests, policies } = deps.storage;

  /** Deleting a tag that a policy makes immutable (or a manifest such a tag names) is refused. */
  async function refuseImmutableDelete(name: string, reference: Reference): Promise<void> {
    const tags = reference.kind === 'tag' ? [reference.tag] : await manifests.tagsOf(name, reference.digest);
    for (const tag of tags) {
      if (await policies.isImmutable(name, tag)) {
        throw new RegistryError('DENIED', `tag ${tag} of ${name} is immutable: it cannot be deleted`, { name, tag });
      }
    }
  }

  /** A malformed digest is a bad request; a malformed tag simply names nothing. */
  function referenceFor(ref: string, forWrite: boolean): Reference {
    const reference = parseReference(ref);
    if (reference) return reference;
    if (looksLikeDigest(ref)) parseDigest(ref);
    if (forWrite) throw new RegistryError('MANIFEST_INVALID', 'invalid tag', { tag: ref.slice(0, 200) });
    throw new RegistryError('MANIFEST_UNKNOWN', undefined, { reference: ref.slice(0, 200) });
  }

  async function find(ctx: Context, name: string, ref: string): Promise<StoredManifest> {
    const reference = referenceFor(ref, false);
    const manifest = await manifests.get(name, reference);
    if (!manifest) throw new RegistryError('MANIFEST_UNKNOWN', undefined, { name, reference: ref });
    if (!acceptable(ctx, manifest.mediaType)) {
      throw new RegistryError('MANIFEST_UNKNOWN', `the manifest is ${manifest.mediaType}, which the Accept header does not list`, {
        name,
        reference: ref,
        mediaType: manifest.mediaType,
      });
    }
    return manifest;
  }

  function headers(manifest: StoredManifest): Record<string, string> {
    return {
      'Content-Type': manifest.mediaType,
      'Docker-Content-Digest': manifest.digest,
      ETag: `"${manifest.digest}"`,
    };
  }

  return {
    async HEAD(ctx, { name, ref }) {
      const manifest = await find(ctx, name, ref);
      replyHead(ctx, 200, manifest.content.length, headers(manifest));
    },

    async GET(ctx, { name, ref }) {
      const manifest = await find(ctx, name, ref);
      // A pull asks for the manifest by tag first (then maybe a platform's by digest): count that one.
      if (!looksLikeDigest(ref)) deps.storage.search.countPull(name);
      manifests.pulled(name, manifest, looksLikeDigest(ref) ? undefined : ref, requestedBy(ctx));
      ctx.status = 200;
      ctx.body = manifest.content;
      ctx.set(headers(manifest));
    },

    async PUT(ctx, { name, ref }) {
      const reference = referenceFor(ref, true);
      const bytes = await readLimited(ctx, deps.config.maxManifestBytes);
      const immutableTag = reference.kind === 'tag' && (await policies.isImmutable(name, reference.tag));
      const result = await manifests.put(name, reference, bytes, ctx.get('Content-Type') || undefined, { immutableTag, by: requestedBy(ctx) });
      const headers: Record<string, string> = {
        Location: location(deps, `/v2/${name}/manifests/${result.digest}`),
        'Docker-Content-Digest': result.digest,
      };
      if (result.subject) headers['OCI-Subject'] = result.subject;
      replyEmpty(ctx, 201, headers);
    },

    async DELETE(ctx, { name, ref }) {
      const reference = referenceFor(ref, false);
      await refuseImmutableDelete(name, reference);
      if (!(await manifests.delete(name, reference, requestedBy(ctx)))) {
        throw new RegistryError('MANIFEST_UNKNOWN', undefined, { name, reference: ref });
      }
      replyEmpty(ctx, 202);
    },
  };
}
