// The drivers' room: the StorageDriver contract and the drivers behind it. The rest of storage enters here.
export {
  PathNotFoundError,
  InvalidPathError,
  StorageUnavailableError,
  isStorageFailure,
  UNFLUSHED,
  getFolderContents,
  type StorageDriver, type ListPage, type ByteRange, type FileInfo, type FileWriter, type PutOptions, type RedirectOptions } from './driver.ts';
export { checkingPaths } from './checked.ts';
export { FilesystemDriver } from './filesystem.ts';
export { directIO, writePath, WritePathChooser, SlabPool, KERNEL_MS_PER_MIB, type DirectIOSetting } from './filesystem-writer.ts';

// The AWS SDK is loaded only by a process configured for S3: it costs memory in every process (workers
// included) that would otherwise never touch it.
export type { S3DriverOptions, S3Driver } from './s3/index.ts';

export async function createS3Driver(options: import('./s3/index.ts').S3DriverOptions): Promise<import('./s3/index.ts').S3Driver> {
  const { S3Driver } = await import('./s3/index.ts');
  return new S3Driver(options);
}
