// The S3 driver's FileWriter: appends map onto one S3 multipart upload, whose state (sidecar.ts) is kept in S3
// next to the path, so that any process can take the next write.
//
// Part n of an upload is exactly partSize(n) bytes (the last one excepted): small writes accumulate in the
// tail until a part is full. While a write runs, the bytes go to a spool on disk, one part's worth at most
// (plus the parts still uploading), and each part is streamed from there, so memory stays bounded whatever
// the size of the blob. The writer state is replaced (one atomic PutObject) only when a write succeeds: a
// write whose source fails leaves it as it was, and the parts it uploaded are not recorded (a later write
// uploads those part numbers again).
//
// Data written becomes readable (reader, getContent) when the writer commits; stat reports the size at once.
import { randomBytes } from 'node:crypto';
import type { FileWriter } from '../driver.ts';
import { UploadGoneError, type Bucket } from './bucket.ts';
import type { Keys } from './keys.ts';
import { MAX_PARTS } from './parts.ts';
import { emptyState, type PartRecord, type Piece, type Sidecars, type WriterState } from './sidecar.ts';
import { Spool } from './spool.ts';

/** A tail of more ranges than this is merged into one object when the next write ends. */
const MAX_TAIL_RANGES = 16;

/** What every writer of one driver shares. */
export interface WriterSetup {
  readonly bucket: Bucket;
  readonly keys: Keys;
  readonly sidecars: Sidecars;
  /** The size of part n. */
  partSize(n: number): number;
  /** Part uploads in flight at once for one write. */
  readonly uploadConcurrency: number;
  readonly spoolDir: string;
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

/** Copies a tail's ranges (and then, optionally, a local spool) into a new spool. */
async function gather(setup: WriterSetup, pieces: readonly Piece[], local: Spool | undefined, signal: AbortSignal): Promise<Spool> {
  const out = await Spool.create(setup.spoolDir);
  try {
    for (const piece of pieces) {
      if (piece.length === 0) continue;
      for await (const chunk of setup.bucket.range(piece, signal)) await out.append(chunk);
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

/**
 * Uploads part n of `key`'s upload from tail ranges and/or a local spool (disposed of here), server-side
 * when it is one stored range; returns its ETag.
 */
async function sendPart(setup: WriterSetup, key: string, uploadId: string, n: number, pieces: readonly Piece[], local: Spool | undefined, signal: AbortSignal): Promise<string> {
  if (!local && pieces.length === 1) return setup.bucket.copyPart(key, uploadId, n, pieces[0]!, signal);
  let file = local;
  try {
    if (pieces.length > 0) file = await gather(setup, pieces, local, signal);
    return await setup.bucket.uploadPart(key, uploadId, n, file!, signal);
  } finally {
    await file?.dispose();
    if (local && local !== file) await local.dispose();
  }
}

/**
 * One write: a source's bytes appended to the state its writer had. Its fields are what it has done so far
 * (the upload it created, the part uploads in flight, the spool it fills, the tail object it stored), so
 * that a failure at any step undoes exactly that; its writer's state changes only once the new one is saved.
 */
class Append {
  /** The state this write builds: the writer's own once it is saved. */
  private readonly next: WriterState;
  private readonly abort = new AbortController();
  private readonly uploads = new Set<Promise<void>>();
  /** The first failure of a part upload in the background, thrown at the next step. */
  private failure: { error: unknown } | undefined;
  private createdUpload: string | undefined;
  /** The bytes of the part being filled, after the tail's. */
  private spool: Spool | undefined;
  private newTailObject: string | undefined;
  private written = 0;
  private changed = false;

  constructor(
    private readonly setup: WriterSetup,
    private readonly path: string,
    private readonly key: string,
    private readonly before: WriterState,
  ) {
    this.next = { ...before, parts: [...before.parts], tail: [...before.tail] };
  }

  /** The state after the write, saved, and how many bytes it took; or, undone, the error. */
  async run(source: AsyncIterable<Buffer>, stored: boolean): Promise<{ state: WriterState; written: number }> {
    try {
      await this.partsFromTail();
      for await (const chunk of source) {
        this.check();
        await this.take(chunk);
      }
      this.check();
      await Promise.all(this.uploads);
      this.check();
      await this.storeTail();
      if (this.changed || !stored) await this.save();
    } catch (err) {
      await this.undo(err);
      throw err;
    }
    await this.dropUnusedTail();
    return { state: this.next, written: this.written };
  }

  private check(): void {
    if (this.failure) throw this.failure.error;
  }

  /** A tail of a whole part or more (appending to a committed object) becomes parts first. */
  private async partsFromTail(): Promise<void> {
    while (tailBytes(this.next.tail) >= this.setup.partSize(this.next.parts.length + 1)) {
      const [pieces, rest] = splitTail(this.next.tail, this.setup.partSize(this.next.parts.length + 1));
      this.next.tail = rest;
      await this.formPart(pieces, undefined);
    }
  }

  /** Spools a chunk; each part it fills is uploaded. */
  private async take(chunk: Buffer): Promise<void> {
    let offset = 0;
    while (offset < chunk.length) {
      const target = this.setup.partSize(this.next.parts.length + 1);
      const spool = (this.spool ??= await Spool.create(this.setup.spoolDir));
      const room = target - tailBytes(this.next.tail) - spool.size;
      const take = Math.min(room, chunk.length - offset);
      await spool.append(offset === 0 && take === chunk.length ? chunk : chunk.subarray(offset, offset + take));
      offset += take;
      this.written += take;
      if (take === room) {
        const pieces = this.next.tail;
        this.next.tail = [];
        this.spool = undefined;
        await this.formPart(pieces, spool);
      }
    }
  }

  /** Part n from tail ranges and/or a local spool, uploaded in the background (bounded). */
  private async formPart(pieces: Piece[], local: Spool | undefined): Promise<void> {
    const n = this.next.parts.length + 1;
    if (n > MAX_PARTS) {
      await local?.dispose();
      throw new Error(`the upload needs more than ${MAX_PARTS} parts`);
    }
    const record: PartRecord = { n, etag: '', size: tailBytes(pieces) + (local?.size ?? 0) };
    this.next.parts.push(record);
    this.changed = true;
    let uploadId: string;
    try {
      uploadId = await this.ensureUpload();
      while (this.uploads.size >= this.setup.uploadConcurrency) {
        await Promise.race(this.uploads);
        this.check();
      }
    } catch (err) {
      await local?.dispose();
      throw err;
    }
    const upload = sendPart(this.setup, this.key, uploadId, n, pieces, local, this.abort.signal);
    const tracked: Promise<void> = upload.then(
      (etag) => {
        record.etag = etag;
        this.uploads.delete(tracked);
      },
      (error: unknown) => {
        this.failure ??= { error };
        this.abort.abort();
        this.uploads.delete(tracked);
      },
    );
    this.uploads.add(tracked);
  }

  private async ensureUpload(): Promise<string> {
    this.next.uploadId ??= this.createdUpload = await this.setup.bucket.createUpload(this.key, this.abort.signal);
    return this.next.uploadId;
  }

  /** What is left stays as the tail, stored as one more object (or merged with the tail, when long). */
  private async storeTail(): Promise<void> {
    const spool = this.spool;
    if (spool && spool.size > 0) {
      const key = (this.newTailObject = this.setup.keys.tailObject(this.path));
      if (this.next.tail.length + 1 > MAX_TAIL_RANGES) {
        const merged = await gather(this.setup, this.next.tail, spool, this.abort.signal);
        try {
          await this.setup.bucket.putSpool(key, merged, this.abort.signal);
        } finally {
          await merged.dispose();
        }
        this.next.tail = [{ key, start: 0, length: merged.size, objectSize: merged.size }];
      } else {
        await this.setup.bucket.putSpool(key, spool, this.abort.signal);
        this.next.tail.push({ key, start: 0, length: spool.size, objectSize: spool.size });
      }
      this.changed = true;
    }
    await spool?.dispose();
    this.spool = undefined;
  }

  /** The one step that makes this write count. */
  private async save(): Promise<void> {
    const next = this.next;
    next.size = this.before.size + this.written;
    next.updatedAt = new Date().toISOString();
    next.writeId = randomBytes(8).toString('hex');
    try {
      await this.setup.sidecars.save(this.path, next);
    } catch (err) {
      // A save whose answer was lost may have landed all the same: then this write counts.
      const stored = await this.setup.sidecars.read(this.path).catch(() => undefined);
      if (stored?.writeId !== next.writeId) throw err;
    }
  }

  private async undo(err: unknown): Promise<void> {
    this.failure ??= { error: err };
    this.abort.abort();
    await Promise.all(this.uploads);
    await this.spool?.dispose();
    if (this.createdUpload) await this.setup.bucket.abortUpload(this.key, this.createdUpload).catch(() => {});
    if (this.newTailObject) await this.setup.bucket.deleteKeys([this.newTailObject]).catch(() => {});
  }

  /** Tail objects that this write turned into parts (or merged) are no longer needed. */
  private async dropUnusedTail(): Promise<void> {
    const kept = new Set(this.next.tail.map((piece) => piece.key));
    const unused = [...new Set(this.before.tail.map((piece) => piece.key))].filter((key) => !kept.has(key) && key !== this.key);
    if (unused.length > 0) await this.setup.bucket.deleteKeys(unused).catch(() => {});
  }
}

/** The writer of one path; see the top of this file. */
export class S3Writer implements FileWriter {
  private closed = false;

  constructor(
    private readonly setup: WriterSetup,
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
    return this.setup.keys.object(this.path);
  }

  async write(source: AsyncIterable<Buffer>): Promise<number> {
    if (this.closed) throw new Error('the writer is closed');
    const { state, written } = await new Append(this.setup, this.path, this.key, this.state).run(source, this.stored);
    this.state = state;
    this.stored = true;
    return written;
  }

  async commit(): Promise<void> {
    if (this.closed) throw new Error('the writer is closed');
    const bucket = this.setup.bucket;
    if (!this.stored) {
      // Nothing was written through a writer state: the object (if any) is the whole content already.
      if (!this.objectExists) {
        await bucket.put(this.key, Buffer.alloc(0));
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
        const parts: { n: number; etag: string }[] = [...state.parts];
        if (tailBytes(state.tail) > 0) {
          // The tail is the last part, which may be smaller than 5 MiB.
          const n = state.parts.length + 1;
          const pieces = state.tail.filter((piece) => piece.length > 0);
          parts.push({ n, etag: await sendPart(this.setup, this.key, state.uploadId, n, pieces, undefined, abort.signal) });
        }
        await bucket.completeUpload(this.key, state.uploadId, parts);
      }
    } catch (err) {
      // An earlier commit may have completed the upload and then lost its clean-up.
      if (!(err instanceof UploadGoneError && (await bucket.head(this.key))?.size === state.size)) throw err;
    }
    const tailObjects = [...new Set(state.tail.map((piece) => piece.key))].filter((key) => key !== this.key);
    await bucket.deleteKeys([this.setup.keys.sidecar(this.path), ...tailObjects]);
    this.stored = false;
    this.objectExists = true;
    const tail = state.size > 0 ? [{ key: this.key, start: 0, length: state.size, objectSize: state.size }] : [];
    this.state = { ...emptyState(), tail, size: state.size };
  }

  /** The content when no part was ever uploaded: one small object from the tail. */
  private async putSmall(tail: readonly Piece[], signal: AbortSignal): Promise<void> {
    const bucket = this.setup.bucket;
    const pieces = tail.filter((piece) => piece.length > 0);
    const only = pieces.length === 1 ? pieces[0]! : undefined;
    if (only && only.key === this.key && only.start === 0 && only.length === only.objectSize) return;
    if (pieces.length === 0) {
      await bucket.put(this.key, Buffer.alloc(0));
    } else if (only && only.start === 0 && only.length === only.objectSize) {
      await bucket.copyObject(only.key, this.key, signal);
    } else {
      const file = await gather(this.setup, pieces, undefined, signal);
      try {
        await bucket.putSpool(this.key, file, signal);
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
