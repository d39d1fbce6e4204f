// Bucket: every request the S3 driver makes, through one SDK client. The SDK's errors stop here: what leaves
// is absence as a result (`undefined`) where absence is normal, else storage's own StorageUnavailableError,
// with the SDK's error as its cause, so that nothing above this file knows the SDK's error shapes.
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
  type $Command,
  type ListObjectsV2CommandOutput,
  type S3ClientResolvedConfig,
  type ServiceInputTypes,
  type ServiceOutputTypes,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { Readable } from 'node:stream';
import { StorageUnavailableError, type ByteRange } from '../driver.ts';
import { MAX_PARTS } from './parts.ts';
import type { Spool } from './spool.ts';

/** CopyObject copies objects up to 5 GiB; larger ones are copied part by part. */
export const MAX_COPY_OBJECT_SIZE = 5 * 1024 ** 3;

export interface Head {
  size: number;
  modifiedAt: Date;
}

/** A byte range of a stored object. */
export interface KeyRange {
  key: string;
  start: number;
  length: number;
}

/** The multipart upload a request named is gone (aborted, or completed by an earlier try). */
export class UploadGoneError extends StorageUnavailableError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'UploadGoneError';
  }
}

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

function isRetryable(err: unknown): boolean {
  if (errorName(err) === 'AbortError') return false;
  const status = httpStatus(err);
  return status === undefined || status >= 500 || status === 429;
}

/** What the SDK threw (a service answer, a network failure, a timeout), as storage's own error. */
function storageError(err: unknown, what: string): StorageUnavailableError {
  if (err instanceof StorageUnavailableError) return err;
  const status = httpStatus(err);
  const message = `S3 ${what}: ${errorName(err) ?? 'error'}${status ? ` (HTTP ${status})` : ''}: ${(err as Error)?.message}`;
  return errorName(err) === 'NoSuchUpload' ? new UploadGoneError(message, { cause: err }) : new StorageUnavailableError(message, { cause: err });
}

/**
 * A response body whose failures leave as storage's: the SDK ends a stalled body with its TimeoutError, and
 * the stream is handed on as it is (no extra stream per chunk), so the error is changed where the stream is
 * destroyed with it.
 */
function storageStream(body: Readable, what: string): Readable {
  const destroy = body._destroy.bind(body);
  body._destroy = (err, callback) => destroy(err && isSdkFailure(err) ? storageError(err, what) : err, callback);
  return body;
}

/** A failure of the SDK's own making (a service answer or a timeout), as opposed to, say, a reset socket. */
function isSdkFailure(err: Error): boolean {
  return '$metadata' in err || err.name === 'TimeoutError' || err.name === 'RequestTimeout';
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export interface BucketOptions {
  /** Where the bucket is, for messages ("http://minio:9000", "AWS region eu-west-1"). */
  where: string;
  /** MaxKeys of one ListObjectsV2 page. */
  listPageSize: number;
  /** Objects larger than this are copied part by part. */
  copyThreshold: number;
  /** Part size of a multipart copy. */
  copyPartSize: number;
}

export class Bucket {
  constructor(
    readonly client: S3Client,
    readonly name: string,
    private readonly options: BucketOptions,
  ) {}

  private async send<I extends ServiceInputTypes, O extends ServiceOutputTypes>(
    command: $Command<I, O, S3ClientResolvedConfig, ServiceInputTypes, ServiceOutputTypes>,
    signal?: AbortSignal,
  ): Promise<O> {
    try {
      return await this.client.send(command, { abortSignal: signal });
    } catch (err) {
      throw storageError(err, `${command.constructor.name.replace(/Command$/, '')} ${describe(command.input)}`);
    }
  }

  /**
   * A request whose body is a stream, tried up to three times with a fresh stream each time: the SDK does not
   * retry such a request itself.
   */
  private async retrying<T>(attempt: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    for (let tries = 1; ; tries++) {
      try {
        return await attempt();
      } catch (err) {
        const cause = err instanceof StorageUnavailableError ? err.cause : err;
        if (tries >= 3 || signal?.aborted || !isRetryable(cause)) throw err;
        await sleep(200 * 4 ** (tries - 1));
      }
    }
  }

  /** Checks that the bucket answers with these credentials, naming the reason when it does not. */
  async ready(): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.name }), { abortSignal: AbortSignal.timeout(20_000) });
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
      throw new StorageUnavailableError(`S3 bucket "${this.name}" at ${this.options.where} is not usable: ${reason}`, { cause: err });
    }
  }

  // ---- objects ----

  async head(key: string): Promise<Head | undefined> {
    try {
      const res = await this.client.send(new HeadObjectCommand({ Bucket: this.name, Key: key }));
      return { size: res.ContentLength ?? 0, modifiedAt: res.LastModified ?? new Date() };
    } catch (err) {
      if (isMissing(err)) return undefined;
      throw storageError(err, `HeadObject ${key}`);
    }
  }

  /** An object, or a range of it, as a stream; undefined when there is no such object. */
  async stream(key: string, range?: ByteRange, signal?: AbortSignal): Promise<Readable | undefined> {
    try {
      const res = await this.client.send(
        new GetObjectCommand({ Bucket: this.name, Key: key, Range: range ? `bytes=${range.start}-${range.end}` : undefined }),
        { abortSignal: signal },
      );
      return storageStream(res.Body as unknown as Readable, `GetObject ${key}`);
    } catch (err) {
      if (isMissing(err)) return undefined;
      throw storageError(err, `GetObject ${key}`);
    }
  }

  /** A small object's bytes; undefined when there is no such object. */
  async bytes(key: string): Promise<Buffer | undefined> {
    const body = await this.stream(key);
    if (!body) return undefined;
    const chunks: Buffer[] = [];
    for await (const chunk of body) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  }

  /** The bytes of a range of an object; exactly `length` of them, or the read fails. */
  async *range(piece: KeyRange, signal: AbortSignal): AsyncGenerator<Buffer> {
    const end = piece.start + piece.length - 1;
    const body = await this.stream(piece.key, { start: piece.start, end }, signal);
    if (!body) throw new StorageUnavailableError(`S3 GetObject ${piece.key}: the object is gone`);
    let seen = 0;
    for await (const chunk of body as AsyncIterable<Buffer>) {
      seen += chunk.length;
      yield chunk;
    }
    if (seen !== piece.length) throw new Error(`S3 returned ${seen} bytes of ${piece.key} where ${piece.length} were expected`);
  }

  async put(key: string, body: Buffer, contentType?: string): Promise<void> {
    await this.send(new PutObjectCommand({ Bucket: this.name, Key: key, Body: body, ContentType: contentType }));
  }

  /** Stores a spool's bytes as one object. */
  async putSpool(key: string, spool: Spool, signal?: AbortSignal): Promise<void> {
    await spool.finish();
    await this.retrying(
      () => spool.withStream((body) => this.send(new PutObjectCommand({ Bucket: this.name, Key: key, Body: body, ContentLength: spool.size }), signal)),
      signal,
    );
  }

  /** A server-side copy: CopyObject, or part by part above the copy threshold. */
  async copy(source: string, target: string, size: number): Promise<void> {
    if (size > this.options.copyThreshold) return this.copyInParts(source, target, size);
    await this.copyObject(source, target);
  }

  /** A server-side copy of an object of at most 5 GiB. */
  async copyObject(source: string, target: string, signal?: AbortSignal): Promise<void> {
    await this.send(new CopyObjectCommand({ Bucket: this.name, Key: target, CopySource: this.copySource(source) }), signal);
  }

  private async copyInParts(source: string, target: string, size: number): Promise<void> {
    const partSize = Math.max(this.options.copyPartSize, Math.ceil(size / MAX_PARTS));
    const count = Math.ceil(size / partSize);
    const uploadId = await this.createUpload(target);
    try {
      const etags: string[] = new Array(count);
      let next = 0;
      const worker = async () => {
        while (next < count) {
          const i = next++;
          const start = i * partSize;
          etags[i] = await this.copyPart(target, uploadId, i + 1, { key: source, start, length: Math.min(size, start + partSize) - start });
        }
      };
      await Promise.all(Array.from({ length: Math.min(4, count) }, worker));
      await this.completeUpload(target, uploadId, etags.map((etag, i) => ({ n: i + 1, etag })));
    } catch (err) {
      await this.abortUpload(target, uploadId).catch(() => {});
      throw err;
    }
  }

  private copySource(key: string): string {
    // URL-encoded, as S3 wants it; "/" and "@" (in writer object names) are left as they are.
    return `${this.name}/${encodeURIComponent(key).replaceAll('%2F', '/').replaceAll('%40', '@')}`;
  }

  async deleteKey(key: string): Promise<void> {
    await this.send(new DeleteObjectCommand({ Bucket: this.name, Key: key }));
  }

  async deleteKeys(keys: readonly string[]): Promise<void> {
    for (let i = 0; i < keys.length; i += 1000) {
      const batch = keys.slice(i, i + 1000);
      const res = await this.send(new DeleteObjectsCommand({ Bucket: this.name, Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true } }));
      const failed = res.Errors?.[0];
      if (failed) throw new Error(`S3 could not delete ${failed.Key}: ${failed.Code} ${failed.Message}`);
    }
  }

  /**
   * A presigned GetObject URL (SigV4 in the query string, signed with this client's credentials, region
   * and endpoint, so path-style for a custom endpoint): whoever holds it reads the object, or any Range of
   * it, straight from S3 until it expires. With temporary credentials (a role) it dies with them, if sooner.
   */
  presignedGet(key: string, expiresInSeconds: number): Promise<string> {
    const command = new GetObjectCommand({
      Bucket: this.name,
      Key: key,
      // The type Berth itself serves blobs with, whatever S3 recorded when the object was written.
      ResponseContentType: 'application/octet-stream',
    });
    return getSignedUrl(this.client, command, { expiresIn: expiresInSeconds });
  }

  // ---- listings ----

  /** One page of a listing, as ListObjectsV2 gives it. */
  listPage(request: { prefix: string; delimiter?: string; token?: string; startAfter?: string; maxKeys?: number }): Promise<ListObjectsV2CommandOutput> {
    return this.send(
      new ListObjectsV2Command({
        Bucket: this.name,
        Prefix: request.prefix,
        Delimiter: request.delimiter,
        ContinuationToken: request.token,
        StartAfter: request.startAfter,
        MaxKeys: Math.min(this.options.listPageSize, request.maxKeys ?? this.options.listPageSize),
      }),
    );
  }

  /** Every key under a prefix. */
  async listKeys(prefix: string): Promise<string[]> {
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const res = await this.listPage({ prefix, token });
      for (const object of res.Contents ?? []) keys.push(object.Key!);
      token = res.IsTruncated ? res.NextContinuationToken : undefined;
    } while (token);
    return keys;
  }

  // ---- multipart uploads ----

  async createUpload(key: string, signal?: AbortSignal): Promise<string> {
    const res = await this.send(new CreateMultipartUploadCommand({ Bucket: this.name, Key: key }), signal);
    return res.UploadId!;
  }

  /** Uploads part n from a spool; returns its ETag. */
  async uploadPart(key: string, uploadId: string, n: number, spool: Spool, signal: AbortSignal): Promise<string> {
    await spool.finish();
    const res = await this.retrying(
      () =>
        spool.withStream((body) =>
          this.send(new UploadPartCommand({ Bucket: this.name, Key: key, UploadId: uploadId, PartNumber: n, Body: body, ContentLength: spool.size }), signal),
        ),
      signal,
    );
    return res.ETag!;
  }

  /** Makes a range of a stored object part n (server-side); returns its ETag. */
  async copyPart(key: string, uploadId: string, n: number, piece: KeyRange, signal?: AbortSignal): Promise<string> {
    const res = await this.send(
      new UploadPartCopyCommand({
        Bucket: this.name,
        Key: key,
        UploadId: uploadId,
        PartNumber: n,
        CopySource: this.copySource(piece.key),
        CopySourceRange: `bytes=${piece.start}-${piece.start + piece.length - 1}`,
      }),
      signal,
    );
    return res.CopyPartResult!.ETag!;
  }

  async completeUpload(key: string, uploadId: string, parts: readonly { n: number; etag: string }[]): Promise<void> {
    await this.send(
      new CompleteMultipartUploadCommand({
        Bucket: this.name,
        Key: key,
        UploadId: uploadId,
        MultipartUpload: { Parts: parts.map((part) => ({ PartNumber: part.n, ETag: part.etag })) },
      }),
    );
  }

  /** Aborts a multipart upload; one that is gone already is fine. */
  async abortUpload(key: string, uploadId: string): Promise<void> {
    try {
      await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.name, Key: key, UploadId: uploadId }));
    } catch (err) {
      if (errorName(err) !== 'NoSuchUpload' && httpStatus(err) !== 404) throw storageError(err, `AbortMultipartUpload ${key}`);
    }
  }
}

/** The key (or prefix) a request was about, for its error message. */
function describe(input: object): string {
  const { Key, Prefix } = input as { Key?: string; Prefix?: string };
  return Key ?? (Prefix !== undefined ? `${Prefix}*` : '');
}
