// The storage room's front door: what the rest of Berth may use.
import { BlobStore } from './blobs.ts';
import type { StorageDriver } from './driver.ts';
import { FilesystemDriver } from './filesystem.ts';
import { LocalLock } from './lock.ts';
import { ManifestStore } from './manifests.ts';
import { UploadStore, type UploadObserver } from './uploads.ts';

export { BlobStore } from './blobs.ts';
export { FilesystemDriver } from './filesystem.ts';
export { ManifestStore, type StoredManifest, type ReferrerDescriptor } from './manifests.ts';
export { UploadStore, uploadRange, rangeError, isValidUploadId, type BlobUpload } from './uploads.ts';
export { PathNotFoundError, InvalidPathError, type StorageDriver, type ByteRange, type FileInfo, type FileWriter } from './driver.ts';
export { MediaType, MANIFEST_TYPES, INDEX_TYPES } from './media-types.ts';
export * from './reference.ts';

export interface Storage {
  driver: StorageDriver;
  blobs: BlobStore;
  uploads: UploadStore;
  manifests: ManifestStore;
}

export function createStorage(driver: StorageDriver, observer?: UploadObserver): Storage {
  const lock = new LocalLock();
  const blobs = new BlobStore(driver);
  return {
    driver,
    blobs,
    uploads: new UploadStore(driver, blobs, lock, observer),
    manifests: new ManifestStore(driver, blobs, lock),
  };
}

export function filesystemStorage(root: string, observer?: UploadObserver): Storage {
  return createStorage(new FilesystemDriver(root), observer);
}
