// A real S3 endpoint for the tests: s3rver, in this process, on a free loopback port, keeping its objects
// in a temporary folder; one for the whole mocha run (each user takes its own key prefix).
//
// s3rver lacks three multipart calls that the S3 driver uses and that S3 (and MinIO, Ceph, R2) have:
// AbortMultipartUpload, UploadPartCopy and ListMultipartUploads; and it takes parts of any size, in any
// order, for an upload that may not even exist. The extensions below add those calls on s3rver's own store,
// and make UploadPart and CompleteMultipartUpload as strict as S3 is: NoSuchUpload for an upload that was
// completed or aborted, parts in ascending order with matching ETags, and every part but the last at least
// 5 MiB (EntityTooSmall). ListObjectsV2 is answered here too: s3rver makes its continuation tokens with
// DES, which OpenSSL 3 refuses, so every listing longer than a page failed. A PUT replaces an object whole,
// as on S3 (s3rver answers before the bytes are on disk and writes them in place). S3RVER_LOGS=1 shows
// s3rver's own log, for debugging.
import { ListMultipartUploadsCommand, S3Client } from '@aws-sdk/client-s3';
import { createHash, createHmac, randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import S3rver, { type S3rverContext, type S3rverMiddleware, type S3rverStore } from 's3rver';
import type { S3DriverOptions } from '../../storage/index.ts';

const require = createRequire(import.meta.url);
const S3Error = require('s3rver/lib/models/error') as new (code: string, message?: string, detail?: Record<string, unknown>) => Error;

const MIN_PART_SIZE = 5 * 1024 * 1024;

// The SDK warns once per process that its releases from 2027 need Node 22: true, and noise in test output.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

export const S3_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

export interface TestS3 {
  endpoint: string;
  bucket: string;
  /** s3rver's folder. */
  directory: string;
  client: S3Client;
  /** Options for an S3Driver on this endpoint under a prefix of its own, with 5 MiB parts (S3's minimum). */
  driverOptions(prefix: string): S3DriverOptions;
  /** The environment that points a Berth process at this endpoint, under a prefix of its own. */
  berthEnv(prefix: string): Record<string, string>;
  /** Keys of the multipart uploads begun under a prefix and neither completed nor aborted. */
  pendingUploads(prefix: string): Promise<string[]>;
  /** The next `count` UploadPart requests fail with 500 InternalError (after their body is read). */
  failUploadParts(count: number): void;
  close(): Promise<void>;
}

export async function startS3(bucket = 'berth-test'): Promise<TestS3> {
  const directory = mkdtempSync(join(tmpdir(), 'berth-s3rver-'));
  const server = new S3rver({ address: '127.0.0.1', port: 0, directory, silent: process.env.S3RVER_LOGS !== '1', configureBuckets: [{ name: bucket }] });
  // s3rver's middleware ends with its router: the extensions go right before it.
  if (server.middleware.length !== 5) throw new Error(`unexpected s3rver middleware (${server.middleware.length}): update test/helpers/s3.ts`);
  const faults = { uploadParts: 0 };
  server.middleware.splice(server.middleware.length - 1, 0, extensions(server.store, faults));
  server.store.deleteObject = deleteObjectKeepingFolders(server.store);
  wholeObjects(server.store);
  const address = await server.run();
  const endpoint = `http://127.0.0.1:${address.port}`;
  const client = new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: S3_CREDENTIALS,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  return {
    endpoint,
    bucket,
    directory,
    client,
    driverOptions: (prefix) => ({
      bucket,
      prefix,
      endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: S3_CREDENTIALS,
      partSize: MIN_PART_SIZE,
    }),
    berthEnv: (prefix) => ({
      BERTH_S3_BUCKET: bucket,
      BERTH_S3_ENDPOINT: endpoint,
      BERTH_S3_FORCE_PATH_STYLE: 'true',
      BERTH_S3_PREFIX: prefix,
      BERTH_S3_PART_SIZE: String(MIN_PART_SIZE),
      AWS_ACCESS_KEY_ID: S3_CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: S3_CREDENTIALS.secretAccessKey,
      // Credentials come from the environment: never ask an instance metadata service.
      AWS_EC2_METADATA_DISABLED: 'true',
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    }),
    failUploadParts(count) {
      faults.uploadParts = count;
    },
    async pendingUploads(prefix) {
      const res = await client.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: prefix }));
      return (res.Uploads ?? []).map((upload) => upload.Key!);
    },
    async close() {
      client.destroy();
      await server.close();
      rmSync(directory, { recursive: true, force: true });
    },
  };
}

let shared: Promise<TestS3> | undefined;

/** The run's one S3 endpoint, started on first use and closed when mocha's run ends. */
export function sharedS3(): Promise<TestS3> {
  return (shared ??= startS3());
}

if (typeof after === 'function') {
  after(async () => {
    if (shared) await (await shared).close();
  });
}

// ---- what s3rver lacks ----

/** RFC 3986 encoding, as SigV4 wants it in canonical query strings. */
function rfc3986(text: string): string {
  return encodeURIComponent(text).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/**
 * s3rver serves requests that carry no signature at all, and takes any SigV4 signature (its check is
 * unimplemented; it only checks X-Amz-Expires). Here, as on S3 with a private bucket: a request with
 * neither an Authorization header nor a signed query is AccessDenied, and a presigned (query) SigV4
 * request whose signature does not cover exactly its method, path, query and signed headers is
 * SignatureDoesNotMatch. Written from the SigV4 specification, not with the SDK that signs.
 */
function checkPresigned(ctx: S3rverContext): void {
  const query = new URLSearchParams(ctx.querystring);
  if (!query.has('X-Amz-Signature')) {
    if (!ctx.get('authorization') && !query.has('Signature')) throw s3Error('AccessDenied', 'Access Denied');
    return;
  }
  const date = query.get('X-Amz-Date') ?? '';
  const [accessKeyId, scopeDate, region, service] = (query.get('X-Amz-Credential') ?? '').split('/');
  if (accessKeyId !== S3_CREDENTIALS.accessKeyId) throw s3Error('InvalidAccessKeyId', 'The AWS Access Key Id you provided does not exist in our records.');
  const signedHeaders = (query.get('X-Amz-SignedHeaders') ?? '').split(';');
  const canonicalQuery = [...query]
    .filter(([name]) => name !== 'X-Amz-Signature')
    .map(([name, value]) => `${rfc3986(name)}=${rfc3986(value)}`)
    .sort()
    .join('&');
  const canonicalRequest = [
    ctx.method,
    // S3 signs the path as sent (each segment URI-encoded once), not normalised.
    ctx.url.split('?')[0],
    canonicalQuery,
    ...signedHeaders.map((name) => `${name}:${ctx.get(name).trim().replace(/ +/g, ' ')}`),
    '',
    signedHeaders.join(';'),
    'UNSIGNED-PAYLOAD',
  ].join('\n');
  const scope = `${scopeDate}/${region}/${service}/aws4_request`;
  const stringToSign = ['AWS4-HMAC-SHA256', date, scope, createHash('sha256').update(canonicalRequest).digest('hex')].join('\n');
  let key: Buffer = Buffer.from(`AWS4${S3_CREDENTIALS.secretAccessKey}`);
  for (const part of [scopeDate!, region!, service!, 'aws4_request']) key = createHmac('sha256', key).update(part).digest();
  const expected = createHmac('sha256', key).update(stringToSign).digest('hex');
  if (expected !== query.get('X-Amz-Signature')) {
    throw s3Error('SignatureDoesNotMatch', 'The request signature we calculated does not match the signature you provided.');
  }
}

/**
 * s3rver removes a deleted key's folders once they are empty, racing a concurrent PUT of another key in
 * the same folder (whose write then fails with ENOENT, uncaught). S3 has no folders: here they stay, and
 * listings, which only see objects, are unchanged.
 */
function deleteObjectKeepingFolders(store: S3rverStore): S3rverStore['deleteObject'] {
  return async (bucket, key) => {
    await Promise.all(
      ['object', 'object.md5', 'metadata.json'].map((resource) =>
        fsp.unlink(store.getResourcePath(bucket, key, resource)).catch((err: NodeJS.ErrnoException) => {
          if (err.code !== 'ENOENT') throw err;
        }),
      ),
    );
  };
}

/**
 * s3rver's PUT answers before the object's bytes are written, and writes them over the old ones in place: a
 * GET right after one, or during one, reads an empty or half-written object. On S3 a PUT is atomic. Here
 * the bytes go to a file of their own that then replaces the object, and a GET reads the metadata and opens
 * the object between two PUTs, never amid one (an open object keeps serving the bytes it had).
 */
function wholeObjects(store: S3rverStore): void {
  const tails = new Map<string, Promise<unknown>>();
  const oneAtATime = <T>(key: string, fn: () => Promise<T>): Promise<T> => {
    const run = (tails.get(key) ?? Promise.resolve()).then(fn, fn);
    const tail = run.catch(() => {});
    tails.set(key, tail);
    void tail.then(() => tails.get(key) === tail && tails.delete(key));
    return run;
  };
  const getObject = store.getObject.bind(store);
  store.getObject = (bucket, key, options) => oneAtATime(`${bucket}/${key}`, () => getObject(bucket, key, options));
  store.putObject = async (object) => {
    const path = store.getResourcePath(object.bucket, object.key, 'object');
    // Beside the bucket's objects (a rename stays on one filesystem), not beside the object, whose name may
    // already be near the limit.
    const partials = store.getResourcePath(object.bucket, undefined, 'partial');
    const partial = join(partials, randomUUID());
    await Promise.all([fsp.mkdir(dirname(path), { recursive: true }), fsp.mkdir(partials, { recursive: true })]);
    const md5 = createHash('md5');
    let size = 0;
    const content = Buffer.isBuffer(object.content) ? Readable.from([object.content]) : object.content;
    await pipeline(
      content,
      async function* (source: AsyncIterable<Buffer>) {
        for await (const chunk of source) {
          md5.update(chunk);
          size += chunk.length;
          yield chunk;
        }
      },
      createWriteStream(partial),
    );
    const etag = md5.digest('hex');
    await oneAtATime(`${object.bucket}/${object.key}`, async () => {
      await fsp.rename(partial, path);
      await store.putMetadata(object.bucket, object.key, object.metadata, etag);
    });
    return { size, md5: etag };
  };
}

function s3Error(code: string, message: string): Error {
  return new S3Error(code, message);
}

function extensions(store: S3rverStore, faults: { uploadParts: number }): S3rverMiddleware {
  return async (ctx, next) => {
    checkPresigned(ctx);
    if (faults.uploadParts > 0 && ctx.method === 'PUT' && 'partNumber' in ctx.query && !ctx.get('x-amz-copy-source')) {
      faults.uploadParts--;
      await readBody(ctx.req);
      throw s3Error('InternalError', 'We encountered an internal error (injected by the test). Please try again.');
    }
    const match = /^\/([^/]+)(?:\/(.*))?$/.exec(ctx.path);
    if (!match) return next();
    const bucket = match[1]!;
    const query = ctx.query;
    if (!match[2]) {
      if (ctx.method === 'GET' && 'uploads' in query) return listUploads(ctx, store, bucket, String(query.prefix ?? ''));
      if (ctx.method === 'GET' && query['list-type'] === '2') return listObjectsV2(ctx, store, bucket);
      return next();
    }
    const key = decodeURIComponent(match[2]);
    const uploadId = typeof query.uploadId === 'string' ? query.uploadId : undefined;
    if (uploadId === undefined) return next();
    const dir = join(store.getResourcePath(bucket, undefined, 'uploads'), uploadId);
    const exists = await fsp.stat(dir).then(
      () => true,
      () => false,
    );
    if (!exists) throw s3Error('NoSuchUpload', 'The specified upload does not exist.');
    if (ctx.method === 'DELETE') {
      await fsp.rm(dir, { recursive: true, force: true });
      ctx.status = 204;
      ctx.body = null;
      return;
    }
    if (ctx.method === 'PUT' && ctx.get('x-amz-copy-source')) return uploadPartCopy(ctx, store, bucket, uploadId);
    if (ctx.method === 'POST') return completeUpload(ctx, store, bucket, key, uploadId, dir);
    return next();
  };
}

async function listUploads(ctx: S3rverContext, store: S3rverStore, bucket: string, prefix: string): Promise<void> {
  const root = store.getResourcePath(bucket, undefined, 'uploads');
  const ids = await fsp.readdir(root).catch(() => [] as string[]);
  const uploads: { Key: string; UploadId: string }[] = [];
  for (const id of ids.sort()) {
    const key = await fsp.readFile(join(root, id, 'key'), 'utf8').catch(() => undefined);
    if (key !== undefined && key.startsWith(prefix)) uploads.push({ Key: key, UploadId: id });
  }
  ctx.body = { ListMultipartUploadsResult: { Bucket: bucket, Prefix: prefix, IsTruncated: false, Upload: uploads } };
}

/** ListObjectsV2 with continuation tokens that work (s3rver makes them with DES, which OpenSSL 3 refuses). */
/**
 * s3rver's own grouping by delimiter misses common prefixes whose objects all lie two or more levels
 * down (it prunes those folders before it sees their keys): the keys are listed whole and grouped here,
 * as S3 does, keys and common prefixes counting together towards max-keys.
 */
async function listGrouped(
  store: S3rverStore,
  bucket: string,
  { prefix, delimiter, startAfter, maxKeys }: { prefix: string; delimiter: string; startAfter: string; maxKeys: number },
): Promise<{ objects: Awaited<ReturnType<S3rverStore['listObjects']>>['objects']; commonPrefixes: string[]; isTruncated: boolean; resumeAfter: string }> {
  const all = await store.listObjects(bucket, { prefix, delimiter: '', startAfter, maxKeys: Infinity });
  const objects: typeof all.objects = [];
  const commonPrefixes: string[] = [];
  let resumeAfter = startAfter;
  for (const object of all.objects.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))) {
    const idx = delimiter ? object.key.slice(prefix.length).indexOf(delimiter) : -1;
    const common = idx === -1 ? undefined : object.key.slice(0, prefix.length + idx + delimiter.length);
    if (common !== undefined && common === commonPrefixes[commonPrefixes.length - 1]) continue;
    if (objects.length + commonPrefixes.length >= maxKeys) return { objects, commonPrefixes, isTruncated: true, resumeAfter };
    if (common === undefined) {
      objects.push(object);
      resumeAfter = object.key;
    } else {
      commonPrefixes.push(common);
      // Every key under the prefix sorts before this.
      resumeAfter = `${common}\u{10ffff}`;
    }
  }
  return { objects, commonPrefixes, isTruncated: false, resumeAfter };
}

async function listObjectsV2(ctx: S3rverContext, store: S3rverStore, bucket: string): Promise<void> {
  if (!(await store.getBucket(bucket))) throw s3Error('NoSuchBucket', 'The specified bucket does not exist');
  const text = (name: string) => (typeof ctx.query[name] === 'string' ? (ctx.query[name] as string) : '');
  const token = text('continuation-token');
  const prefix = text('prefix');
  const delimiter = text('delimiter');
  const maxKeys = Math.min(1000, text('max-keys') ? Number(text('max-keys')) : 1000);
  const startAfter = token ? Buffer.from(token, 'base64url').toString('utf8') : text('start-after');
  const result = maxKeys === 0 ? { objects: [], commonPrefixes: [], isTruncated: false, resumeAfter: '' } : await listGrouped(store, bucket, { prefix, delimiter, startAfter, maxKeys });
  ctx.body = {
    ListBucketResult: {
      '@': { xmlns: 'http://s3.amazonaws.com/doc/2006-03-01/' },
      Name: bucket,
      Prefix: prefix,
      ContinuationToken: token || undefined,
      NextContinuationToken: result.isTruncated ? Buffer.from(result.resumeAfter, 'utf8').toString('base64url') : undefined,
      KeyCount: result.objects.length + result.commonPrefixes.length,
      MaxKeys: maxKeys,
      Delimiter: delimiter || undefined,
      IsTruncated: result.isTruncated,
      Contents: result.objects.map((object) => ({
        Key: object.key,
        LastModified: object.lastModifiedDate.toISOString(),
        ETag: object.metadata.etag,
        Size: object.size,
        StorageClass: 'STANDARD',
      })),
      CommonPrefixes: result.commonPrefixes.map((Prefix) => ({ Prefix })),
    },
  };
}

async function uploadPartCopy(ctx: S3rverContext, store: S3rverStore, bucket: string, uploadId: string): Promise<void> {
  const source = decodeURIComponent(ctx.get('x-amz-copy-source').split('?')[0]!).replace(/^\//, '');
  const slash = source.indexOf('/');
  const path = store.getResourcePath(source.slice(0, slash), source.slice(slash + 1), 'object');
  const size = await fsp.stat(path).then(
    (st) => st.size,
    () => undefined,
  );
  if (size === undefined) throw s3Error('NoSuchKey', 'The specified key does not exist.');
  const rangeHeader = ctx.get('x-amz-copy-source-range');
  const range = /^bytes=(\d+)-(\d+)$/.exec(rangeHeader);
  if (rangeHeader && !range) throw s3Error('InvalidArgument', 'The x-amz-copy-source-range value must be of the form bytes=first-last');
  const start = range ? Number(range[1]) : 0;
  const end = range ? Number(range[2]) : size - 1;
  if (start > end || end >= size) throw s3Error('InvalidRange', 'The requested range is not satisfiable');
  const { md5 } = await store.putPart(bucket, uploadId, Number(ctx.query.partNumber), createReadStream(path, { start, end }));
  ctx.body = { CopyPartResult: { LastModified: new Date().toISOString(), ETag: JSON.stringify(md5) } };
}

async function readBody(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

async function completeUpload(
  ctx: S3rverContext,
  store: S3rverStore,
  bucket: string,
  key: string,
  uploadId: string,
  dir: string,
): Promise<void> {
  const xml = await readBody(ctx.req);
  const parts = [...xml.matchAll(/<Part>([\s\S]*?)<\/Part>/g)].map((m) => ({
    number: Number(/<PartNumber>(\d+)<\/PartNumber>/.exec(m[1]!)?.[1]),
    etag: (/<ETag>([\s\S]*?)<\/ETag>/.exec(m[1]!)?.[1] ?? '').replace(/&quot;|"/g, ''),
  }));
  if (parts.length === 0) throw s3Error('MalformedXML', 'The XML you provided was not well-formed');
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]!;
    if (i > 0 && part.number <= parts[i - 1]!.number) throw s3Error('InvalidPartOrder', 'The list of parts was not in ascending order.');
    const md5 = await fsp.readFile(join(dir, `${part.number}.md5`), 'utf8').catch(() => undefined);
    if (md5 !== part.etag) throw s3Error('InvalidPart', `Part ${part.number} was not found or its ETag did not match.`);
    const { size } = await fsp.stat(join(dir, String(part.number)));
    if (i < parts.length - 1 && size < MIN_PART_SIZE) {
      throw s3Error('EntityTooSmall', `Part ${part.number} has ${size} bytes; all parts but the last must be at least 5 MiB.`);
    }
  }
  const { md5 } = await store.putObjectMultipart(bucket, uploadId, parts);
  ctx.body = { CompleteMultipartUploadResult: { Bucket: bucket, Key: key, ETag: JSON.stringify(`${md5}-${parts.length}`) } };
}
