// StorageDriver: the one door to where bytes live (a local folder or an S3 bucket). Everything above it speaks
// in storage paths ("/blobs/sha256/ab/…/data"), never in file names or object keys.
import type { Readable, Writable } from 'node:stream';

export interface FileInfo {
  readonly path: string;
  readonly size: number;
  readonly modifiedAt: Date;
  readonly isDirectory: boolean;
}

export interface ListPage {
  /** A child's name (not a path): the listing begins after it. */
  after?: string;
  limit?: number;
}

export interface PutOptions {
  /** False: skip the flush to stable storage (derived content that is rebuilt if lost). Default true. */
  durable?: boolean;
}

/**
 * For `putContent`: replaced atomically, not flushed to disk before the write resolves. What links and
 * indexes are written with (tags, blob links, upload sessions, search documents): after a power loss such
 * a file is old, empty or gone, never half of the new content.
 */
export const UNFLUSHED: PutOptions = { durable: false };

/** One page of sorted child names, as `list` returns it: those after `after`, at most `limit`. */
export function pageOfNames(sorted: readonly string[], page?: ListPage): string[] {
  const after = page?.after === undefined ? sorted : sorted.filter((n) => n > page.after!);
  return page?.limit === undefined ? [...after] : after.slice(0, page.limit);
}

/** Reads of a `getFolderContents` without the driver's fast path kept in flight at once (network round trips on S3). */
const CONTENTS_CONCURRENCY = 64;

/**
 * Every file directly in a folder, through the driver's `getFolderContents`, or `list` and `getContent`
 * several at a time: `each` is called with a file's name and content as it arrives, in no given order.
 */
export async function getFolderContents(driver: StorageDriver, path: string, each: (name: string, content: Buffer) => void): Promise<void> {
  if (driver.getFolderContents) return driver.getFolderContents(path, each);
  const paths = await driver.list(path);
  let next = 0;
  const reader = async () => {
    while (next < paths.length) {
      const child = paths[next++]!;
      const content = await driver.getContent(child);
      if (content) each(child.slice(child.lastIndexOf('/') + 1), content);
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONTENTS_CONCURRENCY, paths.length) }, reader));
}

/** Inclusive byte range, as HTTP writes it. */
export interface ByteRange {
  readonly start: number;
  readonly end: number;
}

/**
 * An appendable file. A `write` either lands whole or not at all: a source that fails half-way is rolled
 * back to the size the file had before, so an interrupted chunk never leaves stray bytes. What a write
 * stored is there for the next writer of the same path, in this process or another one; `stat` reports the
 * new size at once, but the bytes are readable (`reader`, `getContent`) only after `commit` (on S3 they sit
 * in a multipart upload until then).
 */
export interface FileWriter {
  readonly size: number;
  write(source: AsyncIterable<Buffer>): Promise<number>;
  /**
   * Makes everything written durable and readable; after it, the file can be moved into place, and a new
   * writer can still append to it.
   */
  commit(): Promise<void>;
  /** Releases the writer without committing; what was written stays (an upload can continue later). */
  close(): Promise<void>;
}

export interface RedirectOptions {
  /** How long the URL stays valid (a request begun within it may run longer). */
  readonly expiresInSeconds: number;
}

export interface StorageDriver {
  readonly name: string;
  /**
   * True where what a writer wrote is readable (`reader`) before `commit`, up to the size `stat` reports,
   * by this process and every other one sharing the storage (a filesystem; not S3, whose parts are read
   * only once the multipart upload completes).
   */
  readonly readableBeforeCommit?: boolean;
  /** Checks once, at start-up, that the storage answers; throws StorageUnavailableError otherwise. */
  ready?(): Promise<void>;
  /** Releases connections (an S3 client's sockets); the driver is not used after it. */
  close?(): Promise<void>;
  /** Small files only (links, metadata, manifests). */
  getContent(path: string): Promise<Buffer | undefined>;
  /**
   * Optional fast path for reading every small file directly in a folder (every search summary at a first
   * start): calls `each` with each file's name and content, in no given order. A missing folder has none;
   * a child folder, or a file removed while the folder is read, is left out. Drivers without it are read
   * through `list` and `getContent` (see `getFolderContents`).
   */
  getFolderContents?(path: string, each: (name: string, content: Buffer) => void): Promise<void>;
  /**
   * Replaces the file atomically: readers see the old content or the new one, never a mix. Durable when
   * it resolves, unless `durable: false` says the content can be derived again (an index): then a crash
   * may leave it old, empty or torn, and its reader must rebuild it.
   */
  putContent(path: string, content: Buffer | string, options?: PutOptions): Promise<void>;
  /** Streams a file or a byte range of it. Throws PathNotFoundError when it does not exist. */
  reader(path: string, range?: ByteRange): Promise<Readable>;
  /**
   * Optional fast path for serving a file: writes it (or a range) into the sink, reusing its buffers, and
   * resolves when the sink has taken every byte. Drivers without it are read through `reader`.
   */
  copyTo?(path: string, sink: Writable, range?: ByteRange): Promise<void>;
  /**
   * Optional: a URL from which anyone holding it may GET the file (all of it, or any Range) for a short
   * while, without credentials of their own (an S3 presigned URL), so that its bytes need not pass through
   * this process. Undefined when the driver cannot give one for this path. It does not check that the file
   * exists: the caller has.
   */
  redirectURL?(path: string, options: RedirectOptions): Promise<string | undefined>;
  /** Opens a file for appending (append) or anew (truncating). */
  writer(path: string, append: boolean): Promise<FileWriter>;
  stat(path: string): Promise<FileInfo | undefined>;
  /**
   * The direct children of a directory, as full storage paths, sorted; empty when it does not exist.
   * With `after`, only children whose name sorts after it; with `limit`, at most that many (on S3, a
   * page of a listing instead of the whole folder).
   */
  list(path: string, page?: ListPage): Promise<string[]>;
  /** Atomic on a filesystem: the target appears whole or not at all. */
  move(from: string, to: string): Promise<void>;
  /** Deletes a file or a whole tree. Returns whether anything was there. */
  delete(path: string): Promise<boolean>;
  /**
   * Optional: sets a file's modification time to now, its content unchanged (false when there is no such
   * file). Drivers without it (S3: an object's time changes only when it is written) are written again.
   */
  touch?(path: string): Promise<boolean>;
}

export class PathNotFoundError extends Error {
  constructor(readonly path: string) {
    super(`path not found: ${path}`);
    this.name = 'PathNotFoundError';
  }
}

/** The storage failed or did not answer (a driver's service or network error, a timeout); `cause` says how. */
export class StorageUnavailableError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'StorageUnavailableError';
  }
}

/**
 * Whether an error means the storage itself failed or did not answer (as opposed to a missing path, a
 * bad path, or a failure of the request's own body). Each driver says so in storage's own words: the S3
 * driver turns its SDK's failures into StorageUnavailableError.
 */
export function isStorageFailure(err: unknown): boolean {
  return err instanceof StorageUnavailableError;
}

export class InvalidPathError extends Error {
  constructor(readonly path: string) {
    super(`invalid storage path: ${JSON.stringify(path.slice(0, 200))}`);
    this.name = 'InvalidPathError';
  }
}

// Segments are plain names: no "..", no ".", no empty segment, no separator or control character.
const SEGMENT_RE = /^[A-Za-z0-9_~-][A-Za-z0-9._~-]*$/;

export function checkPath(path: string): string {
  if (!path.startsWith('/') || path.length > 1024) throw new InvalidPathError(path);
  if (path === '/') return path;
  for (const segment of path.slice(1).split('/')) {
    if (!SEGMENT_RE.test(segment) || segment === '.' || segment === '..') throw new InvalidPathError(path);
  }
  return path;
}
