// Unpacks an image's layers, in order, into a root filesystem: gzip, zstd or plain tar; OCI whiteouts
// (`.wh.<name>` deletes, `.wh..wh..opq` hides what lower layers put in a directory). Entry names resolve
// inside the root as containerd and docker resolve them: `/bin/sh` and `./bin/sh` are `bin/sh`, `/` and
// `./` the root itself. No entry may write outside the root: `..` past the root, paths through symlinks
// that lead out, hard links to outside and whiteouts that name no entry of their own directory (`.wh..`,
// `.wh...`) are refused (PathEscapeError) and the caller removes the half-built root. Each layer's
// uncompressed bytes are checked against the config's diff_id.
import { createHash } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  createReadStream,
  createWriteStream,
  lchownSync,
  linkSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  openSync,
  readdirSync,
  readlinkSync,
  readSync,
  rmSync,
  symlinkSync,
  type Stats,
} from 'node:fs';
import { join } from 'node:path';
import { PassThrough, Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { Decompress as ZstdDecompress } from 'fzstd';
import tar from 'tar-stream';
import { NodeMaker } from './device-nodes.ts';
import { digestAlgorithm } from './digest.ts';
import { ClientError, DigestMismatchError, PathEscapeError, UnpackLimitError } from './errors.ts';

const WHITEOUT = '.wh.';
const OPAQUE = '.wh..wh..opq';
/** Symlinks followed while resolving one path, as Linux's own limit. */
const MAX_SYMLINKS = 40;

function zstdStream(): Transform {
  const out: Transform = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      try {
        decoder.push(chunk);
        callback();
      } catch (err) {
        callback(new ClientError(`zstd: ${(err as Error).message}`));
      }
    },
    flush(callback) {
      try {
        decoder.push(new Uint8Array(0), true);
        callback();
      } catch (err) {
        callback(new ClientError(`zstd: ${(err as Error).message}`));
      }
    },
  });
  const decoder = new ZstdDecompress((data) => out.push(Buffer.from(data)));
  return out;
}

/** Picks the decompressor from the blob's first bytes: the media type of a layer is often wrong. */
function decompressorFor(path: string): Transform {
  const head = Buffer.alloc(4);
  const fd = openSync(path, 'r');
  try {
    readSync(fd, head, 0, 4, 0);
  } finally {
    closeSync(fd);
  }
  if (head[0] === 0x1f && head[1] === 0x8b) return createGunzip();
  if (head.readUInt32LE(0) === 0xfd2fb528) return zstdStream();
  return new PassThrough();
}

/**
 * The components of a tar entry name below the root. A leading `/` starts at the root, as it does in the
 * container; `.` and empty components go; `..` takes back the component before it (lexically, as Go's
 * filepath.Clean that docker applies) and is refused where nothing is left to take back: past the root.
 */
function entryComponents(name: string, what: string): string[] {
  // A PAX name may hold NUL, which no file system path can: a layer error, not a crash in fs.
  if (name.includes('\0')) throw new ClientError(`${what}: a NUL byte in ${JSON.stringify(name)}`);
  const components: string[] = [];
  for (const component of name.split('/')) {
    if (component === '' || component === '.') continue;
    if (component !== '..') components.push(component);
    else if (components.pop() === undefined) throw new PathEscapeError(`${what}: ${JSON.stringify(name)} climbs out with ".."`);
  }
  return components;
}

/**
 * The name a whiteout entry removes from its own directory (OPAQUE for an opaque one), or undefined when
 * the entry is no whiteout. A whiteout naming nothing, "." or ".." would remove the directory itself or
 * the one above it (from the root: the container's folder), and a whiteout with anything after it (a
 * slash, a folder below it, a `..` that leaves it) is no file, which no layer tool writes: all stop the
 * unpack. The name is read as written, before `..` is taken back.
 */
function whiteoutOf(name: string, what: string): string | undefined {
  const written = name.split('/').filter((c) => c !== '' && c !== '.');
  const at = written.findIndex((c) => c.startsWith(WHITEOUT));
  if (at === -1) return undefined;
  const base = written[at]!;
  if (at !== written.length - 1 || !name.endsWith(base)) {
    throw new PathEscapeError(`${what}: whiteout ${JSON.stringify(base)} has a slash after it`);
  }
  if (base === OPAQUE) return OPAQUE;
  const removed = base.slice(WHITEOUT.length);
  if (removed === '' || removed === '.' || removed === '..') {
    throw new PathEscapeError(`${what}: whiteout ${JSON.stringify(base)} names no entry of its directory`);
  }
  return removed;
}

function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/**
 * The host path of a directory inside the root, following symlinks as the container would see them
 * (an absolute target starts again at the root), and creating directories that are missing. A symlink
 * whose target climbs above the root is a way out: refused.
 */
export function resolveDirectory(root: string, components: string[], what: string): string {
  const resolved: string[] = [];
  const pending = [...components];
  let hops = 0;
  while (pending.length > 0) {
    const component = pending.shift()!;
    if (component === '' || component === '.') continue;
    if (component === '..') {
      if (resolved.length === 0) throw new PathEscapeError(`${what}: the path leads outside the root filesystem through a symlink`);
      resolved.pop();
      continue;
    }
    const host = join(root, ...resolved, component);
    const stat = lstatOrUndefined(host);
    if (!stat) {
      mkdirSync(host, { mode: 0o755 });
      resolved.push(component);
    } else if (stat.isSymbolicLink()) {
      if (++hops > MAX_SYMLINKS) throw new PathEscapeError(`${what}: too many levels of symlinks`);
      const target = readlinkSync(host);
      if (target.startsWith('/')) resolved.length = 0;
      pending.unshift(...target.split('/'));
    } else if (stat.isDirectory()) {
      resolved.push(component);
    } else {
      throw new ClientError(`${what}: ${[...resolved, component].join('/')} is not a directory`);
    }
  }
  return join(root, ...resolved);
}

/** Removes whatever is at `path` (a symlink itself, never what it points to). */
function removeEntry(path: string): void {
  if (lstatOrUndefined(path)) rmSync(path, { recursive: true, force: true });
}

/** An opaque directory: what lower layers put there goes, what this layer wrote stays. */
function clearOpaque(dir: string, written: Set<string>): void {
  for (const child of readdirSync(dir)) {
    const path = join(dir, child);
    if (!written.has(path)) rmSync(path, { recursive: true, force: true });
    else if (lstatSync(path).isDirectory()) clearOpaque(path, written);
  }
}

interface LayerState {
  root: string;
  what: string;
  written: Set<string>;
  nodes: NodeMaker;
}

const isRoot = process.getuid?.() === 0;

function applyMetadata(path: string, header: tar.Header, symlink: boolean): void {
  if (isRoot) {
    try {
      lchownSync(path, header.uid ?? 0, header.gid ?? 0);
    } catch {
      // ids the file system cannot hold: keep root's
    }
  }
  if (!symlink) chmodSync(path, (header.mode ?? 0o644) & 0o7777);
  const mtime = header.mtime ?? new Date(0);
  lutimesSync(path, mtime, mtime);
}

async function applyEntry(entry: Readable & { header: tar.Header }, state: LayerState): Promise<void> {
  const { header } = entry;
  const what = `${state.what}: ${header.name}`;
  const whiteout = whiteoutOf(header.name, what);
  const components = entryComponents(header.name, what);
  // The root itself (`/`, `./`): docker and containerd keep the root as it is, and so does this.
  if (components.length === 0) return;
  const base = components[components.length - 1]!;
  const dir = resolveDirectory(state.root, components.slice(0, -1), what);
  const dest = join(dir, base);

  if (whiteout === OPAQUE) {
    clearOpaque(dir, state.written);
    return;
  }
  if (whiteout !== undefined) {
    removeEntry(join(dir, whiteout));
    return;
  }
  state.written.add(dest);
  switch (header.type) {
    case 'directory': {
      const existing = lstatOrUndefined(dest);
      if (existing && !existing.isDirectory()) removeEntry(dest);
      if (!existing?.isDirectory()) mkdirSync(dest, { mode: 0o755 });
      applyMetadata(dest, header, false);
      return;
    }
    case 'file':
    case 'contiguous-file': {
      removeEntry(dest);
      // 'wx': a fresh file, never through a symlink that might have appeared in its place.
      await pipeline(entry, createWriteStream(dest, { flags: 'wx', mode: 0o600 }));
      applyMetadata(dest, header, false);
      return;
    }
    case 'symlink': {
      removeEntry(dest);
      symlinkSync(header.linkname ?? '', dest);
      applyMetadata(dest, header, true);
      return;
    }
    case 'link': {
      const targetComponents = entryComponents(header.linkname ?? '', `${what}: hard link target`);
      if (targetComponents.length === 0) throw new PathEscapeError(`${what}: hard link to the root`);
      const targetDir = resolveDirectory(state.root, targetComponents.slice(0, -1), `${what}: hard link target`);
      const target = join(targetDir, targetComponents[targetComponents.length - 1]!);
      const stat = lstatOrUndefined(target);
      if (!stat) throw new ClientError(`${what}: hard link to ${header.linkname}, which the layers do not hold`);
      if (stat.isDirectory()) throw new PathEscapeError(`${what}: hard link to a directory`);
      removeEntry(dest);
      linkSync(target, dest);
      return;
    }
    case 'character-device':
    case 'block-device':
    case 'fifo': {
      removeEntry(dest);
      if (state.nodes.make(dest, header.type, header.devmajor ?? 0, header.devminor ?? 0, what)) applyMetadata(dest, header, false);
      return;
    }
    default:
      // As docker and containerd: an entry type no layer tool writes (GNU sparse, volume labels) is an error.
      throw new ClientError(`${what}: unhandled tar entry type ${JSON.stringify(header.type)}`);
  }
}

/**
 * A layer whose bytes end inside the last entry's content, which the zeros added as padding completed:
 * Go's archive/tar refuses it (unexpected EOF), and so does this. tar-stream puts where an entry's content
 * starts in its header (byteOffset); without it nothing shows the zeros were padding, so that refuses too.
 */
function refuseTruncatedContent(last: tar.Header | undefined, received: number, what: string): void {
  if (last === undefined) return;
  const start = (last as tar.Header & { byteOffset?: number }).byteOffset;
  if (start === undefined || start + (last.size ?? 0) > received) {
    throw new ClientError(`${what}: the layer ends inside the content of ${JSON.stringify(last.name)}`);
  }
}

/** What one image may unpack to, over all its layers: a small compressed layer can expand without end. */
export interface UnpackLimits {
  /** Uncompressed tar bytes. */
  maxBytes: number;
  /** Tar entries: files, folders, links and whiteouts. */
  maxEntries: number;
}

/** What an image has unpacked so far; throws as soon as a limit is passed. */
class UnpackBudget {
  private bytes = 0;
  private entries = 0;

  constructor(private readonly limits: UnpackLimits) {}

  addBytes(count: number, what: string): void {
    this.bytes += count;
    if (this.bytes > this.limits.maxBytes) this.passed(`${this.limits.maxBytes} bytes (BERTH_UNPACK_MAX_BYTES)`, what);
  }

  addEntry(what: string): void {
    if (++this.entries > this.limits.maxEntries) this.passed(`${this.limits.maxEntries} entries (BERTH_UNPACK_MAX_ENTRIES)`, what);
  }

  private passed(limit: string, what: string): never {
    throw new UnpackLimitError(`${what}: the image unpacks to more than its limit of ${limit}; nothing of it was kept`);
  }
}

/** Applies one layer blob to `root`; checks its uncompressed digest against `diffId` when given. */
async function applyLayer(blobPath: string, root: string, diffId: string | undefined, what: string, budget: UnpackBudget, nodes: NodeMaker): Promise<void> {
  const algorithm = diffId ? digestAlgorithm(diffId, `${what}: diff_id`) : 'sha256';
  const hash = createHash(algorithm);
  const extract = tar.extract();
  // The first limit passed, kept so that it, not the broken streams it leaves, is what the caller hears.
  let stopped: UnpackLimitError | undefined;
  let received = 0;
  let padded = 0;
  let last: tar.Header | undefined;
  const feeding = pipeline(
    createReadStream(blobPath),
    decompressorFor(blobPath),
    new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        try {
          budget.addBytes(chunk.length, what);
        } catch (err) {
          stopped = err as UnpackLimitError;
          return callback(stopped);
        }
        hash.update(chunk);
        received += chunk.length;
        callback(null, chunk);
      },
      // umoci 0.4 (`umoci insert`) ends a layer right after the last file's content, without its padding
      // to a 512-byte block or the end-of-archive blocks. Go's archive/tar, which docker and containerd
      // read layers with, takes that as the end; tar-stream wants the padding, so zeros complete it here,
      // after the hash (the diff_id is of the bytes as sent). That they were padding, not content, is
      // checked after the last entry.
      flush(callback) {
        padded = (512 - (received % 512)) % 512;
        callback(null, Buffer.alloc(padded));
      },
    }),
    extract,
  );
  feeding.catch(() => {}); // reported through the loop below, or awaited after it
  const state: LayerState = { root, what, written: new Set(), nodes };
  try {
    for await (const entry of extract as AsyncIterable<Readable & { header: tar.Header }>) {
      budget.addEntry(what);
      last = entry.header;
      await applyEntry(entry, state);
      entry.resume();
    }
    await feeding;
    if (padded > 0) refuseTruncatedContent(last, received, what);
  } catch (err) {
    if (stopped) throw stopped;
    // A broken tar or compression stream is a layer error, told to the user as such, never a crash.
    throw err instanceof ClientError ? err : new ClientError(`${what}: ${(err as Error).message}`);
  }
  if (diffId) {
    const actual = `${algorithm}:${hash.digest('hex')}`;
    if (actual !== diffId) throw new DigestMismatchError(`${what}: uncompressed content has digest ${actual}, the config says ${diffId}`);
  }
}

/** What an unpack left out, for the caller to tell its user. */
export interface UnpackReport {
  /** Device nodes and FIFOs not made, because making them is not permitted here. */
  skippedNodes: number;
}

/**
 * Builds a root filesystem from layers (blob paths, lowest first), within the limits for the whole
 * image. On any failure the root is removed and the error rethrown: a container never starts from a
 * half-built root, and an image that passes a limit leaves nothing on disk.
 */
export async function unpackLayers(
  layers: Array<{ path: string; diffId?: string; digest: string }>,
  root: string,
  limits: UnpackLimits,
): Promise<UnpackReport> {
  // A diff_id the spec does not allow is refused before anything is written.
  for (const [i, layer] of layers.entries()) if (layer.diffId) digestAlgorithm(layer.diffId, `layer ${i + 1} (${layer.digest}): diff_id`);
  mkdirSync(root, { recursive: true, mode: 0o755 });
  const budget = new UnpackBudget(limits);
  const nodes = new NodeMaker();
  try {
    for (const [i, layer] of layers.entries()) {
      await applyLayer(layer.path, root, layer.diffId, `layer ${i + 1} (${layer.digest})`, budget, nodes);
    }
  } catch (err) {
    rmSync(root, { recursive: true, force: true });
    throw err;
  }
  return { skippedNodes: nodes.skipped };
}
