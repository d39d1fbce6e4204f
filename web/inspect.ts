// What an image page shows, read from the stored manifest and config through storage's services and
// nothing else: the layers, the config and its history, annotations, the platforms of an index, the
// referrers. Bounded: a manifest or config above the manifest limit is not read whole, each list is cut at
// MAX_ITEMS and each text at MAX_TEXT, so a page never grows with what a pusher chose to write.
import { windowsBaseImage, type WindowsBaseImage } from '../platform/index.ts';
import { isForeignLayer, parseManifest, tryParseDigest, type Reference, type Storage } from '../storage/index.ts';

/** Items shown per list (layers, history steps, env, labels, annotations, platforms, referrers). */
export const MAX_ITEMS = 500;
/** Characters shown of one value (a `created_by` can be a whole shell script). */
export const MAX_TEXT = 4096;

/** A list cut at MAX_ITEMS, with how many were left out. */
export interface Bounded<T> {
  items: T[];
  omitted: number;
}

export interface LayerFacts {
  digest: string;
  mediaType: string;
  size: number;
  /** A foreign (non-distributable) layer: fetched from its URLs, never from the registry. */
  foreign: boolean;
  urls: string[];
  /** For a foreign layer, the Windows base image its URLs name. */
  base?: WindowsBaseImage;
}

export interface HistoryStep {
  createdBy: string;
  created?: string;
  comment?: string;
  /** A step that made no layer (ENV, CMD, LABEL…). */
  emptyLayer: boolean;
}

export interface ConfigFacts {
  os?: string;
  architecture?: string;
  variant?: string;
  osVersion?: string;
  created?: string;
  author?: string;
  entrypoint?: string[];
  cmd?: string[];
  env: Bounded<string>;
  exposedPorts: Bounded<string>;
  volumes: Bounded<string>;
  user?: string;
  workingDir?: string;
  stopSignal?: string;
  labels: Bounded<[string, string]>;
  history: Bounded<HistoryStep>;
}

/** The config as the page can show it: read and parsed, or why not. */
export type ConfigState =
  | { state: 'read'; facts: ConfigFacts }
  | { state: 'too-large'; size: number }
  /** Not JSON, or not an object: an artifact's config (a signature's, an SBOM's) often is not. */
  | { state: 'not-an-image-config' }
  | { state: 'missing' };

export interface ChildFacts {
  digest: string;
  mediaType: string;
  size: number;
  platform?: { os: string; architecture: string; variant?: string; osVersion?: string };
  /** An attestation (buildkit's provenance and SBOM manifests), not a platform one can run. */
  attestation: boolean;
}

export interface ReferrerGroup {
  artifactType: string;
  referrers: { digest: string; size: number; created?: string }[];
}

interface ManifestFacts {
  digest: string;
  mediaType: string;
  /** The manifest's own bytes. */
  size: number;
  artifactType?: string;
  annotations: Bounded<[string, string]>;
  referrers: ReferrerGroup[];
  /** The manifest this one refers to (a signature's image). */
  subject?: string;
}

export type Inspection =
  | { kind: 'missing' }
  /** Larger than the manifest limit, or no longer parseable: only its digest, type and size are shown. */
  | { kind: 'not-shown'; reason: 'too-large' | 'unreadable'; digest: string; mediaType: string; size: number; limit: number }
  | (ManifestFacts & { kind: 'index'; children: Bounded<ChildFacts> })
  | (ManifestFacts & { kind: 'image'; layers: Bounded<LayerFacts>; configDigest: string; configMediaType: string; config: ConfigState; compressedSize: number });

function bounded<T>(all: T[]): Bounded<T> {
  return { items: all.slice(0, MAX_ITEMS), omitted: Math.max(0, all.length - MAX_ITEMS) };
}

function text(value: unknown): string | undefined {
  if (typeof value !== 'string' || value === '') return undefined;
  return value.length > MAX_TEXT ? `${value.slice(0, MAX_TEXT)}…` : value;
}

function texts(value: unknown): string[] | undefined {
  return Array.isArray(value) ? value.slice(0, MAX_ITEMS).map((v) => text(String(v)) ?? '') : undefined;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A map of strings (labels, annotations), sorted by key; values that are not strings are left out. */
function pairs(value: unknown): Bounded<[string, string]> {
  if (!isObject(value)) return bounded([]);
  const found = Object.entries(value).filter((e): e is [string, string] => typeof e[1] === 'string');
  return bounded(found.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([k, v]) => [text(k) ?? '', text(v) ?? '']));
}

/** The keys of a set written as an object (`ExposedPorts`, `Volumes`). */
function keys(value: unknown): Bounded<string> {
  return bounded(isObject(value) ? Object.keys(value).sort().map((k) => text(k) ?? '') : []);
}

function configFacts(json: Record<string, unknown>): ConfigFacts {
  const config = isObject(json.config) ? json.config : {};
  const history = Array.isArray(json.history) ? json.history.filter(isObject) : [];
  return {
    os: text(json.os),
    architecture: text(json.architecture),
    variant: text(json.variant),
    osVersion: text(json['os.version']),
    created: text(json.created),
    author: text(json.author),
    entrypoint: texts(config.Entrypoint),
    cmd: texts(config.Cmd),
    env: bounded(texts(config.Env) ?? []),
    exposedPorts: keys(config.ExposedPorts),
    volumes: keys(config.Volumes),
    user: text(config.User),
    workingDir: text(config.WorkingDir),
    stopSignal: text(config.StopSignal),
    labels: pairs(config.Labels),
    history: bounded(history.map((h) => ({
      createdBy: text(h.created_by) ?? '',
      created: text(h.created),
      comment: text(h.comment),
      emptyLayer: h.empty_layer === true,
    }))),
  };
}

async function readConfig(storage: Storage, name: string, digestValue: string, limit: number): Promise<ConfigState> {
  const digest = tryParseDigest(digestValue);
  // The size the repository holds, not the one the manifest claims: what would be read.
  const size = digest && (await storage.blobs.sizeIn(name, digest));
  if (!digest || size === undefined) return { state: 'missing' };
  if (size > limit) return { state: 'too-large', size };
  const bytes = await storage.blobs.read(digest);
  if (!bytes) return { state: 'missing' };
  try {
    const json = JSON.parse(bytes.toString('utf8')) as unknown;
    return isObject(json) ? { state: 'read', facts: configFacts(json) } : { state: 'not-an-image-config' };
  } catch {
    return { state: 'not-an-image-config' };
  }
}

/** An index's children with the platform each declares, as the index's own JSON says it. */
function children(raw: Record<string, unknown>): ChildFacts[] {
  const listed = Array.isArray(raw.manifests) ? raw.manifests.filter(isObject) : [];
  return listed.flatMap((child) => {
    const digest = typeof child.digest === 'string' && tryParseDigest(child.digest) ? child.digest : undefined;
    if (!digest) return [];
    const platform = isObject(child.platform) ? child.platform : undefined;
    const annotations = isObject(child.annotations) ? child.annotations : {};
    return [{
      digest,
      mediaType: text(child.mediaType) ?? '',
      size: typeof child.size === 'number' ? child.size : 0,
      platform: platform && typeof platform.os === 'string' && typeof platform.architecture === 'string'
        ? { os: text(platform.os)!, architecture: text(platform.architecture)!, variant: text(platform.variant), osVersion: text(platform['os.version']) }
        : undefined,
      attestation: annotations['vnd.docker.reference.type'] === 'attestation-manifest',
    }];
  });
}

async function referrerGroups(storage: Storage, name: string, digestValue: string): Promise<ReferrerGroup[]> {
  const digest = tryParseDigest(digestValue)!;
  const groups = new Map<string, ReferrerGroup['referrers']>();
  // Only the first MAX_ITEMS entries are read: a subject may have any number of signatures.
  for (const r of await storage.manifests.referrers(name, digest, undefined, MAX_ITEMS)) {
    const type = text(r.artifactType ?? r.mediaType) ?? 'unknown';
    const group = groups.get(type) ?? [];
    group.push({ digest: r.digest, size: r.size, created: text(r.annotations?.['org.opencontainers.image.created']) });
    groups.set(type, group);
  }
  return [...groups].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([artifactType, referrers]) => ({ artifactType, referrers }));
}

/**
 * The image, index or artifact a tag or digest names in this repository. Callers check the viewer's
 * access first (this knows nothing of who asks); `limit` is the manifest limit, for configs too.
 */
export async function inspect(storage: Storage, name: string, reference: Reference, limit: number): Promise<Inspection> {
  const stored = await storage.manifests.get(name, reference);
  if (!stored) return { kind: 'missing' };
  const { digest, mediaType, content } = stored;
  const notShown = (reason: 'too-large' | 'unreadable') => ({ kind: 'not-shown', reason, digest, mediaType, size: content.length, limit }) as const;
  if (content.length > limit) return notShown('too-large');
  let parsed;
  let raw: Record<string, unknown>;
  try {
    parsed = parseManifest(content, mediaType);
    raw = JSON.parse(content.toString('utf8')) as Record<string, unknown>;
  } catch {
    // Stored manifests were checked when pushed; one that no longer parses is shown as its facts only.
    return notShown('unreadable');
  }
  const facts: ManifestFacts = {
    digest,
    mediaType,
    size: content.length,
    artifactType: text(parsed.artifactType),
    annotations: pairs(parsed.annotations),
    referrers: await referrerGroups(storage, name, digest),
    subject: parsed.subject?.digest.value,
  };
  if (parsed.isIndex) return { ...facts, kind: 'index', children: bounded(children(raw)) };
  const layers = parsed.layers.map((l) => {
    const foreign = isForeignLayer(l);
    const urls = (l.urls ?? []).slice(0, MAX_ITEMS).map((u) => text(u) ?? '');
    return { digest: l.digest.value, mediaType: text(l.mediaType) ?? '', size: l.size, foreign, urls, base: foreign ? urls.map(windowsBaseImage).find(Boolean) : undefined };
  });
  return {
    ...facts,
    kind: 'image',
    layers: bounded(layers),
    configDigest: parsed.config?.digest.value ?? '',
    configMediaType: parsed.config?.mediaType ?? '',
    config: parsed.config ? await readConfig(storage, name, parsed.config.digest.value, limit) : { state: 'missing' },
    compressedSize: (parsed.config?.size ?? 0) + parsed.layers.reduce((sum, l) => sum + l.size, 0),
  };
}
