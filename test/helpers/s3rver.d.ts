// The little of s3rver (a real S3 endpoint over HTTP that keeps objects in a folder) that the tests use.
declare module 's3rver' {
  import type { Server } from 'node:http';
  import type { AddressInfo } from 'node:net';
  import type { Readable } from 'node:stream';

  interface S3rverOptions {
    address?: string;
    port?: number;
    directory: string;
    silent?: boolean;
    resetOnClose?: boolean;
    configureBuckets?: { name: string }[];
  }

  /** The Koa context s3rver's middleware sees. */
  export interface S3rverContext {
    method: string;
    path: string;
    /** The request target as sent: path and query, not decoded. */
    url: string;
    query: Record<string, string | string[] | undefined>;
    /** The query as sent, without "?". */
    querystring: string;
    req: Readable;
    status: number;
    body: unknown;
    get(header: string): string;
  }

  export type S3rverMiddleware = (ctx: S3rverContext, next: () => Promise<void>) => Promise<void>;

  /** s3rver's own object store (objects and multipart uploads in folders). */
  export interface S3rverStore {
    getBucket(bucket: string): Promise<unknown>;
    listObjects(
      bucket: string,
      options: { prefix: string; delimiter: string; startAfter: string; maxKeys: number },
    ): Promise<{
      objects: { key: string; size: number; lastModifiedDate: Date; metadata: { etag: string } }[];
      commonPrefixes: string[];
      isTruncated: boolean;
    }>;
    getResourcePath(bucket: string, key: string | undefined, resource: string): string;
    deleteObject(bucket: string, key: string): Promise<void>;
    getObject(bucket: string, key: string, options?: { start?: number; end?: number }): Promise<{ content: Readable | null; size: number } | null>;
    putObject(object: { bucket: string; key: string; content: Readable | Buffer; metadata: Record<string, string> }): Promise<{ size: number; md5: string }>;
    putMetadata(bucket: string, key: string, metadata: Record<string, string>, md5?: string): Promise<void>;
    putPart(bucket: string, uploadId: string, partNumber: number, content: Readable): Promise<{ size: number; md5: string }>;
    putObjectMultipart(bucket: string, uploadId: string, parts: { number: number; etag: string }[]): Promise<{ md5: string; size: number }>;
  }

  export default class S3rver {
    constructor(options: S3rverOptions);
    middleware: S3rverMiddleware[];
    store: S3rverStore;
    httpServer?: Server;
    run(): Promise<AddressInfo>;
    close(): Promise<void>;
  }
}
