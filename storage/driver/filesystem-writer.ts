// The filesystem driver's FileWriter. A blob must be durable before it is visible: its bytes go through
// the page cache, a background fdatasync every 32 MiB keeps the unflushed part small, and commit()'s
// fdatasync writes the rest. Or with direct I/O (O_DIRECT), where the driver is asked for it
// (BERTH_DIRECT_IO=true) or, by default (`auto`), while several large writes are under way or the page
// cache is measured to cost the kernel much CPU per MiB (WritePathChooser), since direct I/O costs the
// kernel less CPU there: on 12-02 our virtual disk took 2.5 ms of kernel CPU per MB to flush (2 GiB: 5 s),
// and direct writes carried eight pushes at once at 625-740 MB/s; on 12-03 the same disk flushed at 1.2 ms
// per MB and direct writes, each waiting for the device, held one push to 200-310 MB/s where the page
// cache carried it at 360-500.
// Direct I/O wants the memory, the file offset and the length aligned to the device's block: bytes are
// gathered into page-aligned slabs (WebAssembly memory, whose base is page-aligned) and written a full slab
// at a time, after the first MiB of each write (most blobs are smaller; they never open the direct
// descriptor); the unaligned head of each write and its last, part-filled slab go through the page cache,
// and commit()'s fdatasync covers both.
import { constants as fsConstants } from 'node:fs';
import * as fsp from 'node:fs/promises';
import type { FileWriter } from './driver.ts';

/** Offsets and lengths of direct writes are multiples of this (any block size up to a page). */
export const DIRECT_ALIGNMENT = 4096;
/**
 * The size of each direct write. On our virtual disk 4 MiB writes reach 450-500 MB/s where 1 MiB writes
 * reach 330-400 (one writer or eight): each write is a round trip through the thread pool and the device.
 */
const SLAB_BYTES = 4 * 1024 * 1024;
/** Bytes of a write that go through the page cache before direct writes begin. */
const DIRECT_AFTER_BYTES = 1024 * 1024;
/** Slabs are carved from memories of this many. */
const SLABS_PER_MEMORY = 2;
/**
 * How long slab memories stay after the pool was last used. Each new WebAssembly memory is fresh pages
 * that the kernel faults in one by one: letting a memory go as soon as its slabs were free (as this did
 * until 12-03) made eight pushes at once create and drop some 120 memories per 2 GiB, 135,000-185,000
 * page faults that cost the main thread about 3 s of kernel CPU on our virtual machine.
 */
const SLAB_IDLE_MS = 2000;
/**
 * Slabs in use at once, over all writers (64 MiB); a writer that finds none left writes through the page
 * cache. Eight pushes at once need 24 to write directly throughout; at 16 they were as fast.
 */
const MAX_SLABS = 16;
const WASM_PAGE = 64 * 1024;
/** Buffered (page cache) writes are gathered to this size. */
const WRITE_BATCH_BYTES = 1024 * 1024;
/**
 * Writes of one writer outstanding at once (8 MiB of direct writes): a push that waited for each write
 * before sending the next was held to the disk's pace for one; four were no faster than two.
 */
const IN_FLIGHT = 2;
/**
 * Writers flush to disk in the background every so many bytes, so commit() waits only for the tail. A
 * flush of direct writes empties the device's write cache (about 1 ms per MB here) and holds the writes
 * behind it: every 8 MiB cost a push a tenth of its rate, every 32 MiB leaves commit() some 30 ms.
 */
const BACKGROUND_SYNC_BYTES = 32 * 1024 * 1024;
/**
 * Background flushes running at once, over all writers. Each holds one of libuv's four threads for as long
 * as the device takes, and every file operation (the next write included) queues behind them: eight pushes
 * at once, each with its own flush running, waited for the pool. A writer whose turn does not come flushes
 * more at its next turn, or at commit().
 */
const MAX_BACKGROUND_FLUSHES = 2;
let backgroundFlushes = 0;

interface SlabMemory {
  readonly free: Buffer[];
  inUse: number;
}

/**
 * Page-aligned buffers for direct writes, bounded in number, reused while uploads keep coming and let go
 * once the pool has been idle for SLAB_IDLE_MS, so a burst of pushes does not hold them resident for ever.
 */
export class SlabPool {
  private readonly memories: SlabMemory[] = [];
  private readonly owner = new Map<Buffer, SlabMemory>();
  private inUse = 0;
  private lastUsed = 0;
  private sweep: NodeJS.Timeout | undefined;
  /** WebAssembly memories made so far (for tests: reuse makes none). */
  created = 0;

  constructor(private readonly now: () => number = () => performance.now()) {}

  /** Slab memories held now, in use or idle. */
  get held(): number {
    return this.memories.length;
  }

  acquire(): Buffer | undefined {
    if (this.inUse >= MAX_SLABS) return undefined;
    this.lastUsed = this.now();
    let memory = this.memories.find((m) => m.free.length > 0);
    if (!memory) {
      const wasm = new WebAssembly.Memory({ initial: (SLABS_PER_MEMORY * SLAB_BYTES) / WASM_PAGE });
      this.created++;
      memory = { free: [], inUse: 0 };
      for (let i = 0; i < SLABS_PER_MEMORY; i++) {
        const slab = Buffer.from(wasm.buffer, i * SLAB_BYTES, SLAB_BYTES);
        memory.free.push(slab);
        this.owner.set(slab, memory);
      }
      this.memories.push(memory);
    }
    memory.inUse++;
    this.inUse++;
    return memory.free.pop()!;
  }

  release(slab: Buffer): void {
    const memory = this.owner.get(slab)!;
    memory.free.push(slab);
    memory.inUse--;
    this.inUse--;
    this.lastUsed = this.now();
    if (memory.inUse === 0) this.sweep ??= setTimeout(() => this.releaseIdle(), SLAB_IDLE_MS).unref();
  }

  /** Lets go of every memory with no slab in use once the pool has been idle long enough; else looks again later. */
  releaseIdle(): void {
    this.sweep = undefined;
    const idleFor = this.now() - this.lastUsed;
    if (idleFor < SLAB_IDLE_MS) {
      this.sweep = setTimeout(() => this.releaseIdle(), SLAB_IDLE_MS - idleFor).unref();
      return;
    }
    for (const memory of this.memories.filter((m) => m.inUse === 0)) {
      this.memories.splice(this.memories.indexOf(memory), 1);
      for (const s of memory.free) this.owner.delete(s);
    }
  }
}

const slabs = new SlabPool();

/**
 * Whether this process may still try direct I/O (the first refusal, EINVAL, turns it off for good), and
 * how many bytes went that way.
 */
export const directIO = { enabled: true, bytesWritten: 0 };

/** How large writes go to disk: through the page cache, directly, or chosen by what the page cache costs (`auto`). */
export type DirectIOSetting = boolean | 'auto';

/** Bytes of large writes through the page cache over which its kernel CPU is measured. */
const SAMPLE_BYTES = 64 * 1024 * 1024;
/** A sample that takes longer than this is started again: at so slow a pace CPU is not what limits. */
const SAMPLE_MAX_MS = 2000;
/**
 * Kernel CPU (the whole process's, milliseconds) per MiB of large writes above which whole slabs go
 * directly. Through a page cache that costs little the process spends 0.6-1.9 ms per MiB (samples of 64
 * MiB on 12-03, receiving the bytes included), and direct writes about 1; on a virtual machine whose host
 * backs the guest's free memory lazily (12-03: after the first 0.5-1.5 GiB of a burst) every new page-cache
 * page cost a host fault and the process 5-6 ms per MiB, more than a core for eight pushes, which direct
 * writes into the same reused slabs do not pay: 494-545 MB/s against 269-301 for eight 256 MiB pushes at once.
 */
export const KERNEL_MS_PER_MIB = 2.5;
/**
 * Large writes under way at once (past their first MiB) from which `auto` writes whole slabs directly
 * however cheap the page cache was measured. With several at once the machine's CPU limits them, not the
 * device's latency (their writes in flight overlap it), and direct writes cost the kernel less CPU than
 * even a cheap page cache: on 12-04, eight curl pushes at once took 0.6-0.7 ms of kernel CPU per MiB
 * directly and ran at 539-676 MB/s, against 1.1-1.2 ms and 484-548 MB/s by the samples alone (2.2-3.2 ms
 * and 315-432 MB/s through the page cache only). A lone write keeps the page cache, which hides the
 * device's latency: on 12-03 one push went at 200-310 MB/s directly and 360-500 through it.
 */
const LARGE_WRITES_FOR_DIRECT = 2;
/** How long direct writes are kept before the page cache is measured again; doubled while it stays costly. */
const DIRECT_FIRST_MS = 30_000;
const DIRECT_LONGEST_MS = 10 * 60_000;

/**
 * The `auto` choice, for the whole process (the cost is the host's): large writes go directly while
 * several are under way; otherwise through the page cache while its kernel CPU per MiB stays low, and
 * directly for a while after a sample finds it costly; then the page cache is sampled again, since the
 * cost comes and goes with the host's memory.
 */
export class WritePathChooser {
  private direct = false;
  /** Large writes under way now (see `largeWriteBegan`). */
  private largeWrites = 0;
  private directUntil = 0;
  private directFor = DIRECT_FIRST_MS;
  private sample: { startedAt: number; kernelMs: number; bytes: number } | undefined;
  /** Kernel CPU per MiB that the last finished sample measured (for metrics). */
  lastSampleMsPerMiB: number | undefined;

  constructor(
    private readonly now: () => number = () => performance.now(),
    /** Kernel CPU of this process so far, in milliseconds. */
    private readonly kernelMs: () => number = () => process.cpuUsage().system / 1000,
  ) {}

  get prefersDirect(): boolean {
    if (this.direct && this.now() >= this.directUntil) {
      this.direct = false;
      this.sample = undefined;
    }
    return this.direct || this.largeWrites >= LARGE_WRITES_FOR_DIRECT;
  }

  /** A write passed its first MiB; the returned function ends it (once, however often it is called). */
  largeWriteBegan(): () => void {
    this.largeWrites++;
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      this.largeWrites--;
    };
  }

  /** Counts bytes of a large write sent through the page cache; ends a sample when it holds enough. */
  noteCached(bytes: number): void {
    // Beside other large writes (direct, or buffered for want of a slab) the kernel's CPU is not this write's alone.
    if (this.direct || this.largeWrites >= LARGE_WRITES_FOR_DIRECT) return;
    const now = this.now();
    const sample = this.sample;
    if (!sample || now - sample.startedAt > SAMPLE_MAX_MS) {
      // Bytes are counted as they are sent, before the kernel has copied them: the first batch's cost is
      // still to come, and the last batch's cost, not yet paid, evens it out.
      this.sample = { startedAt: now, kernelMs: this.kernelMs(), bytes };
      return;
    }
    sample.bytes += bytes;
    if (sample.bytes < SAMPLE_BYTES) return;
    this.sample = undefined;
    const perMiB = (this.kernelMs() - sample.kernelMs) / (sample.bytes / (1024 * 1024));
    this.lastSampleMsPerMiB = perMiB;
    if (perMiB <= KERNEL_MS_PER_MIB) {
      this.directFor = DIRECT_FIRST_MS;
      return;
    }
    this.direct = true;
    this.directUntil = now + this.directFor;
    this.directFor = Math.min(this.directFor * 2, DIRECT_LONGEST_MS);
  }
}

/** The chooser every `auto` writer of this process consults (and the metrics report). */
export const writePath = new WritePathChooser();

/** Whether a direct write may be tried: the platform has O_DIRECT and no filesystem refused it yet. */
const directAvailable = (): boolean => directIO.enabled && fsConstants.O_DIRECT !== undefined;

/** Opens a second descriptor on the file for direct writes, or none where the filesystem refuses them. */
export async function openDirect(path: string): Promise<fsp.FileHandle | undefined> {
  if (!directAvailable()) return undefined;
  try {
    return await fsp.open(path, fsConstants.O_WRONLY | fsConstants.O_DIRECT);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw err;
    directIO.enabled = false;
    return undefined;
  }
}

export class FilesystemWriter implements FileWriter {
  private unsynced = 0;
  private background: Promise<void> | undefined;

  /**
   * The same file opened for direct I/O, at the first whole slab: a small blob never needs it, and opening
   * it for every upload cost a small push a fifth of its rate. Undefined where the filesystem refuses.
   */
  private direct?: Promise<fsp.FileHandle | undefined>;

  constructor(
    private readonly handle: fsp.FileHandle,
    /** The file's path, for the direct descriptor. */
    private readonly path: string,
    private current: number,
    /** Whether whole slabs go to the device directly (BERTH_DIRECT_IO) rather than through the page cache. */
    private readonly directWanted: DirectIOSetting,
    /** Consulted, and told of page-cache bytes, when directWanted is `auto` (the driver's). */
    private readonly chooser: WritePathChooser,
  ) {}

  get size(): number {
    return this.current;
  }

  async write(source: AsyncIterable<Buffer>): Promise<number> {
    const before = this.current;
    const sink = new WriteSink(this, before);
    try {
      for await (const chunk of source) await sink.add(chunk);
      await sink.end();
    } catch (err) {
      // Let the writes settle, then roll back to the last whole chunk so the offset a client is told
      // matches what is really stored.
      await sink.abort();
      await this.handle.truncate(before).catch(() => {});
      throw err;
    } finally {
      sink.largeWriteEnded?.();
    }
    this.current = sink.position;
    return this.current - before;
  }

  /** Through the page cache, at a position; a buffered writer's background flush keeps up. */
  async writeBuffered(buffers: Buffer[], position: number): Promise<void> {
    let bytes = 0;
    for (const b of buffers) bytes += b.length;
    let done = 0;
    while (done < bytes) {
      const { bytesWritten } = await this.handle.writev(done === 0 ? buffers : [Buffer.concat(buffers).subarray(done)], position + done);
      done += bytesWritten;
    }
    if (!this.canWriteDirect) this.flushInBackground(bytes);
  }

  /** A whole aligned slab straight to the device; through the page cache if the filesystem refuses. */
  async writeDirect(slab: Buffer, length: number, position: number): Promise<void> {
    const direct = directIO.enabled ? await (this.direct ??= openDirect(this.path)) : undefined;
    if (direct && directIO.enabled) {
      try {
        let done = 0;
        while (done < length) {
          const { bytesWritten } = await direct.write(slab, done, length - done, position + done);
          directIO.bytesWritten += bytesWritten;
          if (bytesWritten % DIRECT_ALIGNMENT !== 0 && done + bytesWritten < length) {
            // A short direct write that ends unaligned cannot be continued directly.
            await this.writeBuffered([slab.subarray(done + bytesWritten, length)], position + done + bytesWritten);
            return;
          }
          done += bytesWritten;
        }
        // A direct write is on the device but may sit in its cache: flushing as the blob arrives leaves
        // commit() only the last few MiB to wait for (a 256 MiB push waited 0.4 s for one flush at the end).
        this.flushInBackground(length);
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw err;
        directIO.enabled = false;
      }
    }
    await this.writeBuffered([slab.subarray(0, length)], position);
  }

  get canWriteDirect(): boolean {
    if (!directAvailable()) return false;
    return this.directWanted === 'auto' ? this.chooser.prefersDirect : this.directWanted;
  }

  /** A write of this writer passed its first MiB: `auto` counts it among the large writes under way. */
  largeWriteBegan(): () => void {
    return this.directWanted === 'auto' ? this.chooser.largeWriteBegan() : () => {};
  }

  /** Bytes past a write's first MiB that went through the page cache: what `auto` measures. */
  noteCached(bytes: number): void {
    if (this.directWanted === 'auto' && directAvailable()) this.chooser.noteCached(bytes);
  }

  private flushInBackground(bytes: number): void {
    this.unsynced += bytes;
    if (this.unsynced < BACKGROUND_SYNC_BYTES || this.background || backgroundFlushes >= MAX_BACKGROUND_FLUSHES) return;
    this.unsynced = 0;
    backgroundFlushes++;
    this.background = this.handle
      .datasync()
      // commit() syncs again and reports any error that persists.
      .catch(() => {})
      .finally(() => {
        backgroundFlushes--;
        this.background = undefined;
      });
  }

  async commit(): Promise<void> {
    await this.background;
    await this.handle.datasync();
  }

  async close(): Promise<void> {
    await (await this.direct?.catch(() => undefined))?.close();
    // A background flush still running finishes on its own and then closes the file: the reply to a
    // chunk need not wait for the disk, since completion fsyncs everything before the blob is visible.
    const background = this.background;
    if (background) void background.then(() => this.handle.close()).catch(() => {});
    else await this.handle.close();
  }
}

/**
 * One write(): bytes in order from `start`. The head up to the first aligned offset goes through the page
 * cache; then whole slabs are written directly, several in flight while the next fills, so the disk and
 * the network overlap; the tail that does not fill a block goes through the page cache again.
 */
class WriteSink {
  /** The file offset after every byte added so far. */
  position: number;
  private slab: Buffer | undefined;
  /** The file offset of the slab's first byte, and how much of it is filled. */
  private slabStart = 0;
  private filled = 0;
  private batch: Buffer[] = [];
  private batchStart = 0;
  private batchBytes = 0;
  /** Writes sent and not yet done (each settles, never rejects; the first failure is kept). */
  private readonly inFlight = new Set<Promise<void>>();
  private failure: { error: unknown } | undefined;
  /** Set once the write passed its first MiB: ends its count among the large writes under way. */
  largeWriteEnded: (() => void) | undefined;

  constructor(
    private readonly writer: FilesystemWriter,
    private readonly start: number,
  ) {
    this.position = start;
  }

  async add(chunk: Buffer): Promise<void> {
    let offset = 0;
    while (offset < chunk.length) {
      if (this.slab) {
        const n = chunk.copy(this.slab, this.filled, offset);
        this.filled += n;
        offset += n;
        this.position += n;
        if (this.filled === this.slab.length) await this.sendSlab();
        continue;
      }
      // Not in a slab: the first MiB of a write (most blobs are smaller: they are written once, through the
      // page cache, and flushed with the commit), the head before an aligned offset, no direct I/O, or no
      // slab to be had.
      const large = this.position - this.start >= DIRECT_AFTER_BYTES;
      if (large) this.largeWriteEnded ??= this.writer.largeWriteBegan();
      const direct = large && this.writer.canWriteDirect;
      const aligned = this.position % DIRECT_ALIGNMENT === 0;
      if (aligned && direct && this.batchBytes === 0) {
        this.slab = slabs.acquire();
        if (this.slab) {
          this.slabStart = this.position;
          this.filled = 0;
          continue;
        }
      }
      // A piece ends at the next aligned offset (before a slab), or where the first MiB ends (so a large
      // chunk still goes directly after it), or with the chunk.
      const rest = chunk.length - offset;
      const firstMiBLeft = this.start + DIRECT_AFTER_BYTES - this.position;
      const toAlignment = direct ? (aligned ? rest : DIRECT_ALIGNMENT - (this.position % DIRECT_ALIGNMENT)) : this.writer.canWriteDirect && firstMiBLeft > 0 ? firstMiBLeft : rest;
      const piece = chunk.subarray(offset, offset + Math.min(toAlignment, chunk.length - offset));
      if (this.batchBytes === 0) this.batchStart = this.position;
      this.batch.push(piece);
      this.batchBytes += piece.length;
      offset += piece.length;
      this.position += piece.length;
      // The head is sent at once (direct writes follow it); a buffered stream in batches.
      if (this.batchBytes >= WRITE_BATCH_BYTES || (direct && this.position % DIRECT_ALIGNMENT === 0)) {
        await this.sendBatch();
      }
    }
  }

  private async sendBatch(): Promise<void> {
    const buffers = this.batch;
    const start = this.batchStart;
    const bytes = this.batchBytes;
    this.batch = [];
    this.batchBytes = 0;
    const pastFirstMiB = start + bytes - (this.start + DIRECT_AFTER_BYTES);
    if (pastFirstMiB > 0) this.writer.noteCached(Math.min(bytes, pastFirstMiB));
    await this.room(IN_FLIGHT);
    this.track(this.writer.writeBuffered(buffers, start));
  }

  /** Hands the full slab to the disk, with up to IN_FLIGHT writes outstanding while the next one fills. */
  private async sendSlab(): Promise<void> {
    const slab = this.slab!;
    const start = this.slabStart;
    this.slab = undefined;
    await this.room(IN_FLIGHT);
    this.track(this.writer.writeDirect(slab, slab.length, start).finally(() => slabs.release(slab)));
  }

  /** Writes go to distinct offsets, so several may be outstanding; a failure surfaces at the next send or the end. */
  private track(write: Promise<void>): void {
    const settled: Promise<void> = write.then(
      () => {
        this.inFlight.delete(settled);
      },
      (error: unknown) => {
        this.inFlight.delete(settled);
        this.failure ??= { error };
      },
    );
    this.inFlight.add(settled);
  }

  /** Waits until fewer than `max` writes are outstanding; throws the first failure. */
  private async room(max: number): Promise<void> {
    while (this.inFlight.size >= max) await Promise.race(this.inFlight);
    if (this.failure) throw this.failure.error;
  }

  async end(): Promise<void> {
    // A slab left part-filled (all of a small blob, the last MiB of a large one) goes through the page
    // cache: commit()'s one fdatasync writes it with the rest, where a direct write would wait for the
    // device on its own first.
    if (this.slab) {
      const slab = this.slab;
      this.slab = undefined;
      await this.room(IN_FLIGHT);
      this.track(this.writer.writeBuffered([slab.subarray(0, this.filled)], this.slabStart).finally(() => slabs.release(slab)));
    }
    if (this.batchBytes > 0) await this.sendBatch();
    await this.room(1);
  }

  async abort(): Promise<void> {
    if (this.slab) {
      slabs.release(this.slab);
      this.slab = undefined;
    }
    await Promise.all(this.inFlight);
  }
}
