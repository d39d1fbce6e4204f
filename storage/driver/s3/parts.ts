// S3's limits for multipart uploads, and the size of each part a writer uploads.
const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

export const MIN_PART_SIZE = 5 * MiB;
export const MAX_PART_SIZE = 5 * GiB;
export const MAX_PARTS = 10_000;
export const DEFAULT_PART_SIZE = 16 * MiB;
/** Parts keep their size for this many part numbers, then double. */
const PARTS_PER_SIZE = 1000;

/**
 * The size of part `n` (1-based): `first` for parts 1–1000, doubling every 1000 parts, at most 5 GiB. With
 * the default 16 MiB the first 1000 parts hold 15.6 GiB, 5000 parts 484 GiB and 6000 parts 984 GiB; even
 * with 5 MiB parts, 10,000 parts hold more than 2.5 TiB.
 */
export function partSizeFor(n: number, first: number = DEFAULT_PART_SIZE): number {
  return Math.min(MAX_PART_SIZE, first * 2 ** Math.floor((n - 1) / PARTS_PER_SIZE));
}
