// Many small files read at once, for the filesystem driver's `getContents`: on a thread of their own, so
// that the main thread parses what was read while the next files are read. A start-up that read 100,000
// search summaries spent half its time in open, fstat, read and close on the main thread; the thread keeps
// the event loop free for requests as well.
import { readFileSync } from 'node:fs';
import { Worker } from 'node:worker_threads';

const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { readFileSync } = require('node:fs');
parentPort.on('message', ({ id, files }) => {
  const contents = [];
  let total = 0;
  for (const file of files) {
    let content = null;
    try {
      content = readFileSync(file);
      total += content.length;
    } catch (err) {
      if (err.code !== 'ENOENT' && err.code !== 'ENOTDIR' && err.code !== 'EISDIR') {
        parentPort.postMessage({ id, error: { message: err.message, code: err.code } });
        return;
      }
    }
    contents.push(content);
  }
  // One buffer for the batch, moved rather than copied: a buffer per file cost the receiving thread twice
  // the garbage collection.
  const bytes = new Uint8Array(total);
  const ends = new Int32Array(files.length);
  let offset = 0;
  contents.forEach((content, i) => {
    if (content) {
      bytes.set(content, offset);
      offset += content.length;
      ends[i] = offset;
    } else ends[i] = -1;
  });
  parentPort.postMessage({ id, bytes: bytes.buffer, ends }, [bytes.buffer, ends.buffer]);
});
`;

/** Files per message: large enough that messaging costs little beside the reads, small enough to bound memory. */
const BATCH_FILES = 512;
/** Batches read ahead of the one being handed over: the thread reads while the caller works on the last. */
const AHEAD = 2;
/** Fewer files than this are read here: a thread costs some tens of milliseconds to start. */
const THREAD_FROM_FILES = 2 * BATCH_FILES;

interface Reply {
  id: number;
  /** The batch's files one after another; `ends[i]` is where file i ends, -1 where it does not exist. */
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
 * Reads every file, calling `each` with its index and content (undefined when it does not exist) in the
 * files' order. The bytes of at most AHEAD + 1 batches are held at once.
 */
export async function readFiles(files: readonly string[], each: (index: number, content: Buffer | undefined) => void): Promise<void> {
  if (files.length < THREAD_FROM_FILES) {
    for (let i = 0; i < files.length; i++) each(i, readIfPresent(files[i]!));
    return;
  }
  const worker = new Worker(WORKER_SOURCE, { eval: true, resourceLimits: { maxYoungGenerationSizeMb: 4 } });
  const waiting = new Map<number, { resolve: (reply: Reply) => void; reject: (err: Error) => void }>();
  const failed = (err: Error) => {
    for (const w of waiting.values()) w.reject(err);
    waiting.clear();
  };
  worker.on('message', (reply: Reply) => {
    waiting.get(reply.id)?.resolve(reply);
    waiting.delete(reply.id);
  });
  worker.on('error', failed);
  worker.on('exit', () => failed(new Error('the file-reading thread stopped')));
  const batches = Math.ceil(files.length / BATCH_FILES);
  const request = (id: number): Promise<Reply> =>
    new Promise<Reply>((resolve, reject) => {
      waiting.set(id, { resolve, reject });
      worker.postMessage({ id, files: files.slice(id * BATCH_FILES, (id + 1) * BATCH_FILES) });
    });
  try {
    const requested: Promise<Reply>[] = [];
    const ask = (id: number) => {
      requested[id] = request(id);
      // Awaited in turn; one the loop never reaches (it stopped at a failure) must not be an unhandled rejection.
      requested[id].catch(() => {});
    };
    for (let id = 0; id < Math.min(AHEAD + 1, batches); id++) ask(id);
    for (let id = 0; id < batches; id++) {
      const reply = await requested[id]!;
      delete requested[id];
      if (id + AHEAD + 1 < batches) ask(id + AHEAD + 1);
      if (reply.error) throw Object.assign(new Error(reply.error.message), { code: reply.error.code });
      const bytes = Buffer.from(reply.bytes!);
      const ends = reply.ends!;
      let start = 0;
      for (let i = 0; i < ends.length; i++) {
        const end = ends[i]!;
        if (end < 0) each(id * BATCH_FILES + i, undefined);
        else {
          each(id * BATCH_FILES + i, bytes.subarray(start, end));
          start = end;
        }
      }
    }
  } finally {
    worker.removeAllListeners('exit');
    await worker.terminate();
  }
}
