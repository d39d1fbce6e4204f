// The body a webhook receives: Distribution's notification envelope (docs/notifications.md there), so that
// receivers written for Distribution read Berth's: {"events": [...]} with id, timestamp, action, target,
// request, actor and source, sent as application/vnd.docker.distribution.events.v1+json.
import { randomUUID } from 'node:crypto';
import type { RequestedBy, Requester } from '../storage/index.ts';

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

export interface RegistryEvent {
  id: string;
  timestamp: string;
  action: string;
  target?: EventTarget;
  /** The request that caused it, as Distribution describes it (storage carries it from the route). */
  request?: Omit<Requester, 'actor'>;
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

/**
 * Builds events with this process's source and the request that caused them (if any). The request comes
 * with the change, not from an AsyncLocalStorage: on Node 20 one of those puts hooks on every promise the
 * process makes, which cost a large push some 8% of the server's CPU.
 */
export class EventFactory {
  private readonly source: RegistryEvent['source'];

  constructor(
    /** BERTH_PUBLIC_URL: the base of each target's url (else the request's Host). */
    private readonly publicUrl: string | undefined,
    sourceAddr: string,
  ) {
    this.source = { addr: sourceAddr, instanceID: randomUUID() };
  }

  create(action: string, target: EventTarget | undefined, extra: Partial<RegistryEvent> = {}, by?: RequestedBy): RegistryEvent {
    const facts = by?.();
    const base = this.publicUrl?.replace(/\/+$/, '') ?? (facts?.host ? `http://${facts.host}` : '');
    const kind = target?.mediaType === 'application/octet-stream' ? 'blobs' : 'manifests';
    const url = target?.repository && target.digest && base ? `${base}/v2/${target.repository}/${kind}/${target.digest}` : undefined;
    const { actor, ...request } = facts ?? ({} as Partial<Requester>);
    return {
      id: randomUUID(),
      timestamp: new Date().toISOString(),
      action,
      ...(target ? { target: { ...target, ...(target.size !== undefined ? { length: target.size } : {}), ...(url ? { url } : {}) } } : {}),
      ...(facts ? { request: request as Omit<Requester, 'actor'>, actor: actor ? { name: actor } : {} } : {}),
      source: this.source,
      ...extra,
    };
  }
}
