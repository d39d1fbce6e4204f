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
import { readFiles, readIfPresent } from './filesystem-reads.ts';
import { FilesystemWriter, writePath, type DirectIOSetting, type WritePathChooser } from './filesystem-writer.ts';

const TEMP_DIR = '_tmp';
const fsyncFd = promisify(fs.fsync);
const openFd = promisify(fs.open);
const SLASH = 0x2f;
/** Temp names: unique per process by a random prefix (another process may share the folder), then a counter. */
const TEMP_PREFIX = `${Date.now().toString(36)}-${randomBytes(6).toString('hex')}`;
let tempCounter = 0;
/**
 * Spare files: small files this process deleted or replaced, kept (renamed into the temp folder) to be
 * written again as the temp file of a later `putContent` instead of being freed. Freeing an inode is what
 * makes later file creation slow on ext4 without a journal (the usual cloud VM root disk): every allocation
 * skips each inode freed in the last seconds to minutes, one inode table lookup each, so a push that frees
 * ten and makes forty files paid more for those skips than for everything else it did. A spare is used
 * only after SPARE_MIN_AGE_MS, so a reader in another process that opened the old file has long read its
 * few bytes; one whose inode gained another name meanwhile (nlink above 1) is never written.
 */
const SPARE_LIMIT = 4096;
const SPARE_MAX_BYTES = 64 * 1024;
/**
 * Long beside a read of a few kilobytes, short enough that the spares a burst of writes makes (two per tag
 * PUT, 400 a second) are written again before the limit is reached and the rest freed after all.
 */
const SPARE_MIN_AGE_MS = 500;
/** Of the spares old enough, the oldest this many are looked at for one that needs no cut. */
const SPARE_CHOICE = 8;
/** Temp files left by processes that ended (spares, crashed writes) are removed at start once this old. */
const TEMP_STALE_MS = 10 * 60 * 1000;
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

  private readonly spareMinAgeMs: number;
  private readonly tempStaleMs: number;
  /** Large blobs written with O_DIRECT (BERTH_DIRECT_IO) instead of through the page cache, or as measured (`auto`). */
  private readonly directIO: DirectIOSetting;
  private readonly writePath: WritePathChooser;
  /** The root as join begins every path with. */
  private readonly prefix: string;

  constructor(
    readonly root: string,
    /**
     * How long a freed small file waits before it is written again, and when a temp file counts as left
     * behind (tests shorten them); whether large blobs go to the device directly, and what decides it
     * under `auto` (the process's one chooser; tests give their own).
     */
    options: { spareMinAgeMs?: number; tempStaleMs?: number; directIO?: DirectIOSetting; writePath?: WritePathChooser } = {},
  ) {
    this.spareMinAgeMs = options.spareMinAgeMs ?? SPARE_MIN_AGE_MS;
    this.tempStaleMs = options.tempStaleMs ?? TEMP_STALE_MS;
    this.directIO = options.directIO ?? false;
    this.writePath = options.writePath ?? writePath;
    const normalised = join(root, '.');
    this.prefix = normalised === '/' ? '' : normalised;
  }

  private full(path: string): string {
    // A path that join would leave as it is (every path through the checked wrapper) is appended to the
    // root: 100,000 joins cost a start-up without a search snapshot 0.1 s.
    if (path.charCodeAt(0) === SLASH && !path.includes('//') && !path.includes('/.')) return this.prefix + path;
    return join(this.root, path);
  }

  /** The temp folder is made once per driver (and again if something removed it). */
  private tempReady?: Promise<unknown>;

  private async tempPath(): Promise<string> {
    await (this.tempReady ??= fsp.mkdir(join(this.root, TEMP_DIR), { recursive: true }).then(() => this.sweepTemp()));
    return this.tempName();
  }

  /** A new name in the temp folder, for a temp file or a spare. */
  private tempName(): string {
    return join(this.root, TEMP_DIR, `${TEMP_PREFIX}-${++tempCounter}`);
  }

  /** Oldest first; each is a name in the temp folder this process gave to a freed small file, and its size. */
  private readonly spares: Array<{ path: string; at: number; size: number }> = [];

  /**
   * A spare old enough to write again, opened for writing from its start, with the size it had (cut to the
   * new content's length after the write: truncating to zero would free its block, and ext4 then flushes
   * the file on close); undefined when none is. Of the oldest few, one no longer than `length` is taken
   * first: the write then covers its old bytes, and no cut is needed (on our disk a cut took 130 us, as
   * long as the rest of the write).
   */
  private openSpare(length: number): { path: string; fd: number; size: number } | undefined {
    const cutoff = Date.now() - this.spareMinAgeMs;
    while (this.spares.length > 0 && this.spares[0]!.at <= cutoff) {
      let index = 0;
      for (let i = 0; i < SPARE_CHOICE && i < this.spares.length && this.spares[i]!.at <= cutoff; i++) {
        if (this.spares[i]!.size <= length) {
          index = i;
          break;
        }
      }
      const { path } = this.spares.splice(index, 1)[0]!;
      let fd: number;
      try {
        fd = fs.openSync(path, fsConstants.O_WRONLY);
      } catch {
        continue;
      }
      // Another name for the same inode (a replaced file two writers kept at once): never written, or
      // both names would end up as one file. Dropping this name frees nothing the other still holds.
      const { nlink, size } = fs.fstatSync(fd);
      if (nlink === 1) return { path, fd, size };
      fs.closeSync(fd);
      fs.rmSync(path, { force: true });
    }
    return undefined;
  }

  /** The file every empty marker this process writes is another name of (see linkEmpty). */
  private emptySource?: string;

  /**
   * Writes an empty marker (a tag's marker, a tag's place in the newest-first order, a blob's holder) as
   * one more name of a shared empty file: link and rename, no new inode. Making a file is what slows on
   * ext4 without a journal while inodes freed in the last minutes (up to six) are near: each new inode
   * skips past them one by one, and after 10,000 files were removed a file took 0.5-1 ms to make where a
   * link took 20 us. An empty file is never written again (a name of an inode with other names is never
   * a spare), so sharing it changes no reader's view. False when it cannot be done (the caller writes it).
   */
  private async linkEmpty(target: string): Promise<boolean> {
    const temp = await this.tempPath();
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        this.emptySource ??= this.makeEmptySource();
        fs.linkSync(this.emptySource, temp);
      } catch (err) {
        // Too many names for one inode (EMLINK: 65,000 on ext4), or the source was removed: a new source.
        this.emptySource = undefined;
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EMLINK' || code === 'ENOENT') continue;
        return false;
      }
      await this.placeTemp(temp, target);
      return true;
    }
    return false;
  }

  private makeEmptySource(): string {
    const source = this.tempName();
    fs.closeSync(fs.openSync(source, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL));
    return source;
  }

  /** Gives a small file this process frees a name in the temp folder instead (false: freed as usual). */
  private keepAsSpare(full: string, size: number, nlink: number): boolean {
    // A file with other names (an empty marker) would be freed by none of them.
    if (nlink > 1) return false;
    if (this.spares.length >= SPARE_LIMIT || size > SPARE_MAX_BYTES || this.tempReady === undefined) return false;
    const spare = this.tempName();
    try {
      fs.renameSync(full, spare);
    } catch {
      return false;
    }
    this.spares.push({ path: spare, at: Date.now(), size });
    return true;
  }

  /**
   * A second name (in the temp folder) for the small file `target` that a write is about to replace, so
   * the rename over it leaves the old inode as a spare; undefined when there is no such file.
   */
  private linkReplaced(target: string): { path: string; size: number } | undefined {
    if (this.spares.length >= SPARE_LIMIT) return undefined;
    // Looked at first: most writes make a new file, and a failed link would cost a thrown error each.
    const old = fs.lstatSync(target, { throwIfNoEntry: false });
    if (!old?.isFile() || old.size > SPARE_MAX_BYTES || old.nlink > 1) return undefined;
    const spare = this.tempName();
    try {
      fs.linkSync(target, spare);
      return { path: spare, size: old.size };
    } catch {
      return undefined;
    }
  }

  /**
   * Removes temp files (spares and writes of ended processes) untouched for tempStaleMs, in the background
   * (the first write does not wait for it); best effort.
   */
  private sweepTemp(): void {
    const dir = join(this.root, TEMP_DIR);
    const before = Date.now() - this.tempStaleMs;
    const sweep = async () => {
      for (const name of await fsp.readdir(dir)) {
        if (name.startsWith(TEMP_PREFIX)) continue;
        const path = join(dir, name);
        const info = await fsp.lstat(path).catch(() => undefined);
        if (info && info.mtimeMs < before && info.ctimeMs < before) await fsp.rm(path, { recursive: true, force: true });
      }
    };
    sweep().catch(() => {});
  }

  /**
   * Small files (links, metadata, manifests) are read and written with synchronous system calls: on a
   * local disk each takes microseconds, far less than a trip through libuv's four-thread pool, which a
   * push would otherwise cross some fifty times. The steps that can wait stay asynchronous: the flush to
   * disk, and making a new inode or folder (a new file's open, a rename's missing folder), which on ext4
   * scans past recently freed inodes and took 0.5-5 ms each while repositories were being created (a CPU
   * profile of 2,000 new repositories found the event loop blocked 17 s in those two calls alone). Blobs
   * are streamed (reader, copyTo, writer) and never read this way.
   */
  async getContent(path: string): Promise<Buffer | undefined> {
    return readIfPresent(this.full(path));
  }

  async getFolderContents(path: string, each: (name: string, content: Buffer) => void): Promise<void> {
    const folder = this.full(path);
    let names: string[];
    try {
      names = await fsp.readdir(folder);
    } catch (err) {
      if (isNotFound(err)) return;
      throw err;
    }
    await readFiles(`${folder}/`, names, each);
  }

  async putContent(path: string, content: Buffer | string, options?: PutOptions): Promise<void> {
    const target = this.full(path);
    if (content.length === 0 && options?.durable === false && (await this.linkEmpty(target))) return;
    let temp: string;
    let fd: number;
    let oldSize = 0;
    const length = typeof content === 'string' ? Buffer.byteLength(content) : content.length;
    const spare = this.openSpare(length);
    if (spare) {
      ({ path: temp, fd, size: oldSize } = spare);
    } else {
      temp = await this.tempPath();
      try {
        // A new name: no O_TRUNC, which on ext4 marks the file to be flushed on close (the guard for programs
        // that replace a file by truncating it), an extra write per file that the rename does not need.
        fd = await openFd(temp, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL);
      } catch (err) {
        // The temp folder was removed meanwhile (by hand, by a test): made again.
        if (!isNotFound(err)) throw err;
        this.tempReady = undefined;
        return this.putContent(path, content, options);
      }
    }
    try {
      fs.writeFileSync(fd, content);
      if (oldSize > length) fs.ftruncateSync(fd, length);
      if (options?.durable !== false) await fsyncFd(fd);
    } finally {
      fs.closeSync(fd);
    }
    const replaced = this.linkReplaced(target);
    try {
      await this.placeTemp(temp, target);
    } catch (err) {
      if (replaced) fs.rmSync(replaced.path, { force: true });
      throw err;
    }
    if (replaced) this.spares.push({ path: replaced.path, at: Date.now(), size: replaced.size });
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
    return new FilesystemWriter(handle, full, size, this.directIO, this.writePath);
  }

  async stat(path: string): Promise<FileInfo | undefined> {
    try {
      // Missing is an answer, not an error: a thrown one costs more than the system call.
      const st = fs.statSync(this.full(path), { throwIfNoEntry: false });
      return st && { path, size: st.size, modifiedAt: st.mtime, isDirectory: st.isDirectory() };
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
      await this.renameInto(this.full(from), this.full(to));
    } catch (err) {
      if (isNotFound(err)) throw new PathNotFoundError(from);
      throw err;
    }
  }

  /**
   * Renames a written temp file into place; where it cannot go (a folder in the way, EISDIR, or a file
   * where a folder should be), the temp file is removed: nothing was replaced, nothing is kept.
   */
  private async placeTemp(temp: string, target: string): Promise<void> {
    try {
      await this.renameInto(temp, target);
    } catch (err) {
      fs.rmSync(temp, { force: true });
      throw err;
    }
  }

  /**
   * Renames (a metadata operation, synchronous like the small files'). Most renames land in a folder
   * that exists: the target's folders are made only when the rename says they are missing, in the thread
   * pool, since a new folder is a new inode (see getContent).
   */
  private async renameInto(source: string, target: string): Promise<void> {
    try {
      fs.renameSync(source, target);
    } catch (err) {
      if (!isNotFound(err)) throw err;
      // Missing: the source (the caller's error) or the target's folder (made, then tried again).
      if (!fs.existsSync(source)) throw err;
      await fsp.mkdir(dirname(target), { recursive: true });
      fs.renameSync(source, target);
    }
  }

  async touch(path: string): Promise<boolean> {
    const now = new Date();
    try {
      fs.utimesSync(this.full(path), now, now);
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
  }

  async delete(path: string): Promise<boolean> {
    const full = this.full(path);
    let info: fs.Stats | undefined;
    try {
      info = fs.lstatSync(full, { throwIfNoEntry: false });
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
    if (!info) return false;
    // A file goes in one step (unlink is atomic); a folder with files is renamed away first, so that readers
    // see it whole or not at all, then removed at leisure.
    if (!info.isDirectory()) {
      if (info.isFile() && this.keepAsSpare(full, info.size, info.nlink)) return true;
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
      await this.renameInto(full, temp);
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
    await fsp.rm(temp, { recursive: true, force: true });
    return true;
  }
}
