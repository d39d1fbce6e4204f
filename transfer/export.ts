// berth export: images from storage into an OCI image layout. Each reference (NAME, NAME:TAG,
// NAME@DIGEST; a bare NAME means every tag, as docker save does) becomes an index.json entry named
// `NAME:TAG` or `NAME@DIGEST` (org.opencontainers.image.ref.name, so `skopeo copy oci:DIR:NAME:TAG`
// finds it). Everything each one reaches goes along: an index's children, configs and layers (foreign
// layers are not stored, so they stay out) and the referrers of every exported manifest (signatures,
// SBOMs, attestations, and their own referrers), listed in index.json without a name. Storage is only
// read, so this runs beside a server.
import { Readable } from 'node:stream';
import { isForeignLayer, isValidName, parseManifest, parseReference, tryParseDigest, type Digest, type Reference, type Storage } from '../storage/index.ts';
import { TransferError } from './errors.ts';
import { REF_NAME, type LayoutDescriptor, type LayoutSink } from './layout.ts';

export interface ExportReport {
  images: string[];
  manifests: number;
  blobs: number;
  bytes: number;
}

interface Root {
  name: string;
  reference: Reference;
  refName: string;
}

/** NAME[:TAG|@DIGEST] → the references it names (every tag of NAME when it gives none). */
async function roots(storage: Storage, argument: string): Promise<Root[]> {
  const at = argument.indexOf('@');
  const colon = argument.lastIndexOf(':');
  const split = at >= 0 ? at : colon > argument.lastIndexOf('/') ? colon : -1;
  const name = split >= 0 ? argument.slice(0, split) : argument;
  if (!isValidName(name)) throw new TransferError(`${JSON.stringify(argument)}: ${JSON.stringify(name)} is not a repository name`);
  if (split < 0) {
    const tags = await storage.manifests.tags(name);
    if (tags.length === 0) throw new TransferError(`${name} has no tags`);
    return tags.map((tag) => ({ name, reference: { kind: 'tag', tag }, refName: `${name}:${tag}` }));
  }
  const reference = parseReference(argument.slice(split + 1));
  if (!reference || (reference.kind === 'digest') !== (at >= 0)) throw new TransferError(`${JSON.stringify(argument)} is not NAME, NAME:TAG or NAME@DIGEST`);
  return [{ name, reference, refName: argument }];
}

export async function exportImages(storage: Storage, references: string[], sink: LayoutSink): Promise<ExportReport> {
  const written = new Set<string>();
  const visited = new Set<string>();
  /** Referrers already in index.json. */
  const listed = new Set<string>();
  const index: LayoutDescriptor[] = [];
  const report: ExportReport = { images: [], manifests: 0, blobs: 0, bytes: 0 };

  async function writeBlob(name: string, digest: Digest, size: number): Promise<void> {
    if (written.has(digest.value)) return;
    const stored = await storage.blobs.sizeIn(name, digest);
    if (stored !== size) throw new TransferError(`${name}: blob ${digest.value} is ${stored === undefined ? 'not stored' : `${stored} bytes, not ${size}`}`);
    await sink.addBlob(digest, size, await storage.blobs.open(digest));
    written.add(digest.value);
    report.blobs++;
    report.bytes += size;
  }

  /** A manifest of `name` with everything it reaches and its referrers; its descriptor. */
  async function writeManifest(name: string, reference: Reference, what: string): Promise<LayoutDescriptor> {
    const manifest = await storage.manifests.get(name, reference);
    if (!manifest) throw new TransferError(`${what} is not stored`);
    const descriptor: LayoutDescriptor = { mediaType: manifest.mediaType, digest: manifest.digest, size: manifest.content.length };
    const key = `${name}@${manifest.digest}`;
    if (visited.has(key)) return descriptor;
    visited.add(key);
    const parsed = parseManifest(manifest.content, manifest.mediaType);
    for (const blob of [...(parsed.config ? [parsed.config] : []), ...parsed.layers.filter((l) => !isForeignLayer(l))]) {
      await writeBlob(name, blob.digest, blob.size);
    }
    for (const child of parsed.manifests) await writeManifest(name, { kind: 'digest', digest: child.digest }, `${name}@${child.digest.value}`);
    const own = tryParseDigest(manifest.digest)!;
    if (!written.has(manifest.digest)) {
      await sink.addBlob(own, manifest.content.length, Readable.from([manifest.content]));
      written.add(manifest.digest);
      report.manifests++;
      report.bytes += manifest.content.length;
    }
    for (const referrer of await storage.manifests.referrers(name, own)) {
      const digest = tryParseDigest(referrer.digest);
      if (!digest) continue;
      const found = await writeManifest(name, { kind: 'digest', digest }, `referrer ${referrer.digest} of ${name}@${own.value}`);
      // Unnamed: an import puts a referrer wherever its subject goes.
      if (!listed.has(found.digest)) {
        listed.add(found.digest);
        index.push({ ...found, ...(referrer.artifactType ? { artifactType: referrer.artifactType } : {}) });
      }
    }
    return descriptor;
  }

  try {
    for (const argument of references) {
      for (const root of await roots(storage, argument)) {
        const descriptor = await writeManifest(root.name, root.reference, root.refName);
        index.push({ ...descriptor, annotations: { [REF_NAME]: root.refName } });
        report.images.push(root.refName);
      }
    }
    await sink.finish(index);
  } catch (err) {
    await sink.abort();
    throw err;
  }
  return report;
}
