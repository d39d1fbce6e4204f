// The filesystem StorageDriver: the embedded default. Atomic replacement is temp file + fsync + rename.
import * as fs from 'node:fs';
import { createReadStream, constants as fsConstants } from 'node:fs';
import { promisify } from 'node:util';
import * as fsp from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import {
  pageOfNames,
  PathNotFoundError,
  type ByteRange,
  type FileInfo,
  type FileWriter,
  type ListPage,
  type PutOptions,
  type StorageDriver,
} from './driver.ts';
import { FilesystemWriter } from './filesystem-writer.ts';

const TEMP_DIR = '_tmp';
const fsyncFd = promisify(fs.fsync);
/** Temp names: unique per process by a random prefix (another process may share the folder), then a counter. */
const TEMP_PREFIX = `${Date.now().toString(36)}-${randomBytes(6).toString('hex')}`;
let tempCounter = 0;
const COPY_RING = 4;
const COPY_BUFFER_BYTES = 1024 * 1024;

function isNotFound(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

export class FilesystemDriver implements StorageDriver {
  readonly name = 'filesystem';
  /** A write lands in the file itself (page cache or direct I/O), and the file's size grows only over written bytes. */
  readonly readableBeforeCommit = true;

  constructor(readonly root: string) {}

  private full(path: string): string {
    return join(this.root, path);
  }

  /** The temp folder is made once per driver (and again if something removed it). */
  private tempReady?: Promise<unknown>;

  private async tempPath(): Promise<string> {
    const dir = join(this.root, TEMP_DIR);
    await (this.tempReady ??= fsp.mkdir(dir, { recursive: true }));
    return join(dir, `${TEMP_PREFIX}-${++tempCounter}`);
  }

  /**
   * Small files (links, metadata, manifests) are read and written with synchronous system calls: on a
   * local disk each takes microseconds, far less than a trip through libuv's four-thread pool, which a
   * push would otherwise cross some fifty times. The flush to disk, the one step that waits for the
   * device, stays asynchronous. Blobs are streamed (reader, copyTo, writer) and never read this way.
   */
  async getContent(path: string): Promise<Buffer | undefined> {
    try {
      return fs.readFileSync(this.full(path));
    } catch (err) {
      if (isNotFound(err) || (err as NodeJS.ErrnoException).code === 'EISDIR') return undefined;
      throw err;
    }
  }

  async putContent(path: string, content: Buffer | string, options?: PutOptions): Promise<void> {
    const target = this.full(path);
    const temp = await this.tempPath();
    let fd: number;
    try {
      fd = fs.openSync(temp, 'w');
    } catch (err) {
      // The temp folder was removed meanwhile (by hand, by a test): made again.
      if (!isNotFound(err)) throw err;
      this.tempReady = undefined;
      return this.putContent(path, content, options);
    }
    try {
      fs.writeFileSync(fd, content);
      if (options?.durable !== false) await fsyncFd(fd);
    } finally {
      fs.closeSync(fd);
    }
    this.renameInto(temp, target);
  }

  async reader(path: string, range?: ByteRange): Promise<Readable> {
    const full = this.full(path);
    // Opening first turns a missing file into PathNotFoundError instead of a stream error later.
    let handle: fsp.FileHandle;
    try {
      handle = await fsp.open(full, 'r');
    } catch (err) {
      if (isNotFound(err)) throw new PathNotFoundError(path);
      throw err;
    }
    return createReadStream('', {
      fd: handle,
      start: range?.start,
      end: range?.end,
      highWaterMark: 1024 * 1024,
    });
  }

  /**
   * Sends a file (or a range of it) into a sink through a small ring of reused buffers, each handed back
   * only when the sink has written it: no garbage per read, so pulls run at the network's pace.
   */
  async copyTo(path: string, sink: Writable, range?: ByteRange): Promise<void> {
    let handle: fsp.FileHandle;
    try {
      handle = await fsp.open(this.full(path), 'r');
    } catch (err) {
      if (isNotFound(err)) throw new PathNotFoundError(path);
      throw err;
    }
    const ring = Array.from({ length: COPY_RING }, () => Buffer.allocUnsafe(COPY_BUFFER_BYTES));
    const free: Array<Promise<void>> = ring.map(() => Promise.resolve());
    const waiting = new Set<() => void>();
    let failure: Error | undefined;
    const onClose = () => {
      failure ??= new Error('the receiver closed before the file was sent');
      for (const resolve of waiting) resolve();
    };
    sink.once('close', onClose);
    try {
      let position = range?.start ?? 0;
      let remaining = range ? range.end - range.start + 1 : (await handle.stat()).size - position;
      for (let i = 0; remaining > 0 && !failure; i = (i + 1) % COPY_RING) {
        await free[i];
        if (failure) break;
        const buffer = ring[i]!;
        const { bytesRead } = await handle.read(buffer, 0, Math.min(buffer.length, remaining), position);
        if (bytesRead === 0) throw new Error(`${path} ended ${remaining} bytes early`);
        position += bytesRead;
        remaining -= bytesRead;
        free[i] = new Promise<void>((resolve) => {
          waiting.add(resolve);
          sink.write(buffer.subarray(0, bytesRead), (err) => {
            if (err) failure ??= err;
            waiting.delete(resolve);
            resolve();
          });
        });
      }
      await Promise.all(free);
      if (failure) throw failure;
    } finally {
      sink.off('close', onClose);
      await handle.close();
    }
  }

  async writer(path: string, append: boolean): Promise<FileWriter> {
    const full = this.full(path);
    // Writes are positioned (no O_APPEND): direct writes go through a second descriptor on the same file.
    const flags = append ? fsConstants.O_WRONLY | fsConstants.O_CREAT : 'w';
    let handle: fsp.FileHandle;
    try {
      handle = await fsp.open(full, flags);
    } catch (err) {
      // An upload's file is opened for each chunk: its folder is made only the first time.
      if (!isNotFound(err)) throw err;
      await fsp.mkdir(dirname(full), { recursive: true });
      handle = await fsp.open(full, flags);
    }
    const { size } = await handle.stat();
    return new FilesystemWriter(handle, full, size);
  }

  async stat(path: string): Promise<FileInfo | undefined> {
    try {
      const st = fs.statSync(this.full(path));
      return { path, size: st.size, modifiedAt: st.mtime, isDirectory: st.isDirectory() };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  async list(path: string, page?: ListPage): Promise<string[]> {
    try {
      const names = pageOfNames((await fsp.readdir(this.full(path))).sort(), page);
      const prefix = path === '/' ? '' : path;
      return names.map((n) => `${prefix}/${n}`);
    } catch (err) {
      if (isNotFound(err)) return [];
      throw err;
    }
  }

  async move(from: string, to: string): Promise<void> {
    try {
      this.renameInto(this.full(from), this.full(to));
    } catch (err) {
      if (isNotFound(err)) throw new PathNotFoundError(from);
      throw err;
    }
  }

  /**
   * Renames (a metadata operation, synchronous like the small files'). Most renames land in a folder
   * that exists: the target's folders are made only when the rename says they are missing.
   */
  private renameInto(source: string, target: string): void {
    try {
      fs.renameSync(source, target);
    } catch (err) {
      if (!isNotFound(err)) throw err;
      // Missing: the source (the caller's error) or the target's folder (made, then tried again).
      if (!fs.existsSync(source)) throw err;
      fs.mkdirSync(dirname(target), { recursive: true });
      fs.renameSync(source, target);
    }
  }

  async delete(path: string): Promise<boolean> {
    const full = this.full(path);
    let info: fs.Stats;
    try {
      info = fs.lstatSync(full);
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
    // A file goes in one step (unlink is atomic); a folder with files is renamed away first, so that readers
    // see it whole or not at all, then removed at leisure.
    if (!info.isDirectory()) {
      try {
        fs.unlinkSync(full);
        return true;
      } catch (err) {
        if (isNotFound(err)) return false;
        throw err;
      }
    }
    // An empty folder (an upload's, once its data moved to the blob store) goes in one step too.
    try {
      fs.rmdirSync(full);
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      if ((err as NodeJS.ErrnoException).code !== 'ENOTEMPTY' && (err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const temp = await this.tempPath();
    try {
      this.renameInto(full, temp);
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
    await fsp.rm(temp, { recursive: true, force: true });
    return true;
  }
}
