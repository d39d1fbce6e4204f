// Every file of a large folder read at once, for the filesystem driver's `getFolderContents`: on threads of
// their own, so that the caller parses what was read while the next files are read. A start-up that read
// 100,000 search summaries spent half its time in open, fstat, read and close on the main thread; the
// threads keep the event loop free for requests as well.
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { openSync, readSync, closeSync } = require('node:fs');
// The batch's files are read one after another into one buffer, moved rather than copied when sent: a
// buffer per file cost the receiving thread twice the garbage collection.
let bytes = new Uint8Array(1 << 20);
parentPort.on('message', ({ id, names }) => {
  const ends = new Int32Array(names.length);
  let offset = 0;
  for (let i = 0; i < names.length; i++) {
    const start = offset;
    let fd;
    try {
      fd = openSync(workerData.folder + names[i], 'r');
      // A regular file reads short only at its end, so a read of less than the room left is the whole
      // file, without the fstat that readFileSync spends on each: a third of the reading time for small files.
      for (;;) {
        offset += readSync(fd, bytes, offset, bytes.length - offset, null);
        if (offset < bytes.length) break;
        const grown = new Uint8Array(bytes.length * 2);
        grown.set(bytes);
        bytes = grown;
      }
      ends[i] = offset;
    } catch (err) {
      if (err.code !== 'ENOENT' && err.code !== 'ENOTDIR' && err.code !== 'EISDIR') {
        parentPort.postMessage({ id, error: { message: err.message, code: err.code } });
        return;
      }
      offset = start;
      ends[i] = -1;
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
  }
  const sent = bytes.slice(0, offset);
  parentPort.postMessage({ id, bytes: sent.buffer, ends }, [sent.buffer, ends.buffer]);
});
`;

/** Files per message: large enough that messaging costs little beside the reads, small enough to bound memory. */
const BATCH_FILES = 512;
/**
 * Reading threads. On a cold page cache (the first start after a boot) the disk answers several reads at
 * once: 100,000 files took 8.6 s on one thread, 5.8 s on two and 5.2 s on four. More would only compete
 * with the caller for the cores.
 */
const THREADS = Math.min(4, Math.max(2, availableParallelism()));
/** Batches read ahead of the one being handed over, per thread: the threads read while the caller works. */
const AHEAD_PER_THREAD = 2;
/** Fewer files than this are read here: a thread costs some tens of milliseconds to start. */
const THREAD_FROM_FILES = 2 * BATCH_FILES;

interface Reply {
  id: number;
  /** The batch's files one after another; `ends[i]` is where file i ends, -1 where it is not a file to read. */
  bytes?: ArrayBuffer;
  ends?: Int32Array;
  error?: { message: string; code?: string };
}

/** A small file's bytes, read at once; undefined when it (or a folder on its path) is missing, or it is a folder. */
export function readIfPresent(file: string): Buffer | undefined {
  try {
    return readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR') return undefined;
    throw err;
  }
}

/**
 * Reads the named files of a folder (`folder` ends with its separator), calling `each` with the name and
 * content of each one that is a file, in the names' order. The bytes of at most AHEAD_PER_THREAD batches
 * per thread are held at once.
 */
export async function readFiles(folder: string, names: readonly string[], each: (name: string, content: Buffer) => void): Promise<void> {
  if (names.length < THREAD_FROM_FILES) {
    for (const name of names) {
      const content = readIfPresent(folder + name);
      if (content) each(name, content);
    }
    return;
  }
  const batches = Math.ceil(names.length / BATCH_FILES);
  const workers = Array.from({ length: Math.min(THREADS, batches) }, () => new Worker(WORKER_SOURCE, { eval: true, workerData: { folder }, resourceLimits: { maxYoungGenerationSizeMb: 4 } }));
  const waiting = new Map<number, { resolve: (reply: Reply) => void; reject: (err: Error) => void }>();
  const failed = (err: Error) => {
    for (const w of waiting.values()) w.reject(err);
    waiting.clear();
  };
  for (const worker of workers) {
    worker.on('message', (reply: Reply) => {
      waiting.get(reply.id)?.resolve(reply);
      waiting.delete(reply.id);
    });
    worker.on('error', failed);
    worker.on('exit', () => failed(new Error('a file-reading thread stopped')));
  }
  const ahead = AHEAD_PER_THREAD * workers.length;
  // Batch i goes to thread i mod n, so each thread reads its batches in the order they are handed over.
  const request = (id: number): Promise<Reply> =>
    new Promise<Reply>((resolve, reject) => {
      waiting.set(id, { resolve, reject });
      workers[id % workers.length]!.postMessage({ id, names: names.slice(id * BATCH_FILES, (id + 1) * BATCH_FILES) });
    });
  try {
    const requested: Promise<Reply>[] = [];
    const ask = (id: number) => {
      requested[id] = request(id);
      // Awaited in turn; one the loop never reaches (it stopped at a failure) must not be an unhandled rejection.
      requested[id].catch(() => {});
    };
    for (let id = 0; id < Math.min(ahead, batches); id++) ask(id);
    for (let id = 0; id < batches; id++) {
      const reply = await requested[id]!;
      delete requested[id];
      if (id + ahead < batches) ask(id + ahead);
      if (reply.error) throw Object.assign(new Error(reply.error.message), { code: reply.error.code });
      const bytes = Buffer.from(reply.bytes!);
      const ends = reply.ends!;
      let start = 0;
      for (let i = 0; i < ends.length; i++) {
        const end = ends[i]!;
        if (end < 0) continue;
        each(names[id * BATCH_FILES + i]!, bytes.subarray(start, end));
        start = end;
      }
    }
  } finally {
    await Promise.all(
      workers.map((worker) => {
        worker.removeAllListeners('exit');
        return worker.terminate();
      }),
    );
  }
}
