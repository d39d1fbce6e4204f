// Builds image content for end-to-end tests without any container tool: tar layers, configs, manifests,
// OCI image layouts (oci: transport), skopeo `dir:` layouts and `docker save` archives (docker load,
// podman load). Everything is deterministic: the same call gives the same digests.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import tar from 'tar-stream';

export const MediaTypes = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  dockerForeignLayer: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
} as const;

/** A fixed time for tar headers and configs, so content never depends on when a test ran. */
const EPOCH = new Date('2024-01-01T00:00:00Z');

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  urls?: string[];
  platform?: { architecture: string; os: string; 'os.version'?: string; variant?: string };
  annotations?: Record<string, string>;
}

export function sha256(bytes: Buffer | string): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

export function hexOf(digest: string): string {
  return digest.slice(digest.indexOf(':') + 1);
}

/** JSON bytes as an image tool would write them (compact, no trailing newline). */
export function jsonBytes(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value));
}

export interface TarEntry {
  path: string;
  type?: 'file' | 'directory' | 'symlink' | 'link';
  content?: Buffer | string;
  mode?: number;
  /** Target of a symlink or hard link. */
  target?: string;
}

/** A tar archive (uncompressed) of the given entries, with root ownership and a fixed mtime. */
export async function makeTar(entries: TarEntry[]): Promise<Buffer> {
  const pack = tar.pack();
  const collected = (async () => {
    const chunks: Buffer[] = [];
    for await (const chunk of pack) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  })();
  for (const entry of entries) {
    const type = entry.type ?? 'file';
    const header = {
      name: entry.path,
      type,
      mode: entry.mode ?? (type === 'file' ? 0o644 : 0o755),
      uid: 0,
      gid: 0,
      uname: 'root',
      gname: 'root',
      mtime: EPOCH,
    };
    await new Promise<void>((resolve, reject) => {
      const callback = (err?: Error | null) => (err ? reject(err) : resolve());
      if (type === 'symlink' || type === 'link') pack.entry({ ...header, linkname: entry.target }, callback);
      else if (type === 'directory') pack.entry(header, callback);
      else pack.entry(header, Buffer.from(entry.content ?? ''), callback);
    });
  }
  pack.finalize();
  return collected;
}

/** gzip with a fixed header (no name, no mtime), as image tools write layers. */
export function gzip(bytes: Buffer): Buffer {
  return gzipSync(bytes, { level: 6 });
}

export interface Layer {
  /** The uncompressed tar: its digest is the diff ID in the config. */
  tar: Buffer;
  diffId: string;
  /** The gzip-compressed tar, as stored in a registry. */
  gz: Buffer;
  digest: string;
}

export async function makeLayer(entries: TarEntry[]): Promise<Layer> {
  const tarBytes = await makeTar(entries);
  const gz = gzip(tarBytes);
  return { tar: tarBytes, diffId: sha256(tarBytes), gz, digest: sha256(gz) };
}

export interface ImageConfigOptions {
  architecture: string;
  os: string;
  osVersion?: string;
  variant?: string;
  diffIds: string[];
  cmd?: string[];
  env?: string[];
  labels?: Record<string, string>;
}

/** An image config (the same JSON shape for OCI and Docker schema 2). */
export function imageConfig(options: ImageConfigOptions): Buffer {
  return jsonBytes({
    created: EPOCH.toISOString(),
    architecture: options.architecture,
    ...(options.variant ? { variant: options.variant } : {}),
    os: options.os,
    ...(options.osVersion ? { 'os.version': options.osVersion } : {}),
    config: {
      Env: options.env ?? ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
      Cmd: options.cmd ?? ['sh'],
      ...(options.labels ? { Labels: options.labels } : {}),
    },
    rootfs: { type: 'layers', diff_ids: options.diffIds },
    history: options.diffIds.map((_, i) => ({ created: EPOCH.toISOString(), created_by: `berth e2e layer ${i}` })),
  });
}

/** The GOARCH-style name of this machine's architecture, as image platforms spell it. */
export function hostArchitecture(): string {
  const map: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x' };
  return map[process.arch] ?? process.arch;
}

/** An OCI image layout on disk (https://github.com/opencontainers/image-spec/blob/main/image-layout.md). */
export class OciLayout {
  constructor(readonly dir: string) {
    mkdirSync(join(dir, 'blobs', 'sha256'), { recursive: true });
    writeFileSync(join(dir, 'oci-layout'), jsonBytes({ imageLayoutVersion: '1.0.0' }));
  }

  /** Stores a blob under its digest and returns a descriptor for it. */
  addBlob(mediaType: string, bytes: Buffer, extra: Partial<Descriptor> = {}): Descriptor {
    const digest = sha256(bytes);
    writeFileSync(join(this.dir, 'blobs', 'sha256', hexOf(digest)), bytes);
    return { mediaType, digest, size: bytes.length, ...extra };
  }

  /** Writes config, layers and an OCI image manifest; returns the manifest's descriptor. */
  async addImage(options: { platform: { architecture: string; os: string }; layers: TarEntry[][]; labels?: Record<string, string> }): Promise<Descriptor> {
    const layers = await Promise.all(options.layers.map((entries) => makeLayer(entries)));
    const config = imageConfig({
      architecture: options.platform.architecture,
      os: options.platform.os,
      diffIds: layers.map((l) => l.diffId),
      labels: options.labels,
    });
    return this.addManifest(config, layers);
  }

  /** Writes a config, gzip layers and the OCI image manifest over them; returns the manifest's descriptor. */
  addManifest(config: Buffer, layers: Layer[]): Descriptor {
    const manifest = jsonBytes({
      schemaVersion: 2,
      mediaType: MediaTypes.ociManifest,
      config: this.addBlob(MediaTypes.ociConfig, config),
      layers: layers.map((l) => this.addBlob(MediaTypes.ociLayerGzip, l.gz)),
    });
    return this.addBlob(MediaTypes.ociManifest, manifest);
  }

  /** Writes an image index over the given manifests; returns its descriptor. */
  addIndex(manifests: Descriptor[]): Descriptor {
    return this.addBlob(MediaTypes.ociIndex, jsonBytes({ schemaVersion: 2, mediaType: MediaTypes.ociIndex, manifests }));
  }

  /** Writes index.json naming each descriptor by its tag (org.opencontainers.image.ref.name). */
  writeIndexJson(tagged: Record<string, Descriptor>): void {
    const manifests = Object.entries(tagged).map(([tag, d]) => ({
      ...d,
      annotations: { ...d.annotations, 'org.opencontainers.image.ref.name': tag },
    }));
    writeFileSync(join(this.dir, 'index.json'), jsonBytes({ schemaVersion: 2, manifests }));
  }
}

export interface LayoutContents {
  /** The descriptors of index.json, by their ref.name annotation. */
  refs: Map<string, Descriptor>;
  /** Every blob in blobs/sha256, by digest. */
  blobs: Map<string, Buffer>;
}

/**
 * Reads an OCI image layout and checks it is sound: each blob's content matches its file name, and
 * every descriptor reachable from index.json points at a blob of the stated size.
 */
export function readOciLayout(dir: string): LayoutContents {
  const layoutFile = JSON.parse(readFileSync(join(dir, 'oci-layout'), 'utf8')) as { imageLayoutVersion?: string };
  if (layoutFile.imageLayoutVersion !== '1.0.0') throw new Error(`${dir}: not an OCI image layout`);
  const blobs = new Map<string, Buffer>();
  const blobDir = join(dir, 'blobs', 'sha256');
  for (const name of existsSync(blobDir) ? readdirSync(blobDir) : []) {
    const bytes = readFileSync(join(blobDir, name));
    const digest = sha256(bytes);
    if (digest !== `sha256:${name}`) throw new Error(`${dir}: blob ${name} holds content with digest ${digest}`);
    blobs.set(digest, bytes);
  }
  const index = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8')) as { manifests: Descriptor[] };
  const refs = new Map<string, Descriptor>();
  const check = (d: Descriptor): void => {
    const bytes = blobs.get(d.digest);
    if (!bytes) throw new Error(`${dir}: ${d.mediaType} ${d.digest} is missing`);
    if (bytes.length !== d.size) throw new Error(`${dir}: ${d.digest} has ${bytes.length} bytes, descriptor says ${d.size}`);
    if (d.mediaType === MediaTypes.ociIndex || d.mediaType === MediaTypes.ociManifest) {
      const json = JSON.parse(bytes.toString()) as { manifests?: Descriptor[]; config?: Descriptor; layers?: Descriptor[] };
      for (const child of [...(json.manifests ?? []), ...(json.config ? [json.config] : []), ...(json.layers ?? [])]) check(child);
    }
  };
  for (const d of index.manifests) {
    check(d);
    const name = d.annotations?.['org.opencontainers.image.ref.name'];
    if (name) refs.set(name, d);
  }
  return { refs, blobs };
}

/**
 * A skopeo `dir:` layout: manifest.json holds the manifest bytes, each blob is a file named by its hex
 * digest, and `version` marks the format. Blobs not given (a foreign layer) are simply absent.
 */
export function writeDirLayout(dir: string, manifest: Buffer, blobs: Buffer[]): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'version'), 'Directory Transport Version: 1.1\n');
  writeFileSync(join(dir, 'manifest.json'), manifest);
  for (const blob of blobs) writeFileSync(join(dir, hexOf(sha256(blob))), blob);
}

/**
 * A `docker save` archive (the format docker load and podman load read): manifest.json, the config as
 * <hex>.json, each layer as an uncompressed <diffid-hex>/layer.tar. Returns the archive bytes.
 */
export async function dockerArchive(options: { repoTags: string[]; config: Buffer; layers: Layer[] }): Promise<Buffer> {
  const configName = `${hexOf(sha256(options.config))}.json`;
  const layerNames = options.layers.map((l) => `${hexOf(l.diffId)}/layer.tar`);
  const entries: TarEntry[] = [
    { path: configName, content: options.config },
    ...options.layers.flatMap((l, i): TarEntry[] => [
      { path: `${hexOf(l.diffId)}/`, type: 'directory' },
      { path: layerNames[i]!, content: l.tar },
    ]),
    { path: 'manifest.json', content: jsonBytes([{ Config: configName, RepoTags: options.repoTags, Layers: layerNames }]) },
  ];
  return makeTar(entries);
}

/** Deterministic, incompressible bytes (a sha256 chain): layer content that gzip cannot shrink. */
export function pseudoRandomBytes(seed: string, size: number): Buffer {
  const out = Buffer.alloc(size);
  let block = createHash('sha256').update(seed).digest();
  for (let offset = 0; offset < size; offset += block.length) {
    block.copy(out, offset, 0, Math.min(block.length, size - offset));
    block = createHash('sha256').update(block).digest();
  }
  return out;
}
