// One upstream fetch of one blob, however many clients want it (single-flight). The bytes go two ways
// as they arrive: into storage (an upload session, verified against the digest and committed whole by
// storage) and into a spool file that every client reads, each from its own position, as it grows. The
// fill belongs to no client: one that goes away stops reading, and the fill goes on for the others. A
// connection the upstream cuts is resumed with Range; one that cannot be resumed ends the fill with
// nothing stored. The last byte is held back from every client until storage has verified the digest,
// so no client receives a whole blob of wrong bytes.
import { EventEmitter, once } from 'node:events';
import { closeSync, openSync, read, unlinkSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';

export interface FillSource {
  /** The blob's bytes from `offset` on, and its whole size when known. */
  open(offset: number, signal: AbortSignal): Promise<{ body: Readable; size?: number }>;
}

/** Takes the bytes into storage and resolves once they are verified and committed (throws otherwise). */
export type FillSink = (bytes: Readable) => Promise<void>;

export interface FillOptions {
  /** A body that brings nothing for this long is cut (and resumed). */
  idleTimeoutMs: number;
  /** Resumptions with Range after a cut. */
  maxResumes: number;
  /** Called with each chunk's length as it arrives from the upstream. */
  onBytes?: (n: number) => void;
}

const READ_SIZE = 256 * 1024;

/** A fill as a client's GET sees it: this process's own (BlobFill) or one followed from another (shared-fill.ts). */
export interface StreamedFill {
  readonly state: 'running' | 'done' | 'failed';
  /** The blob's size, when the upstream said it. */
  readonly size?: number;
  readonly started: Promise<void>;
  readonly finished: Promise<void>;
  /** A stream of the blob from byte 0 as its bytes arrive; call only while the fill runs. */
  reader(): Readable;
}

export class BlobFill implements StreamedFill {
  state: 'running' | 'done' | 'failed' = 'running';
  error?: Error;
  /** The blob's size, when the upstream said it (before the first byte). */
  size?: number;
  /** Bytes fetched so far (all in the spool). */
  written = 0;
  /** Resolves once the size is known or the first answer came without one; rejects when the fill fails first. */
  readonly started: Promise<void>;
  /** Resolves when the blob is stored and verified; rejects when the fill failed. */
  readonly finished: Promise<void>;
  /** Whether `started` has resolved. */
  hasStarted = false;
  /** How many times the upstream was asked (a resumption counts). */
  requests = 0;
  private readonly events = new EventEmitter();
  private readonly spool = join(tmpdir(), `berth-fill-${randomUUID()}`);
  private readonly abort = new AbortController();

  constructor(
    private readonly source: FillSource,
    private readonly sink: FillSink,
    private readonly options: FillOptions,
  ) {
    this.events.setMaxListeners(0);
    let markStarted!: () => void;
    let failStart!: (err: Error) => void;
    this.started = new Promise<void>((resolve, reject) => {
      markStarted = resolve;
      failStart = reject;
    });
    this.started.catch(() => {});
    this.events.once('started', () => {
      this.hasStarted = true;
      markStarted();
    });
    this.finished = this.run().then(
      () => {
        this.state = 'done';
        this.events.emit('progress');
      },
      (err: Error) => {
        this.state = 'failed';
        this.error = err;
        failStart(err);
        this.events.emit('progress');
        throw err;
      },
    );
    this.finished.catch(() => {});
  }

  /**
   * A client's view of the blob: a stream from byte 0 that follows the spool as it grows. Call only while
   * the fill runs (its spool is removed when it ends; an open reader keeps reading its own descriptor).
   */
  reader(): Readable {
    const fd = openSync(this.spool, 'r');
    let position = 0;
    let closed = false;
    const close = () => {
      if (!closed) closeSync(fd);
      closed = true;
    };
    const fill = this;
    const readable = new Readable({
      highWaterMark: READ_SIZE,
      read() {
        const step = () => {
          if (closed) return;
          if (fill.state === 'failed') return void readable.destroy(fill.error);
          // The last byte waits for the verdict on the digest.
          const available = fill.state === 'done' ? fill.written : fill.written - 1;
          if (position >= available) {
            if (fill.state === 'done') return void readable.push(null);
            fill.events.once('progress', step);
            return;
          }
          const buffer = Buffer.allocUnsafe(Math.min(READ_SIZE, available - position));
          read(fd, buffer, 0, buffer.length, position, (err, n) => {
            if (err) return void readable.destroy(err);
            position += n;
            readable.push(buffer.subarray(0, n));
          });
        };
        step();
      },
      destroy(err, callback) {
        close();
        callback(err);
      },
    });
    readable.once('end', close);
    return readable;
  }

  private async run(): Promise<void> {
    const spool = await open(this.spool, 'w+');
    const toStorage = new PassThrough({ highWaterMark: 1024 * 1024 });
    const stored = this.sink(toStorage);
    stored.catch(() => {});
    try {
      await this.fetchAll(spool, toStorage);
      toStorage.end();
      await stored;
    } catch (err) {
      toStorage.destroy(err as Error);
      await stored.catch(() => {});
      throw err;
    } finally {
      this.abort.abort();
      await spool.close();
      // Readers hold their own descriptors: removing the name now frees the space when the last one closes.
      try {
        unlinkSync(this.spool);
      } catch {
        // gone already
      }
    }
  }

  /** Fetches into the spool and storage, resuming after a cut from where the bytes stopped. */
  private async fetchAll(spool: FileHandle, toStorage: PassThrough): Promise<void> {
    for (let resumes = 0; ; resumes++) {
      try {
        await this.fetchFrom(spool, toStorage);
        return;
      } catch (err) {
        // Only a cut after some bytes is resumed; a refusal or a bad answer ends the fill.
        const resumable = (err as { resumable?: boolean }).resumable === true && this.written > 0;
        if (!resumable || resumes >= this.options.maxResumes) throw err;
      }
    }
  }

  private async fetchFrom(spool: FileHandle, toStorage: PassThrough): Promise<void> {
    this.requests++;
    const { body, size } = await this.source.open(this.written, this.abort.signal);
    if (this.size === undefined) this.size = size;
    else if (size !== undefined && size !== this.size) throw new Error(`the upstream now says ${size} bytes, first ${this.size}`);
    this.events.emit('started');
    let idle: NodeJS.Timeout | undefined;
    const arm = () => {
      clearTimeout(idle);
      idle = setTimeout(() => body.destroy(Object.assign(new Error('the upstream sent nothing in time'), { resumable: true })), this.options.idleTimeoutMs);
    };
    arm();
    try {
      for await (const chunk of body as AsyncIterable<Buffer>) {
        arm();
        if (this.size !== undefined && this.written + chunk.length > this.size) throw new Error(`the upstream sent more than the ${this.size} bytes it announced`);
        await spool.write(chunk, 0, chunk.length, this.written);
        this.written += chunk.length;
        this.options.onBytes?.(chunk.length);
        this.events.emit('progress');
        if (!toStorage.write(chunk)) await once(toStorage, 'drain');
      }
    } catch (err) {
      // A broken connection (or silence) may be resumed; our own checks above may not.
      if (!(err as Error).message.startsWith('the upstream sent more')) Object.assign(err as Error, { resumable: true });
      throw err;
    } finally {
      clearTimeout(idle);
    }
    if (this.size !== undefined && this.written < this.size) {
      throw Object.assign(new Error(`the upstream ended after ${this.written} of ${this.size} bytes`), { resumable: true });
    }
  }
}
