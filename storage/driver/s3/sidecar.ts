// The writer state of a path being written, kept in S3 next to it (keys.ts names it): which multipart upload
// holds its parts, and its tail, the bytes not yet in a part. Kept in S3 itself so that the next chunk of an
// upload session can be handled by another process, or after a restart.
import type { Bucket, KeyRange } from './bucket.ts';
import { objectOfSidecar, type Keys } from './keys.ts';

/** A byte range of a stored object: where tail bytes live until they become part of a part. */
export interface Piece extends KeyRange {
  /** The whole object's size, so that a piece covering all of it can be copied server-side. */
  objectSize: number;
}

export interface PartRecord {
  n: number;
  etag: string;
  size: number;
}

/** What the sidecar object holds. */
export interface WriterState {
  version: 1;
  uploadId?: string;
  parts: PartRecord[];
  tail: Piece[];
  size: number;
  updatedAt: string;
  /** Which write stored this state (to settle a save whose answer was lost). */
  writeId?: string;
}

export function emptyState(): WriterState {
  return { version: 1, parts: [], tail: [], size: 0, updatedAt: new Date().toISOString() };
}

function parseState(body: Buffer, key: string): WriterState {
  const state = JSON.parse(body.toString('utf8')) as WriterState;
  if (state?.version !== 1 || !Array.isArray(state.parts) || !Array.isArray(state.tail) || typeof state.size !== 'number') {
    throw new Error(`unreadable writer state in ${key}`);
  }
  return state;
}

export class Sidecars {
  constructor(
    private readonly bucket: Bucket,
    private readonly keys: Keys,
  ) {}

  /** A path's writer state; undefined when the path is not being written. */
  async read(path: string): Promise<WriterState | undefined> {
    const key = this.keys.sidecar(path);
    const body = await this.bucket.bytes(key);
    return body && parseState(body, key);
  }

  /** Replaces a path's writer state (one PutObject: it is the old one or the new one). */
  async save(path: string, state: WriterState): Promise<void> {
    await this.bucket.put(this.keys.sidecar(path), Buffer.from(JSON.stringify(state)), 'application/json');
  }

  /** Aborts the multipart upload a sidecar names (so that no uploaded part is left behind). */
  async abortUpload(sidecar: string): Promise<void> {
    const body = await this.bucket.bytes(sidecar);
    if (!body) return;
    let state: WriterState;
    try {
      state = parseState(body, sidecar);
    } catch {
      return; // not ours to understand; the objects go anyway
    }
    const target = objectOfSidecar(sidecar);
    if (state.uploadId && target) await this.bucket.abortUpload(target, state.uploadId);
  }

  /** Aborts a path's multipart upload and removes its writer objects (but not the object itself). */
  async discard(path: string): Promise<void> {
    const hidden = await this.bucket.listKeys(this.keys.hidden(path));
    if (hidden.length === 0) return;
    const sidecar = this.keys.sidecar(path);
    if (hidden.includes(sidecar)) await this.abortUpload(sidecar);
    await this.bucket.deleteKeys(hidden);
  }
}
