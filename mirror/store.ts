// The mirror's only writes to storage, in one place, through the same push rules a client's push follows
// (UploadStore: quota admission, the GC guard, the link): a fetched blob (as a monolithic upload, so that
// storage verifies its digest, makes it durable and commits it whole), a blob stored already linked into
// a mirrored repository (a mount), and a fetched manifest.
import type { Readable } from 'node:stream';
import type { BlobUpload, Digest, Reference, Storage } from '../storage/index.ts';

/** Stores the bytes as the blob `digest` of repository `name`; throws (and keeps nothing) when they do not hash to it. */
export async function storeBlob(storage: Storage, name: string, digest: Digest, bytes: Readable, opened?: (session: BlobUpload) => void): Promise<void> {
  // A session that fails (wrong bytes, a cut, the quota) leaves nothing behind; only a blob is ever visible.
  // `opened` learns the session, so that other processes can follow its bytes (shared-fill.ts).
  await storage.uploads.monolithic(name, bytes, digest, { opened });
}

/** Links a blob that storage holds already (pulled through another name, or pushed) into `name`; false when it is not there. */
export function linkStoredBlob(storage: Storage, name: string, digest: Digest): Promise<boolean> {
  // The mirror serves what its upstream serves: any copy held here will do (it is verified by digest).
  return storage.uploads.linkStored(name, digest);
}

/** Stores an upstream manifest (verified by the caller) under its tag or digest; its blobs come on demand. */
export async function storeManifest(storage: Storage, name: string, reference: Reference, bytes: Buffer, mediaType: string): Promise<void> {
  await storage.manifests.put(name, reference, bytes, mediaType || undefined, { referencesOnDemand: true });
}
