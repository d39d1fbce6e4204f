// The events room's front door: webhooks. The event source is a StorageListener (storage tells it of
// pushes, deletes, pulls and collections; it never imports this room), each event queued in storage for
// every endpoint that wants it, and a Deliverer that sends the queues in order, signed.
import type { BlockList } from 'node:net';
import { namespaceOf, type SecretSeal, type Lock, type RequestedBy, type StorageDriver, type StorageListener } from '../storage/index.ts';
import { Deliverer, type DeliverySettings, type Warn } from './delivery.ts';
import { DestinationPolicy } from './destination.ts';
import { EndpointStore, viewOf, type Endpoint, type EndpointView, type NewEndpoint } from './endpoints.ts';
import { EventFactory, type EventTarget, type RegistryEvent } from './envelope.ts';
import { WebhookError } from './errors.ts';
import { DeliveryLog, EventQueue, type DeliveryRecord } from './queue.ts';

export { WebhookError, type WebhookErrorCode } from './errors.ts';
export { EVENT_TYPES, DEFAULT_EVENT_TYPES, EVENTS_MEDIA_TYPE, type RegistryEvent, type EventTarget } from './envelope.ts';
export { signDelivery, verifyDelivery, SIGNATURE_HEADER, TIMESTAMP_HEADER } from './signature.ts';
export { nonPublicRange, DestinationPolicy } from './destination.ts';
export type { EndpointView, NewEndpoint } from './endpoints.ts';
export type { DeliveryRecord } from './queue.ts';

export interface WebhookOptions extends DeliverySettings {
  driver: StorageDriver;
  lock: Lock;
  /** BERTH_WEBHOOK_ALLOW as a list. */
  allow?: BlockList;
  queueLimit: number;
  /** Seals endpoint secrets: the storage's one seal (shared with replication and OpenID sign-in). */
  seal: SecretSeal;
  publicUrl?: string;
  /** The `source.addr` of events: this server's host:port. */
  sourceAddr: string;
  logger: Warn;
}

/** How old the endpoint list a pull event is matched against may be (a pull must not cost a storage read). */
const PULL_ENDPOINTS_MAX_AGE_MS = 1000;

export class Webhooks {
  readonly endpoints: EndpointStore;
  private readonly log: DeliveryLog;
  private readonly queue: EventQueue;
  private readonly deliverer: Deliverer;
  private readonly events: EventFactory;
  private readonly logger: Warn;

  constructor(options: WebhookOptions) {
    const destinations = new DestinationPolicy(options.allow);
    this.endpoints = new EndpointStore(options.driver, options.lock, options.seal, destinations);
    this.log = new DeliveryLog(options.driver, options.lock);
    this.queue = new EventQueue(options.driver, options.lock, options.queueLimit, this.log);
    this.deliverer = new Deliverer(this.endpoints, this.queue, this.log, destinations, options, options.logger);
    this.events = new EventFactory(options.publicUrl, options.sourceAddr);
    this.logger = options.logger;
  }

  /** Starts sending queued events (a server does; a command that only manages endpoints does not). */
  start(): void {
    this.deliverer.start();
  }

  stop(): Promise<void> {
    return this.deliverer.stop();
  }

  async list(): Promise<EndpointView[]> {
    return (await this.endpoints.all()).map(viewOf);
  }

  add(request: NewEndpoint): Promise<{ endpoint: EndpointView; secret: string }> {
    return this.endpoints.add(request);
  }

  async find(id: string): Promise<EndpointView> {
    const endpoint = await this.endpoints.get(id);
    if (!endpoint) throw new WebhookError('NOT_FOUND', `no webhook endpoint ${JSON.stringify(id.slice(0, 40))}`);
    return viewOf(endpoint);
  }

  /** Removes the endpoint, its queue and its log. */
  async remove(id: string): Promise<EndpointView> {
    const removed = await this.endpoints.remove(id);
    if (!removed) throw new WebhookError('NOT_FOUND', `no webhook endpoint ${JSON.stringify(id.slice(0, 40))}`);
    await Promise.all([this.queue.remove(id), this.log.remove(id)]);
    return viewOf(removed);
  }

  /** The endpoint's last deliveries (newest last), and what waits and was dropped for a full queue. */
  async deliveries(id: string): Promise<{ endpoint: EndpointView; waiting: number; droppedFull: number; deliveries: DeliveryRecord[] }> {
    const endpoint = await this.find(id);
    const [counts, deliveries] = await Promise.all([this.queue.counts(id), this.log.read(id)]);
    return { endpoint, ...counts, deliveries };
  }

  /** The event source: what storage tells, queued for the endpoints that want it. */
  listener(): StorageListener {
    return {
      manifestPushed: (f) => this.publish('push', { mediaType: f.mediaType, digest: f.digest, size: f.size, repository: f.name, ...(f.tag ? { tag: f.tag } : {}) }, {}, f.by),
      manifestDeleted: (d) => this.publish('delete', { repository: d.name, ...(d.digest ? { digest: d.digest } : {}), ...(d.tag ? { tag: d.tag } : {}) }, {}, d.by),
      blobDeleted: (f) => this.publish('delete', { mediaType: 'application/octet-stream', digest: f.digest, repository: f.name }, {}, f.by),
      manifestPulled: (f) => {
        void this.publish('pull', { mediaType: f.mediaType, digest: f.digest, size: f.size, repository: f.name, ...(f.tag ? { tag: f.tag } : {}) }, {}, f.by, PULL_ENDPOINTS_MAX_AGE_MS);
      },
      garbageCollected: (summary) => this.publish('gc', undefined, { gc: summary }),
    };
  }

  /** A replication run ended (global endpoints that subscribe to replication hear of it). */
  replicated(summary: Record<string, unknown>): Promise<void> {
    return this.publish('replication', undefined, { replication: summary });
  }

  /** Queues the event for each endpoint that wants it; never fails what caused it (a failure is logged). */
  private async publish(action: string, target: EventTarget | undefined, extra: Partial<RegistryEvent> = {}, by?: RequestedBy, maxAgeMs?: number): Promise<void> {
    try {
      const endpoints = maxAgeMs === undefined ? await this.endpoints.all() : await this.endpoints.recent(maxAgeMs);
      const wanting = endpoints.filter((e) => wants(e, action, target));
      if (wanting.length === 0) return;
      const event = this.events.create(action, target, extra, by);
      for (const endpoint of wanting) {
        if (await this.queue.enqueue(endpoint.id, event)) this.deliverer.kick(endpoint.id);
      }
    } catch (err) {
      this.logger.warn({ err: (err as Error).message, action, repository: target?.repository }, 'a webhook event was not queued');
    }
  }
}

/** Global endpoints hear of everything they subscribe to; a namespace's only of its own repositories. */
function wants(endpoint: Endpoint, action: string, target: EventTarget | undefined): boolean {
  if (!endpoint.events.includes(action)) return false;
  if (endpoint.namespace === undefined) return true;
  return target?.repository !== undefined && namespaceOf(target.repository) === endpoint.namespace;
}
