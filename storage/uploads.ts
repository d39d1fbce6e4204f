// BlobUpload sessions: state lives in storage (the session's entry and its data file), so a session
// survives a restart and can be continued by another process. The running sha256 is kept in memory as a
// cache; a process that does not have it rebuilds it by reading back what is stored.
// The push rules live here, so that every caller (the /v2 routes, a mirror, replication, the CLI) follows
// them by construction: a chunk, a whole blob and a mount are checked against the namespace's quota before
// bytes are stored, and a blob is admitted (quota checked again, then linked under the blob's lock, so a
// garbage collection cannot take it in between) only through `complete`, `monolithic` or `mount`.
import { createHash, randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { BlobStore } from './blobs.ts';
import { PathNotFoundError, UNFLUSHED, type ByteRange, type StorageDriver } from './driver/index.ts';
import { StorageError } from './errors.ts';
import { RunningDigest } from './hasher.ts';
import { layout } from './layout.ts';
import { LocalLock, type Lock } from './coordination/index.ts';
import type { Quotas } from './quotas.ts';
import { isValidName, type Algorithm, type Digest } from './reference.ts';

export interface BlobUpload {
  readonly id: string;
  readonly name: string;
  /** Bytes received so far: the next chunk must start here. */
  readonly offset: number;
  readonly startedAt: Date;
  /** Who opened the session (undefined: anyone with push rights, as in open mode); only they may use it. */
  readonly owner?: string;
}

const MAX_RUNNING_DIGESTS = 10_000;

const UPLOAD_ID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

export function isValidUploadId(id: string): boolean {
  return UPLOAD_ID_RE.test(id);
}

/** /uploads/<id>: the repository a session was opened in, when, and by whom. */
interface OpenUpload {
  name: string;
  startedAt: string;
  owner?: string;
}

interface HashState {
  offset: number;
  digest: RunningDigest;
}

export interface UploadObserver {
  bytesReceived(n: number): void;
  /** Each piece of a chunk as it arrives, before it is hashed or stored (the server tunes its heap by them). */
  pieceArrived?(bytes: number): void;
}

/** Where a chunk begins (when the client said) and how long it is (when known). */
export interface ChunkBounds {
  start?: number;
  length?: number;
}

/**
 * Where a mount may take a blob from: `from`, the repository the client named, if any (else any
 * repository holding the blob), and whether the caller may read a repository (an access decision made
 * above storage).
 */
export interface MountSource {
  from?: string;
  mayRead(name: string): Promise<boolean>;
}

export class UploadStore {
  private readonly hashes = new Map<string, HashState>();

  constructor(
    private readonly driver: StorageDriver,
    private readonly blobs: BlobStore,
    private readonly quotas: Quotas,
    private readonly lock: Lock = new LocalLock(),
    private readonly observer?: UploadObserver,
  ) {}

  async create(name: string, owner?: string): Promise<BlobUpload> {
    const id = randomUUID(); // 122 random bits: unguessable
    const startedAt = new Date();
    // A session's files are not flushed to disk: a session lost to a power loss is started again by
    // its client; only the blob it completes must be durable (and is, before it is linked).
    // The index entry says where the session lives and when it began: one file, read by get and expiry.
    const entry: OpenUpload = { name, startedAt: startedAt.toISOString(), ...(owner === undefined ? {} : { owner }) };
    await this.driver.putContent(layout.openUpload(id), JSON.stringify(entry), UNFLUSHED);
    const writer = await this.driver.writer(layout.uploadData(name, id), false);
    await writer.close();
    return { id, name, offset: 0, startedAt, owner };
  }

  async get(name: string, id: string): Promise<BlobUpload | undefined> {
    if (!isValidUploadId(id)) return undefined;
    const entry = await this.openEntry(id);
    // A session belongs to the repository it was opened in: under another name it does not exist.
    if (!entry || entry.name !== name) return undefined;
    const started = entry.startedAt ?? (await this.driver.getContent(layout.uploadStartedAt(name, id)))?.toString();
    if (!started) return undefined;
    let data = await this.driver.stat(layout.uploadData(name, id));
    if (!data || data.isDirectory) {
      data = await this.driver.stat(layout.uploadDataInFolder(name, id));
      if (!data) return undefined;
      this.inFolder.add(sessionKey(name, id));
    }
    return { id, name, offset: data.size, startedAt: new Date(started), owner: entry.owner };
  }

  /**
   * Sessions opened by an older version that this process has met (get), whose bytes are in a folder of
   * their own; bounded by the sessions open when the new version started.
   */
  private readonly inFolder = new Set<string>();

  private dataPath(name: string, id: string): string {
    return this.inFolder.has(sessionKey(name, id)) ? layout.uploadDataInFolder(name, id) : layout.uploadData(name, id);
  }

  /** Removes a session's bytes (its file, or an older version's folder: one path names both). */
  private async removeData(name: string, id: string): Promise<void> {
    await this.driver.delete(layout.uploadData(name, id));
    this.inFolder.delete(sessionKey(name, id));
  }

  /** The index entry of a session: JSON; a session opened by an older version holds its name alone. */
  private async openEntry(id: string): Promise<{ name: string; startedAt?: string; owner?: string } | undefined> {
    const raw = (await this.driver.getContent(layout.openUpload(id)))?.toString();
    if (raw === undefined) return undefined;
    if (!raw.startsWith('{')) return { name: raw };
    try {
      const entry = JSON.parse(raw) as Partial<OpenUpload>;
      if (typeof entry.name !== 'string' || typeof entry.startedAt !== 'string') return undefined;
      return { name: entry.name, startedAt: entry.startedAt, owner: typeof entry.owner === 'string' ? entry.owner : undefined };
    } catch {
      return undefined;
    }
  }

  /**
   * The session, for its owner only: to anyone else (another user, a robot, the anonymous caller) it does
   * not exist, whatever rights they have on the repository, so nobody continues, reads or cancels a push
   * that is not theirs.
   */
  async require(name: string, id: string, owner: string | undefined): Promise<BlobUpload> {
    const found = await this.get(name, id);
    const upload = found && (found.owner === undefined || found.owner === owner) ? found : undefined;
    if (!upload) throw new StorageError({ kind: 'UploadUnknown', id: id.slice(0, 100) }, 'no such upload session');
    return upload;
  }

  /**
   * Appends one chunk. `start`, when the client said where the chunk begins, must equal the current
   * offset; `length`, when known, must equal the bytes that arrive, and a chunk whose length would take
   * the namespace past its quota is refused before its bytes are read.
   */
  async append(upload: BlobUpload, source: Readable, chunk: ChunkBounds = {}): Promise<BlobUpload> {
    if (chunk.length !== undefined) await this.quotas.check(upload.name, upload.offset + chunk.length);
    return this.appendChecked(upload, source, chunk);
  }

  private appendChecked(upload: BlobUpload, source: Readable, chunk: ChunkBounds): Promise<BlobUpload> {
    return this.lock.run(this.key(upload), () => this.appendLocked(upload, source, chunk));
  }

  /**
   * A whole blob in one request (the monolithic upload): checked against the quota from its announced
   * length, stored in a session of its own and completed; the session does not outlive a failure.
   */
  async monolithic(
    name: string,
    source: Readable,
    digest: Digest,
    /** `opened`: told the session once it exists, before any byte is stored (to follow it with readReceived). */
    options: { length?: number; owner?: string; opened?: (upload: BlobUpload) => void } = {},
  ): Promise<{ size: number }> {
    await this.quotas.check(name, options.length ?? 0, digest);
    const upload = await this.create(name, options.owner);
    options.opened?.(upload);
    try {
      return await this.complete(await this.appendChecked(upload, source, { length: options.length }), digest);
    } catch (err) {
      await this.cancel(upload).catch(() => {});
      throw err;
    }
  }

  private async appendLocked(upload: BlobUpload, source: Readable, { start, length }: ChunkBounds): Promise<BlobUpload> {
    const key = this.key(upload);
    const dataPath = this.dataPath(upload.name, upload.id);
    const writer = await this.driver.writer(dataPath, true);
    try {
      const offset = writer.size;
      if (start !== undefined && start !== offset) {
        throw rangeError({ ...upload, offset }, `chunk starts at ${start} but the upload is at ${offset}`);
      }
      // The running hash goes on only where this process saw every byte so far; elsewhere (after a
      // restart, on another replica) the digest is computed from the stored bytes at completion.
      const cached = this.hashes.get(key);
      const state = cached?.offset === offset ? cached : offset === 0 ? { offset, digest: new RunningDigest() } : undefined;
      if (cached && cached !== state) this.forget(key);
      this.hashes.delete(key); // re-inserted only if the chunk lands whole
      let received = 0;
      const observer = this.observer;
      async function* hashed(): AsyncGenerator<Buffer> {
        for await (const chunk of source as AsyncIterable<Buffer>) {
          received += chunk.length;
          observer?.pieceArrived?.(chunk.length);
          if (length !== undefined && received > length) {
            throw new StorageError({ kind: 'SizeInvalid', announced: length, received }, `chunk is longer than the ${length} bytes announced`);
          }
          if (state) await state.digest.update(chunk);
          yield chunk;
        }
        if (length !== undefined && received !== length) {
          throw new StorageError({ kind: 'SizeInvalid', announced: length, received }, `chunk has ${received} bytes, ${length} were announced`);
        }
      }
      try {
        await writer.write(hashed());
      } catch (err) {
        state?.digest.free();
        throw err;
      } finally {
        // Counted once per chunk request: a metric update per network read kept buffers alive long enough
        // to cost full garbage collections on large pushes.
        this.observer?.bytesReceived(received);
      }
      if (state) {
        state.offset = writer.size;
        this.remember(key, state);
      }
      return { ...upload, offset: writer.size };
    } finally {
      await writer.close();
    }
  }

  /**
   * Finishes the upload. Its exact size is known now: it is checked once more against the quota, and the
   * blob linked before another admission into the namespace is checked. A session refused before it is
   * admitted (by the quota, or with the quota's lock out of reach) is cancelled: its bytes would not fit.
   * Then as `completeAdmitted`.
   */
  async complete(upload: BlobUpload, digest: Digest): Promise<{ size: number }> {
    let admitted = false;
    try {
      return await this.quotas.admit(upload.name, upload.offset, digest, () => {
        admitted = true;
        return this.completeAdmitted(upload, digest);
      });
    } catch (err) {
      if (!admitted) await this.cancel(upload);
      throw err;
    }
  }

  /**
   * Links a blob that `source` holds into `name` without its bytes being sent again (a cross-repository
   * mount): true when it is linked, false when no readable source holds it (the caller then opens a
   * session instead). A source the caller may not read counts as one without the blob, so nothing tells
   * a private repository from a missing one.
   */
  async mount(name: string, digest: Digest, source: MountSource): Promise<boolean> {
    const { from } = source;
    const sizeAtSource = () => (from !== undefined ? this.blobs.sizeIn(from, digest) : this.blobs.size(digest));
    const readable = from !== undefined ? isValidName(from) && (await source.mayRead(from)) : await this.anyReadable(digest, source);
    const size = readable ? await sizeAtSource() : undefined;
    if (size === undefined) return false;
    return this.quotas.admit(name, size, digest, () =>
      // Checked again and linked under the blob's lock, so a garbage collection cannot delete it in between.
      this.blobs.guarded(digest, async () => {
        if ((await sizeAtSource()) === undefined) return false;
        await this.blobs.link(name, digest);
        return true;
      }),
    );
  }

  /**
   * Links a blob this storage holds (under any repository) into `name`, for a caller that may read every
   * copy it holds (a mirror, an importer: the blob is known by its digest); false when it is not held.
   */
  linkStored(name: string, digest: Digest): Promise<boolean> {
    return this.mount(name, digest, { mayRead: async () => true });
  }

  private async anyReadable(digest: Digest, source: MountSource): Promise<boolean> {
    for (const holder of await this.blobs.holders(digest)) if (await source.mayRead(holder)) return true;
    return false;
  }

  /**
   * The admitted upload: checks the digest of everything received, makes it durable and moves it into
   * the blob store in one step, links it to the repository and removes the session.
   */
  private completeAdmitted(upload: BlobUpload, digest: Digest): Promise<{ size: number }> {
    return this.lock.run(this.key(upload), async () => {
      const key = this.key(upload);
      const dataPath = this.dataPath(upload.name, upload.id);
      const writer = await this.driver.writer(dataPath, true);
      let size: number;
      let committed = true;
      try {
        size = writer.size;
        const cached = this.hashes.get(key);
        if (digest.algorithm === 'sha256' && cached?.offset === size) {
          verify(digest, await cached.digest.hex());
          // Durable before it becomes visible; a blob that is stored already needs none of these bytes.
          committed = (await this.blobs.size(digest)) === undefined;
          if (committed) await writer.commit();
        } else {
          // No running hash here: make the data whole and readable first (on S3 that completes the
          // multipart upload), then hash what is stored.
          await writer.commit();
          verify(digest, await this.hashStored(dataPath, size, digest.algorithm));
        }
      } finally {
        await writer.close();
      }
      await this.blobs.guarded(digest, async () => {
        // The stored blob these bytes were not needed for may have been collected since.
        if (!committed && (await this.blobs.size(digest)) === undefined) await this.commitData(dataPath);
        await this.blobs.commit(dataPath, digest);
        await this.blobs.link(upload.name, digest);
      });
      await this.removeData(upload.name, upload.id);
      await this.driver.delete(layout.openUpload(upload.id));
      this.forget(key);
      return { size };
    });
  }

  cancel(upload: BlobUpload): Promise<void> {
    return this.lock.run(this.key(upload), async () => {
      this.forget(this.key(upload));
      await this.removeData(upload.name, upload.id);
      await this.driver.delete(layout.openUpload(upload.id));
    });
  }

  /** Whether a session's bytes can be read while it still receives them (readReceived), by any process sharing the storage. */
  get readableWhileReceiving(): boolean {
    return this.driver.readableBeforeCommit === true;
  }

  /**
   * Bytes `range` of what session `id` of `name` has received so far, for a reader that follows a session
   * another process writes (the bytes are unverified until it completes: the reader must hold back what a
   * failed digest would make wrong). Undefined when the session is gone (completed or cancelled), when the
   * range is not received yet, or where the storage reads nothing before completion (S3).
   */
  async readReceived(name: string, id: string, range: ByteRange): Promise<Readable | undefined> {
    if (!this.readableWhileReceiving || !isValidUploadId(id) || !isValidName(name)) return undefined;
    const path = this.dataPath(name, id);
    const received = (await this.driver.stat(path))?.size ?? 0;
    if (range.end >= received) return undefined;
    try {
      return await this.driver.reader(path, range);
    } catch (err) {
      if (err instanceof PathNotFoundError) return undefined;
      throw err;
    }
  }

  /**
   * Removes the sessions started before `startedBefore`, with their data (on S3 that aborts the
   * multipart upload). Returns how many were removed.
   */
  async purgeExpired(startedBefore: Date): Promise<number> {
    let removed = 0;
    for (const entry of await this.driver.list(layout.openUploadsDir)) {
      const id = entry.slice(entry.lastIndexOf('/') + 1);
      const name = isValidUploadId(id) ? (await this.openEntry(id))?.name : undefined;
      if (!name || !isValidName(name)) continue;
      const upload = await this.get(name, id);
      if (upload && upload.startedAt >= startedBefore) continue;
      // A session that is gone already (finished between the listing and now) only loses its index entry.
      await this.lock.run(sessionKey(name, id), async () => {
        this.forget(sessionKey(name, id));
        await this.removeData(name, id);
        await this.driver.delete(entry);
      });
      if (upload) removed++;
    }
    return removed;
  }

  private async commitData(dataPath: string): Promise<void> {
    const writer = await this.driver.writer(dataPath, true);
    try {
      await writer.commit();
    } finally {
      await writer.close();
    }
  }

  /** Keeps a running digest; the oldest are dropped past a bound (abandoned sessions hash again at completion). */
  private remember(key: string, state: HashState): void {
    this.hashes.set(key, state);
    if (this.hashes.size > MAX_RUNNING_DIGESTS) this.forget(this.hashes.keys().next().value!);
  }

  private forget(key: string): void {
    this.hashes.get(key)?.digest.free();
    this.hashes.delete(key);
  }

  private key(upload: BlobUpload): string {
    return sessionKey(upload.name, upload.id);
  }

  /** The digest of the bytes already stored (after a restart, on another process, or for sha512). */
  private async hashStored(dataPath: string, size: number, algorithm: Algorithm): Promise<string> {
    const hash = createHash(algorithm);
    if (size > 0) {
      const stream = await this.driver.reader(dataPath, { start: 0, end: size - 1 });
      for await (const chunk of stream) hash.update(chunk as Buffer);
    }
    return hash.digest('hex');
  }
}

/** A session's key for its lock, its running digest and the sessions in a folder of their own. */
function sessionKey(name: string, id: string): string {
  return `${name}@${id}`;
}

function verify(expected: Digest, actualHex: string): void {
  if (actualHex !== expected.hex) {
    throw new StorageError(
      { kind: 'DigestMismatch', expected: expected.value, actual: `${expected.algorithm}:${actualHex}` },
      'provided digest did not match uploaded content',
    );
  }
}

/** A chunk that does not continue the session where it stands (`reason` says how). */
function rangeError(upload: BlobUpload, reason: string): StorageError {
  const { id, name, offset } = upload;
  return new StorageError({ kind: 'RangeInvalid', upload: { id, name, offset }, reason }, `requested range not satisfiable: ${reason}`);
}
