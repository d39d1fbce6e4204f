// What the replication suites share: images with several platforms and referrers pushed to a source,
// rules added and run through the admin API, and a run waited for to its end.
import { expect } from 'chai';
import { OCI_INDEX, OCI_MANIFEST, sha256, type Registry } from '../helpers/registry.ts';
import { waitFor } from '../helpers/wait.ts';

export interface PushedIndex {
  index: Buffer;
  digest: string;
  children: Record<string, string>;
}

/** An index of one image per platform (each its own config and layer) under `tag`. */
export async function pushIndex(registry: Registry, name: string, tag: string, platforms: string[] = ['linux/amd64', 'linux/arm64']): Promise<PushedIndex> {
  const children: Record<string, string> = {};
  const descriptors = [];
  for (const platform of platforms) {
    const [os, architecture] = platform.split('/');
    const image = await registry.pushImage(name, `${os}-${architecture}-of-${tag}`, {
      config: { os, architecture, rootfs: { type: 'layers', diff_ids: [] }, tag },
      layers: [`${name}:${tag} layer for ${platform}`],
    });
    children[platform] = image.digest;
    descriptors.push({ mediaType: OCI_MANIFEST, digest: image.digest, size: image.manifest.length, platform: { os, architecture } });
  }
  const index = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: descriptors }));
  const res = await registry.putManifest(name, tag, index, OCI_INDEX);
  expect(res.status, res.text).to.equal(201);
  return { index, digest: sha256(index), children };
}

/** A signature-like artifact whose subject is `subject`; its digest. */
export async function pushReferrer(registry: Registry, name: string, subject: { digest: string; size: number; mediaType: string }, what = 'signature'): Promise<string> {
  const emptyConfig = '{}';
  const config = await registry.pushBlob(name, emptyConfig);
  const layer = await registry.pushBlob(name, `${what} of ${subject.digest}`);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      artifactType: `application/vnd.example.${what}`,
      config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: config, size: emptyConfig.length },
      layers: [{ mediaType: 'application/octet-stream', digest: layer, size: Buffer.byteLength(`${what} of ${subject.digest}`) }],
      subject,
    }),
  );
  const digest = sha256(manifest);
  const res = await registry.putManifest(name, digest, manifest, OCI_MANIFEST);
  expect(res.status, res.text).to.equal(201);
  return digest;
}

export async function addRule(registry: Registry, rule: object): Promise<any> {
  const res = await registry.request('POST', '/api/v1/replication/rules', { body: JSON.stringify(rule), headers: { 'Content-Type': 'application/json' } });
  expect(res.status, res.text).to.equal(201);
  return res.json;
}

export async function ruleStatus(registry: Registry, name: string): Promise<any> {
  const res = await registry.request('GET', `/api/v1/replication/rules/${name}`);
  expect(res.status, res.text).to.equal(200);
  return res.json;
}

/** Starts a run through the API and waits for its record. */
export async function runRule(registry: Registry, name: string, timeoutMs = 30_000): Promise<any> {
  const res = await registry.request('POST', `/api/v1/replication/rules/${name}/run`);
  expect(res.status, res.text).to.equal(202);
  return waitForRun(registry, name, res.json.id, timeoutMs);
}

/** The record of the run `id` (or of any run, without one) once it is in the rule's history. */
export async function waitForRun(registry: Registry, name: string, id?: string, timeoutMs = 30_000): Promise<any> {
  return waitFor(async () => {
    const status = await ruleStatus(registry, name);
    return status.history.find((r: any) => id === undefined || r.id === id);
  }, `run ${id ?? ''} of ${name} to finish`, timeoutMs);
}

/** GET of a manifest (any type) with its exact bytes. */
export async function manifestBytes(registry: Registry, name: string, ref: string): Promise<{ status: number; body: Buffer; digest?: string }> {
  const res = await registry.request('GET', `/v2/${name}/manifests/${ref}`, {
    headers: { Accept: `${OCI_MANIFEST}, ${OCI_INDEX}, application/vnd.docker.distribution.manifest.v2+json` },
  });
  return { status: res.status, body: res.body, digest: res.headers['docker-content-digest'] };
}
