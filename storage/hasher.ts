// Running sha256 digests for upload sessions, computed on a worker thread: the main thread only moves
// bytes between socket and disk, and hashing (about 40% of a push's CPU) runs beside it.
import { createHash } from 'node:crypto';
import { Worker } from 'node:worker_threads';

const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const hashes = new Map();
parentPort.on('message', (m) => {
  if (m.op === 'create') hashes.set(m.id, createHash('sha256'));
  else if (m.op === 'update') {
    const hash = hashes.get(m.id);
    hash.update(new Uint8Array(m.buffer, 0, m.length));
    // The buffer goes back to be filled again: no allocation per batch on either side.
    parentPort.postMessage({ op: 'updated', bytes: m.length, buffer: m.buffer }, [m.buffer]);
  } else if (m.op === 'digest') parentPort.postMessage({ op: 'digest', req: m.req, hex: hashes.get(m.id).copy().digest('hex') });
  else if (m.op === 'free') hashes.delete(m.id);
});
`;

/** How many bytes may wait for the hashing thread before the sender waits: memory stays bounded. */
const MAX_OUTSTANDING = 8 * 1024 * 1024;
const BATCH_BYTES = 1024 * 1024;
/** A batch ends with the chunk that passes BATCH_BYTES; socket reads are at most 64 KiB, so this holds nearly every batch. */
const POOLED_BYTES = BATCH_BYTES + 256 * 1024;
/** Enough for every batch in flight (MAX_OUTSTANDING / BATCH_BYTES) and a few more. */
const MAX_POOLED = 12;

class HashThread {
  private readonly worker: Worker;
  private nextId = 0;
  private outstanding = 0;
  private drained: Array<() => void> = [];
  private readonly digests = new Map<number, (hex: string) => void>();
  private readonly pool: ArrayBuffer[] = [];

  constructor() {
    // It only hashes: a small young generation keeps its isolate's memory small.
    this.worker = new Worker(WORKER_SOURCE, { eval: true, resourceLimits: { maxYoungGenerationSizeMb: 4 } });
    this.worker.unref();
    this.worker.on('message', (m: { op: string; bytes?: number; buffer?: ArrayBuffer; req?: number; hex?: string }) => {
      if (m.op === 'updated') {
        this.outstanding -= m.bytes!;
        if (m.buffer?.byteLength === POOLED_BYTES && this.pool.length < MAX_POOLED) this.pool.push(m.buffer);
        if (this.outstanding <= MAX_OUTSTANDING / 2) {
          const waiting = this.drained;
          this.drained = [];
          for (const resolve of waiting) resolve();
        }
      } else if (m.op === 'digest') {
        this.digests.get(m.req!)?.(m.hex!);
        this.digests.delete(m.req!);
      }
    });
  }

  create(): number {
    const id = this.nextId++;
    this.worker.postMessage({ op: 'create', id });
    return id;
  }

  async update(id: number, chunks: Buffer[], bytes: number): Promise<void> {
    this.outstanding += bytes;
    // One copy into a buffer that is moved (transferred) to the thread and comes back when hashed: cloning
    // the chunks instead cost a second copy, an allocation per chunk on the other side, and garbage
    // collections; allocating a buffer per batch left freed ones waiting for the thread's collector.
    const buffer = bytes <= POOLED_BYTES ? (this.pool.pop() ?? new ArrayBuffer(POOLED_BYTES)) : new ArrayBuffer(bytes);
    const target = Buffer.from(buffer);
    let offset = 0;
    for (const chunk of chunks) offset += chunk.copy(target, offset);
    this.worker.postMessage({ op: 'update', id, buffer, length: bytes }, [buffer]);
    if (this.outstanding > MAX_OUTSTANDING) await new Promise<void>((resolve) => this.drained.push(resolve));
  }

  digest(id: number): Promise<string> {
    const req = this.nextId++;
    return new Promise((resolve) => {
      this.digests.set(req, resolve);
      this.worker.postMessage({ op: 'digest', id, req });
    });
  }

  free(id: number): void {
    this.worker.postMessage({ op: 'free', id });
  }
}

let thread: HashThread | undefined;

/** An incremental sha256 whose state lives on the hashing thread. */
export class RunningDigest {
  /** The state on the hashing thread, made when the first batch is sent. */
  private id?: number;
  private batch: Buffer[] = [];
  private batchBytes = 0;

  /**
   * Adds bytes; resolves at once unless the hashing thread is far behind. The chunk is referenced until
   * its batch is sent (up to 1 MiB later), so it must not be changed afterwards; socket reads never are.
   */
  async update(chunk: Buffer): Promise<void> {
    this.batch.push(chunk);
    this.batchBytes += chunk.length;
    if (this.batchBytes >= BATCH_BYTES) await this.flush();
  }

  async flush(): Promise<void> {
    if (this.batch.length === 0) return;
    const chunks = this.batch;
    const bytes = this.batchBytes;
    this.batch = [];
    this.batchBytes = 0;
    thread ??= new HashThread();
    this.id ??= thread.create();
    await thread.update(this.id, chunks, bytes);
  }

  /**
   * The hex digest of everything added so far; the state stays usable. Less than a batch in all (a
   * config, a small layer) is hashed here: microseconds, where the thread's round trips cost more.
   */
  async hex(): Promise<string> {
    if (this.id === undefined) {
      const hash = createHash('sha256');
      for (const chunk of this.batch) hash.update(chunk);
      return hash.digest('hex');
    }
    await this.flush();
    return thread!.digest(this.id);
  }

  free(): void {
    if (this.id !== undefined) thread!.free(this.id);
    this.batch = [];
  }
}
