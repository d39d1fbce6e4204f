// Parses and checks a pushed manifest against its media type; knows nothing of storage.
import { StorageError } from './errors.ts';
import { FOREIGN_LAYER_TYPES, INDEX_TYPES, MANIFEST_TYPES, MediaType } from './media-types.ts';
import { tryParseDigest, type Digest } from './reference.ts';

export interface Descriptor {
  mediaType: string;
  digest: Digest;
  size: number;
  urls?: string[];
  artifactType?: string;
  annotations?: Record<string, string>;
}

export interface ParsedManifest {
  mediaType: string;
  isIndex: boolean;
  config?: Descriptor;
  layers: Descriptor[];
  /** Child manifests of an index. */
  manifests: Descriptor[];
  subject?: Descriptor;
  artifactType?: string;
  annotations?: Record<string, string>;
}

function invalid(message: string, detail?: unknown): StorageError {
  return new StorageError({ kind: 'ManifestInvalid', detail: detail ?? null }, message);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function stringMap(value: unknown, where: string): Record<string, string> | undefined {
  if (value === undefined) return undefined;
  if (!isObject(value) || !Object.values(value).every((v) => typeof v === 'string')) {
    throw invalid(`${where} must be a map of strings`);
  }
  return value as Record<string, string>;
}

function descriptor(value: unknown, where: string): Descriptor {
  if (!isObject(value)) throw invalid(`${where} must be a descriptor object`);
  const { mediaType, digest, size, urls, artifactType, annotations } = value;
  if (typeof mediaType !== 'string' || mediaType === '') throw invalid(`${where}.mediaType is missing`);
  if (typeof digest !== 'string') throw invalid(`${where}.digest is missing`);
  const parsed = tryParseDigest(digest);
  if (!parsed) throw new StorageError({ kind: 'DigestInvalid', digest: digest.slice(0, 200) }, `${where}.digest is not a valid digest`);
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
    throw invalid(`${where}.size must be a non-negative integer`);
  }
  if (urls !== undefined && (!Array.isArray(urls) || !urls.every((u) => typeof u === 'string'))) {
    throw invalid(`${where}.urls must be a list of strings`);
  }
  if (artifactType !== undefined && typeof artifactType !== 'string') throw invalid(`${where}.artifactType must be a string`);
  return {
    mediaType,
    digest: parsed,
    size,
    urls: urls as string[] | undefined,
    artifactType: artifactType as string | undefined,
    annotations: stringMap(annotations, `${where}.annotations`),
  };
}

function contentTypeOf(header: string | undefined): string | undefined {
  const type = header?.split(';')[0]?.trim().toLowerCase();
  return type ? type : undefined;
}

export function parseManifest(bytes: Buffer, contentTypeHeader: string | undefined): ParsedManifest {
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw invalid('manifest is not valid JSON');
  }
  if (!isObject(json)) throw invalid('manifest must be a JSON object');

  const contentType = contentTypeOf(contentTypeHeader);
  const declared = json.mediaType;
  if (declared !== undefined && typeof declared !== 'string') throw invalid('mediaType must be a string');
  if (declared && contentType && MANIFEST_TYPES.has(contentType) && declared !== contentType) {
    throw invalid('the mediaType in the manifest does not match the Content-Type header', {
      mediaType: declared,
      contentType,
    });
  }
  let mediaType = declared || (contentType && MANIFEST_TYPES.has(contentType) ? contentType : undefined);
  if (!mediaType) mediaType = Array.isArray(json.manifests) ? MediaType.OciIndex : MediaType.OciManifest;
  if (mediaType === MediaType.DockerSchema1 || mediaType === MediaType.DockerSchema1Signed || json.schemaVersion === 1) {
    throw invalid('Docker schema 1 manifests are not supported; push schema 2 or OCI');
  }
  if (!MANIFEST_TYPES.has(mediaType)) throw invalid(`unsupported manifest media type ${mediaType}`);
  if (json.schemaVersion !== 2) throw invalid('schemaVersion must be 2');

  const isIndex = INDEX_TYPES.has(mediaType);
  const subject = json.subject === undefined ? undefined : descriptor(json.subject, 'subject');
  const artifactType = json.artifactType;
  if (artifactType !== undefined && typeof artifactType !== 'string') throw invalid('artifactType must be a string');
  const annotations = stringMap(json.annotations, 'annotations');

  if (isIndex) {
    if (!Array.isArray(json.manifests)) throw invalid('an index must list its manifests');
    const manifests = json.manifests.map((m, i) => descriptor(m, `manifests[${i}]`));
    return { mediaType, isIndex, layers: [], manifests, subject, artifactType, annotations };
  }
  if (json.config === undefined) throw invalid('an image manifest must have a config');
  const config = descriptor(json.config, 'config');
  if (!Array.isArray(json.layers)) throw invalid('an image manifest must list its layers');
  const layers = json.layers.map((l, i) => descriptor(l, `layers[${i}]`));
  return { mediaType, isIndex, config, layers, manifests: [], subject, artifactType, annotations };
}

/** A foreign layer is referenced by URL and is neither stored nor required here. */
export function isForeignLayer(layer: Descriptor): boolean {
  return FOREIGN_LAYER_TYPES.has(layer.mediaType) && (layer.urls?.length ?? 0) > 0;
}

/** The artifactType the referrers API reports: the manifest's own, else its config's media type. */
export function referrerArtifactType(manifest: ParsedManifest): string | undefined {
  return manifest.artifactType ?? (manifest.isIndex ? undefined : manifest.config?.mediaType);
}
