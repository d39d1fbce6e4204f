// EndpointStore: the webhook endpoints, one document in storage (every replica sees the same), read
// again only when its stamp changed. A namespace's endpoints hear of its repositories; global ones (no
// namespace) of every repository and of collections. The secret is returned once, at creation; stored
// sealed (storage's SecretSeal), shown to nobody afterwards.
import { randomBytes } from 'node:crypto';
import type { Lock, SecretSeal, StorageDriver } from '../storage/index.ts';
import type { DestinationPolicy } from './destination.ts';
import { DEFAULT_EVENT_TYPES, EVENT_TYPES } from './envelope.ts';
import { WebhookError } from './errors.ts';
import { paths } from './paths.ts';

/** What anyone allowed to see an endpoint sees: never its secret. */
export interface EndpointView {
  id: string;
  /** Undefined: a global endpoint (registry admins'). */
  namespace?: string;
  url: string;
  events: string[];
  createdAt: string;
  createdBy?: string;
}

export interface Endpoint extends EndpointView {
  /** The secret, sealed. */
  sealedSecret: string;
}

export interface NewEndpoint {
  namespace?: string;
  url: string;
  events?: string[];
  createdBy?: string;
}

export const MAX_ENDPOINTS = 1000;
export const MAX_ENDPOINTS_PER_NAMESPACE = 50;
const MAX_URL_LENGTH = 2048;
const NAMESPACE_RE = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;

export function viewOf(endpoint: Endpoint): EndpointView {
  const { sealedSecret: _sealed, ...view } = endpoint;
  return view;
}

export class EndpointStore {
  private cached?: { stamp: string; endpoints: Endpoint[]; readAt: number };

  constructor(
    private readonly driver: StorageDriver,
    private readonly lock: Lock,
    private readonly seal: SecretSeal,
    private readonly destinations: DestinationPolicy,
  ) {}

  /** Every endpoint as storage holds it now: one small read (the stamp) while nothing changed. */
  async all(): Promise<Endpoint[]> {
    const stamp = (await this.driver.getContent(paths.stamp))?.toString() ?? '';
    if (this.cached?.stamp === stamp) {
      this.cached.readAt = Date.now();
      return this.cached.endpoints;
    }
    const raw = await this.driver.getContent(paths.endpoints);
    const endpoints = raw ? ((JSON.parse(raw.toString()) as { endpoints: Endpoint[] }).endpoints ?? []) : [];
    this.cached = { stamp, endpoints, readAt: Date.now() };
    return endpoints;
  }

  /** For pulls (one per manifest served): the list read at most `maxAgeMs` ago, rather than a read per pull. */
  async recent(maxAgeMs: number): Promise<Endpoint[]> {
    if (this.cached && Date.now() - this.cached.readAt < maxAgeMs) return this.cached.endpoints;
    return this.all();
  }

  async get(id: string): Promise<Endpoint | undefined> {
    return (await this.all()).find((e) => e.id === id);
  }

  /** Adds an endpoint after checking its destination; the secret is in the answer and nowhere else in the clear. */
  async add(request: NewEndpoint): Promise<{ endpoint: EndpointView; secret: string }> {
    const url = this.checkedUrl(request.url);
    const events = checkedEvents(request.events ?? DEFAULT_EVENT_TYPES);
    if (request.namespace !== undefined && !NAMESPACE_RE.test(request.namespace)) {
      throw new WebhookError('INVALID', `${JSON.stringify(request.namespace.slice(0, 100))} is not a namespace`);
    }
    const global = events.filter((e) => e === 'gc' || e === 'replication');
    if (request.namespace !== undefined && global.length > 0) {
      throw new WebhookError('INVALID', `${global.join(' and ')} events are for global endpoints (a collection or a replication rule is not any namespace's)`);
    }
    await this.destinations.check(url);
    const secret = randomBytes(32).toString('base64url');
    const endpoint: Endpoint = {
      id: randomBytes(8).toString('hex'),
      ...(request.namespace !== undefined ? { namespace: request.namespace } : {}),
      url: url.href,
      events,
      createdAt: new Date().toISOString(),
      ...(request.createdBy ? { createdBy: request.createdBy } : {}),
      sealedSecret: await this.seal.seal(secret),
    };
    await this.change((endpoints) => {
      if (endpoints.length >= MAX_ENDPOINTS) throw new WebhookError('TOO_MANY', `the registry has ${MAX_ENDPOINTS} endpoints already`);
      if (endpoints.filter((e) => e.namespace === request.namespace).length >= MAX_ENDPOINTS_PER_NAMESPACE) {
        throw new WebhookError('TOO_MANY', `${request.namespace ?? 'the global list'} has ${MAX_ENDPOINTS_PER_NAMESPACE} endpoints already`);
      }
      return [...endpoints, endpoint];
    });
    return { endpoint: viewOf(endpoint), secret };
  }

  /** Removes an endpoint (its queue and log are the caller's to drop). Returns it, or undefined when there was none. */
  async remove(id: string): Promise<Endpoint | undefined> {
    let removed: Endpoint | undefined;
    await this.change((endpoints) => {
      removed = endpoints.find((e) => e.id === id);
      return endpoints.filter((e) => e.id !== id);
    });
    return removed;
  }

  /** The secret in the clear, for signing (server code only); undefined when the sealing key changed since. */
  secretOf(endpoint: Endpoint): Promise<string | undefined> {
    return this.seal.open(endpoint.sealedSecret);
  }

  private checkedUrl(text: string): URL {
    if (typeof text !== 'string' || text.length > MAX_URL_LENGTH) throw new WebhookError('INVALID', `the URL must be text of at most ${MAX_URL_LENGTH} characters`);
    let url: URL;
    try {
      url = new URL(text);
    } catch {
      throw new WebhookError('INVALID', 'the URL is not an absolute URL');
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new WebhookError('INVALID', 'the URL must be http or https');
    // Credentials in the URL would be shown in every listing: the signature is how a receiver trusts us.
    if (url.username || url.password) throw new WebhookError('INVALID', 'the URL must not carry credentials');
    if (url.hash) throw new WebhookError('INVALID', 'the URL must not have a fragment');
    return url;
  }

  private async change(fn: (endpoints: Endpoint[]) => Endpoint[]): Promise<void> {
    await this.lock.run('webhooks:endpoints', async () => {
      this.cached = undefined;
      const next = fn(await this.all());
      await this.driver.putContent(paths.endpoints, JSON.stringify({ endpoints: next }));
      await this.driver.putContent(paths.stamp, randomBytes(12).toString('hex'));
      this.cached = undefined;
    });
  }
}

function checkedEvents(events: unknown): string[] {
  const known: readonly string[] = EVENT_TYPES;
  if (!Array.isArray(events) || events.length === 0) throw new WebhookError('INVALID', `events: a list of one or more of ${EVENT_TYPES.join(', ')}`);
  for (const event of events) {
    if (typeof event !== 'string' || !known.includes(event)) {
      throw new WebhookError('INVALID', `events: ${JSON.stringify(String(event).slice(0, 40))} is not one of ${EVENT_TYPES.join(', ')}`);
    }
  }
  return [...new Set(events as string[])];
}
