// Pushing to a registry over the distribution spec's push flow, with the same authentication as a pull
// (a Bearer token for `repository:<name>:pull,push` from the realm, or Basic): a blob already there is
// skipped (HEAD), one the registry holds elsewhere is mounted (POST ?mount= without from: Berth links it
// when the caller may pull it somewhere; other registries open a session instead), else it is uploaded
// in one PUT whose body streams from its source. Manifests are PUT as they are, byte for byte.
import type { Readable } from 'node:stream';
import { digestOf } from './digest.ts';
import { RegistryResponseError } from './errors.ts';
import { RegistryClient } from './registry.ts';

/** What happened to a blob: it was there, it was linked from another repository, or its bytes were sent. */
export type BlobPush = 'present' | 'mounted' | 'uploaded';

export class RegistryPusher extends RegistryClient {
  /** Whether the repository serves the blob (HEAD: 200, or 404). */
  async hasBlob(repository: string, digest: string): Promise<boolean> {
    const res = await this.request('HEAD', `/v2/${repository}/blobs/${digest}`, repository, {}, { push: true, expect: [200, 404] });
    await res.body?.cancel();
    return res.status === 200;
  }

  /** Makes the blob available in the repository; `open` is called only when its bytes must be sent. */
  async pushBlob(repository: string, digest: string, size: number, open: () => Readable): Promise<BlobPush> {
    if (await this.hasBlob(repository, digest)) return 'present';
    const started = await this.request('POST', `/v2/${repository}/blobs/uploads/?mount=${encodeURIComponent(digest)}`, repository, {}, {
      push: true,
      expect: [201, 202],
      body: () => Buffer.alloc(0),
    });
    await started.body?.cancel();
    if (started.status === 201) return 'mounted';
    const location = started.headers.get('location');
    if (!location) throw new RegistryResponseError(`POST /v2/${repository}/blobs/uploads/: answered 202 without a Location`);
    const target = new URL(location, this.baseUrl);
    target.searchParams.set('digest', digest);
    let opened: Readable | undefined;
    const res = await this.request('PUT', target.href, repository, { 'Content-Type': 'application/octet-stream', 'Content-Length': String(size) }, {
      push: true,
      expect: [201],
      body: () => {
        opened?.destroy();
        return (opened = open());
      },
    }).finally(() => opened?.destroy());
    await res.body?.cancel();
    return 'uploaded';
  }

  /**
   * PUT of a manifest under a tag or its digest; the registry must agree on the digest of the bytes.
   * `subject`: the OCI-Subject the registry answered (it indexed the manifest as a referrer of it).
   */
  async putManifest(repository: string, reference: string, bytes: Buffer, mediaType: string): Promise<{ subject?: string }> {
    const res = await this.request('PUT', `/v2/${repository}/manifests/${reference}`, repository, { 'Content-Type': mediaType }, {
      push: true,
      expect: [201],
      body: () => bytes,
    });
    await res.body?.cancel();
    const digest = reference.includes(':') ? reference : digestOf(bytes, 'sha256');
    const answered = res.headers.get('docker-content-digest');
    if (answered && answered !== digest) {
      throw new RegistryResponseError(`PUT /v2/${repository}/manifests/${reference}: the registry stored ${answered}, not ${digest}`);
    }
    const subject = res.headers.get('oci-subject');
    return subject ? { subject } : {};
  }
}
