// The OCI image layout (image-spec image-layout.md) as files: `oci-layout`, `index.json` and
// `blobs/<alg>/<hex>`, in a directory or a tar archive. Written as a stream (a blob's bytes flow from
// storage to the file or the archive and are hashed on the way); read from a directory, or from an
// archive unpacked entry by entry into a private temporary directory, keeping only the layout's own
// files under names checked here (no entry can write outside it).
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, open, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { Readable, Transform, Writable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { tryParseDigest, type Digest } from '../storage/index.ts';
import { TransferError } from './errors.ts';

export const REF_NAME = 'org.opencontainers.image.ref.name';
const LAYOUT_VERSION = '1.0.0';
/** index.json and oci-layout are read whole: bounded as a manifest is. */
export const MAX_INDEX_BYTES = 4 * 1024 * 1024;
/** A fixed time in the archive's headers: the same export gives the same archive. */
const EPOCH = new Date(0);

export interface LayoutDescriptor {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
}

export function blobPath(digest: Digest): string {
  return `blobs/${digest.algorithm}/${digest.hex}`;
}

/** Where a layout is written: a blob's bytes as they stream, then index.json once every blob is in. */
export interface LayoutSink {
  addBlob(digest: Digest, size: number, source: Readable): Promise<void>;
  /** Writes oci-layout and index.json and puts the layout in place. */
  finish(index: LayoutDescriptor[]): Promise<void>;
  /** Removes what was written. */
  abort(): Promise<void>;
}

/** A sink for `--to`: FILE.tar is an archive, anything else a directory (new, or empty). */
export function openSink(target: string): Promise<LayoutSink> {
  return target.endsWith('.tar') ? TarSink.create(target) : DirectorySink.create(target);
}

function indexJson(index: LayoutDescriptor[]): Buffer {
  return Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: index }));
}

const LAYOUT_FILE = Buffer.from(JSON.stringify({ imageLayoutVersion: LAYOUT_VERSION }));

/** Hashes what passes and fails at the end unless it was `size` bytes of `digest`: storage is checked too. */
function verifying(digest: Digest, size: number, what: string): Transform {
  const hash = createHash(digest.algorithm);
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      seen += chunk.length;
      hash.update(chunk);
      callback(null, chunk);
    },
    flush(callback: TransformCallback) {
      const hex = hash.digest('hex');
      if (seen !== size || hex !== digest.hex) callback(new TransferError(`${what} ${digest.value}: ${seen} bytes with digest ${digest.algorithm}:${hex}, expected ${size} bytes of ${digest.value}`));
      else callback();
    },
  });
}

class DirectorySink implements LayoutSink {
  private constructor(private readonly dir: string, private readonly created: boolean) {}

  static async create(dir: string): Promise<DirectorySink> {
    const entries = await readdir(dir).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw new TransferError(`${dir}: ${err.message}`);
    });
    if (entries && entries.length > 0) throw new TransferError(`${dir} is not empty: export into a new or empty directory`);
    await mkdir(dir, { recursive: true });
    return new DirectorySink(dir, entries === undefined);
  }

  async addBlob(digest: Digest, size: number, source: Readable): Promise<void> {
    const path = join(this.dir, blobPath(digest));
    await mkdir(dirname(path), { recursive: true });
    // Whole or absent: named only once every byte is in and verified.
    const partial = `${path}.partial`;
    await pipeline(source, verifying(digest, size, 'blob'), createWriteStream(partial));
    await rename(partial, path);
  }

  async finish(index: LayoutDescriptor[]): Promise<void> {
    await writeFile(join(this.dir, 'oci-layout'), LAYOUT_FILE);
    await writeFile(join(this.dir, 'index.json'), indexJson(index));
  }

  async abort(): Promise<void> {
    if (this.created) await rm(this.dir, { recursive: true, force: true });
    else for (const entry of await readdir(this.dir)) await rm(join(this.dir, entry), { recursive: true, force: true });
  }
}

class TarSink implements LayoutSink {
  private readonly pack = tar.pack();
  private readonly written: Promise<void>;
  private readonly directories = new Set<string>();

  private constructor(private readonly file: string, private readonly partial: string) {
    this.written = pipeline(this.pack, createWriteStream(partial, { flags: 'wx' }));
    this.written.catch(() => {}); // awaited by finish; abort removes the file
  }

  static async create(file: string): Promise<TarSink> {
    if (await stat(file).catch(() => undefined)) throw new TransferError(`${file} exists: export into a new file`);
    return new TarSink(file, join(dirname(file), `.${basename(file)}.${process.pid}.partial`));
  }

  private async entry(header: { name: string; type?: 'directory'; size?: number }, body?: Readable): Promise<void> {
    const full: Partial<tar.Header> & { name: string } = { mode: header.type === 'directory' ? 0o755 : 0o644, mtime: EPOCH, uid: 0, gid: 0, ...header };
    if (!body) {
      await new Promise<void>((resolve, reject) => this.pack.entry(full, (err) => (err ? reject(err) : resolve())));
      return;
    }
    await pipeline(body, this.pack.entry(full, () => {}));
  }

  async addBlob(digest: Digest, size: number, source: Readable): Promise<void> {
    for (const dir of ['blobs/', `blobs/${digest.algorithm}/`]) {
      if (this.directories.has(dir)) continue;
      this.directories.add(dir);
      await this.entry({ name: dir, type: 'directory' });
    }
    // A blob that does not hash to its digest fails the export (the archive is removed).
    await this.entry({ name: blobPath(digest), size }, source.pipe(verifying(digest, size, 'blob')));
  }

  async finish(index: LayoutDescriptor[]): Promise<void> {
    await this.entry({ name: 'oci-layout', size: LAYOUT_FILE.length }, Readable.from([LAYOUT_FILE]));
    const json = indexJson(index);
    await this.entry({ name: 'index.json', size: json.length }, Readable.from([json]));
    this.pack.finalize();
    await this.written;
    await rename(this.partial, this.file);
  }

  async abort(): Promise<void> {
    this.pack.destroy();
    await this.written.catch(() => {});
    await rm(this.partial, { force: true });
  }
}

/** A layout to read: its directory (an archive's unpacked copy), removed by close when it was unpacked. */
export interface LayoutSource {
  dir: string;
  close(): Promise<void>;
}

/** Opens a layout directory, or unpacks FILE.tar (a regular file) into a temporary directory. */
export async function openLayout(path: string): Promise<LayoutSource> {
  const info = await stat(path).catch(() => undefined);
  if (!info) throw new TransferError(`${path}: no such file or directory`);
  if (info.isDirectory()) return { dir: path, close: async () => {} };
  const dir = await mkdtemp(join(tmpdir(), 'berth-import-'));
  try {
    await unpack(path, dir);
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err instanceof TransferError ? err : new TransferError(`${path}: not a tar archive of an OCI image layout (${(err as Error).message})`);
  }
  return { dir, close: () => rm(dir, { recursive: true, force: true }) };
}

/** The path inside the layout an archive entry stands for, when it is one of the layout's files. */
function layoutFile(name: string): string | undefined {
  const clean = name.replace(/^(\.\/)+/, '');
  if (clean === 'oci-layout' || clean === 'index.json') return clean;
  const match = /^blobs\/([a-z0-9]+)\/([a-f0-9]+)$/.exec(clean);
  const digest = match && tryParseDigest(`${match[1]}:${match[2]}`);
  return digest ? blobPath(digest) : undefined;
}

async function unpack(file: string, dir: string): Promise<void> {
  const extract = tar.extract();
  const done = pipeline(createReadStream(file), extract);
  done.catch(() => {}); // the loop below sees the same failure
  for await (const entry of extract) {
    const path = entry.header.type === 'file' ? layoutFile(entry.header.name) : undefined;
    const small = path === 'oci-layout' || path === 'index.json';
    if (!path || (small && (entry.header.size ?? 0) > MAX_INDEX_BYTES)) {
      entry.resume();
      if (small) throw new TransferError(`${file}: ${path} is larger than ${MAX_INDEX_BYTES} bytes`);
      continue;
    }
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await pipeline(entry, createWriteStream(join(dir, path)));
  }
  await done;
}

export async function readLayoutIndex(dir: string): Promise<LayoutDescriptor[]> {
  const version = await readSmall(join(dir, 'oci-layout'), 'oci-layout');
  const declared = (parseJson(version, 'oci-layout') as { imageLayoutVersion?: unknown }).imageLayoutVersion;
  if (typeof declared !== 'string' || !declared.startsWith('1.')) throw new TransferError(`oci-layout: imageLayoutVersion ${JSON.stringify(declared)} is not 1.x`);
  const index = parseJson(await readSmall(join(dir, 'index.json'), 'index.json'), 'index.json') as { manifests?: unknown };
  if (!Array.isArray(index.manifests)) throw new TransferError('index.json has no manifests list');
  return index.manifests.map((d: unknown, i) => {
    const entry = d as Partial<LayoutDescriptor>;
    if (typeof entry?.mediaType !== 'string' || typeof entry.digest !== 'string' || !Number.isSafeInteger(entry.size) || entry.size! < 0) {
      throw new TransferError(`index.json: manifests[${i}] is not a descriptor (mediaType, digest, size)`);
    }
    const annotations = entry.annotations && typeof entry.annotations === 'object' ? entry.annotations : undefined;
    return { mediaType: entry.mediaType, digest: entry.digest, size: entry.size!, ...(annotations ? { annotations } : {}) };
  });
}

async function readSmall(path: string, what: string): Promise<Buffer> {
  const handle = await open(path, 'r').catch(() => {
    throw new TransferError(`${what} is missing: not an OCI image layout`);
  });
  try {
    if ((await handle.stat()).size > MAX_INDEX_BYTES) throw new TransferError(`${what} is larger than ${MAX_INDEX_BYTES} bytes`);
    return await handle.readFile();
  } finally {
    await handle.close();
  }
}

function parseJson(bytes: Buffer, what: string): unknown {
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new TransferError(`${what} is not JSON`);
  }
}

/** A blob of the layout, read whole (a manifest): its size and digest checked, at most `limit` bytes. */
export async function readLayoutBlob(dir: string, digest: Digest, size: number, limit: number): Promise<Buffer> {
  if (size > limit) throw new TransferError(`manifest ${digest.value} has ${size} bytes, more than the ${limit} accepted`);
  const path = join(dir, blobPath(digest));
  const info = await stat(path).catch(() => undefined);
  if (!info?.isFile()) throw new TransferError(`blob ${digest.value} is missing from the layout`);
  if (info.size !== size) throw new TransferError(`blob ${digest.value} has ${info.size} bytes, its descriptor says ${size}`);
  const bytes = await readFile(path);
  const hex = createHash(digest.algorithm).update(bytes).digest('hex');
  if (bytes.length !== size || hex !== digest.hex) throw new TransferError(`blob ${digest.value} does not match its digest (it hashes to ${digest.algorithm}:${hex})`);
  return bytes;
}

/** Checks a blob of the layout against its descriptor by hashing it as a stream. */
export async function verifyLayoutBlob(dir: string, digest: Digest, size: number): Promise<void> {
  const path = join(dir, blobPath(digest));
  const info = await stat(path).catch(() => undefined);
  if (!info?.isFile()) throw new TransferError(`blob ${digest.value} is missing from the layout`);
  if (info.size !== size) throw new TransferError(`blob ${digest.value} has ${info.size} bytes, its descriptor says ${size}`);
  const discard = new Writable({ write: (_chunk, _encoding, callback) => callback() });
  await pipeline(createReadStream(path), verifying(digest, size, 'blob'), discard).catch((err: Error) => {
    throw err instanceof TransferError ? err : new TransferError(`blob ${digest.value}: ${err.message}`);
  });
}

/** A blob's bytes from `offset` on, as a stream (what an import sends). */
export function layoutBlobStream(dir: string, digest: Digest, offset = 0): Readable {
  return createReadStream(join(dir, blobPath(digest)), { start: offset });
}
