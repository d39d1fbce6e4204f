// Pushing to a registry over the distribution spec's push flow, with the same authentication as a pull
// (a Bearer token for `repository:<name>:pull,push` from the realm, or Basic): a blob already there is
// skipped (HEAD), one the registry holds elsewhere is mounted (POST ?mount= without from: Berth links it
// when the caller may pull it somewhere; other registries open a session instead), else it is uploaded:
// in one PUT whose body streams from its source, or, past PUSH_CHUNK_BYTES, in PATCHes of that size and
// a closing PUT, so that a connection broken midway costs the chunk it carried, not the blob: the upload's
// status (GET, its Range) says where to go on from. Manifests are PUT as they are, byte for byte.
import { Readable } from 'node:stream';
import { digestOf } from './digest.ts';
import { RegistryRequestError, RegistryResponseError } from './errors.ts';
import { RegistryClient } from './registry.ts';

/** Blobs larger than this are sent in chunks of this size (or of the OCI-Chunk-Min-Length the registry asks for). */
const PUSH_CHUNK_BYTES = 64 * 1024 * 1024;
/** The largest chunk a registry's OCI-Chunk-Min-Length makes us send (a larger one: the blob whole). */
const MAX_CHUNK_BYTES = 1024 * 1024 * 1024;
/** Times one blob's upload goes on from the registry's offset after a chunk's connection broke (or a 5xx). */
const MAX_CHUNK_RESUMES = 5;

/** A blob's bytes from `offset` on (called again for each chunk, and after a break). */
type BlobBytes = (offset: number) => Readable;

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
  async pushBlob(repository: string, digest: string, size: number, open: BlobBytes): Promise<BlobPush> {
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
    let target = new URL(location, this.baseUrl);
    // The spec's OCI-Chunk-Min-Length: every chunk but the last at least that long.
    const minimum = Number(started.headers.get('oci-chunk-min-length') ?? 0);
    const chunkBytes = Number.isSafeInteger(minimum) && minimum > PUSH_CHUNK_BYTES ? minimum : PUSH_CHUNK_BYTES;
    const whole = size <= chunkBytes || chunkBytes > MAX_CHUNK_BYTES;
    if (!whole) target = await this.sendChunks(repository, target, size, chunkBytes, open);
    target.searchParams.set('digest', digest);
    let opened: Readable | undefined;
    const res = await this.request('PUT', target.href, repository, { 'Content-Type': 'application/octet-stream', 'Content-Length': String(whole ? size : 0) }, {
      push: true,
      expect: [201],
      body: () => {
        opened?.destroy();
        return whole ? (opened = open(0)) : Buffer.alloc(0);
      },
    }).finally(() => opened?.destroy());
    await res.body?.cancel();
    return 'uploaded';
  }

  /**
   * The blob's bytes in PATCHes of `chunkBytes` (each with its Content-Range); after a break or a 5xx
   * the upload's status says where the registry stands, and the bytes go on from there. The URL to close
   * the upload at.
   */
  private async sendChunks(repository: string, upload: URL, size: number, chunkBytes: number, open: BlobBytes): Promise<URL> {
    let target = upload;
    let offset = 0;
    for (let resumes = 0; offset < size; ) {
      const end = Math.min(size, offset + chunkBytes);
      const from = offset;
      let opened: Readable | undefined;
      try {
        const headers = { 'Content-Type': 'application/octet-stream', 'Content-Length': String(end - from), 'Content-Range': `${from}-${end - 1}` };
        const res = await this.request('PATCH', target.href, repository, headers, {
          push: true,
          expect: [202],
          body: () => {
            opened?.destroy();
            opened = open(from);
            return Readable.from(take(opened, end - from));
          },
        }).finally(() => opened?.destroy());
        await res.body?.cancel();
        target = nextLocation(res, target);
        offset = end;
      } catch (err) {
        // Broken, failed on the registry's side, or at an offset it does not hold (416: it may have kept
        // more of a broken chunk than it said then): its status says where to go on from.
        const broken = err instanceof RegistryRequestError && (err.status === 0 || err.status === 416 || err.status >= 500);
        if (!broken || resumes >= MAX_CHUNK_RESUMES) throw err;
        resumes++;
        // A registry that cannot say where the upload stands (Distribution gives up an upload whose
        // PATCH broke: 404 BLOB_UPLOAD_INVALID) fails it as the break did: the blob is sent again whole.
        const status = await this.request('GET', target.href, repository, {}, { push: true, expect: [204] }).catch(() => {
          throw err;
        });
        await status.body?.cancel();
        target = nextLocation(status, target);
        // "0-N": N + 1 bytes received ("0-0" is read as none: a chunk never leaves a single byte behind).
        const range = /^(?:bytes=)?0-(\d+)$/.exec(status.headers.get('range') ?? '');
        offset = range && range[1] !== '0' ? Number(range[1]) + 1 : 0;
        if (offset > size) throw new RegistryResponseError(`GET ${target.href}: the upload holds ${offset} bytes of a ${size}-byte blob`);
      }
    }
    return target;
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

/** The upload's next URL: its Location when the registry answered one (the spec's rule), else the same. */
function nextLocation(res: Response, current: URL): URL {
  const location = res.headers.get('location');
  return location ? new URL(location, current) : current;
}

/** The first `length` bytes of `source`. */
async function* take(source: Readable, length: number): AsyncGenerator<Buffer> {
  let left = length;
  for await (const chunk of source as AsyncIterable<Buffer>) {
    if (chunk.length >= left) {
      yield chunk.subarray(0, left);
      return;
    }
    left -= chunk.length;
    yield chunk;
  }
}
