// Images written straight through a Storage (no HTTP): blobs linked to a repository and manifests put,
// for the tests of what storage derives from them (the search index).
import { createHash } from 'node:crypto';
import { parseDigest, type Storage } from '../../storage/index.ts';

export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';

export function digestOf(bytes: Buffer): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/** Stores a blob and links it to the repository. */
export async function putBlob(storage: Storage, name: string, content: string): Promise<{ digest: string; size: number }> {
  const bytes = Buffer.from(content);
  const digest = parseDigest(digestOf(bytes));
  await storage.blobs.putContent(digest, bytes);
  await storage.blobs.link(name, digest);
  return { digest: digest.value, size: bytes.length };
}

/** Puts a manifest under a tag, or by its digest when `tag` is undefined. */
export async function putManifest(storage: Storage, name: string, tag: string | undefined, body: unknown, mediaType: string): Promise<{ digest: string; size: number; mediaType: string }> {
  const bytes = Buffer.from(JSON.stringify(body));
  const digest = digestOf(bytes);
  await storage.manifests.put(name, tag ? { kind: 'tag', tag } : { kind: 'digest', digest: parseDigest(digest) }, bytes, mediaType);
  return { digest, size: bytes.length, mediaType };
}

/** An image (config with the platform + one layer, both told apart by `salt`): its manifest's digest and size. */
export async function pushImage(storage: Storage, name: string, tag: string | undefined, platform: Record<string, string>, salt = 'layer') {
  const config = await putBlob(storage, name, JSON.stringify({ ...platform, rootfs: { type: 'layers', diff_ids: [] }, salt }));
  const layer = await putBlob(storage, name, `${salt} ${JSON.stringify(platform)}`);
  return putManifest(storage, name, tag, {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...layer }],
  }, OCI_MANIFEST);
}
