// Pull: resolve a reference to the manifest for one platform, then fetch config and layers into the
// local store. Every manifest, config and layer is checked against its digest; a layer streams to a
// file under downloads/ and enters the store only when verified (a wrong digest leaves nothing behind);
// an interrupted layer resumes with Range from the bytes already on disk.
import { createHash, type Hash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, statSync, truncateSync, unlinkSync, type WriteStream } from 'node:fs';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { ClientError, DigestMismatchError, PlatformError, RegistryRequestError, RegistryResponseError } from './errors.ts';
import { formatPlatform, selectPlatform, windowsOnLinuxError, type Platform } from './platform.ts';
import type { Progress } from './progress.ts';
import { formatReference, manifestReference, type ImageReference } from './reference.ts';
import { ManifestMediaTypes, type RegistryClient } from './registry.ts';
import type { ImageRecord, LayerDescriptor, LocalStore } from './store.ts';

/** The parts of an image config the client uses. */
export interface ImageConfig {
  os?: string;
  architecture?: string;
  variant?: string;
  'os.version'?: string;
  config?: {
    Entrypoint?: string[] | null;
    Cmd?: string[] | null;
    Env?: string[] | null;
    WorkingDir?: string;
    User?: string;
  };
  rootfs?: { type?: string; diff_ids?: string[] };
}

interface IndexEntry {
  mediaType?: string;
  digest: string;
  size: number;
  platform?: Platform;
}

interface ImageManifest {
  config: LayerDescriptor;
  layers: Array<LayerDescriptor & { urls?: string[] }>;
}

export interface PullOptions {
  client: RegistryClient;
  store: LocalStore;
  progress: Progress;
  /** The platform to pick from an image index (the host's by default). */
  platform: Platform;
  /** Layers fetched at once. */
  concurrency?: number;
  /** Attempts per layer when the connection breaks mid-body, each resuming where the last stopped. */
  attempts?: number;
}

const INDEX_TYPES: string[] = [ManifestMediaTypes.ociIndex, ManifestMediaTypes.dockerList];
const IMAGE_TYPES: string[] = [ManifestMediaTypes.ociManifest, ManifestMediaTypes.dockerManifest];

function parseJson<T>(bytes: Buffer, what: string): T {
  try {
    return JSON.parse(bytes.toString('utf8')) as T;
  } catch {
    throw new ClientError(`${what} is not valid JSON`);
  }
}

/**
 * Resolves the reference to one platform's manifest and config (nothing is written yet), refusing an
 * image this host cannot run before any layer is fetched.
 */
export async function resolveImage(ref: ImageReference, options: PullOptions) {
  const { client, platform } = options;
  const name = formatReference(ref);
  const top = await client.getManifest(ref.repository, manifestReference(ref));
  let manifestDoc = top;
  let index: typeof top | undefined;
  if (INDEX_TYPES.includes(top.mediaType)) {
    index = top;
    const entries = parseJson<{ manifests?: IndexEntry[] }>(top.bytes, `index of ${name}`).manifests ?? [];
    const chosen = selectPlatform(entries, platform, name);
    manifestDoc = await client.getManifest(ref.repository, chosen.digest);
  }
  if (!IMAGE_TYPES.includes(manifestDoc.mediaType)) {
    throw new ClientError(`${name}: unsupported manifest media type ${JSON.stringify(manifestDoc.mediaType)}`);
  }
  const manifest = parseJson<ImageManifest>(manifestDoc.bytes, `manifest of ${name}`);
  if (!manifest.config?.digest || !Array.isArray(manifest.layers)) throw new ClientError(`${name}: the manifest has no config or layers`);
  // A config already in the store was verified when it was stored: a second pull downloads nothing.
  const configBytes = options.store.has(manifest.config.digest)
    ? options.store.readBlob(manifest.config.digest)
    : await client.getBlobBytes(ref.repository, manifest.config.digest);
  const config = parseJson<ImageConfig>(configBytes, `config of ${name}`);
  const imagePlatform: Platform = {
    os: config.os ?? 'unknown',
    architecture: config.architecture ?? 'unknown',
    ...(config.variant ? { variant: config.variant } : {}),
    ...(config['os.version'] ? { 'os.version': config['os.version'] } : {}),
  };
  if (imagePlatform.os === 'windows' && platform.os !== 'windows') throw windowsOnLinuxError(name, [imagePlatform]);
  if (!index && (imagePlatform.os !== platform.os || imagePlatform.architecture !== platform.architecture)) {
    // docker pulls a single-platform image anyway and warns; running it would fail with "exec format error".
    options.progress.note(`warning: ${name} is for ${formatPlatform(imagePlatform)}, not ${formatPlatform(platform)}`);
  }
  return { top, index, manifestDoc, manifest, configBytes, config, imagePlatform };
}

/** Pulls an image into the store and records it; returns its record. */
export async function pullImage(ref: ImageReference, options: PullOptions): Promise<ImageRecord> {
  const { store, progress } = options;
  const resolved = await resolveImage(ref, options);
  const { manifest } = resolved;
  for (const layer of manifest.layers) {
    if (layer.urls?.length && layer.mediaType.includes('foreign')) {
      throw new PlatformError(`${formatReference(ref)}: layer ${layer.digest} is a foreign (non-distributable) layer`);
    }
  }
  // A digest listed twice (empty layers often are) is fetched once: two writers must never share a file.
  const queue = [...new Map(manifest.layers.map((l) => [l.digest, l])).values()];
  const worker = async () => {
    for (let layer = queue.shift(); layer; layer = queue.shift()) await downloadLayer(ref.repository, layer, options);
  };
  await Promise.all(Array.from({ length: Math.min(options.concurrency ?? 3, queue.length) }, worker));

  // Documents last: an image is in the store only once every layer is.
  if (resolved.index) store.putBytes(resolved.index.digest, resolved.index.bytes);
  store.putBytes(resolved.manifestDoc.digest, resolved.manifestDoc.bytes);
  store.putBytes(manifest.config.digest, resolved.configBytes);
  const record: ImageRecord = {
    name: `${ref.registry}/${ref.repository}`,
    ...(ref.tag && !ref.digest ? { tag: ref.tag } : {}),
    digest: resolved.top.digest,
    manifest: resolved.manifestDoc.digest,
    config: manifest.config.digest,
    layers: manifest.layers.map(({ mediaType, digest, size }) => ({ mediaType, digest, size })),
    platform: resolved.imagePlatform,
    pulledAt: new Date().toISOString(),
  };
  store.saveImage(record);
  progress.note(`Digest: ${record.digest}`);
  return record;
}

/** Fails the stream once more bytes pass than the descriptor announced. */
function limitTo(size: number, digest: string, onBytes: (chunk: Buffer) => void, start: number): Transform {
  let total = start;
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      total += chunk.length;
      if (total > size) return callback(new DigestMismatchError(`blob ${digest}: more than the ${size} bytes its descriptor announces`));
      onBytes(chunk);
      callback(null, chunk);
    },
  });
}

async function hashFile(path: string, algorithm: string): Promise<Hash> {
  const hash = createHash(algorithm);
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash;
}

/**
 * The pause before the attempt after `attempt`: 250 ms, doubling up to 4 s, so that a registry in
 * trouble is not hammered; with the bounded attempts, a layer's pauses add up to at most seconds.
 */
function retryDelay(attempt: number): number {
  return Math.min(250 * 2 ** (attempt - 1), 4000);
}

async function downloadLayer(repository: string, layer: LayerDescriptor, options: PullOptions): Promise<void> {
  const { client, store, progress } = options;
  const bar = progress.layer(layer.digest, layer.size);
  if (store.has(layer.digest)) {
    bar.done('already present');
    return;
  }
  const algorithm = layer.digest.slice(0, layer.digest.indexOf(':'));
  const partial = store.partialPath(layer.digest);
  const attempts = options.attempts ?? 3;
  let hash: Hash | undefined;
  for (let attempt = 1; ; attempt++) {
    let file: WriteStream | undefined;
    let offset = existsSync(partial) ? statSync(partial).size : 0;
    if (offset >= layer.size) {
      // Complete already (or longer than announced): the digest check below or a fresh start decides.
      if (offset > layer.size) truncateSync(partial, (offset = 0));
      else {
        hash = await hashFile(partial, algorithm);
        break;
      }
    }
    try {
      const response = await client.getBlob(repository, layer.digest, offset, layer.size);
      if (offset > 0 && !response.partial) truncateSync(partial, (offset = 0)); // the registry ignored Range
      if (offset > 0) bar.resumed(offset);
      hash = offset > 0 ? await hashFile(partial, algorithm) : createHash(algorithm);
      const h = hash;
      file = createWriteStream(partial, { flags: offset > 0 ? 'a' : 'w' });
      await pipeline(
        response.body,
        limitTo(layer.size, layer.digest, (chunk) => {
          h.update(chunk);
          bar.advance(chunk.length);
        }, offset),
        file,
      );
      break;
    } catch (err) {
      // A write still in flight would land after the next attempt measured the file: wait for it.
      const open = file;
      if (open && !open.closed) await new Promise<void>((resolve) => open.once('close', () => resolve()));
      const fatal =
        err instanceof DigestMismatchError ||
        err instanceof RegistryResponseError ||
        (err instanceof RegistryRequestError && err.status >= 400 && err.status < 500);
      if (fatal) {
        if (existsSync(partial)) unlinkSync(partial);
        throw err;
      }
      if (attempt >= attempts) {
        const have = existsSync(partial) ? statSync(partial).size : 0;
        throw new ClientError(
          `layer ${layer.digest}: download interrupted at byte ${have} of ${layer.size} (${(err as Error).message}); pull again to resume`,
        );
      }
      await sleep(retryDelay(attempt));
    }
  }
  const actual = `${algorithm}:${hash.digest('hex')}`;
  const size = statSync(partial).size;
  if (actual !== layer.digest || size !== layer.size) {
    unlinkSync(partial);
    throw new DigestMismatchError(`layer ${layer.digest}: received ${size} bytes with digest ${actual}; nothing was kept`);
  }
  await store.commitFile(partial, layer.digest);
  bar.done('done');
}
