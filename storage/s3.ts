// The S3 StorageDriver. A storage path becomes an object key: the optional prefix, then the path without its
// leading "/" ("/blobs/sha256/ab/…/data" → "<prefix>blobs/sha256/ab/…/data"). A "directory" is a key prefix:
// it exists while any key lies under it.
//
// Writers map appends onto one S3 multipart upload, with every fact about it stored in S3 itself, so that
// the next chunk of an upload session can be handled by another process or after a restart:
//   <dir>/.<name>@writer      JSON: UploadId, the parts (number, ETag, size) and the tail, the bytes that
//                             are not yet in a part, as a list of byte ranges of stored objects
//   <dir>/.<name>@tail@<hex>  the objects those tail ranges point into (one per write, or merged)
// Storage path segments never start with "." and never contain "@", so these names can collide with no
// path, and every one of them for a path shares the key prefix "<dir>/.<name>@".
//
// Part n of an upload is exactly partSize(n) bytes (the last one excepted): small writes accumulate in the
// tail until a part is full. While a write runs, the bytes go to a temporary file on disk, one part's worth
// at most (plus the parts still uploading), and each part is streamed from there, so memory stays bounded
// whatever the size of the blob. The writer state is replaced (one atomic PutObject) only when a write
// succeeds: a write whose source fails leaves it as it was, and the parts it uploaded are not recorded (a
// later write uploads those part numbers again).
//
// Data written becomes readable (reader, getContent) when the writer commits; stat reports the size at once.
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
  UploadPartCopyCommand,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { randomBytes } from 'node:crypto';
import fs, { createReadStream } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import {
  checkPath,
  pageOfNames,
  InvalidPathError,
  PathNotFoundError,
  StorageUnavailableError,
  type ByteRange,
  type FileInfo,
  type FileWriter,
  type ListPage,
  type RedirectOptions,
  type StorageDriver,
} from './driver.ts';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/** S3's limits for multipart uploads. */
export const MIN_PART_SIZE = 5 * MiB;
export const MAX_PART_SIZE = 5 * GiB;
export const MAX_PARTS = 10_000;
/** CopyObject copies objects up to 5 GiB; larger ones are copied part by part. */
const MAX_COPY_OBJECT_SIZE = 5 * GiB;
export const DEFAULT_PART_SIZE = 16 * MiB;
/** Parts keep their size for this many part numbers, then double. */
const PARTS_PER_SIZE = 1000;
/** A tail of more ranges than this is merged into one object when the next write ends. */
const MAX_TAIL_RANGES = 16;
const SPOOL_BATCH_BYTES = MiB;

/**
 * The size of part `n` (1-based): `first` for parts 1–1000, doubling every 1000 parts, at most 5 GiB. With
 * the default 16 MiB the first 1000 parts hold 15.6 GiB, 5000 parts 484 GiB and 6000 parts 984 GiB; even
 * with 5 MiB parts, 10,000 parts hold more than 2.5 TiB.
 */
export function partSizeFor(n: number, first: number = DEFAULT_PART_SIZE): number {
  return Math.min(MAX_PART_SIZE, first * 2 ** Math.floor((n - 1) / PARTS_PER_SIZE));
}

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

/** A byte range of a stored object: where tail bytes live until they become part of a part. */
interface Piece {
  key: string;
  start: number;
  length: number;
  /** The whole object's size, so that a piece covering all of it can be copied server-side. */
  objectSize: number;
}

interface PartRecord {
  n: number;
  etag: string;
  size: number;
}

/** What the writer sidecar object holds. */
interface WriterState {
  version: 1;
  uploadId?: string;
  parts: PartRecord[];
  tail: Piece[];
  size: number;
  updatedAt: string;
  /** Which write stored this state (to settle a save whose answer was lost). */
  writeId?: string;
}

interface Head {
  size: number;
  modifiedAt: Date;
}

const WRITER_SUFFIX = '@writer';
const HIDDEN_WRITER_RE = /^\.(.+)@writer$/;

function httpStatus(err: unknown): number | undefined {
  return (err as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode;
}

function errorName(err: unknown): string | undefined {
  return (err as Error | undefined)?.name;
}

function isMissing(err: unknown): boolean {
  const name = errorName(err);
  if (name === 'NoSuchKey' || name === 'NotFound') return true;
  return httpStatus(err) === 404 && name !== 'NoSuchBucket' && name !== 'NoSuchUpload';
}

function isNoSuchUpload(err: unknown): boolean {
  return errorName(err) === 'NoSuchUpload';
}

function isRetryable(err: unknown): boolean {
  if (errorName(err) === 'AbortError') return false;
  const status = httpStatus(err);
  return status === undefined || status >= 500 || status === 429;
}

function tailBytes(tail: readonly Piece[]): number {
  let total = 0;
  for (const piece of tail) total += piece.length;
  return total;
}

/** The first `bytes` of a tail, and the rest. */
function splitTail(tail: readonly Piece[], bytes: number): [Piece[], Piece[]] {
  const head: Piece[] = [];
  const rest: Piece[] = [];
  let left = bytes;
  for (const piece of tail) {
    if (left >= piece.length) {
      head.push(piece);
      left -= piece.length;
    } else if (left > 0) {
      head.push({ ...piece, length: left });
      rest.push({ ...piece, start: piece.start + left, length: piece.length - left });
      left = 0;
    } else {
      rest.push(piece);
    }
  }
  return [head, rest];
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function copySource(bucket: string, key: string): string {
  // URL-encoded, as S3 wants it; "/" and "@" (in writer object names) are left as they are.
  return `${bucket}/${encodeURIComponent(key).replaceAll('%2F', '/').replaceAll('%40', '@')}`;
}

function parseState(body: Buffer, key: string): WriterState {
  const state = JSON.parse(body.toString('utf8')) as WriterState;
  if (state?.version !== 1 || !Array.isArray(state.parts) || !Array.isArray(state.tail) || typeof state.size !== 'number') {
    throw new Error(`unreadable writer state in ${key}`);
  }
  return state;
}

function emptyState(): WriterState {
  return { version: 1, parts: [], tail: [], size: 0, updatedAt: new Date().toISOString() };
}

export class S3Driver implements StorageDriver {
  readonly name = 's3';
  readonly client: S3Client;
  readonly bucket: string;
  readonly prefix: string;
  private readonly firstPartSize: number;
  readonly uploadConcurrency: number;
  private readonly copyThreshold: number;
  private readonly copyPartSize: number;
  private readonly listPageSize: number;
  readonly spoolDir: string;
  private readonly where: string;

  constructor(options: S3DriverOptions) {
    this.bucket = options.bucket;
    const prefix = (options.prefix ?? '').replace(/^\/+|\/+$/g, '');
    this.prefix = prefix ? `${prefix}/` : '';
    this.firstPartSize = options.partSize ?? DEFAULT_PART_SIZE;
    if (this.firstPartSize < MIN_PART_SIZE || this.firstPartSize > MAX_PART_SIZE) {
      throw new RangeError(`S3 part size must be between 5 MiB and 5 GiB, not ${this.firstPartSize}`);
    }
    this.uploadConcurrency = Math.max(1, options.uploadConcurrency ?? 4);
    this.copyThreshold = Math.min(options.copyThreshold ?? MAX_COPY_OBJECT_SIZE, MAX_COPY_OBJECT_SIZE);
    this.copyPartSize = Math.max(MIN_PART_SIZE, Math.min(options.copyPartSize ?? 512 * MiB, MAX_PART_SIZE));
    this.listPageSize = Math.max(1, Math.min(options.listPageSize ?? 1000, 1000));
    this.spoolDir = options.spoolDir ?? tmpdir();
    this.where = options.endpoint ?? `AWS region ${options.region ?? 'us-east-1'}`;
    const maxSockets = options.maxSockets ?? 512;
    const logger = options.logger;
    this.client = new S3Client({
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

  /** Releases the client's sockets. */
  async close(): Promise<void> {
    this.client.destroy();
  }

  /** Checks that the bucket answers with these credentials (at start-up). */
  async ready(): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }), { abortSignal: AbortSignal.timeout(20_000) });
    } catch (err) {
      const status = httpStatus(err);
      const reason =
        status === 404
          ? 'the bucket does not exist'
          : status === 403
            ? 'access denied (check the credentials and the bucket policy)'
            : status === 301
              ? 'the bucket is in another region (set BERTH_S3_REGION)'
              : `${errorName(err) ?? 'error'}${status ? ` (HTTP ${status})` : ''}: ${(err as Error).message}`;
      throw new StorageUnavailableError(`S3 bucket "${this.bucket}" at ${this.where} is not usable: ${reason}`);
    }
  }

  partSize(n: number): number {
    return partSizeFor(n, this.firstPartSize);
  }

  // ---- keys ----

  objectKey(path: string): string {
    return this.prefix + path.slice(1);
  }

  /** The key prefix of everything under a directory path. */
  dirKey(path: string): string {
    return path === '/' ? this.prefix : `${this.prefix}${path.slice(1)}/`;
  }

  /** The key prefix of a path's writer objects (sidecar and tail objects). */
  hiddenPrefix(path: string): string {
    const slash = path.lastIndexOf('/');
    return `${this.dirKey(slash === 0 ? '/' : path.slice(0, slash))}.${path.slice(slash + 1)}@`;
  }

  sidecarKey(path: string): string {
    return `${this.hiddenPrefix(path).slice(0, -1)}${WRITER_SUFFIX}`;
  }

  tailObjectKey(path: string): string {
    return `${this.hiddenPrefix(path)}tail@${Date.now().toString(36)}-${randomBytes(6).toString('hex')}`;
  }

  // ---- plain objects ----

  async getContent(path: string): Promise<Buffer | undefined> {
    checkPath(path);
    if (path === '/') return undefined;
    try {
      const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.objectKey(path) }));
      const bytes = await res.Body!.transformToByteArray();
      return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    } catch (err) {
      if (isMissing(err)) return undefined;
      throw err;
    }
  }

  async putContent(path: string, content: Buffer | string): Promise<void> {
    checkPath(path);
    if (path === '/') throw new InvalidPathError(path);
    const body = typeof content === 'string' ? Buffer.from(content) : content;
    await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: this.objectKey(path), Body: body }));
  }

  async reader(path: string, range?: ByteRange): Promise<Readable> {
    checkPath(path);
    if (path === '/') throw new PathNotFoundError(path);
    try {
      const res = await this.client.send(
        new GetObjectCommand({
          Bucket: this.bucket,
          Key: this.objectKey(path),
          Range: range ? `bytes=${range.start}-${range.end}` : undefined,
        }),
      );
      return res.Body as unknown as Readable;
    } catch (err) {
      if (isMissing(err)) throw new PathNotFoundError(path);
      throw err;
    }
  }

  /**
   * A presigned GetObject URL (SigV4 in the query string, signed with this client's credentials, region
   * and endpoint, so path-style for a custom endpoint): whoever holds it reads the object, or any Range of
   * it, straight from S3 until it expires. With temporary credentials (a role) it dies with them, if sooner.
   */
  async redirectURL(path: string, options: RedirectOptions): Promise<string | undefined> {
    checkPath(path);
    if (path === '/') return undefined;
    const command = new GetObjectCommand({
      Bucket: this.bucket,
      Key: this.objectKey(path),
      // The type Berth itself serves blobs with, whatever S3 recorded when the object was written.
      ResponseContentType: 'application/octet-stream',
    });
    return getSignedUrl(this.client, command, { expiresIn: options.expiresInSeconds });
  }

  async head(key: string): Promise<Head | undefined> {
    try {
      const res = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return { size: res.ContentLength ?? 0, modifiedAt: res.LastModified ?? new Date() };
    } catch (err) {
      if (isMissing(err)) return undefined;
      throw err;
    }
  }

  async stat(path: string): Promise<FileInfo | undefined> {
    checkPath(path);
    if (path === '/') return { path, size: 0, modifiedAt: new Date(), isDirectory: true };
    // A file being written has no object yet (or an older one): its writer state knows its size.
    const [head, state] = await Promise.all([this.head(this.objectKey(path)), this.readState(path)]);
    if (state) return { path, size: state.size, modifiedAt: new Date(state.updatedAt), isDirectory: false };
    if (head) return { path, size: head.size, modifiedAt: head.modifiedAt, isDirectory: false };
    const res = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.dirKey(path), MaxKeys: 1 }));
    const first = res.Contents?.[0];
    if (!first) return undefined;
    return { path, size: 0, modifiedAt: first.LastModified ?? new Date(), isDirectory: true };
  }

  async list(path: string, page?: ListPage): Promise<string[]> {
    checkPath(path);
    const prefix = this.dirKey(path);
    const names = new Set<string>();
    // Only names after `after` count toward the limit (StartAfter still lets a folder named `after` through).
    const add = (name: string) => {
      if (page?.after === undefined || name > page.after) names.add(name);
    };
    const limit = page?.limit ?? Infinity;
    let token: string | undefined;
    do {
      const res = await this.client.send(
        new ListObjectsV2Command({
          Bucket: this.bucket,
          Prefix: prefix,
          Delimiter: '/',
          ContinuationToken: token,
          // A page is asked of S3 itself: a folder of 10,000 entries costs one request for the first few.
          StartAfter: token || page?.after === undefined ? undefined : `${prefix}${page.after}`,
          MaxKeys: Math.min(this.listPageSize, limit === Infinity ? this.listPageSize : limit + 1),
        }),
      );
      for (const common of res.CommonPrefixes ?? []) {
        const name = common.Prefix!.slice(prefix.length, -1);
        if (name && !name.startsWith('.')) add(name);
      }
      for (const object of res.Contents ?? []) {
        const name = object.Key!.slice(prefix.length);
        if (!name) continue;
        if (name.startsWith('.')) {
          // A file that is being written shows under its own name, as on a filesystem.
          const writing = HIDDEN_WRITER_RE.exec(name);
          if (writing) add(writing[1]!);
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
    checkPath(from);
    checkPath(to);
    const source = this.objectKey(from);
    const target = this.objectKey(to);
    if (from === '/') throw new PathNotFoundError(from);
    const [head, state] = await Promise.all([this.head(source), this.readState(from)]);
    // The object of a file that is being written is not its content yet (it is, once committed).
    if (state) throw new Error(`cannot move ${from}: it is being written and not committed`);
    if (!head) throw new PathNotFoundError(from);
    if (head.size > this.copyThreshold) {
      await this.multipartCopy(source, target, head.size);
    } else {
      await this.client.send(new CopyObjectCommand({ Bucket: this.bucket, Key: target, CopySource: copySource(this.bucket, source) }));
    }
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: source }));
  }

  private async multipartCopy(source: string, target: string, size: number): Promise<void> {
    const partSize = Math.max(this.copyPartSize, Math.ceil(size / MAX_PARTS));
    const count = Math.ceil(size / partSize);
    const created = await this.client.send(new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: target }));
    const uploadId = created.UploadId!;
    try {
      const etags: string[] = new Array(count);
      let next = 0;
      const worker = async () => {
        while (next < count) {
          const i = next++;
          const start = i * partSize;
          const end = Math.min(size, start + partSize) - 1;
          const res = await this.client.send(
            new UploadPartCopyCommand({
              Bucket: this.bucket,
              Key: target,
              UploadId: uploadId,
              PartNumber: i + 1,
              CopySource: copySource(this.bucket, source),
              CopySourceRange: `bytes=${start}-${end}`,
            }),
          );
          etags[i] = res.CopyPartResult!.ETag!;
        }
      };
      await Promise.all(Array.from({ length: Math.min(4, count) }, worker));
      await this.client.send(
        new CompleteMultipartUploadCommand({
          Bucket: this.bucket,
          Key: target,
          UploadId: uploadId,
          MultipartUpload: { Parts: etags.map((ETag, i) => ({ PartNumber: i + 1, ETag })) },
        }),
      );
    } catch (err) {
      await this.abortUpload(target, uploadId).catch(() => {});
      throw err;
    }
  }

  async delete(path: string): Promise<boolean> {
    checkPath(path);
    const [object, under, hidden] = await Promise.all([
      path === '/' ? undefined : this.head(this.objectKey(path)),
      this.listKeys(this.dirKey(path)),
      path === '/' ? [] : this.listKeys(this.hiddenPrefix(path)),
    ]);
    const keys = [...(object ? [this.objectKey(path)] : []), ...under, ...hidden];
    if (keys.length === 0) return false;
    // Multipart uploads first, from their writer state, so that no uploaded part is left behind.
    const sidecars = keys.filter((key) => HIDDEN_WRITER_RE.test(key.slice(key.lastIndexOf('/') + 1)));
    for (const sidecar of sidecars) await this.abortFromSidecar(sidecar);
    await this.deleteKeys(keys);
    return true;
  }

  private async abortFromSidecar(sidecar: string): Promise<void> {
    let body: Buffer;
    try {
      const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: sidecar }));
      const bytes = await res.Body!.transformToByteArray();
      body = Buffer.from(bytes);
    } catch (err) {
      if (isMissing(err)) return;
      throw err;
    }
    let state: WriterState;
    try {
      state = parseState(body, sidecar);
    } catch {
      return; // not ours to understand; the objects go anyway
    }
    if (state.uploadId) {
      const target = sidecar.slice(0, sidecar.lastIndexOf('/') + 1) + HIDDEN_WRITER_RE.exec(sidecar.slice(sidecar.lastIndexOf('/') + 1))![1];
      await this.abortUpload(target, state.uploadId);
    }
  }

  async abortUpload(key: string, uploadId: string): Promise<void> {
    try {
      await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId }));
    } catch (err) {
      if (!isNoSuchUpload(err) && httpStatus(err) !== 404) throw err;
    }
  }

  async listKeys(prefix: string): Promise<string[]> {
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const res = await this.client.send(
        new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ContinuationToken: token, MaxKeys: this.listPageSize }),
      );
      for (const object of res.Contents ?? []) keys.push(object.Key!);
      token = res.IsTruncated ? res.NextContinuationToken : undefined;
    } while (token);
    return keys;
  }

  async deleteKeys(keys: readonly string[]): Promise<void> {
    for (let i = 0; i < keys.length; i += 1000) {
      const batch = keys.slice(i, i + 1000);
      const res = await this.client.send(
        new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true } }),
      );
      const failed = res.Errors?.[0];
      if (failed) throw new Error(`S3 could not delete ${failed.Key}: ${failed.Code} ${failed.Message}`);
    }
  }

  // ---- writers ----

  async readState(path: string): Promise<WriterState | undefined> {
    const key = this.sidecarKey(path);
    try {
      const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      const bytes = await res.Body!.transformToByteArray();
      return parseState(Buffer.from(bytes), key);
    } catch (err) {
      if (isMissing(err)) return undefined;
      throw err;
    }
  }

  async saveState(path: string, state: WriterState): Promise<void> {
    await this.client.send(
      new PutObjectCommand({
        Bucket: this.bucket,
        Key: this.sidecarKey(path),
        Body: Buffer.from(JSON.stringify(state)),
        ContentType: 'application/json',
      }),
    );
  }

  /** Aborts a path's multipart upload and removes its writer objects (but not the object itself). */
  private async discardWriterState(path: string): Promise<void> {
    const hidden = await this.listKeys(this.hiddenPrefix(path));
    if (hidden.length === 0) return;
    const sidecar = this.sidecarKey(path);
    if (hidden.includes(sidecar)) await this.abortFromSidecar(sidecar);
    await this.deleteKeys(hidden);
  }

  async writer(path: string, append: boolean): Promise<FileWriter> {
    checkPath(path);
    if (path === '/') throw new InvalidPathError(path);
    const key = this.objectKey(path);
    if (!append) {
      await this.discardWriterState(path);
      await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: Buffer.alloc(0) }));
      return new S3Writer(this, path, emptyState(), false, true);
    }
    const [state, head] = await Promise.all([this.readState(path), this.head(key)]);
    if (state) return new S3Writer(this, path, state, true, head !== undefined);
    if (!head) return new S3Writer(this, path, emptyState(), false, false);
    // Appending to a committed object: it becomes the tail, whose whole parts are copied server-side.
    const tail = head.size > 0 ? [{ key, start: 0, length: head.size, objectSize: head.size }] : [];
    return new S3Writer(this, path, { ...emptyState(), tail, size: head.size }, false, true);
  }

  // ---- moving bytes (used by the writer) ----

  async retrying<T>(attempt: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    // The SDK does not retry a request whose body is a stream: retry here, with a fresh stream each time.
    for (let tries = 1; ; tries++) {
      try {
        return await attempt();
      } catch (err) {
        if (tries >= 3 || signal?.aborted || !isRetryable(err)) throw err;
        await sleep(200 * 4 ** (tries - 1));
      }
    }
  }

  /** Copies a tail's ranges (and then, optionally, a local file) into a new spool file. */
  async spoolPieces(pieces: readonly Piece[], local: Spool | undefined, signal: AbortSignal): Promise<Spool> {
    const out = await Spool.create(this.spoolDir);
    try {
      for (const piece of pieces) {
        if (piece.length === 0) continue;
        const res = await this.client.send(
          new GetObjectCommand({
            Bucket: this.bucket,
            Key: piece.key,
            Range: `bytes=${piece.start}-${piece.start + piece.length - 1}`,
          }),
          { abortSignal: signal },
        );
        const before = out.size;
        for await (const chunk of res.Body as unknown as AsyncIterable<Buffer>) await out.append(chunk);
        if (out.size - before !== piece.length) {
          throw new Error(`S3 returned ${out.size - before} bytes of ${piece.key} where ${piece.length} were expected`);
        }
      }
      if (local && local.size > 0) {
        await local.finish();
        for await (const chunk of local.stream()) await out.append(chunk as Buffer);
      }
      await out.finish();
      return out;
    } catch (err) {
      await out.dispose();
      throw err;
    }
  }

  async uploadPart(key: string, uploadId: string, n: number, spool: Spool, signal: AbortSignal): Promise<string> {
    await spool.finish();
    const res = await this.retrying(
      () =>
        spool.withStream((body) =>
          this.client.send(
            new UploadPartCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId, PartNumber: n, Body: body, ContentLength: spool.size }),
            { abortSignal: signal },
          ),
        ),
      signal,
    );
    return res.ETag!;
  }

  async copyPart(key: string, uploadId: string, n: number, piece: Piece, signal: AbortSignal): Promise<string> {
    const res = await this.client.send(
      new UploadPartCopyCommand({
        Bucket: this.bucket,
        Key: key,
        UploadId: uploadId,
        PartNumber: n,
        CopySource: copySource(this.bucket, piece.key),
        CopySourceRange: `bytes=${piece.start}-${piece.start + piece.length - 1}`,
      }),
      { abortSignal: signal },
    );
    return res.CopyPartResult!.ETag!;
  }

  async putSpool(key: string, spool: Spool, signal?: AbortSignal): Promise<void> {
    await spool.finish();
    await this.retrying(
      () =>
        spool.withStream((body) =>
          this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: body, ContentLength: spool.size }), {
            abortSignal: signal,
          }),
        ),
      signal,
    );
  }
}

/**
 * A temporary file that one part (or one tail) is gathered in. It is unlinked as soon as it is open, so
 * nothing is left behind even if the process dies; writes are batched, one in flight.
 */
class Spool {
  size = 0;
  private written = 0;
  private batch: Buffer[] = [];
  private batchBytes = 0;
  private inFlight: Promise<void> = Promise.resolve();
  private disposed = false;

  private constructor(
    private readonly handle: fsp.FileHandle,
    private linkedPath: string | undefined,
  ) {}

  static async create(dir: string): Promise<Spool> {
    const path = join(dir, `berth-s3-spool-${process.pid}-${randomBytes(8).toString('hex')}`);
    const handle = await fsp.open(path, 'wx+', 0o600);
    let linked: string | undefined = path;
    try {
      await fsp.unlink(path);
      linked = undefined;
    } catch {
      // a platform that cannot unlink an open file: removed on dispose
    }
    return new Spool(handle, linked);
  }

  async append(chunk: Buffer): Promise<void> {
    if (chunk.length === 0) return;
    this.batch.push(chunk);
    this.batchBytes += chunk.length;
    this.size += chunk.length;
    if (this.batchBytes >= SPOOL_BATCH_BYTES) await this.flush();
  }

  private async flush(): Promise<void> {
    const buffers = this.batch;
    const bytes = this.batchBytes;
    this.batch = [];
    this.batchBytes = 0;
    await this.inFlight;
    const position = this.written;
    this.written += bytes;
    const write = writeAll(this.handle, buffers, bytes, position);
    write.catch(() => {});
    this.inFlight = write;
  }

  /** Waits until every appended byte is in the file. */
  async finish(): Promise<void> {
    if (this.batch.length > 0) await this.flush();
    await this.inFlight;
  }

  /**
   * The whole file; can be read any number of times (positional reads), and a stream that is destroyed
   * half-way (a failed request) leaves the file open for the next try.
   */
  stream(): Readable {
    return createReadStream('', { fd: this.handle.fd, fs: KEEP_OPEN, start: 0, end: this.size - 1, highWaterMark: 256 * 1024 });
  }

  /** Runs one request with the whole file as its body (an empty buffer when the file is empty). */
  async withStream<T>(send: (body: Readable | Buffer) => Promise<T>): Promise<T> {
    if (this.size === 0) return send(Buffer.alloc(0));
    const body = this.stream();
    body.on('error', () => {}); // the request that reads it reports failures
    try {
      return await send(body);
    } finally {
      // Wait until a read still in flight has finished, so that disposing the spool never closes the
      // descriptor under it.
      if (!body.closed) {
        const closed = new Promise((resolve) => body.once('close', resolve));
        body.destroy();
        await closed;
      }
    }
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    await this.inFlight.catch(() => {});
    await this.handle.close().catch(() => {});
    if (this.linkedPath) await fsp.rm(this.linkedPath, { force: true }).catch(() => {});
  }
}

/** File operations for read streams over a spool's descriptor: closing is the spool's business. */
const KEEP_OPEN = {
  open: fs.open,
  read: fs.read,
  close: (_fd: number, callback: (err: NodeJS.ErrnoException | null) => void) => callback(null),
};

async function writeAll(handle: fsp.FileHandle, buffers: Buffer[], bytes: number, position: number): Promise<void> {
  let { bytesWritten } = await handle.writev(buffers, position);
  if (bytesWritten === bytes) return;
  const rest = Buffer.concat(buffers).subarray(bytesWritten);
  let offset = 0;
  while (offset < rest.length) {
    const res = await handle.write(rest, offset, rest.length - offset, position + bytesWritten);
    offset += res.bytesWritten;
    bytesWritten += res.bytesWritten;
  }
}

/** The writer of one path; see the top of this file. */
class S3Writer implements FileWriter {
  private closed = false;

  constructor(
    private readonly driver: S3Driver,
    private readonly path: string,
    private state: WriterState,
    /** Whether the writer state is stored (otherwise the object, if any, is the whole content). */
    private stored: boolean,
    private objectExists: boolean,
  ) {}

  get size(): number {
    return this.state.size;
  }

  private get key(): string {
    return this.driver.objectKey(this.path);
  }

  async write(source: AsyncIterable<Buffer>): Promise<number> {
    if (this.closed) throw new Error('the writer is closed');
    const driver = this.driver;
    const before = this.state;
    const next: WriterState = { ...before, parts: [...before.parts], tail: [...before.tail] };
    const abort = new AbortController();
    const pending = new Set<Promise<void>>();
    let failure: { error: unknown } | undefined;
    let createdUpload: string | undefined;
    let spool: Spool | undefined;
    let newTailObject: string | undefined;
    let written = 0;
    let changed = false;

    const check = () => {
      if (failure) throw failure.error;
    };
    const ensureUpload = async (): Promise<string> => {
      if (!next.uploadId) {
        const res = await driver.client.send(new CreateMultipartUploadCommand({ Bucket: driver.bucket, Key: this.key }), {
          abortSignal: abort.signal,
        });
        next.uploadId = createdUpload = res.UploadId!;
      }
      return next.uploadId;
    };
    /** Part n from tail ranges and/or a local spool, uploaded in the background (bounded). */
    const formPart = async (pieces: Piece[], local: Spool | undefined) => {
      const n = next.parts.length + 1;
      if (n > MAX_PARTS) {
        await local?.dispose();
        throw new Error(`the upload needs more than ${MAX_PARTS} parts`);
      }
      const record: PartRecord = { n, etag: '', size: tailBytes(pieces) + (local?.size ?? 0) };
      next.parts.push(record);
      changed = true;
      let uploadId: string;
      try {
        uploadId = await ensureUpload();
        while (pending.size >= driver.uploadConcurrency) {
          await Promise.race(pending);
          check();
        }
      } catch (err) {
        await local?.dispose();
        throw err;
      }
      const job = (async () => {
        if (!local && pieces.length === 1) {
          record.etag = await driver.copyPart(this.key, uploadId, n, pieces[0]!, abort.signal);
          return;
        }
        let file = local;
        try {
          if (pieces.length > 0) file = await driver.spoolPieces(pieces, local, abort.signal);
          record.etag = await driver.uploadPart(this.key, uploadId, n, file!, abort.signal);
        } finally {
          await file?.dispose();
          if (local && local !== file) await local.dispose();
        }
      })();
      const tracked: Promise<void> = job.then(
        () => {
          pending.delete(tracked);
        },
        (error: unknown) => {
          failure ??= { error };
          abort.abort();
          pending.delete(tracked);
        },
      );
      pending.add(tracked);
    };

    try {
      // A tail of a whole part or more (appending to a committed object) becomes parts first.
      while (tailBytes(next.tail) >= driver.partSize(next.parts.length + 1)) {
        const [pieces, rest] = splitTail(next.tail, driver.partSize(next.parts.length + 1));
        next.tail = rest;
        await formPart(pieces, undefined);
      }
      for await (const chunk of source) {
        check();
        let offset = 0;
        while (offset < chunk.length) {
          const target = driver.partSize(next.parts.length + 1);
          spool ??= await Spool.create(driver.spoolDir);
          const room = target - tailBytes(next.tail) - spool.size;
          const take = Math.min(room, chunk.length - offset);
          await spool.append(offset === 0 && take === chunk.length ? chunk : chunk.subarray(offset, offset + take));
          offset += take;
          written += take;
          if (take === room) {
            const pieces = next.tail;
            const local = spool;
            next.tail = [];
            spool = undefined;
            await formPart(pieces, local);
          }
        }
      }
      check();
      await Promise.all(pending);
      check();
      // What is left stays as the tail, stored as one more object (or merged with the tail, when long).
      if (spool && spool.size > 0) {
        newTailObject = driver.tailObjectKey(this.path);
        if (next.tail.length + 1 > MAX_TAIL_RANGES) {
          const merged = await driver.spoolPieces(next.tail, spool, abort.signal);
          try {
            await driver.putSpool(newTailObject, merged, abort.signal);
          } finally {
            await merged.dispose();
          }
          next.tail = [{ key: newTailObject, start: 0, length: merged.size, objectSize: merged.size }];
        } else {
          await driver.putSpool(newTailObject, spool, abort.signal);
          next.tail.push({ key: newTailObject, start: 0, length: spool.size, objectSize: spool.size });
        }
        changed = true;
      }
      await spool?.dispose();
      spool = undefined;
      if (changed || !this.stored) {
        next.size = before.size + written;
        next.updatedAt = new Date().toISOString();
        next.writeId = randomBytes(8).toString('hex');
        try {
          await driver.saveState(this.path, next); // the one step that makes this write count
        } catch (err) {
          // A save whose answer was lost may have landed all the same: then this write counts.
          const stored = await driver.readState(this.path).catch(() => undefined);
          if (stored?.writeId !== next.writeId) throw err;
        }
      }
    } catch (err) {
      failure ??= { error: err };
      abort.abort();
      await Promise.all(pending);
      await spool?.dispose();
      if (createdUpload) await driver.abortUpload(this.key, createdUpload).catch(() => {});
      if (newTailObject) await driver.deleteKeys([newTailObject]).catch(() => {});
      throw err;
    }
    this.state = next;
    this.stored = true;
    // Tail objects that this write turned into parts (or merged) are no longer needed.
    const kept = new Set(next.tail.map((piece) => piece.key));
    const unused = [...new Set(before.tail.map((piece) => piece.key))].filter((key) => !kept.has(key) && key !== this.key);
    if (unused.length > 0) await driver.deleteKeys(unused).catch(() => {});
    return written;
  }

  async commit(): Promise<void> {
    if (this.closed) throw new Error('the writer is closed');
    const driver = this.driver;
    if (!this.stored) {
      // Nothing was written through a writer state: the object (if any) is the whole content already.
      if (!this.objectExists) {
        await driver.client.send(new PutObjectCommand({ Bucket: driver.bucket, Key: this.key, Body: Buffer.alloc(0) }));
        this.objectExists = true;
      }
      return;
    }
    const state = this.state;
    const abort = new AbortController();
    try {
      if (!state.uploadId) {
        await this.putSmall(state.tail, abort.signal);
      } else {
        const parts = state.parts.map((part) => ({ PartNumber: part.n, ETag: part.etag }));
        if (tailBytes(state.tail) > 0) {
          // The tail is the last part, which may be smaller than 5 MiB.
          const n = state.parts.length + 1;
          const pieces = state.tail.filter((piece) => piece.length > 0);
          let etag: string;
          if (pieces.length === 1) {
            etag = await driver.copyPart(this.key, state.uploadId, n, pieces[0]!, abort.signal);
          } else {
            const file = await driver.spoolPieces(pieces, undefined, abort.signal);
            try {
              etag = await driver.uploadPart(this.key, state.uploadId, n, file, abort.signal);
            } finally {
              await file.dispose();
            }
          }
          parts.push({ PartNumber: n, ETag: etag });
        }
        await driver.client.send(
          new CompleteMultipartUploadCommand({
            Bucket: driver.bucket,
            Key: this.key,
            UploadId: state.uploadId,
            MultipartUpload: { Parts: parts },
          }),
        );
      }
    } catch (err) {
      // An earlier commit may have completed the upload and then lost its clean-up.
      if (!(isNoSuchUpload(err) && (await driver.head(this.key))?.size === state.size)) throw err;
    }
    const tailObjects = [...new Set(state.tail.map((piece) => piece.key))].filter((key) => key !== this.key);
    await driver.deleteKeys([driver.sidecarKey(this.path), ...tailObjects]);
    this.stored = false;
    this.objectExists = true;
    const tail = state.size > 0 ? [{ key: this.key, start: 0, length: state.size, objectSize: state.size }] : [];
    this.state = { ...emptyState(), tail, size: state.size };
  }

  /** The content when no part was ever uploaded: one small object from the tail. */
  private async putSmall(tail: readonly Piece[], signal: AbortSignal): Promise<void> {
    const driver = this.driver;
    const pieces = tail.filter((piece) => piece.length > 0);
    const only = pieces.length === 1 ? pieces[0]! : undefined;
    if (only && only.key === this.key && only.start === 0 && only.length === only.objectSize) return;
    if (pieces.length === 0) {
      await driver.client.send(new PutObjectCommand({ Bucket: driver.bucket, Key: this.key, Body: Buffer.alloc(0) }));
    } else if (only && only.start === 0 && only.length === only.objectSize) {
      await driver.client.send(
        new CopyObjectCommand({ Bucket: driver.bucket, Key: this.key, CopySource: copySource(driver.bucket, only.key) }),
        { abortSignal: signal },
      );
    } else {
      const file = await driver.spoolPieces(pieces, undefined, signal);
      try {
        await driver.putSpool(this.key, file, signal);
      } finally {
        await file.dispose();
      }
    }
  }

  async close(): Promise<void> {
    // Everything a write did is in S3 when it returns: nothing is held here.
    this.closed = true;
  }
}
