// The S3 driver's folder, loaded only by a process configured for S3 (storage/index.ts imports it lazily).
export { S3Driver, type S3DriverOptions } from './driver.ts';
export { partSizeFor, DEFAULT_PART_SIZE, MIN_PART_SIZE, MAX_PART_SIZE, MAX_PARTS } from './parts.ts';
