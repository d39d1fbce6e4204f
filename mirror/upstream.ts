// The upstream registry of one mirror, as its client: manifests (HEAD and GET) and blobs (GET, from an
// offset), with the Docker token flow. Credentials go only to the upstream's own host and to the token
// realms the mirror lists: a realm an upstream names on any other host is asked anonymously, so an
// upstream cannot collect them (Distribution's proxy sent them to any realm, CVE-2026-33540). The mirror
// and the replication room's pull rules both read through it.
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
// The challenge parser alone, not the client's door: that brings the runtime client (progress bars, unpacking)
// into every server that mirrors.
import { parseAuthChallenges, type AuthChallenge } from '../client/registry.ts';
import type { MirrorConfig } from './config.ts';

/** The manifest types a pull through the mirror may bring back (Docker's and OCI's). */
export const MANIFEST_ACCEPT = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.docker.distribution.manifest.v2+json',
].join(', ');

const REDIRECTS = new Set([301, 302, 303, 307, 308]);
const MAX_REDIRECTS = 5;
/** Tokens kept per mirror (one per repository pulled, roughly): the oldest go first past this. */
const MAX_TOKENS = 1000;
/** An error body read for its spec errors; the rest is left unread. */
const MAX_ERROR_BYTES = 64 * 1024;
const USER_AGENT = 'berth-mirror';

/**
 * The upstream failed to answer usefully. `unavailable` (no answer, a timeout, 429, a 5xx): a cached tag
 * may be served stale. Otherwise the upstream refused (404, 401, …): its spec errors are passed on.
 */
export class UpstreamError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly unavailable: boolean,
    /** The upstream's own spec errors, when it sent them. */
    readonly errors: Array<{ code: string; message: string; detail?: unknown }> = [],
    /** The upstream's Retry-After (429, 503), in seconds, when it sent one. */
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
    this.name = 'UpstreamError';
  }
}

/** Bytes that do not hash to the digest that names them: never stored, never served whole. */
export class UpstreamDigestError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UpstreamDigestError';
  }
}

export interface UpstreamManifest {
  bytes: Buffer;
  mediaType: string;
  /** The upstream's Docker-Content-Digest, when it sent one. */
  digest?: string;
}

/** What a client of one upstream needs: where it is, the credentials, the realms they may also go to, patience. */
export type UpstreamSettings = Pick<MirrorConfig, 'upstream' | 'username' | 'password' | 'realms' | 'timeoutSeconds'>;

/** Whether a token realm may see an upstream's credentials: the upstream's own host (no weaker scheme), or a listed realm. */
export function credentialsMayGoTo(upstream: string, realms: readonly string[], realm: URL): boolean {
  const own = new URL(upstream);
  const sameHost = realm.hostname === own.hostname && (realm.protocol === 'https:' || own.protocol === 'http:');
  return sameHost || realms.includes(realm.origin);
}

interface CachedToken {
  authorization: string;
  expiresAt: number;
}

export class Upstream {
  readonly origin: string;
  private readonly tokens = new Map<string, CachedToken>();
  /** The last challenge per scope-less upstream: later requests authenticate up front. */
  private challenge?: AuthChallenge;
  /** Tokens fetched from a realm (tests read it: a cached token is not asked for again). */
  tokenRequests = 0;

  constructor(private readonly config: UpstreamSettings) {
    this.origin = config.upstream;
  }

  /** The digest a tag (or digest) names upstream now, by HEAD: it does not count against Docker Hub's pull limit. */
  async headManifest(name: string, reference: string): Promise<{ digest?: string; mediaType: string }> {
    const res = await this.request('HEAD', `/v2/${name}/manifests/${reference}`, name, { Accept: MANIFEST_ACCEPT });
    await res.body?.cancel();
    return { digest: res.headers.get('docker-content-digest') ?? undefined, mediaType: mediaTypeOf(res) };
  }

  async getManifest(name: string, reference: string, maxBytes: number): Promise<UpstreamManifest> {
    const res = await this.request('GET', `/v2/${name}/manifests/${reference}`, name, { Accept: MANIFEST_ACCEPT });
    const bytes = await readBounded(res, maxBytes, `manifest ${name}:${reference}`);
    return { bytes, mediaType: mediaTypeOf(res), digest: res.headers.get('docker-content-digest') ?? undefined };
  }

  /**
   * A small JSON document of the API (a tags list, a referrers index, the catalog), at most `maxBytes`;
   * with the path of the next page when the upstream's Link header names one. `scope` is the token's.
   */
  async document(path: string, scope: string, maxBytes: number): Promise<{ value: unknown; next?: string }> {
    const res = await this.requestScoped('GET', path, scope, { Accept: 'application/json' });
    const bytes = await readBounded(res, maxBytes, `GET ${path}`);
    let value: unknown;
    try {
      value = JSON.parse(bytes.toString('utf8'));
    } catch {
      throw new UpstreamError(`${this.origin}${path}: answered with no JSON`, 502, false);
    }
    const link = /<([^>]+)>\s*;\s*rel="?next"?/.exec(res.headers.get('link') ?? '')?.[1];
    const next = link && URL.canParse(link, this.origin) ? new URL(link, this.origin) : undefined;
    return { value, ...(next && next.origin === this.origin ? { next: next.pathname + next.search } : {}) };
  }

  /** The blob's size upstream (HEAD), for a HEAD of a blob not cached yet. */
  async blobSize(name: string, digest: string): Promise<number | undefined> {
    const res = await this.request('HEAD', `/v2/${name}/blobs/${digest}`, name, {});
    await res.body?.cancel();
    const length = res.headers.get('content-length');
    return length === null ? undefined : Number(length);
  }

  /**
   * A blob's bytes from `offset` on; `length` is the whole blob's size when the upstream said it. An
   * answer that starts elsewhere than asked is refused before its body is read.
   */
  async getBlob(name: string, digest: string, offset: number, signal: AbortSignal): Promise<{ body: Readable; size?: number }> {
    const headers: Record<string, string> = offset > 0 ? { Range: `bytes=${offset}-` } : {};
    const res = await this.request('GET', `/v2/${name}/blobs/${digest}`, name, headers, signal);
    let size: number | undefined;
    if (offset > 0) {
      const range = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(res.headers.get('content-range') ?? '');
      if (res.status !== 206 || !range || Number(range[1]) !== offset) {
        await res.body?.cancel();
        throw new UpstreamError(`${this.origin}: GET ${digest} did not resume at byte ${offset} (${res.status})`, res.status, true);
      }
      size = Number(range[3]);
    } else {
      const length = res.headers.get('content-length');
      const encoded = (res.headers.get('content-encoding') ?? 'identity') !== 'identity';
      if (length !== null && !encoded) size = Number(length);
    }
    const body = res.body ? Readable.fromWeb(res.body as WebReadableStream<Uint8Array>) : Readable.from([]);
    return { body, size };
  }

  /** One request with the authorization the upstream asks for; any status but 200 (206 to a Range) is an UpstreamError. */
  private request(method: string, path: string, name: string, headers: Record<string, string>, signal?: AbortSignal): Promise<Response> {
    return this.requestScoped(method, path, `repository:${name}:pull`, headers, signal);
  }

  private async requestScoped(method: string, path: string, scope: string, headers: Record<string, string>, signal?: AbortSignal): Promise<Response> {
    let res = await this.send(method, path, headers, this.challenge && (await this.authorization(this.challenge, scope)), signal);
    if (res.status === 401) {
      const challenge = parseAuthChallenges(res.headers.get('www-authenticate') ?? '').find((c) => c.scheme === 'bearer' || c.scheme === 'basic');
      await res.body?.cancel();
      if (challenge) {
        this.challenge = challenge;
        res = await this.send(method, path, headers, await this.authorization(challenge, scope), signal);
      }
    }
    if (res.status === 200 || (res.status === 206 && 'Range' in headers)) return res;
    throw await upstreamError(`${method} ${this.origin}${path}`, res);
  }

  /** Follows redirects itself: the Authorization goes to the upstream's origin only, never to a CDN it redirects to. */
  private async send(method: string, path: string, headers: Record<string, string>, authorization: string | undefined, signal?: AbortSignal): Promise<Response> {
    let target = `${this.origin}${path}`;
    for (let hops = 0; ; hops++) {
      const own = new URL(target).origin === this.origin;
      const res = await this.fetch(target, {
        method,
        redirect: 'manual',
        signal: signal ?? AbortSignal.timeout(this.config.timeoutSeconds * 1000),
        headers: { 'User-Agent': USER_AGENT, ...headers, ...(authorization && own ? { Authorization: authorization } : {}) },
      });
      const location = REDIRECTS.has(res.status) ? res.headers.get('location') : null;
      if (location === null) return res;
      await res.body?.cancel();
      if (hops >= MAX_REDIRECTS || !URL.canParse(location, target)) {
        throw new UpstreamError(`${method} ${this.origin}${path}: too many or unusable redirects`, res.status, true);
      }
      target = new URL(location, target).href;
    }
  }

  private async fetch(url: string, init: RequestInit): Promise<Response> {
    try {
      return await fetch(url, init);
    } catch (err) {
      const cause = (err as Error).cause instanceof Error ? ((err as Error).cause as Error).message : (err as Error).message;
      const timedOut = (err as Error).name === 'TimeoutError' || (err as Error).name === 'AbortError';
      throw new UpstreamError(`${new URL(url).origin}: ${timedOut ? 'no answer in time' : cause}`, 0, true);
    }
  }

  /** Whether a token realm may see the credentials: the upstream's own host (no weaker scheme), or one the mirror lists. */
  credentialsMayGoTo(realm: URL): boolean {
    return credentialsMayGoTo(this.origin, this.config.realms, realm);
  }

  private basic(): string | undefined {
    const { username, password } = this.config;
    return username === undefined ? undefined : `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
  }

  private async authorization(challenge: AuthChallenge, scope: string): Promise<string | undefined> {
    if (challenge.scheme === 'basic') return this.basic();
    const realm = challenge.params.realm;
    if (!realm || !URL.canParse(realm)) throw new UpstreamError(`${this.origin}: a Bearer challenge without a usable realm`, 401, false);
    const service = challenge.params.service;
    const key = `${realm} ${service ?? ''} ${scope}`;
    const cached = this.tokens.get(key);
    if (cached && cached.expiresAt > Date.now()) return cached.authorization;

    const url = new URL(realm);
    if (service) url.searchParams.set('service', service);
    url.searchParams.set('scope', scope);
    const basic = this.credentialsMayGoTo(url) ? this.basic() : undefined;
    this.tokenRequests++;
    const res = await this.fetch(url.href, {
      redirect: 'error',
      signal: AbortSignal.timeout(this.config.timeoutSeconds * 1000),
      headers: { 'User-Agent': USER_AGENT, ...(basic ? { Authorization: basic } : {}) },
    });
    const endpoint = `token ${url.origin}${url.pathname}`;
    if (res.status !== 200) throw await upstreamError(endpoint, res);
    let body: { token?: unknown; access_token?: unknown; expires_in?: unknown };
    try {
      body = JSON.parse((await readBounded(res, MAX_ERROR_BYTES, endpoint)).toString()) as typeof body;
    } catch (err) {
      if (err instanceof UpstreamError) throw err;
      throw new UpstreamError(`${endpoint}: answered with no JSON token`, 502, true);
    }
    const token = body?.token ?? body?.access_token;
    if (typeof token !== 'string' || token === '') throw new UpstreamError(`${endpoint}: answered without a token`, 502, true);
    // The token spec's default lifetime is 60 s; renewed a little early.
    const seconds = typeof body.expires_in === 'number' && Number.isFinite(body.expires_in) ? body.expires_in : 60;
    const authorization = `Bearer ${token}`;
    this.tokens.delete(key);
    this.tokens.set(key, { authorization, expiresAt: Date.now() + Math.max(1, seconds - 5) * 1000 });
    if (this.tokens.size > MAX_TOKENS) this.tokens.delete(this.tokens.keys().next().value!);
    return authorization;
  }
}

function mediaTypeOf(res: Response): string {
  return (res.headers.get('content-type') ?? '').split(';')[0]!.trim();
}

/** The error for a status other than success: unavailable for none, 429 and 5xx; with the upstream's spec errors when it sent them. */
async function upstreamError(request: string, res: Response): Promise<UpstreamError> {
  let errors: UpstreamError['errors'] = [];
  try {
    const parsed = JSON.parse((await readBounded(res, MAX_ERROR_BYTES, request)).toString()) as { errors?: unknown };
    if (Array.isArray(parsed.errors)) {
      errors = parsed.errors
        .filter((e): e is { code: string; message?: unknown; detail?: unknown } => typeof e?.code === 'string')
        .slice(0, 10)
        .map((e) => ({ code: e.code.slice(0, 100), message: typeof e.message === 'string' ? e.message.slice(0, 500) : '', detail: e.detail ?? null }));
    }
  } catch {
    // not the spec's JSON: the status says enough
  }
  const unavailable = res.status === 429 || res.status >= 500;
  return new UpstreamError(`${request}: ${res.status}`, res.status, unavailable, errors, retryAfter(res.headers.get('retry-after')));
}

/** Retry-After as seconds (a number of seconds, or an HTTP date), when it is one. */
export function retryAfter(header: string | null): number | undefined {
  if (header === null || header.trim() === '') return undefined;
  if (/^\d+$/.test(header.trim())) return Number(header.trim());
  const at = Date.parse(header);
  return Number.isNaN(at) ? undefined : Math.max(0, Math.ceil((at - Date.now()) / 1000));
}

/** A response body read whole, refusing more than `limit` bytes. */
async function readBounded(res: Response, limit: number, what: string): Promise<Buffer> {
  if (Number(res.headers.get('content-length') ?? '0') > limit) {
    await res.body?.cancel();
    throw new UpstreamError(`${what}: larger than the ${limit} bytes accepted`, 502, false);
  }
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of (res.body ?? []) as AsyncIterable<Uint8Array>) {
    total += chunk.length;
    if (total > limit) throw new UpstreamError(`${what}: larger than the ${limit} bytes accepted`, 502, false);
    chunks.push(Buffer.from(chunk));
  }
  return Buffer.concat(chunks);
}
