// The mirror's only writes to storage, in one place: a fetched blob (through an upload session, so that
// storage verifies its digest, makes it durable and commits it whole), a blob stored already linked into
// a mirrored repository, and a fetched manifest. When storage takes over the upload-completion sequence
// (quota admission, the GC guard, the link) as one call, these switch to it here and nowhere else.
import type { Readable } from 'node:stream';
import type { Digest, Reference, Storage } from '../storage/index.ts';

/** Stores the bytes as the blob `digest` of repository `name`; throws (and keeps nothing) when they do not hash to it. */
export async function storeBlob(storage: Storage, name: string, digest: Digest, bytes: Readable): Promise<void> {
  const upload = await storage.uploads.create(name);
  try {
    const received = await storage.uploads.append(upload, bytes);
    await storage.quotas.admit(name, received.offset, digest, () => storage.uploads.complete(received, digest));
  } catch (err) {
    // A session that failed (wrong bytes, a cut, the quota) leaves nothing behind; only a blob is ever visible.
    await storage.uploads.cancel(upload).catch(() => {});
    throw err;
  }
}

/** Links a blob that storage holds already (pulled through another name, or pushed) into `name`; false when it is not there. */
export async function linkStoredBlob(storage: Storage, name: string, digest: Digest): Promise<boolean> {
  const size = await storage.blobs.size(digest);
  if (size === undefined) return false;
  return storage.quotas.admit(name, size, digest, () =>
    // Checked again under the blob's lock, so that a garbage collection cannot delete it in between.
    storage.blobs.guarded(digest, async () => {
      if ((await storage.blobs.size(digest)) === undefined) return false;
      await storage.blobs.link(name, digest);
      return true;
    }),
  );
}

/** Stores an upstream manifest (verified by the caller) under its tag or digest; its blobs come on demand. */
export async function storeManifest(storage: Storage, name: string, reference: Reference, bytes: Buffer, mediaType: string): Promise<void> {
  await storage.manifests.put(name, reference, bytes, mediaType || undefined, { referencesOnDemand: true });
}
