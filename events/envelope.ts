// The body a webhook receives: Distribution's notification envelope (docs/notifications.md there), so that
// receivers written for Distribution read Berth's: {"events": [...]} with id, timestamp, action, target,
// request, actor and source, sent as application/vnd.docker.distribution.events.v1+json.
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';

export const EVENTS_MEDIA_TYPE = 'application/vnd.docker.distribution.events.v1+json';

/**
 * The actions an endpoint may subscribe to. The list is open: an endpoint stores names, not positions.
 * Pull is opt-in (one event per manifest served); replication is a rule's run ended.
 */
export const EVENT_TYPES = ['push', 'delete', 'pull', 'gc', 'replication'] as const;
export const DEFAULT_EVENT_TYPES = ['push', 'delete'];

export interface EventTarget {
  mediaType?: string;
  digest?: string;
  size?: number;
  /** Distribution sends the size under both names. */
  length?: number;
  repository?: string;
  url?: string;
  tag?: string;
}

/** The request that caused an event, as Distribution describes it. */
export interface RequestFacts {
  id: string;
  addr: string;
  host: string;
  method: string;
  useragent: string;
  /** Who made it (a user, robot or token's subject); empty when anonymous or in open mode. */
  actor?: string;
}

export interface RegistryEvent {
  id: string;
  timestamp: string;
  action: string;
  target?: EventTarget;
  request?: Omit<RequestFacts, 'actor'>;
  actor?: { name?: string };
  source: { addr: string; instanceID: string };
  /** A collection's counts (action gc only: Distribution has no such event). */
  gc?: Record<string, unknown>;
  /** A replication run's end: the rule, its outcome and counts (action replication only). */
  replication?: Record<string, unknown>;
}

export function envelope(events: RegistryEvent[]): Buffer {
  return Buffer.from(JSON.stringify({ events }));
}

/** Builds events with this process's source and the request they happen in (if any). */
export class EventFactory {
  /** The request being served, read lazily (its actor is known only once the route has checked access). */
  private readonly requests = new AsyncLocalStorage<() => RequestFacts>();
  private readonly source: RegistryEvent['source'];

  constructor(
    /** BERTH_PUBLIC_URL: the base of each target's url (else the request's Host). */
    private readonly publicUrl: string | undefined,
    sourceAddr: string,
  ) {
    this.source = { addr: sourceAddr, instanceID: randomUUID() };
  }

  /** Runs `fn` (a request's handling) so that events it causes name that request. */
  withRequest<T>(facts: () => RequestFacts, fn: () => T): T {
    return this.requests.run(facts, fn);
  }

  create(action: string, target: EventTarget | undefined, extra: Partial<RegistryEvent> = {}): RegistryEvent {
    const facts = this.requests.getStore()?.();
    const base = this.publicUrl?.replace(/\/+$/, '') ?? (facts?.host ? `http://${facts.host}` : '');
    const kind = target?.mediaType === 'application/octet-stream' ? 'blobs' : 'manifests';
    const url = target?.repository && target.digest && base ? `${base}/v2/${target.repository}/${kind}/${target.digest}` : undefined;
    const { actor, ...request } = facts ?? ({} as Partial<RequestFacts>);
    return {
      id: randomUUID(),
      timestamp: new Date().toISOString(),
      action,
      ...(target ? { target: { ...target, ...(target.size !== undefined ? { length: target.size } : {}), ...(url ? { url } : {}) } } : {}),
      ...(facts ? { request: request as Omit<RequestFacts, 'actor'>, actor: actor ? { name: actor } : {} } : {}),
      source: this.source,
      ...extra,
    };
  }
}
