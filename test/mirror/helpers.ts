// What the mirror suites share: a Berth whose mirrors point at upstreams the test started, and the
// upstream's access log read as the requests it counts.
import { createHash } from 'node:crypto';
import { statSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { startBerth, type TestBerth } from '../helpers/berth.ts';
import { busyboxImage, type BusyboxImage } from '../helpers/busybox.ts';
import { removeDir, Skopeo, tempDir } from '../helpers/clients.ts';
import { startDistribution, type TestDistribution } from '../helpers/distribution.ts';
import { Registry, sha256, type RawResponse } from '../helpers/registry.ts';

/** BERTH_MIRRORS for the given mirrors. */
export function mirrorsEnv(mirrors: object[]): Record<string, string> {
  return { BERTH_MIRRORS: JSON.stringify(mirrors) };
}

export interface MirrorSuite {
  upstream: TestDistribution;
  berth: TestBerth;
  /** A client of the upstream (to push what the mirror will pull). */
  origin: UpstreamRegistry;
  /** A client of the Berth. */
  mirror: Registry;
}

/**
 * A Distribution upstream and a Berth mirroring it (BERTH_MIRRORS from `mirrors`, given the upstream's
 * URL, and `env`), started before the suite's tests and stopped after them.
 */
export function useMirror(mirrors: (upstreamUrl: string) => object[], env: Record<string, string> = {}): MirrorSuite {
  const suite = { origin: new UpstreamRegistry('http://127.0.0.1:0'), mirror: new Registry('http://127.0.0.1:0') } as MirrorSuite;
  before(async () => {
    suite.upstream = await startDistribution();
    suite.origin.base = suite.upstream.url;
    suite.berth = await startBerth({ env: { ...mirrorsEnv(mirrors(suite.upstream.url)), ...env } });
    suite.mirror.base = suite.berth.url;
  });
  after(async () => {
    await suite.berth?.destroy();
    await suite.upstream?.stop();
  });
  return suite;
}

/** Copies the busybox image into the upstream as library/busybox:latest, where Docker Hub would hold it. */
export async function seedBusybox(upstream: TestDistribution, image: BusyboxImage, skopeo: Skopeo): Promise<void> {
  const dir = tempDir('mirror-archive');
  try {
    writeFileSync(join(dir, 'busybox.tar'), await image.archive(['busybox:latest']));
    await skopeo.run(['copy', '--dest-tls-verify=false', `docker-archive:${join(dir, 'busybox.tar')}`, `docker://${upstream.host}/library/busybox:latest`]);
  } finally {
    removeDir(dir);
  }
}

/** A fresh Distribution holding a new busybox image (named for the suite) as library/busybox:latest. */
export async function startBusyboxUpstream(name: string): Promise<{ upstream: TestDistribution; image: BusyboxImage }> {
  const upstream = await startDistribution();
  const image = await busyboxImage(name);
  const skopeo = new Skopeo();
  try {
    await seedBusybox(upstream, image, skopeo);
  } finally {
    skopeo.cleanup();
  }
  return { upstream, image };
}

/** The upstream requests (method and path) logged since `from` lines, e.g. `GET /v2/x/blobs/sha256:…`. */
export function upstreamRequests(upstream: TestDistribution, from = 0): string[] {
  return upstream.accessLog
    .slice(from)
    .map((line) => /"([A-Z]+) (\S+) HTTP/.exec(line))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => `${m[1]} ${m[2]}`);
}

/** GET of a manifest with the Accept a docker client sends. */
export function getManifest(registry: Registry, name: string, ref: string, headers: Record<string, string> = {}): Promise<RawResponse> {
  return registry.request('GET', `/v2/${name}/manifests/${ref}`, {
    headers: {
      Accept: 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json',
      ...headers,
    },
  });
}

/** The value of a counter in Berth's /metrics, 0 when absent. */
export async function metric(registry: Registry, name: string, labels: Record<string, string>): Promise<number> {
  const text = (await registry.request('GET', '/metrics')).text;
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    if (wanted.every((w) => line.includes(w))) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return 0;
}

/** A client of Distribution, which opens a session for a monolithic POST: blobs go as POST, then PUT with the bytes. */
export class UpstreamRegistry extends Registry {
  constructor(
    base: string,
    private readonly headers: Record<string, string> = {},
  ) {
    super(base);
  }

  override request(method: string, path: string, options: { headers?: Record<string, string>; body?: Buffer | string } = {}): Promise<RawResponse> {
    return super.request(method, path, { ...options, headers: { ...this.headers, ...options.headers } });
  }

  override async pushBlob(name: string, data: Buffer | string): Promise<string> {
    const digest = sha256(data);
    const location = new URL(await this.startUpload(name), this.base);
    location.searchParams.set('digest', digest);
    const res = await this.request('PUT', location.href, { body: data, headers: { 'Content-Type': 'application/octet-stream' } });
    if (res.status !== 201) throw new Error(`blob push failed: ${res.status} ${res.text}`);
    return digest;
  }
}

/** Whether Berth's storage holds the blob's bytes (under any repository). */
export function storedInBerth(berth: TestBerth, digest: string): boolean {
  const hex = digest.slice('sha256:'.length);
  try {
    return statSync(join(berth.dataDir, 'blobs', 'sha256', hex.slice(0, 2), hex, 'data')).isFile();
  } catch {
    return false;
  }
}

/**
 * A GET whose body is hashed as it arrives (64 MiB never held whole); a cut connection resolves with
 * complete false. `onBytes` hears the bytes received so far, and the Content-Length, as they come.
 */
export function hashedGet(
  url: string,
  onBytes?: (bytes: number, contentLength?: number, status?: number, head?: string) => void,
): Promise<{ status: number; digest: string; bytes: number; complete: boolean }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent: false }, (res) => {
      const hash = createHash('sha256');
      let bytes = 0;
      let head = '';
      res.on('data', (c: Buffer) => {
        hash.update(c);
        bytes += c.length;
        if (head.length < 200) head += c.subarray(0, 200).toString('latin1');
        onBytes?.(bytes, res.headers['content-length'] === undefined ? undefined : Number(res.headers['content-length']), res.statusCode, head);
      });
      let settled = false;
      const done = (complete: boolean) => !settled && (settled = true) && resolve({ status: res.statusCode ?? 0, digest: `sha256:${hash.digest('hex')}`, bytes, complete });
      res.on('end', () => done(res.complete));
      res.on('error', () => done(false));
      res.on('aborted', () => done(false));
    });
    req.on('error', reject);
    req.end();
  });
}
