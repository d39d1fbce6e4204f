// A thin HTTP client for the distribution API, used by the API tests to talk to a real Berth.
import { createHash } from 'node:crypto';
import { request as httpRequest, type Agent } from 'node:http';

export function sha256(data: Buffer | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

export function sha512(data: Buffer | string): string {
  return `sha512:${createHash('sha512').update(data).digest('hex')}`;
}

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
  text: string;
  json: any;
}

export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
export const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json';
export const DOCKER_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json';
export const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
export const OCI_LAYER = 'application/vnd.oci.image.layer.v1.tar+gzip';

export class Registry {
  /** Settable, so that a suite can create its client before its server has started. */
  constructor(public base: string) {}

  /** One HTTP request with node:http, so that HEAD lengths and exact headers are seen as sent. */
  request(
    method: string,
    path: string,
    options: { headers?: Record<string, string>; body?: Buffer | string; agent?: Agent } = {},
  ): Promise<RawResponse> {
    const url = new URL(path, this.base);
    return new Promise((resolve, reject) => {
      const body = options.body === undefined ? undefined : Buffer.from(options.body);
      const headers: Record<string, string> = { ...options.headers };
      // A body goes out with its length unless the caller frames it itself (Transfer-Encoding: chunked).
      if (body !== undefined && headers['Content-Length'] === undefined && headers['Transfer-Encoding'] === undefined) {
        headers['Content-Length'] = String(body.length);
      }
      // A fresh connection per request, unless the caller brings an agent (to reuse connections as a client would).
      const req = httpRequest(url, { method, headers, agent: options.agent ?? false }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const buffer = Buffer.concat(chunks);
          const text = buffer.toString('utf8');
          let json: any;
          try {
            json = text ? JSON.parse(text) : undefined;
          } catch {
            json = undefined;
          }
          const flat: Record<string, string> = {};
          for (const [k, v] of Object.entries(res.headers)) flat[k] = Array.isArray(v) ? v.join(', ') : String(v);
          resolve({ status: res.statusCode ?? 0, headers: flat, body: buffer, text, json });
        });
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end(body);
    });
  }

  /** Pushes a blob monolithically (POST ?digest=) and returns its digest. */
  async pushBlob(name: string, data: Buffer | string): Promise<string> {
    const digest = sha256(data);
    const res = await this.request('POST', `/v2/${name}/blobs/uploads/?digest=${digest}`, {
      body: data,
      headers: { 'Content-Type': 'application/octet-stream' },
    });
    if (res.status !== 201) throw new Error(`blob push failed: ${res.status} ${res.text}`);
    return digest;
  }

  async startUpload(name: string): Promise<string> {
    const res = await this.request('POST', `/v2/${name}/blobs/uploads/`);
    if (res.status !== 202) throw new Error(`upload start failed: ${res.status} ${res.text}`);
    return res.headers.location!;
  }

  async putManifest(name: string, reference: string, manifest: Buffer | string, mediaType: string): Promise<RawResponse> {
    return this.request('PUT', `/v2/${name}/manifests/${reference}`, {
      body: manifest,
      headers: { 'Content-Type': mediaType },
    });
  }

  /** Pushes config + layers and an OCI manifest for them; returns the manifest bytes and digest. */
  async pushImage(
    name: string,
    tag: string,
    options: { layers?: string[]; config?: object; mediaType?: string; extra?: object } = {},
  ): Promise<{ manifest: Buffer; digest: string; config: string; layers: string[] }> {
    const configBytes = JSON.stringify(options.config ?? { architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } });
    const config = await this.pushBlob(name, configBytes);
    const layerData = options.layers ?? [`layer of ${name}:${tag}`];
    const layers: string[] = [];
    for (const data of layerData) layers.push(await this.pushBlob(name, data));
    const mediaType = options.mediaType ?? OCI_MANIFEST;
    const docker = mediaType === DOCKER_MANIFEST;
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType,
        config: { mediaType: docker ? 'application/vnd.docker.container.image.v1+json' : OCI_CONFIG, digest: config, size: Buffer.byteLength(configBytes) },
        layers: layers.map((digest, i) => ({
          mediaType: docker ? 'application/vnd.docker.image.rootfs.diff.tar.gzip' : OCI_LAYER,
          digest,
          size: Buffer.byteLength(layerData[i]!),
        })),
        ...options.extra,
      }),
    );
    const res = await this.putManifest(name, tag, manifest, mediaType);
    if (res.status !== 201) throw new Error(`manifest push failed: ${res.status} ${res.text}`);
    return { manifest, digest: sha256(manifest), config, layers };
  }
}

/** Asserts the spec's error body shape and returns the first error's code. */
export function errorCode(res: RawResponse): string {
  const errors = res.json?.errors;
  if (!Array.isArray(errors) || errors.length === 0) throw new Error(`no spec error body in ${res.status}: ${res.text}`);
  for (const e of errors) {
    if (typeof e.code !== 'string' || typeof e.message !== 'string' || !('detail' in e)) {
      throw new Error(`malformed error entry: ${JSON.stringify(e)}`);
    }
  }
  return errors[0].code;
}
