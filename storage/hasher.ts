// Running sha256 digests for upload sessions, computed on a worker thread: the main thread only moves
// bytes between socket and disk, and hashing (about 40% of a push's CPU) runs beside it.
import { createHash } from 'node:crypto';
import { Worker } from 'node:worker_threads';

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const { memory, slotBytes } = workerData;
const hashes = new Map();
parentPort.on('message', (m) => {
  if (m.op === 'create') hashes.set(m.id, createHash('sha256'));
  else if (m.op === 'update') {
    hashes.get(m.id).update(new Uint8Array(memory, m.slot * slotBytes, m.length));
    parentPort.postMessage({ op: 'updated', slot: m.slot });
  } else if (m.op === 'digest') parentPort.postMessage({ op: 'digest', req: m.req, hex: hashes.get(m.id).copy().digest('hex') });
  else if (m.op === 'free') hashes.delete(m.id);
});
`;

const BATCH_BYTES = 1024 * 1024;
/** A batch ends with the chunk that passes BATCH_BYTES; socket reads are at most 64 KiB, so one slot holds nearly every batch. */
const SLOT_BYTES = BATCH_BYTES + 256 * 1024;
/** How many batches may wait for the hashing thread before a sender waits: memory stays bounded. */
const SLOTS = 12;

/**
 * The hashing thread and the slots of memory it shares with this one. A batch is copied into a free slot
 * and the thread is told which: nothing is transferred. Transferring buffers to and fro (as this did
 * before) made each returning buffer new external memory to V8, and the detached ones stayed counted
 * until a full collection: some 50 mark-compacts per 2 GiB of uploads, a tenth of the server's CPU.
 */
class HashThread {
  private readonly worker: Worker;
  private readonly memory = new SharedArrayBuffer(SLOTS * SLOT_BYTES);
  /** A view of each slot, made once: a copy per chunk needs no new view. */
  private readonly slots = Array.from({ length: SLOTS }, (_, i) => Buffer.from(this.memory, i * SLOT_BYTES, SLOT_BYTES));
  private readonly freeSlots: number[] = Array.from({ length: SLOTS }, (_, i) => SLOTS - 1 - i);
  private nextId = 0;
  private waiting: Array<() => void> = [];
  private readonly digests = new Map<number, (hex: string) => void>();

  constructor() {
    // It only hashes: a small young generation keeps its isolate's memory small.
    this.worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { memory: this.memory, slotBytes: SLOT_BYTES }, resourceLimits: { maxYoungGenerationSizeMb: 4 } });
    this.worker.unref();
    this.worker.on('message', (m: { op: string; slot?: number; req?: number; hex?: string }) => {
      if (m.op === 'updated') {
        this.freeSlots.push(m.slot!);
        this.waiting.shift()?.();
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

  /** Copies the chunks into free slots (waiting for one while the thread is SLOTS batches behind) and sends them. */
  async update(id: number, chunks: Buffer[]): Promise<void> {
    let slot: number | undefined;
    let filled = 0;
    const send = () => {
      this.worker.postMessage({ op: 'update', id, slot, length: filled });
      slot = undefined;
      filled = 0;
    };
    for (const chunk of chunks) {
      for (let offset = 0; offset < chunk.length; ) {
        while (slot === undefined && (slot = this.freeSlots.pop()) === undefined) await new Promise<void>((resolve) => this.waiting.push(resolve));
        const n = chunk.copy(this.slots[slot]!, filled, offset);
        filled += n;
        offset += n;
        if (filled === SLOT_BYTES) send();
      }
    }
    if (slot !== undefined) send();
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
    this.batch = [];
    this.batchBytes = 0;
    thread ??= new HashThread();
    this.id ??= thread.create();
    await thread.update(this.id, chunks);
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
