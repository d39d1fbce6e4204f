// A client of one registry's distribution API, with authentication as docker does it: a request that
// answers 401 with `WWW-Authenticate: Bearer realm=…,service=…,scope=…` is retried with a token from the
// realm (asked with Basic credentials when we have them, anonymously otherwise), cached per scope until
// it expires; a `Basic` challenge is answered with the credentials themselves.
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import type { Credentials } from './credentials.ts';
import { digestAlgorithm, digestOf, verifyDigest } from './digest.ts';
import { RegistryRequestError, RegistryResponseError } from './errors.ts';
import { DOCKER_HUB } from './reference.ts';

export const ManifestMediaTypes = {
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
} as const;

const ACCEPT_MANIFESTS = Object.values(ManifestMediaTypes).join(', ');

/** Statuses that send a request elsewhere (Location). */
const REDIRECTS = new Set([301, 302, 303, 307, 308]);
/** Redirects followed for one request (a blob may go registry → storage → CDN); fetch's own is 20. */
const MAX_REDIRECTS = 10;

/** Manifests and configs are read into memory, so they are bounded (Berth's own manifest limit). */
export const MAX_DOCUMENT_BYTES = 4 * 1024 * 1024;

export interface AuthChallenge {
  scheme: string;
  params: Record<string, string>;
}

/** Parses a WWW-Authenticate header: `Bearer realm="…",service="…",scope="…"` (several challenges allowed). */
export function parseAuthChallenges(header: string): AuthChallenge[] {
  const challenges: AuthChallenge[] = [];
  let current: AuthChallenge | undefined;
  let i = 0;
  const skip = (chars: RegExp) => {
    while (i < header.length && chars.test(header[i]!)) i++;
  };
  for (;;) {
    skip(/[\s,]/);
    const token = /^[\w!#$%&'*+.^`|~-]+/.exec(header.slice(i))?.[0];
    if (!token) break;
    i += token.length;
    skip(/ /);
    if (header[i] !== '=' || !current) {
      current = { scheme: token.toLowerCase(), params: {} };
      challenges.push(current);
      continue;
    }
    i++;
    skip(/ /);
    let value = '';
    if (header[i] === '"') {
      for (i++; i < header.length && header[i] !== '"'; i++) value += header[i] === '\\' ? header[++i] ?? '' : header[i];
      i++;
    } else {
      const bare = /^[^\s,]*/.exec(header.slice(i))![0];
      value = bare;
      i += bare.length;
    }
    current.params[token.toLowerCase()] = value;
  }
  return challenges;
}

export interface FetchedDocument {
  bytes: Buffer;
  mediaType: string;
  digest: string;
}

/** Which base URL a registry host is reached at: plain HTTP for loopback and the listed insecure hosts. */
export function registryBaseUrl(registry: string, insecureRegistries: readonly string[] = []): string {
  if (registry === DOCKER_HUB) return 'https://registry-1.docker.io';
  const host = registry.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
  const loopback = host === 'localhost' || /^127\.\d+\.\d+\.\d+$/.test(host) || host === '::1';
  return `${loopback || insecureRegistries.includes(registry) ? 'http' : 'https'}://${registry}`;
}

export interface RegistryClientOptions {
  registry: string;
  baseUrl: string;
  credentials?: Credentials;
  userAgent?: string;
  /**
   * Which token realms may see the credentials (a replication rule's: the registry's own host and the
   * realms it lists); every realm when absent, as docker login does.
   */
  realmMayReceive?: (realm: URL) => boolean;
}

export interface RequestOptions {
  /** A token for pull and push (a token realm grants per scope). */
  push?: boolean;
  /** The body, made anew for each attempt (a stream cannot be sent twice: after a 401, one is opened again). */
  body?: () => Buffer | Readable;
  /** The statuses that answer this request; without them, a GET's (200, or 206 to a Range). */
  expect?: readonly number[];
}

interface CachedToken {
  token: string;
  expiresAt: number;
}

export class RegistryClient {
  readonly registry: string;
  readonly baseUrl: string;
  private readonly credentials?: Credentials;
  private readonly userAgent: string;
  private readonly realmMayReceive: (realm: URL) => boolean;
  /** Bearer tokens by realm, service and scope. */
  private readonly tokens = new Map<string, CachedToken>();
  /** The challenge this registry last answered with, so later requests authenticate up front. */
  private challenge?: AuthChallenge;
  /** How many tokens were fetched from a realm (tests read it: a cached token is not asked for again). */
  tokenRequests = 0;

  constructor(options: RegistryClientOptions) {
    this.registry = options.registry;
    this.baseUrl = options.baseUrl.replace(/\/$/, '');
    this.credentials = options.credentials;
    this.userAgent = options.userAgent ?? 'berth';
    this.realmMayReceive = options.realmMayReceive ?? (() => true);
  }

  /** GET /v2/: checks that the registry answers and, with credentials, that it accepts them. */
  async ping(): Promise<void> {
    const res = await this.request('GET', '/v2/', undefined);
    await res.body?.cancel();
  }

  async getManifest(repository: string, reference: string): Promise<FetchedDocument> {
    // A digest (from an index the registry served) goes into the URL only when it is one.
    if (reference.includes(':')) digestAlgorithm(reference, `manifest ${repository}@${reference}`);
    const res = await this.request('GET', `/v2/${repository}/manifests/${reference}`, repository, { Accept: ACCEPT_MANIFESTS });
    const bytes = await readBounded(res, `manifest ${repository}:${reference}`);
    const mediaType = (res.headers.get('content-type') ?? '').split(';')[0]!.trim() || sniffMediaType(bytes);
    const headerDigest = res.headers.get('docker-content-digest') ?? undefined;
    const pinned = reference.includes(':') ? reference : headerDigest;
    // By digest the bytes must hash to it; by tag, to what the registry says it served (when it says).
    const digest = pinned ?? digestOf(bytes);
    verifyDigest(bytes, digest, `manifest ${repository}@${digest}`);
    return { bytes, mediaType, digest };
  }

  /** A small blob (an image config) read whole and verified. */
  async getBlobBytes(repository: string, digest: string): Promise<Buffer> {
    const res = await this.request('GET', `/v2/${repository}/blobs/${digest}`, repository);
    const bytes = await readBounded(res, `blob ${digest}`);
    verifyDigest(bytes, digest, `blob ${repository}@${digest}`);
    return bytes;
  }

  /**
   * A blob as a stream, from `offset` on. `partial` tells whether the registry honoured the Range
   * (206); when it did not, the stream starts at byte 0. With the blob's `size` (its descriptor's), an
   * answer for other bytes than those asked (Content-Range, Content-Length) is refused before its body
   * is read, as is one the registry says is another blob (Docker-Content-Digest).
   */
  async getBlob(repository: string, digest: string, offset = 0, size?: number): Promise<{ body: Readable; partial: boolean }> {
    const headers: Record<string, string> = offset > 0 ? { Range: `bytes=${offset}-` } : {};
    const url = `${this.baseUrl}/v2/${repository}/blobs/${digest}`;
    const res = await this.request('GET', `/v2/${repository}/blobs/${digest}`, repository, headers);
    const mismatch = responseMismatch(res, `GET ${url}`);
    const served = res.headers.get('docker-content-digest');
    if (served && served !== digest) throw await mismatch(`answered Docker-Content-Digest ${served} for ${digest}`);
    if (res.status === 206) {
      // request() lets a 206 through only to a Range, so `offset` is what was asked.
      const contentRange = res.headers.get('content-range');
      const range = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(contentRange ?? '');
      const fits = range && Number(range[1]) === offset && (size === undefined || (Number(range[2]) === size - 1 && [String(size), '*'].includes(range[3]!)));
      if (!fits) throw await mismatch(`answered Content-Range ${contentRange ?? '(none)'} to Range ${headers.Range}${size === undefined ? '' : ` of ${size} bytes`}`);
    }
    const length = res.headers.get('content-length');
    const asked = size === undefined ? undefined : size - (res.status === 206 ? offset : 0);
    // A compressed answer (which fetch inflates) counts its length in other bytes.
    const encoded = (res.headers.get('content-encoding') ?? 'identity') !== 'identity';
    if (length !== null && asked !== undefined && !encoded && Number(length) !== asked) {
      throw await mismatch(`answered Content-Length ${length} where ${asked} bytes of ${digest} were asked for`);
    }
    const body = res.body ? Readable.fromWeb(res.body as WebReadableStream<Uint8Array>) : Readable.from([]);
    return { body, partial: res.status === 206 };
  }

  /**
   * One request, authenticated as the registry asks: an error status becomes a RegistryRequestError, a
   * success that answers another request (a 206 without Range, a 204) a RegistryResponseError.
   */
  protected async request(
    method: string,
    path: string,
    repository: string | undefined,
    headers: Record<string, string> = {},
    options: RequestOptions = {},
  ): Promise<Response> {
    const scope = repository ? `repository:${repository}:${options.push ? 'pull,push' : 'pull'}` : undefined;
    // An upload's Location may be a whole URL (another host, even); credentials go only to the registry's.
    const url = /^https?:\/\//.test(path) ? path : `${this.baseUrl}${path}`;
    const readOnly = method === 'GET' || method === 'HEAD';
    const send = async (): Promise<Response> => {
      const authorization = this.challenge ? await this.authorization(this.challenge, scope) : undefined;
      // Redirects are followed here, not by fetch: a loop is a clear error, never retried, and the
      // credentials go only to the registry itself (a blob's redirect to storage or a CDN gets none).
      // A write is not redirected: its body has been sent.
      let target = url;
      for (let hops = 0; ; hops++) {
        const own = new URL(target).origin === new URL(this.baseUrl).origin;
        const body = options.body?.();
        const res = await fetch(target, {
          method,
          redirect: 'manual',
          headers: { 'User-Agent': this.userAgent, ...headers, ...(authorization && own ? { Authorization: authorization } : {}) },
          ...(body === undefined ? {} : { body: body as BodyInit, duplex: 'half' }),
        } as RequestInit).catch((err: Error) => {
          throw new RegistryRequestError(`${method} ${url}: ${err.cause instanceof Error ? err.cause.message : err.message}`, 0);
        });
        const location = readOnly && REDIRECTS.has(res.status) ? res.headers.get('location') : null;
        if (location === null) return res;
        await res.body?.cancel();
        if (hops >= MAX_REDIRECTS) throw new RegistryResponseError(`${method} ${url}: more than ${MAX_REDIRECTS} redirects`);
        if (!URL.canParse(location, target)) throw new RegistryResponseError(`${method} ${url}: redirected to ${JSON.stringify(location)}, which is no URL`);
        target = new URL(location, target).href;
      }
    };
    let res = await send();
    if (res.status === 401) {
      const challenge = parseAuthChallenges(res.headers.get('www-authenticate') ?? '').find(
        (c) => c.scheme === 'bearer' || c.scheme === 'basic',
      );
      await res.body?.cancel();
      if (challenge && (challenge.scheme === 'bearer' || this.credentials)) {
        // A new challenge (or the first): forget tokens that the registry no longer takes.
        if (this.challenge) this.tokens.clear();
        this.challenge = challenge;
        res = await send();
      }
    }
    if (options.expect) {
      if (options.expect.includes(res.status)) return res;
      if (res.ok) throw await responseMismatch(res, `${method} ${url}`)(`answered ${res.status} ${res.statusText} (expected ${options.expect.join(' or ')})`);
      throw await requestError(method, url, res, this.credentials !== undefined);
    }
    // The distribution spec answers a GET with 200, or 206 to a Range: any other success is not an
    // answer to this request.
    const ranged = 'Range' in headers;
    if (res.status === 200 || (res.status === 206 && ranged)) return res;
    if (res.ok) {
      throw await responseMismatch(res, `${method} ${url}`)(
        `answered ${res.status} ${res.statusText} to a request ${ranged ? 'with' : 'without'} Range (expected 200${ranged ? ' or 206' : ''})`,
      );
    }
    throw await requestError(method, url, res, this.credentials !== undefined);
  }

  private async authorization(challenge: AuthChallenge, scope: string | undefined): Promise<string | undefined> {
    if (challenge.scheme === 'basic') return this.basic();
    const realm = challenge.params.realm;
    if (!realm) throw new RegistryRequestError(`${this.registry}: a Bearer challenge without a realm`, 401);
    const service = challenge.params.service;
    const wanted = scope ?? challenge.params.scope;
    const key = `${realm} ${service ?? ''} ${wanted ?? ''}`;
    const cached = this.tokens.get(key);
    if (cached && cached.expiresAt > Date.now()) return `Bearer ${cached.token}`;

    const tokenUrl = new URL(realm);
    const mayReceive = this.realmMayReceive(tokenUrl);
    const identityToken = mayReceive ? this.credentials?.identityToken : undefined;
    const basic = identityToken || !mayReceive ? undefined : this.basic();
    const request: RequestInit = { headers: { 'User-Agent': this.userAgent, ...(basic ? { Authorization: basic } : {}) } };
    if (identityToken) {
      // The OAuth2 form of the token spec: the refresh token docker login kept stands for the password.
      const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: identityToken, client_id: 'berth' });
      if (service) form.set('service', service);
      if (wanted) form.set('scope', wanted);
      request.method = 'POST';
      request.body = form;
    } else {
      if (service) tokenUrl.searchParams.set('service', service);
      if (wanted) tokenUrl.searchParams.set('scope', wanted);
    }
    this.tokenRequests++;
    const res = await fetch(tokenUrl, request).catch((err: Error) => {
      throw new RegistryRequestError(`token request to ${tokenUrl.origin}${tokenUrl.pathname}: ${err.message}`, 0);
    });
    const endpoint = `${request.method ?? 'GET'} ${tokenUrl.origin}${tokenUrl.pathname}`;
    if (!res.ok) throw await requestError(request.method ?? 'GET', `${tokenUrl.origin}${tokenUrl.pathname}`, res, this.credentials !== undefined);
    if (res.status !== 200) throw await responseMismatch(res, endpoint)(`answered ${res.status} ${res.statusText} (expected 200 and a token)`);
    let body: { token?: unknown; access_token?: unknown; expires_in?: unknown };
    try {
      body = JSON.parse((await readBounded(res, 'token response')).toString()) as typeof body;
    } catch (err) {
      if (err instanceof RegistryRequestError) throw err;
      throw new RegistryResponseError(`${endpoint}: answered with no JSON token`);
    }
    const token = body?.token ?? body?.access_token;
    if (typeof token !== 'string' || token === '') throw new RegistryResponseError(`${endpoint}: answered without a token`);
    // The token spec's default lifetime is 60 s; renew a little early.
    const lifetime = Math.max(1, (typeof body.expires_in === 'number' && Number.isFinite(body.expires_in) ? body.expires_in : 60) - 5) * 1000;
    this.tokens.set(key, { token, expiresAt: Date.now() + lifetime });
    return `Bearer ${token}`;
  }

  private basic(): string | undefined {
    if (!this.credentials) return undefined;
    return `Basic ${Buffer.from(`${this.credentials.username}:${this.credentials.password}`).toString('base64')}`;
  }
}

/** A maker of the error for an answer that does not match its request; the body is left unread. */
function responseMismatch(res: Response, request: string): (why: string) => Promise<RegistryResponseError> {
  return async (why) => {
    await res.body?.cancel();
    return new RegistryResponseError(`${request}: ${why}`);
  };
}

async function requestError(method: string, url: string, res: Response, hadCredentials: boolean): Promise<RegistryRequestError> {
  let detail = '';
  let code: string | undefined;
  try {
    const text = (await readBounded(res, 'error body', 64 * 1024)).toString();
    const errors = (JSON.parse(text) as { errors?: Array<{ code?: string; message?: string }> }).errors;
    if (errors?.length) {
      code = errors[0]!.code;
      detail = errors.map((e) => `${e.code ?? 'ERROR'}: ${e.message ?? ''}`).join('; ');
    }
  } catch {
    // not the spec's JSON: the status says enough
  }
  const hint = res.status === 401 ? (hadCredentials ? ' (the credentials were refused)' : ' (try berth login)') : '';
  const retryAfter = /^\d+$/.test(res.headers.get('retry-after') ?? '') ? Number(res.headers.get('retry-after')) : undefined;
  return new RegistryRequestError(`${method} ${url}: ${res.status} ${detail || res.statusText}${hint}`, res.status, code, retryAfter);
}

/** Reads a response body, refusing more than `limit` bytes. */
async function readBounded(res: Response, what: string, limit = MAX_DOCUMENT_BYTES): Promise<Buffer> {
  const declared = Number(res.headers.get('content-length') ?? '0');
  if (declared > limit) {
    await res.body?.cancel();
    throw new RegistryRequestError(`${what}: ${declared} bytes, more than the ${limit} accepted`, res.status);
  }
  const chunks: Buffer[] = [];
  let total = 0;
  if (res.body) {
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      total += chunk.length;
      if (total > limit) throw new RegistryRequestError(`${what}: more than the ${limit} bytes accepted`, res.status);
      chunks.push(Buffer.from(chunk));
    }
  }
  return Buffer.concat(chunks);
}

function sniffMediaType(bytes: Buffer): string {
  try {
    const doc = JSON.parse(bytes.toString()) as { mediaType?: string; manifests?: unknown };
    return doc.mediaType ?? (doc.manifests ? ManifestMediaTypes.ociIndex : ManifestMediaTypes.ociManifest);
  } catch {
    return '';
  }
}
