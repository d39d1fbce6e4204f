// The two ends of a copy. A pull rule reads a remote registry (mirror/'s Upstream: the token flow,
// credentials only to the remote's host and listed realms) and writes storage (transfer/'s storageTarget:
// the push rules of UploadStore and ManifestStore); a push rule reads storage and writes a remote
// (client/'s RegistryPusher, its credentials restricted the same way). Neither end knows the other.
import { PassThrough, Readable } from 'node:stream';
import { RegistryPusher } from '../client/index.ts';
import { credentialsMayGoTo, MANIFEST_ACCEPT, Upstream, UpstreamError } from '../mirror/index.ts';
import { MediaType, parseReference, tryParseDigest, type Digest, type Storage } from '../storage/index.ts';
import { storageTarget, type ImportTarget } from '../transfer/index.ts';
import { RunStopped } from './errors.ts';
import { isGlob, matchesRepository } from './filters.ts';
import type { Rule } from './rules.ts';

/** Names read from a remote (catalog, tags) are bounded: a rule is not a crawl. */
export const MAX_LISTED = 10_000;
const PAGE = 1000;
const MAX_LIST_BYTES = 4 * 1024 * 1024;
/** Referrers a fallback tag's index lists (the oldest go first past it). */
const MAX_FALLBACK_REFERRERS = 1000;
/** Times one blob's bytes are asked for again with Range within one attempt (see `resuming`). */
const MAX_BLOB_RESUMES = 5;

export interface Manifest {
  bytes: Buffer;
  mediaType: string;
}

export interface ReferrerEntry {
  digest: string;
  mediaType: string;
  size: number;
}

/** Where a rule copies from. */
export interface Source {
  repositories(patterns: readonly string[]): Promise<string[]>;
  tags(repository: string): Promise<string[]>;
  /** The digest a tag names now (a remote: one HEAD); undefined when it names none. */
  resolve(repository: string, tag: string): Promise<string | undefined>;
  manifest(repository: string, digest: string): Promise<Manifest>;
  /** The blob's bytes from `offset` (0 when not given) on. */
  blob(repository: string, digest: Digest, offset?: number): Promise<Readable>;
  referrers(repository: string, digest: string): Promise<ReferrerEntry[]>;
}

/** Where a rule copies to: an import's target, and what it holds already. */
export interface Destination extends ImportTarget {
  resolve(repository: string, tag: string): Promise<string | undefined>;
  /** The manifest stored under a digest, when it is there (a reduced index is read for its source). */
  manifest(repository: string, digest: string): Promise<Manifest | undefined>;
}

export function localSource(storage: Storage): Source {
  return {
    async repositories(patterns) {
      return (await storage.manifests.catalog()).filter((name) => patterns.some((p) => matchesRepository(name, p)));
    },
    tags: (repository) => storage.manifests.tags(repository),
    async resolve(repository, tag) {
      const reference = parseReference(tag);
      return reference && (await storage.manifests.get(repository, reference))?.digest;
    },
    async manifest(repository, digest) {
      const found = await storage.manifests.get(repository, { kind: 'digest', digest: tryParseDigest(digest)! });
      if (!found) throw new RunStopped('refused', `${repository}@${digest} is not stored here`);
      return { bytes: found.content, mediaType: found.mediaType };
    },
    async blob(_repository, digest, offset = 0) {
      if (offset === 0) return storage.blobs.open(digest);
      const size = await storage.blobs.size(digest);
      if (size === undefined || offset > size) throw new RunStopped('refused', `${digest.value} is not stored here whole`);
      return storage.blobs.open(digest, { start: offset, end: size - 1 });
    },
    async referrers(repository, digest) {
      return (await storage.manifests.referrers(repository, tryParseDigest(digest)!)).map((r) => ({ digest: r.digest, mediaType: r.mediaType, size: r.size }));
    },
  };
}

export function localDestination(storage: Storage): Destination {
  const target = storageTarget(storage);
  const source = localSource(storage);
  return {
    ...target,
    resolve: (repository, tag) => source.resolve(repository, tag),
    async manifest(repository, digest) {
      const found = await storage.manifests.get(repository, { kind: 'digest', digest: tryParseDigest(digest)! });
      return found && { bytes: found.content, mediaType: found.mediaType };
    },
  };
}

export interface RemoteCredentials {
  username?: string;
  password?: string;
}

export function remoteSource(rule: Rule, credentials: RemoteCredentials, maxManifestBytes: number): Source {
  const upstream = new Upstream({ upstream: rule.remote.url, realms: rule.remote.realms, timeoutSeconds: rule.remote.timeoutSeconds, ...credentials });

  /** Every page of a list, up to MAX_LISTED names. */
  async function list(first: string, scope: string, key: 'tags' | 'repositories'): Promise<string[]> {
    const names: string[] = [];
    let path: string | undefined = first;
    while (path !== undefined && names.length < MAX_LISTED) {
      const page: { value: unknown; next?: string } = await upstream.document(path, scope, MAX_LIST_BYTES);
      const found = (page.value as Record<string, unknown> | null)?.[key];
      if (Array.isArray(found)) names.push(...found.filter((n): n is string => typeof n === 'string'));
      path = page.next;
    }
    return names.slice(0, MAX_LISTED);
  }

  return {
    async repositories(patterns) {
      const named = patterns.filter((p) => !isGlob(p));
      if (named.length === patterns.length) return named;
      let catalog: string[];
      try {
        catalog = await list(`/v2/_catalog?n=${PAGE}`, 'registry:catalog:*', 'repositories');
      } catch (err) {
        if (err instanceof UpstreamError && !err.unavailable) {
          throw new RunStopped('refused', `${rule.remote.url} does not list its repositories (${err.status}): name them without * in the rule`);
        }
        throw err;
      }
      return [...new Set([...named, ...catalog.filter((name) => patterns.some((p) => isGlob(p) && matchesRepository(name, p)))])];
    },
    tags: (repository) => list(`/v2/${repository}/tags/list?n=${PAGE}`, `repository:${repository}:pull`, 'tags'),
    async resolve(repository, tag) {
      try {
        return (await upstream.headManifest(repository, tag)).digest;
      } catch (err) {
        if (err instanceof UpstreamError && err.status === 404) return undefined;
        throw err;
      }
    },
    async manifest(repository, digest) {
      const got = await upstream.getManifest(repository, digest, maxManifestBytes);
      return { bytes: got.bytes, mediaType: got.mediaType };
    },
    async blob(repository, digest, offset = 0) {
      const signal = AbortSignal.timeout(rule.remote.timeoutSeconds * 1000 * 20);
      const first = await upstream.getBlob(repository, digest.value, offset, signal);
      return Readable.from(resuming(first, offset, (at) => upstream.getBlob(repository, digest.value, at, signal)));
    },
    async referrers(repository, digest) {
      try {
        const { value } = await upstream.document(`/v2/${repository}/referrers/${digest}`, `repository:${repository}:pull`, MAX_LIST_BYTES);
        const manifests = (value as { manifests?: unknown } | null)?.manifests;
        return Array.isArray(manifests) ? manifests.filter((m): m is ReferrerEntry => typeof m?.digest === 'string' && typeof m.mediaType === 'string') : [];
      } catch (err) {
        if (!(err instanceof UpstreamError && (err.status === 404 || err.status === 405))) throw err;
      }
      // A registry without the referrers API (Distribution 2.x): the spec's fallback tag, if anyone wrote one.
      const parsed = tryParseDigest(digest);
      if (!parsed || (await this.resolve(repository, `${parsed.algorithm}-${parsed.hex}`)) === undefined) return [];
      const index = await upstream.getManifest(repository, `${parsed.algorithm}-${parsed.hex}`, MAX_LIST_BYTES);
      const manifests = (JSON.parse(index.bytes.toString('utf8')) as { manifests?: unknown }).manifests;
      return Array.isArray(manifests) ? manifests.filter((m): m is ReferrerEntry => typeof m?.digest === 'string' && typeof m.mediaType === 'string') : [];
    },
  };
}

/** The pusher with what a destination must also answer: what a tag names, a manifest by digest. */
class RemotePusher extends RegistryPusher {
  async headManifest(repository: string, reference: string): Promise<string | undefined> {
    const res = await this.request('HEAD', `/v2/${repository}/manifests/${reference}`, repository, { Accept: MANIFEST_ACCEPT }, { push: true, expect: [200, 404] });
    await res.body?.cancel();
    return res.status === 200 ? (res.headers.get('docker-content-digest') ?? undefined) : undefined;
  }
}

export function remoteDestination(rule: Rule, credentials: RemoteCredentials): Destination {
  const url = new URL(rule.remote.url);
  const pusher = new RemotePusher({
    registry: url.host,
    baseUrl: rule.remote.url,
    credentials: credentials.username === undefined ? undefined : { username: credentials.username, password: credentials.password ?? '' },
    userAgent: 'berth-replication',
    realmMayReceive: (realm) => credentialsMayGoTo(rule.remote.url, rule.remote.realms, realm),
  });
  /**
   * A registry without the referrers API (it answered no OCI-Subject) finds a referrer through the
   * spec's fallback: an index tagged <alg>-<hex> of the subject that lists its referrers.
   */
  async function fallbackTag(repository: string, bytes: Buffer, digest: string): Promise<void> {
    const manifest = JSON.parse(bytes.toString('utf8')) as { mediaType?: string; artifactType?: string; config?: { mediaType?: string }; annotations?: Record<string, string>; subject?: { digest?: string } };
    const subject = tryParseDigest(manifest.subject?.digest ?? '');
    if (!subject) return;
    const tag = `${subject.algorithm}-${subject.hex}`;
    const current = (await pusher.headManifest(repository, tag)) === undefined ? undefined : await pusher.getManifest(repository, tag);
    const index = current ? (JSON.parse(current.bytes.toString('utf8')) as { manifests?: Array<{ digest: string }> }) : {};
    const listed = index.manifests ?? [];
    if (listed.some((m) => m.digest === digest)) return;
    const descriptor = {
      mediaType: manifest.mediaType ?? MediaType.OciManifest,
      digest,
      size: bytes.length,
      ...(manifest.artifactType ?? manifest.config?.mediaType ? { artifactType: manifest.artifactType ?? manifest.config?.mediaType } : {}),
      ...(manifest.annotations ? { annotations: manifest.annotations } : {}),
    };
    const updated = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [...listed, descriptor].slice(-MAX_FALLBACK_REFERRERS) }));
    await pusher.putManifest(repository, tag, updated, MediaType.OciIndex);
  }

  return {
    pushBlob: (repository, digest, size, open) => pusher.pushBlob(repository, digest.value, size, open),
    async putManifest(repository, reference, bytes, mediaType) {
      const { subject } = await pusher.putManifest(repository, reference, bytes, mediaType);
      if (!subject && reference.includes(':') && bytes.includes('"subject"')) await fallbackTag(repository, bytes, reference);
    },
    resolve: (repository, tag) => pusher.headManifest(repository, tag),
    async manifest(repository, digest) {
      if ((await pusher.headManifest(repository, digest)) === undefined) return undefined;
      const got = await pusher.getManifest(repository, digest);
      return { bytes: got.bytes, mediaType: got.mediaType };
    },
  };
}

/**
 * A remote blob's bytes, asked for again with Range from where they stopped when the connection breaks
 * (or ends short of the size the remote announced) after bringing bytes, up to MAX_BLOB_RESUMES times:
 * a layer cut at 90% costs its last tenth, not all of it again. A remote that does not answer the Range
 * with its 206 fails the stream, and the copy tries the whole blob again, as before. Storage verifies
 * the digest of what it was given, whole.
 */
async function* resuming(first: RemoteBody, offset: number, reopen: (offset: number) => Promise<RemoteBody>): AsyncGenerator<Buffer> {
  // A first answer from an offset (a 206) says the whole size; one from 0 its own length.
  const size = first.size;
  let body = first.body;
  let sent = offset;
  for (let resumes = 0; ; resumes++) {
    const startedAt = sent;
    let cut: Error;
    try {
      for await (const chunk of body as AsyncIterable<Buffer>) {
        sent += chunk.length;
        if (size !== undefined && sent > size) throw new UpstreamError(`the remote sent more than the ${size} bytes it announced`, 0, false);
        yield chunk;
      }
      if (size === undefined || sent === size) return;
      cut = new Error(`the remote ended after ${sent} of ${size} bytes`);
    } catch (err) {
      if (err instanceof UpstreamError) throw err;
      cut = err as Error;
    }
    // Only a connection that brought bytes is asked again: one that breaks at once will again.
    if (sent === startedAt || resumes >= MAX_BLOB_RESUMES) throw new UpstreamError(`the source stream broke: ${cut.message}`, 0, true);
    let next: RemoteBody;
    try {
      next = await reopen(sent);
    } catch (err) {
      // A remote that answers the Range otherwise than with its 206 (200 whole, 416) refuses nothing: the
      // copy tries the whole blob again, as for any break (a 404, a 429 or a 5xx keeps its own meaning).
      if (err instanceof UpstreamError && (err.status < 300 || err.status === 416)) throw new UpstreamError(`the source stream broke, and ${err.message}`, 0, true);
      throw err;
    }
    if (size !== undefined && next.size !== undefined && next.size !== size) {
      next.body.destroy();
      throw new UpstreamError(`the remote now says ${next.size} bytes, first ${size}`, 0, true);
    }
    body = next.body;
  }
}

interface RemoteBody {
  body: Readable;
  size?: number;
}

/**
 * A stream whose bytes come later (`open` must answer at once, the source opens asynchronously). A
 * source cut midway fails it as an upstream without an answer, so the copy tries the blob again.
 */
export function deferred(opening: () => Promise<Readable>): Readable {
  const out = new PassThrough();
  opening().then(
    (source) => {
      // A reader that stops early (a chunk of a push needs only its part) lets the source go too.
      if (out.destroyed) return void source.destroy();
      out.once('close', () => source.destroy());
      source.once('error', (err: Error) => out.destroy(err instanceof UpstreamError ? err : new UpstreamError(`the source stream broke: ${err.message}`, 0, true)));
      source.pipe(out);
    },
    (err: Error) => out.destroy(err),
  );
  return out;
}
