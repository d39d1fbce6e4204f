// The local image store: blobs by digest (blobs/<alg>/<hex>), shared by every image, so a layer pulled
// once is never fetched again; interrupted downloads kept aside (downloads/) to resume; and the images
// index (images.json) that says which reference points at which manifest, config and layers.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { ClientError, ImageNotFoundError } from './errors.ts';
import type { Platform } from './platform.ts';
import { parseDigest, verifyDigest } from './digest.ts';

export interface LayerDescriptor {
  mediaType: string;
  digest: string;
  size: number;
}

export interface ImageRecord {
  /** registry/repository */
  name: string;
  tag?: string;
  /** The digest the reference resolved to (the index's, for a multi-platform image), as docker shows it. */
  digest: string;
  /** The platform's own image manifest. */
  manifest: string;
  config: string;
  layers: LayerDescriptor[];
  platform: Platform;
  pulledAt: string;
}

/** What `berth ps` shows of a kept container (containers/<id>/container.json, beside its bundle). */
export interface ContainerRecord {
  id: string;
  /** The reference it was run from, and the image's config digest (its image ID). */
  image: string;
  imageId: string;
  command: string[];
  created: string;
  /** The berth process that runs it: while that lives and `finishedAt` is unset, the container runs. */
  runnerPid: number;
  exitCode?: number;
  finishedAt?: string;
}

const CONTAINER_ID = /^[a-f0-9]{12}$/;

function splitDigest(digest: string): [string, string] {
  const parsed = parseDigest(digest);
  if (!parsed) throw new ClientError(`not a digest this store keeps: ${digest}`);
  return [parsed.algorithm, parsed.hex];
}

export class LocalStore {
  constructor(readonly home: string) {
    for (const dir of ['blobs/sha256', 'blobs/sha512', 'downloads', 'containers']) mkdirSync(join(home, dir), { recursive: true });
  }

  blobPath(digest: string): string {
    const [alg, hex] = splitDigest(digest);
    return join(this.home, 'blobs', alg, hex);
  }

  /** Where the bytes of an unfinished download of `digest` wait to be resumed. */
  partialPath(digest: string): string {
    const [alg, hex] = splitDigest(digest);
    return join(this.home, 'downloads', `${alg}-${hex}`);
  }

  has(digest: string): boolean {
    return existsSync(this.blobPath(digest));
  }

  readBlob(digest: string): Buffer {
    return readFileSync(this.blobPath(digest));
  }

  /** Moves a downloaded, verified file into the store, durably (fsync, then rename). */
  async commitFile(path: string, digest: string): Promise<void> {
    const handle = await open(path, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
    renameSync(path, this.blobPath(digest));
  }

  /** Stores a small blob (a manifest or config) after checking its digest. */
  putBytes(digest: string, bytes: Buffer): void {
    verifyDigest(bytes, digest, digest);
    if (this.has(digest)) return;
    this.writeAtomically(this.blobPath(digest), bytes);
  }

  images(): ImageRecord[] {
    const path = join(this.home, 'images.json');
    if (!existsSync(path)) return [];
    return (JSON.parse(readFileSync(path, 'utf8')) as { images: ImageRecord[] }).images;
  }

  /** Records an image, replacing the record of the same name and tag (or digest, when pulled by digest). */
  saveImage(record: ImageRecord): void {
    const same = (r: ImageRecord) => r.name === record.name && (record.tag ? r.tag === record.tag : !r.tag && r.digest === record.digest);
    this.writeImages([...this.images().filter((r) => !same(r)), record]);
  }

  /**
   * Removes the images a reference names (name + tag, name + digest, or an image ID prefix: the config
   * digest as `berth images` shows it), then every blob no remaining image uses. Returns what went.
   */
  removeImage(matches: (r: ImageRecord) => boolean, what: string): { removed: ImageRecord[]; blobs: string[] } {
    const all = this.images();
    const removed = all.filter(matches);
    if (removed.length === 0) throw new ImageNotFoundError(`no such image: ${what}`);
    const kept = all.filter((r) => !matches(r));
    this.writeImages(kept);
    return { removed, blobs: this.collectGarbage(kept) };
  }

  /** Deletes blobs that no image record references. */
  private collectGarbage(kept: ImageRecord[]): string[] {
    const used = new Set(kept.flatMap((r) => [r.digest, r.manifest, r.config, ...r.layers.map((l) => l.digest)]));
    const deleted: string[] = [];
    for (const alg of ['sha256', 'sha512']) {
      for (const hex of readdirSync(join(this.home, 'blobs', alg))) {
        const digest = `${alg}:${hex}`;
        if (!used.has(digest)) {
          unlinkSync(join(this.home, 'blobs', alg, hex));
          deleted.push(digest);
        }
      }
    }
    return deleted;
  }

  /** Total bytes of an image's layers as stored (compressed). */
  imageSize(record: ImageRecord): number {
    return record.layers.reduce((sum, l) => sum + (this.has(l.digest) ? statSync(this.blobPath(l.digest)).size : l.size), 0);
  }

  /** A new, empty folder for one container (bundle + root filesystem). */
  newContainerDir(): { id: string; dir: string } {
    const id = randomBytes(6).toString('hex');
    const dir = this.containerDir(id);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    return { id, dir };
  }

  removeContainerDir(dir: string): void {
    rmSync(dir, { recursive: true, force: true });
  }

  writeContainer(record: ContainerRecord): void {
    this.writeAtomically(join(this.containerDir(record.id), 'container.json'), Buffer.from(`${JSON.stringify(record, null, 2)}\n`));
  }

  /** The kept containers, newest first; a folder without its record (being made or removed) is left out. */
  containers(): ContainerRecord[] {
    const records: ContainerRecord[] = [];
    for (const id of readdirSync(join(this.home, 'containers'))) {
      if (!CONTAINER_ID.test(id)) continue;
      try {
        // The folder names the container: what rm removes is what was listed.
        records.push({ ...(JSON.parse(readFileSync(join(this.containerDir(id), 'container.json'), 'utf8')) as ContainerRecord), id });
      } catch {
        // not (or no longer) a whole container
      }
    }
    return records.sort((a, b) => b.created.localeCompare(a.created));
  }

  containerDir(id: string): string {
    if (!CONTAINER_ID.test(id)) throw new ClientError(`not a container ID: ${id}`);
    return join(this.home, 'containers', id);
  }

  private writeImages(images: ImageRecord[]): void {
    this.writeAtomically(join(this.home, 'images.json'), Buffer.from(`${JSON.stringify({ images }, null, 2)}\n`));
  }

  private writeAtomically(path: string, bytes: Buffer): void {
    const temp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    writeFileSync(temp, bytes);
    renameSync(temp, path);
  }
}
