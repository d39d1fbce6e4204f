// The S3 StorageDriver: storage paths as object keys (keys.ts), every request through one Bucket (bucket.ts,
// where the SDK's errors become storage's), appends as multipart uploads (writer.ts).
import { S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { tmpdir } from 'node:os';
import type { Readable } from 'node:stream';
import {
  pageOfNames,
  InvalidPathError,
  PathNotFoundError,
  type ByteRange,
  type FileInfo,
  type FileWriter,
  type ListPage,
  type RedirectOptions,
  type StorageDriver,
} from '../driver.ts';
import { Bucket, MAX_COPY_OBJECT_SIZE } from './bucket.ts';
import { Keys, sidecarOf } from './keys.ts';
import { DEFAULT_PART_SIZE, MAX_PART_SIZE, MIN_PART_SIZE, partSizeFor } from './parts.ts';
import { emptyState, Sidecars } from './sidecar.ts';
import { S3Writer, type WriterSetup } from './writer.ts';

const MiB = 1024 * 1024;

export interface S3DriverOptions {
  bucket: string;
  /** Key prefix inside the bucket ("" or e.g. "registry/"); a trailing "/" is added when missing. */
  prefix?: string;
  region?: string;
  /** For S3-compatible stores (MinIO, Ceph, R2, …); AWS when unset. */
  endpoint?: string;
  forcePathStyle?: boolean;
  /** Default: the SDK's default chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE, roles). */
  credentials?: S3ClientConfig['credentials'];
  /** Size of parts 1–1000 of a chunked upload (then doubling every 1000 parts); at least 5 MiB. */
  partSize?: number;
  /** Part uploads in flight at once for one writer (each holds one part on disk). */
  uploadConcurrency?: number;
  /** Objects larger than this are moved with a multipart copy; at most 5 GiB (CopyObject's limit). */
  copyThreshold?: number;
  /** Part size of a multipart copy. */
  copyPartSize?: number;
  /** MaxKeys of one ListObjectsV2 page. */
  listPageSize?: number;
  /** Where a write keeps the part it is filling (default: the system's temporary folder). */
  spoolDir?: string;
  /** Connections to S3 at once (each blob being read holds one). */
  maxSockets?: number;
  /** A request whose connection stays silent this long fails (and is retried where that is safe). */
  requestTimeoutMs?: number;
  /** Receives the SDK's warnings and errors (never its per-request logs). */
  logger?: { warn(message: string): void; error(message: string): void };
}

function s3Client(options: S3DriverOptions): S3Client {
  const maxSockets = options.maxSockets ?? 512;
  const logger = options.logger;
  return new S3Client({
    region: options.region ?? 'us-east-1',
    endpoint: options.endpoint,
    forcePathStyle: options.forcePathStyle ?? false,
    credentials: options.credentials,
    // Checksums only where S3 requires them: the SDK's default sends streamed bodies aws-chunked with a
    // trailing checksum, which many S3-compatible stores do not understand. Blobs are checked against
    // their digest anyway.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    requestHandler: {
      connectionTimeout: 10_000,
      requestTimeout: options.requestTimeoutMs ?? 60_000,
      // Without it this SDK only logs a warning and the request hangs on.
      throwOnRequestTimeout: true,
      httpAgent: new HttpAgent({ keepAlive: true, maxSockets }),
      httpsAgent: new HttpsAgent({ keepAlive: true, maxSockets }),
    },
    logger: {
      debug: () => {},
      info: () => {},
      warn: (...args: unknown[]) => logger?.warn(args.map(String).join(' ')),
      error: (...args: unknown[]) => logger?.error(args.map(String).join(' ')),
    },
  });
}

export class S3Driver implements StorageDriver {
  readonly name = 's3';
  readonly bucket: Bucket;
  readonly keys: Keys;
  private readonly sidecars: Sidecars;
  private readonly writers: WriterSetup;

  constructor(options: S3DriverOptions) {
    const firstPartSize = options.partSize ?? DEFAULT_PART_SIZE;
    if (firstPartSize < MIN_PART_SIZE || firstPartSize > MAX_PART_SIZE) {
      throw new RangeError(`S3 part size must be between 5 MiB and 5 GiB, not ${firstPartSize}`);
    }
    this.bucket = new Bucket(s3Client(options), options.bucket, {
      where: options.endpoint ?? `AWS region ${options.region ?? 'us-east-1'}`,
      listPageSize: Math.max(1, Math.min(options.listPageSize ?? 1000, 1000)),
      copyThreshold: Math.min(options.copyThreshold ?? MAX_COPY_OBJECT_SIZE, MAX_COPY_OBJECT_SIZE),
      copyPartSize: Math.max(MIN_PART_SIZE, Math.min(options.copyPartSize ?? 512 * MiB, MAX_PART_SIZE)),
    });
    this.keys = new Keys(options.prefix);
    this.sidecars = new Sidecars(this.bucket, this.keys);
    this.writers = {
      bucket: this.bucket,
      keys: this.keys,
      sidecars: this.sidecars,
      partSize: (n) => partSizeFor(n, firstPartSize),
      uploadConcurrency: Math.max(1, options.uploadConcurrency ?? 4),
      spoolDir: options.spoolDir ?? tmpdir(),
    };
  }

  /** Releases the client's sockets. */
  async close(): Promise<void> {
    this.bucket.client.destroy();
  }

  /** Checks that the bucket answers with these credentials (at start-up). */
  async ready(): Promise<void> {
    await this.bucket.ready();
  }

  async getContent(path: string): Promise<Buffer | undefined> {
    if (path === '/') return undefined;
    return this.bucket.bytes(this.keys.object(path));
  }

  async putContent(path: string, content: Buffer | string): Promise<void> {
    if (path === '/') throw new InvalidPathError(path);
    await this.bucket.put(this.keys.object(path), typeof content === 'string' ? Buffer.from(content) : content);
  }

  async reader(path: string, range?: ByteRange): Promise<Readable> {
    if (path === '/') throw new PathNotFoundError(path);
    const body = await this.bucket.stream(this.keys.object(path), range);
    if (!body) throw new PathNotFoundError(path);
    return body;
  }

  async redirectURL(path: string, options: RedirectOptions): Promise<string | undefined> {
    if (path === '/') return undefined;
    return this.bucket.presignedGet(this.keys.object(path), options.expiresInSeconds);
  }

  async stat(path: string): Promise<FileInfo | undefined> {
    if (path === '/') return { path, size: 0, modifiedAt: new Date(), isDirectory: true };
    // A file being written has no object yet (or an older one): its writer state knows its size.
    const [head, state] = await Promise.all([this.bucket.head(this.keys.object(path)), this.sidecars.read(path)]);
    if (state) return { path, size: state.size, modifiedAt: new Date(state.updatedAt), isDirectory: false };
    if (head) return { path, size: head.size, modifiedAt: head.modifiedAt, isDirectory: false };
    const res = await this.bucket.listPage({ prefix: this.keys.dir(path), maxKeys: 1 });
    const first = res.Contents?.[0];
    if (!first) return undefined;
    return { path, size: 0, modifiedAt: first.LastModified ?? new Date(), isDirectory: true };
  }

  async list(path: string, page?: ListPage): Promise<string[]> {
    const prefix = this.keys.dir(path);
    const names = new Set<string>();
    // Only names after `after` count toward the limit (StartAfter still lets a folder named `after` through).
    const add = (name: string) => {
      if (page?.after === undefined || name > page.after) names.add(name);
    };
    const limit = page?.limit ?? Infinity;
    let token: string | undefined;
    do {
      const res = await this.bucket.listPage({
        prefix,
        delimiter: '/',
        token,
        // A page is asked of S3 itself: a folder of 10,000 entries costs one request for the first few.
        startAfter: token || page?.after === undefined ? undefined : `${prefix}${page.after}`,
        maxKeys: limit === Infinity ? undefined : limit + 1,
      });
      for (const common of res.CommonPrefixes ?? []) {
        const name = common.Prefix!.slice(prefix.length, -1);
        if (name && !name.startsWith('.')) add(name);
      }
      for (const object of res.Contents ?? []) {
        const name = object.Key!.slice(prefix.length);
        if (!name) continue;
        if (name.startsWith('.')) {
          // A file that is being written shows under its own name, as on a filesystem.
          const writing = sidecarOf(name);
          if (writing !== undefined) add(writing);
          continue;
        }
        add(name);
      }
      token = res.IsTruncated && names.size < limit ? res.NextContinuationToken : undefined;
    } while (token);
    const base = path === '/' ? '' : path;
    return pageOfNames([...names].sort(), page).map((name) => `${base}/${name}`);
  }

  async move(from: string, to: string): Promise<void> {
    const source = this.keys.object(from);
    if (from === '/') throw new PathNotFoundError(from);
    const [head, state] = await Promise.all([this.bucket.head(source), this.sidecars.read(from)]);
    // The object of a file that is being written is not its content yet (it is, once committed).
    if (state) throw new Error(`cannot move ${from}: it is being written and not committed`);
    if (!head) throw new PathNotFoundError(from);
    await this.bucket.copy(source, this.keys.object(to), head.size);
    await this.bucket.deleteKey(source);
  }

  async delete(path: string): Promise<boolean> {
    const [object, under, hidden] = await Promise.all([
      path === '/' ? undefined : this.bucket.head(this.keys.object(path)),
      this.bucket.listKeys(this.keys.dir(path)),
      path === '/' ? [] : this.bucket.listKeys(this.keys.hidden(path)),
    ]);
    const keys = [...(object ? [this.keys.object(path)] : []), ...under, ...hidden];
    if (keys.length === 0) return false;
    // Multipart uploads first, from their writer state, so that no uploaded part is left behind.
    const sidecars = keys.filter((key) => sidecarOf(key.slice(key.lastIndexOf('/') + 1)) !== undefined);
    for (const sidecar of sidecars) await this.sidecars.abortUpload(sidecar);
    await this.bucket.deleteKeys(keys);
    return true;
  }

  async writer(path: string, append: boolean): Promise<FileWriter> {
    if (path === '/') throw new InvalidPathError(path);
    const key = this.keys.object(path);
    if (!append) {
      await this.sidecars.discard(path);
      await this.bucket.put(key, Buffer.alloc(0));
      return new S3Writer(this.writers, path, emptyState(), false, true);
    }
    const [state, head] = await Promise.all([this.sidecars.read(path), this.bucket.head(key)]);
    if (state) return new S3Writer(this.writers, path, state, true, head !== undefined);
    if (!head) return new S3Writer(this.writers, path, emptyState(), false, false);
    // Appending to a committed object: it becomes the tail, whose whole parts are copied server-side.
    const tail = head.size > 0 ? [{ key, start: 0, length: head.size, objectSize: head.size }] : [];
    return new S3Writer(this.writers, path, { ...emptyState(), tail, size: head.size }, false, true);
  }
}
