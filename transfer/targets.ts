// The two places an import writes to: the configured storage itself (berth import without --url), or a
// registry over HTTP (--url: a running Berth, or any registry), through the runtime client's pusher.
import type { Readable } from 'node:stream';
import type { RegistryPusher } from '../client/index.ts';
import { parseReference, type Digest, type Storage } from '../storage/index.ts';
import type { BlobOutcome, ImportTarget } from './import.ts';

export function registryTarget(pusher: RegistryPusher): ImportTarget {
  return {
    pushBlob: (repository, digest, size, open) => pusher.pushBlob(repository, digest.value, size, open),
    putManifest: async (repository, reference, bytes, mediaType) => void (await pusher.putManifest(repository, reference, bytes, mediaType)),
  };
}

export function storageTarget(storage: Storage): ImportTarget {
  return {
    pushBlob: (repository, digest, size, open) => storeBlob(storage, repository, digest, size, open),
    async putManifest(repository, ref, bytes, mediaType) {
      const reference = parseReference(ref)!;
      // As a PUT of the manifest route: a tag an immutability policy protects is not moved.
      const immutableTag = reference.kind === 'tag' && (await storage.policies.isImmutable(repository, reference.tag));
      await storage.manifests.put(repository, reference, bytes, mediaType, { immutableTag });
    },
  };
}

/**
 * One blob into one repository under the rules a push follows (UploadStore, as the push routes): linked
 * there already, nothing; stored elsewhere, a mount (admitted by the quota, checked again and linked
 * under the blob's lock, so a collection cannot remove it in between); else an upload session (quota
 * checked first, the bytes hashed as they arrive, completed within the quota, cancelled on failure).
 */
async function storeBlob(storage: Storage, name: string, digest: Digest, size: number, open: (offset: number) => Readable): Promise<BlobOutcome> {
  const { blobs, uploads } = storage;
  if ((await blobs.sizeIn(name, digest)) !== undefined) return 'present';
  // The importer may read everything it holds: any copy here is the blob (it is known by its digest).
  if ((await blobs.size(digest)) !== undefined && (await uploads.linkStored(name, digest))) return 'mounted';
  await uploads.monolithic(name, open(0), digest, { length: size });
  return 'uploaded';
}
