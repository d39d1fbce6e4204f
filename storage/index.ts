// The storage room's front door: what the rest of Berth may use.
import { BlobStore } from './blobs.ts';
import { checkingPaths, FilesystemDriver, type StorageDriver } from './driver/index.ts';
import { localCoordination, type Coordination } from './coordination/index.ts';
import { ManifestStore } from './manifests.ts';
import { RepositoryStore } from './repositories.ts';
import { SearchIndex } from './search.ts';
import { UploadStore, type UploadObserver } from './uploads.ts';
import { GarbageCollector } from './gc.ts';
import { PolicyStore } from './policies.ts';
import { Quotas } from './quotas.ts';
import { LifecycleJobs } from './jobs.ts';
import type { StorageListener } from './listener.ts';

export { BlobStore } from './blobs.ts';
export {
  localCoordination, retryAfterSeconds, LocalGenerations, LocalRateCounter, LocalLock,
  clusterWorkerCoordination, ClusterLockArbiter, ClusterGenerationRelay, ClusterRateRelay, ClusterAnnouncementRelay, createRedisCoordination,
  LocalAnnouncements, type Announcements, type Coordination, type Generations, type RateCounter, type RateCount, type Lock, type RedisConfig } from './coordination/index.ts';
export { ManifestStore, type StoredManifest, type ReferrerDescriptor, type ManifestChange } from './manifests.ts';
export { RepositoryStore, MAX_DESCRIPTION, MAX_README, type RepositorySettings } from './repositories.ts';
export type { VisibilitySnapshot } from './visibility.ts';
export { SearchIndex, architectureLabel, isOfficial, summaryOf, searchDocument, NEWEST_TAGS, MAX_PLATFORMS, type RepositoryEntry, type RepositorySummary, type TagFacts, type TagPage, type PlatformFacts, type SearchQuery, type SearchSort, type TagSort } from './search.ts';
export { layout, baseName, decodeName } from './layout.ts';
export { PresenceMarker, serversWithoutSharedState, type ServerPresence } from './presence.ts';
export { UploadStore, type UploadObserver, isValidUploadId, type BlobUpload, type ChunkBounds, type MountSource } from './uploads.ts';
export { StorageError, isStorageError, type StorageFault, type FaultKind, type FaultOf, type UploadPosition } from './errors.ts';
export {
  FilesystemDriver,
  checkingPaths,
  directIO,
  WritePathChooser,
  SlabPool,
  writePath,
  KERNEL_MS_PER_MIB,
  type DirectIOSetting,
  createS3Driver,
  getFolderContents,
  PathNotFoundError,
  InvalidPathError,
  StorageUnavailableError,
  isStorageFailure,
  UNFLUSHED,
  type StorageDriver, type ListPage, type ByteRange, type FileInfo, type FileWriter, type RedirectOptions, type S3DriverOptions } from './driver/index.ts';
export { MediaType, MANIFEST_TYPES, INDEX_TYPES } from './media-types.ts';
export { parseManifest, isForeignLayer, type ParsedManifest, type Descriptor } from './manifest-parser.ts';
export * from './reference.ts';
export { GarbageCollector, type GcOptions, type GcReport } from './gc.ts';
export { PolicyStore, PolicyError, namespaceOf, matchesTagPattern, type Policy, type EffectivePolicy } from './policies.ts';
export { Quotas, type UsageCorrection } from './quotas.ts';
export { FolderSweep, mapLimit, SWEEP_PAGE_SIZE } from './walk.ts';
export { applyRetention, type RetentionResult, type RetentionOptions } from './retention.ts';
export { allOf, type StorageListener, type ManifestFacts, type ManifestDeletion, type Requester, type RequestedBy } from './listener.ts';
export { SecretSeal } from './seal.ts';
export { LifecycleJobs, gcSummary, readJobRecord, writeJobRecord, type JobName, type JobRecord } from './jobs.ts';

export interface Storage {
  driver: StorageDriver;
  blobs: BlobStore;
  uploads: UploadStore;
  manifests: ManifestStore;
  repositories: RepositoryStore;
  search: SearchIndex;
  policies: PolicyStore;
  quotas: Quotas;
  gc: GarbageCollector;
  jobs: LifecycleJobs;
  /** Sets the one listener told of pushes, deletes, pulls and collections (storage never knows who it is). */
  listen(listener: StorageListener): void;
}

export function createStorage(
  given: StorageDriver,
  observer?: UploadObserver,
  coordination: Coordination = localCoordination(),
): Storage {
  const driver = checkingPaths(given);
  const blobs = new BlobStore(driver, coordination.generations, coordination.lock);
  const manifests = new ManifestStore(driver, blobs, coordination.lock, coordination.generations);
  const repositories = new RepositoryStore(driver, coordination.lock);
  const search = new SearchIndex(driver, manifests, blobs, repositories, coordination.lock, coordination.generations);
  manifests.changed = (change) => search.apply(change);
  repositories.changed = (name) => search.apply({ name, tags: [] });
  const policies = new PolicyStore(driver);
  const quotas = new Quotas(blobs.usage, policies, coordination.lock);
  const gc = new GarbageCollector(driver, blobs, manifests, coordination.lock, quotas);
  const jobs = new LifecycleJobs(driver, gc, manifests, policies, coordination.lock);
  return {
    driver,
    blobs,
    uploads: new UploadStore(driver, blobs, quotas, coordination.lock, observer),
    manifests,
    repositories,
    search,
    policies,
    quotas,
    gc,
    jobs,
    listen(listener) {
      manifests.listener = blobs.listener = jobs.listener = listener;
    },
  };
}

export function filesystemStorage(root: string, observer?: UploadObserver, coordination?: Coordination): Storage {
  return createStorage(new FilesystemDriver(root), observer, coordination);
}
