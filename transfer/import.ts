// berth import: an OCI image layout into a registry (storage itself, or one over HTTP: an ImportTarget).
// Everything is checked before the first byte goes anywhere: every manifest index.json reaches (children
// and referrers) is read, hashed and parsed, every blob they name is hashed as a stream against its
// descriptor. Then, per repository, the push flow's order: blobs, manifests children first (by digest),
// referrers after their subjects, tags last. Each manifest is read and hashed again as it is pushed, and
// the target hashes blobs as they arrive, so a layout changed in between is refused there too.
//
// Which repository an index.json entry goes to, from its org.opencontainers.image.ref.name:
//   NAME:TAG, NAME@DIGEST (what berth export writes)  NAME (under NAMESPACE/ with --to NAMESPACE)
//   TAG alone (what skopeo writes)                     the repository --to names
//   none (a referrer)                                  every repository its subject goes to
import type { Readable } from 'node:stream';
import { isForeignLayer, isValidName, isValidTag, parseManifest, tryParseDigest, type Digest } from '../storage/index.ts';
import { TransferError } from './errors.ts';
import { layoutBlobStream, readLayoutBlob, readLayoutIndex, REF_NAME, verifyLayoutBlob, type LayoutDescriptor } from './layout.ts';

export type BlobOutcome = 'present' | 'mounted' | 'uploaded';

/** Where an import writes: a repository's blobs and manifests, as a push would. */
export interface ImportTarget {
  /** Makes the blob available in the repository; `open` gives its bytes from an offset when they must be sent. */
  pushBlob(repository: string, digest: Digest, size: number, open: (offset: number) => Readable): Promise<BlobOutcome>;
  /** Stores the manifest under `reference` (a tag, or its digest). */
  putManifest(repository: string, reference: string, bytes: Buffer, mediaType: string): Promise<void>;
}

export interface ImportOptions {
  /** --to: the namespace NAME entries go under, and the repository TAG-only entries go into. */
  namespace?: string;
  maxManifestBytes: number;
}

export interface ImportReport {
  images: string[];
  manifests: number;
  blobs: Record<BlobOutcome, number>;
  bytesSent: number;
}

/** A verified manifest: what it names, not its bytes (those are read again when pushed). */
interface Node {
  digest: Digest;
  size: number;
  mediaType: string;
  blobs: { digest: Digest; size: number }[];
  children: string[];
  subject?: string;
}

interface Placement {
  repository: string;
  tag?: string;
}

function digestOf(value: string, where: string): Digest {
  const digest = tryParseDigest(value);
  if (!digest) throw new TransferError(`${where}: ${JSON.stringify(value.slice(0, 200))} is not a sha256 or sha512 digest`);
  return digest;
}

/** The repository (and tag) an index.json entry with a name goes to. */
function place(refName: string, entry: LayoutDescriptor, namespace: string | undefined): Placement {
  const at = refName.indexOf('@');
  const colon = refName.lastIndexOf(':');
  let name: string;
  let tag: string | undefined;
  if (at >= 0) {
    name = refName.slice(0, at);
    if (refName.slice(at + 1) !== entry.digest) throw new TransferError(`index.json: ${refName} names another digest than its entry's ${entry.digest}`);
  } else if (colon > refName.lastIndexOf('/')) {
    name = refName.slice(0, colon);
    tag = refName.slice(colon + 1);
  } else if (isValidTag(refName)) {
    if (namespace === undefined) throw new TransferError(`index.json names ${refName} without a repository: give the repository with --to`);
    return { repository: namespace, tag: refName };
  } else {
    throw new TransferError(`index.json: ${JSON.stringify(refName.slice(0, 200))} is neither NAME:TAG, NAME@DIGEST nor a tag`);
  }
  const repository = namespace === undefined ? name : `${namespace}/${name}`;
  if (!isValidName(repository)) throw new TransferError(`index.json: ${JSON.stringify(repository.slice(0, 300))} is not a repository name`);
  if (tag !== undefined && !isValidTag(tag)) throw new TransferError(`index.json: ${JSON.stringify(tag.slice(0, 200))} is not a tag`);
  return { repository, tag };
}

export async function importLayout(dir: string, target: ImportTarget, options: ImportOptions): Promise<ImportReport> {
  if (options.namespace !== undefined && !isValidName(options.namespace)) throw new TransferError(`--to ${JSON.stringify(options.namespace)} is not a repository name`);
  const entries = await readLayoutIndex(dir);
  const nodes = new Map<string, Node>();
  const verifiedBlobs = new Set<string>();

  async function read(digest: Digest, size: number, mediaType: string | undefined): Promise<{ bytes: Buffer; parsed: ReturnType<typeof parseManifest> }> {
    const bytes = await readLayoutBlob(dir, digest, size, options.maxManifestBytes);
    try {
      return { bytes, parsed: parseManifest(bytes, mediaType) };
    } catch (err) {
      throw new TransferError(`manifest ${digest.value}: ${(err as Error).message}`);
    }
  }

  /** Reads and checks a manifest and everything below it (once each). */
  async function verify(descriptor: { digest: Digest; size: number; mediaType?: string }): Promise<Node> {
    const known = nodes.get(descriptor.digest.value);
    if (known) return known;
    const { parsed } = await read(descriptor.digest, descriptor.size, descriptor.mediaType);
    const blobs = [...(parsed.config ? [parsed.config] : []), ...parsed.layers.filter((l) => !isForeignLayer(l))];
    for (const blob of blobs) {
      if (verifiedBlobs.has(blob.digest.value)) continue;
      await verifyLayoutBlob(dir, blob.digest, blob.size);
      verifiedBlobs.add(blob.digest.value);
    }
    const node: Node = {
      digest: descriptor.digest,
      size: descriptor.size,
      mediaType: parsed.mediaType,
      blobs: blobs.map((b) => ({ digest: b.digest, size: b.size })),
      children: parsed.manifests.map((m) => m.digest.value),
      subject: parsed.subject?.digest.value,
    };
    nodes.set(descriptor.digest.value, node);
    for (const child of parsed.manifests) await verify(child);
    return node;
  }

  // 1. Everything checked; where each entry goes decided.
  const plans = new Map<string, { roots: string[]; tags: Array<[string, string]> }>();
  const planOf = (repository: string) => plans.get(repository) ?? plans.set(repository, { roots: [], tags: [] }).get(repository)!;
  const unnamed: Node[] = [];
  for (const [i, entry] of entries.entries()) {
    const node = await verify({ digest: digestOf(entry.digest, `index.json manifests[${i}]`), size: entry.size, mediaType: entry.mediaType });
    const refName = entry.annotations?.[REF_NAME];
    if (refName === undefined) {
      unnamed.push(node);
      continue;
    }
    const { repository, tag } = place(refName, entry, options.namespace);
    const plan = planOf(repository);
    plan.roots.push(node.digest.value);
    if (tag !== undefined) plan.tags.push([tag, node.digest.value]);
  }
  placeReferrers(unnamed, plans, nodes, planOf, options.namespace);

  // 2. Pushed, repository by repository.
  const report: ImportReport = { images: [], manifests: 0, blobs: { present: 0, mounted: 0, uploaded: 0 }, bytesSent: 0 };
  for (const [repository, plan] of plans) {
    const pushed = new Set<string>();
    const push = async (digest: string): Promise<void> => {
      if (pushed.has(digest)) return;
      pushed.add(digest);
      const node = nodes.get(digest)!;
      for (const child of node.children) await push(child);
      for (const blob of node.blobs) {
        if (pushed.has(blob.digest.value)) continue;
        pushed.add(blob.digest.value);
        const outcome = await target.pushBlob(repository, blob.digest, blob.size, (offset) => layoutBlobStream(dir, blob.digest, offset));
        report.blobs[outcome]++;
        if (outcome === 'uploaded') report.bytesSent += blob.size;
      }
      const { bytes } = await read(node.digest, node.size, node.mediaType);
      await target.putManifest(repository, node.digest.value, bytes, node.mediaType);
      report.manifests++;
    };
    for (const root of plan.roots) await push(root);
    for (const [tag, digest] of plan.tags) {
      const node = nodes.get(digest)!;
      const { bytes } = await read(node.digest, node.size, node.mediaType);
      await target.putManifest(repository, tag, bytes, node.mediaType);
      report.images.push(`${repository}:${tag}`);
    }
  }
  return report;
}

/**
 * Unnamed entries (referrers) go wherever their subject goes: a pass per level of referrers of
 * referrers, at most one per entry. What has no subject there goes to the --to repository, or is refused.
 */
function placeReferrers(
  unnamed: Node[],
  plans: Map<string, { roots: string[] }>,
  nodes: Map<string, Node>,
  planOf: (repository: string) => { roots: string[] },
  namespace: string | undefined,
): void {
  const reaches = (plan: { roots: string[] }, digest: string): boolean => {
    const seen = new Set<string>();
    const stack = [...plan.roots];
    while (stack.length > 0) {
      const next = stack.pop()!;
      if (next === digest) return true;
      if (seen.has(next)) continue;
      seen.add(next);
      stack.push(...(nodes.get(next)?.children ?? []));
    }
    return false;
  };
  let waiting = unnamed;
  for (let pass = 0; pass <= unnamed.length && waiting.length > 0; pass++) {
    const still: Node[] = [];
    for (const node of waiting) {
      const homes = node.subject === undefined ? [] : [...plans.entries()].filter(([, plan]) => reaches(plan, node.subject!));
      if (homes.length === 0) still.push(node);
      for (const [, plan] of homes) plan.roots.push(node.digest.value);
    }
    if (still.length === waiting.length) break;
    waiting = still;
  }
  for (const node of waiting) {
    if (namespace === undefined) {
      throw new TransferError(`index.json lists ${node.digest.value} without a name, and its subject is not imported: give the repository with --to`);
    }
    planOf(namespace).roots.push(node.digest.value);
  }
}
