// Spool: a temporary file on disk that one part (or one tail) is gathered in, so that a writer holds at most
// a part's worth of bytes per upload in flight, on disk and not in memory, and a part whose upload fails can
// be read again from the start.
import { randomBytes } from 'node:crypto';
import fs, { createReadStream } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';

const SPOOL_BATCH_BYTES = 1024 * 1024;

/**
 * A temporary file that one part (or one tail) is gathered in. It is unlinked as soon as it is open, so
 * nothing is left behind even if the process dies; writes are batched, one in flight.
 */
export class Spool {
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
